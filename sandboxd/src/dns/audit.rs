//! The DNS server's audit records, written by one task (a batch at a time,
//! with one write and one fsync) so that no answer waits for its record.
//! Identical questions (same name and type, hence the same decision) that
//! arrive while earlier ones wait to be written are folded into one record
//! that counts them, so a flood of queries costs the log one line per
//! distinct question; past [`MAX_PENDING`] distinct waiting questions new
//! ones are not answered at all (nothing goes unrecorded).
//!
//! Distinct names cost a record each, and a sandbox can make them up as
//! fast as it can send (a random label a query): past the [`rate`]'s
//! burst, new questions are decided and recorded only at its rate. The
//! others are not answered, and one record a batch counts them.

use super::wire::Question;
use crate::net::rate::{self, Allowance};
use crate::net::session::NotAudited;
use crate::net::{NetDecision, NetRecord, Phase, Session};
use crate::policy::Verdict;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// Most distinct questions waiting to be written.
pub const MAX_PENDING: usize = 4096;
/// Pause between batches of records.
const GATHER: std::time::Duration = std::time::Duration::from_millis(500);

/// Records waiting for the writer task.
pub struct AuditQueue {
    session: Arc<Session>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// The last write failed: answer nothing until one succeeds.
    failing: AtomicBool,
    /// The server is gone: write what is left and stop.
    closed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    next: u64,
    /// By the question's wire key (lower-cased name, type, class).
    waiting: HashMap<Box<[u8]>, Entry>,
    /// New questions that may still be asked.
    allowance: Allowance,
    /// Queries over the rate since the last batch, and one of their names.
    over_rate: u64,
    over_rate_name: String,
}

struct Entry {
    order: u64,
    count: u64,
    record: NetRecord,
}

/// Ends the writer once it has written what is queued, when dropped. What
/// still waits for it is handed to the audit log's own queue at once, so it
/// is written even when the writer does not run again (its runtime ending).
pub struct Closer(Arc<AuditQueue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        if let Err(e) = self.0.hand_over() {
            tracing::error!("DNS: {e}");
        }
        self.0.wake.notify_one();
    }
}

impl AuditQueue {
    /// The queue and its writer task (which ends after the [`Closer`] is dropped).
    pub fn start(session: Arc<Session>) -> Arc<AuditQueue> {
        let queue = Arc::new(AuditQueue {
            session,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(Arc::clone(&queue).write());
        queue
    }

    pub fn closer(self: &Arc<Self>) -> Closer {
        Closer(Arc::clone(self))
    }

    /// Whether the audit log refused the last record.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Counts one more `q` when its record still waits to be written: then
    /// whether it was allowed (the decision is the same for the same name).
    pub fn repeat(&self, q: &Question) -> Option<bool> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let e = p.waiting.get_mut(q.key())?;
        e.count += 1;
        Some(e.record.verdict == Verdict::Allow)
    }

    /// Queues the record of `decision` on `q`: whether it allows the
    /// answer, or `None` when the queue is full or the sandbox asks new
    /// questions faster than the [`rate`] (then counted, to be recorded).
    pub fn push(&self, q: &Question, decision: NetDecision) -> Option<bool> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = p.waiting.get_mut(q.key()) {
            e.count += 1;
            return Some(e.record.verdict == Verdict::Allow);
        }
        if p.waiting.len() >= MAX_PENDING {
            return None;
        }
        if !p.allowance.take(Instant::now()) {
            p.over_rate += 1;
            if p.over_rate == 1 {
                p.over_rate_name = q.shown();
            }
            drop(p);
            self.wake.notify_one();
            return None;
        }
        let order = p.next;
        p.next += 1;
        let record = record(q, decision);
        let allowed = record.verdict == Verdict::Allow;
        p.waiting.insert(
            q.key().into(),
            Entry {
                order,
                count: 1,
                record,
            },
        );
        drop(p);
        self.wake.notify_one();
        Some(allowed)
    }

    /// Moves the waiting records, in arrival order, to the audit log's queue
    /// (to be written with its next flush); whether any were.
    fn hand_over(&self) -> Result<bool, NotAudited> {
        let (batch, over_rate, name) = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let name = std::mem::take(&mut p.over_rate_name);
            (
                std::mem::take(&mut p.waiting),
                std::mem::take(&mut p.over_rate),
                name,
            )
        };
        let mut batch: Vec<Entry> = batch.into_values().collect();
        batch.sort_unstable_by_key(|e| e.order);
        let mut queued = Ok(!batch.is_empty() || over_rate > 0);
        if over_rate > 0 {
            let r = self.session.queue(over_rate_record(over_rate, name));
            queued = queued.and_then(|q| r.map(|()| q));
        }
        for Entry {
            count, mut record, ..
        } in batch
        {
            if count > 1 {
                record
                    .reason
                    .push_str(&format!(" ({count} identical queries)"));
            }
            let r = self.session.queue(record);
            queued = queued.and_then(|q| r.map(|()| q));
        }
        queued
    }

    /// Writes queued records (about in arrival order) until closed and empty.
    async fn write(self: Arc<Self>) {
        loop {
            // Queued in order, then written with one write and one fsync.
            let queued = match self.hand_over() {
                // What the closer handed over goes with this flush (or, where
                // the runtime ends first, with the network thread's last one).
                Ok(false) if self.closed.load(Ordering::Acquire) => {
                    self.written(self.session.flush_queued().await);
                    return;
                }
                Ok(false) => {
                    self.wake.notified().await;
                    continue;
                }
                other => other.map(|_| ()),
            };
            let flushed = self.session.flush_queued().await;
            self.written(queued.and(flushed));
            // Let repeats of the same questions gather, to fold them: a flood
            // of queries then costs the log a few lines a second per name.
            if !self.closed.load(Ordering::Acquire) {
                tokio::time::sleep(GATHER).await;
            }
        }
    }

    /// Notes how one batch went: a failure stops the answers until a batch is written.
    fn written(&self, r: Result<(), NotAudited>) {
        match r {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                tracing::error!("DNS: {e}");
                self.failing.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The record of `count` queries left unanswered for being over the rate
/// of new questions, the first of them for `name`.
fn over_rate_record(count: u64, name: String) -> NetRecord {
    NetRecord {
        phase: Phase::Decision,
        protocol: "dns",
        host: name,
        port: crate::net::DNS_PORT,
        method: None,
        path: None,
        addr: None,
        verdict: Verdict::Deny,
        block: Some(crate::net::Block::RateLimit),
        rule: rate::rule("dns: new questions"),
        reason: format!(
            "{count} queries not answered (this name and others, not recorded one by one)"
        ),
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    }
}

/// The audit record of one decision. A name that would need the person's
/// approval is not resolved (approval happens at the proxy), so it is a deny here.
fn record(q: &Question, d: NetDecision) -> NetRecord {
    let forwarded = super::forwarded_type(q.qtype) && q.qclass == super::wire::CLASS_IN;
    let (verdict, reason) = match d.verdict {
        Verdict::Allow if !forwarded => (
            Verdict::Allow,
            format!(
                "{}; type {} answered empty, not forwarded",
                d.reason,
                q.type_name()
            ),
        ),
        Verdict::Prompt => (
            Verdict::Deny,
            format!("{}; not resolved without approval", d.reason),
        ),
        v => (v, d.reason),
    };
    NetRecord {
        phase: Phase::Decision,
        protocol: "dns",
        host: q.shown(),
        port: crate::net::DNS_PORT,
        method: Some(q.type_name()),
        path: None,
        addr: None,
        verdict,
        block: d.block.filter(|_| verdict != Verdict::Allow),
        rule: d.rule,
        reason,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    }
}
