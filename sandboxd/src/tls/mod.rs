//! HTTPS inspection: a CA sandboxd generates and keeps (key 0600 in the state
//! dir, never inside a sandbox), leaf certificates per host signed by it
//! (cached), and the client side that verifies upstream servers against the
//! system roots plus `[tls] extra_roots`.

mod ca;
mod der;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The system's trusted roots (Debian's ca-certificates bundle).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How long a leaf certificate is valid, and when a cached one is replaced.
const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 24 * 3600);
const LEAF_RENEW_AFTER: Duration = Duration::from_secs(24 * 3600);
/// At most this many leaves are kept; the oldest goes first.
const MAX_CACHED_LEAVES: usize = 1024;

const ALPN_HTTP1: &[u8] = b"http/1.1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate for {host}: {message}")]
    Leaf { host: String, message: String },
}

/// The daemon's CA and the TLS configurations built from it.
pub struct Inspector {
    ca: ca::Ca,
    bundle: PathBuf,
    provider: Arc<CryptoProvider>,
    client: Arc<rustls::ClientConfig>,
    leaves: Mutex<HashMap<String, Leaf>>,
}

/// A cached server configuration for one host.
struct Leaf {
    config: Arc<rustls::ServerConfig>,
    issued: SystemTime,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    /// Loads the CA from `state_dir/ca/` or creates it there; reads the system
    /// roots and `extra_roots` for upstream verification; writes the bundle
    /// sandboxes get (the system roots plus this CA).
    pub fn load_or_create(
        state_dir: &Path,
        extra_roots: &[PathBuf],
    ) -> Result<Inspector, TlsError> {
        let dir = state_dir.join("ca");
        let ca = ca::load_or_create(&dir)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let system_pem =
            std::fs::read(SYSTEM_ROOTS).map_err(|e| file_err(Path::new(SYSTEM_ROOTS), e))?;
        let mut roots = rustls::RootCertStore::empty();
        let system: Vec<_> = CertificateDer::pem_slice_iter(&system_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(Path::new(SYSTEM_ROOTS), format!("not a PEM bundle: {e}")))?;
        // A distribution bundle may hold a root webpki cannot use; the others still count.
        roots.add_parsable_certificates(system);
        for path in extra_roots {
            add_extra_root(&mut roots, path)?;
        }
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| file_err(&dir, format!("TLS client configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN_HTTP1.to_vec()];

        let bundle = dir.join("bundle.pem");
        let mut contents = system_pem;
        if !contents.ends_with(b"\n") {
            contents.push(b'\n');
        }
        contents.extend_from_slice(ca.cert_pem.as_bytes());
        ca::write_atomic(&bundle, &contents, 0o644)?;

        Ok(Inspector {
            ca,
            bundle,
            provider,
            client: Arc::new(client),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The PEM bundle (system roots and this CA) mounted into inspected sandboxes.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// The CA certificate (PEM) that signs the leaves.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The server side towards the sandbox for `host` (a leaf signed by the CA, cached).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let name = leaf_name(host)?;
        let now = SystemTime::now();
        let lock = || {
            self.leaves
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(leaf) = lock().get(&name) {
            if now
                .duration_since(leaf.issued)
                .is_ok_and(|age| age < LEAF_RENEW_AFTER)
            {
                return Ok(leaf.config.clone());
            }
        }
        // Signed without the lock: other sandboxes' connections do not wait
        // for this one's key generation.
        let config = self.issue(&name)?;
        let mut leaves = lock();
        if leaves.len() >= MAX_CACHED_LEAVES && !leaves.contains_key(&name) {
            if let Some(oldest) = leaves
                .iter()
                .min_by_key(|(_, l)| l.issued)
                .map(|(k, _)| k.clone())
            {
                leaves.remove(&oldest);
            }
        }
        leaves.insert(
            name,
            Leaf {
                config: config.clone(),
                issued: now,
            },
        );
        Ok(config)
    }

    /// The client side towards upstream servers (ALPN http/1.1).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// Signs a fresh leaf for `name` (DNS or IP SAN) and builds its server side.
    fn issue(&self, name: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let leaf_err = |message: String| TlsError::Leaf {
            host: name.to_owned(),
            message,
        };
        let mut params = CertificateParams::new(vec![name.to_owned()])
            .map_err(|e| leaf_err(format!("subject name: {e}")))?;
        let mut dn = DistinguishedName::new();
        // X.509 bounds a common name at 64 characters; the SAN is what clients check.
        if name.len() <= 64 {
            dn.push(DnType::CommonName, name);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| leaf_err(format!("generating the key: {e}")))?;
        let cert = params
            .signed_by(&key, &self.ca.issuer)
            .map_err(|e| leaf_err(format!("signing: {e}")))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| leaf_err(format!("TLS server configuration: {e}")))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .map_err(|e| leaf_err(format!("TLS server configuration: {e}")))?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Checks that every `[tls] extra_roots` file holds usable roots (what
/// [`Inspector::load_or_create`] needs of them), without touching a CA.
pub fn check_extra_roots(extra_roots: &[PathBuf]) -> Result<(), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    extra_roots
        .iter()
        .try_for_each(|path| add_extra_root(&mut roots, path))
}

/// Adds every certificate of one `[tls] extra_roots` file; a missing file, a
/// file without certificates or a certificate webpki cannot use is an error
/// naming the file (a root the admin asked for must not silently vanish).
fn add_extra_root(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| file_err(path, format!("not a usable root certificate: {e}")))?;
    }
    Ok(())
}

/// The name a leaf is issued for: lower case, no trailing dot, IPv6 without
/// brackets; anything that is neither an address nor a DNS name is refused.
fn leaf_name(host: &str) -> Result<String, TlsError> {
    let refuse = |message: &str| TlsError::Leaf {
        host: host.to_owned(),
        message: message.to_owned(),
    };
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = trimmed.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(refuse("not a DNS name or IP address"));
    }
    Ok(name)
}

/// Valid from an hour ago (clock skew) for `valid_for` from now.
fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + valid_for;
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
