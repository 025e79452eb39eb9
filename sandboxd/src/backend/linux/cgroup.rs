//! Per-sandbox cgroups for memory and pids, on cgroup v1 controllers or v2,
//! whichever hierarchy carries each controller on this host.

/// Limits to enforce; `None` leaves the controller unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy carries the {0} controller; the limit cannot be enforced")]
    NoController(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One sandbox's cgroup(s). Removed on drop (after its processes are gone).
#[derive(Debug)]
pub struct Cgroup {}

impl Cgroup {
    /// Creates the cgroup(s) `sandboxd/<id>` with `limits` applied.
    pub fn create(id: &str, limits: &CgroupLimits) -> Result<Self, CgroupError> {
        let _ = (id, limits);
        todo!("cgroup create")
    }

    /// Moves `pid` into every cgroup of this sandbox.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        let _ = pid;
        todo!("cgroup add")
    }

    /// Peak memory use in bytes, when the controller reports it.
    pub fn memory_peak(&self) -> Option<u64> {
        todo!("memory peak")
    }

    /// Whether the memory controller killed a process for exceeding the limit.
    pub fn oom_killed(&self) -> bool {
        todo!("oom")
    }

    /// SIGKILLs every process still in the cgroup.
    pub fn kill_all(&self) {
        todo!("kill all")
    }
}
