//! Address classes the SSRF guard refuses by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 special-purpose ranges, most specific first: (network, prefix, class).
const V4: &[([u8; 4], u32, &str)] = &[
    ([255, 255, 255, 255], 32, "broadcast"),
    ([0, 0, 0, 0], 32, "unspecified"),
    ([0, 0, 0, 0], 8, "this-network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "cgnat"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "reserved"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "reserved"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

/// How an IPv6 range relates to IPv4: where the embedded address sits, if any.
#[derive(Clone, Copy)]
enum Embeds {
    Nothing,
    /// The low 32 bits (v4-mapped, NAT64 /96).
    Low32,
    /// Bits 16..48 (6to4).
    SixToFour,
}

/// IPv6 special-purpose ranges, most specific first: (network, prefix, class, embedding).
const V6: &[(u128, u32, &str, Embeds)] = &[
    (0, 128, "unspecified", Embeds::Nothing),
    (1, 128, "loopback", Embeds::Nothing),
    (0xffff_0000_0000, 96, "v4-mapped", Embeds::Low32),
    (0x0064_ff9b << 96, 96, "nat64", Embeds::Low32),
    (0x0064_ff9b_0001 << 80, 48, "nat64", Embeds::Nothing),
    (0x0100 << 112, 64, "reserved", Embeds::Nothing),
    (0x2001 << 112, 32, "teredo", Embeds::Nothing),
    (0x2001_0db8 << 96, 32, "documentation", Embeds::Nothing),
    (0x2001 << 112, 23, "reserved", Embeds::Nothing),
    (0x2002 << 112, 16, "6to4", Embeds::SixToFour),
    (0x3fff << 112, 20, "documentation", Embeds::Nothing),
    (0xfc00 << 112, 7, "ula", Embeds::Nothing),
    (0xfe80 << 112, 10, "link-local", Embeds::Nothing),
    (0xfec0 << 112, 10, "site-local", Embeds::Nothing),
    (0xff00 << 112, 8, "multicast", Embeds::Nothing),
];

/// `outer` with the class of the embedded IPv4 address, when it has one.
macro_rules! embedding {
    ($outer:literal, $inner:expr) => {
        match $inner {
            Some("broadcast") => concat!($outer, " (broadcast)"),
            Some("unspecified") => concat!($outer, " (unspecified)"),
            Some("this-network") => concat!($outer, " (this-network)"),
            Some("private") => concat!($outer, " (private)"),
            Some("cgnat") => concat!($outer, " (cgnat)"),
            Some("loopback") => concat!($outer, " (loopback)"),
            Some("link-local") => concat!($outer, " (link-local)"),
            Some("reserved") => concat!($outer, " (reserved)"),
            Some("documentation") => concat!($outer, " (documentation)"),
            Some("benchmarking") => concat!($outer, " (benchmarking)"),
            Some("multicast") => concat!($outer, " (multicast)"),
            _ => $outer,
        }
    };
}

/// The special-purpose range `ip` falls in (e.g. "loopback", "private",
/// "link-local", "cgnat", "ula", "site-local", "multicast", "unspecified",
/// "this-network", "v4-mapped", "nat64", "6to4", "teredo", "broadcast",
/// "documentation", "benchmarking", "reserved"), or `None` for a public address. v4-mapped, NAT64 and 6to4 also report the class of the
/// embedded IPv4 address when it is special, e.g. "v4-mapped (loopback)".
/// IPv6 outside 2000::/3 (global unicast) is "reserved".
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => special_v4(a),
        IpAddr::V6(a) => Some(special_v6(a)).filter(|c| !c.is_empty()),
    }
}

fn special_v4(a: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(a);
    V4.iter()
        .find(|(net, prefix, _)| {
            let shift = 32 - prefix;
            shift == 32 || (a >> shift) == (u32::from_be_bytes(*net) >> shift)
        })
        .map(|(_, _, class)| *class)
}

/// The class of `a`, or "" when it is global unicast.
fn special_v6(a: Ipv6Addr) -> &'static str {
    let bits = u128::from(a);
    let hit = V6.iter().find(|(net, prefix, _, _)| {
        let shift = 128 - prefix;
        shift == 128 || (bits >> shift) == (net >> shift)
    });
    let Some((_, _, class, embeds)) = hit else {
        // Not in 2000::/3: unallocated or reserved.
        return if bits >> 125 == 1 { "" } else { "reserved" };
    };
    let inner = match embeds {
        Embeds::Nothing => return class,
        Embeds::Low32 => Ipv4Addr::from(bits as u32),
        Embeds::SixToFour => Ipv4Addr::from((bits >> 80) as u32),
    };
    let inner = special_v4(inner);
    match *class {
        "v4-mapped" => embedding!("v4-mapped", inner),
        "nat64" => embedding!("nat64", inner),
        _ => embedding!("6to4", inner),
    }
}

/// The addresses of this host's interfaces (the SSRF guard refuses them too).
/// When the kernel cannot list them the list is empty and a warning is
/// logged; the special-purpose ranges are refused regardless.
pub fn host_addresses() -> Vec<IpAddr> {
    let ifs = match nix::ifaddrs::getifaddrs() {
        Ok(ifs) => ifs,
        Err(e) => {
            tracing::warn!(
                "cannot list this host's addresses (getifaddrs: {e}); the SSRF guard refuses only special ranges"
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for ifa in ifs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("cgnat")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("this-network")),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.251", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("192.0.2.7", Some("documentation")),
            ("198.51.100.1", Some("documentation")),
            ("203.0.113.1", Some("documentation")),
            ("198.18.0.1", Some("benchmarking")),
            ("2606:4700::1111", None),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("v4-mapped (loopback)")),
            ("::ffff:8.8.8.8", Some("v4-mapped")),
            ("64:ff9b::a9fe:a9fe", Some("nat64 (link-local)")),
            ("64:ff9b::808:808", Some("nat64")),
            ("64:ff9b:1::1", Some("nat64")),
            ("2002:7f00:1::", Some("6to4 (loopback)")),
            ("2002:808:808::", Some("6to4")),
            ("2001:0:4136:e378::1", Some("teredo")),
            ("2001:db8::1", Some("documentation")),
            ("fc00::1", Some("ula")),
            ("fd12:3456::1", Some("ula")),
            ("fe80::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("::127.0.0.1", Some("reserved")),
            ("4000::1", Some("reserved")),
        ];
        for (ip, want) in cases {
            assert_eq!(special(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn host_addresses_include_loopback() {
        let addrs = host_addresses();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
