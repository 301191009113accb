//! The network at work in the console: the census of aids (search, a
//! service's page), the aids a dossier's readable sections may open
//! (`Node::match_aids`), orienting the person to a partner, and the
//! orientations sent and received with their steps.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dossiers::{dossier_of, dossier_refused};
use super::{Console, caseworker, sections, see_other, session_with, when_fr, with_token};
use crate::census::{Criteria, Criterion, Outcome, Query as AidQuery, SignedEntry};
use crate::service::ServiceError;
use crate::types::{MemberId, OrientationStatus, Role};

/// A service as a line of a list.
struct Ligne {
    membre: String,
    id: String,
    nom: String,
    organisme: String,
    propose_par: String,
    lieux: String,
}

fn ligne(c: &Console, e: &SignedEntry) -> Ligne {
    let s = &e.entry.service;
    Ligne {
        membre: e.entry.member.to_string(),
        id: s.id.clone(),
        nom: s.name.clone(),
        organisme: s.organization.name.clone(),
        propose_par: c.member_name(&e.entry.member),
        lieux: s
            .locations
            .iter()
            .map(|l| l.city.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A household's French name.
pub(super) fn household_fr(h: &str) -> String {
    match h {
        "isolated" => "personne seule".into(),
        "single_parent" => "parent isolé".into(),
        "couple" => "en couple".into(),
        "with_children" => "avec enfants".into(),
        other => other.into(),
    }
}

/// A situation's French name.
pub(super) fn situation_fr(s: &str) -> String {
    match s {
        "job_seeker" => "en recherche d'emploi".into(),
        "retired" => "à la retraite".into(),
        "homeless" => "sans domicile".into(),
        "poorly_housed" => "hébergé ou mal logé".into(),
        "rsa" => "au RSA".into(),
        "disability" => "en situation de handicap".into(),
        "no_health_cover" => "sans couverture maladie".into(),
        "loss_of_autonomy" => "en perte d'autonomie (GIR 1 à 4)".into(),
        "child_protection" => "enfant protégé ou famille accompagnée".into(),
        other => other.into(),
    }
}

/// What one criterion asks, in French.
fn wanted_fr(criteria: &Criteria, criterion: Criterion) -> String {
    match criterion {
        Criterion::Age => match (criteria.min_age, criteria.max_age) {
            (Some(min), Some(max)) => format!("avoir de {min} à {max} ans"),
            (Some(min), None) => format!("avoir {min} ans ou plus"),
            (None, Some(max)) => format!("avoir {max} ans ou moins"),
            (None, None) => String::new(),
        },
        Criterion::Household => format!(
            "foyer : {}",
            criteria
                .households
                .iter()
                .map(|h| household_fr(h))
                .collect::<Vec<_>>()
                .join(" ou ")
        ),
        Criterion::Resources => format!(
            "ressources du foyer au plus {} € par mois",
            criteria.resources_ceiling.unwrap_or_default()
        ),
        Criterion::Territory => format!("habiter : {}", criteria.territory.join(" ou ")),
        Criterion::Situation => format!(
            "situation : {}",
            criteria
                .situations
                .iter()
                .map(|s| situation_fr(s))
                .collect::<Vec<_>>()
                .join(" ou ")
        ),
    }
}

/// Every criterion of a service, in French.
fn criteres_fr(criteria: &Criteria) -> Vec<String> {
    let mut out = Vec::new();
    if criteria.min_age.is_some() || criteria.max_age.is_some() {
        out.push(wanted_fr(criteria, Criterion::Age));
    }
    if !criteria.households.is_empty() {
        out.push(wanted_fr(criteria, Criterion::Household));
    }
    if criteria.resources_ceiling.is_some() {
        out.push(wanted_fr(criteria, Criterion::Resources));
    }
    if !criteria.territory.is_empty() {
        out.push(wanted_fr(criteria, Criterion::Territory));
    }
    if !criteria.situations.is_empty() {
        out.push(wanted_fr(criteria, Criterion::Situation));
    }
    out
}

#[derive(Template)]
#[template(path = "aides.html")]
struct Aides<'a> {
    partner: &'a str,
    version: &'a str,
    texte: String,
    categorie: String,
    commune: String,
    ouvert: bool,
    lignes: Vec<Ligne>,
    publier: bool,
}

/// `GET /aides`: the census searched (every role).
pub(super) async fn aides(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match session_with(
        &c,
        &headers,
        &[Role::Caseworker, Role::Auditor, Role::Admin],
        "aux équipes du partenaire",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| {
        q.get(name)
            .map_or("", |v| v.trim())
            .chars()
            .take(200)
            .collect::<String>()
    };
    let (texte, categorie, commune) = (field("texte"), field("categorie"), field("commune"));
    let ouvert = q.get("ouvert").is_some_and(|v| v == "oui");
    let given = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    let query = AidQuery {
        text: given(&texte),
        category: given(&categorie),
        near: given(&commune),
        open_at: if ouvert {
            AidQuery::paris_minute(c.node.now())
        } else {
            None
        },
    };
    let found = match c.node.search_aids(&caller, &query) {
        Ok(f) => f,
        Err(e) => return c.unavailable(&e, "Recensement indisponible"),
    };
    let page = Aides {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        lignes: found.iter().map(|e| ligne(&c, e)).collect(),
        texte,
        categorie,
        commune,
        ouvert,
        publier: session.role == Role::Admin,
    };
    c.page(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "aide.html")]
struct Aide<'a> {
    partner: &'a str,
    version: &'a str,
    ligne: Ligne,
    retire: bool,
    description: String,
    eligibilite: String,
    categories: String,
    criteres: Vec<String>,
    lieux: Vec<String>,
    horaires: Vec<String>,
    contacts: Vec<String>,
    langues: String,
    cout: String,
    publie: String,
    version_entree: u64,
    /// This member's admin may change or withdraw it (with this token).
    gerer: Option<String>,
}

/// `GET /aides/{membre}/{service}`: one service of the census (every role).
pub(super) async fn aide(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((membre, service)): Path<(String, String)>,
) -> Response {
    let (session, caller) = match session_with(
        &c,
        &headers,
        &[Role::Caseworker, Role::Auditor, Role::Admin],
        "aux équipes du partenaire",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let absent = || {
        c.error(
            StatusCode::NOT_FOUND,
            "Service introuvable",
            "Aucun service du recensement ne porte cette adresse.",
        )
    };
    let Ok(member) = membre.parse::<MemberId>() else {
        return absent();
    };
    let e = match c.node.get_aid(&caller, &member, &service) {
        Ok(e) => e,
        Err(ServiceError::NotFound(_)) => return absent(),
        Err(e) => return c.unavailable(&e, "Recensement indisponible"),
    };
    let s = &e.entry.service;
    let jours = |d: &str| match d {
        "MO" => "lundi",
        "TU" => "mardi",
        "WE" => "mercredi",
        "TH" => "jeudi",
        "FR" => "vendredi",
        "SA" => "samedi",
        _ => "dimanche",
    };
    let page = Aide {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        ligne: ligne(&c, &e),
        retire: e.entry.withdrawn,
        description: s.description.clone(),
        eligibilite: s.eligibility_description.clone(),
        categories: s.categories.join(", "),
        criteres: criteres_fr(&s.criteria),
        lieux: s
            .locations
            .iter()
            .map(|l| {
                [
                    l.name.as_str(),
                    l.address.as_str(),
                    &format!("{} {}", l.postal_code, l.city),
                ]
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
            })
            .collect(),
        horaires: s
            .schedules
            .iter()
            .map(|h| {
                let days: Vec<&str> = h.byday.iter().map(|d| jours(d)).collect();
                format!("{} : {} – {}", days.join(", "), h.opens_at, h.closes_at)
            })
            .collect(),
        contacts: s
            .contacts
            .iter()
            .map(|k| {
                let ways: Vec<&str> = k.phone.iter().chain(&k.email).map(String::as_str).collect();
                format!("{} {}", k.name, ways.join(", ")).trim().to_owned()
            })
            .collect(),
        langues: s.languages.join(", "),
        cout: if s.cost.free {
            "gratuit".into()
        } else {
            s.cost.description.clone()
        },
        publie: when_fr(e.entry.published_at),
        version_entree: e.entry.version,
        gerer: (session.role == Role::Admin && &e.entry.member == c.node.member())
            .then(|| session.csrf.clone()),
    };
    c.page(StatusCode::OK, page.render())
}

/// One criterion checked, in French: what it asks, and how it fared.
struct Critere {
    demande: String,
    verifie: bool,
    detail: String,
}

/// A service proposed for a dossier.
struct Proposition {
    ligne: Ligne,
    criteres: Vec<Critere>,
    orienter: bool,
}

#[derive(Template)]
#[template(path = "aides_dossier.html")]
struct AidesDossier<'a> {
    partner: &'a str,
    version: &'a str,
    dossier: &'a str,
    lues: Vec<String>,
    illisibles: Vec<String>,
    propositions: Vec<Proposition>,
    ecartees: usize,
}

/// `POST /dossiers/{id}/aides`: the aids the sections of the dossier this
/// caseworker may read may open, each criterion explained (caseworkers;
/// every read logged with the purpose given).
pub(super) async fn aides_dossier(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match with_token(&c, &form, caseworker(&c, &headers)) {
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
            "Indiquez en une ligne pourquoi vous lisez le dossier : chaque partenaire l'inscrit dans son journal et la personne peut le lire.",
        );
    }
    let found = match c.node.match_aids(&caller, &dossier, motif).await {
        Ok(f) => f,
        Err(e) => return dossier_refused(&c, &e),
    };
    let me = c.node.member().clone();
    let partie = |owner: &MemberId, s: crate::types::Section| {
        format!("{} ({})", sections::section_fr(s), c.member_name(owner))
    };
    let propositions = found
        .proposed
        .iter()
        .map(|m| Proposition {
            ligne: ligne(&c, &m.entry),
            orienter: m.entry.entry.member != me,
            criteres: m
                .checks
                .iter()
                .map(|k| {
                    let demande = wanted_fr(&m.entry.entry.service.criteria, k.criterion);
                    match &k.outcome {
                        Outcome::Met(found) => Critere {
                            demande,
                            verifie: true,
                            detail: match k.criterion {
                                Criterion::Age => format!("{found} ans"),
                                Criterion::Household => household_fr(found),
                                Criterion::Resources => format!("{found} € par mois"),
                                Criterion::Territory => format!("commune {found}"),
                                Criterion::Situation => situation_fr(found),
                            },
                        },
                        Outcome::Unchecked(needs) if needs.is_empty() => Critere {
                            demande,
                            verifie: false,
                            detail: "aucune partie du dossier ne le dit".into(),
                        },
                        Outcome::Unchecked(_) => Critere {
                            demande,
                            verifie: false,
                            detail: format!(
                                "à vérifier avec la personne : il faudrait la partie {}",
                                needs_fr(&k.outcome)
                            ),
                        },
                        // A proposed service has no failed criterion.
                        Outcome::Failed(_) => Critere {
                            demande,
                            verifie: false,
                            detail: "non rempli".into(),
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let page = AidesDossier {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        dossier: dossier.as_str(),
        lues: found.read.iter().map(|(o, s)| partie(o, *s)).collect(),
        illisibles: found.unread.iter().map(|(o, s, _)| partie(o, *s)).collect(),
        propositions,
        ecartees: found.excluded,
    };
    c.page(StatusCode::OK, page.render())
}

/// The sections an unchecked criterion needs, in French.
fn needs_fr(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Unchecked(needs) => needs
            .iter()
            .map(|s| format!("« {} »", crate::consent::receipt::section_fr(*s)))
            .collect::<Vec<_>>()
            .join(" ou "),
        _ => String::new(),
    }
}

#[derive(Template)]
#[template(path = "orienter.html")]
struct Orienter<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    dossier: &'a str,
    membre: String,
    membre_nom: String,
    service: String,
    service_nom: String,
    motif: String,
    consentement: String,
    erreur: Option<String>,
}

/// `GET /dossiers/{id}/orienter?membre=…&service=…`: the form.
pub(super) async fn orienter(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (session, _) = match caseworker(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    orienter_page(
        &c,
        StatusCode::OK,
        &session.csrf,
        dossier.as_str(),
        &q,
        None,
    )
}

fn orienter_page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    dossier: &str,
    form: &HashMap<String, String>,
    erreur: Option<String>,
) -> Response {
    let field = |name: &str| form.get(name).map_or("", |v| v.trim()).to_owned();
    let membre = field("membre");
    let service = field("service");
    let (membre_nom, service_nom) = match membre.parse::<MemberId>() {
        Ok(m) => (
            c.member_name(&m),
            c.node
                .aid_name(&m, &service)
                .unwrap_or_else(|| service.clone()),
        ),
        Err(_) => (membre.clone(), service.clone()),
    };
    let page = Orienter {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        dossier,
        membre,
        membre_nom,
        service,
        service_nom,
        motif: field("motif"),
        consentement: field("consentement"),
        erreur,
    };
    c.page(status, page.render())
}

/// `POST /dossiers/{id}/orienter`: sends the orientation (caseworkers).
pub(super) async fn orienter_envoye(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match with_token(&c, &form, caseworker(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dossier = match dossier_of(&c, &id) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let again = |erreur: &str| {
        orienter_page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            dossier.as_str(),
            &form,
            Some(erreur.to_owned()),
        )
    };
    let Ok(to) = field("membre").parse::<MemberId>() else {
        return again("Choisissez le partenaire vers qui orienter la personne.");
    };
    let consent = match field("consentement") {
        "" => None,
        text => match text.parse() {
            Ok(k) => Some(k),
            Err(_) => return again("La référence du consentement commence par CNS-."),
        },
    };
    match c
        .node
        .orient(
            &caller,
            &dossier,
            &to,
            field("service"),
            field("motif"),
            consent.as_ref(),
        )
        .await
    {
        Ok(_) => see_other("/orientations"),
        Err(ServiceError::Invalid(_)) => {
            again("Indiquez le motif de l'orientation, en 500 caractères au plus.")
        }
        Err(ServiceError::State(_)) => again(
            "Aucun consentement de la personne en vigueur ne nomme ce partenaire : recueillez-le d'abord (ou le dossier est clos).",
        ),
        Err(ServiceError::NotFound(_)) => {
            again("Ce service n'est pas (ou plus) au recensement de ce partenaire.")
        }
        Err(ServiceError::NotAMember(_)) => {
            again("Ce partenaire n'est pas un membre actif du GIP.")
        }
        Err(e) => dossier_refused(&c, &e),
    }
}

/// An orientation as a line of the list.
struct LigneOrientation {
    id: String,
    dossier: String,
    autre: String,
    service: String,
    motif: String,
    envoyee: String,
    statut: &'static str,
    etapes: Vec<String>,
    repondre: bool,
    terminer: bool,
}

#[derive(Template)]
#[template(path = "orientations.html")]
struct Orientations<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    recues: Vec<LigneOrientation>,
    envoyees: Vec<LigneOrientation>,
}

fn statut_fr(s: OrientationStatus) -> &'static str {
    match s {
        OrientationStatus::Sent => "envoyée, sans réponse",
        OrientationStatus::Accepted => "acceptée",
        OrientationStatus::Declined => "déclinée",
        OrientationStatus::Completed => "menée à son terme",
    }
}

/// `GET /orientations`: those received and sent here (caseworkers answer,
/// auditors look; the list is logged).
pub(super) async fn orientations(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (session, caller) = match session_with(
        &c,
        &headers,
        &[Role::Caseworker, Role::Auditor],
        "aux travailleurs sociaux et aux auditeurs",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all = match c.node.list_orientations(&caller, None, None).await {
        Ok(all) => all,
        Err(e) => return c.unavailable(&e, "Orientations indisponibles"),
    };
    let me = c.node.member().clone();
    let agent = caller.role == Role::Caseworker;
    let (mut recues, mut envoyees) = (Vec::new(), Vec::new());
    for r in &all {
        let o = &r.orientation;
        let received = o.to == me;
        let line = LigneOrientation {
            id: o.id.to_string(),
            dossier: o.dossier.to_string(),
            autre: c.member_name(if received { &o.from } else { &o.to }),
            service: c
                .node
                .aid_name(&o.to, &o.service)
                .unwrap_or_else(|| o.service.clone()),
            motif: o.reason.clone(),
            envoyee: when_fr(o.sent_at),
            statut: statut_fr(r.status),
            etapes: r
                .steps
                .iter()
                .map(|s| {
                    let note = if s.step.note.is_empty() {
                        String::new()
                    } else {
                        format!(" : {}", s.step.note)
                    };
                    format!(
                        "{} le {}{note}",
                        statut_fr(s.step.status),
                        when_fr(s.step.at)
                    )
                })
                .collect(),
            repondre: agent && received && r.status == OrientationStatus::Sent,
            terminer: agent && received && r.status == OrientationStatus::Accepted,
        };
        if received {
            recues.push(line);
        } else {
            envoyees.push(line);
        }
    }
    let page = Orientations {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        recues,
        envoyees,
    };
    c.page(StatusCode::OK, page.render())
}

/// `POST /orientations/{id}`: accept, decline (with its reason) or complete
/// an orientation received here (caseworkers).
pub(super) async fn orientation_etape(
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
            "Orientation introuvable",
            "Aucune orientation reçue ici ne porte cette référence.",
        )
    };
    let Ok(id) = id.parse() else {
        return absent();
    };
    let status = match form.get("action").map(String::as_str) {
        Some("accepter") => OrientationStatus::Accepted,
        Some("decliner") => OrientationStatus::Declined,
        Some("terminer") => OrientationStatus::Completed,
        _ => {
            return c.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Action inconnue",
                "Acceptez, déclinez ou menez à son terme l'orientation.",
            );
        }
    };
    let note = form.get("note").map_or("", |n| n.trim());
    match c.node.step_orientation(&caller, &id, status, note).await {
        Ok(_) => see_other("/orientations"),
        Err(ServiceError::NotFound(_)) => absent(),
        Err(ServiceError::Invalid(_)) => c.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Motif requis",
            "Pour décliner une orientation, dites pourquoi en 500 caractères au plus : le partenaire qui l'a envoyée le lira.",
        ),
        Err(ServiceError::State(_)) => c.error(
            StatusCode::CONFLICT,
            "Étape impossible",
            "L'orientation n'en est plus là : rechargez la liste des orientations.",
        ),
        Err(e) => c.unavailable(&e, "L'étape n'a pas pu être enregistrée"),
    }
}
