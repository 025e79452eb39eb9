//! Network decisions as pure functions: a normalised host, a port, a method
//! and a path in; the verdict and the rule that made it out.

use super::addr;
use super::host::{normalize_host, Host};
use super::path::unmatchable;
use crate::policy::domain::{cidr_contains, ip_literal, parse_cidr, DomainPattern};
use crate::policy::model::{Inject, Origin, DEFAULT_PORTS};
use crate::policy::narrow::rule;
use crate::policy::{ApprovalMode, Profile, Verdict};
use globset::{Glob, GlobBuilder, GlobMatcher};
use std::net::IpAddr;

pub use super::path::has_dot_segment;

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
    /// More new names than the resolver records for one sandbox in a while.
    RateLimit,
}

impl Block {
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Allowlist => "allowlist",
            Block::Denylist => "denylist",
            Block::Method => "method",
            Block::Port => "port",
            Block::PrivateAddress => "private-address",
            Block::SniMismatch => "sni-mismatch",
            Block::Approval => "approval",
            Block::NotTls => "not-tls",
            Block::BadRequest => "bad-request",
            Block::RateLimit => "rate-limit",
        }
    }
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

impl NetDecision {
    fn allow(rule: String, reason: String) -> NetDecision {
        NetDecision {
            verdict: Verdict::Allow,
            block: None,
            rule,
            reason,
        }
    }

    fn deny(block: Block, rule: String, reason: String) -> NetDecision {
        NetDecision {
            verdict: Verdict::Deny,
            block: Some(block),
            rule,
            reason,
        }
    }
}

/// A header the proxy adds to requests matching a `[[network.rule]]`; `value`
/// still holds its `{secret:NAME}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub header: String,
    pub value: String,
    pub rule: String,
}

/// What an allow or deny entry (or a rule's host) matches: names by pattern,
/// addresses only literally.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Pattern(DomainPattern),
    Ip(IpAddr),
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        match ip_literal(s) {
            Some(ip) => Ok(Target::Ip(ip)),
            None => DomainPattern::parse(s).map(Target::Pattern),
        }
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Target::Pattern(p), Host::Name(n)) => p.matches(n),
            (Target::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }

    /// Canonical text, for the policy hash.
    fn canonical(&self) -> String {
        match self {
            Target::Pattern(p) => p.to_string(),
            Target::Ip(ip) => ip.to_string(),
        }
    }
}

/// An allow or deny entry and the rule that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: Target,
    /// As written.
    shown: String,
    rule: String,
}

/// An `allow_cidrs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
    rule: String,
}

/// A path glob of a `[[network.rule]]`: `*` within a segment, `**` across.
#[derive(Debug, Clone)]
struct PathGlob {
    glob: Glob,
    matcher: GlobMatcher,
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.glob == other.glob
    }
}

impl Eq for PathGlob {}

/// A compiled `[[network.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    host: Target,
    /// Upper case; empty = all.
    methods: Vec<String>,
    /// Empty = all.
    paths: Vec<PathGlob>,
    inject: Option<Inject>,
    rule: String,
}

/// A profile's `[network]` rules for one exec, validated and compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPolicy {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
    ports: Vec<u16>,
    ports_rule: String,
    /// Upper case, and the rule; `None` = all methods.
    methods: Option<(Vec<String>, String)>,
    allow_cidrs: Vec<Cidr>,
    inspect: bool,
    allow_non_tls_443: bool,
    allow_ech: bool,
    rules: Vec<HostRule>,
    /// The approval rule under which an unlisted name is asked about; `None`
    /// (approval `never`) denies it.
    ask: Option<String>,
}

impl NetPolicy {
    /// From the profile's `[network]`; `narrowed_allow` replaces the allow list
    /// when a request narrowed it. With `approval` untrusted or on-request an
    /// unlisted name is `Prompt`, with never `Deny`. The mode is the caller's
    /// business: this is built only for `allowlist`. Ports default to
    /// [`DEFAULT_PORTS`] when the profile lists none.
    pub fn from_profile(
        profile: &Profile,
        narrowed_allow: Option<&[String]>,
        approval: ApprovalMode,
    ) -> Result<NetPolicy, String> {
        let net = &profile.network;
        let entry = |value: &str, origin: &Origin, key: &str| -> Result<Entry, String> {
            let target = Target::parse(value).map_err(|m| format!("{origin} {key}: {m}"))?;
            Ok(Entry {
                target,
                shown: value.to_string(),
                rule: rule(origin, key, value),
            })
        };
        let allow = match narrowed_allow {
            None => net
                .allow
                .iter()
                .map(|a| entry(&a.value, &a.origin, "network.allow"))
                .collect::<Result<Vec<_>, _>>()?,
            Some(asked) => {
                let request = Origin {
                    file: "request".to_string(),
                    line: 0,
                };
                asked
                    .iter()
                    .map(|a| {
                        // An entry the profile has too keeps the profile's origin.
                        let target = Target::parse(a).ok();
                        let own = net
                            .allow
                            .iter()
                            .find(|p| target.is_some() && Target::parse(&p.value).ok() == target);
                        entry(a, own.map_or(&request, |p| &p.origin), "network.allow")
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let deny = net
            .deny
            .iter()
            .map(|d| entry(&d.value, &d.origin, "network.deny"))
            .collect::<Result<Vec<_>, _>>()?;
        let (ports, ports_rule) = match net.ports.first() {
            Some(first) => {
                let ports: Vec<u16> = net.ports.iter().map(|p| p.value).collect();
                let r = format!("{} network.ports {ports:?}", first.origin);
                (ports, r)
            }
            None => (
                DEFAULT_PORTS.to_vec(),
                format!(
                    "{} network.ports (default {DEFAULT_PORTS:?})",
                    profile.source
                ),
            ),
        };
        let methods = net.methods.as_ref().map(|m| {
            let list: Vec<String> = m.iter().map(|l| l.value.to_ascii_uppercase()).collect();
            let origin = m
                .first()
                .map_or(profile.source.clone(), |l| l.origin.to_string());
            let r = format!("{origin} network.methods {list:?}");
            (list, r)
        });
        let allow_cidrs = net
            .allow_cidrs
            .iter()
            .map(|c| match parse_cidr(&c.value) {
                Some((net, prefix)) => Ok(Cidr {
                    net,
                    prefix,
                    rule: rule(&c.origin, "network.allow_cidrs", &c.value),
                }),
                None => Err(format!(
                    "{} network.allow_cidrs: {:?} is not an address or ADDRESS/PREFIX",
                    c.origin, c.value
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rules = net
            .rules
            .iter()
            .map(|r| {
                let (v, origin) = (&r.value, &r.origin);
                let at = |m: String| format!("{origin} network.rule: {m}");
                let paths = v
                    .paths
                    .iter()
                    .map(|p| {
                        let glob = GlobBuilder::new(p)
                            .literal_separator(true)
                            .build()
                            .map_err(|e| at(format!("{p:?}: {e}")))?;
                        Ok(PathGlob {
                            matcher: glob.compile_matcher(),
                            glob,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(HostRule {
                    host: Target::parse(&v.host).map_err(at)?,
                    methods: v.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    paths,
                    inject: v.inject.clone(),
                    rule: rule(origin, "network.rule", &v.host),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ask = match approval {
            ApprovalMode::Never => None,
            mode => {
                let origin = if mode == profile.approval.value {
                    profile.approval.origin.clone()
                } else {
                    Origin {
                        file: "request".to_string(),
                        line: 0,
                    }
                };
                Some(rule(&origin, "approval", mode.as_str()))
            }
        };
        Ok(NetPolicy {
            allow,
            deny,
            ports,
            ports_rule,
            methods,
            allow_cidrs,
            inspect: net.inspect.value,
            allow_non_tls_443: net.allow_non_tls_443.value,
            allow_ech: net.allow_ech.value,
            rules,
            ask,
        })
    }

    /// Whether HTTPS is decrypted (`inspect = true`).
    pub fn inspect(&self) -> bool {
        self.inspect
    }

    /// Whether non-TLS traffic may go through a CONNECT to port 443.
    pub fn allow_non_tls_443(&self) -> bool {
        self.allow_non_tls_443
    }

    /// Whether a tunnel's ClientHello may hide its server name (ECH).
    pub fn allow_ech(&self) -> bool {
        self.allow_ech
    }

    /// Name (or literal) and port: CONNECT, SOCKS, and the first step of plain HTTP.
    /// Deny entries win, then the port, then the allow list. An address is
    /// allowed only when listed literally (and the caller still vets it with
    /// [`vet_addr`](Self::vet_addr), as every address it dials); an unlisted
    /// address is denied without asking.
    pub fn decide_host(&self, host: &Host, port: u16) -> NetDecision {
        self.decide(host, Some(port))
    }

    /// [`decide_host`](Self::decide_host), the port checked when there is one.
    fn decide(&self, host: &Host, port: Option<u16>) -> NetDecision {
        if let Some(d) = self.deny.iter().find(|d| d.target.matches(host)) {
            return NetDecision::deny(
                Block::Denylist,
                d.rule.clone(),
                format!("{host} matches network.deny {:?}", d.shown),
            );
        }
        if let Some(port) = port.filter(|p| !self.ports.contains(p)) {
            return NetDecision::deny(
                Block::Port,
                self.ports_rule.clone(),
                format!("port {port} is not in network.ports {:?}", self.ports),
            );
        }
        if let Some(a) = self.allow.iter().find(|a| a.target.matches(host)) {
            return NetDecision::allow(
                a.rule.clone(),
                format!("{host} matches network.allow {:?}", a.shown),
            );
        }
        match (host, &self.ask) {
            (Host::Ip(ip), _) => NetDecision::deny(
                Block::Allowlist,
                format!("network.allow (no literal {ip})"),
                format!("the address {ip} is reached only when network.allow lists it literally"),
            ),
            (Host::Name(n), Some(ask)) => NetDecision {
                verdict: Verdict::Prompt,
                block: Some(Block::Approval),
                rule: format!("network.allow (no pattern matches {n}); {ask}"),
                reason: format!("{n} is not on the allow list: the person decides"),
            },
            (Host::Name(n), None) => NetDecision::deny(
                Block::Allowlist,
                format!("network.allow (no pattern matches {n})"),
                format!("{n} is not on the allow list"),
            ),
        }
    }

    /// Whether a request's method or path can change what `host` gets: the
    /// profile limits methods, or a `[[network.rule]]` for the host limits
    /// methods or paths. (An injection alone does not: bytes never read as
    /// a request get no secret.)
    pub fn requests_matter(&self, host: &Host) -> bool {
        self.methods.is_some()
            || self
                .rules
                .iter()
                .any(|r| r.host.matches(host) && !(r.methods.is_empty() && r.paths.is_empty()))
    }

    /// A whole HTTP request (plain, or inspected HTTPS): host and port as in
    /// [`decide_host`](Self::decide_host), then `methods` and the
    /// `[[network.rule]]` methods and paths. Unless Deny, the injections of
    /// the matching rules.
    ///
    /// The rules whose host pattern matches restrict together: the request
    /// must fit one of them (method and path); the injections are those of
    /// every rule it fits. Rules never allow a host by themselves. `path` is
    /// the request target's path; its query is ignored, and a path a server
    /// may read otherwise than a glob does ([`unmatchable`]: dot segments,
    /// backslashes, `;` parameters, `%u` escapes) fits no path glob. A Prompt passes these checks first (nothing is asked that would
    /// be refused anyway) and carries the injections used if the answer is yes.
    pub fn decide_request(
        &self,
        host: &Host,
        port: u16,
        method: &str,
        path: &str,
    ) -> (NetDecision, Vec<Injection>) {
        let d = self.decide_host(host, port);
        if d.verdict == Verdict::Deny {
            return (d, Vec::new());
        }
        if let Some((methods, r)) = &self.methods {
            if !methods.iter().any(|m| m == method) {
                let reason = format!("{method} is not in network.methods {methods:?}");
                return (
                    NetDecision::deny(Block::Method, r.clone(), reason),
                    Vec::new(),
                );
            }
        }
        let rules: Vec<&HostRule> = self.rules.iter().filter(|r| r.host.matches(host)).collect();
        if rules.is_empty() {
            return (d, Vec::new());
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let unfit = unmatchable(path);
        let mut fits = Vec::new();
        let (mut wrong_method, mut wrong_path) = (None, None);
        for &r in &rules {
            let method_ok = r.methods.is_empty() || r.methods.iter().any(|m| m == method);
            let path_ok = r.paths.is_empty()
                || (unfit.is_none() && r.paths.iter().any(|g| g.matcher.is_match(path)));
            match (method_ok, path_ok) {
                (true, true) => fits.push(r),
                (false, true) => {
                    wrong_method.get_or_insert(r);
                }
                _ => {
                    wrong_path.get_or_insert(r);
                }
            }
        }
        let Some(first) = fits.first() else {
            let d = match (wrong_method, wrong_path) {
                (Some(r), _) => NetDecision::deny(
                    Block::Method,
                    r.rule.clone(),
                    format!(
                        "{method} is not among the methods {:?} of the rule for {host}",
                        r.methods
                    ),
                ),
                (None, r) => {
                    let why = unfit.map(|w| format!(" ({w})")).unwrap_or_default();
                    NetDecision::deny(
                        Block::Allowlist,
                        r.unwrap_or(rules[0]).rule.clone(),
                        format!("path {path:?} fits none of the rule's paths{why}"),
                    )
                }
            };
            return (d, Vec::new());
        };
        let injections: Vec<Injection> = fits
            .iter()
            .filter_map(|r| {
                r.inject.as_ref().map(|i| Injection {
                    header: i.header.clone(),
                    value: i.value.clone(),
                    rule: r.rule.clone(),
                })
            })
            .collect();
        if let Some(i) = injections.first().filter(|_| echoes_headers(method)) {
            let reason = format!(
                "{method} has the server send the request back, and this one would carry \
                 the secret injected by the rule for {host}"
            );
            return (
                NetDecision::deny(Block::Method, i.rule.clone(), reason),
                Vec::new(),
            );
        }
        let d = NetDecision {
            rule: format!("{}; {}", d.rule, first.rule),
            ..d
        };
        (d, injections)
    }

    /// A DNS name, ports aside: may the resolver answer it? What
    /// [`decide_host`](Self::decide_host) says without the port check, so an
    /// unlisted name is Prompt under approval untrusted/on-request. The DNS
    /// server must answer only Allow and treat Prompt as a refusal (NXDOMAIN):
    /// resolving an unlisted name would send it upstream with nobody asked,
    /// a channel out of the sandbox; a name the person approves is resolved
    /// by the proxy itself, which needs no answer inside. A name that does
    /// not normalise is Deny with [`Block::BadRequest`].
    pub fn decide_name(&self, name: &str) -> NetDecision {
        match normalize_host(name) {
            Ok(host) => self.decide(&host, None),
            Err(m) => NetDecision::deny(
                Block::BadRequest,
                "dns (name does not normalise)".to_string(),
                m,
            ),
        }
    }

    /// Whether a request carrying an injected secret may go to `ip`: over
    /// TLS always (the server proven, the secret encrypted); in clear only
    /// to an address an `allow_cidrs` entry covers, one the admin declared
    /// near. Anywhere else whoever is on the path would read the secret, so
    /// the sandbox could leak it by asking for `http://`.
    pub fn may_inject(&self, tls: bool, ip: IpAddr) -> Result<(), String> {
        if tls
            || self
                .allow_cidrs
                .iter()
                .any(|c| cidr_contains(c.net, c.prefix, ip))
        {
            return Ok(());
        }
        Err(format!(
            "a secret goes in clear only to an address network.allow_cidrs lists, and {ip} is not one: use https:// (with inspect = true)"
        ))
    }

    /// The SSRF guard for one resolved (or literal) address: special-purpose
    /// ranges ([`super::addr::special`]) and `host_addrs` (the host's own) are
    /// refused with [`Block::PrivateAddress`] unless an `allow_cidrs` entry covers them.
    pub fn vet_addr(&self, ip: IpAddr, host_addrs: &[IpAddr]) -> NetDecision {
        if let Some(c) = self
            .allow_cidrs
            .iter()
            .find(|c| cidr_contains(c.net, c.prefix, ip))
        {
            return NetDecision::allow(c.rule.clone(), format!("{ip} is in network.allow_cidrs"));
        }
        let class = addr::special(ip).or_else(|| {
            host_addrs
                .contains(&ip)
                .then_some("an address of this host")
        });
        match class {
            Some(class) => NetDecision::deny(
                Block::PrivateAddress,
                format!("ssrf: {ip} is {class}"),
                format!("{ip} is {class} and no network.allow_cidrs entry covers it"),
            ),
            None => NetDecision::allow(
                format!("ssrf: {ip} is public"),
                format!("{ip} is a public address"),
            ),
        }
    }

    /// Everything that decides, in a canonical form (for the policy hash).
    pub fn canonical(&self) -> serde_json::Value {
        let targets = |v: &[Entry]| v.iter().map(|e| e.target.canonical()).collect::<Vec<_>>();
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "host": r.host.canonical(),
                    "methods": r.methods,
                    "paths": r.paths.iter().map(|p| p.glob.glob()).collect::<Vec<_>>(),
                    "inject": r.inject.as_ref().map(|i| [&i.header, &i.value]),
                })
            })
            .collect();
        serde_json::json!({
            "allow": targets(&self.allow),
            "deny": targets(&self.deny),
            "ports": self.ports,
            "methods": self.methods.as_ref().map(|(m, _)| m),
            "allow_cidrs": self.allow_cidrs.iter().map(|c| format!("{}/{}", c.net, c.prefix)).collect::<Vec<_>>(),
            "inspect": self.inspect,
            "allow_non_tls_443": self.allow_non_tls_443,
            "allow_ech": self.allow_ech,
            "rules": rules,
            "unlisted": if self.ask.is_some() { "prompt" } else { "deny" },
        })
    }
}

/// Whether `method` asks the server to echo the request, headers and all,
/// back to the client (TRACE, and IIS's TRACK): an injected secret would
/// reach the sandbox. Servers may read methods without regard to case.
fn echoes_headers(method: &str) -> bool {
    method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::host::tests::{ip, name};
    use crate::policy::PolicyStore;

    #[test]
    fn block_names() {
        use Block::*;
        let names: Vec<&str> = [
            Allowlist,
            Denylist,
            Method,
            Port,
            PrivateAddress,
            SniMismatch,
            Approval,
            NotTls,
            BadRequest,
        ]
        .iter()
        .map(|b| b.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "allowlist",
                "denylist",
                "method",
                "port",
                "private-address",
                "sni-mismatch",
                "approval",
                "not-tls",
                "bad-request"
            ]
        );
    }

    const NET: &str = r#"approval = "never"
[network]
mode = "allowlist"
allow = ["allowed.test", "*.sub.test", "**.both.test", "10.9.8.7", "[2001:db8::5]", "api.github.test", "gist.allowed.test", "xn--bcher-kva.test"]
deny = ["gist.allowed.test", "bad.both.test"]
ports = [443, 80, 8080]
allow_cidrs = ["10.0.0.0/8", "fd00::/8"]
inspect = true
allow_non_tls_443 = true
[[network.rule]]
host = "api.github.test"
methods = ["GET", "POST"]
paths = ["/repos/acme/**", "/user"]
inject = { header = "Authorization", value = "Bearer {secret:GH}" }
[[network.rule]]
host = "api.github.test"
methods = ["GET"]
paths = ["/meta/*"]
"#;

    /// The profile `net` from `text`, and its policy under `approval` (the profile's when None).
    fn policy(
        text: &str,
        narrowed: Option<&[String]>,
        approval: Option<ApprovalMode>,
    ) -> NetPolicy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.toml"), text).unwrap();
        let store = PolicyStore::load(Some(dir.path()), false).unwrap();
        let p = store.get("net").unwrap();
        NetPolicy::from_profile(p, narrowed, approval.unwrap_or(p.approval.value)).unwrap()
    }

    /// A secret goes over TLS anywhere, in clear only where `allow_cidrs`
    /// (here 10.0.0.0/8 and fd00::/8) reaches.
    #[test]
    fn secrets_go_in_clear_only_to_allow_cidrs() {
        let p = policy(NET, None, None);
        for (tls, addr, ok) in [
            (true, "93.184.216.34", true),
            (true, "2606:2800:220:1::1", true),
            (false, "10.1.2.3", true),
            (false, "fd12::1", true),
            (false, "93.184.216.34", false),
            (false, "2606:2800:220:1::1", false),
            (false, "127.0.0.1", false),
            (false, "192.168.1.1", false),
        ] {
            let r = p.may_inject(tls, addr.parse().unwrap());
            assert_eq!(r.is_ok(), ok, "tls {tls}, {addr}: {r:?}");
            if let Err(m) = r {
                assert!(m.contains(addr) && m.contains("allow_cidrs"), "{m}");
            }
        }
    }

    #[test]
    fn hosts_decide_as_documented() {
        let p = policy(NET, None, None);
        assert!(p.inspect() && p.allow_non_tls_443());
        use Verdict::*;
        // (host, port, verdict, block, rule must contain)
        let cases: &[(Host, u16, Verdict, Option<Block>, &str)] = &[
            (
                name("allowed.test"),
                443,
                Allow,
                None,
                "net.toml:4 network.allow \"allowed.test\"",
            ),
            (
                name("x.allowed.test"),
                443,
                Deny,
                Some(Block::Allowlist),
                "network.allow (no pattern matches x.allowed.test)",
            ),
            (
                name("allowed.test.evil.test"),
                443,
                Deny,
                Some(Block::Allowlist),
                "no pattern matches",
            ),
            (
                name("sub.test"),
                443,
                Deny,
                Some(Block::Allowlist),
                "network.allow",
            ),
            (name("a.sub.test"), 80, Allow, None, "\"*.sub.test\""),
            (name("a.b.sub.test"), 80, Allow, None, "\"*.sub.test\""),
            (name("both.test"), 443, Allow, None, "\"**.both.test\""),
            (name("x.both.test"), 443, Allow, None, "\"**.both.test\""),
            (
                name("bad.both.test"),
                443,
                Deny,
                Some(Block::Denylist),
                "net.toml:5 network.deny \"bad.both.test\"",
            ),
            (
                name("gist.allowed.test"),
                443,
                Deny,
                Some(Block::Denylist),
                "network.deny \"gist.allowed.test\"",
            ),
            (
                name("allowed.test"),
                22,
                Deny,
                Some(Block::Port),
                "net.toml:6 network.ports [443, 80, 8080]",
            ),
            (name("allowed.test"), 8080, Allow, None, "network.allow"),
            (
                name("xn--bcher-kva.test"),
                443,
                Allow,
                None,
                "network.allow",
            ),
            (
                ip("10.9.8.7"),
                443,
                Allow,
                None,
                "network.allow \"10.9.8.7\"",
            ),
            (
                ip("10.9.8.8"),
                443,
                Deny,
                Some(Block::Allowlist),
                "network.allow (no literal 10.9.8.8)",
            ),
            (ip("2001:db8::5"), 443, Allow, None, "\"[2001:db8::5]\""),
            (
                ip("127.0.0.1"),
                80,
                Deny,
                Some(Block::Allowlist),
                "no literal",
            ),
            (ip("::1"), 80, Deny, Some(Block::Allowlist), "no literal"),
        ];
        for (host, port, verdict, block, rule) in cases {
            let d = p.decide_host(host, *port);
            assert_eq!(
                (d.verdict, d.block),
                (*verdict, *block),
                "{host}:{port}: {d:?}"
            );
            assert!(
                d.rule.contains(rule),
                "{host}:{port}: want {rule:?} in {:?}",
                d.rule
            );
        }
    }

    #[test]
    fn unlisted_names_prompt_unless_approval_is_never() {
        let text = NET.replace("approval = \"never\"\n", "approval = \"on-request\"\n");
        for (approval, verdict, block, rule) in [
            (
                None,
                Verdict::Prompt,
                Block::Approval,
                "net.toml:1 approval \"on-request\"",
            ),
            (
                Some(ApprovalMode::Untrusted),
                Verdict::Prompt,
                Block::Approval,
                "request approval \"untrusted\"",
            ),
            (
                Some(ApprovalMode::Never),
                Verdict::Deny,
                Block::Allowlist,
                "no pattern matches other.test",
            ),
        ] {
            let p = policy(&text, None, approval);
            let d = p.decide_host(&name("other.test"), 443);
            assert_eq!(
                (d.verdict, d.block),
                (verdict, Some(block)),
                "{approval:?}: {d:?}"
            );
            assert!(d.rule.contains(rule), "{approval:?}: {:?}", d.rule);
            // Deny entries, ports and addresses are never asked about.
            assert_eq!(
                p.decide_host(&name("bad.both.test"), 443).verdict,
                Verdict::Deny
            );
            assert_eq!(
                p.decide_host(&name("other.test"), 22).block,
                Some(Block::Port)
            );
            assert_eq!(p.decide_host(&ip("10.1.1.1"), 443).verdict, Verdict::Deny);
        }
    }

    #[test]
    fn narrowed_allow_list_replaces_the_profiles() {
        let narrowed = vec!["a.sub.test".to_string(), "allowed.test".to_string()];
        let p = policy(NET, Some(&narrowed), None);
        let d = p.decide_host(&name("a.sub.test"), 443);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule, "request network.allow \"a.sub.test\"");
        let d = p.decide_host(&name("allowed.test"), 443);
        assert!(
            d.rule
                .ends_with("net.toml:4 network.allow \"allowed.test\""),
            "{d:?}"
        );
        assert_eq!(
            p.decide_host(&name("b.sub.test"), 443).verdict,
            Verdict::Deny
        );
        assert_eq!(
            p.decide_host(&name("both.test"), 443).verdict,
            Verdict::Deny
        );
        assert_eq!(
            p.decide_host(&name("bad.both.test"), 443).block,
            Some(Block::Denylist)
        );
    }

    #[test]
    fn default_ports_and_methods() {
        let p = policy(
            "[network]\nmode = \"allowlist\"\nallow = [\"a.test\"]\nmethods = [\"GET\", \"HEAD\"]\n",
            None,
            Some(ApprovalMode::Never),
        );
        for (port, ok) in [(80, true), (443, true), (8080, false), (22, false)] {
            let d = p.decide_host(&name("a.test"), port);
            assert_eq!(d.verdict == Verdict::Allow, ok, "{port}: {d:?}");
            if !ok {
                assert!(
                    d.rule
                        .ends_with("net.toml network.ports (default [80, 443])"),
                    "{d:?}"
                );
            }
        }
        let (d, _) = p.decide_request(&name("a.test"), 80, "POST", "/");
        assert_eq!((d.verdict, d.block), (Verdict::Deny, Some(Block::Method)));
        assert!(
            d.rule
                .ends_with("net.toml:4 network.methods [\"GET\", \"HEAD\"]"),
            "{d:?}"
        );
        let (d, _) = p.decide_request(&name("a.test"), 80, "get", "/");
        assert_eq!(d.block, Some(Block::Method), "methods are case-sensitive");
        let (d, inj) = p.decide_request(&name("a.test"), 80, "HEAD", "/x");
        assert_eq!((d.verdict, inj.len()), (Verdict::Allow, 0));
    }

    #[test]
    fn requests_follow_rules() {
        let p = policy(NET, None, None);
        let api = name("api.github.test");
        use Verdict::*;
        // (method, path, verdict, block, rule must contain, injections)
        type Case = (
            &'static str,
            &'static str,
            Verdict,
            Option<Block>,
            &'static str,
            usize,
        );
        let cases: &[Case] = &[
            (
                "GET",
                "/repos/acme/x",
                Allow,
                None,
                "net.toml:10 network.rule \"api.github.test\"",
                1,
            ),
            (
                "POST",
                "/repos/acme/x/y/z?a=b",
                Allow,
                None,
                "network.rule",
                1,
            ),
            (
                "GET",
                "/user",
                Allow,
                None,
                "network.allow \"api.github.test\"; ",
                1,
            ),
            (
                "GET",
                "/user/x",
                Deny,
                Some(Block::Allowlist),
                "net.toml:10 network.rule",
                0,
            ),
            (
                "GET",
                "/meta/hooks",
                Allow,
                None,
                "net.toml:15 network.rule",
                0,
            ),
            (
                "GET",
                "/meta/a/b",
                Deny,
                Some(Block::Allowlist),
                "network.rule",
                0,
            ),
            (
                "POST",
                "/meta/hooks",
                Deny,
                Some(Block::Method),
                "net.toml:15 network.rule",
                0,
            ),
            (
                "DELETE",
                "/repos/acme/x",
                Deny,
                Some(Block::Method),
                "net.toml:10 network.rule",
                0,
            ),
            (
                "GET",
                "/repos/other/x",
                Deny,
                Some(Block::Allowlist),
                "network.rule",
                0,
            ),
            (
                "GET",
                "/repos/acme/../other/x",
                Deny,
                Some(Block::Allowlist),
                "network.rule",
                0,
            ),
            (
                "GET",
                "/repos/acme/%2E%2e/other",
                Deny,
                Some(Block::Allowlist),
                "network.rule",
                0,
            ),
            (
                "GET",
                "/repos/acme/x\\..\\..\\y",
                Deny,
                Some(Block::Allowlist),
                "network.rule",
                0,
            ),
            ("GET", "*", Deny, Some(Block::Allowlist), "network.rule", 0),
        ];
        // What Tomcat, Jetty, Spring or IIS would serve outside the rule's
        // paths: `;` parameters (stripped before the path is resolved) and
        // `%u` escapes fit no path, whether or not they hide a dot segment.
        let served_elsewhere = [
            "/repos/acme/..;/..;/admin/users",
            "/repos/acme/..;jsessionid=x/..;/admin",
            "/repos/acme/%2e%2e%3b/%2E%2E%3B/admin",
            "/repos/acme/%2e%2e%3bx/other",
            "/repos/acme/.;/x",
            "/repos/acme/x;v=1",
            "/repos/acme/x%3bv=1",
            "/repos/acme/x%3Bv=1",
            "/repos/acme/%u002e%u002e/%u002E%u002E/admin",
            "/repos/acme/%U002e%U002e/admin",
            "/user;x",
        ];
        let cases: Vec<Case> = cases
            .iter()
            .copied()
            .chain(
                served_elsewhere
                    .iter()
                    .map(|p| ("GET", *p, Deny, Some(Block::Allowlist), "net.toml:10", 0)),
            )
            .collect();
        let rules_first = p.rules[0].rule.clone();
        assert!(rules_first.ends_with("net.toml:10 network.rule \"api.github.test\""));
        for (method, path, verdict, block, rule, n) in &cases {
            let (d, inj) = p.decide_request(&api, 443, method, path);
            assert_eq!(
                (d.verdict, d.block),
                (*verdict, *block),
                "{method} {path}: {d:?}"
            );
            assert!(
                d.rule.contains(rule),
                "{method} {path}: want {rule:?} in {:?}",
                d.rule
            );
            assert_eq!(inj.len(), *n, "{method} {path}: {inj:?}");
            for i in inj {
                assert_eq!(
                    (i.header.as_str(), i.value.as_str(), i.rule.as_str()),
                    ("Authorization", "Bearer {secret:GH}", &*rules_first)
                );
            }
        }
        for (path, why) in [
            ("/repos/acme/..;/admin", "dot segments"),
            ("/repos/acme/x%3Bv=1", "`;` parameters"),
            ("/repos/acme/%u0061", "%u escape"),
        ] {
            let (d, _) = p.decide_request(&api, 443, "GET", path);
            assert!(d.reason.contains(why), "{path}: {}", d.reason);
        }
        // Rules only restrict: other hosts are untouched, unlisted ones stay denied.
        let (d, inj) = p.decide_request(&name("allowed.test"), 443, "DELETE", "/anything");
        assert_eq!((d.verdict, inj.len()), (Allow, 0));
        let (d, _) = p.decide_request(&name("api.github.test"), 22, "GET", "/user");
        assert_eq!(d.block, Some(Block::Port));
    }

    /// TRACE and TRACK echo the request back: never with a secret injected,
    /// whatever the rule's methods, and untouched where nothing is injected.
    #[test]
    fn a_request_that_would_echo_its_secret_is_refused() {
        let p = policy(
            &NET.replacen("methods = [\"GET\", \"POST\"]\n", "", 1),
            None,
            None,
        );
        let api = name("api.github.test");
        for method in ["TRACE", "trace", "TRACK"] {
            let (d, inj) = p.decide_request(&api, 443, method, "/user");
            assert_eq!(
                (d.verdict, d.block),
                (Verdict::Deny, Some(Block::Method)),
                "{method}"
            );
            assert!(d.rule.contains("net.toml:10 network.rule"), "{}", d.rule);
            assert!(inj.is_empty());
        }
        let (d, inj) = p.decide_request(&api, 443, "PUT", "/user");
        assert_eq!((d.verdict, inj.len()), (Verdict::Allow, 1));
        let (d, inj) = p.decide_request(&name("allowed.test"), 443, "TRACE", "/");
        assert_eq!((d.verdict, inj.len()), (Verdict::Allow, 0));
    }

    #[test]
    fn dns_names() {
        let p = policy(&NET.replace("approval = \"never\"\n", ""), None, None);
        use Verdict::*;
        for (n, verdict, block) in [
            ("allowed.test", Allow, None),
            ("ALLOWED.TEST.", Allow, None),
            ("x.both.test", Allow, None),
            ("bad.both.test", Deny, Some(Block::Denylist)),
            ("other.test", Prompt, Some(Block::Approval)),
            ("a..b", Deny, Some(Block::BadRequest)),
            ("127.1", Deny, Some(Block::Allowlist)),
        ] {
            let d = p.decide_name(n);
            assert_eq!((d.verdict, d.block), (verdict, block), "{n}: {d:?}");
        }
    }

    #[test]
    fn addresses_are_vetted() {
        let p = policy(NET, None, None);
        let own: Vec<IpAddr> = vec!["203.0.114.9".parse().unwrap()];
        // (address, allowed, rule)
        let cases: &[(&str, bool, &str)] = &[
            ("8.8.8.8", true, "ssrf: 8.8.8.8 is public"),
            (
                "169.254.169.254",
                false,
                "ssrf: 169.254.169.254 is link-local",
            ),
            ("127.0.0.1", false, "ssrf: 127.0.0.1 is loopback"),
            ("192.168.1.1", false, "ssrf: 192.168.1.1 is private"),
            ("100.64.1.1", false, "ssrf: 100.64.1.1 is cgnat"),
            ("0.0.0.0", false, "ssrf: 0.0.0.0 is unspecified"),
            (
                "::ffff:10.1.2.3",
                false,
                "ssrf: ::ffff:10.1.2.3 is v4-mapped (private)",
            ),
            ("64:ff9b::7f00:1", false, "is nat64 (loopback)"),
            ("2002:a9fe:a9fe::1", false, "is 6to4 (link-local)"),
            ("2001::1", false, "is teredo"),
            ("fe80::1", false, "is link-local"),
            ("fc00::1", false, "is ula"),
            (
                "203.0.114.9",
                false,
                "ssrf: 203.0.114.9 is an address of this host",
            ),
            (
                "10.1.2.3",
                true,
                "net.toml:7 network.allow_cidrs \"10.0.0.0/8\"",
            ),
            ("fd12::1", true, "network.allow_cidrs \"fd00::/8\""),
        ];
        for (a, ok, rule) in cases {
            let d = p.vet_addr(a.parse().unwrap(), &own);
            assert_eq!(d.verdict == Verdict::Allow, *ok, "{a}: {d:?}");
            assert_eq!(d.block, (!ok).then_some(Block::PrivateAddress), "{a}");
            assert!(d.rule.contains(rule), "{a}: want {rule:?} in {:?}", d.rule);
        }
    }

    #[test]
    fn canonical_form_follows_what_decides() {
        let a = policy(NET, None, None);
        assert_eq!(a.canonical(), policy(NET, None, None).canonical());
        let b = policy(&NET.replace("8080", "8081"), None, None);
        assert_ne!(a.canonical(), b.canonical());
        let c = policy(NET, None, Some(ApprovalMode::Untrusted));
        assert_ne!(a.canonical(), c.canonical());
    }
}
