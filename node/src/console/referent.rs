//! Naming or handing over a dossier's référent de parcours, at the member
//! that holds the dossier.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dossiers::{dossier_of, dossier_refused};
use super::{Champs as _, Console, caseworker, see_other};
use crate::service::ServiceError;
use crate::types::{ConsentId, MemberId, UserName};

#[derive(Template)]
#[template(path = "referent.html")]
struct ReferentForm<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    membres: Vec<(String, String)>,
    valeurs: HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
}

impl super::Champs for ReferentForm<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
    fn valeurs(&self) -> Option<&HashMap<String, String>> {
        Some(&self.valeurs)
    }
}

fn page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    dossier: &str,
    valeurs: HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
) -> Response {
    let membres = c.active_members(true);
    let form = ReferentForm {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        dossier,
        membres,
        valeurs,
        erreurs,
    };
    c.page(status, form.render())
}

/// `GET /dossiers/{id}/referent`: the form.
pub(super) async fn referent(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match dossier_of(&c, &id) {
        Ok(d) => {
            let mut valeurs = HashMap::new();
            valeurs.insert("membre".to_owned(), c.node.member().to_string());
            page(
                &c,
                StatusCode::OK,
                &session.csrf,
                d.as_str(),
                valeurs,
                Vec::new(),
            )
        }
        Err(r) => r,
    }
}

/// `POST /dossiers/{id}/referent`: names the référent (logged, told to
/// every member holding the dossier).
pub(super) async fn referent_envoye(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let mut erreurs = Vec::new();
    let member: Option<MemberId> = field("membre").parse().ok();
    if member.is_none() {
        erreurs.push(("membre", "Choisissez l'institution du référent.".to_owned()));
    }
    let user: Option<UserName> = field("agent").parse().ok();
    if user.is_none() {
        erreurs.push((
            "agent",
            "Indiquez l'identifiant de l'agent, par exemple agent-caf.".to_owned(),
        ));
    }
    let consent: Option<ConsentId> = match field("consentement") {
        "" => None,
        text => match text.parse() {
            Ok(k) => Some(k),
            Err(_) => {
                erreurs.push((
                    "consentement",
                    "Recopiez une référence de consentement, par exemple CNS-….".to_owned(),
                ));
                None
            }
        },
    };
    let (Some(member), Some(user), true) = (member, user, erreurs.is_empty()) else {
        return page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            dossier.as_str(),
            form,
            erreurs,
        );
    };
    let set = c
        .node
        .set_referent(&caller, &dossier, &member, &user, consent.as_ref())
        .await;
    let refused = |field: &'static str, why: &str| vec![(field, why.to_owned())];
    let erreurs = match set {
        Ok(()) => return see_other(&format!("/dossiers/{dossier}")),
        Err(ServiceError::NotFound(what)) if what.starts_with("caseworker") => refused(
            "agent",
            "Aucun travailleur social de ce nœud ne porte cet identifiant.",
        ),
        Err(ServiceError::NotFound(what)) if what.starts_with("consent") => refused(
            "consentement",
            "Ce dossier n'a aucun consentement sous cette référence.",
        ),
        Err(ServiceError::NotEntitled(_)) => refused(
            "consentement",
            "Un référent chez un partenaire demande un consentement en vigueur de la personne qui nomme ce partenaire.",
        ),
        Err(ServiceError::State(what)) if what.contains("already") => refused(
            "agent",
            "Cet agent est déjà le référent de parcours de ce dossier.",
        ),
        Err(ServiceError::State(what)) if what.contains("attaches") => refused(
            "membre",
            "Ce partenaire n'a pas rattaché le dossier : il doit le faire d'abord.",
        ),
        Err(ServiceError::State(what)) if what.contains("is named at") => {
            return c.error(
                StatusCode::CONFLICT,
                "Référent désigné ailleurs",
                "Le référent de parcours se désigne chez le partenaire qui détient le dossier, pas ici.",
            );
        }
        Err(e) => return dossier_refused(&c, &e),
    };
    page(
        &c,
        StatusCode::UNPROCESSABLE_ENTITY,
        &session.csrf,
        dossier.as_str(),
        form,
        erreurs,
    )
}
