//! HTTP/1.1 through the proxy: the request loop shared by plain proxying
//! (absolute-form requests) and by tunnels whose HTTP the proxy reads
//! (inspected HTTPS, plain HTTP inside a CONNECT), with its message framing.
//!
//! In parts: `buffered` holds a stream with what was read from it but not
//! yet used; `head` reads and parses heads; `body` frames and copies bodies;
//! `target` splits request targets and authorities; `exchange` carries one
//! request from its checks to the relayed response; `upstream` opens or
//! reuses the connection to the server; `answer` writes the proxy's own
//! responses and records what it refuses. [`serve`], here, is the loop.

mod answer;
mod body;
mod buffered;
mod exchange;
mod head;
mod target;
mod upstream;

pub(super) use answer::record_bad_request;
pub use answer::{dial_failed, forbidden, plain};
pub(super) use body::write_counted;
pub use buffered::Buffered;
pub use head::Head;
pub use target::split_authority;
pub use upstream::{tls_connect, Upstream};

use super::dial;
use super::tunnel::Counts;
use super::{HEAD_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_TIMEOUT};
use crate::net::timed::idle;
use crate::net::{Host, Session};
use answer::record_unreadable;
use exchange::one;
use head::{read_head, HeadError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A byte stream either way, boxed for upstream connections of either kind.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where the requests of a connection go.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A client talking to the proxy: absolute-form `http://` requests, any host.
    Proxy,
    /// Inside a tunnel to one destination: origin-form requests to it, over
    /// TLS (inspected HTTPS) or not.
    Fixed { host: Host, port: u16, tls: bool },
}

/// How the request loop ended.
pub enum Outcome<C> {
    /// Its bytes are in the `counts` given.
    Done,
    /// A CONNECT request (only in [`Mode::Proxy`]); the connection and its unread bytes.
    Connect { head: Head, client: Buffered<C> },
}

/// Serves requests on `client` until it closes, a message cannot be framed,
/// or a CONNECT arrives, counting what they carry in `counts`. `upstream`:
/// a connection already open to the fixed destination.
pub async fn serve<C: Io>(
    session: &Session,
    mut client: Buffered<C>,
    mode: Mode,
    mut upstream: Option<Upstream>,
    counts: &Counts,
) -> Outcome<C> {
    let mut wait = HEAD_TIMEOUT;
    loop {
        let head = match read_head(&mut client, true, wait).await {
            Ok(h) => h,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => break,
            Err(HeadError::TooLarge) => {
                record_unreadable(session, &mode, "request head too large").await;
                let _ = plain(
                    &mut client.io,
                    431,
                    "Request Header Fields Too Large",
                    None,
                    "request head too large\n",
                )
                .await;
                break;
            }
            Err(HeadError::Malformed(m)) => {
                record_unreadable(session, &mode, &format!("malformed request: {m}")).await;
                let _ = plain(
                    &mut client.io,
                    400,
                    "Bad Request",
                    None,
                    &format!("malformed request: {m}\n"),
                )
                .await;
                break;
            }
        };
        wait = KEEPALIVE_TIMEOUT;
        if head.method == "CONNECT" {
            let Mode::Fixed { host, port, tls } = &mode else {
                return Outcome::Connect { head, client };
            };
            let protocol = if *tls { "https" } else { "http" };
            let why = "CONNECT inside a tunnel";
            record_bad_request(session, &head, protocol, &dial::host_str(host), *port, why).await;
            let _ = plain(
                &mut client.io,
                405,
                "Method Not Allowed",
                None,
                "CONNECT inside a tunnel\n",
            )
            .await;
            break;
        }
        let r = one(session, &mut client, &mode, &mut upstream, head, counts).await;
        if !r.keep_alive {
            break;
        }
    }
    let _ = idle(IDLE_TIMEOUT, client.io.shutdown()).await;
    Outcome::Done
}
