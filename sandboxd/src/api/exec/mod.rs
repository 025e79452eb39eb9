//! Exec: admit, resolve the policy, plan, record the start in the audit log,
//! spawn, then pump the streams until the exit. A client that goes away takes
//! its sandbox with it. Output, events and the exit are also published to the
//! sandbox's attachers (see attach.rs), never waiting for them.

use super::approvals::{Approved, Conversation, Grant, Reply};
use super::attach::Watchers;
use super::{bounded, caller_text, registry_status, Api};
use crate::audit::{self, AuditLog};
use crate::backend::linux::{self, netns, SpawnError};
use crate::gitwatch::{Change, GitWatch};
use crate::identity::{Account, Caller};
use crate::net::addr::host_addresses;
use crate::net::listen::{Listeners, NetThread, Served};
use crate::net::session::Answer;
use crate::net::{NetPolicy, NetQuery, NetRecord, Session};
use crate::plan;
use crate::policy::{resolve, ApprovalMode, EffectivePolicy, Narrowing, PolicyStore};
use crate::registry::{Info, Slot, ARGV_BYTES};
use crate::supervisor::{self, caller_signal, Control, ExitInfo, Handle, Output, Undelivered};
use pb::exec_request::Msg as In;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub type ExecStream = ReceiverStream<Result<pb::ExecResponse, Status>>;

/// How long an Exec stream may take to send its ExecStart: until then it
/// holds one of its caller's requests (see requests.rs) for nothing.
const START_WAIT: Duration = Duration::from_secs(10);
/// Responses buffered towards a slow client (each at most one output chunk).
const RESPONSE_BUFFER: usize = 16;

/// Why no execve(2) would take `argv`, if none would: a word of more than
/// MAX_ARG_STRLEN (32 pages) or, all together, more than ARG_MAX bytes.
fn past_execve_limits(argv: &[String]) -> Option<String> {
    const MAX_ARG_STRLEN: usize = 32 * 4096;
    if let Some((i, w)) = argv
        .iter()
        .enumerate()
        .find(|(_, w)| w.len() >= MAX_ARG_STRLEN)
    {
        return Some(format!(
            "argv[{i}] is {} bytes: the kernel takes words of less than {MAX_ARG_STRLEN}",
            w.len()
        ));
    }
    // SAFETY: sysconf only reads a system value.
    let arg_max = usize::try_from(unsafe { libc::sysconf(libc::_SC_ARG_MAX) }).unwrap_or(2 << 20);
    let total: usize = argv
        .iter()
        .map(|w| w.len() + 1 + std::mem::size_of::<usize>())
        .sum();
    (total > arg_max)
        .then(|| format!("argv is {total} bytes: the kernel takes at most {arg_max} (ARG_MAX)"))
}

/// The request's narrowing, in policy terms.
fn narrowing(start: &pb::ExecStart) -> Result<Narrowing, Status> {
    let n = start.narrow.clone().unwrap_or_default();
    let nonzero = |v: u64| (v > 0).then_some(v);
    let approval = match start.approval.as_str() {
        "" => None,
        s => Some(ApprovalMode::parse(s).ok_or_else(|| {
            Status::invalid_argument(format!(
                "approval {:?} is not one of untrusted, on-request, never",
                caller_text(s)
            ))
        })?),
    };
    Ok(Narrowing {
        write: n
            .has_write
            .then(|| n.write.iter().map(PathBuf::from).collect()),
        network_allow: n.has_network_allow.then(|| n.network_allow.clone()),
        timeout: (start.timeout_ms > 0).then(|| Duration::from_millis(start.timeout_ms)),
        memory: nonzero(n.memory_bytes),
        pids: nonzero(n.pids),
        output: nonzero(n.output_bytes),
        approval,
    })
}

/// Most bytes of an exec's session name, kept with the approvals the
/// session remembers and written in its records.
const MAX_SESSION_BYTES: usize = 256;

/// Most bytes of an escalation's justification, shown to the approver and
/// written in the question's record.
const MAX_JUSTIFICATION_BYTES: usize = 4 << 10;

/// The field, and why, when the session or justification is longer than
/// the daemon takes.
fn overlong_text(start: &pb::ExecStart) -> Option<(&'static str, String)> {
    let justification = start
        .escalation
        .as_ref()
        .map_or("", |e| e.justification.as_str());
    [
        ("session", start.session.as_str(), MAX_SESSION_BYTES),
        ("justification", justification, MAX_JUSTIFICATION_BYTES),
    ]
    .into_iter()
    .find(|(_, text, max)| text.len() > *max)
    .map(|(field, text, max)| {
        let why = format!("{field} is {} bytes: at most {max} are taken", text.len());
        (field, why)
    })
}

/// Why an exec was refused: the rule, and the status returned to the caller.
struct Refusal {
    rule: String,
    status: Status,
    /// The exec's id, when its start was already recorded.
    id: Option<String>,
}

/// A policy or approval refusal: permission denied, naming the rule (an
/// approval that cannot be audited is a failed precondition).
fn policy_refusal(r: crate::policy::Refusal) -> Refusal {
    let status = match r.rule.as_str() {
        "audit" => Status::failed_precondition(r.to_string()),
        _ => Status::permission_denied(r.to_string()),
    };
    refuse(&r.rule, status)
}

fn refuse(rule: &str, status: Status) -> Refusal {
    Refusal {
        rule: rule.to_string(),
        status,
        id: None,
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
                    };
                    tokio::select! {
                        asked = api.approvals.ask(gate, conversation) => asked.map_err(policy_refusal)?,
                        _ = api.registry.closed() => {
                            let msg = "sandboxd is shutting down; nothing was run";
                            return Err(refuse("shutdown", Status::unavailable(msg)));
                        }
                    }
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

/// Network events buffered towards the client before newer ones are dropped
/// from the stream (never from the audit log).
const NET_EVENTS: usize = 64;

/// The network side of an allowlist exec whose sandbox is being made.
struct NetPrepared {
    thread: NetThread,
    session: Arc<Session>,
    events: mpsc::Receiver<NetRecord>,
    questions: mpsc::Receiver<(NetQuery, oneshot::Sender<Answer>)>,
}

impl NetPrepared {
    /// Serves the sandbox's `listeners`.
    fn serve(self, listeners: Listeners) -> NetRun {
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
struct NetRun {
    /// Stopped at the exit: listeners closed, connections ended.
    served: Served,
    shown: NetShown,
}

/// What the client hears of the network: decisions and approval requests.
struct NetShown {
    session: Arc<Session>,
    events: mpsc::Receiver<NetRecord>,
    questions: mpsc::Receiver<(NetQuery, oneshot::Sender<Answer>)>,
}

/// Approval requests sent to the client, by id, awaiting its answer.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>);

impl Pending {
    fn add(&self, id: String, tx: oneshot::Sender<Answer>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
    }

    /// Routes the client's answer; unknown ids and unknown words are ignored
    /// (the request then times out as a deny).
    fn answer(&self, a: &pb::ApprovalAnswer) {
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

/// The exec an output pump serves, as the daemon's log names it, and the
/// task that records its end.
struct Pumped {
    id: String,
    uid: u32,
    profile: String,
    end: tokio::task::JoinHandle<(Slot, Vec<Out>)>,
}

/// Who the end of an exec is recorded for, and the slot it frees.
struct Ends {
    caller: Caller,
    slot: Slot,
    audit: Arc<AuditLog>,
    /// Set once the command may start.
    watch: Arc<OnceLock<GitWatch>>,
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
fn show_net_event(
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
fn events_lost(n: u64) -> Out {
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
fn approval_request(id: &str, q: &NetQuery, profile: &str) -> pb::ApprovalRequest {
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

/// The next message of an optional channel; never ready without one.
async fn recv<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) fn resize(w: &pb::WindowSize) -> Control {
    let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
    Control::Resize {
        rows: clamp(w.rows),
        cols: clamp(w.cols),
    }
}

/// Client messages to the sandbox. The end of the client's stream only means
/// no more input: the command's stdin is closed, unless the client closed
/// it already (`eof`: a second end of input would reach a terminal as a
/// second Ctrl-D). A broken stream means the client is gone: kill. A signal
/// refused is told to the client on `events` (when it has room for it).
async fn pump_input(
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
async fn deliver(
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

/// Records the end of an exec as soon as its sandbox has ended, however
/// slowly its client reads: its network services stopped first (what their
/// connections did is on disk before the end), then the end, then the slot
/// marked ended (a stopping daemon waits for every end on record; the slot
/// stays taken while the output is on its way, so that the limits bound
/// what waits for slow clients). Files the sandbox left for git on the host
/// are looked for first (see [`GitWatch`]) and go on the record. The slot
/// back, and what the client should hear: those files, and an end that
/// could not be recorded.
async fn record_end(
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
fn end_not_recorded(why: impl std::fmt::Display) -> Out {
    Out::Event(pb::Event {
        kind: "audit".into(),
        message: format!("the end of this exec could not be recorded: {why}"),
        ..Default::default()
    })
}

/// Sandbox output to the client and the attachers, until the exit, which
/// the client hears after its end is recorded (see [`record_end`]). If the
/// client stops listening, the sandbox is killed and drained.
async fn pump_output(
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
