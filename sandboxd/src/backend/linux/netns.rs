//! The sandbox's network namespace: a fresh one with only `lo`, up.
//!
//! Creating a network namespace costs a millisecond or more, so the daemon
//! keeps a small [`Pool`] of namespaces made ahead of time (lo already up) and
//! hands one to each sandbox's init, which joins it with `setns` before
//! executing; each namespace is used by one sandbox only. When the pool is
//! empty the init gets a fresh one from `clone(CLONE_NEWNET)` instead, and
//! brings `lo` up itself ([`loopback_up`] is a no-op when it is already up).
//! The daemon can reach a running sandbox's namespace through
//! `/proc/<Spawned::pid>/ns/net` (e.g. to `setns` a helper thread into it and
//! bind a proxy listener on 127.0.0.1 inside); see [`open`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Namespaces kept ready.
const POOL_SIZE: usize = 4;

/// Ready-made loopback network namespaces.
pub struct Pool {
    ready: Mutex<(Vec<OwnedFd>, bool)>,
}

/// The daemon's pool.
pub static POOL: Pool = Pool {
    ready: Mutex::new((Vec::new(), false)),
};

impl Pool {
    /// Takes a ready namespace, if any, and starts refilling in the background.
    pub fn take(&'static self) -> Option<OwnedFd> {
        let mut guard = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let fd = guard.0.pop();
        if guard.0.len() < POOL_SIZE && !guard.1 {
            guard.1 = true;
            let started = std::thread::Builder::new()
                .name("netns-pool".into())
                .spawn(move || self.refill());
            if started.is_err() {
                guard.1 = false;
            }
        }
        fd
    }

    fn refill(&self) {
        loop {
            if self.ready.lock().unwrap_or_else(|p| p.into_inner()).0.len() >= POOL_SIZE {
                break;
            }
            // Each namespace is made on its own short-lived thread: unshare
            // moves only the calling thread, which then just ends.
            let made = std::thread::spawn(make).join().ok().and_then(Result::ok);
            let mut guard = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            match made {
                Some(fd) => guard.0.push(fd),
                None => break,
            }
        }
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).1 = false;
    }
}

/// Makes a new network namespace with lo up (moves the calling thread into it).
fn make() -> io::Result<OwnedFd> {
    // SAFETY: unshare affects only this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    loopback_up()?;
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() returns a new descriptor or -1.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; the name fits with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq for these ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        if req.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `f` on a short-lived thread that joins the network namespace `netns`
/// (bringing its `lo` up first), e.g. to bind the daemon's listeners on
/// 127.0.0.1 inside a sandbox. Sockets keep the namespace they were made in,
/// so the daemon serves them from its own threads afterwards.
pub fn within<T: Send + 'static>(
    netns: &OwnedFd,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = netns.try_clone()?;
    std::thread::Builder::new()
        .name("netns-bind".into())
        .spawn(move || {
            // SAFETY: setns moves only this thread, which ends after `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
            loopback_up()?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Opens the network namespace of a running sandbox from the daemon side.
pub fn open(init_pid: i32) -> io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/{init_pid}/ns/net"))?.into())
}
