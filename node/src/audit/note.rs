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
}
