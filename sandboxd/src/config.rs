//! The daemon's configuration (TOML; every key optional; flags win over the
//! file, embedded defaults fill the rest).

use crate::policy::domain::DomainPattern;
use crate::policy::tree::{self, known_keys, Node, Table, TreeError, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole daemon configuration, defaults filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub embedded_profiles: bool,
    /// Group name or numeric gid whose members see and manage everything.
    pub admin_group: String,
    pub dns: DnsConfig,
    pub limits: DaemonLimits,
    pub tls: TlsConfig,
    pub secrets: BTreeMap<String, SecretSource>,
    /// Size past which the audit log is rotated (`[audit] max_size`).
    pub audit_max_size: u64,
    /// How long a command or escalation approval waits for its answer before
    /// it counts as a deny (`[approvals] timeout`).
    pub approval_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Default)]
pub struct DnsConfig {
    /// `None` = "system" (/etc/resolv.conf and /etc/hosts).
    pub upstream: Option<Vec<std::net::SocketAddr>>,
    pub hosts: BTreeMap<String, Vec<std::net::IpAddr>>,
}

#[derive(Debug, Clone)]
pub struct DaemonLimits {
    pub max_sandboxes: usize,
    pub max_per_user: usize,
    /// Memory all sandboxes of one user may use together (`user_memory`).
    pub user_memory: Option<u64>,
    /// Tasks all sandboxes of one user may have together (`user_pids`).
    pub user_pids: Option<u64>,
}

impl DaemonLimits {
    /// The RLIMIT_NPROC of a sandbox's command run as `uid`, which counts
    /// all tasks of that uid on the host (its other sandboxes' and its own
    /// outside them): half of what all sandboxes together may have, or
    /// `user_pids` where that is more (it caps the sandboxes alone). None
    /// for root, which it does not bind.
    pub fn tasks_per_user(&self, uid: u32) -> Option<u64> {
        let half = crate::backend::linux::cgroup::default_user_tasks();
        (uid != 0).then(|| self.user_pids.map_or(half, |n| n.max(half)))
    }

    /// The cap `uid`'s sandboxes share, when one is set.
    pub fn share(&self, uid: u32) -> Option<crate::backend::linux::cgroup::UserShare> {
        (self.user_memory.is_some() || self.user_pids.is_some()).then_some(
            crate::backend::linux::cgroup::UserShare {
                uid,
                memory_bytes: self.user_memory,
                pids: self.user_pids,
            },
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub extra_roots: Vec<PathBuf>,
    /// Where `extra_roots` was written (`FILE:LINE`), for errors about its files.
    pub origin: Option<crate::policy::model::Origin>,
}

impl TlsConfig {
    /// `e`, told with where the config lists the file when it is about one
    /// of the extra roots.
    pub fn named(&self, e: &crate::tls::TlsError) -> String {
        match (e, &self.origin) {
            (crate::tls::TlsError::File { path, .. }, Some(o))
                if self
                    .extra_roots
                    .iter()
                    .any(|r| r.as_os_str() == path.as_str()) =>
            {
                format!("{o}: key `tls.extra_roots`: {e}")
            }
            _ => e.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecretSource {
    pub file: PathBuf,
    /// User names or numeric uids allowed to use it; none = nobody.
    pub users: Vec<String>,
    /// Where `file` was written (`FILE:LINE`), for errors about the file.
    pub origin: crate::policy::model::Origin,
}

/// A config file that cannot be used; names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<TreeError> for ConfigError {
    fn from(e: TreeError) -> Self {
        ConfigError::Invalid {
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/sandboxd/sandboxd.sock"),
            state_dir: PathBuf::from("/var/lib/sandboxd"),
            policy_dir: PathBuf::from("/etc/sandboxd/policies"),
            embedded_profiles: true,
            admin_group: "sandboxd-admin".to_string(),
            dns: DnsConfig::default(),
            limits: DaemonLimits {
                max_sandboxes: 256,
                max_per_user: 64,
                user_memory: None,
                user_pids: None,
            },
            tls: TlsConfig::default(),
            secrets: BTreeMap::new(),
            audit_max_size: crate::audit::DEFAULT_MAX_BYTES,
            approval_timeout: crate::net::session::APPROVAL_TIMEOUT,
        }
    }
}

impl Config {
    pub const DEFAULT_PATH: &'static str = "/etc/sandboxd/sandboxd.toml";

    /// Reads `path` (or the default path when it exists; otherwise defaults only).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(Self::DEFAULT_PATH), false),
        };
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default())
            }
            Err(source) => return Err(ConfigError::Io { file, source }),
        };
        Self::parse(&file, &text)
    }

    /// The config in `text`, read from `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let t = tree::parse(file, text)?;
        known_keys(
            &t,
            "",
            &[
                "socket",
                "state_dir",
                "policy_dir",
                "embedded_profiles",
                "admin_group",
                "dns",
                "limits",
                "tls",
                "secrets",
                "audit",
                "approvals",
            ],
        )?;
        let mut c = Config::default();
        let get = |k: &str| t.get(k).map(|(_, n)| n);
        if let Some(n) = get("socket") {
            c.socket = abs_path(n, "socket")?;
        }
        if let Some(n) = get("state_dir") {
            c.state_dir = abs_path(n, "state_dir")?;
        }
        if let Some(n) = get("policy_dir") {
            c.policy_dir = abs_path(n, "policy_dir")?;
        }
        if let Some(n) = get("embedded_profiles") {
            c.embedded_profiles = n.bool("embedded_profiles")?;
        }
        if let Some(n) = get("admin_group") {
            let g = n.str("admin_group")?;
            if g.is_empty() || g.contains([':', '\n', '\0']) {
                return Err(TreeError::at(
                    &n.pos,
                    "admin_group",
                    format!("{g:?} is not a group name or gid"),
                )
                .into());
            }
            c.admin_group = g.to_string();
        }
        if let Some(n) = get("dns") {
            c.dns = dns(n.table("dns")?)?;
        }
        if let Some(n) = get("limits") {
            let lt = n.table("limits")?;
            known_keys(
                lt,
                "limits",
                &["max_sandboxes", "max_per_user", "user_memory", "user_pids"],
            )?;
            if let Some((_, v)) = lt.get("max_sandboxes") {
                c.limits.max_sandboxes = count(v, "limits.max_sandboxes")?;
            }
            if let Some((_, v)) = lt.get("max_per_user") {
                c.limits.max_per_user = count(v, "limits.max_per_user")?;
            }
            if let Some((_, v)) = lt.get("user_memory") {
                let text = v.str("limits.user_memory")?;
                let bytes = crate::policy::values::parse_size(text)
                    .filter(|b| *b >= 1 << 20)
                    .ok_or_else(|| {
                        TreeError::at(
                            &v.pos,
                            "limits.user_memory",
                            format!("{text:?} is not a size of at least 1MiB (e.g. \"16GiB\")"),
                        )
                    })?;
                c.limits.user_memory = Some(bytes);
            }
            if let Some((_, v)) = lt.get("user_pids") {
                c.limits.user_pids = Some(count(v, "limits.user_pids")? as u64);
            }
        }
        if let Some(n) = get("tls") {
            let tt = n.table("tls")?;
            known_keys(tt, "tls", &["extra_roots"])?;
            if let Some((_, v)) = tt.get("extra_roots") {
                c.tls.extra_roots = v
                    .array("tls.extra_roots")?
                    .iter()
                    .map(|r| abs_path(r, "tls.extra_roots"))
                    .collect::<Result<_, _>>()?;
                c.tls.origin = Some(v.pos.origin());
            }
        }
        if let Some(n) = get("audit") {
            let at = n.table("audit")?;
            known_keys(at, "audit", &["max_size"])?;
            if let Some((_, v)) = at.get("max_size") {
                let text = v.str("audit.max_size")?;
                c.audit_max_size = crate::policy::values::parse_size(text)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        TreeError::at(
                            &v.pos,
                            "audit.max_size",
                            format!("{text:?} is not a size like \"64MiB\""),
                        )
                    })?;
            }
        }
        if let Some(n) = get("approvals") {
            let at = n.table("approvals")?;
            known_keys(at, "approvals", &["timeout"])?;
            if let Some((_, v)) = at.get("timeout") {
                let text = v.str("approvals.timeout")?;
                c.approval_timeout = crate::policy::values::parse_duration(text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        TreeError::at(
                            &v.pos,
                            "approvals.timeout",
                            format!("{text:?} is not a duration like \"60s\""),
                        )
                    })?;
            }
        }
        if let Some(n) = get("secrets") {
            for (name, (kpos, v)) in n.table("secrets")? {
                let key = format!("secrets.{name}");
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    return Err(TreeError::at(
                        kpos,
                        &key,
                        "a secret name is letters, digits and _",
                    )
                    .into());
                }
                c.secrets.insert(name.clone(), secret(v, &key)?);
            }
        }
        Ok(c)
    }
}

fn abs_path(n: &Node, key: &str) -> Result<PathBuf, TreeError> {
    let s = n.str(key)?;
    if !s.starts_with('/') {
        return Err(TreeError::at(
            &n.pos,
            key,
            format!("{s:?} is not an absolute path"),
        ));
    }
    Ok(PathBuf::from(s))
}

fn count(n: &Node, key: &str) -> Result<usize, TreeError> {
    let i = n.int(key)?;
    usize::try_from(i)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| TreeError::at(&n.pos, key, format!("{i} must be a count above zero")))
}

fn dns(t: &Table) -> Result<DnsConfig, TreeError> {
    known_keys(t, "dns", &["upstream", "hosts"])?;
    let mut d = DnsConfig::default();
    if let Some((_, n)) = t.get("upstream") {
        d.upstream = match &n.value {
            Value::Str(s) if s == "system" => None,
            Value::Array(items) => Some(
                items
                    .iter()
                    .map(|i| {
                        let s = i.str("dns.upstream")?;
                        parse_upstream(s).ok_or_else(|| {
                            TreeError::at(
                                &i.pos,
                                "dns.upstream",
                                format!("{s:?} is not IP:PORT or IP"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(TreeError::at(
                    &n.pos,
                    "dns.upstream",
                    "expected \"system\" or a list of \"IP:53\"",
                ))
            }
        };
    }
    if let Some((_, n)) = t.get("hosts") {
        for (name, (kpos, v)) in n.table("dns.hosts")? {
            let key = format!("dns.hosts.{name}");
            // Kept as lookups ask for it: lower case, IDNA to punycode.
            let host = match crate::net::normalize_host(name) {
                Ok(crate::net::Host::Name(n))
                    if DomainPattern::parse(name).is_ok() && !name.contains('*') =>
                {
                    n
                }
                _ => {
                    return Err(TreeError::at(
                        kpos,
                        &key,
                        format!("{name:?} is not a host name"),
                    ))
                }
            };
            let ips = v
                .strings(&key)?
                .into_iter()
                .map(|(s, pos)| {
                    s.parse().map_err(|_| {
                        TreeError::at(pos, &key, format!("{s:?} is not an IP address"))
                    })
                })
                .collect::<Result<_, _>>()?;
            d.hosts.insert(host, ips);
        }
    }
    Ok(d)
}

/// `IP:PORT`, `[IPv6]:PORT`, or a bare address on port 53.
fn parse_upstream(s: &str) -> Option<std::net::SocketAddr> {
    s.parse().ok().or_else(|| {
        s.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 53))
    })
}

fn secret(n: &Node, key: &str) -> Result<SecretSource, TreeError> {
    let t = n.table(key)?;
    known_keys(t, key, &["file", "users"])?;
    let (file, origin) = match t.get("file") {
        Some((_, f)) => (abs_path(f, &format!("{key}.file"))?, f.pos.origin()),
        None => {
            return Err(TreeError::at(
                &n.pos,
                &format!("{key}.file"),
                "missing: where the secret is read from",
            ))
        }
    };
    let users = match t.get("users") {
        Some((_, u)) => u
            .strings(&format!("{key}.users"))?
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect(),
        None => Vec::new(),
    };
    Ok(SecretSource {
        file,
        users,
        origin,
    })
}
