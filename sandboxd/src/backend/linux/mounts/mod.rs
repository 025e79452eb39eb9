//! The sandbox's file system view, built in the init's own mount namespace
//! with the new mount API (`open_tree`, `mount_setattr`, `move_mount`,
//! `fsopen`), then made the root with `pivot_root`.
//!
//! Every mount target is opened with `openat2(RESOLVE_IN_ROOT)` relative to the
//! new root, so a symlink inside a mounted tree can never send a mount (or a
//! created mount point) to the host's tree.
//!
//! Layout, in order: the root (the host tree read-only when `/` is a read root,
//! else an empty tmpfs made read-only at the end); private /tmp; read roots
//! (read-only, recursive) and write roots (from the caller's fds) by depth;
//! fresh /proc; a minimal /dev; deny_read covers; deny_write read-only and
//! rename-proof binds; hidden paths and host Unix sockets covered.
//!
//! deny_write on a path that does not exist: nothing is created on the host. If
//! its parent exists strictly inside the write root, the parent is made
//! read-only (fail closed, it is the nearest thing that exists); if the parent
//! is the write root itself or is missing too, nothing can be mounted and the
//! path stays creatable (a known limit).

use super::paths::{openat2, Resolved};
use crate::backend::spec::{FileBind, FsPlan};
use globset::{GlobBuilder, GlobSetBuilder};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// A failed mount step, naming the step and the path.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {error}", path.display())]
pub struct MountError {
    pub step: String,
    pub path: PathBuf,
    pub error: String,
}

fn merr(step: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> MountError + '_ {
    let step = step.into();
    move |e| MountError {
        step,
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

// Constants of linux/mount.h (kept here: not every libc exports them).
const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const RO: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A detached copy of the mount at `fd` (recursive when asked).
fn clone_tree(fd: RawFd, recursive: bool) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | OPEN_TREE_CLOEXEC
        | libc::AT_EMPTY_PATH as u32
        | if recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
    // SAFETY: empty path with AT_EMPTY_PATH refers to fd.
    let r = cvt(unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) })?;
    // SAFETY: new descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

fn set_attr(fd: &OwnedFd, set: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: attr is a valid mount_attr of the given size.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Attaches the detached mount `from` on top of the location `to`.
fn attach(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    // SAFETY: both descriptors are valid; empty paths refer to them.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// A new detached file system instance (`fsopen` + options + `fsmount`).
fn fresh(
    fstype: &std::ffi::CStr,
    options: &[(&std::ffi::CStr, Option<&std::ffi::CStr>)],
    attr: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: valid C strings; descriptors checked and owned right away.
    unsafe {
        let fs = OwnedFd::from_raw_fd(cvt(libc::syscall(
            libc::SYS_fsopen,
            fstype.as_ptr(),
            FSOPEN_CLOEXEC,
        ))? as RawFd);
        for (key, value) in options {
            match value {
                Some(v) => cvt(libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    key.as_ptr(),
                    v.as_ptr(),
                    0,
                ))?,
                None => cvt(libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    key.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                ))?,
            };
        }
        cvt(libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(cvt(libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attr,
        ))? as RawFd))
    }
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: plain out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The new root under construction.
struct Root {
    fd: OwnedFd,
    /// Source of empty covers: a detached tmpfs with a mode-000 file and dir.
    scratch: OwnedFd,
    /// Devices of the file systems made for this sandbox (its tmpfs root,
    /// /tmp, /dev): the only places where missing mount points are created.
    made: std::cell::RefCell<Vec<libc::dev_t>>,
}

fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl Root {
    /// A fresh world-writable, sticky tmpfs at `path` (/tmp, /dev/shm).
    fn shared_tmpfs(&self, path: &Path, step: &str) -> Result<(), MountError> {
        let target = self
            .ensure(path, true)
            .map_err(merr(format!("{step} (mount point)"), path))?;
        let m = fresh(
            c"tmpfs",
            &[(c"mode", Some(c"1777"))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
        .map_err(merr(step, path))?;
        self.made(&m).map_err(merr(step, path))?;
        attach(&m, &target).map_err(merr(step, path))
    }

    /// Notes the fresh file system `m` as made for this sandbox.
    fn made(&self, m: &OwnedFd) -> io::Result<()> {
        let dev = fstat(m)?.st_dev;
        self.made.borrow_mut().push(dev);
        Ok(())
    }

    /// Opens `path` (as seen inside) in the new root, not following a final symlink.
    fn open(&self, path: &Path) -> io::Result<OwnedFd> {
        let rel = relative(path);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        openat2(
            self.fd.as_raw_fd(),
            &rel,
            libc::O_NOFOLLOW,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// Opens `path` in the new root, creating missing components (the last
    /// one as a directory or an empty file) relative to their parent's fd,
    /// on the file systems made for the sandbox only.
    fn ensure(&self, path: &Path, dir: bool) -> io::Result<OwnedFd> {
        match self.open(path) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let pfd = self.ensure(parent, true)?;
        // Never in the host's tree (which a writable view root shares), where
        // root would create what the caller's paths lead to.
        if !self.made.borrow().contains(&fstat(&pfd)?.st_dev) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "missing, and not on a file system made for the sandbox",
            ));
        }
        let name = cstr(Path::new(
            path.file_name()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?,
        ))?;
        // SAFETY: pfd is a directory fd, name a single component.
        let r = unsafe {
            if dir {
                libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o755)
            } else {
                let fd = libc::openat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd.min(0)
            }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        self.open(path)
    }

    /// Covers `path` if it is a socket: the host's socket listing names
    /// whatever path a socket was bound at, in any mount namespace, so a
    /// name there that is no socket here (or no longer there: maybe bound
    /// in another mount namespace) is left alone. In a writable root
    /// (`in_root`), where a sandbox could have linked it, a socket with
    /// another name refuses the exec: that name would reach it past the
    /// cover.
    fn cover_socket(&self, path: &Path, in_root: bool) -> Result<(), MountError> {
        let step = "hide host socket";
        let refuse = |error: String| MountError {
            step: step.into(),
            path: path.to_path_buf(),
            error,
        };
        match self.open(path) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(merr(step, path))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                    return Ok(());
                }
                if in_root && st.st_nlink > 1 {
                    return Err(refuse(format!(
                        "a host program listens on this socket, which has {} names: another \
                         one in a writable root would reach it; remove the names it does not need",
                        st.st_nlink
                    )));
                }
                self.cover(path, step, true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(merr(step, path)(e)),
        }
    }

    /// Covers `path` with an empty mode-000 directory or file, read-only.
    /// A path that is not there is left alone when `missing_ok`, else
    /// refused: a match of a deny pattern gone since the walk found it was
    /// moved, maybe to where the walk had already looked.
    fn cover(&self, path: &Path, step: &str, missing_ok: bool) -> Result<(), MountError> {
        let mut target = match self.open(path) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && missing_ok => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let why = "found by the deny_read search, and gone since (moved or removed)";
                return Err(merr(step, path)(io::Error::other(why)));
            }
            Err(e) => return Err(merr(step, path)(e)),
        };
        let mut st = fstat(&target).map_err(merr(step, path))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            // A denied name that is a symlink (`~/.ssh` kept by a dotfile
            // manager) denies what it leads to, as the sandbox would see it.
            target = match openat2(
                self.fd.as_raw_fd(),
                &relative(path),
                0,
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ELOOP)) => {
                    return Ok(())
                }
                Err(e) => return Err(merr(step, path)(e)),
            };
            st = fstat(&target).map_err(merr(step, path))?;
        }
        let name = if is_dir(&st) { "dir" } else { "file" };
        let src =
            openat2(self.scratch.as_raw_fd(), Path::new(name), 0, 0).map_err(merr(step, path))?;
        let m = clone_tree(src.as_raw_fd(), false).map_err(merr(step, path))?;
        set_attr(&m, RO | MOUNT_ATTR_NOEXEC, false).map_err(merr(step, path))?;
        match attach(&m, &target) {
            // Removed since it was opened (a host socket going away): nothing left to hide.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map_err(merr(step, path)),
        }
    }

    /// Binds the host file `f.source` read-only over `f.target` of the view
    /// (a symlink there is followed, inside the view).
    fn bind_file(&self, f: &FileBind) -> Result<(), MountError> {
        let step = "bind file";
        let src = openat2(libc::AT_FDCWD, &f.source, libc::O_NOFOLLOW, 0)
            .map_err(merr(format!("{step} (source)"), &f.source))?;
        let rel = relative(&f.target);
        let target = openat2(
            self.fd.as_raw_fd(),
            &rel,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(merr(step, &f.target))?;
        if is_dir(&fstat(&target).map_err(merr(step, &f.target))?) {
            return Err(merr(step, &f.target)(io::Error::from_raw_os_error(
                libc::EISDIR,
            )));
        }
        let m = clone_tree(src.as_raw_fd(), false).map_err(merr(step, &f.source))?;
        set_attr(&m, RO | MOUNT_ATTR_NOEXEC, false).map_err(merr(step, &f.target))?;
        attach(&m, &target).map_err(merr(step, &f.target))
    }

    /// Re-binds `path` onto itself (recursively), read-only when asked: a
    /// mount point cannot be renamed or removed.
    fn self_bind(&self, path: &Path, read_only: bool, step: &str) -> Result<(), MountError> {
        let target = self.open(path).map_err(merr(step, path))?;
        let m = clone_tree(target.as_raw_fd(), true).map_err(merr(step, path))?;
        if read_only {
            set_attr(&m, RO, true).map_err(merr(step, path))?;
        }
        attach(&m, &target).map_err(merr(step, path))
    }
}

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
pub(super) fn literal_of(s: &str) -> Option<String> {
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
fn outermost_root<'a>(roots: &'a [PathBuf], p: &Path) -> Option<&'a PathBuf> {
    roots
        .iter()
        .filter(|r| p.starts_with(r))
        .min_by_key(|r| r.components().count())
}

/// Builds the view on `fs.staging` and makes it the root (`pivot_root`).
pub fn build(fs: &FsPlan, resolved: &Resolved, denied: &Denied) -> Result<(), MountError> {
    let staging = &fs.staging;
    let st = |s: &str| merr(s.to_string(), staging);
    // SAFETY: plain mount(2) call with constant strings.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } < 0
    {
        return Err(merr("make mounts private", Path::new("/"))(
            io::Error::last_os_error(),
        ));
    }
    let staging_fd = openat2(
        libc::AT_FDCWD,
        staging,
        libc::O_DIRECTORY | libc::O_NOFOLLOW,
        libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(st("open staging"))?;
    // The host tree as the new root: writable (as the caller) when `/` is a
    // write root, else read-only. It is the root itself, not a mount stacked
    // on it, so /proc, /dev and the covers below land on top of it.
    let is_root = |(p, _): &&(PathBuf, OwnedFd)| p == Path::new("/");
    let whole_host = match resolved.write.iter().find(is_root) {
        Some((_, fd)) => Some((fd, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)),
        None => resolved.read.iter().find(is_root).map(|(_, fd)| (fd, RO)),
    };
    let root_mount = match whole_host {
        Some((fd, attrs)) => {
            let m = clone_tree(fd.as_raw_fd(), true).map_err(st("bind host root"))?;
            set_attr(&m, attrs, true).map_err(st("set host root attributes"))?;
            m
        }
        None => fresh(
            c"tmpfs",
            &[(c"mode", Some(c"0755")), (c"size", Some(c"1m"))],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
        .map_err(st("mount root tmpfs"))?,
    };
    attach(&root_mount, &staging_fd).map_err(st("mount new root"))?;
    let fd = openat2(
        libc::AT_FDCWD,
        staging,
        libc::O_DIRECTORY,
        libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(st("open new root"))?;
    let scratch = fresh(
        c"tmpfs",
        &[(c"mode", Some(c"0700")), (c"size", Some(c"4k"))],
        0,
    )
    .map_err(st("mount scratch tmpfs"))?;
    // SAFETY: scratch is a directory fd; names are constants.
    unsafe {
        if libc::mkdirat(scratch.as_raw_fd(), c"dir".as_ptr(), 0) < 0 {
            return Err(st("make empty dir")(io::Error::last_os_error()));
        }
        let f = libc::openat(
            scratch.as_raw_fd(),
            c"file".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0,
        );
        if f < 0 {
            return Err(st("make empty file")(io::Error::last_os_error()));
        }
        libc::close(f);
    }
    let root = Root {
        fd,
        scratch,
        made: Default::default(),
    };
    if whole_host.is_none() {
        root.made(&root_mount).map_err(st("mount root tmpfs"))?;
    }

    // Private /tmp first: roots below /tmp (a workspace in /tmp) land on top of it.
    if fs.private_tmp {
        root.shared_tmpfs(Path::new("/tmp"), "mount /tmp")?;
    }

    // Read and write roots, shallowest first so deeper ones land on top.
    let mut roots: Vec<(&PathBuf, &OwnedFd, bool)> = resolved
        .read
        .iter()
        .filter(|(p, _)| p != Path::new("/"))
        .map(|(p, fd)| (p, fd, false))
        .chain(
            resolved
                .write
                .iter()
                .filter(|(p, _)| p != Path::new("/"))
                .map(|(p, fd)| (p, fd, true)),
        )
        .collect();
    roots.sort_by_key(|(p, _, _)| p.components().count());
    for (path, src, writable) in roots {
        let step = if writable {
            "bind write root"
        } else {
            "bind read root"
        };
        let source = fstat(src).map_err(merr(step, path))?;
        if !writable {
            refuse_denied_source(path, src, &denied.read).map_err(merr(step, path))?;
        }
        let target = root
            .ensure(path, is_dir(&source))
            .map_err(merr(format!("{step} (mount point)"), path))?;
        // A writable root lands where it was checked: a mount point in the
        // host's tree must still be that very directory, not where a path
        // swapped since then leads.
        let point = fstat(&target).map_err(merr(step, path))?;
        if writable
            && !root.made.borrow().contains(&point.st_dev)
            && (point.st_dev, point.st_ino) != (source.st_dev, source.st_ino)
        {
            let e = io::Error::other("the path changed since it was checked");
            return Err(merr(format!("{step} (mount point)"), path)(e));
        }
        let m = clone_tree(src.as_raw_fd(), true).map_err(merr(step, path))?;
        set_attr(
            &m,
            if writable {
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
            } else {
                RO
            },
            true,
        )
        .map_err(merr(step, path))?;
        attach(&m, &target).map_err(merr(step, path))?;
    }

    // Fresh /proc for the new pid namespace.
    let proc_path = Path::new("/proc");
    let target = root
        .ensure(proc_path, true)
        .map_err(merr("mount /proc (mount point)", proc_path))?;
    let m = fresh(
        c"proc",
        &[],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    )
    .map_err(merr("mount /proc", proc_path))?;
    attach(&m, &target).map_err(merr("mount /proc", proc_path))?;

    build_dev(&root)?;

    // Inside a writable root (not the whole host's, whose /tmp, /proc and
    // /dev are the sandbox's own) a match is in the view as on the host:
    // missing, it was moved since the walk. Elsewhere it may not be in the
    // view at all (a read root that leaves it out).
    let in_root = |p: &Path| outermost_root(&fs.write, p).filter(|r| r.as_path() != Path::new("/"));
    // In path order, a match's contents come right after it.
    let mut reads: Vec<&PathBuf> = denied.read.iter().collect();
    reads.sort();
    let mut covered: Option<&Path> = None;
    for p in reads {
        // Inside a match covered whole (`secrets` and `secrets/.env`):
        // hidden with it, and not to be looked for under its cover.
        if covered.is_some_and(|c| c != p.as_path() && p.starts_with(c)) {
            continue;
        }
        root.cover(p, "hide deny_read", in_root(p).is_none())?;
        covered = Some(p);
    }

    // deny_read and deny_write: ancestors below the write root become mount
    // points (rename-proof), as do denied symlinks; then each deny_write path
    // is re-bound read-only.
    let mut ancestors: Vec<PathBuf> = Vec::new();
    // `from` and the directories above it, below `wroot`.
    let mut pin = |wroot: &Path, from: &Path| {
        for dir in from.ancestors() {
            if dir == wroot || !dir.starts_with(wroot) {
                break;
            }
            ancestors.push(dir.to_path_buf());
        }
    };
    for (wroot, dir) in &denied.read_pinned {
        pin(wroot, dir);
    }
    // Host sockets in a writable root stay where they were bound: no exec
    // can move one to a name the next exec's covers would not know.
    for sock in &fs.host_sockets {
        let Some(wroot) = in_root(sock) else {
            continue;
        };
        let is_socket = sock
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_socket());
        if let (Some(parent), true) = (sock.parent(), is_socket) {
            pin(wroot, parent);
        }
    }
    let mut ro: Vec<PathBuf> = Vec::new();
    for (wroot, path, exists) in &denied.write {
        // A path not there yet is protected by its parent; a parent that is
        // a file (`.git` of a worktree, naming the real directory) is made
        // read-only itself, or it could be pointed elsewhere.
        let target = if *exists {
            path.clone()
        } else {
            match path.parent() {
                Some(parent)
                    if parent != wroot.as_path()
                        && parent.symlink_metadata().is_ok_and(|m| !m.is_symlink()) =>
                {
                    parent.to_path_buf()
                }
                _ => continue,
            }
        };
        if let Some(parent) = target.parent() {
            pin(wroot, parent);
        }
        ro.push(target);
    }
    // Outer ones first: an inner bind must not be hidden under an outer one.
    ancestors.sort_by(|a, b| (a.components().count(), a).cmp(&(b.components().count(), b)));
    ancestors.dedup();
    for a in &ancestors {
        root.self_bind(a, false, "protect a denied path's parent")?;
    }
    for l in &denied.read_links {
        root.self_bind(l, false, "pin a deny_read symlink")?;
    }
    for p in &ro {
        root.self_bind(p, true, "bind deny_write read-only")?;
    }

    for f in &fs.files {
        root.bind_file(f)?;
    }

    for p in &fs.hide {
        root.cover(p, "hide path", true)?;
    }
    for p in &fs.host_sockets {
        root.cover_socket(p, in_root(p).is_some())?;
    }

    if whole_host.is_none() {
        set_attr(&root.fd, RO, false).map_err(st("make root read-only"))?;
    }
    pivot(staging)
}

/// A read root is opened following symlinks and bound where its path is, a
/// mount of its own that the covers of `deny_read` do not reach: one that
/// leads into a denied path (`cfg` linking to `keys/id`) is refused.
fn refuse_denied_source(path: &Path, src: &OwnedFd, deny_read: &[PathBuf]) -> io::Result<()> {
    let real = std::fs::read_link(format!("/proc/self/fd/{}", src.as_raw_fd()))?;
    if real == path {
        // Where the path is: a cover above it hides it.
        return Ok(());
    }
    match deny_read
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .find(|d| real.starts_with(d))
    {
        Some(d) => Err(io::Error::other(format!(
            "leads to {}, which deny_read hides ({})",
            real.display(),
            d.display()
        ))),
        None => Ok(()),
    }
}

/// Ptys a sandbox's devpts may hold at once, its `--tty` one included. The
/// kernel keeps one pool for every devpts instance but the host's
/// (`kernel.pty.max` less `kernel.pty.reserve`: 3072 by default); at this
/// bound a user's 64 sandboxes (`max_per_user`) hold at most 2048 of them.
const MAX_PTYS: &std::ffi::CStr = c"32";

/// Minimal /dev: a few host device nodes, a private devpts, /dev/shm, links.
fn build_dev(root: &Root) -> Result<(), MountError> {
    let dev = Path::new("/dev");
    let target = root
        .ensure(dev, true)
        .map_err(merr("mount /dev (mount point)", dev))?;
    let m = fresh(
        c"tmpfs",
        &[(c"mode", Some(c"0755")), (c"size", Some(c"64k"))],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )
    .map_err(merr("mount /dev", dev))?;
    root.made(&m).map_err(merr("mount /dev", dev))?;
    attach(&m, &target).map_err(merr("mount /dev", dev))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        let step = "bind device";
        let src = openat2(libc::AT_FDCWD, &host, 0, libc::RESOLVE_NO_SYMLINKS)
            .map_err(merr(step, &host))?;
        let t = root.ensure(&host, false).map_err(merr(step, &host))?;
        let m = clone_tree(src.as_raw_fd(), false).map_err(merr(step, &host))?;
        attach(&m, &t).map_err(merr(step, &host))?;
    }
    let pts = Path::new("/dev/pts");
    let t = root
        .ensure(pts, true)
        .map_err(merr("mount devpts (mount point)", pts))?;
    let m = fresh(
        c"devpts",
        &[
            (c"newinstance", None),
            (c"ptmxmode", Some(c"0666")),
            (c"mode", Some(c"0620")),
            (c"max", Some(MAX_PTYS)),
        ],
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    )
    .map_err(merr("mount devpts", pts))?;
    attach(&m, &t).map_err(merr("mount devpts", pts))?;
    root.shared_tmpfs(Path::new("/dev/shm"), "mount /dev/shm")?;
    let devfd = root.open(dev).map_err(merr("open /dev", dev))?;
    for (name, to) in [
        (c"ptmx", c"pts/ptmx"),
        (c"fd", c"/proc/self/fd"),
        (c"stdin", c"/proc/self/fd/0"),
        (c"stdout", c"/proc/self/fd/1"),
        (c"stderr", c"/proc/self/fd/2"),
    ] {
        // SAFETY: constant C strings, directory fd.
        if unsafe { libc::symlinkat(to.as_ptr(), devfd.as_raw_fd(), name.as_ptr()) } < 0 {
            return Err(merr("link in /dev", dev)(io::Error::last_os_error()));
        }
    }
    set_attr(
        &devfd,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        false,
    )
    .map_err(merr("make /dev read-only", dev))
}

/// Makes `new_root` the root and detaches the old one.
fn pivot(new_root: &Path) -> Result<(), MountError> {
    let c = cstr(new_root).map_err(merr("pivot_root", new_root))?;
    // SAFETY: plain syscalls on valid C strings.
    unsafe {
        if libc::chdir(c.as_ptr()) < 0 {
            return Err(merr("pivot_root (chdir)", new_root)(
                io::Error::last_os_error(),
            ));
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) < 0 {
            return Err(merr("pivot_root", new_root)(io::Error::last_os_error()));
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) < 0 {
            return Err(merr("detach old root", new_root)(io::Error::last_os_error()));
        }
        if libc::chdir(c"/".as_ptr()) < 0 {
            return Err(merr("pivot_root (chdir /)", new_root)(
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Device nodes the command may write (for Landlock).
pub const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

#[cfg(test)]
mod tests {
    use super::*;

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
