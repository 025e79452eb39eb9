//! Request and response heads: read from a [`Buffered`] stream within the
//! size limits, parsed into an owned [`Head`], and the header fields the
//! framing and the checks ask about.

use super::buffered::Buffered;
use crate::proxy::HEAD_TIMEOUT;
use std::io;
use std::time::Duration;
use tokio::io::AsyncRead;

/// Largest request or response head.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

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
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Comma-separated tokens of every field named `name`, lower-cased.
    pub(super) fn tokens(&self, name: &str) -> Vec<String> {
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
    pub(super) fn keep_alive(&self) -> bool {
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
