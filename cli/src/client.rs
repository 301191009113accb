//! A client-API connection made from a profile: pinned TLS and a bearer token.

use maillon_node::config::Profile;
use maillon_node::crypto::pinned_client_config;
use maillon_node::transport::{MAX_GRPC_MESSAGE, tls_channel};
use maillon_proto::v1 as pb;
use maillon_proto::v1::client_client::ClientClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A caseworker's, auditor's or admin's connection to its own node. Its
/// `Debug` shows the bearer header as `Sensitive`, never the token.
#[derive(Clone, Debug)]
pub struct Conn {
    api: ClientClient<Channel>,
    auth: MetadataValue<Ascii>,
}

impl Conn {
    /// Connects (lazily) to the node the profile names, pinning its certificate.
    pub fn new(profile: &Profile) -> Result<Self, Status> {
        let cfg = pinned_client_config(profile.server_spki_sha256)
            .map_err(|e| Status::internal(e.to_string()))?;
        let channel = tls_channel(&profile.endpoint, cfg)?;
        let mut auth: MetadataValue<Ascii> = format!("Bearer {}", profile.token)
            .parse()
            .map_err(|_| Status::invalid_argument("the profile's token is not valid ASCII"))?;
        // `Debug` of this `Conn` and of its requests then prints `Sensitive`
        // instead of the token (and h2 never indexes it in HPACK tables).
        auth.set_sensitive(true);
        Ok(Self {
            // No limit on what it sends: the node refuses an oversized
            // message with a clear ResourceExhausted, where tonic's own
            // limit would cut the upload into an opaque h2 error.
            api: ClientClient::new(channel).max_decoding_message_size(MAX_GRPC_MESSAGE),
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

/// A caseworker's calls, for the demo, the benchmark and the tests.
impl Conn {
    /// Opens a dossier; returns its id.
    pub async fn open_dossier(
        &self,
        given_name: &str,
        family_name: &str,
        birth_date: &str,
    ) -> Result<String, Status> {
        let r = self
            .api()
            .open_dossier(self.req(pb::OpenDossierRequest {
                given_name: given_name.into(),
                family_name: family_name.into(),
                birth_date: birth_date.into(),
            }))
            .await?;
        Ok(r.into_inner().dossier)
    }

    /// This node's dossiers answering `text`.
    pub async fn search_dossiers(&self, text: &str) -> Result<Vec<pb::DossierSummary>, Status> {
        let r = self
            .api()
            .search_dossiers(self.req(pb::SearchDossiersRequest { text: text.into() }))
            .await?;
        Ok(r.into_inner().dossiers)
    }

    /// The unified dossier, source by source.
    pub async fn view_dossier(
        &self,
        dossier: &str,
        purpose: &str,
    ) -> Result<Vec<pb::ViewedSection>, Status> {
        Ok(self.view_dossier_whole(dossier, purpose).await?.sections)
    }

    /// The unified dossier with its référent and, at the référent's
    /// member, every partner's freshness.
    pub async fn view_dossier_whole(
        &self,
        dossier: &str,
        purpose: &str,
    ) -> Result<pb::ViewDossierReply, Status> {
        let r = self
            .api()
            .view_dossier(self.req(pb::ViewDossierRequest {
                dossier: dossier.into(),
                purpose: purpose.into(),
            }))
            .await?;
        Ok(r.into_inner())
    }

    /// Names the référent de parcours (`user@member`), with the consent
    /// naming its member when it is another one.
    pub async fn set_referent(
        &self,
        dossier: &str,
        referent: &str,
        consent: Option<&str>,
    ) -> Result<(), Status> {
        self.api()
            .set_referent(self.req(pb::SetReferentRequest {
                dossier: dossier.into(),
                referent: referent.into(),
                consent: consent.unwrap_or_default().into(),
            }))
            .await?;
        Ok(())
    }

    /// Attaches to a dossier `from` holds, with the identity typed at this desk.
    pub async fn attach_dossier(
        &self,
        dossier: &str,
        from: &str,
        (given_name, family_name, birth_date): (&str, &str, &str),
    ) -> Result<(), Status> {
        self.api()
            .attach_dossier(self.req(pb::AttachDossierRequest {
                dossier: dossier.into(),
                from: from.into(),
                given_name: given_name.into(),
                family_name: family_name.into(),
                birth_date: birth_date.into(),
            }))
            .await?;
        Ok(())
    }

    /// Writes this node's copy of a section.
    pub async fn put_section(
        &self,
        dossier: &str,
        section: &str,
        json: &str,
    ) -> Result<(), Status> {
        self.api()
            .put_section(self.req(pb::PutSectionRequest {
                dossier: dossier.into(),
                section: section.into(),
                json: json.into(),
            }))
            .await?;
        Ok(())
    }

    /// Reads this node's own copy of a section.
    pub async fn get_section(&self, dossier: &str, section: &str) -> Result<String, Status> {
        let r = self
            .api()
            .get_section(self.req(pb::GetSectionRequest {
                dossier: dossier.into(),
                section: section.into(),
            }))
            .await?;
        Ok(r.into_inner().json)
    }

    /// Records a consent the person gave aloud at the desk (the caller is
    /// the witness), from today; returns its id.
    pub async fn grant_consent(
        &self,
        dossier: &str,
        sections: &[&str],
        to: &[&str],
        purpose: &str,
        until: &str,
    ) -> Result<String, Status> {
        let r = self
            .api()
            .grant_consent(self.req(pb::GrantConsentRequest {
                dossier: dossier.into(),
                sections: sections.iter().map(|s| s.to_string()).collect(),
                audience: to.iter().map(|s| s.to_string()).collect(),
                purpose: purpose.into(),
                until: until.into(),
                collection: "oral".into(),
                ..Default::default()
            }))
            .await?;
        Ok(r.into_inner().consent)
    }

    /// Revokes a consent.
    pub async fn revoke_consent(&self, consent: &str) -> Result<(), Status> {
        self.api()
            .revoke_consent(self.req(pb::RevokeConsentRequest {
                consent: consent.into(),
            }))
            .await?;
        Ok(())
    }

    /// Reads a section another member owns.
    pub async fn read_share(
        &self,
        dossier: &str,
        section: &str,
        owner: &str,
        purpose: &str,
    ) -> Result<pb::SectionReply, Status> {
        let r = self
            .api()
            .read_share(self.req(pb::ReadShareRequest {
                dossier: dossier.into(),
                section: section.into(),
                owner: owner.into(),
                purpose: purpose.into(),
                ..Default::default()
            }))
            .await?;
        Ok(r.into_inner())
    }

    /// Reads several sections another member owns in one request; with a
    /// justification, a break-glass read.
    pub async fn read_shares(
        &self,
        dossier: &str,
        sections: &[&str],
        owner: &str,
        purpose: &str,
        break_glass: Option<&str>,
    ) -> Result<Vec<pb::ViewedSection>, Status> {
        let r = self
            .api()
            .read_shares(self.req(pb::ReadShareRequest {
                dossier: dossier.into(),
                sections: sections.iter().map(|s| s.to_string()).collect(),
                owner: owner.into(),
                purpose: purpose.into(),
                break_glass: break_glass.unwrap_or_default().into(),
                ..Default::default()
            }))
            .await?;
        Ok(r.into_inner().sections)
    }
}

/// A member admin's governance calls, for the demo, the benchmark and the tests.
impl Conn {
    /// Proposes `change` to the roster in force.
    pub async fn gov_propose(
        &self,
        change: &maillon_node::roster::Change,
        reason: &str,
    ) -> Result<pb::GovProposalReply, Status> {
        let change = serde_json::to_string(change).map_err(|e| Status::internal(e.to_string()))?;
        Ok(self
            .api()
            .gov_propose(self.req(pb::GovProposeRequest {
                change,
                reason: reason.into(),
            }))
            .await?
            .into_inner())
    }

    /// Approves an open proposal, with signatures made elsewhere if any.
    pub async fn gov_approve(
        &self,
        proposal: &str,
        with: Option<&maillon_node::roster::SignedRoster>,
    ) -> Result<pb::GovProposalReply, Status> {
        let signed = match with {
            Some(s) => serde_json::to_vec(s).map_err(|e| Status::internal(e.to_string()))?,
            None => Vec::new(),
        };
        Ok(self
            .api()
            .gov_approve(self.req(pb::GovApproveRequest {
                proposal: proposal.into(),
                signed,
            }))
            .await?
            .into_inner())
    }

    /// The roster in force at the node, and what its peers told.
    pub async fn gov_status(&self) -> Result<pb::GovStatusReply, Status> {
        Ok(self
            .api()
            .gov_status(self.req(pb::GovStatusRequest {}))
            .await?
            .into_inner())
    }

    /// The open proposals at the node.
    pub async fn gov_list(&self) -> Result<pb::GovListReply, Status> {
        Ok(self
            .api()
            .gov_list(self.req(pb::GovListRequest {}))
            .await?
            .into_inner())
    }
}
