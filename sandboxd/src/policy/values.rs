//! Human-written durations ("10m", "1h30m", "90s", "500ms") and sizes
//! ("4GiB", "64MiB", "512k", "1000000"), both ways.

use std::time::Duration;

/// Parses a duration: one or more NUMBER UNIT pairs, units ms s m h d.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    Some(total)
}

/// Renders a duration in the largest exact units, e.g. "1h30m", "90s" as "1m30s".
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) || (d.subsec_millis() != 0 && d.as_secs() > 0) {
        return format!("{}ms", d.as_millis());
    }
    if d.as_secs() == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

/// Parses a size in bytes: NUMBER with an optional unit (k/KiB = 1024, KB = 1000, ...).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let mult = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    n.checked_mul(mult)
}

/// Renders a size in the largest exact binary unit, e.g. "4GiB", "512KiB", "1000".
pub fn format_size(n: u64) -> String {
    for (unit, len) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= len && n.is_multiple_of(len) {
            return format!("{}{unit}", n / len);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, secs) in [
            ("10m", 600),
            ("90s", 90),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172800),
        ] {
            assert_eq!(parse_duration(s), Some(Duration::from_secs(secs)), "{s}");
        }
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "10", "m", "10 fortnights", "1.5h", "-1s", "10x"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for d in [600, 90, 5400, 1, 86400 + 5] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("4GiB", 4u64 << 30),
            ("64MiB", 64 << 20),
            ("512k", 512 << 10),
            ("1000", 1000),
            ("2MB", 2_000_000),
        ] {
            assert_eq!(parse_size(s), Some(n), "{s}");
        }
        for bad in ["", "lots", "GiB", "1.5GiB", "-1", "4 XiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(4 << 30), "4GiB");
        assert_eq!(format_size(1000), "1000");
    }
}
