//! `agent attach`: the owner of a running sandbox (or an admin-group member)
//! watches its output from the moment of attaching, on the right streams, and
//! exits with its status; anyone else is refused, sees nothing, and the
//! refusal is audited; an attacher that stops reading or vanishes does not
//! slow the sandbox or its owner's exec.

use e2e::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const U1: u32 = 1000;
const U2: u32 = 1001;
const ADMIN_GID: u32 = 4343;

/// A process whose stdout and stderr are collected as they come.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The threads collecting them, joined once the process has exited.
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut r: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&buf);
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, reader)
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        let (stdout, out) = collect(child.stdout.take().unwrap());
        let (stderr, err) = collect(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            readers: vec![out, err],
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stdout contains `needle`.
    fn shows(&self, needle: &str) -> bool {
        eventually(Duration::from_secs(20), || self.stdout().contains(needle))
    }

    /// The exit code, waiting at most `secs`; once there, all the process
    /// wrote has been collected.
    fn code(&mut self, secs: u64) -> Option<i32> {
        let mut code = None;
        eventually(Duration::from_secs(secs), || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        if code.is_some() {
            for reader in self.readers.drain(..) {
                reader.join().expect("a reader thread");
            }
        }
        code
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints `first` once, then a counter to stdout and to stderr until the
/// file `go` has content; then prints that content and exits 3.
const TICKER: &str = "echo first; i=0; while [ ! -s go ]; do i=$((i+1)); echo tick-$i; \
                      echo warn-$i >&2; sleep 0.05; done; cat go; echo last-err >&2; exit 3";

/// uid 1000's ticker running in `ws`, its owner's exec, and its id.
fn ticker(d: &Daemon, ws: &Dir) -> (Running, String) {
    let owner = Running::spawn(
        d.agent(U1, &ws.path)
            .command(&["exec", "--", "/bin/sh", "-c", TICKER]),
    );
    assert!(owner.shows("tick-1"), "{}", owner.stderr());
    let id = d.sandbox_id(U1, &ws.path, "tick-");
    (owner, id)
}

#[test]
fn the_owner_sees_later_output_on_the_right_streams_and_the_exit_status() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let (mut owner, id) = ticker(&d, &ws);
    let mut attacher = Running::spawn(d.agent(U1, &ws.path).command(&["attach", &id]));
    assert!(attacher.shows("tick-"), "{}", attacher.stderr());
    ws.write("go", "after-attach\n", U1);
    assert_eq!(attacher.code(30), Some(3), "{}", attacher.stderr());
    assert_eq!(owner.code(30), Some(3), "{}", owner.stderr());
    let (out, err) = (attacher.stdout(), attacher.stderr());
    // From the moment of attaching: later output, not what came before.
    assert!(out.contains("after-attach"), "{out}");
    assert!(!out.contains("first"), "{out}");
    // Each stream on its own side.
    assert!(err.contains("warn-") && err.contains("last-err"), "{err}");
    assert!(
        !out.contains("warn-") && !err.contains("tick-"),
        "{out}\n{err}"
    );
    // Read-only: the owner's output is whole.
    assert!(owner.stdout().contains("first") && owner.stdout().contains("after-attach"));
    let records = d.audit(U1, &[], &ws.path);
    assert!(
        records.iter().any(|r| r["kind"] == "attach"
            && r["id"] == id.as_str()
            && r["owner"] == U1
            && r["decision"] == "allow"),
        "{records:?}"
    );
}

#[test]
fn another_user_is_refused_sees_nothing_and_the_refusal_is_audited() {
    let d = Daemon::builder()
        .config(&format!("admin_group = \"{ADMIN_GID}\""))
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    let (mut owner, id) = ticker(&d, &ws1);
    let out = d.agent(U2, &ws2.path).run(&["attach", &id]);
    assert_eq!(out.code, 125, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("another user") && out.stderr.contains(&id),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("warn-"), "{}", out.stderr);
    let records = d.audit(U2, &[], &ws2.path);
    assert!(
        records.iter().any(|r| r["kind"] == "refusal"
            && r["request"] == "attach"
            && r["id"] == id.as_str()
            && r["rule"] == "owner"),
        "{records:?}"
    );
    // The sandbox carried on untouched.
    assert!(owner.child.try_wait().unwrap().is_none());
    ws1.write("go", "done\n", U1);
    assert_eq!(owner.code(30), Some(3), "{}", owner.stderr());
}

#[test]
fn an_admin_group_member_may_attach_to_another_users_sandbox() {
    let d = Daemon::builder()
        .config(&format!("admin_group = \"{ADMIN_GID}\""))
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    let (mut owner, id) = ticker(&d, &ws1);
    let admin = [U2, ADMIN_GID];
    let mut attacher = Running::spawn(
        d.agent(U2, &ws2.path)
            .groups(&admin)
            .command(&["attach", &id]),
    );
    assert!(attacher.shows("tick-"), "{}", attacher.stderr());
    ws1.write("go", "seen-by-admin\n", U1);
    assert_eq!(attacher.code(30), Some(3), "{}", attacher.stderr());
    assert!(attacher.stdout().contains("seen-by-admin"));
    assert_eq!(owner.code(30), Some(3));
    let records = d.audit(U2, &admin, &ws2.path);
    assert!(
        records.iter().any(|r| r["kind"] == "attach"
            && r["id"] == id.as_str()
            && r["uid"] == U2
            && r["owner"] == U1),
        "{records:?}"
    );
}

#[test]
fn a_stopped_or_vanished_attacher_does_not_stall_the_owners_exec() {
    const LINES: u32 = 3_000_000;
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // About 22 MiB once `go` appears: more than the stopped attacher's
    // socket, HTTP/2 window and ring can hold.
    let script = format!(
        "echo ready; while [ ! -e go ]; do sleep 0.05; echo waiting-flood; done; seq 1 {LINES}"
    );
    let mut owner = Running::spawn(
        d.agent(U1, &ws.path)
            .command(&["exec", "--", "/bin/sh", "-c", &script]),
    );
    assert!(owner.shows("ready"), "{}", owner.stderr());
    let id = d.sandbox_id(U1, &ws.path, "waiting-flood");
    let stopped = Running::spawn(d.agent(U1, &ws.path).command(&["attach", &id]));
    let vanished = Running::spawn(d.agent(U1, &ws.path).command(&["attach", &id]));
    assert!(stopped.shows("waiting-flood") && vanished.shows("waiting-flood"));
    let pid = nix::unistd::Pid::from_raw(stopped.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    drop(vanished);
    ws.write("go", "", U1);
    // The owner's exec ends, its output whole, while one attacher is stopped.
    assert_eq!(owner.code(60), Some(0), "{}", owner.stderr());
    let expected: String = (1..=LINES).map(|n| format!("{n}\n")).collect();
    let out = owner.stdout();
    let flood = &out[out.find("\n1\n").expect("no flood") + 1..];
    assert!(
        flood == expected,
        "owner's output: {} bytes, expected {}",
        flood.len(),
        expected.len()
    );
    // Resumed, the stopped attacher learns what it missed, then the exit.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let mut stopped = stopped;
    assert_eq!(stopped.code(30), Some(0), "{}", stopped.stderr());
    let err = stopped.stderr();
    assert!(err.contains("attach-missed"), "{err}");
    assert!(stopped.stdout().len() < out.len());
}
