//! Watching a running sandbox: the read-only `Attach` stream.

use sandbox_proto::v1::AttachRequest;
use tokio::io::AsyncWrite;
use tokio_stream::StreamExt;

use crate::exec::{show, ExecError, ExitStatus};
use crate::Client;

/// Copies sandbox `id`'s output, from now on, to `stdout` and `stderr` (its
/// events as `sandboxd: ...` lines on `stderr`) until it exits; returns that
/// exit. The caller must own the sandbox or be an administrator.
///
/// Nothing is sent to the sandbox: dropping the future detaches and leaves
/// it running. Output this attacher was too slow to take is skipped, and an
/// `attach-missed` event says how many bytes.
pub async fn run_attach(
    client: &mut Client,
    id: &str,
    stdout: &mut (dyn AsyncWrite + Send + Unpin),
    stderr: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<ExitStatus, ExecError> {
    let mut responses = client
        .attach(AttachRequest { id: id.to_string() })
        .await
        .map_err(ExecError::Daemon)?
        .into_inner();
    let mut started = id.to_string();
    while let Some(msg) = responses.next().await {
        let msg = msg.map_err(ExecError::Daemon)?;
        if let Some(m) = msg.msg {
            if let Some(exit) = show(m, &mut started, stdout, stderr, "\n").await? {
                return Ok(ExitStatus { id: started, exit });
            }
        }
    }
    Err(ExecError::NoExit)
}
