//! The web console's logins and sessions: one-time links an admin gives a
//! user, and the sessions they open. Both live in memory: a restart ends
//! every session and every link not used yet (an admin gives a new one),
//! which only ever takes access away. Each link given and each login, made
//! or refused, is logged first.

use std::collections::HashMap;
use std::sync::PoisonError;

use base64::Engine as _;

use super::users::UserRecord;
use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::crypto::sha256;
use crate::storage::Tree;
use crate::types::{Role, UserName};

/// How long a one-time link works (seconds).
pub const CONSOLE_LINK_SECONDS: i64 = 15 * 60;
/// How long a session lasts without a request (seconds).
pub const SESSION_IDLE_SECONDS: i64 = 30 * 60;
/// How long a session lasts at most (seconds).
pub const SESSION_MAX_SECONDS: i64 = 12 * 3600;
/// Most links waiting, and most sessions open, at once.
const MAX_WAITING: usize = 10_000;

/// A link given and not used yet.
#[derive(Debug, Clone)]
struct Link {
    user: UserName,
    expires_at: i64,
}

/// An open session of the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Who.
    pub user: UserName,
    /// Its role.
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it opened (Unix seconds).
    pub opened_at: i64,
    /// When it was last used (Unix seconds).
    pub last_seen: i64,
    /// The identity at the identity provider it was opened with, if it was:
    /// the session ends when the user's identity changes.
    pub identity: Option<String>,
}

/// The console's links and sessions, by the SHA-256 of their secret.
#[derive(Debug, Default)]
pub(super) struct ConsoleState {
    links: HashMap<[u8; 32], Link>,
    sessions: HashMap<[u8; 32], ConsoleSession>,
}

/// 32 random bytes, URL-safe base64.
fn secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl Node {
    fn console_state(&self) -> std::sync::MutexGuard<'_, ConsoleState> {
        self.console.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `maillon user console-link NAME` (admin): a one-time link for `user`
    /// to log in to the console this node serves, working for
    /// [`CONSOLE_LINK_SECONDS`]; logged before it works. Returns the link
    /// (`https://CONSOLE/connexion/SECRET`) and its end.
    pub async fn issue_console_link(
        &self,
        caller: &Caller,
        user: &UserName,
    ) -> Result<(String, i64)> {
        require(caller, &[Role::Admin])?;
        let Some(console) = self.listening().and_then(|l| l.console) else {
            return Err(ServiceError::State(
                "this node serves no console: set console_listen in node.toml".into(),
            ));
        };
        if self
            .store
            .get::<UserRecord>(Tree::Users, user.as_str())?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!("user {user}")));
        }
        let expires_at = self.clock.now() + CONSOLE_LINK_SECONDS;
        self.audit(AuditEvent::ConsoleLinkIssued {
            user: user.clone(),
            by: caller.name.clone(),
            expires_at,
        })
        .await?;
        let token = secret();
        let mut state = self.console_state();
        let now = self.clock.now();
        state.links.retain(|_, l| l.expires_at > now);
        if state.links.len() >= MAX_WAITING {
            return Err(ServiceError::Busy("too many console links waiting".into()));
        }
        state.links.insert(
            sha256(token.as_bytes()),
            Link {
                user: user.clone(),
                expires_at,
            },
        );
        Ok((format!("https://{console}/connexion/{token}"), expires_at))
    }

    /// The console's login by a one-time link: the link is spent, the login
    /// logged, and a session opened; returns the session's secret and the
    /// session. A link unknown, spent or past its end is refused, and the
    /// refusal logged.
    pub async fn console_login(&self, token: &str) -> Result<(String, ConsoleSession)> {
        let now = self.clock.now();
        let link = self.console_state().links.remove(&sha256(token.as_bytes()));
        let refused = |reason: &str| AuditEvent::ConsoleLoginRefused {
            reason: reason.to_owned(),
        };
        let link = match link {
            Some(l) if l.expires_at > now => l,
            Some(_) => {
                self.audit(refused("link past its end")).await?;
                return Err(ServiceError::Unauthenticated("this link has expired"));
            }
            None => {
                self.audit(refused("link unknown or already used")).await?;
                return Err(ServiceError::Unauthenticated(
                    "this link is unknown or was already used",
                ));
            }
        };
        let Some(record) = self
            .store
            .get::<UserRecord>(Tree::Users, link.user.as_str())?
        else {
            self.audit(refused("user removed")).await?;
            return Err(ServiceError::Unauthenticated("this user no longer exists"));
        };
        self.open_console_session(record, "link", None).await
    }

    /// The console's login through the institution's identity provider,
    /// once the console has checked the provider's signed answer:
    /// `identity` (the configured claim's value) names the user whose
    /// session opens; the login, made or refused, is logged first.
    pub async fn console_login_identity(&self, identity: &str) -> Result<(String, ConsoleSession)> {
        let Some(record) = self.user_by_identity(identity)? else {
            self.audit(AuditEvent::ConsoleLoginRefused {
                reason: "identity provider: no user linked to that identity".into(),
            })
            .await?;
            return Err(ServiceError::Unauthenticated(
                "no user of this node is linked to that identity",
            ));
        };
        let identity = record.identity.clone();
        self.open_console_session(record, "oidc", identity).await
    }

    /// Logs a refused console login (the console's own checks: an identity
    /// provider's answer that did not verify, a login abandoned).
    pub async fn console_login_refused(&self, reason: &str) -> Result<()> {
        self.audit(AuditEvent::ConsoleLoginRefused {
            reason: reason.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Logs `record`'s login by `method`, then opens its session (tied to
    /// `identity` when the provider vouched for it).
    async fn open_console_session(
        &self,
        record: UserRecord,
        method: &str,
        identity: Option<String>,
    ) -> Result<(String, ConsoleSession)> {
        self.audit(AuditEvent::ConsoleLogin {
            user: record.name.clone(),
            method: method.into(),
        })
        .await?;
        let now = self.clock.now();
        let session = ConsoleSession {
            user: record.name,
            role: record.role,
            csrf: secret(),
            opened_at: now,
            last_seen: now,
            identity,
        };
        let id = secret();
        let mut state = self.console_state();
        state.sessions.retain(|_, s| alive(s, now));
        if state.sessions.len() >= MAX_WAITING {
            return Err(ServiceError::Busy("too many console sessions open".into()));
        }
        state
            .sessions
            .insert(sha256(id.as_bytes()), session.clone());
        Ok((id, session))
    }

    /// The session of a console request, if it is open: not idle for more
    /// than [`SESSION_IDLE_SECONDS`], not older than
    /// [`SESSION_MAX_SECONDS`], and its user still there with its role (and
    /// the identity it logged in with, if it came through the provider).
    pub fn console_session(&self, id: &str) -> Option<ConsoleSession> {
        let now = self.clock.now();
        let key = sha256(id.as_bytes());
        let mut state = self.console_state();
        let session = state.sessions.get_mut(&key)?;
        let current = self
            .store
            .get::<UserRecord>(Tree::Users, session.user.as_str())
            .ok()
            .flatten()
            .is_some_and(|u| {
                u.role == session.role
                    && (session.identity.is_none() || u.identity == session.identity)
            });
        if !alive(session, now) || !current {
            state.sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends a console session.
    pub fn console_logout(&self, id: &str) {
        self.console_state().sessions.remove(&sha256(id.as_bytes()));
    }
}

fn alive(s: &ConsoleSession, now: i64) -> bool {
    now - s.last_seen < SESSION_IDLE_SECONDS && now - s.opened_at < SESSION_MAX_SECONDS
}
