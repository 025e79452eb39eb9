//! Durations as written on the command line: `500ms`, `10s`, `2m`, `1h`, `1d`.

use std::time::Duration;

/// A duration the parser did not understand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {0:?}: expected a number with a unit ms, s, m, h or d, e.g. 500ms, 10s, 2m"
)]
pub struct DurationError(pub String);

/// Parses `N` followed by `ms`, `s`, `m`, `h` or `d` (a bare `N` means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let ms_per = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
