//! The local terminal: raw mode for `--tty` and its window size.

use std::io::IsTerminal;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use sandbox_proto::v1::WindowSize;

/// Puts the terminal on stdin in raw mode; the saved mode is restored on drop.
///
/// Keystrokes such as Ctrl-C then reach the sandboxed program as bytes
/// instead of signalling the client.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Enables raw mode when stdin is a terminal; `Ok(None)` when it is not.
    pub fn enable() -> Result<Option<RawMode>, nix::Error> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing sensible is left to do if the terminal is gone.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// The window size of the terminal on stdin, else on stdout; `None` when
/// neither is a terminal.
pub fn window_size() -> Option<WindowSize> {
    [libc::STDIN_FILENO, libc::STDOUT_FILENO]
        .into_iter()
        .find_map(|fd| {
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one winsize into the valid, exclusively
            // borrowed struct; it fails harmlessly on a non-terminal fd.
            let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
            (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then(|| WindowSize {
                rows: u32::from(ws.ws_row),
                cols: u32::from(ws.ws_col),
            })
        })
}
