//! The network side of an allowlist exec: the session and the thread that
//! serve its proxies and resolver, its decisions shown on the stream (a
//! slow client loses some there, never in the audit log), and the approval
//! requests sent to the client, awaiting its answer.

use super::response;
use crate::api::approvals::Reply;
use crate::api::attach::Watchers;
use crate::net::listen::{Listeners, NetThread, Served};
use crate::net::session::Answer;
use crate::net::{NetQuery, NetRecord, Session};
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Network events buffered towards the client before newer ones are dropped
/// from the stream (never from the audit log).
pub(super) const NET_EVENTS: usize = 64;

/// The network side of an allowlist exec whose sandbox is being made.
pub(super) struct NetPrepared {
    pub(super) thread: NetThread,
    pub(super) session: Arc<Session>,
    pub(super) events: mpsc::Receiver<NetRecord>,
    pub(super) questions: mpsc::Receiver<(NetQuery, oneshot::Sender<Answer>)>,
}

impl NetPrepared {
    /// Serves the sandbox's `listeners`.
    pub(super) fn serve(self, listeners: Listeners) -> NetRun {
        NetRun {
            served: self.thread.serve(listeners),
            shown: NetShown {
                session: self.session,
                events: self.events,
                questions: self.questions,
            },
        }
    }
}

/// The network side of a running allowlist exec.
pub(super) struct NetRun {
    /// Stopped at the exit: listeners closed, connections ended.
    pub(super) served: Served,
    pub(super) shown: NetShown,
}

/// What the client hears of the network: decisions and approval requests.
pub(super) struct NetShown {
    pub(super) session: Arc<Session>,
    pub(super) events: mpsc::Receiver<NetRecord>,
    pub(super) questions: mpsc::Receiver<(NetQuery, oneshot::Sender<Answer>)>,
}

/// Approval requests sent to the client, by id, awaiting its answer.
#[derive(Clone, Default)]
pub(super) struct Pending(Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>);

impl Pending {
    pub(super) fn add(&self, id: String, tx: oneshot::Sender<Answer>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
    }

    /// Routes the client's answer; unknown ids and unknown words are ignored
    /// (the request then times out as a deny).
    pub(super) fn answer(&self, a: &pb::ApprovalAnswer) {
        // A network answer holds for the request or the exec; nothing is saved.
        let answer = match Reply::parse(&a.decision) {
            Some(Reply::Once | Reply::Always) => Answer::Once,
            Some(Reply::Session) => Answer::Exec,
            Some(Reply::Deny) => Answer::Deny,
            None => return,
        };
        let tx = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&a.id);
        if let Some(tx) = tx {
            let _ = tx.send(answer);
        }
    }
}

/// A network decision as an event on the exec's stream.
fn net_event(r: &NetRecord) -> pb::Event {
    let what = match (&r.method, &r.path) {
        (Some(m), Some(p)) => format!("{m} {}:{}{p}", r.host, r.port),
        (Some(m), None) => format!("{m} {}:{}", r.host, r.port),
        _ => format!("{}:{}", r.host, r.port),
    };
    let outcome = match r.block {
        Some(b) => format!("{} blocked-by-{}", r.verdict.as_str(), b.as_str()),
        None => r.verdict.as_str().to_string(),
    };
    let mut fields = HashMap::from([
        ("protocol".to_string(), r.protocol.to_string()),
        ("host".to_string(), r.host.clone()),
        ("port".to_string(), r.port.to_string()),
        ("decision".to_string(), r.verdict.as_str().to_string()),
    ]);
    if let Some(b) = r.block {
        fields.insert("reason".into(), format!("blocked-by-{}", b.as_str()));
    }
    pb::Event {
        kind: "network".into(),
        message: format!("{outcome}: {} {what}: {}", r.protocol, r.reason),
        rule: r.rule.clone(),
        fields,
    }
}

/// Shows network decision `r` to the attachers and the client without
/// waiting: a slow client loses events rather than slowing the sandbox's
/// connections. `lost` counts them; once there is room again, a notice of
/// how many goes first.
pub(super) fn show_net_event(
    r: &NetRecord,
    watchers: &Watchers,
    tx: &mpsc::Sender<Result<pb::ExecResponse, Status>>,
    lost: &mut u64,
) {
    let event = Out::Event(net_event(r));
    watchers.publish(&event);
    if *lost > 0 && tx.try_send(response(events_lost(*lost))).is_ok() {
        *lost = 0;
    }
    if tx.try_send(response(event)).is_err() {
        *lost += 1;
    }
}

/// The event that says `n` network events were left out of the stream.
pub(super) fn events_lost(n: u64) -> Out {
    Out::Event(pb::Event {
        kind: "network-events-lost".into(),
        message: format!(
            "{n} network events were left out of this stream, which was read too slowly; the audit log has them all"
        ),
        fields: HashMap::from([("count".to_string(), n.to_string())]),
        ..Default::default()
    })
}

/// A question of the session as an approval request on the stream.
pub(super) fn approval_request(id: &str, q: &NetQuery, profile: &str) -> pb::ApprovalRequest {
    pb::ApprovalRequest {
        id: id.to_string(),
        kind: "network".into(),
        host: q.host.clone(),
        port: q.port.into(),
        method: q.method.clone().unwrap_or_default(),
        profile: profile.to_string(),
        rule: q.rule.clone(),
        ..Default::default()
    }
}
