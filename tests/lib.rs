//! Harness for the end-to-end tests: a real `sandboxd` on a temporary socket,
//! driven through the real `agent` CLI, run as ordinary callers with setpriv.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where test workspaces live: not under /tmp (sandboxes get a private /tmp)
/// and reachable by every uid.
const BASE: &str = "/srv/sandboxd-e2e";

/// Path of a workspace binary built by `cargo build --workspace --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/TEST-HASH -> target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

fn base() -> PathBuf {
    let base = PathBuf::from(BASE);
    std::fs::create_dir_all(&base).expect("create e2e base");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod base");
    base
}

/// A fresh directory owned by `uid`, mode 0755, removed on drop.
pub struct Dir {
    pub path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new(uid: u32) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("ws-")
            .tempdir_in(base())
            .expect("tempdir");
        let path = tmp.path().to_path_buf();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chown(&path, uid);
        Dir { path, _tmp: tmp }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes `rel` (creating parents), owned by `uid`.
    pub fn write(&self, rel: &str, content: &str, uid: u32) -> PathBuf {
        let p = self.path.join(rel);
        let mut cur = self.path.clone();
        for comp in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            cur.push(comp);
            if !cur.exists() {
                std::fs::create_dir(&cur).expect("mkdir");
                chown(&cur, uid);
            }
        }
        std::fs::write(&p, content).expect("write");
        chown(&p, uid);
        p
    }
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
}

/// Result of one CLI run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let code = o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
        Out {
            code,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A running daemon with its own socket, state dir and policy dir.
pub struct Daemon {
    child: Child,
    config: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Builds a daemon: extra config TOML and profiles in its policy dir.
#[derive(Default)]
pub struct DaemonBuilder {
    config: String,
    profiles: Vec<(String, String)>,
}

impl DaemonBuilder {
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    pub fn profile(mut self, name: &str, toml: &str) -> Self {
        self.profiles.push((name.to_string(), toml.to_string()));
        self
    }

    pub fn start(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("daemon-")
            .tempdir_in(base())
            .expect("tempdir");
        let socket = dir.path().join("run/sandboxd.sock");
        let state_dir = dir.path().join("state");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).expect("policy dir");
        for (name, body) in &self.profiles {
            std::fs::write(policy_dir.join(format!("{name}.toml")), body).expect("profile");
        }
        let config = dir.path().join("sandboxd.toml");
        std::fs::write(&config, &self.config).expect("config");
        let log = dir.path().join("sandboxd.log");
        let child = spawn_daemon(&config, &socket, &state_dir, &policy_dir, &log);
        let mut d = Daemon {
            child,
            config,
            socket,
            state_dir,
            policy_dir,
            log,
            _dir: dir,
        };
        d.wait_ready();
        d
    }
}

/// Starts `sandboxd` on these paths, its output appended to `log`.
fn spawn_daemon(
    config: &Path,
    socket: &Path,
    state_dir: &Path,
    policy_dir: &Path,
    log: &Path,
) -> Child {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(bin("sandboxd"))
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--policy-dir")
        .arg(policy_dir)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup log"))
        .stderr(logf)
        .spawn()
        .expect("start sandboxd")
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A daemon on the embedded defaults.
    pub fn start() -> Daemon {
        Self::builder().start()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sandboxd exited early ({status}):\n{}", self.log_text());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sandboxd not ready after 20 s:\n{}", self.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An `agent` invocation as `uid` (0 = root itself), in `cwd`.
    pub fn agent(&self, uid: u32, cwd: &Path) -> Agent {
        Agent {
            socket: self.socket.clone(),
            uid,
            groups: vec![],
            cwd: cwd.to_path_buf(),
            env: vec![],
        }
    }

    /// The id of `uid`'s running sandbox whose line in `agent ps` (run in
    /// `cwd`) contains `marker`, once it shows (within 15 s).
    pub fn sandbox_id(&self, uid: u32, cwd: &Path, marker: &str) -> String {
        let mut id = String::new();
        let found = eventually(Duration::from_secs(15), || {
            let ps = self.agent(uid, cwd).run(&["ps"]);
            id = ps
                .stdout
                .lines()
                .find(|l| l.contains(marker))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            !id.is_empty()
        });
        assert!(found, "uid {uid}'s {marker} never showed in ps");
        id
    }

    /// The audit records `uid` (with supplementary `groups`) may read, from
    /// `agent audit --json` run in `cwd`, parsed.
    pub fn audit(&self, uid: u32, groups: &[u32], cwd: &Path) -> Vec<serde_json::Value> {
        let out = self
            .agent(uid, cwd)
            .groups(groups)
            .run(&["audit", "--json"]);
        out.expect_code(0);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The records of the current audit log file, parsed: its whole lines
    /// only (one may be half written while the daemon runs).
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state_dir.join("audit.jsonl")).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// `agent exec [flags] -- sh -c SCRIPT` as `uid` in `cwd`.
    pub fn sh(&self, uid: u32, cwd: &Path, flags: &[&str], script: &str) -> Out {
        let mut args: Vec<&str> = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
        self.agent(uid, cwd).run(&args)
    }

    /// Host pids of every process in the daemon's process subtree, the daemon excluded.
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.pid())
    }
}

impl Daemon {
    /// Stops the daemon (SIGTERM) and starts it again with the same config,
    /// socket, state dir and policy dir.
    pub fn restart(&mut self) {
        self.shut_down();
        self.child = spawn_daemon(
            &self.config,
            &self.socket,
            &self.state_dir,
            &self.policy_dir,
            &self.log,
        );
        self.wait_ready();
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        self.shut_down();
    }

    /// Runs `sandboxd` on the same paths in the foreground, for a start
    /// that is expected to fail (the daemon stopped); its output (killed
    /// after 10 s if it does start).
    pub fn try_to_start(&self) -> Out {
        let mut child = Command::new(bin("sandboxd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--policy-dir")
            .arg(&self.policy_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sandboxd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait for sandboxd").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Out::from(child.wait_with_output().expect("wait for sandboxd"))
    }

    /// SIGTERM, then SIGKILL after 5 s (nothing when it has ended already).
    fn shut_down(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// One `agent` CLI invocation.
pub struct Agent {
    socket: PathBuf,
    uid: u32,
    groups: Vec<u32>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

impl Agent {
    pub fn groups(mut self, groups: &[u32]) -> Self {
        self.groups = groups.to_vec();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = if self.uid == 0 && self.groups.is_empty() {
            Command::new(bin("agent"))
        } else {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.uid));
            if self.groups.is_empty() {
                c.arg("--clear-groups");
            } else {
                let g: Vec<String> = self.groups.iter().map(u32::to_string).collect();
                c.arg(format!("--groups={}", g.join(",")));
            }
            c.arg("--").arg(bin("agent"));
            c
        };
        cmd.arg("--socket")
            .arg(&self.socket)
            .args(args)
            .current_dir(&self.cwd)
            .env_clear();
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        cmd.env("HOME", home_path(self.uid));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to completion (at most 120 s) with stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn agent");
        if let Some(data) = stdin {
            use std::io::Write;
            let mut w = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let mut so = child.stdout.take().expect("stdout");
        let mut se = child.stderr.take().expect("stderr");
        let t1 = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = so.read_to_end(&mut b);
            b
        });
        let t2 = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = se.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent {args:?} did not finish in 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = t1.join().unwrap_or_default();
        let stderr = t2.join().unwrap_or_default();
        Out::from(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Host pids of every descendant of `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let path = t.path().join("children");
            if let Ok(s) = std::fs::read_to_string(path) {
                for c in s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Host pids whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // The agent's own command line carries the needle too; only sandboxed processes count.
            if cmd.contains(needle) && !cmd.contains("--socket") {
                out.push(pid);
            }
        }
    }
    out
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The home directory sandboxd uses as `{home}` for `uid`: its /etc/passwd
/// entry when there is one, else `/home/u{uid}` (passed as the caller's HOME,
/// which sandboxd accepts when the caller owns it).
pub fn home_path(uid: u32) -> PathBuf {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2] == uid.to_string())
        .map(|f| PathBuf::from(f[5]))
        .unwrap_or_else(|| PathBuf::from(format!("/home/u{uid}")))
}

/// [`home_path`], created and owned by `uid` when missing.
pub fn home(uid: u32) -> PathBuf {
    let p = home_path(uid);
    if !p.exists() {
        std::fs::create_dir_all(&p).expect("mkdir home");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod home");
        chown(&p, uid);
    }
    p
}

/// Runs Python (Debian's, reachable by every uid) code inside a sandbox.
pub fn py(d: &Daemon, uid: u32, cwd: &Path, code: &str) -> Out {
    d.agent(uid, cwd)
        .run(&["exec", "--", "/usr/bin/python3", "-c", code])
}

/// `cmd` as one shell command line (environment included), for `script -c`.
pub fn shell_line(cmd: &Command) -> String {
    let q = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut parts = vec!["env".to_string(), "-i".to_string()];
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(q(&std::ffi::OsString::from(format!(
                "{}={}",
                k.to_string_lossy(),
                v.to_string_lossy()
            ))));
        }
    }
    parts.push(q(cmd.get_program()));
    parts.extend(cmd.get_args().map(q));
    parts.join(" ")
}

/// Runs `cmd` under `script`, which gives it a terminal as a person would
/// have, in `dir`; its output.
pub fn under_script(cmd: &Command, dir: &Path) -> Output {
    Command::new("script")
        .args(["-qec", &shell_line(cmd), "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run script")
}

/// Makes the calling thread (only) `uid`, as the daemon sees it through
/// SO_PEERCRED: raw syscalls, as libc's wrappers would change every thread.
pub fn thread_becomes(uid: u32) {
    // SAFETY: plain syscalls on this thread's own credentials.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
            0
        );
        assert_eq!(libc::syscall(libc::SYS_setresgid, uid, uid, uid), 0);
        assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
    }
}

/// Runs `f` with a client of `socket` connected as `uid` (a thread of this
/// process that became `uid`, with a runtime of its own), for what the
/// `agent` command line cannot send.
pub fn client_as<T, F, Fut>(uid: u32, socket: &Path, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(agent::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        thread_becomes(uid);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = agent::connect(&socket).await.expect("connect");
            f(client).await
        })
    })
    .join()
    .expect("client thread")
}
