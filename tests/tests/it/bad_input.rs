//! Malformed, oversized, forged and replayed inputs get a precise status and change nothing.

use maillon_node::clock::Clock;
use maillon_node::crypto::{Context, NodeKey, TlsIdentity, peer_client_config};
use maillon_node::protocol::ReadRequest;
use maillon_node::transport::tls_channel;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_proto::v1::peer_client::PeerClient;
use maillon_tests::{Cluster, HOUSING, audit_kinds, code, next_year, refusal};
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test]
async fn malformed_and_oversized_client_requests_are_refused_and_change_nothing() {
    let c = Cluster::start().await;
    let (ccas, caf, d) = c.housing_at_the_ccas().await;
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;

    let cases: Vec<(&str, &str, String, Code)> = vec![
        ("DSU-nope", "housing", "{}".into(), Code::InvalidArgument),
        (&d, "logement", "{}".into(), Code::InvalidArgument),
        (&d, "housing", "[1,2]".into(), Code::InvalidArgument),
        (&d, "housing", "{not json".into(), Code::InvalidArgument),
        (
            &d,
            "housing",
            format!(r#"{{"x":"{}"}}"#, "a".repeat(100 * 1024)),
            Code::ResourceExhausted,
        ),
        (
            &d,
            "housing",
            format!(r#"{{"x":"{}"}}"#, "a".repeat(1024 * 1024)),
            Code::ResourceExhausted,
        ),
        (
            "DSU-0000000000000000000000000Z",
            "housing",
            "{}".into(),
            Code::NotFound,
        ),
    ];
    for (dossier, section, json, want) in cases {
        let (status, msg) = code(ccas.put(dossier, section, &json).await);
        assert_eq!(status, want, "{dossier} {section}: {msg}");
    }
    let bad_open = ccas
        .conn
        .api()
        .open_dossier(ccas.conn.req(pb::OpenDossierRequest {
            given_name: "".into(),
            family_name: "Martin".into(),
            birth_date: "1984-02-30".into(),
        }))
        .await;
    assert_eq!(code(bad_open).0, Code::InvalidArgument);
    // A purpose with control characters (it reaches logs and the person's report).
    let until = next_year(&c.clock);
    let sly = ccas
        .conn
        .grant_consent(&d, &["housing"], &["caf12"], "motif\u{1b}[2J", &until)
        .await;
    assert_eq!(refusal(sly), (Code::InvalidArgument, "invalid".into()));
    let sly_read = caf
        .conn
        .read_share(&d, "housing", "ccas-rodez", "instruction\n2")
        .await;
    assert_eq!(refusal(sly_read), (Code::InvalidArgument, "invalid".into()));
    let (status, _) = code(ccas.grant(&d, &["housing"], &["caf12"], "tomorrow").await);
    assert_eq!(status, Code::InvalidArgument);
    let (status, _) = code(ccas.revoke("CNS-nope").await);
    assert_eq!(status, Code::InvalidArgument);
    let (status, _) = code(ccas.revoke("CNS-0000000000000000000000000Z").await);
    assert_eq!(status, Code::NotFound);
    let too_many = auditor
        .api()
        .audit_tail(auditor.req(pb::AuditTailRequest {
            limit: 50_000,
            from: None,
        }))
        .await;
    assert_eq!(code(too_many).0, Code::InvalidArgument);

    let (status, _) = code(ccas.get(&d, "resources").await);
    assert_eq!(status, Code::NotFound);
    let admin = c.node("ccas-rodez").admin().expect("admin");
    for (name, role, want) in [
        ("agent-ccas", "caseworker", Code::AlreadyExists),
        ("someone", "superuser", Code::InvalidArgument),
        ("bad name!", "auditor", Code::InvalidArgument),
    ] {
        let r = admin
            .api()
            .add_user(admin.req(pb::AddUserRequest {
                name: name.into(),
                role: role.into(),
                valid_days: 0,
            }))
            .await;
        assert_eq!(code(r).0, want, "{name} {role}");
    }
    let admin_reads = admin
        .api()
        .get_section(admin.req(pb::GetSectionRequest {
            dossier: d.clone(),
            section: "housing".into(),
        }))
        .await;
    assert_eq!(
        code(admin_reads).0,
        Code::PermissionDenied,
        "an admin is not a caseworker"
    );

    assert_eq!(ccas.get(&d, "housing").await.expect("unchanged"), HOUSING);
    let mut after = before.clone();
    after.push("section_read".into());
    assert_eq!(
        audit_kinds(&auditor).await,
        after,
        "refused requests leave no trace; the check's own read is logged"
    );
}

/// A peer-API client that is really caf12 (its TLS key), to send hand-made requests.
fn as_caf(c: &Cluster) -> (PeerClient<Channel>, NodeKey) {
    let caf = c.node("caf12");
    let tls = TlsIdentity::read(&caf.dir.join("tls.key"), &caf.dir.join("tls.crt")).expect("tls");
    let key = NodeKey::read(&caf.dir.join("signing.key")).expect("key");
    let cfg = peer_client_config(&tls, c.member("ccas-rodez").card.tls_spki_sha256).expect("cfg");
    let target = c.running("ccas-rodez").peer_addr().to_string();
    (
        PeerClient::new(tls_channel(&target, cfg).expect("channel")),
        key,
    )
}

fn request(c: &Cluster, dossier: &str, reader: &str, nonce: u8) -> ReadRequest {
    ReadRequest {
        reader: reader.parse().expect("id"),
        user: "agent-caf".parse().expect("user"),
        role: Role::Caseworker,
        owner: "ccas-rodez".parse().expect("id"),
        dossier: dossier.parse().expect("dossier"),
        sections: vec!["housing".parse().expect("section")],
        purpose: "instruction".into(),
        nonce: hex::encode([nonce; 16]),
        time: c.clock.now(),
        break_glass: None,
    }
}

fn signed(req: &ReadRequest, key: &NodeKey) -> pb::SignedReadRequest {
    let bytes = serde_json::to_vec(req).expect("json");
    pb::SignedReadRequest {
        signature: key.sign(Context::Request, &bytes).to_bytes().to_vec(),
        request: bytes,
    }
}

#[tokio::test]
async fn forged_replayed_stale_and_malformed_peer_requests_are_refused() {
    let c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let (mut peer, caf_key) = as_caf(&c);

    // Garbage and oversized request bodies.
    let garbage = pb::SignedReadRequest {
        request: b"{]".to_vec(),
        signature: vec![0; 64],
    };
    assert_eq!(
        code(peer.read_share(garbage).await).0,
        Code::InvalidArgument
    );
    let short_sig = pb::SignedReadRequest {
        request: b"{}".to_vec(),
        signature: vec![0; 10],
    };
    assert_eq!(
        code(peer.read_share(short_sig).await).0,
        Code::InvalidArgument
    );
    let big = pb::SignedReadRequest {
        request: vec![b' '; 20 * 1024],
        signature: vec![0; 64],
    };
    assert_eq!(code(peer.read_share(big).await).0, Code::ResourceExhausted);
    // Over the transport's 1 MiB: the same status, as gRPC's guide has it.
    let huge = pb::SignedReadRequest {
        request: vec![b' '; 1024 * 1024 + 1],
        signature: vec![0; 64],
    };
    let (status, msg) = code(peer.read_share(huge).await);
    assert_eq!(status, Code::ResourceExhausted, "{msg}");

    // Signed by another key than the roster's for caf12.
    let stranger = NodeKey::generate();
    let (status, msg) = code(
        peer.read_share(signed(&request(&c, &d, "caf12", 1), &stranger))
            .await,
    );
    assert_eq!(status, Code::Unauthenticated, "{msg}");
    // Signed in another context (a receipt is not a request).
    let mut other_ctx = signed(&request(&c, &d, "caf12", 2), &caf_key);
    other_ctx.signature = caf_key
        .sign(Context::Receipt, &other_ctx.request)
        .to_bytes()
        .to_vec();
    assert_eq!(
        code(peer.read_share(other_ctx).await).0,
        Code::Unauthenticated
    );
    // caf12 pretending to be cd12.
    let (status, _) = code(
        peer.read_share(signed(&request(&c, &d, "cd12", 3), &caf_key))
            .await,
    );
    assert_eq!(status, Code::PermissionDenied);

    // A genuine request works once; its replay is refused.
    let genuine = signed(&request(&c, &d, "caf12", 4), &caf_key);
    peer.read_share(genuine.clone())
        .await
        .expect("genuine request answered");
    let (status, why) = refusal(peer.read_share(genuine).await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "replayed");

    // A stale request is refused.
    let mut stale = request(&c, &d, "caf12", 5);
    stale.time -= 3600;
    let (status, why) = refusal(peer.read_share(signed(&stale, &caf_key)).await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "out_of_window");

    // A request claiming a non-caseworker role is refused by the owner too.
    let mut auditor = request(&c, &d, "caf12", 6);
    auditor.role = Role::Auditor;
    let (status, why) = refusal(peer.read_share(signed(&auditor, &caf_key)).await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "role");

    // Requests for another owner, with a malformed nonce, from the future, or for a missing section.
    let mut elsewhere = request(&c, &d, "caf12", 7);
    elsewhere.owner = "cd12".parse().expect("id");
    assert_eq!(
        code(peer.read_share(signed(&elsewhere, &caf_key)).await).0,
        Code::InvalidArgument
    );
    let mut bad_nonce = request(&c, &d, "caf12", 8);
    bad_nonce.nonce = "zz".into();
    assert_eq!(
        code(peer.read_share(signed(&bad_nonce, &caf_key)).await).0,
        Code::InvalidArgument
    );
    let mut future = request(&c, &d, "caf12", 9);
    future.time = i64::MIN;
    assert_eq!(
        code(peer.read_share(signed(&future, &caf_key)).await).0,
        Code::PermissionDenied
    );
    future.time = i64::MAX;
    assert_eq!(
        code(peer.read_share(signed(&future, &caf_key)).await).0,
        Code::PermissionDenied
    );
    let mut missing = request(&c, &d, "caf12", 10);
    missing.sections = vec!["resources".parse().expect("section")];
    assert_eq!(
        code(peer.read_share(signed(&missing, &caf_key)).await).0,
        Code::PermissionDenied
    );
    ccas.grant(&d, &["resources"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let mut missing = request(&c, &d, "caf12", 11);
    missing.sections = vec!["resources".parse().expect("section")];
    let (status, msg) = code(peer.read_share(signed(&missing, &caf_key)).await);
    assert_eq!(status, Code::NotFound, "{msg}");

    // A fresh Welcome: only for a member an active consent names, and not too often.
    let ask = |section: &str| pb::RequestWelcomeRequest {
        dossier: d.clone(),
        section: section.into(),
    };
    let (status, msg) = code(peer.request_welcome(ask("household")).await);
    assert_eq!(status, Code::PermissionDenied, "{msg}");
    peer.request_welcome(ask("housing"))
        .await
        .expect("a fresh welcome");
    let (status, msg) = code(peer.request_welcome(ask("housing")).await);
    assert_eq!(status, Code::ResourceExhausted, "{msg}");
    assert_eq!(
        code(peer.request_welcome(ask("nope")).await).0,
        Code::InvalidArgument
    );
    // Once the interval has passed, of concurrent requests exactly one is served.
    c.clock
        .advance(maillon_node::service::WELCOME_REQUEST_INTERVAL);
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let (mut peer, ask) = (peer.clone(), ask("housing"));
            tokio::spawn(async move { peer.request_welcome(ask).await })
        })
        .collect();
    let mut served = 0;
    for r in racing {
        match r.await.expect("task") {
            Ok(_) => served += 1,
            Err(s) => assert_eq!(
                maillon_node::transport::reason_of(&s).as_deref(),
                Some("busy"),
                "{s:?}"
            ),
        }
    }
    assert_eq!(served, 1, "the rate limit is taken atomically");

    // MLS deliveries that are not what they claim.
    let welcome = pb::DeliverWelcomeRequest {
        dossier: d.clone(),
        section: "housing".into(),
        welcome: vec![1, 2, 3],
    };
    assert_eq!(
        code(peer.deliver_welcome(welcome).await).0,
        Code::InvalidArgument
    );
    let bad_section = pb::DeliverCommitRequest {
        dossier: d.clone(),
        section: "nope".into(),
        commit: vec![],
    };
    assert_eq!(
        code(peer.deliver_commit(bad_section).await).0,
        Code::InvalidArgument
    );
    // An MLS message over the limit, within the gRPC one.
    let huge = pb::DeliverWelcomeRequest {
        dossier: d.clone(),
        section: "housing".into(),
        welcome: vec![0; 600 * 1024],
    };
    assert_eq!(
        refusal(peer.deliver_welcome(huge).await),
        (Code::ResourceExhausted, "too_large".into())
    );
    // caf12 owns no group at ccas-rodez: a "commit" for it changes nothing.
    let no_group = pb::DeliverCommitRequest {
        dossier: d.clone(),
        section: "housing".into(),
        commit: vec![0; 16],
    };
    assert_eq!(
        refusal(peer.deliver_commit(no_group).await).0,
        Code::InvalidArgument,
        "not an MLS message"
    );
}

/// Replay protection lives in memory and is read back from the log at
/// start: a request answered before the owner restarted is refused after
/// it, a fresh one is answered, and nonces too old to be replayed are
/// forgotten (nothing of them grows in the store).
#[tokio::test]
async fn a_replay_is_refused_after_the_owner_restarts() {
    let mut c = Cluster::start().await;
    let (ccas, _caf, d) = c.housing_at_the_ccas().await;
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    let (mut peer, caf_key) = as_caf(&c);
    let genuine = signed(&request(&c, &d, "caf12", 40), &caf_key);
    peer.read_share(genuine.clone())
        .await
        .expect("genuine request answered");
    let denied = signed(&request(&c, &d, "caf12", 41), &NodeKey::generate());
    assert_eq!(code(peer.read_share(denied).await).0, Code::Unauthenticated);
    drop(peer);
    c.restart("ccas-rodez").await;
    let (mut peer, _) = as_caf(&c);
    let (status, why) = refusal(peer.read_share(genuine.clone()).await);
    assert_eq!(status, Code::PermissionDenied);
    assert_eq!(why, "replayed", "the nonce came back from the log");
    peer.read_share(signed(&request(&c, &d, "caf12", 42), &caf_key))
        .await
        .expect("a fresh request is answered");
    let node = c.running("ccas-rodez").node().clone();
    assert_eq!(
        node.prune_nonces().expect("prune"),
        0,
        "all still in the window"
    );
    c.clock.advance(
        2 * maillon_node::service::REQUEST_WINDOW + maillon_node::service::NONCE_BUCKET + 1,
    );
    assert_eq!(node.prune_nonces().expect("prune"), 2, "both forgotten");
    // Past its window the old request is refused as stale, not answered.
    let (_, why) = refusal(peer.read_share(genuine).await);
    assert_eq!(why, "out_of_window");
}

/// A client of the client API as a stock gRPC stack makes it: no size limit
/// of its own on what it sends, and the `authorization` header as given.
fn stock_client(
    profile: &maillon_node::config::Profile,
) -> maillon_proto::v1::client_client::ClientClient<Channel> {
    let cfg = maillon_node::crypto::pinned_client_config(profile.server_spki_sha256).expect("cfg");
    maillon_proto::v1::client_client::ClientClient::new(
        tls_channel(&profile.endpoint, cfg).expect("channel"),
    )
}

fn with_auth<T>(msg: T, value: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", value.parse().expect("ascii"));
    req
}

#[tokio::test]
async fn stock_clients_get_resource_exhausted_over_the_limit_and_any_case_of_bearer() {
    let c = Cluster::start().await;
    let admin = c.node("ccas-rodez").admin.clone();
    let mut api = stock_client(&admin);
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let before = audit_kinds(&auditor).await;

    // The scheme's name in any case (RFC 6750); another scheme is refused.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let me = api
            .who_am_i(with_auth(
                pb::WhoAmIRequest {},
                &format!("{scheme} {}", admin.token),
            ))
            .await
            .expect("the token is taken whatever the scheme's case")
            .into_inner();
        assert_eq!(me.user, "admin");
    }
    for value in [format!("Basic {}", admin.token), admin.token.clone()] {
        let (status, msg) = code(api.who_am_i(with_auth(pb::WhoAmIRequest {}, &value)).await);
        assert_eq!(status, Code::Unauthenticated, "{msg}");
    }

    // Over the transport's 1 MiB: ResourceExhausted, as gRPC's guide has it.
    let huge = pb::PutSectionRequest {
        dossier: "DSU-0000000000000000000000000Z".into(),
        section: "housing".into(),
        json: format!(r#"{{"x":"{}"}}"#, "a".repeat(1024 * 1024)),
    };
    let (status, msg) = code(
        api.put_section(with_auth(huge, &format!("Bearer {}", admin.token)))
            .await,
    );
    assert_eq!(status, Code::ResourceExhausted, "{msg}");
    assert_eq!(
        audit_kinds(&auditor).await,
        before,
        "nothing logged, nothing changed"
    );
}
