//! The daemon's own resolver: `[dns] hosts` first, then (upstream "system")
//! /etc/hosts and the nameservers of /etc/resolv.conf (read again when it
//! changes), or the configured upstream servers. The proxy dials only
//! addresses it got from here and vetted; the sandbox's DNS server forwards
//! allowed queries through it.
//!
//! Upstream queries go over UDP from a fresh socket (kernel-chosen random
//! port) with a random id, and only a response with that id and the same
//! question counts; a truncated one is asked again over TCP. Each server
//! gets [`SERVER_TIMEOUT`], then the next one is tried. Positive answers are
//! kept for their TTL (at most [`CACHE_MAX_TTL`]), negative ones as long as
//! their zone's SOA allows (at most [`CACHE_MAX_NEGATIVE_TTL`]), in a bounded
//! cache ([`Cache`]) that a flood of new names cannot fill for good.

use crate::config::DnsConfig;
use crate::dns::wire::{self, Question, Rcode};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream server has to answer (UDP, or the TCP retry).
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time an upstream answer is served from the cache.
pub const CACHE_MAX_TTL: u32 = 300;
/// Longest time a "no such name" or "no such record" answer is served from the cache.
pub const CACHE_MAX_NEGATIVE_TTL: u32 = 60;
/// Most answers the cache holds.
pub const CACHE_ENTRIES: usize = 8192;
/// TTL of answers from `[dns] hosts` and /etc/hosts.
const STATIC_TTL: u32 = 60;
/// UDP size offered upstream in the daemon's own queries.
const OWN_UDP_SIZE: u16 = 1232;
/// Largest DNS message.
const MAX_MESSAGE: usize = 65535;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{name}: no such name")]
    NotFound { name: String },
    #[error("{name}: {message}")]
    Failed { name: String, message: String },
    #[error("DNS configuration: {0}")]
    Config(String),
}

/// Shared by every sandbox of the daemon.
#[derive(Debug)]
pub struct Resolver {
    /// `[dns] hosts`, then (upstream "system") /etc/hosts; names lower-case
    /// without the trailing dot.
    hosts: HashMap<String, Vec<IpAddr>>,
    servers: Servers,
    cache: Mutex<Cache>,
}

/// Upstream answers by question, in two generations of at most half of
/// [`CACHE_ENTRIES`]: answers go into the newer, and one served from the
/// older moves back into it; when the newer is full it becomes the older,
/// and the older is dropped. So caching never stops and needs no scan, and
/// the answers a flood of new names pushes out are those not asked for
/// since the last turn, not those in use.
#[derive(Debug, Default)]
struct Cache {
    newer: HashMap<Box<[u8]>, Cached>,
    older: HashMap<Box<[u8]>, Cached>,
}

impl Cache {
    /// The answer to `key` while it may be served, and its age in seconds.
    fn get(&mut self, key: &[u8]) -> Option<(&Cached, u64)> {
        let live = |c: &Cached| {
            let age = c.stored.elapsed().as_secs();
            (age < u64::from(c.life)).then_some(age)
        };
        if !self.newer.contains_key(key) {
            let (key, hit) = self.older.remove_entry(key)?;
            live(&hit)?;
            self.insert(key, hit);
        }
        let hit = self.newer.get(key)?;
        Some((hit, live(hit)?))
    }

    fn insert(&mut self, key: Box<[u8]>, c: Cached) {
        if self.newer.len() >= CACHE_ENTRIES / 2 && !self.newer.contains_key(&key) {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(key, c);
    }
}

/// The upstream servers: configured, or the system's, read again from
/// /etc/resolv.conf when it changes (checked at most every [`RECHECK`]).
#[derive(Debug)]
enum Servers {
    Fixed(Arc<Vec<SocketAddr>>),
    System(Mutex<System>),
}

#[derive(Debug)]
struct System {
    servers: Arc<Vec<SocketAddr>>,
    modified: Option<SystemTime>,
    checked: Instant,
}

const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How often the system's resolv.conf is looked at for a change.
const RECHECK: Duration = Duration::from_secs(5);

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Servers {
    fn current(&self) -> Arc<Vec<SocketAddr>> {
        let system = match self {
            Servers::Fixed(s) => return Arc::clone(s),
            Servers::System(system) => system,
        };
        let mut sys = system.lock().unwrap_or_else(|p| p.into_inner());
        if sys.checked.elapsed() >= RECHECK {
            sys.checked = Instant::now();
            let now = modified(RESOLV_CONF);
            if now != sys.modified {
                // A file that cannot be read now keeps the servers it named before.
                if let Ok(text) = std::fs::read_to_string(RESOLV_CONF) {
                    sys.servers = Arc::new(parse_resolv_conf(&text));
                    sys.modified = now;
                }
            }
        }
        Arc::clone(&sys.servers)
    }
}

/// An upstream response kept for reuse.
#[derive(Debug)]
struct Cached {
    message: Box<[u8]>,
    /// Offsets of the TTL fields (OPT excluded), rewritten on each use.
    ttls: Box<[u32]>,
    stored: Instant,
    /// Seconds it may be served.
    life: u32,
}

/// A random 16-bit value (SipHash of nothing under fresh random keys).
fn random_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u16
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name-to-address lines of an /etc/hosts text.
fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in fields {
            let addrs = map.entry(normalize_name(name)).or_default();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    map
}

/// The `nameserver` addresses of a resolv.conf text, port 53; like the C
/// library, the local server when there is none.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = fields.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect();
    if servers.is_empty() {
        servers.push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 53));
    }
    servers
}

impl Resolver {
    pub fn new(config: &DnsConfig) -> Result<Resolver, ResolveError> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| ResolveError::Config(format!("{path}: {e}")))
        };
        let (mut hosts, servers) = match &config.upstream {
            Some(servers) if servers.is_empty() => {
                return Err(ResolveError::Config("`upstream` lists no server".into()));
            }
            Some(servers) => (HashMap::new(), Servers::Fixed(Arc::new(servers.clone()))),
            None => {
                let hosts = match read("/etc/hosts") {
                    Ok(text) => parse_hosts(&text),
                    Err(_) => HashMap::new(),
                };
                let system = System {
                    modified: modified(RESOLV_CONF),
                    servers: Arc::new(parse_resolv_conf(&read(RESOLV_CONF)?)),
                    checked: Instant::now(),
                };
                (hosts, Servers::System(Mutex::new(system)))
            }
        };
        for (name, addrs) in &config.hosts {
            hosts.insert(normalize_name(name), addrs.clone());
        }
        Ok(Resolver {
            hosts,
            servers,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// A and AAAA addresses of `name` (already normalised). A question the
    /// cache cannot answer goes upstream only when `may_ask` says so (it
    /// takes from the asker's rate of upstream queries).
    pub async fn lookup_ip(
        &self,
        name: &str,
        may_ask: impl Fn() -> bool + Sync,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let name = normalize_name(name);
        if let Some(addrs) = self.hosts.get(&name) {
            return match addrs.is_empty() {
                true => Err(ResolveError::NotFound { name }),
                false => Ok(addrs.clone()),
            };
        }
        let failed = |message: String| ResolveError::Failed {
            name: name.clone(),
            message,
        };
        let (Some(qa), Some(qaaaa)) = (
            Question::for_name(&name, wire::TYPE_A),
            Question::for_name(&name, wire::TYPE_AAAA),
        ) else {
            return Err(failed("not a valid DNS name".into()));
        };
        let (a, aaaa) = tokio::join!(self.ask(&qa, &may_ask), self.ask(&qaaaa, &may_ask));
        let mut addrs = Vec::new();
        let mut errors = Vec::new();
        for r in [a, aaaa] {
            match r {
                Ok(m) => {
                    let parsed = push_addresses(&m, &mut addrs);
                    if parsed.is_none() {
                        errors.push("malformed response".to_string());
                    } else if ![Rcode::NoError as u8, Rcode::NxDomain as u8]
                        .contains(&wire::rcode(&m))
                    {
                        errors.push(format!("upstream answered with code {}", wire::rcode(&m)));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        match errors.into_iter().next() {
            Some(e) => Err(failed(e)),
            None => Err(ResolveError::NotFound { name }),
        }
    }

    /// Forwards one DNS query message (wire format, a single question whose
    /// type is A, AAAA, CNAME or HTTPS, already decided allowed) upstream, or
    /// answers it from `[dns] hosts`; returns the response message (wire format).
    pub async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, ResolveError> {
        let q = wire::parse_query(query)
            .map_err(|_| ResolveError::Failed {
                name: String::new(),
                message: "not a query with one question".into(),
            })?
            .question;
        let mut out = Vec::new();
        if self.answer_local(query, &q, &mut out) {
            return Ok(out);
        }
        self.forward_upstream(query, &q).await
    }

    /// Answers `query` (whose question is `q`) from the static hosts or the
    /// cache into `out`, without waiting; `false` when it must go upstream.
    pub fn answer_local(&self, query: &[u8], q: &Question, out: &mut Vec<u8>) -> bool {
        if let Some(addrs) = self.hosts.get(q.name()) {
            wire::reply(query, q, Rcode::NoError, out);
            wire::set_authoritative(out);
            let want_v4 = q.qtype == wire::TYPE_A;
            if q.qclass == wire::CLASS_IN && (want_v4 || q.qtype == wire::TYPE_AAAA) {
                for ip in addrs.iter().filter(|ip| ip.is_ipv4() == want_v4) {
                    wire::push_address(out, *ip, STATIC_TTL);
                }
            }
            return true;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some((hit, age)) = cache.get(q.key()) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(&hit.message);
        for &at in hit.ttls.iter() {
            let at = at as usize;
            let ttl = u32::from_be_bytes(out[at..at + 4].try_into().unwrap_or_default());
            wire::set_ttl(out, at, ttl.saturating_sub(age as u32));
        }
        drop(cache);
        // The client's id and its spelling of the name (same length).
        wire::set_id(out, wire::id(query));
        out[wire::HEADER..q.end].copy_from_slice(&query[wire::HEADER..q.end]);
        true
    }

    /// Asks upstream the question `q` of `query`: in a query of the daemon's
    /// own making, so nothing else the client put in its message (additional
    /// records, EDNS options, flags) leaves. The response carries the query's
    /// id and its spelling of the name. (The caller took the query from its
    /// rate of upstream queries.)
    pub async fn forward_upstream(
        &self,
        query: &[u8],
        q: &Question,
    ) -> Result<Vec<u8>, ResolveError> {
        let mut response = self
            .ask(q, &|| true)
            .await
            .map_err(|message| ResolveError::Failed {
                name: q.name().to_string(),
                message,
            })?;
        // `ask` checked the response's question equals `q`: same length.
        wire::set_id(&mut response, wire::id(query));
        response[wire::HEADER..q.end].copy_from_slice(&query[wire::HEADER..q.end]);
        Ok(response)
    }

    /// The response to the daemon's own query for `q`, from the cache or
    /// (when `may_ask`) upstream.
    async fn ask(
        &self,
        q: &Question,
        may_ask: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<u8>, String> {
        let mut query = Vec::new();
        wire::build_query(q, 0, OWN_UDP_SIZE, &mut query);
        // The question as placed in this message.
        let q = &Question::parse(&query, wire::HEADER).ok_or("not a valid DNS name")?;
        let mut out = Vec::new();
        if self.answer_local(&query, q, &mut out) {
            return Ok(out);
        }
        if !may_ask() {
            return Err("not asked upstream: over the rate of upstream queries".into());
        }
        self.exchange(&mut query, q).await
    }

    /// Tries each server in turn; a SERVFAIL or REFUSED answer moves on to
    /// the next server, and is returned only when no server did better.
    /// Answers come back rebuilt by [`wire::sanitize`], ECH keys kept (each
    /// sandbox's server takes them out unless its profile allows ECH).
    async fn exchange(&self, query: &mut [u8], q: &Question) -> Result<Vec<u8>, String> {
        let mut last = Err("no upstream server".to_string());
        for &server in self.servers.current().iter() {
            let id = random_id();
            wire::set_id(query, id);
            let mut r = udp_exchange(server, query, id, q.key()).await;
            if matches!(&r, Ok(m) if wire::truncated(m)) {
                r = tcp_exchange(server, query, id, q.key()).await;
            }
            let r =
                r.and_then(|m| wire::sanitize(&m, true).ok_or_else(|| "a malformed answer".into()));
            match r {
                Ok(m)
                    if [Rcode::ServFail as u8, Rcode::Refused as u8].contains(&wire::rcode(&m)) =>
                {
                    last = Ok(m)
                }
                Ok(m) => {
                    self.store(q, &m);
                    return Ok(m);
                }
                Err(e) => {
                    if last.is_err() {
                        last = Err(format!("{server}: {e}"));
                    }
                }
            }
        }
        last
    }

    /// Caches a positive, complete answer for its smallest TTL.
    fn store(&self, q: &Question, m: &[u8]) {
        let rcode = wire::rcode(m);
        if wire::truncated(m) || ![Rcode::NoError as u8, Rcode::NxDomain as u8].contains(&rcode) {
            return;
        }
        let Some(mq) = Question::parse(m, wire::HEADER) else {
            return;
        };
        let positive = rcode == Rcode::NoError as u8 && wire::answer_count(m) > 0;
        let mut ttls = Vec::new();
        let mut life = if positive {
            CACHE_MAX_TTL
        } else {
            CACHE_MAX_NEGATIVE_TTL
        };
        // A negative answer may be kept only as long as its zone's SOA says (RFC 2308).
        let mut soa = positive;
        let walked = wire::for_each_record(m, &mq, |r| {
            if r.rtype == wire::TYPE_OPT {
                return;
            }
            ttls.push(r.ttl_at as u32);
            life = life.min(r.ttl);
            if !r.answer && r.rtype == wire::TYPE_SOA && r.data.len() >= 4 {
                let minimum = &r.data[r.data.len() - 4..];
                life = life.min(u32::from_be_bytes(minimum.try_into().unwrap_or_default()));
                soa = true;
            }
        });
        if walked.is_none() || life == 0 || !soa {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            q.key().into(),
            Cached {
                message: m.into(),
                ttls: ttls.into(),
                stored: Instant::now(),
                life,
            },
        );
    }
}

/// Appends the A and AAAA records of the answer section of `m` to `addrs`;
/// `None` when `m` is malformed.
fn push_addresses(m: &[u8], addrs: &mut Vec<IpAddr>) -> Option<()> {
    let q = Question::parse(m, wire::HEADER)?;
    wire::for_each_record(m, &q, |r| match (r.answer, r.class, r.rtype) {
        (true, wire::CLASS_IN, wire::TYPE_A) => {
            if let Ok(o) = <[u8; 4]>::try_from(r.data) {
                addrs.push(IpAddr::from(o));
            }
        }
        (true, wire::CLASS_IN, wire::TYPE_AAAA) => {
            if let Ok(o) = <[u8; 16]>::try_from(r.data) {
                addrs.push(IpAddr::from(o));
            }
        }
        _ => {}
    })
}

/// One query over UDP to `server`; waits for the response with `id` to `key`.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("UDP connect: {e}"))?;
    sock.send(query)
        .await
        .map_err(|e| format!("UDP send: {e}"))?;
    let mut buf = Vec::with_capacity(MAX_MESSAGE);
    let deadline = tokio::time::Instant::now() + SERVER_TIMEOUT;
    loop {
        buf.clear();
        tokio::time::timeout_at(deadline, sock.recv_buf(&mut buf))
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| format!("UDP receive: {e}"))?;
        if wire::answers(&buf, id, key).is_some() {
            return Ok(buf);
        }
    }
}

/// One query over TCP (2-byte length framing) to `server`.
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("TCP connect: {e}"))?;
        let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        s.write_all(&framed)
            .await
            .map_err(|e| format!("TCP send: {e}"))?;
        let len = s
            .read_u16()
            .await
            .map_err(|e| format!("TCP receive: {e}"))?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("TCP receive: {e}"))?;
        match wire::answers(&buf, id, key) {
            Some(_) => Ok(buf),
            None => Err("TCP answer does not match the question".to_string()),
        }
    };
    tokio::time::timeout(SERVER_TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer over TCP in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines() {
        let m = parse_hosts("127.0.0.1 localhost Local.Dom.\n# c\n::1 localhost # x\nbogus line\n");
        assert_eq!(
            m["localhost"],
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(m["local.dom"], ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn resolv_conf_servers() {
        let s = parse_resolv_conf(
            "search x\nnameserver 10.0.0.1\nnameserver ::1\nnameserver fe80::1%eth0\n",
        );
        assert_eq!(
            s,
            [
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_resolv_conf(""),
            ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
