//! The person's consent: granting (KeyPackages first, then the log, then the
//! store, then the groups), revoking, listing, and closing the groups of
//! consents that are no longer active.

use std::collections::BTreeSet;

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::receipt::ConsentReceipt;
use crate::consent::{
    self, Collection, Consent, ConsentRecord, ConsentStatus, GrantError, LegalBasis,
};
use crate::sharing::{ShareId, Sharing};
use crate::storage::Tree;
use crate::types::{ConsentId, Date, DossierId, MemberId, Role, Section, UserName};

/// What a caseworker asks to grant.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    /// The dossier, held at this node.
    pub dossier: DossierId,
    /// The sections shared.
    pub sections: BTreeSet<Section>,
    /// The members they are shared with.
    pub audience: BTreeSet<MemberId>,
    /// Why, in the person's words.
    pub purpose: String,
    /// The legal ground.
    pub basis: LegalBasis,
    /// How the person gave it.
    pub collection: Collection,
    /// The first day it holds (today when none).
    pub valid_from: Option<Date>,
    /// The last day the consent holds.
    pub until: Date,
    /// Sections the person masks from every member, break-glass included.
    pub masked: BTreeSet<Section>,
}

/// The store key of a consent.
pub(super) fn consent_key(dossier: &DossierId, id: &ConsentId) -> String {
    format!("{dossier}/{id}")
}

impl Node {
    /// Records a consent and adds its audience to the share groups.
    ///
    /// Every missing member's KeyPackage is fetched and checked first, before
    /// any lock is taken: if a member is unreachable or answers badly, nothing
    /// is recorded. Then the grant is logged, then stored: from there on it is
    /// in effect, and the call succeeds even if a member cannot be added now
    /// (upkeep brings it in later).
    pub async fn grant_consent(&self, caller: &Caller, req: GrantRequest) -> Result<ConsentId> {
        require(caller, &[Role::Caseworker])?;
        self.dossier(&req.dossier)?;
        self.check_open(&req.dossier)?;
        let now = self.clock.now();
        let mut consent = Consent {
            id: ConsentId::random(),
            dossier: req.dossier.clone(),
            owner: self.me.clone(),
            sections: req.sections,
            audience: req.audience,
            purpose: req.purpose.trim().to_owned(),
            basis: req.basis,
            collection: req.collection,
            valid_from: req.valid_from.unwrap_or(Date::from_unix(now)),
            until: req.until,
            masked: req.masked,
            granted_by: caller.name.clone(),
            granted_at: now,
        };
        self.check_grant(&consent, now)?;

        // KeyPackages are fetched before any lock is taken: a slow member must
        // not hold up the share's readers.
        // A consent that holds from a later day adds nobody now: upkeep
        // brings its audience in on that day.
        let pending = consent.valid_from.start_unix() > now;
        let mut missing = Vec::new();
        for section in &consent.sections {
            let share = self.own_share(&consent.dossier, *section);
            let sharing = self.sharing.clone();
            let ensure = share.clone();
            super::blocking(move || sharing.ensure_group(&ensure)).await?;
            if pending {
                continue;
            }
            let present: BTreeSet<MemberId> = self.sharing.members(&share)?.into_iter().collect();
            for m in consent.audience.iter().filter(|m| !present.contains(*m)) {
                missing.push((share.clone(), self.roster_member(m)?));
            }
        }
        let mut additions = Vec::new();
        for (share, member) in missing {
            let kp = self.fetch_key_package(&member).await?;
            additions.push((share, member, kp));
        }

        // Sections are sorted, so concurrent changes take these locks in one order.
        let mut changing = Vec::new();
        for section in consent.touched() {
            let share = self.own_share(&consent.dossier, section);
            changing.push(self.membership.get(&share.scope()).write_owned().await);
        }
        // Fetching KeyPackages took time: the grant is dated when it is
        // logged, and checked again against the roster in force now (a
        // member suspended, a charter narrowed, a key rotated meanwhile),
        // and against the dossier (closed or erased meanwhile: erasure takes
        // these locks too).
        self.dossier(&consent.dossier)?;
        self.check_open(&consent.dossier)?;
        let now = self.clock.now();
        consent.granted_at = now;
        self.check_grant(&consent, now)?;
        let mut fresh = Vec::new();
        for (share, member, kp) in additions {
            fresh.push((share, self.roster_member(&member.card.id)?, kp));
        }
        let additions = fresh;
        let record = ConsentRecord::sign(consent.clone(), &self.key);
        self.log_then_apply(now, grant_event(&record), "grant_logged", || {
            self.store_consent(&record)
        })
        .await?;

        // In effect from here: a member that cannot be added now is marked
        // and brought in by upkeep; the grant itself stands.
        let mut changes = Vec::new();
        for (share, member, kp) in additions {
            let id = member.card.id.clone();
            match self.add_to_group(&share, &member, kp).await {
                Ok(Some(change)) => changes.push((share, member, change)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(member = %id, error = %e, "member not added yet; upkeep will retry");
                    self.mark_for_resync(&share, &id).await;
                }
            }
        }
        // In order, each within the delivery deadline: a member added by one
        // change must have its Welcome before the next change's commit.
        for (share, member, change) in changes {
            if let Err(e) = self.publish(&share, &member.card.id, change).await {
                tracing::warn!(member = %member.card.id, error = %e, "membership change not published; upkeep will retry");
                self.mark_for_resync(&share, &member.card.id).await;
            }
        }
        // A member that looked present before the locks may have been
        // removed meanwhile (a revocation of another consent): mark it.
        for section in &consent.sections {
            let share = self.own_share(&consent.dossier, *section);
            self.mark_missing_members(&share, &consent.audience).await;
        }
        // A masked section's group loses every member now, under its lock.
        for section in &consent.masked {
            let share = self.own_share(&consent.dossier, *section);
            if let Err(e) = self.sync_group_locked(&share).await {
                tracing::warn!(error = %e, "group not updated after a masking; upkeep will retry");
            }
        }
        drop(changing);
        Ok(consent.id)
    }

    /// Checks a consent against the roster in force and the dossier's other
    /// records (`consent::check_grant`).
    fn check_grant(&self, consent: &Consent, now: i64) -> Result<()> {
        let existing = self.consents_of(&consent.dossier)?;
        consent::check_grant(&self.roster.get(), consent, &existing, now).map_err(|e| match e {
            GrantError::Invalid(m) => ServiceError::Invalid(m),
            GrantError::Charter { member, section } => ServiceError::Charter { member, section },
            GrantError::NotAMember(m) => {
                ServiceError::Denied(crate::consent::DenyReason::NotAMember(m))
            }
            e @ (GrantError::Recorder(_) | GrantError::Masked { .. }) => {
                ServiceError::NotEntitled(e.to_string())
            }
        })
    }

    /// A consent of `dossier` only, or [`ServiceError::NotFound`] (for the
    /// console, whose addresses name both: nothing is logged or changed
    /// for a pair that does not match).
    fn check_consent_of(&self, dossier: &DossierId, id: &ConsentId) -> Result<()> {
        match self.consent_record(id)? {
            Some((_, r)) if &r.consent.dossier == dossier => Ok(()),
            _ => Err(ServiceError::NotFound(format!("consent {id} of {dossier}"))),
        }
    }

    /// [`Node::show_consent`], for a consent of `dossier` only.
    pub async fn show_consent_of(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        id: &ConsentId,
    ) -> Result<ConsentReceipt> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        self.check_consent_of(dossier, id)?;
        self.show_consent(caller, id).await
    }

    /// [`Node::revoke_consent`], for a consent of `dossier` only.
    pub async fn revoke_consent_of(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        id: &ConsentId,
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        self.check_consent_of(dossier, id)?;
        self.revoke_consent(caller, id).await
    }

    /// `consent show`: the receipt of a consent recorded here, as handed to
    /// the person (the access is logged first).
    pub async fn show_consent(&self, caller: &Caller, id: &ConsentId) -> Result<ConsentReceipt> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        let (_, record) = self
            .consent_record(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("consent {id}")))?;
        self.audit(AuditEvent::ConsentShown {
            consent: id.clone(),
            dossier: record.consent.dossier.clone(),
            by: caller.name.clone(),
        })
        .await?;
        let roster = self.roster.get();
        Ok(ConsentReceipt::new(
            &record,
            roster.roster(),
            &self.key.public(),
            self.clock.now(),
        ))
    }

    /// Fetches and checks a member's KeyPackage.
    pub(super) async fn fetch_key_package(
        &self,
        member: &crate::roster::RosterMember,
    ) -> Result<Vec<u8>> {
        let id = &member.card.id;
        let kp = self.network.fetch_key_package(member).await?;
        Sharing::check_key_package(&kp, id, &member.card.signing_key).map_err(|e| {
            ServiceError::PeerMisbehaved {
                peer: id.clone(),
                what: format!("it answered an unusable key package: {e}"),
            }
        })?;
        Ok(kp)
    }

    /// Writes a consent record and its index entry (not flushed).
    pub(super) fn store_consent(&self, record: &ConsentRecord) -> Result<()> {
        let c = &record.consent;
        self.store
            .put(Tree::Consents, &consent_key(&c.dossier, &c.id), record)?;
        self.store
            .put(Tree::ConsentIndex, c.id.as_str(), &c.dossier)?;
        Ok(())
    }

    /// The consent record `id`, with its store key.
    pub(super) fn consent_record(&self, id: &ConsentId) -> Result<Option<(String, ConsentRecord)>> {
        let Some(dossier) = self
            .store
            .get::<DossierId>(Tree::ConsentIndex, id.as_str())?
        else {
            return Ok(None);
        };
        let key = consent_key(&dossier, id);
        Ok(self
            .store
            .get::<ConsentRecord>(Tree::Consents, &key)?
            .map(|r| (key, r)))
    }

    /// Marks a stored consent revoked (not flushed); `false` if it is unknown
    /// or was already revoked.
    pub(super) fn store_revocation(&self, id: &ConsentId, at: i64, by: &UserName) -> Result<bool> {
        let Some((key, mut record)) = self.consent_record(id)? else {
            return Ok(false);
        };
        if record.revoked_at.is_some() {
            return Ok(false);
        }
        record.revoked_at = Some(at);
        record.revoked_by = Some(by.clone());
        self.store.put(Tree::Consents, &key, &record)?;
        Ok(true)
    }

    /// Lists the consents recorded here for a dossier (the access is logged).
    pub async fn list_consents(
        &self,
        caller: &Caller,
        dossier: &DossierId,
    ) -> Result<Vec<ConsentRecord>> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        self.dossier(dossier)?;
        let consents = self.consents_of(dossier)?;
        self.audit(AuditEvent::ConsentsListed {
            dossier: dossier.clone(),
            by: caller.name.clone(),
        })
        .await?;
        Ok(consents)
    }

    /// Revokes a consent: logged, then stored, then the members who lost
    /// access are removed from the share groups, all under the shares'
    /// exclusive locks, so that no read is answered on the old decision.
    pub async fn revoke_consent(&self, caller: &Caller, id: &ConsentId) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        let (_, record) = self
            .consent_record(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("consent {id}")))?;
        let dossier = record.consent.dossier.clone();
        let mut changing = Vec::new();
        for section in record.consent.touched() {
            let share = self.own_share(&dossier, section);
            changing.push(self.membership.get(&share.scope()).write_owned().await);
        }
        // Checked under the locks: two revocations of one consent race here.
        let (key, record) = self
            .consent_record(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("consent {id}")))?;
        if record.revoked_at.is_some() {
            return Err(ServiceError::State(format!(
                "consent {id} is already revoked"
            )));
        }
        let now = self.clock.now();
        let revoked = AuditEvent::ConsentRevoked {
            consent: id.clone(),
            dossier: dossier.clone(),
            by: caller.name.clone(),
        };
        self.log_then_apply(now, revoked, "revocation_logged", || {
            self.store_revocation(id, now, &caller.name)
        })
        .await?;
        // Policy refuses from here. The groups are updated under the same
        // locks; if a member cannot be told now, upkeep retries.
        let mut closed = true;
        for section in &record.consent.sections {
            let share = self.own_share(&dossier, *section);
            if let Err(e) = self.sync_group_locked(&share).await {
                tracing::warn!(error = %e, "group not updated after a revocation; upkeep will retry");
                closed = false;
            }
        }
        // A mask lifted: the sections' audiences come back through upkeep.
        for section in &record.consent.masked {
            let share = self.own_share(&dossier, *section);
            for member in self.entitled_members(&dossier, *section)? {
                self.mark_for_resync(&share, &member).await;
            }
        }
        drop(changing);
        if closed {
            self.mark_closed(&key).await?;
        }
        Ok(())
    }

    /// Remembers that an inactive consent's groups were updated.
    async fn mark_closed(&self, key: &str) -> Result<()> {
        self.store.put(Tree::Closed, key, &true)?;
        self.flush().await
    }

    /// Removes from the groups of a revoked or expired consent's sections the
    /// members no active consent names any more, then marks it closed.
    async fn close_consent(&self, key: &str, record: &ConsentRecord) -> Result<()> {
        for section in &record.consent.sections {
            let share = self.own_share(&record.consent.dossier, *section);
            let _changing = self.membership.get(&share.scope()).write_owned().await;
            self.sync_group_locked(&share).await?;
        }
        self.mark_closed(key).await
    }

    /// Removes from a share group the members no active consent names any
    /// more; the caller holds the share's exclusive lock.
    /// Returns how many were removed.
    pub(super) async fn sync_group_locked(&self, share: &ShareId) -> Result<usize> {
        if !self.sharing.has_group(share)? {
            return Ok(0);
        }
        let keep = self.entitled_members(&share.dossier, share.section)?;
        let mut removed = 0;
        for m in self.sharing.members(share)? {
            if m == self.me || keep.contains(&m) {
                continue;
            }
            // Each removal is logged and delivered before the next is made:
            // a failure never leaves an earlier one unlogged.
            if let Some(change) = self.remove_from_group(share, &m).await? {
                self.publish(share, &m, change).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Upkeep: closes every revoked or expired consent whose groups were not
    /// updated yet, going on past failures; returns how many were closed.
    pub async fn close_inactive_consents(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut closed = 0;
        for (key, record) in self.store.scan::<ConsentRecord>(Tree::Consents, "")? {
            if self.is_stopping() {
                break;
            }
            if matches!(
                record.status(now),
                ConsentStatus::Active | ConsentStatus::Pending
            ) || self.store.get::<bool>(Tree::Closed, &key)?.is_some()
            {
                continue;
            }
            match self.close_consent(&key, &record).await {
                Ok(()) => closed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "closing an inactive consent failed; will retry")
                }
            }
        }
        Ok(closed)
    }
}

/// The log entry of a grant: everything needed to rebuild the record.
pub(super) fn grant_event(record: &ConsentRecord) -> AuditEvent {
    let c = &record.consent;
    AuditEvent::ConsentGranted {
        consent: c.id.clone(),
        dossier: c.dossier.clone(),
        sections: c.sections.iter().copied().collect(),
        audience: c.audience.iter().cloned().collect(),
        purpose: c.purpose.clone(),
        basis: c.basis.clone(),
        collection: c.collection.clone(),
        valid_from: c.valid_from,
        until: c.until,
        masked: c.masked.iter().copied().collect(),
        by: c.granted_by.clone(),
    }
}
