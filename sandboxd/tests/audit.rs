//! The audit log's writer and checker on real files: the chain holds across
//! appends, rotation and reopening, and each kind of tampering is named at
//! the right file and line.

use sandboxd::audit::{
    verify, AuditError, AuditLog, Problem, VerifyError, DEFAULT_MAX_BYTES, FILE_NAME, GENESIS,
    HEAD_NAME, MAX_PENDING, MAX_PENDING_BYTES,
};
use sandboxd::config::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn append_n(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.append_blocking(
            "exec-start",
            json!({"argv": ["echo", i.to_string()], "uid": 1000}),
        )
        .expect("append");
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).expect("write");
}

fn record(line: &str) -> Value {
    serde_json::from_str(line).expect("json")
}

/// A log of six records with `edit` applied to its lines: its dir, its
/// file and the problem `audit verify` finds.
fn six_records_edited(
    edit: impl FnOnce(&mut Vec<String>),
) -> (tempfile::TempDir, PathBuf, Problem) {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 6);
    let path = dir.path().join(FILE_NAME);
    let mut l = lines(&path);
    edit(&mut l);
    write_lines(&path, &l);
    let p = problem(dir.path());
    (dir, path, p)
}

fn problem(dir: &Path) -> Problem {
    match verify(dir) {
        Err(VerifyError::Broken(p)) => p,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn records_are_chained_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    append_n(&log, 5);
    let lines = lines(&dir.path().join(FILE_NAME));
    assert_eq!(lines.len(), 5);
    let first = record(&lines[0]);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], GENESIS);
    assert_eq!(first["kind"], "exec-start");
    assert_eq!(first["uid"], 1000);
    let time = first["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    for (i, pair) in lines.windows(2).enumerate() {
        let next = record(&pair[1]);
        assert_eq!(next["seq"], i as u64 + 2);
        assert_eq!(
            next["prev"],
            hex::encode(Sha256::digest(pair[0].as_bytes()))
        );
    }
    let summary = verify(dir.path()).unwrap();
    assert_eq!((summary.records, summary.files), (5, 1));
}

#[test]
fn reserved_fields_cannot_be_forged_and_fields_must_be_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    log.append_blocking(
        "refusal",
        json!({"seq": 99, "prev": "x", "kind": "exec-start"}),
    )
    .unwrap();
    let r = record(&lines(&dir.path().join(FILE_NAME))[0]);
    assert_eq!(
        (r["seq"].clone(), r["kind"].clone(), r["prev"].clone()),
        (json!(1), json!("refusal"), json!(GENESIS))
    );
    assert!(matches!(
        log.append_blocking("refusal", json!([1])),
        Err(AuditError::Fields { .. })
    ));
    verify(dir.path()).unwrap();
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append("exec-end", json!({"i": i})).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=32).collect::<Vec<u64>>());
    assert_eq!(verify(dir.path()).unwrap().records, 32);
}

/// Records submitted before a wait are written by it together (one write,
/// in submission order); a submitted record nobody waits for still goes to
/// disk with the next flush.
#[test]
fn submitted_records_share_a_flush_and_an_abandoned_one_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let live = dir.path().join(FILE_NAME);
    let first = log.submit("network", json!({"n": 1})).unwrap();
    let second = log.submit("network", json!({"n": 2})).unwrap();
    assert!(lines(&live).is_empty(), "nothing is written before a wait");
    assert_eq!(second.wait().unwrap(), 2);
    assert_eq!(
        lines(&live).len(),
        2,
        "the first was written with the second"
    );
    assert_eq!(first.wait().unwrap(), 1);

    drop(log.submit("network", json!({"n": 3})).unwrap());
    assert_eq!(lines(&live).len(), 2);
    log.flush_queued().unwrap();
    let after = lines(&live);
    assert_eq!(record(&after[2])["n"], 3);
    // A ticket dropped after its flush is forgotten as well.
    let fourth = log.submit("network", json!({"n": 4})).unwrap();
    log.flush_queued().unwrap();
    drop(fourth);
    assert_eq!(log.append_blocking("network", json!({"n": 5})).unwrap(), 5);
    assert_eq!(verify(dir.path()).unwrap().records, 5);
}

#[test]
fn rotation_keeps_every_file_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), 1000).unwrap();
    append_n(&log, 40);
    let one = dir.path().join(format!("{FILE_NAME}.1"));
    let two = dir.path().join(format!("{FILE_NAME}.2"));
    assert!(one.exists() && two.exists(), "no rotation");
    for f in [&one, &two] {
        assert!(std::fs::metadata(f).unwrap().len() <= 1000);
    }
    let last_of_one = lines(&one).pop().unwrap();
    let first_of_two = record(&lines(&two)[0]);
    assert_eq!(
        first_of_two["prev"],
        hex::encode(Sha256::digest(last_of_one.as_bytes()))
    );
    assert_eq!(
        first_of_two["seq"],
        record(&last_of_one)["seq"].as_u64().unwrap() + 1
    );
    let summary = verify(dir.path()).unwrap();
    assert_eq!(summary.records, 40);
    assert!(summary.files >= 3, "{summary:?}");
}

#[test]
fn reopening_continues_seq_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 3);
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 2);
    assert_eq!(verify(dir.path()).unwrap().records, 5);
    // Reopened just after a rotation, before the new live file was made:
    // the chain runs on from the rotated one.
    std::fs::rename(
        dir.path().join(FILE_NAME),
        dir.path().join(format!("{FILE_NAME}.7")),
    )
    .unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 1);
    assert_eq!(verify(dir.path()).unwrap().records, 6);
}

#[test]
fn an_edited_field_names_its_record() {
    let (_dir, path, p) =
        six_records_edited(|l| l[3] = l[3].replace("\"uid\":1000", "\"uid\":1001"));
    assert_eq!(
        (p.file.clone(), p.line, p.seq),
        (path.clone(), 4, Some(4)),
        "{p}"
    );
    assert!(
        p.to_string()
            .starts_with(&format!("{}:4: seq 4: ", path.display())),
        "{p}"
    );
    assert!(p.what.contains("altered"), "{p}");
}

#[test]
fn an_edit_with_its_hash_redone_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 4);
    let path = dir.path().join(FILE_NAME);
    let mut l = lines(&path);
    let mut r: serde_json::Map<String, Value> = serde_json::from_str(&l[1]).unwrap();
    r.insert("uid".into(), json!(0));
    r.remove("hash");
    let hash = hex::encode(Sha256::digest(
        Value::Object(r.clone()).to_string().as_bytes(),
    ));
    r.insert("hash".into(), json!(hash));
    l[1] = Value::Object(r).to_string();
    write_lines(&path, &l);
    let p = problem(dir.path());
    assert_eq!((p.line, p.seq), (3, Some(3)), "{p}");
    assert!(p.what.contains(&format!("{}:2", path.display())), "{p}");
}

#[test]
fn a_removed_record_is_named() {
    let (_dir, _, p) = six_records_edited(|l| {
        l.remove(2);
    });
    assert_eq!((p.line, p.seq), (3, Some(4)), "{p}");
    assert!(p.what.contains("expected seq 3"), "{p}");
}

#[test]
fn the_newest_records_taken_off_are_named_and_the_log_is_not_reopened() {
    let (dir, path, p) = six_records_edited(|l| l.truncate(4));
    assert_eq!((p.line, p.seq), (5, Some(5)), "{p}");
    assert!(p.what.contains("records 5 to 6 were taken off"), "{p}");
    let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    assert!(matches!(err, AuditError::Cut { recorded: 6, .. }), "{err}");
    assert!(err.to_string().contains(HEAD_NAME), "{err}");
    // The whole live file gone: named from its first line.
    std::fs::remove_file(&path).unwrap();
    let p = problem(dir.path());
    assert_eq!(
        (p.file.clone(), p.line, p.seq),
        (path.clone(), 1, Some(1)),
        "{p}"
    );
    assert!(p.what.contains("records 1 to 6"), "{p}");
    // Moved aside on purpose, the head no longer holds the start back.
    std::fs::rename(dir.path().join(HEAD_NAME), dir.path().join("old.head")).unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    append_n(&log, 1);
    assert_eq!(verify(dir.path()).unwrap().records, 1);
}

#[test]
fn a_log_opened_and_closed_with_no_record_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    drop(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    assert_eq!(verify(dir.path()).unwrap().records, 0);
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 1);
    drop(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    assert_eq!(verify(dir.path()).unwrap().records, 1);
}

#[test]
fn newest_records_replaced_are_named() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 3);
    let path = dir.path().join(FILE_NAME);
    let head = dir.path().join(HEAD_NAME);
    let written = std::fs::read(&head).unwrap();
    // The last record taken off, the head moved aside, another one written
    // in its place, and the head put back.
    let mut l = lines(&path);
    l.truncate(2);
    write_lines(&path, &l);
    std::fs::remove_file(&head).unwrap();
    AuditLog::open(dir.path(), DEFAULT_MAX_BYTES)
        .unwrap()
        .append_blocking("exec-start", json!({"argv": ["other"]}))
        .unwrap();
    std::fs::write(&head, &written).unwrap();
    let p = problem(dir.path());
    assert_eq!((p.line, p.seq), (3, Some(3)), "{p}");
    assert!(p.what.contains("not the record"), "{p}");
    let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    assert!(matches!(err, AuditError::Cut { recorded: 3, .. }), "{err}");
}

#[test]
fn swapped_records_are_named() {
    let (_dir, _, p) = six_records_edited(|l| l.swap(1, 2));
    assert_eq!((p.line, p.seq), (2, Some(3)), "{p}");
}

#[test]
fn a_truncated_rotated_file_is_named_at_the_next_file() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), 1000).unwrap(), 20);
    let one = dir.path().join(format!("{FILE_NAME}.1"));
    let mut l = lines(&one);
    let kept = l.len() - 1;
    l.truncate(kept);
    write_lines(&one, &l);
    let p = problem(dir.path());
    let two = dir.path().join(format!("{FILE_NAME}.2"));
    assert_eq!((p.file.clone(), p.line), (two, 1), "{p}");
    assert_eq!(p.seq, Some(kept as u64 + 2), "{p}");

    // A written record cut in the middle: verify names its line, and the
    // writer does not take it for a stop mid-write (the head names it).
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 3);
    let path = dir.path().join(FILE_NAME);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let p = problem(dir.path());
    assert_eq!((p.file.clone(), p.line), (path.clone(), 3), "{p}");
    let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    assert!(matches!(err, AuditError::Cut { recorded: 3, .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), &text[..text.len() - 10]);
    // A stop mid-write leaves part of a line nobody was told of: verify
    // names it; the writer takes it off and says so in the chain.
    let mut torn = text.clone();
    torn.extend_from_slice(&text[..40]);
    std::fs::write(&path, &torn).unwrap();
    let p = problem(dir.path());
    assert_eq!((p.file.clone(), p.line), (path.clone(), 4), "{p}");
    drop(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    assert_eq!(record(&lines(&path)[3])["kind"], "recovered");
    assert_eq!(sandboxd::audit::verify(dir.path()).unwrap().records, 4);

    // A whole last line that is no record is damage: the writer refuses it.
    std::fs::write(&path, b"not a record\n").unwrap();
    let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    assert!(matches!(err, AuditError::Tail { line: 1, .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_removed_oldest_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), 1000).unwrap(), 20);
    std::fs::remove_file(dir.path().join(format!("{FILE_NAME}.1"))).unwrap();
    let p = problem(dir.path());
    assert_eq!(p.file, dir.path().join(format!("{FILE_NAME}.2")));
    assert_eq!(p.line, 1, "{p}");
}

#[test]
fn an_unwritable_log_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
    let err = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{msg}"
    );
}

#[test]
fn the_rotation_size_comes_from_the_config() {
    let c = Config::parse("t.toml", "").unwrap();
    assert_eq!(c.audit_max_size, DEFAULT_MAX_BYTES);
    let c = Config::parse("t.toml", "[audit]\nmax_size = \"1MiB\"\n").unwrap();
    assert_eq!(c.audit_max_size, 1 << 20);
    let err = Config::parse("t.toml", "[audit]\nmax_size = \"big\"\n").unwrap_err();
    assert!(err.to_string().starts_with("t.toml:2:"), "{err}");
    assert!(err.to_string().contains("audit.max_size"), "{err}");
    let err = Config::parse("t.toml", "[audit]\nmax_sise = \"1k\"\n").unwrap_err();
    assert!(err.to_string().contains("max_sise"), "{err}");
}

#[test]
fn a_failed_write_is_an_error_and_the_chain_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    log.append_blocking("exec-start", json!({"n": 1})).unwrap();
    // The live file replaced by a directory: the next flush cannot open it.
    let live = dir.path().join(FILE_NAME);
    std::fs::rename(&live, dir.path().join("aside")).unwrap();
    std::fs::create_dir(&live).unwrap();
    let err = log
        .append_blocking("exec-start", json!({"n": 2}))
        .unwrap_err();
    assert!(
        err.to_string().contains(&live.display().to_string()),
        "{err}"
    );
    std::fs::remove_dir(&live).unwrap();
    std::fs::rename(dir.path().join("aside"), &live).unwrap();
    let seq = log.append_blocking("exec-start", json!({"n": 3})).unwrap();
    assert_eq!(seq, 2, "the lost record took no seq");
    let summary = sandboxd::audit::verify(dir.path()).unwrap();
    assert_eq!(summary.records, 2, "{summary:?}");
}

#[test]
fn records_nobody_waits_for_outlive_a_failed_write_and_follow_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    log.append_blocking("exec-start", json!({"n": "1"}))
        .unwrap();
    let live = dir.path().join(FILE_NAME);
    std::fs::rename(&live, dir.path().join("aside")).unwrap();
    std::fs::create_dir(&live).unwrap();
    // Decisions already acted on (a DNS answer, a connection's end).
    log.enqueue("network", json!({"n": "dns"})).unwrap();
    log.enqueue("network-end", json!({"n": "end"})).unwrap();
    // The next waited-for write fails, and says so; the others are kept,
    // and a flush of them reports that they are not on disk yet.
    assert!(log
        .append_blocking("exec-start", json!({"n": "2"}))
        .is_err());
    assert!(log.flush_queued().is_err());
    std::fs::remove_dir(&live).unwrap();
    std::fs::rename(dir.path().join("aside"), &live).unwrap();
    log.flush_queued().unwrap();
    assert_eq!(
        log.append_blocking("exec-start", json!({"n": "3"}))
            .unwrap(),
        4
    );
    let ns: Vec<String> = lines(&live)
        .iter()
        .map(|l| record(l)["n"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ns, ["1", "dns", "end", "3"]);
    assert_eq!(sandboxd::audit::verify(dir.path()).unwrap().records, 4);
}

/// Makes the next flush fail: the live file replaced by a directory. The
/// returned closure puts it back.
fn break_live(dir: &Path) -> impl FnOnce() {
    let live = dir.join(FILE_NAME);
    let aside = dir.join("aside");
    std::fs::rename(&live, &aside).unwrap();
    std::fs::create_dir(&live).unwrap();
    move || {
        std::fs::remove_dir(&live).unwrap();
        std::fs::rename(aside, live).unwrap();
    }
}

/// The `n` field of each record of the live file.
fn ns(dir: &Path) -> Vec<String> {
    lines(&dir.join(FILE_NAME))
        .iter()
        .map(|l| record(l)["n"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn the_record_of_something_done_outlives_a_failed_write_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    log.append("exec-start", json!({"n": "1"})).await.unwrap();
    let restore = break_live(dir.path());
    // The end of an exec: its caller hears of the failure, and the record is kept.
    let err = log
        .append_done("exec-end", json!({"n": "end"}))
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::Kept { .. }), "{err:?}");
    assert!(err.to_string().contains("the record is kept"), "{err}");
    // A record of something not done yet is not kept.
    assert!(log.append("exec-start", json!({"n": "x"})).await.is_err());
    restore();
    assert_eq!(
        log.append("exec-start", json!({"n": "2"})).await.unwrap(),
        3
    );
    assert_eq!(ns(dir.path()), ["1", "end", "2"]);
    assert_eq!(verify(dir.path()).unwrap().records, 3);
}

#[test]
fn records_dropped_past_the_queue_bound_are_counted_in_a_lost_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), 1 << 30).unwrap();
    log.append_blocking("exec-start", json!({"n": "1"}))
        .unwrap();
    let restore = break_live(dir.path());
    for _ in 0..MAX_PENDING + 2 {
        log.enqueue("network", json!({"n": "dns"})).unwrap();
    }
    log.enqueue("network-end", json!({"n": "end"})).unwrap();
    assert!(log.flush_queued().is_err());
    // Still failing: the count is kept for later.
    assert!(log.flush_queued().is_err());
    restore();
    log.flush_queued().unwrap();
    let all = lines(&dir.path().join(FILE_NAME));
    assert_eq!(
        all.len(),
        2 + MAX_PENDING,
        "the first record, lost, the kept"
    );
    let lost = record(&all[1]);
    assert_eq!(lost["kind"], "lost", "{lost}");
    assert_eq!(lost["records"], 3, "{lost}");
    assert_eq!(lost["kinds"], json!({"network": 2, "network-end": 1}));
    assert_eq!(record(&all[2])["kind"], "network");
    // Said once.
    assert_eq!(
        log.append_blocking("exec-start", json!({})).unwrap(),
        3 + MAX_PENDING as u64
    );
    assert_eq!(
        lines(&dir.path().join(FILE_NAME))
            .iter()
            .filter(|l| record(l)["kind"] == "lost")
            .count(),
        1
    );
    assert_eq!(verify(dir.path()).unwrap().records, 3 + MAX_PENDING as u64);
}

/// Kept records are bounded by their bytes as well as their number: past
/// [`MAX_PENDING_BYTES`], more are counted as lost.
#[test]
fn records_kept_past_the_byte_bound_are_counted_in_a_lost_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), 1 << 30).unwrap();
    let restore = break_live(dir.path());
    let big = "x".repeat(1 << 20);
    let sent = MAX_PENDING_BYTES / big.len() + 2;
    for _ in 0..sent {
        log.enqueue("network", json!({ "host": big })).unwrap();
    }
    assert!(log.flush_queued().is_err());
    restore();
    log.flush_queued().unwrap();
    let all = lines(&dir.path().join(FILE_NAME));
    let lost = record(&all[0]);
    assert_eq!(lost["kind"], "lost", "{lost}");
    let kept = &all[1..];
    assert_eq!(
        lost["kinds"]["network"].as_u64(),
        Some((sent - kept.len()) as u64)
    );
    assert!(kept.len() < sent - 1, "{} of {sent} kept", kept.len());
    // As many as fit in the bound.
    let bytes: usize = kept.iter().map(|l| l.len() + 1).sum();
    assert!(bytes <= MAX_PENDING_BYTES, "{bytes}");
    assert!(bytes + kept[0].len() + 1 > MAX_PENDING_BYTES, "{bytes}");
    assert_eq!(verify(dir.path()).unwrap().records, all.len() as u64);
}

#[test]
fn a_last_record_cut_short_is_taken_off_and_the_chain_says_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        append_n(&log, 2);
    }
    let live = dir.path().join(FILE_NAME);
    let mut text = std::fs::read(&live).unwrap();
    text.extend_from_slice(b"{\"seq\":3,\"ki");
    std::fs::write(&live, &text).unwrap();
    let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(log.append_blocking("exec-start", json!({})).unwrap(), 4);
    let all = lines(&live);
    let recovered = record(&all[2]);
    assert_eq!(recovered["kind"], "recovered");
    assert_eq!(recovered["seq"], 3);
    assert_eq!(recovered["dropped_bytes"], 12);
    assert_eq!(sandboxd::audit::verify(dir.path()).unwrap().records, 4);
}

#[test]
fn a_cut_record_is_put_back_when_the_log_cannot_be_opened_after_all() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap(), 2);
    let live = dir.path().join(FILE_NAME);
    let mut text = std::fs::read(&live).unwrap();
    text.extend_from_slice(b"not a record\n{\"seq\":4,\"ki");
    std::fs::write(&live, &text).unwrap();
    // The damaged last line refuses the start; the cut is undone, so that a
    // start after the repair still finds it and records it.
    assert!(matches!(
        AuditLog::open(dir.path(), DEFAULT_MAX_BYTES),
        Err(AuditError::Tail { line: 3, .. })
    ));
    assert_eq!(std::fs::read(&live).unwrap(), text);
}

/// `verify` run again and again while a writer appends and rotates every
/// few records never reports damage that is not there; a record edited in
/// a rotated file meanwhile is named.
#[test]
fn verify_during_rotations_reports_only_real_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), 1000).unwrap());
    append_n(&log, 10);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append_n(&log, 1);
            }
        })
    };
    let mut last = 0;
    let mut checked = Ok(());
    // Until the writer has rotated 20 times (an fsync per record: slow
    // on a loaded disk), and at least a dozen runs.
    let twentieth = dir.path().join(format!("{FILE_NAME}.20"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut runs = 0;
    while (runs <= 10 || !twentieth.exists()) && std::time::Instant::now() < deadline {
        match verify(dir.path()) {
            Ok(summary) => {
                assert!(summary.records >= last, "{summary:?} after {last}");
                last = summary.records;
            }
            Err(e) => {
                checked = Err(e);
                break;
            }
        }
        runs += 1;
    }
    if checked.is_err() {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Damage in a file that rotation no longer touches, the writer still going.
    let first = dir.path().join(format!("{FILE_NAME}.1"));
    let mut l = lines(&first);
    l[1] = l[1].replace("\"uid\":1000", "\"uid\":0");
    write_lines(&first, &l);
    let damaged = verify(dir.path());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    checked.unwrap_or_else(|e| panic!("after {runs} good runs: {e}"));
    assert!(runs > 10, "only {runs} runs");
    assert!(twentieth.exists(), "too few rotations in 60 s");
    match damaged {
        Err(VerifyError::Broken(p)) => {
            assert_eq!((p.file, p.line), (first, 2), "{}", p.what);
            assert!(p.what.contains("altered"), "{}", p.what);
        }
        other => panic!("the edit went unnoticed: {other:?}"),
    }
}
