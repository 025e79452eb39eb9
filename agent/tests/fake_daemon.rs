//! The real `agent` binary against a fake sandboxd on a temporary socket: the
//! fake answers per the command's first word, so each test drives one
//! client behaviour and checks what the client sent and printed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sandbox_proto::v1::sandbox_server::{Sandbox, SandboxServer};
use sandbox_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// What the fake saw, for assertions.
#[derive(Default)]
struct Seen {
    starts: Vec<ExecStart>,
    list_all: Vec<bool>,
    kills: Vec<String>,
    checks: Vec<CheckPolicyRequest>,
    audits: Vec<AuditRequest>,
    attaches: Vec<String>,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
}

type Tx = mpsc::Sender<Result<ExecResponse, Status>>;

fn out(msg: exec_response::Msg) -> Result<ExecResponse, Status> {
    Ok(ExecResponse { msg: Some(msg) })
}

fn exited(code: i32) -> exec_response::Msg {
    exec_response::Msg::Exit(ExecExit {
        exited: true,
        code,
        ..ExecExit::default()
    })
}

/// The next request of the given kind, skipping others; `None` at end of stream.
async fn next_req(input: &mut Streaming<ExecRequest>) -> Option<exec_request::Msg> {
    input.next().await?.ok()?.msg
}

/// Plays one scripted exec, chosen by argv[0].
async fn script(start: ExecStart, mut input: Streaming<ExecRequest>, tx: Tx) {
    let arg = |i: usize| start.argv.get(i).cloned().unwrap_or_default();
    let send = |m| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(out(m)).await;
        }
    };
    send(exec_response::Msg::Started(ExecStarted {
        id: "sb-1".into(),
        profile: "workspace".into(),
        policy_hash: "h".into(),
    }))
    .await;
    match arg(0).as_str() {
        "exit" => send(exited(arg(1).parse().unwrap_or(0))).await,
        "signal" => {
            send(exec_response::Msg::Exit(ExecExit {
                signal: arg(1).parse().unwrap_or(0),
                ..ExecExit::default()
            }))
            .await
        }
        "timeout" => {
            let exit = ExecExit {
                signal: 9,
                timed_out: true,
                reason: "timeout of 1s reached".into(),
                ..ExecExit::default()
            };
            send(exec_response::Msg::Exit(exit)).await
        }
        "cat" => {
            send(exec_response::Msg::Stderr(b"err\n".to_vec())).await;
            while let Some(m) = next_req(&mut input).await {
                match m {
                    exec_request::Msg::Stdin(b) => send(exec_response::Msg::Stdout(b)).await,
                    exec_request::Msg::StdinEof(_) => break,
                    _ => {}
                }
            }
            send(exited(0)).await
        }
        "start" => {
            let json = serde_json::json!({
                "argv": start.argv, "cwd": start.cwd, "favourite": start.env.get("FAVOURITE"),
                "env_len": start.env.len(), "set_env": start.set_env, "profile": start.profile,
                "timeout_ms": start.timeout_ms, "approval": start.approval, "session": start.session,
                "secrets": start.secrets, "interactive": start.interactive, "tty": start.tty,
                "secret_values": start.secret_values, "gh_in_env": start.env.contains_key("GH"),
                "escalation": start.escalation.map(|e| serde_json::json!({
                    "write": e.write, "network_allow": e.network_allow,
                    "unsandboxed": e.unsandboxed, "justification": e.justification,
                })),
            });
            send(exec_response::Msg::Stdout(format!("{json}\n").into_bytes())).await;
            send(exited(0)).await
        }
        "event" => {
            let e = Event {
                kind: "output-truncated".into(),
                message: "output truncated after 10 bytes".into(),
                rule: "limits.output".into(),
                fields: HashMap::new(),
            };
            send(exec_response::Msg::Event(e)).await;
            send(exited(0)).await
        }
        "approve" => {
            let r = ApprovalRequest {
                id: "a1".into(),
                kind: "command".into(),
                command: vec!["rm".into(), "-rf".into(), "build".into()],
                justification: "cleanup".into(),
                profile: "workspace".into(),
                rule: "commands.prompt".into(),
                ..ApprovalRequest::default()
            };
            send(exec_response::Msg::Approval(r)).await;
            while let Some(m) = next_req(&mut input).await {
                if let exec_request::Msg::Approval(a) = m {
                    send(exec_response::Msg::Stdout(
                        format!("{} {}\n", a.id, a.decision).into_bytes(),
                    ))
                    .await;
                    break;
                }
            }
            send(exited(0)).await
        }
        "wait-signal" => {
            send(exec_response::Msg::Stdout(b"ready\n".to_vec())).await;
            while let Some(m) = next_req(&mut input).await {
                if let exec_request::Msg::Signal(s) = m {
                    send(exec_response::Msg::Stdout(
                        format!("got {}\n", s.signal).into_bytes(),
                    ))
                    .await;
                    send(exited(128 + s.signal)).await;
                    break;
                }
            }
        }
        "tty" => {
            let w = start.window.unwrap_or_default();
            let line = format!("tty={} window={}x{}\n", start.tty, w.rows, w.cols);
            send(exec_response::Msg::Stdout(line.into_bytes())).await;
            let resized = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(m) = next_req(&mut input).await {
                    if let exec_request::Msg::Resize(w) = m {
                        return Some(w);
                    }
                }
                None
            });
            match resized.await {
                Ok(Some(w)) => {
                    send(exec_response::Msg::Stdout(
                        format!("resized={}x{}\n", w.rows, w.cols).into_bytes(),
                    ))
                    .await;
                    send(exited(0)).await
                }
                _ => send(exited(1)).await,
            }
        }
        "stubborn" => {
            send(exec_response::Msg::Stdout(b"ready\n".to_vec())).await;
            while next_req(&mut input).await.is_some() {}
        }
        // "drop": the stream ends without an exit.
        _ => {}
    }
}

#[tonic::async_trait]
impl Sandbox for Fake {
    type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;

    async fn exec(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = request.into_inner();
        let Some(exec_request::Msg::Start(start)) = next_req(&mut input).await else {
            return Err(Status::invalid_argument("first message must be ExecStart"));
        };
        self.seen.lock().unwrap().starts.push(start.clone());
        if start.argv.first().map(String::as_str) == Some("refuse") {
            return Err(Status::failed_precondition(
                "profile \"short\": --timeout 2h exceeds limits.timeout (1m)",
            ));
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(script(start, input, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let all = request.into_inner().all;
        self.seen.lock().unwrap().list_all.push(all);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let info = SandboxInfo {
            id: "sb-1".into(),
            uid: 1000,
            pid: 4242,
            argv: vec!["sleep".into(), "60".into()],
            cwd: "/srv/w".into(),
            profile: "workspace".into(),
            session: String::new(),
            started_unix_ms: now - 125_000,
            caller_pid: 1,
        };
        // Everyone's: another user's, whose argv would forge a row of its own.
        let theirs = SandboxInfo {
            id: "sb-2".into(),
            uid: 1001,
            pid: 4343,
            argv: vec![
                "sh".into(),
                "-c".into(),
                "x\n\u{1b}[2Ksb-9  0  1  full  0s  true\u{9b}\u{202e}".into(),
            ],
            profile: "workspace".into(),
            started_unix_ms: now,
            ..info.clone()
        };
        Ok(Response::new(ListResponse {
            sandboxes: if all { vec![info, theirs] } else { vec![info] },
        }))
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
        let id = request.into_inner().id;
        self.seen.lock().unwrap().kills.push(id.clone());
        if id == "sb-1" {
            Ok(Response::new(KillResponse {}))
        } else {
            Err(Status::not_found(format!("no sandbox {id} of yours")))
        }
    }

    async fn list_profiles(
        &self,
        _: Request<ListProfilesRequest>,
    ) -> Result<Response<ListProfilesResponse>, Status> {
        let p = |name: &str, description: &str| ProfileSummary {
            name: name.into(),
            description: description.into(),
            source: "embedded".into(),
        };
        Ok(Response::new(ListProfilesResponse {
            profiles: vec![
                p("read-only", "reads only"),
                p("workspace", "writes the workspace"),
            ],
            default_profile: "workspace".into(),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let name = request.into_inner().name;
        if name != "workspace" {
            return Err(Status::not_found(format!("no profile {name}")));
        }
        let summary = ProfileSummary {
            name,
            description: "writes the workspace".into(),
            source: "embedded".into(),
        };
        Ok(Response::new(GetProfileResponse {
            summary: Some(summary),
            toml: "[fs]\nwrite = [\"{cwd}\"]".into(),
        }))
    }

    type AttachStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;

    /// "sb-1": output on both streams, then killed by signal 9; "sb-long":
    /// a line, then nothing until the client hangs up; else refused.
    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let id = request.into_inner().id;
        self.seen.lock().unwrap().attaches.push(id.clone());
        let started = exec_response::Msg::Started(ExecStarted {
            id: id.clone(),
            ..Default::default()
        });
        let msgs = match id.as_str() {
            "sb-1" => vec![
                started,
                exec_response::Msg::Stdout(b"out\n".to_vec()),
                exec_response::Msg::Stderr(b"err\n".to_vec()),
                exec_response::Msg::Exit(ExecExit {
                    signal: 9,
                    ..Default::default()
                }),
            ],
            "sb-long" => vec![started, exec_response::Msg::Stdout(b"ready\n".to_vec())],
            _ => {
                return Err(Status::permission_denied(format!(
                    "sandbox {id} belongs to another user"
                )))
            }
        };
        let stream = tokio_stream::iter(msgs.into_iter().map(out)).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }

    type AuditStream = Pin<Box<dyn Stream<Item = Result<AuditRecord, Status>> + Send>>;

    async fn audit(
        &self,
        request: Request<AuditRequest>,
    ) -> Result<Response<Self::AuditStream>, Status> {
        let r = request.into_inner();
        self.seen.lock().unwrap().audits.push(r.clone());
        if r.since == "bogus" {
            return Err(Status::invalid_argument("since \"bogus\": not a time"));
        }
        let records = AUDIT_RECORDS.map(|j| Ok(AuditRecord { json: j.into() }));
        Ok(Response::new(Box::pin(tokio_stream::iter(records))))
    }

    async fn check_policy(
        &self,
        request: Request<CheckPolicyRequest>,
    ) -> Result<Response<CheckPolicyResponse>, Status> {
        let r = request.into_inner();
        self.seen.lock().unwrap().checks.push(r.clone());
        let key = match &r.query {
            Some(check_policy_request::Query::Url(s))
            | Some(check_policy_request::Query::Read(s))
            | Some(check_policy_request::Query::Write(s)) => s.clone(),
            Some(check_policy_request::Query::Cmd(c)) => c.argv.join(" "),
            None => return Err(Status::invalid_argument("no query")),
        };
        let decision = ["allow", "prompt", "bogus"]
            .into_iter()
            .find(|d| key.contains(d))
            .unwrap_or("deny");
        Ok(Response::new(CheckPolicyResponse {
            decision: decision.into(),
            rule: "fs.deny_write".into(),
            reason: "because".into(),
        }))
    }
}

/// What the fake's Audit streams.
const AUDIT_RECORDS: [&str; 2] = [
    r#"{"seq":1,"time":"2026-12-02T01:00:00.000Z","kind":"exec-start","id":"sb-1","uid":1000,"profile":"workspace","decision":"allow","argv":["sh","-c","echo hi"]}"#,
    r#"{"seq":2,"time":"2026-12-02T01:00:01.000Z","kind":"exec-end","id":"sb-1","uid":1000,"code":0,"signal":0,"timed_out":false,"reason":""}"#,
];

/// A fake daemon serving on a socket in a fresh temporary directory.
struct Daemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Seen>>,
    _rt: tokio::runtime::Runtime,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sandboxd.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fake = Fake::default();
        let seen = fake.seen.clone();
        let listener = rt
            .block_on(async { tokio::net::UnixListener::bind(&socket) })
            .unwrap();
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(SandboxServer::new(fake))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Daemon {
            dir,
            socket,
            seen,
            _rt: rt,
        }
    }

    /// `agent --socket SOCKET ARGS` with an empty environment but for PATH.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agent"));
        c.arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn expect(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn exit_codes_follow_the_contract() {
    let d = Daemon::start();
    expect(&d.run(&["exec", "--", "exit", "0"]), 0);
    expect(&d.run(&["exec", "--", "exit", "7"]), 7);
    expect(&d.run(&["exec", "--", "exit", "126"]), 126);
    expect(&d.run(&["exec", "--", "exit", "127"]), 127);
    expect(&d.run(&["exec", "--", "signal", "9"]), 137);
    expect(&d.run(&["exec", "--", "signal", "15"]), 143);
    let o = d.run(&["exec", "--", "timeout"]);
    expect(&o, 124);
    assert!(
        text(&o.stderr).contains("timeout of 1s reached"),
        "{}",
        text(&o.stderr)
    );
    let o = d.run(&["exec", "--", "refuse"]);
    expect(&o, 125);
    let err = text(&o.stderr);
    assert!(
        err.contains("refused") && err.contains("limits.timeout (1m)"),
        "{err}"
    );
    let o = d.run(&["exec", "--", "drop"]);
    expect(&o, 125);
    assert!(
        text(&o.stderr).contains("without an exit status"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn stdin_forwarded_and_stdout_stderr_apart() {
    let d = Daemon::start();
    let input: Vec<u8> = (0..100_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let mut child = d
        .command(&["exec", "--", "cat"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    expect(&o, 0);
    assert!(
        o.stdout == input,
        "stdout differs: {} of {} bytes",
        o.stdout.len(),
        input.len()
    );
    assert_eq!(text(&o.stderr), "err\n");
    // stdin at /dev/null: end-of-file at once, nothing on stdout.
    let o = d.run(&["exec", "cat"]);
    expect(&o, 0);
    assert!(o.stdout.is_empty());
}

#[test]
fn environment_cwd_and_options_are_sent() {
    let d = Daemon::start();
    let sub = d.dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let o = d
        .command(&[
            "exec",
            "--profile",
            "p",
            "--cwd",
            "sub",
            "--env",
            "EXTRA=1=2",
            "--timeout",
            "1500ms",
            "--approval",
            "never",
            "--session",
            "s1",
            "--secret",
            "GH",
            "--secret",
            "NPM",
            "--approver",
            "true",
            "start",
            "-x",
            "--y",
        ])
        .current_dir(d.dir.path())
        .env("FAVOURITE", "blue")
        .env("GH", "gh-value")
        .env("NPM", "npm-value")
        .output()
        .unwrap();
    expect(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["argv"], serde_json::json!(["start", "-x", "--y"]));
    assert_eq!(v["cwd"], sub.to_str().unwrap());
    assert_eq!(v["favourite"], "blue");
    assert_eq!(
        v["env_len"], 2,
        "the whole environment, PATH and FAVOURITE: {v}"
    );
    assert_eq!(v["set_env"], serde_json::json!({"EXTRA": "1=2"}));
    assert_eq!(v["profile"], "p");
    assert_eq!(v["timeout_ms"], 1500);
    assert_eq!(v["approval"], "never");
    assert_eq!(v["session"], "s1");
    assert_eq!(v["secrets"], serde_json::json!(["GH", "NPM"]));
    assert_eq!(
        v["secret_values"],
        serde_json::json!({"GH": "gh-value", "NPM": "npm-value"}),
        "secrets travel apart from the environment"
    );
    assert_eq!(v["gh_in_env"], false);
    assert_eq!(v["interactive"], true);
    assert_eq!(v["tty"], false);
    let o = d.run(&["exec", "--secret", "UNSET_SECRET", "start"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("--secret UNSET_SECRET: UNSET_SECRET is not set"),
        "{}",
        text(&o.stderr)
    );

    // Defaults: the current directory, nothing else chosen.
    let o = d
        .command(&["exec", "--", "start"])
        .current_dir(&sub)
        .output()
        .unwrap();
    expect(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cwd"], sub.to_str().unwrap());
    assert_eq!(v["profile"], "");
    assert_eq!(v["timeout_ms"], 0);
    assert_eq!(v["approval"], "");
    assert_eq!(v["interactive"], false);

    // Malformed flags are refused before anything is sent.
    let before = d.seen().starts.len();
    expect(&d.run(&["exec", "--env", "NOEQUALS", "--", "start"]), 125);
    expect(
        &d.run(&["exec", "--timeout", "10 parsecs", "--", "start"]),
        125,
    );
    expect(
        &d.run(&["exec", "--approval", "sometimes", "--", "start"]),
        125,
    );
    assert_eq!(d.seen().starts.len(), before);
}

#[test]
fn escalation_flags_are_sent() {
    let d = Daemon::start();
    let o = d
        .command(&[
            "exec",
            "--request-write",
            "out",
            "--request-write",
            "/srv/abs",
            "--request-network",
            "crates.io",
            "--request-unsandboxed",
            "--justification",
            "needs the registry",
            "--",
            "start",
        ])
        .current_dir(d.dir.path())
        .output()
        .unwrap();
    expect(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let out = d.dir.path().join("out");
    assert_eq!(
        v["escalation"],
        serde_json::json!({
            "write": [out.to_str().unwrap(), "/srv/abs"],
            "network_allow": ["crates.io"],
            "unsandboxed": true,
            "justification": "needs the registry",
        })
    );
    let o = d.run(&["exec", "--", "start"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["escalation"], serde_json::Value::Null);
}

#[test]
fn events_are_reported_on_stderr() {
    let d = Daemon::start();
    let o = d.run(&["exec", "--", "event"]);
    expect(&o, 0);
    assert!(o.stdout.is_empty());
    assert_eq!(
        text(&o.stderr),
        "sandboxd: output-truncated: output truncated after 10 bytes (rule limits.output)\n"
    );
}

#[test]
fn signals_are_forwarded_to_the_sandbox() {
    let d = Daemon::start();
    for (sig, n) in [
        (nix::sys::signal::Signal::SIGINT, 2),
        (nix::sys::signal::Signal::SIGTERM, 15),
    ] {
        let mut child = d.command(&["exec", "--", "wait-signal"]).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut ready = [0u8; 6];
        stdout.read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(rest, format!("got {n}\n"));
        assert_eq!(
            status.code(),
            Some(128 + n),
            "the agent must not die of the signal itself"
        );
    }
}

#[test]
fn third_interrupt_abandons_a_stubborn_sandbox() {
    let d = Daemon::start();
    let mut child = d.command(&["exec", "--", "stubborn"]).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    for _ in 0..3 {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = child.wait_with_output().unwrap();
    expect(&o, 130);
    assert!(
        text(&o.stderr).contains("abandoning the sandbox"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn approvals_denied_without_approver_and_asked_with_one() {
    let d = Daemon::start();
    let o = d.run(&["exec", "--", "approve"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "a1 deny\n");
    assert!(
        text(&o.stderr).contains("no --approver"),
        "{}",
        text(&o.stderr)
    );

    let req = d.dir.path().join("request.json");
    let approver = format!("cat > {}; echo approve-session extra words", req.display());
    let o = d.run(&["exec", "--approver", &approver, "--", "approve"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "a1 approve-session\n");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req).unwrap()).unwrap();
    assert_eq!(v["kind"], "command");
    assert_eq!(v["command"], serde_json::json!(["rm", "-rf", "build"]));
    assert_eq!(v["justification"], "cleanup");
    assert_eq!(v["profile"], "workspace");

    let o = d.run(&["exec", "--approver", "echo approve-always", "--", "approve"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "a1 approve-always\n");

    // An answer that is not one of the four words, or a failing approver, denies.
    for approver in ["echo yes-please", "echo approve; exit 3"] {
        let o = d.run(&["exec", "--approver", approver, "--", "approve"]);
        expect(&o, 0);
        assert_eq!(text(&o.stdout), "a1 deny\n", "{approver}");
        assert!(text(&o.stderr).contains("denied"), "{}", text(&o.stderr));
    }
}

#[test]
fn policy_check_exit_codes() {
    let d = Daemon::start();
    let o = d.run(&[
        "policy",
        "check",
        "workspace",
        "--url",
        "https://allow.example/",
    ]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "allow  fs.deny_write  because\n");
    expect(
        &d.run(&["policy", "check", "workspace", "--write", "/etc/passwd"]),
        1,
    );
    expect(
        &d.run(&[
            "policy",
            "check",
            "workspace",
            "--cmd",
            "--",
            "git",
            "push",
            "--prompt",
        ]),
        2,
    );
    expect(
        &d.run(&["policy", "check", "workspace", "--read", "/bogus"]),
        125,
    );
    let o = d
        .command(&["policy", "check", "workspace", "--read", "rel/allow"])
        .current_dir(d.dir.path())
        .output()
        .unwrap();
    expect(&o, 0);
    let seen = d.seen();
    let last = seen.checks.last().unwrap();
    assert_eq!(last.profile, "workspace");
    assert_eq!(last.cwd, d.dir.path().to_str().unwrap());
    assert_eq!(
        last.query,
        Some(check_policy_request::Query::Read(
            d.dir
                .path()
                .join("rel/allow")
                .to_string_lossy()
                .into_owned()
        ))
    );
    let cmd = &seen.checks[2];
    assert_eq!(
        cmd.query,
        Some(check_policy_request::Query::Cmd(CommandQuery {
            argv: vec!["git".into(), "push".into(), "--prompt".into()]
        }))
    );
    drop(seen);
    // A query is required.
    expect(&d.run(&["policy", "check", "workspace"]), 125);
}

#[test]
fn policy_list_and_show() {
    let d = Daemon::start();
    let o = d.run(&["policy", "list"]);
    expect(&o, 0);
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("  read-only")
            && lines[1].contains("embedded")
            && lines[1].contains("reads only"),
        "{out}"
    );
    assert!(lines[2].starts_with("* workspace"), "{out}");
    let o = d.run(&["policy", "show", "workspace"]);
    expect(&o, 0);
    assert_eq!(
        text(&o.stdout),
        "# workspace (embedded): writes the workspace\n[fs]\nwrite = [\"{cwd}\"]\n"
    );
    let o = d.run(&["policy", "show", "nope"]);
    expect(&o, 125);
    assert!(text(&o.stderr).contains("no profile nope"));
}

/// `agent ARGS` with its stdout a pipe whose reader is gone (`| true`).
fn run_into_a_closed_pipe(d: &Daemon, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    d.command(args).stdout(writer).output().unwrap()
}

#[test]
fn listings_end_quietly_when_their_reader_is_gone() {
    let d = Daemon::start();
    for (args, code) in [
        (&["ps"][..], 0),
        (&["policy", "list"], 0),
        (&["policy", "show", "workspace"], 0),
        (
            &[
                "policy",
                "check",
                "workspace",
                "--url",
                "https://allow.example/",
            ],
            0,
        ),
        (
            &["policy", "check", "workspace", "--write", "/etc/passwd"],
            1,
        ),
        (&["audit"], 0),
    ] {
        let o = run_into_a_closed_pipe(&d, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stderr), "", "{args:?}");
    }
}

#[test]
fn ps_and_kill() {
    let d = Daemon::start();
    let o = d.run(&["ps"]);
    expect(&o, 0);
    let out = text(&o.stdout);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["ID", "UID", "PID", "PROFILE", "AGE", "COMMAND"],
        "{out}"
    );
    assert_eq!(
        lines[1],
        ["sb-1", "1000", "4242", "workspace", "2m", "sleep", "60"],
        "{out}"
    );
    let o = d.run(&["ps", "--all"]);
    expect(&o, 0);
    assert_eq!(d.seen().list_all, [false, true]);
    // Another user's argv is shown escaped, each argument apart: it cannot
    // draw on the terminal or forge a row.
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines().nth(2).is_some_and(
            |l| l.ends_with(r#"sh -c "x\n\u{1b}[2Ksb-9  0  1  full  0s  true\u{9b}\u{202e}""#)
        ),
        "{out}"
    );
    assert!(!out.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{out:?}");
    expect(&d.run(&["kill", "sb-1"]), 0);
    let o = d.run(&["kill", "nope"]);
    expect(&o, 125);
    assert!(
        text(&o.stderr).contains("no sandbox nope"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(d.seen().kills, ["sb-1", "nope"]);
}

#[test]
fn attach_prints_both_streams_exits_with_the_status_and_detaches_on_ctrl_c() {
    let d = Daemon::start();
    let o = d.run(&["attach", "sb-1"]);
    expect(&o, 137);
    assert_eq!(text(&o.stdout), "out\n");
    assert_eq!(text(&o.stderr), "err\n");
    let o = d.run(&["attach", "theirs"]);
    expect(&o, 125);
    assert!(
        text(&o.stderr).contains("belongs to another user"),
        "{}",
        text(&o.stderr)
    );
    let mut child = d.command(&["attach", "sb-long"]).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    expect(&o, 130);
    assert!(text(&o.stderr).contains("detached"), "{}", text(&o.stderr));
    assert_eq!(d.seen().attaches, ["sb-1", "theirs", "sb-long"]);
    assert!(d.seen().kills.is_empty());
}

#[test]
fn socket_from_environment_and_missing_socket() {
    let d = Daemon::start();
    let o = Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("ps")
        .env("SANDBOXD_SOCKET", &d.socket)
        .output()
        .unwrap();
    expect(&o, 0);
    let missing: &Path = &d.dir.path().join("no-such.sock");
    for args in [
        &["exec", "--", "exit", "0"][..],
        &["ps"],
        &["policy", "check", "w", "--url", "allow"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_agent"))
            .arg("--socket")
            .arg(missing)
            .args(args)
            .output()
            .unwrap();
        expect(&o, 125);
        assert!(
            text(&o.stderr).contains(missing.to_str().unwrap()),
            "{}",
            text(&o.stderr)
        );
    }
}

#[test]
fn tty_raw_mode_window_size_and_resize() {
    let d = Daemon::start();
    // `script` gives the agent a terminal; the agent waits in the background
    // (stdin still the terminal) while the window is widened (one ioctl, one
    // SIGWINCH), then `stty` shows the terminal's mode after the agent is gone.
    let agent = format!(
        "{} --socket {}",
        env!("CARGO_BIN_EXE_agent"),
        d.socket.display()
    );
    let line = format!(
        "stty rows 30 cols 100; {agent} exec --tty -- tty </dev/tty & sleep 1; stty -F /dev/tty -a | grep -o -- ' -\\?icanon ' ; stty cols 120; wait $!; echo rc=$?; stty -a"
    );
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o.stdout).replace('\r', "");
    assert!(out.contains("tty=true window=30x100\n"), "{out}");
    assert!(out.contains(" -icanon "), "raw while running: {out}");
    assert!(out.contains("resized=30x120\n"), "{out}");
    assert!(out.contains("rc=0"), "{out}");
    let after = out.split("rc=0").nth(1).unwrap_or_default();
    assert!(
        after.contains(" icanon") && after.contains(" echo ") && !after.contains("-icanon"),
        "not restored: {out}"
    );
}

#[test]
fn on_a_raw_terminal_daemon_lines_end_in_cr_lf() {
    let d = Daemon::start();
    // Under `script` the agent's terminal is raw while it runs: nothing
    // turns its `\n` into `\r\n` on the way to what `script` prints.
    let line = format!(
        "{} --socket {} exec --tty -- event </dev/tty",
        env!("CARGO_BIN_EXE_agent"),
        d.socket.display()
    );
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(
        out.contains("(rule limits.output)\r\n"),
        "staircased: {out:?}"
    );
}

#[test]
fn audit_prints_a_line_per_record_or_the_json() {
    let d = Daemon::start();
    let o = d.run(&["audit"]);
    expect(&o, 0);
    assert_eq!(
        text(&o.stdout),
        "2026-12-02T01:00:00.000Z exec-start sb-1 uid=1000 profile=workspace decision=allow -- sh -c \"echo hi\"\n\
         2026-12-02T01:00:01.000Z exec-end sb-1 uid=1000 code=0\n"
    );
    let o = d.run(&["audit", "--json", "--since", "10m", "--follow"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), AUDIT_RECORDS.join("\n") + "\n");
    let o = d.run(&["audit", "--since", "bogus"]);
    expect(&o, 125);
    assert!(text(&o.stderr).contains("bogus"), "{}", text(&o.stderr));
    let seen = d.seen();
    assert_eq!(
        seen.audits,
        [
            AuditRequest::default(),
            AuditRequest {
                follow: true,
                since: "10m".into()
            },
            AuditRequest {
                follow: false,
                since: "bogus".into()
            },
        ]
    );
}
