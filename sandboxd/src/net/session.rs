//! One exec's network session: its policy, its secrets, and where its
//! decisions go (the audit log, then the exec's stream) and its questions
//! (the person answering approvals on that stream).

use super::decide::{Block, NetPolicy};
use super::rate::{self, Allowance};
use super::resolve::Resolver;
use crate::audit::{self, AuditLog};
use crate::policy::Verdict;
use crate::quota::Quota;
use crate::tls::Inspector;
use serde_json::json;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long an approval request waits for its answer; then it is a deny.
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time the end record of a connection waits in the audit log's
/// queue for another record's flush before it is flushed on its own.
pub const END_RECORD_DELAY: Duration = Duration::from_millis(5);
/// Longest time refusals over the rate wait to be written as a count.
pub const COUNT_DELAY: Duration = Duration::from_secs(1);
/// How long a name the proxies looked up, or a destination whose dial
/// failed, is remembered for the sandbox.
pub const REMEMBERED: Duration = Duration::from_secs(60);
/// Most names, and most failed destinations, remembered for a sandbox.
const MAX_REMEMBERED: usize = 4096;

/// Whether a record is the decision (written before the action proceeds) or
/// the end of an allowed connection (with its byte counts and duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Decision,
    End,
}

/// One network decision, as audited and sent on the exec's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRecord {
    pub phase: Phase,
    /// "http", "https" (inspected), "connect", "socks", "dns".
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
    pub method: Option<String>,
    pub path: Option<String>,
    /// The address dialled, once vetted.
    pub addr: Option<IpAddr>,
    pub verdict: Verdict,
    pub block: Option<Block>,
    pub rule: String,
    pub reason: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
}

/// A question for the person at the exec's terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetQuery {
    pub host: String,
    pub port: u16,
    pub method: Option<String>,
    /// The rule that asked (the approval mode and the allow list).
    pub rule: String,
}

/// The person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Once,
    /// For the rest of this exec.
    Exec,
    Deny,
}

/// Where the exec's questions go: each with the channel its answer comes back on.
pub type Questions = mpsc::Sender<(NetQuery, oneshot::Sender<Answer>)>;

/// What the network side of one exec shares.
pub struct Session {
    /// This session, for the timer that writes counted refusals.
    me: Weak<Session>,
    pub exec_id: String,
    pub uid: u32,
    pub policy: NetPolicy,
    /// Secret values by name, for `{secret:NAME}` in injected headers; never
    /// given to the sandbox.
    pub secrets: BTreeMap<String, String>,
    pub resolver: Arc<Resolver>,
    /// Set when the policy inspects HTTPS.
    pub inspector: Option<Arc<Inspector>>,
    /// The host's own addresses (refused by the SSRF guard).
    pub host_addrs: Arc<Vec<IpAddr>>,
    audit: Arc<AuditLog>,
    events: mpsc::Sender<NetRecord>,
    /// Events not sent on the stream: its buffer was full.
    events_lost: AtomicU64,
    questions: Option<Questions>,
    /// (host, port) answered "for this exec".
    approved: Mutex<HashSet<(String, u16)>>,
    /// A timer to flush end records is set.
    end_flush: Arc<AtomicBool>,
    /// Attempts that reached nothing, recorded one by one and over the rate.
    refusals: Mutex<Refusals>,
    /// New names the sandbox may have looked up.
    names: Mutex<Names>,
    /// Queries its DNS server and its proxies' lookups may send upstream.
    forwards: Mutex<Allowance>,
    /// A timer to write the count of refusals over the rate is set.
    count_flush: AtomicBool,
    /// Client connections the proxies may serve at once, HTTP and SOCKS
    /// together: each costs the daemon descriptors and buffers.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// What all sandboxes of this uid may hold at once (connections and
    /// DNS forwards), of the daemon's descriptors.
    pub user_connections: Arc<Quota>,
    /// The sandbox's tunnels that may relay through large pipes now.
    pub large_pipes: crate::proxy::LargePipes,
}

/// Attempts that reached nothing (refused, or allowed but their lookup or
/// dial failed) past the [`rate`](super::rate): counted, with the first of
/// them and a count for each of the first [`COUNTED_DESTINATIONS`]
/// destinations. Also the destinations whose dial failed lately: dialling
/// them again is such an attempt too.
#[derive(Default)]
struct Refusals {
    allowance: Allowance,
    unrecorded: u64,
    /// Of those, the allowed ones.
    unreached: u64,
    first: Option<NetRecord>,
    by_destination: BTreeMap<(String, u16), u64>,
    failed_dials: Remembered<SocketAddr>,
}

/// The new names a sandbox may look up, through its DNS server and its
/// proxies alike (each goes upstream and takes a place in the daemon's
/// cache), and the names its proxies looked up lately.
#[derive(Default)]
struct Names {
    allowance: Allowance,
    looked_up: Remembered<String>,
}

/// Keys seen within [`REMEMBERED`], at most [`MAX_REMEMBERED`] of them.
struct Remembered<K> {
    at: HashMap<K, Instant>,
}

impl<K> Default for Remembered<K> {
    fn default() -> Self {
        Remembered { at: HashMap::new() }
    }
}

impl<K: Hash + Eq> Remembered<K> {
    /// Whether `k` was seen within [`REMEMBERED`] before `now`; `None` when
    /// not, and there was no room to remember it (then it may have been).
    fn seen<Q: Hash + Eq + ?Sized>(&self, k: &Q, now: Instant) -> Option<bool>
    where
        K: Borrow<Q>,
    {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < REMEMBERED;
        match self.at.get(k) {
            Some(at) if recent(at) => Some(true),
            _ if self.at.len() >= MAX_REMEMBERED => None,
            _ => Some(false),
        }
    }

    /// Remembers `k` as seen at `now`, when there is room (after what is
    /// older than [`REMEMBERED`] is forgotten).
    fn insert(&mut self, k: K, now: Instant) {
        if self.at.len() >= MAX_REMEMBERED && !self.at.contains_key(&k) {
            self.at
                .retain(|_, at| now.saturating_duration_since(*at) < REMEMBERED);
        }
        if self.at.len() < MAX_REMEMBERED || self.at.contains_key(&k) {
            self.at.insert(k, now);
        }
    }

    fn remove(&mut self, k: &K) {
        self.at.remove(k);
    }
}

/// Destinations a count of refusals names, each with its own count.
const COUNTED_DESTINATIONS: usize = 16;

impl Refusals {
    /// Counts `r`, not recorded one by one.
    fn count(&mut self, r: NetRecord) {
        self.unrecorded += 1;
        if r.verdict == Verdict::Allow {
            self.unreached += 1;
        }
        let destination = (r.host.clone(), r.port);
        let room = self.by_destination.len() < COUNTED_DESTINATIONS;
        match self.by_destination.get_mut(&destination) {
            Some(n) => *n += 1,
            None if room => {
                self.by_destination.insert(destination, 1);
            }
            None => {}
        }
        self.first.get_or_insert(r);
    }

    /// The record counting the attempts not recorded one by one, if any.
    fn take_count(&mut self) -> Option<NetRecord> {
        let n = std::mem::take(&mut self.unrecorded);
        let unreached = std::mem::take(&mut self.unreached);
        let by_destination = std::mem::take(&mut self.by_destination);
        let mut r = self.first.take()?;
        let named: u64 = by_destination.values().sum();
        let mut destinations: Vec<String> = by_destination
            .into_iter()
            .map(|((host, port), k)| format!("{host}:{port} {k}"))
            .collect();
        if named < n {
            destinations.push(format!("others {}", n - named));
        }
        let first_block = r
            .block
            .map(|b| format!(" (blocked-by-{})", b.as_str()))
            .unwrap_or_default();
        r.verdict = Verdict::Deny;
        r.block = Some(Block::RateLimit);
        r.rule = rate::unreached_rule();
        r.reason = format!(
            "{n} attempts that reached nothing not recorded one by one (over the rate): \
             {} refused, {unreached} allowed but not reached; this one the first: {}{first_block}; \
             by destination: {}",
            n - unreached,
            r.reason,
            destinations.join(", ")
        );
        Some(r)
    }
}

impl Drop for Session {
    /// Refusals still only counted when the network thread did not get to
    /// [`queue_counted`](Session::queue_counted) (it panicked) go to the
    /// audit log's queue, written with its next flush.
    fn drop(&mut self) {
        self.queue_counted();
    }
}

/// The audit log could not take a record: the action must not proceed.
#[derive(Debug, thiserror::Error)]
#[error("not allowed, as it cannot be audited: {0}")]
pub struct NotAudited(String);

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        exec_id: String,
        uid: u32,
        policy: NetPolicy,
        secrets: BTreeMap<String, String>,
        resolver: Arc<Resolver>,
        inspector: Option<Arc<Inspector>>,
        host_addrs: Arc<Vec<IpAddr>>,
        audit: Arc<AuditLog>,
        events: mpsc::Sender<NetRecord>,
        questions: Option<Questions>,
        user_connections: Arc<Quota>,
    ) -> Arc<Session> {
        Arc::new_cyclic(|me| Session {
            me: me.clone(),
            exec_id,
            uid,
            policy,
            secrets,
            resolver,
            inspector,
            host_addrs,
            audit,
            events,
            events_lost: AtomicU64::new(0),
            questions,
            approved: Mutex::new(HashSet::new()),
            end_flush: Arc::new(AtomicBool::new(false)),
            refusals: Mutex::new(Refusals::default()),
            names: Mutex::new(Names::default()),
            forwards: Mutex::new(Allowance::new(
                rate::FORWARD_BURST,
                rate::FORWARDS_PER_SECOND,
            )),
            count_flush: AtomicBool::new(false),
            connections: Arc::new(tokio::sync::Semaphore::new(crate::proxy::MAX_CONNECTIONS)),
            user_connections,
            large_pipes: crate::proxy::LargePipes::default(),
        })
    }

    /// Writes `r`, a decision, to the audit log (fsync'ed) and sends it on
    /// the exec's stream (dropped there, not in the log, when the client
    /// lags). An allowed action proceeds only after this returned `Ok`.
    ///
    /// It returns once its record is on disk. The record is queued,
    /// then the connection lets the other connections that are ready queue
    /// theirs, and the first to go on writes and fsyncs them all. The write
    /// runs on the calling thread: a sandbox's network has a thread of its
    /// own ([`NetThread`](super::listen::NetThread)), so no other sandbox
    /// waits for it, and the connection goes on without a hand-off to
    /// another thread and back.
    ///
    /// The end of a connection gates nothing: [`record_end`](Self::record_end).
    pub async fn record(&self, r: NetRecord) -> Result<(), NotAudited> {
        let ticket = self
            .audit
            .submit("network", self.fields(&r))
            .map_err(|e| NotAudited(e.to_string()))?;
        tokio::task::yield_now().await;
        let written = ticket.wait();
        self.send_event(r);
        written.map(|_| ()).map_err(|e| NotAudited(e.to_string()))
    }

    /// Queues `r`, the end of a connection ([`queue`](Self::queue)): it
    /// goes to disk with the next flush (the next decision's, an exec's
    /// end, or at the latest [`END_RECORD_DELAY`] later), so the next
    /// connection does not wait behind an fsync of its own. Must be called
    /// within the sandbox's runtime (for the timer).
    pub fn record_end(&self, r: NetRecord) -> Result<(), NotAudited> {
        self.queue(r)?;
        // One timer at a time covers every end record queued meanwhile.
        if !self.end_flush.swap(true, Ordering::AcqRel) {
            let (audit, armed) = (Arc::clone(&self.audit), Arc::clone(&self.end_flush));
            tokio::spawn(async move {
                tokio::time::sleep(END_RECORD_DELAY).await;
                armed.store(false, Ordering::Release);
                let _ = tokio::task::spawn_blocking(move || audit.flush_queued()).await;
            });
        }
        Ok(())
    }

    /// Records `r`, an attempt that reached nothing (a refusal, or an
    /// allowed attempt whose lookup failed), like [`record`](Self::record)
    /// while the sandbox is within the [`rate`](super::rate) of such
    /// attempts; past it, counts it ([`count_unreached`](Self::count_unreached)). They cost the
    /// sandbox nothing, so they must not cost the disk a record each.
    pub async fn record_unreached(&self, r: NetRecord) -> Result<(), NotAudited> {
        let count = {
            let mut refusals = self.lock_refusals();
            if !refusals.allowance.take(Instant::now()) {
                refusals.count(r);
                drop(refusals);
                self.arm_count_flush();
                return Ok(());
            }
            refusals.take_count()
        };
        if let Some(count) = count {
            self.queue(count)?;
        }
        self.record(r).await
    }

    /// Counts `r`, an attempt that reached nothing, in one record with the
    /// others over the rate: queued with the next one recorded, at the
    /// latest [`COUNT_DELAY`] after the first one counted, and when the
    /// sandbox's network ends ([`queue_counted`](Self::queue_counted)).
    pub fn count_unreached(&self, r: NetRecord) {
        self.lock_refusals().count(r);
        self.arm_count_flush();
    }

    /// Whether the proxies may look up `name`: a name they looked up
    /// within [`REMEMBERED`] may, a new one takes one from the sandbox's
    /// allowance of new names ([`take_new_name`](Self::take_new_name)).
    pub fn may_look_up(&self, name: &str) -> bool {
        let now = Instant::now();
        let mut names = self.lock_names();
        if names.looked_up.seen(name, now) == Some(true) {
            return true;
        }
        if !names.allowance.take(now) {
            return false;
        }
        names.looked_up.insert(name.to_string(), now);
        true
    }

    /// Takes one new name from the sandbox's allowance (shared by its DNS
    /// server and its proxies); false when none is left.
    pub fn take_new_name(&self) -> bool {
        self.lock_names().allowance.take(Instant::now())
    }

    /// A place for one more connection of `what` (the proxy's, DNS over
    /// TCP) in the quota of the user's sandboxes, or `None`, said in the log.
    pub fn user_connection(&self, what: &str) -> Option<crate::quota::Slot> {
        let slot = self.user_connections.take(self.uid);
        if slot.is_none() {
            tracing::warn!(exec = %self.exec_id, uid = self.uid,
                "{what}: the user's sandboxes hold {} connections, one refused",
                self.user_connections.max());
        }
        slot
    }

    /// Takes one query from what the sandbox may send upstream (its DNS
    /// server's cache misses and its proxies' lookups together); false
    /// when none is left.
    pub fn may_forward(&self) -> bool {
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now())
    }

    /// Whether `to` may be dialled: yes, unless a dial there failed within
    /// [`REMEMBERED`] (or more destinations failed than are remembered)
    /// and the sandbox is past its rate of attempts that reach nothing.
    pub fn may_dial(&self, to: SocketAddr) -> bool {
        let now = Instant::now();
        let mut refusals = self.lock_refusals();
        refusals.failed_dials.seen(&to, now) == Some(false) || refusals.allowance.take(now)
    }

    /// Notes whether the dial to `to` failed: dialling it again then takes
    /// one from the allowance of attempts that reach nothing.
    pub fn dialled(&self, to: SocketAddr, failed: bool) {
        let mut refusals = self.lock_refusals();
        match failed {
            true => refusals.failed_dials.insert(to, Instant::now()),
            false => refusals.failed_dials.remove(&to),
        }
    }

    /// Sets one timer (at a time) to write the refusals counted meanwhile.
    fn arm_count_flush(&self) {
        if self.count_flush.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Weak::clone(&self.me);
        tokio::spawn(async move {
            tokio::time::sleep(COUNT_DELAY).await;
            let Some(s) = me.upgrade() else { return };
            s.count_flush.store(false, Ordering::Release);
            if s.queue_counted() {
                if let Err(e) = s.flush_queued().await {
                    tracing::error!(exec = %s.exec_id, "refusals over the rate: {e}");
                }
            }
        });
    }

    /// Queues the record counting the refusals over the rate, if any (the
    /// sandbox's network thread calls it once its connections are closed,
    /// before its last flush); whether there was one.
    pub fn queue_counted(&self) -> bool {
        let Some(count) = self.lock_refusals().take_count() else {
            return false;
        };
        if let Err(e) = self.queue(count) {
            tracing::error!(exec = %self.exec_id, "refusals over the rate not audited: {e}");
        }
        true
    }

    fn lock_refusals(&self) -> std::sync::MutexGuard<'_, Refusals> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `r` in the audit log without waiting for the disk (it is
    /// written with the next flush: see [`flush_queued`](Self::flush_queued))
    /// and sends it on the exec's stream. For records that gate nothing.
    pub fn queue(&self, r: NetRecord) -> Result<(), NotAudited> {
        let kind = match r.phase {
            Phase::Decision => "network",
            Phase::End => "network-end",
        };
        let queued = self.audit.enqueue(kind, self.fields(&r));
        self.send_event(r);
        queued.map_err(|e| NotAudited(e.to_string()))
    }

    /// Queues `r` in the audit log like [`queue`](Self::queue), without
    /// sending it on the exec's stream: for counts of what the stream
    /// already showed.
    pub fn queue_unshown(&self, r: &NetRecord) -> Result<(), NotAudited> {
        self.audit
            .enqueue("network", self.fields(r))
            .map_err(|e| NotAudited(e.to_string()))
    }

    /// Sends decision `r` on the exec's stream (ends are not shown there),
    /// or counts it lost when the stream's buffer is full (a slow client): a
    /// sandbox's connections never wait for its client, and the audit log
    /// has every record anyway.
    fn send_event(&self, r: NetRecord) {
        if r.phase != Phase::Decision {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(r) {
            self.events_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many events were lost since the last call.
    pub fn take_events_lost(&self) -> u64 {
        self.events_lost.swap(0, Ordering::Relaxed)
    }

    /// Writes the records queued so far (everyone's), on the calling thread.
    pub fn flush_queued_blocking(&self) -> Result<(), NotAudited> {
        self.audit
            .flush_queued()
            .map_err(|e| NotAudited(e.to_string()))
    }

    /// Writes the records queued so far (everyone's), on a blocking thread.
    pub async fn flush_queued(&self) -> Result<(), NotAudited> {
        let audit = Arc::clone(&self.audit);
        match tokio::task::spawn_blocking(move || audit.flush_queued()).await {
            Ok(r) => r.map_err(|e| NotAudited(e.to_string())),
            Err(e) => Err(NotAudited(format!("the writing thread failed: {e}"))),
        }
    }

    /// The audit fields of `r`. Its texts come from the sandbox (a request
    /// target may be 64 KiB, and a refused one costs nothing), so each is
    /// kept to [`audit::TEXT_BYTES`].
    fn fields(&self, r: &NetRecord) -> serde_json::Value {
        let text = |s: &str| audit::bounded_text(s, audit::TEXT_BYTES);
        json!({
            "id": self.exec_id,
            "uid": self.uid,
            "protocol": r.protocol,
            "host": text(&r.host),
            "port": r.port,
            "method": r.method.as_deref().map(text),
            "path": r.path.as_deref().map(text),
            "addr": r.addr.map(|a| a.to_string()),
            "decision": r.verdict.as_str(),
            "reason": r.block.map(|b| format!("blocked-by-{}", b.as_str())),
            "rule": r.rule,
            "message": text(&r.reason),
            "bytes_up": r.bytes_up,
            "bytes_down": r.bytes_down,
            "duration_ms": r.duration_ms,
        })
    }

    /// Asks the person about `q` (unless already approved for this exec);
    /// `false` without a person, on "deny", or when no answer comes in time.
    pub async fn ask(&self, q: NetQuery) -> bool {
        let key = (q.host.clone(), q.port);
        if self.lock_approved().contains(&key) {
            return true;
        }
        let Some(questions) = &self.questions else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        if questions.send((q, tx)).await.is_err() {
            return false;
        }
        match tokio::time::timeout(APPROVAL_TIMEOUT, rx).await {
            Ok(Ok(Answer::Once)) => true,
            Ok(Ok(Answer::Exec)) => {
                self.lock_approved().insert(key);
                true
            }
            _ => false,
        }
    }

    fn lock_approved(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u16)>> {
        self.approved.lock().unwrap_or_else(|p| p.into_inner())
    }
}
