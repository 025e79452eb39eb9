//! Two callers, uid 1000 and 1001, on one daemon: each lists, kills and reads
//! the audit of only their own sandboxes; an admin-group member sees and
//! manages all; the per-user and global sandbox limits refuse with the limit named.

use e2e::*;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

const U1: u32 = 1000;
const U2: u32 = 1001;
const U3: u32 = 1002;
const ADMIN_GID: u32 = 4343;

/// A `sleep SECONDS` sandbox of `uid` running in the background, and its id.
fn sleeper(d: &Daemon, uid: u32, ws: &Dir, seconds: &str) -> (Child, String) {
    let child = d
        .agent(uid, &ws.path)
        .command(&["exec", "--", "sleep", seconds])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = d.sandbox_id(uid, &ws.path, &format!("sleep {seconds}"));
    (child, id)
}

/// The cgroup holding every sandbox's, in the hierarchy carrying pids
/// (v1), or the unified one.
fn sandboxes_pids_cgroup() -> PathBuf {
    ["/sys/fs/cgroup/pids/sandboxd", "/sys/fs/cgroup/sandboxd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("pids.max").exists())
        .expect("the sandboxes' pids cgroup")
}

fn ended(child: &mut Child) -> bool {
    eventually(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    })
}

fn mentions(records: &[serde_json::Value], word: &str) -> bool {
    records.iter().any(|r| r.to_string().contains(word))
}

#[test]
fn users_see_kill_and_audit_only_their_own_and_admins_all() {
    let d = Daemon::builder()
        .config(&format!("admin_group = \"{ADMIN_GID}\""))
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    let (mut c1, id1) = sleeper(&d, U1, &ws1, "601");
    let (mut c2, id2) = sleeper(&d, U2, &ws2, "602");

    for (uid, ws, mine, theirs, their_id) in [
        (U1, &ws1, "601", "602", &id2),
        (U2, &ws2, "602", "601", &id1),
    ] {
        for args in [&["ps"][..], &["ps", "--all"][..]] {
            let ps = d.agent(uid, &ws.path).run(args);
            assert!(
                ps.stdout.contains(&format!("sleep {mine}")),
                "uid {uid} {args:?}: {}",
                ps.stdout
            );
            assert!(
                !ps.stdout.contains(&format!("sleep {theirs}")),
                "uid {uid} {args:?}: {}",
                ps.stdout
            );
        }
        let k = d.agent(uid, &ws.path).run(&["kill", their_id]);
        assert_ne!(k.code, 0, "uid {uid} killed another user's sandbox");
        assert!(k.stderr.contains("another user"), "{}", k.stderr);
        // The audit: own records only, every one of them carrying the caller's uid.
        let records = d.audit(uid, &[], &ws.path);
        assert!(
            mentions(&records, &format!("\"{mine}\"")),
            "uid {uid}: own exec not in its audit"
        );
        assert!(
            !mentions(&records, &format!("\"{theirs}\"")),
            "uid {uid} read another user's audit"
        );
        for r in &records {
            assert_eq!(r["uid"].as_u64(), Some(uid.into()), "uid {uid} got {r}");
        }
    }
    assert!(
        c1.try_wait().unwrap().is_none() && c2.try_wait().unwrap().is_none(),
        "a kill went through"
    );

    // An admin-group member (uid 1000 with the group) sees both, reads both, kills uid 1001's.
    let admin = [U1, ADMIN_GID];
    let ps = d.agent(U1, &ws1.path).groups(&admin).run(&["ps", "--all"]);
    assert!(
        ps.stdout.contains(&id1) && ps.stdout.contains(&id2),
        "{}",
        ps.stdout
    );
    let records = d.audit(U1, &admin, &ws1.path);
    assert!(
        mentions(&records, "\"601\"") && mentions(&records, "\"602\""),
        "admin audit incomplete"
    );
    d.agent(U1, &ws1.path)
        .groups(&admin)
        .run(&["kill", &id2])
        .expect_code(0);
    assert!(ended(&mut c2), "admin kill did not end uid 1001's sandbox");
    // Its owner ends its own.
    d.agent(U1, &ws1.path).run(&["kill", &id1]).expect_code(0);
    assert!(ended(&mut c1));
    // The admin's kill is in uid 1001's record of its exec's end; uid 1000 still cannot read it.
    let records = d.audit(U2, &[], &ws2.path);
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "exec-end" && r["id"] == id2.as_str()),
        "no end for {id2}"
    );
    // uid 1000's own records of its kills name the sandbox; none of uid 1001's is shown.
    let mine = d.audit(U1, &[], &ws1.path);
    assert!(mine.iter().all(|r| r["uid"] == U1), "{mine:#?}");
    assert!(!mine
        .iter()
        .any(|r| r["id"] == id2.as_str() && r["kind"] == "exec-end"));
}

#[test]
fn sandbox_limits_refuse_with_the_limit_named() {
    let d = Daemon::builder()
        .config("[limits]\nmax_sandboxes = 2\nmax_per_user = 1")
        .start();
    let (ws1, ws2, ws3) = (Dir::new(U1), Dir::new(U2), Dir::new(U3));
    let (mut c1, id1) = sleeper(&d, U1, &ws1, "603");
    // uid 1000's second concurrent sandbox is over its own limit.
    let out = d.agent(U1, &ws1.path).run(&["exec", "--", "true"]);
    assert_eq!(out.code, 125, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("limits.max_per_user") && out.stderr.contains("uid 1000"),
        "{}",
        out.stderr
    );
    // uid 1001 still has room; then the box is full for a third user.
    let (mut c2, id2) = sleeper(&d, U2, &ws2, "604");
    let out = d.agent(U3, &ws3.path).run(&["exec", "--", "true"]);
    assert_eq!(out.code, 125, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("limits.max_sandboxes"),
        "{}",
        out.stderr
    );
    // Refusals are audited, as the caller's own.
    let refusals = d.audit(U3, &[], &ws3.path);
    assert!(
        refusals
            .iter()
            .any(|r| r["kind"] == "refusal" && r["rule"] == "limits"),
        "{refusals:?}"
    );
    // A slot freed is a slot reusable.
    d.agent(U1, &ws1.path).run(&["kill", &id1]).expect_code(0);
    assert!(ended(&mut c1));
    assert!(eventually(Duration::from_secs(10), || d
        .agent(U3, &ws3.path)
        .run(&["exec", "--", "true"])
        .code
        == 0));
    d.agent(U2, &ws2.path).run(&["kill", &id2]).expect_code(0);
    assert!(ended(&mut c2));
}

/// Median wall time of `agent exec -- true` as `uid`, over `n` runs.
fn median_exec(d: &Daemon, uid: u32, ws: &Dir, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            d.agent(uid, &ws.path)
                .run(&["exec", "--", "true"])
                .expect_code(0);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// The host directory of the cpu cgroup `pid` is in (v1 or v2).
fn cpu_cgroup(pid: u32) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // (mount point, fs type, super options) of each cgroup mount.
    let mounts: Vec<(String, String, String)> = info
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let mut t = tail.split_whitespace();
            let (fstype, _, opts) = (t.next()?, t.next()?, t.next()?);
            Some((
                head.split_whitespace().nth(4)?.to_string(),
                fstype.to_string(),
                opts.to_string(),
            ))
        })
        .filter(|(_, fstype, _)| fstype.starts_with("cgroup"))
        .collect();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let v1 = ctrls.split(',').any(|c| c == "cpu");
        let mount = mounts.iter().find(|(_, fstype, opts)| match v1 {
            true => fstype == "cgroup" && opts.split(',').any(|o| o == "cpu"),
            false => ctrls.is_empty() && fstype == "cgroup2",
        });
        if let Some((mount, _, _)) = mount {
            let dir = PathBuf::from(mount).join(path.trim_start_matches('/'));
            if v1 || dir.join("cpu.weight").exists() {
                return dir;
            }
        }
    }
    panic!("pid {pid} is in no cpu cgroup (has this host a cpu controller?): {text}");
}

/// A sandbox still running after its first quarter second yields the CPU
/// to everything else: its cpu cgroup, which holds its whole tree, a new
/// session started inside included, turns idle. (The flood below measures
/// what that buys.)
#[test]
fn a_long_running_sandbox_yields_the_cpu_with_its_whole_tree() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let mut c = d
        .agent(U1, &ws.path)
        .command(&[
            "exec",
            "--",
            "/bin/sh",
            "-c",
            "setsid sleep 605 & exec sleep 606",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = d.sandbox_id(U1, &ws.path, "sleep 606");
    // Exactly these command lines: `setsid sleep 605` is not in its own
    // session until setsid has run and exec'd sleep.
    let exact = |cmdline: &str| -> Vec<u32> {
        let want = format!("{}\0", cmdline.replace(' ', "\0"));
        pids_matching(cmdline)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want.as_bytes())
            })
            .collect()
    };
    let (mut own, mut main) = (0, 0);
    assert!(eventually(Duration::from_secs(10), || {
        match (&exact("sleep 605")[..], &exact("sleep 606")[..]) {
            ([a], [b]) if a != b => (own, main) = (*a, *b),
            _ => return false,
        }
        true
    }));
    // SAFETY: getsid on host pids.
    let (s1, s2) = unsafe { (libc::getsid(own as i32), libc::getsid(main as i32)) };
    assert!(s1 > 0 && s2 > 0 && s1 != s2, "sessions {s1} and {s2}");
    let group = cpu_cgroup(main);
    assert_eq!(cpu_cgroup(own), group);
    // The sandbox's own (`run-DAEMONPID-ID`, or the pooled init's it was given).
    let name = group.file_name().unwrap().to_string_lossy().to_string();
    let own = format!("run-{}-{id}", d.pid());
    assert!(
        group.parent().unwrap().ends_with("sandboxd") && (name == own || name.starts_with("pool-")),
        "{}",
        group.display()
    );
    let read = |f: &str| {
        std::fs::read_to_string(group.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // cpu.idle, or before kernel 5.15 the smallest weight.
    let idle = || match group.join("cpu.idle").exists() {
        true => read("cpu.idle") == "1",
        false => read("cpu.shares") == "2" || read("cpu.weight") == "1",
    };
    assert!(
        eventually(Duration::from_secs(5), idle),
        "{} is not idle",
        group.display()
    );
    let _ = c.kill();
    let _ = c.wait();
    assert!(eventually(Duration::from_secs(10), || !group.exists()));
}

/// One user's flood against another's latency: the median of 20 `agent exec
/// -- true` as uid 1001, alone and while uid 1000 runs 16 execs of `yes`
/// whose output goes to readers taking 4 KiB every 10 ms, plus 4 `yes | cat`
/// pipelines. Prints the ratio; fails above 2x. Timing-sensitive, so run on
/// its own: `cargo test -p e2e --test multiuser -- --ignored --nocapture flood`.
#[test]
#[ignore]
fn flood_of_one_user_does_not_slow_another_beyond_2x() {
    use std::io::Read;
    let d = Daemon::start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    median_exec(&d, U2, &ws2, 3);
    let alone = median_exec(&d, U2, &ws2, 20);

    let mut flood: Vec<Child> = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..16 {
        let mut c = d
            .agent(U1, &ws1.path)
            .command(&["exec", "--", "yes", "flood"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = c.stdout.take().unwrap();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(out.read(&mut buf), Ok(n) if n > 0) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
        flood.push(c);
    }
    // FLOOD_PIPES changes the number of pipelines (to tell their share from the readers').
    let pipes: usize = std::env::var("FLOOD_PIPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for _ in 0..pipes {
        let c = d
            .agent(U1, &ws1.path)
            .command(&["exec", "--", "/bin/sh", "-c", "yes | cat > /dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        flood.push(c);
    }
    // The flood is running before the measurement starts.
    assert!(eventually(Duration::from_secs(30), || {
        let ps = d.agent(U1, &ws1.path).run(&["ps"]);
        ps.stdout.lines().filter(|l| l.contains("yes")).count() >= 16 + pipes
    }));
    std::thread::sleep(Duration::from_secs(1));
    let flooded = median_exec(&d, U2, &ws2, 20);
    // Still flooding at the end of the measurement.
    let running = d
        .agent(U1, &ws1.path)
        .run(&["ps"])
        .stdout
        .lines()
        .filter(|l| l.contains("yes"))
        .count();
    assert!(
        running >= 16 + pipes,
        "the flood ended early: {running} running"
    );
    for c in &mut flood {
        let _ = c.kill();
        let _ = c.wait();
    }
    for r in readers {
        let _ = r.join();
    }
    let ratio = flooded.as_secs_f64() / alone.as_secs_f64();
    println!(
        "uid 1001 `agent exec -- true` median: alone {:.1} ms, during uid 1000's flood {:.1} ms, ratio {ratio:.2}",
        alone.as_secs_f64() * 1000.0,
        flooded.as_secs_f64() * 1000.0
    );
    assert!(ratio <= 2.0, "another user's flood slowed exec {ratio:.2}x");
}

/// An exec's slot is free once its client hears of the exit: the same
/// client's next exec, sent at once on the same connection, is not refused
/// under `max_per_user = 1` (it was, now and then, while the slot was freed
/// only after the exit had been sent).
#[test]
fn an_exec_that_has_ended_no_longer_counts_against_the_limit() {
    let d = Daemon::builder()
        .config("[limits]\nmax_per_user = 1")
        .start();
    let ws = Dir::new(U1);
    let cwd = ws.path.clone();
    let refused = client_as(U1, &d.socket, |mut client| async move {
        let opts = agent::ExecOptions::new(vec!["true".into()], cwd);
        for i in 0..100 {
            match agent::run_exec(&mut client, &opts, agent::ExecIo::discard()).await {
                Ok(st) if st.code() == 0 => {}
                Ok(st) => return Some(format!("exec {i}: {:?}", st.exit)),
                Err(e) => return Some(format!("exec {i}: {e}")),
            }
        }
        None
    });
    assert_eq!(refused, None);
}

/// One caller holds at most 256 API connections at once: past that its
/// connections are closed on arrival, while another user's are served as
/// ever, and closing some frees them again.
#[test]
fn one_user_cannot_hold_every_api_connection() {
    use std::io::{BufRead, BufReader};
    let d = Daemon::start();
    let ws = Dir::new(U1);
    // 300 connections of U1, kept open until stdin closes; prints how many
    // the daemon kept (an accepted one gets the server's HTTP/2 settings,
    // a refused one is closed).
    let code = "import socket,sys,time
socks=[socket.socket(socket.AF_UNIX) for _ in range(300)]
for s in socks: s.connect(sys.argv[1])
time.sleep(2)
kept=0
for s in socks:
    s.settimeout(2)
    try: kept += len(s.recv(1, socket.MSG_PEEK)) > 0
    except OSError: pass
print(kept, flush=True)
sys.stdin.read()";
    let mut holder = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={U1}"),
            &format!("--regid={U1}"),
            "--clear-groups",
            "--",
            "/usr/bin/python3",
            "-c",
            code,
        ])
        .arg(&d.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "256");
    let ws2 = Dir::new(U2);
    d.agent(U2, &ws2.path)
        .run(&["policy", "list"])
        .expect_code(0);
    assert_ne!(d.agent(U1, &ws.path).run(&["policy", "list"]).code, 0);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(eventually(Duration::from_secs(5), || d
        .agent(U1, &ws.path)
        .run(&["policy", "list"])
        .code
        == 0));
}

/// With `[limits] user_pids` (and `user_memory`), one user's sandboxes
/// share that cap: while one holds 30 tasks, the user's next cannot fork
/// 30 more, and another user's can. On the host, each user's sandboxes
/// sit in a cgroup of that user's carrying the caps.
#[test]
fn a_users_sandboxes_share_the_cap_the_daemon_sets_per_user() {
    let d = Daemon::builder()
        .config("[limits]\nuser_pids = 40\nuser_memory = \"2GiB\"")
        .start();
    let (ws1, ws2) = (Dir::new(U1), Dir::new(U2));
    let mut holder = d
        .agent(U1, &ws1.path)
        .command(&[
            "exec",
            "--timeout",
            "60s",
            "--",
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do sleep 59 & i=$((i+1)); done; touch held; wait",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || ws1.join("held").exists()),
        "the first sandbox did not start its tasks"
    );
    let forks = "import os, time\n\
                 n = 0\n\
                 for _ in range(30):\n\
                 \x20   try:\n\
                 \x20       pid = os.fork()\n\
                 \x20   except OSError:\n\
                 \x20       break\n\
                 \x20   if pid == 0:\n\
                 \x20       time.sleep(3)\n\
                 \x20       os._exit(0)\n\
                 \x20   n += 1\n\
                 print(n)\n";
    let forked = |uid: u32, ws: &Dir| -> u32 {
        let out = py(&d, uid, &ws.path, forks);
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{out:?}"))
    };
    let own = forked(U1, &ws1);
    assert!(
        own < 10,
        "uid {U1}'s second sandbox forked {own} past the cap"
    );
    assert_eq!(forked(U2, &ws2), 30, "uid {U2} is held by uid {U1}'s cap");
    // On the host: the holder's tasks are in uid 1000's cgroup, capped.
    let ours = d.descendants();
    let sleeper = pids_matching("sleep 59")
        .into_iter()
        .find(|p| ours.contains(p))
        .expect("a sleep of the holder");
    let groups = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap();
    let pids_line = groups
        .lines()
        .find(|l| l.contains(":pids:") || l.starts_with("0::"))
        .expect("a pids cgroup");
    let rel = pids_line.splitn(3, ':').nth(2).unwrap();
    assert!(rel.starts_with("/sandboxd/user-1000/run-"), "{groups}");
    let user_dir = PathBuf::from(rel).parent().unwrap().to_path_buf();
    let cap = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .map(|m| {
            PathBuf::from(m)
                .join(user_dir.strip_prefix("/").unwrap())
                .join("pids.max")
        })
        .find_map(|p| std::fs::read_to_string(p).ok())
        .expect("the user's pids.max");
    assert_eq!(cap.trim(), "40");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        eventually(Duration::from_secs(10), || {
            let ours = d.descendants();
            !pids_matching("sleep 59").iter().any(|p| ours.contains(p))
        }),
        "the holder's tasks outlived it"
    );
}

/// Cgroups of a daemon no longer running, in `sandboxd` and in a user's
/// directory there, are removed once a daemon starts.
#[test]
fn cgroups_a_gone_daemon_left_are_removed_when_one_starts() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    d.agent(U1, &ws.path)
        .run(&["exec", "--", "true"])
        .expect_code(0);
    drop(d);
    let parent = sandboxes_pids_cgroup();
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = (pid_max / 2..pid_max)
        .rev()
        .find(|p| !PathBuf::from(format!("/proc/{p}")).exists())
        .unwrap();
    let left = [
        parent.join(format!("run-{gone}-x")),
        parent.join(format!("pool-{gone}-1")),
        parent.join(format!("user-4321/run-{gone}-y")),
    ];
    for l in &left {
        std::fs::create_dir_all(l).unwrap();
    }
    let _d = Daemon::start();
    assert!(
        eventually(Duration::from_secs(10), || left.iter().all(|l| !l.exists())),
        "left: {:?}",
        left.iter().filter(|l| l.exists()).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir(parent.join("user-4321"));
}

/// A sandbox's command may have its uid hold half the tasks all sandboxes
/// together may (its RLIMIT_NPROC, which the kernel counts over every task
/// of the uid), so that one user cannot take the tasks every other user's
/// sandboxes need, even where no `user_pids` caps them; a larger
/// `user_pids` raises it.
#[test]
fn one_user_may_hold_half_the_sandboxes_tasks_by_default() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let nproc = "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC)[0])";
    let out = py(&d, U1, &ws.path, nproc);
    out.expect_code(0);
    let all = std::fs::read_to_string(sandboxes_pids_cgroup().join("pids.max"))
        .expect("the sandboxes' pids cap");
    let all: u64 = all.trim().parse().unwrap();
    // Never above the hard limit the daemon has (this process's).
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut hard) }, 0);
    let hard = hard.rlim_max;
    assert_eq!(out.stdout.trim(), (all / 2).min(hard).to_string());
    // Another uid: the users' cgroups are the host's, shared by daemons.
    let d = Daemon::builder()
        .config("[limits]\nuser_pids = 1000000")
        .start();
    let ws = Dir::new(U3);
    let out = py(&d, U3, &ws.path, nproc);
    let want = (all / 2).max(1_000_000).min(hard);
    assert_eq!(out.stdout.trim(), want.to_string(), "{}", out.stderr);
}

/// A daemon stopped by SIGTERM removes its cgroups, its pre-started
/// inits' included, rather than leave them to the next one to start.
#[test]
fn a_daemon_stopping_leaves_no_cgroup_of_its_own() {
    let mut d = Daemon::start();
    let ws = Dir::new(U1);
    d.agent(U1, &ws.path)
        .run(&["exec", "--", "true"])
        .expect_code(0);
    let parent = sandboxes_pids_cgroup();
    let mine = format!("-{}-", d.pid());
    let left = || -> Vec<String> {
        std::fs::read_dir(&parent)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&mine))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || !left().is_empty()),
        "no pre-started init's cgroup while it runs"
    );
    d.stop();
    assert_eq!(left(), Vec::<String>::new());
}
