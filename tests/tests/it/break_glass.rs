//! Break-glass: a read without consent for a grave and imminent danger, by
//! a user the charter allows, for the time the charter sets; flagged in
//! both logs, listed for the auditors and reviewed; never a masked section,
//! never beyond what the reader's kind may receive.

use maillon_cli::client::Conn;
use maillon_node::clock::Clock;
use maillon_node::roster::BreakGlassRule;
use maillon_node::storage::{MetaKey, Store, Tree};
use maillon_node::types::{MemberKind, Role};
use maillon_proto::v1 as pb;
use maillon_tests::{
    Cluster, HOUSING, audit_events, audit_kinds, housing_share, next_year, refusal,
};
use tonic::Code;

/// A real sentence: what the département's caseworker says.
const WHY: &str =
    "Signalement ce soir : enfant de quatre ans seul au domicile, mère hospitalisée en urgence";

/// A federation whose charter lets the département's caseworkers break the glass for 24 h.
async fn cluster() -> Cluster {
    Cluster::start_with(|r| {
        r.charter.break_glass = Some(BreakGlassRule {
            kinds: [MemberKind::Departement].into(),
            roles: [Role::Caseworker].into(),
            hours: 24,
        });
    })
    .await
}

async fn glass(
    conn: &Conn,
    d: &str,
    sections: &[&str],
    owner: &str,
    why: &str,
) -> Result<Vec<pb::ViewedSection>, tonic::Status> {
    conn.read_shares(d, sections, owner, "protection de l'enfance", Some(why))
        .await
}

async fn accesses(auditor: &Conn, pending: bool) -> Vec<pb::BreakGlass> {
    auditor
        .api()
        .list_break_glass(auditor.req(pb::ListBreakGlassRequest { pending }))
        .await
        .expect("list")
        .into_inner()
        .accesses
}

async fn review(auditor: &Conn, id: &str, comment: &str) -> Result<(), tonic::Status> {
    auditor
        .api()
        .review_break_glass(auditor.req(pb::ReviewBreakGlassRequest {
            id: id.into(),
            comment: comment.into(),
        }))
        .await
        .map(drop)
}

#[tokio::test]
async fn the_departement_breaks_the_glass_the_access_is_flagged_ends_and_is_reviewed() {
    let c = cluster().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "household", r#"{"enfants":1}"#)
        .await
        .expect("put");
    let cd = c.desk("cd12", "agent-cd").await;

    // Without break-glass: no consent, refused.
    let (code, why) = refusal(cd.read(&d, "housing", "ccas-rodez").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "no_consent"));

    let read = glass(&cd.conn, &d, &["household", "housing"], "ccas-rodez", WHY)
        .await
        .expect("break-glass read");
    assert_eq!(read.len(), 2);
    assert!(
        read.iter()
            .all(|v| v.status == "ok" && v.basis == "break_glass")
    );
    assert_eq!(read[1].json, HOUSING);
    let grant = read[0].basis_id.clone();
    assert!(grant.starts_with("BGL-"));
    assert_eq!(read[1].basis_id, grant, "one access for the request");
    let share = housing_share(&d, "ccas-rodez");
    assert_eq!(
        c.group_members("ccas-rodez", &share).await,
        ["ccas-rodez", "cd12"]
    );

    // Both logs flag it; the owner logged one grant and one entry per section.
    let owner_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let granted = audit_events(&owner_dpo, "break_glass_granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["justification"], WHY);
    assert_eq!(granted[0]["reader"], "cd12");
    let reads = audit_events(&owner_dpo, "read_granted").await;
    assert_eq!(reads.len(), 2);
    assert!(reads.iter().all(|r| r["break_glass"] == grant.as_str()));
    let reader_dpo = c.user("cd12", "dpo", Role::Auditor).await;
    let receipts = audit_events(&reader_dpo, "receipt_logged").await;
    assert!(receipts.iter().all(|r| r["break_glass"] == grant.as_str()));

    // A second break-glass read within the time reuses the access.
    glass(&cd.conn, &d, &["housing"], "ccas-rodez", WHY)
        .await
        .expect("again");
    assert_eq!(
        audit_events(&owner_dpo, "break_glass_granted").await.len(),
        1
    );
    // Another caseworker of the département breaks the glass for itself,
    // with its own justification logged.
    let colleague = c.desk("cd12", "astreinte").await;
    let other_why =
        "Appel de la gendarmerie : vérifier la situation du foyer avant une visite ce soir";
    glass(&colleague.conn, &d, &["housing"], "ccas-rodez", other_why)
        .await
        .expect("its own access");
    let granted = audit_events(&owner_dpo, "break_glass_granted").await;
    assert_eq!(granted.len(), 2);
    assert_eq!(granted[1]["user"], "astreinte");
    assert_eq!(granted[1]["justification"], other_why);

    // The person's access report shows it.
    let report = c.access_report(&owner_dpo, &d).await;
    let text = report.text();
    assert!(text.contains("ACCÈS EN URGENCE"), "{text}");
    assert!(text.contains(WHY), "{text}");
    assert!(report.lines.iter().any(|l| l.break_glass), "{text}");

    // The metrics count what the owner's auditors have to review.
    let pending = accesses(&owner_dpo, true).await.len();
    assert_eq!(pending, 2);
    let snapshot = c.running("ccas-rodez").node().snapshot().await;
    assert_eq!(snapshot.expect("snapshot").break_glass_pending, 2);

    // At the end of the charter's 24 h, upkeep logs the end and removes the reader.
    c.clock.advance(25 * 3600);
    let node = c.running("ccas-rodez").node();
    assert_eq!(node.end_break_glass().await.expect("upkeep"), 2);
    assert_eq!(node.end_break_glass().await.expect("again"), 0);
    assert_eq!(c.group_members("ccas-rodez", &share).await, ["ccas-rodez"]);
    assert_eq!(audit_events(&owner_dpo, "break_glass_ended").await.len(), 2);

    // The auditors review it, once, with a real comment.
    let pending = accesses(&owner_dpo, true).await;
    assert_eq!(pending.len(), 2);
    let first = pending.iter().find(|a| a.id == grant).expect("listed");
    assert!(first.ended);
    assert_eq!(first.justification, WHY);
    let (code, _) = refusal(review(&owner_dpo, &grant, "ok").await);
    assert_eq!(code, Code::InvalidArgument);
    let caseworker = c.user("ccas-rodez", "cw", Role::Caseworker).await;
    let (code, why) = refusal(review(&caseworker, &grant, "contrôle fait avec le service").await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "role"));
    review(
        &owner_dpo,
        &grant,
        "Signalement confirmé par la CRIP, accès proportionné au danger",
    )
    .await
    .expect("reviewed");
    let (code, _) = refusal(
        review(
            &owner_dpo,
            &grant,
            "deuxième contrôle du même accès en urgence",
        )
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        accesses(&owner_dpo, true).await.len(),
        1,
        "the colleague's waits"
    );
    let all = accesses(&owner_dpo, false).await;
    let first = all.iter().find(|a| a.id == grant).expect("listed");
    assert_eq!(first.reviewed_by, "dpo");
    let (code, _) = refusal(
        review(
            &owner_dpo,
            "BGL-0000000000000000000000000Z",
            "contrôle d'un accès inconnu ici",
        )
        .await,
    );
    assert_eq!(code, Code::NotFound);
}

#[tokio::test]
async fn break_glass_is_refused_without_the_charter_a_real_sentence_or_beyond_a_mask() {
    let c = cluster().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.put(&d, "household", r#"{"enfants":1}"#)
        .await
        .expect("put");
    ccas.put(&d, "health", r#"{"suivi":"oui"}"#)
        .await
        .expect("put");
    let cd = c.desk("cd12", "agent-cd").await;
    let owner_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;

    // The CAF's caseworkers may not break the glass: the charter names the département only.
    let (code, why) = refusal(glass(&caf.conn, &d, &["housing"], "ccas-rodez", WHY).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "break_glass_not_allowed")
    );
    // An empty, short or placeholder justification never leaves the reader's node.
    let before = audit_kinds(&owner_dpo).await.len();
    for bad in [
        "   ",
        "urgence",
        "urgence urgence urgence urgence urgence urgence urgence",
    ] {
        let (code, _) = refusal(glass(&cd.conn, &d, &["housing"], "ccas-rodez", bad).await);
        assert_eq!(code, Code::InvalidArgument, "{bad:?}");
    }
    assert_eq!(audit_kinds(&owner_dpo).await.len(), before);
    // Never a section the département's kind may not receive.
    let (code, why) = refusal(glass(&cd.conn, &d, &["health"], "ccas-rodez", WHY).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "charter"));
    // Never a section the person masked from everyone.
    let mut mask = pb::GrantConsentRequest {
        dossier: d.clone(),
        masked: vec!["household".into()],
        purpose: "la personne masque sa composition familiale".into(),
        until: next_year(&c.clock),
        collection: "oral".into(),
        ..Default::default()
    };
    ccas.conn
        .api()
        .grant_consent(ccas.conn.req(mask.clone()))
        .await
        .expect("mask");
    let read = glass(&cd.conn, &d, &["household", "housing"], "ccas-rodez", WHY)
        .await
        .expect("housing opens, household does not");
    assert_eq!(read[0].status, "refused");
    assert_eq!(read[0].reason, "masked");
    assert_eq!(read[1].status, "ok");
    let granted = audit_events(&owner_dpo, "break_glass_granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["sections"], serde_json::json!(["housing"]));
    // A masked section alone: refused, no access granted.
    let (code, why) = refusal(glass(&cd.conn, &d, &["household"], "ccas-rodez", WHY).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "masked"));
    assert_eq!(
        audit_events(&owner_dpo, "break_glass_granted").await.len(),
        1
    );
    mask.masked.clear();

    // A charter without a break-glass rule refuses everyone.
    let plain = Cluster::start().await;
    let (_o, _r, d2) = plain.housing_at_the_ccas().await;
    let cd2 = plain.desk("cd12", "agent-cd").await;
    let (code, why) = refusal(glass(&cd2.conn, &d2, &["housing"], "ccas-rodez", WHY).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::PermissionDenied, "break_glass_not_allowed")
    );
}

#[tokio::test]
async fn a_break_glass_access_and_its_review_the_store_lost_come_back_from_the_log() {
    let mut c = cluster().await;
    let (_ccas, _caf, d) = c.housing_at_the_ccas().await;
    let cd = c.desk("cd12", "agent-cd").await;
    let mark = c.running("ccas-rodez").node().audit_log().size();
    let read = glass(&cd.conn, &d, &["housing"], "ccas-rodez", WHY)
        .await
        .expect("break-glass read");
    let grant = read[0].basis_id.clone();
    let owner_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    review(
        &owner_dpo,
        &grant,
        "Signalement confirmé, accès proportionné au danger",
    )
    .await
    .expect("reviewed");

    let clock: std::sync::Arc<dyn Clock> = c.clock.clone();
    let node = c.fed.node_mut("ccas-rodez");
    node.stop().await;
    {
        let store = Store::open(&node.dir.join("store")).expect("store");
        let key = format!("{d}/{grant}");
        assert!(
            store
                .get::<serde_json::Value>(Tree::BreakGlass, &key)
                .expect("get")
                .is_some()
        );
        store.remove(Tree::BreakGlass, &key).expect("remove");
        store.set_meta(MetaKey::Applied, &mark).expect("mark");
        store.flush().expect("flush");
    }
    node.start(clock).await.expect("restart");
    let back = accesses(&owner_dpo, false).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, grant);
    assert_eq!(back[0].justification, WHY);
    assert_eq!(back[0].reviewed_by, "dpo", "the review came back too");
    // And it still ends on time.
    c.clock.advance(25 * 3600);
    assert_eq!(
        c.running("ccas-rodez")
            .node()
            .end_break_glass()
            .await
            .expect("upkeep"),
        1
    );
}

#[tokio::test]
async fn break_glass_from_the_console_warns_requires_a_sentence_and_is_reviewed_there() {
    use crate::console::{logged_in, send};
    let mut c = cluster().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let _ = ccas;
    c.with_console("cd12").await;
    c.with_console("ccas-rodez").await;
    let (cookie, csrf) = logged_in(&c, "cd12", "agent-cd", Role::Caseworker).await;
    let (status, _, page) = send(
        &c,
        "cd12",
        "GET",
        &format!("/dossiers/{d}/urgence"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Attention :") && page.contains("sans consentement"),
        "{page}"
    );
    let post = |body: String| {
        let (c, cookie, d) = (&c, cookie.clone(), d.clone());
        async move {
            send(
                c,
                "cd12",
                "POST",
                &format!("/dossiers/{d}/urgence"),
                Some(&cookie),
                Some(&body),
            )
            .await
        }
    };
    // Each missing piece is told beside its field; nothing is read.
    let (status, _, page) = post(format!("csrf={csrf}&detenteur=&justification=urgent")).await;
    assert_eq!(status, 422);
    for field in ["detenteur", "partie", "justification"] {
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{field}: {page}"
        );
    }
    let (status, _, _) = post(format!(
        "detenteur=ccas-rodez&partie=housing&justification={}",
        crate::console::form_value(WHY)
    ))
    .await;
    assert_eq!(status, 403, "no form token");
    let owner_dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    assert!(
        audit_events(&owner_dpo, "break_glass_granted")
            .await
            .is_empty()
    );

    // Read, with the justification logged at the owner.
    let (status, _, page) = post(format!(
        "csrf={csrf}&detenteur=ccas-rodez&partie=housing&justification={}",
        crate::console::form_value(WHY)
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Parties lues en urgence") && page.contains("hébergée chez un tiers"),
        "{page}"
    );
    let granted = audit_events(&owner_dpo, "break_glass_granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["justification"], WHY);

    // The owner's auditor reviews it in its console.
    let (caseworker, _) = logged_in(&c, "ccas-rodez", "agent-ccas-console", Role::Caseworker).await;
    let (status, _, _) = send(
        &c,
        "ccas-rodez",
        "GET",
        "/controle/urgences",
        Some(&caseworker),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (auditor, audit_csrf) = logged_in(&c, "ccas-rodez", "dpo-console", Role::Auditor).await;
    let (_, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        "/controle/urgences",
        Some(&auditor),
        None,
    )
    .await;
    assert!(
        page.contains(WHY.split(':').next().expect("words")),
        "{page}"
    );
    let grant = granted[0]["grant"].as_str().expect("grant id").to_owned();
    let review = |comment: &str| {
        let (c, auditor, grant) = (&c, auditor.clone(), grant.clone());
        let body = format!(
            "csrf={audit_csrf}&commentaire={}",
            crate::console::form_value(comment)
        );
        async move {
            send(
                c,
                "ccas-rodez",
                "POST",
                &format!("/controle/urgences/{grant}"),
                Some(&auditor),
                Some(&body),
            )
            .await
        }
    };
    let (status, _, page) = review("ok").await;
    assert_eq!(status, 422, "{page}");
    let (status, _, _) = review(
        "Accès justifié : signalement de la gendarmerie confirmé le lendemain par le service",
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, page) = review(
        "Accès justifié : signalement de la gendarmerie confirmé le lendemain par le service",
    )
    .await;
    assert_eq!(status, 409, "reviewed once: {page}");
    assert_eq!(
        audit_events(&owner_dpo, "break_glass_reviewed").await.len(),
        1
    );
    let (_, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        "/controle/urgences",
        Some(&auditor),
        None,
    )
    .await;
    assert!(page.contains("Aucun accès en urgence"), "{page}");
}

#[tokio::test]
async fn break_glass_from_the_console_is_refused_in_french_where_the_charter_does_not_allow_it() {
    use crate::console::{logged_in, send};
    let mut c = cluster().await;
    let (_ccas, _caf, d) = c.housing_at_the_ccas().await;
    c.with_console("caf12").await;
    let (cookie, csrf) = logged_in(&c, "caf12", "agent-caf-console", Role::Caseworker).await;
    let body = format!(
        "csrf={csrf}&detenteur=ccas-rodez&partie=housing&justification={}",
        crate::console::form_value(WHY)
    );
    let (status, _, page) = send(
        &c,
        "caf12",
        "POST",
        &format!("/dossiers/{d}/urgence"),
        Some(&cookie),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("La charte du GIP ne permet pas"), "{page}");
    assert!(!page.contains("hébergée"));
}
