//! What a use case can fail with, by cause. The transport alone chooses the
//! gRPC code of each (`transport::status`), through [`ErrorKind`].

use crate::audit::AuditError;
use crate::consent::DenyReason;
use crate::protocol::ProtocolError;
use crate::sharing::ShareError;
use crate::storage::StoreError;
use crate::types::{MemberId, Role, Section};

/// Why a use case failed. Policy refusals carry their reason as a value.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The input is larger than the limit for its kind.
    #[error("{what} is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The caller brought no valid credential.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's role may not do this.
    #[error("the role {role} may not do this (needs {needs})")]
    Role {
        /// The caller's role.
        role: Role,
        /// The roles that may.
        needs: String,
    },
    /// The read policy refused (consent, charter, membership).
    #[error("{0}")]
    Denied(DenyReason),
    /// The charter forbids a consent to this member for this section.
    #[error("the charter does not allow {member} to receive {section}")]
    Charter {
        /// The member concerned.
        member: MemberId,
        /// Which section of the dossier.
        section: Section,
    },
    /// A roster version or proposal was refused.
    #[error(transparent)]
    Roster(crate::roster::RosterError),
    /// Two different valid roster versions carry the same number.
    #[error("equivocation: another valid roster v{version} exists; the one adopted here stands")]
    Equivocation {
        /// The version number both carry.
        version: u64,
    },
    /// A peer's request was seen before.
    #[error("replayed request")]
    Replayed,
    /// A peer's request time is outside the owner's window.
    #[error("request time is more than {0} s from the owner's clock")]
    OutOfWindow(i64),
    /// A peer asked for something about a share it has no part in.
    #[error("{0}")]
    NotEntitled(String),
    /// The member is not an active member of the roster.
    #[error("{0} is not an active member")]
    NotAMember(MemberId),
    /// The named thing does not exist here.
    #[error("no {0} at this node")]
    NotFound(String),
    /// A record that must be unique already exists.
    #[error("{0} already exists")]
    Exists(&'static str),
    /// The operation does not apply in the current state.
    #[error("{0}")]
    State(String),
    /// Too many requests of this kind, too soon, or too many at once.
    #[error("{0}")]
    Busy(String),
    /// A caller reached its rate limit for this kind of call.
    #[error("rate limit reached for {0}; try again shortly")]
    RateLimited(&'static str),
    /// A cap on what a peer may create here is reached.
    #[error("{0}")]
    Capped(String),
    /// A signed peer message (request, receipt) is refused.
    #[error("{peer}: {source}")]
    Protocol {
        /// The peer that sent it.
        peer: MemberId,
        /// Why, in one line.
        #[source]
        source: ProtocolError,
    },
    /// A peer answered something it should not have (an unopenable answer,
    /// an unusable KeyPackage).
    #[error("{peer} misbehaved: {what}")]
    PeerMisbehaved {
        /// The member on the other end.
        peer: MemberId,
        /// What it did.
        what: String,
    },
    /// A peer answered with an error; its kind and reason travel on.
    #[error("{peer}: {message}")]
    Remote {
        /// The peer that answered.
        peer: MemberId,
        /// The kind of its error.
        kind: ErrorKind,
        /// Its machine-readable reason, if it gave one.
        reason: Option<String>,
        /// Its one-line message, control characters escaped.
        message: String,
    },
    /// A peer could not be reached in time.
    #[error("cannot reach {peer}: {reason}")]
    Unreachable {
        /// The member on the other end.
        peer: MemberId,
        /// Why, in one line.
        reason: String,
    },
    /// An MLS operation failed.
    #[error(transparent)]
    Share(ShareError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The audit log failed: nothing is answered that it did not record.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A dossier's key is gone, or data sealed at rest does not open.
    #[error(transparent)]
    Vault(#[from] crate::crypto::CryptoError),
    /// Something broke inside the node; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The few kinds of failure a caller must tell apart; the transport maps
/// each to one gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed input.
    Invalid,
    /// Input over a limit, or too many requests.
    TooLarge,
    /// No valid credential.
    Unauthenticated,
    /// Policy refuses.
    Refused,
    /// Not here.
    NotFound,
    /// Already there.
    Exists,
    /// Not in this state.
    State,
    /// Someone could not be reached.
    Unavailable,
    /// A fault inside the node.
    Internal,
}

impl ServiceError {
    /// The same failure again, for each of several sections it stopped
    /// (errors are not `Clone`: stores and logs are inside some): an
    /// unreachable peer stays unreachable; anything else keeps its kind,
    /// reason and message as a `Remote` error of `peer`.
    pub fn duplicate(&self, peer: &MemberId) -> ServiceError {
        match self {
            ServiceError::Unreachable { peer, reason } => ServiceError::Unreachable {
                peer: peer.clone(),
                reason: reason.clone(),
            },
            ServiceError::Remote {
                peer,
                kind,
                reason,
                message,
            } => ServiceError::Remote {
                peer: peer.clone(),
                kind: *kind,
                reason: reason.clone(),
                message: message.clone(),
            },
            other => ServiceError::Remote {
                peer: peer.clone(),
                kind: other.kind(),
                reason: Some(other.reason()),
                message: other.to_string(),
            },
        }
    }

    /// The kind of this error, which decides its gRPC code.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            ServiceError::Invalid(_) => K::Invalid,
            ServiceError::TooLarge { .. }
            | ServiceError::Busy(_)
            | ServiceError::RateLimited(_)
            | ServiceError::Capped(_) => K::TooLarge,
            ServiceError::Unauthenticated(_) => K::Unauthenticated,
            ServiceError::Role { .. }
            | ServiceError::Charter { .. }
            | ServiceError::Replayed
            | ServiceError::OutOfWindow(_)
            | ServiceError::NotEntitled(_) => K::Refused,
            ServiceError::Denied(DenyReason::NoSuchSection) => K::NotFound,
            ServiceError::Denied(_) => K::Refused,
            ServiceError::NotAMember(_) | ServiceError::State(_) => K::State,
            ServiceError::NotFound(_) => K::NotFound,
            ServiceError::Exists(_) => K::Exists,
            ServiceError::Protocol { source, .. } => match source {
                ProtocolError::TooLarge { .. } => K::TooLarge,
                ProtocolError::Malformed { .. } => K::Invalid,
                ProtocolError::BadSignature(_) => K::Unauthenticated,
                ProtocolError::OtherRequest | ProtocolError::OtherSections => K::State,
            },
            ServiceError::PeerMisbehaved { .. } => K::State,
            ServiceError::Equivocation { .. } => K::Refused,
            ServiceError::Roster(e) => match e {
                crate::roster::RosterError::Invalid(_) => K::Invalid,
                crate::roster::RosterError::Change(_)
                | crate::roster::RosterError::Stale { .. }
                | crate::roster::RosterError::AlreadySigned { .. } => K::State,
                _ => K::Refused,
            },
            ServiceError::Remote { kind, .. } => *kind,
            ServiceError::Unreachable { .. } => K::Unavailable,
            ServiceError::Share(e) => match e {
                ShareError::Malformed(_) => K::Invalid,
                ShareError::TooLarge(_) => K::TooLarge,
                ShareError::Credential(_) => K::Refused,
                ShareError::NoGroup | ShareError::NoKeyPackage | ShareError::Mls(_) => K::State,
                ShareError::Store(_) => K::Internal,
            },
            ServiceError::Vault(crate::crypto::CryptoError::NoDossierKey(_)) => K::NotFound,
            ServiceError::Audit(AuditError::Range(_)) => K::Invalid,
            ServiceError::Audit(AuditError::Unavailable) => K::Unavailable,
            ServiceError::Store(_)
            | ServiceError::Audit(_)
            | ServiceError::Vault(_)
            | ServiceError::Internal(_) => K::Internal,
        }
    }

    /// A stable, machine-readable reason (snake case) that travels beside
    /// the message, so that callers and tests match on the cause, not on text.
    pub fn reason(&self) -> String {
        match self {
            ServiceError::Invalid(_) => "invalid".into(),
            ServiceError::TooLarge { .. } => "too_large".into(),
            ServiceError::Busy(_) => "busy".into(),
            ServiceError::RateLimited(_) => "rate_limited".into(),
            ServiceError::Capped(_) => "capped".into(),
            ServiceError::Unauthenticated(_) => "unauthenticated".into(),
            ServiceError::Role { .. } => "role".into(),
            ServiceError::Denied(r) => r.code().into(),
            ServiceError::Charter { .. } => "charter".into(),
            ServiceError::Replayed => "replayed".into(),
            ServiceError::OutOfWindow(_) => "out_of_window".into(),
            ServiceError::NotEntitled(_) => "not_entitled".into(),
            ServiceError::NotAMember(_) => "not_a_member".into(),
            ServiceError::NotFound(_) => "not_found".into(),
            ServiceError::Exists(_) => "exists".into(),
            ServiceError::State(_) => "state".into(),
            ServiceError::Protocol { source, .. } => match source {
                ProtocolError::TooLarge { .. } => "too_large".into(),
                ProtocolError::Malformed { .. } => "malformed".into(),
                ProtocolError::BadSignature(_) => "bad_signature".into(),
                ProtocolError::OtherRequest => "other_request".into(),
                ProtocolError::OtherSections => "other_sections".into(),
            },
            ServiceError::PeerMisbehaved { .. } => "peer_misbehaved".into(),
            ServiceError::Roster(e) => e.code().into(),
            ServiceError::Equivocation { .. } => "equivocation".into(),
            ServiceError::Remote { reason, .. } => {
                reason.clone().unwrap_or_else(|| "remote".into())
            }
            ServiceError::Unreachable { .. } => "unreachable".into(),
            ServiceError::Share(e) => match e {
                ShareError::Malformed(_) => "malformed".into(),
                ShareError::TooLarge(_) => "too_large".into(),
                ShareError::Credential(_) => "credential".into(),
                ShareError::NoGroup => "no_group".into(),
                ShareError::NoKeyPackage => "no_key_package".into(),
                ShareError::Mls(_) => "mls".into(),
                ShareError::Store(_) => "internal".into(),
            },
            ServiceError::Vault(crate::crypto::CryptoError::NoDossierKey(_)) => "erased".into(),
            ServiceError::Audit(AuditError::Range(_)) => "out_of_range".into(),
            ServiceError::Audit(AuditError::Unavailable) => "audit_unavailable".into(),
            ServiceError::Store(_)
            | ServiceError::Audit(_)
            | ServiceError::Vault(_)
            | ServiceError::Internal(_) => "internal".into(),
        }
    }
}

impl From<crate::roster::RosterError> for ServiceError {
    fn from(e: crate::roster::RosterError) -> Self {
        ServiceError::Roster(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(what) => ServiceError::Exists(what),
            other => ServiceError::Store(other),
        }
    }
}

impl From<ShareError> for ServiceError {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Store(s) => s.into(),
            other => ServiceError::Share(other),
        }
    }
}

/// The result of a use case.
pub type Result<T> = std::result::Result<T, ServiceError>;
