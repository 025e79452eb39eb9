//! CPU fairness between users. Every sandbox of a uid joins one cgroup,
//! `sandboxd-users/uid-N`, in the cgroup v1 `cpu` hierarchy, all with the
//! same `cpu.shares`: however many busy processes one user runs, they weigh
//! as one user against another's, and all sandboxes together as one entity
//! against the daemon's own threads.
//!
//! This is a matter of service, not of confinement: when it cannot be set up
//! (no v1 `cpu` controller, or one mounted with memory or pids, where the
//! sandboxes' own cgroups live), sandboxes run without it and that is logged.
//!
//! Moving a process into a v1 cgroup waits for an RCU grace period, so it is
//! done off the exec's path, after the command started: the init and every
//! process it has forked by then are moved, and later children inherit.

use crate::backend::linux::cgroup::{locate, parse_mountinfo, Version};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The users' parent cgroup under the `cpu` mount.
const PARENT: &str = "sandboxd-users";

/// How often the process tree is walked for processes forked while moving.
const PASSES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum FairError {
    #[error("no cgroup v1 cpu controller apart from memory and pids")]
    NoController,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FairError + '_ {
    move |source| FairError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The users' parent cgroup, made once; the reason when there is none.
fn parent() -> Result<&'static Path, &'static FairError> {
    static PARENT_DIR: OnceLock<Result<PathBuf, FairError>> = OnceLock::new();
    PARENT_DIR
        .get_or_init(|| {
            let info = Path::new("/proc/self/mountinfo");
            let mounts = parse_mountinfo(&fs::read_to_string(info).map_err(io_err(info))?);
            let cpu = locate(&mounts, "cpu", "").filter(|p| p.version == Version::V1);
            let taken: Vec<PathBuf> = ["memory", "pids"]
                .iter()
                .filter_map(|c| locate(&mounts, c, ""))
                .map(|p| p.mount)
                .collect();
            let cpu = cpu
                .filter(|p| !taken.contains(&p.mount))
                .ok_or(FairError::NoController)?;
            let dir = cpu.mount.join(PARENT);
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(&dir)(e)),
                _ => Ok(dir),
            }
        })
        .as_ref()
        .map(PathBuf::as_path)
}

/// Moves the sandbox whose init is host pid `init` into `uid`'s cpu cgroup.
/// Blocking (cgroup moves wait); run it off the async runtime.
pub fn join(uid: u32, init: i32) {
    let parent = match parent() {
        Ok(p) => p,
        Err(e) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| tracing::warn!(error = %e, "no per-user CPU fairness"));
            return;
        }
    };
    if let Err(e) = move_tree(&parent.join(format!("uid-{uid}")), init) {
        tracing::warn!(uid, pid = init, error = %e, "moving a sandbox into its user's cpu cgroup");
    }
}

fn move_tree(dir: &Path, init: i32) -> Result<(), FairError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(dir)(e)),
        _ => {}
    }
    let procs = dir.join("cgroup.procs");
    let mut moved = Vec::new();
    for _ in 0..PASSES {
        let todo: Vec<i32> = tree(init)
            .into_iter()
            .filter(|p| !moved.contains(p))
            .collect();
        if todo.is_empty() {
            break;
        }
        for pid in todo {
            // A process that ended meanwhile is no error.
            match fs::write(&procs, pid.to_string()) {
                Ok(()) => moved.push(pid),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => moved.push(pid),
                Err(e) => return Err(io_err(&procs)(e)),
            }
        }
    }
    Ok(())
}

/// `pid` and its descendants, as /proc shows them now.
fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs as root on a host with a v1 cpu controller: a process and its
    /// child end up in the user's cgroup.
    #[test]
    fn a_process_tree_joins_its_users_cgroup() {
        let Ok(parent) = parent() else { return };
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let pid = child.id() as i32;
        join(4_000_123, pid);
        let procs = fs::read_to_string(parent.join("uid-4000123/cgroup.procs")).unwrap();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
        let all = tree(pid);
        assert!(all.len() >= 2, "{all:?}");
        assert!(
            all.iter().all(|p| pids.contains(p)),
            "{all:?} not all in {pids:?}"
        );
        let _ = child.kill();
        let _ = child.wait();
        for p in all {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = fs::remove_dir(parent.join("uid-4000123"));
    }
}
