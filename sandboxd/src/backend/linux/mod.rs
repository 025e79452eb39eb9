//! The Linux backend. The daemon side ([`spawn`]) clones a child into fresh
//! mount, pid, ipc, uts and network namespaces that re-executes this binary as
//! the sandbox's init ([`init`]); init builds the file system view, then forks
//! the command, which drops to the caller's credentials and applies, in this
//! order: no capabilities, no_new_privs, Landlock, seccomp, exec.
//!
//! The pieces: [`spawn`] (daemon side), [`init`] (pid 1 inside), [`mounts`]
//! (the file system view), [`paths`] (the caller's paths, opened as the
//! caller), [`netns`] (loopback namespaces, pre-made in a small pool); [`spawn`]
//! also keeps a small pool of pre-started inits.

pub mod cgroup;
pub mod creds;
pub mod hooks;
pub mod init;
pub mod landlock;
pub mod mounts;
pub mod netns;
pub mod paths;
pub mod rlimit;
pub mod seccomp;
pub mod spawn;

pub use spawn::{close_pool, prefill, spawn, spawn_with, SpawnError, Spawned};
