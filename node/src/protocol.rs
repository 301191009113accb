//! The wire types of the peer protocol that are signed: a reader's read
//! request and an owner's receipt, and the bytes-plus-signature pair both
//! travel as. Pure: no I/O, no policy.

use serde::{Deserialize, Serialize};

use crate::crypto::{Context, NodeKey, PublicKey, Signature, sha256};
use crate::types::{ConsentId, DossierId, GrantId, MemberId, Role, Section, UserName};

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
    /// A receipt for this request that does not account for exactly the
    /// sections asked, or an answer whose sealed sections do not match it.
    #[error("the receipt does not account for the sections asked")]
    OtherSections,
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

/// What an owner answers to a read of which at least one section was granted.
#[derive(Clone, Debug)]
pub struct ReadAnswer {
    /// Each granted section, sealed as an MLS application message in its share's group.
    pub sealed: Vec<(Section, Vec<u8>)>,
    /// The owner's signed receipt, accounting for every section asked.
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
    /// The sections read, in order, each once.
    pub sections: Vec<Section>,
    /// Why the user reads it, as shown to the person.
    pub purpose: String,
    /// 128 random bits, hex: the owner refuses a nonce seen twice.
    pub nonce: String,
    /// When the reader sent it (Unix seconds); the owner refuses it outside its window.
    pub time: i64,
    /// For a read without consent in a grave and imminent danger: why, in a
    /// real sentence ([`crate::types::check_justification`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
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
        let malformed = |reason: String| ProtocolError::Malformed {
            what: "read request",
            reason,
        };
        crate::types::check_purpose(&request.purpose).map_err(|e| malformed(e.to_string()))?;
        if request.sections.is_empty() || !request.sections.windows(2).all(|w| w[0] < w[1]) {
            return Err(malformed(
                "sections must be at least one, in order, each once".into(),
            ));
        }
        if let Some(why) = &request.break_glass {
            crate::types::check_justification(why).map_err(|e| malformed(e.to_string()))?;
        }
        Ok(request)
    }
}

/// On what an owner granted a section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Basis {
    /// A consent of the person.
    Consent(ConsentId),
    /// A break-glass access, without consent.
    BreakGlass(GrantId),
}

impl Basis {
    /// `consent` or `break_glass`.
    pub fn kind(&self) -> &'static str {
        match self {
            Basis::Consent(_) => "consent",
            Basis::BreakGlass(_) => "break_glass",
        }
    }

    /// The consent or grant id.
    pub fn id(&self) -> &str {
        match self {
            Basis::Consent(id) => id.as_str(),
            Basis::BreakGlass(id) => id.as_str(),
        }
    }
}

/// What the owner did with one section of a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptItem {
    /// The section.
    pub section: Section,
    /// The owner's audit leaf of its decision (granted or refused).
    pub leaf: u64,
    /// For a granted section: on what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
    /// For a granted section: when the owner last wrote it (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<i64>,
    /// For a refused section: the machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// For a refused section: why, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The owner's signed statement that it logged and answered a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The owner that answered.
    pub owner: MemberId,
    /// Hex SHA-256 of the signed request bytes.
    pub request: String,
    /// When the owner answered (Unix seconds).
    pub time: i64,
    /// One item per section asked, in the request's order.
    pub items: Vec<ReceiptItem>,
}

impl Receipt {
    /// Checks an owner's signed receipt: signed by `owner_key` (context
    /// `maillon/v1/receipt`), naming `owner` and the request we sent, with
    /// one item per section of `sections`, in order, each granted item
    /// with its basis and each refused one with its reason.
    pub fn verify(
        signed: &SignedBytes,
        owner: &MemberId,
        owner_key: &PublicKey,
        request_hash: &str,
        sections: &[Section],
    ) -> Result<Self, ProtocolError> {
        let receipt = Self::open(signed, owner, owner_key, request_hash)?;
        let asked = receipt
            .items
            .iter()
            .map(|i| i.section)
            .eq(sections.iter().copied());
        let whole = receipt
            .items
            .iter()
            .all(|i| i.basis.is_some() != i.refused.is_some());
        if !asked || !whole {
            return Err(ProtocolError::OtherSections);
        }
        Ok(receipt)
    }

    /// Opens an owner's signed receipt: signed by `owner_key` (context
    /// `maillon/v1/receipt`), naming `owner` and `request_hash`. What an
    /// auditor checks of a receipt a reader kept; [`Self::verify`] also
    /// checks its items against the sections asked.
    pub fn open(
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

    /// The granted sections, in order.
    pub fn granted(&self) -> impl Iterator<Item = &ReceiptItem> {
        self.items.iter().filter(|i| i.basis.is_some())
    }
}

/// Longest reason or note of an orientation (bytes).
pub const MAX_ORIENTATION_TEXT: usize = 500;

/// An orientation: a caseworker at `from` sends the person to `to` for one
/// of `to`'s services in the census, with the person's consent. It is
/// minimal: the dossier's opaque id, the service, the reason, the consent it
/// rests on and the sections that consent lets `to` read; nothing of their
/// content. Signed by `from`'s node (`maillon/v1/orientation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orientation {
    /// Its id.
    pub id: crate::types::OrientationId,
    /// The dossier (its opaque id only).
    pub dossier: DossierId,
    /// The sending member.
    pub from: MemberId,
    /// The receiving member.
    pub to: MemberId,
    /// The service's id in `to`'s census.
    pub service: String,
    /// Why, in the caseworker's words (at most 500 bytes).
    pub reason: String,
    /// The consent, recorded at `from`, that names `to`.
    pub consent: crate::types::ConsentId,
    /// The sections that consent lets `to` read.
    pub sections: Vec<Section>,
    /// When it was sent (Unix seconds, `from`'s clock).
    pub sent_at: i64,
}

/// A step the receiving member took on an orientation, signed by its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationStep {
    /// The orientation.
    pub id: crate::types::OrientationId,
    /// The dossier (its opaque id only).
    pub dossier: DossierId,
    /// The member that took it: the orientation's `to`.
    pub by: MemberId,
    /// Where it stands now.
    pub status: crate::types::OrientationStatus,
    /// The reason of a refusal, or a note (at most 500 bytes; may be empty).
    pub note: String,
    /// When (Unix seconds, `by`'s clock).
    pub at: i64,
}

/// Longest description of whom an alert is about (bytes).
pub const MAX_ALERT_ABOUT: usize = 300;

/// A vigilance alert: a volunteer or caseworker at `from` tells `to` (the
/// member the charter names) of someone who seems isolated or in danger.
/// It carries as little as it can: a few words to find the person, the
/// commune, the concern. Signed by `from`'s node (`maillon/v1/alert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Its id.
    pub id: crate::types::AlertId,
    /// The member where it was raised.
    pub from: MemberId,
    /// The member the charter names as alert recipient.
    pub to: MemberId,
    /// Whom it is about and where to find them, in a few words (at most 300 bytes).
    pub about: String,
    /// The commune.
    pub place: String,
    /// What worries.
    pub concern: crate::types::AlertConcern,
    /// When it was raised (Unix seconds, `from`'s clock).
    pub raised_at: i64,
}

/// The recipient's word on an alert, for the member where it was raised:
/// received, or taken into account; never what was done. Signed by the
/// recipient's node (`maillon/v1/alert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertAck {
    /// The alert.
    pub id: crate::types::AlertId,
    /// The recipient.
    pub by: MemberId,
    /// `received` or `taken`.
    pub status: crate::types::AlertStatus,
    /// When (Unix seconds, the recipient's clock).
    pub at: i64,
}

/// Longest agenda of a commission (bytes).
pub const MAX_AGENDA: usize = 1000;

/// Most participants of a commission.
pub const MAX_PARTICIPANTS: usize = 16;

/// A coordination commission on a dossier, convened by the référent's
/// member with the person's consent to share `sections` with every
/// participant. Signed by the convener's node (`maillon/v1/commission`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commission {
    /// Its id.
    pub id: crate::types::CommissionId,
    /// The dossier (its opaque id only).
    pub dossier: DossierId,
    /// The convening member.
    pub convener: MemberId,
    /// The members invited.
    pub participants: Vec<MemberId>,
    /// What it will decide on (at most 1000 bytes).
    pub agenda: String,
    /// The day it meets.
    pub meets_on: crate::types::Date,
    /// The consent, recorded at the convener, that names every participant.
    pub consent: crate::types::ConsentId,
    /// The sections that consent lets the participants read.
    pub sections: Vec<Section>,
    /// When it was convened (Unix seconds).
    pub convened_at: i64,
}

/// One decision of a commission: who does what by when (an action of the
/// support plan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionAction {
    /// The member that does it.
    pub who: MemberId,
    /// What (at most 300 bytes).
    pub what: String,
    /// By when.
    pub by: crate::types::Date,
}

/// A commission's minutes, signed by the convener's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Minutes {
    /// The commission.
    pub commission: crate::types::CommissionId,
    /// The dossier (its opaque id only).
    pub dossier: DossierId,
    /// The convening member.
    pub convener: MemberId,
    /// The decisions.
    pub decisions: Vec<CommissionAction>,
    /// When they were closed (Unix seconds).
    pub closed_at: i64,
}

/// Whether an orientation's or a step's text is within its limits.
fn orientation_text_ok(text: &str) -> bool {
    text.len() <= MAX_ORIENTATION_TEXT && !text.chars().any(|c| c.is_control() && c != '\n')
}

/// Largest notice accepted from a peer (bytes).
pub const MAX_NOTICE: usize = 16 * 1024;

/// What one member tells another about a dossier both hold, through the
/// sender's outbox (delivered again until it is taken; taking it twice
/// changes nothing). The sender is the TLS peer: notices are not signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Notice {
    /// From the dossier's holder to each member that holds it: who is its
    /// référent de parcours now, and which members hold the dossier.
    Referent {
        /// The dossier (its opaque id only).
        dossier: DossierId,
        /// The référent's member.
        member: MemberId,
        /// The référent, a user at that member.
        user: UserName,
        /// Since when (Unix seconds, the holder's log time).
        since: i64,
        /// Every member that holds the dossier, the holder included.
        partners: Vec<MemberId>,
    },
    /// From an owner to the référent's member: a break-glass access to the
    /// owner's sections of a dossier (the justification stays at the owner).
    BreakGlass {
        /// The access's id.
        grant: GrantId,
        /// The dossier (its opaque id only).
        dossier: DossierId,
        /// The reading member.
        reader: MemberId,
        /// The sections it opens.
        sections: Vec<Section>,
        /// When it was granted (Unix seconds).
        granted_at: i64,
        /// When it ends (Unix seconds).
        until: i64,
    },
    /// From the dossier's holder: the parcours ended; every share of it ends.
    Closed {
        /// The dossier (its opaque id only).
        dossier: DossierId,
        /// Why.
        reason: crate::types::ClosureReason,
        /// When (the holder's time, from which retention counts).
        at: i64,
    },
    /// From the dossier's holder: erase it now (the person's request).
    Erased {
        /// The dossier (its opaque id only).
        dossier: DossierId,
    },
    /// From the sending member: an orientation, with its signature.
    Orientation {
        /// The orientation.
        orientation: Orientation,
        /// Its sender's node's signature (`maillon/v1/orientation`).
        signature: crate::crypto::Signature,
    },
    /// From the receiving member: a step it took, with its signature.
    OrientationStep {
        /// The step.
        step: OrientationStep,
        /// The receiving node's signature (`maillon/v1/orientation`).
        signature: crate::crypto::Signature,
    },
    /// From the member where it was raised: a vigilance alert.
    Alert {
        /// The alert.
        alert: Alert,
        /// Its raiser's node's signature (`maillon/v1/alert`).
        signature: crate::crypto::Signature,
    },
    /// From a commission's convener: the convocation.
    Commission {
        /// The commission.
        commission: Commission,
        /// The convener's node's signature (`maillon/v1/commission`).
        signature: crate::crypto::Signature,
    },
    /// From a commission's convener: its minutes.
    Minutes {
        /// The minutes.
        minutes: Minutes,
        /// The convener's node's signature (`maillon/v1/commission`).
        signature: crate::crypto::Signature,
    },
    /// From the alert's recipient: received, or taken into account.
    AlertAck {
        /// The acknowledgement.
        ack: AlertAck,
        /// The recipient's node's signature (`maillon/v1/alert`).
        signature: crate::crypto::Signature,
    },
}

impl Notice {
    /// The dossier it is about, if it is about one.
    pub fn dossier(&self) -> Option<&DossierId> {
        match self {
            Notice::Referent { dossier, .. }
            | Notice::BreakGlass { dossier, .. }
            | Notice::Closed { dossier, .. }
            | Notice::Erased { dossier } => Some(dossier),
            Notice::Orientation { orientation, .. } => Some(&orientation.dossier),
            Notice::OrientationStep { step, .. } => Some(&step.dossier),
            Notice::Commission { commission, .. } => Some(&commission.dossier),
            Notice::Minutes { minutes, .. } => Some(&minutes.dossier),
            Notice::Alert { .. } | Notice::AlertAck { .. } => None,
        }
    }

    /// What it is about, as the admin's outbox shows it: a dossier's id,
    /// or an alert's.
    pub fn about(&self) -> String {
        match self {
            Notice::Alert { alert, .. } => alert.id.to_string(),
            Notice::AlertAck { ack, .. } => ack.id.to_string(),
            other => other.dossier().map(ToString::to_string).unwrap_or_default(),
        }
    }

    /// Its kind, as logged and shown to the admin.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Referent { .. } => "referent",
            Notice::BreakGlass { .. } => "break_glass",
            Notice::Closed { .. } => "closed",
            Notice::Erased { .. } => "erased",
            Notice::Orientation { .. } => "orientation",
            Notice::OrientationStep { .. } => "orientation_step",
            Notice::Alert { .. } => "alert",
            Notice::AlertAck { .. } => "alert_ack",
            Notice::Commission { .. } => "commission",
            Notice::Minutes { .. } => "minutes",
        }
    }

    /// Encodes it as JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a peer's notice: size first, then the exact fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_NOTICE {
            return Err(ProtocolError::TooLarge {
                what: "notice",
                limit: MAX_NOTICE,
            });
        }
        let notice: Notice =
            serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed {
                what: "notice",
                reason: json_reason(&e),
            })?;
        let sizes_ok = match &notice {
            Notice::Referent { partners, .. } => partners.len() <= 1024,
            Notice::BreakGlass { sections, .. } => {
                !sections.is_empty() && sections.len() <= Section::ALL.len()
            }
            Notice::Closed { .. } | Notice::Erased { .. } => true,
            Notice::Orientation { orientation: o, .. } => {
                o.sections.len() <= Section::ALL.len()
                    && orientation_text_ok(&o.reason)
                    && !o.reason.trim().is_empty()
                    && o.service.len() <= 64
            }
            Notice::OrientationStep { step, .. } => orientation_text_ok(&step.note),
            Notice::Alert { alert, .. } => {
                alert.about.len() <= MAX_ALERT_ABOUT
                    && alert.place.len() <= 100
                    && !alert.about.trim().is_empty()
                    && !alert.place.trim().is_empty()
                    && orientation_text_ok(&alert.about)
                    && orientation_text_ok(&alert.place)
            }
            Notice::AlertAck { .. } => true,
            Notice::Commission { commission: c, .. } => {
                !c.participants.is_empty()
                    && c.participants.len() <= MAX_PARTICIPANTS
                    && c.agenda.len() <= MAX_AGENDA
                    && c.sections.len() <= Section::ALL.len()
            }
            Notice::Minutes { minutes, .. } => {
                minutes.decisions.len() <= 64
                    && minutes
                        .decisions
                        .iter()
                        .all(|d| d.what.len() <= 300 && orientation_text_ok(&d.what))
            }
        };
        if !sizes_ok {
            return Err(ProtocolError::Malformed {
                what: "notice",
                reason: "too many or too few members or sections, or a text over its limit".into(),
            });
        }
        Ok(notice)
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
        let item = |section, leaf| ReceiptItem {
            section,
            leaf,
            basis: Some(Basis::Consent(ConsentId::random())),
            written_at: Some(0),
            refused: None,
            message: None,
        };
        let receipt = Receipt {
            owner: owner.clone(),
            request: "ab".repeat(32),
            time: 0,
            items: vec![item(Section::Housing, 7), item(Section::Resources, 8)],
        };
        let asked = [Section::Housing, Section::Resources];
        let verify =
            |s: &SignedBytes, hash: &str| Receipt::verify(s, &owner, &key.public(), hash, &asked);
        let good = signed(&receipt, &key, Context::Receipt);
        assert_eq!(
            verify(&good, &receipt.request).expect("valid").items[0].leaf,
            7
        );
        let short = Receipt {
            items: vec![item(Section::Housing, 7)],
            ..receipt.clone()
        };
        assert_eq!(
            verify(&signed(&short, &key, Context::Receipt), &receipt.request),
            Err(ProtocolError::OtherSections),
            "a receipt that leaves a section out"
        );
        let mut neither = receipt.clone();
        neither.items[1].basis = None;
        assert_eq!(
            verify(&signed(&neither, &key, Context::Receipt), &receipt.request),
            Err(ProtocolError::OtherSections),
            "an item neither granted nor refused"
        );
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
            sections: vec![Section::Housing, Section::Resources],
            purpose: "instruction".into(),
            nonce: "0f".repeat(16),
            time: 1,
            break_glass: None,
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
        let bad_requests = [
            ReadRequest {
                nonce: "0f".into(),
                ..request.clone()
            },
            ReadRequest {
                sections: vec![],
                ..request.clone()
            },
            ReadRequest {
                sections: vec![Section::Resources, Section::Housing],
                ..request.clone()
            },
            ReadRequest {
                sections: vec![Section::Housing, Section::Housing],
                ..request.clone()
            },
            ReadRequest {
                break_glass: Some("urgent".into()),
                ..request.clone()
            },
        ];
        for bad in bad_requests {
            let bad = SignedBytes::sign(&bad, Context::Request, &key);
            assert!(matches!(
                ReadRequest::decode(&bad.bytes),
                Err(ProtocolError::Malformed { .. })
            ));
        }
        let glass = ReadRequest {
            break_glass: Some(
                "Enfant de quatre ans seul au domicile, mère hospitalisée en urgence ce soir"
                    .into(),
            ),
            ..request
        };
        let good = SignedBytes::sign(&glass, Context::Request, &key);
        assert_eq!(ReadRequest::decode(&good.bytes), Ok(glass));
        assert!(matches!(
            ReadRequest::decode(&vec![b' '; MAX_REQUEST + 1]),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
