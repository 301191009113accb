//! A node refuses to start on a roster that lacks a founder's signature or carries a forged one.

use std::net::TcpListener;

use maillon_node::config::InitOptions;
use maillon_node::crypto::{Context, CryptoError, NodeKey};
use maillon_node::daemon::{self, StartError};
use maillon_node::roster::{Charter, Roster, RosterError, SignedRoster};
use maillon_node::types::{MemberId, MemberKind};

fn free() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

async fn two_founders(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, SignedRoster) {
    let mut dirs = Vec::new();
    let mut cards = Vec::new();
    for (id, kind) in [
        ("cd12", MemberKind::Departement),
        ("caf12", MemberKind::Caf),
    ] {
        let d = dir.join(id);
        let init = daemon::init(&InitOptions {
            dir: d.clone(),
            member: id.parse().expect("id"),
            name: id.to_uppercase(),
            kind,
            peer_addr: free(),
            peer_endpoint: None,
            client_addr: free(),
        })
        .await
        .expect("init");
        cards.push(init.card);
        dirs.push(d);
    }
    let roster = Roster::genesis(
        "gip-test",
        "2/3".parse().expect("quorum"),
        cards,
        Charter::default(),
    )
    .expect("genesis");
    (dirs, SignedRoster::unsigned(roster))
}

fn install(dirs: &[std::path::PathBuf], roster: &SignedRoster) {
    let json = serde_json::to_string_pretty(roster).expect("json");
    for d in dirs {
        std::fs::write(d.join("roster.json"), &json).expect("write roster");
    }
}

#[tokio::test]
async fn a_roster_missing_a_founder_signature_is_refused_naming_who_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dirs, mut roster) = two_founders(tmp.path()).await;
    let key = NodeKey::read(&dirs[0].join("signing.key")).expect("key");
    roster
        .sign(&"cd12".parse().expect("id"), &key)
        .expect("sign");
    install(&dirs, &roster);
    let err = daemon::start(&dirs[0]).await.expect_err("must refuse");
    match &err {
        StartError::Roster {
            source: RosterError::MissingSignatures { missing, .. },
            ..
        } => assert_eq!(missing, &["caf12".parse::<MemberId>().expect("id")]),
        other => panic!("refused for another cause: {other}"),
    }
    assert!(
        err.to_string().ends_with("lacks the signature of: caf12"),
        "{err}"
    );
}

#[tokio::test]
async fn a_roster_with_a_forged_signature_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dirs, mut roster) = two_founders(tmp.path()).await;
    let keys: Vec<NodeKey> = dirs
        .iter()
        .map(|d| NodeKey::read(&d.join("signing.key")).expect("key"))
        .collect();
    roster
        .sign(&"cd12".parse().expect("id"), &keys[0])
        .expect("sign");
    roster
        .sign(&"caf12".parse().expect("id"), &keys[1])
        .expect("sign");
    // cd12 forges caf12's signature with its own key.
    let mut forged = roster.clone();
    forged.signatures[1].signature =
        keys[0].sign(Context::Roster, &roster.roster.canonical_bytes());
    install(&dirs, &forged);
    let err = daemon::start(&dirs[0]).await.expect_err("must refuse");
    assert!(
        matches!(&err, StartError::Roster { source: RosterError::ForgedSignature(m), .. } if m.as_str() == "caf12"),
        "{err}"
    );

    // A roster edited after signing is refused too.
    let mut edited = roster.clone();
    edited.roster.quorum = "3/4".parse().expect("quorum");
    install(&dirs, &edited);
    let err = daemon::start(&dirs[0])
        .await
        .expect_err("edited after signing");
    assert!(
        matches!(
            &err,
            StartError::Roster {
                source: RosterError::ForgedSignature(_),
                ..
            }
        ),
        "{err}"
    );

    // The genuine roster starts.
    install(&dirs, &roster);
    let node = daemon::start(&dirs[0]).await.expect("valid roster starts");
    node.stop().await;
}

#[tokio::test]
async fn a_node_refuses_to_start_with_loose_keys_no_roster_or_a_roster_without_its_keys() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dirs, mut roster) = two_founders(tmp.path()).await;
    for (i, id) in ["cd12", "caf12"].iter().enumerate() {
        let key = NodeKey::read(&dirs[i].join("signing.key")).expect("key");
        roster.sign(&id.parse().expect("id"), &key).expect("sign");
    }

    let err = daemon::start(&dirs[0]).await.expect_err("no roster yet");
    assert!(matches!(err, StartError::RosterFile { .. }), "{err}");

    install(&dirs, &roster);
    let key = dirs[0].join("signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = daemon::start(&dirs[0]).await.expect_err("loose key");
    assert!(
        matches!(err, StartError::Crypto(CryptoError::Permissions { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("chmod 600"),
        "the fix is named: {err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The store's folder, or the log's, open to others.
    for sub in ["store", "audit"] {
        let folder = dirs[0].join(sub);
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = daemon::start(&dirs[0]).await.expect_err("loose folder");
        assert!(
            matches!(
                err,
                StartError::Crypto(CryptoError::FolderPermissions { .. })
            ),
            "{sub}: {err}"
        );
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }

    // A valid roster of another federation, which does not list this node.
    let other = tempfile::tempdir().expect("tempdir");
    let (other_dirs, mut other_roster) = two_founders(other.path()).await;
    for (i, id) in ["cd12", "caf12"].iter().enumerate() {
        let key = NodeKey::read(&other_dirs[i].join("signing.key")).expect("key");
        other_roster
            .sign(&id.parse().expect("id"), &key)
            .expect("sign");
    }
    install(&dirs[..1], &other_roster);
    let err = daemon::start(&dirs[0]).await.expect_err("not our keys");
    assert!(matches!(err, StartError::NotInRoster(_)), "{err}");

    install(&dirs[..1], &roster);
    daemon::start(&dirs[0])
        .await
        .expect("starts once all is right")
        .stop()
        .await;
}
