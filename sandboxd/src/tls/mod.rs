//! HTTPS inspection: a CA sandboxd generates and keeps (key 0600 in the state
//! dir, never inside a sandbox), leaf certificates per host signed by it
//! (cached), and the client side that verifies upstream servers against the
//! system roots plus `[tls] extra_roots`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate for {host}: {message}")]
    Leaf { host: String, message: String },
}

/// The daemon's CA and the TLS configurations built from it.
#[derive(Debug)]
pub struct Inspector {}

impl Inspector {
    /// Loads the CA from `state_dir/ca/` or creates it there; reads the system
    /// roots and `extra_roots` for upstream verification; writes the bundle
    /// sandboxes get (the system roots plus this CA).
    pub fn load_or_create(state_dir: &Path, extra_roots: &[PathBuf]) -> Result<Inspector, TlsError> {
        let _ = (state_dir, extra_roots);
        todo!()
    }

    /// The PEM bundle (system roots and this CA) mounted into inspected sandboxes.
    pub fn bundle_path(&self) -> &Path {
        todo!()
    }

    /// The server side towards the sandbox for `host` (a leaf signed by the CA, cached).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let _ = host;
        todo!()
    }

    /// The client side towards upstream servers (ALPN http/1.1).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        todo!()
    }
}
