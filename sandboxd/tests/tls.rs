//! The inspection CA on real files and real TLS handshakes over loopback TCP:
//! the CA is created private and reused, a client trusting only the sandbox
//! bundle accepts the leaves (and only for their host), the upstream side
//! trusts `extra_roots` and nothing unknown, and a readable key is refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sandboxd::tls::{Inspector, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").mode() & 0o7777
}

/// Serves one TLS connection on loopback with `config`, echoing one line.
async fn serve_once(config: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let mut buf = [0u8; 5];
            if tls.read_exact(&mut buf).await.is_ok() {
                let _ = tls.write_all(&buf).await;
                let _ = tls.shutdown().await;
            }
        }
    });
    addr
}

/// Connects to `addr` as `name` and does one round trip; the server's leaf
/// and the ALPN protocol on success.
async fn connect(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    name: &str,
) -> std::io::Result<(CertificateDer<'static>, Option<Vec<u8>>)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"hello");
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().expect("peer certificates")[0].clone();
    Ok((leaf, session.alpn_protocol().map(<[u8]>::to_vec)))
}

/// A client that trusts exactly the certificates in `bundle`, as a program
/// inside an inspected sandbox does with SSL_CERT_FILE.
fn client_trusting(bundle: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(bundle)
        .expect("bundle")
        .collect::<Result<Vec<_>, _>>()
        .expect("bundle PEM");
    let (added, _) = roots.add_parsable_certificates(certs);
    assert!(added > 1, "the bundle holds the system roots and the CA");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A CA of the test's own and a server configuration for `host` signed by it.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn server(&self, host: &str) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![host.to_owned()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn ca_is_created_private_and_reused_on_the_next_load() {
    let state = tempfile::tempdir().expect("tempdir");
    let first = Inspector::load_or_create(state.path(), &[]).expect("first load");
    let dir = state.path().join("ca");
    let key = dir.join("ca.key");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::metadata(&key).expect("stat").uid(), 0);
    assert_eq!(first.bundle_path(), dir.join("bundle.pem"));
    assert_eq!(mode(first.bundle_path()), 0o644);
    let bundle = std::fs::read_to_string(first.bundle_path()).expect("bundle");
    let system = std::fs::read_to_string(sandboxd::tls::SYSTEM_ROOTS).expect("system roots");
    assert!(
        bundle.starts_with(&system),
        "bundle begins with the system roots"
    );
    assert!(bundle.ends_with(first.ca_pem()), "bundle ends with the CA");
    let hostname = nix::unistd::gethostname().expect("hostname");
    let ca_cert = CertificateDer::from_pem_slice(first.ca_pem().as_bytes()).expect("CA PEM");
    let cn = format!("sandboxd inspection CA ({})", hostname.to_string_lossy());
    assert!(
        contains(&ca_cert, cn.as_bytes()),
        "CA subject names the host"
    );

    let key_before = std::fs::read(&key).expect("key");
    let second = Inspector::load_or_create(state.path(), &[]).expect("second load");
    assert_eq!(std::fs::read(&key).expect("key"), key_before, "key reused");
    assert_eq!(second.ca_pem(), first.ca_pem(), "certificate reused");
    drop(first);
    // Leaves from the reloaded CA chain to the certificate written by the first load.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let addr = serve_once(second.server_config("allowed.test").expect("leaf")).await;
        connect(
            client_trusting(&dir.join("bundle.pem")),
            addr,
            "allowed.test",
        )
        .await
        .expect("handshake with a leaf from the reloaded CA");
    });
}

#[tokio::test]
async fn client_trusting_the_bundle_accepts_the_leaf_for_its_host() {
    let state = tempfile::tempdir().expect("tempdir");
    let inspector = Inspector::load_or_create(state.path(), &[]).expect("load");
    let config = inspector.server_config("allowed.test").expect("leaf");
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(
        Arc::ptr_eq(
            &config,
            &inspector.server_config("ALLOWED.test.").expect("leaf")
        ),
        "the leaf is cached per normalised host"
    );
    let addr = serve_once(config).await;
    let (leaf, alpn) = connect(
        client_trusting(inspector.bundle_path()),
        addr,
        "allowed.test",
    )
    .await
    .expect("handshake");
    assert!(contains(&leaf, b"allowed.test"), "leaf carries the host");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    // An address gets an IP SAN.
    let addr = serve_once(inspector.server_config("127.0.0.1").expect("leaf")).await;
    connect(client_trusting(inspector.bundle_path()), addr, "127.0.0.1")
        .await
        .expect("handshake by address");
}

#[tokio::test]
async fn leaf_for_one_host_is_refused_for_another_name() {
    let state = tempfile::tempdir().expect("tempdir");
    let inspector = Inspector::load_or_create(state.path(), &[]).expect("load");
    let addr = serve_once(inspector.server_config("allowed.test").expect("leaf")).await;
    let err = connect(client_trusting(inspector.bundle_path()), addr, "other.test")
        .await
        .expect_err("a leaf for allowed.test must not pass for other.test");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn a_host_that_is_no_name_gets_no_leaf() {
    let state = tempfile::tempdir().expect("tempdir");
    let inspector = Inspector::load_or_create(state.path(), &[]).expect("load");
    for host in ["", "a b.test", "evil.test/x", "a..test"] {
        assert!(
            matches!(inspector.server_config(host), Err(TlsError::Leaf { .. })),
            "{host:?}"
        );
    }
}

#[tokio::test]
async fn upstream_side_trusts_extra_roots_and_refuses_unknown_cas() {
    let state = tempfile::tempdir().expect("tempdir");
    let corp = TestCa::new("corp test CA");
    let corp_pem = corp.write(state.path(), "corp-ca.pem");
    let inspector = Inspector::load_or_create(state.path(), &[corp_pem]).expect("load");

    let addr = serve_once(corp.server("upstream.test")).await;
    let (_, alpn) = connect(inspector.client_config(), addr, "upstream.test")
        .await
        .expect("a server signed by an extra root is verified");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    let stranger = TestCa::new("unknown test CA");
    let addr = serve_once(stranger.server("upstream.test")).await;
    let err = connect(inspector.client_config(), addr, "upstream.test")
        .await
        .expect_err("a server signed by an unknown CA must be refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // Without the extra root, the corp server is unknown too.
    let plain = Inspector::load_or_create(state.path(), &[]).expect("load");
    let addr = serve_once(corp.server("upstream.test")).await;
    connect(plain.client_config(), addr, "upstream.test")
        .await
        .expect_err("extra_roots is what makes the corp CA trusted");
}

#[test]
fn missing_or_unparsable_extra_root_is_an_error_naming_the_file() {
    let state = tempfile::tempdir().expect("tempdir");
    let missing = state.path().join("missing.pem");
    let garbage = state.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let broken = state.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for path in [missing, garbage, broken] {
        let err = Inspector::load_or_create(state.path(), std::slice::from_ref(&path))
            .expect_err("a bad extra root is refused");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_key_others_can_read_or_root_does_not_own_is_refused() {
    let state = tempfile::tempdir().expect("tempdir");
    Inspector::load_or_create(state.path(), &[]).expect("create");
    let key = state.path().join("ca").join("ca.key");
    let key_text = key.display().to_string();

    for loose in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).expect("chmod");
        let err = Inspector::load_or_create(state.path(), &[]).expect_err("readable key refused");
        assert!(err.to_string().contains(&key_text), "{err}");
    }

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(&key, Some(1000), None).expect("chown");
    let err = Inspector::load_or_create(state.path(), &[]).expect_err("key not root's refused");
    assert!(
        err.to_string().contains(&key_text) && err.to_string().contains("root"),
        "{err}"
    );

    std::os::unix::fs::chown(&key, Some(0), None).expect("chown");
    Inspector::load_or_create(state.path(), &[]).expect("a private root key is used again");
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let state = tempfile::tempdir().expect("tempdir");
    Inspector::load_or_create(state.path(), &[]).expect("create");
    let cert = state.path().join("ca").join("ca.pem");
    std::fs::write(&cert, TestCa::new("someone else").pem).expect("replace cert");
    let err = Inspector::load_or_create(state.path(), &[]).expect_err("mismatched CA refused");
    assert!(
        err.to_string().contains(&cert.display().to_string()),
        "{err}"
    );
}
