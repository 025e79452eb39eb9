//! The filtering DNS server inside each allowlist sandbox (127.0.0.1:53, UDP
//! and TCP): allowed names of type A, AAAA, CNAME and HTTPS are answered
//! through the daemon's [`crate::net::Resolver`]; denied names get NXDOMAIN,
//! other types of allowed names an empty answer, and nothing else is sent upstream.

use crate::net::Session;
use std::sync::Arc;

/// Serves `udp` and `tcp` (bound inside the sandbox) until dropped; dropping
/// it ends every connection it started.
pub async fn serve(udp: std::net::UdpSocket, tcp: std::net::TcpListener, session: Arc<Session>) -> std::io::Result<()> {
    let _ = (udp, tcp, session);
    todo!()
}
