//! From a profile and one exec request to the effective policy (requests may
//! only narrow), and the pure file-system decisions behind `policy check`.

use super::model::{ApprovalMode, EffectivePolicy, Profile};
use super::{Decision, Refusal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Per-exec facts the templates and `[env]` need.
#[derive(Debug, Clone, Default)]
pub struct ExecContext {
    /// `{cwd}`.
    pub cwd: PathBuf,
    /// `{home}`.
    pub home: PathBuf,
    /// The caller's environment (filtered by `[env] pass/deny`).
    pub caller_env: BTreeMap<String, String>,
    /// `agent exec --env K=V`; a denied name is refused.
    pub set_env: BTreeMap<String, String>,
}

/// What a request asks to narrow; `None` keeps the profile's.
#[derive(Debug, Clone, Default)]
pub struct Narrowing {
    pub write: Option<Vec<PathBuf>>,
    pub network_allow: Option<Vec<String>>,
    pub timeout: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub output: Option<u64>,
    pub approval: Option<ApprovalMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The effective policy of one exec, or the rule a widening request breaks.
pub fn resolve(
    profile: &Profile,
    ctx: &ExecContext,
    narrow: &Narrowing,
) -> Result<EffectivePolicy, Refusal> {
    let _ = (profile, ctx, narrow);
    todo!("resolve")
}

/// Would a command under `profile` be able to read/write `path`? Names the rule.
pub fn check_path(profile: &Profile, ctx: &ExecContext, path: &std::path::Path, access: Access) -> Decision {
    let _ = (profile, ctx, path, access);
    todo!("check_path")
}
