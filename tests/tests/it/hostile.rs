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
    /// Signs a checkpoint of another tree of the size it was witnessed at.
    TwoTrees(u64),
    /// Signs a checkpoint of a smaller tree than it was witnessed at.
    SmallerTree(u64),
    /// Signs a checkpoint of a larger tree that does not extend the witnessed one.
    Rewritten(u64),
    /// Serves a checkpoint signed by a key the roster does not list.
    ForgedCheckpoint(u64),
}

struct HostileOwner {
    lie: Lie,
    key: NodeKey,
    /// Its part of a dossier's report, as it chooses to give it.
    part: Option<pb::DossierAuditPart>,
}

impl HostileOwner {
    fn new(lie: Lie, key: NodeKey) -> Self {
        Self {
            lie,
            key,
            part: None,
        }
    }

    /// Answers every request for a dossier's entries with `part`.
    fn giving(part: pb::DossierAuditPart, key: NodeKey) -> Self {
        Self {
            part: Some(part),
            ..Self::new(Lie::Garbage, key)
        }
    }
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
    async fn offer_census(
        &self,
        _: Request<pb::OfferCensusRequest>,
    ) -> Result<Response<pb::OfferCensusReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn fetch_census(
        &self,
        _: Request<pb::FetchCensusRequest>,
    ) -> Result<Response<pb::FetchCensusReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn get_indicators(
        &self,
        _: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::SignedIndicators>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn confirm_dossier(
        &self,
        _: Request<pb::ConfirmDossierRequest>,
    ) -> Result<Response<pb::ConfirmDossierReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn get_witnessed(
        &self,
        _: Request<pb::GetWitnessedRequest>,
    ) -> Result<Response<pb::GetWitnessedReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointReply>, Status> {
        let (size, key) = match self.lie {
            Lie::TwoTrees(n) => (n, &self.key),
            Lie::SmallerTree(n) => (n - 1, &self.key),
            Lie::Rewritten(n) => (n + 5, &self.key),
            Lie::ForgedCheckpoint(n) => (n + 1, &NodeKey::generate()),
            _ => return Err(Status::unimplemented("hostile")),
        };
        let checkpoint = maillon_node::audit::note::Checkpoint {
            origin: "maillon/ccas-rodez".into(),
            size,
            root: rand::random(),
        }
        .sign(key);
        Ok(Response::new(pb::GetCheckpointReply {
            cosigned: checkpoint.clone(),
            checkpoint,
        }))
    }
    async fn get_consistency(
        &self,
        _: Request<pb::ProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        Ok(Response::new(pb::ProofReply {
            hashes: vec![vec![7; 32]; 3],
        }))
    }
    async fn get_inclusion(
        &self,
        _: Request<pb::ProofRequest>,
    ) -> Result<Response<pb::ProofReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn get_manifest(
        &self,
        _: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::SignedAuditManifest>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn get_leaves(
        &self,
        _: Request<pb::GetLeavesRequest>,
    ) -> Result<Response<pb::LeavesPage>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn get_dossier_audit(
        &self,
        _: Request<pb::GetDossierAuditRequest>,
    ) -> Result<Response<pb::DossierAuditPart>, Status> {
        self.part
            .clone()
            .map(Response::new)
            .ok_or_else(|| Status::unimplemented("hostile"))
    }
    async fn cosign(
        &self,
        _: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignReply>, Status> {
        Ok(Response::new(pb::CosignReply {}))
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
            .impersonate("ccas-rodez", |key| HostileOwner::new(lie, key))
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
        .impersonate("caf12", |key| {
            HostileOwner::new(Lie::ForeignKeyPackage, key)
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

/// What caf12 witnessed of the CCAS: its checkpoints and alarms.
async fn witnessed_by_caf(c: &Cluster) -> pb::AuditWitnessReply {
    let dpo = c
        .user(
            "caf12",
            &format!("dpo-{}", rand::random::<u32>()),
            Role::Auditor,
        )
        .await;
    dpo.api()
        .audit_witness(dpo.req(pb::AuditWitnessRequest {}))
        .await
        .expect("witness state")
        .into_inner()
}

#[tokio::test]
async fn every_node_witnesses_its_peers_and_cosigns_their_checkpoints() {
    let c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    let ccas = c.running("ccas-rodez").node().clone();
    assert!(ccas.checkpoint_if_grown().await.expect("checkpoint"));
    assert!(
        !ccas.checkpoint_if_grown().await.expect("nothing new"),
        "only when it grew"
    );
    let caf = c.running("caf12").node().clone();
    assert_eq!(caf.witness_peers().await, 2, "the CCAS and the département");
    // The CCAS serves its checkpoint with the CAF's cosignature, which
    // verifies under the CAF's roster key (C2SP tlog-cosignature).
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let own = dpo
        .api()
        .audit_witness(dpo.req(pb::AuditWitnessRequest {}))
        .await
        .expect("state")
        .into_inner();
    let body: String = own.cosigned.split("\n\n").next().expect("body").to_owned() + "\n";
    let line = own
        .cosigned
        .lines()
        .find(|l| l.starts_with("\u{2014} maillon/caf12 "))
        .expect("the CAF's cosignature");
    let caf_key = c.member("caf12").card.signing_key;
    maillon_node::audit::note::verify_cosignature(line, &body, "maillon/caf12", &caf_key)
        .expect("it verifies");
    // The log grows; the next round checks consistency and accepts it.
    c.desk("ccas-rodez", "agent-2")
        .await
        .open()
        .await
        .expect("open");
    assert!(ccas.checkpoint_if_grown().await.expect("checkpoint"));
    assert_eq!(caf.witness_peers().await, 1, "only the CCAS grew");
    let seen = witnessed_by_caf(&c).await;
    assert!(seen.alarms.is_empty(), "{:?}", seen.alarms);
    assert_eq!(seen.peers.len(), 2);
    assert_eq!(caf.witness_alarm_count(), 0);
}

#[tokio::test]
async fn a_node_that_shows_another_history_raises_an_alarm_with_its_evidence() {
    let mut c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    let ccas = c.running("ccas-rodez").node().clone();
    ccas.checkpoint_if_grown().await.expect("checkpoint");
    let size = ccas.audit_log().size();
    c.running("caf12").node().witness_peers().await;
    let cases = [
        (Lie::TwoTrees(size), Some("two different trees")),
        (Lie::SmallerTree(size), Some("after one of")),
        (Lie::Rewritten(size), Some("does not extend")),
        // Signed by a key the CCAS never held: it proves nothing against
        // the CCAS, so it raises nothing, and is not accepted either.
        (Lie::ForgedCheckpoint(size), None),
    ];
    let mut raised = 0;
    for (lie, reason) in cases {
        let impostor = c
            .impersonate("ccas-rodez", |key| HostileOwner::new(lie, key))
            .await;
        let caf = c.running("caf12").node().clone();
        caf.witness_peers().await;
        caf.witness_peers().await;
        let seen = witnessed_by_caf(&c).await;
        if let Some(reason) = reason {
            raised += 1;
            let alarm = seen
                .alarms
                .iter()
                .find(|a| a.reason.contains(reason))
                .expect(reason);
            assert_eq!(alarm.member, "ccas-rodez");
            assert!(
                !alarm.first.is_empty() && !alarm.second.is_empty(),
                "both checkpoints kept"
            );
        }
        assert_eq!(
            seen.alarms.len(),
            raised,
            "{lie:?}: one alarm kept per fault"
        );
        // The witnessed checkpoint stays the honest one.
        let kept = seen
            .peers
            .iter()
            .find(|p| p.member == "ccas-rodez")
            .expect("kept");
        assert!(kept.checkpoint.contains(&format!("\n{size}\n")));
        impostor.stop().await;
    }
    assert_eq!(
        c.running("caf12").node().witness_alarm_count(),
        6,
        "every round that saw a fault counts"
    );
    let dpo = c.user("caf12", "dpo", Role::Auditor).await;
    assert_eq!(
        audit_kinds(&dpo)
            .await
            .iter()
            .filter(|k| *k == "witness_alarm")
            .count(),
        3
    );
    // Restarted, the CAF keeps what it witnessed and the evidence.
    c.restart("caf12").await;
    let seen = witnessed_by_caf(&c).await;
    assert_eq!(seen.alarms.len(), 3);
    assert!(seen.peers.iter().any(|p| p.member == "ccas-rodez"));
}

#[tokio::test]
async fn a_log_takes_only_true_cosignatures_of_its_own_recent_checkpoints() {
    use maillon_node::audit::note::{self, Checkpoint};
    use maillon_node::service::PeerNetwork;
    let c = Cluster::start().await;
    let ccas = c.running("ccas-rodez").node().clone();
    c.desk("ccas-rodez", "agent")
        .await
        .open()
        .await
        .expect("open");
    ccas.checkpoint_if_grown().await.expect("checkpoint");
    let note = ccas.audit_log().latest_checkpoint().expect("checkpoint");
    let body = Checkpoint::parse_body(&note).expect("body").body();
    let owner = c.member("ccas-rodez");
    let cd = c.peer_as("cd12");
    let cd_key = c.key("cd12");
    // Signed by a key the roster does not list for cd12: refused.
    let forged = note::cosign(&body, 1, "maillon/cd12", &NodeKey::generate());
    let (got, _) = code(
        cd.cosign(&owner, &body, &forged)
            .await
            .map_err(maillon_node::transport::status),
    );
    assert_eq!(got, Code::InvalidArgument);
    // A true cosignature of a tree the log never signed: refused.
    let other = Checkpoint {
        origin: "maillon/ccas-rodez".into(),
        size: 1,
        root: [3; 32],
    }
    .body();
    let line = note::cosign(&other, 1, "maillon/cd12", &cd_key);
    let (got, _) = code(
        cd.cosign(&owner, &other, &line)
            .await
            .map_err(maillon_node::transport::status),
    );
    assert_eq!(got, Code::InvalidArgument);
    // A true one of its checkpoint: kept and served.
    let line = note::cosign(&body, 1, "maillon/cd12", &cd_key);
    cd.cosign(&owner, &body, &line).await.expect("taken");
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let own = dpo
        .api()
        .audit_witness(dpo.req(pb::AuditWitnessRequest {}))
        .await
        .expect("state")
        .into_inner();
    assert!(own.cosigned.contains(&line), "{}", own.cosigned);
}

/// An owner that shows the CAF one history and the département another
/// (each witness alone sees nothing wrong) is caught by the auditor, who
/// holds what both witnessed.
#[tokio::test]
async fn an_owner_showing_two_histories_to_two_witnesses_is_named_by_the_auditor() {
    let mut c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    let ccas = c.running("ccas-rodez").node().clone();
    ccas.checkpoint_if_grown().await.expect("checkpoint");
    let size = ccas.audit_log().size();
    drop(ccas); // Its store must be free when the node starts again.
    c.running("caf12").node().witness_peers().await;
    let impostor = c
        .impersonate("ccas-rodez", |key| {
            HostileOwner::new(Lie::TwoTrees(size), key)
        })
        .await;
    c.running("cd12").node().witness_peers().await;
    impostor.stop().await;
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    c.fed
        .node_mut("ccas-rodez")
        .start(clock)
        .await
        .expect("the CCAS back");
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let genesis = c.genesis().signed().clone();
    let (bundles, unfetched) = maillon_cli::audit::fetch_bundles(&dpo, &genesis, None, true)
        .await
        .expect("every log");
    assert!(unfetched.is_empty(), "{unfetched:?}");
    let o = maillon_cli::audit::verify::verify_bundles(&genesis, &bundles, None, 0);
    // Whether the département had already witnessed the true log (then it
    // raised an alarm) or saw the CCAS first through the lie (then the two
    // witnesses hold two trees), the CCAS is named, with the département.
    assert!(
        o.findings.iter().any(|f| f.node == "ccas-rodez"
            && f.reason.contains("cd12")
            && (f.reason.contains("two histories")
                || f.reason.contains("another history")
                || f.reason.contains("two different trees"))),
        "{:#?}",
        o.findings
    );
    assert!(
        o.findings.iter().all(|f| f.node == "ccas-rodez"),
        "nobody else is blamed: {:#?}",
        o.findings
    );
}

/// An owner that leaves a read out of its part of the person's access
/// report is caught by the receipt the reader kept: the report states the
/// omission, shows the read from the receipt, and the command exits 1.
#[tokio::test]
async fn an_owner_leaving_a_read_out_of_the_report_is_caught_by_the_readers_receipt() {
    use maillon_node::service::PeerNetwork as _;
    let mut c = Cluster::start().await;
    let (_ccas, _caf, d, _) = c.housing_read_by_the_caf().await;
    let dossier: maillon_node::types::DossierId = d.parse().expect("id");
    c.running("ccas-rodez")
        .node()
        .checkpoint_if_grown()
        .await
        .expect("checkpoint");
    // What the CCAS truly answers the CAF, less the CAF's read.
    let mut part = c
        .peer_as("caf12")
        .get_dossier_audit(&c.member("ccas-rodez"), &dossier, 0, 0, None)
        .await
        .expect("the CCAS's part");
    let read_at = part
        .entries
        .iter()
        .find(|e| {
            matches!(
                maillon_node::audit::AuditEntry::from_bytes(&e.entry).map(|x| x.event),
                Ok(maillon_node::audit::AuditEvent::ReadGranted { .. })
            )
        })
        .expect("the read")
        .index;
    part.entries.retain(|e| e.index != read_at);
    let lying = maillon_node::transport::part_to_pb(part);
    let impostor = c
        .impersonate("ccas-rodez", |key| HostileOwner::giving(lying, key))
        .await;
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let report = c.access_report(&caf_dpo, &d).await;
    let omission = report
        .anomalies
        .iter()
        .find(|a| a.member == "ccas-rodez")
        .expect("the omission is stated");
    assert_eq!(omission.index, Some(read_at));
    assert!(omission.text.contains("omission"), "{}", omission.text);
    let text = report.text();
    assert!(
        text.contains("détient le reçu signé par CCAS de Rodez"),
        "the read is still told: {text}"
    );
    assert!(text.contains("ANOMALIES"), "{text}");
    let dir = c.node("caf12").dir.clone();
    let err = super::cli::maillon(&[
        "--profile",
        &super::cli::path(&dir, "dpo.profile.toml"),
        "audit",
        "report",
        &d,
        "--roster",
        &super::cli::path(&dir, "roster.json"),
    ])
    .await
    .expect_err("printed, then exit 1");
    assert_eq!(
        maillon_cli::exit::exit_code(&err),
        maillon_cli::exit::FAILURE
    );
    impostor.stop().await;
}

/// An owner that answers with its part as it stood before a read (a true
/// checkpoint it signed earlier, every proof valid) is caught by the
/// receipt the reader kept: its part stops before the receipted leaf.
#[tokio::test]
async fn an_owner_answering_with_a_part_older_than_a_read_is_caught() {
    use maillon_node::service::PeerNetwork as _;
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let dossier: maillon_node::types::DossierId = d.parse().expect("id");
    // The CAF attaches, so that it holds the dossier before any read.
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attach");
    c.running("ccas-rodez")
        .node()
        .checkpoint_if_grown()
        .await
        .expect("checkpoint");
    let before = c
        .peer_as("caf12")
        .get_dossier_audit(&c.member("ccas-rodez"), &dossier, 0, 0, None)
        .await
        .expect("the CCAS's part before the read");
    caf.read(&d, "housing", "ccas-rodez").await.expect("read");
    let stale = maillon_node::transport::part_to_pb(before);
    let impostor = c
        .impersonate("ccas-rodez", |key| HostileOwner::giving(stale, key))
        .await;
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let report = c.access_report(&caf_dpo, &d).await;
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| a.member == "ccas-rodez" && a.text.contains("s'arrête")),
        "{:#?}",
        report.anomalies
    );
    assert!(
        report
            .text()
            .contains("détient le reçu signé par CCAS de Rodez"),
        "the read is told from the receipt"
    );
    impostor.stop().await;
}

/// A member whose pages of a part do not advance (a `next` that goes back)
/// is not followed: its part is refused and stated, the report still made.
#[tokio::test]
async fn a_member_whose_pages_do_not_advance_is_not_followed() {
    use maillon_node::service::PeerNetwork as _;
    let mut c = Cluster::start().await;
    let (_ccas, _caf, d, _) = c.housing_read_by_the_caf().await;
    c.running("ccas-rodez")
        .node()
        .checkpoint_if_grown()
        .await
        .expect("checkpoint");
    let mut part = c
        .peer_as("caf12")
        .get_dossier_audit(&c.member("ccas-rodez"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("the CCAS's part");
    part.next = Some(0);
    let looping = maillon_node::transport::part_to_pb(part);
    let impostor = c
        .impersonate("ccas-rodez", |key| HostileOwner::giving(looping, key))
        .await;
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let report = c.access_report(&caf_dpo, &d).await;
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| a.member == "ccas-rodez" && a.text.contains("do not advance")),
        "{:#?}",
        report.anomalies
    );
    impostor.stop().await;
}
