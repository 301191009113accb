//! `maillon`: the command line of a Maillon federation.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILLON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openmls=off")),
        )
        .init();
    let args = maillon_cli::cli::Args::parse();
    match maillon_cli::cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillon: {}", maillon_cli::cli::one_line(&e));
            ExitCode::from(maillon_cli::cli::exit_code(&e))
        }
    }
}
