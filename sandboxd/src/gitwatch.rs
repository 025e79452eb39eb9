//! What a sandbox left in the git directory of a repository it could write
//! that git on the host would act on: a `commondir` (git then takes config
//! and hooks from where it points), `config`, `config.worktree`, hooks
//! (a profile usually protects the workspace's own `config` and `hooks`,
//! but not those of other write roots) and `info/exclude` and
//! `info/attributes` (what `git status` hides, how files are read), the same of each submodule
//! (`modules/`) and linked worktree (`worktrees/`), of the write root's
//! repository and of those one directory below it, and the `.git` itself
//! made, replaced or (a `.git` file naming a git directory elsewhere)
//! rewritten. Missing files cannot be mounted read-only, so they are
//! compared before and after the exec: the repository's own `commondir`
//! made or changed, and any other changed to something else than git's
//! own `../..`, is moved aside (no git command writes one over an existing
//! repository's; `git worktree add` makes a new worktree's, which is only
//! reported), and every change is recorded and told to the client. Hooks
//! named `*.sample`, which git never runs, are not looked at.
//!
//! Runs as root in directories the caller owns: each name is looked at
//! relative to the git directory's descriptor, never through a symlink,
//! and no file is read: a file is known by its inode, size and change
//! time, which every write, rename over it or chmod moves on.

use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries looked at in one git directory, at most: past them the
/// comparison is reported incomplete.
const MAX_ENTRIES: usize = 16384;
/// How deep directories nest under `modules/` (a submodule's name may hold
/// `/`, and each has a `modules/` of its own): deeper is reported incomplete.
const MAX_DEPTH: usize = 16;
/// Directories of a git directory that hold no file git runs or takes
/// settings from (objects, refs, logs, ...).
const INERT: [&[u8]; 6] = [
    b"objects",
    b"refs",
    b"logs",
    b"info",
    b"lfs",
    b"packed-refs",
];

/// The watched write roots of one exec, as they were before it ran.
#[derive(Debug, Default)]
pub struct GitWatch {
    roots: Vec<Watched>,
}

#[derive(Debug)]
struct Watched {
    /// `ROOT/.git`, as the caller knows it.
    shown: PathBuf,
    root: OwnedFd,
    /// What `.git` was, `None` when missing.
    identity: Option<Identity>,
    /// The git directory and what was in it, when it is the caller's.
    dir: Option<(OwnedFd, Snapshot)>,
}

/// Device and inode of `.git`, and for a file (not a directory, whose
/// times move with every entry git makes in it) its size and change time:
/// a `.git` file rewritten in place names another git directory.
type Identity = (u64, u64, Option<(i64, i128)>);

/// Relative path in the git directory → what it was.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    prints: BTreeMap<PathBuf, Print>,
    /// Not everything was looked at (too many entries, or too deep).
    incomplete: bool,
}

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
    /// "created", "changed", "replaced" (the `.git` itself) or
    /// "not fully compared".
    pub what: &'static str,
    /// Where a `commondir` was moved; `Err` says why it could not be.
    pub moved: Option<Result<PathBuf, String>>,
}

impl Change {
    /// The change for a person: what, and what it means for git.
    pub fn describe(&self) -> String {
        let path = self.path.display();
        let what = self.what;
        match &self.moved {
            Some(Ok(to)) => format!(
                "{path} was {what} while the sandbox ran; it points git at another directory's config and hooks: moved aside to {}",
                to.display()
            ),
            Some(Err(e)) => format!(
                "{path} was {what} while the sandbox ran; it points git at another directory's config and hooks, and it could not be moved aside ({e}): remove it before running git there"
            ),
            None if what == "not fully compared" => format!(
                "{path} holds too many entries, or too deep, to be compared whole: look at its config, hooks and commondir files (modules/ and worktrees/ too) before running git there"
            ),
            None => format!(
                "{path} was {what} while the sandbox ran; git on the host reads it (config can name commands git runs, hooks are run, info/ files hide files from git status): look at it before running git there"
            ),
        }
    }
}

impl GitWatch {
    /// Looks at `ROOT/.git` of each writable root: what it is, and, for a
    /// directory (or a symlink to one) owned by `uid`, what is in it.
    /// Repositories one level below (`ROOT/NAME/.git`, a checkout of
    /// several repositories) are watched the same way, up to [`MAX_NESTED`]
    /// a root.
    pub fn start(write_roots: &[PathBuf], uid: u32) -> GitWatch {
        let mut roots = Vec::new();
        for root in write_roots {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let Ok(root_fd) = nix::fcntl::open(root, flags, Mode::empty()) else {
                continue;
            };
            let mut listed = Snapshot::default();
            let mut budget = MAX_LISTED;
            // A directory with a `.git` is opened (not through a symlink)
            // and looked at again; the others cost one lookup each.
            let nested: Vec<(OsString, OwnedFd)> = entries(&root_fd, &mut budget, &mut listed)
                .into_iter()
                .filter(|(name, is_dir)| *is_dir && name != ".git")
                .filter(|(name, _)| {
                    let git = Path::new(name).join(".git");
                    fstatat(root_fd.as_fd(), &git, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
                })
                .filter_map(|(name, _)| open_dir(&root_fd, &name).map(|fd| (name, fd)))
                .filter(|(_, fd)| identity(fd).is_some())
                .take(MAX_NESTED)
                .collect();
            roots.push(watch(root.join(".git"), root_fd, uid));
            for (name, fd) in nested {
                roots.push(watch(root.join(name).join(".git"), fd, uid));
            }
        }
        GitWatch { roots }
    }

    /// Whether comparing reads directories (a git directory of the
    /// caller's is watched), rather than only looking `.git` up.
    pub fn reads_dirs(&self) -> bool {
        self.roots.iter().any(|w| w.dir.is_some())
    }

    /// What changed since [`GitWatch::start`]; a `commondir` made or
    /// changed is moved to `commondir.sandboxd-ID` beside it.
    pub fn changes(&self, id: &str) -> Vec<Change> {
        let mut out = Vec::new();
        for w in &self.roots {
            let now = identity(&w.root);
            if now != w.identity {
                let what = match (w.identity, now) {
                    (None, _) => "created",
                    (Some(_), None) => continue,
                    (Some(a), Some(b)) if (a.0, a.1) == (b.0, b.1) => "changed",
                    (Some(_), Some(_)) => "replaced",
                };
                out.push(Change {
                    path: w.shown.clone(),
                    what,
                    moved: None,
                });
                continue;
            }
            let Some((fd, seen)) = &w.dir else { continue };
            let now = snapshot(fd);
            for (rel, print) in &now.prints {
                let what = match seen.prints.get(rel) {
                    None => "created",
                    Some(before) if before != print => "changed",
                    Some(_) => continue,
                };
                // A new worktree's, or one saying what git writes, is git's
                // own (`git worktree add`, or `remove` and `add` again).
                let own = rel == Path::new("commondir");
                let moved = (rel.file_name() == Some(OsStr::new("commondir"))
                    && (own || (what == "changed" && !says_gits_own(fd, rel))))
                .then(|| move_aside(fd, rel, id, &w.shown));
                out.push(Change {
                    path: w.shown.join(rel),
                    what,
                    moved,
                });
            }
            if now.incomplete || seen.incomplete {
                out.push(Change {
                    path: w.shown.clone(),
                    what: "not fully compared",
                    moved: None,
                });
            }
        }
        out
    }
}

/// Entries of a write root looked at for repositories below it.
const MAX_LISTED: usize = 1024;
/// Repositories below one write root watched, at most.
const MAX_NESTED: usize = 16;

/// `root`'s `.git` as it is now, shown as `shown`.
fn watch(shown: PathBuf, root: OwnedFd, uid: u32) -> Watched {
    let identity = identity(&root);
    let dir = open_gitdir(&root)
        .filter(|fd| fstat(fd.as_fd()).is_ok_and(|st| st.st_uid == uid))
        .map(|fd| {
            let seen = snapshot(&fd);
            (fd, seen)
        });
    Watched {
        shown,
        root,
        identity,
        dir,
    }
}

/// What `.git` in `root` is (the link itself if it is one).
fn identity(root: &OwnedFd) -> Option<Identity> {
    let st = fstatat(root.as_fd(), ".git", AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let times = (!dir).then(|| (st.st_size, ctime_ns(&st)));
    Some((st.st_dev, st.st_ino, times))
}

fn ctime_ns(st: &nix::sys::stat::FileStat) -> i128 {
    i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec)
}

/// `.git` in `root`, a directory or a symlink to one.
fn open_gitdir(root: &OwnedFd) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    openat(root.as_fd(), ".git", flags, Mode::empty()).ok()
}

/// Renames `rel` (a `commondir`) in the git directory to
/// `commondir.sandboxd-ID` in the same directory.
fn move_aside(gitdir: &OwnedFd, rel: &Path, id: &str, shown: &Path) -> Result<PathBuf, String> {
    let to = format!("commondir.sandboxd-{id}");
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = if parent.as_os_str().is_empty() {
        gitdir.try_clone().map_err(|e| e.to_string())?
    } else {
        open_beneath(gitdir, parent).ok_or("its directory could not be opened")?
    };
    renameat(dir.as_fd(), "commondir", dir.as_fd(), to.as_str()).map_err(|e| e.to_string())?;
    Ok(shown.join(parent).join(to))
}

/// Whether `rel` (a linked worktree's or submodule's `commondir`) holds
/// what git writes there: `../..`, the repository's own git directory.
fn says_gits_own(gitdir: &OwnedFd, rel: &Path) -> bool {
    let Some(dir) = rel.parent().and_then(|p| open_beneath(gitdir, p)) else {
        return false;
    };
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let Ok(fd) = openat(dir.as_fd(), "commondir", flags, Mode::empty()) else {
        return false;
    };
    crate::backend::linux::paths::read_small(fd.into(), 64)
        .is_some_and(|text| text.trim_end() == "../..")
}

/// `rel` below `dir`, each directory opened without following a symlink.
fn open_beneath(dir: &OwnedFd, rel: &Path) -> Option<OwnedFd> {
    let mut fd = dir.try_clone().ok()?;
    for c in rel.components() {
        fd = open_dir(&fd, c.as_os_str())?;
    }
    Some(fd)
}

/// The watched files of one git directory: its own, its linked
/// worktrees', then its submodules'.
fn snapshot(gitdir: &OwnedFd) -> Snapshot {
    let mut s = Snapshot::default();
    let mut budget = MAX_ENTRIES;
    own_files(gitdir, Path::new(""), &mut budget, &mut s);
    if let Some(worktrees) = open_dir(gitdir, "worktrees") {
        for (name, _) in entries(&worktrees, &mut budget, &mut s) {
            if let Some(wt) = open_dir(&worktrees, &name) {
                let rel = Path::new("worktrees").join(&name);
                for file in ["commondir", "config.worktree"] {
                    print_into(&wt, &rel, file, &mut s);
                }
            }
        }
    }
    if let Some(modules) = open_dir(gitdir, "modules") {
        walk_modules(&modules, Path::new("modules"), 0, &mut budget, &mut s);
    }
    s
}

/// A git directory's `config`, `config.worktree`, `commondir`, hooks (and
/// `hooks` and `info` themselves, when no directory), and the `info/` files that change what git shows (`exclude` hides new
/// files from `git status`) and how it reads files (`attributes`).
fn own_files(dir: &OwnedFd, rel: &Path, budget: &mut usize, s: &mut Snapshot) {
    for file in ["config", "config.worktree", "commondir"] {
        print_into(dir, rel, file, s);
    }
    let (info, hooks) = (open_dir(dir, "info"), open_dir(dir, "hooks"));
    // Not directories, what they are counts: a symlink leads git elsewhere,
    // to files not looked at below.
    for (name, opened) in [("info", &info), ("hooks", &hooks)] {
        if opened.is_none() {
            print_into(dir, rel, name, s);
        }
    }
    if let Some(info) = info {
        for file in ["exclude", "attributes"] {
            print_into(&info, &rel.join("info"), file, s);
        }
    }
    if let Some(hooks) = hooks {
        let hooks_rel = rel.join("hooks");
        for (hook, _) in entries(&hooks, budget, s) {
            if !hook.as_bytes().ends_with(b".sample") {
                print_into(&hooks, &hooks_rel, &hook, s);
            }
        }
    }
}

/// Under `modules/`: each submodule's git directory (one holding `HEAD`)
/// with [`own_files`] and its own `modules/`, and the directories of
/// submodule names holding `/`.
fn walk_modules(dir: &OwnedFd, rel: &Path, depth: usize, budget: &mut usize, s: &mut Snapshot) {
    if depth > MAX_DEPTH {
        s.incomplete = true;
        return;
    }
    let listed = entries(dir, budget, s);
    let gitdir = listed.iter().any(|(n, _)| n == "HEAD");
    if gitdir {
        own_files(dir, rel, budget, s);
    }
    for (name, is_dir) in listed {
        let n = name.as_bytes();
        if !is_dir || n == b"hooks" || (gitdir && INERT.contains(&n)) {
            continue;
        }
        if let Some(sub) = open_dir(dir, &name) {
            walk_modules(&sub, &rel.join(&name), depth + 1, budget, s);
        }
    }
}

/// `name` in `dir`, a directory, not through a symlink.
fn open_dir(dir: &OwnedFd, name: impl AsRef<OsStr>) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir.as_fd(), name.as_ref(), flags, Mode::empty()).ok()
}

/// The entries of `dir` (name, whether a directory), taking from `budget`;
/// past it the snapshot is incomplete.
fn entries(dir: &OwnedFd, budget: &mut usize, s: &mut Snapshot) -> Vec<(OsString, bool)> {
    let Some(d) = dir
        .try_clone()
        .ok()
        .and_then(|fd| nix::dir::Dir::from_fd(fd).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in d.into_iter().flatten() {
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        if *budget == 0 {
            s.incomplete = true;
            break;
        }
        *budget -= 1;
        let is_dir = match e.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            // Some file systems do not say: ask.
            None => fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }),
        };
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
                ctime_ns: ctime_ns(&st),
                mode: st.st_mode,
            },
            SFlag::S_IFLNK => match readlinkat(dir.as_fd(), name) {
                Ok(target) => Print::Link(PathBuf::from(target)),
                Err(_) => Print::Other,
            },
            _ => Print::Other,
        },
    };
    s.prints.insert(rel.join(name), print);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// (path below `git`, what, moved aside) of each change.
    fn seen(changes: Vec<Change>, git: &Path) -> Vec<(String, &'static str, bool)> {
        let mut got: Vec<_> = changes
            .into_iter()
            .map(|c| {
                let rel = c.path.strip_prefix(git).unwrap().display().to_string();
                (rel, c.what, c.moved.is_some_and(|m| m.is_ok()))
            })
            .collect();
        got.sort();
        got
    }

    /// A checkout of several repositories: those one level below a write
    /// root are watched too, its own `.git` or none.
    #[test]
    fn repositories_below_a_write_root_are_watched() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        for repo in ["a", "b"] {
            write(
                &src.join(format!("{repo}/.git/HEAD")),
                "ref: refs/heads/main\n",
            );
        }
        write(&src.join("plain/file"), "");
        let watch = GitWatch::start(std::slice::from_ref(&src), 0);
        write(&src.join("a/.git/hooks/pre-commit"), "");
        write(&src.join("b/.git/commondir"), "../evil\n");
        write(&src.join("plain/.git/config"), "");
        let got = seen(watch.changes("5"), &src);
        assert_eq!(
            got,
            [
                ("a/.git/hooks/pre-commit".to_string(), "created", false),
                ("b/.git/commondir".to_string(), "created", true),
            ]
        );
        assert!(src.join("b/.git/commondir.sandboxd-5").exists());
    }

    /// A repository's `hooks` or `info` swapped for a symlink to files of
    /// the sandbox's making is reported, as is one made where there was
    /// none.
    #[test]
    fn hooks_or_info_made_a_symlink_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        for repo in ["a", "b"] {
            write(&src.join(format!("{repo}/.git/HEAD")), "");
        }
        write(&src.join("a/.git/hooks/pre-commit.sample"), "");
        write(&src.join("a/.git/info/exclude"), "");
        let watch = GitWatch::start(std::slice::from_ref(&src), 0);
        write(&src.join("evil/post-checkout"), "");
        write(&src.join("evil/exclude"), "evil.sh\n");
        for dir in ["a/.git/hooks", "a/.git/info"] {
            std::fs::rename(src.join(dir), src.join(format!("{dir}.old"))).unwrap();
            symlink("../../evil", src.join(dir)).unwrap();
        }
        symlink("../../evil", src.join("b/.git/hooks")).unwrap();
        assert_eq!(
            seen(watch.changes("6"), &src),
            [
                ("a/.git/hooks".to_string(), "created", false),
                ("a/.git/info".to_string(), "created", false),
                ("b/.git/hooks".to_string(), "created", false),
            ]
        );
    }

    /// What the watch reports, and what it moves, for each kind of change.
    #[test]
    fn changes_that_redirect_git_are_reported_and_commondirs_moved_aside() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        let git = ws.join(".git");
        write(&git.join("HEAD"), "ref: refs/heads/main\n");
        write(&git.join("hooks/pre-commit.sample"), "");
        write(
            &git.join("info/exclude"),
            "# git ls-files --others --exclude-from=.git/info/exclude\n",
        );
        for m in ["a", "info"] {
            write(&git.join(format!("modules/{m}/HEAD")), "");
            write(&git.join(format!("modules/{m}/config")), "[core]\n");
        }
        write(&git.join("modules/a/hooks/pre-commit.sample"), "");
        write(&git.join("modules/a/objects/xx"), "");
        write(&git.join("worktrees/w/commondir"), "../..\n");
        write(&git.join("worktrees/again/commondir"), "../..\n");
        let bare = t.path().join("bare");
        std::fs::create_dir_all(&bare).unwrap();

        let watch = GitWatch::start(&[ws.clone(), bare.clone()], 0);
        assert!(watch.changes("0").is_empty(), "nothing changed yet");

        write(&git.join("commondir"), "../evil\n");
        write(&git.join("config"), "[core]\n\tfsmonitor = x\n");
        write(&git.join("hooks/pre-commit"), "");
        write(&git.join("info/exclude"), "evil.sh\n");
        write(&git.join("info/attributes"), "* -diff\n");
        write(&git.join("modules/a/config"), "[core]\n\tfsmonitor = x\n");
        write(
            &git.join("modules/info/config"),
            "[core]\n\tfsmonitor = x\n",
        );
        write(&git.join("modules/a/hooks/post-checkout"), "");
        write(&git.join("modules/a/modules/b/HEAD"), "");
        write(&git.join("modules/a/modules/b/commondir"), "/x\n");
        write(&git.join("modules/a/objects/yy"), "");
        write(&git.join("worktrees/w/commondir"), "/elsewhere\n");
        write(&git.join("worktrees/new/commondir"), "../..\n");
        // Removed and added again (`git worktree remove`, `add`): git's own.
        std::fs::remove_file(git.join("worktrees/again/commondir")).unwrap();
        write(&git.join("worktrees/again/commondir"), "../..\n");
        write(&git.join("hooks/post-update.sample"), "");
        symlink("/etc/passwd", git.join("config.worktree")).unwrap();
        write(&bare.join(".git/config"), "");

        let want = [
            ("commondir", "created", true),
            ("config", "created", false),
            ("config.worktree", "created", false),
            ("hooks/pre-commit", "created", false),
            ("info/attributes", "created", false),
            ("info/exclude", "changed", false),
            ("modules/a/config", "changed", false),
            ("modules/a/hooks/post-checkout", "created", false),
            // Made with a new submodule or worktree: reported, left.
            ("modules/a/modules/b/commondir", "created", false),
            ("modules/info/config", "changed", false),
            ("worktrees/again/commondir", "changed", false),
            ("worktrees/new/commondir", "created", false),
            ("worktrees/w/commondir", "changed", true),
        ];
        let changes = watch.changes("ID");
        let (in_bare, in_ws): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|c| c.path.starts_with(&bare));
        let want: Vec<(String, &str, bool)> = want
            .iter()
            .map(|(p, w, m)| (p.to_string(), *w, *m))
            .collect();
        assert_eq!(seen(in_ws, &git), want);
        // A `.git` made where there was none.
        assert_eq!(
            seen(in_bare, &bare),
            [(".git".to_string(), "created", false)]
        );
        assert!(!git.join("commondir").exists());
        assert_eq!(
            std::fs::read_to_string(git.join("commondir.sandboxd-ID")).unwrap(),
            "../evil\n"
        );
        assert!(git.join("worktrees/w/commondir.sandboxd-ID").exists());

        // A `.git` file (a linked worktree's) rewritten in place.
        let linked = t.path().join("linked");
        write(&linked.join(".git"), "gitdir: /a/.git/worktrees/w\n");
        let watch = GitWatch::start(std::slice::from_ref(&linked), 0);
        std::fs::write(linked.join(".git"), "gitdir: /elsewhere/evil\n").unwrap();
        assert_eq!(
            seen(watch.changes("1"), &linked),
            [(".git".to_string(), "changed", false)]
        );

        // A hook made executable is a change too.
        let watch = GitWatch::start(std::slice::from_ref(&ws), 0);
        assert!(
            GitWatch::start(std::slice::from_ref(&ws), 1000).roots[0]
                .dir
                .is_none(),
            "not the caller's"
        );
        let hook = git.join("modules/a/hooks/post-checkout");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            seen(watch.changes("2"), &git),
            [(
                "modules/a/hooks/post-checkout".to_string(),
                "changed",
                false
            )]
        );

        // The `.git` moved away and another made in its place.
        let watch = GitWatch::start(std::slice::from_ref(&ws), 0);
        std::fs::rename(&git, ws.join("old")).unwrap();
        write(&git.join("config"), "");
        assert_eq!(
            seen(watch.changes("3"), &ws),
            [(".git".to_string(), "replaced", false)]
        );

        // Past its entries, a comparison says it is incomplete.
        for i in 0..=MAX_ENTRIES {
            std::fs::create_dir_all(git.join(format!("modules/m{i}"))).unwrap();
        }
        let watch = GitWatch::start(std::slice::from_ref(&ws), 0);
        let got = seen(watch.changes("4"), &ws);
        assert_eq!(got, [(".git".to_string(), "not fully compared", false)]);
    }
}
