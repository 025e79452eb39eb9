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
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// Write end of the command's stdin (the pty master with `tty`).
    pub stdin: OwnedFd,
    /// Read end of the command's stdout (the pty master with `tty`).
    pub stdout: OwnedFd,
    /// Read end of the command's stderr; `None` with `tty`.
    pub stderr: Option<OwnedFd>,
    /// Read end of the init's report stream (blocking mode), positioned after
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
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    spec: OwnedFd,
    report: OwnedFd,
}

fn make_fds(tty: bool) -> Result<(ChildFds, ParentFds), SpawnError> {
    let (spec_r, spec_w) = pipe_cloexec().map_err(os("spec pipe"))?;
    let (rep_r, rep_w) = pipe_cloexec().map_err(os("report pipe"))?;
    if tty {
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(|e| os("open pty")(e.into()))?;
        nix::pty::grantpt(&master).map_err(|e| os("grantpt")(e.into()))?;
        nix::pty::unlockpt(&master).map_err(|e| os("unlockpt")(e.into()))?;
        let name = nix::pty::ptsname_r(&master).map_err(|e| os("ptsname")(e.into()))?;
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .map_err(os("open pty slave"))?
            .into();
        // SAFETY: PtyMaster owns a valid descriptor; ownership moves to OwnedFd.
        let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
        let master2 = master.try_clone().map_err(os("dup pty master"))?;
        let (s1, s2) = (
            slave.try_clone().map_err(os("dup pty"))?,
            slave.try_clone().map_err(os("dup pty"))?,
        );
        Ok((
            ChildFds {
                stdin: slave,
                stdout: s1,
                stderr: s2,
                spec: spec_r,
                report: rep_w,
            },
            ParentFds {
                stdin: master,
                stdout: master2,
                stderr: None,
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
                stdin: in_w,
                stdout: out_r,
                stderr: Some(err_r),
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

/// Reads one newline-terminated report, byte by byte so nothing after it is consumed.
async fn read_report(rx: &mut pipe::Receiver) -> io::Result<Option<InitReport>> {
    let mut line = Vec::with_capacity(128);
    loop {
        let mut b = [0u8; 1];
        if rx.read(&mut b).await? == 0 {
            return Ok(None);
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(io::Error::other)
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
    let mut rx = pipe::Receiver::from_owned_fd(parent.report).map_err(os("report pipe"))?;
    // The init reads the spec to EOF before reporting anything.
    tx.write_all(&json).await.map_err(os("send spec"))?;
    drop(tx);
    let first = read_report(&mut rx).await.map_err(os("read init report"))?;
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
    let reports = rx.into_blocking_fd().map_err(os("report pipe"))?;
    Ok(Spawned {
        pid,
        pidfd: guard.disarm(),
        stdin: parent.stdin,
        stdout: parent.stdout,
        stderr: parent.stderr,
        reports,
        cgroup,
    })
}
