//! Per-sandbox cgroups for memory, pids and cpu, on cgroup v1 controllers or
//! v2, whichever hierarchy carries each controller on this host.
//!
//! Each sandbox gets `sandboxd/<name>` at the root of every hierarchy that
//! carries `memory`, `pids` or `cpu` (one directory on a pure v2 host, up to
//! three on a v1 host); the name is `run-DAEMONPID-ID` for one exec, or
//! `pool-DAEMONPID-N` for a cgroup made ahead of time with its init and
//! given its limits later
//! ([`Cgroup::set_limits`]). Where the daemon caps each user's sandboxes
//! together ([`UserShare`]), an exec's cgroup is
//! `sandboxd/user-UID/run-DAEMONPID-ID` instead. A limit requested for a controller that no
//! hierarchy carries is an error: the sandbox is refused rather than run
//! unlimited. The cpu controller carries no limit: it lets a long-running
//! sandbox be made to yield the CPU ([`CpuGroup::make_idle`]), and a host
//! without it only loses that.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Limits to enforce; `None` leaves the controller unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// The cap on all of its user's sandboxes together that this one
    /// counts against, if the daemon sets one.
    pub user: Option<UserShare>,
}

/// The memory and tasks all sandboxes of one uid may use together: their
/// cgroups sit in `sandboxd/user-UID`, which carries these limits, so that
/// one user's many sandboxes cannot take what the others' need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserShare {
    pub uid: u32,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy carries the {0} controller; the limit cannot be enforced")]
    NoController(&'static str),
    #[error("invalid cgroup name {0:?}: use letters, digits, '.', '_' or '-'")]
    InvalidId(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Directory under each hierarchy's root that holds the sandboxes' cgroups.
const PARENT: &str = "sandboxd";

/// Cgroup version of one hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Cgroup hierarchies mounted on this host, as listed in mountinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// v1 mounts: mount point and the controllers it carries.
    pub v1: Vec<(PathBuf, Vec<String>)>,
    /// The v2 (unified) mount point, if any.
    pub v2: Option<PathBuf>,
}

/// Where one controller lives: which hierarchy, mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub version: Version,
    pub mount: PathBuf,
}

/// Undoes the octal escapes (`\040` etc.) mountinfo uses in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(oct, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// v1 super options that are not controller names.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// Parses /proc/self/mountinfo text into the cgroup hierarchies it lists.
/// Pure, so it is tested on sample texts of v1, v2 and hybrid hosts.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let point = PathBuf::from(unescape(left[4]));
        match right[0] {
            "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(point),
            "cgroup" => {
                let ctrls: Vec<String> = right[2]
                    .split(',')
                    .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.contains('='))
                    .map(str::to_owned)
                    .collect();
                if !ctrls.is_empty() && !mounts.v1.iter().any(|(_, c)| *c == ctrls) {
                    mounts.v1.push((point, ctrls));
                }
            }
            _ => {}
        }
    }
    mounts
}

/// Picks the hierarchy carrying `controller`: a v1 mount naming it first (a
/// controller bound to v1 is unavailable on v2), else the v2 mount when its
/// root's `cgroup.controllers` text (`v2_controllers`) lists it.
pub fn locate(mounts: &Mounts, controller: &str, v2_controllers: &str) -> Option<Place> {
    if let Some((mount, _)) = mounts
        .v1
        .iter()
        .find(|(_, c)| c.iter().any(|n| n == controller))
    {
        return Some(Place {
            version: Version::V1,
            mount: mount.clone(),
        });
    }
    let v2 = mounts.v2.as_ref()?;
    v2_controllers
        .split_whitespace()
        .any(|c| c == controller)
        .then(|| Place {
            version: Version::V2,
            mount: v2.clone(),
        })
}

/// Refuses `limits` when a controller it needs is missing.
fn check_controllers(limits: &CgroupLimits, memory: bool, pids: bool) -> Result<(), CgroupError> {
    if limits.memory_bytes.is_some() && !memory {
        return Err(CgroupError::NoController("memory"));
    }
    if limits.pids.is_some() && !pids {
        return Err(CgroupError::NoController("pids"));
    }
    Ok(())
}

/// A sandbox id usable as one path component, nothing else.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn io_err(path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|e| io_err(path, e))
}

/// Value of `key` in a flat keyed file such as memory.events or memory.oom_control.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One cgroup directory of the sandbox.
#[derive(Debug)]
struct Dir {
    version: Version,
    mount: PathBuf,
    path: PathBuf,
    /// Carries the memory controller.
    memory: bool,
    /// Carries the pids controller.
    pids: bool,
    /// Carries the cpu controller.
    cpu: bool,
}

/// One sandbox's cgroup(s). Removed on drop (after its processes are gone).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<Dir>,
}

/// Where the memory, pids and cpu controllers live on this host.
fn places() -> Result<[(&'static str, Option<Place>); 3], CgroupError> {
    let info_path = Path::new("/proc/self/mountinfo");
    let info = fs::read_to_string(info_path).map_err(|e| io_err(info_path, e))?;
    let mounts = parse_mountinfo(&info);
    let v2_controllers = mounts
        .v2
        .as_ref()
        .and_then(|m| fs::read_to_string(m.join("cgroup.controllers")).ok())
        .unwrap_or_default();
    Ok(["memory", "pids", "cpu"].map(|c| (c, locate(&mounts, c, &v2_controllers))))
}

/// Removes the cgroups `sandboxd/<name>` and `sandboxd/user-UID/<name>`
/// for which `stale(name)` holds, in every hierarchy carrying memory, pids
/// or cpu (e.g. the cgroups a daemon that is gone left behind). A cgroup
/// that still has processes stays: rmdir refuses it. The users'
/// directories stay too: a running exec may be making a cgroup in one.
pub fn remove_stale(stale: impl Fn(&str) -> bool) {
    let Ok(places) = places() else { return };
    for (_, place) in places {
        let Some(place) = place else { continue };
        let parent = place.mount.join(PARENT);
        let users = fs::read_dir(&parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let user = format!("{USER_KIND}-");
                e.file_name().to_str().is_some_and(|n| n.starts_with(&user))
            });
        for dir in std::iter::once(parent.clone()).chain(users.map(|e| e.path())) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && e.file_name().to_str().is_some_and(&stale)
                {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
    }
}

/// The limits of the `sandboxd` cgroup, which holds every sandbox's, on a
/// host with `mem_total` bytes of memory that can have `tasks` processes
/// and threads: the host keeps an eighth of the memory (at least 1 GiB)
/// and a quarter of the tasks whatever the sandboxes' own limits add up to.
pub fn parent_caps(mem_total: u64, tasks: u64) -> CgroupLimits {
    let kept = (mem_total / 8).max(1 << 30);
    CgroupLimits {
        memory_bytes: Some(mem_total.saturating_sub(kept).max(1 << 28)),
        pids: Some((tasks / 4 * 3).max(1024)),
        user: None,
    }
}

/// How many tasks one user's sandboxes may have by default (as their
/// RLIMIT_NPROC): half of what all sandboxes together may, so that one user
/// cannot take every task the others' need.
pub fn default_user_tasks() -> u64 {
    static TASKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TASKS.get_or_init(|| {
        let all = host_size()
            .map(|(mem, tasks)| parent_caps(mem, tasks).pids)
            .ok()
            .flatten();
        all.unwrap_or(8192) / 2
    })
}

/// A number in a /proc file.
fn proc_number(path: &Path) -> Result<u64, CgroupError> {
    fs::read_to_string(path)
        .map_err(|e| io_err(path, e))?
        .trim()
        .parse::<u64>()
        .map_err(|e| io_err(path, io::Error::other(e)))
}

/// The host's memory in bytes, and how many tasks it can have (the lower
/// of the pid and thread limits).
fn host_size() -> Result<(u64, u64), CgroupError> {
    let meminfo = Path::new("/proc/meminfo");
    let text = fs::read_to_string(meminfo).map_err(|e| io_err(meminfo, e))?;
    let mem_kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| io_err(meminfo, io::Error::other("no MemTotal")))?;
    let pid_max = proc_number(Path::new("/proc/sys/kernel/pid_max"))?;
    let threads_max = proc_number(Path::new("/proc/sys/kernel/threads-max"))?;
    Ok((mem_kib * 1024, pid_max.min(threads_max)))
}

/// Makes the `sandboxd` cgroup that holds every sandbox's, and caps it
/// ([`parent_caps`]): each sandbox has limits of its own, but many of them
/// at once could still take the host's memory or tasks. Only memory as
/// such is capped there: swap stays as each sandbox's limit has it.
pub fn cap_parent() -> Result<CgroupLimits, CgroupError> {
    let (mem_total, tasks) = host_size()?;
    let caps = parent_caps(mem_total, tasks);
    for (name, place) in places()? {
        let Some(place) = place else { continue };
        let (file, value) = match (name, place.version) {
            ("memory", Version::V1) => ("memory.limit_in_bytes", caps.memory_bytes),
            ("memory", Version::V2) => ("memory.max", caps.memory_bytes),
            ("pids", _) => ("pids.max", caps.pids),
            _ => continue,
        };
        let parent = parent_dir(name, &place)?;
        if let Some(value) = value {
            write(&parent.join(file), &value.to_string())?;
        }
    }
    Ok(caps)
}

/// Makes `sandboxd` at `place` (with `controller` enabled for its children
/// on v2, from the root down), and returns its path.
fn parent_dir(controller: &str, place: &Place) -> Result<PathBuf, CgroupError> {
    let parent = place.mount.join(PARENT);
    make_dir(&parent)?;
    if place.version == Version::V2 {
        let on = format!("+{controller}");
        write(&place.mount.join("cgroup.subtree_control"), &on)?;
        write(&parent.join("cgroup.subtree_control"), &on)?;
    }
    Ok(parent)
}

fn make_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// User directories whose caps this daemon has written, so that each is
/// written once a run (lowering a v1 memory limit below what is in use
/// would fail every later exec of that user).
static CAPPED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// [`parent_dir`], then `user-UID` below it with the share's cap on
/// `controller` (and the controller enabled for its children on v2).
fn share_dir(controller: &str, place: &Place, share: &UserShare) -> Result<PathBuf, CgroupError> {
    let dir = parent_dir(controller, place)?.join(format!("{USER_KIND}-{}", share.uid));
    make_dir(&dir)?;
    if place.version == Version::V2 {
        write(
            &dir.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )?;
    }
    let cap = match (controller, place.version) {
        ("memory", Version::V1) => share.memory_bytes.map(|b| ("memory.limit_in_bytes", b)),
        ("memory", Version::V2) => share.memory_bytes.map(|b| ("memory.max", b)),
        ("pids", _) => share.pids.map(|n| ("pids.max", n)),
        _ => None,
    };
    if let Some((file, value)) = cap {
        let path = dir.join(file);
        let mut capped = CAPPED.lock().unwrap_or_else(|p| p.into_inner());
        if !capped.contains(&path) {
            write(&path, &value.to_string())?;
            capped.push(path);
        }
    }
    Ok(dir)
}

/// The kind of the directories holding one user's sandboxes, `user-UID`.
pub const USER_KIND: &str = "user";

impl Cgroup {
    /// Creates the cgroup(s) `sandboxd/<id>` (or `sandboxd/user-UID/<id>`
    /// with `limits.user`) with `limits` applied.
    pub fn create(id: &str, limits: &CgroupLimits) -> Result<Self, CgroupError> {
        if !valid_id(id) {
            return Err(CgroupError::InvalidId(id.to_owned()));
        }
        let places = places()?;
        let has = |c: &str| places.iter().any(|(n, p)| *n == c && p.is_some());
        check_controllers(limits, has("memory"), has("pids"))?;

        let mut cg = Cgroup { dirs: Vec::new() };
        for (name, place) in places {
            let Some(place) = place else { continue };
            match cg.join(name, &place, id, limits.user.as_ref()) {
                // The cpu controller only serves fairness: without it the sandbox still runs.
                Err(e) if name == "cpu" => tracing::debug!(error = %e, "no cpu cgroup"),
                other => other?,
            }
        }
        cg.set_limits(limits)?;
        Ok(cg)
    }

    /// Adds `controller` at `place`: makes `sandboxd/<id>` (in the user's
    /// directory with a share) there unless another controller's directory
    /// is already the same one.
    fn join(
        &mut self,
        controller: &str,
        place: &Place,
        id: &str,
        share: Option<&UserShare>,
    ) -> Result<(), CgroupError> {
        let parent = match share {
            Some(share) => share_dir(controller, place, share)?,
            None => parent_dir(controller, place)?,
        };
        let dir = match self.dirs.iter().position(|d| d.mount == place.mount) {
            Some(i) => i,
            None => {
                let path = parent.join(id);
                fs::create_dir(&path).map_err(|e| io_err(&path, e))?;
                self.dirs.push(Dir {
                    version: place.version,
                    mount: place.mount.clone(),
                    path,
                    memory: false,
                    pids: false,
                    cpu: false,
                });
                self.dirs.len() - 1
            }
        };
        let d = &mut self.dirs[dir];
        match controller {
            "memory" => d.memory = true,
            "pids" => d.pids = true,
            _ => d.cpu = true,
        }
        Ok(())
    }

    /// Applies `limits` to this cgroup (made earlier, possibly with processes
    /// already in it). A limit whose controller this cgroup lacks is refused.
    pub fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let memory = self.memory_dir();
        let pids = self.dirs.iter().find(|d| d.pids);
        check_controllers(limits, memory.is_some(), pids.is_some())?;
        if let (Some(d), Some(bytes)) = (memory, limits.memory_bytes) {
            apply_memory(d, bytes)?;
        }
        if let (Some(d), Some(n)) = (pids, limits.pids) {
            write(&d.path.join("pids.max"), &n.to_string())?;
        }
        Ok(())
    }

    /// Moves `pid` into every cgroup of this sandbox (the cpu one only if
    /// it can be: without it the sandbox just keeps its full CPU share).
    pub fn add(&mut self, pid: i32) -> Result<(), CgroupError> {
        let mut i = 0;
        while i < self.dirs.len() {
            let d = &self.dirs[i];
            match write(&d.path.join("cgroup.procs"), &pid.to_string()) {
                Ok(()) => i += 1,
                Err(e) if d.cpu && !d.memory && !d.pids => {
                    tracing::debug!(error = %e, "not moved into its cpu cgroup");
                    let d = self.dirs.remove(i);
                    let _ = fs::remove_dir(&d.path);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn memory_dir(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.memory)
    }

    /// The directory carrying the cpu controller, when the host has one.
    pub fn cpu(&self) -> Option<CpuGroup> {
        let d = self.dirs.iter().find(|d| d.cpu)?;
        Some(CpuGroup {
            path: d.path.clone(),
            version: d.version,
        })
    }

    /// Peak memory use in bytes, when the controller reports it.
    pub fn memory_peak(&self) -> Option<u64> {
        let d = self.memory_dir()?;
        let file = match d.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        fs::read_to_string(d.path.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the memory controller killed a process for exceeding the limit.
    pub fn oom_killed(&self) -> bool {
        let Some(d) = self.memory_dir() else {
            return false;
        };
        let file = match d.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        fs::read_to_string(d.path.join(file))
            .ok()
            .and_then(|t| keyed(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }

    /// SIGKILLs every process still in the cgroup.
    pub fn kill_all(&self) {
        for d in &self.dirs {
            kill_dir(d);
        }
    }
}

/// A sandbox's cgroup in the cpu hierarchy, by path: usable while the
/// sandbox runs, and harmless once it is gone (the writes then fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuGroup {
    path: PathBuf,
    version: Version,
}

impl CpuGroup {
    /// Makes the whole cgroup yield to every other runnable task: `cpu.idle`
    /// (a task of any other group preempts it as soon as it wakes), or,
    /// where that is missing (kernels before 5.15) or refused, the smallest
    /// CPU weight.
    pub fn make_idle(&self) -> Result<(), CgroupError> {
        let idle = self.path.join("cpu.idle");
        if idle.exists() && write(&idle, "1").is_ok() {
            return Ok(());
        }
        match self.version {
            Version::V1 => write(&self.path.join("cpu.shares"), "2"),
            Version::V2 => write(&self.path.join("cpu.weight"), "1"),
        }
    }
}

/// Sets the memory limit so that swap cannot extend it either.
fn apply_memory(d: &Dir, bytes: u64) -> Result<(), CgroupError> {
    match d.version {
        Version::V1 => {
            write(&d.path.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // memsw is memory+swap; present only when swap accounting is on.
            let memsw = d.path.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        Version::V2 => {
            write(&d.path.join("memory.max"), &bytes.to_string())?;
            let swap = d.path.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
    }
    Ok(())
}

/// Pids listed in a cgroup's `cgroup.procs`.
fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process of one cgroup directory: `cgroup.kill` on v2 when the
/// kernel has it, else SIGKILL each listed pid until the list is empty
/// (bounded, in case processes cannot die, e.g. in uninterruptible sleep).
fn kill_dir(d: &Dir) {
    let kill = d.path.join("cgroup.kill");
    if d.version == Version::V2 && kill.exists() && fs::write(&kill, "1").is_ok() {
        wait_empty(&d.path, Duration::from_secs(2));
        return;
    }
    // Frozen (v2), nothing can fork between reading the list and the kill;
    // SIGKILL still gets through to frozen tasks.
    let freeze = d.path.join("cgroup.freeze");
    let frozen = d.version == Version::V2 && freeze.exists() && fs::write(&freeze, "1").is_ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = procs(&d.path);
        if pids.is_empty() || Instant::now() > deadline {
            if frozen {
                let _ = fs::write(&freeze, "0");
            }
            return;
        }
        for pid in pids {
            // SAFETY: plain syscall; a pid that vanished just gives ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_empty(dir: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !procs(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        for d in &self.dirs {
            // rmdir fails with EBUSY until the last task is reaped: retry briefly.
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Err(e) = fs::remove_dir(&d.path) {
                if e.kind() == io::ErrorKind::NotFound || Instant::now() > deadline {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(path = %d.path.display(), error = %e, "cgroup not removed");
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_HOST: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
39 31 0:36 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
";

    const V2_HOST: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const HYBRID_HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn v1(p: &str) -> Option<Place> {
        Some(Place {
            version: Version::V1,
            mount: PathBuf::from(p),
        })
    }

    fn v2(p: &str) -> Option<Place> {
        Some(Place {
            version: Version::V2,
            mount: PathBuf::from(p),
        })
    }

    #[test]
    fn parses_v1_host() {
        let m = parse_mountinfo(V1_HOST);
        assert_eq!(m.v2, None);
        assert_eq!(m.v1.len(), 3);
        assert!(m.v1.contains(&(
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            vec!["cpu".to_owned(), "cpuacct".to_owned()]
        )));
        assert_eq!(locate(&m, "memory", ""), v1("/sys/fs/cgroup/memory"));
        assert_eq!(locate(&m, "pids", ""), v1("/sys/fs/cgroup/pids"));
        assert_eq!(locate(&m, "systemd", ""), None);
    }

    #[test]
    fn parses_v2_host() {
        let m = parse_mountinfo(V2_HOST);
        assert!(m.v1.is_empty());
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup")));
        let ctrls = "cpuset cpu io memory hugetlb pids rdma misc\n";
        assert_eq!(locate(&m, "memory", ctrls), v2("/sys/fs/cgroup"));
        assert_eq!(locate(&m, "pids", ctrls), v2("/sys/fs/cgroup"));
        // Mounted but without the controller: unavailable.
        assert_eq!(locate(&m, "memory", "cpu io pids"), None);
    }

    #[test]
    fn parses_hybrid_host() {
        let m = parse_mountinfo(HYBRID_HOST);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(locate(&m, "memory", ""), v1("/sys/fs/cgroup/memory"));
        assert_eq!(locate(&m, "pids", ""), v1("/sys/fs/cgroup/pids"));
        // v1 wins even if the v2 root were to list it.
        assert_eq!(locate(&m, "memory", "memory"), v1("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn unescapes_mount_points() {
        let m =
            parse_mountinfo("41 31 0:38 / /mnt/my\\040cgroup rw,relatime - cgroup2 cgroup2 rw\n");
        assert_eq!(m.v2, Some(PathBuf::from("/mnt/my cgroup")));
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(!valid_id(bad), "{bad:?}");
            assert!(matches!(
                Cgroup::create(bad, &CgroupLimits::default()),
                Err(CgroupError::InvalidId(_))
            ));
        }
        assert!(valid_id("sbx-1a2b_3.c"));
    }

    #[test]
    fn the_parent_cap_keeps_some_of_the_host() {
        const GIB: u64 = 1 << 30;
        let caps = |mem, pids| {
            let c = parent_caps(mem, pids);
            (c.memory_bytes.unwrap(), c.pids.unwrap())
        };
        assert_eq!(caps(24 * GIB, 32768), (21 * GIB, 24576));
        // At least 1 GiB kept; never a cap that leaves sandboxes nothing.
        assert_eq!(caps(4 * GIB, 4_194_304), (3 * GIB, 3_145_728));
        assert_eq!(caps(GIB, 100).0, 1 << 28);
        assert_eq!(caps(GIB, 100).1, 1024);
    }

    #[test]
    fn reads_keyed_files() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(t, "oom_kill"), Some(3));
        assert_eq!(keyed(t, "oom"), None);
    }
}
