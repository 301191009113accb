//! Hostile members: a roster member whose node lies. An owner answering reads
//! with receipts that do not hold or sections it did not seal; a member
//! handing out a KeyPackage that is not its own. Each lie is refused.

use maillon_node::crypto::{Context, NodeKey, sha256};
use maillon_node::protocol::{Basis, Receipt, ReceiptItem};
use maillon_node::sharing::Sharing;
use maillon_node::storage::Store;
use maillon_node::types::{ConsentId, Role};
use maillon_proto::v1 as pb;
use maillon_proto::v1::peer_server::Peer;
use maillon_tests::{Cluster, audit_kinds, code, next_year, refusal};
use tonic::{Code, Request, Response, Status};

/// How the hostile owner lies.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Signs its receipt with a key the roster does not list for it.
    StrangerKey,
    /// Signs a receipt for another request.
    OtherRequest,
    /// Signs a true receipt, but the "sealed" section is garbage.
    Garbage,
    /// Signs a receipt for the request that accounts for no section.
    NoSections,
    /// Hands out a well-formed KeyPackage in its name, signed by another key.
    ForeignKeyPackage,
}

struct HostileOwner {
    lie: Lie,
    key: NodeKey,
}

#[tonic::async_trait]
impl Peer for HostileOwner {
    async fn fetch_key_package(
        &self,
        _: Request<pb::FetchKeyPackageRequest>,
    ) -> Result<Response<pb::FetchKeyPackageReply>, Status> {
        let Lie::ForeignKeyPackage = self.lie else {
            return Err(Status::unimplemented("hostile"));
        };
        let dir = tempfile::tempdir().map_err(|e| Status::internal(e.to_string()))?;
        let store = Store::open(dir.path()).map_err(|e| Status::internal(e.to_string()))?;
        let me = "caf12".parse().expect("id");
        let owner = "ccas-rodez".parse().expect("id");
        let key_package = Sharing::new(store, me, &NodeKey::generate())
            .new_key_package(&owner)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::FetchKeyPackageReply { key_package }))
    }
    async fn deliver_welcome(
        &self,
        _: Request<pb::DeliverWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn deliver_commit(
        &self,
        _: Request<pb::DeliverCommitRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn request_welcome(
        &self,
        _: Request<pb::RequestWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unavailable("no welcome from a hostile owner"))
    }
    async fn offer_roster(
        &self,
        _: Request<pb::OfferRosterRequest>,
    ) -> Result<Response<pb::OfferRosterReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn fetch_chain(
        &self,
        _: Request<pb::FetchChainRequest>,
    ) -> Result<Response<pb::FetchChainReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn fetch_proposals(
        &self,
        _: Request<pb::FetchProposalsRequest>,
    ) -> Result<Response<pb::FetchProposalsReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn confirm_dossier(
        &self,
        _: Request<pb::ConfirmDossierRequest>,
    ) -> Result<Response<pb::ConfirmDossierReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn notify(
        &self,
        _: Request<pb::NotifyRequest>,
    ) -> Result<Response<pb::NotifyReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn freshness(
        &self,
        _: Request<pb::FreshnessRequest>,
    ) -> Result<Response<pb::FreshnessReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn read_share(
        &self,
        req: Request<pb::SignedReadRequest>,
    ) -> Result<Response<pb::ReadShareReply>, Status> {
        let request = req.into_inner().request;
        let hash = hex::encode(sha256(&request));
        let receipt = Receipt {
            owner: "ccas-rodez".parse().expect("id"),
            request: match self.lie {
                Lie::OtherRequest => hex::encode(sha256(b"another request")),
                _ => hash,
            },
            time: 0,
            items: match self.lie {
                Lie::NoSections => vec![],
                _ => vec![ReceiptItem {
                    section: "housing".parse().expect("section"),
                    leaf: 0,
                    basis: Some(Basis::Consent(ConsentId::random())),
                    written_at: Some(0),
                    refused: None,
                    message: None,
                }],
            },
        };
        let bytes = serde_json::to_vec(&receipt).expect("json");
        let signature = match self.lie {
            Lie::StrangerKey => NodeKey::generate().sign(Context::Receipt, &bytes),
            _ => self.key.sign(Context::Receipt, &bytes),
        };
        Ok(Response::new(pb::ReadShareReply {
            sections: vec![pb::SealedSection {
                section: "housing".into(),
                sealed: vec![0; 64],
            }],
            receipt_signature: signature.to_bytes().to_vec(),
            receipt: bytes,
        }))
    }
}

#[tokio::test]
async fn a_reader_refuses_receipts_that_do_not_hold_and_sections_it_cannot_open() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("a genuine read");
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let receipts_before = count_receipts(&audit_kinds(&auditor).await);

    for (lie, expect) in [
        (Lie::StrangerKey, "does not verify"),
        (Lie::OtherRequest, "another request"),
        (Lie::NoSections, "does not account for the sections"),
        (Lie::Garbage, "cannot be opened"),
    ] {
        // The CCAS node is replaced by a hostile one holding its keys.
        let impostor = c
            .impersonate("ccas-rodez", |key| HostileOwner { lie, key })
            .await;
        let refused = caf.read(&d, "housing", "ccas-rodez").await;
        let (_, msg) = code(refused.clone());
        assert_eq!(
            refusal(refused),
            (Code::FailedPrecondition, "peer_misbehaved".into())
        );
        assert!(msg.contains(expect), "{lie:?}: {msg}");
        impostor.stop().await;
    }
    // Only the true receipt (the garbage answer) was logged by the reader.
    assert_eq!(
        count_receipts(&audit_kinds(&auditor).await),
        receipts_before + 1
    );
}

#[tokio::test]
async fn a_key_package_that_is_not_the_members_own_records_nothing() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;
    let impostor = c
        .impersonate("caf12", |key| HostileOwner {
            lie: Lie::ForeignKeyPackage,
            key,
        })
        .await;
    let (status, msg) = code(
        ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(status, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("unusable key package"), "{msg}");
    assert_eq!(
        audit_kinds(&auditor).await,
        before,
        "no consent recorded, nobody added"
    );
    impostor.stop().await;
}

fn count_receipts(kinds: &[String]) -> usize {
    kinds.iter().filter(|k| *k == "receipt_logged").count()
}
