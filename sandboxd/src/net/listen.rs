//! The daemon's listeners inside one allowlist sandbox: bound on 127.0.0.1 of
//! the sandbox's network namespace before its command starts, served by a
//! thread of the sandbox's own for as long as the exec runs.

use super::{Session, DNS_PORT, HTTP_PROXY_PORT, SOCKS_PORT};
use crate::outstanding::Outstanding;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// The sockets, bound (in whatever network namespace the calling thread is in).
#[derive(Debug)]
pub struct Listeners {
    http: TcpListener,
    socks: TcpListener,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn named(what: &'static str, port: u16) -> impl FnOnce(io::Error) -> io::Error {
    move |e| {
        io::Error::new(
            e.kind(),
            format!("bind the {what} on 127.0.0.1:{port}: {e}"),
        )
    }
}

impl Listeners {
    /// Binds every listener on 127.0.0.1 of the calling thread's namespace.
    pub fn bind() -> io::Result<Listeners> {
        Ok(Listeners {
            http: TcpListener::bind(local(HTTP_PROXY_PORT))
                .map_err(named("HTTP proxy", HTTP_PROXY_PORT))?,
            socks: TcpListener::bind(local(SOCKS_PORT))
                .map_err(named("SOCKS proxy", SOCKS_PORT))?,
            dns_udp: UdpSocket::bind(local(DNS_PORT))
                .map_err(named("DNS server (UDP)", DNS_PORT))?,
            dns_tcp: TcpListener::bind(local(DNS_PORT))
                .map_err(named("DNS server (TCP)", DNS_PORT))?,
        })
    }
}

/// The thread that serves one allowlist sandbox's network: made before the
/// sandbox, so that an exec whose network cannot be served is refused before
/// anything runs; it then waits for the sandbox's listeners.
pub struct NetThread {
    /// Hands the listeners over; dropped unused, it ends the thread.
    start: oneshot::Sender<Listeners>,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

impl NetThread {
    /// Makes the thread, with a single-threaded runtime, for `session`: a
    /// connection's steps (accept, decision, audit write, dial, relay) then
    /// follow each other without hand-offs between threads, and no sandbox's
    /// network waits for another's. The calling thread must be in the host's
    /// network namespace, which the new thread inherits to dial out. Errors
    /// when the thread or its runtime cannot be made.
    pub fn start(session: Arc<Session>) -> io::Result<NetThread> {
        let mut runtime = Unstarted(Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        ));
        let (start, listeners) = oneshot::channel::<Listeners>();
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel::<()>();
        let name: String = format!("net-{}", session.exec_id)
            .chars()
            .take(15)
            .collect();
        let running = RUNNING.start();
        std::thread::Builder::new().name(name).spawn(move || {
            let _running = running;
            let Some(runtime) = runtime.0.take() else {
                return;
            };
            let s = Arc::clone(&session);
            runtime.block_on(async move {
                // No listeners: the sandbox was not made.
                let Ok(l) = listeners.await else { return };
                let mut tasks = JoinSet::new();
                let log = |what: &'static str, id: String| {
                    move |r: io::Result<()>| {
                        if let Err(e) = r {
                            tracing::error!(id, error = %e, "the sandbox's {what} stopped");
                        }
                    }
                };
                let s1 = Arc::clone(&s);
                let done = log("HTTP proxy", s.exec_id.clone());
                tasks.spawn(async move { done(crate::proxy::serve_http(l.http, s1).await) });
                let s1 = Arc::clone(&s);
                let done = log("SOCKS proxy", s.exec_id.clone());
                tasks.spawn(async move { done(crate::proxy::serve_socks(l.socks, s1).await) });
                let done = log("DNS server", s.exec_id.clone());
                tasks.spawn(async move { done(crate::dns::serve(l.dns_udp, l.dns_tcp, s).await) });
                tokio::select! {
                    _ = stopped => {}
                    _ = async { while tasks.join_next().await.is_some() {} } => {}
                }
            });
            // Ends every connection and closes the listeners: dropping a
            // connection's task queues its end record if it was still open
            // (`proxy::dial::Open`). Then what they queued for the audit
            // log, and what they counted, is written, before the exec's end.
            drop(runtime);
            session.queue_counted();
            if let Err(e) = session.flush_queued_blocking() {
                tracing::error!(id = session.exec_id, "{e}");
            }
            let _ = finished.send(());
        })?;
        Ok(NetThread { start, stop, done })
    }

    /// Starts serving on the sandbox's `listeners`.
    pub fn serve(self, listeners: Listeners) -> Served {
        let NetThread { start, stop, done } = self;
        // The thread only ends before this when it panicked; `done` then
        // resolves at once and the sandbox has no network.
        let _ = start.send(listeners);
        Served { stop, done }
    }
}

/// A runtime not yet taken by its thread: dropped unused (the thread could
/// not be made), it is shut down without waiting, as the caller may be on
/// an async thread where a blocking drop is not allowed.
struct Unstarted(Option<tokio::runtime::Runtime>);

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The network threads of this process that are running.
static RUNNING: Outstanding = Outstanding::new();

/// Waits up to `within` for every network thread to end (their services
/// stopped, what they queued for the audit log written); whether they did.
/// The daemon calls it at shutdown, before its last flush of the log.
pub fn wait_all_ended(within: Duration) -> bool {
    RUNNING.wait(within)
}

/// The running services of one sandbox; dropping it ends them and every
/// connection they carry, and closes the listeners.
#[derive(Debug)]
pub struct Served {
    /// Dropped to end the services.
    stop: oneshot::Sender<()>,
    /// Resolves once the thread is done.
    done: oneshot::Receiver<()>,
}

impl Served {
    /// Ends the services, and returns once their connections are closed
    /// and the audit records of what they did are written.
    pub async fn stop(self) {
        let Served { stop, done } = self;
        drop(stop);
        let _ = done.await;
    }
}
