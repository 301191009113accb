//! The GIP's shared work in the console: the federation's indicators for a
//! period (admins and auditors), and the coordination commissions (the
//! dossier's référent convenes and closes them; participants and auditors
//! look).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dossiers::{dossier_of, dossier_refused};
use super::{Console, caseworker, see_other, session_with, when_fr, with_token};
use crate::protocol::CommissionAction;
use crate::service::ServiceError;
use crate::types::{MemberId, Role};

#[derive(Template)]
#[template(path = "indicateurs.html")]
struct Indicateurs<'a> {
    partner: &'a str,
    version: &'a str,
    periode: String,
    seuil: u32,
    membres: Vec<String>,
    absents: Vec<String>,
    lignes: Vec<(String, String, Vec<String>, String)>,
    territoires: Vec<(String, String, Vec<String>, String)>,
    erreur: Option<String>,
}

/// `GET /indicateurs?periode=2026-Q4`: the federation's indicators
/// (admins, auditors).
pub(super) async fn indicateurs(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match session_with(
        &c,
        &headers,
        &[Role::Admin, Role::Auditor],
        "aux administrateurs et aux auditeurs",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let periode = q.get("periode").map_or("", |p| p.trim()).to_owned();
    let mut page = Indicateurs {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        periode: periode.clone(),
        seuil: 0,
        membres: Vec::new(),
        absents: Vec::new(),
        lignes: Vec::new(),
        territoires: Vec::new(),
        erreur: None,
    };
    if periode.is_empty() {
        return c.page(StatusCode::OK, page.render());
    }
    match c.node.federation_indicators(&caller, &periode).await {
        Ok(t) => {
            page.seuil = t.threshold;
            page.membres = t.members.iter().map(|m| c.member_name(m)).collect();
            page.absents = t.missing.iter().map(|m| c.member_name(m)).collect();
            for r in &t.rows {
                let line = |detail: String| {
                    (
                        r.indicator.clone(),
                        detail,
                        r.members.iter().map(ToString::to_string).collect(),
                        r.total.to_string(),
                    )
                };
                if r.territory.is_empty() {
                    page.lignes.push(line(r.by.clone()));
                } else if r.territory == crate::indicators::UNKNOWN_TERRITORY {
                    page.territoires.push(line("non renseigné".into()));
                } else {
                    page.territoires.push(line(r.territory.clone()));
                }
            }
            c.page(StatusCode::OK, page.render())
        }
        Err(ServiceError::Invalid(_)) => {
            page.erreur = Some("Une période s'écrit 2026, 2026-Q4 ou 2026-12.".into());
            c.page(StatusCode::UNPROCESSABLE_ENTITY, page.render())
        }
        Err(e) => c.unavailable(&e, "Indicateurs indisponibles"),
    }
}

/// A commission as a section of the list.
struct Ligne {
    id: String,
    dossier: String,
    convoquee_par: String,
    participants: String,
    ordre_du_jour: String,
    le: String,
    parties: String,
    decisions: Vec<String>,
    close: Option<String>,
    clore: bool,
}

#[derive(Template)]
#[template(path = "commissions.html")]
struct Commissions<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    membres: Vec<(String, String)>,
    lignes: Vec<Ligne>,
}

/// `GET /commissions`: those convened here or to which this node was
/// invited (caseworkers; auditors look).
pub(super) async fn commissions(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (session, caller) = match session_with(
        &c,
        &headers,
        &[Role::Caseworker, Role::Auditor],
        "aux travailleurs sociaux et aux auditeurs",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all = match c.node.list_commissions(&caller).await {
        Ok(all) => all,
        Err(e) => return c.unavailable(&e, "Commissions indisponibles"),
    };
    let me = c.node.member().clone();
    let lignes = all
        .iter()
        .map(|r| {
            let k = &r.commission;
            Ligne {
                id: k.id.to_string(),
                dossier: k.dossier.to_string(),
                convoquee_par: c.member_name(&k.convener),
                participants: k
                    .participants
                    .iter()
                    .map(|m| c.member_name(m))
                    .collect::<Vec<_>>()
                    .join(", "),
                ordre_du_jour: k.agenda.clone(),
                le: k.meets_on.to_string(),
                parties: k
                    .sections
                    .iter()
                    .map(|s| super::sections::section_fr(*s))
                    .collect::<Vec<_>>()
                    .join(", "),
                decisions: r
                    .minutes
                    .iter()
                    .flat_map(|(m, _)| &m.decisions)
                    .map(|d| format!("{} : {} — avant le {}", c.member_name(&d.who), d.what, d.by))
                    .collect(),
                close: r.minutes.as_ref().map(|(m, _)| when_fr(m.closed_at)),
                clore: caller.role == Role::Caseworker && k.convener == me && r.minutes.is_none(),
            }
        })
        .collect();
    let page = Commissions {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        membres: c.active_members(true),
        lignes,
    };
    c.page(StatusCode::OK, page.render())
}

/// `POST /commissions/{id}`: closes a commission convened here with up to
/// three decisions (the dossier's référent).
pub(super) async fn clore(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let absent = || {
        c.error(
            StatusCode::NOT_FOUND,
            "Commission introuvable",
            "Aucune commission réunie ici ne porte cette référence.",
        )
    };
    let Ok(id) = id.parse() else {
        return absent();
    };
    let mut decisions = Vec::new();
    for n in 1..=3 {
        let field = |name: &str| form.get(&format!("{name}-{n}")).map_or("", |v| v.trim());
        if field("quoi").is_empty() {
            continue;
        }
        let (Ok(who), Ok(by)) = (field("qui").parse::<MemberId>(), field("avant").parse()) else {
            return c.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Décision incomplète",
                "Chaque décision dit qui fait quoi et avant quelle date (AAAA-MM-JJ).",
            );
        };
        decisions.push(CommissionAction {
            who,
            what: field("quoi").to_owned(),
            by,
        });
    }
    match c.node.close_commission(&caller, &id, decisions).await {
        Ok(_) => see_other("/commissions"),
        Err(ServiceError::NotFound(_)) => absent(),
        Err(ServiceError::Invalid(_)) => c.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Décision refusée",
            "Une décision concerne le partenaire qui réunit la commission ou un participant, en 300 caractères au plus.",
        ),
        Err(ServiceError::NotEntitled(_)) => {
            super::refused_role(&c, "au référent de parcours du dossier")
        }
        Err(ServiceError::State(_)) => c.error(
            StatusCode::CONFLICT,
            "Commission close",
            "Le compte rendu de cette commission est déjà arrêté.",
        ),
        Err(e) => c.unavailable(&e, "La commission n'a pas pu être close"),
    }
}

#[derive(Template)]
#[template(path = "reunir.html")]
struct Reunir<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    membres: Vec<(String, String)>,
    erreur: Option<String>,
}

fn reunir_page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    dossier: &str,
    erreur: Option<String>,
) -> Response {
    let page = Reunir {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        dossier,
        membres: c.active_members(false),
        erreur,
    };
    c.page(status, page.render())
}

/// `GET /dossiers/{id}/commission`: the form to convene one.
pub(super) async fn reunir(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match dossier_of(&c, &id) {
        Ok(d) => reunir_page(&c, StatusCode::OK, &session.csrf, d.as_str(), None),
        Err(r) => r,
    }
}

/// `POST /dossiers/{id}/commission`: convenes it (the dossier's référent).
pub(super) async fn reunir_envoye(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields: HashMap<String, String> = form.iter().cloned().collect();
    let (session, caller) = match with_token(&c, &fields, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let again = |erreur: &str| {
        reunir_page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            dossier.as_str(),
            Some(erreur.to_owned()),
        )
    };
    let participants: Vec<MemberId> = form
        .iter()
        .filter(|(k, _)| k == "participant")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let Ok(on) = fields.get("le").map_or("", |v| v.trim()).parse() else {
        return again("Indiquez le jour de la commission (AAAA-MM-JJ).");
    };
    let agenda = fields.get("ordre").map_or("", |v| v.trim());
    match c
        .node
        .convene_commission(&caller, &dossier, &participants, agenda, on, None)
        .await
    {
        Ok(_) => see_other("/commissions"),
        Err(ServiceError::Invalid(_)) => again(
            "Choisissez au moins un partenaire et écrivez l'ordre du jour (1000 caractères au plus).",
        ),
        Err(ServiceError::State(_)) => again(
            "Aucun consentement de la personne en vigueur ne nomme tous ces partenaires : recueillez-le d'abord.",
        ),
        Err(ServiceError::NotEntitled(_)) => {
            again("Seul le référent de parcours du dossier réunit une commission.")
        }
        Err(e) => dossier_refused(&c, &e),
    }
}
