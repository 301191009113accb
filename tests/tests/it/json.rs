//! `--json`: every command that prints data prints one JSON value with the
//! field names `cli/JSON.md` documents, read from a real `maillon` process.

use maillon_node::clock::Clock as _;
use maillon_tests::Cluster;
use serde_json::Value;

/// Runs `maillon --json ARGS` with `profile`; its standard output as JSON.
pub(crate) async fn json_of(profile: &std::path::Path, args: &[&str]) -> Value {
    let mut argv = vec!["--profile", profile.to_str().expect("utf-8"), "--json"];
    argv.extend_from_slice(args);
    let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_maillon-cli"))
            .args(&argv)
            .output()
            .expect("maillon runs")
    })
    .await
    .expect("joined");
    assert!(
        out.status.success(),
        "maillon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "maillon {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts `value` has every field of `fields`.
fn has(value: &Value, fields: &[&str]) {
    for f in fields {
        assert!(value.get(f).is_some(), "no {f:?} in {value:#}");
    }
}

#[tokio::test]
async fn every_data_command_prints_one_json_value_with_its_documented_fields() {
    let c = Cluster::start().await;
    let (_ccas, _caf, d, consent) = c.housing_read_by_the_caf().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let admin = dir.join("admin.profile.toml");
    let tmp = tempfile::tempdir().expect("tmp");

    let me = json_of(&admin, &["whoami"]).await;
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    has(&me, &["member", "token_expires_at"]);

    let dpo = tmp.path().join("dpo.profile.toml");
    let added = json_of(
        &admin,
        &[
            "user",
            "add",
            "dpo",
            "--role",
            "auditor",
            "--profile-out",
            dpo.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(added["user"], "dpo");
    assert!(
        added["token"].is_null(),
        "the token went into the profile only"
    );
    has(&added, &["role", "expires_at", "profile"]);
    let agent = tmp.path().join("agent.profile.toml");
    json_of(
        &admin,
        &[
            "user",
            "add",
            "agent",
            "--role",
            "caseworker",
            "--profile-out",
            agent.to_str().expect("utf-8"),
        ],
    )
    .await;

    let users = json_of(&admin, &["user", "list"]).await;
    let users = users["users"].as_array().expect("users");
    let dpo_entry = users
        .iter()
        .find(|u| u["user"] == "dpo")
        .expect("dpo listed");
    assert_eq!(dpo_entry["role"], "auditor");
    has(dpo_entry, &["created_at", "token_expires_at"]);

    let gov = json_of(&admin, &["gov", "status"]).await;
    has(
        &gov,
        &[
            "federation",
            "version",
            "hash",
            "quorum",
            "members",
            "peers",
        ],
    );
    assert_eq!(gov["members"].as_array().map(Vec::len), Some(3));
    let list = json_of(&admin, &["gov", "list"]).await;
    assert_eq!(list["proposals"], Value::Array(vec![]));

    let status = json_of(&admin, &["node", "status"]).await;
    has(
        &status,
        &[
            "version",
            "member",
            "roster_version",
            "peer_listen",
            "client_listen",
            "audit_entries",
            "peers",
        ],
    );
    let outbox = json_of(&admin, &["outbox"]).await;
    assert!(outbox.is_array() || outbox.is_object(), "{outbox}");

    let consents = json_of(&agent, &["consent", "list", &d]).await;
    let first = &consents.as_array().expect("a list")[0];
    assert_eq!(first["id"], consent.as_str());
    has(
        first,
        &[
            "sections",
            "audience",
            "valid_from",
            "until",
            "status",
            "basis",
            "purpose",
        ],
    );
    let section = json_of(&agent, &["section", "get", &d, "housing"]).await;
    assert_eq!(section["content"]["loyer"], 450);
    let opened = json_of(
        &agent,
        &[
            "dossier",
            "open",
            "--given-name",
            "Léa",
            "--family-name",
            "Roux",
            "--birth-date",
            "1990-01-02",
        ],
    )
    .await;
    assert!(
        opened["dossier"]
            .as_str()
            .is_some_and(|d| d.starts_with("DSU-")),
        "{opened}"
    );
    // Search: this node's dossiers only, by names as typed, accents aside.
    let found = json_of(&agent, &["dossier", "search", "lea", "roux"]).await;
    let list = found["dossiers"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{found}");
    assert_eq!(list[0]["dossier"], opened["dossier"]);
    assert_eq!(list[0]["given_name"], "Léa");
    assert!(list[0]["attached_from"].is_null());
    has(
        &list[0],
        &["family_name", "birth_date", "opened_at", "closed"],
    );
    let none = json_of(&agent, &["dossier", "search", "dupont"]).await;
    assert_eq!(none["dossiers"], serde_json::json!([]));

    // The auditor's search: the newest first, a page at a time.
    let opened_here = json_of(
        &dpo,
        &[
            "audit",
            "search",
            "--kind",
            "dossier_opened",
            "--limit",
            "1",
        ],
    )
    .await;
    let first = &opened_here["events"][0];
    assert_eq!(
        first["entry"]["dossier"], opened["dossier"],
        "{opened_here}"
    );
    let next = opened_here["next"].as_u64().expect("older entries remain");
    let older = json_of(
        &dpo,
        &[
            "audit",
            "search",
            "--kind",
            "dossier_opened",
            "--before",
            &next.to_string(),
        ],
    )
    .await;
    let older: Vec<&Value> = older["events"].as_array().expect("events").iter().collect();
    assert_eq!(older.len(), 1, "{older:?}");
    assert_eq!(older[0]["entry"]["dossier"], d.as_str());
    assert!(older[0]["index"].as_u64() < first["index"].as_u64());
    let about = json_of(
        &dpo,
        &["audit", "search", "--dossier", &d, "--limit", "500"],
    )
    .await;
    let about = about["events"].as_array().expect("events");
    assert!(about.len() >= 3, "opened, written, granted: {about:?}");
    assert!(about.iter().all(|e| e["entry"]["dossier"] == d.as_str()));
    let today = maillon_node::types::Date::from_unix(c.clock.now()).to_string();
    let none = json_of(&dpo, &["audit", "search", "--until", "2000-01-01"]).await;
    assert_eq!(none["events"], serde_json::json!([]));
    assert!(none["next"].is_null(), "the whole log was looked at");
    let since_today = json_of(&dpo, &["audit", "search", "--since", &today]).await;
    assert!(!since_today["events"].as_array().expect("events").is_empty());

    let tail = json_of(&dpo, &["audit", "tail", "--limit", "5"]).await;
    has(&tail, &["size", "events"]);
    assert!(tail["events"][0]["entry"]["event"].is_string(), "{tail}");
    let cp = json_of(&dpo, &["audit", "checkpoint"]).await;
    has(&cp, &["checkpoint", "verifier_key"]);
}
