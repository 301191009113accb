//! The `maillon` command as a process of the tests' own package, so that a
//! test reads what it prints (its `--json` output) and its exit code.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    maillon_cli::main_with_args().await
}
