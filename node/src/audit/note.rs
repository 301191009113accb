//! C2SP signed notes and `tlog-checkpoint` bodies, with Ed25519 keys. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::merkle::Hash;
use crate::crypto::{NodeKey, PublicKey, sha256};

/// Why a note or checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// The text is not a well-formed note or checkpoint.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature line by the expected key.
    #[error("no signature by {0}")]
    Unsigned(String),
    /// The signature by the expected key does not verify.
    #[error("bad signature by {0}")]
    BadSignature(String),
}

/// The 4-byte key id of an Ed25519 note key: `SHA-256(name || "\n" || 0x01 || key)[..4]`.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut buf = name.as_bytes().to_vec();
    buf.push(b'\n');
    buf.push(0x01);
    buf.extend_from_slice(&key.to_bytes());
    let h = sha256(&buf);
    [h[0], h[1], h[2], h[3]]
}

/// The verifier key string `<name>+<key id hex>+<base64(0x01 || key)>`.
pub fn verifier_key(name: &str, key: &PublicKey) -> String {
    let mut k = vec![0x01];
    k.extend_from_slice(&key.to_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, key)),
        B64.encode(k)
    )
}

/// Signs `text` (which must end in a newline) as a note by `name`.
pub fn sign(text: &str, name: &str, key: &NodeKey) -> String {
    debug_assert!(text.ends_with('\n'));
    let sig = key.sign_note_text(text.as_bytes());
    let mut blob = key_id(name, &key.public()).to_vec();
    blob.extend_from_slice(&sig);
    format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob))
}

/// Verifies that `note` carries a valid signature by `name`/`key`; returns the signed text.
pub fn verify<'a>(note: &'a str, name: &str, key: &PublicKey) -> Result<&'a str, NoteError> {
    let split = note
        .find("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end in a newline",
        ));
    }
    let want = key_id(name, key);
    let mut seen = false;
    for line in sigs.lines() {
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
            "signature line must start with an em dash",
        ))?;
        let (who, b64) = rest
            .rsplit_once(' ')
            .ok_or(NoteError::Malformed("signature line without signature"))?;
        if who != name {
            continue;
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() != 68 || blob[..4] != want {
            continue;
        }
        seen = true;
        let sig: [u8; 64] = blob[4..]
            .try_into()
            .map_err(|_| NoteError::Malformed("signature length"))?;
        if key.verify_note_text(text.as_bytes(), &sig).is_ok() {
            return Ok(text);
        }
    }
    if seen {
        Err(NoteError::BadSignature(name.to_owned()))
    } else {
        Err(NoteError::Unsigned(name.to_owned()))
    }
}

/// A log's signed statement of its size and root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Merkle root of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The signed note.
    pub fn sign(&self, key: &NodeKey) -> String {
        sign(&self.body(), &self.origin, key)
    }

    /// Verifies a signed checkpoint note from `origin` and parses it.
    pub fn verify(note: &str, origin: &str, key: &PublicKey) -> Result<Self, NoteError> {
        let text = verify(note, origin, key)?;
        let mut lines = text.lines();
        let o = lines.next().ok_or(NoteError::Malformed("no origin"))?;
        if o != origin {
            return Err(NoteError::Malformed("origin does not match"));
        }
        let size = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::Malformed("tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::Malformed("root hash"))?;
        let cp = Self {
            origin: origin.to_owned(),
            size,
            root,
        };
        // The signed text is exactly the canonical body: no extension line,
        // no other spelling of the size, so what a witness cosigns is what
        // the log signed.
        if text != cp.body() {
            return Err(NoteError::Malformed("not a canonical checkpoint body"));
        }
        Ok(cp)
    }
}

impl Checkpoint {
    /// Parses the body of a checkpoint note without checking any signature
    /// (for a note this node signed itself and persisted).
    pub fn parse_body(note: &str) -> Option<Self> {
        let mut lines = note.lines();
        let origin = lines.next()?.to_owned();
        let size = lines.next()?.parse().ok()?;
        let root = B64.decode(lines.next()?).ok()?.try_into().ok()?;
        Some(Self { origin, size, root })
    }
}

/// The key id of a witness's cosignature key (C2SP tlog-cosignature):
/// `SHA-256(name || "\n" || 0x04 || key)[..4]`.
pub fn cosignature_key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut buf = name.as_bytes().to_vec();
    buf.push(b'\n');
    buf.push(0x04);
    buf.extend_from_slice(&key.to_bytes());
    let h = sha256(&buf);
    [h[0], h[1], h[2], h[3]]
}

/// What a witness signs for a checkpoint body at `time` (C2SP tlog-cosignature v1).
fn cosigned_message(body: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// A witness's cosignature line over a checkpoint body:
/// `— <name> base64(key id || u64be(time) || signature)`.
pub fn cosign(body: &str, time: u64, name: &str, key: &NodeKey) -> String {
    let sig = key.sign_note_text(cosigned_message(body, time).as_bytes());
    let mut blob = cosignature_key_id(name, &key.public()).to_vec();
    blob.extend_from_slice(&time.to_be_bytes());
    blob.extend_from_slice(&sig);
    format!("\u{2014} {name} {}", B64.encode(blob))
}

/// Checks a cosignature line by `name`/`key` over `body`; returns its time.
pub fn verify_cosignature(
    line: &str,
    body: &str,
    name: &str,
    key: &PublicKey,
) -> Result<u64, NoteError> {
    let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
        "cosignature line must start with an em dash",
    ))?;
    let (who, b64) = rest
        .rsplit_once(' ')
        .ok_or(NoteError::Malformed("cosignature line without signature"))?;
    if who != name {
        return Err(NoteError::Unsigned(name.to_owned()));
    }
    let blob = B64
        .decode(b64)
        .map_err(|_| NoteError::Malformed("cosignature is not base64"))?;
    if blob.len() != 4 + 8 + 64 || blob[..4] != cosignature_key_id(name, key) {
        return Err(NoteError::Unsigned(name.to_owned()));
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&blob[4..12]);
    let time = u64::from_be_bytes(time);
    if time > i64::MAX as u64 {
        return Err(NoteError::Malformed("cosignature time out of range"));
    }
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&blob[12..]);
    key.verify_note_text(cosigned_message(body, time).as_bytes(), &sig)
        .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
    Ok(time)
}

/// The first line of a C2SP `tlog-proof` (an offline-verifiable proof that
/// an entry is in a log, with the checkpoint and its cosignatures).
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most hashes an inclusion proof holds (a tree of 2^63 leaves).
const MAX_PROOF_HASHES: usize = 63;

/// A C2SP `tlog-proof`: the entry's index, its inclusion proof, and the
/// signed checkpoint (with its cosignatures) the proof is against. Nothing
/// in it is trusted until [`Self::verify`] checks it against a leaf and the
/// log's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data, when the proof carries some.
    pub extra: Option<Vec<u8>>,
    /// The entry's leaf index.
    pub index: u64,
    /// Its inclusion proof, leaf to root.
    pub hashes: Vec<Hash>,
    /// The checkpoint note, signature and cosignature lines included.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof as text: the header, `extra` when present, `index N`, one
    /// base64 hash a line, a blank line, then the checkpoint note.
    pub fn encode(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof's text; nothing is verified.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the checkpoint"))?;
        let mut lines = head.lines();
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(NoteError::Malformed("not a c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next();
        let extra = match line.and_then(|l| l.strip_prefix("extra ")) {
            Some(b) => {
                line = lines.next();
                Some(
                    B64.decode(b)
                        .map_err(|_| NoteError::Malformed("extra is not base64"))?,
                )
            }
            None => None,
        };
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .filter(|n| !n.starts_with('0') || *n == "0")
            .and_then(|n| n.parse().ok())
            .ok_or(NoteError::Malformed("index line"))?;
        let hashes = lines
            .take(MAX_PROOF_HASHES + 1)
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or(NoteError::Malformed("proof hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hashes.len() > MAX_PROOF_HASHES {
            return Err(NoteError::Malformed("too many proof hashes"));
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Checks the proof: the checkpoint signed by `origin`/`key`, and
    /// `leaf` (the entry's bytes) at the proof's index in its tree.
    /// Returns the checkpoint.
    pub fn verify(
        &self,
        leaf: &[u8],
        origin: &str,
        key: &PublicKey,
    ) -> Result<Checkpoint, NoteError> {
        self.verify_hash(&super::merkle::leaf_hash(leaf), origin, key)
    }

    /// [`Self::verify`] for an entry known only by its RFC 6962 leaf hash.
    pub fn verify_hash(
        &self,
        leaf_hash: &Hash,
        origin: &str,
        key: &PublicKey,
    ) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint::verify(&self.checkpoint, origin, key)?;
        if !super::merkle::verify_inclusion(self.index, cp.size, leaf_hash, &self.hashes, &cp.root)
        {
            return Err(NoteError::Malformed(
                "the entry is not at that index in the checkpoint's tree",
            ));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_refuse_tampering() {
        let key = NodeKey::generate();
        let cp = Checkpoint {
            origin: "gip-aveyron/ccas-rodez".into(),
            size: 7,
            root: [9; 32],
        };
        let note = cp.sign(&key);
        assert!(note.contains("\n\n\u{2014} gip-aveyron/ccas-rodez "));
        assert_eq!(
            Checkpoint::verify(&note, &cp.origin, &key.public()),
            Ok(cp.clone())
        );
        let tampered = note.replacen("\n7\n", "\n8\n", 1);
        assert_eq!(
            Checkpoint::verify(&tampered, &cp.origin, &key.public()),
            Err(NoteError::BadSignature(cp.origin.clone()))
        );
        let other = NodeKey::generate();
        assert_eq!(
            Checkpoint::verify(&note, &cp.origin, &other.public()),
            Err(NoteError::Unsigned(cp.origin.clone()))
        );
        let vk = verifier_key(&cp.origin, &key.public());
        assert!(vk.starts_with("gip-aveyron/ccas-rodez+"));
        assert_eq!(vk.split('+').nth(1).map(str::len), Some(8));
    }

    #[test]
    fn cosignatures_are_bound_to_the_witness_the_body_and_the_time() {
        let (log, witness) = (NodeKey::generate(), NodeKey::generate());
        let cp = Checkpoint {
            origin: "maillon/ccas-rodez".into(),
            size: 3,
            root: [1; 32],
        };
        let line = cosign(&cp.body(), 1_800_000_000, "maillon/caf12", &witness);
        assert_eq!(
            verify_cosignature(&line, &cp.body(), "maillon/caf12", &witness.public()),
            Ok(1_800_000_000)
        );
        let other = Checkpoint {
            size: 4,
            ..cp.clone()
        };
        assert!(
            verify_cosignature(&line, &other.body(), "maillon/caf12", &witness.public()).is_err()
        );
        assert!(verify_cosignature(&line, &cp.body(), "maillon/caf12", &log.public()).is_err());
        assert!(verify_cosignature(&line, &cp.body(), "maillon/cd12", &witness.public()).is_err());
        let later = line.replacen("maillon/caf12 ", "maillon/caf12  ", 1);
        assert!(
            verify_cosignature(&later, &cp.body(), "maillon/caf12", &witness.public()).is_err()
        );
        // A cosignature key id is not the note key id of the same key.
        assert_ne!(
            cosignature_key_id("maillon/caf12", &witness.public()),
            key_id("maillon/caf12", &witness.public())
        );
        assert_eq!(Checkpoint::parse_body(&cp.sign(&log)), Some(cp));
    }
    #[test]
    fn a_tlog_proof_round_trips_and_proves_only_its_entry() {
        let key = NodeKey::generate();
        let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
        let leaves: Vec<Hash> = entries
            .iter()
            .map(|e| super::super::merkle::leaf_hash(e))
            .collect();
        let cp = Checkpoint {
            origin: "maillon/ccas-rodez".into(),
            size: 5,
            root: super::super::merkle::root(&leaves),
        };
        let proof = TlogProof {
            extra: Some(b"maillon".to_vec()),
            index: 3,
            hashes: super::super::merkle::inclusion_proof(&leaves, 3).expect("proof"),
            checkpoint: cp.sign(&key),
        };
        let text = proof.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra bWFpbGxvbg==\nindex 3\n"));
        let back = TlogProof::parse(&text).expect("parses");
        assert_eq!(back, proof);
        assert_eq!(
            back.verify(&entries[3], &cp.origin, &key.public()),
            Ok(cp.clone())
        );
        assert!(back.verify(&entries[2], &cp.origin, &key.public()).is_err());
        assert!(
            back.verify(&entries[3], &cp.origin, &NodeKey::generate().public())
                .is_err()
        );
        let without = TlogProof {
            extra: None,
            ..proof
        };
        assert_eq!(TlogProof::parse(&without.encode()), Ok(without));
        for bad in [
            "c2sp.org/tlog-proof@v2\nindex 1\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex +1\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 1\nnot-a-hash\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 1\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad}");
        }
    }
}
