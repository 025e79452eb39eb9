//! Resolving the caller's paths without acting as a confused deputy.
//!
//! The working directory and every writable root are opened and checked with
//! the caller's credentials, never root's: the calling thread switches its
//! effective uid, gid and groups to the caller's with raw (per-thread)
//! syscalls, which also drops its effective capabilities, opens each path
//! with `openat2` and checks it, then switches back (real and saved ids stay
//! root meanwhile, and the change makes the process non-dumpable). The result
//! is `O_PATH` descriptors. The mounts are then made from those descriptors,
//! so a path swapped after the check is never what gets mounted.
//!
//! Rules: a symlink anywhere in the cwd's or a write root's path is refused
//! (simplest rule that cannot lead out); the caller must be able to reach the
//! cwd and to write each write root (`faccessat2(AT_EACCESS)`); kernel file
//! systems (proc, sysfs, devtmpfs, cgroup, ...) are refused.

use crate::backend::spec::Credentials;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path refused, with the reason in words.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {reason}", path.display())]
pub struct PathError {
    /// What was being resolved ("resolve cwd", "resolve write root").
    pub step: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

/// The caller's paths, opened as the caller.
#[derive(Debug)]
pub struct Resolved {
    /// `O_PATH` fd of the working directory.
    pub cwd: OwnedFd,
    /// Writable roots and their `O_PATH` fds.
    pub write: Vec<(PathBuf, OwnedFd)>,
    /// Readable roots the caller can reach (missing or unreachable ones are
    /// left out: the caller could not read them anyway).
    pub read: Vec<(PathBuf, OwnedFd)>,
}

/// `openat2(2)` with `O_PATH|O_CLOEXEC` plus `flags` and `resolve`.
pub(crate) fn openat2(dirfd: RawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | flags) as u64;
    how.resolve = resolve;
    // SAFETY: valid C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the effective (thread) credentials grant `mode` on `fd`.
fn access(fd: &OwnedFd, mode: i32) -> io::Result<()> {
    // SAFETY: empty C string with AT_EMPTY_PATH checks the fd itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode,
            libc::AT_EACCESS | libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kernel file systems no cwd or write root may live on, by `statfs` magic.
const SPECIAL_FS: &[(i64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x7472_6163, "tracefs"),
    (0x6165_676c, "pstore"),
    (0x6265_6570, "configfs"),
    (0xde5e_81e4, "efivarfs"),
    (0x1980_0202, "mqueue"),
    (0x6573_5543, "fusectl"),
    (0x6e73_6673, "nsfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0xf97c_ff8c, "selinuxfs"),
];

/// Refuses a descriptor on a kernel file system; devtmpfs shares tmpfs's
/// magic, so anything on the same file system as the host's /dev is refused too.
pub fn check_not_special(fd: &OwnedFd) -> Result<(), String> {
    // SAFETY: plain out-parameters.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sfs) } < 0 {
        return Err(format!("statfs: {}", io::Error::last_os_error()));
    }
    if let Some((_, name)) = SPECIAL_FS.iter().find(|(m, _)| *m == sfs.f_type as i64) {
        return Err(format!("is on a {name} file system, which is refused"));
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let mut dev: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd / C string and out-parameters.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0
        && unsafe { libc::stat(c"/dev".as_ptr(), &mut dev) } == 0
        && st.st_dev == dev.st_dev
    {
        return Err("is on the host's /dev file system, which is refused".into());
    }
    Ok(())
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            "contains a symbolic link, which is refused (give the real path)".into()
        }
        Some(libc::EXDEV) => "crosses into a magic link, which is refused".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "is not reachable by the caller (permission denied)".into()
        }
        Some(libc::ENOENT) => "does not exist".into(),
        Some(libc::ENOTDIR) => "is not a directory".into(),
        _ => e.to_string(),
    }
}

/// Opens `path` (absolute, no symlinks) as the current thread and checks `mode`.
fn open_checked(
    step: &'static str,
    path: &Path,
    dir: bool,
    mode: i32,
) -> Result<OwnedFd, PathError> {
    let err = |reason: String| PathError {
        step,
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_absolute() {
        return Err(err("is not absolute".into()));
    }
    let flags = if dir { libc::O_DIRECTORY } else { 0 };
    let fd = openat2(
        libc::AT_FDCWD,
        path,
        flags,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| err(describe(&e)))?;
    access(&fd, mode).map_err(|e| {
        err(match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) if mode & libc::W_OK != 0 => {
                "is not writable by the caller".into()
            }
            Some(libc::EROFS) => "is on a read-only file system".into(),
            _ => describe(&e),
        })
    })?;
    check_not_special(&fd).map_err(err)?;
    Ok(fd)
}

/// Raw credential syscall on the calling thread only (glibc's wrappers would
/// broadcast to every thread).
fn cred_call(nr: libc::c_long, a: u64, b: u64, c: u64) -> io::Result<()> {
    // SAFETY: set*id/setgroups syscalls with plain integer or valid pointer args.
    if unsafe { libc::syscall(nr, a, b, c) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's effective ids and groups, to return to.
struct Saved {
    euid: u32,
    egid: u32,
    groups: Vec<libc::gid_t>,
}

const KEEP: u64 = u32::MAX as u64;

/// Switches the calling thread's effective uid, gid and groups to `creds`;
/// real and saved ids stay (root), so the guard returned can switch back.
/// A switch that fails halfway is undone by the same guard.
fn become_caller(creds: &Credentials) -> io::Result<Unwinding> {
    // SAFETY: getgroups with a buffer of the size it reported.
    let groups = unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut g = vec![0; n.max(0) as usize];
        let n = libc::getgroups(g.len() as i32, g.as_mut_ptr());
        g.truncate(n.max(0) as usize);
        g
    };
    // SAFETY: trivial getters.
    let saved = Saved {
        euid: unsafe { libc::geteuid() },
        egid: unsafe { libc::getegid() },
        groups,
    };
    let guard = Unwinding(Some(saved));
    cred_call(
        libc::SYS_setgroups,
        creds.groups.len() as u64,
        creds.groups.as_ptr() as u64,
        0,
    )?;
    cred_call(libc::SYS_setresgid, KEEP, creds.gid as u64, KEEP)?;
    cred_call(libc::SYS_setresuid, KEEP, creds.uid as u64, KEEP)?;
    Ok(guard)
}

fn leave_caller(saved: &Saved) -> io::Result<()> {
    cred_call(libc::SYS_setresuid, KEEP, saved.euid as u64, KEEP)?;
    cred_call(libc::SYS_setresgid, KEEP, saved.egid as u64, KEEP)?;
    cred_call(
        libc::SYS_setgroups,
        saved.groups.len() as u64,
        saved.groups.as_ptr() as u64,
        0,
    )
}

/// The text of `file` when it is a regular file of at most `max` bytes
/// (opened without following a symlink and without blocking, by the caller).
pub fn read_small(file: std::fs::File, max: u64) -> Option<String> {
    use std::io::Read;
    if !file.metadata().is_ok_and(|m| m.is_file() && m.len() <= max) {
        return None;
    }
    let mut text = String::new();
    file.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Puts the thread's credentials back when dropped, also if `f` panics (a
/// pooled thread left with the caller's would run later work as them), or
/// ends the process when it cannot.
struct Unwinding(Option<Saved>);

impl Drop for Unwinding {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            if leave_caller(&saved).is_err() {
                std::process::abort();
            }
        }
    }
}

/// Runs `f` with the caller's effective credentials (on the calling
/// thread, restored before returning, or unwinding).
pub fn as_caller<T>(creds: &Credentials, f: impl FnOnce() -> T) -> Result<T, PathError> {
    let fail = |step, e: io::Error| PathError {
        step,
        path: PathBuf::new(),
        reason: e.to_string(),
    };
    let guard = become_caller(creds).map_err(|e| fail("become caller", e))?;
    let result = f();
    // Dropped here: back to the saved credentials, or the process ends
    // rather than go on with a thread that acts as the caller.
    drop(guard);
    Ok(result)
}

/// Opens the cwd, the write roots and the read roots with the caller's
/// effective credentials; `write_host`: a `/` among `write` is the whole
/// host (a profile's own `/`), not a root the caller must be able to write.
pub fn resolve_as_caller(
    creds: &Credentials,
    cwd: &Path,
    write: &[PathBuf],
    write_host: bool,
    read: &[PathBuf],
) -> Result<Resolved, PathError> {
    as_caller(creds, || open_all(cwd, write, write_host, read))?
}

fn open_all(
    cwd: &Path,
    write: &[PathBuf],
    write_host: bool,
    read: &[PathBuf],
) -> Result<Resolved, PathError> {
    let cwd = open_checked("resolve cwd", cwd, true, libc::X_OK)?;
    let mut w = Vec::with_capacity(write.len());
    for p in write {
        // A profile's own `/` (`full`) leaves the caller's permissions in
        // charge everywhere; any other root, `{cwd}` of an exec in `/`
        // included, must be writable by the caller.
        let mode = if write_host && p == Path::new("/") {
            libc::F_OK
        } else {
            libc::W_OK
        };
        w.push((
            p.clone(),
            open_checked("resolve write root", p, false, mode)?,
        ));
    }
    let mut r = Vec::with_capacity(read.len());
    for p in read {
        // Symlinks are followed here: the caller may read whatever they lead to.
        if let Ok(fd) = openat2(libc::AT_FDCWD, p, 0, libc::RESOLVE_NO_MAGICLINKS) {
            if access(&fd, libc::R_OK).is_ok() || p == Path::new("/") {
                r.push((p.clone(), fd));
            }
        }
    }
    Ok(Resolved {
        cwd,
        write: w,
        read: r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Credentials {
        // SAFETY: trivial getters.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Credentials {
            uid,
            gid,
            groups: vec![gid],
        }
    }

    #[test]
    fn a_panic_as_the_caller_leaves_the_thread_as_it_was() {
        let caller = Credentials {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        };
        let inside = as_caller(&caller, || unsafe { libc::geteuid() }).unwrap();
        assert_eq!(inside, 1000);
        let r = std::panic::catch_unwind(|| as_caller(&caller, || panic!("inside")));
        assert!(r.is_err());
        // SAFETY: trivial getters.
        assert_eq!(unsafe { (libc::geteuid(), libc::getegid()) }, (0, 0));
    }

    #[test]
    fn symlinks_proc_and_missing_paths_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        assert!(resolve_as_caller(&me(), &real, std::slice::from_ref(&real), false, &[]).is_ok());
        let e = resolve_as_caller(&me(), &link, &[], false, &[]).unwrap_err();
        assert!(
            e.to_string().contains("link") && e.reason.contains("symbolic link"),
            "{e}"
        );
        let e = resolve_as_caller(&me(), &real, &[link.join("x")], false, &[]).unwrap_err();
        assert_eq!(e.step, "resolve write root");
        let e = resolve_as_caller(&me(), Path::new("/proc/self"), &[], false, &[]).unwrap_err();
        assert!(
            e.reason.contains("proc") || e.reason.contains("symbolic"),
            "{e}"
        );
        let e = resolve_as_caller(&me(), Path::new("/proc"), &[], false, &[]).unwrap_err();
        assert!(e.reason.contains("proc file system"), "{e}");
        let e = resolve_as_caller(&me(), &dir.path().join("missing"), &[], false, &[]).unwrap_err();
        assert!(e.reason.contains("does not exist"), "{e}");
        let e = resolve_as_caller(&me(), &real, &[PathBuf::from("/dev")], false, &[]).unwrap_err();
        assert!(e.reason.contains("/dev"), "{e}");
    }

    #[test]
    fn missing_read_roots_are_left_out() {
        let r = resolve_as_caller(
            &me(),
            Path::new("/"),
            &[],
            false,
            &[PathBuf::from("/"), PathBuf::from("/nonexistent-x")],
        )
        .unwrap();
        assert_eq!(r.read.len(), 1);
    }
}
