//! sandboxd: flags and config, wired to the daemon's pieces.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use sandboxd::api::approvals::Approvals;
use sandboxd::api::{server, Api};
use sandboxd::audit::{self, AuditLog};
use sandboxd::config::Config;
use sandboxd::identity::resolve_group;
use sandboxd::net;
use sandboxd::plan::{self, DaemonPaths};
use sandboxd::policy::PolicyStore;
use sandboxd::registry::Registry;
use sandboxd::tls::Inspector;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The sandboxd daemon: runs commands confined, as their caller, behind a gRPC API on a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "sandboxd", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (default /etc/sandboxd/sandboxd.toml, if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket to listen on (wins over the config file).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// State directory (wins over the config file).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Policy directory (wins over the config file).
    #[arg(long, global = true, value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and the profiles, print the effective profiles; exit 0 or 1.
    CheckConfig,
    /// The audit log in the state dir.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad record.
    Verify,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    // The sandbox's init re-executes this binary; it must not start a runtime.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(sandboxd::backend::linux::init::ARG))
    {
        sandboxd::backend::linux::init::main();
    }
    let args = Args::parse();
    let result = match args.command {
        Some(Command::CheckConfig) => check_config(&args),
        Some(Command::Audit {
            action: AuditCommand::Verify,
        }) => audit_verify(&args),
        None => daemon(&args),
    };
    if let Err(e) = result {
        eprintln!("sandboxd: {e:#}");
        std::process::exit(1);
    }
}

/// The config file with the flags applied over it.
fn config(args: &Args) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(s) = &args.socket {
        config.socket = s.clone();
    }
    if let Some(d) = &args.state_dir {
        config.state_dir = d.clone();
    }
    if let Some(d) = &args.policy_dir {
        config.policy_dir = d.clone();
    }
    Ok(config)
}

fn check_config(args: &Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let store = PolicyStore::load(Some(&config.policy_dir), config.embedded_profiles)?;
    // What the daemon would refuse to start on, or run without.
    let secrets = net::SecretStore::load(&config.secrets)?;
    warn_unknown_users(&secrets, |w| eprintln!("warning: {w}"));
    sandboxd::tls::check_extra_roots(&config.tls.extra_roots)
        .map_err(|e| anyhow::anyhow!(config.tls.named(&e)))?;
    let mut text = String::new();
    for profile in store.profiles() {
        // The rendering starts with a `# profile NAME from SOURCE` line.
        if let Some(toml) = store.render(&profile.name) {
            text.push_str(toml.trim_end());
            text.push_str("\n\n");
        }
    }
    // A reader that stops early (`| head`) is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn audit_verify(args: &Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let summary = audit::verify(&config.state_dir)?;
    println!(
        "audit log intact: {} records in {} file(s) ({})",
        summary.records,
        summary.files,
        config.state_dir.join(audit::FILE_NAME).display()
    );
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOXD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The resolver, the inspection CA (a failure only disables inspection,
/// loudly) and the secrets (a bad secret file stops the start).
fn network_services(config: &Config, fd_limit: u64) -> anyhow::Result<net::Services> {
    let resolver = net::Resolver::new(&config.dns)?;
    let inspector = Inspector::load_or_create(&config.state_dir, &config.tls.extra_roots)
        .map(Arc::new)
        .map_err(|e| {
            let e = config.tls.named(&e);
            tracing::error!(error = %e, "no HTTPS inspection: profiles with inspect = true will be refused");
            e
        });
    let secrets = net::SecretStore::load(&config.secrets)?;
    warn_unknown_users(&secrets, |w| tracing::warn!("{w}"));
    Ok(net::Services {
        resolver: Arc::new(resolver),
        inspector,
        secrets: Arc::new(secrets),
        connections: net::connections(fd_limit),
    })
}

/// Tells `warn` of each name in the secrets' `users` that is no user of
/// /etc/passwd (where the daemon looks names up) and no uid.
fn warn_unknown_users(secrets: &net::SecretStore, warn: impl Fn(String)) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for (secret, user) in secrets.unknown_users(&passwd) {
        warn(format!(
            "secrets.{secret}.users: no user {user:?} in /etc/passwd, so nobody gets the secret \
             by that name (a numeric uid names a user who is not there)"
        ));
    }
}

/// Writes the resolv.conf allowlist sandboxes see (naming their own resolver).
fn write_resolv_conf(state_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = state_dir.join("resolv.conf");
    std::fs::write(&path, plan::RESOLV_CONF)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn daemon(args: &Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let policies = PolicyStore::load(Some(&config.policy_dir), config.embedded_profiles)?;
    init_tracing(args.log_format);
    let fd_limit = sandboxd::backend::linux::rlimit::raise().unwrap_or_else(|e| {
        tracing::warn!("descriptor limit not raised: {e}");
        sandboxd::backend::linux::rlimit::for_sandboxes().0
    });

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("creating the state dir {}", config.state_dir.display()))?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", config.state_dir.display()))?;
    // First in the state dir: the log's lock keeps a second daemon off it.
    let audit = Arc::new(AuditLog::open(&config.state_dir, config.audit_max_size)?);
    audit.retry_in_background()?;
    let staging = plan::prepare_staging(&config.state_dir)?;

    let etc_group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let admin_gid = resolve_group(&config.admin_group, &etc_group);
    if admin_gid.is_none() {
        tracing::warn!(admin_group = %config.admin_group, "admin group not found: nobody is an admin");
    }
    let init_exe = std::env::current_exe()
        .context("locating this binary (re-executed as the sandbox init)")?;
    // Pre-start a few sandbox inits so that the first execs need not wait.
    sandboxd::backend::linux::prefill(&init_exe);
    let net = network_services(&config, fd_limit)?;
    let paths = DaemonPaths {
        socket: config.socket.clone(),
        state_dir: config.state_dir.clone(),
        policy_dir: config.policy_dir.clone(),
        staging,
        resolv_conf: write_resolv_conf(&config.state_dir)?,
        ca_bundle: net
            .inspector
            .as_ref()
            .map(|i| i.bundle_path().to_path_buf())
            .map_err(Clone::clone),
    };
    let registry = Registry::new(config.limits.clone());
    let full = policies.get("full").cloned();
    let api = Api {
        policies: Arc::new(policies),
        registry: Arc::clone(&registry),
        paths,
        admin_gid,
        init_exe,
        audit: Arc::clone(&audit),
        net,
        approvals: Arc::new(Approvals::new(
            &config.state_dir,
            config.approval_timeout,
            full,
        )),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let listener = bind(&config.socket)?;
        tracing::info!(socket = %config.socket.display(), state_dir = %config.state_dir.display(),
            policy_dir = %config.policy_dir.display(), profiles = api.policies.profiles().count(), "sandboxd listening");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(server::serve(listener, api, async {
            let _ = stop_rx.await;
        }));
        let outcome = tokio::select! {
            _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); Ok(()) }
            _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); Ok(()) }
            res = &mut server => match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::from(e)),
                Err(e) => Err(anyhow::Error::from(e).context("server task")),
            },
        };
        let killed = registry.close().await;
        if killed > 0 {
            tracing::info!(killed, "sandboxes killed");
        }
        let closing = tokio::task::spawn_blocking(sandboxd::backend::linux::close_pool);
        let _ = stop_tx.send(());
        // Sandboxes end within moments of their kill, their ends recorded
        // whether or not their clients read; connections then close.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while registry.live() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::time::timeout_at(deadline, server).await;
        let _ = tokio::time::timeout_at(deadline, closing).await;
        if let Err(e) = std::fs::remove_file(&config.socket) {
            tracing::warn!(socket = %config.socket.display(), error = %e, "removing the socket");
        }
        outcome
    })?;
    // Connections still open past the deadline must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // Allowlist sandboxes' network threads end with their execs and write
    // what they queued; the last flush below comes after them.
    if !sandboxd::net::listen::wait_all_ended(Duration::from_secs(2)) {
        tracing::warn!("network threads still running at exit");
    }
    if !sandboxd::supervisor::wait_cgroups_removed(Duration::from_secs(3)) {
        tracing::warn!("cgroups of ended sandboxes still being removed at exit");
    }
    // Records queued behind a flush (ends of connections) go to disk now;
    // those that cannot are lost with the process, and said so.
    if let Err(e) = audit.flush_queued() {
        let unwritten = audit.unwritten();
        match unwritten.is_empty() {
            true => tracing::error!(error = %e, "audit log: the last write failed"),
            false => {
                tracing::error!(error = %e, %unwritten, "audit log: stopping with records that could not be written; they are lost")
            }
        }
    }
    Ok(())
}

/// Binds the socket (mode 0666: the caller's identity comes from the kernel,
/// not from file permissions), replacing a stale one but never a live one.
fn bind(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating the socket dir {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                bail!("{}: another sandboxd is listening there", socket.display());
            }
            std::fs::remove_file(socket)
                .with_context(|| format!("removing the stale socket {}", socket.display()))?;
        }
        Ok(_) => bail!("{}: exists and is not a socket", socket.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", socket.display())),
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("chmod 0666 {}", socket.display()))?;
    Ok(listener)
}
