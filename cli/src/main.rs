//! `maillon`: the command line of a Maillon federation.

use std::process::ExitCode;

use clap::Parser;
use maillon_cli::exit::{exit_code, one_line};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILLON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openmls=off")),
        )
        .init();
    match maillon_cli::run(maillon_cli::Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillon: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
