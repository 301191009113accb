//! The committed fuzz corpora (`node/fuzz/corpus/<target>/`) replayed through
//! the same entry points as the fuzz targets, so that CI checks them without
//! cargo fuzz: no input in them may make the node panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use maillon_node::fuzzing;

/// Feeds every file of a target's corpus to `run`; fails naming each input
/// that panicked, or if the corpus is missing or empty.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|entry| entry.expect("a readable corpus folder").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let panicked: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "inputs that panic: {panicked:#?}");
}

#[test]
fn owners_handle_every_read_request_of_the_corpus() {
    replay("read_request", fuzzing::read_request);
}

#[test]
fn members_handle_every_notice_of_the_corpus() {
    replay("notice", fuzzing::notice);
}

#[test]
fn readers_handle_every_receipt_of_the_corpus() {
    replay("receipt", fuzzing::receipt);
}

#[test]
fn owners_handle_every_key_package_of_the_corpus() {
    replay("key_package", fuzzing::key_package);
}

#[test]
fn members_handle_every_welcome_of_the_corpus() {
    replay("welcome", fuzzing::welcome);
}

#[test]
fn members_handle_every_commit_of_the_corpus() {
    replay("commit", fuzzing::commit);
}

#[test]
fn members_handle_every_application_message_of_the_corpus() {
    replay("message", fuzzing::message);
}

#[test]
fn nodes_handle_every_roster_file_of_the_corpus() {
    replay("roster", fuzzing::roster);
}

#[test]
fn nodes_handle_every_roster_offer_of_the_corpus() {
    replay("roster_offer", fuzzing::roster_offer);
}

#[test]
fn auditors_handle_every_checkpoint_of_the_corpus() {
    replay("checkpoint", fuzzing::checkpoint);
}

#[test]
fn nodes_open_or_refuse_every_audit_log_of_the_corpus() {
    replay("audit_log", fuzzing::audit_log);
}

#[test]
fn nodes_load_or_refuse_every_node_toml_of_the_corpus() {
    replay("node_config", fuzzing::node_config);
}

#[test]
fn the_cli_reads_or_refuses_every_profile_of_the_corpus() {
    replay("profile", fuzzing::profile);
}
