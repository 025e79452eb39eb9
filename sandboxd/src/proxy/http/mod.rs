//! HTTP/1.1 through the proxy: the request loop shared by plain proxying
//! (absolute-form requests) and by tunnels whose HTTP the proxy reads
//! (inspected HTTPS, plain HTTP inside a CONNECT), with its message framing.

use super::dial::{self, Admitted, Attempt, DialError, Open, Refused};
use super::tunnel::Counts;
use super::{HEAD_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_TIMEOUT};
use crate::net::decide::{has_dot_segment, Injection};
use crate::net::timed::{idle, write_idle};
use crate::net::{normalize_host, Block, Host, Session};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request or response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;
/// Bytes asked of one read.
const READ_CHUNK: usize = 64 * 1024;

/// A byte stream either way, boxed for upstream connections of either kind.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A stream with the bytes read from it but not yet used.
pub struct Buffered<S> {
    pub io: S,
    buf: Vec<u8>,
    start: usize,
}

impl<S: AsyncRead + Unpin> Buffered<S> {
    /// `prefix`: bytes already read from `io`.
    pub fn new(io: S, prefix: Vec<u8>) -> Self {
        Buffered {
            io,
            buf: prefix,
            start: 0,
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more; `Ok(0)` at the end of the stream.
    async fn fill(&mut self, wait: Duration) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let r = tokio::time::timeout(wait, self.io.read(&mut self.buf[old..])).await;
        let n = match r {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                self.buf.truncate(old);
                return Err(e);
            }
            Err(_) => {
                self.buf.truncate(old);
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no data in time"));
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    /// The stream and what was read from it but not used.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.buf.drain(..self.start);
        (self.io, self.buf)
    }

    /// One line without its CRLF (a bare LF is accepted).
    async fn line(&mut self) -> Result<Vec<u8>, CopyError> {
        loop {
            if let Some(i) = self.pending().iter().position(|&b| b == b'\n') {
                let mut line = self.pending()[..i].to_vec();
                self.consume(i + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.pending().len() > MAX_LINE {
                return Err(CopyError::Framing("line too long"));
            }
            if self.fill(IDLE_TIMEOUT).await.map_err(CopyError::Read)? == 0 {
                return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// A parsed request or response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Request: method; response: status code.
    pub method: String,
    pub target: String,
    pub code: u16,
    pub reason: String,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// Values of every field named `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Comma-separated tokens of every field named `name`, lower-cased.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.all(name)
            .flat_map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Whether the connection may stay open after this message.
    fn keep_alive(&self) -> bool {
        self.minor >= 1 && !self.tokens("connection").iter().any(|t| t == "close")
    }
}

/// What went wrong reading a head.
#[derive(Debug)]
pub enum HeadError {
    /// The stream ended (or went idle) before a head began.
    Closed,
    TooLarge,
    Malformed(String),
    Io(io::Error),
}

/// Reads one request (`request`) or response head.
pub async fn read_head<S: AsyncRead + Unpin>(
    conn: &mut Buffered<S>,
    request: bool,
    wait: Duration,
) -> Result<Head, HeadError> {
    loop {
        if !conn.pending().is_empty() {
            let parsed = if request {
                parse_request(conn.pending())
            } else {
                parse_response(conn.pending())
            };
            match parsed {
                Ok(Some((head, n))) => {
                    conn.consume(n);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
            if conn.pending().len() >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
        }
        let empty = conn.pending().is_empty();
        let wait = if empty { wait } else { HEAD_TIMEOUT };
        match conn.fill(wait).await {
            Ok(0) if empty => return Err(HeadError::Closed),
            Ok(0) => {
                return Err(HeadError::Malformed(
                    "the stream ended inside a head".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if empty && e.kind() == io::ErrorKind::TimedOut => {
                return Err(HeadError::Closed)
            }
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

fn owned_headers(h: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

fn parse_request(data: &[u8]) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(n) = req.parse(data)? else {
        return Ok(None);
    };
    Ok(Some((
        Head {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            code: 0,
            reason: String::new(),
            minor: req.version.unwrap_or(1),
            headers: owned_headers(req.headers),
        },
        n,
    )))
}

fn parse_response(data: &[u8]) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = res.parse(data)? else {
        return Ok(None);
    };
    Ok(Some((
        Head {
            method: String::new(),
            target: String::new(),
            code: res.code.unwrap_or(0),
            reason: res.reason.unwrap_or_default().to_string(),
            minor: res.version.unwrap_or(1),
            headers: owned_headers(res.headers),
        },
        n,
    )))
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// The single Content-Length of `head` (several equal ones count as one).
fn content_length(head: &Head) -> Result<Option<u64>, &'static str> {
    let mut found = None;
    for v in head.all("content-length") {
        for part in std::str::from_utf8(v)
            .map_err(|_| "bad Content-Length")?
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad Content-Length");
            }
            let n: u64 = part.parse().map_err(|_| "bad Content-Length")?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length");
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether the last transfer coding is chunked; `None` without Transfer-Encoding.
fn chunked_last(head: &Head) -> Option<bool> {
    head.all("transfer-encoding").next()?;
    let te = head.tokens("transfer-encoding");
    Some(te.last().is_some_and(|t| t == "chunked"))
}

fn request_body(head: &Head) -> Result<Body, &'static str> {
    let len = content_length(head)?;
    match chunked_last(head) {
        Some(_) if len.is_some() => Err("both Content-Length and Transfer-Encoding"),
        Some(_) if head.minor == 0 => Err("Transfer-Encoding in an HTTP/1.0 request"),
        Some(true) => Ok(Body::Chunked),
        Some(false) => Err("a request whose last transfer coding is not chunked"),
        None => Ok(len.map_or(Body::None, Body::Length)),
    }
}

fn response_body(req_method: &str, head: &Head) -> Result<Body, &'static str> {
    if req_method == "HEAD"
        || head.code == 204
        || head.code == 304
        || (100..200).contains(&head.code)
    {
        return Ok(Body::None);
    }
    match chunked_last(head) {
        Some(true) => Ok(Body::Chunked),
        Some(false) => Ok(Body::Close),
        None => Ok(content_length(head)?.map_or(Body::Close, Body::Length)),
    }
}

/// A copy that failed, on which side.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading: {0}")]
    Read(io::Error),
    #[error("writing: {0}")]
    Write(io::Error),
    #[error("{0}")]
    Framing(&'static str),
}

/// Writes `data`, counted; a peer that takes none of it for
/// [`IDLE_TIMEOUT`] ends the copy (it would hold its connection, and the
/// descriptors behind it, for as long as it likes).
pub(super) async fn write_counted<W: AsyncWrite + Unpin>(
    dst: &mut W,
    data: &[u8],
    count: &AtomicU64,
) -> std::io::Result<()> {
    write_idle(dst, data, IDLE_TIMEOUT).await?;
    count.fetch_add(data.len() as u64, Relaxed);
    Ok(())
}

/// [`write_counted`] in a copy.
async fn write<W: AsyncWrite + Unpin>(
    dst: &mut W,
    data: &[u8],
    count: &AtomicU64,
) -> Result<(), CopyError> {
    write_counted(dst, data, count)
        .await
        .map_err(CopyError::Write)
}

/// Copies exactly `n` bytes.
async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Buffered<R>,
    dst: &mut W,
    mut n: u64,
    count: &AtomicU64,
) -> Result<(), CopyError> {
    while n > 0 {
        if src.pending().is_empty() && src.fill(IDLE_TIMEOUT).await.map_err(CopyError::Read)? == 0 {
            return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        let k = src
            .pending()
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX));
        write(dst, &src.pending()[..k], count).await?;
        src.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Copies a chunked body, re-framed without its trailers (`decode`: as the
/// bare data).
async fn copy_chunked<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Buffered<R>,
    dst: &mut W,
    decode: bool,
    count: &AtomicU64,
) -> Result<(), CopyError> {
    loop {
        let line = src.line().await?;
        let size_hex = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_hex = std::str::from_utf8(size_hex)
            .map_err(|_| CopyError::Framing("bad chunk size"))?
            .trim();
        if size_hex.is_empty()
            || size_hex.len() > 15
            || !size_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CopyError::Framing("bad chunk size"));
        }
        let size =
            u64::from_str_radix(size_hex, 16).map_err(|_| CopyError::Framing("bad chunk size"))?;
        if !decode {
            write(dst, format!("{size:x}\r\n").as_bytes(), count).await?;
        }
        if size == 0 {
            // Trailers are read and dropped, never passed on: unchecked,
            // they could carry what the other side reads as a second message.
            let mut trailer_bytes = 0;
            loop {
                let t = src.line().await?;
                trailer_bytes += t.len();
                if trailer_bytes > MAX_HEAD {
                    return Err(CopyError::Framing("trailers too large"));
                }
                if t.is_empty() {
                    if !decode {
                        write(dst, b"\r\n", count).await?;
                    }
                    return Ok(());
                }
            }
        }
        copy_exact(src, dst, size, count).await?;
        if !src.line().await?.is_empty() {
            return Err(CopyError::Framing("chunk data longer than its size"));
        }
        if !decode {
            write(dst, b"\r\n", count).await?;
        }
    }
}

/// Copies everything until `src` ends.
async fn copy_to_end<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Buffered<R>,
    dst: &mut W,
    count: &AtomicU64,
) -> Result<(), CopyError> {
    loop {
        if !src.pending().is_empty() {
            let n = src.pending().len();
            write(dst, &src.pending()[..n], count).await?;
            src.consume(n);
        }
        if src.fill(IDLE_TIMEOUT).await.map_err(CopyError::Read)? == 0 {
            return Ok(());
        }
    }
}

async fn copy_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Buffered<R>,
    dst: &mut W,
    body: Body,
    decode_chunked: bool,
    count: &AtomicU64,
) -> Result<(), CopyError> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => copy_exact(src, dst, n, count).await,
        Body::Chunked => copy_chunked(src, dst, decode_chunked, count).await,
        Body::Close => copy_to_end(src, dst, count).await,
    }
}

/// Where the requests of a connection go.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A client talking to the proxy: absolute-form `http://` requests, any host.
    Proxy,
    /// Inside a tunnel to one destination: origin-form requests to it, over
    /// TLS (inspected HTTPS) or not.
    Fixed { host: Host, port: u16, tls: bool },
}

/// An open upstream connection and whom it reaches.
pub struct Upstream {
    pub host: Host,
    pub port: u16,
    pub addr: IpAddr,
    pub conn: Buffered<Box<dyn Io>>,
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

/// The result of one request.
struct Exchange {
    keep_alive: bool,
}

impl Exchange {
    fn close() -> Exchange {
        Exchange { keep_alive: false }
    }
}

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

/// Splits `host[:port]` (IPv6 in brackets); an `@` (userinfo) is an error.
pub fn split_authority(auth: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    if auth.contains('@') {
        return Err(format!("userinfo in the authority {auth:?}"));
    }
    let (host, port) = if let Some(rest) = auth.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed bracket in {auth:?}"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("junk after ] in {auth:?}"))?,
            ),
        };
        (&auth[..h.len() + 2], port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port in {auth:?}"))?,
        Some("") | None => default_port.ok_or_else(|| format!("no port in {auth:?}"))?,
        Some(_) => return Err(format!("bad port in {auth:?}")),
    };
    if host.is_empty() {
        return Err(format!("no host in {auth:?}"));
    }
    Ok((normalize_host(host)?, port))
}

/// An absolute-form target `scheme://authority[path]`: the scheme, the
/// authority and the origin-form rest (`/` when empty).
fn split_absolute(target: &str) -> Option<(String, &str, String)> {
    let (scheme, rest) = target.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(end);
    let tail = tail.split('#').next().unwrap_or_default();
    let path = match tail.chars().next() {
        Some('/') => tail.to_string(),
        _ => format!("/{tail}"),
    };
    Some((scheme.to_ascii_lowercase(), auth, path))
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
async fn one<C: Io>(
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
                    Ok(_) => {
                        let m =
                            format!("the URI's authority {auth} is not the tunnel's destination");
                        return bad_request(
                            session,
                            io,
                            &head,
                            protocol,
                            &dial::host_str(host),
                            *port,
                            &m,
                        )
                        .await;
                    }
                    Err(m) => {
                        return bad_request(
                            session,
                            io,
                            &head,
                            protocol,
                            &dial::host_str(host),
                            *port,
                            &m,
                        )
                        .await
                    }
                }
            }
        }
    };
    let host_s = dial::host_str(&host);
    // The Host header must name the same destination.
    let hosts: Vec<&[u8]> = head.all("host").collect();
    if hosts.len() > 1 {
        return bad_request(
            session,
            io,
            &head,
            protocol,
            &host_s,
            port,
            "more than one Host header",
        )
        .await;
    }
    if let Some(v) = hosts.first() {
        let v = String::from_utf8_lossy(v);
        match split_authority(v.trim(), Some(default_port(mode, port))) {
            Ok((h, p)) if h == host && p == port => {}
            Ok(_) => {
                let m = format!("Host header {v:?} is not the request's host {host_s}:{port}");
                return bad_request(session, io, &head, protocol, &host_s, port, &m).await;
            }
            Err(m) => {
                return bad_request(
                    session,
                    io,
                    &head,
                    protocol,
                    &host_s,
                    port,
                    &format!("Host header: {m}"),
                )
                .await
            }
        }
    }
    let bare_path = path.split('?').next().unwrap_or("/").to_string();
    if has_dot_segment(&bare_path) {
        return bad_request(
            session,
            io,
            &head,
            protocol,
            &host_s,
            port,
            "a . or .. segment in the path",
        )
        .await;
    }
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
        Some(u) => dial::record_allowed(session, &attempt, &admitted, u.addr, counts)
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

fn default_port(mode: &Mode, port: u16) -> u16 {
    match mode {
        Mode::Proxy => 80,
        Mode::Fixed { tls: true, .. } => 443,
        Mode::Fixed { .. } => port,
    }
}

/// Records and answers a self-contradicting request (403 bad-request).
#[allow(clippy::too_many_arguments)]
async fn bad_request<W: AsyncWrite + Unpin>(
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
async fn record_unreadable(session: &Session, mode: &Mode, why: &str) {
    if let Mode::Fixed { host, port, tls } = mode {
        let a = Attempt::new(if *tls { "https" } else { "http" }, host.clone(), *port);
        a.refuse(session, Refused::new(Block::BadRequest, "", why))
            .await;
    }
}

/// Records the refusal of a request that cannot be served as asked (the
/// caller answers it); `host` as the client wrote it.
pub(super) async fn record_bad_request(
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

/// Whether a kept upstream connection is still open and quiet.
async fn still_open(u: &mut Upstream) -> bool {
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
async fn open_upstream<'a>(
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
    tokio::time::timeout(super::CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_targets_split() {
        let (s, a, p) = split_absolute("http://a.test:8080/x?y#z").unwrap();
        assert_eq!((s.as_str(), a, p.as_str()), ("http", "a.test:8080", "/x?y"));
        let (_, a, p) = split_absolute("HTTP://a.test?q").unwrap();
        assert_eq!((a, p.as_str()), ("a.test", "/?q"));
        assert!(split_absolute("/only/path").is_none());
    }

    fn head(headers: &[(&str, &str)], minor: u8) -> Head {
        Head {
            method: "POST".into(),
            target: "/".into(),
            code: 200,
            reason: String::new(),
            minor,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn request_framing() {
        assert_eq!(request_body(&head(&[], 1)), Ok(Body::None));
        assert_eq!(
            request_body(&head(&[("Content-Length", "5")], 1)),
            Ok(Body::Length(5))
        );
        assert_eq!(
            request_body(&head(&[("Content-Length", "5, 5")], 1)),
            Ok(Body::Length(5))
        );
        assert!(request_body(&head(
            &[("Content-Length", "5"), ("content-length", "6")],
            1
        ))
        .is_err());
        assert!(request_body(&head(&[("Content-Length", "+5")], 1)).is_err());
        assert_eq!(
            request_body(&head(&[("Transfer-Encoding", "gzip, Chunked")], 1)),
            Ok(Body::Chunked)
        );
        assert!(request_body(&head(
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
            1
        ))
        .is_err());
        assert!(request_body(&head(&[("Transfer-Encoding", "chunked, gzip")], 1)).is_err());
        assert!(request_body(&head(&[("Transfer-Encoding", "chunked")], 0)).is_err());
    }

    #[test]
    fn response_framing() {
        let ok = head(&[("Content-Length", "9")], 1);
        assert_eq!(response_body("GET", &ok), Ok(Body::Length(9)));
        assert_eq!(response_body("HEAD", &ok), Ok(Body::None));
        let mut nc = head(&[("Content-Length", "9")], 1);
        nc.code = 304;
        assert_eq!(response_body("GET", &nc), Ok(Body::None));
        nc.code = 204;
        assert_eq!(response_body("GET", &nc), Ok(Body::None));
        assert_eq!(response_body("GET", &head(&[], 1)), Ok(Body::Close));
        let both = head(
            &[("Content-Length", "9"), ("Transfer-Encoding", "chunked")],
            1,
        );
        assert_eq!(response_body("GET", &both), Ok(Body::Chunked));
        assert_eq!(
            response_body("GET", &head(&[("Transfer-Encoding", "gzip")], 1)),
            Ok(Body::Close)
        );
    }

    #[tokio::test]
    async fn chunked_bodies_are_reframed_or_decoded_without_their_trailers() {
        let src = b"5;ext=1\r\nhello\r\n3\r\n wo\r\n0\r\nX-T: 1\r\n\r\nNEXT".to_vec();
        let mut b = Buffered::new(tokio::io::empty(), src.clone());
        let mut out = Vec::new();
        let n = AtomicU64::new(0);
        copy_chunked(&mut b, &mut out, false, &n).await.unwrap();
        assert_eq!(out, b"5\r\nhello\r\n3\r\n wo\r\n0\r\n\r\n");
        assert_eq!(b.pending(), b"NEXT");
        // A "trailer" that an upstream splitting lines at a bare CR would
        // read as a second request never reaches it.
        let smuggled = b"1\r\nx\r\n0\r\nX: \r\rGET /admin HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let mut b = Buffered::new(tokio::io::empty(), smuggled);
        let mut out = Vec::new();
        copy_chunked(&mut b, &mut out, false, &n).await.unwrap();
        assert_eq!(out, b"1\r\nx\r\n0\r\n\r\n");
        let mut b = Buffered::new(tokio::io::empty(), src);
        let mut out = Vec::new();
        copy_chunked(&mut b, &mut out, true, &n).await.unwrap();
        assert_eq!(out, b"hello wo");
        let mut bad = Buffered::new(tokio::io::empty(), b"5\r\nhello!!\r\n0\r\n\r\n".to_vec());
        assert!(copy_chunked(&mut bad, &mut Vec::new(), false, &n)
            .await
            .is_err());
        let mut bad = Buffered::new(tokio::io::empty(), b"zz\r\n".to_vec());
        assert!(copy_chunked(&mut bad, &mut Vec::new(), false, &n)
            .await
            .is_err());
    }

    #[test]
    fn authorities() {
        assert!(split_authority("u:p@a.test", Some(80))
            .unwrap_err()
            .contains("userinfo"));
        assert!(split_authority("a.test:0", Some(80)).is_err());
        assert!(split_authority("a.test:x", Some(80)).is_err());
        assert!(split_authority("a.test", None).is_err());
        assert!(split_authority("[::1", None).is_err());
    }
}
