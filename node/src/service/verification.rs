//! The auditors' checks in the console: every member's log verified (what
//! `maillon audit verify --all` does) and a person's access report (`audit
//! report`), with the library's own checks (`audit::verify`,
//! `audit::report`), the logs and parts asked through this node's use
//! cases as the CLI asks them through the client API. Every key comes from
//! the roster chain this node adopted, verified from its genesis.
//!
//! The CLI remains the independent check: run from an auditor's machine
//! with the genesis the auditor keeps, it trusts no node; this view trusts
//! the auditor's own node to fetch and to verify.

use std::collections::BTreeSet;

use super::{Caller, Node, Result, ServiceError, blocking, require};
use crate::audit::bundle::{Bundle, Leaf, SignedManifest};
use crate::audit::note::Checkpoint;
use crate::audit::report::{self, AccessReport, Fetched};
use crate::audit::verify::{self, Finding, KeyHistory, Outcome};
use crate::roster::VerifiedRoster;
use crate::types::{DossierId, MemberId, Role};

/// Most pages of one member's part asked for.
const MAX_PAGES: usize = 4096;

/// Most bytes of entries and proofs taken of one member's part.
const MAX_PART_BYTES: usize = 64 * 1024 * 1024;

/// Most bytes of leaves held at once by a verification of every log (one
/// runs at a time on a node).
const MAX_VERIFY_BYTES: usize = 256 * 1024 * 1024;

/// This node's manifest and the roster chain in it, verified from the genesis.
struct Own {
    manifest: SignedManifest,
    roster: VerifiedRoster,
    keys: KeyHistory,
}

impl Node {
    /// This node's manifest, and its chain verified from its genesis.
    async fn own_for_audit(&self, caller: &Caller) -> Result<Own> {
        let manifest = self.audit_manifest(caller, None).await?;
        let chain = manifest.unverified()?.roster_chain;
        let (roster, keys) = verify::verify_chain(&self.genesis, &chain)
            .map_err(|e| ServiceError::State(format!("this node's roster chain: {e}")))?;
        Ok(Own {
            manifest,
            roster,
            keys,
        })
    }

    /// Every leaf `manifest`'s checkpoint covers, of this node's log
    /// (`member` none) or a member's, in pages.
    async fn bundle_of(
        &self,
        caller: &Caller,
        member: Option<&MemberId>,
        manifest: SignedManifest,
        held: &mut usize,
    ) -> Result<Bundle> {
        let size = manifest
            .unverified()
            .ok()
            .and_then(|m| Checkpoint::parse_body(&m.checkpoint))
            .map_or(0, |cp| cp.size);
        let mut leaves: Vec<Leaf> = Vec::new();
        while (leaves.len() as u64) < size {
            let from = leaves.len() as u64;
            let limit = (size - from).min(u64::from(super::MAX_LEAVES_PAGE)) as u32;
            let page = self.audit_leaves(caller, member, from, limit).await?;
            if page.leaves.is_empty() {
                return Err(ServiceError::State(
                    "the log is shorter than its checkpoint".into(),
                ));
            }
            for (_, leaf) in page.leaves {
                *held += match &leaf {
                    Leaf::Entry(bytes) => bytes.len(),
                    Leaf::Withheld(_) => 32,
                };
                leaves.push(leaf);
            }
            if *held > MAX_VERIFY_BYTES {
                return Err(ServiceError::Busy(format!(
                    "the logs exceed the {} MiB a verification in the console holds: use maillon audit verify",
                    MAX_VERIFY_BYTES >> 20
                )));
            }
        }
        Ok(Bundle { manifest, leaves })
    }

    /// The console's « vérification des journaux » (auditors): this node's
    /// log and every active member's, asked through this node, verified
    /// together; a log that could not be fetched is a finding.
    pub async fn verify_federation(&self, caller: &Caller) -> Result<Outcome> {
        require(caller, &[Role::Auditor])?;
        let Ok(_one_at_a_time) = self.verifying.try_lock() else {
            return Err(ServiceError::Busy(
                "a verification of every log is already running on this node".into(),
            ));
        };
        let own = self.own_for_audit(caller).await?;
        let peers = self.active_peers_in(&own.roster);
        let mut held = 0;
        let mut bundles = vec![
            self.bundle_of(caller, None, own.manifest, &mut held)
                .await?,
        ];
        let mut unfetched = Vec::new();
        for member in peers {
            let fetched = match self.audit_manifest(caller, Some(&member)).await {
                Ok(manifest) => {
                    self.bundle_of(caller, Some(&member), manifest, &mut held)
                        .await
                }
                Err(e) => Err(e),
            };
            match fetched {
                Ok(bundle) => bundles.push(bundle),
                Err(e) => unfetched.push(Finding {
                    node: member.to_string(),
                    index: None,
                    reason: format!("its log could not be fetched through this node: {e}"),
                }),
            }
        }
        let (genesis, now) = (self.genesis.clone(), self.clock.now());
        let mut outcome = blocking(move || {
            Ok::<_, ServiceError>(verify::verify_bundles(&genesis, &bundles, None, now))
        })
        .await?;
        outcome.findings.extend(unfetched);
        Ok(outcome)
    }

    /// The console's access report (auditors): this node's part of
    /// `dossier` and every active member's, asked through this node,
    /// checked and told in French. A member whose part stops before a leaf
    /// some reader holds a receipt for is asked once more.
    pub async fn access_report(
        &self,
        caller: &Caller,
        dossier: &DossierId,
    ) -> Result<AccessReport> {
        require(caller, &[Role::Auditor])?;
        let Own {
            manifest,
            roster,
            keys,
        } = self.own_for_audit(caller).await?;
        let own_keys = keys.get(&self.me).cloned().unwrap_or_default();
        let witnessed = report::witnessed_sizes(&manifest.open(&self.me, &own_keys)?, &keys);
        let mut members = vec![self.me.clone()];
        members.extend(self.active_peers_in(&roster));
        let mut fetched = Vec::with_capacity(members.len());
        for m in &members {
            fetched.push(self.part_for_report(caller, dossier, m).await);
        }
        let behind: BTreeSet<MemberId> = report::behind_a_receipt(&fetched);
        for owner in behind {
            if let Some(i) = fetched.iter().position(|f| f.member() == &owner) {
                fetched[i] = self.part_for_report(caller, dossier, &owner).await;
            }
        }
        let now = self.clock.now();
        let report = report::assemble(&roster, &keys, dossier, &fetched, &witnessed, now);
        if report.sources.is_empty() && report.anomalies.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "part of dossier {dossier} at any member"
            )));
        }
        Ok(report)
    }

    /// `member`'s part of `dossier`, or why it did not come.
    async fn part_for_report(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        member: &MemberId,
    ) -> Fetched {
        let asked = (member != &self.me).then_some(member);
        let mut tries = 0;
        loop {
            match self.part_once(caller, dossier, asked).await {
                Err(Moved) if tries < 2 => tries += 1,
                Err(Moved) => {
                    return Fetched::Missing {
                        member: member.clone(),
                        why: "its log kept moving while its part was asked".into(),
                    };
                }
                Ok(Ok(part)) => return Fetched::Part(part),
                Ok(Err(e)) => {
                    return Fetched::Missing {
                        member: member.clone(),
                        why: e.to_string(),
                    };
                }
            }
        }
    }

    /// Every page of one part, against one tree; `Moved` when the member no
    /// longer keeps that tree between pages.
    async fn part_once(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        member: Option<&MemberId>,
    ) -> std::result::Result<Result<super::DossierPart>, Moved> {
        let mut part = match self.audit_dossier(caller, dossier, member, 0, 0).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let size = Checkpoint::parse_body(&part.checkpoint).map_or(0, |c| c.size);
        let bad = |member: &MemberId, what: &str| {
            Ok(Err(ServiceError::State(format!("{member}'s part: {what}"))))
        };
        let weight = |entries: &[super::ProvenEntry]| -> usize {
            entries
                .iter()
                .map(|e| e.entry.len() + 32 * e.proof.len())
                .sum()
        };
        let mut bytes = weight(&part.entries);
        let mut pages = 1;
        while let Some(next) = part.next.take() {
            let last = part.entries.last().map_or(0, |e| e.index);
            if next <= last || next >= size || pages >= MAX_PAGES || bytes > MAX_PART_BYTES {
                return bad(
                    &part.member,
                    "its pages do not advance within its tree, or exceed what is taken",
                );
            }
            let more = match self
                .audit_dossier(caller, dossier, member, next, size)
                .await
            {
                Ok(p) => p,
                Err(ServiceError::Invalid(_)) => return Err(Moved),
                Err(e) => return Ok(Err(e)),
            };
            if more.checkpoint != part.checkpoint || more.member != part.member {
                return bad(&part.member, "a page is against another checkpoint");
            }
            if more.entries.first().is_some_and(|e| e.index < next) {
                return bad(&part.member, "a page starts before where it was asked");
            }
            bytes += weight(&more.entries);
            part.entries.extend(more.entries);
            part.holders.extend(more.holders);
            part.next = more.next;
            pages += 1;
        }
        if bytes > MAX_PART_BYTES {
            return bad(&part.member, "it exceeds what is taken");
        }
        Ok(Ok(part))
    }
}

/// A part whose pinned tree is gone: asked again from the first page.
struct Moved;
