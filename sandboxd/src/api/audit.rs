//! Audit: the audit log read back to a caller. Users see their own records
//! (those whose `uid` is theirs); members of the admin group see all,
//! including records that name no uid. With `follow`, the live file is
//! polled for new records and followed across rotations, every record
//! sent once and in order. Only records the log has written for good are
//! sent: the bytes of a write in progress, which a failure may take back
//! (and its seqs be used again), are read again once it is done.

use super::Api;
use crate::audit::{rotated, AuditLog, FILE_NAME};
use crate::identity::Caller;
use crate::policy::values::parse_duration;
use crate::quota::{Quota, Slot};
use sandbox_proto::v1 as pb;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

pub type AuditStream = ReceiverStream<Result<pb::AuditRecord, Status>>;

/// How often a follower looks for new records.
const POLL: Duration = Duration::from_millis(200);

impl Api {
    /// Streams the records `caller` may read, oldest first, then (with
    /// `follow`) new ones until the client hangs up.
    pub(super) fn audit_stream(
        &self,
        caller: &Caller,
        req: pb::AuditRequest,
    ) -> Result<AuditStream, Status> {
        let since = match req.since.as_str() {
            "" => None,
            s => Some(parse_since(s, SystemTime::now()).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "since {:?}: expected RFC 3339 (2026-12-02T01:00:00Z) or a duration (10m, 2h)",
                    super::caller_text(s)
                ))
            })?),
        };
        let filter = Filter {
            uid: caller.uid,
            admin: caller.is_admin(self.admin_gid),
            since,
        };
        let dir = self.paths.state_dir.clone();
        let log = Arc::clone(&self.audit);
        let (tx, rx) = mpsc::channel(64);
        let uid = caller.uid;
        let reader = admit(uid)?;
        // A thread of its own, not the runtime's blocking pool: a reader
        // that waits on a slow or idle client must not hold up the audit
        // log's own writes, which run there.
        std::thread::Builder::new()
            .name("audit-reader".into())
            .spawn(move || {
                let _reader = reader;
                if let Err(e) = stream(&dir, &log, &filter, req.follow, &tx) {
                    tracing::warn!(uid, error = %e, "reading the audit log back");
                    send(&tx, Err(Status::internal(e.to_string())));
                }
            })
            .map_err(|e| {
                Status::resource_exhausted(format!("no thread to read the audit log: {e}"))
            })?;
        Ok(ReceiverStream::new(rx))
    }
}

/// Audit streams open at once, per uid and in all.
const READERS_PER_UID: usize = 8;
const READERS: usize = 64;

/// Open audit streams.
static OPEN: std::sync::LazyLock<Arc<Quota>> =
    std::sync::LazyLock::new(|| Quota::new(READERS_PER_UID, READERS));

/// A slot for one more audit stream of `uid`, counted while it lives.
fn admit(uid: u32) -> Result<Slot, Status> {
    OPEN.take(uid).ok_or_else(|| {
        let (mine, all) = OPEN.held(uid);
        Status::resource_exhausted(format!(
            "too many audit streams open ({mine} of uid {uid}, {all} in all; at most {READERS_PER_UID} per uid, {READERS} in all)"
        ))
    })
}

/// Which records a caller gets.
struct Filter {
    uid: u32,
    admin: bool,
    /// Unix ms; earlier records are left out.
    since: Option<i64>,
}

impl Filter {
    /// Whether `record` is shown.
    fn admits(&self, record: Option<&Map<String, Value>>) -> bool {
        let owner = record.and_then(|r| r.get("uid")).and_then(Value::as_u64);
        if !self.admin && owner != Some(u64::from(self.uid)) {
            return false;
        }
        match self.since {
            None => true,
            Some(t) => record
                .and_then(|r| r.get("time"))
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .is_some_and(|rt| rt >= t),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {action}: {source}", path.display())]
struct ReadError {
    path: std::path::PathBuf,
    action: &'static str,
    source: io::Error,
}

fn read_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ReadError {
    let path = path.to_path_buf();
    move |source| ReadError {
        path,
        action,
        source,
    }
}

/// Sends the admitted lines; remembers the last `seq` seen, so a record read
/// twice (a file rotated while it was being listed) goes out once.
struct Emitter<'a> {
    filter: &'a Filter,
    tx: &'a mpsc::Sender<Result<pb::AuditRecord, Status>>,
    last_seq: u64,
}

impl Emitter<'_> {
    /// False once the client is gone.
    fn line(&mut self, line: &[u8]) -> bool {
        let text = String::from_utf8_lossy(line);
        let record: Option<Map<String, Value>> = serde_json::from_str(&text).ok();
        if let Some(seq) = record
            .as_ref()
            .and_then(|r| r.get("seq"))
            .and_then(Value::as_u64)
        {
            if seq <= self.last_seq {
                return true;
            }
            self.last_seq = seq;
        }
        if !self.filter.admits(record.as_ref()) {
            return true;
        }
        let json = text.into_owned();
        send(self.tx, Ok(pb::AuditRecord { json }))
    }
}

/// How long a reader waits for its client to take what it was sent before
/// giving up on it: a client that stops reading gives its place back.
const SEND_WAIT: Duration = Duration::from_secs(30);

/// Sends `item` to the client, waiting at most [`SEND_WAIT`] for room;
/// false when the client is gone or took nothing meanwhile.
fn send(
    tx: &mpsc::Sender<Result<pb::AuditRecord, Status>>,
    item: Result<pb::AuditRecord, Status>,
) -> bool {
    send_within(tx, item, SEND_WAIT)
}

fn send_within<T>(tx: &mpsc::Sender<T>, mut item: T, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                item = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The live file as opened, and how far its records were sent.
struct Live {
    file: File,
    ino: u64,
    /// Offset just past the last line sent (or skipped): the end of a
    /// record written for good, so never taken back.
    pos: u64,
}

impl Live {
    /// `None` while the file does not exist (between a rotation's rename and create).
    fn open(path: &Path) -> Result<Option<Live>, ReadError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(path, "open")(e)),
        };
        let ino = file.metadata().map_err(read_err(path, "stat"))?.ino();
        Ok(Some(Live { file, ino, pos: 0 }))
    }

    /// Emits the whole lines written since the last call, up to the record
    /// `log` has written for good ([`AuditLog::written_seq`], taken before
    /// the file is read, so every line up to it is there and stays). What
    /// follows it is left for a later call: a write still running, or one
    /// that fails and is taken back. False once the client is gone.
    fn drain(
        &mut self,
        path: &Path,
        log: &AuditLog,
        out: &mut Emitter<'_>,
    ) -> Result<bool, ReadError> {
        let written = log.written_seq();
        if out.last_seq >= written {
            return Ok(true);
        }
        let len = self.file.metadata().map_err(read_err(path, "stat"))?.len();
        if len < self.pos {
            // The daemon takes back only what it has not written for good.
            return Err(read_err(path, "read")(io::Error::other(format!(
                "the file is {len} bytes, shorter than the {} bytes already read: it was cut",
                self.pos
            ))));
        }
        self.file
            .seek(SeekFrom::Start(self.pos))
            .map_err(read_err(path, "seek"))?;
        let mut reader = BufReader::new((&self.file).take(len - self.pos));
        let mut line = Vec::new();
        while out.last_seq < written {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(read_err(path, "read"))?;
            if line.pop() != Some(b'\n') {
                // The end of the file as it is now, inside a line.
                break;
            }
            self.pos += read as u64;
            if !line.is_empty() && !out.line(&line) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The records of every file, oldest first; then, with `follow`, the live
/// file's new ones. When the live file is found rotated (another file under
/// its name), the old one is drained to its end (nothing is written to it
/// once renamed), then every file rotated after it is read, then the new
/// live file is followed. The live file is opened before the rotated files
/// are listed, so a rotation in between loses nothing (its records are
/// read twice and sent once).
fn stream(
    dir: &Path,
    log: &AuditLog,
    filter: &Filter,
    follow: bool,
    tx: &mpsc::Sender<Result<pb::AuditRecord, Status>>,
) -> Result<(), ReadError> {
    let live_path = dir.join(FILE_NAME);
    let mut out = Emitter {
        filter,
        tx,
        last_seq: 0,
    };
    // The file followed; `None` before the start, and while there is none.
    let mut live: Option<Live> = None;
    let mut started = false;
    loop {
        // Checked before draining: once the name points elsewhere, nothing
        // more is written to the old file, so draining it now reads it all.
        let moved = !started
            || follow
                && match std::fs::metadata(&live_path) {
                    Ok(m) => live.as_ref().is_none_or(|l| l.ino != m.ino()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(read_err(&live_path, "stat")(e)),
                };
        if let Some(l) = live.as_mut() {
            if !l.drain(&live_path, log, &mut out)? {
                return Ok(());
            }
        }
        if moved {
            let next = Live::open(&live_path)?;
            let after = live.as_ref().map(|l| l.ino);
            for path in rotated_after(dir, after, out.last_seq)? {
                if !send_file(&path, &mut out)? {
                    return Ok(());
                }
            }
            live = next;
            started = true;
            continue;
        }
        if !follow || tx.is_closed() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// The rotated files after the one whose inode is `after` (all, when
/// there is none), oldest first: listed from the newest back to that one,
/// or to one whose first record is not past `last_seq` (read already).
fn rotated_after(dir: &Path, after: Option<u64>, last_seq: u64) -> Result<Vec<PathBuf>, ReadError> {
    let mut out = Vec::new();
    for n in rotated(dir)
        .map_err(read_err(dir, "listing the state dir"))?
        .into_iter()
        .rev()
    {
        let path = dir.join(format!("{FILE_NAME}.{n}"));
        let file = File::open(&path).map_err(read_err(&path, "open"))?;
        let ino = file.metadata().map_err(read_err(&path, "stat"))?.ino();
        if Some(ino) == after || first_seq(file, &path)?.is_some_and(|s| s <= last_seq) {
            break;
        }
        out.push(path);
    }
    out.reverse();
    Ok(out)
}

/// The `seq` of the first record of `file`, if it has one.
fn first_seq(file: File, path: &Path) -> Result<Option<u64>, ReadError> {
    let mut line = Vec::new();
    BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(read_err(path, "read"))?;
    let record: Option<Map<String, Value>> = serde_json::from_slice(line.trim_ascii_end()).ok();
    Ok(record.and_then(|r| r.get("seq").and_then(Value::as_u64)))
}

/// Sends the records of a rotated file; false once the client is gone.
fn send_file(path: &Path, out: &mut Emitter<'_>) -> Result<bool, ReadError> {
    let file = File::open(path).map_err(read_err(path, "open"))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(read_err(path, "read"))?
            == 0
        {
            return Ok(true);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.is_empty() && !out.line(&line) {
            return Ok(false);
        }
    }
}

/// The cutoff of `since` in Unix ms: an RFC 3339 time, or a duration back from `now`.
fn parse_since(since: &str, now: SystemTime) -> Option<i64> {
    if let Some(t) = parse_rfc3339(since) {
        return Some(t);
    }
    let back = parse_duration(since)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    Some(now.checked_sub(back).unwrap_or_default().as_millis() as i64)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (a space or `t` for `T` too) in Unix ms.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &s[i + 1..i + 1 + digits];
        ms = format!("{:0<3}", &frac[..digits.min(3)]).parse().ok()?;
        i += 1 + digits;
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if o.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (years
/// counted from March, so the leap day ends each one).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_takes_nothing_is_given_up_on() {
        let (tx, mut rx) = mpsc::channel(1);
        assert!(send_within(&tx, 1, Duration::from_millis(50)));
        let t0 = std::time::Instant::now();
        assert!(!send_within(&tx, 2, Duration::from_millis(50)));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // Room made meanwhile is used.
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let first = rx.blocking_recv();
            (first, rx)
        });
        assert!(send_within(&tx, 3, Duration::from_secs(5)));
        let (first, rx) = taker.join().unwrap();
        assert_eq!(first, Some(1));
        drop(rx);
        assert!(!send_within(&tx, 4, Duration::from_secs(5)));
    }

    #[test]
    fn rfc3339_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.1Z"),
            Some(951_782_400_100)
        );
        assert_eq!(
            parse_rfc3339("2026-12-31T23:59:59Z"),
            Some(1_798_761_599_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-31T23:59:59.999999z"),
            Some(1_798_761_599_999)
        );
        assert_eq!(
            parse_rfc3339("2027-01-01T01:00:00+01:00"),
            Some(1_798_761_600_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-31 22:00:00-02:00"),
            Some(1_798_761_600_000)
        );
        for bad in [
            "",
            "10m",
            "2026-12-31",
            "2026-13-01T00:00:00Z",
            "2026-12-31T23:59:59",
            "2026-12-31T23:59:59+0100",
            "2026-12-31T23:59:59.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        let now = UNIX_EPOCH + Duration::from_secs(3600);
        assert_eq!(parse_since("10m", now), Some(3_000_000));
        assert_eq!(parse_since("2h", now), Some(0));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", now), Some(1000));
        assert_eq!(parse_since("yesterday", now), None);
    }

    /// A follower never sends the bytes of a write that is then taken back
    /// (as the log undoes a failed one: a whole record, and a line cut
    /// short), and sends the records written in their place, each once.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_follower_sends_only_records_written_for_good() {
        use crate::audit::DEFAULT_MAX_BYTES;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
        log.append("exec-start", serde_json::json!({"n": "1"}))
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let follower = {
            let (dir, log) = (dir.path().to_path_buf(), Arc::clone(&log));
            std::thread::spawn(move || {
                let filter = Filter {
                    uid: 0,
                    admin: true,
                    since: None,
                };
                stream(&dir, &log, &filter, true, &tx)
            })
        };
        let mut next = async || {
            let got = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
            let record = got
                .expect("a record within 20 s")
                .expect("the stream goes on");
            record.expect("a record, not an error").json
        };
        let live = dir.path().join(FILE_NAME);
        let first = next().await;
        assert_eq!(
            std::fs::read_to_string(&live).unwrap(),
            format!("{first}\n")
        );
        // A write in progress: a record, then part of the next one; the
        // follower polls meanwhile. Then it fails and is taken back.
        let size = std::fs::metadata(&live).unwrap().len();
        let taken_back = first
            .replace("\"seq\":1", "\"seq\":2")
            .replace("\"1\"", "\"gone\"");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        write!(f, "{taken_back}\n{{\"seq\":3,\"ki").unwrap();
        std::thread::sleep(POLL * 5);
        f.set_len(size).unwrap();
        for n in ["2", "3"] {
            log.append("exec-start", serde_json::json!({"n": n}))
                .await
                .unwrap();
        }
        let sent = [first, next().await, next().await];
        let text = std::fs::read_to_string(&live).unwrap();
        let written: Vec<&str> = text.lines().collect();
        assert_eq!(sent.as_slice(), written.as_slice());
        drop(rx);
        assert!(follower.join().unwrap().is_ok());
    }

    #[test]
    fn users_see_their_own_records_admins_all() {
        let rec = |json: &str| serde_json::from_str::<Map<String, Value>>(json).ok();
        let user = Filter {
            uid: 1000,
            admin: false,
            since: None,
        };
        let admin = Filter {
            uid: 1001,
            admin: true,
            since: Some(1000),
        };
        let own = rec(r#"{"uid":1000,"time":"1970-01-01T00:00:01.000Z"}"#);
        let other = rec(r#"{"uid":1001,"time":"1970-01-01T00:00:00.999Z"}"#);
        let none = rec(r#"{"time":"1970-01-01T00:00:02.000Z"}"#);
        assert!(user.admits(own.as_ref()));
        assert!(!user.admits(other.as_ref()));
        assert!(!user.admits(none.as_ref()));
        assert!(!user.admits(None));
        assert!(admin.admits(own.as_ref()));
        assert!(!admin.admits(other.as_ref()), "before since");
        assert!(admin.admits(none.as_ref()));
    }
}
