//! A client-API connection made from a profile: pinned TLS and a bearer token.

use maillon_node::config::Profile;
use maillon_node::crypto::pinned_client_config;
use maillon_node::transport::{MAX_GRPC_MESSAGE, tls_channel};
use maillon_proto::v1::client_client::ClientClient;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A caseworker's, auditor's or admin's connection to its own node.
#[derive(Clone, Debug)]
pub struct Conn {
    api: ClientClient<Channel>,
    auth: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Conn {
    /// Connects (lazily) to the node the profile names, pinning its certificate.
    pub fn new(profile: &Profile) -> Result<Self, Status> {
        let cfg = pinned_client_config(profile.server_spki_sha256)
            .map_err(|e| Status::internal(e.to_string()))?;
        let channel = tls_channel(&profile.endpoint, cfg)?;
        let auth = format!("Bearer {}", profile.token)
            .parse()
            .map_err(|_| Status::invalid_argument("the profile's token is not valid ASCII"))?;
        Ok(Self {
            api: ClientClient::new(channel)
                .max_decoding_message_size(MAX_GRPC_MESSAGE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
            auth,
        })
    }

    /// Wraps a message with the bearer token.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }

    /// The generated client, for calls made with [`Conn::req`].
    pub fn api(&self) -> ClientClient<Channel> {
        self.api.clone()
    }
}
