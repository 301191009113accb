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
    loop {
        let node = match maillon_node::daemon::start(&args.dir).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("maillond: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let rotated = tokio::select! {
            () = wait_for_stop_signal() => false,
            () = node.node().keys_rotated() => true,
        };
        if rotated {
            // The roster in force lists this node's staged keys: start
            // again, and the start puts them in force.
            tracing::info!("keys rotated by the roster: starting again with the new keys");
            node.stop().await;
            continue;
        }
        tracing::info!("stopping");
        node.stop().await;
        return std::process::ExitCode::SUCCESS;
    }
}

/// Waits for Ctrl-C or SIGTERM (what systemd and container runtimes send).
async fn wait_for_stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
