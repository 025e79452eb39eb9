//! The running sandboxes: who owns each, admission limits, kill handles and
//! the fan-out of their output to attachers.
//!
//! A sandbox takes its slot ([`Registry::admit`]) before it is spawned, so the
//! limits count sandboxes being built too; the slot is freed when its
//! [`Slot`] is dropped, once its client has had the output, whatever ended
//! the exec. A sandbox that ended before that ([`Slot::end`]) is no longer
//! listed, killed or attached to, but still counts: what waits for its
//! client is bounded by the same limits.
//!
//! When the daemon stops ([`Registry::close`]) nothing more is admitted, and
//! every sandbox is killed, those that start running afterwards included.

use crate::api::attach::{Subscription, Watchers, MAX_ATTACHERS};
use crate::config::DaemonLimits;
use crate::supervisor::{Control, Handle, Undelivered};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Most bytes of a sandbox's argv its [`Info`] keeps (as written in a
/// record, besides the marks of a cut: see [`crate::audit::bounded_words`]).
/// Every sandbox's is copied into each List, which must stay far under a
/// gRPC message's 4 MiB with all of them (`limits.max_sandboxes`, 256 by
/// default), whatever argv one user gives.
pub const ARGV_BYTES: usize = 2 << 10;

/// What the daemon knows of one running sandbox.
#[derive(Debug, Clone)]
pub struct Info {
    pub id: String,
    pub uid: u32,
    /// Host pid of the sandbox's init.
    pub pid: i32,
    /// Its command, cut to [`ARGV_BYTES`].
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub profile: String,
    /// Hash of the effective policy, as in the exec's audit record.
    pub policy_hash: String,
    pub session: String,
    pub started: SystemTime,
    pub caller_pid: Option<i32>,
}

#[derive(Debug)]
struct Entry {
    uid: u32,
    /// Set once the sandbox runs; `None` while it is being built, and again
    /// once it has ended.
    running: Option<Running>,
    /// Its end is recorded; its output may still be on its way.
    ended: bool,
}

#[derive(Debug)]
struct Running {
    info: Info,
    handle: Handle,
    watchers: Watchers,
}

/// Admission refusals, kill and attach errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("too many sandboxes: {max} are running or sending their last output (limit: limits.max_sandboxes)")]
    Full { max: usize },
    #[error("too many sandboxes for uid {uid}: {max} are running or sending their last output (limit: limits.max_per_user)")]
    UserFull { uid: u32, max: usize },
    #[error("no sandbox with id {0:?}")]
    NotFound(String),
    #[error("sandbox {id} belongs to another user")]
    NotOwner { id: String },
    #[error("sandbox {0} is ending")]
    Gone(String),
    #[error("sandbox {id}: {source}")]
    Undelivered {
        id: String,
        source: crate::supervisor::Undelivered,
    },
    #[error("sandbox {id} already has {max} attachers (the most one sandbox may have)")]
    Attachers { id: String, max: usize },
    #[error("sandboxd is shutting down")]
    Closing,
}

/// Every sandbox admitted and not yet ended.
#[derive(Debug)]
pub struct Registry {
    limits: DaemonLimits,
    entries: Mutex<BTreeMap<String, Entry>>,
    counter: AtomicU64,
    /// Set once, under the entries' lock, when the daemon stops.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Registry {
    pub fn new(limits: DaemonLimits) -> Arc<Self> {
        Arc::new(Registry {
            limits,
            entries: Mutex::new(BTreeMap::new()),
            counter: AtomicU64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The limits it admits by, and that the daemon sets on users' sandboxes.
    pub fn limits(&self) -> &DaemonLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for a sandbox of `uid`, or says which limit is reached.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<Slot, RegistryError> {
        let mut entries = self.lock();
        if self.is_closing() {
            return Err(RegistryError::Closing);
        }
        if entries.len() >= self.limits.max_sandboxes {
            return Err(RegistryError::Full {
                max: self.limits.max_sandboxes,
            });
        }
        if entries.values().filter(|e| e.uid == uid).count() >= self.limits.max_per_user {
            return Err(RegistryError::UserFull {
                uid,
                max: self.limits.max_per_user,
            });
        }
        let id = loop {
            let id = new_id(self.counter.fetch_add(1, Ordering::Relaxed));
            if !entries.contains_key(&id) {
                break id;
            }
        };
        entries.insert(
            id.clone(),
            Entry {
                uid,
                running: None,
                ended: false,
            },
        );
        Ok(Slot {
            registry: Arc::clone(self),
            id,
        })
    }

    /// Running sandboxes, all of them or those of `uid`, ordered by start time.
    pub fn list(&self, uid: Option<u32>) -> Vec<Info> {
        let mut out: Vec<Info> = self
            .lock()
            .values()
            .filter_map(|e| e.running.as_ref())
            .filter(|r| uid.is_none_or(|u| r.info.uid == u))
            .map(|r| r.info.clone())
            .collect();
        out.sort_by_key(|i| i.started);
        out
    }

    /// Sandbox `id`'s info, handle and attachers' fan-out, if `uid` owns it
    /// or `admin` is set: the one ownership rule of kill and attach.
    fn running(
        &self,
        id: &str,
        uid: u32,
        admin: bool,
    ) -> Result<(Info, Handle, Watchers), RegistryError> {
        // Any string may be asked for: the error, sent back and logged,
        // keeps a bounded part of it.
        let not_found = || {
            RegistryError::NotFound(crate::audit::bounded_text(
                id,
                crate::audit::REFUSED_ID_BYTES,
            ))
        };
        let entries = self.lock();
        let entry = entries.get(id).ok_or_else(not_found)?;
        if entry.uid != uid && !admin {
            return Err(RegistryError::NotOwner { id: id.to_string() });
        }
        if entry.ended {
            return Err(RegistryError::Gone(id.to_string()));
        }
        let r = entry.running.as_ref().ok_or_else(not_found)?;
        Ok((r.info.clone(), r.handle.clone(), r.watchers.clone()))
    }

    /// Sandbox `id`, to be sent a control once the caller has recorded it,
    /// if `uid` owns it or `admin` is set.
    pub fn target(&self, id: &str, uid: u32, admin: bool) -> Result<Target, RegistryError> {
        let (info, handle, _) = self.running(id, uid, admin)?;
        Ok(Target { info, handle })
    }

    /// Subscribes to sandbox `id`'s output from now on, if `uid` owns it or
    /// `admin` is set.
    pub fn attach(
        &self,
        id: &str,
        uid: u32,
        admin: bool,
    ) -> Result<(Info, Subscription), RegistryError> {
        let (info, _, watchers) = self.running(id, uid, admin)?;
        let sub = watchers
            .subscribe()
            .ok_or_else(|| RegistryError::Attachers {
                id: id.to_string(),
                max: MAX_ATTACHERS,
            })?;
        Ok((info, sub))
    }

    /// Stops admitting and kills every running sandbox (daemon shutdown);
    /// returns how many were killed. A sandbox still being built is killed
    /// as it starts running ([`Slot::run`]).
    pub async fn close(&self) -> usize {
        let handles: Vec<Handle> = {
            let entries = self.lock();
            self.closing.send_replace(true);
            entries
                .values()
                .filter_map(|e| e.running.as_ref().map(|r| r.handle.clone()))
                .collect()
        };
        let n = handles.len();
        for h in handles {
            let _ = h.send(Control::Kill(CLOSING.into())).await;
        }
        n
    }

    /// Whether the daemon is stopping.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once the daemon is stopping: what waits on a person (an
    /// approval) gives up then.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// How many sandboxes are being built or running: those whose end is
    /// not yet on record.
    pub fn live(&self) -> usize {
        self.lock().values().filter(|e| !e.ended).count()
    }
}

/// Why sandboxes are killed when the daemon stops.
const CLOSING: &str = "sandboxd is shutting down";

/// One admitted sandbox's place in the registry; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    registry: Arc<Registry>,
    id: String,
}

impl Slot {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Marks the sandbox as running: it shows in [`Registry::list`], can be
    /// killed, and attached to through `watchers`. When the daemon is
    /// stopping, it is killed at once instead.
    pub async fn run(&self, info: Info, handle: Handle, watchers: Watchers) {
        let closing = {
            let mut entries = self.registry.lock();
            if let Some(e) = entries.get_mut(&self.id) {
                e.running = Some(Running {
                    info,
                    handle: handle.clone(),
                    watchers,
                });
            }
            self.registry.is_closing()
        };
        if closing {
            let _ = handle.send(Control::Kill(CLOSING.into())).await;
        }
    }

    /// Marks the sandbox as ended (its end recorded): no longer listed,
    /// killed or attached to; the slot stays taken until dropped.
    pub fn end(&self) {
        if let Some(e) = self.registry.lock().get_mut(&self.id) {
            e.running = None;
            e.ended = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A short id, unique in this daemon's life: 12 hex digits of a hash of the
/// counter, the daemon's pid and the time.
fn new_id(n: u64) -> String {
    use sha2::Digest;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = sha2::Sha256::new();
    h.update(n.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(now.to_le_bytes());
    hex::encode(&h.finalize()[..6])
}

/// A running sandbox the caller may control.
pub struct Target {
    pub info: Info,
    handle: Handle,
}

impl Target {
    /// Sends `control`; the sandbox's info, `Gone` if it ended meanwhile,
    /// or why else it was not delivered.
    pub async fn send(self, control: Control) -> Result<Info, RegistryError> {
        let id = &self.info.id;
        match self.handle.send(control).await {
            Ok(()) => Ok(self.info),
            Err(Undelivered::Gone) => Err(RegistryError::Gone(id.clone())),
            Err(source) => Err(RegistryError::Undelivered {
                id: id.clone(),
                source,
            }),
        }
    }
}
