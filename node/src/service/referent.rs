//! The référent de parcours: the caseworker who coordinates a person's
//! parcours. The member that holds the dossier (where it was opened) names
//! the référent and tells every member that holds the dossier; a hand-over
//! to another member rests on the person's consent and is logged at both.
//! The référent alone writes the `support_plan` section, and sees which
//! members hold sections of the dossier and how fresh they are, never
//! their content.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::ConsentStatus;
use crate::protocol::Notice;
use crate::storage::Tree;
use crate::types::{ConsentId, DossierId, GrantId, MemberId, Role, Section, UserName};

/// How long the référent's view waits for one member's freshness.
pub const FRESHNESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Who coordinates a dossier's parcours, as every member holding it knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Referent {
    /// The référent's member.
    pub member: MemberId,
    /// The référent, a user at that member.
    pub user: UserName,
    /// Since when (Unix seconds, the holder's log time).
    pub since: i64,
    /// Every member that holds the dossier, the holder included.
    pub partners: BTreeSet<MemberId>,
}

/// What the référent sees of one member holding the dossier.
#[derive(Debug)]
pub struct PartnerFreshness {
    /// The member.
    pub member: MemberId,
    /// When it last wrote each of its sections, or why it did not say.
    pub outcome: std::result::Result<Vec<(Section, i64)>, ServiceError>,
}

impl Node {
    /// The référent of a dossier, as this node knows it.
    pub(super) fn referent(&self, dossier: &DossierId) -> Result<Option<Referent>> {
        Ok(self.store.get(Tree::Referents, dossier.as_str())?)
    }

    /// `dossier referent --set USER@MEMBER`, at the member that holds the
    /// dossier: names its référent de parcours. A référent at another
    /// member (first named, or handed over) needs a consent recorded here
    /// that names that member, in force; a member that has not attached to
    /// the dossier cannot be named. Logged, stored and queued to every
    /// member holding the dossier at once.
    pub async fn set_referent(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        member: &MemberId,
        user: &UserName,
        consent: Option<&ConsentId>,
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        let record = self.dossier(dossier)?;
        if let Some(holder) = &record.attached_from {
            return Err(ServiceError::State(format!(
                "the référent is named at {holder}, which holds {dossier}"
            )));
        }
        self.check_open(dossier)?;
        if member == &self.me {
            let local = self
                .store
                .get::<super::UserRecord>(Tree::Users, user.as_str())?;
            if local.is_none_or(|u| u.role != Role::Caseworker) {
                return Err(ServiceError::NotFound(format!("caseworker {user}")));
            }
        } else if !record.partners.contains(member) {
            return Err(ServiceError::State(format!(
                "{member} does not hold {dossier}: it attaches to it first"
            )));
        }
        let current = self.referent(dossier)?;
        if current
            .as_ref()
            .is_some_and(|r| &r.member == member && &r.user == user)
        {
            return Err(ServiceError::State(format!(
                "{user}@{member} is already the référent of {dossier}"
            )));
        }
        let now = self.clock.now();
        if member != &self.me {
            let Some(id) = consent else {
                return Err(ServiceError::NotEntitled(format!(
                    "a référent at {member} needs the person's consent naming it (--consent CNS-…)"
                )));
            };
            // As decisions read it: a member suspended since the consent
            // was given is no longer in its audience.
            let held = self
                .effective_consents(dossier)?
                .into_iter()
                .find(|r| &r.consent.id == id);
            let Some(held) = held else {
                return Err(ServiceError::NotFound(format!(
                    "consent {id} for {dossier}"
                )));
            };
            if held.status(now) != ConsentStatus::Active || !held.consent.audience.contains(member)
            {
                return Err(ServiceError::NotEntitled(format!(
                    "consent {id} is not in force for {member}"
                )));
            }
        }
        let mut partners = record.partners.clone();
        partners.insert(self.me.clone());
        let referent = Referent {
            member: member.clone(),
            user: user.clone(),
            since: now,
            partners,
        };
        let event = AuditEvent::ReferentSet {
            dossier: dossier.clone(),
            member: member.clone(),
            user: user.clone(),
            consent: consent.filter(|_| member != &self.me).cloned(),
            by: caller.name.clone(),
        };
        let queued = self
            .log_then_apply(now, event, "referent_logged", || {
                self.store
                    .put(Tree::Referents, dossier.as_str(), &referent)?;
                self.queue_referent_notices(dossier, &referent)
            })
            .await?;
        self.deliver_now(queued).await;
        Ok(())
    }

    /// Queues (not flushed) the référent notice to every partner holding
    /// the dossier; returns the outbox entries.
    pub(super) fn queue_referent_notices(
        &self,
        dossier: &DossierId,
        referent: &Referent,
    ) -> Result<Vec<u64>> {
        let mut queued = Vec::new();
        for p in referent.partners.iter().filter(|p| **p != self.me) {
            queued.push(self.queue_referent_notice(dossier, referent, p)?);
        }
        Ok(queued)
    }

    /// Queues (not flushed) the référent notice for one partner: only the
    /// référent's member learns which members hold the dossier.
    pub(super) fn queue_referent_notice(
        &self,
        dossier: &DossierId,
        referent: &Referent,
        to: &MemberId,
    ) -> Result<u64> {
        let partners = if to == &referent.member {
            referent.partners.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let notice = Notice::Referent {
            dossier: dossier.clone(),
            member: referent.member.clone(),
            user: referent.user.clone(),
            since: referent.since,
            partners,
        };
        self.queue_notice(to, &notice)
    }

    /// Takes a notice from a peer: a référent named by the dossier's holder
    /// (logged, then kept; an older or identical one changes nothing), or a
    /// break-glass access an owner tells the référent's member of.
    pub async fn receive_notice(&self, peer: &MemberId, notice: Notice) -> Result<()> {
        self.active_peer(peer)?;
        match notice {
            Notice::Closed { .. } | Notice::Erased { .. } => self.receive_end(peer, notice).await,
            Notice::Orientation {
                orientation,
                signature,
            } => self.receive_orientation(peer, orientation, signature).await,
            Notice::OrientationStep { step, signature } => {
                self.receive_orientation_step(peer, step, signature).await
            }
            Notice::Alert { alert, signature } => self.receive_alert(peer, alert, signature).await,
            Notice::Commission {
                commission,
                signature,
            } => self.receive_commission(peer, commission, signature).await,
            Notice::Minutes { minutes, signature } => {
                self.receive_minutes(peer, minutes, signature).await
            }
            Notice::AlertAck { ack, signature } => {
                self.receive_alert_ack(peer, ack, signature).await
            }
            Notice::Referent {
                dossier,
                member,
                user,
                since,
                partners,
            } => {
                let record = self.dossier(&dossier)?;
                if record.attached_from.as_ref() != Some(peer) {
                    return Err(ServiceError::NotEntitled(format!(
                        "{peer} does not hold {dossier} for this node"
                    )));
                }
                let referent = Referent {
                    member: member.clone(),
                    user: user.clone(),
                    since,
                    partners: partners.into_iter().collect(),
                };
                if self
                    .referent(&dossier)?
                    .is_some_and(|r| r.since > since || r == referent)
                {
                    return Ok(());
                }
                let noted = AuditEvent::ReferentNoted {
                    dossier: dossier.clone(),
                    member,
                    user,
                    from: peer.clone(),
                    since,
                    partners: referent.partners.iter().cloned().collect(),
                };
                self.log_then_apply(self.clock.now(), noted, "referent_noted", || {
                    Ok(self
                        .store
                        .put(Tree::Referents, dossier.as_str(), &referent)?)
                })
                .await
            }
            Notice::BreakGlass {
                grant,
                dossier,
                reader,
                sections,
                granted_at,
                until,
            } => {
                self.dossier(&dossier)?;
                let referent = self.referent(&dossier)?;
                let Some(referent) = referent.filter(|r| r.member == self.me) else {
                    return Err(ServiceError::NotEntitled(format!(
                        "this node is not the référent's member for {dossier}"
                    )));
                };
                if !referent.partners.contains(peer) {
                    return Err(ServiceError::NotEntitled(format!(
                        "{peer} does not hold {dossier}"
                    )));
                }
                let key = notice_key(peer, &grant);
                if self
                    .store
                    .get::<super::BreakGlassGrant>(Tree::Notices, &key)?
                    .is_some()
                {
                    return Ok(());
                }
                if self.find_grant(&grant)?.is_some() {
                    return Err(ServiceError::Exists("break-glass access"));
                }
                let told = super::BreakGlassGrant {
                    id: grant.clone(),
                    dossier: dossier.clone(),
                    owner: peer.clone(),
                    reader: reader.clone(),
                    user: None,
                    sections: sections.iter().copied().collect(),
                    justification: None,
                    granted_at,
                    until,
                    ended: false,
                    review: None,
                };
                let event = AuditEvent::BreakGlassNotified {
                    grant,
                    owner: peer.clone(),
                    dossier,
                    reader,
                    sections,
                    granted_at,
                    until,
                };
                tracing::warn!(grant = %told.id, owner = %peer, "a break-glass access to a dossier this node coordinates");
                self.log_then_apply(self.clock.now(), event, "notice_logged", || {
                    Ok(self.store.put(Tree::Notices, &key, &told)?)
                })
                .await
            }
        }
    }

    /// Queues (not flushed) the notice of a break-glass access to the
    /// référent's member, when it is another member.
    pub(super) fn queue_break_glass_notice(
        &self,
        grant: &super::BreakGlassGrant,
    ) -> Result<Vec<u64>> {
        let Some(referent) = self.referent(&grant.dossier)? else {
            return Ok(Vec::new());
        };
        if referent.member == self.me {
            return Ok(Vec::new());
        }
        let notice = Notice::BreakGlass {
            grant: grant.id.clone(),
            dossier: grant.dossier.clone(),
            reader: grant.reader.clone(),
            sections: grant.sections.iter().copied().collect(),
            granted_at: grant.granted_at,
            until: grant.until,
        };
        Ok(vec![self.queue_notice(&referent.member, &notice)?])
    }

    /// Peer side: when this node last wrote each of its sections of a
    /// dossier, for the dossier's référent's member only (logged).
    pub async fn answer_freshness(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
    ) -> Result<Vec<(Section, i64)>> {
        self.active_peer(peer)?;
        self.dossier(dossier)?;
        if self.referent(dossier)?.is_none_or(|r| &r.member != peer) {
            return Err(ServiceError::NotEntitled(format!(
                "{peer} is not the référent's member for {dossier}"
            )));
        }
        self.audit(AuditEvent::FreshnessAnswered {
            dossier: dossier.clone(),
            to: peer.clone(),
        })
        .await?;
        self.own_freshness(dossier)
    }

    /// When this node last wrote each of its sections of a dossier.
    fn own_freshness(&self, dossier: &DossierId) -> Result<Vec<(Section, i64)>> {
        let mut out = Vec::new();
        for section in Section::ALL {
            if let Some(record) = self.own_section(dossier, *section)? {
                out.push((*section, record.written_at));
            }
        }
        Ok(out)
    }

    /// For the référent's member: every member holding the dossier and when
    /// it last wrote each of its sections, asked at once, each within
    /// [`FRESHNESS_DEADLINE`]; empty elsewhere.
    pub(super) async fn partners_freshness(
        &self,
        dossier: &DossierId,
    ) -> Result<Vec<PartnerFreshness>> {
        let Some(referent) = self.referent(dossier)?.filter(|r| r.member == self.me) else {
            return Ok(Vec::new());
        };
        let asks = referent.partners.iter().map(|p| async move {
            let outcome = if p == &self.me {
                self.own_freshness(dossier)
            } else {
                match self.roster_member(p) {
                    Err(e) => Err(e),
                    Ok(member) => {
                        let ask = self.network.freshness(&member, dossier);
                        match tokio::time::timeout(FRESHNESS_DEADLINE, ask).await {
                            Ok(r) => r,
                            Err(_) => Err(ServiceError::Unreachable {
                                peer: p.clone(),
                                reason: format!(
                                    "no answer within {} s",
                                    FRESHNESS_DEADLINE.as_secs()
                                ),
                            }),
                        }
                    }
                }
            };
            PartnerFreshness {
                member: p.clone(),
                outcome,
            }
        });
        Ok(futures_util::future::join_all(asks).await)
    }

    /// The support plan is written by the référent alone, at its member.
    pub(super) fn check_writes_support_plan(
        &self,
        caller: &Caller,
        dossier: &DossierId,
    ) -> Result<()> {
        self.check_referent(
            caller,
            dossier,
            "writes the support plan",
            "writing the support plan",
        )
    }

    /// Refuses anyone but the dossier's référent, at this member: only it
    /// `does` (what the refusal says), and one is named before `doing` it.
    pub(super) fn check_referent(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        does: &str,
        doing: &str,
    ) -> Result<()> {
        match self.referent(dossier)? {
            Some(r) if r.member == self.me && r.user == caller.name => Ok(()),
            Some(r) => Err(ServiceError::NotEntitled(format!(
                "only the référent de parcours ({}@{}) {does}",
                r.user, r.member
            ))),
            None => Err(ServiceError::NotEntitled(format!(
                "{dossier} has no référent de parcours yet: name one before {doing}"
            ))),
        }
    }
}

/// The store key of a break-glass notice.
pub(super) fn notice_key(owner: &MemberId, grant: &GrantId) -> String {
    format!("{owner}/{grant}")
}
