//! The coordination commission across real nodes: the CCAS's référent
//! convenes the CAF and the département on a dossier with the person's
//! consent naming both; each participant reads what the person allowed;
//! the decisions go into the support plan; the signed minutes reach every
//! participant; every refusal changes nothing; a crash loses nothing.

use maillon_node::crypto::Context;
use maillon_node::protocol::{Minutes, Notice, SignedBytes};
use maillon_node::service::PeerNetwork as _;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, Desk, audit_events, code, next_year};
use tonic::{Code, Status};

async fn convene(
    desk: &Desk,
    d: &str,
    with: &[&str],
    agenda: &str,
    consent: &str,
) -> Result<pb::CommissionEntry, Status> {
    desk.conn
        .api()
        .convene_commission(desk.conn.req(pb::ConveneCommissionRequest {
            dossier: d.into(),
            participants: with.iter().map(|m| (*m).to_owned()).collect(),
            agenda: agenda.into(),
            meets_on: "2027-01-12".into(),
            consent: consent.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn close(
    desk: &Desk,
    id: &str,
    decisions: &[(&str, &str, &str)],
) -> Result<pb::CommissionEntry, Status> {
    desk.conn
        .api()
        .close_commission(
            desk.conn.req(pb::CloseCommissionRequest {
                commission: id.into(),
                decisions: decisions
                    .iter()
                    .map(|(who, what, by)| pb::CommissionDecision {
                        who: (*who).into(),
                        what: (*what).into(),
                        by: (*by).into(),
                    })
                    .collect(),
            }),
        )
        .await
        .map(tonic::Response::into_inner)
}

async fn list(desk: &Desk) -> Vec<pb::CommissionEntry> {
    desk.conn
        .api()
        .list_commissions(desk.conn.req(pb::ListCommissionsRequest {}))
        .await
        .expect("listed")
        .into_inner()
        .commissions
}

const AGENDA: &str = "Relogement et ouverture des droits au logement";

#[tokio::test]
async fn the_referent_convenes_a_commission_its_decisions_go_into_the_support_plan_and_the_minutes_reach_every_participant()
 {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let cd = c.desk("cd12", "agent-cd").await;
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("the référent");
    let only_caf = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("a consent naming the CAF only");
    let ccas_dpo = c.user("ccas-rodez", "dpo-ccas", Role::Auditor).await;

    // Refused, and nothing convened: a consent that does not name every
    // participant, none at all for them, no agenda, itself, a stranger,
    // someone else than the référent, a member that does not hold the dossier.
    let (got, message) = code(convene(&ccas, &d, &["caf12", "cd12"], AGENDA, &only_caf).await);
    assert_eq!(got, Code::FailedPrecondition, "{message}");
    let (got, message) = code(convene(&ccas, &d, &["caf12", "cd12"], AGENDA, "").await);
    assert_eq!(got, Code::FailedPrecondition, "{message}");
    assert!(message.contains("names every participant"), "{message}");
    assert_eq!(
        code(convene(&ccas, &d, &["caf12"], " ", "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(convene(&ccas, &d, &["ccas-rodez"], AGENDA, "").await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(convene(&ccas, &d, &["cpam12"], AGENDA, "").await).0,
        Code::FailedPrecondition
    );
    let other = c.desk("ccas-rodez", "agent-autre").await;
    let (got, message) = code(convene(&other, &d, &["caf12"], AGENDA, "").await);
    assert_eq!(got, Code::PermissionDenied, "{message}");
    assert_eq!(
        code(convene(&caf, &d, &["cd12"], AGENDA, "").await).0,
        Code::NotFound
    );
    assert!(
        audit_events(&ccas_dpo, "commission_convened")
            .await
            .is_empty()
    );

    // Convened on the consent naming both: each participant has it at once.
    let both = ccas
        .grant(&d, &["housing"], &["caf12", "cd12"], &next_year(&c.clock))
        .await
        .expect("a consent naming both");
    let convened = convene(&ccas, &d, &["cd12", "caf12"], AGENDA, "")
        .await
        .expect("convened");
    assert_eq!(convened.consent, both);
    assert_eq!(convened.participants, ["caf12", "cd12"]);
    assert_eq!(convened.sections, ["housing"]);
    for desk in [&caf, &cd] {
        let invited = list(desk).await;
        assert_eq!(invited.len(), 1);
        assert_eq!(
            (invited[0].agenda.as_str(), invited[0].closed),
            (AGENDA, false)
        );
    }
    // Each participant reads what the person allowed, through the consented read.
    cd.read(&d, "housing", "ccas-rodez")
        .await
        .expect("the département reads the housing");

    // Closing: only where it was convened, by the référent, with decisions
    // for the convener or a participant.
    assert_eq!(code(close(&caf, &convened.id, &[]).await).0, Code::NotFound);
    assert_eq!(
        code(close(&other, &convened.id, &[]).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(close(&ccas, &convened.id, &[("cpam12", "rien", "2027-02-01")]).await).0,
        Code::InvalidArgument
    );
    let decisions = [
        (
            "caf12",
            "Ouvrir les droits à l'aide au logement",
            "2027-01-31",
        ),
        (
            "ccas-rodez",
            "Accompagner la visite chez le bailleur social",
            "2027-02-15",
        ),
    ];
    let closed = close(&ccas, &convened.id, &decisions)
        .await
        .expect("closed");
    assert!(closed.closed);
    assert_eq!(
        code(close(&ccas, &convened.id, &decisions).await).0,
        Code::FailedPrecondition
    );
    let plan: serde_json::Value = serde_json::from_str(
        &ccas
            .get(&d, "support_plan")
            .await
            .expect("the support plan"),
    )
    .expect("json");
    let actions: Vec<&str> = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(
        actions[0].starts_with("caf12 : Ouvrir les droits"),
        "{actions:?}"
    );
    assert!(actions[1].contains("2027-02-15"), "{actions:?}");
    for desk in [&caf, &cd] {
        let got = list(desk).await;
        assert!(got[0].closed, "the minutes reached every participant");
        assert_eq!(got[0].decisions.len(), 2);
    }

    // Logged on every side.
    assert_eq!(
        audit_events(&ccas_dpo, "commission_convened").await.len(),
        1
    );
    let minutes = audit_events(&ccas_dpo, "commission_minutes").await;
    assert_eq!(
        (minutes.len(), minutes[0]["by"].as_str()),
        (1, Some("agent-ccas"))
    );
    let caf_dpo = c.user("caf12", "dpo-caf", Role::Auditor).await;
    assert_eq!(audit_events(&caf_dpo, "commission_invited").await.len(), 1);
    assert_eq!(
        audit_events(&caf_dpo, "commission_minutes").await[0]["from"],
        "ccas-rodez"
    );
    // Never with the agenda or the decisions in clear: sealed under the
    // dossier's key on both sides, in the log and in the store (the CAF
    // never queued them, so no file of it holds them).
    for dpo in [&ccas_dpo, &caf_dpo] {
        let all = maillon_tests::audit_entries(dpo).await;
        for words in [AGENDA, decisions[1].1] {
            assert!(
                !all.iter().any(|e| e.to_string().contains(words)),
                "{words} reached a log in clear"
            );
        }
    }
    for words in [AGENDA, decisions[1].1] {
        assert!(maillon_tests::found_in(&c.node("caf12").dir, words).is_empty());
    }

    // Minutes the département signs for the CCAS's commission are refused.
    let forged = Minutes {
        commission: convened.id.parse().expect("id"),
        dossier: d.parse().expect("dossier"),
        convener: "ccas-rodez".parse().expect("id"),
        decisions: vec![],
        closed_at: 0,
    };
    let signature = SignedBytes::sign(&forged, Context::Commission, &c.key("cd12")).signature;
    let r = c
        .peer_as("cd12")
        .notify(
            &c.member("caf12"),
            &Notice::Minutes {
                minutes: forged,
                signature,
            },
        )
        .await;
    assert!(r.is_err(), "forged minutes were taken");
    // Nor a convocation in the CCAS's name.
    let convocation = maillon_node::protocol::Commission {
        id: maillon_node::types::CommissionId::random(),
        dossier: d.parse().expect("dossier"),
        convener: "ccas-rodez".parse().expect("id"),
        participants: vec!["caf12".parse().expect("id")],
        agenda: "fausse".into(),
        meets_on: "2027-01-12".parse().expect("date"),
        consent: both.parse().expect("consent"),
        sections: vec![],
        convened_at: 0,
    };
    let signature = SignedBytes::sign(&convocation, Context::Commission, &c.key("cd12")).signature;
    let r = c
        .peer_as("cd12")
        .notify(
            &c.member("caf12"),
            &Notice::Commission {
                commission: convocation,
                signature,
            },
        )
        .await;
    assert!(r.is_err(), "a forged convocation was taken");
    assert_eq!(list(&caf).await.len(), 1);

    // The person's access report tells it, in French.
    let report = format!("{:?}", c.access_report(&ccas_dpo, &d).await);
    assert!(
        report.contains("a réuni une commission de coordination"),
        "{report}"
    );

    // Erased at the person's request: every participant forgets it, even
    // one that never attached the dossier.
    ccas.conn
        .api()
        .erase_dossier(
            ccas.conn
                .req(pb::EraseDossierRequest { dossier: d.clone() }),
        )
        .await
        .expect("erased");
    for desk in [&ccas, &caf, &cd] {
        assert!(
            list(desk).await.is_empty(),
            "a commission of an erased dossier is kept"
        );
    }
}
