//! Typed profiles, after `extends` is resolved. Every list entry and setting
//! that can decide something remembers where it came from ([`Origin`]).

use std::time::Duration;

/// Where a setting was written: `file` is a policy-dir path or `embedded:NAME.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApprovalMode {
    /// Ordered from strictest to loosest: a request may move left, never right.
    Untrusted,
    OnRequest,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockMode {
    Required,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetworkMode {
    /// Ordered from strictest to loosest.
    None,
    Allowlist,
    Full,
}

/// A profile after loading and `extends`.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// The file it was loaded from (`embedded:NAME.toml` for compiled-in ones).
    pub source: String,
    pub extends: Option<String>,
    pub approval: Located<ApprovalMode>,
    pub allow_root: Located<bool>,
    pub allow_user_profiles: Located<bool>,
    pub landlock: Located<LandlockMode>,
    pub filesystem: FilesystemRules,
    pub network: NetworkRules,
    pub env: EnvRules,
    pub limits: LimitRules,
    pub commands: CommandRules,
}

/// Path entries are templates (`{cwd}`, `{home}`, `{tmp}`) or globs, unexpanded.
#[derive(Debug, Clone, Default)]
pub struct FilesystemRules {
    pub read: Vec<Located<String>>,
    pub write: Vec<Located<String>>,
    pub deny_read: Vec<Located<String>>,
    pub deny_write: Vec<Located<String>>,
}

#[derive(Debug, Clone)]
pub struct NetworkRules {
    pub mode: Located<NetworkMode>,
    pub allow: Vec<Located<String>>,
    pub deny: Vec<Located<String>>,
    pub ports: Vec<Located<u16>>,
    pub methods: Option<Vec<Located<String>>>,
    pub allow_cidrs: Vec<Located<String>>,
    pub inspect: Located<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct EnvRules {
    pub pass: Vec<Located<String>>,
    pub deny: Vec<Located<String>>,
    pub set: Vec<(String, Located<String>)>,
}

#[derive(Debug, Clone, Default)]
pub struct LimitRules {
    pub timeout: Option<Located<Duration>>,
    pub memory: Option<Located<u64>>,
    pub pids: Option<Located<u64>>,
    pub output: Option<Located<u64>>,
}

/// Token-prefix rules, e.g. `["git", "push"]`.
#[derive(Debug, Clone, Default)]
pub struct CommandRules {
    pub allow: Vec<Located<Vec<String>>>,
    pub prompt: Vec<Located<Vec<String>>>,
    pub forbidden: Vec<Located<Vec<String>>>,
}

/// The policy for one exec: templates expanded, request narrowing applied.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectivePolicy {
    pub profile: String,
    pub approval: ApprovalMode,
    pub allow_root: bool,
    pub landlock: LandlockMode,
    /// Readable roots (absolute).
    pub read: Vec<std::path::PathBuf>,
    /// Writable roots (absolute), not including the private /tmp.
    pub write: Vec<std::path::PathBuf>,
    /// Absolute glob patterns.
    pub deny_read: Vec<String>,
    /// Absolute glob patterns.
    pub deny_write: Vec<String>,
    /// `{tmp}` was writable: the sandbox gets a fresh tmpfs on /tmp.
    pub private_tmp: bool,
    pub network: NetworkMode,
    /// The command's environment, in order.
    pub env: Vec<(String, String)>,
    pub limits: EffectiveLimits,
    /// SHA-256 (hex) of a canonical rendering of everything above.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub timeout: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// Bytes of stdout+stderr kept.
    pub output: u64,
}
