//! The coordination commission (Brive's *commission de coordination des
//! aides*, Aveyron's coordinated answers): the dossier's référent convenes
//! partners on a dossier, with the person's consent to share given sections
//! with every one of them; each participant reads what the person allowed
//! through the ordinary consented read; the decisions (who does what by
//! when) are written into the support plan and the minutes, signed by the
//! convener's node, are logged and sent to every participant.

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::ConsentStatus;
use crate::crypto::{Context, Signature};
use crate::protocol::{
    Commission, CommissionAction, MAX_AGENDA, MAX_PARTICIPANTS, Minutes, Notice, SignedBytes,
};
use crate::storage::Tree;
use crate::types::{CommissionId, ConsentId, Date, DossierId, MemberId, Role, Section};

/// A commission as this node keeps it, convened here or elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionRecord {
    /// The convocation, as its convener signed it.
    pub commission: Commission,
    /// The convener's signature of it.
    pub signature: Signature,
    /// The minutes, once closed, with their signature.
    pub minutes: Option<(Minutes, Signature)>,
}

/// The slot a convocation is sealed in, in the log.
const CONVOCATION_SLOT: &str = "commission";
/// The slot minutes are sealed in, in the log.
const MINUTES_SLOT: &str = "minutes";

/// The support plan's action line for a decision, as the console shows it.
fn action_line(id: &CommissionId, d: &CommissionAction) -> String {
    format!(
        "{} : {} — avant le {} (commission {id})",
        d.who, d.what, d.by
    )
}

impl Node {
    fn commission(&self, id: &CommissionId) -> Result<Option<CommissionRecord>> {
        self.kept_sealed(Tree::Commissions, id.as_str())
    }

    /// Keeps `record`, sealed under its dossier's key (not flushed).
    pub(super) fn keep_commission(&self, record: &CommissionRecord) -> Result<()> {
        let c = &record.commission;
        self.keep_sealed(
            Tree::Commissions,
            c.id.as_str(),
            (&c.dossier, &c.convener, &c.participants, c.convened_at),
            record,
        )
    }

    /// `maillon commission convene` (the dossier's référent): convenes
    /// `participants` on `dossier` for `meets_on`, with `agenda`, on the
    /// person's consent naming every participant (`consent`, or else the
    /// first in force that does). Logged with the signed convocation, kept
    /// and queued for every participant in one write.
    pub async fn convene_commission(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        participants: &[MemberId],
        agenda: &str,
        meets_on: Date,
        consent: Option<&ConsentId>,
    ) -> Result<CommissionRecord> {
        require(caller, &[Role::Caseworker])?;
        if agenda.trim().is_empty() || agenda.len() > MAX_AGENDA {
            return Err(ServiceError::Invalid(format!(
                "agenda: 1 to {MAX_AGENDA} bytes"
            )));
        }
        let mut invited: Vec<MemberId> = participants.to_vec();
        invited.sort();
        invited.dedup();
        if invited.is_empty() || invited.len() > MAX_PARTICIPANTS || invited.contains(&self.me) {
            return Err(ServiceError::Invalid(format!(
                "participants: 1 to {MAX_PARTICIPANTS} other members"
            )));
        }
        for m in &invited {
            self.roster_member(m)?;
        }
        self.dossier(dossier)?;
        self.check_open(dossier)?;
        self.check_referent(
            caller,
            dossier,
            "convenes and closes a commission",
            "convening a commission",
        )?;
        let now = self.clock.now();
        let usable = |r: &crate::consent::ConsentRecord| {
            r.consent.dossier == *dossier
                && r.consent.owner == self.me
                && r.status(now) == ConsentStatus::Active
                && invited.iter().all(|m| r.consent.audience.contains(m))
        };
        let consent = match consent {
            Some(id) => self
                .consent_record(id)?
                .map(|(_, r)| r)
                .filter(usable)
                .ok_or_else(|| {
                    ServiceError::State(format!(
                        "consent {id} is not in force for {dossier}, or does not name every participant"
                    ))
                })?,
            None => self
                .consents_of(dossier)?
                .into_iter()
                .find(usable)
                .ok_or_else(|| {
                    ServiceError::State(
                        "no consent of the person in force here names every participant: record one first"
                            .into(),
                    )
                })?,
        }
        .consent;
        let commission = Commission {
            id: CommissionId::random(),
            dossier: dossier.clone(),
            convener: self.me.clone(),
            participants: invited.clone(),
            agenda: agenda.trim().to_owned(),
            meets_on,
            consent: consent.id.clone(),
            sections: consent.sections.iter().copied().collect(),
            convened_at: now,
        };
        let signed = SignedBytes::sign(&commission, Context::Commission, &self.key);
        let record = CommissionRecord {
            commission: commission.clone(),
            signature: signed.signature,
            minutes: None,
        };
        let event = AuditEvent::CommissionConvened {
            commission: commission.id.clone(),
            dossier: dossier.clone(),
            participants: invited.clone(),
            by: caller.name.clone(),
            sealed: self.seal_signed(
                dossier,
                CONVOCATION_SLOT,
                &signed.bytes,
                &signed.signature,
            )?,
            message: None,
            signature: None,
        };
        let queued = self
            .log_then_apply(now, event, "commission_logged", || {
                self.keep_commission(&record)?;
                invited
                    .iter()
                    .map(|m| {
                        self.queue_notice(
                            m,
                            &Notice::Commission {
                                commission: commission.clone(),
                                signature: signed.signature,
                            },
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        self.deliver_now(queued).await;
        Ok(record)
    }

    /// `maillon commission close` (the référent who convened it): writes
    /// each decision into the support plan (a line each, written once),
    /// then logs the minutes signed by this node, keeps them and sends them
    /// to every participant.
    pub async fn close_commission(
        &self,
        caller: &Caller,
        id: &CommissionId,
        decisions: Vec<CommissionAction>,
    ) -> Result<CommissionRecord> {
        require(caller, &[Role::Caseworker])?;
        let one_at_a_time = self.commissions.lock().await;
        let mut record = self
            .commission(id)?
            .filter(|r| r.commission.convener == self.me)
            .ok_or_else(|| ServiceError::NotFound(format!("commission {id} convened here")))?;
        if record.minutes.is_some() {
            return Err(ServiceError::State(format!("commission {id} is closed")));
        }
        let c = &record.commission;
        self.check_referent(
            caller,
            &c.dossier,
            "convenes and closes a commission",
            "closing a commission",
        )?;
        if decisions.len() > 64 {
            return Err(ServiceError::Invalid("at most 64 decisions".into()));
        }
        for d in &decisions {
            if d.what.trim().is_empty()
                || d.what.len() > 300
                || d.what.chars().any(char::is_control)
            {
                return Err(ServiceError::Invalid(
                    "a decision says what, in 1 to 300 bytes on one line".into(),
                ));
            }
            if d.who != self.me && !c.participants.contains(&d.who) {
                return Err(ServiceError::Invalid(format!(
                    "{} is neither the convener nor a participant",
                    d.who
                )));
            }
        }
        // The support plan first: its write is logged on its own, and a
        // line already there is not written twice if closing is retried.
        if !decisions.is_empty() {
            let mut plan: serde_json::Map<String, serde_json::Value> = self
                .own_section(&c.dossier, Section::SupportPlan)?
                .and_then(|s| serde_json::from_str(&s.json).ok())
                .unwrap_or_default();
            let mut lines: Vec<serde_json::Value> = plan
                .get("actions")
                .and_then(|a| a.as_array().cloned())
                .unwrap_or_default();
            for d in &decisions {
                let line = serde_json::Value::String(action_line(id, d));
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
            plan.insert("actions".into(), serde_json::Value::Array(lines));
            let json = serde_json::Value::Object(plan).to_string();
            self.put_section(caller, &c.dossier, Section::SupportPlan, &json)
                .await?;
        }
        let now = self.clock.now();
        let minutes = Minutes {
            commission: id.clone(),
            dossier: c.dossier.clone(),
            convener: self.me.clone(),
            decisions,
            closed_at: now,
        };
        let signed = SignedBytes::sign(&minutes, Context::Commission, &self.key);
        let notice = Notice::Minutes {
            minutes: minutes.clone(),
            signature: signed.signature,
        };
        if notice.to_bytes().len() > crate::protocol::MAX_NOTICE {
            return Err(ServiceError::Invalid(
                "the minutes are too long to send: fewer or shorter decisions".into(),
            ));
        }
        let event = AuditEvent::CommissionMinutes {
            commission: id.clone(),
            dossier: c.dossier.clone(),
            decisions: u32::try_from(minutes.decisions.len()).unwrap_or(u32::MAX),
            by: Some(caller.name.clone()),
            from: None,
            sealed: self.seal_signed(&c.dossier, MINUTES_SLOT, &signed.bytes, &signed.signature)?,
            message: None,
            signature: None,
        };
        let participants = c.participants.clone();
        record.minutes = Some((minutes.clone(), signed.signature));
        let queued = self
            .log_then_apply(now, event, "minutes_logged", || {
                self.keep_commission(&record)?;
                participants
                    .iter()
                    .map(|m| self.queue_notice(m, &notice))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        drop(one_at_a_time);
        self.deliver_now(queued).await;
        Ok(record)
    }

    /// Takes a convocation `peer` sends: its own commission, naming this
    /// node, signed by its roster key. Logged, then kept.
    pub(super) async fn receive_commission(
        &self,
        peer: &MemberId,
        commission: Commission,
        signature: Signature,
    ) -> Result<()> {
        if &commission.convener != peer || !commission.participants.contains(&self.me) {
            return Err(ServiceError::NotEntitled(format!(
                "a commission of {} offered by {peer}",
                commission.convener
            )));
        }
        let signed = self.taken_from_sender(
            peer,
            &commission.dossier,
            (Context::Commission, &commission, signature),
            "commission",
        )?;
        let _one_at_a_time = self.commissions.lock().await;
        if self.commission(&commission.id)?.is_some() {
            return Ok(());
        }
        let event = AuditEvent::CommissionInvited {
            commission: commission.id.clone(),
            dossier: commission.dossier.clone(),
            from: peer.clone(),
            sealed: self.seal_signed(
                &commission.dossier,
                CONVOCATION_SLOT,
                &signed.bytes,
                &signature,
            )?,
            message: None,
            signature: None,
        };
        let record = CommissionRecord {
            commission,
            signature,
            minutes: None,
        };
        self.log_then_apply(self.clock.now(), event, "commission_invited_logged", || {
            self.keep_commission(&record)
        })
        .await
    }

    /// Takes the minutes of a commission `peer` convened and this node was
    /// invited to, signed by `peer`'s roster key. Logged, then kept.
    pub(super) async fn receive_minutes(
        &self,
        peer: &MemberId,
        minutes: Minutes,
        signature: Signature,
    ) -> Result<()> {
        let signed =
            self.signed_by_peer(peer, Context::Commission, &minutes, signature, "minutes")?;
        let _one_at_a_time = self.commissions.lock().await;
        let mut record = self
            .commission(&minutes.commission)?
            .filter(|r| &r.commission.convener == peer && &minutes.convener == peer)
            .ok_or_else(|| {
                ServiceError::NotEntitled(format!(
                    "{peer} convened no commission {} with this node",
                    minutes.commission
                ))
            })?;
        if record.minutes.is_some() {
            return Ok(());
        }
        if minutes.dossier != record.commission.dossier {
            return Err(ServiceError::NotEntitled(format!(
                "minutes of commission {} about another dossier",
                minutes.commission
            )));
        }
        let event = AuditEvent::CommissionMinutes {
            commission: minutes.commission.clone(),
            dossier: minutes.dossier.clone(),
            decisions: u32::try_from(minutes.decisions.len()).unwrap_or(u32::MAX),
            by: None,
            from: Some(peer.clone()),
            sealed: self.seal_signed(&minutes.dossier, MINUTES_SLOT, &signed.bytes, &signature)?,
            message: None,
            signature: None,
        };
        record.minutes = Some((minutes, signature));
        self.log_then_apply(self.clock.now(), event, "minutes_received_logged", || {
            self.keep_commission(&record)
        })
        .await
    }

    /// `maillon commission list` (caseworkers and auditors): the
    /// commissions convened here or to which this node was invited, newest
    /// first, with their minutes. The list is logged.
    pub async fn list_commissions(&self, caller: &Caller) -> Result<Vec<CommissionRecord>> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        let all: Vec<CommissionRecord> = self.all_kept_sealed(Tree::Commissions)?;
        self.audit(AuditEvent::CommissionsListed {
            by: caller.name.clone(),
            shown: u32::try_from(all.len()).unwrap_or(u32::MAX),
        })
        .await?;
        Ok(all)
    }

    /// Re-applies what the log holds of commissions and the store lacks.
    pub(super) fn replay_commission(&self, event: &AuditEvent) -> Result<bool> {
        match event {
            AuditEvent::CommissionConvened {
                dossier,
                sealed,
                message,
                signature,
                ..
            }
            | AuditEvent::CommissionInvited {
                dossier,
                sealed,
                message,
                signature,
                ..
            } => {
                let logged = (sealed.as_str(), (message.as_deref(), signature.as_deref()));
                let Some((commission, signature)) =
                    self.open_logged::<Commission>(dossier, CONVOCATION_SLOT, logged)?
                else {
                    return Ok(false);
                };
                if self.commission(&commission.id)?.is_some() {
                    return Ok(false);
                }
                let record = CommissionRecord {
                    commission: commission.clone(),
                    signature,
                    minutes: None,
                };
                self.keep_commission(&record)?;
                if commission.convener == self.me {
                    for m in &commission.participants {
                        self.queue_notice(
                            m,
                            &Notice::Commission {
                                commission: commission.clone(),
                                signature,
                            },
                        )?;
                    }
                }
                Ok(true)
            }
            AuditEvent::CommissionMinutes {
                dossier,
                sealed,
                message,
                signature,
                ..
            } => {
                let logged = (sealed.as_str(), (message.as_deref(), signature.as_deref()));
                let Some((minutes, signature)) =
                    self.open_logged::<Minutes>(dossier, MINUTES_SLOT, logged)?
                else {
                    return Ok(false);
                };
                let Some(mut record) = self.commission(&minutes.commission)? else {
                    return Ok(false);
                };
                if record.minutes.is_some() {
                    return Ok(false);
                }
                record.minutes = Some((minutes.clone(), signature));
                self.keep_commission(&record)?;
                if minutes.convener == self.me {
                    for m in &record.commission.participants {
                        self.queue_notice(
                            m,
                            &Notice::Minutes {
                                minutes: minutes.clone(),
                                signature,
                            },
                        )?;
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
