//! SOCKS5 (RFC 1928): no authentication, CONNECT only, to names (ATYP 3)
//! or address literals; BIND and UDP ASSOCIATE answered "not supported".

use super::connect;
use super::dial::{self, Attempt, DialError, Refused};
use super::tunnel::Counts;
use super::{HEAD_TIMEOUT, IDLE_TIMEOUT};
use crate::net::timed::{idle, write_idle};
use crate::net::{normalize_host, Block, Host, Session};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
/// Address types.
const ATYP_IPV4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Reply codes.
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NOT_ALLOWED: u8 = 2;
const NETWORK_UNREACHABLE: u8 = 3;
const HOST_UNREACHABLE: u8 = 4;
const CONNECTION_REFUSED: u8 = 5;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ATYP_NOT_SUPPORTED: u8 = 8;

/// What the client asked for.
enum Request {
    Connect(Host, u16),
    /// Answered with this reply code and closed.
    Fail(u8),
    /// A destination that is no host name or port: refused (and recorded).
    Malformed {
        host: String,
        port: u16,
    },
}

/// Serves one SOCKS5 client.
pub async fn handle(session: &Session, mut client: TcpStream) {
    let req = match tokio::time::timeout(HEAD_TIMEOUT, handshake(&mut client)).await {
        Ok(Ok(Some(r))) => r,
        _ => return,
    };
    let (host, port) = match req {
        Request::Connect(h, p) => (h, p),
        Request::Fail(code) => {
            let _ = reply(&mut client, code).await;
            return;
        }
        Request::Malformed { host, port } => {
            let a = Attempt::new("socks", Host::Name(host.clone()), port);
            let why = format!("{host:?} port {port} is no destination");
            a.refuse(session, Refused::new(Block::BadRequest, "", why))
                .await;
            let _ = reply(&mut client, NOT_ALLOWED).await;
            return;
        }
    };
    let a = Attempt::new("socks", host.clone(), port);
    let decision = session.policy.decide_host(&host, port);
    let counts = Counts::default();
    let (upstream, open) = match dial::open(session, &a, decision, &counts).await {
        Ok(u) => u,
        Err(e) => {
            let _ = reply(&mut client, failure_code(&e)).await;
            return;
        }
    };
    if reply(&mut client, SUCCEEDED).await.is_err() {
        open.end("client gone");
        return;
    }
    connect::carry(session, client, Vec::new(), upstream, open).await;
}

/// The reply code for a failed way out.
fn failure_code(e: &DialError) -> u8 {
    match e {
        DialError::Refused(_) | DialError::NotAudited(_) => NOT_ALLOWED,
        DialError::Resolve { .. } | DialError::Timeout { .. } => HOST_UNREACHABLE,
        DialError::Connect { source, .. } => match source.kind() {
            io::ErrorKind::ConnectionRefused => CONNECTION_REFUSED,
            io::ErrorKind::NetworkUnreachable => NETWORK_UNREACHABLE,
            io::ErrorKind::HostUnreachable => HOST_UNREACHABLE,
            _ => GENERAL_FAILURE,
        },
    }
}

/// Method negotiation and the request; `None` when the client is no SOCKS5
/// client or offers no method without authentication (answered and closed).
async fn handshake(c: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut hdr = [0u8; 2];
    c.read_exact(&mut hdr).await?;
    if hdr[0] != VERSION {
        return Ok(None);
    }
    let mut methods = vec![0u8; usize::from(hdr[1])];
    c.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        c.write_all(&[VERSION, NO_METHOD]).await?;
        return Ok(None);
    }
    c.write_all(&[VERSION, NO_AUTH]).await?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    if req[0] != VERSION {
        return Ok(None);
    }
    let host = match req[3] {
        ATYP_IPV4 => {
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await?;
            Ok(Ok(Host::Ip(IpAddr::V4(Ipv4Addr::from(b)))))
        }
        ATYP_IPV6 => {
            let mut b = [0u8; 16];
            c.read_exact(&mut b).await?;
            Ok(Ok(Host::Ip(IpAddr::V6(Ipv6Addr::from(b)))))
        }
        ATYP_NAME => {
            let len = c.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            c.read_exact(&mut name).await?;
            let raw = String::from_utf8_lossy(&name).into_owned();
            Ok(std::str::from_utf8(&name)
                .ok()
                .and_then(|n| normalize_host(n).ok())
                .ok_or(raw))
        }
        _ => Err(()),
    };
    let port = c.read_u16().await?;
    Ok(Some(match (req[1], host) {
        (_, Err(())) => Request::Fail(ATYP_NOT_SUPPORTED),
        (cmd, _) if cmd != CMD_CONNECT => Request::Fail(COMMAND_NOT_SUPPORTED),
        (_, Ok(Err(host))) => Request::Malformed { host, port },
        (_, Ok(Ok(h))) if port == 0 => Request::Malformed {
            host: dial::host_str(&h),
            port,
        },
        (_, Ok(Ok(h))) => Request::Connect(h, port),
    }))
}

/// A reply whose bound address is 0.0.0.0:0: the daemon's own address
/// and port upstream are the host's to know, not the sandbox's (clients
/// do not use them for CONNECT).
async fn reply(c: &mut TcpStream, code: u8) -> io::Result<()> {
    let out = [VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0];
    write_idle(c, &out, IDLE_TIMEOUT).await?;
    idle(IDLE_TIMEOUT, c.flush()).await
}
