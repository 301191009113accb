//! Orientations with a closed loop, across real nodes: a caseworker at the
//! CCAS orients the person to the CAF for a service of its census, on the
//! person's consent; the CAF accepts and completes it; the CCAS sees each
//! step; every step is logged on both sides; each refusal changes nothing;
//! an orientation survives a member down and a restart.

use maillon_cli::client::Conn;
use maillon_node::crypto::Context;
use maillon_node::protocol::{Notice, Orientation, OrientationStep, SignedBytes};
use maillon_node::service::PeerNetwork as _;
use maillon_node::types::{OrientationStatus, Role};
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, Desk, audit_events, code, files_named, found_in, next_year};
use tonic::{Code, Status};

const AIDE_LOGEMENT: &str = r#"{"id":"aide-logement","name":"Aide au logement","description":"Une aide au paiement du loyer.","organization":{"name":"CAF de l'Aveyron"},"categories":["logement"],"criteria":{"resources_ceiling":1000}}"#;

/// The CAF publishes its housing aid (the CCAS has it at once).
async fn caf_publishes(c: &Cluster) {
    let admin = c.admin("caf12");
    admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: AIDE_LOGEMENT.as_bytes().to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
}

async fn orient(
    desk: &Desk,
    d: &str,
    to: &str,
    service: &str,
    reason: &str,
    consent: &str,
) -> Result<pb::OrientationEntry, Status> {
    desk.conn
        .api()
        .orient(desk.conn.req(pb::OrientRequest {
            dossier: d.into(),
            to: to.into(),
            service: service.into(),
            reason: reason.into(),
            consent: consent.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn step(
    conn: &Conn,
    id: &str,
    status: &str,
    note: &str,
) -> Result<pb::OrientationEntry, Status> {
    conn.api()
        .step_orientation(conn.req(pb::StepOrientationRequest {
            orientation: id.into(),
            status: status.into(),
            note: note.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn list(conn: &Conn, direction: &str, status: &str) -> Vec<pb::OrientationEntry> {
    conn.api()
        .list_orientations(conn.req(pb::ListOrientationsRequest {
            direction: direction.into(),
            status: status.into(),
        }))
        .await
        .expect("listed")
        .into_inner()
        .orientations
}

const REASON: &str = "Loyer en retard de deux mois, droits à l'aide au logement non ouverts";

/// An orientation about dossier `d` from `from` to `to`, for the CAF's
/// housing aid, as a member's node would sign it.
pub(crate) fn orientation_to(
    c: &Cluster,
    d: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> Orientation {
    Orientation {
        id: maillon_node::types::OrientationId::random(),
        dossier: d.parse().expect("dossier"),
        from: from.parse().expect("member"),
        to: to.parse().expect("member"),
        service: "aide-logement".into(),
        reason: reason.into(),
        consent: maillon_node::types::ConsentId::random(),
        sections: vec![],
        sent_at: maillon_node::clock::Clock::now(&*c.clock),
    }
}

#[tokio::test]
async fn an_orientation_goes_to_the_caf_which_accepts_and_completes_it_and_the_ccas_sees_each_step()
{
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf_publishes(&c).await;
    let ccas_auditor = c.user("ccas-rodez", "dpo-ccas", Role::Auditor).await;
    let caf_auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;

    // Refused, and nothing sent nor logged: without the person's consent,
    // with a consent that names another member, or one withdrawn; an
    // unknown service; itself; a stranger; no reason, a reason too long;
    // an admin; a dossier the département does not hold.
    let (code_, message) = code(orient(&ccas, &d, "caf12", "aide-logement", REASON, "").await);
    assert_eq!(code_, Code::FailedPrecondition, "{message}");
    assert!(
        message.contains("no consent of the person in force here names caf12"),
        "{message}"
    );
    let for_cd12 = ccas
        .grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("a consent naming the département");
    assert_eq!(
        code(orient(&ccas, &d, "caf12", "aide-logement", REASON, &for_cd12).await).0,
        Code::FailedPrecondition
    );
    let withdrawn = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("a consent naming the CAF");
    ccas.revoke(&withdrawn).await.expect("withdrawn");
    assert_eq!(
        code(orient(&ccas, &d, "caf12", "aide-logement", REASON, &withdrawn).await).0,
        Code::FailedPrecondition
    );
    assert_eq!(
        code(orient(&ccas, &d, "caf12", "aide-logement", REASON, "").await).0,
        Code::FailedPrecondition,
        "a withdrawn consent is not found either"
    );
    let consent = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("the person consents");
    for (to, service, reason, want) in [
        ("caf12", "rsa", REASON, Code::NotFound),
        ("ccas-rodez", "aide-logement", REASON, Code::InvalidArgument),
        ("cpam12", "aide-logement", REASON, Code::FailedPrecondition),
        ("caf12", "aide-logement", "  ", Code::InvalidArgument),
        (
            "caf12",
            "aide-logement",
            &"x".repeat(501),
            Code::InvalidArgument,
        ),
    ] {
        let (got, message) = code(orient(&ccas, &d, to, service, reason, "").await);
        assert_eq!(got, want, "{to} {service}: {message}");
    }
    let admin = Desk {
        conn: c.admin("ccas-rodez"),
    };
    assert_eq!(
        code(orient(&admin, &d, "caf12", "aide-logement", REASON, "").await).0,
        Code::PermissionDenied
    );
    let cd = c.desk("cd12", "agent-cd").await;
    assert_eq!(
        code(orient(&cd, &d, "caf12", "aide-logement", REASON, "").await).0,
        Code::NotFound
    );
    assert!(
        audit_events(&ccas_auditor, "orientation_sent")
            .await
            .is_empty()
    );

    // Sent on the consent in force naming the CAF; the CAF has it at once.
    let sent = orient(&ccas, &d, "caf12", "aide-logement", REASON, "")
        .await
        .expect("oriented");
    assert_eq!(
        (
            sent.status.as_str(),
            sent.consent.as_str(),
            sent.sections.clone()
        ),
        ("sent", consent.as_str(), vec!["housing".to_owned()])
    );
    assert_eq!(sent.service_name, "Aide au logement");
    let received = list(&caf.conn, "received", "").await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        (
            received[0].id.as_str(),
            received[0].dossier.as_str(),
            received[0].from.as_str(),
            received[0].reason.as_str()
        ),
        (sent.id.as_str(), d.as_str(), "ccas-rodez", REASON)
    );
    assert!(
        received[0].sent_by.is_empty(),
        "the sender's agent stays at the sender"
    );
    assert!(list(&caf.conn, "sent", "").await.is_empty());

    // Only the receiving member steps, in order, a decline with its reason.
    assert_eq!(
        code(step(&ccas.conn, &sent.id, "accepted", "").await).0,
        Code::NotFound
    );
    assert_eq!(
        code(step(&caf.conn, &sent.id, "declined", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(step(&caf.conn, &sent.id, "sent", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(step(&caf_auditor, &sent.id, "accepted", "").await).0,
        Code::PermissionDenied
    );

    let accepted = step(
        &caf.conn,
        &sent.id,
        "accepted",
        "Rendez-vous le 12/12 à 10h",
    )
    .await
    .expect("accepted");
    assert_eq!(accepted.status, "accepted");
    let at_ccas = list(&ccas.conn, "sent", "accepted").await;
    assert_eq!(at_ccas.len(), 1, "the CCAS sees the step at once");
    assert_eq!(at_ccas[0].steps[0].note, "Rendez-vous le 12/12 à 10h");
    assert!(
        at_ccas[0].steps[0].by.is_empty(),
        "the CAF's agent stays at the CAF"
    );
    step(&caf.conn, &sent.id, "completed", "Droits ouverts")
        .await
        .expect("completed");
    assert_eq!(
        code(step(&caf.conn, &sent.id, "accepted", "").await).0,
        Code::FailedPrecondition,
        "completed is final"
    );
    let at_ccas = list(&ccas.conn, "", "").await;
    assert_eq!(at_ccas[0].status, "completed");
    assert_eq!(
        at_ccas[0]
            .steps
            .iter()
            .map(|s| s.status.as_str())
            .collect::<Vec<_>>(),
        ["accepted", "completed"]
    );
    assert!(list(&ccas.conn, "", "declined").await.is_empty());

    // Every step logged on both sides.
    assert_eq!(
        audit_events(&ccas_auditor, "orientation_sent").await.len(),
        1
    );
    let noted = audit_events(&ccas_auditor, "orientation_stepped").await;
    assert_eq!(
        noted
            .iter()
            .map(|e| (e["status"].as_str(), e["from"].as_str()))
            .collect::<Vec<_>>(),
        [
            (Some("accepted"), Some("caf12")),
            (Some("completed"), Some("caf12"))
        ]
    );
    assert_eq!(
        audit_events(&caf_auditor, "orientation_received")
            .await
            .len(),
        1
    );
    let taken = audit_events(&caf_auditor, "orientation_stepped").await;
    assert_eq!(
        taken.iter().map(|e| e["by"].as_str()).collect::<Vec<_>>(),
        [Some("agent-caf"), Some("agent-caf")]
    );
    assert!(
        !audit_events(&caf_auditor, "orientations_listed")
            .await
            .is_empty()
    );

    // A member that is neither side cannot speak for them: a step signed
    // by the département, or claiming to be the CAF's; an orientation the
    // département says the CCAS sent.
    let as_cd12 = c.peer_as("cd12");
    let ccas_member = c.member("ccas-rodez");
    let forged_step = |by: &str| OrientationStep {
        id: sent.id.parse().expect("id"),
        dossier: d.parse().expect("dossier"),
        by: by.parse().expect("member"),
        status: OrientationStatus::Declined,
        note: "faux".into(),
        at: maillon_node::clock::Clock::now(&*c.clock),
    };
    for by in ["cd12", "caf12"] {
        let step = forged_step(by);
        let signed = SignedBytes::sign(&step, Context::Orientation, &c.key("cd12"));
        let r = as_cd12
            .notify(
                &ccas_member,
                &Notice::OrientationStep {
                    step,
                    signature: signed.signature,
                },
            )
            .await;
        assert!(r.is_err(), "a step by {by} told by cd12 was taken");
    }
    // The CAF itself cannot attach its step to another dossier.
    let other_dossier = OrientationStep {
        dossier: maillon_node::types::DossierId::random(),
        ..forged_step("caf12")
    };
    let signature =
        SignedBytes::sign(&other_dossier, Context::Orientation, &c.key("caf12")).signature;
    let r = c
        .peer_as("caf12")
        .notify(
            &ccas_member,
            &Notice::OrientationStep {
                step: other_dossier,
                signature,
            },
        )
        .await;
    assert!(r.is_err(), "a step about another dossier was taken");
    let forged = orientation_to(&c, &d, "ccas-rodez", "caf12", "faux");
    let signature = SignedBytes::sign(&forged, Context::Orientation, &c.key("cd12")).signature;
    let r = as_cd12
        .notify(
            &c.member("caf12"),
            &Notice::Orientation {
                orientation: forged,
                signature,
            },
        )
        .await;
    assert!(
        r.is_err(),
        "an orientation from the CCAS told by cd12 was taken"
    );
    assert_eq!(list(&caf.conn, "received", "").await.len(), 1);
    assert_eq!(list(&ccas.conn, "", "completed").await.len(), 1);
    assert_eq!(
        audit_events(&ccas_auditor, "orientation_stepped")
            .await
            .len(),
        2
    );

    // The person's access report tells the orientation, in French.
    let report = c.access_report(&ccas_auditor, &d).await;
    let text = format!("{report:?}");
    assert!(text.contains("vous a orienté vers"), "{text}");

    // The person asks for erasure at the CCAS: the CAF, which never
    // attached the dossier, is told too and forgets the orientation; a late
    // orientation about it is refused there.
    ccas.conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await
        .expect("erased");
    assert!(
        list(&caf.conn, "", "").await.is_empty(),
        "the CAF forgot it"
    );
    assert!(list(&ccas.conn, "", "").await.is_empty());
    let late = orientation_to(&c, &d, "ccas-rodez", "caf12", "tard");
    let signature = SignedBytes::sign(&late, Context::Orientation, &c.key("ccas-rodez")).signature;
    let r = c
        .peer_as("ccas-rodez")
        .notify(
            &c.member("caf12"),
            &Notice::Orientation {
                orientation: late,
                signature,
            },
        )
        .await;
    assert!(
        r.is_err(),
        "an orientation about an erased dossier was taken"
    );
    assert!(list(&caf.conn, "", "").await.is_empty());
}

#[tokio::test]
async fn an_orientation_waits_for_a_member_down_and_survives_restarts_on_both_sides() {
    let mut c = Cluster::start().await;
    let (ccas, _, d) = c.housing_at_the_ccas().await;
    caf_publishes(&c).await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("consent");
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();

    // The CAF is down: the orientation is sent all the same, and waits.
    c.fed.node_mut("caf12").stop().await;
    let sent = orient(&ccas, &d, "caf12", "aide-logement", REASON, "")
        .await
        .expect("sent while the CAF is down");
    let admin = c.admin("ccas-rodez");
    let waiting = admin
        .api()
        .outbox(admin.req(pb::OutboxRequest {}))
        .await
        .expect("outbox")
        .into_inner();
    assert!(
        waiting
            .entries
            .iter()
            .any(|w| w.kind == "orientation" && w.to == "caf12"),
        "{waiting:?}"
    );
    // The CCAS restarts; the CAF comes back; the outbox delivers it.
    c.restart("ccas-rodez").await;
    c.fed
        .node_mut("caf12")
        .start(clock.clone())
        .await
        .expect("the CAF starts");
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("delivered");
    let caf = Desk {
        conn: Conn::new(
            &maillon_node::config::Profile::read(
                &c.node("caf12").dir.join("agent-caf.profile.toml"),
            )
            .expect("profile"),
        )
        .expect("conn"),
    };
    let received = list(&caf.conn, "received", "").await;
    assert_eq!(received.len(), 1, "delivered after both restarts");

    // The CCAS is down when the CAF accepts: the step waits at the CAF.
    c.fed.node_mut("ccas-rodez").stop().await;
    step(&caf.conn, &sent.id, "accepted", "")
        .await
        .expect("accepted");
    c.restart("caf12").await;
    c.fed
        .node_mut("ccas-rodez")
        .start(clock)
        .await
        .expect("the CCAS starts");
    c.clock.advance(3600);
    c.running("caf12")
        .node()
        .deliver_outbox()
        .await
        .expect("delivered");
    let ccas = Desk {
        conn: Conn::new(
            &maillon_node::config::Profile::read(
                &c.node("ccas-rodez").dir.join("agent-ccas.profile.toml"),
            )
            .expect("profile"),
        )
        .expect("conn"),
    };
    assert_eq!(list(&ccas.conn, "sent", "accepted").await.len(), 1);
    drop(caf);
}

#[tokio::test]
async fn orientations_from_the_command_line_send_list_and_answer_and_each_refusal_exits_with_its_code()
 {
    use maillon_cli::exit::exit_code;

    use crate::cli::{maillon, path};
    use crate::json::json_of;

    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    caf_publishes(&c).await;
    let ccas_p = path(&c.node("ccas-rodez").dir, "agent-ccas.profile.toml");
    let caf_p = path(&c.node("caf12").dir, "agent-caf.profile.toml");
    let send = [
        "orient",
        &d,
        "--to",
        "caf12",
        "--service",
        "aide-logement",
        "--reason",
        REASON,
    ];
    let mut argv = vec!["--profile", ccas_p.as_str()];
    argv.extend_from_slice(&send);
    let e = maillon(&argv).await.expect_err("no consent yet");
    assert_eq!(exit_code(&e), 1, "{e}");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("consent");
    let sent = json_of(std::path::Path::new(&ccas_p), &send).await;
    for field in [
        "id",
        "dossier",
        "from",
        "to",
        "service",
        "service_name",
        "reason",
        "consent",
        "sections",
        "sent_at",
        "sent_by",
        "status",
        "steps",
    ] {
        assert!(sent.get(field).is_some(), "no {field} in {sent}");
    }
    let id = sent["id"].as_str().expect("id").to_owned();
    let listed = json_of(
        std::path::Path::new(&caf_p),
        &["orient", "list", "--received", "--status", "sent"],
    )
    .await;
    assert_eq!(listed["orientations"][0]["id"], id.as_str());
    let parsed = <maillon_cli::Args as clap::Parser>::try_parse_from([
        "maillon",
        "--profile",
        &caf_p,
        "orient",
        "decline",
        &id,
    ]);
    assert!(parsed.is_err(), "clap asks for the reason");
    let declined = json_of(
        std::path::Path::new(&caf_p),
        &[
            "orient",
            "decline",
            &id,
            "--reason",
            "Hors de notre territoire",
        ],
    )
    .await;
    assert_eq!(declined["status"], "declined");
    let e = maillon(&["--profile", &caf_p, "orient", "complete", &id])
        .await
        .expect_err("final");
    assert_eq!(exit_code(&e), 1, "{e}");
    let e = maillon(&["--profile", &ccas_p, "orient", "accept", &id])
        .await
        .expect_err("not received there");
    assert_eq!(exit_code(&e), 4, "{e}");
    let e = maillon(&["--profile", &ccas_p, "orient", "list", "--status", "lost"])
        .await
        .expect_err("bad status");
    assert_eq!(exit_code(&e), 2, "{e}");
    let mine = json_of(std::path::Path::new(&ccas_p), &["orient", "list", "--sent"]).await;
    assert_eq!(
        mine["orientations"][0]["steps"][0]["note"],
        "Hors de notre territoire"
    );
}

#[tokio::test]
async fn an_orientations_words_are_sealed_under_the_dossiers_key_and_its_closure_reaches_the_caf_that_never_attached_it()
 {
    const NOTE: &str = "Rendez-vous avec la conseillere Martine le 14";
    let mut c = Cluster::start_with(|r| r.charter.retention_days = Some(30)).await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf_publishes(&c).await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("consent");
    let sent = orient(&ccas, &d, "caf12", "aide-logement", REASON, "")
        .await
        .expect("oriented");
    step(&caf.conn, &sent.id, "accepted", NOTE)
        .await
        .expect("accepted");
    assert_eq!(list(&caf.conn, "received", "").await[0].reason, REASON);
    assert_eq!(list(&ccas.conn, "sent", "").await[0].steps[0].note, NOTE);

    // Neither log holds the reason or the note in clear: each entry holds
    // the signed message sealed under the dossier's key. The CAF, which
    // never attached the dossier, made a key of its own for it; it never
    // wrote the reason in clear anywhere, nor the CCAS the note.
    let ccas_auditor = c.user("ccas-rodez", "dpo-ccas", Role::Auditor).await;
    let caf_auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    for auditor in [&ccas_auditor, &caf_auditor] {
        let all = maillon_tests::audit_entries(auditor).await;
        for words in [REASON, NOTE] {
            assert!(
                !all.iter().any(|e| e.to_string().contains(words)),
                "{words} reached a log in clear"
            );
        }
    }
    let sealed = audit_events(&caf_auditor, "orientation_received").await;
    assert!(sealed[0]["sealed"].as_str().is_some_and(|s| s.len() > 100));
    assert!(found_in(&c.node("caf12").dir, REASON).is_empty());
    assert!(found_in(&c.node("ccas-rodez").dir, NOTE).is_empty());
    assert_eq!(
        files_named(&c.node("caf12").dir, &d).len(),
        1,
        "the CAF's key"
    );

    // The CCAS closes the dossier: the CAF is told although it never
    // attached it, logs the closure, and keeps the orientation until the
    // charter's retention runs out (across a restart).
    ccas.conn
        .api()
        .close_dossier(ccas.conn.req(pb::CloseDossierRequest {
            dossier: d.clone(),
            reason: "end_of_parcours".into(),
        }))
        .await
        .expect("closed");
    let closed = audit_events(&caf_auditor, "dossier_closed").await;
    assert_eq!(
        (closed.len(), closed[0]["from"].as_str()),
        (1, Some("ccas-rodez"))
    );
    drop((caf, caf_auditor));
    c.restart("caf12").await;
    let caf = c.desk("caf12", "agent-caf2").await;
    let caf_auditor = c.user("caf12", "dpo-caf2", Role::Auditor).await;
    c.clock.advance(29 * 86_400);
    assert_eq!(
        c.running("caf12").node().erase_due().await.expect("upkeep"),
        0
    );
    assert_eq!(list(&caf.conn, "", "").await.len(), 1);
    c.clock.advance(2 * 86_400);
    assert_eq!(
        c.running("caf12").node().erase_due().await.expect("upkeep"),
        1
    );
    assert_eq!(
        c.running("caf12").node().erase_due().await.expect("again"),
        0
    );
    assert!(list(&caf.conn, "", "").await.is_empty(), "forgotten");
    assert!(
        files_named(&c.node("caf12").dir, &d).is_empty(),
        "the key destroyed: what the log holds of it can no longer be read"
    );
    let erased = audit_events(&caf_auditor, "dossier_erased").await;
    assert_eq!(erased[0]["ground"], "retention");

    // Erased for good: a restart re-applies nothing of it, and a late
    // orientation about it is refused.
    drop((caf, caf_auditor));
    c.restart("caf12").await;
    let caf = c.desk("caf12", "agent-caf3").await;
    assert!(list(&caf.conn, "", "").await.is_empty());
    let late = orientation_to(&c, &d, "ccas-rodez", "caf12", "tard");
    let signature = SignedBytes::sign(&late, Context::Orientation, &c.key("ccas-rodez")).signature;
    let r = c
        .peer_as("ccas-rodez")
        .notify(
            &c.member("caf12"),
            &Notice::Orientation {
                orientation: late,
                signature,
            },
        )
        .await;
    assert!(
        r.is_err(),
        "an orientation about an erased dossier was taken"
    );
}

#[tokio::test]
async fn a_member_ends_only_what_it_sent_and_an_attached_member_passes_the_holders_word_on() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf_publishes(&c).await;
    let cd_admin = c.admin("cd12");
    cd_admin
        .api()
        .publish_aid(cd_admin.req(pb::PublishAidRequest {
            service: br#"{"id":"insertion","name":"Accompagnement vers l'emploi","description":"","organization":{"name":"CD"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    // The CAF attaches the dossier and orients the person to the
    // département, on a consent of its own; the CCAS orients her to the CAF.
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attached");
    caf.put(&d, "resources", r#"{"rsa":true}"#)
        .await
        .expect("resources");
    caf.grant(&d, &["resources"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("the CAF's consent naming the département");
    orient(&caf, &d, "cd12", "insertion", "Accompagnement RSA", "")
        .await
        .expect("the CAF orients to the département");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("consent");
    orient(&ccas, &d, "caf12", "aide-logement", REASON, "")
        .await
        .expect("the CCAS orients to the CAF");
    let cd = c.desk("cd12", "agent-cd").await;
    assert_eq!(list(&cd.conn, "received", "").await.len(), 1);
    let cd_dpo = c.user("cd12", "dpo-cd", Role::Auditor).await;

    // The département cannot end what the CCAS sent the CAF: it sent
    // nothing about the dossier there (refused, nothing logged); once it
    // sends an orientation of its own, its erasure removes that one only.
    let caf_member = c.member("caf12");
    let as_cd12 = c.peer_as("cd12");
    let erased = Notice::Erased {
        dossier: d.parse().expect("dossier"),
    };
    assert!(as_cd12.notify(&caf_member, &erased).await.is_err());
    let caf_dpo = c.user("caf12", "dpo-caf", Role::Auditor).await;
    assert!(audit_events(&caf_dpo, "dossier_erased").await.is_empty());
    let own = orientation_to(&c, &d, "cd12", "caf12", "Du département");
    let signature = SignedBytes::sign(&own, Context::Orientation, &c.key("cd12")).signature;
    as_cd12
        .notify(
            &caf_member,
            &Notice::Orientation {
                orientation: own,
                signature,
            },
        )
        .await
        .expect("taken: the département's own orientation");
    assert_eq!(list(&caf.conn, "received", "").await.len(), 2);
    as_cd12
        .notify(&caf_member, &erased)
        .await
        .expect("the département ends what it sent");
    let left = list(&caf.conn, "received", "").await;
    assert_eq!(
        left.iter().map(|o| o.from.as_str()).collect::<Vec<_>>(),
        ["ccas-rodez"],
        "the CCAS's orientation stays"
    );
    orient(&ccas, &d, "caf12", "aide-logement", "Une autre raison", "")
        .await
        .expect("the CCAS still orients to the CAF");

    // The CCAS, the holder, closes then erases the dossier: the CAF, which
    // holds it, tells the département its orientation reached, and the
    // département forgets it and destroys its key.
    ccas.conn
        .api()
        .close_dossier(ccas.conn.req(pb::CloseDossierRequest {
            dossier: d.clone(),
            reason: "end_of_parcours".into(),
        }))
        .await
        .expect("closed");
    let closed = audit_events(&cd_dpo, "dossier_closed").await;
    assert_eq!(
        (closed.len(), closed[0]["from"].as_str()),
        (1, Some("caf12")),
        "told by the CAF, whose orientation reached it"
    );
    assert_eq!(files_named(&c.node("cd12").dir, &d).len(), 1);
    ccas.conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await
        .expect("erased");
    assert!(list(&cd.conn, "", "").await.is_empty(), "forgotten");
    assert!(
        files_named(&c.node("cd12").dir, &d).is_empty(),
        "the département's key destroyed"
    );
    assert!(list(&caf.conn, "", "").await.is_empty());
}

#[tokio::test]
async fn an_orientation_an_earlier_version_kept_in_clear_is_sealed_at_start() {
    let mut c = Cluster::start_with(|r| r.charter.retention_days = Some(30)).await;
    let (_, _, d) = c.housing_at_the_ccas().await;
    const OLD_REASON: &str = "Motif gardé en clair par une version antérieure";
    let orientation = orientation_to(&c, &d, "ccas-rodez", "caf12", OLD_REASON);
    let signature =
        SignedBytes::sign(&orientation, Context::Orientation, &c.key("ccas-rodez")).signature;
    let legacy = maillon_node::service::OrientationRecord {
        orientation: orientation.clone(),
        signature,
        sent_by: None,
        status: OrientationStatus::Sent,
        steps: vec![],
    };
    // The CAF's store as an earlier version left it: the record in clear.
    c.fed.node_mut("caf12").stop().await;
    let store_dir = c.node("caf12").dir.join("store");
    {
        let store = maillon_node::storage::Store::open(&store_dir).expect("the CAF's store");
        store
            .put(
                maillon_node::storage::Tree::Orientations,
                orientation.id.as_str(),
                &legacy,
            )
            .expect("kept in clear");
        // And the closure that version kept by dossier alone.
        store
            .put(
                maillon_node::storage::Tree::Ended,
                &d,
                &maillon_node::clock::Clock::now(&*c.clock),
            )
            .expect("an old closure");
        store.flush().expect("flushed");
    }
    c.restart("caf12").await;
    let caf = c.desk("caf12", "agent-caf-2").await;
    let kept = list(&caf.conn, "received", "").await;
    assert_eq!(
        (kept.len(), kept[0].reason.as_str()),
        (1, OLD_REASON),
        "still read, once sealed"
    );
    c.fed.node_mut("caf12").stop().await;
    {
        let store = maillon_node::storage::Store::open(&store_dir).expect("the CAF's store");
        let raw: Vec<(String, serde_json::Value)> = store
            .scan(maillon_node::storage::Tree::Orientations, "")
            .expect("scanned");
        assert_eq!(raw.len(), 1);
        assert!(raw[0].1["sealed"].is_string(), "{}", raw[0].1);
        assert!(!raw[0].1.to_string().contains(OLD_REASON));
        let ends: Vec<(String, serde_json::Value)> = store
            .scan(maillon_node::storage::Tree::Ended, "")
            .expect("scanned");
        assert_eq!(
            ends.iter()
                .map(|(k, v)| (k.clone(), v["state"].clone()))
                .collect::<Vec<_>>(),
            [(format!("{d}/ccas-rodez"), serde_json::json!("closed"))],
            "the old closure kept per sender"
        );
    }
    // Its retention runs as any closure's.
    c.restart("caf12").await;
    c.clock.advance(31 * 86_400);
    assert_eq!(
        c.running("caf12").node().erase_due().await.expect("upkeep"),
        1
    );
    let caf = c.desk("caf12", "agent-caf-3").await;
    assert!(list(&caf.conn, "", "").await.is_empty());
}
