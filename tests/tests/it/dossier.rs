//! The dossier social unique across partners: attaching to a dossier another
//! member holds, and contributing to it.

use maillon_node::types::Role;
use maillon_tests::{Cluster, HOUSING, audit_events, next_year, refusal};
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
