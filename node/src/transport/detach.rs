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
    if let Some(token) = req.headers().get("authorization") {
        return format!("token:{}", hex::encode(&sha256(token.as_bytes())[..16]));
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
