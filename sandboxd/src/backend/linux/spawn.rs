//! Daemon side of starting a sandbox: clone into new namespaces, place the
//! child in its cgroup, hand it the spec, wait until the command has started.
//!
//! The child of `clone3` runs only async-signal-safe code (the daemon is
//! multi-threaded): it moves its descriptors to 0..4 and executes the init.
//! It blocks reading the spec, which is written only once the child is in
//! its cgroup, so nothing of the sandbox runs outside it.

use super::cgroup::{Cgroup, CgroupLimits};
use super::init;
use crate::backend::spec::{InitReport, NetPlan, SandboxSpec};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::unix::pipe;

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
    // A socket, not a pipe, so that the init can pass the pty master back.
    let (rep_r, rep_w) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
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

/// `struct clone_args` of linux/sched.h.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Clones the init into its namespaces and executes `init_exe __sandbox_init`.
/// With `netns`, the child joins that ready-made namespace instead of a new one.
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
    let argv = [exe.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let src: [RawFd; 5] = [
        fds.stdin.as_raw_fd(),
        fds.stdout.as_raw_fd(),
        fds.stderr.as_raw_fd(),
        fds.spec.as_raw_fd(),
        fds.report.as_raw_fd(),
    ];
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_PIDFD;
    let join_net = netns.map_or(-1, |fd| fd.as_raw_fd());
    if matches!(net, NetPlan::Loopback) && join_net < 0 {
        flags |= libc::CLONE_NEWNET;
    }
    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: flags as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: fork-like clone3 (no stack given). The child only makes raw
    // syscalls on data prepared above, then execs or exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            if join_net >= 0 && libc::setns(join_net, libc::CLONE_NEWNET) < 0 {
                libc::_exit(125);
            }
            let mut moved = [0 as RawFd; 5];
            for (i, fd) in src.iter().enumerate() {
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
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_close_range,
                5u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(125);
        }
    }
    if pid < 0 {
        return Err(os("clone sandbox init")(io::Error::last_os_error()));
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor.
    Ok((pid as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
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

/// Receives one byte of the report socket, keeping any descriptors passed with it.
fn recv_byte(fd: &OwnedFd, passed: &mut Vec<OwnedFd>) -> io::Result<Option<u8>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut b = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (n, truncated) = {
        let mut iov = [io::IoSliceMut::new(&mut b)];
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
        (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC))
    };
    if truncated {
        return Err(io::Error::other(
            "the init passed more descriptors than expected",
        ));
    }
    Ok((n == 1).then_some(b[0]))
}

/// Reads one newline-terminated report, byte by byte so nothing after it is
/// consumed; also returns the descriptors passed with it.
async fn read_report(rx: &AsyncFd<OwnedFd>) -> io::Result<(Option<InitReport>, Vec<OwnedFd>)> {
    let mut line = Vec::with_capacity(128);
    let mut passed = Vec::new();
    loop {
        let mut guard = rx.readable().await?;
        let b = match guard.try_io(|inner| recv_byte(inner.get_ref(), &mut passed)) {
            Ok(r) => r?,
            Err(_would_block) => continue,
        };
        match b {
            None => return Ok((None, passed)),
            Some(b'\n') => break,
            Some(b) => line.push(b),
        }
    }
    let report = serde_json::from_slice(&line).map_err(io::Error::other)?;
    Ok((Some(report), passed))
}

/// Starts the sandbox described by `spec` under `limits`, running `init_exe`
/// (this binary) as its init.
pub async fn spawn(
    spec: &SandboxSpec,
    limits: &CgroupLimits,
    init_exe: &Path,
) -> Result<Spawned, SpawnError> {
    let cgroup = Cgroup::create(&spec.id, limits)?;
    let json = serde_json::to_vec(spec).map_err(|e| os("encode spec")(io::Error::other(e)))?;
    let (child, parent) = make_fds(spec.tty)?;
    let netns = match spec.net {
        NetPlan::Loopback => super::netns::POOL.take(),
        NetPlan::Host => None,
    };
    let (pid, pidfd) = clone_init(init_exe, &spec.net, netns.as_ref(), &child)?;
    drop((child, netns));
    let guard = InitGuard { pidfd: Some(pidfd) };
    cgroup.add(pid)?;

    let mut tx = pipe::Sender::from_owned_fd(parent.spec).map_err(os("spec pipe"))?;
    set_nonblocking(&parent.report, true).map_err(os("report socket"))?;
    // SAFETY: the OwnedFd moves into the AsyncFd, so the descriptor stays
    // open and the same while it is registered.
    let rx = unsafe { AsyncFd::register_with_interest(parent.report, Interest::READABLE) }
        .map_err(|e| os("report socket")(e.into()))?;
    // The init reads the spec to EOF before reporting anything.
    tx.write_all(&json).await.map_err(os("send spec"))?;
    drop(tx);
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
    Ok(Spawned {
        pid,
        pidfd: guard.disarm(),
        stdin,
        stdout,
        stderr,
        reports,
        cgroup,
    })
}
