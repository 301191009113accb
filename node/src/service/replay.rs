//! The log comes first: what the audit log holds and the store lacks is
//! applied again at start. Changes (a consent, a revocation, a user removed)
//! are logged durably before they touch the store; a crash in between leaves
//! the entry, and [`Node::new`] re-applies it from the entries after the
//! store's replay mark, which upkeep moves forward.

use std::collections::BTreeMap;

use super::{Node, Result, ServiceError};
use crate::audit::{AuditEntry, AuditEvent};
use crate::consent::{Consent, ConsentRecord};
use crate::storage::{MetaKey, Tree};
use crate::types::{Role, UserName};

/// Entries read from the log per page while replaying.
const REPLAY_PAGE: usize = 4096;

impl Node {
    /// Re-applies every change logged after the replay mark that the store
    /// lacks, flushes, and moves the mark to the end of the log; returns how
    /// many changes were re-applied. Runs before the node serves.
    pub(super) async fn replay_log(&self) -> Result<usize> {
        let from: u64 = self.store.meta(MetaKey::Applied)?.unwrap_or(0);
        let size = self.audit.size();
        if from > size {
            // The store has applied entries the log no longer holds: the log
            // was replaced, cut or deleted. Refuse rather than start blind.
            return Err(ServiceError::State(format!(
                "the store has applied {from} audit entries but the log holds {size}: \
                 the audit log was replaced or cut; restore it from the node's backup"
            )));
        }
        self.seal_legacy_records()?;
        self.migrate_old_ends()?;
        let mut applied = 0;
        // A removal stands unless the same name was created again after it.
        let mut removals: BTreeMap<UserName, bool> = BTreeMap::new();
        let mut rotations: BTreeMap<UserName, (String, i64)> = BTreeMap::new();
        let mut roles: BTreeMap<UserName, Role> = BTreeMap::new();
        let mut identities: BTreeMap<UserName, Option<String>> = BTreeMap::new();
        let mut pos = from;
        while pos < size {
            let page = self.audit.entries_within(pos, REPLAY_PAGE, usize::MAX)?;
            if page.is_empty() {
                break;
            }
            for (index, bytes) in page {
                pos = index + 1;
                let entry = AuditEntry::from_bytes(&bytes)?;
                // What the log holds of an erased dossier is never applied again.
                if let Some(d) = creates_for(&entry.event)
                    && self.store.get::<i64>(Tree::Erased, d.as_str())?.is_some()
                {
                    continue;
                }
                // Nor what a member sent about a dossier and erased since.
                if let Some((d, from)) = received_from(&entry.event)
                    && self.ended_for(d, from)?
                {
                    continue;
                }
                match entry.event {
                    // What a member that sent this node an orientation or
                    // a convocation told of its end, not being the holder
                    // this node attached the dossier from.
                    AuditEvent::DossierClosed {
                        dossier,
                        from: Some(peer),
                        at,
                        ..
                    } if !self.attached_from(&dossier, &peer)? => {
                        let end = super::reached::NetworkEnd::Closed {
                            at: at.unwrap_or(entry.time),
                        };
                        if self.replay_network_end(&peer, &dossier, end)? {
                            applied += 1;
                        }
                    }
                    AuditEvent::DossierErased {
                        dossier,
                        from: Some(peer),
                        ..
                    } if !self.attached_from(&dossier, &peer)? && !self.is_erased(&dossier)? => {
                        let end = super::reached::NetworkEnd::Erased { at: entry.time };
                        if self.replay_network_end(&peer, &dossier, end)? {
                            applied += 1;
                        }
                    }
                    AuditEvent::DossierClosed {
                        dossier,
                        reason,
                        from,
                        at,
                        ..
                    } if self.store_closure(&dossier, at.unwrap_or(entry.time), reason)? => {
                        // Tell the members again: as the holder, those it
                        // told; as a member told by the holder, those its
                        // orientations and commissions reached.
                        let notice = crate::protocol::Notice::Closed {
                            dossier: dossier.clone(),
                            reason,
                            at: at.unwrap_or(entry.time),
                        };
                        let told = match &from {
                            None => self.told_of_end(&self.dossier(&dossier)?)?,
                            Some(holder) => self.passed_on_to(&dossier, holder)?,
                        };
                        for p in told {
                            self.queue_notice(&p, &notice)?;
                        }
                        applied += 1;
                    }
                    // Upkeep finishes the erasure the tombstone names.
                    AuditEvent::DossierErased {
                        dossier,
                        ground,
                        from,
                        ..
                    } if !self.is_erased(&dossier)? => {
                        self.store
                            .put(Tree::Erased, dossier.as_str(), &entry.time)?;
                        self.drop_queued_about(&dossier, None)?;
                        if let Some(record) = self
                            .store
                            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
                        {
                            let notice = crate::protocol::Notice::Erased {
                                dossier: dossier.clone(),
                            };
                            let told = match &from {
                                None if ground == crate::types::ErasureGround::PersonRequest => {
                                    self.told_of_end(&record)?
                                }
                                None => Vec::new(),
                                Some(holder) => self.passed_on_to(&dossier, holder)?,
                            };
                            for p in told {
                                self.queue_notice(&p, &notice)?;
                            }
                        }
                        applied += 1;
                    }
                    AuditEvent::ConsentGranted {
                        consent,
                        dossier,
                        sections,
                        audience,
                        purpose,
                        basis,
                        collection,
                        valid_from,
                        until,
                        masked,
                        by,
                    } => {
                        if self.consent_record(&consent)?.is_some() {
                            continue;
                        }
                        let record = ConsentRecord::sign(
                            Consent {
                                id: consent,
                                dossier,
                                owner: self.me.clone(),
                                sections: sections.into_iter().collect(),
                                audience: audience.into_iter().collect(),
                                purpose,
                                basis,
                                collection,
                                valid_from,
                                until,
                                masked: masked.into_iter().collect(),
                                granted_by: by,
                                granted_at: entry.time,
                            },
                            &self.key,
                        );
                        self.store_consent(&record)?;
                        // Its members join the groups through upkeep.
                        for section in &record.consent.sections {
                            let share = self.own_share(&record.consent.dossier, *section);
                            for member in &record.consent.audience {
                                self.mark_for_resync(&share, member).await;
                            }
                        }
                        applied += 1;
                    }
                    AuditEvent::ConsentRevoked { consent, by, .. }
                        if self.store_revocation(&consent, entry.time, &by)? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::RosterAdopted { version, hash }
                        if version > self.roster.get().roster().version =>
                    {
                        self.replay_adoption(version, &hash, entry.time)?;
                        applied += 1;
                    }
                    AuditEvent::BreakGlassGranted {
                        grant,
                        dossier,
                        reader,
                        user,
                        sections,
                        justification,
                        until,
                        ..
                    } => {
                        if self.find_grant(&grant)?.is_some() {
                            continue;
                        }
                        let record = super::BreakGlassGrant {
                            id: grant,
                            dossier,
                            owner: self.me.clone(),
                            reader,
                            user: Some(user),
                            sections: sections.into_iter().collect(),
                            justification: Some(justification),
                            granted_at: entry.time,
                            until,
                            ended: false,
                            review: None,
                        };
                        self.store_grant(&record)?;
                        self.queue_break_glass_notice(&record)?;
                        // Its reader joins the groups through upkeep.
                        for section in &record.sections {
                            let share = self.own_share(&record.dossier, *section);
                            self.mark_for_resync(&share, &record.reader).await;
                        }
                        applied += 1;
                    }
                    AuditEvent::BreakGlassEnded { grant, dossier }
                        if self.store_grant_end(&dossier, &grant)? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::BreakGlassReviewed {
                        grant, by, comment, ..
                    } if self.replay_review(&grant, &by, entry.time, &comment)? => {
                        applied += 1;
                    }
                    AuditEvent::DossierConfirmed { dossier, to }
                        if self.store_partner(&dossier, &to)? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::ReferentSet {
                        dossier,
                        member,
                        user,
                        ..
                    } => {
                        let known = self.referent(&dossier)?;
                        if known.is_some_and(|r| r.since > entry.time) {
                            continue;
                        }
                        let mut partners = self.dossier(&dossier)?.partners;
                        partners.insert(self.me.clone());
                        let referent = super::Referent {
                            member,
                            user,
                            since: entry.time,
                            partners,
                        };
                        self.store
                            .put(Tree::Referents, dossier.as_str(), &referent)?;
                        self.queue_referent_notices(&dossier, &referent)?;
                        applied += 1;
                    }
                    AuditEvent::ReferentNoted {
                        dossier,
                        member,
                        user,
                        since,
                        partners,
                        ..
                    } => {
                        if self.referent(&dossier)?.is_some_and(|r| r.since > since) {
                            continue;
                        }
                        let referent = super::Referent {
                            member,
                            user,
                            since,
                            partners: partners.into_iter().collect(),
                        };
                        self.store
                            .put(Tree::Referents, dossier.as_str(), &referent)?;
                        applied += 1;
                    }
                    AuditEvent::BreakGlassNotified {
                        grant,
                        owner,
                        dossier,
                        reader,
                        sections,
                        granted_at,
                        until,
                    } => {
                        let key = super::referent::notice_key(&owner, &grant);
                        if self
                            .store
                            .get::<super::BreakGlassGrant>(Tree::Notices, &key)?
                            .is_some()
                        {
                            continue;
                        }
                        let told = super::BreakGlassGrant {
                            id: grant,
                            dossier,
                            owner,
                            reader,
                            user: None,
                            sections: sections.into_iter().collect(),
                            justification: None,
                            granted_at,
                            until,
                            ended: false,
                            review: None,
                        };
                        self.store.put(Tree::Notices, &key, &told)?;
                        applied += 1;
                    }
                    AuditEvent::UserRemoved { user, .. } => {
                        rotations.remove(&user);
                        roles.remove(&user);
                        identities.remove(&user);
                        removals.insert(user, true);
                    }
                    AuditEvent::UserCreated { user, .. } => {
                        rotations.remove(&user);
                        roles.remove(&user);
                        identities.remove(&user);
                        removals.insert(user, false);
                    }
                    AuditEvent::UserTokenRotated {
                        user,
                        token_sha256,
                        expires_at,
                        ..
                    } => {
                        rotations.insert(user, (token_sha256, expires_at));
                    }
                    AuditEvent::AidPublished {
                        entry, signature, ..
                    } if self.replay_aid(&entry, &signature)? => {
                        applied += 1;
                    }
                    AuditEvent::OrientationSent {
                        dossier,
                        by,
                        sealed,
                        message,
                        signature,
                        ..
                    } if self.replay_orientation_sent(
                        &dossier,
                        &by,
                        (&sealed, (message.as_deref(), signature.as_deref())),
                    )? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::OrientationReceived {
                        dossier,
                        sealed,
                        message,
                        signature,
                        ..
                    } if self.replay_orientation_received(
                        &dossier,
                        (&sealed, (message.as_deref(), signature.as_deref())),
                    )? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::OrientationStepped {
                        dossier,
                        by,
                        sealed,
                        message,
                        signature,
                        ..
                    } if self.replay_orientation_step(
                        &dossier,
                        by.as_ref(),
                        (&sealed, (message.as_deref(), signature.as_deref())),
                    )? =>
                    {
                        applied += 1;
                    }
                    ref commission @ (AuditEvent::CommissionConvened { .. }
                    | AuditEvent::CommissionInvited { .. }
                    | AuditEvent::CommissionMinutes { .. })
                        if self.replay_commission(commission)? =>
                    {
                        applied += 1;
                    }
                    ref alert @ (AuditEvent::AlertRaised { .. }
                    | AuditEvent::AlertReceived { .. }
                    | AuditEvent::AlertHandled { .. }
                    | AuditEvent::AlertAcknowledged { .. }
                    | AuditEvent::AlertPurged { .. })
                        if self.replay_alert(alert, entry.time)? =>
                    {
                        applied += 1;
                    }
                    AuditEvent::UserRoleChanged { user, role, .. } => {
                        roles.insert(user, role);
                    }
                    AuditEvent::UserIdentityLinked { user, identity, .. } => {
                        identities.insert(user, identity);
                    }
                    _ => {}
                }
            }
        }
        for (user, removed) in removals {
            if removed && self.apply_user_removal(&user)? {
                applied += 1;
            }
        }
        // The last rotation of each user still there: a token the log gave
        // and the store lacks is put in force (the old one goes).
        for (user, (token, expires_at)) in rotations {
            if self.apply_token_rotation(&user, &token, expires_at)? {
                applied += 1;
            }
        }
        // The last role and identity the log gave each user still there.
        for (user, role) in roles {
            if self.apply_user_update(&user, Some(role), None)? {
                applied += 1;
            }
        }
        for (user, identity) in identities {
            if self.apply_user_update(&user, None, Some(identity))? {
                applied += 1;
            }
        }
        self.flush().await?;
        self.store.set_meta(MetaKey::Applied, &pos)?;
        self.flush().await?;
        if applied > 0 {
            tracing::warn!(
                changes = applied,
                "re-applied changes the audit log holds and the store lacked (the node stopped between the two)"
            );
        }
        Ok(applied)
    }

    /// Puts in force again a version whose adoption the log holds: its link
    /// was kept before the entry was written, and it must still verify.
    fn replay_adoption(&self, version: u64, hash: &str, time: i64) -> Result<()> {
        let current = self.roster.get();
        let link = self
            .chain_link(version)?
            .filter(|l| l.roster.hash_hex() == hash)
            .ok_or_else(|| {
                ServiceError::State(format!(
                    "the audit log adopts roster v{version} but the store does not keep it"
                ))
            })?;
        let v = current.verify_successor(link).map_err(|e| {
            ServiceError::State(format!(
                "the audit log adopts roster v{version}, which does not verify: {e}"
            ))
        })?;
        self.apply_roster(&v, time)
    }

    /// Upkeep: moves the replay mark to the end of the log, once every change
    /// logged before that point is applied and flushed.
    pub async fn advance_replay_mark(&self) -> Result<()> {
        let _no_change_in_flight = self.changes.write().await;
        if self
            .replay_needed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // A change was logged but not applied: apply it from the log.
            let replayed = self.replay_log().await;
            if replayed.is_err() {
                self.replay_needed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return replayed.map(drop);
        }
        let size = self.audit.size();
        self.flush().await?;
        self.store.set_meta(MetaKey::Applied, &size)?;
        self.flush().await
    }
}

/// The dossier and the member an entry's received orientation, convocation
/// or minutes came from, if it is one.
fn received_from(
    event: &AuditEvent,
) -> Option<(&crate::types::DossierId, &crate::types::MemberId)> {
    match event {
        AuditEvent::OrientationReceived { dossier, from, .. }
        | AuditEvent::CommissionInvited { dossier, from, .. }
        | AuditEvent::CommissionMinutes {
            dossier,
            from: Some(from),
            ..
        } => Some((dossier, from)),
        _ => None,
    }
}

/// The dossier whose records an entry's replay would create, if any.
fn creates_for(event: &AuditEvent) -> Option<&crate::types::DossierId> {
    match event {
        AuditEvent::ConsentGranted { dossier, .. }
        | AuditEvent::BreakGlassGranted { dossier, .. }
        | AuditEvent::BreakGlassNotified { dossier, .. }
        | AuditEvent::ReferentSet { dossier, .. }
        | AuditEvent::ReferentNoted { dossier, .. }
        | AuditEvent::DossierConfirmed { dossier, .. }
        | AuditEvent::DossierClosed { dossier, .. }
        | AuditEvent::OrientationSent { dossier, .. }
        | AuditEvent::OrientationReceived { dossier, .. }
        | AuditEvent::OrientationStepped { dossier, .. }
        | AuditEvent::CommissionConvened { dossier, .. }
        | AuditEvent::CommissionInvited { dossier, .. }
        | AuditEvent::CommissionMinutes { dossier, .. } => Some(dossier),
        _ => None,
    }
}
