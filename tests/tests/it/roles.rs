//! Every client RPC against every role: who may call what, and that a call
//! refused for its role changes nothing, not even the log.

use maillon_cli::client::Conn;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, next_year};
use tonic::Code;

/// The client RPCs, each made with valid arguments so that only the role varies.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    WhoAmI,
    AddUser,
    RemoveUser,
    UpdateUser,
    OpenDossier,
    PutSection,
    GetSection,
    GrantConsent,
    RevokeConsent,
    ShowConsent,
    ListConsents,
    ReadShare,
    AuditTail,
    AuditCheckpoint,
    AuditInclusion,
    AuditWitness,
    ListBreakGlass,
    Outbox,
    PublishAid,
    SearchAids,
    GetAid,
    MatchAids,
    Orient,
    ListOrientations,
    ListAlerts,
    ListCommissions,
    Indicators,
}

/// What the calls need: a dossier with a section at the CCAS, consents to
/// revoke, users to remove.
struct World {
    dossier: String,
    consents: std::sync::Mutex<Vec<String>>,
    spare_users: std::sync::Mutex<Vec<String>>,
}

/// Makes the call as `conn`; `Code::Ok` when it succeeds.
async fn call(rpc: Rpc, conn: &Conn, w: &World, serial: usize) -> Code {
    let mut api = conn.api();
    let d = w.dossier.clone();
    let result = match rpc {
        Rpc::WhoAmI => api.who_am_i(conn.req(pb::WhoAmIRequest {})).await.map(drop),
        Rpc::AddUser => api
            .add_user(conn.req(pb::AddUserRequest {
                name: format!("new-{serial}"),
                role: "caseworker".into(),
                valid_days: 0,
            }))
            .await
            .map(drop),
        Rpc::RemoveUser => {
            let name = w
                .spare_users
                .lock()
                .expect("lock")
                .pop()
                .expect("a spare user");
            api.remove_user(conn.req(pb::RemoveUserRequest { name }))
                .await
                .map(drop)
        }
        Rpc::UpdateUser => api
            .update_user(conn.req(pb::UpdateUserRequest {
                name: "agent-ccas".into(),
                role: String::new(),
                identity: Some(format!("agent-{serial}@ccas-rodez.example")),
            }))
            .await
            .map(drop),
        Rpc::OpenDossier => api
            .open_dossier(conn.req(pb::OpenDossierRequest {
                given_name: "Camille".into(),
                family_name: "Martin".into(),
                birth_date: "1984-03-12".into(),
            }))
            .await
            .map(drop),
        Rpc::PutSection => api
            .put_section(conn.req(pb::PutSectionRequest {
                dossier: d,
                section: "housing".into(),
                json: r#"{"loyer":450}"#.into(),
            }))
            .await
            .map(drop),
        Rpc::GetSection => api
            .get_section(conn.req(pb::GetSectionRequest {
                dossier: d,
                section: "housing".into(),
            }))
            .await
            .map(drop),
        Rpc::GrantConsent => api
            .grant_consent(conn.req(pb::GrantConsentRequest {
                dossier: d,
                sections: vec!["housing".into()],
                audience: vec!["caf12".into()],
                purpose: "coordination du parcours".into(),
                until: "2099-12-31".into(),
                collection: "oral".into(),
                ..Default::default()
            }))
            .await
            .map(drop),
        Rpc::RevokeConsent => {
            let consent = w.consents.lock().expect("lock").pop().expect("a consent");
            api.revoke_consent(conn.req(pb::RevokeConsentRequest { consent }))
                .await
                .map(drop)
        }
        Rpc::ShowConsent => {
            let consent = w.consents.lock().expect("lock")[0].clone();
            api.show_consent(conn.req(pb::ShowConsentRequest { consent }))
                .await
                .map(drop)
        }
        Rpc::ListConsents => api
            .list_consents(conn.req(pb::ListConsentsRequest { dossier: d }))
            .await
            .map(drop),
        Rpc::ReadShare => api
            .read_share(conn.req(pb::ReadShareRequest {
                dossier: d,
                section: "housing".into(),
                owner: "ccas-rodez".into(),
                purpose: "instruction d'un droit".into(),
                ..Default::default()
            }))
            .await
            .map(drop),
        Rpc::AuditTail => api
            .audit_tail(conn.req(pb::AuditTailRequest {
                limit: 10,
                from: None,
            }))
            .await
            .map(drop),
        Rpc::AuditCheckpoint => api
            .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
            .await
            .map(drop),
        Rpc::AuditInclusion => api
            .audit_inclusion(conn.req(pb::AuditProofRequest { first: 0, size: 1 }))
            .await
            .map(drop),
        Rpc::AuditWitness => api
            .audit_witness(conn.req(pb::AuditWitnessRequest {}))
            .await
            .map(drop),
        Rpc::ListBreakGlass => api
            .list_break_glass(conn.req(pb::ListBreakGlassRequest { pending: false }))
            .await
            .map(drop),
        Rpc::Outbox => api.outbox(conn.req(pb::OutboxRequest {})).await.map(drop),
        Rpc::PublishAid => api
            .publish_aid(conn.req(pb::PublishAidRequest {
                service: format!(
                    r#"{{"id":"aide-{serial}","name":"Aide","description":"","organization":{{"name":"CCAS"}}}}"#
                )
                .into_bytes(),
                withdraw: String::new(),
            }))
            .await
            .map(drop),
        Rpc::SearchAids => api
            .search_aids(conn.req(pb::SearchAidsRequest::default()))
            .await
            .map(drop),
        Rpc::GetAid => api
            .get_aid(conn.req(pb::GetAidRequest {
                member: "ccas-rodez".into(),
                service: "aide-first".into(),
            }))
            .await
            .map(drop),
        Rpc::MatchAids => api
            .match_aids(conn.req(pb::MatchAidsRequest {
                dossier: d,
                purpose: "recherche des aides".into(),
            }))
            .await
            .map(drop),
        Rpc::Orient => api
            .orient(conn.req(pb::OrientRequest {
                dossier: d,
                to: "caf12".into(),
                service: "aide-caf".into(),
                reason: "aide au loyer".into(),
                consent: String::new(),
            }))
            .await
            .map(drop),
        Rpc::ListOrientations => api
            .list_orientations(conn.req(pb::ListOrientationsRequest::default()))
            .await
            .map(drop),
        Rpc::ListAlerts => api
            .list_alerts(conn.req(pb::ListAlertsRequest::default()))
            .await
            .map(drop),
        Rpc::ListCommissions => api
            .list_commissions(conn.req(pb::ListCommissionsRequest {}))
            .await
            .map(drop),
        Rpc::Indicators => api
            .indicators(conn.req(pb::IndicatorsRequest {
                period: "2026-Q4".into(),
            }))
            .await
            .map(drop),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn every_client_rpc_answers_each_role_as_the_table_says() {
    use Code::{Ok as Yes, PermissionDenied as No, Unauthenticated as Who};
    // admin, caseworker, auditor, no valid token
    let table = [
        (Rpc::WhoAmI, [Yes, Yes, Yes, Who]),
        (Rpc::AddUser, [Yes, No, No, Who]),
        (Rpc::RemoveUser, [Yes, No, No, Who]),
        (Rpc::UpdateUser, [Yes, No, No, Who]),
        (Rpc::OpenDossier, [No, Yes, No, Who]),
        (Rpc::PutSection, [No, Yes, No, Who]),
        (Rpc::GetSection, [No, Yes, No, Who]),
        (Rpc::GrantConsent, [No, Yes, No, Who]),
        (Rpc::ShowConsent, [No, Yes, Yes, Who]),
        (Rpc::RevokeConsent, [No, Yes, No, Who]),
        (Rpc::ListConsents, [No, Yes, Yes, Who]),
        (Rpc::ReadShare, [No, Yes, No, Who]),
        (Rpc::AuditTail, [Yes, No, Yes, Who]),
        (Rpc::AuditCheckpoint, [Yes, No, Yes, Who]),
        (Rpc::AuditInclusion, [Yes, No, Yes, Who]),
        (Rpc::AuditWitness, [No, No, Yes, Who]),
        (Rpc::ListBreakGlass, [No, No, Yes, Who]),
        (Rpc::Outbox, [Yes, No, No, Who]),
        (Rpc::PublishAid, [Yes, No, No, Who]),
        (Rpc::SearchAids, [Yes, Yes, Yes, Who]),
        (Rpc::GetAid, [Yes, Yes, Yes, Who]),
        (Rpc::MatchAids, [No, Yes, No, Who]),
        (Rpc::Orient, [No, Yes, No, Who]),
        (Rpc::ListOrientations, [No, Yes, Yes, Who]),
        (Rpc::ListAlerts, [No, Yes, No, Who]),
        (Rpc::ListCommissions, [No, Yes, Yes, Who]),
        (Rpc::Indicators, [Yes, No, Yes, Who]),
    ];
    let c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let dossier = ccas.open().await.expect("open");
    ccas.put(&dossier, "housing", r#"{"loyer":450}"#)
        .await
        .expect("put");
    let mut consents = Vec::new();
    // One shown, four popped by RevokeConsent's callers.
    for _ in 0..5 {
        consents.push(
            ccas.grant(&dossier, &["housing"], &["caf12"], &next_year(&c.clock))
                .await
                .expect("grant"),
        );
    }
    c.admin("ccas-rodez")
        .api()
        .publish_aid(c.admin("ccas-rodez").req(pb::PublishAidRequest {
            service: br#"{"id":"aide-first","name":"Aide","description":"","organization":{"name":"CCAS"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("a service to show");
    c.admin("caf12")
        .api()
        .publish_aid(c.admin("caf12").req(pb::PublishAidRequest {
            service: br#"{"id":"aide-caf","name":"Aide","description":"","organization":{"name":"CAF"}}"#.to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("a service to orient to");
    let mut spare_users = Vec::new();
    for i in 0..4 {
        let name = format!("spare-{i}");
        c.user("ccas-rodez", &name, Role::Caseworker).await;
        spare_users.push(name);
    }
    let w = World {
        dossier,
        consents: std::sync::Mutex::new(consents),
        spare_users: std::sync::Mutex::new(spare_users),
    };
    let nobody = {
        let mut p = c.node("ccas-rodez").admin.clone();
        p.token = "mlt_not-a-token-of-this-node".into();
        Conn::new(&p).expect("conn")
    };
    // ReadShare is a call to the reader's own node: the roles are at caf12.
    let at = |rpc: Rpc| {
        if matches!(rpc, Rpc::ReadShare) {
            "caf12"
        } else {
            "ccas-rodez"
        }
    };
    let mut serial = 0;
    for (rpc, expected) in table {
        let node = at(rpc);
        let callers = [
            c.node(node).admin().expect("admin"),
            c.user(node, &format!("cw-{serial}"), Role::Caseworker)
                .await,
            c.user(node, &format!("dpo-{serial}"), Role::Auditor).await,
            if node == "ccas-rodez" {
                nobody.clone()
            } else {
                let mut p = c.node(node).admin.clone();
                p.token = "mlt_not-a-token-of-this-node".into();
                Conn::new(&p).expect("conn")
            },
        ];
        let log = c.running(node).node().audit_log();
        for (conn, want) in callers.iter().zip(expected) {
            serial += 1;
            let before = log.size();
            let got = call(rpc, conn, &w, serial).await;
            assert_eq!(got, want, "{rpc:?} as caller #{}", serial % 4);
            if want != Yes {
                assert_eq!(log.size(), before, "{rpc:?}: a refused call logs nothing");
            }
        }
    }
}
