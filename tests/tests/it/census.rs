//! The census of aids at a member's node: an admin publishes, republishes
//! and withdraws a service; every role searches it; each refusal changes
//! nothing; what the log holds survives a restart.

use maillon_node::census::{Query, Service};
use maillon_node::service::{Caller, ServiceError};
use maillon_node::types::Role;
use maillon_tests::Cluster;

const MICROCREDIT: &str = r#"{
  "id": "microcredit",
  "name": "Microcrédit personnel",
  "description": "Un prêt de 300 à 5 000 € pour un projet (permis, véhicule), accompagné.",
  "organization": {"name": "Secours catholique, délégation de l'Aveyron"},
  "categories": ["microcredit", "mobilite"],
  "eligibility_description": "Personnes exclues du crédit bancaire.",
  "criteria": {"min_age": 18, "resources_ceiling": 1500, "territory": ["12"]},
  "locations": [{"name": "Accueil", "address": "2 rue de la Paix", "city": "Rodez", "postal_code": "12000"}],
  "schedules": [{"byday": ["TU", "TH"], "opens_at": "09:00", "closes_at": "12:00"}],
  "languages": ["fr"],
  "cost": {"free": true}
}"#;

fn caller(name: &str, role: Role) -> Caller {
    Caller {
        name: name.parse().expect("a user name"),
        role,
        token_expires_at: None,
    }
}

fn query(text: Option<&str>, category: Option<&str>, near: Option<&str>) -> Query {
    Query {
        text: text.map(str::to_owned),
        category: category.map(str::to_owned),
        near: near.map(str::to_owned),
        open_at: None,
    }
}

#[tokio::test]
async fn an_admin_publishes_and_withdraws_a_service_every_role_finds_it_and_it_survives_a_restart()
{
    let mut c = Cluster::start().await;
    let id = "ccas-rodez";
    let (admin, caseworker, auditor) = (
        caller(&c.node(id).admin.user, Role::Admin),
        caller("agent-accueil", Role::Caseworker),
        caller("dpo", Role::Auditor),
    );
    let service: Service = serde_json::from_str(MICROCREDIT).expect("a service");
    let node = c.running(id).node().clone();

    // Refused, and nothing kept: a caseworker publishing, a bad service,
    // withdrawing what was never published.
    let refused = node.publish_aid(&caseworker, service.clone(), false).await;
    assert!(
        matches!(refused, Err(ServiceError::Role { .. })),
        "{refused:?}"
    );
    let mut bad = service.clone();
    bad.id = "Micro Crédit".into();
    let refused = node.publish_aid(&admin, bad, false).await;
    assert!(
        matches!(&refused, Err(ServiceError::Invalid(why)) if why.starts_with("id:")),
        "{refused:?}"
    );
    let refused = node.publish_aid(&admin, service.clone(), true).await;
    assert!(
        matches!(refused, Err(ServiceError::NotFound(_))),
        "{refused:?}"
    );
    assert!(
        node.search_aids(&caseworker, &Query::default())
            .expect("search")
            .is_empty()
    );

    // Published: version 1, signed by the node, found by every role.
    let v1 = node
        .publish_aid(&admin, service.clone(), false)
        .await
        .expect("published");
    assert_eq!(
        (v1.entry.version, v1.key().as_str()),
        (1, "ccas-rodez/microcredit")
    );
    for who in [&admin, &caseworker, &auditor] {
        let found = node
            .search_aids(
                who,
                &query(Some("pret vehicule"), Some("mobilite"), Some("RODEZ")),
            )
            .expect("search");
        assert_eq!(found.len(), 1);
    }
    assert!(
        node.search_aids(&caseworker, &query(None, None, Some("Millau")))
            .expect("search")
            .is_empty()
    );
    assert!(
        node.search_aids(&caseworker, &query(None, Some("logement"), None))
            .expect("search")
            .is_empty()
    );

    // Republished: version 2 replaces it.
    let mut renamed = service.clone();
    renamed.name = "Microcrédit social".into();
    let v2 = node
        .publish_aid(&admin, renamed, false)
        .await
        .expect("republished");
    assert_eq!(v2.entry.version, 2);
    let found = node
        .search_aids(&caseworker, &Query::default())
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entry.service.name, "Microcrédit social");

    // What the log holds survives a restart.
    drop(node);
    c.restart(id).await;
    let node = c.running(id).node().clone();
    let found = node
        .search_aids(&caseworker, &Query::default())
        .expect("search");
    assert_eq!(
        found.iter().map(|e| e.entry.version).collect::<Vec<_>>(),
        [2]
    );

    // Withdrawn: version 3, found by nobody; withdrawn twice: refused.
    let v3 = node
        .publish_aid(&admin, service.clone(), true)
        .await
        .expect("withdrawn");
    assert!(v3.entry.withdrawn && v3.entry.version == 3);
    assert!(
        node.search_aids(&caseworker, &Query::default())
            .expect("search")
            .is_empty()
    );
    let again = node.publish_aid(&admin, service, true).await;
    assert!(matches!(again, Err(ServiceError::NotFound(_))), "{again:?}");

    let dpo = c.user(id, "dpo-census", Role::Auditor).await;
    let published = maillon_tests::audit_events(&dpo, "aid_published").await;
    assert_eq!(published.len(), 3, "each publication logged, no refusal");
    assert_eq!(published[2]["withdrawn"], true);
}
