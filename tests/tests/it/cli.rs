//! The `maillon` command's own paths, run in-process: governance, profiles, exit codes.

use std::os::unix::fs::PermissionsExt;

use clap::Parser;
use maillon_cli::cli::{Args, exit_code, one_line, run};
use tonic::Status;

async fn maillon(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["maillon"];
    argv.extend_from_slice(args);
    run(Args::try_parse_from(argv)?).await
}

fn free() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string()
}

#[tokio::test]
async fn founders_build_sign_and_verify_a_genesis_roster_with_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    for (dir, member, kind) in [("a", "ccas-rodez", "ccas"), ("b", "caf12", "caf")] {
        let (peer, client) = (free(), free());
        maillon(&[
            "node",
            "init",
            "--dir",
            &p(dir),
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
        .expect("init");
    }
    let again = maillon(&[
        "node",
        "init",
        "--dir",
        &p("a"),
        "--member",
        "x1",
        "--name",
        "x",
        "--kind",
        "ccas",
        "--peer-addr",
        &free(),
        "--client-addr",
        &free(),
    ])
    .await;
    assert!(one_line(&again.expect_err("a node folder is initialised once")).contains("not empty"));
    let bad_kind = maillon(&[
        "node",
        "init",
        "--dir",
        &p("c"),
        "--member",
        "x1",
        "--name",
        "x",
        "--kind",
        "mairie",
        "--peer-addr",
        &free(),
        "--client-addr",
        &free(),
    ])
    .await;
    assert!(one_line(&bad_kind.expect_err("unknown kind")).contains("member kind"));

    let roster = p("roster.json");
    maillon(&[
        "gov",
        "genesis",
        "--federation",
        "gip-test",
        "--card",
        &p("a/card.json"),
        "--card",
        &p("b/card.json"),
        "--out",
        &roster,
    ])
    .await
    .expect("genesis");
    let overwrite = maillon(&[
        "gov",
        "genesis",
        "--federation",
        "gip-test",
        "--card",
        &p("a/card.json"),
        "--out",
        &roster,
    ])
    .await;
    assert!(
        overwrite.is_err(),
        "an existing roster is never overwritten"
    );

    maillon(&["gov", "sign", &roster, "--dir", &p("a")])
        .await
        .expect("sign a");
    let missing = maillon(&["gov", "verify", &roster])
        .await
        .expect_err("one founder missing");
    assert!(
        one_line(&missing).ends_with("roster v1 lacks the signature of: caf12"),
        "{}",
        one_line(&missing)
    );
    maillon(&["gov", "sign", &roster, "--dir", &p("b")])
        .await
        .expect("sign b");
    maillon(&["gov", "verify", &roster])
        .await
        .expect("complete roster");
}

#[tokio::test]
async fn a_profile_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n").to_string_lossy().into_owned();
    maillon(&[
        "node",
        "init",
        "--dir",
        &dir,
        "--member",
        "cd12",
        "--name",
        "CD",
        "--kind",
        "departement",
        "--peer-addr",
        &free(),
        "--client-addr",
        &free(),
    ])
    .await
    .expect("init");
    let profile = tmp.path().join("n/admin.profile.toml");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = maillon(&["--profile", &profile.to_string_lossy(), "whoami"])
        .await
        .expect_err("loose profile");
    assert!(one_line(&err).contains("chmod 600"), "{}", one_line(&err));
    let err = maillon(&["whoami"]).await.expect_err("no profile");
    assert!(one_line(&err).contains("--profile"), "{}", one_line(&err));
}

#[test]
fn exit_codes_follow_the_refusal() {
    let code = |s: Status| exit_code(&anyhow::Error::new(s).context("calling the node"));
    assert_eq!(code(Status::invalid_argument("x")), 2);
    assert_eq!(code(Status::resource_exhausted("x")), 2);
    assert_eq!(code(Status::permission_denied("x")), 3);
    assert_eq!(code(Status::unauthenticated("x")), 3);
    assert_eq!(code(Status::not_found("x")), 4);
    assert_eq!(code(Status::unavailable("x")), 5);
    assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    let line = one_line(&anyhow::Error::new(Status::permission_denied(
        "consent revoked",
    )));
    assert_eq!(line, "permission denied: consent revoked");
}
