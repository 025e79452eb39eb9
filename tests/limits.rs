//! Limits and teardown: nothing of an exec survives it, whatever ends it.

use e2e::*;
use std::time::Duration;

const U1: u32 = 1000;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn marker(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn fork_bomb_is_contained() {
    let d = Daemon::builder()
        .profile(
            "small",
            "extends = \"workspace\"\n[limits]\npids = 64\ntimeout = \"5s\"\n",
        )
        .start();
    let ws = Dir::new(U1);
    let m = marker("bomb");
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "small"],
        &format!("b() {{ b | b & }}; : {m}; b; sleep 3"),
    );
    // The pids limit, not the host, stopped it: forks failed inside.
    assert!(
        out.stderr.contains("fork") || out.stderr.contains("Resource temporarily unavailable"),
        "no fork failure inside: {out:?}"
    );
    // The host stays responsive and nothing is left.
    let t = std::time::Instant::now();
    std::process::Command::new("true").status().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(eventually(Duration::from_secs(2), || pids_matching(&m).is_empty()));
}

#[test]
fn memory_balloon_over_the_limit_is_killed() {
    let d = Daemon::builder()
        .profile(
            "small",
            "extends = \"workspace\"\n[limits]\nmemory = \"64MiB\"\n",
        )
        .start();
    let ws = Dir::new(U1);
    let out = d.agent(U1, &ws.path).run(&[
        "exec", "--profile", "small", "--", "/usr/bin/python3", "-c",
        "b = bytearray(512 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')",
    ]);
    assert!(!out.stdout.contains("survived"), "{out:?}");
    assert_eq!(out.code, 128 + 9, "{out:?}");
    assert!(out.stderr.contains("memory"), "{}", out.stderr);
}

#[test]
fn huge_output_is_capped_and_the_daemon_stays_small() {
    let d = Daemon::builder()
        .profile(
            "capped",
            "extends = \"workspace\"\n[limits]\noutput = \"1MiB\"\n",
        )
        .start();
    let ws = Dir::new(U1);
    let before = rss_kib(d.pid());
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "capped"],
        "head -c 1073741824 /dev/zero; echo done >&2",
    );
    out.expect_code(0);
    assert_eq!(out.stdout.len(), 1024 * 1024);
    assert!(out.stderr.contains("output-truncated"), "{}", out.stderr);
    let after = rss_kib(d.pid());
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn timeout_gives_124_and_leaves_no_survivor() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let m = marker("tmo");
    let out = d.sh(
        U1,
        &ws.path,
        &["--timeout", "1s"],
        &format!("(setsid sh -c 'sleep 300; : {m}' &); sleep 300; : {m}"),
    );
    out.expect_code(124);
    assert!(
        eventually(Duration::from_secs(1), || pids_matching(&m).is_empty()),
        "{:?}",
        pids_matching(&m)
    );
}

#[test]
fn double_forked_grandchild_is_gone_after_exit() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let m = marker("dfork");
    let out = d.sh(U1, &ws.path, &[], &format!("(setsid sh -c 'sleep 300; : {m}' &) ; (nohup sh -c 'sleep 300; : {m}' >/dev/null 2>&1 &); echo started"));
    out.expect_code(0);
    assert!(out.stdout.contains("started"));
    assert!(
        eventually(Duration::from_secs(1), || pids_matching(&m).is_empty()),
        "{:?}",
        pids_matching(&m)
    );
}

#[test]
fn client_killed_mid_run_leaves_nothing_after_one_second() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let m = marker("gone");
    let mut child = d
        .agent(U1, &ws.path)
        .command(&["exec", "--", "/bin/sh", "-c", &format!("sleep 300; : {m}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || !pids_matching(&m).is_empty()));
    // setpriv execs agent, so the child pid is the agent itself.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(1), || pids_matching(&m).is_empty()),
        "survivors: {:?}",
        pids_matching(&m)
    );
    // And the daemon keeps serving.
    d.sh(U1, &ws.path, &[], "true").expect_code(0);
}

#[test]
fn ctrl_c_interrupts_then_kills() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // A command that handles SIGINT: it prints and exits 130.
    let mut child = d
        .agent(U1, &ws.path)
        .command(&[
            "exec",
            "--",
            "/bin/sh",
            "-c",
            "trap 'echo got-int; exit 130' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("got-int"), "{rest}");
    assert_eq!(status.code(), Some(130));

    // One that ignores SIGINT is killed after the grace period.
    let m = marker("stubborn");
    let mut child = d
        .agent(U1, &ws.path)
        .command(&[
            "exec",
            "--",
            "/bin/sh",
            "-c",
            &format!("trap '' INT; echo ready; while :; do sleep 0.1; done; : {m}"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    assert!(eventually(Duration::from_secs(1), || pids_matching(&m).is_empty()));
}

/// RLIMIT_NOFILE (soft, hard) of process `pid`, from /proc.
fn nofile(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    (v[3].to_string(), v[4].to_string())
}

/// The daemon raises its own descriptor limit (a tunnel costs it six, a
/// client one, across every sandbox), and a sandbox's command keeps the
/// limit the daemon was started with.
#[test]
fn the_daemon_raises_its_descriptor_limit_and_sandboxes_keep_the_one_it_had() {
    // Started with a soft limit below the hard one, as usual (1024).
    let (_, hard) = nofile("self");
    let hard: u64 = hard.parse().unwrap();
    let lowered = libc::rlimit {
        rlim_cur: 1024.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given (this test's own process).
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let ours = nofile("self");
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Past its hard limit only with CAP_SYS_RESOURCE (not every machine
    // gives root that).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    let want = match eff & (1 << CAP_SYS_RESOURCE) {
        0 => hard,
        _ => nr_open.min(1 << 20).max(hard),
    };
    let daemon = nofile(&d.pid().to_string());
    assert_eq!(daemon, (want.to_string(), want.to_string()));
    let out = d.sh(U1, &ws.path, &[], "cat /proc/self/limits");
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let v: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((v[3], v[4]), (ours.0.as_str(), ours.1.as_str()), "{line}");
}

/// Where the hierarchy carrying `controller` is mounted, and whether it is
/// v2: a v1 mount naming it first, as the daemon picks.
fn cgroup_mount(controller: &str) -> (std::path::PathBuf, bool) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v2 = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ").unwrap();
        let point = left.split(' ').nth(4).unwrap();
        let right: Vec<&str> = right.split(' ').collect();
        match right[0] {
            "cgroup" if right[2].split(',').any(|o| o == controller) => {
                return (point.into(), false)
            }
            "cgroup2" if v2.is_none() => v2 = Some(point.to_string()),
            _ => {}
        }
    }
    (v2.expect("a cgroup hierarchy").into(), true)
}

fn read_u64(path: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// Each sandbox has limits of its own; the cgroup holding them all is
/// capped too, so that many at once leave the host an eighth of its memory
/// (at least 1 GiB) and a quarter of the tasks it can have. And the empty
/// cgroups of a daemon no longer running are removed when one starts;
/// those of a running one (any process alive with that pid) stay.
#[test]
fn the_sandboxes_together_are_capped_and_leftover_cgroups_are_removed() {
    let (pids_mount, _) = cgroup_mount("pids");
    let parent = pids_mount.join("sandboxd");
    if !parent.is_dir() {
        let _ = std::fs::create_dir(&parent);
    }
    let proc_number = |p: &str| read_u64(std::path::Path::new(p));
    let pid_max = proc_number("/proc/sys/kernel/pid_max");
    // No process has a pid past pid_max; this test's own process is alive.
    let gone = parent.join(format!("run-{}-{}", pid_max + 1, marker("x")));
    let pool_gone = parent.join(format!("pool-{}-{}", pid_max + 1, marker("x")));
    let alive = parent.join(format!("run-{}-{}", std::process::id(), marker("x")));
    let other = parent.join(marker("not-a-sandbox-"));
    for dir in [&gone, &pool_gone, &alive, &other] {
        std::fs::create_dir(dir).unwrap();
    }

    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.sh(U1, &ws.path, &[], "true").expect_code(0);
    let removed = eventually(Duration::from_secs(10), || {
        !gone.exists() && !pool_gone.exists()
    });
    let kept = alive.exists() && other.exists();
    for dir in [&gone, &pool_gone, &alive, &other] {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(removed, "the cgroups of a daemon that is gone were left");
    assert!(
        kept,
        "a cgroup of a running process, or not a sandbox's, was removed"
    );

    let tasks = pid_max.min(proc_number("/proc/sys/kernel/threads-max"));
    assert_eq!(
        read_u64(&parent.join("pids.max")),
        (tasks / 4 * 3).max(1024)
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    let want = total - (total / 8).max(1 << 30);
    let (memory_mount, v2) = cgroup_mount("memory");
    let file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let got = read_u64(&memory_mount.join("sandboxd").join(file));
    // The kernel keeps whole pages.
    assert_eq!(got, want / 4096 * 4096, "{file}");
}
