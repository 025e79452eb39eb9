//! The allowlist proxies sandboxd serves inside each allowlist sandbox's
//! network namespace: HTTP/1.1 (CONNECT and absolute-form, keep-alive, with
//! TLS inspection when the profile asks) and SOCKS5 (CONNECT only). Every
//! destination is decided by the session's policy, resolved by the daemon,
//! vetted against the SSRF guard and dialled exactly as vetted.
//!
//! [`dial`] is that road out, shared by all; [`http`] the request loop and
//! its framing; [`connect`] what tunnels carry (SNI check, splice or
//! inspection); [`socks`] the SOCKS5 handshake; [`sni`] reads ClientHellos;
//! [`tunnel`] splices bytes.

mod connect;
mod dial;
mod http;
pub mod sni;
mod socks;
mod tunnel;

pub use tunnel::LargePipes;

use crate::net::Session;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Longest wait for an upstream TCP connection (and its TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request head (or a SOCKS handshake) once a connection is open.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client connection may sit between two requests.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a transfer or tunnel may move no byte at all.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections served at once per sandbox, by its HTTP and SOCKS proxies
/// together; more are closed on arrival.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves the HTTP proxy on `listener` (bound inside the sandbox) until dropped;
/// dropping it ends every connection it started.
pub async fn serve_http(
    listener: std::net::TcpListener,
    session: Arc<Session>,
) -> std::io::Result<()> {
    serve(listener, session, |session, stream| async move {
        let client = http::Buffered::new(stream, Vec::new());
        let counts = tunnel::Counts::default();
        if let http::Outcome::Connect { head, client } =
            http::serve(&session, client, http::Mode::Proxy, None, &counts).await
        {
            connect::connect(&session, head, client).await;
        }
    })
    .await
}

/// Serves the SOCKS5 proxy on `listener` until dropped; dropping it ends every
/// connection it started.
pub async fn serve_socks(
    listener: std::net::TcpListener,
    session: Arc<Session>,
) -> std::io::Result<()> {
    serve(listener, session, |session, stream| async move {
        socks::handle(&session, stream).await;
    })
    .await
}

/// The accept loop: one task per connection, all owned by this future.
async fn serve<F, Fut>(
    listener: std::net::TcpListener,
    session: Arc<Session>,
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(Arc<Session>, TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) if transient(&e) => {
                        tracing::warn!(exec = %session.exec_id, "proxy accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let Ok(slot) = Arc::clone(&session.connections).try_acquire_owned() else {
                    tracing::warn!(exec = %session.exec_id, "proxy: {MAX_CONNECTIONS} connections open, one refused");
                    continue;
                };
                let Some(user_slot) = session.user_connection("proxy") else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let served = handle(Arc::clone(&session), stream);
                tasks.spawn(async move {
                    served.await;
                    drop((slot, user_slot));
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Accept errors that concern one connection or a passing shortage.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}
