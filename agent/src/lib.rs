//! Client library of `sandboxd`, the daemon that runs commands confined as
//! their unprivileged caller.
//!
//! The `agent` CLI is a thin layer over this crate; other Rust programs can use
//! it the same way:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agent::{connect, run_exec, socket_path, ExecIo, ExecOptions};
//! let mut client = connect(&socket_path(None)).await?;
//! let opts = ExecOptions::new(vec!["echo".into(), "hi".into()], "/srv/work".into());
//! let status = run_exec(&mut client, &opts, ExecIo::stdio(None)).await?;
//! std::process::exit(status.code());
//! # }
//! ```
//!
//! The caller's identity is taken by the daemon from the socket's peer
//! credentials; nothing in this crate needs privileges.

pub mod attach;
pub mod client;
pub mod duration;
pub mod exec;
pub mod prompt;
pub mod tty;

pub use attach::run_attach;
pub use client::{connect, socket_path, Client, ConnectError, DEFAULT_SOCKET, SOCKET_ENV};
pub use duration::{parse_duration, DurationError};
pub use exec::{
    exit_code, run_exec, Approval, Approver, Control, ExecError, ExecIo, ExecOptions, ExitStatus,
    DAEMON_FAILURE,
};
/// The generated `sandbox.v1` API types, for requests this crate has no helper for.
pub use sandbox_proto as proto;
