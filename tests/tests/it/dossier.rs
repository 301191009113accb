//! The dossier social unique across partners: attaching to a dossier another
//! member holds, and contributing to it.

use maillon_node::clock::Clock;
use maillon_node::types::Role;
use maillon_tests::{
    Cluster, HOUSING, audit_entries, audit_events, audit_kinds, next_year, refusal,
};
use tonic::Code;

const RESOURCES: &str = r#"{"rsa":true,"montant":635.71}"#;

#[tokio::test]
async fn a_partner_attaches_to_a_dossier_held_elsewhere_and_shares_its_own_section_of_it() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    // The person gives the CAF their dossier reference; the CCAS confirms it.
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attached");
    caf.put(&d, "resources", RESOURCES)
        .await
        .expect("the CAF writes its own section of the dossier");
    // The CAF owns a share of it: the person consents, the CCAS reads.
    caf.grant(&d, &["resources"], &["ccas-rodez"], &next_year(&c.clock))
        .await
        .expect("a consent recorded by the CAF");
    let got = ccas
        .read(&d, "resources", "caf12")
        .await
        .expect("the CCAS reads the CAF's section");
    assert_eq!(
        (got.json.as_str(), got.owner.as_str()),
        (RESOURCES, "caf12")
    );
    // And the other way round, on the same dossier.
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("read")
            .json,
        HOUSING
    );
    // Both sides logged the attachment; only the opaque id travelled.
    let holder = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let confirmed = audit_events(&holder, "dossier_confirmed").await;
    assert_eq!(confirmed.len(), 1);
    assert_eq!(
        (&confirmed[0]["dossier"], &confirmed[0]["to"]),
        (&d.clone().into(), &"caf12".into())
    );
    let attacher = c.user("caf12", "dpo", Role::Auditor).await;
    let attached = audit_events(&attacher, "dossier_attached").await;
    assert_eq!(attached[0]["from"], "ccas-rodez");
    assert!(
        !attached[0].to_string().contains("Camille"),
        "no name in the log"
    );
}

#[tokio::test]
async fn attaching_to_an_unknown_dossier_or_wrongly_is_refused_and_changes_nothing() {
    let c = Cluster::start().await;
    let (_ccas, caf, d) = c.housing_at_the_ccas().await;
    let person = ("Camille", "Martin", "1984-03-12");
    let unknown = "DSU-00000000000000000000000000";
    let (code, why) = refusal(caf.conn.attach_dossier(unknown, "ccas-rodez", person).await);
    assert_eq!((code, why.as_str()), (Code::NotFound, "not_found"));
    let (code, _) = refusal(caf.put(unknown, "resources", RESOURCES).await);
    assert_eq!(code, Code::NotFound, "nothing was attached");
    let (code, why) = refusal(caf.conn.attach_dossier(&d, "caf12", person).await);
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    let (code, why) = refusal(caf.conn.attach_dossier(&d, "cpam12", person).await);
    assert_eq!((code, why.as_str()), (Code::NotFound, "not_found"));
    let (code, why) = refusal(
        caf.conn
            .attach_dossier(&d, "ccas-rodez", ("", "Martin", "1984-03-12"))
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let (code, why) = refusal(auditor.attach_dossier(&d, "ccas-rodez", person).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
    caf.conn
        .attach_dossier(&d, "ccas-rodez", person)
        .await
        .expect("attached");
    let (code, why) = refusal(caf.conn.attach_dossier(&d, "ccas-rodez", person).await);
    assert_eq!((code, why.as_str()), (Code::AlreadyExists, "exists"));
    let holder = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert_eq!(audit_events(&holder, "dossier_confirmed").await.len(), 1);
}

#[tokio::test]
async fn the_unified_view_assembles_every_readable_section_and_a_partner_down_holds_nothing_back() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let person = ("Camille", "Martin", "1984-03-12");
    caf.conn
        .attach_dossier(&d, "ccas-rodez", person)
        .await
        .expect("the CAF attaches");
    caf.put(&d, "resources", RESOURCES).await.expect("put");
    let cd = c.desk("cd12", "agent-cd").await;
    cd.conn
        .attach_dossier(&d, "ccas-rodez", person)
        .await
        .expect("the département attaches");
    let to_cd = ccas
        .grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.conn
        .set_referent(&d, "agent-cd@cd12", Some(&to_cd))
        .await
        .expect("the département's caseworker coordinates");
    cd.put(&d, "support_plan", r#"{"objectif":"logement"}"#)
        .await
        .expect("the référent writes the support plan");
    caf.grant(&d, &["resources"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");

    let view = cd
        .conn
        .view_dossier(&d, "coordination du parcours")
        .await
        .expect("view");
    let got: Vec<(&str, &str, &str)> = view
        .iter()
        .map(|v| (v.owner.as_str(), v.section.as_str(), v.status.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("cd12", "support_plan", "ok"),
            ("caf12", "resources", "ok"),
            ("ccas-rodez", "housing", "ok"),
        ]
    );
    assert_eq!(view[1].json, RESOURCES);
    assert_eq!(view[2].json, HOUSING);
    assert!(view[1].receipt_leaf.is_some() && view[2].receipt_leaf.is_some());
    // Each section says when its owner last wrote it and on what it is read.
    let consents = audit_events(
        &c.user("ccas-rodez", "dpo-ccas", Role::Auditor).await,
        "consent_granted",
    )
    .await;
    assert_eq!(view[0].basis, "own");
    assert_eq!(view[2].basis, "consent");
    assert_eq!(
        view[2].basis_id,
        consents[0]["consent"].as_str().expect("id")
    );
    let now = c.clock.now();
    assert!(
        view.iter()
            .all(|v| v.written_at > now - 60 && v.written_at <= now)
    );

    // The CAF's node is down: its source says so, the others come back.
    c.fed.node_mut("caf12").stop().await;
    let view = cd
        .conn
        .view_dossier(&d, "coordination du parcours")
        .await
        .expect("view with a partner down");
    let got: Vec<(&str, &str)> = view
        .iter()
        .map(|v| (v.owner.as_str(), v.status.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("cd12", "ok"),
            ("caf12", "unreachable"),
            ("ccas-rodez", "ok"),
        ]
    );

    // Without the caseworker role, or for a dossier not held here: refused.
    let auditor = c.user("cd12", "dpo", Role::Auditor).await;
    let (code, why) = refusal(auditor.view_dossier(&d, "contrôle").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
    let (code, why) = refusal(
        cd.conn
            .view_dossier("DSU-00000000000000000000000000", "coordination")
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::NotFound, "not_found"));
}

#[tokio::test]
async fn several_sections_are_read_in_one_signed_request_with_one_entry_each() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "resources", RESOURCES).await.expect("put");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let owner_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&owner_dpo).await.len();
    let read = caf
        .conn
        .read_shares(
            &d,
            &["household", "housing", "resources"],
            "ccas-rodez",
            "instruction d'un droit",
            None,
        )
        .await
        .expect("one answer for three sections");
    let got: Vec<(&str, &str, &str)> = read
        .iter()
        .map(|v| (v.section.as_str(), v.status.as_str(), v.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("household", "refused", "section_not_covered"),
            ("housing", "ok", ""),
            ("resources", "refused", "section_not_covered"),
        ]
    );
    assert_eq!(read[1].json, HOUSING);
    let entries = audit_entries(&owner_dpo).await;
    let decisions: Vec<&serde_json::Value> = entries[before..]
        .iter()
        .filter(|e| e["event"] == "read_granted" || e["event"] == "read_denied")
        .collect();
    assert_eq!(decisions.len(), 3, "one entry per section");
    assert!(
        decisions
            .iter()
            .all(|e| e["request"] == decisions[0]["request"]),
        "all from one signed request"
    );

    // Every section refused: the refusal of the first is the answer.
    let (code, why) = refusal(
        caf.conn
            .read_shares(
                &d,
                &["household", "resources"],
                "ccas-rodez",
                "instruction",
                None,
            )
            .await,
    );
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "section_not_covered")
    );
    // No section, or an unknown one: refused at the reader.
    for bad in [&[][..], &["secrets"]] {
        let (code, _) = refusal(
            caf.conn
                .read_shares(&d, bad, "ccas-rodez", "instruction", None)
                .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{bad:?}");
    }
}
