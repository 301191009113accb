//! The node's state at a glance: `maillon node status` (admins and
//! auditors), and what the metrics read at each scrape.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Caller, Node, Result, require};
use crate::audit::Integrity;
use crate::consent::{ConsentRecord, ConsentStatus};
use crate::metrics::Snapshot;
use crate::storage::Tree;
use crate::types::{MemberId, MemberStatus, Role};

/// How long the state read for one scrape serves the next ones: scrapers
/// come every 15 s or so, and counting consents reads the whole tree.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// Where a running node listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// The peer API.
    pub peer: SocketAddr,
    /// The client API.
    pub client: SocketAddr,
    /// The metrics over plain HTTP, if served.
    pub metrics: Option<SocketAddr>,
    /// The web console over HTTPS, if served.
    pub console: Option<SocketAddr>,
}

/// What one peer last told this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// The peer.
    pub member: MemberId,
    /// Its status in the roster in force.
    pub status: MemberStatus,
    /// The roster version it last told, and when (Unix seconds), if it did.
    pub told: Option<(u64, i64)>,
}

/// `maillon node status`: the start line's facts, and the node's state now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's version.
    pub version: &'static str,
    /// This member.
    pub member: MemberId,
    /// The roster version in force.
    pub roster_version: u64,
    /// Where it listens (`None` before its listeners are bound).
    pub listening: Option<Listening>,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Entries in the audit log.
    pub audit_entries: u64,
    /// Bytes of the audit log file.
    pub audit_bytes: u64,
    /// Where the check of the log stands.
    pub audit_integrity: Integrity,
    /// Whether the log takes appends.
    pub audit_appending: bool,
    /// Every other member of the roster, with what it last told.
    pub peers: Vec<PeerState>,
    /// Notices waiting in the outbox.
    pub outbox: u64,
    /// Witness alarms since start.
    pub witness_alarms: u64,
    /// Consents in force.
    pub consents_active: u64,
    /// Break-glass accesses not reviewed yet.
    pub break_glass_pending: u64,
    /// Users of the client API.
    pub users: u64,
}

impl Node {
    /// The node's metrics.
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The rate limits and caps in force.
    pub fn limits(&self) -> crate::limits::Limits {
        self.limits
    }

    /// Records where the node listens, once its listeners are bound.
    pub fn set_listening(&self, listening: Listening) {
        let _ = self.listening.set(listening);
    }

    /// Where the node listens, once bound.
    pub fn listening(&self) -> Option<Listening> {
        self.listening.get().copied()
    }

    /// `maillon node status` (admins and auditors).
    pub async fn status(&self, caller: &Caller) -> Result<NodeStatus> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        self.state().await
    }

    /// The node's state now, for whoever may see it.
    async fn state(&self) -> Result<NodeStatus> {
        let counts = self.counts().await?;
        let seen = self.roster_status_now();
        let peers = seen
            .roster
            .roster()
            .members
            .iter()
            .filter(|m| m.card.id != self.me)
            .map(|m| PeerState {
                member: m.card.id.clone(),
                status: m.status,
                told: seen.peers.get(&m.card.id).copied(),
            })
            .collect();
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION"),
            member: self.me.clone(),
            roster_version: seen.roster.roster().version,
            listening: self.listening(),
            started_at: self.started_at,
            audit_entries: self.audit.size(),
            audit_bytes: self.audit.bytes(),
            audit_integrity: self.audit.integrity(),
            audit_appending: self.audit.accepts_appends(),
            peers,
            outbox: counts.outbox,
            witness_alarms: self.witness_alarm_count(),
            consents_active: counts.consents_active,
            break_glass_pending: counts.break_glass_pending,
            users: counts.users,
        })
    }

    /// The state the metrics show: the counts that walk trees at most once
    /// per [`SNAPSHOT_TTL`], the rest read at each scrape.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut cached = self.snapshot.lock().await;
        let counts = match cached.as_ref() {
            Some((at, c)) if at.elapsed() < SNAPSHOT_TTL => *c,
            _ => {
                let c = self.counts().await?;
                *cached = Some((Instant::now(), c));
                c
            }
        };
        let seen = self.roster_status_now();
        let version = seen.roster.roster().version;
        let active: Vec<&MemberId> = seen
            .roster
            .roster()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Active && m.card.id != self.me)
            .map(|m| &m.card.id)
            .collect();
        // Not heard from since start counts as behind: not known to be current.
        let behind = active
            .iter()
            .filter(|m| seen.peers.get(**m).is_none_or(|(v, _)| *v < version))
            .count();
        Ok(Snapshot {
            audit_entries: self.audit.size(),
            audit_bytes: self.audit.bytes(),
            audit_appending: self.audit.accepts_appends(),
            witness_alarms: self.witness_alarm_count(),
            outbox: counts.outbox,
            roster_version: version,
            peers: active.len() as u64,
            peers_behind: behind as u64,
            consents_active: counts.consents_active,
            break_glass_pending: counts.break_glass_pending,
            users: counts.users,
            started_at: self.started_at,
        })
    }

    /// The metrics as text, with the state read now (or lately).
    pub async fn metrics_text(&self) -> Result<String> {
        let snapshot = self.snapshot().await?;
        Ok(self.metrics.encode(&snapshot))
    }

    /// What counting takes reading trees for, off the runtime's threads.
    async fn counts(&self) -> Result<Counts> {
        let store = self.store.clone();
        let now = self.clock.now();
        super::blocking(move || -> Result<Counts> {
            let consents_active = store
                .scan::<ConsentRecord>(Tree::Consents, "")?
                .iter()
                .filter(|(_, c)| c.status(now) == ConsentStatus::Active)
                .count() as u64;
            Ok(Counts {
                consents_active,
                break_glass_pending: super::break_glass::break_glass_accesses(&store, true)?.len()
                    as u64,
                outbox: store.count(Tree::Outbox) as u64,
                users: store.count(Tree::Users) as u64,
            })
        })
        .await
    }
}

/// Counts read from the store.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counts {
    consents_active: u64,
    break_glass_pending: u64,
    outbox: u64,
    users: u64,
}
