//! The DNS server's audit records, written by one task (a batch at a time,
//! with one write and one fsync) so that no answer waits for its record.
//! Identical questions (same name and type, hence the same decision) that
//! arrive while earlier ones wait to be written are folded into one record
//! that counts them, so a flood of queries costs the log one line per
//! distinct question; past [`MAX_PENDING`] distinct waiting questions new
//! ones are not decided (answered REFUSED), only counted (nothing goes
//! unrecorded).
//!
//! Once written, a question's decision answers its repeats for [`RECENT`]
//! (up to [`MAX_RECENT`] questions): they are counted, in one more record
//! at the end of that time, and are not new questions.
//!
//! Distinct names cost a record each, and a sandbox can make them up as
//! fast as it can send (a random label a query): past the [`rate`]'s
//! burst, new questions are decided and recorded only at its rate (the
//! sandbox's allowance of new names, which its proxies' lookups take from
//! too). The others are answered REFUSED, and one record a batch counts them;
//! so are allowed queries the cache cannot answer once the sandbox has sent
//! upstream all it may for now ([`rate::FORWARD_BURST`], then
//! [`rate::FORWARDS_PER_SECOND`]).

use super::wire::Question;
use crate::net::rate;
use crate::net::session::NotAudited;
use crate::net::{NetDecision, NetRecord, Phase, Session};
use crate::policy::Verdict;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most distinct questions waiting to be written.
pub const MAX_PENDING: usize = 4096;
/// Pause between batches of records.
const GATHER: Duration = Duration::from_millis(500);
/// How long a written decision answers the repeats of its question.
pub const RECENT: Duration = Duration::from_secs(60);
/// Most questions whose written decisions answer their repeats.
pub const MAX_RECENT: usize = 4096;

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
    /// Questions whose records were written, by the same key.
    recent: HashMap<Box<[u8]>, Recent>,
    /// Queries over the rate since the last batch.
    over_rate: Tally,
    /// Allowed queries not sent upstream, over the rate of those, since
    /// the last batch.
    unforwarded: Tally,
}

/// Queries counted since the last batch, and the name of the first.
#[derive(Default)]
struct Tally {
    count: u64,
    name: String,
}

impl Tally {
    fn add(&mut self, q: &Question) {
        self.count += 1;
        if self.count == 1 {
            self.name = q.shown();
        }
    }

    /// The count and name, when any, leaving none.
    fn take(&mut self) -> Option<(u64, String)> {
        let Tally { count, name } = std::mem::take(self);
        (count > 0).then_some((count, name))
    }
}

struct Entry {
    order: u64,
    count: u64,
    record: NetRecord,
}

/// A question whose record was written at `since`, and its repeats since.
struct Recent {
    since: Instant,
    repeats: u64,
    record: NetRecord,
}

impl Pending {
    /// Counts one more `key` when it was decided moments ago (its record
    /// waiting, or written within [`RECENT`]): then whether it was allowed,
    /// and whether it is the first repeat counted since the record was written.
    fn repeat(&mut self, key: &[u8], now: Instant) -> Option<(bool, bool)> {
        if let Some(e) = self.waiting.get_mut(key) {
            e.count += 1;
            return Some((e.record.verdict == Verdict::Allow, false));
        }
        let r = self.recent.get_mut(key)?;
        if now.saturating_duration_since(r.since) >= RECENT {
            return None;
        }
        r.repeats += 1;
        Some((r.record.verdict == Verdict::Allow, r.repeats == 1))
    }

    /// Takes the repeats of decisions older than [`RECENT`] (all of them
    /// when `all`), each as a record counting them; forgets those without any.
    fn take_repeats(&mut self, now: Instant, all: bool) -> Vec<NetRecord> {
        let mut counted = Vec::new();
        self.recent.retain(|_, r| {
            let age = now.saturating_duration_since(r.since);
            if !all && age < RECENT {
                return true;
            }
            if r.repeats > 0 {
                let mut record = r.record.clone();
                record.reason.push_str(&format!(
                    " ({} more identical queries in the {} s after it was first recorded, answered alike)",
                    r.repeats,
                    age.as_secs()
                ));
                counted.push(record);
            }
            false
        });
        counted
    }

    /// When the next repeats are due to be written, if any are counted.
    fn repeats_due(&self) -> Option<Instant> {
        self.recent
            .values()
            .filter(|r| r.repeats > 0)
            .map(|r| r.since + RECENT)
            .min()
    }
}

/// Ends the writer once it has written what is queued, when dropped. What
/// still waits for it is handed to the audit log's own queue at once, so it
/// is written even when the writer does not run again (its runtime ending).
pub struct Closer(Arc<AuditQueue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        if let (Err(e), _) = self.0.hand_over() {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more `q` when it was decided moments ago: then whether it
    /// was allowed (the decision is the same for the same question).
    pub fn repeat(&self, q: &Question) -> Option<bool> {
        let (allowed, first) = self.lock().repeat(q.key(), Instant::now())?;
        if first {
            // The writer learns when this repeat is due to be written.
            self.wake.notify_one();
        }
        Some(allowed)
    }

    /// Queues the record of `decision` on `q`: whether it allows the
    /// answer, or `None` when the queue is full or the sandbox asks new
    /// questions faster than the [`rate`] (either way counted, to be recorded).
    pub fn push(&self, q: &Question, decision: NetDecision) -> Option<bool> {
        let now = Instant::now();
        let mut p = self.lock();
        if let Some((allowed, first)) = p.repeat(q.key(), now) {
            drop(p);
            if first {
                self.wake.notify_one();
            }
            return Some(allowed);
        }
        if p.waiting.len() >= MAX_PENDING || !self.session.take_new_name() {
            p.over_rate.add(q);
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

    /// Counts `q`, an allowed query answered REFUSED because the sandbox
    /// sent upstream all it may for now: one record a batch counts them.
    pub fn unforwarded(&self, q: &Question) {
        let mut p = self.lock();
        p.unforwarded.add(q);
        drop(p);
        self.wake.notify_one();
    }

    /// Moves the waiting records, in arrival order, and the repeats due (all
    /// of them once closed), to the audit log's queue (to be written with its
    /// next flush): whether any were, and when the next repeats are due.
    fn hand_over(&self) -> (Result<bool, NotAudited>, Option<Instant>) {
        let now = Instant::now();
        let closed = self.closed.load(Ordering::Acquire);
        let (batch, over_rate, unforwarded, repeats) = {
            let mut p = self.lock();
            let over_rate = p.over_rate.take();
            let unforwarded = p.unforwarded.take();
            let repeats = p.take_repeats(now, closed);
            (
                std::mem::take(&mut p.waiting),
                over_rate,
                unforwarded,
                repeats,
            )
        };
        let mut batch: Vec<(Box<[u8]>, Entry)> = batch.into_iter().collect();
        batch.sort_unstable_by_key(|(_, e)| e.order);
        let mut records = Vec::with_capacity(batch.len() + 2);
        if let Some((n, name)) = over_rate {
            records.push(over_rate_record(n, name));
        }
        if let Some((n, name)) = unforwarded {
            records.push(unforwarded_record(n, name));
        }
        let mut written = Vec::with_capacity(batch.len());
        for (key, Entry { count, record, .. }) in batch {
            let mut shown = record.clone();
            if count > 1 {
                shown
                    .reason
                    .push_str(&format!(" ({count} identical queries)"));
            }
            records.push(shown);
            written.push((key, record));
        }
        let mut queued = Ok(!records.is_empty() || !repeats.is_empty());
        for record in records {
            let r = self.session.queue(record);
            queued = queued.and_then(|q| r.map(|()| q));
        }
        // The stream showed the decision once; its repeats are the log's.
        for record in &repeats {
            let r = self.session.queue_unshown(record);
            queued = queued.and_then(|q| r.map(|()| q));
        }
        let mut p = self.lock();
        for (key, record) in written {
            if p.recent.len() < MAX_RECENT && !closed {
                p.recent.insert(
                    key,
                    Recent {
                        since: now,
                        repeats: 0,
                        record,
                    },
                );
            }
        }
        (queued, p.repeats_due())
    }

    /// Writes queued records (about in arrival order) until closed and empty.
    async fn write(self: Arc<Self>) {
        loop {
            // Queued in order, then written with one write and one fsync.
            let (queued, due) = self.hand_over();
            let queued = match queued {
                // What the closer handed over goes with this flush (or, where
                // the runtime ends first, with the network thread's last one).
                Ok(false) if self.closed.load(Ordering::Acquire) => {
                    self.written(self.session.flush_queued().await);
                    return;
                }
                // Until a write succeeds, nothing is answered: try again
                // even when only repeats are asked (they need no new record).
                Ok(false) if self.failing() => {
                    tokio::time::sleep(GATHER).await;
                    self.written(self.session.flush_queued().await);
                    continue;
                }
                Ok(false) => {
                    match due {
                        Some(due) => {
                            let due = tokio::time::Instant::from_std(due);
                            tokio::select! {
                                _ = self.wake.notified() => {}
                                _ = tokio::time::sleep_until(due) => {}
                            }
                        }
                        None => self.wake.notified().await,
                    }
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
    rate_limited(
        name,
        rate::new_names_rule(),
        format!(
            "{count} queries refused undecided (this name and others, not recorded one by one)"
        ),
    )
}

/// The record of `count` allowed queries answered REFUSED, not sent
/// upstream for being over the rate of those, the first of them for `name`.
fn unforwarded_record(count: u64, name: String) -> NetRecord {
    rate_limited(
        name,
        rate::forwards_rule(),
        format!(
            "{count} allowed queries refused, not sent upstream (this name and others, \
             not recorded one by one)"
        ),
    )
}

/// A refusal over a rate, counting queries for `name` and others.
fn rate_limited(name: String, rule: String, reason: String) -> NetRecord {
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
        rule,
        reason,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written(p: &mut Pending, key: &[u8], since: Instant, verdict: Verdict) {
        let record = NetRecord {
            verdict,
            ..over_rate_record(1, "popular.test".into())
        };
        p.recent.insert(
            key.into(),
            Recent {
                since,
                repeats: 0,
                record,
            },
        );
    }

    #[test]
    fn a_written_decision_answers_its_repeats_for_a_while_then_counts_them() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        written(&mut p, b"allowed", t0, Verdict::Allow);
        written(&mut p, b"denied", t0, Verdict::Deny);
        assert_eq!(p.repeat(b"unknown", t0), None);
        assert_eq!(p.repeat(b"allowed", t0), Some((true, true)));
        assert_eq!(p.repeat(b"allowed", t0 + RECENT / 2), Some((true, false)));
        assert_eq!(p.repeat(b"denied", t0), Some((false, true)));
        assert_eq!(p.repeats_due(), Some(t0 + RECENT));
        // Not yet due: nothing taken, and the repeats still count.
        assert!(p.take_repeats(t0 + RECENT / 2, false).is_empty());
        // Past it, a question is new again, and its repeats are written.
        let later = t0 + RECENT;
        assert_eq!(p.repeat(b"allowed", later), None);
        let counted = p.take_repeats(later, false);
        assert_eq!(counted.len(), 2);
        assert!(
            counted
                .iter()
                .any(|r| r.verdict == Verdict::Allow
                    && r.reason.contains("(2 more identical queries"))
        );
        assert!(p.recent.is_empty());
        assert_eq!(p.repeats_due(), None);
        // Closing takes them all, however recent.
        written(&mut p, b"allowed", later, Verdict::Allow);
        p.repeat(b"allowed", later);
        assert_eq!(p.take_repeats(later, true).len(), 1);
    }
}
