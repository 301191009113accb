//! The census of aids at this node: publishing this member's services
//! (admins; each entry signed by the node, logged before it is kept) and
//! searching the census (every role: it holds no personal data).
//! Replication to the other members comes with the peer protocol's census
//! messages.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::census::{CensusError, Entry, Query, Service, SignedEntry};
use crate::protocol::SignedBytes;
use crate::storage::Tree;
use crate::types::Role;

/// A census entry as the store keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    /// Base64 of the signed bytes.
    entry: String,
    /// The signature over them.
    signature: crate::crypto::Signature,
}

impl From<CensusError> for ServiceError {
    fn from(e: CensusError) -> Self {
        match e {
            CensusError::TooLarge => ServiceError::TooLarge {
                what: "census entry",
                size: crate::census::MAX_ENTRY_BYTES + 1,
                limit: crate::census::MAX_ENTRY_BYTES,
            },
            other => ServiceError::Invalid(other.to_string()),
        }
    }
}

impl Node {
    /// The census entry kept under `key` (`member/service`), if any.
    fn kept_entry(&self, key: &str) -> Result<Option<SignedEntry>> {
        let Some(kept) = self.store.get::<Kept>(Tree::Census, key)? else {
            return Ok(None);
        };
        let bytes = B64
            .decode(&kept.entry)
            .map_err(|_| ServiceError::Internal(format!("census entry {key} is damaged")))?;
        Ok(Some(SignedEntry::stored(SignedBytes {
            bytes,
            signature: kept.signature,
        })?))
    }

    /// Keeps `signed` if it replaces what is kept for its service (not
    /// flushed); `false` if it does not.
    pub(super) fn apply_census_entry(&self, signed: &SignedEntry) -> Result<bool> {
        let key = signed.key();
        if !signed.replaces(self.kept_entry(&key)?.as_ref()) {
            return Ok(false);
        }
        let kept = Kept {
            entry: B64.encode(&signed.signed.bytes),
            signature: signed.signed.signature,
        };
        self.store.put(Tree::Census, &key, &kept)?;
        Ok(true)
    }

    /// `maillon aids publish` (admins): publishes this member's `service`
    /// in the census, or withdraws it, as the next version of its entry,
    /// signed by this node; logged (with the signed entry) before it is kept.
    pub async fn publish_aid(
        &self,
        caller: &Caller,
        service: Service,
        withdrawn: bool,
    ) -> Result<SignedEntry> {
        require(caller, &[Role::Admin])?;
        if let Some(problem) = service.problem() {
            return Err(ServiceError::Invalid(problem));
        }
        let _one_at_a_time = self.census.lock().await;
        let key = format!("{}/{}", self.me, service.id);
        let current = self.kept_entry(&key)?;
        if withdrawn && current.as_ref().is_none_or(|c| c.entry.withdrawn) {
            return Err(ServiceError::NotFound(format!(
                "service {} published by this member",
                service.id
            )));
        }
        let version = current.as_ref().map_or(0, |c| c.entry.version) + 1;
        let now = self.clock.now();
        let signed = SignedEntry::sign(
            Entry {
                member: self.me.clone(),
                version,
                published_at: now,
                withdrawn,
                service,
            },
            &self.key,
        )?;
        let event = AuditEvent::AidPublished {
            service: signed.entry.service.id.clone(),
            version,
            withdrawn,
            by: caller.name.clone(),
            entry: B64.encode(&signed.signed.bytes),
            signature: B64.encode(signed.signed.signature.to_bytes()),
        };
        self.log_then_apply(now, event, "aid_logged", || {
            self.apply_census_entry(&signed).map(drop)
        })
        .await?;
        Ok(signed)
    }

    /// `maillon aids search` (every role): the services in force that answer
    /// `query`, by member and id.
    pub fn search_aids(&self, caller: &Caller, query: &Query) -> Result<Vec<SignedEntry>> {
        require(caller, &[Role::Admin, Role::Caseworker, Role::Auditor])?;
        let mut found = Vec::new();
        for (key, _) in self.store.scan::<Kept>(Tree::Census, "")? {
            if let Some(e) = self.kept_entry(&key)?
                && !e.entry.withdrawn
                && e.entry.service.matches(query)
            {
                found.push(e);
            }
        }
        Ok(found)
    }

    /// Re-applies a publication the log holds and the store lacks (start).
    pub(super) fn replay_aid(&self, entry: &str, signature: &str) -> Result<bool> {
        let damaged = || ServiceError::Internal("a logged census entry is damaged".into());
        let bytes = B64.decode(entry).map_err(|_| damaged())?;
        let signature = B64
            .decode(signature)
            .ok()
            .and_then(|s| crate::crypto::Signature::from_bytes(&s).ok())
            .ok_or_else(damaged)?;
        let signed = SignedEntry::stored(SignedBytes { bytes, signature })?;
        self.apply_census_entry(&signed)
    }
}
