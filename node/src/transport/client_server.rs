//! The client API's handlers, for this member's caseworkers, auditors and
//! admins: check the bearer token, parse into domain types, call one `Node`
//! method, encode.

use std::collections::BTreeSet;
use std::sync::Arc;

use maillon_proto::v1 as pb;
use pb::client_server::Client;
use tonic::{Request, Response, Status};

use super::status::{invalid, status};
use crate::consent::{Collection, ConsentRecord, ConsentStatus, LegalBasis};
use crate::roster::{Change, SignedRoster};
use crate::service::{
    BreakGlassGrant, Caller, GrantRequest, Node, OfferOutcome, PartnerFreshness, ProofKind,
    ProposalView, SectionView, ServiceError, ViewedSection,
};
use crate::types::{DossierId, ParseError, Section};

/// The client API handlers.
#[derive(Debug, Clone)]
pub struct ClientApi {
    node: Arc<Node>,
}

impl ClientApi {
    /// The handlers of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The reply to a proposal or an approval; an adoption's effects on the
    /// groups go on in the background.
    fn settled(
        &self,
        settled: Result<(ProposalView, OfferOutcome), ServiceError>,
    ) -> Result<Response<pb::GovProposalReply>, Status> {
        let (view, outcome) = settled.map_err(status)?;
        if outcome == OfferOutcome::Adopted {
            self.node.after_adoption();
        }
        Ok(Response::new(pb::GovProposalReply {
            proposal: Some(proposal_to_pb(view)),
            outcome: outcome_name(outcome),
            version: self.node.roster().roster().version,
        }))
    }

    /// The user whose bearer token the call carries.
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| status(ServiceError::Unauthenticated("missing bearer token")))?;
        let token = header
            .to_str()
            .ok()
            .and_then(super::bearer_token)
            .ok_or_else(|| {
                status(ServiceError::Unauthenticated(
                    "authorization must be 'Bearer <token>'",
                ))
            })?;
        self.node.authenticate(token).map_err(status)
    }
}

fn new_user_to_pb(user: crate::service::NewUser) -> pb::AddUserReply {
    pb::AddUserReply {
        name: user.name.to_string(),
        role: user.role.to_string(),
        token: user.token,
        expires_at: user.expires_at,
    }
}

fn consent_to_pb(c: ConsentRecord, now: i64) -> pb::Consent {
    let status = match c.status(now) {
        ConsentStatus::Active => "active",
        ConsentStatus::Pending => "pending",
        ConsentStatus::Expired => "expired",
        ConsentStatus::Revoked => "withdrawn",
    };
    let provision = match &c.consent.basis {
        LegalBasis::LegalMission { provision } => provision.clone(),
        LegalBasis::Consent => String::new(),
    };
    pb::Consent {
        basis: c.consent.basis.as_str().into(),
        provision,
        collection: c.consent.collection.as_str().into(),
        valid_from: c.consent.valid_from.to_string(),
        masked: c.consent.masked.iter().map(|s| s.to_string()).collect(),
        status: status.into(),
        id: c.consent.id.to_string(),
        dossier: c.consent.dossier.to_string(),
        owner: c.consent.owner.to_string(),
        sections: c.consent.sections.iter().map(|s| s.to_string()).collect(),
        audience: c.consent.audience.iter().map(|m| m.to_string()).collect(),
        purpose: c.consent.purpose,
        until: c.consent.until.to_string(),
        granted_by: c.consent.granted_by.to_string(),
        granted_at: c.consent.granted_at,
        revoked_at: c.revoked_at,
    }
}

fn grant_to_pb(g: BreakGlassGrant) -> pb::BreakGlass {
    let (reviewed_by, reviewed_at, comment) = match g.review {
        Some(r) => (r.by.to_string(), r.at, r.comment),
        None => (String::new(), 0, String::new()),
    };
    pb::BreakGlass {
        id: g.id.to_string(),
        dossier: g.dossier.to_string(),
        owner: g.owner.to_string(),
        reader: g.reader.to_string(),
        user: g.user.map(|u| u.to_string()).unwrap_or_default(),
        sections: g.sections.iter().map(|s| s.to_string()).collect(),
        justification: g.justification.unwrap_or_default(),
        granted_at: g.granted_at,
        until: g.until,
        ended: g.ended,
        reviewed_by,
        reviewed_at,
        comment,
    }
}

fn proposal_to_pb(v: ProposalView) -> pb::GovProposal {
    let ids = |m: &[crate::types::MemberId]| m.iter().map(|m| m.to_string()).collect();
    let side = |s: &crate::roster::SideTally| pb::GovQuorumSide {
        have: s.have as u32,
        need: s.need as u32,
        missing: ids(&s.missing),
    };
    let (rejected_by, rejected_reason) = v
        .proposal
        .rejected
        .clone()
        .map(|(u, r)| (u.to_string(), r))
        .unwrap_or_default();
    pb::GovProposal {
        id: v.id,
        version: v.proposal.signed.roster.version,
        proposer: v.proposal.proposer.to_string(),
        signers: v
            .proposal
            .signed
            .signatures
            .iter()
            .map(|s| s.signer.to_string())
            .collect(),
        changes: v.changes,
        current: v.tally.is_some(),
        outgoing: v.tally.as_ref().map(|t| side(&t.outgoing)),
        incoming: v.tally.as_ref().map(|t| side(&t.incoming)),
        unproven: v
            .tally
            .as_ref()
            .map(|t| ids(&t.unproven))
            .unwrap_or_default(),
        not_counted: v
            .tally
            .as_ref()
            .map(|t| ids(&t.not_counted))
            .unwrap_or_default(),
        rejected_by,
        rejected_reason,
        signed: serde_json::to_vec(&v.proposal.signed).unwrap_or_default(),
    }
}

fn outcome_name(o: OfferOutcome) -> String {
    match o {
        OfferOutcome::Adopted => "adopted",
        OfferOutcome::Pending => "pending",
        OfferOutcome::Known => "known",
    }
    .into()
}

fn section_reply(dossier: &DossierId, section: Section, view: SectionView) -> pb::SectionReply {
    let (basis, basis_id) = basis_to_pb(&view);
    pb::SectionReply {
        dossier: dossier.to_string(),
        section: section.to_string(),
        owner: view.owner.to_string(),
        json: view.json,
        receipt_leaf: view.receipt_leaf,
        written_at: view.written_at,
        basis,
        basis_id,
    }
}

/// On what a section was read: `own`, or the owner's basis and its id.
fn basis_to_pb(view: &SectionView) -> (String, String) {
    match &view.basis {
        None => ("own".into(), String::new()),
        Some(b) => (b.kind().into(), b.id().into()),
    }
}

/// What the référent sees of one member holding the dossier.
fn partner_to_pb(p: PartnerFreshness) -> pb::PartnerFreshness {
    match p.outcome {
        Ok(sections) => pb::PartnerFreshness {
            member: p.member.to_string(),
            status: "ok".into(),
            sections: sections
                .into_iter()
                .map(|(section, written_at)| pb::SectionWritten {
                    section: section.to_string(),
                    written_at,
                })
                .collect(),
            ..Default::default()
        },
        Err(e) => pb::PartnerFreshness {
            member: p.member.to_string(),
            status: match e.kind() {
                crate::service::ErrorKind::Refused => "refused",
                crate::service::ErrorKind::Unavailable => "unreachable",
                _ => "failed",
            }
            .into(),
            reason: e.reason(),
            message: crate::types::escape_controls(&e.to_string()),
            ..Default::default()
        },
    }
}

/// One source of a unified view or of a multi-section read.
fn viewed_to_pb(v: ViewedSection) -> pb::ViewedSection {
    let (owner, section) = (v.owner.to_string(), v.section.to_string());
    match v.outcome {
        Ok(s) => {
            let (basis, basis_id) = basis_to_pb(&s);
            pb::ViewedSection {
                owner,
                section,
                status: "ok".into(),
                json: s.json,
                receipt_leaf: s.receipt_leaf,
                written_at: s.written_at,
                basis,
                basis_id,
                ..Default::default()
            }
        }
        Err(e) => pb::ViewedSection {
            owner,
            section,
            status: match e.kind() {
                crate::service::ErrorKind::Refused | crate::service::ErrorKind::NotFound => {
                    "refused"
                }
                crate::service::ErrorKind::Unavailable => "unreachable",
                _ => "failed",
            }
            .into(),
            reason: e.reason(),
            message: crate::types::escape_controls(&e.to_string()),
            ..Default::default()
        },
    }
}

/// Parses repeated, comma-separated items into a set.
/// A member id, or none when empty.
fn optional_member(s: &str) -> Result<Option<crate::types::MemberId>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(invalid)
}

fn parse_set<T: std::str::FromStr<Err = ParseError> + Ord>(
    items: &[String],
) -> Result<BTreeSet<T>, Status> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().parse().map_err(invalid))
        .collect()
}

/// A user as the client API lists it.
fn user_entry(u: crate::service::UserRecord) -> pb::UserEntry {
    pb::UserEntry {
        name: u.name.to_string(),
        role: u.role.to_string(),
        created_at: u.created_at,
        token_expires_at: u.expires_at.unwrap_or(0),
        identity: u.identity.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Client for ClientApi {
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIReply>, Status> {
        let caller = self.caller(&req)?;
        Ok(Response::new(pb::WhoAmIReply {
            member: self.node.member().to_string(),
            user: caller.name.to_string(),
            role: caller.role.to_string(),
            token_expires_at: caller.token_expires_at.unwrap_or(0),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_user(
        &self,
        req: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::AddUserReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (name, role) = (
            r.name.parse().map_err(invalid)?,
            r.role.parse().map_err(invalid)?,
        );
        let user = self
            .node
            .create_user(&caller, name, role, r.valid_days)
            .await
            .map_err(status)?;
        Ok(Response::new(new_user_to_pb(user)))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_user_token(
        &self,
        req: Request<pb::RotateUserTokenRequest>,
    ) -> Result<Response<pb::AddUserReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let name = r.name.parse().map_err(invalid)?;
        let user = self
            .node
            .rotate_user_token(&caller, &name, r.valid_days)
            .await
            .map_err(status)?;
        Ok(Response::new(new_user_to_pb(user)))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_user(
        &self,
        req: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::RemoveUserReply>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name.parse().map_err(invalid)?;
        self.node
            .remove_user(&caller, &name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveUserReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersReply>, Status> {
        let caller = self.caller(&req)?;
        let users = self.node.list_users(&caller).map_err(status)?;
        Ok(Response::new(pb::ListUsersReply {
            users: users.into_iter().map(user_entry).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UserEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let name = r.name.parse().map_err(invalid)?;
        let role = match r.role.as_str() {
            "" => None,
            role => Some(role.parse().map_err(invalid)?),
        };
        if role.is_none() && r.identity.is_none() {
            return Err(Status::invalid_argument(
                "nothing to change: give a role, an identity, or both",
            ));
        }
        let identity = r.identity.map(|i| Some(i).filter(|i| !i.is_empty()));
        self.node
            .update_user(&caller, &name, role, identity)
            .await
            .map_err(status)?;
        let users = self.node.list_users(&caller).map_err(status)?;
        users
            .into_iter()
            .find(|u| u.name == name)
            .map(|u| Response::new(user_entry(u)))
            .ok_or_else(|| Status::not_found("the user was removed meanwhile"))
    }

    #[tracing::instrument(skip_all)]
    async fn open_dossier(
        &self,
        req: Request<pb::OpenDossierRequest>,
    ) -> Result<Response<pb::OpenDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let birth_date = r.birth_date.parse().map_err(invalid)?;
        let id = self
            .node
            .open_dossier(&caller, &r.given_name, &r.family_name, birth_date)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::OpenDossierReply {
            dossier: id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn search_dossiers(
        &self,
        req: Request<pb::SearchDossiersRequest>,
    ) -> Result<Response<pb::SearchDossiersReply>, Status> {
        let caller = self.caller(&req)?;
        let text = req.into_inner().text;
        let found = self
            .node
            .search_dossiers(&caller, &text)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SearchDossiersReply {
            dossiers: found
                .into_iter()
                .map(|d| pb::DossierSummary {
                    dossier: d.id.to_string(),
                    given_name: d.given_name,
                    family_name: d.family_name,
                    birth_date: d.birth_date.to_string(),
                    opened_at: d.opened_at,
                    attached_from: d.attached_from.map(|m| m.to_string()).unwrap_or_default(),
                    closed: d.closed,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn view_dossier(
        &self,
        req: Request<pb::ViewDossierRequest>,
    ) -> Result<Response<pb::ViewDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier = r.dossier.parse().map_err(invalid)?;
        let view = self
            .node
            .view_dossier(&caller, &dossier, &r.purpose)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ViewDossierReply {
            sections: view.sections.into_iter().map(viewed_to_pb).collect(),
            referent: view
                .referent
                .map(|r| format!("{}@{}", r.user, r.member))
                .unwrap_or_default(),
            partners: view.partners.into_iter().map(partner_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn close_dossier(
        &self,
        req: Request<pb::CloseDossierRequest>,
    ) -> Result<Response<pb::CloseDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier = r.dossier.parse().map_err(invalid)?;
        let reason = r.reason.parse().map_err(invalid)?;
        self.node
            .close_dossier(&caller, &dossier, reason)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CloseDossierReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn erase_dossier(
        &self,
        req: Request<pb::EraseDossierRequest>,
    ) -> Result<Response<pb::EraseDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let dossier = req.into_inner().dossier.parse().map_err(invalid)?;
        self.node
            .erase_dossier(&caller, &dossier)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EraseDossierReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_referent(
        &self,
        req: Request<pb::SetReferentRequest>,
    ) -> Result<Response<pb::SetReferentReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier = r.dossier.parse().map_err(invalid)?;
        let (user, member) = r.referent.rsplit_once('@').ok_or_else(|| {
            status(ServiceError::Invalid(
                "the référent is written USER@MEMBER".into(),
            ))
        })?;
        let user = user.parse().map_err(invalid)?;
        let member = member.parse().map_err(invalid)?;
        let consent = match r.consent.as_str() {
            "" => None,
            c => Some(c.parse().map_err(invalid)?),
        };
        self.node
            .set_referent(&caller, &dossier, &member, &user, consent.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetReferentReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn outbox(
        &self,
        req: Request<pb::OutboxRequest>,
    ) -> Result<Response<pb::OutboxReply>, Status> {
        let caller = self.caller(&req)?;
        let waiting = self.node.outbox(&caller).map_err(status)?;
        Ok(Response::new(pb::OutboxReply {
            entries: waiting
                .into_iter()
                .map(|w| pb::OutboxEntry {
                    to: w.to.to_string(),
                    kind: w.kind,
                    about: w.about,
                    attempts: w.attempts,
                    next_at: w.next_at,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn attach_dossier(
        &self,
        req: Request<pb::AttachDossierRequest>,
    ) -> Result<Response<pb::AttachDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier = r.dossier.parse().map_err(invalid)?;
        let from = r.from.parse().map_err(invalid)?;
        let birth_date = r.birth_date.parse().map_err(invalid)?;
        self.node
            .attach_dossier(
                &caller,
                &dossier,
                &from,
                (&r.given_name, &r.family_name, birth_date),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AttachDossierReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn put_section(
        &self,
        req: Request<pb::PutSectionRequest>,
    ) -> Result<Response<pb::PutSectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (dossier, section) = (
            r.dossier.parse().map_err(invalid)?,
            r.section.parse().map_err(invalid)?,
        );
        self.node
            .put_section(&caller, &dossier, section, &r.json)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutSectionReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_section(
        &self,
        req: Request<pb::GetSectionRequest>,
    ) -> Result<Response<pb::SectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (dossier, section) = (
            r.dossier.parse().map_err(invalid)?,
            r.section.parse().map_err(invalid)?,
        );
        let view = self
            .node
            .get_section(&caller, &dossier, section)
            .await
            .map_err(status)?;
        Ok(Response::new(section_reply(&dossier, section, view)))
    }

    #[tracing::instrument(skip_all)]
    async fn grant_consent(
        &self,
        req: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::GrantConsentReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let grant = GrantRequest {
            dossier: r.dossier.parse().map_err(invalid)?,
            sections: parse_set(&r.sections)?,
            audience: parse_set(&r.audience)?,
            purpose: r.purpose,
            basis: LegalBasis::from_parts(&r.basis, &r.provision).map_err(invalid)?,
            collection: Collection::from_parts(&r.collection, &r.form_reference)
                .map_err(invalid)?,
            valid_from: match r.valid_from.as_str() {
                "" => None,
                d => Some(d.parse().map_err(invalid)?),
            },
            until: r.until.parse().map_err(invalid)?,
            masked: parse_set(&r.masked)?,
        };
        let id = self
            .node
            .grant_consent(&caller, grant)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GrantConsentReply {
            consent: id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn show_consent(
        &self,
        req: Request<pb::ShowConsentRequest>,
    ) -> Result<Response<pb::ShowConsentReply>, Status> {
        let caller = self.caller(&req)?;
        let id = req.into_inner().consent.parse().map_err(invalid)?;
        let receipt = self.node.show_consent(&caller, &id).await.map_err(status)?;
        Ok(Response::new(pb::ShowConsentReply {
            receipt_json: receipt.to_json(),
            receipt_text: receipt.to_french(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_consent(
        &self,
        req: Request<pb::RevokeConsentRequest>,
    ) -> Result<Response<pb::RevokeConsentReply>, Status> {
        let caller = self.caller(&req)?;
        let id = req.into_inner().consent.parse().map_err(invalid)?;
        self.node
            .revoke_consent(&caller, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeConsentReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_consents(
        &self,
        req: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsReply>, Status> {
        let caller = self.caller(&req)?;
        let dossier = req.into_inner().dossier.parse().map_err(invalid)?;
        let consents = self
            .node
            .list_consents(&caller, &dossier)
            .await
            .map_err(status)?;
        let now = self.node.now();
        Ok(Response::new(pb::ListConsentsReply {
            consents: consents
                .into_iter()
                .map(|c| consent_to_pb(c, now))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn read_share(
        &self,
        req: Request<pb::ReadShareRequest>,
    ) -> Result<Response<pb::SectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let owner = r.owner.parse().map_err(invalid)?;
        let (dossier, section) = (
            r.dossier.parse().map_err(invalid)?,
            r.section.parse().map_err(invalid)?,
        );
        let glass = (!r.break_glass.is_empty()).then_some(r.break_glass.as_str());
        let view = self
            .node
            .read_share(&caller, &owner, &dossier, section, &r.purpose, glass)
            .await
            .map_err(status)?;
        Ok(Response::new(section_reply(&dossier, section, view)))
    }

    #[tracing::instrument(skip_all)]
    async fn read_shares(
        &self,
        req: Request<pb::ReadShareRequest>,
    ) -> Result<Response<pb::ViewDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let owner: crate::types::MemberId = r.owner.parse().map_err(invalid)?;
        let dossier = r.dossier.parse().map_err(invalid)?;
        let sections: Vec<Section> = parse_set(&r.sections)?.into_iter().collect();
        let glass = (!r.break_glass.is_empty()).then_some(r.break_glass.as_str());
        let read = self
            .node
            .read_shares(&caller, &owner, &dossier, &sections, &r.purpose, glass)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ViewDossierReply {
            sections: read
                .into_iter()
                .map(|(section, outcome)| {
                    viewed_to_pb(ViewedSection {
                        owner: owner.clone(),
                        section,
                        outcome,
                    })
                })
                .collect(),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_inclusion(
        &self,
        req: Request<pb::AuditProofRequest>,
    ) -> Result<Response<pb::AuditProofReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let hashes = self
            .node
            .audit_proof(&caller, ProofKind::Inclusion, r.first, r.size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AuditProofReply {
            hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_consistency(
        &self,
        req: Request<pb::AuditProofRequest>,
    ) -> Result<Response<pb::AuditProofReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let hashes = self
            .node
            .audit_proof(&caller, ProofKind::Consistency, r.first, r.size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AuditProofReply {
            hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_witness(
        &self,
        req: Request<pb::AuditWitnessRequest>,
    ) -> Result<Response<pb::AuditWitnessReply>, Status> {
        let caller = self.caller(&req)?;
        let view = self.node.audit_witness(&caller).map_err(status)?;
        Ok(Response::new(pb::AuditWitnessReply {
            peers: view
                .peers
                .into_iter()
                .map(|(m, w)| pb::WitnessedPeer {
                    member: m.to_string(),
                    checkpoint: w.checkpoint,
                    at: w.at,
                })
                .collect(),
            alarms: view
                .alarms
                .into_iter()
                .map(|e| pb::WitnessAlarm {
                    member: e.member.to_string(),
                    reason: e.reason,
                    at: e.at,
                    first: e.first,
                    second: e.second,
                })
                .collect(),
            cosigned: view.cosigned,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_break_glass(
        &self,
        req: Request<pb::ListBreakGlassRequest>,
    ) -> Result<Response<pb::ListBreakGlassReply>, Status> {
        let caller = self.caller(&req)?;
        let pending = req.into_inner().pending;
        let grants = self
            .node
            .list_break_glass(&caller, pending)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListBreakGlassReply {
            accesses: grants.into_iter().map(grant_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn review_break_glass(
        &self,
        req: Request<pb::ReviewBreakGlassRequest>,
    ) -> Result<Response<pb::ReviewBreakGlassReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = r.id.parse().map_err(invalid)?;
        self.node
            .review_break_glass(&caller, &id, &r.comment)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReviewBreakGlassReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_tail(
        &self,
        req: Request<pb::AuditTailRequest>,
    ) -> Result<Response<pb::AuditTailReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let page = self
            .node
            .audit_entries(&caller, r.from, r.limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AuditTailReply {
            events: page
                .entries
                .into_iter()
                .map(|(index, json)| pb::AuditEvent {
                    index,
                    json: String::from_utf8_lossy(&json).into_owned(),
                })
                .collect(),
            tree_size: page.tree_size,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_search(
        &self,
        req: Request<pb::AuditSearchRequest>,
    ) -> Result<Response<pb::AuditSearchReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let filter = crate::service::AuditFilter {
            dossier: (!r.dossier.is_empty())
                .then(|| r.dossier.parse())
                .transpose()
                .map_err(invalid)?,
            kind: (!r.kind.is_empty()).then_some(r.kind),
            since: r.since,
            until: r.until,
        };
        let limit = if r.limit == 0 { 50 } else { r.limit };
        let found = self
            .node
            .search_audit(&caller, filter, r.before, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AuditSearchReply {
            events: found
                .entries
                .into_iter()
                .map(|(index, json)| pb::AuditEvent {
                    index,
                    json: String::from_utf8_lossy(&json).into_owned(),
                })
                .collect(),
            tree_size: found.tree_size,
            next: found.next,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_manifest(
        &self,
        req: Request<pb::AuditManifestRequest>,
    ) -> Result<Response<pb::SignedAuditManifest>, Status> {
        let caller = self.caller(&req)?;
        let member = optional_member(&req.into_inner().member)?;
        let m = self
            .node
            .audit_manifest(&caller, member.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(super::audit_wire::manifest_to_pb(m)))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_leaves(
        &self,
        req: Request<pb::AuditLeavesRequest>,
    ) -> Result<Response<pb::LeavesPage>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let member = optional_member(&r.member)?;
        let page = self
            .node
            .audit_leaves(&caller, member.as_ref(), r.from, r.limit)
            .await
            .map_err(status)?;
        Ok(Response::new(super::audit_wire::leaves_to_pb(page)))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_dossier(
        &self,
        req: Request<pb::AuditDossierRequest>,
    ) -> Result<Response<pb::AuditDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier: DossierId = r.dossier.parse().map_err(invalid)?;
        let member = optional_member(&r.member)?;
        let part = self
            .node
            .audit_dossier(&caller, &dossier, member.as_ref(), r.from, r.size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AuditDossierReply {
            part: Some(super::audit_wire::part_to_pb(part)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_checkpoint(
        &self,
        req: Request<pb::AuditCheckpointRequest>,
    ) -> Result<Response<pb::AuditCheckpointReply>, Status> {
        let caller = self.caller(&req)?;
        let (checkpoint, verifier_key) =
            self.node.audit_checkpoint(&caller).await.map_err(status)?;
        Ok(Response::new(pb::AuditCheckpointReply {
            checkpoint,
            verifier_key,
        }))
    }

    async fn gov_propose(
        &self,
        req: Request<pb::GovProposeRequest>,
    ) -> Result<Response<pb::GovProposalReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        if r.change.len() > crate::roster::MAX_ROSTER_BYTES {
            return Err(status(ServiceError::TooLarge {
                what: "change",
                size: r.change.len(),
                limit: crate::roster::MAX_ROSTER_BYTES,
            }));
        }
        let change: Change = serde_json::from_str(&r.change).map_err(|e| {
            status(ServiceError::Invalid(format!(
                "not a roster change (line {}, column {})",
                e.line(),
                e.column()
            )))
        })?;
        let reason = Some(r.reason).filter(|r| !r.trim().is_empty());
        let settled = self.node.propose(&caller, &change, reason).await;
        self.settled(settled)
    }

    async fn gov_approve(
        &self,
        req: Request<pb::GovApproveRequest>,
    ) -> Result<Response<pb::GovProposalReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let extra = match r.signed.is_empty() {
            true => None,
            false => Some(SignedRoster::decode(&r.signed).map_err(|e| status(e.into()))?),
        };
        let settled = self.node.approve(&caller, &r.proposal, extra).await;
        self.settled(settled)
    }

    async fn gov_reject(
        &self,
        req: Request<pb::GovRejectRequest>,
    ) -> Result<Response<pb::GovProposalReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let view = self
            .node
            .reject(&caller, &r.proposal, &r.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GovProposalReply {
            proposal: Some(proposal_to_pb(view)),
            outcome: String::new(),
            version: self.node.roster().roster().version,
        }))
    }

    async fn gov_list(
        &self,
        req: Request<pb::GovListRequest>,
    ) -> Result<Response<pb::GovListReply>, Status> {
        let caller = self.caller(&req)?;
        let proposals = self.node.list_proposals(&caller).map_err(status)?;
        Ok(Response::new(pb::GovListReply {
            proposals: proposals.into_iter().map(proposal_to_pb).collect(),
            version: self.node.roster().roster().version,
        }))
    }

    async fn gov_show(
        &self,
        req: Request<pb::GovShowRequest>,
    ) -> Result<Response<pb::GovProposalReply>, Status> {
        let caller = self.caller(&req)?;
        let view = self
            .node
            .show_proposal(&caller, &req.into_inner().proposal)
            .map_err(status)?;
        Ok(Response::new(pb::GovProposalReply {
            proposal: Some(proposal_to_pb(view)),
            outcome: String::new(),
            version: self.node.roster().roster().version,
        }))
    }

    type NodeBackupStream = tokio_stream::wrappers::ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn node_backup(
        &self,
        req: Request<pb::NodeBackupRequest>,
    ) -> Result<Response<Self::NodeBackupStream>, Status> {
        let caller = self.caller(&req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let node = self.node.clone();
        tokio::spawn(async move {
            let writer =
                std::io::BufWriter::with_capacity(BACKUP_CHUNK, ChunkWriter { tx: tx.clone() });
            let last = match node.backup(&caller, writer).await {
                Ok(manifest) => Ok(pb::BackupChunk {
                    data: Vec::new(),
                    manifest: serde_json::to_string(&manifest).unwrap_or_default(),
                }),
                Err(e) => Err(status(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn issue_console_link(
        &self,
        req: Request<pb::IssueConsoleLinkRequest>,
    ) -> Result<Response<pb::ConsoleLinkReply>, Status> {
        let caller = self.caller(&req)?;
        let name: crate::types::UserName = req.get_ref().name.parse().map_err(invalid)?;
        let (url, expires_at) = self
            .node
            .issue_console_link(&caller, &name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConsoleLinkReply { url, expires_at }))
    }

    async fn publish_aid(
        &self,
        req: Request<pb::PublishAidRequest>,
    ) -> Result<Response<pb::CensusEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let signed = match (r.service.is_empty(), r.withdraw.is_empty()) {
            (false, true) => {
                let service =
                    crate::census::Service::from_json(&r.service).map_err(|e| status(e.into()))?;
                self.node.publish_aid(&caller, service, false).await
            }
            (true, false) => self.node.withdraw_aid(&caller, &r.withdraw).await,
            _ => {
                return Err(Status::invalid_argument(
                    "give either a service to publish or the id of one to withdraw",
                ));
            }
        }
        .map_err(status)?;
        Ok(Response::new(super::peer_client::census_entry(
            &signed.signed,
        )))
    }

    async fn search_aids(
        &self,
        req: Request<pb::SearchAidsRequest>,
    ) -> Result<Response<pb::SearchAidsReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let given = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        if [&r.text, &r.category, &r.near]
            .iter()
            .any(|s| s.len() > 200)
        {
            return Err(Status::invalid_argument(
                "a search's text, category or commune is at most 200 bytes",
            ));
        }
        let open_at = if r.open_now {
            crate::census::Query::paris_minute(self.node.now())
        } else {
            None
        };
        let query = crate::census::Query {
            text: given(r.text),
            category: given(r.category),
            near: given(r.near),
            open_at,
        };
        let found = self.node.search_aids(&caller, &query).map_err(status)?;
        Ok(Response::new(pb::SearchAidsReply {
            entries: found
                .iter()
                .map(|e| super::peer_client::census_entry(&e.signed))
                .collect(),
        }))
    }

    async fn get_aid(
        &self,
        req: Request<pb::GetAidRequest>,
    ) -> Result<Response<pb::CensusEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let member = r.member.parse().map_err(invalid)?;
        let found = self
            .node
            .get_aid(&caller, &member, &r.service)
            .map_err(status)?;
        Ok(Response::new(super::peer_client::census_entry(
            &found.signed,
        )))
    }

    async fn match_aids(
        &self,
        req: Request<pb::MatchAidsRequest>,
    ) -> Result<Response<pb::MatchAidsReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier: DossierId = r.dossier.parse().map_err(invalid)?;
        let found = self
            .node
            .match_aids(&caller, &dossier, &r.purpose)
            .await
            .map_err(status)?;
        let source =
            |owner: &crate::types::MemberId, section: &Section, reason: String| pb::SectionSource {
                owner: owner.to_string(),
                section: section.to_string(),
                reason,
            };
        Ok(Response::new(pb::MatchAidsReply {
            proposed: found
                .proposed
                .iter()
                .map(|m| pb::AidProposal {
                    entry: Some(super::peer_client::census_entry(&m.entry.signed)),
                    checks: m.checks.iter().map(aid_check).collect(),
                })
                .collect(),
            excluded: u32::try_from(found.excluded).unwrap_or(u32::MAX),
            read: found
                .read
                .iter()
                .map(|(o, s)| source(o, s, String::new()))
                .collect(),
            unread: found
                .unread
                .iter()
                .map(|(o, s, why)| source(o, s, why.clone()))
                .collect(),
        }))
    }

    async fn orient(
        &self,
        req: Request<pb::OrientRequest>,
    ) -> Result<Response<pb::OrientationEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier: DossierId = r.dossier.parse().map_err(invalid)?;
        let to: crate::types::MemberId = r.to.parse().map_err(invalid)?;
        let consent: Option<crate::types::ConsentId> = match r.consent.as_str() {
            "" => None,
            c => Some(c.parse().map_err(invalid)?),
        };
        let record = self
            .node
            .orient(
                &caller,
                &dossier,
                &to,
                &r.service,
                &r.reason,
                consent.as_ref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(self.orientation_entry(&record)))
    }

    async fn step_orientation(
        &self,
        req: Request<pb::StepOrientationRequest>,
    ) -> Result<Response<pb::OrientationEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id: crate::types::OrientationId = r.orientation.parse().map_err(invalid)?;
        let next: crate::types::OrientationStatus = r.status.parse().map_err(invalid)?;
        if next == crate::types::OrientationStatus::Sent {
            return Err(Status::invalid_argument(
                "a step is accepted, declined or completed",
            ));
        }
        let record = self
            .node
            .step_orientation(&caller, &id, next, &r.note)
            .await
            .map_err(status)?;
        Ok(Response::new(self.orientation_entry(&record)))
    }

    async fn list_orientations(
        &self,
        req: Request<pb::ListOrientationsRequest>,
    ) -> Result<Response<pb::ListOrientationsReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let direction = match r.direction.as_str() {
            "" => None,
            "sent" => Some(crate::service::Direction::Sent),
            "received" => Some(crate::service::Direction::Received),
            _ => {
                return Err(Status::invalid_argument(
                    "direction: sent, received, or nothing for both",
                ));
            }
        };
        let wanted = match r.status.as_str() {
            "" => None,
            s => Some(s.parse().map_err(invalid)?),
        };
        let records = self
            .node
            .list_orientations(&caller, direction, wanted)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListOrientationsReply {
            orientations: records.iter().map(|r| self.orientation_entry(r)).collect(),
        }))
    }

    async fn raise_alert(
        &self,
        req: Request<pb::RaiseAlertRequest>,
    ) -> Result<Response<pb::AlertEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let concern = r.concern.parse().map_err(invalid)?;
        let to: Option<crate::types::MemberId> = match r.to.as_str() {
            "" => None,
            t => Some(t.parse().map_err(invalid)?),
        };
        let raised = self
            .node
            .raise_alert(&caller, &r.about, &r.place, concern, to.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(raised_entry(&raised, self.node.member())))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsReply>, Status> {
        let caller = self.caller(&req)?;
        let wanted = match req.get_ref().status.as_str() {
            "" => None,
            s => Some(s.parse().map_err(invalid)?),
        };
        let view = self
            .node
            .list_alerts(&caller, wanted)
            .await
            .map_err(status)?;
        let me = self.node.member();
        Ok(Response::new(pb::ListAlertsReply {
            raised: view.raised.iter().map(|r| raised_entry(r, me)).collect(),
            received: view.received.iter().map(received_entry).collect(),
        }))
    }

    async fn handle_alert(
        &self,
        req: Request<pb::HandleAlertRequest>,
    ) -> Result<Response<pb::AlertEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id: crate::types::AlertId = r.alert.parse().map_err(invalid)?;
        let next: crate::types::AlertStatus = r.status.parse().map_err(invalid)?;
        if !matches!(
            next,
            crate::types::AlertStatus::Taken | crate::types::AlertStatus::Closed
        ) {
            return Err(Status::invalid_argument("an alert is taken or closed"));
        }
        let outcome = match r.outcome.as_str() {
            "" => None,
            o => Some(o.parse().map_err(invalid)?),
        };
        let handled = self
            .node
            .handle_alert(&caller, &id, next, outcome)
            .await
            .map_err(status)?;
        Ok(Response::new(received_entry(&handled)))
    }

    async fn indicators(
        &self,
        req: Request<pb::IndicatorsRequest>,
    ) -> Result<Response<pb::IndicatorsReply>, Status> {
        let caller = self.caller(&req)?;
        let t = self
            .node
            .federation_indicators(&caller, &req.get_ref().period)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IndicatorsReply {
            period: t.period,
            threshold: t.threshold,
            members: t.members.iter().map(ToString::to_string).collect(),
            missing: t.missing.iter().map(ToString::to_string).collect(),
            rows: t
                .rows
                .into_iter()
                .map(|r| pb::IndicatorRow {
                    indicator: r.indicator,
                    by: r.by,
                    territory: r.territory,
                    members: r.members.iter().map(ToString::to_string).collect(),
                    total: r.total.to_string(),
                })
                .collect(),
        }))
    }

    async fn convene_commission(
        &self,
        req: Request<pb::ConveneCommissionRequest>,
    ) -> Result<Response<pb::CommissionEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let dossier: DossierId = r.dossier.parse().map_err(invalid)?;
        let participants = r
            .participants
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<crate::types::MemberId>, _>>()
            .map_err(invalid)?;
        let meets_on = r.meets_on.parse().map_err(invalid)?;
        let consent: Option<crate::types::ConsentId> = match r.consent.as_str() {
            "" => None,
            c => Some(c.parse().map_err(invalid)?),
        };
        let record = self
            .node
            .convene_commission(
                &caller,
                &dossier,
                &participants,
                &r.agenda,
                meets_on,
                consent.as_ref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(commission_entry(&record)))
    }

    async fn close_commission(
        &self,
        req: Request<pb::CloseCommissionRequest>,
    ) -> Result<Response<pb::CommissionEntry>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id: crate::types::CommissionId = r.commission.parse().map_err(invalid)?;
        let decisions = r
            .decisions
            .into_iter()
            .map(|d| {
                Ok(crate::protocol::CommissionAction {
                    who: d.who.parse()?,
                    what: d.what,
                    by: d.by.parse()?,
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()
            .map_err(invalid)?;
        let record = self
            .node
            .close_commission(&caller, &id, decisions)
            .await
            .map_err(status)?;
        Ok(Response::new(commission_entry(&record)))
    }

    async fn list_commissions(
        &self,
        req: Request<pb::ListCommissionsRequest>,
    ) -> Result<Response<pb::ListCommissionsReply>, Status> {
        let caller = self.caller(&req)?;
        let all = self.node.list_commissions(&caller).await.map_err(status)?;
        Ok(Response::new(pb::ListCommissionsReply {
            commissions: all.iter().map(commission_entry).collect(),
        }))
    }

    async fn node_status(
        &self,
        req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusReply>, Status> {
        let caller = self.caller(&req)?;
        let st = self.node.status(&caller).await.map_err(status)?;
        let (peer_listen, client_listen, metrics_listen) = match st.listening {
            Some(l) => (
                l.peer.to_string(),
                l.client.to_string(),
                l.metrics.map(|m| m.to_string()).unwrap_or_default(),
            ),
            None => Default::default(),
        };
        Ok(Response::new(pb::NodeStatusReply {
            version: st.version.to_owned(),
            member: st.member.to_string(),
            roster_version: st.roster_version,
            peer_listen,
            client_listen,
            metrics_listen,
            started_at: st.started_at,
            audit_entries: st.audit_entries,
            audit_bytes: st.audit_bytes,
            audit_integrity: match st.audit_integrity {
                crate::audit::Integrity::Checking => "checking".into(),
                crate::audit::Integrity::Verified { .. } => "verified".into(),
                crate::audit::Integrity::Failed(reason) => format!("failed: {reason}"),
            },
            audit_appending: st.audit_appending,
            peers: st
                .peers
                .into_iter()
                .map(|p| pb::NodePeer {
                    member: p.member.to_string(),
                    status: p.status.to_string(),
                    told: p.told.is_some(),
                    told_version: p.told.map_or(0, |(v, _)| v),
                    told_at: p.told.map_or(0, |(_, at)| at),
                })
                .collect(),
            outbox: st.outbox,
            witness_alarms: st.witness_alarms,
            consents_active: st.consents_active,
            break_glass_pending: st.break_glass_pending,
            users: st.users,
        }))
    }

    async fn gov_status(
        &self,
        req: Request<pb::GovStatusRequest>,
    ) -> Result<Response<pb::GovStatusReply>, Status> {
        let caller = self.caller(&req)?;
        let st = self.node.roster_status(&caller);
        let r = st.roster.roster();
        Ok(Response::new(pb::GovStatusReply {
            federation: r.federation.clone(),
            version: r.version,
            hash: st.roster.hash_hex().to_owned(),
            quorum: r.quorum.to_string(),
            members: r
                .members
                .iter()
                .map(|m| pb::GovMember {
                    id: m.card.id.to_string(),
                    name: m.card.name.clone(),
                    kind: m.card.kind.to_string(),
                    status: m.status.to_string(),
                    voting: m.voting,
                    endpoint: m.card.endpoint.clone(),
                })
                .collect(),
            peers: st
                .peers
                .iter()
                .map(|(m, (version, at))| pb::GovPeer {
                    member: m.to_string(),
                    version: *version,
                    seen_at: *at,
                })
                .collect(),
            roster: serde_json::to_vec(st.roster.signed()).unwrap_or_default(),
        }))
    }
}

/// The archive's bytes, sent as chunks of at most [`BACKUP_CHUNK`] from a
/// blocking thread; a caller gone stops the backup with an error.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<pb::BackupChunk, Status>>,
}

/// Largest chunk of a backup sent at once.
const BACKUP_CHUNK: usize = 256 * 1024;

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(BACKUP_CHUNK);
        self.tx
            .blocking_send(Ok(pb::BackupChunk {
                data: buf[..n].to_vec(),
                manifest: String::new(),
            }))
            .map_err(|_| std::io::Error::other("the caller went away"))?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One criterion checked, as the client API gives it.
fn aid_check(c: &crate::census::Check) -> pb::AidCheck {
    use crate::census::{Criterion, Outcome};
    let criterion = match c.criterion {
        Criterion::Age => "age",
        Criterion::Household => "household",
        Criterion::Resources => "resources",
        Criterion::Territory => "territory",
        Criterion::Situation => "situation",
    };
    let (outcome, found, needs) = match &c.outcome {
        Outcome::Met(found) => ("met", found.clone(), Vec::new()),
        Outcome::Unchecked(needs) => (
            "unchecked",
            String::new(),
            needs.iter().map(ToString::to_string).collect(),
        ),
        Outcome::Failed(found) => ("failed", found.clone(), Vec::new()),
    };
    pb::AidCheck {
        criterion: criterion.into(),
        wanted: c.wanted.clone(),
        outcome: outcome.into(),
        found,
        needs,
    }
}

impl ClientApi {
    /// An orientation as the client API gives it, with its service's name
    /// when this node's census has it.
    fn orientation_entry(&self, r: &crate::service::OrientationRecord) -> pb::OrientationEntry {
        let o = &r.orientation;
        let service_name = self.node.aid_name(&o.to, &o.service).unwrap_or_default();
        pb::OrientationEntry {
            id: o.id.to_string(),
            dossier: o.dossier.to_string(),
            from: o.from.to_string(),
            to: o.to.to_string(),
            service: o.service.clone(),
            service_name,
            reason: o.reason.clone(),
            consent: o.consent.to_string(),
            sections: o.sections.iter().map(ToString::to_string).collect(),
            sent_at: o.sent_at,
            sent_by: r
                .sent_by
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            status: r.status.to_string(),
            steps: r
                .steps
                .iter()
                .map(|s| pb::OrientationStepEntry {
                    status: s.step.status.to_string(),
                    note: s.step.note.clone(),
                    at: s.step.at,
                    by: s
                        .taken_by
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// An alert raised here, as its raiser sees it.
fn raised_entry(r: &crate::service::RaisedAlert, me: &crate::types::MemberId) -> pb::AlertEntry {
    pb::AlertEntry {
        id: r.id.to_string(),
        from: me.to_string(),
        to: r.to.to_string(),
        concern: r.concern.to_string(),
        place: r.place.clone(),
        raised_at: r.raised_at,
        status: r.status.to_string(),
        purge_at: r.purge_at,
        raised_by: r.raised_by.to_string(),
        ..Default::default()
    }
}

/// An alert received here, as its caseworkers see it.
fn received_entry(r: &crate::service::ReceivedAlert) -> pb::AlertEntry {
    pb::AlertEntry {
        id: r.alert.id.to_string(),
        from: r.alert.from.to_string(),
        to: r.alert.to.to_string(),
        concern: r.alert.concern.to_string(),
        place: r.alert.place.clone(),
        raised_at: r.alert.raised_at,
        status: r.status.to_string(),
        about: r.alert.about.clone(),
        taken_by: r
            .taken_by
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        outcome: r.outcome.map(|o| o.to_string()).unwrap_or_default(),
        closed_at: r.closed_at.unwrap_or_default(),
        purge_at: r.purge_at,
        raised_by: String::new(),
    }
}

/// A commission as the client API gives it.
fn commission_entry(r: &crate::service::CommissionRecord) -> pb::CommissionEntry {
    let c = &r.commission;
    let (decisions, closed_at) = match &r.minutes {
        Some((m, _)) => (
            m.decisions
                .iter()
                .map(|d| pb::CommissionDecision {
                    who: d.who.to_string(),
                    what: d.what.clone(),
                    by: d.by.to_string(),
                })
                .collect(),
            m.closed_at,
        ),
        None => (Vec::new(), 0),
    };
    pb::CommissionEntry {
        id: c.id.to_string(),
        dossier: c.dossier.to_string(),
        convener: c.convener.to_string(),
        participants: c.participants.iter().map(ToString::to_string).collect(),
        agenda: c.agenda.clone(),
        meets_on: c.meets_on.to_string(),
        consent: c.consent.to_string(),
        sections: c.sections.iter().map(ToString::to_string).collect(),
        convened_at: c.convened_at,
        closed: r.minutes.is_some(),
        decisions,
        closed_at,
    }
}
