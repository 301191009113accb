//! The network's words about a dossier sealed under the dossier's key: an
//! orientation's reason and steps' notes, a commission's agenda and
//! minutes. The signed message goes into the log entry sealed, and the
//! record this node keeps of it is sealed too, so that destroying the
//! dossier's key (erasure, at the person's request or when the retention
//! runs out) makes them unreadable in the log, the store and its old pages
//! alike. What stays in clear is what the log already says of every entry:
//! the dossier's opaque id and the members concerned.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Node, Result, ServiceError};
use crate::crypto::{CryptoError, Signature};
use crate::storage::Tree;
use crate::types::{DossierId, MemberId};

/// A record kept about a dossier, sealed under the dossier's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SealedRecord {
    /// The dossier it is about (its opaque id).
    pub dossier: DossierId,
    /// The member that sent it (the orientation's sender, the convener).
    pub from: MemberId,
    /// The members it went to.
    pub to: Vec<MemberId>,
    /// When it was sent, to list the newest first without opening it.
    pub at: i64,
    /// The record's JSON, sealed, base64.
    pub sealed: String,
}

/// A logged message: sealed, or (entries of an earlier version) the
/// message and its signature in clear.
pub(super) type Logged<'a> = (&'a str, (Option<&'a str>, Option<&'a str>));

fn damaged(what: &str) -> ServiceError {
    ServiceError::Internal(format!("a kept {what} is damaged"))
}

impl Node {
    /// Seals a signed message about `dossier` for a log entry: the
    /// signature then the signed bytes, under the dossier's key (made here
    /// first if this node has none: a member an orientation or a commission
    /// reached without holding the dossier).
    pub(super) fn seal_signed(
        &self,
        dossier: &DossierId,
        slot: &str,
        bytes: &[u8],
        signature: &Signature,
    ) -> Result<String> {
        self.vault.create(dossier.as_str())?;
        let plain = [&signature.to_bytes()[..], bytes].concat();
        Ok(B64.encode(self.vault.seal(dossier.as_str(), slot, &plain)?))
    }

    /// Opens what [`Node::seal_signed`] sealed: the message and its
    /// signature, or `None` when the dossier's key is gone (it was erased:
    /// the entry can no longer be read, which is the point).
    pub(super) fn open_signed<T: DeserializeOwned>(
        &self,
        dossier: &DossierId,
        slot: &str,
        sealed: &str,
    ) -> Result<Option<(T, Signature)>> {
        let bytes = B64.decode(sealed).map_err(|_| damaged("log entry"))?;
        let plain = match self.vault.open_sealed(dossier.as_str(), slot, &bytes) {
            Ok(p) => p,
            Err(CryptoError::NoDossierKey(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (signature, message) = plain
            .split_at_checked(64)
            .ok_or_else(|| damaged("log entry"))?;
        let signature = Signature::from_bytes(signature).map_err(|_| damaged("log entry"))?;
        let value = serde_json::from_slice(message).map_err(|_| damaged("log entry"))?;
        Ok(Some((value, signature)))
    }

    /// Opens a logged message: sealed ([`Node::open_signed`]), or in clear
    /// in an entry of an earlier version (`legacy`: the message and its
    /// signature, base64).
    pub(super) fn open_logged<T: DeserializeOwned>(
        &self,
        dossier: &DossierId,
        slot: &str,
        logged: Logged<'_>,
    ) -> Result<Option<(T, Signature)>> {
        let (sealed, legacy) = logged;
        if !sealed.is_empty() {
            return self.open_signed(dossier, slot, sealed);
        }
        let (Some(message), Some(signature)) = legacy else {
            return Err(damaged("log entry"));
        };
        let bytes = B64.decode(message).map_err(|_| damaged("log entry"))?;
        let signature = B64
            .decode(signature)
            .ok()
            .and_then(|s| Signature::from_bytes(&s).ok())
            .ok_or_else(|| damaged("log entry"))?;
        let value = serde_json::from_slice(&bytes).map_err(|_| damaged("log entry"))?;
        Ok(Some((value, signature)))
    }

    /// Keeps `record` in `tree` under `id`, sealed under `dossier`'s key
    /// (not flushed).
    pub(super) fn keep_sealed<T: Serialize>(
        &self,
        tree: Tree,
        id: &str,
        (dossier, from, to, at): (&DossierId, &MemberId, &[MemberId], i64),
        record: &T,
    ) -> Result<()> {
        self.vault.create(dossier.as_str())?;
        let json = serde_json::to_vec(record).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let kept = SealedRecord {
            dossier: dossier.clone(),
            from: from.clone(),
            to: to.to_vec(),
            at,
            sealed: B64.encode(
                self.vault
                    .seal(dossier.as_str(), &record_slot(tree, id), &json)?,
            ),
        };
        self.store.put(tree, id, &kept)?;
        Ok(())
    }

    /// The record kept in `tree` under `id`, opened; `None` if there is
    /// none, or its dossier's key is gone (erased, its wipe not finished).
    pub(super) fn kept_sealed<T: DeserializeOwned>(
        &self,
        tree: Tree,
        id: &str,
    ) -> Result<Option<T>> {
        match self.store.get::<SealedRecord>(tree, id)? {
            Some(kept) => self.open_kept(tree, id, &kept),
            None => Ok(None),
        }
    }

    /// Every record kept in `tree`, opened, newest first; those whose
    /// dossier's key is gone are left out.
    pub(super) fn all_kept_sealed<T: DeserializeOwned>(&self, tree: Tree) -> Result<Vec<T>> {
        let mut kept = self.store.scan::<SealedRecord>(tree, "")?;
        kept.sort_by_key(|(_, k)| std::cmp::Reverse(k.at));
        let mut out = Vec::with_capacity(kept.len());
        for (id, k) in kept {
            if let Some(record) = self.open_kept(tree, &id, &k)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// The heads of the records kept in `tree` (dossier and members, in clear).
    pub(super) fn kept_heads(&self, tree: Tree) -> Result<Vec<SealedRecord>> {
        Ok(self
            .store
            .scan::<SealedRecord>(tree, "")?
            .into_iter()
            .map(|(_, k)| k)
            .collect())
    }

    /// Seals the orientations and commissions an earlier version kept in
    /// clear (start, before the replay); returns how many.
    pub(super) fn seal_legacy_records(&self) -> Result<usize> {
        let legacy = |value: &serde_json::Value| {
            serde_json::from_value::<SealedRecord>(value.clone()).is_err()
        };
        let mut sealed = 0;
        for (_, value) in self
            .store
            .scan::<serde_json::Value>(Tree::Orientations, "")?
        {
            if legacy(&value) {
                let record: super::OrientationRecord =
                    serde_json::from_value(value).map_err(|_| damaged("orientation"))?;
                self.keep_orientation(&record)?;
                sealed += 1;
            }
        }
        for (_, value) in self
            .store
            .scan::<serde_json::Value>(Tree::Commissions, "")?
        {
            if legacy(&value) {
                let record: super::CommissionRecord =
                    serde_json::from_value(value).map_err(|_| damaged("commission"))?;
                self.keep_commission(&record)?;
                sealed += 1;
            }
        }
        if sealed > 0 {
            tracing::info!(
                records = sealed,
                "orientations and commissions kept in clear by an earlier version sealed"
            );
        }
        Ok(sealed)
    }

    fn open_kept<T: DeserializeOwned>(
        &self,
        tree: Tree,
        id: &str,
        kept: &SealedRecord,
    ) -> Result<Option<T>> {
        let bytes = B64.decode(&kept.sealed).map_err(|_| damaged("record"))?;
        let plain =
            match self
                .vault
                .open_sealed(kept.dossier.as_str(), &record_slot(tree, id), &bytes)
            {
                Ok(p) => p,
                Err(CryptoError::NoDossierKey(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| damaged("record"))
    }
}

/// The slot a kept record is sealed in: its tree and id, so that a record
/// moved under another id or tree does not open.
fn record_slot(tree: Tree, id: &str) -> String {
    format!("{}/{id}", tree.name())
}
