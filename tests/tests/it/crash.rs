//! The log comes first, shown by killing the owner at the worst moment: a
//! node in a process of its own aborts right after a change is durable in its
//! audit log and before its store has it (as SIGKILL would stop it), or is
//! killed with SIGKILL at a random moment of a grant. Restarted, it holds
//! exactly what its log holds: nothing lost, nothing in force unlogged.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use maillon_node::clock::Clock;
use maillon_node::failpoint::CRASH_AT_VAR;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, Desk, audit_kinds, next_year, refusal};
use tonic::Code;

/// Stops `id`'s in-process node and serves its folder from a child process,
/// with `crash_at` armed; returns once its client API answers.
async fn in_a_process(c: &mut Cluster, id: &str, crash_at: Option<&str>) -> Child {
    c.fed.node_mut(id).stop().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-node"));
    let errors = c.node(id).dir.with_extension("stderr");
    cmd.arg(&c.node(id).dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"));
    match crash_at {
        Some(point) => cmd.env(CRASH_AT_VAR, point),
        None => cmd.env_remove(CRASH_AT_VAR),
    };
    let mut child = cmd.spawn().expect("the node process starts");
    let admin = c.node(id).admin().expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let up = admin.api().who_am_i(admin.req(pb::WhoAmIRequest {})).await;
        if up.is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(&errors).unwrap_or_default();
            panic!("the node process exited at start: {status}: {said}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node process answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the child to die; returns the signal that killed it.
async fn died(mut child: Child) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.signal();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node process dies"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Restarts `id` in process, from the folder the dead process left.
async fn back_in_process(c: &mut Cluster, id: &str) {
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    c.fed
        .node_mut(id)
        .start(clock)
        .await
        .expect("the node restarts from what the crash left");
}

/// The CCAS orients the person of `d` to the CAF for its housing aid.
async fn orient_to_the_caf(ccas: &Desk, d: &str) -> Result<(), tonic::Status> {
    ccas.conn
        .api()
        .orient(ccas.conn.req(pb::OrientRequest {
            dossier: d.to_owned(),
            to: "caf12".into(),
            service: "aide-logement".into(),
            reason: "Aide au loyer".into(),
            consent: String::new(),
        }))
        .await
        .map(drop)
}

/// A dossier at the CCAS, the CAF's housing aid in the census, and the
/// person's consent to share the housing section with the CAF.
async fn ready_to_orient(c: &Cluster) -> (Desk, Desk, String) {
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let admin = c.admin("caf12");
    admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: br#"{"id":"aide-logement","name":"Aide au logement","description":"","organization":{"name":"CAF"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    ccas.grant(
        &d,
        &["housing"],
        &["caf12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("consent");
    (ccas, caf, d)
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

#[tokio::test]
async fn a_grant_logged_but_not_stored_when_the_owner_dies_is_in_force_after_restart() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;

    let child = in_a_process(&mut c, "ccas-rodez", Some("grant_logged")).await;
    let lost = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await;
    assert!(broken(
        lost.expect_err("the caseworker never heard back").code()
    ));
    assert_eq!(
        died(child).await,
        Some(libc_sigabrt()),
        "killed at the crash point"
    );

    back_in_process(&mut c, "ccas-rodez").await;
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(count(&kinds, "consent_granted"), 1, "{kinds:?}");
    let consents = list(&ccas, &d).await;
    assert_eq!(consents.len(), 1, "the logged grant is in force");
    assert_eq!(consents[0].audience, ["caf12"]);
    // Upkeep (its first round runs at start, this one may find nothing left)
    // brings the audience into the share's group; then the CAF reads.
    let owner = c.running("ccas-rodez").node().clone();
    owner.resync_members().await.expect("upkeep");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("the CAF reads on the replayed consent");
}

#[tokio::test]
async fn a_revocation_logged_but_not_stored_when_the_owner_dies_holds_after_restart() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let consent = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez").await.expect("read");

    let child = in_a_process(&mut c, "ccas-rodez", Some("revocation_logged")).await;
    assert!(broken(refusal(ccas.revoke(&consent).await).0));
    assert_eq!(died(child).await, Some(libc_sigabrt()));

    back_in_process(&mut c, "ccas-rodez").await;
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(count(&kinds, "consent_revoked"), 1, "{kinds:?}");
    assert!(
        list(&ccas, &d).await[0].revoked_at.is_some(),
        "revoked after restart"
    );
    assert_eq!(
        refusal(caf.read(&d, "housing", "ccas-rodez").await),
        (Code::PermissionDenied, "revoked".into())
    );
    // Upkeep (at start, or this round) closes the consent: the CAF leaves the group.
    let owner = c.running("ccas-rodez").node().clone();
    owner.close_inactive_consents().await.expect("upkeep");
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    assert_eq!(
        owner.share_members(&share).await.expect("members"),
        ["ccas-rodez".parse().expect("id")]
    );
}

#[tokio::test]
async fn a_user_removal_logged_but_not_stored_when_the_node_dies_holds_after_restart() {
    let mut c = Cluster::start().await;
    let leaving = c.desk("ccas-rodez", "agent-leaving").await;
    leaving.open().await.expect("works before");
    let child = in_a_process(&mut c, "ccas-rodez", Some("removal_logged")).await;
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let removed = admin
        .api()
        .remove_user(admin.req(pb::RemoveUserRequest {
            name: "agent-leaving".into(),
        }))
        .await;
    assert!(broken(removed.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));

    back_in_process(&mut c, "ccas-rodez").await;
    assert_eq!(
        refusal(leaving.open().await),
        (Code::Unauthenticated, "unauthenticated".into()),
        "the removed user's token no longer works"
    );
}

#[tokio::test]
async fn a_role_change_logged_but_not_stored_when_the_node_dies_holds_after_restart() {
    let mut c = Cluster::start().await;
    let agent = c.desk("ccas-rodez", "agent-promoted").await;
    agent.open().await.expect("a caseworker opens dossiers");
    let child = in_a_process(&mut c, "ccas-rodez", Some("role_change_logged")).await;
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let changed = admin
        .api()
        .update_user(admin.req(pb::UpdateUserRequest {
            name: "agent-promoted".into(),
            role: "auditor".into(),
            identity: None,
        }))
        .await;
    assert!(broken(changed.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));

    back_in_process(&mut c, "ccas-rodez").await;
    assert_eq!(
        refusal(agent.open().await),
        (Code::PermissionDenied, "role".into()),
        "the log's role is in force: an auditor opens no dossier"
    );
}

#[tokio::test]
async fn a_census_publication_logged_but_not_stored_when_the_node_dies_holds_after_restart() {
    let mut c = Cluster::start().await;
    let child = in_a_process(&mut c, "ccas-rodez", Some("aid_logged")).await;
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let service = r#"{"id":"epicerie","name":"Épicerie solidaire","description":"Des courses à 10 % du prix.","organization":{"name":"CCAS de Rodez"},"categories":["alimentation"]}"#.as_bytes();
    let published = admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: service.to_vec(),
            withdraw: String::new(),
        }))
        .await;
    assert!(broken(
        published.expect_err("the node died mid-call").code()
    ));
    assert_eq!(died(child).await, Some(libc_sigabrt()));

    // The log holds version 1: it is kept at restart, and the next
    // publication is version 2, never a second version 1.
    back_in_process(&mut c, "ccas-rodez").await;
    let shown = admin
        .api()
        .get_aid(admin.req(pb::GetAidRequest {
            member: "ccas-rodez".into(),
            service: "epicerie".into(),
        }))
        .await
        .expect("the logged publication holds")
        .into_inner();
    let entry: serde_json::Value = serde_json::from_slice(&shown.entry).expect("json");
    assert_eq!(entry["version"], 1);
    let again = admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: service.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published again")
        .into_inner();
    let entry: serde_json::Value = serde_json::from_slice(&again.entry).expect("json");
    assert_eq!(entry["version"], 2);
    // Every member has it: offered with version 2, or fetched at the next round.
    c.running("caf12").node().census_round().await;
    let reader = maillon_node::service::Caller {
        name: "lecteur".parse().expect("name"),
        role: maillon_node::types::Role::Caseworker,
        token_expires_at: None,
    };
    let at_caf = c
        .running("caf12")
        .node()
        .get_aid(&reader, &"ccas-rodez".parse().expect("id"), "epicerie")
        .expect("the CAF has it");
    assert_eq!(at_caf.entry.version, 2);
}

#[tokio::test]
async fn an_orientation_logged_but_not_stored_when_either_node_dies_holds_and_reaches_the_other() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = ready_to_orient(&c).await;
    let orient = pb::OrientRequest {
        dossier: d.clone(),
        to: "caf12".into(),
        service: "aide-logement".into(),
        reason: "Aide au loyer".into(),
        consent: String::new(),
    };
    let list = |conn: &maillon_cli::client::Conn, direction: &str| {
        let conn = conn.clone();
        let direction = direction.to_owned();
        async move {
            conn.api()
                .list_orientations(conn.req(pb::ListOrientationsRequest {
                    direction,
                    status: String::new(),
                }))
                .await
                .expect("listed")
                .into_inner()
                .orientations
        }
    };

    // The CCAS dies between the orientation's log entry and its store write.
    let child = in_a_process(&mut c, "ccas-rodez", Some("orientation_logged")).await;
    let sent = ccas.conn.api().orient(ccas.conn.req(orient.clone())).await;
    assert!(broken(sent.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    let kept = list(&ccas.conn, "sent").await;
    assert_eq!(kept.len(), 1, "the logged orientation is kept at restart");
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    let received = list(&caf.conn, "received").await;
    assert_eq!(received.len(), 1, "and queued for the CAF again");
    assert_eq!(received[0].id, kept[0].id);

    // The CAF dies between its step's log entry and its store write.
    let child = in_a_process(&mut c, "caf12", Some("orientation_step_logged")).await;
    let stepped = caf
        .conn
        .api()
        .step_orientation(caf.conn.req(pb::StepOrientationRequest {
            orientation: kept[0].id.clone(),
            status: "accepted".into(),
            note: String::new(),
        }))
        .await;
    assert!(broken(stepped.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;
    assert_eq!(list(&caf.conn, "received").await[0].status, "accepted");
    c.clock.advance(3600);
    c.running("caf12")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    assert_eq!(
        list(&ccas.conn, "sent").await[0].status,
        "accepted",
        "the step reaches the CCAS"
    );
}

#[tokio::test]
async fn a_closure_logged_but_not_kept_at_a_member_an_orientation_reached_still_starts_its_retention()
 {
    let mut c = Cluster::start_with(|r| r.charter.retention_days = Some(30)).await;
    let (ccas, caf, d) = ready_to_orient(&c).await;
    orient_to_the_caf(&ccas, &d).await.expect("oriented");

    // The CAF, which never attached the dossier, dies between the
    // closure's log entry and keeping it.
    let child = in_a_process(&mut c, "caf12", Some("closure_logged")).await;
    ccas.conn
        .api()
        .close_dossier(ccas.conn.req(pb::CloseDossierRequest {
            dossier: d.clone(),
            reason: "end_of_parcours".into(),
        }))
        .await
        .expect("closed at the CCAS whatever the CAF does");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    assert_eq!(
        count(
            &maillon_tests::audit_kinds(&auditor).await,
            "dossier_closed"
        ),
        1,
        "the closure was re-applied from the log at start, not taken twice"
    );
    c.clock.advance(31 * 86_400);
    assert_eq!(
        c.running("caf12").node().erase_due().await.expect("upkeep"),
        1
    );
    let left = caf
        .conn
        .api()
        .list_orientations(caf.conn.req(pb::ListOrientationsRequest {
            direction: String::new(),
            status: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner()
        .orientations;
    assert!(left.is_empty(), "the retention erased the orientation");
}

#[tokio::test]
async fn an_alert_logged_but_not_stored_when_the_recipient_dies_holds_and_its_raiser_learns_it() {
    let mut c = crate::alerts::with_alerts().await;
    let volunteer = c
        .user("cd12", "voisine", maillon_node::types::Role::Volunteer)
        .await;
    let ccas = c
        .user(
            "ccas-rodez",
            "agent-ccas",
            maillon_node::types::Role::Caseworker,
        )
        .await;
    let child = in_a_process(&mut c, "ccas-rodez", Some("alert_received_logged")).await;
    let raised = volunteer
        .api()
        .raise_alert(volunteer.req(pb::RaiseAlertRequest {
            about: "Voisin âgé, 3 rue Haute".into(),
            place: "Rodez".into(),
            concern: "isolation".into(),
            to: String::new(),
        }))
        .await
        .expect("raised at the département: the CCAS's death is its own")
        .into_inner();
    assert_eq!(raised.status, "raised", "not received yet");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    let list = |conn: &maillon_cli::client::Conn| {
        let conn = conn.clone();
        async move {
            conn.api()
                .list_alerts(conn.req(pb::ListAlertsRequest::default()))
                .await
                .expect("listed")
                .into_inner()
        }
    };
    let at_ccas = list(&ccas).await;
    assert_eq!(
        at_ccas.received.len(),
        1,
        "the logged alert is kept at restart"
    );
    assert_eq!(at_ccas.received[0].about, "Voisin âgé, 3 rue Haute");
    // Both outboxes deliver: the département's alert again (taken once),
    // the CCAS's word back.
    c.clock.advance(3600);
    c.running("cd12")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    assert_eq!(list(&ccas).await.received.len(), 1);
    assert_eq!(list(&volunteer).await.raised[0].status, "received");
}

#[tokio::test]
async fn a_commission_logged_but_not_stored_when_the_convener_dies_holds_and_reaches_its_participants()
 {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("the référent");
    ccas.grant(
        &d,
        &["housing"],
        &["caf12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("consent");
    let list = |desk: &maillon_tests::Desk| {
        let conn = desk.conn.clone();
        async move {
            conn.api()
                .list_commissions(conn.req(pb::ListCommissionsRequest {}))
                .await
                .expect("listed")
                .into_inner()
                .commissions
        }
    };
    let child = in_a_process(&mut c, "ccas-rodez", Some("commission_logged")).await;
    let convened = ccas
        .conn
        .api()
        .convene_commission(ccas.conn.req(pb::ConveneCommissionRequest {
            dossier: d.clone(),
            participants: vec!["caf12".into()],
            agenda: "Relogement".into(),
            meets_on: "2027-01-12".into(),
            consent: String::new(),
        }))
        .await;
    assert!(broken(convened.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    let kept = list(&ccas).await;
    assert_eq!(kept.len(), 1, "the logged convocation is kept at restart");
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    assert_eq!(list(&caf).await.len(), 1, "and sent to the CAF");

    // The convener dies between the minutes' log entry and their store write.
    let child = in_a_process(&mut c, "ccas-rodez", Some("minutes_logged")).await;
    let closed = ccas
        .conn
        .api()
        .close_commission(ccas.conn.req(pb::CloseCommissionRequest {
            commission: kept[0].id.clone(),
            decisions: vec![pb::CommissionDecision {
                who: "caf12".into(),
                what: "Ouvrir les droits".into(),
                by: "2027-01-31".into(),
            }],
        }))
        .await;
    assert!(broken(closed.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    assert!(list(&ccas).await[0].closed, "the logged minutes hold");
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    let at_caf = list(&caf).await;
    assert!(
        at_caf[0].closed && at_caf[0].decisions.len() == 1,
        "{at_caf:?}"
    );
    let plan = ccas
        .get(&d, "support_plan")
        .await
        .expect("the support plan");
    assert_eq!(plan.matches("Ouvrir les droits").count(), 1, "{plan}");
}

#[tokio::test]
async fn an_alert_raised_at_its_recipient_logged_but_not_stored_is_received_after_restart() {
    let mut c = crate::alerts::with_alerts().await;
    let volunteer = c
        .user(
            "ccas-rodez",
            "benevole",
            maillon_node::types::Role::Volunteer,
        )
        .await;
    let ccas = c
        .user(
            "ccas-rodez",
            "agent-ccas",
            maillon_node::types::Role::Caseworker,
        )
        .await;
    let child = in_a_process(&mut c, "ccas-rodez", Some("alert_logged")).await;
    let raised = volunteer
        .api()
        .raise_alert(volunteer.req(pb::RaiseAlertRequest {
            about: "Dame âgée, 2 place du Bourg".into(),
            place: "Rodez".into(),
            concern: "health".into(),
            to: String::new(),
        }))
        .await;
    assert!(broken(raised.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    let listed = |conn: maillon_cli::client::Conn| async move {
        conn.api()
            .list_alerts(conn.req(pb::ListAlertsRequest::default()))
            .await
            .expect("listed")
            .into_inner()
    };
    let at_ccas = listed(ccas).await;
    assert_eq!(
        at_ccas.received.len(),
        1,
        "the logged alert reached its caseworkers"
    );
    assert_eq!(listed(volunteer).await.raised[0].status, "received");
}

#[tokio::test]
async fn a_token_rotation_logged_but_not_stored_when_the_node_dies_holds_after_restart() {
    let mut c = Cluster::start().await;
    let agent = c.desk("ccas-rodez", "agent-rotated").await;
    agent.open().await.expect("works before");
    let child = in_a_process(&mut c, "ccas-rodez", Some("rotation_logged")).await;
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let rotated = admin
        .api()
        .rotate_user_token(admin.req(pb::RotateUserTokenRequest {
            name: "agent-rotated".into(),
            valid_days: 0,
        }))
        .await;
    assert!(broken(rotated.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));

    // The log holds the rotation: at restart its token hash is put in
    // force, so the old token is refused (the new one never left the node:
    // an admin rotates again, and that works).
    back_in_process(&mut c, "ccas-rodez").await;
    assert_eq!(
        refusal(agent.open().await),
        (Code::Unauthenticated, "unauthenticated".into()),
        "the rotated user's old token no longer works"
    );
    let again = admin
        .api()
        .rotate_user_token(admin.req(pb::RotateUserTokenRequest {
            name: "agent-rotated".into(),
            valid_days: 0,
        }))
        .await
        .expect("rotated again")
        .into_inner();
    let profile = maillon_node::config::Profile {
        user: again.name,
        token: again.token,
        ..c.node("ccas-rodez").admin.clone()
    };
    let desk = Desk {
        conn: maillon_cli::client::Conn::new(&profile).expect("conn"),
    };
    desk.open().await.expect("the new token works");
}

#[tokio::test]
async fn grants_killed_at_random_moments_leave_store_and_log_in_agreement() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    for round in 0..6u64 {
        let mut child = in_a_process(&mut c, "ccas-rodez", None).await;
        let until = next_year(&c.clock);
        let grant = ccas.grant(&d, &["housing"], &["caf12"], &until);
        // Somewhere inside the grant: before, while or after it is logged.
        let delay = Duration::from_micros(500 + round * 1_500 + rand::random::<u64>() % 2_000);
        let (_, ()) = tokio::join!(grant, async {
            tokio::time::sleep(delay).await;
            child.kill().expect("SIGKILL");
        });
        assert_eq!(died(child).await, Some(9), "killed by SIGKILL");
        back_in_process(&mut c, "ccas-rodez").await;
        let logged = count(&audit_kinds(&auditor).await, "consent_granted");
        assert_eq!(
            list(&ccas, &d).await.len(),
            logged,
            "round {round}: every consent in force is logged, every logged one in force"
        );
    }
}

/// A call cut by its node's death: the connection broke (never an answer).
fn broken(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown)
}

/// SIGABRT: what `std::process::abort` raises.
fn libc_sigabrt() -> i32 {
    6
}

async fn list(desk: &Desk, dossier: &str) -> Vec<pb::Consent> {
    desk.conn
        .api()
        .list_consents(desk.conn.req(pb::ListConsentsRequest {
            dossier: dossier.into(),
        }))
        .await
        .expect("list")
        .into_inner()
        .consents
}

#[tokio::test]
async fn a_roster_adoption_logged_but_not_applied_when_the_node_dies_is_in_force_after_restart() {
    let mut c = Cluster::start().await;
    let child = in_a_process(&mut c, "caf12", Some("roster_logged")).await;
    let change = maillon_node::roster::Change::SetQuorum {
        quorum: "3/5".parse().expect("quorum"),
    };
    assert_eq!(
        c.vote(&change, "cd12", &["ccas-rodez"]).await.outcome,
        "adopted"
    );
    assert_eq!(
        died(child).await,
        Some(libc_sigabrt()),
        "killed between the log entry and the store"
    );

    back_in_process(&mut c, "caf12").await;
    let status = c.admin("caf12").gov_status().await.expect("status");
    assert_eq!((status.version, status.quorum.as_str()), (2, "3/5"));
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(
        count(&kinds, "roster_adopted"),
        2,
        "v1 and v2, once each: {kinds:?}"
    );
    // Restarted again, it still holds v2 and logs nothing more.
    c.restart("caf12").await;
    assert_eq!(
        c.admin("caf12").gov_status().await.expect("status").version,
        2
    );
    assert_eq!(count(&audit_kinds(&auditor).await, "roster_adopted"), 2);
}

/// The decisions of the dossier social unique, each killed right after its
/// log entry is durable and before the store has it: after restart, each is
/// in force as the log says, and none is logged twice.
#[tokio::test]
async fn each_decision_of_the_dossier_killed_between_its_log_and_its_store_holds_after_restart() {
    use maillon_node::roster::BreakGlassRule;
    use maillon_node::types::MemberKind;
    let mut c = Cluster::start_with(|r| {
        r.charter.break_glass = Some(BreakGlassRule {
            kinds: [MemberKind::Departement].into(),
            roles: [Role::Caseworker].into(),
            hours: 24,
        });
    })
    .await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attach");
    let cd = c.desk("cd12", "agent-cd").await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    const WHY: &str =
        "Signalement ce soir : enfant de quatre ans seul au domicile, mère hospitalisée";

    // A référent named.
    let child = in_a_process(&mut c, "ccas-rodez", Some("referent_logged")).await;
    let lost = ccas
        .conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await;
    assert!(broken(lost.expect_err("no answer").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    let view = ccas
        .conn
        .view_dossier_whole(&d, "coordination")
        .await
        .expect("view");
    assert_eq!(
        view.referent, "agent-ccas@ccas-rodez",
        "the logged référent is in force"
    );
    // Its notice to the CAF was queued again from the log.
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("upkeep");
    let caf_view = caf
        .conn
        .view_dossier_whole(&d, "coordination")
        .await
        .expect("view");
    assert_eq!(caf_view.referent, "agent-ccas@ccas-rodez");

    // A break-glass access granted.
    let child = in_a_process(&mut c, "ccas-rodez", Some("break_glass_logged")).await;
    let lost = cd
        .conn
        .read_shares(
            &d,
            &["housing"],
            "ccas-rodez",
            "protection de l'enfance",
            Some(WHY),
        )
        .await;
    assert!(lost.is_err(), "the reader never got an answer");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    assert_eq!(
        count(&audit_kinds(&auditor).await, "break_glass_granted"),
        1
    );
    let read = cd
        .conn
        .read_shares(
            &d,
            &["housing"],
            "ccas-rodez",
            "protection de l'enfance",
            Some(WHY),
        )
        .await
        .expect("the replayed access opens the section");
    assert_eq!(read[0].basis, "break_glass");
    assert_eq!(
        count(&audit_kinds(&auditor).await, "break_glass_granted"),
        1,
        "the access replayed from the log is the one in force"
    );

    // The dossier erased on the person's request.
    let child = in_a_process(&mut c, "ccas-rodez", Some("erasure_logged")).await;
    let lost = ccas
        .conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await;
    assert!(broken(lost.expect_err("no answer").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "ccas-rodez").await;
    c.running("ccas-rodez")
        .node()
        .erase_due()
        .await
        .expect("upkeep finishes the erasure");
    let (code, _) = refusal(ccas.get(&d, "housing").await);
    assert_eq!(code, Code::NotFound, "erased as the log says");
    assert!(
        !c.node("ccas-rodez")
            .dir
            .join(format!("dossier-keys/{d}.key"))
            .exists()
    );
    // Upkeep delivers the replayed notice; a delivery tried (by the node's
    // own upkeep) while the machine was busy waits for its backoff: poll,
    // moving the clock past it, until a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        c.running("ccas-rodez")
            .node()
            .deliver_outbox()
            .await
            .expect("upkeep");
        let code = match caf.conn.view_dossier(&d, "coordination").await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        if code == Code::NotFound || std::time::Instant::now() > deadline {
            break code;
        }
        c.clock.advance(120);
    };
    assert_eq!(
        code,
        Code::NotFound,
        "and at the CAF, told from the replayed outbox"
    );
}

/// The owner keeps its sealing ratchet in memory and writes it once per
/// reserve: killed with SIGKILL between two writes, while answers are in
/// flight, it must never seal a generation again. A reader that met a
/// generation twice could not open it (its key is spent) and would ask for
/// a fresh Welcome: it never has to.
#[tokio::test]
async fn an_owner_killed_between_reads_never_seals_a_generation_twice() {
    let mut c = Cluster::start().await;
    let (_ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    let reader_auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let joined = || async { count(&audit_kinds(&reader_auditor).await, "group_joined") };
    assert_eq!(joined().await, 1);
    for round in 0..3u64 {
        let mut child = in_a_process(&mut c, "ccas-rodez", None).await;
        // Across a reserve (128 generations) or not, then killed while
        // eight more answers are in flight.
        for _ in 0..(60 + round * 70 + rand::random::<u64>() % 40) {
            let got = caf.read(&d, "housing", "ccas-rodez").await.expect("read");
            assert_eq!(got.json, maillon_tests::HOUSING);
        }
        let in_flight =
            futures_util::future::join_all((0..8).map(|_| caf.read(&d, "housing", "ccas-rodez")));
        let delay = Duration::from_micros(rand::random::<u64>() % 3_000);
        let (answers, ()) = tokio::join!(in_flight, async {
            tokio::time::sleep(delay).await;
            child.kill().expect("SIGKILL");
        });
        assert_eq!(died(child).await, Some(9), "killed by SIGKILL");
        for answer in answers {
            match answer {
                Ok(got) => assert_eq!(got.json, maillon_tests::HOUSING),
                Err(status) => assert!(broken(status.code()), "round {round}: {status:?}"),
            }
        }
        back_in_process(&mut c, "ccas-rodez").await;
        let got = caf
            .read(&d, "housing", "ccas-rodez")
            .await
            .expect("read after restart");
        assert_eq!(got.json, maillon_tests::HOUSING);
        assert_eq!(
            joined().await,
            1,
            "round {round}: the reader opened every answer without a fresh Welcome"
        );
    }
}

#[tokio::test]
async fn a_node_stopped_by_sigterm_or_sigint_answers_what_it_took_and_starts_again_whole() {
    for signal in ["-TERM", "-INT"] {
        let mut c = Cluster::start().await;
        let desk = c.desk("ccas-rodez", "agent-ccas").await;
        let mut child = in_a_process(&mut c, "ccas-rodez", None).await;
        let pid = child.id().to_string();
        // Openings in flight when the signal comes: each is answered or
        // refused (the listener closed), none hangs.
        let opens = futures_util::future::join_all((0..20).map(|_| desk.open()));
        let signalled = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
        };
        let (opened, ()) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(opens, signalled)
        })
        .await
        .expect("every call ends");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{signal}: the node stops"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "{signal}: a clean stop, not a crash: {status:?}"
        );
        // Started again from its folder: every opening it answered is there.
        back_in_process(&mut c, "ccas-rodez").await;
        let answered: Vec<String> = opened.into_iter().filter_map(Result::ok).collect();
        for d in &answered {
            desk.put(d, "housing", maillon_tests::HOUSING)
                .await
                .unwrap_or_else(|e| panic!("{signal}: {d} answered, then lost: {e}"));
        }
        let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
        let kinds = audit_kinds(&auditor).await;
        // Each answered opening was logged (one cut off before its answer may be too).
        assert!(
            count(&kinds, "dossier_opened") >= answered.len(),
            "{signal}"
        );
    }
}

#[tokio::test]
async fn what_a_member_receives_logged_but_not_kept_when_it_dies_is_kept_once_after_restart() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = ready_to_orient(&c).await;
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("the référent");
    // Each message the CAF takes from the CCAS, the point where it dies
    // (between its log entry, sealed, and keeping it), and the kind logged.
    let child = in_a_process(&mut c, "caf12", Some("orientation_received_logged")).await;
    orient_to_the_caf(&ccas, &d)
        .await
        .expect("sent; the CAF dies taking it");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;

    let child = in_a_process(&mut c, "caf12", Some("commission_invited_logged")).await;
    let convened = ccas
        .conn
        .api()
        .convene_commission(ccas.conn.req(pb::ConveneCommissionRequest {
            dossier: d.clone(),
            participants: vec!["caf12".into()],
            agenda: "Relogement".into(),
            meets_on: "2027-01-12".into(),
            consent: String::new(),
        }))
        .await
        .expect("convened; the CAF dies taking it")
        .into_inner();
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;

    let child = in_a_process(&mut c, "caf12", Some("minutes_received_logged")).await;
    ccas.conn
        .api()
        .close_commission(ccas.conn.req(pb::CloseCommissionRequest {
            commission: convened.id.clone(),
            decisions: vec![],
        }))
        .await
        .expect("closed; the CAF dies taking the minutes");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;

    // Re-applied from the sealed log entries at start; the CCAS's outbox
    // sends them again, and the CAF keeps each once.
    c.clock.advance(3600);
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("outbox");
    let orientations = caf
        .conn
        .api()
        .list_orientations(caf.conn.req(pb::ListOrientationsRequest {
            direction: String::new(),
            status: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner()
        .orientations;
    assert_eq!(orientations.len(), 1);
    assert_eq!(orientations[0].reason, "Aide au loyer");
    let commissions = caf
        .conn
        .api()
        .list_commissions(caf.conn.req(pb::ListCommissionsRequest {}))
        .await
        .expect("listed")
        .into_inner()
        .commissions;
    assert_eq!(commissions.len(), 1);
    assert_eq!(commissions[0].agenda, "Relogement");
    assert!(commissions[0].closed, "the minutes kept");
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    let kinds = audit_kinds(&auditor).await;
    for kind in [
        "orientation_received",
        "commission_invited",
        "commission_minutes",
    ] {
        assert_eq!(count(&kinds, kind), 1, "{kind} taken once");
    }
}

#[tokio::test]
async fn an_alert_closed_and_logged_but_not_stored_keeps_the_time_it_was_closed_after_restart() {
    let mut c = crate::alerts::with_alerts().await;
    let volunteer = c.user("cd12", "voisine", Role::Volunteer).await;
    let ccas = c.user("ccas-rodez", "agent-ccas", Role::Caseworker).await;
    let raised = volunteer
        .api()
        .raise_alert(volunteer.req(pb::RaiseAlertRequest {
            about: "Voisin âgé, 3 rue Haute".into(),
            place: "Rodez".into(),
            concern: "isolation".into(),
            to: String::new(),
        }))
        .await
        .expect("raised")
        .into_inner();
    let handle = |status: &'static str, outcome: &'static str| {
        let (ccas, alert) = (ccas.clone(), raised.id.clone());
        async move {
            ccas.api()
                .handle_alert(ccas.req(pb::HandleAlertRequest {
                    alert,
                    status: status.into(),
                    outcome: outcome.into(),
                }))
                .await
        }
    };
    handle("taken", "").await.expect("taken");

    // The CCAS dies between the closing's log entry and its store write;
    // it comes back two hours later.
    let child = in_a_process(&mut c, "ccas-rodez", Some("alert_handled_logged")).await;
    let closed = handle("closed", "contacted").await;
    assert!(broken(closed.expect_err("the node died mid-call").code()));
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    c.clock.advance(7200);
    back_in_process(&mut c, "ccas-rodez").await;
    let kept = ccas
        .api()
        .list_alerts(ccas.req(pb::ListAlertsRequest::default()))
        .await
        .expect("listed")
        .into_inner()
        .received;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let logged = maillon_tests::audit_entries(&auditor)
        .await
        .into_iter()
        .find(|e| e["event"] == "alert_handled" && e["status"] == "closed")
        .expect("the closing is logged");
    assert_eq!(
        (kept[0].status.as_str(), kept[0].outcome.as_str()),
        ("closed", "contacted")
    );
    assert_eq!(
        Some(kept[0].closed_at),
        logged["time"].as_i64(),
        "closed when it was logged, not when the node came back: {logged}"
    );
}

#[tokio::test]
async fn an_orientation_erased_by_its_sender_does_not_come_back_when_the_receiver_is_killed() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = ready_to_orient(&c).await;
    // The CAF runs as a process of its own, killed (SIGKILL) once the CCAS
    // has oriented the person to it and erased the dossier: its replay mark
    // is still before both entries.
    let mut child = in_a_process(&mut c, "caf12", None).await;
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    let before = c.verified_log_size(&auditor).await;
    orient_to_the_caf(&ccas, &d).await.expect("oriented");
    // The département sent the CAF an orientation about the same person:
    // the dossier's key at the CAF outlives the CCAS's erasure.
    let from_cd12 = crate::orientations::orientation_to(&c, &d, "cd12", "caf12", "Du département");
    let signature = maillon_node::protocol::SignedBytes::sign(
        &from_cd12,
        maillon_node::crypto::Context::Orientation,
        &c.key("cd12"),
    )
    .signature;
    {
        use maillon_node::service::PeerNetwork as _;
        c.peer_as("cd12")
            .notify(
                &c.member("caf12"),
                &maillon_node::protocol::Notice::Orientation {
                    orientation: from_cd12,
                    signature,
                },
            )
            .await
            .expect("the département's orientation");
    }
    ccas.conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await
        .expect("erased");
    child.kill().expect("SIGKILL");
    assert_eq!(died(child).await, Some(9));
    // Its replay mark had not moved past the orientation (upkeep moves it
    // every few seconds; here it is set back so that the test does not
    // depend on when the kill came).
    {
        let store = maillon_node::storage::Store::open(&c.node("caf12").dir.join("store"))
            .expect("the CAF's store");
        store
            .set_meta(maillon_node::storage::MetaKey::Applied, &before)
            .expect("the mark");
        store.flush().expect("flushed");
    }
    back_in_process(&mut c, "caf12").await;
    let left = caf
        .conn
        .api()
        .list_orientations(caf.conn.req(pb::ListOrientationsRequest {
            direction: String::new(),
            status: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner()
        .orientations;
    assert_eq!(
        left.iter().map(|o| o.from.as_str()).collect::<Vec<_>>(),
        ["cd12"],
        "the CCAS's erased orientation stays erased; the département's stays"
    );
}

#[tokio::test]
async fn an_erasure_logged_but_not_applied_at_a_member_an_orientation_reached_holds_after_restart()
{
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = ready_to_orient(&c).await;
    orient_to_the_caf(&ccas, &d).await.expect("oriented");
    // The CAF, which never attached the dossier, dies between the
    // erasure's log entry and forgetting the orientation.
    let child = in_a_process(&mut c, "caf12", Some("erasure_logged")).await;
    ccas.conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await
        .expect("erased at the CCAS whatever the CAF does");
    assert_eq!(died(child).await, Some(libc_sigabrt()));
    back_in_process(&mut c, "caf12").await;
    c.running("caf12").node().erase_due().await.expect("upkeep");
    let left = caf
        .conn
        .api()
        .list_orientations(caf.conn.req(pb::ListOrientationsRequest {
            direction: String::new(),
            status: String::new(),
        }))
        .await
        .expect("listed")
        .into_inner()
        .orientations;
    assert!(left.is_empty(), "the logged erasure is applied at restart");
    assert!(
        maillon_tests::files_named(&c.node("caf12").dir, &d).is_empty(),
        "and the dossier's key destroyed"
    );
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    assert_eq!(
        count(&audit_kinds(&auditor).await, "dossier_erased"),
        1,
        "logged once, though the CCAS's outbox told it again"
    );
}
