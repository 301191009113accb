//! `maillond`: serves one Maillon node from its directory.

use std::path::PathBuf;

use clap::Parser;

/// Serves a Maillon node: the peer API (mutual TLS pinned by the roster) and the client API.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The node directory created by `maillon node init`.
    #[arg(long)]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let node = match maillon_node::daemon::start(&args.dir).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("maillond: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
    node.stop().await;
    std::process::ExitCode::SUCCESS
}
