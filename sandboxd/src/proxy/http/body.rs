//! Message bodies: how each is delimited (a length, chunks, or the close)
//! and their copy from one side to the other, counted and bounded in idle
//! time, chunked bodies re-framed (or decoded) without their trailers.

use super::buffered::Buffered;
use super::head::{Head, MAX_HEAD};
use crate::net::timed::write_idle;
use crate::proxy::IDLE_TIMEOUT;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncRead, AsyncWrite};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// The single Content-Length of `head` (several equal ones count as one).
pub(super) fn content_length(head: &Head) -> Result<Option<u64>, &'static str> {
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

pub(super) fn request_body(head: &Head) -> Result<Body, &'static str> {
    let len = content_length(head)?;
    match chunked_last(head) {
        Some(_) if len.is_some() => Err("both Content-Length and Transfer-Encoding"),
        Some(_) if head.minor == 0 => Err("Transfer-Encoding in an HTTP/1.0 request"),
        Some(true) => Ok(Body::Chunked),
        Some(false) => Err("a request whose last transfer coding is not chunked"),
        None => Ok(len.map_or(Body::None, Body::Length)),
    }
}

pub(super) fn response_body(req_method: &str, head: &Head) -> Result<Body, &'static str> {
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
pub(in crate::proxy) async fn write_counted<W: AsyncWrite + Unpin>(
    dst: &mut W,
    data: &[u8],
    count: &AtomicU64,
) -> std::io::Result<()> {
    write_idle(dst, data, IDLE_TIMEOUT).await?;
    count.fetch_add(data.len() as u64, Relaxed);
    Ok(())
}

/// [`write_counted`] in a copy.
pub(super) async fn write<W: AsyncWrite + Unpin>(
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

pub(super) async fn copy_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
