//! Request targets: the host and port of an authority, and the parts of an
//! absolute-form URI, as the proxy checks them against the destination.

use crate::net::{normalize_host, Host};

/// Splits `host[:port]` (IPv6 in brackets); an `@` (userinfo) is an error.
pub fn split_authority(auth: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    if auth.contains('@') {
        return Err(format!("userinfo in the authority {auth:?}"));
    }
    let (host, port) = if let Some(rest) = auth.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed bracket in {auth:?}"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("junk after ] in {auth:?}"))?,
            ),
        };
        (&auth[..h.len() + 2], port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port in {auth:?}"))?,
        Some("") | None => default_port.ok_or_else(|| format!("no port in {auth:?}"))?,
        Some(_) => return Err(format!("bad port in {auth:?}")),
    };
    if host.is_empty() {
        return Err(format!("no host in {auth:?}"));
    }
    Ok((normalize_host(host)?, port))
}

/// An absolute-form target `scheme://authority[path]`: the scheme, the
/// authority and the origin-form rest (`/` when empty).
pub(super) fn split_absolute(target: &str) -> Option<(String, &str, String)> {
    let (scheme, rest) = target.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(end);
    let tail = tail.split('#').next().unwrap_or_default();
    let path = match tail.chars().next() {
        Some('/') => tail.to_string(),
        _ => format!("/{tail}"),
    };
    Some((scheme.to_ascii_lowercase(), auth, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_targets_split() {
        let (s, a, p) = split_absolute("http://a.test:8080/x?y#z").unwrap();
        assert_eq!((s.as_str(), a, p.as_str()), ("http", "a.test:8080", "/x?y"));
        let (_, a, p) = split_absolute("HTTP://a.test?q").unwrap();
        assert_eq!((a, p.as_str()), ("a.test", "/?q"));
        assert!(split_absolute("/only/path").is_none());
    }

    #[test]
    fn authorities() {
        assert!(split_authority("u:p@a.test", Some(80))
            .unwrap_err()
            .contains("userinfo"));
        assert!(split_authority("a.test:0", Some(80)).is_err());
        assert!(split_authority("a.test:x", Some(80)).is_err());
        assert!(split_authority("a.test", None).is_err());
        assert!(split_authority("[::1", None).is_err());
    }
}
