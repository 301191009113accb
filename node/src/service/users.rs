//! Node-local users: creation (token shown once, stored hashed, valid for a
//! bounded number of days), token rotation, removal, and the bearer-token
//! check every client call starts with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Node, Result, ServiceError, require};
use crate::audit::{AuditEvent, AuditLog};
use crate::crypto::sha256;
use crate::storage::{Store, Tree};
use crate::types::{Role, UserName};

/// Longest bearer token looked up (ours are 47 bytes).
const MAX_TOKEN: usize = 128;

/// Days a token is valid when its creator names none.
pub const DEFAULT_TOKEN_DAYS: u32 = 365;

/// Most days a token may be valid.
pub const MAX_TOKEN_DAYS: u32 = 5 * 365;

/// When a token made at `now` for `days` (0: the default) stops working.
fn expiry(now: i64, days: u32) -> Result<i64> {
    let days = if days == 0 { DEFAULT_TOKEN_DAYS } else { days };
    if days > MAX_TOKEN_DAYS {
        return Err(ServiceError::Invalid(format!(
            "a token is valid for at most {MAX_TOKEN_DAYS} days"
        )));
    }
    Ok(now + i64::from(days) * 86_400)
}

/// A node-local user, as stored (the token only as a hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The user's name at this node.
    pub name: UserName,
    /// Its one role.
    pub role: Role,
    /// Hex SHA-256 of its bearer token.
    pub token_sha256: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// When its token stops working (Unix seconds); `None` for a user made
    /// before tokens expired, whose token works until it is rotated.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Its identity at the institution's identity provider (the value of
    /// the console's configured claim), if it logs in to the console there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Longest identity at an identity provider a user may be linked to.
pub const MAX_IDENTITY: usize = 256;

/// An authenticated client-API caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user's name.
    pub name: UserName,
    /// The user's role.
    pub role: Role,
    /// When the token it called with stops working (Unix seconds).
    pub token_expires_at: Option<i64>,
}

/// A new user and its token, shown once. Not `Debug`: it holds the token.
#[derive(Clone)]
pub struct NewUser {
    /// The user's name.
    pub name: UserName,
    /// The role it was given.
    pub role: Role,
    /// The bearer token (shown once, stored hashed).
    pub token: String,
    /// When the token stops working (Unix seconds).
    pub expires_at: i64,
}

/// Hashes a bearer token for storage and lookup.
fn token_hash(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

/// A fresh bearer token: `mlt_` and 256 random bits.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("mlt_{}", B64URL.encode(bytes))
}

/// Logs and then stores a new user with a fresh token valid `valid_days`
/// (0: [`DEFAULT_TOKEN_DAYS`]); `by` is `None` when `maillon node init`
/// creates the first admin.
pub async fn create_user(
    store: &Store,
    audit: &AuditLog,
    now: i64,
    by: Option<&Caller>,
    name: UserName,
    role: Role,
    valid_days: u32,
) -> Result<NewUser> {
    let expires_at = expiry(now, valid_days)?;
    if store
        .get::<UserRecord>(Tree::Users, name.as_str())?
        .is_some()
    {
        return Err(ServiceError::Exists("user"));
    }
    let token = new_token();
    let record = UserRecord {
        name: name.clone(),
        role,
        token_sha256: token_hash(&token),
        created_at: now,
        expires_at: Some(expires_at),
        identity: None,
    };
    audit
        .append(
            now,
            AuditEvent::UserCreated {
                user: name.clone(),
                role,
                by: by.map(|c| c.name.clone()),
            },
        )
        .await?;
    store.insert_new(Tree::Users, name.as_str(), &record, "user")?;
    store.put(Tree::Tokens, &record.token_sha256, &name)?;
    let flushing = store.clone();
    super::blocking(move || flushing.flush()).await?;
    Ok(NewUser {
        name,
        role,
        token,
        expires_at,
    })
}

impl Node {
    /// Creates a user (admin only) whose token is valid `valid_days` (0:
    /// the default); the token is returned once.
    pub async fn create_user(
        &self,
        caller: &Caller,
        name: UserName,
        role: Role,
        valid_days: u32,
    ) -> Result<NewUser> {
        require(caller, &[Role::Admin])?;
        let _users = self.users.lock().await;
        let _change = self.changes.read().await;
        create_user(
            &self.store,
            &self.audit,
            self.clock.now(),
            Some(caller),
            name,
            role,
            valid_days,
        )
        .await
    }

    /// Gives a user a new token valid `valid_days` (0: the default; admin
    /// only, an admin's own included): logged with the new token's hash,
    /// then the old token stops working at once. Returned once.
    pub async fn rotate_user_token(
        &self,
        caller: &Caller,
        name: &UserName,
        valid_days: u32,
    ) -> Result<NewUser> {
        require(caller, &[Role::Admin])?;
        let _users = self.users.lock().await;
        let now = self.clock.now();
        let expires_at = expiry(now, valid_days)?;
        let Some(user) = self.store.get::<UserRecord>(Tree::Users, name.as_str())? else {
            return Err(ServiceError::NotFound(format!("user {name}")));
        };
        let token = new_token();
        let token_sha256 = token_hash(&token);
        let rotated = AuditEvent::UserTokenRotated {
            user: name.clone(),
            by: caller.name.clone(),
            token_sha256: token_sha256.clone(),
            expires_at,
        };
        self.log_then_apply(now, rotated, "rotation_logged", || {
            self.apply_token_rotation(name, &token_sha256, expires_at)
                .map(drop)
        })
        .await?;
        Ok(NewUser {
            name: name.clone(),
            role: user.role,
            token,
            expires_at,
        })
    }

    /// Puts a rotated token in force (not flushed): the user's old token
    /// goes, the new hash and expiry come; `false` if there was no such user
    /// or it already holds that token.
    pub(super) fn apply_token_rotation(
        &self,
        name: &UserName,
        token_sha256: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let Some(mut user) = self.store.get::<UserRecord>(Tree::Users, name.as_str())? else {
            return Ok(false);
        };
        if user.token_sha256 == token_sha256 {
            return Ok(false);
        }
        self.store.remove(Tree::Tokens, &user.token_sha256)?;
        user.token_sha256 = token_sha256.to_owned();
        user.expires_at = Some(expires_at);
        self.store.put(Tree::Users, name.as_str(), &user)?;
        self.store.put(Tree::Tokens, token_sha256, name)?;
        Ok(true)
    }

    /// `user update NAME [--role ROLE] [--identity ID | --no-identity]`
    /// (admin only): a new role (never one's own) and the user's identity at
    /// the institution's identity provider (`Some(None)` clears it; one
    /// identity names one user). Everything is checked first, so a refused
    /// update changes nothing; then each change is logged and applied, the
    /// user's console sessions opened under its old role or identity end.
    /// A role or identity given as it already is counts as no change; no
    /// change at all is refused.
    pub async fn update_user(
        &self,
        caller: &Caller,
        name: &UserName,
        role: Option<Role>,
        identity: Option<Option<String>>,
    ) -> Result<()> {
        require(caller, &[Role::Admin])?;
        if let Some(Some(id)) = &identity
            && (id.is_empty()
                || id.len() > MAX_IDENTITY
                || id.trim() != id
                || id.chars().any(char::is_control))
        {
            return Err(ServiceError::Invalid(format!(
                "an identity is 1 to {MAX_IDENTITY} bytes, without spaces around it or control characters"
            )));
        }
        let _users = self.users.lock().await;
        let users = self.store.scan::<UserRecord>(Tree::Users, "")?;
        let Some((_, user)) = users.iter().find(|(_, u)| &u.name == name) else {
            return Err(ServiceError::NotFound(format!("user {name}")));
        };
        let role = role.filter(|r| *r != user.role);
        let identity = identity.filter(|i| *i != user.identity);
        if role.is_some() && &caller.name == name {
            return Err(ServiceError::State(
                "an admin cannot change its own role; another admin can".into(),
            ));
        }
        if let Some(Some(id)) = &identity
            && let Some((_, other)) = users
                .iter()
                .find(|(_, u)| &u.name != name && u.identity.as_ref() == Some(id))
        {
            return Err(ServiceError::State(format!(
                "that identity already logs in {}: clear it there first",
                other.name
            )));
        }
        if role.is_none() && identity.is_none() {
            return Err(ServiceError::State(format!(
                "{name} already has that role and identity: nothing to change"
            )));
        }
        if let Some(role) = role {
            let changed = AuditEvent::UserRoleChanged {
                user: name.clone(),
                role,
                by: caller.name.clone(),
            };
            self.log_then_apply(self.clock.now(), changed, "role_change_logged", || {
                self.apply_user_update(name, Some(role), None).map(drop)
            })
            .await?;
        }
        if let Some(identity) = identity {
            let linked = AuditEvent::UserIdentityLinked {
                user: name.clone(),
                identity: identity.clone(),
                by: caller.name.clone(),
            };
            self.log_then_apply(self.clock.now(), linked, "identity_logged", || {
                self.apply_user_update(name, None, Some(identity.clone()))
                    .map(drop)
            })
            .await?;
        }
        Ok(())
    }

    /// Puts a role or an identity in force (not flushed); `false` if there
    /// was no such user or it already had them.
    pub(super) fn apply_user_update(
        &self,
        name: &UserName,
        role: Option<Role>,
        identity: Option<Option<String>>,
    ) -> Result<bool> {
        let Some(mut user) = self.store.get::<UserRecord>(Tree::Users, name.as_str())? else {
            return Ok(false);
        };
        let before = (user.role, user.identity.clone());
        if let Some(role) = role {
            user.role = role;
        }
        if let Some(identity) = identity {
            user.identity = identity;
        }
        if (user.role, user.identity.clone()) == before {
            return Ok(false);
        }
        self.store.put(Tree::Users, name.as_str(), &user)?;
        Ok(true)
    }

    /// The user an identity at the identity provider logs in, if one does.
    pub fn user_by_identity(&self, identity: &str) -> Result<Option<UserRecord>> {
        Ok(self
            .store
            .scan::<UserRecord>(Tree::Users, "")?
            .into_iter()
            .map(|(_, u)| u)
            .find(|u| {
                u.identity
                    .as_deref()
                    .is_some_and(|i| bool::from(i.as_bytes().ct_eq(identity.as_bytes())))
            }))
    }

    /// `user list`: every user of this node, by name (admins and auditors:
    /// who may act here is theirs to know; tokens only as their expiry).
    pub fn list_users(&self, caller: &Caller) -> Result<Vec<UserRecord>> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        Ok(self
            .store
            .scan::<UserRecord>(Tree::Users, "")?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    /// Removes a user (admin only, never oneself): logged, then its token
    /// stops working at once.
    pub async fn remove_user(&self, caller: &Caller, name: &UserName) -> Result<()> {
        require(caller, &[Role::Admin])?;
        if &caller.name == name {
            return Err(ServiceError::State(
                "an admin cannot remove itself; another admin can".into(),
            ));
        }
        let _users = self.users.lock().await;
        if self
            .store
            .get::<UserRecord>(Tree::Users, name.as_str())?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!("user {name}")));
        }
        let removed = AuditEvent::UserRemoved {
            user: name.clone(),
            by: caller.name.clone(),
        };
        self.log_then_apply(self.clock.now(), removed, "removal_logged", || {
            self.apply_user_removal(name).map(drop)
        })
        .await
    }

    /// Removes a user and its token from the store (not flushed); `false`
    /// if there was no such user.
    pub(super) fn apply_user_removal(&self, name: &UserName) -> Result<bool> {
        let Some(user) = self.store.get::<UserRecord>(Tree::Users, name.as_str())? else {
            return Ok(false);
        };
        self.store.remove(Tree::Tokens, &user.token_sha256)?;
        self.store.remove(Tree::Users, name.as_str())?;
        Ok(true)
    }

    /// The admins whose token ends within `days` (name, end), for the
    /// warning a node logs at start: a node whose every admin token expired
    /// has no way back in.
    pub fn admin_tokens_ending_within(&self, days: i64) -> Result<Vec<(UserName, i64)>> {
        let horizon = self.clock.now() + days * 86_400;
        Ok(self
            .store
            .scan::<UserRecord>(Tree::Users, "")?
            .into_iter()
            .filter_map(|(_, u)| match (u.role, u.expires_at) {
                (Role::Admin, Some(end)) if end <= horizon => Some((u.name, end)),
                _ => None,
            })
            .collect())
    }

    /// Resolves a bearer token to its user.
    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        let denied = || ServiceError::Unauthenticated("unknown or revoked token");
        if token.len() > MAX_TOKEN {
            return Err(denied());
        }
        let hash = token_hash(token);
        let name: UserName = self.store.get(Tree::Tokens, &hash)?.ok_or_else(denied)?;
        let user: UserRecord = self
            .store
            .get(Tree::Users, name.as_str())?
            .ok_or_else(denied)?;
        if !bool::from(user.token_sha256.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(denied());
        }
        if user.expires_at.is_some_and(|t| self.clock.now() >= t) {
            return Err(ServiceError::Unauthenticated(
                "expired token: an admin gives a new one with `maillon user rotate`",
            ));
        }
        Ok(Caller {
            name: user.name,
            role: user.role,
            token_expires_at: user.expires_at,
        })
    }
}
