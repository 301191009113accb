//! Reads racing a revocation, a caseworker hanging up in the middle of a
//! grant, and local reads: what happens at the same time, or half way,
//! still leaves one true story in the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, HOUSING, audit_kinds, next_year, refusal};
use tokio::time::Instant;
use tonic::Code;

#[tokio::test]
async fn after_a_revocation_returns_no_read_is_answered_on_the_old_decision() {
    let c = Cluster::start().await;
    let (ccas, caf, d, consent) = c.housing_read_by_the_caf().await;

    let stop = Arc::new(AtomicBool::new(false));
    let revoked_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (conn, d, stop, revoked_at) = (
            caf.conn.clone(),
            d.clone(),
            stop.clone(),
            revoked_at.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut late_answers = 0;
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = conn
                    .read_share(&d, "housing", "ccas-rodez", "instruction")
                    .await;
                reads += 1;
                let after_revocation = revoked_at
                    .lock()
                    .expect("lock")
                    .is_some_and(|r| started > r);
                if after_revocation {
                    match answered {
                        Ok(_) => late_answers += 1,
                        Err(s) => assert_eq!(s.code(), Code::PermissionDenied, "{s:?}"),
                    }
                }
            }
            (reads, late_answers)
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    ccas.revoke(&consent).await.expect("revoke");
    *revoked_at.lock().expect("lock") = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (reads, late) = r.await.expect("reader");
        assert_eq!(
            late, 0,
            "a read that started after the revocation returned was answered"
        );
        total += reads;
    }
    assert!(
        total > 8,
        "the readers raced the revocation ({total} reads)"
    );

    // In the owner's log, every granted read comes before the revocation.
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let kinds = audit_kinds(&auditor).await;
    let revoked = kinds
        .iter()
        .position(|k| k == "consent_revoked")
        .expect("revocation logged");
    let last_grant = kinds
        .iter()
        .rposition(|k| k == "read_granted")
        .expect("reads");
    assert!(last_grant < revoked, "{kinds:?}");
}

#[tokio::test]
async fn a_caseworker_hanging_up_in_the_middle_of_a_grant_leaves_it_whole_or_absent() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let owner = c.running("ccas-rodez").node().clone();
    let list = || async {
        ccas.conn
            .api()
            .list_consents(
                ccas.conn
                    .req(pb::ListConsentsRequest { dossier: d.clone() }),
            )
            .await
            .expect("list")
            .into_inner()
            .consents
            .len()
    };
    let mut landed_after_hang_up = false;
    let mut patience = Duration::from_micros(500);
    while !landed_after_hang_up && patience < Duration::from_secs(2) {
        let until = next_year(&c.clock);
        let grant = ccas.grant(&d, &["housing"], &["caf12"], &until);
        let hung_up = tokio::time::timeout(patience, grant).await.is_err();
        patience *= 2;
        // The node finishes what it started: poll until it settles.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let listed = list().await;
            let logged = audit_kinds(&auditor)
                .await
                .iter()
                .filter(|k| *k == "consent_granted")
                .count();
            let members = owner
                .share_members(&maillon_tests::housing_share(&d, "ccas-rodez"))
                .await
                .unwrap_or_default();
            let caf_in = members.iter().any(|m| m.as_str() == "caf12");
            if listed == logged && (listed == 0 || caf_in) {
                landed_after_hang_up |= hung_up && listed > 0;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a half-done grant: {listed} listed, {logged} logged, caf12 in group: {caf_in}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        landed_after_hang_up,
        "a grant whose caseworker hung up still landed whole"
    );
}

#[tokio::test]
async fn local_reads_of_personal_data_are_logged_where_they_happen() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await.len();
    assert_eq!(ccas.get(&d, "housing").await.expect("get"), HOUSING);
    auditor
        .api()
        .list_consents(auditor.req(pb::ListConsentsRequest { dossier: d.clone() }))
        .await
        .expect("an auditor lists");
    let kinds = audit_kinds(&auditor).await;
    assert_eq!(&kinds[before..], ["section_read", "consents_listed"]);
    // A refused local read leaves nothing.
    let (code, _) = refusal(ccas.get(&d, "resources").await);
    assert_eq!(code, Code::NotFound);
    assert_eq!(audit_kinds(&auditor).await.len(), kinds.len());
    // And the person's access report tells both, in French.
    let report = c.access_report(&auditor, &d).await.text();
    assert!(
        report.contains("CCAS de Rodez a consulté la section « logement » dans son propre dossier"),
        "{report}"
    );
    assert!(
        report.contains("CCAS de Rodez a consulté la liste de vos consentements"),
        "{report}"
    );
    // The charter does not allow agents' names: only their institution.
    assert!(!report.contains("agent-ccas"), "{report}");
}
