//! The streams of a running exec: the client's input, signals and answers
//! to the sandbox; the sandbox's output, network events and questions to
//! the client and the attachers, and last its exit, once its end is on
//! record. A client that stops listening has its sandbox killed.

use super::end::end_not_recorded;
use super::network::{approval_request, events_lost, show_net_event, NetShown, Pending};
use super::{resize, response};
use crate::api::attach::Watchers;
use crate::registry::Slot;
use crate::supervisor::{caller_signal, Control, ExitInfo, Handle, Output, Undelivered};
use pb::exec_request::Msg as In;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// The exec an output pump serves, as the daemon's log names it, and the
/// task that records its end.
pub(super) struct Pumped {
    pub(super) id: String,
    pub(super) uid: u32,
    pub(super) profile: String,
    pub(super) end: tokio::task::JoinHandle<(Slot, Vec<Out>)>,
}

/// The next message of an optional channel; never ready without one.
async fn recv<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Client messages to the sandbox. The end of the client's stream only means
/// no more input: the command's stdin is closed, unless the client closed
/// it already (`eof`: a second end of input would reach a terminal as a
/// second Ctrl-D). A broken stream means the client is gone: kill. A signal
/// refused is told to the client on `events` (when it has room for it).
pub(super) async fn pump_input(
    mut inbound: Streaming<pb::ExecRequest>,
    mut eof: bool,
    handle: Handle,
    pending: Pending,
    events: mpsc::WeakSender<Result<pb::ExecResponse, Status>>,
) {
    loop {
        let control = match inbound.message().await {
            Ok(Some(pb::ExecRequest { msg: Some(msg) })) => match msg {
                In::Stdin(data) => Control::Stdin(data),
                In::StdinEof(_) => {
                    eof = true;
                    Control::StdinEof
                }
                In::Signal(s) => Control::Signal(s.signal),
                In::Resize(w) => resize(&w),
                In::Approval(a) => {
                    pending.answer(&a);
                    continue;
                }
                In::Start(_) => continue,
            },
            Ok(Some(pb::ExecRequest { msg: None })) => continue,
            Ok(None) if eof => return,
            Ok(None) => {
                let _ = deliver(&handle, Control::StdinEof, &events).await;
                return;
            }
            Err(_) => Control::Kill("the client went away".into()),
        };
        let last = matches!(control, Control::Kill(_));
        if !deliver(&handle, control, &events).await || last {
            return;
        }
    }
}

/// Sends the client's `control` to the sandbox; false once the sandbox is
/// gone. A signal is checked first (see [`caller_signal`]); one refused is
/// dropped, and the client told on `events` without waiting (a client that
/// floods and does not read hears nothing).
pub(super) async fn deliver(
    handle: &Handle,
    control: Control,
    events: &mpsc::WeakSender<Result<pb::ExecResponse, Status>>,
) -> bool {
    let control = match control {
        Control::Signal(sig) => match caller_signal(sig, || "SIGKILL from the client".into()) {
            Ok(c) => c,
            Err(e) => {
                signal_refused(events, sig, e.to_string());
                return true;
            }
        },
        c => c,
    };
    match handle.send(control).await {
        Ok(()) => true,
        Err(Undelivered::Gone) => false,
        Err(e @ Undelivered::SignalsPending(sig)) => {
            signal_refused(events, sig, e.to_string());
            true
        }
    }
}

/// Tells the client, if it has room for it, that its signal `sig` was not sent.
fn signal_refused(
    events: &mpsc::WeakSender<Result<pb::ExecResponse, Status>>,
    sig: i32,
    message: String,
) {
    if let Some(tx) = events.upgrade() {
        let _ = tx.try_send(response(Out::Event(pb::Event {
            kind: "signal-refused".into(),
            message,
            fields: HashMap::from([("signal".to_string(), sig.to_string())]),
            ..Default::default()
        })));
    }
}

fn exit_message(e: ExitInfo) -> pb::ExecExit {
    pb::ExecExit {
        exited: e.code.is_some(),
        code: e.code.unwrap_or(0),
        signal: e.signal.unwrap_or(0),
        timed_out: e.timed_out,
        oom_killed: e.oom_killed,
        usage: Some(pb::Usage {
            wall_ms: e.wall.as_millis() as u64,
            user_ms: e.user.as_millis() as u64,
            system_ms: e.system.as_millis() as u64,
            max_rss_bytes: e.max_rss_bytes,
            memory_peak_bytes: e.memory_peak_bytes.unwrap_or(0),
            output_bytes: e.output_bytes,
            output_dropped_bytes: e.output_dropped_bytes,
        }),
        reason: e.reason.unwrap_or_default(),
    }
}

/// Sandbox output to the client and the attachers, until the exit, which
/// the client hears after its end is recorded (see [`record_end`]). If the
/// client stops listening, the sandbox is killed and drained.
///
/// [`record_end`]: super::end::record_end
pub(super) async fn pump_output(
    mut outputs: mpsc::Receiver<Output>,
    tx: mpsc::Sender<Result<pb::ExecResponse, Status>>,
    handle: Handle,
    mut net: Option<NetShown>,
    pending: Pending,
    watchers: Watchers,
    exec: Pumped,
) {
    let Pumped {
        id,
        uid,
        profile,
        end,
    } = exec;
    let profile = profile.as_str();
    let mut client = true;
    let mut asked = 0u64;
    // Network events not sent to the client, not yet reported as such.
    let mut lost = 0u64;
    let exit = loop {
        let out = if client {
            let (events, questions) = match net.as_mut() {
                Some(n) => (Some(&mut n.events), Some(&mut n.questions)),
                None => (None, None),
            };
            tokio::select! {
                out = outputs.recv() => out,
                Some(r) = recv(events) => {
                    lost += net.as_ref().map_or(0, |n| n.session.take_events_lost());
                    show_net_event(&r, &watchers, &tx, &mut lost);
                    continue;
                }
                Some((q, answer)) = recv(questions) => {
                    asked += 1;
                    let qid = format!("{id}-net-{asked}");
                    let request = approval_request(&qid, &q, profile);
                    pending.add(qid, answer);
                    let _ = tx.send(response(Out::Approval(request))).await;
                    continue;
                }
                _ = tx.closed() => {
                    client = false;
                    let _ = handle.send(Control::Kill("the client went away".into())).await;
                    continue;
                }
            }
        } else {
            outputs.recv().await
        };
        let Some(out) = out else { break None };
        let msg = match out {
            Output::Stdout(b) => Out::Stdout(b),
            Output::Stderr(b) => Out::Stderr(b),
            Output::Event { kind, message } => Out::Event(pb::Event {
                kind,
                message,
                ..Default::default()
            }),
            Output::Exit(e) => break Some(e),
        };
        watchers.publish(&msg);
        if client && tx.send(response(msg)).await.is_err() {
            client = false;
            let _ = handle
                .send(Control::Kill("the client went away".into()))
                .await;
        }
    };
    // The end is on record (its network stopped first) before the client hears of it.
    let (slot, told) = match end.await {
        Ok((slot, told)) => (Some(slot), told),
        Err(e) => {
            tracing::error!(uid, id, error = %e, "recording an exec's end");
            (None, vec![end_not_recorded("its recording task failed")])
        }
    };
    if let Some(mut n) = net.take() {
        // Decisions the loop did not take before the exit.
        while let Ok(r) = n.events.try_recv() {
            if client {
                show_net_event(&r, &watchers, &tx, &mut lost);
            }
        }
        lost += n.session.take_events_lost();
    }
    for event in told {
        watchers.publish(&event);
        if client {
            let _ = tx.send(response(event)).await;
        }
    }
    // Free before the client hears of the exit, so that its next exec is
    // not refused for this one under its limits.
    drop(slot);
    if client && lost > 0 {
        let _ = tx.send(response(events_lost(lost))).await;
    }
    match exit {
        Some(e) => {
            tracing::info!(
                uid,
                id,
                profile,
                code = e.code,
                signal = e.signal,
                timed_out = e.timed_out,
                oom_killed = e.oom_killed,
                reason = e.reason.as_deref().unwrap_or(""),
                client,
                "exec ended"
            );
            let exit = Out::Exit(exit_message(e));
            watchers.publish(&exit);
            if client {
                let _ = tx.send(response(exit)).await;
            }
        }
        None => {
            tracing::error!(uid, id, profile, "exec ended without an exit report");
            let _ = tx
                .send(Err(Status::internal(
                    "the sandbox's supervisor ended without an exit report",
                )))
                .await;
        }
    }
    watchers.close();
}
