//! Serving the API on a Unix listener: each accepted connection is tagged with
//! its caller, and gets its own task (a client that writes garbage or stalls
//! only breaks its own connection). A caller holds at most
//! [`MAX_CONNECTIONS_PER_UID`] connections at once, so that one user cannot
//! take the daemon's descriptors from the others, nor (through the requests
//! open on them) its memory. Health and reflection ride along.

use super::requests::RequestQuota;
use super::Api;
use crate::identity::PeerStream;
use crate::quota::Quota;
use sandbox_proto::v1::sandbox_server::SandboxServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "sandbox.v1.Sandbox";

/// API connections one uid may hold open at once; more are closed on arrival.
pub const MAX_CONNECTIONS_PER_UID: usize = 256;
/// API connections all callers together may hold open at once.
pub const MAX_CONNECTIONS: usize = 2048;
/// Requests (HTTP/2 streams) one connection may carry at once; how many
/// one caller may have open over all its connections is bounded too (see
/// requests.rs).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `api` on `listener` until `shutdown` completes and the open
/// connections have closed.
pub async fn serve(
    listener: UnixListener,
    api: Api,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<SandboxServer<Api>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sandbox_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sandbox_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (accepted, incoming) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept(
        listener,
        Quota::new(MAX_CONNECTIONS_PER_UID, MAX_CONNECTIONS),
        accepted,
    ));
    let incoming = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .layer(RequestQuota::default())
        .add_service(health)
        .add_service(SandboxServer::new(api))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    acceptor.abort();
    served?;
    Ok(())
}

/// Accepts connections, each with its caller and counted against its
/// quota, until the server stops taking them.
async fn accept(listener: UnixListener, quota: Arc<Quota>, accepted: mpsc::Sender<PeerStream>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match PeerStream::new(stream) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "connection refused: no peer identity");
                continue;
            }
        };
        let uid = peer.caller().uid;
        let Some(slot) = quota.take(uid) else {
            tracing::warn!(
                uid,
                "connection refused: {MAX_CONNECTIONS_PER_UID} connections of this uid, or {MAX_CONNECTIONS} in all, are open"
            );
            continue;
        };
        if accepted.send(peer.holding(slot)).await.is_err() {
            return;
        }
    }
}
