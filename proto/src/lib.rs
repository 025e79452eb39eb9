//! Generated types and service stubs of the `sandbox.v1` API.

/// Generated code of package `sandbox.v1`.
pub mod v1 {
    tonic::include_proto!("sandbox.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sandbox_descriptor.bin"));
