//! GIP governance at a node: proposals and approvals, adoption of the next
//! roster version (log first), refusals and equivocation, catching up from
//! peers, and the effects of a version on this node's groups.
//!
//! A proposal is the whole candidate version *n+1*, naming *n*'s hash. It
//! travels between nodes with the signatures gathered so far; each node
//! merges the signatures it did not have and adopts the candidate as soon
//! as it verifies by the TUF rule (`roster::VerifiedRoster::verify_successor`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::roster::{
    Change, RosterError, RosterMember, SignedRoster, Tally, VerifiedRoster, describe_changes,
};
use crate::sharing::ShareId;
use crate::storage::{MetaKey, Tree};
use crate::types::{MemberId, MemberStatus, Role, Section, UserName};

/// Most versions one chain fetch returns; a node far behind fetches again.
pub const MAX_CHAIN_LINKS: usize = 64;

/// Most open proposals one member may have at a node for one version: a
/// member cannot fill another's store (or log) with proposals.
pub const MAX_OPEN_PROPOSALS_PER_MEMBER: usize = 8;

/// How many distinct refusals a node remembers, so that a peer repeating a
/// refused offer does not fill the log with copies.
const RECENT_REFUSALS: usize = 256;

/// Most bytes of roster versions one chain or proposal fetch returns (the
/// gRPC limit is 1 MiB).
const MAX_FETCH_BYTES: usize = 768 * 1024;

/// How long one governance call to a peer (an offer, a chain fetch) may take.
const GOSSIP_DEADLINE: Duration = Duration::from_secs(3);

/// A proposal as this node keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The candidate with every valid signature gathered so far.
    pub signed: SignedRoster,
    /// The member that proposed it (its first signer).
    pub proposer: MemberId,
    /// When this node first saw it.
    pub seen_at: i64,
    /// Set when this node's admin declined to sign it: who, and why.
    pub rejected: Option<(UserName, String)>,
}

/// A proposal with where it stands, for `gov list` and `gov show`.
#[derive(Clone, Debug)]
pub struct ProposalView {
    /// The candidate's hash: the proposal's id.
    pub id: String,
    /// The proposal.
    pub proposal: Proposal,
    /// How far it is from adoption, against the version in force; `None`
    /// when it is stale (it does not follow the version in force).
    pub tally: Option<Tally>,
    /// What it changes, in plain words.
    pub changes: Vec<String>,
}

/// What became of a roster version a peer offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferOutcome {
    /// This node adopted it.
    Adopted,
    /// It is a proposal still short of signatures; its new signatures are kept.
    Pending,
    /// This node had it already (adopted, or every signature known).
    Known,
}

/// What a node tells of its roster: for `gov status`.
#[derive(Clone, Debug)]
pub struct RosterStatus {
    /// The version in force.
    pub roster: std::sync::Arc<VerifiedRoster>,
    /// The last version each peer told this node, and when.
    pub peers: BTreeMap<MemberId, (u64, i64)>,
}

/// The chain tree's key of a version: zero-padded, so that keys sort by version.
pub fn chain_key(version: u64) -> String {
    format!("{version:020}")
}

impl Node {
    /// The signed version `version` of the chain this node adopted.
    pub(super) fn chain_link(&self, version: u64) -> Result<Option<SignedRoster>> {
        Ok(self.store.get(Tree::RosterChain, &chain_key(version))?)
    }

    /// At start: puts in force the last version this node adopted, verifying
    /// the chain it keeps link by link from `genesis` (the roster file).
    pub(super) async fn load_chain(&self, genesis: &VerifiedRoster) -> Result<()> {
        match self.chain_link(1)? {
            Some(first) if first.roster.hash_hex() != genesis.hash_hex() => {
                return Err(ServiceError::State(
                    "roster.json is not the genesis this node adopted; put back the federation's genesis roster".into(),
                ));
            }
            Some(_) => {}
            None => {
                // First start: the genesis is the first link, adopted below
                // once the log holds it.
                self.store
                    .put(Tree::RosterChain, &chain_key(1), genesis.signed())?;
                self.flush().await?;
            }
        }
        let adopted: Option<String> = self.store.meta(MetaKey::RosterHash)?;
        let mut at = genesis.clone();
        let mut version = 2;
        while adopted.as_deref() != Some(at.hash_hex()) {
            let Some(link) = self.chain_link(version)? else {
                break;
            };
            let next = at.verify_successor(link).map_err(|e| {
                ServiceError::State(format!(
                    "the roster chain this node keeps does not verify at v{version}: {e}"
                ))
            })?;
            at = next;
            version += 1;
        }
        if adopted.is_some() && adopted.as_deref() != Some(at.hash_hex()) {
            // The last adoption's link is missing: keep what verifies; the
            // replay re-applies what the log holds.
            tracing::warn!(
                version = at.roster().version,
                "the store names a roster it does not keep; starting from the last version that verifies"
            );
        }
        self.roster.replace(at);
        Ok(())
    }

    /// Logs the adoption of the version in force if this node has not yet
    /// (its first start, or a crash before the log entry).
    pub(super) async fn log_adoption_if_new(&self) -> Result<()> {
        let roster = self.roster.get();
        let adopted: Option<String> = self.store.meta(MetaKey::RosterHash)?;
        if adopted.as_deref() == Some(roster.hash_hex()) {
            return Ok(());
        }
        let now = self.clock.now();
        let event = AuditEvent::RosterAdopted {
            version: roster.roster().version,
            hash: roster.hash_hex().to_owned(),
        };
        let v = (*roster).clone();
        self.log_then_apply(now, event, "roster_logged", || self.apply_roster(&v, now))
            .await
    }

    /// Applies an adopted version to the store (the caller logged it): the
    /// members it suspends or excludes are marked ousted, the proposals it
    /// settles are dropped, and the version is put in force.
    pub(super) fn apply_roster(&self, v: &VerifiedRoster, time: i64) -> Result<()> {
        let before = self.roster.get();
        for m in &v.roster().members {
            let was_active = before
                .roster()
                .member(&m.card.id)
                .is_some_and(|o| o.status == MemberStatus::Active);
            if was_active && m.status != MemberStatus::Active {
                self.store.put(Tree::Ousted, m.card.id.as_str(), &time)?;
            }
        }
        self.store.put(
            Tree::RosterChain,
            &chain_key(v.roster().version),
            v.signed(),
        )?;
        self.store
            .set_meta(MetaKey::RosterHash, &v.hash_hex().to_owned())?;
        self.store.set_meta(MetaKey::Roster, v.signed())?;
        // The adopted proposal is settled, and so are those for earlier
        // versions; the competitors for this version stay, shown stale.
        let version = v.roster().version;
        self.store
            .remove_where::<Proposal>(Tree::Proposals, "", |p| p.signed.roster.version < version)?;
        self.store.remove(Tree::Proposals, v.hash_hex())?;
        self.roster.replace(v.clone());
        if let Some(me) = v.roster().member(&self.me)
            && (me.card.signing_key != self.key.public() || me.card.tls_spki_sha256 != self.tls_pin)
        {
            tracing::warn!(
                version = v.roster().version,
                "the roster in force lists new keys for this node: it starts again to put them in force"
            );
            self.keys_rotated.send_replace(true);
        }
        Ok(())
    }

    /// Adopts `v`, the verified successor of the version in force: its link
    /// is kept first, then the adoption is logged, then put in force.
    async fn adopt(&self, v: VerifiedRoster) -> Result<()> {
        self.store.put(
            Tree::RosterChain,
            &chain_key(v.roster().version),
            v.signed(),
        )?;
        self.flush().await?;
        let now = self.clock.now();
        let event = AuditEvent::RosterAdopted {
            version: v.roster().version,
            hash: v.hash_hex().to_owned(),
        };
        self.log_then_apply(now, event, "roster_logged", || self.apply_roster(&v, now))
            .await?;
        tracing::info!(
            version = v.roster().version,
            hash = %v.hash_hex(),
            "roster version adopted"
        );
        Ok(())
    }

    /// Logs a refused version or proposal, then returns the refusal.
    async fn refuse_roster<T>(
        &self,
        signed: &SignedRoster,
        from: Option<&MemberId>,
        error: RosterError,
    ) -> Result<T> {
        let key = format!(
            "{}|{}|{}",
            from.map(MemberId::as_str).unwrap_or(""),
            signed.roster.hash_hex(),
            error.code()
        );
        if !self.note_refusal(key) {
            // The same refusal of the same version from the same peer was
            // logged a moment ago: answered again, not logged again.
            return Err(error.into());
        }
        self.audit(AuditEvent::RosterRefused {
            version: signed.roster.version,
            hash: signed.roster.hash_hex(),
            from: from.cloned(),
            code: error.code().to_owned(),
            reason: error.to_string(),
        })
        .await?;
        tracing::warn!(
            version = signed.roster.version,
            from = ?from.map(MemberId::as_str),
            code = error.code(),
            "roster version refused"
        );
        Err(error.into())
    }

    /// Remembers a refusal; false if it was among the last ones remembered.
    fn note_refusal(&self, key: String) -> bool {
        let mut recent = self
            .recent_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.contains(&key) {
            return false;
        }
        if recent.len() == RECENT_REFUSALS {
            recent.pop_front();
        }
        recent.push_back(key);
        true
    }

    /// Takes a roster version a peer offered: a proposal whose new signatures
    /// are merged, or a version `adopted` by the sender. Adopts it when it
    /// verifies; refuses and logs a forged, unlinked, rolled-back, skipping
    /// or (when claimed adopted) incomplete one; keeps as evidence and
    /// raises an alarm for a second valid version of a number adopted here.
    pub async fn accept_offer(
        &self,
        peer: &MemberId,
        signed: SignedRoster,
        adopted: bool,
    ) -> Result<OfferOutcome> {
        self.active_peer(peer)?;
        let _governing = self.governance.lock().await;
        let current = self.roster.get();
        let (have, version) = (current.roster().version, signed.roster.version);
        if version <= have {
            return self.offer_at_or_below(peer, signed, adopted).await;
        }
        if let Err(e) = current.check_link(&signed.roster) {
            return self.refuse_roster(&signed, Some(peer), e).await;
        }
        let tally = match current.tally(&signed) {
            Ok(t) => t,
            Err(e) => return self.refuse_roster(&signed, Some(peer), e).await,
        };
        let merged = self.merge_proposal(&signed, None).await?;
        if merged.tally_complete(&current)? {
            let v = current
                .verify_successor(merged.signed)
                .map_err(ServiceError::Roster)?;
            self.adopt(v).await?;
            return Ok(OfferOutcome::Adopted);
        }
        if adopted {
            // The sender says this version is in force: it must verify as it is.
            let error =
                current
                    .verify_successor(signed.clone())
                    .err()
                    .unwrap_or(RosterError::NoQuorum {
                        version,
                        side: "outgoing",
                        have: tally.outgoing.have,
                        need: tally.outgoing.need,
                    });
            return self.refuse_roster(&signed, Some(peer), error).await;
        }
        Ok(if merged.added == 0 {
            OfferOutcome::Known
        } else {
            OfferOutcome::Pending
        })
    }

    /// An offered version numbered at or below the one in force: known,
    /// stale, a rollback, or equivocation.
    async fn offer_at_or_below(
        &self,
        peer: &MemberId,
        signed: SignedRoster,
        adopted: bool,
    ) -> Result<OfferOutcome> {
        let version = signed.roster.version;
        let hash = signed.roster.hash_hex();
        let ours = self.chain_link(version)?;
        if ours.as_ref().is_some_and(|o| o.roster.hash_hex() == hash) {
            return Ok(OfferOutcome::Known);
        }
        let have = self.roster.get().roster().version;
        // Is it a valid successor of our version `version - 1`? Then two
        // valid versions carry the same number: equivocation.
        let predecessor = match version {
            0 | 1 => None,
            v => self.verified_at(v - 1)?,
        };
        if let (Some(pred), Some(ours)) = (predecessor, ours)
            && pred.verify_successor(signed.clone()).is_ok()
        {
            let key = format!("{version:020}/{hash}");
            self.store.put(Tree::RosterEvidence, &key, &signed)?;
            self.flush().await?;
            let adopted_hash = ours.roster.hash_hex();
            self.audit(AuditEvent::RosterEquivocation {
                version,
                adopted: adopted_hash.clone(),
                other: hash.clone(),
                from: Some(peer.clone()),
            })
            .await?;
            tracing::error!(
                version,
                adopted = %adopted_hash,
                other = %hash,
                from = %peer,
                "EQUIVOCATION: two valid roster versions carry the same number; both are kept as evidence and the first adopted stands"
            );
            return Err(ServiceError::Equivocation { version });
        }
        let error = if !adopted && version == have {
            RosterError::Stale { version }
        } else {
            RosterError::Rollback {
                have,
                found: version,
            }
        };
        self.refuse_roster(&signed, Some(peer), error).await
    }

    /// Version `version` of the adopted chain, verified again from genesis.
    fn verified_at(&self, version: u64) -> Result<Option<VerifiedRoster>> {
        let Some(genesis) = self.chain_link(1)? else {
            return Ok(None);
        };
        let mut links = Vec::new();
        for v in 2..=version {
            match self.chain_link(v)? {
                Some(link) => links.push(link),
                None => return Ok(None),
            }
        }
        Ok(VerifiedRoster::verify_chain(genesis, links).ok())
    }

    /// Merges `signed`'s signatures into the stored proposal of the same
    /// content (creating it), logging each signature new here; `by` is this
    /// node's admin when the signature is this node's.
    async fn merge_proposal(&self, signed: &SignedRoster, by: Option<&UserName>) -> Result<Merged> {
        let hash = signed.roster.hash_hex();
        let existing: Option<Proposal> = self.store.get(Tree::Proposals, &hash)?;
        let (mut proposal, new_signers, created) = match existing {
            Some(mut p) => {
                let before: Vec<_> = p.signed.signatures.clone();
                p.signed.merge(signed);
                let new: Vec<MemberId> = p
                    .signed
                    .signatures
                    .iter()
                    .filter(|s| !before.contains(s))
                    .map(|s| s.signer.clone())
                    .collect();
                (p, new, false)
            }
            None => {
                let proposer = signed
                    .signatures
                    .first()
                    .map(|s| s.signer.clone())
                    .ok_or_else(|| {
                        ServiceError::Invalid("a proposal carries its proposer's signature".into())
                    })?;
                if self.roster.get().roster().member(&proposer).is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "a proposal's first signer is its proposer, a member of the version in force; {proposer} is not"
                    )));
                }
                let version = signed.roster.version;
                let open = self
                    .store
                    .scan::<Proposal>(Tree::Proposals, "")?
                    .iter()
                    .filter(|(_, p)| p.proposer == proposer && p.signed.roster.version == version)
                    .count();
                if open >= MAX_OPEN_PROPOSALS_PER_MEMBER {
                    return Err(ServiceError::Busy(format!(
                        "{proposer} already has {open} open proposals for v{version}"
                    )));
                }
                let mut unique = SignedRoster::unsigned(signed.roster.clone());
                unique.merge(signed);
                let signers = unique.signatures.iter().map(|s| s.signer.clone()).collect();
                (
                    Proposal {
                        signed: unique,
                        proposer,
                        seen_at: self.clock.now(),
                        rejected: None,
                    },
                    signers,
                    true,
                )
            }
        };
        let version = proposal.signed.roster.version;
        if created {
            let before = self.roster.get();
            self.audit(AuditEvent::RosterProposed {
                version,
                hash: hash.clone(),
                proposer: proposal.proposer.clone(),
                by: by.cloned(),
                changes: describe_changes(before.roster(), &proposal.signed.roster),
            })
            .await?;
        }
        let mut seen = BTreeSet::new();
        for member in &new_signers {
            if !seen.insert(member.clone()) {
                continue;
            }
            self.audit(AuditEvent::RosterApproved {
                version,
                hash: hash.clone(),
                member: member.clone(),
                by: by.filter(|_| *member == self.me).cloned(),
            })
            .await?;
        }
        if by.is_some() {
            proposal.rejected = None;
        }
        self.store.put(Tree::Proposals, &hash, &proposal)?;
        self.flush().await?;
        Ok(Merged {
            added: new_signers.len(),
            signed: proposal.signed,
        })
    }

    /// `gov propose`: builds the candidate that applies `change` to the
    /// version in force, signs it as this member, keeps it and sends it to
    /// every active member. Admin only.
    pub async fn propose(
        &self,
        caller: &Caller,
        change: &Change,
        reason: Option<String>,
    ) -> Result<(ProposalView, OfferOutcome)> {
        require(caller, &[Role::Admin])?;
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        let (hash, outcome) = {
            let _governing = self.governance.lock().await;
            let current = self.roster.get();
            let candidate = current.propose(change, reason)?;
            let hash = candidate.hash_hex();
            if self
                .store
                .get::<Proposal>(Tree::Proposals, &hash)?
                .is_some()
            {
                return Err(ServiceError::Exists("this proposal"));
            }
            let mut signed = SignedRoster::unsigned(candidate);
            self.check_one_candidate(&signed)?;
            self.sign_as_me(&current, &mut signed)?;
            (hash, self.settle(&current, &signed, &caller.name).await?)
        };
        // Sent with the lock let go: a peer offering at the same time waits
        // for nothing here.
        let outcome = outcome.offer(self).await;
        Ok((self.view_after(&hash, outcome)?, outcome))
    }

    /// The view of a proposal just settled: open, or adopted.
    fn view_after(&self, hash: &str, outcome: OfferOutcome) -> Result<ProposalView> {
        match outcome {
            OfferOutcome::Adopted => self.adopted_view(hash),
            _ => self.proposal_view(hash),
        }
    }

    /// Refuses to sign a candidate for a version this member already signed
    /// another candidate for (kept among the open or stale proposals).
    fn check_one_candidate(&self, candidate: &SignedRoster) -> Result<()> {
        let (version, hash) = (candidate.roster.version, candidate.roster.hash_hex());
        for (other, p) in self.store.scan::<Proposal>(Tree::Proposals, "")? {
            if p.signed.roster.version == version
                && other != hash
                && p.signed.signatures.iter().any(|s| s.signer == self.me)
            {
                return Err(RosterError::AlreadySigned { version, other }.into());
            }
        }
        Ok(())
    }

    /// Signs `signed` with this node's key, as the member `current` or the
    /// candidate lists it; when the candidate lists a new signing key for
    /// this member (a rotation), signs with the staged key too (proof of
    /// possession), which must be the one listed.
    fn sign_as_me(&self, current: &VerifiedRoster, signed: &mut SignedRoster) -> Result<()> {
        let listed = signed.roster.member(&self.me).map(|m| m.card.signing_key);
        if listed == Some(self.key.public()) {
            return Ok(signed.sign(&self.me, &self.key)?);
        }
        signed.sign_with_previous_key(current.roster(), &self.me, &self.key)?;
        let Some(new_key) = listed else {
            return Ok(());
        };
        let staged = self
            .staged_key
            .as_ref()
            .filter(|p| p.exists())
            .map(|p| crate::crypto::NodeKey::read(p))
            .transpose()
            .map_err(|e| ServiceError::Internal(format!("reading the staged signing key: {e}")))?;
        match staged {
            Some(key) if key.public() == new_key => Ok(signed.sign(&self.me, &key)?),
            _ => Err(ServiceError::State(
                "the proposal lists a new signing key for this member that this node has not staged (maillon node rotate-keys)".into(),
            )),
        }
    }

    /// Keeps `signed` (merging) and adopts it if it verifies; the caller
    /// holds the governance lock, and sends the result to every active
    /// member once it has let the lock go ([`Settled::offer`]).
    async fn settle(
        &self,
        current: &VerifiedRoster,
        signed: &SignedRoster,
        by: &UserName,
    ) -> Result<Settled> {
        let merged = self.merge_proposal(signed, Some(by)).await?;
        let outcome = if merged.tally_complete(current)? {
            let v = current.verify_successor(merged.signed.clone())?;
            self.adopt(v).await?;
            OfferOutcome::Adopted
        } else {
            OfferOutcome::Pending
        };
        Ok(Settled {
            before: current.clone(),
            signed: merged.signed,
            outcome,
        })
    }

    /// `gov approve`: adds this member's signature to an open proposal, and
    /// the signatures of `extra` (the same candidate signed elsewhere, such
    /// as by a newcomer proving its key), then adopts it if it verifies and
    /// sends it to every active member. Admin only.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        extra: Option<SignedRoster>,
    ) -> Result<(ProposalView, OfferOutcome)> {
        require(caller, &[Role::Admin])?;
        let (hash, outcome) = {
            let _governing = self.governance.lock().await;
            let current = self.roster.get();
            let (hash, proposal) = self.find_proposal(id)?;
            current
                .check_link(&proposal.signed.roster)
                .map_err(|e| match e {
                    RosterError::Rollback { found, .. } => RosterError::Stale { version: found },
                    other => other,
                })?;
            let mut signed = proposal.signed.clone();
            if let Some(extra) = extra {
                if extra.roster != signed.roster {
                    return Err(ServiceError::Invalid(
                        "the signed file is not this proposal (its content differs)".into(),
                    ));
                }
                current.tally(&extra)?;
                signed.merge(&extra);
            }
            let already = signed.signatures.iter().any(|s| s.signer == self.me)
                && current
                    .tally(&signed)
                    .is_ok_and(|t| !t.outgoing.missing.contains(&self.me));
            if !already {
                self.check_one_candidate(&signed)?;
                self.sign_as_me(&current, &mut signed)?;
            }
            (hash, self.settle(&current, &signed, &caller.name).await?)
        };
        let outcome = outcome.offer(self).await;
        Ok((self.view_after(&hash, outcome)?, outcome))
    }

    /// `gov reject`: records that this member declines to sign. Admin only.
    pub async fn reject(&self, caller: &Caller, id: &str, reason: &str) -> Result<ProposalView> {
        require(caller, &[Role::Admin])?;
        super::check_text("reason", reason, crate::roster::MAX_REASON)?;
        let _governing = self.governance.lock().await;
        let (hash, mut proposal) = self.find_proposal(id)?;
        self.audit(AuditEvent::RosterRejected {
            version: proposal.signed.roster.version,
            hash: hash.clone(),
            by: caller.name.clone(),
            reason: reason.trim().to_owned(),
        })
        .await?;
        proposal.rejected = Some((caller.name.clone(), reason.trim().to_owned()));
        self.store.put(Tree::Proposals, &hash, &proposal)?;
        self.flush().await?;
        self.proposal_view(&hash)
    }

    /// `gov list`: the open proposals, oldest first. Admin or auditor.
    pub fn list_proposals(&self, caller: &Caller) -> Result<Vec<ProposalView>> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        let mut all = self.store.scan::<Proposal>(Tree::Proposals, "")?;
        all.sort_by_key(|(_, p)| (p.signed.roster.version, p.seen_at));
        all.into_iter()
            .map(|(hash, _)| self.proposal_view(&hash))
            .collect()
    }

    /// `gov show`: one open proposal. Admin or auditor.
    pub fn show_proposal(&self, caller: &Caller, id: &str) -> Result<ProposalView> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        let (hash, _) = self.find_proposal(id)?;
        self.proposal_view(&hash)
    }

    /// `gov status`: the version in force and what each peer last told. Any role.
    pub fn roster_status(&self, _caller: &Caller) -> RosterStatus {
        self.roster_status_now()
    }

    /// The version in force and what each peer last told (node status, metrics).
    pub(super) fn roster_status_now(&self) -> RosterStatus {
        RosterStatus {
            roster: self.roster.get(),
            peers: self
                .peer_versions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// The open proposal `id`: its full hash, a prefix of at least 8 hex
    /// digits, or the version number when one proposal alone carries it.
    fn find_proposal(&self, id: &str) -> Result<(String, Proposal)> {
        let id = id.trim().to_ascii_lowercase();
        let all = self.store.scan::<Proposal>(Tree::Proposals, "")?;
        let matches: Vec<(String, Proposal)> = if let Ok(version) = id.parse::<u64>()
            && id.len() < 8
        {
            all.into_iter()
                .filter(|(_, p)| p.signed.roster.version == version)
                .collect()
        } else if id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            all.into_iter()
                .filter(|(h, _)| h.starts_with(&id))
                .collect()
        } else {
            return Err(ServiceError::Invalid(
                "a proposal is named by its version number or by at least 8 hex digits of its hash"
                    .into(),
            ));
        };
        match matches.len() {
            0 => Err(ServiceError::NotFound(format!("open proposal {id}"))),
            1 => Ok(matches.into_iter().next().expect("one")),
            n => Err(ServiceError::Invalid(format!(
                "{n} open proposals match {id}: name one by its hash"
            ))),
        }
    }

    fn proposal_view(&self, hash: &str) -> Result<ProposalView> {
        let proposal: Proposal = self
            .store
            .get(Tree::Proposals, hash)?
            .ok_or_else(|| ServiceError::NotFound(format!("open proposal {hash}")))?;
        let current = self.roster.get();
        let base = match current.check_link(&proposal.signed.roster) {
            Ok(()) => Some(current.clone()),
            Err(_) => None,
        };
        let tally = base.as_ref().and_then(|b| b.tally(&proposal.signed).ok());
        let previous = match &base {
            Some(b) => b.roster().clone(),
            None => self
                .chain_link(proposal.signed.roster.version.saturating_sub(1))?
                .map(|s| s.roster)
                .unwrap_or_else(|| current.roster().clone()),
        };
        Ok(ProposalView {
            id: hash.to_owned(),
            changes: describe_changes(&previous, &proposal.signed.roster),
            tally,
            proposal,
        })
    }

    /// The view of a version just adopted (no longer open).
    fn adopted_view(&self, hash: &str) -> Result<ProposalView> {
        let current = self.roster.get();
        let previous = self
            .chain_link(current.roster().version.saturating_sub(1))?
            .map(|s| s.roster)
            .unwrap_or_else(|| current.roster().clone());
        let signed = current.signed().clone();
        Ok(ProposalView {
            id: hash.to_owned(),
            changes: describe_changes(&previous, &signed.roster),
            tally: None,
            proposal: Proposal {
                proposer: signed
                    .signatures
                    .first()
                    .map(|s| s.signer.clone())
                    .unwrap_or_else(|| self.me.clone()),
                signed,
                seen_at: self.clock.now(),
                rejected: None,
            },
        })
    }

    /// The adopted versions from `from` on (at most [`MAX_CHAIN_LINKS`]),
    /// for an active peer catching up.
    pub fn chain_from(&self, peer: &MemberId, from: u64) -> Result<Vec<SignedRoster>> {
        self.active_peer(peer)?;
        let have = self.roster.get().roster().version;
        let (mut links, mut bytes) = (Vec::new(), 0);
        for v in from.max(1)..=have {
            if links.len() == MAX_CHAIN_LINKS {
                break;
            }
            let Some(link) = self.chain_link(v)? else {
                break;
            };
            bytes += link.roster.canonical_bytes().len() + 128 * link.signatures.len();
            if bytes > MAX_FETCH_BYTES && !links.is_empty() {
                break;
            }
            links.push(link);
        }
        Ok(links)
    }

    /// The open proposals that follow the version in force (at most
    /// [`MAX_CHAIN_LINKS`]), for an active peer that was down.
    pub fn open_proposals_for(&self, peer: &MemberId) -> Result<Vec<SignedRoster>> {
        self.active_peer(peer)?;
        let current = self.roster.get();
        let mut open: Vec<Proposal> = self
            .store
            .scan::<Proposal>(Tree::Proposals, "")?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| current.check_link(&p.signed.roster).is_ok())
            .collect();
        open.sort_by_key(|p| p.seen_at);
        let (mut out, mut bytes) = (Vec::new(), 0);
        for p in open.into_iter().take(MAX_CHAIN_LINKS) {
            bytes += p.signed.roster.canonical_bytes().len() + 128 * p.signed.signatures.len();
            if bytes > MAX_FETCH_BYTES {
                break;
            }
            out.push(p.signed);
        }
        Ok(out)
    }

    /// Takes the open proposals of `peer` (a node that was down missed them
    /// as they travelled); returns how many versions that adopted.
    async fn proposals_from(&self, peer: &MemberId) -> Result<usize> {
        let member = self.roster_member(peer)?;
        let proposals = within_deadline(peer, self.network.fetch_proposals(&member)).await?;
        let mut adopted = 0;
        for p in proposals {
            if let Ok(OfferOutcome::Adopted) = self.accept_offer(peer, p, false).await {
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    /// Remembers the roster version a peer told; true if it is ahead of this node.
    pub fn note_peer_version(&self, peer: &MemberId, version: u64) -> bool {
        self.peer_versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer.clone(), (version, self.clock.now()));
        version > self.roster.get().roster().version
    }

    /// Catches up from `peer` in a task of its own, unless a catch-up is
    /// already running; then applies what was adopted to the groups.
    pub fn catch_up_in_background(self: &std::sync::Arc<Self>, peer: MemberId) {
        if self
            .catching_up
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let caught = node.catch_up_from(&peer).await;
            node.catching_up
                .store(false, std::sync::atomic::Ordering::SeqCst);
            match caught {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(versions = n, from = %peer, "caught up with the roster");
                    node.after_adoption();
                }
                Err(e) => tracing::info!(from = %peer, error = %e, "roster catch-up failed"),
            }
        });
    }

    /// Applies the version in force to this node's groups in a task of its
    /// own (upkeep does it too, should this one not finish).
    pub fn after_adoption(self: &std::sync::Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(e) = node.prune_groups().await {
                tracing::warn!(error = %e, "applying the roster to the groups failed; upkeep will retry");
            }
        });
    }

    /// Fetches and adopts, link by link, the versions `peer` has and this
    /// node lacks; returns how many were adopted. A link that does not
    /// verify is refused and logged, and the catch-up stops there.
    pub async fn catch_up_from(&self, peer: &MemberId) -> Result<usize> {
        let member = self.roster_member(peer)?;
        self.catch_up_via(&member).await
    }

    /// [`Node::catch_up_from`] a member known by its card (a newcomer's
    /// sponsor, whose card the genesis may not hold): the card only says how
    /// to dial it; every version it gives is verified from the genesis.
    pub async fn catch_up_via(&self, member: &RosterMember) -> Result<usize> {
        let peer = &member.card.id;
        let mut adopted = 0;
        loop {
            let from = self.roster.get().roster().version + 1;
            let (links, told) =
                within_deadline(peer, self.network.fetch_chain(member, from)).await?;
            self.note_peer_version(peer, told);
            if links.is_empty() {
                return Ok(adopted);
            }
            if links[0].roster.version != from {
                return Err(ServiceError::PeerMisbehaved {
                    peer: peer.clone(),
                    what: format!(
                        "asked for the roster versions from v{from}, it sent v{} first",
                        links[0].roster.version
                    ),
                });
            }
            let mut progressed = false;
            for link in links {
                let _governing = self.governance.lock().await;
                let current = self.roster.get();
                if link.roster.version <= current.roster().version {
                    // Known, or a fork: a different valid version of a number
                    // adopted here is equivocation.
                    if self.chain_link(link.roster.version)?.as_ref() != Some(&link) {
                        let _ = self.offer_at_or_below(peer, link, true).await;
                    }
                    continue;
                }
                match current.verify_successor(link.clone()) {
                    Ok(v) => {
                        self.adopt(v).await?;
                        adopted += 1;
                        progressed = true;
                    }
                    Err(e) => return self.refuse_roster(&link, Some(peer), e).await,
                }
            }
            if !progressed {
                return Ok(adopted);
            }
        }
    }

    /// At start: asks the active peers, one at a time in random order, for
    /// the versions this node lacks and the open proposals, until one
    /// answers; returns how many versions were adopted.
    pub async fn catch_up_from_any(&self) -> usize {
        use rand::seq::SliceRandom;
        let mut peers = self.active_peers();
        peers.shuffle(&mut rand::thread_rng());
        for p in peers {
            if self.is_stopping() {
                break;
            }
            if let Ok(n) = self.catch_up_from(&p).await {
                return n + self.proposals_from(&p).await.unwrap_or(0);
            }
        }
        0
    }

    /// The active members of the roster in force, but this node.
    fn active_peers(&self) -> Vec<MemberId> {
        self.active_peers_in(&self.roster.get())
    }

    /// The active members of `roster`, but this node.
    pub(super) fn active_peers_in(&self, roster: &crate::roster::VerifiedRoster) -> Vec<MemberId> {
        roster
            .roster()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Active && m.card.id != self.me)
            .map(|m| m.card.id.clone())
            .collect()
    }

    /// Timer: asks every active peer for the versions this node lacks, all
    /// at once, each within a deadline; returns how many were adopted.
    pub async fn gossip_round(&self) -> usize {
        let peers = self.active_peers();
        let rounds = peers.iter().map(|p| self.catch_up_from(p));
        futures_util::future::join_all(rounds)
            .await
            .into_iter()
            .filter_map(|r| r.ok())
            .sum()
    }

    /// Sends a version (a proposal, or one `adopted` here) to every member
    /// but this node that is active in `before` (the version it follows) or
    /// in it, all at once, each within a deadline: a member it suspends
    /// learns of it too. A newcomer it admits is not dialled: its node
    /// starts once admitted and fetches the chain.
    async fn offer_to_all(&self, before: &VerifiedRoster, signed: &SignedRoster, adopted: bool) {
        let mut members: Vec<RosterMember> = Vec::new();
        for m in before.roster().members.iter().chain(&signed.roster.members) {
            let known = before.roster().member(&m.card.id).is_some();
            if m.status == MemberStatus::Active
                && known
                && m.card.id != self.me
                && !members.iter().any(|o| o.card.id == m.card.id)
            {
                members.push(m.clone());
            }
        }
        let offers = members.iter().map(|m| async move {
            let offer = self.network.offer_roster(m, signed, adopted);
            match tokio::time::timeout(GOSSIP_DEADLINE, offer).await {
                Ok(Ok(version)) => {
                    self.note_peer_version(&m.card.id, version);
                }
                Ok(Err(e)) => {
                    tracing::info!(member = %m.card.id, error = %e, "roster offer not taken")
                }
                Err(_) => tracing::info!(member = %m.card.id, "roster offer: no answer in time"),
            }
        });
        futures_util::future::join_all(offers).await;
    }

    /// Applies the roster in force to this node's groups: the members it no
    /// longer lets in are removed (suspended, excluded, or outside the
    /// charter for the section); a member whose signing key changed is
    /// removed and brought back from a fresh KeyPackage (its leaf re-keyed);
    /// and when this node's own key changed, each group is made anew with
    /// its new credential and its members welcomed again. Runs after each
    /// adoption, and at upkeep until done for the version and key in force;
    /// returns how many members were removed or re-keyed.
    pub async fn prune_groups(&self) -> Result<usize> {
        let roster = self.roster.get();
        let done_for = (roster.roster().version, hex::encode(self.sharing.own_key()));
        if self.store.meta::<(u64, String)>(MetaKey::PrunedFor)? == Some(done_for.clone()) {
            return Ok(0);
        }
        let prefix = format!("share/{}/", self.me);
        let mut changed = 0;
        for scope in self.store.mls_scopes(&prefix)? {
            if self.is_stopping() {
                return Ok(changed);
            }
            let Some(share) = ShareId::from_scope(&scope).filter(|s| s.owner == self.me) else {
                continue;
            };
            let _changing = self.membership.get(&share.scope()).write_owned().await;
            changed += self.rekey_group_locked(&share).await?;
            changed += self.sync_group_locked(&share).await?;
        }
        self.store.set_meta(MetaKey::PrunedFor, &done_for)?;
        self.flush().await?;
        Ok(changed)
    }

    /// Re-keys what of a group no longer matches the roster's signing keys;
    /// the caller holds the share's exclusive lock. Returns how many
    /// members must come back through a fresh Welcome.
    async fn rekey_group_locked(&self, share: &ShareId) -> Result<usize> {
        if !self.sharing.has_group(share)? {
            return Ok(0);
        }
        let leaves = self.sharing.member_keys(share)?;
        let own_key = self.sharing.own_key().to_vec();
        let mine_changed = leaves.iter().any(|(m, k)| *m == self.me && *k != own_key);
        if mine_changed {
            let (sharing, reset) = (self.sharing.clone(), share.clone());
            super::blocking(move || sharing.reset_group(&reset)).await?;
            self.audit(AuditEvent::GroupRekeyed {
                dossier: share.dossier.clone(),
                section: share.section,
            })
            .await?;
            let others: Vec<&MemberId> = leaves
                .iter()
                .map(|(m, _)| m)
                .filter(|m| **m != self.me)
                .collect();
            for m in &others {
                self.mark_for_resync(share, m).await;
            }
            return Ok(others.len());
        }
        let roster = self.roster.get();
        let mut rekeyed = 0;
        for (m, key) in leaves.iter().filter(|(m, _)| *m != self.me) {
            let listed = roster
                .active_member(m)
                .map(|r| r.card.signing_key.to_bytes());
            if listed.is_none_or(|l| l.as_slice() == key.as_slice()) {
                continue;
            }
            // Its old leaf goes now; it comes back with its new key.
            if let Some(change) = self.remove_from_group(share, m).await? {
                self.publish(share, m, change).await?;
            }
            self.mark_for_resync(share, m).await;
            rekeyed += 1;
        }
        Ok(rekeyed)
    }

    /// Whether `member` may be in the group of `section` now: active, and
    /// the charter in force lets its kind receive the section.
    pub(super) fn may_receive(&self, member: &MemberId, section: Section) -> bool {
        let roster = self.roster.get();
        roster
            .active_member(member)
            .is_some_and(|m| roster.roster().charter.allows(m.card.kind, section))
    }

    /// When `member` was last suspended or excluded here, if ever.
    pub(super) fn ousted_at(&self, member: &MemberId) -> Result<Option<i64>> {
        Ok(self.store.get(Tree::Ousted, member.as_str())?)
    }
}

/// One governance call to `peer`, cut after [`GOSSIP_DEADLINE`].
async fn within_deadline<T>(
    peer: &MemberId,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(GOSSIP_DEADLINE, call).await {
        Ok(r) => r,
        Err(_) => Err(ServiceError::Unreachable {
            peer: peer.clone(),
            reason: "no answer in time".into(),
        }),
    }
}

/// A proposal kept (and maybe adopted) here, to send to the members.
struct Settled {
    before: VerifiedRoster,
    signed: SignedRoster,
    outcome: OfferOutcome,
}

impl Settled {
    /// Sends it to every member active before or in it; returns the outcome.
    async fn offer(self, node: &Node) -> OfferOutcome {
        node.offer_to_all(
            &self.before,
            &self.signed,
            self.outcome == OfferOutcome::Adopted,
        )
        .await;
        self.outcome
    }
}

/// A proposal after a merge: its signatures, and how many were new here.
struct Merged {
    signed: SignedRoster,
    added: usize,
}

impl Merged {
    fn tally_complete(&self, current: &VerifiedRoster) -> Result<bool> {
        Ok(current.tally(&self.signed)?.complete())
    }
}
