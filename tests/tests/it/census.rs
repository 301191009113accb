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

/// The microcredit service of the tests, with another name.
fn renamed(name: &str) -> Service {
    let mut s: Service = serde_json::from_str(MICROCREDIT).expect("a service");
    s.name = name.into();
    s
}

/// The version of `member/service` kept at `at`'s node, if any, and whether withdrawn.
fn kept_at(c: &Cluster, at: &str, member: &str, service: &str) -> Option<(u64, bool)> {
    let reader = caller("lecteur", Role::Caseworker);
    c.running(at)
        .node()
        .get_aid(&reader, &member.parse().expect("member"), service)
        .ok()
        .map(|e| (e.entry.version, e.entry.withdrawn))
}

#[tokio::test]
async fn a_publication_reaches_every_member_and_a_member_that_was_down_catches_up() {
    let mut c = Cluster::start().await;
    let admin = caller(&c.node("ccas-rodez").admin.user, Role::Admin);
    let ccas = c.running("ccas-rodez").node().clone();

    // Offered at once to every active member.
    ccas.publish_aid(&admin, renamed("Microcrédit personnel"), false)
        .await
        .expect("published");
    for at in ["caf12", "cd12"] {
        assert_eq!(
            kept_at(&c, at, "ccas-rodez", "microcredit"),
            Some((1, false))
        );
    }
    let found = c
        .running("caf12")
        .node()
        .search_aids(
            &caller("agent-caf", Role::Caseworker),
            &query(Some("microcredit"), None, Some("Rodez")),
        )
        .expect("search");
    assert_eq!(
        found.len(),
        1,
        "the CAF's caseworkers find the CCAS's service"
    );

    // The CAF is down while the CCAS republishes and withdraws.
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    c.fed.node_mut("caf12").stop().await;
    ccas.publish_aid(&admin, renamed("Microcrédit social"), false)
        .await
        .expect("republished while the CAF is down");
    ccas.withdraw_aid(&admin, "microcredit")
        .await
        .expect("withdrawn while the CAF is down");
    let mut other = renamed("Épicerie solidaire");
    other.id = "epicerie".into();
    other.categories = vec!["alimentation".into()];
    ccas.publish_aid(&admin, other, false)
        .await
        .expect("another");
    assert_eq!(
        kept_at(&c, "cd12", "ccas-rodez", "microcredit"),
        Some((3, true))
    );

    // Started again, it asks every member for what it lacks.
    c.fed
        .node_mut("caf12")
        .start(clock)
        .await
        .expect("the CAF starts again");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while kept_at(&c, "caf12", "ccas-rodez", "epicerie").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CAF did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        kept_at(&c, "caf12", "ccas-rodez", "microcredit"),
        Some((3, true))
    );
    let found = c
        .running("caf12")
        .node()
        .search_aids(&caller("agent-caf", Role::Caseworker), &Query::default())
        .expect("search");
    assert_eq!(
        found.iter().map(|e| e.key()).collect::<Vec<_>>(),
        ["ccas-rodez/epicerie"],
        "a withdrawn service is found by nobody"
    );
    // A round with nothing new keeps nothing.
    assert_eq!(c.running("caf12").node().census_round().await, 0);
}

#[tokio::test]
async fn a_census_entry_signed_or_offered_by_another_member_is_refused_and_changes_nothing() {
    use maillon_node::census::{Entry, SignedEntry};
    use maillon_node::service::PeerNetwork as _;

    let c = Cluster::start().await;
    let admin = caller(&c.node("ccas-rodez").admin.user, Role::Admin);
    let ccas = c.running("ccas-rodez").node().clone();
    let v1 = ccas
        .publish_aid(&admin, renamed("Microcrédit personnel"), false)
        .await
        .expect("v1");
    let v2 = ccas
        .publish_aid(&admin, renamed("Microcrédit social"), false)
        .await
        .expect("v2");
    let caf = c.member("caf12");
    let as_cd12 = c.peer_as("cd12");
    let as_ccas = c.peer_as("ccas-rodez");
    let forged = |member: &str, version: u64, key: &maillon_node::crypto::NodeKey| {
        SignedEntry::sign(
            Entry {
                member: member.parse().expect("member"),
                version,
                published_at: maillon_node::clock::Clock::now(&*c.clock),
                withdrawn: true,
                service: renamed("Fermé"),
            },
            key,
        )
        .expect("signed")
        .signed
    };

    // The département's node signs an entry naming the CCAS: refused.
    let r = as_cd12
        .offer_census(&caf, &[forged("ccas-rodez", 9, &c.key("cd12"))])
        .await;
    assert!(
        matches!(&r, Err(maillon_node::service::ServiceError::Remote { kind: maillon_node::service::ErrorKind::Refused, message, .. }) if message.contains("not signed by the node of ccas-rodez")),
        "{r:?}"
    );
    // It relays the CCAS's own, genuine entry: refused, a member offers only its own.
    let r = as_cd12
        .offer_census(&caf, std::slice::from_ref(&v2.signed))
        .await;
    assert!(
        matches!(&r, Err(maillon_node::service::ServiceError::Remote { kind: maillon_node::service::ErrorKind::Refused, message, .. }) if message.contains("offered by cd12")),
        "{r:?}"
    );
    // A signed entry whose bytes were changed after signing: refused.
    let mut tampered = v2.signed.clone();
    let at = tampered.bytes.len() / 2;
    tampered.bytes[at] ^= 1;
    let r = as_ccas.offer_census(&caf, &[tampered]).await;
    assert!(r.is_err(), "{r:?}");
    // One bad entry among good ones refuses the whole offer.
    let r = as_ccas
        .offer_census(
            &caf,
            &[v2.signed.clone(), forged("ccas-rodez", 9, &c.key("cd12"))],
        )
        .await;
    assert!(r.is_err(), "{r:?}");
    // More than a page: refused.
    let many = vec![v2.signed.clone(); maillon_node::service::CENSUS_PAGE + 1];
    let r = as_ccas.offer_census(&caf, &many).await;
    assert!(
        matches!(
            &r,
            Err(maillon_node::service::ServiceError::Remote {
                kind: maillon_node::service::ErrorKind::TooLarge,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        kept_at(&c, "caf12", "ccas-rodez", "microcredit"),
        Some((2, false)),
        "nothing refused was kept"
    );

    // The CCAS's older version offered again: taken, and changes nothing.
    let kept = as_ccas
        .offer_census(&caf, std::slice::from_ref(&v1.signed))
        .await
        .expect("an old version is not an error");
    assert_eq!(kept, 0);
    assert_eq!(
        kept_at(&c, "caf12", "ccas-rodez", "microcredit"),
        Some((2, false))
    );
    let found = c
        .running("caf12")
        .node()
        .get_aid(
            &caller("agent", Role::Caseworker),
            &"ccas-rodez".parse().expect("id"),
            "microcredit",
        )
        .expect("kept");
    assert_eq!(found.entry.service.name, "Microcrédit social");
}

#[tokio::test]
async fn the_census_from_the_command_line_publish_search_show_export_withdraw_and_each_refusal() {
    use maillon_cli::exit::exit_code;

    use crate::cli::{maillon, path};
    use crate::json::json_of;

    let c = Cluster::start().await;
    c.desk("caf12", "agent-caf").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let admin = c.node("ccas-rodez").dir.join("admin.profile.toml");
    let admin_s = admin.to_str().expect("utf-8").to_owned();
    let agent = path(&c.node("caf12").dir, "agent-caf.profile.toml");
    let file = tmp.path().join("microcredit.json");
    std::fs::write(&file, MICROCREDIT).expect("written");
    let file_s = file.to_str().expect("utf-8").to_owned();

    let published = json_of(&admin, &["aids", "publish", "--file", &file_s]).await;
    assert_eq!(
        (
            published["member"].as_str(),
            published["id"].as_str(),
            published["version"].as_u64()
        ),
        (Some("ccas-rodez"), Some("microcredit"), Some(1))
    );
    assert_eq!(published["withdrawn"], false);

    // The CAF's caseworker finds it at its own node.
    let found = json_of(
        std::path::Path::new(&agent),
        &[
            "aids",
            "search",
            "--text",
            "pret",
            "--near",
            "rodez",
            "--category",
            "microcredit",
        ],
    )
    .await;
    let services = found["services"].as_array().expect("a list");
    assert_eq!(services.len(), 1);
    for field in [
        "member",
        "id",
        "version",
        "published_at",
        "withdrawn",
        "service",
    ] {
        assert!(services[0].get(field).is_some(), "no {field}");
    }
    assert_eq!(
        services[0]["service"]["criteria"]["resources_ceiling"],
        1500
    );
    let none = json_of(
        std::path::Path::new(&agent),
        &["aids", "search", "--near", "Millau"],
    )
    .await;
    assert_eq!(none["services"].as_array().map(Vec::len), Some(0));
    let shown = json_of(
        std::path::Path::new(&agent),
        &["aids", "show", "ccas-rodez/microcredit"],
    )
    .await;
    assert_eq!(shown["service"]["name"], "Microcrédit personnel");

    // Exports: HSDS JSON and CSV, never over an existing file.
    let hsds = tmp.path().join("census.json");
    let hsds_s = hsds.to_str().expect("utf-8").to_owned();
    let written = json_of(
        std::path::Path::new(&agent),
        &["aids", "export", "--out", &hsds_s],
    )
    .await;
    assert_eq!(written["services"], 1);
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&hsds).expect("read")).expect("json");
    assert_eq!(exported[0]["id"], "ccas-rodez/microcredit");
    assert_eq!(
        exported[0]["service_at_locations"][0]["location"]["addresses"][0]["city"],
        "Rodez"
    );
    let again = maillon(&["--profile", &agent, "aids", "export", "--out", &hsds_s]).await;
    assert_eq!(exit_code(&again.expect_err("never overwritten")), 2);
    let csv = tmp.path().join("census.csv");
    let csv_s = csv.to_str().expect("utf-8").to_owned();
    maillon(&[
        "--profile",
        &agent,
        "aids",
        "export",
        "--format",
        "csv",
        "--out",
        &csv_s,
    ])
    .await
    .expect("csv");
    let text = std::fs::read_to_string(&csv).expect("read");
    assert!(text.starts_with("member,id,name"), "{text}");
    assert!(
        text.contains("ccas-rodez,microcredit,Microcrédit personnel"),
        "{text}"
    );

    // Refusals, each with its exit code, and nothing published.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id":"Pas Bon","name":"x","description":"","organization":{"name":"y"}}"#,
    )
    .expect("written");
    let r = maillon(&[
        "--profile",
        &admin_s,
        "aids",
        "publish",
        "--file",
        bad.to_str().expect("utf-8"),
    ])
    .await;
    let e = r.expect_err("a bad id");
    assert_eq!(exit_code(&e), 2, "{e}");
    assert!(e.to_string().contains("id: 2 to 64"), "{e}");
    let r = maillon(&["--profile", &agent, "aids", "publish", "--file", &file_s]).await;
    assert_eq!(
        exit_code(&r.expect_err("a caseworker publishes nothing")),
        3
    );
    let r = maillon(&["--profile", &agent, "aids", "show", "ccas-rodez/nothing"]).await;
    assert_eq!(exit_code(&r.expect_err("unknown")), 4);
    let r = maillon(&["--profile", &agent, "aids", "show", "no-slash"]).await;
    assert_eq!(exit_code(&r.expect_err("not MEMBER/ID")), 2);
    let r = maillon(&["--profile", &admin_s, "aids", "withdraw", "nothing"]).await;
    assert_eq!(exit_code(&r.expect_err("never published")), 4);
    let shown = json_of(
        std::path::Path::new(&agent),
        &["aids", "show", "ccas-rodez/microcredit"],
    )
    .await;
    assert_eq!(shown["version"], 1, "no refusal published anything");

    // Withdrawn: shown as such, found by nobody.
    let withdrawn = json_of(&admin, &["aids", "withdraw", "microcredit"]).await;
    assert_eq!(
        (
            withdrawn["version"].as_u64(),
            withdrawn["withdrawn"].as_bool()
        ),
        (Some(2), Some(true))
    );
    let found = json_of(std::path::Path::new(&agent), &["aids", "search"]).await;
    assert_eq!(found["services"].as_array().map(Vec::len), Some(0));
    let shown = json_of(
        std::path::Path::new(&agent),
        &["aids", "show", "ccas-rodez/microcredit"],
    )
    .await;
    assert_eq!(shown["withdrawn"], true);
}

/// Publishes `json` as `member`'s admin.
async fn publish(c: &Cluster, member: &str, json: &str) {
    let admin = c.admin(member);
    admin
        .api()
        .publish_aid(admin.req(maillon_proto::v1::PublishAidRequest {
            service: json.as_bytes().to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
}

/// `aids match` of `d` as `desk`: each proposed service's key with its
/// checks as (criterion, outcome, found or needs).
async fn matched(
    desk: &maillon_tests::Desk,
    d: &str,
) -> Result<
    (
        Vec<(String, Vec<(String, String, String)>)>,
        maillon_proto::v1::MatchAidsReply,
    ),
    tonic::Status,
> {
    let r = desk
        .conn
        .api()
        .match_aids(desk.conn.req(maillon_proto::v1::MatchAidsRequest {
            dossier: d.into(),
            purpose: "recherche des aides et droits".into(),
        }))
        .await?
        .into_inner();
    let proposed = r
        .proposed
        .iter()
        .map(|p| {
            let entry: serde_json::Value =
                serde_json::from_slice(&p.entry.as_ref().expect("entry").entry).expect("json");
            let key = format!(
                "{}/{}",
                entry["member"].as_str().unwrap_or(""),
                entry["service"]["id"].as_str().unwrap_or("")
            );
            let checks = p
                .checks
                .iter()
                .map(|c| {
                    let what = if c.outcome == "met" {
                        c.found.clone()
                    } else {
                        c.needs.join(",")
                    };
                    (c.criterion.clone(), c.outcome.clone(), what)
                })
                .collect();
            (key, checks)
        })
        .collect();
    Ok((proposed, r))
}

fn check(criterion: &str, outcome: &str, what: &str) -> (String, String, String) {
    (criterion.into(), outcome.into(), what.into())
}

#[tokio::test]
async fn aids_match_proposes_what_the_readable_sections_satisfy_and_says_what_it_could_not_check() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(
        &d,
        "household",
        r#"{"situation_familiale":"séparé","adultes":1,"enfants":2}"#,
    )
    .await
    .expect("household");
    ccas.put(
        &d,
        "identity",
        r#"{"code_commune":"12202","langue":"français"}"#,
    )
    .await
    .expect("identity");
    let consent = ccas
        .grant(
            &d,
            &["housing", "household"],
            &["caf12"],
            &maillon_tests::next_year(&c.clock),
        )
        .await
        .expect("consent");
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attached");
    caf.put(&d, "resources", r#"{"montant_mensuel":820,"rsa":true}"#)
        .await
        .expect("resources");
    publish(&c, "caf12", r#"{"id":"aide-logement","name":"Aide au logement","description":"","organization":{"name":"CAF de l'Aveyron"},"criteria":{"resources_ceiling":1000,"territory":["12"],"situations":["poorly_housed"]}}"#).await;
    publish(&c, "ccas-rodez", r#"{"id":"epicerie","name":"Épicerie solidaire","description":"","organization":{"name":"CCAS de Rodez"},"criteria":{"households":["single_parent","isolated"],"resources_ceiling":900}}"#).await;
    publish(&c, "cd12", r#"{"id":"jeunes","name":"Fonds d'aide aux jeunes","description":"","organization":{"name":"Département de l'Aveyron"},"criteria":{"max_age":25}}"#).await;
    publish(&c, "cd12", r#"{"id":"accueil","name":"Accueil inconditionnel","description":"","organization":{"name":"Département de l'Aveyron"}}"#).await;

    // At the CAF: what the CCAS shares and its own resources. The identity
    // is not shared: the territory cannot be checked there.
    let (proposed, reply) = matched(&caf, &d).await.expect("matched at the CAF");
    assert_eq!(
        proposed,
        [
            (
                "ccas-rodez/epicerie".into(),
                vec![
                    check("household", "met", "single_parent"),
                    check("resources", "met", "820")
                ]
            ),
            ("cd12/accueil".into(), vec![]),
            (
                "caf12/aide-logement".into(),
                vec![
                    check("resources", "met", "820"),
                    check("territory", "unchecked", "identity"),
                    check("situation", "met", "poorly_housed"),
                ]
            ),
        ],
        "fully checked first; the young people's fund left out (42 years old)"
    );
    assert_eq!(reply.excluded, 1);
    let read: Vec<(String, String)> = reply
        .read
        .iter()
        .map(|s| (s.owner.clone(), s.section.clone()))
        .collect();
    assert!(
        read.contains(&("ccas-rodez".into(), "household".into())),
        "{read:?}"
    );
    assert!(
        read.contains(&("caf12".into(), "resources".into())),
        "{read:?}"
    );
    assert!(
        !read.iter().any(|(_, s)| s == "identity"),
        "not shared, not read"
    );

    // At the CCAS: its own sections; the CAF shares nothing.
    let (proposed, _) = matched(&ccas, &d).await.expect("matched at the CCAS");
    let logement = proposed
        .iter()
        .find(|(k, _)| k == "caf12/aide-logement")
        .expect("proposed");
    assert_eq!(
        logement.1,
        [
            check("resources", "unchecked", "resources"),
            check("territory", "met", "12202"),
            check("situation", "met", "poorly_housed"),
        ]
    );

    // Once the person withdraws the consent, the CAF no longer reads the
    // household: that criterion is no longer checked there.
    ccas.revoke(&consent).await.expect("revoked");
    let (proposed, reply) = matched(&caf, &d).await.expect("matched after revocation");
    let epicerie = proposed
        .iter()
        .find(|(k, _)| k == "ccas-rodez/epicerie")
        .expect("still proposed");
    assert_eq!(epicerie.1[0], check("household", "unchecked", "household"));
    assert!(
        !reply.read.iter().any(|s| s.owner == "ccas-rodez"),
        "{:?}",
        reply.read
    );

    // Refusals: an admin or an auditor, a dossier this node does not hold,
    // no purpose; none is logged as a match.
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    let before = maillon_tests::audit_events(&auditor, "aids_matched")
        .await
        .len();
    assert_eq!(before, 2);
    for who in [c.admin("caf12"), auditor.clone()] {
        let desk = maillon_tests::Desk { conn: who };
        assert_eq!(
            maillon_tests::code(matched(&desk, &d).await).0,
            tonic::Code::PermissionDenied
        );
    }
    let cd = c.desk("cd12", "agent-cd").await;
    assert_eq!(
        maillon_tests::code(matched(&cd, &d).await).0,
        tonic::Code::NotFound
    );
    let no_purpose = caf
        .conn
        .api()
        .match_aids(caf.conn.req(maillon_proto::v1::MatchAidsRequest {
            dossier: d.clone(),
            purpose: String::new(),
        }))
        .await;
    assert_eq!(
        maillon_tests::code(no_purpose).0,
        tonic::Code::InvalidArgument
    );
    let logged = maillon_tests::audit_events(&auditor, "aids_matched").await;
    assert_eq!(logged.len(), 2, "refusals log no match");
    assert_eq!(logged[0]["proposed"], 3);

    // The person's access report tells it, in French.
    let report = c.access_report(&auditor, &d).await;
    let text = format!("{report:?}");
    assert!(
        text.contains("a recherché les aides auxquelles vous pourriez avoir droit"),
        "{text}"
    );
}

#[tokio::test]
async fn a_member_keeps_at_most_256_services_withdrawn_ones_included_and_asks_for_no_more() {
    use maillon_node::service::{MAX_SERVICES_PER_MEMBER, PeerNetwork as _};

    let c = Cluster::start().await;
    let admin = caller(&c.node("cd12").admin.user, Role::Admin);
    let cd12 = c.running("cd12").node().clone();
    let numbered = |n: usize| {
        let mut s = renamed("Service");
        s.id = format!("service-{n}");
        s
    };
    for n in 0..MAX_SERVICES_PER_MEMBER {
        cd12.publish_aid(&admin, numbered(n), false)
            .await
            .expect("published");
    }
    let over = cd12
        .publish_aid(&admin, numbered(MAX_SERVICES_PER_MEMBER), false)
        .await;
    assert!(
        matches!(&over, Err(ServiceError::Invalid(m)) if m.contains("withdrawn ones included")),
        "{over:?}"
    );
    // A withdrawn service still counts (every member keeps its withdrawal),
    // and its id may be published again.
    cd12.publish_aid(&admin, numbered(0), true)
        .await
        .expect("withdrawn");
    assert!(
        cd12.publish_aid(&admin, numbered(MAX_SERVICES_PER_MEMBER), false)
            .await
            .is_err()
    );
    let again = cd12
        .publish_aid(&admin, numbered(0), false)
        .await
        .expect("published again under its id");
    assert_eq!(again.entry.version, 3);

    // Asking a member for its census while claiming to know more than a
    // member may publish is refused.
    let known: std::collections::HashMap<String, u64> = (0..=MAX_SERVICES_PER_MEMBER)
        .map(|n| (format!("cd12/service-{n}"), 1))
        .collect();
    let r = c
        .peer_as("caf12")
        .fetch_census(&c.member("cd12"), &known)
        .await;
    assert!(
        matches!(&r, Err(e) if e.to_string().contains("at most 256 services")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_change_made_from_a_replaced_version_is_refused_under_the_census_lock() {
    let c = Cluster::start().await;
    let admin = caller(&c.node("ccas-rodez").admin.user, Role::Admin);
    let ccas = c.running("ccas-rodez").node().clone();
    let v1 = ccas
        .publish_aid_after(&admin, renamed("Microcrédit personnel"), false, Some(0))
        .await
        .expect("a new service, from nothing");
    assert_eq!(v1.entry.version, 1);
    let again = ccas
        .publish_aid_after(&admin, renamed("Microcrédit"), false, Some(0))
        .await;
    assert!(
        matches!(&again, Err(ServiceError::State(m)) if m.contains("version 1 now, not 0")),
        "{again:?}"
    );
    // Two admins start from version 1; the second to save is refused.
    let (a, b) = tokio::join!(
        ccas.publish_aid_after(&admin, renamed("Microcrédit social"), false, Some(1)),
        ccas.publish_aid_after(&admin, renamed("Microcrédit solidaire"), false, Some(1)),
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        kept_at(&c, "ccas-rodez", "ccas-rodez", "microcredit"),
        Some((2, false))
    );
}
