//! A node restarted mid-scenario keeps everything, and its log still verifies.

use maillon_node::audit::AuditError;
use maillon_node::daemon::StartError;
use maillon_node::service::ServiceError;
use maillon_node::types::Role;
use maillon_tests::{Cluster, HOUSING, audit_kinds, next_year};

#[tokio::test]
async fn a_restarted_owner_and_reader_keep_dossiers_consents_groups_and_logs() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("read before restart");
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;

    c.restart("ccas-rodez").await;
    c.restart("caf12").await;

    // Same tokens, same dossier, same section, same consent, same MLS groups.
    assert_eq!(
        ccas.get(&d, "housing").await.expect("section kept"),
        HOUSING
    );
    let consents = ccas
        .conn
        .api()
        .list_consents(
            ccas.conn
                .req(maillon_proto::v1::ListConsentsRequest { dossier: d.clone() }),
        )
        .await
        .expect("list")
        .into_inner()
        .consents;
    assert_eq!(consents.len(), 1);
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("read after restart")
            .json,
        HOUSING
    );

    let after = audit_kinds(&auditor).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "no entry lost or changed"
    );
    assert_eq!(after.last().map(String::as_str), Some("read_granted"));
    assert_eq!(
        c.verified_log_size(&auditor).await,
        after.len() as u64,
        "the log verifies after restart"
    );
    // The restart did not re-log the roster: it was already adopted.
    assert_eq!(after.iter().filter(|k| *k == "roster_adopted").count(), 1);
}

#[tokio::test]
async fn a_node_whose_log_lost_its_checkpoint_or_was_damaged_does_not_start() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    let node = c.fed.node_mut("ccas-rodez");
    node.stop().await;
    let audit = node.dir.join("audit");
    let checkpoint = std::fs::read(audit.join("checkpoint")).expect("a checkpoint exists");
    let log = std::fs::read(audit.join("audit.log")).expect("log");

    // The checkpoint is gone, or unreadable: fail closed.
    std::fs::remove_file(audit.join("checkpoint")).expect("rm");
    let refused = maillon_node::daemon::start(&node.dir)
        .await
        .expect_err("no checkpoint");
    assert!(
        matches!(refused, StartError::Audit(AuditError::Corrupt(_))),
        "{refused}"
    );
    std::fs::write(audit.join("checkpoint"), b"not a note\n").expect("write");
    let refused = maillon_node::daemon::start(&node.dir)
        .await
        .expect_err("bad checkpoint");
    assert!(
        matches!(refused, StartError::Audit(AuditError::Corrupt(_))),
        "{refused}"
    );
    std::fs::write(audit.join("checkpoint"), &checkpoint).expect("restore");

    // A byte changed in the first batch: an error, and nothing truncated.
    let mut damaged = log.clone();
    damaged[16 + 20 + 10] ^= 0x20;
    std::fs::write(audit.join("audit.log"), &damaged).expect("damage");
    let refused = maillon_node::daemon::start(&node.dir)
        .await
        .expect_err("damaged");
    assert!(
        matches!(refused, StartError::Audit(AuditError::Corrupt(_))),
        "{refused}"
    );
    assert_eq!(
        std::fs::read(audit.join("audit.log")).expect("log"),
        damaged
    );

    // Both the log and its checkpoint gone: the store knows entries existed.
    std::fs::remove_file(audit.join("audit.log")).expect("rm");
    std::fs::remove_file(audit.join("checkpoint")).expect("rm");
    let refused = maillon_node::daemon::start(&node.dir)
        .await
        .expect_err("no log");
    assert!(
        matches!(&refused, StartError::Service(ServiceError::State(_))),
        "{refused}"
    );
    std::fs::write(audit.join("checkpoint"), &checkpoint).expect("restore");

    std::fs::write(audit.join("audit.log"), &log).expect("restore");
    node.start(clock)
        .await
        .expect("starts once its log is whole");
    assert_eq!(ccas.get(&d, "housing").await.expect("get"), HOUSING);
}

#[tokio::test]
async fn an_auditor_verifies_a_log_of_fifty_thousand_entries_page_by_page() {
    let c = Cluster::start().await;
    let node = c.running("caf12").node().clone();
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    // Large entries, as reads with a long purpose make them: ≈ 400 bytes each.
    let dossier = maillon_node::types::DossierId::random();
    let mut appends = Vec::new();
    for chunk in 0..50u64 {
        let (node, dossier) = (node.clone(), dossier.clone());
        appends.push(tokio::spawn(async move {
            for i in 0..1000u64 {
                let event = maillon_node::audit::AuditEvent::ReadDenied {
                    request: format!("{:064x}", chunk * 1000 + i),
                    reader: "ccas-rodez".parse().expect("id"),
                    user: "agent-ccas".parse().expect("user"),
                    dossier: dossier.clone(),
                    section: maillon_node::types::Section::Housing,
                    reason: "no consent covers this reader for this dossier ".repeat(4),
                    nonce: String::new(),
                };
                node.audit_log().append(0, event).await.expect("append");
            }
        }));
    }
    for a in appends {
        a.await.expect("appender");
    }
    let size = c.verified_log_size(&auditor).await;
    assert!(size > 50_000, "the whole log verifies: {size}");
}

#[tokio::test]
async fn a_second_instance_on_a_served_folder_is_refused_and_names_the_first() {
    let mut c = Cluster::start().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let lock = dir.join(maillon_node::daemon::LOCK_FILE);
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock file").trim(),
        std::process::id().to_string()
    );
    let size = c.running("ccas-rodez").node().audit_log().size();
    let err = maillon_node::daemon::start(&dir)
        .await
        .expect_err("the folder is served");
    assert!(matches!(err, StartError::InUse { .. }), "{err}");
    let pid = std::process::id().to_string();
    assert!(err.to_string().contains(&pid), "{err}");
    // Nothing was touched: the first node goes on, and its log did not move.
    assert_eq!(c.running("ccas-rodez").node().audit_log().size(), size);
    c.admin("ccas-rodez")
        .api()
        .who_am_i(
            c.admin("ccas-rodez")
                .req(maillon_proto::v1::WhoAmIRequest {}),
        )
        .await
        .expect("the first node still serves");
    // Once it stops, the folder is free again.
    c.restart("ccas-rodez").await;
}
