//! A node restarted mid-scenario keeps everything, and its log still verifies.

use maillon_cli::audit::fetch_and_verify;
use maillon_node::daemon::load_roster;
use maillon_node::types::Role;
use maillon_tests::{Cluster, audit_kinds, next_year};

#[tokio::test]
async fn a_restarted_owner_and_reader_keep_dossiers_consents_groups_and_logs() {
    let mut c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let caf = c.desk("caf12", "agent-caf").await;
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "housing", r#"{"loyer":450}"#)
        .await
        .expect("put");
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
        r#"{"loyer":450}"#
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
        r#"{"loyer":450}"#
    );

    let after = audit_kinds(&auditor).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "no entry lost or changed"
    );
    assert_eq!(after.last().map(String::as_str), Some("read_granted"));
    let roster = load_roster(&c.node("ccas-rodez").dir.join("roster.json")).expect("roster");
    let member = roster
        .active_member(&"ccas-rodez".parse().expect("id"))
        .expect("member");
    let log = fetch_and_verify(&auditor, member)
        .await
        .expect("the log verifies after restart");
    assert_eq!(log.entries.len(), after.len());
    // The restart did not re-log the roster: it was already adopted.
    assert_eq!(after.iter().filter(|k| *k == "roster_adopted").count(), 1);
}
