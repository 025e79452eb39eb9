//! Privileges, system calls, pids and network of a confined command.

use e2e::*;

const U1: u32 = 1000;

#[test]
fn no_capabilities_and_no_new_privs() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--", "cat", "/proc/self/status"]);
    out.expect_code(0);
    for (k, v) in [
        ("CapInh:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapEff:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
        ("Seccomp:", "2"),
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default();
        assert_eq!(line.split_whitespace().nth(1), Some(v), "{k} {line}");
    }
}

/// Sets a sysctl file for as long as it lives, then puts the old value back.
struct Sysctl(&'static str, String);

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value).unwrap();
        Sysctl(path, old)
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}

#[test]
fn dangerous_syscalls_fail_with_eperm() {
    // The kernel log is then open to anyone but a sandbox.
    let _dmesg = Sysctl::set("/proc/sys/kernel/dmesg_restrict", "0");
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // Each line: name and errno, via raw syscalls from Python's ctypes.
    let code = r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def sc(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    print(name, r, ctypes.get_errno())
sc("ptrace", 101, 0, 0, 0, 0)                 # PTRACE_TRACEME
sc("io_uring_setup", 425, 8, 0)
sc("bpf", 321, 0, 0, 0)
sc("unshare_user", 272, 0x10000000)
sc("unshare_ns", 272, 0x00020000)
sc("userfaultfd", 323, 0)
sc("keyctl", 250, 0, 0, 0, 0, 0)
sc("perf_event_open", 298, 0, 0, -1, -1, 0)
sc("mount", 165, 0, 0, 0, 0, 0)
sc("clone_newns", 56, 0x00020000 | 17, 0, 0, 0, 0)
sc("x32_getpid", 0x40000000 + 39)
sc("tiocsti", 16, 0, 0x5412, 0)
sc("socket_netlink", 41, 16, 3, 0)
sc("socket_packet", 41, 17, 3, 0)
sc("syslog", 103, 10, 0, 0)                   # SYSLOG_ACTION_SIZE_BUFFER
# Linux AIO: contexts come from one host-wide pool (fs.aio-max-nr).
aio = ctypes.c_ulong(0)
ctypes.set_errno(0)
print("io_setup", libc.syscall(206, ctypes.c_long(1), ctypes.byref(aio)), ctypes.get_errno())
sc("io_destroy", 207, 0)
sc("io_getevents", 208, 0, 0, 0, 0, 0)
sc("io_submit", 209, 0, 0, 0)
sc("io_cancel", 210, 0, 0, 0)
sc("io_pgetevents", 333, 0, 0, 0, 0, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); print("socket_inet", 3, 0)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork_ok", os.waitpid(pid, 0)[1] >> 8, 0)
"#;
    let out = py(&d, U1, &ws.path, code);
    out.expect_code(0);
    let get = |name: &str| -> (i64, i64) {
        let l = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing: {}", out.stdout));
        let v: Vec<i64> = l
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0], v[1])
    };
    for name in [
        "ptrace",
        "io_uring_setup",
        "bpf",
        "unshare_user",
        "unshare_ns",
        "userfaultfd",
        "keyctl",
        "perf_event_open",
        "mount",
        "clone_newns",
        "x32_getpid",
        "tiocsti",
        "socket_netlink",
        "socket_packet",
        "syslog",
        "io_setup",
        "io_destroy",
        "io_getevents",
        "io_submit",
        "io_cancel",
        "io_pgetevents",
    ] {
        assert_eq!(
            get(name),
            (-1, libc::EPERM as i64),
            "{name}: {}",
            out.stdout
        );
    }
    assert_eq!(get("fork_ok"), (7, 0));
    // And the command-line tool a person would try.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--", "unshare", "-U", "true"]);
    assert_ne!(out.code, 0);
}

/// A command cannot leave a set-user-ID program behind (in the workspace,
/// any user on the host could run it as the caller), by chmod or by
/// creating a file with that mode, nor create a set-group-ID file; the
/// setgid bit of a directory (`cp -a`, git's shared repositories) and other
/// modes are set as ever.
#[test]
fn setuid_and_setgid_bits_cannot_be_set() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let code = r#"
import os, stat
open("plain", "w").close()
fd = os.open("plain", os.O_RDONLY)
def try_(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, e.errno)
try_("chmod_suid", lambda: os.chmod("plain", 0o4755))
os.mkdir("shared")
try_("chmod_sgid_dir", lambda: os.chmod("shared", 0o2775))
try_("fchmod_suid", lambda: os.fchmod(fd, 0o4755))
try_("open_suid", lambda: os.close(os.open("made", os.O_CREAT | os.O_WRONLY, 0o4755)))
try_("open_sgid", lambda: os.close(os.open("made3", os.O_CREAT | os.O_WRONLY, 0o2755)))
try_("mknod_suid", lambda: os.mknod("node", 0o6755 | stat.S_IFREG))
try_("chmod_plain", lambda: os.chmod("plain", 0o755))
# openat2 keeps its mode in memory no filter reads: callers fall back to openat.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
how = (ctypes.c_uint64 * 3)(os.O_CREAT | os.O_WRONLY, 0o4755, 0)
r = libc.syscall(437, -100, b"made2", ctypes.byref(how), 24)
print("openat2", r, ctypes.get_errno())
"#;
    let out = py(&d, U1, &ws.path, code);
    out.expect_code(0);
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        got,
        [
            "chmod_suid 1",
            "chmod_sgid_dir ok",
            "fchmod_suid 1",
            "open_suid 1",
            "open_sgid 1",
            "mknod_suid 1",
            "chmod_plain ok",
            "openat2 -1 38",
        ],
        "{}",
        out.stderr
    );
    // On the host: no such bit, and nothing made with one.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.join("plain"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    let shared = std::fs::metadata(ws.join("shared"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(shared & 0o7777, 0o2775);
    for made in ["made", "node", "made2", "made3"] {
        assert!(!ws.join(made).exists(), "{made} was made");
    }
}

/// The kernel keeps one pool of ptys for every devpts but the host's: a
/// sandbox may hold only a few of them, its own `--tty` one included, so
/// that it cannot leave none for another user's terminal.
#[test]
fn ptys_are_bounded_per_sandbox_and_its_own_tty_is_one_of_them() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let code = r#"import os
print("tty", os.isatty(0))
fds, err = [], 0
while len(fds) < 100:
    try:
        fds.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        err = e.errno
        break
print("ptys", len(fds), err)
"#;
    // `script` gives the agent itself a terminal, as a person would have.
    let cmd =
        d.agent(U1, &ws.path)
            .command(&["exec", "--tty", "--", "/usr/bin/python3", "-c", code]);
    let out = under_script(&cmd, &ws.path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Within lines: the terminal may echo what `script` sends it (`^@`).
    assert!(text.contains("tty True"), "{text}");
    // 32 in all: the sandbox's terminal and 31 more, then ENOSPC.
    let want = format!("ptys 31 {}\r", libc::ENOSPC);
    assert!(text.contains(&want), "{text}");
}

#[test]
fn host_pids_are_invisible_and_unkillable() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // A host process of the same uid: only the pid namespace protects it.
    let mut victim = std::process::Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let pid = victim.id();
    let out = d.sh(
        U1,
        &ws.path,
        &[],
        &format!("kill -9 {pid}; echo $?; ls /proc/{pid} >/dev/null 2>&1; echo $?"),
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(
        lines.first(),
        Some(&"0"),
        "kill of a host pid succeeded: {}",
        out.stdout
    );
    assert_ne!(lines.get(1), Some(&"0"), "host pid visible: {}", out.stdout);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "host process was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn network_none_is_loopback_only() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"import socket
print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", {port})); print("CONNECTED")
except OSError as e:
    print("refused", e.errno)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); print("loopback ok")
"#
    );
    let out = py(&d, U1, &ws.path, &code);
    out.expect_code(0);
    assert!(out.stdout.starts_with("['lo']"), "{}", out.stdout);
    assert!(out.stdout.contains("refused"), "{}", out.stdout);
    assert!(out.stdout.contains("loopback ok"), "{}", out.stdout);
}
