//! Request paths a path glob cannot be trusted on: dot segments,
//! backslashes, `;` parameters and `%u` escapes, which servers resolve
//! otherwise than a glob of a `[[network.rule]]` reads them.

/// Why `path` may not be matched against path globs, if it may not:
/// servers resolve it otherwise than a glob reads it. Dot segments (see
/// [`has_dot_segment`]) and backslashes (IIS reads them as `/`); `;`
/// parameters, plain or as `%3b` (Tomcat, Jetty and Spring strip them, so
/// `/a/..;/b` is served as `/b`); IIS's `%u` escapes (`%u002e` is `.`).
pub(super) fn unmatchable(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') {
        Some("it is not an absolute path")
    } else if has_dot_segment(path) {
        Some("it has dot segments")
    } else if path.contains('\\') || lower.contains("%5c") {
        Some("it has a backslash")
    } else if path.contains(';') || lower.contains("%3b") {
        Some("it has `;` parameters, which servers may strip")
    } else if lower.contains("%u") {
        Some("it has a %u escape")
    } else {
        None
    }
}

/// Whether `path` has a `.` or `..` segment as a server may read it:
/// percent-encoded (`%2e`, IIS's `%u002e`, `/` as `%2f`), or with `;`
/// parameters (`..;x`, `%2e%2e%3b`), which servers strip before they
/// resolve the path.
pub fn has_dot_segment(path: &str) -> bool {
    let decoded = path
        .to_ascii_lowercase()
        .replace("%u002e", ".")
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%3b", ";");
    decoded.split('/').any(|seg| {
        let s = seg.split(';').next().unwrap_or(seg);
        s == "." || s == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_as_servers_read_them() {
        for dotted in [
            "/a/../b",
            "/a/%2E%2e/b",
            "/a/.",
            "/a%2f..%2fb",
            "/a/..;/b",
            "/a/..;jsessionid=x/b",
            "/a/%2e%2e%3b/b",
            "/a/.;x",
            "/a/%u002e%u002E/b",
        ] {
            assert!(has_dot_segment(dotted), "{dotted}");
        }
        for plain in ["/a/..b/c.d", "/a/b;..", "/a/x;v=1", "/.a/b."] {
            assert!(!has_dot_segment(plain), "{plain}");
        }
    }
}
