//! Auditing across nodes: what a member's log shows another member, a
//! dossier's entries proven from every member holding it, and the auditor's
//! engine catching what a node hides (a rewritten log, a read missing at
//! the owner, a forged cosignature, a truncated log).

use maillon_cli::audit::verify::{Outcome, verify_bundles};
use maillon_cli::audit::{AuditorState, fetch_bundle};
use maillon_node::audit::bundle::{Bundle, Leaf, SignedManifest};
use maillon_node::audit::merkle;
use maillon_node::audit::note::Checkpoint;
use maillon_node::audit::{AuditEntry, AuditEvent};
use maillon_node::service::PeerNetwork as _;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, refusal};
use tonic::Code;

/// Checkpoints every log, then lets every node witness every other.
pub(crate) async fn checkpoint_and_witness(c: &Cluster) {
    for id in ["cd12", "ccas-rodez", "caf12"] {
        c.running(id)
            .node()
            .checkpoint_if_grown()
            .await
            .expect("checkpoint");
    }
    for id in ["cd12", "ccas-rodez", "caf12"] {
        c.running(id).node().witness_peers().await;
    }
}

#[tokio::test]
async fn audit_queries_across_nodes_answer_only_what_the_charter_allows() {
    let c = Cluster::start().await;
    let (ccas, _caf, d, _consent) = c.housing_read_by_the_caf().await;
    let other = ccas.open().await.expect("a dossier the CAF has no part in");
    ccas.put(&other, "housing", r#"{"situation":"hébergé"}"#)
        .await
        .expect("put");
    checkpoint_and_witness(&c).await;

    // Only auditors ask.
    let worker = c.user("ccas-rodez", "agent-2", Role::Caseworker).await;
    let denied = [
        refusal(
            worker
                .api()
                .audit_manifest(worker.req(pb::AuditManifestRequest::default()))
                .await,
        ),
        refusal(
            worker
                .api()
                .audit_leaves(worker.req(pb::AuditLeavesRequest::default()))
                .await,
        ),
        refusal(
            worker
                .api()
                .audit_dossier(worker.req(pb::AuditDossierRequest {
                    dossier: d.clone(),
                    ..Default::default()
                }))
                .await,
        ),
    ];
    for (code, _) in denied {
        assert_eq!(code, Code::PermissionDenied);
    }
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let (code, _) = refusal(
        dpo.api()
            .audit_leaves(dpo.req(pb::AuditLeavesRequest {
                member: String::new(),
                from: 0,
                limit: 10_001,
            }))
            .await,
    );
    assert_eq!(
        code,
        Code::InvalidArgument,
        "a page is at most 10,000 leaves"
    );
    let (code, _) = refusal(
        dpo.api()
            .audit_dossier(dpo.req(pb::AuditDossierRequest {
                dossier: "not-a-dossier".into(),
                ..Default::default()
            }))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    let (code, why) = refusal(
        dpo.api()
            .audit_dossier(dpo.req(pb::AuditDossierRequest {
                dossier: d.clone(),
                size: 999_999,
                ..Default::default()
            }))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "no such checkpoint: {why}");

    // The CAF's auditor sees the CCAS's entries about the dossier it read,
    // and only the hash of everything else about the CCAS's other dossier.
    let caf_dpo = c.user("caf12", "dpo-caf", Role::Auditor).await;
    let ccas_id = "ccas-rodez".parse().expect("id");
    let seen = fetch_bundle(&caf_dpo, Some(&ccas_id))
        .await
        .expect("bundle");
    let own = fetch_bundle(&dpo, None).await.expect("own bundle");
    assert_eq!(seen.leaves.len(), own.leaves.len(), "the same tree");
    let mut shown_about_d = 0;
    let mut withheld = 0;
    for (theirs, mine) in seen.leaves.iter().zip(&own.leaves) {
        assert_eq!(theirs.hash(), mine.hash(), "every leaf hashes the same");
        let Leaf::Entry(mine) = mine else {
            panic!("the own auditor sees every entry")
        };
        let entry = AuditEntry::from_bytes(mine).expect("entry");
        match theirs {
            Leaf::Entry(_) => {
                assert_ne!(
                    entry.event.dossier().map(|x| x.to_string()),
                    Some(other.clone()),
                    "nothing about a dossier the CAF does not hold"
                );
                assert!(
                    !matches!(entry.event, AuditEvent::UserCreated { .. }),
                    "nothing about the CCAS's staff"
                );
                if entry.event.dossier().map(|x| x.to_string()) == Some(d.clone()) {
                    shown_about_d += 1;
                }
            }
            Leaf::Withheld(_) => withheld += 1,
        }
    }
    assert!(
        shown_about_d >= 2,
        "the consent naming the CAF and its read"
    );
    assert!(withheld >= 3, "the other dossier and the staff");

    // A member with no part in the dossier, or one only refused a read of
    // it, is answered as by a node holding nothing: asking tells it nothing.
    let empty = c
        .peer_as("cd12")
        .get_dossier_audit(&c.member("ccas-rodez"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("an empty part");
    assert!(empty.entries.is_empty() && empty.holders.is_empty());
    let cd = c.desk("cd12", "agent-cd").await;
    let (code, _) = refusal(cd.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(code, Code::PermissionDenied, "no consent names cd12");
    let still = c
        .peer_as("cd12")
        .get_dossier_audit(&c.member("ccas-rodez"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("an empty part");
    assert!(
        still.entries.is_empty() && still.holders.is_empty(),
        "a refusal names cd12 and grants it nothing: {:?}",
        still.entries.len()
    );
    let caf = c.peer_as("caf12");
    let part = caf
        .get_dossier_audit(&c.member("ccas-rodez"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("the CAF read it");
    assert!(!part.entries.is_empty());
    // A member that holds nothing of the dossier says so: an empty part.
    let nothing = c
        .peer_as("ccas-rodez")
        .get_dossier_audit(&c.member("cd12"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("cd12 holds nothing of it");
    assert!(nothing.entries.is_empty() && nothing.next.is_none());

    // The report's parts: the CCAS's own and the CAF's, each entry proven
    // against its member's signed checkpoint.
    let mut parts = Vec::new();
    for member in ["", "caf12"] {
        parts.push(
            dpo.api()
                .audit_dossier(dpo.req(pb::AuditDossierRequest {
                    dossier: d.clone(),
                    member: member.into(),
                    ..Default::default()
                }))
                .await
                .expect("a part")
                .into_inner()
                .part
                .expect("a part"),
        );
    }
    let members: Vec<&str> = parts.iter().map(|p| p.member.as_str()).collect();
    assert_eq!(members, ["ccas-rodez", "caf12"]);
    for p in &parts {
        assert!(p.error.is_empty(), "{}: {}", p.member, p.error);
        let cp = Checkpoint::verify(
            &p.checkpoint,
            &maillon_node::audit::origin(&p.member.parse().expect("id")),
            &c.member(&p.member).card.signing_key,
        )
        .expect("signed by the member");
        for e in &p.entries {
            let proof: Vec<merkle::Hash> = e
                .proof
                .iter()
                .map(|h| h.as_slice().try_into().expect("32 bytes"))
                .collect();
            assert!(merkle::verify_inclusion(
                e.index,
                cp.size,
                &merkle::leaf_hash(&e.entry),
                &proof,
                &cp.root
            ));
            let entry = AuditEntry::from_bytes(&e.entry).expect("entry");
            assert_eq!(
                entry.event.dossier().map(|x| x.to_string()),
                Some(d.clone())
            );
        }
    }
    assert!(
        parts[1].entries.iter().any(|e| matches!(
            AuditEntry::from_bytes(&e.entry).map(|x| x.event),
            Ok(AuditEvent::ReceiptLogged { .. })
        )),
        "the CAF's receipt of its read"
    );
}

/// The auditor's summary, failing the test with every finding.
fn clean(o: &Outcome) {
    assert!(o.findings.is_empty(), "{:#?}", o.findings);
}

/// `bundle`'s manifest, edited and signed again with `key` (an owner
/// rewriting what it exports; it holds its own key).
pub(crate) fn resign(
    bundle: &Bundle,
    key: &maillon_node::crypto::NodeKey,
    edit: impl FnOnce(&mut maillon_node::audit::bundle::Manifest),
) -> SignedManifest {
    let mut m = bundle.manifest.unverified().expect("manifest");
    edit(&mut m);
    SignedManifest::sign(&m, key)
}

#[tokio::test]
async fn the_auditors_engine_catches_what_a_node_hides() {
    let c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    checkpoint_and_witness(&c).await;
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let ccas = fetch_bundle(&dpo, None).await.expect("CCAS bundle");
    let caf = fetch_bundle(&caf_dpo, None).await.expect("CAF bundle");
    let genesis = c.genesis().signed().clone();
    let now = maillon_node::clock::Clock::now(&*c.clock);

    // Everything holds: the read has its consent, the CAF's receipt is the
    // CCAS's leaf, the CCAS's checkpoint is cosigned by its peers.
    let mut state = AuditorState::default();
    let o = verify_bundles(
        &genesis,
        &[ccas.clone(), caf.clone()],
        Some(&mut state),
        now,
    );
    clean(&o);
    assert_eq!(o.reads_checked, 1);
    assert_eq!(o.receipts_checked, 1);
    let ccas_summary = &o.nodes[0];
    assert!(ccas_summary.cosigners.iter().any(|m| m.as_str() == "caf12"));
    assert!(state.nodes.contains_key("ccas-rodez"));

    // The CCAS rewrites its log without the read, and signs it all again.
    let key = c.key("ccas-rodez");
    let read_at = ccas
        .leaves
        .iter()
        .position(|l| {
            matches!(l, Leaf::Entry(b) if matches!(
                AuditEntry::from_bytes(b).map(|e| e.event),
                Ok(AuditEvent::ReadGranted { .. })
            ))
        })
        .expect("the read") as u64;
    let mut rewritten = ccas.clone();
    let filler = AuditEntry {
        time: 0,
        event: AuditEvent::RosterAdopted {
            version: 1,
            hash: "0".repeat(64),
        },
    };
    rewritten.leaves[read_at as usize] = Leaf::Entry(filler.to_bytes());
    let hashes: Vec<merkle::Hash> = rewritten.leaves.iter().map(Leaf::hash).collect();
    let cp = Checkpoint {
        origin: maillon_node::audit::origin(&"ccas-rodez".parse().expect("id")),
        size: hashes.len() as u64,
        root: merkle::root(&hashes),
    };
    let note = cp.sign(&key);
    rewritten.manifest = resign(&ccas, &key, |m| {
        m.checkpoint = note.clone();
        m.cosigned = note.clone();
    });
    let o = verify_bundles(&genesis, &[rewritten, caf.clone()], Some(&mut state), now);
    let about_ccas: Vec<_> = o
        .findings
        .iter()
        .filter(|f| f.node == "ccas-rodez")
        .collect();
    assert!(
        about_ccas
            .iter()
            .any(|f| f.index == Some(read_at) && f.reason.contains("rewritten")),
        "the auditor's memory names the entry: {about_ccas:#?}"
    );
    assert!(
        about_ccas
            .iter()
            .any(|f| f.index == Some(read_at) && f.reason.contains("missing from its log")),
        "the CAF's receipt names it too: {about_ccas:#?}"
    );
    assert!(
        about_ccas
            .iter()
            .any(|f| f.reason.contains("caf12 witnessed")),
        "and the CAF witnessed the other history: {about_ccas:#?}"
    );

    // A forged cosignature: the CAF's line, its signature bytes changed.
    let mut forged = ccas.clone();
    let signed = ccas.manifest.unverified().expect("manifest").cosigned;
    let line = signed
        .lines()
        .find(|l| l.starts_with("\u{2014} maillon/caf12 "))
        .expect("the CAF cosigned")
        .to_owned();
    let mut blob = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(line.rsplit_once(' ').expect("sig").1)
            .expect("b64")
    };
    blob[20] ^= 1;
    let bad = format!("\u{2014} maillon/caf12 {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&blob)
    });
    forged.manifest = resign(&ccas, &key, |m| m.cosigned = signed.replace(&line, &bad));
    let o = verify_bundles(&genesis, &[forged], None, now);
    assert!(
        o.findings.iter().any(|f| f.node == "ccas-rodez"
            && f.reason.contains("cosignature by caf12")
            && f.reason.contains("forged")),
        "{:#?}",
        o.findings
    );

    // A truncated log, and a checkpoint signed by another key.
    let mut cut = ccas.clone();
    cut.leaves.pop();
    let o = verify_bundles(&genesis, &[cut], None, now);
    assert!(
        o.findings.iter().any(|f| f.reason.contains("truncated")),
        "{:#?}",
        o.findings
    );
    let mut unsigned = ccas.clone();
    let stranger = maillon_node::crypto::NodeKey::generate();
    unsigned.manifest = resign(&ccas, &key, |m| {
        let cp = Checkpoint::parse_body(&m.checkpoint).expect("body");
        m.checkpoint = cp.sign(&stranger);
    });
    let o = verify_bundles(&genesis, &[unsigned], None, now);
    assert!(
        o.findings
            .iter()
            .any(|f| f.node == "ccas-rodez" && f.reason.starts_with("its checkpoint")),
        "{:#?}",
        o.findings
    );
    // A manifest signed by another key is not the node's.
    let mut impostor = ccas.clone();
    impostor.manifest = resign(&ccas, &stranger, |_| {});
    let o = verify_bundles(&genesis, &[impostor], None, now);
    assert!(
        o.findings
            .iter()
            .any(|f| f.reason.contains("not signed by ccas-rodez's key")),
        "{:#?}",
        o.findings
    );
}

/// `audit report`: the person's access report gathered from every member
/// holding the dossier, each entry proven by a C2SP tlog-proof in its
/// member's signed, witnessed log; the CAF's read confirmed by its receipt;
/// agents unnamed by default; a member that does not answer is stated and
/// the command exits 1; bad input and a caseworker are refused.
#[tokio::test]
async fn the_access_report_gathers_every_holder_and_proves_each_entry() {
    use maillon_node::audit::note::TlogProof;
    let mut c = Cluster::start().await;
    let (_ccas, _caf, d, _consent) = c.housing_read_by_the_caf().await;
    checkpoint_and_witness(&c).await;
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    drop(c.user("ccas-rodez", "agent-2", Role::Caseworker).await);
    let dossier: maillon_node::types::DossierId = d.parse().expect("id");
    let now = maillon_node::clock::Clock::now(&*c.clock);
    let genesis = c.genesis().signed().clone();
    let report = maillon_cli::audit::report::gather(&dpo, &genesis, &dossier, now)
        .await
        .expect("report");
    assert!(report.anomalies.is_empty(), "{:#?}", report.anomalies);
    let sources: Vec<&str> = report.sources.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(sources, ["ccas-rodez", "caf12"]);
    for s in &report.sources {
        assert!(s.problem.is_none() && s.entries > 0, "{s:?}");
        assert!(!s.cosigners.is_empty(), "{} was witnessed", s.member);
    }
    for line in &report.lines {
        let proof = TlogProof::parse(&line.proof).expect("a C2SP tlog-proof");
        assert_eq!(proof.index, line.index);
        let member = c.member(line.member.as_str());
        proof
            .verify(
                line.entry.as_bytes(),
                &maillon_node::audit::origin(&line.member),
                &member.card.signing_key,
            )
            .expect("the entry is in its member's signed log");
        assert!(line.witnessed, "{}", line.text);
        assert!(line.time > 0);
    }
    let read = report
        .lines
        .iter()
        .find(|l| {
            l.text
                .contains("a communiqué la section « logement » à CAF de l'Aveyron")
        })
        .expect("the CAF's read");
    assert_eq!(read.member.as_str(), "ccas-rodez");
    assert_eq!(
        read.confirmed_by
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
        ["caf12"]
    );
    assert!(
        read.text.contains("Base : votre consentement CNS-"),
        "{}",
        read.text
    );
    let text = report.text();
    for name in ["agent-ccas", "agent-caf"] {
        assert!(
            !text.contains(name),
            "agents are not named by default: {text}"
        );
    }
    let json = report.json();
    assert_eq!(json["agent_names"], false);
    for e in json["entries"].as_array().expect("entries") {
        assert!(e["entry"].is_null(), "entries name agents: withheld: {e}");
        let proof = TlogProof::parse(e["proof"].as_str().expect("proof")).expect("tlog-proof");
        let hash: merkle::Hash = hex::decode(e["leaf_hash"].as_str().expect("hash"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let member: maillon_node::types::MemberId =
            e["member"].as_str().expect("member").parse().expect("id");
        proof
            .verify_hash(
                &hash,
                &maillon_node::audit::origin(&member),
                &c.member(member.as_str()).card.signing_key,
            )
            .expect("the leaf hash is proven");
    }
    let err = super::cli::maillon(&[
        "--profile",
        &super::cli::path(&c.node("ccas-rodez").dir, "dpo.profile.toml"),
        "audit",
        "report",
        &maillon_node::types::DossierId::random().to_string(),
        "--roster",
        &super::cli::path(&c.node("ccas-rodez").dir, "roster.json"),
    ])
    .await
    .expect_err("a dossier nobody holds");
    assert_eq!(
        maillon_cli::exit::exit_code(&err),
        maillon_cli::exit::NOT_FOUND
    );

    // The command: printed in each format; refused to a caseworker and on a bad id.
    let dir = c.node("ccas-rodez").dir.clone();
    let (dpo_p, roster_p) = (
        super::cli::path(&dir, "dpo.profile.toml"),
        super::cli::path(&dir, "roster.json"),
    );
    let worker_p = super::cli::path(&dir, "agent-2.profile.toml");
    for format in ["text", "html", "json"] {
        super::cli::maillon(&[
            "--profile",
            &dpo_p,
            "audit",
            "report",
            &d,
            "--roster",
            &roster_p,
            "--format",
            format,
        ])
        .await
        .expect(format);
    }
    let err = super::cli::maillon(&[
        "--profile",
        &worker_p,
        "audit",
        "report",
        &d,
        "--roster",
        &roster_p,
    ])
    .await
    .expect_err("a caseworker");
    assert_eq!(
        maillon_cli::exit::exit_code(&err),
        maillon_cli::exit::REFUSED
    );
    let err = super::cli::maillon(&[
        "--profile",
        &dpo_p,
        "audit",
        "report",
        "DSU-nope",
        "--roster",
        &roster_p,
    ])
    .await
    .expect_err("a bad id");
    assert_eq!(
        maillon_cli::exit::exit_code(&err),
        maillon_cli::exit::BAD_INPUT
    );

    // The CAF down: its part is stated missing, the CCAS's entries stay.
    c.fed.node_mut("caf12").stop().await;
    let report = maillon_cli::audit::report::gather(&dpo, &genesis, &dossier, now)
        .await
        .expect("report");
    let missing = report
        .anomalies
        .iter()
        .find(|a| a.member == "caf12")
        .expect("the CAF's silence is stated");
    assert!(
        missing.text.contains("n'a pas fourni sa part"),
        "{}",
        missing.text
    );
    assert!(
        report
            .sources
            .iter()
            .any(|s| s.member.as_str() == "caf12" && s.problem.is_some())
    );
    let read = report
        .lines
        .iter()
        .find(|l| l.text.contains("à CAF de l'Aveyron"))
        .expect("the read, from the CCAS's log");
    assert!(read.confirmed_by.is_empty());
    let err = super::cli::maillon(&[
        "--profile",
        &dpo_p,
        "audit",
        "report",
        &d,
        "--roster",
        &roster_p,
    ])
    .await
    .expect_err("printed, then exit 1");
    assert_eq!(
        maillon_cli::exit::exit_code(&err),
        maillon_cli::exit::FAILURE
    );
}

/// Where the charter allows it (`report_agent_names`), the report names the
/// agents who read, beside their institution.
#[tokio::test]
async fn the_charter_may_let_the_report_name_agents() {
    let c = Cluster::start_with(|r| r.charter.report_agent_names = true).await;
    let (_ccas, _caf, d, _consent) = c.housing_read_by_the_caf().await;
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let report = c.access_report(&dpo, &d).await;
    assert!(report.agent_names);
    let text = report.text();
    assert!(
        text.contains("à CAF de l'Aveyron (agent « agent-caf »)"),
        "{text}"
    );
    assert!(
        text.contains("CCAS de Rodez (agent « agent-ccas ») a ouvert votre dossier"),
        "{text}"
    );
}

/// A part as a member (holding its own key) would serve it: `entries` as
/// its whole log, each with its inclusion proof against a checkpoint it signs.
fn hand_made_part(
    c: &Cluster,
    member: &str,
    entries: &[AuditEntry],
) -> maillon_node::service::DossierPart {
    let key = c.key(member);
    let raw: Vec<Vec<u8>> = entries.iter().map(AuditEntry::to_bytes).collect();
    let leaves: Vec<merkle::Hash> = raw.iter().map(|e| merkle::leaf_hash(e)).collect();
    let note = Checkpoint {
        origin: maillon_node::audit::origin(&member.parse().expect("id")),
        size: leaves.len() as u64,
        root: merkle::root(&leaves),
    }
    .sign(&key);
    maillon_node::service::DossierPart {
        member: member.parse().expect("id"),
        checkpoint: note.clone(),
        cosigned: note,
        consistency: Vec::new(),
        entries: raw
            .into_iter()
            .enumerate()
            .map(|(i, entry)| maillon_node::service::ProvenEntry {
                index: i as u64,
                entry,
                proof: merkle::inclusion_proof(&leaves, i).expect("proof"),
            })
            .collect(),
        holders: Vec::new(),
        next: None,
        error: None,
    }
}

/// The report's checks on parts a hostile member could serve, each signed
/// with the member's own key: a purpose that tries to start a line, a part
/// given twice, entries out of order or about another dossier, a forged
/// cosignature, a part under a key the member never held, a log shorter
/// than one witnessed, a read told without a receipt, and a consent id
/// borrowed by another member to change how a read's basis is told.
#[tokio::test]
async fn the_report_keeps_only_what_each_part_proves() {
    use maillon_cli::audit::report::{Fetched, assemble};
    use maillon_node::types::{DossierId, Section};
    let c = Cluster::start().await;
    let genesis = c.genesis().signed().clone();
    let (roster, keys) =
        maillon_cli::audit::verify::verify_chain(&genesis, std::slice::from_ref(&genesis))
            .expect("chain");
    let d = DossierId::random();
    let other = DossierId::random();
    let consent = maillon_node::types::ConsentId::random();
    let (ccas, caf): (maillon_node::types::MemberId, maillon_node::types::MemberId) = (
        "ccas-rodez".parse().expect("id"),
        "caf12".parse().expect("id"),
    );
    let at = |time: i64, event: AuditEvent| AuditEntry { time, event };
    let read = |purpose: &str| AuditEvent::ReadGranted {
        request: "ab".repeat(32),
        reader: caf.clone(),
        user: "agent-caf".parse().expect("user"),
        role: Role::Caseworker,
        dossier: d.clone(),
        section: Section::Housing,
        consent: Some(consent.clone()),
        break_glass: None,
        purpose: purpose.into(),
        nonce: "00".repeat(16),
    };
    let ccas_log = [
        at(
            1_800_000_000,
            AuditEvent::DossierOpened {
                dossier: d.clone(),
                by: "agent-ccas".parse().expect("user"),
            },
        ),
        at(
            1_800_000_010,
            read("aide au logement\n- le 01/01/2026 à 00h00 : rien ne s'est passé"),
        ),
        at(
            1_800_000_020,
            AuditEvent::SectionRead {
                dossier: other.clone(),
                section: Section::Housing,
                by: "agent-ccas".parse().expect("user"),
            },
        ),
    ];
    // The CAF claims the CCAS's consent id was a legal mission, and says it
    // read from the CCAS without keeping the receipt.
    let caf_log = [
        at(
            1_800_000_005,
            AuditEvent::ConsentGranted {
                consent: consent.clone(),
                dossier: d.clone(),
                sections: vec![Section::Housing],
                audience: vec![caf.clone()],
                purpose: "x".into(),
                basis: maillon_node::types::LegalBasis::LegalMission {
                    provision: "loi imaginaire".into(),
                },
                collection: maillon_node::types::Collection::Informed,
                valid_from: "2027-01-01".parse().expect("date"),
                until: "2027-12-31".parse().expect("date"),
                masked: Vec::new(),
                by: "agent-caf".parse().expect("user"),
            },
        ),
        at(
            1_800_000_030,
            AuditEvent::ReceiptLogged {
                owner: ccas.clone(),
                user: "agent-caf".parse().expect("user"),
                dossier: d.clone(),
                section: Section::Resources,
                request: "cd".repeat(32),
                owner_leaf: 1,
                break_glass: None,
                receipt: String::new(),
                receipt_signature: String::new(),
            },
        ),
    ];
    let honest = hand_made_part(&c, "ccas-rodez", &ccas_log);
    let caf_part = hand_made_part(&c, "caf12", &caf_log);
    let none = std::collections::HashMap::new();
    let report = assemble(
        &roster,
        &keys,
        &d,
        &[
            Fetched::Part(honest.clone()),
            Fetched::Part(caf_part.clone()),
        ],
        &none,
        1_800_000_100,
    );
    let text = report.text();
    assert!(
        !text.lines().any(|l| l.starts_with("- le 01/01/2026")),
        "a logged purpose cannot start a line: {text}"
    );
    assert!(
        text.contains("aide au logement\\n- le 01/01/2026"),
        "{text}"
    );
    assert!(
        text.contains("Base : votre consentement"),
        "the CAF cannot retell the CCAS's consent: {text}"
    );
    assert!(
        !text.contains("Base : mission prévue par la loi (loi imaginaire)"),
        "{text}"
    );
    let about: Vec<&str> = report.anomalies.iter().map(|a| a.text.as_str()).collect();
    assert!(
        report.anomalies.iter().any(|a| a.member == "ccas-rodez"
            && a.index == Some(2)
            && a.text.contains("ne concerne pas ce dossier")),
        "an entry about another dossier is left out: {about:#?}"
    );
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| a.member == "caf12" && a.text.contains("sans en conserver le reçu signé")),
        "a read told without a receipt blames the teller, not the owner: {about:#?}"
    );
    assert!(
        !report
            .anomalies
            .iter()
            .any(|a| a.member == "ccas-rodez" && a.text.contains("omission")),
        "{about:#?}"
    );

    // Given twice, out of order, with a forged cosignature, under a
    // stranger's key, or shorter than what was witnessed.
    let mut swapped = honest.clone();
    swapped.entries.swap(0, 1);
    let mut forged = honest.clone();
    let body = forged
        .checkpoint
        .split_once("\n\n")
        .expect("note")
        .0
        .to_owned()
        + "\n";
    forged.cosigned.push_str(&maillon_node::audit::note::cosign(
        &body,
        1_800_000_000,
        "maillon/caf12",
        &maillon_node::crypto::NodeKey::generate(),
    ));
    forged.cosigned.push('\n');
    let mut stranger = honest.clone();
    stranger.checkpoint = Checkpoint::parse_body(&honest.checkpoint)
        .expect("body")
        .sign(&maillon_node::crypto::NodeKey::generate());
    let witnessed: std::collections::HashMap<_, _> = [(ccas.clone(), 99)].into();
    for (case, fetched, witnessed, want) in [
        (
            "twice",
            vec![Fetched::Part(honest.clone()), Fetched::Part(honest.clone())],
            &none,
            "plus d'une part",
        ),
        (
            "swapped",
            vec![Fetched::Part(swapped)],
            &none,
            "pas dans l'ordre",
        ),
        (
            "forged",
            vec![Fetched::Part(forged)],
            &none,
            "contresignature de caf12 qui ne vérifie pas",
        ),
        (
            "stranger",
            vec![Fetched::Part(stranger)],
            &none,
            "ne tient pas",
        ),
        (
            "shorter",
            vec![Fetched::Part(honest.clone())],
            &witnessed,
            "plus court que les 99",
        ),
    ] {
        let r = assemble(&roster, &keys, &d, &fetched, witnessed, 1_800_000_100);
        assert!(
            r.anomalies
                .iter()
                .any(|a| a.member == "ccas-rodez" && a.text.contains(want)),
            "{case}: {:#?}",
            r.anomalies
        );
        if case == "forged" {
            assert!(r.sources[0].cosigners.is_empty());
        }
    }
}

/// The holder's auditor is shown the part of a reader that never attached
/// to the dossier: its node asks with a proof that it holds the dossier
/// (its own opening entry, proven in its signed log). A member presenting
/// another's proof is answered as by a node holding nothing.
#[tokio::test]
async fn a_reader_that_never_attached_answers_a_holder_that_proves_it_holds_the_dossier() {
    let c = Cluster::start().await;
    let (_ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("the CAF attaches");
    caf.put(&d, "resources", r#"{"rsa":"versé"}"#)
        .await
        .expect("the CAF writes its section");
    caf.grant(
        &d,
        &["resources"],
        &["cd12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("consent to the département");
    let cd = c.desk("cd12", "agent-cd").await;
    cd.read(&d, "resources", "caf12")
        .await
        .expect("the département reads, never attached");
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let report = c.access_report(&dpo, &d).await;
    assert!(report.anomalies.is_empty(), "{:#?}", report.anomalies);
    let sources: Vec<&str> = report.sources.iter().map(|s| s.member.as_str()).collect();
    assert!(sources.contains(&"cd12"), "{sources:?}");
    let read = report
        .lines
        .iter()
        .find(|l| {
            l.member.as_str() == "caf12"
                && l.text.contains("a communiqué la section « ressources »")
        })
        .expect("the CAF's read");
    assert_eq!(
        read.confirmed_by
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
        ["cd12"],
        "confirmed by the receipt the département kept"
    );

    // The CCAS's proof of holding, presented by cd12: refused as not its own.
    let own = c
        .peer_as("caf12")
        .get_dossier_audit(&c.member("ccas-rodez"), &d.parse().expect("id"), 0, 0, None)
        .await
        .expect("the CCAS's part, to the CAF that attached");
    let opened = own
        .entries
        .iter()
        .find(|e| {
            matches!(
                AuditEntry::from_bytes(&e.entry).map(|x| x.event),
                Ok(AuditEvent::DossierOpened { .. })
            )
        })
        .expect("the opening");
    let stolen = maillon_node::service::Holding {
        entry: opened.entry.clone(),
        proof: maillon_node::audit::note::TlogProof {
            extra: None,
            index: opened.index,
            hashes: opened.proof.clone(),
            checkpoint: own.checkpoint.clone(),
        }
        .encode(),
    };
    let refused = c
        .peer_as("cd12")
        .get_dossier_audit(
            &c.member("ccas-rodez"),
            &d.parse().expect("id"),
            0,
            0,
            Some(&stolen),
        )
        .await
        .expect("an empty part");
    assert!(
        refused.entries.is_empty(),
        "another member's proof proves nothing"
    );
    let shown = c
        .peer_as("ccas-rodez")
        .get_dossier_audit(
            &c.member("cd12"),
            &d.parse().expect("id"),
            0,
            0,
            Some(&stolen),
        )
        .await
        .expect("the holder's own proof");
    assert!(
        !shown.entries.is_empty(),
        "the holder's own proof opens the reader's part"
    );
}

/// A guard, not a proof (the window is narrow): a round that fetched a
/// checkpoint, then found a larger one another round had just accepted,
/// raised a false "smaller tree" alarm in a loaded demo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_rounds_at_once_raise_no_false_alarm_while_a_log_grows() {
    let c = Cluster::start().await;
    let ccas = c.running("ccas-rodez").node().clone();
    let caf = c.running("caf12").node().clone();
    let desk = c.desk("ccas-rodez", "agent-ccas").await;
    for _ in 0..30 {
        desk.open().await.expect("opened");
        // Upkeep's round and an asked-for one at once, while the peer signs
        // a larger tree.
        let (_, _, grown) = tokio::join!(
            caf.witness_peers(),
            caf.witness_peers(),
            ccas.checkpoint_if_grown()
        );
        grown.expect("checkpoint");
    }
    caf.witness_peers().await;
    let snapshot = caf.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.witness_alarms, 0);
}

#[tokio::test]
async fn the_audit_search_refuses_caseworkers_and_bad_filters_with_a_precise_status() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let search = |conn: &maillon_cli::client::Conn, r: pb::AuditSearchRequest| {
        let conn = conn.clone();
        async move { conn.api().audit_search(conn.req(r)).await }
    };
    let (code, _) = refusal(
        search(
            &ccas.conn,
            pb::AuditSearchRequest {
                limit: 5,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    for bad in [
        pb::AuditSearchRequest {
            kind: "no_such_kind".into(),
            ..Default::default()
        },
        pb::AuditSearchRequest {
            dossier: "DSU-faux".into(),
            ..Default::default()
        },
        pb::AuditSearchRequest {
            limit: 501,
            ..Default::default()
        },
        pb::AuditSearchRequest {
            since: Some(10),
            until: Some(10),
            ..Default::default()
        },
    ] {
        let (code, _) = refusal(search(&dpo, bad.clone()).await);
        assert_eq!(code, Code::InvalidArgument, "{bad:?}");
    }
    let found = search(
        &dpo,
        pb::AuditSearchRequest {
            dossier: d.clone(),
            kind: "section_written".into(),
            ..Default::default()
        },
    )
    .await
    .expect("search")
    .into_inner();
    assert_eq!(found.events.len(), 1);
    assert!(found.events[0].json.contains(&d));
}
