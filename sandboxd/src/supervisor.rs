//! Watches one running sandbox: pumps stdin in and stdout/stderr out with a
//! byte cap (bounded buffers: the daemon never holds unbounded output),
//! enforces the timeout, forwards signals (SIGINT, then SIGKILL after a grace
//! period), and reports the exit with resource usage. When it ends, for any
//! reason, no process of the sandbox is left, and its exit is known at once,
//! however slowly its output is taken.

use crate::backend::linux::cgroup::Cgroup;
use crate::backend::linux::Spawned;
use crate::backend::spec::{InitReport, MAX_REPORT, SIGNALS};
use crate::outstanding::Outstanding;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

/// What the daemon asks of a running sandbox.
#[derive(Debug)]
pub enum Control {
    Stdin(Vec<u8>),
    StdinEof,
    /// Forward a signal; SIGINT also starts the grace period.
    Signal(i32),
    Resize {
        rows: u16,
        cols: u16,
    },
    /// End it now (SIGKILL of the whole sandbox); the reason goes in the exit.
    Kill(String),
}

/// A signal a caller may not send to a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signal {number}{} may not be sent to a sandbox: only {} (SIGKILL kills it)", name.map(|n| format!(" ({n})")).unwrap_or_else(|| " (not a signal)".into()), allowed())]
pub struct SignalRefused {
    pub number: i32,
    pub name: Option<&'static str>,
}

fn allowed() -> String {
    SIGNALS
        .iter()
        .map(|&(_, n)| n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The control for signal `sig` sent by a caller: one of [`SIGNALS`], or
/// SIGKILL as a kill for `kill_reason`; anything else is refused.
pub fn caller_signal(
    sig: i32,
    kill_reason: impl FnOnce() -> String,
) -> Result<Control, SignalRefused> {
    if sig == libc::SIGKILL {
        return Ok(Control::Kill(kill_reason()));
    }
    if SIGNALS.iter().any(|&(s, _)| s == sig) {
        return Ok(Control::Signal(sig));
    }
    Err(SignalRefused {
        number: sig,
        name: nix::sys::signal::Signal::try_from(sig)
            .ok()
            .map(|s| s.as_str()),
    })
}

/// What a running sandbox produces, in order; `Exit` is last.
#[derive(Debug)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// e.g. kind "output-truncated" once the cap is reached.
    Event {
        kind: String,
        message: String,
    },
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
    /// Bytes of stdout+stderr forwarded to the receiver.
    pub output_bytes: u64,
    /// Bytes read after the cap was reached and dropped.
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
///
/// Stdin travels on a bounded queue (back-pressure from a command that does
/// not read); signals, resizes and kills wait apart, so a full stdin never
/// delays them, and bounded whatever a client sends: at most
/// [`MAX_PENDING_SIGNALS`] signals, the latest resize, one kill.
#[derive(Debug, Clone)]
pub struct Handle {
    stdin: mpsc::Sender<Control>,
    urgent: Arc<UrgentSender>,
}

/// Why a control was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Undelivered {
    /// The sandbox's supervisor has ended.
    #[error("the sandbox has ended")]
    Gone,
    /// Too many signals wait already; this one is dropped.
    #[error(
        "signal {0} not sent: {MAX_PENDING_SIGNALS} signals are already waiting to be delivered"
    )]
    SignalsPending(i32),
}

/// Signals that may wait for the supervisor at once; more are refused.
pub const MAX_PENDING_SIGNALS: usize = 8;

/// Signals, the latest resize and a kill waiting for the supervisor.
#[derive(Debug, Default)]
struct Waiting {
    kill: Option<String>,
    signals: VecDeque<i32>,
    resize: Option<(u16, u16)>,
    /// Every [`Handle`] is gone.
    closed: bool,
}

#[derive(Debug, Default)]
struct Urgent {
    waiting: Mutex<Waiting>,
    wake: Notify,
}

impl Urgent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Each update is a single assignment or push: a panic leaves it whole.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handles' side of [`Urgent`]; when the last handle drops, the
/// supervisor hears that the client is gone.
#[derive(Debug)]
struct UrgentSender(Arc<Urgent>);

impl Drop for UrgentSender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

/// Where the supervisor takes signals, resizes and kills from: a kill
/// first, then signals in order, then the latest resize.
#[derive(Debug)]
pub struct UrgentReceiver(Arc<Urgent>);

impl UrgentReceiver {
    /// The next control waiting, if any.
    pub fn try_recv(&mut self) -> Option<Control> {
        self.take().ok().flatten()
    }

    /// The next control; `None` once every handle is gone and nothing waits.
    pub async fn recv(&mut self) -> Option<Control> {
        loop {
            match self.take() {
                Ok(Some(c)) => return Some(c),
                Ok(None) => {}
                Err(HandlesGone) => return None,
            }
            // One receiver: a wake-up sent meanwhile is kept as a permit.
            self.0.wake.notified().await;
        }
    }

    /// The next control waiting, if any, or that none will come.
    fn take(&mut self) -> Result<Option<Control>, HandlesGone> {
        let mut w = self.0.lock();
        if let Some(reason) = w.kill.take() {
            return Ok(Some(Control::Kill(reason)));
        }
        if let Some(sig) = w.signals.pop_front() {
            return Ok(Some(Control::Signal(sig)));
        }
        if let Some((rows, cols)) = w.resize.take() {
            return Ok(Some(Control::Resize { rows, cols }));
        }
        if w.closed {
            return Err(HandlesGone);
        }
        Ok(None)
    }
}

/// Every [`Handle`] is gone: no control will come.
struct HandlesGone;

impl Handle {
    /// A handle and the receivers its controls arrive on: stdin first, then
    /// everything else. [`supervise`] uses it; so can a stand-in for a sandbox.
    pub fn channel() -> (Handle, mpsc::Receiver<Control>, UrgentReceiver) {
        let (stdin, stdin_rx) = mpsc::channel(CONTROL_QUEUE);
        let urgent = Arc::new(Urgent::default());
        let handle = Handle {
            stdin,
            urgent: Arc::new(UrgentSender(Arc::clone(&urgent))),
        };
        (handle, stdin_rx, UrgentReceiver(urgent))
    }

    /// Delivers `c`, waiting for room when it is stdin and the command is
    /// not reading. A resize replaces one still waiting; a kill waiting
    /// already keeps its reason; a signal is refused past
    /// [`MAX_PENDING_SIGNALS`].
    pub async fn send(&self, c: Control) -> Result<(), Undelivered> {
        let urgent = &self.urgent.0;
        {
            let mut w = urgent.lock();
            // Once the supervisor is gone, nobody reads: refuse.
            if Arc::strong_count(urgent) == 1 {
                return Err(Undelivered::Gone);
            }
            match c {
                Control::Stdin(_) | Control::StdinEof => {
                    drop(w);
                    return self.stdin.send(c).await.map_err(|_| Undelivered::Gone);
                }
                Control::Signal(sig) if w.signals.len() >= MAX_PENDING_SIGNALS => {
                    return Err(Undelivered::SignalsPending(sig));
                }
                Control::Signal(sig) => w.signals.push_back(sig),
                Control::Resize { rows, cols } => w.resize = Some((rows, cols)),
                Control::Kill(reason) => {
                    w.kill.get_or_insert(reason);
                }
            }
        }
        urgent.wake.notify_one();
        Ok(())
    }
}

/// Largest chunk of output in one [`Output`] message.
const CHUNK: usize = 64 * 1024;
/// Output messages in flight; with [`CHUNK`] this bounds what the daemon holds.
const OUTPUT_QUEUE: usize = 16;
/// Read from a stream once the sandbox is dead: a pipe holds at most this
/// much (fs.pipe-max-size's default), and a writer that got the pipe out of
/// the sandbox gets no more than that through.
const LEFT_MAX: usize = 1024 * 1024;
/// Controls in flight from the client (a stdin chunk may be megabytes: the
/// client waits rather than the daemon holding many).
const CONTROL_QUEUE: usize = 8;
/// Stdin bytes held while the command does not read; past it, stdin waits.
const STDIN_MAX: usize = 1024 * 1024;
/// How long to wait for the init's last report after it exited.
const REPORT_WAIT: Duration = Duration::from_secs(2);

/// Starts supervising `child`. Output arrives on the receiver, ending with `Exit`.
/// The exit also comes on the oneshot as soon as the sandbox has ended, ahead
/// of output still waiting to be taken (at most what its pipes held then).
/// Dropping every [`Handle`], or the receiver, kills the sandbox. Must be
/// called within a tokio runtime.
pub fn supervise(
    child: Spawned,
    opts: Options,
) -> (Handle, mpsc::Receiver<Output>, oneshot::Receiver<ExitInfo>) {
    let (handle, stdin_rx, urgent_rx) = Handle::channel();
    let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
    let (exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(run(child, opts, stdin_rx, urgent_rx, out_tx, exit_tx));
    (handle, out_rx, exit_rx)
}

/// Output accounting shared by the stdout and stderr pumps.
#[derive(Debug, Default)]
struct Counters {
    forwarded: u64,
    dropped: u64,
    truncated: bool,
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn async_fd(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(fd.as_raw_fd())?;
    register(fd, interest)
}

fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, so the descriptor stays
    // open and the same for the AsyncFd's whole life.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

fn sys_read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // A pty master reads EIO once the terminal side is closed: that is EOF.
        return if e.raw_os_error() == Some(libc::EIO) {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}

fn sys_write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sends `sig` through the pidfd, so a recycled pid is never hit.
fn send_signal(pidfd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal with no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        tracing::debug!(sig, error = %io::Error::last_os_error(), "signal not delivered");
    }
}

fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "resize failed");
    }
}

/// Reads one output stream and forwards it in chunks until EOF, counting
/// against the shared cap; past the cap it keeps reading (so the writer does
/// not block) and drops. Once `stop` is set (the sandbox is dead), it reads
/// what is buffered (at most [`LEFT_MAX`]) and returns it with what it was
/// waiting to send, instead of waiting for more room or more output.
async fn pump_out(
    fd: OwnedFd,
    stderr: bool,
    cap: u64,
    counters: Arc<Mutex<Counters>>,
    tx: mpsc::Sender<Output>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Output> {
    let mut left = Vec::new();
    let afd = match async_fd(fd, Interest::READABLE) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "output pipe unusable");
            return left;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut stopping = *stop.borrow();
    let mut drained = 0;
    loop {
        let n = if stopping {
            if drained >= LEFT_MAX {
                break;
            }
            match sys_read(afd.get_ref(), &mut buf) {
                Ok(n) => {
                    drained += n;
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        } else {
            let mut guard = tokio::select! {
                g = afd.readable() => match g {
                    Ok(g) => g,
                    Err(_) => break,
                },
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            };
            match guard.try_io(|inner| sys_read(inner.get_ref(), &mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(_)) => break,
                Err(_would_block) => continue,
            }
        };
        if n == 0 {
            break;
        }
        let (forward, first_drop) = {
            let mut c = counters.lock().unwrap_or_else(|p| p.into_inner());
            let room = cap.saturating_sub(c.forwarded);
            let forward = (n as u64).min(room) as usize;
            c.forwarded += forward as u64;
            c.dropped += (n - forward) as u64;
            let first_drop = forward < n && !c.truncated;
            c.truncated |= first_drop;
            (forward, first_drop)
        };
        let data = (forward > 0).then(|| {
            let data = buf[..forward].to_vec();
            match stderr {
                true => Output::Stderr(data),
                false => Output::Stdout(data),
            }
        });
        let truncated = first_drop.then(|| Output::Event {
            kind: "output-truncated".into(),
            message: format!("output exceeded {cap} bytes; the rest was dropped"),
        });
        for msg in data.into_iter().chain(truncated) {
            if stopping {
                left.push(msg);
                continue;
            }
            tokio::select! {
                // A gone receiver ends the sandbox elsewhere; keep draining meanwhile.
                permit = tx.reserve() => if let Ok(p) = permit { p.send(msg) },
                _ = stop.changed() => {
                    stopping = true;
                    left.push(msg);
                }
            }
        }
    }
    left
}

/// Why the sandbox was ended early by the supervisor.
struct Ended {
    reason: String,
    timed_out: bool,
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes what it can of `pending` once stdin is writable.
async fn write_stdin(stdin: &AsyncFd<OwnedFd>, pending: &VecDeque<u8>) -> io::Result<usize> {
    loop {
        let mut guard = stdin.writable().await?;
        let (front, _) = pending.as_slices();
        match guard.try_io(|inner| sys_write(inner.get_ref(), front)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn run(
    child: Spawned,
    opts: Options,
    mut ctl: mpsc::Receiver<Control>,
    mut urgent: UrgentReceiver,
    out: mpsc::Sender<Output>,
    exit: oneshot::Sender<ExitInfo>,
) {
    let start = Instant::now();
    let Spawned {
        pid,
        pidfd,
        stdin,
        stdout,
        stderr,
        reports,
        cgroup,
        mount_ns,
    } = child;
    let tty = stderr.is_none();

    let counters = Arc::new(Mutex::new(Counters::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = vec![tokio::spawn(pump_out(
        stdout,
        false,
        opts.output_cap,
        counters.clone(),
        out.clone(),
        stop_rx.clone(),
    ))];
    if let Some(err) = stderr {
        readers.push(tokio::spawn(pump_out(
            err,
            true,
            opts.output_cap,
            counters.clone(),
            out.clone(),
            stop_rx,
        )));
    }

    // The pidfd becomes readable when the init exits. Without it there is no
    // way to watch the sandbox: end it rather than leave it unwatched.
    let pidfd = match register(pidfd, Interest::READABLE) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(pid, error = %e, "cannot watch the sandbox's pidfd; killing it");
            // SAFETY: plain kill of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            finish_cgroup(cgroup, mount_ns).await;
            let info = ExitInfo {
                signal: Some(libc::SIGKILL),
                reason: Some(format!("cannot watch the sandbox: {e}")),
                ..Default::default()
            };
            let _ = exit.send(info.clone());
            let _ = out.send(Output::Exit(info)).await;
            return;
        }
    };
    let mut stdin = match async_fd(stdin, Interest::WRITABLE) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "stdin pipe unusable");
            None
        }
    };
    let mut pending: VecDeque<u8> = VecDeque::new();
    let mut close_stdin = false;
    let deadline = opts.timeout.map(|t| start + t);
    let mut grace: Option<Instant> = None;
    let mut ended: Option<Ended> = None;
    let mut ctl_open = true;

    loop {
        let alive = ended.is_none();
        let control = tokio::select! {
            biased;
            _ = pidfd.readable() => break,
            _ = sleep_opt(deadline), if alive => {
                send_signal(pidfd.get_ref(), libc::SIGKILL);
                let t = opts.timeout.unwrap_or_default();
                ended = Some(Ended { reason: format!("timed out after {t:?}"), timed_out: true });
                None
            }
            _ = sleep_opt(grace), if alive => {
                send_signal(pidfd.get_ref(), libc::SIGKILL);
                ended = Some(Ended {
                    reason: format!("still running {:?} after SIGINT; killed", opts.grace),
                    timed_out: false,
                });
                None
            }
            _ = out.closed(), if alive => {
                send_signal(pidfd.get_ref(), libc::SIGKILL);
                ended = Some(Ended { reason: "output receiver gone".into(), timed_out: false });
                None
            }
            c = urgent.recv(), if ctl_open => Some(c),
            c = ctl.recv(), if ctl_open && pending.len() < STDIN_MAX => Some(c),
            r = async { write_stdin(stdin.as_ref().expect("guarded"), &pending).await },
                if stdin.is_some() && !pending.is_empty() => {
                match r {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        // The command closed its stdin (EPIPE): nothing more goes in.
                        pending.clear();
                        stdin = None;
                    }
                }
                None
            }
        };
        match control {
            None => {}
            // Every Handle dropped: the client is gone.
            Some(None) => {
                ctl_open = false;
                if alive {
                    send_signal(pidfd.get_ref(), libc::SIGKILL);
                    ended = Some(Ended {
                        reason: "client gone".into(),
                        timed_out: false,
                    });
                }
            }
            Some(Some(_)) if !alive => {}
            Some(Some(Control::Stdin(data))) if stdin.is_some() && !close_stdin => {
                pending.extend(data);
            }
            Some(Some(Control::Stdin(_))) => {}
            Some(Some(Control::StdinEof)) => {
                if tty {
                    // A pty has no half-close: send the EOF character.
                    pending.push_back(0x04);
                } else {
                    close_stdin = true;
                }
            }
            Some(Some(Control::Signal(sig))) => {
                send_signal(pidfd.get_ref(), sig);
                if sig == libc::SIGINT && grace.is_none() {
                    grace = Some(Instant::now() + opts.grace);
                }
            }
            Some(Some(Control::Resize { rows, cols })) => {
                if let (true, Some(s)) = (tty, stdin.as_ref()) {
                    set_winsize(s.get_ref(), rows, cols);
                }
            }
            Some(Some(Control::Kill(reason))) => {
                send_signal(pidfd.get_ref(), libc::SIGKILL);
                ended = Some(Ended {
                    reason,
                    timed_out: false,
                });
            }
        }
        if close_stdin && pending.is_empty() {
            stdin = None;
        }
    }
    drop(stdin);

    let status = reap(pidfd.get_ref());
    let report = read_exit_report(reports).await;
    // Whoever came first decides, once: an init that reported its command's
    // end saw it end before any SIGKILL of ours (timeout, grace, kill) got
    // to the init, which dies of it without a word. Its report then stands,
    // and nothing says the supervisor ended it.
    let ended = ended.filter(|_| report.is_none());
    let mut info = ExitInfo::default();
    match report {
        Some(InitReport::Exited {
            code,
            signal,
            user_us,
            system_us,
            max_rss_bytes,
        }) => {
            info.code = code;
            info.signal = signal;
            info.user = Duration::from_micros(user_us);
            info.system = Duration::from_micros(system_us);
            info.max_rss_bytes = max_rss_bytes;
        }
        _ => match status {
            Some(Status::Exited(c)) => info.code = Some(c),
            Some(Status::Signaled(s)) => info.signal = Some(s),
            None => info.signal = Some(libc::SIGKILL),
        },
    }
    info.memory_peak_bytes = cgroup.memory_peak();
    info.oom_killed = cgroup.oom_killed();
    if info.oom_killed && ended.is_none() {
        info.reason = Some("memory limit exceeded".into());
    }
    if let Some(e) = ended {
        info.timed_out = e.timed_out;
        info.reason = Some(e.reason);
    }
    // Nothing of the sandbox survives; the cgroup goes away (blocking waits).
    finish_cgroup(cgroup, mount_ns).await;

    let _ = stop_tx.send(true);
    let mut left = Vec::new();
    for r in readers {
        left.extend(r.await.unwrap_or_default());
    }
    {
        let c = counters.lock().unwrap_or_else(|p| p.into_inner());
        info.output_bytes = c.forwarded;
        info.output_dropped_bytes = c.dropped;
    }
    info.wall = start.elapsed();
    // Known now, whether or not the output before it has been taken.
    let _ = exit.send(info.clone());
    for msg in left {
        if out.send(msg).await.is_err() {
            return;
        }
    }
    let _ = out.send(Output::Exit(info)).await;
}

/// Cgroups of ended sandboxes still being removed.
static REMOVING: Outstanding = Outstanding::new();

/// Waits up to `within` for the cgroups of ended sandboxes to be removed;
/// whether they were. The daemon calls it at exit, so that a stop right
/// after an exec leaves nothing behind.
pub fn wait_cgroups_removed(within: Duration) -> bool {
    REMOVING.wait(within)
}

/// Kills whatever is left in the sandbox's cgroup and waits until it is
/// empty; the empty directories are removed afterwards, off the exit's path
/// (a v1 hierarchy may keep one busy for a while after its last task), and
/// the mount namespace is let go there too.
async fn finish_cgroup(cgroup: Cgroup, mount_ns: Option<OwnedFd>) {
    // Counted until the directories are gone, with the cgroup wherever it
    // goes (a runtime that stops drops this future, not a running kill).
    let removing = REMOVING.start();
    let killed = tokio::task::spawn_blocking(move || {
        cgroup.kill_all();
        (cgroup, removing)
    })
    .await;
    match killed {
        Ok((cgroup, removing)) => drop(tokio::task::spawn_blocking(move || {
            // The namespace first: its tmpfs pages are charged to the cgroup.
            drop(mount_ns);
            drop(cgroup);
            drop(removing);
        })),
        Err(e) => tracing::error!(error = %e, "cgroup cleanup failed"),
    }
}

/// How the init ended, from waitid.
enum Status {
    Exited(i32),
    Signaled(i32),
}

/// Reaps the init through its pidfd; `None` when it is not our child.
fn reap(pidfd: &OwnedFd) -> Option<Status> {
    // SAFETY: zeroed siginfo is a valid out-parameter for waitid.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid fills `si`; the pidfd is valid for the call.
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut si,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if r < 0 {
        return None;
    }
    // SAFETY: waitid succeeded, so the SIGCHLD fields are set.
    let status = unsafe { si.si_status() };
    match si.si_code {
        libc::CLD_EXITED => Some(Status::Exited(status)),
        libc::CLD_KILLED | libc::CLD_DUMPED => Some(Status::Signaled(status)),
        _ => None,
    }
}

/// Reads the init's remaining reports (one datagram each; the stream ends
/// when the init is gone) and returns its `Exited` report, waiting at most
/// [`REPORT_WAIT`] for one still on its way.
async fn read_exit_report(fd: OwnedFd) -> Option<InitReport> {
    set_nonblocking(fd.as_raw_fd()).ok()?;
    let mut buf = vec![0u8; MAX_REPORT];
    let mut exited = None;
    let deadline = Instant::now() + REPORT_WAIT;
    // The init has exited: its reports are normally all there, then the
    // end. Only a report still on its way waits for the reactor.
    let mut waiter: Option<AsyncFd<BorrowedFd>> = None;
    loop {
        match sys_read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Ok(r @ InitReport::Exited { .. }) =
                    serde_json::from_slice::<InitReport>(buf[..n].trim_ascii_end())
                {
                    exited = Some(r);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let w = match &mut waiter {
                    Some(w) => w,
                    // SAFETY: the borrow keeps the descriptor open and the
                    // same for as long as it is registered.
                    None => waiter.insert(
                        unsafe { AsyncFd::register_with_interest(fd.as_fd(), Interest::READABLE) }
                            .ok()?,
                    ),
                };
                match tokio::time::timeout_at(deadline, w.readable()).await {
                    Ok(Ok(mut guard)) => guard.clear_ready(),
                    _ => break,
                }
            }
            Err(_) => break,
        }
    }
    exited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_waits_for_the_supervisor_is_bounded() {
        let (h, _stdin, mut rx) = Handle::channel();
        for sig in 0..MAX_PENDING_SIGNALS as i32 {
            h.send(Control::Signal(sig)).await.unwrap();
        }
        let refused = h.send(Control::Signal(99)).await.unwrap_err();
        assert_eq!(refused, Undelivered::SignalsPending(99));
        assert!(refused.to_string().contains("signal 99"), "{refused}");
        for rows in 1..=1000 {
            h.send(Control::Resize { rows, cols: 80 }).await.unwrap();
        }
        h.send(Control::Kill("first".into())).await.unwrap();
        h.send(Control::Kill("second".into())).await.unwrap();
        // The kill first, the signals in order, one resize: the latest.
        assert!(matches!(rx.recv().await, Some(Control::Kill(r)) if r == "first"));
        for sig in 0..MAX_PENDING_SIGNALS as i32 {
            assert!(matches!(rx.recv().await, Some(Control::Signal(s)) if s == sig));
        }
        assert!(matches!(
            rx.recv().await,
            Some(Control::Resize {
                rows: 1000,
                cols: 80
            })
        ));
        assert!(rx.try_recv().is_none());
        // Room again once they are taken; the end once every handle is gone.
        h.send(Control::Signal(1)).await.unwrap();
        drop(h);
        assert!(matches!(rx.recv().await, Some(Control::Signal(1))));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn nothing_is_delivered_once_the_supervisor_is_gone() {
        let (h, stdin, rx) = Handle::channel();
        drop((stdin, rx));
        for c in [
            Control::Signal(2),
            Control::Kill("x".into()),
            Control::StdinEof,
        ] {
            assert_eq!(h.send(c).await, Err(Undelivered::Gone));
        }
    }
}
