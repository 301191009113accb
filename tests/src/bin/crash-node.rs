//! One node in a process of its own, for the crash tests: serves the node
//! folder given as its only argument with `maillond`'s own loop, until it is
//! killed (with SIGKILL, or by an armed crash point) or stopped (SIGTERM,
//! SIGINT).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: crash-node NODE_DIR");
        return ExitCode::from(2);
    };
    match maillon_node::daemon::serve_until_stopped(std::path::Path::new(&dir)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-node: {e}");
            ExitCode::from(1)
        }
    }
}
