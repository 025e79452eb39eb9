//! The filtering DNS server inside each allowlist sandbox (127.0.0.1:53, UDP
//! and TCP): allowed names of type A, AAAA, CNAME and HTTPS are answered
//! through the daemon's [`crate::net::Resolver`]; denied names get NXDOMAIN,
//! other types of allowed names an empty answer, and nothing else is sent upstream.
//! Upstream's answers are passed on rebuilt ([`wire::sanitize`]).
//!
//! Speed: one loop takes up to [`BATCH`] datagrams from the UDP socket with
//! one recvmmsg(2), answers denied, static, cached and non-forwarded queries
//! inline into reused buffers, and sends those replies with one
//! sendmmsg(2); only a query that must go upstream gets a task. Audit
//! records are written by their own task ([`audit`]), so no answer waits
//! for its own record. (The server shares the sandbox's network thread with
//! its proxy, so an answer can wait behind the fsync of a proxy decision
//! being written at that moment.)

mod audit;
mod batch;
pub mod wire;

use crate::net::timed::write_idle;
use crate::net::{normalize_host, Block, Host, NetDecision, Session};
use crate::policy::Verdict;
use audit::AuditQueue;
use batch::{Datagrams, Replies};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use wire::{Query, Question, Rcode, Unusable};

/// Most queries waiting on upstream at once; past it, new ones are dropped
/// (the client retries).
const MAX_FORWARDS: usize = 1024;
/// Most TCP connections at once; past it, new ones are closed.
const MAX_TCP: usize = 64;
/// A TCP connection with no query for this long is closed, and so is one
/// that takes no byte of its answers for this long (a client that sends
/// queries and reads nothing would otherwise hold its slot for good).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Serves `udp` and `tcp` (bound inside the sandbox) until dropped; dropping
/// it ends every connection it started.
pub async fn serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    session: Arc<Session>,
) -> std::io::Result<()> {
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let udp = Arc::new(UdpSocket::from_std(udp)?);
    let tcp = TcpListener::from_std(tcp)?;
    let audit = AuditQueue::start(Arc::clone(&session));
    // Whatever was decided is still written after the server is dropped.
    let _flush = audit.closer();
    let filter = Arc::new(Filter { session, audit });
    let mut tasks = JoinSet::new();
    tasks.spawn(accept_tcp(tcp, Arc::clone(&filter)));
    let fd = udp.as_raw_fd();
    let mut datagrams = Datagrams::new();
    let mut replies = Replies::new();
    loop {
        let n = match udp
            .async_io(Interest::READABLE, || datagrams.recv(fd))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("DNS: UDP receive: {e}");
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        replies.clear();
        for (query, peer) in datagrams.iter(n) {
            let out = replies.next_buffer();
            match filter.handle(query, out) {
                Step::Reply(limit) => {
                    if out.len() > limit {
                        if let Ok(q) = wire::parse_query(query) {
                            wire::reply_truncated(query, &q.question, out);
                        }
                    }
                    replies.push(peer);
                }
                Step::Forward(q) => {
                    let Some(peer) = peer.socket_addr() else {
                        continue;
                    };
                    if tasks.len() >= MAX_FORWARDS {
                        continue;
                    }
                    let (filter, udp, query) =
                        (Arc::clone(&filter), Arc::clone(&udp), query.to_vec());
                    tasks.spawn(async move {
                        let mut out = filter.forward(&query, &q).await;
                        if out.len() > q.udp_size {
                            wire::reply_truncated(&query, &q.question, &mut out);
                        }
                        if let Err(e) = udp.send_to(&out, peer).await {
                            tracing::debug!("DNS: UDP reply to {peer}: {e}");
                        }
                    });
                }
                Step::Drop => {}
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            match udp
                .async_io(Interest::WRITABLE, || replies.send(fd, sent))
                .await
            {
                // sendmmsg sends at least one message or fails.
                Ok(k) => sent += k.max(1),
                Err(e) => {
                    // That one reply is lost (the client asks again); the rest still go.
                    tracing::debug!("DNS: UDP reply: {e}");
                    sent += 1;
                }
            }
        }
    }
}

/// What to do with one message.
enum Step {
    /// Send `out`, truncated past this many bytes (UDP).
    Reply(usize),
    /// Ask upstream.
    Forward(Box<Query>),
    Drop,
}

/// The decisions of one sandbox's server.
struct Filter {
    session: Arc<Session>,
    audit: Arc<AuditQueue>,
}

/// Query types answered from upstream; any other type of an allowed name
/// gets an empty answer.
fn forwarded_type(qtype: u16) -> bool {
    matches!(
        qtype,
        wire::TYPE_A | wire::TYPE_AAAA | wire::TYPE_CNAME | wire::TYPE_HTTPS
    )
}

impl Filter {
    /// Decides `m`, records the decision, and builds the reply in `out`
    /// unless the query must go upstream.
    fn handle(&self, m: &[u8], out: &mut Vec<u8>) -> Step {
        let query = match wire::parse_query(m) {
            Ok(q) => q,
            Err(Unusable::Drop) => return Step::Drop,
            Err(Unusable::Reply(rcode)) => {
                wire::reply_bare(m, rcode, out);
                return Step::Reply(wire::PLAIN_UDP);
            }
        };
        let q = &query.question;
        // A question whose record still waits was decided moments ago.
        let allowed = match self.audit.repeat(q) {
            Some(allowed) => allowed,
            None => {
                let refuse = |reason: &str| NetDecision {
                    verdict: Verdict::Deny,
                    block: Some(Block::BadRequest),
                    rule: "dns".into(),
                    reason: reason.into(),
                };
                let decision = if !q.is_host_name() {
                    refuse("not a host name")
                } else if matches!(normalize_host(q.name()), Ok(Host::Ip(_))) {
                    // An address in one of its many spellings (0x7f.1,
                    // 0300.0.2.1, ...): nothing to look up, and each
                    // spelling sent upstream would carry a few bits out.
                    refuse("an address, not a name")
                } else {
                    self.session.policy.decide_name(q.name())
                };
                match self.audit.push(q, decision) {
                    Some(allowed) => allowed,
                    // Past what the audit log can take: not decided (and
                    // counted); told at once, so that the client neither
                    // waits out its timeout nor learns anything.
                    None => {
                        wire::reply(m, q, Rcode::Refused, out);
                        return Step::Reply(query.udp_size);
                    }
                }
            }
        };
        if self.audit.failing() {
            wire::reply(m, q, Rcode::Refused, out);
        } else if !allowed {
            wire::reply(m, q, Rcode::NxDomain, out);
        } else if q.qclass != wire::CLASS_IN || !forwarded_type(q.qtype) {
            wire::reply(m, q, Rcode::NoError, out);
        } else if self.session.resolver.answer_local(m, q, out) {
            self.ech_checked(m, q, out);
        } else if !self.session.may_forward() {
            // Told at once, as a query over the rate of new names is.
            self.audit.unforwarded(q);
            wire::reply(m, q, Rcode::Refused, out);
        } else {
            return Step::Forward(Box::new(query));
        }
        Step::Reply(query.udp_size)
    }

    /// The upstream answer to `m`, or SERVFAIL (also when the user's
    /// sandboxes hold all the connections they may).
    async fn forward(&self, m: &[u8], q: &Query) -> Vec<u8> {
        let Some(_slot) = self.session.user_connection("DNS upstream") else {
            let mut out = Vec::new();
            wire::reply(m, &q.question, Rcode::ServFail, &mut out);
            return out;
        };
        match self.session.resolver.forward_upstream(m, &q.question).await {
            Ok(mut r) => {
                self.ech_checked(m, &q.question, &mut r);
                r
            }
            Err(e) => {
                tracing::debug!("DNS: {e}");
                let mut out = Vec::new();
                wire::reply(m, &q.question, Rcode::ServFail, &mut out);
                out
            }
        }
    }

    /// Takes the `ech` keys out of `answer`, the reply to `m`, unless the
    /// profile allows Encrypted Client Hellos: without a key a client
    /// does not try one (the proxy would refuse it). The shared cache keeps
    /// them for the sandboxes whose profiles allow ECH.
    fn ech_checked(&self, m: &[u8], q: &Question, answer: &mut Vec<u8>) {
        if q.qtype != wire::TYPE_HTTPS || self.session.policy.allow_ech() {
            return;
        }
        match wire::sanitize(answer, false) {
            Some(without) => *answer = without,
            None => wire::reply(m, q, Rcode::ServFail, answer),
        }
    }
}

/// Accepts TCP connections; dropping it ends them. Each holds a slot of
/// the user's connections (the descriptors all their sandboxes may hold,
/// shared with the proxies) while it is open: past [`MAX_TCP`], or past
/// that quota, a new one is closed on arrival.
async fn accept_tcp(tcp: TcpListener, filter: Arc<Filter>) {
    let mut conns = JoinSet::new();
    loop {
        let stream = match tcp.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("DNS: TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_TCP {
            continue;
        }
        let Some(slot) = filter.session.user_connection("DNS over TCP") else {
            continue;
        };
        let filter = Arc::clone(&filter);
        conns.spawn(async move {
            serve_tcp(stream, filter).await;
            drop(slot);
        });
    }
}

/// Queries on one TCP connection (2-byte length, message), answered in order.
async fn serve_tcp(mut s: TcpStream, filter: Arc<Filter>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(512);
    let mut framed = Vec::with_capacity(514);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, s.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        let m = &mut buf[..len];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, s.read_exact(m)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        match filter.handle(m, &mut out) {
            Step::Reply(_) => {}
            Step::Forward(q) => out = filter.forward(m, &q).await,
            Step::Drop => return,
        }
        let Ok(len) = u16::try_from(out.len()) else {
            return;
        };
        framed.clear();
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        if write_idle(&mut s, &framed, TCP_IDLE).await.is_err() {
            return;
        }
    }
}
