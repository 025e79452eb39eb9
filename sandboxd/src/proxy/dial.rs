//! The road from a decided destination to an open upstream socket, the same
//! for every protocol: the person's answer on Prompt, the daemon's own
//! lookup, the SSRF guard on every address, the audit record, then a dial of
//! exactly the address vetted.
//!
//! What reaches nothing costs the sandbox nothing, so it is held to the
//! [`rate`](crate::net::rate) of such attempts: refusals, and allowed
//! attempts whose lookup or dial failed. A new name takes one from the
//! sandbox's allowance of new names (shared with its DNS server) before it
//! is looked up; a destination whose dial failed lately is not dialled
//! again past the rate. Either way the attempt is refused and counted.

use super::tunnel::Counts;
use super::CONNECT_TIMEOUT;
use crate::net::{rate, Block, Host, NetDecision, NetQuery, NetRecord, Phase, Session};
use crate::policy::Verdict;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tokio::net::TcpStream;

/// One attempt to reach a destination, as audited.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub protocol: &'static str,
    pub host: Host,
    pub port: u16,
    pub method: Option<String>,
    pub path: Option<String>,
    pub started: Instant,
}

impl Attempt {
    pub fn new(protocol: &'static str, host: Host, port: u16) -> Attempt {
        Attempt {
            protocol,
            host,
            port,
            method: None,
            path: None,
            started: Instant::now(),
        }
    }

    /// The host as recorded and shown.
    pub fn host_str(&self) -> String {
        host_str(&self.host)
    }

    /// A record of this attempt; bytes and duration are filled in by `end`.
    fn record(
        &self,
        phase: Phase,
        verdict: Verdict,
        block: Option<Block>,
        rule: &str,
        reason: &str,
    ) -> NetRecord {
        NetRecord {
            phase,
            protocol: self.protocol,
            host: self.host_str(),
            port: self.port,
            method: self.method.clone(),
            path: self.path.clone(),
            addr: None,
            verdict,
            block,
            rule: rule.to_string(),
            reason: reason.to_string(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        }
    }

    /// Records a refusal (the audit failing too changes nothing: it is refused).
    pub async fn refuse(&self, session: &Session, r: Refused) -> Refused {
        if let Err(e) = session.record_unreached(self.refusal(&r)).await {
            tracing::warn!(exec = %session.exec_id, "network refusal not audited: {e}");
        }
        r
    }

    /// Counts a refusal over the rate, not recorded one by one.
    fn refuse_counted(&self, session: &Session, r: Refused) -> DialError {
        session.count_unreached(self.refusal(&r));
        DialError::Refused(r)
    }

    fn refusal(&self, r: &Refused) -> NetRecord {
        let mut rec = self.record(Phase::Decision, Verdict::Deny, r.block, &r.rule, &r.reason);
        rec.addr = r.addr;
        rec
    }
}

/// Why an [`Open`] dropped without [`Open::end`] ended: only the sandbox's
/// network stopping drops a connection's task midway.
pub const CUT_OFF: &str = "still open when the exec ended";
/// The same, for an attempt whose connection was not made yet.
pub const CUT_OFF_CONNECTING: &str = "still connecting when the exec ended";

/// An allowed attempt whose decision to reach `addr` is on record: its end
/// record (bytes each way, duration) is owed. [`end`](Self::end) queues it;
/// dropped without that (the exec ended, and its network thread dropped the
/// connection's task), it queues one itself with the bytes counted so far
/// ([`CUT_OFF`]), which that thread writes before the exec's end.
pub struct Open<'a> {
    session: &'a Session,
    attempt: &'a Attempt,
    addr: IpAddr,
    counts: &'a Counts,
    /// `counts` when the attempt opened: a request on a kept-alive
    /// connection counts only its own bytes.
    base: (u64, u64),
    /// Whether its connection is made (which end record a drop owes).
    connected: bool,
    ended: bool,
}

impl<'a> Open<'a> {
    pub fn attempt(&self) -> &'a Attempt {
        self.attempt
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Where the attempt's bytes are counted, while it is open.
    pub fn counts(&self) -> &'a Counts {
        self.counts
    }

    /// Queues the end record, for `reason`.
    pub fn end(mut self, reason: &str) {
        self.owe_end(reason, true);
    }

    /// Queues the end record once: with the session's flush timer, or
    /// without (`timer` false: the runtime may be shutting down, and the
    /// network thread flushes the queue next, or the next record's flush
    /// takes it).
    fn owe_end(&mut self, reason: &str, timer: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let rec = self.end_record(reason);
        let queued = match timer {
            true => self.session.record_end(rec),
            false => self.session.queue(rec),
        };
        if let Err(e) = queued {
            tracing::warn!(exec = %self.session.exec_id, "end of a network connection not audited: {e}");
        }
    }

    fn end_record(&self, reason: &str) -> NetRecord {
        let mut rec = self
            .attempt
            .record(Phase::End, Verdict::Allow, None, "", reason);
        let (up, down) = self.counts.get();
        rec.addr = Some(self.addr);
        rec.bytes_up = up.saturating_sub(self.base.0);
        rec.bytes_down = down.saturating_sub(self.base.1);
        rec.duration_ms = self.attempt.started.elapsed().as_millis() as u64;
        rec
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let reason = if self.connected {
            CUT_OFF
        } else {
            CUT_OFF_CONNECTING
        };
        self.owe_end(reason, false);
    }
}

/// `host` as text: the name, or the address.
pub fn host_str(host: &Host) -> String {
    match host {
        Host::Name(n) => n.clone(),
        Host::Ip(ip) => ip.to_string(),
    }
}

/// Why the proxy would not let an attempt through.
#[derive(Debug, Clone)]
pub struct Refused {
    /// `None` for refusals no policy rule makes (a missing secret, an audit failure).
    pub block: Option<Block>,
    pub rule: String,
    pub reason: String,
    pub addr: Option<IpAddr>,
}

impl Refused {
    pub fn new(block: Block, rule: impl Into<String>, reason: impl Into<String>) -> Refused {
        Refused {
            block: Some(block),
            rule: rule.into(),
            reason: reason.into(),
            addr: None,
        }
    }

    fn from_decision(d: NetDecision, fallback: Block) -> Refused {
        Refused::new(d.block.unwrap_or(fallback), d.rule, d.reason)
    }

    /// The `X-Proxy-Error` value.
    pub fn code(&self) -> String {
        match self.block {
            Some(b) => format!("blocked-by-{}", b.as_str()),
            None => "refused".to_string(),
        }
    }
}

/// What stopped an allowed attempt on its way out.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("refused: {}", .0.reason)]
    Refused(Refused),
    #[error("{host}: {message}")]
    Resolve { host: String, message: String },
    #[error("the decision could not be audited: {0}")]
    NotAudited(String),
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connecting to {addr}: no answer within {secs} s", secs = CONNECT_TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
}

/// An allowed decision, after the person's answer when it asked.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub rule: String,
    pub reason: String,
}

/// Turns `decision` into admission or a recorded refusal; on Prompt asks the
/// person (no answer, or no, is [`Block::Approval`]).
pub async fn admit(
    session: &Session,
    a: &Attempt,
    decision: NetDecision,
) -> Result<Admitted, Refused> {
    match decision.verdict {
        Verdict::Allow => Ok(Admitted {
            rule: decision.rule,
            reason: decision.reason,
        }),
        Verdict::Deny => Err(a
            .refuse(session, Refused::from_decision(decision, Block::Allowlist))
            .await),
        Verdict::Prompt => {
            let q = NetQuery {
                host: a.host_str(),
                port: a.port,
                method: a.method.clone(),
                rule: decision.rule.clone(),
            };
            if session.ask(q).await {
                Ok(Admitted {
                    rule: decision.rule,
                    reason: format!("approved at the terminal ({})", decision.reason),
                })
            } else {
                let r = Refused::new(
                    Block::Approval,
                    decision.rule,
                    format!("not approved ({})", decision.reason),
                );
                Err(a.refuse(session, r).await)
            }
        }
    }
}

/// The addresses `a` may be dialled at: the literal, or the daemon's own
/// lookup, each through the SSRF guard. None left is a recorded refusal.
/// A new name past the sandbox's allowance is not looked up: refused and
/// counted. A name that does not resolve is recorded as allowed but not
/// reached, within the rate of attempts that reach nothing.
pub async fn vetted_addrs(
    session: &Session,
    a: &Attempt,
    admitted: &Admitted,
) -> Result<Vec<IpAddr>, DialError> {
    let found = match &a.host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) if !session.may_look_up(name) => {
            let r = Refused::new(
                Block::RateLimit,
                rate::new_names_rule(),
                format!("{name}: not looked up, a new name over the rate"),
            );
            return Err(a.refuse_counted(session, r));
        }
        Host::Name(name) => match session
            .resolver
            .lookup_ip(name, || session.may_forward())
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let reason = format!("{}; not reached: {e}", admitted.reason);
                let rec = a.record(
                    Phase::Decision,
                    Verdict::Allow,
                    None,
                    &admitted.rule,
                    &reason,
                );
                session
                    .record_unreached(rec)
                    .await
                    .map_err(|e| DialError::NotAudited(e.to_string()))?;
                return Err(DialError::Resolve {
                    host: name.clone(),
                    message: e.to_string(),
                });
            }
        },
    };
    let mut ok = Vec::new();
    let mut first_refusal = None;
    for ip in found {
        let d = session.policy.vet_addr(ip, &session.host_addrs);
        if d.verdict == Verdict::Allow {
            if !ok.contains(&ip) {
                ok.push(ip);
            }
        } else if first_refusal.is_none() {
            let mut r = Refused::from_decision(d, Block::PrivateAddress);
            r.addr = Some(ip);
            first_refusal = Some(r);
        }
    }
    if ok.is_empty() {
        let r = first_refusal.unwrap_or_else(|| {
            Refused::new(
                Block::PrivateAddress,
                "",
                format!("{}: no address", a.host_str()),
            )
        });
        return Err(DialError::Refused(a.refuse(session, r).await));
    }
    // IPv4 first: a host without IPv6 routes should not wait on every AAAA.
    ok.sort_by_key(|ip| ip.is_ipv6());
    Ok(ok)
}

/// Dials the vetted addresses in turn until one answers, each after the
/// allowed decision's record naming it (and an end record for each that
/// does not answer). An address whose dial failed lately is not dialled
/// again past the rate of attempts that reach nothing: refused and
/// counted. Returns the socket and the open attempt, counted in `counts`.
pub async fn dial<'a>(
    session: &'a Session,
    a: &'a Attempt,
    admitted: &Admitted,
    addrs: &[IpAddr],
    counts: &'a Counts,
) -> Result<(TcpStream, Open<'a>), DialError> {
    let mut last = None;
    for &ip in addrs {
        let addr = SocketAddr::new(ip, a.port);
        if !session.may_dial(addr) {
            let mut r = Refused::new(
                Block::RateLimit,
                rate::unreached_rule(),
                format!("{addr}: not dialled, its dials failed moments ago"),
            );
            r.addr = Some(ip);
            last = Some(a.refuse_counted(session, r));
            continue;
        }
        let mut open = record_allowed(session, a, admitted, ip, counts, false).await?;
        let e = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                open.connected = true;
                session.dialled(addr, false);
                let _ = s.set_nodelay(true);
                return Ok((s, open));
            }
            Ok(Err(source)) => DialError::Connect { addr, source },
            Err(_) => DialError::Timeout { addr },
        };
        session.dialled(addr, true);
        open.end(&e.to_string());
        last = Some(e);
    }
    Err(last.unwrap_or(DialError::Resolve {
        host: a.host_str(),
        message: "no address".into(),
    }))
}

/// The allowed decision's record, written before any byte goes out; the
/// attempt is then open, its bytes counted in `counts` from now on, over a
/// connection already made or (`connected` false) about to be.
pub async fn record_allowed<'a>(
    session: &'a Session,
    a: &'a Attempt,
    admitted: &Admitted,
    addr: IpAddr,
    counts: &'a Counts,
    connected: bool,
) -> Result<Open<'a>, DialError> {
    let mut rec = a.record(
        Phase::Decision,
        Verdict::Allow,
        None,
        &admitted.rule,
        &admitted.reason,
    );
    rec.addr = Some(addr);
    // Owed from the moment the record is queued, which the first poll of
    // `record` does: a task dropped while it waits for the disk owes it too.
    let mut open = Open {
        session,
        attempt: a,
        addr,
        counts,
        base: counts.get(),
        connected,
        ended: false,
    };
    if let Err(e) = session.record(rec).await {
        // Not on record: no end owed.
        open.ended = true;
        return Err(DialError::NotAudited(e.to_string()));
    }
    Ok(open)
}

/// Admission, lookup, vetting, record and dial in one.
pub async fn open<'a>(
    session: &'a Session,
    a: &'a Attempt,
    decision: NetDecision,
    counts: &'a Counts,
) -> Result<(TcpStream, Open<'a>), DialError> {
    let admitted = admit(session, a, decision)
        .await
        .map_err(DialError::Refused)?;
    let addrs = vetted_addrs(session, a, &admitted).await?;
    dial(session, a, &admitted, &addrs, counts).await
}
