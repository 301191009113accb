//! The end of a parcours: closing a dossier (every share of it ends), and
//! erasing it (RGPD): when the charter's retention runs out after closing,
//! at every member with no user action, or at once on the person's request
//! (art. 17). The holder decides and tells each member holding the dossier
//! through its outbox, and each member an orientation or a commission from
//! it reached; a member holding it tells those its own reached in turn
//! (`reached`). Erasing destroys the dossier's key first, then every
//! record of it; the audit log keeps only the opaque ids and event kinds,
//! so it stays verifiable, and a tombstone keeps the log's older entries
//! about the dossier from ever being applied again.

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::protocol::Notice;
use crate::sharing::ShareId;
use crate::storage::Tree;
use crate::types::{ClosureReason, DossierId, ErasureGround, MemberId, Role, Section};

impl Node {
    /// Whether a dossier is closed here, or erased (its tombstone written,
    /// its records perhaps not wiped yet): either way nothing of it is shared.
    pub(super) fn is_closed(&self, dossier: &DossierId) -> Result<bool> {
        if self
            .store
            .get::<i64>(Tree::Erased, dossier.as_str())?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .store
            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
            .is_some_and(|r| r.closed.is_some()))
    }

    /// Refuses a change to a closed dossier.
    pub(super) fn check_open(&self, dossier: &DossierId) -> Result<()> {
        if self.is_closed(dossier)? {
            return Err(ServiceError::State(format!(
                "{dossier} is closed: its parcours ended"
            )));
        }
        Ok(())
    }

    /// `dossier close`, at the holder: logged, then kept; every member
    /// holding the dossier is told, and every share of it ends (recipients
    /// leave the groups). Sections stay, read-only, until the retention the
    /// charter sets runs out.
    pub async fn close_dossier(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        reason: ClosureReason,
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        let record = self.dossier(dossier)?;
        self.check_holder(&record)?;
        self.check_open(dossier)?;
        let now = self.clock.now();
        let notice = Notice::Closed {
            dossier: dossier.clone(),
            reason,
            at: now,
        };
        let event = AuditEvent::DossierClosed {
            dossier: dossier.clone(),
            reason,
            by: Some(caller.name.clone()),
            from: None,
            at: None,
        };
        let queued = self
            .log_then_apply(now, event, "closure_logged", || {
                self.store_closure(dossier, now, reason)?;
                self.told_of_end(&record)?
                    .iter()
                    .map(|p| self.queue_notice(p, &notice))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        self.end_shares(dossier).await;
        self.deliver_now(queued).await;
        Ok(())
    }

    /// `dossier erase`, at the holder: on the person's request (art. 17),
    /// when no legal obligation keeps the data. Logged first, every member
    /// holding the dossier told, then erased here.
    pub async fn erase_dossier(&self, caller: &Caller, dossier: &DossierId) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        let record = self.dossier(dossier)?;
        self.check_holder(&record)?;
        let notice = Notice::Erased {
            dossier: dossier.clone(),
        };
        let event = AuditEvent::DossierErased {
            dossier: dossier.clone(),
            ground: ErasureGround::PersonRequest,
            by: Some(caller.name.clone()),
            from: None,
        };
        let now = self.clock.now();
        let queued = self
            .log_then_apply(now, event, "erasure_logged", || {
                self.store.put(Tree::Erased, dossier.as_str(), &now)?;
                self.drop_queued_about(dossier, None)?;
                self.told_of_end(&record)?
                    .iter()
                    .map(|p| self.queue_notice(p, &notice))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        // In effect from here (the tombstone refuses everything); a wipe
        // that fails is finished by upkeep.
        if let Err(e) = self.erase_here(dossier).await {
            tracing::error!(error = %e, "erasure logged, wipe not finished; upkeep will finish it");
        }
        self.deliver_now(queued).await;
        Ok(())
    }

    /// The members told when the holder closes or erases a dossier: those
    /// holding it, and those an orientation or a commission from here
    /// reached (they keep its reason, agenda or minutes without holding it).
    pub(super) fn told_of_end(&self, record: &super::DossierRecord) -> Result<Vec<MemberId>> {
        let mut told: Vec<MemberId> = record.partners.iter().cloned().collect();
        told.extend(self.reached_about(&record.id)?);
        told.sort();
        told.dedup();
        told.retain(|m| *m != self.me);
        Ok(told)
    }

    /// Drops what is still queued about `dossier` (for `to` only, if
    /// given): the words of orientations, steps, convocations, minutes and
    /// the holder's other notices are not sent once it is erased. A
    /// closure or an erasure still queued is kept: the members it is for
    /// need it to end what they hold. Not flushed.
    pub(super) fn drop_queued_about(
        &self,
        dossier: &DossierId,
        to: Option<&MemberId>,
    ) -> Result<()> {
        self.store
            .remove_where::<super::OutboxItem>(Tree::Outbox, "", |item| {
                item.notice.dossier() == Some(dossier)
                    && !matches!(item.notice, Notice::Closed { .. } | Notice::Erased { .. })
                    && to.is_none_or(|m| &item.to == m)
            })?;
        Ok(())
    }

    /// Whether `peer` is the holder this node attached `dossier` from.
    pub(super) fn attached_from(&self, dossier: &DossierId, peer: &MemberId) -> Result<bool> {
        Ok(self
            .store
            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
            .is_some_and(|r| r.attached_from.as_ref() == Some(peer)))
    }

    /// Whether `dossier` was erased here (its tombstone).
    pub(super) fn is_erased(&self, dossier: &DossierId) -> Result<bool> {
        Ok(self
            .store
            .get::<i64>(Tree::Erased, dossier.as_str())?
            .is_some())
    }

    /// Refuses a closing or erasing anywhere but at the holder.
    fn check_holder(&self, record: &super::DossierRecord) -> Result<()> {
        match &record.attached_from {
            Some(holder) => Err(ServiceError::State(format!(
                "{} is closed or erased at {holder}, which holds it",
                record.id
            ))),
            None => Ok(()),
        }
    }

    /// Keeps a closure (not flushed); `false` if the dossier is unknown or closed already.
    pub(super) fn store_closure(
        &self,
        dossier: &DossierId,
        at: i64,
        reason: ClosureReason,
    ) -> Result<bool> {
        let Some(mut record) = self
            .store
            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
        else {
            return Ok(false);
        };
        if record.closed.is_some() {
            return Ok(false);
        }
        record.closed = Some(super::Closure { at, reason });
        self.store.put(Tree::Dossiers, dossier.as_str(), &record)?;
        Ok(true)
    }

    /// Empties this node's groups of a closed dossier, under their locks;
    /// what fails is retried by upkeep (a closed dossier entitles nobody).
    async fn end_shares(&self, dossier: &DossierId) {
        for section in Section::ALL {
            let share = self.own_share(dossier, *section);
            let _changing = self.membership.get(&share.scope()).write_owned().await;
            if let Err(e) = self.sync_group_locked(&share).await {
                tracing::warn!(error = %e, "a closed dossier's group not emptied yet; upkeep will retry");
            }
        }
    }

    /// A notice from the dossier's holder: it closed or erased the dossier.
    pub(super) async fn receive_end(&self, peer: &MemberId, notice: Notice) -> Result<()> {
        let Some(dossier) = notice.dossier().cloned() else {
            return Err(ServiceError::Invalid("not a closing or an erasure".into()));
        };
        if self
            .store
            .get::<i64>(Tree::Erased, dossier.as_str())?
            .is_some()
        {
            return Ok(());
        }
        let record = match self.dossier(&dossier) {
            Ok(r) => r,
            // Not held here, but an orientation or a commission from
            // `peer` brought its words: its closure starts their retention,
            // its erasure removes them.
            Err(ServiceError::NotFound(_)) => {
                let Some(first) = self.received_about(&dossier, peer)? else {
                    if self.ended_for(&dossier, peer)? {
                        // Told again what it told before: nothing left here.
                        return Ok(());
                    }
                    return Err(ServiceError::NotFound(format!(
                        "{dossier}: neither held here nor sent here by {peer}"
                    )));
                };
                return self
                    .end_network_records(peer, &dossier, first, notice)
                    .await;
            }
            Err(e) => return Err(e),
        };
        if record.attached_from.as_ref() != Some(peer) {
            if let Some(first) = self.received_about(&dossier, peer)? {
                // Not the holder, but a member that oriented or convened
                // this node about it: it ends what it sent, nothing else.
                return self
                    .end_network_records(peer, &dossier, first, notice)
                    .await;
            }
            return Err(ServiceError::NotEntitled(format!(
                "{peer} does not hold {dossier} for this node"
            )));
        }
        let now = self.clock.now();
        // The members an orientation or a commission from here reached are
        // told in turn, in the same write.
        let pass_on = |notice: &Notice| -> Result<Vec<u64>> {
            self.passed_on_to(&dossier, peer)?
                .iter()
                .map(|m| self.queue_notice(m, notice))
                .collect()
        };
        let queued = match notice {
            Notice::Closed { reason, at, .. } => {
                if record.closed.is_some() {
                    return Ok(());
                }
                let event = AuditEvent::DossierClosed {
                    dossier: dossier.clone(),
                    reason,
                    by: None,
                    from: Some(peer.clone()),
                    at: Some(at),
                };
                let queued = self
                    .log_then_apply(now, event, "closure_logged", || {
                        self.store_closure(&dossier, at, reason)?;
                        pass_on(&notice)
                    })
                    .await?;
                self.end_shares(&dossier).await;
                queued
            }
            Notice::Erased { .. } => {
                let event = AuditEvent::DossierErased {
                    dossier: dossier.clone(),
                    ground: ErasureGround::PersonRequest,
                    by: None,
                    from: Some(peer.clone()),
                };
                let queued = self
                    .log_then_apply(now, event, "erasure_logged", || {
                        self.store.put(Tree::Erased, dossier.as_str(), &now)?;
                        self.drop_queued_about(&dossier, None)?;
                        pass_on(&notice)
                    })
                    .await?;
                self.erase_here(&dossier).await?;
                queued
            }
            _ => {
                return Err(ServiceError::Internal(
                    "receive_end takes closures and erasures".into(),
                ));
            }
        };
        self.deliver_now(queued).await;
        Ok(())
    }

    /// Erases everything this node keeps of a dossier: its key first (what
    /// the store's old pages keep can no longer be read), then its
    /// sections, identity record, consents, break-glass accesses, notices,
    /// référent, and the MLS state of every share of it. The tombstone is
    /// already stored. Idempotent: upkeep finishes an erasure a crash cut.
    pub(super) async fn erase_here(&self, dossier: &DossierId) -> Result<()> {
        let mut changing = Vec::new();
        for section in Section::ALL {
            let share = self.own_share(dossier, *section);
            changing.push(self.membership.get(&share.scope()).write_owned().await);
        }
        self.vault.destroy(dossier.as_str())?;
        let prefix = format!("{dossier}/");
        for section in Section::ALL {
            self.store.remove(
                Tree::Sections,
                &super::dossiers::section_key(dossier, *section),
            )?;
        }
        for (key, record) in self
            .store
            .scan::<crate::consent::ConsentRecord>(Tree::Consents, &prefix)?
        {
            self.store
                .remove(Tree::ConsentIndex, record.consent.id.as_str())?;
            self.store.remove(Tree::Closed, &key)?;
            self.store.remove(Tree::Consents, &key)?;
        }
        for (key, _) in self
            .store
            .scan::<super::BreakGlassGrant>(Tree::BreakGlass, &prefix)?
        {
            self.store.remove(Tree::BreakGlass, &key)?;
        }
        self.store
            .remove_where::<super::BreakGlassGrant>(Tree::Notices, "", |g| &g.dossier == dossier)?;
        self.store.remove(Tree::Referents, dossier.as_str())?;
        self.forget_network_records(dossier)?;
        let members: Vec<MemberId> = self
            .roster
            .get()
            .roster()
            .members
            .iter()
            .map(|m| m.card.id.clone())
            .collect();
        for m in members {
            let scopes = self.store.mls_scopes(&format!("share/{m}/{dossier}/"))?;
            for scope in &scopes {
                let Some(share) = ShareId::from_scope(scope) else {
                    self.store.mls_replace(scope, &Default::default())?;
                    continue;
                };
                self.sharing.erase_group(&share)?;
                self.store.remove_where::<serde_json::Value>(
                    Tree::Resync,
                    &format!("{}|", share.scope()),
                    |_| true,
                )?;
            }
        }
        self.store.remove(Tree::Dossiers, dossier.as_str())?;
        self.flush().await?;
        drop(changing);
        tracing::info!(dossier = %dossier, "dossier erased");
        Ok(())
    }

    /// Upkeep: erases every closed dossier whose retention (the charter's)
    /// has run out, logged first, and finishes any erasure a crash cut
    /// short; returns how many dossiers were erased.
    pub async fn erase_due(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut erased = 0;
        for (id, _) in self.store.scan::<i64>(Tree::Erased, "")? {
            let dossier: DossierId = id
                .parse()
                .map_err(|e| ServiceError::Internal(format!("tombstone: {e}")))?;
            if self
                .store
                .get::<super::DossierRecord>(Tree::Dossiers, &id)?
                .is_some()
            {
                self.erase_here(&dossier).await?;
                erased += 1;
            }
        }
        let retention = self.roster.get().roster().charter.retention_days;
        let Some(days) = retention else {
            return Ok(erased + self.erase_network_due(now, retention).await?);
        };
        let due = |closed_at: i64| now >= closed_at.saturating_add(i64::from(days) * 86_400);
        for (id, record) in self
            .store
            .scan::<super::DossierRecord>(Tree::Dossiers, "")?
        {
            if self.is_stopping() {
                break;
            }
            let Some(closure) = &record.closed else {
                continue;
            };
            if !due(closure.at) {
                continue;
            }
            let event = AuditEvent::DossierErased {
                dossier: record.id.clone(),
                ground: ErasureGround::Retention,
                by: None,
                from: None,
            };
            self.log_then_apply(now, event, "erasure_logged", || {
                self.store.put(Tree::Erased, &id, &now)?;
                self.drop_queued_about(&record.id, None)
            })
            .await?;
            self.erase_here(&record.id).await?;
            erased += 1;
        }
        Ok(erased + self.erase_network_due(now, retention).await?)
    }
}
