//! Network decisions as pure functions: a normalised host, a port, a method
//! and a path in; the verdict and the rule that made it out.

use crate::policy::{ApprovalMode, Profile, Verdict};
use std::net::IpAddr;

/// Why the proxy refused; sent as `X-Proxy-Error: blocked-by-<as_str>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Allowlist,
    Denylist,
    Method,
    Port,
    PrivateAddress,
    SniMismatch,
    Approval,
    /// Not TLS on port 443 where the profile wants TLS there.
    NotTls,
    /// A request that contradicts itself (Host header vs URI, userinfo).
    BadRequest,
}

impl Block {
    pub fn as_str(self) -> &'static str {
        todo!()
    }
}

/// A normalised destination host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Lower-case ASCII (punycode), no trailing dot.
    Name(String),
    Ip(IpAddr),
}

/// Lower case, one trailing dot dropped, IDNA to punycode, numeric IPv4 forms
/// (127.1, 2130706433, 0x7f.1, octal) and bracketed IPv6 (zone id refused) as
/// addresses. The error says what is wrong with `raw`.
pub fn normalize_host(raw: &str) -> Result<Host, String> {
    let _ = raw;
    todo!()
}

/// One decision: the verdict (Allow, Prompt = ask the person, Deny), why
/// (`block` when not Allow: on Prompt, the block used if the answer is no),
/// the rule, e.g. `workspace.toml:12 network.allow "crates.io"`, and a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDecision {
    pub verdict: Verdict,
    pub block: Option<Block>,
    pub rule: String,
    pub reason: String,
}

/// A header the proxy adds to requests matching a `[[network.rule]]`; `value`
/// still holds its `{secret:NAME}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub header: String,
    pub value: String,
    pub rule: String,
}

/// A profile's `[network]` rules for one exec, validated and compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPolicy {}

impl NetPolicy {
    /// From the profile's `[network]`; `narrowed_allow` replaces the allow list
    /// when a request narrowed it. With `approval` untrusted or on-request an
    /// unlisted name is `Prompt`, with never `Deny`.
    pub fn from_profile(
        profile: &Profile,
        narrowed_allow: Option<&[String]>,
        approval: ApprovalMode,
    ) -> Result<NetPolicy, String> {
        let _ = (profile, narrowed_allow, approval);
        todo!()
    }

    /// Whether HTTPS is decrypted (`inspect = true`).
    pub fn inspect(&self) -> bool {
        todo!()
    }

    /// Whether non-TLS traffic may go through a CONNECT to port 443.
    pub fn allow_non_tls_443(&self) -> bool {
        todo!()
    }

    /// Name (or literal) and port: CONNECT, SOCKS, and the first step of plain HTTP.
    pub fn decide_host(&self, host: &Host, port: u16) -> NetDecision {
        let _ = (host, port);
        todo!()
    }

    /// A whole HTTP request (plain, or inspected HTTPS): host and port as in
    /// [`decide_host`](Self::decide_host), then `methods` and the
    /// `[[network.rule]]` methods and paths. With Allow, the injections of
    /// the matching rules.
    pub fn decide_request(
        &self,
        host: &Host,
        port: u16,
        method: &str,
        path: &str,
    ) -> (NetDecision, Vec<Injection>) {
        let _ = (host, port, method, path);
        todo!()
    }

    /// A DNS name, ports aside: may the resolver answer it?
    pub fn decide_name(&self, name: &str) -> NetDecision {
        let _ = name;
        todo!()
    }

    /// The SSRF guard for one resolved (or literal) address: special-purpose
    /// ranges ([`super::addr::special`]) and `host_addrs` (the host's own) are
    /// refused with [`Block::PrivateAddress`] unless an `allow_cidrs` entry covers them.
    pub fn vet_addr(&self, ip: IpAddr, host_addrs: &[IpAddr]) -> NetDecision {
        let _ = (ip, host_addrs);
        todo!()
    }
}
