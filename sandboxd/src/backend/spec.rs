//! The sandbox plan the daemon hands to the in-namespace init process, and the
//! messages that process reports back. Everything here is already decided and
//! expanded: the init process enforces, it does not interpret policy.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The signals a caller may send to its sandbox, by number and name: the
/// init passes them on to the command. Any other would reach the init
/// itself (SIGSTOP would freeze the sandbox, SIGSEGV end it unreported);
/// SIGKILL is the daemon's own kill.
pub const SIGNALS: &[(i32, &str)] = &[
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// File descriptors the init process receives (besides 0, 1, 2 for the command).
pub mod fds {
    /// Read end: the JSON-encoded [`super::SandboxSpec`] after its length (4
    /// bytes, little-endian), then [`super::GO`] once the command may start
    /// (EOF instead: it must not).
    pub const SPEC: i32 = 3;
    /// The init's end of a Unix seqpacket socket: one JSON
    /// [`super::InitReport`] per datagram (newline-terminated). With `tty`,
    /// the first report carries the master of the sandbox's pty (SCM_RIGHTS).
    pub const REPORT: i32 = 4;
}

/// Where a bare command name is looked up when the command's environment
/// has no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The byte on the spec pipe that lets the command start.
pub const GO: u8 = b'!';

/// The largest spec an init accepts.
pub const MAX_SPEC: usize = 16 << 20;

/// The largest report the daemon reads: one datagram of the report socket
/// (below the socket's default send buffer, so it is always sent whole).
pub const MAX_REPORT: usize = 128 << 10;

/// Bytes of a report's text field kept by [`InitReport::bounded`]. Three such
/// fields, even with every byte JSON-escaped, stay below [`MAX_REPORT`].
const MAX_REPORT_TEXT: usize = 4 << 10;

/// Everything the init process needs to build the sandbox and run the command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Sandbox id (for the hostname and messages).
    pub id: String,
    /// argv[0] is looked up in the sandbox's PATH if it has no slash.
    pub argv: Vec<String>,
    /// The command's whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory, same path as outside; resolved with the caller's credentials.
    pub cwd: PathBuf,
    pub creds: Credentials,
    pub fs: FsPlan,
    pub landlock: LandlockPlan,
    pub net: NetPlan,
    /// Give the command a pty of the sandbox's own devpts as stdin, stdout,
    /// stderr and controlling terminal (in a new session).
    pub tty: bool,
    /// The command's RLIMIT_NOFILE (soft, hard): not the daemon's raised one.
    pub nofile: (u64, u64),
    /// The command's RLIMIT_NPROC: how many tasks its uid may have on the
    /// host before it may fork no more (`None`: left as it is).
    pub nproc: Option<u64>,
}

/// The caller's identity, which the command runs as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The file system view. Paths are absolute and already template-expanded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsPlan {
    /// Readable roots, mounted read-only (recursively). `/` means the whole host tree.
    pub read: Vec<PathBuf>,
    /// Writable roots, same path inside; each resolved and checked as the caller.
    pub write: Vec<PathBuf>,
    /// `/` among `write` is the whole host, left to the caller's own
    /// permissions (see `EffectivePolicy::write_host`); else `/` must be
    /// writable by the caller, as any root.
    pub write_host: bool,
    /// Glob patterns, absolute or `**/NAME` (under the write roots); matches (expanded at start) become unreadable.
    pub deny_read: Vec<String>,
    /// Glob patterns, absolute or `**/NAME` (under the write roots); matches inside writable roots become read-only and rename-proof.
    pub deny_write: Vec<String>,
    /// Mount a fresh tmpfs on /tmp (the `{tmp}` root).
    pub private_tmp: bool,
    /// The caller's home (`{home}`), where a `~/` in a protected
    /// repository's `core.hooksPath` leads, whatever the command's `HOME`.
    pub home: PathBuf,
    /// Paths hidden entirely (daemon socket dir, state dir): an empty directory
    /// or an empty file is mounted over them.
    pub hide: Vec<PathBuf>,
    /// Host Unix socket paths (from the host's /proc/net/unix) to make unreachable.
    pub host_sockets: Vec<PathBuf>,
    /// Host files bound read-only over files of the view (e.g. the
    /// resolv.conf naming the sandbox's own resolver).
    pub files: Vec<FileBind>,
    /// An empty directory owned by root on the host, used as the mount point of
    /// the new root inside the sandbox's mount namespace.
    pub staging: PathBuf,
}

/// A host file shown read-only in place of a file of the view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileBind {
    /// On the host, opened by the init before the view hides anything.
    pub source: PathBuf,
    /// In the view; must exist there (a symlink is followed inside the view).
    pub target: PathBuf,
}

/// How the Landlock wall is applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LandlockPlan {
    /// Refuse to run when Landlock (at the ABI we need) is unavailable.
    pub required: bool,
    /// TCP ports the command may connect to; `None` leaves TCP unrestricted
    /// (network mode `none` is already lo-only through the network namespace).
    pub connect_tcp: Option<Vec<u16>>,
}

/// The network namespace's setup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NetPlan {
    /// Fresh namespace with only `lo`, up.
    Loopback,
    /// Share the host's network (mode `full`).
    Host,
}

/// What the init process reports on [`fds::REPORT`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum InitReport {
    /// Setup failed before exec; `step` names which (e.g. "mount /proc",
    /// "landlock", "resolve write root"), `path` the path involved if any.
    SetupFailed {
        step: String,
        path: Option<String>,
        error: String,
    },
    /// The command could not be executed: 126 (not executable) or 127 (not found).
    ExecFailed { code: i32, error: String },
    /// The command was executed (pid as seen inside the sandbox).
    Started { pid: i32 },
    /// The command ended.
    Exited {
        /// Exit code when it exited normally.
        code: Option<i32>,
        /// Signal number when a signal killed it.
        signal: Option<i32>,
        user_us: u64,
        system_us: u64,
        max_rss_bytes: u64,
    },
}

impl InitReport {
    /// The report with its texts (a path, an error naming argv[0]) cut to
    /// [`MAX_REPORT_TEXT`] bytes, so that it fits one report datagram.
    pub fn bounded(self) -> InitReport {
        fn cut(mut s: String) -> String {
            if s.len() > MAX_REPORT_TEXT {
                let mut end = MAX_REPORT_TEXT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push_str("...");
            }
            s
        }
        match self {
            InitReport::SetupFailed { step, path, error } => InitReport::SetupFailed {
                step: cut(step),
                path: path.map(cut),
                error: cut(error),
            },
            InitReport::ExecFailed { code, error } => InitReport::ExecFailed {
                code,
                error: cut(error),
            },
            other => other,
        }
    }
}

/// `text` as a glob (the syntax of [`FsPlan`]'s deny patterns) matching
/// itself: `globset::escape`, and a backslash, which globset reads as an
/// escape, as the class `[\\]`.
pub fn glob_literal(text: &str) -> String {
    globset::escape(text).replace('\\', "[\\]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_report_fits_one_datagram_and_keeps_its_text_whole_to_a_char() {
        // Control characters take six bytes each in JSON: the worst case.
        let huge = "\u{1}".repeat(1 << 20);
        let report = InitReport::SetupFailed {
            step: huge.clone(),
            path: Some(huge.clone()),
            error: huge,
        }
        .bounded();
        let line = serde_json::to_vec(&report).unwrap();
        assert!(line.len() < MAX_REPORT, "{} bytes", line.len());

        // A cut never splits a character; short texts are left alone.
        let text = format!("{}é", "a".repeat(MAX_REPORT_TEXT - 1));
        let InitReport::ExecFailed { error, .. } = (InitReport::ExecFailed {
            code: 127,
            error: text,
        })
        .bounded() else {
            panic!("not an exec failure")
        };
        assert_eq!(error, format!("{}...", "a".repeat(MAX_REPORT_TEXT - 1)));
        let short = InitReport::ExecFailed {
            code: 127,
            error: "x: not found".into(),
        };
        assert_eq!(short.clone().bounded(), short);
    }
}
