//! Watches one running sandbox: pumps stdin in and stdout/stderr out with a
//! byte cap (bounded buffers: the daemon never holds unbounded output),
//! enforces the timeout, forwards signals (SIGINT, then SIGKILL after a grace
//! period), and reports the exit with resource usage. When it ends, for any
//! reason, no process of the sandbox is left.

use crate::backend::linux::Spawned;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the daemon asks of a running sandbox.
#[derive(Debug)]
pub enum Control {
    Stdin(Vec<u8>),
    StdinEof,
    /// Forward a signal; SIGINT also starts the grace period.
    Signal(i32),
    Resize { rows: u16, cols: u16 },
    /// End it now (SIGKILL of the whole sandbox); the reason goes in the exit.
    Kill(String),
}

/// What a running sandbox produces, in order; `Exit` is last.
#[derive(Debug)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// e.g. kind "output-truncated" once the cap is reached.
    Event { kind: String, message: String },
    Exit(ExitInfo),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    /// Why sandboxd ended it, if it did.
    pub reason: Option<String>,
    pub wall: Duration,
    pub user: Duration,
    pub system: Duration,
    pub max_rss_bytes: u64,
    pub memory_peak_bytes: Option<u64>,
    pub output_bytes: u64,
    pub output_dropped_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Option<Duration>,
    /// Bytes of stdout+stderr forwarded; the rest is read and dropped.
    pub output_cap: u64,
    /// Time between the SIGINT of a Ctrl-C and the SIGKILL.
    pub grace: Duration,
}

/// Handle to send [`Control`]s; dropping every handle kills the sandbox.
#[derive(Debug, Clone)]
pub struct Handle {
    pub control: mpsc::Sender<Control>,
}

/// Starts supervising `child`. Output arrives on the receiver, ending with `Exit`.
pub fn supervise(child: Spawned, opts: Options) -> (Handle, mpsc::Receiver<Output>) {
    let _ = (child, opts);
    todo!("supervise")
}
