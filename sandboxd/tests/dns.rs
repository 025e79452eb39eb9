//! The filtering DNS server and the daemon's resolver over real loopback
//! sockets, against a fake upstream server that records every question it
//! gets: allowed names are answered from upstream, denied and unlisted names
//! get NXDOMAIN with nothing sent upstream, other types of allowed names an
//! empty answer, and every decision reaches the audit log.

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, Mandatory, SvcParamKey, SvcParamValue, SVCB,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sandboxd::audit::AuditLog;
use sandboxd::config::DnsConfig;
use sandboxd::net::resolve::ResolveError;
use sandboxd::net::{NetPolicy, Resolver, Session};
use sandboxd::policy::{ApprovalMode, PolicyStore};
use sandboxd::quota::Quota;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const UPSTREAM_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const UPSTREAM_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// A fake recursive server on 127.0.0.1 (UDP and TCP, same port): A is
/// 192.0.2.7, AAAA 2001:db8::7, names under `nx.test` do not exist, `big.*`
/// is truncated over UDP, `spoof.*` is first answered with a wrong id,
/// `fail.*` with SERVFAIL (never cached).
struct Upstream {
    addr: SocketAddr,
    /// (name without the trailing dot, type) of every question received, over either transport.
    seen: Arc<Mutex<Vec<(String, RecordType)>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn upstream_answer(
    query: &[u8],
    seen: &Mutex<Vec<(String, RecordType)>>,
    tcp: bool,
) -> Option<Message> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_lowercase();
    seen.lock()
        .unwrap()
        .push((name.clone(), question.query_type()));
    if !q.additionals().is_empty() {
        let extra = format!("extra:{name}");
        seen.lock().unwrap().push((extra, question.query_type()));
    }
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(question.clone());
    if name.ends_with("nx.test") {
        // With the zone's SOA, so the answer may be cached (RFC 2308).
        let zone = Name::from_str("nx.test.").unwrap();
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, 30);
        r.set_response_code(ResponseCode::NXDomain)
            .add_name_server(Record::from_rdata(zone, 60, RData::SOA(soa)));
        return Some(r);
    }
    if name.starts_with("fail.") {
        r.set_response_code(ResponseCode::ServFail);
        return Some(r);
    }
    if name.starts_with("big.") && !tcp {
        r.set_truncated(true);
        return Some(r);
    }
    let owner = question.name().clone();
    // Names under short.ok.test are given for one second only.
    let ttl = if name.ends_with("short.ok.test") {
        1
    } else {
        60
    };
    match question.query_type() {
        // A CNAME to a name the HTTPS record (with an ECH key) is under, and
        // records nobody asked for in the other sections.
        RecordType::HTTPS if name.starts_with("svc.") => {
            let cdn = Name::from_str("cdn.ok.test.").unwrap();
            r.add_answer(Record::from_rdata(
                owner,
                ttl,
                RData::CNAME(CNAME(cdn.clone())),
            ));
            let params = vec![
                (
                    SvcParamKey::Mandatory,
                    SvcParamValue::Mandatory(Mandatory(vec![
                        SvcParamKey::Alpn,
                        SvcParamKey::EchConfigList,
                    ])),
                ),
                (
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                ),
                (
                    SvcParamKey::Ipv4Hint,
                    SvcParamValue::Ipv4Hint(IpHint(vec![A(UPSTREAM_V4)])),
                ),
                (
                    SvcParamKey::EchConfigList,
                    SvcParamValue::EchConfigList(EchConfigList(vec![0, 4, 0xfe, 0x0d, 0, 0])),
                ),
                (
                    SvcParamKey::Ipv6Hint,
                    SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(UPSTREAM_V6)])),
                ),
            ];
            r.add_answer(Record::from_rdata(
                cdn.clone(),
                ttl,
                RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params))),
            ));
            let zone = Name::from_str("ok.test.").unwrap();
            r.add_name_server(Record::from_rdata(
                zone,
                ttl,
                RData::NS(NS(Name::from_str("ns.elsewhere.test.").unwrap())),
            ));
            r.add_additional(Record::from_rdata(
                Name::from_str("ns.elsewhere.test.").unwrap(),
                ttl,
                RData::A(A(Ipv4Addr::new(6, 6, 6, 6))),
            ));
        }
        RecordType::A => {
            r.add_answer(Record::from_rdata(owner, ttl, RData::A(A(UPSTREAM_V4))));
        }
        RecordType::AAAA => {
            r.add_answer(Record::from_rdata(
                owner,
                ttl,
                RData::AAAA(AAAA(UPSTREAM_V6)),
            ));
        }
        _ => {}
    }
    Some(r)
}

/// A UDP socket and a TCP listener on the same free port (a port free for
/// UDP may be taken for TCP: try another).
async fn udp_and_tcp() -> (UdpSocket, TcpListener, std::net::SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no port free for both UDP and TCP");
}

async fn upstream() -> Upstream {
    let (udp, tcp, addr) = udp_and_tcp().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let Some(r) = upstream_answer(&buf[..n], &s, false) else {
                continue;
            };
            let name = r.queries()[0].name().to_ascii();
            if name.starts_with("spoof.") {
                let mut fake = r.clone();
                fake.set_id(r.id().wrapping_add(1));
                fake.answers_mut().clear();
                let owner = r.queries()[0].name().clone();
                fake.add_answer(Record::from_rdata(
                    owner,
                    60,
                    RData::A(A(Ipv4Addr::new(6, 6, 6, 6))),
                ));
                let _ = udp.send_to(&fake.to_vec().unwrap(), peer).await;
            }
            let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    let s = Arc::clone(&seen);
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = tcp.accept().await else {
                continue;
            };
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let len = c.read_u16().await.unwrap();
                let mut buf = vec![0u8; len.into()];
                c.read_exact(&mut buf).await.unwrap();
                if let Some(r) = upstream_answer(&buf, &s, true) {
                    let body = r.to_vec().unwrap();
                    c.write_all(&(body.len() as u16).to_be_bytes())
                        .await
                        .unwrap();
                    c.write_all(&body).await.unwrap();
                }
            });
        }
    });
    Upstream {
        addr,
        seen,
        tasks: vec![udp_task, tcp_task],
    }
}

impl Upstream {
    fn saw(&self, name: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }
}

const PROFILE: &str = r#"
description = "dns test"

[network]
mode  = "allowlist"
allow = ["allowed.test", "**.ok.test", "static.test", "192.0.2.1"]
deny  = ["bad.ok.test"]
"#;

/// sandboxd's DNS server on loopback, with its session's audit log.
struct Server {
    udp: SocketAddr,
    tcp: SocketAddr,
    state: tempfile::TempDir,
    task: JoinHandle<std::io::Result<()>>,
    events: tokio::sync::mpsc::Receiver<sandboxd::net::NetRecord>,
}

fn dns_config(upstream: &[SocketAddr]) -> DnsConfig {
    DnsConfig {
        upstream: Some(upstream.to_vec()),
        hosts: BTreeMap::from([(
            "Static.Test.".to_string(),
            vec![IpAddr::from([10, 0, 0, 5])],
        )]),
    }
}

fn policy(profile: &str, approval: ApprovalMode) -> NetPolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dnstest.toml"), profile).unwrap();
    let store = PolicyStore::load(Some(dir.path()), true).unwrap();
    NetPolicy::from_profile(store.get("dnstest").unwrap(), None, approval).unwrap()
}

async fn server(upstream: &[SocketAddr], approval: ApprovalMode) -> Server {
    let resolver = Arc::new(Resolver::new(&dns_config(upstream)).unwrap());
    server_on(resolver, PROFILE, approval).await
}

/// A sandbox's DNS server with its own profile, on `resolver` (which
/// several may share, with its cache).
async fn server_on(resolver: Arc<Resolver>, profile: &str, approval: ApprovalMode) -> Server {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server_with(resolver, profile, approval, tcp)
}

/// [`server_on`], its TCP queries taken on `tcp`.
fn server_with(
    resolver: Arc<Resolver>,
    profile: &str,
    approval: ApprovalMode,
    tcp: std::net::TcpListener,
) -> Server {
    let quota = Quota::new(64, 64);
    server_of(1000, &quota, resolver, profile, approval, tcp)
}

/// [`server_with`], for a sandbox of `uid` holding its connections in `quota`.
fn server_of(
    uid: u32,
    quota: &Arc<Quota>,
    resolver: Arc<Resolver>,
    profile: &str,
    approval: ApprovalMode,
    tcp: std::net::TcpListener,
) -> Server {
    let state = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(state.path(), 1 << 20).unwrap());
    let (events_tx, events) = tokio::sync::mpsc::channel(1024);
    let session = Session::new(
        "exec-dns".into(),
        uid,
        policy(profile, approval),
        BTreeMap::new(),
        resolver,
        None,
        Arc::new(Vec::new()),
        audit,
        events_tx,
        None,
        Arc::clone(quota),
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let task = tokio::spawn(sandboxd::dns::serve(udp, tcp, session));
    Server {
        udp: udp_addr,
        tcp: tcp_addr,
        state,
        task,
        events,
    }
}

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(rand_id())
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 65521) as u16
}

/// Sends `msg` over UDP and waits for a reply (None after 3 s).
async fn udp_raw(server: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(msg, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let q = query(name, rtype);
    let r = udp_raw(server, &q)
        .await
        .unwrap_or_else(|| panic!("no answer for {name} {rtype}"));
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.id(), Message::from_vec(&q).unwrap().id());
    assert_eq!(m.message_type(), MessageType::Response);
    m
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The audit records of the DNS decisions (waits up to 5 s for `want` of them).
async fn dns_audit(state: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
        // Whole lines only: a record may be being written.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let records: Vec<serde_json::Value> = whole
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] == "network" && r["protocol"] == "dns")
            .collect();
        if records.len() >= want || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_come_from_upstream_and_denied_ones_never_leave() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;

    let m = ask(srv.udp, "allowed.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
    let m = ask(srv.udp, "ALLOWED.Test.", RecordType::AAAA).await;
    assert_eq!(addrs(&m), [IpAddr::V6(UPSTREAM_V6)]);
    let m = ask(srv.udp, "deep.sub.ok.test.", RecordType::A).await;
    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
    // Whatever else the client puts in its query stays here.
    let mut q = Message::from_vec(&query("smuggle.ok.test.", RecordType::A)).unwrap();
    let txt = TXT::new(vec!["secret-data".to_string()]);
    q.add_additional(Record::from_rdata(
        Name::from_str("x.evil.test.").unwrap(),
        0,
        RData::TXT(txt),
    ));
    let r = Message::from_vec(&udp_raw(srv.udp, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(r.id(), q.id());
    assert_eq!(addrs(&r), [IpAddr::V4(UPSTREAM_V4)]);
    assert_eq!(up.saw("smuggle.ok.test"), 1);
    assert_eq!(up.saw("extra:smuggle.ok.test"), 0);
    let m = ask(srv.udp, "ok.test.", RecordType::HTTPS).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(up.saw("ok.test"), 1);

    let long = format!("{}.exfil.test.", "q7x9k2m4v8b1n5c3z6".repeat(3));
    for name in [
        "bad.ok.test.",
        "evil.test.",
        "allowed.test.evil.test.",
        long.as_str(),
    ] {
        let m = ask(srv.udp, name, RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(m.answers().is_empty());
        assert_eq!(
            up.saw(name.trim_end_matches('.')),
            0,
            "{name} reached upstream"
        );
    }

    // Other types of an allowed name: empty, and not asked upstream.
    for rtype in [RecordType::TXT, RecordType::MX, RecordType::ANY] {
        let m = ask(srv.udp, "allowed.test.", rtype).await;
        assert_eq!(m.response_code(), ResponseCode::NoError, "{rtype}");
        assert!(m.answers().is_empty(), "{rtype}");
    }
    let types: Vec<RecordType> = up.seen.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert!(
        types
            .iter()
            .all(|t| matches!(t, RecordType::A | RecordType::AAAA | RecordType::HTTPS)),
        "{types:?}"
    );

    let records = dns_audit(srv.state.path(), 10).await;
    let find = |host: &str, method: &str| {
        records
            .iter()
            .find(|r| r["host"] == host && r["method"] == method)
            .unwrap_or_else(|| panic!("no audit record for {host} {method} in {records:#?}"))
            .clone()
    };
    let allowed = find("allowed.test", "A");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["id"], "exec-dns");
    assert_eq!(allowed["port"], 53);
    assert!(
        allowed["rule"].as_str().unwrap().contains("allowed.test"),
        "{allowed}"
    );
    let denied = find("bad.ok.test", "A");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["reason"], "blocked-by-denylist");
    assert!(
        denied["rule"].as_str().unwrap().contains("bad.ok.test"),
        "{denied}"
    );
    assert_eq!(find("evil.test", "A")["decision"], "deny");
    assert_eq!(find(long.trim_end_matches('.'), "A")["decision"], "deny");
    let txt = find("allowed.test", "TXT");
    assert_eq!(txt["decision"], "allow");
    assert!(
        txt["message"].as_str().unwrap().contains("not forwarded"),
        "{txt}"
    );
}

/// What upstream says besides the answer (its authority and additional
/// records) is not passed on, nor an HTTPS record's ECH key (the proxy
/// refuses Encrypted Client Hellos); the rest of the answer is, compressed
/// names and all, and the same again from the cache.
#[tokio::test]
async fn answers_carry_only_the_answer_and_no_ech_key() {
    let up = upstream().await;
    let s = server(&[up.addr], ApprovalMode::Never).await;
    for _ in 0..2 {
        let m = ask(s.udp, "svc.ok.test", RecordType::HTTPS).await;
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.name_servers().is_empty(), "{m:?}");
        assert!(m.additionals().is_empty(), "{m:?}");
        let answers = m.answers();
        assert_eq!(answers.len(), 2, "{m:?}");
        assert_eq!(
            answers[0].data(),
            &RData::CNAME(CNAME(Name::from_str("cdn.ok.test.").unwrap()))
        );
        assert_eq!(answers[1].name(), &Name::from_str("cdn.ok.test.").unwrap());
        let https = https_of(&answers[1]);
        let keys: Vec<SvcParamKey> = https.svc_params().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                SvcParamKey::Mandatory,
                SvcParamKey::Alpn,
                SvcParamKey::Ipv4Hint,
                SvcParamKey::Ipv6Hint
            ]
        );
        assert_eq!(
            https.svc_params()[0].1,
            SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Alpn]))
        );
        assert_eq!(
            https.svc_params()[2].1,
            SvcParamValue::Ipv4Hint(IpHint(vec![A(UPSTREAM_V4)]))
        );
    }
    // The second answer came from the cache.
    let asked = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == "svc.ok.test")
        .count();
    assert_eq!(asked, 1);
}

fn https_of(r: &Record) -> &SVCB {
    match r.data() {
        RData::HTTPS(https) => &https.0,
        other => panic!("not HTTPS: {other:?}"),
    }
}

/// Where the profile allows Encrypted Client Hellos, HTTPS answers keep
/// their ECH key; from the same cache, a sandbox whose profile does not
/// allow them is told none.
#[tokio::test]
async fn an_ech_key_is_passed_on_only_where_the_profile_allows_ech() {
    let up = upstream().await;
    let resolver = Arc::new(Resolver::new(&dns_config(&[up.addr])).unwrap());
    let allowing = format!("{PROFILE}allow_ech = true\n");
    let with = server_on(Arc::clone(&resolver), &allowing, ApprovalMode::Never).await;
    let without = server_on(resolver, PROFILE, ApprovalMode::Never).await;
    // Without first (upstream's answer), then with and without from the cache.
    for (s, ech) in [(&without, false), (&with, true), (&without, false)] {
        let m = ask(s.udp, "svc.ok.test", RecordType::HTTPS).await;
        assert_eq!(m.answers().len(), 2, "{m:?}");
        let params = https_of(&m.answers()[1]).svc_params();
        let keys: Vec<SvcParamKey> = params.iter().map(|(k, _)| *k).collect();
        let mut want = vec![
            SvcParamKey::Mandatory,
            SvcParamKey::Alpn,
            SvcParamKey::Ipv4Hint,
            SvcParamKey::EchConfigList,
            SvcParamKey::Ipv6Hint,
        ];
        let mut mandatory = vec![SvcParamKey::Alpn, SvcParamKey::EchConfigList];
        if !ech {
            want.retain(|k| *k != SvcParamKey::EchConfigList);
            mandatory.pop();
        }
        assert_eq!(keys, want, "allow_ech = {ech}");
        assert_eq!(params[0].1, SvcParamValue::Mandatory(Mandatory(mandatory)));
    }
    assert_eq!(up.saw("svc.ok.test"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_names_needing_approval_are_not_resolved() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::OnRequest).await;
    let m = ask(srv.udp, "unlisted.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(up.saw("unlisted.test"), 0);
    let records = dns_audit(srv.state.path(), 1).await;
    assert_eq!(records[0]["host"], "unlisted.test");
    assert_eq!(records[0]["decision"], "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_hosts_are_answered_without_upstream() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let m = ask(srv.udp, "static.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(addrs(&m), [IpAddr::from([10, 0, 0, 5])]);
    let m = ask(srv.udp, "static.test.", RecordType::AAAA).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    let m = ask(srv.udp, "static.test.", RecordType::HTTPS).await;
    assert!(m.answers().is_empty());
    assert!(
        up.seen.lock().unwrap().is_empty(),
        "{:?}",
        up.seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_queries_are_answered_and_truncation_moves_upstream_to_tcp() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let mut c = TcpStream::connect(srv.tcp).await.unwrap();
    // Two queries on one connection, then a denied one.
    for (name, code, want) in [
        (
            "allowed.test.",
            ResponseCode::NoError,
            vec![IpAddr::V4(UPSTREAM_V4)],
        ),
        (
            "big.ok.test.",
            ResponseCode::NoError,
            vec![IpAddr::V4(UPSTREAM_V4)],
        ),
        ("evil.test.", ResponseCode::NXDomain, vec![]),
    ] {
        let q = query(name, RecordType::A);
        c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&q).await.unwrap();
        let len = c.read_u16().await.unwrap();
        let mut buf = vec![0u8; len.into()];
        c.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.response_code(), code, "{name}");
        assert_eq!(addrs(&m), want, "{name}");
    }
    // big.ok.test was asked over UDP (truncated), then over TCP.
    assert_eq!(up.saw("big.ok.test"), 2);
    assert_eq!(up.saw("evil.test"), 0);
}

/// One query over a new TCP connection; None when the connection closes
/// unanswered (or no answer comes within 2 s).
async fn tcp_ask(server: SocketAddr, name: &str) -> Option<Message> {
    let mut c = TcpStream::connect(server).await.ok()?;
    let q = query(name, RecordType::A);
    c.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat())
        .await
        .ok()?;
    let answer = async {
        let mut buf = vec![0u8; c.read_u16().await?.into()];
        c.read_exact(&mut buf).await.map(|_| buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), answer)
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf).ok()
}

/// TCP clients that send queries and read none of the answers are cut off
/// once the answers have waited 10 s (`TCP_IDLE`): with all 64 TCP slots
/// so taken a new client is turned away, and after that it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_that_read_no_answer_are_cut_off() {
    use nix::sys::socket::{setsockopt, sockopt};
    let up = upstream().await;
    // Small send buffers (the accepted connections inherit them), so that
    // the server's answers fill them soon.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    setsockopt(&tcp, sockopt::SndBuf, &4096).unwrap();
    let resolver = Arc::new(Resolver::new(&dns_config(&[up.addr])).unwrap());
    let srv = server_with(resolver, PROFILE, ApprovalMode::Never, tcp);
    // A denied name: answered at once, nothing asked upstream.
    let q = query("evil.test.", RecordType::A);
    let batch = [&(q.len() as u16).to_be_bytes()[..], &q]
        .concat()
        .repeat(512);
    // Each client writes queries until the server cuts it off, and says
    // when a write has stalled (the server waits on its answers).
    let mut writers = tokio::task::JoinSet::new();
    let mut stalls = Vec::new();
    for _ in 0..64 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.set_send_buffer_size(16384).unwrap();
        let mut c = sock.connect(srv.tcp).await.unwrap();
        let batch = batch.clone();
        let (stalled, stall) = tokio::sync::oneshot::channel();
        stalls.push(stall);
        writers.spawn(async move {
            let (mut stalled, mut at) = (Some(stalled), 0);
            loop {
                let write = c.write(&batch[at..]);
                tokio::pin!(write);
                let sent = match tokio::time::timeout(Duration::from_millis(500), &mut write).await
                {
                    Ok(sent) => sent,
                    Err(_) => {
                        stalled.take().map(|s| s.send(()));
                        write.await
                    }
                };
                match sent {
                    Ok(n) => at = (at + n) % batch.len(),
                    Err(e) => return e,
                }
            }
        });
    }
    for stall in stalls {
        stall.await.unwrap();
    }
    let filled = Instant::now();
    assert!(tcp_ask(srv.tcp, "static.test.").await.is_none());
    let answered = loop {
        if let Some(m) = tcp_ask(srv.tcp, "static.test.").await {
            break m;
        }
        assert!(
            filled.elapsed() < Duration::from_secs(14),
            "no TCP slot came free"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(addrs(&answered), [IpAddr::from([10, 0, 0, 5])]);
    // Every one of them was cut off (their writes fail).
    let cut = tokio::time::timeout(Duration::from_secs(3), writers.join_all())
        .await
        .expect("a client that reads nothing still holds its connection");
    assert_eq!(cut.len(), 64);
    assert_eq!(up.saw("evil.test"), 0);
}

/// DNS connections over TCP hold slots of their user's quota of
/// connections, which the proxies and every sandbox of the user share:
/// past it a new one is closed unanswered, while another user's are still
/// served, and one closed gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_past_the_users_quota_are_closed() {
    let up = upstream().await;
    let resolver = Arc::new(Resolver::new(&dns_config(&[up.addr])).unwrap());
    let quota = Quota::new(2, 16);
    let listener = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mine: Vec<Server> = (0..2)
        .map(|_| {
            server_of(
                1000,
                &quota,
                Arc::clone(&resolver),
                PROFILE,
                ApprovalMode::Never,
                listener(),
            )
        })
        .collect();
    let other = server_of(
        1001,
        &quota,
        resolver,
        PROFILE,
        ApprovalMode::Never,
        listener(),
    );
    let mut held = Vec::new();
    for srv in &mine {
        let mut c = TcpStream::connect(srv.tcp).await.unwrap();
        let q = query("static.test.", RecordType::A);
        c.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat())
            .await
            .unwrap();
        let mut buf = vec![0u8; c.read_u16().await.unwrap().into()];
        c.read_exact(&mut buf).await.unwrap();
        held.push(c);
    }
    assert_eq!(quota.held(1000).0, 2);
    assert!(tcp_ask(mine[0].tcp, "static.test.").await.is_none());
    assert!(tcp_ask(mine[1].tcp, "static.test.").await.is_none());
    assert!(tcp_ask(other.tcp, "static.test.").await.is_some());
    drop(held.pop());
    let freed = Instant::now();
    while tcp_ask(mine[0].tcp, "static.test.").await.is_none() {
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "no slot came free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_stop_the_server() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let mut two_questions = query("allowed.test.", RecordType::A);
    two_questions[5] = 2;
    let mut response = query("allowed.test.", RecordType::A);
    response[2] |= 0x80;
    let mut cut = query("allowed.test.", RecordType::A);
    cut.truncate(20);
    let noise: Vec<u8> = (0..600u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for bad in [
        &[][..],
        &[0x42][..],
        &[0; 12][..],
        &two_questions,
        &cut,
        &noise,
    ] {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(bad, srv.udp).await.unwrap();
    }
    // A well-formed header with a bad question is answered FORMERR; a response is not answered.
    let r = udp_raw(srv.udp, &two_questions).await.unwrap();
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&response, srv.udp).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf))
            .await
            .is_err()
    );
    // Garbage over TCP closes that connection only.
    let mut c = TcpStream::connect(srv.tcp).await.unwrap();
    c.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await;

    let m = ask(srv.udp, "allowed.test.", RecordType::A).await;
    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
    assert!(!srv.task.is_finished());
    assert!(up
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|(n, _)| n == "allowed.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_dropping_the_server_frees_its_sockets() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    for _ in 0..3 {
        let m = ask(srv.udp, "cached.ok.test.", RecordType::A).await;
        assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
        assert!(m.answers()[0].ttl() <= 60);
    }
    assert_eq!(up.saw("cached.ok.test"), 1);
    // Repeated identical questions fold into the records already waiting.
    let records = dns_audit(srv.state.path(), 1).await;
    assert!(records.iter().all(|r| r["host"] == "cached.ok.test"));

    srv.task.abort();
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::net::UdpSocket::bind(srv.udp).is_err()
        || std::net::TcpListener::bind(srv.tcp).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the server's sockets outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_expire_with_their_ttl() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    for _ in 0..2 {
        let m = ask(srv.udp, "short.ok.test.", RecordType::A).await;
        assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
    }
    assert_eq!(
        up.saw("short.ok.test"),
        1,
        "the second lookup within the TTL is the cache's"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = ask(srv.udp, "short.ok.test.", RecordType::A).await;
    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
    assert_eq!(
        up.saw("short.ok.test"),
        2,
        "past its TTL the answer is asked again"
    );
}

/// A full cache goes on caching: a flood of new names (here twice what it
/// holds) pushes out only the answers nobody asked for lately, and the
/// answers that came after it are cached too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_names_does_not_stop_the_cache() {
    use sandboxd::net::resolve::CACHE_ENTRIES;
    let up = upstream().await;
    let resolver = Arc::new(Resolver::new(&dns_config(&[up.addr])).unwrap());
    let popular = "popular.ok.test";
    const AT_ONCE: usize = 128;
    // Two answers a name (A and AAAA).
    for round in 0..CACHE_ENTRIES / AT_ONCE {
        resolver.lookup_ip(popular, || true).await.unwrap();
        let mut lookups = tokio::task::JoinSet::new();
        for i in 0..AT_ONCE {
            let r = Arc::clone(&resolver);
            lookups
                .spawn(async move { r.lookup_ip(&format!("n{round}-{i}.ok.test"), || true).await });
        }
        while lookups.join_next().await.is_some() {}
    }
    let fresh = "fresh.ok.test";
    for name in [fresh, fresh, popular] {
        resolver.lookup_ip(name, || true).await.unwrap();
    }
    assert_eq!(up.saw(fresh), 2, "asked once for A and once for AAAA");
    assert_eq!(up.saw(popular), 2, "asked once for A and once for AAAA");
}

/// Many queries at once, from several sockets, without waiting for the
/// replies: every one is answered (the server reads and replies in batches),
/// each with its own id and question, and denied names still never leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_queries_is_answered_in_full() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    // 100 queries at once: several batches for the server, yet few enough to
    // fit its socket's receive buffer however slowly it drains (a loaded
    // machine dropped datagrams of a 400-query burst: UDP, not the server).
    const SOCKETS: usize = 4;
    const EACH: usize = 25;
    let mut clients = Vec::new();
    for c in 0..SOCKETS {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sent = std::collections::HashMap::new();
        for i in 0..EACH {
            let name = match i % 4 {
                0 => "static.test.".to_string(),
                1 => format!("h{i}.evil.example."),
                2 => "burst.ok.test.".to_string(),
                _ => "bad.ok.test.".to_string(),
            };
            let id = (c * EACH + i) as u16;
            let mut m = Message::new();
            m.set_id(id)
                .set_recursion_desired(true)
                .add_query(Query::query(Name::from_str(&name).unwrap(), RecordType::A));
            s.send_to(&m.to_vec().unwrap(), srv.udp).await.unwrap();
            sent.insert(id, name);
        }
        clients.push((s, sent));
    }
    for (s, mut sent) in clients {
        let mut buf = vec![0u8; 4096];
        while !sent.is_empty() {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} queries unanswered, e.g. {:?}",
                        sent.len(),
                        sent.values().next()
                    )
                })
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            let name = sent.remove(&m.id()).expect("a reply to a query sent, once");
            assert_eq!(m.queries()[0].name().to_ascii(), name);
            let want = match name.as_str() {
                "static.test." => (ResponseCode::NoError, vec![IpAddr::from([10, 0, 0, 5])]),
                "burst.ok.test." => (ResponseCode::NoError, vec![IpAddr::V4(UPSTREAM_V4)]),
                _ => (ResponseCode::NXDomain, vec![]),
            };
            assert_eq!((m.response_code(), addrs(&m)), want, "{name}");
        }
    }
    let seen = up.seen.lock().unwrap();
    assert!(seen.iter().all(|(n, _)| n == "burst.ok.test"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_lookups_skip_dead_servers_and_forged_answers() {
    let up = upstream().await;
    // A server that never answers comes first.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = Resolver::new(&dns_config(&[dead.local_addr().unwrap(), up.addr])).unwrap();
    let started = Instant::now();
    let mut got = resolver.lookup_ip("allowed.test", || true).await.unwrap();
    got.sort();
    assert_eq!(got, [IpAddr::V4(UPSTREAM_V4), IpAddr::V6(UPSTREAM_V6)]);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );

    let resolver = Resolver::new(&dns_config(&[up.addr])).unwrap();
    assert_eq!(
        resolver.lookup_ip("static.test", || true).await.unwrap(),
        [IpAddr::from([10, 0, 0, 5])]
    );
    for _ in 0..2 {
        assert!(matches!(
            resolver.lookup_ip("gone.nx.test", || true).await,
            Err(ResolveError::NotFound { .. })
        ));
    }
    // The negative answer came from the cache the second time.
    assert_eq!(up.saw("gone.nx.test"), 2, "A and AAAA once each");
    let got = resolver.lookup_ip("spoof.ok.test", || true).await.unwrap();
    assert!(
        got.contains(&IpAddr::V4(UPSTREAM_V4)) && !got.contains(&IpAddr::from([6, 6, 6, 6])),
        "{got:?}"
    );
    // forward keeps the query's id.
    let q = query("fwd.ok.test.", RecordType::A);
    let r = Message::from_vec(&resolver.forward(&q).await.unwrap()).unwrap();
    assert_eq!(r.id(), Message::from_vec(&q).unwrap().id());
    assert_eq!(addrs(&r), [IpAddr::V4(UPSTREAM_V4)]);
}

#[tokio::test]
async fn system_upstream_reads_etc_hosts() {
    // Upstream "system": /etc/hosts answers before any nameserver is asked.
    let resolver = Resolver::new(&DnsConfig::default()).unwrap();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let Some((ip, name)) = hosts.lines().find_map(|l| {
        let mut f = l.split('#').next()?.split_whitespace();
        Some((f.next()?.parse::<IpAddr>().ok()?, f.next()?.to_string()))
    }) else {
        return;
    };
    let got = resolver
        .lookup_ip(&name.to_uppercase(), || true)
        .await
        .unwrap();
    assert!(got.contains(&ip), "{name}: {got:?}");
}

#[tokio::test]
async fn an_allowed_address_spelled_as_a_name_is_not_looked_up() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let before = up.seen.lock().unwrap().len();
    // 192.0.2.1 (allowed as a literal) in spellings without end.
    for name in [
        "192.0.2.1.",
        "0300.0.2.1.",
        "0xc0.0.2.1.",
        "0x00000000c0.0.2.1.",
        "3221225985.",
    ] {
        let m = ask(srv.udp, name, RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{name}");
    }
    assert_eq!(
        up.seen.lock().unwrap().len(),
        before,
        "{:?}",
        up.seen.lock().unwrap()
    );
    let records = dns_audit(srv.state.path(), 5).await;
    assert!(
        records.iter().all(|r| r["decision"] == "deny"),
        "{records:#?}"
    );
}

/// Made-up names cost a record each: past the burst, a sandbox gets at most
/// the rate's worth of new questions decided and recorded; the rest are
/// answered REFUSED and counted in a record of their own. The allowance
/// comes back with time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_names_past_the_rate_are_counted_not_recorded_one_by_one() {
    use sandboxd::net::rate::{BURST as NEW_BURST, PER_SECOND as NEW_PER_SECOND};
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let started = Instant::now();
    let sent = 3 * NEW_BURST as usize;
    // A few at a time, so that UDP drops nothing on a slow machine.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut answered, mut refused) = (0, 0);
    let mut buf = vec![0u8; 4096];
    for chunk in 0..sent / 64 {
        for i in 0..64 {
            let name = format!("x{chunk}-{i}.evil.example.");
            let mut m = Message::new();
            m.set_id(i as u16)
                .add_query(Query::query(Name::from_str(&name).unwrap(), RecordType::A));
            s.send_to(&m.to_vec().unwrap(), srv.udp).await.unwrap();
        }
        // Each chunk answered before the next (or given up on, if one is
        // never answered).
        while answered + refused < (chunk + 1) * 64 {
            let wait = Duration::from_secs(5);
            let Ok(Ok((n, _))) = tokio::time::timeout(wait, s.recv_from(&mut buf)).await else {
                break;
            };
            match Message::from_vec(&buf[..n]).unwrap().response_code() {
                ResponseCode::Refused => refused += 1,
                _ => answered += 1,
            }
        }
    }
    // Over the rate: REFUSED at once, not left to time out.
    assert_eq!(
        answered + refused,
        sent,
        "{answered} answered, {refused} refused"
    );
    let elapsed = started.elapsed().as_secs_f64();
    let most = NEW_BURST as usize + (elapsed * NEW_PER_SECOND) as usize + 1;
    assert!(answered <= most, "{answered} answered in {elapsed:.1} s");
    assert!(answered >= NEW_BURST as usize, "{answered} answered");
    let want = answered + 1;
    let records = dns_audit(srv.state.path(), want).await;
    let (counted, each): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| r["reason"] == "blocked-by-rate-limit");
    assert_eq!(each.len(), answered, "one record per answered name");
    let unanswered: u64 = counted
        .iter()
        .map(|r| {
            let m = r["message"].as_str().unwrap();
            m.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(unanswered as usize, sent - answered, "{counted:?}");
    assert!(counted[0]["rule"]
        .as_str()
        .unwrap()
        .contains("new names (DNS questions and proxy lookups together): at most"));
    // The allowance comes back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = ask(srv.udp, "later.evil.example.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(up.seen.lock().unwrap().is_empty());
}

/// Names a build asks again and again are not new questions: once their
/// record is written, their repeats are answered alike and counted, without
/// taking from the allowance of new questions (which a few hundred popular
/// names, asked every half second, would use up within a second or two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popular_names_asked_again_do_not_use_up_the_rate() {
    use sandboxd::net::rate::BURST as NEW_BURST;
    const NAMES: usize = 300;
    const ROUNDS: usize = 4;
    assert!(
        2 * NAMES > NEW_BURST as usize,
        "the rounds outrun the burst"
    );
    let up = upstream().await;
    let mut srv = server(&[up.addr], ApprovalMode::Never).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let name = |i: usize| format!("p{i}.ok.test.");
    let mut sent = 0;
    for round in 0..ROUNDS {
        let mut missing: std::collections::BTreeSet<usize> = (0..NAMES).collect();
        // Twice, for the odd datagram a loaded machine drops: a name refused
        // for the rate would still be refused the second time.
        for _ in 0..2 {
            let ids: Vec<usize> = missing.iter().copied().collect();
            for chunk in ids.chunks(50) {
                for &i in chunk {
                    let mut m = Message::new();
                    m.set_id(i as u16).add_query(Query::query(
                        Name::from_str(&name(i)).unwrap(),
                        RecordType::A,
                    ));
                    s.send_to(&m.to_vec().unwrap(), srv.udp).await.unwrap();
                    sent += 1;
                }
                let mut buf = vec![0u8; 4096];
                while let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(200), s.recv_from(&mut buf)).await
                {
                    let m = Message::from_vec(&buf[..n]).unwrap();
                    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
                    missing.remove(&(m.id() as usize));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "round {round}: {} unanswered",
            missing.len()
        );
        // Past the writer's gathering of identical questions.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Every query is in the log: the first of each name recorded, its
    // repeats counted (here when the server ends).
    srv.task.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = dns_audit(srv.state.path(), NAMES).await;
        let counted: u64 = records
            .iter()
            .map(|r| {
                let m = r["message"].as_str().unwrap();
                let n = |marker: &str| {
                    m.split(" (")
                        .filter_map(|part| part.strip_suffix(marker))
                        .filter_map(|part| part.split(' ').next()?.parse::<u64>().ok())
                        .next()
                };
                n(" identical queries)")
                    .or_else(|| {
                        m.split(" (")
                            .find(|p| p.contains("more identical queries"))
                            .and_then(|p| p.split(' ').next()?.parse().ok())
                    })
                    .unwrap_or(1)
            })
            .sum();
        // Each name was answered in each round; a query the machine
        // dropped before the server read it (then sent again) is not in it.
        if (NAMES * ROUNDS..=sent).contains(&(counted as usize)) {
            assert!(records.iter().all(|r| r["decision"] == "allow"));
            // The stream shows each decision once, not its counts of repeats.
            let mut shown = 0;
            while srv.events.try_recv().is_ok() {
                shown += 1;
            }
            assert_eq!(shown, NAMES, "events on the exec's stream");
            assert!(records.iter().any(|r| r["message"]
                .as_str()
                .unwrap()
                .contains("more identical queries")));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{counted} queries in the log, {sent} sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `dir` bound over itself read-only while it lives (on the host: the
/// test's files are opened by path, as the audit log's are).
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn over(dir: &std::path::Path) -> ReadOnly {
        let mount = |args: &[&str]| {
            let st = std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .expect("mount");
            assert!(st.success(), "mount {args:?} {}", dir.display());
        };
        mount(&["--bind"]);
        let guard = ReadOnly(dir.to_path_buf());
        mount(&["-o", "remount,ro,bind"]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// While the audit log cannot be written, names get REFUSED (no answer
/// without a record); once it can, the writer tries again on its own: the
/// decisions taken meanwhile are written without a new question, and
/// names are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_the_decisions_kept_are_written_without_a_new_question() {
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let m = ask(srv.udp, "allowed.test.", RecordType::A).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(dns_audit(srv.state.path(), 1).await.len(), 1);
    {
        let _ro = ReadOnly::over(srv.state.path());
        // Answered (decided before its write), then its write fails.
        ask(srv.udp, "one.ok.test.", RecordType::A).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = ask(srv.udp, "two.ok.test.", RecordType::A).await;
            if m.response_code() == ResponseCode::Refused {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still answered with the log failing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let names = |recs: &[serde_json::Value]| -> Vec<String> {
        recs.iter()
            .filter_map(|r| r["host"].as_str().map(str::to_string))
            .collect()
    };
    let recs = dns_audit(srv.state.path(), 3).await;
    let seen = names(&recs);
    assert!(
        seen.iter().any(|n| n == "one.ok.test") && seen.iter().any(|n| n == "two.ok.test"),
        "not written after the log came back: {recs:#?}"
    );
    // Answered again once the writer has seen its write go through.
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = ask(srv.udp, "three.ok.test.", RecordType::A).await;
        if m.response_code() != ResponseCode::Refused || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(addrs(&m), [IpAddr::V4(UPSTREAM_V4)]);
}

/// An allowed name whose answer is never cached (SERVFAIL) goes upstream
/// each time it is asked, but no faster than the sandbox's rate of
/// upstream queries: past it the query is answered REFUSED at once, and
/// counted in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_queries_are_held_to_the_sandboxs_rate() {
    use sandboxd::net::rate::{FORWARDS_PER_SECOND, FORWARD_BURST};
    let up = upstream().await;
    let srv = server(&[up.addr], ApprovalMode::Never).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let (mut sent, mut failed, mut refused) = (0, 0, 0);
    let mut buf = vec![0u8; 4096];
    // In batches, each answered before the next: faster than the rate
    // however slowly one round trip goes; past the burst, until one is
    // refused (a slow machine refills more while they go).
    const BATCH: usize = 64;
    let enough = FORWARD_BURST as usize + 256;
    while sent < enough || (refused == 0 && sent < 8 * enough) {
        for i in sent..sent + BATCH {
            let mut m = Message::new();
            m.set_id(i as u16)
                .set_recursion_desired(true)
                .add_query(Query::query(
                    Name::from_str("fail.ok.test.").unwrap(),
                    RecordType::A,
                ));
            s.send_to(&m.to_vec().unwrap(), srv.udp).await.unwrap();
        }
        sent += BATCH;
        for _ in 0..BATCH {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            match Message::from_vec(&buf[..n]).unwrap().response_code() {
                ResponseCode::Refused => refused += 1,
                ResponseCode::ServFail => failed += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let asked = up.saw("fail.ok.test");
    assert_eq!(asked, failed, "{refused} refused");
    let most = FORWARD_BURST as usize + (elapsed * FORWARDS_PER_SECOND) as usize + 1;
    assert!(asked <= most, "{asked} asked upstream in {elapsed:.1} s");
    assert!(refused > 0, "{asked} asked upstream, none refused");
    // Counted a batch at a time: wait for the last batch.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = dns_audit(srv.state.path(), 2).await;
        let counted: u64 = records
            .iter()
            .filter(|r| r["reason"] == "blocked-by-rate-limit")
            .map(|r| {
                let rule = r["rule"].as_str().unwrap();
                assert!(rule.contains("DNS queries sent upstream"), "{r}");
                let m = r["message"].as_str().unwrap();
                m.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        if counted as usize == refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{counted} of {refused} counted: {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A lookup that may not go upstream (the sandbox is past its rate of
/// upstream queries) is answered from the static hosts and the cache only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_may_not_go_upstream_asks_nothing() {
    let up = upstream().await;
    let resolver = Resolver::new(&dns_config(&[up.addr])).unwrap();
    resolver.lookup_ip("cached.ok.test", || true).await.unwrap();
    assert!(resolver.lookup_ip("fresh.ok.test", || false).await.is_err());
    let cached = resolver
        .lookup_ip("cached.ok.test", || false)
        .await
        .unwrap();
    assert_eq!(cached.len(), 2);
    assert!(resolver.lookup_ip("static.test", || false).await.is_ok());
    assert_eq!(up.saw("fresh.ok.test"), 0);
    assert_eq!(up.saw("cached.ok.test"), 2);
}
