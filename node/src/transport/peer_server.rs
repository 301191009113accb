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
use crate::roster::SignedRoster;
use crate::service::{Node, OfferOutcome, ProofKind, ServiceError};
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

impl PeerApi {
    /// The member whose pinned certificate the connection presented, if the
    /// roster in force still pins it to that member, active (a suspension or
    /// a new key takes effect on connections already open). A caller that
    /// tells a newer roster version than this node's sets off a catch-up.
    fn peer_of<T>(&self, req: &Request<T>) -> Result<MemberId, Status> {
        self.peer_telling(req, true)
    }

    /// [`PeerApi::peer_of`]; with `learn` false, the version the caller tells
    /// is noted but sets off no catch-up (an offer brings its version itself).
    fn peer_telling<T>(&self, req: &Request<T>, learn: bool) -> Result<MemberId, Status> {
        let unpinned = || {
            status(ServiceError::Unauthenticated(
                "peer certificate is not pinned in the roster",
            ))
        };
        let info = req.extensions().get::<ConnInfo>().ok_or_else(unpinned)?;
        let (Some(member), Some(pin)) = (&info.member, &info.pin) else {
            return Err(unpinned());
        };
        if self.node.pinned_member(pin).as_ref() != Some(member) {
            return Err(unpinned());
        }
        let told = req
            .metadata()
            .get(super::ROSTER_VERSION_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(version) = told
            && self.node.note_peer_version(member, version)
            && learn
        {
            self.node.catch_up_in_background(member.clone());
        }
        Ok(member.clone())
    }
}

/// A share named on the wire: its dossier and section, parsed.
fn share_of(dossier: &str, section: &str) -> Result<(DossierId, Section), Status> {
    Ok((
        dossier.parse().map_err(invalid)?,
        section.parse().map_err(invalid)?,
    ))
}

impl PeerApi {
    /// A proof of this node's log for a peer (the two proof RPCs).
    async fn proof(
        &self,
        req: Request<pb::ProofRequest>,
        kind: ProofKind,
    ) -> Result<Response<pb::ProofReply>, Status> {
        let peer = self.peer_of(&req)?;
        let r = req.into_inner();
        let hashes = self
            .node
            .serve_proof(&peer, kind, r.first, r.size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ProofReply {
            hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
        }))
    }
}

#[tonic::async_trait]
impl Peer for PeerApi {
    #[tracing::instrument(skip_all)]
    async fn fetch_key_package(
        &self,
        req: Request<pb::FetchKeyPackageRequest>,
    ) -> Result<Response<pb::FetchKeyPackageReply>, Status> {
        let peer = self.peer_of(&req)?;
        let key_package = self.node.key_package_for(&peer).await.map_err(status)?;
        Ok(Response::new(pb::FetchKeyPackageReply { key_package }))
    }

    #[tracing::instrument(skip_all)]
    async fn deliver_welcome(
        &self,
        req: Request<pb::DeliverWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = self.peer_of(&req)?;
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
        let peer = self.peer_of(&req)?;
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
        let peer = self.peer_of(&req)?;
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
        let peer = self.peer_of(&req)?;
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
            receipt: answer.receipt.bytes,
            receipt_signature: answer.receipt.signature.to_bytes().to_vec(),
            sections: answer
                .sealed
                .into_iter()
                .map(|(section, sealed)| pb::SealedSection {
                    section: section.to_string(),
                    sealed,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn offer_roster(
        &self,
        req: Request<pb::OfferRosterRequest>,
    ) -> Result<Response<pb::OfferRosterReply>, Status> {
        let peer = self.peer_telling(&req, false)?;
        let r = req.into_inner();
        let signed = SignedRoster::decode(&r.roster).map_err(|e| status(e.into()))?;
        let outcome = self.node.accept_offer(&peer, signed, r.adopted).await;
        match &outcome {
            Ok(OfferOutcome::Adopted) => self.node.after_adoption(),
            Err(ServiceError::Roster(crate::roster::RosterError::Skipped { .. })) => {
                self.node.catch_up_in_background(peer.clone());
            }
            _ => {}
        }
        let outcome = outcome.map_err(status)?;
        Ok(Response::new(pb::OfferRosterReply {
            version: self.node.roster().roster().version,
            outcome: match outcome {
                OfferOutcome::Adopted => "adopted",
                OfferOutcome::Pending => "pending",
                OfferOutcome::Known => "known",
            }
            .into(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn fetch_chain(
        &self,
        req: Request<pb::FetchChainRequest>,
    ) -> Result<Response<pb::FetchChainReply>, Status> {
        let peer = self.peer_of(&req)?;
        let from = req.into_inner().from;
        let links = self.node.chain_from(&peer, from).map_err(status)?;
        Ok(Response::new(pb::FetchChainReply {
            links: links
                .iter()
                .map(|l| serde_json::to_vec(l).unwrap_or_default())
                .collect(),
            version: self.node.roster().roster().version,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn fetch_proposals(
        &self,
        req: Request<pb::FetchProposalsRequest>,
    ) -> Result<Response<pb::FetchProposalsReply>, Status> {
        let peer = self.peer_of(&req)?;
        let proposals = self.node.open_proposals_for(&peer).map_err(status)?;
        Ok(Response::new(pb::FetchProposalsReply {
            proposals: proposals
                .iter()
                .map(|p| serde_json::to_vec(p).unwrap_or_default())
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn offer_census(
        &self,
        req: Request<pb::OfferCensusRequest>,
    ) -> Result<Response<pb::OfferCensusReply>, Status> {
        let peer = self.peer_of(&req)?;
        let entries = req
            .into_inner()
            .entries
            .into_iter()
            .map(super::peer_client::signed_census_entry)
            .collect::<Result<Vec<_>, ()>>()
            .map_err(|()| Status::invalid_argument("a census signature is 64 bytes"))?;
        let kept = self
            .node
            .receive_census(&peer, entries)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::OfferCensusReply {
            kept: u32::try_from(kept).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn fetch_census(
        &self,
        req: Request<pb::FetchCensusRequest>,
    ) -> Result<Response<pb::FetchCensusReply>, Status> {
        let _peer = self.peer_of(&req)?;
        let known = req.into_inner().known;
        if known.len() > crate::service::MAX_SERVICES_PER_MEMBER {
            return Err(Status::invalid_argument(format!(
                "a member keeps at most {} services in the census",
                crate::service::MAX_SERVICES_PER_MEMBER
            )));
        }
        let (entries, more) = self.node.census_since(&known).map_err(status)?;
        Ok(Response::new(pb::FetchCensusReply {
            entries: entries
                .iter()
                .map(|e| super::peer_client::census_entry(&e.signed))
                .collect(),
            more,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_indicators(
        &self,
        req: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::SignedIndicators>, Status> {
        let peer = self.peer_of(&req)?;
        let signed = self
            .node
            .serve_indicators(&peer, &req.get_ref().period)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SignedIndicators {
            counts: signed.bytes,
            signature: signed.signature.to_bytes().to_vec(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointReply>, Status> {
        let peer = self.peer_of(&req)?;
        let (checkpoint, cosigned) = self.node.serve_checkpoint(&peer).map_err(status)?;
        Ok(Response::new(pb::GetCheckpointReply {
            checkpoint,
            cosigned,
        }))
    }

    async fn get_witnessed(
        &self,
        req: Request<pb::GetWitnessedRequest>,
    ) -> Result<Response<pb::GetWitnessedReply>, Status> {
        let peer = self.peer_of(&req)?;
        let seen = self.node.witnessed_of(&peer).map_err(status)?;
        Ok(Response::new(match seen {
            Some(w) => pb::GetWitnessedReply {
                witnessed: true,
                size: w.size,
                root: w.root,
                checkpoint: w.checkpoint,
            },
            None => pb::GetWitnessedReply::default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency(
        &self,
        req: Request<pb::ProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        self.proof(req, ProofKind::Consistency).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion(
        &self,
        req: Request<pb::ProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        self.proof(req, ProofKind::Inclusion).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::SignedAuditManifest>, Status> {
        let peer = self.peer_of(&req)?;
        let m = self.node.serve_manifest(&peer).await.map_err(status)?;
        Ok(Response::new(super::audit_wire::manifest_to_pb(m)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_leaves(
        &self,
        req: Request<pb::GetLeavesRequest>,
    ) -> Result<Response<pb::LeavesPage>, Status> {
        let peer = self.peer_of(&req)?;
        let r = req.into_inner();
        let page = self
            .node
            .serve_leaves(&peer, r.from, r.limit)
            .await
            .map_err(status)?;
        Ok(Response::new(super::audit_wire::leaves_to_pb(page)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_dossier_audit(
        &self,
        req: Request<pb::GetDossierAuditRequest>,
    ) -> Result<Response<pb::DossierAuditPart>, Status> {
        let peer = self.peer_of(&req)?;
        let r = req.into_inner();
        let dossier: DossierId = r.dossier.parse().map_err(invalid)?;
        let part = self
            .node
            .serve_dossier_audit(
                &peer,
                &dossier,
                r.from,
                r.size,
                (!r.holding_entry.is_empty()).then_some(crate::service::Holding {
                    entry: r.holding_entry,
                    proof: r.holding_proof,
                }),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(super::audit_wire::part_to_pb(part)))
    }

    #[tracing::instrument(skip_all)]
    async fn cosign(
        &self,
        req: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignReply>, Status> {
        let peer = self.peer_of(&req)?;
        let r = req.into_inner();
        if r.body.len() > 4096 || r.cosignature.len() > 1024 {
            return Err(status(ServiceError::TooLarge {
                what: "cosignature",
                size: r.body.len() + r.cosignature.len(),
                limit: 4096 + 1024,
            }));
        }
        self.node
            .take_cosignature(&peer, &r.body, &r.cosignature)
            .map_err(status)?;
        Ok(Response::new(pb::CosignReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn notify(
        &self,
        req: Request<pb::NotifyRequest>,
    ) -> Result<Response<pb::NotifyReply>, Status> {
        let peer = self.peer_of(&req)?;
        let notice = crate::protocol::Notice::decode(&req.into_inner().notice).map_err(|e| {
            status(ServiceError::Protocol {
                peer: peer.clone(),
                source: e,
            })
        })?;
        self.node
            .receive_notice(&peer, notice)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::NotifyReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn freshness(
        &self,
        req: Request<pb::FreshnessRequest>,
    ) -> Result<Response<pb::FreshnessReply>, Status> {
        let peer = self.peer_of(&req)?;
        let dossier: DossierId = req.into_inner().dossier.parse().map_err(invalid)?;
        let sections = self
            .node
            .answer_freshness(&peer, &dossier)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FreshnessReply {
            sections: sections
                .into_iter()
                .map(|(section, written_at)| pb::SectionFreshness {
                    section: section.to_string(),
                    written_at,
                })
                .collect(),
        }))
    }

    async fn confirm_dossier(
        &self,
        req: Request<pb::ConfirmDossierRequest>,
    ) -> Result<Response<pb::ConfirmDossierReply>, Status> {
        let peer = self.peer_of(&req)?;
        let dossier: DossierId = req.into_inner().dossier.parse().map_err(invalid)?;
        self.node
            .confirm_dossier(&peer, &dossier)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmDossierReply {}))
    }
}
