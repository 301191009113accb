//! A node's log as auditors carry it away: a manifest the node signs (its
//! latest checkpoint and the newest one witnesses cosigned, what it witnessed
//! of each peer, its alarms, its roster chain) and the log's leaves, bound to
//! the manifest by the checkpoint's Merkle root.
//!
//! A leaf is either the entry's bytes or, where the node answers a member
//! that does not hold the dossier the entry is about, only its leaf hash:
//! the tree still verifies, the entry's content stays where it was written.
//!
//! The file (`maillon audit export`) is text: a format line, the signed
//! manifest as one line of JSON, then one line per leaf, the entry's bytes in
//! base64 or `-` and the leaf hash in hex.

use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::AuditError;
use super::merkle::{self, Hash};
use crate::crypto::{Context, NodeKey, PublicKey, Signature};
use crate::roster::SignedRoster;
use crate::types::MemberId;

/// The first line of a bundle file, and the manifest's `format`.
pub const BUNDLE_FORMAT: &str = "maillon-audit-bundle/v1";

/// Largest signed manifest served, or taken from a node or a file (bytes of
/// JSON): it travels in one gRPC message (1 MiB) with room to spare.
pub const MAX_MANIFEST: usize = 960 * 1024;

/// The latest checkpoint a node accepted and cosigned of one of its peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessedPeer {
    /// The peer.
    pub member: MemberId,
    /// Its signed checkpoint note.
    pub checkpoint: String,
    /// When it was accepted (Unix seconds).
    pub at: i64,
}

/// An alarm a node raised against a peer, with its evidence: the two signed
/// checkpoints that disagree (the second empty when the peer's answer was
/// not a valid checkpoint). Kept by the witness, exported in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The peer.
    pub member: MemberId,
    /// What it did, in one line.
    pub reason: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The checkpoint the witness had accepted, signed by the peer.
    pub first: String,
    /// The one that disagrees with it, signed by the peer.
    pub second: String,
}

/// What a node states of its log when it exports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The node.
    pub member: MemberId,
    /// When it signed this manifest (Unix seconds).
    pub exported_at: i64,
    /// Its latest signed checkpoint: the leaves cover exactly this tree.
    pub checkpoint: String,
    /// The newest of its checkpoints that witnesses cosigned, with their
    /// cosignatures (the same note as `checkpoint` when none did).
    pub cosigned: String,
    /// The latest checkpoint it accepted of each peer.
    pub witnessed: Vec<WitnessedPeer>,
    /// Every alarm it raised.
    pub alarms: Vec<Evidence>,
    /// The roster chain it adopted, genesis first.
    pub roster_chain: Vec<SignedRoster>,
}

/// A manifest as the node signed it: the JSON and its signature (context
/// `maillon/v1/audit-export`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// The manifest's JSON, as signed.
    pub manifest: String,
    /// The node's signature over it.
    pub signature: Signature,
}

impl SignedManifest {
    /// Signs a manifest.
    pub fn sign(manifest: &Manifest, key: &NodeKey) -> Self {
        let json = serde_json::to_string(manifest).unwrap_or_default();
        let signature = key.sign(Context::AuditExport, json.as_bytes());
        Self {
            manifest: json,
            signature,
        }
    }

    /// The manifest, once its signature verifies under one of `keys` (every
    /// key the node held) and it names `member`. The error never quotes it.
    pub fn open(&self, member: &MemberId, keys: &[PublicKey]) -> Result<Manifest, AuditError> {
        too_large(self.manifest.len())?;
        if !keys.iter().any(|k| {
            k.verify(
                Context::AuditExport,
                self.manifest.as_bytes(),
                &self.signature,
            )
            .is_ok()
        }) {
            return Err(AuditError::Verify(format!(
                "the manifest is not signed by {member}'s key"
            )));
        }
        let m: Manifest = serde_json::from_str(&self.manifest).map_err(|e| {
            AuditError::Corrupt(format!(
                "undecodable manifest (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if m.format != BUNDLE_FORMAT {
            return Err(AuditError::Corrupt("not a maillon audit bundle v1".into()));
        }
        if &m.member != member {
            return Err(AuditError::Verify(format!(
                "the manifest is {}'s, not {member}'s",
                m.member
            )));
        }
        Ok(m)
    }

    /// The manifest as it reads before any check (to find the roster chain
    /// and the keys to check it with); trust only what [`Self::open`] returns.
    pub fn unverified(&self) -> Result<Manifest, AuditError> {
        too_large(self.manifest.len())?;
        serde_json::from_str(&self.manifest)
            .map_err(|_| AuditError::Corrupt("undecodable manifest".into()))
    }

    /// The member the manifest says it is about, before any check (to find
    /// the keys to check it with).
    pub fn claimed_member(&self) -> Result<MemberId, AuditError> {
        #[derive(Deserialize)]
        struct Who {
            member: MemberId,
        }
        too_large(self.manifest.len())?;
        serde_json::from_str::<Who>(&self.manifest)
            .map(|w| w.member)
            .map_err(|_| AuditError::Corrupt("the manifest names no member".into()))
    }
}

fn too_large(len: usize) -> Result<(), AuditError> {
    if len > MAX_MANIFEST {
        return Err(AuditError::Corrupt(format!(
            "the manifest is {len} bytes; the limit is {MAX_MANIFEST}"
        )));
    }
    Ok(())
}

/// One leaf of an exported log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// The entry's bytes, as the log holds them.
    Entry(Vec<u8>),
    /// Only the leaf hash: the entry is about a dossier the asker does not hold.
    Withheld(Hash),
}

impl Leaf {
    /// The RFC 6962 leaf hash.
    pub fn hash(&self) -> Hash {
        match self {
            Leaf::Entry(bytes) => merkle::leaf_hash(bytes),
            Leaf::Withheld(h) => *h,
        }
    }
}

/// A node's exported log: its signed manifest and every leaf its checkpoint covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The leaves, from index 0.
    pub leaves: Vec<Leaf>,
}

impl Bundle {
    /// Writes the bundle file.
    pub fn write(&self, mut out: impl Write) -> std::io::Result<()> {
        writeln!(out, "{BUNDLE_FORMAT}")?;
        serde_json::to_writer(&mut out, &self.manifest)?;
        writeln!(out)?;
        for leaf in &self.leaves {
            match leaf {
                Leaf::Entry(bytes) => writeln!(out, "{}", B64.encode(bytes))?,
                Leaf::Withheld(h) => writeln!(out, "-{}", hex::encode(h))?,
            }
        }
        out.flush()
    }

    /// Reads a bundle file; nothing is verified yet. Errors name the line.
    pub fn read(input: impl BufRead) -> Result<Self, AuditError> {
        let mut lines = input.lines();
        let mut next = |n: usize| -> Result<Option<String>, AuditError> {
            lines.next().transpose().map_err(|e| AuditError::Io {
                path: std::path::PathBuf::from(format!("line {n}")),
                source: e,
            })
        };
        if next(1)?.as_deref() != Some(BUNDLE_FORMAT) {
            return Err(AuditError::Corrupt(format!(
                "line 1: not a maillon audit bundle (expected {BUNDLE_FORMAT})"
            )));
        }
        let head = next(2)?.ok_or_else(|| AuditError::Corrupt("line 2: no manifest".into()))?;
        too_large(head.len().saturating_sub(1024))?;
        let manifest: SignedManifest = serde_json::from_str(&head)
            .map_err(|_| AuditError::Corrupt("line 2: not a signed manifest".into()))?;
        let mut leaves = Vec::new();
        let mut n = 3;
        while let Some(line) = next(n)? {
            let leaf = match line.strip_prefix('-') {
                Some(h) => hex::decode(h)
                    .ok()
                    .and_then(|v| Hash::try_from(v).ok())
                    .map(Leaf::Withheld),
                None if line.len() <= 2 * super::MAX_EVENT => {
                    B64.decode(&line).ok().map(Leaf::Entry)
                }
                None => None,
            }
            .ok_or_else(|| AuditError::Corrupt(format!("line {n}: not a leaf")))?;
            leaves.push(leaf);
            n += 1;
        }
        Ok(Self { manifest, leaves })
    }
}

/// One entry about a dossier, with its inclusion proof in the tree of
/// [`DossierPart::checkpoint`].
#[derive(Clone, Debug)]
pub struct ProvenEntry {
    /// Its leaf index.
    pub index: u64,
    /// The entry's bytes, as the log holds them.
    pub entry: Vec<u8>,
    /// Its inclusion proof.
    pub proof: Vec<Hash>,
}

/// What one member's log says of a dossier, proven.
#[derive(Clone, Debug)]
pub struct DossierPart {
    /// The member.
    pub member: MemberId,
    /// Its latest signed checkpoint: every proof is against this tree.
    pub checkpoint: String,
    /// The newest of its checkpoints witnesses cosigned, with their cosignatures.
    pub cosigned: String,
    /// A consistency proof from the cosigned tree to the checkpoint's
    /// (empty when they are the same tree).
    pub consistency: Vec<Hash>,
    /// Its entries about the dossier, from the index asked.
    pub entries: Vec<ProvenEntry>,
    /// The members it knows to hold the dossier (to ask them too).
    pub holders: Vec<MemberId>,
    /// Where to ask again from, when the answer stopped early.
    pub next: Option<u64>,
    /// Why the member did not answer, when it did not (the others still count).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(member: &MemberId) -> Manifest {
        Manifest {
            format: BUNDLE_FORMAT.into(),
            member: member.clone(),
            exported_at: 1_800_000_000,
            checkpoint: "c".into(),
            cosigned: "c".into(),
            witnessed: Vec::new(),
            alarms: Vec::new(),
            roster_chain: Vec::new(),
        }
    }

    #[test]
    fn a_bundle_round_trips_and_its_manifest_opens_only_under_its_key() {
        let key = NodeKey::generate();
        let me: MemberId = "ccas-rodez".parse().expect("test value");
        let bundle = Bundle {
            manifest: SignedManifest::sign(&manifest(&me), &key),
            leaves: vec![
                Leaf::Entry(b"{\"time\":1}".to_vec()),
                Leaf::Withheld([7; 32]),
            ],
        };
        let mut file = Vec::new();
        bundle.write(&mut file).expect("test value");
        let back = Bundle::read(&file[..]).expect("test value");
        assert_eq!(back, bundle);
        assert_eq!(back.manifest.claimed_member().expect("test value"), me);
        assert_eq!(
            back.manifest
                .open(&me, &[key.public()])
                .expect("test value"),
            manifest(&me)
        );
        let other = NodeKey::generate();
        assert!(back.manifest.open(&me, &[other.public()]).is_err());
        let them: MemberId = "caf12".parse().expect("test value");
        assert!(back.manifest.open(&them, &[key.public()]).is_err());
        let mut edited = back.clone();
        edited.manifest.manifest = edited.manifest.manifest.replace("1800000000", "1800000001");
        assert!(edited.manifest.open(&me, &[key.public()]).is_err());
        // A signature under another context does not open it.
        let mut wrong = back;
        wrong.manifest.signature = key.sign(Context::Receipt, wrong.manifest.manifest.as_bytes());
        assert!(wrong.manifest.open(&me, &[key.public()]).is_err());
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(Bundle::read(&b"something else\n"[..]).is_err());
        let key = NodeKey::generate();
        let me: MemberId = "ccas-rodez".parse().expect("test value");
        let mut file = Vec::new();
        Bundle {
            manifest: SignedManifest::sign(&manifest(&me), &key),
            leaves: Vec::new(),
        }
        .write(&mut file)
        .expect("test value");
        file.extend_from_slice(b"-zz\n");
        match Bundle::read(&file[..]) {
            Err(AuditError::Corrupt(m)) => assert!(m.starts_with("line 3:"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
