//! The daemon's descriptor limit. Every tunnel costs it six descriptors
//! and every client one, across all sandboxes, so it raises its own limit
//! at start; a sandbox's command gets back the limit the daemon was
//! started with, not the raised one. And the task limit a sandbox's
//! command gets, which counts every task of its uid on the host.

use std::sync::OnceLock;

/// Highest limit the daemon asks for (the kernel may allow less: `nr_open`).
const WANTED: u64 = 1 << 20;

/// RLIMIT_NOFILE (soft, hard) as the daemon found it.
static STARTED_WITH: OnceLock<(u64, u64)> = OnceLock::new();

fn get(resource: libc::__rlimit_resource_t) -> std::io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(resource, &mut l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((l.rlim_cur, l.rlim_max))
}

/// Sets RLIMIT_NOFILE of the calling process (async-signal-safe: one syscall).
pub fn set(limits: (u64, u64)) -> std::io::Result<()> {
    set_limit(libc::RLIMIT_NOFILE, limits)
}

/// Lowers RLIMIT_NPROC (soft and hard) of the calling process to `n`, or
/// to the hard limit it has where that is lower (async-signal-safe).
pub fn set_nproc(n: u64) -> std::io::Result<()> {
    let (_, hard) = get(libc::RLIMIT_NPROC)?;
    let n = n.min(hard);
    set_limit(libc::RLIMIT_NPROC, (n, n))
}

fn set_limit(resource: libc::__rlimit_resource_t, (soft, hard): (u64, u64)) -> std::io::Result<()> {
    let l = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(resource, &l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the daemon's soft limit to its hard one, and the hard one (as
/// root) towards [`WANTED`] within the kernel's `nr_open`. Returns the soft
/// limit now in force.
pub fn raise() -> std::io::Result<u64> {
    let (soft, hard) = get(libc::RLIMIT_NOFILE)?;
    let _ = STARTED_WITH.set((soft, hard));
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .min(WANTED);
    let hard = if hard < ceiling && set((ceiling, ceiling)).is_ok() {
        ceiling
    } else {
        hard
    };
    if soft < hard {
        set((hard, hard))?;
    }
    Ok(hard.max(soft))
}

/// The limit a sandbox's command gets: the daemon's before [`raise`].
pub fn for_sandboxes() -> (u64, u64) {
    match STARTED_WITH.get() {
        Some(l) => *l,
        None => get(libc::RLIMIT_NOFILE).unwrap_or((1024, 1024)),
    }
}
