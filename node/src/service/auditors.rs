//! What auditors ask of logs beyond their own node's page of entries: a
//! log's signed manifest and its leaves (for `audit export` and `audit
//! verify`), and a dossier's entries with their inclusion proofs (for the
//! person's access report), from this node or, through it, from a peer.
//!
//! Across members only what the charter allows is answered: only a node's
//! auditors may ask, and a member is shown an entry about a dossier only if
//! it holds that dossier in this node's records (it attached here, or this
//! node attached from it) or is the other party of the entry (the reader,
//! the owner, a recipient). Every other entry travels as its leaf hash
//! alone, so the tree still verifies; the federation's governance entries
//! are shown to every member.

use super::{Caller, Node, Result, ServiceError, blocking, require};
use crate::audit::bundle::{
    BUNDLE_FORMAT, Leaf, MAX_MANIFEST, Manifest, SignedManifest, WitnessedPeer,
};
use crate::audit::note::Checkpoint;
use crate::audit::{AuditEntry, AuditEvent};
use crate::storage::Tree;
use crate::types::{DossierId, MemberId, Role};

/// Most leaves in one page.
pub const MAX_LEAVES_PAGE: u32 = 10_000;

/// Most bytes of entries and proofs in one page of leaves or of a dossier's
/// entries: well under the 1 MiB message limit.
const MAX_PART_BYTES: usize = 512 * 1024;

/// A page of a log's leaves, as the asker may see them.
#[derive(Clone, Debug)]
pub struct LeafPage {
    /// `(index, leaf)`, in order from the index asked.
    pub leaves: Vec<(u64, Leaf)>,
    /// The log's size when read.
    pub tree_size: u64,
}

pub use crate::audit::bundle::{DossierPart, ProvenEntry};

/// The asking node's proof that it holds a dossier: its own entry opening
/// or attaching to it, with a C2SP tlog-proof of that entry in its signed
/// log. A member that holds the dossier shows its part whole to a holder
/// that proves itself so, even one it never dealt with.
#[derive(Clone, Debug)]
pub struct Holding {
    /// The entry's bytes.
    pub entry: Vec<u8>,
    /// Its tlog-proof, as text.
    pub proof: String,
}

/// Proofs of holding kept at most (the cache starts again past it).
const MAX_HOLDINGS_KEPT: usize = 1024;

/// Largest tlog-proof taken as a proof of holding.
const MAX_HOLDING_PROOF: usize = 16 * 1024;

/// What of its part a node shows an asker.
enum Scope {
    /// Every entry about the dossier: the asker holds it.
    All,
    /// Only the entries naming the asker: this node let it in on the
    /// dossier (a read, a consent, a group), without its holding it.
    Naming(MemberId),
}

impl Node {
    /// This node's signed manifest: its latest checkpoint (signed now if
    /// the log grew since the last one), the newest one witnesses cosigned,
    /// what it witnessed of each peer, its alarms, and the roster chain it
    /// adopted.
    async fn manifest(&self) -> Result<SignedManifest> {
        self.checkpoint_on_demand().await?;
        let (checkpoint, cosigned) = self.latest_checkpoint()?;
        let witnessed = self
            .witnessed()?
            .into_iter()
            .map(|(member, w)| WitnessedPeer {
                member,
                checkpoint: w.checkpoint,
                at: w.at,
            })
            .collect();
        let alarms = self.alarms()?;
        let roster_chain = self
            .store
            .scan::<crate::roster::SignedRoster>(Tree::RosterChain, "")?
            .into_iter()
            .map(|(_, link)| link)
            .collect();
        let manifest = Manifest {
            format: BUNDLE_FORMAT.into(),
            member: self.me.clone(),
            exported_at: self.clock.now(),
            checkpoint,
            cosigned,
            witnessed,
            alarms,
            roster_chain,
        };
        let signed = SignedManifest::sign(&manifest, &self.key);
        if signed.manifest.len() > MAX_MANIFEST {
            return Err(ServiceError::State(format!(
                "this node's manifest is {} bytes, past the {MAX_MANIFEST} a message carries",
                signed.manifest.len()
            )));
        }
        Ok(signed)
    }

    /// `audit export` / `audit verify`: the signed manifest of this node's
    /// log, or of `member`'s (asked of it by this node); auditors only.
    pub async fn audit_manifest(
        &self,
        caller: &Caller,
        member: Option<&MemberId>,
    ) -> Result<SignedManifest> {
        require(caller, &[Role::Auditor])?;
        match member.filter(|m| **m != self.me) {
            None => self.manifest().await,
            Some(m) => {
                let peer = self.roster_member(m)?;
                self.network.get_manifest(&peer).await
            }
        }
    }

    /// Peer side: this node's signed manifest, for any active member.
    pub async fn serve_manifest(&self, peer: &MemberId) -> Result<SignedManifest> {
        self.active_peer(peer)?;
        self.manifest().await
    }

    /// `audit export` / `audit verify`: leaves of this node's log (every
    /// entry shown), or of `member`'s as it shows them to this node.
    pub async fn audit_leaves(
        &self,
        caller: &Caller,
        member: Option<&MemberId>,
        from: u64,
        limit: u32,
    ) -> Result<LeafPage> {
        require(caller, &[Role::Auditor])?;
        check_limit(limit)?;
        match member.filter(|m| **m != self.me) {
            None => self.leaves(None, from, limit).await,
            Some(m) => {
                let peer = self.roster_member(m)?;
                self.network.get_leaves(&peer, from, limit).await
            }
        }
    }

    /// Peer side: leaves of this node's log as `peer` may see them.
    pub async fn serve_leaves(&self, peer: &MemberId, from: u64, limit: u32) -> Result<LeafPage> {
        self.active_peer(peer)?;
        check_limit(limit)?;
        self.leaves(Some(peer), from, limit).await
    }

    /// Leaves from `from`, everything shown to this node's own auditors
    /// (`viewer` none) and to a peer what the charter lets it see.
    async fn leaves(&self, viewer: Option<&MemberId>, from: u64, limit: u32) -> Result<LeafPage> {
        let tree_size = self.audit.size();
        let audit = self.audit.clone();
        let raw =
            blocking(move || audit.entries_within(from, limit.max(1) as usize, MAX_PART_BYTES))
                .await?;
        let mut held = std::collections::HashMap::new();
        let mut leaves = Vec::with_capacity(raw.len());
        for (index, bytes) in raw {
            let shown = match viewer {
                None => true,
                Some(v) => match AuditEntry::from_bytes(&bytes) {
                    Ok(e) => self.may_see(v, &e.event, &mut held),
                    Err(_) => false,
                },
            };
            leaves.push((
                index,
                if shown {
                    Leaf::Entry(bytes)
                } else {
                    Leaf::Withheld(crate::audit::merkle::leaf_hash(&bytes))
                },
            ));
        }
        Ok(LeafPage { leaves, tree_size })
    }

    /// Whether `viewer` may see `event` of this node's log in full.
    fn may_see(
        &self,
        viewer: &MemberId,
        event: &AuditEvent,
        held: &mut std::collections::HashMap<DossierId, bool>,
    ) -> bool {
        if event.is_federation_business() || event.names(viewer) {
            return true;
        }
        match event.dossier() {
            Some(d) => *held
                .entry(d.clone())
                .or_insert_with(|| self.holds_by_record(viewer, d)),
            None => false,
        }
    }

    /// Whether this node's record of `dossier` says `member` holds it.
    fn holds_by_record(&self, member: &MemberId, dossier: &DossierId) -> bool {
        self.dossier(dossier).is_ok_and(|r| holds(&r, member))
    }

    /// `audit report`: one page of what `member` (this node when none)
    /// logged of `dossier`, each entry proven against its tree of `size`
    /// leaves (its latest checkpoint, signed now if its log grew, when 0);
    /// the auditor's tools ask every member, page by page. A peer is asked
    /// with this node's proof that it holds the dossier, when it does.
    pub async fn audit_dossier(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        member: Option<&MemberId>,
        from: u64,
        size: u64,
    ) -> Result<DossierPart> {
        require(caller, &[Role::Auditor])?;
        match member.filter(|m| **m != self.me) {
            None => {
                if size == 0 {
                    self.checkpoint_on_demand().await?;
                }
                self.dossier_part(dossier, from, size, Scope::All).await
            }
            Some(m) => {
                let peer = self.roster_member(m)?;
                let holding = self.holding(dossier).await?;
                let within = std::time::Duration::from_secs(10);
                tokio::time::timeout(
                    within,
                    self.network
                        .get_dossier_audit(&peer, dossier, from, size, holding.as_ref()),
                )
                .await
                .map_err(|_| late(&peer))?
            }
        }
    }

    /// This node's proof that it holds `dossier`: its first entry opening
    /// or attaching to it, proven against its latest checkpoint (none when
    /// it holds nothing of it, or the checkpoint does not cover it yet).
    async fn holding(&self, dossier: &DossierId) -> Result<Option<Holding>> {
        let cached = self
            .holdings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dossier)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let found = self.prove_holding(dossier).await?;
        if let Some(h) = &found {
            let mut cache = self.holdings.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_HOLDINGS_KEPT {
                cache.clear();
            }
            cache.insert(dossier.clone(), h.clone());
        }
        Ok(found)
    }

    /// Makes [`Self::holding`]'s proof: a scan of the log.
    async fn prove_holding(&self, dossier: &DossierId) -> Result<Option<Holding>> {
        let (note, _) = self.latest_checkpoint()?;
        let size = Checkpoint::parse_body(&note).map_or(0, |c| c.size);
        let (audit, wanted) = (self.audit.clone(), dossier.clone());
        blocking(move || {
            for item in about(&audit, &wanted, 0, size) {
                let (index, entry, event) = item?;
                if event.holds() == Some(&wanted) {
                    let hashes = audit
                        .inclusion_proofs(&[index], size)?
                        .pop()
                        .unwrap_or_default();
                    let proof = crate::audit::note::TlogProof {
                        extra: None,
                        index,
                        hashes,
                        checkpoint: note,
                    }
                    .encode();
                    return Ok(Some(Holding { entry, proof }));
                }
            }
            Ok::<_, crate::audit::AuditError>(None)
        })
        .await
    }

    /// Whether `h` proves that `peer` holds `dossier`: an entry opening or
    /// attaching to it, in a tree `peer` signed under a key it held.
    fn proves_holding(&self, peer: &MemberId, dossier: &DossierId, h: &Holding) -> bool {
        if h.entry.len() > crate::audit::MAX_EVENT || h.proof.len() > MAX_HOLDING_PROOF {
            return false;
        }
        let (Ok(member), Ok(proof)) = (
            self.roster_member(peer),
            crate::audit::note::TlogProof::parse(&h.proof),
        ) else {
            return false;
        };
        let origin = crate::audit::origin(peer);
        AuditEntry::from_bytes(&h.entry).is_ok_and(|e| e.event.holds() == Some(dossier))
            && self
                .keys_held(&member)
                .iter()
                .any(|k| proof.verify(&h.entry, &origin, k).is_ok())
    }

    /// Peer side: a page of this node's entries about `dossier`, proven.
    /// A peer that holds the dossier (by this node's records, or by a proof
    /// of holding) sees every entry; one this node let in on it without its
    /// holding it (a read, a consent, a group) sees the entries naming it;
    /// any other gets the part of a node holding nothing, so that asking
    /// tells it nothing. Decided before any checkpoint or proof is made.
    pub async fn serve_dossier_audit(
        &self,
        peer: &MemberId,
        dossier: &DossierId,
        from: u64,
        size: u64,
        holding: Option<Holding>,
    ) -> Result<DossierPart> {
        self.active_peer(peer)?;
        let record = self.dossier(dossier).ok();
        let scope = if record.as_ref().is_some_and(|r| holds(r, peer))
            || holding
                .as_ref()
                .is_some_and(|h| self.proves_holding(peer, dossier, h))
        {
            Scope::All
        } else {
            let (latest, _) = self.latest_checkpoint()?;
            let known = Checkpoint::parse_body(&latest)
                .map_or(0, |c| c.size)
                .max(size);
            if !self.granted_to(peer, dossier, known).await? {
                return self.empty_part(size).await;
            }
            Scope::Naming(peer.clone())
        };
        if size == 0 {
            // A first page covers the log as it is now; later pages name
            // the first page's tree.
            self.checkpoint_on_demand().await?;
        }
        self.dossier_part(dossier, from, size, scope).await
    }

    /// The part of a node that holds nothing of `dossier`: its checkpoint,
    /// the one its witnesses cosigned and the consistency between them, no
    /// entry.
    async fn empty_part(&self, size: u64) -> Result<DossierPart> {
        let (checkpoint, cosigned) = self.checkpoint_at((size > 0).then_some(size))?;
        let size = Checkpoint::parse_body(&checkpoint)
            .map(|c| c.size)
            .ok_or_else(|| ServiceError::State("this node's checkpoint does not parse".into()))?;
        let witnessed = Checkpoint::parse_body(&cosigned).map_or(size, |c| c.size.min(size));
        let consistency = if witnessed < size && witnessed > 0 {
            let audit = self.audit.clone();
            blocking(move || audit.consistency_proof(witnessed, size)).await?
        } else {
            Vec::new()
        };
        Ok(DossierPart {
            member: self.me.clone(),
            checkpoint,
            cosigned,
            consistency,
            entries: Vec::new(),
            holders: Vec::new(),
            next: None,
            error: None,
        })
    }

    /// A page of the part against the tree of `size` leaves (the latest
    /// checkpoint when 0, else a recent one this node signed).
    async fn dossier_part(
        &self,
        dossier: &DossierId,
        from: u64,
        size: u64,
        scope: Scope,
    ) -> Result<DossierPart> {
        let (checkpoint, cosigned) = self.checkpoint_at((size > 0).then_some(size))?;
        let size = Checkpoint::parse_body(&checkpoint)
            .map(|c| c.size)
            .ok_or_else(|| ServiceError::State("this node's checkpoint does not parse".into()))?;
        let witnessed = Checkpoint::parse_body(&cosigned).map_or(size, |c| c.size.min(size));
        let (record, only) = match scope {
            Scope::All => (self.dossier(dossier).ok(), None),
            Scope::Naming(m) => (None, Some(m)),
        };
        let (audit, wanted) = (self.audit.clone(), dossier.clone());
        let (entries, next, holders) = blocking(move || {
            let mut found = Vec::new();
            let mut holders = std::collections::BTreeSet::new();
            let mut bytes = 0usize;
            let mut next = None;
            // A proof holds at most this many hashes in a tree of `size`.
            let depth = (u64::BITS - size.leading_zeros()) as usize;
            for item in about(&audit, &wanted, from, size) {
                let (index, raw, event) = item?;
                if only.as_ref().is_some_and(|m| !event.names(m)) {
                    continue;
                }
                if only.is_none() {
                    holders.extend(event.parties().into_iter().cloned());
                }
                bytes += raw.len() + 32 * depth + 16;
                found.push((index, raw));
                if bytes > MAX_PART_BYTES {
                    next = Some(index + 1).filter(|&n| n < size);
                    break;
                }
            }
            let indices: Vec<u64> = found.iter().map(|(i, _)| *i).collect();
            let proofs = if indices.is_empty() {
                Vec::new()
            } else {
                audit.inclusion_proofs(&indices, size)?
            };
            let out = found
                .into_iter()
                .zip(proofs)
                .map(|((index, entry), proof)| ProvenEntry {
                    index,
                    entry,
                    proof,
                })
                .collect::<Vec<_>>();
            Ok::<_, crate::audit::AuditError>((out, next, holders))
        })
        .await?;
        let mut holders: Vec<MemberId> = holders.into_iter().collect();
        if let Some(r) = &record {
            holders.extend(r.partners.iter().cloned());
            holders.extend(r.attached_from.iter().cloned());
        }
        holders.retain(|h| *h != self.me);
        holders.sort();
        holders.dedup();
        let consistency = if witnessed < size && witnessed > 0 {
            let audit = self.audit.clone();
            blocking(move || audit.consistency_proof(witnessed, size)).await?
        } else {
            Vec::new()
        };
        Ok(DossierPart {
            member: self.me.clone(),
            checkpoint,
            cosigned,
            consistency,
            entries,
            holders,
            next,
            error: None,
        })
    }

    /// Whether an entry about `dossier` among the first `size` shows this
    /// node let `member` in on it ([`AuditEvent::grants_to`]).
    async fn granted_to(&self, member: &MemberId, dossier: &DossierId, size: u64) -> Result<bool> {
        let (audit, wanted, member) = (self.audit.clone(), dossier.clone(), member.clone());
        blocking(move || {
            for found in about(&audit, &wanted, 0, size) {
                if found?.2.grants_to(&member) {
                    return Ok(true);
                }
            }
            Ok::<_, crate::audit::AuditError>(false)
        })
        .await
    }
}

/// The entries about `dossier` in `[from, size)`, in order, read in pages:
/// `(index, bytes, event)`. Entries that do not decode are skipped (the
/// node checked its log at start).
fn about<'a>(
    audit: &'a crate::audit::AuditLog,
    dossier: &'a DossierId,
    from: u64,
    size: u64,
) -> impl Iterator<Item = std::result::Result<(u64, Vec<u8>, AuditEvent), crate::audit::AuditError>> + 'a
{
    let mut at = from;
    let mut page = std::collections::VecDeque::new();
    std::iter::from_fn(move || {
        loop {
            if let Some((index, raw)) = page.pop_front() {
                let (index, raw): (u64, Vec<u8>) = (index, raw);
                match AuditEntry::from_bytes(&raw) {
                    Ok(e) if e.event.dossier() == Some(dossier) => {
                        return Some(Ok((index, raw, e.event)));
                    }
                    _ => continue,
                }
            }
            if at >= size {
                return None;
            }
            match audit.entries(at, ((size - at) as usize).min(4096)) {
                Ok(p) if p.is_empty() => return None,
                Ok(p) => {
                    at = p.last().map_or(size, |(i, _)| i + 1);
                    page.extend(p);
                }
                Err(e) => {
                    at = size;
                    return Some(Err(e));
                }
            }
        }
    })
}

/// Whether a dossier's record says `member` holds it (it attached here, or
/// this node attached from it).
fn holds(record: &super::DossierRecord, member: &MemberId) -> bool {
    record.partners.contains(member) || record.attached_from.as_ref() == Some(member)
}

fn late(peer: &crate::roster::RosterMember) -> ServiceError {
    ServiceError::Unreachable {
        peer: peer.card.id.clone(),
        reason: "no answer within 10 s".into(),
    }
}

fn check_limit(limit: u32) -> Result<()> {
    if limit > MAX_LEAVES_PAGE {
        return Err(ServiceError::Invalid(format!(
            "limit is at most {MAX_LEAVES_PAGE}"
        )));
    }
    Ok(())
}
