//! The sandbox's network namespace: a fresh one (made by `clone`) with only
//! `lo`, brought up by the init. The daemon can reach the same namespace from
//! outside through `/proc/<Spawned::pid>/ns/net` (e.g. to `setns` a helper
//! thread into it and bind a proxy listener on 127.0.0.1 inside); see [`open`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Opens the network namespace of a running sandbox from the daemon side.
pub fn open(init_pid: i32) -> io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/{init_pid}/ns/net"))?.into())
}
