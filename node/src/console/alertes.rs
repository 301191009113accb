//! Vigilance alerts in the console: a volunteer (or a caseworker) raises
//! one and follows where it stands; the recipient's caseworkers read the
//! alerts received, take them into account and close them.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Console, see_other, session_with, when_fr, with_token};
use crate::service::ServiceError;
use crate::types::{AlertConcern, AlertOutcome, AlertStatus, Role};

/// The concerns a form offers: (value, French name).
const CONCERNS: [(&str, &str); 5] = [
    ("isolation", "Isolement"),
    ("health", "Santé"),
    ("housing", "Logement"),
    ("danger", "Danger"),
    ("other", "Autre inquiétude"),
];

/// The outcomes a form offers: (value, French name).
const OUTCOMES: [(&str, &str); 5] = [
    ("contacted", "Personne contactée"),
    ("dossier_opened", "Dossier ouvert"),
    ("referred", "Orientée vers un autre service"),
    ("unreachable", "Personne injoignable"),
    ("no_action", "Rien à faire"),
];

fn concern_fr(c: AlertConcern) -> &'static str {
    CONCERNS
        .iter()
        .find(|(v, _)| *v == c.to_string())
        .map_or("autre", |(_, fr)| fr)
}

fn outcome_fr(o: AlertOutcome) -> &'static str {
    OUTCOMES
        .iter()
        .find(|(v, _)| *v == o.to_string())
        .map_or("", |(_, fr)| fr)
}

/// What a raiser reads of where its alert stands.
fn raised_fr(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Raised => "pas encore transmise",
        AlertStatus::Received => "reçue",
        AlertStatus::Taken | AlertStatus::Closed => "reçue et prise en compte",
    }
}

struct Emise {
    quand: String,
    a: String,
    objet: &'static str,
    ou: String,
    etat: &'static str,
}

struct Recue {
    id: String,
    quand: String,
    de: String,
    objet: &'static str,
    ou: String,
    mots: String,
    etat: String,
    prendre: bool,
    clore: bool,
}

#[derive(Template)]
#[template(path = "alertes.html")]
struct Alertes<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    destinataire: Option<String>,
    concerns: [(&'static str, &'static str); 5],
    outcomes: [(&'static str, &'static str); 5],
    emises: Vec<Emise>,
    recues: Vec<Recue>,
    agent: bool,
    message: Option<String>,
    erreur: Option<String>,
}

async fn page(
    c: &Console,
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
    erreur: Option<String>,
) -> Response {
    let (session, caller) = match session_with(
        c,
        headers,
        &[Role::Volunteer, Role::Caseworker],
        "aux bénévoles et aux travailleurs sociaux",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let view = match c.node.list_alerts(&caller, None).await {
        Ok(v) => v,
        Err(e) => return c.unavailable(&e, "Alertes indisponibles"),
    };
    let destinataire = c
        .node
        .roster()
        .roster()
        .charter
        .alerts
        .as_ref()
        .map(|r| c.member_name(&r.recipient));
    let agent = caller.role == Role::Caseworker;
    let page = Alertes {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        destinataire,
        concerns: CONCERNS,
        outcomes: OUTCOMES,
        emises: view
            .raised
            .iter()
            .map(|r| Emise {
                quand: when_fr(r.raised_at),
                a: c.member_name(&r.to),
                objet: concern_fr(r.concern),
                ou: r.place.clone(),
                etat: raised_fr(r.status),
            })
            .collect(),
        recues: view
            .received
            .iter()
            .map(|r| Recue {
                id: r.alert.id.to_string(),
                quand: when_fr(r.alert.raised_at),
                de: c.member_name(&r.alert.from),
                objet: concern_fr(r.alert.concern),
                ou: r.alert.place.clone(),
                mots: r.alert.about.clone(),
                etat: match (r.status, r.outcome) {
                    (AlertStatus::Closed, Some(o)) => format!("close : {}", outcome_fr(o)),
                    (AlertStatus::Taken, _) => format!(
                        "prise en compte{}",
                        r.taken_by
                            .as_ref()
                            .map(|u| format!(" par {u}"))
                            .unwrap_or_default()
                    ),
                    _ => "reçue, à prendre en compte".into(),
                },
                prendre: agent && r.status == AlertStatus::Received,
                clore: agent && r.status != AlertStatus::Closed,
            })
            .collect(),
        agent,
        message,
        erreur,
    };
    c.page(status, page.render())
}

/// `GET /alertes`: the form, the alerts raised by this user, and (for
/// caseworkers of the recipient) the alerts received.
pub(super) async fn alertes(State(c): State<Console>, headers: HeaderMap) -> Response {
    page(&c, StatusCode::OK, &headers, None, None).await
}

/// `POST /alertes`: raises an alert to the member the charter names.
pub(super) async fn signaler(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let checked = session_with(
        &c,
        &headers,
        &[Role::Volunteer, Role::Caseworker],
        "aux bénévoles et aux travailleurs sociaux",
    );
    let (_, caller) = match with_token(&c, &form, checked) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let Ok(concern) = field("objet").parse::<AlertConcern>() else {
        return page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &headers,
            None,
            Some("Choisissez ce qui vous inquiète.".into()),
        )
        .await;
    };
    match c
        .node
        .raise_alert(&caller, field("personne"), field("commune"), concern, None)
        .await
    {
        Ok(r) => {
            let message = format!(
                "Votre signalement a été transmis à {} : {}.",
                c.member_name(&r.to),
                raised_fr(r.status)
            );
            page(&c, StatusCode::OK, &headers, Some(message), None).await
        }
        Err(ServiceError::Invalid(_)) => {
            page(
                &c,
                StatusCode::UNPROCESSABLE_ENTITY,
                &headers,
                None,
                Some("Dites en quelques mots (300 caractères au plus) qui est la personne et où la trouver, et la commune.".into()),
            )
            .await
        }
        Err(ServiceError::State(_)) => {
            page(
                &c,
                StatusCode::CONFLICT,
                &headers,
                None,
                Some("La charte du GIP ne désigne encore aucun destinataire des alertes : rien n'a été transmis.".into()),
            )
            .await
        }
        Err(e) => c.unavailable(&e, "Le signalement n'a pas pu être transmis"),
    }
}

/// `POST /alertes/{id}`: takes an alert received here into account, or
/// closes it with its outcome (caseworkers of the recipient).
pub(super) async fn traiter(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match with_token(&c, &form, super::caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let absent = || {
        c.error(
            StatusCode::NOT_FOUND,
            "Alerte introuvable",
            "Aucune alerte reçue ici ne porte cette référence.",
        )
    };
    let Ok(id) = id.parse() else {
        return absent();
    };
    let (status, outcome) = match form.get("action").map(String::as_str) {
        Some("prendre") => (AlertStatus::Taken, None),
        Some("clore") => match form.get("issue").and_then(|o| o.parse().ok()) {
            Some(o) => (AlertStatus::Closed, Some(o)),
            None => {
                return c.error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Issue requise",
                    "Pour clore une alerte, dites ce qui a été fait.",
                );
            }
        },
        _ => {
            return c.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Action inconnue",
                "Prenez l'alerte en compte, ou closez-la en disant ce qui a été fait.",
            );
        }
    };
    match c.node.handle_alert(&caller, &id, status, outcome).await {
        Ok(_) => see_other("/alertes"),
        Err(ServiceError::NotFound(_)) => absent(),
        Err(ServiceError::State(_)) => c.error(
            StatusCode::CONFLICT,
            "Étape impossible",
            "L'alerte n'en est plus là : rechargez la page des alertes.",
        ),
        Err(e) => c.unavailable(&e, "L'alerte n'a pas pu être mise à jour"),
    }
}
