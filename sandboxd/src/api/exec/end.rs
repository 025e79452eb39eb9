//! The end of an exec on record: its exit and usage, and the files its
//! sandbox left for git on the host, written as soon as the sandbox has
//! ended, however slowly its client reads; and what the client should hear
//! of them.

use crate::audit::{self, AuditLog};
use crate::gitwatch::{Change, GitWatch};
use crate::identity::Caller;
use crate::net::listen::Served;
use crate::registry::Slot;
use crate::supervisor::ExitInfo;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use tokio::sync::oneshot;

/// Who the end of an exec is recorded for, and the slot it frees.
pub(super) struct Ends {
    pub(super) caller: Caller,
    pub(super) slot: Slot,
    pub(super) audit: Arc<AuditLog>,
    /// Set once the command may start.
    pub(super) watch: Arc<OnceLock<GitWatch>>,
}

/// Records the end of an exec as soon as its sandbox has ended, however
/// slowly its client reads: its network services stopped first (what their
/// connections did is on disk before the end), then the end, then the slot
/// marked ended (a stopping daemon waits for every end on record; the slot
/// stays taken while the output is on its way, so that the limits bound
/// what waits for slow clients). Files the sandbox left for git on the host
/// are looked for first (see [`GitWatch`]) and go on the record. The slot
/// back, and what the client should hear: those files, and an end that
/// could not be recorded.
pub(super) async fn record_end(
    exited: oneshot::Receiver<ExitInfo>,
    served: Option<Served>,
    ends: Ends,
) -> (Slot, Vec<Out>) {
    let Ends {
        caller,
        slot,
        audit,
        watch,
    } = ends;
    let exit = exited.await.ok();
    if let Some(s) = served {
        s.stop().await;
    }
    let id = slot.id().to_string();
    let git = match watch.get() {
        Some(w) if w.reads_dirs() => tokio::task::spawn_blocking(move || {
            watch.get().map(|w| w.changes(&id)).unwrap_or_default()
        })
        .await
        .unwrap_or_default(),
        // One lookup of `.git` a root.
        Some(w) => w.changes(&id),
        None => Vec::new(),
    };
    let mut record = match &exit {
        Some(e) => json!({
            "id": slot.id(),
            "uid": caller.uid,
            "code": e.code,
            "signal": e.signal,
            "timed_out": e.timed_out,
            "oom_killed": e.oom_killed,
            "reason": e.reason,
            "usage": {
                "wall_ms": e.wall.as_millis() as u64,
                "user_ms": e.user.as_millis() as u64,
                "system_ms": e.system.as_millis() as u64,
                "max_rss_bytes": e.max_rss_bytes,
                "memory_peak_bytes": e.memory_peak_bytes,
                "output_bytes": e.output_bytes,
                "output_dropped_bytes": e.output_dropped_bytes,
            },
        }),
        None => json!({
            "id": slot.id(),
            "uid": caller.uid,
            "reason": "the sandbox's supervisor ended without an exit report",
        }),
    };
    if let (Value::Object(fields), false) = (&mut record, git.is_empty()) {
        let changes: Vec<Value> = git.iter().map(git_change).collect();
        fields.insert("git".into(), Value::Array(changes));
    }
    let mut told: Vec<Out> = git
        .iter()
        .map(|c| {
            tracing::warn!(uid = caller.uid, id = slot.id(), path = %c.path.display(), what = c.what, "a sandbox left a file git reads");
            Out::Event(pb::Event {
                kind: "git".into(),
                message: c.describe(),
                ..Default::default()
            })
        })
        .collect();
    if let Err(e) = audit.append_done("exec-end", record).await {
        tracing::error!(uid = caller.uid, id = slot.id(), error = %e, "recording an exec's end");
        told.push(end_not_recorded(e));
    }
    slot.end();
    (slot, told)
}

/// A [`Change`] as the `git` field of an `exec-end` record.
fn git_change(c: &Change) -> Value {
    let mut v = json!({
        "path": audit::bounded_text(&c.path.to_string_lossy(), audit::TEXT_BYTES),
        "change": c.what,
    });
    match (&c.moved, &mut v) {
        (Some(Ok(to)), Value::Object(f)) => {
            f.insert("moved_to".into(), to.to_string_lossy().into());
        }
        (Some(Err(e)), Value::Object(f)) => {
            f.insert("move_failed".into(), e.clone().into());
        }
        _ => {}
    }
    v
}

/// The event that tells a client its exec ran (its start is on record) but
/// its end could not be recorded.
pub(super) fn end_not_recorded(why: impl std::fmt::Display) -> Out {
    Out::Event(pb::Event {
        kind: "audit".into(),
        message: format!("the end of this exec could not be recorded: {why}"),
        ..Default::default()
    })
}
