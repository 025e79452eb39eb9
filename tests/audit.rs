//! The audit log end to end: what a real daemon records for execs and
//! refusals, `sandboxd audit verify` on it, an exec refused when its start
//! cannot be recorded (read-only or full volume), and a log that survives
//! the daemon's SIGKILL.

use e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const U1: u32 = 1000;

fn log_path(d: &Daemon) -> PathBuf {
    d.state_dir.join("audit.jsonl")
}

/// `sandboxd audit verify --state-dir DIR`.
fn verify(state_dir: &Path) -> Out {
    let o = Command::new(bin("sandboxd"))
        .args(["audit", "verify", "--state-dir"])
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sandboxd audit verify");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn argv(r: &Value) -> Vec<&str> {
    r["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// What [`start_waiter`] runs: a command that ends once `go` exists in its workspace.
const WAITER: &str = "until [ -e go ]; do sleep 0.05; done";

/// Starts [`WAITER`] through the agent (stderr piped) and waits for its
/// `exec-start` record.
fn start_waiter(d: &Daemon, ws: &Dir) -> std::process::Child {
    let running = d
        .agent(U1, &ws.path)
        .command(&["exec", "--", "/bin/sh", "-c", WAITER])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    assert!(eventually(Duration::from_secs(10), || {
        d.records()
            .iter()
            .any(|r| r["kind"] == "exec-start" && argv(r).last() == Some(&WAITER))
    }));
    running
}

/// The newest records taken off while the daemon was stopped: `audit
/// verify` names them, and sandboxd will not start on that log.
#[test]
fn the_newest_records_taken_off_are_named_and_the_daemon_does_not_start() {
    let mut d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "echo kept").expect_code(0);
    let kept = d.records().len();
    d.sh(U1, &ws.path, &[], "echo taken off").expect_code(0);
    let all = d.records().len();
    d.stop();
    let path = log_path(&d);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..kept].join("\n") + "\n").unwrap();
    let out = verify(&d.state_dir);
    out.expect_code(1);
    let named = format!(
        "{}:{}: seq {}: missing: ",
        path.display(),
        kept + 1,
        kept + 1
    );
    assert!(
        out.stderr.contains(&named),
        "want {named} in {}",
        out.stderr
    );
    let out = d.try_to_start();
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("audit.head") && out.stderr.contains(&format!("names seq {all}")),
        "{}",
        out.stderr
    );
}

#[test]
fn an_exec_leaves_its_start_and_end_and_verify_sees_edits() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "echo audited").expect_code(0);
    let recs = d.records();
    let start = recs
        .iter()
        .position(|r| r["kind"] == "exec-start" && argv(r) == ["/bin/sh", "-c", "echo audited"])
        .unwrap_or_else(|| panic!("no exec-start: {recs:#?}"));
    let s = &recs[start];
    assert_eq!(s["uid"], U1);
    assert_eq!(s["gid"], U1);
    assert_eq!(s["decision"], "allow");
    assert_eq!(s["profile"], "workspace");
    assert_eq!(s["cwd"], ws.path.to_str().unwrap());
    assert!(
        s["policy_hash"].as_str().is_some_and(|h| !h.is_empty()),
        "{s}"
    );
    let end = recs
        .iter()
        .position(|r| r["kind"] == "exec-end" && r["id"] == s["id"])
        .unwrap_or_else(|| panic!("no exec-end: {recs:#?}"));
    assert!(end > start);
    assert_eq!(recs[end]["uid"], U1);
    assert_eq!(recs[end]["code"], 0);
    assert!(
        recs[end]["usage"]["output_bytes"].as_u64() >= Some(8),
        "{}",
        recs[end]
    );

    let out = verify(&d.state_dir);
    out.expect_code(0);
    assert!(out.stdout.contains("intact"), "{}", out.stdout);

    // Pretend it was root's exec.
    let path = log_path(&d);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[start] = lines[start].replace("\"uid\":1000", "\"uid\":0");
    assert_ne!(lines[start], text.lines().nth(start).unwrap());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = verify(&d.state_dir);
    out.expect_code(1);
    let named = format!("{}:{}: seq {}:", path.display(), start + 1, s["seq"]);
    assert!(
        out.stderr.contains(&named),
        "want {named} in {}",
        out.stderr
    );
}

#[test]
fn refusals_are_recorded_with_their_rule() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // Wider than the profile allows.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--timeout", "2h", "--", "true"]);
    out.expect_code(125);
    // A profile that does not exist.
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", "no-such", "--", "true"]);
    out.expect_code(125);
    let recs = d.records();
    let refusals: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "refusal").collect();
    assert_eq!(refusals.len(), 2, "{recs:#?}");
    let wide = refusals[0];
    assert_eq!(wide["uid"], U1);
    assert_eq!(argv(wide), ["true"]);
    assert!(
        wide["rule"].as_str().unwrap_or("").contains("timeout"),
        "{wide}"
    );
    assert!(
        wide["message"].as_str().unwrap_or("").contains("timeout"),
        "{wide}"
    );
    assert_eq!(refusals[1]["rule"], "profile");
    assert_eq!(refusals[1]["profile"], "no-such");
    assert!(!recs.iter().any(|r| r["kind"] == "exec-start"), "{recs:#?}");
    verify(&d.state_dir).expect_code(0);
}

/// A mount over a directory (the daemon's state dir), undone on drop.
struct Over(PathBuf);

impl Over {
    /// Runs `mount ARGS... dir` (or `mount ARGS... SOURCE dir`).
    fn mount(args: &[&str], dir: &Path) {
        let st = Command::new("mount")
            .args(args)
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount {args:?} {} failed", dir.display());
    }

    /// The directory, bound over itself read-only.
    fn read_only(dir: &Path) -> Self {
        Self::mount(&["--bind", &dir.display().to_string()], dir);
        let guard = Over(dir.to_path_buf());
        guard.remount("ro,bind");
        guard
    }

    /// A 1 MiB tmpfs holding a copy of what was there (so a running daemon
    /// goes on with the same log).
    fn small_tmpfs(dir: &Path) -> Self {
        let copy = tempfile::tempdir().expect("tempdir");
        let cp = |from: &Path, to: &Path| {
            let st = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", from.display()))
                .arg(to)
                .status();
            assert!(
                st.expect("cp").success(),
                "cp -a {} {}",
                from.display(),
                to.display()
            );
        };
        cp(dir, copy.path());
        Self::mount(&["-t", "tmpfs", "-o", "size=1m,mode=700", "tmpfs"], dir);
        let guard = Over(dir.to_path_buf());
        cp(copy.path(), dir);
        guard
    }

    /// Remounts it with `options` (e.g. "ro" or "rw").
    fn remount(&self, options: &str) {
        Self::mount(&["-o", &format!("remount,{options}")], &self.0);
    }

    /// Fills its file system to the last byte (a filler file in it).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for Over {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A refused exec costs its caller nothing, so its record keeps at most
/// 16 KiB of argv, with the whole argv's length and hash; an argv no
/// execve(2) would take is refused as such.
#[test]
fn a_refusal_keeps_a_bounded_argv_and_an_argv_past_the_kernels_limits_is_refused() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let word = "x".repeat(100_000);
    let mut args = vec!["exec", "--profile", "no-such-profile", "--", "echo"];
    args.extend(std::iter::repeat_n(word.as_str(), 10));
    let out = d.agent(U1, &ws.path).run(&args);
    assert_ne!(out.code, 0);
    let recs = d.records();
    let r = recs
        .iter()
        .rev()
        .find(|r| r["kind"] == "refusal")
        .expect("a refusal record");
    let written = serde_json::to_string(&r["argv"]).unwrap().len();
    assert!(
        ((16 << 10) - 8..=(16 << 10) + 2).contains(&written),
        "{written}"
    );
    assert_eq!(argv(r)[0], "echo");
    assert_eq!(r["argv_cut"]["bytes"], 4 + 10 * 100_000);
    assert_eq!(r["argv_cut"]["words"], 11);
    assert_eq!(r["argv_cut"]["sha256"].as_str().map(str::len), Some(64));
    // Nor does a long profile name (written twice in the message) or cwd
    // make the record long.
    let name = "p".repeat(100_000);
    let out = d
        .agent(U1, &ws.path)
        .run(&["exec", "--profile", &name, "--", "true"]);
    assert_ne!(out.code, 0);
    let text = std::fs::read_to_string(log_path(&d)).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.contains("\"kind\":\"refusal\""), "{last:.200}");
    assert!(last.len() < 20 << 10, "{}", last.len());
    // A word the kernel would not take (sent through the library: the
    // agent itself could not be started with it): refused, naming it.
    let cwd = ws.path.clone();
    let refused = client_as(U1, &d.socket, |mut client| async move {
        let argv = vec!["echo".to_string(), "y".repeat(200_000)];
        let opts = agent::ExecOptions::new(argv, cwd);
        agent::run_exec(&mut client, &opts, agent::ExecIo::discard())
            .await
            .err()
            .map(|e| e.to_string())
    });
    let refused = refused.expect("refused");
    assert!(refused.contains("argv[1] is 200000 bytes"), "{refused}");
    assert_eq!(verify(&d.state_dir).code, 0);
}

/// Every run writes its start, so a long argv is kept there bounded too
/// (64 KiB, with the whole argv's length and hash), and a session or
/// justification past its limit is refused, naming it.
#[test]
fn an_exec_start_keeps_a_bounded_argv_and_long_session_or_justification_is_refused() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // Control characters take 6 bytes each as written in JSON.
    let word = "\u{1}".repeat(125_000);
    let mut args = vec!["exec", "--", "true"];
    args.extend(std::iter::repeat_n(word.as_str(), 12));
    d.agent(U1, &ws.path).run(&args).expect_code(0);
    let text = std::fs::read_to_string(log_path(&d)).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"kind\":\"exec-start\""))
        .expect("an exec-start record");
    assert!(line.len() < 100_000, "{}", line.len());
    let r: Value = serde_json::from_str(line).unwrap();
    assert_eq!(argv(&r)[0], "true");
    assert_eq!(r["argv_cut"]["bytes"], 4 + 12 * 125_000);
    assert_eq!(r["argv_cut"]["words"], 13);
    let mut sha = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut whole = b"true\0".to_vec();
    for _ in 0..12 {
        whole.extend_from_slice(word.as_bytes());
        whole.push(0);
    }
    std::io::Write::write_all(&mut sha.stdin.take().unwrap(), &whole).unwrap();
    let sum = String::from_utf8(sha.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(r["argv_cut"]["sha256"].as_str(), sum.split(' ').next());
    for (flag, len, field) in [
        ("--session", 257, "session"),
        ("--justification", 4097, "justification"),
    ] {
        let long = "s".repeat(len);
        let out = d
            .agent(U1, &ws.path)
            .run(&["exec", flag, &long, "--", "true"]);
        out.expect_code(125);
        let named = format!("{field} is {len} bytes");
        assert!(out.stderr.contains(&named), "{}", out.stderr);
    }
    assert_eq!(verify(&d.state_dir).code, 0);
}

#[test]
fn an_exec_whose_start_cannot_be_recorded_does_not_run() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let marker = ws.join("ran");
    let before = d.records().len();
    {
        let _ro = Over::read_only(&d.state_dir);
        let out = d.sh(U1, &ws.path, &[], "touch ran");
        out.expect_code(125);
        assert!(out.stderr.contains("audit log"), "{}", out.stderr);
        assert!(
            out.stderr.contains(log_path(&d).to_str().unwrap()),
            "{}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(!marker.exists(), "the command ran unaudited");
    }
    // Its refusal could not be written either: it is counted, and the
    // count written once the log works again (nothing else is).
    assert!(
        eventually(Duration::from_secs(30), || d.records().len() > before),
        "no lost record"
    );
    let recs = d.records();
    assert_eq!(recs.len(), before + 1, "{recs:#?}");
    assert_eq!(recs[before]["kind"], "lost", "{}", recs[before]);
    assert_eq!(recs[before]["kinds"], serde_json::json!({"refusal": 1}));
    // Writable again: execs run and the chain is whole.
    d.sh(U1, &ws.path, &[], "touch ran").expect_code(0);
    assert!(marker.exists());
    verify(&d.state_dir).expect_code(0);
}

/// A full audit volume: execs run while their records still fit in the
/// log's last block; the first whose start record does not fit is refused
/// with an error naming the log and the cause, and its command never runs;
/// nothing half-written is left, and with room again execs run and the
/// chain is whole. An exec already running whose end cannot be recorded
/// (the volume then read-only as well) tells its client so, and its end is
/// written with the next record once the log can be written again.
#[test]
fn an_exec_on_a_full_audit_volume_does_not_run() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "true").expect_code(0);
    let small = Over::small_tmpfs(&d.state_dir);
    let running = start_waiter(&d, &ws);
    let is_waiter = |r: &Value| argv(r).last() == Some(&WAITER);
    let filler = small.fill();
    let mut refused = None;
    for i in 0..32 {
        let out = d.sh(U1, &ws.path, &[], &format!("touch ran{i}"));
        if out.code == 0 {
            assert!(ws.join(&format!("ran{i}")).exists());
            continue;
        }
        out.expect_code(125);
        assert!(
            out.stderr.contains(log_path(&d).to_str().unwrap()),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("No space left"), "{}", out.stderr);
        refused = Some(i);
        break;
    }
    let refused = refused.expect("no exec was refused on the full volume");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !ws.join(&format!("ran{refused}")).exists(),
        "the command ran unaudited"
    );

    small.remount("ro");
    ws.write("go", "", U1);
    let ended = running.wait_with_output().expect("agent");
    assert_eq!(ended.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert!(stderr.contains("could not be recorded"), "{stderr}");
    small.remount("rw");

    std::fs::remove_file(&filler).expect("remove filler");
    verify(&d.state_dir).expect_code(0);
    let recs = d.records();
    for i in 0..refused {
        let ran = format!("touch ran{i}");
        let kinds: Vec<&str> = recs
            .iter()
            .filter(|r| r.to_string().contains(&ran))
            .filter_map(|r| r["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"exec-start"), "{ran}: {kinds:?}");
    }
    d.sh(U1, &ws.path, &[], "touch again").expect_code(0);
    assert!(ws.join("again").exists());
    verify(&d.state_dir).expect_code(0);
    let recs = d.records();
    let start = recs
        .iter()
        .find(|r| r["kind"] == "exec-start" && is_waiter(r))
        .expect("start");
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "exec-end" && r["id"] == start["id"]));
}

/// A follower of the whole log while writes fail on a full volume (a
/// write cut short by the full disk is taken back, and its seqs used
/// again by the next one): it shows every record of the final log once,
/// in order, and nothing else.
#[test]
fn agent_audit_follow_shows_only_the_records_that_stay_when_writes_fail() {
    let d = Daemon::builder()
        .config(&format!("admin_group = \"{ADMINS}\""))
        .start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "true").expect_code(0);
    let small = Over::small_tmpfs(&d.state_dir);
    let (mut follower, rx) = follow(d.agent(U1, &ws.path).groups(&[U1, ADMINS]));
    let filler = small.fill();
    let mut refused = 0;
    for i in 0..64 {
        if d.sh(U1, &ws.path, &[], &format!("echo {i}")).code != 0 {
            refused += 1;
        }
        if refused == 3 {
            break;
        }
    }
    assert_eq!(refused, 3, "execs were not refused on the full volume");
    std::fs::remove_file(&filler).expect("remove filler");
    for i in 0..3 {
        d.sh(U1, &ws.path, &[], &format!("echo again {i}"))
            .expect_code(0);
    }
    let written = d.records();
    let last = written.last().expect("records")["seq"].clone();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.last().map(|r: &Value| &r["seq"]) != Some(&last) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => seen.push(r),
            Err(_) => break,
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(seen, written, "followed records (left) against the log's");
    verify(&d.state_dir).expect_code(0);
}

/// An exec that ends while the log cannot be written (its state dir made
/// read-only): its client hears so, and its end is kept and written once
/// the log can be written again, in the chain, without waiting for
/// another record.
#[test]
fn an_exec_end_that_cannot_be_written_then_is_written_once_the_log_works_again() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let running = start_waiter(&d, &ws);
    let is_waiter = |r: &Value| argv(r).last() == Some(&WAITER);
    let stderr = {
        let _ro = Over::read_only(&d.state_dir);
        ws.write("go", "", U1);
        let ended = running.wait_with_output().expect("agent");
        assert_eq!(ended.status.code(), Some(0));
        // Written a while after it happened.
        std::thread::sleep(Duration::from_millis(1500));
        String::from_utf8_lossy(&ended.stderr).into_owned()
    };
    assert!(stderr.contains("could not be recorded"), "{stderr}");
    let start = d
        .records()
        .into_iter()
        .find(|r| r["kind"] == "exec-start" && is_waiter(r))
        .expect("start");
    // Written as it happened: no `at`.
    assert!(start["at"].is_null(), "{start}");
    let is_end = |r: &Value| r["kind"] == "exec-end" && r["id"] == start["id"];
    // Nothing else happens meanwhile: the daemon writes it on its own.
    assert!(
        eventually(Duration::from_secs(30), || d.records().iter().any(is_end)),
        "the exec's end was not written: {:#?}",
        d.records()
    );
    d.sh(U1, &ws.path, &[], "echo next").expect_code(0);
    let recs = d.records();
    let end = recs
        .iter()
        .position(is_end)
        .unwrap_or_else(|| panic!("the exec's end was lost: {recs:#?}"));
    assert_eq!(recs[end]["code"], 0, "{}", recs[end]);
    // When it happened, not only when it was written (whole seconds apart).
    let (at, time) = (&recs[end]["at"], &recs[end]["time"]);
    let second = |v: &Value| v.as_str().map(|s| s[..19].to_string());
    assert!(
        second(at).is_some() && second(at) < second(time),
        "{}",
        recs[end]
    );
    let next = recs
        .iter()
        .position(|r| r["kind"] == "exec-start" && argv(r).last() == Some(&"echo next"))
        .expect("next start");
    assert!(end < next, "{recs:#?}");
    verify(&d.state_dir).expect_code(0);
    assert!(stderr.contains("the record is kept"), "{stderr}");
}

/// A daemon stopped while the log cannot be written names, in its own
/// log, the records it could not write.
#[test]
fn a_daemon_stopped_with_records_it_cannot_write_names_them() {
    let mut d = Daemon::start();
    let ws = Dir::new(U1);
    let running = start_waiter(&d, &ws);
    let _ro = Over::read_only(&d.state_dir);
    ws.write("go", "", U1);
    let ended = running.wait_with_output().expect("agent");
    assert_eq!(ended.status.code(), Some(0));
    d.stop();
    let log = d.log_text();
    let said = log
        .lines()
        .find(|l| l.contains("stopping with records that could not be written"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(said.contains("queued: exec-end 1"), "{said}");
}

#[test]
fn a_sigkill_mid_exec_loses_no_record_and_leaves_no_sandbox() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let mut agent = d
        .agent(U1, &ws.path)
        .command(&["exec", "--", "sleep", "47.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent");
    let started = eventually(Duration::from_secs(20), || {
        d.records()
            .iter()
            .any(|r| r["kind"] == "exec-start" && argv(r) == ["sleep", "47.5"])
    });
    assert!(started, "no exec-start record");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL sandboxd");
    let _ = agent.wait();
    let out = verify(&d.state_dir);
    out.expect_code(0);
    assert!(d
        .records()
        .iter()
        .any(|r| r["kind"] == "exec-start" && argv(r) == ["sleep", "47.5"]));
    // No sandbox outlives the daemon that supervised it.
    let gone = eventually(Duration::from_secs(2), || {
        pids_matching("sleep 47.5").is_empty()
    });
    for pid in pids_matching("sleep 47.5") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the sandbox outlived its daemon");
}

#[test]
fn the_daemon_refuses_to_start_on_a_damaged_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let log = state.join("audit.jsonl");
    // A whole last line that is no record: damage, not a stop mid-write.
    std::fs::write(&log, "{\"seq\":1,\"kind\":\"exec-st\n").unwrap();
    let mut child = Command::new(bin("sandboxd"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--policy-dir")
        .arg(dir.path().join("policies"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sandboxd");
    let exited = eventually(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    assert!(exited, "sandboxd started on a damaged audit log");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:1", log.display())), "{stderr}");
    assert!(stderr.contains("not a JSON object"), "{stderr}");
}

/// A second daemon on a state dir in use (its own socket) refuses to
/// start, naming the holder; the first goes on serving and its log stays
/// one chain, which `audit verify` checks while it runs.
#[test]
fn a_second_daemon_on_the_same_state_dir_does_not_start() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "echo first").expect_code(0);
    let other = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(bin("sandboxd"))
        .arg("--socket")
        .arg(other.path().join("other.sock"))
        .arg("--state-dir")
        .arg(&d.state_dir)
        .arg("--policy-dir")
        .arg(&d.policy_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second sandboxd");
    let exited = eventually(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "a second sandboxd started on the same state dir");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: another sandboxd holds the audit log",
            d.state_dir.display()
        )),
        "{stderr}"
    );
    assert!(!other.path().join("other.sock").exists());
    d.sh(U1, &ws.path, &[], "echo second").expect_code(0);
    let out = verify(&d.state_dir);
    out.expect_code(0);
    let ends = d
        .records()
        .iter()
        .filter(|r| r["kind"] == "exec-end")
        .count();
    assert_eq!(ends, 2);
}

#[test]
fn a_record_cut_short_by_a_stop_mid_write_is_taken_off_and_said_so() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "echo before").expect_code(0);
    // What a SIGKILL in the middle of a write leaves.
    let log = d.state_dir.join("audit.jsonl");
    let mut d = d;
    let pid = d.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    }));
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":99,\"kind\":\"exec-"));
    d.restart();
    d.sh(U1, &ws.path, &[], "echo after").expect_code(0);
    verify(&d.state_dir).expect_code(0);
    let recovered: Vec<Value> = d
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert_eq!(recovered[0]["dropped_bytes"], 23);
}

#[test]
fn the_daemon_rotates_at_the_configured_size_and_the_chain_holds() {
    let d = Daemon::builder()
        .config("[audit]\nmax_size = \"1k\"")
        .start();
    let ws = Dir::new(U1);
    for i in 0..4 {
        d.sh(U1, &ws.path, &[], &format!("echo {i}")).expect_code(0);
    }
    assert!(
        d.state_dir.join("audit.jsonl.1").exists(),
        "no rotated file"
    );
    assert!(
        d.state_dir.join("audit.jsonl.2").exists(),
        "no second rotated file"
    );
    let out = verify(&d.state_dir);
    out.expect_code(0);
    assert!(out.stdout.contains("8 records"), "{}", out.stdout);
}

const U2: u32 = 1001;
const ADMINS: u32 = 4343;

/// The records `agent audit --json ARGS...` printed for `agent`.
fn audit_as(agent: Agent, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let out = agent.run(&all);
    out.expect_code(0);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The exec-start and exec-end of the exec whose start has `argv`, from `recs`.
fn exec_records<'a>(recs: &'a [Value], want: &[&str]) -> Vec<&'a Value> {
    let Some(start) = recs
        .iter()
        .find(|r| r["kind"] == "exec-start" && argv(r) == want)
    else {
        return Vec::new();
    };
    recs.iter().filter(|r| r["id"] == start["id"]).collect()
}

#[test]
fn agent_audit_shows_a_user_its_own_records_and_an_admin_everyones() {
    let d = Daemon::builder()
        .config(&format!("admin_group = \"{ADMINS}\""))
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    d.sh(U1, &ws1.path, &[], "echo one").expect_code(0);
    d.sh(U2, &ws2.path, &[], "echo two").expect_code(0);
    let one = ["/bin/sh", "-c", "echo one"];
    let two = ["/bin/sh", "-c", "echo two"];

    let mine = audit_as(d.agent(U1, &ws1.path), &[]);
    let kinds: Vec<&Value> = exec_records(&mine, &one)
        .iter()
        .map(|r| &r["kind"])
        .collect();
    assert_eq!(kinds, ["exec-start", "exec-end"], "{mine:#?}");
    assert!(
        exec_records(&mine, &two).is_empty(),
        "uid {U1} sees uid {U2}'s exec: {mine:#?}"
    );
    assert!(mine.iter().all(|r| r["uid"] == U1), "{mine:#?}");
    let theirs = audit_as(d.agent(U2, &ws2.path), &[]);
    assert_eq!(exec_records(&theirs, &two).len(), 2, "{theirs:#?}");
    assert!(exec_records(&theirs, &one).is_empty(), "{theirs:#?}");

    // An admin-group member sees both users' records.
    let admin = audit_as(d.agent(U1, &ws1.path).groups(&[U1, ADMINS]), &[]);
    assert_eq!(exec_records(&admin, &one).len(), 2, "{admin:#?}");
    assert_eq!(exec_records(&admin, &two).len(), 2, "{admin:#?}");

    // The plain listing: one line a record, time kind id and the key fields.
    let out = d.agent(U1, &ws1.path).run(&["audit"]);
    out.expect_code(0);
    let id = exec_records(&mine, &one)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = out
        .stdout
        .lines()
        .find(|l| l.contains(" exec-start ") && l.contains(&id))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        start.contains("uid=1000 profile=workspace decision=allow"),
        "{start}"
    );
    assert!(start.ends_with("-- /bin/sh -c \"echo one\""), "{start}");
    assert!(!out.stdout.contains("echo two"), "{}", out.stdout);
}

#[test]
fn agent_audit_since_filters_on_time() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "echo then").expect_code(0);
    let then = ["/bin/sh", "-c", "echo then"];
    assert_eq!(
        exec_records(&audit_as(d.agent(U1, &ws.path), &["--since", "1h"]), &then).len(),
        2
    );
    let first = audit_as(d.agent(U1, &ws.path), &[]);
    let time = first[0]["time"].as_str().unwrap().to_string();
    assert_eq!(
        exec_records(&audit_as(d.agent(U1, &ws.path), &["--since", &time]), &then).len(),
        2
    );
    assert!(audit_as(d.agent(U1, &ws.path), &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert!(audit_as(
        d.agent(U1, &ws.path),
        &["--since", "2999-01-01T01:00:00+01:00"]
    )
    .is_empty());
    let out = d
        .agent(U1, &ws.path)
        .run(&["audit", "--since", "last tuesday"]);
    out.expect_code(125);
    assert!(out.stderr.contains("last tuesday"), "{}", out.stderr);
}

/// `agent audit --follow --json` run by `agent`, and the records it
/// prints, as they come.
fn follow(agent: Agent) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut follower = agent
        .command(&["audit", "--follow", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent audit --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let record = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(record).is_err() {
                return;
            }
        }
    });
    (follower, rx)
}

#[test]
fn agent_audit_follow_prints_records_of_later_execs_across_rotations() {
    let d = Daemon::builder()
        .config("[audit]\nmax_size = \"1k\"")
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    d.sh(U1, &ws1.path, &[], "echo before").expect_code(0);
    let (mut follower, rx) = follow(d.agent(U1, &ws1.path));
    let mut seen: Vec<Value> = Vec::new();
    let wait_for = |want: &[&str], seen: &mut Vec<Value>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while exec_records(seen, want).len() < 2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => seen.push(r),
                Err(_) => panic!("no exec-start and exec-end of {want:?} from --follow: {seen:#?}"),
            }
        }
    };
    // The records written before it started, then those of execs run meanwhile.
    wait_for(&["/bin/sh", "-c", "echo before"], &mut seen);
    for i in 0..3 {
        d.sh(U2, &ws2.path, &[], &format!("echo other {i}"))
            .expect_code(0);
        let script = format!("echo during {i}");
        d.sh(U1, &ws1.path, &[], &script).expect_code(0);
        wait_for(&["/bin/sh", "-c", &script], &mut seen);
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        d.state_dir.join("audit.jsonl.2").exists(),
        "the log did not rotate"
    );
    assert!(seen.iter().all(|r| r["uid"] == U1), "{seen:#?}");
    // Each record once, in order.
    let seqs: Vec<u64> = seen.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(seen.len(), 8, "{seen:#?}");
}

/// The seqs of every record of the log in `state_dir` (rotated files and the live one).
fn all_seqs(state_dir: &Path) -> Vec<u64> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(state_dir)
        .expect("state dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            match name.strip_prefix("audit.jsonl") {
                Some("") => Some((u64::MAX, path)),
                Some(n) => Some((n.strip_prefix('.')?.parse().ok()?, path)),
                None => None,
            }
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .expect("read the log")
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).expect("a record")["seq"]
                        .as_u64()
                        .expect("seq")
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A follower of the whole log (an admin's) while writers fill it so fast
/// that it rotates many times between two of the follower's looks: it gets
/// every record exactly once, in order.
#[test]
fn agent_audit_follow_reads_every_record_once_across_many_rotations() {
    let d = Daemon::builder()
        .config(&format!(
            "admin_group = \"{ADMINS}\"\n[audit]\nmax_size = \"1k\""
        ))
        .start();
    let ws = Dir::new(U1);
    let (mut follower, rx) = follow(d.agent(U1, &ws.path).groups(&[U1, ADMINS]));
    // Refused kills: a record each, a few milliseconds apart, until the
    // log was rotated 40 times (writes that share an fsync make fewer
    // rotations of the same records).
    let fortieth = d.state_dir.join("audit.jsonl.40");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let agent = d.agent(U2, &ws.path);
            let fortieth = fortieth.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    if fortieth.exists() || std::time::Instant::now() > deadline {
                        return;
                    }
                    agent.run(&["kill", &format!("none-{w}-{i}")]);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let written = all_seqs(&d.state_dir);
    let last = *written.last().expect("records");
    assert_eq!(written, (1..=last).collect::<Vec<_>>());
    assert!(fortieth.exists(), "too few rotations in 60 s");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&last) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => seen.push(r["seq"].as_u64().expect("seq")),
            Err(_) => break,
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(seen, written, "followed seqs (left) against the log's");
}

#[test]
fn audit_streams_are_limited_per_user_and_others_still_get_theirs() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // Nine followers of one user: one of them is over the limit of eight.
    let mut followers: Vec<_> = (0..9)
        .map(|_| {
            d.agent(U1, &ws.path)
                .command(&["audit", "--follow", "--json"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("agent audit --follow")
        })
        .collect();
    let mut refused = Vec::new();
    let one_refused = eventually(Duration::from_secs(20), || {
        for f in &mut followers {
            if let Ok(Some(status)) = f.try_wait() {
                refused.push(status);
            }
        }
        !refused.is_empty()
    });
    // Another user is not held up by the first one's streams.
    let other = d.agent(U2, &ws.path).run(&["audit", "--json"]);
    let mut stderr = String::new();
    for f in &mut followers {
        if let Ok(Some(_)) = f.try_wait() {
            use std::io::Read;
            let _ = f.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
        }
        let _ = f.kill();
        let _ = f.wait();
    }
    assert!(one_refused, "nine streams of uid 1000 were all served");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(stderr.contains("too many audit streams"), "{stderr}");
    other.expect_code(0);
    // Streams that end are no longer counted.
    assert!(eventually(Duration::from_secs(10), || d
        .agent(U1, &ws.path)
        .run(&["audit", "--json"])
        .code
        == 0));
}
