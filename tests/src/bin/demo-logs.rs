//! The demo with its nodes' logs at info level as JSON lines on standard
//! error: what the test of personal data in logs reads.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    maillon_node::logging::init(
        maillon_node::logging::LogFormat::Json,
        "MAILLON_LOG",
        "info,openmls=off",
    );
    match maillon_cli::demo::run(false).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
