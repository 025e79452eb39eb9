//! The writer. Each record is chained (seq, prev, hash) in the order
//! appends take the lock, and `append` returns only once the record is
//! written and fsync'ed, so the caller can hold its action until then.
//! Concurrent appends share one write and one fsync (group commit): the
//! first to find no flush running writes every record queued so far, the
//! others wait for it. [`enqueue`](AuditLog::enqueue) queues a record
//! nobody waits for (the end of a connection): it rides with the next
//! flush, so it never costs a waiting appender an fsync of its own;
//! [`append_done`](AuditLog::append_done) waits for its record, but keeps
//! it queued like those when it cannot be written (the record of something
//! that happened anyway). Kept records live in memory only: they are
//! written with the next flush that succeeds, which
//! [`retry_in_background`](AuditLog::retry_in_background) makes happen on
//! an idle daemon too, and are lost if the daemon stops first. Records
//! kept past [`MAX_PENDING`] (or [`MAX_PENDING_BYTES`]) are dropped, and a
//! `lost` record with their
//! number by kind is written first once the log works again, with that of
//! refusals ([`append_counted`](AuditLog::append_counted)) that could not
//! be written. A failed
//! write that cannot be taken back poisons the log: every later record is
//! refused, and nothing kept or counted is ever written. The
//! file is opened by its path for each flush, so a log that has become
//! unwritable (read-only mount, removed directory) fails the next append
//! rather than going on into a stale file. One writer per state dir: the
//! log holds an exclusive lock on the state dir itself while it lives, so
//! that two daemons cannot interleave their chains.

use super::head::{head_path, Head, HeadError, HeadFile};
use super::{files, record_hash, rfc3339, rotated, sha256_hex, FILE_NAME, GENESIS};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

/// Size past which `audit.jsonl` is rotated, unless the config says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// Set by the chain on a record written [`LATE`] or more after it was
/// queued (after a failed write, or behind a slow one): when it happened.
const AT: &str = "at";
/// The fields the chain sets: on every record, and [`AT`] on late ones.
/// Taken off what a caller queues, and off a record queued again.
const CHAIN_FIELDS: [&str; 6] = ["seq", "time", "kind", "prev", "hash", AT];
const LATE: Duration = Duration::from_secs(1);

/// Records nobody waits for that are kept queued while the log cannot be
/// written; past this, they are counted as lost (and a `lost` record says so).
pub const MAX_PENDING: usize = 1 << 16;

/// Bytes, as written, of the records kept so past which more are counted
/// as lost (a network record can take several KiB).
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// Pause before what a failed write left is tried again; doubled after
/// each failure, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("audit log {}:{line}: {problem}; run `sandboxd audit verify` and move the damaged log aside", path.display())]
    Tail {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: another sandboxd holds the audit log there (it has the state dir locked); stop it, or start this one on another state dir", dir.display())]
    Locked { dir: PathBuf },
    #[error("audit log {}: {action}: {source}; the record is kept in sandboxd's memory and written as soon as the log can be written again (lost if sandboxd stops first)", path.display())]
    Kept {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("audit log {}: an earlier failed write could not be undone, so no further record can extend the chain: every record is refused until sandboxd is restarted", path.display())]
    Poisoned { path: PathBuf },
    #[error("audit record {kind:?}: its fields are not a JSON object")]
    Fields { kind: String },
    #[error("audit log: the writing thread failed: {0}")]
    Thread(String),
    #[error("audit log in {}: {what}, but {} names seq {recorded}: its newest records were taken off. Run `sandboxd audit verify`; to start on this log anyway, move {} aside", dir.display(), head.display(), head.display())]
    Cut {
        dir: PathBuf,
        head: PathBuf,
        /// What the log has instead.
        what: String,
        recorded: u64,
    },
    #[error(transparent)]
    Head(#[from] HeadError),
}

/// The append-only writer.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    /// Held while the log lives: the one writer of this dir. Shared with
    /// [`open`](Self::open) until it returns, so that a failed open still
    /// holds it while it puts back what it cut.
    _lock: Arc<Flock<File>>,
    max_bytes: u64,
    /// Rewritten after every successful flush.
    head: HeadFile,
    state: Mutex<State>,
    /// Signalled when a flush ends.
    flushed: Condvar,
}

#[derive(Debug)]
struct State {
    /// `seq` of the last record on disk (0: none yet).
    seq: u64,
    /// Hash of the last line on disk.
    prev: String,
    /// Records waiting for the next flush, not yet chained.
    queued: VecDeque<Queued>,
    next_ticket: u64,
    /// A flush is running (outside the lock).
    flushing: bool,
    /// Outcomes of flushed records by ticket, until their appender takes them.
    outcomes: HashMap<u64, Result<u64, Failure>>,
    /// Tickets of queued records whose outcome nobody takes ([`AuditLog::enqueue`]).
    unawaited: HashSet<u64>,
    /// Tickets of waited-for records that a failed write keeps queued
    /// ([`AuditLog::append_done`]).
    kept: HashSet<u64>,
    /// Tickets of waited-for records that a failed write counts as lost
    /// ([`AuditLog::append_counted`]).
    counted: HashSet<u64>,
    /// Records dropped (past [`MAX_PENDING`] or [`MAX_PENDING_BYTES`], a
    /// write that could not be undone, or refusals not written), by kind,
    /// not yet said so in the log.
    lost: BTreeMap<String, u64>,
    /// A failed write left bytes that could not be removed.
    poisoned: bool,
    /// A failed flush left records queued or counted lost: the retrier
    /// ([`AuditLog::retry_in_background`]) writes them.
    retry: bool,
}

/// A record waiting for a flush.
#[derive(Debug)]
struct Queued {
    ticket: u64,
    kind: String,
    /// Without the chain's fields.
    record: Map<String, Value>,
    /// When it was queued: what it records happened then.
    since: SystemTime,
}

/// Why a flush failed, for each of its records' appenders.
#[derive(Debug, Clone)]
struct Failure {
    action: &'static str,
    /// The record stays queued for a later flush.
    kept: bool,
    kind: io::ErrorKind,
    message: String,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io {
        path,
        action,
        source,
    }
}

/// The last line of `path` (without its newline) and its 1-based number;
/// `None` for an empty or missing file.
fn last_line(path: &Path) -> Result<Option<(Vec<u8>, usize)>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut last = None;
    let mut n = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "read"))?;
        if read == 0 {
            return Ok(last);
        }
        n += 1;
        if line.pop() != Some(b'\n') {
            return Err(AuditError::Tail {
                path: path.to_path_buf(),
                line: n,
                problem: "the last record is cut short (no end of line)".into(),
            });
        }
        last = Some((line.clone(), n));
    }
}

/// Takes off, and returns, what follows the last end of line of `path`:
/// the part of a write that a stop mid-write left behind. The cut is made
/// durable before the log goes on.
fn cut_partial_tail(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    if data.last().is_none_or(|&b| b == b'\n') {
        return Ok(None);
    }
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for repair"))?;
    file.set_len(keep as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path, "cutting a record cut short"))?;
    Ok(Some(data[keep..].to_vec()))
}

impl AuditLog {
    /// Opens `dir/audit.jsonl` for appending, to be rotated past
    /// `max_bytes`, continuing `seq` and the chain from the last record of
    /// the newest file that has one. A last line cut short (a stop
    /// mid-write) is taken off and a `recovered` record says so; a last
    /// line that is no record or has no `seq` is an error: appending after
    /// it would hide the damage. So is a log that ends before the record
    /// the head file names (its newest records were taken off, a written
    /// one cut short included), or has another record there.
    /// (`sandboxd audit verify` checks the rest.) Another log open on
    /// `dir`, in this process or another, is [`AuditError::Locked`].
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        // Before anything is read or repaired: another writer may be
        // mid-write. Held until the cut bytes are back, if they must be.
        let lock = Arc::new(lock(dir)?);
        let files = files(dir).map_err(io_err(dir, "listing the state dir"))?;
        // A write cut short (the daemon stopped in the middle of one) was
        // never acknowledged: it is taken off, and said so in the chain.
        let cut = match files.last() {
            Some(newest) => cut_partial_tail(newest)?.map(|bytes| (newest.clone(), bytes)),
            None => None,
        };
        let opened = Self::open_cut(dir, Arc::clone(&lock), max_bytes, &files, cut.as_ref());
        if let (Err(_), Some((file, bytes))) = (&opened, &cut) {
            // Put the cut bytes back: the next start finds them, and says so.
            let restored = OpenOptions::new()
                .append(true)
                .open(file)
                .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_data()));
            if let Err(e) = restored {
                tracing::error!(file = %file.display(), error = %e, "audit log: a cut record could not be put back");
            }
        }
        drop(lock);
        opened
    }

    /// [`open`](Self::open) once a record cut short (`cut`: its file and
    /// bytes) was taken off the newest of `files`.
    fn open_cut(
        dir: &Path,
        lock: Arc<Flock<File>>,
        max_bytes: u64,
        files: &[PathBuf],
        cut: Option<&(PathBuf, Vec<u8>)>,
    ) -> Result<Self, AuditError> {
        let mut seq = 0;
        let mut prev = GENESIS.to_string();
        for path in files.iter().rev() {
            let Some((line, n)) = last_line(path)? else {
                continue;
            };
            let record: Map<String, Value> =
                serde_json::from_slice(&line).map_err(|e| AuditError::Tail {
                    path: path.clone(),
                    line: n,
                    problem: format!("the last record is not a JSON object: {e}"),
                })?;
            seq = record
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| AuditError::Tail {
                    path: path.clone(),
                    line: n,
                    problem: "the last record has no seq".into(),
                })?;
            prev = sha256_hex(&line);
            // The head written below names this record: it must not reach
            // the disk before the record does (a stop between a write and
            // its fsync leaves the record in memory only).
            File::open(path)
                .and_then(|f| f.sync_data())
                .map_err(io_err(path, "fsync"))?;
            break;
        }
        if let Some(h) = Head::read(dir)? {
            let what = if h.seq > seq {
                Some(format!("it ends at seq {seq}"))
            } else if h.seq == seq && h.hash != prev {
                Some(format!("its record seq {seq} is another one"))
            } else {
                None
            };
            if let Some(what) = what {
                return Err(AuditError::Cut {
                    dir: dir.to_path_buf(),
                    head: head_path(dir),
                    what,
                    recorded: h.seq,
                });
            }
        }
        let head = HeadFile::open(dir).map_err(io_err(&head_path(dir), "opening"))?;
        head.write_synced(&Head {
            seq,
            hash: prev.clone(),
        })
        .map_err(io_err(&head_path(dir), "writing"))?;
        let log = AuditLog {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_bytes,
            head,
            state: Mutex::new(State {
                seq,
                prev,
                queued: VecDeque::new(),
                next_ticket: 0,
                flushing: false,
                outcomes: HashMap::new(),
                unawaited: HashSet::new(),
                kept: HashSet::new(),
                counted: HashSet::new(),
                lost: BTreeMap::new(),
                poisoned: false,
                retry: false,
            }),
            flushed: Condvar::new(),
        };
        // Refuse to start on a log that cannot be written.
        log.create_live()?;
        if let Some((file, bytes)) = cut {
            tracing::warn!(file = %file.display(), bytes = bytes.len(), "audit log: a record cut short by a stop mid-write was taken off");
            log.append_blocking(
                "recovered",
                serde_json::json!({
                    "file": file.display().to_string(),
                    "dropped_bytes": bytes.len(),
                    "dropped_sha256": sha256_hex(bytes),
                    "message": "a write cut short when sandboxd stopped mid-write (never acknowledged) was taken off",
                }),
            )?;
        }
        Ok(log)
    }

    /// The `seq` of the newest record written and fsync'ed. A record at or
    /// below it is in the log for good; bytes past it may still be taken
    /// back (a failed write is undone, and its seqs are used again).
    pub fn written_seq(&self) -> u64 {
        self.lock().seq
    }

    /// The live file's path.
    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Appends a `kind` record with `fields` (a JSON object; `seq`, `time`,
    /// `kind`, `prev` and `hash` are set here and win over same-named
    /// fields), on a blocking thread. Returns once the record is on disk,
    /// with its `seq`.
    pub async fn append(self: &Arc<Self>, kind: &str, fields: Value) -> Result<u64, AuditError> {
        let log = Arc::clone(self);
        let kind = kind.to_string();
        tokio::task::spawn_blocking(move || log.append_blocking(&kind, fields))
            .await
            .map_err(|e| AuditError::Thread(e.to_string()))?
    }

    /// [`append`](Self::append) for the record of something that happened
    /// whether or not it is written (the end of an exec): when the write
    /// fails, the error ([`AuditError::Kept`]) is returned and the record
    /// stays queued, as [`enqueue`](Self::enqueue)'s do, so that the first
    /// flush that succeeds writes it, in its place in the chain.
    pub async fn append_done(
        self: &Arc<Self>,
        kind: &str,
        fields: Value,
    ) -> Result<u64, AuditError> {
        self.append_as(kind, fields, Waiter::AppenderKept).await
    }

    /// [`append`](Self::append) for the record of a refusal: nothing was
    /// done, so a record that cannot be written is not kept, but it is
    /// counted in the next `lost` record, which then numbers every record
    /// missing from the log.
    pub async fn append_counted(
        self: &Arc<Self>,
        kind: &str,
        fields: Value,
    ) -> Result<u64, AuditError> {
        self.append_as(kind, fields, Waiter::AppenderCounted).await
    }

    /// Queues a record for `waiter` and waits for it, on a blocking thread.
    async fn append_as(
        self: &Arc<Self>,
        kind: &str,
        fields: Value,
        waiter: Waiter,
    ) -> Result<u64, AuditError> {
        let log = Arc::clone(self);
        let kind = kind.to_string();
        tokio::task::spawn_blocking(move || {
            let ticket = log.queue(&kind, fields, waiter)?;
            Ticket { log: &log, ticket }.wait()
        })
        .await
        .map_err(|e| AuditError::Thread(e.to_string()))?
    }

    /// Queues a `kind` record that nothing waits for: it is chained and
    /// written with the next flush (the next [`append`](Self::append)'s, or
    /// [`flush_queued`](Self::flush_queued)'s, which the caller arranges).
    /// A failure to write it is logged, not returned.
    pub fn enqueue(&self, kind: &str, fields: Value) -> Result<(), AuditError> {
        self.queue(kind, fields, Waiter::Nobody).map(drop)
    }

    /// Puts a record in the queue under a new ticket; one nobody waits for
    /// is known as such from the start, so a flush that fails keeps it.
    fn queue(&self, kind: &str, fields: Value, waiter: Waiter) -> Result<u64, AuditError> {
        let Value::Object(record) = fields else {
            return Err(AuditError::Fields { kind: kind.into() });
        };
        let mut state = self.lock();
        if state.poisoned {
            if let Waiter::AppenderCounted = waiter {
                *state.lost.entry(kind.to_string()).or_default() += 1;
            }
            return Err(AuditError::Poisoned { path: self.path() });
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        match waiter {
            Waiter::Nobody => state.unawaited.insert(ticket),
            Waiter::AppenderKept => state.kept.insert(ticket),
            Waiter::AppenderCounted => state.counted.insert(ticket),
            Waiter::Appender => false,
        };
        let mut record = record;
        // Set by the chain (so a failed batch's records can be queued again as they were).
        for key in CHAIN_FIELDS {
            record.remove(key);
        }
        state.queued.push_back(Queued {
            ticket,
            kind: kind.to_string(),
            record,
            since: SystemTime::now(),
        });
        Ok(ticket)
    }

    /// Writes whatever is queued (after any flush already running); the
    /// error when that write failed or the log is poisoned.
    pub fn flush_queued(&self) -> Result<(), AuditError> {
        let mut state = self.lock();
        while state.flushing {
            state = self.flushed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.poisoned {
            return Err(AuditError::Poisoned { path: self.path() });
        }
        if state.queued.is_empty() && state.lost.is_empty() {
            return Ok(());
        }
        let before = state.seq;
        let state = self.flush(state);
        match state.seq > before {
            true => Ok(()),
            false => Err(AuditError::Io {
                path: self.path(),
                action: "write",
                source: io::Error::other("the queued records could not be written"),
            }),
        }
    }

    /// Starts a thread that writes what a failed write left (records kept,
    /// and the count of those lost) without waiting for another record:
    /// tried again after [`RETRY_FIRST`], then after pauses doubled up to
    /// [`RETRY_MAX`], until it is written. It holds the log only while it
    /// looks, so it ends once the log is dropped.
    pub fn retry_in_background(self: &Arc<Self>) -> Result<(), AuditError> {
        let log = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("audit-retry".into())
            .spawn(move || retry(&log))
            .map(drop)
            .map_err(|e| AuditError::Thread(e.to_string()))
    }

    /// Waits up to `timeout` for a failed flush to leave something to
    /// write; whether one has (and the log is not poisoned).
    fn wait_for_retry(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .flushed
            .wait_timeout_while(state, timeout, |s| !s.retry || s.poisoned)
            .unwrap_or_else(|p| p.into_inner());
        state.retry && !state.poisoned
    }

    /// The records not written yet, by kind: queued (kept after a failed
    /// write, or waiting for the next flush), and counted as lost.
    pub fn unwritten(&self) -> Unwritten {
        let state = self.lock();
        let mut queued = BTreeMap::new();
        for q in &state.queued {
            *queued.entry(q.kind.clone()).or_default() += 1;
        }
        Unwritten {
            queued,
            lost: state.lost.clone(),
        }
    }

    /// [`append`](Self::append) on the calling thread.
    pub fn append_blocking(&self, kind: &str, fields: Value) -> Result<u64, AuditError> {
        self.submit(kind, fields)?.wait()
    }

    /// Queues a `kind` record whose writer waits for it with
    /// [`Ticket::wait`], maybe after others have queued theirs, so that one
    /// flush writes them all.
    pub fn submit(&self, kind: &str, fields: Value) -> Result<Ticket<'_>, AuditError> {
        let ticket = self.queue(kind, fields, Waiter::Appender)?;
        Ok(Ticket { log: self, ticket })
    }

    /// Waits until the record of `ticket` is written (writing it, and
    /// whatever else is queued, unless a flush running meanwhile does).
    fn wait(&self, ticket: u64) -> Result<u64, AuditError> {
        let mut state = self.lock();
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome.map_err(|f| {
                    let (path, source) = (self.path(), io::Error::new(f.kind, f.message));
                    match f.kept {
                        true => AuditError::Kept {
                            path,
                            action: f.action,
                            source,
                        },
                        false => AuditError::Io {
                            path,
                            action: f.action,
                            source,
                        },
                    }
                });
            }
            if state.poisoned {
                return Err(AuditError::Poisoned { path: self.path() });
            }
            if state.flushing {
                state = self.flushed.wait(state).unwrap_or_else(|p| p.into_inner());
            } else {
                state = self.flush(state);
            }
        }
    }

    /// Chains every queued record onto the last one on disk (after a
    /// `lost` record, when records were dropped since the last write),
    /// writes and fsyncs them (the lock released meanwhile), and leaves each
    /// record's outcome for its appender. A failed batch leaves the chain as
    /// it was.
    fn flush<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let queued = std::mem::take(&mut state.queued);
        let lost = std::mem::take(&mut state.lost);
        let (mut seq, mut prev) = (state.seq, state.prev.clone());
        let mut batch = Vec::new();
        let now = SystemTime::now();
        let mut chain = |kind: &str, record: &mut Map<String, Value>, since: SystemTime| {
            seq += 1;
            record.insert("seq".into(), seq.into());
            record.insert("time".into(), rfc3339(now).into());
            if now.duration_since(since).unwrap_or_default() >= LATE {
                record.insert(AT.into(), rfc3339(since).into());
            }
            record.insert("kind".into(), kind.into());
            record.insert("prev".into(), std::mem::take(&mut prev).into());
            let hash = record_hash(record);
            record.insert("hash".into(), hash.into());
            let line = serde_json::to_string(record).unwrap_or_default();
            prev = sha256_hex(line.as_bytes());
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
            (seq, line.len() + 1)
        };
        if !lost.is_empty() {
            let mut record = lost_record(&lost);
            chain("lost", &mut record, now);
        }
        let mut chained = Vec::with_capacity(queued.len());
        for mut q in queued {
            let (seq, len) = chain(&q.kind, &mut q.record, q.since);
            chained.push((q, seq, len));
        }
        state.flushing = true;
        drop(state);
        let written = self.write_batch(&batch);
        let mut state = self.lock();
        state.flushing = false;
        match written {
            Ok(()) => {
                let head = Head { seq, hash: prev };
                if let Err(e) = self.head.write(&head) {
                    tracing::warn!(error = %e, "audit head: not rewritten");
                }
                state.seq = seq;
                state.prev = head.hash;
                state.retry = false;
                for (q, seq, _) in chained {
                    let ticket = q.ticket;
                    state.kept.remove(&ticket);
                    state.counted.remove(&ticket);
                    if !state.unawaited.remove(&ticket) {
                        state.outcomes.insert(ticket, Ok(seq));
                    }
                }
            }
            Err((e, undone)) => {
                let failure = match &e {
                    AuditError::Io { source, action, .. } => Failure {
                        action,
                        kept: false,
                        kind: source.kind(),
                        message: source.to_string(),
                    },
                    other => Failure {
                        action: "write",
                        kept: false,
                        kind: io::ErrorKind::Other,
                        message: other.to_string(),
                    },
                };
                // Still to be said, with any dropped below.
                for (kind, n) in lost {
                    *state.lost.entry(kind).or_default() += n;
                }
                // A waiting appender hears of the failure (its action does
                // not proceed, unless it is done already). A record nobody
                // waits for, or of something done, is queued again, in
                // order, ahead of later ones: the chain is unchanged, so it
                // goes with the next flush that succeeds. A refusal is
                // counted as lost.
                let mut again = Vec::new();
                let mut again_bytes = 0;
                let mut dropped = 0;
                for (mut q, _, len) in chained {
                    let ticket = q.ticket;
                    if state.counted.remove(&ticket) {
                        *state.lost.entry(q.kind.clone()).or_default() += 1;
                    }
                    let keep = state.unawaited.contains(&ticket) || state.kept.remove(&ticket);
                    let room = undone
                        && state.queued.len() + again.len() < MAX_PENDING
                        && again_bytes + len <= MAX_PENDING_BYTES;
                    if !state.unawaited.contains(&ticket) {
                        let failure = Failure {
                            kept: keep && room,
                            ..failure.clone()
                        };
                        state.outcomes.insert(ticket, Err(failure));
                    }
                    if !keep {
                        continue;
                    }
                    if room {
                        for key in CHAIN_FIELDS {
                            q.record.remove(key);
                        }
                        // Its appender has its outcome: nobody waits for it now.
                        state.unawaited.insert(ticket);
                        again_bytes += len;
                        again.push(q);
                    } else {
                        state.unawaited.remove(&ticket);
                        *state.lost.entry(q.kind).or_default() += 1;
                        dropped += 1;
                    }
                }
                for r in again.into_iter().rev() {
                    state.queued.push_front(r);
                }
                if dropped > 0 {
                    tracing::error!(
                        "audit log: {dropped} records kept for a later write were dropped (a `lost` record will count them): {}: {}",
                        failure.action,
                        failure.message
                    );
                }
                state.poisoned |= !undone;
                state.retry = !state.queued.is_empty() || !state.lost.is_empty();
            }
        }
        self.flushed.notify_all();
        state
    }

    /// Appends `batch` to the live file (rotating first when it would pass
    /// the size limit) and fsyncs it. On failure, whether the partial write
    /// could be removed.
    fn write_batch(&self, batch: &[u8]) -> Result<(), (AuditError, bool)> {
        let live = self.path();
        let mut file = open_live(&live).map_err(|e| (e, true))?;
        let mut size = file
            .metadata()
            .map_err(|e| (io_err(&live, "stat")(e), true))?
            .len();
        if size > 0 && size + batch.len() as u64 > self.max_bytes {
            self.rotate().map_err(|e| (e, true))?;
            file = open_live(&live).map_err(|e| (e, true))?;
            size = 0;
        }
        let written = file
            .write_all(batch)
            .map_err(io_err(&live, "write"))
            .and_then(|()| file.sync_data().map_err(io_err(&live, "fsync")));
        // Remove what part of the batch reached the file, so the next record follows a whole one.
        written.map_err(|e| (e, file.set_len(size).is_ok()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state as valid as any write does.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renames the full live file to the next `audit.jsonl.N` and starts an
    /// empty one; its first record is chained to the renamed file's last line.
    fn rotate(&self) -> Result<(), AuditError> {
        let live = self.path();
        let next = rotated(&self.dir)
            .map_err(io_err(&self.dir, "listing the state dir"))?
            .last()
            .map_or(1, |n| n + 1);
        let target = self.dir.join(format!("{FILE_NAME}.{next}"));
        std::fs::rename(&live, &target).map_err(io_err(&live, "rotating"))?;
        self.create_live()
    }

    /// Creates the live file if missing, and makes its name durable.
    fn create_live(&self) -> Result<(), AuditError> {
        open_live(&self.path())?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir, "fsync of the state dir"))
    }
}

/// The body of [`AuditLog::retry_in_background`]'s thread.
fn retry(log: &Weak<AuditLog>) {
    let mut pause = RETRY_FIRST;
    loop {
        // Woken by the end of any flush; the timeout only lets go of the log.
        let due = match log.upgrade() {
            Some(log) => log.wait_for_retry(RETRY_MAX),
            None => return,
        };
        if !due {
            pause = RETRY_FIRST;
            continue;
        }
        std::thread::sleep(pause);
        let Some(log) = log.upgrade() else { return };
        match log.flush_queued() {
            Ok(()) => {
                tracing::info!("audit log: the records kept while it failed are written");
                pause = RETRY_FIRST;
            }
            Err(e) => {
                pause = (pause * 2).min(RETRY_MAX);
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), unwritten = %log.unwritten(), "audit log: the records kept are still not written");
            }
        }
    }
}

/// Records an [`AuditLog`] has not written, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Queued: kept after a failed write, or waiting for the next flush.
    pub queued: BTreeMap<String, u64>,
    /// Dropped, to be counted in a `lost` record.
    pub lost: BTreeMap<String, u64>,
}

impl Unwritten {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.lost.is_empty()
    }
}

impl fmt::Display for Unwritten {
    /// `queued: exec-end 1, network 2; lost: network 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (what, counts)) in [("queued", &self.queued), ("lost", &self.lost)]
            .into_iter()
            .enumerate()
        {
            let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let counts = match counts.is_empty() {
                true => "none".to_string(),
                false => counts.join(", "),
            };
            write!(f, "{}{what}: {counts}", if i > 0 { "; " } else { "" })?;
        }
        Ok(())
    }
}

/// Who takes a queued record's outcome, and whether a failed write keeps it.
#[derive(Debug, Clone, Copy)]
enum Waiter {
    /// Nobody ([`AuditLog::enqueue`]): a failed write keeps it queued.
    Nobody,
    /// Its appender: a failed write is their error, and the record is gone.
    Appender,
    /// Its appender ([`AuditLog::append_done`]), told of a failed write,
    /// which keeps it queued all the same.
    AppenderKept,
    /// Its appender ([`AuditLog::append_counted`]), told of a failed write,
    /// which counts it as lost.
    AppenderCounted,
}

/// The `lost` record's fields for records dropped, by kind.
fn lost_record(lost: &BTreeMap<String, u64>) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("records".into(), lost.values().sum::<u64>().into());
    record.insert(
        "kinds".into(),
        Value::Object(lost.iter().map(|(k, n)| (k.clone(), (*n).into())).collect()),
    );
    record.insert(
        "message".into(),
        format!(
            "records that could not be written while the audit log failed were dropped: refusals, and records of what was done past the {MAX_PENDING} records or {} MiB kept",
            MAX_PENDING_BYTES >> 20
        )
        .into(),
    );
    record
}

/// A record queued by [`AuditLog::submit`]. Dropped without
/// [`wait`](Ticket::wait), it is still written with the next flush.
#[derive(Debug)]
pub struct Ticket<'a> {
    log: &'a AuditLog,
    ticket: u64,
}

impl Ticket<'_> {
    /// Returns once the record is on disk, with its `seq`.
    pub fn wait(self) -> Result<u64, AuditError> {
        let (log, ticket) = (self.log, self.ticket);
        // Waited for: nothing for the drop to do.
        std::mem::forget(self);
        log.wait(ticket)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.log.lock();
        // Already flushed: forget its outcome (saying so if it failed);
        // else nobody will take it.
        match state.outcomes.remove(&self.ticket) {
            Some(Ok(_)) => {}
            Some(Err(f)) => tracing::warn!(
                "audit log: a record not waited for was not written: {}: {}",
                f.action,
                f.message
            ),
            None => {
                state.unawaited.insert(self.ticket);
            }
        }
    }
}

/// Takes the exclusive lock on `dir` itself (its own descriptor, the
/// directory opened without following a symlink), without waiting:
/// [`AuditError::Locked`] while another log holds it. Unlike a lock file,
/// nothing removed, replaced or linked inside the dir gets around it.
fn lock(dir: &Path) -> Result<Flock<File>, AuditError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(dir)
        .map_err(io_err(
            dir,
            "opening the state dir to lock it (not a symlink)",
        ))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => AuditError::Locked {
            dir: dir.to_path_buf(),
        },
        e => io_err(dir, "locking the state dir")(io::Error::from(e)),
    })
}

/// Opens (creating, mode 0600) the live file for appending.
fn open_live(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "open for appending"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_log_on_the_same_dir_is_locked_out_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        first
            .append_blocking("exec-start", serde_json::json!({}))
            .unwrap();
        let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(
            matches!(&err, AuditError::Locked { dir: d } if d == dir.path()),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("another sandboxd holds the audit log"),
            "{err}"
        );
        // The refused open left the log alone: the first goes on with it.
        assert_eq!(
            first
                .append_blocking("exec-end", serde_json::json!({}))
                .unwrap(),
            2
        );
        drop(first);
        let second = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(
            second
                .append_blocking("exec-start", serde_json::json!({}))
                .unwrap(),
            3
        );
    }

    /// The lock is the state dir's own: no file removed or put in its
    /// place lets a second log in, and the dir is not reached through a
    /// symlink.
    #[test]
    fn the_lock_cannot_be_sidestepped_through_the_dir_s_files_or_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let first = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let locked_out = || {
            let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
            assert!(matches!(err, AuditError::Locked { .. }), "{err:?}");
        };
        let file = dir.path().join("audit.lock");
        let _ = std::fs::remove_file(&file);
        locked_out();
        std::fs::write(&file, "").unwrap();
        locked_out();
        std::fs::remove_file(&file).unwrap();
        locked_out();
        drop(first);
        let other = tempfile::tempdir().unwrap();
        let link = other.path().join("state");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err = AuditLog::open(&link, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(
            matches!(&err, AuditError::Io { path, .. } if *path == link),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a symlink"), "{err}");
    }
}
