//! Real sandboxes through `backend::linux::spawn`, as root, with the command
//! running as uid/gid 1000; evidence is checked from the host side.

use sandboxd::backend::linux::cgroup::CgroupLimits;
use sandboxd::backend::linux::{spawn, spawn_with, SpawnError, Spawned};
use sandboxd::backend::spec::{
    Credentials, FsPlan, InitReport, LandlockPlan, NetPlan, SandboxSpec,
};
use std::io::{BufRead, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const UID: u32 = 1000;

/// A directory under /srv owned by uid 1000 (reachable by the caller).
fn workspace() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sbx-backend-")
        .tempdir_in("/srv")
        .unwrap();
    std::os::unix::fs::chown(d.path(), Some(UID), Some(UID)).unwrap();
    d
}

fn write_as_caller(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    let mut p = path.to_path_buf();
    while p
        .file_name()
        .is_some_and(|n| !n.to_string_lossy().starts_with("sbx-backend-"))
    {
        std::os::unix::fs::chown(&p, Some(UID), Some(UID)).unwrap();
        p.pop();
    }
}

struct Sandbox {
    spec: SandboxSpec,
    _staging: tempfile::TempDir,
}

fn sandbox(cwd: &Path, script: &str) -> Sandbox {
    static N: AtomicU32 = AtomicU32::new(0);
    let staging = tempfile::tempdir().unwrap();
    let spec = SandboxSpec {
        id: format!(
            "test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        cwd: cwd.to_path_buf(),
        creds: Credentials {
            uid: UID,
            gid: UID,
            groups: vec![UID],
        },
        fs: FsPlan {
            read: vec!["/".into()],
            write: vec![cwd.to_path_buf()],
            private_tmp: true,
            staging: staging.path().to_path_buf(),
            ..Default::default()
        },
        landlock: LandlockPlan {
            required: false,
            connect_tcp: None,
        },
        net: NetPlan::Loopback,
        tty: false,
        nofile: (512, 2048),
        nproc: None,
    };
    Sandbox {
        spec,
        _staging: staging,
    }
}

#[derive(Debug)]
struct Out {
    exit: InitReport,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        match self.exit {
            InitReport::Exited { code, .. } => code,
            _ => None,
        }
    }
}

fn drain(fd: std::os::fd::OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // A pty master reads EIO once the other side is closed: that is EOF too.
        while let Ok(n) = f.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs to the end; the exit comes from the report stream.
async fn run(sb: &Sandbox) -> Result<Out, SpawnError> {
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let spawned = spawn(&sb.spec, &CgroupLimits::default(), exe).await?;
    Ok(finish(spawned))
}

fn finish(s: Spawned) -> Out {
    let Spawned {
        pidfd,
        stdin,
        stdout,
        stderr,
        reports,
        ..
    } = s;
    drop(stdin);
    let out = drain(stdout);
    let err = stderr.map(drain);
    let mut lines = std::io::BufReader::new(std::fs::File::from(reports)).lines();
    let mut all = Vec::new();
    for l in lines.by_ref() {
        all.push(serde_json::from_str::<InitReport>(&l.unwrap()).unwrap());
    }
    // SAFETY: waiting on our own child's pidfd.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED,
        );
    }
    let exit = all.pop().expect("an Exited report");
    Out {
        exit,
        stdout: out.join().unwrap(),
        stderr: err.map(|e| e.join().unwrap()).unwrap_or_default(),
    }
}

#[tokio::test]
async fn runs_as_the_caller_in_its_own_pid_namespace() {
    let ws = workspace();
    let sb = sandbox(
        ws.path(),
        "id -u; id -g; hostname; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '",
    );
    let out = run(&sb).await.unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0..2], ["1000", "1000"], "{out:?}");
    assert_eq!(lines[2], sb.spec.id);
    let pids: Vec<u32> = lines[3]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.contains(&1) && pids.iter().all(|p| *p < 20),
        "host pids visible: {pids:?}"
    );
    assert!(!pids.contains(&std::process::id()));
    assert_eq!(out.code(), Some(0));
}

/// The command gets the descriptor limit of its spec, not the daemon's
/// (raised) one.
#[tokio::test]
async fn the_command_gets_the_descriptor_limit_of_its_spec() {
    let ws = workspace();
    let out = run(&sandbox(ws.path(), "ulimit -Sn; ulimit -Hn"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "512\n2048\n", "{out:?}");
}

/// The task limit binds the command's forks, counting its uid's other
/// tasks on the host, and not its exec: a caller already past it still
/// gets the command started.
#[tokio::test]
async fn the_task_limit_binds_forks_and_not_the_exec() {
    // A uid of its own, holding two tasks on the host.
    const OTHER: u32 = 1009;
    let ws = tempfile::tempdir().unwrap();
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let started = ws.path().join("held");
    let mut held = std::process::Command::new("setpriv")
        .args(["--reuid=1009", "--regid=1009", "--clear-groups", "--"])
        .args(["sh", "-c", "sleep 30 & touch \"$0\"; exec sleep 30"])
        .arg(&started)
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::remove_file(&started).unwrap();
    let mut sb = sandbox(ws.path(), "echo ran; sleep 0 & wait; echo forked");
    sb.spec.creds = Credentials {
        uid: OTHER,
        gid: OTHER,
        groups: vec![OTHER],
    };
    sb.spec.nproc = Some(1);
    let out = run(&sb).await.unwrap();
    // The holder's whole group: the sleep in the background too.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(held.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = held.wait();
    assert_eq!(out.stdout, "ran\n", "{out:?}");
}

#[tokio::test]
async fn only_write_roots_reach_the_host() {
    let ws = workspace();
    let ro = workspace();
    let tag = format!("sbx-{}", std::process::id());
    let script = format!(
        "echo x > /etc/{tag}; echo x > {ro}/{tag}; echo hi > {ws}/out.txt; echo t > /tmp/{tag}; cat /tmp/{tag}; true",
        ro = ro.path().display(),
        ws = ws.path().display()
    );
    let mut sb = sandbox(ws.path(), &script);
    sb.spec.fs.read = vec!["/".into(), ro.path().to_path_buf()];
    let out = run(&sb).await.unwrap();
    assert_eq!(
        out.stdout, "t\n",
        "private /tmp not writable: {}",
        out.stderr
    );
    assert!(!Path::new("/etc").join(&tag).exists());
    assert!(!ro.path().join(&tag).exists());
    assert!(
        !Path::new("/tmp").join(&tag).exists(),
        "private /tmp reached the host"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "hi\n"
    );
}

#[tokio::test]
async fn deny_read_hides_files_and_directories() {
    let ws = workspace();
    let w = ws.path();
    write_as_caller(&w.join("secret.txt"), "TOPSECRET\n");
    write_as_caller(&w.join("sub/dir/.env"), "DOTENV\n");
    write_as_caller(&w.join("keys/id"), "PRIVATE\n");
    write_as_caller(&w.join("visible.txt"), "visible\n");
    let script = format!(
        "cat visible.txt secret.txt sub/dir/.env keys/id; ls keys; cat /proc/self/root{w}/secret.txt /proc/self/root{w}/keys/id; \
         ln secret.txt hl; cat hl; true",
        w = w.display()
    );
    let mut sb = sandbox(w, &script);
    sb.spec.fs.deny_read = vec![
        format!("{}/secret.txt", w.display()),
        "**/.env".into(),
        format!("{}/k*s", w.display()),
    ];
    let out = run(&sb).await.unwrap();
    assert!(out.stdout.contains("visible"), "{}", out.stderr);
    for secret in ["TOPSECRET", "DOTENV", "PRIVATE", "id\n"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} leaked: {}",
            out.stdout
        );
    }
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(w.join("secret.txt")).unwrap(),
        "TOPSECRET\n"
    );
}

#[tokio::test]
async fn deny_write_is_read_only_and_rename_proof() {
    let ws = workspace();
    let w = ws.path();
    write_as_caller(&w.join(".git/hooks/pre-commit.sample"), "#!/bin/sh\n");
    write_as_caller(&w.join(".git/config"), "[core]\n");
    write_as_caller(&w.join(".git/HEAD"), "ref\n");
    let script =
        "echo evil > .git/hooks/pre-commit; echo evil >> .git/config; mv .git x; mv .git/hooks h; \
                  rm -rf .git/hooks; echo ok > .git/HEAD.new; echo done";
    let mut sb = sandbox(w, script);
    sb.spec.fs.deny_write = vec![
        format!("{}/.git/hooks", w.display()),
        format!("{}/.git/config", w.display()),
    ];
    let out = run(&sb).await.unwrap();
    assert!(out.stdout.contains("done"), "{}", out.stderr);
    assert!(!w.join(".git/hooks/pre-commit").exists(), "hook written");
    assert!(
        w.join(".git/hooks/pre-commit.sample").exists(),
        "hooks removed"
    );
    assert_eq!(
        std::fs::read_to_string(w.join(".git/config")).unwrap(),
        "[core]\n"
    );
    assert!(
        w.join(".git").is_dir() && !w.join("x").exists(),
        "mv .git x succeeded: {}",
        out.stderr
    );
    // `mv .git/hooks h` can only copy (EXDEV); the original stays.
    assert!(
        w.join(".git/HEAD.new").exists(),
        "rest of .git not writable: {}",
        out.stderr
    );
}

#[tokio::test]
async fn missing_deny_write_path_creates_nothing_and_stays_protected() {
    let ws = workspace();
    let w = ws.path();
    write_as_caller(&w.join(".git/HEAD"), "ref\n");
    let mut sb = sandbox(
        w,
        "mkdir .git/hooks; echo evil > .git/hooks/pre-commit; echo ok > new.txt; true",
    );
    sb.spec.fs.deny_write = vec![format!("{}/.git/hooks", w.display())];
    let out = run(&sb).await.unwrap();
    assert!(
        !w.join(".git/hooks").exists(),
        "hooks created: {}",
        out.stderr
    );
    assert!(w.join("new.txt").exists());
}

#[tokio::test]
async fn dev_has_exactly_the_minimal_set() {
    let ws = workspace();
    let out = run(&sandbox(
        ws.path(),
        "ls -A /dev | tr '\\n' ' '; ls /dev/pts | tr '\\n' ' '",
    ))
    .await
    .unwrap();
    assert_eq!(
        out.stdout.trim_end(),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ptmx",
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn host_unix_sockets_are_unreachable() {
    let ws = workspace();
    let sock = ws.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "/usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{}'); print('CONNECTED')\"",
        sock.display()
    );
    // Control: reachable without the cover.
    let open = run(&sandbox(ws.path(), &script)).await.unwrap();
    assert!(open.stdout.contains("CONNECTED"), "{}", open.stderr);
    let mut sb = sandbox(ws.path(), &script);
    sb.spec.fs.host_sockets = vec![sock.clone()];
    let out = run(&sb).await.unwrap();
    assert!(!out.stdout.contains("CONNECTED"), "host socket reachable");
    assert_ne!(out.code(), Some(0));
    drop(listener);
    // A listed name that is no socket (anyone can bind a socket at any path
    // in a mount namespace of their own) is not hidden.
    let file = ws.path().join("plain.txt");
    std::fs::write(&file, "still here\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut sb = sandbox(ws.path(), &format!("cat {}", file.display()));
    sb.spec.fs.host_sockets = vec![file.clone()];
    let out = run(&sb).await.unwrap();
    assert_eq!(out.stdout, "still here\n", "{}", out.stderr);
}

#[tokio::test]
async fn bad_cwds_are_refused_naming_the_path() {
    let ws = workspace();
    let link = ws.path().join("link");
    std::os::unix::fs::symlink(ws.path(), &link).unwrap();
    let private = tempfile::Builder::new()
        .prefix("sbx-root-")
        .tempdir_in("/srv")
        .unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = private.path().join("sub");
    std::fs::create_dir(&hidden).unwrap();
    for (cwd, words) in [
        (&link, "symbolic link"),
        (&hidden, "not reachable"),
        (&PathBuf::from("/proc/1"), "proc"),
    ] {
        let mut sb = sandbox(ws.path(), "true");
        sb.spec.cwd = cwd.clone();
        match run(&sb).await {
            Err(SpawnError::Setup { path, error, .. }) => {
                assert_eq!(path.as_deref(), Some(cwd.to_str().unwrap()));
                assert!(error.contains(words), "{error}");
            }
            other => panic!("cwd {} accepted: {other:?}", cwd.display()),
        }
    }
    // A write root the caller cannot write.
    let mut sb = sandbox(ws.path(), "true");
    sb.spec.fs.write.push(private.path().to_path_buf());
    let e = run(&sb).await.unwrap_err().to_string();
    assert!(e.contains(private.path().to_str().unwrap()), "{e}");
}

#[tokio::test]
async fn exec_failures_are_126_and_127() {
    let ws = workspace();
    let mut sb = sandbox(ws.path(), "");
    sb.spec.argv = vec!["no-such-command-xyz".into()];
    let out = run(&sb).await.unwrap();
    assert!(
        out.stderr.contains("no-such-command-xyz") && out.stderr.contains("No such file"),
        "{out:?}"
    );
    assert_eq!(out.code(), Some(127));

    write_as_caller(&ws.path().join("script.sh"), "#!/bin/sh\necho hi\n");
    sb.spec.argv = vec!["./script.sh".into()];
    let out = run(&sb).await.unwrap();
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    assert_eq!(out.code(), Some(126));
}

fn marker_running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

/// The sandbox is built while the gate is pending; its command runs only
/// after an `Ok`, and never after an `Err` (the daemon's audit record).
#[tokio::test]
async fn the_command_waits_for_the_gate_and_never_runs_when_it_refuses() {
    let ws = workspace();
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let ran = ws.path().join("ran");
    let sb = sandbox(ws.path(), "date +%s%N > ran");
    let no_net = |_: &std::os::fd::OwnedFd| Ok(());

    let opened = std::sync::Mutex::new(None);
    let slow_gate = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        *opened.lock().unwrap() = Some(std::time::SystemTime::now());
        Ok(())
    };
    let spawned = spawn_with(&sb.spec, &CgroupLimits::default(), exe, no_net, slow_gate)
        .await
        .unwrap();
    let out = finish(spawned.0);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let ran_at: u128 = std::fs::read_to_string(&ran)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let opened_at = opened.lock().unwrap().unwrap();
    let opened_at = opened_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(
        ran_at >= opened_at,
        "the command ran before the gate opened"
    );
    std::fs::remove_file(&ran).unwrap();

    let marker = format!("97{}", std::process::id());
    let sb = sandbox(ws.path(), &format!("touch ran; sleep {marker}"));
    let refusing = async {
        // Long enough for the init to have built everything and forked.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err("the audit log is read-only".to_string())
    };
    let err = spawn_with(&sb.spec, &CgroupLimits::default(), exe, no_net, refusing)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, SpawnError::Withheld(m) if m.contains("read-only")),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(!ran.exists(), "a withheld command ran");
    assert!(!marker_running(&format!("sleep\0{marker}")));
}

#[tokio::test]
async fn detached_grandchildren_die_with_the_command() {
    let ws = workspace();
    let marker = format!("98{}", std::process::id());
    let script = format!("(setsid sleep {marker} &); sleep 0.2; echo started");
    let out = run(&sandbox(ws.path(), &script)).await.unwrap();
    assert_eq!(out.stdout, "started\n");
    assert!(
        !marker_running(&format!("sleep\0{marker}")),
        "grandchild survived"
    );
}

#[tokio::test]
async fn signals_are_forwarded_to_the_command() {
    let ws = workspace();
    let sb = sandbox(
        ws.path(),
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let s = spawn(
        &sb.spec,
        &CgroupLimits::default(),
        Path::new(env!("CARGO_BIN_EXE_sandboxd")),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(s.pid, libc::SIGTERM) };
    let out = finish(s);
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(out.stdout.contains("got-term"));
}

#[tokio::test]
async fn tty_gives_a_terminal() {
    let ws = workspace();
    // The slave must come from the sandbox's own devpts: its name resolves
    // inside, it is the controlling terminal (/dev/tty opens), the caller owns it.
    let mut sb = sandbox(
        ws.path(),
        "test -t 0 && test -t 1 && test -t 2 && echo IS-A-TTY; tty; \
         test -e \"$(tty)\" && echo NAME-RESOLVES; \
         echo via-dev-tty > /dev/tty; stat -c 'owner=%u' \"$(tty)\"; \
         ls /dev/pts | tr '\\n' ' '",
    );
    sb.spec.tty = true;
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let s = spawn(&sb.spec, &CgroupLimits::default(), exe)
        .await
        .unwrap();
    assert!(s.stderr.is_none());
    // The daemon's end is a pty master.
    assert!(nix::unistd::isatty(&s.stdout).unwrap());
    let out = finish(s);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("IS-A-TTY"), "{out:?}");
    assert!(out.stdout.contains("\n/dev/pts/0\r\n"), "{out:?}");
    assert!(out.stdout.contains("NAME-RESOLVES"), "{out:?}");
    assert!(out.stdout.contains("via-dev-tty"), "{out:?}");
    assert!(
        out.stdout.contains(&format!("owner={}", sb.spec.creds.uid)),
        "{out:?}"
    );
    // A fresh instance: only this sandbox's pty (and ptmx) exist.
    assert!(out.stdout.ends_with("0 ptmx "), "{out:?}");
}

#[tokio::test]
async fn spawn_to_started_time() {
    let ws = workspace();
    let sb = sandbox(ws.path(), "true");
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let s = spawn(&sb.spec, &CgroupLimits::default(), exe)
            .await
            .unwrap();
        times.push(t.elapsed());
        finish(s);
    }
    times.sort();
    eprintln!(
        "spawn -> Started: min {:?} median {:?} max {:?}",
        times[0], times[5], times[9]
    );
}

#[tokio::test]
async fn each_sandbox_gets_its_own_loopback_network() {
    let ws = workspace();
    // Interfaces from /proc/net/dev (per namespace); lo must carry a TCP connection.
    let script = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' \\n'; echo; \
                  /usr/bin/python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); \
                  s.listen(); socket.create_connection(s.getsockname()); print('LO-OK')\"";
    let host = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut seen = vec![host];
    // Several at once (namespace numbers are reused once one is freed): the
    // first may clone a namespace, the next come from the pool.
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let mut running = Vec::new();
    for _ in 0..4 {
        let sb = sandbox(ws.path(), &format!("{script}; sleep 1"));
        running.push((
            spawn(&sb.spec, &CgroupLimits::default(), exe)
                .await
                .unwrap(),
            sb,
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (s, _sb) in running {
        let out = finish(s);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.get(1..3), Some(&["lo", "LO-OK"][..]), "{out:?}");
        assert!(
            !seen.iter().any(|s| s == lines[0]),
            "network namespace shared: {}",
            lines[0]
        );
        seen.push(lines[0].to_string());
    }
}

/// The daemon spawns from tonic handlers: the future must be Send.
#[test]
fn spawn_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let sb = sandbox(Path::new("/"), "true");
    let limits = CgroupLimits::default();
    let fut = spawn(&sb.spec, &limits, Path::new("/bin/false"));
    assert_send(&fut);
}

#[tokio::test]
async fn without_the_host_root_only_the_listed_roots_exist() {
    let ws = workspace();
    // Lookups need no Landlock right, so absence is tested with `-e`.
    let script =
        "for d in /usr /etc /lib /var /home /root /opt /boot /run; do [ -e $d ] && echo $d; done; \
                  echo x > /new; ls /usr/bin/sh";
    let mut sb = sandbox(ws.path(), script);
    sb.spec.fs.read = ["/usr", "/bin", "/lib", "/lib64", "/etc", "/nonexistent"]
        .map(PathBuf::from)
        .to_vec();
    let out = run(&sb).await.unwrap();
    assert_eq!(
        out.stdout, "/usr\n/etc\n/lib\n/usr/bin/sh\n",
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("/new"), "{}", out.stderr);
}

#[tokio::test]
async fn the_command_inherits_only_its_stdio() {
    let ws = workspace();
    // ls itself holds one more descriptor for the directory it lists.
    let out = run(&sandbox(ws.path(), "ls /proc/self/fd | tr '\\n' ' '"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "0 1 2 3 ", "{}", out.stderr);
}

#[tokio::test]
async fn host_network_plan_shares_the_host_namespace() {
    let ws = workspace();
    let mut sb = sandbox(ws.path(), "readlink /proc/self/ns/net");
    sb.spec.net = NetPlan::Host;
    let out = run(&sb).await.unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.stdout.trim_end(), host.to_str().unwrap());
}

#[tokio::test]
async fn a_workspace_under_tmp_survives_the_private_tmp() {
    let ws = tempfile::Builder::new()
        .prefix("sbx-backend-")
        .tempdir_in("/tmp")
        .unwrap();
    std::os::unix::fs::chown(ws.path(), Some(UID), Some(UID)).unwrap();
    let out = run(&sandbox(
        ws.path(),
        "pwd; echo hi > out.txt; ls /tmp | wc -l",
    ))
    .await
    .unwrap();
    assert_eq!(
        out.stdout,
        format!("{}\n1\n", ws.path().display()),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "hi\n"
    );
}

#[tokio::test]
async fn hidden_paths_are_covered() {
    let ws = workspace();
    let state = tempfile::Builder::new()
        .prefix("sbx-state-")
        .tempdir_in("/srv")
        .unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(state.path().join("audit.log"), "AUDIT\n").unwrap();
    let file = ws.path().join("daemon.toml");
    std::fs::write(&file, "CONFIG\n").unwrap();
    let script = format!(
        "ls -A {s}; cat {s}/audit.log {f}; true",
        s = state.path().display(),
        f = file.display()
    );
    let mut sb = sandbox(ws.path(), &script);
    sb.spec.fs.hide = vec![
        state.path().to_path_buf(),
        file.clone(),
        PathBuf::from("/nonexistent"),
    ];
    let out = run(&sb).await.unwrap();
    assert!(
        !out.stdout.contains("AUDIT") && !out.stdout.contains("CONFIG"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("audit.log"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "CONFIG\n");
}

/// Live `__sandbox_init` processes whose parent is `parent` (host pids).
fn inits_of(parent: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut f = rest.split(' ');
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent)
            && state != Some("Z")
            && String::from_utf8_lossy(&cmdline).contains("__sandbox_init")
        {
            found.push(pid);
        }
    }
    found
}

/// Waits until this process has at least `n` pooled inits (nothing else
/// running), each already in its pool cgroup; then a little longer, for the
/// pool to file the last one as ready.
fn wait_for_pool(n: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_pool_cgroup = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|t| t.lines().any(|l| l.contains(":pids:/sandboxd/pool-")))
            .unwrap_or(false)
    };
    // Waiting inits run at nice 19 until they get a spec; other tests'
    // running sandboxes do not.
    let waiting = || -> Vec<i32> {
        inits_of(std::process::id())
            .into_iter()
            .filter(|&p| nice_of(p) == Some(19) && in_pool_cgroup(&p))
            .collect()
    };
    loop {
        if waiting().len() >= n {
            // Listed again after a pause: inits that executed meanwhile
            // may have been filed as ready too.
            std::thread::sleep(Duration::from_millis(100));
            return waiting();
        }
        assert!(
            Instant::now() < deadline,
            "pool not filled: {:?}",
            waiting()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The host directory of `pid`'s cgroup in the v1 hierarchy of `ctrl`.
/// Field `n` (1-based, as in proc(5)) of a process's stat line.
fn stat_field(pid: i32, n: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ...": the split leaves fields from the 3rd on.
    stat.rsplit_once(") ")?
        .1
        .split(' ')
        .nth(n - 3)?
        .parse()
        .ok()
}

fn nice_of(pid: i32) -> Option<i64> {
    stat_field(pid, 19)
}

/// When a process started, in clock ticks since boot.
fn start_ticks(pid: i32) -> Option<i64> {
    stat_field(pid, 22)
}

/// Clock ticks since boot now (the kernel's USER_HZ is 100).
fn uptime_ticks() -> i64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = up.split(' ').next().unwrap().parse().unwrap();
    (secs * 100.0) as i64
}

/// Whether the init of `pid` came from the pool (its cgroup says so).
fn from_pool(pid: i32) -> bool {
    cgroup_dir(pid, "pids")
        .to_string_lossy()
        .contains("/sandboxd/pool-")
}

fn cgroup_dir(pid: i32, ctrl: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls.split(',').any(|c| c == ctrl).then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("{pid} has no {ctrl} cgroup: {text}"));
    Path::new("/sys/fs/cgroup")
        .join(ctrl)
        .join(rel.trim_start_matches('/'))
}

#[tokio::test]
async fn an_init_from_the_pool_gets_the_limits() {
    let ws = workspace();
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    sandboxd::backend::linux::prefill(exe);
    let pooled = wait_for_pool(3);
    // Thirty background sleeps, in a cgroup allowing 8 processes (after a
    // pause: the cgroup is read from the init's /proc entry meanwhile).
    let sb = sandbox(
        ws.path(),
        "sleep 1; i=0; while [ $i -lt 30 ]; do sleep 3 & i=$((i+1)); done; wait",
    );
    let limits = CgroupLimits {
        memory_bytes: Some(64 << 20),
        pids: Some(8),
        user: None,
    };
    let s = spawn(&sb.spec, &limits, exe).await.unwrap();
    // Other tests take from the same pool: the cgroup tells a pooled init.
    assert!(from_pool(s.pid), "{} not from the pool {pooled:?}", s.pid);
    assert_eq!(
        nice_of(s.pid),
        Some(0),
        "the sandbox runs at normal priority"
    );
    let pids = cgroup_dir(s.pid, "pids");
    let memory = cgroup_dir(s.pid, "memory");
    assert!(
        pids.to_string_lossy().contains("/sandboxd/pool-"),
        "{}",
        pids.display()
    );
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "8"
    );
    assert_eq!(
        std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (64u64 << 20).to_string()
    );
    // The forks beyond the limit were refused (pids.events counts them).
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let events = std::fs::read_to_string(pids.join("pids.events")).unwrap();
        let n: u64 = events
            .strip_prefix("max ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let current: u64 = std::fs::read_to_string(pids.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        refused > 0 && current <= 8,
        "refused {refused}, current {current}"
    );
    finish(s);
}

#[tokio::test]
async fn a_tty_sandbox_from_the_pool_gets_its_terminal() {
    let ws = workspace();
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    sandboxd::backend::linux::prefill(exe);
    let pooled = wait_for_pool(3);
    let mut sb = sandbox(ws.path(), "tty; echo pooled-tty");
    sb.spec.tty = true;
    let s = spawn(&sb.spec, &CgroupLimits::default(), exe)
        .await
        .unwrap();
    // Other tests take from the same pool: the cgroup tells a pooled init
    // (while it runs: the command is short).
    assert!(
        pooled.contains(&s.pid) || from_pool(s.pid),
        "{} not from the pool {pooled:?}",
        s.pid
    );
    assert!(s.stderr.is_none());
    let out = finish(s);
    assert!(out.stdout.contains("/dev/pts/0\r\npooled-tty"), "{out:?}");
    assert_eq!(out.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_init_sees_mounts_made_after_it_started() {
    let ws = workspace();
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    sandboxd::backend::linux::prefill(exe);
    let pooled = wait_for_pool(3);
    let before_mount = uptime_ticks();
    // A file system mounted on the host after the pool was filled.
    let mnt = ws.path().join("late");
    std::fs::create_dir(&mnt).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    write_as_caller(&mnt.join("hello.txt"), "from a late mount\n");
    let sb = sandbox(ws.path(), "cat late/hello.txt");
    let s = spawn(&sb.spec, &CgroupLimits::default(), exe)
        .await
        .unwrap();
    // Other tests take from the same pool: any pooled init started before
    // the mount will do.
    let from_pool = pooled.contains(&s.pid)
        || (from_pool(s.pid) && start_ticks(s.pid).is_some_and(|t| t <= before_mount));
    let out = finish(s);
    let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    assert!(from_pool, "not from the pool {pooled:?}");
    assert!(out.stdout.contains("from a late mount"), "{out:?}");
}

/// Run by [`pooled_inits_end_with_their_owner`] in a child process: fills
/// the pool, prints the pooled inits and their cgroups, and exits.
#[test]
#[ignore = "helper run by pooled_inits_end_with_their_owner"]
fn pool_owner_helper() {
    if std::env::var_os("SBX_POOL_OWNER").is_none() {
        return;
    }
    sandboxd::backend::linux::prefill(Path::new(env!("CARGO_BIN_EXE_sandboxd")));
    for pid in wait_for_pool(3) {
        println!(
            "POOLED {pid} {} {}",
            cgroup_dir(pid, "pids").display(),
            cgroup_dir(pid, "memory").display()
        );
    }
}

#[test]
fn pooled_inits_end_with_their_owner() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["pool_owner_helper", "--exact", "--ignored", "--nocapture"])
        .env("SBX_POOL_OWNER", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pooled: Vec<(i32, Vec<PathBuf>)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("POOLED "))
        .map(|l| {
            let mut f = l.split(' ');
            let pid = f.next().unwrap().parse().unwrap();
            (pid, f.map(PathBuf::from).collect())
        })
        .collect();
    assert!(out.status.success() && pooled.len() >= 3, "{text}");
    // The owner is gone: each init reads EOF instead of a spec and exits.
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pooled.iter().all(|(pid, _)| gone(*pid)) {
        assert!(
            Instant::now() < deadline,
            "pooled inits outlived their owner: {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for (_, dirs) in &pooled {
        for dir in dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            assert!(procs.trim().is_empty(), "{}: {procs}", dir.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spawns_drain_the_pool_and_still_run() {
    let ws = workspace();
    let exe = Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    sandboxd::backend::linux::prefill(exe);
    let pooled = wait_for_pool(3);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let sb = sandbox(ws.path(), &format!("echo run-{i}"));
        set.spawn(async move {
            let s = spawn(&sb.spec, &CgroupLimits::default(), exe)
                .await
                .unwrap();
            let pid = s.pid;
            let out = tokio::task::spawn_blocking(move || finish(s))
                .await
                .unwrap();
            (i, pid, out, sb)
        });
    }
    let mut from_pool = 0;
    while let Some(r) = set.join_next().await {
        let (i, pid, out, _sb) = r.unwrap();
        assert_eq!(out.stdout, format!("run-{i}\n"), "{out:?}");
        assert_eq!(out.code(), Some(0));
        from_pool += usize::from(pooled.contains(&pid));
    }
    eprintln!("{from_pool} of 20 from the initial pool");
    assert!(from_pool >= 1);
}
