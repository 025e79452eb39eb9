//! Where a sandbox will find a command, so that a `commands.allow` rule is
//! applied only to a program the sandbox cannot have made. An allow rule
//! names a tool (`ls`, `git status`); a PATH that leads through the
//! workspace, a program given by a path there, or one the caller could have
//! replaced from an earlier sandbox would run something else under its name.
//!
//! Reads the host's file system as the caller (stat and access checks
//! only), as the sandbox's init searches PATH as the caller: the sandbox
//! sees the host's directories read-only, so the host's view is the
//! sandbox's except where it can write, which is treated as unknown, and
//! the trees it has its own of (`/proc`, `/dev`, `/sys`).

use crate::backend::linux::paths;
use crate::backend::spec::{Credentials, DEFAULT_PATH};
use crate::identity::Caller;
use crate::policy::narrow::covers;
use crate::policy::EffectivePolicy;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// PATH entries searched at most; past them every name is doubted.
const MAX_ENTRIES: usize = 64;

/// Trees the sandbox has its own of: what the daemon sees there is not
/// what the command finds (`/proc/self/cwd` is the command's cwd).
const OWN_TREES: [&str; 3] = ["/proc", "/dev", "/sys"];

/// A sandbox's PATH and what it can write, for [`Programs::made_by_sandbox`].
#[derive(Debug)]
pub struct Programs {
    /// PATH's entries in search order (an empty one is `.`).
    path: Vec<String>,
    /// Directories the sandbox can write, resolved on the host.
    writable: Vec<PathBuf>,
    /// Roots the sandbox sees; candidates outside them are not found there.
    readable: Vec<PathBuf>,
    /// `deny_read` patterns: what they cover is hidden from the sandbox.
    hidden: Vec<String>,
    /// The caller, as whom the lookup is made.
    creds: Credentials,
    /// Answers so far, by name.
    seen: RefCell<HashMap<String, Option<String>>>,
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
        Programs {
            path: path
                .split(':')
                .map(|d| if d.is_empty() { "." } else { d }.to_string())
                .collect(),
            writable,
            readable: policy.read.iter().chain(&policy.write).cloned().collect(),
            hidden: policy.deny_read.clone(),
            creds: Credentials {
                uid: caller.uid,
                gid: caller.gid,
                groups: caller.groups.clone(),
            },
            seen: RefCell::new(HashMap::new()),
        }
    }

    /// Why `command` (a bare name, or a path) may run a program the sandbox
    /// could have made, or `None`: a name found, before any PATH entry the
    /// sandbox can write, in a file that neither the sandbox nor the caller
    /// can change (or not found at all). Mirrors the init's search, as the
    /// caller: the first candidate the caller may execute.
    pub fn made_by_sandbox(&self, command: &str) -> Option<String> {
        if let Some(known) = self.seen.borrow().get(command) {
            return known.clone();
        }
        let why = paths::as_caller(&self.creds, || self.look(command)).unwrap_or_else(|e| {
            Some(format!(
                "`{command}` could not be looked up as the caller ({e})"
            ))
        });
        self.seen
            .borrow_mut()
            .insert(command.to_string(), why.clone());
        why
    }

    fn look(&self, command: &str) -> Option<String> {
        if command.contains('/') {
            if let Some(why) = unplain(command) {
                return Some(format!("`{command}` is {why}"));
            }
            let (program, links) = resolve(Path::new(command));
            return self
                .moved_link(command, &links)
                .or_else(|| self.judge_program(command, &program));
        }
        if self.path.len() > MAX_ENTRIES {
            return Some(format!(
                "`{command}` is looked up in a PATH of more than {MAX_ENTRIES} entries"
            ));
        }
        for entry in &self.path {
            if let Some(why) = unplain(entry) {
                return Some(format!(
                    "`{command}` is looked up in PATH entry {entry:?}, which is {why}"
                ));
            }
            let (dir, links) = resolve(Path::new(entry));
            if self.is_writable(&dir) {
                return Some(format!(
                    "`{command}` is looked up in {entry} (PATH), which the sandbox can write"
                ));
            }
            if let Some(why) = self.moved_link(command, &links) {
                return Some(why);
            }
            let (candidate, links) = resolve(&dir.join(command));
            if self.is_writable(&candidate) {
                return Some(format!(
                    "`{command}` in {entry} (PATH) leads to {}, which the sandbox can write",
                    candidate.display()
                ));
            }
            if let Some(why) = self.moved_link(command, &links) {
                return Some(why);
            }
            if self.sees(&candidate) && executable(&candidate) {
                return self.judge_program(command, &candidate);
            }
        }
        None
    }

    /// `program` (resolved) as what `command` runs.
    fn judge_program(&self, command: &str, program: &Path) -> Option<String> {
        if self.is_writable(program) {
            return Some(format!(
                "`{command}` is {}, which the sandbox can write",
                program.display()
            ));
        }
        self.changeable_by_caller(program).map(|p| {
            format!(
                "`{command}` is {}, and {} can be changed by the caller",
                program.display(),
                p.display()
            )
        })
    }

    /// Why one of the symlinks on the way to `command` could be pointed
    /// elsewhere: one in a place the sandbox can write, or the caller could
    /// change (theirs, or in a directory they may write).
    fn moved_link(&self, command: &str, links: &[PathBuf]) -> Option<String> {
        links.iter().find_map(|link| {
            let why = if self.is_writable(link) {
                "which the sandbox can write"
            } else if self.link_changeable(link) {
                "which the caller can change"
            } else {
                return None;
            };
            Some(format!(
                "`{command}` is found through the symlink {}, {why}",
                link.display()
            ))
        })
    }

    fn link_changeable(&self, link: &Path) -> bool {
        self.creds.uid != 0
            && (std::fs::symlink_metadata(link).is_ok_and(|m| m.uid() == self.creds.uid)
                || link
                    .parent()
                    .is_some_and(|dir| self.changeable_by_caller(dir).is_some()))
    }

    fn is_writable(&self, real: &Path) -> bool {
        self.writable.iter().any(|w| real.starts_with(w))
    }

    fn sees(&self, real: &Path) -> bool {
        self.readable.iter().any(|r| real.starts_with(r))
            && !self.hidden.iter().any(|h| covers(h, real))
    }

    /// The first of `program` and its directories the caller could change
    /// (an earlier sandbox of theirs could have, had one of its roots
    /// covered it): one they own (they may chmod it), or one they may write
    /// (permission bits and ACLs, checked as them). A sticky directory
    /// (`/tmp`) they do not own lets them change only their own entries,
    /// which the walk meets on its own. Root's sandboxes keep no capability
    /// to write what root owns: nothing is the caller's to change then.
    fn changeable_by_caller(&self, program: &Path) -> Option<PathBuf> {
        if self.creds.uid == 0 {
            return None;
        }
        program.ancestors().find_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
            let changeable = m.uid() == self.creds.uid || (!sticky && may(p, libc::W_OK));
            changeable.then(|| p.to_path_buf())
        })
    }
}

/// Why a path is not one whose meaning the daemon shares with the sandbox:
/// relative (to the sandbox's working directory), with `.` or `..` in it,
/// or in a tree the sandbox has its own of.
fn unplain(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("relative to the working directory, which the sandbox can write");
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Some("not a plain absolute path");
    }
    let p = Path::new(path);
    OWN_TREES
        .iter()
        .any(|t| p.starts_with(t))
        .then_some("in a tree the sandbox has its own of")
}

/// Whether the calling thread may `mode` (`X_OK`, `W_OK`) `path`.
fn may(path: &Path, mode: i32) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string; AT_EACCESS checks the effective ids.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// What the init's `execve` would run: a regular file the caller may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && may(path, libc::X_OK)
}

/// Symlinks followed at most in one path, as the kernel does (ELOOP past it).
const MAX_LINKS: usize = 40;

/// `path` (absolute) with its symlinks resolved as far as it exists (the
/// rest taken as written), and every symlink met on the way, where it is
/// (not where it leads): what could be pointed elsewhere later.
fn resolve(path: &Path) -> (PathBuf, Vec<PathBuf>) {
    let mut out = PathBuf::from("/");
    let mut links = Vec::new();
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = path
        .components()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    while let Some(c) = todo.pop_front() {
        match c.to_str() {
            Some("/") | Some(".") | Some("") => continue,
            Some("..") => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let next = out.join(&c);
        let link = std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
        let target = link
            .then(|| std::fs::read_link(&next).ok())
            .flatten()
            .filter(|_| links.len() < MAX_LINKS);
        match target {
            Some(target) => {
                links.push(next);
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    todo.push_front(c.as_os_str().to_os_string());
                }
            }
            None => out = next,
        }
    }
    (out, links)
}

/// `path` with its symlinks resolved as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    resolve(path).0
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

    fn programs(path: &[&Path], writable: &Path, uid: u32) -> Programs {
        Programs {
            path: path.iter().map(|p| p.display().to_string()).collect(),
            writable: vec![resolved(writable)],
            readable: vec![PathBuf::from("/")],
            hidden: Vec::new(),
            creds: Credentials {
                uid,
                gid: uid,
                groups: vec![],
            },
            seen: RefCell::new(HashMap::new()),
        }
    }

    /// Where each PATH leads `prog`, as uid 1000, under a workspace the
    /// sandbox writes, a system directory it cannot (root's, 0755), a
    /// directory of root's it cannot enter and one of its own.
    #[test]
    fn a_name_is_doubted_where_the_sandbox_or_its_caller_could_have_placed_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (ws, sys) = (root.join("ws"), root.join("sys"));
        let wsbin = ws.join("bin");
        file(&wsbin, "prog", 0o755);
        file(&sys, "prog", 0o755);
        file(&sys, "plain", 0o644);
        file(&wsbin, "plain", 0o755);
        let private = root.join("private");
        file(&private, "prog", 0o755);
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let home = root.join("home");
        file(&home, "prog", 0o755);
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
        let (link, syslink) = (root.join("link"), root.join("syslink"));
        symlink(&wsbin, &link).unwrap();
        symlink(&sys, &syslink).unwrap();
        let dotted = root.join("sys/../sys");
        // Links to the system directory: one the sandbox could repoint, one
        // the caller could, one neither could.
        let (ws_link, home_link) = (ws.join("l"), home.join("l"));
        symlink(&sys, &ws_link).unwrap();
        symlink(&sys, &home_link).unwrap();
        std::os::unix::fs::lchown(&home_link, Some(1000), Some(1000)).unwrap();
        let via = root.join("via");
        symlink("syslink", &via).unwrap();
        let [ws_prog, sys_prog, home_prog] =
            [&wsbin, &sys, &home].map(|d| d.join("prog").display().to_string());
        let cases: &[(&[&Path], &str, Option<&str>)] = &[
            (&[&sys, &wsbin], "prog", None),
            (&[&wsbin, &sys], "prog", Some("which the sandbox can write")),
            // Not there now, but the sandbox may put it there first.
            (&[&wsbin, &sys], "none", Some("which the sandbox can write")),
            (&[&sys], "none", None),
            (&[Path::new("bin"), &sys], "prog", Some("relative")),
            (&[&link, &sys], "prog", Some("which the sandbox can write")),
            // Not executable, or not the caller's to enter: the search goes on.
            (
                &[&sys, &wsbin],
                "plain",
                Some("which the sandbox can write"),
            ),
            (
                &[&private, &wsbin],
                "prog",
                Some("which the sandbox can write"),
            ),
            (&[&private, &sys], "prog", None),
            (&[&home, &sys], "prog", Some("can be changed by the caller")),
            (&[Path::new("/nonexistent"), &sys], "prog", None),
            (
                &[Path::new("/proc/self/cwd"), &sys],
                "prog",
                Some("has its own"),
            ),
            (&[&dotted, &sys], "prog", Some("not a plain absolute path")),
            (&[&ws_link, &sys], "prog", Some("symlink")),
            (
                &[&home_link, &sys],
                "prog",
                Some("which the caller can change"),
            ),
            (&[&via], "prog", None),
            // Programs given by a path.
            (&[&sys], "./prog", Some("relative")),
            (&[&sys], &ws_prog, Some("which the sandbox can write")),
            (&[&sys], &sys_prog, None),
            (&[&sys], &home_prog, Some("can be changed by the caller")),
        ];
        for (path, name, why) in cases {
            let got = programs(path, &ws, 1000).made_by_sandbox(name);
            match (why, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{path:?} {name}: want {why:?}, got {got:?}"),
            }
        }
        // Root's own files are no one else's to change.
        assert_eq!(
            programs(&[&home, &sys], &ws, 0).made_by_sandbox("prog"),
            None
        );
        // What the sandbox cannot see, its init does not find either, by
        // whatever path it is named.
        let mut hiding = programs(&[&syslink, &wsbin], &ws, 1000);
        hiding.hidden = vec![format!("{}/**", sys.display())];
        assert!(hiding.made_by_sandbox("prog").is_some());
        // The thread is itself again.
        assert_eq!(unsafe { libc::geteuid() }, 0);
    }
}
