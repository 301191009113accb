//! The consented read and every way it is refused.

use maillon_node::service::ServiceError;
use maillon_node::types::{Role, Section};
use maillon_tests::{Cluster, HOUSING, audit_events, audit_kinds, code, next_year, refusal};
use tonic::Code;

const RESOURCES: &str = r#"{"rsa":true,"montant":635.71}"#;

#[tokio::test]
async fn a_consented_read_returns_exactly_what_was_written() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");

    let got = caf.read(&d, "housing", "ccas-rodez").await.expect("read");
    assert_eq!(got.json, HOUSING);
    assert_eq!(got.owner, "ccas-rodez");
    assert!(got.receipt_leaf.is_some());
    // The CAF's node holds nothing of the section but the receipt in its log.
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(kinds.iter().filter(|k| *k == "receipt_logged").count(), 1);
}

#[tokio::test]
async fn a_read_without_consent_is_refused_and_logged() {
    let c = Cluster::start().await;
    let (_ccas, caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;

    let (status, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "no_consent");
    assert_eq!(
        audit_kinds(&auditor).await.last().map(String::as_str),
        Some("read_denied")
    );
}

#[tokio::test]
async fn a_consent_for_one_section_does_not_open_another() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "resources", RESOURCES).await.expect("put");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");

    let (status, why) = refusal(caf.read(&d, "resources", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "section_not_covered");
    // Nor does a consent to the CAF let the département read.
    let cd = c.desk("cd12", "agent-cd").await;
    let (status, _) = code(cd.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
}

#[tokio::test]
async fn a_revoked_consent_blocks_the_next_read_and_removes_the_reader_from_the_group() {
    let c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let caf = c.desk("caf12", "agent-caf").await;
    let cd = c.desk("cd12", "agent-cd").await;
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "housing", HOUSING).await.expect("put");
    let to_caf = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("read before revocation");

    ccas.revoke(&to_caf).await.expect("revoke");
    let (status, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "revoked");
    // The département, whose consent stands, still reads: it followed the Remove commit.
    assert_eq!(
        cd.read(&d, "housing", "ccas-rodez")
            .await
            .expect("cd reads")
            .json,
        HOUSING
    );

    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    let members = c
        .running("ccas-rodez")
        .node()
        .share_members(&share)
        .await
        .expect("members");
    let names: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["ccas-rodez", "cd12"]);
    // Revoking twice is refused and changes nothing.
    let (status, _) = code(ccas.revoke(&to_caf).await);
    assert_eq!(status, Code::FailedPrecondition);
}

#[tokio::test]
async fn an_expired_consent_blocks_the_read_and_upkeep_closes_the_group() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let today = maillon_node::types::Date::from_unix(maillon_node::clock::Clock::now(&*c.clock));
    ccas.grant(&d, &["housing"], &["caf12"], &today.to_string())
        .await
        .expect("grant until today");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("read today");

    c.clock.advance(2 * 86_400);
    let (status, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "expired");

    let node = c.running("ccas-rodez").node();
    assert_eq!(node.close_inactive_consents().await.expect("upkeep"), 1);
    assert_eq!(
        node.close_inactive_consents().await.expect("upkeep again"),
        0
    );
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    assert_eq!(node.share_members(&share).await.expect("members").len(), 1);
}

#[tokio::test]
async fn only_caseworkers_read_shares_and_only_admins_create_users() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");

    let auditor = maillon_tests::Desk {
        conn: c.user("caf12", "dpo", Role::Auditor).await,
    };
    let (status, why) = refusal(auditor.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "role");
    let (status, _) = code(auditor.open().await);
    assert_eq!(status, Code::PermissionDenied);

    let add = ccas
        .conn
        .api()
        .add_user(ccas.conn.req(maillon_proto::v1::AddUserRequest {
            name: "intrus".into(),
            role: "admin".into(),
            valid_days: 0,
        }))
        .await;
    assert_eq!(code(add).0, Code::PermissionDenied);
}

#[tokio::test]
async fn the_charter_bounds_what_consent_can_grant() {
    let c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "health", r#"{"suivi":"oui"}"#)
        .await
        .expect("put");
    let (status, why) = refusal(
        ccas.grant(&d, &["health"], &["caf12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "charter");
    let (status, _) = code(
        ccas.grant(&d, &["housing"], &["ccas-rodez"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(status, Code::InvalidArgument);
    assert_eq!(
        refusal(
            ccas.grant(&d, &["housing"], &["nobody"], &next_year(&c.clock))
                .await
        ),
        (Code::PermissionDenied, "not_a_member".into())
    );
    let (status, _) = code(ccas.grant(&d, &["housing"], &["caf12"], "2020-01-01").await);
    assert_eq!(status, Code::InvalidArgument);
}

#[tokio::test]
async fn the_owner_logs_exactly_the_expected_events() {
    let c = Cluster::start().await;
    let (ccas, caf, d, consent) = c.housing_read_by_the_caf().await;
    ccas.revoke(&consent).await.expect("revoke");
    let _ = caf.read(&d, "housing", "ccas-rodez").await;

    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert_eq!(
        audit_kinds(&auditor).await,
        [
            "user_created",   // admin, at init
            "roster_adopted", // first start
            "user_created",   // agent-ccas
            "dossier_opened",
            "section_written",
            "consent_granted",
            "group_member_added", // caf12 into the housing group
            "read_granted",
            "consent_revoked",
            "group_member_removed",
            "read_denied",
            "user_created", // dpo
        ]
    );
    let caf_auditor = c.user("caf12", "dpo", Role::Auditor).await;
    assert_eq!(
        audit_kinds(&caf_auditor).await,
        [
            "user_created",
            "roster_adopted",
            "user_created",
            "group_joined",
            "receipt_logged",
            "user_created"
        ]
    );
}

#[tokio::test]
async fn a_suspended_member_is_refused_at_the_handshake_and_by_consent() {
    let c = Cluster::start_with(|roster| {
        for m in &mut roster.members {
            if m.card.id.as_str() == "caf12" {
                m.status = maillon_node::types::MemberStatus::Suspended;
            }
        }
    })
    .await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let (status, why) = refusal(
        ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "not_a_member");
    // The suspended node cannot even reach the owner: its certificate is not pinned.
    let (status, msg) = code(caf.read(&d, "housing", "ccas-rodez").await);
    assert!(
        matches!(status, Code::Unavailable | Code::NotFound),
        "{status:?}: {msg}"
    );
}

#[tokio::test]
async fn a_grant_to_an_unreachable_member_records_nothing() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;
    c.fed.node_mut("caf12").stop().await;

    let (status, msg) = code(
        ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!(status, Code::Unavailable, "{msg}");
    let consents = ccas
        .conn
        .api()
        .list_consents(
            ccas.conn
                .req(maillon_proto::v1::ListConsentsRequest { dossier: d.clone() }),
        )
        .await
        .expect("list")
        .into_inner()
        .consents;
    assert!(consents.is_empty());
    let mut after = before.clone();
    after.push("consents_listed".into());
    assert_eq!(
        audit_kinds(&auditor).await,
        after,
        "nothing recorded but the listing itself"
    );
}

#[tokio::test]
async fn only_auditors_and_admins_read_the_audit_log() {
    let c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let tail = ccas
        .conn
        .api()
        .audit_tail(ccas.conn.req(maillon_proto::v1::AuditTailRequest {
            limit: 5,
            from: None,
        }))
        .await;
    assert_eq!(code(tail).0, Code::PermissionDenied);
    let cp = ccas
        .conn
        .api()
        .audit_checkpoint(ccas.conn.req(maillon_proto::v1::AuditCheckpointRequest {}))
        .await;
    assert_eq!(code(cp).0, Code::PermissionDenied);
    // Consents: caseworkers and auditors, of a dossier this node holds.
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let list = |conn: &maillon_cli::client::Conn, dossier: &str| {
        let (conn, dossier) = (conn.clone(), dossier.to_owned());
        async move {
            conn.api()
                .list_consents(conn.req(maillon_proto::v1::ListConsentsRequest { dossier }))
                .await
        }
    };
    let d = ccas.open().await.expect("open");
    assert_eq!(code(list(&admin, &d).await).0, Code::PermissionDenied);
    assert_eq!(
        code(list(&ccas.conn, "DSU-0000000000000000000000000Z").await).0,
        Code::NotFound
    );
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert!(
        list(&auditor, &d)
            .await
            .expect("an auditor lists")
            .into_inner()
            .consents
            .is_empty()
    );
}

/// caf12 is down while the département joins the housing group: it misses that commit.
async fn caf_misses_a_commit() -> (Cluster, maillon_tests::Desk, maillon_tests::Desk, String) {
    let mut c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let caf = c.desk("caf12", "agent-caf").await;
    let cd = c.desk("cd12", "agent-cd").await;
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "housing", HOUSING).await.expect("put");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    c.fed.node_mut("caf12").stop().await;
    ccas.grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    assert_eq!(
        cd.read(&d, "housing", "ccas-rodez")
            .await
            .expect("cd reads")
            .json,
        HOUSING
    );
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    c.fed
        .node_mut("caf12")
        .start(clock)
        .await
        .expect("caf restarts");
    (c, caf, cd, d)
}

#[tokio::test]
async fn the_owners_upkeep_brings_back_a_member_that_missed_a_commit() {
    let (c, caf, cd, d) = caf_misses_a_commit().await;
    let owner = c.running("ccas-rodez").node();
    assert_eq!(owner.resync_members().await.expect("upkeep"), 1);
    assert_eq!(owner.resync_members().await.expect("upkeep again"), 0);
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("caf reads again")
            .json,
        HOUSING
    );
    assert_eq!(
        cd.read(&d, "housing", "ccas-rodez")
            .await
            .expect("cd still reads")
            .json,
        HOUSING
    );
    let caf_log = audit_kinds(&c.user("caf12", "dpo", Role::Auditor).await).await;
    assert_eq!(
        caf_log.iter().filter(|k| *k == "group_joined").count(),
        2,
        "{caf_log:?}"
    );
}

#[tokio::test]
async fn a_member_that_cannot_open_an_answer_asks_for_a_fresh_welcome_and_reads() {
    let (c, caf, _cd, d) = caf_misses_a_commit().await;
    // No upkeep: the CAF's read itself notices, asks the owner, and succeeds.
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("self-healing read")
            .json,
        HOUSING
    );
    let owner_log = audit_kinds(&c.user("ccas-rodez", "dpo", Role::Auditor).await).await;
    let tail: Vec<&str> = owner_log
        .iter()
        .rev()
        .skip(1)
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "read_granted",
            "group_member_removed",
            "group_member_added",
            "read_granted"
        ]
    );
    // The mark left by the failed delivery was cleared by the fresh Welcome.
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .resync_members()
            .await
            .expect("upkeep"),
        0
    );
}

#[tokio::test]
async fn reads_from_oneself_or_from_a_non_member_are_refused_before_any_request() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;
    let (status, msg) = code(ccas.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(status, Code::InvalidArgument, "{msg}");
    let (status, msg) = code(ccas.read(&d, "housing", "cpam12").await);
    assert_eq!(status, Code::NotFound, "{msg}");
    let (status, _) = code(ccas.read(&d, "housing", "Not An Id").await);
    assert_eq!(status, Code::InvalidArgument);
    assert_eq!(
        audit_kinds(&auditor).await,
        before,
        "nothing was asked, nothing logged"
    );
}

#[tokio::test]
async fn a_fresh_welcome_is_refused_once_the_consent_is_revoked() {
    let c = Cluster::start().await;
    let (ccas, _caf, d, consent) = c.housing_read_by_the_caf().await;
    ccas.revoke(&consent).await.expect("revoke");
    // caf12's node asks, as it would after failing to open an answer.
    let caf_id: maillon_node::types::MemberId = "caf12".parse().expect("id");
    let owner = c.running("ccas-rodez").node();
    let err = owner
        .resend_welcome(&caf_id, d.parse().expect("id"), Section::Housing)
        .await
        .expect_err("not entitled");
    assert!(
        matches!(err, ServiceError::NotEntitled(_)),
        "refused for the right cause: {err:?}"
    );
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    assert_eq!(
        owner.share_members(&share).await.expect("members").len(),
        1,
        "caf12 stays out"
    );
}

#[tokio::test]
async fn one_consent_to_several_members_adds_each_in_step() {
    let c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let (caf, cd) = (
        c.desk("caf12", "agent-caf").await,
        c.desk("cd12", "agent-cd").await,
    );
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "housing", HOUSING).await.expect("put");
    ccas.grant(&d, &["housing"], &["caf12", "cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("caf")
            .json,
        HOUSING
    );
    assert_eq!(
        cd.read(&d, "housing", "ccas-rodez").await.expect("cd").json,
        HOUSING
    );
    // Each member had its Welcome before the next member's commit: nobody was
    // out of step, nobody had to be brought back.
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .resync_members()
            .await
            .expect("upkeep"),
        0
    );
    let kinds = audit_kinds(&c.user("ccas-rodez", "dpo", Role::Auditor).await).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "group_member_added").count(),
        2
    );
    assert!(
        !kinds.iter().any(|k| k == "group_member_removed"),
        "{kinds:?}"
    );
}

/// The reader keeps the owner's signed receipt itself in its own log entry:
/// it verifies under the owner's roster key and names the owner's leaf.
#[tokio::test]
async fn the_reader_keeps_the_owners_signed_receipt_in_its_log() {
    use base64::Engine as _;
    let c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let logged = audit_events(&caf_dpo, "receipt_logged").await;
    let entry = logged.last().expect("a receipt");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("text"))
            .expect("base64")
    };
    let signed = maillon_node::protocol::SignedBytes {
        bytes: b64(&entry["receipt"]),
        signature: maillon_node::crypto::Signature::from_bytes(&b64(&entry["receipt_signature"]))
            .expect("signature"),
    };
    let owner = c.member("ccas-rodez");
    signed
        .verify(
            maillon_node::crypto::Context::Receipt,
            &owner.card.signing_key,
            "receipt",
        )
        .expect("the owner's signature");
    let receipt: maillon_node::protocol::Receipt =
        serde_json::from_slice(&signed.bytes).expect("a receipt");
    assert_eq!(receipt.request, entry["request"].as_str().expect("hash"));
    assert_eq!(Some(receipt.items[0].leaf), entry["owner_leaf"].as_u64());
}

#[tokio::test]
async fn reads_of_a_share_that_does_not_change_leave_both_stores_as_they_were() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    // The first read decodes the group and writes its sealing reserve.
    caf.read(&d, "housing", "ccas-rodez").await.expect("read");
    let sizes = || async {
        let mut out = Vec::new();
        for id in ["ccas-rodez", "caf12"] {
            let node = c.running(id).node();
            node.flush().await.expect("flush");
            let dir = c.node(id).dir.join("store");
            out.push((
                node.store_bytes().await.expect("state"),
                maillon_cli::bench::dir_bytes(&dir),
            ));
        }
        out
    };
    let before = sizes().await;
    // More reads than the sealing reserve: the owner writes its ratchet
    // once or twice, the reader what it opened as often.
    for _ in 0..300 {
        let got = caf.read(&d, "housing", "ccas-rodez").await.expect("read");
        assert_eq!(got.json, HOUSING);
    }
    let after = sizes().await;
    for ((id, (state, disk)), (state_after, disk_after)) in
        ["ccas-rodez", "caf12"].iter().zip(&before).zip(&after)
    {
        // The state stays the size it was: ratchets replaced, nothing per
        // read. Within 4 KB: the witness's first round lands meanwhile
        // (one checkpoint and cosignature per peer), and a reader keeps the
        // keys of the generations an owner skipped (at most 256).
        assert!(
            state_after.abs_diff(*state) < 4096,
            "{id}'s store state went from {state} to {state_after} bytes over 300 reads"
        );
        // sled's files, generously: a quarter of what 2 KB a read would take.
        assert!(
            disk_after.saturating_sub(*disk) < 150_000,
            "{id}'s store files went from {disk} to {disk_after} bytes over 300 reads"
        );
    }
}
