//! Consent records and the read decision. Pure: time is passed in.
//!
//! A consent is the person's agreement, recorded by a caseworker at the owner,
//! for the owner to share given sections of a dossier with given members, for
//! a purpose, until a date. The charter bounds it; consent narrows, never widens.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PublicKey, Signature};
use crate::roster::VerifiedRoster;
use crate::types::{ConsentId, Date, DossierId, MemberId, Section, UserName};

pub use crate::types::MAX_PURPOSE;

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
    /// Last day it holds (inclusive).
    pub until: Date,
    /// The caseworker who recorded it.
    pub granted_by: UserName,
    /// When (Unix seconds).
    pub granted_at: i64,
}

impl Consent {
    fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
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

    /// Its status at `now` (Unix seconds). A revocation holds whatever the
    /// clock says: a clock stepping back must never revive a consent.
    pub fn status(&self, now: i64) -> ConsentStatus {
        if self.revoked_at.is_some() {
            ConsentStatus::Revoked
        } else if now >= self.consent.until.end_unix() {
            ConsentStatus::Expired
        } else {
            ConsentStatus::Active
        }
    }

    /// Whether it names `reader` for `section` (regardless of status).
    pub fn covers(&self, reader: &MemberId, section: Section) -> bool {
        self.consent.audience.contains(reader) && self.consent.sections.contains(&section)
    }
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
    /// The owner has no such section for this dossier.
    NoSuchSection,
    /// The reader's user does not hold the caseworker role.
    Role,
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
            DenyReason::NoSuchSection => "no_such_section",
            DenyReason::Role => "role",
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
            DenyReason::NoSuchSection => {
                f.write_str("the owner holds no such section for this dossier")
            }
            DenyReason::Role => f.write_str("only a caseworker may read a shared section"),
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
    let covering: Vec<&ConsentRecord> = consents
        .iter()
        .filter(|c| c.covers(reader, section))
        .collect();
    if let Some(c) = covering
        .iter()
        .find(|c| c.status(now) == ConsentStatus::Active)
    {
        return Decision::Allow(c.consent.id.clone());
    }
    if let Some(c) = covering
        .iter()
        .find(|c| c.status(now) == ConsentStatus::Revoked)
    {
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
/// union of the audiences of its active consents.
pub fn audience(consents: &[ConsentRecord], section: Section, now: i64) -> BTreeSet<MemberId> {
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
}

/// Checks a consent before it is signed: audience of active members other than
/// the owner, sections within the charter, a purpose, an end date not past.
pub fn check_grant(roster: &VerifiedRoster, consent: &Consent, now: i64) -> Result<(), GrantError> {
    let invalid = |s: String| Err(GrantError::Invalid(s));
    if consent.sections.is_empty() {
        return invalid("a consent names at least one section".into());
    }
    if consent.audience.is_empty() {
        return invalid("a consent names at least one member to share with".into());
    }
    crate::types::check_purpose(&consent.purpose)
        .map_err(|e| GrantError::Invalid(e.to_string()))?;
    if consent.until.end_unix() <= now {
        return invalid(format!("the end date {} is already past", consent.until));
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
            Roster::genesis(
                "gip",
                "2/3".parse().expect("quorum"),
                cards,
                Charter::default(),
            )
            .expect("roster"),
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
                until: until.parse().expect("date"),
                granted_by: "agent".parse().expect("user"),
                granted_at: 0,
            },
            key,
        )
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
        let ok = consent(&[Section::Housing], &["caf12"], "2027-06-30", &k).consent;
        assert_eq!(check_grant(&r, &ok, NOW), Ok(()));
        let mut past = ok.clone();
        past.until = "2026-06-30".parse().expect("date");
        assert!(matches!(
            check_grant(&r, &past, NOW),
            Err(GrantError::Invalid(_))
        ));
        let mut charter = ok.clone();
        charter.sections.insert(Section::Health);
        assert!(matches!(
            check_grant(&r, &charter, NOW),
            Err(GrantError::Charter { .. })
        ));
        let mut empty = ok.clone();
        empty.purpose = "  ".into();
        assert!(check_grant(&r, &empty, NOW).is_err());
        let mut to_self = ok;
        to_self.audience.insert(id("ccas-rodez"));
        assert!(check_grant(&r, &to_self, NOW).is_err());
    }
}
