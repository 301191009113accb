//! Hosting a node: its metrics, `maillon node status`, rate limits, the
//! group cap and `maillon node check`, on real nodes.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use maillon_node::config::Config;
use maillon_node::limits::Limits;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::{Cluster, HOUSING, next_year, refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Serves the metrics of `dir`'s node on a free loopback port.
fn with_metrics(dir: &std::path::Path) {
    let path = Config::file(dir);
    let text = std::fs::read_to_string(&path).expect("node.toml");
    std::fs::write(&path, format!("metrics_listen = \"127.0.0.1:0\"\n{text}")).expect("written");
}

/// One plain HTTP/1.1 request: the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metrics_addr(c: &Cluster, id: &str) -> SocketAddr {
    c.running(id)
        .node()
        .listening()
        .and_then(|l| l.metrics)
        .expect("metrics served")
}

/// The value of the first sample line starting with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_status_and_show_the_state_without_personal_data() {
    let mut c = Cluster::start().await;
    for id in ["ccas-rodez", "caf12"] {
        c.reconfigure(id, with_metrics).await;
    }
    let (_ccas, caf, d, _consent) = c.housing_read_by_the_caf().await;
    // A section no consent covers: refused.
    let (code, _) = refusal(caf.read(&d, "health", "ccas-rodez").await);
    assert_eq!(code, Code::PermissionDenied);

    let (status, owner) = http(metrics_addr(&c, "ccas-rodez"), "GET", "/metrics").await;
    assert_eq!(status, 200);
    let read_ok =
        r#"maillon_grpc_calls_total{api="peer",method="/maillon.v1.Peer/ReadShare",code="ok"}"#;
    assert!(sample(&owner, read_ok).is_some_and(|n| n >= 1.0), "{owner}");
    assert!(
        sample(
            &owner,
            r#"maillon_grpc_call_seconds_count{api="peer",method="/maillon.v1.Peer/ReadShare"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{owner}"
    );
    assert!(sample(&owner, "maillon_audit_entries ").is_some_and(|n| n > 0.0));
    assert!(sample(&owner, "maillon_audit_append_seconds_count ").is_some_and(|n| n > 0.0));
    assert_eq!(sample(&owner, "maillon_consents_active "), Some(1.0));
    assert_eq!(sample(&owner, "maillon_roster_version "), Some(1.0));
    assert_eq!(sample(&owner, "maillon_audit_appending "), Some(1.0));
    assert!(owner.contains(r#"maillon_build{version=""#), "{owner}");
    assert!(owner.trim_end().ends_with("# EOF"));

    let (_, reader) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    let denied = r#"maillon_grpc_calls_total{api="client",method="/maillon.v1.Client/ReadShare",code="permission_denied"}"#;
    assert_eq!(sample(&reader, denied), Some(1.0), "{reader}");
    let ok =
        r#"maillon_grpc_calls_total{api="client",method="/maillon.v1.Client/ReadShare",code="ok"}"#;
    assert_eq!(sample(&reader, ok), Some(1.0), "{reader}");
    // Counts only: no dossier, no person, no user, no section content.
    for text in [&owner, &reader] {
        for secret in [d.as_str(), "Camille", "Martin", "agent-caf", "hébergée"] {
            assert!(!text.contains(secret), "{secret} in the metrics");
        }
    }
    // The peer API's methods, asked of the client API, which does not serve them.
    let admin = &c.node("caf12").admin;
    let channel = maillon_node::transport::tls_channel(
        &admin.endpoint,
        maillon_node::crypto::pinned_client_config(admin.server_spki_sha256).expect("cfg"),
    )
    .expect("channel");
    let unknown = pb::peer_client::PeerClient::new(channel)
        .fetch_chain(pb::FetchChainRequest::default())
        .await;
    assert_eq!(
        unknown.expect_err("unimplemented").code(),
        Code::Unimplemented
    );
    // A method of the node's APIs keeps its name (the set is bounded);
    // any other path is `other` (tested in `transport::detach`).
    let (_, reader) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert!(
        reader.contains(
            r#"maillon_grpc_calls_total{api="client",method="/maillon.v1.Peer/FetchChain",code="unimplemented"} 1"#
        ),
        "{reader}"
    );

    // Health for probes that speak HTTP only; nothing else is served.
    assert_eq!(
        http(metrics_addr(&c, "caf12"), "GET", "/healthz").await,
        (200, "serving\n".into())
    );
    assert_eq!(
        http(metrics_addr(&c, "caf12"), "GET", "/dossiers").await.0,
        404
    );
    assert_eq!(
        http(metrics_addr(&c, "caf12"), "POST", "/metrics").await.0,
        405
    );
}

#[tokio::test]
async fn node_status_tells_admins_and_auditors_and_refuses_caseworkers() {
    let mut c = Cluster::start().await;
    c.reconfigure("caf12", with_metrics).await;
    let _ = c.housing_read_by_the_caf().await;
    let listening = c.running("caf12").node().listening().expect("bound");
    for role in [Role::Admin, Role::Auditor] {
        let conn = c.user("caf12", &format!("someone-{role}"), role).await;
        let st = conn
            .api()
            .node_status(conn.req(pb::NodeStatusRequest {}))
            .await
            .expect("status")
            .into_inner();
        assert_eq!(st.member, "caf12");
        assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(st.roster_version, 1);
        assert_eq!(st.peer_listen, listening.peer.to_string());
        assert_eq!(st.client_listen, listening.client.to_string());
        assert_eq!(
            st.metrics_listen,
            listening.metrics.expect("metrics").to_string()
        );
        assert!(st.audit_entries > 0 && st.audit_bytes > 0);
        assert!(st.audit_appending);
        let peers: Vec<&str> = st.peers.iter().map(|p| p.member.as_str()).collect();
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert!(!peers.contains(&"caf12"));
        assert!(st.peers.iter().all(|p| p.status == "active"));
    }
    let caseworker = c.user("caf12", "agent-status", Role::Caseworker).await;
    let (code, reason) = refusal(
        caseworker
            .api()
            .node_status(caseworker.req(pb::NodeStatusRequest {}))
            .await,
    );
    assert_eq!((code, reason.as_str()), (Code::PermissionDenied, "role"));
}

#[tokio::test]
async fn a_user_over_its_read_rate_is_refused_and_counted_and_another_user_is_not() {
    let mut c = Cluster::start().await;
    c.reconfigure("caf12", |dir| {
        with_metrics(dir);
        let limits = Limits {
            user_reads_per_second: 1,
            user_reads_burst: 2,
            ..Limits::default()
        };
        Config::write_limits(dir, &limits).expect("limits");
    })
    .await;
    let (_ccas, caf, d) = c.housing_at_the_ccas().await;
    _ccas
        .grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("first read");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("second read");
    let (code, reason) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "rate_limited")
    );
    let other = c.desk("caf12", "agent-caf-2").await;
    let answer = other
        .read(&d, "housing", "ccas-rodez")
        .await
        .expect("another user reads");
    assert_eq!(answer.json, HOUSING);
    let (_, text) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert_eq!(
        sample(
            &text,
            r#"maillon_rate_limited_total{api="client",limit="user_reads"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_peer_over_its_read_rate_is_refused_by_the_owner() {
    let mut c = Cluster::start().await;
    c.reconfigure("ccas-rodez", |dir| {
        let limits = Limits {
            peer_reads_per_second: 1,
            peer_reads_burst: 1,
            ..Limits::default()
        };
        Config::write_limits(dir, &limits).expect("limits");
    })
    .await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12", "cd12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("the CAF's one read");
    let (code, reason) = refusal(caf.read(&d, "housing", "ccas-rodez").await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "rate_limited"),
        "the owner's refusal comes back as it is"
    );
    // Another peer has its own bucket.
    let cd = c.desk("cd12", "agent-cd").await;
    let answer = cd
        .read(&d, "housing", "ccas-rodez")
        .await
        .expect("the CD reads");
    assert_eq!(answer.json, HOUSING);
}

#[tokio::test]
async fn a_peer_past_its_group_cap_is_refused_its_welcome_and_the_grant_still_holds() {
    let mut c = Cluster::start().await;
    c.reconfigure("caf12", |dir| {
        with_metrics(dir);
        let limits = Limits {
            groups_per_peer: 1,
            ..Limits::default()
        };
        Config::write_limits(dir, &limits).expect("limits");
    })
    .await;
    let (ccas, caf, d, _) = c.housing_read_by_the_caf().await;
    ccas.put(&d, "resources", r#"{"rsa":true}"#)
        .await
        .expect("put");
    ccas.grant(&d, &["resources"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("the grant takes effect at the owner; the CAF is brought in later");
    let refused = caf.read(&d, "resources", "ccas-rodez").await;
    assert!(refused.is_err(), "the CAF never joined the second group");
    // The first group still works.
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("the first share still reads");
    let (_, text) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert!(
        sample(
            &text,
            r#"maillon_rate_limited_total{api="peer",limit="groups_per_peer"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn node_check_passes_a_healthy_folder_and_names_each_problem_with_its_fix() {
    let mut c = Cluster::start().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let check = || maillon_cli::commands::check::findings(&dir);
    let failures = |f: &[maillon_cli::commands::check::Finding]| -> Vec<String> {
        f.iter()
            .filter(|f| !f.ok)
            .map(|f| {
                format!(
                    "{}: {} (fix: {})",
                    f.check,
                    f.detail,
                    f.fix.clone().unwrap_or_default()
                )
            })
            .collect()
    };
    // Running: the store is not opened, the peers are dialled.
    let running = check().await;
    assert!(failures(&running).is_empty(), "{:#?}", failures(&running));
    assert!(
        running
            .iter()
            .any(|f| f.check == "roster" && f.detail.contains("serves this folder"))
    );
    let peers: Vec<&str> = running
        .iter()
        .filter(|f| f.check == "peer")
        .map(|f| f.detail.as_str())
        .collect();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(
        peers
            .iter()
            .all(|p| p.contains("handshake pinned, serving"))
    );
    assert!(running.iter().any(|f| f.check == "clock" && f.ok));

    // Stopped: the roster in force from the store, the addresses free.
    c.fed.node_mut("ccas-rodez").stop().await;
    let stopped = check().await;
    assert!(failures(&stopped).is_empty(), "{:#?}", failures(&stopped));
    assert!(
        stopped
            .iter()
            .any(|f| f.check == "roster" && f.detail.contains("chain verified"))
    );
    assert_eq!(
        stopped
            .iter()
            .filter(|f| f.check == "listen" && f.ok)
            .count(),
        2
    );
    assert!(cli_check(&dir).await.is_ok());

    // Another process on the client API's address.
    let client_listen = Config::load(&dir).expect("config").client_listen;
    let squatter = std::net::TcpListener::bind(client_listen).expect("the address is free");
    let taken = failures(&check().await);
    assert_eq!(taken.len(), 1, "{taken:#?}");
    assert!(taken[0].starts_with("listen: client_listen"), "{taken:?}");
    drop(squatter);

    // A signing key that is not the one the roster lists.
    let key = dir.join("signing.key");
    let listed = std::fs::read(&key).expect("key");
    std::fs::remove_file(&key).expect("rm");
    maillon_node::crypto::NodeKey::generate()
        .write_new(&key)
        .expect("another key");
    let other = failures(&check().await);
    assert_eq!(other.len(), 1, "{other:#?}");
    assert!(
        other[0].starts_with("keys listed") && other[0].contains("rotate-keys"),
        "{other:?}"
    );
    std::fs::remove_file(&key).expect("rm");
    std::fs::write(&key, listed).expect("put back");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A key others can read.
    let key = dir.join("signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let loose = failures(&check().await);
    assert_eq!(loose.len(), 1, "{loose:#?}");
    assert!(
        loose[0].starts_with("signing key") && loose[0].contains("chmod 600"),
        "{loose:?}"
    );
    let e = cli_check(&dir).await.expect_err("a problem");
    assert_eq!(maillon_cli::exit::exit_code(&e), 1);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A peer down.
    c.fed.node_mut("caf12").stop().await;
    let down = failures(&check().await);
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(
        down[0].starts_with("peer: caf12") && down[0].contains("reachable from this host"),
        "{down:?}"
    );

    // A folder others can enter.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let open = failures(&check().await);
    assert!(
        open.iter()
            .any(|f| f.starts_with("folder") && f.contains("chmod 700")),
        "{open:#?}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    // A configuration that does not parse stops the check there.
    let toml = Config::file(&dir);
    let text = std::fs::read_to_string(&toml).expect("read");
    std::fs::write(&toml, text.replace("peer_listen", "peer_listen_typo")).expect("write");
    let broken = check().await;
    assert_eq!(broken.len(), 1, "{broken:#?}");
    assert_eq!(broken[0].check, "config");
    assert!(
        !broken[0].ok && broken[0].detail.contains("peer_listen_typo"),
        "{broken:?}"
    );
}

async fn cli_check(dir: &std::path::Path) -> Result<(), maillon_cli::CliError> {
    crate::cli::maillon(&["node", "check", "--dir", &dir.to_string_lossy(), "--json"]).await
}

#[tokio::test]
async fn a_peer_over_its_mls_rate_is_refused_and_counted_and_the_grant_still_holds() {
    let mut c = Cluster::start().await;
    c.reconfigure("caf12", |dir| {
        with_metrics(dir);
        let limits = Limits {
            peer_mls_per_second: 1,
            peer_mls_burst: 1,
            ..Limits::default()
        };
        Config::write_limits(dir, &limits).expect("limits");
    })
    .await;
    // Bringing the CAF into a share takes a KeyPackage request and a
    // Welcome: the second is over the rate of one.
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("the grant takes effect at the owner");
    let (_, text) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert!(
        sample(
            &text,
            r#"maillon_rate_limited_total{api="peer",limit="peer_mls"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"maillon_grpc_calls_total{api="peer",method="/maillon.v1.Peer/DeliverWelcome",code="resource_exhausted"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_live_node_whose_log_fails_its_check_says_not_serving_and_refuses_changes() {
    use futures_util::StreamExt;
    use maillon_node::audit::{AuditEvent, CHECKED_AT_OPEN, Integrity};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut c = Cluster::start().await;
    c.reconfigure("caf12", with_metrics).await;
    let desk = c.desk("caf12", "agent-caf").await;
    // A log long enough to be checked in the background at start: the
    // node serves at once and learns of damage while it runs.
    let node = c.running("caf12").node().clone();
    let appends = futures_util::stream::iter(0..CHECKED_AT_OPEN).map(|i| {
        let node = node.clone();
        async move {
            let reason = format!("essai {i:06}");
            node.audit_log()
                .append(1_800_000_000, AuditEvent::ConsoleLoginRefused { reason })
                .await
        }
    });
    let results: Vec<_> = appends.buffer_unordered(256).collect().await;
    assert!(results.iter().all(Result::is_ok));
    drop(node);
    // A clean restart moves the replay mark past those entries.
    c.restart("caf12").await;
    let log = c.node("caf12").dir.join("audit").join("audit.log");
    c.reconfigure("caf12", |_| {
        // One entry in the middle changed while the node was stopped.
        let mut bytes = std::fs::read(&log).expect("log");
        let needle = b"essai 025000";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the entry");
        bytes[at + needle.len() - 1] = b'9';
        std::fs::write(&log, bytes).expect("written");
    })
    .await;

    let node = c.running("caf12").node().clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while node.audit_log().integrity() == Integrity::Checking {
        assert!(std::time::Instant::now() < deadline, "the check never ends");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(matches!(node.audit_log().integrity(), Integrity::Failed(_)));

    // Plain HTTP probes see it at once.
    let (status, body) = http(metrics_addr(&c, "caf12"), "GET", "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("refuses appends"), "{body}");
    let (_, text) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert_eq!(
        sample(&text, "maillon_audit_appending "),
        Some(0.0),
        "{text}"
    );

    // gRPC health on the client API turns NOT_SERVING within its period.
    let admin = &c.node("caf12").admin;
    let channel = maillon_node::transport::tls_channel(
        &admin.endpoint,
        maillon_node::crypto::pinned_client_config(admin.server_spki_sha256).expect("cfg"),
    )
    .expect("channel");
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: "maillon.v1.Client".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        assert_eq!(status, ServingStatus::Serving as i32);
        assert!(std::time::Instant::now() < deadline, "health never turns");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A change, which must be logged first, is refused and nothing is kept.
    let size = node.audit_log().size();
    let (code, why) = refusal(desk.open().await);
    assert_eq!(code, Code::Unavailable, "{why}");
    assert_eq!(why, "audit_unavailable");
    assert_eq!(node.audit_log().size(), size);
    // The admin sees why in the node's status.
    let admin = c.admin("caf12");
    let st = admin
        .api()
        .node_status(admin.req(pb::NodeStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(!st.audit_appending, "{st:?}");
    assert!(st.audit_integrity.contains("fail"), "{st:?}");

    // A partner's `node check` finds it up but not serving, and says whom to tell.
    let dir = c.node("ccas-rodez").dir.clone();
    let findings = maillon_cli::commands::check::findings(&dir).await;
    let down: Vec<_> = findings.iter().filter(|f| !f.ok).collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(down[0].check == "peer" && down[0].detail.contains("caf12"));
    assert!(
        down[0].detail.contains("reachable but not serving"),
        "{down:?}"
    );
    assert!(
        down[0]
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("NOT_SERVING"))
    );
}

#[tokio::test]
async fn a_peer_that_missed_a_roster_version_is_counted_behind_in_the_metrics() {
    let mut c = Cluster::start().await;
    c.reconfigure("caf12", with_metrics).await;
    // The département's node is down while the others adopt a version.
    c.fed.node_mut("cd12").stop().await;
    let change = maillon_node::roster::Change::SetQuorum {
        quorum: "3/5".parse().expect("quorum"),
    };
    assert_eq!(
        c.vote(&change, "caf12", &["ccas-rodez"]).await.outcome,
        "adopted"
    );
    c.wait_version(&["caf12", "ccas-rodez"], 2).await;

    let (_, text) = http(metrics_addr(&c, "caf12"), "GET", "/metrics").await;
    assert_eq!(
        sample(&text, "maillon_roster_version "),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"maillon_peers{state="current"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"maillon_peers{state="behind"}"#),
        Some(1.0),
        "{text}"
    );
    // The status names which.
    let admin = c.admin("caf12");
    let st = admin
        .api()
        .node_status(admin.req(pb::NodeStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    let peer = |id: &str| st.peers.iter().find(|p| p.member == id).expect("listed");
    let ccas = peer("ccas-rodez");
    assert!(ccas.told && ccas.told_version == 2, "{st:?}");
    let cd = peer("cd12");
    assert!(!cd.told || cd.told_version < 2, "{st:?}");
}

#[tokio::test]
async fn admins_whose_token_ends_within_thirty_days_are_named_for_the_start_warning() {
    let c = Cluster::start().await;
    let admin = c.admin("caf12");
    for (name, role, valid_days) in [
        ("admin-court", "admin", 20),
        ("admin-long", "admin", 365),
        ("agent-court", "caseworker", 10),
    ] {
        admin
            .api()
            .add_user(admin.req(pb::AddUserRequest {
                name: name.into(),
                role: role.into(),
                valid_days,
            }))
            .await
            .expect("added");
    }
    let node = c.running("caf12").node();
    let ending = || {
        let mut names: Vec<String> = node
            .admin_tokens_ending_within(30)
            .expect("read")
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    };
    // Only the admin's short token; a caseworker's is not a way back in.
    assert_eq!(ending(), ["admin-court"]);
    // Eleven months on, every admin's token is near its end (or past it).
    c.clock.advance(340 * 86_400);
    assert_eq!(ending(), ["admin", "admin-court", "admin-long"]);
}

#[tokio::test]
async fn node_check_reaches_the_identity_provider_and_names_what_keeps_it_from_logging_staff_in() {
    let c = Cluster::start().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let console = "https://127.0.0.1:7404";
    let provider = maillon_tests::idp::Provider::start(console);
    let toml = maillon_node::config::Config::file(&dir);
    let plain = std::fs::read_to_string(&toml).expect("node.toml");
    let table = provider.configure(&dir, console, "email");
    let with = |table: &str| {
        std::fs::write(
            &toml,
            format!("console_listen = \"127.0.0.1:0\"\n{plain}{table}"),
        )
        .expect("written")
    };
    let provider_finding = || async {
        maillon_cli::commands::check::findings(&dir)
            .await
            .into_iter()
            .find(|f| f.check == "identity provider")
            .expect("the provider is checked")
    };

    with(&table);
    let found = provider_finding().await;
    assert!(
        found.ok && found.detail.contains(&provider.issuer),
        "{found:?}"
    );

    // Nobody answers at the issuer.
    with(&table.replace(&provider.issuer, "https://127.0.0.1:9"));
    let found = provider_finding().await;
    assert!(!found.ok && found.detail.contains("discovery"), "{found:?}");
    assert!(
        found
            .fix
            .as_deref()
            .is_some_and(|f| f.contains(".well-known/openid-configuration"))
    );
    // The provider's certificate is not one the system's authorities sign.
    with(&table.replace("ca_file = \"oidc-ca.pem\"\n", ""));
    let found = provider_finding().await;
    assert!(!found.ok && found.detail.contains("TLS"), "{found:?}");
    // The secret is readable by others.
    {
        use std::os::unix::fs::PermissionsExt;
        let secret = dir.join("oidc-client-secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        with(&table);
        let found = provider_finding().await;
        assert!(!found.ok && found.detail.contains("0600"), "{found:?}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // An authority file with no certificate in it.
    std::fs::write(dir.join("oidc-ca.pem"), "pas un certificat\n").expect("written");
    let found = provider_finding().await;
    assert!(
        !found.ok && found.detail.contains("no certificate"),
        "{found:?}"
    );
    std::fs::write(&toml, plain).expect("restored");
}
