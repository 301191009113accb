//! The audit log as auditors and admins read it: pages of entries, bounded in
//! bytes so that every page fits one gRPC message, and signed checkpoints.

use super::{Caller, Node, Result, ServiceError, blocking, require};
use crate::audit::AuditEntry;
use crate::types::{DossierId, Role};

/// Most bytes of entries in one page: well under the 1 MiB message limit,
/// with room for the framing of each entry.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// Shortest time between two checkpoints signed because someone asked.
pub const ON_DEMAND_CHECKPOINT: std::time::Duration = std::time::Duration::from_millis(200);

/// Most entries one page may ask for.
const MAX_PAGE_ENTRIES: u32 = 10_000;

/// A page of audit entries.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// `(leaf index, entry JSON)` pairs, in order, at most [`MAX_PAGE_BYTES`] of JSON.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The log's size when read.
    pub tree_size: u64,
}

/// What an auditor looks for in the log; every given criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries about this dossier.
    pub dossier: Option<DossierId>,
    /// Entries of this kind (one of [`crate::audit::EVENT_KINDS`]).
    pub kind: Option<String>,
    /// Entries recorded at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Entries recorded before this time (Unix seconds).
    pub until: Option<i64>,
}

/// A page of the entries a filter selects, the newest first.
#[derive(Clone, Debug)]
pub struct AuditMatches {
    /// `(leaf index, entry JSON as logged)`, the newest first.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The log's size when read.
    pub tree_size: u64,
    /// Where the next page starts (entries before this index), if the log
    /// holds older entries not yet looked at.
    pub next: Option<u64>,
}

/// Most entries one search page looks at: a filter that selects little
/// answers a page with a `next` rather than reading the whole log.
pub const SEARCH_BUDGET: u64 = 50_000;

/// Entries read at a time while searching, from the newest back.
const SEARCH_CHUNK: usize = 1024;

impl Node {
    /// The entries `filter` selects, the newest first, before `before`
    /// (the log's end when none): at most `limit` (1 to 500), looking at
    /// no more than [`SEARCH_BUDGET`] entries. Auditors and admins.
    pub async fn search_audit(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        before: Option<u64>,
        limit: u32,
    ) -> Result<AuditMatches> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        if !(1..=500).contains(&limit) {
            return Err(ServiceError::Invalid(
                "a search page holds 1 to 500 entries".into(),
            ));
        }
        if let Some(kind) = &filter.kind
            && !crate::audit::EVENT_KINDS.contains(&kind.as_str())
        {
            return Err(ServiceError::Invalid(format!(
                "no event kind is called {kind:?}"
            )));
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(ServiceError::Invalid(
                "the search's start is not before its end".into(),
            ));
        }
        let size = self.audit.size();
        let mut end = before.unwrap_or(size).min(size);
        let floor = end.saturating_sub(SEARCH_BUDGET);
        let audit = self.audit.clone();
        // An entry's kind is its one unescaped `"event":"…"` pair: matched
        // on the bytes, before any decoding.
        let needle = filter
            .kind
            .as_ref()
            .map(|k| format!(r#""event":"{k}""#).into_bytes());
        blocking(move || {
            let mut entries = Vec::new();
            // A page stays within one gRPC message, as `audit tail`'s do.
            let mut bytes_taken = 0usize;
            while end > floor && entries.len() < limit as usize && bytes_taken < MAX_PAGE_BYTES {
                let start = end.saturating_sub(SEARCH_CHUNK as u64).max(floor);
                let chunk = audit.entries_within(start, (end - start) as usize, usize::MAX)?;
                let mut stopped_at = None;
                for (index, bytes) in chunk.into_iter().rev() {
                    if let Some(needle) = &needle
                        && !bytes.windows(needle.len()).any(|w| w == needle.as_slice())
                    {
                        continue;
                    }
                    let entry = AuditEntry::from_bytes(&bytes)?;
                    if selects(&filter, &entry) {
                        if bytes_taken + bytes.len() > MAX_PAGE_BYTES && !entries.is_empty() {
                            // This one opens the next page.
                            stopped_at = Some(index + 1);
                            bytes_taken = MAX_PAGE_BYTES;
                            break;
                        }
                        bytes_taken += bytes.len();
                        entries.push((index, bytes));
                        if entries.len() == limit as usize {
                            stopped_at = Some(index);
                            break;
                        }
                    }
                }
                end = stopped_at.unwrap_or(start);
            }
            Ok::<_, ServiceError>(AuditMatches {
                entries,
                tree_size: size,
                next: (end > 0).then_some(end),
            })
        })
        .await
    }

    /// Audit entries from `from` (or the last `limit`), for auditors and
    /// admins; a page stops early rather than exceed [`MAX_PAGE_BYTES`], and
    /// the caller asks again from where it stopped.
    pub async fn audit_entries(
        &self,
        caller: &Caller,
        from: Option<u64>,
        limit: u32,
    ) -> Result<AuditPage> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        let limit = match limit {
            0 => 50,
            l if l > MAX_PAGE_ENTRIES => {
                return Err(ServiceError::Invalid(format!(
                    "limit is at most {MAX_PAGE_ENTRIES}"
                )));
            }
            l => l as usize,
        };
        let size = self.audit.size();
        let from = from.unwrap_or_else(|| size.saturating_sub(limit as u64));
        let audit = self.audit.clone();
        let entries = blocking(move || audit.entries_within(from, limit, MAX_PAGE_BYTES)).await?;
        Ok(AuditPage {
            entries,
            tree_size: size,
        })
    }

    /// Upkeep: signs and persists a checkpoint of the log as it stands.
    pub async fn sign_checkpoint(&self) -> Result<()> {
        self.checkpoint_note().await.map(drop)
    }

    /// Signs and persists a checkpoint if the log grew since the last one.
    pub async fn checkpoint_if_grown(&self) -> Result<bool> {
        let (audit, key) = (self.audit.clone(), self.key.clone());
        blocking(move || audit.checkpoint_if_grown(&key)).await
    }

    /// Makes sure a checkpoint covers the log as it was when asked, for a
    /// query that wants it so (an auditor's export or report, a peer's
    /// first page): at most one is signed per [`ON_DEMAND_CHECKPOINT`]
    /// whoever asks, so a peer cannot make this node sign (and sync) at
    /// will. Callers queue; one that finds a checkpoint signed since it
    /// asked returns at once, the others wait for the next turn.
    pub async fn checkpoint_on_demand(&self) -> Result<()> {
        let asked = std::time::Instant::now();
        if self.checkpoint_covers_log() {
            return Ok(()); // Nothing to sign: no turn to wait for.
        }
        let mut last = self.on_demand.lock().await;
        if last.is_some_and(|t| t >= asked) {
            return Ok(());
        }
        if let Some(t) = *last {
            let turn = t + ON_DEMAND_CHECKPOINT;
            let now = std::time::Instant::now();
            if turn > now {
                tokio::time::sleep(turn - now).await;
            }
        }
        *last = Some(std::time::Instant::now());
        self.checkpoint_if_grown().await.map(drop)
    }

    /// Whether the last signed checkpoint covers the whole log.
    fn checkpoint_covers_log(&self) -> bool {
        let size = self.audit.size();
        self.audit.latest_checkpoint().is_ok_and(|note| {
            crate::audit::note::Checkpoint::parse_body(&note).is_some_and(|cp| cp.size == size)
        })
    }

    /// Signs and persists a checkpoint on the blocking pool (a write and two
    /// syncs); returns the note.
    async fn checkpoint_note(&self) -> Result<String> {
        let (audit, key) = (self.audit.clone(), self.key.clone());
        blocking(move || audit.checkpoint(&key)).await
    }

    /// Signs a checkpoint of the audit log; returns it with the verifier key.
    pub async fn audit_checkpoint(&self, caller: &Caller) -> Result<(String, String)> {
        require(caller, &[Role::Auditor, Role::Admin])?;
        let note = self.checkpoint_note().await?;
        let vkey = crate::audit::note::verifier_key(self.audit.origin(), &self.key.public());
        Ok((note, vkey))
    }
}

/// Whether `entry` answers the filter's time and dossier (its kind was
/// matched on its bytes).
fn selects(filter: &AuditFilter, entry: &AuditEntry) -> bool {
    filter.since.is_none_or(|t| entry.time >= t)
        && filter.until.is_none_or(|t| entry.time < t)
        && filter
            .dossier
            .as_ref()
            .is_none_or(|d| entry.event.dossier() == Some(d))
}
