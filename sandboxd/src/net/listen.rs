//! The daemon's listeners inside one allowlist sandbox: bound on 127.0.0.1 of
//! the sandbox's network namespace before its command starts, served from the
//! daemon's runtime for as long as the exec runs.

use super::{Session, DNS_PORT, HTTP_PROXY_PORT, SOCKS_PORT};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use tokio::task::JoinSet;

/// The sockets, bound (in whatever network namespace the calling thread is in).
#[derive(Debug)]
pub struct Listeners {
    http: TcpListener,
    socks: TcpListener,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn named(what: &'static str, port: u16) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("bind the {what} on 127.0.0.1:{port}: {e}"))
}

impl Listeners {
    /// Binds every listener on 127.0.0.1 of the calling thread's namespace.
    pub fn bind() -> io::Result<Listeners> {
        Ok(Listeners {
            http: TcpListener::bind(local(HTTP_PROXY_PORT)).map_err(named("HTTP proxy", HTTP_PROXY_PORT))?,
            socks: TcpListener::bind(local(SOCKS_PORT)).map_err(named("SOCKS proxy", SOCKS_PORT))?,
            dns_udp: UdpSocket::bind(local(DNS_PORT)).map_err(named("DNS server (UDP)", DNS_PORT))?,
            dns_tcp: TcpListener::bind(local(DNS_PORT)).map_err(named("DNS server (TCP)", DNS_PORT))?,
        })
    }

    /// Starts serving `session` on the listeners (on the current runtime).
    pub fn serve(self, session: Arc<Session>) -> Served {
        let mut tasks = JoinSet::new();
        let log = |what: &'static str, id: String| {
            move |r: io::Result<()>| {
                if let Err(e) = r {
                    tracing::error!(id, error = %e, "the sandbox's {what} stopped");
                }
            }
        };
        let s = Arc::clone(&session);
        let done = log("HTTP proxy", s.exec_id.clone());
        tasks.spawn(async move { done(crate::proxy::serve_http(self.http, s).await) });
        let s = Arc::clone(&session);
        let done = log("SOCKS proxy", s.exec_id.clone());
        tasks.spawn(async move { done(crate::proxy::serve_socks(self.socks, s).await) });
        let done = log("DNS server", session.exec_id.clone());
        tasks.spawn(async move { done(crate::dns::serve(self.dns_udp, self.dns_tcp, session).await) });
        Served { _tasks: tasks }
    }
}

/// The running services of one sandbox; dropping it ends them and every
/// connection they carry, and closes the listeners.
#[derive(Debug)]
pub struct Served {
    _tasks: JoinSet<()>,
}
