//! The wire types of the peer protocol that are signed: a reader's read
//! request and an owner's receipt, and the bytes-plus-signature pair both
//! travel as. Pure: no I/O, no policy.

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PublicKey, Signature, sha256};
use crate::types::{DossierId, MemberId, Role, Section, UserName};

/// Largest signed read request accepted from a peer (bytes).
pub const MAX_REQUEST: usize = 16 * 1024;

/// Why a signed protocol message is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are larger than the protocol allows.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// Which message.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The bytes are not the message they claim to be.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// The decoder's reason (it never quotes the input).
        reason: String,
    },
    /// The signature does not verify under the key the roster lists.
    #[error("the {0} signature does not verify")]
    BadSignature(&'static str),
    /// A receipt signed correctly, but for another request or by another owner.
    #[error("the receipt is for another request")]
    OtherRequest,
}

/// Bytes and the signature over them.
#[derive(Clone, Debug)]
pub struct SignedBytes {
    /// The canonical JSON bytes.
    pub bytes: Vec<u8>,
    /// The signature over `bytes`, in the message's own context.
    pub signature: Signature,
}

impl SignedBytes {
    /// Signs the JSON encoding of `value` in `ctx`.
    pub fn sign<T: Serialize>(value: &T, ctx: Context, key: &NodeKey) -> Self {
        // Serializing these plain structs cannot fail: no maps with non-string
        // keys, no custom serializers that error.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let signature = key.sign(ctx, &bytes);
        Self { bytes, signature }
    }

    /// Checks the signature over the bytes with `key`, in `ctx`; `what`
    /// names the message in the error.
    pub fn verify(
        &self,
        ctx: Context,
        key: &PublicKey,
        what: &'static str,
    ) -> Result<(), ProtocolError> {
        key.verify(ctx, &self.bytes, &self.signature)
            .map_err(|_| ProtocolError::BadSignature(what))
    }

    /// Hex SHA-256 of the signed bytes: how the log and the receipt name them.
    pub fn hash_hex(&self) -> String {
        hex::encode(sha256(&self.bytes))
    }
}

/// What an owner answers to a granted read.
#[derive(Clone, Debug)]
pub struct ReadAnswer {
    /// The section sealed as an MLS application message in the share's group.
    pub sealed: Vec<u8>,
    /// The owner's signed receipt.
    pub receipt: SignedBytes,
}

/// A reader node's request to an owner, as signed by the reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The reading member.
    pub reader: MemberId,
    /// The user at the reader who asks.
    pub user: UserName,
    /// That user's role at the reader.
    pub role: Role,
    /// The owner asked.
    pub owner: MemberId,
    /// The dossier read.
    pub dossier: DossierId,
    /// The section read.
    pub section: Section,
    /// Why the user reads it, as shown to the person.
    pub purpose: String,
    /// 128 random bits, hex: the owner refuses a nonce seen twice.
    pub nonce: String,
    /// When the reader sent it (Unix seconds); the owner refuses it outside its window.
    pub time: i64,
}

impl ReadRequest {
    /// Decodes request bytes without checking any signature: size first,
    /// then the exact fields, a 32-hex-digit nonce, a purpose by
    /// [`crate::types::check_purpose`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_REQUEST {
            return Err(ProtocolError::TooLarge {
                what: "read request",
                limit: MAX_REQUEST,
            });
        }
        let request: Self =
            serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed {
                what: "read request",
                reason: json_reason(&e),
            })?;
        let nonce_ok =
            request.nonce.len() == 32 && request.nonce.bytes().all(|b| b.is_ascii_hexdigit());
        if !nonce_ok {
            return Err(ProtocolError::Malformed {
                what: "read request",
                reason: "nonce must be 32 hex digits".into(),
            });
        }
        crate::types::check_purpose(&request.purpose).map_err(|e| ProtocolError::Malformed {
            what: "read request",
            reason: e.to_string(),
        })?;
        Ok(request)
    }
}

/// The owner's signed statement that it logged and answered a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The owner that answered.
    pub owner: MemberId,
    /// Hex SHA-256 of the signed request bytes.
    pub request: String,
    /// The owner's audit leaf index of the access.
    pub leaf: u64,
    /// When the owner answered (Unix seconds).
    pub time: i64,
}

impl Receipt {
    /// Checks an owner's signed receipt: signed by `owner_key` (context
    /// `maillon/v1/receipt`), naming `owner` and the request we sent.
    pub fn verify(
        signed: &SignedBytes,
        owner: &MemberId,
        owner_key: &PublicKey,
        request_hash: &str,
    ) -> Result<Self, ProtocolError> {
        signed.verify(Context::Receipt, owner_key, "receipt")?;
        let receipt: Receipt =
            serde_json::from_slice(&signed.bytes).map_err(|e| ProtocolError::Malformed {
                what: "receipt",
                reason: json_reason(&e),
            })?;
        if receipt.request != request_hash || &receipt.owner != owner {
            return Err(ProtocolError::OtherRequest);
        }
        Ok(receipt)
    }
}

/// serde_json's reason without the input it may quote: its category and position.
fn json_reason(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected fields or values",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(receipt: &Receipt, key: &NodeKey, ctx: Context) -> SignedBytes {
        SignedBytes::sign(receipt, ctx, key)
    }

    #[test]
    fn readers_check_every_part_of_the_owners_receipt() {
        let key = NodeKey::generate();
        let owner: MemberId = "ccas-rodez".parse().expect("id");
        let receipt = Receipt {
            owner: owner.clone(),
            request: "ab".repeat(32),
            leaf: 7,
            time: 0,
        };
        let verify = |s: &SignedBytes, hash: &str| Receipt::verify(s, &owner, &key.public(), hash);
        let good = signed(&receipt, &key, Context::Receipt);
        assert_eq!(verify(&good, &receipt.request).expect("valid").leaf, 7);
        assert_eq!(
            verify(&good, &"cd".repeat(32)),
            Err(ProtocolError::OtherRequest)
        );
        let stranger = signed(&receipt, &NodeKey::generate(), Context::Receipt);
        assert_eq!(
            verify(&stranger, &receipt.request),
            Err(ProtocolError::BadSignature("receipt"))
        );
        let other_context = signed(&receipt, &key, Context::Request);
        assert_eq!(
            verify(&other_context, &receipt.request),
            Err(ProtocolError::BadSignature("receipt"))
        );
        let other_owner = Receipt {
            owner: "cd12".parse().expect("id"),
            ..receipt.clone()
        };
        assert_eq!(
            verify(
                &signed(&other_owner, &key, Context::Receipt),
                &receipt.request
            ),
            Err(ProtocolError::OtherRequest)
        );
        let junk = SignedBytes {
            signature: key.sign(Context::Receipt, b"{}"),
            bytes: b"{}".to_vec(),
        };
        assert!(matches!(
            verify(&junk, &receipt.request),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn requests_are_refused_when_large_malformed_or_signed_by_another_key() {
        let key = NodeKey::generate();
        let request = ReadRequest {
            reader: "caf12".parse().expect("id"),
            user: "agent".parse().expect("user"),
            role: Role::Caseworker,
            owner: "ccas-rodez".parse().expect("id"),
            dossier: crate::types::DossierId::random(),
            section: Section::Housing,
            purpose: "instruction".into(),
            nonce: "0f".repeat(16),
            time: 1,
        };
        let good = SignedBytes::sign(&request, Context::Request, &key);
        assert_eq!(ReadRequest::decode(&good.bytes), Ok(request.clone()));
        assert_eq!(
            good.verify(Context::Request, &key.public(), "request"),
            Ok(())
        );
        assert_eq!(
            good.verify(Context::Request, &NodeKey::generate().public(), "request"),
            Err(ProtocolError::BadSignature("request"))
        );
        let short_nonce = ReadRequest {
            nonce: "0f".into(),
            ..request
        };
        let bad = SignedBytes::sign(&short_nonce, Context::Request, &key);
        assert!(matches!(
            ReadRequest::decode(&bad.bytes),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            ReadRequest::decode(&vec![b' '; MAX_REQUEST + 1]),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
