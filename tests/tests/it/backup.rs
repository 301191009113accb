//! Backups: `maillon node backup` of a running node under load and of a
//! stopped one, `maillon node restore` on a "new host", the restored node's
//! first start asking its peers, and every refusal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use maillon_cli::CliError;
use maillon_cli::exit::exit_code;
use maillon_node::clock::Clock;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, HOUSING, audit_entries, next_year, refusal};
use tonic::Code;

use crate::cli::maillon;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A backup key pair in `dir`: the identity file and its recipient.
async fn backup_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("backup.key");
    maillon(&["node", "backup-key", "--out", &s(&key)])
        .await
        .expect("a key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).expect("read");
    let recipient = text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("the recipient in the comment")
        .to_owned();
    assert!(recipient.starts_with("age1pq1"), "{recipient}");
    (key, recipient)
}

/// `maillon node backup` of `dir` into `out`, encrypted to `recipient`.
async fn backup_to(dir: &Path, out: &Path, recipient: &str) -> Result<(), CliError> {
    maillon(&[
        "node",
        "backup",
        "--dir",
        &s(dir),
        "--out",
        &s(out),
        "--recipient",
        recipient,
    ])
    .await
}

/// `maillon node restore` of `archive` into `dir` with the identity `key`.
async fn restore_to(archive: &Path, dir: &Path, key: &Path) -> Result<(), CliError> {
    maillon(&[
        "node",
        "restore",
        "--from",
        &s(archive),
        "--dir",
        &s(dir),
        "--identity",
        &s(key),
    ])
    .await
}

/// Starts `id`'s node from `dir` (a restored folder) with the cluster's clock.
async fn start_from(c: &mut Cluster, id: &str, dir: &Path) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = c.clock.clone();
    let node = c.fed.node_mut(id);
    node.dir = dir.to_owned();
    node.start(clock).await
}

#[tokio::test]
async fn a_backup_taken_under_load_brings_back_every_dossier_consent_group_and_entry() {
    let mut c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, recipient) = backup_key(tmp.path()).await;
    let (ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;

    // Load: the CAF reads and the CCAS writes while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let (stop, caf, d) = (stop.clone(), caf, d.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                caf.read(&d, "housing", "ccas-rodez")
                    .await
                    .expect("a read under load");
                n += 1;
            }
            (caf, n)
        })
    };
    let writing = {
        let (stop, d) = (stop.clone(), d.clone());
        let desk = c.desk("ccas-rodez", "agent-ccas-2").await;
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let json = format!(r#"{{"emploi":"recherche","tour":{n}}}"#);
                desk.put(&d, "employment", &json)
                    .await
                    .expect("a write under load");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = audit_entries(&auditor).await;
    let archive = tmp.path().join("ccas.age");
    let dir = c.node("ccas-rodez").dir.clone();
    backup_to(&dir, &archive, &recipient)
        .await
        .expect("a backup of the running node");
    stop.store(true, Ordering::Relaxed);
    let (caf, reads) = reading.await.expect("reads");
    let writes = writing.await.expect("writes");
    assert!(reads > 0 && writes > 0, "the backup was taken under load");
    assert_eq!(
        std::fs::metadata(&archive)
            .expect("archive")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let logged = audit_entries(&auditor).await;
    assert!(
        logged
            .iter()
            .any(|e| e["event"] == "backup_made" && e["by"] == "admin"),
        "the backup is logged"
    );

    // The host is lost; a new one gets the archive.
    c.fed.node_mut("ccas-rodez").stop().await;
    let new_dir = tmp.path().join("new-host").join("ccas-rodez");
    restore_to(&archive, &new_dir, &key)
        .await
        .expect("restored");
    for f in [
        "signing.key",
        "tls.key",
        "client-tls.key",
        "admin.profile.toml",
    ] {
        let mode = std::fs::metadata(new_dir.join(f))
            .expect(f)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let findings = maillon_cli::commands::check::findings(&new_dir).await;
    assert!(findings.iter().all(|f| f.ok), "{findings:#?}");

    match start_from(&mut c, "ccas-rodez", &new_dir).await {
        Ok(()) => {
            // Every entry logged before the backup began is back, in order.
            let after = audit_entries(&auditor).await;
            assert!(after.len() >= before.len());
            assert_eq!(after[..before.len()], before[..]);
            assert!(c.verified_log_size(&auditor).await >= before.len() as u64);
            // The dossier, its sections, the consent and the MLS group.
            assert_eq!(ccas.get(&d, "housing").await.expect("own section"), HOUSING);
            assert!(
                ccas.get(&d, "employment")
                    .await
                    .expect("written under load")
                    .contains("recherche")
            );
            let answer = caf
                .read(&d, "housing", "ccas-rodez")
                .await
                .expect("the share reads");
            assert_eq!(answer.json, HOUSING);
            assert!(
                !new_dir.join("restored.json").exists(),
                "the peers confirmed"
            );
        }
        Err(e) => {
            // A peer witnessed an entry logged after the log was copied:
            // the node refuses to sign on, as it must.
            let line = maillon_cli::exit::one_line(&e);
            eprintln!("the restored node was refused: {line}");
            assert!(line.contains("witnessed this node's log at"), "{line}");
        }
    }
}

#[tokio::test]
async fn a_stopped_node_is_backed_up_with_a_passphrase_and_restored_whole() {
    let mut c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (ccas, caf, d, _) = c.housing_read_by_the_caf().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_entries(&auditor).await;
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "une phrase de passe assez longue\n").expect("write");
    c.fed.node_mut("ccas-rodez").stop().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let archive = tmp.path().join("ccas.age");
    maillon(&[
        "node",
        "backup",
        "--dir",
        &s(&dir),
        "--out",
        &s(&archive),
        "--passphrase-file",
        &s(&pass),
    ])
    .await
    .expect("a backup of the stopped folder");
    assert!(
        !dir.join(".backup-store.dump").exists(),
        "the dump is removed"
    );
    let new_dir = tmp.path().join("elsewhere");
    maillon(&[
        "node",
        "restore",
        "--from",
        &s(&archive),
        "--dir",
        &s(&new_dir),
        "--passphrase-file",
        &s(&pass),
    ])
    .await
    .expect("restored");
    start_from(&mut c, "ccas-rodez", &new_dir)
        .await
        .expect("no peer witnessed more: it starts");
    let after = audit_entries(&auditor).await;
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(ccas.get(&d, "housing").await.expect("section"), HOUSING);
    assert_eq!(
        caf.read(&d, "housing", "ccas-rodez")
            .await
            .expect("share")
            .json,
        HOUSING
    );
    // A consent granted after the restore works as before.
    ccas.grant(&d, &["housing"], &["cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let cd = c.desk("cd12", "agent-cd").await;
    assert_eq!(
        cd.read(&d, "housing", "ccas-rodez")
            .await
            .expect("cd reads")
            .json,
        HOUSING
    );
}

#[tokio::test]
async fn an_old_backup_signs_nothing_once_a_peer_witnessed_more_of_the_log() {
    let mut c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, recipient) = backup_key(tmp.path()).await;
    let (ccas, _caf, d, _) = c.housing_read_by_the_caf().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let archive = tmp.path().join("old.age");
    backup_to(&dir, &archive, &recipient).await.expect("backup");
    // Life goes on, and the CAF witnesses it.
    for n in 0..5 {
        ccas.put(&d, "employment", &format!(r#"{{"tour":{n}}}"#))
            .await
            .expect("put");
    }
    c.running("ccas-rodez")
        .node()
        .sign_checkpoint()
        .await
        .expect("checkpoint");
    c.running("caf12").node().witness_peers().await;
    c.fed.node_mut("ccas-rodez").stop().await;

    let new_dir = tmp.path().join("restored");
    restore_to(&archive, &new_dir, &key)
        .await
        .expect("restored");
    let log = std::fs::read(new_dir.join("audit/audit.log")).expect("log");
    let checkpoint = std::fs::read(new_dir.join("audit/checkpoint")).expect("checkpoint");
    let e = start_from(&mut c, "ccas-rodez", &new_dir)
        .await
        .expect_err("refused");
    let line = maillon_cli::exit::one_line(&e);
    assert!(
        line.contains("caf12 witnessed this node's log at"),
        "{line}"
    );
    assert!(line.contains("nothing was signed"), "{line}");
    assert_eq!(
        std::fs::read(new_dir.join("audit/audit.log")).expect("log"),
        log,
        "nothing appended"
    );
    assert_eq!(
        std::fs::read(new_dir.join("audit/checkpoint")).expect("checkpoint"),
        checkpoint,
        "nothing signed"
    );
    assert!(
        new_dir.join("restored.json").exists(),
        "still waiting for the peers"
    );
    // The original folder, newer, starts as before.
    start_from(&mut c, "ccas-rodez", &dir)
        .await
        .expect("the newer folder starts");
    ccas.get(&d, "housing").await.expect("served");
}

#[tokio::test]
async fn every_refusal_of_backup_and_restore_is_clear_and_changes_nothing() {
    let c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, recipient) = backup_key(tmp.path()).await;
    let (_other_key, other_recipient) = {
        let sub = tmp.path().join("other");
        std::fs::create_dir(&sub).expect("dir");
        backup_key(&sub).await
    };
    let dir = c.node("ccas-rodez").dir.clone();

    // Only an admin backs a node up.
    let caseworker = c.user("ccas-rodez", "agent", Role::Caseworker).await;
    let denied = caseworker
        .api()
        .node_backup(caseworker.req(pb::NodeBackupRequest {}))
        .await;
    let denied = match denied {
        Err(s) => Err(s),
        Ok(stream) => stream.into_inner().message().await.map(|_| ()),
    };
    assert_eq!(refusal(denied).0, Code::PermissionDenied);

    // Never over an existing file; a short passphrase; a bad recipient.
    let taken = tmp.path().join("taken.age");
    std::fs::write(&taken, "not mine").expect("write");
    let e = backup_to(&dir, &taken, &recipient)
        .await
        .expect_err("exists");
    assert_eq!(exit_code(&e), 2);
    assert_eq!(std::fs::read_to_string(&taken).expect("kept"), "not mine");
    let short = tmp.path().join("short");
    std::fs::write(&short, "trop court").expect("write");
    let out = tmp.path().join("a.age");
    let e = maillon(&[
        "node",
        "backup",
        "--dir",
        &s(&dir),
        "--out",
        &s(&out),
        "--passphrase-file",
        &s(&short),
    ])
    .await
    .expect_err("short passphrase");
    assert_eq!(exit_code(&e), 2);
    let e = maillon(&[
        "node",
        "backup",
        "--dir",
        &s(&dir),
        "--out",
        &s(&out),
        "--recipient",
        "age1nope",
    ])
    .await
    .expect_err("bad recipient");
    assert_eq!(exit_code(&e), 2);
    assert!(!out.exists(), "no file for a refused backup");

    // A good backup, to another key: this key cannot open it.
    backup_to(&dir, &out, &other_recipient)
        .await
        .expect("backup");
    let target = tmp.path().join("target");
    let e = restore_to(&out, &target, &key)
        .await
        .expect_err("wrong key");
    assert_eq!(exit_code(&e), 2);
    assert!(!target.exists(), "nothing written");

    // Not into a folder that holds something.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).expect("dir");
    std::fs::write(full.join("x"), "x").expect("write");
    let (other_key, _) = (tmp.path().join("other").join("backup.key"), ());
    let e = restore_to(&out, &full, &other_key)
        .await
        .expect_err("not empty");
    assert_eq!(exit_code(&e), 2);
    assert_eq!(std::fs::read_dir(&full).expect("dir").count(), 1);

    // An archive cut short: refused, and what was written is removed.
    let bytes = std::fs::read(&out).expect("archive");
    let cut = tmp.path().join("cut.age");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let e = restore_to(&cut, &target, &other_key)
        .await
        .expect_err("cut short");
    assert_ne!(exit_code(&e), 0);
    assert!(!target.exists(), "a failed restore leaves nothing");
    // Not an age file at all.
    let e = restore_to(&taken, &target, &other_key)
        .await
        .expect_err("not age");
    assert_eq!(exit_code(&e), 2);
}

#[tokio::test]
async fn a_restore_waits_for_every_peer_unless_the_operator_names_those_gone() {
    let mut c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, recipient) = backup_key(tmp.path()).await;
    let (ccas, _caf, d, _) = c.housing_read_by_the_caf().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let archive = tmp.path().join("ccas.age");
    backup_to(&dir, &archive, &recipient).await.expect("backup");
    c.fed.node_mut("ccas-rodez").stop().await;
    // The département's node is down.
    c.fed.node_mut("cd12").stop().await;
    let new_dir = tmp.path().join("restored");
    restore_to(&archive, &new_dir, &key)
        .await
        .expect("restored");
    let e = start_from(&mut c, "ccas-rodez", &new_dir)
        .await
        .expect_err("cd12 was not asked");
    let line = maillon_cli::exit::one_line(&e);
    assert!(
        line.contains("cd12") && line.contains("could not be asked"),
        "{line}"
    );
    assert!(line.contains("restore-without"), "{line}");
    // Only a folder with a restore to confirm takes the waiver.
    let e = maillon(&["node", "restore-without", "--dir", &s(&dir), "cd12"])
        .await
        .expect_err("nothing to confirm");
    assert_eq!(exit_code(&e), 2);
    maillon(&["node", "restore-without", "--dir", &s(&new_dir), "cd12"])
        .await
        .expect("waived");
    start_from(&mut c, "ccas-rodez", &new_dir)
        .await
        .expect("the CAF answered, the CD is waived");
    assert!(!new_dir.join("restored.json").exists());
    assert_eq!(ccas.get(&d, "housing").await.expect("served"), HOUSING);
}

#[tokio::test]
async fn two_backups_at_once_are_both_whole() {
    let c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, recipient) = backup_key(tmp.path()).await;
    let _ = c.housing_read_by_the_caf().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let (a, b) = (tmp.path().join("a.age"), tmp.path().join("b.age"));
    let (d, oa, ob) = (s(&dir), s(&a), s(&b));
    let first = [
        "node",
        "backup",
        "--dir",
        &d,
        "--out",
        &oa,
        "--recipient",
        &recipient,
    ];
    let second = [
        "node",
        "backup",
        "--dir",
        &d,
        "--out",
        &ob,
        "--recipient",
        &recipient,
    ];
    let (ra, rb) = tokio::join!(maillon(&first), maillon(&second));
    ra.expect("first");
    rb.expect("second");
    for (archive, target) in [(&a, "ra"), (&b, "rb")] {
        let target = tmp.path().join(target);
        restore_to(archive, &target, &key)
            .await
            .expect("each archive restores");
        assert!(target.join("store").is_dir() && target.join("audit/audit.log").is_file());
    }
    assert!(!dir.join(".backup-store.dump").exists());
}

/// A plain (decrypted) archive holding `entries`, in order.
fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        // Names a hostile archive would carry, written as they are.
        let path = header.as_old_mut().name.as_mut();
        path[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, *bytes).expect("entry");
    }
    tar.into_inner().expect("archive")
}

#[tokio::test]
async fn a_hostile_archive_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manifest = br#"{"format":"maillon-backup/1","version":"0","member":"ccas-rodez","created_at":0,"store_records":0,"log_bytes":0,"log_entries":0}"#;
    let other_format = br#"{"format":"maillon-backup/9","version":"0","member":"ccas-rodez","created_at":0,"store_records":0,"log_bytes":0,"log_entries":0}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "escape",
            archive(&[("node/../evil", b"x")]),
            "unexpected entry",
        ),
        (
            "absolute",
            archive(&[("/tmp/evil", b"x")]),
            "unexpected entry",
        ),
        (
            "hidden",
            archive(&[("node/.profile", b"x")]),
            "unexpected entry",
        ),
        (
            "audit",
            archive(&[("audit/other", b"x")]),
            "unexpected entry",
        ),
        (
            "nested",
            archive(&[("dossier-keys/a/b", b"x")]),
            "unexpected entry",
        ),
        (
            "after",
            archive(&[("manifest.json", manifest), ("node/x", b"x")]),
            "after its manifest",
        ),
        (
            "format",
            archive(&[("store.dump", b""), ("manifest.json", other_format)]),
            "archive format",
        ),
        ("cut", archive(&[("store.dump", b"")]), "no manifest"),
        (
            "dump",
            archive(&[("store.dump", b"\x03abc\x00\x00")]),
            "store dump",
        ),
        (
            "garbage",
            b"not a tar archive at all, just words".to_vec(),
            "",
        ),
    ];
    for (name, bytes, reason) in cases {
        let dir = tmp.path().join(name);
        let e = maillon_node::daemon::restore(&dir, std::io::Cursor::new(bytes))
            .await
            .expect_err(name);
        let line = maillon_cli::exit::one_line(&e);
        assert!(line.contains(reason), "{name}: {line}");
        assert!(!dir.exists(), "{name}: a failed restore leaves nothing");
    }
    assert!(!tmp.path().join("evil").exists() && !std::path::Path::new("/tmp/evil").exists());
    // A folder the operator made stays, emptied.
    let made = tmp.path().join("made");
    std::fs::create_dir(&made).expect("dir");
    maillon_node::daemon::restore(&made, std::io::Cursor::new(archive(&[("node/x", b"x")])))
        .await
        .expect_err("no manifest");
    assert!(made.is_dir());
    assert_eq!(std::fs::read_dir(&made).expect("dir").count(), 0);
}
