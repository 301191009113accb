//! Consent records and the read decision. Pure: time is passed in.
//!
//! A consent is the person's decision, recorded by a caseworker at the owner,
//! for the owner to share given sections of a dossier with given members, for
//! a purpose, on a legal basis, from one date to another; it may also mask
//! sections from everyone, break-glass included. The charter bounds it;
//! consent narrows, never widens. [`receipt`] renders the record the person
//! is handed (ISO/IEC TS 27560 and Kantara consent-receipt fields, and a
//! French page).

pub mod receipt;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PublicKey, Signature};
use crate::roster::VerifiedRoster;
pub use crate::types::{Collection, LegalBasis};
use crate::types::{ConsentId, Date, DossierId, MemberId, Section, UserName, check_short_text};

pub use crate::types::MAX_PURPOSE;

/// Longest legal provision or form reference (bytes).
pub const MAX_REFERENCE: usize = 200;

/// What the person agreed to, as signed by the owner node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// The consent's id (`CNS-…`).
    pub id: ConsentId,
    /// The dossier the entry is about (its opaque id only).
    pub dossier: DossierId,
    /// The member whose sections are shared (this node).
    pub owner: MemberId,
    /// Sections covered.
    pub sections: BTreeSet<Section>,
    /// Members that may read them.
    pub audience: BTreeSet<MemberId>,
    /// Why, in the person's and caseworker's words.
    pub purpose: String,
    /// The legal ground of the sharing.
    pub basis: LegalBasis,
    /// How the person gave it.
    pub collection: Collection,
    /// First day it holds.
    pub valid_from: Date,
    /// Last day it holds (inclusive).
    pub until: Date,
    /// Sections the person masks from every other member, break-glass
    /// included, while this record holds. Absent from the signed bytes when empty.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub masked: BTreeSet<Section>,
    /// The caseworker who recorded it (the witness of an oral consent).
    pub granted_by: UserName,
    /// When (Unix seconds).
    pub granted_at: i64,
}

impl Consent {
    fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every section whose group this record's changes touch: those it
    /// shares and those it masks, in order.
    pub fn touched(&self) -> impl Iterator<Item = Section> + '_ {
        self.sections.union(&self.masked).copied()
    }
}

/// A stored consent: the signed agreement and, once revoked, when and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// What the person agreed to, as signed.
    pub consent: Consent,
    /// The owner node's signature, context `maillon/v1/consent`.
    pub signature: Signature,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Who recorded the revocation.
    pub revoked_by: Option<UserName>,
}

/// Where a consent stands at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentStatus {
    /// In force.
    Active,
    /// Recorded, not in force before its first day.
    Pending,
    /// Past its end date.
    Expired,
    /// Withdrawn by the person.
    Revoked,
}

impl ConsentRecord {
    /// Signs a new consent with the owner's key.
    pub fn sign(consent: Consent, key: &NodeKey) -> Self {
        let signature = key.sign(Context::Consent, &consent.signed_bytes());
        Self {
            consent,
            signature,
            revoked_at: None,
            revoked_by: None,
        }
    }

    /// Checks the owner's signature.
    pub fn verify(&self, owner_key: &PublicKey) -> bool {
        owner_key
            .verify(
                Context::Consent,
                &self.consent.signed_bytes(),
                &self.signature,
            )
            .is_ok()
    }

    /// The bytes the owner signed (the consent's JSON).
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.consent.signed_bytes()
    }

    /// Its status at `now` (Unix seconds). A revocation holds whatever the
    /// clock says: a clock stepping back must never revive a consent.
    pub fn status(&self, now: i64) -> ConsentStatus {
        if self.revoked_at.is_some() {
            ConsentStatus::Revoked
        } else if now >= self.consent.until.end_unix() {
            ConsentStatus::Expired
        } else if now < self.consent.valid_from.start_unix() {
            ConsentStatus::Pending
        } else {
            ConsentStatus::Active
        }
    }

    /// Whether it names `reader` for `section` (regardless of status).
    pub fn covers(&self, reader: &MemberId, section: Section) -> bool {
        self.consent.audience.contains(reader) && self.consent.sections.contains(&section)
    }

    /// Whether it masks `section` from everyone at `now`.
    pub fn masks(&self, section: Section, now: i64) -> bool {
        self.status(now) == ConsentStatus::Active && self.consent.masked.contains(&section)
    }
}

/// Whether any of `consents` masks `section` from everyone at `now`.
pub fn masked(consents: &[ConsentRecord], section: Section, now: i64) -> bool {
    consents.iter().any(|c| c.masks(section, now))
}

/// Why a read is refused. The text is what the reader's caseworker sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The reader is not an active member of the roster.
    NotAMember(MemberId),
    /// The charter never lets this kind of member receive this section.
    Charter {
        /// The member that asked to read.
        reader: MemberId,
        /// Which section of the dossier.
        section: Section,
    },
    /// No consent for this reader on this dossier.
    NoConsent,
    /// Consents for this reader exist, none for this section.
    SectionNotCovered(Section),
    /// The consent was revoked.
    Revoked(ConsentId),
    /// The consent has expired.
    Expired(ConsentId),
    /// The consent holds only from a later day.
    NotYet(ConsentId),
    /// The person masked this section from everyone.
    Masked(Section),
    /// The owner has no such section for this dossier.
    NoSuchSection,
    /// The reader's user does not hold the caseworker role.
    Role,
    /// The dossier's parcours ended: nothing of it is shared any more.
    Closed,
    /// The charter does not let this user of this member break the glass.
    BreakGlass {
        /// The member that asked to read.
        reader: MemberId,
        /// The user's role there.
        role: crate::types::Role,
    },
}

impl DenyReason {
    /// A stable, machine-readable name of the reason (snake case).
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NotAMember(_) => "not_a_member",
            DenyReason::Charter { .. } => "charter",
            DenyReason::NoConsent => "no_consent",
            DenyReason::SectionNotCovered(_) => "section_not_covered",
            DenyReason::Revoked(_) => "revoked",
            DenyReason::Expired(_) => "expired",
            DenyReason::NotYet(_) => "not_yet_valid",
            DenyReason::Masked(_) => "masked",
            DenyReason::NoSuchSection => "no_such_section",
            DenyReason::Role => "role",
            DenyReason::BreakGlass { .. } => "break_glass_not_allowed",
            DenyReason::Closed => "closed",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NotAMember(m) => write!(f, "{m} is not an active member of the federation"),
            DenyReason::Charter { reader, section } => {
                write!(
                    f,
                    "the charter does not allow {reader} to receive {section}"
                )
            }
            DenyReason::NoConsent => f.write_str("no consent covers this reader for this dossier"),
            DenyReason::SectionNotCovered(s) => {
                write!(f, "no consent covers the section {s} for this reader")
            }
            DenyReason::Revoked(id) => write!(f, "consent {id} was revoked"),
            DenyReason::Expired(id) => write!(f, "consent {id} has expired"),
            DenyReason::NotYet(id) => write!(f, "consent {id} does not hold yet"),
            DenyReason::Masked(s) => {
                write!(f, "the person masked the section {s} from every member")
            }
            DenyReason::NoSuchSection => {
                f.write_str("the owner holds no such section for this dossier")
            }
            DenyReason::Role => f.write_str("only a caseworker may read a shared section"),
            DenyReason::Closed => f.write_str("the dossier is closed: nothing of it is shared"),
            DenyReason::BreakGlass { reader, role } => write!(
                f,
                "the charter does not let a {role} of {reader} break the glass"
            ),
        }
    }
}

/// The outcome of a policy check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this consent.
    Allow(ConsentId),
    /// Refused, with the reason the reader is told.
    Deny(DenyReason),
}

/// Decides whether `reader` may read `section` given the dossier's consents at `now`.
pub fn decide_read(
    roster: &VerifiedRoster,
    consents: &[ConsentRecord],
    reader: &MemberId,
    section: Section,
    now: i64,
) -> Decision {
    let Some(member) = roster.active_member(reader) else {
        return Decision::Deny(DenyReason::NotAMember(reader.clone()));
    };
    if !roster.roster().charter.allows(member.card.kind, section) {
        return Decision::Deny(DenyReason::Charter {
            reader: reader.clone(),
            section,
        });
    }
    if masked(consents, section, now) {
        return Decision::Deny(DenyReason::Masked(section));
    }
    let covering: Vec<&ConsentRecord> = consents
        .iter()
        .filter(|c| c.covers(reader, section))
        .collect();
    let with = |status: ConsentStatus| covering.iter().find(|c| c.status(now) == status);
    if let Some(c) = with(ConsentStatus::Active) {
        return Decision::Allow(c.consent.id.clone());
    }
    if let Some(c) = with(ConsentStatus::Pending) {
        return Decision::Deny(DenyReason::NotYet(c.consent.id.clone()));
    }
    if let Some(c) = with(ConsentStatus::Revoked) {
        return Decision::Deny(DenyReason::Revoked(c.consent.id.clone()));
    }
    if let Some(c) = covering.first() {
        return Decision::Deny(DenyReason::Expired(c.consent.id.clone()));
    }
    if consents.iter().any(|c| c.consent.audience.contains(reader)) {
        return Decision::Deny(DenyReason::SectionNotCovered(section));
    }
    Decision::Deny(DenyReason::NoConsent)
}

/// Which members should be in the group of (dossier, section) at `now`: the
/// union of the audiences of its active consents, nobody if it is masked.
pub fn audience(consents: &[ConsentRecord], section: Section, now: i64) -> BTreeSet<MemberId> {
    if masked(consents, section, now) {
        return BTreeSet::new();
    }
    consents
        .iter()
        .filter(|c| c.status(now) == ConsentStatus::Active && c.consent.sections.contains(&section))
        .flat_map(|c| c.consent.audience.iter().cloned())
        .collect()
}

/// Why a consent cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The request is incomplete or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A member of the audience is not an active member.
    #[error("{0} is not an active member of the federation")]
    NotAMember(MemberId),
    /// The charter forbids it.
    #[error("the charter does not allow {member} to receive {section}")]
    Charter {
        /// The member concerned.
        member: MemberId,
        /// Which section of the dossier.
        section: Section,
    },
    /// The charter does not let this kind of member record consents.
    #[error("the charter does not let {0} record consents for its sections")]
    Recorder(MemberId),
    /// The section is masked from everyone by another record in force.
    #[error(
        "the person masked the section {section} from every member (consent {by}); revoke that first"
    )]
    Masked {
        /// The section.
        section: Section,
        /// The record that masks it.
        by: ConsentId,
    },
}

/// Checks a consent before it is signed, against the roster in force and
/// the dossier's other records (`existing`): an owner whose kind the
/// charter lets record consents; sections shared with active members other
/// than the owner, within the charter, none masked by a record in force; or
/// sections masked (or both, never the same section); a purpose; a basis and
/// a collection that fit each other; dates from today, in order.
pub fn check_grant(
    roster: &VerifiedRoster,
    consent: &Consent,
    existing: &[ConsentRecord],
    now: i64,
) -> Result<(), GrantError> {
    let invalid = |s: String| Err(GrantError::Invalid(s));
    let text = |what, v: &str| {
        check_short_text(what, v, MAX_REFERENCE).map_err(|e| GrantError::Invalid(e.to_string()))
    };
    if consent.sections.is_empty() && consent.masked.is_empty() {
        return invalid("a consent names at least one section to share or to mask".into());
    }
    if consent.sections.is_empty() != consent.audience.is_empty() {
        return invalid(if consent.audience.is_empty() {
            "a consent that shares sections names at least one member to share with".into()
        } else {
            "a consent that names members shares at least one section with them".into()
        });
    }
    if let Some(s) = consent.sections.intersection(&consent.masked).next() {
        return invalid(format!("the section {s} cannot be both shared and masked"));
    }
    crate::types::check_purpose(&consent.purpose)
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    match (&consent.basis, &consent.collection) {
        (LegalBasis::LegalMission { provision }, _) => text("legal provision", provision)?,
        (LegalBasis::Consent, Collection::Informed) => {
            return invalid(
                "a consent is given, signed or aloud; 'informed' fits a legal mission only".into(),
            );
        }
        (LegalBasis::Consent, _) => {}
    }
    if let Collection::SignedForm { reference } = &consent.collection {
        text("form reference", reference)?;
    }
    if consent.until.end_unix() <= now {
        return invalid(format!("the end date {} is already past", consent.until));
    }
    if consent.valid_from < Date::from_unix(now) {
        return invalid(format!(
            "the first day {} is past: a consent is never backdated",
            consent.valid_from
        ));
    }
    if consent.valid_from > consent.until {
        return invalid(format!(
            "the first day {} is after the last day {}",
            consent.valid_from, consent.until
        ));
    }
    let recorders = &roster.roster().charter.consent_recorders;
    if !recorders.is_empty() {
        let kind = roster.roster().member(&consent.owner).map(|m| m.card.kind);
        if !kind.is_some_and(|k| recorders.contains(&k)) {
            return Err(GrantError::Recorder(consent.owner.clone()));
        }
    }
    for s in &consent.sections {
        let masking = existing.iter().find(|c| {
            c.status(now) != ConsentStatus::Revoked
                && c.status(now) != ConsentStatus::Expired
                && c.consent.masked.contains(s)
        });
        if let Some(c) = masking {
            return Err(GrantError::Masked {
                section: *s,
                by: c.consent.id.clone(),
            });
        }
    }
    for m in &consent.audience {
        if m == &consent.owner {
            return invalid("a member does not need consent to read its own sections".into());
        }
        let Some(member) = roster.active_member(m) else {
            return Err(GrantError::NotAMember(m.clone()));
        };
        for s in &consent.sections {
            if !roster.roster().charter.allows(member.card.kind, *s) {
                return Err(GrantError::Charter {
                    member: m.clone(),
                    section: *s,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SpkiHash;
    use crate::roster::{Charter, MemberCard, Roster, SignedRoster};
    use crate::types::MemberKind;

    fn id(s: &str) -> MemberId {
        s.parse().expect("id")
    }

    fn roster() -> VerifiedRoster {
        roster_with(Charter::default())
    }

    fn roster_with(charter: Charter) -> VerifiedRoster {
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let cards = [
            ("ccas-rodez", MemberKind::Ccas),
            ("caf12", MemberKind::Caf),
            ("cd12", MemberKind::Departement),
        ]
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, ((m, kind), k))| MemberCard {
            id: id(m),
            name: m.to_string(),
            kind: *kind,
            endpoint: format!("127.0.0.1:{}", 7000 + i),
            signing_key: k.public(),
            tls_spki_sha256: SpkiHash([i as u8; 32]),
        })
        .collect();
        let mut signed = SignedRoster::unsigned(
            Roster::genesis("gip", "2/3".parse().expect("quorum"), cards, charter).expect("roster"),
        );
        for (m, k) in ["ccas-rodez", "caf12", "cd12"].iter().zip(&keys) {
            signed.sign(&id(m), k).expect("sign");
        }
        signed.verify_genesis().expect("valid")
    }

    fn consent(sections: &[Section], to: &[&str], until: &str, key: &NodeKey) -> ConsentRecord {
        ConsentRecord::sign(
            Consent {
                id: ConsentId::random(),
                dossier: "DSU-0000000000000000000000000Z".parse().expect("dossier"),
                owner: id("ccas-rodez"),
                sections: sections.iter().copied().collect(),
                audience: to.iter().map(|m| id(m)).collect(),
                purpose: "coordination".into(),
                basis: LegalBasis::Consent,
                collection: Collection::Oral,
                valid_from: "2026-01-01".parse().expect("date"),
                until: until.parse().expect("date"),
                masked: BTreeSet::new(),
                granted_by: "agent".parse().expect("user"),
                granted_at: 0,
            },
            key,
        )
    }

    fn today() -> Date {
        Date::from_unix(NOW)
    }

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    #[test]
    fn the_read_decision_names_the_precise_reason() {
        let r = roster();
        let k = NodeKey::generate();
        let caf = id("caf12");
        let active = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k);
        assert!(matches!(
            decide_read(
                &r,
                std::slice::from_ref(&active),
                &caf,
                Section::Housing,
                NOW
            ),
            Decision::Allow(_)
        ));
        assert_eq!(
            decide_read(
                &r,
                std::slice::from_ref(&active),
                &caf,
                Section::Resources,
                NOW
            ),
            Decision::Deny(DenyReason::SectionNotCovered(Section::Resources))
        );
        assert_eq!(
            decide_read(&r, &[], &caf, Section::Housing, NOW),
            Decision::Deny(DenyReason::NoConsent)
        );
        let mut revoked = active.clone();
        revoked.revoked_at = Some(NOW - 1);
        assert!(matches!(
            decide_read(&r, &[revoked], &caf, Section::Housing, NOW),
            Decision::Deny(DenyReason::Revoked(_))
        ));
        let expired = consent(&[Section::Housing], &["caf12"], "2026-12-31", &k);
        assert!(matches!(
            decide_read(&r, &[expired], &caf, Section::Housing, NOW),
            Decision::Deny(DenyReason::Expired(_))
        ));
        // The charter wins over any consent.
        let health = consent(&[Section::Health], &["caf12"], "2027-06-30", &k);
        assert!(matches!(
            decide_read(&r, &[health], &caf, Section::Health, NOW),
            Decision::Deny(DenyReason::Charter { .. })
        ));
        assert_eq!(
            decide_read(&r, &[active], &id("intrus"), Section::Housing, NOW),
            Decision::Deny(DenyReason::NotAMember(id("intrus")))
        );
    }

    #[test]
    fn adding_a_revoked_or_expired_consent_never_allows_more() {
        let r = roster();
        let k = NodeKey::generate();
        let mut revoked = consent(
            &[Section::Housing, Section::Resources],
            &["caf12", "cd12"],
            "2027-06-30",
            &k,
        );
        revoked.revoked_at = Some(NOW - 10);
        let expired = consent(
            &[Section::Housing, Section::Resources],
            &["caf12", "cd12"],
            "2026-01-01",
            &k,
        );
        let base = consent(&[Section::Housing], &["cd12"], "2027-06-30", &k);
        for reader in ["caf12", "cd12", "ccas-rodez"] {
            for section in Section::ALL {
                let before = matches!(
                    decide_read(&r, std::slice::from_ref(&base), &id(reader), *section, NOW),
                    Decision::Allow(_)
                );
                let after = matches!(
                    decide_read(
                        &r,
                        &[base.clone(), revoked.clone(), expired.clone()],
                        &id(reader),
                        *section,
                        NOW
                    ),
                    Decision::Allow(_)
                );
                assert_eq!(before, after, "{reader} {section}");
            }
        }
        assert_eq!(
            audience(&[base.clone(), revoked, expired], Section::Housing, NOW),
            [id("cd12")].into()
        );
    }

    #[test]
    fn consents_are_signed_by_the_owner() {
        let k = NodeKey::generate();
        let mut c = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k);
        assert!(c.verify(&k.public()));
        assert!(!c.verify(&NodeKey::generate().public()));
        c.consent.audience.insert(id("cd12"));
        assert!(
            !c.verify(&k.public()),
            "widening a signed consent breaks its signature"
        );
    }

    #[test]
    fn grants_are_checked_against_roster_and_charter() {
        let r = roster();
        let k = NodeKey::generate();
        let mut ok = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k).consent;
        ok.valid_from = today();
        assert_eq!(check_grant(&r, &ok, &[], NOW), Ok(()));
        let mut past = ok.clone();
        past.until = "2026-06-30".parse().expect("date");
        assert!(matches!(
            check_grant(&r, &past, &[], NOW),
            Err(GrantError::Invalid(_))
        ));
        let mut charter = ok.clone();
        charter.sections.insert(Section::Health);
        assert!(matches!(
            check_grant(&r, &charter, &[], NOW),
            Err(GrantError::Charter { .. })
        ));
        let mut empty = ok.clone();
        empty.purpose = "  ".into();
        assert!(check_grant(&r, &empty, &[], NOW).is_err());
        let mut to_self = ok;
        to_self.audience.insert(id("ccas-rodez"));
        assert!(check_grant(&r, &to_self, &[], NOW).is_err());
    }

    #[test]
    fn basis_collection_and_dates_must_fit_together() {
        let r = roster();
        let k = NodeKey::generate();
        let mut ok = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k).consent;
        ok.valid_from = today();
        let refused = |c: &Consent| check_grant(&r, c, &[], NOW).is_err();

        let mut informed = ok.clone();
        informed.collection = Collection::Informed;
        assert!(refused(&informed), "a consent is never merely 'informed'");
        informed.basis = LegalBasis::LegalMission {
            provision: "CASF L.226-2-2".into(),
        };
        assert!(!refused(&informed), "a legal mission informs the person");
        let mut blank = informed.clone();
        blank.basis = LegalBasis::LegalMission {
            provision: "  ".into(),
        };
        assert!(refused(&blank), "a legal mission names its provision");

        let mut form = ok.clone();
        form.collection = Collection::SignedForm {
            reference: "FORM-2026-0117".into(),
        };
        assert!(!refused(&form));
        form.collection = Collection::SignedForm {
            reference: "x".repeat(MAX_REFERENCE + 1),
        };
        assert!(refused(&form));

        let mut backdated = ok.clone();
        backdated.valid_from = Date::from_unix(NOW - 86_400);
        assert!(refused(&backdated), "never backdated");
        let mut inverted = ok.clone();
        inverted.valid_from = "2027-07-01".parse().expect("date");
        assert!(refused(&inverted), "first day after the last");
        let mut later = ok.clone();
        later.valid_from = "2027-03-01".parse().expect("date");
        assert!(!refused(&later), "a consent may hold from a later day");
    }

    #[test]
    fn a_pending_consent_allows_nothing_until_its_first_day() {
        let r = roster();
        let k = NodeKey::generate();
        let mut c = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k);
        c.consent.valid_from = Date::from_unix(NOW + 10 * 86_400);
        let c = ConsentRecord::sign(c.consent, &k);
        assert_eq!(c.status(NOW), ConsentStatus::Pending);
        assert!(matches!(
            decide_read(
                &r,
                std::slice::from_ref(&c),
                &id("caf12"),
                Section::Housing,
                NOW
            ),
            Decision::Deny(DenyReason::NotYet(_))
        ));
        assert!(audience(std::slice::from_ref(&c), Section::Housing, NOW).is_empty());
        let later = NOW + 11 * 86_400;
        assert!(matches!(
            decide_read(
                &r,
                std::slice::from_ref(&c),
                &id("caf12"),
                Section::Housing,
                later
            ),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_masked_section_is_refused_to_everyone_and_cannot_be_shared() {
        let r = roster();
        let k = NodeKey::generate();
        let share = consent(&[Section::Housing], &["caf12", "cd12"], "2027-06-30", &k);
        let mut mask = consent(&[], &[], "2027-06-30", &k).consent;
        mask.masked = [Section::Housing].into();
        mask.valid_from = today();
        assert_eq!(check_grant(&r, &mask, &[], NOW), Ok(()), "a masking alone");
        let mask = ConsentRecord::sign(mask, &k);
        let both = [share.clone(), mask.clone()];
        for reader in ["caf12", "cd12"] {
            assert_eq!(
                decide_read(&r, &both, &id(reader), Section::Housing, NOW),
                Decision::Deny(DenyReason::Masked(Section::Housing))
            );
        }
        assert!(audience(&both, Section::Housing, NOW).is_empty());
        let mut again = share.consent.clone();
        again.valid_from = today();
        assert!(matches!(
            check_grant(&r, &again, std::slice::from_ref(&mask), NOW),
            Err(GrantError::Masked { .. })
        ));
        let mut lifted = mask.clone();
        lifted.revoked_at = Some(NOW - 1);
        assert!(matches!(
            decide_read(
                &r,
                &[share, lifted.clone()],
                &id("caf12"),
                Section::Housing,
                NOW
            ),
            Decision::Allow(_)
        ));
        assert_eq!(check_grant(&r, &again, &[lifted], NOW), Ok(()));
        let mut same = again.clone();
        same.masked = [Section::Housing].into();
        assert!(
            check_grant(&r, &same, &[], NOW).is_err(),
            "shared and masked at once"
        );
        let mut nothing = again;
        nothing.sections.clear();
        nothing.audience.clear();
        assert!(
            check_grant(&r, &nothing, &[], NOW).is_err(),
            "neither shares nor masks"
        );
    }

    #[test]
    fn the_charter_may_reserve_the_recording_of_consents_to_some_kinds() {
        let k = NodeKey::generate();
        let mut c = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k).consent;
        c.valid_from = today();
        assert_eq!(
            check_grant(&roster(), &c, &[], NOW),
            Ok(()),
            "every kind by default"
        );
        let mut charter = Charter {
            consent_recorders: [MemberKind::Departement].into(),
            ..Charter::default()
        };
        let r = roster_with(charter.clone());
        assert_eq!(
            check_grant(&r, &c, &[], NOW),
            Err(GrantError::Recorder(id("ccas-rodez")))
        );
        charter.consent_recorders.insert(MemberKind::Ccas);
        assert_eq!(check_grant(&roster_with(charter), &c, &[], NOW), Ok(()));
    }

    #[test]
    fn the_receipt_carries_the_record_and_a_signature_anyone_can_check() {
        let r = roster();
        let k = NodeKey::generate();
        let mut c = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k).consent;
        c.collection = Collection::SignedForm {
            reference: "FORM-17".into(),
        };
        c.masked = [Section::Health].into();
        let mut record = ConsentRecord::sign(c, &k);
        let receipt = receipt::ConsentReceipt::new(&record, r.roster(), &k.public(), NOW);
        let json: serde_json::Value = serde_json::from_str(&receipt.to_json()).expect("json");
        assert_eq!(json["schema"], receipt::RECEIPT_SCHEMA);
        assert_eq!(json["pii_principal_id"], record.consent.dossier.to_string());
        assert_eq!(json["recipients"][0]["member"], "caf12");
        assert_eq!(json["pii_categories"][0], "housing");
        assert_eq!(json["masked_categories"][0], "health");
        assert_eq!(json["legal_basis"]["kind"], "consent");
        assert_eq!(json["collection_method"]["method"], "signed_form");
        assert_eq!(json["collection_method"]["reference"], "FORM-17");
        assert_eq!(json["status"], "active");
        assert_eq!(json["events"].as_array().map(Vec::len), Some(1));
        let b64 = |v: &serde_json::Value| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("text"))
                .expect("base64")
        };
        let signed = b64(&json["signature"]["signed"]);
        let sig = Signature::from_bytes(&b64(&json["signature"]["value"])).expect("signature");
        assert!(
            k.public().verify(Context::Consent, &signed, &sig).is_ok(),
            "the receipt's signature verifies over its signed bytes"
        );
        let text = receipt.to_french();
        for part in [
            "Récépissé de consentement",
            "logement",
            "santé",
            "FORM-17",
            "30/06/2027",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        record.revoked_at = Some(NOW);
        record.revoked_by = Some("agent".parse().expect("user"));
        let withdrawn = receipt::ConsentReceipt::new(&record, r.roster(), &k.public(), NOW);
        assert_eq!(withdrawn.status, "withdrawn");
        assert_eq!(withdrawn.events[1].event, "withdrawn");
        assert!(withdrawn.to_french().contains("retiré"));
    }
}
