//! From an effective policy, the caller and the daemon's own paths to the
//! concrete sandbox: the [`SandboxSpec`] for the init, the cgroup limits and
//! the supervisor's options. Everything here is decided once, before spawn.

use crate::backend::linux::cgroup::CgroupLimits;
use crate::backend::spec::{FileBind, FsPlan, LandlockPlan, NetPlan, SandboxSpec};
use crate::identity::{Account, Caller};
use crate::net::{DNS_PORT, HTTP_PROXY_PORT, SOCKS_PORT};
use crate::policy::{EffectivePolicy, ExecContext, LandlockMode, NetworkMode};
use crate::supervisor::Options;
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time between the SIGINT of a Ctrl-C and the SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// Where `{home}` points when the caller has none we can trust.
pub const NO_HOME: &str = "/nonexistent";

/// Where users' runtime directories (`XDG_RUNTIME_DIR`) live: hidden.
pub const USER_RUNTIME_DIRS: &str = "/run/user";

/// The daemon's own paths, which no sandbox may see.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    /// Root-owned empty directory the init mounts the new root on.
    pub staging: PathBuf,
    /// The resolv.conf shown in allowlist sandboxes (naming 127.0.0.1).
    pub resolv_conf: PathBuf,
    /// The CA bundle shown in sandboxes whose HTTPS is inspected, or why
    /// there is none (such execs are then refused).
    pub ca_bundle: Result<PathBuf, String>,
}

/// Where the view's system CA bundle is, which inspected sandboxes get
/// replaced by the bundle that also trusts sandboxd's CA.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The contents of [`DaemonPaths::resolv_conf`].
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions edns0 trust-ad\n";

/// Everything needed to start and watch one sandbox.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: SandboxSpec,
    pub limits: CgroupLimits,
    pub options: Options,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "profile {profile} inspects HTTPS, but sandboxd has no inspection CA: {why} (rule: network.inspect)"
    )]
    NoInspectionCa { profile: String, why: String },
    #[error("staging directory {path}: {message}")]
    Staging { path: String, message: String },
}

/// What an exec request brings to the plan besides the policy.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub tty: bool,
}

/// `{home}` of `caller`: the home directory of its `account` (its uid's
/// /etc/passwd entry) if there is one; else the `HOME` of the request's environment, but only if that is an
/// absolute path to a directory (not a symlink) owned by the caller; else
/// [`NO_HOME`]. A caller cannot point `{home}` at someone else's files.
pub fn caller_home(caller: &Caller, account: Option<&Account>, env_home: Option<&str>) -> PathBuf {
    if let Some(home) = account.and_then(|a| a.home.clone()) {
        return home;
    }
    if let Some(home) = env_home.map(Path::new).filter(|h| h.is_absolute()) {
        if let Ok(meta) = std::fs::symlink_metadata(home) {
            if meta.is_dir() && meta.uid() == caller.uid {
                return home.to_path_buf();
            }
        }
    }
    PathBuf::from(NO_HOME)
}

/// The `HOME` in the environment of process `pid` (from /proc), for requests
/// that carry no environment (CheckPolicy): only a hint, which
/// [`caller_home`] accepts only if it names a directory the caller owns.
pub fn process_home(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"HOME="))
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
}

/// The per-exec template facts; `{home}` as [`caller_home`] says.
pub fn exec_context(
    caller: &Caller,
    account: Option<&Account>,
    cwd: PathBuf,
    caller_env: BTreeMap<String, String>,
    set_env: BTreeMap<String, String>,
) -> ExecContext {
    let home = caller_home(caller, account, caller_env.get("HOME").map(String::as_str));
    ExecContext {
        cwd,
        home,
        caller_env,
        set_env,
    }
}

/// The concrete sandbox for `req` under `policy`. `unix_sockets` are the
/// host's path-bound Unix sockets ([`parse_proc_net_unix`]).
pub fn build(
    policy: &EffectivePolicy,
    caller: &Caller,
    req: Request,
    paths: &DaemonPaths,
    unix_sockets: &[PathBuf],
) -> Result<Plan, PlanError> {
    let mut env = policy.env.clone();
    let mut files = Vec::new();
    let mut connect_tcp = None;
    let net = match policy.network {
        NetworkMode::None => NetPlan::Loopback,
        NetworkMode::Full => NetPlan::Host,
        NetworkMode::Allowlist => {
            files.push(FileBind {
                source: paths.resolv_conf.clone(),
                target: PathBuf::from("/etc/resolv.conf"),
            });
            set_env(&mut env, proxy_env());
            if policy.net.as_ref().is_some_and(|n| n.inspect()) {
                let bundle = paths
                    .ca_bundle
                    .as_ref()
                    .map_err(|why| PlanError::NoInspectionCa {
                        profile: policy.profile.clone(),
                        why: why.clone(),
                    })?;
                files.push(FileBind {
                    source: bundle.clone(),
                    target: PathBuf::from(SYSTEM_CA_BUNDLE),
                });
                set_env(&mut env, ca_env());
            }
            connect_tcp = Some(vec![HTTP_PROXY_PORT, SOCKS_PORT, DNS_PORT]);
            NetPlan::Loopback
        }
    };
    // Paths the sandbox sees replaced anyway need no mount of their own.
    let mut replaced: Vec<PathBuf> = Vec::new();
    if policy.private_tmp {
        replaced.push(PathBuf::from("/tmp"));
    }
    let mut hide = Vec::new();
    // Besides the daemon's own: the users' runtime directories, where
    // sockets come and go (agents started on demand, a rootless container
    // engine's, bound in a network namespace /proc/net/unix does not show),
    // so that one made after the sandbox's start is not within reach.
    for dir in [
        paths.socket.parent(),
        Some(paths.state_dir.as_path()),
        Some(paths.policy_dir.as_path()),
        Some(Path::new(USER_RUNTIME_DIRS)),
    ]
    .into_iter()
    .flatten()
    {
        // Hiding a directory that holds the cwd or a writable root would hide
        // the workspace itself: then only the socket (below) is hidden.
        let holds_workspace = std::iter::once(&req.cwd)
            .chain(&policy.write)
            .any(|p| p.starts_with(dir));
        if dir.is_absolute()
            && dir != Path::new("/")
            && !holds_workspace
            && !inside_any(dir, &replaced)
        {
            hide.push(dir.to_path_buf());
        }
    }
    if !inside_any(&paths.socket, &hide) && !inside_any(&paths.socket, &replaced) {
        hide.push(paths.socket.clone());
    }
    hide.sort();
    hide.dedup();
    // A runtime directory the sandbox cannot see is no place to point tools
    // at: without the variable they fall back to their own (under /tmp).
    env.retain(|(k, v)| k != "XDG_RUNTIME_DIR" || !inside_any(Path::new(v), &hide));
    // Sockets in writable roots too: what listens there is a host process.
    // A replaced directory (the private /tmp) hides the host's sockets in
    // it, except where a root brings part of the host's back (a workspace
    // in /tmp).
    let skip: Vec<PathBuf> = hide.iter().chain(&replaced).cloned().collect();
    let exposed: Vec<PathBuf> = policy
        .write
        .iter()
        .chain(&policy.read)
        .filter(|r| inside_any(r, &replaced))
        .cloned()
        .collect();
    let host_sockets = host_sockets(unix_sockets, &skip, &exposed);
    let fs = FsPlan {
        read: policy.read.clone(),
        write: policy.write.clone(),
        write_host: policy.write_host,
        deny_read: policy.deny_read.clone(),
        deny_write: policy.deny_write.clone(),
        private_tmp: policy.private_tmp,
        home: policy.home.clone(),
        hide,
        host_sockets,
        files,
        staging: paths.staging.clone(),
    };
    let spec = SandboxSpec {
        id: req.id,
        argv: req.argv,
        env,
        cwd: req.cwd,
        creds: caller.credentials(),
        fs,
        landlock: LandlockPlan {
            required: policy.landlock == LandlockMode::Required,
            connect_tcp,
        },
        net,
        tty: req.tty,
        nofile: crate::backend::linux::rlimit::for_sandboxes(),
        // The daemon's to add (see `DaemonLimits::tasks_per_user`).
        nproc: None,
    };
    Ok(Plan {
        spec,
        limits: CgroupLimits {
            memory_bytes: policy.limits.memory,
            pids: policy.limits.pids,
            // The daemon's to add (see `DaemonLimits::share`).
            user: None,
        },
        options: Options {
            timeout: policy.limits.timeout,
            output_cap: policy.limits.output,
            grace: GRACE,
        },
    })
}

/// Sets each of `vars` in `env`, replacing an earlier value of the same name.
fn set_env(env: &mut Vec<(String, String)>, vars: Vec<(&str, String)>) {
    for (k, v) in vars {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    }
}

/// The variables that point common tools at the sandbox's proxies.
fn proxy_env() -> Vec<(&'static str, String)> {
    let http = format!("http://127.0.0.1:{HTTP_PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{SOCKS_PORT}");
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    let java = format!(
        "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={HTTP_PROXY_PORT} \
         -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={HTTP_PROXY_PORT} \
         -Dhttp.nonProxyHosts=localhost|127.0.0.1"
    );
    vec![
        ("HTTP_PROXY", http.clone()),
        ("HTTPS_PROXY", http.clone()),
        ("ALL_PROXY", socks.clone()),
        ("NO_PROXY", no_proxy.clone()),
        ("http_proxy", http.clone()),
        ("https_proxy", http.clone()),
        ("all_proxy", socks),
        ("no_proxy", no_proxy.clone()),
        ("npm_config_proxy", http.clone()),
        ("npm_config_https_proxy", http.clone()),
        ("npm_config_noproxy", no_proxy),
        ("PIP_PROXY", http.clone()),
        ("CARGO_HTTP_PROXY", http.clone()),
        ("YARN_HTTP_PROXY", http.clone()),
        ("YARN_HTTPS_PROXY", http),
        ("JAVA_TOOL_OPTIONS", java),
    ]
}

/// The variables that point common tools at the CA bundle of an inspected sandbox.
fn ca_env() -> Vec<(&'static str, String)> {
    [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "CARGO_HTTP_CAINFO",
        "PIP_CERT",
        "npm_config_cafile",
    ]
    .into_iter()
    .map(|k| (k, SYSTEM_CA_BUNDLE.to_string()))
    .collect()
}

fn inside_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// The sockets of `listed` that need hiding: those not inside any of `skip`
/// (hidden or replaced directories) or, if so, inside one of `exposed`
/// (roots within a replaced directory), sorted, without duplicates.
pub fn host_sockets(listed: &[PathBuf], skip: &[PathBuf], exposed: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = listed
        .iter()
        .filter(|p| !inside_any(p, skip) || inside_any(p, exposed))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The absolute paths of the path-bound sockets in the text of /proc/net/unix
/// (abstract sockets, which start with `@`, and relative binds are left out).
///
/// Each line after the header is `Num RefCount Protocol Flags Type St Inode [Path]`;
/// the path is the rest of the line after the seventh field and may hold spaces.
pub fn parse_proc_net_unix(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut rest = line.trim_start();
        let mut fields = 0;
        while fields < 7 && !rest.is_empty() {
            let end = rest.find(' ').unwrap_or(rest.len());
            rest = rest[end..].trim_start_matches(' ');
            fields += 1;
        }
        if fields == 7 && rest.starts_with('/') {
            out.push(PathBuf::from(rest));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The host's path-bound Unix sockets, read from /proc/net/unix.
pub fn read_host_sockets() -> std::io::Result<Vec<PathBuf>> {
    Ok(parse_proc_net_unix(&std::fs::read_to_string(
        "/proc/net/unix",
    )?))
}

/// Creates (or checks) the staging directory `state_dir/staging`: owned by
/// root, mode 0500, empty. Shared by every sandbox; none ever writes to it.
pub fn prepare_staging(state_dir: &Path) -> Result<PathBuf, PlanError> {
    let path = state_dir.join("staging");
    let err = |message: String| PlanError::Staging {
        path: path.display().to_string(),
        message,
    };
    match std::fs::DirBuilder::new().mode(0o500).create(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(&path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(err("not a directory owned by root".into()));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o500))
        .map_err(|e| err(e.to_string()))?;
    if std::fs::read_dir(&path)
        .map_err(|e| err(e.to_string()))?
        .next()
        .is_some()
    {
        return Err(err("not empty".into()));
    }
    Ok(path)
}
