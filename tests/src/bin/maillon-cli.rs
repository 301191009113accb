//! The `maillon` command as a process of the tests' own package, so that a
//! test reads what it prints (its `--json` output) and its exit code.

use std::process::ExitCode;

use clap::Parser;
use maillon_cli::exit::{exit_code, one_line};

#[tokio::main]
async fn main() -> ExitCode {
    let args = maillon_cli::Args::parse();
    maillon_node::logging::init(args.log_format, "MAILLON_LOG", "warn,openmls=off");
    match maillon_cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillon: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
