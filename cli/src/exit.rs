//! Exit codes, and the one line an error is printed as on standard error.

use maillon_node::config::ConfigError;
use maillon_node::crypto::CryptoError;
use maillon_node::daemon::StartError;
use maillon_node::roster::RosterError;
use tonic::{Code, Status};

use crate::error::{CliError, status_line};
use crate::escape::escape_controls;

/// Something failed.
pub const FAILURE: u8 = 1;
/// Bad input: an argument, a file, a profile, or a request the node found malformed.
pub const BAD_INPUT: u8 = 2;
/// Refused: by the node (permission, authentication), or not confirmed by the operator.
pub const REFUSED: u8 = 3;
/// The node does not know what was named.
pub const NOT_FOUND: u8 = 4;
/// A node could not be reached.
pub const UNREACHABLE: u8 = 5;

/// The exit code for an error: 1 failure, 2 bad input, 3 refused, 4 not found, 5 unreachable.
pub fn exit_code(e: &CliError) -> u8 {
    match e {
        CliError::BadArgument { .. }
        | CliError::BadQuorum(_)
        | CliError::BadFile { .. }
        | CliError::NotABundle { .. }
        | CliError::NoProfile
        | CliError::Exists { .. }
        | CliError::GenesisMismatch { .. }
        | CliError::NotConfirmed(_)
        | CliError::BadKey { .. }
        | CliError::BadService { .. } => BAD_INPUT,
        CliError::Config(c) => config_code(c),
        CliError::Key(c) => crypto_code(c),
        CliError::Roster(r) => roster_code(r),
        CliError::Node { source, .. } | CliError::Folder { source, .. } => match source {
            StartError::Config(c) => config_code(c),
            StartError::Crypto(c) => crypto_code(c),
            _ => FAILURE,
        },
        CliError::Refused(s)
        | CliError::NotFound(s)
        | CliError::Unreachable(s)
        | CliError::Status(s) => status_code(s.code()),
        CliError::NotSigned | CliError::NothingRead => REFUSED,
        CliError::Io { .. }
        | CliError::LogNotVerified { .. }
        | CliError::AuditFailed { .. }
        | CliError::CheckFailed { .. }
        | CliError::Backup(_)
        | CliError::Store(_)
        | CliError::Sharing(_)
        | CliError::Audit(_)
        | CliError::Service(_)
        | CliError::Task(_)
        | CliError::BadReply { .. }
        | CliError::Unexpected(_) => FAILURE,
    }
}

/// A gRPC code as an exit code.
pub fn status_code(c: Code) -> u8 {
    match c {
        Code::InvalidArgument
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::AlreadyExists => BAD_INPUT,
        Code::PermissionDenied | Code::Unauthenticated => REFUSED,
        Code::NotFound => NOT_FOUND,
        Code::Unavailable => UNREACHABLE,
        _ => FAILURE,
    }
}

/// A node folder or profile that is malformed, or too open, is bad input;
/// failing to read or write one is a failure.
fn config_code(e: &ConfigError) -> u8 {
    match e {
        ConfigError::Invalid { .. } | ConfigError::Parse(_) => BAD_INPUT,
        ConfigError::Crypto(c) => crypto_code(c),
        ConfigError::Io { .. } => FAILURE,
    }
}

/// A key file readable by others, or not a key, is bad input (the operator
/// fixes the file); anything else is a failure.
fn crypto_code(e: &CryptoError) -> u8 {
    match e {
        CryptoError::Permissions { .. } | CryptoError::Malformed(_) => BAD_INPUT,
        _ => FAILURE,
    }
}

/// A malformed roster, or one this node cannot sign (not listed, another key),
/// is bad input; a roster whose signatures do not all verify is a failure.
fn roster_code(e: &RosterError) -> u8 {
    match e {
        RosterError::Invalid(_) | RosterError::NotAMember(_) | RosterError::WrongKey(_) => {
            BAD_INPUT
        }
        RosterError::OtherFederation { .. }
        | RosterError::Rollback { .. }
        | RosterError::Skipped { .. }
        | RosterError::WrongPredecessor(_)
        | RosterError::Transition { .. }
        | RosterError::Change(_)
        | RosterError::Stale { .. }
        | RosterError::AlreadySigned { .. } => BAD_INPUT,
        RosterError::UnknownSigner(_)
        | RosterError::ForgedSignature(_)
        | RosterError::MissingSignatures { .. }
        | RosterError::NoQuorum { .. }
        | RosterError::NoProofOfPossession { .. } => FAILURE,
    }
}

/// An error and its causes on one line, `a: b: c`, with control characters
/// escaped (a node's message may quote a peer). A cause whose text the line
/// already ends with is not repeated (node errors often show their source);
/// a gRPC status is shown as its code and message, and ends the line.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let (text, stop) = match err.downcast_ref::<Status>() {
            Some(s) => (status_line(s), true),
            None => (err.to_string(), false),
        };
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = if stop { None } else { err.source() };
    }
    escape_controls(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_message_is_one_escaped_line() {
        let e = CliError::from(Status::permission_denied(
            "refusé par caf12\u{1b}[31m\nmaillon: ok",
        ));
        assert_eq!(
            one_line(&e),
            "permission denied: refusé par caf12\\u{1b}[31m\\nmaillon: ok"
        );
        assert_eq!(exit_code(&e), REFUSED);
    }

    #[test]
    fn a_cause_already_shown_is_not_repeated() {
        let e = CliError::Roster(RosterError::Invalid("no members".into()));
        assert_eq!(one_line(&e), "invalid roster: no members");
        let e = CliError::BadQuorum(RosterError::Invalid("quorum \"5/3\"".into()));
        assert_eq!(one_line(&e), "bad --quorum: invalid roster: quorum \"5/3\"");
    }
}
