//! Vigilance alerts: a volunteer (or a caseworker) raises an alert about
//! someone who seems isolated or in danger, to the member the charter names
//! as alert recipient (the CCAS); its caseworkers take it into account and
//! close it with an outcome. The raiser sees only that it was received and
//! taken into account. An alert carries as little as it can and is kept
//! only for the time the charter sets: then its record goes, and the key
//! that sealed its words (in the store and in the log's entry) is
//! destroyed, so the log keeps only its id, members, concern and outcome.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::crypto::{Context, Signature};
use crate::protocol::{Alert, AlertAck, MAX_ALERT_ABOUT, Notice, SignedBytes};
use crate::storage::Tree;
use crate::types::{AlertConcern, AlertId, AlertOutcome, AlertStatus, MemberId, Role, UserName};

/// The slot an alert's words are sealed in, under the alert's own key.
const SLOT: &str = "alert";

/// Longest commune name (bytes).
const MAX_PLACE: usize = 100;

/// An alert as kept where it was raised: no words (they went to the
/// recipient).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaisedAlert {
    /// Its id.
    pub id: AlertId,
    /// The recipient.
    pub to: MemberId,
    /// What worries.
    pub concern: AlertConcern,
    /// The commune.
    pub place: String,
    /// When it was raised.
    pub raised_at: i64,
    /// The user who raised it.
    pub raised_by: UserName,
    /// `raised`, `received` or `taken` (the raiser never learns more).
    pub status: AlertStatus,
    /// When it is purged.
    pub purge_at: i64,
}

/// An alert as kept at its recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedKept {
    id: AlertId,
    from: MemberId,
    concern: AlertConcern,
    received_at: i64,
    /// The signed alert, sealed under the alert's key, base64.
    sealed: String,
    status: AlertStatus,
    taken_by: Option<UserName>,
    outcome: Option<AlertOutcome>,
    closed_at: Option<i64>,
    purge_at: i64,
}

/// An alert as a caseworker of its recipient sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedAlert {
    /// The alert, as its raiser's node signed it.
    pub alert: Alert,
    /// When it came.
    pub received_at: i64,
    /// `received`, `taken` or `closed`.
    pub status: AlertStatus,
    /// Who took it into account.
    pub taken_by: Option<UserName>,
    /// How it was closed.
    pub outcome: Option<AlertOutcome>,
    /// When it was closed.
    pub closed_at: Option<i64>,
    /// When it is purged.
    pub purge_at: i64,
}

/// What `maillon alert list` shows a user.
#[derive(Clone, Debug, Default)]
pub struct AlertsView {
    /// The alerts this user raised (a volunteer's only view).
    pub raised: Vec<RaisedAlert>,
    /// The alerts received here (caseworkers of the recipient).
    pub received: Vec<ReceivedAlert>,
}

/// The signed alert as it is sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    alert: Alert,
    signature: Signature,
}

fn raised_key(id: &AlertId) -> String {
    format!("raised/{id}")
}

fn received_key(id: &AlertId) -> String {
    format!("received/{id}")
}

/// The order of the statuses the raiser learns: a later one never goes back.
fn rank(status: AlertStatus) -> u8 {
    match status {
        AlertStatus::Raised => 0,
        AlertStatus::Received => 1,
        AlertStatus::Taken | AlertStatus::Closed => 2,
    }
}

fn check_words(what: &str, text: &str, limit: usize) -> Result<()> {
    if text.trim().is_empty() {
        return Err(ServiceError::Invalid(format!("{what} is needed")));
    }
    if text.len() > limit || text.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "{what}: at most {limit} bytes on one line"
        )));
    }
    Ok(())
}

impl Node {
    /// The charter's alert recipient and the days an alert is kept.
    fn alert_rule(&self) -> Result<crate::roster::AlertRule> {
        self.roster
            .get()
            .roster()
            .charter
            .alerts
            .clone()
            .ok_or_else(|| {
                ServiceError::State(
                    "the charter names no alert recipient: the GIP sets one by vote (charter.alerts)"
                        .into(),
                )
            })
    }

    /// Seals a signed alert under a key of its own (made and synced first).
    fn seal_alert(&self, alert: &Alert, signature: Signature) -> Result<String> {
        let id = alert.id.as_str();
        self.vault.create(id)?;
        let plain = serde_json::to_vec(&Sealed {
            alert: alert.clone(),
            signature,
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(B64.encode(self.vault.seal(id, SLOT, &plain)?))
    }

    /// Opens what [`Node::seal_alert`] sealed; `None` once its key is destroyed.
    fn open_alert(&self, id: &AlertId, sealed: &str) -> Result<Option<(Alert, Signature)>> {
        let bytes = B64
            .decode(sealed)
            .map_err(|_| ServiceError::Internal(format!("alert {id}: not base64")))?;
        match self.vault.open_sealed(id.as_str(), SLOT, &bytes) {
            Ok(plain) => {
                let s: Sealed = serde_json::from_slice(&plain)
                    .map_err(|_| ServiceError::Internal(format!("alert {id}: damaged")))?;
                Ok(Some((s.alert, s.signature)))
            }
            Err(crate::crypto::CryptoError::NoDossierKey(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `maillon alert raise` (volunteers and caseworkers): an alert about
    /// someone who seems isolated or in danger, to the member the charter
    /// names (`to`, if given, must be it). Logged (its words sealed), kept
    /// and queued for the recipient in one write, then delivered at once.
    pub async fn raise_alert(
        &self,
        caller: &Caller,
        about: &str,
        place: &str,
        concern: AlertConcern,
        to: Option<&MemberId>,
    ) -> Result<RaisedAlert> {
        require(caller, &[Role::Volunteer, Role::Caseworker])?;
        check_words("about", about, MAX_ALERT_ABOUT)?;
        check_words("where", place, MAX_PLACE)?;
        let rule = self.alert_rule()?;
        if let Some(to) = to
            && *to != rule.recipient
        {
            return Err(ServiceError::NotEntitled(format!(
                "the charter names {} as alert recipient, not {to}",
                rule.recipient
            )));
        }
        if rule.recipient != self.me {
            self.roster_member(&rule.recipient)?;
        }
        let now = self.clock.now();
        let alert = Alert {
            id: AlertId::random(),
            from: self.me.clone(),
            to: rule.recipient.clone(),
            about: about.trim().to_owned(),
            place: place.trim().to_owned(),
            concern,
            raised_at: now,
        };
        let signed = SignedBytes::sign(&alert, Context::Alert, &self.key);
        let sealed = self.seal_alert(&alert, signed.signature)?;
        let local = alert.to == self.me;
        let purge_at = now.saturating_add(i64::from(rule.retention_days) * 86_400);
        let record = RaisedAlert {
            id: alert.id.clone(),
            to: alert.to.clone(),
            concern,
            place: alert.place.clone(),
            raised_at: now,
            raised_by: caller.name.clone(),
            // Raised at the recipient itself: received in the same write.
            status: if local {
                AlertStatus::Received
            } else {
                AlertStatus::Raised
            },
            purge_at,
        };
        let kept_here = local.then(|| ReceivedKept {
            id: alert.id.clone(),
            from: self.me.clone(),
            concern,
            received_at: now,
            sealed: sealed.clone(),
            status: AlertStatus::Received,
            taken_by: None,
            outcome: None,
            closed_at: None,
            purge_at,
        });
        let event = AuditEvent::AlertRaised {
            alert: alert.id.clone(),
            to: alert.to.clone(),
            concern,
            by: caller.name.clone(),
            sealed,
        };
        let queued = self
            .log_then_apply(now, event, "alert_logged", || {
                self.store
                    .put(Tree::Alerts, &raised_key(&alert.id), &record)?;
                if let Some(kept) = &kept_here {
                    self.store
                        .put(Tree::Alerts, &received_key(&alert.id), kept)?;
                    return Ok(None);
                }
                self.queue_notice(
                    &alert.to,
                    &Notice::Alert {
                        alert: alert.clone(),
                        signature: signed.signature,
                    },
                )
                .map(Some)
            })
            .await?;
        if let Some(seq) = queued {
            self.deliver_now(vec![seq]).await;
        }
        Ok(self
            .store
            .get(Tree::Alerts, &raised_key(&record.id))?
            .unwrap_or(record))
    }

    /// Takes an alert `peer` raised: from `peer`, to this node, which the
    /// charter names as alert recipient, signed by `peer`'s roster key.
    pub(super) async fn receive_alert(
        &self,
        peer: &MemberId,
        alert: Alert,
        signature: Signature,
    ) -> Result<()> {
        if &alert.from != peer || alert.to != self.me {
            return Err(ServiceError::NotEntitled(format!(
                "an alert from {} to {} offered by {peer}",
                alert.from, alert.to
            )));
        }
        self.signed_by_peer(peer, Context::Alert, &alert, signature, "alert")?;
        self.take_alert(alert, signature).await
    }

    /// Keeps an alert for this node's caseworkers, if the charter names this
    /// node as recipient: logged (sealed), kept, and acknowledged to its raiser.
    async fn take_alert(&self, alert: Alert, signature: Signature) -> Result<()> {
        let rule = self.alert_rule()?;
        if rule.recipient != self.me {
            return Err(ServiceError::NotEntitled(format!(
                "the charter names {} as alert recipient, not this member",
                rule.recipient
            )));
        }
        let one_at_a_time = self.alerts.lock().await;
        if self
            .store
            .get::<ReceivedKept>(Tree::Alerts, &received_key(&alert.id))?
            .is_some()
        {
            return Ok(());
        }
        let now = self.clock.now();
        let sealed = self.seal_alert(&alert, signature)?;
        let kept = ReceivedKept {
            id: alert.id.clone(),
            from: alert.from.clone(),
            concern: alert.concern,
            received_at: now,
            sealed: sealed.clone(),
            status: AlertStatus::Received,
            taken_by: None,
            outcome: None,
            closed_at: None,
            // The recipient's clock: a raiser's time is not trusted for it.
            purge_at: now.saturating_add(i64::from(rule.retention_days) * 86_400),
        };
        let event = AuditEvent::AlertReceived {
            alert: alert.id.clone(),
            from: alert.from.clone(),
            concern: alert.concern,
            sealed,
        };
        let queued = self
            .log_then_apply(now, event, "alert_received_logged", || {
                self.store
                    .put(Tree::Alerts, &received_key(&alert.id), &kept)?;
                self.ack_alert(&alert.id, &alert.from, AlertStatus::Received, now)
            })
            .await?;
        drop(one_at_a_time);
        if let Some(seq) = queued {
            self.deliver_now(vec![seq]).await;
        }
        Ok(())
    }

    /// Tells the raiser's member where an alert stands (not flushed): a
    /// notice, or for an alert raised here the raised record itself.
    fn ack_alert(
        &self,
        id: &AlertId,
        raiser: &MemberId,
        status: AlertStatus,
        at: i64,
    ) -> Result<Option<u64>> {
        if *raiser == self.me {
            self.note_ack(id, status)?;
            return Ok(None);
        }
        let ack = AlertAck {
            id: id.clone(),
            by: self.me.clone(),
            status,
            at,
        };
        let signed = SignedBytes::sign(&ack, Context::Alert, &self.key);
        self.queue_notice(
            raiser,
            &Notice::AlertAck {
                ack,
                signature: signed.signature,
            },
        )
        .map(Some)
    }

    /// Moves a raised alert's status forward (not flushed); `false` if it
    /// is unknown or already there.
    fn note_ack(&self, id: &AlertId, status: AlertStatus) -> Result<bool> {
        let Some(mut record) = self
            .store
            .get::<RaisedAlert>(Tree::Alerts, &raised_key(id))?
        else {
            return Ok(false);
        };
        if rank(status) <= rank(record.status) {
            return Ok(false);
        }
        record.status = if status == AlertStatus::Closed {
            AlertStatus::Taken
        } else {
            status
        };
        self.store.put(Tree::Alerts, &raised_key(id), &record)?;
        Ok(true)
    }

    /// Takes the recipient's word on an alert raised here: from the member
    /// it went to, signed by its roster key; logged, then kept.
    pub(super) async fn receive_alert_ack(
        &self,
        peer: &MemberId,
        ack: AlertAck,
        signature: Signature,
    ) -> Result<()> {
        let record = self
            .store
            .get::<RaisedAlert>(Tree::Alerts, &raised_key(&ack.id))?
            .filter(|r| &r.to == peer && &ack.by == peer)
            .ok_or_else(|| {
                ServiceError::NotEntitled(format!("{peer} was sent no alert {} from here", ack.id))
            })?;
        self.signed_by_peer(
            peer,
            Context::Alert,
            &ack,
            signature,
            "alert acknowledgement",
        )?;
        if !matches!(ack.status, AlertStatus::Received | AlertStatus::Taken)
            || rank(ack.status) <= rank(record.status)
        {
            return Ok(());
        }
        let _one_at_a_time = self.alerts.lock().await;
        let event = AuditEvent::AlertAcknowledged {
            alert: ack.id.clone(),
            status: ack.status,
            from: peer.clone(),
        };
        self.log_then_apply(self.clock.now(), event, "alert_ack_logged", || {
            self.note_ack(&ack.id, ack.status).map(drop)
        })
        .await
    }

    /// `maillon alert take` and `alert close` (caseworkers of the
    /// recipient): takes an alert received here into account, or closes it
    /// with its outcome. Logged (id, status, outcome), kept, and the raiser
    /// told it was taken into account.
    pub async fn handle_alert(
        &self,
        caller: &Caller,
        id: &AlertId,
        status: AlertStatus,
        outcome: Option<AlertOutcome>,
    ) -> Result<ReceivedAlert> {
        require(caller, &[Role::Caseworker])?;
        let one_at_a_time = self.alerts.lock().await;
        let mut kept = self
            .store
            .get::<ReceivedKept>(Tree::Alerts, &received_key(id))?
            .ok_or_else(|| ServiceError::NotFound(format!("alert {id} received here")))?;
        match (kept.status, status, outcome) {
            (AlertStatus::Received, AlertStatus::Taken, None) => {}
            (AlertStatus::Received | AlertStatus::Taken, AlertStatus::Closed, Some(_)) => {}
            (_, AlertStatus::Closed, None) => {
                return Err(ServiceError::Invalid(
                    "closing an alert says its outcome".into(),
                ));
            }
            (now, next, _) => {
                return Err(ServiceError::State(format!(
                    "alert {id} is {now}: it cannot become {next}"
                )));
            }
        }
        let now = self.clock.now();
        let first = kept.status == AlertStatus::Received;
        kept.status = status;
        if first {
            kept.taken_by = Some(caller.name.clone());
        }
        if status == AlertStatus::Closed {
            kept.outcome = outcome;
            kept.closed_at = Some(now);
        }
        let event = AuditEvent::AlertHandled {
            alert: id.clone(),
            status,
            outcome,
            by: caller.name.clone(),
        };
        let queued = self
            .log_then_apply(now, event, "alert_handled_logged", || {
                self.store.put(Tree::Alerts, &received_key(id), &kept)?;
                if first {
                    self.ack_alert(id, &kept.from, AlertStatus::Taken, now)
                } else {
                    Ok(None)
                }
            })
            .await?;
        drop(one_at_a_time);
        if let Some(seq) = queued {
            self.deliver_now(vec![seq]).await;
        }
        self.received_view(kept)?
            .ok_or_else(|| ServiceError::NotFound(format!("alert {id} received here")))
    }

    /// A received alert with its words opened; `None` once purged.
    fn received_view(&self, kept: ReceivedKept) -> Result<Option<ReceivedAlert>> {
        Ok(self
            .open_alert(&kept.id, &kept.sealed)?
            .map(|(alert, _)| ReceivedAlert {
                alert,
                received_at: kept.received_at,
                status: kept.status,
                taken_by: kept.taken_by,
                outcome: kept.outcome,
                closed_at: kept.closed_at,
                purge_at: kept.purge_at,
            }))
    }

    /// `maillon alert list`: a volunteer sees the alerts it raised and where
    /// each stands (received, taken into account); a caseworker also sees
    /// every alert received here, with its words; `status` filters. Logged.
    pub async fn list_alerts(
        &self,
        caller: &Caller,
        status: Option<AlertStatus>,
    ) -> Result<AlertsView> {
        require(caller, &[Role::Volunteer, Role::Caseworker])?;
        let mut view = AlertsView::default();
        for (_, r) in self.store.scan::<RaisedAlert>(Tree::Alerts, "raised/")? {
            if r.raised_by == caller.name && status.is_none_or(|s| s == r.status) {
                view.raised.push(r);
            }
        }
        if caller.role == Role::Caseworker {
            for (_, kept) in self.store.scan::<ReceivedKept>(Tree::Alerts, "received/")? {
                if status.is_none_or(|s| s == kept.status)
                    && let Some(alert) = self.received_view(kept)?
                {
                    view.received.push(alert);
                }
            }
        }
        view.raised.sort_by_key(|r| std::cmp::Reverse(r.raised_at));
        view.received
            .sort_by_key(|r| std::cmp::Reverse(r.alert.raised_at));
        self.audit(AuditEvent::AlertsListed {
            by: caller.name.clone(),
            shown: u32::try_from(view.raised.len() + view.received.len()).unwrap_or(u32::MAX),
        })
        .await?;
        Ok(view)
    }

    /// Upkeep: purges every alert whose time ran out (logged first, then
    /// its record removed and its key destroyed); returns how many.
    pub async fn purge_alerts(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut due: Vec<AlertId> = Vec::new();
        for (_, r) in self.store.scan::<RaisedAlert>(Tree::Alerts, "raised/")? {
            if r.purge_at <= now {
                due.push(r.id);
            }
        }
        for (_, r) in self.store.scan::<ReceivedKept>(Tree::Alerts, "received/")? {
            if r.purge_at <= now && !due.contains(&r.id) {
                due.push(r.id);
            }
        }
        for id in &due {
            let event = AuditEvent::AlertPurged { alert: id.clone() };
            self.log_then_apply(now, event, "alert_purge_logged", || self.purge_alert(id))
                .await?;
        }
        Ok(due.len())
    }

    /// Removes an alert's records and any notice still carrying its words,
    /// and destroys its key (not flushed).
    fn purge_alert(&self, id: &AlertId) -> Result<()> {
        self.store.remove(Tree::Alerts, &raised_key(id))?;
        self.store.remove(Tree::Alerts, &received_key(id))?;
        self.store.remove_where::<super::OutboxItem>(
            Tree::Outbox,
            "",
            |item| matches!(&item.notice, Notice::Alert { alert, .. } if &alert.id == id),
        )?;
        self.vault.destroy(id.as_str())?;
        Ok(())
    }

    /// Re-applies what the log holds of alerts and the store lacks (start).
    /// `at` is the entry's time: what was received, taken or closed keeps
    /// the time it happened, not the restart's.
    pub(super) fn replay_alert(&self, event: &AuditEvent, at: i64) -> Result<bool> {
        match event {
            AuditEvent::AlertRaised {
                alert: id,
                by,
                sealed,
                ..
            } => {
                if self
                    .store
                    .get::<RaisedAlert>(Tree::Alerts, &raised_key(id))?
                    .is_some()
                {
                    return Ok(false);
                }
                let Some((alert, signature)) = self.open_alert(id, sealed)? else {
                    return Ok(false);
                };
                let days = self.alert_rule().map_or(30, |r| r.retention_days);
                let record = RaisedAlert {
                    id: alert.id.clone(),
                    to: alert.to.clone(),
                    concern: alert.concern,
                    place: alert.place.clone(),
                    raised_at: alert.raised_at,
                    raised_by: by.clone(),
                    status: AlertStatus::Raised,
                    purge_at: alert.raised_at + i64::from(days) * 86_400,
                };
                let local = alert.to == self.me;
                let record = RaisedAlert {
                    status: if local {
                        AlertStatus::Received
                    } else {
                        AlertStatus::Raised
                    },
                    ..record
                };
                self.store.put(Tree::Alerts, &raised_key(id), &record)?;
                if local {
                    let kept = ReceivedKept {
                        id: id.clone(),
                        from: self.me.clone(),
                        concern: alert.concern,
                        received_at: alert.raised_at,
                        sealed: sealed.clone(),
                        status: AlertStatus::Received,
                        taken_by: None,
                        outcome: None,
                        closed_at: None,
                        purge_at: record.purge_at,
                    };
                    self.store.put(Tree::Alerts, &received_key(id), &kept)?;
                } else {
                    let to = alert.to.clone();
                    self.queue_notice(&to, &Notice::Alert { alert, signature })?;
                }
                Ok(true)
            }
            AuditEvent::AlertReceived {
                alert: id, sealed, ..
            } => {
                if self
                    .store
                    .get::<ReceivedKept>(Tree::Alerts, &received_key(id))?
                    .is_some()
                {
                    return Ok(false);
                }
                let Some((alert, _)) = self.open_alert(id, sealed)? else {
                    return Ok(false);
                };
                let days = self.alert_rule().map_or(30, |r| r.retention_days);
                let now = at;
                let kept = ReceivedKept {
                    id: id.clone(),
                    from: alert.from.clone(),
                    concern: alert.concern,
                    received_at: now,
                    sealed: sealed.clone(),
                    status: AlertStatus::Received,
                    taken_by: None,
                    outcome: None,
                    closed_at: None,
                    purge_at: now.saturating_add(i64::from(days) * 86_400),
                };
                self.store.put(Tree::Alerts, &received_key(id), &kept)?;
                self.ack_alert(id, &alert.from, AlertStatus::Received, now)?;
                Ok(true)
            }
            AuditEvent::AlertHandled {
                alert: id,
                status,
                outcome,
                by,
            } => {
                let Some(mut kept) = self
                    .store
                    .get::<ReceivedKept>(Tree::Alerts, &received_key(id))?
                else {
                    return Ok(false);
                };
                if kept.status == *status || kept.status == AlertStatus::Closed {
                    return Ok(false);
                }
                let first = kept.status == AlertStatus::Received;
                if first {
                    kept.taken_by = Some(by.clone());
                }
                kept.status = *status;
                if *status == AlertStatus::Closed {
                    kept.outcome = *outcome;
                    kept.closed_at = Some(at);
                }
                self.store.put(Tree::Alerts, &received_key(id), &kept)?;
                if first {
                    self.ack_alert(id, &kept.from, AlertStatus::Taken, at)?;
                }
                Ok(true)
            }
            AuditEvent::AlertAcknowledged {
                alert: id, status, ..
            } => self.note_ack(id, *status),
            AuditEvent::AlertPurged { alert: id } => {
                let present = self
                    .store
                    .get::<RaisedAlert>(Tree::Alerts, &raised_key(id))?
                    .is_some()
                    || self
                        .store
                        .get::<ReceivedKept>(Tree::Alerts, &received_key(id))?
                        .is_some();
                self.purge_alert(id)?;
                Ok(present)
            }
            _ => Ok(false),
        }
    }
}
