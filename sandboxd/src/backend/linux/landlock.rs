//! The Landlock wall applied to the command right before seccomp and exec:
//! file system access limited to the granted roots, no connecting to abstract
//! Unix sockets nor signalling processes outside the sandbox's domain, and TCP
//! connect limited to the allowed ports when the plan says so.
//!
//! Deny lists inside granted roots are not expressed here: the mounts enforce
//! them (Landlock can only add access, never subtract a subtree).

use crate::backend::spec::LandlockPlan;
use ::landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    PathFdError, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// The roots the command may use.
#[derive(Debug, Clone, Default)]
pub struct FsAccess {
    /// Readable roots (files or directories): read, list and execute.
    pub read: Vec<PathBuf>,
    /// Writable roots, including writable device nodes: every right.
    pub write: Vec<PathBuf>,
}

/// A Landlock feature this module uses, with the ABI that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// File system access rights (ABI 1).
    Fs,
    /// Linking and renaming across directories (ABI 2).
    Refer,
    /// Truncation (ABI 3).
    Truncate,
    /// TCP bind and connect by port (ABI 4).
    Tcp,
    /// ioctl on device nodes (ABI 5).
    IoctlDev,
    /// Abstract Unix socket and signal scoping (ABI 6).
    Scopes,
}

impl Feature {
    /// The first Landlock ABI providing the feature.
    pub fn abi(self) -> i32 {
        match self {
            Feature::Fs => 1,
            Feature::Refer => 2,
            Feature::Truncate => 3,
            Feature::Tcp => 4,
            Feature::IoctlDev => 5,
            Feature::Scopes => 6,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Feature::Fs => "file system",
            Feature::Refer => "refer",
            Feature::Truncate => "truncate",
            Feature::Tcp => "TCP ports",
            Feature::IoctlDev => "device ioctl",
            Feature::Scopes => "scopes",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "landlock ABI {} ({})", self.abi(), self.what())
    }
}

/// What the wall enforces (or, from [`decide`], would enforce) on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockStatus {
    /// The kernel's Landlock ABI; 0 when Landlock is unavailable.
    pub kernel_abi: i32,
    /// Features in force.
    pub enforced: Vec<Feature>,
    /// Features the plan wanted that the kernel lacks (only when not required).
    pub missing: Vec<Feature>,
}

/// A Landlock step that failed.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("{} unavailable", list(.0))]
    Unavailable(Vec<Feature>),
    #[error("stat landlock root {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("open landlock root {path}: {source}")]
    Open { path: PathBuf, source: PathFdError },
    #[error("landlock ruleset: {0}")]
    Ruleset(#[from] RulesetError),
    #[error("landlock not fully enforced ({0:?}) although the kernel has ABI {1}")]
    NotEnforced(RulesetStatus, i32),
}

fn list(features: &[Feature]) -> String {
    features
        .iter()
        .map(Feature::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The highest ABI whose rights this module grants and handles; newer ABIs
/// add rights (e.g. pathname Unix socket connect) this policy does not model.
const MAX_ABI: i32 = 7;

/// The kernel's Landlock ABI version, 0 when Landlock is absent or disabled.
pub fn kernel_abi() -> i32 {
    // SAFETY: with a null attribute and size 0, the VERSION flag only queries.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// Decides from the kernel's ABI what the plan gets: with `plan.required`
/// any missing feature is an error naming it (fail closed), otherwise the
/// missing ones are listed in the status.
pub fn decide(kernel_abi: i32, plan: &LandlockPlan) -> Result<LandlockStatus, LandlockError> {
    let mut wanted = vec![Feature::Fs, Feature::Refer, Feature::Truncate];
    if plan.connect_tcp.is_some() {
        wanted.push(Feature::Tcp);
    }
    wanted.extend([Feature::IoctlDev, Feature::Scopes]);
    let (enforced, missing): (Vec<_>, Vec<_>) =
        wanted.into_iter().partition(|f| f.abi() <= kernel_abi);
    if plan.required && !missing.is_empty() {
        return Err(LandlockError::Unavailable(missing));
    }
    Ok(LandlockStatus {
        kernel_abi,
        enforced,
        missing,
    })
}

/// Restricts the calling thread (and what it executes) as planned.
pub fn apply(plan: &LandlockPlan, access: &FsAccess) -> Result<LandlockStatus, LandlockError> {
    let kernel = kernel_abi();
    let status = decide(kernel, plan)?;
    if status.enforced.is_empty() {
        return Ok(status);
    }
    let abi = ABI::from(kernel.min(MAX_ABI));
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);

    // Only what this kernel has is requested, so anything less than full
    // enforcement is a real failure.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)?;
    if status.enforced.contains(&Feature::Scopes) {
        ruleset = ruleset.scope(Scope::from_all(abi))?;
    }
    let ports = plan
        .connect_tcp
        .as_deref()
        .filter(|_| status.enforced.contains(&Feature::Tcp));
    if ports.is_some() {
        // Handling bind too denies it: no bind rule is ever added.
        ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
    }
    let mut created = ruleset.create()?;
    for &port in ports.unwrap_or_default() {
        created = created.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }

    let roots = access
        .read
        .iter()
        .map(|p| (p, read))
        .chain(access.write.iter().map(|p| (p, all)));
    for (path, rights) in roots {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(LandlockError::Stat {
                    path: path.clone(),
                    source,
                })
            }
        };
        // Directory-only rights are invalid on a file.
        let rights = if meta.is_dir() {
            rights
        } else {
            rights & AccessFs::from_file(abi)
        };
        let fd = PathFd::new(path).map_err(|source| LandlockError::Open {
            path: path.clone(),
            source,
        })?;
        created = created.add_rule(PathBeneath::new(fd, rights))?;
    }
    let done = created.restrict_self()?;
    if done.ruleset != RulesetStatus::FullyEnforced {
        return Err(LandlockError::NotEnforced(done.ruleset, kernel));
    }
    Ok(status)
}
