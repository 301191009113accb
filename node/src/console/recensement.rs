//! Publishing to the census of aids from the console (admins): a form for
//! one of this member's services, new or already published (its fields
//! filled in; the places, contacts and hours past the first, which the
//! form does not show, are kept), and withdrawing one. Each publication is
//! the next signed version, logged and offered to every member
//! (`Node::publish_aid`), as with `maillon aids publish`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Console, see_other, session_with, with_token};
use crate::census::{
    Contact, Cost, Criteria, HOUSEHOLDS, Location, Organization, SITUATIONS, Schedule, Service,
    WEEKDAYS,
};
use crate::service::{Caller, ConsoleSession, ServiceError};
use crate::types::Role;

/// The session of an admin, or the French page that refuses it.
fn admin(c: &Console, headers: &HeaderMap) -> Result<(ConsoleSession, Caller), Response> {
    session_with(c, headers, &[Role::Admin], "aux administrateurs du nœud")
}

/// A box to tick: its field name, its French label, ticked or not.
struct Case {
    nom: String,
    libelle: String,
    coche: bool,
}

#[derive(Template)]
#[template(path = "publier.html")]
struct Publier<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    nouveau: bool,
    champs: HashMap<String, String>,
    foyers: Vec<Case>,
    situations: Vec<Case>,
    jours: Vec<Case>,
    gratuit: bool,
    erreur: Option<String>,
}

impl Publier<'_> {
    /// A field's value as typed (or as published), empty if none.
    fn champ(&self, name: &str) -> &str {
        self.champs.get(name).map_or("", String::as_str)
    }
}

fn jour_fr(d: &str) -> &'static str {
    match d {
        "MO" => "lundi",
        "TU" => "mardi",
        "WE" => "mercredi",
        "TH" => "jeudi",
        "FR" => "vendredi",
        "SA" => "samedi",
        _ => "dimanche",
    }
}

/// The form's fields of a published service.
fn fields_of(s: &Service) -> HashMap<String, String> {
    let mut f = HashMap::new();
    let mut set = |k: &str, v: String| {
        f.insert(k.to_owned(), v);
    };
    set("id", s.id.clone());
    set("nom", s.name.clone());
    set("description", s.description.clone());
    set("organisme", s.organization.name.clone());
    set(
        "organisme_site",
        s.organization.url.clone().unwrap_or_default(),
    );
    set("categories", s.categories.join(", "));
    set("pour_qui", s.eligibility_description.clone());
    let c = &s.criteria;
    let number = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    set("age_min", number(c.min_age));
    set("age_max", number(c.max_age));
    set("plafond", number(c.resources_ceiling));
    set("territoire", c.territory.join(", "));
    for h in &c.households {
        set(&format!("foyer_{h}"), "oui".into());
    }
    for st in &c.situations {
        set(&format!("situation_{st}"), "oui".into());
    }
    if let Some(l) = s.locations.first() {
        set("lieu", l.name.clone());
        set("adresse", l.address.clone());
        set("code_postal", l.postal_code.clone());
        set("commune", l.city.clone());
    }
    if let Some(k) = s.contacts.first() {
        set("guichet", k.name.clone());
        set("telephone", k.phone.clone().unwrap_or_default());
        set("courriel", k.email.clone().unwrap_or_default());
    }
    if let Some(h) = s.schedules.first() {
        for d in &h.byday {
            set(&format!("jour_{d}"), "oui".into());
        }
        set("ouverture", h.opens_at.clone());
        set("fermeture", h.closes_at.clone());
    }
    set("langues", s.languages.join(", "));
    if s.cost.free {
        set("gratuit", "oui".into());
    }
    set("cout", s.cost.description.clone());
    set("site", s.url.clone().unwrap_or_default());
    f
}

fn publier_page(
    c: &Console,
    status: StatusCode,
    csrf: &str,
    nouveau: bool,
    champs: HashMap<String, String>,
    erreur: Option<String>,
) -> Response {
    let ticked = |prefix: &str, key: &str| champs.contains_key(&format!("{prefix}_{key}"));
    let case = |prefix: &str, key: &str, libelle: String| Case {
        nom: format!("{prefix}_{key}"),
        libelle,
        coche: ticked(prefix, key),
    };
    let page = Publier {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        nouveau,
        foyers: HOUSEHOLDS
            .iter()
            .map(|h| case("foyer", h, super::reseau::household_fr(h)))
            .collect(),
        situations: SITUATIONS
            .iter()
            .map(|(st, _)| case("situation", st, super::reseau::situation_fr(st)))
            .collect(),
        jours: WEEKDAYS
            .iter()
            .map(|d| case("jour", d, jour_fr(d).to_owned()))
            .collect(),
        gratuit: champs.contains_key("gratuit"),
        champs,
        erreur,
    };
    c.page(status, page.render())
}

/// `GET /aides/publier[?service=ID]`: the form, empty or with one of this
/// member's services (admins).
pub(super) async fn publier(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match admin(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(id) = q.get("service").filter(|s| !s.is_empty()) else {
        return publier_page(
            &c,
            StatusCode::OK,
            &session.csrf,
            true,
            HashMap::new(),
            None,
        );
    };
    match c.node.get_aid(&caller, c.node.member(), id) {
        Ok(e) => {
            let mut champs = fields_of(&e.entry.service);
            champs.insert("version".into(), e.entry.version.to_string());
            publier_page(&c, StatusCode::OK, &session.csrf, false, champs, None)
        }
        Err(ServiceError::NotFound(_)) => c.error(
            StatusCode::NOT_FOUND,
            "Service introuvable",
            "Ce partenaire n'a publié aucun service sous cet identifiant.",
        ),
        Err(e) => c.unavailable(&e, "Recensement indisponible"),
    }
}

/// A comma-separated list, each item trimmed, empty ones left out.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The service the form describes, over `kept` (this member's published
/// one, if any: what the form does not show is kept), or the French reason
/// a field cannot be read.
fn service_of(form: &HashMap<String, String>, kept: Option<Service>) -> Result<Service, String> {
    let field = |name: &str| form.get(name).map_or("", |v| v.trim()).to_owned();
    let ticked = |name: String| form.contains_key(&name);
    let number = |name: &str, what: &str| -> Result<Option<u32>, String> {
        match field(name).as_str() {
            "" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{what} s'écrit en chiffres.")),
        }
    };
    let optional = |name: &str| Some(field(name)).filter(|v| !v.is_empty());
    let mut s = kept.unwrap_or_else(|| Service {
        id: field("id"),
        name: String::new(),
        description: String::new(),
        organization: Organization::default(),
        categories: Vec::new(),
        eligibility_description: String::new(),
        criteria: Criteria::default(),
        locations: Vec::new(),
        contacts: Vec::new(),
        schedules: Vec::new(),
        languages: Vec::new(),
        cost: Cost::default(),
        url: None,
    });
    s.name = field("nom");
    s.description = field("description");
    s.organization = Organization {
        name: field("organisme"),
        url: optional("organisme_site"),
    };
    s.categories = list(&field("categories"));
    s.eligibility_description = field("pour_qui");
    s.criteria = Criteria {
        min_age: number("age_min", "L'âge minimum")?,
        max_age: number("age_max", "L'âge maximum")?,
        households: HOUSEHOLDS
            .iter()
            .filter(|h| ticked(format!("foyer_{h}")))
            .map(|h| (*h).to_owned())
            .collect(),
        resources_ceiling: number("plafond", "Le plafond de ressources")?,
        territory: list(&field("territoire")),
        situations: SITUATIONS
            .iter()
            .filter(|(st, _)| ticked(format!("situation_{st}")))
            .map(|(st, _)| (*st).to_owned())
            .collect(),
    };
    // The first place, contact and hours are the form's; the others stay.
    let place = Location {
        name: field("lieu"),
        address: field("adresse"),
        city: field("commune"),
        postal_code: field("code_postal"),
    };
    replace_first(
        &mut s.locations,
        (!place.city.is_empty() || !place.name.is_empty() || !place.address.is_empty())
            .then_some(place),
    );
    let contact = Contact {
        name: field("guichet"),
        phone: optional("telephone"),
        email: optional("courriel"),
    };
    replace_first(
        &mut s.contacts,
        (!contact.name.is_empty() || contact.phone.is_some() || contact.email.is_some())
            .then_some(contact),
    );
    let days: Vec<String> = WEEKDAYS
        .iter()
        .filter(|d| ticked(format!("jour_{d}")))
        .map(|d| (*d).to_owned())
        .collect();
    let hours = (!days.is_empty() || !field("ouverture").is_empty()).then(|| Schedule {
        byday: days,
        opens_at: field("ouverture"),
        closes_at: field("fermeture"),
    });
    replace_first(&mut s.schedules, hours);
    s.languages = list(&field("langues"))
        .into_iter()
        .map(|l| l.to_lowercase())
        .collect();
    s.cost = Cost {
        free: form.contains_key("gratuit"),
        description: field("cout"),
    };
    s.url = optional("site");
    Ok(s)
}

/// Puts `first` in the place of the list's first item, or removes that
/// item when the form left it empty.
fn replace_first<T>(items: &mut Vec<T>, first: Option<T>) {
    match (items.is_empty(), first) {
        (true, Some(f)) => items.push(f),
        (false, Some(f)) => items[0] = f,
        (false, None) => {
            items.remove(0);
        }
        (true, None) => {}
    }
}

/// Why a service cannot be published, in French, from
/// [`Service::problem`]'s reason.
fn probleme_fr(problem: &str) -> String {
    let field = problem.split(':').next().unwrap_or_default();
    let said = if problem.starts_with("id:") {
        "L'identifiant s'écrit en 2 à 64 minuscules, chiffres, tirets ou soulignés (microcredit, aide-logement)."
    } else if problem.starts_with("name and organization.name") {
        "Le nom du service et celui de l'organisme qui le porte sont nécessaires."
    } else if problem.contains("bytes, without control characters") {
        "Un champ est trop long ou contient un caractère de contrôle."
    } else if problem.contains("items") {
        "Une liste (catégories, langues, territoire…) compte trop d'éléments."
    } else if field == "criteria.territory" {
        "Le territoire se donne en codes INSEE de communes ou en numéros de départements, séparés par des virgules (12, 12202)."
    } else if problem.starts_with("criteria: min_age") {
        "L'âge minimum dépasse l'âge maximum."
    } else if field == "languages" {
        "Une langue se donne par son code à deux lettres (fr, ar, en), séparées par des virgules."
    } else if field == "schedules" {
        "Les horaires : au moins un jour coché, une ouverture et une fermeture au format HH:MM, la fermeture après l'ouverture."
    } else if problem.contains("a category, household or situation") {
        "Une catégorie s'écrit en minuscules, chiffres, tirets ou soulignés (logement, aide-alimentaire)."
    } else {
        "Le service n'est pas valide : vérifiez chaque champ."
    };
    said.to_owned()
}

/// `POST /aides/publier`: publishes the service (admins): a new one, or
/// the next version of one this member published.
pub(super) async fn publier_envoye(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match with_token(&c, &form, admin(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let nouveau = form.get("nouveau").is_some_and(|v| v == "oui");
    let again = |erreur: String| {
        publier_page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session.csrf,
            nouveau,
            form.clone(),
            Some(erreur),
        )
    };
    let id = form.get("id").map_or("", |v| v.trim());
    let kept = match c.node.get_aid(&caller, c.node.member(), id) {
        Ok(e) if nouveau && !e.entry.withdrawn => {
            return again(format!(
                "Ce partenaire publie déjà un service « {id} » : choisissez un autre identifiant, ou modifiez-le depuis sa page."
            ));
        }
        // A new service under a withdrawn one's id starts afresh.
        Ok(_) if nouveau => None,
        Ok(e) if form.get("version").map(String::as_str) != Some(&e.entry.version.to_string()) => {
            return again(format!(
                "Ce service a été publié à nouveau entre-temps (version {}) : rouvrez-le pour partir de cette version.",
                e.entry.version
            ));
        }
        Ok(e) => Some(e.entry.service),
        Err(ServiceError::NotFound(_)) => None,
        Err(e) => return c.unavailable(&e, "Recensement indisponible"),
    };
    let service = match service_of(&form, kept) {
        Ok(s) => s,
        Err(why) => return again(why),
    };
    let id = service.id.clone();
    // A change is made from the version the form showed: checked again
    // under the census's lock.
    let after = if nouveau {
        None
    } else {
        form.get("version").and_then(|v| v.parse::<u64>().ok())
    };
    match c.node.publish_aid_after(&caller, service, false, after).await {
        Ok(_) => see_other(&format!("/aides/{}/{id}", c.node.member())),
        Err(ServiceError::State(_)) => again(
            "Ce service a été publié à nouveau entre-temps : rouvrez-le pour partir de la dernière version."
                .into(),
        ),
        Err(ServiceError::Invalid(problem)) if problem.contains("withdrawn ones included") => again(
            "Ce partenaire a atteint le nombre de services permis, retirés compris : publiez sous l'identifiant d'un service retiré."
                .into(),
        ),
        Err(ServiceError::Invalid(problem)) => again(probleme_fr(&problem)),
        Err(e) => c.unavailable(&e, "Publication impossible"),
    }
}

/// `POST /aides/{membre}/{service}/retirer`: withdraws one of this
/// member's services from the census (admins).
pub(super) async fn retirer(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((membre, service)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match with_token(&c, &form, admin(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let absent = || {
        c.error(
            StatusCode::NOT_FOUND,
            "Service introuvable",
            "Ce partenaire ne publie aucun service sous cette adresse : seul le partenaire qui publie un service le retire.",
        )
    };
    if membre != c.node.member().as_str() {
        return absent();
    }
    let published = match c.node.get_aid(&caller, c.node.member(), &service) {
        Ok(e) if !e.entry.withdrawn => e.entry.service,
        Ok(_) | Err(ServiceError::NotFound(_)) => return absent(),
        Err(e) => return c.unavailable(&e, "Recensement indisponible"),
    };
    match c.node.publish_aid(&caller, published, true).await {
        Ok(_) => see_other(&format!("/aides/{membre}/{service}")),
        Err(ServiceError::NotFound(_)) => absent(),
        Err(e) => c.unavailable(&e, "Retrait impossible"),
    }
}
