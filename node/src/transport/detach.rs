//! Every call runs in its own task, within bounds.
//!
//! A caller that hangs up, or a deadline that passes, drops the response
//! future; without a task of its own the handler would stop at its next
//! `.await`, which could cut a state change in half (a consent logged but
//! its group not updated). Detached tasks outlive tonic's own concurrency
//! limit and timeout, so the bound is ours: a call takes a slot of its
//! caller (a member on the peer API, a token on the client API, else an
//! address) and a slot of the listener, both held by the task until it ends.
//! A call that finds no slot is refused at once with `ResourceExhausted`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::tls::ConnInfo;
use crate::crypto::sha256;
use crate::locks::KeyedLocks;
use crate::service::ServiceError;

/// Most calls running at once on one listener.
pub const MAX_CALLS: usize = 1024;
/// Most calls running at once for one caller.
pub const MAX_CALLS_PER_CALLER: usize = 256;

/// The slots of one listener.
#[derive(Debug)]
struct Limits {
    all: Arc<Semaphore>,
    per_caller: KeyedLocks<Semaphore>,
    per_caller_max: usize,
}

/// The layer that detaches calls; one per listener.
#[derive(Clone, Debug)]
pub struct DetachLayer {
    limits: Arc<Limits>,
}

impl DetachLayer {
    /// Bounds calls to `max` at once on the listener and `per_caller` per caller.
    pub fn new(max: usize, per_caller: usize) -> Self {
        Self {
            limits: Arc::new(Limits {
                all: Arc::new(Semaphore::new(max)),
                per_caller: KeyedLocks::default(),
                per_caller_max: per_caller,
            }),
        }
    }
}

impl Default for DetachLayer {
    fn default() -> Self {
        Self::new(MAX_CALLS, MAX_CALLS_PER_CALLER)
    }
}

impl<S> tower::Layer<S> for DetachLayer {
    type Service = Detach<S>;
    fn layer(&self, inner: S) -> Detach<S> {
        Detach {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service [`DetachLayer`] makes.
#[derive(Clone, Debug)]
pub struct Detach<S> {
    inner: S,
    limits: Arc<Limits>,
}

/// Who a call counts against: the member proved at handshake, else the
/// bearer token's hash, else the remote address.
fn caller_key<B>(req: &http::Request<B>) -> String {
    let info = req.extensions().get::<ConnInfo>();
    if let Some(member) = info.and_then(|i| i.member.as_ref()) {
        return format!("member:{member}");
    }
    if let Some(header) = req.headers().get("authorization") {
        // The token, whatever the scheme's case: one token, one count.
        let token = header.to_str().ok().and_then(super::bearer_token);
        let bytes = token.map_or(header.as_bytes(), str::as_bytes);
        return format!("token:{}", hex::encode(&sha256(bytes)[..16]));
    }
    match info.and_then(|i| i.remote) {
        Some(addr) => format!("address:{}", addr.ip()),
        None => "unknown".into(),
    }
}

impl Limits {
    fn take(&self, key: &str) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let all = self.all.clone().try_acquire_owned().ok()?;
        let mine = self
            .per_caller
            .get_or(key, || Semaphore::new(self.per_caller_max))
            .try_acquire_owned()
            .ok()?;
        Some((all, mine))
    }
}

/// tonic answers a request over the decoding limit `OutOfRange`; gRPC's
/// status-code guide (and the clients that back off on it) want
/// `ResourceExhausted`. Only that refusal is changed: `OutOfRange` for a
/// range a caller asked stays.
fn too_large_is_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("decoded%20message%20length%20too%20large")
                    || m.contains("decoded message length too large")
            });
    if too_large {
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

impl<S, B> tower::Service<http::Request<B>> for Detach<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(slots) = self.limits.take(&caller_key(&req)) else {
            let busy = ServiceError::Busy("too many calls in flight; try again shortly".into());
            let response = super::status(busy).into_http();
            return Box::pin(async move { Ok(response) });
        };
        let call = self.inner.call(req);
        let running = tokio::spawn(async move {
            let _slots = slots;
            call.await
        });
        Box::pin(async move {
            match running.await {
                Ok(result) => result.map(too_large_is_exhausted),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, Service};

    fn from(member: &str) -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(ConnInfo {
            remote: None,
            member: Some(member.parse().expect("id")),
            pin: None,
        });
        req
    }

    fn busy(resp: &http::Response<tonic::body::Body>) -> bool {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            == Some("8")
    }

    #[tokio::test]
    async fn a_caller_gets_its_share_of_slots_and_a_call_it_drops_keeps_its_slot_until_done() {
        // Calls wait at a gate that opens for good once it gets one permit.
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (g, s) = (gate.clone(), started.clone());
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                drop(g.acquire().await);
                Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
            }
        });
        let mut svc = DetachLayer::new(3, 2).layer(inner);
        // Two calls from caf12 take its two slots; the caller then hangs up.
        drop(svc.call(from("caf12")));
        drop(svc.call(from("caf12")));
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Its slots stay taken while its calls run, detached.
        let third = svc.call(from("caf12")).await.expect("answer");
        assert!(busy(&third), "caf12 has no slot left");
        // Another member still gets through, up to the listener's bound.
        let other = svc.call(from("cd12"));
        let over = svc.call(from("ccas-rodez")).await.expect("answer");
        assert!(busy(&over), "the listener is full");
        gate.add_permits(1);
        assert!(!busy(&other.await.expect("answer")), "cd12 was served");
        // Once the detached calls finish, caf12 has its slots again.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while busy(&svc.call(from("caf12")).await.expect("answer")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slots come back"
            );
            tokio::task::yield_now().await;
        }
    }
}
