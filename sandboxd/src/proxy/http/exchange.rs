//! One request through the proxy: its destination checked against the
//! target and the Host header, the policy's decision and header injections,
//! the upstream connection opened or reused, then the request sent and the
//! response relayed.

use super::answer::{bad_request, dial_failed, forbidden, plain, record_bad_request};
use super::body::{content_length, copy_body, request_body, response_body, write, Body, CopyError};
use super::buffered::Buffered;
use super::head::{read_head, Head, HeadError};
use super::target::{split_absolute, split_authority};
use super::upstream::{open_upstream, still_open, Upstream};
use super::{Io, Mode};
use crate::net::decide::{has_dot_segment, Injection};
use crate::net::timed::{idle, write_idle};
use crate::net::{Host, Session};
use crate::proxy::dial::{self, Attempt, Refused};
use crate::proxy::tunnel::Counts;
use crate::proxy::IDLE_TIMEOUT;
use std::io;
use std::net::IpAddr;
use tokio::io::AsyncWriteExt;

/// The result of one request.
pub(super) struct Exchange {
    pub(super) keep_alive: bool,
}

impl Exchange {
    pub(super) fn close() -> Exchange {
        Exchange { keep_alive: false }
    }
}

/// `value` with each `{secret:NAME}` replaced; the missing name is the error.
fn fill_secrets(value: &str, session: &Session) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("{secret:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "{secret:".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {value:?}"))?;
        let name = &after[..end];
        let secret = session
            .secrets
            .get(name)
            .ok_or_else(|| format!("secret {name} is not available"))?;
        out.push_str(secret);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("an injected value holds a line break".into());
    }
    Ok(out)
}

/// Header fields never forwarded: connection-specific, or the proxy's own.
fn hop_by_hop(name: &str, named_by_connection: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "connection"
            | "keep-alive"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "expect"
    ) || n.starts_with("proxy-")
        || named_by_connection.contains(&n)
}

/// One request: checks, decision, forward, response; its bytes counted in `counts`.
pub(super) async fn one<C: Io>(
    session: &Session,
    client: &mut Buffered<C>,
    mode: &Mode,
    upstream: &mut Option<Upstream>,
    head: Head,
    counts: &Counts,
) -> Exchange {
    let io = &mut client.io;
    // The destination and the origin-form target.
    let (protocol, host, port, path) = match mode {
        Mode::Proxy => {
            let Some((scheme, auth, path)) = split_absolute(&head.target) else {
                let _ = plain(
                    io,
                    400,
                    "Bad Request",
                    None,
                    "this is a proxy: requests need an absolute http:// URI\n",
                )
                .await;
                return Exchange::close();
            };
            if scheme != "http" {
                let m = format!("scheme {scheme} is not proxied; use CONNECT for https");
                record_bad_request(session, &head, "http", auth, 0, &m).await;
                let _ = plain(io, 400, "Bad Request", None, &format!("{m}\n")).await;
                return Exchange::close();
            }
            match split_authority(auth, Some(80)) {
                Ok((h, p)) => ("http", h, p, path),
                Err(m) => return bad_request(session, io, &head, "http", auth, 80, &m).await,
            }
        }
        Mode::Fixed { host, port, tls } => {
            let protocol = if *tls { "https" } else { "http" };
            if head.target.starts_with('/') {
                (
                    protocol,
                    host.clone(),
                    *port,
                    head.target
                        .split('#')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            } else {
                let Some((_, auth, path)) = split_absolute(&head.target) else {
                    let _ = plain(io, 400, "Bad Request", None, "bad request target\n").await;
                    return Exchange::close();
                };
                match split_authority(auth, Some(*port)) {
                    Ok((h, p)) if h == *host && p == *port => (protocol, h, p, path),
                    other => {
                        let m = match other {
                            Ok(_) => format!(
                                "the URI's authority {auth} is not the tunnel's destination"
                            ),
                            Err(m) => m,
                        };
                        let host = dial::host_str(host);
                        return bad_request(session, io, &head, protocol, &host, *port, &m).await;
                    }
                }
            }
        }
    };
    let host_s = dial::host_str(&host);
    if let Err(m) = consistent(&head, mode, &host, port, &path) {
        return bad_request(session, io, &head, protocol, &host_s, port, &m).await;
    }
    let bare_path = path.split('?').next().unwrap_or("/").to_string();
    let body = match request_body(&head) {
        Ok(b) => b,
        Err(m) => {
            record_bad_request(session, &head, protocol, &host_s, port, m).await;
            let _ = plain(io, 400, "Bad Request", None, &format!("{m}\n")).await;
            return Exchange::close();
        }
    };
    let mut attempt = Attempt::new(protocol, host.clone(), port);
    attempt.method = Some(head.method.clone());
    attempt.path = Some(bare_path.clone());
    let what = format!("{} {host_s}:{port}{bare_path}", head.method);
    let (decision, injections) =
        session
            .policy
            .decide_request(&host, port, &head.method, &bare_path);
    let admitted = match dial::admit(session, &attempt, decision).await {
        Ok(a) => a,
        Err(r) => {
            let _ = forbidden(io, &what, &r).await;
            return Exchange::close();
        }
    };
    let injected = match injected_headers(session, &injections) {
        Ok(v) => v,
        Err(m) => {
            let rule = injections
                .first()
                .map(|i| i.rule.clone())
                .unwrap_or_default();
            let r = attempt
                .refuse(
                    session,
                    Refused {
                        block: None,
                        rule,
                        reason: m,
                        addr: None,
                    },
                )
                .await;
            let _ = forbidden(io, &what, &r).await;
            return Exchange::close();
        }
    };
    // The rule of a secret this request would carry in clear, if any: then
    // it goes only to an address the secret may go to in clear.
    let clear_secret = (!injected.is_empty() && !matches!(mode, Mode::Fixed { tls: true, .. }))
        .then(|| {
            injections
                .first()
                .map(|i| i.rule.clone())
                .unwrap_or_default()
        });
    let in_clear_to =
        |ip: IpAddr| clear_secret.is_none() || session.policy.may_inject(false, ip).is_ok();
    // The upstream connection: the open one when it is to this destination,
    // still up, and at such an address.
    let reuse = match upstream.take() {
        Some(mut u) if u.host == host && u.port == port && in_clear_to(u.addr) => {
            still_open(&mut u).await.then_some(u)
        }
        _ => None,
    };
    let opened = match reuse {
        Some(u) => dial::record_allowed(session, &attempt, &admitted, u.addr, counts, true)
            .await
            .map(|open| (u, open)),
        None => {
            let secret = clear_secret.as_deref();
            open_upstream(session, &attempt, &admitted, mode, secret, counts).await
        }
    };
    let (mut up_conn, open) = match opened {
        Ok(o) => o,
        Err(e) => {
            let _ = dial_failed(io, &what, &e).await;
            return Exchange::close();
        }
    };
    let f = exchange(
        client,
        &mut up_conn,
        &head,
        &path,
        body,
        &injected,
        &host_s,
        port,
        counts,
    )
    .await;
    open.end(f.error.as_deref().unwrap_or("completed"));
    if f.upstream_reusable {
        *upstream = Some(up_conn);
    }
    Exchange {
        keep_alive: f.keep_client,
    }
}

/// Why a request contradicts itself, if it does: its Host header must
/// name its destination (`host`, `port`), once, and its `path` may hold no
/// `.` or `..` segment (servers would read it as another path than the
/// rules judged).
fn consistent(head: &Head, mode: &Mode, host: &Host, port: u16, path: &str) -> Result<(), String> {
    let hosts: Vec<&[u8]> = head.all("host").collect();
    if hosts.len() > 1 {
        return Err("more than one Host header".into());
    }
    if let Some(v) = hosts.first() {
        let v = String::from_utf8_lossy(v);
        match split_authority(v.trim(), Some(default_port(mode, port))) {
            Ok((h, p)) if h == *host && p == port => {}
            Ok(_) => {
                let host_s = dial::host_str(host);
                return Err(format!(
                    "Host header {v:?} is not the request's host {host_s}:{port}"
                ));
            }
            Err(m) => return Err(format!("Host header: {m}")),
        }
    }
    let bare_path = path.split('?').next().unwrap_or("/");
    if has_dot_segment(bare_path) {
        return Err("a . or .. segment in the path".into());
    }
    Ok(())
}

fn default_port(mode: &Mode, port: u16) -> u16 {
    match mode {
        Mode::Proxy => 80,
        Mode::Fixed { tls: true, .. } => 443,
        Mode::Fixed { .. } => port,
    }
}

/// The injections' headers with their secrets filled in.
fn injected_headers(
    session: &Session,
    injections: &[Injection],
) -> Result<Vec<(String, String)>, String> {
    injections
        .iter()
        .map(|i| Ok((i.header.clone(), fill_secrets(&i.value, session)?)))
        .collect()
}

/// What one forwarded request did.
struct Forwarded {
    keep_client: bool,
    upstream_reusable: bool,
    error: Option<String>,
}

/// Sends the request upstream and the response back, counting the bytes
/// each way in `counts`.
#[allow(clippy::too_many_arguments)]
async fn exchange<C: Io>(
    client: &mut Buffered<C>,
    upstream: &mut Upstream,
    head: &Head,
    path: &str,
    body: Body,
    injected: &[(String, String)],
    host: &str,
    port: u16,
    counts: &Counts,
) -> Forwarded {
    let (up, down) = (&counts.up, &counts.down);
    let fail = |e: String| Forwarded {
        keep_client: false,
        upstream_reusable: false,
        error: Some(e),
    };
    // The request head as sent upstream.
    let conn_named = head.tokens("connection");
    let mut out = format!("{} {path} HTTP/1.1\r\n", head.method).into_bytes();
    let mut has_host = false;
    for (name, value) in &head.headers {
        if hop_by_hop(name, &conn_named)
            || injected.iter().any(|(h, _)| h.eq_ignore_ascii_case(name))
        {
            continue;
        }
        has_host |= name.eq_ignore_ascii_case("host");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    for (name, value) in injected {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    match body {
        Body::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Body::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Body::None | Body::Close => {}
    }
    out.extend_from_slice(b"\r\n");
    let up_io = &mut upstream.conn.io;
    if let Err(e) = write(up_io, &out, up).await {
        let _ = plain(
            &mut client.io,
            502,
            "Bad Gateway",
            None,
            &format!("sending the request upstream: {e}\n"),
        )
        .await;
        return fail(e.to_string());
    }
    // The client may wait for a 100 before it sends its body; the proxy answers it.
    let expects_continue = head.tokens("expect").iter().any(|t| t == "100-continue");
    if expects_continue && body != Body::None && head.minor >= 1 {
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        if let Err(e) = write_idle(&mut client.io, cont, IDLE_TIMEOUT).await {
            return fail(e.to_string());
        }
    }
    match copy_body(client, up_io, body, false, up).await {
        Ok(()) => {}
        Err(CopyError::Write(e)) => {
            let _ = plain(
                &mut client.io,
                502,
                "Bad Gateway",
                None,
                &format!("sending the request body upstream: {e}\n"),
            )
            .await;
            return fail(e.to_string());
        }
        Err(e) => return fail(format!("request body: {e}")),
    }
    if let Err(e) = idle(IDLE_TIMEOUT, up_io.flush()).await {
        return fail(e.to_string());
    }
    // The response head, after any interim (1xx) responses.
    let res = loop {
        match read_head(&mut upstream.conn, false, IDLE_TIMEOUT).await {
            Ok(h) if h.code == 101 => {
                let _ = plain(
                    &mut client.io,
                    502,
                    "Bad Gateway",
                    None,
                    "the server switched protocols unasked\n",
                )
                .await;
                return fail("101 from upstream".into());
            }
            Ok(h) if (100..200).contains(&h.code) => {
                if head.minor >= 1 && !expects_continue {
                    let line = format!("HTTP/1.1 {} {}\r\n\r\n", h.code, h.reason);
                    if let Err(e) = write(&mut client.io, line.as_bytes(), down).await {
                        return fail(e.to_string());
                    }
                }
            }
            Ok(h) => break h,
            Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                let _ = plain(
                    &mut client.io,
                    504,
                    "Gateway Timeout",
                    None,
                    "no response from upstream in time\n",
                )
                .await;
                return fail("upstream response timed out".into());
            }
            Err(e) => {
                let m = match e {
                    HeadError::Closed => "upstream closed without a response".to_string(),
                    HeadError::TooLarge => "upstream response head too large".to_string(),
                    HeadError::Malformed(m) => format!("malformed upstream response: {m}"),
                    HeadError::Io(e) => format!("reading the upstream response: {e}"),
                };
                let _ = plain(&mut client.io, 502, "Bad Gateway", None, &format!("{m}\n")).await;
                return fail(m);
            }
        }
    };
    let res_body = match response_body(&head.method, &res) {
        Ok(b) => b,
        Err(m) => {
            let _ = plain(
                &mut client.io,
                502,
                "Bad Gateway",
                None,
                &format!("upstream response: {m}\n"),
            )
            .await;
            return fail(m.to_string());
        }
    };
    // HTTP/1.0 clients get the data of a chunked body, delimited by the close.
    let decode = res_body == Body::Chunked && head.minor == 0;
    let keep_client = head.keep_alive() && res_body != Body::Close && !decode;
    let keep_upstream = res.keep_alive() && res_body != Body::Close;
    let res_named = res.tokens("connection");
    let mut out = format!("HTTP/1.1 {} {}\r\n", res.code, res.reason).into_bytes();
    for (name, value) in &res.headers {
        if hop_by_hop(name, &res_named) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    // The length: of this body, or (HEAD, 304) of the one it stands for.
    let length = match res_body {
        Body::Length(n) => Some(n),
        Body::None => content_length(&res).ok().flatten(),
        Body::Chunked | Body::Close => None,
    };
    if let Some(n) = length {
        out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
    }
    if res_body == Body::Chunked && !decode {
        let te: Vec<String> = res.tokens("transfer-encoding");
        out.extend_from_slice(format!("Transfer-Encoding: {}\r\n", te.join(", ")).as_bytes());
    }
    if let Some(te) = (decode || res_body == Body::Close).then(|| res.tokens("transfer-encoding")) {
        let rest: Vec<&String> = te.iter().filter(|t| *t != "chunked").collect();
        if !rest.is_empty() {
            let rest: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
            out.extend_from_slice(format!("Transfer-Encoding: {}\r\n", rest.join(", ")).as_bytes());
        }
    }
    if !keep_client {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let Err(e) = write(&mut client.io, &out, down).await {
        return fail(e.to_string());
    }
    let copied = copy_body(&mut upstream.conn, &mut client.io, res_body, decode, down).await;
    let flushed = idle(IDLE_TIMEOUT, client.io.flush()).await;
    match (copied, flushed) {
        (Ok(()), Ok(())) => Forwarded {
            keep_client,
            upstream_reusable: keep_upstream && upstream.conn.pending().is_empty(),
            error: None,
        },
        (Err(e), _) => fail(format!("response body: {e}")),
        (_, Err(e)) => fail(e.to_string()),
    }
}
