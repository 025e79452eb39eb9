//! The inspection CA on disk: `state_dir/ca/ca.key` (0600, root's) and
//! `state_dir/ca/ca.pem`, created once and reused across restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};

use super::{der, file_err, set_validity, TlsError};

/// How long the CA certificate is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The loaded CA: what signs leaves, and its certificate as sandboxes see it.
pub(super) struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// Loads the CA from `dir` (creating the directory, the key and the
/// certificate as needed). A key that others could read, or that root does
/// not own, is refused rather than used.
pub(super) fn load_or_create(dir: &Path) -> Result<Ca, TlsError> {
    ensure_dir(dir)?;
    let key_path = dir.join("ca.key");
    let cert_path = dir.join("ca.pem");
    let key = match read_private(&key_path)? {
        Some(pem) => KeyPair::from_pem(&pem)
            .map_err(|e| file_err(&key_path, format!("not a usable private key: {e}")))?,
        None => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| file_err(&key_path, format!("generating the CA key: {e}")))?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            // A certificate left from an earlier key would not match this one.
            remove_if_exists(&cert_path)?;
            key
        }
    };
    let (common_name, cert_pem) = match fs::read_to_string(&cert_path) {
        Ok(pem) => (common_name_of(&cert_path, &pem, &key)?, pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cn = format!("sandboxd inspection CA ({})", hostname());
            let cert = ca_params(&cn)
                .self_signed(&key)
                .map_err(|e| file_err(&cert_path, format!("signing the CA certificate: {e}")))?;
            let pem = cert.pem();
            write_atomic(&cert_path, pem.as_bytes(), 0o644)?;
            (cn, pem)
        }
        Err(e) => return Err(file_err(&cert_path, e)),
    };
    Ok(Ca {
        issuer: Issuer::new(ca_params(&common_name), key),
        cert_pem,
    })
}

/// The CA certificate's parameters; the subject is all a leaf's issuer field
/// needs, so the same `common_name` rebuilds the issuer of a stored CA.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    params
}

/// The subject common name of the stored CA certificate, after checking that
/// it certifies `key` (a certificate from another key would sign nothing
/// clients accept).
fn common_name_of(path: &Path, pem: &str, key: &KeyPair) -> Result<String, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| file_err(path, format!("not a PEM certificate: {e}")))?;
    let fields = der::subject_and_key(&cert)
        .ok_or_else(|| file_err(path, "not a parsable X.509 certificate"))?;
    if fields.spki != key.subject_public_key_info().as_slice() {
        return Err(file_err(path, "does not certify the key in ca.key"));
    }
    fields
        .common_name
        .ok_or_else(|| file_err(path, "subject has no common name"))
}

/// Creates `dir` 0700, or checks that an existing one is root's and writable
/// by nobody else (whoever could write there could swap the key).
fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(file_err(dir, format!("creating: {e}"))),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| file_err(dir, e))?;
    if !meta.is_dir() {
        return Err(file_err(dir, "not a directory"));
    }
    if meta.uid() != 0 {
        return Err(file_err(
            dir,
            format!("owned by uid {}, not root", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(file_err(
            dir,
            format!("mode {:o} lets others write", meta.mode() & 0o7777),
        ));
    }
    Ok(())
}

/// Reads the key file when it exists, refusing one that is not root's, that
/// group or others may access, or that is not a regular file (no symlinks).
fn read_private(path: &Path) -> Result<Option<String>, TlsError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(path, e)),
    };
    let meta = file.metadata().map_err(|e| file_err(path, e))?;
    if !meta.is_file() {
        return Err(file_err(path, "not a regular file"));
    }
    if meta.uid() != 0 {
        return Err(file_err(
            path,
            format!(
                "owned by uid {}, not root; refusing to use this CA key",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(file_err(
            path,
            format!(
                "mode {:o} gives group or others access; refusing to use this CA key (chmod 600)",
                meta.mode() & 0o7777
            ),
        ));
    }
    let mut pem = String::new();
    file.read_to_string(&mut pem)
        .map_err(|e| file_err(path, e))?;
    Ok(Some(pem))
}

/// Writes `path` whole or not at all: a temporary file with `mode`, synced,
/// then renamed over it.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    remove_if_exists(&tmp)?;
    let result = (|| {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; the bundle must stay readable.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_err(path, format!("writing: {e}"))
    })
}

fn remove_if_exists(path: &Path) -> Result<(), TlsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_err(path, format!("removing: {e}"))),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
