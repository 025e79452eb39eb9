//! Relaying an opened tunnel between two TCP sockets with splice(2) through a
//! pipe per direction: the bytes never enter user space.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked of one splice call; also the pipe size asked for.
const CHUNK: usize = 1 << 20;

/// Bytes moved each way, readable while and after the relay runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Client to upstream.
    pub up: AtomicU64,
    /// Upstream to client.
    pub down: AtomicU64,
}

impl Counts {
    pub fn get(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

/// Relays between `client` and `upstream` until both directions ended (each
/// end's EOF is passed on as a half-close), one side failed, or nothing moved
/// for `idle`.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    counts: &Counts,
    idle: Duration,
) -> io::Result<()> {
    let started = Instant::now();
    // Milliseconds since `started` of the last byte moved.
    let last = AtomicU64::new(0);
    let up = one_way(client, upstream, &counts.up, &last, started);
    let down = one_way(upstream, client, &counts.down, &last, started);
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(since);
            if quiet >= idle {
                return io::Error::new(io::ErrorKind::TimedOut, "tunnel idle");
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
        e = watchdog => Err(e),
    }
}

/// Moves `src` to `dst` until `src` ends, then shuts `dst` for writing.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    count: &AtomicU64,
    last: &AtomicU64,
    started: Instant,
) -> io::Result<()> {
    let (pipe_r, pipe_w) = pipe()?;
    loop {
        // The pipe is empty here, so EAGAIN can only mean `src` has nothing.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src.as_fd(), pipe_w.as_fd(), CHUNK)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return nix::sys::socket::shutdown(dst.as_raw_fd(), nix::sys::socket::Shutdown::Write)
                .or_else(|e| {
                    if e == nix::errno::Errno::ENOTCONN {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(io::Error::from);
        }
        // The pipe holds `left` bytes, so EAGAIN can only mean `dst` is full.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe_r.as_fd(), dst.as_fd(), left)
            }) {
                Ok(k) => {
                    left -= k;
                    count.fetch_add(k as u64, Ordering::Relaxed);
                    last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A non-blocking pipe, enlarged to [`CHUNK`] where the system allows.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A smaller pipe only costs more calls.
    // SAFETY: F_SETPIPE_SZ on an open pipe descriptor takes an int.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    Ok((r, w))
}

/// One non-blocking splice(2) of up to `len` bytes.
fn splice(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call's duration; null offsets
    // are allowed for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
