//! The writer: one lock serializes appends; each record is written and
//! fsync'ed before `append` returns, so the caller can hold its action until
//! the record is on disk. The file is opened by its path for each record,
//! so a log that has become unwritable (read-only mount, removed directory)
//! fails the next append rather than going on into a stale file.

use super::{files, record_hash, rfc3339, rotated, sha256_hex, FILE_NAME, GENESIS};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Size past which `audit.jsonl` is rotated, unless the config says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("audit log {}:{line}: {problem}; run `sandboxd audit verify` and move the damaged log aside", path.display())]
    Tail {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("audit log {}: an earlier failed write could not be undone, so no further record can extend the chain", path.display())]
    Poisoned { path: PathBuf },
    #[error("audit record {kind:?}: its fields are not a JSON object")]
    Fields { kind: String },
    #[error("audit log: the writing thread failed: {0}")]
    Thread(String),
}

/// The append-only writer. Appends are serialized by its lock.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `seq` of the last record written (0: none yet).
    seq: u64,
    /// Hash of the last line written.
    prev: String,
    /// A failed write left bytes that could not be removed.
    poisoned: bool,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io {
        path,
        action,
        source,
    }
}

/// The last line of `path` (without its newline) and its 1-based number;
/// `None` for an empty or missing file.
fn last_line(path: &Path) -> Result<Option<(Vec<u8>, usize)>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut last = None;
    let mut n = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "read"))?;
        if read == 0 {
            return Ok(last);
        }
        n += 1;
        if line.pop() != Some(b'\n') {
            return Err(AuditError::Tail {
                path: path.to_path_buf(),
                line: n,
                problem: "the last record is cut short (no end of line)".into(),
            });
        }
        last = Some((line.clone(), n));
    }
}

impl AuditLog {
    /// Opens `dir/audit.jsonl` for appending, to be rotated past
    /// `max_bytes`, continuing `seq` and the chain from the last record of
    /// the newest file that has one. A last line that is cut short or has no
    /// `seq` is an error: appending after it would hide the damage.
    /// (`sandboxd audit verify` checks the rest.)
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        let files = files(dir).map_err(io_err(dir, "listing the state dir"))?;
        let mut seq = 0;
        let mut prev = GENESIS.to_string();
        for path in files.iter().rev() {
            let Some((line, n)) = last_line(path)? else {
                continue;
            };
            let record: Map<String, Value> =
                serde_json::from_slice(&line).map_err(|e| AuditError::Tail {
                    path: path.clone(),
                    line: n,
                    problem: format!("the last record is not a JSON object: {e}"),
                })?;
            seq = record
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| AuditError::Tail {
                    path: path.clone(),
                    line: n,
                    problem: "the last record has no seq".into(),
                })?;
            prev = sha256_hex(&line);
            break;
        }
        let log = AuditLog {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                seq,
                prev,
                poisoned: false,
            }),
        };
        // Refuse to start on a log that cannot be written.
        log.create_live()?;
        Ok(log)
    }

    /// The live file's path.
    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Appends a `kind` record with `fields` (a JSON object; `seq`, `time`,
    /// `kind`, `prev` and `hash` are set here and win over same-named
    /// fields), on a blocking thread. Returns once the record is on disk,
    /// with its `seq`.
    pub async fn append(self: &Arc<Self>, kind: &str, fields: Value) -> Result<u64, AuditError> {
        let log = Arc::clone(self);
        let kind = kind.to_string();
        tokio::task::spawn_blocking(move || log.append_blocking(&kind, fields))
            .await
            .map_err(|e| AuditError::Thread(e.to_string()))?
    }

    /// [`append`](Self::append) on the calling thread.
    pub fn append_blocking(&self, kind: &str, fields: Value) -> Result<u64, AuditError> {
        let Value::Object(mut record) = fields else {
            return Err(AuditError::Fields { kind: kind.into() });
        };
        let live = self.path();
        // A panic elsewhere while holding the lock leaves the state as valid as any write does.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.poisoned {
            return Err(AuditError::Poisoned { path: live });
        }
        let seq = state.seq + 1;
        record.insert("seq".into(), seq.into());
        record.insert("time".into(), rfc3339(SystemTime::now()).into());
        record.insert("kind".into(), kind.into());
        record.insert("prev".into(), state.prev.clone().into());
        let hash = record_hash(&record);
        record.insert("hash".into(), hash.into());
        let line = Value::Object(record).to_string();
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        let mut file = open_live(&live)?;
        let mut size = file.metadata().map_err(io_err(&live, "stat"))?.len();
        if size > 0 && size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
            file = open_live(&live)?;
            size = 0;
        }
        let written = file
            .write_all(&buf)
            .map_err(io_err(&live, "write"))
            .and_then(|()| file.sync_data().map_err(io_err(&live, "fsync")));
        if let Err(e) = written {
            // Remove what part of the line reached the file, so the next record follows a whole one.
            if file.set_len(size).is_err() {
                state.poisoned = true;
            }
            return Err(e);
        }
        state.seq = seq;
        state.prev = sha256_hex(&buf[..buf.len() - 1]);
        Ok(seq)
    }

    /// Renames the full live file to the next `audit.jsonl.N` and starts an
    /// empty one; its first record is chained to the renamed file's last line.
    fn rotate(&self) -> Result<(), AuditError> {
        let live = self.path();
        let next = rotated(&self.dir)
            .map_err(io_err(&self.dir, "listing the state dir"))?
            .last()
            .map_or(1, |n| n + 1);
        let target = self.dir.join(format!("{FILE_NAME}.{next}"));
        std::fs::rename(&live, &target).map_err(io_err(&live, "rotating"))?;
        self.create_live()
    }

    /// Creates the live file if missing, and makes its name durable.
    fn create_live(&self) -> Result<(), AuditError> {
        open_live(&self.path())?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir, "fsync of the state dir"))
    }
}

/// Opens (creating, mode 0600) the live file for appending.
fn open_live(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "open for appending"))
}
