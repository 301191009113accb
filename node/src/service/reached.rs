//! What an orientation or a commission left at another member: the
//! sender's words, sealed under the dossier's key (one the receiving
//! member made, if it does not hold the dossier). The member that sent
//! them, and only it, tells the receiver when the dossier closes (the
//! charter's retention then runs there too) or is erased (they are
//! forgotten at once); a member holding the dossier passes its holder's
//! word on to the members it reached in turn. Each sender's records end on
//! their own: one member cannot make another's disappear.

use serde::{Deserialize, Serialize};

use super::{Node, Result, ServiceError};
use crate::audit::AuditEvent;
use crate::protocol::Notice;
use crate::storage::Tree;
use crate::types::{DossierId, ErasureGround, MemberId};

/// How what a sender left here about a dossier ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum NetworkEnd {
    /// The dossier closed at this time: erased when the retention runs out.
    Closed {
        /// When it closed (Unix seconds).
        at: i64,
    },
    /// Erased: nothing more from that sender about it is taken.
    Erased {
        /// When (Unix seconds).
        at: i64,
    },
}

/// The key of a sender's end for a dossier.
fn end_key(dossier: &DossierId, from: &MemberId) -> String {
    format!("{dossier}/{from}")
}

impl Node {
    /// The members an orientation or a commission from here about `dossier` reached.
    pub(super) fn reached_about(&self, dossier: &DossierId) -> Result<Vec<MemberId>> {
        let mut reached = Vec::new();
        for tree in [Tree::Orientations, Tree::Commissions] {
            for head in self.kept_heads(tree)? {
                if &head.dossier == dossier && head.from == self.me {
                    reached.extend(head.to);
                }
            }
        }
        reached.sort();
        reached.dedup();
        reached.retain(|m| *m != self.me);
        Ok(reached)
    }

    /// The members a closure or an erasure from `holder` is passed on to
    /// by this node, which holds `dossier`: those its own orientations and
    /// commissions reached.
    pub(super) fn passed_on_to(
        &self,
        dossier: &DossierId,
        holder: &MemberId,
    ) -> Result<Vec<MemberId>> {
        let mut reached = self.reached_about(dossier)?;
        reached.retain(|m| m != holder);
        Ok(reached)
    }

    /// When the oldest record `peer` sent here about `dossier` was sent,
    /// if it sent any.
    pub(super) fn received_about(
        &self,
        dossier: &DossierId,
        peer: &MemberId,
    ) -> Result<Option<i64>> {
        let mut first = None;
        for tree in [Tree::Orientations, Tree::Commissions] {
            for h in self.kept_heads(tree)? {
                if &h.dossier == dossier && &h.from == peer {
                    first = Some(first.map_or(h.at, |f: i64| f.min(h.at)));
                }
            }
        }
        Ok(first)
    }

    /// Whether an orientation or a convocation from `peer` about `dossier`
    /// is refused: the dossier was erased here, or `peer` erased what it
    /// had sent about it.
    pub(super) fn ended_for(&self, dossier: &DossierId, peer: &MemberId) -> Result<bool> {
        Ok(self.is_erased(dossier)?
            || matches!(
                self.store
                    .get::<NetworkEnd>(Tree::Ended, &end_key(dossier, peer))?,
                Some(NetworkEnd::Erased { .. })
            ))
    }

    /// A message about `dossier` that `peer` sends, checked against its
    /// roster key ([`Node::signed_by_peer`]) and refused when the dossier
    /// was erased here or `peer` erased what it had sent about it.
    pub(super) fn taken_from_sender<T: Serialize>(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
        (ctx, message, signature): (crate::crypto::Context, &T, crate::crypto::Signature),
        what: &'static str,
    ) -> Result<crate::protocol::SignedBytes> {
        let signed = self.signed_by_peer(peer, ctx, message, signature, what)?;
        if self.ended_for(dossier, peer)? {
            return Err(ServiceError::State(format!("{dossier} was erased here")));
        }
        Ok(signed)
    }

    /// `peer` closed or erased `dossier`, which this node does not hold,
    /// and sent records of it here: a closure is logged and kept (its date
    /// between the first record and now), and the retention erases them
    /// later ([`Node::erase_due`]); an erasure is logged, then what `peer`
    /// sent is forgotten, and the dossier's key destroyed when nothing
    /// else about it remains. Another member's records stay.
    pub(super) async fn end_network_records(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
        first: i64,
        notice: Notice,
    ) -> Result<()> {
        let now = self.clock.now();
        let key = end_key(dossier, peer);
        let ended = self.store.get::<NetworkEnd>(Tree::Ended, &key)?;
        match notice {
            Notice::Closed { reason, at, .. } => {
                if ended.is_some() {
                    return Ok(());
                }
                let at = at.clamp(first, now.max(first));
                let event = AuditEvent::DossierClosed {
                    dossier: dossier.clone(),
                    reason,
                    by: None,
                    from: Some(peer.clone()),
                    at: Some(at),
                };
                self.log_then_apply(now, event, "closure_logged", || {
                    Ok(self
                        .store
                        .put(Tree::Ended, &key, &NetworkEnd::Closed { at })?)
                })
                .await
            }
            Notice::Erased { .. } => {
                if matches!(ended, Some(NetworkEnd::Erased { .. })) {
                    return Ok(());
                }
                self.erase_network_records(peer, dossier, ErasureGround::PersonRequest, now)
                    .await
            }
            _ => Err(ServiceError::Internal(
                "end_network_records takes closures and erasures".into(),
            )),
        }
    }

    /// Logs the erasure of what `peer` sent about `dossier`, then forgets it.
    async fn erase_network_records(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
        ground: ErasureGround,
        now: i64,
    ) -> Result<()> {
        let event = AuditEvent::DossierErased {
            dossier: dossier.clone(),
            ground,
            by: None,
            from: Some(peer.clone()),
        };
        self.log_then_apply(now, event, "erasure_logged", || {
            self.store.put(
                Tree::Ended,
                &end_key(dossier, peer),
                &NetworkEnd::Erased { at: now },
            )?;
            self.drop_queued_about(dossier, Some(peer))?;
            self.forget_from(dossier, peer)
        })
        .await?;
        self.destroy_key_if_unused(dossier).await
    }

    /// Replay: a closure or an erasure from `peer` the log holds, of a
    /// dossier not held here; `false` if there is nothing to apply.
    pub(super) fn replay_network_end(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
        end: NetworkEnd,
    ) -> Result<bool> {
        let key = end_key(dossier, peer);
        let kept = self.store.get::<NetworkEnd>(Tree::Ended, &key)?;
        let apply = match (end, kept) {
            (_, Some(NetworkEnd::Erased { .. })) => false,
            (NetworkEnd::Closed { .. }, Some(_)) => false,
            (NetworkEnd::Closed { .. }, None) => self.received_about(dossier, peer)?.is_some(),
            (NetworkEnd::Erased { .. }, _) => true,
        };
        if apply {
            self.store.put(Tree::Ended, &key, &end)?;
            if matches!(end, NetworkEnd::Erased { .. }) {
                // The key, if nothing else needs it, goes at the next upkeep.
                self.drop_queued_about(dossier, Some(peer))?;
                self.forget_from(dossier, peer)?;
            }
        }
        Ok(apply)
    }

    /// Removes what `peer` sent about `dossier` (not flushed).
    fn forget_from(&self, dossier: &DossierId, peer: &MemberId) -> Result<()> {
        for tree in [Tree::Orientations, Tree::Commissions] {
            self.store
                .remove_where::<super::sealed::SealedRecord>(tree, "", |r| {
                    &r.dossier == dossier && &r.from == peer
                })?;
        }
        Ok(())
    }

    /// Destroys `dossier`'s key here if this node does not hold it and
    /// keeps nothing else sealed under it (the sealed log entries can then
    /// no longer be read). Under the locks of attaching a dossier and of
    /// receiving orientations and commissions, so that nothing is being
    /// sealed under the key as it goes.
    async fn destroy_key_if_unused(&self, dossier: &DossierId) -> Result<()> {
        let _attaching = self.attaching.lock().await;
        let _orientations = self.orientations.lock().await;
        let _commissions = self.commissions.lock().await;
        let held = self
            .store
            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
            .is_some();
        if held || !self.vault.holds(dossier.as_str()) {
            return Ok(());
        }
        for tree in [Tree::Orientations, Tree::Commissions] {
            if self.kept_heads(tree)?.iter().any(|h| &h.dossier == dossier) {
                return Ok(());
            }
        }
        self.vault.destroy(dossier.as_str())?;
        Ok(())
    }

    /// Start: the closures an earlier version kept by dossier alone (the
    /// date, for every sender) are kept per sender; returns how many.
    pub(super) fn migrate_old_ends(&self) -> Result<usize> {
        let mut moved = 0;
        for (key, value) in self.store.scan::<serde_json::Value>(Tree::Ended, "")? {
            let (Some(at), false) = (value.as_i64(), key.contains('/')) else {
                continue;
            };
            let Ok(dossier) = key.parse::<DossierId>() else {
                continue;
            };
            let mut senders: Vec<MemberId> = Vec::new();
            for tree in [Tree::Orientations, Tree::Commissions] {
                senders.extend(
                    self.kept_heads(tree)?
                        .into_iter()
                        .filter(|h| h.dossier == dossier)
                        .map(|h| h.from),
                );
            }
            senders.sort();
            senders.dedup();
            for from in senders {
                self.store.put(
                    Tree::Ended,
                    &end_key(&dossier, &from),
                    &NetworkEnd::Closed { at },
                )?;
            }
            self.store.remove(Tree::Ended, &key)?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Removes every orientation and commission kept about `dossier`, and
    /// every sender's end of it (an erasure of the dossier held here; its
    /// key is destroyed with the rest). Not flushed.
    pub(super) fn forget_network_records(&self, dossier: &DossierId) -> Result<()> {
        for tree in [Tree::Orientations, Tree::Commissions] {
            self.store
                .remove_where::<super::sealed::SealedRecord>(tree, "", |r| &r.dossier == dossier)?;
        }
        self.store
            .remove_where::<NetworkEnd>(Tree::Ended, &format!("{dossier}/"), |_| true)?;
        Ok(())
    }

    /// Upkeep: erases what each sender left here of a dossier it closed
    /// when the charter's retention (`days`, if any) has run out, logged
    /// first, and finishes an erasure a crash cut short; returns how many
    /// senders' records were erased.
    pub(super) async fn erase_network_due(&self, now: i64, days: Option<u32>) -> Result<usize> {
        let mut erased = 0;
        let mut left: std::collections::BTreeSet<(DossierId, MemberId)> = Default::default();
        for tree in [Tree::Orientations, Tree::Commissions] {
            left.extend(
                self.kept_heads(tree)?
                    .into_iter()
                    .map(|h| (h.dossier, h.from)),
            );
        }
        for (key, value) in self.store.scan::<serde_json::Value>(Tree::Ended, "")? {
            if self.is_stopping() {
                break;
            }
            let parsed = key.split_once('/').and_then(|(d, m)| {
                Some((
                    d.parse::<DossierId>().ok()?,
                    m.parse::<MemberId>().ok()?,
                    serde_json::from_value::<NetworkEnd>(value).ok()?,
                ))
            });
            let Some((dossier, peer, end)) = parsed else {
                tracing::warn!(key = %key, "a sender's end that cannot be read; left as it is");
                continue;
            };
            match end {
                NetworkEnd::Closed { at }
                    if days.is_some_and(|d| now >= at.saturating_add(i64::from(d) * 86_400)) =>
                {
                    self.erase_network_records(&peer, &dossier, ErasureGround::Retention, now)
                        .await?;
                    erased += 1;
                }
                // An erasure a crash or the replay left unfinished.
                NetworkEnd::Erased { .. } if left.contains(&(dossier.clone(), peer.clone())) => {
                    self.forget_from(&dossier, &peer)?;
                    self.flush().await?;
                    self.destroy_key_if_unused(&dossier).await?;
                    erased += 1;
                }
                NetworkEnd::Erased { .. }
                    if self.vault.holds(dossier.as_str())
                        && !left.iter().any(|(d, _)| d == &dossier)
                        && self.dossier(&dossier).is_err() =>
                {
                    self.destroy_key_if_unused(&dossier).await?;
                }
                _ => {}
            }
        }
        Ok(erased)
    }
}
