//! The tamper-evident audit log: `STATE_DIR/audit.jsonl`, one JSON object a
//! line, chained by the SHA-256 of the previous line ([`AuditLog`] appends,
//! [`verify`] checks).
//!
//! Every record carries `seq` (1, 2, ... across the whole chain), `time`
//! (RFC 3339, UTC), `kind`, its own fields, `prev` (hex SHA-256 of the
//! previous line's bytes; 64 zeros for the first record) and `hash` (hex
//! SHA-256 of the record serialized without `hash`), so that an edit that
//! leaves `hash` alone is named at its record, even the last one. An edit
//! that also redoes `hash` shows at the next record's `prev`. The newest
//! records taken off (or replaced) leave a valid shorter chain, which the
//! head file `audit.head` (the newest record's `seq` and hash, rewritten
//! after every write) shows up. Full files are renamed to `audit.jsonl.1`,
//! `.2`, ... (oldest first) and kept; the chain runs on across them. One
//! daemon at a time writes a state dir's log (it holds a lock on the dir).

mod head;
mod log;
mod verify;

pub use head::{Head, HeadError, HEAD_NAME};
pub use log::{AuditError, AuditLog, Unwritten, DEFAULT_MAX_BYTES, MAX_PENDING, MAX_PENDING_BYTES};
pub use verify::{verify, Problem, Summary, VerifyError};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The live file's name inside the state dir.
pub const FILE_NAME: &str = "audit.jsonl";

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most bytes of argv, as written in the record, a refusal's record keeps:
/// a refused exec costs its caller nothing, so its record must not let them
/// fill the disk.
pub const REFUSED_ARGV_BYTES: usize = 16 << 10;

/// Most bytes of argv, as written in the record, an exec's start or
/// approval question keeps: every run writes one, so a caller's long argv
/// must not let one user fill the disk the log shares with all users.
pub const EXEC_ARGV_BYTES: usize = 64 << 10;

/// Most bytes of any other caller text a record keeps (the profile's name,
/// the cwd, a message), for the same reason.
pub const TEXT_BYTES: usize = 4 << 10;

/// Most bytes of a sandbox id a refusal's record keeps: ids are 12 hex
/// digits, and a kill or attach of any string is refused and recorded.
pub const REFUSED_ID_BYTES: usize = 64;

/// Bytes `c` takes in a JSON string.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The longest start of `text` that takes at most `room` bytes in a JSON string.
fn json_prefix(text: &str, room: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += json_len(c);
        if used > room {
            return &text[..i];
        }
    }
    text
}

/// `text` whole when it takes at most `max` bytes in a JSON string; else
/// its start, followed by how long the whole was.
pub fn bounded_text(text: &str, max: usize) -> String {
    let cut = json_prefix(text, max);
    match cut.len() == text.len() {
        true => text.to_string(),
        false => marked_cut(cut, text),
    }
}

/// `cut`, the start of `whole`, marked as cut.
fn marked_cut(cut: &str, whole: &str) -> String {
    format!("{cut}... ({} bytes in all)", whole.len())
}

/// The start of `words` that takes at most `max` bytes as written in a
/// record (the word that passes `max` shortened, later ones left out), or
/// `None` when they all fit whole.
fn cut_words(words: &[String], max: usize) -> Option<Vec<&str>> {
    let mut kept = Vec::new();
    // Each word takes its quotes and a comma besides its text.
    let mut room = max;
    for word in words {
        let cut = json_prefix(word, room.saturating_sub(3));
        if cut.len() < word.len() || room < 3 {
            if room >= 3 {
                kept.push(cut);
            }
            return Some(kept);
        }
        kept.push(cut);
        room -= 3 + word.chars().map(json_len).sum::<usize>();
    }
    None
}

/// `words` (argv, or parts of it) for a record, under `key`: whole when
/// they take at most `max` bytes as written in the record; else cut to fit
/// (see [`cut_words`]), with `{key}_cut` giving the whole list's words, its
/// length in bytes and its SHA-256 (of the words, each followed by a NUL),
/// so the cut is seen and can be matched.
pub fn words_fields(key: &str, words: &[String], max: usize) -> Map<String, Value> {
    let mut fields = Map::new();
    let Some(kept) = cut_words(words, max) else {
        fields.insert(key.into(), words.into());
        return fields;
    };
    let mut whole = Sha256::new();
    for word in words {
        whole.update(word.as_bytes());
        whole.update([0]);
    }
    let bytes: usize = words.iter().map(String::len).sum();
    fields.insert(key.into(), kept.into());
    fields.insert(
        format!("{key}_cut"),
        serde_json::json!({
            "words": words.len(),
            "bytes": bytes,
            "sha256": hex::encode(whole.finalize()),
        }),
    );
    fields
}

/// `words` (argv) to show: whole when they take at most `max` bytes as
/// written in a record; else cut as [`words_fields`] cuts them, the word
/// shortened marked as [`bounded_text`] marks it, and one more word saying
/// how many words and bytes the whole had. The marks take room besides `max`.
pub fn bounded_words(words: &[String], max: usize) -> Vec<String> {
    let Some(kept) = cut_words(words, max) else {
        return words.to_vec();
    };
    let mut shown: Vec<String> = kept
        .iter()
        .zip(words)
        .map(|(k, w)| match k.len() == w.len() {
            true => w.clone(),
            false => marked_cut(k, w),
        })
        .collect();
    let bytes: usize = words.iter().map(String::len).sum();
    shown.push(format!("... ({} words, {bytes} bytes in all)", words.len()));
    shown
}

/// `value` for a record under `key`: whole when its JSON takes at most
/// `max` bytes; else left out, with `{key}_cut` giving that JSON's length
/// in bytes and its SHA-256, so it can still be matched.
pub fn bounded_value(key: &str, value: Value, max: usize) -> Map<String, Value> {
    let text = value.to_string();
    let mut fields = Map::new();
    match text.len() <= max {
        true => fields.insert(key.into(), value),
        false => fields.insert(
            format!("{key}_cut"),
            serde_json::json!({ "bytes": text.len(), "sha256": sha256_hex(text.as_bytes()) }),
        ),
    };
    fields
}

/// Hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The record's own hash: of its serialization without the `hash` field.
fn record_hash(record: &Map<String, Value>) -> String {
    let mut body = record.clone();
    body.remove("hash");
    sha256_hex(Value::Object(body).to_string().as_bytes())
}

/// The numbers N of the rotated `audit.jsonl.N` in `dir`, ascending.
pub(crate) fn rotated(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FILE_NAME))
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The log's files, oldest first: the rotated `audit.jsonl.N` by N, then
/// `audit.jsonl` (listed even when missing, as the file to write next).
pub(crate) fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = rotated(dir)?
        .into_iter()
        .map(|n| dir.join(format!("{FILE_NAME}.{n}")))
        .collect();
    out.push(dir.join(FILE_NAME));
    Ok(out)
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-02T00:22:01.123Z`.
fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of the `days`-th day after 1970-01-01 (proleptic
/// Gregorian), counted in 400-year eras that start on March 1st so that the
/// leap day falls at the end of each year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719_468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // last second of 2026
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn a_long_argv_is_cut_to_fit_and_says_so() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let short = words(&["ls", "-l"]);
        let f = words_fields("argv", &short, 10);
        assert_eq!(f["argv"], serde_json::json!(["ls", "-l"]));
        assert!(!f.contains_key("argv_cut"));
        // Measured as written: the word passing the bound is shortened on a
        // character boundary, escapes counted.
        let long = words(&["echo", "a\"é€b", "more"]);
        let f = words_fields("argv", &long, 7 + 3 + 5);
        assert_eq!(f["argv"], serde_json::json!(["echo", "a\"é"]));
        assert_eq!(f["argv_cut"]["bytes"], 16);
        assert_eq!(f["argv_cut"]["words"], 3);
        assert_eq!(
            f["argv_cut"]["sha256"],
            sha256_hex("echo\0a\"é€b\0more\0".as_bytes())
        );
        // Empty words take room too.
        let empty = vec![String::new(); 10_000];
        let f = words_fields("argv", &empty, 300);
        assert_eq!(f["argv"].as_array().map(Vec::len), Some(100));
        // Its brackets besides.
        assert!(serde_json::to_string(&f["argv"]).unwrap().len() <= 302);
        assert_eq!(bounded_text("abc", 3), "abc");
        assert_eq!(bounded_text("abcdef", 3), "abc... (6 bytes in all)");
    }

    #[test]
    fn words_shown_are_cut_as_recorded_and_marked() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let short = words(&["ls", "-l"]);
        assert_eq!(bounded_words(&short, 10), short);
        let long = words(&["echo", "abcdef", "more"]);
        assert_eq!(
            bounded_words(&long, 7 + 3 + 3),
            words(&[
                "echo",
                "abc... (6 bytes in all)",
                "... (3 words, 14 bytes in all)"
            ])
        );
        // A cut between words leaves the later ones out, and says so.
        assert_eq!(
            bounded_words(&long, 7 + 9),
            words(&["echo", "abcdef", "... (3 words, 14 bytes in all)"])
        );
        // However many and long the words, what is shown stays bounded.
        let huge = vec!["x".repeat(100_000); 1000];
        let shown = bounded_words(&huge, 2048);
        assert!(shown.iter().map(String::len).sum::<usize>() < 2048 + 100);
        assert!(shown.last().unwrap().contains("1000 words"));
    }
}
