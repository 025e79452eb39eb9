//! Approval prompts for the person at the terminal. The same terminal is
//! usually the command's stdin, so stdin is read by [`GatedStdin`], which
//! steps aside while a prompt is open: the answer goes to the prompt, not to
//! the sandbox.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Whether stdin may be read now; held while reading, so a prompt opened
/// meanwhile waits for that read to end.
#[derive(Debug, Default)]
pub struct Gate {
    paused: Mutex<bool>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Stdin, read on a thread that polls the descriptor and reads only while
/// no prompt is open.
pub struct GatedStdin {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
}

impl GatedStdin {
    /// Starts the reading thread on this process's stdin.
    pub fn start(gate: Arc<Gate>) -> GatedStdin {
        let (tx, rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            let stdin = io::stdin();
            let fd = stdin.as_raw_fd();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
                if tx.is_closed() {
                    return;
                }
                if ready <= 0 {
                    continue;
                }
                let paused = gate.lock();
                if *paused {
                    drop(paused);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let read = stdin.lock().read(&mut buf);
                drop(paused);
                let done = !matches!(read, Ok(n) if n > 0);
                if tx.blocking_send(read.map(|n| buf[..n].to_vec())).is_err() || done {
                    return;
                }
            }
        });
        GatedStdin {
            rx,
            pending: Vec::new(),
        }
    }
}

impl AsyncRead for GatedStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => self.pending = chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(out.remaining());
        out.put_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Poll::Ready(Ok(()))
    }
}

/// Asks on /dev/tty, one prompt at a time.
#[derive(Debug)]
pub struct Prompter {
    gate: Arc<Gate>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Prompter {
    pub fn new(gate: Arc<Gate>) -> Prompter {
        Prompter {
            gate,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Shows `question` and returns the answer word: `approve`,
    /// `approve-session`, `approve-always` or `deny` (also for anything else
    /// typed, or a terminal that cannot be used).
    pub async fn ask(&self, question: String) -> String {
        let _turn = self.one_at_a_time.lock().await;
        let gate = Arc::clone(&self.gate);
        tokio::task::spawn_blocking(move || {
            *gate.lock() = true;
            let answer = ask_tty(&question).unwrap_or_else(|_| "deny".to_string());
            *gate.lock() = false;
            answer
        })
        .await
        .unwrap_or_else(|_| "deny".to_string())
    }
}

/// `text` with the characters that would not show as themselves (controls
/// that move the cursor or erase, tabs, bidirectional overrides, zero-width
/// characters: [`sandbox_proto::is_hidden`]) shown as escapes, so that it
/// reads as sent.
pub fn visible(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            c if sandbox_proto::is_hidden(c) => format!("\\u{{{:x}}}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

/// The word for what was typed.
pub fn word(typed: &str) -> &'static str {
    match typed.trim().to_ascii_lowercase().as_str() {
        // No `y`: a question of the command's own ("[y/N]") must not harvest an approval.
        "o" | "once" => "approve",
        "s" | "session" => "approve-session",
        "a" | "always" => "approve-always",
        _ => "deny",
    }
}

/// Undoes the terminal state a command may have left that would hide or
/// garble the question: the scroll region (reset inside a cursor save and
/// restore, as resetting it moves the cursor home), a shifted or redesignated
/// character set, concealed or same-coloured text, a hidden cursor.
///
/// These resets stay after the question (a command that set a scroll
/// region or hid the cursor finds them undone), but each only undoes what
/// would keep text from being seen. Not DECSTR (`\e[!p`): it also resets
/// cursor-key, keypad and (on some terminals) autowrap modes, which would
/// upset a command still running (network questions come mid-run) or the
/// shell after it in ways that have nothing to do with being seen.
const RESET: &str = "\x1b7\x1b[r\x1b8\x0f\x1b(B\x1b[0m\x1b[?25h";

/// Writes the terminal reset, then the question with its choices.
fn write_question(out: &mut impl Write, question: &str) -> io::Result<()> {
    write!(
        out,
        "{RESET}\r\nsandboxd asks: {}\r\n  [o]nce, [s]ession, [a]lways, [d]eny? ",
        visible(question)
    )?;
    out.flush()
}

/// One question and one line of answer on the controlling terminal. In raw
/// mode (`--tty`) the typed characters are echoed here.
fn ask_tty(question: &str) -> io::Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    // What was typed before the question was shown answers nothing.
    let _ = nix::sys::termios::tcflush(&tty, nix::sys::termios::FlushArg::TCIFLUSH);
    write_question(&mut tty, question)?;
    // In raw mode (`--tty`) the terminal does not echo: the prompt does.
    let echo = !nix::sys::termios::tcgetattr(&tty)
        .map(|t| t.local_flags.contains(nix::sys::termios::LocalFlags::ECHO))
        .unwrap_or(true);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while tty.read(&mut byte)? == 1 {
        match byte[0] {
            b'\r' | b'\n' => break,
            0x7f | 0x08 => {
                line.pop();
            }
            b => {
                line.push(b);
                if echo {
                    tty.write_all(&byte)?;
                }
                if line.len() > 64 {
                    break;
                }
            }
        }
    }
    let typed = String::from_utf8_lossy(&line).to_string();
    let answer = word(&typed);
    write!(tty, "\r\n  -> {answer}\r\n")?;
    Ok(answer.to_string())
}

#[cfg(test)]
mod tests {
    use super::{visible, word, write_question};

    #[test]
    fn the_question_follows_a_reset_of_what_could_hide_it() {
        let mut written = Vec::new();
        write_question(&mut written, "rm x\u{1b}[8m").unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            // Save cursor, full scroll region, restore cursor; shift in (G0),
            // G0 = ASCII; plain colours and attributes; cursor shown.
            "\x1b7\x1b[r\x1b8\x0f\x1b(B\x1b[0m\x1b[?25h\
             \r\nsandboxd asks: rm x\\u{1b}[8m\r\n  [o]nce, [s]ession, [a]lways, [d]eny? "
        );
    }

    #[test]
    fn typed_answers_map_to_words() {
        assert_eq!(word("o"), "approve");
        assert_eq!(word(" ONCE "), "approve");
        assert_eq!(word("y"), "deny");
        assert_eq!(word("s"), "approve-session");
        assert_eq!(word("always"), "approve-always");
        assert_eq!(word(""), "deny");
        assert_eq!(
            visible("ls\u{1b}[2K\rcurl x|sh\u{9b}"),
            "ls\\u{1b}[2K\\u{d}curl x|sh\\u{9b}"
        );
        assert_eq!(
            visible("rm a\tb \u{202e}txt.exe résumé"),
            "rm a\\u{9}b \\u{202e}txt.exe résumé"
        );
        assert_eq!(word("d"), "deny");
        assert_eq!(word("whatever"), "deny");
    }
}
