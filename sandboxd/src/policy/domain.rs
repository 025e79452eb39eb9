//! Host patterns: `a.com` exact, `*.a.com` subdomains only, `**.a.com` apex and
//! subdomains. Case and a trailing dot are ignored. A pattern whose wildcard
//! would cover a whole public suffix (`*.com`, `**.co.uk`) or everything (`*`) is refused.

/// A validated, normalised host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern {
    kind: Kind,
    /// Lower case, no trailing dot, no wildcard prefix.
    base: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Subdomains,
    ApexAndSubdomains,
}

/// Lower case without a trailing dot.
fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl DomainPattern {
    /// Parses and validates a pattern; the error says why it is refused.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let p = normalize_host(pattern.trim());
        let (kind, base) = if let Some(rest) = p.strip_prefix("**.") {
            (Kind::ApexAndSubdomains, rest)
        } else if let Some(rest) = p.strip_prefix("*.") {
            (Kind::Subdomains, rest)
        } else if p == "*" || p == "**" {
            return Err(format!("{pattern:?} would allow every host"));
        } else {
            (Kind::Exact, p.as_str())
        };
        if base.is_empty() {
            return Err(format!("{pattern:?} has no domain after the wildcard"));
        }
        // Unicode names match in their punycode form, as hosts are normalised.
        let ascii = idna::domain_to_ascii_cow(base.as_bytes(), idna::AsciiDenyList::URL)
            .map_err(|_| format!("{pattern:?} is not a valid host name (IDNA)"))?;
        let base = ascii.as_ref();
        for label in base.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "{pattern:?} is not a host name or a pattern `*.DOMAIN`/`**.DOMAIN`"
                ));
            }
        }
        if kind != Kind::Exact && is_public_suffix(base) {
            return Err(format!(
                "{pattern:?} is a wildcard over the public suffix {base:?}"
            ));
        }
        Ok(DomainPattern {
            kind,
            base: base.to_string(),
        })
    }

    /// Does `host` match? Case and a trailing dot are ignored.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        let sub = host.len() > self.base.len()
            && host.ends_with(&self.base)
            && host.as_bytes()[host.len() - self.base.len() - 1] == b'.';
        match self.kind {
            Kind::Exact => host == self.base,
            Kind::Subdomains => sub,
            Kind::ApexAndSubdomains => sub || host == self.base,
        }
    }

    /// Is every host this pattern matches also matched by `other`?
    pub fn within(&self, other: &DomainPattern) -> bool {
        match self.kind {
            Kind::Exact => other.matches(&self.base),
            // `*.x` within `*.y`/`**.y` when x is y or under y; within an exact never.
            Kind::Subdomains | Kind::ApexAndSubdomains => {
                let probe = format!("sub.{}", self.base);
                other.kind != Kind::Exact
                    && other.matches(&probe)
                    && (self.kind == Kind::Subdomains || other.matches(&self.base))
            }
        }
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Kind::Exact => write!(f, "{}", self.base),
            Kind::Subdomains => write!(f, "*.{}", self.base),
            Kind::ApexAndSubdomains => write!(f, "**.{}", self.base),
        }
    }
}

/// An address written as one: dotted IPv4, or IPv6 bare or in brackets
/// (no zone id). Allow and deny lists match such entries only literally.
pub fn ip_literal(s: &str) -> Option<std::net::IpAddr> {
    match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6),
        None => s.parse().ok(),
    }
}

/// `ADDRESS/PREFIX` or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
        None => max,
    };
    Some((addr, prefix))
}

/// Is `ip` inside `net/prefix`?
pub fn cidr_contains(net: std::net::IpAddr, prefix: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (net, ip, bits) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (net >> shift) == (ip >> shift)
}

/// A single label (a TLD, known or not) or a listed public suffix.
fn is_public_suffix(domain: &str) -> bool {
    if !domain.contains('.') {
        return true;
    }
    match psl::suffix(domain.as_bytes()) {
        Some(s) => s.is_known() && s.as_bytes() == domain.as_bytes(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let cases: &[(&str, &str, bool)] = &[
            ("a.com", "a.com", true),
            ("a.com", "A.COM.", true),
            ("a.com", "x.a.com", false),
            ("*.a.com", "a.com", false),
            ("*.a.com", "x.a.com", true),
            ("*.a.com", "y.x.a.com", true),
            ("*.a.com", "xa.com", false),
            ("**.a.com", "a.com", true),
            ("**.a.com", "x.A.com", true),
            ("**.a.com", "evil-a.com", false),
            ("A.Com.", "a.com", true),
            ("*.Bücher.test", "www.xn--bcher-kva.test", true),
            ("bücher.test", "xn--bcher-kva.test", true),
            ("xn--bcher-kva.test", "xn--bcher-kva.test", true),
        ];
        for (pat, host, want) in cases {
            assert_eq!(
                DomainPattern::parse(pat).unwrap().matches(host),
                *want,
                "{pat} vs {host}"
            );
        }
    }

    #[test]
    fn broad_patterns_are_refused() {
        for bad in [
            "*",
            "**",
            "*.com",
            "**.co.uk",
            "*.co.uk",
            "*.test",
            "a..b",
            "*.",
            "exa mple.com",
            "http://a.com",
            "*.ｃｏｍ",
            "*.рф",
            "**.xn--p1ai",
            "*.公司.cn",
        ] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "*.github.io.example",
            "**.crates.io",
            "*.pythonhosted.org",
            "localhost",
            "mirror.corp.test",
        ] {
            assert!(DomainPattern::parse(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn within() {
        let p = |s| DomainPattern::parse(s).unwrap();
        assert!(p("a.b.com").within(&p("*.b.com")));
        assert!(p("*.a.b.com").within(&p("*.b.com")));
        assert!(p("**.a.b.com").within(&p("*.b.com")));
        assert!(p("**.b.com").within(&p("**.b.com")));
        assert!(!p("**.b.com").within(&p("*.b.com")));
        assert!(!p("*.b.com").within(&p("b.com")));
        assert!(!p("c.com").within(&p("**.b.com")));
    }
}
