//! The confinement steps applied to a command before exec, run for real as
//! root: each probe runs in a forked child that applies the step(s) and then
//! tries what must be refused (and, as a control, what must still work).
//! Evidence comes from the kernel's answers and from the host side.

#![cfg(target_os = "linux")]

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use sandboxd::backend::linux::landlock::{self, Feature, FsAccess};
use sandboxd::backend::linux::{creds, seccomp};
use sandboxd::backend::spec::{Credentials, LandlockPlan};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

type Probe = Result<(), String>;

fn user() -> Credentials {
    Credentials {
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 2345],
    }
}

/// Runs `probe` in a forked child and returns its verdict (the child's
/// error message travels back through a pipe).
fn in_child(probe: impl FnOnce() -> Probe) -> Probe {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    // SAFETY: the child only runs the probe and leaves with _exit.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            drop(rd);
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe))
                .unwrap_or_else(|_| Err("probe panicked".into()));
            let code = match verdict {
                Ok(()) => 0,
                Err(msg) => {
                    let mut w = std::fs::File::from(wr);
                    let _ = w.write_all(msg.as_bytes());
                    1
                }
            };
            // SAFETY: leaves the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            std::fs::File::from(rd)
                .read_to_string(&mut msg)
                .map_err(|e| e.to_string())?;
            match waitpid(child, None).map_err(|e| e.to_string())? {
                WaitStatus::Exited(_, 0) => Ok(()),
                other => Err(format!("child {other:?}: {msg}")),
            }
        }
    }
}

fn confined(probe: impl FnOnce() -> Probe) {
    if let Err(e) = in_child(probe) {
        panic!("{e}");
    }
}

/// Checks that a raw call failed with `errno`.
fn refused(what: &str, rc: i64, errno: i32) -> Probe {
    let got = std::io::Error::last_os_error();
    if rc == -1 && got.raw_os_error() == Some(errno) {
        Ok(())
    } else {
        Err(format!(
            "{what}: wanted {}, got rc {rc} ({got})",
            std::io::Error::from_raw_os_error(errno)
        ))
    }
}

fn succeeded(what: &str, rc: i64) -> Probe {
    if rc >= 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}

fn drop_creds() -> Probe {
    creds::drop_to(&user()).map_err(|e| e.to_string())
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn drop_to_leaves_no_capabilities_and_the_callers_ids() {
    confined(|| {
        drop_creds()?;
        // Through an exec, to show nothing comes back with a new program.
        let out = Command::new("/bin/cat")
            .arg("/proc/self/status")
            .output()
            .map_err(|e| e.to_string())?;
        let status = String::from_utf8_lossy(&out.stdout);
        for (key, want) in [
            ("CapEff:", "0000000000000000"),
            ("CapPrm:", "0000000000000000"),
            ("CapInh:", "0000000000000000"),
            ("CapBnd:", "0000000000000000"),
            ("CapAmb:", "0000000000000000"),
            ("NoNewPrivs:", "1"),
            ("Uid:", "1000\t1000\t1000\t1000"),
            ("Gid:", "1000\t1000\t1000\t1000"),
            ("Groups:", "1000 2345"),
        ] {
            let got = status_field(&status, key);
            if got != want {
                return Err(format!("{key} is {got:?}, wanted {want:?}"));
            }
        }
        Ok(())
    });
}

/// A scratch tree under /srv that uid 1000 may traverse, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let root = PathBuf::from(format!("/srv/confine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["", "ro", "rw", "out"] {
            let dir = root.join(d);
            std::fs::create_dir_all(&dir).unwrap();
            chmod(&dir, 0o777);
        }
        std::fs::write(root.join("ro/data"), "readable").unwrap();
        std::fs::write(root.join("out/secret"), "host secret").unwrap();
        chmod(&root.join("ro/data"), 0o666);
        chmod(&root.join("out/secret"), 0o666);
        Tree(root)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// System roots for exec plus the tree's `ro` (read) and `rw` (write).
    fn access(&self) -> FsAccess {
        let mut read: Vec<PathBuf> = ["/bin", "/usr", "/lib", "/lib64", "/etc", "/proc"]
            .iter()
            .map(PathBuf::from)
            .collect();
        read.push(self.path("ro"));
        read.push(PathBuf::from("/nonexistent-root-is-skipped"));
        FsAccess {
            read,
            write: vec![self.path("rw"), PathBuf::from("/dev/null")],
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn plan(connect_tcp: Option<Vec<u16>>) -> LandlockPlan {
    LandlockPlan {
        required: true,
        connect_tcp,
    }
}

fn wall(access: &FsAccess, connect_tcp: Option<Vec<u16>>) -> Probe {
    let status = landlock::apply(&plan(connect_tcp), access).map_err(|e| e.to_string())?;
    if status.missing.is_empty() && status.enforced.contains(&Feature::Scopes) {
        Ok(())
    } else {
        Err(format!("landlock not fully applied: {status:?}"))
    }
}

fn denied(what: &str, r: std::io::Result<impl Sized>) -> Probe {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(format!("{what}: wrong error {e}")),
        Ok(_) => Err(format!("{what}: allowed")),
    }
}

#[test]
fn landlock_limits_files_to_the_granted_roots() {
    let tree = Tree::new("fs");
    let access = tree.access();
    confined(|| {
        drop_creds()?;
        // Control: without the wall, uid 1000 may read the outside file.
        std::fs::read(tree.path("out/secret")).map_err(|e| format!("control read: {e}"))?;
        wall(&access, None)?;
        std::fs::write(tree.path("rw/inside"), "ok").map_err(|e| format!("write inside: {e}"))?;
        std::fs::rename(tree.path("rw/inside"), tree.path("rw/moved"))
            .map_err(|e| format!("rename inside: {e}"))?;
        let data =
            std::fs::read_to_string(tree.path("ro/data")).map_err(|e| format!("read root: {e}"))?;
        if data != "readable" {
            return Err(format!("read root gave {data:?}"));
        }
        std::fs::write("/dev/null", "x").map_err(|e| format!("write /dev/null: {e}"))?;
        denied("write outside", std::fs::write(tree.path("out/new"), "x"))?;
        denied("write read root", std::fs::write(tree.path("ro/new"), "x"))?;
        denied("read outside", std::fs::read(tree.path("out/secret")))?;
        // An executed program is bound too, and may run from a read root.
        let sh = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "cat {}/ro/data && ! echo x > {}/out/by-sh",
                tree.0.display(),
                tree.0.display()
            ))
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("exec sh: {e}"))?;
        if !sh.status.success() || sh.stdout != b"readable" {
            return Err(format!("sh probe: {:?} {:?}", sh.status, sh.stdout));
        }
        Ok(())
    });
    assert!(tree.path("rw/moved").exists());
    assert!(!tree.path("out/new").exists());
    assert!(!tree.path("ro/new").exists());
    assert!(!tree.path("out/by-sh").exists());
}

#[test]
fn landlock_scopes_abstract_sockets_of_the_host() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    let name = format!("sandboxd-confine-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = UnixListener::bind_addr(&addr).unwrap();
    let tree = Tree::new("abstract");
    let access = tree.access();
    confined(|| {
        drop_creds()?;
        UnixStream::connect_addr(&addr).map_err(|e| format!("control connect: {e}"))?;
        wall(&access, None)?;
        match UnixStream::connect_addr(&addr) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            other => Err(format!("abstract connect after landlock: {other:?}")),
        }
    });
}

/// A uid-1000 process outside the child's domain.
fn outside_sleeper() -> Child {
    Command::new("/bin/sleep")
        .arg("60")
        .uid(1000)
        .gid(1000)
        .spawn()
        .unwrap()
}

#[test]
fn landlock_scopes_signals_to_the_domain() {
    let mut sleeper = outside_sleeper();
    let pid = sleeper.id() as i32;
    let tree = Tree::new("signal");
    let access = tree.access();
    let verdict = in_child(|| {
        drop_creds()?;
        // SAFETY: plain kill(2).
        succeeded("control SIGCONT", unsafe { libc::kill(pid, libc::SIGCONT) }
            as i64)?;
        wall(&access, None)?;
        // SAFETY: plain kill(2).
        refused(
            "SIGTERM outside",
            unsafe { libc::kill(pid, libc::SIGTERM) } as i64,
            libc::EPERM,
        )?;
        // Its own children are inside the domain.
        let mut own = Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .map_err(|e| e.to_string())?;
        own.kill().map_err(|e| format!("kill own child: {e}"))?;
        own.wait().map_err(|e| e.to_string())?;
        Ok(())
    });
    let alive = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    verdict.unwrap();
    assert!(alive, "the outside process was signalled");
}

#[test]
fn landlock_limits_tcp_to_the_allowed_ports() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (allowed.local_addr().unwrap(), other.local_addr().unwrap());
    let tree = Tree::new("tcp");
    let access = tree.access();
    confined(|| {
        drop_creds()?;
        TcpStream::connect(b).map_err(|e| format!("control connect: {e}"))?;
        wall(&access, Some(vec![a.port()]))?;
        TcpStream::connect(a).map_err(|e| format!("allowed port: {e}"))?;
        denied("other port", TcpStream::connect(b))?;
        denied("bind", TcpListener::bind("127.0.0.1:0"))?;
        Ok(())
    });
}

#[test]
fn landlock_leaves_tcp_alone_without_a_port_list() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tree = Tree::new("tcpfree");
    let access = tree.access();
    confined(|| {
        drop_creds()?;
        wall(&access, None)?;
        TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        Ok(())
    });
}

#[test]
fn landlock_required_fails_closed_on_older_kernels() {
    let required = plan(Some(vec![443]));
    let err = landlock::decide(5, &plan(None)).unwrap_err().to_string();
    assert_eq!(err, "landlock ABI 6 (scopes) unavailable");
    let err = landlock::decide(3, &required).unwrap_err().to_string();
    assert!(err.starts_with("landlock ABI 4 (TCP ports)"), "{err}");
    assert!(landlock::decide(0, &plan(None)).is_err());

    let best_effort = LandlockPlan {
        required: false,
        connect_tcp: Some(vec![443]),
    };
    let status = landlock::decide(3, &best_effort).unwrap();
    assert_eq!(
        status.missing,
        [Feature::Tcp, Feature::IoctlDev, Feature::Scopes]
    );
    assert_eq!(
        status.enforced,
        [Feature::Fs, Feature::Refer, Feature::Truncate]
    );
    let none = landlock::decide(0, &best_effort).unwrap();
    assert!(none.enforced.is_empty());

    // This kernel has everything: the required plan passes.
    let status = landlock::decide(landlock::kernel_abi(), &required).unwrap();
    assert!(status.missing.is_empty());
}

/// Runs `probe` in a child that keeps root (so the kernel itself would
/// allow the call) but has the filter installed: a refusal is the filter's.
fn filtered_root(probe: impl FnOnce() -> Probe) {
    let filter = seccomp::Filter::build().unwrap();
    confined(|| {
        filter.install().map_err(|e| e.to_string())?;
        probe()
    });
}

#[test]
fn seccomp_refuses_namespaces_and_mounts_even_to_root() {
    filtered_root(|| {
        // SAFETY: raw system calls with valid or null arguments.
        unsafe {
            refused(
                "unshare(NEWUSER)",
                libc::unshare(libc::CLONE_NEWUSER) as i64,
                libc::EPERM,
            )?;
            refused(
                "unshare(NEWNS)",
                libc::unshare(libc::CLONE_NEWNS) as i64,
                libc::EPERM,
            )?;
            let ns = std::fs::File::open("/proc/self/ns/net").map_err(|e| e.to_string())?;
            refused("setns", libc::setns(ns.as_raw_fd(), 0) as i64, libc::EPERM)?;
            refused(
                "mount",
                libc::mount(
                    c"none".as_ptr(),
                    c"/nonexistent-mount-target".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) as i64,
                libc::EPERM,
            )?;
            refused(
                "umount2",
                libc::umount2(c"/nonexistent-mount-target".as_ptr(), libc::MNT_DETACH) as i64,
                libc::EPERM,
            )?;
            refused(
                "fsopen",
                libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0),
                libc::EPERM,
            )?;
            refused(
                "open_tree",
                libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), 0),
                libc::EPERM,
            )?;
            let clone_newns = (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong;
            let rc = libc::syscall(libc::SYS_clone, clone_newns, 0, 0, 0, 0);
            if rc == 0 {
                libc::_exit(0);
            }
            refused("clone(NEWNS)", rc, libc::EPERM)?;
            // clone3: ENOSYS, so the C library falls back to clone.
            let mut args = [0u64; 11];
            args[4] = libc::SIGCHLD as u64; // exit_signal
            let rc = libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize);
            if rc == 0 {
                libc::_exit(0);
            }
            refused("clone3", rc, libc::ENOSYS)?;
        }
        // A plain fork (clone without namespace flags) still works.
        let pid = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("fork+exec: {e}"))?;
        if !pid.success() {
            return Err("fork+exec /bin/true failed".into());
        }
        Ok(())
    });
}

#[test]
fn seccomp_refuses_kernel_attack_surface_even_to_root() {
    filtered_root(|| {
        // SAFETY: raw system calls on zeroed buffers of the right sizes.
        unsafe {
            let mut buf = [0u8; 256];
            let p = buf.as_mut_ptr();
            refused(
                "bpf",
                libc::syscall(libc::SYS_bpf, 0, p, 128u32),
                libc::EPERM,
            )?;
            // perf_event_attr: type PERF_TYPE_SOFTWARE (1), size, config CPU_CLOCK (0).
            let mut attr = [0u32; 32];
            attr[0] = 1;
            attr[1] = 128;
            refused(
                "perf_event_open",
                libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0),
                libc::EPERM,
            )?;
            // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3).
            refused(
                "keyctl",
                libc::syscall(libc::SYS_keyctl, 0, -3, 0),
                libc::EPERM,
            )?;
            refused(
                "add_key",
                libc::syscall(
                    libc::SYS_add_key,
                    c"user".as_ptr(),
                    c"k".as_ptr(),
                    p,
                    1usize,
                    -3,
                ),
                libc::EPERM,
            )?;
            refused(
                "io_uring_setup",
                libc::syscall(libc::SYS_io_uring_setup, 1, p),
                libc::EPERM,
            )?;
            refused(
                "userfaultfd",
                libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC),
                libc::EPERM,
            )?;
            refused(
                "init_module",
                libc::syscall(libc::SYS_init_module, p, 0usize, c"".as_ptr()),
                libc::EPERM,
            )?;
            refused(
                "delete_module",
                libc::syscall(libc::SYS_delete_module, c"nosuchmod".as_ptr(), 0),
                libc::EPERM,
            )?;
            refused(
                "kexec_load",
                libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0xdead_0000u64),
                libc::EPERM,
            )?;
            let local = libc::iovec {
                iov_base: p.cast(),
                iov_len: 8,
            };
            let remote = libc::iovec {
                iov_base: buf.as_ptr().add(64) as *mut libc::c_void,
                iov_len: 8,
            };
            refused(
                "process_vm_readv",
                libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) as i64,
                libc::EPERM,
            )?;
            refused(
                "ptrace(TRACEME)",
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) as i64,
                libc::EPERM,
            )?;
            refused(
                "personality(READ_IMPLIES_EXEC)",
                libc::personality(0x0040_0000) as i64,
                libc::EPERM,
            )?;
            succeeded("personality query", libc::personality(0xffff_ffff) as i64)?;
        }
        Ok(())
    });
}

#[test]
fn seccomp_limits_socket_families() {
    filtered_root(|| {
        // SAFETY: socket(2)/socketpair(2) with valid arguments; fds are closed on drop.
        unsafe {
            refused(
                "socket(AF_NETLINK)",
                libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) as i64,
                libc::EPERM,
            )?;
            refused(
                "socket(AF_PACKET)",
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) as i64,
                libc::EPERM,
            )?;
            let mut pair = [0i32; 2];
            refused(
                "socketpair(AF_NETLINK)",
                libc::socketpair(libc::AF_NETLINK, libc::SOCK_RAW, 0, pair.as_mut_ptr()) as i64,
                libc::EPERM,
            )?;
            for (name, family) in [
                ("AF_UNIX", libc::AF_UNIX),
                ("AF_INET", libc::AF_INET),
                ("AF_INET6", libc::AF_INET6),
            ] {
                let fd = libc::socket(family, libc::SOCK_STREAM, 0);
                succeeded(name, fd as i64)?;
                drop(OwnedFd::from_raw_fd(fd));
            }
            succeeded(
                "socketpair(AF_UNIX)",
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) as i64,
            )?;
            drop(OwnedFd::from_raw_fd(pair[0]));
            drop(OwnedFd::from_raw_fd(pair[1]));
        }
        Ok(())
    });
}

#[test]
fn seccomp_refuses_terminal_injection() {
    filtered_root(|| {
        let pty = nix::pty::openpty(None, None).map_err(|e| e.to_string())?;
        let c = b'x';
        // SAFETY: ioctl(2) on a pty we own with a pointer to one byte.
        unsafe {
            refused(
                "TIOCSTI",
                libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSTI, &c) as i64,
                libc::EPERM,
            )?;
            let mut sub = 0u8;
            refused(
                "TIOCLINUX",
                libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCLINUX, &mut sub) as i64,
                libc::EPERM,
            )?;
            let mut ws: libc::winsize = std::mem::zeroed();
            succeeded(
                "TIOCGWINSZ",
                libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) as i64,
            )?;
        }
        Ok(())
    });
}

/// getpid through the i386 entry point (`int 0x80`, i386 number 20).
#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i64 {
    let ret: i64;
    // SAFETY: getpid takes no arguments and touches no memory; the 32-bit
    // entry may clobber r8-r11.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_refuses_foreign_abis() {
    let filter = seccomp::Filter::build().unwrap();
    confined(|| {
        drop_creds()?;
        // SAFETY: getpid.
        let pid = unsafe { libc::getpid() } as i64;
        if i386_getpid() != pid {
            return Err("control: i386 getpid did not work unfiltered".into());
        }
        filter.install().map_err(|e| e.to_string())?;
        let got = i386_getpid();
        if got != -(libc::EPERM as i64) {
            return Err(format!("i386 getpid returned {got}"));
        }
        // x32 (bit 30 set); this kernel has no x32, so ENOSYS unfiltered.
        // SAFETY: getpid through the x32 number.
        let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        refused("x32 getpid", rc, libc::EPERM)
    });
}

#[test]
fn seccomp_binds_the_unprivileged_command_across_exec() {
    let filter = seccomp::Filter::build().unwrap();
    confined(|| {
        drop_creds()?;
        // Control: unfiltered, uid 1000 may create a user namespace.
        let control = Command::new("/usr/bin/unshare")
            .args(["-U", "true"])
            .status()
            .map_err(|e| e.to_string())?;
        if !control.success() {
            return Err("control: unshare -U failed unfiltered".into());
        }
        let mut own = Command::new("/bin/sleep")
            .arg("60")
            .spawn()
            .map_err(|e| e.to_string())?;
        filter.install().map_err(|e| e.to_string())?;
        // SAFETY: ptrace attach to our own child.
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, own.id() as i32, 0, 0) } as i64;
        let attach = refused("ptrace attach", rc, libc::EPERM);
        let _ = own.kill();
        let _ = own.wait();
        attach?;
        let unshare = Command::new("/usr/bin/unshare")
            .args(["-U", "true"])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if unshare.success() {
            return Err("unshare -U true succeeded under the filter".into());
        }
        let py = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import socket,sys\n\
                 try:\n socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n\
                 except PermissionError: sys.exit(0)\n\
                 sys.exit(1)",
            ])
            .status()
            .map_err(|e| e.to_string())?;
        if !py.success() {
            return Err("netlink socket allowed after exec".into());
        }
        Ok(())
    });
}
