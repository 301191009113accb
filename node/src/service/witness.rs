//! Witnessing: every node checks every peer's log. It fetches the peer's
//! latest checkpoint, checks its signature and a consistency proof from the
//! last checkpoint it accepted of that peer, and cosigns it (C2SP
//! tlog-cosignature); the peer keeps the cosignatures and serves them with
//! its checkpoint. A peer that shows another history, a smaller tree than
//! one it signed before, a bad proof or a bad signature raises an alarm: an
//! audit entry, a counter, an error-level line, and the evidence kept.
//! Also the proofs this node serves of its own log.

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, blocking, require};
use crate::audit::merkle::{self, Hash};
use crate::audit::note::{self, Checkpoint};
use crate::audit::{AuditEvent, origin};
use crate::roster::RosterMember;
use crate::storage::Tree;
use crate::types::{MemberId, Role};

/// How often a node witnesses its peers.
pub const WITNESS_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// The most pieces of evidence kept per peer (later alarms are counted only).
pub const MAX_EVIDENCE_PER_MEMBER: usize = 16;

/// The longest proof served or taken (hashes): a tree of 2^64 leaves needs 128.
pub const MAX_PROOF: usize = 130;

/// The latest checkpoint of a peer this node accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witnessed {
    /// The peer's signed checkpoint note.
    pub checkpoint: String,
    /// Its size.
    pub size: u64,
    /// Its root, hex.
    pub root: String,
    /// When this node accepted and cosigned it (Unix seconds).
    pub at: i64,
}

/// What a node witnessed, for its auditors.
#[derive(Clone, Debug)]
pub struct WitnessView {
    /// The latest checkpoint accepted of each peer.
    pub peers: Vec<(MemberId, Witnessed)>,
    /// Every alarm, with its evidence.
    pub alarms: Vec<Evidence>,
    /// This node's latest checkpoint with the cosignatures it gathered.
    pub cosigned: String,
}

/// Which proof of a log is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    /// A leaf's inclusion in a tree.
    Inclusion,
    /// One tree extending another.
    Consistency,
}

/// A witness's latest cosignature of this node's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cosigned {
    /// The checkpoint note it cosigned, as this node signed it.
    note: String,
    /// The cosignature line.
    line: String,
}

pub use crate::audit::bundle::Evidence;

impl Node {
    /// Upkeep: witnesses every active peer once; returns how many
    /// checkpoints were accepted (alarms are kept and logged, not errors).
    /// One round at a time: a round waits for one under way.
    pub async fn witness_peers(&self) -> usize {
        let _one_round = self.witnessing.lock().await;
        let peers: Vec<RosterMember> = self
            .roster
            .get()
            .roster()
            .members
            .iter()
            .filter(|m| m.card.id != self.me && m.status == crate::types::MemberStatus::Active)
            .cloned()
            .collect();
        let rounds = peers.iter().map(|p| self.witness(p));
        futures_util::future::join_all(rounds)
            .await
            .into_iter()
            .filter(|accepted| *accepted)
            .count()
    }

    /// Every signing key `member` held in the roster versions this node
    /// keeps, the one in force first: a checkpoint it signed before or just
    /// after a rotation still verifies.
    pub(super) fn keys_held(&self, member: &RosterMember) -> Vec<crate::crypto::PublicKey> {
        let mut keys = vec![member.card.signing_key];
        let links = self
            .store
            .scan::<crate::roster::SignedRoster>(Tree::RosterChain, "")
            .unwrap_or_default();
        for (_, link) in links {
            if let Some(m) = link.roster.member(&member.card.id)
                && !keys.contains(&m.card.signing_key)
            {
                keys.push(m.card.signing_key);
            }
        }
        keys
    }

    /// Witnesses one peer; `true` if a new checkpoint was accepted. Only
    /// what the peer signed is held against it: a checkpoint that verifies
    /// under none of its keys, or a proof it does not give (busy, down),
    /// skips the round.
    async fn witness(&self, peer: &RosterMember) -> bool {
        let id = &peer.card.id;
        let within = std::time::Duration::from_secs(5);
        let fetched = tokio::time::timeout(within, self.network.get_checkpoint(peer)).await;
        let Ok(Ok(note)) = fetched else {
            return false;
        };
        let prev: Option<Witnessed> = match self.store.get(Tree::Witnessed, id.as_str()) {
            Ok(prev) => prev,
            Err(e) => {
                tracing::warn!(member = %id, error = %e, "cannot read what this node witnessed; round skipped");
                return false;
            }
        };
        let cp = self
            .keys_held(peer)
            .iter()
            .find_map(|k| Checkpoint::verify(&note, &origin(id), k).ok());
        let Some(cp) = cp else {
            tracing::warn!(member = %id, "a peer's checkpoint verifies under none of its keys; round skipped");
            return false;
        };
        if let Some(p) = &prev {
            let root = hex::encode(cp.root);
            if cp.size < p.size {
                self.alarm(
                    id,
                    ("smaller", p.size),
                    format!(
                        "it presents a tree of {} after one of {} it signed before",
                        cp.size, p.size
                    ),
                    &p.checkpoint,
                    &note,
                )
                .await;
                return false;
            }
            if cp.size == p.size {
                if root != p.root {
                    self.alarm(
                        id,
                        ("two_trees", p.size),
                        format!("it signed two different trees of {} leaves", cp.size),
                        &p.checkpoint,
                        &note,
                    )
                    .await;
                }
                return false;
            }
            let Some(old) = hex::decode(&p.root)
                .ok()
                .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            else {
                return false;
            };
            if p.size > 0 {
                let asked = self.network.get_consistency(peer, p.size, cp.size);
                let proof = match tokio::time::timeout(within, asked).await {
                    Ok(Ok(proof)) => Some(proof),
                    // A proof that is not one (a hash of another length,
                    // too many hashes) is the peer's own doing.
                    Ok(Err(ServiceError::PeerMisbehaved { .. })) => None,
                    _ => return false,
                };
                let consistent = proof.is_some_and(|proof| {
                    merkle::verify_consistency(p.size, cp.size, &old, &cp.root, &proof)
                });
                if !consistent {
                    self.alarm(
                        id,
                        ("not_extended", p.size),
                        format!(
                            "its tree of {} does not extend the tree of {} it signed before",
                            cp.size, p.size
                        ),
                        &p.checkpoint,
                        &note,
                    )
                    .await;
                    return false;
                }
            }
        }
        let now = self.clock.now();
        let witnessed = Witnessed {
            checkpoint: note.clone(),
            size: cp.size,
            root: hex::encode(cp.root),
            at: now,
        };
        let kept = self.store.put(Tree::Witnessed, id.as_str(), &witnessed);
        if let Err(e) = kept.map_err(ServiceError::from).and(self.flush().await) {
            tracing::warn!(error = %e, "cannot keep a witnessed checkpoint; not cosigned");
            return false;
        }
        let body = cp.body();
        let line = note::cosign(
            &body,
            u64::try_from(now).unwrap_or_default(),
            &origin(&self.me),
            &self.key,
        );
        let given = self.network.cosign(peer, &body, &line);
        if let Ok(Err(e)) = tokio::time::timeout(within, given).await {
            tracing::debug!(member = %id, error = %e, "cosignature not taken");
        }
        true
    }

    /// Raises an alarm about a peer, once per kind of fault and witnessed
    /// size (a peer answering new garbage at each round raises one): logged,
    /// counted, kept with the evidence, and written at error level.
    async fn alarm(
        &self,
        member: &MemberId,
        (kind, at): (&str, u64),
        reason: String,
        first: &str,
        second: &str,
    ) {
        let key = format!("{member}/{at:020}/{kind}");
        self.witness_alarms
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let known = self
            .store
            .get::<Evidence>(Tree::Evidence, &key)
            .ok()
            .flatten();
        let kept = self
            .store
            .scan::<Evidence>(Tree::Evidence, &format!("{member}/"))
            .map(|v| v.len())
            .unwrap_or(0);
        if known.is_some() || kept >= MAX_EVIDENCE_PER_MEMBER {
            // Counted, not kept again: the first pieces of evidence stand.
            return;
        }
        tracing::error!(member = %member, reason = %reason, "witness alarm: a peer's log history does not hold");
        let evidence = Evidence {
            member: member.clone(),
            reason: reason.clone(),
            at: self.clock.now(),
            first: first.to_owned(),
            second: second.to_owned(),
        };
        let event = AuditEvent::WitnessAlarm {
            member: member.clone(),
            reason,
        };
        let kept = self
            .log_then_apply(self.clock.now(), event, "alarm_logged", || {
                Ok(self.store.put(Tree::Evidence, &key, &evidence)?)
            })
            .await;
        if let Err(e) = kept {
            tracing::error!(error = %e, "a witness alarm could not be kept");
        }
    }

    /// Peer side: the checkpoint of `peer`'s log this node last witnessed.
    pub fn witnessed_of(&self, peer: &MemberId) -> Result<Option<Witnessed>> {
        self.active_peer(peer)?;
        Ok(self.store.get(Tree::Witnessed, peer.as_str())?)
    }

    /// How many witness alarms this node raised since it started (for metrics).
    pub fn witness_alarm_count(&self) -> u64 {
        self.witness_alarms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Peer side: this node's latest signed checkpoint, alone and with the
    /// cosignatures gathered for it.
    pub fn serve_checkpoint(&self, peer: &MemberId) -> Result<(String, String)> {
        self.active_peer(peer)?;
        self.latest_checkpoint()
    }

    /// This node's latest signed checkpoint, alone; and the newest of its
    /// recent checkpoints that witnesses cosigned, with their cosignatures.
    pub(super) fn latest_checkpoint(&self) -> Result<(String, String)> {
        self.checkpoint_at(None)
    }

    /// This node's signed checkpoint of `size` leaves (its latest when none,
    /// else its latest or one of its recent ones), and the newest of its
    /// checkpoints no larger that witnesses cosigned, with their
    /// cosignatures (the checkpoint alone when none was).
    pub(super) fn checkpoint_at(&self, size: Option<u64>) -> Result<(String, String)> {
        let latest = self.audit.latest_checkpoint()?;
        let note = match size {
            None => latest,
            Some(n) => std::iter::once(latest)
                .chain(self.audit.recent_checkpoints())
                .find(|c| Checkpoint::parse_body(c).is_some_and(|cp| cp.size == n))
                .ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "no recent checkpoint of this node covers {n} entries; ask again from the first page"
                    ))
                })?,
        };
        let bound = Checkpoint::parse_body(&note).map_or(0, |cp| cp.size);
        let mut by_note: std::collections::BTreeMap<(u64, String), Vec<String>> =
            Default::default();
        for (_, c) in self.store.scan::<Cosigned>(Tree::Cosignatures, "")? {
            let size = Checkpoint::parse_body(&c.note).map_or(0, |cp| cp.size);
            if size <= bound {
                by_note.entry((size, c.note)).or_default().push(c.line);
            }
        }
        let cosigned = match by_note.into_iter().next_back() {
            Some(((_, signed), lines)) => {
                let mut out = signed;
                for line in lines {
                    out.push_str(&line);
                    out.push('\n');
                }
                out
            }
            None => note.clone(),
        };
        Ok((note, cosigned))
    }

    /// Peer side: a witness's cosignature of one of this node's recent
    /// checkpoints (the last ones it signed, compared by body: no tree is
    /// recomputed for a peer), checked against the witness's roster key,
    /// kept as that witness's latest.
    pub fn take_cosignature(&self, peer: &MemberId, body: &str, line: &str) -> Result<()> {
        let member = self.roster_member(peer)?;
        note::verify_cosignature(line, body, &origin(peer), &member.card.signing_key)
            .map_err(|e| ServiceError::Invalid(format!("cosignature: {e}")))?;
        let Some(signed) = self
            .audit
            .recent_checkpoints()
            .into_iter()
            .find(|n| n.starts_with(body) && n.as_bytes().get(body.len()) == Some(&b'\n'))
        else {
            return Err(ServiceError::Invalid(
                "not one of this log's recent checkpoints".into(),
            ));
        };
        let kept = Cosigned {
            note: signed,
            line: line.to_owned(),
        };
        self.store.put(Tree::Cosignatures, peer.as_str(), &kept)?;
        Ok(())
    }

    /// Peer side: a proof of this node's log, for any active member.
    pub async fn serve_proof(
        &self,
        peer: &MemberId,
        kind: ProofKind,
        first: u64,
        size: u64,
    ) -> Result<Vec<Hash>> {
        self.active_peer(peer)?;
        self.proof(kind, first, size).await
    }

    /// A proof of this node's log for its own auditors (and admin).
    pub async fn audit_proof(
        &self,
        caller: &Caller,
        kind: ProofKind,
        first: u64,
        size: u64,
    ) -> Result<Vec<Hash>> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        self.proof(kind, first, size).await
    }

    /// Inclusion of leaf `first` in the tree of `size`, or consistency from
    /// `first` to `size`, computed on the blocking pool.
    async fn proof(&self, kind: ProofKind, first: u64, size: u64) -> Result<Vec<Hash>> {
        let audit = self.audit.clone();
        blocking(move || match kind {
            ProofKind::Inclusion => audit.inclusion_proof(first, size),
            ProofKind::Consistency => audit.consistency_proof(first, size),
        })
        .await
    }

    /// `audit witness`: what this node witnessed of each peer, every alarm
    /// with its evidence, and its own checkpoint with its cosignatures.
    pub fn audit_witness(&self, caller: &Caller) -> Result<WitnessView> {
        require(caller, &[Role::Auditor])?;
        Ok(WitnessView {
            peers: self.witnessed()?,
            alarms: self.alarms()?,
            cosigned: self.latest_checkpoint()?.1,
        })
    }

    /// The latest checkpoint this node accepted of each peer.
    pub(super) fn witnessed(&self) -> Result<Vec<(MemberId, Witnessed)>> {
        Ok(self
            .store
            .scan::<Witnessed>(Tree::Witnessed, "")?
            .into_iter()
            .filter_map(|(id, w)| Some((id.parse().ok()?, w)))
            .collect())
    }

    /// Every alarm this node raised, with its evidence.
    pub(super) fn alarms(&self) -> Result<Vec<Evidence>> {
        Ok(self
            .store
            .scan::<Evidence>(Tree::Evidence, "")?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }
}
