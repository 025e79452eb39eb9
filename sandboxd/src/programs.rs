//! Where a sandbox will find a command given by a bare name, so that a
//! `commands.allow` rule is applied only to a program the sandbox cannot
//! have made. An allow rule names a tool (`ls`, `git status`); a PATH that
//! leads through the workspace (or a program the caller could have
//! replaced from an earlier sandbox) would run something else under its name.
//!
//! Reads the host's file system (as root, stat only): the sandbox sees the
//! host's directories read-only, so the host's view is the sandbox's except
//! where it can write, which is treated as unknown.

use crate::backend::spec::DEFAULT_PATH;
use crate::identity::Caller;
use crate::policy::narrow::covers;
use crate::policy::EffectivePolicy;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A sandbox's PATH and what it can write, for [`Programs::made_by_sandbox`].
#[derive(Debug, Clone)]
pub struct Programs {
    /// PATH's entries in search order (an empty one is `.`).
    path: Vec<String>,
    /// Directories the sandbox can write, resolved on the host.
    writable: Vec<PathBuf>,
    /// Roots the sandbox sees; candidates outside them are not found there.
    readable: Vec<PathBuf>,
    /// `deny_read` patterns: what they cover is hidden from the sandbox.
    hidden: Vec<String>,
    /// Whose earlier sandboxes could have written a file; `None` for root,
    /// whose sandboxes keep no capability to write what it owns.
    owner: Option<Owner>,
}

#[derive(Debug, Clone)]
struct Owner {
    uid: u32,
    gids: Vec<u32>,
}

impl Programs {
    /// The lookup an exec under `policy` makes, with `more_writable` (write
    /// roots it is about to be granted) writable too.
    pub fn new(policy: &EffectivePolicy, caller: &Caller, more_writable: &[PathBuf]) -> Programs {
        let path = policy
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let sandbox_only = [Path::new("/dev/shm")]
            .into_iter()
            .chain(policy.private_tmp.then_some(Path::new("/tmp")));
        let writable = policy
            .write
            .iter()
            .chain(more_writable)
            .map(PathBuf::as_path)
            .chain(sandbox_only)
            .map(resolved)
            .collect();
        let owner = (caller.uid != 0).then(|| Owner {
            uid: caller.uid,
            gids: std::iter::once(caller.gid)
                .chain(caller.groups.iter().copied())
                .collect(),
        });
        Programs {
            path: path
                .split(':')
                .map(|d| if d.is_empty() { "." } else { d }.to_string())
                .collect(),
            writable,
            readable: policy.read.iter().chain(&policy.write).cloned().collect(),
            hidden: policy.deny_read.clone(),
            owner,
        }
    }

    /// Why `name` may run a program the sandbox could have made, or `None`
    /// when it is found, before any PATH entry the sandbox can write, in a
    /// file that neither the sandbox nor the caller can change (or not at
    /// all). Mirrors the init's search: the first executable candidate.
    pub fn made_by_sandbox(&self, name: &str) -> Option<String> {
        if name.contains('/') {
            return None;
        }
        for entry in &self.path {
            let dir = Path::new(entry);
            if !dir.is_absolute() {
                return Some(format!(
                    "`{name}` is looked up in PATH entry {entry:?}, relative to a directory the sandbox can write"
                ));
            }
            let real = resolved(dir);
            if self.is_writable(&real) {
                return Some(format!(
                    "`{name}` is looked up in {entry} (PATH), which the sandbox can write"
                ));
            }
            let candidate = dir.join(name);
            if !self.sees(&candidate) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            if !meta.is_file() || meta.mode() & 0o111 == 0 {
                continue;
            }
            let program = resolved(&candidate);
            if self.is_writable(&program) {
                return Some(format!(
                    "`{name}` is {}, which the sandbox can write",
                    program.display()
                ));
            }
            return self.changeable_by_caller(&program).map(|p| {
                format!(
                    "`{name}` is {}, and {} can be changed by the caller",
                    program.display(),
                    p.display()
                )
            });
        }
        None
    }

    fn is_writable(&self, real: &Path) -> bool {
        self.writable.iter().any(|w| real.starts_with(w))
    }

    fn sees(&self, path: &Path) -> bool {
        self.readable.iter().any(|r| path.starts_with(r))
            && !self.hidden.iter().any(|h| covers(h, path))
    }

    /// The first of `program` and its directories the caller could change
    /// (an earlier sandbox of theirs could have, had one of its roots
    /// covered it): one they own (they may chmod it), or one writable by a
    /// group of theirs or by all. A sticky directory (`/tmp`) lets them
    /// change only their own entries, which the walk meets on its own.
    fn changeable_by_caller(&self, program: &Path) -> Option<PathBuf> {
        let owner = self.owner.as_ref()?;
        program.ancestors().find_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            let mode = m.mode();
            let sticky = m.is_dir() && mode & 0o1000 != 0;
            let changeable = m.uid() == owner.uid
                || (!sticky && owner.gids.contains(&m.gid()) && mode & 0o020 != 0)
                || (!sticky && mode & 0o002 != 0);
            changeable.then(|| p.to_path_buf())
        })
    }
}

/// `path` (absolute) with its symlinks resolved as far as it exists, the
/// rest taken as written.
fn resolved(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => {
                out.push(n);
                if let Ok(real) = std::fs::canonicalize(&out) {
                    out = real;
                }
            }
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// `dir/name`, a file with these permission bits.
    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn programs(path: &[&Path], writable: &Path, owner: Option<u32>) -> Programs {
        Programs {
            path: path.iter().map(|p| p.display().to_string()).collect(),
            writable: vec![resolved(writable)],
            readable: vec![PathBuf::from("/")],
            hidden: Vec::new(),
            owner: owner.map(|uid| Owner {
                uid,
                gids: vec![uid],
            }),
        }
    }

    /// Where each PATH leads `prog`, under a workspace the sandbox writes
    /// and a system directory it cannot (root's, 0755), as uid 1000.
    #[test]
    fn a_name_is_doubted_where_the_sandbox_or_its_caller_could_have_placed_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (ws, sys) = (root.join("ws"), root.join("sys"));
        file(&ws.join("bin"), "prog", 0o755);
        file(&sys, "prog", 0o755);
        file(&sys, "plain", 0o644);
        file(&ws.join("bin"), "plain", 0o755);
        // A directory of the caller's, outside this sandbox's roots.
        let home = root.join("home");
        file(&home, "prog", 0o755);
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
        symlink(ws.join("bin"), root.join("link")).unwrap();
        let (wsbin, link) = (ws.join("bin"), root.join("link"));
        let cases: &[(&[&Path], &str, Option<&str>)] = &[
            (&[&sys, &wsbin], "prog", None),
            (&[&wsbin, &sys], "prog", Some("which the sandbox can write")),
            // Not there now, but the sandbox may put it there first.
            (&[&wsbin, &sys], "none", Some("which the sandbox can write")),
            (&[&sys], "none", None),
            (&[Path::new("bin"), &sys], "prog", Some("relative")),
            (&[&link, &sys], "prog", Some("which the sandbox can write")),
            // Not executable: the search goes on, as the init's does.
            (
                &[&sys, &wsbin],
                "plain",
                Some("which the sandbox can write"),
            ),
            (&[&home, &sys], "prog", Some("can be changed by the caller")),
            (&[Path::new("/nonexistent"), &sys], "prog", None),
            (&[&sys], "a/prog", None),
        ];
        for (path, name, why) in cases {
            let got = programs(path, &ws, Some(1000)).made_by_sandbox(name);
            match (why, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{path:?} {name}: want {why:?}, got {got:?}"),
            }
        }
        // Root's own files are no one else's to change.
        assert_eq!(
            programs(&[&home, &sys], &ws, None).made_by_sandbox("prog"),
            None
        );
        // What the sandbox cannot see, its init does not find either.
        let mut hiding = programs(&[&sys, &wsbin], &ws, Some(1000));
        hiding.hidden = vec![format!("{}/**", sys.display()), sys.display().to_string()];
        assert!(hiding.made_by_sandbox("prog").is_some());
    }
}
