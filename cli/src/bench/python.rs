//! The read from a Python client of the client API (grpcio), beside the
//! Rust one. Its environment is made once under the build's folder
//! (`target/bench-python`: a venv with grpcio and grpcio-tools from PyPI,
//! and the stubs generated from this build's `client.proto`); without
//! Python or PyPI the bench says so and goes on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use maillon_node::config::Profile;

/// The client API's definition, as this build serves it, and the peer
/// API's, which it imports.
const CLIENT_PROTO: &str = include_str!("../../../proto/proto/maillon/v1/client.proto");
const PEER_PROTO: &str = include_str!("../../../proto/proto/maillon/v1/peer.proto");

/// The Python client.
const SCRIPT: &str = include_str!("../../bench/read_client.py");

/// What the Python client measured.
#[derive(Debug, serde::Deserialize)]
pub struct Measured {
    /// Sequential reads, median (ms).
    pub p50_ms: f64,
    /// Sequential reads, 99th percentile (ms).
    pub p99_ms: f64,
    /// Reads per second, the bench's concurrency in flight.
    pub reads_per_s: f64,
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{what} failed: {}",
            err.lines().last().unwrap_or("no message")
        ))
    }
}

/// What the bench's client needs: (package on PyPI, module it imports).
const BENCH_PACKAGES: &[(&str, &str)] = &[("grpcio", "grpc"), ("grpcio-tools", "grpc_tools")];

/// The venv with grpcio, `extra` packages ((name on PyPI, module)) and the
/// client API's stubs, made if missing; its python and the stubs' folder.
pub fn environment(extra: &[(&str, &str)]) -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no build folder")?;
    let venv = target.join("bench-python");
    let python = venv.join("bin").join("python");
    let stubs = venv.join("stubs");
    if !python.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    let packages: Vec<(&str, &str)> = BENCH_PACKAGES.iter().chain(extra).copied().collect();
    let imports: Vec<&str> = packages.iter().map(|(_, m)| *m).collect();
    let ready = Command::new(&python)
        .args(["-c", &format!("import {}", imports.join(", "))])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(&names),
            &format!("pip install {}", names.join(" ")),
        )?;
    }
    // The stubs of this build's proto, every time (it may have changed).
    let proto = venv.join("proto").join("maillon").join("v1");
    std::fs::create_dir_all(&proto).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&stubs).map_err(|e| e.to_string())?;
    std::fs::write(proto.join("client.proto"), CLIENT_PROTO).map_err(|e| e.to_string())?;
    std::fs::write(proto.join("peer.proto"), PEER_PROTO).map_err(|e| e.to_string())?;
    run(
        Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(venv.join("proto"))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .args(["maillon/v1/client.proto", "maillon/v1/peer.proto"]),
        "generating the Python stubs",
    )?;
    Ok((python, stubs))
}

/// Runs the Python client against the node of `profile` (its certificate
/// read from `node_dir`), reading `dossier`'s housing from `owner`.
pub fn measure(
    work: &Path,
    profile: &Profile,
    node_dir: &Path,
    dossier: &str,
    reads: usize,
    concurrency: usize,
) -> Result<Measured, String> {
    let (python, stubs) = environment(&[])?;
    let der =
        std::fs::read_to_string(node_dir.join("client-tls.crt")).map_err(|e| e.to_string())?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(der.trim())
        .map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let cert = work.join("reader-cert.pem");
    let script = work.join("read_client.py");
    std::fs::write(&cert, pem).map_err(|e| e.to_string())?;
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    let out = Command::new(&python)
        .arg(&script)
        .arg("--stubs")
        .arg(&stubs)
        .args(["--endpoint", &profile.endpoint])
        .arg("--cert")
        .arg(&cert)
        .args(["--server-name", &format!("{}.maillon", profile.member)])
        .args(["--dossier", dossier, "--owner", "ccas-rodez"])
        .args(["--reads", &reads.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .env("MAILLON_TOKEN", &profile.token)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running the Python client: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "the Python client failed: {}",
            err.lines().last().unwrap_or("no message")
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("the Python client's output: {e}"))
}
