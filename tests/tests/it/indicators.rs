//! The federation's indicators across real nodes: each member counts from
//! its own log and signs; an auditor's `maillon indicators` sums them with
//! small cells suppressed; no personal data travels; refusals for roles,
//! bad periods and strangers; a member down is named missing.

use std::sync::Arc;

use maillon_node::roster::AlertRule;
use maillon_node::service::PeerNetwork as _;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, code, next_year};
use tonic::Code;

/// The quarter the cluster's clock is in, as `2026-Q4`.
fn this_quarter(c: &Cluster) -> String {
    let now = maillon_node::clock::Clock::now(&*c.clock);
    let day = maillon_node::types::Date::from_unix(now).to_string();
    let month: u8 = day[5..7].parse().expect("a month");
    format!("{}-Q{}", &day[..4], (month - 1) / 3 + 1)
}

async fn indicators(
    conn: &maillon_cli::client::Conn,
    period: &str,
) -> Result<pb::IndicatorsReply, tonic::Status> {
    conn.api()
        .indicators(conn.req(pb::IndicatorsRequest {
            period: period.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn row<'a>(r: &'a pb::IndicatorsReply, indicator: &str, by: &str) -> &'a pb::IndicatorRow {
    r.rows
        .iter()
        .find(|row| row.indicator == indicator && row.by == by && row.territory.is_empty())
        .unwrap_or_else(|| panic!("no {indicator}/{by} in {r:#?}"))
}

/// The row of `indicator` in `territory`.
fn in_territory<'a>(
    r: &'a pb::IndicatorsReply,
    indicator: &str,
    territory: &str,
) -> Option<&'a pb::IndicatorRow> {
    r.rows
        .iter()
        .find(|row| row.indicator == indicator && row.territory == territory)
}

#[tokio::test]
async fn indicators_sum_every_members_signed_counts_with_small_cells_suppressed() {
    let mut c = Cluster::start_with(|r| {
        r.charter.small_cell_threshold = Some(3);
        r.charter.alerts = Some(AlertRule {
            recipient: "ccas-rodez".parse().expect("id"),
            retention_days: 30,
        });
    })
    .await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "identity", r#"{"code_commune":"12202"}"#)
        .await
        .expect("the person's commune");
    for _ in 0..4 {
        ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
            .await
            .expect("consent");
    }
    let admin = c.admin("caf12");
    admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: br#"{"id":"aide-logement","name":"Aide au logement","description":"","organization":{"name":"CAF"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    let cd_admin = c.admin("cd12");
    cd_admin
        .api()
        .publish_aid(cd_admin.req(pb::PublishAidRequest {
            service: br#"{"id":"accueil","name":"Accueil","description":"","organization":{"name":"CD"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    ccas.conn
        .api()
        .match_aids(ccas.conn.req(pb::MatchAidsRequest {
            dossier: d.clone(),
            purpose: "recherche des aides".into(),
        }))
        .await
        .expect("matched");
    let sent = ccas
        .conn
        .api()
        .orient(ccas.conn.req(pb::OrientRequest {
            dossier: d.clone(),
            to: "caf12".into(),
            service: "aide-logement".into(),
            reason: "Aide au loyer".into(),
            consent: String::new(),
        }))
        .await
        .expect("oriented")
        .into_inner();
    caf.conn
        .api()
        .step_orientation(caf.conn.req(pb::StepOrientationRequest {
            orientation: sent.id,
            status: "completed".into(),
            note: String::new(),
        }))
        .await
        .expect("completed");
    let volunteer = c.user("cd12", "voisine", Role::Volunteer).await;
    volunteer
        .api()
        .raise_alert(volunteer.req(pb::RaiseAlertRequest {
            about: "Voisin âgé".into(),
            place: "Rodez".into(),
            concern: "isolation".into(),
            to: String::new(),
        }))
        .await
        .expect("raised");

    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let quarter = this_quarter(&c);
    let r = indicators(&auditor, &quarter).await.expect("indicators");
    assert_eq!(r.threshold, 3);
    assert_eq!(
        r.members,
        ["ccas-rodez", "cd12", "caf12"]
            .map(String::from)
            .to_vec()
            .into_iter()
            .filter(|m| r.members.contains(m))
            .collect::<Vec<_>>()
    );
    assert_eq!(r.members.len(), 3);
    assert!(r.missing.is_empty());
    let at = |row: &pb::IndicatorRow, member: &str| {
        row.members[r
            .members
            .iter()
            .position(|m| m == member)
            .expect("a member")]
        .clone()
    };
    let consents = row(&r, "consents_given", "");
    assert_eq!(
        (at(consents, "ccas-rodez").as_str(), consents.total.as_str()),
        ("4", "4")
    );
    // A member's counts serve a minute: a consent given now is counted
    // once the minute has run out.
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("a fifth consent");
    let again = indicators(&auditor, &quarter).await.expect("indicators");
    assert_eq!(
        at(row(&again, "consents_given", ""), "ccas-rodez"),
        "4",
        "counted a moment ago"
    );
    c.clock.advance(maillon_node::service::INDICATORS_FRESH);
    let later = indicators(&auditor, &quarter).await.expect("indicators");
    assert_eq!(at(row(&later, "consents_given", ""), "ccas-rodez"), "5");
    let sent = row(&r, "orientations_sent", "aide-logement");
    assert_eq!(
        (at(sent, "ccas-rodez").as_str(), sent.total.as_str()),
        ("< 3", "< 3")
    );
    let completed = row(&r, "orientations_completed", "aide-logement");
    assert_eq!(at(completed, "caf12"), "< 3");
    // Matched, then oriented: claimed; matched and left: unclaimed.
    assert_eq!(
        at(row(&r, "aids_unclaimed", "cd12/accueil"), "ccas-rodez"),
        "< 3"
    );
    assert!(
        !r.rows
            .iter()
            .any(|row| row.indicator == "aids_unclaimed" && row.by == "caf12/aide-logement"),
        "{r:#?}"
    );
    let raised = row(&r, "alerts_raised", "isolation");
    assert_eq!(
        (
            at(raised, "cd12").as_str(),
            at(raised, "ccas-rodez").as_str()
        ),
        ("< 3", "0")
    );
    // Counted again by territory: the person's commune, as the identity
    // section at the counting member names it; the CAF does not hold it.
    let here = in_territory(&r, "consents_given", "12202").expect("by commune");
    assert_eq!(
        (
            here.by.as_str(),
            at(here, "ccas-rodez").as_str(),
            here.total.as_str()
        ),
        ("", "4", "4")
    );
    assert!(
        in_territory(&r, "orientations_completed", "12202").is_none(),
        "the CAF does not know the commune"
    );
    assert!(
        in_territory(&r, "orientations_completed", "unknown").is_none(),
        "a territory beside a suppressed total is not named"
    );
    assert!(
        !r.rows
            .iter()
            .any(|row| row.indicator == "alerts_raised" && !row.territory.is_empty()),
        "an alert is about no dossier"
    );
    let text = format!("{r:?}");
    for personal in ["Martin", "Camille", "Voisin", "Rodez", &d] {
        assert!(!text.contains(personal), "{personal} in the indicators");
    }

    // Another quarter counts nothing; a bad period, a caseworker, a
    // volunteer are refused.
    let r = indicators(&auditor, "2020-Q1")
        .await
        .expect("an empty quarter");
    assert!(r.rows.is_empty());
    assert_eq!(
        code(indicators(&auditor, "2026-Q5").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(indicators(&ccas.conn, &quarter).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(indicators(&volunteer, &quarter).await).0,
        Code::PermissionDenied
    );
    indicators(&c.admin("cd12"), &quarter)
        .await
        .expect("an admin reports to the assembly");

    // A stranger's node (a certificate no roster pins) is refused its counts.
    let stranger = maillon_node::crypto::TlsIdentity::generate(&"intrus".parse().expect("id"))
        .expect("identity");
    let network = maillon_node::transport::PeerClients::new(
        stranger,
        Arc::new(maillon_node::roster::CurrentRoster::new(c.genesis())),
    );
    assert!(
        network
            .get_indicators(&c.member("caf12"), &quarter)
            .await
            .is_err()
    );
    // A member asks another directly: signed counts, checked against its key.
    let signed = c
        .peer_as("cd12")
        .get_indicators(&c.member("caf12"), &quarter)
        .await
        .expect("counts");
    let counts = maillon_node::indicators::open(
        &signed,
        &"caf12".parse().expect("id"),
        &c.key("caf12").public(),
        &quarter,
    )
    .expect("signed by the CAF");
    assert_eq!(counts.counts["orientations_completed"]["aide-logement"], 1);
    assert!(
        maillon_node::indicators::open(
            &signed,
            &"caf12".parse().expect("id"),
            &c.key("cd12").public(),
            &quarter
        )
        .is_err()
    );

    // A member down is named missing; the others are still summed.
    c.fed.node_mut("caf12").stop().await;
    let r = indicators(&auditor, &quarter).await.expect("indicators");
    assert_eq!(r.missing, ["caf12"]);
    assert_eq!(r.members.len(), 2);
}
