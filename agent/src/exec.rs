//! Running one confined command: the `Exec` stream and its exit status.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sandbox_proto::v1::{
    exec_request, exec_response, ApprovalAnswer, ApprovalRequest, Escalation, Event, ExecExit,
    ExecRequest, ExecStart, Narrowing, SignalRequest, StdinEof, WindowSize,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_stream::StreamExt;

use crate::prompt::{visible, Gate, GatedStdin, Prompter};
use crate::Client;

/// Exit status of `agent exec` when sandboxd refused or failed the command.
pub const DAEMON_FAILURE: i32 = 125;
/// Exit status when the command's timeout ended it.
const TIMED_OUT: i32 = 124;
/// Size of the stdin chunks sent to the daemon.
const STDIN_CHUNK: usize = 64 * 1024;

/// Approval strictness a request may ask for; it may only be stricter than the profile's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    Untrusted,
    OnRequest,
    Never,
}

impl Approval {
    /// The spelling used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Untrusted => "untrusted",
            Approval::OnRequest => "on-request",
            Approval::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<Approval> {
        [Approval::Untrusted, Approval::OnRequest, Approval::Never]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// What to run and how; unset fields leave the profile's choice.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    /// Working directory, an absolute path (the same path inside the sandbox).
    pub cwd: PathBuf,
    /// The caller's environment; the profile decides what passes.
    pub env: HashMap<String, String>,
    /// Extra variables to set (never a name the profile denies).
    pub set_env: HashMap<String, String>,
    pub profile: Option<String>,
    /// May only shorten the profile's timeout.
    pub timeout: Option<Duration>,
    pub approval: Option<Approval>,
    pub session: Option<String>,
    /// Names of secrets to pass in, their values taken from `env`.
    pub secrets: Vec<String>,
    /// Run the command on a pseudo-terminal allocated by the daemon.
    pub tty: bool,
    /// Initial terminal size when `tty`.
    pub window: Option<WindowSize>,
    /// Requests to narrow the profile (fewer writable roots, domains, lower limits).
    pub narrowing: Option<Narrowing>,
    /// More than the profile gives, for this exec only: each needs an approval.
    pub escalation: Option<Escalation>,
}

impl ExecOptions {
    /// `argv` in `cwd` with the profile's defaults and no environment.
    pub fn new(argv: Vec<String>, cwd: PathBuf) -> ExecOptions {
        ExecOptions {
            argv,
            cwd,
            ..ExecOptions::default()
        }
    }

    /// The start message. A secret's value is taken from `env` (where it then
    /// stays out of the command's environment) and travels apart, for the
    /// daemon's proxy only.
    fn start(&self, interactive: bool) -> ExecStart {
        let secret = |k: &String| self.secrets.contains(k);
        ExecStart {
            argv: self.argv.clone(),
            cwd: self.cwd.to_string_lossy().into_owned(),
            env: self
                .env
                .iter()
                .filter(|(k, _)| !secret(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            set_env: self.set_env.clone(),
            profile: self.profile.clone().unwrap_or_default(),
            timeout_ms: self.timeout.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            approval: self
                .approval
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            session: self.session.clone().unwrap_or_default(),
            secrets: self.secrets.clone(),
            secret_values: self
                .env
                .iter()
                .filter(|(k, _)| secret(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tty: self.tty,
            window: self.window,
            narrow: self.narrowing.clone(),
            interactive,
            escalation: self.escalation.clone(),
        }
    }
}

/// Messages from the caller to the running command, besides stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Deliver POSIX signal N: SIGINT (which starts the daemon's grace
    /// period), SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2; SIGKILL kills
    /// the sandbox, and the daemon refuses any other with an event.
    Signal(i32),
    /// The terminal was resized.
    Resize { rows: u32, cols: u32 },
}

/// Who answers the daemon's approval requests.
#[derive(Clone, Debug)]
pub enum Approver {
    /// Deny every request.
    Deny,
    /// Run this shell command per request: the request as one JSON object on
    /// its stdin, one word on its stdout (`approve`, `approve-session`,
    /// `approve-always`, `deny`).
    Command(String),
    /// Ask the person at the terminal.
    Terminal(Arc<Prompter>),
}

/// The caller's side of the streams.
pub struct ExecIo {
    /// Forwarded in chunks, then end-of-file; `None` sends end-of-file at once.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// The command's stderr, plus one `sandboxd: ...` line per daemon event.
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// Signals and resizes to forward while the command runs.
    pub control: Option<mpsc::UnboundedReceiver<Control>>,
    pub approver: Approver,
    /// The terminal is in raw mode (`--tty`), where `\n` alone does not
    /// return the cursor: the agent's own lines (`sandboxd: ...`,
    /// `agent: ...`) then end in `\r\n`.
    pub raw_terminal: bool,
}

impl ExecIo {
    /// The process's own stdin, stdout and stderr. Requests go to the
    /// approver command when one is given, else to the person when stdin is
    /// a terminal (stdin then steps aside while they are asked), else they
    /// are denied.
    ///
    /// Reading stdin occupies a blocking thread that cannot be interrupted, so
    /// when stdin is a terminal or an open pipe, end the process with
    /// `std::process::exit` rather than dropping the runtime, which would wait
    /// for that read.
    pub fn stdio(approver: Option<String>) -> ExecIo {
        let (stdin, approver): (Box<dyn AsyncRead + Send + Unpin>, _) = match approver {
            Some(cmd) => (Box::new(tokio::io::stdin()), Approver::Command(cmd)),
            None if std::io::stdin().is_terminal() => {
                let gate = Arc::new(Gate::default());
                let prompter = Arc::new(Prompter::new(Arc::clone(&gate)));
                (
                    Box::new(GatedStdin::start(gate)),
                    Approver::Terminal(prompter),
                )
            }
            None => (Box::new(tokio::io::stdin()), Approver::Deny),
        };
        ExecIo {
            stdin: Some(stdin),
            stdout: Box::new(tokio::io::stdout()),
            stderr: Box::new(tokio::io::stderr()),
            control: None,
            approver,
            raw_terminal: false,
        }
    }

    /// No input, output dropped, questions denied: for a caller that only
    /// wants the exit.
    pub fn discard() -> ExecIo {
        ExecIo {
            stdin: None,
            stdout: Box::new(tokio::io::sink()),
            stderr: Box::new(tokio::io::sink()),
            control: None,
            approver: Approver::Deny,
            raw_terminal: false,
        }
    }
}

/// How the command ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ExitStatus {
    /// The sandbox's id, from `ExecStarted` (empty if the daemon sent none).
    pub id: String,
    pub exit: ExecExit,
}

impl ExitStatus {
    /// The exit status `agent exec` reports; see [`exit_code`].
    pub fn code(&self) -> i32 {
        exit_code(&self.exit)
    }
}

/// Maps an exit to the contract's status: 124 when the timeout ended it, the
/// command's own code when it exited (126 and 127 included), 128+N when signal
/// N killed it, and 125 when the daemon reported neither.
pub fn exit_code(exit: &ExecExit) -> i32 {
    if exit.timed_out {
        TIMED_OUT
    } else if exit.exited && (0..=255).contains(&exit.code) {
        exit.code
    } else if !exit.exited && (1..=64).contains(&exit.signal) {
        128 + exit.signal
    } else {
        DAEMON_FAILURE
    }
}

/// Why an exec produced no exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// sandboxd refused the request or failed running it; the message names the reason and rule.
    #[error("{}", describe_status(.0))]
    Daemon(#[source] tonic::Status),
    #[error("writing the command's output: {0}")]
    Output(#[source] std::io::Error),
    /// The reader of the output went away (`| head`): the exec ends, as a
    /// member of a pipeline ends by SIGPIPE, and so does the sandbox.
    #[error("the reader of the command's output went away")]
    ReaderGone,
    #[error("sandboxd ended the exec without an exit status")]
    NoExit,
}

impl ExecError {
    /// The exit status to report: 128+SIGPIPE when the output's reader went
    /// away, else [`DAEMON_FAILURE`].
    pub fn code(&self) -> i32 {
        match self {
            ExecError::ReaderGone => 128 + libc::SIGPIPE,
            _ => DAEMON_FAILURE,
        }
    }
}

fn describe_status(s: &tonic::Status) -> String {
    use tonic::Code;
    let verb = match s.code() {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::OutOfRange => "refused",
        _ => "failed",
    };
    format!("sandboxd {verb}: {}", s.message())
}

fn req(msg: exec_request::Msg) -> ExecRequest {
    ExecRequest { msg: Some(msg) }
}

/// Runs `opts` on the daemon, copying stdin to it (once it has started the
/// command) and its output to `io` until the command's exit; returns that exit.
///
/// Dropping the returned future drops the stream, which makes the daemon kill
/// the sandbox.
pub async fn run_exec(
    client: &mut Client,
    opts: &ExecOptions,
    io: ExecIo,
) -> Result<ExitStatus, ExecError> {
    let ExecIo {
        stdin,
        mut stdout,
        mut stderr,
        control,
        approver,
        raw_terminal,
    } = io;
    let eol = if raw_terminal { "\r\n" } else { "\n" };
    let start = req(exec_request::Msg::Start(opts.start(matches!(
        approver,
        Approver::Command(_) | Approver::Terminal(_)
    ))));

    // Stdin is bounded for back-pressure; signals, resizes and approval
    // answers travel on their own queue so a full stdin never delays them.
    let (stdin_tx, stdin_rx) = mpsc::channel::<ExecRequest>(8);
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel::<ExecRequest>();
    let outgoing = tokio_stream::once(start)
        .chain(ReceiverStream::new(stdin_rx).merge(UnboundedReceiverStream::new(ctl_rx)));

    let mut stdin_task = None;
    let control_task = control.map(|mut rx| {
        let tx = ctl_tx.clone();
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                let msg = match c {
                    Control::Signal(signal) => exec_request::Msg::Signal(SignalRequest { signal }),
                    Control::Resize { rows, cols } => {
                        exec_request::Msg::Resize(WindowSize { rows, cols })
                    }
                };
                if tx.send(req(msg)).is_err() {
                    return;
                }
            }
        })
    });

    let result = async {
        let mut responses = client
            .exec(outgoing)
            .await
            .map_err(ExecError::Daemon)?
            .into_inner();
        // Stdin is forwarded only from the daemon's `Started` on: before it,
        // while the command is asked about, the daemon would have to hold
        // it, and holds only so much. It is read on a blocking thread made
        // then, after the request is sent, so that making it does not hold
        // the request up.
        let mut unforwarded = Some((stdin, stdin_tx));
        let mut id = String::new();
        // A response read while a question was open, shown after its answer.
        let mut held = None;
        loop {
            let next = match held.take() {
                Some(m) => m,
                None => responses.next().await,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(status)) => return Err(ExecError::Daemon(status)),
                None => return Err(ExecError::NoExit),
            };
            match msg.msg {
                Some(exec_response::Msg::Approval(r)) => {
                    // Answered before more of the command's output is shown:
                    // the command cannot draw over the question. One more
                    // response is read meanwhile, so that an exec refused or
                    // ended while asked is seen at once; the rest wait (and
                    // the command with them).
                    let asking = answer(&approver, r);
                    tokio::pin!(asking);
                    let answered = loop {
                        tokio::select! {
                            a = &mut asking => break Some(a),
                            m = responses.next(), if held.is_none() => {
                                let over = !matches!(&m, Some(Ok(r)) if !matches!(r.msg, Some(exec_response::Msg::Exit(_))));
                                held = Some(m);
                                if over {
                                    break None;
                                }
                            }
                        }
                    };
                    if let Some((answer, note)) = answered {
                        if let Some(note) = note {
                            write_out(&mut stderr, format!("agent: {note}{eol}").as_bytes())
                                .await?;
                        }
                        // The stream may already be gone; the exit (or error) will tell.
                        let _ = ctl_tx.send(req(exec_request::Msg::Approval(answer)));
                    }
                }
                Some(m) => {
                    if matches!(m, exec_response::Msg::Started(_)) {
                        if let Some((stdin, tx)) = unforwarded.take() {
                            stdin_task = Some(tokio::spawn(forward_stdin(stdin, tx)));
                        }
                    }
                    if let Some(exit) = show(m, &mut id, &mut *stdout, &mut *stderr, eol).await? {
                        return Ok(ExitStatus { id, exit });
                    }
                }
                None => {}
            }
        }
    }
    .await;

    if let Some(t) = stdin_task {
        t.abort();
    }
    if let Some(t) = control_task {
        t.abort();
    }
    result
}

/// Shows one message of an exec (or attach) stream: output to `stdout` and
/// `stderr`, events and the exit's reason as `sandboxd: ...` lines ending in
/// `eol` on `stderr`; `ExecStarted` sets `id`. Returns the exit when it is
/// one. Approval requests are left to the caller.
pub(crate) async fn show(
    msg: exec_response::Msg,
    id: &mut String,
    stdout: &mut (dyn AsyncWrite + Send + Unpin),
    stderr: &mut (dyn AsyncWrite + Send + Unpin),
    eol: &str,
) -> Result<Option<ExecExit>, ExecError> {
    match msg {
        exec_response::Msg::Started(s) => *id = s.id,
        exec_response::Msg::Stdout(b) => write_out(stdout, &b).await?,
        exec_response::Msg::Stderr(b) => write_out(stderr, &b).await?,
        exec_response::Msg::Event(e) => write_out(stderr, event_line(&e, eol).as_bytes()).await?,
        exec_response::Msg::Exit(exit) => {
            if !exit.reason.is_empty() {
                write_out(stderr, format!("sandboxd: {}{eol}", exit.reason).as_bytes()).await?;
            }
            return Ok(Some(exit));
        }
        exec_response::Msg::Approval(_) => {}
    }
    Ok(None)
}

/// Sends stdin in chunks, then `StdinEof`. A read error counts as end-of-file.
async fn forward_stdin(
    stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    tx: mpsc::Sender<ExecRequest>,
) {
    if let Some(mut r) = stdin {
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send(req(exec_request::Msg::Stdin(buf[..n].to_vec())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    let _ = tx.send(req(exec_request::Msg::StdinEof(StdinEof {}))).await;
}

/// Writes and flushes `bytes`; a reader gone is [`ExecError::ReaderGone`].
async fn write_out(w: &mut (dyn AsyncWrite + Send + Unpin), bytes: &[u8]) -> Result<(), ExecError> {
    let written = match w.write_all(bytes).await {
        Ok(()) => w.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => ExecError::ReaderGone,
        _ => ExecError::Output(e),
    })
}

/// One stderr line for a daemon event, ending in `eol`: its kind, message
/// and, when there is one, the rule, so scripts can match the kind and
/// people read the reason. Names a sandbox chose (file names, hosts) are
/// shown with their control characters escaped: they cannot move the
/// cursor or erase what was said before.
fn event_line(e: &Event, eol: &str) -> String {
    let mut line = format!("sandboxd: {}", visible(&e.kind));
    if !e.message.is_empty() {
        line.push_str(": ");
        line.push_str(&visible(&e.message));
    }
    if !e.rule.is_empty() {
        line.push_str(&format!(" (rule {})", visible(&e.rule)));
    }
    line.push_str(eol);
    line
}

/// Decides one approval request; the note, if any, explains a denial to the user.
async fn answer(approver: &Approver, r: ApprovalRequest) -> (ApprovalAnswer, Option<String>) {
    let id = r.id.clone();
    let (decision, note) = match approver {
        Approver::Deny => (
            "deny".to_string(),
            Some(format!(
                "denied {} approval request {} (no --approver given)",
                r.kind,
                describe_request(&r)
            )),
        ),
        Approver::Terminal(p) => (p.ask(question(&r)).await, None),
        Approver::Command(cmd) => match run_approver(cmd, &r).await {
            Ok(d) => (d, None),
            Err(why) => (
                "deny".to_string(),
                Some(format!(
                    "denied approval request {}: {why}",
                    describe_request(&r)
                )),
            ),
        },
    };
    (ApprovalAnswer { id, decision }, note)
}

/// The request as the person at the terminal reads it.
fn question(r: &ApprovalRequest) -> String {
    let what = if !r.message.is_empty() {
        r.message.clone()
    } else {
        format!("{} request {}", r.kind, describe_request(r))
    };
    let mut q = what;
    if !r.justification.is_empty() {
        q.push_str(&format!(" (justification: {})", r.justification));
    }
    if !r.rule.is_empty() {
        q.push_str(&format!(" [rule {}]", r.rule));
    }
    q
}

fn describe_request(r: &ApprovalRequest) -> String {
    if !r.parts.is_empty() {
        // As the daemon quoted them for people.
        let parts: Vec<String> = r.parts.iter().map(|p| format!("`{p}`")).collect();
        format!("for {}", parts.join(", "))
    } else if !r.command.is_empty() {
        // Each word apart, with its quotes and escapes: never `rm a b` for `rm 'a b'`.
        format!("for {:?}", r.command)
    } else if !r.host.is_empty() && !r.method.is_empty() {
        format!("for {} {}:{}", r.method, r.host, r.port)
    } else if !r.host.is_empty() {
        format!("for {}:{}", r.host, r.port)
    } else {
        format!("{:?}", r.id)
    }
}

/// The request as the approver sees it on stdin.
fn request_json(r: &ApprovalRequest) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "kind": r.kind,
        "command": r.command,
        "host": r.host,
        "port": r.port,
        "method": r.method,
        "justification": r.justification,
        "profile": r.profile,
        "rule": r.rule,
        "parts": r.parts,
        "write": r.write,
        "network_allow": r.network_allow,
        "unsandboxed": r.unsandboxed,
        "message": r.message,
    })
}

/// Runs the approver command with `/bin/sh -c` and returns its valid one-word answer.
async fn run_approver(cmd: &str, r: &ApprovalRequest) -> Result<String, String> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run approver {cmd:?}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        let mut line = request_json(r).to_string();
        line.push('\n');
        // An approver that does not read its input may still answer.
        let _ = input.write_all(line.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("approver {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("approver {cmd:?} failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().next().unwrap_or("");
    match word {
        "approve" | "approve-session" | "approve-always" | "deny" => Ok(word.to_string()),
        other => Err(format!(
            "approver {cmd:?} answered {other:?}, not approve, approve-session, approve-always or deny"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_mapping() {
        let e = |exited, code, signal, timed_out| ExecExit {
            exited,
            code,
            signal,
            timed_out,
            ..ExecExit::default()
        };
        assert_eq!(exit_code(&e(true, 0, 0, false)), 0);
        assert_eq!(exit_code(&e(true, 7, 0, false)), 7);
        assert_eq!(exit_code(&e(true, 127, 0, false)), 127);
        assert_eq!(exit_code(&e(false, 0, 9, false)), 137);
        assert_eq!(exit_code(&e(false, 0, 9, true)), 124);
        assert_eq!(exit_code(&e(false, 0, 0, false)), 125);
    }

    #[test]
    fn daemon_lines_end_as_asked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut out, mut err, mut id) = (Vec::new(), Vec::new(), String::new());
        let event = Event {
            kind: "output-truncated".into(),
            message: "after 10 bytes".into(),
            rule: "limits.output".into(),
            ..Event::default()
        };
        let exit = ExecExit {
            exited: true,
            reason: "done".into(),
            ..ExecExit::default()
        };
        for eol in ["\r\n", "\n"] {
            err.clear();
            for msg in [
                exec_response::Msg::Event(event.clone()),
                exec_response::Msg::Exit(exit.clone()),
            ] {
                rt.block_on(show(msg, &mut id, &mut out, &mut err, eol))
                    .unwrap();
            }
            assert_eq!(
                String::from_utf8_lossy(&err),
                format!(
                    "sandboxd: output-truncated: after 10 bytes (rule limits.output){eol}\
                     sandboxd: done{eol}"
                )
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_network_question_names_the_method_when_known() {
        let r = ApprovalRequest {
            kind: "network".into(),
            host: "api.example.test".into(),
            port: 443,
            method: "DELETE".into(),
            ..ApprovalRequest::default()
        };
        assert_eq!(
            question(&r),
            "network request for DELETE api.example.test:443"
        );
        let r = ApprovalRequest {
            method: String::new(),
            ..r
        };
        assert_eq!(question(&r), "network request for api.example.test:443");
    }

    #[test]
    fn a_command_question_without_a_message_keeps_each_word_apart() {
        let r = ApprovalRequest {
            kind: "command".into(),
            command: vec!["rm".into(), "a b".into()],
            ..ApprovalRequest::default()
        };
        assert_eq!(question(&r), r#"command request for ["rm", "a b"]"#);
        let r = ApprovalRequest {
            parts: vec!["rm 'a b'".into(), "sh".into()],
            ..r
        };
        assert_eq!(question(&r), "command request for `rm 'a b'`, `sh`");
    }
}
