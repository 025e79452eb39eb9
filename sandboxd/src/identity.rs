//! Who is calling: peer credentials of the Unix socket connection.
//!
//! The identity is read from the kernel (SO_PEERCRED for uid, gid and pid,
//! SO_PEERGROUPS for the supplementary groups) when the connection is
//! accepted, and travels with the connection as tonic's connect info. No
//! request field can change it.

use crate::backend::spec::Credentials;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// `SO_PEERGROUPS` (Linux 4.13+; same value on every architecture but
/// sparc/mips, which this daemon does not target).
const SO_PEERGROUPS: libc::c_int = 59;

/// The process on the other end of a connection, as the kernel saw it at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The caller's pid in the daemon's pid namespace, when the kernel knows it.
    pub pid: Option<i32>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading the peer's credentials (SO_PEERCRED): {0}")]
    PeerCred(#[source] io::Error),
    #[error("reading the peer's groups (SO_PEERGROUPS): {0}")]
    PeerGroups(#[source] io::Error),
}

impl Caller {
    /// The peer of the connected Unix socket `fd`.
    pub fn of_socket(fd: BorrowedFd<'_>) -> Result<Caller, IdentityError> {
        let cred = peer_cred(fd).map_err(IdentityError::PeerCred)?;
        let groups = peer_groups(fd).map_err(IdentityError::PeerGroups)?;
        Ok(Caller {
            uid: cred.uid,
            gid: cred.gid,
            pid: (cred.pid > 0).then_some(cred.pid),
            groups,
        })
    }

    /// Whether `gid` is the caller's primary or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Members of the admin group see and manage everyone's sandboxes. Root is
    /// not an admin by itself: it has to be in the group like anyone else.
    pub fn is_admin(&self, admin_gid: Option<u32>) -> bool {
        admin_gid.is_some_and(|g| self.in_group(g))
    }

    /// The credentials a sandbox of this caller runs with.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }
}

fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred and `len` holds its size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short SO_PEERCRED answer",
        ));
    }
    Ok(cred)
}

fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // The kernel answers ERANGE with the needed size when the buffer is too small.
    let mut buf: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (buf.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `buf` has room for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            buf.truncate(n);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > buf.len() && n <= 65536 {
            buf.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

/// The gid named by `group`: a number, or a name looked up in `etc_group`
/// (the text of /etc/group). `None` when the name is unknown.
pub fn resolve_group(group: &str, etc_group: &str) -> Option<u32> {
    let group = group.trim();
    if group.is_empty() {
        return None;
    }
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    etc_group.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

/// What sandboxd uses of a uid's /etc/passwd entry; read once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name (`[secrets] users` may list it).
    pub name: String,
    /// The home directory, when the entry gives an absolute one.
    pub home: Option<std::path::PathBuf>,
}

impl Account {
    /// The entry of `uid` in `etc_passwd` (the text of /etc/passwd).
    pub fn find(uid: u32, etc_passwd: &str) -> Option<Account> {
        etc_passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[2].parse::<u32>().ok()? != uid {
                return None;
            }
            let home = (f.len() >= 7 && f[5].starts_with('/')).then(|| f[5].into());
            Some(Account {
                name: f[0].to_string(),
                home,
            })
        })
    }

    /// The entry of `uid` in the system's /etc/passwd, read now.
    pub fn of(uid: u32) -> Option<Account> {
        let text = std::fs::read_to_string("/etc/passwd").ok()?;
        Account::find(uid, &text)
    }
}

/// An accepted connection and its caller; tonic hands the [`Caller`] to every
/// request on the connection as connect info (`request.extensions()`).
#[derive(Debug)]
pub struct PeerStream {
    stream: UnixStream,
    caller: Caller,
    /// The caller's share of the daemon's connections, given back on close.
    _slot: Option<crate::quota::Slot>,
}

impl PeerStream {
    /// Reads the peer's identity from the kernel; a connection without one is refused.
    pub fn new(stream: UnixStream) -> Result<Self, IdentityError> {
        let caller = Caller::of_socket(stream.as_fd())?;
        Ok(PeerStream {
            stream,
            caller,
            _slot: None,
        })
    }

    /// The connection, counted against its caller's quota until it closes.
    pub fn holding(self, slot: crate::quota::Slot) -> Self {
        PeerStream {
            _slot: Some(slot),
            ..self
        }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
