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
//!
//! The same layer counts every call by method and status, with its latency,
//! in the node's metrics, and refuses with `ResourceExhausted` the expensive
//! calls (reads, KeyPackage requests, Welcomes) of a caller over its rate.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::tls::ConnInfo;
use crate::crypto::sha256;
use crate::limits::{Limited, Limits, RateLimiter};
use crate::locks::KeyedLocks;
use crate::metrics::Metrics;
use crate::service::ServiceError;

/// Most calls running at once on one listener.
pub const MAX_CALLS: usize = 1024;
/// Most calls running at once for one caller.
pub const MAX_CALLS_PER_CALLER: usize = 256;

/// The slots of one listener.
#[derive(Debug)]
struct Slots {
    all: Arc<Semaphore>,
    per_caller: KeyedLocks<Semaphore>,
    per_caller_max: usize,
}

/// What a listener counts and limits: its name in the metrics, the metrics,
/// and the rates of its callers.
#[derive(Debug)]
pub struct Watch {
    /// `peer` or `client`.
    pub api: &'static str,
    /// Where calls are counted.
    pub metrics: Arc<Metrics>,
    /// The rates enforced.
    pub limits: Limits,
    /// The callers' buckets.
    pub limiter: RateLimiter,
}

/// The rate limit a call of `path` falls under, if any.
fn limited(path: &str) -> Option<Limited> {
    match path {
        "/maillon.v1.Client/ReadShare"
        | "/maillon.v1.Client/ReadShares"
        | "/maillon.v1.Client/ViewDossier" => Some(Limited::UserReads),
        "/maillon.v1.Peer/ReadShare" => Some(Limited::PeerReads),
        "/maillon.v1.Peer/FetchKeyPackage"
        | "/maillon.v1.Peer/DeliverWelcome"
        | "/maillon.v1.Peer/RequestWelcome" => Some(Limited::PeerMls),
        _ => None,
    }
}

/// The layer that detaches calls; one per listener.
#[derive(Clone, Debug)]
pub struct DetachLayer {
    slots: Arc<Slots>,
    watch: Option<Arc<Watch>>,
}

impl DetachLayer {
    /// Bounds calls to `max` at once on the listener and `per_caller` per caller.
    pub fn new(max: usize, per_caller: usize) -> Self {
        Self {
            slots: Arc::new(Slots {
                all: Arc::new(Semaphore::new(max)),
                per_caller: KeyedLocks::default(),
                per_caller_max: per_caller,
            }),
            watch: None,
        }
    }

    /// The same layer, counting calls and enforcing rates as `watch` says.
    pub fn watched(mut self, watch: Watch) -> Self {
        self.watch = Some(Arc::new(watch));
        self
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
            slots: self.slots.clone(),
            watch: self.watch.clone(),
        }
    }
}

/// The service [`DetachLayer`] makes.
#[derive(Clone, Debug)]
pub struct Detach<S> {
    inner: S,
    slots: Arc<Slots>,
    watch: Option<Arc<Watch>>,
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

impl Slots {
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
        let started = Instant::now();
        let caller = caller_key(&req);
        // A path no listener serves is one series, whatever it is (a
        // caller cannot grow the metrics); the name is static, so counting
        // allocates nothing.
        let method = served_method(req.uri().path());
        let watch = self.watch.clone();
        let refuse = |e: ServiceError| {
            let response = observed(super::status(e).into_http(), watch.clone(), method, started);
            Box::pin(async move { Ok(response) })
        };
        if let Some(w) = &watch
            && let Some(kind) = limited(method)
            && let Some(rate) = w.limits.rate(kind)
            && !w.limiter.take(&caller, kind, rate, started)
        {
            w.metrics.limited(w.api, kind.name());
            tracing::debug!(%caller, limit = kind.name(), "a call refused by its caller's rate limit");
            return refuse(ServiceError::RateLimited(kind.name()));
        }
        let Some(slots) = self.slots.take(&caller) else {
            return refuse(ServiceError::Busy(
                "too many calls in flight; try again shortly".into(),
            ));
        };
        let call = self.inner.call(req);
        let running = tokio::spawn(async move {
            let _slots = slots;
            call.await
        });
        Box::pin(async move {
            match running.await {
                Ok(result) => result
                    .map(too_large_is_exhausted)
                    .map(|r| observed(r, watch, method, started)),
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

/// The name of a gRPC status code, as the metrics label it.
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "ok",
        b"1" => "cancelled",
        b"2" => "unknown",
        b"3" => "invalid_argument",
        b"4" => "deadline_exceeded",
        b"5" => "not_found",
        b"6" => "already_exists",
        b"7" => "permission_denied",
        b"8" => "resource_exhausted",
        b"9" => "failed_precondition",
        b"10" => "aborted",
        b"11" => "out_of_range",
        b"12" => "unimplemented",
        b"13" => "internal",
        b"14" => "unavailable",
        b"15" => "data_loss",
        b"16" => "unauthenticated",
        _ => "unknown",
    }
}

/// `response`, counted in the metrics once its status is known: from its
/// headers when the call failed at once, else from its trailers at the end
/// of its body (a streamed answer is timed to its last message).
fn observed(
    response: http::Response<tonic::body::Body>,
    watch: Option<Arc<Watch>>,
    method: &'static str,
    started: Instant,
) -> http::Response<tonic::body::Body> {
    let Some(watch) = watch else {
        return response;
    };
    let mut pending = Some(Pending {
        watch,
        method,
        started,
    });
    if let Some(code) = response.headers().get("grpc-status") {
        if let Some(p) = pending.take() {
            p.record(code_name(code.as_bytes()));
        }
        return response;
    }
    response.map(|body| tonic::body::Body::new(Observed { body, pending }))
}

/// A call whose status is not known yet.
struct Pending {
    watch: Arc<Watch>,
    method: &'static str,
    started: Instant,
}

/// Every method the node's listeners serve (`/package.Service/Method`),
/// from the descriptor sets of its APIs, health and reflection.
fn served_methods() -> &'static std::collections::HashSet<String> {
    static METHODS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        use prost::Message as _;
        let mut methods = std::collections::HashSet::new();
        for set in [
            maillon_proto::v1::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = service.name.unwrap_or_default();
                    for method in service.method {
                        methods.insert(format!(
                            "/{package}.{name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        methods
    })
}

/// `path` if it is one of the node's methods, else `other`.
fn served_method(path: &str) -> &'static str {
    served_methods().get(path).map_or("other", String::as_str)
}

impl Pending {
    fn record(self, code: &'static str) {
        self.watch
            .metrics
            .call(self.watch.api, self.method, code, self.started.elapsed());
    }
}

/// A response body that records its call when its trailers pass.
struct Observed {
    body: tonic::body::Body,
    pending: Option<Pending>,
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status"))
                    && let Some(p) = self.pending.take()
                {
                    p.record(code_name(code.as_bytes()));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(p) = self.pending.take() {
                    p.record("internal");
                }
            }
            Poll::Ready(None) => {
                if let Some(p) = self.pending.take() {
                    p.record("ok");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // The caller went away before the end.
        if let Some(p) = self.pending.take() {
            p.record("cancelled");
        }
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

    #[tokio::test]
    async fn a_refused_call_on_a_path_nobody_serves_is_counted_as_other() {
        assert!(served_methods().contains("/maillon.v1.Client/ReadShare"));
        assert!(served_methods().contains("/maillon.v1.Peer/GetWitnessed"));
        assert!(served_methods().contains("/grpc.health.v1.Health/Check"));
        assert!(
            served_methods().contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        );
        assert!(!served_methods().contains("/maillon.v1.Client/Nope"));
        let metrics = Arc::new(Metrics::new(
            &crate::metrics::LatencyHistogram::default(),
            "caf12",
        ));
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        // No slot at all: every call is refused before it runs.
        let mut svc = DetachLayer::new(0, 0)
            .watched(Watch {
                api: "peer",
                metrics: metrics.clone(),
                limits: Limits::default(),
                limiter: RateLimiter::default(),
            })
            .layer(inner);
        for i in 0..50 {
            let mut req = from("caf12");
            *req.uri_mut() = format!("/maillon.v1.Peer/Random{i}").parse().expect("uri");
            assert!(busy(&svc.call(req).await.expect("answer")));
        }
        let text = metrics.encode(&crate::metrics::Snapshot::default());
        assert!(!text.contains("Random"), "{text}");
        assert!(
            text.contains(r#"maillon_grpc_calls_total{api="peer",method="other",code="resource_exhausted"} 50"#),
            "{text}"
        );
    }
}
