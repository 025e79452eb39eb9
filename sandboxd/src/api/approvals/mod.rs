//! Approvals asked before an exec starts: the commands that the approval
//! mode and the `[commands]` rules leave to a person, and escalations (more
//! than the profile gives, for one exec). Answers given "for this session"
//! are remembered in memory per (uid, session, profile); `approve-always`
//! saves a user allow rule (an amendment) in the state dir where the
//! profile allows user rules.
//!
//! sandboxd decides what needs asking; the client only relays a person's
//! answer. No answer in time is a deny, and every question and answer is
//! in the audit log before the exec goes on.

mod amendments;
mod grant;
mod sessions;

pub use amendments::AmendmentError;
pub use grant::{Grant, Reply};

use super::exec::resize;
use crate::audit::{self, AuditLog};
use crate::identity::Caller;
use crate::policy::domain::{ip_literal, DomainPattern};
use crate::policy::narrow::rule;
use crate::policy::shell;
use crate::policy::{
    command_parts, ApprovalMode, CommandPart, EffectivePolicy, Located, NetworkMode, Origin,
    Profile, Refusal, Verdict, NO_LOOKUP,
};
use crate::programs::Programs;
use crate::supervisor::Control;
use amendments::{amendable, Amendments};
use grant::Asked;
use pb::exec_request::Msg as In;
use pb::exec_response::Msg as Out;
use sandbox_proto::v1 as pb;
use serde_json::json;
use sessions::{SessionKey, Sessions, MAX_BYTES, MAX_GRANT_BYTES, MAX_SESSIONS};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Input a client may send while its exec waits for an approval.
const MAX_EARLY_INPUT: usize = 8 << 20;
/// Messages (input, signals, resizes) kept while an approval is pending.
const MAX_EARLY_MESSAGES: usize = 4096;

/// Could not set up approvals.
/// The daemon's approval state: timeout, session memory, amendments.
pub struct Approvals {
    timeout: Duration,
    sessions: Mutex<Sessions>,
    amendments: Amendments,
    /// The daemon's `full` profile, if it has one.
    full: Option<Profile>,
    /// Numbers approval requests (with the daemon's start time, unique in the log).
    asked: AtomicU64,
    started_ms: u128,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What an exec needs asked (or already has) before it starts.
#[derive(Debug, Default)]
pub struct Gate {
    /// Command parts to ask about, in order.
    commands: Vec<CommandPart>,
    /// Escalation parts to ask about.
    escalation: Vec<Grant>,
    /// Escalation parts already approved for the session.
    granted: Vec<Grant>,
    justification: String,
    /// The rule that makes escalations need approval (the approval mode).
    mode_rule: String,
}

impl Gate {
    /// Whether a person must be asked before the exec starts.
    pub fn asks(&self) -> bool {
        !self.commands.is_empty() || !self.escalation.is_empty()
    }

    /// Escalation parts granted without asking.
    pub fn granted(&self) -> &[Grant] {
        &self.granted
    }
}

/// The outcome of asking: what was granted, and what the client sent meanwhile.
#[derive(Default)]
pub struct Approved {
    /// Escalation parts granted (asked now or remembered).
    pub grants: Vec<Grant>,
    /// Ids of the approval requests answered, for the exec's start record.
    pub ids: Vec<String>,
    /// Input, signals and resizes the client sent while it was asked, in order.
    pub early: Vec<Control>,
}

/// Where the questions go and the answers come from: the exec's streams.
pub struct Conversation<'a> {
    pub caller: &'a Caller,
    pub start: &'a pb::ExecStart,
    pub profile: &'a Profile,
    pub audit: &'a Arc<AuditLog>,
    pub tx: &'a mpsc::Sender<Result<pb::ExecResponse, Status>>,
    pub inbound: &'a mut Streaming<pb::ExecRequest>,
    /// Says when the daemon stops: a question still open is given up then.
    pub registry: &'a crate::registry::Registry,
}

/// A conversation under way, with what the client sent besides answers.
struct Talk<'a> {
    c: Conversation<'a>,
    early: Vec<Control>,
    early_bytes: usize,
}

/// `.` and duplicate slashes removed; `None` for relative paths or `..`.
fn clean(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The escalation a request asks for, checked, as grants.
fn escalation_grants(e: &pb::Escalation) -> Result<Vec<Grant>, Refusal> {
    let bad = |message: String| Refusal {
        message,
        rule: "escalation".to_string(),
    };
    let mut out = Vec::new();
    for w in &e.write {
        let p = clean(Path::new(w)).ok_or_else(|| {
            bad(format!(
                "escalation write root {:?} must be an absolute path without `..`",
                super::caller_text(w)
            ))
        })?;
        out.push(Grant::Write(p));
    }
    for d in &e.network_allow {
        let entry = match ip_literal(d) {
            Some(ip) => ip.to_string(),
            None => DomainPattern::parse(d)
                .map_err(|m| {
                    bad(format!(
                        "escalation network {:?}: {m}",
                        super::caller_text(d)
                    ))
                })?
                .to_string(),
        };
        out.push(Grant::Network(entry));
    }
    if e.unsandboxed {
        out.push(Grant::Unsandboxed);
    }
    out.dedup();
    Ok(out)
}

impl Approvals {
    /// `full` is the daemon's `full` profile, the view of an unsandboxed
    /// run: none where the admin has none (`embedded_profiles = false` and
    /// no `full.toml`), and then such runs are refused.
    pub fn new(state_dir: &Path, timeout: Duration, full: Option<Profile>) -> Approvals {
        let started_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Approvals {
            timeout,
            sessions: Mutex::new(Sessions::default()),
            amendments: Amendments {
                dir: state_dir.join("amendments"),
                lock: Mutex::new(()),
            },
            full,
            asked: AtomicU64::new(0),
            started_ms,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's saved rules for `profile` (none where it allows no user
    /// rules), read on a blocking thread, not an async worker.
    async fn saved_rules(self: &Arc<Self>, uid: u32, profile: &Profile) -> Vec<Vec<String>> {
        if !profile.allow_user_profiles.value {
            return Vec::new();
        }
        let (this, name) = (Arc::clone(self), profile.name.clone());
        tokio::task::spawn_blocking(move || this.amendments.rules(uid, &name))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(uid, error = %e, "reading amendments: ignored, commands are asked");
                Vec::new()
            })
    }

    fn session_key(
        caller: &Caller,
        start: &pb::ExecStart,
        profile: &Profile,
    ) -> Option<SessionKey> {
        (!start.session.is_empty()).then(|| SessionKey {
            uid: caller.uid,
            session: start.session.clone(),
            profile: profile.name.clone(),
        })
    }

    /// Decides, before anything runs, what the exec needs asked: a forbidden
    /// command is refused in every mode; a command the rules leave to a
    /// person (and no amendment or session answer covers) and every
    /// escalation are asked, unless the mode is `never` or the client cannot
    /// answer, which refuse.
    pub async fn gate(
        self: &Arc<Self>,
        caller: &Caller,
        start: &pb::ExecStart,
        profile: &Profile,
        policy: &EffectivePolicy,
    ) -> Result<Gate, Refusal> {
        let mode = policy.approval;
        let mode_rule = if mode == profile.approval.value {
            rule(&profile.approval.origin, "approval", mode.as_str())
        } else {
            format!("request approval \"{}\"", mode.as_str())
        };
        // The rules judged under the exec's own mode (a request may make it stricter).
        let judged;
        let judged_by = if mode == profile.approval.value {
            profile
        } else {
            let mut p = profile.clone();
            p.approval = Located {
                value: mode,
                origin: Origin {
                    file: "request".into(),
                    line: 0,
                },
            };
            judged = p;
            &judged
        };
        let e = start.escalation.clone().unwrap_or_default();
        let wanted = escalation_grants(&e)?;
        // Where bare names are found, with what the escalation would make writable.
        let more_writable: Vec<PathBuf> = wanted
            .iter()
            .filter_map(|g| match g {
                Grant::Write(p) => Some(p.clone()),
                Grant::Unsandboxed => Some(PathBuf::from("/")),
                _ => None,
            })
            .collect();
        let parts = if judged_by.commands.allow.is_empty() {
            // No allow rule for where a name is found to spoil.
            command_parts(judged_by, &start.argv, NO_LOOKUP)
        } else {
            let (judged_by, argv) = (judged_by.clone(), start.argv.clone());
            let (policy, caller) = (policy.clone(), caller.clone());
            // Reading PATH's directories may block.
            tokio::task::spawn_blocking(move || {
                let programs = Programs::new(&policy, &caller, &more_writable);
                command_parts(&judged_by, &argv, &|name| programs.made_by_sandbox(name))
            })
            .await
            .map_err(|e| Refusal {
                message: format!("judging the command failed: {e}"),
                rule: "commands".to_string(),
            })?
        };
        if let Some(p) = parts.iter().find(|p| p.decision.verdict == Verdict::Deny) {
            return Err(Refusal {
                message: format!("command refused: {}", p.decision.reason),
                rule: p.decision.rule.clone(),
            });
        }
        let key = Self::session_key(caller, start, profile);
        let amended: Vec<Grant> = self
            .saved_rules(caller.uid, profile)
            .await
            .into_iter()
            .map(Grant::Command)
            .collect();
        let asked: Vec<Asked> = parts
            .into_iter()
            .filter(|p| p.decision.verdict == Verdict::Prompt)
            .map(Asked::new)
            .filter(|a| !amended.iter().any(|g| g.covers(a)))
            .collect();
        // What the session remembers covers, checked where it is kept.
        let covered = |grants: &[Grant]| -> (Vec<bool>, Vec<bool>) {
            let parts = asked
                .iter()
                .map(|a| grants.iter().any(|g| g.covers(a)))
                .collect();
            (parts, wanted.iter().map(|w| grants.contains(w)).collect())
        };
        let (parts_covered, wanted_covered) = match &key {
            Some(k) => self.sessions().check(k, covered),
            None => covered(&[]),
        };
        let commands: Vec<CommandPart> = asked
            .into_iter()
            .zip(parts_covered)
            .filter(|(_, covered)| !covered)
            .map(|(a, _)| a.part)
            .collect();
        if wanted.contains(&Grant::Unsandboxed) && self.full.is_none() {
            return Err(Refusal {
                message: "an unsandboxed run cannot be granted: this daemon has no `full` profile (embedded_profiles = false, and none in the policy dir)".into(),
                rule: "escalation".into(),
            });
        }
        if mode == ApprovalMode::Never {
            if let Some(p) = commands.first() {
                return Err(Refusal {
                    message: format!(
                        "command needs an approval, and approval mode \"never\" asks nobody: {}",
                        p.decision.reason
                    ),
                    rule: p.decision.rule.clone(),
                });
            }
            if !wanted.is_empty() {
                let asked: Vec<String> = wanted.iter().map(Grant::describe).collect();
                return Err(Refusal {
                    message: format!(
                        "escalation refused: approval mode \"never\" grants nothing beyond profile {} (asked: {})",
                        profile.name,
                        asked.join("; ")
                    ),
                    rule: mode_rule,
                });
            }
        }
        let (mut granted, mut escalation) = (Vec::new(), Vec::new());
        for (g, covered) in wanted.into_iter().zip(wanted_covered) {
            match covered {
                true => granted.push(g),
                false => escalation.push(g),
            }
        }
        if !start.interactive {
            let unanswerable = "this client cannot answer approval requests (agent: give --approver or run on a terminal)";
            if let Some(p) = commands.first() {
                return Err(Refusal {
                    message: format!(
                        "command needs an approval and {unanswerable}: {}",
                        p.decision.reason
                    ),
                    rule: p.decision.rule.clone(),
                });
            }
            if !escalation.is_empty() {
                let asked: Vec<String> = escalation.iter().map(Grant::describe).collect();
                return Err(Refusal {
                    message: format!(
                        "escalation needs an approval and {unanswerable}: {}",
                        asked.join("; ")
                    ),
                    rule: mode_rule,
                });
            }
        }
        Ok(Gate {
            commands,
            escalation,
            granted,
            justification: e.justification,
            mode_rule,
        })
    }

    /// `profile` widened by the granted escalation parts, for one exec.
    /// Write roots and domains are added to the profile's (deny rules still
    /// apply; network mode `none` becomes `allowlist` with only the granted
    /// domains); an unsandboxed run takes the embedded `full` profile's file
    /// system and network rules, keeping this profile's limits, environment
    /// and commands.
    pub fn widen(&self, profile: &Profile, grants: &[Grant]) -> Profile {
        let mut p = profile.clone();
        let origin = Origin {
            file: "approved escalation".into(),
            line: 0,
        };
        if let Some(full) = self
            .full
            .as_ref()
            .filter(|_| grants.contains(&Grant::Unsandboxed))
        {
            // The profile's own deny lists still hold.
            let fs = std::mem::replace(&mut p.filesystem, full.filesystem.clone());
            p.filesystem.deny_read.extend(fs.deny_read);
            p.filesystem.deny_write.extend(fs.deny_write);
            p.network = full.network.clone();
        }
        for g in grants {
            match g {
                Grant::Write(path) => p.filesystem.write.push(Located {
                    value: path.to_string_lossy().into_owned(),
                    origin: origin.clone(),
                }),
                Grant::Network(d) => {
                    if p.network.mode.value == NetworkMode::None {
                        p.network.mode = Located {
                            value: NetworkMode::Allowlist,
                            origin: origin.clone(),
                        };
                        p.network.allow.clear();
                    }
                    if p.network.mode.value == NetworkMode::Allowlist {
                        p.network.allow.push(Located {
                            value: d.clone(),
                            origin: origin.clone(),
                        });
                    }
                }
                Grant::Command(_) | Grant::Unsandboxed => {}
            }
        }
        p
    }

    fn next_id(&self) -> String {
        let n = self.asked.fetch_add(1, Ordering::Relaxed) + 1;
        format!("approval-{:x}-{n}", self.started_ms)
    }

    /// Asks what `gate` leaves to a person, on the exec's stream: each
    /// question is recorded, sent, answered (or timed out: deny), and the
    /// answer recorded, before the exec may go on. A deny refuses with the
    /// rule that asked.
    pub async fn ask(&self, gate: Gate, c: Conversation<'_>) -> Result<Approved, Refusal> {
        let key = Self::session_key(c.caller, c.start, c.profile);
        let mut talk = Talk {
            c,
            early: Vec::new(),
            early_bytes: 0,
        };
        let mut approved = Approved {
            grants: gate.granted.clone(),
            ..Approved::default()
        };
        let (profile, tx) = (talk.c.profile, talk.c.tx);

        if !gate.commands.is_empty() {
            let mut rules: Vec<String> = Vec::new();
            for p in &gate.commands {
                if !rules.contains(&p.decision.rule) {
                    rules.push(p.decision.rule.clone());
                }
            }
            let rules = rules.join("; ");
            let parts: Vec<String> = gate.commands.iter().map(|p| p.shown.clone()).collect();
            let reasons: Vec<&str> = gate
                .commands
                .iter()
                .map(|p| p.decision.reason.as_str())
                .collect();
            let request = pb::ApprovalRequest {
                kind: "command".into(),
                rule: rules.clone(),
                parts: parts.clone(),
                message: format!("needs approval before it starts: {}", reasons.join("; ")),
                ..self.request(&gate, &talk)
            };
            let id = request.id.clone();
            let reply = self
                .question(
                    &mut talk,
                    request,
                    serde_json::Value::Object(audit::words_fields(
                        "parts",
                        &parts,
                        audit::EXEC_ARGV_BYTES,
                    )),
                )
                .await?;
            // Literal parts only: a word still to be expanded is asked each time.
            let prefixes: Vec<Vec<String>> = gate
                .commands
                .iter()
                .filter(|p| p.literal)
                .map(|p| p.words.clone())
                .collect();
            let amend = amendable(profile, &prefixes);
            let grants: Vec<Grant> = prefixes.iter().cloned().map(Grant::Command).collect();
            let outcome = match reply {
                Some(Reply::Session) => session_outcome(key.as_ref(), &grants),
                Some(Reply::Always) => match &amend {
                    Ok(()) => amendment(&prefixes, json!({ "saving": true })),
                    Err((note, rule_named)) => {
                        event(tx, note, rule_named).await;
                        amendment(&prefixes, json!({ "saved": false, "reason": note }))
                    }
                },
                _ => json!({}),
            };
            self.answered(&talk, &id, "command", reply, &rules, outcome)
                .await?;
            // Saved only once the answer is on record.
            if matches!(reply, Some(Reply::Always)) && amend.is_ok() {
                self.amend(&talk, &id, profile, &prefixes).await;
            }
            if matches!(reply, Some(Reply::Session)) {
                self.remember(tx, talk.c.audit, &id, key.as_ref(), &grants)
                    .await;
            }
            let shown: Vec<String> = parts.iter().map(|p| format!("`{p}`")).collect();
            self.unless_approved(reply, "command not run", &shown.join(", "), &rules)?;
            approved.ids.push(id);
        }

        if !gate.escalation.is_empty() {
            let items: Vec<String> = gate.escalation.iter().map(Grant::describe).collect();
            let mut request = pb::ApprovalRequest {
                kind: "escalation".into(),
                rule: gate.mode_rule.clone(),
                // The command with it: an approver must see what runs so.
                message: format!(
                    "{} asks for more than profile {} gives, for this exec only: {}",
                    shell::command_line(&talk.c.start.argv),
                    profile.name,
                    items.join("; ")
                ),
                ..self.request(&gate, &talk)
            };
            for g in &gate.escalation {
                match g {
                    Grant::Write(p) => request.write.push(p.to_string_lossy().into_owned()),
                    Grant::Network(d) => request.network_allow.push(d.clone()),
                    Grant::Unsandboxed => request.unsandboxed = true,
                    Grant::Command(_) => {}
                }
            }
            let id = request.id.clone();
            let mut escalation = audit::words_fields("write", &request.write, audit::TEXT_BYTES);
            escalation.extend(audit::words_fields(
                "network_allow",
                &request.network_allow,
                audit::TEXT_BYTES,
            ));
            escalation.insert("unsandboxed".into(), request.unsandboxed.into());
            let asked = json!({ "escalation": escalation });
            let reply = self.question(&mut talk, request, asked).await?;
            let outcome = match reply {
                Some(Reply::Session) => session_outcome(key.as_ref(), &gate.escalation),
                Some(Reply::Always) => {
                    let note =
                        "approve-always saves command rules only: this escalation is approved once";
                    event(tx, note, &gate.mode_rule).await;
                    json!({ "amendment": { "saved": false, "reason": note } })
                }
                _ => json!({}),
            };
            self.answered(&talk, &id, "escalation", reply, &gate.mode_rule, outcome)
                .await?;
            if matches!(reply, Some(Reply::Session)) {
                self.remember(tx, talk.c.audit, &id, key.as_ref(), &gate.escalation)
                    .await;
            }
            self.unless_approved(
                reply,
                "escalation not granted",
                &items.join("; "),
                &gate.mode_rule,
            )?;
            approved.ids.push(id);
            approved.grants.extend(gate.escalation.iter().cloned());
        }
        approved.early = talk.early;
        Ok(approved)
    }

    /// The fields every request of this exec shares, with a fresh id.
    fn request(&self, gate: &Gate, talk: &Talk<'_>) -> pb::ApprovalRequest {
        pb::ApprovalRequest {
            id: self.next_id(),
            command: talk.c.start.argv.clone(),
            justification: gate.justification.clone(),
            profile: talk.c.profile.name.clone(),
            ..Default::default()
        }
    }

    /// A refusal unless `reply` approves: `what` was denied, or not answered in time.
    fn unless_approved(
        &self,
        reply: Option<Reply>,
        what: &str,
        items: &str,
        rule_named: &str,
    ) -> Result<(), Refusal> {
        let how = match reply {
            Some(Reply::Once | Reply::Session | Reply::Always) => return Ok(()),
            Some(Reply::Deny) => "denied by the approver".to_string(),
            None => format!(
                "no answer within {}",
                crate::policy::values::format_duration(self.timeout)
            ),
        };
        Err(Refusal {
            message: format!("{what}: {how}: {items}"),
            rule: rule_named.to_string(),
        })
    }

    /// Session answers: remembered for later execs of the same session,
    /// once the answer's record (approval `id`) is written. What is not
    /// remembered is said on the stream: it was approved once. What is left
    /// out for lack of room is recorded too, as the answer's record could
    /// only count those too long.
    async fn remember(
        &self,
        tx: &mpsc::Sender<Result<pb::ExecResponse, Status>>,
        audit: &Arc<AuditLog>,
        id: &str,
        key: Option<&SessionKey>,
        grants: &[Grant],
    ) {
        let Some(k) = key else {
            event(tx, "approve-session without a session (agent exec --session ID) applies to this exec only", "").await;
            return;
        };
        let left_out = self.sessions().remember(k.clone(), grants);
        let all = grants.len();
        let too_long = format!("each may take at most {MAX_GRANT_BYTES} bytes");
        let no_room = format!(
            "no room: all users' sessions together may take at most {MAX_SESSIONS} sessions and {}, and this user has no other session or answer to give up",
            crate::policy::values::format_size(MAX_BYTES as u64)
        );
        // Those left out for lack of room are recorded: the answer's record
        // could only count those too long.
        for (n, why, recorded) in [
            (left_out.too_long, too_long, false),
            (left_out.no_room, no_room, true),
        ] {
            if n == 0 {
                continue;
            }
            tracing::info!(uid = k.uid, n, why, "session answers not remembered");
            let note = format!(
                "approve-session: {n} of the {all} approved items are not remembered for the session ({why}); approved for this exec only"
            );
            let record = recorded.then(|| {
                let fields = json!({ "id": id, "uid": k.uid, "session": k.session, "not_remembered": n, "reason": note });
                ("session-not-remembered", fields)
            });
            tell_recorded(tx, audit, record, &note).await;
        }
    }

    /// `approve-always`, once answered on record: the command prefixes
    /// saved as the user's allow rules for this profile. A failure to save
    /// is said on the stream and recorded (the exec was approved once).
    async fn amend(&self, talk: &Talk<'_>, id: &str, profile: &Profile, prefixes: &[Vec<String>]) {
        let (uid, tx) = (talk.c.caller.uid, talk.c.tx);
        let amendments = &self.amendments;
        match tokio::task::block_in_place(|| amendments.save(uid, &profile.name, prefixes)) {
            Ok(()) => {
                let shown: Vec<String> = prefixes
                    .iter()
                    .map(|p| format!("`{}`", p.join(" ")))
                    .collect();
                let note = format!(
                    "amendment saved: {} allowed for uid {uid} under profile {} from now on",
                    shown.join(", "),
                    profile.name
                );
                event(tx, &note, "").await;
            }
            Err(e) => {
                tracing::error!(uid, error = %e, "saving an amendment");
                let note = format!("amendment not saved ({e}); approved once");
                let mut record = json!({ "id": id, "uid": uid });
                merge(
                    &mut record,
                    amendment(prefixes, json!({ "saved": false, "reason": note })),
                );
                tell_recorded(tx, talk.c.audit, Some(("amendment", record)), &note).await;
            }
        }
    }

    /// Records `request`, sends it, and waits for its answer; `None` when
    /// none came in time or none can come (the client closed its side).
    async fn question(
        &self,
        talk: &mut Talk<'_>,
        request: pb::ApprovalRequest,
        asked: serde_json::Value,
    ) -> Result<Option<Reply>, Refusal> {
        let Conversation {
            caller,
            start,
            audit,
            tx,
            ..
        } = talk.c;
        // The session and justification are bounded when the exec is asked
        // for; argv and the rest are kept bounded here.
        let mut record = json!({
            "id": request.id,
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "approval": request.kind,
            "cwd": audit::bounded_text(&start.cwd, audit::TEXT_BYTES),
            "profile": request.profile,
            "session": start.session,
            "rule": request.rule,
            "justification": request.justification,
            "message": audit::bounded_text(&request.message, audit::TEXT_BYTES),
        });
        merge(
            &mut record,
            serde_json::Value::Object(audit::words_fields(
                "argv",
                &start.argv,
                audit::EXEC_ARGV_BYTES,
            )),
        );
        merge(&mut record, asked);
        audit
            .append("approval-asked", record)
            .await
            .map_err(|e| Refusal {
                message: format!("not run, as its approval cannot be audited: {e}"),
                rule: "audit".into(),
            })?;
        tracing::info!(uid = caller.uid, id = %request.id, kind = %request.kind, rule = %request.rule, "approval asked");
        let id = request.id.clone();
        let gone = || Refusal {
            message: "the client went away while an approval was pending".into(),
            rule: "approval".into(),
        };
        tx.send(Ok(pb::ExecResponse {
            msg: Some(Out::Approval(request)),
        }))
        .await
        .map_err(|_| gone())?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
                _ = tx.closed() => return Err(gone()),
                // Only while waiting: what is answered is recorded whole.
                _ = talk.c.registry.closed() => return Err(Refusal {
                    message: format!("sandboxd is shutting down: approval {id} was not answered, and nothing was run"),
                    rule: "shutdown".into(),
                }),
                m = talk.c.inbound.message() => m,
            };
            let control = match msg {
                Ok(Some(pb::ExecRequest { msg: Some(m) })) => match m {
                    In::Approval(a) if a.id == id => match Reply::parse(&a.decision) {
                        Some(r) => return Ok(Some(r)),
                        None => continue,
                    },
                    In::Approval(_) | In::Start(_) => continue,
                    In::Stdin(data) => {
                        talk.early_bytes += data.len();
                        Control::Stdin(data)
                    }
                    In::StdinEof(_) => Control::StdinEof,
                    In::Signal(s) => Control::Signal(s.signal),
                    In::Resize(w) => resize(&w),
                },
                Ok(Some(pb::ExecRequest { msg: None })) => continue,
                // No more client messages: no answer can come.
                Ok(None) => return Ok(None),
                Err(_) => return Err(gone()),
            };
            if talk.early_bytes > MAX_EARLY_INPUT || talk.early.len() >= MAX_EARLY_MESSAGES {
                return Err(Refusal {
                    message: format!(
                        "more than {} of input, or {MAX_EARLY_MESSAGES} messages, arrived while an approval was pending",
                        crate::policy::values::format_size(MAX_EARLY_INPUT as u64)
                    ),
                    rule: "approval".into(),
                });
            }
            talk.early.push(control);
        }
    }

    /// Records the answer (by the connection's uid) before the exec goes on.
    async fn answered(
        &self,
        talk: &Talk<'_>,
        id: &str,
        kind: &str,
        reply: Option<Reply>,
        rule_named: &str,
        outcome: serde_json::Value,
    ) -> Result<(), Refusal> {
        let uid = talk.c.caller.uid;
        let answer = reply.map_or("timeout", Reply::as_str);
        let mut record = json!({
            "id": id,
            "uid": uid,
            "approval": kind,
            "rule": rule_named,
            "answer": answer,
            "answered_by": reply.map(|_| uid),
        });
        merge(&mut record, outcome);
        tracing::info!(uid, id, kind, answer, "approval answered");
        talk.c
            .audit
            .append("approval-answered", record)
            .await
            .map(|_| ())
            .map_err(|e| Refusal {
                message: format!("not run, as its approval cannot be audited: {e}"),
                rule: "audit".into(),
            })
    }
}

/// What a session answer does, for its record: remembered for the session,
/// or (without one) for this exec only; and how many of `grants` are too
/// long to remember (see [`Grant::rememberable`]), if any.
fn session_outcome(key: Option<&SessionKey>, grants: &[Grant]) -> serde_json::Value {
    let mut outcome = json!({ "remembered_for_session": key.map(|k| k.session.clone()) });
    let too_long = grants.iter().filter(|g| !g.rememberable()).count();
    if key.is_some() && too_long > 0 {
        outcome["too_long_to_remember"] = too_long.into();
    }
    outcome
}

/// An `amendment` for a record: `fields` and the prefixes, bounded (they
/// are the caller's words).
fn amendment(prefixes: &[Vec<String>], fields: serde_json::Value) -> serde_json::Value {
    let mut record = json!({
        "amendment": audit::bounded_value("prefixes", json!(prefixes), audit::EXEC_ARGV_BYTES),
    });
    merge(&mut record["amendment"], fields);
    record
}

/// The fields of `extra` added to the object `record`.
fn merge(record: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(r), serde_json::Value::Object(e)) = (record.as_object_mut(), extra) {
        r.extend(e);
    }
}

/// `record` (kind, fields), if any, appended to the audit log, then `note`
/// told on the stream: recorded first, as a client that reads nothing
/// holds up the event. The exec goes on either way; a failed append is
/// logged.
async fn tell_recorded(
    tx: &mpsc::Sender<Result<pb::ExecResponse, Status>>,
    audit: &Arc<AuditLog>,
    record: Option<(&str, serde_json::Value)>,
    note: &str,
) {
    if let Some((kind, fields)) = record {
        if let Err(e) = audit.append(kind, fields).await {
            tracing::error!(kind, error = %e, "recording what an approval left out");
        }
    }
    event(tx, note, "").await;
}

/// An "approval" event on the exec's stream (dropped if the client lags).
async fn event(
    tx: &mpsc::Sender<Result<pb::ExecResponse, Status>>,
    message: &str,
    rule_named: &str,
) {
    let e = pb::Event {
        kind: "approval".into(),
        message: message.to_string(),
        rule: rule_named.to_string(),
        ..Default::default()
    };
    let _ = tx.try_send(Ok(pb::ExecResponse {
        msg: Some(Out::Event(e)),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyStore;

    /// Words as a command prefix; the tests of `grant`, `sessions` and `amendments` use it too.
    pub(super) fn prefix(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// A session answer left out for lack of room (all uids together at
    /// MAX_SESSIONS) is recorded, with the reason the client is given; one
    /// too long to remember is only counted in the answer's own record.
    #[tokio::test(flavor = "multi_thread")]
    async fn answers_left_out_for_lack_of_room_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path(), audit::DEFAULT_MAX_BYTES).unwrap());
        let a = Approvals::new(dir.path(), Duration::from_secs(1), None);
        let key = |uid: u32| SessionKey {
            uid,
            session: "s".into(),
            profile: "p".into(),
        };
        for uid in 0..MAX_SESSIONS as u32 {
            a.sessions().remember(key(uid), &[Grant::Unsandboxed]);
        }
        let (tx, mut rx) = mpsc::channel(8);
        let long = Grant::Command(vec!["x".repeat(1500); 1000]);
        let grants = [
            long,
            Grant::Unsandboxed,
            Grant::Network("example.com".into()),
        ];
        let newcomer = key(1_000_000);
        a.remember(&tx, &log, "approval-1", Some(&newcomer), &grants)
            .await;
        let mut told = Vec::new();
        while let Ok(Ok(pb::ExecResponse {
            msg: Some(Out::Event(e)),
        })) = rx.try_recv()
        {
            told.push(e.message);
        }
        assert_eq!(told.len(), 2, "{told:?}");
        let text = std::fs::read_to_string(dir.path().join(audit::FILE_NAME)).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(r["kind"], "session-not-remembered");
        assert_eq!(r["id"], "approval-1");
        assert_eq!(r["uid"], 1_000_000);
        assert_eq!(r["session"], "s");
        assert_eq!(r["not_remembered"], 2);
        assert_eq!(r["reason"], told[1].as_str());
        assert!(told[1].contains("no room"), "{told:?}");
        // Room for all: nothing more is recorded.
        a.remember(
            &tx,
            &log,
            "approval-2",
            Some(&key(0)),
            &[Grant::Unsandboxed],
        )
        .await;
        let again = std::fs::read_to_string(dir.path().join(audit::FILE_NAME)).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn escalations_are_checked() {
        let e = pb::Escalation {
            write: vec!["/srv/a/./b".into()],
            network_allow: vec!["Example.COM".into()],
            unsandboxed: true,
            justification: "why".into(),
        };
        assert_eq!(
            escalation_grants(&e).unwrap(),
            vec![
                Grant::Write(PathBuf::from("/srv/a/b")),
                Grant::Network("example.com".into()),
                Grant::Unsandboxed
            ]
        );
        for bad in ["relative", "/srv/../etc"] {
            let e = pb::Escalation {
                write: vec![bad.into()],
                ..Default::default()
            };
            assert!(escalation_grants(&e).is_err(), "{bad}");
        }
        let e = pb::Escalation {
            network_allow: vec!["*".into()],
            ..Default::default()
        };
        assert!(escalation_grants(&e).is_err());
    }

    #[test]
    fn widening_adds_roots_and_domains_or_takes_the_full_view() {
        let store = PolicyStore::load(None, true).unwrap();
        let full = store.get("full").cloned();
        let a = Approvals::new(Path::new("/nonexistent"), Duration::from_secs(1), full);
        let ws = store.get("workspace").unwrap();
        let w = a.widen(
            ws,
            &[
                Grant::Write(PathBuf::from("/srv/out")),
                Grant::Network("example.com".into()),
            ],
        );
        assert!(w.filesystem.write.iter().any(|l| l.value == "/srv/out"));
        assert_eq!(w.network.mode.value, NetworkMode::Allowlist);
        let allow: Vec<&str> = w.network.allow.iter().map(|l| l.value.as_str()).collect();
        assert_eq!(allow, ["example.com"]);
        assert_eq!(w.limits.timeout, ws.limits.timeout);
        let u = a.widen(ws, &[Grant::Unsandboxed]);
        assert_eq!(u.network.mode.value, NetworkMode::Full);
        assert!(u.filesystem.write.iter().any(|l| l.value == "/"));
        // The profile's deny lists still hold.
        let values = |v: &[Located<String>]| v.iter().map(|l| l.value.clone()).collect::<Vec<_>>();
        assert_eq!(
            values(&u.filesystem.deny_read),
            values(&ws.filesystem.deny_read)
        );
        assert_eq!(
            values(&u.filesystem.deny_write),
            values(&ws.filesystem.deny_write)
        );
        assert_eq!(u.name, ws.name);
    }
}
