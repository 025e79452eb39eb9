//! The deny patterns (`deny_read`, `deny_write`) expanded on the host tree
//! before anything is mounted, into the paths to cover, to pin in place and
//! to make read-only. The walk runs as the caller and is bounded; it
//! refuses the exec rather than miss a match.

use super::MountError;
use crate::backend::spec::FsPlan;
use globset::{GlobBuilder, GlobSetBuilder};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Paths that deny patterns matched at start, as host paths.
#[derive(Debug, Default)]
pub struct Denied {
    pub read: Vec<PathBuf>,
    /// (outermost write root holding it, directory): the directory and those
    /// above it, below the root, are made mount points, so that no sandbox
    /// can rename them and leave a later exec's deny_read patterns matching
    /// nothing: the parent of every match, and of where a matched symlink
    /// leads.
    pub read_pinned: Vec<(PathBuf, PathBuf)>,
    /// deny_read matches inside a writable root that are symlinks: each is
    /// made a mount point itself (it can then not be renamed).
    pub read_links: Vec<PathBuf>,
    /// (outermost write root holding it, denied path); `exists` false for a
    /// literal path not there yet.
    pub write: Vec<(PathBuf, PathBuf, bool)>,
}

/// Most directory entries one pattern's walk may visit before giving up.
const WALK_LIMIT: usize = 200_000;
const WALK_DEPTH: usize = 64;
/// Walks of one pattern tried before a tree that keeps changing refuses the exec.
const WALK_TRIES: usize = 3;

/// Why a pattern's walk found no complete answer.
#[derive(Debug, thiserror::Error)]
enum WalkError {
    /// A directory went away or changed kind while it was searched (moved
    /// or removed by another process): what was found may miss a match.
    #[error("{} changed while it was searched for {pattern} ({error})", path.display())]
    Changed {
        path: PathBuf,
        pattern: String,
        error: nix::Error,
    },
    /// A match may be hidden from the walk, or it cannot go on.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for WalkError {
    fn from(why: String) -> Self {
        WalkError::Refused(why)
    }
}

/// A directory still to search: its name in `parent`, its path, its level.
struct Pending {
    parent: std::rc::Rc<nix::dir::Dir>,
    name: CString,
    path: PathBuf,
    level: usize,
}

/// Expands one absolute glob to existing paths; a literal pattern yields
/// itself (existing or not, the caller decides). Run as the caller: a
/// directory it cannot read is not searched, unless it is the caller's own
/// (which it could have made unreadable to hide a match from this walk and
/// readable again inside): then, as for a tree deeper than the walk goes,
/// the expansion fails rather than miss a match. Directories are opened
/// relative to their parent's descriptor, so no path length stops the
/// walk; any other error in a directory fails it too.
fn expand(pattern: &str) -> Result<(Vec<PathBuf>, bool), WalkError> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstatat, Mode};
    // SAFETY: geteuid has no preconditions (the caller's uid here).
    let caller = unsafe { libc::geteuid() };
    if let Some(literal) = literal_of(pattern) {
        let p = PathBuf::from(literal);
        if let Some(parent) = p.parent() {
            closed_on_the_way(parent, caller, 0o100, pattern)?;
        }
        let exists = p.symlink_metadata().is_ok();
        return Ok((vec![p], exists));
    }
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| e.to_string())?;
    let set = GlobSetBuilder::new()
        .add(glob)
        .build()
        .map_err(|e| e.to_string())?;
    let mut base = PathBuf::from("/");
    for comp in Path::new(pattern).components().skip(1) {
        match literal_of(&comp.as_os_str().to_string_lossy()) {
            Some(literal) => base.push(literal),
            None => break,
        }
    }
    // How many levels below `base` a match can be: with `**`, any (up to
    // the walk's bound); else as many as the pattern has there.
    let levels = match pattern.contains("**") {
        true => usize::MAX,
        false => Path::new(pattern).components().count() - base.components().count(),
    };
    closed_on_the_way(&base, caller, 0o500, pattern)?;
    let changed = |path: &Path, error| WalkError::Changed {
        path: path.to_path_buf(),
        pattern: pattern.to_string(),
        error,
    };
    let failed = |path: &Path, error: Errno| {
        WalkError::Refused(format!(
            "{} cannot be searched for {pattern} ({error})",
            path.display()
        ))
    };
    // Permission denied: the caller cannot look there inside either, unless
    // the directory is its own, which it may have closed to hide a match.
    let denied = |path: &Path, owner: Option<u32>, error: Errno| match owner == Some(caller) {
        true => Err(WalkError::Refused(format!(
            "{} cannot be searched for {pattern} ({error}); make it readable",
            path.display()
        ))),
        false => Ok(()),
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let base_dir = match nix::dir::Dir::open(&base, flags, Mode::empty()) {
        Ok(d) => d,
        // No such directory: nothing to find (a tree not made yet).
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok((Vec::new(), true)),
        Err(e @ (Errno::EACCES | Errno::EPERM)) => {
            let owner = base.metadata().ok().map(|m| m.uid());
            denied(&base, owner, e)?;
            return Ok((Vec::new(), true));
        }
        Err(e) => return Err(failed(&base, e)),
    };
    let mut out = Vec::new();
    let mut visited = 0usize;
    let mut stack: Vec<Pending> = Vec::new();
    let mut next = Some((base_dir, base, 0usize));
    loop {
        let (mut dir, path, level) = match next.take() {
            Some(first) => first,
            None => {
                let Some(p) = stack.pop() else { break };
                let opened = openat(
                    &*p.parent,
                    p.name.as_c_str(),
                    flags | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .and_then(nix::dir::Dir::from_fd);
                match opened {
                    Ok(d) => (d, p.path, p.level),
                    Err(e @ (Errno::EACCES | Errno::EPERM)) => {
                        let owner = fstatat(
                            &*p.parent,
                            p.name.as_c_str(),
                            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .ok()
                        .map(|st| st.st_uid);
                        denied(&p.path, owner, e)?;
                        continue;
                    }
                    Err(e @ (Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)) => {
                        return Err(changed(&p.path, e))
                    }
                    Err(e) => return Err(failed(&p.path, e)),
                }
            }
        };
        let mut subdirs = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| failed(&path, e))?;
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            visited += 1;
            if visited > WALK_LIMIT {
                return Err(WalkError::Refused(format!(
                    "more than {WALK_LIMIT} entries to search; narrow the pattern"
                )));
            }
            let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            if set.is_match(&child) {
                // Covered whole: nothing below it needs finding.
                out.push(child);
                continue;
            }
            let maybe_dir = matches!(entry.file_type(), Some(nix::dir::Type::Directory) | None);
            if level + 1 < levels && maybe_dir {
                subdirs.push((name.to_owned(), child));
            }
        }
        let dir = std::rc::Rc::new(dir);
        for (name, child) in subdirs {
            let st = match fstatat(
                &*dir,
                name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                // `dir` is not searchable, and not the caller's (its own
                // was refused when opened): the caller cannot reach it either.
                Err(Errno::EACCES | Errno::EPERM) => continue,
                Err(e @ Errno::ENOENT) => return Err(changed(&child, e)),
                Err(e) => return Err(failed(&child, e)),
            };
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                continue;
            }
            if let Some(why) = closed_dir(&child, st.st_mode, st.st_uid, caller, 0o500, pattern) {
                return Err(WalkError::Refused(why));
            }
            if level + 1 > WALK_DEPTH {
                return Err(WalkError::Refused(format!(
                    "{} is more than {WALK_DEPTH} levels deep to search for {pattern}",
                    child.display()
                )));
            }
            stack.push(Pending {
                parent: dir.clone(),
                name,
                path: child,
                level: level + 1,
            });
        }
    }
    Ok((out, true))
}

/// [`expand`], walked again when the tree changed under the walk.
fn expand_settled(pattern: &str) -> Result<(Vec<PathBuf>, bool), String> {
    let mut tries = 1;
    loop {
        match expand(pattern) {
            Err(WalkError::Changed { .. }) if tries < WALK_TRIES => tries += 1,
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

/// The text `s` (a pattern or one of its components) matches, when it is
/// literal: plain characters and the one-character classes
/// `globset::escape` writes for its special ones (`[*]`, `[[]`).
fn literal_of(s: &str) -> Option<String> {
    const SPECIAL: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '[' if cs.get(i + 2) == Some(&']') && SPECIAL.contains(&cs[i + 1]) => {
                out.push(cs[i + 1]);
                i += 3;
            }
            c if SPECIAL.contains(&c) => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Why `dir` (of `mode` and owner `uid`) stops the walk for `pattern`, if
/// it is a directory of the caller's own that lacks `need` (search, or list
/// and search): the caller could have closed it to hide a match, and could
/// open it again inside.
fn closed_dir(
    dir: &Path,
    mode: u32,
    uid: u32,
    caller: u32,
    need: u32,
    pattern: &str,
) -> Option<String> {
    let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
    (is_dir && uid == caller && mode & need != need).then(|| {
        format!(
            "{} cannot be searched for {pattern} (mode {:o}); make it readable",
            dir.display(),
            mode & 0o7777
        )
    })
}

/// Refuses when a directory of the caller's own on the way to `dir`, or
/// `dir` itself, lacks what looking there needs (search, `0o100`, for each
/// one above; `mode` for `dir`): the caller could have closed it to hide a
/// match from this walk and open it again inside. Symlinks are followed as
/// a lookup does; where another user's directory stops the way, the
/// caller could not see past it either, and nothing is refused.
fn closed_on_the_way(dir: &Path, caller: u32, mode: u32, pattern: &str) -> Result<(), String> {
    let mut at = PathBuf::from("/");
    let parts: Vec<_> = dir.components().skip(1).collect();
    for i in 0..=parts.len() {
        let need = if i == parts.len() { mode } else { 0o100 };
        let m = match std::fs::metadata(&at) {
            Ok(m) => m,
            // A symlink the caller cannot follow may lead through a
            // directory of its own it closed: refused, as that would be.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::ELOOP))
                    && at.symlink_metadata().is_ok_and(|l| l.is_symlink()) =>
            {
                return Err(format!(
                    "{} leads where {pattern} cannot be searched for ({e})",
                    at.display()
                ))
            }
            Err(_) => return Ok(()),
        };
        if let Some(why) = closed_dir(&at, m.mode(), m.uid(), caller, need, pattern) {
            return Err(why);
        }
        if let Some(p) = parts.get(i) {
            at.push(p);
        }
    }
    Ok(())
}

/// Anchors a relative pattern (`**/.env`) under each given root; absolute ones stay.
fn anchored(pattern: &str, roots: &[&Path]) -> Vec<String> {
    if pattern.starts_with('/') {
        return vec![pattern.to_string()];
    }
    roots
        .iter()
        .filter(|r| **r != Path::new("/"))
        .map(|r| {
            // The root as itself, not as a pattern (`proj[1]`).
            format!(
                "{}/{}",
                crate::backend::spec::glob_literal(r.display().to_string().trim_end_matches('/')),
                pattern
            )
        })
        .collect()
}

/// Expands `fs.deny_read` and `fs.deny_write` on the host tree (before mounting).
pub fn expand_denies(fs: &FsPlan) -> Result<Denied, MountError> {
    // Relative patterns are searched for under the writable roots only: the
    // caller's own trees, where such files appear; a walk of a system read
    // root (e.g. /usr) would hit the walk bound and refuse every start.
    let roots: Vec<&Path> = fs.write.iter().map(PathBuf::as_path).collect();
    let mut denied = Denied::default();
    for pat in &fs.deny_read {
        for p in anchored(pat, &roots) {
            let (found, exists) = expand_settled(&p).map_err(|error| MountError {
                step: "expand deny_read".into(),
                path: p.clone().into(),
                error,
            })?;
            // A literal path not there is nothing to hide; a walk's matches
            // exist (found by descriptor, whatever the length of their path).
            for f in found.into_iter().filter(|_| exists) {
                // A symlink is hidden where it leads (see `cover`): that
                // place is pinned too.
                let real = std::fs::canonicalize(&f).ok().filter(|r| *r != f);
                for dir in [f.parent(), real.as_deref().and_then(Path::parent)]
                    .into_iter()
                    .flatten()
                {
                    if let Some(root) = outermost_root(&fs.write, dir) {
                        denied.read_pinned.push((root.clone(), dir.to_path_buf()));
                    }
                }
                let is_link = f.symlink_metadata().is_ok_and(|m| m.is_symlink());
                if is_link && outermost_root(&fs.write, &f).is_some() {
                    denied.read_links.push(f.clone());
                }
                denied.read.push(f);
            }
        }
    }
    for pat in &fs.deny_write {
        for p in anchored(pat, &roots) {
            let (found, exists) = expand_settled(&p).map_err(|error| MountError {
                step: "expand deny_write".into(),
                path: p.clone().into(),
                error,
            })?;
            for f in found {
                // A match reached through a symlink (`.git` linking to the
                // real directory) is protected where it leads as well, so
                // that no parent of the real one can be renamed away either;
                // one not there yet, where its parent leads (`hooks` missing
                // from the real directory: that directory is then protected,
                // as for a `.git` that is no link).
                let real = match std::fs::canonicalize(&f) {
                    Ok(r) => Some(r),
                    Err(_) => f
                        .parent()
                        .and_then(|p| std::fs::canonicalize(p).ok())
                        .zip(f.file_name())
                        .map(|(p, name)| p.join(name)),
                }
                .filter(|r| *r != f);
                for f in std::iter::once(f).chain(real) {
                    // A writable root at or below a denied path (a narrower
                    // profile writing only `.git/hooks`) would make it
                    // writable: refused, as deny_write wins.
                    if let Some(r) = fs.write.iter().find(|r| r.starts_with(&f)) {
                        return Err(MountError {
                            step: "deny_write".into(),
                            path: r.clone(),
                            error: format!(
                                "a writable root at or below {}, which deny_write protects",
                                f.display()
                            ),
                        });
                    }
                    // Only matches inside a writable root matter.
                    if let Some(root) = outermost_root(&fs.write, &f) {
                        denied.write.push((root.clone(), f, exists));
                    }
                }
            }
        }
    }
    Ok(denied)
}

/// The outermost of the writable `roots` holding `p`: every directory
/// between it and `p` is made a mount point to pin `p` in place.
pub(super) fn outermost_root<'a>(roots: &'a [PathBuf], p: &Path) -> Option<&'a PathBuf> {
    roots
        .iter()
        .filter(|r| p.starts_with(r))
        .min_by_key(|r| r.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn globs_expand_bounded_and_anchor_relative_patterns() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/.env"), "").unwrap();
        std::fs::write(d.path().join(".env"), "").unwrap();
        std::fs::write(d.path().join("a/x.env"), "").unwrap();
        let root = d.path().to_path_buf();
        let fs = FsPlan {
            write: vec![root.clone()],
            deny_read: vec!["**/.env".into()],
            deny_write: vec![format!("{}/.git/hooks", root.display())],
            ..Default::default()
        };
        let mut denied = expand_denies(&fs).unwrap();
        denied.read.sort();
        assert_eq!(denied.read, vec![root.join(".env"), root.join("a/b/.env")]);
        assert_eq!(
            denied.write,
            vec![(root.clone(), root.join(".git/hooks"), false)]
        );
    }

    #[test]
    fn a_walk_finds_matches_past_the_path_length_limit() {
        use std::os::unix::fs::DirBuilderExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        // 18 levels of 250 bytes: made one level at a time from the last.
        let name = "d".repeat(250);
        let mut deep = root.clone();
        let mut fd = nix::fcntl::open(
            &root,
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        for _ in 0..18 {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()))
                .unwrap();
            fd = nix::fcntl::openat(
                &fd,
                name.as_str(),
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap();
            deep.push(&name);
        }
        std::fs::File::create(format!("/proc/self/fd/{}/.env", fd.as_raw_fd())).unwrap();
        assert!(deep.as_os_str().len() > libc::PATH_MAX as usize);
        let fs = FsPlan {
            write: vec![root.clone()],
            deny_read: vec!["**/.env".into()],
            ..Default::default()
        };
        let denied = expand_denies(&fs).unwrap();
        assert_eq!(denied.read, vec![deep.join(".env")]);
        assert!(denied.read_pinned.contains(&(root, deep)));
    }

    #[test]
    fn escaped_text_is_literal_and_a_root_named_like_a_glob_is_itself() {
        for (s, want) in [
            ("/a/b", Some("/a/b")),
            ("/p[[]1[]]", Some("/p[1]")),
            ("[*][?][{][}]", Some("*?{}")),
            ("a[\\]b", Some("a\\b")),
            ("*.env", None),
            ("a[12]", None),
            ("[!]x", None),
            ("{a,b}", None),
            ("a\\*", None),
        ] {
            assert_eq!(literal_of(s).as_deref(), want, "{s}");
        }
        // A workspace named `proj[1]`: its `.env` is found by a relative
        // pattern and by an absolute one with the name escaped (as templates are).
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj[1]\\b");
        std::fs::create_dir_all(root.join("s")).unwrap();
        std::fs::write(root.join("s/.env"), "").unwrap();
        std::fs::create_dir(d.path().join("proj1b")).unwrap();
        std::fs::write(d.path().join("proj1b/.env"), "").unwrap();
        let escaped = crate::backend::spec::glob_literal(&root.display().to_string());
        let fs = FsPlan {
            write: vec![root.clone()],
            deny_read: vec!["**/.env".into(), format!("{escaped}/s/.env")],
            ..Default::default()
        };
        let denied = expand_denies(&fs).unwrap();
        assert_eq!(denied.read, vec![root.join("s/.env"), root.join("s/.env")]);
    }
}
