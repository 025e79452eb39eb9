//! CPU fairness: a sandbox still running [`DELAY`] after it started (a build,
//! a server, a flood) yields the CPU to everything else. Short execs, the
//! common interactive case, are left alone, so one user's flood does not
//! slow another's commands.
//!
//! Where the host has a cpu controller, every sandbox has a cpu cgroup of its
//! own from the start, and yielding is one write: the cgroup becomes idle
//! ([`CpuGroup::make_idle`]), so any other task that wakes preempts it at
//! once, and its processes share what CPU is left. Its whole tree is in the
//! cgroup, later children and new sessions included, and a sandbox cannot
//! leave it. (The cgroup is made with the sandbox, before anything of it
//! runs: a move later would, on cgroup v1, stop all forks on the host for an
//! RCU grace period.)
//!
//! Without a cpu controller, every thread of the tree is lowered to nice
//! [`NICE`] instead, and, where the kernel groups each session for
//! scheduling (autogroup, on by default on Debian; a nice value then weighs
//! only within its session), the autogroup of every session in it. A
//! sandbox cannot undo that either: raising priority takes `CAP_SYS_NICE`
//! (or an `RLIMIT_NICE` the sandbox does not get). A new session (`setsid`)
//! starts a new group at 0, so the tree is walked again every [`REWALK`].
//!
//! This is a matter of service, not of confinement: a failure is logged and
//! the sandbox runs on unchanged.

use crate::backend::linux::cgroup::{CgroupError, CpuGroup};
use std::collections::HashSet;
use std::fs;
use std::time::Duration;

/// How long a sandbox runs before it is lowered.
pub const DELAY: Duration = Duration::from_millis(250);

/// The nice value of long-running sandboxes without a cpu cgroup (CFS
/// weight 110 against 1024 at 0).
pub const NICE: i32 = 10;

/// How many times in a row a walk looks for processes forked meanwhile.
const PASSES: usize = 3;

/// How often a running sandbox's tree is walked again, for new sessions
/// (and threads) since the last walk.
pub const REWALK: Duration = Duration::from_secs(2);

/// The start time of process `pid` (clock ticks after boot), to tell it
/// from a later process given the same pid.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; starttime is field 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Lowers the sandbox whose init is host pid `init` if it still runs after
/// [`DELAY`]: makes `cpu` idle, or without one lowers the tree's nice values
/// then and again every [`REWALK`] while it runs. Returns at once; needs a
/// tokio runtime.
pub fn lower_later(init: i32, cpu: Option<CpuGroup>) {
    let Some(born) = start_time(init) else { return };
    tokio::spawn(async move {
        tokio::time::sleep(DELAY).await;
        if let Some(cpu) = cpu {
            // (Nice values would not help here: inside a cpu cgroup they
            // weigh only against the cgroup's own threads.)
            if start_time(init) == Some(born) {
                match cpu.make_idle() {
                    Ok(()) => {}
                    // Ended meanwhile, its cgroup removed.
                    Err(CgroupError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(pid = init, error = %e, "making a long-running sandbox idle")
                    }
                }
            }
            return;
        }
        let mut done = HashSet::new();
        while start_time(init) == Some(born) {
            let walked = tokio::task::spawn_blocking(move || {
                lower(init, &mut done);
                done
            });
            match walked.await {
                Ok(d) => done = d,
                Err(_) => return,
            }
            tokio::time::sleep(REWALK).await;
        }
    });
}

/// Sets nice [`NICE`] on every thread of `init`'s process tree not in
/// `done`, and on the autogroup of every session in it other than the
/// daemon's own; leaves in `done` the threads seen.
fn lower(init: i32, done: &mut HashSet<i32>) {
    // SAFETY: getsid on ourselves.
    let ours = unsafe { libc::getsid(0) };
    let mut seen = HashSet::new();
    for _ in 0..PASSES {
        let all = threads(init);
        let todo: Vec<i32> = all.iter().copied().filter(|t| !done.contains(t)).collect();
        seen.extend(all);
        if todo.is_empty() {
            break;
        }
        for tid in todo {
            // SAFETY: plain syscall on a thread id; a thread gone meanwhile gives ESRCH.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    tracing::warn!(pid = init, tid, error = %e, "lowering a long-running sandbox");
                }
            }
            // SAFETY: getsid on a thread id; a thread gone meanwhile gives -1.
            let sid = unsafe { libc::getsid(tid) };
            if sid > 0 && sid != ours {
                lower_autogroup(init, tid);
            }
            done.insert(tid);
        }
    }
    // Threads gone are forgotten, so a reused id is lowered again.
    done.retain(|t| seen.contains(t));
}

/// Sets the nice of the autogroup `tid` belongs to. Without autogroup
/// support the file is missing: nothing to do.
fn lower_autogroup(init: i32, tid: i32) {
    match fs::write(format!("/proc/{tid}/autogroup"), NICE.to_string()) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => tracing::warn!(pid = init, tid, error = %e, "lowering a sandbox's autogroup"),
    }
}

/// Every thread of `pid` and of its descendants, as /proc shows them now.
fn threads(pid: i32) -> Vec<i32> {
    let mut procs = vec![pid];
    let mut out = Vec::new();
    let mut i = 0;
    while i < procs.len() {
        let p = procs[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
                out.push(tid);
            }
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                procs.extend(s.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice(pid: i32) -> i64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Field 19 is nice.
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn autogroup(pid: i32) -> String {
        fs::read_to_string(format!("/proc/{pid}/autogroup")).unwrap_or_default()
    }

    #[test]
    fn a_process_tree_is_lowered_and_its_children_inherit() {
        use std::io::Write;
        let mine = autogroup(std::process::id() as i32);
        // Part of the tree runs in a session of its own, as a command does;
        // each line the test sends starts more (`read` is no process).
        let mut child = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "setsid sleep 29 & sleep 30 & read a; sleep 31 & read b; setsid sleep 32 & wait",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut go = child.stdin.take().unwrap();
        // SAFETY: getsid on pids of the tree.
        let own_session = |p: &i32| unsafe { libc::getsid(*p) } == *p;
        let sleeping =
            |p: &i32| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n");
        // Waits until the tree holds `n` sleeps, `leaders` of them session
        // leaders; returns the tree.
        let tree_with = |n: usize, leaders: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let all = threads(pid);
                let sleeps: Vec<i32> = all.iter().copied().filter(sleeping).collect();
                if sleeps.len() == n && sleeps.iter().filter(|p| own_session(p)).count() == leaders
                {
                    break all;
                }
                assert!(std::time::Instant::now() < deadline, "{all:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        tree_with(2, 1);
        assert!(start_time(pid).is_some());
        let mut done = HashSet::new();
        lower(pid, &mut done);
        go.write_all(b"\n").unwrap();
        let all = tree_with(3, 1);
        for p in &all {
            assert_eq!(nice(*p), NICE as i64, "pid {p}");
        }
        // The other session's group is lowered, ours (shared with the tree's
        // first processes) is not.
        if std::path::Path::new("/proc/self/autogroup").exists() {
            let leaders: Vec<i32> = all.iter().copied().filter(own_session).collect();
            assert_eq!(leaders.len(), 1, "{all:?}");
            assert!(
                autogroup(leaders[0]).ends_with(&format!("nice {NICE}\n")),
                "{}",
                autogroup(leaders[0])
            );
            // Unchanged; empty where we are in the boot session's group,
            // which has no nice of its own.
            assert_eq!(autogroup(std::process::id() as i32), mine);
            // A session started after the walk starts a group at 0; the
            // next walk lowers it.
            go.write_all(b"\n").unwrap();
            let new_leaders: Vec<i32> = tree_with(4, 2)
                .into_iter()
                .filter(|p| !all.contains(p) && own_session(p))
                .collect();
            assert_eq!(new_leaders.len(), 1, "{new_leaders:?}");
            assert!(autogroup(new_leaders[0]).ends_with("nice 0\n"));
            lower(pid, &mut done);
            assert!(
                autogroup(new_leaders[0]).ends_with(&format!("nice {NICE}\n")),
                "{}",
                autogroup(new_leaders[0])
            );
            assert_eq!(autogroup(std::process::id() as i32), mine);
        }
        let all = threads(pid);
        for p in all {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
    }
}
