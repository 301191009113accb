//! Break-glass: a read without consent, for a grave and imminent danger the
//! charter names. The owner grants it for the time the charter sets (logged
//! first, flagged), adds the reader to the sections' groups, removes it when
//! the time is up (upkeep), and tells the référent's member. It never opens
//! a section the person masked, nor one the reader's kind may never receive.
//! Auditors list every access and mark each reviewed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::{self, Decision, DenyReason};
use crate::protocol::ReadRequest;
use crate::roster::RosterMember;
use crate::storage::Tree;
use crate::types::{DossierId, GrantId, MemberId, Role, Section, UserName};

/// Shortest review comment (bytes).
pub const MIN_REVIEW_COMMENT: usize = 20;

/// An auditor's review of a break-glass access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// The auditor.
    pub by: UserName,
    /// When (Unix seconds).
    pub at: i64,
    /// The auditor's comment.
    pub comment: String,
}

/// A break-glass access: granted here, or told of by the owner that granted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassGrant {
    /// Its id (`BGL-…`).
    pub id: GrantId,
    /// The dossier (its opaque id only).
    pub dossier: DossierId,
    /// The member that granted it.
    pub owner: MemberId,
    /// The reading member.
    pub reader: MemberId,
    /// The user there who broke the glass (none in a notice).
    pub user: Option<UserName>,
    /// The sections it opens.
    pub sections: BTreeSet<Section>,
    /// Why, in the user's words (none in a notice: it stays at the owner).
    pub justification: Option<String>,
    /// When it was granted (Unix seconds).
    pub granted_at: i64,
    /// When it ends (Unix seconds).
    pub until: i64,
    /// Whether its end was logged and the reader removed from the groups.
    pub ended: bool,
    /// The auditor's review, once made.
    pub review: Option<Review>,
}

impl BreakGlassGrant {
    /// Whether it keeps `reader` in the group of `section` at `now`.
    pub fn opens(&self, reader: &MemberId, section: Section, now: i64) -> bool {
        !self.ended
            && now < self.until
            && &self.reader == reader
            && self.sections.contains(&section)
    }

    /// Whether it lets `user` of `reader` read `section` at `now`: each user
    /// breaks the glass for itself, with its own justification.
    pub fn opens_for(
        &self,
        reader: &MemberId,
        user: &UserName,
        section: Section,
        now: i64,
    ) -> bool {
        self.opens(reader, section, now) && self.user.as_ref() == Some(user)
    }
}

fn grant_key(dossier: &DossierId, id: &GrantId) -> String {
    format!("{dossier}/{id}")
}

impl Node {
    /// The break-glass accesses this node granted for a dossier.
    pub(super) fn grants_of(&self, dossier: &DossierId) -> Result<Vec<BreakGlassGrant>> {
        Ok(self
            .store
            .scan::<BreakGlassGrant>(Tree::BreakGlass, &format!("{dossier}/"))?
            .into_iter()
            .map(|(_, g)| g)
            .collect())
    }

    /// The access that lets `user` of `reader` into `section` now, if any.
    pub(super) fn break_glass_basis(
        grants: &[BreakGlassGrant],
        reader: &MemberId,
        user: &UserName,
        section: Section,
        now: i64,
    ) -> Option<GrantId> {
        grants
            .iter()
            .find(|g| g.opens_for(reader, user, section, now))
            .map(|g| g.id.clone())
    }

    /// Owner side of a break-glass request: checks the charter lets this
    /// user of `reader` break the glass, then, for the sections asked that
    /// no consent opens and that may be opened (held here, not masked,
    /// receivable by the reader's kind, not open already), grants an access
    /// for the charter's time, logged first, and adds the reader to their
    /// groups. Refusals of single sections are left to the read decision.
    pub(super) async fn open_break_glass(
        &self,
        reader: &RosterMember,
        req: &ReadRequest,
        justification: &str,
        now: i64,
    ) -> Result<()> {
        let roster = self.roster.get();
        let charter = &roster.roster().charter;
        let Some(rule) = charter.break_glass.as_ref() else {
            return Err(ServiceError::Denied(DenyReason::BreakGlass {
                reader: reader.card.id.clone(),
                role: req.role,
            }));
        };
        if !charter.may_break_glass(reader.card.kind, req.role) || req.role != Role::Caseworker {
            return Err(ServiceError::Denied(DenyReason::BreakGlass {
                reader: reader.card.id.clone(),
                role: req.role,
            }));
        }
        let id = &reader.card.id;
        let consents = self.effective_consents(&req.dossier)?;
        let grants = self.grants_of(&req.dossier)?;
        let mut needed = BTreeSet::new();
        for section in &req.sections {
            let decision = consent::decide_read(&roster, &consents, id, *section, now);
            let openable = matches!(
                decision,
                Decision::Deny(
                    DenyReason::NoConsent
                        | DenyReason::SectionNotCovered(_)
                        | DenyReason::Revoked(_)
                        | DenyReason::Expired(_)
                        | DenyReason::NotYet(_)
                )
            );
            if openable
                && self.own_section(&req.dossier, *section)?.is_some()
                && Self::break_glass_basis(&grants, id, &req.user, *section, now).is_none()
            {
                needed.insert(*section);
            }
        }
        if needed.is_empty() {
            return Ok(());
        }

        // KeyPackages first, before any lock (one per group joined).
        let mut additions = Vec::new();
        for section in &needed {
            let share = self.own_share(&req.dossier, *section);
            let sharing = self.sharing.clone();
            let ensure = share.clone();
            super::blocking(move || sharing.ensure_group(&ensure)).await?;
            if !self.sharing.members(&share)?.contains(id) {
                additions.push((share, self.fetch_key_package(reader).await?));
            }
        }
        let mut changing = Vec::new();
        for section in &needed {
            let share = self.own_share(&req.dossier, *section);
            changing.push(self.membership.get(&share.scope()).write_owned().await);
        }
        // Closed or erased while the KeyPackages were fetched.
        self.dossier(&req.dossier)?;
        if self.is_closed(&req.dossier)? {
            return Err(ServiceError::Denied(DenyReason::Closed));
        }
        let now = self.clock.now();
        let grant = BreakGlassGrant {
            id: GrantId::random(),
            dossier: req.dossier.clone(),
            owner: self.me.clone(),
            reader: id.clone(),
            user: Some(req.user.clone()),
            sections: needed,
            justification: Some(justification.trim().to_owned()),
            granted_at: now,
            until: now + i64::from(rule.hours) * 3600,
            ended: false,
            review: None,
        };
        let granted = AuditEvent::BreakGlassGranted {
            grant: grant.id.clone(),
            dossier: grant.dossier.clone(),
            reader: grant.reader.clone(),
            user: req.user.clone(),
            role: req.role,
            sections: grant.sections.iter().copied().collect(),
            justification: justification.trim().to_owned(),
            until: grant.until,
        };
        let queued = self
            .log_then_apply(now, granted, "break_glass_logged", || {
                self.store_grant(&grant)?;
                self.queue_break_glass_notice(&grant)
            })
            .await?;
        tracing::warn!(grant = %grant.id, reader = %grant.reader, "break-glass access granted");
        for (share, kp) in additions {
            let member = self.roster_member(id)?;
            match self.add_to_group(&share, &member, kp).await {
                Ok(Some(change)) => {
                    if let Err(e) = self.publish(&share, id, change).await {
                        tracing::warn!(error = %e, "break-glass welcome not published; upkeep will retry");
                        self.mark_for_resync(&share, id).await;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "break-glass reader not added yet; upkeep will retry");
                    self.mark_for_resync(&share, id).await;
                }
            }
        }
        drop(changing);
        self.deliver_now(queued).await;
        Ok(())
    }

    /// Writes a grant (not flushed).
    pub(super) fn store_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        self.store.put(
            Tree::BreakGlass,
            &grant_key(&grant.dossier, &grant.id),
            grant,
        )?;
        Ok(())
    }

    /// Marks a grant ended (not flushed); `false` if unknown or ended already.
    pub(super) fn store_grant_end(&self, dossier: &DossierId, id: &GrantId) -> Result<bool> {
        let key = grant_key(dossier, id);
        let Some(mut grant) = self.store.get::<BreakGlassGrant>(Tree::BreakGlass, &key)? else {
            return Ok(false);
        };
        if grant.ended {
            return Ok(false);
        }
        grant.ended = true;
        self.store.put(Tree::BreakGlass, &key, &grant)?;
        Ok(true)
    }

    /// Upkeep: ends every break-glass access whose time is up: the end is
    /// logged, then the reader leaves the groups no consent keeps it in.
    /// Returns how many ended.
    pub async fn end_break_glass(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut ended = 0;
        for (_, grant) in self.store.scan::<BreakGlassGrant>(Tree::BreakGlass, "")? {
            if self.is_stopping() {
                break;
            }
            if grant.ended || now < grant.until {
                continue;
            }
            let mut changing = Vec::new();
            for section in &grant.sections {
                let share = self.own_share(&grant.dossier, *section);
                changing.push(self.membership.get(&share.scope()).write_owned().await);
            }
            let event = AuditEvent::BreakGlassEnded {
                grant: grant.id.clone(),
                dossier: grant.dossier.clone(),
            };
            self.log_then_apply(now, event, "break_glass_end_logged", || {
                self.store_grant_end(&grant.dossier, &grant.id)
            })
            .await?;
            for section in &grant.sections {
                let share = self.own_share(&grant.dossier, *section);
                if let Err(e) = self.sync_group_locked(&share).await {
                    tracing::warn!(error = %e, "reader not removed after a break-glass end; upkeep will retry");
                }
            }
            ended += 1;
        }
        Ok(ended)
    }

    /// `audit break-glass`: every break-glass access granted here or told of
    /// here, oldest first; only those not reviewed yet with `pending`.
    pub async fn list_break_glass(
        &self,
        caller: &Caller,
        pending: bool,
    ) -> Result<Vec<BreakGlassGrant>> {
        require(caller, &[Role::Auditor])?;
        let mut all = break_glass_accesses(&self.store, pending)?;
        all.sort_by(|a, b| (a.granted_at, &a.id).cmp(&(b.granted_at, &b.id)));
        Ok(all)
    }

    /// `audit review`: an auditor marks a break-glass access reviewed, with
    /// a comment (logged first); an access is reviewed once.
    pub async fn review_break_glass(
        &self,
        caller: &Caller,
        id: &GrantId,
        comment: &str,
    ) -> Result<()> {
        require(caller, &[Role::Auditor])?;
        crate::types::check_sentence("comment", comment, MIN_REVIEW_COMMENT)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let (tree, key, grant) = self
            .find_grant(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("break-glass access {id}")))?;
        if grant.review.is_some() {
            return Err(ServiceError::State(format!(
                "break-glass access {id} is already reviewed"
            )));
        }
        let now = self.clock.now();
        let review = Review {
            by: caller.name.clone(),
            at: now,
            comment: comment.trim().to_owned(),
        };
        let event = AuditEvent::BreakGlassReviewed {
            grant: id.clone(),
            owner: grant.owner.clone(),
            dossier: Some(grant.dossier.clone()),
            by: caller.name.clone(),
            comment: review.comment.clone(),
        };
        let mut reviewed = grant;
        reviewed.review = Some(review);
        self.log_then_apply(now, event, "review_logged", || {
            Ok(self.store.put(tree, &key, &reviewed)?)
        })
        .await
    }

    /// A grant or notice by id, with its tree and key.
    pub(super) fn find_grant(
        &self,
        id: &GrantId,
    ) -> Result<Option<(Tree, String, BreakGlassGrant)>> {
        for tree in [Tree::BreakGlass, Tree::Notices] {
            if let Some((key, g)) = self
                .store
                .scan::<BreakGlassGrant>(tree, "")?
                .into_iter()
                .find(|(_, g)| &g.id == id)
            {
                return Ok(Some((tree, key, g)));
            }
        }
        Ok(None)
    }

    /// Applies a review the log holds and the store lacks; `true` if applied.
    pub(super) fn replay_review(
        &self,
        id: &GrantId,
        by: &UserName,
        at: i64,
        comment: &str,
    ) -> Result<bool> {
        let Some((tree, key, mut grant)) = self.find_grant(id)? else {
            return Ok(false);
        };
        if grant.review.is_some() {
            return Ok(false);
        }
        grant.review = Some(Review {
            by: by.clone(),
            at,
            comment: comment.to_owned(),
        });
        self.store.put(tree, &key, &grant)?;
        Ok(true)
    }
}

/// Every break-glass access granted here or told of here; only those not
/// reviewed yet with `pending` (what the auditors list and the metrics count).
pub(super) fn break_glass_accesses(
    store: &crate::storage::Store,
    pending: bool,
) -> Result<Vec<BreakGlassGrant>> {
    Ok(store
        .scan::<BreakGlassGrant>(Tree::BreakGlass, "")?
        .into_iter()
        .chain(store.scan::<BreakGlassGrant>(Tree::Notices, "")?)
        .map(|(_, g)| g)
        .filter(|g| !pending || g.review.is_none())
        .collect())
}
