//! `maillon`: the command line of a Maillon federation.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    maillon_cli::main_with_args().await
}
