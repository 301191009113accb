//! The référent de parcours: named at the holder, known at every member
//! holding the dossier, handed over only on the person's consent, alone to
//! write the support plan, and the one who sees every partner's freshness;
//! and the outbox that carries these notices to members that are down.

use maillon_cli::client::Conn;
use maillon_node::clock::Clock;
use maillon_node::roster::BreakGlassRule;
use maillon_node::storage::{MetaKey, Store, Tree};
use maillon_node::types::{MemberKind, Role};
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, Desk, audit_events, audit_kinds, housing_share, next_year, refusal};
use tonic::Code;

const PERSON: (&str, &str, &str) = ("Camille", "Martin", "1984-03-12");
const PLAN: &str =
    r#"{"objectifs":["logement stable"],"actions":["dossier FSL"],"rendez_vous":["2027-01-12"]}"#;

/// A dossier opened at the CCAS, attached by the CAF and the département,
/// each with a section of its own.
async fn three_partners(c: &Cluster) -> (Desk, Desk, Desk, String) {
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", PERSON)
        .await
        .expect("the CAF attaches");
    caf.put(&d, "resources", r#"{"rsa":true}"#)
        .await
        .expect("put");
    let cd = c.desk("cd12", "agent-cd").await;
    cd.conn
        .attach_dossier(&d, "ccas-rodez", PERSON)
        .await
        .expect("the département attaches");
    cd.put(&d, "employment", r#"{"suivi":"insertion"}"#)
        .await
        .expect("put");
    (ccas, caf, cd, d)
}

async fn view(conn: &Conn, d: &str) -> pb::ViewDossierReply {
    conn.view_dossier_whole(d, "coordination du parcours")
        .await
        .expect("view")
}

#[tokio::test]
async fn the_holder_names_the_referent_and_hands_over_only_on_consent() {
    let c = Cluster::start().await;
    let (ccas, caf, cd, d) = three_partners(&c).await;
    let (code, why) = refusal(ccas.put(&d, "support_plan", PLAN).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled"),
        "no support plan before a référent"
    );
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("a référent at the holder needs no consent");
    // Every member holding the dossier knows it, and logged it.
    for (id, desk) in [("caf12", &caf), ("cd12", &cd)] {
        assert_eq!(view(&desk.conn, &d).await.referent, "agent-ccas@ccas-rodez");
        let dpo = c.user(id, "dpo-noted", Role::Auditor).await;
        assert_eq!(audit_events(&dpo, "referent_noted").await.len(), 1, "{id}");
    }
    // The référent alone writes the support plan.
    ccas.put(&d, "support_plan", PLAN)
        .await
        .expect("the référent writes it");
    let other = c.desk("ccas-rodez", "collegue").await;
    let (code, why) = refusal(other.put(&d, "support_plan", PLAN).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled")
    );
    let (code, _) = refusal(caf.put(&d, "support_plan", PLAN).await);
    assert_eq!(code, Code::PermissionDenied);

    // The référent's view: every partner's freshness, never their content.
    let v = view(&ccas.conn, &d).await;
    let partners: Vec<(&str, &str, Vec<&str>)> = v
        .partners
        .iter()
        .map(|p| {
            (
                p.member.as_str(),
                p.status.as_str(),
                p.sections.iter().map(|s| s.section.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        partners,
        [
            ("caf12", "ok", vec!["resources"]),
            ("ccas-rodez", "ok", vec!["housing", "support_plan"]),
            ("cd12", "ok", vec!["employment"]),
        ]
    );
    assert!(
        v.partners
            .iter()
            .all(|p| p.sections.iter().all(|s| s.written_at > 0))
    );
    assert!(
        v.sections.iter().all(|s| s.owner == "ccas-rodez"),
        "no consent: freshness, and no other partner's content"
    );
    assert!(
        view(&caf.conn, &d).await.partners.is_empty(),
        "only at the référent's member"
    );
    let caf_dpo = c.user("caf12", "dpo-caf", Role::Auditor).await;
    assert_eq!(audit_events(&caf_dpo, "freshness_answered").await.len(), 1);

    // A hand-over without the person's consent, or on a consent for another
    // member, is refused and changes nothing.
    let ccas_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&ccas_dpo).await.len();
    let (code, why) = refusal(ccas.conn.set_referent(&d, "agent-cd@cd12", None).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled")
    );
    assert_eq!(audit_kinds(&ccas_dpo).await.len(), before, "nothing logged");
    let to_caf = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let before = audit_kinds(&ccas_dpo).await.len();
    let (code, why) = refusal(
        ccas.conn
            .set_referent(&d, "agent-cd@cd12", Some(&to_caf))
            .await,
    );
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "not_entitled")
    );
    // Not at a member that does not hold the dossier as its holder.
    let (code, why) = refusal(caf.conn.set_referent(&d, "agent-caf@caf12", None).await);
    assert_eq!((code, why.as_str()), (Code::FailedPrecondition, "state"));
    // Not a user the holder does not have.
    let (code, _) = refusal(
        ccas.conn
            .set_referent(&d, "personne@ccas-rodez", None)
            .await,
    );
    assert_eq!(code, Code::NotFound);
    let (code, _) = refusal(ccas.conn.set_referent(&d, "sans-arobase", None).await);
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(audit_kinds(&ccas_dpo).await.len(), before, "nothing logged");
    assert_eq!(view(&cd.conn, &d).await.referent, "agent-ccas@ccas-rodez");

    // On the person's consent naming the département: handed over, logged at both.
    let to_cd = ccas
        .grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.conn
        .set_referent(&d, "agent-cd@cd12", Some(&to_cd))
        .await
        .expect("hand-over");
    let set = audit_events(&ccas_dpo, "referent_set").await;
    assert_eq!(set.last().expect("entry")["consent"], to_cd.as_str());
    let cd_dpo = c.user("cd12", "dpo", Role::Auditor).await;
    let noted = audit_events(&cd_dpo, "referent_noted").await;
    assert_eq!(noted.last().expect("entry")["member"], "cd12");
    cd.put(&d, "support_plan", PLAN)
        .await
        .expect("the new référent writes it");
    let (code, _) = refusal(ccas.put(&d, "support_plan", PLAN).await);
    assert_eq!(
        code,
        Code::PermissionDenied,
        "the former référent no longer does"
    );
    assert_eq!(view(&cd.conn, &d).await.partners.len(), 3);
    assert!(view(&ccas.conn, &d).await.partners.is_empty());
}

#[tokio::test]
async fn a_member_that_has_not_attached_cannot_be_named() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let to_cd = ccas
        .grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let (code, why) = refusal(
        ccas.conn
            .set_referent(&d, "agent-cd@cd12", Some(&to_cd))
            .await,
    );
    assert_eq!((code, why.as_str()), (Code::FailedPrecondition, "state"));
}

#[tokio::test]
async fn a_break_glass_access_reaches_the_referents_member_through_the_outbox() {
    let mut c = Cluster::start_with(|r| {
        r.charter.break_glass = Some(BreakGlassRule {
            kinds: [MemberKind::Departement].into(),
            roles: [Role::Caseworker].into(),
            hours: 24,
        });
    })
    .await;
    let (ccas, _caf, cd, d) = three_partners(&c).await;
    let to_caf = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.conn
        .set_referent(&d, "agent-caf@caf12", Some(&to_caf))
        .await
        .expect("the CAF coordinates");

    // The CAF's node is down when the département breaks the glass.
    c.fed.node_mut("caf12").stop().await;
    cd.conn
        .read_shares(
            &d,
            &["housing"],
            "ccas-rodez",
            "protection de l'enfance",
            Some("Signalement ce soir : enfant de quatre ans seul au domicile, mère hospitalisée"),
        )
        .await
        .expect("break-glass read");
    let admin = c.node("ccas-rodez").admin().expect("admin");
    let waiting = admin
        .api()
        .outbox(admin.req(pb::OutboxRequest {}))
        .await
        .expect("outbox")
        .into_inner()
        .entries;
    assert!(
        waiting
            .iter()
            .any(|e| e.to == "caf12" && e.kind == "break_glass" && e.about == d && e.attempts == 1),
        "{waiting:?}"
    );
    // The owner restarts, then the CAF: the notice survived and arrives.
    c.restart("ccas-rodez").await;
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    c.fed.node_mut("caf12").start(clock).await.expect("restart");
    c.clock.advance(3600);
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .deliver_outbox()
            .await
            .expect("upkeep"),
        1
    );
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let told = caf_dpo
        .api()
        .list_break_glass(caf_dpo.req(pb::ListBreakGlassRequest { pending: true }))
        .await
        .expect("list")
        .into_inner()
        .accesses;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].owner, "ccas-rodez");
    assert_eq!(told[0].reader, "cd12");
    assert!(
        told[0].justification.is_empty(),
        "the justification stays at the owner"
    );
    // The référent's auditor reviews what it was told of.
    caf_dpo
        .api()
        .review_break_glass(caf_dpo.req(pb::ReviewBreakGlassRequest {
            id: told[0].id.clone(),
            comment: "Vu avec la référente de parcours, accès justifié".into(),
        }))
        .await
        .expect("reviewed");
    // Delivered twice changes nothing.
    let admin = c.node("ccas-rodez").admin().expect("admin");
    assert!(
        admin
            .api()
            .outbox(admin.req(pb::OutboxRequest {}))
            .await
            .expect("outbox")
            .into_inner()
            .entries
            .iter()
            .all(|e| e.kind != "break_glass")
    );
    // A caseworker does not see the outbox.
    let (code, _) = refusal(
        cd.conn
            .api()
            .outbox(cd.conn.req(pb::OutboxRequest {}))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
}

#[tokio::test]
async fn a_member_down_during_a_revocation_comes_back_in_step_and_reads_nothing_revoked() {
    let mut c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "household", r#"{"enfants":2}"#)
        .await
        .expect("put");
    let housing = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.grant(&d, &["household"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "household", "ccas-rodez").await.expect("read");

    // The CAF is down: its housing consent is revoked, and the household
    // group changes (the département joins it) without it.
    c.fed.node_mut("caf12").stop().await;
    ccas.revoke(&housing).await.expect("revoke");
    ccas.grant(
        &d,
        &["household", "housing"],
        &["cd12"],
        &next_year(&c.clock),
    )
    .await
    .expect("grant to the département");
    // Restart the owner, then the CAF.
    c.restart("ccas-rodez").await;
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    c.fed.node_mut("caf12").start(clock).await.expect("restart");
    let household = maillon_node::sharing::ShareId {
        dossier: d.parse().expect("id"),
        section: "household".parse().expect("section"),
        owner: "ccas-rodez".parse().expect("id"),
    };
    c.clock.advance(3600);
    c.wait_group("ccas-rodez", &household, &["ccas-rodez", "caf12", "cd12"])
        .await;
    caf.read(&d, "household", "ccas-rodez")
        .await
        .expect("in step for the share it still has");
    let (code, why) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "revoked"));
    // What the owner seals for the housing group now, the CAF cannot open.
    let share = housing_share(&d, "ccas-rodez");
    assert_eq!(
        c.group_members("ccas-rodez", &share).await,
        ["ccas-rodez", "cd12"]
    );
    let sealed = c.sealed_housing_for_cd12(&d).await;
    c.fed.node_mut("caf12").stop().await;
    assert!(
        !c.opens_housing("caf12", &d, &sealed),
        "a revoked member cannot open what was sealed after the revocation"
    );
}

#[tokio::test]
async fn a_referent_the_store_lost_comes_back_from_the_log() {
    let mut c = Cluster::start().await;
    let (ccas, caf, _cd, d) = three_partners(&c).await;
    let mark = c.running("ccas-rodez").node().audit_log().size();
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("named");
    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    for id in ["ccas-rodez", "caf12"] {
        let node = c.fed.node_mut(id);
        let mark = if id == "ccas-rodez" {
            mark
        } else {
            node.running
                .as_ref()
                .expect("running")
                .node()
                .audit_log()
                .size()
                - 1
        };
        node.stop().await;
        let store = Store::open(&node.dir.join("store")).expect("store");
        assert!(
            store
                .get::<serde_json::Value>(Tree::Referents, &d)
                .expect("get")
                .is_some(),
            "{id}"
        );
        store.remove(Tree::Referents, &d).expect("remove");
        store.set_meta(MetaKey::Applied, &mark).expect("mark");
        store.flush().expect("flush");
        drop(store);
        node.start(clock.clone()).await.expect("restart");
    }
    assert_eq!(view(&ccas.conn, &d).await.referent, "agent-ccas@ccas-rodez");
    assert_eq!(view(&caf.conn, &d).await.referent, "agent-ccas@ccas-rodez");
    assert_eq!(view(&ccas.conn, &d).await.partners.len(), 3);
}

#[tokio::test]
async fn a_member_that_attaches_after_the_referent_is_named_learns_it_and_only_the_referent_sees_the_partners()
 {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", PERSON)
        .await
        .expect("the CAF attaches");
    let to_caf = ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    ccas.conn
        .set_referent(&d, "agent-caf@caf12", Some(&to_caf))
        .await
        .expect("the CAF coordinates");
    // The département attaches afterwards: the holder's outbox tells it
    // who the référent is, and tells the référent's member of the new partner.
    let cd = c.desk("cd12", "agent-cd").await;
    cd.conn
        .attach_dossier(&d, "ccas-rodez", PERSON)
        .await
        .expect("the département attaches");
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("upkeep");
    assert_eq!(view(&cd.conn, &d).await.referent, "agent-caf@caf12");
    let partners: Vec<String> = view(&caf.conn, &d)
        .await
        .partners
        .iter()
        .map(|p| p.member.clone())
        .collect();
    assert_eq!(partners, ["caf12", "ccas-rodez", "cd12"]);
    // Members other than the référent's learn the référent, not the partners.
    let cd_dpo = c.user("cd12", "dpo", Role::Auditor).await;
    let noted = audit_events(&cd_dpo, "referent_noted").await;
    assert_eq!(noted[0]["partners"], serde_json::json!([]));
}

/// Notices and freshness taken only from the member entitled to each: a
/// member that does not hold the dossier cannot name a référent, close it,
/// report a break-glass access, or ask for freshness; nothing changes.
#[tokio::test]
async fn notices_and_freshness_from_a_member_not_entitled_are_refused() {
    use maillon_node::protocol::Notice;
    use maillon_node::service::PeerNetwork;
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", PERSON)
        .await
        .expect("the CAF attaches");
    ccas.conn
        .set_referent(&d, "agent-ccas@ccas-rodez", None)
        .await
        .expect("named");
    c.running("ccas-rodez")
        .node()
        .deliver_outbox()
        .await
        .expect("upkeep");
    let dossier: maillon_node::types::DossierId = d.parse().expect("id");
    let cd = c.peer_as("cd12");
    let caf_dpo = c.user("caf12", "dpo", Role::Auditor).await;
    let before = audit_kinds(&caf_dpo).await.len();
    fn refused<T: std::fmt::Debug>(r: Result<T, maillon_node::service::ServiceError>) -> Code {
        maillon_node::transport::status(r.expect_err("refused")).code()
    }
    let referent = Notice::Referent {
        dossier: dossier.clone(),
        member: "cd12".parse().expect("id"),
        user: "agent-cd".parse().expect("user"),
        since: c.clock.now() + 10,
        partners: vec![],
    };
    assert_eq!(
        refused(cd.notify(&c.member("caf12"), &referent).await),
        Code::PermissionDenied
    );
    let closed = Notice::Closed {
        dossier: dossier.clone(),
        reason: maillon_node::types::ClosureReason::Other,
        at: c.clock.now(),
    };
    assert_eq!(
        refused(cd.notify(&c.member("caf12"), &closed).await),
        Code::PermissionDenied
    );
    assert_eq!(
        refused(cd.freshness(&c.member("caf12"), &dossier).await),
        Code::PermissionDenied,
        "only the référent's member"
    );
    let glass = Notice::BreakGlass {
        grant: maillon_node::types::GrantId::random(),
        dossier: dossier.clone(),
        reader: "cd12".parse().expect("id"),
        sections: vec!["housing".parse().expect("section")],
        granted_at: c.clock.now(),
        until: c.clock.now() + 3600,
    };
    assert_eq!(
        refused(cd.notify(&c.member("ccas-rodez"), &glass).await),
        Code::PermissionDenied,
        "cd12 holds no part of the dossier"
    );
    assert_eq!(
        audit_kinds(&caf_dpo).await.len(),
        before,
        "nothing logged at the CAF"
    );
    assert_eq!(view(&caf.conn, &d).await.referent, "agent-ccas@ccas-rodez");
    caf.put(&d, "resources", r#"{"rsa":true}"#)
        .await
        .expect("not closed");
}

#[tokio::test]
async fn the_referent_is_named_and_handed_over_from_the_console_with_each_refusal_beside_its_field()
{
    use crate::console::{logged_in, send};
    let mut c = maillon_tests::Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("the CAF attaches");
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let (cookie, csrf) = logged_in(
        &c,
        "ccas-rodez",
        "agent-accueil",
        maillon_node::types::Role::Caseworker,
    )
    .await;
    let post = |body: String| {
        let (c, cookie, d) = (&c, cookie.clone(), d.clone());
        async move {
            send(
                c,
                "ccas-rodez",
                "POST",
                &format!("/dossiers/{d}/referent"),
                Some(&cookie),
                Some(&body),
            )
            .await
        }
    };
    let (status, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        &format!("/dossiers/{d}/referent"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    for (body, field) in [
        (
            format!("csrf={csrf}&membre=ccas-rodez&agent=personne"),
            "agent",
        ),
        (format!("csrf={csrf}&membre=ccas-rodez&agent="), "agent"),
        (
            format!("csrf={csrf}&membre=caf12&agent=agent-caf"),
            "consentement",
        ),
        (
            format!("csrf={csrf}&membre=caf12&agent=agent-caf&consentement=CNS-faux"),
            "consentement",
        ),
        (
            format!("csrf={csrf}&membre=cd12&agent=agent-cd&consentement="),
            "membre",
        ),
    ] {
        let (status, _, page) = post(body.clone()).await;
        assert_eq!(status, 422, "{body}: {page}");
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{body}: {page}"
        );
    }
    let (status, _, _) = post("membre=ccas-rodez&agent=agent-ccas".into()).await;
    assert_eq!(status, 403, "no form token");
    // Named here, then handed over to the CAF with the person's consent.
    let (status, headers, _) =
        post(format!("csrf={csrf}&membre=ccas-rodez&agent=agent-ccas")).await;
    assert_eq!(status, 303);
    assert_eq!(
        headers
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.as_str()),
        Some(format!("/dossiers/{d}").as_str())
    );
    let (status, _, page) = post(format!("csrf={csrf}&membre=ccas-rodez&agent=agent-ccas")).await;
    assert_eq!(status, 422, "already: {page}");
    let consent = ccas
        .grant(
            &d,
            &["housing"],
            &["caf12"],
            &maillon_tests::next_year(&c.clock),
        )
        .await
        .expect("consent");
    let (status, _, page) = post(format!(
        "csrf={csrf}&membre=caf12&agent=agent-caf&consentement={consent}"
    ))
    .await;
    assert_eq!(status, 303, "{page}");
    let (_, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        &format!("/dossiers/{d}"),
        Some(&cookie),
        None,
    )
    .await;
    assert!(page.contains("agent-caf (CAF de l&#39;Aveyron)"), "{page}");
    // At the CAF, which does not hold the dossier: told where to do it.
    let (caf_cookie, caf_csrf) = logged_in(
        &c,
        "caf12",
        "agent-caf-console",
        maillon_node::types::Role::Caseworker,
    )
    .await;
    let (status, _, page) = send(
        &c,
        "caf12",
        "POST",
        &format!("/dossiers/{d}/referent"),
        Some(&caf_cookie),
        Some(&format!("csrf={caf_csrf}&membre=caf12&agent=agent-caf")),
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("Référent désigné ailleurs"), "{page}");
}
