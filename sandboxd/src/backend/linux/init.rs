//! The sandbox's init: pid 1 of the new pid namespace, re-executed from the
//! daemon's binary. Builds the file system view, forks the command, reaps,
//! forwards signals, reports the exit on the report fd.

/// The hidden first argument that makes `sandboxd` run as a sandbox init.
pub const ARG: &str = "__sandbox_init";

/// Runs the init; never returns.
pub fn main() -> ! {
    todo!("init")
}
