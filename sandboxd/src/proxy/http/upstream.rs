//! The connection to the server: opened (looked up, vetted, recorded and
//! dialled, over TLS when the tunnel is inspected) or, kept from the
//! previous request, found still open and quiet before it is used again.

use super::buffered::Buffered;
use super::{Io, Mode};
use crate::net::{Block, Host, Session};
use crate::proxy::dial::{self, Admitted, Attempt, DialError, Open, Refused};
use crate::proxy::tunnel::Counts;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// An open upstream connection and whom it reaches.
pub struct Upstream {
    pub host: Host,
    pub port: u16,
    pub addr: IpAddr,
    pub conn: Buffered<Box<dyn Io>>,
}

/// Whether a kept upstream connection is still open and quiet.
pub(super) async fn still_open(u: &mut Upstream) -> bool {
    if !u.conn.pending().is_empty() {
        return false;
    }
    // Polls the read once: nothing ready means open and quiet.
    matches!(u.conn.fill(Duration::ZERO).await, Err(e) if e.kind() == io::ErrorKind::TimedOut)
}

/// Looks up, vets, records and dials the destination; over TLS when
/// inspected. With `clear_secret` (the rule of a secret the request carries
/// in clear) only the addresses it may go to are dialled, and with none, the
/// request is refused. The connection, and the attempt open on it.
pub(super) async fn open_upstream<'a>(
    session: &'a Session,
    a: &'a Attempt,
    admitted: &Admitted,
    mode: &Mode,
    clear_secret: Option<&str>,
    counts: &'a Counts,
) -> Result<(Upstream, Open<'a>), DialError> {
    let mut addrs = dial::vetted_addrs(session, a, admitted).await?;
    if let (Some(rule), Some(&first)) = (clear_secret, addrs.first()) {
        addrs.retain(|ip| session.policy.may_inject(false, *ip).is_ok());
        if addrs.is_empty() {
            let reason = session
                .policy
                .may_inject(false, first)
                .err()
                .unwrap_or_default();
            let mut r = Refused::new(Block::NotTls, rule, reason);
            r.addr = Some(first);
            return Err(DialError::Refused(a.refuse(session, r).await));
        }
    }
    let (tcp, open) = dial::dial(session, a, admitted, &addrs, counts).await?;
    let addr = open.addr();
    let io: Box<dyn Io> = match mode {
        Mode::Fixed { tls: true, .. } => match tls_connect(session, &a.host, tcp).await {
            Ok(tls) => Box::new(tls),
            Err(source) => {
                let e = DialError::Connect {
                    addr: std::net::SocketAddr::new(addr, a.port),
                    source,
                };
                open.end(&e.to_string());
                return Err(e);
            }
        },
        _ => Box::new(tcp),
    };
    let up = Upstream {
        host: a.host.clone(),
        port: a.port,
        addr,
        conn: Buffered::new(io, Vec::new()),
    };
    Ok((up, open))
}

/// TLS to an upstream server, verified by the inspector's client side.
pub async fn tls_connect(
    session: &Session,
    host: &Host,
    tcp: tokio::net::TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let inspector = session
        .inspector
        .as_ref()
        .ok_or_else(|| io::Error::other("inspection without an inspector"))?;
    let name = match host {
        Host::Name(n) => {
            rustls::pki_types::ServerName::try_from(n.clone()).map_err(io::Error::other)?
        }
        Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
    };
    let connector = tokio_rustls::TlsConnector::from(inspector.client_config());
    tokio::time::timeout(crate::proxy::CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
