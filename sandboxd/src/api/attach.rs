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
use crate::registry::RegistryError;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

pub type AttachStream = ReceiverStream<Result<pb::ExecResponse, Status>>;

/// Messages of one sandbox held for its attachers; the slowest loses the
/// oldest past this (at most this many output chunks are held per sandbox).
const RING: usize = 64;
/// Responses queued towards one attacher's connection.
const ATTACHER_BUFFER: usize = 4;
/// Attachers one sandbox may have at once: each holds a task and up to
/// [`ATTACHER_BUFFER`] responses, so their number is bounded too.
pub const MAX_ATTACHERS: usize = 16;

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
}

/// The fan-out of one sandbox's output to its attachers.
#[derive(Debug, Clone)]
pub struct Watchers(Arc<Mutex<Feed>>);

impl Default for Watchers {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(RING);
        Watchers(Arc::new(Mutex::new(Feed { tx, offset: 0 })))
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

    /// A new attacher: what is published from now on, and the offset it
    /// starts at; `None` when [`MAX_ATTACHERS`] are already attached.
    pub fn subscribe(&self) -> Option<(broadcast::Receiver<Watched>, u64)> {
        let feed = self.lock();
        (feed.tx.receiver_count() < MAX_ATTACHERS).then(|| (feed.tx.subscribe(), feed.offset))
    }
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
/// the attacher goes away.
async fn forward(
    id: String,
    mut rx: broadcast::Receiver<Watched>,
    mut next: u64,
    tx: mpsc::Sender<Result<pb::ExecResponse, Status>>,
) {
    let mut lagged = false;
    loop {
        let item = tokio::select! {
            r = rx.recv() => r,
            _ = tx.closed() => return,
        };
        let w = match item {
            Ok(w) => w,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                lagged = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => {
                let msg = format!("sandbox {id} ended without an exit report");
                let _ = tx.send(Err(Status::aborted(msg))).await;
                return;
            }
        };
        if lagged && w.offset > next && tx.send(response(missed(w.offset - next))).await.is_err() {
            return;
        }
        lagged = false;
        next = w.offset
            + match &w.msg {
                Out::Stdout(b) | Out::Stderr(b) => b.len() as u64,
                _ => 0,
            };
        let last = matches!(w.msg, Out::Exit(_));
        if tx.send(response(w.msg)).await.is_err() || last {
            return;
        }
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
        let (info, rx, start) = match self.registry.attach(&id, caller.uid, admin) {
            Ok(found) => found,
            Err(e) => return Err(self.attach_refused(&caller, &id, e).await),
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
        let (tx, rx_out) = mpsc::channel(ATTACHER_BUFFER);
        let started = pb::ExecStarted {
            id: id.clone(),
            profile: info.profile,
            policy_hash: info.policy_hash,
        };
        // The channel is empty: this cannot fail for lack of room.
        let _ = tx.try_send(response(Out::Started(started)));
        tokio::spawn(forward(id, rx, start, tx));
        Ok(ReceiverStream::new(rx_out))
    }

    /// A refused attach: logged, recorded as the caller's refusal, and
    /// answered as a kill of the same id would be.
    async fn attach_refused(&self, caller: &Caller, id: &str, e: RegistryError) -> Status {
        let rule = match e {
            RegistryError::NotOwner { .. } => "owner",
            RegistryError::Attachers { .. } => "attachers",
            _ => "id",
        };
        tracing::info!(uid = caller.uid, error = %e, "attach refused");
        let status = registry_status(e);
        let record = json!({
            "id": crate::audit::bounded_text(id, crate::audit::REFUSED_ID_BYTES),
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "request": "attach",
            "rule": rule,
            "message": crate::audit::bounded_text(status.message(), crate::audit::REFUSED_TEXT_BYTES),
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
        let (rx, start) = w.subscribe().unwrap();
        assert_eq!(start, 5);
        let (tx, out) = mpsc::channel(RING * 2);
        let task = tokio::spawn(forward("a".into(), rx, start, tx));
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
        let (rx, start) = w.subscribe().unwrap();
        // Publishing never waits: the ring overflows past the attacher.
        for _ in 0..RING + 10 {
            w.publish(&stdout(100));
        }
        w.publish(&Out::Exit(pb::ExecExit::default()));
        drop(w);
        let (tx, out) = mpsc::channel(RING * 2);
        forward("a".into(), rx, start, tx).await;
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
        let (rx, start) = w.subscribe().unwrap();
        drop(w);
        let (tx, mut out) = mpsc::channel(4);
        forward("a".into(), rx, start, tx).await;
        let err = out.recv().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
    }
}
