//! Host names as URL parsers read them: what a request, a CONNECT, a SOCKS
//! greeting or a DNS question names, made into one lower-case ASCII name or
//! an address before any rule is matched against it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A normalised destination host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Lower-case ASCII (punycode), no trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Lower case, one trailing dot dropped, IDNA to punycode, numeric IPv4 forms
/// (127.1, 2130706433, 0x7f.1, octal) and bracketed IPv6 (zone id refused) as
/// addresses. The error says what is wrong with `raw`.
///
/// IPv4 forms follow the WHATWG URL host parser (what browsers, curl and
/// Python's urllib end up dialling): a name whose last label is a number is an
/// address, or invalid. A name must be LDH labels (underscore allowed) of 1 to
/// 63 characters, at most 253 in all.
pub fn normalize_host(raw: &str) -> Result<Host, String> {
    if raw.is_empty() {
        return Err("empty host".to_string());
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let v6 = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("{raw:?}: unclosed `[`"))?;
        return ipv6(raw, v6);
    }
    if raw.contains(':') {
        return ipv6(raw, raw);
    }
    let one = raw.strip_suffix('.').unwrap_or(raw);
    if one.is_empty() || one.ends_with('.') {
        return Err(format!(
            "{raw:?}: empty label (more than one trailing dot?)"
        ));
    }
    let ascii = idna::domain_to_ascii_cow(one.as_bytes(), idna::AsciiDenyList::URL)
        .map_err(|e| format!("{raw:?} is not a valid host name ({e})"))?;
    if ends_in_number(&ascii) {
        return parse_ipv4(&ascii)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or_else(|| format!("{raw:?} ends in a number but is not an IPv4 address"));
    }
    if ascii.len() > 253 {
        return Err(format!("{raw:?} is longer than 253 characters"));
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{raw:?} is not a valid host name (label {label:?})"
            ));
        }
    }
    Ok(Host::Name(ascii.into_owned()))
}

fn ipv6(raw: &str, v6: &str) -> Result<Host, String> {
    if v6.contains('%') {
        return Err(format!("{raw:?}: IPv6 zone ids are not accepted"));
    }
    v6.parse::<Ipv6Addr>()
        .map(|a| Host::Ip(IpAddr::V6(a)))
        .map_err(|_| format!("{raw:?} is not an IPv6 address"))
}

/// WHATWG "ends in a number": the last label is decimal digits or `0x` hex.
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|c| c.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// The WHATWG IPv4 parser: 1 to 4 parts, each decimal, `0x` hex or `0` octal;
/// the last part fills the remaining bytes.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| {
            if let Some(hex) = p.strip_prefix("0x") {
                if hex.is_empty() {
                    Some(0)
                } else {
                    u64::from_str_radix(hex, 16).ok()
                }
            } else if p.len() > 1 && p.starts_with('0') {
                u64::from_str_radix(&p[1..], 8).ok()
            } else if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) {
                p.parse::<u64>().ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<u64>>>()?;
    let (last, head) = numbers.split_last()?;
    if head.iter().any(|n| *n > 255) || *last >= 1u64 << (8 * (5 - numbers.len())) {
        return None;
    }
    let mut v = *last;
    for (i, n) in head.iter().enumerate() {
        v += n << (8 * (3 - i));
    }
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn name(s: &str) -> Host {
        Host::Name(s.to_string())
    }

    pub(crate) fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn hosts_normalise_as_url_parsers_do() {
        let cases: &[(&str, Host)] = &[
            ("Example.COM", name("example.com")),
            ("example.com.", name("example.com")),
            ("ALLOWED.TEST.", name("allowed.test")),
            ("bücher.example", name("xn--bcher-kva.example")),
            ("BÜCHER.example", name("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", name("xn--bcher-kva.example")),
            ("a\u{3002}b.test", name("a.b.test")),
            ("_dmarc.a.test", name("_dmarc.a.test")),
            ("localhost", name("localhost")),
            ("127.0.0.1", ip("127.0.0.1")),
            ("127.1", ip("127.0.0.1")),
            ("127.0.1", ip("127.0.0.1")),
            ("2130706433", ip("127.0.0.1")),
            ("0x7f.1", ip("127.0.0.1")),
            ("0X7F.1", ip("127.0.0.1")),
            ("0177.0.0.1", ip("127.0.0.1")),
            ("0x7f000001", ip("127.0.0.1")),
            ("127.0.0.1.", ip("127.0.0.1")),
            ("0x", ip("0.0.0.0")),
            ("1.2.3.04", ip("1.2.3.4")),
            ("\u{ff11}\u{ff12}\u{ff17}.0.0.1", ip("127.0.0.1")),
            ("169.254.43518", ip("169.254.169.254")),
            ("[::1]", ip("::1")),
            ("[::FFFF:127.0.0.1]", ip("::ffff:127.0.0.1")),
            ("::1", ip("::1")),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_ref(), Ok(want), "{raw}");
        }
        for bad in [
            "",
            ".",
            "a.com..",
            "a..com",
            "[fe80::1%eth0]",
            "fe80::1%25eth0",
            "[::1",
            "[127.0.0.1]",
            "256.0.0.1",
            "1.2.3.4.5",
            "4294967296",
            "0x100000000",
            "1.2.3.256",
            "1.2.65536",
            "09.1.1.1",
            "foo.123",
            "a b.com",
            "a/b.com",
            "a@b.com",
            "a%2eb.com",
            "-a.com",
            "a-.com",
            "xn--a.com",
            &"a".repeat(64),
            &format!("{}.com", ["abcdefghij"; 25].join(".")),
        ] {
            assert!(
                normalize_host(bad).is_err(),
                "{bad:?} accepted: {:?}",
                normalize_host(bad)
            );
        }
    }
}
