//! Network mode `allowlist` end to end: the proxies and the resolver sandboxd
//! serves inside each sandbox, checked from the host side (what the origin
//! servers received, what the fake upstream resolver was asked, what the
//! audit log says). Every server lives on the host's 127.0.0.1, reached by
//! names sandboxd answers from `[dns] hosts` (or the fake upstream for
//! `*.pkg.test`), through `allow_cidrs = ["127.0.0.0/8"]` unless said otherwise.

mod fixtures;

use e2e::*;
use fixtures::{Origin, TestCa, Upstream};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const U1: u32 = 1000;

/// Names sandboxd answers itself (all 127.0.0.1, where the origins listen,
/// so a request the proxy wrongly let through would reach them).
const STATIC: &[&str] = &[
    "allowed.test",
    "other.test",
    "evil.test",
    "allowed.test.evil.test",
    "ask.test",
    "denied.pkg.test",
];

/// Loopback addresses of their own for origins on port 443, by name (one per test).
const ON_443: &[(&str, &str)] = &[
    ("plain443-a.pkg.test", "127.45.0.1"),
    ("plain443-b.pkg.test", "127.45.0.2"),
];

/// A name with a loopback address of its own, for a test's own server on
/// the HTTP origin's port (an allowed one).
const OWN: (&str, &str) = ("own.pkg.test", "127.46.0.1");

/// What a test's profile says beyond the common allowlist.
struct Prof<'a> {
    approval: &'a str,
    /// `allow_cidrs = ["127.0.0.0/8"]`.
    loopback: bool,
    /// More keys of `[network]`.
    network: &'a str,
    /// Tables after `[network]` (`[[network.rule]]`).
    tail: &'a str,
}

impl Default for Prof<'_> {
    fn default() -> Self {
        Prof {
            approval: "never",
            loopback: true,
            network: "",
            tail: "",
        }
    }
}

/// The servers, a workspace for uid 1000 (holding the test CA), and a daemon
/// whose profile `net` is the allowlist under test.
struct Net {
    d: Daemon,
    ws: Dir,
    origin: Origin,
    tls: Origin,
    up: Upstream,
    /// The test CA (PEM), readable inside.
    ca: PathBuf,
}

impl Net {
    fn start(prof: Prof) -> Net {
        Self::start_with(prof, "")
    }

    /// `config` is appended to the daemon config after its `[dns]` table.
    fn start_with(prof: Prof, config: &str) -> Net {
        let test_ca = TestCa::new(&["allowed.test", "other.test", "evil.test"]);
        let origin = Origin::http();
        let tls = Origin::https(&test_ca);
        let up = Upstream::start();
        let ws = Dir::new(U1);
        home(U1);
        let ca = ws.join("test-ca.pem");
        test_ca.write_ca(&ca);
        let mut hosts: Vec<String> = STATIC
            .iter()
            .map(|h| format!("\"{h}\" = [\"127.0.0.1\"]"))
            .collect();
        hosts.extend(
            ON_443
                .iter()
                .chain([&OWN])
                .map(|(h, a)| format!("\"{h}\" = [\"{a}\"]")),
        );
        let config = format!(
            "[dns]\nupstream = [\"127.0.0.1:{}\"]\nhosts = {{ {} }}\n\n{}\n",
            up.port,
            hosts.join(", "),
            config.replace("{ca}", ca.to_str().unwrap())
        );
        let profile = format!(
            "extends = \"workspace\"\napproval = \"{}\"\n\n[network]\nmode = \"allowlist\"\n\
             allow = [\"allowed.test\", \"other.test\", \"**.pkg.test\"]\n\
             deny = [\"denied.pkg.test\", \"hidden.pkg.test\"]\n\
             ports = [{}, {}, 443]\n{}{}\n\n{}\n",
            prof.approval,
            origin.port,
            tls.port,
            if prof.loopback {
                "allow_cidrs = [\"127.0.0.0/8\"]\n"
            } else {
                ""
            },
            prof.network,
            prof.tail
        );
        let d = Daemon::builder()
            .config(&config)
            .profile("net", &profile)
            .start();
        Net {
            d,
            ws,
            origin,
            tls,
            up,
            ca,
        }
    }

    fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// `sh -c script` in the `net` profile.
    fn sh(&self, script: &str) -> Out {
        self.d.sh(U1, &self.ws.path, &["--profile", "net"], script)
    }

    /// `sh -c script` in the `net` profile with an approver that answers
    /// `answer`; the output and the approver's log (see [`approver`]).
    fn sh_asking(&self, answer: &str, script: &str) -> (Out, PathBuf) {
        let (approver, log) = approver(&self.ws, answer);
        let approver = approver.to_str().unwrap();
        let args = ["--profile", "net", "--approver", approver];
        (self.d.sh(U1, &self.ws.path, &args, script), log)
    }

    /// Python code in the `net` profile, after [`PY`]'s helpers.
    fn py(&self, code: &str) -> Out {
        let args = Self::py_args(code);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.d.agent(U1, &self.ws.path).run(&args)
    }

    /// The `agent` arguments that run Python `code`, after [`PY`]'s
    /// helpers, in the `net` profile.
    fn py_args(code: &str) -> Vec<String> {
        ["exec", "--profile", "net", "--", "/usr/bin/python3", "-c"]
            .into_iter()
            .map(String::from)
            .chain([format!("{PY}\n{code}")])
            .collect()
    }

    /// Every audit record of kind "network" (decisions).
    fn decisions(&self) -> Vec<Value> {
        self.d
            .records()
            .into_iter()
            .filter(|r| r["kind"] == "network")
            .collect()
    }

    /// The first decision record matching `f`, waiting a little for it.
    #[track_caller]
    fn decision(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        eventually(Duration::from_secs(5), || {
            found = self.decisions().into_iter().find(|r| f(r));
            found.is_some()
        });
        let r = found.unwrap_or_else(|| {
            panic!(
                "no network audit record {what}; have:\n{:#?}",
                self.decisions()
            )
        });
        check_fields(&r);
        r
    }

    /// The refusal record for `host` with `reason` (`blocked-by-...`).
    #[track_caller]
    fn refusal(&self, host: &str, reason: &str) -> Value {
        let r = self.decision(&format!("refusing {host} with {reason}"), |r| {
            same_host(r, host) && r["reason"] == reason
        });
        assert_eq!(r["decision"], "deny", "{r:#}");
        assert!(
            r["rule"].as_str().is_some_and(|s| !s.is_empty()),
            "refusal without a rule: {r:#}"
        );
        r
    }

    /// The allow record for `host` by `protocol`.
    #[track_caller]
    fn allowed(&self, protocol: &str, host: &str, port: u16) -> Value {
        let r = self.decision(&format!("allowing {protocol} {host}:{port}"), |r| {
            r["protocol"] == protocol
                && same_host(r, host)
                && r["port"] == port
                && r["decision"] == "allow"
        });
        assert!(r["reason"].is_null(), "{r:#}");
        r
    }

    /// The end record of an allowed connection to `host`:`port` by `protocol`.
    #[track_caller]
    fn end(&self, protocol: &str, host: &str, port: u16) -> Value {
        let mut found = None;
        eventually(Duration::from_secs(10), || {
            found = self.d.records().into_iter().find(|r| {
                r["kind"] == "network-end"
                    && r["protocol"] == protocol
                    && same_host(r, host)
                    && r["port"] == port
            });
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no network-end record for {protocol} {host}:{port}:\n{:#?}",
                self.d.records()
            )
        })
    }
}

/// Python helpers for raw protocol work inside: `http(req)` sends bytes to
/// the HTTP proxy and returns the response (head and body) as text;
/// `hello(name, ech)` is a bare TLS ClientHello naming `name` (with an
/// Encrypted Client Hello extension when `ech`);
/// `socks(host, port, req)` returns the SOCKS5 reply code and, on success,
/// the answer to `req`; `dns(name, qtype, tcp)` returns (rcode, answer count).
const PY: &str = r#"
import socket, struct, random, sys

def read_response(s):
    buf = b''
    while b'\r\n\r\n' not in buf:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    head, _, body = buf.partition(b'\r\n\r\n')
    n = 0
    for l in head.split(b'\r\n')[1:]:
        k, _, v = l.partition(b':')
        if k.strip().lower() == b'content-length':
            n = int(v)
    while len(body) < n:
        b = s.recv(65536)
        if not b:
            break
        body += b
    return (head + b'\r\n\r\n' + body).decode('latin-1')

def http(req):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(req)
    return read_response(s)

def socks(host, port, req):
    s = socket.create_connection(('127.0.0.1', 1080), timeout=20)
    s.sendall(b'\x05\x01\x00')
    if s.recv(2) != b'\x05\x00':
        return ('no-auth refused', '')
    h = host.encode()
    s.sendall(b'\x05\x01\x00\x03' + bytes([len(h)]) + h + port.to_bytes(2, 'big'))
    head = b''
    while len(head) < 5:
        b = s.recv(5 - len(head))
        if not b:
            break
        head += b
    if len(head) < 2:
        return ('closed', '')
    if head[1] != 0:
        return (head[1], '')
    rest = {1: 4 + 2 - 1, 4: 16 + 2 - 1, 3: head[4] + 2}[head[3]]
    while rest > 0:
        b = s.recv(rest)
        if not b:
            return ('closed', '')
        rest -= len(b)
    s.sendall(req)
    return (0, read_response(s))

def hello(name, ech=False):
    sni = b'\x00' + len(name).to_bytes(2, 'big') + name
    exts = b'\x00\x00' + (len(sni) + 2).to_bytes(2, 'big') + len(sni).to_bytes(2, 'big') + sni
    if ech:
        payload = bytes([0, 0, 1, 0, 1, 0x42, 0, 2, 0xab, 0xcd])
        exts += b'\xfe\x0d' + len(payload).to_bytes(2, 'big') + payload
    body = b'\x03\x03' + b'\x07' * 32 + b'\x00\x00\x02\x13\x01\x01\x00' + len(exts).to_bytes(2, 'big') + exts
    msg = b'\x01\x00' + len(body).to_bytes(2, 'big') + body
    return b'\x16\x03\x01' + len(msg).to_bytes(2, 'big') + msg

def dns(name, qtype=1, tcp=False, server=('127.0.0.1', 53)):
    q = struct.pack('>HHHHHH', random.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b''.join(bytes([len(l)]) + l.encode() for l in name.rstrip('.').split('.')) + b'\0'
    q += struct.pack('>HH', qtype, 1)
    if tcp:
        s = socket.create_connection(server, timeout=10)
        s.sendall(struct.pack('>H', len(q)) + q)
        n = struct.unpack('>H', s.recv(2))[0]
        r = b''
        while len(r) < n:
            r += s.recv(n - len(r))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.sendto(q, server)
        r = s.recv(4096)
    return (r[3] & 15, struct.unpack('>H', r[6:8])[0])
"#;

/// Whether the record's host is `host`, ignoring case and a trailing dot.
fn same_host(r: &Value, host: &str) -> bool {
    r["host"]
        .as_str()
        .is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
}

/// The fields every network decision carries.
#[track_caller]
fn check_fields(r: &Value) {
    assert!(
        r["id"].as_str().is_some_and(|s| !s.is_empty()),
        "no exec id: {r:#}"
    );
    assert_eq!(r["uid"], U1, "{r:#}");
    assert!(
        ["http", "https", "connect", "socks", "dns"]
            .contains(&r["protocol"].as_str().unwrap_or("")),
        "protocol: {r:#}"
    );
    assert!(
        ["allow", "deny", "prompt"].contains(&r["decision"].as_str().unwrap_or("")),
        "decision: {r:#}"
    );
    for k in [
        "host",
        "port",
        "method",
        "path",
        "addr",
        "reason",
        "rule",
        "bytes_up",
        "bytes_down",
        "duration_ms",
    ] {
        assert!(r.get(k).is_some(), "no {k}: {r:#}");
    }
}

/// The values of every `X-Proxy-Error` header in curl's output (`-i` on
/// stdout, `-v` on stderr) or a raw response.
fn proxy_errors(out: &Out) -> Vec<String> {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .filter_map(|l| l.trim_start_matches(['<', ' ']).split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("x-proxy-error"))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The status codes of the HTTP responses in `text`.
fn statuses(text: &str) -> Vec<u16> {
    text.lines()
        .map(|l| l.trim_start_matches(['<', ' ']))
        .filter(|l| l.starts_with("HTTP/1."))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Asserts `out` shows a 403 refusal with `X-Proxy-Error: reason`.
#[track_caller]
fn assert_refused(out: &Out, reason: &str) {
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(statuses(&all).contains(&403), "no 403:\n{all}");
    assert!(
        proxy_errors(out).iter().any(|e| e == reason),
        "no X-Proxy-Error: {reason}:\n{all}"
    );
}

/// A fresh label nobody queried before (for the exfiltration checks).
fn random_label(len: usize) -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed % 36) as usize])
        })
        .collect()
}

// ---------------------------------------------------------------- fixtures

#[test]
fn fixtures_answer_from_the_host() {
    let test_ca = TestCa::new(&["allowed.test"]);
    let origin = Origin::http();
    let tls = Origin::https(&test_ca);
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    test_ca.write_ca(&ca);
    let curl = |args: &[&str]| {
        let o = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let url = format!("http://127.0.0.1:{}/plain", origin.port);
    assert_eq!(curl(&["-H", "X-Probe: 1", &url]), "origin saw /plain\n");
    let r = origin.request("/plain").expect("logged");
    assert_eq!((r.method.as_str(), r.header("x-probe")), ("GET", Some("1")));
    let resolve = format!("allowed.test:{}:127.0.0.1", tls.port);
    let url = format!("https://allowed.test:{}/tls", tls.port);
    assert_eq!(
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-d",
            "abc",
            &url
        ]),
        "origin saw /tls\n"
    );
    let r = tls.request("/tls").expect("logged");
    assert_eq!(
        (r.method.as_str(), r.body.as_slice()),
        ("POST", &b"abc"[..])
    );
    assert_eq!(tls.connections(), 1);
    // The fake upstream answers and logs over UDP and TCP.
    let code = format!(
        "{PY}\nprint(dns('a.pkg.test', 1, True, ('127.0.0.1', {})))",
        up.port
    );
    let o = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &code])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "(0, 1)",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = [
        &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..],
        b"\x01b\x03PKG\x04test\x00",
        &[0, 16, 0, 1],
    ]
    .concat();
    udp.send_to(&q, ("127.0.0.1", up.port)).unwrap();
    let mut buf = [0u8; 512];
    let n = udp.recv(&mut buf).unwrap();
    assert_eq!(
        (&buf[..2], buf[3] & 15, buf[7]),
        (&[0x12, 0x34][..], 0, 0),
        "{:?}",
        &buf[..n]
    );
    assert_eq!(
        up.queries(),
        [
            ("a.pkg.test".to_string(), 1),
            ("b.pkg.test".to_string(), 16)
        ]
    );
    assert!(up.saw("pkg.test") && !up.saw("c.pkg.test"));
}

// ------------------------------------------------------------- allowed paths

#[test]
fn allowed_name_over_http_through_explicit_and_env_proxy() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 -x http://127.0.0.1:3128 http://allowed.test:{p}/explicit && \
         curl -sS -i --max-time 20 http://allowed.test:{p}/from-env"
    ));
    out.expect_code(0);
    assert_eq!(statuses(&out.stdout), [200, 200], "{}", out.stdout);
    for path in ["/explicit", "/from-env"] {
        assert!(
            out.stdout.contains(&format!("origin saw {path}")),
            "{}",
            out.stdout
        );
        assert!(
            n.origin.request(path).is_some(),
            "origin got no {path}: {:?}",
            n.origin.requests()
        );
    }
    let r = n.allowed("http", "allowed.test", p);
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("GET"), Some("/explicit")),
        "{r:#}"
    );
    assert_eq!(r["addr"], "127.0.0.1", "{r:#}");
    let end = n.end("http", "allowed.test", p);
    assert!(end["bytes_down"].as_u64().unwrap_or(0) > 0, "{end:#}");
    // The network records are links of the audit chain like any other.
    let o = std::process::Command::new(bin("sandboxd"))
        .args(["audit", "verify", "--state-dir"])
        .arg(&n.d.state_dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_allowed_name_known_only_upstream_is_resolved_by_the_daemon_and_reached() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://mirror.pkg.test:{p}/from-upstream"
    ));
    out.expect_code(0);
    assert_eq!(
        statuses(&out.stdout),
        [200],
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        n.origin.request("/from-upstream").is_some(),
        "{:?}",
        n.origin.requests()
    );
    assert!(n.up.saw("mirror.pkg.test"), "{:?}", n.up.queries());
    let r = n.allowed("http", "mirror.pkg.test", p);
    assert_eq!(r["addr"], "127.0.0.1", "{r:#}");
}

#[test]
fn allowed_name_over_https_through_connect() {
    let n = Net::start(Prof::default());
    let t = n.tls.port;
    let ca = n.ca();
    let out = n.sh(&format!(
        "curl -sS --max-time 20 --cacert {ca} https://allowed.test:{t}/tls-env && \
         curl -sS --max-time 20 --cacert {ca} -x http://127.0.0.1:3128 https://allowed.test:{t}/tls-explicit && \
         /usr/bin/python3 -c \"import ssl, urllib.request as u; \
         print(u.urlopen('https://allowed.test:{t}/tls-python', context=ssl.create_default_context(cafile='{ca}')).read().decode())\""
    ));
    out.expect_code(0);
    for path in ["/tls-env", "/tls-explicit", "/tls-python"] {
        assert!(
            out.stdout.contains(&format!("origin saw {path}")),
            "{}",
            out.stdout
        );
        assert!(n.tls.request(path).is_some(), "origin got no {path}");
    }
    n.allowed("connect", "allowed.test", t);
    let end = n.end("connect", "allowed.test", t);
    assert!(
        end["bytes_up"].as_u64().unwrap_or(0) > 0 && end["bytes_down"].as_u64().unwrap_or(0) > 0,
        "{end:#}"
    );
}

#[test]
fn allowed_name_over_socks5_from_curl_and_python() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS --max-time 20 -x socks5h://127.0.0.1:1080 http://allowed.test:{p}/socks-curl"
    ));
    out.expect_code(0);
    assert_eq!(out.stdout, "origin saw /socks-curl\n");
    let out = n.py(&format!(
        "print(socks('allowed.test', {p}, b'GET /socks-python HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n'))"
    ));
    out.expect_code(0);
    assert!(
        out.stdout.starts_with("(0, ") && out.stdout.contains("origin saw /socks-python"),
        "{}",
        out.stdout
    );
    assert!(
        n.origin.request("/socks-curl").is_some() && n.origin.request("/socks-python").is_some()
    );
    n.allowed("socks", "allowed.test", p);
    n.end("socks", "allowed.test", p);
}

/// The SOCKS5 success reply's bound address is 0.0.0.0:0, not the
/// daemon's address and port upstream, which are the host's.
#[test]
fn a_socks5_reply_names_no_address_of_the_host() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        r#"
s = socket.create_connection(('127.0.0.1', 1080), timeout=20)
s.sendall(b'\x05\x01\x00')
assert s.recv(2) == b'\x05\x00'
s.sendall(b'\x05\x01\x00\x03\x0callowed.test' + ({p}).to_bytes(2, 'big'))
r = b''
while len(r) < 10:
    b = s.recv(10 - len(r))
    if not b:
        break
    r += b
print(r.hex())
"#
    ));
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "05000001000000000000", "{}", out.stderr);
}

#[test]
fn inspected_https_trusts_sandboxds_ca_through_the_env() {
    let n = Net::start_with(
        Prof {
            network: "inspect = true\n",
            ..Prof::default()
        },
        "[tls]\nextra_roots = [\"{ca}\"]\n",
    );
    let t = n.tls.port;
    let out = n.py(&format!(
        r#"
import os, subprocess, urllib.request
for v in ['SSL_CERT_FILE', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', 'NODE_EXTRA_CA_CERTS', 'GIT_SSL_CAINFO', 'CARGO_HTTP_CAINFO']:
    p = os.environ.get(v, '')
    text = open(p).read() if p else ''
    print('ENV', v, p, 'certs=%d' % text.count('BEGIN CERTIFICATE'), 'keys=%d' % text.count('PRIVATE KEY'))
print(urllib.request.urlopen('https://allowed.test:{t}/inspected-python').read().decode(), end='')
r = subprocess.run(['curl', '-sS', '--max-time', '20', 'https://allowed.test:{t}/inspected-curl'], capture_output=True, text=True)
print(r.stdout + r.stderr, end='')
r = subprocess.run(['curl', '-sS', '--max-time', '20', '--cacert', '{ca}', 'https://allowed.test:{t}/test-ca-only'], capture_output=True, text=True)
print('test-ca-only', r.returncode)
"#,
        ca = n.ca()
    ));
    out.expect_code(0);
    let env: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("ENV "))
        .collect();
    assert_eq!(env.len(), 6, "{}", out.stdout);
    for l in &env {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(
            f.len() == 5 && f[3] != "certs=0" && f[4] == "keys=0",
            "{l}\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("origin saw /inspected-python\n"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("origin saw /inspected-curl\n"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // Decrypted: the sandbox saw sandboxd's leaf, not the origin's.
    assert!(!out.stdout.contains("test-ca-only 0"), "{}", out.stdout);
    assert!(n.tls.request("/test-ca-only").is_none());
    let r = n.decision("https GET /inspected-curl", |r| {
        r["protocol"] == "https" && r["path"] == "/inspected-curl"
    });
    assert_eq!(
        (r["decision"].as_str(), r["method"].as_str()),
        (Some("allow"), Some("GET")),
        "{r:#}"
    );
    assert!(same_host(&r, "allowed.test") && r["port"] == t, "{r:#}");
    // The CA's key stays in the state dir, 0600.
    let mut keys = vec![];
    let mut todo = vec![n.d.state_dir.clone()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read_to_string(&p).is_ok_and(|s| s.contains("PRIVATE KEY")) {
                keys.push(p);
            }
        }
    }
    assert!(
        !keys.is_empty(),
        "no CA key under {}",
        n.d.state_dir.display()
    );
    for k in keys {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.display());
    }
}

#[test]
fn inspected_https_to_an_upstream_outside_the_trusted_roots_is_not_forwarded() {
    // No `[tls] extra_roots`: the origin's test CA is not trusted by sandboxd.
    let n = Net::start(Prof {
        network: "inspect = true\n",
        ..Prof::default()
    });
    let t = n.tls.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 https://allowed.test:{t}/untrusted"
    ));
    // The tunnel's own "200 Connection established" aside, no success comes back.
    assert_ne!(
        statuses(&out.stdout).last(),
        Some(&200),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains("origin saw"), "{}", out.stdout);
    assert!(
        n.tls.request("/untrusted").is_none(),
        "{:?}",
        n.tls.requests()
    );
}

#[test]
fn a_secret_is_injected_into_inspected_https() {
    let secret = format!("tls-{}", random_label(24));
    let n = Net::start_with(
        Prof {
            network: "inspect = true\n",
            tail: "[[network.rule]]\nhost = \"allowed.test\"\ninject = { header = \"X-Api-Key\", value = \"{secret:TLS_CRED}\" }\n",
            ..Prof::default()
        },
        "[tls]\nextra_roots = [\"{ca}\"]\n",
    );
    let t = n.tls.port;
    let script = format!("env; curl -sS --max-time 20 https://allowed.test:{t}/tls-inject");
    let out = n.d.agent(U1, &n.ws.path).env("TLS_CRED", &secret).run(&[
        "exec",
        "--profile",
        "net",
        "--secret",
        "TLS_CRED",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("origin saw /tls-inject"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stdout.contains(&secret),
        "secret visible inside:\n{}",
        out.stdout
    );
    let r = n.tls.request("/tls-inject").unwrap();
    assert_eq!(r.header("x-api-key"), Some(secret.as_str()), "{r:?}");
}

#[test]
fn python_urllib_uses_the_env_proxies() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        "import urllib.request\nprint(urllib.request.urlopen('http://allowed.test:{p}/urllib').read().decode(), end='')"
    ));
    out.expect_code(0);
    assert_eq!(out.stdout, "origin saw /urllib\n");
    assert!(n.origin.request("/urllib").is_some());
    n.allowed("http", "allowed.test", p);
}

#[test]
fn env_and_resolv_conf_point_at_the_sandboxs_proxy_and_resolver() {
    let n = Net::start(Prof::default());
    let out = n.sh(
        "for v in HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY http_proxy https_proxy all_proxy no_proxy; do \
         echo \"$v=$(printenv $v)\"; done; grep '^nameserver' /etc/resolv.conf; getent hosts allowed.test mirror.pkg.test",
    );
    out.expect_code(0);
    let mut lines = out.stdout.lines();
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        let want = match v {
            "ALL_PROXY" => "socks5h://127.0.0.1:1080",
            "NO_PROXY" => "localhost,127.0.0.1,::1",
            _ => "http://127.0.0.1:3128",
        };
        assert_eq!(
            lines.next(),
            Some(format!("{v}={want}").as_str()),
            "{}",
            out.stdout
        );
    }
    for v in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        let upper = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}=", v.to_uppercase())))
            .unwrap();
        assert_eq!(
            lines.next().unwrap(),
            format!("{v}={}", upper.split_once('=').unwrap().1),
            "{}",
            out.stdout
        );
    }
    assert_eq!(lines.next(), Some("nameserver 127.0.0.1"), "{}", out.stdout);
    let rest: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rest,
        [
            vec!["127.0.0.1", "allowed.test"],
            vec!["127.0.0.1", "mirror.pkg.test"]
        ],
        "{}",
        out.stdout
    );
    assert!(n.up.saw("mirror.pkg.test"), "{:?}", n.up.queries());
}

#[test]
fn the_proxies_are_served_without_a_process_in_the_sandbox() {
    let n = Net::start(Prof::default());
    let out = n.py("import os\n\
         for p in sorted(os.listdir('/proc'), key=lambda p: (len(p), p)):\n\
         \x20   if p.isdigit():\n\
         \x20       print(p, open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')[:2])\n\
         print(len(http(b'GET http://allowed.test:1/ HTTP/1.1\\r\\nHost: allowed.test:1\\r\\n\\r\\n')) > 0)");
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    // pid 1 is sandboxd's init; then only the command itself.
    let procs: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(
        procs
            .iter()
            .all(|l| l.contains("__sandbox_init") || l.contains("/usr/bin/python3")),
        "{}",
        out.stdout
    );
    assert_eq!(
        procs
            .iter()
            .filter(|l| l.contains("/usr/bin/python3"))
            .count(),
        1,
        "{}",
        out.stdout
    );
    assert!(procs.len() <= 2, "{}", out.stdout);
    // The proxy answered all the same.
    assert_eq!(lines.last(), Some(&"True"), "{}", out.stdout);
}

// ---------------------------------------------------------------- refusals

#[test]
fn unlisted_and_denied_names_are_refused_with_their_rule() {
    let n = Net::start(Prof::default());
    let (p, t) = (n.origin.port, n.tls.port);
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://evil.test:{p}/unlisted"
    ));
    assert_refused(&out, "blocked-by-allowlist");
    let r = n.refusal("evil.test", "blocked-by-allowlist");
    // The body names the rule; the agent shows the event.
    let rule = r["rule"].as_str().unwrap();
    assert!(
        out.stdout.contains(rule),
        "body does not name {rule:?}:\n{}",
        out.stdout
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("sandboxd: network: ") && l.contains("(rule ")),
        "no event on stderr:\n{}",
        out.stderr
    );
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://denied.pkg.test:{p}/denied"
    ));
    assert_refused(&out, "blocked-by-denylist");
    n.refusal("denied.pkg.test", "blocked-by-denylist");
    // CONNECT and SOCKS as well.
    let out = n.sh(&format!(
        "curl -sS -v --max-time 20 --cacert {} https://evil.test:{t}/unlisted-tls",
        n.ca()
    ));
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_refused(&out, "blocked-by-allowlist");
    let out = n.py(&format!("print(socks('denied.pkg.test', {p}, b'')[0])"));
    assert_eq!(out.stdout.trim(), "2", "{}", out.stderr);
    let r = n.decision("socks refusal", |r| {
        r["protocol"] == "socks" && same_host(r, "denied.pkg.test")
    });
    assert_eq!(r["reason"], "blocked-by-denylist", "{r:#}");
    assert_eq!(
        (n.origin.connections(), n.tls.connections()),
        (0, 0),
        "{:?}",
        n.origin.requests()
    );
}

#[test]
fn a_port_not_listed_is_refused() {
    let n = Net::start(Prof::default());
    let other = Origin::http();
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://allowed.test:{}/port",
        other.port
    ));
    assert_refused(&out, "blocked-by-port");
    let r = n.refusal("allowed.test", "blocked-by-port");
    assert_eq!(r["port"], other.port, "{r:#}");
    let out = n.py(&format!(
        "print(socks('allowed.test', {}, b'')[0])",
        other.port
    ));
    assert_eq!(out.stdout.trim(), "2", "{}", out.stderr);
    assert_eq!(other.connections(), 0);
}

#[test]
fn ip_literals_are_refused_in_every_spelling() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let mut code = String::new();
    for (i, h) in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ]
    .iter()
    .enumerate()
    {
        code.push_str(&format!(
            "print(http(b'GET http://{h}:{p}/ip{i} HTTP/1.1\\r\\nHost: {h}:{p}\\r\\nConnection: close\\r\\n\\r\\n'))\n"
        ));
    }
    code.push_str(&format!(
        "print(http(b'CONNECT 127.0.0.1:{t} HTTP/1.1\\r\\nHost: 127.0.0.1:{t}\\r\\n\\r\\n'))\n",
        t = n.tls.port
    ));
    let out = n.py(&code);
    out.expect_code(0);
    assert_eq!(statuses(&out.stdout), [403; 8], "{}", out.stdout);
    assert_eq!(
        proxy_errors(&out),
        ["blocked-by-allowlist"; 8],
        "{}",
        out.stdout
    );
    n.refusal("127.0.0.1", "blocked-by-allowlist");
    assert_eq!((n.origin.connections(), n.tls.connections()), (0, 0));
}

#[test]
fn each_request_on_a_kept_alive_connection_is_decided() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        r#"
s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
for host, path in [('allowed.test', '/first'), ('evil.test', '/smuggled'), ('allowed.test', '/third')]:
    s.sendall(('GET http://%s:{p}%s HTTP/1.1\r\nHost: %s:{p}\r\n\r\n' % (host, path, host)).encode())
    print(read_response(s).split('\r\n')[0])
"#
    ));
    assert_eq!(
        statuses(&out.stdout).get(..2),
        Some(&[200, 403][..]),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(n.origin.request("/first").is_some());
    assert!(
        n.origin.request("/smuggled").is_none(),
        "{:?}",
        n.origin.requests()
    );
    n.refusal("evil.test", "blocked-by-allowlist");
    // After a refusal the connection may close; if it stayed open, the next request was decided on its own.
    if statuses(&out.stdout).len() == 3 {
        assert_eq!(statuses(&out.stdout)[2], 200, "{}", out.stdout);
        assert!(n.origin.request("/third").is_some());
    }
}

#[test]
fn a_host_header_that_disagrees_with_the_uri_is_refused() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        "print(http(b'GET http://allowed.test:{p}/mismatch HTTP/1.1\\r\\nHost: evil.test:{p}\\r\\nConnection: close\\r\\n\\r\\n'))"
    ));
    out.expect_code(0);
    assert_refused(&out, "blocked-by-bad-request");
    n.decision("bad-request", |r| r["reason"] == "blocked-by-bad-request");
    assert_eq!(n.origin.connections(), 0, "{:?}", n.origin.requests());
}

#[test]
fn userinfo_in_the_authority_is_refused() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        "print(http(b'GET http://user:pw@allowed.test:{p}/userinfo HTTP/1.1\\r\\nHost: allowed.test:{p}\\r\\nConnection: close\\r\\n\\r\\n'))"
    ));
    out.expect_code(0);
    assert_refused(&out, "blocked-by-bad-request");
    n.decision("bad-request", |r| r["reason"] == "blocked-by-bad-request");
    // The trick: an allowed name as userinfo in front of another host.
    let out = n.py(&format!(
        "print(http(b'GET http://allowed.test:{p}@evil.test:{p}/trick HTTP/1.1\\r\\nHost: evil.test:{p}\\r\\nConnection: close\\r\\n\\r\\n'))"
    ));
    out.expect_code(0);
    assert_eq!(statuses(&out.stdout), [403], "{}", out.stdout);
    let errs = proxy_errors(&out);
    assert!(
        errs == ["blocked-by-bad-request"] || errs == ["blocked-by-allowlist"],
        "{}",
        out.stdout
    );
    assert_eq!(n.origin.connections(), 0, "{:?}", n.origin.requests());
}

#[test]
fn upper_case_and_a_trailing_dot_are_the_same_name() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.py(&format!(
        "print(http(b'GET http://ALLOWED.TEST.:{p}/upper HTTP/1.1\\r\\nHost: ALLOWED.TEST.:{p}\\r\\nConnection: close\\r\\n\\r\\n'))"
    ));
    out.expect_code(0);
    assert_eq!(statuses(&out.stdout), [200], "{}", out.stdout);
    assert!(n.origin.request("/upper").is_some());
    let out = n.sh(&format!(
        "curl -sS --max-time 20 http://ALLOWED.TEST.:{p}/upper-curl"
    ));
    out.expect_code(0);
    assert!(n.origin.request("/upper-curl").is_some(), "{}", out.stdout);
    n.allowed("http", "allowed.test", p);
}

#[test]
fn an_allowed_name_as_a_prefix_of_another_is_refused() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://allowed.test.evil.test:{p}/suffix"
    ));
    assert_refused(&out, "blocked-by-allowlist");
    n.refusal("allowed.test.evil.test", "blocked-by-allowlist");
    assert_eq!(n.origin.connections(), 0);
}

#[test]
fn an_sni_other_than_the_connect_host_closes_the_tunnel() {
    let n = Net::start(Prof::default());
    let t = n.tls.port;
    let out = n.py(&format!(
        r#"
import ssl
def tunnel(sni, path):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(b'CONNECT allowed.test:{t} HTTP/1.1\r\nHost: allowed.test:{t}\r\n\r\n')
    print(read_response(s).split('\r\n')[0])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        c = ctx.wrap_socket(s, server_hostname=sni)
        c.sendall(('GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % (path, sni)).encode())
        print(sni, 'GOT', read_response(c).split('\r\n')[0])
    except Exception as e:
        print(sni, 'FAILED', type(e).__name__)
tunnel('allowed.test', '/sni-ok')
tunnel('evil.test', '/fronted')
"#
    ));
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[1].starts_with("allowed.test GOT HTTP/1.1 200"),
        "{}",
        out.stdout
    );
    assert!(lines[3].starts_with("evil.test FAILED"), "{}", out.stdout);
    assert!(n.tls.request("/sni-ok").is_some());
    assert!(
        n.tls.request("/fronted").is_none(),
        "{:?}",
        n.tls.requests()
    );
    let r = n.decision("sni-mismatch", |r| r["reason"] == "blocked-by-sni-mismatch");
    assert_eq!(r["decision"], "deny", "{r:#}");
}

/// A client that reads its stream too slowly loses network events (the
/// sandbox's connections never wait for it), and is told how many: every
/// recorded decision is either shown or counted lost. The requests are
/// allowed ones, which are recorded one by one at any rate.
#[test]
fn a_slow_client_is_told_how_many_network_events_it_missed() {
    use std::io::Read;
    use std::process::Stdio;
    const N: usize = 1200;
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    // Long paths make long event lines, so the agent's stderr pipe and its
    // stream's window fill sooner. Output written meanwhile (by a thread of
    // its own, which blocks once it is backed up) makes the daemon wait to
    // send it, so that events also pile up before they reach the stream.
    let code = format!(
        r#"
import os, threading
path = '/' + 'x' * 3000
def output():
    for _ in range(64):
        os.write(1, b'o' * 65536)
out = threading.Thread(target=output)
out.start()
def worker(k):
    for i in range(k, {N}, 8):
        s = socket.create_connection(('127.0.0.1', 3128), timeout=60)
        s.sendall(('GET http://allowed.test:{p}%s/%d HTTP/1.1\r\nHost: allowed.test:{p}\r\nConnection: close\r\n\r\n' % (path, i)).encode())
        assert read_response(s).startswith('HTTP/1.1 200'), i
        s.close()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
open('done', 'w').close()
out.join()
"#
    );
    let args = Net::py_args(&code);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child =
        n.d.agent(U1, &n.ws.path)
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
    // Nobody reads the agent's stderr until the sandbox is done.
    let done = n.ws.join("done");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(child.wait().expect("wait").success(), "{stderr:.2000}");
    let shown = stderr
        .lines()
        .filter(|l| l.starts_with("sandboxd: network: allow") && l.contains("allowed.test"))
        .count();
    let lost: usize = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("sandboxd: network-events-lost: "))
        .map(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(lost > 0, "no event was lost: {shown} shown");
    let recorded = n
        .decisions()
        .iter()
        .filter(|r| r["host"] == "allowed.test" && r["decision"] == "allow")
        .count();
    assert_eq!(recorded, N, "every decision recorded");
    assert_eq!(shown + lost, N, "{shown} shown, {lost} counted lost");
}

/// Refusals past the rate that a sandbox makes just before it ends are
/// counted in a record written before its `exec-end`: nothing is lost, and
/// the log's order tells what happened while the exec ran.
#[test]
fn refusals_counted_at_the_end_are_written_before_the_exec_end() {
    // From 8 clients, so that the recorded refusals share their writes and
    // the burst runs out early even on a slow disk.
    const N: usize = 2000;
    let n = Net::start(Prof::default());
    let out = n.py(&format!(
        r#"
import threading
def worker(k):
    for i in range(k, {N}, 8):
        s = socket.create_connection(('127.0.0.1', 3128), timeout=60)
        s.sendall(b'GET http://denied.pkg.test/%d HTTP/1.1\r\nHost: denied.pkg.test\r\n\r\n' % i)
        assert read_response(s).startswith('HTTP/1.1 403'), i
        s.close()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
"#
    ));
    out.expect_code(0);
    let records = n.d.records();
    let end = records
        .iter()
        .find(|r| r["kind"] == "exec-end")
        .expect("an exec-end");
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "network" && r["id"] == end["id"])
        .filter(|r| r["host"] == "denied.pkg.test")
        .collect();
    let count = |r: &Value| -> Option<usize> {
        let m = r["message"].as_str()?;
        m.contains("not recorded one by one")
            .then(|| m.split(' ').next()?.parse().ok())
            .flatten()
    };
    let counted: usize = mine.iter().filter_map(|r| count(r)).sum();
    let one_by_one = mine.iter().filter(|r| count(r).is_none()).count();
    assert!(
        counted > 0,
        "{one_by_one} recorded one by one, none counted"
    );
    assert_eq!(one_by_one + counted, N, "every refusal recorded or counted");
    let last = mine.iter().map(|r| r["seq"].as_u64().unwrap()).max();
    assert!(
        last < end["seq"].as_u64(),
        "a count after the exec-end: {last:?} > {}",
        end["seq"]
    );
}

/// Tunnels and a request open when their exec ends (their server reads
/// everything and never closes or answers) have their end records, with
/// the bytes they carried, written before the `exec-end`: one each.
#[test]
fn connections_open_when_the_exec_ends_have_their_ends_recorded_before_the_exec_end() {
    const SENT: usize = 5 << 20;
    const TUNNELS: usize = 30;
    let n = Net::start(Prof::default());
    let port = n.origin.port;
    let sink = std::net::TcpListener::bind((OWN.1, port)).expect("bind the sink");
    std::thread::spawn(move || {
        for s in sink.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s, &mut std::io::sink());
                // Never closed.
                std::mem::forget(s);
            });
        }
    });
    let out = n.py(&format!(
        r#"
import time
def tunnel():
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(b'CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n')
    assert read_response(s).startswith('HTTP/1.1 200')
    return s
big = tunnel()
big.sendall(b'\x00' * {SENT})
small = [tunnel() for _ in range({TUNNELS})]
for s in small:
    s.sendall(b'\x01' * 1000)
r = socket.create_connection(('127.0.0.1', 3128), timeout=20)
r.sendall(b'POST http://{host}:{port}/slow HTTP/1.1\r\nHost: {host}:{port}\r\n'
          b'Content-Length: 10485760\r\n\r\n' + b'\x02' * {SENT})
time.sleep(1)
"#,
        host = OWN.0
    ));
    out.expect_code(0);
    let end = n.end("connect", OWN.0, port);
    let records = n.d.records();
    let exec_end = records
        .iter()
        .find(|r| r["kind"] == "exec-end" && r["id"] == end["id"])
        .expect("an exec-end");
    let own = |kind: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["kind"] == kind && same_host(r, OWN.0) && r["decision"] == "allow")
            .collect()
    };
    let (allowed, ends) = (own("network"), own("network-end"));
    assert_eq!(allowed.len(), TUNNELS + 2, "{allowed:#?}");
    assert_eq!(ends.len(), allowed.len(), "{ends:#?}");
    for e in &ends {
        // (The request ends when its client does: its body is cut short.)
        if e["protocol"] == "connect" {
            assert_eq!(e["message"], "still open when the exec ended", "{e:#}");
        }
        assert!(
            e["seq"].as_u64() < exec_end["seq"].as_u64(),
            "a network-end after the exec-end: {e:#} {exec_end:#}"
        );
    }
    let up = |protocol: &str| -> Vec<u64> {
        let mut v: Vec<u64> = ends
            .iter()
            .filter(|e| e["protocol"] == protocol)
            .filter_map(|e| e["bytes_up"].as_u64())
            .collect();
        v.sort_unstable();
        v
    };
    let mut tunnels = vec![1000; TUNNELS];
    tunnels.push(SENT as u64);
    assert_eq!(up("connect"), tunnels);
    // The request's head and the body so far.
    let request = up("http");
    assert!(
        request.len() == 1 && request[0] > SENT as u64,
        "{request:?}"
    );
}

/// A connection the proxy was still making when the exec ended is recorded
/// as such, not as one that was open: here to a server whose queue of
/// connections is full, which answers no more handshakes.
#[test]
fn connections_still_being_made_when_the_exec_ends_are_recorded_so() {
    let n = Net::start(Prof::default());
    let port = n.origin.port;
    let mut full = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, sys, time\n\
                 s = socket.socket(); s.bind(('{}', {port})); s.listen(0)\n\
                 print('ready', flush=True); time.sleep(120)",
                OWN.1
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(full.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    let out = n.py(&format!(
        r#"
import time
held = []
for _ in range(4):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(b'CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n')
    held.append(s)
time.sleep(2)
"#,
        host = OWN.0
    ));
    let _ = full.kill();
    let _ = full.wait();
    out.expect_code(0);
    n.end("connect", OWN.0, port);
    let ends: Vec<String> =
        n.d.records()
            .iter()
            .filter(|r| r["kind"] == "network-end" && same_host(r, OWN.0))
            .map(|r| r["message"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(ends.len(), 4, "{ends:?}");
    assert!(
        ends.iter()
            .any(|m| m == "still connecting when the exec ended"),
        "{ends:?}"
    );
}

/// A ClientHello naming allowed.test, with an Encrypted Client Hello
/// extension and without, each through its own CONNECT to the TLS origin;
/// prints how many bytes came back and the first (a TLS alert, 15, when the
/// server got the hello: it is too bare to answer otherwise).
fn hellos_through_connect(n: &Net) -> Out {
    let t = n.tls.port;
    n.py(&format!(
        r#"
for ech in (True, False):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(b'CONNECT allowed.test:{t} HTTP/1.1\r\nHost: allowed.test:{t}\r\n\r\n')
    head = read_response(s).split('\r\n')[0]
    s.sendall(hello(b'allowed.test', ech))
    try:
        back = s.recv(100)
    except OSError:
        back = b''
    print('ech' if ech else 'plain', head[:12], len(back), back[:1].hex())
"#
    ))
}

/// A well-formed ClientHello naming the host, sent through a tunnel to a
/// server that speaks no TLS (one that answers junk and reads on, one
/// that echoes what it reads), is a decoy: the tunnel is closed when the
/// server's answer is no ServerHello or TLS alert, so the plain request
/// after it does not pass unread where methods apply.
#[test]
fn a_decoy_client_hello_to_a_plain_server_lets_nothing_through() {
    let n = Net::start(Prof {
        tail: "[[network.rule]]\nhost = \"own.pkg.test\"\nmethods = [\"GET\"]\n",
        ..Prof::default()
    });
    let port = n.origin.port;
    let server = std::net::TcpListener::bind((OWN.1, port)).expect("bind the server");
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&got);
    // The first connection is answered 400 (once), the second echoed.
    std::thread::spawn(move || {
        for (i, s) in server.incoming().enumerate() {
            let Ok(mut s) = s else { continue };
            let seen = std::sync::Arc::clone(&seen);
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let mut answered = false;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    let answer: &[u8] = match i {
                        0 if !answered => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                        0 => b"",
                        _ => &buf[..n],
                    };
                    answered = true;
                    let _ = s.write_all(answer);
                }
            });
        }
    });
    let out = n.py(&format!(
        r#"
import time
for i in range(2):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(b'CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n')
    print(read_response(s).split('\r\n')[0])
    s.sendall(hello(b'{host}'))
    try:
        s.sendall(b'POST /forbidden HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n')
        time.sleep(1)
        print('back', len(s.recv(100)))
    except OSError as e:
        print('failed', e)
"#,
        host = OWN.0
    ));
    out.expect_code(0);
    let established = out.stdout.lines().filter(|l| l.starts_with("HTTP/1.1 200"));
    assert_eq!(established.count(), 2, "{}", out.stdout);
    n.refusal(OWN.0, "blocked-by-not-tls");
    let refused = n.decisions().into_iter().filter(|r| {
        r["reason"] == "blocked-by-not-tls"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("neither a ServerHello nor a TLS alert"))
    });
    assert_eq!(refused.count(), 2, "{:#?}", n.decisions());
    let got = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        !got.contains("POST /forbidden"),
        "the request passed: {got:?}"
    );
}

#[test]
fn an_encrypted_client_hello_is_refused_unless_the_profile_allows_it() {
    let n = Net::start(Prof::default());
    let out = hellos_through_connect(&n);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(lines[0], "ech HTTP/1.1 200 0 ", "{}", out.stdout);
    assert!(
        lines[1].starts_with("plain HTTP/1.1 200 ") && lines[1].ends_with(" 15"),
        "{}",
        out.stdout
    );
    let r = n.decision("ech", |r| r["rule"] == "network.allow_ech = false");
    assert_eq!(r["reason"], "blocked-by-sni-mismatch", "{r:#}");
    assert_eq!(r["decision"], "deny", "{r:#}");

    let n = Net::start(Prof {
        network: "allow_ech = true\n",
        ..Prof::default()
    });
    let out = hellos_through_connect(&n);
    out.expect_code(0);
    for line in out.stdout.lines() {
        assert!(line.ends_with(" 15"), "{}", out.stdout);
    }
}

/// An origin on port 443 of `ON_443[i]`'s address, then a CONNECT to its
/// name on 443 and a plain HTTP request through the tunnel; prints the CONNECT
/// status line and whatever came back.
fn plain_through_443(n: &Net, i: usize) -> (Origin, Out) {
    let (name, addr) = ON_443[i];
    let origin = Origin::http_at(&format!("{addr}:443"));
    let code = r#"
s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
s.sendall(b'CONNECT NAME:443 HTTP/1.1\r\nHost: NAME:443\r\n\r\n')
print(read_response(s).split('\r\n')[0])
try:
    s.sendall(b'GET /plain-on-443 HTTP/1.1\r\nHost: NAME\r\nConnection: close\r\n\r\n')
    print('GOT', read_response(s).split('\r\n')[0])
except OSError as e:
    print('FAILED', e)
"#
    .replace("NAME", name);
    let out = n.py(&code);
    (origin, out)
}

#[test]
fn plain_http_through_a_tunnel_to_443_is_refused() {
    let n = Net::start(Prof::default());
    let (origin, out) = plain_through_443(&n, 0);
    out.expect_code(0);
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{}", out.stdout);
    assert!(!out.stdout.contains("GOT HTTP/1.1 200"), "{}", out.stdout);
    assert!(
        origin.request("/plain-on-443").is_none(),
        "{:?}",
        origin.requests()
    );
    n.refusal(ON_443[0].0, "blocked-by-not-tls");
}

#[test]
fn plain_http_through_a_tunnel_to_443_passes_when_the_profile_allows_it() {
    let n = Net::start(Prof {
        network: "allow_non_tls_443 = true\n",
        ..Prof::default()
    });
    let (origin, out) = plain_through_443(&n, 1);
    out.expect_code(0);
    assert!(out.stdout.contains("GOT HTTP/1.1 200"), "{}", out.stdout);
    assert!(origin.request("/plain-on-443").is_some());
}

#[test]
fn a_name_resolving_to_loopback_is_refused_without_allow_cidrs() {
    let n = Net::start(Prof {
        loopback: false,
        ..Prof::default()
    });
    let (p, t) = (n.origin.port, n.tls.port);
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://allowed.test:{p}/private"
    ));
    assert_refused(&out, "blocked-by-private-address");
    n.refusal("allowed.test", "blocked-by-private-address");
    // Through the upstream resolver as well, and over CONNECT.
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://mirror.pkg.test:{p}/private-upstream"
    ));
    assert_refused(&out, "blocked-by-private-address");
    n.refusal("mirror.pkg.test", "blocked-by-private-address");
    let out = n.sh(&format!(
        "curl -sS -v --max-time 20 --cacert {} https://allowed.test:{t}/private-tls",
        n.ca()
    ));
    assert_ne!(out.code, 0);
    assert_refused(&out, "blocked-by-private-address");
    assert_eq!((n.origin.connections(), n.tls.connections()), (0, 0));
}

#[test]
fn post_is_refused_under_a_get_only_profile() {
    let n = Net::start(Prof {
        network: "methods = [\"GET\", \"HEAD\"]\n",
        ..Prof::default()
    });
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS --max-time 20 http://allowed.test:{p}/get; curl -sS -i --max-time 20 -d data http://allowed.test:{p}/post"
    ));
    assert!(
        out.stdout.starts_with("origin saw /get\n"),
        "{}",
        out.stdout
    );
    assert_refused(&out, "blocked-by-method");
    let r = n.refusal("allowed.test", "blocked-by-method");
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("POST"), Some("/post")),
        "{r:#}"
    );
    assert!(n.origin.request("/get").is_some());
    assert!(
        n.origin.request("/post").is_none(),
        "{:?}",
        n.origin.requests()
    );
}

#[test]
fn post_is_refused_under_a_get_only_inspected_profile() {
    let n = Net::start_with(
        Prof {
            network: "methods = [\"GET\", \"HEAD\"]\ninspect = true\n",
            ..Prof::default()
        },
        "[tls]\nextra_roots = [\"{ca}\"]\n",
    );
    let t = n.tls.port;
    let out = n.sh(&format!(
        "curl -sS --max-time 20 https://allowed.test:{t}/get-tls; curl -sS -i --max-time 20 -d data https://allowed.test:{t}/post-tls"
    ));
    assert!(
        out.stdout.starts_with("origin saw /get-tls\n"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_refused(&out, "blocked-by-method");
    let r = n.refusal("allowed.test", "blocked-by-method");
    assert_eq!(r["protocol"], "https", "{r:#}");
    assert_eq!(
        (r["method"].as_str(), r["path"].as_str()),
        (Some("POST"), Some("/post-tls")),
        "{r:#}"
    );
    assert!(n.tls.request("/get-tls").is_some());
    assert!(
        n.tls.request("/post-tls").is_none(),
        "{:?}",
        n.tls.requests()
    );
}

#[test]
fn dns_answers_allowed_names_only_and_asks_upstream_nothing_else() {
    let n = Net::start(Prof::default());
    let exfil = format!("{}.{}.exfil.test", random_label(60), random_label(40));
    let out = n.py(&format!(
        r#"
for name, qtype, tcp in [('allowed.test', 1, False), ('mirror.pkg.test', 1, False), ('tcp.pkg.test', 1, True),
                         ('nowhere.test', 1, False), ('hidden.pkg.test', 1, False), ('{exfil}', 1, False),
                         ('{exfil}', 1, True), ('evil.test', 1, False), ('txt.pkg.test', 16, False)]:
    print(name, qtype, *dns(name, qtype, tcp))
"#
    ));
    out.expect_code(0);
    let got: Vec<(String, u16, u8, u16)> = out
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    let by = |name: &str| {
        got.iter()
            .find(|g| g.0 == name)
            .unwrap_or_else(|| panic!("{}", out.stdout))
    };
    for name in ["allowed.test", "mirror.pkg.test", "tcp.pkg.test"] {
        let g = by(name);
        assert_eq!((g.2, g.3), (0, 1), "{name}: {}", out.stdout);
    }
    for name in [
        "nowhere.test",
        "hidden.pkg.test",
        exfil.as_str(),
        "evil.test",
    ] {
        assert_eq!(by(name).2, 3, "{name} is not NXDOMAIN: {}", out.stdout);
    }
    assert_eq!(by("txt.pkg.test").3, 0, "{}", out.stdout);
    // The upstream was asked for the allowed names, and for nothing else.
    assert!(
        n.up.saw("mirror.pkg.test") && n.up.saw("tcp.pkg.test"),
        "{:?}",
        n.up.queries()
    );
    for name in [
        "nowhere.test",
        "hidden.pkg.test",
        "exfil.test",
        "evil.test",
        "txt.pkg.test",
    ] {
        assert!(
            !n.up.saw(name),
            "upstream was asked about {name}: {:?}",
            n.up.queries()
        );
    }
    assert!(
        n.up.queries().iter().all(|q| q.1 != 16),
        "{:?}",
        n.up.queries()
    );
    let r = n.decision("dns nowhere.test", |r| {
        r["protocol"] == "dns" && same_host(r, "nowhere.test")
    });
    assert_eq!(r["decision"], "deny", "{r:#}");
    let r = n.decision("dns hidden.pkg.test", |r| {
        r["protocol"] == "dns" && same_host(r, "hidden.pkg.test")
    });
    assert_eq!(r["reason"], "blocked-by-denylist", "{r:#}");
    n.decision("dns exfil", |r| {
        r["protocol"] == "dns" && same_host(r, &exfil) && r["decision"] == "deny"
    });
    n.decision("dns mirror.pkg.test", |r| {
        r["protocol"] == "dns" && same_host(r, "mirror.pkg.test") && r["decision"] == "allow"
    });
}

#[test]
fn a_raw_tcp_connect_bypassing_the_proxy_fails() {
    let n = Net::start(Prof::default());
    // Something on every host address, to see a connection that got out.
    let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    any.set_nonblocking(true).unwrap();
    let host_ips: Vec<String> = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter(|a| !a.contains(':'))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut targets = vec![
        ("127.0.0.1".to_string(), n.origin.port),
        ("127.0.0.1".to_string(), any.local_addr().unwrap().port()),
    ];
    targets.extend(
        host_ips
            .iter()
            .map(|ip| (ip.clone(), any.local_addr().unwrap().port())),
    );
    let list: Vec<String> = targets
        .iter()
        .map(|(h, p)| format!("('{h}', {p})"))
        .collect();
    let out = n.py(&format!(
        r#"
import errno
for addr in [{}, ('127.0.0.1', 3128)]:
    try:
        socket.create_connection(addr, timeout=5).close()
        print(addr[0], addr[1], 'connected')
    except OSError as e:
        print(addr[0], addr[1], errno.errorcode.get(e.errno, e.errno))
"#,
        list.join(", ")
    ));
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), targets.len() + 1, "{}", out.stdout);
    // Landlock refuses the connect itself on loopback ports other than the proxies'.
    assert!(
        lines[0].ends_with(" EACCES") || lines[0].ends_with(" EPERM"),
        "{}",
        out.stdout
    );
    for l in &lines[..targets.len()] {
        assert!(!l.ends_with("connected"), "{}", out.stdout);
    }
    assert!(
        lines[targets.len()].ends_with("connected"),
        "the proxy port is not reachable: {}",
        out.stdout
    );
    assert_eq!(n.origin.connections(), 0);
    assert!(any.accept().is_err(), "a connection reached the host");
}

// ------------------------------------------------------ injection, approval

/// A daemon whose `[secrets]` holds CFG_CRED (a fresh value, in a root-owned
/// 0600 file) for `user`, injected into requests to allowed.test; the value.
fn with_config_secret(user: &str) -> (Net, String, Dir) {
    use std::os::unix::fs::PermissionsExt;
    let secret = format!("cfg-{}", random_label(24));
    let sdir = Dir::new(0);
    let file = sdir.write("cred", &format!("{secret}\n"), 0);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let n = Net::start_with(
        Prof {
            tail: "[[network.rule]]\nhost = \"allowed.test\"\ninject = { header = \"Authorization\", value = \"Bearer {secret:CFG_CRED}\" }\n",
            ..Prof::default()
        },
        &format!("[secrets]\nCFG_CRED = {{ file = \"{}\", users = [\"{user}\"] }}\n", file.display()),
    );
    (n, secret, sdir)
}

#[test]
fn a_config_secret_is_injected_for_its_host_and_never_visible_inside() {
    let (n, secret, _sdir) = with_config_secret(&U1.to_string());
    let p = n.origin.port;
    let out = n.sh(&format!(
        "env; cat /proc/self/environ; curl -sS --max-time 20 http://allowed.test:{p}/inject; \
         curl -sS --max-time 20 http://other.test:{p}/not-injected"
    ));
    out.expect_code(0);
    assert!(
        out.stdout.contains("origin saw /inject")
            && out.stdout.contains("origin saw /not-injected"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&secret) && !out.stderr.contains(&secret),
        "secret visible inside"
    );
    let r = n.origin.request("/inject").unwrap();
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {secret}").as_str()),
        "{r:?}"
    );
    let r = n.origin.request("/not-injected").unwrap();
    assert_eq!(r.header("authorization"), None, "{r:?}");
    assert!(
        !std::fs::read_to_string(n.d.state_dir.join("audit.jsonl"))
            .unwrap()
            .contains(&secret),
        "secret in the audit log"
    );
}

#[test]
fn a_config_secret_goes_only_to_the_users_it_lists() {
    // The secret is uid 1001's; uid 1000 runs the request that would carry it.
    let (n, secret, _sdir) = with_config_secret("1001");
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 20 http://allowed.test:{p}/not-yours"
    ));
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        statuses(&all).contains(&403),
        "refused, not sent without its header:\n{all}"
    );
    assert!(
        all.contains("CFG_CRED"),
        "the refusal names the secret:\n{all}"
    );
    assert!(!all.contains(&secret));
    assert!(
        n.origin.request("/not-yours").is_none(),
        "{:?}",
        n.origin.requests()
    );
}

#[test]
fn rule_paths_limit_what_an_allowed_host_may_be_asked() {
    let n = Net::start(Prof {
        tail: "[[network.rule]]\nhost = \"allowed.test\"\npaths = [\"/pkg/**\"]\n",
        ..Prof::default()
    });
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS --max-time 20 http://allowed.test:{p}/pkg/a/b; curl -sS -i --max-time 20 http://allowed.test:{p}/admin"
    ));
    assert!(
        out.stdout.starts_with("origin saw /pkg/a/b\n"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_refused(&out, "blocked-by-allowlist");
    let r = n.refusal("allowed.test", "blocked-by-allowlist");
    assert_eq!(r["path"].as_str(), Some("/admin"), "{r:#}");
    assert!(
        r["rule"]
            .as_str()
            .unwrap_or_default()
            .contains("network.rule"),
        "{r:#}"
    );
    assert!(
        n.origin.request("/admin").is_none(),
        "{:?}",
        n.origin.requests()
    );
}

#[test]
fn a_callers_secret_is_injected_and_never_visible_inside() {
    let secret = format!("caller-{}", random_label(24));
    let n = Net::start(Prof {
        tail: "[[network.rule]]\nhost = \"allowed.test\"\ninject = { header = \"X-Caller-Cred\", value = \"v1 {secret:CALLER_CRED}\" }\n",
        ..Prof::default()
    });
    let p = n.origin.port;
    let script = format!(
        "env; curl -sS --max-time 20 http://allowed.test:{p}/caller-inject; curl -sS --max-time 20 http://other.test:{p}/caller-other"
    );
    let out = n.d.agent(U1, &n.ws.path).env("CALLER_CRED", &secret).run(&[
        "exec",
        "--profile",
        "net",
        "--secret",
        "CALLER_CRED",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("origin saw /caller-inject"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&secret) && !out.stdout.contains("CALLER_CRED"),
        "secret visible inside:\n{}",
        out.stdout
    );
    let r = n.origin.request("/caller-inject").unwrap();
    assert_eq!(
        r.header("x-caller-cred"),
        Some(format!("v1 {secret}").as_str()),
        "{r:?}"
    );
    assert_eq!(
        n.origin
            .request("/caller-other")
            .unwrap()
            .header("x-caller-cred"),
        None
    );
}

/// An approver script answering `word`, logging each request it gets to `log`.
fn approver(ws: &Dir, word: &str) -> (PathBuf, PathBuf) {
    let log = ws.join(&format!("approver-{word}.log"));
    let script = ws.write(
        &format!("approver-{word}.sh"),
        &format!(
            "#!/bin/sh\n{{ cat; echo; }} >> {}\necho {word}\n",
            log.display()
        ),
        U1,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

/// The JSON requests an approver logged.
fn approver_requests(log: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("approver got {l:?}: {e}")))
        .collect()
}

#[test]
fn an_unlisted_name_approved_through_the_approver_goes_through() {
    let n = Net::start(Prof {
        approval: "on-request",
        ..Prof::default()
    });
    let p = n.origin.port;
    let (out, log) = n.sh_asking(
        "approve",
        &format!("curl -sS -i --max-time 30 http://ask.test:{p}/asked"),
    );
    out.expect_code(0);
    assert_eq!(
        statuses(&out.stdout),
        [200],
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(n.origin.request("/asked").is_some());
    let reqs = approver_requests(&log);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0]["kind"].as_str(), reqs[0]["host"].as_str()),
        (Some("network"), Some("ask.test")),
        "{reqs:?}"
    );
    assert_eq!(reqs[0]["port"], p, "{reqs:?}");
    n.decision("approved ask.test", |r| {
        same_host(r, "ask.test") && r["decision"] == "allow"
    });
}

#[test]
fn an_approval_for_the_session_is_asked_once() {
    let n = Net::start(Prof {
        approval: "on-request",
        ..Prof::default()
    });
    let p = n.origin.port;
    let (out, log) = n.sh_asking(
        "approve-session",
        &format!("curl -sS --max-time 30 http://ask.test:{p}/once && curl -sS --max-time 30 http://ask.test:{p}/again"),
    );
    out.expect_code(0);
    assert!(
        n.origin.request("/once").is_some() && n.origin.request("/again").is_some(),
        "{}",
        out.stderr
    );
    assert_eq!(approver_requests(&log).len(), 1);
}

#[test]
fn without_an_approver_or_a_terminal_an_unlisted_name_is_refused() {
    let n = Net::start(Prof {
        approval: "on-request",
        ..Prof::default()
    });
    let p = n.origin.port;
    let out = n.sh(&format!(
        "curl -sS -i --max-time 30 http://ask.test:{p}/unanswered"
    ));
    assert_refused(&out, "blocked-by-approval");
    n.refusal("ask.test", "blocked-by-approval");
    assert_eq!(n.origin.connections(), 0);
}

#[test]
fn an_unlisted_name_denied_through_the_approver_is_refused() {
    let n = Net::start(Prof {
        approval: "on-request",
        ..Prof::default()
    });
    let p = n.origin.port;
    let (out, log) = n.sh_asking(
        "deny",
        &format!("curl -sS -i --max-time 30 http://ask.test:{p}/refused"),
    );
    assert_refused(&out, "blocked-by-approval");
    assert_eq!(approver_requests(&log).len(), 1);
    n.refusal("ask.test", "blocked-by-approval");
    assert_eq!(n.origin.connections(), 0);
}

// ------------------------------------------------------- the other modes

#[test]
fn mode_full_shares_the_host_network() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let origin = Origin::http();
    let url = format!("http://127.0.0.1:{}/full", origin.port);
    let out = d.sh(
        U1,
        &ws.path,
        &["--profile", "full"],
        &format!("echo \"[$HTTP_PROXY]\"; curl -sS --max-time 20 {url}"),
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "[]\norigin saw /full\n");
    assert!(origin.request("/full").is_some());
}

#[test]
fn mode_none_reaches_nothing_and_serves_no_proxy() {
    let d = Daemon::start();
    let ws = Dir::new(U1);
    let origin = Origin::http();
    let code = format!(
        "import socket\nfor port in ({}, 3128, 1080, 53):\n    try:\n        socket.create_connection(('127.0.0.1', port), timeout=5)\n        print(port, 'connected')\n    except OSError as e:\n        print(port, 'failed')",
        origin.port
    );
    let out = py(&d, U1, &ws.path, &code);
    out.expect_code(0);
    assert!(!out.stdout.contains("connected"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert_eq!(origin.connections(), 0);
}

#[test]
fn policy_check_explains_a_url_without_connecting() {
    let n = Net::start(Prof::default());
    let p = n.origin.port;
    let check = |url: &str| {
        n.d.agent(U1, &n.ws.path)
            .run(&["policy", "check", "net", "--url", url])
    };
    let out = check(&format!("http://allowed.test:{p}/x"));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("allow") && out.stdout.contains("network.allow"),
        "{}",
        out.stdout
    );
    let out = check(&format!("http://denied.pkg.test:{p}/x"));
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("network.deny"), "{}", out.stdout);
    let out = check(&format!("https://nowhere.test:{}/x", n.tls.port));
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert_eq!((n.origin.connections(), n.tls.connections()), (0, 0));
    assert!(n.up.queries().is_empty(), "{:?}", n.up.queries());
}
