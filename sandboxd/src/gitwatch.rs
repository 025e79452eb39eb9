//! What a sandbox left in the git directory of a repository it could write
//! that git on the host would act on, besides the `config` and `hooks` a
//! profile protects: a `commondir` (git then takes config and hooks from
//! where it points), `config.worktree`, and the config, hooks and
//! `commondir` of each submodule (`modules/`) and linked worktree
//! (`worktrees/`). Missing files cannot be mounted read-only, so they are
//! compared before and after the exec: a `commondir` made or changed is
//! moved aside (no git command writes one into a repository's own git
//! directory), and every change is recorded and told to the client.
//!
//! Runs as root in directories the caller owns: each name is looked at
//! relative to the git directory's descriptor, never through a symlink,
//! and no file is read: a file is known by its inode, size and change
//! time, which every write, rename over it or chmod moves on.

use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries looked at in one git directory, at most (a repository with
/// hundreds of submodules is compared up to there).
const MAX_ENTRIES: usize = 4096;
/// How deep submodule names nest under `modules/` (a name may hold `/`).
const MAX_DEPTH: usize = 8;

/// The watched git directories of one exec, as they were before it ran.
#[derive(Debug, Default)]
pub struct GitWatch {
    dirs: Vec<Watched>,
}

#[derive(Debug)]
struct Watched {
    /// `ROOT/.git`, as the caller knows it.
    shown: PathBuf,
    fd: OwnedFd,
    seen: Snapshot,
}

/// Relative path in the git directory → what it was.
type Snapshot = BTreeMap<PathBuf, Print>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Print {
    File {
        ino: u64,
        size: i64,
        ctime_ns: i128,
        mode: u32,
    },
    Link(PathBuf),
    Other,
}

/// One thing the sandbox made or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    /// "created" or "changed".
    pub what: &'static str,
    /// Where a `commondir` was moved; `Err` says why it could not be.
    pub moved: Option<Result<PathBuf, String>>,
}

impl Change {
    /// The change for a person: what, and what it means for git.
    pub fn describe(&self) -> String {
        let path = self.path.display();
        match &self.moved {
            Some(Ok(to)) => format!(
                "the sandbox {} {path}, which points git at another directory's config and hooks: moved aside to {}",
                self.what,
                to.display()
            ),
            Some(Err(e)) => format!(
                "the sandbox {} {path}, which points git at another directory's config and hooks, and it could not be moved aside ({e}): remove it before running git there",
                self.what
            ),
            None => format!(
                "the sandbox {} {path}, which git on the host reads (config can name commands git runs, hooks are run): look at it before running git there",
                self.what
            ),
        }
    }
}

impl GitWatch {
    /// Looks at `ROOT/.git` of each writable root that has one (a
    /// directory, or a symlink to one) owned by `uid`.
    pub fn start(write_roots: &[PathBuf], uid: u32) -> GitWatch {
        let dirs = write_roots
            .iter()
            .filter_map(|root| {
                let shown = root.join(".git");
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                let fd = nix::fcntl::open(&shown, flags, Mode::empty()).ok()?;
                let owner = nix::sys::stat::fstat(fd.as_fd()).ok()?.st_uid;
                if owner != uid {
                    return None;
                }
                let seen = snapshot(&fd);
                Some(Watched { shown, fd, seen })
            })
            .collect();
        GitWatch { dirs }
    }

    /// Whether no git directory is watched.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// What changed since [`GitWatch::start`]; a changed `commondir` is
    /// moved to `commondir.sandboxd-ID`.
    pub fn changes(&self, id: &str) -> Vec<Change> {
        let mut out = Vec::new();
        for w in &self.dirs {
            let now = snapshot(&w.fd);
            for (rel, print) in &now {
                let what = match w.seen.get(rel) {
                    None => "created",
                    Some(before) if before != print => "changed",
                    Some(_) => continue,
                };
                let moved = (rel == Path::new("commondir")).then(|| {
                    let to = format!("commondir.sandboxd-{id}");
                    renameat(w.fd.as_fd(), "commondir", w.fd.as_fd(), to.as_str())
                        .map(|()| w.shown.join(&to))
                        .map_err(|e| e.to_string())
                });
                out.push(Change {
                    path: w.shown.join(rel),
                    what,
                    moved,
                });
            }
        }
        out
    }
}

/// The watched files of one git directory.
fn snapshot(gitdir: &OwnedFd) -> Snapshot {
    let mut s = Snapshot::new();
    let mut budget = MAX_ENTRIES;
    for name in ["commondir", "config.worktree"] {
        print_into(gitdir, Path::new(""), name, &mut s);
    }
    if let Some(modules) = open_dir(gitdir, "modules") {
        walk_modules(&modules, Path::new("modules"), 0, &mut budget, &mut s);
    }
    if let Some(worktrees) = open_dir(gitdir, "worktrees") {
        for (name, _) in entries(&worktrees, &mut budget) {
            if let Some(wt) = open_dir(&worktrees, &name) {
                let rel = Path::new("worktrees").join(&name);
                for file in ["commondir", "config.worktree"] {
                    print_into(&wt, &rel, file, &mut s);
                }
            }
        }
    }
    s
}

/// Under `modules/`: each submodule's `config`, `config.worktree`,
/// `commondir` and hooks, and the submodules named below it.
fn walk_modules(dir: &OwnedFd, rel: &Path, depth: usize, budget: &mut usize, s: &mut Snapshot) {
    if depth > MAX_DEPTH {
        return;
    }
    for (name, is_dir) in entries(dir, budget) {
        let n = name.as_bytes();
        if n == b"config" || n == b"config.worktree" || n == b"commondir" {
            print_into(dir, rel, &name, s);
        } else if n == b"hooks" {
            if let Some(hooks) = open_dir(dir, &name) {
                let hooks_rel = rel.join("hooks");
                for (hook, _) in entries(&hooks, budget) {
                    print_into(&hooks, &hooks_rel, &hook, s);
                }
            }
        } else if is_dir && !matches!(n, b"objects" | b"refs" | b"logs" | b"info" | b"lfs") {
            if let Some(sub) = open_dir(dir, &name) {
                walk_modules(&sub, &rel.join(&name), depth + 1, budget, s);
            }
        }
    }
}

/// `name` in `dir`, a directory, not through a symlink.
fn open_dir(dir: &OwnedFd, name: impl AsRef<OsStr>) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir.as_fd(), name.as_ref(), flags, Mode::empty()).ok()
}

/// The entries of `dir` (name, whether a directory), taking from `budget`.
fn entries(dir: &OwnedFd, budget: &mut usize) -> Vec<(std::ffi::OsString, bool)> {
    let Ok(d) = nix::dir::Dir::from_fd(match dir.try_clone() {
        Ok(fd) => fd,
        Err(_) => return Vec::new(),
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in d.into_iter().flatten() {
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let is_dir = e.file_type() == Some(nix::dir::Type::Directory);
        out.push((name.to_os_string(), is_dir));
    }
    out.sort();
    out
}

/// Records what `name` in `dir` is, if it exists.
fn print_into(dir: &OwnedFd, rel: &Path, name: impl AsRef<OsStr>, s: &mut Snapshot) {
    let name = name.as_ref();
    let print = match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(_) => return,
        Ok(st) => match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => Print::File {
                ino: st.st_ino,
                size: st.st_size,
                ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
                mode: st.st_mode,
            },
            SFlag::S_IFLNK => match readlinkat(dir.as_fd(), name) {
                Ok(target) => Print::Link(PathBuf::from(target)),
                Err(_) => Print::Other,
            },
            _ => Print::Other,
        },
    };
    s.insert(rel.join(name), print);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// What the watch reports, and what it moves, for each kind of change.
    #[test]
    fn changes_that_redirect_git_are_reported_and_commondir_moved_aside() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        let git = ws.join(".git");
        write(&git.join("HEAD"), "ref: refs/heads/main\n");
        write(&git.join("modules/a/config"), "[core]\n");
        write(&git.join("modules/a/hooks/pre-commit.sample"), "");
        write(&git.join("modules/a/objects/xx"), "");
        write(&git.join("worktrees/w/commondir"), "../..\n");
        let nothing = t.path().join("plain");
        std::fs::create_dir_all(&nothing).unwrap();

        let watch = GitWatch::start(&[ws.clone(), nothing], 0);
        assert!(watch.changes("0").is_empty(), "nothing changed yet");

        write(&git.join("commondir"), "../evil\n");
        write(&git.join("modules/a/config"), "[core]\nfsmonitor = x\n");
        write(&git.join("modules/a/hooks/post-checkout"), "");
        write(&git.join("modules/a/sub/b/config"), "");
        write(&git.join("modules/a/objects/yy"), "");
        write(&git.join("worktrees/w/commondir"), "/elsewhere\n");
        write(&git.join("config"), "[core]\n");
        symlink("/etc/passwd", git.join("config.worktree")).unwrap();

        let mut got: Vec<(String, &str, bool)> = watch
            .changes("ID")
            .into_iter()
            .map(|c| {
                let rel = c.path.strip_prefix(&git).unwrap().display().to_string();
                (rel, c.what, c.moved.is_some())
            })
            .collect();
        got.sort();
        let want = [
            ("commondir", "created", true),
            ("config.worktree", "created", false),
            ("modules/a/config", "changed", false),
            ("modules/a/hooks/post-checkout", "created", false),
            ("modules/a/sub/b/config", "created", false),
            ("worktrees/w/commondir", "changed", false),
        ];
        let want: Vec<(String, &str, bool)> = want
            .iter()
            .map(|(p, w, m)| (p.to_string(), *w, *m))
            .collect();
        assert_eq!(got, want);
        assert!(!git.join("commondir").exists());
        assert_eq!(
            std::fs::read_to_string(git.join("commondir.sandboxd-ID")).unwrap(),
            "../evil\n"
        );
        // A hook made executable is a change too.
        let watch = GitWatch::start(std::slice::from_ref(&ws), 0);
        assert!(
            GitWatch::start(std::slice::from_ref(&ws), 1000)
                .dirs
                .is_empty(),
            "not the caller's"
        );
        let hook = git.join("modules/a/hooks/post-checkout");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = watch.changes("2");
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].path.as_path(), c[0].what),
            (hook.as_path(), "changed")
        );
    }
}
