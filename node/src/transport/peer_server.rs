//! The peer API's handlers: authenticate the member from its pinned
//! certificate, parse into domain types, call one `Node` method, encode.

use std::sync::Arc;

use maillon_proto::v1 as pb;
use pb::peer_server::Peer;
use tonic::{Request, Response, Status};

use super::status::{invalid, status};
use super::tls::ConnInfo;
use crate::crypto::Signature;
use crate::protocol::SignedBytes;
use crate::service::{Node, ServiceError};
use crate::types::{DossierId, MemberId, Section};

/// The peer API handlers.
#[derive(Debug, Clone)]
pub struct PeerApi {
    node: Arc<Node>,
}

impl PeerApi {
    /// The handlers of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// The member whose pinned certificate the connection presented.
fn peer_of<T>(req: &Request<T>) -> Result<MemberId, Status> {
    req.extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.member.clone())
        .ok_or_else(|| {
            status(ServiceError::Unauthenticated(
                "peer certificate is not pinned in the roster",
            ))
        })
}

/// A share named on the wire: its dossier and section, parsed.
fn share_of(dossier: &str, section: &str) -> Result<(DossierId, Section), Status> {
    Ok((
        dossier.parse().map_err(invalid)?,
        section.parse().map_err(invalid)?,
    ))
}

#[tonic::async_trait]
impl Peer for PeerApi {
    #[tracing::instrument(skip_all)]
    async fn fetch_key_package(
        &self,
        req: Request<pb::FetchKeyPackageRequest>,
    ) -> Result<Response<pb::FetchKeyPackageReply>, Status> {
        let peer = peer_of(&req)?;
        let key_package = self.node.key_package_for(&peer).await.map_err(status)?;
        Ok(Response::new(pb::FetchKeyPackageReply { key_package }))
    }

    #[tracing::instrument(skip_all)]
    async fn deliver_welcome(
        &self,
        req: Request<pb::DeliverWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let (dossier, section) = share_of(&r.dossier, &r.section)?;
        let epoch = self
            .node
            .accept_welcome(&peer, dossier, section, r.welcome)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn deliver_commit(
        &self,
        req: Request<pb::DeliverCommitRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let (dossier, section) = share_of(&r.dossier, &r.section)?;
        let epoch = self
            .node
            .accept_commit(&peer, dossier, section, r.commit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn request_welcome(
        &self,
        req: Request<pb::RequestWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let (dossier, section) = share_of(&r.dossier, &r.section)?;
        let epoch = self
            .node
            .resend_welcome(&peer, dossier, section)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn read_share(
        &self,
        req: Request<pb::SignedReadRequest>,
    ) -> Result<Response<pb::ReadShareReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let signature = Signature::from_bytes(&r.signature)
            .map_err(|_| status(ServiceError::Invalid("signature must be 64 bytes".into())))?;
        let answer = self
            .node
            .answer_read(
                &peer,
                SignedBytes {
                    bytes: r.request,
                    signature,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReadShareReply {
            sealed: answer.sealed,
            receipt: answer.receipt.bytes,
            receipt_signature: answer.receipt.signature.to_bytes().to_vec(),
        }))
    }
}
