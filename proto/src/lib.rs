//! Maillon's gRPC protocol, package `maillon.v1`: code generated from `proto/`.

/// Package `maillon.v1`: the peer API and the client API.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("maillon.v1");

    /// The encoded `FileDescriptorSet` of `maillon.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/maillon_descriptor.bin"));
}
