//! The web console: French pages served by the node over HTTPS for the
//! partner's staff, rendered on the server from templates compiled in
//! (`node/templates/`), with a stylesheet of its own and no script.
//!
//! Every answer carries a strict Content-Security-Policy (nothing but this
//! origin; no script at all), HSTS, `nosniff` and no referrer. The console
//! uses the same `Node` use cases as the client API; it holds no logic of
//! its own.
//!
//! Login is by a one-time link an admin gives (`maillon user console-link`):
//! its page asks for a click (a POST, so that a link previewer does not
//! spend it), which opens a session in a `__Host-` cookie (Secure,
//! HttpOnly, SameSite=Strict). Every form carries the session's CSRF token,
//! compared in constant time. Failed logins are limited per address.
//!
//! Pages: the caseworker's search, dossier page, unified view (read with
//! a purpose), a form per section (`sections`), consent at the desk with
//! its receipt and withdrawal (`consents`). OpenID Connect, the auditor's
//! and the admin's pages come next.

// A refused request's page is the early return of the handler that made it;
// boxing it would buy nothing on a path that renders a page anyway.
#![allow(clippy::result_large_err)]

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

mod admin;
mod alertes;
mod assemblee;
mod consents;
mod controle;
mod dossiers;
mod journal;
pub mod oidc;
mod recensement;
mod referent;
mod registre;
mod reseau;
mod sections;
mod urgence;

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
    /// Whether staff may log in through the identity provider.
    oidc: bool,
    session: Option<crate::service::ConsoleSession>,
    role: &'a str,
    caseworker: bool,
    auditor: bool,
    volunteer: bool,
}

#[derive(Template)]
#[template(path = "connecte.html")]
struct Connecte<'a> {
    partner: &'a str,
    version: &'a str,
    user: &'a str,
}

#[derive(Template)]
#[template(path = "deconnecte.html")]
struct Deconnecte<'a> {
    partner: &'a str,
    version: &'a str,
    provider: &'a str,
}

#[derive(Template)]
#[template(path = "connexion.html")]
struct Connexion<'a> {
    partner: &'a str,
    version: &'a str,
    token: &'a str,
}

#[derive(Template)]
#[template(path = "ouvrir.html")]
struct Ouvrir<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    prenom: &'a str,
    nom: &'a str,
    naissance: &'a str,
    /// The vigilance alert the dossier is opened from, if any.
    alerte: Option<String>,
    erreurs: Vec<(&'static str, String)>,
}

impl Champs for Ouvrir<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
}

#[derive(Template)]
#[template(path = "dossier_ouvert.html")]
struct DossierOuvert<'a> {
    partner: &'a str,
    version: &'a str,
    dossier: &'a str,
    /// The alert it was opened from: closed (`true`), or not (`false`).
    alerte: Option<(String, bool)>,
}

/// A date as a person at the desk writes it (`12/03/1984`) or as the
/// node does (`1984-03-12`).
fn parse_date(text: &str) -> Option<crate::types::Date> {
    let text = text.trim();
    let iso = match text.split('/').collect::<Vec<_>>()[..] {
        [d, m, y] if d.len() == 2 && m.len() == 2 && y.len() == 4 => format!("{y}-{m}-{d}"),
        _ => text.to_owned(),
    };
    iso.parse().ok()
}

/// A form's page: the error beside each field and what was typed, for its
/// template (`erreur("champ")`, `valeur("champ")`).
trait Champs {
    /// The errors, by field.
    fn erreurs(&self) -> &[(&'static str, String)];

    /// What was typed, by field (none for a form shown empty).
    fn valeurs(&self) -> Option<&std::collections::HashMap<String, String>> {
        None
    }

    /// The error shown beside `field`, if any.
    fn erreur(&self, field: &str) -> Option<&str> {
        self.erreurs()
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }

    /// What was typed in `field`.
    fn valeur(&self, field: &str) -> &str {
        self.valeurs()
            .and_then(|v| v.get(field))
            .map_or("", |v| v.trim())
    }
}

/// The address a request came from.
#[derive(Clone, Copy, Debug)]
struct Remote(std::net::SocketAddr);

/// The session cookie's name (`__Host-`: Secure, this host, path `/`).
pub const SESSION_COOKIE: &str = "__Host-maillon";

/// Failed logins one address may make: a burst, then one every 6 s.
const LOGIN_RATE: crate::limits::Rate = crate::limits::Rate {
    per_second: 1.0 / 6.0,
    burst: 10.0,
};

/// Logins one address may start at the identity provider: a burst, then
/// one every 2 s (each holds a little memory until it comes back or ends).
const LOGIN_START_RATE: crate::limits::Rate = crate::limits::Rate {
    per_second: 0.5,
    burst: 30.0,
};

/// The French name of a role.
fn role_fr(role: crate::types::Role) -> &'static str {
    match role {
        crate::types::Role::Admin => "administration",
        crate::types::Role::Caseworker => "travail social",
        crate::types::Role::Auditor => "contrôle",
        crate::types::Role::Volunteer => "bénévolat",
    }
}

/// The session cookie of a request, if any.
fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

fn redirect_home(cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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
    node: Arc<Node>,
    failed_logins: Arc<crate::limits::RateLimiter>,
    oidc: Option<Arc<oidc::Oidc>>,
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

    /// The active members of the roster in force, (id, display name), this
    /// node among them when `with_self`.
    fn active_members(&self, with_self: bool) -> Vec<(String, String)> {
        self.node
            .roster()
            .roster()
            .members
            .iter()
            .filter(|m| m.status == crate::types::MemberStatus::Active)
            .filter(|m| with_self || &m.card.id != self.node.member())
            .map(|m| (m.card.id.to_string(), m.card.name.clone()))
            .collect()
    }

    /// A dossier's référent as pages name it: the agent and its institution.
    fn referent_fr(&self, referent: Option<crate::service::Referent>) -> Option<String> {
        referent.map(|r| format!("{} ({})", r.user, self.member_name(&r.member)))
    }

    /// A member's display name in the roster in force (its id if unlisted).
    fn member_name(&self, member: &crate::types::MemberId) -> String {
        self.node
            .roster()
            .roster()
            .member(member)
            .map_or_else(|| member.to_string(), |m| m.card.name.clone())
    }

    /// The French page for a failure that is not the caller's doing.
    fn unavailable(&self, e: &crate::service::ServiceError, title: &str) -> Response {
        tracing::warn!(error = %e, "a console action failed");
        let message = if matches!(
            e,
            crate::service::ServiceError::Audit(crate::audit::AuditError::Unavailable)
        ) {
            "Le nœud ne peut pas enregistrer d'action pour le moment (son journal d'audit est indisponible) : prévenez l'équipe informatique."
        } else {
            "Une erreur est survenue : réessayez dans un moment. Si elle revient, prévenez l'équipe informatique."
        };
        self.error(StatusCode::SERVICE_UNAVAILABLE, title, message)
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

async fn accueil(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: axum::http::HeaderMap,
) -> Response {
    let session = session_id(&headers).and_then(|id| c.node.console_session(&id));
    let page = Accueil {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        oidc: c.oidc.is_some(),
        role: session.as_ref().map_or("", |s| role_fr(s.role)),
        caseworker: session
            .as_ref()
            .is_some_and(|s| s.role == crate::types::Role::Caseworker),
        auditor: session
            .as_ref()
            .is_some_and(|s| s.role == crate::types::Role::Auditor),
        volunteer: session
            .as_ref()
            .is_some_and(|s| s.role == crate::types::Role::Volunteer),
        session,
    };
    c.page(StatusCode::OK, page.render())
}

async fn connexion(
    axum::extract::State(c): axum::extract::State<Console>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let page = Connexion {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        token: &token,
    };
    c.page(StatusCode::OK, page.render())
}

impl Console {
    /// The French page that refuses a login from `from` when that address
    /// has failed too many, if it has.
    fn too_many_logins(&self, from: std::net::SocketAddr) -> Option<Response> {
        let key = format!("console-login:{}", from.ip());
        let logins = crate::limits::Limited::ConsoleLogins;
        if self
            .failed_logins
            .peek(&key, logins, LOGIN_RATE, std::time::Instant::now())
        {
            return None;
        }
        Some(self.error(
            StatusCode::TOO_MANY_REQUESTS,
            "Trop de tentatives",
            "Trop de connexions refusées depuis ce poste : réessayez dans quelques minutes.",
        ))
    }

    /// Counts a failed login from `from`.
    fn login_failed(&self, from: std::net::SocketAddr) {
        let key = format!("console-login:{}", from.ip());
        self.failed_logins.take(
            &key,
            crate::limits::Limited::ConsoleLogins,
            LOGIN_RATE,
            std::time::Instant::now(),
        );
    }
}

/// The session cookie that opens session `id`.
fn session_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

async fn se_connecter(
    axum::extract::State(c): axum::extract::State<Console>,
    axum::Extension(Remote(from)): axum::Extension<Remote>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    if let Some(refused) = c.too_many_logins(from) {
        return refused;
    }
    match c.node.console_login(&token).await {
        Ok((id, _)) => redirect_home(Some(session_cookie(&id))),
        Err(crate::service::ServiceError::Unauthenticated(_)) => {
            c.login_failed(from);
            c.error(
                StatusCode::UNAUTHORIZED,
                "Lien de connexion refusé",
                "Ce lien est inconnu, a déjà servi ou a expiré : demandez-en un nouveau à l'administrateur de la console.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "a console login failed");
            c.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Connexion impossible",
                "La console ne peut pas vous connecter pour le moment : réessayez plus tard.",
            )
        }
    }
}

/// `GET /connexion/oidc`: sends the browser to the identity provider, with
/// the login's state in a cookie of its own.
async fn connexion_oidc(
    axum::extract::State(c): axum::extract::State<Console>,
    axum::Extension(Remote(from)): axum::Extension<Remote>,
) -> Response {
    let Some(oidc) = c.oidc.clone() else {
        return introuvable(axum::extract::State(c)).await;
    };
    if let Some(refused) = c.too_many_logins(from) {
        return refused;
    }
    let started = c.failed_logins.take(
        &format!("console-login-start:{}", from.ip()),
        crate::limits::Limited::ConsoleLogins,
        LOGIN_START_RATE,
        std::time::Instant::now(),
    );
    let too_many = || {
        c.error(
            StatusCode::TOO_MANY_REQUESTS,
            "Trop de tentatives",
            "Trop de connexions commencées depuis ce poste : réessayez dans quelques minutes.",
        )
    };
    if !started {
        return too_many();
    }
    match oidc.start().await {
        Ok((to, state)) => {
            let mut response = see_other(&to);
            let cookie = format!(
                "{}={state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600",
                oidc::STATE_COOKIE
            );
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(oidc::OidcError::Busy) => too_many(),
        Err(e) => {
            tracing::warn!(error = %e, "a login through the identity provider could not start");
            c.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Fournisseur d'identité injoignable",
                "Le fournisseur d'identité de votre institution ne répond pas : réessayez dans un moment, ou demandez un lien de connexion à l'administrateur de la console.",
            )
        }
    }
}

/// What the identity provider sends back.
#[derive(serde::Deserialize)]
struct Retour {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The value of cookie `name` in a request, if any.
fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `GET /connexion/oidc/retour`: the identity provider's answer; a login
/// that verifies and names a user of this node opens its session.
async fn retour_oidc(
    axum::extract::State(c): axum::extract::State<Console>,
    axum::Extension(Remote(from)): axum::Extension<Remote>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(retour): axum::extract::Query<Retour>,
) -> Response {
    let Some(oidc) = c.oidc.clone() else {
        return introuvable(axum::extract::State(c)).await;
    };
    if let Some(refused) = c.too_many_logins(from) {
        return refused;
    }
    // `counted`: whether the refusal counts against the address (a login
    // cancelled at the provider does not).
    let refused = |reason: String, counted: bool| {
        let c = c.clone();
        async move {
            if counted {
                c.login_failed(from);
            }
            if let Err(e) = c.node.console_login_refused(&reason).await {
                return c.unavailable(&e, "Connexion impossible");
            }
            c.error(
                StatusCode::UNAUTHORIZED,
                "Connexion refusée",
                "Le fournisseur d'identité n'a pas confirmé votre connexion : recommencez depuis la page d'accueil de la console.",
            )
        }
    };
    let (Some(code), Some(state)) = (retour.code, retour.state) else {
        tracing::info!(
            error = retour.error.as_deref().unwrap_or("none"),
            "the identity provider sent back no code"
        );
        let reason = "identity provider: no code (login abandoned or refused there)";
        return refused(reason.into(), false).await;
    };
    let logged_in = match oidc
        .finish(
            &code,
            &state,
            cookie(&headers, oidc::STATE_COOKIE).as_deref(),
        )
        .await
    {
        Ok(l) => l,
        Err(oidc::OidcError::Refused(reason)) => {
            tracing::info!(reason, "a login through the identity provider was refused");
            return refused(format!("identity provider: {reason}"), true).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "a login through the identity provider failed");
            return c.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Fournisseur d'identité injoignable",
                "Le fournisseur d'identité de votre institution ne répond pas : réessayez dans un moment.",
            );
        }
    };
    match c.node.console_login_identity(&logged_in.identity).await {
        Ok((id, session)) => {
            oidc.remember(&id, logged_in.id_token);
            let page = Connecte {
                partner: &c.partner,
                version: env!("CARGO_PKG_VERSION"),
                user: session.user.as_str(),
            };
            let mut response = c.page(StatusCode::OK, page.render());
            let cleared = format!(
                "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
                oidc::STATE_COOKIE
            );
            for cookie in [session_cookie(&id), cleared] {
                if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            response
        }
        Err(crate::service::ServiceError::Unauthenticated(_)) => {
            c.login_failed(from);
            c.error(
                StatusCode::FORBIDDEN,
                "Compte inconnu",
                "Votre identité est confirmée, mais aucun compte de cette console n'y est lié : demandez à l'administrateur de la console de vous en ouvrir un.",
            )
        }
        Err(e) => c.unavailable(&e, "Connexion impossible"),
    }
}

/// The open session of a request, if any.
fn session_of(
    c: &Console,
    headers: &axum::http::HeaderMap,
) -> Option<crate::service::ConsoleSession> {
    session_id(headers).and_then(|id| c.node.console_session(&id))
}

/// The French page for a page that needs a session.
fn login_required(c: &Console) -> Response {
    c.error(
        StatusCode::UNAUTHORIZED,
        "Connexion requise",
        "Cette page demande d'être connecté : ouvrez le lien de connexion que vous a remis l'administrateur de la console.",
    )
}

/// The French page for a role that may not use a page.
fn refused_role(c: &Console, who: &str) -> Response {
    c.error(
        StatusCode::FORBIDDEN,
        "Accès réservé",
        &format!("Cette page est réservée {who}. Votre rôle ne permet pas d'y accéder."),
    )
}

/// The session and caller of a request by one of `roles`, or the French
/// page that refuses it (`who`: whom the page is for, as the refusal says).
fn session_with(
    c: &Console,
    headers: &axum::http::HeaderMap,
    roles: &[crate::types::Role],
    who: &str,
) -> Result<(crate::service::ConsoleSession, crate::service::Caller), Response> {
    let Some(session) = session_of(c, headers) else {
        return Err(login_required(c));
    };
    if !roles.contains(&session.role) {
        return Err(refused_role(c, who));
    }
    let caller = crate::service::Caller {
        name: session.user.clone(),
        role: session.role,
        token_expires_at: None,
    };
    Ok((session, caller))
}

/// The session and caller of a caseworker's request, or the French page
/// that refuses it.
fn caseworker(
    c: &Console,
    headers: &axum::http::HeaderMap,
) -> Result<(crate::service::ConsoleSession, crate::service::Caller), Response> {
    session_with(
        c,
        headers,
        &[crate::types::Role::Caseworker],
        "aux travailleurs sociaux",
    )
}

/// A redirect after a form (303: the browser asks the page with GET).
fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => redirect_home(None),
    }
}

/// A time as people in France read it.
fn when_fr(t: i64) -> String {
    crate::types::french_time(t).unwrap_or_else(|| t.to_string())
}

/// Why a section of the unified view could not be read, in French.
fn refusal_fr(e: &crate::service::ServiceError) -> String {
    match e.reason().as_str() {
        "no_consent" => "aucun consentement de la personne ne couvre cette lecture".into(),
        "masked" => "la personne a masqué cette partie".into(),
        "section_not_covered" => "le consentement ne couvre pas cette partie".into(),
        "revoked" => "le consentement a été retiré".into(),
        "expired" => "le consentement a expiré".into(),
        "not_yet_valid" => "le consentement n'est pas encore en vigueur".into(),
        "charter" => "la charte du GIP ne permet pas cette lecture".into(),
        "closed" => "le parcours est clos chez ce partenaire".into(),
        "unreachable" => "le partenaire ne répond pas pour le moment".into(),
        "erased" => "le dossier a été effacé chez ce partenaire".into(),
        "rate_limited" => "trop de lectures en peu de temps : réessayez dans un moment".into(),
        "not_found" | "no_such_section" => "cette partie n'existe plus chez ce partenaire".into(),
        other => format!("lecture refusée ({other})"),
    }
}

/// Whether a form carries the session's token (compared in constant time).
fn csrf_ok(
    form: &std::collections::HashMap<String, String>,
    session: &crate::service::ConsoleSession,
) -> bool {
    let sent = form.get("csrf").map(String::as_bytes).unwrap_or_default();
    bool::from(subtle::ConstantTimeEq::ct_eq(sent, session.csrf.as_bytes()))
}

/// The session and caller of a form's request, once `checked` (its
/// session and role) holds and the form carries the session's token; or
/// the French page that refuses it.
fn with_token(
    c: &Console,
    form: &std::collections::HashMap<String, String>,
    checked: Result<(crate::service::ConsoleSession, crate::service::Caller), Response>,
) -> Result<(crate::service::ConsoleSession, crate::service::Caller), Response> {
    let (session, caller) = checked?;
    if !csrf_ok(form, &session) {
        return Err(form_refused(c));
    }
    Ok((session, caller))
}

fn form_refused(c: &Console) -> Response {
    c.error(
        StatusCode::FORBIDDEN,
        "Formulaire refusé",
        "Ce formulaire a expiré ou ne vient pas de cette console : rechargez la page et recommencez.",
    )
}

/// The alert a dossier is opened from, as the form names it.
fn alert_named(q: &std::collections::HashMap<String, String>) -> Option<crate::types::AlertId> {
    q.get("alerte").and_then(|a| a.trim().parse().ok())
}

async fn ouvrir(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(session) = session_of(&c, &headers) else {
        return login_required(&c);
    };
    if session.role != crate::types::Role::Caseworker {
        return refused_role(&c, "aux travailleurs sociaux");
    }
    let page = Ouvrir {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        prenom: "",
        nom: "",
        naissance: "",
        alerte: alert_named(&q).map(|a| a.to_string()),
        erreurs: Vec::new(),
    };
    c.page(StatusCode::OK, page.render())
}

async fn ouvrir_envoye(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: axum::http::HeaderMap,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(session) = session_of(&c, &headers) else {
        return login_required(&c);
    };
    if !csrf_ok(&form, &session) {
        return form_refused(&c);
    }
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let (prenom, nom, naissance) = (field("prenom"), field("nom"), field("naissance"));
    let mut erreurs = Vec::new();
    if prenom.is_empty() {
        erreurs.push(("prenom", "Indiquez le prénom de la personne.".to_owned()));
    }
    if nom.is_empty() {
        erreurs.push((
            "nom",
            "Indiquez le nom de famille de la personne.".to_owned(),
        ));
    }
    let date = parse_date(naissance);
    if date.is_none() {
        erreurs.push((
            "naissance",
            "Indiquez une date de naissance réelle, par exemple 12/03/1984.".to_owned(),
        ));
    }
    let caller = crate::service::Caller {
        name: session.user.clone(),
        role: session.role,
        token_expires_at: None,
    };
    if let (true, Some(date)) = (erreurs.is_empty(), date) {
        match c.node.open_dossier(&caller, prenom, nom, date).await {
            Ok(id) => {
                // Opened from a vigilance alert: the alert is closed, its
                // outcome "dossier opened" (the raiser learns only that it
                // was taken into account).
                let mut alerte = None;
                if let Some(alert) = alert_named(&form) {
                    let closed = c
                        .node
                        .handle_alert(
                            &caller,
                            &alert,
                            crate::types::AlertStatus::Closed,
                            Some(crate::types::AlertOutcome::DossierOpened),
                        )
                        .await;
                    if let Err(e) = &closed {
                        tracing::info!(error = %e, "an alert a dossier was opened from was not closed");
                    }
                    alerte = Some((alert.to_string(), closed.is_ok()));
                }
                let page = DossierOuvert {
                    partner: &c.partner,
                    version: env!("CARGO_PKG_VERSION"),
                    dossier: id.as_str(),
                    alerte,
                };
                return c.page(StatusCode::OK, page.render());
            }
            Err(crate::service::ServiceError::Role { .. }) => {
                return refused_role(&c, "aux travailleurs sociaux");
            }
            Err(crate::service::ServiceError::Invalid(reason)) => {
                tracing::debug!(%reason, "a dossier the console asked for was refused");
                erreurs.push((
                    "nom",
                    "Le prénom ou le nom est trop long ou contient des caractères refusés."
                        .to_owned(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "opening a dossier from the console failed");
                return c.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Dossier non ouvert",
                    "Le dossier n'a pas pu être ouvert : réessayez dans un moment.",
                );
            }
        }
    }
    let page = Ouvrir {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        prenom,
        nom,
        naissance,
        alerte: alert_named(&form).map(|a| a.to_string()),
        erreurs,
    };
    c.page(StatusCode::UNPROCESSABLE_ENTITY, page.render())
}

async fn se_deconnecter(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: axum::http::HeaderMap,
    axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let (Some(id), Some(session)) = (session_id(&headers), session_of(&c, &headers)) else {
        return login_required(&c);
    };
    if !csrf_ok(&form, &session) {
        return form_refused(&c);
    }
    c.node.console_logout(&id);
    let cleared =
        format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Some(oidc) = &c.oidc
        && let Some(at_provider) = oidc.logout_url(&id, &oidc.home())
    {
        // A page that moves on by itself, not a redirect: the form's
        // policy (`form-action 'self'`) would stop a redirect to the provider.
        let page = Deconnecte {
            partner: &c.partner,
            version: env!("CARGO_PKG_VERSION"),
            provider: &at_provider,
        };
        let mut response = c.page(StatusCode::OK, page.render());
        if let Ok(cookie) = HeaderValue::from_str(&cleared) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    redirect_home(Some(cleared))
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

/// The console's routes (`oidc`: the identity provider staff log in
/// through, if any).
fn router(node: Arc<Node>, oidc: Option<Arc<oidc::Oidc>>) -> axum::Router {
    let partner = node
        .roster()
        .roster()
        .member(node.member())
        .map(|m| m.card.name.clone())
        .unwrap_or_else(|| node.member().to_string());
    let state = Console {
        partner: partner.into(),
        node,
        failed_logins: Arc::new(crate::limits::RateLimiter::default()),
        oidc,
    };
    let fallback_state = state.clone();
    axum::Router::new()
        .route("/", get(accueil))
        .route("/connexion/oidc", get(connexion_oidc))
        .route(crate::config::OIDC_RETURN_PATH, get(retour_oidc))
        .route("/connexion/{token}", get(connexion).post(se_connecter))
        .route("/deconnexion", axum::routing::post(se_deconnecter))
        .route("/journal", get(journal::journal))
        .route(
            "/utilisateurs",
            get(admin::utilisateurs).post(admin::ajouter),
        )
        .route("/utilisateurs/lien", axum::routing::post(admin::lien))
        .route(
            "/utilisateurs/modifier",
            get(admin::utilisateur).post(admin::modifier),
        )
        .route("/utilisateurs/jeton", axum::routing::post(admin::jeton))
        .route("/utilisateurs/retrait", axum::routing::post(admin::retirer))
        .route("/sante", get(admin::sante))
        .route("/controle/urgences", get(urgence::urgences))
        .route("/controle/verification", get(controle::verification))
        .route("/controle/releve", get(controle::releve))
        .route(
            "/controle/urgences/{id}",
            axum::routing::post(urgence::controler),
        )
        .route(
            "/dossiers/{id}/referent",
            get(referent::referent).post(referent::referent_envoye),
        )
        .route(
            "/dossiers/{id}/urgence",
            get(urgence::urgence).post(urgence::urgence_envoyee),
        )
        .route("/registre", get(registre::registre))
        .route("/aides", get(reseau::aides))
        .route(
            "/aides/publier",
            get(recensement::publier).post(recensement::publier_envoye),
        )
        .route("/aides/{membre}/{service}", get(reseau::aide))
        .route(
            "/aides/{membre}/{service}/retirer",
            axum::routing::post(recensement::retirer),
        )
        .route("/orientations", get(reseau::orientations))
        .route("/alertes", get(alertes::alertes).post(alertes::signaler))
        .route("/indicateurs", get(assemblee::indicateurs))
        .route("/commissions", get(assemblee::commissions))
        .route("/commissions/{id}", axum::routing::post(assemblee::clore))
        .route(
            "/dossiers/{id}/commission",
            get(assemblee::reunir).post(assemblee::reunir_envoye),
        )
        .route("/alertes/{id}", axum::routing::post(alertes::traiter))
        .route(
            "/orientations/{id}",
            axum::routing::post(reseau::orientation_etape),
        )
        .route(
            "/dossiers/{id}/aides",
            axum::routing::post(reseau::aides_dossier),
        )
        .route(
            "/dossiers/{id}/orienter",
            get(reseau::orienter).post(reseau::orienter_envoye),
        )
        .route(
            "/registre/propositions/{id}/approuver",
            axum::routing::post(registre::approuver),
        )
        .route(
            "/registre/propositions/{id}/rejeter",
            axum::routing::post(registre::rejeter),
        )
        .route(
            "/dossiers",
            get(dossiers::recherche).post(dossiers::recherche_envoyee),
        )
        .route("/dossiers/ouvrir", get(ouvrir).post(ouvrir_envoye))
        .route(
            "/dossiers/rattacher",
            get(dossiers::rattacher).post(dossiers::rattacher_envoye),
        )
        .route("/dossiers/{id}", get(dossiers::fiche))
        .route("/dossiers/{id}/vue", axum::routing::post(dossiers::vue))
        .route(
            "/dossiers/{id}/sections/{section}",
            get(dossiers::section).post(dossiers::section_envoyee),
        )
        .route(
            "/dossiers/{id}/consentements/nouveau",
            get(consents::nouveau),
        )
        .route(
            "/dossiers/{id}/consentements",
            axum::routing::post(consents::enregistrer),
        )
        .route(
            "/dossiers/{id}/consentements/{consent}",
            get(consents::recu),
        )
        .route(
            "/dossiers/{id}/consentements/{consent}/retrait",
            axum::routing::post(consents::retirer),
        )
        .route("/static/maillon.css", get(stylesheet))
        .fallback(move || introuvable(axum::extract::State(fallback_state.clone())))
        .with_state(state)
        .layer(axum::middleware::map_response(secured))
}

/// The console's TLS: the operator's certificate when it gives one, else
/// the client API's (`identity`), which the users' profiles pin.
pub fn tls_config(
    identity: &TlsIdentity,
    operator: Option<&crate::crypto::OperatorCertificate>,
) -> Result<rustls::ServerConfig, CryptoError> {
    if let Some(certificate) = operator {
        return crate::crypto::console_server_config(certificate);
    }
    let mut config = crate::crypto::client_api_server_config(identity)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the console over TLS with `tls` until `stopped` resolves; staff
/// log in through `oidc` when it is given, and by one-time links.
pub async fn serve_console(
    node: Arc<Node>,
    tls: rustls::ServerConfig,
    listener: TcpListener,
    oidc: Option<oidc::Oidc>,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<(), CryptoError> {
    let tls = TlsAcceptor::from(Arc::new(tls));
    let app = router(node, oidc.map(Arc::new));
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
        let (tcp, from) = tokio::select! {
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
            let app = app.layer(axum::Extension(Remote(from)));
            let service = TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    Ok(())
}
