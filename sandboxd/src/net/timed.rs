//! Writes to a peer that may read nothing: each gives up once the peer has
//! taken nothing for a while, so that such a peer cannot hold a connection
//! (and the descriptors and task behind it) for as long as it likes.

use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A write, flush or shutdown that fails once the peer has taken nothing
/// for `wait` (a TLS stream takes a record whole into its buffer, and
/// waits for the peer in its flush).
pub async fn idle<T>(wait: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(wait, f).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "peer reads nothing",
        ))
    })
}

/// `write_all` that fails once the peer has taken nothing for `wait`.
pub async fn write_idle<W: AsyncWrite + Unpin>(
    dst: &mut W,
    mut data: &[u8],
    wait: Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        match idle(wait, dst.write(data)).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => data = &data[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A peer that reads nothing does not hold a write forever; one that
    /// reads, however slowly, is written to in full.
    #[tokio::test]
    async fn a_write_to_a_peer_that_reads_nothing_gives_up() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        let wait = Duration::from_millis(100);
        let e = write_idle(&mut ours, &[0; 1024], wait).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while got.len() < 64 + 1024 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let n = theirs.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got.len()
        });
        write_idle(&mut ours, &[1; 1024], wait).await.unwrap();
        assert_eq!(reader.await.unwrap(), 64 + 1024);
        // Nor a flush that waits for it (as a TLS stream's does).
        let stuck = std::future::pending::<io::Result<()>>();
        let e = idle(Duration::from_millis(50), stuck).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
