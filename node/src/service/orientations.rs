//! Orientations with a closed loop: a caseworker sends the person to
//! another member for one of its services in the census, with the person's
//! consent naming that member; the receiving member accepts, declines with
//! a reason, or completes it, and the sender sees each step. Each message
//! is signed by the node that sends it and travels through the outbox (a
//! restart or a member down loses none); each step is logged on both sides
//! before it is kept.

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::ConsentStatus;
use crate::crypto::{Context, Signature};
use crate::protocol::{MAX_ORIENTATION_TEXT, Notice, Orientation, OrientationStep, SignedBytes};
use crate::storage::Tree;
use crate::types::{
    ConsentId, DossierId, MemberId, OrientationId, OrientationStatus, Role, UserName,
};

/// An orientation as this node keeps it, sent or received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationRecord {
    /// The orientation, as its sender signed it.
    pub orientation: Orientation,
    /// The sender's signature.
    pub signature: Signature,
    /// The user who sent it, at the sender only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<UserName>,
    /// Where it stands.
    pub status: OrientationStatus,
    /// Each step, oldest first.
    pub steps: Vec<StepRecord>,
}

/// A step as this node keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// The step, as the receiving member signed it.
    pub step: OrientationStep,
    /// Its signature.
    pub signature: Signature,
    /// The user who took it, at the receiving member only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<UserName>,
}

/// Which orientations a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Those this node sent.
    Sent,
    /// Those this node received.
    Received,
}

/// The slot an orientation is sealed in, in the log.
const ORIENTATION_SLOT: &str = "orientation";
/// The slot a step is sealed in, in the log.
const STEP_SLOT: &str = "orientation step";

fn check_text(what: &str, text: &str, needed: bool) -> Result<()> {
    if needed && text.trim().is_empty() {
        return Err(ServiceError::Invalid(format!("{what} is needed")));
    }
    if text.len() > MAX_ORIENTATION_TEXT || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::Invalid(format!(
            "{what}: at most {MAX_ORIENTATION_TEXT} bytes, without control characters"
        )));
    }
    Ok(())
}

impl Node {
    /// The orientation `id` kept here, if any.
    fn orientation(&self, id: &OrientationId) -> Result<Option<OrientationRecord>> {
        self.kept_sealed(Tree::Orientations, id.as_str())
    }

    /// Keeps `record`, sealed under its dossier's key (not flushed).
    pub(super) fn keep_orientation(&self, record: &OrientationRecord) -> Result<()> {
        let o = &record.orientation;
        self.keep_sealed(
            Tree::Orientations,
            o.id.as_str(),
            (&o.dossier, &o.from, std::slice::from_ref(&o.to), o.sent_at),
            record,
        )
    }

    /// `maillon orient` (caseworkers): orients the person of `dossier`
    /// (held here, open) to member `to` for its census service `service`,
    /// for `reason`, on the person's consent: `consent`, or else the
    /// consent in force here for the dossier that names `to`. Logged with
    /// the signed orientation, kept and queued for `to` in one write, then
    /// delivered at once if `to` answers.
    pub async fn orient(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        to: &MemberId,
        service: &str,
        reason: &str,
        consent: Option<&ConsentId>,
    ) -> Result<OrientationRecord> {
        require(caller, &[Role::Caseworker])?;
        check_text("reason", reason, true)?;
        self.dossier(dossier)?;
        self.check_open(dossier)?;
        if to == &self.me {
            return Err(ServiceError::Invalid(
                "an orientation goes to another member".into(),
            ));
        }
        self.roster_member(to)?;
        let offered = self
            .kept_aid(to, service)?
            .filter(|e| !e.entry.withdrawn)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("service {to}/{service} in the census"))
            })?;
        let now = self.clock.now();
        let consent = self.orientation_consent(dossier, to, consent, now)?;
        let orientation = Orientation {
            id: OrientationId::random(),
            dossier: dossier.clone(),
            from: self.me.clone(),
            to: to.clone(),
            service: offered.entry.service.id,
            reason: reason.trim().to_owned(),
            consent: consent.id.clone(),
            sections: consent.sections.iter().copied().collect(),
            sent_at: now,
        };
        let signed = SignedBytes::sign(&orientation, Context::Orientation, &self.key);
        let record = OrientationRecord {
            orientation: orientation.clone(),
            signature: signed.signature,
            sent_by: Some(caller.name.clone()),
            status: OrientationStatus::Sent,
            steps: Vec::new(),
        };
        let event = AuditEvent::OrientationSent {
            orientation: orientation.id.clone(),
            dossier: dossier.clone(),
            to: to.clone(),
            service: orientation.service.clone(),
            consent: consent.id.clone(),
            by: caller.name.clone(),
            sealed: self.seal_signed(
                dossier,
                ORIENTATION_SLOT,
                &signed.bytes,
                &signed.signature,
            )?,
            message: None,
            signature: None,
        };
        let queued = self
            .log_then_apply(now, event, "orientation_logged", || {
                self.keep_orientation(&record)?;
                self.queue_notice(
                    to,
                    &Notice::Orientation {
                        orientation: orientation.clone(),
                        signature: signed.signature,
                    },
                )
            })
            .await?;
        self.deliver_now(vec![queued]).await;
        Ok(record)
    }

    /// The consent an orientation to `to` rests on: the one named, or the
    /// first in force that names `to`; refused when it is not recorded
    /// here for this dossier, not in force, or does not name `to`.
    fn orientation_consent(
        &self,
        dossier: &DossierId,
        to: &MemberId,
        named: Option<&ConsentId>,
        now: i64,
    ) -> Result<crate::consent::Consent> {
        let usable = |r: &crate::consent::ConsentRecord| {
            r.consent.dossier == *dossier
                && r.consent.owner == self.me
                && r.status(now) == ConsentStatus::Active
                && r.consent.audience.contains(to)
        };
        match named {
            Some(id) => {
                let (_, record) = self
                    .consent_record(id)?
                    .filter(|(_, r)| r.consent.dossier == *dossier)
                    .ok_or_else(|| ServiceError::NotFound(format!("consent {id} for {dossier}")))?;
                if usable(&record) {
                    Ok(record.consent)
                } else {
                    Err(ServiceError::State(format!(
                        "consent {id} is not in force, or does not name {to}: the person's consent to share with {to} is needed"
                    )))
                }
            }
            None => self
                .consents_of(dossier)?
                .into_iter()
                .find(usable)
                .map(|r| r.consent)
                .ok_or_else(|| {
                    ServiceError::State(format!(
                        "no consent of the person in force here names {to}: record one first (maillon consent grant {dossier} --to {to} …)"
                    ))
                }),
        }
    }

    /// `maillon orient accept|decline|complete` (caseworkers, at the
    /// receiving member): the next step of orientation `id`; a decline
    /// needs its reason. Logged with the signed step, kept and queued for
    /// the sender in one write, then delivered at once if it answers.
    pub async fn step_orientation(
        &self,
        caller: &Caller,
        id: &OrientationId,
        status: OrientationStatus,
        note: &str,
    ) -> Result<OrientationRecord> {
        require(caller, &[Role::Caseworker])?;
        check_text("note", note, status == OrientationStatus::Declined)?;
        let one_at_a_time = self.orientations.lock().await;
        let mut record = self
            .orientation(id)?
            .filter(|r| r.orientation.to == self.me)
            .ok_or_else(|| ServiceError::NotFound(format!("orientation {id} received here")))?;
        if !record.status.may_become(status) {
            return Err(ServiceError::State(format!(
                "orientation {id} is {}: it cannot become {status}",
                record.status
            )));
        }
        let now = self.clock.now();
        let step = OrientationStep {
            id: id.clone(),
            dossier: record.orientation.dossier.clone(),
            by: self.me.clone(),
            status,
            note: note.trim().to_owned(),
            at: now,
        };
        let signed = SignedBytes::sign(&step, Context::Orientation, &self.key);
        let event = AuditEvent::OrientationStepped {
            orientation: id.clone(),
            dossier: step.dossier.clone(),
            status,
            service: record.orientation.service.clone(),
            by: Some(caller.name.clone()),
            from: None,
            sealed: self.seal_signed(&step.dossier, STEP_SLOT, &signed.bytes, &signed.signature)?,
            message: None,
            signature: None,
        };
        record.status = status;
        record.steps.push(StepRecord {
            step: step.clone(),
            signature: signed.signature,
            taken_by: Some(caller.name.clone()),
        });
        let sender = record.orientation.from.clone();
        let queued = self
            .log_then_apply(now, event, "orientation_step_logged", || {
                self.keep_orientation(&record)?;
                self.queue_notice(
                    &sender,
                    &Notice::OrientationStep {
                        step: step.clone(),
                        signature: signed.signature,
                    },
                )
            })
            .await?;
        // Durable now: the delivery does not hold receptions back.
        drop(one_at_a_time);
        self.deliver_now(vec![queued]).await;
        Ok(record)
    }

    /// Takes an orientation `peer` sends: from `peer`, to this node, signed
    /// by `peer`'s roster key. Logged, then kept; one received before
    /// changes nothing.
    pub(super) async fn receive_orientation(
        &self,
        peer: &MemberId,
        orientation: Orientation,
        signature: Signature,
    ) -> Result<()> {
        if &orientation.from != peer || orientation.to != self.me {
            return Err(ServiceError::NotEntitled(format!(
                "an orientation from {} to {} offered by {peer}",
                orientation.from, orientation.to
            )));
        }
        let signed = self.taken_from_sender(
            peer,
            &orientation.dossier,
            (Context::Orientation, &orientation, signature),
            "orientation",
        )?;
        let _one_at_a_time = self.orientations.lock().await;
        if self.orientation(&orientation.id)?.is_some() {
            return Ok(());
        }
        let event = AuditEvent::OrientationReceived {
            orientation: orientation.id.clone(),
            dossier: orientation.dossier.clone(),
            from: peer.clone(),
            service: orientation.service.clone(),
            sealed: self.seal_signed(
                &orientation.dossier,
                ORIENTATION_SLOT,
                &signed.bytes,
                &signature,
            )?,
            message: None,
            signature: None,
        };
        self.log_then_apply(
            self.clock.now(),
            event,
            "orientation_received_logged",
            || self.keep_received(orientation, signature),
        )
        .await
    }

    /// Keeps a received orientation (not flushed).
    fn keep_received(&self, orientation: Orientation, signature: Signature) -> Result<()> {
        self.keep_orientation(&OrientationRecord {
            orientation,
            signature,
            sent_by: None,
            status: OrientationStatus::Sent,
            steps: Vec::new(),
        })
    }

    /// Takes a step `peer` tells of: of an orientation this node sent to
    /// `peer`, signed by `peer`'s roster key, a step its status allows.
    /// Logged, then kept; one taken before changes nothing.
    pub(super) async fn receive_orientation_step(
        &self,
        peer: &MemberId,
        step: OrientationStep,
        signature: Signature,
    ) -> Result<()> {
        if &step.by != peer {
            return Err(ServiceError::NotEntitled(format!(
                "a step taken by {} offered by {peer}",
                step.by
            )));
        }
        let signed = self.signed_by_peer(
            peer,
            Context::Orientation,
            &step,
            signature,
            "orientation step",
        )?;
        let _one_at_a_time = self.orientations.lock().await;
        let record = self
            .orientation(&step.id)?
            .filter(|r| r.orientation.from == self.me && r.orientation.to == *peer)
            .ok_or_else(|| {
                ServiceError::NotEntitled(format!(
                    "{peer} was sent no orientation {} by this node",
                    step.id
                ))
            })?;
        if step.dossier != record.orientation.dossier {
            return Err(ServiceError::NotEntitled(format!(
                "a step of orientation {} about another dossier",
                step.id
            )));
        }
        if record.steps.iter().any(|s| s.step == step) {
            return Ok(());
        }
        if !record.status.may_become(step.status) {
            return Err(ServiceError::State(format!(
                "orientation {} is {}: it cannot become {}",
                step.id, record.status, step.status
            )));
        }
        let event = AuditEvent::OrientationStepped {
            orientation: step.id.clone(),
            dossier: step.dossier.clone(),
            status: step.status,
            service: record.orientation.service.clone(),
            by: None,
            from: Some(peer.clone()),
            sealed: self.seal_signed(&step.dossier, STEP_SLOT, &signed.bytes, &signature)?,
            message: None,
            signature: None,
        };
        self.log_then_apply(self.clock.now(), event, "orientation_step_noted", || {
            self.keep_step(record, step, signature, None).map(drop)
        })
        .await
    }

    /// Adds a step to a record and keeps it (not flushed); `false` if the
    /// record holds it already.
    fn keep_step(
        &self,
        mut record: OrientationRecord,
        step: OrientationStep,
        signature: Signature,
        taken_by: Option<UserName>,
    ) -> Result<bool> {
        if record.steps.iter().any(|s| s.step == step) {
            return Ok(false);
        }
        record.status = step.status;
        record.steps.push(StepRecord {
            step,
            signature,
            taken_by,
        });
        self.keep_orientation(&record)?;
        Ok(true)
    }

    /// `maillon orient list` (caseworkers and auditors): the orientations
    /// sent or received here, or both, with a status if given, newest
    /// first. The list is logged.
    pub async fn list_orientations(
        &self,
        caller: &Caller,
        direction: Option<Direction>,
        status: Option<OrientationStatus>,
    ) -> Result<Vec<OrientationRecord>> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        let mut shown: Vec<OrientationRecord> = self
            .all_kept_sealed::<OrientationRecord>(Tree::Orientations)?
            .into_iter()
            .filter(|r| match direction {
                Some(Direction::Sent) => r.orientation.from == self.me,
                Some(Direction::Received) => r.orientation.to == self.me,
                None => true,
            })
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        shown.sort_by_key(|r| std::cmp::Reverse(r.orientation.sent_at));
        self.audit(AuditEvent::OrientationsListed {
            by: caller.name.clone(),
            shown: u32::try_from(shown.len()).unwrap_or(u32::MAX),
        })
        .await?;
        Ok(shown)
    }

    /// Re-applies an orientation the log holds and the store lacks (start):
    /// one sent here is kept and queued for its member again.
    pub(super) fn replay_orientation_sent(
        &self,
        dossier: &DossierId,
        by: &UserName,
        logged: super::sealed::Logged<'_>,
    ) -> Result<bool> {
        let Some((orientation, signature)) =
            self.open_logged::<Orientation>(dossier, ORIENTATION_SLOT, logged)?
        else {
            return Ok(false);
        };
        if self.orientation(&orientation.id)?.is_some() {
            return Ok(false);
        }
        let record = OrientationRecord {
            orientation: orientation.clone(),
            signature,
            sent_by: Some(by.clone()),
            status: OrientationStatus::Sent,
            steps: Vec::new(),
        };
        self.keep_orientation(&record)?;
        self.queue_notice(
            &orientation.to,
            &Notice::Orientation {
                orientation: orientation.clone(),
                signature,
            },
        )?;
        Ok(true)
    }

    /// Re-applies a received orientation the log holds and the store lacks.
    pub(super) fn replay_orientation_received(
        &self,
        dossier: &DossierId,
        logged: super::sealed::Logged<'_>,
    ) -> Result<bool> {
        let Some((orientation, signature)) =
            self.open_logged::<Orientation>(dossier, ORIENTATION_SLOT, logged)?
        else {
            return Ok(false);
        };
        if self.orientation(&orientation.id)?.is_some() {
            return Ok(false);
        }
        self.keep_received(orientation, signature)?;
        Ok(true)
    }

    /// Re-applies a step the log holds and the store lacks; one taken here
    /// is queued for the sender again.
    pub(super) fn replay_orientation_step(
        &self,
        dossier: &DossierId,
        by: Option<&UserName>,
        logged: super::sealed::Logged<'_>,
    ) -> Result<bool> {
        let Some((step, signature)) =
            self.open_logged::<OrientationStep>(dossier, STEP_SLOT, logged)?
        else {
            return Ok(false);
        };
        let Some(record) = self.orientation(&step.id)? else {
            return Ok(false);
        };
        let sender = record.orientation.from.clone();
        if !self.keep_step(record, step.clone(), signature, by.cloned())? {
            return Ok(false);
        }
        if by.is_some() {
            self.queue_notice(&sender, &Notice::OrientationStep { step, signature })?;
        }
        Ok(true)
    }
}
