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
    /// A version for another federation.
    #[error("roster of federation {found:?}, not {expected:?}")]
    OtherFederation {
        /// The federation in force.
        expected: String,
        /// The one the candidate names.
        found: String,
    },
    /// A version at or below the one in force: a rollback.
    #[error("roster v{found} is not newer than v{have} in force (rollback refused)")]
    Rollback {
        /// The version in force.
        have: u64,
        /// The candidate's version.
        found: u64,
    },
    /// A version that skips one: versions are applied strictly in order.
    #[error("roster v{found} skips a version: v{} must come first", have + 1)]
    Skipped {
        /// The version in force.
        have: u64,
        /// The candidate's version.
        found: u64,
    },
    /// A version that does not name the hash of the one in force.
    #[error("roster v{0} does not name the hash of the version in force")]
    WrongPredecessor(u64),
    /// Not enough distinct voting keys signed, of the outgoing or the incoming version.
    #[error(
        "roster v{version} lacks the quorum of the {side} voters: {have} distinct voting keys signed, {need} needed"
    )]
    NoQuorum {
        /// The candidate's version.
        version: u64,
        /// `outgoing` (the version in force) or `incoming` (the candidate).
        side: &'static str,
        /// Distinct voting keys whose signature verifies.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A key the candidate introduces did not sign it (no proof of possession).
    #[error("roster v{version} introduces a new key for {member} that did not sign it")]
    NoProofOfPossession {
        /// The candidate's version.
        version: u64,
        /// The member whose new key is unproven.
        member: MemberId,
    },
    /// The candidate drops a member, reinstates an excluded one, or changes a
    /// member's kind: members are never removed, exclusion is final.
    #[error("roster v{version}: {what}")]
    Transition {
        /// The candidate's version.
        version: u64,
        /// What it does that no version may do, in one line.
        what: String,
    },
    /// The change does not apply to the roster in force.
    #[error("{0}")]
    Change(String),
    /// This member already signed another candidate for this version: one
    /// candidate per version, so that two cannot both reach a quorum.
    #[error(
        "this member already signed another candidate for v{version} ({other}); it signs one candidate per version"
    )]
    AlreadySigned {
        /// The version both candidates are for.
        version: u64,
        /// The other candidate's hash.
        other: String,
    },
    /// A proposal for a version number already adopted: propose again on top.
    #[error(
        "roster v{version} is already adopted; this proposal is stale and must be made again on top of it"
    )]
    Stale {
        /// The version it was for.
        version: u64,
    },
}

impl RosterError {
    /// A stable, machine-readable name of the refusal (snake case).
    pub fn code(&self) -> &'static str {
        match self {
            RosterError::Invalid(_) => "invalid_roster",
            RosterError::UnknownSigner(_) => "unknown_signer",
            RosterError::ForgedSignature(_) => "forged_signature",
            RosterError::MissingSignatures { .. } => "missing_signatures",
            RosterError::NotAMember(_) => "not_a_member",
            RosterError::WrongKey(_) => "wrong_key",
            RosterError::OtherFederation { .. } => "other_federation",
            RosterError::Rollback { .. } => "rollback",
            RosterError::Skipped { .. } => "skipped_version",
            RosterError::WrongPredecessor(_) => "wrong_predecessor",
            RosterError::NoQuorum { .. } => "no_quorum",
            RosterError::NoProofOfPossession { .. } => "no_proof_of_possession",
            RosterError::Transition { .. } => "forbidden_transition",
            RosterError::Change(_) => "change_does_not_apply",
            RosterError::Stale { .. } => "stale",
            RosterError::AlreadySigned { .. } => "already_signed",
        }
    }
}

/// Longest reason a roster version carries (bytes).
pub const MAX_REASON: usize = 500;

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
        let bad = || {
            RosterError::Invalid(format!(
                "quorum {s:?}: expected N/D with D/2 < N <= D (a majority, so that two quorums always share a voter)"
            ))
        };
        let (n, d) = s.split_once('/').ok_or_else(bad)?;
        let (num, den): (u32, u32) = (n.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        if num == 0 || den == 0 || num > den || u64::from(num) * 2 <= u64::from(den) {
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

/// Which sections each kind of member may ever receive (consent narrows it,
/// never widens it), and which roles may ever break the glass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charter {
    /// Sections receivable per member kind.
    pub receivable: BTreeMap<MemberKind, BTreeSet<Section>>,
    /// Who may break the glass (read without consent, for a grave and
    /// imminent danger the GIP's convention names) and for how long; nobody
    /// by default. Absent from the signed bytes when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassRule>,
    /// Days a closed dossier's sections and identity records are kept at
    /// every member before they are erased; kept until erased by hand when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// The kinds of member that may record consents for their own sections;
    /// every kind when empty (absent from the signed bytes then).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub consent_recorders: BTreeSet<MemberKind>,
    /// Whether the person's access report names the agents who read (their
    /// user names); by default it names only their institution, as Finland's
    /// Kanta withholds professionals' names (absent from the signed bytes then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_agent_names: bool,
    /// Where vigilance alerts go and how long they are kept; no alerts
    /// when none (absent from the signed bytes then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertRule>,
    /// The federation's indicators show a count under this as "< N"; 5
    /// when none (absent from the signed bytes then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_cell_threshold: Option<u32>,
}

/// The charter's rule for vigilance alerts: the member that receives them
/// (the CCAS, say) and how long an alert is kept before it is purged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The member alerts are raised to.
    pub recipient: MemberId,
    /// Days an alert is kept after it was raised (1 to [`MAX_ALERT_DAYS`]).
    pub retention_days: u32,
}

/// The indicators' small-cell threshold when the charter sets none.
pub const DEFAULT_SMALL_CELL: u32 = 5;

/// Longest an alert may be kept (days).
pub const MAX_ALERT_DAYS: u32 = 365;

/// The charter's break-glass rule: which users of which kinds of member may
/// read without consent, for how long. A break-glass read never reaches
/// beyond what the reader's kind may receive, nor a section the person masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRule {
    /// The kinds of member whose users may break the glass.
    pub kinds: BTreeSet<MemberKind>,
    /// The roles those users hold.
    pub roles: BTreeSet<crate::types::Role>,
    /// How long the access lasts, in hours (1 to [`MAX_BREAK_GLASS_HOURS`]).
    pub hours: u32,
}

/// Longest break-glass access a charter may grant (hours).
pub const MAX_BREAK_GLASS_HOURS: u32 = 72;

/// Longest retention a charter may set (days): ten years.
pub const MAX_RETENTION_DAYS: u32 = 3653;

impl Charter {
    /// Whether a user of a member of `kind` holding `role` may break the glass.
    pub fn may_break_glass(&self, kind: MemberKind, role: crate::types::Role) -> bool {
        self.break_glass
            .as_ref()
            .is_some_and(|r| r.kinds.contains(&kind) && r.roles.contains(&role))
    }

    /// Checks the charter's numbers and its break-glass rule.
    pub fn check(&self) -> Result<(), String> {
        if let Some(rule) = &self.break_glass {
            if rule.kinds.is_empty() || rule.roles.is_empty() {
                return Err("a break-glass rule names at least one kind and one role".into());
            }
            if !(1..=MAX_BREAK_GLASS_HOURS).contains(&rule.hours) {
                return Err(format!(
                    "a break-glass access lasts 1 to {MAX_BREAK_GLASS_HOURS} hours"
                ));
            }
        }
        if self
            .retention_days
            .is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d))
        {
            return Err(format!("a retention lasts 1 to {MAX_RETENTION_DAYS} days"));
        }
        if self
            .alerts
            .as_ref()
            .is_some_and(|a| !(1..=MAX_ALERT_DAYS).contains(&a.retention_days))
        {
            return Err(format!("an alert is kept 1 to {MAX_ALERT_DAYS} days"));
        }
        if self
            .small_cell_threshold
            .is_some_and(|n| !(1..=100).contains(&n))
        {
            return Err("the small-cell threshold is 1 to 100".into());
        }
        Ok(())
    }

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
            break_glass: None,
            retention_days: None,
            consent_recorders: BTreeSet::new(),
            report_agent_names: false,
            small_cell_threshold: None,
            alerts: None,
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
    /// Why this version was proposed, in the proposer's words (none for
    /// version 1). Signed with the rest; absent from the bytes when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
            reason: None,
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
        self.charter
            .check()
            .map_err(|e| RosterError::Invalid(format!("charter: {e}")))?;
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
        if !self
            .members
            .iter()
            .any(|m| m.voting && m.status == MemberStatus::Active)
        {
            return invalid("no active voting member".into());
        }
        if let Some(reason) = &self.reason {
            crate::types::check_short_text("reason", reason, MAX_REASON)
                .map_err(|e| RosterError::Invalid(e.to_string()))?;
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

/// Largest roster version (bytes of JSON) a node takes from a peer or a file.
pub const MAX_ROSTER_BYTES: usize = 256 * 1024;

impl SignedRoster {
    /// Decodes a signed roster from a peer or a file: size first, then the
    /// exact fields; no signature is checked. The error never quotes the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, RosterError> {
        if bytes.len() > MAX_ROSTER_BYTES {
            return Err(RosterError::Invalid(format!(
                "a roster version is at most {MAX_ROSTER_BYTES} bytes"
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            RosterError::Invalid(format!(
                "not a signed roster (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// An unsigned roster, ready for signatures.
    pub fn unsigned(roster: Roster) -> Self {
        Self {
            roster,
            signatures: Vec::new(),
        }
    }

    /// Adds (or replaces) `signer`'s signature, checking the key is the one listed.
    pub fn sign(&mut self, signer: &MemberId, key: &NodeKey) -> Result<(), RosterError> {
        check_listed_key(&self.roster, signer, key)?;
        self.push_signature(signer, key);
        Ok(())
    }

    /// Adds `signer`'s signature made with the key `previous` lists for it:
    /// how a member that rotates its key endorses the version that lists its
    /// new one, beside the signature of the new key.
    pub fn sign_with_previous_key(
        &mut self,
        previous: &Roster,
        signer: &MemberId,
        key: &NodeKey,
    ) -> Result<(), RosterError> {
        check_listed_key(previous, signer, key)?;
        self.push_signature(signer, key);
        Ok(())
    }

    /// Adds a signature, replacing one `signer` made earlier with the same key.
    fn push_signature(&mut self, signer: &MemberId, key: &NodeKey) {
        let bytes = self.roster.canonical_bytes();
        let public = key.public();
        self.signatures.retain(|s| {
            &s.signer != signer
                || public
                    .verify(Context::Roster, &bytes, &s.signature)
                    .is_err()
        });
        self.signatures.push(RosterSignature {
            signer: signer.clone(),
            signature: key.sign(Context::Roster, &bytes),
        });
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

/// Refuses a key that is not the one `roster` lists for `signer`.
fn check_listed_key(roster: &Roster, signer: &MemberId, key: &NodeKey) -> Result<(), RosterError> {
    let member = roster
        .member(signer)
        .ok_or_else(|| RosterError::NotAMember(signer.clone()))?;
    if member.card.signing_key != key.public() {
        return Err(RosterError::WrongKey(signer.clone()));
    }
    Ok(())
}

/// The signing keys of `roster`'s active voting members, with their ids.
fn voting_keys(roster: &Roster) -> BTreeMap<[u8; 32], MemberId> {
    roster
        .members
        .iter()
        .filter(|m| m.voting && m.status == MemberStatus::Active)
        .map(|m| (m.card.signing_key.to_bytes(), m.card.id.clone()))
        .collect()
}

/// Which keys signed `next`: each entry must verify under the key `have` or
/// the candidate lists for its signer. Keys, not entries, are counted.
fn signed_keys(have: &Roster, next: &SignedRoster) -> Result<BTreeSet<[u8; 32]>, RosterError> {
    let cand = &next.roster;
    let bytes = cand.canonical_bytes();
    let mut signed: BTreeSet<[u8; 32]> = BTreeSet::new();
    for s in &next.signatures {
        let listed: Vec<PublicKey> = [have.member(&s.signer), cand.member(&s.signer)]
            .into_iter()
            .flatten()
            .map(|m| m.card.signing_key)
            .collect();
        if listed.is_empty() {
            return Err(RosterError::UnknownSigner(s.signer.clone()));
        }
        let key = listed
            .iter()
            .find(|k| k.verify(Context::Roster, &bytes, &s.signature).is_ok())
            .ok_or_else(|| RosterError::ForgedSignature(s.signer.clone()))?;
        signed.insert(key.to_bytes());
    }
    Ok(signed)
}

/// One side's count of a proposal: the distinct voting keys that signed,
/// the threshold, and the voters whose signature is still missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideTally {
    /// Distinct voting keys whose signature verifies.
    pub have: usize,
    /// The threshold of the quorum rule.
    pub need: usize,
    /// Active voters whose key has not signed yet.
    pub missing: Vec<MemberId>,
}

/// How far a proposal is from adoption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The count among the voters of the version in force.
    pub outgoing: SideTally,
    /// The count among the voters of the candidate.
    pub incoming: SideTally,
    /// Members whose new signing key has not signed the candidate.
    pub unproven: Vec<MemberId>,
    /// Signers whose signature counts for neither side (no vote, suspended, excluded).
    pub not_counted: Vec<MemberId>,
}

impl Tally {
    /// Whether the proposal has everything adoption needs.
    pub fn complete(&self) -> bool {
        self.outgoing.have >= self.outgoing.need
            && self.incoming.have >= self.incoming.need
            && self.unproven.is_empty()
    }
}

/// Counts `next`'s signatures against the voters of `have` and of the candidate.
fn tally(have: &Roster, next: &SignedRoster) -> Result<Tally, RosterError> {
    let cand = &next.roster;
    let signed = signed_keys(have, next)?;
    let side = |roster: &Roster| {
        let voters = voting_keys(roster);
        SideTally {
            have: voters.keys().filter(|k| signed.contains(*k)).count(),
            need: roster.quorum.threshold(voters.len()),
            missing: roster
                .members
                .iter()
                .filter(|m| voters.contains_key(&m.card.signing_key.to_bytes()))
                .filter(|m| !signed.contains(&m.card.signing_key.to_bytes()))
                .map(|m| m.card.id.clone())
                .collect(),
        }
    };
    // A key is new when its member did not hold it in `have`: it must sign.
    let is_new = |m: &RosterMember| {
        have.member(&m.card.id)
            .is_none_or(|o| o.card.signing_key != m.card.signing_key)
    };
    let unproven = cand
        .members
        .iter()
        .filter(|m| is_new(m) && !signed.contains(&m.card.signing_key.to_bytes()))
        .map(|m| m.card.id.clone())
        .collect();
    let (old_voters, new_voters) = (voting_keys(have), voting_keys(cand));
    let mut not_counted: Vec<MemberId> = Vec::new();
    for s in &next.signatures {
        let counts = [have.member(&s.signer), cand.member(&s.signer)]
            .into_iter()
            .flatten()
            .any(|m| {
                let k = m.card.signing_key.to_bytes();
                signed.contains(&k) && (old_voters.contains_key(&k) || new_voters.contains_key(&k))
            });
        let proves = cand
            .member(&s.signer)
            .is_some_and(|m| is_new(m) && signed.contains(&m.card.signing_key.to_bytes()));
        if !counts && !proves && !not_counted.contains(&s.signer) {
            not_counted.push(s.signer.clone());
        }
    }
    Ok(Tally {
        outgoing: side(have),
        incoming: side(cand),
        unproven,
        not_counted,
    })
}

/// A change a member proposes to the roster in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Admits a new member from its card, active.
    Admit {
        /// The newcomer's card.
        card: MemberCard,
        /// Whether it votes on later changes.
        voting: bool,
    },
    /// Suspends an active member: every peer refuses it at once.
    Suspend {
        /// The member concerned.
        member: MemberId,
    },
    /// Reinstates a suspended member.
    Reinstate {
        /// The member concerned.
        member: MemberId,
    },
    /// Excludes a member for good; it stays listed so that its keys are never reused.
    Exclude {
        /// The member concerned.
        member: MemberId,
    },
    /// Changes a member's endpoint or keys (a rotation: old and new keys both sign).
    UpdateMember {
        /// The member concerned.
        member: MemberId,
        /// Its new peer endpoint.
        endpoint: Option<String>,
        /// Its new card (name, endpoint, keys); the id and kind must not change.
        card: Option<MemberCard>,
    },
    /// Changes the quorum rule.
    SetQuorum {
        /// The new rule.
        quorum: Quorum,
    },
    /// Replaces the charter.
    SetCharter {
        /// The new charter.
        charter: Charter,
    },
}

impl VerifiedRoster {
    /// The candidate version that applies `change` to this one, unsigned,
    /// with the proposer's `reason`.
    pub fn propose(&self, change: &Change, reason: Option<String>) -> Result<Roster, RosterError> {
        let mut next = self.roster().clone();
        next.version += 1;
        next.previous = Some(self.hash_hex().to_owned());
        next.reason = reason;
        let no_change = |what: String| Err(RosterError::Change(what));
        let member_mut = |r: &mut Roster, id: &MemberId| -> Result<usize, RosterError> {
            r.members
                .iter()
                .position(|m| &m.card.id == id)
                .ok_or_else(|| RosterError::Change(format!("{id} is not a member")))
        };
        match change {
            Change::Admit { card, voting } => {
                if next.member(&card.id).is_some() {
                    return no_change(format!("{} is already a member", card.id));
                }
                next.members.push(RosterMember {
                    card: card.clone(),
                    status: MemberStatus::Active,
                    voting: *voting,
                });
            }
            Change::Suspend { member }
            | Change::Reinstate { member }
            | Change::Exclude { member } => {
                let i = member_mut(&mut next, member)?;
                let (from, to) = match change {
                    Change::Suspend { .. } => {
                        (&[MemberStatus::Active][..], MemberStatus::Suspended)
                    }
                    Change::Reinstate { .. } => {
                        (&[MemberStatus::Suspended][..], MemberStatus::Active)
                    }
                    _ => (
                        &[MemberStatus::Active, MemberStatus::Suspended][..],
                        MemberStatus::Excluded,
                    ),
                };
                let status = next.members[i].status;
                if !from.contains(&status) {
                    return no_change(format!("{member} is {status}"));
                }
                next.members[i].status = to;
            }
            Change::UpdateMember {
                member,
                endpoint,
                card,
            } => {
                let i = member_mut(&mut next, member)?;
                if next.members[i].status == MemberStatus::Excluded {
                    return no_change(format!("{member} is excluded"));
                }
                if let Some(card) = card {
                    if &card.id != member {
                        return no_change(format!("the card is for {}, not {member}", card.id));
                    }
                    next.members[i].card = card.clone();
                }
                if let Some(endpoint) = endpoint {
                    next.members[i].card.endpoint = endpoint.clone();
                }
                if next.members[i] == self.roster().members[i] {
                    return no_change(format!("nothing changes for {member}"));
                }
            }
            Change::SetQuorum { quorum } => {
                if *quorum == next.quorum {
                    return no_change(format!("the quorum is already {quorum}"));
                }
                next.quorum = *quorum;
            }
            Change::SetCharter { charter } => {
                if *charter == next.charter {
                    return no_change("the charter is already this one".into());
                }
                next.charter = charter.clone();
            }
        }
        self.check_link(&next)?;
        Ok(next)
    }
}

impl SignedRoster {
    /// Adds `other`'s signatures on the same content that this copy lacks;
    /// returns how many were added. Content that differs adds nothing.
    pub fn merge(&mut self, other: &SignedRoster) -> usize {
        if other.roster != self.roster {
            return 0;
        }
        let mut added = 0;
        for s in &other.signatures {
            if !self.signatures.contains(s) {
                self.signatures.push(s.clone());
                added += 1;
            }
        }
        added
    }
}

/// One thing a roster version changes from the one before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterChange {
    /// A new member.
    Admits {
        /// Its id.
        id: MemberId,
        /// Its kind.
        kind: MemberKind,
        /// Its display name.
        name: String,
        /// Its peer endpoint.
        endpoint: String,
        /// Whether it votes.
        voting: bool,
        /// Its status.
        status: MemberStatus,
    },
    /// A member suspended, excluded or reinstated.
    Status {
        /// The member.
        id: MemberId,
        /// Its new status.
        status: MemberStatus,
    },
    /// A member given or denied a vote.
    Vote {
        /// The member.
        id: MemberId,
        /// Whether it votes now.
        voting: bool,
    },
    /// A member's display name changed.
    Renames {
        /// The member.
        id: MemberId,
        /// Its name before.
        from: String,
        /// Its name now.
        to: String,
    },
    /// A member's peer endpoint changed.
    Moves {
        /// The member.
        id: MemberId,
        /// The endpoint before.
        from: String,
        /// The endpoint now.
        to: String,
    },
    /// A member's signing key replaced.
    SigningKey(MemberId),
    /// A member's TLS key replaced.
    TlsKey(MemberId),
    /// The quorum rule changed.
    Quorum {
        /// The rule before.
        from: Quorum,
        /// The rule now.
        to: Quorum,
    },
    /// The charter lets a kind of member receive more sections.
    MayReceive(MemberKind, Vec<Section>),
    /// The charter lets a kind of member receive fewer sections.
    MayNoLongerReceive(MemberKind, Vec<Section>),
    /// The charter's break-glass rule changed.
    BreakGlass(Option<BreakGlassRule>),
    /// The charter's retention of closed dossiers changed.
    Retention(Option<u32>),
    /// The kinds of member that may record consents changed.
    Recorders(BTreeSet<MemberKind>),
    /// Whether the access report names the agents who read.
    ReportNamesAgents(bool),
    /// Where alerts go and how long they are kept (none: no alerts).
    Alerts(Option<AlertRule>),
    /// The indicators' small-cell threshold (none: the default).
    SmallCells(Option<u32>),
}

impl std::fmt::Display for RosterChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::types::escape_controls as esc;
        let list = |s: &[Section]| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        match self {
            RosterChange::Admits {
                id,
                kind,
                name,
                endpoint,
                voting,
                status,
            } => write!(
                f,
                "admits {id} ({kind}, \"{}\") at {}, {}, {status}",
                esc(name),
                esc(endpoint),
                if *voting {
                    "with a vote"
                } else {
                    "without a vote"
                }
            ),
            RosterChange::Status { id, status } => match status {
                MemberStatus::Suspended => write!(f, "suspends {id}"),
                MemberStatus::Excluded => write!(f, "excludes {id} for good"),
                MemberStatus::Active => write!(f, "reinstates {id}"),
            },
            RosterChange::Vote { id, voting: true } => write!(f, "gives {id} a vote"),
            RosterChange::Vote { id, voting: false } => write!(f, "takes away {id}'s vote"),
            RosterChange::Renames { id, from, to } => {
                write!(f, "renames {id} from \"{}\" to \"{}\"", esc(from), esc(to))
            }
            RosterChange::Moves { id, from, to } => {
                write!(f, "moves {id} from {} to {}", esc(from), esc(to))
            }
            RosterChange::SigningKey(id) => write!(f, "replaces {id}'s signing key"),
            RosterChange::TlsKey(id) => write!(f, "replaces {id}'s TLS key"),
            RosterChange::Quorum { from, to } => {
                write!(f, "changes the quorum from {from} to {to}")
            }
            RosterChange::MayReceive(kind, s) => {
                write!(f, "charter: a {kind} may now receive {}", list(s))
            }
            RosterChange::MayNoLongerReceive(kind, s) => {
                write!(f, "charter: a {kind} may no longer receive {}", list(s))
            }
            RosterChange::BreakGlass(rule) => {
                write!(f, "charter: {}", describe_break_glass(rule.as_ref()))
            }
            RosterChange::Retention(days) => write!(f, "charter: {}", describe_retention(*days)),
            RosterChange::Recorders(kinds) => write!(f, "charter: {}", describe_recorders(kinds)),
            RosterChange::ReportNamesAgents(true) => {
                write!(
                    f,
                    "charter: the person's access report names the agents who read"
                )
            }
            RosterChange::ReportNamesAgents(false) => write!(
                f,
                "charter: the person's access report names only the agents' institutions"
            ),
            RosterChange::Alerts(None) => write!(f, "charter: no vigilance alerts"),
            RosterChange::SmallCells(n) => write!(
                f,
                "charter: the indicators show counts under {} as \"< {0}\"",
                n.unwrap_or(DEFAULT_SMALL_CELL)
            ),
            RosterChange::Alerts(Some(rule)) => write!(
                f,
                "charter: vigilance alerts go to {}, kept {} days",
                rule.recipient, rule.retention_days
            ),
        }
    }
}

/// What `new` changes from `old`, one item a change.
pub fn roster_changes(old: &Roster, new: &Roster) -> Vec<RosterChange> {
    let mut out = Vec::new();
    for m in &new.members {
        let id = &m.card.id;
        let Some(o) = old.member(id) else {
            out.push(RosterChange::Admits {
                id: id.clone(),
                kind: m.card.kind,
                name: m.card.name.clone(),
                endpoint: m.card.endpoint.clone(),
                voting: m.voting,
                status: m.status,
            });
            continue;
        };
        if o.status != m.status {
            out.push(RosterChange::Status {
                id: id.clone(),
                status: m.status,
            });
        }
        if o.voting != m.voting {
            out.push(RosterChange::Vote {
                id: id.clone(),
                voting: m.voting,
            });
        }
        if o.card.name != m.card.name {
            out.push(RosterChange::Renames {
                id: id.clone(),
                from: o.card.name.clone(),
                to: m.card.name.clone(),
            });
        }
        if o.card.endpoint != m.card.endpoint {
            out.push(RosterChange::Moves {
                id: id.clone(),
                from: o.card.endpoint.clone(),
                to: m.card.endpoint.clone(),
            });
        }
        if o.card.signing_key != m.card.signing_key {
            out.push(RosterChange::SigningKey(id.clone()));
        }
        if o.card.tls_spki_sha256 != m.card.tls_spki_sha256 {
            out.push(RosterChange::TlsKey(id.clone()));
        }
    }
    if old.quorum != new.quorum {
        out.push(RosterChange::Quorum {
            from: old.quorum,
            to: new.quorum,
        });
    }
    for kind in MemberKind::ALL {
        let sections = |c: &Charter| c.receivable.get(kind).cloned().unwrap_or_default();
        let (before, after) = (sections(&old.charter), sections(&new.charter));
        let gained: Vec<Section> = after.difference(&before).copied().collect();
        let lost: Vec<Section> = before.difference(&after).copied().collect();
        if !gained.is_empty() {
            out.push(RosterChange::MayReceive(*kind, gained));
        }
        if !lost.is_empty() {
            out.push(RosterChange::MayNoLongerReceive(*kind, lost));
        }
    }
    if new.charter.break_glass != old.charter.break_glass {
        out.push(RosterChange::BreakGlass(new.charter.break_glass.clone()));
    }
    if new.charter.retention_days != old.charter.retention_days {
        out.push(RosterChange::Retention(new.charter.retention_days));
    }
    if new.charter.consent_recorders != old.charter.consent_recorders {
        out.push(RosterChange::Recorders(
            new.charter.consent_recorders.clone(),
        ));
    }
    if new.charter.report_agent_names != old.charter.report_agent_names {
        out.push(RosterChange::ReportNamesAgents(
            new.charter.report_agent_names,
        ));
    }
    if new.charter.alerts != old.charter.alerts {
        out.push(RosterChange::Alerts(new.charter.alerts.clone()));
    }
    if new.charter.small_cell_threshold != old.charter.small_cell_threshold {
        out.push(RosterChange::SmallCells(new.charter.small_cell_threshold));
    }
    out
}

/// What `new` changes from `old`, in plain words, one line a change.
pub fn describe_changes(old: &Roster, new: &Roster) -> Vec<String> {
    let mut out: Vec<String> = roster_changes(old, new)
        .iter()
        .map(ToString::to_string)
        .collect();
    if out.is_empty() {
        out.push("changes nothing but the version".into());
    }
    if let Some(reason) = &new.reason {
        out.push(format!(
            "reason given: {}",
            crate::types::escape_controls(reason)
        ));
    }
    out
}

/// The break-glass rule in plain words.
pub fn describe_break_glass(rule: Option<&BreakGlassRule>) -> String {
    let list = |v: Vec<&str>| v.join(", ");
    match rule {
        None => "nobody may break the glass".into(),
        Some(r) => format!(
            "the roles {} at {} may break the glass, for {} h",
            list(r.roles.iter().map(|r| r.as_str()).collect()),
            list(r.kinds.iter().map(|k| k.as_str()).collect()),
            r.hours
        ),
    }
}

/// The retention of closed dossiers in plain words.
pub fn describe_retention(days: Option<u32>) -> String {
    match days {
        None => "closed dossiers are kept until erased by hand".into(),
        Some(d) => format!("closed dossiers are erased {d} days after closing"),
    }
}

/// Who may record consents, in plain words.
pub fn describe_recorders(kinds: &BTreeSet<MemberKind>) -> String {
    if kinds.is_empty() {
        "every kind of member may record consents for its sections".into()
    } else {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        format!("only {} may record consents", kinds.join(", "))
    }
}

/// What no version may do to its predecessor: drop a member (ids and keys
/// stay listed for good, so that they are never reused), reinstate an
/// excluded member, or change a member's kind (the charter depends on it).
fn check_transition(have: &Roster, cand: &Roster) -> Result<(), RosterError> {
    let refuse = |what: String| {
        Err(RosterError::Transition {
            version: cand.version,
            what,
        })
    };
    for old in &have.members {
        let id = &old.card.id;
        let Some(new) = cand.member(id) else {
            return refuse(format!(
                "it drops {id}; a member leaves by exclusion, not by removal"
            ));
        };
        if old.status == MemberStatus::Excluded && new.status != MemberStatus::Excluded {
            return refuse(format!(
                "it reinstates {id}, who was excluded; exclusion is final"
            ));
        }
        if old.card.kind != new.card.kind {
            return refuse(format!(
                "it changes the kind of {id} from {} to {}",
                old.card.kind, new.card.kind
            ));
        }
    }
    // A key never moves from one member to another: a member that held two
    // identities would vote twice.
    for new in &cand.members {
        for old in have.members.iter().filter(|o| o.card.id != new.card.id) {
            if old.card.signing_key == new.card.signing_key {
                return refuse(format!(
                    "it lists for {} the signing key of {}",
                    new.card.id, old.card.id
                ));
            }
            if old.card.tls_spki_sha256 == new.card.tls_spki_sha256 {
                return refuse(format!(
                    "it lists for {} the TLS key of {}",
                    new.card.id, old.card.id
                ));
            }
        }
    }
    Ok(())
}

impl VerifiedRoster {
    /// Verifies `next` as the successor of this version, by TUF's root
    /// rotation rule: same federation; numbered exactly one more; naming this
    /// version's hash; signed by a quorum of the **distinct keys** of this
    /// version's active voting members **and** a quorum of the candidate's;
    /// and signed by every signing key it introduces (proof of possession).
    /// Every signature entry must verify under a key one of the two versions
    /// lists for its signer; signatures of non-voting, suspended or excluded
    /// members verify but count for nothing.
    pub fn verify_successor(&self, next: SignedRoster) -> Result<VerifiedRoster, RosterError> {
        self.check_link(&next.roster)?;
        let (have, cand) = (self.roster(), &next.roster);
        let tally = tally(have, &next)?;
        for (side, t) in [("outgoing", &tally.outgoing), ("incoming", &tally.incoming)] {
            if t.have < t.need {
                return Err(RosterError::NoQuorum {
                    version: cand.version,
                    side,
                    have: t.have,
                    need: t.need,
                });
            }
        }
        if let Some(member) = tally.unproven.first() {
            return Err(RosterError::NoProofOfPossession {
                version: cand.version,
                member: member.clone(),
            });
        }
        let hash = cand.hash_hex();
        Ok(VerifiedRoster { signed: next, hash })
    }

    /// Checks that `cand` may follow this version, signatures aside: same
    /// federation, numbered exactly one more, naming this version's hash,
    /// well formed, and keeping every member (exclusion final, kinds fixed).
    pub fn check_link(&self, cand: &Roster) -> Result<(), RosterError> {
        let have = self.roster();
        if cand.federation != have.federation {
            return Err(RosterError::OtherFederation {
                expected: have.federation.clone(),
                found: cand.federation.clone(),
            });
        }
        if cand.version <= have.version {
            return Err(RosterError::Rollback {
                have: have.version,
                found: cand.version,
            });
        }
        if cand.version != have.version + 1 {
            return Err(RosterError::Skipped {
                have: have.version,
                found: cand.version,
            });
        }
        if cand.previous.as_deref() != Some(self.hash_hex()) {
            return Err(RosterError::WrongPredecessor(cand.version));
        }
        cand.check_well_formed()?;
        check_transition(have, cand)
    }

    /// How far `next` is from adoption as this version's successor; errors
    /// on a forged or unknown signature entry. The caller checks the link.
    pub fn tally(&self, next: &SignedRoster) -> Result<Tally, RosterError> {
        tally(self.roster(), next)
    }

    /// Verifies a whole chain from its genesis, link by link.
    pub fn verify_chain(
        genesis: SignedRoster,
        links: impl IntoIterator<Item = SignedRoster>,
    ) -> Result<VerifiedRoster, RosterError> {
        links
            .into_iter()
            .try_fold(genesis.verify_genesis()?, |at, next| {
                at.verify_successor(next)
            })
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

    /// Puts `roster` in force: new handshakes and every later call see it.
    pub fn replace(&self, roster: VerifiedRoster) {
        let pins = Self::pins(&roster);
        let mut guard = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = (Arc::new(roster), pins);
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
        tampered.roster.quorum = "3/4".parse().expect("quorum");
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
        for bad in ["0/3", "4/3", "2", "a/b", "1/0", "1/2", "1/3", "2/4"] {
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

    /// The founders' genesis, signed by all, and their keys.
    fn founded() -> (Vec<NodeKey>, VerifiedRoster) {
        let (keys, mut r) = founders();
        for (i, m) in ["cd12", "ccas-rodez", "caf12"].iter().enumerate() {
            r.sign(&id(m), &keys[i]).expect("sign");
        }
        (keys, r.verify_genesis().expect("genesis"))
    }

    /// The next version of `at`, edited, unsigned.
    fn next(at: &VerifiedRoster, edit: impl FnOnce(&mut Roster)) -> SignedRoster {
        let mut r = at.roster().clone();
        r.version += 1;
        r.previous = Some(at.hash_hex().to_owned());
        edit(&mut r);
        SignedRoster::unsigned(r)
    }

    const IDS: [&str; 3] = ["cd12", "ccas-rodez", "caf12"];

    #[test]
    fn a_charity_is_admitted_by_a_quorum_of_the_old_and_the_new_voters_and_proves_its_key() {
        let (keys, v1) = founded();
        let charity = NodeKey::generate();
        let admit = |r: &mut Roster| {
            r.members.push(RosterMember {
                card: card("relais-solidaire", MemberKind::Association, &charity, 4),
                status: MemberStatus::Active,
                voting: true,
            })
        };
        // 2 of 3 old voters: enough for the outgoing side (2/3 of 3 = 2), but
        // the incoming side has 4 voters (2/3 of 4 = 3) and the charity's new
        // key has not signed.
        let mut p = next(&v1, admit);
        p.sign(&id(IDS[0]), &keys[0]).expect("sign");
        p.sign(&id(IDS[1]), &keys[1]).expect("sign");
        assert_eq!(
            v1.verify_successor(p.clone()),
            Err(RosterError::NoQuorum {
                version: 2,
                side: "incoming",
                have: 2,
                need: 3
            })
        );
        p.sign(&id("relais-solidaire"), &charity).expect("sign");
        let v2 = v1
            .verify_successor(p)
            .expect("quorum on both sides, key proven");
        assert_eq!(v2.roster().version, 2);
        assert!(v2.active_member(&id("relais-solidaire")).is_some());

        // The new key's owner must sign even when the voters are enough.
        let mut unproven = next(&v1, admit);
        for (i, m) in IDS.iter().enumerate() {
            unproven.sign(&id(m), &keys[i]).expect("sign");
        }
        let mut r = unproven.roster.clone();
        r.members[3].voting = false;
        let mut unproven = SignedRoster::unsigned(r);
        for (i, m) in IDS.iter().enumerate() {
            unproven.sign(&id(m), &keys[i]).expect("sign");
        }
        assert_eq!(
            v1.verify_successor(unproven),
            Err(RosterError::NoProofOfPossession {
                version: 2,
                member: id("relais-solidaire")
            })
        );
    }

    #[test]
    fn the_same_key_counts_once_and_signatures_of_suspended_or_non_voting_members_count_for_nothing()
     {
        let (keys, v1) = founded();
        // One voter signing twice is one key.
        let mut p = next(&v1, |r| r.quorum = "3/5".parse().expect("quorum"));
        p.sign(&id(IDS[0]), &keys[0]).expect("sign");
        let dup = p.signatures[0].clone();
        p.signatures.push(dup);
        assert_eq!(
            v1.verify_successor(p),
            Err(RosterError::NoQuorum {
                version: 2,
                side: "outgoing",
                have: 1,
                need: 2
            })
        );
        // A suspended member's signature verifies but does not count.
        let mut suspend = next(&v1, |r| r.members[2].status = MemberStatus::Suspended);
        suspend.sign(&id(IDS[0]), &keys[0]).expect("sign");
        suspend.sign(&id(IDS[1]), &keys[1]).expect("sign");
        let v2 = v1
            .verify_successor(suspend)
            .expect("caf12 suspended by two of three");
        let mut after = next(&v2, |r| r.quorum = "3/4".parse().expect("quorum"));
        after.sign(&id(IDS[0]), &keys[0]).expect("sign");
        after.sign(&id(IDS[2]), &keys[2]).expect("sign");
        assert_eq!(
            v2.verify_successor(after),
            Err(RosterError::NoQuorum {
                version: 3,
                side: "outgoing",
                have: 1,
                need: 2
            }),
            "the suspended caf12 does not vote"
        );
    }

    #[test]
    fn forged_unknown_rolled_back_skipped_or_unlinked_versions_are_refused() {
        let (keys, v1) = founded();
        let signed_by_all = |mut p: SignedRoster| {
            for (i, m) in IDS.iter().enumerate() {
                p.sign(&id(m), &keys[i]).expect("sign");
            }
            p
        };
        let mut forged = signed_by_all(next(&v1, |_| {}));
        forged.signatures[1].signature =
            keys[0].sign(Context::Roster, &forged.roster.canonical_bytes());
        assert_eq!(
            v1.verify_successor(forged),
            Err(RosterError::ForgedSignature(id(IDS[1])))
        );
        let mut stranger = signed_by_all(next(&v1, |_| {}));
        stranger.signatures[0].signer = id("intrus");
        assert_eq!(
            v1.verify_successor(stranger),
            Err(RosterError::UnknownSigner(id("intrus")))
        );
        let rollback = signed_by_all(next(&v1, |r| r.version = 1));
        assert_eq!(
            v1.verify_successor(rollback),
            Err(RosterError::Rollback { have: 1, found: 1 })
        );
        let skip = signed_by_all(next(&v1, |r| r.version = 3));
        assert_eq!(
            v1.verify_successor(skip),
            Err(RosterError::Skipped { have: 1, found: 3 })
        );
        let unlinked = signed_by_all(next(&v1, |r| r.previous = Some("00".repeat(32))));
        assert_eq!(
            v1.verify_successor(unlinked),
            Err(RosterError::WrongPredecessor(2))
        );
        let foreign = signed_by_all(next(&v1, |r| r.federation = "gip-lot".into()));
        assert!(matches!(
            v1.verify_successor(foreign),
            Err(RosterError::OtherFederation { .. })
        ));
        // A key reused under two ids is not well formed.
        let twice = signed_by_all(next(&v1, |r| {
            let mut copy = r.members[0].clone();
            copy.card.id = id("cd12-bis");
            copy.card.tls_spki_sha256 = SpkiHash([9; 32]);
            r.members.push(copy);
        }));
        assert!(matches!(
            v1.verify_successor(twice),
            Err(RosterError::Invalid(_))
        ));
    }

    #[test]
    fn a_member_rotates_its_key_with_its_old_and_new_keys_and_the_chain_verifies_from_genesis() {
        let (keys, v1) = founded();
        let genesis = v1.signed().clone();
        let rotated = NodeKey::generate();
        let mut p = next(&v1, |r| r.members[1].card.signing_key = rotated.public());
        p.sign(&id(IDS[0]), &keys[0]).expect("sign");
        // Only the new key so far: the outgoing side counts cd12 alone.
        p.sign(&id(IDS[1]), &rotated).expect("the new key");
        assert!(matches!(
            v1.verify_successor(p.clone()),
            Err(RosterError::NoQuorum {
                side: "outgoing",
                ..
            })
        ));
        assert_eq!(
            p.sign(&id(IDS[1]), &keys[1]),
            Err(RosterError::WrongKey(id(IDS[1]))),
            "the old key is not the one v2 lists"
        );
        p.sign_with_previous_key(v1.roster(), &id(IDS[1]), &keys[1])
            .expect("the old key, as v1 lists it");
        assert_eq!(p.signatures.len(), 3, "both of ccas-rodez's keys signed");
        let v2 = v1.verify_successor(p.clone()).expect("rotated");
        assert_eq!(v2.roster().members[1].card.signing_key, rotated.public());
        // After rotation the old key no longer counts.
        let mut later = next(&v2, |r| r.quorum = "3/4".parse().expect("quorum"));
        later
            .sign_with_previous_key(v1.roster(), &id(IDS[1]), &keys[1])
            .expect("old key");
        later.sign(&id(IDS[0]), &keys[0]).expect("sign");
        assert_eq!(later.signatures.len(), 2);
        assert_eq!(
            v2.verify_successor(later),
            Err(RosterError::ForgedSignature(id(IDS[1]))),
            "neither v2 nor v3 lists the old key"
        );
        // The chain verifies link by link from genesis.
        let v2_again = VerifiedRoster::verify_chain(genesis.clone(), [p]).expect("chain");
        assert_eq!(v2_again.hash_hex(), v2.hash_hex());
        let mut broken = v2.signed().clone();
        broken.signatures.truncate(1);
        assert!(VerifiedRoster::verify_chain(genesis, [broken]).is_err());
    }

    #[test]
    fn changes_build_the_next_version_and_refuse_what_does_not_apply() {
        let (keys, v1) = founded();
        let caf = id("caf12");
        let suspend = v1
            .propose(
                &Change::Suspend {
                    member: caf.clone(),
                },
                Some("impayés".into()),
            )
            .expect("suspend");
        assert_eq!(suspend.version, 2);
        assert_eq!(suspend.previous.as_deref(), Some(v1.hash_hex()));
        assert_eq!(
            suspend.member(&caf).expect("listed").status,
            MemberStatus::Suspended
        );
        assert_eq!(
            describe_changes(v1.roster(), &suspend),
            ["suspends caf12", "reason given: impayés"]
        );
        for (change, why) in [
            (
                Change::Reinstate {
                    member: caf.clone(),
                },
                "caf12 is active",
            ),
            (
                Change::Suspend {
                    member: id("intrus"),
                },
                "intrus is not a member",
            ),
            (
                Change::SetQuorum {
                    quorum: "2/3".parse().expect("q"),
                },
                "the quorum is already 2/3",
            ),
            (
                Change::SetCharter {
                    charter: Charter::default(),
                },
                "the charter is already this one",
            ),
            (
                Change::UpdateMember {
                    member: caf.clone(),
                    endpoint: None,
                    card: None,
                },
                "nothing changes for caf12",
            ),
        ] {
            assert_eq!(
                v1.propose(&change, None),
                Err(RosterError::Change(why.into()))
            );
        }
        // A card for another member, or an admission of a listed id, is refused.
        let other = card("cd12", MemberKind::Departement, &keys[0], 9);
        assert!(matches!(
            v1.propose(
                &Change::UpdateMember {
                    member: caf.clone(),
                    endpoint: None,
                    card: Some(other.clone())
                },
                None
            ),
            Err(RosterError::Change(_))
        ));
        assert!(matches!(
            v1.propose(
                &Change::Admit {
                    card: other,
                    voting: true
                },
                None
            ),
            Err(RosterError::Change(_))
        ));
        // A version that leaves no active voter is not well formed.
        let mut alone = v1.roster().clone();
        for m in &mut alone.members {
            m.status = MemberStatus::Suspended;
        }
        assert!(matches!(
            alone.check_well_formed(),
            Err(RosterError::Invalid(_))
        ));
    }

    #[test]
    fn exclusion_is_final_members_are_never_dropped_and_kinds_never_change() {
        let (keys, v1) = founded();
        let all = |mut p: SignedRoster| {
            for (i, m) in IDS.iter().enumerate() {
                p.sign(&id(m), &keys[i]).expect("sign");
            }
            p
        };
        let v2 = v1
            .verify_successor(all(next(&v1, |r| {
                r.members[2].status = MemberStatus::Excluded
            })))
            .expect("excluded");
        assert_eq!(
            v2.propose(
                &Change::Reinstate {
                    member: id("caf12")
                },
                None
            ),
            Err(RosterError::Change("caf12 is excluded".into()))
        );
        let back = all(next(&v2, |r| r.members[2].status = MemberStatus::Active));
        assert!(matches!(
            v2.verify_successor(back),
            Err(RosterError::Transition { version: 3, .. })
        ));
        let mut dropped = next(&v1, |r| {
            r.members.pop();
        });
        for (i, m) in IDS[..2].iter().enumerate() {
            dropped.sign(&id(m), &keys[i]).expect("sign");
        }
        assert!(matches!(
            v1.verify_successor(dropped),
            Err(RosterError::Transition { .. })
        ));
        let kind = all(next(&v1, |r| r.members[2].card.kind = MemberKind::Cpam));
        assert!(matches!(
            v1.verify_successor(kind),
            Err(RosterError::Transition { .. })
        ));
    }

    #[test]
    fn a_tally_says_who_is_missing_and_whose_signature_counts_for_nothing() {
        let (keys, v1) = founded();
        let mut p = next(&v1, |r| r.members[2].voting = false);
        p.sign(&id(IDS[2]), &keys[2]).expect("sign");
        let t = v1.tally(&p).expect("tally");
        // caf12 votes in v1 (its signature counts there), not in v2.
        assert_eq!((t.outgoing.have, t.outgoing.need), (1, 2));
        assert_eq!(t.outgoing.missing, [id("cd12"), id("ccas-rodez")]);
        assert_eq!((t.incoming.have, t.incoming.need), (0, 2));
        assert!(t.not_counted.is_empty());
        assert!(!t.complete());
        p.sign(&id(IDS[0]), &keys[0]).expect("sign");
        p.sign(&id(IDS[1]), &keys[1]).expect("sign");
        assert!(v1.tally(&p).expect("tally").complete());
        // Merging adds only what is new.
        let mut copy = SignedRoster::unsigned(p.roster.clone());
        assert_eq!(copy.merge(&p), 3);
        assert_eq!(copy.merge(&p), 0);
        let other = next(&v1, |_| {});
        assert_eq!(copy.clone().merge(&other), 0, "other content adds nothing");
    }

    #[test]
    fn a_signed_roster_from_outside_is_bounded_and_never_quoted() {
        assert!(matches!(
            SignedRoster::decode(&vec![b' '; MAX_ROSTER_BYTES + 1]),
            Err(RosterError::Invalid(_))
        ));
        let err =
            SignedRoster::decode(b"{\"roster\": \"\x1b[31msecret\"}").expect_err("not a roster");
        assert!(!err.to_string().contains("secret"), "{err}");
        let (_, v1) = founded();
        let bytes = serde_json::to_vec(v1.signed()).expect("json");
        assert_eq!(SignedRoster::decode(&bytes).expect("decodes"), *v1.signed());
    }

    #[test]
    fn a_version_without_a_reason_hashes_as_before_the_field_existed() {
        let (_, v1) = founded();
        let text = String::from_utf8(v1.roster().canonical_bytes()).expect("utf-8");
        assert!(!text.contains("reason"), "{text}");
    }

    #[test]
    fn a_key_never_moves_from_one_member_to_another() {
        let (keys, v1) = founded();
        // cd12 takes a new key and a newcomer is listed with cd12's old one:
        // cd12 would vote twice.
        let fresh = NodeKey::generate();
        let mut p = next(&v1, |r| {
            let old = r.members[0].card.clone();
            r.members[0].card.signing_key = fresh.public();
            r.members.push(RosterMember {
                card: MemberCard {
                    id: id("relais-solidaire"),
                    name: "Relais".into(),
                    kind: MemberKind::Association,
                    endpoint: "127.0.0.1:7009".into(),
                    signing_key: old.signing_key,
                    tls_spki_sha256: SpkiHash([9; 32]),
                },
                status: MemberStatus::Active,
                voting: true,
            });
        });
        p.sign_with_previous_key(v1.roster(), &id("cd12"), &keys[0])
            .expect("old key");
        p.sign(&id("cd12"), &fresh).expect("new key");
        p.sign(&id("ccas-rodez"), &keys[1]).expect("sign");
        assert!(matches!(
            v1.verify_successor(p),
            Err(RosterError::Transition { .. })
        ));
    }

    #[test]
    fn the_charter_names_who_may_break_the_glass_and_changes_only_by_vote() {
        let (_, v1) = founded();
        assert!(
            v1.roster().charter.break_glass.is_none(),
            "nobody by default"
        );
        let mut charter = v1.roster().charter.clone();
        charter.break_glass = Some(BreakGlassRule {
            kinds: [MemberKind::Departement].into(),
            roles: [crate::types::Role::Caseworker].into(),
            hours: 24,
        });
        let next = v1
            .propose(
                &Change::SetCharter {
                    charter: charter.clone(),
                },
                None,
            )
            .expect("a charter change");
        assert_eq!(
            describe_changes(v1.roster(), &next),
            ["charter: the roles caseworker at departement may break the glass, for 24 h"]
        );
        assert!(
            next.charter
                .may_break_glass(MemberKind::Departement, crate::types::Role::Caseworker)
        );
        assert!(
            !next
                .charter
                .may_break_glass(MemberKind::Ccas, crate::types::Role::Caseworker)
        );
        assert!(
            !next
                .charter
                .may_break_glass(MemberKind::Departement, crate::types::Role::Auditor)
        );
        for hours in [0, MAX_BREAK_GLASS_HOURS + 1] {
            let mut long = charter.clone();
            if let Some(r) = long.break_glass.as_mut() {
                r.hours = hours;
            }
            assert!(
                v1.propose(&Change::SetCharter { charter: long }, None)
                    .is_err(),
                "{hours} h"
            );
        }
    }
}
