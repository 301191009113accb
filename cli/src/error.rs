//! `CliError`: everything a command, the demo or the benchmark can fail with.
//!
//! The variants tell apart what the exit code and the operator need to know:
//! bad local input, a node's refusal, something not found, a node out of
//! reach, a log that does not verify, local I/O. `crate::exit` maps them to
//! exit codes and renders them on one line.

use std::path::{Path, PathBuf};

use maillon_node::audit::AuditError;
use maillon_node::config::ConfigError;
use maillon_node::crypto::CryptoError;
use maillon_node::daemon::StartError;
use maillon_node::roster::{RosterError, SignedRoster};
use maillon_node::service::ServiceError;
use maillon_node::sharing::ShareError;
use maillon_node::storage::StoreError;
use maillon_node::types::{MemberId, ParseError};
use tonic::{Code, Status};

/// What went wrong, for `main` to print and turn into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    // ----- bad local input (exit 2) -----
    /// A command-line value that does not parse: `--kind mairie`, a bad member id, a bad date.
    #[error("bad --{arg}")]
    BadArgument {
        /// The argument, without its dashes.
        arg: &'static str,
        /// Why the value was refused.
        #[source]
        source: ParseError,
    },
    /// A backup key, passphrase or recipient that cannot be used.
    #[error("--{arg}: {reason}")]
    BadKey {
        /// The argument, without its dashes.
        arg: &'static str,
        /// Why, in one line.
        reason: String,
    },
    /// A service file that is not a census service (`aids publish`).
    #[error("{}: {reason}", path.display())]
    BadService {
        /// The file.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
    },
    /// `--quorum` is not `N/D` with `0 < N <= D`.
    #[error("bad --quorum")]
    BadQuorum(#[source] RosterError),
    /// A local file that is not what the command reads: a roster, a member card, a charter.
    #[error("{} is not a {what}", path.display())]
    BadFile {
        /// The file or folder concerned.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// Why it was refused.
        #[source]
        source: serde_json::Error,
    },
    /// A file given to `audit verify --offline` that is not an audit bundle.
    #[error("{} is not a maillon audit bundle", path.display())]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// Why, naming the line.
        #[source]
        source: AuditError,
    },
    /// A command that talks to a node was given no profile.
    #[error("this command talks to a node: give --profile FILE (or set MAILLON_PROFILE)")]
    NoProfile,
    /// The genesis roster handed over is not the one whose hash the sponsor gave.
    #[error(
        "the genesis roster's hash is {found}, not the {expected} given by the sponsor: do not use it"
    )]
    GenesisMismatch {
        /// The hash given out of band.
        expected: String,
        /// The hash of the file.
        found: String,
    },
    /// The output file exists; a roster or an exported log is never overwritten.
    #[error("{} exists; not overwriting it", path.display())]
    Exists {
        /// The file or folder concerned.
        path: PathBuf,
    },

    // ----- local files and the node library (exit 1, unless the cause is bad input) -----
    /// Reading or writing a local file failed.
    #[error("{what}")]
    Io {
        /// What was being done, e.g. `reading roster.json`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A node folder or profile is missing, malformed, or readable by others.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A node key could not be read.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// A roster was refused: malformed, a signature missing or forged, a signer not listed.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// A node could not be initialised or started.
    #[error("node {member} could not be initialised or started")]
    Node {
        /// The node's member id.
        member: MemberId,
        /// Why, in one line.
        #[source]
        source: StartError,
    },

    // ----- what a node answered -----
    /// The node refused: permission denied or unauthenticated (exit 3).
    /// Built from a `Status` by `From`, like the next three variants.
    #[error("{}", status_line(.0))]
    Refused(#[source] Status),
    /// The node does not know what was named (exit 4).
    #[error("{}", status_line(.0))]
    NotFound(#[source] Status),
    /// A node could not be reached: this CLI's own node, or a peer it called (exit 5).
    #[error("{}", status_line(.0))]
    Unreachable(#[source] Status),
    /// Any other gRPC status (exit 2 for invalid or too large input, else 1).
    #[error("{}", status_line(.0))]
    Status(#[source] Status),
    /// A node's audit log or checkpoint does not verify against the key the
    /// roster lists for it: forged, truncated, or served out of order (exit 1).
    #[error("the audit log of {member} does not verify")]
    LogNotVerified {
        /// The member whose log it is.
        member: MemberId,
        /// What failed.
        #[source]
        source: LogFault,
    },

    /// `audit verify` found failures (each printed), or `audit report`
    /// found anomalies (printed in the report) (exit 1).
    #[error("{findings} finding(s): {what}")]
    AuditFailed {
        /// How many.
        findings: usize,
        /// What does not hold, in a few words.
        what: &'static str,
    },

    /// A backup could not be made or read (exit 1).
    #[error("{0}")]
    Backup(String),
    /// A node folder could not be backed up or restored.
    #[error("{dir}")]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StartError,
    },
    /// `node check` found problems (each printed, with its fix) (exit 1).
    #[error("{problems} problem(s) found")]
    CheckFailed {
        /// How many.
        problems: usize,
    },

    // ----- the operator -----
    /// The operator did not confirm `gov sign` (exit 3).
    #[error("not signed")]
    NotSigned,
    /// A final step was not confirmed on the command line (exit 2).
    #[error("{0}")]
    NotConfirmed(&'static str),
    /// The owner refused or could not give every section asked (exit 3);
    /// each section's reason was printed.
    #[error("no section could be read")]
    NothingRead,

    // ----- the demo and the benchmark, which run node parts in-process (exit 1) -----
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An MLS operation failed.
    #[error(transparent)]
    Sharing(#[from] ShareError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A use case failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A spawned task panicked or was cancelled.
    #[error("a task failed")]
    Task(#[from] tokio::task::JoinError),
    /// A node answered something that does not parse.
    #[error("a node answered a malformed {what}")]
    BadReply {
        /// What was expected.
        what: &'static str,
        /// Why it was refused.
        #[source]
        source: ParseError,
    },
    /// The federation did not behave as the demo or the benchmark expects.
    #[error("{0}")]
    Unexpected(String),
}

/// Why a node's log did not verify.
#[derive(Debug, thiserror::Error)]
pub enum LogFault {
    /// The node served something that is not its log, a page of it, or a
    /// roster chain that verifies from the auditor's genesis.
    #[error("{0}")]
    Unexpected(String),
    /// The node served fewer entries than its checkpoint covers.
    #[error("it served fewer entries than its checkpoint covers")]
    Short,
}

impl From<Status> for CliError {
    /// Sorts a node's answer by what the operator does next.
    fn from(s: Status) -> Self {
        match s.code() {
            Code::PermissionDenied | Code::Unauthenticated => Self::Refused(s),
            Code::NotFound => Self::NotFound(s),
            Code::Unavailable => Self::Unreachable(s),
            _ => Self::Status(s),
        }
    }
}

impl CliError {
    /// A bad value for the command-line argument `arg`, for `map_err`.
    pub(crate) fn bad_arg(arg: &'static str) -> impl FnOnce(ParseError) -> Self {
        move |source| Self::BadArgument { arg, source }
    }

    /// A failed I/O while doing `what`, for `map_err`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// A log that failed verification.
    pub(crate) fn log(member: &MemberId, source: LogFault) -> Self {
        Self::LogNotVerified {
            member: member.clone(),
            source,
        }
    }
}

/// A status as the operator reads it: `permission denied: consent revoked`.
/// Not escaped: `crate::exit::one_line` escapes the whole line.
pub(crate) fn status_line(s: &Status) -> String {
    format!("{}: {}", code_name(s.code()), s.message())
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "invalid argument",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::ResourceExhausted => "too large",
        Code::FailedPrecondition => "failed precondition",
        Code::Unavailable => "unavailable",
        _ => "error",
    }
}

/// Reads a local file the command was pointed at.
pub(crate) fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(CliError::io(format!("reading {}", path.display())))
}

/// Writes a local file.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), CliError> {
    std::fs::write(path, contents).map_err(CliError::io(format!("writing {}", path.display())))
}

/// A roster file's text: pretty JSON with a final newline.
pub(crate) fn roster_json(roster: &SignedRoster) -> Result<String, CliError> {
    // A roster serialises without failing (string keys only); should it ever
    // fail, it is reported as an I/O error.
    serde_json::to_string_pretty(roster)
        .map(|s| s + "\n")
        .map_err(|e| CliError::io("encoding JSON")(e.into()))
}
