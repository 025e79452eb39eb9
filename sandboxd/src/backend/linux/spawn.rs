//! Daemon side of starting a sandbox: clone into new namespaces, place the
//! child in its cgroup, hand it the spec, wait until the command has started.
//!
//! The child of the clone shares the daemon's memory until it executes, so
//! it runs only async-signal-safe code with every signal blocked: it moves
//! its descriptors to 0..4 and executes the init.
//! It blocks reading the spec, which is written only once the child is in
//! its cgroup, so nothing of the sandbox runs outside it.
//!
//! Moving a process into a v1 cgroup waits for an RCU grace period (over
//! 10 ms on some kernels), which would dominate an exec. So for loopback
//! sandboxes the daemon keeps a small [`Pool`] of inits started ahead of time:
//! cloned, executed, in their own cgroup (no limits yet) and blocked reading
//! their spec. [`spawn`] takes one, sets the limits on its cgroup, and sends
//! the spec; it falls back to starting an init itself when none is ready.
//! A pooled init that reads EOF instead of a spec (the daemon dropped it or
//! exited) reports a setup failure to nobody and exits.

use super::cgroup::{self, Cgroup, CgroupError, CgroupLimits};
use super::init;
use crate::backend::spec::{InitReport, NetPlan, SandboxSpec, GO, MAX_REPORT, MAX_SPEC};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A sandbox whose command has been executed (or failed to exec: the report
/// stream then carries `ExecFailed`).
#[derive(Debug)]
pub struct Spawned {
    /// Host pid of the sandbox's init (pid 1 inside). Killing it ends every
    /// process of the sandbox.
    pub pid: i32,
    /// pidfd of the init, readable when it exits.
    pub pidfd: OwnedFd,
    /// Write end of the command's stdin (with `tty`, the master of the pty the
    /// init allocated in the sandbox's devpts).
    pub stdin: OwnedFd,
    /// Read end of the command's stdout (the pty master with `tty`).
    pub stdout: OwnedFd,
    /// Read end of the command's stderr; `None` with `tty`.
    pub stderr: Option<OwnedFd>,
    /// The daemon's end of the init's report socket (blocking mode), positioned after
    /// `Started` (or after `ExecFailed`, which an `Exited` with 126/127 follows;
    /// the exec error is then also on the command's stderr, as a shell says it).
    pub reports: OwnedFd,
    pub cgroup: Cgroup,
    /// The sandbox's mount namespace, held (when it could be opened) until
    /// the exit is reported: its teardown (unmounting its tree waits for an
    /// RCU grace period) then happens when this is dropped, not in the
    /// init's exit, which the exit's report waits for.
    pub mount_ns: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The sandbox could not be built; names the step and the path.
    #[error("sandbox setup failed at {step}{}: {error}", path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Setup {
        step: String,
        path: Option<String>,
        error: String,
    },
    /// The gate refused: the command was not started.
    #[error("{0}")]
    Withheld(String),
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    #[error("{context}: {source}")]
    Os {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn os(context: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
    move |source| SpawnError::Os { context, source }
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The init's ends of its descriptors, in fd order 0..4.
struct ChildFds {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    spec: OwnedFd,
    report: OwnedFd,
}

/// The daemon's ends.
struct ParentFds {
    /// stdin, stdout, stderr pipes; `None` with `tty`, where the init sends
    /// the pty master (allocated inside the sandbox) with its first report.
    pipes: Option<(OwnedFd, OwnedFd, OwnedFd)>,
    spec: OwnedFd,
    report: OwnedFd,
}

/// Sets or clears O_NONBLOCK.
fn set_nonblocking(fd: &OwnedFd, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn make_fds(tty: bool) -> Result<(ChildFds, ParentFds), SpawnError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (spec_r, spec_w) = pipe_cloexec().map_err(os("spec pipe"))?;
    // A socket, not a pipe, so that the init can pass the pty master back;
    // one datagram per report, so that each is read with one call.
    let (rep_r, rep_w) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| os("report socket")(e.into()))?;
    if tty {
        // The command gets the sandbox's own pty from the init; the init's
        // stdio is /dev/null.
        let null: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(os("open /dev/null"))?
            .into();
        Ok((
            ChildFds {
                stdin: null.try_clone().map_err(os("dup /dev/null"))?,
                stdout: null.try_clone().map_err(os("dup /dev/null"))?,
                stderr: null,
                spec: spec_r,
                report: rep_w,
            },
            ParentFds {
                pipes: None,
                spec: spec_w,
                report: rep_r,
            },
        ))
    } else {
        let (in_r, in_w) = pipe_cloexec().map_err(os("stdin pipe"))?;
        let (out_r, out_w) = pipe_cloexec().map_err(os("stdout pipe"))?;
        let (err_r, err_w) = pipe_cloexec().map_err(os("stderr pipe"))?;
        Ok((
            ChildFds {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
                spec: spec_r,
                report: rep_w,
            },
            ParentFds {
                pipes: Some((in_w, out_r, err_r)),
                spec: spec_w,
                report: rep_r,
            },
        ))
    }
}

/// What the child of [`clone_init`] needs, prepared by the parent: the child
/// shares the daemon's memory until it executes, so it only reads this.
struct ChildPlan {
    exe: *const libc::c_char,
    argv: [*const libc::c_char; 3],
    envp: [*const libc::c_char; 1],
    /// The init's descriptors, to become 0..4.
    src: [RawFd; 5],
    /// A network namespace to join, or -1.
    join_net: RawFd,
}

/// Stack of the child of [`clone_init`] (a few raw syscalls, then `execve`).
const CHILD_STACK: usize = 64 * 1024;

/// The child of [`clone_init`]: runs on its own stack in the daemon's memory
/// (the cloning thread waits meanwhile), with every signal blocked, so it
/// makes raw syscalls only: no allocation, no lock, no handler can run.
extern "C" fn init_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildPlan the parent keeps alive until this
    // process executes or exits (CLONE_VFORK); only async-signal-safe calls.
    unsafe {
        let plan = &*(arg as *const ChildPlan);
        if plan.join_net >= 0 && libc::setns(plan.join_net, libc::CLONE_NEWNET) < 0 {
            libc::_exit(125);
        }
        let mut moved = [0 as RawFd; 5];
        for (i, fd) in plan.src.iter().enumerate() {
            moved[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 5);
            if moved[i] < 0 {
                libc::_exit(125);
            }
        }
        for (i, fd) in moved.iter().enumerate() {
            if libc::dup2(*fd, i as RawFd) < 0 {
                libc::_exit(125);
            }
        }
        libc::syscall(
            libc::SYS_close_range,
            5u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // The signal mask survives execve: the init unblocks at its start.
        libc::execve(plan.exe, plan.argv.as_ptr(), plan.envp.as_ptr());
        libc::_exit(125)
    }
}

/// Clones the init into its namespaces and executes `init_exe __sandbox_init`.
/// With `netns`, the child joins that ready-made namespace instead of a new one.
///
/// The child shares the daemon's memory until its `execve` (CLONE_VM and
/// CLONE_VFORK, as posix_spawn does): a fork would copy the page tables of
/// a large multi-threaded daemon and hold its memory map locked meanwhile,
/// stalling every other thread (an exec in progress included) for
/// milliseconds, then make each of their writes copy a page until the exec.
fn clone_init(
    init_exe: &Path,
    net: &NetPlan,
    netns: Option<&OwnedFd>,
    fds: &ChildFds,
) -> Result<(i32, OwnedFd), SpawnError> {
    let exe = CString::new(init_exe.as_os_str().as_bytes())
        .map_err(|_| os("init path")(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let arg = CString::new(init::ARG)
        .map_err(|_| os("init arg")(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let join_net = netns.map_or(-1, |fd| fd.as_raw_fd());
    let plan = ChildPlan {
        exe: exe.as_ptr(),
        argv: [exe.as_ptr(), arg.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
        src: [
            fds.stdin.as_raw_fd(),
            fds.stdout.as_raw_fd(),
            fds.stderr.as_raw_fd(),
            fds.spec.as_raw_fd(),
            fds.report.as_raw_fd(),
        ],
        join_net,
    };
    // No CLONE_NEWNS here: the init makes its mount namespace when its spec
    // arrives, so a pooled init sees the host's mounts as they are then.
    let mut flags = libc::CLONE_VM
        | libc::CLONE_VFORK
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_PIDFD
        | libc::SIGCHLD;
    if matches!(net, NetPlan::Loopback) && join_net < 0 {
        flags |= libc::CLONE_NEWNET;
    }
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: one past the end of the allocation, aligned down as the ABI
    // wants; the stack grows down into the vector.
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    let top = ((top as usize) & !15) as *mut libc::c_void;
    let mut pidfd: RawFd = -1;
    // Every signal stays blocked in the child (no daemon handler may run in
    // its shared memory), libc's own included, which its wrappers would
    // leave open: the raw call; the mask is restored here once it has
    // executed.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: the child only reads `plan`, which outlives it (CLONE_VFORK
    // returns once it has executed or exited), and runs on `stack`, which
    // does too; the pidfd goes where parent_tid points (no TLS and no child
    // tid are set: the last two arguments are unused). The masks are the
    // kernel's 64-bit sigsets.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all,
            &mut old,
            8,
        );
        let pid = libc::clone(
            init_child,
            top,
            flags,
            &plan as *const ChildPlan as *mut libc::c_void,
            &mut pidfd as *mut RawFd,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::pid_t>(),
        );
        let err = io::Error::last_os_error();
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old,
            std::ptr::null_mut::<u64>(),
            8,
        );
        if pid < 0 {
            return Err(os("clone sandbox init")(err));
        }
        pid
    };
    drop(stack);
    // SAFETY: CLONE_PIDFD stored a new descriptor.
    Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// Kills and reaps the init unless disarmed (every early return of [`spawn`]).
struct InitGuard {
    pidfd: Option<OwnedFd>,
}

impl InitGuard {
    fn disarm(mut self) -> OwnedFd {
        self.pidfd.take().expect("guard armed")
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if let Some(fd) = self.pidfd.take() {
            // SAFETY: signal and wait on our own child's pidfd.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<u8>(),
                    0,
                );
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PIDFD,
                    fd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED,
                );
            }
        }
    }
}

/// Writes `bytes` into a non-blocking pipe. Written directly while the pipe
/// has room (the usual case: an empty pipe and a small spec), so nothing
/// waits for the reactor; only a full pipe does.
async fn write_pipe(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    let mut waiter: Option<AsyncFd<OwnedFd>> = None;
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let w = match waiter.as_ref() {
                    Some(w) => w,
                    None => {
                        let dup = fd.try_clone()?;
                        // SAFETY: the duplicate moves into the AsyncFd and
                        // stays open while it is registered.
                        let w = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }
                            .map_err(io::Error::from)?;
                        waiter.insert(w)
                    }
                };
                w.writable().await?.clear_ready();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives one report (one datagram of the report socket) and the
/// descriptors passed with it; `None` at end of stream.
fn recv_report(fd: &OwnedFd, passed: &mut Vec<OwnedFd>) -> io::Result<Option<Vec<u8>>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; MAX_REPORT];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (n, flags) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these descriptors for us.
                passed.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        (msg.bytes, msg.flags)
    };
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other(
            "the init passed more descriptors than expected",
        ));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::other(format!(
            "the init's report is over the limit of {MAX_REPORT} bytes"
        )));
    }
    buf.truncate(n);
    Ok((n > 0).then_some(buf))
}

/// Reads the init's first report and the descriptors passed with it.
async fn read_report(rx: &AsyncFd<OwnedFd>) -> io::Result<(Option<InitReport>, Vec<OwnedFd>)> {
    let mut passed = Vec::new();
    let line = loop {
        let mut guard = rx.readable().await?;
        match guard.try_io(|inner| recv_report(inner.get_ref(), &mut passed)) {
            Ok(r) => break r?,
            Err(_would_block) => continue,
        }
    };
    let Some(line) = line else {
        return Ok((None, passed));
    };
    let report = serde_json::from_slice(line.trim_ascii_end()).map_err(io::Error::other)?;
    Ok((Some(report), passed))
}

/// Inits kept ready in the pool.
const POOL_SIZE: usize = 3;

/// Every sandbox cgroup is named for the daemon that made it,
/// `<kind>-<daemon pid>-<rest>`, so that a daemon starting removes those of
/// daemons no longer running and never another running daemon's.
fn cgroup_name(kind: &str, rest: &str) -> String {
    format!("{kind}-{}-{rest}", std::process::id())
}

/// The kind of pooled inits' cgroups, `pool-<daemon pid>-<n>`.
const POOL_KIND: &str = "pool";
/// The kind of cgroups made for one exec, `run-<daemon pid>-<exec id>`.
const RUN_KIND: &str = "run";

/// An init started ahead of time (loopback network plan, no tty): executing
/// `init_exe __sandbox_init` in fresh namespaces, in its own cgroup without
/// limits, blocked reading its spec. Dropping it closes the spec pipe, kills
/// and reaps the init, then removes the cgroup (fields drop in this order).
struct Ready {
    parent: ParentFds,
    pid: i32,
    guard: InitGuard,
    cgroup: Cgroup,
}

impl Ready {
    /// Clones and executes an init for the pool and moves it into a new cgroup.
    fn start(init_exe: &Path) -> Result<Self, SpawnError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = cgroup_name(POOL_KIND, &SEQ.fetch_add(1, Ordering::Relaxed).to_string());
        let mut cgroup = Cgroup::create(&name, &CgroupLimits::default())?;
        let (child, parent) = make_fds(false)?;
        let (pid, pidfd) = clone_init(init_exe, &NetPlan::Loopback, None, &child)?;
        drop(child);
        let guard = InitGuard { pidfd: Some(pidfd) };
        cgroup.add(pid)?;
        Ok(Ready {
            parent,
            pid,
            guard,
            cgroup,
        })
    }

    /// Whether the init is still waiting (its pidfd is not yet readable).
    fn alive(&self) -> bool {
        let Some(fd) = self.guard.pidfd.as_ref() else {
            return false;
        };
        let mut pfd = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(
            nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO),
            Ok(0)
        )
    }
}

/// What the pool holds for one init binary.
struct PoolState {
    /// The binary the ready inits execute.
    exe: Option<PathBuf>,
    ready: Vec<Ready>,
    /// Inits being started by refill threads.
    pending: usize,
    /// Whether stale pool cgroups of earlier daemons were looked for.
    swept: bool,
    /// The daemon is going away: nothing is taken or started any more.
    closed: bool,
}

/// Pre-started sandbox inits, refilled by short-lived background threads
/// (one per missing init, so their cgroup moves wait in parallel); an exec
/// never waits for a refill.
struct Pool {
    state: Mutex<PoolState>,
}

/// The daemon's pool of inits.
static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        exe: None,
        ready: Vec::new(),
        pending: 0,
        swept: false,
        closed: false,
    }),
};

/// Starts filling the pool of inits executing `init_exe`, so that the first
/// execs find one ready.
pub fn prefill(init_exe: &Path) {
    drop(POOL.take_for(init_exe, false));
}

/// Ends the pool's inits and removes their cgroups, and starts no more:
/// for a daemon going away (a later one would remove the cgroups, but
/// only once it starts). Blocks until they are gone, those being started
/// included (for at most 5 s).
pub fn close_pool() {
    let ready = {
        let mut st = POOL.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        std::mem::take(&mut st.ready)
    };
    drop(ready);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while POOL.state.lock().unwrap_or_else(|p| p.into_inner()).pending > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Pool {
    /// Takes a live ready init for `init_exe` if `take` and one is there, and
    /// starts refilling. Inits for another binary, or dead ones, are dropped
    /// on a background thread (dropping waits for their cgroups to empty).
    fn take_for(&'static self, init_exe: &Path, take: bool) -> Option<Ready> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed {
            return None;
        }
        let mut discard = Vec::new();
        if st.exe.as_deref() != Some(init_exe) {
            st.exe = Some(init_exe.to_path_buf());
            discard = std::mem::take(&mut st.ready);
        }
        let mut got = None;
        if take {
            while let Some(r) = st.ready.pop() {
                if r.alive() {
                    got = Some(r);
                    break;
                }
                discard.push(r);
            }
        }
        self.refill(&mut st);
        drop(st);
        if !discard.is_empty() {
            drop_off_thread(discard);
        }
        got
    }

    fn refill(&'static self, st: &mut PoolState) {
        let Some(exe) = st.exe.clone() else { return };
        while st.ready.len() + st.pending < POOL_SIZE {
            let sweep = !std::mem::replace(&mut st.swept, true);
            let exe = exe.clone();
            let started = std::thread::Builder::new()
                .name("init-pool".into())
                .spawn(move || self.add_one(&exe, sweep));
            if started.is_err() {
                break;
            }
            st.pending += 1;
        }
    }

    /// Starts one init (run on a refill thread). With `sweep`, first
    /// readies the cgroups ([`sweep_cgroups`]).
    fn add_one(&self, exe: &Path, sweep: bool) {
        // Refills yield the CPU to running execs; the init they start
        // inherits the niceness and resets it when it gets its spec.
        // SAFETY: plain syscall on the calling thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, init::POOL_NICE) };
        if sweep {
            sweep_cgroups();
        }
        let made = Ready::start(exe);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match made {
            Ok(r) if st.exe.as_deref() == Some(exe) && !st.closed => st.ready.push(r),
            // The pool moved on to another binary, or closed, meanwhile:
            // gone before it counts as done (see `close_pool`).
            Ok(r) => {
                drop(st);
                drop(r);
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            }
            // Not retried here: the next take tries again.
            Err(e) => tracing::warn!(error = %e, "could not pre-start a sandbox init"),
        }
        st.pending -= 1;
    }
}

/// Caps the cgroup holding every sandbox's ([`cgroup::cap_parent`]), and
/// removes the empty cgroups ([`cgroup_name`]) of daemons no longer running
/// (one that crashed, or was killed, leaves them behind).
fn sweep_cgroups() {
    match cgroup::cap_parent() {
        Ok(caps) => tracing::debug!(?caps, "capped the sandboxes' cgroup"),
        Err(e) => tracing::warn!(error = %e, "the sandboxes together are not capped"),
    }
    let me = std::process::id().to_string();
    cgroup::remove_stale(|name| {
        let Some((kind, rest)) = name.split_once('-') else {
            return false;
        };
        [POOL_KIND, RUN_KIND].contains(&kind)
            && rest
                .split_once('-')
                .is_some_and(|(pid, _)| pid != me && !Path::new("/proc").join(pid).exists())
    });
}

/// Gives a pooled init `limits`: on its own cgroup, or, where its user's
/// sandboxes share a cap, on a new cgroup in the user's directory that the
/// init is moved into (the pool's is removed on a background thread).
fn limit_pooled(r: Ready, id: &str, limits: &CgroupLimits) -> Result<Ready, CgroupError> {
    if limits.user.is_none() {
        return r.cgroup.set_limits(limits).map(|()| r);
    }
    let moved = Cgroup::create(&cgroup_name(RUN_KIND, id), limits)
        .and_then(|mut c| c.add(r.pid).map(|()| c));
    let cgroup = match moved {
        Ok(c) => c,
        Err(e) => {
            // Dropping the init waits for its cgroup to empty: not here.
            drop_off_thread(r);
            return Err(e);
        }
    };
    let mut r = r;
    drop_off_thread(std::mem::replace(&mut r.cgroup, cgroup));
    Ok(r)
}

/// Drops `t` on a thread of its own: an init or a cgroup going away waits
/// for the kernel to empty the cgroup.
fn drop_off_thread<T: Send + 'static>(t: T) {
    let _ = std::thread::Builder::new()
        .name("init-pool-drop".into())
        .spawn(move || drop(t));
}

/// Starts an init the direct way: cgroup with `limits`, clone (joining a
/// pooled network namespace for loopback when one is ready), cgroup move.
fn start_direct(
    spec: &SandboxSpec,
    limits: &CgroupLimits,
    init_exe: &Path,
) -> Result<(i32, InitGuard, Cgroup, ParentFds, Option<OwnedFd>), SpawnError> {
    let mut cgroup = Cgroup::create(&cgroup_name(RUN_KIND, &spec.id), limits)?;
    let (child, parent) = make_fds(spec.tty)?;
    let netns = match spec.net {
        NetPlan::Loopback => super::netns::POOL.take(),
        NetPlan::Host => None,
    };
    let (pid, pidfd) = clone_init(init_exe, &spec.net, netns.as_ref(), &child)?;
    drop(child);
    let guard = InitGuard { pidfd: Some(pidfd) };
    cgroup.add(pid)?;
    Ok((pid, guard, cgroup, parent, netns))
}

/// Starts the sandbox described by `spec` under `limits`, running `init_exe`
/// (this binary) as its init.
pub async fn spawn(
    spec: &SandboxSpec,
    limits: &CgroupLimits,
    init_exe: &Path,
) -> Result<Spawned, SpawnError> {
    let go = std::future::ready(Ok(()));
    spawn_with(spec, limits, init_exe, |_| Ok(()), go)
        .await
        .map(|(s, _)| s)
}

/// [`spawn`], calling `net_setup` with the sandbox's own network namespace
/// (plan `Loopback`) before the command starts, e.g. to bind listeners there
/// that the command finds ready; its result comes back with the sandbox
/// (`None` with the host's network). A failing `net_setup` fails the spawn.
///
/// The sandbox is built while `gate` is pending; its command executes only
/// once `gate` gives `Ok`. On `Err(reason)` nothing runs, the init is killed
/// and the spawn fails with [`SpawnError::Withheld`].
pub async fn spawn_with<T: Send>(
    spec: &SandboxSpec,
    limits: &CgroupLimits,
    init_exe: &Path,
    net_setup: impl FnOnce(&OwnedFd) -> io::Result<T> + Send,
    gate: impl std::future::Future<Output = Result<(), String>> + Send,
) -> Result<(Spawned, Option<T>), SpawnError> {
    if !cgroup::valid_id(&spec.id) {
        return Err(CgroupError::InvalidId(spec.id.clone()).into());
    }
    let json = serde_json::to_vec(spec).map_err(|e| os("encode spec")(io::Error::other(e)))?;
    let pooled = match spec.net {
        NetPlan::Loopback => POOL.take_for(init_exe, true),
        NetPlan::Host => None,
    };
    let limited = pooled.map(|r| limit_pooled(r, &spec.id, limits));
    let (pid, guard, cgroup, parent, netns) = match limited {
        Some(Ok(r)) => {
            let Ready {
                mut parent,
                pid,
                guard,
                cgroup,
            } = r;
            if spec.tty {
                // The init's stdio stays unused: the command gets the pty.
                parent.pipes = None;
            }
            (pid, guard, cgroup, parent, None)
        }
        Some(Err(e @ CgroupError::NoController(_))) => return Err(e.into()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "limits on a pooled init's cgroup failed; starting a new init");
            start_direct(spec, limits, init_exe)?
        }
        None => start_direct(spec, limits, init_exe)?,
    };

    // A pooled or freshly cloned init made its namespace at clone time; a
    // direct one that joined a pooled namespace may not have joined it yet.
    let net = match spec.net {
        NetPlan::Loopback => {
            let ns = match netns {
                Some(ns) => ns,
                None => {
                    super::netns::open(pid).map_err(os("open the sandbox's network namespace"))?
                }
            };
            Some(net_setup(&ns).map_err(os("set up the sandbox's network"))?)
        }
        NetPlan::Host => None,
    };
    set_nonblocking(&parent.report, true).map_err(os("report socket"))?;
    // SAFETY: the OwnedFd moves into the AsyncFd, so the descriptor stays
    // open and the same while it is registered.
    let rx = unsafe { AsyncFd::register_with_interest(parent.report, Interest::READABLE) }
        .map_err(|e| os("report socket")(e.into()))?;
    // The init builds the sandbox while the gate is pending; its command
    // waits for the go byte (dropping the pipe instead stops it).
    set_nonblocking(&parent.spec, true).map_err(os("spec pipe"))?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&n| n as usize <= MAX_SPEC)
        .ok_or_else(|| {
            os("encode spec")(io::Error::other(format!(
                "{} bytes is over the limit of {MAX_SPEC}",
                json.len()
            )))
        })?;
    write_pipe(&parent.spec, &len.to_le_bytes())
        .await
        .map_err(os("send spec"))?;
    write_pipe(&parent.spec, &json)
        .await
        .map_err(os("send spec"))?;
    gate.await.map_err(SpawnError::Withheld)?;
    // An init whose setup failed has closed its end (EPIPE): its report,
    // read next, says why.
    let _ = write_pipe(&parent.spec, &[GO]).await;
    drop(parent.spec);
    let (first, mut passed) = read_report(&rx).await.map_err(os("read init report"))?;
    match first {
        Some(InitReport::Started { .. }) | Some(InitReport::ExecFailed { .. }) => {}
        Some(InitReport::SetupFailed { step, path, error }) => {
            return Err(SpawnError::Setup { step, path, error })
        }
        Some(other) => {
            return Err(SpawnError::Setup {
                step: "sandbox init".into(),
                path: None,
                error: format!("unexpected report {other:?}"),
            })
        }
        None => {
            return Err(SpawnError::Setup {
                step: "sandbox init".into(),
                path: None,
                error: "the init exited without reporting".into(),
            })
        }
    }
    let (stdin, stdout, stderr) = match parent.pipes {
        Some((i, o, e)) => (i, o, Some(e)),
        None if passed.len() == 1 => {
            let master = passed.remove(0);
            let dup = master.try_clone().map_err(os("dup pty master"))?;
            (master, dup, None)
        }
        None => {
            return Err(SpawnError::Setup {
                step: "receive pty master".into(),
                path: None,
                error: format!("the init passed {} descriptors, not 1", passed.len()),
            })
        }
    };
    let reports = rx.into_inner();
    set_nonblocking(&reports, false).map_err(os("report socket"))?;
    // The init is our unreaped child: the pid is still its own.
    let mount_ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(OwnedFd::from);
    let spawned = Spawned {
        pid,
        pidfd: guard.disarm(),
        stdin,
        stdout,
        stderr,
        reports,
        cgroup,
        mount_ns,
    };
    Ok((spawned, net))
}
