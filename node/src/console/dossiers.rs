//! The caseworker's dossier pages: search, a dossier's page, the unified
//! view (read with a purpose), and a form per section.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::sections::{self, Field, Kind};
use super::{Champs as _, Console, caseworker, refusal_fr, when_fr};
use crate::service::{DossierPage, DossierSummary, ServiceError};
use crate::types::{DossierId, Section};

#[derive(Template)]
#[template(path = "recherche.html")]
struct Recherche<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    texte: &'a str,
    cherche: bool,
    resultats: Vec<Ligne>,
    erreur: Option<&'a str>,
}

/// A dossier as the search lists it, ready to show.
struct Ligne {
    id: String,
    nom: String,
    naissance: String,
    ouvert: String,
    detenu_par: Option<String>,
    clos: bool,
}

impl Ligne {
    fn of(c: &Console, d: DossierSummary) -> Self {
        Self {
            id: d.id.to_string(),
            nom: format!("{} {}", d.given_name, d.family_name),
            naissance: sections::french_date(&d.birth_date),
            ouvert: when_fr(d.opened_at),
            detenu_par: d.attached_from.map(|m| c.member_name(&m)),
            clos: d.closed,
        }
    }
}

/// `GET /dossiers`: the search form.
pub(super) async fn recherche(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let page = Recherche {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        texte: "",
        cherche: false,
        resultats: Vec::new(),
        erreur: None,
    };
    c.page(StatusCode::OK, page.render())
}

/// `POST /dossiers`: this node's dossiers answering the words typed (sent
/// in the body: names stay out of addresses and the browser's history).
pub(super) async fn recherche_envoyee(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let texte = form.get("q").map_or("", |q| q.trim());
    let (resultats, erreur) = match c.node.search_dossiers(&caller, texte).await {
        Ok(found) => (found.into_iter().map(|d| Ligne::of(&c, d)).collect(), None),
        Err(ServiceError::Invalid(_)) => (
            Vec::new(),
            Some(
                "Tapez de 2 à 200 caractères : un nom, une date de naissance ou le début de la référence.",
            ),
        ),
        Err(e) => return c.unavailable(&e, "La recherche n'a pas abouti"),
    };
    let status = if erreur.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = Recherche {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        texte,
        cherche: true,
        resultats,
        erreur,
    };
    c.page(status, page.render())
}

#[derive(Template)]
#[template(path = "fiche.html")]
struct Fiche<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    ligne: Ligne,
    parties: Vec<(&'static str, String, bool)>,
    consentements: Vec<ConsentementLigne>,
    referent: Option<String>,
}

/// A consent as the dossier's page lists it.
struct ConsentementLigne {
    id: String,
    sections: String,
    destinataires: String,
    jusqu_au: String,
    statut: &'static str,
}

/// The French word for a consent's status.
fn status_fr(status: crate::consent::ConsentStatus) -> &'static str {
    use crate::consent::ConsentStatus as S;
    match status {
        S::Active => "en vigueur",
        S::Revoked => "retiré",
        S::Expired => "expiré",
        S::Pending => "à venir",
    }
}

/// The dossier named in a path, or the French page for a bad one.
pub(super) fn dossier_of(c: &Console, id: &str) -> Result<DossierId, Response> {
    id.parse().map_err(|_| {
        c.error(
            StatusCode::NOT_FOUND,
            "Dossier introuvable",
            "Cette adresse ne désigne aucun dossier.",
        )
    })
}

/// The French page for a use case's refusal or failure about a dossier.
pub(super) fn dossier_refused(c: &Console, e: &ServiceError) -> Response {
    match e {
        ServiceError::NotFound(_) => c.error(
            StatusCode::NOT_FOUND,
            "Dossier introuvable",
            "Ce nœud ne détient aucun dossier sous cet identifiant.",
        ),
        ServiceError::Role { .. } => super::refused_role(c, "aux travailleurs sociaux"),
        ServiceError::State(_) => c.error(
            StatusCode::CONFLICT,
            "Action impossible",
            "Le dossier ne le permet pas dans son état actuel (clos ou effacé).",
        ),
        ServiceError::Unreachable { peer, .. } => c.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Partenaire injoignable",
            &format!("{} ne répond pas pour le moment : réessayez dans un moment.", c.member_name(peer)),
        ),
        e if e.kind() == crate::service::ErrorKind::Refused => c.error(
            StatusCode::FORBIDDEN,
            "Action refusée",
            "Cette action ne vous est pas permise sur ce dossier (par exemple, seul le référent de parcours écrit le plan d'accompagnement).",
        ),
        e if e.kind() == crate::service::ErrorKind::NotFound => c.error(
            StatusCode::NOT_FOUND,
            "Introuvable",
            "Ce que vous demandez n'existe pas ou plus, ici ou chez le partenaire.",
        ),
        e if matches!(
            e.kind(),
            crate::service::ErrorKind::Invalid | crate::service::ErrorKind::TooLarge
        ) =>
        {
            c.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Données refusées",
                "Les données envoyées sont trop longues ou mal formées : corrigez-les et recommencez.",
            )
        }
        e => c.unavailable(e, "L'action n'a pas abouti"),
    }
}

/// `GET /dossiers/{id}`: the dossier's page (logged).
pub(super) async fn fiche(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, caller) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let page: DossierPage = match c.node.dossier_page(&caller, &dossier).await {
        Ok(p) => p,
        Err(e) => return dossier_refused(&c, &e),
    };
    let now = c.node.now();
    let consentements = page
        .consents
        .iter()
        .map(|r| ConsentementLigne {
            id: r.consent.id.to_string(),
            sections: r
                .consent
                .sections
                .iter()
                .map(|s| sections::section_fr(*s))
                .collect::<Vec<_>>()
                .join(", "),
            destinataires: r
                .consent
                .audience
                .iter()
                .map(|m| c.member_name(m))
                .collect::<Vec<_>>()
                .join(", "),
            jusqu_au: sections::french_date(&r.consent.until),
            statut: status_fr(r.status(now)),
        })
        .collect();
    let parties = Section::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                sections::section_fr(*s),
                page.sections.contains(s),
            )
        })
        .collect();
    let fiche = Fiche {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        dossier: dossier.as_str(),
        ligne: Ligne::of(&c, page.summary),
        parties,
        consentements,
        referent: c.referent_fr(page.referent),
    };
    c.page(StatusCode::OK, fiche.render())
}

#[derive(Template)]
#[template(path = "vue.html")]
struct Vue<'a> {
    partner: &'a str,
    version: &'a str,
    dossier: &'a str,
    motif: &'a str,
    sources: Vec<Source>,
    referent: Option<String>,
}

/// One section of the unified view.
struct Source {
    section: String,
    detenteur: String,
    ici: bool,
    /// The section's fields (label, value), when it was read.
    champs: Vec<(String, String)>,
    /// When its owner last wrote it.
    ecrit: Option<String>,
    /// On what it was read (consent or break-glass), for a shared section.
    fondement: Option<String>,
    /// Why it could not be read.
    refus: Option<String>,
}

/// `POST /dossiers/{id}/vue`: the unified view, read with the purpose given.
pub(super) async fn vue(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let motif = form.get("motif").map(|m| m.trim()).unwrap_or("");
    if crate::types::check_purpose(motif).is_err() {
        return c.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Motif requis",
            "Indiquez en une ligne pourquoi vous consultez le dossier : chaque partenaire l'inscrit dans son journal et la personne peut le lire.",
        );
    }
    let view = match c.node.view_dossier(&caller, &dossier, motif).await {
        Ok(v) => v,
        Err(e) => return dossier_refused(&c, &e),
    };
    let me = c.node.member().clone();
    let sources = view
        .sections
        .into_iter()
        .map(|v| {
            let mut source = Source {
                section: sections::section_fr(v.section),
                detenteur: c.member_name(&v.owner),
                ici: v.owner == me,
                champs: Vec::new(),
                ecrit: None,
                fondement: None,
                refus: None,
            };
            match v.outcome {
                Ok(read) => {
                    source.champs = sections::shown_fields(v.section, &read.json);
                    source.ecrit = Some(when_fr(read.written_at));
                    source.fondement = read.basis.map(|b| match b {
                        crate::protocol::Basis::Consent(id) => format!("consentement {id}"),
                        crate::protocol::Basis::BreakGlass(id) => {
                            format!("accès en urgence {id}")
                        }
                    });
                }
                Err(e) => source.refus = Some(refusal_fr(&e)),
            }
            source
        })
        .collect();
    let page = Vue {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        dossier: dossier.as_str(),
        motif,
        sources,
        referent: c.referent_fr(view.referent),
    };
    c.page(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "section.html")]
struct SectionForm<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    section: &'a str,
    titre: String,
    champs: Vec<Champ>,
    erreurs: Vec<(&'static str, String)>,
    autres: Vec<String>,
}

/// A field as the form shows it.
struct Champ {
    cle: &'static str,
    libelle: &'static str,
    genre: &'static str,
    valeur: String,
    options: Vec<(String, String)>,
    min: i64,
    max: i64,
    erreur: Option<String>,
}

fn champs(
    section: Section,
    values: &dyn Fn(&Field) -> String,
    erreurs: &[(&'static str, String)],
) -> Vec<Champ> {
    sections::fields(section)
        .iter()
        .map(|f| {
            let valeur = values(f);
            let (genre, options, min, max) = match f.kind {
                Kind::Text => ("texte", Vec::new(), 0, 0),
                Kind::Lines => ("lignes", Vec::new(), 0, 0),
                Kind::Number { min, max } => ("nombre", Vec::new(), min, max),
                Kind::Euros => ("euros", Vec::new(), 0, 0),
                Kind::Date => ("date", Vec::new(), 0, 0),
                Kind::YesNo => (
                    "choix",
                    vec![("oui".into(), "Oui".into()), ("non".into(), "Non".into())],
                    0,
                    0,
                ),
                Kind::Choice(list) => {
                    let mut options: Vec<(String, String)> = list
                        .iter()
                        .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
                        .collect();
                    if !valeur.is_empty() && !list.iter().any(|(v, _)| *v == valeur) {
                        options.push((valeur.clone(), valeur.clone()));
                    }
                    ("choix", options, 0, 0)
                }
            };
            Champ {
                cle: f.key,
                libelle: f.label,
                genre,
                valeur,
                options,
                min,
                max,
                erreur: erreurs
                    .iter()
                    .find(|(k, _)| *k == f.key)
                    .map(|(_, e)| e.clone()),
            }
        })
        .collect()
}

/// The section named in a path.
fn section_of(c: &Console, name: &str) -> Result<Section, Response> {
    name.parse().map_err(|_| {
        c.error(
            StatusCode::NOT_FOUND,
            "Partie inconnue",
            "Cette adresse ne désigne aucune partie d'un dossier.",
        )
    })
}

/// This node's copy of a section as a JSON object, if it wrote one (read
/// and logged like any read).
async fn current(
    c: &Console,
    caller: &crate::service::Caller,
    dossier: &DossierId,
    section: Section,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ServiceError> {
    match c.node.get_section(caller, dossier, section).await {
        Ok(view) => Ok(match serde_json::from_str(&view.json) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => None,
        }),
        Err(ServiceError::NotFound(what)) if what.contains("section") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /dossiers/{id}/sections/{section}`: the section's form, filled in
/// with this node's copy.
pub(super) async fn section(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let (session, caller) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (dossier, section) = match (dossier_of(&c, &id), section_of(&c, &name)) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let before = match current(&c, &caller, &dossier, section).await {
        Ok(b) => b,
        Err(e) => return dossier_refused(&c, &e),
    };
    let values = |f: &Field| sections::shown(f, before.as_ref().and_then(|b| b.get(f.key)));
    let page = SectionForm {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        dossier: dossier.as_str(),
        section: section.as_str(),
        titre: sections::section_fr(section),
        champs: champs(section, &values, &[]),
        erreurs: Vec::new(),
        autres: others(section, before.as_ref()),
    };
    c.page(StatusCode::OK, page.render())
}

/// The keys of a section the form does not show (kept as they are).
fn others(
    section: Section,
    map: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Vec<String> {
    map.map(|m| {
        m.keys()
            .filter(|k| {
                !sections::fields(section)
                    .iter()
                    .any(|f| f.key == k.as_str())
            })
            .map(|k| k.replace('_', " "))
            .collect()
    })
    .unwrap_or_default()
}

/// `POST /dossiers/{id}/sections/{section}`: writes the section from its
/// form; each bad field is shown beside itself and nothing is written.
pub(super) async fn section_envoyee(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (dossier, section) = match (dossier_of(&c, &id), section_of(&c, &name)) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let before = match current(&c, &caller, &dossier, section).await {
        Ok(b) => b,
        Err(e) => return dossier_refused(&c, &e),
    };
    match sections::merge(section, before.as_ref(), &form) {
        Ok(map) => {
            let json = serde_json::Value::Object(map).to_string();
            match c.node.put_section(&caller, &dossier, section, &json).await {
                Ok(()) => {
                    super::see_other(&format!("/dossiers/{dossier}?ecrit={}", section.as_str()))
                }
                Err(e) => dossier_refused(&c, &e),
            }
        }
        Err(erreurs) => {
            let values = |f: &Field| form.get(f.key).cloned().unwrap_or_default();
            let page = SectionForm {
                partner: &c.partner,
                version: env!("CARGO_PKG_VERSION"),
                csrf: &session.csrf,
                dossier: dossier.as_str(),
                section: section.as_str(),
                titre: sections::section_fr(section),
                champs: champs(section, &values, &erreurs),
                erreurs,
                autres: others(section, before.as_ref()),
            };
            c.page(StatusCode::UNPROCESSABLE_ENTITY, page.render())
        }
    }
}

#[derive(Template)]
#[template(path = "rattacher.html")]
struct Rattacher<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    membres: Vec<(String, String)>,
    valeurs: HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
}

impl super::Champs for Rattacher<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
    fn valeurs(&self) -> Option<&HashMap<String, String>> {
        Some(&self.valeurs)
    }
}

fn rattacher_page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    valeurs: HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
) -> Response {
    let membres = c.active_members(false);
    let page = Rattacher {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        membres,
        valeurs,
        erreurs,
    };
    c.page(status, page.render())
}

/// `GET /dossiers/rattacher`: attach to a dossier another partner holds,
/// from the reference the person gives.
pub(super) async fn rattacher(State(c): State<Console>, headers: HeaderMap) -> Response {
    match caseworker(&c, &headers) {
        Ok((session, _)) => rattacher_page(
            &c,
            StatusCode::OK,
            &session.csrf,
            HashMap::new(),
            Vec::new(),
        ),
        Err(r) => r,
    }
}

/// `POST /dossiers/rattacher`: the holder confirms it holds the dossier,
/// then this node keeps the identity typed here.
pub(super) async fn rattacher_envoye(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let mut erreurs = Vec::new();
    let dossier: Option<DossierId> = field("reference").parse().ok();
    if dossier.is_none() {
        erreurs.push((
            "reference",
            "Recopiez la référence que la personne vous donne, par exemple DSU-3M93KSGYVQ0DBQKAEBR23DSHBW.".to_owned(),
        ));
    }
    let from: Option<crate::types::MemberId> = field("partenaire").parse().ok();
    if from.is_none() {
        erreurs.push((
            "partenaire",
            "Choisissez le partenaire qui détient le dossier.".to_owned(),
        ));
    }
    if field("prenom").is_empty() {
        erreurs.push(("prenom", "Indiquez le prénom de la personne.".to_owned()));
    }
    if field("nom").is_empty() {
        erreurs.push((
            "nom",
            "Indiquez le nom de famille de la personne.".to_owned(),
        ));
    }
    let naissance = super::parse_date(field("naissance"));
    if naissance.is_none() {
        erreurs.push((
            "naissance",
            "Indiquez une date de naissance réelle, par exemple 12/03/1984.".to_owned(),
        ));
    }
    if let (true, Some(dossier), Some(from), Some(naissance)) =
        (erreurs.is_empty(), &dossier, &from, naissance)
    {
        let identity = (field("prenom"), field("nom"), naissance);
        match c.node.attach_dossier(&caller, dossier, from, identity).await {
            Ok(()) => return super::see_other(&format!("/dossiers/{dossier}")),
            Err(ServiceError::Exists(_)) => erreurs.push((
                "reference",
                "Ce dossier est déjà rattaché ici : retrouvez-le par la recherche.".to_owned(),
            )),
            Err(ServiceError::NotFound(what)) if what.starts_with("active member") => erreurs.push((
                "partenaire",
                "Ce partenaire n'est pas un membre actif du GIP.".to_owned(),
            )),
            Err(ServiceError::NotFound(_)) => erreurs.push((
                "reference",
                "Ce partenaire ne détient aucun dossier sous cette référence : vérifiez-la avec la personne.".to_owned(),
            )),
            Err(ServiceError::Remote { kind: crate::service::ErrorKind::NotFound, .. }) => {
                erreurs.push((
                    "reference",
                    "Ce partenaire ne détient aucun dossier sous cette référence : vérifiez-la avec la personne.".to_owned(),
                ))
            }
            Err(ServiceError::Invalid(_)) => erreurs.push((
                "partenaire",
                "Choisissez un autre partenaire que le vôtre, et des noms sans caractères spéciaux.".to_owned(),
            )),
            Err(e @ (ServiceError::Unreachable { .. } | ServiceError::Remote { .. })) => {
                tracing::info!(error = %e, "attaching from the console could not reach the holder");
                erreurs.push((
                    "partenaire",
                    "Ce partenaire ne répond pas pour le moment : réessayez dans un moment.".to_owned(),
                ))
            }
            Err(e) => return dossier_refused(&c, &e),
        }
    }
    rattacher_page(
        &c,
        StatusCode::UNPROCESSABLE_ENTITY,
        &session.csrf,
        form,
        erreurs,
    )
}
