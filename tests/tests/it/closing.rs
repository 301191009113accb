//! The end of a parcours: closing ends every share at every member; the
//! charter's retention, or the person's request, erases the dossier at
//! every member, and nothing of it remains in any node's files.

use maillon_node::clock::Clock;
use maillon_node::storage::{MetaKey, Store};
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, Desk, audit_events, found_in, housing_share, next_year, refusal};
use tonic::Code;

const MARK_HOUSING: &str = "MARQUEUR-LOGEMENT-7Q2XW";
const MARK_RESOURCES: &str = "MARQUEUR-RESSOURCES-9K4ZT";
const MARK_NAME: &str = "Marqueurnomzq";

/// A dossier held at the CCAS with a marked name and housing section, the
/// CAF attached with a marked name and resources section, each sharing its
/// section with the other.
async fn marked(c: &Cluster) -> (Desk, Desk, String) {
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let caf = c.desk("caf12", "agent-caf").await;
    let d = ccas
        .conn
        .open_dossier("Camille", MARK_NAME, "1984-03-12")
        .await
        .expect("open");
    ccas.put(&d, "housing", &format!(r#"{{"note":"{MARK_HOUSING}"}}"#))
        .await
        .expect("put");
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", MARK_NAME, "1984-03-12"))
        .await
        .expect("attach");
    caf.put(
        &d,
        "resources",
        &format!(r#"{{"note":"{MARK_RESOURCES}"}}"#),
    )
    .await
    .expect("put");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.grant(&d, &["resources"], &["ccas-rodez"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez").await.expect("read");
    ccas.read(&d, "resources", "caf12").await.expect("read");
    (ccas, caf, d)
}

async fn close(desk: &Desk, d: &str, reason: &str) -> Result<(), tonic::Status> {
    desk.conn
        .api()
        .close_dossier(desk.conn.req(pb::CloseDossierRequest {
            dossier: d.into(),
            reason: reason.into(),
        }))
        .await
        .map(drop)
}

async fn erase(conn: &maillon_cli::client::Conn, d: &str) -> Result<(), tonic::Status> {
    conn.api()
        .erase_dossier(conn.req(pb::EraseDossierRequest { dossier: d.into() }))
        .await
        .map(drop)
}

#[tokio::test]
async fn closing_ends_every_share_and_retention_erases_everywhere_leaving_no_trace() {
    let mut c = Cluster::start_with(|r| r.charter.retention_days = Some(30)).await;
    let (ccas, caf, d) = marked(&c).await;
    for id in ["ccas-rodez", "caf12"] {
        assert!(
            !found_in(&c.node(id).dir, &d).is_empty(),
            "the search finds what the files hold: the opaque id is in the log"
        );
        for mark in [MARK_HOUSING, MARK_RESOURCES, MARK_NAME] {
            assert!(
                found_in(&c.node(id).dir, mark).is_empty(),
                "{mark} is sealed at rest at {id}"
            );
        }
    }

    // Only the holder closes, once, for a reason from the list.
    let (code, why) = refusal(close(&caf, &d, "end_of_parcours").await);
    assert_eq!((code, why.as_str()), (Code::FailedPrecondition, "state"));
    let (code, _) = refusal(close(&ccas, &d, "bored").await);
    assert_eq!(code, Code::InvalidArgument);
    close(&ccas, &d, "end_of_parcours").await.expect("closed");
    let (code, _) = refusal(close(&ccas, &d, "end_of_parcours").await);
    assert_eq!(code, Code::FailedPrecondition);

    // Every share ends, at the holder and at the CAF, which was told.
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "closed"));
    let (code, why) = refusal(ccas.read(&d, "resources", "caf12").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "closed"));
    assert_eq!(
        c.group_members("ccas-rodez", &housing_share(&d, "ccas-rodez"))
            .await,
        ["ccas-rodez"]
    );
    let caf_resources = maillon_node::sharing::ShareId {
        dossier: d.parse().expect("id"),
        section: "resources".parse().expect("section"),
        owner: "caf12".parse().expect("id"),
    };
    assert_eq!(c.group_members("caf12", &caf_resources).await, ["caf12"]);
    // Nothing changes in a closed dossier; its own sections stay readable.
    let (code, _) = refusal(ccas.put(&d, "housing", r#"{"a":1}"#).await);
    assert_eq!(code, Code::FailedPrecondition);
    let (code, _) = refusal(
        ccas.grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        ccas.get(&d, "housing")
            .await
            .expect("kept")
            .contains(MARK_HOUSING)
    );

    // The charter's 30 days from closing, at every member, no user action.
    c.clock.advance(29 * 86_400);
    for id in ["ccas-rodez", "caf12"] {
        assert_eq!(
            c.running(id).node().erase_due().await.expect("upkeep"),
            0,
            "{id}"
        );
    }
    c.clock.advance(2 * 86_400);
    for id in ["ccas-rodez", "caf12"] {
        assert_eq!(
            c.running(id).node().erase_due().await.expect("upkeep"),
            1,
            "{id}"
        );
        assert_eq!(
            c.running(id).node().erase_due().await.expect("again"),
            0,
            "{id}"
        );
    }
    let (code, _) = refusal(ccas.get(&d, "housing").await);
    assert_eq!(code, Code::NotFound);
    let (code, _) = refusal(caf.get(&d, "resources").await);
    assert_eq!(code, Code::NotFound);
    let (code, _) = refusal(caf.conn.view_dossier(&d, "coordination").await);
    assert_eq!(code, Code::NotFound);
    let cd = c.desk("cd12", "agent-cd").await;
    let (code, _) = refusal(
        cd.conn
            .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
            .await,
    );
    assert_eq!(
        code,
        Code::NotFound,
        "an erased dossier cannot be attached to"
    );

    // The logs keep opaque entries and still verify.
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let erased = audit_events(&dpo, "dossier_erased").await;
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0]["ground"], "retention");
    c.verified_log_size(&dpo).await; // The log verifies after erasure.

    // Nothing of the dossier remains in any file of either node.
    for id in ["ccas-rodez", "caf12"] {
        c.fed.node_mut(id).stop().await;
        for mark in [MARK_HOUSING, MARK_RESOURCES, MARK_NAME] {
            assert_eq!(
                found_in(&c.node(id).dir, mark),
                Vec::<String>::new(),
                "{id}"
            );
        }
        assert!(
            !c.node(id)
                .dir
                .join(format!("dossier-keys/{d}.key"))
                .exists(),
            "{id}: the dossier's key is destroyed"
        );
    }
    // Replaying the whole log never brings the erased dossier back.
    {
        let store = Store::open(&c.node("ccas-rodez").dir.join("store")).expect("store");
        store.set_meta(MetaKey::Applied, &0u64).expect("mark");
        store.flush().expect("flush");
    }
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    c.fed
        .node_mut("ccas-rodez")
        .start(clock)
        .await
        .expect("restart");
    let consents = audit_events(&dpo, "consent_granted").await;
    let consent = consents[0]["consent"].as_str().expect("id");
    let (code, _) = refusal(
        ccas.conn
            .api()
            .show_consent(ccas.conn.req(pb::ShowConsentRequest {
                consent: consent.into(),
            }))
            .await,
    );
    assert_eq!(
        code,
        Code::NotFound,
        "the erased dossier's consent stays erased"
    );
    let (code, _) = refusal(ccas.get(&d, "housing").await);
    assert_eq!(code, Code::NotFound);
}

#[tokio::test]
async fn on_the_persons_request_a_dossier_is_erased_at_once_even_at_a_member_that_was_down() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = marked(&c).await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let (code, why) = refusal(erase(&auditor, &d).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
    let (code, why) = refusal(erase(&caf.conn, &d).await);
    assert_eq!((code, why.as_str()), (Code::FailedPrecondition, "state"));
    let (code, _) = refusal(erase(&ccas.conn, "DSU-0000000000000000000000000Z").await);
    assert_eq!(code, Code::NotFound);
    caf.get(&d, "resources").await.expect("nothing changed");

    // The CAF is down when the person asks.
    c.fed.node_mut("caf12").stop().await;
    erase(&ccas.conn, &d).await.expect("erased at the holder");
    let (code, _) = refusal(ccas.get(&d, "housing").await);
    assert_eq!(code, Code::NotFound);
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let waiting = admin
        .api()
        .outbox(admin.req(pb::OutboxRequest {}))
        .await
        .expect("outbox")
        .into_inner()
        .entries;
    assert!(
        waiting
            .iter()
            .any(|e| e.to == "caf12" && e.kind == "erased"),
        "{waiting:?}"
    );

    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    c.fed.node_mut("caf12").start(clock).await.expect("restart");
    c.clock.advance(3600);
    assert!(
        c.running("ccas-rodez")
            .node()
            .deliver_outbox()
            .await
            .expect("upkeep")
            >= 1
    );
    let (code, _) = refusal(caf.get(&d, "resources").await);
    assert_eq!(code, Code::NotFound, "erased at the CAF too");
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    assert_eq!(audit_events(&caf_dpo, "dossier_erased").await.len(), 1);
    for id in ["ccas-rodez", "caf12"] {
        c.fed.node_mut(id).stop().await;
        for mark in [MARK_HOUSING, MARK_RESOURCES, MARK_NAME] {
            assert_eq!(
                found_in(&c.node(id).dir, mark),
                Vec::<String>::new(),
                "{id}"
            );
        }
    }
}

#[tokio::test]
async fn a_closure_the_store_lost_comes_back_from_the_log() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = marked(&c).await;
    let mark = c.running("ccas-rodez").node().audit_log().size();
    close(&ccas, &d, "moved_away").await.expect("closed");
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    let node = c.fed.node_mut("ccas-rodez");
    node.stop().await;
    {
        let store = Store::open(&node.dir.join("store")).expect("store");
        let mut record: serde_json::Value = store
            .get(maillon_node::storage::Tree::Dossiers, &d)
            .expect("get")
            .expect("record");
        assert_eq!(record["closed"]["reason"], "moved_away");
        record.as_object_mut().expect("object").remove("closed");
        store
            .put(maillon_node::storage::Tree::Dossiers, &d, &record)
            .expect("put");
        store.set_meta(MetaKey::Applied, &mark).expect("mark");
        store.flush().expect("flush");
    }
    node.start(clock).await.expect("restart");
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "closed"));
    let (code, _) = refusal(ccas.put(&d, "housing", r#"{"a":1}"#).await);
    assert_eq!(code, Code::FailedPrecondition, "closed again from the log");
}
