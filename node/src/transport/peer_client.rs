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
use crate::roster::{CurrentRoster, RosterMember, SignedRoster};
use crate::service::{BoxFuture, PeerNetwork, ServiceError};
use crate::sharing::ShareId;
use crate::types::MemberId;

/// Calls other members' peer APIs, one pinned channel per member. Every
/// call tells the callee this node's roster version, so that a node behind
/// learns it at once and catches up.
pub struct PeerClients {
    me: TlsIdentity,
    roster: std::sync::Arc<CurrentRoster>,
    channels: Mutex<HashMap<(MemberId, String, SpkiHash), Channel>>,
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients").finish_non_exhaustive()
    }
}

impl PeerClients {
    /// Dials peers presenting `me`'s certificate, telling them `roster`'s version.
    pub fn new(me: TlsIdentity, roster: std::sync::Arc<CurrentRoster>) -> Self {
        Self {
            me,
            roster,
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
    async fn call<Req, T, Fut>(
        &self,
        member: &RosterMember,
        request: Req,
        f: impl FnOnce(PeerClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> Result<T, ServiceError>
    where
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let client = self.client(member)?;
        let mut request = tonic::Request::new(request);
        let version = self.roster.get().roster().version;
        if let Ok(v) = version.to_string().parse() {
            request.metadata_mut().insert(super::ROSTER_VERSION_KEY, v);
        }
        f(client, request)
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
                .call(
                    member,
                    pb::FetchKeyPackageRequest {},
                    |mut c, r| async move { c.fetch_key_package(r).await },
                )
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
                .call(member, request, |mut c, r| async move {
                    c.deliver_welcome(r).await
                })
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
                .call(member, request, |mut c, r| async move {
                    c.deliver_commit(r).await
                })
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
                .call(owner, request, |mut c, r| async move {
                    c.request_welcome(r).await
                })
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
                .call(
                    owner,
                    request,
                    |mut c, r| async move { c.read_share(r).await },
                )
                .await?;
            let signature = Signature::from_bytes(&r.receipt_signature).map_err(|_| {
                ServiceError::PeerMisbehaved {
                    peer: owner.card.id.clone(),
                    what: "its receipt signature is not 64 bytes".into(),
                }
            })?;
            let sealed = r
                .sections
                .into_iter()
                .map(|s| {
                    s.section
                        .parse()
                        .map(|section| (section, s.sealed))
                        .map_err(|_| ServiceError::PeerMisbehaved {
                            peer: owner.card.id.clone(),
                            what: "it sealed an unknown section".into(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ReadAnswer {
                sealed,
                receipt: SignedBytes {
                    bytes: r.receipt,
                    signature,
                },
            })
        })
    }

    fn offer_roster<'a>(
        &'a self,
        member: &'a RosterMember,
        roster: &'a SignedRoster,
        adopted: bool,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::OfferRosterRequest {
                roster: serde_json::to_vec(roster).unwrap_or_default(),
                adopted,
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.offer_roster(r).await
                })
                .await?;
            Ok(r.version)
        })
    }

    fn fetch_chain<'a>(
        &'a self,
        member: &'a RosterMember,
        from: u64,
    ) -> BoxFuture<'a, Result<(Vec<SignedRoster>, u64), ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(
                    member,
                    pb::FetchChainRequest { from },
                    |mut c, r| async move { c.fetch_chain(r).await },
                )
                .await?;
            let misbehaved = |what: String| ServiceError::PeerMisbehaved {
                peer: member.card.id.clone(),
                what,
            };
            if r.links.len() > crate::service::MAX_CHAIN_LINKS {
                return Err(misbehaved(format!(
                    "it sent {} roster versions at once",
                    r.links.len()
                )));
            }
            let links = r
                .links
                .iter()
                .map(|bytes| {
                    SignedRoster::decode(bytes)
                        .map_err(|e| misbehaved(format!("its roster version is refused: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((links, r.version))
        })
    }

    fn offer_census<'a>(
        &'a self,
        member: &'a RosterMember,
        entries: &'a [SignedBytes],
    ) -> BoxFuture<'a, Result<usize, ServiceError>> {
        Box::pin(async move {
            let request = pb::OfferCensusRequest {
                entries: entries.iter().map(census_entry).collect(),
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.offer_census(r).await
                })
                .await?;
            Ok(r.kept as usize)
        })
    }

    fn fetch_census<'a>(
        &'a self,
        member: &'a RosterMember,
        known: &'a std::collections::HashMap<String, u64>,
    ) -> BoxFuture<'a, Result<(Vec<SignedBytes>, bool), ServiceError>> {
        Box::pin(async move {
            let request = pb::FetchCensusRequest {
                known: known.clone(),
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.fetch_census(r).await
                })
                .await?;
            let misbehaved = |what: String| ServiceError::PeerMisbehaved {
                peer: member.card.id.clone(),
                what,
            };
            if r.entries.len() > crate::service::CENSUS_PAGE {
                return Err(misbehaved(format!(
                    "it sent {} census entries at once",
                    r.entries.len()
                )));
            }
            let entries = r
                .entries
                .into_iter()
                .map(|e| {
                    signed_census_entry(e)
                        .map_err(|_| misbehaved("a census signature is not 64 bytes".into()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((entries, r.more))
        })
    }

    fn get_indicators<'a>(
        &'a self,
        member: &'a RosterMember,
        period: &'a str,
    ) -> BoxFuture<'a, Result<SignedBytes, ServiceError>> {
        Box::pin(async move {
            let request = pb::GetIndicatorsRequest {
                period: period.to_owned(),
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.get_indicators(r).await
                })
                .await?;
            let signature =
                Signature::from_bytes(&r.signature).map_err(|_| ServiceError::PeerMisbehaved {
                    peer: member.card.id.clone(),
                    what: "its counts' signature is not 64 bytes".into(),
                })?;
            Ok(SignedBytes {
                bytes: r.counts,
                signature,
            })
        })
    }

    fn fetch_proposals<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Vec<SignedRoster>, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(
                    member,
                    pb::FetchProposalsRequest {},
                    |mut c, r| async move { c.fetch_proposals(r).await },
                )
                .await?;
            let misbehaved = |what: String| ServiceError::PeerMisbehaved {
                peer: member.card.id.clone(),
                what,
            };
            if r.proposals.len() > crate::service::MAX_CHAIN_LINKS {
                return Err(misbehaved(format!(
                    "it sent {} proposals at once",
                    r.proposals.len()
                )));
            }
            r.proposals
                .iter()
                .map(|bytes| {
                    SignedRoster::decode(bytes)
                        .map_err(|e| misbehaved(format!("its proposal is refused: {e}")))
                })
                .collect()
        })
    }

    fn get_checkpoint<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(member, pb::GetCheckpointRequest {}, |mut c, r| async move {
                    c.get_checkpoint(r).await
                })
                .await?;
            if r.checkpoint.len() > 4096 {
                return Err(ServiceError::PeerMisbehaved {
                    peer: member.card.id.clone(),
                    what: "its checkpoint is larger than 4 KiB".into(),
                });
            }
            Ok(r.checkpoint)
        })
    }

    fn get_witnessed<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Option<String>, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(member, pb::GetWitnessedRequest {}, |mut c, r| async move {
                    c.get_witnessed(r).await
                })
                .await?;
            if !r.witnessed {
                return Ok(None);
            }
            if r.checkpoint.len() > 4096 {
                return Err(ServiceError::PeerMisbehaved {
                    peer: member.card.id.clone(),
                    what: "the checkpoint it witnessed is larger than 4 KiB".into(),
                });
            }
            Ok(Some(r.checkpoint))
        })
    }

    fn get_consistency<'a>(
        &'a self,
        member: &'a RosterMember,
        old: u64,
        new: u64,
    ) -> BoxFuture<'a, Result<Vec<crate::audit::merkle::Hash>, ServiceError>> {
        Box::pin(async move {
            let request = pb::ProofRequest {
                first: old,
                size: new,
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.get_consistency(r).await
                })
                .await?;
            super::audit_wire::hashes_from(&member.card.id, r.hashes)
        })
    }

    fn get_manifest<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<crate::audit::bundle::SignedManifest, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(member, pb::GetManifestRequest {}, |mut c, r| async move {
                    c.get_manifest(r).await
                })
                .await?;
            super::audit_wire::manifest_from_pb(&member.card.id, r)
        })
    }

    fn get_leaves<'a>(
        &'a self,
        member: &'a RosterMember,
        from: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<crate::service::LeafPage, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(
                    member,
                    pb::GetLeavesRequest { from, limit },
                    |mut c, r| async move { c.get_leaves(r).await },
                )
                .await?;
            super::audit_wire::leaves_from_pb(&member.card.id, r, from, limit)
        })
    }

    fn get_dossier_audit<'a>(
        &'a self,
        member: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
        from: u64,
        size: u64,
        holding: Option<&'a crate::service::Holding>,
    ) -> BoxFuture<'a, Result<crate::service::DossierPart, ServiceError>> {
        Box::pin(async move {
            let request = pb::GetDossierAuditRequest {
                dossier: dossier.to_string(),
                from,
                size,
                holding_entry: holding.map(|h| h.entry.clone()).unwrap_or_default(),
                holding_proof: holding.map(|h| h.proof.clone()).unwrap_or_default(),
            };
            let r = self
                .call(member, request, |mut c, r| async move {
                    c.get_dossier_audit(r).await
                })
                .await?;
            super::audit_wire::part_from_pb(&member.card.id, r)
        })
    }

    fn cosign<'a>(
        &'a self,
        member: &'a RosterMember,
        body: &'a str,
        line: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let request = pb::CosignRequest {
                body: body.to_owned(),
                cosignature: line.to_owned(),
            };
            self.call(member, request, |mut c, r| async move { c.cosign(r).await })
                .await?;
            Ok(())
        })
    }

    fn notify<'a>(
        &'a self,
        member: &'a RosterMember,
        notice: &'a crate::protocol::Notice,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let request = pb::NotifyRequest {
                notice: notice.to_bytes(),
            };
            self.call(member, request, |mut c, r| async move { c.notify(r).await })
                .await?;
            Ok(())
        })
    }

    fn freshness<'a>(
        &'a self,
        member: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
    ) -> BoxFuture<'a, Result<Vec<(crate::types::Section, i64)>, ServiceError>> {
        Box::pin(async move {
            let request = pb::FreshnessRequest {
                dossier: dossier.to_string(),
            };
            let r = self
                .call(
                    member,
                    request,
                    |mut c, r| async move { c.freshness(r).await },
                )
                .await?;
            if r.sections.len() > crate::types::Section::ALL.len() {
                return Err(ServiceError::PeerMisbehaved {
                    peer: member.card.id.clone(),
                    what: "it listed more sections than there are".into(),
                });
            }
            r.sections
                .into_iter()
                .map(|s| {
                    s.section
                        .parse()
                        .map(|section| (section, s.written_at))
                        .map_err(|_| ServiceError::PeerMisbehaved {
                            peer: member.card.id.clone(),
                            what: "it listed an unknown section".into(),
                        })
                })
                .collect()
        })
    }

    fn confirm_dossier<'a>(
        &'a self,
        holder: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let request = pb::ConfirmDossierRequest {
                dossier: dossier.to_string(),
            };
            self.call(holder, request, |mut c, r| async move {
                c.confirm_dossier(r).await
            })
            .await?;
            Ok(())
        })
    }
}

/// A census entry as the wire carries it.
pub(crate) fn census_entry(signed: &SignedBytes) -> pb::CensusEntry {
    pb::CensusEntry {
        entry: signed.bytes.clone(),
        signature: signed.signature.to_bytes().to_vec(),
    }
}

/// A census entry from the wire (its signature 64 bytes; not verified).
pub(crate) fn signed_census_entry(e: pb::CensusEntry) -> Result<SignedBytes, ()> {
    let signature = Signature::from_bytes(&e.signature).map_err(drop)?;
    Ok(SignedBytes {
        bytes: e.entry,
        signature,
    })
}
