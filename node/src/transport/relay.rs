//! A bare two-hop relay on the nodes' own stack, for the benchmark only: a
//! first hop behind the client API's TLS calls a second behind the peer
//! API's mutual TLS, which answers a payload. Same listeners, limits and
//! per-call tasks as a node; none of a node's work.

use std::sync::Arc;

use maillon_proto::v1 as pb;
use pb::relay_client::RelayClient;
use pb::relay_server::{Relay, RelayServer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::crypto::{CryptoError, SinglePin, SpkiHash, TlsIdentity};

/// Why a relay hop or client could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] CryptoError),
    /// The next hop's address is not one a channel can dial.
    #[error("relay address: {0}")]
    Address(String),
}

/// Largest payload a relay answers.
pub const MAX_RELAY_ANSWER: u32 = 64 * 1024;

/// One hop: the last answers, a first one asks the next.
struct Hop {
    next: Option<RelayClient<Channel>>,
}

#[tonic::async_trait]
impl Relay for Hop {
    async fn forward(
        &self,
        request: Request<pb::RelayRequest>,
    ) -> Result<Response<pb::RelayReply>, Status> {
        let asked = request.into_inner();
        if asked.answer_bytes > MAX_RELAY_ANSWER {
            return Err(Status::out_of_range(format!(
                "a relay answers at most {MAX_RELAY_ANSWER} bytes"
            )));
        }
        match &self.next {
            Some(next) => next.clone().forward(Request::new(asked)).await,
            None => Ok(Response::new(pb::RelayReply {
                payload: vec![b'x'; asked.answer_bytes as usize],
            })),
        }
    }
}

/// Where a first hop sends its calls: the next hop's address and pin.
#[derive(Debug, Clone)]
pub struct NextHop {
    /// `host:port`.
    pub addr: String,
    /// The next hop's certificate, pinned.
    pub pin: SpkiHash,
}

/// Serves one hop on `listener` until the process ends. A first hop (with
/// `next`) is served like the client API and dials the next with its own
/// certificate; the last one (with `client_pin`) is served like the peer
/// API, requiring that certificate.
pub async fn serve_relay_hop(
    listener: TcpListener,
    identity: &TlsIdentity,
    client_pin: Option<SpkiHash>,
    next: Option<NextHop>,
) -> Result<(), RelayError> {
    let next = match next {
        Some(hop) => {
            let config = crate::crypto::peer_client_config(identity, hop.pin)?;
            let channel = super::tls::tls_channel(&hop.addr, config)
                .map_err(|e| RelayError::Address(e.message().to_owned()))?;
            Some(RelayClient::new(channel))
        }
        None => None,
    };
    let (config, pins) = match client_pin {
        Some(pin) => {
            let pins: Arc<dyn crate::crypto::PinLookup> = Arc::new(SinglePin(pin));
            (
                crate::crypto::peer_server_config(identity, pins.clone())?,
                Some(pins),
            )
        }
        None => (crate::crypto::client_api_server_config(identity)?, None),
    };
    let (incoming, accepting) =
        super::tls::tls_incoming(listener, TlsAcceptor::from(Arc::new(config)), pins);
    let served = super::server(None)
        .add_service(RelayServer::new(Hop { next }))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "relay stopped with an error");
    }
    let _ = accepting.await;
    Ok(())
}

/// Calls a first hop over TLS pinned to `pin`: a client of the relay.
pub fn relay_client(addr: &str, pin: SpkiHash) -> Result<RelayClient<Channel>, RelayError> {
    let config = crate::crypto::pinned_client_config(pin)?;
    let channel = super::tls::tls_channel(addr, config)
        .map_err(|e| RelayError::Address(e.message().to_owned()))?;
    Ok(RelayClient::new(channel))
}
