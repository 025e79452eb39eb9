//! Tunnels (HTTP CONNECT and SOCKS5 CONNECT): once the destination is open,
//! the client's first bytes decide what the tunnel carries. A ClientHello
//! must name the destination (no domain fronting), and so must a second one
//! after a HelloRetryRequest; on port 443 anything but
//! TLS is refused unless the profile allows it; HTTP the proxy can read, and
//! inspected HTTPS, go through the request loop; the rest is spliced.

use super::dial::{self, Attempt, Open, Refused};
use super::http::{self, Buffered, Head, Mode, Upstream};
use super::sni::{self, Hello};
use super::tunnel::{self, Counts};
use super::IDLE_TIMEOUT;
use crate::net::timed::write_idle;
use crate::net::{normalize_host, Block, Session};
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A CONNECT request from the HTTP proxy's request loop.
pub async fn connect(session: &Session, head: Head, mut client: Buffered<TcpStream>) {
    let target = head.target.clone();
    let (host, port) = match http::split_authority(&target, None) {
        Ok(hp) => hp,
        Err(m) if m.contains("userinfo") => {
            let r = http::record_bad_request(session, &head, "connect", &target, 0, &m).await;
            let _ = http::forbidden(&mut client.io, &format!("CONNECT {target}"), &r).await;
            return;
        }
        Err(m) => {
            http::record_bad_request(session, &head, "connect", &target, 0, &m).await;
            let _ = http::plain(
                &mut client.io,
                400,
                "Bad Request",
                None,
                &format!("CONNECT {target}: {m}\n"),
            )
            .await;
            return;
        }
    };
    let a = Attempt::new("connect", host.clone(), port);
    let what = format!("CONNECT {}:{port}", a.host_str());
    let decision = session.policy.decide_host(&host, port);
    let counts = Counts::default();
    let (upstream, open) = match dial::open(session, &a, decision, &counts).await {
        Ok(u) => u,
        Err(e) => {
            let _ = http::dial_failed(&mut client.io, &what, &e).await;
            return;
        }
    };
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    if write_idle(&mut client.io, established, IDLE_TIMEOUT)
        .await
        .is_err()
    {
        open.end("client gone");
        return;
    }
    let (client, first) = client.into_parts();
    carry(session, client, first, upstream, open).await;
}

/// What the first bytes of a tunnel turned out to be.
enum First {
    /// The client sent nothing and the server spoke first.
    ServerSpoke,
    /// The client closed before sending anything.
    Nothing,
    Hello(Hello),
    Http,
}

/// A token character (RFC 9110), of which a request method is made.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a tunnel's first bytes (not TLS) look like an HTTP request, for
/// a destination where no method or path rule applies (elsewhere all plain
/// bytes go through the request loop). `Some(true)`: a lenient server could
/// read them as one, so the request loop reads them (the Host check, a
/// record per request); `Some(false)`: they are spliced; `None`: not told
/// yet. Lenient means: empty lines and blanks before the
/// request line, any token as the method (any case), runs of blanks between
/// the parts, any version, and (HTTP/0.9) `GET target` alone. The target
/// must still have one of its forms (RFC 9112): `/...`, `*`, `scheme:...`,
/// or with CONNECT an authority. git://'s request (a pkt-line,
/// `002agit-upload-pack /repo.git\0host=a.test\0`, with no line end) is told
/// apart by its form.
fn http_start(data: &[u8]) -> Option<bool> {
    /// A git:// request, a pkt-line: four hex digits giving its whole
    /// length, the service, a blank, a path that a NUL ends before any
    /// blank or line end, `host=`, and a NUL as its last byte (no request
    /// line is that; a lenient server would read anything less as one).
    fn git_request(data: &[u8]) -> bool {
        let Some(len) = data
            .get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        let Some(line) = data.get(..len).filter(|l| l.len() > 4 && l.ends_with(&[0])) else {
            return false;
        };
        [
            "git-upload-pack ",
            "git-receive-pack ",
            "git-upload-archive ",
        ]
        .iter()
        .filter_map(|s| line[4..].strip_prefix(s.as_bytes()))
        .any(|path| {
            let end = path
                .iter()
                .position(|b| matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n'));
            matches!(end, Some(e) if path[e] == 0 && path[e + 1..].starts_with(b"host="))
        })
    }
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let eol = |b: &u8| matches!(b, b'\r' | b'\n');
    // Where the first byte from `at` that is not `skip` is, once seen.
    let past = |at: usize, skip: &dyn Fn(&u8) -> bool| {
        data[at..].iter().position(|b| !skip(b)).map(|n| at + n)
    };
    if git_request(data) {
        return Some(false);
    }
    let method_at = past(0, &|b| blank(b) || eol(b))?;
    let method_end = past(method_at, &|b| tchar(*b))?;
    if method_end == method_at || !blank(&data[method_end]) {
        return Some(false);
    }
    let method = &data[method_at..method_end];
    let target = past(method_end, &blank)?;
    match data[target] {
        b'/' | b'*' => {}
        _ if method.eq_ignore_ascii_case(b"CONNECT") => {}
        b if b.is_ascii_alphabetic() => {
            let scheme = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
            if data[past(target, &scheme)?] != b':' {
                return Some(false);
            }
        }
        _ => return Some(false),
    }
    let target_end = past(target, &|b| !blank(b) && !eol(b))?;
    if eol(&data[target_end]) {
        // `method target` alone: only HTTP/0.9's GET reads so.
        return Some(method.eq_ignore_ascii_case(b"GET"));
    }
    let version = &data[past(target_end, &blank)?..];
    let n = version.len().min(5);
    if !version[..n].eq_ignore_ascii_case(&b"HTTP/"[..n]) {
        return Some(false);
    }
    (n == 5).then_some(true)
}

/// Longest start of a request line waited for; past it, or past
/// [`PREFIX_WAIT`], bytes that may still be a request line count as HTTP:
/// the request loop reads them, and refuses them unless they are a request.
/// (Otherwise a request sent a byte at a time, or with a long enough
/// target, would be spliced past the Host check.) Cut short by the
/// client's EOF, or answered by the server meanwhile, they are not HTTP.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// How long a tunnel's first bytes may stay the start of a request line
/// before the request loop takes them.
const PREFIX_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the client's first bytes into `first` until they are told apart.
async fn first_bytes(
    client: &mut TcpStream,
    upstream: &TcpStream,
    first: &mut Vec<u8>,
) -> std::io::Result<First> {
    loop {
        if !first.is_empty() {
            match sni::parse(first) {
                Hello::Incomplete if first.len() <= sni::MAX_HELLO => {}
                Hello::Incomplete => {
                    return Ok(First::Hello(Hello::Malformed("ClientHello too long")))
                }
                Hello::NotTls => match http_start(first) {
                    Some(true) => return Ok(First::Http),
                    Some(false) => return Ok(First::Hello(Hello::NotTls)),
                    None if first.len() > MAX_REQUEST_LINE => return Ok(First::Http),
                    None => {}
                },
                other => return Ok(First::Hello(other)),
            }
        }
        let empty = first.is_empty();
        let undecided = !empty && sni::parse(first) == Hello::NotTls;
        let wait = if undecided { PREFIX_WAIT } else { IDLE_TIMEOUT };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, client.read_buf(first)) => r,
            // A server that speaks (before the client, or while its bytes
            // are undecided) is no HTTP server.
            r = upstream.readable(), if empty || undecided => {
                r?;
                return Ok(if empty { First::ServerSpoke } else { First::Hello(Hello::NotTls) });
            }
        };
        match read {
            // Still the start of a request line (told apart above otherwise).
            Err(_) if undecided => return Ok(First::Http),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "tunnel idle",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) if empty => return Ok(First::Nothing),
            Ok(Ok(0)) => {
                // Cut short: what there is decides.
                return Ok(match sni::parse(first) {
                    Hello::Incomplete => First::Hello(Hello::Malformed("ClientHello cut short")),
                    Hello::NotTls if http_start(first) == Some(true) => First::Http,
                    h => First::Hello(h),
                });
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Why the tunnel of `a` may not carry a ClientHello naming `sni` (with an
/// encrypted inner hello when `ech`), if it may not: a name other than the
/// tunnel's host is domain fronting; so is an encrypted inner hello, whose
/// name the server answers for and nobody can check (GREASE looks the same
/// by design), unless the profile accepts that or the hello ends here
/// (`inspect`).
fn hello_refusal(
    session: &Session,
    a: &Attempt,
    sni: Option<&str>,
    ech: bool,
    inspect: bool,
) -> Option<Refused> {
    if let Some(name) = sni.filter(|n| !matches!(normalize_host(n), Ok(h) if h == a.host)) {
        return Some(Refused::new(
            Block::SniMismatch,
            format!("{} {}:{}", a.protocol, a.host_str(), a.port),
            format!(
                "TLS server name {name:?} is not the tunnel's host {}",
                a.host_str()
            ),
        ));
    }
    (ech && !session.policy.allow_ech() && !inspect).then(|| {
        Refused::new(
            Block::SniMismatch,
            "network.allow_ech = false",
            format!(
                "the TLS ClientHello to {} carries an encrypted one (Encrypted Client Hello), whose server name cannot be checked",
                a.host_str()
            ),
        )
    })
}

/// The `random` of a ServerHello that is a HelloRetryRequest (RFC 8446,
/// 4.1.3): the SHA-256 of "HelloRetryRequest".
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
/// The handshake message type of a ServerHello (and of a HelloRetryRequest).
const SERVER_HELLO: u8 = 2;
/// A handshake record's header, a handshake message's header, then a
/// ServerHello's version and random.
const SERVER_HELLO_RANDOM_END: usize = 5 + 4 + 2 + 32;
/// The most a client may send between its first ClientHello and its second
/// (ChangeCipherSpec, early data), the second included.
const MAX_SECOND_FLIGHT: usize = 4 * sni::MAX_HELLO;

/// Once the ClientHello went upstream: passes the server's first record on
/// to the client, provided it is a TLS server's (a ServerHello or an alert:
/// a well-formed hello may be a decoy sent to a server that is no TLS
/// server, one that echoes it included, and what follows it would pass
/// unread), and, when it is a
/// HelloRetryRequest, reads the client's
/// second ClientHello and checks it as the first was ([`hello_refusal`])
/// before it goes upstream: the server answers for the second one's name.
/// `pending` is what the client sent after its first hello; it goes
/// upstream only after that, as the start of the client's next flight.
/// Counts the bytes it moves; `Some` refusal when the second hello may not go.
async fn retried_hello(
    session: &Session,
    a: &Attempt,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    pending: Vec<u8>,
    counts: &Counts,
) -> std::io::Result<Option<Refused>> {
    let idle = || std::io::Error::new(std::io::ErrorKind::TimedOut, "tunnel idle");
    // The server's first record, whole when it is a handshake record: the
    // client waits for all of a HelloRetryRequest before it answers.
    let mut back = Vec::with_capacity(4096);
    loop {
        let whole = match back.first() {
            Some(&sni::HANDSHAKE) => 5 + sni::record_len(&back).unwrap_or_default(),
            Some(&b) if b != sni::ALERT => break,
            // An alert's header, or the start of anything.
            _ => 5,
        };
        if back.len() >= whole {
            break;
        }
        let n = tokio::time::timeout(IDLE_TIMEOUT, upstream.read_buf(&mut back))
            .await
            .map_err(|_| idle())??;
        if n == 0 {
            break;
        }
    }
    if back.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed without answering the ClientHello",
        ));
    }
    let server_hello = back[0] == sni::HANDSHAKE && back.get(5) == Some(&SERVER_HELLO);
    let tls_server = back.get(1) == Some(&3) && (server_hello || back[0] == sni::ALERT);
    if !tls_server {
        let to = format!("{}:{}", a.host_str(), a.port);
        return Ok(Some(Refused::new(
            Block::NotTls,
            format!("{} {to}", a.protocol),
            format!("{to} answered the ClientHello with neither a ServerHello nor a TLS alert"),
        )));
    }
    let retry = server_hello && back.get(11..SERVER_HELLO_RANDOM_END) == Some(&HRR_RANDOM[..]);
    http::write_counted(client, &back, &counts.down).await?;
    let mut second = pending;
    let refusal = if retry {
        loop {
            let found = second_hello_at(&second).map(|at| at.map(|at| sni::parse(&second[at..])));
            match found {
                Ok(None) | Ok(Some(Hello::Incomplete)) if second.len() <= MAX_SECOND_FLIGHT => {}
                Ok(Some(Hello::ClientHello { sni, ech, .. })) => {
                    break hello_refusal(session, a, sni.as_deref(), ech, false)
                }
                _ => {
                    break Some(Refused::new(
                        Block::NotTls,
                        "",
                        "the client's answer to the server's HelloRetryRequest is no well-formed second ClientHello",
                    ))
                }
            }
            let n = tokio::time::timeout(IDLE_TIMEOUT, client.read_buf(&mut second))
                .await
                .map_err(|_| idle())??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before its second ClientHello",
                ));
            }
        }
    } else {
        None
    };
    if refusal.is_none() {
        http::write_counted(upstream, &second, &counts.up).await?;
    }
    Ok(refusal)
}

/// Where the second ClientHello starts in `data`, past the records a client
/// may send before it (RFC 8446): a ChangeCipherSpec (its one byte, 1), and
/// early data sent before it was asked again (which the server skips).
/// `Ok(None)` while one of them is incomplete; `Err` for one that is not
/// what it must be.
fn second_hello_at(data: &[u8]) -> Result<Option<usize>, ()> {
    use sni::{APPLICATION_DATA, CHANGE_CIPHER_SPEC};
    let mut at = 0;
    while let Some(&kind) = data.get(at) {
        if kind != CHANGE_CIPHER_SPEC && kind != APPLICATION_DATA {
            break;
        }
        let Some(len) = sni::record_len(&data[at..]) else {
            return Ok(None);
        };
        if kind == CHANGE_CIPHER_SPEC && len != 1 {
            return Err(());
        }
        let Some(body) = data.get(at + 5..at + 5 + len) else {
            return Ok(None);
        };
        if kind == CHANGE_CIPHER_SPEC && body != [1] {
            return Err(());
        }
        at += 5 + len;
    }
    Ok(Some(at))
}

/// The tunnel to `upstream` (already open, the client told so), for the
/// `open` attempt (CONNECT or SOCKS), until it ends; then its end record.
pub async fn carry(
    session: &Session,
    mut client: TcpStream,
    mut first: Vec<u8>,
    upstream: TcpStream,
    open: Open<'_>,
) {
    let (a, addr, counts) = (open.attempt(), open.addr(), open.counts());
    // Before the first read from either: an urgent byte read otherwise
    // would be skipped.
    if let Err(e) = tunnel::inline_urgent(&client).and_then(|()| tunnel::inline_urgent(&upstream)) {
        open.end(&format!("before any data: {e}"));
        return;
    }
    let kind = match first_bytes(&mut client, &upstream, &mut first).await {
        Ok(k) => k,
        Err(e) => {
            open.end(&format!("before any data: {e}"));
            return;
        }
    };
    let strict_443 = a.port == 443 && !session.policy.allow_non_tls_443();
    // Where a request's method or path matters, plain bytes from the client
    // are read by the request loop, which refuses what it cannot read as
    // HTTP: spliced, they could be a request some lenient server reads and
    // nobody decided. Elsewhere only what looks like HTTP goes there.
    let requests_matter = session.policy.requests_matter(&a.host);
    let inspect = session.policy.inspect() && session.inspector.is_some();
    let refusal = match &kind {
        First::Nothing => {
            open.end("closed before any data");
            return;
        }
        First::Hello(Hello::Malformed(m)) => Some(Refused::new(
            Block::NotTls,
            "",
            format!("malformed ClientHello: {m}"),
        )),
        First::Hello(Hello::ClientHello { sni, ech, .. }) => {
            hello_refusal(session, a, sni.as_deref(), *ech, inspect)
        }
        // No HTTP server speaks first; what the client sends after it would
        // not go through the request loop.
        First::ServerSpoke if requests_matter => Some(Refused::new(
            Block::BadRequest,
            "",
            format!(
                "{}:{} spoke first: no HTTP server does, and its methods or paths apply",
                a.host_str(),
                a.port
            ),
        )),
        First::ServerSpoke | First::Hello(_) | First::Http if strict_443 => Some(Refused::new(
            Block::NotTls,
            format!("{} port 443", a.protocol),
            format!("not TLS to {}:443", a.host_str()),
        )),
        _ => None,
    };
    if let Some(r) = refusal {
        let r = a.refuse(session, r).await;
        tracing::info!(exec = %session.exec_id, host = %a.host_str(), "tunnel closed: {}", r.reason);
        open.end(&r.reason);
        return;
    }
    let plain = matches!(kind, First::Http)
        || (requests_matter && matches!(kind, First::Hello(Hello::NotTls)));
    let hello_len = match kind {
        First::Hello(Hello::ClientHello { len, .. }) => Some(len),
        _ => None,
    };
    match kind {
        _ if plain => {
            let mode = Mode::Fixed {
                host: a.host.clone(),
                port: a.port,
                tls: false,
            };
            let up = Upstream {
                host: a.host.clone(),
                port: a.port,
                addr,
                conn: Buffered::new(Box::new(upstream), Vec::new()),
            };
            let client = Buffered::new(client, first);
            http::serve(session, client, mode, Some(up), counts).await;
            open.end("requests served");
        }
        First::Hello(Hello::ClientHello { .. }) if inspect => {
            inspected(session, a, client, first, upstream, addr, counts).await;
            open.end("inspected");
        }
        _ => {
            let (mut client, mut upstream) = (client, upstream);
            // A hello goes alone: what the client sent after it goes with
            // its next flight, once the server has answered.
            let (head, after) = first.split_at(hello_len.unwrap_or(first.len()));
            let r = match http::write_counted(&mut upstream, head, &counts.up).await {
                Ok(()) => {
                    let retried = match hello_len {
                        Some(_) => {
                            retried_hello(
                                session,
                                a,
                                &mut client,
                                &mut upstream,
                                after.to_vec(),
                                counts,
                            )
                            .await
                        }
                        None => Ok(None),
                    };
                    match retried {
                        Ok(None) => {
                            let pipes = &session.large_pipes;
                            tunnel::relay(&client, &upstream, counts, IDLE_TIMEOUT, pipes).await
                        }
                        Ok(Some(r)) => {
                            let r = a.refuse(session, r).await;
                            tracing::info!(exec = %session.exec_id, host = %a.host_str(), "tunnel closed: {}", r.reason);
                            Err(std::io::Error::other(r.reason))
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let reason = match r {
                Ok(()) => "closed".to_string(),
                Err(e) => e.to_string(),
            };
            open.end(&reason);
        }
    }
}

/// Inspected HTTPS: the client's TLS ends here with a leaf for the host,
/// a new TLS session goes upstream, and the requests go through the loop
/// (their bytes, in clear, counted in `counts`).
async fn inspected(
    session: &Session,
    a: &Attempt,
    client: TcpStream,
    first: Vec<u8>,
    upstream: TcpStream,
    addr: IpAddr,
    counts: &Counts,
) {
    let Some(inspector) = &session.inspector else {
        return;
    };
    let host = a.host_str();
    let config = match inspector.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(exec = %session.exec_id, "inspection of {host}: {e}");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let accepted = tokio::time::timeout(
        super::HEAD_TIMEOUT,
        acceptor.accept(Prefixed::new(first, client)),
    )
    .await;
    let mut tls_client = match accepted {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let tls_up = match http::tls_connect(session, &a.host, upstream).await {
        Ok(s) => s,
        Err(e) => {
            let _ = http::plain(
                &mut tls_client,
                502,
                "Bad Gateway",
                None,
                &format!("TLS to {host}: {e}\n"),
            )
            .await;
            return;
        }
    };
    let mode = Mode::Fixed {
        host: a.host.clone(),
        port: a.port,
        tls: true,
    };
    let up = Upstream {
        host: a.host.clone(),
        port: a.port,
        addr,
        conn: Buffered::new(Box::new(tls_up), Vec::new()),
    };
    let client = Buffered::new(tls_client, Vec::new());
    http::serve(session, client, mode, Some(up), counts).await;
}

/// A stream whose first bytes were already read: those, then the stream.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::http_start;

    #[test]
    fn what_a_lenient_server_could_read_as_http_is_told_from_other_first_bytes() {
        for http in [
            "GET / HTTP/1.1\r\nHost: a\r\n",
            "POST /x HTTP/1.0\n",
            "GET /a HTTP/",
            // Empty lines and blanks first, any token as the method, runs of
            // blanks, any version, a trailing blank, no version at all
            // (HTTP/0.9): each is either a request or refused by the loop.
            "\r\n\r\nPOST /x HTTP/1.1\r\n",
            " \tDELETE /x HTTP/1.1\r\n",
            "post /x HTTP/1.1\r\n",
            "M-SEARCH * HTTP/1.1\r\n",
            "GET / HTTP/2\r\n",
            "GET / HTTP/1.1 \r\n",
            "GET  /x \t http/1.1\r\n",
            "GET /\r\n",
            "get /\n",
            "GET http://a.test/ HTTP/1.1\r\n",
            "OPTIONS * HTTP/1.1\r\n",
            // Lenient servers read control characters in the target, and
            // any token as the method, git's services too.
            "GET /a\x01b HTTP/1.1\r\n",
            "0033git-upload-pack /x HTTP/1.1\r\n",
            "0033git-upload-pack /x\0 HTTP/1.1\r\nHost: other\r\n\r\n",
            "CONNECT 10.0.0.1:22 HTTP/1.1\r\n",
        ] {
            assert_eq!(http_start(http.as_bytes()), Some(true), "{http:?}");
        }
        for prefix in [
            "\r\n",
            "G",
            "GET",
            "GET ",
            "GET /a",
            "GET /a ",
            "GET /a HTT",
            " GET",
            "socks!",
            "x",
            "GET http",
        ] {
            assert_eq!(http_start(prefix.as_bytes()), None, "{prefix:?}");
        }
        assert_eq!(http_start(&vec![b'A'; 9000]), None);
        for other in [
            "ZERO 1073741824\n",
            "PING\n",
            "ping through the tunnel",
            "tunnel 0",
            "hello world\n",
            "GET 0/x HTTP/1.1\r\n",
            "GET index.html HTTP/1.1\r\n",
            "GET /a HTTPS",
            "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
            "*1\r\n$4\r\nPING\r\n",
            "\0\0\0\x08\x04\x12\x16\x2f",
            // git://'s request.
            "002agit-upload-pack /repo.git\0host=a.test\0",
            "0024git-receive-pack /r\0host=a.test\0",
        ] {
            assert_eq!(http_start(other.as_bytes()), Some(false), "{other:?}");
        }
    }
}
