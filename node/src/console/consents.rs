//! Consent at the desk: the form a caseworker fills in with the person,
//! the French receipt to print and hand over, and the withdrawal.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dossiers::{dossier_of, dossier_refused};
use super::{Champs as _, Console, caseworker, form_refused, sections};
use crate::service::{GrantRequest, ServiceError};
use crate::types::{Collection, ConsentId, Date, LegalBasis, MemberId, Section};

#[derive(Template)]
#[template(path = "consentement.html")]
struct Consentement<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    parties: Vec<(&'static str, String, bool, bool)>,
    membres: Vec<(String, String, bool)>,
    motif: &'a str,
    fondement: &'a str,
    disposition: &'a str,
    recueil: &'a str,
    reference: &'a str,
    jusqu_au: &'a str,
    erreurs: Vec<(&'static str, String)>,
}

impl super::Champs for Consentement<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
}

/// The values a form field carries (checkboxes repeat their name).
fn all(form: &[(String, String)], name: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// The one value of a form field.
fn one<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.trim())
}

fn render(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    dossier: &str,
    form: &[(String, String)],
    erreurs: Vec<(&'static str, String)>,
) -> Response {
    let shared = all(form, "partage");
    let masked = all(form, "masque");
    let audience = all(form, "destinataire");
    let parties = Section::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                sections::section_fr(*s),
                shared.iter().any(|v| v == s.as_str()),
                masked.iter().any(|v| v == s.as_str()),
            )
        })
        .collect();
    let membres = c
        .active_members(false)
        .into_iter()
        .map(|(id, name)| {
            let checked = audience.contains(&id);
            (id, name, checked)
        })
        .collect();
    let page = Consentement {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        dossier,
        parties,
        membres,
        motif: one(form, "motif"),
        fondement: one(form, "fondement"),
        disposition: one(form, "disposition"),
        recueil: one(form, "recueil"),
        reference: one(form, "reference"),
        jusqu_au: one(form, "jusqu_au"),
        erreurs,
    };
    c.page(status, page.render())
}

/// `GET /dossiers/{id}/consentements/nouveau`: the consent form.
pub(super) async fn nouveau(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let defaults = [("recueil".to_owned(), "oral".to_owned())];
    render(
        &c,
        StatusCode::OK,
        &session.csrf,
        dossier.as_str(),
        &defaults,
        Vec::new(),
    )
}

/// The grant a submitted form asks for, or an error beside each bad field.
fn grant_of(
    dossier: &crate::types::DossierId,
    form: &[(String, String)],
    today: Date,
) -> Result<GrantRequest, Vec<(&'static str, String)>> {
    let mut erreurs = Vec::new();
    let sections_of = |name: &str| -> BTreeSet<Section> {
        all(form, name)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let (shared, masked) = (sections_of("partage"), sections_of("masque"));
    let audience: BTreeSet<MemberId> = all(form, "destinataire")
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    if shared.is_empty() && masked.is_empty() {
        erreurs.push((
            "partage",
            "Cochez au moins une partie à partager ou à masquer.".to_owned(),
        ));
    }
    if let Some(s) = shared.intersection(&masked).next() {
        erreurs.push((
            "masque",
            format!(
                "La partie « {} » ne peut pas être à la fois partagée et masquée.",
                sections::section_fr(*s)
            ),
        ));
    }
    if !shared.is_empty() && audience.is_empty() {
        erreurs.push((
            "destinataire",
            "Cochez au moins un partenaire avec qui partager.".to_owned(),
        ));
    }
    if shared.is_empty() && !audience.is_empty() {
        erreurs.push((
            "partage",
            "Cochez les parties à partager avec les partenaires choisis.".to_owned(),
        ));
    }
    let purpose = one(form, "motif");
    if crate::types::check_purpose(purpose).is_err() {
        erreurs.push((
            "motif",
            "Indiquez le motif du partage en une ligne, avec les mots de la personne.".to_owned(),
        ));
    }
    let basis = match one(form, "fondement") {
        "" | "consentement" => Some(LegalBasis::Consent),
        "mission" => {
            let provision = one(form, "disposition");
            if crate::types::check_short_text("provision", provision, 120).is_err() {
                erreurs.push((
                    "disposition",
                    "Citez la disposition légale, par exemple « CASF L.226-2-2 ».".to_owned(),
                ));
            }
            Some(LegalBasis::LegalMission {
                provision: provision.to_owned(),
            })
        }
        _ => {
            erreurs.push(("fondement", "Choisissez un fondement proposé.".to_owned()));
            None
        }
    };
    let collection = match one(form, "recueil") {
        "oral" => Some(Collection::Oral),
        "formulaire" => {
            let reference = one(form, "reference");
            if crate::types::check_short_text("form reference", reference, 120).is_err() {
                erreurs.push((
                    "reference",
                    "Indiquez la référence du formulaire signé.".to_owned(),
                ));
            }
            Some(Collection::SignedForm {
                reference: reference.to_owned(),
            })
        }
        "informee" => Some(Collection::Informed),
        _ => {
            erreurs.push((
                "recueil",
                "Choisissez comment la personne s'est exprimée.".to_owned(),
            ));
            None
        }
    };
    if matches!(
        (&basis, &collection),
        (Some(LegalBasis::Consent), Some(Collection::Informed))
    ) {
        erreurs.push((
            "recueil",
            "Un consentement se donne, à l'oral ou par écrit : « personne informée » ne vaut que pour une mission légale."
                .to_owned(),
        ));
    }
    let until = super::parse_date(one(form, "jusqu_au"));
    match until {
        Some(d) if d >= today => {}
        _ => erreurs.push((
            "jusqu_au",
            "Indiquez le dernier jour du consentement, aujourd'hui ou plus tard (jj/mm/aaaa)."
                .to_owned(),
        )),
    }
    match (basis, collection, until) {
        (Some(basis), Some(collection), Some(until)) if erreurs.is_empty() => Ok(GrantRequest {
            dossier: dossier.clone(),
            sections: shared,
            audience,
            purpose: purpose.to_owned(),
            basis,
            collection,
            valid_from: None,
            until,
            masked,
        }),
        _ => Err(erreurs),
    }
}

/// `POST /dossiers/{id}/consentements`: records the consent, then shows
/// its receipt.
pub(super) async fn enregistrer(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (session, caller) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fields: HashMap<String, String> = form.iter().cloned().collect();
    if !super::csrf_ok(&fields, &session) {
        return form_refused(&c);
    }
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let today = Date::from_unix(c.node.now());
    let request = match grant_of(&dossier, &form, today) {
        Ok(r) => r,
        Err(erreurs) => {
            return render(
                &c,
                StatusCode::UNPROCESSABLE_ENTITY,
                &session.csrf,
                dossier.as_str(),
                &form,
                erreurs,
            );
        }
    };
    match c.node.grant_consent(&caller, request).await {
        Ok(consent) => super::see_other(&format!("/dossiers/{dossier}/consentements/{consent}")),
        Err(ServiceError::Charter { member, section }) => render(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            dossier.as_str(),
            &form,
            vec![(
                "partage",
                format!(
                    "La charte du GIP ne permet pas de partager la partie « {} » avec {} : décochez l'une ou l'autre.",
                    sections::section_fr(section),
                    c.member_name(&member)
                ),
            )],
        ),
        Err(ServiceError::Invalid(reason)) => {
            tracing::debug!(%reason, "a consent asked from the console was refused");
            render(
                &c,
                StatusCode::UNPROCESSABLE_ENTITY,
                &session.csrf,
                dossier.as_str(),
                &form,
                vec![(
                    "partage",
                    "Le consentement n'a pas été enregistré : vérifiez les parties, les partenaires et les dates.".to_owned(),
                )],
            )
        }
        Err(e @ ServiceError::Unreachable { .. }) | Err(e @ ServiceError::Remote { .. }) => {
            tracing::info!(error = %e, "a consent could not reach a partner");
            render(
                &c,
                StatusCode::SERVICE_UNAVAILABLE,
                &session.csrf,
                dossier.as_str(),
                &form,
                vec![(
                    "destinataire",
                    "Un partenaire choisi ne répond pas : rien n'a été enregistré, réessayez dans un moment."
                        .to_owned(),
                )],
            )
        }
        Err(e) => dossier_refused(&c, &e),
    }
}

#[derive(Template)]
#[template(path = "recu.html")]
struct Recu<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    consentement: &'a str,
    lignes: Vec<String>,
    en_vigueur: bool,
    retire: bool,
}

/// The consent named in a path.
fn consent_of(c: &Console, id: &str) -> Result<ConsentId, Response> {
    id.parse().map_err(|_| {
        c.error(
            StatusCode::NOT_FOUND,
            "Consentement introuvable",
            "Cette adresse ne désigne aucun consentement.",
        )
    })
}

/// `GET /dossiers/{id}/consentements/{consent}`: the French receipt, to
/// print and hand to the person (its showing is logged).
pub(super) async fn recu(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, consent)): Path<(String, String)>,
) -> Response {
    let (session, caller) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (dossier, consent) = match (dossier_of(&c, &id), consent_of(&c, &consent)) {
        (Ok(d), Ok(k)) => (d, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let receipt = match c.node.show_consent_of(&caller, &dossier, &consent).await {
        Ok(r) => r,
        Err(ServiceError::NotFound(_)) => {
            return c.error(
                StatusCode::NOT_FOUND,
                "Consentement introuvable",
                "Ce dossier n'a aucun consentement sous cette référence.",
            );
        }
        Err(e) => return dossier_refused(&c, &e),
    };
    let page = Recu {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        dossier: dossier.as_str(),
        consentement: consent.as_str(),
        lignes: receipt.to_french().lines().map(str::to_owned).collect(),
        en_vigueur: matches!(receipt.status, "active" | "pending"),
        retire: receipt.status == "withdrawn",
    };
    c.page(StatusCode::OK, page.render())
}

/// `POST /dossiers/{id}/consentements/{consent}/retrait`: the person
/// withdraws the consent; the partners lose access at once.
pub(super) async fn retirer(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, consent)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (dossier, consent) = match (dossier_of(&c, &id), consent_of(&c, &consent)) {
        (Ok(d), Ok(k)) => (d, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match c.node.revoke_consent_of(&caller, &dossier, &consent).await {
        Ok(()) => super::see_other(&format!("/dossiers/{dossier}/consentements/{consent}")),
        Err(ServiceError::NotFound(_)) => c.error(
            StatusCode::NOT_FOUND,
            "Consentement introuvable",
            "Ce dossier n'a aucun consentement sous cette référence.",
        ),
        Err(e) => dossier_refused(&c, &e),
    }
}
