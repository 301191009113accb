//! Backups of a whole node while it runs: the store, the audit log, the
//! per-dossier keys and the node's own keys and files, as one tar archive
//! (the CLI encrypts it with age before it touches a disk).
//!
//! Consistency comes from the log-first rule. The store is dumped first,
//! with no change between its log entry and its store write (the `changes`
//! lock held exclusively), and each MLS group under its own lock; the
//! checkpoint is copied next, the audit log last: whatever the store holds
//! is in the log copied after it, and a restored node re-applies at start
//! what its log holds, its store lacks and its replay covers (consents,
//! closings, erasures, roster versions, break-glass accesses, référents,
//! users). The per-dossier keys are read while the store is dumped, under
//! the same lock, so every key a copied section needs is there. One backup
//! runs at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::types::Role;

/// The archive format this build writes and restores.
pub const BACKUP_FORMAT: &str = "maillon-backup/1";

/// The file a restore leaves in the node folder: until the node's peers
/// confirm they witnessed no more of its log than it holds, it signs nothing.
pub const RESTORED_MARKER: &str = "restored.json";

/// The last entry of an archive: what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT`].
    pub format: String,
    /// The version of the node that wrote it.
    pub version: String,
    /// The member whose node it is.
    pub member: String,
    /// When it was taken (Unix seconds).
    pub created_at: i64,
    /// Records of the store dump.
    pub store_records: u64,
    /// Bytes of the audit log copied (a torn last batch is cut at open).
    pub log_bytes: u64,
    /// Entries the log held when its copy began (it may hold more).
    pub log_entries: u64,
}

impl Node {
    /// `maillon node backup` (admin): writes the archive into `out`, after
    /// logging who took it. Blocking: run it off the runtime's threads.
    pub async fn backup(
        &self,
        caller: &Caller,
        out: impl Write + Send + 'static,
    ) -> Result<BackupManifest> {
        require(caller, &[Role::Admin])?;
        let dir = self
            .dir
            .clone()
            .ok_or_else(|| ServiceError::State("this node has no folder to back up".into()))?;
        let _one_at_a_time = self.backups.lock().await;
        self.audit(AuditEvent::BackupMade {
            by: Some(caller.name.clone()),
        })
        .await?;
        // No change between its log entry and its store write while the
        // store is dumped and the dossier keys read; reads go on.
        let changes = self.changes.write().await;
        self.flush().await?;
        let dump_path = dump_file(&dir);
        let (store, sharing) = (self.store.clone(), self.sharing.clone());
        let (dumping, keys_dir) = (dump_path.clone(), self.vault.dir().to_owned());
        let dumped = super::blocking(move || -> Result<(u64, DossierKeyFiles)> {
            let n = dump_store(&dumping, &store, |w| Ok(sharing.dump(w)?))?;
            Ok((n, read_keys(&keys_dir)?))
        })
        .await;
        drop(changes);
        let (records, keys) = match dumped {
            Ok(dumped) => dumped,
            Err(e) => {
                let _ = std::fs::remove_file(&dump_path);
                return Err(e);
            }
        };
        let (member, now, entries) = (self.me.to_string(), self.clock.now(), self.audit.size());
        let audit_dir = self
            .audit_log()
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        super::blocking(move || {
            let sources = Sources {
                dir: &dir,
                audit_dir: &audit_dir,
                dump: &dump_path,
                store_records: records,
                dossier_keys: keys,
            };
            let written = write_archive(&sources, &member, now, entries, out);
            let _ = std::fs::remove_file(&dump_path);
            written
        })
        .await
    }
}

fn io(e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("backup: {e}"))
}

/// Where the store is dumped while an archive is made (in the node folder,
/// 0600, removed afterwards).
pub fn dump_file(dir: &Path) -> PathBuf {
    dir.join(".backup-store.dump")
}

/// The per-dossier keys in `dir`, by file name (read while the store is
/// dumped, so that they match it).
pub fn read_keys(dir: &Path) -> Result<DossierKeyFiles> {
    let mut keys = Vec::new();
    if dir.is_dir() {
        for entry in sorted(dir)? {
            if entry.is_file() {
                keys.push((file_name(&entry), std::fs::read(&entry).map_err(io)?));
            }
        }
    }
    Ok(keys)
}

/// The per-dossier key files, by name, with their bytes.
pub type DossierKeyFiles = Vec<(String, Vec<u8>)>;

/// What an archive is made of.
pub struct Sources<'a> {
    /// The node folder (its own files are archived from it).
    pub dir: &'a Path,
    /// The audit log's folder.
    pub audit_dir: &'a Path,
    /// The store dump already made.
    pub dump: &'a Path,
    /// Records in the dump.
    pub store_records: u64,
    /// The per-dossier keys, read with the dump.
    pub dossier_keys: DossierKeyFiles,
}

/// Dumps `store` into a new 0600 file at `path`, synced: its trees, then
/// the MLS state as `mls` writes it; returns how many records.
pub fn dump_store(
    path: &Path,
    store: &crate::storage::Store,
    mls: impl FnOnce(&mut dyn Write) -> Result<u64>,
) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let n = store.dump_trees(&mut w)? + mls(&mut w)?;
    w.flush().map_err(io)?;
    w.get_ref().sync_all().map_err(io)?;
    Ok(n)
}

/// Writes the archive: the store dump, then the audit folder's checkpoint
/// and log (in that order), the per-dossier keys, the node's own files, and
/// the manifest last.
pub fn write_archive(
    sources: &Sources<'_>,
    member: &str,
    now: i64,
    log_entries: u64,
    out: impl Write,
) -> Result<BackupManifest> {
    let (dir, audit_dir, dump) = (sources.dir, sources.audit_dir, sources.dump);
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_path_with_name(dump, "store.dump").map_err(io)?;
    let checkpoint = audit_dir.join("checkpoint");
    if checkpoint.exists() {
        tar.append_path_with_name(&checkpoint, "audit/checkpoint")
            .map_err(io)?;
    }
    // The log as long as it is now; a batch being written is cut at open.
    let log = audit_dir.join("audit.log");
    let log_bytes = std::fs::metadata(&log).map_err(io)?.len();
    let file = std::fs::File::open(&log).map_err(io)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(log_bytes);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(
        &mut header,
        "audit/audit.log",
        std::io::Read::take(file, log_bytes),
    )
    .map_err(io)?;
    for (name, bytes) in &sources.dossier_keys {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("dossier-keys/{name}"),
            bytes.as_slice(),
        )
        .map_err(io)?;
    }
    for entry in sorted(dir)? {
        let name = file_name(&entry);
        let skipped = name == "maillond.lock"
            || name == RESTORED_MARKER
            || name.starts_with('.')
            || name.ends_with(".tmp");
        if entry.is_file() && !skipped {
            tar.append_path_with_name(&entry, format!("node/{name}"))
                .map_err(io)?;
        }
    }
    let manifest = BackupManifest {
        format: BACKUP_FORMAT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        member: member.into(),
        created_at: now,
        store_records: sources.store_records,
        log_bytes,
        log_entries,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, "manifest.json", json.as_slice())
        .map_err(io)?;
    tar.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(manifest)
}

fn sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
