//! The sandbox's init: pid 1 of the new pid namespace, re-executed from the
//! daemon's binary. Single-threaded, no async runtime.
//!
//! Steps: build the seccomp filter while waiting for a spec; read the spec
//! (fd 3), set the hostname, bring `lo` up, open the
//! caller's paths as the caller, expand deny globs, build the file system
//! view and pivot into it, with `tty` allocate a pty from the sandbox's devpts
//! (its master goes to the daemon with the first report), then fork the
//! command: stdio, setsid (+ controlling tty), drop to the caller, chdir,
//! Landlock, seccomp, wait for the daemon's go (the exec's audit record is
//! written meanwhile), execve. Exec failures come back through a close-on-exec
//! pipe. As pid 1 it reaps every process, forwards signals to the command,
//! and when the command ends reports its exit and exits, which makes the
//! kernel kill the rest of the pid namespace. It exits the same way as soon
//! as the daemon is gone, so that no sandbox outlives its supervision.

use super::{creds, hooks, landlock, mounts, netns, paths, rlimit, seccomp};
use crate::backend::spec::{
    fds, Credentials, FsPlan, InitReport, NetPlan, SandboxSpec, DEFAULT_PATH, GO, MAX_SPEC, SIGNALS,
};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The hidden first argument that makes `sandboxd` run as a sandbox init.
pub const ARG: &str = "__sandbox_init";
/// The niceness of pooled inits until they get their spec.
pub const POOL_NICE: i32 = 19;

/// The init's exit status when the daemon went away mid-exec.
const DAEMON_GONE: i32 = 125;

/// A setup failure before exec.
struct Failure {
    step: String,
    path: Option<String>,
    error: String,
}

impl Failure {
    fn new(step: &str, path: Option<&Path>, error: impl ToString) -> Self {
        Failure {
            step: step.into(),
            path: path.map(|p| p.display().to_string()),
            error: error.to_string(),
        }
    }
    fn report(self) -> InitReport {
        InitReport::SetupFailed {
            step: self.step,
            path: self.path,
            error: self.error,
        }
    }
}

/// A report as one JSON line, its texts bounded.
fn encode(report: &InitReport) -> Option<Vec<u8>> {
    let mut line = serde_json::to_vec(&report.clone().bounded()).ok()?;
    line.push(b'\n');
    Some(line)
}

/// One report, one datagram of the report socket (at most
/// [`crate::backend::spec::MAX_REPORT`] bytes), with `fd` attached
/// (SCM_RIGHTS) when given.
fn send(out: &std::fs::File, report: &InitReport, fd: Option<&OwnedFd>) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let Some(line) = encode(report) else { return };
    let fds: Vec<i32> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: &[ControlMessage] = if fds.is_empty() {
        &[]
    } else {
        &[ControlMessage::ScmRights(&fds)]
    };
    // Nothing more to do if the daemon has gone.
    let _ = sendmsg::<()>(
        out.as_raw_fd(),
        &[std::io::IoSlice::new(&line)],
        cmsgs,
        MsgFlags::empty(),
        None,
    );
}

/// A pty of the sandbox's own devpts instance, so that the slave's name
/// (/dev/pts/N) resolves inside the sandbox.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

/// Allocates a pty from the sandbox's /dev/ptmx (after the pivot) and gives
/// the slave to the caller, as grantpt would.
fn open_pty(creds: &Credentials) -> Result<Pty, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let ptmx = Path::new("/dev/ptmx");
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(ptmx)
        .map_err(|e| Failure::new("open pty master", Some(ptmx), e))?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCGPTPEER returns a new descriptor.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(Failure::new(
                "unlock pty",
                Some(ptmx),
                std::io::Error::last_os_error(),
            ));
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(Failure::new(
                "open pty slave",
                Some(ptmx),
                std::io::Error::last_os_error(),
            ));
        }
        OwnedFd::from_raw_fd(fd)
    };
    nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(creds.uid)),
        Some(nix::unistd::Gid::from_raw(creds.gid)),
    )
    .map_err(|e| Failure::new("give the pty to the caller", None, e))?;
    Ok(Pty { master, slave })
}

/// Runs the init; never returns.
pub fn main() -> ! {
    // The daemon clones the init with every signal blocked; none is here.
    // SAFETY: setting this thread's mask from an empty set.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    // SAFETY: the daemon passes the report socket as fd 4; nothing else owns it.
    let report = unsafe { std::fs::File::from_raw_fd(fds::REPORT) };
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(fds::REPORT, libc::F_SETFD, libc::FD_CLOEXEC) };
    match run(&report) {
        Ok(code) => std::process::exit(code),
        Err(f) => {
            send(&report, &f.report(), None);
            std::process::exit(125)
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Catches (so the kernel delivers them to pid 1) and blocks the signals the
/// main loop waits for; returns the set.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation and sigaction with a valid handler.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        // The signals pid 1 passes on to the command, and its children's ends.
        for s in SIGNALS.iter().map(|&(s, _)| s).chain([libc::SIGCHLD]) {
            libc::sigaddset(&mut set, s);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Reads the length-prefixed spec, leaving the go byte in the pipe.
fn read_spec(spec_in: &mut std::fs::File) -> Result<SandboxSpec, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new("read spec", None, e);
    let mut len = [0u8; 4];
    spec_in.read_exact(&mut len).map_err(|e| fail(&e))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_SPEC {
        return Err(fail(&format!(
            "{len} bytes is over the limit of {MAX_SPEC}"
        )));
    }
    let mut buf = vec![0u8; len];
    spec_in.read_exact(&mut buf).map_err(|e| fail(&e))?;
    serde_json::from_slice(&buf).map_err(|e| Failure::new("parse spec", None, e))
}

fn run(report: &std::fs::File) -> Result<i32, Failure> {
    // Work that needs no spec is done while a pooled init waits for one.
    // Not `lo`: the daemon may be bringing it up at the same moment to bind
    // listeners in the namespace, and must find 127.0.0.1 once `lo` is up.
    let filter = seccomp::Filter::build().map_err(|e| Failure::new("seccomp", None, e))?;
    // SAFETY: fd 3 is the spec pipe handed over by the daemon. It stays open
    // for the command child's go byte, and closes when the command executes.
    let mut spec_in = unsafe { std::fs::File::from_raw_fd(fds::SPEC) };
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(fds::SPEC, libc::F_SETFD, libc::FD_CLOEXEC) };
    let spec = read_spec(&mut spec_in)?;
    // A pooled init was started at POOL_NICE; the sandbox runs at 0.
    // SAFETY: plain syscall on this process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::new("reset priority", None, e));
    }

    // The mount namespace is made now, not at clone time: a pooled init may
    // have waited a while, and the host's mounts must be the current ones.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Failure::new("new mount namespace", None, e))?;
    let sigs = block_signals();
    let host: String = spec.id.chars().take(64).collect();
    nix::unistd::sethostname(&host).map_err(|e| Failure::new("set hostname", None, e))?;
    if matches!(spec.net, NetPlan::Loopback) {
        netns::loopback_up().map_err(|e| Failure::new("bring up loopback", None, e))?;
    }
    let resolved = paths::resolve_as_caller(
        &spec.creds,
        &spec.cwd,
        &spec.fs.write,
        spec.fs.write_host,
        &spec.fs.read,
    )
    .map_err(|e| Failure::new(e.step, Some(&e.path), e.reason))?;
    // As the caller: a walk never looks where the caller cannot. The hooks
    // directories protected repositories' configs name are protected too
    // (only they expanded in a second pass).
    let fs = &spec.fs;
    let denied = paths::as_caller(&spec.creds, || {
        let mut denied = mounts::expand_denies(fs)?;
        let matched = denied.write.iter().map(|(_, p, _)| p.as_path());
        let hook_dirs = hooks::protected_hook_dirs(matched, &fs.home);
        if !hook_dirs.is_empty() {
            let hooks = FsPlan {
                write: fs.write.clone(),
                deny_write: hook_dirs,
                ..FsPlan::default()
            };
            denied.write.extend(mounts::expand_denies(&hooks)?.write);
        }
        Ok::<_, mounts::MountError>(denied)
    })
    .map_err(|e| Failure::new(e.step, Some(&e.path), e.reason))?
    .map_err(|e| Failure::new(&e.step, Some(&e.path), e.error))?;
    mounts::build(&spec.fs, &resolved, &denied)
        .map_err(|e| Failure::new(&e.step, Some(&e.path), e.error))?;
    drop(resolved);
    let pty = spec.tty.then(|| open_pty(&spec.creds)).transpose()?;

    let access = landlock::FsAccess {
        read: spec
            .fs
            .read
            .iter()
            .cloned()
            .chain(["/proc", "/dev"].map(PathBuf::from))
            .collect(),
        write: spec
            .fs
            .write
            .iter()
            .cloned()
            .chain(spec.fs.private_tmp.then(|| PathBuf::from("/tmp")))
            .chain(mounts::WRITABLE_DEVICES.iter().map(PathBuf::from))
            .collect(),
    };
    let exec = Exec::prepare(&spec).map_err(|e| Failure::new("prepare exec", None, e))?;

    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failure::new("pipe", None, e))?;
    // SAFETY: the init is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::new(
            "fork command",
            None,
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(err_r);
        let mut w = std::fs::File::from(err_w);
        let (outcome, code) =
            command_child(&spec, pty.as_ref(), &access, &filter, &exec, &mut spec_in);
        if let Some(line) = encode(&outcome) {
            let _ = w.write_all(&line);
        }
        // SAFETY: leave without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    drop(err_w);
    drop(spec_in);
    // The command owns the stdio now; the daemon sees EOF when it (and its children) close it.
    // SAFETY: closing our copies of 0, 1, 2.
    unsafe {
        libc::close(0);
        libc::close(1);
        libc::close(2);
    }
    let master = pty.map(|p| p.master);
    let mut msg = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut msg);
    let first = if msg.is_empty() {
        InitReport::Started { pid }
    } else {
        match serde_json::from_slice::<InitReport>(msg.trim_ascii_end()) {
            Ok(r) => r,
            Err(e) => InitReport::SetupFailed {
                step: "command child".into(),
                path: None,
                error: e.to_string(),
            },
        }
    };
    let setup_failed = matches!(first, InitReport::SetupFailed { .. });
    send(report, &first, master.as_ref());
    let Some(status) = reap_until(pid, &sigs, report) else {
        return Ok(DAEMON_GONE);
    };
    if !setup_failed {
        send(report, &status, None);
    }
    Ok(match status {
        InitReport::Exited { code: Some(c), .. } => c,
        InitReport::Exited {
            signal: Some(s), ..
        } => 128 + s,
        _ => 1,
    })
}

/// Reaps every child; forwards signals to `cmd`; returns `cmd`'s exit, or
/// `None` when the daemon is gone (its end of `report` closed): the init
/// then exits at once, and with it every process of the sandbox, rather
/// than leave them running unsupervised.
fn reap_until(cmd: i32, sigs: &libc::sigset_t, report: &std::fs::File) -> Option<InitReport> {
    // SAFETY: a signalfd for the signals this thread keeps blocked.
    let sfd = unsafe { libc::signalfd(-1, sigs, libc::SFD_CLOEXEC) };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: report.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        // Without a signalfd (it cannot fail short of running out of
        // descriptors), only the signals are waited for.
        let n = if sfd >= 0 { 2 } else { 0 };
        // SAFETY: `fds` holds `n` valid entries.
        if n > 0 && unsafe { libc::poll(fds.as_mut_ptr(), n, -1) } < 0 {
            continue;
        }
        if fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return None;
        }
        if n > 0 && fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        // SAFETY: sigs is the blocked set; info is an out-parameter. With a
        // signal pending (or no signalfd) this returns without blocking long.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = unsafe { libc::sigwaitinfo(sigs, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(cmd, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: out-parameters.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) };
            if pid <= 0 {
                break;
            }
            if pid == cmd {
                let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
                return Some(InitReport::Exited {
                    code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
                    signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                    user_us: us(ru.ru_utime),
                    system_us: us(ru.ru_stime),
                    max_rss_bytes: ru.ru_maxrss as u64 * 1024,
                });
            }
        }
    }
}

/// Everything execve needs, allocated before the fork.
struct Exec {
    argv: Vec<CString>,
    env: Vec<CString>,
    /// Candidate program paths, in PATH order for a bare name.
    candidates: Vec<CString>,
}

impl Exec {
    fn prepare(spec: &SandboxSpec) -> Result<Exec, String> {
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| "argument or environment contains a NUL byte".to_string())
        };
        let argv0 = spec.argv.first().ok_or("empty command")?;
        let argv = spec
            .argv
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let env = spec
            .env
            .iter()
            .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates = if argv0.contains('/') {
            vec![c(argv0.as_bytes())?]
        } else {
            let path = spec
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str())
                .unwrap_or(DEFAULT_PATH);
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| c(format!("{}/{argv0}", d.trim_end_matches('/')).as_bytes()))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Exec {
            argv,
            env,
            candidates,
        })
    }
}

/// The command child, as root in the new root: returns what to report if it
/// could not exec, and the exit code to use.
fn command_child(
    spec: &SandboxSpec,
    pty: Option<&Pty>,
    access: &landlock::FsAccess,
    filter: &seccomp::Filter,
    exec: &Exec,
    go: &mut std::fs::File,
) -> (InitReport, i32) {
    let fail = |step: &str, path: Option<&Path>, e: &dyn std::fmt::Display| {
        (Failure::new(step, path, e).report(), 125)
    };
    // SAFETY: resetting dispositions and the mask inherited from pid 1.
    unsafe {
        for s in 1..32 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if let Some(p) = pty {
            for fd in 0..3 {
                if libc::dup2(p.slave.as_raw_fd(), fd) < 0 {
                    return fail("pty as stdio", None, &std::io::Error::last_os_error());
                }
            }
        }
        if libc::setsid() < 0 {
            return fail("setsid", None, &std::io::Error::last_os_error());
        }
        if spec.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return fail(
                "set controlling terminal",
                None,
                &std::io::Error::last_os_error(),
            );
        }
    }
    if let Err(e) = rlimit::set(spec.nofile) {
        return fail("set the descriptor limit", None, &e);
    }
    if let Err(e) = creds::drop_to(&spec.creds) {
        return fail("drop privileges", None, &e);
    }
    // After the uid change: set before it, the kernel would refuse the
    // exec itself to a caller already holding more tasks than this.
    if let Some(Err(e)) = spec.nproc.map(rlimit::set_nproc) {
        return fail("set the task limit", None, &e);
    }
    // As the caller: a directory swapped in since the check that the caller
    // may not enter is refused, not entered with root's rights.
    match paths::openat2(
        libc::AT_FDCWD,
        &spec.cwd,
        libc::O_DIRECTORY,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        // SAFETY: fchdir on a directory fd we own.
        Ok(fd) if unsafe { libc::fchdir(fd.as_raw_fd()) } == 0 => {}
        Ok(_) => return fail("chdir", Some(&spec.cwd), &std::io::Error::last_os_error()),
        Err(e) => {
            return fail(
                "chdir (cwd not visible in the sandbox)",
                Some(&spec.cwd),
                &e,
            )
        }
    }
    if let Err(e) = landlock::apply(&spec.landlock, access) {
        return fail("landlock", None, &e);
    }
    if let Err(e) = filter.install() {
        return fail("seccomp", None, &e);
    }
    let mut byte = [0u8; 1];
    match go.read(&mut byte) {
        Ok(1) if byte[0] == GO => {}
        Ok(_) => {
            let why = "the daemon did not confirm the start (its audit record was not written)";
            return fail("wait for the daemon's go", None, &why);
        }
        Err(e) => return fail("wait for the daemon's go", None, &e),
    }
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = exec.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut denied: Option<std::io::Error> = None;
    let not_found = || std::io::Error::from_raw_os_error(libc::ENOENT);
    let mut last = not_found();
    let searched = !spec.argv[0].contains('/');
    for prog in &exec.candidates {
        // SAFETY: NUL-terminated arrays of valid C strings.
        unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = std::io::Error::last_os_error();
        // Searching PATH, a directory the caller may not search hides the
        // name (not found there, as a shell says), while a file that is
        // there but may not be executed is found and denied.
        let hidden = || {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(prog.as_bytes()));
            searched && std::fs::metadata(path).is_err()
        };
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => last = e,
            Some(libc::EACCES) if hidden() => last = not_found(),
            Some(libc::EACCES) => denied = Some(e),
            _ => {
                last = e;
                break;
            }
        }
    }
    let e = denied.unwrap_or(last);
    let code = if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
        127
    } else {
        126
    };
    let error = format!("{}: {e}", spec.argv[0]);
    // Said on the command's stderr too, as a shell would.
    let _ = std::io::stderr().write_all(format!("sandbox: {error}\n").as_bytes());
    (InitReport::ExecFailed { code, error }, code)
}
