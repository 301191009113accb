//! MLS groups, one per share: mechanism, never policy. The only module that names openmls.
//!
//! For each share (dossier, section, owner) the owner runs one MLS group whose
//! members are the owner and the share's audience; the owner alone commits.
//! Each group's openmls state lives in its own small key-value snapshot: an
//! operation loads it, runs on an in-memory openmls store, and writes back
//! what it changed as one sled batch, so a crash never leaves a group
//! half-updated. A KeyPackage handed to an owner gets a snapshot of its own
//! until the matching Welcome arrives.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use openmls_traits::signatures::{Signer, SignerError};

use crate::crypto::{NodeKey, PublicKey};
use crate::locks::KeyedLocks;
use crate::storage::{Store, StoreError};
use crate::types::{DossierId, MemberId, Section};

/// The one ciphersuite Maillon uses.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Most KeyPackages handed to one owner and not yet used by a Welcome.
pub const MAX_KEY_PACKAGES: usize = 64;

/// Most groups kept decoded in memory between operations; beyond it the
/// least recently used is dropped (its state is in the store).
pub const CACHED_GROUPS: usize = 1024;

/// Messages an owner may seal, or a member open, beyond the state its store
/// holds of a group. An owner writes its sealing ratchet (flushed) once every
/// this many messages, before the next one; a group it decodes from the
/// store (after a restart, or once out of memory) first moves its ratchet
/// this many generations on, so that no generation sealed before a crash is
/// ever sealed again. A member writes what it opened as often, unflushed.
pub const SEAL_RESERVE: u32 = 128;

/// Largest MLS message accepted from a peer (bytes).
pub const MAX_MLS_MESSAGE: usize = 512 * 1024;

/// Errors from MLS group operations.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An MLS message could not be decoded.
    #[error("malformed mls message: {0}")]
    Malformed(String),
    /// An MLS message is larger than [`MAX_MLS_MESSAGE`].
    #[error("mls message is larger than {0} bytes")]
    TooLarge(usize),
    /// This node has no state for the share group.
    #[error("no group for this share at this node")]
    NoGroup,
    /// A Welcome matched none of the KeyPackages this node handed out.
    #[error("the welcome matches no key package of this node")]
    NoKeyPackage,
    /// A credential in the group or a message is not the one the roster lists.
    #[error("credential mismatch: {0}")]
    Credential(String),
    /// openmls refused the operation (wrong epoch, cannot decrypt, …).
    #[error("mls: {0}")]
    Mls(String),
}

fn mls<E: fmt::Display>(e: E) -> ShareError {
    ShareError::Mls(e.to_string())
}

/// Holds the lock of a scope (see `Sharing::lock`) until the end of the block.
macro_rules! hold {
    ($this:expr, $scope:expr) => {
        let lock = $this.lock(&$scope);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    };
}

/// Which share a group carries.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ShareId {
    /// The dossier the entry is about (its opaque id only).
    pub dossier: DossierId,
    /// Which section of the dossier.
    pub section: Section,
    /// The member that owns this copy of the section and runs the group.
    pub owner: MemberId,
}

impl ShareId {
    /// The MLS group id and storage scope: `share/<owner>/<dossier>/<section>`.
    pub fn scope(&self) -> String {
        format!("share/{}/{}/{}", self.owner, self.dossier, self.section)
    }

    /// The share a scope names, if it is one ([`ShareId::scope`] read back).
    pub fn from_scope(scope: &str) -> Option<Self> {
        let rest = scope.strip_prefix("share/")?;
        let (owner, rest) = rest.split_once('/')?;
        let (dossier, section) = rest.split_once('/')?;
        Some(Self {
            dossier: dossier.parse().ok()?,
            section: section.parse().ok()?,
            owner: owner.parse().ok()?,
        })
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} at {}", self.dossier, self.section, self.owner)
    }
}

/// Entries to write and keys to remove in a snapshot.
type SnapshotChanges = (Vec<(Vec<u8>, Vec<u8>)>, Vec<Vec<u8>>);

/// An openmls provider over one share's snapshot.
struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
    /// The snapshot as loaded, to write back only what an operation changed.
    loaded: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

impl Provider {
    fn from_snapshot(entries: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let storage = MemoryStorage::default();
        let copy = entries.clone();
        match storage.values.write() {
            Ok(mut map) => map.extend(copy),
            Err(poisoned) => poisoned.into_inner().extend(copy),
        }
        Self {
            crypto: RustCrypto::default(),
            storage,
            loaded: entries,
        }
    }

    /// What changed since loading: entries to write and keys to remove.
    fn changes(&self) -> SnapshotChanges {
        let map = match self.storage.values.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let upserts = map
            .iter()
            .filter(|(k, v)| self.loaded.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removals = self
            .loaded
            .keys()
            .filter(|k| !map.contains_key(*k))
            .cloned()
            .collect();
        (upserts, removals)
    }

    /// Records changes written back: the snapshot as loaded is now the
    /// store's.
    fn settle(&mut self, (upserts, removals): SnapshotChanges) {
        for k in removals {
            self.loaded.remove(&k);
        }
        self.loaded.extend(upserts);
    }

    fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let map = match self.storage.values.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Changes the owner made to a group, to deliver to members.
#[derive(Debug)]
pub struct GroupChange {
    /// The commit, for members already in the group.
    pub commit: Vec<u8>,
    /// The Welcome, for an added member.
    pub welcome: Option<Vec<u8>>,
    /// The group's epoch after the change.
    pub epoch: u64,
    /// The members other than the owner that must process the commit.
    pub recipients: Vec<MemberId>,
}

/// The node's key as openmls signs with it: decoded once, not per signature.
struct NodeSigner(ed25519_dalek::SigningKey);

impl Signer for NodeSigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        use ed25519_dalek::Signer as _;
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// A group decoded, with the provider holding its state.
struct Loaded {
    provider: Provider,
    group: MlsGroup,
    /// When it was last used, on the cache's own count.
    used: u64,
    /// At the owner, messages sealed since its state was last flushed; at
    /// a member, messages opened since its state was last written.
    unwritten: u32,
    /// Whether its sealing ratchet is past every generation that may have
    /// been used (see [`SEAL_RESERVE`]): false when decoded from the store.
    ratchet_clear: bool,
}

/// Groups kept decoded between operations, by scope. An operation takes its
/// group out (under the group's lock) and puts it back only when it
/// succeeded and its changes are written: a failed operation leaves nothing
/// in memory that the store does not hold.
#[derive(Default)]
struct GroupCache {
    groups: HashMap<String, Loaded>,
    uses: u64,
}

impl GroupCache {
    fn take(&mut self, scope: &str) -> Option<Loaded> {
        self.groups.remove(scope)
    }

    fn keep(&mut self, scope: String, mut loaded: Loaded) {
        self.uses += 1;
        loaded.used = self.uses;
        if self.groups.len() >= CACHED_GROUPS
            && let Some(oldest) = self
                .groups
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(s, _)| s.clone())
        {
            self.groups.remove(&oldest);
        }
        self.groups.insert(scope, loaded);
    }
}

/// This node's MLS groups. Not `Debug`: it holds the node's signing key.
pub struct Sharing {
    store: Store,
    /// One lock per group (and per owner's KeyPackages): operations on one
    /// group are serialized, different groups proceed in parallel.
    locks: KeyedLocks<std::sync::Mutex<()>>,
    /// Groups decoded once and kept (see [`GroupCache`]).
    cache: Mutex<GroupCache>,
    me: MemberId,
    signer: NodeSigner,
    credential: CredentialWithKey,
}

/// How the members' decryption ratchets tolerate the owner's message order.
///
/// A reader skips every message the owner sealed for the others (forward
/// distance), and the answers to its own concurrent reads can arrive out of
/// order (out-of-order tolerance: one generation per call a connection may
/// have in flight). Skipped keys are kept only within that window. The
/// forward distance also absorbs the generations an owner skips each time
/// it decodes a group again ([`SEAL_RESERVE`] each): a member out of step
/// past it asks for a fresh Welcome.
fn ratchet_config() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(256, 100_000)
}

/// Past epochs whose secrets a member keeps, so that an answer sealed just
/// before a membership change still opens once the commit is applied; two,
/// because bringing a member back is two commits (a removal, then an addition).
const MAX_PAST_EPOCHS: usize = 2;

fn group_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(ratchet_config())
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(ratchet_config())
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build()
}

fn identity_of(credential: &Credential) -> Result<String, ShareError> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| ShareError::Credential("not a basic credential".into()))?;
    String::from_utf8(basic.identity().to_vec())
        .map_err(|_| ShareError::Credential("identity is not UTF-8".into()))
}

/// The roster key of the share's owner, which must be an active member.
fn owner_key(
    share: &ShareId,
    roster_key: &dyn Fn(&MemberId) -> Option<PublicKey>,
) -> Result<PublicKey, ShareError> {
    roster_key(&share.owner)
        .ok_or_else(|| ShareError::Credential(format!("{} is not an active member", share.owner)))
}

/// Checks that a credential names an active member with the key the roster lists.
fn check_credential(
    credential: &Credential,
    signature_key: &[u8],
    roster_key: &dyn Fn(&MemberId) -> Option<PublicKey>,
) -> Result<(), ShareError> {
    let id = identity_of(credential)?;
    let member: MemberId = id
        .parse()
        .map_err(|_| ShareError::Credential(format!("identity {id:?} is not a member id")))?;
    match roster_key(&member) {
        Some(key) if key.to_bytes() == signature_key => Ok(()),
        Some(_) => Err(ShareError::Credential(format!(
            "{member}'s leaf is not signed with its roster key"
        ))),
        None => Err(ShareError::Credential(format!(
            "{member} is not an active member"
        ))),
    }
}

fn parse_member(id: &str) -> Result<MemberId, ShareError> {
    id.parse()
        .map_err(|_| ShareError::Credential(format!("identity {id:?} is not a member id")))
}

fn decode_message(bytes: &[u8]) -> Result<MlsMessageIn, ShareError> {
    if bytes.len() > MAX_MLS_MESSAGE {
        return Err(ShareError::TooLarge(MAX_MLS_MESSAGE));
    }
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| ShareError::Malformed(e.to_string()))
}

fn encode(msg: &MlsMessageOut) -> Result<Vec<u8>, ShareError> {
    msg.tls_serialize_detached().map_err(mls)
}

impl Sharing {
    /// MLS for member `me`, signing with the node key, state in `store`.
    pub fn new(store: Store, me: MemberId, key: &NodeKey) -> Self {
        let public = key.public().to_bytes().to_vec();
        let signer = NodeSigner(ed25519_dalek::SigningKey::from_bytes(&key.seed()));
        let credential = CredentialWithKey {
            credential: BasicCredential::new(me.as_str().as_bytes().to_vec()).into(),
            signature_key: public.into(),
        };
        Self {
            store,
            locks: KeyedLocks::default(),
            cache: Mutex::default(),
            me,
            signer,
            credential,
        }
    }

    /// The lock of one scope (a group, or an owner's KeyPackages).
    fn lock(&self, scope: &str) -> Arc<std::sync::Mutex<()>> {
        self.locks.get(scope)
    }

    fn load(&self, scope: &str) -> Result<Provider, ShareError> {
        Ok(Provider::from_snapshot(self.store.mls_load(scope)?))
    }

    /// Writes back what the operation changed, as one sled batch, flushed.
    fn save(&self, scope: &str, provider: &Provider) -> Result<(), ShareError> {
        let (upserts, removals) = provider.changes();
        self.store.mls_apply(scope, &upserts, &removals)?;
        Ok(self.store.flush()?)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, GroupCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Under the group's lock: the group, kept from an earlier operation or
    /// decoded from the store. Give it back with [`Sharing::put_back`].
    fn take_group(&self, share: &ShareId) -> Result<Loaded, ShareError> {
        let scope = share.scope();
        if let Some(loaded) = self.cache().take(&scope) {
            return Ok(loaded);
        }
        let provider = self.load(&scope)?;
        let group_id = GroupId::from_slice(scope.as_bytes());
        let group = MlsGroup::load(provider.storage(), &group_id)
            .map_err(mls)?
            .ok_or(ShareError::NoGroup)?;
        Ok(Loaded {
            provider,
            group,
            used: 0,
            unwritten: 0,
            ratchet_clear: false,
        })
    }

    /// Under the group's lock: writes back what the operation changed, as
    /// one sled batch (flushed if `flush`), and keeps the group for the next
    /// operation. A group whose operation failed is not given back: the
    /// next one decodes it again from the store.
    fn put_back(&self, share: &ShareId, mut loaded: Loaded, flush: bool) -> Result<(), ShareError> {
        self.write_back(share, &mut loaded, flush)?;
        self.keep(share, loaded);
        Ok(())
    }

    /// Under the group's lock: writes what changed since the group was
    /// decoded or last written, as one sled batch, flushed if `flush`.
    fn write_back(
        &self,
        share: &ShareId,
        loaded: &mut Loaded,
        flush: bool,
    ) -> Result<(), ShareError> {
        let changes = loaded.provider.changes();
        self.store
            .mls_apply(&share.scope(), &changes.0, &changes.1)?;
        if flush {
            self.store.flush()?;
        }
        loaded.provider.settle(changes);
        // An owner counts the generations it sealed since its ratchet was
        // last flushed; a member, what it opened since it last wrote.
        if flush || share.owner != self.me {
            loaded.unwritten = 0;
        }
        Ok(())
    }

    /// Under the group's lock, after a query that changed nothing: a group
    /// that was kept goes back; one decoded for the query is dropped, so
    /// that upkeep's passes over every group do not push the groups in use
    /// out of memory (an owner's group decoded again costs a reserve).
    fn after_query(&self, share: &ShareId, loaded: Loaded) {
        if loaded.used > 0 {
            self.keep(share, loaded);
        }
    }

    /// Under the group's lock: keeps the group for the next operation
    /// without writing what changed (see [`SEAL_RESERVE`]).
    fn keep(&self, share: &ShareId, loaded: Loaded) {
        self.cache().keep(share.scope(), loaded);
    }

    /// Under the group's lock: drops the kept group (its state changed in
    /// the store, or is gone).
    fn forget_kept(&self, share: &ShareId) {
        self.cache().take(&share.scope());
    }

    /// Writes the stored state of every group and KeyPackage scope as dump
    /// records, each group under its lock so that none is caught halfway
    /// through a write-back; returns how many records.
    pub fn dump(&self, out: &mut dyn std::io::Write) -> Result<u64, ShareError> {
        let mut n = 0;
        for scope in self.store.mls_scopes("")? {
            hold!(self, scope);
            n += self.store.dump_mls_scope(&scope, out)?;
        }
        Ok(n)
    }

    /// Whether this node holds state for the share's group.
    pub fn has_group(&self, share: &ShareId) -> Result<bool, ShareError> {
        hold!(self, share.scope());
        self.has_group_unlocked(share)
    }

    fn has_group_unlocked(&self, share: &ShareId) -> Result<bool, ShareError> {
        match self.take_group(share) {
            Ok(loaded) => {
                self.after_query(share, loaded);
                Ok(true)
            }
            Err(ShareError::NoGroup) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Owner: creates the share's group with itself as sole member, if absent.
    pub fn ensure_group(&self, share: &ShareId) -> Result<(), ShareError> {
        hold!(self, share.scope());
        debug_assert_eq!(share.owner, self.me);
        if self.has_group_unlocked(share)? {
            return Ok(());
        }
        let provider = self.load(&share.scope())?;
        self.new_group(share, &provider)?;
        self.save(&share.scope(), &provider)
    }

    /// Creates the share's group in `provider`, with this node's credential.
    fn new_group(&self, share: &ShareId, provider: &Provider) -> Result<(), ShareError> {
        MlsGroup::new_with_group_id(
            provider,
            &self.signer,
            &group_config(),
            GroupId::from_slice(share.scope().as_bytes()),
            self.credential.clone(),
        )
        .map(drop)
        .map_err(mls)
    }

    /// The members of the share's group, by id, as this node sees it.
    pub fn members(&self, share: &ShareId) -> Result<Vec<MemberId>, ShareError> {
        Ok(self
            .member_keys(share)?
            .into_iter()
            .map(|(m, _)| m)
            .collect())
    }

    /// The members of the share's group with the signature key of each
    /// one's leaf (its credential's key), as this node sees it.
    pub fn member_keys(&self, share: &ShareId) -> Result<Vec<(MemberId, Vec<u8>)>, ShareError> {
        hold!(self, share.scope());
        let loaded = self.take_group(share)?;
        let members = loaded
            .group
            .members()
            .map(|m| Ok((parse_member(&identity_of(&m.credential)?)?, m.signature_key)))
            .collect();
        self.after_query(share, loaded);
        members
    }

    /// The signature key of this node's credential (its signing key).
    pub fn own_key(&self) -> &[u8] {
        self.credential.signature_key.as_slice()
    }

    /// Owner: replaces the share's group with a fresh one holding only this
    /// node, with its current credential (after its signing key changed);
    /// the members come back through fresh Welcomes.
    pub fn reset_group(&self, share: &ShareId) -> Result<(), ShareError> {
        hold!(self, share.scope());
        debug_assert_eq!(share.owner, self.me);
        self.forget_kept(share);
        let provider = Provider::from_snapshot(BTreeMap::new());
        self.new_group(share, &provider)?;
        self.store
            .mls_replace(&share.scope(), &provider.snapshot())?;
        Ok(self.store.flush()?)
    }

    /// Drops every group kept in memory: for a caller that wrote the
    /// store's MLS state itself (the fuzz targets put a fixture back).
    pub fn drop_kept(&self) {
        self.cache().groups.clear();
    }

    /// Erases the share's group state at this node (its dossier is erased).
    pub fn erase_group(&self, share: &ShareId) -> Result<(), ShareError> {
        hold!(self, share.scope());
        self.forget_kept(share);
        Ok(self.store.mls_replace(&share.scope(), &BTreeMap::new())?)
    }

    /// The group's current epoch.
    pub fn epoch(&self, share: &ShareId) -> Result<u64, ShareError> {
        hold!(self, share.scope());
        let loaded = self.take_group(share)?;
        let epoch = loaded.group.epoch().as_u64();
        self.after_query(share, loaded);
        Ok(epoch)
    }

    /// Bytes of MLS state this node keeps for the share.
    pub fn state_bytes(&self, share: &ShareId) -> Result<usize, ShareError> {
        Ok(self.store.mls_size(&share.scope())?)
    }

    /// Member side: a fresh KeyPackage for `owner` to add us with. Only a
    /// Welcome from that owner can use it; at most [`MAX_KEY_PACKAGES`] are
    /// kept per owner, a new one replacing an unused one beyond that.
    pub fn new_key_package(&self, owner: &MemberId) -> Result<Vec<u8>, ShareError> {
        hold!(self, kp_prefix(owner));
        let outstanding = self.store.mls_scopes(&kp_prefix(owner))?;
        if outstanding.len() >= MAX_KEY_PACKAGES {
            // Forget the oldest unused package rather than refuse: left-overs
            // must never lock an owner out. Scopes sort by creation.
            if let Some(oldest) = outstanding.first() {
                self.store.mls_replace(oldest, &BTreeMap::new())?;
            }
        }
        let provider = Provider::from_snapshot(BTreeMap::new());
        let bundle = KeyPackage::builder()
            .build(
                CIPHERSUITE,
                &provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        let kp = bundle.key_package();
        let hash = kp.hash_ref(provider.crypto()).map_err(mls)?;
        let scope = kp_scope(owner, self.store.next_id()?, hash.as_slice());
        self.save(&scope, &provider)?;
        encode(&MlsMessageOut::from(kp.clone()))
    }

    /// Checks that a KeyPackage is valid, names `member`, and is signed with
    /// the key the roster lists for it.
    pub fn check_key_package(
        key_package: &[u8],
        member: &MemberId,
        roster_key: &PublicKey,
    ) -> Result<KeyPackage, ShareError> {
        let MlsMessageBodyIn::KeyPackage(kp_in) = decode_message(key_package)?.extract() else {
            return Err(ShareError::Malformed("expected a key package".into()));
        };
        let kp = kp_in
            .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
            .map_err(|e| ShareError::Malformed(e.to_string()))?;
        let leaf = kp.leaf_node();
        if identity_of(leaf.credential())? != member.as_str() {
            return Err(ShareError::Credential(format!(
                "key package does not name {member}"
            )));
        }
        if leaf.signature_key().as_slice() != roster_key.to_bytes() {
            return Err(ShareError::Credential(format!(
                "key package of {member} is not signed with its roster key"
            )));
        }
        Ok(kp)
    }

    /// Owner: adds `member` from its KeyPackage, after checking the credential is
    /// `member` with the signing key the roster lists. `None` if it is already in.
    pub fn add_member(
        &self,
        share: &ShareId,
        key_package: &[u8],
        member: &MemberId,
        roster_key: &PublicKey,
    ) -> Result<Option<GroupChange>, ShareError> {
        hold!(self, share.scope());
        let kp = Self::check_key_package(key_package, member, roster_key)?;
        let mut loaded = self.take_group(share)?;
        let mut recipients = Vec::new();
        let mut already = false;
        for m in loaded.group.members() {
            let id = identity_of(&m.credential)?;
            already |= id == member.as_str();
            if id != self.me.as_str() && id != member.as_str() {
                recipients.push(parse_member(&id)?);
            }
        }
        if already {
            self.put_back(share, loaded, false)?;
            return Ok(None);
        }
        let Loaded {
            provider, group, ..
        } = &mut loaded;
        let (commit, welcome, _) = group
            .add_members(provider, &self.signer, &[kp])
            .map_err(mls)?;
        group.merge_pending_commit(provider).map_err(mls)?;
        let change = GroupChange {
            commit: encode(&commit)?,
            welcome: Some(encode(&welcome)?),
            epoch: group.epoch().as_u64(),
            recipients,
        };
        // A new epoch: its ratchets start afresh, and are written.
        loaded.ratchet_clear = true;
        self.put_back(share, loaded, true)?;
        Ok(Some(change))
    }

    /// Owner: removes `member`; `None` if it was not in the group.
    pub fn remove_member(
        &self,
        share: &ShareId,
        member: &MemberId,
    ) -> Result<Option<GroupChange>, ShareError> {
        hold!(self, share.scope());
        let mut loaded = self.take_group(share)?;
        let mut leaves = Vec::new();
        let mut recipients = Vec::new();
        for m in loaded.group.members() {
            let id = identity_of(&m.credential)?;
            if id == member.as_str() {
                leaves.push(m.index);
            } else if id != self.me.as_str() {
                recipients.push(parse_member(&id)?);
            }
        }
        if leaves.is_empty() {
            self.put_back(share, loaded, false)?;
            return Ok(None);
        }
        let Loaded {
            provider, group, ..
        } = &mut loaded;
        let (commit, _, _) = group
            .remove_members(provider, &self.signer, &leaves)
            .map_err(mls)?;
        group.merge_pending_commit(provider).map_err(mls)?;
        let change = GroupChange {
            commit: encode(&commit)?,
            welcome: None,
            epoch: group.epoch().as_u64(),
            recipients,
        };
        // A new epoch: its ratchets start afresh, and are written.
        loaded.ratchet_clear = true;
        self.put_back(share, loaded, true)?;
        Ok(Some(change))
    }

    /// Owner: whether the next [`Sharing::seal`] of the share runs in memory
    /// only (its group is kept, and within its reserve), or writes to the
    /// store first. A hint: another seal may come in between.
    pub fn seals_in_memory(&self, share: &ShareId) -> bool {
        self.cache()
            .groups
            .get(&share.scope())
            .is_some_and(|l| l.ratchet_clear && l.unwritten < SEAL_RESERVE)
    }

    /// Owner: seals `plaintext` as an application message for the group.
    /// The ratchet advances in memory; the store holds a state at most
    /// [`SEAL_RESERVE`] generations behind, written and flushed here before
    /// a generation beyond it is used, so that a crash cannot make the owner
    /// seal again under the same key.
    pub fn seal(&self, share: &ShareId, plaintext: &[u8]) -> Result<Vec<u8>, ShareError> {
        hold!(self, share.scope());
        let mut loaded = self.take_group(share)?;
        if !loaded.ratchet_clear {
            // Decoded from the store: generations up to SEAL_RESERVE past
            // its state may have been sealed before a crash. Move past them.
            for _ in 0..SEAL_RESERVE {
                loaded
                    .group
                    .create_message(&loaded.provider, &self.signer, &[])
                    .map_err(mls)?;
            }
            loaded.unwritten = SEAL_RESERVE;
            loaded.ratchet_clear = true;
        }
        if loaded.unwritten >= SEAL_RESERVE {
            self.write_back(share, &mut loaded, true)?;
        }
        let msg = loaded
            .group
            .create_message(&loaded.provider, &self.signer, plaintext)
            .map_err(mls)?;
        loaded.unwritten += 1;
        let sealed = encode(&msg)?;
        self.keep(share, loaded);
        Ok(sealed)
    }

    /// Member side: joins the share's group from the owner's Welcome, after
    /// checking the group is the share's, it comes from the share's owner, and
    /// every leaf is an active member with its roster key.
    pub fn join(
        &self,
        share: &ShareId,
        welcome: &[u8],
        roster_key: &dyn Fn(&MemberId) -> Option<PublicKey>,
    ) -> Result<u64, ShareError> {
        hold!(self, share.scope());
        let owner_key = owner_key(share, roster_key)?;
        let MlsMessageBodyIn::Welcome(welcome) = decode_message(welcome)?.extract() else {
            return Err(ShareError::Malformed("expected a welcome".into()));
        };
        let issued = self.store.mls_scopes(&kp_prefix(&share.owner))?;
        let kp_scope_found = welcome.secrets().iter().find_map(|secret| {
            let suffix = format!("/{}", hex::encode(secret.new_member().as_slice()));
            issued
                .iter()
                .find(|scope| scope.ends_with(&suffix))
                .cloned()
        });
        let kp_scope = kp_scope_found.ok_or(ShareError::NoKeyPackage)?;
        let provider = self.load(&kp_scope)?;
        let staged = StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None)
            .map_err(mls)?;
        if staged.group_context().group_id().as_slice() != share.scope().as_bytes() {
            return Err(ShareError::Credential(
                "the welcome is for another share's group".into(),
            ));
        }
        let sender = staged.welcome_sender().map_err(mls)?;
        if identity_of(sender.credential())? != share.owner.as_str()
            || sender.signature_key().as_slice() != owner_key.to_bytes()
        {
            return Err(ShareError::Credential(
                "the welcome does not come from the share's owner".into(),
            ));
        }
        for m in staged.members() {
            check_credential(&m.credential, &m.signature_key, roster_key)?;
        }
        let group = staged.into_group(&provider).map_err(mls)?;
        // The whole snapshot replaces any stale state (a member brought back),
        // and the used key package goes, in one batch.
        let state = provider.snapshot();
        let used = BTreeMap::new();
        self.forget_kept(share);
        self.store
            .mls_replace_many(&[(&share.scope(), &state), (&kp_scope, &used)])?;
        Ok(group.epoch().as_u64())
    }

    fn process(
        &self,
        share: &ShareId,
        bytes: &[u8],
        owner_key: &PublicKey,
    ) -> Result<(Loaded, ProcessedMessage), ShareError> {
        let protocol = decode_message(bytes)?
            .try_into_protocol_message()
            .map_err(|e| ShareError::Malformed(e.to_string()))?;
        let mut loaded = self.take_group(share)?;
        let processed = loaded
            .group
            .process_message(&loaded.provider, protocol)
            .map_err(mls)?;
        let from_owner = identity_of(processed.credential())? == share.owner.as_str()
            && match processed.sender() {
                Sender::Member(index) => loaded
                    .group
                    .member_at(*index)
                    .is_some_and(|m| m.signature_key == owner_key.to_bytes()),
                _ => false,
            };
        if !from_owner {
            return Err(ShareError::Credential(
                "only the share's owner sends in its group".into(),
            ));
        }
        Ok((loaded, processed))
    }

    /// Member side: applies a commit from the owner, after checking every
    /// member it adds against the roster; returns the new epoch.
    pub fn apply_commit(
        &self,
        share: &ShareId,
        commit: &[u8],
        roster_key: &dyn Fn(&MemberId) -> Option<PublicKey>,
    ) -> Result<u64, ShareError> {
        hold!(self, share.scope());
        let owner_key = owner_key(share, roster_key)?;
        let (mut loaded, processed) = self.process(share, commit, &owner_key)?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(ShareError::Malformed("expected a commit".into()));
        };
        for add in staged.add_proposals() {
            let leaf = add.add_proposal().key_package().leaf_node();
            check_credential(
                leaf.credential(),
                leaf.signature_key().as_slice(),
                roster_key,
            )?;
        }
        loaded
            .group
            .merge_staged_commit(&loaded.provider, *staged)
            .map_err(mls)?;
        let epoch = loaded.group.epoch().as_u64();
        self.put_back(share, loaded, true)?;
        Ok(epoch)
    }

    /// Member side: opens an application message sealed by the owner.
    pub fn open(
        &self,
        share: &ShareId,
        sealed: &[u8],
        owner_key: &PublicKey,
    ) -> Result<Vec<u8>, ShareError> {
        hold!(self, share.scope());
        let (mut loaded, processed) = self.process(share, sealed, owner_key)?;
        let ProcessedMessageContent::ApplicationMessage(app) = processed.into_content() else {
            return Err(ShareError::Malformed(
                "expected an application message".into(),
            ));
        };
        // A reader that loses what it opened in a crash can open those
        // messages again, nothing worse: written once in SEAL_RESERVE
        // messages, never flushed on this path.
        loaded.unwritten += 1;
        if loaded.unwritten >= SEAL_RESERVE {
            self.put_back(share, loaded, false)?;
        } else {
            self.keep(share, loaded);
        }
        Ok(app.into_bytes())
    }
}

fn kp_prefix(owner: &MemberId) -> String {
    format!("kp/{owner}/")
}

/// `kp/<owner>/<creation id, 16 hex digits>/<hash ref>`: scopes sort by creation.
fn kp_scope(owner: &MemberId, id: u64, hash_ref: &[u8]) -> String {
    format!("{}{id:016x}/{}", kp_prefix(owner), hex::encode(hash_ref))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        _dir: tempfile::TempDir,
        key: NodeKey,
        id: MemberId,
        sharing: Sharing,
    }

    fn node(id: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let key = NodeKey::generate();
        let id: MemberId = id.parse().expect("id");
        let sharing = Sharing::new(store, id.clone(), &key);
        Node {
            _dir: dir,
            key,
            id,
            sharing,
        }
    }

    fn share(owner: &Node) -> ShareId {
        ShareId {
            dossier: DossierId::random(),
            section: Section::Housing,
            owner: owner.id.clone(),
        }
    }

    /// What a node's roster says: the listed nodes, with their keys.
    fn roster(nodes: &[&Node]) -> impl Fn(&MemberId) -> Option<PublicKey> + use<> {
        let keys: Vec<(MemberId, PublicKey)> = nodes
            .iter()
            .map(|n| (n.id.clone(), n.key.public()))
            .collect();
        move |m: &MemberId| keys.iter().find(|(id, _)| id == m).map(|(_, k)| *k)
    }

    fn offer(owner: &Node, s: &ShareId, member: &Node) -> GroupChange {
        let kp = member.sharing.new_key_package(&owner.id).expect("kp");
        owner
            .sharing
            .add_member(s, &kp, &member.id, &member.key.public())
            .expect("add")
            .expect("not yet a member")
    }

    fn add(owner: &Node, s: &ShareId, member: &Node, everyone: &[&Node]) -> GroupChange {
        let change = offer(owner, s, member);
        let welcome = change.welcome.as_deref().expect("welcome");
        member
            .sharing
            .join(s, welcome, &roster(everyone))
            .expect("join");
        change
    }

    #[test]
    fn a_removed_member_cannot_open_what_is_sealed_after_its_removal() {
        let (ccas, caf, cd) = (node("ccas-rodez"), node("caf12"), node("cd12"));
        let all = [&ccas, &caf, &cd];
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &all);
        let change = add(&ccas, &s, &cd, &all);
        caf.sharing
            .apply_commit(&s, &change.commit, &roster(&all))
            .expect("caf follows");

        let owner_key = ccas.key.public();
        let before = ccas.sharing.seal(&s, b"loyer 450").expect("seal");
        assert_eq!(
            caf.sharing.open(&s, &before, &owner_key).expect("open"),
            b"loyer 450"
        );

        let removal = ccas
            .sharing
            .remove_member(&s, &caf.id)
            .expect("remove")
            .expect("was a member");
        cd.sharing
            .apply_commit(&s, &removal.commit, &roster(&all))
            .expect("cd follows");
        let after = ccas.sharing.seal(&s, b"loyer 470").expect("seal");
        assert_eq!(
            cd.sharing.open(&s, &after, &owner_key).expect("open"),
            b"loyer 470"
        );
        assert!(
            caf.sharing.open(&s, &after, &owner_key).is_err(),
            "caf must not decrypt after removal"
        );
        // Even if the removed member processes its own removal, it learns nothing new.
        let _ = caf.sharing.apply_commit(&s, &removal.commit, &roster(&all));
        assert!(caf.sharing.open(&s, &after, &owner_key).is_err());
        assert_eq!(
            ccas.sharing.members(&s).expect("members"),
            vec![ccas.id.clone(), cd.id.clone()]
        );
        assert!(
            ccas.sharing
                .remove_member(&s, &caf.id)
                .expect("remove")
                .is_none()
        );
    }

    #[test]
    fn group_state_survives_reloading_from_the_store() {
        let (ccas, caf) = (node("ccas-rodez"), node("caf12"));
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &[&ccas, &caf]);
        let reopened = Sharing::new(ccas.sharing.store.clone(), ccas.id.clone(), &ccas.key);
        let sealed = reopened.seal(&s, b"x").expect("seal");
        assert_eq!(
            caf.sharing
                .open(&s, &sealed, &ccas.key.public())
                .expect("open"),
            b"x"
        );
        assert!(ccas.sharing.state_bytes(&s).expect("size") > 0);
        // Adding a member twice is a no-op.
        let kp = caf.sharing.new_key_package(&ccas.id).expect("kp");
        assert!(
            ccas.sharing
                .add_member(&s, &kp, &caf.id, &caf.key.public())
                .expect("add")
                .is_none()
        );
    }

    #[test]
    fn key_packages_with_foreign_credentials_are_refused() {
        let (ccas, caf, intruder) = (node("ccas-rodez"), node("caf12"), node("caf12"));
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        let kp = intruder.sharing.new_key_package(&ccas.id).expect("kp");
        let err = ccas
            .sharing
            .add_member(&s, &kp, &caf.id, &caf.key.public())
            .expect_err("wrong key");
        assert!(matches!(err, ShareError::Credential(_)), "{err}");
        let kp = caf.sharing.new_key_package(&ccas.id).expect("kp");
        let other: MemberId = "cd12".parse().expect("id");
        assert!(
            ccas.sharing
                .add_member(&s, &kp, &other, &caf.key.public())
                .is_err()
        );
        assert!(matches!(
            ccas.sharing
                .add_member(&s, b"garbage", &caf.id, &caf.key.public()),
            Err(ShareError::Malformed(_))
        ));
        assert_eq!(ccas.sharing.members(&s).expect("members").len(), 1);
    }

    #[test]
    fn welcomes_from_the_wrong_owner_for_the_wrong_group_or_key_package_are_refused() {
        let (ccas, caf, cd) = (node("ccas-rodez"), node("caf12"), node("cd12"));
        let all = [&ccas, &caf, &cd];
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        let change = offer(&ccas, &s, &caf);
        let welcome = change.welcome.as_deref().expect("welcome");
        // The roster says ccas-rodez has cd12's key: the sender does not match.
        let lying_roster = |m: &MemberId| (m == &ccas.id).then(|| cd.key.public());
        assert!(matches!(
            caf.sharing.join(&s, welcome, &lying_roster),
            Err(ShareError::Credential(_))
        ));
        // The Welcome presented as another share's.
        let other = share(&ccas);
        assert!(caf.sharing.join(&other, welcome, &roster(&all)).is_err());
        // The same Welcome presented as coming from cd12: no key package was issued to cd12.
        let as_cd = ShareId {
            owner: cd.id.clone(),
            ..s.clone()
        };
        assert!(matches!(
            caf.sharing.join(&as_cd, welcome, &roster(&all)),
            Err(ShareError::NoKeyPackage)
        ));
        assert!(!caf.sharing.has_group(&s).expect("state"), "nothing joined");
    }

    #[test]
    fn members_refuse_messages_not_from_the_owner_and_commits_adding_strangers() {
        let (ccas, caf, cd, spy) = (node("ccas-rodez"), node("caf12"), node("cd12"), node("spy"));
        let members = [&ccas, &caf, &cd];
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &members);
        let change = add(&ccas, &s, &cd, &members);
        caf.sharing
            .apply_commit(&s, &change.commit, &roster(&members))
            .expect("follows");
        // cd12 holds the group state and could seal; caf12 only accepts the owner's messages.
        let forged = cd.sharing.seal(&s, b"faux").expect("cd can encrypt");
        let err = caf
            .sharing
            .open(&s, &forged, &ccas.key.public())
            .expect_err("not the owner");
        assert!(matches!(err, ShareError::Credential(_)), "{err}");
        // An owner adding a member the roster does not list: members refuse the commit.
        let change = offer(&ccas, &s, &spy);
        let err = caf
            .sharing
            .apply_commit(&s, &change.commit, &roster(&members))
            .expect_err("stranger");
        assert!(matches!(err, ShareError::Credential(_)), "{err}");
        // And the stranger's group would be refused at join by a roster-checking member.
        let welcome = change.welcome.as_deref().expect("welcome");
        assert!(spy.sharing.join(&s, welcome, &roster(&members)).is_err());
    }

    #[test]
    fn an_answer_sealed_just_before_a_membership_change_still_opens_after_it() {
        let (ccas, caf, cd) = (node("ccas-rodez"), node("caf12"), node("cd12"));
        let all = [&ccas, &caf, &cd];
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &all);
        let in_flight = ccas.sharing.seal(&s, b"avant").expect("seal");
        // The commit adding cd12 reaches caf12 before the answer does.
        let change = add(&ccas, &s, &cd, &all);
        caf.sharing
            .apply_commit(&s, &change.commit, &roster(&all))
            .expect("follows");
        assert_eq!(
            caf.sharing
                .open(&s, &in_flight, &ccas.key.public())
                .expect("opens"),
            b"avant"
        );
    }

    #[test]
    fn an_answer_sealed_just_before_a_member_is_brought_back_still_opens_after_both_commits() {
        let (ccas, caf, cd) = (node("ccas-rodez"), node("caf12"), node("cd12"));
        let all = [&ccas, &caf, &cd];
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &all);
        let joined = add(&ccas, &s, &cd, &all);
        caf.sharing
            .apply_commit(&s, &joined.commit, &roster(&all))
            .expect("follows");
        let in_flight = ccas.sharing.seal(&s, b"avant").expect("seal");
        // cd12 is brought back: removed, then added again, two epochs on.
        let removal = ccas
            .sharing
            .remove_member(&s, &cd.id)
            .expect("remove")
            .expect("was a member");
        caf.sharing
            .apply_commit(&s, &removal.commit, &roster(&all))
            .expect("follows the removal");
        let addition = add(&ccas, &s, &cd, &all);
        caf.sharing
            .apply_commit(&s, &addition.commit, &roster(&all))
            .expect("follows the addition");
        assert_eq!(
            caf.sharing
                .open(&s, &in_flight, &ccas.key.public())
                .expect("opens two epochs later"),
            b"avant"
        );
    }

    #[test]
    fn answers_to_concurrent_reads_open_in_any_order() {
        let (ccas, caf) = (node("ccas-rodez"), node("caf12"));
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &[&ccas, &caf]);
        let sealed: Vec<Vec<u8>> = (0..100u8)
            .map(|i| ccas.sharing.seal(&s, &[i]).expect("seal"))
            .collect();
        for (i, m) in sealed.iter().enumerate().rev() {
            assert_eq!(
                caf.sharing.open(&s, m, &ccas.key.public()).expect("open"),
                [i as u8]
            );
        }
        // A message opened once cannot be opened again: its key is consumed.
        assert!(
            caf.sharing
                .open(&s, &sealed[0], &ccas.key.public())
                .is_err()
        );
    }

    #[test]
    fn an_owner_that_lost_its_memory_never_seals_a_generation_again() {
        let (ccas, caf) = (node("ccas-rodez"), node("caf12"));
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &[&ccas, &caf]);
        let owner_key = ccas.key.public();
        let stored = || ccas.sharing.store.mls_load(&s.scope()).expect("load");
        // Around and past a reserve: the store is written once per reserve,
        // before a generation beyond it is sealed.
        for round in 0..3 {
            let before = stored();
            let count = if round == 1 { SEAL_RESERVE + 5 } else { 7 };
            for i in 0..count {
                let sealed = ccas.sharing.seal(&s, &i.to_be_bytes()).expect("seal");
                assert_eq!(
                    caf.sharing.open(&s, &sealed, &owner_key).expect("open"),
                    i.to_be_bytes()
                );
            }
            assert_eq!(
                stored() != before,
                round == 1,
                "written only when decoded again (round 1) and past a reserve"
            );
            // The owner's process dies: what it kept in memory is gone. A
            // generation sealed again would not open at the member, which
            // consumed its key.
            let restarted = Sharing::new(ccas.sharing.store.clone(), ccas.id.clone(), &ccas.key);
            let sealed = restarted.seal(&s, b"after").expect("seal");
            assert_eq!(
                caf.sharing
                    .open(&s, &sealed, &owner_key)
                    .expect("a new generation"),
                b"after"
            );
            if round == 0 {
                // Out of memory: the next round decodes it from the store.
                ccas.sharing.drop_kept();
            }
        }
    }

    #[test]
    fn a_member_that_lost_its_memory_still_opens_what_comes_next() {
        let (ccas, caf) = (node("ccas-rodez"), node("caf12"));
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &[&ccas, &caf]);
        let owner_key = ccas.key.public();
        for _ in 0..SEAL_RESERVE * 2 + 3 {
            let sealed = ccas.sharing.seal(&s, b"x").expect("seal");
            caf.sharing.open(&s, &sealed, &owner_key).expect("open");
        }
        let restarted = Sharing::new(caf.sharing.store.clone(), caf.id.clone(), &caf.key);
        let sealed = ccas.sharing.seal(&s, b"next").expect("seal");
        assert_eq!(
            restarted.open(&s, &sealed, &owner_key).expect("open"),
            b"next"
        );
    }

    #[test]
    fn unused_key_packages_per_owner_are_capped_without_locking_the_owner_out() {
        let (ccas, caf) = (node("ccas-rodez"), node("caf12"));
        let scopes = || {
            caf.sharing
                .store
                .mls_scopes(&kp_prefix(&ccas.id))
                .expect("scopes")
        };
        caf.sharing.new_key_package(&ccas.id).expect("the first");
        let first = scopes();
        for _ in 0..MAX_KEY_PACKAGES + 10 {
            caf.sharing
                .new_key_package(&ccas.id)
                .expect("a key package, always");
        }
        let kept = scopes();
        assert_eq!(kept.len(), MAX_KEY_PACKAGES);
        assert!(!kept.contains(&first[0]), "the oldest went first");
        // The newest still works: it replaced an unused one, and goes once used.
        let s = share(&ccas);
        ccas.sharing.ensure_group(&s).expect("group");
        add(&ccas, &s, &caf, &[&ccas, &caf]);
        let left = caf
            .sharing
            .store
            .mls_scopes(&kp_prefix(&ccas.id))
            .expect("scopes");
        assert_eq!(left.len(), MAX_KEY_PACKAGES - 1);
    }
}
