//! tonic servers and clients: TLS termination, proto <-> domain, errors -> `Status`.
//! The only module that names tonic.
//!
//! TLS is terminated here, not by tonic: the peer listener requires a client
//! certificate whose SPKI hash the current roster pins for an active member,
//! and the authenticated member id travels with the connection into each
//! request. Handlers are thin: authenticate, parse, call the service, encode.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use maillon_proto::v1 as pb;
use pb::client_server::{Client, ClientServer};
use pb::peer_client::PeerClient;
use pb::peer_server::{Peer, PeerServer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::crypto::{CryptoError, PinLookup, Signature, SpkiHash, TlsIdentity};
use crate::roster::RosterMember;
use crate::service::{
    BoxFuture, Caller, GrantRequest, Node, PeerNetwork, ReadAnswer, ServiceError, SignedBytes,
};
use crate::sharing::ShareId;
use crate::types::{MemberId, ParseError};

/// Largest gRPC message either API decodes; larger ones fail with `OutOfRange`.
/// Domain limits below it (sections, requests, MLS messages) answer `ResourceExhausted`.
pub const MAX_GRPC_MESSAGE: usize = 1024 * 1024;
/// Most TLS handshakes in progress on one listener.
const MAX_HANDSHAKES: usize = 256;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call to a peer may take.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The one place that maps domain errors to gRPC statuses.
pub fn status(e: ServiceError) -> Status {
    match e {
        ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
        ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
        ServiceError::PermissionDenied(m) => Status::permission_denied(m),
        ServiceError::NotFound(m) => Status::not_found(m),
        ServiceError::AlreadyExists(m) => Status::already_exists(m),
        ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
        ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
        ServiceError::Unavailable(m) => Status::unavailable(m),
        ServiceError::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            Status::internal("internal error (see the node's log)")
        }
    }
}

/// Maps a peer's status back to a domain error, keeping its one-line reason.
fn from_status(peer: &MemberId, s: Status) -> ServiceError {
    let m = format!("{peer}: {}", s.message());
    match s.code() {
        Code::InvalidArgument | Code::OutOfRange => ServiceError::InvalidArgument(m),
        Code::Unauthenticated => ServiceError::Unauthenticated(m),
        Code::PermissionDenied => ServiceError::PermissionDenied(m),
        Code::NotFound => ServiceError::NotFound(m),
        Code::AlreadyExists => ServiceError::AlreadyExists(m),
        Code::ResourceExhausted => ServiceError::ResourceExhausted(m),
        Code::FailedPrecondition => ServiceError::FailedPrecondition(m),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ServiceError::Unavailable(m)
        }
        _ => ServiceError::Internal(m),
    }
}

fn invalid(e: ParseError) -> Status {
    Status::invalid_argument(e.to_string())
}

// ----- TLS streams -----

/// What the TLS layer learned about a connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The remote address.
    pub remote: Option<SocketAddr>,
    /// The member whose pinned certificate the peer presented (peer API only).
    pub member: Option<MemberId>,
}

/// A server-side TLS connection with what its handshake proved.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task; yields
/// the connections whose handshake succeeded. With `pins`, the peer's
/// certificate is mapped to its member id.
/// Also returns the accept loop's task: it ends, closing the listener, once
/// the stream is dropped.
fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    pins: Option<Arc<dyn PinLookup>>,
) -> (
    tokio_stream::wrappers::ReceiverStream<Result<TlsConn, std::io::Error>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let accepting = tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => break,
            };
            let _ = tcp.set_nodelay(true);
            // Bound the handshakes in progress: each costs a task before anyone is authenticated.
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "too many handshakes in progress; connection dropped");
                continue;
            };
            let (acceptor, tx, pins) = (acceptor.clone(), tx.clone(), pins.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "tls handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "tls handshake timed out");
                        return;
                    }
                };
                let member = pins.as_ref().and_then(|pins| {
                    let cert = tls.get_ref().1.peer_certificates()?.first()?;
                    pins.member_for(&SpkiHash::of_certificate(cert).ok()?)
                });
                let info = ConnInfo {
                    remote: Some(remote),
                    member,
                };
                let _ = tx.send(Ok(TlsConn { inner: tls, info })).await;
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), accepting)
}

/// Opens a lazily connected channel to `addr` over our own TLS client config.
pub fn tls_channel(addr: &str, config: rustls::ClientConfig) -> Result<Channel, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::invalid_argument(format!("bad endpoint {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(PEER_CALL_TIMEOUT)
        .tcp_nodelay(true);
    let connector = TlsConnector::from(Arc::new(config));
    let addr = addr.to_owned();
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
            let (connector, addr) = (connector.clone(), addr.clone());
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::try_from("maillon.node")
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

// ----- peer API: server -----

/// The peer API handlers.
#[derive(Debug, Clone)]
pub struct PeerApi {
    node: Arc<Node>,
}

fn peer_of<T>(req: &Request<T>) -> Result<MemberId, Status> {
    req.extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.member.clone())
        .ok_or_else(|| Status::unauthenticated("peer certificate is not pinned in the roster"))
}

#[tonic::async_trait]
impl Peer for PeerApi {
    #[tracing::instrument(skip_all)]
    async fn fetch_key_package(
        &self,
        req: Request<pb::FetchKeyPackageRequest>,
    ) -> Result<Response<pb::FetchKeyPackageReply>, Status> {
        let peer = peer_of(&req)?;
        let key_package = self.node.key_package_for(&peer).await.map_err(status)?;
        Ok(Response::new(pb::FetchKeyPackageReply { key_package }))
    }

    #[tracing::instrument(skip_all)]
    async fn deliver_welcome(
        &self,
        req: Request<pb::DeliverWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let epoch = self
            .node
            .accept_welcome(&peer, &r.dossier, &r.section, &r.welcome)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn deliver_commit(
        &self,
        req: Request<pb::DeliverCommitRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let epoch = self
            .node
            .accept_commit(&peer, &r.dossier, &r.section, &r.commit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn request_welcome(
        &self,
        req: Request<pb::RequestWelcomeRequest>,
    ) -> Result<Response<pb::DeliverReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let epoch = self
            .node
            .resend_welcome(&peer, &r.dossier, &r.section)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeliverReply { epoch }))
    }

    #[tracing::instrument(skip_all)]
    async fn read_share(
        &self,
        req: Request<pb::SignedReadRequest>,
    ) -> Result<Response<pb::ReadShareReply>, Status> {
        let peer = peer_of(&req)?;
        let r = req.into_inner();
        let signature = Signature::from_bytes(&r.signature)
            .map_err(|_| Status::invalid_argument("signature must be 64 bytes"))?;
        let answer = self
            .node
            .answer_read(
                &peer,
                SignedBytes {
                    bytes: r.request,
                    signature,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReadShareReply {
            sealed: answer.sealed,
            receipt: answer.receipt.bytes,
            receipt_signature: answer.receipt.signature.to_bytes().to_vec(),
        }))
    }
}

// ----- peer API: client (the service's PeerNetwork) -----

/// Calls other members' peer APIs, one pinned channel per member.
pub struct PeerClients {
    me: TlsIdentity,
    channels: Mutex<HashMap<(MemberId, String, SpkiHash), Channel>>,
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients").finish_non_exhaustive()
    }
}

impl PeerClients {
    /// Dials peers presenting `me`'s certificate.
    pub fn new(me: TlsIdentity) -> Self {
        Self {
            me,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, member: &RosterMember) -> Result<PeerClient<Channel>, ServiceError> {
        let key = (
            member.card.id.clone(),
            member.card.endpoint.clone(),
            member.card.tls_spki_sha256,
        );
        let mut channels = match self.channels.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let channel = match channels.get(&key) {
            Some(c) => c.clone(),
            None => {
                let cfg = crate::crypto::peer_client_config(&self.me, member.card.tls_spki_sha256)
                    .map_err(|e: CryptoError| ServiceError::Internal(e.to_string()))?;
                let c = tls_channel(&member.card.endpoint, cfg)
                    .map_err(|s| ServiceError::InvalidArgument(s.message().to_owned()))?;
                channels.insert(key, c.clone());
                c
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE))
    }
}

impl PeerClients {
    /// One call to `member`'s peer API; its status keeps the member's name.
    async fn call<T, Fut>(
        &self,
        member: &RosterMember,
        f: impl FnOnce(PeerClient<Channel>) -> Fut,
    ) -> Result<T, ServiceError>
    where
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let client = self.client(member)?;
        f(client)
            .await
            .map(Response::into_inner)
            .map_err(|s| from_status(&member.card.id, s))
    }
}

impl PeerNetwork for PeerClients {
    fn fetch_key_package<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Vec<u8>, ServiceError>> {
        Box::pin(async move {
            let r = self
                .call(member, |mut c| async move {
                    c.fetch_key_package(pb::FetchKeyPackageRequest {}).await
                })
                .await?;
            Ok(r.key_package)
        })
    }

    fn deliver_welcome<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        welcome: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::DeliverWelcomeRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
                welcome,
            };
            let r = self
                .call(
                    member,
                    |mut c| async move { c.deliver_welcome(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn deliver_commit<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        commit: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::DeliverCommitRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
                commit,
            };
            let r = self
                .call(
                    member,
                    |mut c| async move { c.deliver_commit(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn request_welcome<'a>(
        &'a self,
        owner: &'a RosterMember,
        share: &'a ShareId,
    ) -> BoxFuture<'a, Result<u64, ServiceError>> {
        Box::pin(async move {
            let request = pb::RequestWelcomeRequest {
                dossier: share.dossier.to_string(),
                section: share.section.to_string(),
            };
            let r = self
                .call(
                    owner,
                    |mut c| async move { c.request_welcome(request).await },
                )
                .await?;
            Ok(r.epoch)
        })
    }

    fn read_share<'a>(
        &'a self,
        owner: &'a RosterMember,
        request: SignedBytes,
    ) -> BoxFuture<'a, Result<ReadAnswer, ServiceError>> {
        Box::pin(async move {
            let request = pb::SignedReadRequest {
                request: request.bytes,
                signature: request.signature.to_bytes().to_vec(),
            };
            let r = self
                .call(owner, |mut c| async move { c.read_share(request).await })
                .await?;
            let signature = Signature::from_bytes(&r.receipt_signature).map_err(|_| {
                ServiceError::FailedPrecondition(format!(
                    "{}: receipt signature must be 64 bytes",
                    owner.card.id
                ))
            })?;
            Ok(ReadAnswer {
                sealed: r.sealed,
                receipt: SignedBytes {
                    bytes: r.receipt,
                    signature,
                },
            })
        })
    }
}

// ----- client API -----

/// The client API handlers.
#[derive(Debug, Clone)]
pub struct ClientApi {
    node: Arc<Node>,
}

impl ClientApi {
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
        self.node.authenticate(token).map_err(status)
    }
}

fn consent_to_pb(c: crate::consent::ConsentRecord) -> pb::Consent {
    pb::Consent {
        id: c.consent.id.to_string(),
        dossier: c.consent.dossier.to_string(),
        owner: c.consent.owner.to_string(),
        sections: c.consent.sections.iter().map(|s| s.to_string()).collect(),
        audience: c.consent.audience.iter().map(|m| m.to_string()).collect(),
        purpose: c.consent.purpose,
        until: c.consent.until.to_string(),
        granted_by: c.consent.granted_by.to_string(),
        granted_at: c.consent.granted_at,
        revoked_at: c.revoked_at,
    }
}

fn parse_set<T: std::str::FromStr<Err = ParseError> + Ord>(
    items: &[String],
) -> Result<BTreeSet<T>, Status> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().parse().map_err(invalid))
        .collect()
}

#[tonic::async_trait]
impl Client for ClientApi {
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIReply>, Status> {
        let caller = self.caller(&req)?;
        Ok(Response::new(pb::WhoAmIReply {
            member: self.node.member().to_string(),
            user: caller.name.to_string(),
            role: caller.role.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_user(
        &self,
        req: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::AddUserReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let user = self
            .node
            .create_user(
                &caller,
                r.name.parse().map_err(invalid)?,
                r.role.parse().map_err(invalid)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AddUserReply {
            name: user.name.to_string(),
            role: user.role.to_string(),
            token: user.token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_user(
        &self,
        req: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::RemoveUserReply>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name.parse().map_err(invalid)?;
        self.node
            .remove_user(&caller, &name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveUserReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn open_dossier(
        &self,
        req: Request<pb::OpenDossierRequest>,
    ) -> Result<Response<pb::OpenDossierReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = self
            .node
            .open_dossier(
                &caller,
                &r.given_name,
                &r.family_name,
                r.birth_date.parse().map_err(invalid)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::OpenDossierReply {
            dossier: id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn put_section(
        &self,
        req: Request<pb::PutSectionRequest>,
    ) -> Result<Response<pb::PutSectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        self.node
            .put_section(
                &caller,
                &r.dossier.parse().map_err(invalid)?,
                r.section.parse().map_err(invalid)?,
                &r.json,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutSectionReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_section(
        &self,
        req: Request<pb::GetSectionRequest>,
    ) -> Result<Response<pb::SectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (dossier, section) = (
            r.dossier.parse().map_err(invalid)?,
            r.section.parse().map_err(invalid)?,
        );
        let view = self
            .node
            .get_section(&caller, &dossier, section)
            .map_err(status)?;
        Ok(Response::new(pb::SectionReply {
            dossier: r.dossier,
            section: r.section,
            owner: view.owner.to_string(),
            json: view.json,
            receipt_leaf: view.receipt_leaf,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn grant_consent(
        &self,
        req: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::GrantConsentReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let grant = GrantRequest {
            dossier: r.dossier.parse().map_err(invalid)?,
            sections: parse_set(&r.sections)?,
            audience: parse_set(&r.audience)?,
            purpose: r.purpose,
            until: r.until.parse().map_err(invalid)?,
        };
        let id = self
            .node
            .grant_consent(&caller, grant)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GrantConsentReply {
            consent: id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_consent(
        &self,
        req: Request<pb::RevokeConsentRequest>,
    ) -> Result<Response<pb::RevokeConsentReply>, Status> {
        let caller = self.caller(&req)?;
        let id = req.into_inner().consent.parse().map_err(invalid)?;
        self.node
            .revoke_consent(&caller, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeConsentReply {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_consents(
        &self,
        req: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsReply>, Status> {
        let caller = self.caller(&req)?;
        let dossier = req.into_inner().dossier.parse().map_err(invalid)?;
        let consents = self.node.list_consents(&caller, &dossier).map_err(status)?;
        Ok(Response::new(pb::ListConsentsReply {
            consents: consents.into_iter().map(consent_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn read_share(
        &self,
        req: Request<pb::ReadShareRequest>,
    ) -> Result<Response<pb::SectionReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let owner = r.owner.parse().map_err(invalid)?;
        let (dossier, section) = (
            r.dossier.parse().map_err(invalid)?,
            r.section.parse().map_err(invalid)?,
        );
        let view = self
            .node
            .read_share(&caller, &owner, &dossier, section, &r.purpose)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SectionReply {
            dossier: r.dossier,
            section: r.section,
            owner: view.owner.to_string(),
            json: view.json,
            receipt_leaf: view.receipt_leaf,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_tail(
        &self,
        req: Request<pb::AuditTailRequest>,
    ) -> Result<Response<pb::AuditTailReply>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let page = self
            .node
            .audit_entries(&caller, r.from, r.limit)
            .map_err(status)?;
        Ok(Response::new(pb::AuditTailReply {
            events: page
                .entries
                .into_iter()
                .map(|(index, json)| pb::AuditEvent {
                    index,
                    json: String::from_utf8_lossy(&json).into_owned(),
                })
                .collect(),
            tree_size: page.tree_size,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_checkpoint(
        &self,
        req: Request<pb::AuditCheckpointRequest>,
    ) -> Result<Response<pb::AuditCheckpointReply>, Status> {
        let caller = self.caller(&req)?;
        let (checkpoint, verifier_key) = self.node.audit_checkpoint(&caller).map_err(status)?;
        Ok(Response::new(pb::AuditCheckpointReply {
            checkpoint,
            verifier_key,
        }))
    }
}

// ----- serving -----

/// Runs each call in its own task. A caller that hangs up, or a deadline that
/// passes, drops the response future; without this, the handler would stop at
/// its next `.await`, which could cut a state change in half (an MLS commit
/// saved but not logged nor delivered).
#[derive(Clone, Copy, Debug, Default)]
pub struct DetachLayer;

impl<S> tower::Layer<S> for DetachLayer {
    type Service = Detach<S>;
    fn layer(&self, inner: S) -> Detach<S> {
        Detach(inner)
    }
}

/// The service [`DetachLayer`] makes.
#[derive(Clone, Debug)]
pub struct Detach<S>(S);

impl<S, R> tower::Service<R> for Detach<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let running = tokio::spawn(self.0.call(req));
        Box::pin(async move {
            match running.await {
                Ok(result) => result,
                // A handler panicked: let it unwind as it would have in place.
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    // Cancelled: only at runtime shutdown, when nobody waits.
                    Err(_) => std::future::pending().await,
                },
            }
        })
    }
}

/// Serves both APIs until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    identity: &TlsIdentity,
    pins: Arc<dyn PinLookup>,
    peer_listener: TcpListener,
    client_listener: TcpListener,
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
    let peer = serve_peer_api(
        PeerApi { node: node.clone() },
        identity,
        pins,
        peer_listener,
        stopped(stop_rx.clone()),
    );
    let client = serve_client_api(
        ClientApi { node },
        identity,
        client_listener,
        stopped(stop_rx),
    );
    let (a, b) = tokio::join!(peer, client);
    a.and(b)
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
    let tls = TlsAcceptor::from(Arc::new(crate::crypto::peer_server_config(
        identity,
        pins.clone(),
    )?));
    let svc = PeerServer::new(api)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let (incoming, accepting) = tls_incoming(listener, tls, Some(pins));
    let served = tonic::transport::Server::builder()
        .timeout(PEER_CALL_TIMEOUT)
        .concurrency_limit_per_connection(256)
        .layer(DetachLayer)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "peer API stopped with an error");
    }
    let _ = accepting.await;
    Ok(())
}

async fn serve_client_api(
    api: ClientApi,
    identity: &TlsIdentity,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CryptoError> {
    let tls = TlsAcceptor::from(Arc::new(crate::crypto::client_api_server_config(identity)?));
    let svc = ClientServer::new(api)
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let (incoming, accepting) = tls_incoming(listener, tls, None);
    let served = tonic::transport::Server::builder()
        .timeout(PEER_CALL_TIMEOUT)
        .concurrency_limit_per_connection(256)
        .layer(DetachLayer)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "client API stopped with an error");
    }
    let _ = accepting.await;
    Ok(())
}
