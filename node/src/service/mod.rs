//! One use-case function per operation: authorize, decide, log, apply.
//!
//! The service composes the core modules (roster, consent, sharing, audit,
//! protocol) over the store. It reaches other nodes through the
//! [`PeerNetwork`] trait, which the transport implements, so that this layer
//! never names tonic. One file per use case, one `impl Node` block in each:
//! `users`, `dossiers`, `consents`, `membership` (MLS groups the owner runs),
//! `reads` (both sides of a consented read), `mls_peer` (the member side of
//! MLS), `audit_pages`, and `replay` (what the log holds and the store lacks).
//!
//! **The log comes first.** A change that takes effect (a consent, a
//! revocation, a user removed) is durable in the audit log before the store
//! is touched, and [`Node::new`] re-applies at start what the log holds and
//! the store lacks: for these records the store is a cache of the log.

mod alerts;
mod audit_pages;
mod auditors;
mod backup;
mod break_glass;
mod census;
mod closing;
mod commissions;
mod consents;
mod console;
mod dossiers;
mod error;
mod governance;
mod indicators;
mod membership;
mod mls_peer;
mod network;
mod nonces;
mod orientations;
mod outbox;
mod reached;
mod reads;
mod referent;
mod replay;
mod sealed;
mod search;
mod status;
mod users;
mod verification;
mod witness;

use std::sync::Arc;

pub use alerts::{AlertsView, RaisedAlert, ReceivedAlert};
pub use audit_pages::{
    AuditFilter, AuditMatches, AuditPage, MAX_PAGE_BYTES, ON_DEMAND_CHECKPOINT, SEARCH_BUDGET,
};
pub use auditors::{DossierPart, Holding, LeafPage, MAX_LEAVES_PAGE, ProvenEntry};
pub use backup::{
    BACKUP_FORMAT, BackupManifest, RESTORED_MARKER, Sources, dump_file, dump_store, read_keys,
    write_archive,
};
pub use break_glass::{BreakGlassGrant, MIN_REVIEW_COMMENT, Review};
pub use census::{AidMatch, AidsMatch, CENSUS_PAGE, MAX_SERVICES_PER_MEMBER};
pub use commissions::CommissionRecord;
pub use consents::GrantRequest;
pub use console::{
    CONSOLE_LINK_SECONDS, ConsoleSession, SESSION_IDLE_SECONDS, SESSION_MAX_SECONDS,
};
pub use dossiers::{
    Closure, DossierRecord, DossierView, Identity, MAX_NAME, SectionRecord, SectionView,
    VIEW_SOURCE_DEADLINE, ViewedSection,
};
pub use error::{ErrorKind, Result, ServiceError};
pub use governance::{
    MAX_CHAIN_LINKS, MAX_OPEN_PROPOSALS_PER_MEMBER, OfferOutcome, Proposal, ProposalView,
    RosterStatus, chain_key,
};
pub use indicators::INDICATORS_FRESH;
pub use mls_peer::WELCOME_REQUEST_INTERVAL;
pub use network::{BoxFuture, PeerNetwork};
pub use nonces::NONCE_BUCKET;
pub use orientations::{Direction, OrientationRecord, StepRecord};
pub use outbox::{
    FINAL_ATTEMPTS, OUTBOX_RETRY_BASE, OUTBOX_RETRY_MAX, OUTBOX_ROUND, OutboxItem, Waiting,
};
pub use reads::REQUEST_WINDOW;
pub use referent::{FRESHNESS_DEADLINE, PartnerFreshness, Referent};
pub use search::{DossierPage, DossierSummary, MAX_SEARCH_RESULTS, MAX_SEARCH_TEXT};
pub use status::{Listening, NodeStatus, PeerState};
pub use users::{Caller, DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, NewUser, UserRecord, create_user};
pub use witness::{Evidence, MAX_PROOF, ProofKind, WITNESS_PERIOD, WitnessView, Witnessed};

use crate::audit::{AuditEvent, AuditLog};
use crate::clock::Clock;
use crate::consent::ConsentRecord;
use crate::crypto::NodeKey;
use crate::locks::KeyedLocks;
use crate::roster::{CurrentRoster, RosterMember};
use crate::sharing::{ShareId, Sharing};
use crate::storage::{Store, Tree};
use crate::types::{DossierId, MemberId, Role, Section};

/// Largest section (bytes of JSON) a node stores or shares.
pub const MAX_SECTION: usize = 64 * 1024;

/// Everything a node knows and does. Handlers call one method per RPC.
pub struct Node {
    me: MemberId,
    key: Arc<NodeKey>,
    /// The genesis this node started from: what the auditors' checks in
    /// the console verify the roster chain from.
    genesis: crate::roster::SignedRoster,
    roster: Arc<CurrentRoster>,
    store: Store,
    /// The per-dossier keys of what the store keeps sealed at rest.
    vault: crate::crypto::DossierKeys,
    /// Shared with the blocking pool, where its file I/O runs.
    audit: Arc<AuditLog>,
    /// MLS groups; each group's operations are serialized inside `Sharing`.
    sharing: Arc<Sharing>,
    /// Per share: membership changes and revocations (decision, commit,
    /// delivery) hold it exclusively; reads hold it shared from decision to
    /// durable log, so no answer is decided on a revoked consent or sealed in
    /// an epoch whose commit is still on its way to the members.
    membership: KeyedLocks<tokio::sync::RwLock<()>>,
    /// Held shared by every change from its log entry to its store write,
    /// and exclusively while the replay watermark moves (see `replay`).
    changes: tokio::sync::RwLock<()>,
    /// Set when a change was logged but could not be applied: the next
    /// upkeep round replays the log instead of moving the mark past it.
    replay_needed: std::sync::atomic::AtomicBool,
    /// Set when the node is stopping: upkeep finishes the item it is on
    /// (a membership change is never cut between its commit and its
    /// delivery) and takes no new one.
    stopping: std::sync::atomic::AtomicBool,
    /// Serializes roster changes at this node: proposals, merges, adoptions.
    governance: tokio::sync::Mutex<()>,
    /// Serializes changes of users (creation, rotation, removal): each is
    /// checked, logged and applied before the next is checked, so the store
    /// ends as the log's order says.
    users: tokio::sync::Mutex<()>,
    /// The last refusals of roster versions logged, by peer, hash and reason.
    recent_refusals: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Set while a catch-up from a peer runs.
    catching_up: std::sync::atomic::AtomicBool,
    /// The pin of the TLS certificate this node presents.
    tls_pin: crate::crypto::SpkiHash,
    /// Where a staged signing key would be.
    staged_key: Option<std::path::PathBuf>,
    /// The node folder (what a backup archives), if the node has one.
    dir: Option<std::path::PathBuf>,
    /// Set once the roster in force lists keys for this node other than the
    /// ones it runs with: the node must start again to put them in force.
    keys_rotated: tokio::sync::watch::Sender<bool>,
    /// The roster version each peer last told, and when.
    peer_versions: std::sync::Mutex<std::collections::BTreeMap<MemberId, (u64, i64)>>,
    clock: Arc<dyn Clock>,
    network: Arc<dyn PeerNetwork>,
    /// Witness alarms raised since start.
    witness_alarms: std::sync::atomic::AtomicU64,
    /// Held through a witness round: two rounds at once could hold a
    /// checkpoint fetched by one against a larger one the other just
    /// accepted, and raise a false alarm.
    witnessing: tokio::sync::Mutex<()>,
    /// When a checkpoint was last signed because someone asked (auditors'
    /// queries, peers' first pages): at most one per [`ON_DEMAND_CHECKPOINT`].
    on_demand: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The read requests' nonces seen lately (rebuilt from the log at start).
    nonces: std::sync::Mutex<nonces::Nonces>,
    /// The node's metrics (calls, limits, the audit log's appends).
    metrics: Arc<crate::metrics::Metrics>,
    /// The rate limits and caps in force.
    limits: crate::limits::Limits,
    /// Where the node listens, once its listeners are bound.
    listening: std::sync::OnceLock<status::Listening>,
    /// When the node started (Unix seconds).
    started_at: i64,
    /// One backup at a time.
    backups: tokio::sync::Mutex<()>,
    /// The web console's one-time links and sessions.
    console: std::sync::Mutex<console::ConsoleState>,
    /// Share groups each peer had this node join, counted once from the
    /// store and kept up as Welcomes come (for `limits.groups_per_peer`).
    groups_joined:
        std::sync::Mutex<std::collections::HashMap<MemberId, (usize, std::time::Instant)>>,
    /// One Welcome per peer at a time, from the cap's count to the join.
    group_cap_locks: KeyedLocks<tokio::sync::Mutex<()>>,
    /// The counts last read for the metrics (they walk trees), and when.
    snapshot: tokio::sync::Mutex<Option<(std::time::Instant, status::Counts)>>,
    /// This node's proofs that it holds dossiers, once made (a proof
    /// against a checkpoint stays true: the log only grows).
    holdings: std::sync::Mutex<std::collections::HashMap<DossierId, auditors::Holding>>,
    /// Held while the console verifies every log: one at a time.
    verifying: tokio::sync::Mutex<()>,
    /// Held while this member publishes a census entry: versions in order.
    census: tokio::sync::Mutex<()>,
    /// Held while an orientation is received or steps: one at a time.
    orientations: tokio::sync::Mutex<()>,
    /// Held while an alert is received, acknowledged or handled.
    alerts: tokio::sync::Mutex<()>,
    /// Held while a commission is closed or its messages received.
    commissions: tokio::sync::Mutex<()>,
    /// Held while a dossier is attached (its key made, then its record
    /// kept): a key is not destroyed as unused meanwhile.
    attaching: tokio::sync::Mutex<()>,
    /// This node's latest counts per period, held while counting: members
    /// asking at once wait for one count, and a count serves a minute.
    indicators: tokio::sync::Mutex<std::collections::HashMap<String, crate::indicators::Counts>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member", &self.me)
            .finish_non_exhaustive()
    }
}

/// What [`Node::new`] needs.
pub struct NodeParts {
    /// This member's id.
    pub me: MemberId,
    /// The node's signing key.
    pub key: Arc<NodeKey>,
    /// The roster in force, shared with the TLS verifiers; it holds the
    /// genesis when the node starts, and the node puts in force the last
    /// version its chain holds.
    pub roster: Arc<CurrentRoster>,
    /// The node's store.
    pub store: Store,
    /// The node's audit log.
    pub audit: AuditLog,
    /// The clock every decision reads.
    pub clock: Arc<dyn Clock>,
    /// The way to other nodes.
    pub network: Arc<dyn PeerNetwork>,
    /// The pin of the TLS certificate this node presents.
    pub tls_pin: crate::crypto::SpkiHash,
    /// Where `maillon node rotate-keys` stages a new signing key, which this
    /// node signs its own `update-member` with (proof of possession).
    pub staged_key: Option<std::path::PathBuf>,
    /// The node folder, which backups archive.
    pub dir: Option<std::path::PathBuf>,
    /// The per-dossier keys that seal sections and identities at rest.
    pub vault: crate::crypto::DossierKeys,
    /// The rate limits and caps in force.
    pub limits: crate::limits::Limits,
}

impl Node {
    /// Assembles a node from its parts: re-applies what the log holds and the
    /// store lacks, then logs the roster's adoption if it is new here.
    pub async fn new(parts: NodeParts) -> Result<Self> {
        let sharing = Arc::new(Sharing::new(
            parts.store.clone(),
            parts.me.clone(),
            &parts.key,
        ));
        let metrics = Arc::new(crate::metrics::Metrics::new(
            &parts.audit.append_latency(),
            parts.me.as_str(),
        ));
        let genesis = parts.roster.get().signed().clone();
        let node = Self {
            me: parts.me,
            key: parts.key,
            genesis,
            roster: parts.roster,
            store: parts.store,
            vault: parts.vault,
            audit: Arc::new(parts.audit),
            sharing,
            membership: KeyedLocks::default(),
            changes: tokio::sync::RwLock::new(()),
            replay_needed: std::sync::atomic::AtomicBool::new(false),
            witness_alarms: std::sync::atomic::AtomicU64::new(0),
            witnessing: tokio::sync::Mutex::new(()),
            on_demand: tokio::sync::Mutex::new(None),
            nonces: std::sync::Mutex::new(nonces::Nonces::default()),
            holdings: std::sync::Mutex::new(std::collections::HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            governance: tokio::sync::Mutex::new(()),
            users: tokio::sync::Mutex::new(()),
            peer_versions: std::sync::Mutex::new(Default::default()),
            catching_up: std::sync::atomic::AtomicBool::new(false),
            recent_refusals: std::sync::Mutex::new(Default::default()),
            tls_pin: parts.tls_pin,
            staged_key: parts.staged_key,
            dir: parts.dir,
            metrics,
            limits: parts.limits,
            listening: std::sync::OnceLock::new(),
            started_at: parts.clock.now(),
            backups: tokio::sync::Mutex::new(()),
            verifying: tokio::sync::Mutex::new(()),
            census: tokio::sync::Mutex::new(()),
            orientations: tokio::sync::Mutex::new(()),
            alerts: tokio::sync::Mutex::new(()),
            commissions: tokio::sync::Mutex::new(()),
            attaching: tokio::sync::Mutex::new(()),
            indicators: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            console: std::sync::Mutex::new(Default::default()),
            groups_joined: std::sync::Mutex::new(std::collections::HashMap::new()),
            group_cap_locks: KeyedLocks::default(),
            snapshot: tokio::sync::Mutex::new(None),
            keys_rotated: tokio::sync::watch::Sender::new(false),
            clock: parts.clock,
            network: parts.network,
        };
        let genesis = (*node.roster.get()).clone();
        node.load_chain(&genesis).await?;
        node.replay_log().await?;
        node.rebuild_nonces().await?;
        node.log_adoption_if_new().await?;
        Ok(node)
    }

    /// The roster in force.
    pub fn roster(&self) -> Arc<crate::roster::VerifiedRoster> {
        self.roster.get()
    }

    /// Whether the roster in force lists keys for this node other than the
    /// ones it runs with.
    pub fn keys_rotated_now(&self) -> bool {
        *self.keys_rotated.borrow()
    }

    /// Resolves once the roster in force lists keys for this node other than
    /// the ones it runs with (a rotation was adopted): the node then starts
    /// again, and the start puts the staged keys in force.
    pub async fn keys_rotated(&self) {
        let mut rx = self.keys_rotated.subscribe();
        let _ = rx.wait_for(|rotated| *rotated).await;
    }

    /// The member the roster in force pins `pin` to, if active: checked on
    /// every peer call, so that a suspension or a new key takes effect on
    /// connections already open.
    pub fn pinned_member(&self, pin: &crate::crypto::SpkiHash) -> Option<MemberId> {
        crate::crypto::PinLookup::member_for(&*self.roster, pin)
    }

    /// The node's clock, now (Unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// This node's member id.
    pub fn member(&self) -> &MemberId {
        &self.me
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Tells upkeep to take no new item: the node is stopping.
    pub fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the node is stopping.
    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Appends an event at the clock's time; returns its leaf once durable.
    async fn audit(&self, event: AuditEvent) -> Result<u64> {
        self.audit_at(self.clock.now(), event).await
    }

    /// Appends an event at `time`; returns its leaf once durable.
    async fn audit_at(&self, time: i64, event: AuditEvent) -> Result<u64> {
        Ok(self.audit.append(time, event).await?)
    }

    /// The log comes first: appends `event` durably, then applies the change
    /// to the store and flushes it, while the replay mark cannot move. If the
    /// change cannot be applied once its entry is durable, the next upkeep
    /// round replays the log rather than move the mark past the entry.
    /// `crash_point` names the moment in between, for the crash tests.
    async fn log_then_apply<T>(
        &self,
        time: i64,
        event: AuditEvent,
        crash_point: &str,
        apply: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let _change = self.changes.read().await;
        self.audit_at(time, event).await?;
        crate::failpoint::hit(crash_point);
        let applied = match apply() {
            Ok(value) => self.flush().await.map(|()| value),
            Err(e) => Err(e),
        };
        if applied.is_err() {
            self.replay_needed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        applied
    }

    /// Bytes of every key and value this node's store holds (its state,
    /// not sled's files).
    pub async fn store_bytes(&self) -> Result<u64> {
        let store = self.store.clone();
        blocking(move || store.state_bytes()).await
    }

    /// Flushes the store off the async workers.
    pub async fn flush(&self) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.flush()).await?;
        Ok(())
    }

    /// A peer's message as the JSON it signed, checked against the key the
    /// roster lists for `peer` in `ctx` (`what` names it in the refusal).
    fn signed_by_peer<T: serde::Serialize>(
        &self,
        peer: &MemberId,
        ctx: crate::crypto::Context,
        message: &T,
        signature: crate::crypto::Signature,
        what: &'static str,
    ) -> Result<crate::protocol::SignedBytes> {
        let key = self.roster_member(peer)?.card.signing_key;
        let signed = crate::protocol::SignedBytes {
            bytes: serde_json::to_vec(message)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            signature,
        };
        signed
            .verify(ctx, &key, what)
            .map_err(|e| ServiceError::Protocol {
                peer: peer.clone(),
                source: e,
            })?;
        Ok(signed)
    }

    /// The active roster member `id`, or [`ServiceError::NotAMember`].
    fn roster_member(&self, id: &MemberId) -> Result<RosterMember> {
        self.roster
            .get()
            .active_member(id)
            .cloned()
            .ok_or_else(|| ServiceError::NotAMember(id.clone()))
    }

    /// The share this node owns for (dossier, section).
    fn own_share(&self, dossier: &DossierId, section: Section) -> ShareId {
        ShareId {
            dossier: dossier.clone(),
            section,
            owner: self.me.clone(),
        }
    }

    /// Every consent recorded here for a dossier, as recorded.
    fn consents_of(&self, dossier: &DossierId) -> Result<Vec<ConsentRecord>> {
        Ok(self
            .store
            .scan::<ConsentRecord>(Tree::Consents, &format!("{dossier}/"))?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// The consents of a dossier as decisions read them: a member suspended
    /// or excluded after a consent was granted is no longer in its audience
    /// (reinstatement needs a new consent decision).
    fn effective_consents(&self, dossier: &DossierId) -> Result<Vec<ConsentRecord>> {
        let mut consents = self.consents_of(dossier)?;
        let mut ousted = std::collections::BTreeMap::new();
        for c in &consents {
            for m in &c.consent.audience {
                if !ousted.contains_key(m) {
                    ousted.insert(m.clone(), self.ousted_at(m)?);
                }
            }
        }
        for c in &mut consents {
            let granted = c.consent.granted_at;
            c.consent
                .audience
                .retain(|m| ousted.get(m).copied().flatten().is_none_or(|t| granted > t));
        }
        Ok(consents)
    }

    /// The members that belong in the group of (dossier, section) now: those
    /// an active consent or a break-glass access names, that are active, and
    /// that the charter lets receive the section.
    fn entitled_members(
        &self,
        dossier: &DossierId,
        section: Section,
    ) -> Result<std::collections::BTreeSet<MemberId>> {
        if self.is_closed(dossier)? {
            return Ok(Default::default());
        }
        let now = self.clock.now();
        let consents = self.effective_consents(dossier)?;
        let mut keep = crate::consent::audience(&consents, section, now);
        // A break-glass reader stays until its access ends, never in a
        // masked section.
        if !crate::consent::masked(&consents, section, now) {
            for grant in self.grants_of(dossier)? {
                if grant.opens(&grant.reader, section, now) {
                    keep.insert(grant.reader);
                }
            }
        }
        keep.retain(|m| self.may_receive(m, section));
        Ok(keep)
    }
}

/// Runs blocking work (sled flushes, MLS operations that write) on the
/// blocking pool, so that the async workers keep serving.
async fn blocking<T: Send + 'static, E: Into<ServiceError> + Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))?
        .map_err(Into::into)
}

/// Refuses a caller whose role is not one of `allowed`.
fn require(caller: &Caller, allowed: &[Role]) -> Result<()> {
    if allowed.contains(&caller.role) {
        return Ok(());
    }
    Err(ServiceError::Role {
        role: caller.role,
        needs: allowed
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
    })
}

/// Checks a short text field by [`crate::types::check_short_text`].
fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    crate::types::check_short_text(field, value, max)
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Checks a section body: a JSON object of at most [`MAX_SECTION`] bytes.
fn check_section_json(json: &str) -> Result<()> {
    if json.len() > MAX_SECTION {
        return Err(ServiceError::TooLarge {
            what: "section",
            size: json.len(),
            limit: MAX_SECTION,
        });
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(ServiceError::Invalid("a section is a JSON object".into())),
        Err(e) => Err(ServiceError::Invalid(format!(
            "section is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}
