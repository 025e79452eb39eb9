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
        if self.line == 0 {
            // A default: not written anywhere, charged to the profile's file.
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
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

impl ApprovalMode {
    pub fn parse(s: &str) -> Option<ApprovalMode> {
        match s {
            "untrusted" => Some(ApprovalMode::Untrusted),
            "on-request" => Some(ApprovalMode::OnRequest),
            "never" => Some(ApprovalMode::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Untrusted => "untrusted",
            ApprovalMode::OnRequest => "on-request",
            ApprovalMode::Never => "never",
        }
    }

    /// May a request under `self` ask for `to`? The same, or from `on-request`
    /// to `untrusted` (ask more) or `never` (never escalate); nothing else.
    pub fn may_narrow_to(self, to: ApprovalMode) -> bool {
        self == to || self == ApprovalMode::OnRequest
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockMode {
    Required,
    BestEffort,
}

impl LandlockMode {
    pub fn parse(s: &str) -> Option<LandlockMode> {
        match s {
            "required" => Some(LandlockMode::Required),
            "best-effort" => Some(LandlockMode::BestEffort),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LandlockMode::Required => "required",
            LandlockMode::BestEffort => "best-effort",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetworkMode {
    /// Ordered from strictest to loosest.
    None,
    Allowlist,
    Full,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Option<NetworkMode> {
        match s {
            "none" => Some(NetworkMode::None),
            "allowlist" => Some(NetworkMode::Allowlist),
            "full" => Some(NetworkMode::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Allowlist => "allowlist",
            NetworkMode::Full => "full",
        }
    }
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

/// Destination ports when a profile lists none in `network.ports`.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone)]
pub struct NetworkRules {
    pub mode: Located<NetworkMode>,
    pub allow: Vec<Located<String>>,
    pub deny: Vec<Located<String>>,
    pub ports: Vec<Located<u16>>,
    pub methods: Option<Vec<Located<String>>>,
    pub allow_cidrs: Vec<Located<String>>,
    pub inspect: Located<bool>,
    /// May a CONNECT to port 443 carry something other than TLS?
    pub allow_non_tls_443: Located<bool>,
    /// May a tunnel's ClientHello hide its server name (Encrypted Client
    /// Hello)? Then the name checked is only the outer one.
    pub allow_ech: Located<bool>,
    /// `[[network.rule]]`: finer rules for one host pattern.
    pub rules: Vec<Located<HostRule>>,
}

/// One `[[network.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// A domain pattern.
    pub host: String,
    /// Empty = all methods.
    pub methods: Vec<String>,
    /// Path globs; empty = all paths.
    pub paths: Vec<String>,
    pub inject: Option<Inject>,
}

/// A header the proxy adds; `value` may hold `{secret:NAME}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub header: String,
    pub value: String,
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
    /// `/` is a writable root because the profile names it so (`full`):
    /// the caller's own permissions are in charge everywhere. A `/` that a
    /// template stood for (`{cwd}` of an exec in `/`) is a root like any
    /// other, which the caller must be able to write.
    pub write_host: bool,
    /// Glob patterns: absolute, or `**/NAME` (searched for under the writable roots).
    pub deny_read: Vec<String>,
    /// Glob patterns: absolute, or `**/NAME` (searched for under the writable roots).
    pub deny_write: Vec<String>,
    /// `{tmp}` was writable: the sandbox gets a fresh tmpfs on /tmp.
    pub private_tmp: bool,
    /// `{home}`: the caller's home, as the templates took it (git on the
    /// host reads a `~/` in a repository's config from there too).
    pub home: std::path::PathBuf,
    pub network: NetworkMode,
    /// Domain patterns in effect with `allowlist`: the profile's, or the
    /// request's narrower list.
    pub network_allow: Vec<String>,
    /// The compiled `[network]` rules: `Some` exactly when `network` is `allowlist`.
    pub net: Option<crate::net::NetPolicy>,
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
