//! Break-glass at the desk and its review: a caseworker whose member the
//! charter allows reads a partner's sections without consent, with a
//! justification and a clear warning; the auditors review every such access.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dossiers::{dossier_of, dossier_refused};
use super::{
    Champs as _, Console, caseworker, form_refused, refusal_fr, sections, see_other, when_fr,
};
use crate::service::{Caller, ServiceError};
use crate::types::{GrantId, MemberId, Role, Section};

/// A section read in urgency: its French name, when its owner wrote it,
/// its fields, or why it could not be read.
type Lue = (String, String, Vec<(String, String)>, Option<String>);

#[derive(Template)]
#[template(path = "urgence.html")]
struct Urgence<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    membres: Vec<(String, String)>,
    parties: Vec<(&'static str, String, bool)>,
    valeurs: HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
    lues: Vec<Lue>,
}

impl super::Champs for Urgence<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
    fn valeurs(&self) -> Option<&HashMap<String, String>> {
        Some(&self.valeurs)
    }
}

/// The form's page, with what was typed, the errors, and what was read.
fn page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    dossier: &str,
    form: &[(String, String)],
    erreurs: Vec<(&'static str, String)>,
    lues: Vec<Lue>,
) -> Response {
    let chosen: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "partie")
        .map(|(_, v)| v.as_str())
        .collect();
    let membres = c.active_members(false);
    let page = Urgence {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        dossier,
        membres,
        parties: Section::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    sections::section_fr(*s),
                    chosen.contains(&s.as_str()),
                )
            })
            .collect(),
        valeurs: form.iter().cloned().collect(),
        erreurs,
        lues,
    };
    c.page(status, page.render())
}

/// `GET /dossiers/{id}/urgence`: the break-glass form, with its warning.
pub(super) async fn urgence(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match dossier_of(&c, &id) {
        Ok(d) => page(
            &c,
            StatusCode::OK,
            &session.csrf,
            d.as_str(),
            &[],
            Vec::new(),
            Vec::new(),
        ),
        Err(r) => r,
    }
}

/// `POST /dossiers/{id}/urgence`: reads without consent, if the charter
/// allows this member, with the justification logged at both ends.
pub(super) async fn urgence_envoyee(
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
    let field = |name: &str| fields.get(name).map_or("", |v| v.trim());
    let mut erreurs = Vec::new();
    let owner: Option<MemberId> = field("detenteur").parse().ok();
    if owner.is_none() {
        erreurs.push((
            "detenteur",
            "Choisissez le partenaire qui détient les parties.".to_owned(),
        ));
    }
    let chosen: Vec<Section> = form
        .iter()
        .filter(|(k, _)| k == "partie")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    if chosen.is_empty() {
        erreurs.push(("partie", "Cochez au moins une partie à lire.".to_owned()));
    }
    let justification = field("justification");
    if crate::types::check_justification(justification).is_err() {
        erreurs.push((
            "justification",
            format!(
                "Décrivez la situation d'urgence en une vraie phrase d'au moins {} caractères : elle est lue par les contrôleurs des deux partenaires.",
                crate::types::MIN_JUSTIFICATION
            ),
        ));
    }
    let (Some(owner), true) = (owner, erreurs.is_empty()) else {
        return page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            dossier.as_str(),
            &form,
            erreurs,
            Vec::new(),
        );
    };
    let purpose = "accès en urgence";
    let read = c
        .node
        .read_shares(
            &caller,
            &owner,
            &dossier,
            &chosen,
            purpose,
            Some(justification),
        )
        .await;
    match read {
        Ok(items) => {
            let lues = items
                .into_iter()
                .map(|(section, outcome)| {
                    let titre = sections::section_fr(section);
                    match outcome {
                        Ok(view) => {
                            let champs = sections::shown_fields(section, &view.json);
                            (titre, when_fr(view.written_at), champs, None)
                        }
                        Err(e) => (titre, String::new(), Vec::new(), Some(refusal_fr(&e))),
                    }
                })
                .collect();
            page(
                &c,
                StatusCode::OK,
                &session.csrf,
                dossier.as_str(),
                &form,
                Vec::new(),
                lues,
            )
        }
        Err(e) if e.kind() == crate::service::ErrorKind::Refused => {
            tracing::debug!(reason = %e.reason(), "a break-glass read was refused");
            page(
                &c,
                StatusCode::FORBIDDEN,
                &session.csrf,
                dossier.as_str(),
                &form,
                vec![(
                    "detenteur",
                    "La charte du GIP ne permet pas à votre institution d'accéder en urgence à ces parties chez ce partenaire."
                        .to_owned(),
                )],
                Vec::new(),
            )
        }
        Err(e) => dossier_refused(&c, &e),
    }
}

#[derive(Template)]
#[template(path = "urgences.html")]
struct Urgences<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    toutes: bool,
    fait: bool,
    acces: Vec<Acces>,
}

/// A break-glass access as the review page lists it.
struct Acces {
    id: String,
    dossier: String,
    lecteur: String,
    detenteur: String,
    parties: String,
    quand: String,
    jusqu_au: String,
    justification: String,
    controle: Option<String>,
}

/// The session and caller of an auditor, or the page that refuses it.
fn auditor(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(crate::service::ConsoleSession, Caller), Response> {
    super::session_with(c, headers, &[Role::Auditor], "au contrôle")
}

/// `GET /controle/urgences[?toutes=1]`: the break-glass accesses to review
/// (or all of them).
pub(super) async fn urgences(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match auditor(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let toutes = query.contains_key("toutes");
    let grants = match c.node.list_break_glass(&caller, !toutes).await {
        Ok(g) => g,
        Err(e) => return c.unavailable(&e, "Les accès en urgence n'ont pas pu être lus"),
    };
    let acces = grants
        .into_iter()
        .map(|g| Acces {
            id: g.id.to_string(),
            dossier: g.dossier.to_string(),
            lecteur: match &g.user {
                Some(u) => format!("{u} ({})", c.member_name(&g.reader)),
                None => c.member_name(&g.reader),
            },
            detenteur: c.member_name(&g.owner),
            parties: g
                .sections
                .iter()
                .map(|s| sections::section_fr(*s))
                .collect::<Vec<_>>()
                .join(", "),
            quand: when_fr(g.granted_at),
            jusqu_au: when_fr(g.until),
            justification: g.justification.unwrap_or_default(),
            controle: g
                .review
                .map(|r| format!("{} le {} : « {} »", r.by, when_fr(r.at), r.comment)),
        })
        .collect();
    let page = Urgences {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        toutes,
        fait: query.contains_key("fait"),
        acces,
    };
    c.page(StatusCode::OK, page.render())
}

/// `POST /controle/urgences/{id}`: an auditor's review, with its comment.
pub(super) async fn controler(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::with_token(&c, &form, auditor(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(grant) = id.parse::<GrantId>() else {
        return c.error(
            StatusCode::NOT_FOUND,
            "Accès introuvable",
            "Cette adresse ne désigne aucun accès en urgence.",
        );
    };
    let comment = form.get("commentaire").map_or("", |v| v.trim());
    match c.node.review_break_glass(&caller, &grant, comment).await {
        Ok(()) => see_other("/controle/urgences?fait=1"),
        Err(ServiceError::Invalid(_)) => c.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Commentaire requis",
            &format!(
                "Expliquez votre contrôle en une vraie phrase d'au moins {} caractères.",
                crate::service::MIN_REVIEW_COMMENT
            ),
        ),
        Err(ServiceError::NotFound(_)) => c.error(
            StatusCode::NOT_FOUND,
            "Accès introuvable",
            "Aucun accès en urgence ne porte cette référence.",
        ),
        Err(ServiceError::State(_)) => c.error(
            StatusCode::CONFLICT,
            "Déjà contrôlé",
            "Cet accès en urgence a déjà été contrôlé.",
        ),
        Err(e) => c.unavailable(&e, "Le contrôle n'a pas été enregistré"),
    }
}
