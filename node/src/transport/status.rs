//! The one mapping between domain errors and gRPC statuses, both ways.
//!
//! Every status this node sends carries its cause's machine-readable reason
//! in the `maillon-reason` metadata entry, beside the one-line message, so
//! that callers match on the cause. A peer's status comes back as
//! [`ServiceError::Remote`], its text escaped.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::service::{ErrorKind, ServiceError};
use crate::types::{MemberId, ParseError, escape_controls};

/// The metadata key of a status's machine-readable reason.
pub const REASON_KEY: &str = "maillon-reason";

/// The gRPC code of each kind of domain error.
fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Refused => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Exists => Code::AlreadyExists,
        ErrorKind::State => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The kind of a peer's status code.
fn kind(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::Invalid,
        Code::ResourceExhausted => ErrorKind::TooLarge,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::Refused,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::Exists,
        Code::FailedPrecondition => ErrorKind::State,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    }
}

/// A status with a code, a message and a reason.
fn with_reason(code: Code, message: String, reason: &str) -> Status {
    let mut status = Status::new(code, message);
    if let Ok(v) = MetadataValue::try_from(reason) {
        status.metadata_mut().insert(REASON_KEY, v);
    }
    status
}

/// Maps a domain error to the status sent; an internal error's details are
/// logged here and never sent.
pub fn status(e: ServiceError) -> Status {
    let kind = e.kind();
    let reason = e.reason();
    if kind == ErrorKind::Internal {
        tracing::error!(error = %e, "internal error");
        return with_reason(
            Code::Internal,
            "internal error (see the node's log)".into(),
            &reason,
        );
    }
    with_reason(code(kind), e.to_string(), &reason)
}

/// The status of a field that does not parse.
pub fn invalid(e: ParseError) -> Status {
    status(ServiceError::Invalid(e.to_string()))
}

/// The reason a status carries, if any.
pub fn reason_of(s: &Status) -> Option<String> {
    s.metadata()
        .get(REASON_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|r| r.len() <= 64 && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_owned)
}

/// Maps a peer's status back to a domain error, keeping its kind, its
/// reason and its one-line message (escaped: it came from outside).
pub fn from_status(peer: &MemberId, s: Status) -> ServiceError {
    let message: String = escape_controls(s.message()).chars().take(300).collect();
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ServiceError::Unreachable {
                peer: peer.clone(),
                reason: message,
            }
        }
        code => ServiceError::Remote {
            peer: peer.clone(),
            kind: kind(code),
            reason: reason_of(&s),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::DenyReason;

    #[test]
    fn a_cause_travels_as_its_code_and_reason_and_comes_back_the_same() {
        let peer: MemberId = "ccas-rodez".parse().expect("id");
        let sent = status(ServiceError::Denied(DenyReason::NoConsent));
        assert_eq!(sent.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&sent).as_deref(), Some("no_consent"));
        let back = from_status(&peer, sent);
        assert_eq!(back.kind(), ErrorKind::Refused);
        assert_eq!(back.reason(), "no_consent");
        assert_eq!(status(back).code(), Code::PermissionDenied);
    }

    #[test]
    fn a_peers_message_is_escaped_and_its_odd_reason_dropped() {
        let peer: MemberId = "caf12".parse().expect("id");
        let mut s = Status::permission_denied("no\u{1b}[31m way\nreally é");
        s.metadata_mut()
            .insert(REASON_KEY, MetadataValue::from_static("Bad-Reason"));
        let e = from_status(&peer, s);
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains('é'));
        assert_eq!(e.reason(), "remote");
    }

    #[test]
    fn internal_details_are_never_sent() {
        let s = status(ServiceError::Internal("disk /secret/path failed".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("secret"));
    }
}
