//! A hostile owner: a roster member whose node answers reads with receipts
//! that do not hold, or with sections it did not seal. The reader refuses them.

use std::sync::Arc;

use maillon_node::crypto::{Context, NodeKey, TlsIdentity, sha256};
use maillon_node::daemon::load_roster;
use maillon_node::roster::CurrentRoster;
use maillon_node::service::Receipt;
use maillon_node::transport::serve_peer_api;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_proto::v1::peer_server::Peer;
use maillon_tests::{Cluster, audit_kinds, code, next_year};
use tonic::{Code, Request, Response, Status};

/// How the hostile owner lies.
#[derive(Clone, Copy)]
enum Lie {
    /// Signs its receipt with a key the roster does not list for it.
    StrangerKey,
    /// Signs a receipt for another request.
    OtherRequest,
    /// Signs a true receipt, but the "sealed" section is garbage.
    Garbage,
}

struct HostileOwner {
    lie: Lie,
    key: NodeKey,
}

#[tonic::async_trait]
impl Peer for HostileOwner {
    async fn fetch_key_package(
        &self,
        _: Request<pb::FetchKeyPackageRequest>,
    ) -> Result<Response<pb::FetchKeyPackageReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn deliver_welcome(
        &self,
        _: Request<pb::DeliverWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn deliver_commit(
        &self,
        _: Request<pb::DeliverCommitRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unimplemented("hostile"))
    }
    async fn request_welcome(
        &self,
        _: Request<pb::RequestWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        Err(Status::unavailable("no welcome from a hostile owner"))
    }
    async fn read_share(
        &self,
        req: Request<pb::SignedReadRequest>,
    ) -> Result<Response<pb::ReadShareReply>, Status> {
        let request = req.into_inner().request;
        let hash = hex::encode(sha256(&request));
        let receipt = Receipt {
            owner: "ccas-rodez".parse().expect("id"),
            request: match self.lie {
                Lie::OtherRequest => hex::encode(sha256(b"another request")),
                _ => hash,
            },
            leaf: 0,
            time: 0,
        };
        let bytes = serde_json::to_vec(&receipt).expect("json");
        let signature = match self.lie {
            Lie::StrangerKey => NodeKey::generate().sign(Context::Receipt, &bytes),
            _ => self.key.sign(Context::Receipt, &bytes),
        };
        Ok(Response::new(pb::ReadShareReply {
            sealed: vec![0; 64],
            receipt_signature: signature.to_bytes().to_vec(),
            receipt: bytes,
        }))
    }
}

#[tokio::test]
async fn a_reader_refuses_receipts_that_do_not_hold_and_sections_it_cannot_open() {
    let mut c = Cluster::start().await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let caf = c.desk("caf12", "agent-caf").await;
    let d = ccas.open().await.expect("open");
    ccas.put(&d, "housing", r#"{"loyer":450}"#)
        .await
        .expect("put");
    ccas.grant(&d, &["housing"], &["caf12"], &next_year(&c.clock))
        .await
        .expect("grant");
    caf.read(&d, "housing", "ccas-rodez")
        .await
        .expect("a genuine read");

    // The CCAS node is replaced by a hostile one holding its keys.
    let dir = c.node("ccas-rodez").dir.clone();
    let addr = c.running("ccas-rodez").peer_addr();
    c.fed.node_mut("ccas-rodez").stop().await;
    let pins = Arc::new(CurrentRoster::new(
        load_roster(&dir.join("roster.json")).expect("roster"),
    ));
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let receipts_before = count_receipts(&audit_kinds(&auditor).await);

    for (lie, expect) in [
        (Lie::StrangerKey, "does not verify"),
        (Lie::OtherRequest, "another request"),
        (Lie::Garbage, "cannot open"),
    ] {
        let listener = bind(addr).await;
        let key = NodeKey::read(&dir.join("signing.key")).expect("key");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let (identity, pins) = (
                TlsIdentity::read(&dir.join("tls.key"), &dir.join("tls.crt")).expect("tls"),
                pins.clone(),
            );
            async move {
                serve_peer_api(
                    HostileOwner { lie, key },
                    &identity,
                    pins,
                    listener,
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
            }
        });
        let (status, msg) = code(caf.read(&d, "housing", "ccas-rodez").await);
        assert_eq!(status, Code::FailedPrecondition, "{msg}");
        assert!(msg.contains(expect), "{msg}");
        let _ = stop.send(());
        server.await.expect("join").expect("served");
    }
    // Only the true receipt (the garbage answer) was logged by the reader.
    assert_eq!(
        count_receipts(&audit_kinds(&auditor).await),
        receipts_before + 1
    );
}

fn count_receipts(kinds: &[String]) -> usize {
    kinds.iter().filter(|k| *k == "receipt_logged").count()
}

async fn bind(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}
