//! The daemon's configuration (TOML; every key optional; flags win over the
//! file, embedded defaults fill the rest).

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
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub extra_roots: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SecretSource {
    pub file: PathBuf,
    /// User names or numeric uids allowed to use it.
    pub users: Vec<String>,
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

impl Config {
    pub const DEFAULT_PATH: &'static str = "/etc/sandboxd/sandboxd.toml";

    /// Reads `path` (or the default path when it exists; otherwise defaults only).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = path;
        todo!("config load")
    }
}
