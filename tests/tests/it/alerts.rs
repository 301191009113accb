//! Vigilance alerts across real nodes: a volunteer at the département raises
//! an alert to the CCAS the charter names; the CCAS's caseworkers take it
//! into account and close it; the volunteer sees only that it was received
//! and taken into account, and can read no file; each refusal changes
//! nothing; the alert is purged when the charter's time runs out, its
//! words' key destroyed; a crash between its log entry and its store write
//! loses nothing.

use maillon_cli::client::Conn;
use maillon_node::crypto::Context;
use maillon_node::protocol::{Alert, Notice, SignedBytes};
use maillon_node::roster::AlertRule;
use maillon_node::service::PeerNetwork as _;
use maillon_node::types::{AlertConcern, AlertId, Role};
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, audit_events, code, files_named};
use tonic::{Code, Status};

const ABOUT: &str = "Monsieur seul au 3e étage, 4 rue des Lilas, volets fermés depuis une semaine";

/// A federation whose charter sends alerts to the CCAS, kept 30 days.
pub(crate) async fn with_alerts() -> Cluster {
    Cluster::start_with(|r| {
        r.charter.alerts = Some(AlertRule {
            recipient: "ccas-rodez".parse().expect("id"),
            retention_days: 30,
        });
    })
    .await
}

async fn raise(
    conn: &Conn,
    about: &str,
    concern: &str,
    to: &str,
) -> Result<pb::AlertEntry, Status> {
    conn.api()
        .raise_alert(conn.req(pb::RaiseAlertRequest {
            about: about.into(),
            place: "Rodez".into(),
            concern: concern.into(),
            to: to.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn list(conn: &Conn) -> Result<pb::ListAlertsReply, Status> {
    conn.api()
        .list_alerts(conn.req(pb::ListAlertsRequest::default()))
        .await
        .map(tonic::Response::into_inner)
}

async fn handle(
    conn: &Conn,
    id: &str,
    status: &str,
    outcome: &str,
) -> Result<pb::AlertEntry, Status> {
    conn.api()
        .handle_alert(conn.req(pb::HandleAlertRequest {
            alert: id.into(),
            status: status.into(),
            outcome: outcome.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_volunteers_alert_reaches_the_ccas_which_takes_and_closes_it_and_the_volunteer_sees_only_that()
 {
    let c = with_alerts().await;
    let volunteer = c.user("cd12", "voisine-bourran", Role::Volunteer).await;
    let ccas = c.user("ccas-rodez", "agent-ccas", Role::Caseworker).await;
    let cd_dpo = c.user("cd12", "dpo-cd", Role::Auditor).await;
    let ccas_dpo = c.user("ccas-rodez", "dpo-ccas", Role::Auditor).await;

    // Refused, and nothing raised: to a member the charter does not name,
    // no words, too many words, an unknown concern, an admin, an auditor.
    let (got, message) = code(raise(&volunteer, ABOUT, "isolation", "caf12").await);
    assert_eq!(got, Code::PermissionDenied, "{message}");
    assert!(
        message.contains("the charter names ccas-rodez"),
        "{message}"
    );
    assert_eq!(
        code(raise(&volunteer, " ", "isolation", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(raise(&volunteer, &"x".repeat(301), "isolation", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(raise(&volunteer, ABOUT, "bruit", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(raise(&c.admin("cd12"), ABOUT, "isolation", "").await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(raise(&cd_dpo, ABOUT, "isolation", "").await).0,
        Code::PermissionDenied
    );
    assert!(audit_events(&cd_dpo, "alert_raised").await.is_empty());

    // Raised: delivered at once, and the CCAS's word comes back.
    let raised = raise(&volunteer, ABOUT, "isolation", "")
        .await
        .expect("raised");
    assert_eq!(
        (raised.to.as_str(), raised.status.as_str()),
        ("ccas-rodez", "received")
    );
    assert!(raised.about.is_empty(), "its raiser keeps no words");

    // A volunteer reads no file, no census, no orientation, no log.
    let mut api = volunteer.api();
    let denied: Vec<(&str, Result<(), Status>)> = vec![
        (
            "open",
            api.open_dossier(volunteer.req(pb::OpenDossierRequest {
                given_name: "A".into(),
                family_name: "B".into(),
                birth_date: "1950-01-01".into(),
            }))
            .await
            .map(drop),
        ),
        (
            "search",
            api.search_dossiers(volunteer.req(pb::SearchDossiersRequest {
                text: "martin".into(),
            }))
            .await
            .map(drop),
        ),
        (
            "aids",
            api.search_aids(volunteer.req(pb::SearchAidsRequest::default()))
                .await
                .map(drop),
        ),
        (
            "orientations",
            api.list_orientations(volunteer.req(pb::ListOrientationsRequest::default()))
                .await
                .map(drop),
        ),
        (
            "audit",
            api.audit_tail(volunteer.req(pb::AuditTailRequest {
                limit: 10,
                from: None,
            }))
            .await
            .map(drop),
        ),
        (
            "handle",
            api.handle_alert(volunteer.req(pb::HandleAlertRequest {
                alert: raised.id.clone(),
                status: "taken".into(),
                outcome: String::new(),
            }))
            .await
            .map(drop),
        ),
    ];
    for (what, r) in denied {
        assert_eq!(code(r).0, Code::PermissionDenied, "a volunteer's {what}");
    }

    // At the CCAS: its caseworkers read the words; its auditors do not.
    let at_ccas = list(&ccas).await.expect("listed");
    assert_eq!(at_ccas.received.len(), 1);
    let received = &at_ccas.received[0];
    assert_eq!(
        (
            received.about.as_str(),
            received.from.as_str(),
            received.status.as_str()
        ),
        (ABOUT, "cd12", "received")
    );
    assert_eq!(code(list(&ccas_dpo).await).0, Code::PermissionDenied);

    // Closing says its outcome; steps go forward only; only the recipient handles.
    assert_eq!(
        code(handle(&ccas, &raised.id, "closed", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(handle(&ccas, &raised.id, "received", "").await).0,
        Code::InvalidArgument
    );
    let cd = c.user("cd12", "agent-cd", Role::Caseworker).await;
    assert_eq!(
        code(handle(&cd, &raised.id, "taken", "").await).0,
        Code::NotFound
    );
    handle(&ccas, &raised.id, "taken", "").await.expect("taken");
    assert_eq!(
        code(handle(&ccas, &raised.id, "taken", "").await).0,
        Code::FailedPrecondition
    );
    let mine = list(&volunteer).await.expect("the volunteer's list");
    assert_eq!(mine.raised[0].status, "taken");
    assert!(mine.received.is_empty());
    let closed = handle(&ccas, &raised.id, "closed", "contacted")
        .await
        .expect("closed");
    assert_eq!(
        (
            closed.status.as_str(),
            closed.outcome.as_str(),
            closed.taken_by.as_str()
        ),
        ("closed", "contacted", "agent-ccas")
    );
    let mine = list(&volunteer).await.expect("the volunteer's list");
    assert_eq!(
        mine.raised[0].status, "taken",
        "the raiser never learns the outcome"
    );
    assert!(mine.raised[0].outcome.is_empty());

    // Logged on both sides, never with its words.
    let at_cd = audit_events(&cd_dpo, "alert_raised").await;
    assert_eq!(at_cd.len(), 1);
    assert_eq!(at_cd[0]["concern"], "isolation");
    let acks = audit_events(&cd_dpo, "alert_acknowledged").await;
    assert_eq!(
        acks.iter()
            .map(|e| e["status"].as_str())
            .collect::<Vec<_>>(),
        [Some("received"), Some("taken")]
    );
    let handled = audit_events(&ccas_dpo, "alert_handled").await;
    assert_eq!(
        handled
            .iter()
            .map(|e| e["status"].as_str())
            .collect::<Vec<_>>(),
        [Some("taken"), Some("closed")]
    );
    assert_eq!(handled[1]["outcome"], "contacted");
    for dpo in [&cd_dpo, &ccas_dpo] {
        let all = maillon_tests::audit_entries(dpo).await;
        assert!(
            !all.iter().any(|e| e.to_string().contains("Lilas")),
            "an alert's words reached a log in clear"
        );
    }

    // A third member can neither forge an alert from the département nor
    // send one to a member the charter does not name.
    let forged = |from: &str, to: &str| Alert {
        id: AlertId::random(),
        from: from.parse().expect("id"),
        to: to.parse().expect("id"),
        about: "faux".into(),
        place: "Rodez".into(),
        concern: AlertConcern::Other,
        raised_at: maillon_node::clock::Clock::now(&*c.clock),
    };
    let as_caf = c.peer_as("caf12");
    for (alert, to) in [
        (forged("cd12", "ccas-rodez"), "ccas-rodez"),
        (forged("caf12", "cd12"), "cd12"),
    ] {
        let signature = SignedBytes::sign(&alert, Context::Alert, &c.key("caf12")).signature;
        let r = as_caf
            .notify(&c.member(to), &Notice::Alert { alert, signature })
            .await;
        assert!(r.is_err(), "a forged alert to {to} was taken");
    }
    assert_eq!(list(&ccas).await.expect("listed").received.len(), 1);
    // Nor tell the département that its alert was taken, in the CCAS's name
    // or its own.
    for by in ["caf12", "ccas-rodez"] {
        let ack = maillon_node::protocol::AlertAck {
            id: raised.id.parse().expect("id"),
            by: by.parse().expect("id"),
            status: maillon_node::types::AlertStatus::Taken,
            at: 0,
        };
        let signature = SignedBytes::sign(&ack, Context::Alert, &c.key("caf12")).signature;
        let r = as_caf
            .notify(&c.member("cd12"), &Notice::AlertAck { ack, signature })
            .await;
        assert!(
            r.is_err(),
            "an acknowledgement by {by} told by the CAF was taken"
        );
    }

    // A volunteer at the CCAS itself: received at once.
    let local = c.user("ccas-rodez", "benevole-ccas", Role::Volunteer).await;
    let here = raise(
        &local,
        "Dame âgée, 2 place du Bourg",
        "health",
        "ccas-rodez",
    )
    .await
    .expect("raised here");
    assert_eq!(here.status, "received");
    assert_eq!(list(&ccas).await.expect("listed").received.len(), 2);

    // The charter's time runs out: purged on both sides, keys destroyed.
    for id in ["cd12", "ccas-rodez"] {
        assert_eq!(
            files_named(&c.node(id).dir, &raised.id).len(),
            1,
            "{id} seals the alert's words under a key of its own"
        );
    }
    c.clock.advance(29 * 86_400);
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .purge_alerts()
            .await
            .expect("nothing due"),
        0
    );
    c.clock.advance(2 * 86_400);
    assert_eq!(
        c.running("cd12")
            .node()
            .purge_alerts()
            .await
            .expect("purged"),
        1
    );
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .purge_alerts()
            .await
            .expect("purged"),
        2
    );
    assert!(list(&ccas).await.expect("listed").received.is_empty());
    assert!(list(&volunteer).await.expect("listed").raised.is_empty());
    for id in ["cd12", "ccas-rodez"] {
        assert!(
            files_named(&c.node(id).dir, &raised.id).is_empty(),
            "{id} keeps a key of the purged alert"
        );
    }
    assert_eq!(audit_events(&ccas_dpo, "alert_purged").await.len(), 2);
}

#[tokio::test]
async fn without_an_alert_recipient_in_the_charter_no_alert_is_raised() {
    let c = Cluster::start().await;
    let volunteer = c.user("cd12", "voisin", Role::Volunteer).await;
    let (got, message) = code(raise(&volunteer, ABOUT, "isolation", "").await);
    assert_eq!(got, Code::FailedPrecondition, "{message}");
    assert!(
        message.contains("the charter names no alert recipient"),
        "{message}"
    );
}

#[tokio::test]
async fn a_dossier_opened_from_an_alert_on_the_command_line_closes_it() {
    use maillon_cli::exit::{BAD_INPUT, exit_code};

    use crate::cli::{maillon, path};
    use crate::json::json_of;

    let c = with_alerts().await;
    let volunteer = c.user("cd12", "voisine", Role::Volunteer).await;
    let raised = raise(&volunteer, "Voisine âgée, seule", "isolation", "")
        .await
        .expect("raised");
    let agent = c.desk("ccas-rodez", "agent-ccas").await;
    handle(&agent.conn, &raised.id, "taken", "")
        .await
        .expect("taken");
    let profile = path(&c.node("ccas-rodez").dir, "agent-ccas.profile.toml");
    let open = |alert: &str| -> Vec<String> {
        [
            "dossier",
            "open",
            "--given-name",
            "Jeanne",
            "--family-name",
            "Seule",
            "--birth-date",
            "1938-05-06",
            "--alert",
            alert,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // A malformed alert id: nothing is opened.
    let bad = open("ALR-faux");
    let mut argv = vec!["--profile", profile.as_str()];
    argv.extend(bad.iter().map(String::as_str));
    let e = maillon(&argv).await.expect_err("a bad alert id");
    assert_eq!(exit_code(&e), BAD_INPUT, "{e}");
    let found = agent.conn.search_dossiers("Seule").await.expect("searched");
    assert!(found.is_empty(), "nothing opened");

    let good = open(&raised.id);
    let args: Vec<&str> = good.iter().map(String::as_str).collect();
    let out = json_of(std::path::Path::new(&profile), &args).await;
    assert_eq!(out["alert"], raised.id);
    assert_eq!(out["alert_status"], "closed");
    assert!(
        out["dossier"]
            .as_str()
            .is_some_and(|d| d.starts_with("DSU-"))
    );
    let received = list(&agent.conn).await.expect("listed").received;
    assert_eq!(
        (received[0].status.as_str(), received[0].outcome.as_str()),
        ("closed", "dossier_opened")
    );

    // Opened again from the same alert, closed already: the dossier opens
    // (accueil inconditionnel), the command fails and says which dossier.
    let argv: Vec<&str> = ["--profile", profile.as_str(), "--json"]
        .into_iter()
        .chain(good.iter().map(String::as_str))
        .collect();
    let e = maillon(&argv)
        .await
        .expect_err("the alert is closed already");
    assert_ne!(exit_code(&e), 0, "{e}");
    let found = agent.conn.search_dossiers("Seule").await.expect("searched");
    assert_eq!(found.len(), 2, "the second dossier is open all the same");
}
