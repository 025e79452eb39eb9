//! The hooks directory a repository's own config names (`core.hooksPath`,
//! as husky and similar tools set it, often to a directory of the work
//! tree): where a profile protects a repository's `.git/hooks`, git on the
//! host runs hooks from there instead, so it is protected the same way.
//!
//! Read as the caller in the sandbox's init, before the deny lists are
//! expanded. Only the repository's own `.git/config` is read: `include`d
//! files, the caller's global config and a linked worktree's common
//! directory are not followed. A hooks directory missing at the start is
//! denied as any missing `deny_write` path is: its parent is made read-only
//! when it lies strictly inside the writable root, else it stays creatable.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The most of a `.git/config` read: git's own are a few KiB.
const MAX_CONFIG: u64 = 1 << 20;

/// Deny-write patterns (literal) for the hooks directories named by the
/// config of each repository whose `.git/hooks` is among `denied` (what
/// `deny_write` matched), whether or not they exist yet, and for the
/// scripts a hooks directory runs from its parent (husky's). `home`
/// expands a leading `~/`.
pub fn protected_hook_dirs<'a>(denied: impl Iterator<Item = &'a Path>, home: &Path) -> Vec<String> {
    let mut dirs: Vec<PathBuf> = denied
        .filter_map(|hooks| {
            let repo = hooks.to_str()?.strip_suffix("/.git/hooks")?;
            let config = read_config(&Path::new(repo).join(".git/config"))?;
            hooks_path(&config, Path::new(repo), home)
        })
        .flat_map(|dir| {
            let scripts = runs_from_parent(&dir).then(|| dir.parent().map(Path::to_path_buf));
            std::iter::once(dir).chain(scripts.flatten())
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.iter()
        .map(|dir| crate::backend::spec::glob_literal(&dir.to_string_lossy()))
        .collect()
}

/// Whether the hooks directory `dir` is husky's (9 and later): `.husky/_`,
/// whose every hook runs `_/h`, which runs the script of the same name in
/// `.husky/`. Those scripts are the hooks, then.
fn runs_from_parent(dir: &Path) -> bool {
    dir.file_name() == Some(std::ffi::OsStr::new("_"))
        && std::fs::symlink_metadata(dir.join("h")).is_ok_and(|m| m.is_file())
}

/// `path`'s text, not through a symlink at its end, when it is a regular
/// file of at most [`MAX_CONFIG`] bytes.
fn read_config(path: &Path) -> Option<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    super::paths::read_small(file, MAX_CONFIG)
}

/// The last `core.hooksPath` of a git config text, as an absolute path
/// without `.` or `..`: a relative one is taken from `worktree` (where git
/// runs hooks), `~/` from `home`. `None` when unset or unusable.
pub fn hooks_path(config: &str, worktree: &Path, home: &Path) -> Option<PathBuf> {
    let value = last_core_value(config, "hookspath")?;
    let path = match value.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if value.starts_with('~') => return None,
        None => worktree.join(&value),
    };
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (path.is_absolute() && !value.is_empty()).then_some(out)
}

/// The last value of `core.<key>` (`key` in lower case) in a git config
/// text: sections and keys ignore case, values may be quoted and escaped,
/// `#` and `;` start comments, a trailing `\` continues the line.
fn last_core_value(config: &str, key: &str) -> Option<String> {
    let mut in_core = false;
    let mut found = None;
    let mut lines = config.lines();
    while let Some(line) = lines.next() {
        let mut rest = line.trim_start();
        if let Some(header) = rest.strip_prefix('[') {
            let Some(end) = header.find(']') else {
                in_core = false;
                continue;
            };
            in_core = header[..end].trim().eq_ignore_ascii_case("core");
            // A variable may follow the header on the same line.
            rest = header[end + 1..].trim_start();
        }
        if !in_core || rest.is_empty() || rest.starts_with(['#', ';']) {
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        if !rest[..name_len].eq_ignore_ascii_case(key) {
            continue;
        }
        let after = rest[name_len..].trim_start();
        let Some(raw) = after.strip_prefix('=') else {
            // `key` alone is a boolean, not a path.
            continue;
        };
        found = Some(value(raw, &mut lines));
    }
    found
}

/// A config value starting at `raw`, continued on the next lines after a
/// trailing `\`.
fn value<'a>(raw: &'a str, more: &mut impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    // Spaces outside quotes count only between other characters.
    let mut spaces = String::new();
    let mut quoted = false;
    let mut chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '\\' => match chars.get(i).copied() {
                None => match more.next() {
                    Some(next) => {
                        chars = next.chars().collect();
                        i = 0;
                    }
                    None => break,
                },
                Some(e) => {
                    i += 1;
                    out.push_str(&spaces);
                    spaces.clear();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'b' => '\u{8}',
                        other => other,
                    });
                }
            },
            '"' => {
                out.push_str(&spaces);
                spaces.clear();
                quoted = !quoted;
            }
            '#' | ';' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if !out.is_empty() {
                    spaces.push(c);
                }
            }
            c => {
                out.push_str(&spaces);
                spaces.clear();
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How git reads `core.hooksPath`, case by case.
    #[test]
    fn the_hooks_directory_is_read_as_git_reads_it() {
        let wt = Path::new("/ws/repo");
        let home = Path::new("/home/u");
        let cases: &[(&str, Option<&str>)] = &[
            (
                "[core]\n\thooksPath = .husky/_\n",
                Some("/ws/repo/.husky/_"),
            ),
            (
                "[CORE]\n  HOOKSPATH=hooks # set by a tool\n",
                Some("/ws/repo/hooks"),
            ),
            (
                "[core] hooksPath = \"a dir\" ; quoted\n",
                Some("/ws/repo/a dir"),
            ),
            ("[core]\nhooksPath = \"x\\\"y\"\n", Some("/ws/repo/x\"y")),
            (
                "[core]\nhooksPath = ../shared/hooks\n",
                Some("/ws/shared/hooks"),
            ),
            ("[core]\nhooksPath = /abs/hooks\n", Some("/abs/hooks")),
            (
                "[core]\nhooksPath = ~/.githooks\n",
                Some("/home/u/.githooks"),
            ),
            ("[core]\nhooksPath = a\\\n/b\n", Some("/ws/repo/a/b")),
            (
                "[core]\nhooksPath = first\n[core]\nhooksPath = last\n",
                Some("/ws/repo/last"),
            ),
            // Not core's, not this key, a boolean, or nothing usable.
            ("[core \"x\"]\nhooksPath = no\n", None),
            ("[alias]\nhooksPath = no\n", None),
            ("[core]\nhooksPathX = no\n", None),
            ("[core]\nhooksPath\n", None),
            ("[core]\nhooksPath = ~other/hooks\n", None),
            ("[core]\n# hooksPath = no\n", None),
            ("hooksPath = no\n", None),
        ];
        for (config, want) in cases {
            assert_eq!(
                hooks_path(config, wt, home),
                want.map(PathBuf::from),
                "{config:?}"
            );
        }
    }
}
