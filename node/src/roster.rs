//! Governance: the signed roster of members, its quorum rule and the charter. Pure.
//!
//! The roster replaces a central registry: it lists every member with its keys,
//! endpoint, kind and status, the quorum rule, and the charter (which kinds of
//! member may ever receive which sections). Version 1, the *convention
//! constitutive*, is valid only when every founder has signed it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PinLookup, PublicKey, Signature, SpkiHash, sha256};
use crate::types::{MemberId, MemberKind, MemberStatus, Section};

/// Why a roster was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    /// The roster is not well formed.
    #[error("invalid roster: {0}")]
    Invalid(String),
    /// A signature entry names someone who is not a member.
    #[error("roster signed by {0}, who is not a member")]
    UnknownSigner(MemberId),
    /// A signature does not verify with the key the roster lists.
    #[error("roster signature by {0} does not verify (forged or for another roster)")]
    ForgedSignature(MemberId),
    /// Founders have not all signed the genesis roster.
    #[error("roster v{version} lacks the signature of: {}", missing.iter().map(MemberId::as_str).collect::<Vec<_>>().join(", "))]
    MissingSignatures {
        /// The roster version.
        version: u64,
        /// Members whose signature is required and absent.
        missing: Vec<MemberId>,
    },
    /// The signer is not in this roster.
    #[error("{0} is not a member of this roster and cannot sign it")]
    NotAMember(MemberId),
    /// The key used to sign is not the one this roster lists for the signer.
    #[error("the signing key is not the one the roster lists for {0}")]
    WrongKey(MemberId),
}

/// A quorum rule `num/den` of voting members, e.g. `2/3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// How many of the voters must sign (the N of N/D).
    pub num: u32,
    /// Out of how many (the D of N/D).
    pub den: u32,
}

impl Quorum {
    /// How many distinct voting keys out of `voters` reach the quorum (rounded up, at least 1).
    pub fn threshold(self, voters: usize) -> usize {
        let n = voters as u64 * u64::from(self.num);
        (n.div_ceil(u64::from(self.den)) as usize).max(1)
    }
}

impl FromStr for Quorum {
    type Err = RosterError;
    fn from_str(s: &str) -> Result<Self, RosterError> {
        let bad = || RosterError::Invalid(format!("quorum {s:?}: expected N/D with 0 < N <= D"));
        let (n, d) = s.split_once('/').ok_or_else(bad)?;
        let (num, den): (u32, u32) = (n.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        if num == 0 || den == 0 || num > den {
            return Err(bad());
        }
        Ok(Self { num, den })
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a member publishes about itself so that founders can build a roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberCard {
    /// The member's id.
    pub id: MemberId,
    /// Its display name.
    pub name: String,
    /// What kind of institution it is.
    pub kind: MemberKind,
    /// Its peer API endpoint, `host:port`.
    pub endpoint: String,
    /// Its Ed25519 signing key.
    pub signing_key: PublicKey,
    /// SHA-256 of its TLS certificate's SubjectPublicKeyInfo.
    pub tls_spki_sha256: SpkiHash,
}

/// A member as the roster lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterMember {
    /// Its public card.
    pub card: MemberCard,
    /// Whether it is active, suspended or excluded.
    pub status: MemberStatus,
    /// Whether it votes on roster changes.
    pub voting: bool,
}

/// Which sections each kind of member may ever receive. Consent narrows it, never widens it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charter {
    /// Sections receivable per member kind.
    pub receivable: BTreeMap<MemberKind, BTreeSet<Section>>,
}

impl Charter {
    /// Whether a member of `kind` may ever receive `section`.
    pub fn allows(&self, kind: MemberKind, section: Section) -> bool {
        self.receivable
            .get(&kind)
            .is_some_and(|set| set.contains(&section))
    }
}

impl Default for Charter {
    /// A conservative starting charter; each GIP adapts it in its genesis roster.
    fn default() -> Self {
        use MemberKind as K;
        use Section as S;
        let table: [(K, &[S]); 6] = [
            (
                K::Departement,
                &[
                    S::Identity,
                    S::Household,
                    S::Housing,
                    S::Resources,
                    S::Employment,
                    S::Disability,
                    S::Autonomy,
                    S::ChildProtection,
                    S::SupportPlan,
                ],
            ),
            (
                K::Ccas,
                &[
                    S::Identity,
                    S::Household,
                    S::Housing,
                    S::Resources,
                    S::Employment,
                    S::SupportPlan,
                ],
            ),
            (
                K::Caf,
                &[S::Identity, S::Household, S::Housing, S::Resources],
            ),
            (
                K::Cpam,
                &[S::Identity, S::Resources, S::Health, S::Disability],
            ),
            (
                K::Hospital,
                &[
                    S::Identity,
                    S::Health,
                    S::Disability,
                    S::Autonomy,
                    S::SupportPlan,
                ],
            ),
            (
                K::Association,
                &[S::Identity, S::Household, S::Housing, S::SupportPlan],
            ),
        ];
        Self {
            receivable: table
                .into_iter()
                .map(|(k, s)| (k, s.iter().copied().collect()))
                .collect(),
        }
    }
}

/// The content of one roster version (what is signed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// The federation's name.
    pub federation: String,
    /// The version, starting at 1.
    pub version: u64,
    /// Hex SHA-256 of the previous version's canonical bytes (none for version 1).
    pub previous: Option<String>,
    /// The quorum rule for changes.
    pub quorum: Quorum,
    /// Every member, with its card, status and voting right.
    pub members: Vec<RosterMember>,
    /// Which kinds of member may ever receive which sections.
    pub charter: Charter,
}

impl Roster {
    /// The genesis roster of founders: all active and voting.
    pub fn genesis(
        federation: &str,
        quorum: Quorum,
        cards: Vec<MemberCard>,
        charter: Charter,
    ) -> Result<Self, RosterError> {
        let roster = Self {
            federation: federation.to_owned(),
            version: 1,
            previous: None,
            quorum,
            members: cards
                .into_iter()
                .map(|card| RosterMember {
                    card,
                    status: MemberStatus::Active,
                    voting: true,
                })
                .collect(),
            charter,
        };
        roster.check_well_formed()?;
        Ok(roster)
    }

    /// The bytes every signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Struct fields serialize in declaration order and maps are BTreeMaps,
        // so this encoding is deterministic.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Hex SHA-256 of the canonical bytes.
    pub fn hash_hex(&self) -> String {
        hex::encode(sha256(&self.canonical_bytes()))
    }

    /// The member with this id.
    pub fn member(&self, id: &MemberId) -> Option<&RosterMember> {
        self.members.iter().find(|m| &m.card.id == id)
    }

    fn check_well_formed(&self) -> Result<(), RosterError> {
        let invalid = |s: String| Err(RosterError::Invalid(s));
        let fed_ok = (1..=64).contains(&self.federation.len())
            && self
                .federation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !fed_ok {
            return invalid(
                "federation name: 1 to 64 characters among letters, digits, '-', '_', '.'".into(),
            );
        }
        if self.version == 0 {
            return invalid("version must start at 1".into());
        }
        if (self.version == 1) != self.previous.is_none() {
            return invalid("only version 1 has no previous hash".into());
        }
        if self.members.is_empty() {
            return invalid("no members".into());
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut pins = BTreeSet::new();
        for m in &self.members {
            let c = &m.card;
            if !ids.insert(c.id.clone()) {
                return invalid(format!("member {} listed twice", c.id));
            }
            if !keys.insert(c.signing_key.to_bytes()) {
                return invalid(format!(
                    "member {} reuses another member's signing key",
                    c.id
                ));
            }
            if !pins.insert(c.tls_spki_sha256.0) {
                return invalid(format!("member {} reuses another member's TLS key", c.id));
            }
            crate::types::check_display_name(&c.name)
                .and_then(|()| crate::types::check_endpoint(&c.endpoint))
                .map_err(|e| RosterError::Invalid(format!("member {}: {e}", c.id)))?;
        }
        if !self.members.iter().any(|m| m.voting) {
            return invalid("no voting member".into());
        }
        Ok(())
    }
}

/// One member's signature on a roster version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterSignature {
    /// Who signed.
    pub signer: MemberId,
    /// Ed25519 over the canonical bytes, context `maillon/v1/roster`.
    pub signature: Signature,
}

/// A roster version with the signatures gathered so far (the `roster.json` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRoster {
    /// The signed content.
    pub roster: Roster,
    /// Signatures gathered so far.
    pub signatures: Vec<RosterSignature>,
}

impl SignedRoster {
    /// An unsigned roster, ready for signatures.
    pub fn unsigned(roster: Roster) -> Self {
        Self {
            roster,
            signatures: Vec::new(),
        }
    }

    /// Adds (or replaces) `signer`'s signature, checking the key is the one listed.
    pub fn sign(&mut self, signer: &MemberId, key: &NodeKey) -> Result<(), RosterError> {
        let member = self
            .roster
            .member(signer)
            .ok_or_else(|| RosterError::NotAMember(signer.clone()))?;
        if member.card.signing_key != key.public() {
            return Err(RosterError::WrongKey(signer.clone()));
        }
        let signature = key.sign(Context::Roster, &self.roster.canonical_bytes());
        self.signatures.retain(|s| &s.signer != signer);
        self.signatures.push(RosterSignature {
            signer: signer.clone(),
            signature,
        });
        Ok(())
    }

    /// Members whose valid signature is present; errors on any unknown or forged entry.
    fn valid_signers(&self) -> Result<BTreeSet<MemberId>, RosterError> {
        let bytes = self.roster.canonical_bytes();
        let mut signers = BTreeSet::new();
        for s in &self.signatures {
            let m = self
                .roster
                .member(&s.signer)
                .ok_or_else(|| RosterError::UnknownSigner(s.signer.clone()))?;
            m.card
                .signing_key
                .verify(Context::Roster, &bytes, &s.signature)
                .map_err(|_| RosterError::ForgedSignature(s.signer.clone()))?;
            signers.insert(s.signer.clone());
        }
        Ok(signers)
    }

    /// Verifies a genesis roster: well formed, version 1, signed by every founder.
    pub fn verify_genesis(self) -> Result<VerifiedRoster, RosterError> {
        self.roster.check_well_formed()?;
        if self.roster.version != 1 {
            return Err(RosterError::Invalid(format!(
                "expected the genesis roster (version 1), found version {}",
                self.roster.version
            )));
        }
        let signers = self.valid_signers()?;
        let missing: Vec<MemberId> = self
            .roster
            .members
            .iter()
            .map(|m| m.card.id.clone())
            .filter(|id| !signers.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(RosterError::MissingSignatures {
                version: 1,
                missing,
            });
        }
        let hash = self.roster.hash_hex();
        Ok(VerifiedRoster { signed: self, hash })
    }
}

/// A roster whose signatures have been checked. Only this type grants trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRoster {
    signed: SignedRoster,
    hash: String,
}

impl VerifiedRoster {
    /// The roster content.
    pub fn roster(&self) -> &Roster {
        &self.signed.roster
    }

    /// The roster with its signatures.
    pub fn signed(&self) -> &SignedRoster {
        &self.signed
    }

    /// Hex SHA-256 of the canonical bytes.
    pub fn hash_hex(&self) -> &str {
        &self.hash
    }

    /// The member if it is listed and active.
    pub fn active_member(&self, id: &MemberId) -> Option<&RosterMember> {
        self.roster()
            .member(id)
            .filter(|m| m.status == MemberStatus::Active)
    }
}

/// The roster in force at a node, shared by the TLS verifiers and the services.
#[derive(Debug)]
pub struct CurrentRoster {
    inner: RwLock<(Arc<VerifiedRoster>, HashMap<SpkiHash, MemberId>)>,
}

impl CurrentRoster {
    /// Starts with a verified roster.
    pub fn new(roster: VerifiedRoster) -> Self {
        let pins = Self::pins(&roster);
        Self {
            inner: RwLock::new((Arc::new(roster), pins)),
        }
    }

    fn pins(roster: &VerifiedRoster) -> HashMap<SpkiHash, MemberId> {
        roster
            .roster()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Active)
            .map(|m| (m.card.tls_spki_sha256, m.card.id.clone()))
            .collect()
    }

    /// The roster in force.
    pub fn get(&self) -> Arc<VerifiedRoster> {
        match self.inner.read() {
            Ok(g) => g.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }
}

impl PinLookup for CurrentRoster {
    fn member_for(&self, pin: &SpkiHash) -> Option<MemberId> {
        let guard = match self.inner.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.1.get(pin).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, kind: MemberKind, key: &NodeKey, pin: u8) -> MemberCard {
        MemberCard {
            id: id.parse().expect("id"),
            name: format!("Member {id}"),
            kind,
            endpoint: format!("127.0.0.1:{}", 7000 + u16::from(pin)),
            signing_key: key.public(),
            tls_spki_sha256: SpkiHash([pin; 32]),
        }
    }

    fn founders() -> (Vec<NodeKey>, SignedRoster) {
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let cards = vec![
            card("cd12", MemberKind::Departement, &keys[0], 1),
            card("ccas-rodez", MemberKind::Ccas, &keys[1], 2),
            card("caf12", MemberKind::Caf, &keys[2], 3),
        ];
        let roster = Roster::genesis(
            "gip-aveyron",
            "2/3".parse().expect("quorum"),
            cards,
            Charter::default(),
        )
        .expect("genesis");
        (keys, SignedRoster::unsigned(roster))
    }

    fn id(s: &str) -> MemberId {
        s.parse().expect("id")
    }

    #[test]
    fn genesis_needs_every_founder_and_names_the_missing() {
        let (keys, mut r) = founders();
        r.sign(&id("cd12"), &keys[0]).expect("sign");
        let err = r.clone().verify_genesis().expect_err("two missing");
        assert_eq!(
            err.to_string(),
            "roster v1 lacks the signature of: ccas-rodez, caf12"
        );
        r.sign(&id("ccas-rodez"), &keys[1]).expect("sign");
        r.sign(&id("caf12"), &keys[2]).expect("sign");
        let v = r.verify_genesis().expect("complete");
        assert_eq!(v.roster().members.len(), 3);
    }

    #[test]
    fn a_forged_or_foreign_signature_is_refused() {
        let (keys, mut r) = founders();
        for (i, m) in ["cd12", "ccas-rodez", "caf12"].iter().enumerate() {
            r.sign(&id(m), &keys[i]).expect("sign");
        }
        let mut forged = r.clone();
        forged.signatures[1].signature = keys[0].sign(Context::Roster, &r.roster.canonical_bytes());
        assert_eq!(
            forged.verify_genesis(),
            Err(RosterError::ForgedSignature(id("ccas-rodez")))
        );
        let mut tampered = r.clone();
        tampered.roster.quorum = "1/3".parse().expect("quorum");
        assert!(matches!(
            tampered.verify_genesis(),
            Err(RosterError::ForgedSignature(_))
        ));
        let mut other_context = r.clone();
        other_context.signatures[0].signature =
            keys[0].sign(Context::Consent, &r.roster.canonical_bytes());
        assert!(other_context.verify_genesis().is_err());
        assert_eq!(
            r.sign(&id("caf12"), &keys[0]),
            Err(RosterError::WrongKey(id("caf12")))
        );
    }

    #[test]
    fn quorum_thresholds_round_up() {
        let q: Quorum = "2/3".parse().expect("quorum");
        assert_eq!(q.threshold(3), 2);
        assert_eq!(q.threshold(4), 3);
        assert_eq!(q.threshold(1), 1);
        for bad in ["0/3", "4/3", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Quorum>().is_err(), "{bad}");
        }
    }

    #[test]
    fn charter_is_a_closed_list() {
        let c = Charter::default();
        assert!(c.allows(MemberKind::Caf, Section::Housing));
        assert!(!c.allows(MemberKind::Caf, Section::Health));
        assert!(!c.allows(MemberKind::Association, Section::ChildProtection));
    }
}
