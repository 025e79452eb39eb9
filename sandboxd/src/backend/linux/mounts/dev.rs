//! The sandbox's minimal /dev: a few host device nodes, a private devpts,
//! /dev/shm and the usual links; and the devices the command may write.

use super::root::Root;
use super::syscalls::{
    attach, clone_tree, fresh, set_attr, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use super::{merr, MountError};
use crate::backend::linux::paths::openat2;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Ptys a sandbox's devpts may hold at once, its `--tty` one included. The
/// kernel keeps one pool for every devpts instance but the host's
/// (`kernel.pty.max` less `kernel.pty.reserve`: 3072 by default); at this
/// bound a user's 64 sandboxes (`max_per_user`) hold at most 2048 of them.
const MAX_PTYS: &std::ffi::CStr = c"32";

/// Minimal /dev: a few host device nodes, a private devpts, /dev/shm, links.
pub(super) fn build_dev(root: &Root) -> Result<(), MountError> {
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
