//! The client API from a stock gRPC stack: Python grpcio, its stubs
//! generated from `proto/` here, the pin of the profile checked by the
//! script before anything is sent (`tests/python/client_api.py`).
//!
//! The venv is made once under the build folder from PyPI (grpcio,
//! grpcio-tools, grpcio-health-checking, grpcio-reflection, cryptography).

use std::process::Command;

use maillon_node::types::Role;
use maillon_tests::{Cluster, HOUSING};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/client_api.py");

const PACKAGES: &[(&str, &str)] = &[
    ("grpcio-health-checking", "grpc_health"),
    ("grpcio-reflection", "grpc_reflection"),
    ("cryptography", "cryptography"),
];

#[tokio::test]
async fn python_grpcio_reads_tails_checks_health_and_reflects_with_the_pin_checked() {
    let c = Cluster::start().await;
    let (_ccas, _caf, d, _) = c.housing_read_by_the_caf().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let caseworker = c
        .node("caf12")
        .add_user("agent-python", Role::Caseworker)
        .await
        .expect("user");
    let auditor = c
        .node("caf12")
        .add_user("dpo-python", Role::Auditor)
        .await
        .expect("user");
    let profile = tmp.path().join("profile.toml");
    caseworker.write_new(&profile).expect("profile");

    let (python, stubs) =
        tokio::task::spawn_blocking(|| maillon_cli::bench::python::environment(PACKAGES))
            .await
            .expect("joined")
            .unwrap_or_else(|e| {
                panic!("the Python environment (python3 and PyPI are needed): {e}")
            });
    let run = |profile: std::path::PathBuf| {
        let (python, stubs, d) = (python.clone(), stubs.clone(), d.clone());
        let (cw, au) = (caseworker.token.clone(), auditor.token.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(SCRIPT)
                .arg("--stubs")
                .arg(stubs)
                .arg("--profile")
                .arg(profile)
                .args(["--dossier", &d, "--owner", "ccas-rodez"])
                .env("MAILLON_CASEWORKER_TOKEN", cw)
                .env("MAILLON_AUDITOR_TOKEN", au)
                .output()
                .expect("python runs")
        })
    };
    let out = run(profile.clone()).await.expect("joined");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(r["health"], "SERVING");
    let services: Vec<&str> = r["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(services.contains(&"maillon.v1.Client"), "{services:?}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");
    assert!(
        !services.contains(&"maillon.v1.Peer"),
        "the peer API is not advertised"
    );
    assert_eq!(r["read"], HOUSING);
    assert!(r["tail_events"].as_u64().is_some_and(|n| n > 0), "{r}");
    assert_eq!(r["tail_as_caseworker"], "PERMISSION_DENIED");

    // Another pin: the script refuses the node before sending anything.
    let mut wrong = caseworker.clone();
    wrong.server_spki_sha256 = "00".repeat(32).parse().expect("a pin");
    let bad = tmp.path().join("wrong.toml");
    wrong.write_new(&bad).expect("profile");
    let out = run(bad).await.expect("joined");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the profile's pin"));
}
