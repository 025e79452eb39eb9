//! Relaying an opened tunnel between two TCP sockets with splice(2) through a
//! pipe per direction: the bytes never enter user space.
//!
//! TCP urgent data is passed on inline, as an ordinary byte in its place in
//! the stream (RFC 6093 asks the same of new applications): splice(2) stops
//! at an urgent mark, so the byte there is read and written by hand.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe size asked for, each way, by a tunnel holding one of its
/// sandbox's [`LargePipes`].
const CHUNK: usize = 1 << 20;
/// Tunnels of one sandbox that may have [`CHUNK`] pipes at once. A pipe's
/// pages are the daemon's (outside any sandbox's cgroup), and one that a
/// client does not read stays full: the others keep the kernel's default
/// (16 pages, 64 KiB), so that a sandbox's pipes hold at most
/// `LARGE_PIPES` × 2 MiB and 128 KiB a tunnel more (with
/// [`MAX_CONNECTIONS`](super::MAX_CONNECTIONS) tunnels, about 136 MiB),
/// while one fast tunnel keeps its throughput.
pub const LARGE_PIPES: usize = 4;

/// A sandbox's places for tunnels with [`CHUNK`] pipes; a tunnel holds one
/// (a permit) for as long as it runs.
#[derive(Debug)]
pub struct LargePipes(tokio::sync::Semaphore);

impl Default for LargePipes {
    fn default() -> LargePipes {
        LargePipes(tokio::sync::Semaphore::new(LARGE_PIPES))
    }
}

impl LargePipes {
    /// A place for one more tunnel, when one is free.
    fn take(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.0.try_acquire().ok()
    }
}

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
/// for `idle`. Both keep urgent data inline ([`inline_urgent`]), since
/// before anything was read from them. The pipes are large when one of the
/// sandbox's `pipes` is free.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    counts: &Counts,
    idle: Duration,
    pipes: &LargePipes,
) -> io::Result<()> {
    let started = Instant::now();
    // Milliseconds since `started` of the last byte moved.
    let last = AtomicU64::new(0);
    let large = pipes.take();
    let size = large.as_ref().map(|_| CHUNK);
    let up = one_way(client, upstream, &counts.up, &last, started, size);
    let down = one_way(upstream, client, &counts.down, &last, started, size);
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

/// What one splice from the source into the pipe did.
enum Filled {
    Bytes(usize),
    /// The source has ended.
    End,
    /// The source has bytes, but the pipe has no room for them now.
    PipeFull,
}

/// Moves `src` to `dst` until `src` ends, then shuts `dst` for writing,
/// through a pipe of `size` (the kernel's default when `None`).
///
/// The pipe is filled from `src` and drained into `dst` at the same time,
/// each as soon as it can move: a slow `dst` does not stop `src` from being
/// read while the pipe has room, nor the reverse, so that neither sender
/// waits for the other's round trip.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    count: &AtomicU64,
    last: &AtomicU64,
    started: Instant,
    size: Option<usize>,
) -> io::Result<()> {
    let (pipe_r, pipe_w, room) = pipe(size)?;
    let mut in_pipe = 0usize;
    let mut src_open = true;
    let mut pipe_full = false;
    loop {
        if !src_open && in_pipe == 0 {
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
        let fill = src_open && !pipe_full && in_pipe < room;
        tokio::select! {
            r = src.readable(), if fill => {
                r?;
                // EAGAIN with bytes waiting in the socket means the pipe is
                // full (its slots, not its bytes): that keeps the socket's
                // readiness, which only draining the pipe can use.
                //
                // splice also stops at an urgent mark, with 0 (once the
                // source has ended too) or EAGAIN: the byte there is moved
                // by hand once the pipe is empty, and splice goes on past it.
                let filled = src.try_io(Interest::READABLE, || {
                    match splice(src.as_fd(), pipe_w.as_fd(), room - in_pipe) {
                        Ok(0) if in_pipe > 0 && at_mark(src) => Ok(Filled::PipeFull),
                        Ok(0) if at_mark(src) => urgent_byte(src, &pipe_w),
                        Ok(0) => Ok(Filled::End),
                        Ok(n) => Ok(Filled::Bytes(n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock
                            && in_pipe > 0
                            && unread(src) > 0 => Ok(Filled::PipeFull),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock
                            && in_pipe == 0
                            && at_mark(src) => urgent_byte(src, &pipe_w),
                        Err(e) => Err(e),
                    }
                });
                match filled {
                    Ok(Filled::Bytes(n)) => in_pipe += n,
                    Ok(Filled::End) => src_open = false,
                    Ok(Filled::PipeFull) => pipe_full = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            r = dst.writable(), if in_pipe > 0 => {
                r?;
                // The pipe holds bytes, so EAGAIN can only mean `dst` is full.
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe_r.as_fd(), dst.as_fd(), in_pipe)
                }) {
                    Ok(k) => {
                        in_pipe -= k;
                        pipe_full = false;
                        count.fetch_add(k as u64, Ordering::Relaxed);
                        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Bytes received on `sock` and not yet read (0 when that cannot be told).
fn unread(sock: &TcpStream) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    n
}

/// Makes `sock` keep urgent data in the stream, where [`urgent_byte`] reads
/// it, instead of apart (where plain reads would skip it).
pub fn inline_urgent(sock: &TcpStream) -> io::Result<()> {
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::OobInline, &true)
        .map_err(io::Error::from)
}

/// `SIOCATMARK` from <asm-generic/sockios.h> (the libc crate lacks it).
const SIOCATMARK: libc::Ioctl = 0x8905;

/// Whether the next byte to read from `sock` is urgent data.
fn at_mark(sock: &TcpStream) -> bool {
    let mut at: libc::c_int = 0;
    // SAFETY: SIOCATMARK writes one int through the pointer.
    unsafe { libc::ioctl(sock.as_raw_fd(), SIOCATMARK, &mut at) == 0 && at != 0 }
}

/// Moves the urgent byte `src` is stopped at into the (empty) pipe. Reading
/// it clears the mark, so splice(2) goes on from the next byte.
fn urgent_byte(src: &TcpStream, pipe_w: &OwnedFd) -> io::Result<Filled> {
    let mut byte = [0u8; 1];
    // SAFETY: recv writes at most one byte into `byte`.
    let n = unsafe { libc::recv(src.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0) };
    match n {
        0 => return Ok(Filled::End),
        // At the mark, recv(2) also says EAGAIN while a signal is pending:
        // with bytes waiting, the readiness is kept for another try. (With
        // none, the urgent byte was announced but has not come yet.)
        n if n < 0 => {
            let e = io::Error::last_os_error();
            let retry = matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) && unread(src) > 0;
            return if retry { Ok(Filled::Bytes(0)) } else { Err(e) };
        }
        _ => {}
    }
    // An empty pipe always has room for one byte.
    nix::unistd::write(pipe_w, &byte).map_err(io::Error::from)?;
    Ok(Filled::Bytes(1))
}

/// A non-blocking pipe, enlarged to `size` where the system allows, and
/// the bytes it holds.
fn pipe(size: Option<usize>) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A smaller pipe only costs more calls.
    // SAFETY: F_SETPIPE_SZ and F_GETPIPE_SZ on an open pipe descriptor.
    let size = unsafe {
        if let Some(size) = size {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int);
        }
        libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
    };
    let size = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
    Ok((r, w, size))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback TCP streams.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Megabytes each way, one reader slow enough that the pipe fills: every
    /// byte arrives in order, each end's EOF is passed on, the counts agree.
    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_in_order_and_the_eof() {
        let (mut client, client_side) = pair().await;
        let (upstream_side, mut upstream) = pair().await;
        let down = pattern(8 << 20, 0x5a);
        let up = pattern(3 << 20, 0xa5);
        let (counts, pipes) = (Counts::default(), LargePipes::default());
        let relay = relay(
            &client_side,
            &upstream_side,
            &counts,
            Duration::from_secs(30),
            &pipes,
        );
        let server = async {
            let got = send_and_read(&mut upstream, &down, false).await;
            assert!(
                got == up,
                "upstream got {} bytes, not the client's",
                got.len()
            );
        };
        let client_io = async {
            // Slow: the relay's pipe and socket buffers fill meanwhile.
            let got = send_and_read(&mut client, &up, true).await;
            assert!(
                got == down,
                "client got {} bytes, not the upstream's",
                got.len()
            );
        };
        let (r, (), ()) = tokio::join!(relay, server, client_io);
        r.expect("relay");
        assert_eq!(counts.get(), (3 << 20, 8 << 20));
    }

    /// The first [`LARGE_PIPES`] tunnels get large pipes, the next ones the
    /// kernel's default; a tunnel that ends gives its place back.
    #[test]
    fn only_a_few_tunnels_at_once_get_large_pipes() {
        let pipes = LargePipes::default();
        let large: Vec<_> = (0..LARGE_PIPES).map_while(|_| pipes.take()).collect();
        assert_eq!(large.len(), LARGE_PIPES);
        assert!(pipes.take().is_none());
        let size = |s| pipe(s).expect("pipe").2;
        assert_eq!(size(Some(CHUNK)), CHUNK);
        assert!(size(None) < CHUNK, "{}", size(None));
        drop(large);
        assert!(pipes.take().is_some());
        assert_eq!(pipes.0.available_permits(), LARGE_PIPES);
    }

    /// Sends `data` and then EOF on `s` while reading all it receives, with
    /// a pause after each read when `slow`.
    async fn send_and_read(s: &mut TcpStream, data: &[u8], slow: bool) -> Vec<u8> {
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(data).await.expect("send");
            w.shutdown().await.expect("shutdown");
        };
        let recv = async {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r.read(&mut buf).await.expect("read");
                if n == 0 {
                    break got;
                }
                got.extend_from_slice(&buf[..n]);
                if slow {
                    tokio::time::sleep(Duration::from_micros(300)).await;
                }
            }
        };
        tokio::join!(send, recv).1
    }

    /// Sends `byte` as TCP urgent data.
    fn send_urgent(sock: &TcpStream, byte: u8) {
        // SAFETY: send reads one byte from `byte`.
        let n = unsafe { libc::send(sock.as_raw_fd(), [byte].as_ptr().cast(), 1, libc::MSG_OOB) };
        assert_eq!(n, 1, "send MSG_OOB: {}", io::Error::last_os_error());
    }

    /// Urgent data each way: behind megabytes the reader has not taken yet
    /// (the relay's pipe full when it gets to the mark), while the sender
    /// waits for an answer, and just before its EOF. Every byte arrives in
    /// its place, nothing stalls, and the stream does not end early.
    #[tokio::test]
    async fn urgent_data_is_passed_on_in_its_place() {
        let (mut client, client_side) = pair().await;
        let (upstream_side, mut upstream) = pair().await;
        inline_urgent(&client_side).expect("inline");
        inline_urgent(&upstream_side).expect("inline");
        let (counts, pipes) = (Counts::default(), LargePipes::default());
        let relay = relay(
            &client_side,
            &upstream_side,
            &counts,
            Duration::from_secs(30),
            &pipes,
        );
        let bulk = pattern(4 << 20, 0x33);
        let talk = async move {
            let send = async {
                client.write_all(&bulk).await.expect("send bulk");
                send_urgent(&client, b'U');
            };
            let recv = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut got = vec![0u8; bulk.len() + 1];
                upstream
                    .read_exact(&mut got)
                    .await
                    .expect("upstream reads bulk");
                got
            };
            let ((), got) = tokio::join!(send, recv);
            assert!(got[..bulk.len()] == bulk[..], "the bulk arrived changed");
            assert_eq!(got[bulk.len()], b'U');
            let mut buf = [0u8; 4];
            // A question ending in an urgent byte, then nothing until the answer.
            client.write_all(b"abc").await.expect("send");
            send_urgent(&client, b'!');
            upstream.read_exact(&mut buf).await.expect("upstream reads");
            assert_eq!(&buf, b"abc!");
            upstream.write_all(b"ok").await.expect("answer");
            send_urgent(&upstream, b'?');
            client
                .read_exact(&mut buf[..3])
                .await
                .expect("client reads");
            assert_eq!(&buf[..3], b"ok?");
            // An urgent byte just before each end's EOF.
            client.write_all(b"de").await.expect("send");
            send_urgent(&client, b'f');
            client.shutdown().await.expect("shutdown");
            upstream.write_all(b"gh").await.expect("send");
            send_urgent(&upstream, b'i');
            upstream.shutdown().await.expect("shutdown");
            let (mut up, mut down) = (Vec::new(), Vec::new());
            upstream
                .read_to_end(&mut up)
                .await
                .expect("upstream reads to EOF");
            client
                .read_to_end(&mut down)
                .await
                .expect("client reads to EOF");
            assert_eq!((up.as_slice(), down.as_slice()), (&b"def"[..], &b"ghi"[..]));
        };
        let (r, ()) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(relay, talk) })
                .await
                .expect("the relay stalled at urgent data");
        r.expect("relay");
        assert_eq!(counts.get(), ((4 << 20) + 8, 6));
    }
}
