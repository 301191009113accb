//! The auditor's checks: every member's log verified, and a person's
//! access report as a printable French page, from the node library's own
//! checks (`Node::verify_federation`, `Node::access_report`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Console, when_fr};
use crate::service::ServiceError;
use crate::types::{DossierId, MemberId, Role};

#[derive(Template)]
#[template(path = "verification.html")]
struct Verification<'a> {
    partner: &'a str,
    version: &'a str,
    quand: String,
    journaux: Vec<(String, bool, u64, String)>,
    echecs: Vec<(String, Option<u64>, String)>,
    lectures: usize,
    recus: usize,
    non_verifiables: usize,
    attente: usize,
}

/// `GET /controle/verification`: every member's log, verified now (auditors).
pub(super) async fn verification(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (_, caller) = match super::session_with(&c, &headers, &[Role::Auditor], "au contrôle") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let outcome = match c.node.verify_federation(&caller).await {
        Ok(o) => o,
        Err(e) => return c.unavailable(&e, "Les journaux n'ont pas pu être vérifiés"),
    };
    let name = |m: &str| {
        m.parse::<MemberId>()
            .map_or_else(|_| m.to_owned(), |id| c.member_name(&id))
    };
    let journaux = outcome
        .nodes
        .iter()
        .map(|n| {
            let temoins = if n.cosigners.is_empty() {
                "personne encore".to_owned()
            } else {
                let who: Vec<String> = n.cosigners.iter().map(|m| c.member_name(m)).collect();
                format!(
                    "{} (jusqu'à l'événement {})",
                    who.join(", "),
                    n.witnessed_size
                )
            };
            (c.member_name(&n.member), n.verified, n.size, temoins)
        })
        .collect();
    let echecs = outcome
        .findings
        .iter()
        .map(|f| (name(&f.node), f.index, f.reason.clone()))
        .collect();
    let page = Verification {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        quand: when_fr(c.node.now()),
        journaux,
        echecs,
        lectures: outcome.reads_checked,
        recus: outcome.receipts_checked,
        non_verifiables: outcome.unchecked,
        attente: outcome.pending.len(),
    };
    let status = if outcome.failed() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    c.page(status, page.render())
}

/// A report as the page shows it.
struct Releve {
    titre: String,
    entete: Vec<String>,
    lignes: Vec<(String, bool)>,
    anomalies: Vec<String>,
}

#[derive(Template)]
#[template(path = "releve.html")]
struct RelevePage<'a> {
    partner: &'a str,
    version: &'a str,
    dossier: &'a str,
    erreur: Option<&'static str>,
    releve: Option<Releve>,
}

/// `GET /controle/releve[?dossier=…]`: a person's access report (auditors),
/// printable.
pub(super) async fn releve(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::session_with(&c, &headers, &[Role::Auditor], "au contrôle") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let typed = query.get("dossier").map_or("", |d| d.trim());
    let form = |status: StatusCode, erreur: Option<&'static str>| {
        let page = RelevePage {
            partner: &c.partner,
            version: env!("CARGO_PKG_VERSION"),
            dossier: typed,
            erreur,
            releve: None,
        };
        c.page(status, page.render())
    };
    if typed.is_empty() {
        return form(StatusCode::OK, None);
    }
    let Ok(dossier) = typed.parse::<DossierId>() else {
        return form(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Cette référence n'est pas celle d'un dossier : elle commence par DSU-."),
        );
    };
    let report = match c.node.access_report(&caller, &dossier).await {
        Ok(r) => r,
        Err(ServiceError::NotFound(_)) => {
            return form(
                StatusCode::NOT_FOUND,
                Some("Aucun membre ne détient de partie de ce dossier."),
            );
        }
        Err(e) => return c.unavailable(&e, "Le relevé n'a pas pu être établi"),
    };
    let (titre, entete) = report.header();
    let releve = Releve {
        titre,
        entete,
        lignes: report
            .lines
            .iter()
            .map(|l| (l.text.clone(), l.break_glass))
            .collect(),
        anomalies: report.anomalies.iter().map(|a| a.text.clone()).collect(),
    };
    let page = RelevePage {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        dossier: typed,
        erreur: None,
        releve: Some(releve),
    };
    c.page(StatusCode::OK, page.render())
}
