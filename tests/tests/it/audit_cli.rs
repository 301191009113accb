//! The auditor's commands end to end: `audit verify` online (one node, one
//! member, every member) and offline from `audit export` files, with the
//! auditor's memory kept between runs; each kind of tampering named by node
//! and entry, and every refusal with its exit code.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use maillon_cli::CliError;
use maillon_cli::audit::verify::{Outcome, verify_exports};
use maillon_cli::exit::{self, exit_code};
use maillon_node::audit::bundle::{Bundle, Leaf};
use maillon_node::audit::merkle;
use maillon_node::audit::note::Checkpoint;
use maillon_node::audit::{AuditEntry, AuditEvent};
use maillon_node::types::Role;
use maillon_tests::Cluster;

use super::auditors::{checkpoint_and_witness, resign};
use super::cli::{maillon, path};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
}

fn read_bundle(p: &Path) -> Bundle {
    Bundle::read(std::io::BufReader::new(
        std::fs::File::open(p).expect("open"),
    ))
    .expect("bundle")
}

fn write_bundle(p: &Path, b: &Bundle) {
    b.write(std::fs::File::create(p).expect("create"))
        .expect("write");
}

/// A copy of an auditor's state (the file and its leaf files) under `to`.
fn copy_state(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy state");
    let (mut a, mut b) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
    a.push(".leaves");
    b.push(".leaves");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// Runs `audit verify --offline` on `files` with a copy of `state`, then the
/// same engine on the same files and another copy, to read what it found.
async fn offline(
    roster: &str,
    state: &Path,
    work: &Path,
    case: &str,
    files: &[PathBuf],
) -> (Result<(), CliError>, Outcome) {
    let (cli_state, lib_state) = (
        work.join(format!("{case}-cli.json")),
        work.join(format!("{case}-lib.json")),
    );
    copy_state(state, &cli_state);
    copy_state(state, &lib_state);
    let cli_state_s = cli_state.to_string_lossy().into_owned();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut args = vec![
        "audit",
        "verify",
        "--roster",
        roster,
        "--state",
        &cli_state_s,
        "--offline",
    ];
    args.extend(names.iter().map(String::as_str));
    let result = maillon(&args).await;
    let genesis = maillon_node::daemon::load_roster(Path::new(roster)).expect("genesis");
    let bundles: Vec<Bundle> = files.iter().map(|f| read_bundle(f)).collect();
    let mut memory = maillon_cli::audit::load_state(&lib_state).expect("state");
    let outcome = verify_exports(genesis.signed(), &bundles, Some(&mut memory), 0);
    (result, outcome)
}

#[tokio::test]
async fn audit_verify_online_and_offline_names_what_a_node_hides() {
    let mut c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    checkpoint_and_witness(&c).await;
    drop(c.user("ccas-rodez", "dpo", Role::Auditor).await);
    drop(c.user("caf12", "dpo", Role::Auditor).await);
    drop(c.user("ccas-rodez", "agent-2", Role::Caseworker).await);
    let (ccas_dir, caf_dir) = (
        c.node("ccas-rodez").dir.clone(),
        c.node("caf12").dir.clone(),
    );
    let dpo = path(&ccas_dir, "dpo.profile.toml");
    let caf_dpo = path(&caf_dir, "dpo.profile.toml");
    let worker = path(&ccas_dir, "agent-2.profile.toml");
    let roster = path(&ccas_dir, "roster.json");
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("state.json");
    let state_s = state.to_string_lossy().into_owned();

    // Online: every member's log, and each against the others.
    maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--all",
        "--roster",
        &roster,
        "--state",
        &state_s,
    ])
    .await
    .expect("a clean federation verifies");
    assert_eq!(mode(&state), 0o600);
    let leaves = work.path().join("state.json.leaves");
    assert_eq!(mode(&leaves), 0o700);
    for m in ["ccas-rodez", "caf12", "cd12"] {
        assert_eq!(mode(&leaves.join(m)), 0o600, "{m}'s leaf hashes are kept");
    }
    // A leaf folder someone loosened is made private again on the next run.
    std::fs::set_permissions(&leaves, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--all",
        "--roster",
        &roster,
        "--state",
        &state_s,
    ])
    .await
    .expect("verifies again");
    assert_eq!(mode(&leaves), 0o700);
    let memory = maillon_cli::audit::load_state(&state).expect("state");
    assert_eq!(
        memory.nodes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["caf12", "ccas-rodez", "cd12"]
    );
    // One member's log, as it shows it to this node; then this node's own.
    maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--node",
        "caf12",
        "--roster",
        &roster,
        "--state",
        &state_s,
        "--json",
    ])
    .await
    .expect("the CAF's log");
    maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--roster",
        &roster,
        "--state",
        &state_s,
    ])
    .await
    .expect("this node's log");
    // Refusals: a caseworker, an unknown member, options that do not go together.
    for args in [
        vec![
            "--profile",
            &worker,
            "audit",
            "verify",
            "--roster",
            &roster,
            "--state",
            &state_s,
        ],
        vec![
            "--profile",
            &worker,
            "audit",
            "export",
            "--out",
            "/nonexistent/x",
        ],
    ] {
        let err = maillon(&args).await.expect_err("a caseworker");
        assert_eq!(exit_code(&err), exit::REFUSED, "{err:?}");
    }
    let err = maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--node",
        "Not_A_Member",
        "--roster",
        &roster,
    ])
    .await
    .expect_err("a bad member id");
    assert_eq!(exit_code(&err), exit::BAD_INPUT);
    for bad in [
        [
            "audit",
            "verify",
            "--roster",
            "r",
            "--node",
            "caf12",
            "--offline",
            "f",
        ],
        [
            "audit",
            "verify",
            "--roster",
            "r",
            "--all",
            "--offline",
            "f",
            "g",
        ],
    ] {
        let mut argv = vec!["maillon"];
        argv.extend_from_slice(&bad);
        assert!(<maillon_cli::Args as clap::Parser>::try_parse_from(argv).is_err());
    }

    // Export: 0600, never over an existing file.
    let (ccas_file, caf_file) = (
        work.path().join("ccas.bundle"),
        work.path().join("caf.bundle"),
    );
    let ccas_s = ccas_file.to_string_lossy().into_owned();
    maillon(&["--profile", &dpo, "audit", "export", "--out", &ccas_s])
        .await
        .expect("export");
    assert_eq!(mode(&ccas_file), 0o600);
    maillon(&[
        "--profile",
        &caf_dpo,
        "audit",
        "export",
        "--out",
        &caf_file.to_string_lossy(),
    ])
    .await
    .expect("the CAF's export");
    let again = maillon(&["--profile", &dpo, "audit", "export", "--out", &ccas_s])
        .await
        .expect_err("the file exists");
    assert!(matches!(again, CliError::Exists { .. }), "{again:?}");
    assert_eq!(exit_code(&again), exit::BAD_INPUT);

    // Offline, with no profile and no node: the files verify.
    let off_state = work.path().join("offline.json");
    maillon(&[
        "audit",
        "verify",
        "--roster",
        &roster,
        "--state",
        &off_state.to_string_lossy(),
        "--offline",
        &ccas_s,
        &caf_file.to_string_lossy(),
    ])
    .await
    .expect("the exported files verify");
    let junk = work.path().join("junk.bundle");
    std::fs::write(&junk, "maillon-audit-bundle/v1\nnot json\n").expect("write");
    let err = maillon(&[
        "audit",
        "verify",
        "--roster",
        &roster,
        "--offline",
        &junk.to_string_lossy(),
    ])
    .await
    .expect_err("not a bundle");
    assert!(matches!(err, CliError::NotABundle { .. }), "{err:?}");
    assert_eq!(exit_code(&err), exit::BAD_INPUT);

    let ccas = read_bundle(&ccas_file);
    let read_at = ccas
        .leaves
        .iter()
        .position(|l| {
            matches!(l, Leaf::Entry(b) if matches!(
                AuditEntry::from_bytes(b).map(|e| e.event),
                Ok(AuditEvent::ReadGranted { .. })
            ))
        })
        .expect("the CAF's read") as u64;
    let both = |name: &str, b: &Bundle| {
        let f = work.path().join(name);
        write_bundle(&f, b);
        vec![f, caf_file.clone()]
    };
    let about_ccas = |o: &Outcome| -> Vec<(Option<u64>, String)> {
        o.findings
            .iter()
            .filter(|f| f.node == "ccas-rodez")
            .map(|f| (f.index, f.reason.clone()))
            .collect()
    };

    // One stored entry edited (the read's purpose): named by the memory.
    let mut edited = ccas.clone();
    let Leaf::Entry(bytes) = &ccas.leaves[read_at as usize] else {
        panic!("shown")
    };
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    assert!(text.contains("\"purpose\":\""));
    edited.leaves[read_at as usize] = Leaf::Entry(
        text.replacen("\"purpose\":\"", "\"purpose\":\"(modifié) ", 1)
            .into_bytes(),
    );
    let (cli, o) = offline(
        &roster,
        &off_state,
        work.path(),
        "edited",
        &both("edited.bundle", &edited),
    )
    .await;
    let err = cli.expect_err("an edited entry");
    assert!(matches!(err, CliError::AuditFailed { .. }), "{err:?}");
    assert_eq!(exit_code(&err), exit::FAILURE);
    assert!(
        about_ccas(&o)
            .iter()
            .any(|(i, r)| *i == Some(read_at) && r.contains("was changed")),
        "{:#?}",
        o.findings
    );
    // As the command prints it: one line per failure, and the summary.
    let lines = o.text();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "FAIL ccas-rodez entry {read_at}: entry {read_at} was changed"
        ))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "ccas-rodez: DOES NOT VERIFY (see below)")
    );
    let json = o.json();
    assert_eq!(json["verified"], false);
    assert!(
        json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["node"] == "ccas-rodez" && f["index"] == read_at)
    );

    // The log truncated below its checkpoint.
    let mut cut = ccas.clone();
    cut.leaves.truncate(read_at as usize);
    let (cli, o) = offline(
        &roster,
        &off_state,
        work.path(),
        "cut",
        &both("cut.bundle", &cut),
    )
    .await;
    assert!(cli.is_err());
    assert!(
        about_ccas(&o)
            .iter()
            .any(|(i, r)| *i == Some(read_at) && r.contains("truncated")),
        "{:#?}",
        o.findings
    );

    // Rewritten after it was witnessed, without the read, signed again:
    // named by the memory, by the CAF's receipt and by the CAF's witnessing.
    let key = c.key("ccas-rodez");
    let mut rewritten = ccas.clone();
    rewritten.leaves[read_at as usize] = Leaf::Entry(
        AuditEntry {
            time: 0,
            event: AuditEvent::RosterAdopted {
                version: 1,
                hash: "0".repeat(64),
            },
        }
        .to_bytes(),
    );
    let hashes: Vec<merkle::Hash> = rewritten.leaves.iter().map(Leaf::hash).collect();
    let note = Checkpoint {
        origin: maillon_node::audit::origin(&"ccas-rodez".parse().expect("id")),
        size: hashes.len() as u64,
        root: merkle::root(&hashes),
    }
    .sign(&key);
    rewritten.manifest = resign(&ccas, &key, |m| {
        m.checkpoint = note.clone();
        m.cosigned = note.clone();
    });
    let (cli, o) = offline(
        &roster,
        &off_state,
        work.path(),
        "rewritten",
        &both("rewritten.bundle", &rewritten),
    )
    .await;
    assert!(cli.is_err());
    let found = about_ccas(&o);
    for what in ["rewritten", "missing from its log"] {
        assert!(
            found
                .iter()
                .any(|(i, r)| *i == Some(read_at) && r.contains(what)),
            "{what}: {found:#?}"
        );
    }
    assert!(
        found.iter().any(|(_, r)| r.contains("caf12 witnessed")),
        "{found:#?}"
    );

    // An archived export, older than a log verified since, is a prefix of
    // it: no failure offline, and said to be older.
    c.desk("ccas-rodez", "agent-3")
        .await
        .open()
        .await
        .expect("the log grows");
    let newer = work.path().join("ccas-newer.bundle");
    maillon(&[
        "--profile",
        &dpo,
        "audit",
        "export",
        "--out",
        &newer.to_string_lossy(),
    ])
    .await
    .expect("export");
    let (cli, o) = offline(
        &roster,
        &off_state,
        work.path(),
        "newer",
        &[newer, caf_file.clone()],
    )
    .await;
    cli.expect("the newer export extends the older one");
    assert!(o.nodes.iter().all(|n| !n.older_export));
    let after = work.path().join("newer-cli.json");
    let (cli, o) = offline(
        &roster,
        &after,
        work.path(),
        "older",
        std::slice::from_ref(&ccas_file),
    )
    .await;
    cli.expect("an older export is no failure offline");
    assert!(o.nodes[0].older_export, "{:#?}", o.nodes);

    // A member down: its log cannot be fetched, and --all fails.
    c.fed.node_mut("cd12").stop().await;
    let err = maillon(&[
        "--profile",
        &dpo,
        "audit",
        "verify",
        "--all",
        "--roster",
        &roster,
        "--state",
        &state_s,
    ])
    .await
    .expect_err("cd12 is down");
    assert!(matches!(err, CliError::AuditFailed { .. }), "{err:?}");
    let (_, unfetched) = maillon_cli::audit::fetch_bundles(
        &c.user("ccas-rodez", "dpo-2", Role::Auditor).await,
        c.genesis().signed(),
        None,
        true,
    )
    .await
    .expect("the others");
    assert_eq!(unfetched.len(), 1);
    assert_eq!(unfetched[0].node, "cd12");
    assert!(unfetched[0].reason.contains("could not be fetched"));
}
