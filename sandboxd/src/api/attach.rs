//! Attach: a read-only view of a running sandbox for its owner (admins: any
//! sandbox). The attacher gets what the sandbox writes from the moment it
//! attaches, its events and its exit; it sends nothing to the sandbox, and
//! hanging up leaves the sandbox running.
//!
//! The exec's output pump publishes each message once into a bounded
//! broadcast ring ([`Watchers`]); it never waits for an attacher. An attacher
//! that falls behind loses the oldest messages and is told how many output
//! bytes it missed; one that goes away is dropped.

use super::{caller, registry_status, Api};
use crate::identity::Caller;
use crate::quota::{Quota, Slot};
use crate::registry::RegistryError;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Status};

/// An attacher's responses; its place among the open attach streams
/// ([`OPEN`]) is held until the stream is dropped.
pub struct AttachStream {
    responses: ReceiverStream<Result<pb::ExecResponse, Status>>,
    _slot: Slot,
}

impl Stream for AttachStream {
    type Item = Result<pb::ExecResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.responses).poll_next(cx)
    }
}

/// Messages of one sandbox held for its attachers; the slowest loses the
/// oldest past this (at most this many output chunks are held per sandbox).
const RING: usize = 64;
/// Responses queued towards one attacher's connection.
const ATTACHER_BUFFER: usize = 4;
/// Attachers one sandbox may have at once: each holds a task and up to
/// [`ATTACHER_BUFFER`] responses, so their number is bounded too.
pub const MAX_ATTACHERS: usize = 16;
/// How long an attacher that fell behind may take, once the sandbox has
/// ended, to catch up before it skips to the exit.
const DRAIN: Duration = Duration::from_secs(2);
/// Attach streams open at once, per uid and in all (each holds a task, up
/// to [`ATTACHER_BUFFER`] responses and its sandbox's ring while it runs).
const STREAMS_PER_UID: usize = 32;
const STREAMS: usize = 256;

/// Open attach streams.
static OPEN: std::sync::LazyLock<Arc<Quota>> =
    std::sync::LazyLock::new(|| Quota::new(STREAMS_PER_UID, STREAMS));

/// One published message and the output bytes published before it, from
/// which an attacher that lagged learns how many it missed.
#[derive(Debug, Clone)]
pub struct Watched {
    offset: u64,
    msg: Out,
}

#[derive(Debug)]
struct Feed {
    tx: broadcast::Sender<Watched>,
    /// Output bytes published so far.
    offset: u64,
    /// Set once nothing more will be published (the exec has ended).
    ended: watch::Sender<bool>,
}

/// The fan-out of one sandbox's output to its attachers.
#[derive(Debug, Clone)]
pub struct Watchers(Arc<Mutex<Feed>>);

impl Default for Watchers {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(RING);
        let (ended, _) = watch::channel(false);
        Watchers(Arc::new(Mutex::new(Feed {
            tx,
            offset: 0,
            ended,
        })))
    }
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        // Updates are single assignments: a panic cannot leave them half done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `msg` to the current attachers without waiting for any of them;
    /// with none, it costs a lock and a count.
    pub fn publish(&self, msg: &Out) {
        let len = match msg {
            Out::Stdout(b) | Out::Stderr(b) => b.len() as u64,
            _ => 0,
        };
        let mut feed = self.lock();
        if feed.tx.receiver_count() > 0 {
            let offset = feed.offset;
            // Fails only when the last attacher left meanwhile.
            let _ = feed.tx.send(Watched {
                offset,
                msg: msg.clone(),
            });
        }
        feed.offset += len;
    }

    /// Says that nothing more will be published: attachers that fall
    /// behind then get [`DRAIN`] to catch up before they skip to the end.
    pub fn close(&self) {
        self.lock().ended.send_replace(true);
    }

    /// A new attacher: what is published from now on, and the offset it
    /// starts at; `None` when [`MAX_ATTACHERS`] are already attached.
    pub fn subscribe(&self) -> Option<Subscription> {
        let feed = self.lock();
        (feed.tx.receiver_count() < MAX_ATTACHERS).then(|| Subscription {
            rx: feed.tx.subscribe(),
            offset: feed.offset,
            ended: feed.ended.subscribe(),
        })
    }
}

/// One attacher's view of a [`Watchers`].
#[derive(Debug)]
pub struct Subscription {
    /// What is published from the moment of subscribing.
    pub rx: broadcast::Receiver<Watched>,
    /// The output offset the subscription starts at.
    pub offset: u64,
    /// Turns true when nothing more will be published.
    ended: watch::Receiver<bool>,
}

fn response(msg: Out) -> Result<pb::ExecResponse, Status> {
    Ok(pb::ExecResponse { msg: Some(msg) })
}

/// The event telling an attacher that it fell behind.
fn missed(bytes: u64) -> Out {
    Out::Event(pb::Event {
        kind: "attach-missed".into(),
        message: format!(
            "{bytes} bytes of output were not shown here: this attacher fell behind (the sandbox was not slowed)"
        ),
        rule: String::new(),
        fields: HashMap::from([("bytes".to_string(), bytes.to_string())]),
    })
}

/// Copies the sandbox's messages to one attacher until the exit, or until
/// the attacher goes away. Room for the last two messages (what it missed,
/// and the exit) is kept from the start; once the sandbox has ended, an
/// attacher that has not caught up within [`DRAIN`] skips to the exit, so
/// that its stream ends and the ring is let go whether or not it reads.
async fn forward(
    id: String,
    sub: Subscription,
    tx: mpsc::Sender<Result<pb::ExecResponse, Status>>,
) {
    let Subscription {
        mut rx,
        offset: mut next,
        mut ended,
    } = sub;
    let (Ok(notice), Ok(last)) = (
        tx.clone().reserve_owned().await,
        tx.clone().reserve_owned().await,
    ) else {
        return;
    };
    let mut lagged = false;
    // A message taken from the ring, not yet queued (a notice went first).
    let mut owed: Option<Watched> = None;
    let mut cut_at: Option<Instant> = None;
    let last_msg = loop {
        let permit = tokio::select! {
            p = tx.reserve() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = ended.wait_for(|e| *e), if cut_at.is_none() => {
                // Ended, or its feed is gone: from now on, a deadline.
                cut_at = Some(Instant::now() + DRAIN);
                continue;
            }
            _ = sleep_until_opt(cut_at) => {
                break match owed.take() {
                    Some(w) if matches!(w.msg, Out::Exit(_)) => Some(w),
                    _ => skip_to_end(&mut rx),
                };
            }
        };
        let w = match owed.take() {
            Some(w) => w,
            None => {
                let item = tokio::select! {
                    r = rx.recv() => r,
                    _ = tx.closed() => return,
                };
                match item {
                    Ok(w) => w,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        lagged = true;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break None,
                }
            }
        };
        if std::mem::take(&mut lagged) && w.offset > next {
            permit.send(response(missed(w.offset - next)));
            next = w.offset;
            owed = Some(w);
            continue;
        }
        let exit = matches!(w.msg, Out::Exit(_));
        next = w.offset
            + match &w.msg {
                Out::Stdout(b) | Out::Stderr(b) => b.len() as u64,
                _ => 0,
            };
        permit.send(response(w.msg));
        if exit {
            return;
        }
    };
    // The ring is let go before the last messages are queued.
    drop(rx);
    match last_msg {
        Some(w) => {
            if w.offset > next {
                notice.send(response(missed(w.offset - next)));
            }
            last.send(response(w.msg));
        }
        None => {
            let msg = format!("sandbox {id} ended without an exit report");
            last.send(Err(Status::aborted(msg)));
        }
    }
}

/// Skips what an attacher did not take, up to the exit (`None` if there is
/// none: the exec ended without one).
fn skip_to_end(rx: &mut broadcast::Receiver<Watched>) -> Option<Watched> {
    loop {
        match rx.try_recv() {
            Ok(w) if matches!(w.msg, Out::Exit(_)) => return Some(w),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return None,
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Api {
    /// Attaches `caller` to sandbox `id` if they own it or are an admin; the
    /// attach, or its refusal, is recorded in the audit log first.
    pub(super) async fn attach_stream(
        &self,
        request: Request<pb::AttachRequest>,
    ) -> Result<AttachStream, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        let admin = caller.is_admin(self.admin_gid);
        let Some(slot) = OPEN.take(caller.uid) else {
            let (mine, all) = OPEN.held(caller.uid);
            let status = Status::resource_exhausted(format!(
                "too many attach streams open ({mine} of uid {}, {all} in all; at most {STREAMS_PER_UID} per uid, {STREAMS} in all)",
                caller.uid
            ));
            return Err(self
                .attach_refused(&caller, &id, "attach_streams", status)
                .await);
        };
        let (info, sub) = match self.registry.attach(&id, caller.uid, admin) {
            Ok(found) => found,
            Err(e) => {
                let rule = match e {
                    RegistryError::NotOwner { .. } => "owner",
                    RegistryError::Attachers { .. } => "attachers",
                    _ => "id",
                };
                let status = registry_status(e);
                return Err(self.attach_refused(&caller, &id, rule, status).await);
            }
        };
        let record = json!({
            "id": id,
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "owner": info.uid,
            "decision": "allow",
        });
        if let Err(e) = self.audit.append("attach", record).await {
            tracing::error!(uid = caller.uid, id, error = %e, "recording an attach");
            return Err(Status::failed_precondition(format!(
                "not attached to sandbox {id}, as it cannot be audited: {e}"
            )));
        }
        tracing::info!(
            uid = caller.uid,
            caller_pid = caller.pid,
            id,
            owner = info.uid,
            "attach"
        );
        // Room for ExecStarted, then the buffer, then the two kept for the end.
        let (tx, rx_out) = mpsc::channel(1 + ATTACHER_BUFFER + 2);
        let started = pb::ExecStarted {
            id: id.clone(),
            profile: info.profile,
            policy_hash: info.policy_hash,
        };
        // The channel is empty: this cannot fail for lack of room.
        let _ = tx.try_send(response(Out::Started(started)));
        tokio::spawn(forward(id, sub, tx));
        Ok(AttachStream {
            responses: ReceiverStream::new(rx_out),
            _slot: slot,
        })
    }

    /// A refused attach: logged, recorded as the caller's refusal under
    /// `rule`, and answered with `status`.
    async fn attach_refused(
        &self,
        caller: &Caller,
        id: &str,
        rule: &str,
        status: Status,
    ) -> Status {
        tracing::info!(uid = caller.uid, error = %status.message(), "attach refused");
        let record = json!({
            "id": crate::audit::bounded_text(id, crate::audit::REFUSED_ID_BYTES),
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "request": "attach",
            "rule": rule,
            "message": crate::audit::bounded_text(status.message(), crate::audit::TEXT_BYTES),
        });
        if let Err(e) = self.audit.append_counted("refusal", record).await {
            tracing::error!(uid = caller.uid, error = %e, "recording a refusal");
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdout(n: usize) -> Out {
        Out::Stdout(vec![b'x'; n])
    }

    async fn collect(mut rx: mpsc::Receiver<Result<pb::ExecResponse, Status>>) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(Ok(r)) = rx.recv().await {
            out.extend(r.msg);
        }
        out
    }

    #[tokio::test]
    async fn an_attacher_sees_what_follows_its_attach_then_the_exit() {
        let w = Watchers::default();
        w.publish(&stdout(5));
        let sub = w.subscribe().unwrap();
        assert_eq!(sub.offset, 5);
        let (tx, out) = mpsc::channel(RING * 2);
        let task = tokio::spawn(forward("a".into(), sub, tx));
        w.publish(&Out::Stderr(b"err".to_vec()));
        w.publish(&stdout(2));
        w.publish(&Out::Exit(pb::ExecExit::default()));
        drop(w);
        task.await.unwrap();
        let got = collect(out).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Out::Stderr(b"err".to_vec()));
        assert_eq!(got[1], stdout(2));
        assert!(matches!(got[2], Out::Exit(_)));
    }

    #[tokio::test]
    async fn a_lagging_attacher_is_told_how_many_bytes_it_missed() {
        let w = Watchers::default();
        let sub = w.subscribe().unwrap();
        // Publishing never waits: the ring overflows past the attacher.
        for _ in 0..RING + 10 {
            w.publish(&stdout(100));
        }
        w.publish(&Out::Exit(pb::ExecExit::default()));
        drop(w);
        let (tx, out) = mpsc::channel(RING * 2);
        forward("a".into(), sub, tx).await;
        let got = collect(out).await;
        let Out::Event(e) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(e.kind, "attach-missed");
        let missed: u64 = e.fields["bytes"].parse().unwrap();
        let shown = got.iter().filter(|m| matches!(m, Out::Stdout(_))).count() as u64;
        assert_eq!(missed + shown * 100, (RING as u64 + 10) * 100);
        assert!(matches!(got.last(), Some(Out::Exit(_))));
    }

    #[test]
    fn attachers_are_bounded() {
        let w = Watchers::default();
        let held: Vec<_> = (0..MAX_ATTACHERS).map(|_| w.subscribe().unwrap()).collect();
        assert!(w.subscribe().is_none());
        drop(held);
        assert!(w.subscribe().is_some());
    }

    #[tokio::test]
    async fn a_sandbox_gone_without_an_exit_ends_the_attach_with_an_error() {
        let w = Watchers::default();
        let sub = w.subscribe().unwrap();
        drop(w);
        let (tx, mut out) = mpsc::channel(4);
        forward("a".into(), sub, tx).await;
        let err = out.recv().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
    }

    /// An attacher that does not read: once the sandbox has ended, its
    /// stream gets what it missed and the exit within [`DRAIN`], and the
    /// ring is let go, though nothing more was read.
    #[tokio::test]
    async fn an_attacher_that_does_not_read_ends_with_the_sandbox() {
        let w = Watchers::default();
        let sub = w.subscribe().unwrap();
        let (tx, mut out) = mpsc::channel(ATTACHER_BUFFER + 2);
        let task = tokio::spawn(forward("a".into(), sub, tx));
        for _ in 0..RING {
            w.publish(&stdout(1000));
        }
        w.publish(&Out::Exit(pb::ExecExit {
            code: 3,
            exited: true,
            ..Default::default()
        }));
        w.close();
        let ended = tokio::time::Instant::now();
        tokio::time::timeout(DRAIN * 3, task)
            .await
            .expect("the attacher's task outlived the sandbox")
            .unwrap();
        assert!(ended.elapsed() >= DRAIN, "cut before the drain");
        assert_eq!(w.lock().tx.receiver_count(), 0, "the ring is still held");
        let mut got = Vec::new();
        while let Ok(Ok(r)) = out.try_recv() {
            got.extend(r.msg);
        }
        let kinds: Vec<String> = got.iter().map(|m| format!("{m:.20?}")).collect();
        let shown: usize = got
            .iter()
            .map(|m| match m {
                Out::Stdout(b) => b.len(),
                _ => 0,
            })
            .sum();
        let missed: usize = got
            .iter()
            .map(|m| match m {
                Out::Event(e) => e.fields["bytes"].parse::<usize>().unwrap(),
                _ => 0,
            })
            .sum();
        assert!(shown <= ATTACHER_BUFFER * 1000, "{kinds:?}");
        assert_eq!(shown + missed, RING * 1000, "{kinds:?}");
        let [.., Out::Event(_), Out::Exit(x)] = got.as_slice() else {
            panic!("{kinds:?}")
        };
        assert_eq!(x.code, 3);
    }
}
