//! `deploy/`: the compose file and the Kubernetes manifests parse, name only
//! settings and flags that exist, run as non-root on a read-only root file
//! system, and probe the health the node serves.

use std::path::{Path, PathBuf};

use clap::Parser;
use maillon_node::config::{Config, env_name, setting_paths};
use maillon_node::daemon::MaillondArgs;
use serde_yaml_ng::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file.
fn documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path} parses: {e}"))
        })
        .collect()
}

/// The `MAILLON_*` names a text uses, each a setting's variable or one the
/// binaries read.
fn check_variables(path: &str, text: &str) {
    let mut known: Vec<String> = setting_paths().map(env_name).collect();
    known.extend(["MAILLON_LOG_FORMAT", "MAILLON_PROFILE", "MAILLON_LOG"].map(String::from));
    for (i, _) in text.match_indices("MAILLON_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            known.contains(&name),
            "{path} names {name}, which nothing reads"
        );
    }
}

/// `maillond`'s arguments, as the deployment gives them, parse.
fn check_maillond_args(path: &str, args: &Value) {
    let mut argv = vec!["maillond".to_owned()];
    for a in args.as_sequence().expect("a list of arguments") {
        argv.push(a.as_str().expect("an argument").to_owned());
    }
    let parsed = MaillondArgs::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{path}: maillond {argv:?}: {e}"));
    assert!(
        parsed.dir.is_absolute(),
        "{path}: the node folder is absolute"
    );
}

#[test]
fn the_kubernetes_manifests_parse_and_name_what_exists() {
    let path = "kubernetes/maillon.yaml";
    check_variables(path, &read(path));
    let docs = documents(path);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["ConfigMap", "StatefulSet", "Service", "NetworkPolicy"] {
        assert!(kinds.contains(&kind), "{path} has a {kind}: {kinds:?}");
    }
    // The node.toml it mounts is one the node loads.
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["node.toml"].as_str())
        .expect("node.toml in the ConfigMap");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(Config::file(dir.path()), config).expect("write");
    let loaded =
        Config::load_with_env(dir.path(), |_| None).expect("the ConfigMap's node.toml loads");
    let metrics_port = loaded.metrics_listen.expect("metrics served").port();

    let set = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    assert_eq!(
        set["spec"]["replicas"].as_u64(),
        Some(1),
        "one node per member"
    );
    assert!(
        set["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .is_some_and(|v| !v.is_empty())
    );
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let node = &pod["containers"][0];
    check_maillond_args(path, &node["args"]);
    assert_eq!(
        node["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        node["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    let ports: Vec<(String, u64)> = node["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        ports.contains(&("peer".into(), u64::from(loaded.peer_listen.port()))),
        "{ports:?}"
    );
    assert!(
        ports.contains(&("client".into(), u64::from(loaded.client_listen.port()))),
        "{ports:?}"
    );
    assert!(
        ports.contains(&("metrics".into(), u64::from(metrics_port))),
        "{ports:?}"
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            node[probe]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{probe}"
        );
        assert_eq!(
            node[probe]["httpGet"]["port"].as_str(),
            Some("metrics"),
            "{probe}"
        );
    }
    // The keys come from a Secret, mounted read-only into the init container.
    let secret = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"].is_mapping())
        .expect("a Secret volume");
    assert_eq!(secret["secret"]["defaultMode"].as_u64(), Some(0o400));
    let init = pod["initContainers"][0]["args"][0]
        .as_str()
        .expect("the init script");
    for file in [
        "signing.key",
        "tls.key",
        "client-tls.key",
        "node.toml",
        "roster.json",
    ] {
        assert!(init.contains(file), "the init container places {file}");
    }
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    assert_eq!(services.len(), 3, "peer, client and metrics Services");
}

#[test]
fn the_compose_federation_parses_and_runs_each_node_locked_down() {
    let path = "compose/compose.yaml";
    check_variables(path, &read(path));
    check_variables("compose/setup.sh", &read("compose/setup.sh"));
    check_variables("Containerfile", &read("Containerfile"));
    let compose = documents(path).pop().expect("one document");
    let services = compose["services"].as_mapping().expect("services");
    let nodes: Vec<&str> = services
        .keys()
        .filter_map(Value::as_str)
        .filter(|s| *s != "setup")
        .collect();
    assert_eq!(nodes, ["cd12", "ccas-rodez", "caf12"]);
    for (name, service) in services {
        let name = name.as_str().expect("a name");
        // Anchors merged: every service is read-only, non-root, without capabilities.
        let merged = merge(service);
        assert_eq!(merged["read_only"].as_bool(), Some(true), "{name}");
        assert_eq!(merged["user"].as_str(), Some("10001:10001"), "{name}");
        assert_eq!(merged["cap_drop"][0].as_str(), Some("ALL"), "{name}");
        if name != "setup" {
            check_maillond_args(path, &merged["command"]);
            assert_eq!(
                merged["depends_on"]["setup"]["condition"].as_str(),
                Some("service_completed_successfully")
            );
        }
    }
    // setup.sh is valid shell, and what it adds to each node.toml is a setting.
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg(deploy().join("compose/setup.sh"))
        .status()
        .expect("sh runs");
    assert!(syntax.success(), "setup.sh is valid sh");
    let setup = read("compose/setup.sh");
    assert!(setup.contains("metrics_listen = "));
    assert!(setting_paths().any(|p| p == "metrics_listen"));
    let containerfile = read("Containerfile");
    assert!(containerfile.contains("USER 10001:10001"));
    assert!(containerfile.contains("COPY deploy/compose/setup.sh"));
}

#[test]
fn the_systemd_unit_runs_maillond_with_arguments_it_takes() {
    let path = "maillond.service";
    let unit = read(path);
    check_variables(path, &unit);
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let args: Vec<Value> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| Value::String(a.to_owned()))
        .collect();
    check_maillond_args(path, &Value::Sequence(args));
    for hardening in [
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "UMask=0077",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(hardening), "{path} has {hardening}");
    }
}

/// A service with its `<<` merge key applied (what compose does).
fn merge(service: &Value) -> Value {
    let mut out = serde_yaml_ng::Mapping::new();
    if let Some(base) = service.get("<<").and_then(Value::as_mapping) {
        out.extend(base.clone());
    }
    for (k, v) in service.as_mapping().expect("a mapping") {
        if k != "<<" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Mapping(out)
}
