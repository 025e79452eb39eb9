//! `agent`: the unprivileged command-line client of sandboxd.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::prompt::visible;
use agent::proto::v1::{
    check_policy_request, AuditRequest, CheckPolicyRequest, CommandQuery, Escalation,
    GetProfileRequest, KillRequest, ListProfilesRequest, ListRequest, SandboxInfo,
};
use agent::tty::{window_size, RawMode};
use agent::{
    connect, parse_duration, run_attach, run_exec, socket_path, Approval, Client, Control,
    ExecError, ExecIo, ExecOptions, DAEMON_FAILURE,
};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

/// `eprintln!` that ignores a failed write: with stderr a closed pipe,
/// `eprintln!` panics, and the agent would exit 101 instead of its own code.
macro_rules! say {
    ($($arg:tt)*) => {
        let _ = writeln!(std::io::stderr(), $($arg)*);
    };
}

#[derive(Parser)]
#[command(name = "agent", version, about = "Run commands confined by sandboxd")]
struct Cli {
    /// sandboxd's socket [default: $SANDBOXD_SOCKET, then /run/sandboxd/sandboxd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command in a sandbox; exits with its status.
    Exec(ExecArgs),
    /// List running sandboxes.
    Ps {
        /// Every user's (administrators only).
        #[arg(long)]
        all: bool,
    },
    /// Kill a sandbox.
    Kill { id: String },
    /// Watch a running sandbox's output (read-only); exits with its status.
    /// Ctrl-C detaches and leaves it running.
    Attach { id: String },
    /// Inspect profiles.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// Read the audit log: your own records (administrators: everyone's).
    Audit(AuditArgs),
}

#[derive(Args)]
struct AuditArgs {
    /// Keep printing records as they are written (until interrupted).
    #[arg(long)]
    follow: bool,
    /// Only records since TIME: RFC 3339 (2026-12-02T01:00:00Z) or a duration back from now (10m, 2h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print each record as its JSON line in the log, with characters that
    /// would not show as themselves escaped.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ApprovalArg {
    Untrusted,
    OnRequest,
    Never,
}

impl From<ApprovalArg> for Approval {
    fn from(a: ApprovalArg) -> Approval {
        match a {
            ApprovalArg::Untrusted => Approval::Untrusted,
            ApprovalArg::OnRequest => Approval::OnRequest,
            ApprovalArg::Never => Approval::Never,
        }
    }
}

#[derive(Args)]
struct ExecArgs {
    /// Profile to run under [default: the daemon's default].
    #[arg(long)]
    profile: Option<String>,
    /// Working directory [default: the current one].
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set a variable inside the sandbox.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Shorter timeout than the profile's, e.g. 500ms, 10s, 2m, 1h.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Stricter approval mode than the profile's.
    #[arg(long, value_enum)]
    approval: Option<ApprovalArg>,
    #[arg(long)]
    session: Option<String>,
    /// A secret for the proxy to inject, read from this environment
    /// variable; it never enters the sandbox.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Command answering approval requests (request as JSON on stdin, one word on stdout).
    #[arg(long, value_name = "CMD")]
    approver: Option<String>,
    /// Ask for an extra writable root for this exec (needs an approval).
    #[arg(long = "request-write", value_name = "PATH")]
    request_write: Vec<PathBuf>,
    /// Ask for network access to DOMAIN for this exec (needs an approval).
    #[arg(long = "request-network", value_name = "DOMAIN")]
    request_network: Vec<String>,
    /// Ask to run with the `full` profile's file system and network view
    /// (still its own pid namespace, limits and audit; needs an approval).
    #[arg(long = "request-unsandboxed")]
    request_unsandboxed: bool,
    /// Why the escalation is needed, shown to whoever approves.
    #[arg(long, value_name = "TEXT")]
    justification: Option<String>,
    /// Run on a terminal; the local one is put in raw mode meanwhile.
    #[arg(long)]
    tty: bool,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Profiles with their description and source; `*` marks the default.
    List,
    /// A profile's effective TOML.
    Show { name: String },
    /// What a profile decides; exits 0 allow, 1 deny, 2 prompt.
    Check(CheckArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("query").required(true).args(["url", "read", "write", "cmd"]))]
struct CheckArgs {
    name: String,
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    read: Option<PathBuf>,
    #[arg(long)]
    write: Option<PathBuf>,
    /// Check the command given after the options (`--cmd -- CMD...`).
    #[arg(long, requires = "argv")]
    cmd: bool,
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD",
        requires = "cmd"
    )]
    argv: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors are the client's own failure: 125, like `timeout` and `env`.
            let code = if e.use_stderr() { DAEMON_FAILURE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("agent: cannot start the async runtime: {e}");
            std::process::exit(DAEMON_FAILURE);
        }
    };
    let code = rt.block_on(run(cli));
    let _ = std::io::stdout().flush();
    // Exit without dropping the runtime: dropping it would wait for the
    // blocking thread that may still be reading stdin (e.g. a terminal).
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    let path = socket_path(cli.socket.as_deref());
    let mut client = match connect(&path).await {
        Ok(c) => c,
        Err(e) => {
            say!("agent: {e}");
            return DAEMON_FAILURE;
        }
    };
    let result = match cli.command {
        Cmd::Exec(args) => exec(&mut client, args).await,
        Cmd::Ps { all } => ps(&mut client, all).await,
        Cmd::Kill { id } => kill(&mut client, id).await,
        Cmd::Attach { id } => attach(&mut client, id).await,
        Cmd::Policy {
            command: PolicyCmd::List,
        } => policy_list(&mut client).await,
        Cmd::Policy {
            command: PolicyCmd::Show { name },
        } => policy_show(&mut client, name).await,
        Cmd::Policy {
            command: PolicyCmd::Check(args),
        } => policy_check(&mut client, args).await,
        Cmd::Audit(args) => audit(&mut client, args).await,
    };
    result.unwrap_or_else(|e| {
        say!("agent: {e:#}");
        DAEMON_FAILURE
    })
}

/// Turns a gRPC error into one naming the daemon's message.
fn rpc(status: tonic::Status) -> anyhow::Error {
    anyhow!("sandboxd: {}", status.message())
}

async fn exec(client: &mut Client, args: ExecArgs) -> anyhow::Result<i32> {
    let here = std::env::current_dir().context("cannot determine the current directory")?;
    let cwd = match args.cwd {
        Some(d) if d.is_absolute() => d,
        Some(d) => here.join(d),
        None => here,
    };
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if let Some(missing) = args.secrets.iter().find(|n| !env.contains_key(*n)) {
        anyhow::bail!("--secret {missing}: {missing} is not set in this environment");
    }
    let escalation = (!args.request_write.is_empty()
        || !args.request_network.is_empty()
        || args.request_unsandboxed
        || args.justification.is_some())
    .then(|| Escalation {
        write: args
            .request_write
            .iter()
            .map(|p| cwd.join(p).to_string_lossy().into_owned())
            .collect(),
        network_allow: args.request_network,
        unsandboxed: args.request_unsandboxed,
        justification: args.justification.unwrap_or_default(),
    });
    let opts = ExecOptions {
        argv: args.command,
        cwd,
        env,
        set_env: args.env.into_iter().collect(),
        profile: args.profile,
        timeout: args.timeout,
        approval: args.approval.map(Approval::from),
        session: args.session,
        secrets: args.secrets,
        tty: args.tty,
        window: if args.tty { window_size() } else { None },
        narrowing: None,
        escalation,
    };

    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (give_up_tx, give_up_rx) = oneshot::channel();
    let signals = forward_signals(ctl_tx, give_up_tx, args.tty)?;
    let mut io = ExecIo::stdio(args.approver);
    io.control = Some(ctl_rx);
    // Restored when this guard drops, on every return path below.
    let raw = if args.tty {
        RawMode::enable().context("cannot put the terminal in raw mode")?
    } else {
        None
    };
    io.raw_terminal = raw.is_some();
    let result = tokio::select! {
        r = run_exec(client, &opts, io) => Some(r),
        Ok(()) = give_up_rx => None,
    };
    drop(raw);
    signals.abort();
    match result {
        Some(Ok(status)) => Ok(status.code()),
        None => {
            // Returning drops the stream, which makes sandboxd kill the sandbox.
            say!("agent: interrupted {GIVE_UP_AFTER} times; abandoning the sandbox");
            Ok(128 + libc::SIGINT)
        }
        Some(Err(e)) => Ok(failed(e)),
    }
}

/// The exit status for an exec or attach that ended without one, after
/// saying why, unless the output's reader is gone: that ends quietly, as a
/// pipeline member killed by SIGPIPE does.
fn failed(e: ExecError) -> i32 {
    if !matches!(e, ExecError::ReaderGone) {
        say!("agent: {e}");
    }
    e.code()
}

/// SIGINTs after which the agent stops waiting for the sandbox to exit.
const GIVE_UP_AFTER: u32 = 3;

/// Forwards SIGINT, SIGTERM and SIGHUP to the sandbox (instead of dying of
/// them) and, with a terminal, window size changes. The [`GIVE_UP_AFTER`]th
/// SIGINT fires `give_up` instead, for a sandbox that does not end.
fn forward_signals(
    tx: mpsc::UnboundedSender<Control>,
    give_up: oneshot::Sender<()>,
    tty: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut streams = Vec::new();
    for (kind, n) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ] {
        streams.push((
            signal(kind).with_context(|| format!("cannot handle signal {n}"))?,
            Some(n),
        ));
    }
    if tty {
        streams.push((
            signal(SignalKind::window_change()).context("cannot handle SIGWINCH")?,
            None,
        ));
    }
    Ok(tokio::spawn(async move {
        let mut merged = tokio_stream::StreamMap::new();
        for (i, (s, n)) in streams.into_iter().enumerate() {
            merged.insert(
                i,
                tokio_stream::wrappers::SignalStream::new(s).map(move |()| n),
            );
        }
        use tokio_stream::StreamExt;
        let mut interrupts = 0;
        let mut give_up = Some(give_up);
        while let Some((_, n)) = merged.next().await {
            if n == Some(libc::SIGINT) {
                interrupts += 1;
                if interrupts == GIVE_UP_AFTER {
                    if let Some(g) = give_up.take() {
                        let _ = g.send(());
                    }
                    return;
                }
            }
            let control = match n {
                Some(sig) => Control::Signal(sig),
                None => match window_size() {
                    Some(ws) => Control::Resize {
                        rows: ws.rows,
                        cols: ws.cols,
                    },
                    None => continue,
                },
            };
            if tx.send(control).is_err() {
                return;
            }
        }
    }))
}

async fn ps(client: &mut Client, all: bool) -> anyhow::Result<i32> {
    let list = client
        .list(ListRequest { all })
        .await
        .map_err(rpc)?
        .into_inner();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let rows: Vec<[String; 6]> = list.sandboxes.iter().map(|s| ps_row(s, now)).collect();
    let header = ["ID", "UID", "PID", "PROFILE", "AGE", "COMMAND"];
    let mut out = std::io::stdout().lock();
    ended(write_table(&mut out, &header, &rows))?;
    Ok(0)
}

/// One sandbox's row. Its strings may be another user's (an administrator's
/// `ps --all`), so each is [`quoted`]: no escape sequence or line break of
/// theirs reaches the terminal, and each argument shows where it ends.
fn ps_row(s: &SandboxInfo, now_ms: i64) -> [String; 6] {
    let age = Duration::from_millis(u64::try_from(now_ms - s.started_unix_ms).unwrap_or(0));
    let argv: Vec<String> = s.argv.iter().map(|a| quoted(a)).collect();
    [
        quoted(&s.id),
        s.uid.to_string(),
        s.pid.to_string(),
        quoted(&s.profile),
        format_age(age),
        argv.join(" "),
    ]
}

/// `42s`, `5m`, `3h`, `2d`: the largest whole unit.
fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut width = header.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(c);
            } else {
                text.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header.to_vec())?;
    for r in rows {
        line(r.iter().map(String::as_str).collect())?;
    }
    out.flush()
}

/// Whether writing to stdout found its reader gone (`| head`, `| true`):
/// the output then ends there, quietly. Other write errors are errors.
fn ended(written: std::io::Result<()>) -> anyhow::Result<bool> {
    match written {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

async fn kill(client: &mut Client, id: String) -> anyhow::Result<i32> {
    client
        .kill(KillRequest { id, signal: 0 })
        .await
        .map_err(rpc)?;
    Ok(0)
}

/// Shows sandbox `id`'s output until its exit, whose status is returned as
/// `agent exec` would; SIGINT, SIGTERM or SIGHUP detach instead (128+N),
/// leaving the sandbox running.
async fn attach(client: &mut Client, id: String) -> anyhow::Result<i32> {
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let detached = |n: i32| {
        say!("agent: detached from sandbox {id}; it keeps running");
        Ok(128 + n)
    };
    let result = tokio::select! {
        r = run_attach(client, &id, &mut stdout, &mut stderr) => r,
        _ = int.recv() => return detached(libc::SIGINT),
        _ = term.recv() => return detached(libc::SIGTERM),
        _ = hup.recv() => return detached(libc::SIGHUP),
    };
    match result {
        Ok(status) => Ok(status.code()),
        Err(e) => Ok(failed(e)),
    }
}

async fn policy_list(client: &mut Client) -> anyhow::Result<i32> {
    let list = client
        .list_profiles(ListProfilesRequest {})
        .await
        .map_err(rpc)?
        .into_inner();
    let rows: Vec<[String; 3]> = list
        .profiles
        .iter()
        .map(|p| {
            let mark = if p.name == list.default_profile {
                "*"
            } else {
                " "
            };
            [
                format!("{mark} {}", p.name),
                p.source.clone(),
                p.description.clone(),
            ]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    ended(write_table(
        &mut out,
        &["  NAME", "SOURCE", "DESCRIPTION"],
        &rows,
    ))?;
    Ok(0)
}

async fn policy_show(client: &mut Client, name: String) -> anyhow::Result<i32> {
    let p = client
        .get_profile(GetProfileRequest { name })
        .await
        .map_err(rpc)?
        .into_inner();
    let mut out = std::io::stdout().lock();
    let mut write = || {
        if let Some(s) = &p.summary {
            writeln!(out, "# {} ({}): {}", s.name, s.source, s.description)?;
        }
        out.write_all(p.toml.as_bytes())?;
        if !p.toml.ends_with('\n') {
            writeln!(out)?;
        }
        out.flush()
    };
    ended(write())?;
    Ok(0)
}

async fn policy_check(client: &mut Client, args: CheckArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    let query = if let Some(u) = args.url {
        check_policy_request::Query::Url(u)
    } else if let Some(p) = args.read {
        check_policy_request::Query::Read(abs(&p).to_string_lossy().into_owned())
    } else if let Some(p) = args.write {
        check_policy_request::Query::Write(abs(&p).to_string_lossy().into_owned())
    } else if args.cmd {
        check_policy_request::Query::Cmd(CommandQuery { argv: args.argv })
    } else {
        bail!("one of --url, --read, --write or --cmd is required");
    };
    let request = CheckPolicyRequest {
        profile: args.name,
        query: Some(query),
        cwd: cwd.to_string_lossy().into_owned(),
    };
    let r = client
        .check_policy(request)
        .await
        .map_err(rpc)?
        .into_inner();
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    ended(
        writeln!(
            out,
            "{}  {}  {}",
            r.decision,
            or_dash(&r.rule),
            or_dash(&r.reason)
        )
        .and_then(|()| out.flush()),
    )?;
    Ok(match r.decision.as_str() {
        "allow" => 0,
        "deny" => 1,
        "prompt" => 2,
        other => {
            say!("agent: sandboxd answered an unknown decision {other:?}");
            DAEMON_FAILURE
        }
    })
}

async fn audit(client: &mut Client, args: AuditArgs) -> anyhow::Result<i32> {
    let request = AuditRequest {
        follow: args.follow,
        since: args.since.unwrap_or_default(),
    };
    let mut records = client.audit(request).await.map_err(rpc)?.into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(r) = records.message().await.map_err(rpc)? {
        let line = if args.json {
            json_visible(&r.json)
        } else {
            audit_line(&r.json)
        };
        if ended(writeln!(out, "{line}").and_then(|()| out.flush()))? {
            break;
        }
    }
    Ok(0)
}

/// JSON text with every character that would not show as itself
/// ([`sandbox_proto::is_hidden`]: C1 controls, bidirectional overrides...)
/// as a `\uXXXX` escape (a surrogate pair above U+FFFF), which serde_json
/// leaves as is but for U+0000 to U+001F. JSON's whitespace (tab, line feed,
/// carriage return) is kept: in valid JSON it is only found between tokens,
/// where an escape would not be JSON.
fn json_visible(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if sandbox_proto::is_hidden(c) && !matches!(c, '\t' | '\n' | '\r') {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fields of a record shown after its time, kind and id, in this order.
const AUDIT_FIELDS: &[&str] = &[
    "uid",
    "profile",
    "decision",
    "code",
    "signal",
    "timed_out",
    "oom_killed",
    "reason",
    "rule",
    "message",
];

/// One record on one line: `TIME KIND ID key=value... -- ARGV`; fields that
/// are absent, null, false, empty (or a zero signal) are left out.
fn audit_line(json: &str) -> String {
    let Ok(serde_json::Value::Object(r)) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_string();
    };
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => quoted(s),
        Some(serde_json::Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    let mut parts = vec![text(r.get("time")), text(r.get("kind")), text(r.get("id"))];
    for key in AUDIT_FIELDS {
        let skip = match r.get(*key) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => true,
            Some(serde_json::Value::String(s)) => s.is_empty(),
            Some(serde_json::Value::Number(n)) => *key == "signal" && n.as_u64() == Some(0),
            Some(_) => false,
        };
        if !skip {
            parts.push(format!("{key}={}", text(r.get(*key))));
        }
    }
    if let Some(serde_json::Value::Array(argv)) = r.get("argv") {
        parts.push("--".to_string());
        parts.extend(argv.iter().map(|a| match a {
            serde_json::Value::String(s) => quoted(s),
            other => other.to_string(),
        }));
    }
    parts.join(" ")
}

/// `s` as is when it is one plain word, else quoted, with every character
/// that would not show as itself escaped (what `{:?}` leaves, such as
/// invisible fillers, by [`visible`]).
fn quoted(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c));
    if plain {
        s.to_string()
    } else {
        visible(&format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{json_visible, quoted};

    #[test]
    fn json_shows_hidden_characters_as_escapes() {
        let json = "{\"argv\":[\"a\u{9b}b\",\"\u{202e}exe.txt\",\"\u{e0041}\\u001b\"],\t\"é\":1}";
        let shown = json_visible(json);
        assert_eq!(
            shown,
            r#"{"argv":["a\u009bb","\u202eexe.txt","\udb40\udc41\u001b"],"#.to_string()
                + "\t\"é\":1}"
        );
        // The same value, in JSON that can be read back.
        let read = |j: &str| serde_json::from_str::<serde_json::Value>(j).unwrap();
        assert_eq!(read(&shown), read(json));
    }

    #[test]
    fn quoted_escapes_what_would_not_show() {
        assert_eq!(quoted("ls"), "ls");
        assert_eq!(quoted("a b"), r#""a b""#);
        assert_eq!(quoted("x\n\u{1b}[2K"), r#""x\n\u{1b}[2K""#);
        // Left by `{:?}`, an invisible filler is still shown.
        assert_eq!(quoted("a\u{3164}b"), r#""a\u{3164}b""#);
    }
}
