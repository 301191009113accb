//! The member side of MLS, as other owners call it: KeyPackages handed out,
//! Welcomes and commits taken, and the owner side of a member's request for
//! a fresh Welcome.

use super::{Node, Result, ServiceError, blocking};
use crate::audit::AuditEvent;
use crate::consent::DenyReason;
use crate::crypto::PublicKey;
use crate::sharing::ShareId;
use crate::storage::Tree;
use crate::types::{DossierId, MemberId, Section};

/// Least time between two fresh Welcomes a member may ask for, per share.
pub const WELCOME_REQUEST_INTERVAL: i64 = 30;

/// How often the groups a peer has this node in are counted again once
/// it reached its cap.
const GROUP_RECOUNT: std::time::Duration = std::time::Duration::from_secs(60);

impl Node {
    /// Refuses a peer that is not an active member.
    pub(super) fn active_peer(&self, peer: &MemberId) -> Result<()> {
        self.roster_member(peer)
            .map(drop)
            .map_err(|_| ServiceError::Denied(DenyReason::NotAMember(peer.clone())))
    }

    /// The share an active peer owns for (dossier, section).
    fn peer_share(&self, peer: &MemberId, dossier: DossierId, section: Section) -> Result<ShareId> {
        self.active_peer(peer)?;
        Ok(ShareId {
            dossier,
            section,
            owner: peer.clone(),
        })
    }

    /// Hands a fresh KeyPackage to an active peer, usable only in its groups.
    pub async fn key_package_for(&self, peer: &MemberId) -> Result<Vec<u8>> {
        self.active_peer(peer)?;
        let (sharing, peer) = (self.sharing.clone(), peer.clone());
        blocking(move || sharing.new_key_package(&peer)).await
    }

    /// The roster's signing keys of active members, for checking credentials.
    fn roster_key(&self) -> impl Fn(&MemberId) -> Option<PublicKey> + Send + use<> {
        let roster = self.roster.get();
        move |m: &MemberId| roster.active_member(m).map(|r| r.card.signing_key)
    }

    /// Joins the share group `peer` owns, from its Welcome.
    pub async fn accept_welcome(
        &self,
        peer: &MemberId,
        dossier: DossierId,
        section: Section,
        welcome: Vec<u8>,
    ) -> Result<u64> {
        let share = self.peer_share(peer, dossier, section)?;
        // One Welcome of a peer at a time, from the count to the join, so
        // that concurrent Welcomes cannot pass the cap together.
        let capping = self.group_cap_locks.get(peer.as_str());
        let _capping = capping.lock().await;
        let new_group = !self.sharing.has_group(&share)?;
        if new_group {
            self.check_group_cap(peer).await?;
        }
        let (sharing, joining, roster_key) =
            (self.sharing.clone(), share.clone(), self.roster_key());
        let epoch = blocking(move || sharing.join(&joining, &welcome, &roster_key)).await?;
        if new_group
            && let Some(counted) = self
                .groups_joined
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(peer)
        {
            counted.0 += 1;
        }
        self.audit(AuditEvent::GroupJoined {
            dossier: share.dossier,
            section: share.section,
            owner: peer.clone(),
            epoch,
        })
        .await?;
        Ok(epoch)
    }

    /// Refuses a Welcome into a new group once `peer` has this node in
    /// `limits.groups_per_peer` groups: counted from the store the first
    /// time, kept up as groups are joined, and counted again (groups closed
    /// since are not counted) when the cap is reached, at most once per
    /// [`GROUP_RECOUNT`]: a peer at the cap cannot make the node walk its
    /// groups on every Welcome. The caller holds the peer's cap lock.
    async fn check_group_cap(&self, peer: &MemberId) -> Result<()> {
        let cap = self.limits.groups_per_peer as usize;
        if cap == 0 {
            return Ok(());
        }
        let known = self
            .groups_joined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .copied();
        let count = match known {
            Some((n, _)) if n < cap => n,
            Some((n, at)) if at.elapsed() < GROUP_RECOUNT => n,
            _ => {
                let (store, prefix) = (self.store.clone(), format!("share/{peer}/"));
                let n = blocking(move || store.mls_scopes(&prefix).map(|s| s.len())).await?;
                self.groups_joined
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(peer.clone(), (n, std::time::Instant::now()));
                n
            }
        };
        if count >= cap {
            tracing::debug!(%peer, count, "a Welcome past the group cap refused");
            self.metrics.limited("peer", "groups_per_peer");
            return Err(ServiceError::Capped(format!(
                "{peer} already has this node in {count} share groups, the cap (limits.groups_per_peer)"
            )));
        }
        Ok(())
    }

    /// Applies a commit from the owner of a share group.
    pub async fn accept_commit(
        &self,
        peer: &MemberId,
        dossier: DossierId,
        section: Section,
        commit: Vec<u8>,
    ) -> Result<u64> {
        let share = self.peer_share(peer, dossier, section)?;
        let (sharing, roster_key) = (self.sharing.clone(), self.roster_key());
        blocking(move || sharing.apply_commit(&share, &commit, &roster_key)).await
    }

    /// Owner side: a member that cannot open this node's answers asks for a
    /// fresh Welcome. Granted to members an active consent names, at most once
    /// per [`WELCOME_REQUEST_INTERVAL`] per share.
    pub async fn resend_welcome(
        &self,
        peer: &MemberId,
        dossier: DossierId,
        section: Section,
    ) -> Result<u64> {
        self.active_peer(peer)?;
        let share = self.own_share(&dossier, section);
        if !self.entitled(&share, peer)? {
            return Err(ServiceError::NotEntitled(format!(
                "no active consent names {peer} for this share"
            )));
        }
        let now = self.clock.now();
        let key = super::membership::member_key(&share, peer);
        let last = self.store.get::<i64>(Tree::WelcomeRequests, &key)?;
        let too_soon = || {
            ServiceError::Busy(format!(
                "a fresh welcome was sent less than {WELCOME_REQUEST_INTERVAL} s ago"
            ))
        };
        if last.is_some_and(|last| now - last < WELCOME_REQUEST_INTERVAL) {
            return Err(too_soon());
        }
        // Atomically: of concurrent requests, one takes the slot.
        if !self
            .store
            .replace_if_unchanged(Tree::WelcomeRequests, &key, last.as_ref(), &now)?
        {
            return Err(too_soon());
        }
        self.bring_back(&share, peer).await?;
        Ok(self.sharing.epoch(&share)?)
    }

    /// Members of a share group as this node sees it (for operators and tests).
    pub async fn share_members(&self, share: &ShareId) -> Result<Vec<MemberId>> {
        Ok(self.sharing.members(share)?)
    }

    /// Bytes of MLS state kept for a share.
    pub async fn share_state_bytes(&self, share: &ShareId) -> Result<usize> {
        Ok(self.sharing.state_bytes(share)?)
    }
}
