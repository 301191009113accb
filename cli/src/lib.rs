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
pub use maillon_node::escape;
pub mod exit;
pub mod federation;

pub use args::Args;
pub use commands::run;
pub use error::CliError;

/// What `maillon`'s `main` does: parses the command line, sets up logging,
/// runs the command, prints an error as one line and gives its exit code.
pub async fn main_with_args() -> std::process::ExitCode {
    use clap::Parser as _;
    let args = Args::parse();
    maillon_node::logging::init(args.log_format, "MAILLON_LOG", "warn,openmls=off");
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillon: {}", exit::one_line(&e));
            std::process::ExitCode::from(exit::exit_code(&e))
        }
    }
}
