//! Address classes the SSRF guard refuses by default.

use std::net::IpAddr;

/// The special-purpose range `ip` falls in (e.g. "loopback", "private",
/// "link-local", "cgnat", "ula", "multicast", "unspecified", "v4-mapped",
/// "nat64", "6to4", "teredo", "broadcast", "documentation", "reserved"), or `None` for a
/// public address. v4-mapped, NAT64 and 6to4 also report the class of the
/// embedded IPv4 address when it is special.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    let _ = ip;
    todo!()
}

/// The addresses of this host's interfaces (the SSRF guard refuses them too).
pub fn host_addresses() -> Vec<IpAddr> {
    todo!()
}
