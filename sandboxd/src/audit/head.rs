//! The head file, `STATE_DIR/audit.head`: the `seq` and line hash of the
//! newest record written, rewritten in place after every flush. Without it,
//! taking the newest records off the log leaves a valid, shorter chain;
//! against it, the cut shows ([`super::verify`]), and sandboxd will not
//! start on such a log.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The head file's name inside the state dir.
pub const HEAD_NAME: &str = "audit.head";

/// The newest record the log had when the head was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    /// Hex SHA-256 of the record's line (the next record's `prev`).
    pub hash: String,
}

impl Head {
    /// One line of fixed length, so that each rewrite covers the last.
    fn line(&self) -> String {
        format!("seq={:020} hash={}\n", self.seq, self.hash)
    }

    fn parse(text: &str) -> Option<Head> {
        let (seq, hash) = text.strip_suffix('\n')?.split_once(' ')?;
        let seq = seq.strip_prefix("seq=")?;
        let hash = hash.strip_prefix("hash=")?;
        let valid = seq.len() == 20
            && hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        valid.then_some(())?;
        Some(Head {
            seq: seq.parse().ok()?,
            hash: hash.to_string(),
        })
    }

    /// The head file of the log in `dir`: `None` when there is none, or
    /// when it is empty or zeros (made, but its first line never reached
    /// the disk: whoever could cut the log could remove the file anyway).
    pub fn read(dir: &Path) -> Result<Option<Head>, HeadError> {
        let path = head_path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(HeadError::Io { path, source }),
        };
        if bytes.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(Head::parse)
            .map(Some)
            .ok_or(HeadError::Malformed { path })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("audit head {}: {source}; to start on this log without it, move it aside", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit head {}: not a line `seq=N hash=HEX`; run `sandboxd audit verify`, and to start on this log without it, move it aside", path.display())]
    Malformed { path: PathBuf },
}

/// `dir`'s head file.
pub fn head_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_NAME)
}

/// The head file, open for rewriting.
#[derive(Debug)]
pub struct HeadFile(File);

impl HeadFile {
    /// Opens (or creates, mode 0600) `dir`'s head file.
    pub fn open(dir: &Path) -> io::Result<HeadFile> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(head_path(dir))
            .map(HeadFile)
    }

    /// Rewrites the head in place, a line of the same length over the last
    /// (not synced: after a crash it may name an older record, never one
    /// the log lacks, as it is written only once the log's records are on
    /// disk).
    pub fn write(&self, head: &Head) -> io::Result<()> {
        self.0.write_all_at(head.line().as_bytes(), 0)
    }

    /// [`write`](Self::write), then waits for the disk: for the head a
    /// log is opened with, so that the file never stays empty.
    pub fn write_synced(&self, head: &Head) -> io::Result<()> {
        self.write(head).and_then(|()| self.0.sync_data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_back_and_garbage_is_not_a_head() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Head::read(dir.path()).unwrap(), None);
        let f = HeadFile::open(dir.path()).unwrap();
        let head = Head {
            seq: 12345,
            hash: "ab".repeat(32),
        };
        f.write(&Head {
            seq: 7,
            hash: "cd".repeat(32),
        })
        .unwrap();
        f.write(&head).unwrap();
        assert_eq!(Head::read(dir.path()).unwrap(), Some(head));
        // Made but never written (or its write lost): as if there were none.
        std::fs::write(head_path(dir.path()), [0u8; 91]).unwrap();
        assert_eq!(Head::read(dir.path()).unwrap(), None);
        std::fs::write(head_path(dir.path()), b"").unwrap();
        assert_eq!(Head::read(dir.path()).unwrap(), None);
        std::fs::write(head_path(dir.path()), b"\xff garbage").unwrap();
        assert!(matches!(
            Head::read(dir.path()),
            Err(HeadError::Malformed { .. })
        ));
        for bad in [
            "seq=1 hash=00\n",
            "seq=00000000000000000001 hash=ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB\n",
            "seq=0000000000000000000x hash=abababababababababababababababababababababababababababababababab\n",
        ] {
            assert_eq!(Head::parse(bad), None, "{bad:?}");
        }
    }
}
