//! The MLS groups this node owns: adding and removing members (the MLS work
//! off the async workers), publishing each change (log, commit to the
//! members, Welcome to the newcomer), and bringing back members that missed one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Node, Result, ServiceError, blocking};
use crate::audit::AuditEvent;
use crate::consent::{ConsentRecord, ConsentStatus};
use crate::roster::RosterMember;
use crate::sharing::{GroupChange, ShareId};
use crate::storage::Tree;
use crate::types::MemberId;

/// How long the owner waits for one member to take a commit or a Welcome
/// while it holds the share's membership lock.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(3);

/// Base delay before retrying to bring a member back (doubles per attempt).
const UPKEEP_RETRY_BASE: i64 = 60;

/// A member to bring back into a share's group, with its retry schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Resync {
    /// Unique per mark, so that a mark set again is never taken for an old one.
    id: u64,
    share: ShareId,
    member: MemberId,
    attempts: u32,
    next_at: i64,
}

/// The key of a (share, member) pair in the trees that track members.
pub(super) fn member_key(share: &ShareId, member: &MemberId) -> String {
    format!("{}|{member}", share.scope())
}

impl Node {
    /// Adds `member` to the share's group from its checked KeyPackage.
    pub(super) async fn add_to_group(
        &self,
        share: &ShareId,
        member: &RosterMember,
        key_package: Vec<u8>,
    ) -> Result<Option<GroupChange>> {
        let (sharing, share, id, key) = (
            self.sharing.clone(),
            share.clone(),
            member.card.id.clone(),
            member.card.signing_key,
        );
        blocking(move || sharing.add_member(&share, &key_package, &id, &key)).await
    }

    /// Removes `member` from the share's group.
    pub(super) async fn remove_from_group(
        &self,
        share: &ShareId,
        member: &MemberId,
    ) -> Result<Option<GroupChange>> {
        let (sharing, share, member) = (self.sharing.clone(), share.clone(), member.clone());
        blocking(move || sharing.remove_member(&share, &member)).await
    }

    /// Logs a membership change of `share`'s group, delivers its commit to the
    /// other members and, for an addition, its Welcome to `member`; returns
    /// whether `member` took the Welcome (always `true` for a removal).
    pub(super) async fn publish(
        &self,
        share: &ShareId,
        member: &MemberId,
        change: GroupChange,
    ) -> Result<bool> {
        let (dossier, section, epoch) = (share.dossier.clone(), share.section, change.epoch);
        let member_id = member.clone();
        self.audit(match change.welcome {
            Some(_) => AuditEvent::GroupMemberAdded {
                dossier,
                section,
                member: member_id,
                epoch,
            },
            None => AuditEvent::GroupMemberRemoved {
                dossier,
                section,
                member: member_id,
                epoch,
            },
        })
        .await?;
        self.deliver_commit(share, &change.recipients, &change.commit)
            .await;
        let Some(welcome) = change.welcome else {
            return Ok(true);
        };
        match self.roster_member(member) {
            Ok(m) => Ok(self.deliver_welcome(&m, share, welcome).await),
            Err(_) => Ok(false),
        }
    }

    /// Sends a commit to every listed member except this node, each within
    /// [`DELIVERY_DEADLINE`]; a member that misses it is marked to be brought
    /// back with a fresh Welcome.
    async fn deliver_commit(&self, share: &ShareId, to: &[MemberId], commit: &[u8]) {
        for m in to.iter().filter(|m| **m != self.me) {
            let Ok(member) = self.roster_member(m) else {
                continue;
            };
            let delivery = self.network.deliver_commit(&member, share, commit.to_vec());
            let failed = match tokio::time::timeout(DELIVERY_DEADLINE, delivery).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".to_owned(),
            };
            tracing::warn!(member = %m, error = %failed, "commit not delivered; the member will get a fresh welcome");
            self.mark_for_resync(share, m).await;
        }
    }

    /// Sends a Welcome; a member that misses it is marked to be brought back.
    async fn deliver_welcome(
        &self,
        member: &RosterMember,
        share: &ShareId,
        welcome: Vec<u8>,
    ) -> bool {
        let delivery = self.network.deliver_welcome(member, share, welcome);
        let failed = match tokio::time::timeout(DELIVERY_DEADLINE, delivery).await {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        tracing::warn!(member = %member.card.id, error = %failed, "welcome not delivered; the member will get a fresh one");
        self.mark_for_resync(share, &member.card.id).await;
        false
    }

    /// The members waiting to be brought back into a share group, for the
    /// admin's outbox view.
    pub(super) fn resync_waiting(&self) -> Result<Vec<super::outbox::Waiting>> {
        Ok(self
            .store
            .scan::<Resync>(Tree::Resync, "")?
            .into_iter()
            .map(|(_, m)| super::outbox::Waiting {
                about: m.share.scope(),
                to: m.member,
                kind: "mls_resync".into(),
                attempts: m.attempts,
                next_at: m.next_at,
            })
            .collect())
    }

    /// Remembers that `member` is out of step with `share`'s group. A mark
    /// set again gets a new id, so that an upkeep round working on the old
    /// one does not take it away. A mark that cannot be written is logged:
    /// the member can still ask for a fresh Welcome itself.
    pub(super) async fn mark_for_resync(&self, share: &ShareId, member: &MemberId) {
        let marked = async {
            let mark = Resync {
                id: self.store.next_id()?,
                share: share.clone(),
                member: member.clone(),
                attempts: 0,
                next_at: 0,
            };
            self.store
                .put(Tree::Resync, &member_key(share, member), &mark)?;
            self.flush().await
        };
        if let Err(e) = marked.await {
            tracing::error!(error = %e, "cannot remember a member to bring back");
        }
    }

    /// Marks every member of `audience` that is not in the share's group and
    /// not marked yet (a mark already set keeps its retry schedule).
    pub(super) async fn mark_missing_members(
        &self,
        share: &ShareId,
        audience: &std::collections::BTreeSet<MemberId>,
    ) {
        let present = match self.sharing.members(share) {
            Ok(members) => members,
            Err(crate::sharing::ShareError::NoGroup) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list a share's members");
                return;
            }
        };
        for m in audience.iter().filter(|m| !present.contains(m)) {
            let marked = self
                .store
                .get::<Resync>(Tree::Resync, &member_key(share, m))
                .map(|mark| mark.is_some())
                .unwrap_or(false);
            if !marked {
                self.mark_for_resync(share, m).await;
            }
        }
    }

    /// Upkeep: removes from every group this node owns the members nothing
    /// entitles any more (a closure, a mask, a break-glass end, a pending
    /// consent's expiry, or any of them cut short by a crash or a failed
    /// delivery), so that the MLS removal backs every refusal; returns how
    /// many were removed. Groups already in step are not locked.
    pub async fn sync_owned_groups(&self) -> Result<usize> {
        let mut removed = 0;
        for scope in self.store.mls_scopes(&format!("share/{}/", self.me))? {
            if self.is_stopping() {
                break;
            }
            let Some(share) = ShareId::from_scope(&scope) else {
                continue;
            };
            let entitled = self.entitled_members(&share.dossier, share.section)?;
            let Ok(members) = self.sharing.members(&share) else {
                continue;
            };
            let extra = members
                .into_iter()
                .any(|m| m != self.me && !entitled.contains(&m));
            if !extra {
                continue;
            }
            let _changing = self.membership.get(&share.scope()).write_owned().await;
            match self.sync_group_locked(&share).await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(error = %e, "a group not brought in step; will retry"),
            }
        }
        Ok(removed)
    }

    /// Upkeep: marks, for every active consent, the members of its audience
    /// that are not in its shares' groups (a node that stopped between a
    /// grant and the group changes); returns how many shares were checked.
    pub async fn reconcile_groups(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut checked = 0;
        for (_, record) in self.store.scan::<ConsentRecord>(Tree::Consents, "")? {
            if self.is_stopping() {
                break;
            }
            if record.status(now) != ConsentStatus::Active {
                continue;
            }
            for section in &record.consent.sections {
                let share = self.own_share(&record.consent.dossier, *section);
                let entitled = self.entitled_members(&share.dossier, share.section)?;
                self.mark_missing_members(&share, &entitled).await;
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// Upkeep: brings back every member that missed a commit or a Welcome of
    /// one of this node's groups, by removing it and adding it again from a
    /// fresh KeyPackage; returns how many were brought back. A member that
    /// cannot be reached is retried with exponential backoff; one no active
    /// consent names any more is forgotten (its removal stands).
    pub async fn resync_members(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut done = 0;
        for (key, mark) in self.store.scan::<Resync>(Tree::Resync, "")? {
            if self.is_stopping() {
                break;
            }
            if mark.next_at > now {
                continue;
            }
            match self.bring_back(&mark.share, &mark.member).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(member = %mark.member, error = %e, "member not brought back yet; will retry");
                    let attempts = mark.attempts.saturating_add(1);
                    let retry = Resync {
                        attempts,
                        next_at: now + UPKEEP_RETRY_BASE.saturating_mul(1 << attempts.min(10)),
                        ..mark.clone()
                    };
                    // Unless it was marked again meanwhile, in which case that mark stands.
                    if self.store.remove_if_unchanged(Tree::Resync, &key, &mark)? {
                        self.store.put(Tree::Resync, &key, &retry)?;
                    }
                    continue;
                }
            }
            self.store.remove_if_unchanged(Tree::Resync, &key, &mark)?;
        }
        self.flush().await?;
        Ok(done)
    }

    /// Whether `member` belongs in `share`'s group now (see `entitled_members`).
    pub(super) fn entitled(&self, share: &ShareId, member: &MemberId) -> Result<bool> {
        Ok(self
            .entitled_members(&share.dossier, share.section)?
            .contains(member))
    }

    /// Removes `member` from the share's group and adds it again from a fresh
    /// KeyPackage, if an active consent still names it; `false` if not.
    pub(super) async fn bring_back(&self, share: &ShareId, member_id: &MemberId) -> Result<bool> {
        if !self.entitled(share, member_id)? {
            return Ok(false);
        }
        let member = self.roster_member(member_id)?;
        // Fetched before locking: a slow member must not hold up the share.
        let kp = self.fetch_key_package(&member).await?;
        let changing = self.membership.get(&share.scope()).write_owned().await;
        if !self.entitled(share, member_id)? {
            return Ok(false);
        }
        // The mark this bring-back answers, if any: removed at the end only
        // if no delivery failed meanwhile (a failure sets a new mark).
        let key = member_key(share, member_id);
        let answered = self.store.get::<Resync>(Tree::Resync, &key)?;
        let sharing = self.sharing.clone();
        let ensure = share.clone();
        blocking(move || sharing.ensure_group(&ensure)).await?;
        if let Some(change) = self.remove_from_group(share, member_id).await? {
            self.publish(share, member_id, change).await?;
        }
        let Some(change) = self.add_to_group(share, &member, kp).await? else {
            return Ok(true);
        };
        let welcomed = self.publish(share, member_id, change).await?;
        drop(changing);
        if !welcomed {
            return Err(ServiceError::Unreachable {
                peer: member_id.clone(),
                reason: "it did not take the fresh welcome".into(),
            });
        }
        if let Some(mark) = answered {
            self.store.remove_if_unchanged(Tree::Resync, &key, &mark)?;
            self.flush().await?;
        }
        Ok(true)
    }
}
