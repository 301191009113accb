//! One use-case function per operation: authorize, decide, apply, audit.
//!
//! The service composes the core modules (roster, consent, sharing, audit) over
//! the store. It reaches other nodes through the [`PeerNetwork`] trait, which
//! the transport implements, so that this layer never names tonic.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::clock::Clock;
use crate::consent::{
    self, Consent, ConsentRecord, ConsentStatus, Decision, DenyReason, GrantError,
};
use crate::crypto::{Context, NodeKey, Signature, sha256};
use crate::roster::{CurrentRoster, RosterMember};
use crate::sharing::{GroupChange, ShareError, ShareId, Sharing};
use crate::storage::{Store, StoreError, Tree};
use crate::types::{ConsentId, Date, DossierId, MemberId, Role, Section, UserName};

/// Largest section (bytes of JSON) a node stores or shares.
pub const MAX_SECTION: usize = 64 * 1024;
/// Largest signed read request accepted from a peer.
pub const MAX_REQUEST: usize = 16 * 1024;
/// How far a request's time may be from the owner's clock (seconds).
pub const REQUEST_WINDOW: i64 = 120;
/// How long the owner waits for one member to take a commit or a Welcome
/// while it holds the share's membership lock.
const DELIVERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);
/// Base delay before retrying to bring a member back (doubles per attempt).
const UPKEEP_RETRY_BASE: i64 = 60;
/// Least time between two fresh Welcomes a member may ask for, per share.
pub const WELCOME_REQUEST_INTERVAL: i64 = 30;
/// Longest name field of a dossier.
pub const MAX_NAME: usize = 100;

/// Errors a use case returns; the transport maps each to one gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller is not who it claims, or brought no valid credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// Policy refuses the operation.
    #[error("{0}")]
    PermissionDenied(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The input is too large.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The operation does not apply in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside the node; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(what) => {
                ServiceError::AlreadyExists(format!("{what} already exists"))
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<AuditError> for ServiceError {
    fn from(e: AuditError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<ShareError> for ServiceError {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Malformed(m) => {
                ServiceError::InvalidArgument(format!("malformed mls message: {m}"))
            }
            ShareError::Credential(m) => ServiceError::PermissionDenied(m),
            ShareError::NoGroup => {
                ServiceError::FailedPrecondition("this node is not in the share's group".into())
            }
            ShareError::NoKeyPackage => ServiceError::FailedPrecondition(
                "the welcome matches no key package of this node".into(),
            ),
            ShareError::Mls(m) => ServiceError::FailedPrecondition(format!("mls: {m}")),
            ShareError::Store(s) => s.into(),
        }
    }
}

type Result<T> = std::result::Result<T, ServiceError>;

/// A boxed future, for the object-safe [`PeerNetwork`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the service reaches other nodes' peer APIs (implemented by the transport).
pub trait PeerNetwork: Send + Sync + std::fmt::Debug {
    /// Fetches a fresh KeyPackage from `member`.
    fn fetch_key_package<'a>(&'a self, member: &'a RosterMember) -> BoxFuture<'a, Result<Vec<u8>>>;
    /// Delivers a Welcome for `share` to `member`.
    fn deliver_welcome<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        welcome: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Delivers a commit for `share` to `member`.
    fn deliver_commit<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        commit: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Asks the owner of `share` for a fresh Welcome.
    fn request_welcome<'a>(
        &'a self,
        owner: &'a RosterMember,
        share: &'a ShareId,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Sends a signed read request to the owner.
    fn read_share<'a>(
        &'a self,
        owner: &'a RosterMember,
        request: SignedBytes,
    ) -> BoxFuture<'a, Result<ReadAnswer>>;
}

/// Bytes and the signature over them.
#[derive(Clone, Debug)]
pub struct SignedBytes {
    /// The canonical JSON bytes.
    pub bytes: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

/// What an owner answers to a granted read.
#[derive(Clone, Debug)]
pub struct ReadAnswer {
    /// The section sealed in the share's MLS group.
    pub sealed: Vec<u8>,
    /// The signed receipt.
    pub receipt: SignedBytes,
}

/// A reader node's request to an owner, as signed by the reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The reading member.
    pub reader: MemberId,
    /// The user at the reader.
    pub user: UserName,
    /// That user's role.
    pub role: Role,
    /// The owner asked.
    pub owner: MemberId,
    /// The dossier.
    pub dossier: DossierId,
    /// The section.
    pub section: Section,
    /// Why.
    pub purpose: String,
    /// 128 random bits, hex.
    pub nonce: String,
    /// When the reader sent it (Unix seconds).
    pub time: i64,
}

/// The owner's signed statement that it logged and answered a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The owner.
    pub owner: MemberId,
    /// Hex SHA-256 of the signed request bytes.
    pub request: String,
    /// The owner's audit leaf index of the access.
    pub leaf: u64,
    /// When (Unix seconds).
    pub time: i64,
}

impl Receipt {
    /// Checks an owner's signed receipt: signed by `owner`'s roster key (context
    /// `maillon/v1/receipt`), naming `owner` and the request we sent.
    pub fn verify(signed: &SignedBytes, owner: &RosterMember, request_hash: &str) -> Result<Self> {
        let id = &owner.card.id;
        owner
            .card
            .signing_key
            .verify(Context::Receipt, &signed.bytes, &signed.signature)
            .map_err(|_| {
                ServiceError::FailedPrecondition(format!("the receipt from {id} does not verify"))
            })?;
        let receipt: Receipt = serde_json::from_slice(&signed.bytes).map_err(|_| {
            ServiceError::FailedPrecondition(format!("the receipt from {id} is malformed"))
        })?;
        if receipt.request != request_hash || &receipt.owner != id {
            return Err(ServiceError::FailedPrecondition(format!(
                "the receipt from {id} is for another request"
            )));
        }
        Ok(receipt)
    }
}

/// A node-local user, as stored (the token only as a hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The name.
    pub name: UserName,
    /// The role.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// When created.
    pub created_at: i64,
}

/// An authenticated client-API caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user.
    pub name: UserName,
    /// The role.
    pub role: Role,
}

/// A dossier as this node keeps it. Names never leave the node, nor reach a log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DossierRecord {
    /// The id.
    pub id: DossierId,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date.
    pub birth_date: Date,
    /// Who opened it.
    pub opened_by: UserName,
    /// When.
    pub opened_at: i64,
}

/// A section as read by a caseworker.
#[derive(Clone, Debug)]
pub struct SectionView {
    /// The owner of this copy.
    pub owner: MemberId,
    /// The JSON object.
    pub json: String,
    /// For a shared read, the owner's audit leaf of the access.
    pub receipt_leaf: Option<u64>,
}

/// What the client asks to grant.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    /// The dossier.
    pub dossier: DossierId,
    /// Sections.
    pub sections: BTreeSet<Section>,
    /// Members to share with.
    pub audience: BTreeSet<MemberId>,
    /// Why.
    pub purpose: String,
    /// Last day.
    pub until: Date,
}

/// A page of audit entries.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// `(leaf index, entry JSON)` pairs.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The log's size when read.
    pub tree_size: u64,
}

/// A new user and the token shown once.
#[derive(Clone)]
pub struct NewUser {
    /// The user.
    pub name: UserName,
    /// Its role.
    pub role: Role,
    /// The bearer token (shown once, stored hashed).
    pub token: String,
}

/// Hashes a bearer token for storage and lookup.
fn token_hash(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

/// A fresh bearer token: `mlt_` and 256 random bits.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("mlt_{}", B64URL.encode(bytes))
}

/// Stores a new user with a fresh token and logs it; `by` is `None` when
/// `maillon node init` creates the first admin.
pub async fn create_user(
    store: &Store,
    audit: &AuditLog,
    now: i64,
    by: Option<&Caller>,
    name: UserName,
    role: Role,
) -> Result<NewUser> {
    let token = new_token();
    let record = UserRecord {
        name: name.clone(),
        role,
        token_sha256: token_hash(&token),
        created_at: now,
    };
    store.insert_new(Tree::Users, name.as_str(), &record, "user")?;
    store.put(Tree::Tokens, &record.token_sha256, &name)?;
    store.flush()?;
    audit
        .append(
            now,
            AuditEvent::UserCreated {
                user: name.clone(),
                role,
                by: by.map(|c| c.name.clone()),
            },
        )
        .await?;
    Ok(NewUser { name, role, token })
}

fn require(caller: &Caller, allowed: &[Role]) -> Result<()> {
    if allowed.contains(&caller.role) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied(format!(
            "the role {} may not do this (needs {})",
            caller.role,
            allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(ServiceError::InvalidArgument(format!("{field} is empty")));
    }
    if value.len() > max {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// Checks a section body: a JSON object of at most [`MAX_SECTION`] bytes.
fn check_section_json(json: &str) -> Result<()> {
    if json.len() > MAX_SECTION {
        return Err(ServiceError::ResourceExhausted(format!(
            "section is {} bytes; the limit is {MAX_SECTION}",
            json.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(ServiceError::InvalidArgument(
            "a section is a JSON object".into(),
        )),
        Err(e) => Err(ServiceError::InvalidArgument(format!(
            "section is not valid JSON: {e}"
        ))),
    }
}

fn section_key(dossier: &DossierId, section: Section) -> String {
    format!("{dossier}/{section}")
}

fn consent_key(dossier: &DossierId, id: &ConsentId) -> String {
    format!("{dossier}/{id}")
}

/// One async lock per share group.
#[derive(Default)]
struct MembershipLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl MembershipLocks {
    fn get(&self, share: &ShareId) -> Arc<tokio::sync::RwLock<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(share.scope()).or_default().clone()
    }

    async fn change(&self, share: &ShareId) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.get(share).write_owned().await
    }

    async fn read(&self, share: &ShareId) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.get(share).read_owned().await
    }
}

/// A member to bring back into a share's group, with its retry schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Resync {
    /// Unique per mark, so that a mark set again is never taken for an old one.
    id: u64,
    share: ShareId,
    member: MemberId,
    attempts: u32,
    next_at: i64,
}

/// Everything a node knows and does. Handlers call one method per RPC.
pub struct Node {
    me: MemberId,
    key: Arc<NodeKey>,
    roster: Arc<CurrentRoster>,
    store: Store,
    audit: AuditLog,
    /// MLS groups; each group's operations are serialized inside `Sharing`.
    sharing: Sharing,
    /// Per share: membership changes and revocations (decision, commit,
    /// delivery) hold it exclusively; reads hold it shared from decision to
    /// durable log, so no answer is decided on a revoked consent or sealed in
    /// an epoch whose commit is still on its way to the members.
    membership: MembershipLocks,
    clock: Arc<dyn Clock>,
    network: Arc<dyn PeerNetwork>,
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
    /// This member.
    pub me: MemberId,
    /// The signing key.
    pub key: Arc<NodeKey>,
    /// The roster in force.
    pub roster: Arc<CurrentRoster>,
    /// The store.
    pub store: Store,
    /// The audit log.
    pub audit: AuditLog,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The way to other nodes.
    pub network: Arc<dyn PeerNetwork>,
}

impl Node {
    /// Assembles a node from its parts; logs the roster's adoption if it is new here.
    pub async fn new(parts: NodeParts) -> Result<Self> {
        let sharing = Sharing::new(parts.store.clone(), parts.me.clone(), &parts.key);
        let node = Self {
            me: parts.me,
            key: parts.key,
            roster: parts.roster,
            store: parts.store,
            audit: parts.audit,
            sharing,
            membership: MembershipLocks::default(),
            clock: parts.clock,
            network: parts.network,
        };
        let roster = node.roster.get();
        let adopted: Option<String> = node.store.get(Tree::Meta, "roster_hash")?;
        if adopted.as_deref() != Some(roster.hash_hex()) {
            node.audit(AuditEvent::RosterAdopted {
                version: roster.roster().version,
                hash: roster.hash_hex().to_owned(),
            })
            .await?;
            node.store
                .put(Tree::Meta, "roster_hash", &roster.hash_hex().to_owned())?;
            node.store.put(Tree::Meta, "roster", roster.signed())?;
            node.store.flush()?;
        }
        Ok(node)
    }

    /// This node's member id.
    pub fn member(&self) -> &MemberId {
        &self.me
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    async fn audit(&self, event: AuditEvent) -> Result<u64> {
        Ok(self.audit.append(self.clock.now(), event).await?)
    }

    // ----- users -----

    /// Creates a user (admin only); the token is returned once.
    pub async fn create_user(
        &self,
        caller: &Caller,
        name: UserName,
        role: Role,
    ) -> Result<NewUser> {
        require(caller, &[Role::Admin])?;
        create_user(
            &self.store,
            &self.audit,
            self.clock.now(),
            Some(caller),
            name,
            role,
        )
        .await
    }

    /// Removes a user (admin only, never oneself): its token stops working at once.
    pub async fn remove_user(&self, caller: &Caller, name: &UserName) -> Result<()> {
        require(caller, &[Role::Admin])?;
        if &caller.name == name {
            return Err(ServiceError::FailedPrecondition(
                "an admin cannot remove itself; another admin can".into(),
            ));
        }
        let user: UserRecord = self
            .store
            .get(Tree::Users, name.as_str())?
            .ok_or_else(|| ServiceError::NotFound(format!("no user {name} at this node")))?;
        self.store.remove(Tree::Tokens, &user.token_sha256)?;
        self.store.remove(Tree::Users, name.as_str())?;
        self.store.flush()?;
        self.audit(AuditEvent::UserRemoved {
            user: name.clone(),
            by: caller.name.clone(),
        })
        .await?;
        Ok(())
    }

    /// Resolves a bearer token to its user.
    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        let denied = || ServiceError::Unauthenticated("unknown or revoked token".into());
        if token.len() > 128 {
            return Err(denied());
        }
        let hash = token_hash(token);
        let name: UserName = self.store.get(Tree::Tokens, &hash)?.ok_or_else(denied)?;
        let user: UserRecord = self
            .store
            .get(Tree::Users, name.as_str())?
            .ok_or_else(denied)?;
        if !bool::from(user.token_sha256.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(denied());
        }
        Ok(Caller {
            name: user.name,
            role: user.role,
        })
    }

    // ----- dossiers and sections -----

    /// Opens a dossier for a person who came to this node's desk.
    pub async fn open_dossier(
        &self,
        caller: &Caller,
        given_name: &str,
        family_name: &str,
        birth_date: Date,
    ) -> Result<DossierId> {
        require(caller, &[Role::Caseworker])?;
        check_text("given name", given_name, MAX_NAME)?;
        check_text("family name", family_name, MAX_NAME)?;
        let id = DossierId::random();
        let record = DossierRecord {
            id: id.clone(),
            given_name: given_name.trim().to_owned(),
            family_name: family_name.trim().to_owned(),
            birth_date,
            opened_by: caller.name.clone(),
            opened_at: self.clock.now(),
        };
        self.store
            .insert_new(Tree::Dossiers, id.as_str(), &record, "dossier")?;
        self.store.flush()?;
        self.audit(AuditEvent::DossierOpened {
            dossier: id.clone(),
            by: caller.name.clone(),
        })
        .await?;
        Ok(id)
    }

    fn dossier(&self, id: &DossierId) -> Result<DossierRecord> {
        self.store
            .get(Tree::Dossiers, id.as_str())?
            .ok_or_else(|| ServiceError::NotFound(format!("no dossier {id} at this node")))
    }

    /// Writes this node's copy of a section.
    pub async fn put_section(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        section: Section,
        json: &str,
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        check_section_json(json)?;
        self.dossier(dossier)?;
        self.store.put(
            Tree::Sections,
            &section_key(dossier, section),
            &json.to_owned(),
        )?;
        self.store.flush()?;
        self.audit(AuditEvent::SectionWritten {
            dossier: dossier.clone(),
            section,
            by: caller.name.clone(),
        })
        .await?;
        Ok(())
    }

    fn own_section(&self, dossier: &DossierId, section: Section) -> Result<Option<String>> {
        Ok(self
            .store
            .get(Tree::Sections, &section_key(dossier, section))?)
    }

    /// Reads this node's own copy of a section.
    pub fn get_section(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        section: Section,
    ) -> Result<SectionView> {
        require(caller, &[Role::Caseworker])?;
        self.dossier(dossier)?;
        let json = self.own_section(dossier, section)?.ok_or_else(|| {
            ServiceError::NotFound(format!("no {section} section in {dossier} at this node"))
        })?;
        Ok(SectionView {
            owner: self.me.clone(),
            json,
            receipt_leaf: None,
        })
    }

    // ----- consent -----

    fn consents_of(&self, dossier: &DossierId) -> Result<Vec<ConsentRecord>> {
        Ok(self
            .store
            .scan::<ConsentRecord>(Tree::Consents, &format!("{dossier}/"))?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// Lists the consents recorded here for a dossier.
    pub fn list_consents(
        &self,
        caller: &Caller,
        dossier: &DossierId,
    ) -> Result<Vec<ConsentRecord>> {
        require(caller, &[Role::Caseworker, Role::Auditor])?;
        self.dossier(dossier)?;
        self.consents_of(dossier)
    }

    fn roster_member(&self, id: &MemberId) -> Result<RosterMember> {
        self.roster.get().active_member(id).cloned().ok_or_else(|| {
            ServiceError::FailedPrecondition(format!("{id} is not an active member"))
        })
    }

    /// Records a consent and adds its audience to the share groups.
    ///
    /// Every missing member's KeyPackage is fetched and checked first, without
    /// holding the MLS lock: if a member is unreachable or answers badly,
    /// nothing is recorded. Deliveries happen after the lock is released.
    pub async fn grant_consent(&self, caller: &Caller, req: GrantRequest) -> Result<ConsentId> {
        require(caller, &[Role::Caseworker])?;
        self.dossier(&req.dossier)?;
        let now = self.clock.now();
        let consent = Consent {
            id: ConsentId::random(),
            dossier: req.dossier.clone(),
            owner: self.me.clone(),
            sections: req.sections,
            audience: req.audience,
            purpose: req.purpose.trim().to_owned(),
            until: req.until,
            granted_by: caller.name.clone(),
            granted_at: now,
        };
        consent::check_grant(&self.roster.get(), &consent, now).map_err(|e| match e {
            GrantError::Invalid(m) => ServiceError::InvalidArgument(m),
            charter @ GrantError::Charter { .. } => {
                ServiceError::PermissionDenied(charter.to_string())
            }
        })?;

        // KeyPackages are fetched before any lock is taken: a slow member must
        // not hold up the share's readers.
        let mut missing = Vec::new();
        for section in &consent.sections {
            let share = self.share(&consent.dossier, *section);
            self.sharing.ensure_group(&share)?;
            let present: BTreeSet<MemberId> = self.sharing.members(&share)?.into_iter().collect();
            for m in consent.audience.iter().filter(|m| !present.contains(*m)) {
                missing.push((share.clone(), self.roster_member(m)?));
            }
        }
        let mut additions = Vec::new();
        for (share, member) in missing {
            let id = &member.card.id;
            let kp = self.network.fetch_key_package(&member).await.map_err(|e| {
                ServiceError::Unavailable(format!("cannot reach {id} to add it to the share: {e}"))
            })?;
            Sharing::check_key_package(&kp, id, &member.card.signing_key).map_err(|e| {
                ServiceError::FailedPrecondition(format!(
                    "{id} answered an unusable key package: {e}"
                ))
            })?;
            additions.push((share, member, kp));
        }

        // Sections are sorted, so concurrent changes take these locks in one order.
        let mut changing = Vec::new();
        for section in &consent.sections {
            changing.push(
                self.membership
                    .change(&self.share(&consent.dossier, *section))
                    .await,
            );
        }
        let record = ConsentRecord::sign(consent.clone(), &self.key);
        self.store.insert_new(
            Tree::Consents,
            &consent_key(&consent.dossier, &consent.id),
            &record,
            "consent",
        )?;
        self.store
            .put(Tree::ConsentIndex, consent.id.as_str(), &consent.dossier)?;
        self.store.flush()?;
        self.audit(AuditEvent::ConsentGranted {
            consent: consent.id.clone(),
            dossier: consent.dossier.clone(),
            sections: consent.sections.iter().copied().collect(),
            audience: consent.audience.iter().cloned().collect(),
            until: consent.until,
            by: caller.name.clone(),
        })
        .await?;

        let mut changes = Vec::new();
        for (share, member, kp) in additions {
            let added =
                self.sharing
                    .add_member(&share, &kp, &member.card.id, &member.card.signing_key)?;
            if let Some(change) = added {
                changes.push((share, member, change));
            }
        }
        // In order, each within the delivery deadline: a member added by one
        // change must have its Welcome before the next change's commit.
        for (share, member, change) in changes {
            self.publish(&share, &member.card.id, change).await?;
        }
        drop(changing);
        Ok(consent.id)
    }

    fn share(&self, dossier: &DossierId, section: Section) -> ShareId {
        ShareId {
            dossier: dossier.clone(),
            section,
            owner: self.me.clone(),
        }
    }

    /// Logs a membership change of `share`'s group, delivers its commit to the
    /// other members and, for an addition, its Welcome to `member`; returns
    /// whether `member` took the Welcome (always `true` for a removal).
    async fn publish(
        &self,
        share: &ShareId,
        member: &MemberId,
        change: GroupChange,
    ) -> Result<bool> {
        let (dossier, section, epoch) = (share.dossier.clone(), share.section, change.epoch);
        let member_id = member.clone();
        self.audit(match change.welcome {
            Some(_) => AuditEvent::GroupMemberAdded {
                dossier,
                section,
                member: member_id,
                epoch,
            },
            None => AuditEvent::GroupMemberRemoved {
                dossier,
                section,
                member: member_id,
                epoch,
            },
        })
        .await?;
        self.deliver_commit(share, &change.recipients, &change.commit)
            .await;
        let Some(welcome) = change.welcome else {
            return Ok(true);
        };
        match self.roster_member(member) {
            Ok(m) => Ok(self.deliver_welcome(&m, share, welcome).await),
            Err(_) => Ok(false),
        }
    }

    /// Sends a commit to every listed member except this node, each within
    /// [`DELIVERY_DEADLINE`]; a member that misses it is marked to be brought
    /// back with a fresh Welcome.
    async fn deliver_commit(&self, share: &ShareId, to: &[MemberId], commit: &[u8]) {
        for m in to.iter().filter(|m| **m != self.me) {
            let Ok(member) = self.roster_member(m) else {
                continue;
            };
            let delivery = self.network.deliver_commit(&member, share, commit.to_vec());
            let failed = match tokio::time::timeout(DELIVERY_DEADLINE, delivery).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".to_owned(),
            };
            tracing::warn!(member = %m, error = %failed, "commit not delivered; the member will get a fresh welcome");
            self.mark_for_resync(share, m);
        }
    }

    /// Sends a Welcome; a member that misses it is marked to be brought back.
    async fn deliver_welcome(
        &self,
        member: &RosterMember,
        share: &ShareId,
        welcome: Vec<u8>,
    ) -> bool {
        let delivery = self.network.deliver_welcome(member, share, welcome);
        let failed = match tokio::time::timeout(DELIVERY_DEADLINE, delivery).await {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        tracing::warn!(member = %member.card.id, error = %failed, "welcome not delivered; the member will get a fresh one");
        self.mark_for_resync(share, &member.card.id);
        false
    }

    fn resync_key(share: &ShareId, member: &MemberId) -> String {
        format!("resync/{}|{member}", share.scope())
    }

    /// Remembers that `member` is out of step with `share`'s group.
    fn mark_for_resync(&self, share: &ShareId, member: &MemberId) {
        let key = Self::resync_key(share, member);
        let marked = (|| -> Result<()> {
            if self.store.get::<Resync>(Tree::Meta, &key)?.is_none() {
                let mark = Resync {
                    id: self.store.next_id()?,
                    share: share.clone(),
                    member: member.clone(),
                    attempts: 0,
                    next_at: 0,
                };
                self.store.put(Tree::Meta, &key, &mark)?;
                self.store.flush()?;
            }
            Ok(())
        })();
        if let Err(e) = marked {
            tracing::error!(error = %e, "cannot remember a member to bring back");
        }
    }

    /// Upkeep: brings back every member that missed a commit or a Welcome of
    /// one of this node's groups, by removing it and adding it again from a
    /// fresh KeyPackage; returns how many were brought back. A member that
    /// cannot be reached is retried with exponential backoff; one no active
    /// consent names any more is forgotten (its removal stands).
    pub async fn resync_members(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut done = 0;
        for (key, mark) in self.store.scan::<Resync>(Tree::Meta, "resync/")? {
            if mark.next_at > now {
                continue;
            }
            match self.bring_back(&mark.share, &mark.member).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(member = %mark.member, error = %e, "member not brought back yet; will retry");
                    let attempts = mark.attempts.saturating_add(1);
                    let retry = Resync {
                        attempts,
                        next_at: now + UPKEEP_RETRY_BASE.saturating_mul(1 << attempts.min(10)),
                        ..mark.clone()
                    };
                    // Unless it was marked again meanwhile, in which case that mark stands.
                    if self.store.remove_if_unchanged(Tree::Meta, &key, &mark)? {
                        self.store.put(Tree::Meta, &key, &retry)?;
                    }
                    continue;
                }
            }
            self.store.remove_if_unchanged(Tree::Meta, &key, &mark)?;
        }
        self.store.flush()?;
        Ok(done)
    }

    /// Removes `member` from the share's group and adds it again from a fresh
    /// KeyPackage, if an active consent still names it; `false` if not.
    async fn bring_back(&self, share: &ShareId, member_id: &MemberId) -> Result<bool> {
        let entitled = |this: &Self| -> Result<bool> {
            Ok(consent::audience(
                &this.consents_of(&share.dossier)?,
                share.section,
                this.clock.now(),
            )
            .contains(member_id))
        };
        if !entitled(self)? {
            return Ok(false);
        }
        let member = self.roster_member(member_id)?;
        // Fetched before locking: a slow member must not hold up the share.
        let kp = self.network.fetch_key_package(&member).await?;
        Sharing::check_key_package(&kp, member_id, &member.card.signing_key)?;
        let changing = self.membership.change(share).await;
        if !entitled(self)? {
            return Ok(false);
        }
        let removal = self.sharing.remove_member(share, member_id)?;
        if let Some(change) = removal {
            self.publish(share, member_id, change).await?;
        }
        let addition = self
            .sharing
            .add_member(share, &kp, member_id, &member.card.signing_key)?;
        let Some(change) = addition else {
            return Ok(true);
        };
        let welcomed = self.publish(share, member_id, change).await?;
        drop(changing);
        if !welcomed {
            return Err(ServiceError::Unavailable(format!(
                "{member_id} did not take the fresh welcome"
            )));
        }
        self.store
            .remove(Tree::Meta, &Self::resync_key(share, member_id))?;
        self.store.flush()?;
        Ok(true)
    }

    /// Owner side: a member that cannot open this node's answers asks for a
    /// fresh Welcome. Granted to members an active consent names, at most once
    /// per [`WELCOME_REQUEST_INTERVAL`] per share.
    pub async fn resend_welcome(
        &self,
        peer: &MemberId,
        dossier: &str,
        section: &str,
    ) -> Result<u64> {
        let share = ShareId {
            owner: self.me.clone(),
            ..self.share_from_owner(peer, dossier, section)?
        };
        let entitled = consent::audience(
            &self.consents_of(&share.dossier)?,
            share.section,
            self.clock.now(),
        )
        .contains(peer);
        if !entitled {
            return Err(ServiceError::PermissionDenied(format!(
                "no active consent names {peer} for this share"
            )));
        }
        let now = self.clock.now();
        let key = format!("welcome-request/{}|{peer}", share.scope());
        if let Some(last) = self.store.get::<i64>(Tree::Meta, &key)?
            && now - last < WELCOME_REQUEST_INTERVAL
        {
            return Err(ServiceError::ResourceExhausted(format!(
                "a fresh welcome was sent less than {WELCOME_REQUEST_INTERVAL} s ago"
            )));
        }
        self.store.put(Tree::Meta, &key, &now)?;
        self.bring_back(&share, peer).await?;
        Ok(self.sharing.epoch(&share)?)
    }

    /// Revokes a consent and removes members who lost access from the share groups.
    pub async fn revoke_consent(&self, caller: &Caller, id: &ConsentId) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        let dossier: DossierId = self
            .store
            .get(Tree::ConsentIndex, id.as_str())?
            .ok_or_else(|| ServiceError::NotFound(format!("no consent {id} at this node")))?;
        let key = consent_key(&dossier, id);
        let mut record: ConsentRecord = self
            .store
            .get(Tree::Consents, &key)?
            .ok_or_else(|| ServiceError::NotFound(format!("no consent {id} at this node")))?;
        if record.revoked_at.is_some() {
            return Err(ServiceError::FailedPrecondition(format!(
                "consent {id} is already revoked"
            )));
        }
        // Once the revocation is written no read can be answered on the old
        // decision: reads decide and log under the shared lock.
        let mut changing = Vec::new();
        for section in &record.consent.sections {
            changing.push(
                self.membership
                    .change(&self.share(&dossier, *section))
                    .await,
            );
        }
        let now = self.clock.now();
        record.revoked_at = Some(now);
        record.revoked_by = Some(caller.name.clone());
        self.store.put(Tree::Consents, &key, &record)?;
        self.store.flush()?;
        self.audit(AuditEvent::ConsentRevoked {
            consent: id.clone(),
            dossier: dossier.clone(),
            by: caller.name.clone(),
        })
        .await?;
        drop(changing);
        // Policy already refuses; if the groups cannot be updated now, upkeep retries.
        self.close_consent(&key, &record, now).await
    }

    /// Removes from the groups of a revoked or expired consent's sections the
    /// members no active consent names any more, then marks it closed.
    async fn close_consent(&self, key: &str, record: &ConsentRecord, now: i64) -> Result<()> {
        self.sync_groups(&record.consent.dossier, &record.consent.sections, now)
            .await?;
        self.store
            .put(Tree::Meta, &format!("closed/{key}"), &true)?;
        self.store.flush()?;
        Ok(())
    }

    /// Removes from each share group the members no active consent names any
    /// more. The MLS lock is released before commits are delivered.
    async fn sync_groups(
        &self,
        dossier: &DossierId,
        sections: &BTreeSet<Section>,
        now: i64,
    ) -> Result<()> {
        for section in sections {
            let share = self.share(dossier, *section);
            let _changing = self.membership.change(&share).await;
            if !self.sharing.has_group(&share)? {
                continue;
            }
            let consents = self.consents_of(dossier)?;
            let mut removals = Vec::new();
            let keep = consent::audience(&consents, *section, now);
            for m in self.sharing.members(&share)? {
                if m == self.me || keep.contains(&m) {
                    continue;
                }
                if let Some(change) = self.sharing.remove_member(&share, &m)? {
                    removals.push((m, change));
                }
            }
            for (member, change) in removals {
                self.publish(&share, &member, change).await?;
            }
        }
        Ok(())
    }

    /// Upkeep: closes every revoked or expired consent whose groups were not
    /// updated yet, going on past failures; returns how many were closed.
    pub async fn close_inactive_consents(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut closed = 0;
        for (key, record) in self.store.scan::<ConsentRecord>(Tree::Consents, "")? {
            if record.status(now) == ConsentStatus::Active
                || self
                    .store
                    .get::<bool>(Tree::Meta, &format!("closed/{key}"))?
                    .is_some()
            {
                continue;
            }
            match self.close_consent(&key, &record, now).await {
                Ok(()) => closed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "closing an inactive consent failed; will retry")
                }
            }
        }
        Ok(closed)
    }

    // ----- reading shares -----

    /// Reader side: asks `owner` for a section, opens the answer, logs the receipt.
    pub async fn read_share(
        &self,
        caller: &Caller,
        owner: &MemberId,
        dossier: &DossierId,
        section: Section,
        purpose: &str,
    ) -> Result<SectionView> {
        require(caller, &[Role::Caseworker])?;
        check_text("purpose", purpose, consent::MAX_PURPOSE)?;
        if owner == &self.me {
            return Err(ServiceError::InvalidArgument(
                "this node owns the section: read it with GetSection".into(),
            ));
        }
        let owner_member = self
            .roster
            .get()
            .active_member(owner)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("{owner} is not an active member")))?;
        let share = ShareId {
            dossier: dossier.clone(),
            section,
            owner: owner.clone(),
        };
        let first = match self
            .read_once(caller, &owner_member, &share, purpose)
            .await?
        {
            Ok(view) => return Ok(view),
            Err(e) => e,
        };
        // This node missed a commit or a Welcome: ask the owner for a fresh
        // Welcome, then read again, once.
        tracing::info!(owner = %owner, error = %first, "cannot open the owner's answer; asking for a fresh welcome");
        self.network
            .request_welcome(&owner_member, &share)
            .await
            .map_err(|e| {
                ServiceError::FailedPrecondition(format!(
                    "cannot open the answer from {owner} ({first}), and no fresh welcome: {e}"
                ))
            })?;
        self.read_once(caller, &owner_member, &share, purpose)
            .await?
            .map_err(|e| {
                ServiceError::FailedPrecondition(format!(
                    "cannot open the answer from {owner}: {e}"
                ))
            })
    }

    /// One signed request to the owner: the outer error is a refusal or a
    /// failure to reach it; the inner one, an answer this node cannot open.
    async fn read_once(
        &self,
        caller: &Caller,
        owner_member: &RosterMember,
        share: &ShareId,
        purpose: &str,
    ) -> Result<std::result::Result<SectionView, ShareError>> {
        let owner = &owner_member.card.id;
        let nonce: [u8; 16] = rand::random();
        let request = ReadRequest {
            reader: self.me.clone(),
            user: caller.name.clone(),
            role: caller.role,
            owner: owner.clone(),
            dossier: share.dossier.clone(),
            section: share.section,
            purpose: purpose.to_owned(),
            nonce: hex::encode(nonce),
            time: self.clock.now(),
        };
        let bytes =
            serde_json::to_vec(&request).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let signature = self.key.sign(Context::Request, &bytes);
        let request_hash = hex::encode(sha256(&bytes));
        let answer = self
            .network
            .read_share(owner_member, SignedBytes { bytes, signature })
            .await?;

        let receipt = Receipt::verify(&answer.receipt, owner_member, &request_hash)?;
        // The owner logged the access: the receipt is logged whatever happens
        // to the answer. Opening runs while the append waits for its sync; the
        // section is shown only once the receipt is durable.
        let logged = self.audit(AuditEvent::ReceiptLogged {
            owner: owner.clone(),
            user: caller.name.clone(),
            dossier: share.dossier.clone(),
            section: share.section,
            request: request_hash,
            owner_leaf: receipt.leaf,
        });
        let opened = async {
            self.sharing
                .open(share, &answer.sealed, &owner_member.card.signing_key)
        };
        let (logged, opened) = tokio::join!(logged, opened);
        logged?;
        let plaintext = match opened {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let json = String::from_utf8(plaintext).map_err(|_| {
            ServiceError::FailedPrecondition(format!("the section from {owner} is not UTF-8"))
        })?;
        Ok(Ok(SectionView {
            owner: owner.clone(),
            json,
            receipt_leaf: Some(receipt.leaf),
        }))
    }

    /// Owner side: checks a signed read request, logs it durably, answers sealed.
    pub async fn answer_read(&self, peer: &MemberId, signed: SignedBytes) -> Result<ReadAnswer> {
        if signed.bytes.len() > MAX_REQUEST {
            return Err(ServiceError::ResourceExhausted(format!(
                "read request is larger than {MAX_REQUEST} bytes"
            )));
        }
        let req: ReadRequest = serde_json::from_slice(&signed.bytes)
            .map_err(|e| ServiceError::InvalidArgument(format!("malformed read request: {e}")))?;
        if &req.reader != peer {
            return Err(ServiceError::PermissionDenied(format!(
                "request names {} but the connection is {peer}",
                req.reader
            )));
        }
        if req.owner != self.me {
            return Err(ServiceError::InvalidArgument(format!(
                "request is for {}, not this node",
                req.owner
            )));
        }
        let reader = self
            .roster_member(peer)
            .map_err(|e| ServiceError::PermissionDenied(e.to_string()))?;
        reader
            .card
            .signing_key
            .verify(Context::Request, &signed.bytes, &signed.signature)
            .map_err(|_| {
                ServiceError::Unauthenticated("the request signature does not verify".into())
            })?;
        check_text("purpose", &req.purpose, consent::MAX_PURPOSE)?;
        let nonce_ok = req.nonce.len() == 32 && req.nonce.bytes().all(|b| b.is_ascii_hexdigit());
        if !nonce_ok {
            return Err(ServiceError::InvalidArgument(
                "nonce must be 32 hex digits".into(),
            ));
        }
        let now = self.clock.now();
        let request_hash = hex::encode(sha256(&signed.bytes));
        let deny = |reason: String| AuditEvent::ReadDenied {
            request: request_hash.clone(),
            reader: peer.clone(),
            user: req.user.clone(),
            dossier: req.dossier.clone(),
            section: req.section,
            reason,
        };
        if now.abs_diff(req.time) > REQUEST_WINDOW.unsigned_abs() {
            let reason =
                format!("request time is more than {REQUEST_WINDOW} s from the owner's clock");
            self.audit(deny(reason.clone())).await?;
            return Err(ServiceError::PermissionDenied(reason));
        }
        let nonce_key = format!("{peer}/{}", req.nonce);
        match self
            .store
            .insert_new(Tree::Nonces, &nonce_key, &req.time, "nonce")
        {
            Ok(()) => {}
            Err(StoreError::Exists(_)) => {
                let reason = "replayed request".to_owned();
                self.audit(deny(reason.clone())).await?;
                return Err(ServiceError::PermissionDenied(reason));
            }
            Err(e) => return Err(e.into()),
        }

        // Decide, seal and log under the share's shared lock: a revocation
        // (exclusive) is either entirely before this read or entirely after it.
        let share = self.share(&req.dossier, req.section);
        let reading = self.membership.read(&share).await;
        let section = self.own_section(&req.dossier, req.section)?;
        let decision = if req.role != Role::Caseworker {
            Decision::Deny(DenyReason::Role)
        } else {
            let consents = self.consents_of(&req.dossier)?;
            consent::decide_read(&self.roster.get(), &consents, peer, req.section, now)
        };
        let (consent_id, json) = match (decision, section) {
            (Decision::Allow(id), Some(json)) => (id, json),
            (Decision::Allow(_), None) => {
                let reason = DenyReason::NoSuchSection.to_string();
                self.audit(deny(reason.clone())).await?;
                return Err(ServiceError::NotFound(reason));
            }
            (Decision::Deny(reason), _) => {
                let reason = reason.to_string();
                self.audit(deny(reason.clone())).await?;
                return Err(ServiceError::PermissionDenied(reason));
            }
        };

        let sealed = self.sharing.seal(&share, json.as_bytes())?;
        // The access is durable in the log, and the sealing ratchet (with the
        // request's nonce) in the store, before anything is answered: the two
        // syncs run side by side.
        let logged = self.audit(AuditEvent::ReadGranted {
            request: request_hash.clone(),
            reader: peer.clone(),
            user: req.user.clone(),
            role: req.role,
            dossier: req.dossier.clone(),
            section: req.section,
            consent: consent_id,
            purpose: req.purpose.clone(),
        });
        let store = self.store.clone();
        let flushed = tokio::task::spawn_blocking(move || store.flush());
        let (leaf, flushed) = tokio::join!(logged, flushed);
        drop(reading);
        flushed.map_err(|e| ServiceError::Internal(e.to_string()))??;
        let leaf = leaf?;
        let receipt = Receipt {
            owner: self.me.clone(),
            request: request_hash,
            leaf,
            time: now,
        };
        let bytes =
            serde_json::to_vec(&receipt).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let signature = self.key.sign(Context::Receipt, &bytes);
        Ok(ReadAnswer {
            sealed,
            receipt: SignedBytes { bytes, signature },
        })
    }

    /// Drops remembered nonces older than the request window.
    pub fn prune_nonces(&self) -> Result<usize> {
        let horizon = self.clock.now() - 2 * REQUEST_WINDOW;
        Ok(self
            .store
            .remove_where::<i64>(Tree::Nonces, "", |t| *t < horizon)?)
    }

    // ----- peer side of MLS -----

    /// Hands a fresh KeyPackage to an active peer, usable only in its groups.
    pub async fn key_package_for(&self, peer: &MemberId) -> Result<Vec<u8>> {
        self.roster_member(peer)
            .map_err(|e| ServiceError::PermissionDenied(e.to_string()))?;
        Ok(self.sharing.new_key_package(peer)?)
    }

    fn roster_key(&self) -> impl Fn(&MemberId) -> Option<crate::crypto::PublicKey> + use<> {
        let roster = self.roster.get();
        move |m: &MemberId| roster.active_member(m).map(|r| r.card.signing_key)
    }

    fn share_from_owner(&self, peer: &MemberId, dossier: &str, section: &str) -> Result<ShareId> {
        self.roster_member(peer)
            .map_err(|e| ServiceError::PermissionDenied(e.to_string()))?;
        Ok(ShareId {
            dossier: dossier
                .parse()
                .map_err(|e| ServiceError::InvalidArgument(format!("{e}")))?,
            section: section
                .parse()
                .map_err(|e| ServiceError::InvalidArgument(format!("{e}")))?,
            owner: peer.clone(),
        })
    }

    /// Joins the share group `peer` owns, from its Welcome.
    pub async fn accept_welcome(
        &self,
        peer: &MemberId,
        dossier: &str,
        section: &str,
        welcome: &[u8],
    ) -> Result<u64> {
        let share = self.share_from_owner(peer, dossier, section)?;
        let epoch = self.sharing.join(&share, welcome, &self.roster_key())?;
        self.audit(AuditEvent::GroupJoined {
            dossier: share.dossier.clone(),
            section: share.section,
            owner: peer.clone(),
            epoch,
        })
        .await?;
        Ok(epoch)
    }

    /// Applies a commit from the owner of a share group.
    pub async fn accept_commit(
        &self,
        peer: &MemberId,
        dossier: &str,
        section: &str,
        commit: &[u8],
    ) -> Result<u64> {
        let share = self.share_from_owner(peer, dossier, section)?;
        Ok(self
            .sharing
            .apply_commit(&share, commit, &self.roster_key())?)
    }

    /// Members of a share group as this node sees it (for operators and tests).
    pub async fn share_members(&self, share: &ShareId) -> Result<Vec<MemberId>> {
        Ok(self.sharing.members(share)?)
    }

    /// Bytes of MLS state kept for a share.
    pub async fn share_state_bytes(&self, share: &ShareId) -> Result<usize> {
        Ok(self.sharing.state_bytes(share)?)
    }

    // ----- audit -----

    /// Audit entries from `from` (or the last `limit`), for auditors and admins.
    pub fn audit_entries(
        &self,
        caller: &Caller,
        from: Option<u64>,
        limit: u32,
    ) -> Result<AuditPage> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        let limit = match limit {
            0 => 50,
            l if l > 10_000 => {
                return Err(ServiceError::InvalidArgument(
                    "limit is at most 10000".into(),
                ));
            }
            l => l as usize,
        };
        let size = self.audit.size();
        let from = from.unwrap_or_else(|| size.saturating_sub(limit as u64));
        Ok(AuditPage {
            entries: self.audit.entries(from, limit)?,
            tree_size: size,
        })
    }

    /// Signs a checkpoint of the audit log.
    pub fn audit_checkpoint(&self, caller: &Caller) -> Result<(String, String)> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        let note = self.audit.checkpoint(&self.key)?;
        let vkey = crate::audit::note::verifier_key(self.audit.origin(), &self.key.public());
        Ok((note, vkey))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::MemberCard;
    use crate::types::{MemberKind, MemberStatus};

    fn owner(key: &NodeKey) -> RosterMember {
        RosterMember {
            card: MemberCard {
                id: "ccas-rodez".parse().expect("id"),
                name: "CCAS".into(),
                kind: MemberKind::Ccas,
                endpoint: "127.0.0.1:1".into(),
                signing_key: key.public(),
                tls_spki_sha256: crate::crypto::SpkiHash([0; 32]),
            },
            status: MemberStatus::Active,
            voting: true,
        }
    }

    fn signed(receipt: &Receipt, key: &NodeKey, ctx: Context) -> SignedBytes {
        let bytes = serde_json::to_vec(receipt).expect("json");
        SignedBytes {
            signature: key.sign(ctx, &bytes),
            bytes,
        }
    }

    #[test]
    fn readers_check_every_part_of_the_owners_receipt() {
        let key = NodeKey::generate();
        let member = owner(&key);
        let receipt = Receipt {
            owner: member.card.id.clone(),
            request: "ab".repeat(32),
            leaf: 7,
            time: 0,
        };
        let good = signed(&receipt, &key, Context::Receipt);
        assert_eq!(
            Receipt::verify(&good, &member, &receipt.request)
                .expect("valid")
                .leaf,
            7
        );
        // Another request's receipt.
        assert!(Receipt::verify(&good, &member, &"cd".repeat(32)).is_err());
        // Signed by another key, or in another context.
        assert!(
            Receipt::verify(
                &signed(&receipt, &NodeKey::generate(), Context::Receipt),
                &member,
                &receipt.request
            )
            .is_err()
        );
        assert!(
            Receipt::verify(
                &signed(&receipt, &key, Context::Request),
                &member,
                &receipt.request
            )
            .is_err()
        );
        // Naming another owner.
        let other = Receipt {
            owner: "cd12".parse().expect("id"),
            ..receipt.clone()
        };
        assert!(
            Receipt::verify(
                &signed(&other, &key, Context::Receipt),
                &member,
                &receipt.request
            )
            .is_err()
        );
        // Not a receipt at all, correctly signed.
        let junk = SignedBytes {
            signature: key.sign(Context::Receipt, b"{}"),
            bytes: b"{}".to_vec(),
        };
        assert!(Receipt::verify(&junk, &member, &receipt.request).is_err());
    }
}
