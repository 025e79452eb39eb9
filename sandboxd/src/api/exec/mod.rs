//! Exec: admit, resolve the policy, plan, record the start in the audit log,
//! spawn, then pump the streams until the exit. A client that goes away takes
//! its sandbox with it. Output, events and the exit are also published to the
//! sandbox's attachers (see attach.rs), never waiting for them.

mod end;
mod network;
mod pump;
mod start;

use super::approvals::{Approved, Conversation, Grant};
use super::attach::Watchers;
use super::{bounded, caller_text, registry_status, Api};
use crate::audit;
use crate::backend::linux::{self, netns, SpawnError};
use crate::gitwatch::GitWatch;
use crate::identity::{Account, Caller};
use crate::net::addr::host_addresses;
use crate::net::listen::{Listeners, NetThread};
use crate::net::{NetPolicy, Session};
use crate::plan;
use crate::policy::{resolve, EffectivePolicy, PolicyStore};
use crate::registry::{Info, Slot, ARGV_BYTES};
use crate::supervisor::{self, Control};
use end::{record_end, Ends};
use network::{NetPrepared, Pending, NET_EVENTS};
use pb::exec_request::Msg as In;
use pb::exec_response::Msg as Out;
use pump::{deliver, pump_input, pump_output, Pumped};
use sandbox_proto::v1 as pb;
use serde_json::{json, Value};
use start::{narrowing, overlong_text, past_execve_limits, policy_refusal, refuse, Refusal};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub type ExecStream = ReceiverStream<Result<pb::ExecResponse, Status>>;

/// How long an Exec stream may take to send its ExecStart: until then it
/// holds one of its caller's requests (see requests.rs) for nothing.
const START_WAIT: Duration = Duration::from_secs(10);
/// Responses buffered towards a slow client (each at most one output chunk).
const RESPONSE_BUFFER: usize = 16;

fn response(msg: Out) -> Result<pb::ExecResponse, Status> {
    Ok(pb::ExecResponse { msg: Some(msg) })
}

impl Api {
    pub(super) async fn run_exec(
        &self,
        caller: Caller,
        mut inbound: Streaming<pb::ExecRequest>,
    ) -> Result<ExecStream, Status> {
        let first = tokio::time::timeout(START_WAIT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!("no ExecStart within {START_WAIT:?}"))
            })?;
        let start = match first?.and_then(|m| m.msg) {
            Some(In::Start(s)) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of Exec must be ExecStart",
                ))
            }
        };
        let name = if start.profile.is_empty() {
            PolicyStore::DEFAULT.to_string()
        } else {
            start.profile.clone()
        };
        match self.start_exec(&caller, &start, &name, inbound).await {
            Ok(stream) => Ok(stream),
            Err(r) => Err(self.refused(&caller, &start, &name, r).await),
        }
    }

    /// A refusal: logged, and recorded in the audit log, with the caller and
    /// the rule; returns its status, bounded (see [`bounded`]). A refusal
    /// that cannot be recorded is still a refusal: the failure is only logged.
    async fn refused(
        &self,
        caller: &Caller,
        start: &pb::ExecStart,
        profile: &str,
        r: Refusal,
    ) -> Status {
        // What the caller wrote is kept bounded (a refusal costs it nothing).
        let text = |s: &str| audit::bounded_text(s, audit::TEXT_BYTES);
        let (profile, message, rule) = (text(profile), text(r.status.message()), text(&r.rule));
        tracing::info!(
            uid = caller.uid,
            caller_pid = caller.pid,
            profile,
            rule,
            reason = message,
            "exec refused"
        );
        let mut record = json!({
            "id": r.id,
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "cwd": text(&start.cwd),
            "profile": profile,
            "rule": rule,
            "message": message,
        });
        if let Value::Object(fields) = &mut record {
            fields.extend(audit::words_fields(
                "argv",
                &start.argv,
                audit::REFUSED_ARGV_BYTES,
            ));
        }
        if let Err(e) = self.audit.append_counted("refusal", record).await {
            tracing::error!(uid = caller.uid, error = %e, "recording a refusal");
        }
        bounded(r.status)
    }

    /// Admits, checks and plans the exec, records its start, spawns it and
    /// starts pumping its streams.
    async fn start_exec(
        &self,
        caller: &Caller,
        start: &pb::ExecStart,
        name: &str,
        inbound: Streaming<pb::ExecRequest>,
    ) -> Result<ExecStream, Refusal> {
        let caller = caller.clone();
        let name = name.to_string();
        // Managed, or the caller's own user profile (read now, from their home).
        let env_home = start.env.get("HOME").map(String::as_str);
        let account = Account::of(caller.uid);
        let profile = self
            .profile(&caller, account.as_ref(), env_home, &name)
            .map_err(|s| refuse("profile", s))?;
        let profile = &*profile;
        if caller.uid == 0 && !profile.allow_root.value {
            let msg = format!(
                "root callers may not use profile {name}: it does not set allow_root (rule: allow_root, {})",
                profile.allow_root.origin
            );
            return Err(refuse("allow_root", Status::permission_denied(msg)));
        }
        if start.argv.is_empty() || start.argv[0].is_empty() {
            return Err(refuse("argv", Status::invalid_argument("argv is empty")));
        }
        if let Some(why) = past_execve_limits(&start.argv) {
            return Err(refuse("argv", Status::invalid_argument(why)));
        }
        let cwd = PathBuf::from(&start.cwd);
        if !cwd.is_absolute() {
            let msg = format!("cwd {:?} is not an absolute path", caller_text(&start.cwd));
            return Err(refuse("cwd", Status::invalid_argument(msg)));
        }
        if let Some((field, why)) = overlong_text(start) {
            return Err(refuse(field, Status::invalid_argument(why)));
        }
        let narrow = narrowing(start).map_err(|s| refuse("approval", s))?;
        // Secrets the caller brings are for the proxy, never the command.
        let env = start
            .env
            .iter()
            .filter(|(k, _)| !start.secrets.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let set_env = start.set_env.clone().into_iter().collect();
        let ctx = plan::exec_context(&caller, account.as_ref(), cwd.clone(), env, set_env);
        // The user name, for the secrets `[secrets] users` gives them.
        let user = account.map(|a| a.name);
        let policy = resolve(profile, &ctx, &narrow).map_err(policy_refusal)?;
        // What a person must approve first: commands and escalations.
        let gate = self
            .approvals
            .gate(&caller, start, profile, &policy)
            .await
            .map_err(policy_refusal)?;
        // Admitted before anything is asked: an exec waiting for an answer
        // counts against the limits too.
        let slot = self
            .registry
            .admit(caller.uid)
            .map_err(|e| refuse("limits", registry_status(e)))?;
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        // The exec goes on in a task of its own, so that a client going away
        // cannot cut it between its start record and the rest (its end
        // record, its cleanup). The client hears any question, and any
        // refusal, on the stream, so it gets the stream first.
        let api = self.clone();
        let (start, profile) = (start.clone(), profile.clone());
        tokio::spawn(async move {
            let mut inbound = inbound;
            let outcome = async {
                let approved = if gate.asks() {
                    let conversation = Conversation {
                        caller: &caller,
                        start: &start,
                        profile: &profile,
                        audit: &api.audit,
                        tx: &tx,
                        inbound: &mut inbound,
                        registry: &api.registry,
                    };
                    api.approvals
                        .ask(gate, conversation)
                        .await
                        .map_err(policy_refusal)?
                } else {
                    // Escalations remembered for the session: granted, and recorded as such.
                    Approved {
                        grants: gate.granted().to_vec(),
                        ..Approved::default()
                    }
                };
                let policy = match approved.grants.as_slice() {
                    [] => policy,
                    g => resolve(&api.approvals.widen(&profile, g), &ctx, &narrow)
                        .map_err(policy_refusal)?,
                };
                api.launch(
                    &caller,
                    user.as_deref(),
                    &start,
                    &name,
                    policy,
                    inbound,
                    tx.clone(),
                    approved,
                    slot,
                )
                .await
            }
            .await;
            if let Err(r) = outcome {
                let status = api.refused(&caller, &start, &name, r).await;
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Plans the exec under its final policy, records its start, spawns it,
    /// replays what the client sent while it was asked, and starts pumping
    /// its streams into `tx`.
    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        caller: &Caller,
        user: Option<&str>,
        start: &pb::ExecStart,
        name: &str,
        policy: EffectivePolicy,
        inbound: Streaming<pb::ExecRequest>,
        tx: mpsc::Sender<Result<pb::ExecResponse, Status>>,
        approved: Approved,
        slot: Slot,
    ) -> Result<(), Refusal> {
        let caller = caller.clone();
        let name = name.to_string();
        let cwd = PathBuf::from(&start.cwd);
        let secrets = match &policy.net {
            Some(_) => self.secrets_for(&caller, user, start)?,
            None => BTreeMap::new(),
        };
        let sockets = plan::read_host_sockets().map_err(|e| {
            let msg = format!("reading /proc/net/unix to hide host sockets: {e}");
            refuse("host_sockets", Status::failed_precondition(msg))
        })?;
        let req = plan::Request {
            id: slot.id().to_string(),
            argv: start.argv.clone(),
            cwd: cwd.clone(),
            tty: start.tty,
        };
        let mut plan = plan::build(&policy, &caller, req, &self.paths, &sockets)
            .map_err(|e| refuse("network", Status::failed_precondition(e.to_string())))?;
        plan.limits.user = self.registry.limits().share(caller.uid);
        plan.spec.nproc = self.registry.limits().tasks_per_user(caller.uid);
        // Nothing runs unaudited: the sandbox is built while its start is
        // written, and its command executes only once the record is on disk.
        // What the caller wrote is kept bounded: every run writes one.
        let mut record = json!({
            "id": slot.id(),
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "cwd": audit::bounded_text(&start.cwd, audit::TEXT_BYTES),
            "profile": name,
            "policy_hash": policy.hash,
            "decision": "allow",
            "approvals": approved.ids,
        });
        let escalation: Vec<String> = approved.grants.iter().map(Grant::describe).collect();
        if let Value::Object(fields) = &mut record {
            fields.extend(audit::words_fields(
                "argv",
                &start.argv,
                audit::EXEC_ARGV_BYTES,
            ));
            fields.extend(audit::words_fields(
                "escalation",
                &escalation,
                audit::TEXT_BYTES,
            ));
        }
        // What git on the host would take from the repositories it can
        // write, as it was before the command runs (looked at meanwhile).
        let watch = Arc::new(OnceLock::new());
        let (roots, cell, uid) = (policy.write.clone(), Arc::clone(&watch), caller.uid);
        let audited = async {
            if self.registry.is_closing() {
                return Err("not run: sandboxd is shutting down".to_string());
            }
            let looked = tokio::task::spawn_blocking(move || {
                let _ = cell.set(GitWatch::start(&roots, uid));
            });
            let written = self.audit.append("exec-start", record).await;
            let _ = looked.await;
            match written {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("not run, as it cannot be audited: {e}")),
            }
        };
        let spawn_failed = |e: SpawnError| match e {
            SpawnError::Withheld(msg) if self.registry.is_closing() => {
                refuse("shutdown", Status::unavailable(msg))
            }
            SpawnError::Withheld(msg) => refuse("audit", Status::failed_precondition(msg)),
            e => Refusal {
                id: Some(slot.id().to_string()),
                ..refuse("spawn", Status::failed_precondition(e.to_string()))
            },
        };
        // Allowlist sandboxes get the daemon's listeners bound inside before
        // their command starts, served by a thread made beforehand.
        let (spawned, net) = match policy.net.clone() {
            Some(net_policy) => {
                let prepared = self
                    .prepare_network(&caller, slot.id(), start, net_policy, secrets)
                    .map_err(|e| {
                        let msg = format!("the sandbox's network could not be served: {e}");
                        refuse("network", Status::resource_exhausted(msg))
                    })?;
                let bind = |ns: &OwnedFd| netns::within(ns, Listeners::bind);
                let (spawned, listeners) =
                    linux::spawn_with(&plan.spec, &plan.limits, &self.init_exe, bind, audited)
                        .await
                        .map_err(spawn_failed)?;
                // Bound whenever the spawn succeeds.
                let net = listeners.map(|l| prepared.serve(l));
                (spawned, net)
            }
            None => {
                let no_net = |_: &OwnedFd| Ok(());
                let (s, _) =
                    linux::spawn_with(&plan.spec, &plan.limits, &self.init_exe, no_net, audited)
                        .await
                        .map_err(spawn_failed)?;
                (s, None)
            }
        };
        let pid = spawned.pid;
        // Long-running sandboxes yield the CPU to short execs (see fair.rs).
        crate::fair::lower_later(pid, spawned.cgroup.cpu());
        let (handle, outputs, exited) = supervisor::supervise(spawned, plan.options);
        if let Some(w) = start.window.as_ref().filter(|_| start.tty) {
            let _ = handle.send(resize(w)).await;
        }
        let info = Info {
            id: slot.id().to_string(),
            uid: caller.uid,
            pid,
            argv: audit::bounded_words(&start.argv, ARGV_BYTES),
            cwd,
            profile: name.clone(),
            policy_hash: policy.hash.clone(),
            session: start.session.clone(),
            started: SystemTime::now(),
            caller_pid: caller.pid,
        };
        let watchers = Watchers::default();
        slot.run(info, handle.clone(), watchers.clone()).await;
        tracing::info!(
            uid = caller.uid, caller_pid = caller.pid, id = slot.id(), profile = %name, pid,
            policy_hash = %policy.hash,
            argv = %audit::bounded_text(&crate::policy::shell::command_line(&start.argv), audit::TEXT_BYTES),
            "exec started"
        );

        let started = pb::ExecStarted {
            id: slot.id().to_string(),
            profile: name.clone(),
            policy_hash: policy.hash,
        };
        // A closed channel is seen below.
        let _ = tx.send(response(Out::Started(started))).await;
        let pending = Pending::default();
        // What the client sent while it was asked goes first, from the input
        // task: the output is pumped meanwhile, so a command that fills its
        // output before reading its input cannot hold the replay up.
        let early = approved.early;
        let eof = early.iter().any(|c| matches!(c, Control::StdinEof));
        let (h, p, events) = (handle.clone(), pending.clone(), tx.downgrade());
        let input = tokio::spawn(async move {
            for c in early {
                if !deliver(&h, c, &events).await {
                    return;
                }
            }
            pump_input(inbound, eof, h, p, events).await
        });
        let (served, net) = match net {
            Some(n) => (Some(n.served), Some(n.shown)),
            None => (None, None),
        };
        let exec = Pumped {
            id: slot.id().to_string(),
            uid: caller.uid,
            profile: name,
            end: tokio::spawn(record_end(
                exited,
                served,
                Ends {
                    caller,
                    slot,
                    audit: Arc::clone(&self.audit),
                    watch,
                },
            )),
        };
        tokio::spawn(async move {
            pump_output(outputs, tx, handle, net, pending, watchers, exec).await;
            input.abort();
        });
        Ok(())
    }

    /// The secrets an allowlist exec may inject: the daemon's for this user,
    /// plus those the caller brought (by name, with a value).
    fn secrets_for(
        &self,
        caller: &Caller,
        user: Option<&str>,
        start: &pb::ExecStart,
    ) -> Result<BTreeMap<String, String>, Refusal> {
        let mut secrets = self.net.secrets.for_user(caller.uid, user);
        for name in &start.secrets {
            let value = start.secret_values.get(name).ok_or_else(|| {
                let msg = format!(
                    "secret {} was named but no value came with it",
                    caller_text(name)
                );
                refuse("secrets", Status::invalid_argument(msg))
            })?;
            secrets.insert(name.clone(), value.clone());
        }
        Ok(secrets)
    }

    /// The session and the thread that will serve an allowlist exec's
    /// proxies and resolver once its listeners are bound.
    fn prepare_network(
        &self,
        caller: &Caller,
        id: &str,
        start: &pb::ExecStart,
        policy: NetPolicy,
        secrets: BTreeMap<String, String>,
    ) -> std::io::Result<NetPrepared> {
        let (events_tx, events) = mpsc::channel(NET_EVENTS);
        let (questions_tx, questions) = mpsc::channel(4);
        let inspector = policy
            .inspect()
            .then(|| self.net.inspector.as_ref().ok().cloned())
            .flatten();
        let session = Session::new(
            id.to_string(),
            caller.uid,
            policy,
            secrets,
            Arc::clone(&self.net.resolver),
            inspector,
            Arc::new(host_addresses()),
            Arc::clone(&self.audit),
            events_tx,
            start.interactive.then_some(questions_tx),
            Arc::clone(&self.net.connections),
        );
        Ok(NetPrepared {
            thread: NetThread::start(Arc::clone(&session))?,
            session,
            events,
            questions,
        })
    }
}

pub(super) fn resize(w: &pb::WindowSize) -> Control {
    let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
    Control::Resize {
        rows: clamp(w.rows),
        cols: clamp(w.cols),
    }
}
