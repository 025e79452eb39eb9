//! Servers the network tests' sandboxes reach, all on the host's 127.0.0.1
//! (where the daemon dials from): an HTTP origin and a TLS origin that log
//! every request they receive, a test CA for the TLS one, and a fake upstream
//! DNS server that logs every query it is sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request an origin received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target's path: itself in origin form, the part after the authority in absolute form.
    pub fn path(&self) -> &str {
        match self.target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => &self.target,
        }
    }
}

/// A test CA and one leaf it signed for the origin's names.
pub struct TestCa {
    pub ca_pem: String,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(names: &[&str]) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sandboxd e2e test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names).expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "sandboxd e2e origin");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        TestCa {
            ca_pem: ca_cert.pem(),
            leaf_der: leaf.der().to_vec(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    }

    /// Writes the CA certificate (PEM) to `path`, readable by everyone.
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write CA");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod CA");
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.leaf_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
            )
            .expect("server config");
        Arc::new(cfg)
    }
}

/// Stops a server thread on drop.
struct Stop {
    flag: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        // Unblock a blocking accept.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

/// An HTTP/1.1 origin (plain or TLS) on 127.0.0.1 that answers every request
/// with 200 and `origin saw <target>`, and logs what it received.
pub struct Origin {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    _stop: Stop,
}

impl Origin {
    pub fn http() -> Origin {
        Self::serve(None, "127.0.0.1:0")
    }

    /// Plain HTTP on `addr` (e.g. a fixed port on another loopback address).
    pub fn http_at(addr: &str) -> Origin {
        Self::serve(None, addr)
    }

    pub fn https(ca: &TestCa) -> Origin {
        Self::serve(Some(ca.server_config()), "127.0.0.1:0")
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>, addr: &str) -> Origin {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind origin on {addr}: {e}"));
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let flag = Arc::new(AtomicBool::new(false));
        let (reqs, conns, stop) = (requests.clone(), connections.clone(), flag.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                    match tls {
                        None => serve_conn(stream, &reqs),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve_conn(rustls::StreamOwned::new(conn, stream), &reqs)
                        }
                    }
                });
            }
        });
        Origin {
            port: addr.port(),
            requests,
            connections,
            _stop: Stop { flag, wake: addr },
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The request for `path` (e.g. `/x`; an absolute-form target counts by
    /// its path), if one came.
    pub fn request(&self, path: &str) -> Option<Request> {
        self.requests().into_iter().find(|r| r.path() == path)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serves requests on one connection until it closes (keep-alive honoured).
fn serve_conn<S: Read + Write>(stream: S, log: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let req = Request {
            method,
            target,
            headers,
            body: Vec::new(),
        };
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let answer = format!("origin saw {}\n", req.target);
        log.lock().unwrap().push(Request { body, ..req });
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let w = r.get_mut();
        if w.write_all(resp.as_bytes())
            .and_then(|_| w.flush())
            .is_err()
            || close
        {
            return;
        }
    }
}

/// A fake upstream DNS server (UDP and TCP on one port of 127.0.0.1) that
/// answers every A query with 127.0.0.1, other types with no answer, and
/// logs each query's name (lower case, no trailing dot) and type.
pub struct Upstream {
    pub port: u16,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    _stop: Stop,
}

impl Upstream {
    pub fn start() -> Upstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind upstream udp");
            let port = udp.local_addr().expect("udp addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let addr = tcp.local_addr().expect("tcp addr");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let flag = Arc::new(AtomicBool::new(false));
        {
            let (q, stop) = (queries.clone(), flag.clone());
            udp.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("udp timeout");
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(resp) = answer(&buf[..n], &q) {
                        let _ = udp.send_to(&resp, peer);
                    }
                }
            });
        }
        {
            let (q, stop) = (queries.clone(), flag.clone());
            std::thread::spawn(move || {
                for s in tcp.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut s) = s else { continue };
                    let q = q.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut len = [0u8; 2];
                        while s.read_exact(&mut len).is_ok() {
                            let mut msg = vec![0; u16::from_be_bytes(len) as usize];
                            if s.read_exact(&mut msg).is_err() {
                                return;
                            }
                            let Some(resp) = answer(&msg, &q) else { return };
                            let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&resp);
                            if s.write_all(&out).is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
        Upstream {
            port: addr.port(),
            queries,
            _stop: Stop { flag, wake: addr },
        }
    }

    /// Every (name, type) queried so far.
    pub fn queries(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }

    /// Whether any query named `name` or a name under it.
    pub fn saw(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.queries()
            .iter()
            .any(|(q, _)| *q == name || q.ends_with(&format!(".{name}")))
    }
}

/// Logs the query in `msg` and builds its answer; `None` when it is not a query.
fn answer(msg: &[u8], log: &Mutex<Vec<(String, u16)>>) -> Option<Vec<u8>> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = *msg.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        if n > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let question_end = i + 4;
    msg.get(..question_end)?;
    log.lock().unwrap().push((labels.join("."), qtype));
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&msg[..2]);
    // QR, opcode copied, RD copied, RA; RCODE 0.
    out.push(0x80 | (msg[2] & 0x79));
    out.push(0x80);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&[0, u8::from(qtype == 1)]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&msg[12..question_end]);
    if qtype == 1 {
        // Name pointer to the question, A, IN, TTL 60, 127.0.0.1.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
