//! The metrics listener: plain HTTP/1.1, `GET /metrics` (the OpenMetrics
//! text) and `GET /healthz` (200 while the node serves, 503 once its audit
//! log refuses appends: what the gRPC health service says, for probes that
//! speak HTTP only). Nothing else; no personal data is ever served here.
//! One request per connection; a client that is slow to send its request
//! is cut after 2 s, so that a few idle connections cannot starve probes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::service::Node;

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// How long one connection may last, from accept to close (one request:
/// connections are not kept alive).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client may take to send its request's headers.
const HEADER_DEADLINE: Duration = Duration::from_secs(2);

/// Serves the metrics on `listener` until `stopped` resolves.
pub(super) async fn serve_metrics(
    node: Arc<Node>,
    listener: TcpListener,
    stopped: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = &mut stopped => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&node, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
        });
    }
}

/// The answer to one request.
async fn answer<B>(node: &Node, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let reply = |status: http::StatusCode, content_type: &'static str, body: String| {
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    };
    let text = "text/plain; charset=utf-8";
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            text,
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => match node.metrics_text().await {
            Ok(body) => reply(http::StatusCode::OK, crate::metrics::CONTENT_TYPE, body),
            Err(e) => {
                tracing::warn!(error = %e, "reading the node's state for the metrics failed");
                reply(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "the node's state could not be read; see its log\n".into(),
                )
            }
        },
        "/healthz" => {
            if node.audit_log().accepts_appends() {
                reply(http::StatusCode::OK, text, "serving\n".into())
            } else {
                reply(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "not serving: the audit log refuses appends\n".into(),
                )
            }
        }
        _ => reply(
            http::StatusCode::NOT_FOUND,
            text,
            "not found: /metrics or /healthz\n".into(),
        ),
    }
}
