//! The web console: French pages served by the node over HTTPS for the
//! partner's staff, rendered on the server from templates compiled in
//! (`node/templates/`), with a stylesheet of its own and no script.
//!
//! Every answer carries a strict Content-Security-Policy (nothing but this
//! origin; no script at all), HSTS, `nosniff` and no referrer. The console
//! uses the same `Node` use cases as the client API; it holds no logic of
//! its own. This first part serves the welcome page; the login (a one-time
//! link, then OpenID Connect) and the pages of each use case come next.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::crypto::{CryptoError, TlsIdentity};
use crate::service::Node;

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 256;

/// How long a TLS handshake may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The policy every page is served with: this origin only, no script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, compiled in.
const STYLESHEET: &str = include_str!("maillon.css");

#[derive(Template)]
#[template(path = "accueil.html")]
struct Accueil<'a> {
    partner: &'a str,
    version: &'a str,
}

#[derive(Template)]
#[template(path = "erreur.html")]
struct Erreur<'a> {
    partner: &'a str,
    version: &'a str,
    title: &'a str,
    message: &'a str,
}

/// What every handler reads.
#[derive(Clone)]
struct Console {
    partner: Arc<str>,
}

impl Console {
    fn page(&self, status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
        match rendered {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "a console page could not be rendered");
                (StatusCode::INTERNAL_SERVER_ERROR, "erreur interne").into_response()
            }
        }
    }

    fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        let page = Erreur {
            partner: &self.partner,
            version: env!("CARGO_PKG_VERSION"),
            title,
            message,
        };
        self.page(status, page.render())
    }
}

async fn accueil(axum::extract::State(c): axum::extract::State<Console>) -> Response {
    let page = Accueil {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
    };
    c.page(StatusCode::OK, page.render())
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

async fn introuvable(axum::extract::State(c): axum::extract::State<Console>) -> Response {
    c.error(
        StatusCode::NOT_FOUND,
        "Page introuvable",
        "Cette adresse ne correspond à aucune page de la console.",
    )
}

/// The security headers every answer carries.
async fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The console's routes.
fn router(node: &Node) -> axum::Router {
    let partner = node
        .roster()
        .roster()
        .member(node.member())
        .map(|m| m.card.name.clone())
        .unwrap_or_else(|| node.member().to_string());
    let state = Console {
        partner: partner.into(),
    };
    let fallback_state = state.clone();
    axum::Router::new()
        .route("/", get(accueil))
        .route("/static/maillon.css", get(stylesheet))
        .fallback(move || introuvable(axum::extract::State(fallback_state.clone())))
        .with_state(state)
        .layer(axum::middleware::map_response(secured))
}

/// Serves the console over TLS with `identity` until `stopped` resolves.
pub async fn serve_console(
    node: Arc<Node>,
    identity: &TlsIdentity,
    listener: TcpListener,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<(), CryptoError> {
    let mut config = crate::crypto::client_api_server_config(identity)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = TlsAcceptor::from(Arc::new(config));
    let app = router(&node);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stopped);
    loop {
        let permit = tokio::select! {
            () = &mut stopped => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, _) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(tcp)).await
            else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    Ok(())
}
