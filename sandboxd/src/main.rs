//! sandboxd: flags and config, wired to the daemon's pieces.

fn main() -> anyhow::Result<()> {
    // The sandbox's init re-executes this binary; it must not start a runtime.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(sandboxd::backend::linux::init::ARG)) {
        sandboxd::backend::linux::init::main();
    }
    Ok(())
}
