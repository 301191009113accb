//! Login through the institution's OpenID Connect identity provider
//! (ProConnect, a Keycloak, an ADFS): the authorization code flow with
//! PKCE (S256), a nonce and a state bound to the browser by a cookie.
//!
//! The provider is found by its discovery document, fetched on the first
//! login and again an hour later, after a failed fetch, and once more when
//! an ID token's signature does not verify against the keys it published
//! (the provider may have rotated them). Its ID token is checked by
//! `openidconnect` (signature against the provider's published keys,
//! issuer, audience, expiry, nonce); the configured claim is read from it,
//! or from the provider's userinfo answer when the token lacks it (as
//! ProConnect's do), and names the node-local user whose session opens. An
//! `email` the provider says it has not verified names nobody. Logging out
//! ends the session here, then at the provider (RP-initiated logout) when
//! its discovery document, as already fetched, offers an end-session
//! endpoint.
//!
//! The provider is reached over HTTPS only, with rustls: the system's
//! authorities, or only those of `oidc.ca_file`. Its answers are bounded
//! in size and time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata,
    RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, OidcConfig};
use crate::crypto::sha256;

/// How long the provider may take to answer one request.
const IDP_DEADLINE: Duration = Duration::from_secs(10);

/// Largest answer read from the provider.
const MAX_IDP_ANSWER: usize = 1 << 20;

/// How long a login started at the provider may take to come back.
const PENDING_FOR: Duration = Duration::from_secs(10 * 60);

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_FOR: Duration = Duration::from_secs(3600);

/// Most logins waiting for the provider at once.
const MAX_PENDING: usize = 10_000;

/// Most sessions whose ID token is kept for logout at the provider.
const MAX_ID_TOKENS: usize = 10_000;

/// The cookie that binds a login to the browser that started it (`Lax`:
/// the provider's redirect back is a top-level navigation from its site).
pub const STATE_COOKIE: &str = "__Host-maillon-oidc";

/// What the discovery document says beyond the core: where to log out.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutMetadata {
    /// The provider's end-session endpoint (RP-initiated logout), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for LogoutMetadata {}

/// The provider's discovery document.
type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client, as discovery makes it: token and userinfo endpoints maybe set.
type Client = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The claims a userinfo answer carries beyond the standard ones (`uid`…).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct OtherClaims(HashMap<String, serde_json::Value>);

impl openidconnect::AdditionalClaims for OtherClaims {}

/// Why a login through the provider failed, in one line for the log (never
/// a token or a claim's value: the provider's answers are not quoted).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered outside the protocol.
    #[error("the identity provider: {0}")]
    Provider(String),
    /// The login's answer did not verify or did not belong to a login here.
    #[error("{0}")]
    Refused(&'static str),
    /// Too many logins wait for the provider: try again in a while.
    #[error("too many logins waiting for the identity provider")]
    Busy,
}

/// A token request's failure, in words that quote nothing the provider sent.
fn token_failure<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &openidconnect::RequestTokenError<RE, T>,
) -> OidcError {
    match e {
        openidconnect::RequestTokenError::ServerResponse(_) => {
            OidcError::Refused("the provider refused the code")
        }
        openidconnect::RequestTokenError::Request(e) => {
            OidcError::Provider(format!("token: {}", chain(e)))
        }
        openidconnect::RequestTokenError::Parse(..) => {
            OidcError::Refused("the provider's token answer did not parse")
        }
        openidconnect::RequestTokenError::Other(_) => {
            OidcError::Provider("token: an unexpected answer".into())
        }
    }
}

/// A login sent to the provider and not back yet.
struct Pending {
    verifier: String,
    nonce: String,
    started: Instant,
}

/// The HTTPS client that talks to the provider.
#[derive(Clone)]
struct Http {
    tls: tokio_rustls::TlsConnector,
}

/// An HTTP failure talking to the provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl Http {
    async fn send(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        tokio::time::timeout(IDP_DEADLINE, self.exchange(request))
            .await
            .map_err(|_| HttpError("no answer in time".into()))?
    }

    async fn exchange(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        let fail = |what: &str| {
            let what = what.to_owned();
            move |e: &dyn std::fmt::Display| HttpError(format!("{what}: {e}"))
        };
        let uri = request.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(HttpError(format!("{uri}: only https:// is used")));
        }
        let (Some(host), Some(authority)) = (uri.host(), uri.authority().cloned()) else {
            return Err(HttpError(format!("{uri}: no host")));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| fail(&format!("connecting to {authority}"))(&e))?;
        let name =
            rustls::pki_types::ServerName::try_from(host).map_err(|e| fail("its name")(&e))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&format!("TLS with {authority}"))(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail("HTTP")(&e))?;
        let driving = tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        parts.uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| fail("its path")(&e))?;
        let host_header =
            http::HeaderValue::from_str(authority.as_str()).map_err(|e| fail("its host")(&e))?;
        parts.headers.insert(http::header::HOST, host_header);
        let request =
            http::Request::from_parts(parts, http_body_util::Full::new(Bytes::from(body)));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail("HTTP")(&e))?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_IDP_ANSWER)
            .collect()
            .await
            .map_err(|e| fail("its answer")(&*e))?
            .to_bytes()
            .to_vec();
        driving.abort();
        Ok(http::Response::from_parts(parts, body))
    }
}

/// The console's side of the identity provider: its configuration, its
/// discovery document, the logins waiting for it, and how to log each
/// session out there.
pub struct Oidc {
    config: OidcConfig,
    secret: ClientSecret,
    http: Http,
    discovered: Mutex<Option<(Metadata, Instant)>>,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    /// Each session's ID token, by the SHA-256 of the session's secret, to
    /// name it at logout (`id_token_hint`).
    id_tokens: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// What the provider said of a login that verified.
pub struct LoggedIn {
    /// The configured claim's value: who the provider says this is.
    pub identity: String,
    /// The ID token, kept to name the session at logout.
    pub id_token: String,
}

impl Oidc {
    /// Reads the client secret (a file only its owner may read) and the
    /// authorities to trust for the provider.
    pub fn new(config: OidcConfig) -> Result<Self, ConfigError> {
        let secret = crate::crypto::read_secret_file(&config.client_secret_file)?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ConfigError::Invalid {
                path: config.client_secret_file.clone(),
                reason: "the client secret is empty".into(),
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            Some(file) => {
                let pem = std::fs::read(file).map_err(|source| ConfigError::Io {
                    path: file.clone(),
                    source,
                })?;
                let invalid = |reason: String| ConfigError::Invalid {
                    path: file.clone(),
                    reason,
                };
                let mut found = 0;
                for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let cert: rustls::pki_types::CertificateDer<'static> =
                        cert.map_err(|e| invalid(e.to_string()))?;
                    roots.add(cert).map_err(|e| invalid(e.to_string()))?;
                    found += 1;
                }
                if found == 0 {
                    return Err(invalid("no certificate in it".into()));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(ConfigError::Invalid {
                        path: "/etc/ssl/certs".into(),
                        reason: "no system certificate authority to check the identity provider with: set oidc.ca_file".into(),
                    });
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Crypto(crate::crypto::CryptoError::Tls(e.to_string())))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            secret: ClientSecret::new(secret.to_owned()),
            config,
            http: Http {
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            },
            discovered: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            id_tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's discovery document as last fetched, if it is fresh.
    fn cached(&self) -> Option<Metadata> {
        let discovered = self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        discovered
            .as_ref()
            .filter(|(_, at)| at.elapsed() < DISCOVERY_FOR)
            .map(|(m, _)| m.clone())
    }

    /// The provider's discovery document (fetched at most once an hour;
    /// no lock is held while it is fetched).
    async fn metadata(&self) -> Result<Metadata, OidcError> {
        if let Some(metadata) = self.cached() {
            return Ok(metadata);
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let http = self.http.clone();
        let client = move |r| {
            let http = http.clone();
            async move { http.send(r).await }
        };
        let metadata = Metadata::discover_async(issuer, &client)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery: {}", chain(&e))))?;
        *self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// Fetches the provider's discovery document (`maillon node check`).
    pub async fn discover(&self) -> Result<(), OidcError> {
        self.forget_discovery();
        self.metadata().await.map(drop)
    }

    /// Drops the discovery document kept: the next login fetches it again.
    fn forget_discovery(&self) {
        *self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Starts a login: the provider's address to send the browser to, and
    /// the state its cookie keeps.
    pub async fn start(&self) -> Result<(String, String), OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING {
            return Err(OidcError::Busy);
        }
        pending.insert(
            sha256(state.secret().as_bytes()),
            Pending {
                verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                started: Instant::now(),
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes a login the provider sent back: `state` must be the one
    /// the browser's cookie keeps (`cookie`) and a login waiting here; the
    /// code is exchanged (with the PKCE verifier) for tokens, whose ID token
    /// must verify; the configured claim is read from it or from userinfo.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        cookie: Option<&str>,
    ) -> Result<LoggedIn, OidcError> {
        let same = cookie.is_some_and(|c| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                c.as_bytes(),
                state.as_bytes(),
            ))
        });
        if !same {
            return Err(OidcError::Refused(
                "the login came back to a browser that did not start it",
            ));
        }
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sha256(state.as_bytes()))
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or(OidcError::Refused("the login is unknown, used or too old"))?;
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let http = self.http.clone();
        let http_client = move |r| {
            let http = http.clone();
            async move { http.send(r).await }
        };
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&http_client)
            .await
            .map_err(|e| token_failure(&e))?;
        let id_token = tokens
            .id_token()
            .ok_or(OidcError::Refused("the provider gave no ID token"))?;
        let nonce = Nonce::new(pending.nonce);
        let signature_failed = matches!(
            id_token.claims(&client.id_token_verifier(), &nonce),
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_))
        );
        let client = if signature_failed {
            // The provider may have rotated its keys: fetch them again, once.
            self.forget_discovery();
            self.client(&self.metadata().await?)?
        } else {
            client
        };
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|_| OidcError::Refused("the ID token did not verify"))?;
        let wanted = self.config.claim.as_str();
        let mut identity = claim_of(&serde_json::to_value(claims).ok(), wanted)?;
        if identity.is_none() {
            let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = client
                .user_info(
                    tokens.access_token().to_owned(),
                    Some(claims.subject().clone()),
                )
                .map_err(|_| OidcError::Provider("it offers no userinfo endpoint".into()))?
                .request_async(&http_client)
                .await
                .map_err(|e| match e {
                    openidconnect::UserInfoError::ClaimsVerification(_)
                    | openidconnect::UserInfoError::Parse(_) => {
                        OidcError::Refused("the userinfo answer did not verify")
                    }
                    openidconnect::UserInfoError::Request(e) => {
                        OidcError::Provider(format!("userinfo: {}", chain(&e)))
                    }
                    openidconnect::UserInfoError::Response(status, ..) => {
                        OidcError::Provider(format!("userinfo: HTTP {status}"))
                    }
                    _ => OidcError::Provider("userinfo: an unexpected answer".into()),
                })?;
            identity = claim_of(&serde_json::to_value(&info).ok(), wanted)?;
        }
        let identity = identity.ok_or(OidcError::Refused(
            "the provider did not give the claim that names users (oidc.claim)",
        ))?;
        Ok(LoggedIn {
            identity,
            id_token: id_token.to_string(),
        })
    }

    /// Keeps the ID token of the session whose secret is `session`.
    pub fn remember(&self, session: &str, id_token: String) {
        let mut kept = self
            .id_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let max_age = Duration::from_secs(
            u64::try_from(crate::service::SESSION_MAX_SECONDS).unwrap_or(u64::MAX),
        );
        kept.retain(|_, (_, at)| at.elapsed() < max_age);
        if kept.len() < MAX_ID_TOKENS {
            kept.insert(sha256(session.as_bytes()), (id_token, Instant::now()));
        }
    }

    /// Where to send the browser of the session whose secret is `session`
    /// after it logs out here: the provider's end-session endpoint, naming
    /// the session's ID token and coming back to `home`; `None` when the
    /// session did not come from the provider, or its document (as fetched
    /// within the hour) names no such endpoint.
    pub fn logout_url(&self, session: &str, home: &str) -> Option<String> {
        let (id_token, _) = self
            .id_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sha256(session.as_bytes()))?;
        // The document as already fetched: logging out never waits on the provider.
        let metadata = self.cached()?;
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let mut url = url::Url::parse(end).ok()?;
        if url.scheme() != "https" {
            return None;
        }
        url.query_pairs_mut()
            .append_pair("id_token_hint", &id_token)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", home);
        Some(url.to_string())
    }

    /// The console's home, as the provider knows it (from the return address).
    pub fn home(&self) -> String {
        url::Url::parse(&self.config.redirect_url)
            .map(|mut u| {
                u.set_path("/");
                u.to_string()
            })
            .unwrap_or_default()
    }

    fn client(&self, metadata: &Metadata) -> Result<Client, OidcError> {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(redirect))
    }
}

/// The string value of claim `name` in `claims`, if it has one; an `email`
/// the provider says it has not verified is refused (a user who may edit
/// their own address at the provider must not take another's account).
fn claim_of(claims: &Option<serde_json::Value>, name: &str) -> Result<Option<String>, OidcError> {
    let Some(claims) = claims.as_ref() else {
        return Ok(None);
    };
    let value = match claims.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Ok(None),
    };
    if name == "email" && claims.get("email_verified") == Some(&serde_json::Value::Bool(false)) {
        return Err(OidcError::Refused(
            "the provider has not verified the email that names users",
        ));
    }
    Ok(Some(value))
}

/// An error and its causes, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{OidcError, claim_of};

    #[test]
    fn an_email_the_provider_has_not_verified_names_nobody() {
        let claims = |v: serde_json::Value| Some(v);
        let found = claim_of(
            &claims(serde_json::json!({"email": "a@b.fr", "email_verified": true})),
            "email",
        );
        assert_eq!(found.ok().flatten().as_deref(), Some("a@b.fr"));
        // ProConnect says nothing of it: its addresses are the institutions'.
        let found = claim_of(&claims(serde_json::json!({"email": "a@b.fr"})), "email");
        assert_eq!(found.ok().flatten().as_deref(), Some("a@b.fr"));
        let refused = claim_of(
            &claims(serde_json::json!({"email": "a@b.fr", "email_verified": false})),
            "email",
        );
        assert!(matches!(refused, Err(OidcError::Refused(_))));
        // Other claims, absent or empty ones.
        let found = claim_of(
            &claims(serde_json::json!({"preferred_username": "jdupont", "email_verified": false})),
            "preferred_username",
        );
        assert_eq!(found.ok().flatten().as_deref(), Some("jdupont"));
        assert!(matches!(
            claim_of(&claims(serde_json::json!({"sub": ""})), "sub"),
            Ok(None)
        ));
        assert!(matches!(claim_of(&None, "sub"), Ok(None)));
    }
}
