//! The `maillon` command's own paths, run in-process: governance, profiles,
//! exit codes, and what it never prints (a token, a peer's control characters).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::Parser;
use maillon_cli::commands::gov;
use maillon_cli::exit::{self, exit_code, one_line};
use maillon_cli::{Args, CliError, run};
use maillon_node::config::ConfigError;
use maillon_node::daemon::StartError;
use maillon_node::roster::RosterError;
use maillon_node::types::Role;
use maillon_tests::Cluster;
use tonic::Status;

pub(crate) async fn maillon(args: &[&str]) -> Result<(), CliError> {
    let mut argv = vec!["maillon"];
    argv.extend_from_slice(args);
    run(Args::try_parse_from(argv).expect("the arguments parse")).await
}

fn free() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string()
}

pub(crate) fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// `maillon node init` of a member in `dir`, on free loopback ports.
async fn init(dir: &str, member: &str, kind: &str) -> Result<(), CliError> {
    let (peer, client) = (free(), free());
    maillon(&[
        "node",
        "init",
        "--dir",
        dir,
        "--member",
        member,
        "--name",
        member,
        "--kind",
        kind,
        "--peer-addr",
        &peer,
        "--client-addr",
        &client,
    ])
    .await
}

/// Two founders' nodes (`a`, `b`) and their unsigned genesis roster in `tmp`.
async fn two_founders_and_a_genesis_roster(tmp: &Path) -> String {
    init(&path(tmp, "a"), "ccas-rodez", "ccas")
        .await
        .expect("init a");
    init(&path(tmp, "b"), "caf12", "caf").await.expect("init b");
    let roster = path(tmp, "roster.json");
    maillon(&[
        "gov",
        "genesis",
        "--federation",
        "gip-test",
        "--card",
        &path(tmp, "a/card.json"),
        "--card",
        &path(tmp, "b/card.json"),
        "--out",
        &roster,
    ])
    .await
    .expect("genesis");
    roster
}

#[tokio::test]
async fn founders_build_sign_and_verify_a_genesis_roster_with_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let roster = two_founders_and_a_genesis_roster(tmp.path()).await;

    let again = init(&path(tmp.path(), "a"), "x1", "ccas")
        .await
        .expect_err("a node folder is initialised once");
    assert!(
        matches!(
            &again,
            CliError::Node {
                source: StartError::Config(ConfigError::Invalid { .. }),
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(exit_code(&again), exit::BAD_INPUT);

    let overwrite = maillon(&[
        "gov",
        "genesis",
        "--federation",
        "gip-test",
        "--card",
        &path(tmp.path(), "a/card.json"),
        "--out",
        &roster,
    ])
    .await
    .expect_err("an existing roster is never overwritten");
    assert!(
        matches!(overwrite, CliError::Exists { .. }),
        "{overwrite:?}"
    );
    assert_eq!(exit_code(&overwrite), exit::BAD_INPUT);

    maillon(&[
        "gov",
        "sign",
        &roster,
        "--dir",
        &path(tmp.path(), "a"),
        "--yes",
    ])
    .await
    .expect("sign a");
    let missing = maillon(&["gov", "verify", &roster])
        .await
        .expect_err("one founder missing");
    match &missing {
        CliError::Roster(RosterError::MissingSignatures { missing, .. }) => {
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].as_str(), "caf12");
        }
        other => panic!("expected missing signatures, got {other:?}"),
    }
    assert_eq!(exit_code(&missing), exit::FAILURE);
    maillon(&[
        "gov",
        "sign",
        &roster,
        "--dir",
        &path(tmp.path(), "b"),
        "--yes",
    ])
    .await
    .expect("sign b");
    maillon(&["gov", "verify", &roster])
        .await
        .expect("complete roster");
}

#[tokio::test]
async fn a_founder_who_does_not_confirm_signs_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let roster = two_founders_and_a_genesis_roster(tmp.path()).await;
    let (roster, dir_a) = (Path::new(&roster), tmp.path().join("a"));
    let before = std::fs::read(roster).expect("roster");
    for answer in ["n\n", "\n", "", "oui\n"] {
        let refused =
            gov::sign(roster, &dir_a, false, answer.as_bytes()).expect_err("only y or yes signs");
        assert!(matches!(refused, CliError::NotSigned), "{refused:?}");
        assert_eq!(exit_code(&refused), exit::REFUSED);
        assert_eq!(
            std::fs::read(roster).expect("roster"),
            before,
            "the roster file is untouched after {answer:?}"
        );
    }
    gov::sign(roster, &dir_a, false, "y\n".as_bytes()).expect("y signs");
    let signed: maillon_node::roster::SignedRoster =
        serde_json::from_slice(&std::fs::read(roster).expect("roster")).expect("a roster");
    assert_eq!(signed.signatures.len(), 1);
    assert_eq!(signed.signatures[0].signer.as_str(), "ccas-rodez");
}

#[tokio::test]
async fn every_bad_local_input_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad_kind = init(&path(tmp.path(), "c"), "x1", "mairie")
        .await
        .expect_err("unknown kind");
    assert!(
        matches!(bad_kind, CliError::BadArgument { arg: "kind", .. }),
        "{bad_kind:?}"
    );
    let bad_member = init(&path(tmp.path(), "c"), "CCAS Rodez!", "ccas")
        .await
        .expect_err("bad member id");
    assert!(
        matches!(bad_member, CliError::BadArgument { arg: "member", .. }),
        "{bad_member:?}"
    );

    init(&path(tmp.path(), "n"), "cd12", "departement")
        .await
        .expect("init");
    let profile = path(tmp.path(), "n/admin.profile.toml");
    // The connection is lazy: these fail before any call, without a running node.
    let bad_date = maillon(&[
        "--profile",
        &profile,
        "dossier",
        "open",
        "--given-name",
        "Camille",
        "--family-name",
        "Martin",
        "--birth-date",
        "1984-13-45",
    ])
    .await
    .expect_err("bad date");
    assert!(
        matches!(
            bad_date,
            CliError::BadArgument {
                arg: "birth-date",
                ..
            }
        ),
        "{bad_date:?}"
    );
    let bad_role = maillon(&["--profile", &profile, "user", "add", "x", "--role", "boss"])
        .await
        .expect_err("bad role");
    assert!(
        matches!(bad_role, CliError::BadArgument { arg: "role", .. }),
        "{bad_role:?}"
    );

    let not_json = tmp.path().join("notes.txt");
    std::fs::write(&not_json, "not a roster").expect("write");
    let not_json = not_json.to_string_lossy().into_owned();
    let not_a_roster = maillon(&["gov", "verify", &not_json])
        .await
        .expect_err("not a roster");
    assert!(
        matches!(not_a_roster, CliError::BadFile { what: "roster", .. }),
        "{not_a_roster:?}"
    );
    let genesis = |card: String, quorum: &'static str| {
        let out = path(tmp.path(), "roster.json");
        async move {
            maillon(&[
                "gov",
                "genesis",
                "--federation",
                "gip-test",
                "--quorum",
                quorum,
                "--card",
                &card,
                "--out",
                &out,
            ])
            .await
        }
    };
    let not_a_card = genesis(not_json.clone(), "2/3")
        .await
        .expect_err("not a card");
    assert!(
        matches!(
            not_a_card,
            CliError::BadFile {
                what: "member card",
                ..
            }
        ),
        "{not_a_card:?}"
    );
    let bad_quorum = genesis(path(tmp.path(), "n/card.json"), "5/3")
        .await
        .expect_err("bad quorum");
    assert!(
        matches!(bad_quorum, CliError::BadQuorum(_)),
        "{bad_quorum:?}"
    );
    let no_profile = maillon(&["whoami"]).await.expect_err("no profile");
    assert!(matches!(no_profile, CliError::NoProfile), "{no_profile:?}");

    for e in [
        bad_kind,
        bad_member,
        bad_date,
        bad_role,
        not_a_roster,
        not_a_card,
        bad_quorum,
        no_profile,
    ] {
        assert_eq!(exit_code(&e), exit::BAD_INPUT, "{e:?}");
    }
}

#[tokio::test]
async fn a_profile_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(&path(tmp.path(), "n"), "cd12", "departement")
        .await
        .expect("init");
    let profile = tmp.path().join("n/admin.profile.toml");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = maillon(&["--profile", &profile.to_string_lossy(), "whoami"])
        .await
        .expect_err("loose profile");
    assert!(matches!(err, CliError::Config(_)), "{err:?}");
    assert_eq!(exit_code(&err), exit::BAD_INPUT);
    // The message is the promise here: it tells the operator what to do.
    assert!(one_line(&err).contains("chmod 600"), "{}", one_line(&err));
}

#[tokio::test]
async fn a_node_that_is_not_running_is_unreachable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(&path(tmp.path(), "n"), "cd12", "departement")
        .await
        .expect("init");
    let err = maillon(&[
        "--profile",
        &path(tmp.path(), "n/admin.profile.toml"),
        "whoami",
    ])
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, CliError::Unreachable(_)), "{err:?}");
    assert_eq!(exit_code(&err), exit::UNREACHABLE);
}

#[test]
fn exit_codes_follow_the_refusal() {
    let code = |s: Status| exit_code(&CliError::from(s));
    assert_eq!(code(Status::invalid_argument("x")), 2);
    assert_eq!(code(Status::resource_exhausted("x")), 2);
    assert_eq!(code(Status::out_of_range("x")), 2);
    assert_eq!(code(Status::already_exists("x")), 2);
    assert_eq!(code(Status::permission_denied("x")), 3);
    assert_eq!(code(Status::unauthenticated("x")), 3);
    assert_eq!(code(Status::not_found("x")), 4);
    assert_eq!(code(Status::unavailable("x")), 5);
    assert_eq!(code(Status::internal("x")), 1);
    assert_eq!(code(Status::failed_precondition("x")), 1);
    assert!(matches!(
        CliError::from(Status::permission_denied("x")),
        CliError::Refused(_)
    ));
    assert!(matches!(
        CliError::from(Status::not_found("x")),
        CliError::NotFound(_)
    ));
    assert!(matches!(
        CliError::from(Status::unavailable("x")),
        CliError::Unreachable(_)
    ));
    assert_eq!(exit_code(&CliError::NotSigned), 3);
    assert_eq!(exit_code(&CliError::Unexpected("other".into())), 1);
    // The rendering is the promise: one line, the code in words, the node's message.
    let line = one_line(&CliError::from(Status::permission_denied(
        "consent revoked",
    )));
    assert_eq!(line, "permission denied: consent revoked");
}

#[test]
fn a_peer_cannot_write_control_characters_to_the_terminal() {
    let e = CliError::from(Status::permission_denied(
        "refusé par caf12\u{1b}[2K\r\nmaillon: done",
    ));
    let line = one_line(&e);
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert!(
        line.contains("refusé") && line.contains("\\u{1b}[2K\\r\\n"),
        "{line}"
    );
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output() {
    let token = "tok-5f3a9c0e7d1b4e2a8c6f0b9d3e7a1c5f";
    let profile = maillon_node::config::Profile {
        endpoint: free(),
        server_spki_sha256: maillon_node::crypto::SpkiHash([7; 32]),
        member: "ccas-rodez".parse().expect("member id"),
        user: "agent".into(),
        token: token.into(),
    };
    // The channel is lazy: nothing listens, nothing is dialled.
    let conn = maillon_cli::client::Conn::new(&profile).expect("conn");
    let conn_debug = format!("{conn:?}");
    let req_debug = format!("{:?}", conn.req(maillon_proto::v1::WhoAmIRequest {}));
    for debug in [&conn_debug, &req_debug] {
        assert!(!debug.contains(token), "{debug}");
        assert!(!debug.contains(&token[4..12]), "{debug}");
    }
    assert!(req_debug.contains("Sensitive"), "{req_debug}");
}

#[tokio::test]
async fn an_admin_admits_a_partner_from_the_command_line_and_the_newcomer_joins_with_the_genesis_hash()
 {
    let mut c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let newcomer = path(tmp.path(), "relais");
    init(&newcomer, "relais-solidaire", "association")
        .await
        .expect("init the newcomer");
    let profile = |id: &str| {
        c.node(id)
            .dir
            .join("admin.profile.toml")
            .to_string_lossy()
            .into_owned()
    };
    let (cd, ccas) = (profile("cd12"), profile("ccas-rodez"));
    let card = format!("{newcomer}/card.json");

    // Bad input changes nothing and exits 2; an unknown proposal exits 4.
    let err = maillon(&[
        "--profile",
        &cd,
        "gov",
        "propose",
        "admit",
        "--card",
        &format!("{newcomer}/node.toml"),
    ])
    .await
    .expect_err("no such card");
    assert_eq!(exit_code(&err), exit::BAD_INPUT, "{}", one_line(&err));
    let err = maillon(&["--profile", &cd, "gov", "propose", "set-quorum", "5/3"])
        .await
        .expect_err("bad quorum");
    assert_eq!(exit_code(&err), exit::BAD_INPUT, "{}", one_line(&err));
    let err = maillon(&["--profile", &cd, "gov", "approve", "7"])
        .await
        .expect_err("no such proposal");
    assert_eq!(exit_code(&err), exit::NOT_FOUND, "{}", one_line(&err));
    let err = maillon(&["gov", "list"]).await.expect_err("no profile");
    assert!(matches!(err, CliError::NoProfile));

    maillon(&[
        "--profile",
        &cd,
        "gov",
        "propose",
        "admit",
        "--card",
        &card,
        "--reason",
        "ouverture",
    ])
    .await
    .expect("proposed");
    maillon(&["--profile", &ccas, "gov", "list"])
        .await
        .expect("list");
    let candidate = path(tmp.path(), "candidate.json");
    maillon(&["--profile", &ccas, "gov", "show", "2", "--out", &candidate])
        .await
        .expect("show and export");
    maillon(&["gov", "sign", &candidate, "--dir", &newcomer, "--yes"])
        .await
        .expect("the newcomer proves its key");
    maillon(&[
        "--profile",
        &ccas,
        "gov",
        "approve",
        "2",
        "--with",
        &candidate,
    ])
    .await
    .expect("approved");
    c.wait_version(&["cd12", "ccas-rodez", "caf12"], 2).await;
    maillon(&["--profile", &ccas, "gov", "status"])
        .await
        .expect("status");
    let err = maillon(&[
        "--profile",
        &ccas,
        "gov",
        "reject",
        "2",
        "--reason",
        "trop tard",
    ])
    .await
    .expect_err("nothing open any more");
    assert_eq!(exit_code(&err), exit::NOT_FOUND);

    // The newcomer installs the genesis only if its hash is the sponsor's.
    let genesis = c.fed.dir.join("roster.json").to_string_lossy().into_owned();
    let err = maillon(&[
        "node",
        "join",
        "--dir",
        &newcomer,
        "--roster",
        &genesis,
        "--genesis-hash",
        &"ab".repeat(32),
    ])
    .await
    .expect_err("wrong hash");
    assert!(matches!(err, CliError::GenesisMismatch { .. }));
    assert_eq!(exit_code(&err), exit::BAD_INPUT);
    assert!(
        !Path::new(&newcomer).join("roster.json").exists(),
        "nothing installed"
    );
    let hash = c.genesis().hash_hex().to_owned();
    let sponsor = c
        .node("ccas-rodez")
        .dir
        .join("card.json")
        .to_string_lossy()
        .into_owned();
    maillon(&[
        "node",
        "join",
        "--dir",
        &newcomer,
        "--roster",
        &genesis,
        "--genesis-hash",
        &hash,
        "--sponsor",
        &sponsor,
    ])
    .await
    .expect("joined");
    let err = maillon(&[
        "node",
        "join",
        "--dir",
        &newcomer,
        "--roster",
        &genesis,
        "--genesis-hash",
        &hash,
    ])
    .await
    .expect_err("a roster is never overwritten");
    assert!(matches!(err, CliError::Exists { .. }));
    let node = maillon_node::daemon::start(Path::new(&newcomer))
        .await
        .expect("the newcomer fetches the chain and serves");
    assert_eq!(node.node().roster().roster().version, 2);
    node.stop().await;
    c.fed.stop().await;
}

/// The daily commands of the dossier social unique from the command line:
/// a consent with its receipt, a multi-section read, the référent, and the
/// exit codes of their refusals.
#[tokio::test]
async fn a_caseworker_runs_the_dossier_from_the_command_line() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let profile = |id: &str, user: &str| path(&c.node(id).dir, &format!("{user}.profile.toml"));
    let (ccas_p, caf_p) = (
        profile("ccas-rodez", "agent-ccas"),
        profile("caf12", "agent-caf"),
    );
    let until = maillon_tests::next_year(&c.clock);
    maillon(&[
        "--profile",
        &ccas_p,
        "consent",
        "grant",
        &d,
        "--sections",
        "housing",
        "--to",
        "caf12",
        "--purpose",
        "coordination du parcours",
        "--until",
        &until,
        "--form",
        "FORM-1",
    ])
    .await
    .expect("grant on a signed form");
    // How it was given is required, and the reference goes with a form only.
    let none = Args::try_parse_from([
        "maillon",
        "--profile",
        &ccas_p,
        "consent",
        "grant",
        &d,
        "--sections",
        "housing",
        "--to",
        "caf12",
        "--purpose",
        "p",
        "--until",
        &until,
    ]);
    assert!(none.is_err(), "--form, --oral or --informed is required");
    let informed = Args::try_parse_from([
        "maillon",
        "--profile",
        &ccas_p,
        "consent",
        "grant",
        &d,
        "--sections",
        "housing",
        "--to",
        "caf12",
        "--purpose",
        "p",
        "--until",
        &until,
        "--informed",
    ]);
    assert!(informed.is_err(), "--informed needs --legal-mission");
    let consents = ccas
        .conn
        .api()
        .list_consents(
            ccas.conn
                .req(maillon_proto::v1::ListConsentsRequest { dossier: d.clone() }),
        )
        .await
        .expect("list")
        .into_inner()
        .consents;
    assert_eq!(consents[0].collection, "signed_form");
    maillon(&["--profile", &ccas_p, "consent", "show", &consents[0].id])
        .await
        .expect("receipt");
    maillon(&[
        "--profile",
        &ccas_p,
        "consent",
        "show",
        &consents[0].id,
        "--json",
    ])
    .await
    .expect("JSON receipt");
    maillon(&[
        "--profile",
        &caf_p,
        "share",
        "read",
        &d,
        "housing",
        "--from",
        "ccas-rodez",
        "--json",
    ])
    .await
    .expect("read");
    // Every section refused: exit 3.
    let refused = maillon(&[
        "--profile",
        &caf_p,
        "share",
        "read",
        &d,
        "health,resources",
        "--from",
        "ccas-rodez",
    ])
    .await
    .expect_err("nothing readable");
    assert_eq!(exit_code(&refused), exit::REFUSED, "{refused:?}");
    // A justification that is not a sentence never leaves: exit 2.
    let short = maillon(&[
        "--profile",
        &caf_p,
        "share",
        "read",
        &d,
        "housing",
        "--from",
        "ccas-rodez",
        "--break-glass",
        "urgence",
    ])
    .await
    .expect_err("too short");
    assert_eq!(exit_code(&short), exit::BAD_INPUT, "{short:?}");
    // The référent, at the holder; erasing needs --confirm.
    maillon(&[
        "--profile",
        &ccas_p,
        "dossier",
        "referent",
        &d,
        "--set",
        "agent-ccas@ccas-rodez",
    ])
    .await
    .expect("named");
    let unconfirmed = maillon(&["--profile", &ccas_p, "dossier", "erase", &d])
        .await
        .expect_err("not confirmed");
    assert_eq!(exit_code(&unconfirmed), exit::BAD_INPUT);
    let bad_reason = maillon(&[
        "--profile",
        &ccas_p,
        "dossier",
        "close",
        &d,
        "--reason",
        "bored",
    ])
    .await
    .expect_err("bad reason");
    assert_eq!(exit_code(&bad_reason), exit::BAD_INPUT);
    maillon(&["--profile", &ccas_p, "dossier", "view", &d, "--json"])
        .await
        .expect("view");
    // Auditor and admin commands, and a caseworker refused them.
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    drop(dpo);
    let dpo_p = profile("ccas-rodez", "dpo");
    maillon(&["--profile", &dpo_p, "audit", "break-glass", "--pending"])
        .await
        .expect("list");
    let admin_p = path(&c.node("ccas-rodez").dir, "admin.profile.toml");
    maillon(&["--profile", &admin_p, "outbox", "--json"])
        .await
        .expect("outbox");
    let not_admin = maillon(&["--profile", &ccas_p, "outbox"])
        .await
        .expect_err("a caseworker");
    assert_eq!(exit_code(&not_admin), exit::REFUSED);
    drop(caf);
}

/// `audit verify` remembers the checkpoint it verified: a node whose log was
/// cut back since (restored from an older copy, a fresh checkpoint signed)
/// is caught on the next run; `audit vkey` and `audit witness` print.
#[tokio::test]
async fn the_auditor_remembers_checkpoints_and_catches_a_log_cut_back() {
    let mut c = Cluster::start().await;
    let _parcours = c.housing_read_by_the_caf().await;
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    drop(dpo);
    let dir = c.node("ccas-rodez").dir.clone();
    let (dpo_p, roster) = (path(&dir, "dpo.profile.toml"), path(&dir, "roster.json"));
    let state = path(&dir, "dpo-state.json");
    let verify = || {
        let args: Vec<String> = [
            "--profile",
            &dpo_p,
            "audit",
            "verify",
            "--roster",
            &roster,
            "--state",
            &state,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            maillon(&args).await
        }
    };
    verify().await.expect("first run");
    // An older copy of the node's log and store, kept aside.
    let copy = tempfile::tempdir().expect("tempdir");
    let clock: std::sync::Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    c.fed.node_mut("ccas-rodez").stop().await;
    for sub in ["audit", "store"] {
        let status = std::process::Command::new("cp")
            .args(["-a", &path(&dir, sub), &path(copy.path(), sub)])
            .status()
            .expect("cp");
        assert!(status.success());
    }
    c.fed
        .node_mut("ccas-rodez")
        .start(clock.clone())
        .await
        .expect("restart");
    c.desk("ccas-rodez", "agent-2")
        .await
        .open()
        .await
        .expect("more entries");
    verify()
        .await
        .expect("the log grew: it extends what was verified");
    let mode = std::fs::metadata(&state)
        .expect("state")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // The operator puts the older copy back: the node starts on it, and
    // signs checkpoints of it; the auditor's memory catches it.
    c.fed.node_mut("ccas-rodez").stop().await;
    for sub in ["audit", "store"] {
        std::fs::remove_dir_all(path(&dir, sub)).expect("rm");
        let status = std::process::Command::new("cp")
            .args(["-a", &path(copy.path(), sub), &path(&dir, sub)])
            .status()
            .expect("cp");
        assert!(status.success());
    }
    c.fed
        .node_mut("ccas-rodez")
        .start(clock)
        .await
        .expect("restart on the old copy");
    let cut = verify().await.expect_err("the log was cut back");
    assert!(
        matches!(&cut, CliError::AuditFailed { findings: 1, .. }),
        "{cut:?}"
    );
    // The same check through the library names it: the memory was kept.
    let mut memory = maillon_cli::audit::load_state(std::path::Path::new(&state)).expect("state");
    let dpo = c.user("ccas-rodez", "dpo-2", Role::Auditor).await;
    let (bundles, _) = maillon_cli::audit::fetch_bundles(&dpo, c.genesis().signed(), None, false)
        .await
        .expect("bundles");
    let o = maillon_cli::audit::verify::verify_bundles(
        c.genesis().signed(),
        &bundles,
        Some(&mut memory),
        0,
    );
    assert!(
        o.findings
            .iter()
            .any(|f| f.node == "ccas-rodez" && f.reason.contains("it was cut")),
        "{:#?}",
        o.findings
    );
    assert_eq!(exit_code(&cut), exit::FAILURE);
    maillon(&["--profile", &dpo_p, "audit", "vkey"])
        .await
        .expect("vkey");
    maillon(&["--profile", &dpo_p, "audit", "witness"])
        .await
        .expect("witness");
}

/// `audit report`: the person's access report in French, as text, a
/// printable HTML page (escaped) or JSON, with times in Europe/Paris.
#[tokio::test]
async fn the_access_report_is_a_printable_french_page() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(
        &d,
        &["housing"],
        &["caf12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("grant");
    caf.conn
        .read_share(
            &d,
            "housing",
            "ccas-rodez",
            "<script>alert(1)</script> aide au logement",
        )
        .await
        .expect("read");
    let dpo = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let report = c.access_report(&dpo, &d).await;
    let text = report.text();
    assert!(
        !text.contains("UTC"),
        "times are told in Europe/Paris: {text}"
    );
    let html = report.html();
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"));
    assert!(
        html.contains("<h1>Rapport d'accès au dossier DSU-"),
        "{html}"
    );
    assert!(html.contains("CAF de l"), "{html}");
    assert!(html.contains("« logement »"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "escaped: {html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("@media print"));
    let json = report.json();
    assert_eq!(json["time_zone"], "Europe/Paris");
    assert!(json["entries"].as_array().expect("entries").len() >= 2);
    let dir = c.node("ccas-rodez").dir.clone();
    let (dpo_p, roster_p) = (path(&dir, "dpo.profile.toml"), path(&dir, "roster.json"));
    for format in ["text", "html", "json"] {
        maillon(&[
            "--profile",
            &dpo_p,
            "audit",
            "report",
            &d,
            "--roster",
            &roster_p,
            "--format",
            format,
        ])
        .await
        .expect(format);
    }
    assert!(
        Args::try_parse_from([
            "maillon", "audit", "report", &d, "--roster", &roster_p, "--format", "pdf"
        ])
        .is_err()
    );
}

#[tokio::test]
async fn completions_and_manual_pages_come_from_the_argument_definitions() {
    use clap_complete::Shell;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let script =
            String::from_utf8(maillon_cli::commands::completion_script(shell)).expect("utf-8");
        for word in ["maillon", "rotate", "valid-days", "log-format"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("man/man1");
    run(Args::parse_from([
        "maillon",
        "man",
        "--out",
        out.to_str().expect("utf-8"),
    ]))
    .await
    .expect("manual pages");
    let page =
        std::fs::read_to_string(out.join("maillon-user-rotate.1")).expect("a page per command");
    assert!(page.contains(".TH"), "roff");
    assert!(page.contains("valid"), "{page}");
    assert!(out.join("maillon.1").exists());
    // A folder that cannot be made is an error with a reason, not a panic.
    let blocked = tmp.path().join("file");
    std::fs::write(&blocked, "").expect("file");
    let err = run(Args::parse_from([
        "maillon",
        "man",
        "--out",
        blocked.join("sub").to_str().expect("utf-8"),
    ]))
    .await
    .expect_err("not a folder");
    assert!(!one_line(&err).is_empty());
}

#[tokio::test]
async fn a_rotation_renews_the_users_profile_in_place() {
    let c = Cluster::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = c.node("ccas-rodez").dir.join("admin.profile.toml");
    let out = tmp.path().join("dupont.profile.toml");
    let cli = |args: &[&str]| {
        let mut all = vec!["maillon", "--profile", admin.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        run(Args::parse_from(all))
    };
    let path = out.to_str().expect("utf-8");
    cli(&[
        "user",
        "add",
        "agent-dupont",
        "--role",
        "caseworker",
        "--profile-out",
        path,
    ])
    .await
    .expect("added");
    let first = maillon_node::config::Profile::read(&out).expect("profile");
    // Adding again to the same file is refused (a profile is never overwritten by an add).
    assert!(
        cli(&[
            "user",
            "add",
            "agent-autre",
            "--role",
            "caseworker",
            "--profile-out",
            path
        ])
        .await
        .is_err()
    );
    cli(&["user", "rotate", "agent-dupont", "--profile-out", path])
        .await
        .expect("rotated into the same file");
    let second = maillon_node::config::Profile::read(&out).expect("profile");
    assert_ne!(first.token, second.token);
    let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = |p: &maillon_node::config::Profile| maillon_cli::client::Conn::new(p).expect("conn");
    let old = conn(&first);
    assert!(
        old.api()
            .who_am_i(old.req(maillon_proto::v1::WhoAmIRequest {}))
            .await
            .is_err()
    );
    let new = conn(&second);
    let me = new
        .api()
        .who_am_i(new.req(maillon_proto::v1::WhoAmIRequest {}))
        .await
        .expect("the renewed profile works")
        .into_inner();
    assert_eq!(me.user, "agent-dupont");
    assert!(me.token_expires_at > 0);
}
