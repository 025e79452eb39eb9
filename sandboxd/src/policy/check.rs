//! The pure decisions behind `policy check`: whether a command under a
//! profile could read or write a path, or reach a URL, and the rule that
//! says so, without running anything.

use super::model::{Located, NetworkMode, Profile};
use super::narrow::{clean, covers, expand, rule, ExecContext};
use super::{Decision, Verdict};
use crate::net::{Host, NetDecision, NetPolicy};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Would a command under `profile` be able to read/write `path`? Names the rule.
pub fn check_path(profile: &Profile, ctx: &ExecContext, path: &Path, access: Access) -> Decision {
    let fs = &profile.filesystem;
    let key = match access {
        Access::Read => "filesystem.read",
        Access::Write => "filesystem.write",
    };
    let Some(path) = clean(path) else {
        return Decision {
            verdict: Verdict::Deny,
            rule: key.to_string(),
            reason: format!("{} is not an absolute path without `..`", path.display()),
        };
    };
    let shown = path.display();
    // Deny patterns win over roots; an unreadable file is not writable either.
    let denies: Vec<(&str, &Located<String>)> = match access {
        Access::Read => fs
            .deny_read
            .iter()
            .map(|d| ("filesystem.deny_read", d))
            .collect(),
        Access::Write => {
            let w = fs.deny_write.iter().map(|d| ("filesystem.deny_write", d));
            w.chain(fs.deny_read.iter().map(|d| ("filesystem.deny_read", d)))
                .collect()
        }
    };
    for (k, d) in denies {
        let pattern = match expand(d, k, ctx, true) {
            Ok(p) => p,
            Err(r) => {
                return Decision {
                    verdict: Verdict::Deny,
                    rule: r.rule,
                    reason: r.message,
                }
            }
        };
        if covers(&pattern, &path) {
            return Decision {
                verdict: Verdict::Deny,
                rule: rule(&d.origin, k, &d.value),
                reason: format!("{shown} is covered by {k} {:?}", d.value),
            };
        }
    }
    let in_root = |roots: &[Located<String>], k: &str| -> Option<Decision> {
        roots.iter().find_map(|r| {
            let root = expand(r, k, ctx, false).ok()?;
            if !path.starts_with(&root) {
                return None;
            }
            let reason = if r.value == "{tmp}" && k == "filesystem.write" {
                format!("{shown} is in the private /tmp (a fresh tmpfs, not the host's)")
            } else {
                format!("{shown} is inside {k} root {root}")
            };
            Some(Decision {
                verdict: Verdict::Allow,
                rule: rule(&r.origin, k, &r.value),
                reason,
            })
        })
    };
    let found = match access {
        Access::Read => {
            in_root(&fs.read, "filesystem.read").or_else(|| in_root(&fs.write, "filesystem.write"))
        }
        Access::Write => in_root(&fs.write, "filesystem.write"),
    };
    found.unwrap_or_else(|| Decision {
        verdict: Verdict::Deny,
        rule: format!("{key} (no root covers {shown})"),
        reason: format!(
            "{shown} is outside every {key} root of profile {}",
            profile.name
        ),
    })
}

/// The parts of `url` (`scheme://[userinfo@]host[:port][/path]`, or
/// `host[:port]`) the network policy looks at.
struct UrlParts {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

/// Splits `url` the way URL parsers find the authority: it ends at `/`, `\`,
/// `?` or `#`, and the host follows the last `@` (so `http://a@b/` is b).
fn split_url(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, url),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (h, after) = authority.split_at(close + 1);
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => match scheme.as_deref() {
            Some("http") | Some("ws") => Some(80),
            Some("https") | Some("wss") => Some(443),
            _ => None,
        },
    };
    let path = if path.is_empty() { "/" } else { path };
    Some(UrlParts {
        scheme,
        host,
        port,
        path: path.replace('\\', "/"),
    })
}

/// Could a command under `profile` reach `url`? Names the rule. Decided as
/// the proxy would, without resolving or connecting: an http URL (an https
/// one too when the profile inspects) as a GET request, anything else by
/// host and port; an address is also put through the SSRF guard.
pub fn check_url(profile: &Profile, url: &str) -> Decision {
    let net = &profile.network;
    let mode_rule = rule(&net.mode.origin, "network.mode", net.mode.value.as_str());
    let deny = |rule: String, reason: String| Decision {
        verdict: Verdict::Deny,
        rule,
        reason,
    };
    match net.mode.value {
        NetworkMode::None => return deny(mode_rule, "the profile has no network".to_string()),
        NetworkMode::Full => {
            return Decision {
                verdict: Verdict::Allow,
                rule: mode_rule,
                reason: "the profile's network is unrestricted".into(),
            }
        }
        NetworkMode::Allowlist => {}
    }
    let Some(parts) = split_url(url) else {
        return deny(
            "network.allow".to_string(),
            format!("{url:?} is not a URL or HOST[:PORT]"),
        );
    };
    let host = match crate::net::normalize_host(&parts.host) {
        Ok(h) => h,
        Err(m) => {
            return deny(
                "network.allow".to_string(),
                format!("blocked-by-bad-request: {m}"),
            )
        }
    };
    let Some(port) = parts.port else {
        return deny(
            "network.ports".to_string(),
            format!("{url:?} names no port or known scheme"),
        );
    };
    let policy = match NetPolicy::from_profile(profile, None, profile.approval.value) {
        Ok(p) => p,
        Err(m) => return deny("network".to_string(), m),
    };
    let request = match parts.scheme.as_deref() {
        Some("http") => true,
        Some("https") => policy.inspect(),
        _ => false,
    };
    let mut d = if request {
        policy.decide_request(&host, port, "GET", &parts.path).0
    } else {
        policy.decide_host(&host, port)
    };
    if let (Host::Ip(ip), Verdict::Allow | Verdict::Prompt) = (&host, d.verdict) {
        let vetted = policy.vet_addr(*ip, &crate::net::addr::host_addresses());
        d = if vetted.verdict == Verdict::Deny {
            vetted
        } else {
            NetDecision {
                rule: format!("{}; {}", d.rule, vetted.rule),
                ..d
            }
        };
    }
    let reason = match (d.verdict, d.block) {
        (Verdict::Deny, Some(b)) => format!("blocked-by-{}: {}", b.as_str(), d.reason),
        _ => d.reason,
    };
    Decision {
        verdict: d.verdict,
        rule: d.rule,
        reason,
    }
}
