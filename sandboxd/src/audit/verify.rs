//! The checker: walks every file of the log, oldest first, and names the
//! first record that breaks the chain. It only reads, so it can run while
//! a daemon writes the log.

use super::head::{head_path, Head, HeadError};
use super::{record_hash, rotated, sha256_hex, FILE_NAME, GENESIS};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Readings of a log that is being written made before a problem found is
/// reported: one that came of a write in progress (a line half-written, the
/// head being rewritten) is gone on the next; real damage stays.
const ATTEMPTS: usize = 3;

/// Pause between two readings.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Checks the log in `dir`: every line a JSON object whose `hash` matches
/// its content, `seq` counting up by one from 1, `prev` the hash of the
/// line before it (64 zeros for the first), and, where there is a head file,
/// the record it names present and the same. A log with no file yet is intact.
/// A daemon may write and rotate the log meanwhile: the chain is followed
/// into the files rotated during the walk, as far as the record the head
/// file named when the walk began (records written later may or may not
/// be checked), and a problem is reported only when [`ATTEMPTS`] readings
/// all find one.
pub fn verify(dir: &Path) -> Result<Summary, VerifyError> {
    let mut attempt = 1;
    loop {
        match verify_once(dir) {
            Err(e) if attempt < ATTEMPTS && e.may_pass() => {
                std::thread::sleep(RETRY_PAUSE);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

impl VerifyError {
    /// Whether another reading might not find it (a log written meanwhile).
    fn may_pass(&self) -> bool {
        match self {
            VerifyError::Broken(_) => true,
            VerifyError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VerifyError {
    let path = path.to_path_buf();
    move |source| VerifyError::Io { path, source }
}

/// One reading of the chain: the rotated files oldest first, then the
/// live file; when that was rotated while being read, on through the files
/// rotated since and the new live file, until a live file is read through
/// and is still the live one, or the walk has checked the record the head
/// file names (read first): a writer that rotates faster than the walk
/// reads cannot keep it going.
fn verify_once(dir: &Path) -> Result<Summary, VerifyError> {
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
    // Past it, the walk follows no further rotation.
    let bound = head.as_ref().map_or(0, |h| h.seq);
    let live_path = dir.join(FILE_NAME);
    let mut chain = Chain {
        dir,
        head,
        expected_seq: 1,
        prev: GENESIS.to_string(),
        prev_at: None,
        files: 0,
    };
    // Files read through, by inode: a live file read through shows up again
    // as a rotated one.
    let mut read: HashSet<u64> = HashSet::new();
    // The highest N of the rotated files listed so far.
    let mut listed = 0;
    loop {
        // Opened before the listing: once it is rotated, it is in the next one.
        let live = match File::open(&live_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&live_path)(e)),
        };
        let mut newer = false;
        for n in rotated(dir).map_err(io_err(dir))? {
            if n <= listed {
                continue;
            }
            listed = n;
            let path = dir.join(format!("{FILE_NAME}.{n}"));
            let file = File::open(&path).map_err(io_err(&path))?;
            let ino = file.metadata().map_err(io_err(&path))?.ino();
            if read.insert(ino) {
                newer = true;
                let mut lines = Lines::new(&path, file);
                lines.read(&mut chain)?;
                lines.finish(&mut chain)?;
            }
        }
        let Some(file) = live else {
            match newer && !chain.passed(bound) {
                // The live file may have been made since.
                true => continue,
                false => break,
            }
        };
        let ino = file.metadata().map_err(io_err(&live_path))?.ino();
        if newer && read.contains(&ino) {
            // Rotated since it was opened, and read as such.
            match chain.passed(bound) {
                true => break,
                false => continue,
            }
        }
        let mut lines = Lines::new(&live_path, file);
        lines.read(&mut chain)?;
        let still_live = match std::fs::metadata(&live_path) {
            Ok(m) => m.ino() == ino,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&live_path)(e)),
        };
        if !still_live {
            // Nothing more is written to it once renamed: this reads the rest.
            lines.read(&mut chain)?;
        }
        lines.finish(&mut chain)?;
        read.insert(ino);
        if still_live || chain.passed(bound) {
            break;
        }
    }
    chain.end(&live_path)
}

/// The lines of one file of the log, read as far as it is written.
struct Lines {
    path: PathBuf,
    reader: BufReader<File>,
    /// Lines read whole so far.
    n: usize,
    /// What was read past the last end of line.
    pending: Vec<u8>,
}

impl Lines {
    fn new(path: &Path, file: File) -> Lines {
        Lines {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            n: 0,
            pending: Vec::new(),
        }
    }

    /// Checks every whole line up to the end of the file as it is now; a
    /// line without its end yet is kept for the next call.
    fn read(&mut self, chain: &mut Chain<'_>) -> Result<(), VerifyError> {
        loop {
            let got = self
                .reader
                .read_until(b'\n', &mut self.pending)
                .map_err(io_err(&self.path))?;
            if got == 0 {
                return Ok(());
            }
            // Else the end of the file as it is now, inside a line.
            if self.pending.last() == Some(&b'\n') {
                self.pending.pop();
                self.n += 1;
                let line = std::mem::take(&mut self.pending);
                chain.line(&self.path, self.n, &line, true)?;
            }
        }
    }

    /// Checks a last line without its end of line (cut short), if any.
    fn finish(mut self, chain: &mut Chain<'_>) -> Result<(), VerifyError> {
        chain.files += 1;
        if self.pending.is_empty() {
            return Ok(());
        }
        self.n += 1;
        chain.line(&self.path, self.n, &self.pending, false)
    }
}

/// The chain as checked so far.
struct Chain<'a> {
    dir: &'a Path,
    head: Option<Head>,
    expected_seq: u64,
    /// Hash of the last line checked (the next record's `prev`).
    prev: String,
    /// Where that line is.
    prev_at: Option<(PathBuf, usize)>,
    /// Files read.
    files: usize,
}

impl Chain<'_> {
    /// Whether record `seq` has been checked.
    fn passed(&self, seq: u64) -> bool {
        self.expected_seq > seq
    }

    /// Checks line `n` of `path` (without its end of line; `whole`: it had one).
    fn line(&mut self, path: &Path, n: usize, line: &[u8], whole: bool) -> Result<(), VerifyError> {
        let bad = |seq: Option<u64>, what: String| {
            VerifyError::Broken(Problem {
                file: path.to_path_buf(),
                line: n,
                seq,
                what,
            })
        };
        let record: Map<String, Value> = serde_json::from_slice(line)
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
        let expected = self.expected_seq;
        if seq != expected {
            let what = if seq > expected {
                format!("expected seq {expected}: records are missing or out of order")
            } else {
                format!("expected seq {expected}: a record is repeated or out of order")
            };
            return Err(bad(Some(seq), what));
        }
        if record.get("prev").and_then(Value::as_str) != Some(&self.prev) {
            let what = match &self.prev_at {
                Some((file, line)) => format!(
                    "prev is not the hash of the record before it ({}:{line})",
                    file.display()
                ),
                None => "prev of the first record is not 64 zeros".into(),
            };
            return Err(bad(Some(seq), what));
        }
        self.prev = sha256_hex(line);
        if self
            .head
            .as_ref()
            .is_some_and(|h| h.seq == seq && h.hash != self.prev)
        {
            return Err(bad(
                Some(seq),
                format!(
                    "not the record {} names for this seq: the newest records were taken off and others written",
                    head_path(self.dir).display()
                ),
            ));
        }
        self.prev_at = Some((path.to_path_buf(), n));
        self.expected_seq += 1;
        Ok(())
    }

    /// The outcome once every file was read: the records the head file
    /// names past the end are missing (`live`: where the log would go on).
    fn end(self, live: &Path) -> Result<Summary, VerifyError> {
        let expected = self.expected_seq;
        if let Some(h) = self.head.filter(|h| h.seq >= expected) {
            let (file, line) = match self.prev_at {
                Some((file, n)) => (file, n + 1),
                None => (live.to_path_buf(), 1),
            };
            return Err(VerifyError::Broken(Problem {
                file,
                line,
                seq: Some(expected),
                what: format!(
                    "missing: the log ends here, but {} names seq {}: {} taken off",
                    head_path(self.dir).display(),
                    h.seq,
                    if h.seq == expected {
                        format!("record {expected} was")
                    } else {
                        format!("records {expected} to {} were", h.seq)
                    }
                ),
            }));
        }
        Ok(Summary {
            records: expected - 1,
            files: self.files,
        })
    }
}
