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
    let lower_quorum = |r: &mut maillon_node::roster::Roster| r.quorum = "1/3".parse().expect("q");

    let alone = signed_by(&c, next_version(&v1, lower_quorum), &["cd12"]);
    let mut forged = signed_by(&c, next_version(&v1, lower_quorum), &["cd12"]);
    let mut entry = forged.signatures[0].clone();
    entry.signer = "ccas-rodez".parse().expect("id");
    forged.signatures.push(entry);
    let mut twice = signed_by(&c, next_version(&v1, lower_quorum), &["cd12"]);
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
            next_version(&v1, |r| r.quorum = "1/2".parse().expect("q")),
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
        next_version(&v1, |r| r.quorum = "1/3".parse().expect("q")),
        &["cd12", "ccas-rodez"],
    );
    let b = signed_by(
        &c,
        next_version(&v1, |r| r.quorum = "3/5".parse().expect("q")),
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
        quorum: "1/3".parse().expect("q"),
    };
    let p1 = c
        .admin("cd12")
        .gov_propose(&stricter, "")
        .await
        .expect("p1");
    let p2 = c.admin("caf12").gov_propose(&looser, "").await.expect("p2");
    let (id1, id2) = (p1.proposal.expect("p1").id, p2.proposal.expect("p2").id);
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
}
