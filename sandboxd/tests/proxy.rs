//! The HTTP and SOCKS5 proxies over real loopback sockets: an origin server
//! and an echo server on 127.0.0.1 reached as `allowed.test` (through
//! `[dns] hosts` and `allow_cidrs`), profiles from a temporary policy dir,
//! and the audit log read back from its file.

use sandboxd::audit::AuditLog;
use sandboxd::config::DnsConfig;
use sandboxd::net::listen::{wait_all_ended, NetThread};
use sandboxd::net::session::{Answer, Questions};
use sandboxd::net::{NetPolicy, NetQuery, NetRecord, Resolver, Session};
use sandboxd::policy::{ApprovalMode, PolicyStore};
use sandboxd::quota::Quota;
use sandboxd::tls::Inspector;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SECRET: &str = "s3cret-value";
/// A public address, which a test gives its own network namespace's `lo`.
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 114, 7);

/// One request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 origin on 127.0.0.1: keep-alive, Content-Length request
/// bodies; `/chunked` answers chunked; every request is remembered.
struct Origin {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: JoinHandle<()>,
}

impl Origin {
    async fn start() -> Origin {
        Origin::start_at(Ipv4Addr::LOCALHOST).await
    }

    /// The same on `ip`.
    async fn start_at(ip: Ipv4Addr) -> Origin {
        let l = TcpListener::bind((ip, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((c, _)) = l.accept().await {
                conn += 1;
                tokio::spawn(origin_conn(c, conn, Arc::clone(&s)));
            }
        });
        Origin {
            port,
            seen,
            _task: task,
        }
    }

    /// The same over TLS with `config`.
    async fn start_tls(config: Arc<rustls::ServerConfig>) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((c, _)) = l.accept().await {
                conn += 1;
                let s = Arc::clone(&s);
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config));
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(c).await {
                        origin_conn(tls, conn, s).await;
                    }
                });
            }
        });
        Origin {
            port,
            seen,
            _task: task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn origin_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: S,
    conn: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    loop {
        let (line, headers, n) = loop {
            let mut h = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut h);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let line = format!("{} {}", req.method.unwrap(), req.path.unwrap());
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (line, headers, n);
            }
            let mut chunk = [0u8; 4096];
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        buf.drain(..n);
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let head_only = line.starts_with("HEAD ");
        seen.lock().unwrap().push(Seen {
            conn,
            line,
            headers,
            body,
        });
        let answer = if path == "/chunked" {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunk-\r\n4\r\ned!!\r\n0\r\n\r\n".to_string()
        } else {
            let body = format!("hello {path}");
            let len = body.len();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{}",
                if head_only { "" } else { &body }
            )
        };
        if c.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A TCP echo server on 127.0.0.1 counting the bytes it received.
struct Echo {
    port: u16,
    received: Arc<Mutex<usize>>,
    _task: JoinHandle<()>,
}

impl Echo {
    /// How many bytes of `hello`, sent through `p`, reached this server.
    async fn passed(&self, p: &Proxy, hello: &[u8]) -> usize {
        let before = *self.received.lock().unwrap();
        let back = hello_through_connect(p, self.port, hello).await;
        assert!(back.is_empty(), "an echoed hello came back: {back:?}");
        *self.received.lock().unwrap() - before
    }

    async fn start() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(0));
        let r = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                *r.lock().unwrap() += n;
                                if c.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo {
            port,
            received,
            _task: task,
        }
    }
}

/// The proxies serving one session, and where they write.
struct Proxy {
    http: SocketAddr,
    socks: SocketAddr,
    audit_dir: tempfile::TempDir,
    _policy_dir: tempfile::TempDir,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `[network]` of the test profiles: allowed.test and other.test on the
/// servers' ports, denied.test denied, an injection rule for allowed.test.
fn network(ports: &[u16], extra: &str) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "[network]\nmode = \"allowlist\"\nallow = [\"allowed.test\", \"other.test\", \"**.wild.test\"]\n\
         deny = [\"denied.test\"]\nports = [{}]\n{extra}\n\
         [[network.rule]]\nhost = \"allowed.test\"\n\
         inject = {{ header = \"Authorization\", value = \"Bearer {{secret:TOKEN}}\" }}\n",
        ports.join(", ")
    )
}

/// Starts both proxies for a profile with `body`.
async fn proxy(body: &str) -> Proxy {
    proxy_inspecting(body, None).await
}

/// Starts both proxies for a profile with `body`, inspecting with `inspector`.
async fn proxy_inspecting(body: &str, inspector: Option<Arc<Inspector>>) -> Proxy {
    proxy_with(body, inspector, None).await
}

/// A session for a profile with `body` (approval `on-request` asking on
/// `questions` when given), with its policy dir and audit log in temporary
/// dirs, and the receiver of its events.
struct Sessioned {
    session: Arc<Session>,
    policy_dir: tempfile::TempDir,
    audit_dir: tempfile::TempDir,
    events: tokio::sync::mpsc::Receiver<NetRecord>,
}

fn session_with(
    body: &str,
    inspector: Option<Arc<Inspector>>,
    questions: Option<Questions>,
) -> Sessioned {
    session_of(
        body,
        inspector,
        questions,
        (1000, Quota::new(4096, 4096)),
        None,
    )
}

/// [`session_with`] for `uid`, whose sandboxes share `quota`, resolving
/// names not in its hosts at `upstream` (none answers by default).
fn session_of(
    body: &str,
    inspector: Option<Arc<Inspector>>,
    questions: Option<Questions>,
    (uid, quota): (u32, Arc<Quota>),
    upstream: Option<SocketAddr>,
) -> Sessioned {
    let approval = if questions.is_some() {
        ApprovalMode::OnRequest
    } else {
        ApprovalMode::Never
    };
    let policy_dir = tempfile::tempdir().unwrap();
    std::fs::write(policy_dir.path().join("p.toml"), body).unwrap();
    let store = PolicyStore::load(Some(policy_dir.path()), false).unwrap();
    let policy = NetPolicy::from_profile(store.get("p").unwrap(), None, approval).unwrap();
    let lo = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let hosts: BTreeMap<String, Vec<IpAddr>> = [
        "allowed.test",
        "other.test",
        "denied.test",
        "allowed.test.evil.test",
        "a.wild.test",
        "ask.test",
    ]
    .iter()
    .map(|n| (n.to_string(), lo.clone()))
    // The first address has nothing listening: a dial goes on to the second.
    .chain([
        (
            "two.wild.test".to_string(),
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ],
        ),
        ("public.test".to_string(), vec![IpAddr::V4(PUBLIC)]),
        // Nothing listens there.
        (
            "closed.wild.test".to_string(),
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))],
        ),
    ])
    .collect();
    let resolver = Resolver::new(&DnsConfig {
        // Nothing answers at the default: every name the tests reach is in `hosts`.
        upstream: Some(vec![
            upstream.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())
        ]),
        hosts,
    })
    .unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(audit_dir.path(), 1 << 30).unwrap());
    let (events_tx, events) = tokio::sync::mpsc::channel(1024);
    let secrets = BTreeMap::from([("TOKEN".to_string(), SECRET.to_string())]);
    let session = Session::new(
        "exec-test".into(),
        uid,
        policy,
        secrets,
        Arc::new(resolver),
        inspector,
        Arc::new(Vec::new()),
        audit,
        events_tx,
        questions,
        quota,
    );
    Sessioned {
        session,
        policy_dir,
        audit_dir,
        events,
    }
}

/// Starts both proxies; with `questions`, approval `on-request` asks there.
async fn proxy_with(
    body: &str,
    inspector: Option<Arc<Inspector>>,
    questions: Option<Questions>,
) -> Proxy {
    serve(session_with(body, inspector, questions))
}

/// Both proxies of `sessioned`.
fn serve(sessioned: Sessioned) -> Proxy {
    let Sessioned {
        session,
        policy_dir,
        audit_dir,
        mut events,
    } = sessioned;
    let h = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (http, socks) = (h.local_addr().unwrap(), s.local_addr().unwrap());
    let s1 = Arc::clone(&session);
    let tasks = vec![
        tokio::spawn(async move {
            sandboxd::proxy::serve_http(h, s1).await.unwrap();
        }),
        tokio::spawn(async move {
            sandboxd::proxy::serve_socks(s, session).await.unwrap();
        }),
        tokio::spawn(async move { while events.recv().await.is_some() {} }),
    ];
    Proxy {
        http,
        socks,
        audit_dir,
        _policy_dir: policy_dir,
        tasks,
    }
}

impl Proxy {
    /// The audit records of kind `network` or `network-end`.
    fn records(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.audit_dir.path().join("audit.jsonl")).unwrap_or_default();
        // Whole lines only: a record may be being written.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["kind"].as_str().is_some_and(|k| k.starts_with("network")))
            .collect()
    }

    /// Waits (a little) for a record matching `f`.
    async fn wait_record(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            if let Some(r) = self.records().into_iter().find(&f) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no audit record {what}; have: {:#?}", self.records());
    }
}

/// A response as the client saw it.
#[derive(Debug)]
struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length, chunked or to the end).
async fn read_response<S: AsyncRead + Unpin>(c: &mut S, buf: &mut Vec<u8>) -> Response {
    let (code, headers, n) = loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut h);
        if let httparse::Status::Complete(n) = res.parse(buf).unwrap() {
            let headers: Vec<(String, String)> = res
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (res.code.unwrap(), headers, n);
        }
        let mut chunk = [0u8; 4096];
        let k = c.read(&mut chunk).await.unwrap();
        assert!(
            k > 0,
            "the proxy closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..k]);
    };
    buf.drain(..n);
    let mut r = Response {
        code,
        headers,
        body: String::new(),
    };
    if let Some(len) = r
        .header("content-length")
        .map(|v| v.parse::<usize>().unwrap())
    {
        while buf.len() < len {
            assert!(fill(c, buf).await > 0, "body cut short");
        }
        r.body = String::from_utf8_lossy(&buf.drain(..len).collect::<Vec<_>>()).into_owned();
    } else if r.header("transfer-encoding") == Some("chunked") {
        loop {
            let text = String::from_utf8_lossy(buf).into_owned();
            if text.contains("\r\n0\r\n\r\n") || text.starts_with("0\r\n\r\n") {
                let end = text.find("0\r\n\r\n").unwrap() + 5;
                let mut rest = &text[..end];
                while let Some((size, tail)) = rest.split_once("\r\n") {
                    let n = usize::from_str_radix(size, 16).unwrap();
                    if n == 0 {
                        break;
                    }
                    r.body.push_str(&tail[..n]);
                    rest = &tail[n + 2..];
                }
                buf.drain(..end);
                break;
            }
            assert!(fill(c, buf).await > 0, "chunked body cut short");
        }
    } else {
        while fill(c, buf).await > 0 {}
        r.body = String::from_utf8_lossy(buf).into_owned();
        buf.clear();
    }
    r
}

/// Reads more into `buf`; 0 at the end.
async fn fill<S: AsyncRead + Unpin>(c: &mut S, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    let k = c.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..k]);
    k
}

/// Sends `raw` on a new connection to the HTTP proxy and reads one response.
async fn ask(p: &Proxy, raw: &str) -> Response {
    let mut c = TcpStream::connect(p.http).await.unwrap();
    c.write_all(raw.as_bytes()).await.unwrap();
    read_response(&mut c, &mut Vec::new()).await
}

fn get(url: &str, host: &str, extra: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

/// `GET http://HOST:PORT/` with a matching Host header.
fn get_root(host: &str, port: u16) -> String {
    get(
        &format!("http://{host}:{port}/"),
        &format!("{host}:{port}"),
        "",
    )
}

fn assert_refused(r: &Response, reason: &str) {
    assert_eq!(r.code, 403, "{r:?}");
    assert_eq!(
        r.header("x-proxy-error"),
        Some(format!("blocked-by-{reason}").as_str()),
        "{r:?}"
    );
}

async fn setup() -> (Origin, Echo, Proxy) {
    let origin = Origin::start().await;
    let echo = Echo::start().await;
    let p = proxy(&network(
        &[origin.port, echo.port, 443],
        "allow_cidrs = [\"127.0.0.0/8\"]",
    ))
    .await;
    (origin, echo, p)
}

#[tokio::test]
async fn allowed_get_in_absolute_form_reaches_the_origin_without_proxy_headers() {
    let (origin, _echo, p) = setup().await;
    let o = origin.port;
    let r = ask(
        &p,
        &get(
            &format!("http://allowed.test:{o}/hello?x=1"),
            &format!("allowed.test:{o}"),
            "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nX-Kept: yes\r\n",
        ),
    )
    .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.body, "hello /hello?x=1");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "GET /hello?x=1");
    assert_eq!(
        seen[0].header("host"),
        Some(format!("allowed.test:{o}").as_str())
    );
    assert_eq!(seen[0].header("x-kept"), Some("yes"));
    assert!(
        seen[0].header("proxy-connection").is_none()
            && seen[0].header("proxy-authorization").is_none()
    );
}

#[tokio::test]
async fn keep_alive_carries_two_requests_on_one_connection_each_side() {
    let (origin, _echo, p) = setup().await;
    let o = origin.port;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    let mut buf = Vec::new();
    c.write_all(
        get(
            &format!("http://allowed.test:{o}/one"),
            &format!("allowed.test:{o}"),
            "",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r1 = read_response(&mut c, &mut buf).await;
    c.write_all(
        get(
            &format!("http://allowed.test:{o}/chunked"),
            &format!("allowed.test:{o}"),
            "",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r2 = read_response(&mut c, &mut buf).await;
    // HEAD: a length and no body.
    c.write_all(
        format!("HEAD http://allowed.test:{o}/h HTTP/1.1\r\nHost: allowed.test:{o}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut h = Vec::new();
    while !h.ends_with(b"\r\n\r\n") {
        assert!(fill(&mut c, &mut h).await > 0);
    }
    let h = String::from_utf8(h).unwrap();
    assert!(
        h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 8\r\n"),
        "{h}"
    );
    // A POST with a body on the same connection.
    let post = format!("POST http://allowed.test:{o}/up HTTP/1.1\r\nHost: allowed.test:{o}\r\nContent-Length: 5\r\n\r\nabcde");
    c.write_all(post.as_bytes()).await.unwrap();
    let r3 = read_response(&mut c, &mut buf).await;
    assert_eq!((r1.code, r1.body.as_str()), (200, "hello /one"));
    assert_eq!((r2.code, r2.body.as_str()), (200, "chunk-ed!!"));
    assert_eq!((r3.code, r3.body.as_str()), (200, "hello /up"));
    let seen = origin.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|s| s.conn == seen[0].conn),
        "one upstream connection: {seen:?}"
    );
    assert_eq!(seen[3].body, b"abcde");
}

#[tokio::test]
async fn connect_tunnels_to_an_echo_server_and_audits_the_bytes() {
    let (_origin, echo, p) = setup().await;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    let e = echo.port;
    c.write_all(
        format!("CONNECT allowed.test:{e} HTTP/1.1\r\nHost: allowed.test:{e}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 Connection established\r\n\r\n");
    c.write_all(b"ping through the tunnel").await.unwrap();
    let mut back = [0u8; 23];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping through the tunnel");
    drop(c);
    let d = p
        .wait_record("decision", |r| {
            r["kind"] == "network" && r["protocol"] == "connect"
        })
        .await;
    assert_eq!(
        (d["decision"].as_str(), d["host"].as_str()),
        (Some("allow"), Some("allowed.test"))
    );
    assert_eq!(d["addr"], "127.0.0.1");
    assert_eq!(d["id"], "exec-test");
    let end = p
        .wait_record("end", |r| {
            r["kind"] == "network-end" && r["protocol"] == "connect"
        })
        .await;
    assert_eq!(
        (end["bytes_up"].as_u64(), end["bytes_down"].as_u64()),
        (Some(23), Some(23))
    );
}

/// Tunnels in sequence on the daemon's kind of runtime (decisions are
/// written on the calling worker there; end records are queued and ride
/// with the next flush): each tunnel's decision is in the log before its
/// end, every end record reaches the disk without further traffic, and the
/// chain stays intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_tunnels_keep_decisions_before_ends_in_an_intact_chain() {
    let (_origin, echo, p) = setup().await;
    let e = echo.port;
    const TUNNELS: usize = 5;
    for i in 0..TUNNELS {
        let mut c = tunnel(&p, e).await;
        let ping = format!("tunnel {i}");
        c.write_all(ping.as_bytes()).await.unwrap();
        let mut back = vec![0u8; ping.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, ping.as_bytes());
    }
    let is_end = |r: &Value| r["kind"] == "network-end" && r["protocol"] == "connect";
    for _ in 0..100 {
        if p.records().iter().filter(|r| is_end(r)).count() == TUNNELS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = p.records();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "network-end").count(),
        TUNNELS,
        "{kinds:?}"
    );
    // Each end follows a decision not yet ended.
    let mut open = 0;
    for k in &kinds {
        match *k {
            "network" => open += 1,
            _ => {
                assert!(open > 0, "an end record before its decision: {kinds:?}");
                open -= 1;
            }
        }
    }
    let summary = sandboxd::audit::verify(p.audit_dir.path()).unwrap();
    assert_eq!(summary.records, 2 * TUNNELS as u64);
}

/// SOCKS5 greeting and CONNECT to a name; returns the reply code.
async fn socks_connect(p: &Proxy, atyp: u8, addr: &[u8], port: u16) -> (u8, TcpStream) {
    let mut c = TcpStream::connect(p.socks).await.unwrap();
    c.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    c.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, atyp];
    if atyp == 3 {
        req.push(addr.len() as u8);
    }
    req.extend(addr);
    req.extend(port.to_be_bytes());
    c.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    c.read_exact(&mut rep).await.unwrap();
    (rep[1], c)
}

/// Whether a connection to `addr` that sends `hello` is closed at once,
/// with no answer.
async fn closed_on_arrival(addr: SocketAddr, hello: &[u8]) -> bool {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(hello).await;
    let mut buf = [0u8; 64];
    matches!(c.read(&mut buf).await, Ok(0) | Err(_))
}

/// Waits (5 s at most) until a connection to `addr` that sends `hello`
/// is answered; the answer's first bytes.
async fn answered(addr: SocketAddr, hello: &[u8]) -> String {
    let again = async {
        loop {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let _ = c.write_all(hello).await;
            let mut buf = [0u8; 64];
            match c.read(&mut buf).await {
                Ok(n) if n > 0 => return String::from_utf8_lossy(&buf[..n]).to_string(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), again)
        .await
        .unwrap()
}

/// One sandbox's proxies serve at most `MAX_CONNECTIONS` client
/// connections at once, HTTP and SOCKS together (each costs the daemon
/// descriptors and buffers): more are closed on arrival, and a slot is
/// free again once a connection ends.
#[tokio::test]
async fn the_proxies_of_a_sandbox_share_one_bound_on_connections() {
    // Both ends of as many connections live in this process: more than a
    // soft limit of 1024 descriptors.
    sandboxd::backend::linux::rlimit::raise().unwrap();
    let (_origin, echo, p) = setup().await;
    let mut held = Vec::new();
    for _ in 0..sandboxd::proxy::MAX_CONNECTIONS {
        let mut c = TcpStream::connect(p.socks).await.unwrap();
        // Answered: accepted and being served.
        c.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        c.read_exact(&mut m).await.unwrap();
        held.push(c);
    }
    let connect = format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", echo.port);
    assert!(closed_on_arrival(p.http, connect.as_bytes()).await);
    drop(held.pop());
    let head = answered(p.http, connect.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
}

/// All sandboxes of one user share one bound on connections (the
/// daemon's descriptors are everyone's), and all users one more; another
/// user's are not counted against the first's.
#[tokio::test]
async fn the_sandboxes_of_a_user_share_one_bound_on_connections() {
    let echo = Echo::start().await;
    let body = network(&[echo.port], "allow_cidrs = [\"127.0.0.0/8\"]");
    let quota = Quota::new(3, 4);
    let of = |uid: u32| session_of(&body, None, None, (uid, Arc::clone(&quota)), None);
    let (a, b, other, third) = (
        serve(of(1000)),
        serve(of(1000)),
        serve(of(1001)),
        serve(of(1002)),
    );
    let mut held = Vec::new();
    for p in [&a, &a, &b] {
        let (code, c) = socks_connect(p, 3, b"allowed.test", echo.port).await;
        assert_eq!(code, 0);
        held.push(c);
    }
    // The user's fourth, from either sandbox, is closed on arrival.
    for p in [&a, &b] {
        assert!(closed_on_arrival(p.socks, &[5, 1, 0]).await);
    }
    let (code, _c) = socks_connect(&other, 3, b"allowed.test", echo.port).await;
    assert_eq!(code, 0);
    // Four in all: a third user's first is closed.
    assert!(closed_on_arrival(third.socks, &[5, 1, 0]).await);
    drop(held.pop());
    assert_eq!(answered(a.socks, &[5, 1, 0]).await.as_bytes(), [5, 0]);
}

#[tokio::test]
async fn socks5_connects_by_name_and_refuses_what_the_policy_refuses() {
    let (_origin, echo, p) = setup().await;
    let (code, mut c) = socks_connect(&p, 3, b"allowed.test", echo.port).await;
    assert_eq!(code, 0);
    c.write_all(b"socks!\n").await.unwrap();
    let mut back = [0u8; 7];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"socks!\n");
    for (atyp, addr) in [
        (3u8, &b"denied.test"[..]),
        (3, b"nowhere.test"),
        (1, &[127, 0, 0, 1]),
    ] {
        let (code, _) = socks_connect(&p, atyp, addr, echo.port).await;
        assert_eq!(code, 2, "{}", String::from_utf8_lossy(addr));
    }
    // BIND is not supported.
    let mut c = TcpStream::connect(p.socks).await.unwrap();
    c.write_all(&[5, 1, 0, 5, 2, 0, 3, 12]).await.unwrap();
    c.write_all(b"allowed.test\x00\x50").await.unwrap();
    let mut rep = [0u8; 12];
    c.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[3], 7);
    p.wait_record("socks refusal", |r| {
        r["protocol"] == "socks"
            && r["host"] == "denied.test"
            && r["reason"] == "blocked-by-denylist"
    })
    .await;
}

#[tokio::test]
async fn names_ports_and_literals_outside_the_policy_are_refused() {
    let (origin, echo, p) = setup().await;
    let o = origin.port;
    let cases = [
        (
            format!("http://denied.test:{o}/"),
            format!("denied.test:{o}"),
            "denylist",
        ),
        (
            format!("http://nowhere.test:{o}/"),
            format!("nowhere.test:{o}"),
            "allowlist",
        ),
        (
            format!("http://allowed.test.evil.test:{o}/"),
            format!("allowed.test.evil.test:{o}"),
            "allowlist",
        ),
        (
            format!("http://127.0.0.1:{o}/"),
            format!("127.0.0.1:{o}"),
            "allowlist",
        ),
        (
            format!("http://2130706433:{o}/"),
            format!("2130706433:{o}"),
            "allowlist",
        ),
        (
            "http://allowed.test:1/".to_string(),
            "allowed.test:1".to_string(),
            "port",
        ),
    ];
    for (url, host, reason) in &cases {
        let r = ask(&p, &get(url, host, "")).await;
        assert_refused(&r, reason);
        assert!(r.body.contains("rule"), "{r:?}");
    }
    let mut c = TcpStream::connect(p.http).await.unwrap();
    c.write_all(b"CONNECT allowed.test:1 HTTP/1.1\r\nHost: allowed.test:1\r\n\r\n")
        .await
        .unwrap();
    assert_refused(&read_response(&mut c, &mut Vec::new()).await, "port");
    let mut c = TcpStream::connect(p.http).await.unwrap();
    let e = echo.port;
    c.write_all(format!("CONNECT denied.test:{e} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_refused(&read_response(&mut c, &mut Vec::new()).await, "denylist");
    assert!(origin.seen().is_empty());
    assert_eq!(*echo.received.lock().unwrap(), 0);
    p.wait_record("port refusal", |r| {
        r["reason"] == "blocked-by-port" && r["decision"] == "deny"
    })
    .await;
}

#[tokio::test]
async fn case_and_a_trailing_dot_do_not_matter() {
    let (origin, _echo, p) = setup().await;
    let o = origin.port;
    let r = ask(
        &p,
        &get(
            &format!("http://ALLOWED.TEST.:{o}/dot"),
            &format!("Allowed.Test.:{o}"),
            "",
        ),
    )
    .await;
    assert_eq!(r.code, 200, "{r:?}");
    let r = ask(
        &p,
        &get(
            &format!("http://a.WILD.test:{o}/w"),
            &format!("a.wild.test:{o}"),
            "",
        ),
    )
    .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(origin.seen().len(), 2);
}

#[tokio::test]
async fn a_host_header_that_disagrees_or_userinfo_is_refused() {
    let (origin, _echo, p) = setup().await;
    let o = origin.port;
    let url = format!("http://allowed.test:{o}/");
    for host in [
        format!("denied.test:{o}"),
        "allowed.test".to_string(),
        format!("allowed.test:{}", o + 1),
    ] {
        assert_refused(&ask(&p, &get(&url, &host, "")).await, "bad-request");
    }
    let two =
        format!("GET {url} HTTP/1.1\r\nHost: allowed.test:{o}\r\nHost: denied.test:{o}\r\n\r\n");
    assert_refused(&ask(&p, &two).await, "bad-request");
    for url in [
        format!("http://allowed.test:{o}@denied.test:{o}/"),
        format!("http://user:pw@allowed.test:{o}/"),
    ] {
        assert_refused(
            &ask(&p, &get(&url, &format!("allowed.test:{o}"), "")).await,
            "bad-request",
        );
    }
    // A request to the proxy itself (origin-form) is no proxy request.
    assert_eq!(
        ask(&p, &get("/", &format!("allowed.test:{o}"), ""))
            .await
            .code,
        400
    );
    assert!(origin.seen().is_empty());
    p.wait_record("bad request", |r| r["reason"] == "blocked-by-bad-request")
        .await;
}

#[tokio::test]
async fn loopback_without_allow_cidrs_is_a_private_address() {
    let origin = Origin::start().await;
    let p = proxy(&network(&[origin.port], "")).await;
    let o = origin.port;
    let r = ask(&p, &get_root("allowed.test", o)).await;
    assert_refused(&r, "private-address");
    assert!(origin.seen().is_empty());
    let rec = p
        .wait_record("private", |r| r["reason"] == "blocked-by-private-address")
        .await;
    assert_eq!(rec["addr"], "127.0.0.1");
    let (code, _) = socks_connect(&p, 3, b"allowed.test", o).await;
    assert_eq!(code, 2);
}

#[tokio::test]
async fn post_under_a_get_only_profile_is_refused() {
    let origin = Origin::start().await;
    let o = origin.port;
    let p = proxy(&network(
        &[o],
        "allow_cidrs = [\"127.0.0.0/8\"]\nmethods = [\"GET\", \"HEAD\"]",
    ))
    .await;
    let post = format!("POST http://allowed.test:{o}/x HTTP/1.1\r\nHost: allowed.test:{o}\r\nContent-Length: 2\r\n\r\nhi");
    assert_refused(&ask(&p, &post).await, "method");
    assert!(origin.seen().is_empty());
    let r = ask(
        &p,
        &get(
            &format!("http://allowed.test:{o}/x"),
            &format!("allowed.test:{o}"),
            "",
        ),
    )
    .await;
    assert_eq!(r.code, 200);
    let rec = p
        .wait_record("method", |r| r["reason"] == "blocked-by-method")
        .await;
    assert_eq!(
        (rec["method"].as_str(), rec["path"].as_str()),
        (Some("POST"), Some("/x"))
    );
}

/// A CONNECT tunnel to `port` through `p`, its 200 read.
async fn tunnel(p: &Proxy, port: u16) -> TcpStream {
    let mut c = TcpStream::connect(p.http).await.unwrap();
    c.write_all(format!("CONNECT allowed.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    c
}

#[tokio::test]
async fn where_methods_matter_a_tunnels_plain_bytes_are_read_as_http_or_refused() {
    let origin = Origin::start().await;
    let o = origin.port;
    let p = proxy(&network(
        &[o],
        "allow_cidrs = [\"127.0.0.0/8\"]\nmethods = [\"GET\", \"HEAD\"]",
    ))
    .await;
    let body = "Host: allowed.test\r\nContent-Length: 2\r\n\r\nhi";
    // However a request line is dressed (what some lenient server would
    // still read as a POST), it goes through the request loop and its method
    // rule, never a raw splice.
    for line in [
        "\r\nPOST /x HTTP/1.1\r\n",
        " POST /x HTTP/1.1\r\n",
        "post /x HTTP/1.1\r\n",
        "POST /x HTTP/1.1 \r\n",
        "POST  /x  HTTP/1.1\r\n",
        "POST\x0c/admin\x0cHTTP/1.1\r\n",
        "\x0bDELETE /x HTTP/1.1\r\n",
        "POST /x\rHTTP/1.1\r\n",
        "POST %2fadmin HTTP/1.1\r\n",
    ] {
        let mut c = tunnel(&p, o).await;
        c.write_all(format!("{line}{body}").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut c, &mut Vec::new()).await;
        assert!(
            matches!(r.code, 400 | 403),
            "{line:?}: {} {:?}",
            r.code,
            r.body
        );
    }
    // Nor does a request line that stalls before it can be told: it is read
    // when it completes.
    let mut c = tunnel(&p, o).await;
    c.write_all(b"POST /x HTT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.write_all(format!("P/1.1\r\n{body}").as_bytes())
        .await
        .unwrap();
    assert_refused(&read_response(&mut c, &mut Vec::new()).await, "method");
    // Bytes that are no HTTP at all are refused here, not passed on.
    let mut c = tunnel(&p, o).await;
    c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert_eq!(read_response(&mut c, &mut Vec::new()).await.code, 400);
    p.wait_record("unreadable", |r| {
        r["reason"] == "blocked-by-bad-request"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed request"))
    })
    .await;
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

#[tokio::test]
async fn where_methods_do_not_matter_a_client_first_protocol_is_spliced() {
    // git:// sends one pkt-line, with no line end, and waits.
    let (origin, echo, p) = setup().await;
    let mut c = tunnel(&p, echo.port).await;
    let pkt = b"0030git-upload-pack /repo.git\0host=allowed.test\0";
    c.write_all(pkt).await.unwrap();
    let mut back = vec![0u8; pkt.len()];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back[..], &pkt[..]);
    // A request sent a byte at a time, or with a target longer than the
    // longest request line waited for, still goes through the request
    // loop and its Host check, not into a splice.
    let o = origin.port;
    let rest = format!(" HTTP/1.1\r\nHost: denied.test:{o}\r\n\r\n");
    let long = format!("GET /{}", "a".repeat(9000));
    for (head, pause) in [("G", 1300), ("GET /x", 1300), (long.as_str(), 0)] {
        let mut c = tunnel(&p, o).await;
        c.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let tail = if head == "G" {
            format!("ET /x{rest}")
        } else {
            rest.clone()
        };
        // The loop may answer before the rest is written.
        let _ = c.write_all(tail.as_bytes()).await;
        let r = read_response(&mut c, &mut Vec::new()).await;
        assert!(
            matches!(r.code, 400 | 403 | 431),
            "{head:.20}: {} {:?}",
            r.code,
            r.body
        );
    }
    // Nor one with a control character in its target, which lenient
    // servers read: refused, not echoed back.
    let mut c = tunnel(&p, echo.port).await;
    c.write_all(format!("GET /a\x01b{rest}").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c, &mut Vec::new()).await;
    assert_eq!(r.code, 400, "{:?}", r.body);
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

#[tokio::test]
async fn the_injected_header_replaces_the_clients_and_reaches_only_its_host() {
    let (origin, _echo, p) = setup().await;
    let o = origin.port;
    let r = ask(
        &p,
        &get(
            &format!("http://allowed.test:{o}/a"),
            &format!("allowed.test:{o}"),
            "authorization: Bearer mine\r\n",
        ),
    )
    .await;
    assert_eq!(r.code, 200);
    let r = ask(
        &p,
        &get(
            &format!("http://other.test:{o}/b"),
            &format!("other.test:{o}"),
            "",
        ),
    )
    .await;
    assert_eq!(r.code, 200);
    let seen = origin.seen();
    let auth: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, [format!("Bearer {SECRET}")]);
    assert!(seen[1].header("authorization").is_none());
    // TRACE would have the server echo the secret back: refused, not sent.
    let trace =
        format!("TRACE http://allowed.test:{o}/c HTTP/1.1\r\nHost: allowed.test:{o}\r\n\r\n");
    assert_refused(&ask(&p, &trace).await, "method");
    assert_eq!(origin.seen().len(), 2);
    // The secret never reaches the audit log.
    let log = std::fs::read_to_string(p.audit_dir.path().join("audit.jsonl")).unwrap();
    assert!(!log.contains(SECRET));
}

/// A rule's paths hold against what servers strip or decode before they
/// resolve a path (Tomcat, Jetty and Spring drop `;` parameters, IIS reads
/// `%u` escapes): such a request is refused, and neither it nor the rule's
/// secret reaches the origin. Dot segments so hidden are refused anywhere.
#[tokio::test]
async fn path_parameters_do_not_lead_out_of_a_rules_paths() {
    let origin = Origin::start().await;
    let o = origin.port;
    let body = format!(
        "{}paths = [\"/repos/acme/**\"]\n",
        network(&[o], "allow_cidrs = [\"127.0.0.0/8\"]")
    );
    let p = proxy(&body).await;
    let host = format!("allowed.test:{o}");
    for (path, reason) in [
        ("/repos/acme/..;/..;/admin/users", "bad-request"),
        ("/repos/acme/%2e%2e%3b/%2e%2e%3b/admin/users", "bad-request"),
        ("/repos/acme/%u002e%u002e/%u002e%u002e/admin", "bad-request"),
        ("/repos/acme/x;jsessionid=1", "allowlist"),
        ("/repos/acme/x%3Bv=1", "allowlist"),
    ] {
        let r = ask(&p, &get(&format!("http://{host}{path}"), &host, "")).await;
        assert_refused(&r, reason);
        if reason == "allowlist" {
            assert!(r.body.contains("network.rule \"allowed.test\""), "{r:?}");
        }
        p.wait_record(path, |r| {
            r["reason"] == format!("blocked-by-{reason}")
                && r["path"].as_str().is_some_and(|p| p.ends_with(path))
        })
        .await;
    }
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
    // The rule's own paths still get the request and its secret.
    let r = ask(&p, &get(&format!("http://{host}/repos/acme/x"), &host, "")).await;
    assert_eq!(r.code, 200, "{r:?}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
}

/// An injected secret goes in clear only to an address `allow_cidrs` lists:
/// public.test is on a public address (on the `lo` of a network namespace
/// of this test's thread alone), and a plain request to it through a rule
/// that injects is refused before anything is sent; with its address in
/// `allow_cidrs` the same request carries the header.
#[test]
fn a_secret_does_not_go_in_clear_to_a_public_address() {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "203.0.114.7/32", "dev", "lo"][..],
        ] {
            let st = std::process::Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let origin = Origin::start_at(PUBLIC).await;
            let o = origin.port;
            let body = |cidrs: &str| {
                format!(
                    "[network]\nmode = \"allowlist\"\nallow = [\"public.test\"]\nports = [{o}]\n{cidrs}\n\
                     [[network.rule]]\nhost = \"public.test\"\n\
                     inject = {{ header = \"Authorization\", value = \"Bearer {{secret:TOKEN}}\" }}\n"
                )
            };
            let url = format!("http://public.test:{o}/clear");
            let p = proxy(&body("")).await;
            let r = ask(&p, &get(&url, &format!("public.test:{o}"), "")).await;
            assert_eq!(r.code, 403, "{r:?}");
            assert_eq!(r.header("x-proxy-error"), Some("blocked-by-not-tls"), "{r:?}");
            assert!(r.body.contains("allow_cidrs"), "{r:?}");
            assert!(origin.seen().is_empty(), "{:?}", origin.seen());
            let rec = p
                .wait_record("refusal", |r| {
                    r["reason"] == "blocked-by-not-tls" && r["host"] == "public.test"
                })
                .await;
            assert_eq!(rec["addr"], "203.0.114.7", "{rec:#}");
            // Refused before the dial: no connection was recorded as allowed.
            let allowed = p
                .records()
                .into_iter()
                .filter(|r| r["decision"] == "allow")
                .count();
            assert_eq!(allowed, 0, "{:#?}", p.records());

            let p = proxy(&body("allow_cidrs = [\"203.0.114.7/32\"]")).await;
            let r = ask(&p, &get(&url, &format!("public.test:{o}"), "")).await;
            assert_eq!(r.code, 200, "{r:?}");
            let seen = origin.seen();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {SECRET}").as_str()));
        });
    })
    .join()
    .unwrap();
}

#[tokio::test]
async fn a_missing_secret_refuses_the_request() {
    let origin = Origin::start().await;
    let o = origin.port;
    let body = network(&[o], "allow_cidrs = [\"127.0.0.0/8\"]")
        .replace("{secret:TOKEN}", "{secret:ABSENT}");
    let p = proxy(&body).await;
    let r = ask(&p, &get_root("allowed.test", o)).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("ABSENT"), "{r:?}");
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn an_unlisted_name_is_asked_about_and_the_answer_holds() {
    let origin = Origin::start().await;
    let o = origin.port;
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<(NetQuery, tokio::sync::oneshot::Sender<Answer>)>(4);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&asked);
    // GET is approved once, anything else denied.
    tokio::spawn(async move {
        while let Some((q, answer)) = rx.recv().await {
            let yes = q.method.as_deref() == Some("GET");
            a.lock().unwrap().push(q);
            let _ = answer.send(if yes { Answer::Once } else { Answer::Deny });
        }
    });
    let body = network(&[o], "allow_cidrs = [\"127.0.0.0/8\"]");
    let p = proxy_with(&body, None, Some(tx)).await;
    let host = format!("ask.test:{o}");
    let r = ask(&p, &get(&format!("http://ask.test:{o}/yes"), &host, "")).await;
    assert_eq!((r.code, r.body.as_str()), (200, "hello /yes"));
    let post = format!(
        "POST http://ask.test:{o}/no HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    );
    assert_refused(&ask(&p, &post).await, "approval");
    // Listed names are not asked about.
    let r = ask(&p, &get_root("allowed.test", o)).await;
    assert_eq!(r.code, 200);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!((asked[0].host.as_str(), asked[0].port), ("ask.test", o));
    assert_eq!(
        origin
            .seen()
            .iter()
            .map(|s| s.line.as_str())
            .collect::<Vec<_>>(),
        ["GET /yes", "GET /"]
    );
    p.wait_record("approval", |r| {
        r["reason"] == "blocked-by-approval" && r["host"] == "ask.test"
    })
    .await;
}

/// A ClientHello for `name` through a CONNECT to allowed.test's echo port.
async fn tls_through_connect(p: &Proxy, port: u16, name: &str) -> std::io::Result<()> {
    let c = tunnel(p, port).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, c))
        .await
        .expect("the handshake ended")
        .map(|_| ())
}

/// Nothing reached the echo server, and the refusal of a tunnel to
/// allowed.test for its TLS hello (`what`, for the failure message) is on
/// record; that record.
async fn refused_for_sni(p: &Proxy, echo: &Echo, what: &str) -> Value {
    assert_eq!(
        *echo.received.lock().unwrap(),
        0,
        "nothing reached the server"
    );
    let rec = p
        .wait_record(what, |r| r["reason"] == "blocked-by-sni-mismatch")
        .await;
    assert_eq!(rec["host"], "allowed.test");
    rec
}

#[tokio::test]
async fn a_client_hello_for_another_name_closes_the_tunnel() {
    let (_origin, echo, p) = setup().await;
    let err = tls_through_connect(&p, echo.port, "evil.test")
        .await
        .unwrap_err();
    assert!(
        err.kind() == std::io::ErrorKind::UnexpectedEof
            || err.kind() == std::io::ErrorKind::ConnectionReset,
        "{err}"
    );
    refused_for_sni(&p, &echo, "sni").await;
    // The right name goes through (the echo server sends the hello back, which fails the handshake later).
    let _ = tls_through_connect(&p, echo.port, "ALLOWED.test").await;
    assert!(*echo.received.lock().unwrap() > 0);
}

/// A TLS extension: its type, length and `data`.
fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend((data.len() as u16).to_be_bytes());
    e.extend(data);
    e
}

/// The server_name extension for `name`.
fn sni_ext(name: &str) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend((name.len() as u16).to_be_bytes());
    entry.extend(name.as_bytes());
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend(entry);
    ext(0, &list)
}

/// A TLS record holding a ClientHello with the extensions `exts`.
fn hello_record(exts: &[u8]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1, 0];
    msg.extend((body.len() as u16).to_be_bytes());
    msg.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((msg.len() as u16).to_be_bytes());
    record.extend(msg);
    record
}

/// A TLS record with a ClientHello naming `name`, with an
/// `encrypted_client_hello` extension (of random-looking bytes, as GREASE
/// and a real one alike send) when `ech`.
fn client_hello(name: &str, ech: bool) -> Vec<u8> {
    let mut exts = sni_ext(name);
    if ech {
        exts.extend(ext(0xfe0d, &[0, 0, 1, 0, 1, 0x42, 0, 2, 0xab, 0xcd]));
    }
    hello_record(&exts)
}

/// Sends `hello` through a CONNECT to allowed.test's echo port; returns
/// whatever came back before the tunnel closed (or 2 s passed): an echoed
/// hello is no TLS server's answer, so nothing does.
async fn hello_through_connect(p: &Proxy, port: u16, hello: &[u8]) -> Vec<u8> {
    let mut c = tunnel(p, port).await;
    c.write_all(hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    let mut got = 0;
    while got < back.len() {
        match tokio::time::timeout(Duration::from_secs(2), c.read(&mut back[got..])).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
    back.truncate(got);
    back
}

#[tokio::test]
async fn an_encrypted_client_hello_is_refused_unless_the_profile_allows_it() {
    let (_origin, echo, p) = setup().await;
    // The outer name is the tunnel's, the inner one unknowable.
    let back = hello_through_connect(&p, echo.port, &client_hello("allowed.test", true)).await;
    assert!(back.is_empty(), "the tunnel carried it: {back:?}");
    let rec = refused_for_sni(&p, &echo, "ech").await;
    assert_eq!(rec["rule"], "network.allow_ech = false", "{rec:#}");
    // Without the extension the same hello goes through (and its echo,
    // no TLS server's answer, closes the tunnel).
    let plain = client_hello("allowed.test", false);
    assert_eq!(echo.passed(&p, &plain).await, plain.len());

    let allowing = proxy(&network(
        &[echo.port],
        "allow_cidrs = [\"127.0.0.0/8\"]\nallow_ech = true",
    ))
    .await;
    let hello = client_hello("allowed.test", true);
    assert_eq!(echo.passed(&allowing, &hello).await, hello.len());
    // The outer name must still be the tunnel's.
    let other = hello_through_connect(&allowing, echo.port, &client_hello("evil.test", true)).await;
    assert!(other.is_empty(), "{other:?}");
}

#[tokio::test]
async fn plain_bytes_to_port_443_are_refused() {
    let (_origin, _echo, p) = setup().await;
    // Something must answer on 443 for the tunnel to open.
    let _l = std::net::TcpListener::bind("127.0.0.1:443").expect("127.0.0.1:443 free for the test");
    let mut c = TcpStream::connect(p.http).await.unwrap();
    c.write_all(b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    c.write_all(b"SSH-2.0-hello\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    p.wait_record("not tls", |r| r["reason"] == "blocked-by-not-tls")
        .await;
}

#[tokio::test]
async fn dropping_the_server_ends_its_tunnels() {
    let (_origin, echo, mut p) = setup().await;
    let mut c = tunnel(&p, echo.port).await;
    c.write_all(b"x\n").await.unwrap();
    let mut two = [0u8; 2];
    c.read_exact(&mut two).await.unwrap();
    for t in p.tasks.drain(..) {
        t.abort();
        let _ = t.await;
    }
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA, written to `dir/ca.pem`, and a server configuration for `host` it signed.
fn test_ca(dir: &std::path::Path, host: &str) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    test_ca_with(dir, host, provider())
}

/// [`test_ca`], the server's cryptography from `provider`.
fn test_ca_with(
    dir: &std::path::Path,
    host: &str,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::pem::PemObject;
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "proxy test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (path, Arc::new(config))
}

/// A TLS 1.3 ClientHello record naming `name`, with a key share of `len`
/// bytes for group `group` only (x25519 and secp384r1 supported).
fn tls13_hello(name: &str, group: u16, len: usize) -> Vec<u8> {
    let mut share = group.to_be_bytes().to_vec();
    share.extend((len as u16).to_be_bytes());
    share.extend(vec![4u8; len]);
    let mut shares = (share.len() as u16).to_be_bytes().to_vec();
    shares.extend(share);
    let mut exts = sni_ext(name);
    exts.extend(ext(43, &[2, 3, 4])); // supported_versions: TLS 1.3
    exts.extend(ext(10, &[0, 4, 0, 0x1d, 0, 0x18])); // groups: x25519, secp384r1
    exts.extend(ext(13, &[0, 4, 4, 3, 8, 4])); // signature algorithms
    exts.extend(ext(51, &shares)); // key_share
    hello_record(&exts)
}

/// A server that takes only secp384r1 asks every client that sent an
/// x25519 key share for a second ClientHello: a real client gets through
/// that, and a second hello naming another host than the first (and the
/// tunnel) is refused before it reaches the server.
#[tokio::test]
async fn a_second_client_hello_is_checked_like_the_first() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let mut only_p384 = rustls::crypto::ring::default_provider();
    only_p384.kx_groups = vec![rustls::crypto::ring::kx_group::SECP384R1];
    let (ca_path, server) = test_ca_with(dir.path(), "allowed.test", Arc::new(only_p384));
    let origin = Origin::start_tls(server).await;
    let o = origin.port;
    let p = proxy(&network(&[o], "allow_cidrs = [\"127.0.0.0/8\"]")).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&ca_path).unwrap())
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("allowed.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_config))
        .connect(name, tunnel(&p, o).await)
        .await
        .expect("a handshake with a HelloRetryRequest");
    let host = format!("allowed.test:{o}");
    tls.write_all(get("/retried", &host, "").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut Vec::new()).await;
    assert_eq!((r.code, r.body.as_str()), (200, "hello /retried"));

    // By hand: the first hello (for allowed.test) makes the server ask
    // again, then `after` follows it, sent with it (`together`) or once
    // the server has asked; returns whatever came back after the question
    // (and the ChangeCipherSpec the server sends with it).
    let by_hand = |p: &Proxy, after: Vec<u8>, together: bool| {
        let p = p.http;
        async move {
            let mut c = TcpStream::connect(p).await.unwrap();
            c.write_all(format!("CONNECT allowed.test:{o} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut head = [0u8; 39];
            c.read_exact(&mut head).await.unwrap();
            let mut first = tls13_hello("allowed.test", 0x1d, 32);
            if together {
                first.extend(&after);
            }
            c.write_all(&first).await.unwrap();
            let mut question = [0u8; 5];
            c.read_exact(&mut question).await.unwrap();
            let mut rest = vec![0u8; usize::from(u16::from_be_bytes([question[3], question[4]]))];
            c.read_exact(&mut rest).await.unwrap();
            assert_eq!((question[0], rest[0]), (0x16, 2), "a HelloRetryRequest");
            if !together {
                c.write_all(&after).await.unwrap();
            }
            let mut back = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back)).await;
            back.strip_prefix(&[0x14, 3, 3, 0, 1, 1])
                .unwrap_or(&back)
                .to_vec()
        }
    };
    let change_cipher_spec = [0x14, 3, 3, 0, 1, 1];
    let evil = [&change_cipher_spec[..], &tls13_hello("evil.test", 0x18, 97)].concat();
    for together in [false, true] {
        let back = by_hand(&p, evil.clone(), together).await;
        assert!(back.is_empty(), "together {together}: {back:?}");
    }
    let refused = p
        .records()
        .into_iter()
        .filter(|r| {
            r["reason"] == "blocked-by-sni-mismatch"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("evil.test"))
        })
        .count();
    assert_eq!(refused, 2, "{:#?}", p.records());
    // A second hello for the tunnel's host, after a ChangeCipherSpec and
    // early data, goes on: the server answers it (here with an alert, as
    // its key share is no curve point).
    let early = [0x17, 3, 3, 0, 3, 9, 9, 9];
    let good = [
        &change_cipher_spec[..],
        &early[..],
        &tls13_hello("allowed.test", 0x18, 97),
    ]
    .concat();
    let back = by_hand(&p, good, false).await;
    assert!(!back.is_empty(), "the second hello went nowhere");
    assert_eq!(origin.seen().len(), 1, "{:?}", origin.seen());
}

/// Inspected HTTPS to allowed.test: a TLS origin, and a proxy inspecting
/// for the profile `body` makes of the origin's port; with the
/// configuration of a client that trusts only the inspector's CA.
async fn inspecting(
    body: impl FnOnce(u16) -> String,
) -> (Origin, Proxy, Arc<rustls::ClientConfig>) {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, server) = test_ca(dir.path(), "allowed.test");
    let origin = Origin::start_tls(server).await;
    let inspector = Arc::new(Inspector::load_or_create(dir.path(), &[ca_path]).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(inspector.ca_pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let p = proxy_inspecting(&body(origin.port), Some(inspector)).await;
    (origin, p, client_config)
}

/// A TLS session with allowed.test in a CONNECT tunnel to `port` through `p`.
async fn tls_tunnel(
    p: &Proxy,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let c = tunnel(p, port).await;
    let name = rustls::pki_types::ServerName::try_from("allowed.test").unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, c)
        .await
        .unwrap()
}

/// Inspected HTTPS: the client trusts only the inspector's CA; methods,
/// injection and records apply per request inside the tunnel.
#[tokio::test]
async fn inspected_https_applies_methods_and_injection_per_request() {
    let (origin, p, config) = inspecting(|o| {
        network(
            &[o],
            "allow_cidrs = [\"127.0.0.0/8\"]\ninspect = true\nmethods = [\"GET\"]",
        )
    })
    .await;
    let o = origin.port;
    let mut tls = tls_tunnel(&p, o, &config).await;
    let mut buf = Vec::new();
    let host = format!("allowed.test:{o}");
    tls.write_all(get("/inside?q=1", &host, "Authorization: mine\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut buf).await;
    assert_eq!((r.code, r.body.as_str()), (200, "hello /inside?q=1"));
    tls.write_all(
        format!("POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\nhi").as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut tls, &mut buf).await;
    assert_refused(&r, "method");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].line, "GET /inside?q=1");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let rec = p
        .wait_record("https", |r| {
            r["protocol"] == "https" && r["kind"] == "network-end"
        })
        .await;
    assert_eq!(
        (rec["method"].as_str(), rec["path"].as_str()),
        (Some("GET"), Some("/inside"))
    );
    assert!(rec["bytes_down"].as_u64().unwrap() > 0);
    p.wait_record("https method", |r| {
        r["protocol"] == "https" && r["reason"] == "blocked-by-method"
    })
    .await;
}

/// Inspected HTTPS: a request whose path would leave the rule's paths once
/// the server strips its `;` parameters is refused in the tunnel too.
#[tokio::test]
async fn inspected_https_refuses_path_parameters_where_paths_apply() {
    let (origin, p, config) = inspecting(|o| {
        format!(
            "{}paths = [\"/repos/acme/**\"]\n",
            network(&[o], "allow_cidrs = [\"127.0.0.0/8\"]\ninspect = true")
        )
    })
    .await;
    let o = origin.port;
    let host = format!("allowed.test:{o}");
    for (path, reason) in [
        ("/repos/acme/..;/..;/admin/users", "bad-request"),
        ("/repos/acme/x;jsessionid=1", "allowlist"),
    ] {
        let mut tls = tls_tunnel(&p, o, &config).await;
        tls.write_all(get(path, &host, "").as_bytes())
            .await
            .unwrap();
        assert_refused(&read_response(&mut tls, &mut Vec::new()).await, reason);
    }
    let mut tls = tls_tunnel(&p, o, &config).await;
    tls.write_all(get("/repos/acme/x", &host, "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut tls, &mut Vec::new()).await.code, 200);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].line, "GET /repos/acme/x");
}

/// The benchmark kit's client against this proxy (`bench.py` and
/// `backend.py` from the directory in `PROXY_BENCH`): CONNECT + 1 round
/// trip latency and one tunnel's throughput, proxied and direct, printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: PROXY_BENCH=DIR cargo test --release --test proxy -- --ignored --nocapture"]
async fn bench_with_the_kit() {
    let dir = std::env::var("PROXY_BENCH")
        .expect("PROXY_BENCH names the directory of bench.py and backend.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut backend = std::process::Command::new("/usr/bin/python3")
        .arg(format!("{dir}/backend.py"))
        .arg(port.to_string())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = proxy(&network(&[port], "allow_cidrs = [\"127.0.0.0/8\"]")).await;
    let n = std::env::var("PROXY_BENCH_N").unwrap_or("2000".into());
    let bytes = std::env::var("PROXY_BENCH_BYTES").unwrap_or((1u64 << 30).to_string());
    let via = p.http.to_string();
    let runs: [(&str, &str, &str, &str); 6] = [
        ("latency", "direct", "127.0.0.1", &n),
        ("latency", &via, "allowed.test", &n),
        ("thru", "direct", "127.0.0.1", &bytes),
        ("thru", &via, "allowed.test", &bytes),
        ("conc", "direct", "127.0.0.1", "200"),
        ("conc", &via, "allowed.test", "200"),
    ];
    for (mode, via, host, arg) in runs {
        let out = tokio::process::Command::new("/usr/bin/python3")
            .arg(format!("{dir}/bench.py"))
            .args([mode, via, host, &port.to_string(), arg])
            .output()
            .await
            .unwrap();
        println!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    backend.kill().unwrap();
    backend.wait().unwrap();
}

#[test]
fn a_network_thread_whose_sandbox_was_never_made_ends() {
    let s = session_with(&network(&[443], ""), None, None);
    let thread = NetThread::start(Arc::clone(&s.session)).unwrap();
    // It waits for the sandbox's listeners...
    assert!(!wait_all_ended(Duration::from_millis(100)));
    // ...and ends when the exec is refused before they are bound.
    drop(thread);
    assert!(wait_all_ended(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_dial_that_goes_on_to_a_second_address_records_the_address_it_reaches() {
    let (_origin, echo, p) = setup().await;
    let mut c = TcpStream::connect(p.http).await.unwrap();
    c.write_all(format!("CONNECT two.wild.test:{} HTTP/1.1\r\n\r\n", echo.port).as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 "));
    drop(c);
    let decided = |addr: &'static str| {
        move |r: &Value| r["kind"] == "network" && r["host"] == "two.wild.test" && r["addr"] == addr
    };
    // A decision names each address before it is dialled; the one that did
    // not answer has its end.
    p.wait_record("decision for 127.0.0.2", decided("127.0.0.2"))
        .await;
    p.wait_record("decision for 127.0.0.1", decided("127.0.0.1"))
        .await;
    p.wait_record("end for 127.0.0.2", |r| {
        r["kind"] == "network-end" && r["addr"] == "127.0.0.2"
    })
    .await;
}

#[tokio::test]
async fn requests_refused_as_malformed_are_recorded_too() {
    let (_origin, echo, p) = setup().await;
    let e = echo.port;
    // CONNECT with userinfo (403), a bad authority (400), a scheme that is
    // not proxied (400), conflicting framing (400).
    for (raw, code) in [
        (
            format!("CONNECT u:p@allowed.test:{e} HTTP/1.1\r\n\r\n"),
            403,
        ),
        ("CONNECT allowed.test:x HTTP/1.1\r\n\r\n".to_string(), 400),
        (
            "GET ftp://allowed.test/f HTTP/1.1\r\nHost: allowed.test\r\n\r\n".to_string(),
            400,
        ),
        (
            format!(
                "POST http://allowed.test:{e}/ HTTP/1.1\r\nHost: allowed.test:{e}\r\n\
                 Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
    ] {
        assert_eq!(ask(&p, &raw).await.code, code, "{raw:?}");
    }
    // CONNECT inside a tunnel (405).
    let mut c = tunnel(&p, e).await;
    c.write_all(format!("CONNECT allowed.test:{e} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut c, &mut Vec::new()).await.code, 405);
    // A SOCKS name that is no host name.
    let (code, _c) = socks_connect(&p, 3, b"no such host!", e).await;
    assert_eq!(code, 2);
    let bad = |r: &Value| r["kind"] == "network" && r["reason"] == "blocked-by-bad-request";
    let message = |needle: &'static str| {
        move |r: &Value| bad(r) && r["message"].as_str().is_some_and(|m| m.contains(needle))
    };
    p.wait_record("userinfo", message("userinfo")).await;
    p.wait_record("scheme", message("scheme ftp")).await;
    p.wait_record("connect in a tunnel", message("CONNECT inside a tunnel"))
        .await;
    p.wait_record("socks name", message("no such host!")).await;
    for _ in 0..100 {
        if p.records().iter().filter(|r| bad(r)).count() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        p.records().iter().filter(|r| bad(r)).count(),
        6,
        "{:#?}",
        p.records()
    );
}

#[tokio::test]
async fn where_methods_matter_a_server_that_speaks_first_is_refused() {
    // An SMTP-like server greets first; a request sent after that greeting
    // would never go through the request loop.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let _ = c.write_all(b"220 hello\r\n").await;
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink).await;
        }
    });
    let p = proxy(&network(
        &[port],
        "allow_cidrs = [\"127.0.0.0/8\"]\nmethods = [\"GET\"]",
    ))
    .await;
    let mut c = tunnel(&p, port).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    p.wait_record("spoke first", |r| {
        r["reason"] == "blocked-by-bad-request"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("spoke first"))
    })
    .await;
    server.abort();
}

/// Texts from the sandbox (a request target may take most of the 64 KiB a
/// request head may have) are kept to a bounded length in the records of
/// refusals, which cost the sandbox nothing.
#[tokio::test]
async fn refusals_keep_bounded_texts_in_their_records() {
    let (_origin, echo, p) = setup().await;
    let long = "a".repeat(60 << 10);
    let denied = format!(
        "GET http://denied.test:{e}/{long} HTTP/1.1\r\nHost: denied.test:{e}\r\n\r\n",
        e = echo.port
    );
    assert_refused(&ask(&p, &denied).await, "denylist");
    let bad = format!("GET ftp://allowed.test/{long} HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    assert_eq!(ask(&p, &bad).await.code, 400);
    let long_path = |r: &Value| {
        r["path"]
            .as_str()
            .is_some_and(|s| s.starts_with("/aaaa") || s.starts_with("ftp://"))
    };
    for reason in ["blocked-by-denylist", "blocked-by-bad-request"] {
        p.wait_record(reason, |r| r["reason"] == reason && long_path(r))
            .await;
    }
    for r in p.records().iter().filter(|r| long_path(r)) {
        let path = r["path"].as_str().unwrap_or_default();
        assert!(
            path.len() < 5 << 10,
            "a path of {} bytes was kept",
            path.len()
        );
        assert!(path.contains("bytes in all)"), "{:.200}", path);
        assert!(
            r.to_string().len() < 12 << 10,
            "a record of {} bytes",
            r.to_string().len()
        );
    }
}

/// Clients a flood of attempts comes from at once.
const CLIENTS: usize = 16;

/// Makes the attempts `0..total` from [`CLIENTS`] clients at once;
/// returns the seconds they took.
async fn flood<F, Fut>(p: &Arc<Proxy>, total: usize, attempt: F) -> f64
where
    F: Fn(Arc<Proxy>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (p, attempt) = (Arc::clone(p), attempt.clone());
            tokio::spawn(async move {
                for i in (c..total).step_by(CLIENTS) {
                    attempt(Arc::clone(&p), i).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// Most attempts a sandbox may have recorded one by one (or new names it
/// may have looked up) in `elapsed` seconds, and the time a count waits.
fn most_in(elapsed: f64) -> usize {
    use sandboxd::net::rate::{BURST, PER_SECOND};
    BURST as usize + ((elapsed + 1.2) * PER_SECOND) as usize + 1
}

/// Whether `r` counts attempts over the rate instead of recording them.
fn counting(r: &Value) -> bool {
    r["message"]
        .as_str()
        .is_some_and(|m| m.contains("not recorded one by one (over the rate)"))
}

/// How many attempts the counting record `r` counts.
fn counted_by(r: &Value) -> usize {
    let message = r["message"].as_str().unwrap();
    message.split(' ').next().unwrap().parse().unwrap()
}

/// Waits (up to 10 s) until the records of the attempts `mine` picks out,
/// recorded one by one and counted, add up to `total`; returns how many
/// were recorded one by one, and the counting records.
async fn all_accounted(
    p: &Proxy,
    mine: impl Fn(&Value) -> bool,
    total: usize,
) -> (usize, Vec<Value>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (counts, each): (Vec<Value>, Vec<Value>) = p
            .records()
            .into_iter()
            .filter(|r| mine(r))
            .partition(counting);
        let counted: usize = counts.iter().map(counted_by).sum();
        if each.len() + counted == total {
            return (each.len(), counts);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} recorded one by one and {counted} counted of {total}",
            each.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Refusals cost the sandbox nothing but a connection: past the burst, at
/// most the rate's worth are recorded one by one; the others are still
/// refused, and counted in one record written with the next refusal
/// recorded or, when none comes (the flood stopped, the sandbox running
/// on), a second after the first one counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_past_the_rate_are_counted_in_one_record() {
    use sandboxd::net::rate::BURST;
    let (_origin, echo, p) = setup().await;
    let connect = format!("CONNECT denied.test:{} HTTP/1.1\r\n\r\n", echo.port);
    let total = BURST as usize + 20 * CLIENTS;
    let p = Arc::new(p);
    let elapsed = flood(&p, total, move |p, _| {
        let connect = connect.clone();
        async move { assert_refused(&ask(&p, &connect).await, "denylist") }
    })
    .await;
    // No refusal follows the flood: the last count is written by its timer.
    // A count also goes with each refusal recorded after some went counted:
    // as the allowance comes back during the flood, there may be several.
    let (one_by_one, counts) = all_accounted(&p, |r| r["host"] == "denied.test", total).await;
    assert!(!counts.is_empty());
    for count in &counts {
        let message = count["message"].as_str().unwrap();
        let n = counted_by(count);
        let rule = count["rule"].as_str().unwrap();
        assert!(
            rule.starts_with(
                "network attempts that reach nothing, recorded one by one: at most 64 a second"
            ),
            "{rule}"
        );
        assert_eq!(count["reason"], "blocked-by-rate-limit");
        assert!(
            message.contains(&format!("{n} refused, 0 allowed but not reached")),
            "{message}"
        );
        assert!(message.contains("(blocked-by-denylist)"), "{message}");
        let by_destination = format!("by destination: denied.test:{} {n}", echo.port);
        assert!(message.ends_with(&by_destination), "{message}");
    }
    assert!(
        one_by_one <= most_in(elapsed),
        "{one_by_one} recorded one by one in {elapsed:.2} s"
    );
}

/// A DNS server on 127.0.0.1 that answers every query "no such name", and
/// keeps the names it was asked.
struct NoSuchName {
    addr: SocketAddr,
    asked: Arc<Mutex<std::collections::HashSet<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Drop for NoSuchName {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NoSuchName {
    async fn start() -> NoSuchName {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let a = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let m = &mut buf[..n];
                // The question's name ends with the first zero byte.
                let Some(len) = m.get(12..).and_then(|q| q.iter().position(|&b| b == 0)) else {
                    continue;
                };
                a.lock().unwrap().insert(m[12..12 + len].to_vec());
                // The query itself, as a response with code NXDOMAIN.
                m[2] |= 0x80;
                m[3] = (m[3] & 0xf0) | 3;
                let _ = udp.send_to(m, peer).await;
            }
        });
        NoSuchName { addr, asked, task }
    }

    /// How many distinct names it was asked.
    fn names(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

/// Both proxies and the DNS server (its UDP address returned) of one
/// sandbox with the test profile with `extra`, resolving through `upstream`.
fn proxy_resolving(ports: &[u16], extra: &str, upstream: &NoSuchName) -> (Arc<Proxy>, SocketAddr) {
    let quota = (1000, Quota::new(4096, 4096));
    let body = network(ports, extra);
    let sessioned = session_of(&body, None, None, quota, Some(upstream.addr));
    let session = Arc::clone(&sessioned.session);
    let mut p = serve(sessioned);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dns = udp.local_addr().unwrap();
    p.tasks.push(tokio::spawn(async move {
        let _ = sandboxd::dns::serve(udp, tcp, session).await;
    }));
    (Arc::new(p), dns)
}

/// How many of `names` the DNS server at `dns` decides, not REFUSED (type A queries
/// sent at once, answers awaited for 300 ms).
async fn dns_decided(dns: SocketAddr, names: &[String]) -> (usize, std::time::Instant) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (id, name) in names.iter().enumerate() {
        let mut q = (id as u16).to_be_bytes().to_vec();
        q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        s.send_to(&q, dns).await.unwrap();
    }
    let mut buf = [0u8; 512];
    let (mut decided, mut last) = (0, std::time::Instant::now());
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf)).await
    {
        last = std::time::Instant::now();
        // Over the rate: REFUSED (rcode 5), not decided.
        if n > 3 && buf[3] & 0x0f != 5 {
            decided += 1;
        }
    }
    (decided, last)
}

/// The made-up names of these tests: `x<N>.wild.test`.
fn made_up(i: usize) -> String {
    format!("x{i}.wild.test")
}

fn is_made_up(r: &Value) -> bool {
    r["host"]
        .as_str()
        .is_some_and(|h| h.starts_with('x') && h.ends_with(".wild.test"))
}

/// Asks for `http://host:port/` or SOCKS5 CONNECT to `host:port` (every
/// other `i`): the answer must be that nothing was reached, or that the
/// attempt was over the rate.
async fn reach_nothing(p: &Proxy, i: usize, host: &str, port: u16) {
    if i.is_multiple_of(2) {
        let r = ask(p, &get_root(host, port)).await;
        let limited = r.header("x-proxy-error") == Some("blocked-by-rate-limit");
        assert!(r.code == 502 || (r.code == 403 && limited), "{r:?}");
    } else {
        let (code, _) = socks_connect(p, 3, host.as_bytes(), port).await;
        // Not allowed (over the rate), or host unreachable, or refused.
        assert!([2, 4, 5].contains(&code), "SOCKS reply {code}");
    }
}

/// An allowed name that does not resolve reaches nothing, like a refusal:
/// its record takes from the same rate, and past it, it is counted (as
/// allowed but not reached) with the refusals over the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_do_not_resolve_share_the_rate_of_refusals() {
    use sandboxd::net::rate::BURST;
    let upstream = NoSuchName::start().await;
    let (p, _) = proxy_resolving(&[80], "", &upstream);
    let refused = BURST as usize;
    let unresolved = 400;
    let started = std::time::Instant::now();
    // The refusals use up the burst...
    flood(&p, refused, |p, _| async move {
        assert_refused(&ask(&p, &get_root("denied.test", 80)).await, "denylist")
    })
    .await;
    // ...then names that do not resolve, each looked up.
    flood(&p, unresolved, |p, i| async move {
        reach_nothing(&p, i, &made_up(i), 80).await
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(upstream.names(), unresolved);
    let mine = |r: &Value| r["host"] == "denied.test" || is_made_up(r);
    let (one_by_one, counts) = all_accounted(&p, mine, refused + unresolved).await;
    assert!(
        one_by_one <= most_in(elapsed),
        "{one_by_one} recorded one by one in {elapsed:.2} s"
    );
    let unreached: usize = counts
        .iter()
        .filter_map(|r| {
            let m = r["message"].as_str()?;
            let (before, _) = m.split_once(" allowed but not reached")?;
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum();
    assert!(unreached > 0, "{counts:#?}");
}

/// Made-up names under an allowed wildcard reach nothing and cost the
/// sandbox nothing: past its allowance of new names they are not looked up
/// (upstream is asked no more names than that), and past the rate their
/// attempts are counted, not recorded one by one; the log still has every
/// attempt. The sandbox's DNS server takes new names from the same
/// allowance. A name in use goes on working, and its requests, which reach
/// the origin, are recorded one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_past_the_rate_are_not_looked_up_and_are_counted() {
    use sandboxd::net::rate::BURST;
    let origin = Origin::start().await;
    let upstream = NoSuchName::start().await;
    let port = origin.port;
    let (p, dns) = proxy_resolving(&[port], "allow_cidrs = [\"127.0.0.0/8\"]", &upstream);
    let in_use = get_root("allowed.test", port);
    assert_eq!(ask(&p, &in_use).await.code, 200);
    let total = 3 * BURST as usize;
    let elapsed = flood(&p, total, move |p, i| async move {
        reach_nothing(&p, i, &made_up(i), port).await
    })
    .await;
    // Right after the flood, the allowance has (almost) nothing left: at
    // most what it gained until the last of these was answered.
    let flooded = std::time::Instant::now();
    let more: Vec<String> = (0..50).map(|i| made_up(total + i)).collect();
    let (decided, last) = dns_decided(dns, &more).await;
    let gap = last.saturating_duration_since(flooded).as_secs_f64();
    let gained = (gap * sandboxd::net::rate::PER_SECOND) as usize;
    assert!(
        decided <= 10 + gained,
        "{decided} of 50 new names decided, {gap:.2} s after the flood"
    );
    assert!(
        upstream.names() <= most_in(elapsed),
        "{} names asked upstream in {elapsed:.2} s",
        upstream.names()
    );
    let proxied = |r: &Value| is_made_up(r) && r["protocol"] != "dns";
    let (one_by_one, _) = all_accounted(&p, proxied, total).await;
    assert!(
        one_by_one <= most_in(elapsed),
        "{one_by_one} recorded one by one in {elapsed:.2} s"
    );
    for r in p.records().iter().filter(|r| proxied(r) && !counting(r)) {
        assert_eq!(r["decision"], "allow", "{r}");
        assert!(
            r["message"].as_str().unwrap().contains("not reached"),
            "{r}"
        );
    }
    for _ in 0..20 {
        assert_eq!(ask(&p, &in_use).await.code, 200);
    }
    let reached = p
        .records()
        .iter()
        .filter(|r| r["kind"] == "network" && r["host"] == "allowed.test")
        .filter(|r| r["decision"] == "allow" && r["addr"] == "127.0.0.1")
        .count();
    assert_eq!(reached, 21);
}

/// A dial that fails reaches nothing. Each dial still has its decision
/// written before it, but dialling a destination that failed moments ago
/// takes from the rate of attempts that reach nothing: past it, the attempt
/// is refused without a dial, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_keeps_failing_is_not_dialled_past_the_rate() {
    use sandboxd::net::rate::BURST;
    let (origin, _echo, p) = setup().await;
    let port = origin.port;
    let total = 3 * BURST as usize;
    let p = Arc::new(p);
    let elapsed = flood(&p, total, move |p, i| async move {
        reach_nothing(&p, i, "closed.wild.test", port).await
    })
    .await;
    let decision = |r: &Value| r["kind"] == "network" && r["host"] == "closed.wild.test";
    let (dialled, _) = all_accounted(&p, decision, total).await;
    // The first dial there is free: it was not known to fail.
    assert!(
        dialled <= most_in(elapsed) + 1,
        "{dialled} dialled in {elapsed:.2} s"
    );
    let ends = || {
        p.records()
            .iter()
            .filter(|r| r["kind"] == "network-end" && r["addr"] == "127.0.0.2")
            .count()
    };
    p.wait_record("an end for each dial", |_| ends() == dialled)
        .await;
}
