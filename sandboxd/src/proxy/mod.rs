//! The allowlist proxies sandboxd serves inside each allowlist sandbox's
//! network namespace: HTTP/1.1 (CONNECT and absolute-form, keep-alive, with
//! TLS inspection when the profile asks) and SOCKS5 (CONNECT only). Every
//! destination is decided by the session's policy, resolved by the daemon,
//! vetted against the SSRF guard and dialled exactly as vetted.

use crate::net::Session;
use std::sync::Arc;

/// Serves the HTTP proxy on `listener` (bound inside the sandbox) until dropped;
/// dropping it ends every connection it started.
pub async fn serve_http(listener: std::net::TcpListener, session: Arc<Session>) -> std::io::Result<()> {
    let _ = (listener, session);
    todo!()
}

/// Serves the SOCKS5 proxy on `listener` until dropped; dropping it ends every
/// connection it started.
pub async fn serve_socks(listener: std::net::TcpListener, session: Arc<Session>) -> std::io::Result<()> {
    let _ = (listener, session);
    todo!()
}
