//! Consent in depth: the legal basis and how the person gave it, the first
//! and last day, masking, the charter's recorders, the receipt handed to the
//! person, and each decision rebuilt from the log when the store lost it.

use maillon_cli::client::Conn;
use maillon_node::clock::Clock;
use maillon_node::storage::{MetaKey, Store, Tree};
use maillon_node::types::{Date, MemberKind, Role};
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, audit_kinds, housing_share, next_year, refusal};
use tonic::Code;

/// A grant request with the usual purpose and a year's validity.
fn request(c: &Cluster, dossier: &str, sections: &[&str], to: &[&str]) -> pb::GrantConsentRequest {
    pb::GrantConsentRequest {
        dossier: dossier.into(),
        sections: sections.iter().map(|s| s.to_string()).collect(),
        audience: to.iter().map(|s| s.to_string()).collect(),
        purpose: "coordination du parcours".into(),
        until: next_year(&c.clock),
        collection: "oral".into(),
        ..Default::default()
    }
}

async fn grant(conn: &Conn, req: pb::GrantConsentRequest) -> Result<String, tonic::Status> {
    Ok(conn
        .api()
        .grant_consent(conn.req(req))
        .await?
        .into_inner()
        .consent)
}

async fn receipt(conn: &Conn, consent: &str) -> Result<pb::ShowConsentReply, tonic::Status> {
    Ok(conn
        .api()
        .show_consent(conn.req(pb::ShowConsentRequest {
            consent: consent.into(),
        }))
        .await?
        .into_inner())
}

fn today(c: &Cluster) -> Date {
    Date::from_unix(c.clock.now())
}

#[tokio::test]
async fn a_consent_says_how_and_on_what_ground_and_its_receipt_is_the_persons() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let mut signed = request(&c, &d, &["housing"], &["caf12"]);
    signed.collection = "signed_form".into();
    signed.form_reference = "FORM-2026-0117".into();
    signed.masked = vec!["health".into()];
    let id = grant(&ccas.conn, signed).await.expect("a signed form");

    let r = receipt(&ccas.conn, &id).await.expect("receipt");
    let json: serde_json::Value = serde_json::from_str(&r.receipt_json).expect("JSON receipt");
    assert_eq!(json["schema"], "maillon/consent-receipt/v1");
    assert_eq!(json["record_id"], id);
    assert_eq!(json["pii_principal_id"], d);
    assert_eq!(json["controller"]["member"], "ccas-rodez");
    assert_eq!(json["recorded_by"]["user"], "agent-ccas");
    assert_eq!(json["recipients"][0]["member"], "caf12");
    assert_eq!(json["pii_categories"], serde_json::json!(["housing"]));
    assert_eq!(json["masked_categories"], serde_json::json!(["health"]));
    assert_eq!(json["legal_basis"]["kind"], "consent");
    assert_eq!(json["collection_method"]["reference"], "FORM-2026-0117");
    assert_eq!(json["valid_from"], today(&c).to_string());
    assert_eq!(json["status"], "active");
    assert_eq!(json["events"][0]["event"], "given");
    assert!(r.receipt_text.starts_with("Récépissé de consentement"));
    assert!(
        r.receipt_text
            .contains("formulaire signé, référence FORM-2026-0117")
    );
    assert!(r.receipt_text.contains("masquées"));
    assert!(r.receipt_text.lines().count() < 60, "one page");

    // A legal mission: the person is informed, the provision is named.
    let mut mission = request(&c, &d, &["housing"], &["cd12"]);
    mission.basis = "legal_mission".into();
    mission.provision = "CASF L.226-2-2".into();
    mission.collection = "informed".into();
    let id2 = grant(&ccas.conn, mission).await.expect("a legal mission");
    let r2 = receipt(&ccas.conn, &id2).await.expect("receipt");
    assert!(
        r2.receipt_text
            .contains("mission prévue par la loi (CASF L.226-2-2)")
    );

    // The auditor may print it too; each showing is logged.
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    receipt(&auditor, &id).await.expect("the auditor prints it");
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(kinds.iter().filter(|k| *k == "consent_shown").count(), 3);

    // Withdrawn: the receipt says so.
    ccas.revoke(&id).await.expect("revoke");
    let json: serde_json::Value = serde_json::from_str(
        &receipt(&ccas.conn, &id)
            .await
            .expect("receipt")
            .receipt_json,
    )
    .expect("json");
    assert_eq!(json["status"], "withdrawn");
    assert_eq!(json["events"][1]["event"], "withdrawn");

    // Unknown consent, bad id.
    let (code, _) = refusal(receipt(&ccas.conn, "CNS-0000000000000000000000000Z").await);
    assert_eq!(code, Code::NotFound);
    let (code, _) = refusal(receipt(&ccas.conn, "nope").await);
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test]
async fn a_grant_that_does_not_fit_together_is_refused_and_changes_nothing() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await.len();
    let yesterday = Date::from_unix(c.clock.now() - 86_400).to_string();
    type Edit = Box<dyn Fn(&mut pb::GrantConsentRequest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("no collection", Box::new(|r| r.collection.clear())),
        (
            "unknown collection",
            Box::new(|r| r.collection = "telepathy".into()),
        ),
        (
            "informed consent",
            Box::new(|r| r.collection = "informed".into()),
        ),
        (
            "form without reference",
            Box::new(|r| r.collection = "signed_form".into()),
        ),
        (
            "oral with a reference",
            Box::new(|r| r.form_reference = "F-1".into()),
        ),
        (
            "mission without provision",
            Box::new(|r| r.basis = "legal_mission".into()),
        ),
        (
            "provision without mission",
            Box::new(|r| r.provision = "CASF".into()),
        ),
        ("unknown basis", Box::new(|r| r.basis = "whim".into())),
        (
            "backdated",
            Box::new(move |r| r.valid_from = yesterday.clone()),
        ),
        (
            "first day after the last",
            Box::new(|r| r.valid_from = "2999-01-01".into()),
        ),
        (
            "shared and masked",
            Box::new(|r| r.masked = vec!["housing".into()]),
        ),
        (
            "audience without sections",
            Box::new(|r| r.sections.clear()),
        ),
        (
            "bad masked section",
            Box::new(|r| r.masked = vec!["secrets".into()]),
        ),
    ];
    for (what, edit) in cases {
        let mut req = request(&c, &d, &["housing"], &["caf12"]);
        edit(&mut req);
        let (code, _) = refusal(grant(&ccas.conn, req).await);
        assert_eq!(code, Code::InvalidArgument, "{what}");
    }
    assert_eq!(
        audit_kinds(&auditor).await.len(),
        before,
        "no refused grant is logged"
    );
}

#[tokio::test]
async fn a_masked_section_is_refused_to_every_member_until_the_mask_is_lifted() {
    let c = Cluster::start().await;
    let (ccas, caf, d, _) = c.housing_read_by_the_caf().await;
    let share = housing_share(&d, "ccas-rodez");
    let mut mask = request(&c, &d, &[], &[]);
    mask.masked = vec!["housing".into()];
    let mask_id = grant(&ccas.conn, mask).await.expect("a masking alone");

    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "masked"));
    c.wait_group("ccas-rodez", &share, &["ccas-rodez"]).await;
    // Sharing a masked section is refused while the mask holds.
    let (code, why) = refusal(grant(&ccas.conn, request(&c, &d, &["housing"], &["cd12"])).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled")
    );

    ccas.revoke(&mask_id)
        .await
        .expect("the person lifts the mask");
    let node = c.running("ccas-rodez").node();
    node.reconcile_groups().await.expect("upkeep");
    c.wait_group("ccas-rodez", &share, &["ccas-rodez", "caf12"])
        .await;
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("the earlier consent holds again");
}

#[tokio::test]
async fn a_consent_from_a_later_day_lets_nobody_in_before_it() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let mut later = request(&c, &d, &["housing"], &["caf12"]);
    later.valid_from = Date::from_unix(c.clock.now() + 2 * 86_400).to_string();
    grant(&ccas.conn, later)
        .await
        .expect("grant from a later day");
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_yet_valid")
    );
    let share = housing_share(&d, "ccas-rodez");
    assert_eq!(
        c.group_members("ccas-rodez", &share).await,
        ["ccas-rodez"],
        "nobody joins before the first day"
    );

    c.clock.advance(3 * 86_400);
    c.running("ccas-rodez")
        .node()
        .reconcile_groups()
        .await
        .expect("upkeep");
    c.wait_group("ccas-rodez", &share, &["ccas-rodez", "caf12"])
        .await;
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("read from the first day");
    // At its end, upkeep empties the group (a consent that was pending is
    // not taken for closed).
    c.clock.advance(400 * 86_400);
    let node = c.running("ccas-rodez").node();
    node.close_inactive_consents().await.expect("upkeep");
    node.sync_owned_groups().await.expect("upkeep");
    assert_eq!(c.group_members("ccas-rodez", &share).await, ["ccas-rodez"]);
}

#[tokio::test]
async fn only_the_kinds_the_charter_names_record_consents() {
    let c = Cluster::start_with(|r| {
        r.charter.consent_recorders = [MemberKind::Departement].into();
    })
    .await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let (code, why) = refusal(grant(&ccas.conn, request(&c, &d, &["housing"], &["caf12"])).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled")
    );
    let cd = c.desk("cd12", "agent-cd").await;
    let d2 = cd.open().await.expect("open");
    cd.put(&d2, "housing", r#"{"loyer":450}"#)
        .await
        .expect("put");
    grant(&cd.conn, request(&c, &d2, &["housing"], &["caf12"]))
        .await
        .expect("the département records it");
}

#[tokio::test]
async fn a_consent_and_a_mask_the_store_lost_come_back_from_the_log_at_start() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let applied_before: u64 = {
        let running = c.running("ccas-rodez").node();
        running.audit_log().size()
    };
    let mut signed = request(&c, &d, &["housing"], &["caf12"]);
    signed.collection = "signed_form".into();
    signed.form_reference = "FORM-9".into();
    signed.masked = vec!["health".into()];
    let id = grant(&ccas.conn, signed).await.expect("grant");
    let before = receipt(&ccas.conn, &id)
        .await
        .expect("receipt")
        .receipt_json;

    // A power loss took the store's record and its replay mark with it.
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    let node = c.fed.node_mut("ccas-rodez");
    node.stop().await;
    {
        let store = Store::open(&node.dir.join("store")).expect("store");
        let key = format!("{d}/{id}");
        assert!(
            store
                .get::<serde_json::Value>(Tree::Consents, &key)
                .expect("get")
                .is_some()
        );
        store.remove(Tree::Consents, &key).expect("remove");
        store.remove(Tree::ConsentIndex, &id).expect("remove");
        store
            .set_meta(MetaKey::Applied, &applied_before)
            .expect("mark");
        store.flush().expect("flush");
    }
    node.start(clock).await.expect("restart");
    let after = receipt(&ccas.conn, &id).await.expect("the consent is back");
    let (b, a): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&before).expect("json"),
        serde_json::from_str(&after.receipt_json).expect("json"),
    );
    for field in [
        "pii_categories",
        "masked_categories",
        "collection_method",
        "legal_basis",
        "valid_from",
        "valid_until",
        "recipients",
        "signature",
    ] {
        assert_eq!(a[field], b[field], "{field} rebuilt from the log");
    }
}
