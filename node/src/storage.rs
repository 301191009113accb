//! The node's sled store: the only module that names sled.
//!
//! Each tree has one owner here and one encoding (JSON values, UTF-8 keys).
//! The on-disk schema is versioned in the `meta` tree; a store written by
//! another schema version is refused rather than misread.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The raw key-value entries of one MLS state snapshot.
pub type MlsSnapshot = BTreeMap<Vec<u8>, Vec<u8>>;

mod compact;

/// The on-disk schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 4;

/// The schema before MLS state was kept in its compact form; opened
/// stores of it are brought to [`SCHEMA_VERSION`] (see [`Store::open`]).
const SCHEMA_BEFORE_COMPACT_MLS: u32 = 3;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A value could not be decoded: the store is corrupt or from another version.
    /// The message names the position only: serde's own text can quote the
    /// value, which may be personal data, and this message reaches the logs.
    #[error(
        "store: undecodable value in tree {tree} (line {}, column {})",
        source.line(),
        source.column()
    )]
    Decode {
        /// The tree the value was read from.
        tree: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded (a bug: every stored type encodes).
    #[error("store: cannot encode a value for tree {tree}")]
    Encode {
        /// The tree it was for.
        tree: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The store was written by an incompatible schema version.
    #[error("store schema version {found} is not the supported version {SCHEMA_VERSION}")]
    Schema {
        /// The version on disk.
        found: u32,
    },
    /// An MLS state entry is not in the compact form (see `storage::compact`).
    #[error("store: a damaged mls state entry in scope {0}")]
    Compact(String),
    /// Another process (or a node not yet stopped) holds the store.
    #[error("store {0} is in use by another process")]
    Locked(String),
    /// A record that must be unique already exists.
    #[error("{0} already exists")]
    Exists(&'static str),
    /// A store dump (a backup's) could not be read or written.
    #[error("store dump: {0}")]
    Dump(String),
}

/// A named sled tree holding JSON values.
#[derive(Clone, Copy, Debug)]
pub enum Tree {
    /// Node-local users by name.
    Users,
    /// User name by SHA-256 of their token.
    Tokens,
    /// Dossier records by dossier id.
    Dossiers,
    /// This node's section copies by `dossier/section`, with when and by
    /// whom they were last written.
    Sections,
    /// Signed consents by `dossier/consent`.
    Consents,
    /// Dossier of each consent, by consent id.
    ConsentIndex,
    /// Seen request nonces by `reader/nonce`, with their time: written by
    /// versions before replay protection moved to memory; read once at
    /// start and emptied.
    Nonces,
    /// Members to bring back into a share group, by `scope|member`.
    Resync,
    /// Inactive consents whose groups were updated, by consent key.
    Closed,
    /// When each member last asked for a fresh Welcome, by `scope|member`.
    WelcomeRequests,
    /// Adopted roster versions after genesis, by zero-padded version.
    RosterChain,
    /// Open roster proposals, by candidate hash.
    Proposals,
    /// Valid roster versions that conflict with an adopted one (equivocation
    /// evidence), by `version/hash`.
    RosterEvidence,
    /// When each member was last suspended or excluded here, by member id:
    /// consents granted before then no longer let it in.
    Ousted,
    /// Break-glass accesses this node granted, by `dossier/grant`.
    BreakGlass,
    /// Break-glass accesses other members told this node of (as the
    /// référent's member), by `owner/grant`.
    Notices,
    /// The référent de parcours of each dossier this node holds, by dossier id.
    Referents,
    /// Deliveries to members that could not be reached yet, by sequence number.
    Outbox,
    /// The latest checkpoint of each peer this node witnessed, by member id.
    Witnessed,
    /// The latest cosignature of this node's log by each witness, by member id.
    Cosignatures,
    /// Witness alarms with their evidence, by `member/witnessed size/kind`.
    Evidence,
    /// Dossiers erased here, by dossier id, with when: the log's entries
    /// about them are never applied again.
    Erased,
    /// The census of aids, by `member/service`: each entry as its member's
    /// node signed it (bytes and signature).
    Census,
    /// Orientations sent and received, by id.
    Orientations,
    /// Coordination commissions convened here or to which this node was
    /// invited, by id, with their minutes once closed.
    Commissions,
    /// Dossiers this node does not hold that its holder closed, and of
    /// which an orientation or a commission left records here: when they
    /// closed, so that the charter's retention erases those records too.
    Ended,
    /// Vigilance alerts raised here (`raised/ALR-…`) and received here
    /// (`received/ALR-…`, their words sealed at rest).
    Alerts,
    /// Singletons, by [`MetaKey`].
    Meta,
}

/// The singletons of the `meta` tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    /// The on-disk schema version (`u32`).
    Schema,
    /// Hex hash of the roster this node adopted last (`String`).
    RosterHash,
    /// That roster, signed.
    Roster,
    /// How many audit entries are known applied to the store (`u64`): the
    /// replay at start begins there.
    Applied,
    /// The roster version and own signing key (hex) for which this node's
    /// groups are up to date (`(u64, String)`).
    PrunedFor,
}

impl MetaKey {
    fn key(self) -> &'static str {
        match self {
            MetaKey::Schema => "schema",
            MetaKey::RosterHash => "roster_hash",
            MetaKey::Roster => "roster",
            MetaKey::Applied => "applied",
            MetaKey::PrunedFor => "pruned_for",
        }
    }
}

impl Tree {
    /// Every tree, in declaration order (`Tree as usize` indexes it).
    const ALL: [Tree; 28] = [
        Tree::Users,
        Tree::Tokens,
        Tree::Dossiers,
        Tree::Sections,
        Tree::Consents,
        Tree::ConsentIndex,
        Tree::Nonces,
        Tree::Resync,
        Tree::Closed,
        Tree::WelcomeRequests,
        Tree::RosterChain,
        Tree::Proposals,
        Tree::RosterEvidence,
        Tree::Ousted,
        Tree::BreakGlass,
        Tree::Notices,
        Tree::Referents,
        Tree::Outbox,
        Tree::Witnessed,
        Tree::Cosignatures,
        Tree::Evidence,
        Tree::Erased,
        Tree::Census,
        Tree::Orientations,
        Tree::Commissions,
        Tree::Ended,
        Tree::Alerts,
        Tree::Meta,
    ];

    /// The tree's name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Users => "users",
            Tree::Tokens => "tokens",
            Tree::Dossiers => "dossiers",
            Tree::Sections => "sections",
            Tree::Consents => "consents",
            Tree::ConsentIndex => "consent_index",
            Tree::Nonces => "nonces",
            Tree::Resync => "resync",
            Tree::Closed => "closed",
            Tree::WelcomeRequests => "welcome_requests",
            Tree::RosterChain => "roster_chain",
            Tree::Proposals => "proposals",
            Tree::RosterEvidence => "roster_evidence",
            Tree::Ousted => "ousted",
            Tree::BreakGlass => "break_glass",
            Tree::Notices => "notices",
            Tree::Referents => "referents",
            Tree::Outbox => "outbox",
            Tree::Witnessed => "witnessed",
            Tree::Cosignatures => "cosignatures",
            Tree::Evidence => "evidence",
            Tree::Erased => "erased",
            Tree::Census => "census",
            Tree::Orientations => "orientations",
            Tree::Alerts => "alerts",
            Tree::Commissions => "commissions",
            Tree::Ended => "ended",
            Tree::Meta => "meta",
        }
    }
}

/// The node's persistent state, over one sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    mls: sled::Tree,
    /// The trees of [`Tree::ALL`], in that order.
    trees: Vec<sled::Tree>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::with_trees(open_waiting_for_lock(dir)?)?;
        match store.meta::<u32>(MetaKey::Schema)? {
            Some(SCHEMA_BEFORE_COMPACT_MLS) => {
                store.compact_mls()?;
                store.set_meta(MetaKey::Schema, &SCHEMA_VERSION)?;
                store.flush()?;
            }
            Some(found) if found != SCHEMA_VERSION => return Err(StoreError::Schema { found }),
            Some(_) => {}
            None => {
                store.set_meta(MetaKey::Schema, &SCHEMA_VERSION)?;
                store.flush()?;
            }
        }
        Ok(store)
    }

    /// Opens an existing store as it is, for reading it (`maillon node
    /// check`, a backup of a stopped folder): refused when the folder holds
    /// no store or one of another schema version; nothing is created or
    /// migrated.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        if !dir.join("db").exists() {
            return Err(StoreError::Dump(format!(
                "{} holds no store",
                dir.display()
            )));
        }
        let store = Self::with_trees(open_waiting_for_lock(dir)?)?;
        match store.meta::<u32>(MetaKey::Schema)? {
            Some(SCHEMA_VERSION) => Ok(store),
            Some(found) => Err(StoreError::Schema { found }),
            None => Err(StoreError::Dump(format!(
                "{} holds no store",
                dir.display()
            ))),
        }
    }

    /// The store over `db`, its trees opened.
    fn with_trees(db: sled::Db) -> Result<Self, StoreError> {
        let mls = db.open_tree("mls")?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { db, mls, trees })
    }

    /// The tree, opened once at start (sled's `open_tree` takes a lock).
    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    /// Reads and decodes one value.
    pub fn get<T: DeserializeOwned>(&self, tree: Tree, key: &str) -> Result<Option<T>, StoreError> {
        match self.tree(tree).get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Decode {
                        tree: tree.name(),
                        source,
                    })
            }
        }
    }

    /// Reads one singleton of the `meta` tree.
    pub fn meta<T: DeserializeOwned>(&self, key: MetaKey) -> Result<Option<T>, StoreError> {
        self.get(Tree::Meta, key.key())
    }

    /// Writes one singleton of the `meta` tree (not yet flushed).
    pub fn set_meta<T: Serialize>(&self, key: MetaKey, value: &T) -> Result<(), StoreError> {
        self.put(Tree::Meta, key.key(), value)
    }

    /// Encodes and writes one value (not yet flushed).
    pub fn put<T: Serialize>(&self, tree: Tree, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            tree: tree.name(),
            source,
        })?;
        self.tree(tree).insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    /// Removes one value (not yet flushed).
    pub fn remove(&self, tree: Tree, key: &str) -> Result<(), StoreError> {
        self.tree(tree).remove(key.as_bytes())?;
        Ok(())
    }

    /// Removes one value only if it still equals `expected` (not yet flushed);
    /// returns whether it was removed.
    pub fn remove_if_unchanged<T: Serialize>(
        &self,
        tree: Tree,
        key: &str,
        expected: &T,
    ) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(expected).map_err(|source| StoreError::Encode {
            tree: tree.name(),
            source,
        })?;
        Ok(self
            .tree(tree)
            .compare_and_swap(key.as_bytes(), Some(bytes), None as Option<&[u8]>)?
            .is_ok())
    }

    /// Replaces the value of `key` by `new` only if it is still `expected`
    /// (`None`: absent), atomically; returns whether it was replaced.
    pub fn replace_if_unchanged<T: Serialize>(
        &self,
        tree: Tree,
        key: &str,
        expected: Option<&T>,
        new: &T,
    ) -> Result<bool, StoreError> {
        let encode = |v: &T| {
            serde_json::to_vec(v).map_err(|source| StoreError::Encode {
                tree: tree.name(),
                source,
            })
        };
        let old = expected.map(encode).transpose()?;
        Ok(self
            .tree(tree)
            .compare_and_swap(key.as_bytes(), old, Some(encode(new)?))?
            .is_ok())
    }

    /// Writes a value only if the key is absent; fails with [`StoreError::Exists`] otherwise.
    pub fn insert_new<T: Serialize>(
        &self,
        tree: Tree,
        key: &str,
        value: &T,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            tree: tree.name(),
            source,
        })?;
        self.tree(tree)
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .map_err(|_| StoreError::Exists(what))
    }

    /// Every value whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(tree).scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let value = serde_json::from_slice(&v).map_err(|source| StoreError::Decode {
                tree: tree.name(),
                source,
            })?;
            out.push((String::from_utf8_lossy(&k).into_owned(), value));
        }
        Ok(out)
    }

    /// Writes every tree but the MLS state as dump records (see
    /// [`Store::import`]); returns how many.
    pub fn dump_trees(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let mut n = 0;
        for (i, tree) in self.trees.iter().enumerate() {
            let name = Tree::ALL[i].name();
            for item in tree.iter() {
                let (k, v) = item?;
                write_record(out, name, &k, &v)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes every MLS state snapshot as dump records, as they are (a
    /// stopped node's); returns how many.
    pub fn dump_mls(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.mls.iter() {
            let (k, v) = item?;
            write_record(out, "mls", &k, &v)?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes one MLS state snapshot as dump records; returns how many.
    pub fn dump_mls_scope(
        &self,
        scope: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.mls.scan_prefix(mls_prefix(scope)) {
            let (k, v) = item?;
            write_record(out, "mls", &k, &v)?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes the records of a dump into this store (a new one, at a
    /// restore), then flushes; returns how many. A record of a tree this
    /// build does not know, or one cut short, fails the import.
    pub fn import(&self, input: &mut dyn std::io::Read) -> Result<u64, StoreError> {
        let mut n = 0;
        while let Some((name, k, v)) = read_record(input)? {
            let tree = if name == "mls" {
                &self.mls
            } else {
                let t = Tree::ALL
                    .iter()
                    .position(|t| t.name() == name)
                    .ok_or_else(|| StoreError::Dump(format!("unknown tree {name:?}")))?;
                &self.trees[t]
            };
            tree.insert(k, v)?;
            n += 1;
        }
        self.flush()?;
        Ok(n)
    }

    /// How many keys `tree` holds (it walks the tree).
    pub fn count(&self, tree: Tree) -> usize {
        self.tree(tree).len()
    }

    /// Removes keys of `tree` starting with `prefix` for which `stale` holds.
    pub fn remove_where<T: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &str,
        stale: impl Fn(&T) -> bool,
    ) -> Result<usize, StoreError> {
        let t = self.tree(tree);
        let mut removed = 0;
        for (k, v) in self.scan::<T>(tree, prefix)? {
            if stale(&v) {
                t.remove(k.as_bytes())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Rewrites every MLS state entry in the compact form, in one batch
    /// (a crash leaves the old schema, and the next start does it again).
    fn compact_mls(&self) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for item in self.mls.iter() {
            let (k, v) = item?;
            let Some(end) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let damaged = || StoreError::Compact(String::from_utf8_lossy(&k[..end]).into_owned());
            let (key, value) = (
                compact::expand(&k[end + 1..]).ok_or_else(damaged)?,
                compact::expand(&v).ok_or_else(damaged)?,
            );
            let mut new_key = k[..=end].to_vec();
            new_key.extend_from_slice(&compact::compact(&key));
            if new_key != k.as_ref() {
                batch.remove(k);
            }
            batch.insert(new_key, compact::compact(&value));
        }
        self.mls.apply_batch(batch)?;
        Ok(())
    }

    /// The key-value entries of one MLS state snapshot, as openmls wrote them.
    pub fn mls_load(&self, scope: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let prefix = mls_prefix(scope);
        let damaged = || StoreError::Compact(scope.to_owned());
        let mut out = BTreeMap::new();
        for item in self.mls.scan_prefix(&prefix) {
            let (k, v) = item?;
            out.insert(
                compact::expand(&k[prefix.len()..]).ok_or_else(damaged)?,
                compact::expand(&v).ok_or_else(damaged)?,
            );
        }
        Ok(out)
    }

    /// Bytes of one MLS state snapshot as stored (keys and values, compact).
    pub fn mls_size(&self, scope: &str) -> Result<usize, StoreError> {
        let mut size = 0;
        for item in self.mls.scan_prefix(mls_prefix(scope)) {
            let (k, v) = item?;
            size += k.len() + v.len();
        }
        Ok(size)
    }

    /// Replaces one MLS state snapshot atomically (one sled batch) and flushes.
    pub fn mls_replace(&self, scope: &str, entries: &MlsSnapshot) -> Result<(), StoreError> {
        self.mls_replace_many(&[(scope, entries)])
    }

    /// Replaces several MLS state snapshots in one sled batch (an empty map
    /// deletes a snapshot) and flushes.
    pub fn mls_replace_many(&self, snapshots: &[(&str, &MlsSnapshot)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (scope, entries) in snapshots {
            let prefix = mls_prefix(scope);
            let kept: std::collections::BTreeSet<Vec<u8>> =
                entries.keys().map(|k| mls_key(&prefix, k)).collect();
            for item in self.mls.scan_prefix(&prefix) {
                let (k, _) = item?;
                if !kept.contains(k.as_ref()) {
                    batch.remove(k);
                }
            }
            for (k, v) in entries.iter() {
                batch.insert(mls_key(&prefix, k), compact::compact(v));
            }
        }
        self.mls.apply_batch(batch)?;
        self.flush()
    }

    /// The scopes of the MLS snapshots whose scope starts with `prefix`.
    pub fn mls_scopes(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut scopes = std::collections::BTreeSet::new();
        for item in self.mls.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item?;
            if let Some(end) = k.iter().position(|&b| b == 0) {
                scopes.insert(String::from_utf8_lossy(&k[..end]).into_owned());
            }
        }
        Ok(scopes.into_iter().collect())
    }

    /// Applies changes to one MLS state snapshot atomically (one sled batch);
    /// the caller flushes.
    pub fn mls_apply(
        &self,
        scope: &str,
        upserts: &[(Vec<u8>, Vec<u8>)],
        removals: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let prefix = mls_prefix(scope);
        if let ([(k, v)], []) = (upserts, removals) {
            // One entry (what a seal or an open changes): a plain insert,
            // which spares sled's batch lock.
            self.mls.insert(mls_key(&prefix, k), compact::compact(v))?;
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in removals {
            batch.remove(mls_key(&prefix, k));
        }
        for (k, v) in upserts {
            batch.insert(mls_key(&prefix, k), compact::compact(v));
        }
        self.mls.apply_batch(batch)?;
        Ok(())
    }

    /// Bytes of every key and value the store holds, in every tree: the
    /// state itself, whatever sled's files take on disk.
    pub fn state_bytes(&self) -> Result<u64, StoreError> {
        let mut size = 0;
        for tree in self.trees.iter().chain([&self.mls]) {
            for item in tree.iter() {
                let (k, v) = item?;
                size += (k.len() + v.len()) as u64;
            }
        }
        Ok(size)
    }

    /// A fresh identifier, increasing across restarts (for ordering records).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Writes sled's buffers out (survives a killed process; see SECURITY.md).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The bound on sled's page cache (sled's own default is 1 GiB, more than a
/// small partner's host should give a store that mostly holds its dossiers).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How long [`Store::open`] waits for another handle to release the store.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled, waiting while a handle that is being dropped (a node that just
/// stopped, whose background flusher still runs) holds the file lock.
fn open_waiting_for_lock(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked(dir.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Longest key or value a dump record may carry.
const MAX_DUMP_FIELD: usize = 64 * 1024 * 1024;

/// One dump record: the tree's name (a byte of length), then the key and
/// the value, each after its length as a big-endian `u32`.
fn write_record(
    out: &mut dyn std::io::Write,
    tree: &str,
    k: &[u8],
    v: &[u8],
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Dump(e.to_string());
    let field = |len: usize| {
        u32::try_from(len)
            .map(u32::to_be_bytes)
            .map_err(|_| StoreError::Dump("a record over 4 GiB".into()))
    };
    out.write_all(&[tree.len() as u8]).map_err(io)?;
    out.write_all(tree.as_bytes()).map_err(io)?;
    out.write_all(&field(k.len())?).map_err(io)?;
    out.write_all(k).map_err(io)?;
    out.write_all(&field(v.len())?).map_err(io)?;
    out.write_all(v).map_err(io)
}

/// A dump record: the tree's name, the key, the value.
type DumpRecord = (String, Vec<u8>, Vec<u8>);

/// The next dump record, `None` at the end.
fn read_record(input: &mut dyn std::io::Read) -> Result<Option<DumpRecord>, StoreError> {
    let short = |e: std::io::Error| StoreError::Dump(format!("cut short: {e}"));
    let mut len = [0u8; 1];
    match input.read(&mut len) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(short(e)),
    }
    let mut name = vec![0u8; usize::from(len[0])];
    input.read_exact(&mut name).map_err(short)?;
    let name =
        String::from_utf8(name).map_err(|_| StoreError::Dump("a tree name is not UTF-8".into()))?;
    let mut field = || -> Result<Vec<u8>, StoreError> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(short)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_DUMP_FIELD {
            return Err(StoreError::Dump(format!("a field of {len} bytes")));
        }
        let mut bytes = vec![0u8; len];
        input.read_exact(&mut bytes).map_err(short)?;
        Ok(bytes)
    };
    let k = field()?;
    let v = field()?;
    Ok(Some((name, k, v)))
}

fn mls_prefix(scope: &str) -> Vec<u8> {
    let mut p = scope.as_bytes().to_vec();
    p.push(0);
    p
}

/// The stored key of an openmls key in a snapshot: the scope's prefix, then
/// the key in the compact form.
fn mls_key(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut full = prefix.to_vec();
    full.extend_from_slice(&compact::compact(key));
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_mls_snapshots_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.set_meta(MetaKey::Applied, &42u64).expect("put");
            let mut m = BTreeMap::new();
            m.insert(b"a".to_vec(), b"1".to_vec());
            m.insert(b"b".to_vec(), b"2".to_vec());
            s.mls_replace("g1", &m).expect("replace");
            m.remove(b"a".as_slice());
            s.mls_replace("g1", &m).expect("replace");
            s.mls_replace("g10", &BTreeMap::from([(b"x".to_vec(), b"y".to_vec())]))
                .expect("replace");
            s.flush().expect("flush");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.meta::<u64>(MetaKey::Applied).expect("get"), Some(42));
        let g1 = s.mls_load("g1").expect("load");
        assert_eq!(
            g1.len(),
            1,
            "the removed entry stays removed, g10 is separate"
        );
        assert_eq!(g1.get(b"b".as_slice()), Some(&b"2".to_vec()));
    }

    #[test]
    fn a_store_of_the_previous_schema_gets_its_mls_state_compacted_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = br#"GroupState{"value":{"vec":[115,104,97,114,101]}}"#.to_vec();
        let value = br#"{"secret":[1,2,3,200,255,0],"n":7}"#.to_vec();
        {
            // What schema 3 wrote: openmls's JSON as it is.
            let s = Store::open(dir.path()).expect("open");
            let mut raw_key = mls_prefix("g1");
            raw_key.extend_from_slice(&key);
            s.mls.insert(raw_key, value.clone()).expect("insert");
            s.set_meta(MetaKey::Schema, &SCHEMA_BEFORE_COMPACT_MLS)
                .expect("schema");
            s.flush().expect("flush");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            s.meta::<u32>(MetaKey::Schema).expect("schema"),
            Some(SCHEMA_VERSION)
        );
        let g1 = s.mls_load("g1").expect("load");
        assert_eq!(g1, BTreeMap::from([(key.clone(), value.clone())]));
        assert!(s.mls_size("g1").expect("size") < key.len() + value.len());
        // One entry, not the old one beside the new: a removal removes it.
        s.mls_apply("g1", &[], &[key]).expect("remove");
        assert!(s.mls_load("g1").expect("load").is_empty());
        // A store of a schema this build does not know is refused.
        s.set_meta(MetaKey::Schema, &(SCHEMA_VERSION + 1))
            .expect("schema");
        s.flush().expect("flush");
        drop(s);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Schema { .. })
        ));
    }

    #[test]
    fn a_damaged_mls_entry_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let mut key = mls_prefix("g1");
        key.extend_from_slice(b"GroupState");
        // A compact token cut short: 3 bytes announced, 1 present.
        s.mls.insert(key, &[0xFF, 3, 7][..]).expect("insert");
        assert!(matches!(s.mls_load("g1"), Err(StoreError::Compact(scope)) if scope == "g1"));
    }

    #[test]
    fn insert_new_refuses_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.insert_new(Tree::Users, "alice", &1u8, "user")
            .expect("first");
        assert!(matches!(
            s.insert_new(Tree::Users, "alice", &2u8, "user"),
            Err(StoreError::Exists("user"))
        ));
        assert_eq!(s.get::<u8>(Tree::Users, "alice").expect("get"), Some(1));
    }
}
