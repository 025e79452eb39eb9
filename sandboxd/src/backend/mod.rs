//! Isolation backends. Linux is the real one; other platforms refuse clearly.

pub mod spec;

#[cfg(target_os = "linux")]
pub mod linux;
