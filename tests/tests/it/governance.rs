//! GIP governance on real nodes: admission by vote, refusals of bad
//! versions, equivocation, suspension, exclusion, charter changes, catch-up.

use std::sync::Arc;

use maillon_node::clock::Clock;
use maillon_node::roster::{Change, SignedRoster};
use maillon_node::types::Role;
use maillon_tests::{Cluster, HOUSING, audit_events, audit_kinds, next_year, refusal};
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
