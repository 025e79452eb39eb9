//! The checks an ExecStart must pass before anything is admitted or asked:
//! argv within what execve(2) takes, the narrowing in policy terms, the
//! session and justification within their bounds; and the refusal an exec
//! ends in when a check, the policy or an approver says no.

use crate::api::caller_text;
use crate::policy::{ApprovalMode, Narrowing};
use sandbox_proto::v1 as pb;
use std::path::PathBuf;
use std::time::Duration;
use tonic::Status;

/// Why no execve(2) would take `argv`, if none would: a word of more than
/// MAX_ARG_STRLEN (32 pages) or, all together, more than ARG_MAX bytes.
pub(super) fn past_execve_limits(argv: &[String]) -> Option<String> {
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
pub(super) fn narrowing(start: &pb::ExecStart) -> Result<Narrowing, Status> {
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
pub(super) fn overlong_text(start: &pb::ExecStart) -> Option<(&'static str, String)> {
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
pub(super) struct Refusal {
    pub(super) rule: String,
    pub(super) status: Status,
    /// The exec's id, when its start was already recorded.
    pub(super) id: Option<String>,
}

/// A policy or approval refusal: permission denied, naming the rule (an
/// approval that cannot be audited is a failed precondition).
pub(super) fn policy_refusal(r: crate::policy::Refusal) -> Refusal {
    let status = match r.rule.as_str() {
        "audit" => Status::failed_precondition(r.to_string()),
        "shutdown" => Status::unavailable(r.to_string()),
        _ => Status::permission_denied(r.to_string()),
    };
    refuse(&r.rule, status)
}

pub(super) fn refuse(rule: &str, status: Status) -> Refusal {
    Refusal {
        rule: rule.to_string(),
        status,
        id: None,
    }
}
