//! The new root under construction: paths opened inside it (relative to
//! its descriptor, with `RESOLVE_IN_ROOT`), mount points created only on
//! the file systems made for the sandbox, and the mounts made there: empty
//! covers, file binds, self-binds, a shared tmpfs.

use super::syscalls::{
    attach, clone_tree, cstr, fresh, fstat, is_dir, set_attr, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, RO,
};
use super::{merr, MountError};
use crate::backend::linux::paths::openat2;
use crate::backend::spec::FileBind;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The new root under construction.
pub(super) struct Root {
    pub(super) fd: OwnedFd,
    /// Source of empty covers: a detached tmpfs with a mode-000 file and dir.
    pub(super) scratch: OwnedFd,
    /// Devices of the file systems made for this sandbox (its tmpfs root,
    /// /tmp, /dev): the only places where missing mount points are created.
    pub(super) made: std::cell::RefCell<Vec<libc::dev_t>>,
}

fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl Root {
    /// A fresh world-writable, sticky tmpfs at `path` (/tmp, /dev/shm).
    pub(super) fn shared_tmpfs(&self, path: &Path, step: &str) -> Result<(), MountError> {
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
    pub(super) fn made(&self, m: &OwnedFd) -> io::Result<()> {
        let dev = fstat(m)?.st_dev;
        self.made.borrow_mut().push(dev);
        Ok(())
    }

    /// Opens `path` (as seen inside) in the new root, not following a final symlink.
    pub(super) fn open(&self, path: &Path) -> io::Result<OwnedFd> {
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
    pub(super) fn ensure(&self, path: &Path, dir: bool) -> io::Result<OwnedFd> {
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
    pub(super) fn cover_socket(&self, path: &Path, in_root: bool) -> Result<(), MountError> {
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
    pub(super) fn cover(
        &self,
        path: &Path,
        step: &str,
        missing_ok: bool,
    ) -> Result<(), MountError> {
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
    pub(super) fn bind_file(&self, f: &FileBind) -> Result<(), MountError> {
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
    pub(super) fn self_bind(
        &self,
        path: &Path,
        read_only: bool,
        step: &str,
    ) -> Result<(), MountError> {
        let target = self.open(path).map_err(merr(step, path))?;
        let m = clone_tree(target.as_raw_fd(), true).map_err(merr(step, path))?;
        if read_only {
            set_attr(&m, RO, true).map_err(merr(step, path))?;
        }
        attach(&m, &target).map_err(merr(step, path))
    }
}
