//! TLS terminated by us, not by tonic: the accept loop (handshakes bounded in
//! number, per address and in time), the connection type that carries what
//! the handshake proved, and the pinned client channel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::Status;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::crypto::{PinLookup, SpkiHash};
use crate::types::MemberId;

/// Most TLS handshakes in progress on one listener.
const MAX_HANDSHAKES: usize = 256;
/// Most TLS handshakes in progress from one IP address: a peer that opens
/// connections and sends nothing cannot take every slot.
const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call to a peer may take.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings on idle connections, both ways.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the TLS layer learned about a connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The remote address.
    pub remote: Option<SocketAddr>,
    /// The member whose pinned certificate the peer presented (peer API only).
    pub member: Option<MemberId>,
    /// The SPKI hash of the certificate the peer presented (peer API only):
    /// each call checks it against the roster in force again.
    pub pin: Option<SpkiHash>,
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

/// Handshakes in progress per remote address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One handshake slot of an address, given back on drop.
struct AddressSlot(Arc<PerAddress>, IpAddr);

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_default();
        if *n >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// The stream of connections whose handshake succeeded.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<Result<TlsConn, std::io::Error>>;

/// Accepts TCP connections and runs each TLS handshake in its own task,
/// within [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] at once and
/// [`MAX_HANDSHAKES_PER_ADDRESS`] per address. With `pins`, the peer's
/// certificate is mapped to its member id. Also returns the accept loop's
/// task: it ends, closing the listener, once the stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    pins: Option<Arc<dyn PinLookup>>,
) -> (Incoming, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let per_address = Arc::new(PerAddress::default());
    let local = listener.local_addr().ok();
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
            // Each handshake costs a task before anyone is authenticated.
            let Some(slot) = per_address.take(remote.ip()) else {
                tracing::warn!(%remote, ?local, "too many handshakes in progress from this address; connection dropped");
                continue;
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%remote, ?local, "too many handshakes in progress; connection dropped");
                continue;
            };
            let (acceptor, tx, pins) = (acceptor.clone(), tx.clone(), pins.clone());
            tokio::spawn(async move {
                let _slots = (permit, slot);
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
                let pin = pins.as_ref().and_then(|_| {
                    let cert = tls.get_ref().1.peer_certificates()?.first()?;
                    SpkiHash::of_certificate(cert).ok()
                });
                let member = pins
                    .as_ref()
                    .zip(pin.as_ref())
                    .and_then(|(pins, pin)| pins.member_for(pin));
                let info = ConnInfo {
                    remote: Some(remote),
                    member,
                    pin,
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
        .map_err(|e| {
            super::status(crate::service::ServiceError::Invalid(format!(
                "bad endpoint {addr:?}: {e}"
            )))
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(PEER_CALL_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
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
