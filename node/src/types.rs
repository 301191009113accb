//! Domain newtypes: member ids, dossier ids, sections, roles, consent ids.
//!
//! Every value here is parsed once at the edge ("parse, don't validate"), so the
//! rest of the node handles only well-formed identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that failed to parse as one of the domain types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what}: {reason}")]
pub struct ParseError {
    /// Which kind of value was expected.
    pub what: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl ParseError {
    /// A refusal of a `what`, for `reason`.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A member of the federation: a slug `[a-z0-9-]{2,32}` such as `ccas-rodez`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);

impl MemberId {
    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MemberId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(2..=32).contains(&s.len()) || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(ParseError::new(
                "member id",
                "expected 2 to 32 characters among a-z, 0-9 and '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}
string_serde!(MemberId);

/// Crockford base32 alphabet: no I, L, O, U, so ids read aloud at a desk stay unambiguous.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn crockford_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(CROCKFORD[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(CROCKFORD[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A random 128-bit identifier printed as `PREFIX-` and 26 Crockford base32 characters.
fn parse_random_id(s: &str, prefix: &str, what: &'static str) -> Result<String, ParseError> {
    let Some(rest) = s.strip_prefix(prefix) else {
        return Err(ParseError::new(
            what,
            format!("expected the prefix {prefix}"),
        ));
    };
    if rest.len() != 26 || !rest.bytes().all(|b| CROCKFORD.contains(&b)) {
        return Err(ParseError::new(
            what,
            "expected 26 base32 characters after the prefix",
        ));
    }
    Ok(s.to_owned())
}

fn random_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}{}", crockford_encode(&bytes))
}

/// A person's dossier social unique: random, opaque, printable (`DSU-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DossierId(String);

impl DossierId {
    /// A fresh random dossier id.
    pub fn random() -> Self {
        Self(random_id("DSU-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DossierId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "DSU-", "dossier id").map(Self)
    }
}

impl fmt::Display for DossierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(DossierId);

/// A recorded consent (`CNS-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConsentId(String);

impl ConsentId {
    /// A fresh random consent id.
    pub fn random() -> Self {
        Self(random_id("CNS-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ConsentId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "CNS-", "consent id").map(Self)
    }
}

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(ConsentId);

/// A break-glass access an owner granted (`BGL-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GrantId(String);

impl GrantId {
    /// A fresh random grant id.
    pub fn random() -> Self {
        Self(random_id("BGL-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GrantId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "BGL-", "break-glass id").map(Self)
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(GrantId);

/// A coordination commission on a dossier (`COM-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct CommissionId(String);

impl CommissionId {
    /// A fresh random commission id.
    pub fn random() -> Self {
        Self(random_id("COM-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommissionId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "COM-", "commission id").map(Self)
    }
}

impl fmt::Display for CommissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(CommissionId);

/// A vigilance alert (`ALR-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AlertId(String);

impl AlertId {
    /// A fresh random alert id.
    pub fn random() -> Self {
        Self(random_id("ALR-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AlertId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "ALR-", "alert id").map(Self)
    }
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(AlertId);

/// An orientation of a person from one member to another (`ORI-…`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct OrientationId(String);

impl OrientationId {
    /// A fresh random orientation id.
    pub fn random() -> Self {
        Self(random_id("ORI-"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OrientationId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_random_id(s, "ORI-", "orientation id").map(Self)
    }
}

impl fmt::Display for OrientationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(OrientationId);

macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's wire and command-line name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseError::new($what, format!(
                        "expected one of: {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        string_serde!($name);
    };
}

word_enum!(
    /// A fixed category of a dossier's content.
    Section, "section", {
        /// Civil identity as the person gave it.
        Identity => "identity",
        /// Household composition.
        Household => "household",
        /// Housing situation.
        Housing => "housing",
        /// Income and benefits (RSA, APL, AAH…).
        Resources => "resources",
        /// Employment and insertion.
        Employment => "employment",
        /// Health.
        Health => "health",
        /// Disability.
        Disability => "disability",
        /// Autonomy of elderly people.
        Autonomy => "autonomy",
        /// Child protection.
        ChildProtection => "child_protection",
        /// The parcours: goals, actions, appointments.
        SupportPlan => "support_plan",
    }
);

word_enum!(
    /// What kind of institution a member is; the charter grants sections per kind.
    MemberKind, "member kind", {
        /// A département council.
        Departement => "departement",
        /// A municipal social action centre.
        Ccas => "ccas",
        /// A family allowance fund.
        Caf => "caf",
        /// A health insurance fund.
        Cpam => "cpam",
        /// A hospital.
        Hospital => "hospital",
        /// A charity.
        Association => "association",
    }
);

word_enum!(
    /// What a vigilance alert is about.
    AlertConcern, "alert concern", {
        /// Someone who seems isolated.
        Isolation => "isolation",
        /// Someone whose health seems at risk.
        Health => "health",
        /// Someone whose home seems unfit or lost.
        Housing => "housing",
        /// Someone who seems in danger from others.
        Danger => "danger",
        /// Anything else worrying.
        Other => "other",
    }
);

word_enum!(
    /// Where a vigilance alert stands.
    AlertStatus, "alert status", {
        /// Raised, not delivered to the recipient yet.
        Raised => "raised",
        /// Received by the recipient.
        Received => "received",
        /// Taken into account by a caseworker of the recipient.
        Taken => "taken",
        /// Closed by the recipient, with an outcome (its raiser sees it
        /// as taken into account).
        Closed => "closed",
    }
);

word_enum!(
    /// How the recipient closed an alert.
    AlertOutcome, "alert outcome", {
        /// The person was contacted; nothing more was needed.
        Contacted => "contacted",
        /// A dossier was opened for the person.
        DossierOpened => "dossier_opened",
        /// The person was directed to another service or member.
        Referred => "referred",
        /// The person could not be reached.
        Unreachable => "unreachable",
        /// Nothing was needed.
        NoAction => "no_action",
    }
);

word_enum!(
    /// Where an orientation stands.
    OrientationStatus, "orientation status", {
        /// Sent, not answered yet.
        Sent => "sent",
        /// The receiving member takes the person in.
        Accepted => "accepted",
        /// The receiving member declined, with a reason.
        Declined => "declined",
        /// The receiving member completed it (the person has the service).
        Completed => "completed",
    }
);

impl OrientationStatus {
    /// Whether an orientation may go from this status to `next`: a sent
    /// one is accepted, declined or completed; an accepted one completed
    /// or declined; declined and completed are final.
    pub fn may_become(self, next: OrientationStatus) -> bool {
        use OrientationStatus::*;
        matches!(
            (self, next),
            (Sent, Accepted | Declined | Completed) | (Accepted, Completed | Declined)
        )
    }
}

word_enum!(
    /// What a node-local user may do through the client API.
    Role, "role", {
        /// Manages users of this node.
        Admin => "admin",
        /// Opens dossiers, records consent, reads shares.
        Caseworker => "caseworker",
        /// Reads the audit log.
        Auditor => "auditor",
        /// A neighbourhood référent or a partner association's volunteer:
        /// raises vigilance alerts and sees only that they were received
        /// and taken into account.
        Volunteer => "volunteer",
    }
);

word_enum!(
    /// Why a dossier's parcours ended (a closed list: it reaches the log).
    ClosureReason, "closure reason", {
        /// The parcours reached its goals.
        EndOfParcours => "end_of_parcours",
        /// The person moved out of the territory.
        MovedAway => "moved_away",
        /// The person asked to end it.
        PersonRequest => "person_request",
        /// The person died.
        Deceased => "deceased",
        /// Another reason, kept in the holder's own records.
        Other => "other",
    }
);

word_enum!(
    /// On what ground a dossier was erased.
    ErasureGround, "erasure ground", {
        /// The person asked (RGPD art. 17), and no legal obligation keeps the data.
        PersonRequest => "person_request",
        /// The charter's retention after closing ran out.
        Retention => "retention",
    }
);

word_enum!(
    /// A member's standing in the roster.
    MemberStatus, "member status", {
        /// Takes part in the federation.
        Active => "active",
        /// Temporarily refused by every peer.
        Suspended => "suspended",
        /// Permanently refused.
        Excluded => "excluded",
    }
);

/// A node-local user name: 1 to 64 characters among letters, digits, `.`, `_`, `-`, `@`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct UserName(String);

impl UserName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if !ok {
            return Err(ParseError::new(
                "user name",
                "expected 1 to 64 characters among letters, digits, '.', '_', '-', '@'",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}
string_serde!(UserName);

/// A calendar date (`YYYY-MM-DD`), as used for consent end dates and birth dates.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date(time::Date);

impl Date {
    /// The first second of this day (UTC), as Unix seconds.
    pub fn start_unix(self) -> i64 {
        self.0.midnight().assume_utc().unix_timestamp()
    }
    /// The first second after this day ends (UTC), as Unix seconds.
    pub fn end_unix(self) -> i64 {
        self.0.midnight().assume_utc().unix_timestamp() + 86_400
    }
    /// Full years from this date (a birth date) to `on`; `None` before it.
    pub fn years_to(self, on: Date) -> Option<u32> {
        let (b, o) = (self.0, on.0);
        let mut years = o.year() - b.year();
        if (o.month() as u8, o.day()) < (b.month() as u8, b.day()) {
            years -= 1;
        }
        u32::try_from(years).ok()
    }
    /// The day containing the given Unix time (UTC).
    pub fn from_unix(secs: i64) -> Self {
        let dt = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Self(dt.date())
    }
}

impl FromStr for Date {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s, &format)
            .map(Self)
            .map_err(|_| ParseError::new("date", "expected a valid YYYY-MM-DD date"))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}
string_serde!(Date);

/// Longest purpose of a consent or a read (bytes).
pub const MAX_PURPOSE: usize = 200;

/// Longest display name of a member (bytes).
pub const MAX_DISPLAY_NAME: usize = 200;

/// Checks a short text a person reads (a name, a purpose): not blank, at
/// most `max` bytes, no control characters. The one rule for every such field.
pub fn check_short_text(what: &'static str, value: &str, max: usize) -> Result<(), ParseError> {
    if value.trim().is_empty() {
        return Err(ParseError::new(what, "it is empty"));
    }
    if value.len() > max {
        return Err(ParseError::new(
            what,
            format!("it is longer than {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ParseError::new(what, "it contains control characters"));
    }
    Ok(())
}

/// Checks a purpose ("coordination du parcours") of a consent or a read,
/// shown to the person in their access report: a short text of at most
/// [`MAX_PURPOSE`] bytes.
pub fn check_purpose(purpose: &str) -> Result<(), ParseError> {
    check_short_text("purpose", purpose, MAX_PURPOSE)
}

/// Shortest break-glass justification (bytes): a real sentence, not a placeholder.
pub const MIN_JUSTIFICATION: usize = 40;

/// Longest break-glass justification or review comment (bytes).
pub const MAX_JUSTIFICATION: usize = 1000;

/// Checks a break-glass justification or an auditor's review comment
/// (`what` names it): at least `min` bytes, at most [`MAX_JUSTIFICATION`],
/// no control characters, and a sentence: at least five words of two
/// letters or more, no word making up half of them ("urgence urgence …").
pub fn check_sentence(what: &'static str, text: &str, min: usize) -> Result<(), ParseError> {
    check_short_text(what, text, MAX_JUSTIFICATION)?;
    if text.trim().len() < min {
        return Err(ParseError::new(
            what,
            format!("write a real sentence of at least {min} characters"),
        ));
    }
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for w in &words {
        *counts.entry(w.as_str()).or_insert(0usize) += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    if words.len() < 5 || 2 * most > words.len() {
        return Err(ParseError::new(
            what,
            "write a real sentence: at least five different words",
        ));
    }
    Ok(())
}

/// Checks a break-glass justification ([`check_sentence`], at least
/// [`MIN_JUSTIFICATION`] bytes).
pub fn check_justification(text: &str) -> Result<(), ParseError> {
    check_sentence("justification", text, MIN_JUSTIFICATION)
}

/// Checks a member's display name ("CCAS de Rodez"), for `maillon node init`
/// and for every card a roster carries: a short text of at most
/// [`MAX_DISPLAY_NAME`] bytes.
pub fn check_display_name(name: &str) -> Result<(), ParseError> {
    check_short_text("display name", name, MAX_DISPLAY_NAME)
}

/// Checks a peer endpoint, what other members dial: `host:port` with a host
/// of letters, digits, '-', '.', or an IPv6 address in brackets, and a port
/// number. The one rule for `maillon node init` and for every roster card.
pub fn check_endpoint(endpoint: &str) -> Result<(), ParseError> {
    let bad = || {
        Err(ParseError::new(
            "peer endpoint",
            format!("{:?}: expected host:port", escape_controls(endpoint)),
        ))
    };
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad();
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad();
    }
    Ok(())
}

/// Text from outside (a peer's message, a section) made safe to show in a
/// log line or a terminal: control characters are escaped (`\u{1b}`, `\n`),
/// every other character, accented letters included, is kept.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A section's name in French, as the person reads it.
pub fn section_fr(s: Section) -> &'static str {
    match s {
        Section::Identity => "identité",
        Section::Household => "composition du foyer",
        Section::Housing => "logement",
        Section::Resources => "ressources",
        Section::Employment => "emploi et insertion",
        Section::Health => "santé",
        Section::Disability => "handicap",
        Section::Autonomy => "autonomie",
        Section::ChildProtection => "protection de l'enfance",
        Section::SupportPlan => "plan d'accompagnement",
    }
}

/// Lower case without accents, for matching names as people type them.
pub fn fold_for_search(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' | 'í' | 'ì' => out.push('i'),
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => out.push('o'),
            'ù' | 'û' | 'ü' | 'ú' => out.push('u'),
            'ÿ' | 'ý' => out.push('y'),
            'ç' => out.push('c'),
            'ñ' => out.push('n'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            '-' | '\'' | '’' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The ground on which sections are shared (RGPD art. 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LegalBasis {
    /// The person's consent.
    Consent,
    /// A legal mission where the law allows sharing without consent; the
    /// provision says which (e.g. "CASF L.226-2-2", secret partagé en
    /// protection de l'enfance).
    LegalMission {
        /// The provision of law, as the caseworker cites it.
        provision: String,
    },
}

/// How the person gave the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Collection {
    /// A form the person signed, kept by the owner under this reference.
    SignedForm {
        /// The form's reference in the owner's records.
        reference: String,
    },
    /// Said aloud at the desk, witnessed by the recording caseworker.
    Oral,
    /// Under a legal mission the person is informed, not asked.
    Informed,
}

impl LegalBasis {
    /// Its wire and command-line name.
    pub fn as_str(&self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::LegalMission { .. } => "legal_mission",
        }
    }

    /// Parses a kind (`consent`, the default when empty, or
    /// `legal_mission`) and its provision (empty for a consent).
    pub fn from_parts(kind: &str, provision: &str) -> Result<Self, ParseError> {
        match (kind, provision.trim()) {
            ("" | "consent", "") => Ok(LegalBasis::Consent),
            ("" | "consent", _) => Err(ParseError::new(
                "legal basis",
                "a provision of law goes with a legal mission only",
            )),
            ("legal_mission", "") => Err(ParseError::new(
                "legal basis",
                "a legal mission names its provision of law",
            )),
            ("legal_mission", p) => Ok(LegalBasis::LegalMission {
                provision: p.to_owned(),
            }),
            _ => Err(ParseError::new(
                "legal basis",
                "expected one of: consent, legal_mission",
            )),
        }
    }
}

impl Collection {
    /// Parses a method (`signed_form`, `oral`, `informed`) and the signed
    /// form's reference (empty for the others).
    pub fn from_parts(method: &str, reference: &str) -> Result<Self, ParseError> {
        match (method, reference.trim()) {
            ("signed_form", "") => Err(ParseError::new(
                "collection",
                "a signed form is recorded with its reference",
            )),
            ("signed_form", r) => Ok(Collection::SignedForm {
                reference: r.to_owned(),
            }),
            ("oral" | "informed", r) if !r.is_empty() => Err(ParseError::new(
                "collection",
                "a form reference goes with a signed form only",
            )),
            ("oral", _) => Ok(Collection::Oral),
            ("informed", _) => Ok(Collection::Informed),
            ("", _) => Err(ParseError::new(
                "collection",
                "say how the person gave it: signed_form, oral or informed",
            )),
            _ => Err(ParseError::new(
                "collection",
                "expected one of: signed_form, oral, informed",
            )),
        }
    }

    /// Its wire and command-line name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Collection::SignedForm { .. } => "signed_form",
            Collection::Oral => "oral",
            Collection::Informed => "informed",
        }
    }
}

/// The last Sunday of `month` in `year`, at 01:00 UTC (when France changes
/// its clocks, as the whole EU does).
fn last_sunday_1am_utc(year: i32, month: time::Month) -> Option<i64> {
    let first_next = match month {
        time::Month::December => time::Date::from_calendar_date(year + 1, time::Month::January, 1),
        m => time::Date::from_calendar_date(year, m.next(), 1),
    }
    .ok()?;
    let last = first_next.previous_day()?;
    let back = i64::from(last.weekday().number_days_from_sunday());
    let sunday = last - time::Duration::days(back);
    Some(sunday.midnight().assume_utc().unix_timestamp() + 3600)
}

/// A Unix time in the person's time zone, Europe/Paris: UTC+2 from the last
/// Sunday of March to the last Sunday of October (01:00 UTC), UTC+1 otherwise.
pub fn paris(t: i64) -> Option<time::OffsetDateTime> {
    let utc = time::OffsetDateTime::from_unix_timestamp(t).ok()?;
    let year = utc.year();
    let summer = last_sunday_1am_utc(year, time::Month::March)? <= t
        && t < last_sunday_1am_utc(year, time::Month::October)?;
    let offset = time::UtcOffset::from_hms(if summer { 2 } else { 1 }, 0, 0).ok()?;
    Some(utc.to_offset(offset))
}

/// A Unix time as a French reader reads it, in Europe/Paris:
/// `07/12/2026 à 14h05`; `None` for a time out of range.
pub fn french_time(t: i64) -> Option<String> {
    paris(t).map(|d| {
        format!(
            "{:02}/{:02}/{} à {:02}h{:02}",
            d.day(),
            u8::from(d.month()),
            d.year(),
            d.hour(),
            d.minute()
        )
    })
}

/// A day written `YYYY-MM-DD` as a French reader reads it: `DD/MM/YYYY`
/// (any other text is given back as it is).
pub fn french_date(day: &str) -> String {
    match (
        day.get(0..4),
        day.get(4..5),
        day.get(5..7),
        day.get(7..8),
        day.get(8..10),
    ) {
        (Some(y), Some("-"), Some(m), Some("-"), Some(d)) => format!("{d}/{m}/{y}"),
        _ => day.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_readers_read_days_and_times_their_way() {
        assert_eq!(french_date("2026-12-07"), "07/12/2026");
        assert_eq!(french_date("demain"), "demain");
        // 2026-12-07T13:05:00Z is 14h05 in Paris (winter).
        assert_eq!(
            french_time(1_796_648_700).as_deref(),
            Some("07/12/2026 à 14h05")
        );
        assert_eq!(french_time(i64::MAX), None);
    }

    #[test]
    fn member_ids_are_slugs() {
        assert!("ccas-rodez".parse::<MemberId>().is_ok());
        assert!("cd12".parse::<MemberId>().is_ok());
        for bad in [
            "",
            "a",
            "CCAS",
            "ccas rodez",
            "-ccas",
            "ccas-",
            &"a".repeat(33),
        ] {
            assert!(bad.parse::<MemberId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dossier_ids_round_trip_and_reject_garbage() {
        let id = DossierId::random();
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(id.as_str().parse::<DossierId>(), Ok(id.clone()));
        assert!("DSU-short".parse::<DossierId>().is_err());
        assert!(
            "CNS-0123456789ABCDEFGHJKMNPQRS"
                .parse::<DossierId>()
                .is_err()
        );
        assert!(
            "DSU-0123456789ABCDEFGHJKMNPQRI"
                .parse::<DossierId>()
                .is_err()
        );
    }

    #[test]
    fn sections_parse_their_wire_names() {
        for s in Section::ALL {
            assert_eq!(s.as_str().parse::<Section>(), Ok(*s));
        }
        assert!("Housing".parse::<Section>().is_err());
    }

    #[test]
    fn dates_parse_strictly() {
        let d: Date = "2027-06-30".parse().expect("valid date");
        assert_eq!(d.to_string(), "2027-06-30");
        assert!("2027-02-30".parse::<Date>().is_err());
        assert!("30/06/2027".parse::<Date>().is_err());
        assert_eq!(Date::from_unix(d.end_unix() - 1), d);
    }

    #[test]
    fn purposes_follow_one_rule() {
        assert!(check_purpose("coordination du parcours").is_ok());
        for bad in ["", "  ", "motif\u{1b}[2J", "a\nb", &"é".repeat(101)] {
            assert!(check_purpose(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_and_endpoints_follow_one_rule() {
        assert!(check_display_name("CCAS de Rodez").is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(201)] {
            assert!(check_display_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "maillon.ccas-rodez.example:7401",
            "127.0.0.1:7401",
            "[::1]:7401",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "host",
            ":7401",
            "host:",
            "host:0",
            "host:99999",
            "ho st:1",
            "[zz]:1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outside_text_has_its_control_characters_escaped() {
        assert_eq!(escape_controls("caf12 é"), "caf12 é");
        assert_eq!(escape_controls("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
    }
}
