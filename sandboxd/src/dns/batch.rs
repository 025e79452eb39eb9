//! Datagrams in batches: up to [`BATCH`] queries read with one recvmmsg(2)
//! and their replies sent with one sendmmsg(2), on a non-blocking socket
//! (the caller waits for readiness). Peers stay in the kernel's own form
//! from the read to the reply.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Datagrams taken or sent with one system call.
pub const BATCH: usize = 32;
/// Bytes kept of one query. A longer datagram is cut to this: what the
/// server reads of a query (header, question, the OPT record right after
/// it) lies well within, so it is answered as if whole.
const MAX_QUERY: usize = 4096;

/// The sender of one datagram, as the kernel gave it.
#[derive(Clone, Copy)]
pub struct Peer {
    addr: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Peer {
    fn empty() -> Peer {
        Peer {
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) value.
            addr: unsafe { mem::zeroed() },
            len: 0,
        }
    }

    /// As a socket address; `None` for a family other than IPv4 and IPv6.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match i32::from(self.addr.ss_family) {
            libc::AF_INET if self.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked),
                // and sockaddr_storage is aligned for every address type.
                let a = unsafe {
                    &*(&self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if self.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, a sockaddr_in6.
                let a = unsafe {
                    &*(&self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}

/// Points one message header at `buf` (through `iov`) and at the address
/// `addr` of `addr_len` bytes.
fn point(
    hdr: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    buf: &mut [u8],
    addr: &mut libc::sockaddr_storage,
    addr_len: libc::socklen_t,
) {
    iov.iov_base = buf.as_mut_ptr().cast();
    iov.iov_len = buf.len();
    hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
    hdr.msg_hdr.msg_namelen = addr_len;
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = 1;
}

/// Buffers for one batch of received datagrams.
pub struct Datagrams {
    bufs: Box<[[u8; MAX_QUERY]; BATCH]>,
    lens: [usize; BATCH],
    peers: [Peer; BATCH],
}

impl Datagrams {
    pub fn new() -> Datagrams {
        Datagrams {
            bufs: Box::new([[0; MAX_QUERY]; BATCH]),
            lens: [0; BATCH],
            peers: [Peer::empty(); BATCH],
        }
    }

    /// Reads what datagrams are waiting, at most [`BATCH`], without
    /// blocking: how many (`WouldBlock` when none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY (zeroed): iovec and mmsghdr are plain data; null pointers and
        // zero lengths are valid until filled in below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let whole = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            point(hdr, iov, &mut self.bufs[i], &mut self.peers[i].addr, whole);
        }
        // SAFETY: every header points at a buffer, an iovec and an address
        // that live (borrowed mutably) for the call, with their true sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, hdr) in hdrs.iter().take(n).enumerate() {
            self.lens[i] = (hdr.msg_len as usize).min(MAX_QUERY);
            self.peers[i].len = hdr.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// The first `n` datagrams read and their senders.
    pub fn iter(&self, n: usize) -> impl Iterator<Item = (&[u8], Peer)> {
        (0..n.min(BATCH)).map(|i| (&self.bufs[i][..self.lens[i]], self.peers[i]))
    }
}

/// Replies waiting to be sent together, their buffers reused batch after batch.
pub struct Replies {
    outs: Vec<Vec<u8>>,
    peers: Vec<Peer>,
}

impl Replies {
    pub fn new() -> Replies {
        Replies {
            outs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            peers: Vec::with_capacity(BATCH),
        }
    }

    pub fn clear(&mut self) {
        self.peers.clear();
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// The buffer the next reply is built in (kept only once [`push`](Self::push)ed).
    pub fn next_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.outs[self.peers.len()]
    }

    /// Keeps the reply just built in [`next_buffer`](Self::next_buffer), for `peer`.
    pub fn push(&mut self, peer: Peer) {
        self.peers.push(peer);
    }

    /// Sends the replies from the `from`th on, without blocking: how many
    /// went (an error is the first one's).
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let count = self.peers.len().saturating_sub(from);
        // SAFETY (zeroed): as in `Datagrams::recv`.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).take(count).enumerate() {
            let peer = &mut self.peers[from + i];
            point(hdr, iov, &mut self.outs[from + i], &mut peer.addr, peer.len);
        }
        // SAFETY: the first `count` headers point at live replies and
        // addresses of their true lengths; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
