//! tonic servers and clients: TLS termination, proto <-> domain, errors ->
//! `Status`. The only module that names tonic.
//!
//! TLS is terminated here, not by tonic (`tls`): the peer listener requires
//! a client certificate whose SPKI hash the current roster pins for an active
//! member, and the authenticated member id travels with the connection into
//! each request. Handlers are thin (`peer_server`, `client_server`):
//! authenticate, parse, call the service, encode. Every call runs in a task
//! of its own, within bounds (`detach`). `status` is the one mapping of
//! domain errors to gRPC codes; `peer_client` implements the service's
//! `PeerNetwork`.

mod audit_wire;
mod client_server;
mod detach;
mod metrics_http;
mod peer_client;
mod peer_server;
mod probe;
pub mod relay;
mod status;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use maillon_proto::v1 as pb;
use pb::client_server::ClientServer;
use pb::peer_server::{Peer, PeerServer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use audit_wire::{leaves_from_pb, manifest_from_pb, part_from_pb, part_to_pb};
pub use client_server::ClientApi;
pub use detach::{Detach, DetachLayer, MAX_CALLS, MAX_CALLS_PER_CALLER, Watch};
pub use peer_client::PeerClients;
pub use peer_server::PeerApi;
pub use probe::{Probe, parse_http_date, probe_peer};
pub use status::{REASON_KEY, from_status, reason_of, status};
pub use tls::{ConnInfo, TlsConn, tls_channel};

use crate::crypto::{CryptoError, PinLookup, TlsIdentity};
use crate::service::Node;

/// The request metadata in which every peer call tells the caller's roster version.
pub const ROSTER_VERSION_KEY: &str = "maillon-roster-version";

/// Largest gRPC message either API decodes; larger ones fail with
/// `ResourceExhausted`, as gRPC's status-code guide has it.
/// Domain limits below it (sections, requests, MLS messages) answer `ResourceExhausted`.
pub const MAX_GRPC_MESSAGE: usize = 1024 * 1024;

/// How long a connection lives before it must be made again, so that an
/// identity checked at handshake (a pin, a member's status) is checked again.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// Most concurrent calls (HTTP/2 streams) on one connection.
const MAX_STREAMS: u32 = 256;

/// The standard gRPC health service (`grpc.health.v1.Health`), served on
/// both listeners.
pub type Health =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// How often the health service looks at the audit log's state.
const HEALTH_PERIOD: Duration = Duration::from_secs(2);

/// Keeps the health statuses true until `stopped`: every service serving
/// while the audit log takes appends, none once it refuses them (its check
/// failed, or it cannot write its index) or the node stops.
async fn report_health(
    node: Arc<Node>,
    reporter: tonic_health::server::HealthReporter,
    stopped: impl std::future::Future<Output = ()>,
) {
    use tonic_health::ServingStatus;
    let names = [
        "",
        <PeerServer<PeerApi> as tonic::server::NamedService>::NAME,
        <ClientServer<ClientApi> as tonic::server::NamedService>::NAME,
    ];
    let set = |status: ServingStatus| {
        let reporter = reporter.clone();
        async move {
            for name in names {
                reporter.set_service_status(name, status).await;
            }
        }
    };
    tokio::pin!(stopped);
    let mut last = None;
    loop {
        let status = if node.audit_log().accepts_appends() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            set(status).await;
            last = Some(status);
        }
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(HEALTH_PERIOD) => {}
        }
    }
    set(ServingStatus::NotServing).await;
}

/// Serves both APIs until `shutdown` resolves: the peer API with `identity`
/// (pinned by the roster), the client API with `client_identity` (pinned by
/// the users' profiles), and the metrics over plain HTTP on
/// `metrics_listener` when given.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    node: Arc<Node>,
    identity: &TlsIdentity,
    client_identity: &TlsIdentity,
    pins: Arc<dyn PinLookup>,
    peer_listener: TcpListener,
    client_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CryptoError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let reporter = tonic_health::server::HealthReporter::new();
    let health = Health::new(tonic_health::server::HealthService::from_health_reporter(
        reporter.clone(),
    ));
    let reporting = tokio::spawn(report_health(
        node.clone(),
        reporter,
        stopped(stop_rx.clone()),
    ));
    let metrics = metrics_listener.map(|listener| {
        tokio::spawn(metrics_http::serve_metrics(
            node.clone(),
            listener,
            stopped(stop_rx.clone()),
        ))
    });
    let watch = |api: &'static str| Watch {
        api,
        metrics: node.metrics().clone(),
        limits: node.limits(),
        limiter: crate::limits::RateLimiter::default(),
    };
    let peer = serve_peer_api_with(
        PeerApi::new(node.clone()),
        identity,
        pins,
        peer_listener,
        stopped(stop_rx.clone()),
        Some(health.clone()),
        Some(watch("peer")),
    );
    let client = serve_client_api(
        ClientApi::new(node.clone()),
        client_identity,
        client_listener,
        stopped(stop_rx),
        health,
        watch("client"),
    );
    let (a, b) = tokio::join!(peer, client);
    let _ = reporting.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    a.and(b)
}

/// The token of an `authorization` header value in the `Bearer` scheme,
/// whose name is case-insensitive (RFC 6750, RFC 9110 §11.1) and followed by
/// one or more spaces; `None` for another scheme or an empty token.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The server settings both listeners share; calls counted and limited as
/// `watch` says, if given.
fn server(
    watch: Option<Watch>,
) -> tonic::transport::Server<tower::layer::util::Stack<DetachLayer, tower::layer::util::Identity>>
{
    let detach = match watch {
        Some(w) => DetachLayer::default().watched(w),
        None => DetachLayer::default(),
    };
    tonic::transport::Server::builder()
        .timeout(tls::PEER_CALL_TIMEOUT)
        .max_concurrent_streams(MAX_STREAMS)
        .max_connection_age(MAX_CONNECTION_AGE)
        .http2_keepalive_interval(Some(tls::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(tls::KEEPALIVE_TIMEOUT))
        .layer(detach)
}

/// Serves a peer API over mutual TLS pinned by `pins` until `shutdown`
/// resolves, and closes the listener before returning. Nodes serve
/// [`PeerApi`]; tests also serve hostile peers through it.
pub async fn serve_peer_api<P: Peer>(
    api: P,
    identity: &TlsIdentity,
    pins: Arc<dyn PinLookup>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CryptoError> {
    serve_peer_api_with(api, identity, pins, listener, shutdown, None, None).await
}

/// [`serve_peer_api`], with the health service beside it.
async fn serve_peer_api_with<P: Peer>(
    api: P,
    identity: &TlsIdentity,
    pins: Arc<dyn PinLookup>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
    health: Option<Health>,
    watch: Option<Watch>,
) -> Result<(), CryptoError> {
    let tls = TlsAcceptor::from(Arc::new(crate::crypto::peer_server_config(
        identity,
        pins.clone(),
    )?));
    let svc = PeerServer::new(api)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let (incoming, accepting) = tls::tls_incoming(listener, tls, Some(pins));
    let served = server(watch)
        .add_service(svc)
        .add_optional_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "peer API stopped with an error");
    }
    let _ = accepting.await;
    Ok(())
}

/// Serves the client API over TLS until `shutdown` resolves, and closes the
/// listener before returning; with it, the health service and gRPC server
/// reflection (v1 and v1alpha, for `grpcurl` and the other stock tools),
/// which advertise the client API and the health service only.
async fn serve_client_api(
    api: ClientApi,
    identity: &TlsIdentity,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
    health: Health,
    watch: Watch,
) -> Result<(), CryptoError> {
    let tls = TlsAcceptor::from(Arc::new(crate::crypto::client_api_server_config(identity)?));
    let svc = ClientServer::new(api)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(<ClientServer<ClientApi> as tonic::server::NamedService>::NAME)
            .with_service_name(<Health as tonic::server::NamedService>::NAME)
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| CryptoError::Tls(format!("reflection: {e}"));
    let v1 = reflection().build_v1().map_err(reflection_error)?;
    let v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let (incoming, accepting) = tls::tls_incoming(listener, tls, None);
    let served = server(Some(watch))
        .add_service(svc)
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "client API stopped with an error");
    }
    let _ = accepting.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_a_token() {
        for ok in [
            "Bearer mlt_x",
            "bearer mlt_x",
            "BEARER mlt_x",
            "bEaReR   mlt_x",
        ] {
            assert_eq!(bearer_token(ok), Some("mlt_x"), "{ok}");
        }
        for refused in [
            "",
            "Bearer",
            "Bearer ",
            "Basic mlt_x",
            "Bearermlt_x",
            "Token mlt_x",
        ] {
            assert_eq!(bearer_token(refused), None, "{refused}");
        }
    }
}
