//! The `maillon` command: node set-up, governance, dossiers, consent, sharing,
//! audit, and the demo. Talks to nodes over gRPC; reuses the node library's
//! pure verification code so that an auditor checks logs with the same code
//! the nodes use. Errors are typed ([`CliError`]); `main` prints them with
//! [`exit::one_line`] and exits with [`exit::exit_code`].

pub mod args;
pub mod audit;
pub mod bench;
pub mod client;
pub mod commands;
pub mod demo;
pub mod error;
pub mod escape;
pub mod exit;
pub mod federation;

pub use args::Args;
pub use commands::run;
pub use error::CliError;
