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
//!
//! In parts: `syscalls` wraps the mount API; `root` opens and mounts inside
//! the new root; `denies` finds what the deny patterns match on the host,
//! before mounting; `dev` makes /dev. [`build`], here, lays the view out
//! with them and pivots into it.

mod denies;
mod dev;
mod root;
mod syscalls;

pub use denies::{expand_denies, Denied};
pub use dev::WRITABLE_DEVICES;

use super::paths::{openat2, Resolved};
use crate::backend::spec::FsPlan;
use denies::outermost_root;
use dev::build_dev;
use root::Root;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use syscalls::{
    attach, clone_tree, cstr, fresh, fstat, is_dir, set_attr, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, RO,
};

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
