//! Pinned TLS: outsiders fail the handshake; the client API wants a valid token.

use maillon_cli::client::Conn;
use maillon_node::config::Profile;
use maillon_node::crypto::{SpkiHash, TlsIdentity, peer_client_config, pinned_client_config};
use maillon_node::transport::tls_channel;
use maillon_proto::v1 as pb;
use maillon_proto::v1::peer_client::PeerClient;
use maillon_tests::{Cluster, audit_kinds, code};
use tonic::Code;

/// A refused TLS 1.3 client certificate surfaces after the client's side of
/// the handshake, as a broken connection: never as an application answer.
fn refused_by_tls(status: Code) -> bool {
    matches!(status, Code::Unavailable | Code::Unknown)
}

#[tokio::test]
async fn a_peer_whose_certificate_is_not_in_the_roster_fails_the_handshake() {
    let c = Cluster::start().await;
    let ccas_pin = c.member("ccas-rodez").card.tls_spki_sha256;
    let target = c.running("ccas-rodez").peer_addr().to_string();
    let size_before = c.running("ccas-rodez").node().audit_log().size();

    // An outsider with its own key, even knowing the right server pin.
    let outsider = TlsIdentity::generate(&"intrus".parse().expect("id")).expect("identity");
    let cfg = peer_client_config(&outsider, ccas_pin).expect("cfg");
    let mut client = PeerClient::new(tls_channel(&target, cfg).expect("channel"));
    let (status, msg) = code(
        client
            .fetch_key_package(pb::FetchKeyPackageRequest {})
            .await,
    );
    assert!(refused_by_tls(status), "{status:?}: {msg}");

    // A client without any certificate.
    let cfg = pinned_client_config(ccas_pin).expect("cfg");
    let mut client = PeerClient::new(tls_channel(&target, cfg).expect("channel"));
    assert!(refused_by_tls(
        code(
            client
                .fetch_key_package(pb::FetchKeyPackageRequest {})
                .await
        )
        .0
    ));

    // A real member that dials with the wrong expected pin refuses the server.
    let caf = c.node("caf12");
    let caf_tls =
        TlsIdentity::read(&caf.dir.join("tls.key"), &caf.dir.join("tls.crt")).expect("caf tls");
    let cfg = peer_client_config(&caf_tls, SpkiHash([7; 32])).expect("cfg");
    let mut client = PeerClient::new(tls_channel(&target, cfg).expect("channel"));
    assert!(refused_by_tls(
        code(
            client
                .fetch_key_package(pb::FetchKeyPackageRequest {})
                .await
        )
        .0
    ));

    assert_eq!(
        c.running("ccas-rodez").node().audit_log().size(),
        size_before
    );
}

#[tokio::test]
async fn a_roster_member_passes_the_handshake() {
    let c = Cluster::start().await;
    let caf = c.node("caf12");
    let caf_tls =
        TlsIdentity::read(&caf.dir.join("tls.key"), &caf.dir.join("tls.crt")).expect("caf tls");
    let cfg =
        peer_client_config(&caf_tls, c.member("ccas-rodez").card.tls_spki_sha256).expect("cfg");
    let target = c.running("ccas-rodez").peer_addr().to_string();
    let mut client = PeerClient::new(tls_channel(&target, cfg).expect("channel"));
    let kp = client
        .fetch_key_package(pb::FetchKeyPackageRequest {})
        .await
        .expect("a member gets a key package")
        .into_inner();
    assert!(!kp.key_package.is_empty());
}

#[tokio::test]
async fn the_client_api_wants_a_valid_token_and_the_right_certificate() {
    let c = Cluster::start().await;
    let admin = &c.node("ccas-rodez").admin;
    let with_token = |token: &str| {
        let mut p: Profile = admin.clone();
        p.token = token.into();
        Conn::new(&p).expect("conn")
    };
    for token in ["", "mlt_forged", &"x".repeat(500)] {
        let conn = with_token(token);
        let (status, _) = code(conn.api().who_am_i(conn.req(pb::WhoAmIRequest {})).await);
        assert_eq!(status, Code::Unauthenticated, "token {token:?}");
    }
    // No authorization header at all.
    let conn = with_token("unused");
    let (status, _) = code(conn.api().who_am_i(pb::WhoAmIRequest {}).await);
    assert_eq!(status, Code::Unauthenticated);

    // The right token to a server whose certificate is not the pinned one.
    let mut wrong_pin = admin.clone();
    wrong_pin.server_spki_sha256 = SpkiHash([1; 32]);
    let conn = Conn::new(&wrong_pin).expect("conn");
    let (status, _) = code(conn.api().who_am_i(conn.req(pb::WhoAmIRequest {})).await);
    assert_eq!(status, Code::Unavailable);

    let conn = Conn::new(admin).expect("conn");
    let me = conn
        .api()
        .who_am_i(conn.req(pb::WhoAmIRequest {}))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(
        (me.member.as_str(), me.user.as_str(), me.role.as_str()),
        ("ccas-rodez", "admin", "admin")
    );
}

#[tokio::test]
async fn a_removed_users_token_stops_working_at_once() {
    let c = Cluster::start().await;
    let agent = c
        .user(
            "ccas-rodez",
            "agent-ccas",
            maillon_node::types::Role::Caseworker,
        )
        .await;
    let admin = c.node("ccas-rodez").admin().expect("admin");
    agent
        .api()
        .who_am_i(agent.req(pb::WhoAmIRequest {}))
        .await
        .expect("valid token");
    let remove = |conn: &Conn, name: &str| {
        let (conn, name) = (conn.clone(), name.to_owned());
        async move {
            conn.api()
                .remove_user(conn.req(pb::RemoveUserRequest { name }))
                .await
        }
    };
    assert_eq!(
        code(remove(&agent, "admin").await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(remove(&admin, "admin").await).0,
        Code::FailedPrecondition
    );
    assert_eq!(code(remove(&admin, "nobody").await).0, Code::NotFound);
    assert_eq!(
        code(remove(&admin, "bad name!").await).0,
        Code::InvalidArgument
    );
    remove(&admin, "agent-ccas").await.expect("removed");
    let (status, _) = code(agent.api().who_am_i(agent.req(pb::WhoAmIRequest {})).await);
    assert_eq!(status, Code::Unauthenticated);
    let kinds = maillon_tests::audit_kinds(&admin).await;
    assert_eq!(kinds.last().map(String::as_str), Some("user_removed"));
}

#[tokio::test]
async fn idle_connections_from_one_address_cannot_lock_members_out() {
    use tokio::io::AsyncReadExt;
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
    let target = c.running("ccas-rodez").peer_addr();
    // An address (127.0.0.2, loopback too) opens connections and never speaks.
    let idle = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        socket.connect(target).await.expect("connect")
    };
    let mut hogs = Vec::new();
    for _ in 0..16 {
        hogs.push(idle().await);
    }
    // One more from that address is dropped at once.
    let mut extra = idle().await;
    let mut buf = [0u8; 1];
    let dropped = tokio::time::timeout(std::time::Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("the extra connection is dropped at once");
    assert!(matches!(dropped, Ok(0) | Err(_)), "{dropped:?}");
    // Members, from another address, still get through.
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("a member reads while an address hogs its share of handshakes");
    // The idle ones are dropped at the handshake deadline.
    let first = &mut hogs[0];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(8), first.read(&mut buf))
        .await
        .expect("an idle connection is dropped at the handshake deadline");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn the_client_api_presents_its_own_p256_certificate_and_an_older_node_gets_one() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut c = Cluster::start().await;
    let dir = c.node("ccas-rodez").dir.clone();
    let peer_pin = c.member("ccas-rodez").card.tls_spki_sha256;
    let admin = c.node("ccas-rodez").admin.clone();
    assert_ne!(admin.server_spki_sha256, peer_pin, "two identities");
    // An ECDSA P-256 key (id-ecPublicKey, prime256v1) behind the pin, 0600.
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            std::fs::read_to_string(dir.join("client-tls.crt"))
                .expect("certificate")
                .trim(),
        )
        .expect("base64");
    let p256 = [
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];
    assert!(der.windows(p256.len()).any(|w| w == p256));
    let mode = std::fs::metadata(dir.join("client-tls.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A client pinning the peer API's certificate is refused by the client API.
    let mut peer_pinned = admin.clone();
    peer_pinned.server_spki_sha256 = peer_pin;
    let conn = Conn::new(&peer_pinned).expect("conn");
    let (status, _) = code(conn.api().who_am_i(conn.req(pb::WhoAmIRequest {})).await);
    assert_eq!(status, Code::Unavailable);

    // A node folder made before the client API had its own identity gets
    // one at start, and its first admin's profile the new pin.
    std::fs::remove_file(dir.join("client-tls.key")).expect("rm");
    std::fs::remove_file(dir.join("client-tls.crt")).expect("rm");
    c.restart("ccas-rodez").await;
    let repinned = Profile::read(&dir.join("admin.profile.toml")).expect("profile");
    assert_ne!(repinned.server_spki_sha256, admin.server_spki_sha256);
    let conn = Conn::new(&repinned).expect("conn");
    conn.api()
        .who_am_i(conn.req(pb::WhoAmIRequest {}))
        .await
        .expect("the re-pinned profile connects");
    let conn = Conn::new(&admin).expect("conn");
    let (status, _) = code(conn.api().who_am_i(conn.req(pb::WhoAmIRequest {})).await);
    assert_eq!(status, Code::Unavailable, "the old pin is refused");

    // Half written (a stop between its two files): made again at start.
    std::fs::remove_file(dir.join("client-tls.crt")).expect("rm");
    c.restart("ccas-rodez").await;
    let again = Profile::read(&dir.join("admin.profile.toml")).expect("profile");
    assert_ne!(again.server_spki_sha256, repinned.server_spki_sha256);
    assert!(dir.join("client-tls.crt").exists());
    let conn = Conn::new(&again).expect("conn");
    conn.api()
        .who_am_i(conn.req(pb::WhoAmIRequest {}))
        .await
        .expect("the identity made again serves");
}

#[tokio::test]
async fn both_listeners_serve_health_and_the_client_api_serves_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let c = Cluster::start().await;
    let admin = &c.node("ccas-rodez").admin;
    let ask = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    // The client API, with no token: health is not a user's call.
    let channel = tls_channel(
        &admin.endpoint,
        pinned_client_config(admin.server_spki_sha256).expect("cfg"),
    )
    .expect("channel");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "maillon.v1.Client", "maillon.v1.Peer"] {
        let status = health
            .check(ask(service))
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let (code_unknown, _) = code(health.check(ask("maillon.v1.Nothing")).await);
    assert_eq!(code_unknown, Code::NotFound);

    // The peer API: only a member's certificate gets there, and it is served.
    let caf = c.node("caf12");
    let caf_tls =
        TlsIdentity::read(&caf.dir.join("tls.key"), &caf.dir.join("tls.crt")).expect("caf tls");
    let cfg =
        peer_client_config(&caf_tls, c.member("ccas-rodez").card.tls_spki_sha256).expect("cfg");
    let peer = tls_channel(&c.running("ccas-rodez").peer_addr().to_string(), cfg).expect("ch");
    let status = HealthClient::new(peer)
        .check(ask(""))
        .await
        .expect("peer health")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // Reflection lists the client API and health, not the peer API.
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(one_message(request))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("an answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("a list of services");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["grpc.health.v1.Health", "maillon.v1.Client"]);
    // And describes the client API's messages, for grpcurl.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "maillon.v1.Client".into(),
        )),
    };
    let answer = reflection
        .server_reflection_info(one_message(request))
        .await
        .expect("reflection")
        .into_inner()
        .message()
        .await
        .expect("an answer")
        .expect("one message");
    assert!(matches!(
        answer.message_response,
        Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
    ));
}

/// A request stream of one message.
fn one_message<T: Send + 'static>(item: T) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::iter([item])
}

#[tokio::test]
async fn tokens_expire_and_a_rotation_replaces_the_old_one_at_once() {
    use maillon_node::clock::Clock;
    use maillon_node::types::Role;
    let c = Cluster::start().await;
    let admin = c.admin("ccas-rodez");
    let add = |name: &str, valid_days: u32| {
        let (mut api, req) = (
            admin.api(),
            admin.req(pb::AddUserRequest {
                name: name.into(),
                role: "caseworker".into(),
                valid_days,
            }),
        );
        async move { api.add_user(req).await }
    };
    let rotate = |conn: &Conn, name: &str, valid_days: u32| {
        let (mut api, req) = (
            conn.api(),
            conn.req(pb::RotateUserTokenRequest {
                name: name.into(),
                valid_days,
            }),
        );
        async move { api.rotate_user_token(req).await }
    };
    let as_user = |r: &pb::AddUserReply| {
        Conn::new(&Profile {
            user: r.name.clone(),
            token: r.token.clone(),
            ..c.node("ccas-rodez").admin.clone()
        })
        .expect("conn")
    };
    // The call's status, and its message when refused.
    let whoami = |r: &pb::AddUserReply| {
        let conn = as_user(r);
        async move {
            match conn.api().who_am_i(conn.req(pb::WhoAmIRequest {})).await {
                Ok(_) => (Code::Ok, String::new()),
                Err(s) => (s.code(), s.message().to_owned()),
            }
        }
    };

    // At most five years; the default is one.
    assert_eq!(
        code(add("agent-long", 5 * 365 + 1).await).0,
        Code::InvalidArgument
    );
    let now = c.clock.now();
    let short = add("agent-court", 2).await.expect("add").into_inner();
    assert_eq!(short.expires_at, now + 2 * 86_400);
    assert_eq!(whoami(&short).await.0, Code::Ok, "a fresh token works");

    // Only an admin rotates, a user that exists, within the bound.
    let agent = as_user(&short);
    assert_eq!(
        code(rotate(&agent, "agent-court", 0).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(rotate(&admin, "agent-nope", 0).await).0,
        Code::NotFound
    );
    assert_eq!(
        code(rotate(&admin, "agent-court", 5 * 365 + 1).await).0,
        Code::InvalidArgument
    );
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;

    let rotated = rotate(&admin, "agent-court", 0)
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(rotated.expires_at, c.clock.now() + 365 * 86_400);
    assert_ne!(rotated.token, short.token);
    assert_eq!(
        whoami(&short).await.0,
        Code::Unauthenticated,
        "the old token"
    );
    assert_eq!(whoami(&rotated).await.0, Code::Ok, "the new token");
    let after = audit_kinds(&auditor).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last().map(String::as_str), Some("user_token_rotated"));

    // A day before its end it works; at its end it is refused, and says why.
    c.clock.advance(364 * 86_400);
    assert_eq!(whoami(&rotated).await.0, Code::Ok);
    c.clock.advance(86_400);
    let (status, msg) = whoami(&rotated).await;
    assert_eq!(status, Code::Unauthenticated);
    assert!(msg.contains("expired"), "{msg}");
}
