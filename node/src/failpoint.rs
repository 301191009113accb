//! Crash points for the crash tests: when the environment variable
//! `MAILLON_DANGER_CRASH_AT` names a point, the process aborts there, as a
//! SIGKILL would stop it (no destructor runs, nothing is flushed). Unset, a
//! point costs one relaxed load of a value read once.

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const CRASH_AT_VAR: &str = "MAILLON_DANGER_CRASH_AT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(CRASH_AT_VAR).ok())
        .as_deref()
}

/// Aborts the process if `point` is the armed crash point.
pub fn hit(point: &str) {
    if armed() == Some(point) {
        eprintln!("maillon: crashing at {point} ({CRASH_AT_VAR})");
        std::process::abort();
    }
}
