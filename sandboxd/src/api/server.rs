//! Serving the API on a Unix listener: each accepted connection is tagged with
//! its caller, and gets its own task (a client that writes garbage or stalls
//! only breaks its own connection). Health and reflection ride along.

use super::Api;
use crate::identity::PeerStream;
use sandbox_proto::v1::sandbox_server::SandboxServer;
use std::future::Future;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "sandbox.v1.Sandbox";

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

    let incoming =
        UnixListenerStream::new(listener).filter_map(|conn| match conn.map(PeerStream::new) {
            Ok(Ok(peer)) => Some(Ok::<_, std::io::Error>(peer)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "connection refused: no peer identity");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                None
            }
        });
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(SandboxServer::new(api))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
