//! The outbox: notices for members that could not be reached yet, kept in
//! the store (queued in the same write as the change they tell of, so a
//! restart loses none), delivered at once when the member answers, else by
//! upkeep with a growing delay. Members out of step with an MLS group are
//! tracked beside it (`membership`'s resync marks); the admin sees both.

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, require};
use crate::protocol::Notice;
use crate::storage::Tree;
use crate::types::{MemberId, Role};

/// The first retry delay (seconds); it doubles with each failure.
pub const OUTBOX_RETRY_BASE: i64 = 5;

/// The longest retry delay (seconds).
pub const OUTBOX_RETRY_MAX: i64 = 600;

/// How long one delivery may take.
const DELIVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// How long one upkeep round may spend delivering: members that hang do not
/// hold the rest of upkeep back.
pub const OUTBOX_ROUND: std::time::Duration = std::time::Duration::from_secs(10);

/// How many refusals for good a notice gets before it is dropped.
pub const FINAL_ATTEMPTS: u32 = 5;

/// A notice waiting for its member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxItem {
    /// Its place in the outbox.
    pub seq: u64,
    /// The member it is for.
    pub to: MemberId,
    /// What it tells.
    pub notice: Notice,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not tried again before (Unix seconds).
    pub next_at: i64,
    /// When it was queued (Unix seconds).
    pub queued_at: i64,
    /// The last failure, in one line.
    pub last_error: Option<String>,
}

/// One delivery waiting, as the admin sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The member it is for.
    pub to: MemberId,
    /// `referent`, `break_glass`, or `mls_resync` (a member to bring back
    /// into a share group with a fresh Welcome).
    pub kind: String,
    /// What it is about: a dossier id, or a share's scope.
    pub about: String,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not tried again before (Unix seconds).
    pub next_at: i64,
}

fn item_key(seq: u64) -> String {
    format!("{seq:020}")
}

impl Node {
    /// Queues a notice for `to` (not flushed: the caller's change flushes
    /// it with itself); returns its place.
    pub(super) fn queue_notice(&self, to: &MemberId, notice: &Notice) -> Result<u64> {
        let seq = self.store.next_id()?;
        let item = OutboxItem {
            seq,
            to: to.clone(),
            notice: notice.clone(),
            attempts: 0,
            next_at: 0,
            queued_at: self.clock.now(),
            last_error: None,
        };
        self.store.put(Tree::Outbox, &item_key(seq), &item)?;
        Ok(seq)
    }

    /// Tries the queued notices `seqs` now, once each; what fails waits for upkeep.
    pub(super) async fn deliver_now(&self, seqs: Vec<u64>) {
        for seq in seqs {
            if let Ok(Some(item)) = self.store.get::<OutboxItem>(Tree::Outbox, &item_key(seq)) {
                self.deliver(item).await;
            }
        }
    }

    /// Delivers one item: removed once taken, else rescheduled; dropped
    /// when its member is excluded, or refused it for good several times (a
    /// refusal may be early: the member has not stored the attachment or
    /// the référent notice yet). A break-glass notice refused by a former
    /// référent's member goes to the current one.
    async fn deliver(&self, item: OutboxItem) -> bool {
        let key = item_key(item.seq);
        let excluded = self
            .roster
            .get()
            .roster()
            .member(&item.to)
            .is_none_or(|m| m.status == crate::types::MemberStatus::Excluded);
        if excluded {
            tracing::warn!(to = %item.to, kind = item.notice.kind(), "notice for a member no longer in the federation; dropped");
            let _ = self.store.remove(Tree::Outbox, &key);
            let _ = self.flush().await;
            return false;
        }
        let failed = match self.roster_member(&item.to) {
            Err(e) => e.to_string(),
            Ok(member) => {
                let sent = self.network.notify(&member, &item.notice);
                match tokio::time::timeout(DELIVERY, sent).await {
                    Ok(Ok(())) => {
                        if let Err(e) = self.store.remove(Tree::Outbox, &key) {
                            tracing::warn!(error = %e, "cannot remove a delivered notice; it will be sent again");
                        }
                        let _ = self.flush().await;
                        return true;
                    }
                    Ok(Err(e)) if is_final(&e) && self.redirect(&item) => {
                        tracing::info!(to = %item.to, error = %e, "break-glass notice sent to the current référent's member instead");
                        let _ = self.store.remove(Tree::Outbox, &key);
                        let _ = self.flush().await;
                        return false;
                    }
                    Ok(Err(e)) if is_final(&e) && item.attempts + 1 >= FINAL_ATTEMPTS => {
                        // Refused for good (it no longer holds the dossier,
                        // or is not entitled): keeping it would retry forever.
                        tracing::warn!(to = %item.to, kind = item.notice.kind(), error = %e, "notice refused by its member; dropped");
                        let _ = self.store.remove(Tree::Outbox, &key);
                        let _ = self.flush().await;
                        return false;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer in time".to_owned(),
                }
            }
        };
        let attempts = item.attempts.saturating_add(1);
        let delay = OUTBOX_RETRY_BASE
            .saturating_mul(1 << attempts.min(16))
            .min(OUTBOX_RETRY_MAX);
        tracing::info!(to = %item.to, kind = item.notice.kind(), attempts, "notice not delivered; it waits in the outbox");
        let again = OutboxItem {
            attempts,
            next_at: self.clock.now() + delay,
            last_error: Some(crate::types::escape_controls(&failed)),
            ..item
        };
        if let Err(e) = self.store.put(Tree::Outbox, &key, &again) {
            tracing::warn!(error = %e, "cannot reschedule a notice");
        }
        let _ = self.flush().await;
        false
    }

    /// Queues a break-glass notice again for the dossier's current
    /// référent's member when it is not the one the item was for; `true`
    /// if it did.
    fn redirect(&self, item: &OutboxItem) -> bool {
        if !matches!(item.notice, Notice::BreakGlass { .. }) {
            return false;
        }
        let Some(dossier) = item.notice.dossier() else {
            return false;
        };
        let Ok(Some(referent)) = self.referent(dossier) else {
            return false;
        };
        if referent.member == item.to || referent.member == self.me {
            return false;
        }
        self.queue_notice(&referent.member, &item.notice).is_ok()
    }

    /// Upkeep: delivers every queued notice whose time has come, oldest
    /// first, within [`OUTBOX_ROUND`]; returns how many were delivered.
    pub async fn deliver_outbox(&self) -> Result<usize> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let mut delivered = 0;
        for (_, item) in self.store.scan::<OutboxItem>(Tree::Outbox, "")? {
            if self.is_stopping() || started.elapsed() > OUTBOX_ROUND {
                break;
            }
            if item.next_at <= now && self.deliver(item).await {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// `maillon outbox` (admin): every delivery waiting, notices and
    /// members to bring back into share groups.
    pub fn outbox(&self, caller: &Caller) -> Result<Vec<Waiting>> {
        require(caller, &[Role::Admin])?;
        let mut waiting: Vec<Waiting> = self
            .store
            .scan::<OutboxItem>(Tree::Outbox, "")?
            .into_iter()
            .map(|(_, i)| Waiting {
                to: i.to,
                kind: i.notice.kind().into(),
                about: i.notice.about(),
                attempts: i.attempts,
                next_at: i.next_at,
            })
            .collect();
        waiting.extend(self.resync_waiting()?);
        Ok(waiting)
    }
}

/// Whether a member's answer refuses a notice for good: it is well formed
/// and was understood, but the member will never take it.
fn is_final(e: &super::ServiceError) -> bool {
    use super::ErrorKind as K;
    matches!(e.kind(), K::NotFound | K::Refused | K::Invalid | K::State)
}
