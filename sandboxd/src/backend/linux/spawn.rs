//! Daemon side of starting a sandbox: clone into new namespaces, place the
//! child in its cgroup, hand it the spec, wait until the command has started.

use super::cgroup::{Cgroup, CgroupLimits};
use crate::backend::spec::SandboxSpec;
use std::os::fd::OwnedFd;

/// A sandbox whose command has been executed (or failed to exec: the report
/// stream then carries `ExecFailed`).
#[derive(Debug)]
pub struct Spawned {
    /// Host pid of the sandbox's init (pid 1 inside). Killing it ends every
    /// process of the sandbox.
    pub pid: i32,
    /// pidfd of the init, readable when it exits.
    pub pidfd: OwnedFd,
    /// Write end of the command's stdin (the pty master with `tty`).
    pub stdin: OwnedFd,
    /// Read end of the command's stdout (the pty master with `tty`).
    pub stdout: OwnedFd,
    /// Read end of the command's stderr; `None` with `tty`.
    pub stderr: Option<OwnedFd>,
    /// Read end of the init's report stream, positioned after `Started`.
    pub reports: OwnedFd,
    pub cgroup: Cgroup,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The sandbox could not be built; names the step and the path.
    #[error("sandbox setup failed at {step}{}: {error}", path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Setup {
        step: String,
        path: Option<String>,
        error: String,
    },
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    #[error("{context}: {source}")]
    Os {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Starts the sandbox described by `spec` under `limits`.
pub async fn spawn(spec: &SandboxSpec, limits: &CgroupLimits) -> Result<Spawned, SpawnError> {
    let _ = (spec, limits);
    todo!("spawn")
}
