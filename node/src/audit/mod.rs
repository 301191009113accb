//! The node's verifiable audit log: an append-only file of events, hashed as an
//! RFC 6962 Merkle tree, with checkpoints signed by the node key.
//!
//! Appends are group-committed: one writer thread takes every event queued,
//! writes them, calls `fdatasync` once, and only then acknowledges each. A read
//! is answered only after its event is acknowledged, so no access goes unlogged.

pub mod merkle;
pub mod note;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::crypto::{NodeKey, PublicKey};
use crate::types::{ConsentId, DossierId, MemberId, Role, Section, UserName};
use merkle::Hash;
use note::Checkpoint;

/// Largest event accepted in the log (bytes of JSON).
pub const MAX_EVENT: usize = 64 * 1024;

/// Most events appended in one group commit.
const MAX_BATCH: usize = 4096;

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is damaged or does not match its last signed checkpoint.
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
    /// An earlier write failed; the log refuses appends until the node restarts.
    #[error("audit log is unavailable after a failed write")]
    Unavailable,
    /// A checkpoint or proof did not verify.
    #[error("audit verification failed: {0}")]
    Verify(String),
}

/// Something that happened at this node and must be accountable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditEvent {
    /// The node adopted a roster version.
    RosterAdopted {
        /// Version adopted.
        version: u64,
        /// Hex hash of its canonical bytes.
        hash: String,
    },
    /// A node-local user was created.
    UserCreated {
        /// The user.
        user: UserName,
        /// Its role.
        role: Role,
        /// Who created it (`None` at node initialisation).
        by: Option<UserName>,
    },
    /// A node-local user was removed; its token no longer works.
    UserRemoved {
        /// The user.
        user: UserName,
        /// The admin who removed it.
        by: UserName,
    },
    /// A dossier was opened at this node.
    DossierOpened {
        /// The dossier.
        dossier: DossierId,
        /// The caseworker.
        by: UserName,
    },
    /// This node wrote its copy of a section.
    SectionWritten {
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// The caseworker.
        by: UserName,
    },
    /// A consent was recorded.
    ConsentGranted {
        /// The consent.
        consent: ConsentId,
        /// The dossier.
        dossier: DossierId,
        /// Sections covered.
        sections: Vec<Section>,
        /// Members that may read.
        audience: Vec<MemberId>,
        /// Last day it holds.
        until: crate::types::Date,
        /// The caseworker who recorded it.
        by: UserName,
    },
    /// A consent was revoked.
    ConsentRevoked {
        /// The consent.
        consent: ConsentId,
        /// The dossier.
        dossier: DossierId,
        /// The caseworker who recorded the revocation.
        by: UserName,
    },
    /// The owner added a member to a share's MLS group.
    GroupMemberAdded {
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// The member added.
        member: MemberId,
        /// The group's epoch after the commit.
        epoch: u64,
    },
    /// The owner removed a member from a share's MLS group.
    GroupMemberRemoved {
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// The member removed.
        member: MemberId,
        /// The group's epoch after the commit.
        epoch: u64,
    },
    /// This node joined another owner's share group.
    GroupJoined {
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// The owner.
        owner: MemberId,
        /// The epoch joined at.
        epoch: u64,
    },
    /// The owner answered a read of one of its sections.
    ReadGranted {
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The reading member.
        reader: MemberId,
        /// The user at the reader.
        user: UserName,
        /// The user's role.
        role: Role,
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// The consent that allowed it.
        consent: ConsentId,
        /// The stated purpose.
        purpose: String,
    },
    /// The owner refused a read.
    ReadDenied {
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The reading member.
        reader: MemberId,
        /// The user at the reader.
        user: UserName,
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// Why.
        reason: String,
    },
    /// A reader logged the owner's receipt for a section it read.
    ReceiptLogged {
        /// The owner that answered.
        owner: MemberId,
        /// The local user who read.
        user: UserName,
        /// The dossier.
        dossier: DossierId,
        /// The section.
        section: Section,
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The owner's leaf index for the access.
        owner_leaf: u64,
    },
}

/// One leaf of the log: an event and when it was recorded (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the node recorded it.
    pub time: i64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditEntry {
    /// The leaf bytes: the entry's JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses leaf bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AuditError::Corrupt(format!("undecodable entry: {e}")))
    }
}

struct LogState {
    leaves: Vec<Hash>,
    /// Offset of each record's frame in the file.
    offsets: Vec<u64>,
    failed: bool,
}

struct Job {
    data: Vec<u8>,
    reply: oneshot::Sender<Result<u64, AuditError>>,
}

/// The append-only audit log of one node.
pub struct AuditLog {
    path: PathBuf,
    origin: String,
    state: Arc<RwLock<LogState>>,
    jobs: mpsc::Sender<Job>,
    /// One checkpoint is signed and persisted at a time.
    checkpointing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every complete frame; returns (entries, offsets, length of the valid prefix).
/// The complete frames of a log file.
struct Frames {
    entries: Vec<Vec<u8>>,
    offsets: Vec<u64>,
    /// Length of the valid prefix of the file.
    valid_len: u64,
}

fn read_frames(file: &mut File, path: &Path) -> Result<Frames, AuditError> {
    let mut all = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    file.read_to_end(&mut all).map_err(io_err(path))?;
    let (mut entries, mut offsets, mut pos) = (Vec::new(), Vec::new(), 0usize);
    while pos + 4 <= all.len() {
        let len = u32::from_be_bytes([all[pos], all[pos + 1], all[pos + 2], all[pos + 3]]) as usize;
        // A frame that is cut short, oversized or undecodable ends the valid
        // prefix; `AuditLog::open` decides whether what follows may be dropped.
        if len > MAX_EVENT || pos + 4 + len > all.len() {
            break;
        }
        let data = all[pos + 4..pos + 4 + len].to_vec();
        if AuditEntry::from_bytes(&data).is_err() {
            break;
        }
        offsets.push(pos as u64);
        entries.push(data);
        pos += 4 + len;
    }
    Ok(Frames {
        entries,
        offsets,
        valid_len: pos as u64,
    })
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, checks it against its last signed
    /// checkpoint, and starts the group-commit writer.
    pub fn open(dir: &Path, origin: String, key: &PublicKey) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("audit.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let Frames {
            entries,
            offsets,
            valid_len,
        } = read_frames(&mut file, &path)?;
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let cp_path = dir.join("checkpoint");
        if let Ok(note) = std::fs::read_to_string(&cp_path) {
            let cp = Checkpoint::verify(&note, &origin, key)
                .map_err(|e| AuditError::Corrupt(format!("last checkpoint: {e}")))?;
            let size = usize::try_from(cp.size).unwrap_or(usize::MAX);
            if size > leaves.len() || merkle::root(&leaves[..size]) != cp.root {
                return Err(AuditError::Corrupt(
                    "the log does not match its last signed checkpoint".into(),
                ));
            }
        }
        let file_len = file.metadata().map_err(io_err(&path))?.len();
        if valid_len < file_len {
            // Only the tail after the valid prefix is dropped: the remains of a
            // batch whose fdatasync never returned, so never acknowledged.
            tracing::warn!(
                path = %path.display(),
                dropped = file_len - valid_len,
                "dropping an unacknowledged torn tail of the audit log"
            );
            file.set_len(valid_len).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        let state = Arc::new(RwLock::new(LogState {
            leaves,
            offsets,
            failed: false,
        }));
        let (jobs, rx) = mpsc::channel();
        let writer_state = state.clone();
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, valid_len, writer_path, rx, writer_state))
            .map_err(io_err(&path))?;
        Ok(Self {
            path,
            origin,
            state,
            jobs,
            checkpointing: std::sync::Mutex::new(()),
        })
    }

    /// The log's origin (checkpoint key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends an event and returns its leaf index once it is durable.
    pub async fn append(&self, time: i64, event: AuditEvent) -> Result<u64, AuditError> {
        let data = AuditEntry { time, event }.to_bytes();
        if data.len() > MAX_EVENT {
            return Err(AuditError::Corrupt("event too large".into()));
        }
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { data, reply })
            .map_err(|_| AuditError::Unavailable)?;
        rx.await.map_err(|_| AuditError::Unavailable)?
    }

    /// The number of durable leaves.
    pub fn size(&self) -> u64 {
        self.read_state().leaves.len() as u64
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, LogState> {
        match self.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Entries `[from, from + limit)` with their indices.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let offsets: Vec<u64> = {
            let st = self.read_state();
            let start = usize::try_from(from)
                .unwrap_or(usize::MAX)
                .min(st.offsets.len());
            let end = start.saturating_add(limit).min(st.offsets.len());
            st.offsets[start..end].to_vec()
        };
        let mut file = File::open(&self.path).map_err(io_err(&self.path))?;
        let mut out = Vec::with_capacity(offsets.len());
        for (i, off) in offsets.into_iter().enumerate() {
            file.seek(SeekFrom::Start(off))
                .map_err(io_err(&self.path))?;
            let mut len = [0u8; 4];
            file.read_exact(&mut len).map_err(io_err(&self.path))?;
            let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
            file.read_exact(&mut data).map_err(io_err(&self.path))?;
            out.push((from + i as u64, data));
        }
        Ok(out)
    }

    /// Signs a checkpoint of the current tree, after persisting it as the last signed one.
    pub fn checkpoint(&self, key: &NodeKey) -> Result<String, AuditError> {
        let _one_at_a_time = match self.checkpointing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let cp = {
            let st = self.read_state();
            Checkpoint {
                origin: self.origin.clone(),
                size: st.leaves.len() as u64,
                root: merkle::root(&st.leaves),
            }
        };
        let note = cp.sign(key);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join("checkpoint.tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(note.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, dir.join("checkpoint")).map_err(io_err(&tmp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(note)
    }
}

fn writer(
    mut file: File,
    mut len: u64,
    path: PathBuf,
    rx: mpsc::Receiver<Job>,
    state: Arc<RwLock<LogState>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failed = match state.read() {
            Ok(g) => g.failed,
            Err(p) => p.into_inner().failed,
        };
        if failed {
            for job in batch {
                let _ = job.reply.send(Err(AuditError::Unavailable));
            }
            continue;
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(batch.len());
        for job in &batch {
            offsets.push(len + buf.len() as u64);
            buf.extend_from_slice(&(job.data.len() as u32).to_be_bytes());
            buf.extend_from_slice(&job.data);
        }
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        let mut st = match state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match written {
            Ok(()) => {
                len += buf.len() as u64;
                let first_index = st.leaves.len() as u64;
                for (i, (job, off)) in batch.into_iter().zip(offsets).enumerate() {
                    st.leaves.push(merkle::leaf_hash(&job.data));
                    st.offsets.push(off);
                    let _ = job.reply.send(Ok(first_index + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "audit log write failed; refusing further appends");
                st.failed = true;
                let _ = file.set_len(len);
                for job in batch {
                    let _ = job.reply.send(Err(AuditError::Unavailable));
                }
            }
        }
    }
}

/// Verifies a whole log as an auditor would: every entry decodes, and the
/// signed checkpoint covers exactly their Merkle root.
pub fn verify_log(
    entries: &[Vec<u8>],
    checkpoint_note: &str,
    origin: &str,
    key: &PublicKey,
) -> Result<Checkpoint, AuditError> {
    let cp = Checkpoint::verify(checkpoint_note, origin, key)
        .map_err(|e| AuditError::Verify(e.to_string()))?;
    if cp.size != entries.len() as u64 {
        return Err(AuditError::Verify(format!(
            "checkpoint covers {} leaves, {} given",
            cp.size,
            entries.len()
        )));
    }
    let mut leaves = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        AuditEntry::from_bytes(e).map_err(|err| AuditError::Verify(format!("leaf {i}: {err}")))?;
        leaves.push(merkle::leaf_hash(e));
    }
    if merkle::root(&leaves) != cp.root {
        return Err(AuditError::Verify(
            "root does not match the checkpoint".into(),
        ));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent::RosterAdopted {
            version: i,
            hash: "00".into(),
        }
    }

    #[tokio::test]
    async fn appends_are_durable_ordered_and_verifiable_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let origin = "gip/ccas-rodez".to_string();
        let note = {
            let log =
                Arc::new(AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("open"));
            let mut tasks = Vec::new();
            for i in 0..200 {
                let log = log.clone();
                tasks.push(tokio::spawn(
                    async move { log.append(i, event(i as u64)).await },
                ));
            }
            let mut indices = Vec::new();
            for t in tasks {
                indices.push(t.await.expect("join").expect("append"));
            }
            indices.sort_unstable();
            assert_eq!(indices, (0..200).collect::<Vec<u64>>());
            log.checkpoint(&key).expect("checkpoint")
        };
        let log = AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("reopen");
        assert_eq!(log.size(), 200);
        let entries: Vec<Vec<u8>> = log
            .entries(0, 1000)
            .expect("entries")
            .into_iter()
            .map(|e| e.1)
            .collect();
        let cp = verify_log(&entries, &note, &origin, &key.public()).expect("verifies");
        assert_eq!(cp.size, 200);
        let mut tampered = entries.clone();
        tampered[3] = AuditEntry {
            time: 0,
            event: event(99),
        }
        .to_bytes();
        assert!(verify_log(&tampered, &note, &origin, &key.public()).is_err());
    }

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_a_rewritten_history_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let origin = "gip/cd12".to_string();
        {
            let log = AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("open");
            log.append(1, event(1)).await.expect("append");
            log.append(2, event(2)).await.expect("append");
            log.checkpoint(&key).expect("checkpoint");
        }
        let path = dir.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[0, 0, 0, 50, b'{']).expect("torn write");
        drop(f);
        let log =
            AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("torn tail dropped");
        assert_eq!(log.size(), 2);
        drop(log);
        // Rewrite the first record in place: same length, different content.
        let mut bytes = std::fs::read(&path).expect("read");
        let pos = bytes.iter().position(|&b| b == b'1').expect("a digit");
        bytes[pos] = b'7';
        std::fs::write(&path, bytes).expect("write");
        assert!(matches!(
            AuditLog::open(dir.path(), origin, &key.public()),
            Err(AuditError::Corrupt(_))
        ));
    }
}
