//! Finding and connecting to the daemon's Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use sandbox_proto::v1::sandbox_client::SandboxClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Socket used when neither a flag nor `$SANDBOXD_SOCKET` names one.
pub const DEFAULT_SOCKET: &str = "/run/sandboxd/sandboxd.sock";
/// Environment variable overriding [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "SANDBOXD_SOCKET";

/// A connected gRPC client of the `sandbox.v1.Sandbox` service.
pub type Client = SandboxClient<Channel>;

/// The daemon could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to sandboxd at {}: {reason}", path.display())]
pub struct ConnectError {
    /// The socket that was tried.
    pub path: PathBuf,
    /// The underlying failure, with its causes.
    pub reason: String,
}

/// The socket to use: `flag` when given, else `$SANDBOXD_SOCKET` when set and
/// non-empty, else [`DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// Connects to the daemon listening on the Unix socket `path`.
///
/// The connection is made eagerly, so a missing socket or a refused
/// connection is reported here rather than on the first call.
pub async fn connect(path: &Path) -> Result<Client, ConnectError> {
    let fail = |e: &dyn std::error::Error| ConnectError {
        path: path.to_path_buf(),
        reason: chain(e),
    };
    // The URI is required by HTTP/2 but never resolved: the connector below
    // ignores it and dials the socket.
    let endpoint = Endpoint::from_static("http://localhost");
    let socket = path.to_path_buf();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| fail(&e))?;
    Ok(SandboxClient::new(channel))
}

/// An error and its causes on one line, skipping repeated texts.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins() {
        assert_eq!(
            socket_path(Some(Path::new("/x.sock"))),
            PathBuf::from("/x.sock")
        );
    }
}
