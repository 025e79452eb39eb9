//! The proxy's own answers (plain responses, the 403 of a refusal, the
//! response to a failed dial) and the records of requests it refuses as
//! unreadable or self-contradicting.

use super::exchange::Exchange;
use super::head::Head;
use super::Mode;
use crate::net::timed::{idle, write_idle};
use crate::net::{normalize_host, Block, Host, Session};
use crate::proxy::dial::{Attempt, DialError, Refused};
use crate::proxy::IDLE_TIMEOUT;
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A response the proxy writes itself: `code`, an optional `X-Proxy-Error`, a text body.
pub async fn plain<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    reason: &str,
    error: Option<&str>,
    body: &str,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    if let Some(e) = error {
        out.push_str(&format!("X-Proxy-Error: {e}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    write_idle(w, out.as_bytes(), IDLE_TIMEOUT).await?;
    idle(IDLE_TIMEOUT, w.flush()).await
}

/// The 403 of a refusal, naming the rule.
pub async fn forbidden<W: AsyncWrite + Unpin>(
    w: &mut W,
    what: &str,
    r: &Refused,
) -> io::Result<()> {
    let rule = if r.rule.is_empty() { "-" } else { &r.rule };
    let body = format!("sandboxd refused {what}: {}\nrule: {rule}\n", r.reason);
    plain(w, 403, "Forbidden", Some(&r.code()), &body).await
}

/// The response for a failed way out.
pub async fn dial_failed<W: AsyncWrite + Unpin>(
    w: &mut W,
    what: &str,
    e: &DialError,
) -> io::Result<()> {
    match e {
        DialError::Refused(r) => forbidden(w, what, r).await,
        DialError::NotAudited(_) => {
            plain(
                w,
                503,
                "Service Unavailable",
                Some("not-audited"),
                &format!("{e}\n"),
            )
            .await
        }
        DialError::Timeout { .. } => {
            plain(w, 504, "Gateway Timeout", None, &format!("{e}\n")).await
        }
        DialError::Resolve { .. } | DialError::Connect { .. } => {
            plain(w, 502, "Bad Gateway", None, &format!("{e}\n")).await
        }
    }
}

/// Records and answers a self-contradicting request (403 bad-request).
#[allow(clippy::too_many_arguments)]
pub(super) async fn bad_request<W: AsyncWrite + Unpin>(
    session: &Session,
    io: &mut W,
    head: &Head,
    protocol: &'static str,
    host: &str,
    port: u16,
    message: &str,
) -> Exchange {
    let r = record_bad_request(session, head, protocol, host, port, message).await;
    let _ = forbidden(io, &format!("{} {}", head.method, head.target), &r).await;
    Exchange::close()
}

/// Records, inside a tunnel, the refusal of bytes that are no readable
/// request (to the proxy itself they name no destination to record).
pub(super) async fn record_unreadable(session: &Session, mode: &Mode, why: &str) {
    if let Mode::Fixed { host, port, tls } = mode {
        let a = Attempt::new(if *tls { "https" } else { "http" }, host.clone(), *port);
        a.refuse(session, Refused::new(Block::BadRequest, "", why))
            .await;
    }
}

/// Records the refusal of a request that cannot be served as asked (the
/// caller answers it); `host` as the client wrote it.
pub(in crate::proxy) async fn record_bad_request(
    session: &Session,
    head: &Head,
    protocol: &'static str,
    host: &str,
    port: u16,
    message: &str,
) -> Refused {
    let host_rec = normalize_host(host).unwrap_or_else(|_| Host::Name(host.to_string()));
    let mut a = Attempt::new(protocol, host_rec, port);
    a.method = Some(head.method.clone());
    a.path = Some(head.target.clone());
    a.refuse(session, Refused::new(Block::BadRequest, "", message))
        .await
}
