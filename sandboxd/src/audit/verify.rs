//! The checker: walks every file of the log, oldest first, and names the
//! first record that breaks the chain.

use super::head::{head_path, Head, HeadError};
use super::{files, record_hash, sha256_hex, GENESIS};
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub files: usize,
}

/// The first bad record: where, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line number in `file`.
    pub line: usize,
    /// The record's `seq`, when it has one.
    pub seq: Option<u64>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: seq ", self.file.display(), self.line)?;
        match self.seq {
            Some(n) => write!(f, "{n}")?,
            None => f.write_str("?")?,
        }
        write!(f, ": {}", self.what)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Broken(Problem),
    #[error("reading the audit log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks the log in `dir`: every line a JSON object whose `hash` matches
/// its content, `seq` counting up by one from 1, `prev` the hash of the
/// line before it (64 zeros for the first), and, where there is a head file,
/// the record it names present and the same. A log with no file yet is intact.
pub fn verify(dir: &Path) -> Result<Summary, VerifyError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Io { path, source }
    };
    let head = match Head::read(dir) {
        Ok(h) => h,
        Err(HeadError::Io { path, source }) => return Err(VerifyError::Io { path, source }),
        Err(HeadError::Malformed { path }) => {
            return Err(VerifyError::Broken(Problem {
                file: path,
                line: 1,
                seq: None,
                what: "not a line `seq=N hash=HEX`".into(),
            }))
        }
    };
    let files = files(dir).map_err(io_err(dir))?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut prev_at: Option<(PathBuf, usize)> = None;
    let mut present = 0;
    for path in &files {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && Some(path) == files.last() => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        present += 1;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut n = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io_err(path))? == 0 {
                break;
            }
            n += 1;
            let bad = |seq: Option<u64>, what: String| {
                VerifyError::Broken(Problem {
                    file: path.clone(),
                    line: n,
                    seq,
                    what,
                })
            };
            let whole = line.pop() == Some(b'\n');
            let record: Map<String, Value> = serde_json::from_slice(&line)
                .map_err(|e| bad(None, format!("not a JSON object: {e}")))?;
            let seq = record.get("seq").and_then(Value::as_u64);
            if !whole {
                return Err(bad(seq, "cut short: no end of line".into()));
            }
            let Some(seq) = seq else {
                return Err(bad(None, "no seq".into()));
            };
            if record.get("hash").and_then(Value::as_str) != Some(&record_hash(&record)) {
                return Err(bad(
                    Some(seq),
                    "its content does not match its hash: the record was altered".into(),
                ));
            }
            if seq != expected_seq {
                let what = if seq > expected_seq {
                    format!("expected seq {expected_seq}: records are missing or out of order")
                } else {
                    format!("expected seq {expected_seq}: a record is repeated or out of order")
                };
                return Err(bad(Some(seq), what));
            }
            if record.get("prev").and_then(Value::as_str) != Some(&prev) {
                let what = match &prev_at {
                    Some((file, line)) => format!(
                        "prev is not the hash of the record before it ({}:{line})",
                        file.display()
                    ),
                    None => "prev of the first record is not 64 zeros".into(),
                };
                return Err(bad(Some(seq), what));
            }
            prev = sha256_hex(&line);
            if head
                .as_ref()
                .is_some_and(|h| h.seq == seq && h.hash != prev)
            {
                return Err(bad(
                    Some(seq),
                    format!(
                        "not the record {} names for this seq: the newest records were taken off and others written",
                        head_path(dir).display()
                    ),
                ));
            }
            prev_at = Some((path.clone(), n));
            expected_seq += 1;
        }
    }
    if let Some(h) = head.filter(|h| h.seq >= expected_seq) {
        let (file, line) = match prev_at {
            Some((file, n)) => (file, n + 1),
            None => (
                files.last().cloned().unwrap_or_else(|| dir.to_path_buf()),
                1,
            ),
        };
        return Err(VerifyError::Broken(Problem {
            file,
            line,
            seq: Some(expected_seq),
            what: format!(
                "missing: the log ends here, but {} names seq {}: {} taken off",
                head_path(dir).display(),
                h.seq,
                if h.seq == expected_seq {
                    format!("record {expected_seq} was")
                } else {
                    format!("records {expected_seq} to {} were", h.seq)
                }
            ),
        }));
    }
    Ok(Summary {
        records: expected_seq - 1,
        files: present,
    })
}
