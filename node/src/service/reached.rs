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
            self.forget_from(dossier, peer)
        })
        .await
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
                self.forget_from(dossier, peer)?;
            }
        }
        Ok(apply)
    }

    /// Removes what `peer` sent about `dossier`, and destroys the
    /// dossier's key if this node does not hold it and keeps nothing else
    /// about it. The store is not flushed; the key's destruction is synced.
    fn forget_from(&self, dossier: &DossierId, peer: &MemberId) -> Result<()> {
        for tree in [Tree::Orientations, Tree::Commissions] {
            self.store
                .remove_where::<super::sealed::SealedRecord>(tree, "", |r| {
                    &r.dossier == dossier && &r.from == peer
                })?;
        }
        let held = self
            .store
            .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
            .is_some();
        let left = [Tree::Orientations, Tree::Commissions]
            .into_iter()
            .map(|t| self.kept_heads(t))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .any(|h| &h.dossier == dossier);
        if !held && !left {
            self.vault.destroy(dossier.as_str())?;
        }
        Ok(())
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
        for (key, end) in self.store.scan::<NetworkEnd>(Tree::Ended, "")? {
            if self.is_stopping() {
                break;
            }
            let parsed = key.split_once('/').and_then(|(d, m)| {
                Some((d.parse::<DossierId>().ok()?, m.parse::<MemberId>().ok()?))
            });
            let Some((dossier, peer)) = parsed else {
                return Err(ServiceError::Internal(format!("a sender's end: {key}")));
            };
            match end {
                NetworkEnd::Closed { at }
                    if days.is_some_and(|d| now >= at.saturating_add(i64::from(d) * 86_400)) =>
                {
                    self.erase_network_records(&peer, &dossier, ErasureGround::Retention, now)
                        .await?;
                    erased += 1;
                }
                NetworkEnd::Erased { .. }
                    if left.contains(&(dossier.clone(), peer.clone()))
                        || (self.vault.holds(dossier.as_str())
                            && !left.iter().any(|(d, _)| d == &dossier)
                            && self
                                .store
                                .get::<super::DossierRecord>(Tree::Dossiers, dossier.as_str())?
                                .is_none()) =>
                {
                    self.forget_from(&dossier, &peer)?;
                    self.flush().await?;
                    erased += 1;
                }
                _ => {}
            }
        }
        Ok(erased)
    }
}
