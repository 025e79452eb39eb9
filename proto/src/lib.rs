//! Generated types and service stubs of the `sandbox.v1` API.

/// Generated code of package `sandbox.v1`.
// ExecRequest's start message is much larger than a stdin chunk; that is the
// API's shape, not worth boxing in generated code.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("sandbox.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sandbox_descriptor.bin"));
