//! `maillond`: serves one Maillon node from its directory.

use clap::Parser;

use maillon_node::daemon::MaillondArgs as Args;

/// Threads for blocking work (file syncs, MLS state written back): enough
/// for a small host's cores, few enough that a burst of reads waiting on one
/// share's write-back does not start a thread (and a malloc arena) each.
const BLOCKING_THREADS: usize = 16;

fn main() -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("maillond: cannot start the runtime: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve() -> std::process::ExitCode {
    let args = Args::parse();
    maillon_node::logging::init(args.log_format, "RUST_LOG", "info,openmls=off");
    match maillon_node::daemon::serve_until_stopped(&args.dir).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillond: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
