//! The shared census of aids: the schemes and services each member offers
//! on the territory, shaped on Open Referral HSDS 3 (a service with its
//! organization, eligibility, locations, contacts, hours, languages and
//! cost), with eligibility also as structured criteria. It holds no
//! personal data, so it may travel to every member freely.
//!
//! Each entry is signed by the node of the member that offers it, in the
//! context `maillon/v1/census`, with a version: of two entries for the same
//! service of the same member, the higher version stands (last writer wins,
//! by signed version); the same version with other content is kept out.
//! Pure: the service layer stores, serves and replicates the entries.

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PublicKey};
use crate::protocol::SignedBytes;
use crate::types::MemberId;

/// Largest signed entry.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// Most items of any list in an entry (categories, locations, hours…).
const MAX_ITEMS: usize = 32;

/// Longest text of an entry's field.
const MAX_TEXT: usize = 2000;

/// A service or aid scheme, as a member describes it (HSDS 3 `service`,
/// compiled with what it links to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its id at the member: `[a-z0-9-]`, 2 to 64 characters.
    pub id: String,
    /// Its name (`Microcrédit personnel`).
    pub name: String,
    /// What it is, for whom, what it gives.
    pub description: String,
    /// The organization that runs it (HSDS `organization`).
    pub organization: Organization,
    /// Its categories (taxonomy terms: `logement`, `alimentation`…).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Who may have it, in words (HSDS `eligibility_description`).
    #[serde(default)]
    pub eligibility_description: String,
    /// Who may have it, as criteria a caseworker's tools can check.
    #[serde(default)]
    pub criteria: Criteria,
    /// Where (HSDS `location`, by its address).
    #[serde(default)]
    pub locations: Vec<Location>,
    /// Whom to reach (HSDS `contact` and `phone`).
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// When it is open (HSDS `schedule`, weekly).
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// The languages it is given in (ISO 639-1: `fr`, `ar`…).
    #[serde(default)]
    pub languages: Vec<String>,
    /// What it costs the person (HSDS `cost_option`, `fees_description`).
    #[serde(default)]
    pub cost: Cost,
    /// Its page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The organization that runs a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Its name.
    pub name: String,
    /// Its site, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Eligibility as criteria: each one given must hold; one not given does
/// not restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// Youngest age, in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<u32>,
    /// Oldest age, in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    /// Households it is for (`isolated`, `single_parent`, `couple`,
    /// `with_children`); empty: any.
    #[serde(default)]
    pub households: Vec<String>,
    /// Most monthly resources of the household, in euros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_ceiling: Option<u32>,
    /// The communes (INSEE codes) or départements (two or three characters)
    /// it serves; empty: the whole territory.
    #[serde(default)]
    pub territory: Vec<String>,
    /// Situations it is for (`job_seeker`, `homeless`, `disability`…);
    /// empty: any.
    #[serde(default)]
    pub situations: Vec<String>,
}

impl Criteria {
    /// Each criterion given, in plain English words.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (self.min_age, self.max_age) {
            (Some(min), Some(max)) => out.push(format!("aged {min} to {max}")),
            (Some(min), None) => out.push(format!("aged {min} or more")),
            (None, Some(max)) => out.push(format!("aged {max} or less")),
            (None, None) => {}
        }
        if !self.households.is_empty() {
            out.push(format!("household: {}", self.households.join(" or ")));
        }
        if let Some(ceiling) = self.resources_ceiling {
            out.push(format!("resources at most {ceiling} € a month"));
        }
        if !self.territory.is_empty() {
            out.push(format!("living in {}", self.territory.join(" or ")));
        }
        if !self.situations.is_empty() {
            out.push(format!("situation: {}", self.situations.join(" or ")));
        }
        out
    }
}

/// An address where the service is given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The place's name.
    pub name: String,
    /// Its street address.
    #[serde(default)]
    pub address: String,
    /// Its commune.
    pub city: String,
    /// Its postal code.
    #[serde(default)]
    pub postal_code: String,
}

/// Whom to reach about the service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// A desk or a role (never a private person's name is needed).
    #[serde(default)]
    pub name: String,
    /// A phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// An address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Opening hours on some days of the week (HSDS `schedule`, `freq` weekly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The days, as iCalendar names them (`MO`, `TU`, `WE`, `TH`, `FR`, `SA`, `SU`).
    pub byday: Vec<String>,
    /// Opening time, `HH:MM`, in Europe/Paris.
    pub opens_at: String,
    /// Closing time, `HH:MM`, after `opens_at`.
    pub closes_at: String,
}

/// What the service costs the person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// Whether it is free.
    pub free: bool,
    /// What it costs, in words, when it is not.
    #[serde(default)]
    pub description: String,
}

/// The days of the week, as `Schedule::byday` names them, Monday first.
pub const WEEKDAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

/// Minutes after midnight of `HH:MM`.
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn slug(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Service {
    /// Reads a service from its JSON (a file an admin wrote): size first,
    /// then the exact fields, then its checks.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CensusError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(CensusError::TooLarge);
        }
        let service: Service = serde_json::from_slice(bytes).map_err(|e| {
            CensusError::Invalid(format!(
                "not a census service: {}",
                crate::escape::escape_controls(&e.to_string())
            ))
        })?;
        match service.problem() {
            Some(problem) => Err(CensusError::Invalid(problem)),
            None => Ok(service),
        }
    }

    /// Why the entry cannot be published, if it cannot: one line.
    pub fn problem(&self) -> Option<String> {
        if !slug(&self.id, 2, 64) {
            return Some("id: 2 to 64 of a-z, 0-9, - and _".into());
        }
        let mut texts: Vec<(&str, &String)> = vec![
            ("name", &self.name),
            ("description", &self.description),
            ("organization.name", &self.organization.name),
            ("eligibility_description", &self.eligibility_description),
            ("cost.description", &self.cost.description),
        ];
        texts.extend(self.url.iter().map(|u| ("url", u)));
        texts.extend(
            self.organization
                .url
                .iter()
                .map(|u| ("organization.url", u)),
        );
        for l in &self.locations {
            texts.extend([
                ("locations.name", &l.name),
                ("locations.address", &l.address),
                ("locations.city", &l.city),
                ("locations.postal_code", &l.postal_code),
            ]);
        }
        for c in &self.contacts {
            texts.push(("contacts.name", &c.name));
            texts.extend(c.phone.iter().map(|p| ("contacts.phone", p)));
            texts.extend(c.email.iter().map(|e| ("contacts.email", e)));
        }
        for (field, text) in texts {
            if text.len() > MAX_TEXT || text.chars().any(|c| c.is_control() && c != '\n') {
                return Some(format!(
                    "{field}: at most {MAX_TEXT} bytes, without control characters"
                ));
            }
        }
        if self.name.trim().is_empty() || self.organization.name.trim().is_empty() {
            return Some("name and organization.name are needed".into());
        }
        let c = &self.criteria;
        let lists = [
            ("categories", self.categories.len()),
            ("locations", self.locations.len()),
            ("contacts", self.contacts.len()),
            ("schedules", self.schedules.len()),
            ("languages", self.languages.len()),
            ("criteria.households", c.households.len()),
            ("criteria.territory", c.territory.len()),
            ("criteria.situations", c.situations.len()),
        ];
        if let Some((field, _)) = lists.iter().find(|(_, n)| *n > MAX_ITEMS) {
            return Some(format!("{field}: at most {MAX_ITEMS} items"));
        }
        let words = self
            .categories
            .iter()
            .chain(&c.households)
            .chain(&c.situations);
        if let Some(w) = words.into_iter().find(|w| !slug(w, 2, 48)) {
            return Some(format!(
                "{w:?}: a category, household or situation is a-z, 0-9, - and _"
            ));
        }
        if let Some(h) = c
            .households
            .iter()
            .find(|h| !HOUSEHOLDS.contains(&h.as_str()))
        {
            return Some(format!(
                "criteria.households: {h:?} is not one of {}",
                HOUSEHOLDS.join(", ")
            ));
        }
        if let Some(s) = c
            .situations
            .iter()
            .find(|s| !SITUATIONS.iter().any(|(known, _)| known == s))
        {
            let known: Vec<&str> = SITUATIONS.iter().map(|(k, _)| *k).collect();
            return Some(format!(
                "criteria.situations: {s:?} is not one of {}",
                known.join(", ")
            ));
        }
        if let Some(t) = c
            .territory
            .iter()
            .find(|t| !(2..=5).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Some(format!(
                "criteria.territory: {t:?} is neither a commune's INSEE code nor a département"
            ));
        }
        if let (Some(min), Some(max)) = (c.min_age, c.max_age)
            && min > max
        {
            return Some("criteria: min_age is above max_age".into());
        }
        if let Some(l) = self
            .languages
            .iter()
            .find(|l| l.len() != 2 || !l.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return Some(format!("languages: {l:?} is not an ISO 639-1 code"));
        }
        for s in &self.schedules {
            if s.byday.is_empty() || s.byday.iter().any(|d| !WEEKDAYS.contains(&d.as_str())) {
                return Some(format!("schedules: days are among {}", WEEKDAYS.join(", ")));
            }
            match (minutes(&s.opens_at), minutes(&s.closes_at)) {
                (Some(open), Some(close)) if open < close => {}
                _ => {
                    return Some(format!(
                        "schedules: {}–{} is not an opening time (HH:MM, opening first)",
                        s.opens_at, s.closes_at
                    ));
                }
            }
        }
        if self.locations.iter().any(|l| l.city.trim().is_empty()) {
            return Some("locations: each names its city".into());
        }
        None
    }

    /// Whether it is open on `weekday` (0: Monday) at `minute` after midnight.
    pub fn open_at(&self, weekday: usize, minute: u32) -> bool {
        let Some(day) = WEEKDAYS.get(weekday) else {
            return false;
        };
        self.schedules.iter().any(|s| {
            s.byday.iter().any(|d| d == day)
                && minutes(&s.opens_at).is_some_and(|o| o <= minute)
                && minutes(&s.closes_at).is_some_and(|c| minute < c)
        })
    }

    /// Whether it answers `query`.
    pub fn matches(&self, query: &Query) -> bool {
        let folded = |s: &str| crate::types::fold_for_search(s);
        if let Some(text) = &query.text {
            let haystack = folded(&format!(
                "{} {} {} {}",
                self.name, self.description, self.organization.name, self.eligibility_description
            ));
            if !folded(text)
                .split_whitespace()
                .all(|w| haystack.contains(w))
            {
                return false;
            }
        }
        if let Some(category) = &query.category
            && !self.categories.iter().any(|c| c == category)
        {
            return false;
        }
        if let Some(near) = &query.near {
            let near = folded(near);
            if !self.locations.iter().any(|l| folded(&l.city) == near) {
                return false;
            }
        }
        if let Some((day, minute)) = query.open_at
            && !self.open_at(day, minute)
        {
            return false;
        }
        true
    }
}

/// What a search of the census asks; each part given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Words found in the name, description, organization or eligibility.
    pub text: Option<String>,
    /// A category.
    pub category: Option<String>,
    /// A commune where it is given.
    pub near: Option<String>,
    /// Open on this day (0: Monday) at this minute after midnight.
    pub open_at: Option<(usize, u32)>,
}

impl Query {
    /// The day (0: Monday) and minute of Unix time `t` in Europe/Paris, for
    /// [`Query::open_at`] ("open now").
    pub fn paris_minute(t: i64) -> Option<(usize, u32)> {
        let local = crate::types::paris(t)?;
        let day = usize::from(local.weekday().number_days_from_monday());
        Some((
            day,
            u32::from(local.hour()) * 60 + u32::from(local.minute()),
        ))
    }
}

/// What a member's node signs of one of its services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The member that offers it.
    pub member: MemberId,
    /// Its version: a higher one replaces a lower one.
    pub version: u64,
    /// When it was published (Unix seconds).
    pub published_at: i64,
    /// Withdrawn: the member no longer offers it (the entry stays, so that
    /// an older version cannot come back).
    #[serde(default)]
    pub withdrawn: bool,
    /// The service.
    pub service: Service,
}

/// Why an entry offered to the census is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CensusError {
    /// Too large.
    #[error("a census entry is at most {MAX_ENTRY_BYTES} bytes")]
    TooLarge,
    /// Not an entry.
    #[error("not a census entry")]
    Malformed,
    /// Not signed by the member it names.
    #[error("not signed by the node of {0}")]
    BadSignature(MemberId),
    /// Its service does not hold.
    #[error("{0}")]
    Invalid(String),
}

/// An entry with its member node's signature, as stored and sent.
#[derive(Clone, Debug)]
pub struct SignedEntry {
    /// The entry, decoded.
    pub entry: Entry,
    /// The signed bytes.
    pub signed: SignedBytes,
}

impl SignedEntry {
    /// Signs `entry` with this member's node key (the entry must hold).
    pub fn sign(entry: Entry, key: &NodeKey) -> Result<Self, CensusError> {
        if let Some(problem) = entry.service.problem() {
            return Err(CensusError::Invalid(problem));
        }
        let signed = SignedBytes::sign(&entry, Context::Census, key);
        if signed.bytes.len() > MAX_ENTRY_BYTES {
            return Err(CensusError::TooLarge);
        }
        Ok(Self { entry, signed })
    }

    /// Opens signed bytes offered as an entry: size first, then the
    /// signature by one of `keys_of(member)` (the keys the roster lists for
    /// the member the entry names), then the service.
    pub fn open(
        signed: SignedBytes,
        keys_of: impl Fn(&MemberId) -> Vec<PublicKey>,
    ) -> Result<Self, CensusError> {
        if signed.bytes.len() > MAX_ENTRY_BYTES {
            return Err(CensusError::TooLarge);
        }
        let entry: Entry =
            serde_json::from_slice(&signed.bytes).map_err(|_| CensusError::Malformed)?;
        let signed_by_it = keys_of(&entry.member)
            .iter()
            .any(|k| signed.verify(Context::Census, k, "census entry").is_ok());
        if !signed_by_it {
            return Err(CensusError::BadSignature(entry.member));
        }
        if let Some(problem) = entry.service.problem() {
            return Err(CensusError::Invalid(problem));
        }
        Ok(Self { entry, signed })
    }

    /// An entry read back from this node's own store, which holds only
    /// entries checked when they came (their signer's key may have been
    /// rotated since): decoded, not verified again.
    pub fn stored(signed: SignedBytes) -> Result<Self, CensusError> {
        let entry: Entry =
            serde_json::from_slice(&signed.bytes).map_err(|_| CensusError::Malformed)?;
        Ok(Self { entry, signed })
    }

    /// Where the census keeps it: its member and its service's id.
    pub fn key(&self) -> String {
        format!("{}/{}", self.entry.member, self.entry.service.id)
    }

    /// Whether it replaces `current` (the entry kept for the same service
    /// of the same member): a higher version does; an equal or lower one
    /// never (the same version with other content is kept out).
    pub fn replaces(&self, current: Option<&SignedEntry>) -> bool {
        match current {
            None => true,
            Some(c) => self.entry.version > c.entry.version,
        }
    }
}

/// The census as an HSDS 3 JSON list of services, each with its member.
pub fn hsds_json(entries: &[SignedEntry]) -> serde_json::Value {
    serde_json::Value::Array(
        entries
            .iter()
            .filter(|e| !e.entry.withdrawn)
            .map(|e| {
                let s = &e.entry.service;
                serde_json::json!({
                    "id": format!("{}/{}", e.entry.member, s.id),
                    "name": s.name,
                    "description": s.description,
                    "url": s.url,
                    "status": "active",
                    "eligibility_description": s.eligibility_description,
                    "fees_description": if s.cost.free { "Gratuit".to_owned() } else { s.cost.description.clone() },
                    "organization": { "name": s.organization.name, "website": s.organization.url },
                    "attributes": s.categories.iter().map(|c| serde_json::json!({
                        "taxonomy_term": { "code": c, "taxonomy": "maillon" }
                    })).collect::<Vec<_>>(),
                    "languages": s.languages.iter().map(|l| serde_json::json!({ "code": l })).collect::<Vec<_>>(),
                    "service_at_locations": s.locations.iter().map(|l| serde_json::json!({
                        "location": {
                            "name": l.name,
                            "addresses": [{
                                "address_1": l.address,
                                "city": l.city,
                                "postal_code": l.postal_code,
                                "country": "FR",
                                "address_type": "physical",
                            }],
                        }
                    })).collect::<Vec<_>>(),
                    "contacts": s.contacts.iter().map(|c| serde_json::json!({
                        "name": c.name,
                        "email": c.email,
                        "phones": c.phone.iter().map(|p| serde_json::json!({ "number": p })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "schedules": s.schedules.iter().map(|h| serde_json::json!({
                        "freq": "WEEKLY",
                        "byday": h.byday.join(","),
                        "opens_at": h.opens_at,
                        "closes_at": h.closes_at,
                    })).collect::<Vec<_>>(),
                    "maillon_criteria": s.criteria,
                    "maillon_version": e.entry.version,
                })
            })
            .collect(),
    )
}

/// What a caseworker's readable sections tell of the person, for
/// [`check`]: each fact `None` (or absent) when no section read tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Age in full years (from the birth date typed at the desk).
    pub age: Option<u32>,
    /// The households the person's is (`isolated`, `single_parent`,
    /// `couple`, `with_children`), from the household section.
    pub households: Option<Vec<&'static str>>,
    /// The household's monthly resources in euros, from the resources section.
    pub resources: Option<u32>,
    /// The commune of residence (INSEE code), from the identity section's
    /// `code_commune`.
    pub commune: Option<String>,
    /// Each situation a section tells, and whether it holds.
    pub situations: Vec<(&'static str, bool)>,
}

/// The households criteria name.
pub const HOUSEHOLDS: [&str; 4] = ["isolated", "single_parent", "couple", "with_children"];

/// The situations [`Facts`] can tell, each with the section that tells it.
pub const SITUATIONS: [(&str, crate::types::Section); 9] = {
    use crate::types::Section as S;
    [
        ("job_seeker", S::Employment),
        ("retired", S::Employment),
        ("homeless", S::Housing),
        ("poorly_housed", S::Housing),
        ("rsa", S::Resources),
        ("disability", S::Disability),
        ("no_health_cover", S::Health),
        ("loss_of_autonomy", S::Autonomy),
        ("child_protection", S::ChildProtection),
    ]
};

impl Facts {
    /// What `sections` (each section read, as JSON) tell, with the age.
    pub fn read(age: Option<u32>, sections: &[(crate::types::Section, serde_json::Value)]) -> Self {
        use crate::types::Section as S;
        use serde_json::Value;
        let get = |section: S, key: &str| -> Option<&Value> {
            sections
                .iter()
                .filter(|(s, _)| *s == section)
                .find_map(|(_, v)| v.get(key).filter(|v| !v.is_null()))
        };
        let text = |section: S, key: &str| get(section, key).and_then(Value::as_str);
        let yes = |section: S, key: &str| get(section, key).and_then(Value::as_bool);
        let number = |section: S, key: &str| get(section, key).and_then(Value::as_f64);

        let households = {
            let family = text(S::Household, "situation_familiale");
            let adults = number(S::Household, "adultes");
            let children = number(S::Household, "enfants");
            let single_parent = yes(S::Household, "parent_isole");
            if family.is_none() && adults.is_none() && children.is_none() && single_parent.is_none()
            {
                None
            } else {
                let mut h = Vec::new();
                let alone = matches!(family, Some("seul" | "séparé" | "veuf"));
                let kids = children.is_some_and(|n| n > 0.0);
                if alone && adults.is_none_or(|n| n <= 1.0) && !kids {
                    h.push("isolated");
                }
                if single_parent == Some(true) || (alone && kids) {
                    h.push("single_parent");
                }
                if family == Some("couple") || adults.is_some_and(|n| n >= 2.0) {
                    h.push("couple");
                }
                if kids {
                    h.push("with_children");
                }
                Some(h)
            }
        };
        let resources = number(S::Resources, "montant_mensuel")
            .filter(|n| *n >= 0.0)
            .map(|n| n.ceil() as u32);
        let commune = text(S::Identity, "code_commune")
            .map(str::trim)
            .filter(|c| c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(str::to_ascii_uppercase);

        let mut situations = Vec::new();
        let mut tell = |name: &'static str, holds: Option<bool>| {
            if let Some(holds) = holds {
                situations.push((name, holds));
            }
        };
        let work = text(S::Employment, "emploi");
        let registered = yes(S::Employment, "inscrit_france_travail");
        tell(
            "job_seeker",
            match (work, registered) {
                (None, None) => None,
                (w, r) => Some(w == Some("recherche") || r == Some(true)),
            },
        );
        tell("retired", work.map(|w| w == "retraite"));
        let housing = text(S::Housing, "situation");
        tell(
            "homeless",
            housing.map(|h| matches!(h, "sans domicile" | "hébergement d'urgence")),
        );
        tell(
            "poorly_housed",
            housing.map(|h| {
                matches!(
                    h,
                    "sans domicile"
                        | "hébergement d'urgence"
                        | "hébergée chez un tiers"
                        | "hébergé chez un tiers"
                        | "foyer ou résidence sociale"
                )
            }),
        );
        tell("rsa", yes(S::Resources, "rsa"));
        let rate = text(S::Disability, "taux_incapacite");
        let rqth = yes(S::Disability, "rqth");
        let aah = yes(S::Resources, "aah");
        tell(
            "disability",
            match (rate, rqth, aah) {
                (None, None, None | Some(false)) => None,
                _ => Some(
                    matches!(rate, Some("50 à 79 %" | "80 % et plus"))
                        || rqth == Some(true)
                        || aah == Some(true),
                ),
            },
        );
        tell(
            "no_health_cover",
            text(S::Health, "couverture").map(|c| c == "aucune"),
        );
        tell(
            "loss_of_autonomy",
            number(S::Autonomy, "gir").map(|g| (1.0..=4.0).contains(&g)),
        );
        tell(
            "child_protection",
            text(S::ChildProtection, "mesure").map(|m| m != "aucune"),
        );
        Self {
            age,
            households,
            resources,
            commune,
            situations,
        }
    }
}

/// One criterion of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// `min_age` and `max_age`.
    Age,
    /// `households`.
    Household,
    /// `resources_ceiling`.
    Resources,
    /// `territory`.
    Territory,
    /// `situations`.
    Situation,
}

/// How one criterion fared against the facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It holds; what showed it (`42`, `isolated`, `820`, `12202`, `rsa`).
    Met(String),
    /// It could not be checked: no section read tells it; the sections
    /// that would.
    Unchecked(Vec<crate::types::Section>),
    /// It does not hold; what showed it.
    Failed(String),
}

/// One criterion checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Which criterion.
    pub criterion: Criterion,
    /// What it asks, in plain English words ([`Criteria::describe`]).
    pub wanted: String,
    /// How it fared.
    pub outcome: Outcome,
}

/// Checks every criterion `criteria` gives against `facts`, in the order
/// of [`Criteria::describe`]. A service is proposed when none failed: rules
/// only, each explained, never a score.
pub fn check(criteria: &Criteria, facts: &Facts) -> Vec<Check> {
    use crate::types::Section as S;
    let mut checks = Vec::new();
    let wanted = criteria.describe();
    let mut wanted = wanted.into_iter();
    let mut push = |criterion, outcome| {
        checks.push(Check {
            criterion,
            wanted: wanted.next().unwrap_or_default(),
            outcome,
        })
    };
    if criteria.min_age.is_some() || criteria.max_age.is_some() {
        push(
            Criterion::Age,
            match facts.age {
                None => Outcome::Unchecked(vec![S::Identity]),
                Some(age)
                    if criteria.min_age.is_none_or(|m| age >= m)
                        && criteria.max_age.is_none_or(|m| age <= m) =>
                {
                    Outcome::Met(age.to_string())
                }
                Some(age) => Outcome::Failed(age.to_string()),
            },
        );
    }
    if !criteria.households.is_empty() {
        push(
            Criterion::Household,
            match &facts.households {
                None => Outcome::Unchecked(vec![S::Household]),
                Some(h) => match criteria.households.iter().find(|w| h.contains(&w.as_str())) {
                    Some(w) => Outcome::Met(w.clone()),
                    None => Outcome::Failed(h.join(", ")),
                },
            },
        );
    }
    if let Some(ceiling) = criteria.resources_ceiling {
        push(
            Criterion::Resources,
            match facts.resources {
                None => Outcome::Unchecked(vec![S::Resources]),
                Some(r) if r <= ceiling => Outcome::Met(r.to_string()),
                Some(r) => Outcome::Failed(r.to_string()),
            },
        );
    }
    if !criteria.territory.is_empty() {
        push(
            Criterion::Territory,
            match &facts.commune {
                None => Outcome::Unchecked(vec![S::Identity]),
                Some(c) => {
                    let inside = criteria.territory.iter().any(|t| {
                        let t = t.to_ascii_uppercase();
                        if t.len() == 5 {
                            *c == t
                        } else {
                            c.starts_with(&t)
                        }
                    });
                    if inside {
                        Outcome::Met(c.clone())
                    } else {
                        Outcome::Failed(c.clone())
                    }
                }
            },
        );
    }
    if !criteria.situations.is_empty() {
        let known = |w: &str| {
            facts
                .situations
                .iter()
                .find(|(s, _)| *s == w)
                .map(|(_, h)| *h)
        };
        let outcome = if let Some(w) = criteria.situations.iter().find(|w| known(w) == Some(true)) {
            Outcome::Met(w.clone())
        } else if criteria.situations.iter().all(|w| known(w) == Some(false)) {
            Outcome::Failed(criteria.situations.join(", "))
        } else {
            let mut needs: Vec<S> = criteria
                .situations
                .iter()
                .filter(|w| known(w).is_none())
                .filter_map(|w| {
                    SITUATIONS
                        .iter()
                        .find(|(s, _)| s == w)
                        .map(|(_, section)| *section)
                })
                .collect();
            needs.sort_by_key(|s| s.to_string());
            needs.dedup();
            Outcome::Unchecked(needs)
        };
        push(Criterion::Situation, outcome);
    }
    checks
}

/// One CSV field, quoted when it must be, and never read as a formula by
/// a spreadsheet (a leading `=`, `+`, `-`, `@` is prefixed with `'`).
fn csv_field(text: &str) -> String {
    let text = match text.chars().next() {
        Some('=' | '+' | '-' | '@') => format!("'{text}"),
        _ => text.to_owned(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The census as CSV, one service a line.
pub fn csv(entries: &[SignedEntry]) -> String {
    let mut out = String::from(
        "member,id,name,organization,categories,cities,free,fees,languages,eligibility,version\n",
    );
    for e in entries.iter().filter(|e| !e.entry.withdrawn) {
        let s = &e.entry.service;
        let cities: Vec<&str> = s.locations.iter().map(|l| l.city.as_str()).collect();
        let fields = [
            e.entry.member.to_string(),
            s.id.clone(),
            s.name.clone(),
            s.organization.name.clone(),
            s.categories.join(" "),
            cities.join(" "),
            s.cost.free.to_string(),
            s.cost.description.clone(),
            s.languages.join(" "),
            s.eligibility_description.clone(),
            e.entry.version.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn microcredit() -> Service {
        Service {
            id: "microcredit".into(),
            name: "Microcrédit personnel".into(),
            description:
                "Un prêt de 300 à 5 000 € pour un projet (permis, véhicule, logement), accompagné."
                    .into(),
            organization: Organization {
                name: "Secours catholique, délégation de l'Aveyron".into(),
                url: None,
            },
            categories: vec!["microcredit".into(), "mobilite".into()],
            eligibility_description: "Personnes exclues du crédit bancaire.".into(),
            criteria: Criteria {
                min_age: Some(18),
                resources_ceiling: Some(1500),
                territory: vec!["12".into()],
                ..Criteria::default()
            },
            locations: vec![Location {
                name: "Accueil de Rodez".into(),
                address: "2 rue de la Paix".into(),
                city: "Rodez".into(),
                postal_code: "12000".into(),
            }],
            contacts: vec![Contact {
                name: "Accueil".into(),
                phone: Some("05 65 00 00 00".into()),
                email: None,
            }],
            schedules: vec![Schedule {
                byday: vec!["TU".into(), "TH".into()],
                opens_at: "09:00".into(),
                closes_at: "12:00".into(),
            }],
            languages: vec!["fr".into()],
            cost: Cost {
                free: true,
                description: String::new(),
            },
            url: None,
        }
    }

    fn member(id: &str) -> MemberId {
        id.parse().expect("a member id")
    }

    #[test]
    fn an_entry_is_signed_by_its_member_and_refused_signed_by_another() {
        let (asso, other) = (NodeKey::generate(), NodeKey::generate());
        let entry = Entry {
            member: member("secours-12"),
            version: 1,
            published_at: 1_800_000_000,
            withdrawn: false,
            service: microcredit(),
        };
        let signed = SignedEntry::sign(entry.clone(), &asso).expect("signed");
        let keys = |m: &MemberId| {
            if m.as_str() == "secours-12" {
                vec![asso.public()]
            } else {
                Vec::new()
            }
        };
        let opened = SignedEntry::open(signed.signed.clone(), keys).expect("opens");
        assert_eq!(opened.entry, entry);
        assert_eq!(opened.key(), "secours-12/microcredit");
        // Signed by another node, or naming a member it is not: refused.
        let forged = SignedEntry::sign(entry.clone(), &other).expect("signed");
        assert_eq!(
            SignedEntry::open(forged.signed, keys).err(),
            Some(CensusError::BadSignature(member("secours-12")))
        );
        // Bytes changed after signing: refused.
        let mut tampered = signed.signed.clone();
        let text = String::from_utf8(tampered.bytes).expect("utf-8");
        tampered.bytes = text.replace("300", "900").into_bytes();
        assert!(matches!(
            SignedEntry::open(tampered, keys),
            Err(CensusError::BadSignature(_))
        ));
        // Too large, or not an entry: refused before any signature check.
        let big = SignedBytes {
            bytes: vec![b' '; MAX_ENTRY_BYTES + 1],
            signature: signed.signed.signature,
        };
        assert_eq!(
            SignedEntry::open(big, keys).err(),
            Some(CensusError::TooLarge)
        );
        let junk = SignedBytes {
            bytes: b"{\"not\":1}".to_vec(),
            signature: signed.signed.signature,
        };
        assert_eq!(
            SignedEntry::open(junk, keys).err(),
            Some(CensusError::Malformed)
        );
    }

    #[test]
    fn the_higher_version_stands() {
        let key = NodeKey::generate();
        let at = |version: u64, name: &str| {
            let mut service = microcredit();
            service.name = name.into();
            SignedEntry::sign(
                Entry {
                    member: member("secours-12"),
                    version,
                    published_at: 1_800_000_000 + version as i64,
                    withdrawn: false,
                    service,
                },
                &key,
            )
            .expect("signed")
        };
        let (v1, v2, v2_other) = (
            at(1, "Microcrédit"),
            at(2, "Microcrédit social"),
            at(2, "Autre"),
        );
        assert!(v1.replaces(None));
        assert!(v2.replaces(Some(&v1)));
        assert!(!v1.replaces(Some(&v2)), "an older version never comes back");
        assert!(
            !v2_other.replaces(Some(&v2)),
            "the same version is not replaced"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = |edit: fn(&mut Service)| {
            let mut s = microcredit();
            edit(&mut s);
            s.problem().expect("refused")
        };
        assert!(microcredit().problem().is_none());
        assert!(bad(|s| s.id = "Micro Crédit".into()).starts_with("id:"));
        assert!(bad(|s| s.name = " ".into()).contains("name"));
        assert!(bad(|s| s.description = "a\u{1b}[2J".into()).starts_with("description:"));
        assert!(bad(|s| s.categories = vec!["Logement!".into()]).contains("category"));
        assert!(bad(|s| s.criteria.territory = vec!["Rodez centre".into()]).contains("territory"));
        assert!(bad(|s| s.criteria.max_age = Some(10)).contains("min_age"));
        assert!(bad(|s| s.languages = vec!["français".into()]).contains("ISO 639-1"));
        assert!(bad(|s| s.schedules[0].byday = vec!["LU".into()]).contains("days"));
        assert!(bad(|s| s.schedules[0].closes_at = "08:00".into()).contains("opening time"));
        assert!(bad(|s| s.schedules[0].opens_at = "9h".into()).contains("opening time"));
        assert!(bad(|s| s.locations[0].city = String::new()).contains("city"));
        assert!(bad(|s| s.categories = vec!["aa".into(); 33]).contains("at most 32"));
    }

    #[test]
    fn a_search_holds_every_part_it_gives() {
        let s = microcredit();
        let q = |text: Option<&str>, category: Option<&str>, near: Option<&str>, open_at| Query {
            text: text.map(str::to_owned),
            category: category.map(str::to_owned),
            near: near.map(str::to_owned),
            open_at,
        };
        assert!(s.matches(&Query::default()));
        assert!(s.matches(&q(Some("microcredit pret"), None, None, None)));
        assert!(s.matches(&q(Some("SECOURS"), Some("mobilite"), Some("rodez"), None)));
        assert!(!s.matches(&q(Some("alimentaire"), None, None, None)));
        assert!(!s.matches(&q(None, Some("logement"), None, None)));
        assert!(!s.matches(&q(None, None, Some("Millau"), None)));
        // Tuesday 10:30 open; Tuesday 12:00 closed; Monday closed.
        assert!(s.matches(&q(None, None, None, Some((1, 630)))));
        assert!(!s.matches(&q(None, None, None, Some((1, 720)))));
        assert!(!s.matches(&q(None, None, None, Some((0, 630)))));
    }

    #[test]
    fn exports_are_hsds_json_and_csv_without_formulas() {
        let key = NodeKey::generate();
        let mut service = microcredit();
        service.cost = Cost {
            free: false,
            description: "=1+1, \"frais\" de dossier".into(),
        };
        let entry = |withdrawn: bool, id: &str| {
            let mut service = service.clone();
            service.id = id.into();
            SignedEntry::sign(
                Entry {
                    member: member("secours-12"),
                    version: 1,
                    published_at: 0,
                    withdrawn,
                    service,
                },
                &key,
            )
            .expect("signed")
        };
        let entries = [entry(false, "microcredit"), entry(true, "ancien")];
        let json = hsds_json(&entries);
        let list = json.as_array().expect("a list");
        assert_eq!(list.len(), 1, "a withdrawn service is not exported");
        assert_eq!(list[0]["id"], "secours-12/microcredit");
        assert_eq!(
            list[0]["service_at_locations"][0]["location"]["addresses"][0]["city"],
            "Rodez"
        );
        assert_eq!(list[0]["schedules"][0]["byday"], "TU,TH");
        let text = csv(&entries);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[1].contains("\"'=1+1, \"\"frais\"\" de dossier\""),
            "{text}"
        );
    }

    #[test]
    fn the_sections_read_tell_facts_and_each_criterion_is_met_failed_or_unchecked_with_why() {
        use crate::types::Section as S;
        let sections = vec![
            (
                S::Household,
                serde_json::json!({"situation_familiale": "séparé", "adultes": 1, "enfants": 2}),
            ),
            (
                S::Resources,
                serde_json::json!({"rsa": true, "montant_mensuel": 820.5}),
            ),
            (S::Identity, serde_json::json!({"code_commune": "12202"})),
            (
                S::Housing,
                serde_json::json!({"situation": "hébergée chez un tiers"}),
            ),
        ];
        let facts = Facts::read(Some(34), &sections);
        assert_eq!(
            facts.households,
            Some(vec!["single_parent", "with_children"])
        );
        assert_eq!(facts.resources, Some(821));
        assert_eq!(facts.commune.as_deref(), Some("12202"));
        assert!(facts.situations.contains(&("rsa", true)));
        assert!(facts.situations.contains(&("poorly_housed", true)));
        assert!(facts.situations.contains(&("homeless", false)));
        assert!(!facts.situations.iter().any(|(s, _)| *s == "job_seeker"));

        let criteria = Criteria {
            min_age: Some(18),
            max_age: None,
            households: vec!["single_parent".into(), "isolated".into()],
            resources_ceiling: Some(1000),
            territory: vec!["12".into()],
            situations: vec!["job_seeker".into(), "disability".into()],
        };
        let checks = check(&criteria, &facts);
        let outcomes: Vec<_> = checks
            .iter()
            .map(|c| (c.criterion, c.outcome.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (Criterion::Age, Outcome::Met("34".into())),
                (Criterion::Household, Outcome::Met("single_parent".into())),
                (Criterion::Resources, Outcome::Met("821".into())),
                (Criterion::Territory, Outcome::Met("12202".into())),
                (
                    Criterion::Situation,
                    Outcome::Unchecked(vec![S::Disability, S::Employment])
                ),
            ]
        );
        assert_eq!(checks[2].wanted, "resources at most 1000 € a month");

        // Above the ceiling, out of the territory, too young: each fails.
        let strict = Criteria {
            max_age: Some(25),
            resources_ceiling: Some(800),
            territory: vec!["12145".into(), "81".into()],
            situations: vec!["homeless".into()],
            ..Criteria::default()
        };
        let failed: Vec<_> = check(&strict, &facts)
            .into_iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .map(|c| c.criterion)
            .collect();
        assert_eq!(
            failed,
            [
                Criterion::Age,
                Criterion::Resources,
                Criterion::Territory,
                Criterion::Situation
            ]
        );

        // Nothing read: every criterion unchecked, naming the section that would tell.
        let blind = check(&criteria, &Facts::default());
        assert!(
            blind
                .iter()
                .all(|c| matches!(c.outcome, Outcome::Unchecked(_)))
        );
        assert_eq!(blind[2].outcome, Outcome::Unchecked(vec![S::Resources]));
        // No criterion: nothing to check, the service stands for anyone.
        assert!(check(&Criteria::default(), &facts).is_empty());
    }
}
