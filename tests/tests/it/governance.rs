//! GIP governance on real nodes: admission by vote, refusals of bad
//! versions, equivocation, suspension, exclusion, charter changes, catch-up.

use std::sync::Arc;

use maillon_node::clock::Clock;
use maillon_node::roster::{Change, SignedRoster};
use maillon_node::types::Role;
use maillon_tests::{
    Cluster, HOUSING, audit_events, audit_kinds, next_version, next_year, refusal,
};
use tonic::Code;

const FOUNDERS: [&str; 3] = ["cd12", "ccas-rodez", "caf12"];
const CHARITY: &str = "relais-solidaire";

/// The charity's node, initialised with the genesis (not started), and the
/// proposal to admit it, proposed by the département.
async fn charity_proposed(c: &mut Cluster) -> (SignedRoster, String) {
    let card = c
        .fed
        .add_newcomer(&maillon_cli::demo::FOUNDERS[3])
        .await
        .expect("the charity initialises its node");
    let reply = c
        .admin("cd12")
        .gov_propose(
            &Change::Admit { card, voting: true },
            "ouverture aux associations",
        )
        .await
        .expect("proposed");
    assert_eq!(reply.outcome, "pending");
    let p = reply.proposal.expect("proposal");
    (SignedRoster::decode(&p.signed).expect("candidate"), p.id)
}

#[tokio::test]
async fn a_charity_is_admitted_by_vote_and_then_receives_a_consented_share() {
    let mut c = Cluster::start().await;
    let (candidate, id) = charity_proposed(&mut c).await;

    // Every founder's node received the proposal and tells what it lacks.
    for m in FOUNDERS {
        let list = c.admin(m).gov_list().await.expect("list");
        assert_eq!(list.proposals.len(), 1, "{m} has the proposal");
        let p = &list.proposals[0];
        assert_eq!((p.version, p.id.as_str()), (2, id.as_str()));
        let outgoing = p.outgoing.as_ref().expect("outgoing");
        assert_eq!((outgoing.have, outgoing.need), (1, 2));
        assert_eq!(p.unproven, [CHARITY], "the newcomer's key is unproven");
        assert!(
            p.changes[0].starts_with("admits relais-solidaire"),
            "{:?}",
            p.changes
        );
    }

    // A second founder alone is not enough: the charity must prove its key.
    let reply = c
        .admin("ccas-rodez")
        .gov_approve(&id, None)
        .await
        .expect("approve");
    assert_eq!(reply.outcome, "pending");
    let p = reply.proposal.expect("proposal");
    assert_eq!(p.unproven, [CHARITY]);

    // The charity signs the candidate with its own key; the CCAS brings the
    // signature in: quorum of the old voters (2 of 3), of the new (3 of 4),
    // and every new key proven.
    let mut signed = candidate;
    let key = c.node(CHARITY).signing_key().expect("key");
    signed
        .sign(&CHARITY.parse().expect("id"), &key)
        .expect("the charity signs");
    let reply = c
        .admin("ccas-rodez")
        .gov_approve(&id[..10], Some(&signed))
        .await
        .expect("approve with the newcomer's signature");
    assert_eq!(reply.outcome, "adopted");
    c.wait_version(&FOUNDERS, 2).await;

    // Every founder logged the proposal, the approvals and the adoption.
    for m in FOUNDERS {
        let auditor = c.user(m, "dpo", Role::Auditor).await;
        let kinds = audit_kinds(&auditor).await;
        for kind in ["roster_proposed", "roster_approved", "roster_adopted"] {
            assert!(
                kinds.iter().any(|k| k == kind),
                "{m} logged {kind}: {kinds:?}"
            );
        }
        let adopted = audit_events(&auditor, "roster_adopted").await;
        assert_eq!(adopted.last().expect("adoption")["version"], 2, "{m}");
    }

    // The charity's node starts from the genesis, fetches the chain from a
    // founder, verifies it link by link and serves.
    let clock: Arc<dyn Clock> = c.clock.clone();
    c.fed
        .node_mut(CHARITY)
        .start(clock)
        .await
        .expect("the charity joins");
    let status = c.admin(CHARITY).gov_status().await.expect("status");
    assert_eq!(status.version, 2);

    // It then receives a consented share like any member.
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &[CHARITY], &next_year(&c.clock))
        .await
        .expect("a consent to the charity");
    let charity = c.desk(CHARITY, "benevole").await;
    let got = charity
        .read(&d, "housing", "ccas-rodez")
        .await
        .expect("read");
    assert_eq!(got.json, HOUSING);
}

#[tokio::test]
async fn a_proposal_without_quorum_is_not_adopted_and_a_non_admin_cannot_propose() {
    let c = Cluster::start().await;
    let change = Change::SetQuorum {
        quorum: "3/3".parse().expect("quorum"),
    };
    let reply = c
        .admin("cd12")
        .gov_propose(&change, "")
        .await
        .expect("proposed");
    assert_eq!(reply.outcome, "pending");
    for m in FOUNDERS {
        assert_eq!(c.admin(m).gov_status().await.expect("status").version, 1);
    }
    let caseworker = c.user("cd12", "agent", Role::Caseworker).await;
    let (code, why) = refusal(caseworker.gov_propose(&change, "").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
    // The same proposal twice is refused; a change that does not apply too.
    let (code, why) = refusal(c.admin("cd12").gov_propose(&change, "").await);
    assert_eq!((code, why.as_str()), (Code::AlreadyExists, "exists"));
    let (code, why) = refusal(
        c.admin("cd12")
            .gov_propose(
                &Change::Reinstate {
                    member: "caf12".parse().expect("id"),
                },
                "",
            )
            .await,
    );
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "change_does_not_apply")
    );
}

/// Signs `r` as each of `ids`, with their keys.
fn signed_by(c: &Cluster, mut r: SignedRoster, ids: &[&str]) -> SignedRoster {
    for id in ids {
        r.sign(&id.parse().expect("id"), &c.key(id)).expect("sign");
    }
    r
}

/// Offers `r` to `to` as `from`, claimed adopted; the refusal's reason.
async fn offered(c: &Cluster, from: &str, to: &str, r: &SignedRoster) -> Result<u64, String> {
    use maillon_node::service::PeerNetwork;
    c.peer_as(from)
        .offer_roster(&c.member(to), r, true)
        .await
        .map_err(|e| e.reason())
}

#[tokio::test]
async fn bad_versions_are_refused_and_each_refusal_is_logged_with_its_reason() {
    let c = Cluster::start().await;
    let v1 = c.genesis();
    let lower_quorum = |r: &mut maillon_node::roster::Roster| r.quorum = "3/5".parse().expect("q");

    let alone = signed_by(&c, next_version(&v1, lower_quorum), &["cd12"]);
    let mut forged = signed_by(&c, next_version(&v1, lower_quorum), &["cd12"]);
    let mut entry = forged.signatures[0].clone();
    entry.signer = "ccas-rodez".parse().expect("id");
    forged.signatures.push(entry);
    let mut twice = signed_by(
        &c,
        next_version(&v1, |r| r.quorum = "4/7".parse().expect("q")),
        &["cd12"],
    );
    twice.signatures.push(twice.signatures[0].clone());
    let reused = signed_by(
        &c,
        next_version(&v1, |r| {
            let mut copy = r.members[0].clone();
            copy.card.id = "cd12-bis".parse().expect("id");
            copy.card.tls_spki_sha256 = maillon_node::crypto::SpkiHash([7; 32]);
            r.members.push(copy);
        }),
        &FOUNDERS,
    );
    let unlinked = signed_by(
        &c,
        next_version(&v1, |r| r.previous = Some("00".repeat(32))),
        &FOUNDERS,
    );
    let skipping = signed_by(&c, next_version(&v1, |r| r.version = 3), &FOUNDERS);
    let cases = [
        (alone, "no_quorum"),
        (forged, "forged_signature"),
        (twice, "no_quorum"),
        (reused, "invalid_roster"),
        (unlinked, "wrong_predecessor"),
        (skipping, "skipped_version"),
    ];
    for (r, why) in &cases {
        assert_eq!(offered(&c, "cd12", "caf12", r).await, Err(why.to_string()));
    }
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let refused: Vec<String> = audit_events(&auditor, "roster_refused")
        .await
        .iter()
        .map(|e| e["code"].as_str().expect("code").to_owned())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, why)| *why).collect();
    assert_eq!(refused, expected);
    // The same refusal offered again is answered again, not logged again.
    assert_eq!(
        offered(&c, "cd12", "caf12", &cases[0].0).await,
        Err("no_quorum".into())
    );
    assert_eq!(
        audit_events(&auditor, "roster_refused").await.len(),
        cases.len()
    );
    assert_eq!(
        c.admin("caf12").gov_status().await.expect("status").version,
        1
    );

    // A version a quorum adopted goes in; then a different version 1 is a rollback.
    let good = signed_by(&c, next_version(&v1, lower_quorum), &["cd12", "ccas-rodez"]);
    assert_eq!(offered(&c, "cd12", "caf12", &good).await, Ok(2));
    let mut other_genesis = v1.signed().clone();
    other_genesis.roster.quorum = "3/3".parse().expect("q");
    let other_genesis = signed_by(&c, SignedRoster::unsigned(other_genesis.roster), &FOUNDERS);
    assert_eq!(
        offered(&c, "cd12", "caf12", &other_genesis).await,
        Err("rollback".into())
    );
    let last = audit_events(&auditor, "roster_refused").await;
    assert_eq!(last.last().expect("refusal")["code"], "rollback");
}

#[tokio::test]
async fn signatures_of_a_non_voting_or_suspended_member_count_for_nothing() {
    for (edit, what) in [
        (
            (|r: &mut maillon_node::roster::Roster| r.members[2].voting = false)
                as fn(&mut maillon_node::roster::Roster),
            "non-voting",
        ),
        (
            |r: &mut maillon_node::roster::Roster| {
                r.members[2].status = maillon_node::types::MemberStatus::Suspended
            },
            "suspended",
        ),
    ] {
        let c = Cluster::start_with(edit).await;
        let v1 = c.genesis();
        // Two voters remain (cd12, ccas-rodez): 2/3 of 2 is 2.
        let r = signed_by(
            &c,
            next_version(&v1, |r| r.quorum = "3/4".parse().expect("q")),
            &["cd12", "caf12"],
        );
        assert_eq!(
            offered(&c, "cd12", "ccas-rodez", &r).await,
            Err("no_quorum".into()),
            "{what}"
        );
        let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
        assert_eq!(
            audit_events(&auditor, "roster_refused").await.len(),
            1,
            "{what}"
        );
    }
}

#[tokio::test]
async fn two_valid_versions_with_one_number_are_equivocation_and_the_first_adopted_stands() {
    let c = Cluster::start().await;
    let v1 = c.genesis();
    let a = signed_by(
        &c,
        next_version(&v1, |r| r.quorum = "3/5".parse().expect("q")),
        &["cd12", "ccas-rodez"],
    );
    let b = signed_by(
        &c,
        next_version(&v1, |r| r.quorum = "4/7".parse().expect("q")),
        &["cd12", "caf12"],
    );
    assert_eq!(offered(&c, "cd12", "caf12", &a).await, Ok(2));
    assert_eq!(
        offered(&c, "ccas-rodez", "caf12", &b).await,
        Err("equivocation".into())
    );
    let status = c.admin("caf12").gov_status().await.expect("status");
    assert_eq!(status.hash, a.roster.hash_hex(), "the first adopted stands");
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let alarms = audit_events(&auditor, "roster_equivocation").await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["adopted"], a.roster.hash_hex());
    assert_eq!(alarms[0]["other"], b.roster.hash_hex());
    assert_eq!(alarms[0]["from"], "ccas-rodez");
}

#[tokio::test]
async fn of_two_competing_proposals_only_one_is_adopted_and_the_other_is_reported_stale() {
    let c = Cluster::start().await;
    let stricter = Change::SetQuorum {
        quorum: "3/5".parse().expect("q"),
    };
    let looser = Change::SetQuorum {
        quorum: "4/7".parse().expect("q"),
    };
    let p1 = c
        .admin("cd12")
        .gov_propose(&stricter, "")
        .await
        .expect("p1");
    let p2 = c.admin("caf12").gov_propose(&looser, "").await.expect("p2");
    let (id1, id2) = (p1.proposal.expect("p1").id, p2.proposal.expect("p2").id);
    // A member signs one candidate per version: two candidates can never
    // both reach a quorum (a majority of the same voters).
    let (code, why) = refusal(c.admin("cd12").gov_approve(&id2, None).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "already_signed")
    );
    // Two open proposals for v2: the bare number is ambiguous.
    let (code, why) = refusal(c.admin("ccas-rodez").gov_approve("2", None).await);
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    let r = c
        .admin("ccas-rodez")
        .gov_approve(&id1, None)
        .await
        .expect("approve p1");
    assert_eq!(r.outcome, "adopted");
    c.wait_version(&FOUNDERS, 2).await;
    let (code, why) = refusal(c.admin("ccas-rodez").gov_approve(&id2, None).await);
    assert_eq!((code, why.as_str()), (Code::FailedPrecondition, "stale"));
    let list = c.admin("ccas-rodez").gov_list().await.expect("list");
    let stale = list
        .proposals
        .iter()
        .find(|p| p.id == id2)
        .expect("p2 listed");
    assert!(!stale.current, "p2 is shown stale");
    let status = c.admin("caf12").gov_status().await.expect("status");
    assert_eq!(status.quorum, "3/5");
    // Declining to sign is recorded, with its reason, and logged.
    let admin = c.admin("cd12");
    let declined = admin
        .api()
        .gov_reject(admin.req(maillon_proto::v1::GovRejectRequest {
            proposal: id2[..8].into(),
            reason: "la CAF a déjà voté".into(),
        }))
        .await
        .expect("reject")
        .into_inner();
    assert_eq!(declined.proposal.expect("proposal").rejected_by, "admin");
    let auditor = c.user("cd12", "dpo", Role::Auditor).await;
    let rejected = audit_events(&auditor, "roster_rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["reason"], "la CAF a déjà voté");
    // An auditor may list proposals; a caseworker may not.
    assert!(auditor.gov_list().await.is_ok());
    let caseworker = c.user("cd12", "agent", Role::Caseworker).await;
    let (code, why) = refusal(caseworker.gov_list().await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
}

#[tokio::test]
async fn a_suspended_member_is_refused_everywhere_at_once_and_cannot_open_what_is_sealed_afterwards()
 {
    let mut c = Cluster::start().await;
    let (ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    ccas.grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("the département may read too");
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    let before = c.sealed_housing_for_cd12(&d).await;
    // A connection the CAF opens now stays open across the suspension.
    let caf_peer = c.peer_as("caf12");
    {
        use maillon_node::service::PeerNetwork;
        caf_peer
            .fetch_chain(&c.member("ccas-rodez"), 1)
            .await
            .expect("an active member fetches the chain");
    }

    let suspend = Change::Suspend {
        member: "caf12".parse().expect("id"),
    };
    let r = c.vote(&suspend, "cd12", &["ccas-rodez"]).await;
    assert_eq!(r.outcome, "adopted");
    c.wait_version(&FOUNDERS, 2).await;

    // Its reads are refused, on the connection it had open as on any new one.
    let (code, _) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_ne!(code, Code::Ok);
    // The connection it had open is refused at its next call...
    {
        use maillon_node::service::PeerNetwork;
        let err = caf_peer
            .fetch_chain(&c.member("ccas-rodez"), 1)
            .await
            .expect_err("refused on the open connection");
        assert_eq!(err.reason(), "unauthenticated", "{err}");
    }
    // ...and its TLS handshakes fail at every node.
    for m in ["cd12", "ccas-rodez"] {
        use maillon_node::service::PeerNetwork;
        let err = c
            .peer_as("caf12")
            .fetch_chain(&c.member(m), 1)
            .await
            .expect_err("handshake refused");
        assert_eq!(err.reason(), "unreachable", "{m}: {err}");
    }
    // Nor does it get the federation's indicators any more.
    {
        use maillon_node::service::PeerNetwork;
        let err = c
            .peer_as("caf12")
            .get_indicators(&c.member("ccas-rodez"), "2026")
            .await
            .expect_err("indicators refused");
        assert_eq!(err.reason(), "unreachable", "{err}");
    }
    // The owner removed it from the group of its share.
    assert_eq!(
        c.group_members("ccas-rodez", &share).await,
        ["ccas-rodez", "cd12"]
    );
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let removed = audit_events(&auditor, "group_member_removed").await;
    assert_eq!(removed.last().expect("removal")["member"], "caf12");

    // At the MLS level: the CAF's own group state opens what was sealed
    // before its removal, and nothing sealed after.
    let after = c.sealed_housing_for_cd12(&d).await;
    c.fed.node_mut("caf12").stop().await;
    let store = maillon_node::storage::Store::open(&c.node("caf12").dir.join("store"))
        .expect("the CAF's store");
    let caf_mls =
        maillon_node::sharing::Sharing::new(store, "caf12".parse().expect("id"), &c.key("caf12"));
    let owner_key = c.member("ccas-rodez").card.signing_key;
    assert_eq!(
        caf_mls
            .open(&share, &before, &owner_key)
            .expect("sealed before"),
        HOUSING.as_bytes()
    );
    assert!(
        caf_mls.open(&share, &after, &owner_key).is_err(),
        "the suspended CAF cannot open what was sealed after its removal"
    );
    drop(caf_mls);

    // Reinstated: connections come back, group membership does not without
    // a new consent decision.
    let clock: Arc<dyn Clock> = c.clock.clone();
    c.fed.node_mut("caf12").start(clock).await.expect("restart");
    let reinstate = Change::Reinstate {
        member: "caf12".parse().expect("id"),
    };
    assert_eq!(
        c.vote(&reinstate, "cd12", &["ccas-rodez"]).await.outcome,
        "adopted"
    );
    c.wait_version(&FOUNDERS, 3).await;
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "no_consent"));
    let owner = c.running("ccas-rodez").node();
    owner.reconcile_groups().await.expect("upkeep");
    owner.resync_members().await.expect("upkeep");
    assert_eq!(
        c.group_members("ccas-rodez", &share).await,
        ["ccas-rodez", "cd12"]
    );
    // (A consent granted in the very second of the suspension counts as
    // granted before it: the clock moves on before the new decision.)
    c.clock.advance(60);
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("a new consent decision");
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("read")
            .json,
        HOUSING
    );
}

#[tokio::test]
async fn exclusion_is_final() {
    let c = Cluster::start().await;
    let exclude = Change::Exclude {
        member: "caf12".parse().expect("id"),
    };
    assert_eq!(
        c.vote(&exclude, "cd12", &["ccas-rodez"]).await.outcome,
        "adopted"
    );
    c.wait_version(&["cd12", "ccas-rodez"], 2).await;
    let reinstate = Change::Reinstate {
        member: "caf12".parse().expect("id"),
    };
    let (code, why) = refusal(c.admin("cd12").gov_propose(&reinstate, "").await);
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "change_does_not_apply")
    );
    // A hand-made version that brings it back is refused, and logged.
    let v2 = maillon_node::roster::VerifiedRoster::verify_chain(
        c.genesis().signed().clone(),
        [
            SignedRoster::decode(&c.admin("cd12").gov_status().await.expect("status").roster)
                .expect("v2"),
        ],
    )
    .expect("chain");
    let back = signed_by(
        &c,
        next_version(&v2, |r| {
            r.members[2].status = maillon_node::types::MemberStatus::Active
        }),
        &["cd12", "ccas-rodez"],
    );
    assert_eq!(
        offered(&c, "cd12", "ccas-rodez", &back).await,
        Err("forbidden_transition".into())
    );
}

#[tokio::test]
async fn a_charter_that_narrows_closes_the_groups_it_no_longer_allows() {
    let c = Cluster::start().await;
    let (ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    let mut charter = c.genesis().roster().charter.clone();
    charter
        .receivable
        .get_mut(&maillon_node::types::MemberKind::Caf)
        .expect("caf")
        .remove(&maillon_node::types::Section::Housing);
    let r = c
        .vote(&Change::SetCharter { charter }, "cd12", &["ccas-rodez"])
        .await;
    assert!(
        r.proposal
            .expect("proposal")
            .changes
            .iter()
            .any(|l| l == "charter: a caf may no longer receive housing"),
    );
    c.wait_version(&FOUNDERS, 2).await;
    assert_eq!(c.group_members("ccas-rodez", &share).await, ["ccas-rodez"]);
    // A read outside the charter is refused even with the consent; a new
    // consent beyond it is refused when recorded.
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "charter"));
    let (code, why) = refusal(
        ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "charter"));
}

#[tokio::test]
async fn a_node_that_was_down_catches_up_from_its_peers_verifying_the_chain() {
    let mut c = Cluster::start().await;
    c.fed.node_mut("caf12").stop().await;
    for quorum in ["3/5", "4/7"] {
        let change = Change::SetQuorum {
            quorum: quorum.parse().expect("q"),
        };
        assert_eq!(
            c.vote(&change, "cd12", &["ccas-rodez"]).await.outcome,
            "adopted"
        );
    }
    c.wait_version(&["cd12", "ccas-rodez"], 3).await;
    let clock: Arc<dyn Clock> = c.clock.clone();
    c.fed.node_mut("caf12").start(clock).await.expect("restart");
    c.wait_version(&["caf12"], 3).await;
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let versions: Vec<u64> = audit_events(&auditor, "roster_adopted")
        .await
        .iter()
        .map(|e| e["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, [1, 2, 3], "link by link");
    // It keeps the chain: a restart verifies it from genesis again.
    c.restart("caf12").await;
    assert_eq!(
        c.admin("caf12").gov_status().await.expect("status").version,
        3
    );
}

#[tokio::test]
async fn a_member_rotates_both_keys_its_old_keys_fail_everywhere_and_its_leaves_are_rekeyed() {
    let mut c = Cluster::start().await;
    let (_ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    let config = maillon_node::config::Config::load(&c.node("caf12").dir).expect("config");
    let card = config.stage_keys(true, true).expect("new keys staged");
    // A second rotation cannot be staged over the first.
    assert!(config.stage_keys(true, false).is_err());

    // The CAF proposes its own update: its node signs with its old key and
    // its staged new key; the CCAS's approval brings the quorum.
    let update = Change::UpdateMember {
        member: "caf12".parse().expect("id"),
        endpoint: None,
        card: Some(card.clone()),
    };
    let reply = c
        .admin("caf12")
        .gov_propose(&update, "rotation annuelle des clés")
        .await
        .expect("proposed");
    let p = reply.proposal.expect("proposal");
    assert!(
        p.unproven.is_empty(),
        "the new key signed: {:?}",
        p.unproven
    );
    assert!(
        p.changes
            .iter()
            .any(|l| l == "replaces caf12's signing key")
    );
    assert!(p.changes.iter().any(|l| l == "replaces caf12's TLS key"));
    let r = c
        .admin("ccas-rodez")
        .gov_approve(&p.id, None)
        .await
        .expect("approve");
    assert_eq!(r.outcome, "adopted");
    c.wait_version(&["cd12", "ccas-rodez"], 2).await;
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        c.running("caf12").node().keys_rotated(),
    )
    .await
    .expect("the CAF's node learns its keys were rotated");

    // Until it starts again, its old keys fail everywhere: handshakes, and
    // the requests they sign.
    for m in ["cd12", "ccas-rodez"] {
        use maillon_node::service::PeerNetwork;
        let err = c
            .peer_as("caf12")
            .fetch_chain(&c.member(m), 1)
            .await
            .expect_err("the old TLS key is refused");
        assert_eq!(err.reason(), "unreachable", "{m}: {err}");
    }
    let (code, _) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_ne!(code, Code::Ok);
    // The owner took the old leaf out of its group at once.
    assert_eq!(c.group_members("ccas-rodez", &share).await, ["ccas-rodez"]);

    // Started again, the node runs with the new keys; its log still opens
    // (its last checkpoint was signed by the old key) and verifies.
    c.restart("caf12").await;
    let new_key = maillon_node::crypto::NodeKey::read(&config.signing_key_path()).expect("key");
    assert_eq!(
        new_key.public(),
        card.signing_key,
        "the staged key is in force"
    );
    assert!(!config.staged_signing_key_path().exists());
    c.wait_group("ccas-rodez", &share, &["ccas-rodez", "caf12"])
        .await;
    let caf = c.desk("caf12", "agent-caf-2").await;
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("read")
            .json,
        HOUSING
    );
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let v2 = c.admin("caf12").gov_status().await.expect("status");
    let v2 = SignedRoster::decode(&v2.roster).expect("roster");
    let me = v2
        .roster
        .member(&"caf12".parse().expect("id"))
        .expect("listed");
    let genesis = c.genesis();
    let first = genesis
        .roster()
        .member(&"caf12".parse().expect("id"))
        .expect("a founder");
    assert_ne!(me.card.signing_key, first.card.signing_key, "a new key");
    // The CAF's log verifies, checkpoints signed before and after the
    // rotation (every key it held, from the roster chain).
    c.verified_log_size(&auditor).await;
}

#[tokio::test]
async fn an_owner_that_rotates_its_signing_key_makes_its_groups_anew_and_welcomes_its_members_again()
 {
    let mut c = Cluster::start().await;
    let (_ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    let share = maillon_tests::housing_share(&d, "ccas-rodez");
    let config = maillon_node::config::Config::load(&c.node("ccas-rodez").dir).expect("config");
    let card = config.stage_keys(true, false).expect("staged");
    let update = Change::UpdateMember {
        member: "ccas-rodez".parse().expect("id"),
        endpoint: None,
        card: Some(card),
    };
    let r = c.vote(&update, "ccas-rodez", &["cd12"]).await;
    assert_eq!(r.outcome, "adopted");
    c.wait_version(&FOUNDERS, 2).await;
    // Until it starts again, the CCAS signs with its old key: the CAF
    // refuses its receipt (and its MLS leaf), whatever its TLS says.
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "peer_misbehaved")
    );
    c.restart("ccas-rodez").await;
    // The groups are made anew and the members welcomed again (by upkeep,
    // which the harness runs too).
    c.wait_group("ccas-rodez", &share, &["ccas-rodez", "caf12"])
        .await;
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("read")
            .json,
        HOUSING
    );
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert_eq!(audit_events(&auditor, "group_rekeyed").await.len(), 1);
}

#[tokio::test]
async fn a_member_cannot_flood_a_node_with_proposals() {
    use maillon_node::service::PeerNetwork;
    let c = Cluster::start().await;
    let v1 = c.genesis();
    let peer = c.peer_as("cd12");
    let caf = c.member("caf12");
    let limit = maillon_node::service::MAX_OPEN_PROPOSALS_PER_MEMBER;
    for i in 0..=limit {
        let p = signed_by(
            &c,
            next_version(&v1, |r| r.reason = Some(format!("proposition {i}"))),
            &["cd12"],
        );
        let offered = peer.offer_roster(&caf, &p, false).await;
        if i < limit {
            offered.expect("kept as a proposal");
        } else {
            assert_eq!(offered.expect_err("one too many").reason(), "busy");
        }
    }
    assert_eq!(
        c.admin("caf12")
            .gov_list()
            .await
            .expect("list")
            .proposals
            .len(),
        limit
    );
}

#[tokio::test]
async fn bad_governance_input_is_refused_and_changes_nothing() {
    use maillon_proto::v1 as pb;
    let c = Cluster::start().await;
    let admin = c.admin("cd12");
    let change = Change::SetQuorum {
        quorum: "3/5".parse().expect("q"),
    };
    let p = admin
        .gov_propose(&change, "")
        .await
        .expect("proposed")
        .proposal
        .expect("proposal");
    let candidate = SignedRoster::decode(&p.signed).expect("candidate");

    // A change that is not JSON of a change.
    let (code, why) = refusal(
        admin
            .api()
            .gov_propose(admin.req(pb::GovProposeRequest {
                change: r#"{"change":"dissolve"}"#.into(),
                reason: String::new(),
            }))
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    // Signatures brought in for another candidate, or forged.
    let ccas = c.admin("ccas-rodez");
    let other = signed_by(
        &c,
        next_version(&c.genesis(), |r| r.quorum = "4/7".parse().expect("q")),
        &["caf12"],
    );
    let (code, why) = refusal(ccas.gov_approve(&p.id, Some(&other)).await);
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    let mut forged = candidate.clone();
    let mut entry = forged.signatures[0].clone();
    entry.signer = "caf12".parse().expect("id");
    forged.signatures.push(entry);
    let (code, why) = refusal(ccas.gov_approve(&p.id, Some(&forged)).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "forged_signature")
    );
    // A rejection needs a reason; proposals are named by number or 8+ hex digits.
    let (code, why) = refusal(
        ccas.api()
            .gov_reject(ccas.req(pb::GovRejectRequest {
                proposal: p.id.clone(),
                reason: "  ".into(),
            }))
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::InvalidArgument, "invalid"));
    for (name, expected) in [
        // A short prefix of an id (not all digits: those name a version).
        ("abcdef1", (Code::InvalidArgument, "invalid")),
        ("3", (Code::NotFound, "not_found")),
    ] {
        let (code, why) = refusal(
            ccas.api()
                .gov_show(ccas.req(pb::GovShowRequest {
                    proposal: name.into(),
                }))
                .await,
        );
        assert_eq!((code, why.as_str()), expected, "{name}");
    }
    // Nothing changed: one signer, nothing rejected, still v1 everywhere.
    let list = ccas.gov_list().await.expect("list");
    assert_eq!(list.proposals[0].signers, ["cd12"]);
    assert!(list.proposals[0].rejected_by.is_empty());
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert!(audit_events(&auditor, "roster_rejected").await.is_empty());
    for m in FOUNDERS {
        assert_eq!(c.admin(m).gov_status().await.expect("status").version, 1);
    }
}
