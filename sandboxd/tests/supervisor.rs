//! Supervisor and cgroup tests against real processes (run as root).
//!
//! `spawn()` is not used here: each test builds a [`Spawned`] by hand from a
//! `sh -c SCRIPT` cloned as pid 1 of a new pid namespace, with pipes for its
//! stdio, a report pipe the test writes to (standing in for the init), a
//! pidfd, and a real cgroup.

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use sandboxd::backend::linux::cgroup::{Cgroup, CgroupLimits};
use sandboxd::backend::linux::Spawned;
use sandboxd::backend::spec::InitReport;
use sandboxd::supervisor::{supervise, Control, ExitInfo, Handle, Options, Output};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MIB: u64 = 1 << 20;

/// A sandbox stand-in started by [`start`].
struct Fake {
    spawned: Spawned,
    /// Write end of the report stream; drop it to end the stream.
    reports: std::fs::File,
    pid: i32,
    id: String,
    _guard: KillOnDrop,
}

fn unique_id(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2")
}

/// Clones `sh -c script` as pid 1 of a new pid namespace, placed in a new
/// cgroup with `limits` before it executes.
fn start(name: &str, script: &str, limits: &CgroupLimits) -> Fake {
    start_with(name, script, limits, false)
}

/// Like [`start`]; with `tty` the script's stdio is a new pty (its
/// controlling terminal) and the Spawned carries the master, as spawn() does.
fn start_with(name: &str, script: &str, limits: &CgroupLimits, tty: bool) -> Fake {
    let id = unique_id(name);
    let mut cgroup = Cgroup::create(&id, limits).expect("cgroup");
    let (in_r, in_w, out_r, out_w, err_r, err_w);
    if tty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("cloexec");
        }
        in_w = pty.master.try_clone().expect("dup");
        out_r = pty.master;
        err_r = None;
        in_r = pty.slave.try_clone().expect("dup");
        out_w = pty.slave.try_clone().expect("dup");
        err_w = pty.slave;
    } else {
        (in_r, in_w) = pipe();
        (out_r, out_w) = pipe();
        let (r, w) = pipe();
        (err_r, err_w) = (Some(r), w);
    }
    let (rep_r, rep_w) = pipe();
    let (sync_r, sync_w) = pipe();

    let path = CString::new("/bin/sh").unwrap();
    let args = [
        CString::new("sh").unwrap(),
        CString::new("-c").unwrap(),
        CString::new(script).unwrap(),
    ];
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env = [CString::new("PATH=/usr/bin:/bin").unwrap()];
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let fds = [
        sync_r.as_raw_fd(),
        in_r.as_raw_fd(),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
    ];
    let mut stack = vec![0u8; 256 * 1024];
    // The child only makes async-signal-safe calls on memory prepared above.
    let child = Box::new(move || -> isize {
        // SAFETY: raw syscalls on descriptors and buffers owned by the parent image.
        unsafe {
            let mut b = 0u8;
            libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if tty {
                libc::setsid();
                libc::ioctl(fds[1], libc::TIOCSCTTY, 0);
            }
            libc::dup2(fds[1], 0);
            libc::dup2(fds[2], 1);
            libc::dup2(fds[3], 2);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
    });
    // SAFETY: the callback execs or exits; the stack outlives the call.
    let pid = unsafe {
        nix::sched::clone(
            child,
            &mut stack,
            CloneFlags::CLONE_NEWPID,
            Some(libc::SIGCHLD),
        )
    }
    .expect("clone")
    .as_raw();
    // SAFETY: pidfd_open on our own child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let guard = KillOnDrop(pidfd.try_clone().expect("dup pidfd"));
    cgroup.add(pid).expect("cgroup add");
    // Never let the script run unconfined: check the child's cgroups first
    // (the guard kills it if this fails).
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let inside = format!("/sandboxd/{id}");
    for (ctrl, set) in [
        ("memory", limits.memory_bytes.is_some()),
        ("pids", limits.pids.is_some()),
    ] {
        let placed = own
            .lines()
            .any(|l| l.split(':').nth(1) == Some(ctrl) && l.ends_with(&inside));
        assert!(!set || placed, "child not in its {ctrl} cgroup: {own}");
    }
    nix::unistd::write(&sync_w, b"x").expect("sync");
    Fake {
        spawned: Spawned {
            pid,
            pidfd,
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
            reports: rep_r,
            cgroup,
            mount_ns: None,
        },
        reports: std::fs::File::from(rep_w),
        pid,
        id,
        _guard: guard,
    }
}

/// SIGKILLs the fake sandbox's init when the test ends, even by a panic, so
/// a failing test leaves nothing running.
struct KillOnDrop(OwnedFd);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal with no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

fn opts() -> Options {
    Options {
        timeout: Some(Duration::from_secs(30)),
        output_cap: 64 * MIB,
        grace: Duration::from_secs(5),
    }
}

/// Everything received until `Exit`.
#[derive(Debug, Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    events: Vec<(String, String)>,
    exit: Option<ExitInfo>,
}

async fn collect(rx: &mut mpsc::Receiver<Output>) -> Collected {
    let mut c = Collected::default();
    let all = async {
        while let Some(o) = rx.recv().await {
            match o {
                Output::Stdout(d) => c.stdout.extend(d),
                Output::Stderr(d) => c.stderr.extend(d),
                Output::Event { kind, message } => c.events.push((kind, message)),
                Output::Exit(e) => {
                    c.exit = Some(e);
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("supervisor ended within 60s");
    c
}

/// Waits for `needle` on stdout, returning what was read so far.
async fn wait_stdout(rx: &mut mpsc::Receiver<Output>, needle: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let wait = async {
        while let Some(o) = rx.recv().await {
            if let Output::Stdout(d) = o {
                seen.extend(d);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return;
                }
            }
        }
        panic!("output ended before {needle:?}");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("marker on stdout");
    seen
}

fn pids_dir(id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/pids/sandboxd").join(id)
}

fn memory_dir(id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/memory/sandboxd").join(id)
}

/// Whether a cgroup directory is gone within a few seconds: it is removed
/// right after the exit is reported (emptied before, removed off its path).
fn removed_soon(dir: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while dir.exists() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

fn cgroup_pids(id: &str) -> Vec<i32> {
    std::fs::read_to_string(pids_dir(id).join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// True once none of `pids` exists any more (checked for up to 2 s).
fn all_gone(pids: &[i32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let alive: Vec<_> = pids
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("still alive: {alive:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

fn write_exited(reports: &mut std::fs::File, code: i32, user_us: u64) {
    let r = InitReport::Exited {
        code: Some(code),
        signal: None,
        user_us,
        system_us: 250,
        max_rss_bytes: 4096,
    };
    let line = serde_json::to_string(&r).unwrap();
    writeln!(reports, "{line}").unwrap();
}

fn pids_limit() -> CgroupLimits {
    CgroupLimits {
        memory_bytes: None,
        pids: Some(256),
        user: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_apart_and_stdin_forwarded() {
    let mut f = start(
        "streams",
        "read line; echo \"out:$line\"; echo err >&2; cat; exit 3",
        &pids_limit(),
    );
    write_exited(&mut f.reports, 3, 1500);
    drop(f.reports);
    let (h, mut rx, _) = supervise(f.spawned, opts());
    h.send(Control::Stdin(b"hello\n".to_vec())).await.unwrap();
    h.send(Control::Stdin(b"more".to_vec())).await.unwrap();
    h.send(Control::StdinEof).await.unwrap();
    let c = collect(&mut rx).await;
    let e = c.exit.expect("exit");
    assert_eq!(String::from_utf8_lossy(&c.stdout), "out:hello\nmore");
    assert_eq!(String::from_utf8_lossy(&c.stderr), "err\n");
    assert_eq!(e.code, Some(3));
    assert_eq!(e.signal, None);
    assert_eq!(e.user, Duration::from_micros(1500));
    assert_eq!(e.max_rss_bytes, 4096);
    assert!(!e.timed_out && e.reason.is_none(), "{e:?}");
    assert_eq!(e.output_bytes, 18);
    assert!(removed_soon(&pids_dir(&f.id)), "cgroup removed");
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_resize_and_eof() {
    let f = start_with(
        "tty",
        "read x; stty size; if read y; then echo more; else echo eof; fi",
        &pids_limit(),
        true,
    );
    drop(f.reports);
    let (h, mut rx, _) = supervise(f.spawned, opts());
    h.send(Control::Resize {
        rows: 33,
        cols: 101,
    })
    .await
    .unwrap();
    h.send(Control::Stdin(b"go\n".to_vec())).await.unwrap();
    wait_stdout(&mut rx, "33 101").await;
    h.send(Control::StdinEof).await.unwrap();
    let c = collect(&mut rx).await;
    let e = c.exit.expect("exit");
    let out = String::from_utf8_lossy(&c.stdout);
    assert!(out.contains("eof"), "{out:?}");
    assert_eq!(e.code, Some(0), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cap_forwards_exactly_cap_and_drops_rest() {
    let total = 200 * MIB;
    let mut f = start(
        "cap",
        &format!("head -c {total} /dev/zero; echo tail >&2; exit 0"),
        &pids_limit(),
    );
    write_exited(&mut f.reports, 0, 0);
    drop(f.reports);
    let rss0 = rss_bytes();
    let mut o = opts();
    o.output_cap = MIB;
    let (_h, mut rx, _) = supervise(f.spawned, o);
    let mut forwarded = 0u64;
    let mut events = Vec::new();
    let mut max_rss = 0;
    let exit = loop {
        let m = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("progress")
            .expect("exit before close");
        max_rss = max_rss.max(rss_bytes());
        match m {
            Output::Stdout(d) | Output::Stderr(d) => {
                assert!(d.len() <= 64 * 1024);
                forwarded += d.len() as u64;
                // A slow client.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Output::Event { kind, .. } => events.push(kind),
            Output::Exit(e) => break e,
        }
    };
    assert_eq!(forwarded, MIB);
    assert_eq!(exit.output_bytes, MIB);
    // The stderr line comes after the cap too, so it is dropped as well.
    assert_eq!(exit.output_dropped_bytes, total - MIB + 5);
    assert_eq!(events, vec!["output-truncated".to_string()]);
    assert_eq!(exit.code, Some(0));
    let growth = max_rss.saturating_sub(rss0);
    assert!(growth < 32 * MIB, "daemon side grew by {growth} bytes");
}

/// Bytes written so far by a process, from /proc/PID/io.
fn wchar(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_receiver_stalls_the_writer() {
    let total = 200 * MIB;
    let f = start(
        "backpressure",
        &format!("exec head -c {total} /dev/zero"),
        &pids_limit(),
    );
    let pid = f.pid;
    drop(f.reports);
    let rss0 = rss_bytes();
    let mut o = opts();
    o.output_cap = total;
    let (_h, mut rx, _) = supervise(f.spawned, o);
    let first = rx.recv().await.expect("first chunk");
    assert!(matches!(first, Output::Stdout(_)));
    // Hold the receiver: the writer must stall on a full pipe.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let written = wchar(pid);
    assert!(
        written > 0 && written < 4 * MIB,
        "writer got {written} bytes out while nobody read"
    );
    let mut got = match first {
        Output::Stdout(d) => d.len() as u64,
        _ => 0,
    };
    let mut max_rss = 0;
    let exit = loop {
        match rx.recv().await.expect("exit before close") {
            Output::Stdout(d) => got += d.len() as u64,
            Output::Exit(e) => break e,
            other => panic!("unexpected {other:?}"),
        }
        max_rss = max_rss.max(rss_bytes());
    };
    assert_eq!(got, total);
    assert_eq!(exit.output_bytes, total);
    assert_eq!(exit.output_dropped_bytes, 0);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let growth = max_rss.saturating_sub(rss0);
    assert!(growth < 32 * MIB, "daemon side grew by {growth} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_every_process() {
    let f = start(
        "timeout",
        "sleep 1000 & sleep 1000 & (sleep 1000 &) ; echo started; wait",
        &pids_limit(),
    );
    let id = f.id.clone();
    drop(f.reports);
    let mut o = opts();
    o.timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let (_h, mut rx, _) = supervise(f.spawned, o);
    wait_stdout(&mut rx, "started").await;
    let pids = cgroup_pids(&id);
    assert!(pids.len() >= 4, "sh and three sleeps: {pids:?}");
    let c = collect(&mut rx).await;
    let e = c.exit.expect("exit");
    assert!(e.timed_out, "{e:?}");
    assert_eq!(e.signal, Some(libc::SIGKILL));
    assert!(e.reason.as_deref().unwrap_or("").contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(all_gone(&pids), "processes survived the timeout");
    assert!(removed_soon(&pids_dir(&id)), "cgroup removed");
}

/// Output nobody takes does not hold up the exit: `yes` fills every buffer,
/// its timeout ends it, and the exit comes on its own channel at once; the
/// output stream still gives what was read, up to what the pipes held when
/// it died, and then the same exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_is_known_while_the_output_waits() {
    let f = start("exit-unread", "exec yes", &pids_limit());
    drop(f.reports);
    let mut o = opts();
    o.timeout = Some(Duration::from_millis(500));
    let (_h, mut rx, exited) = supervise(f.spawned, o);
    let e = tokio::time::timeout(Duration::from_secs(5), exited)
        .await
        .expect("the exit came while the output was not taken")
        .expect("an exit");
    assert!(e.timed_out, "{e:?}");
    let c = collect(&mut rx).await;
    assert_eq!(c.exit.as_ref(), Some(&e));
    assert_eq!(c.stdout.len() as u64, e.output_bytes);
    assert!(c.stdout.starts_with(b"y\ny\n"));
}

/// A command that ended on its own just as its timeout fired: the init had
/// reported its exit (here it lingers, so the timeout's SIGKILL does reach
/// it), and that exit is what is reported, not a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_reported_before_the_timeout_is_the_exit() {
    let mut f = start("exit-vs-timeout", "echo ready; sleep 1000", &pids_limit());
    write_exited(&mut f.reports, 4, 100);
    drop(f.reports);
    let mut o = opts();
    o.timeout = Some(Duration::from_millis(500));
    let (_h, mut rx, _) = supervise(f.spawned, o);
    let e = collect(&mut rx).await.exit.expect("exit");
    assert_eq!(e.code, Some(4), "{e:?}");
    assert!(
        !e.timed_out && e.signal.is_none() && e.reason.is_none(),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_is_forwarded() {
    let f = start(
        "sigint-fwd",
        "trap 'echo got-int; exit 130' INT; echo ready; while :; do sleep 0.05; done",
        &pids_limit(),
    );
    drop(f.reports);
    let (h, mut rx, _) = supervise(f.spawned, opts());
    wait_stdout(&mut rx, "ready").await;
    h.send(Control::Signal(libc::SIGINT)).await.unwrap();
    let c = collect(&mut rx).await;
    let e = c.exit.expect("exit");
    assert_eq!(String::from_utf8_lossy(&c.stdout), "got-int\n");
    assert_eq!(e.code, Some(130), "{e:?}");
    assert!(e.reason.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ignored_then_sigkill_after_grace() {
    let f = start(
        "sigint-grace",
        "trap '' INT; echo ready; sleep 1000",
        &pids_limit(),
    );
    drop(f.reports);
    let mut o = opts();
    o.grace = Duration::from_millis(700);
    let (h, mut rx, _) = supervise(f.spawned, o);
    wait_stdout(&mut rx, "ready").await;
    let sent = Instant::now();
    h.send(Control::Signal(libc::SIGINT)).await.unwrap();
    let c = collect(&mut rx).await;
    let took = sent.elapsed();
    let e = c.exit.expect("exit");
    assert_eq!(e.signal, Some(libc::SIGKILL), "{e:?}");
    assert!(!e.timed_out);
    assert!(e.reason.as_deref().unwrap_or("").contains("SIGINT"));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_control_ends_it_with_reason() {
    let f = start("kill", "echo ready; sleep 1000", &pids_limit());
    drop(f.reports);
    let (h, mut rx, _) = supervise(f.spawned, opts());
    wait_stdout(&mut rx, "ready").await;
    h.send(Control::Kill("cancelled by test".into()))
        .await
        .unwrap();
    let e = collect(&mut rx).await.exit.expect("exit");
    assert_eq!(e.signal, Some(libc::SIGKILL));
    assert_eq!(e.reason.as_deref(), Some("cancelled by test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_overtakes_stdin_the_command_does_not_read() {
    let f = start("stuck", "echo ready; sleep 1000", &pids_limit());
    drop(f.reports);
    let (h, mut rx, _) = supervise(f.spawned, opts());
    wait_stdout(&mut rx, "ready").await;
    // Fill the pipe and the supervisor's stdin buffer, then keep a sender blocked.
    let chunk = vec![b'x'; 64 * 1024];
    let filler = h.clone();
    let stuffing = tokio::spawn(async move {
        // More than the pipe, the buffer and the queue together hold.
        for _ in 0..256 {
            if filler.send(Control::Stdin(chunk.clone())).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stuffing.is_finished(), "stdin should be backed up");
    let asked = Instant::now();
    h.send(Control::Kill("cancelled with stdin full".into()))
        .await
        .unwrap();
    let e = collect(&mut rx).await.exit.expect("exit");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "kill waited for stdin"
    );
    assert_eq!(e.reason.as_deref(), Some("cancelled with stdin full"));
    stuffing.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills() {
    let f = start("drop", "sleep 1000 & echo ready; wait", &pids_limit());
    let id = f.id.clone();
    drop(f.reports);
    let (h, mut rx, _): (Handle, _, _) = supervise(f.spawned, opts());
    wait_stdout(&mut rx, "ready").await;
    let pids = cgroup_pids(&id);
    assert!(pids.len() >= 2, "{pids:?}");
    let dropped = Instant::now();
    drop(h);
    let e = collect(&mut rx).await.exit.expect("exit");
    assert!(dropped.elapsed() < Duration::from_secs(5));
    assert_eq!(e.signal, Some(libc::SIGKILL));
    assert_eq!(e.reason.as_deref(), Some("client gone"));
    assert!(all_gone(&pids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kills_a_balloon() {
    let limits = CgroupLimits {
        memory_bytes: Some(64 * MIB),
        pids: Some(64),
        user: None,
    };
    let f = start(
        "balloon",
        "exec /usr/bin/python3 -c \"a = b'x' * (512 << 20); print(len(a))\"",
        &limits,
    );
    let id = f.id.clone();
    assert_eq!(
        std::fs::read_to_string(memory_dir(&id).join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (64 * MIB).to_string()
    );
    drop(f.reports);
    let (_h, mut rx, _) = supervise(f.spawned, opts());
    let c = collect(&mut rx).await;
    let e = c.exit.expect("exit");
    assert!(e.oom_killed, "{e:?}");
    assert_eq!(e.signal, Some(libc::SIGKILL));
    assert!(c.stdout.is_empty(), "the balloon never completed");
    let peak = e.memory_peak_bytes.expect("peak reported");
    assert!(peak > 32 * MIB && peak <= 64 * MIB, "peak {peak}");
    assert!(removed_soon(&memory_dir(&id)), "memory cgroup removed");
    assert!(removed_soon(&pids_dir(&id)), "pids cgroup removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_stops_a_fork_bomb() {
    let max = 32;
    let limits = CgroupLimits {
        memory_bytes: Some(256 * MIB),
        pids: Some(max),
        user: None,
    };
    let f = start(
        "forkbomb",
        "f() { while :; do f & done; }; f & exec sleep 1000",
        &limits,
    );
    let id = f.id.clone();
    drop(f.reports);
    let mut o = opts();
    o.timeout = Some(Duration::from_secs(3));
    let (_h, mut rx, _) = supervise(f.spawned, o);
    let sample = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut most = 0;
        let mut host_ok = true;
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            let pids = cgroup_pids(&id);
            // Tasks charged, zombies included (the bomb never reaps).
            let current = std::fs::read_to_string(pids_dir(&id).join("pids.current"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            most = most.max(current);
            seen.extend(pids);
            let t = Instant::now();
            host_ok &= std::process::Command::new("/bin/true")
                .status()
                .is_ok_and(|s| s.success())
                && t.elapsed() < Duration::from_secs(1);
            std::thread::sleep(Duration::from_millis(50));
        }
        seen.sort_unstable();
        seen.dedup();
        (seen, most, host_ok)
    });
    let c = collect(&mut rx).await;
    let (seen, most, host_ok) = sample.await.unwrap();
    let e = c.exit.expect("exit");
    assert!(e.timed_out, "{e:?}");
    assert!(host_ok, "host could not fork quickly during the bomb");
    assert!(most <= max, "{most} tasks in the cgroup");
    assert_eq!(most, max, "the bomb reached the limit");
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(err.contains("fork"), "fork failures reported: {err}");
    assert!(all_gone(&seen), "bomb processes survived");
    assert!(removed_soon(&pids_dir(&f.id)), "cgroup removed");
}

#[test]
fn create_applies_limits_and_drop_removes() {
    // The limits land in the controllers' files; drop removes the directories.
    let id = unique_id("create");
    let cg = Cgroup::create(
        &id,
        &CgroupLimits {
            memory_bytes: Some(32 * MIB),
            pids: Some(10),
            user: None,
        },
    )
    .expect("create");
    let pids_max = std::fs::read_to_string(pids_dir(&id).join("pids.max")).unwrap();
    assert_eq!(pids_max.trim(), "10");
    let memsw = memory_dir(&id).join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(
            std::fs::read_to_string(memsw).unwrap().trim(),
            (32 * MIB).to_string()
        );
    }
    drop(cg);
    assert!(!pids_dir(&id).exists() && !memory_dir(&id).exists());
}
