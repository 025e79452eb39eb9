//! How many records of one kind a sandbox may cause: a burst, then a rate.
//! Records cost the audit log's disk, and a sandbox can cause refusals and
//! made-up names as fast as it can send; past the rate, they are counted in
//! one record instead of one each. New names also cost upstream queries
//! and places in the daemon's cache: past the rate, they are not looked up.

use std::time::Instant;

/// Records a sandbox may cause at once before the rate applies.
pub const BURST: f64 = 512.0;
/// Records a second a sandbox may cause after its burst.
pub const PER_SECOND: f64 = 64.0;

/// Queries a sandbox may have sent upstream at once (the cache misses of
/// its DNS server and its proxies' lookups: a new name's A, AAAA and HTTPS
/// questions, and answers never cached, such as SERVFAIL or a TTL of 0)
/// before its rate applies.
pub const FORWARD_BURST: f64 = 1024.0;
/// Queries a second a sandbox may have sent upstream after its burst.
pub const FORWARDS_PER_SECOND: f64 = 128.0;

/// A token bucket of `burst` filled at `per_second`: by default, records
/// ([`BURST`], [`PER_SECOND`]).
#[derive(Debug)]
pub struct Allowance {
    left: f64,
    counted: Instant,
    burst: f64,
    per_second: f64,
}

impl Default for Allowance {
    fn default() -> Self {
        Allowance::new(BURST, PER_SECOND)
    }
}

impl Allowance {
    pub fn new(burst: f64, per_second: f64) -> Allowance {
        Allowance {
            left: burst,
            counted: Instant::now(),
            burst,
            per_second,
        }
    }

    /// Takes one from the allowance at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.counted).as_secs_f64() * self.per_second;
        self.left = (self.left + earned).min(self.burst);
        self.counted = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

/// The rule named in the records that count what was over the rate.
fn rule(what: &str) -> String {
    rule_at(what, PER_SECOND, BURST)
}

/// The rule of `what`, at `per_second` after `burst`.
fn rule_at(
    what: &str,
    per_second: impl std::fmt::Display,
    burst: impl std::fmt::Display,
) -> String {
    format!("{what}: at most {per_second} a second, after {burst}, per sandbox")
}

/// The rule of DNS queries over the rate of upstream queries.
pub fn forwards_rule() -> String {
    rule_at(
        "DNS queries sent upstream (DNS server and proxy lookups together)",
        FORWARDS_PER_SECOND,
        FORWARD_BURST,
    )
}

/// The rule of new names over the rate: a sandbox's DNS server and its
/// proxies take them from one allowance, as each goes upstream alike.
pub fn new_names_rule() -> String {
    rule("new names (DNS questions and proxy lookups together)")
}

/// The rule of attempts over the rate that reached nothing: refusals, and
/// allowed attempts whose lookup or dial failed.
pub fn unreached_rule() -> String {
    rule("network attempts that reach nothing, recorded one by one")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut a = Allowance::default();
        assert!((0..BURST as usize).all(|_| a.take(t0)));
        assert!(!a.take(t0));
        // A second later, PER_SECOND more, and no more than that.
        let t1 = t0 + Duration::from_secs(1);
        assert!((0..PER_SECOND as usize).all(|_| a.take(t1)));
        assert!(!a.take(t1));
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!(
            (0..2 * BURST as usize).filter(|_| a.take(t2)).count(),
            BURST as usize
        );
        // Another burst and rate.
        let mut f = Allowance::new(FORWARD_BURST, FORWARDS_PER_SECOND);
        let t0 = Instant::now();
        assert_eq!(
            (0..2 * FORWARD_BURST as usize)
                .filter(|_| f.take(t0))
                .count(),
            FORWARD_BURST as usize
        );
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            (0..FORWARD_BURST as usize).filter(|_| f.take(t1)).count(),
            FORWARDS_PER_SECOND as usize / 2
        );
    }
}
