//! Calls to other members' peer APIs over pinned mutual TLS: the
//! implementation of the service's [`PeerNetwork`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use maillon_proto::v1 as pb;
use pb::peer_client::PeerClient;
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::MAX_GRPC_MESSAGE;
use super::status::from_status;
use super::tls::tls_channel;
use crate::crypto::{Signature, SpkiHash, TlsIdentity};
use crate::protocol::{ReadAnswer, SignedBytes};
use crate::roster::RosterMember;
use crate::service::{BoxFuture, PeerNetwork, ServiceError};
use crate::sharing::ShareId;
use crate::types::MemberId;

/// Calls other members' peer APIs, one pinned channel per member.
pub struct PeerClients {
    me: TlsIdentity,
    channels: Mutex<HashMap<(MemberId, String, SpkiHash), Channel>>,
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients").finish_non_exhaustive()
    }
}

impl PeerClients {
    /// Dials peers presenting `me`'s certificate.
    pub fn new(me: TlsIdentity) -> Self {
        Self {
            me,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `member`, dialling it (lazily) the first time.
    fn client(&self, member: &RosterMember) -> Result<PeerClient<Channel>, ServiceError> {
        let key = (
            member.card.id.clone(),
            member.card.endpoint.clone(),
            member.card.tls_spki_sha256,
        );
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let channel = match channels.get(&key) {
            Some(c) => c.clone(),
            None => {
                let cfg = crate::crypto::peer_client_config(&self.me, member.card.tls_spki_sha256)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let c = tls_channel(&member.card.endpoint, cfg).map_err(|s| {
                    ServiceError::Unreachable {
                        peer: member.card.id.clone(),
                        reason: s.message().to_owned(),
                    }
                })?;
                channels.insert(key, c.clone());
                c
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE))
    }

    /// One call to `member`'s peer API; its status keeps the member's name.
    async fn call<T, Fut>(
        &self,
        member: &RosterMember,
        f: impl FnOnce(PeerClient<Channel>) -> Fut,
    ) -> Result<T, ServiceError>
    where
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let client = self.client(member)?;
        f(client)
            .await
            .map(Response::into_inner)
            .map_err(|s| from_status(&member.card.id, s))
    }
}

impl PeerNetwork for PeerClients {
    fn fetch_key_package<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Vec<u8>, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(member, |mut c| async move {
                    c.fetch_key_package(pb::FetchKeyPackageRequest {}).await
                })
                .await?;
            Ok(r.key_package)
        })
    }

    fn deliver_welcome<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        welcome: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::DeliverWelcomeRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
                welcome,
            };
            let r = self
                .call(
                    member,
                    |mut c| async move { c.deliver_welcome(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn deliver_commit<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        commit: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::DeliverCommitRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
                commit,
            };
            let r = self
                .call(
                    member,
                    |mut c| async move { c.deliver_commit(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn request_welcome<'a>(
        &'a self,
        owner: &'a RosterMember,
        share: &'a ShareId,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::RequestWelcomeRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
            };
            let r = self
                .call(
                    owner,
                    |mut c| async move { c.request_welcome(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn read_share<'a>(
        &'a self,
        owner: &'a RosterMember,
        request: SignedBytes,
    ) -> BoxFuture<'a, Result<ReadAnswer, ServiceError>> {
        Box::pin(async move {
            let request = pb::SignedReadRequest {
                request: request.bytes,
                signature: request.signature.to_bytes().to_vec(),
            };
            let r = self
                .call(owner, |mut c| async move { c.read_share(request).await })
                .await?;
            let signature = Signature::from_bytes(&r.receipt_signature).map_err(|_| {
                ServiceError::PeerMisbehaved {
                    peer: owner.card.id.clone(),
                    what: "its receipt signature is not 64 bytes".into(),
                }
            })?;
            Ok(ReadAnswer {
                sealed: r.sealed,
                receipt: SignedBytes {
                    bytes: r.receipt,
                    signature,
                },
            })
        })
    }
}
