//! The proxy's reader: a stream with the bytes read from it but not yet
//! used, so that a head, a body and the next request are taken from one
//! connection in turn; each read waits a bounded time, each line is bounded
//! in length.

use super::body::CopyError;
use crate::proxy::IDLE_TIMEOUT;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;
/// Bytes asked of one read.
const READ_CHUNK: usize = 64 * 1024;

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
    pub(super) async fn fill(&mut self, wait: Duration) -> io::Result<usize> {
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
    pub(super) async fn line(&mut self) -> Result<Vec<u8>, CopyError> {
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
