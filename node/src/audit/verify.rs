//! `maillon audit verify`, online or offline: the same checks over a set of
//! exported logs ([`Bundle`]s), whether fetched from nodes a moment ago or
//! read from files. Nothing here trusts any one node: every key comes from
//! the roster chain verified from the genesis the auditor holds.
//!
//! Per log: the roster chain, the manifest's signature, the checkpoint's
//! signature, every cosignature, every leaf against the root, the cosigned
//! checkpoint as a prefix of the log, and the log against what this auditor
//! verified of it before. Across logs: what each node witnessed of the
//! others, their alarms, every granted read against a consent active at
//! that moment or a break-glass, every receipt a reader logged against the
//! owner's leaf (by inclusion proof against the owner's checkpoint), and
//! every break-glass reviewed or listed as pending.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::audit::bundle::{Bundle, Leaf, Manifest};
use crate::audit::merkle::{self, Hash};
use crate::audit::note::{self, Checkpoint};
use crate::audit::{AuditEntry, AuditEvent, origin, verify_leaves};
use crate::crypto::PublicKey;
use crate::protocol::{Receipt, SignedBytes};
use crate::roster::{SignedRoster, VerifiedRoster};
use crate::types::{ConsentId, DossierId, GrantId, MemberId, Section};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A checkpoint an auditor verified, remembered for the next run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    /// Its tree size.
    pub size: u64,
    /// Its root, hex.
    pub root: String,
    /// The signed note.
    pub checkpoint: String,
    /// When it was verified (Unix seconds).
    pub verified_at: i64,
}

/// What an auditor's tools remember between runs: the last checkpoint
/// verified of each node, so that a node that rewrote or cut its log (and
/// signed a fresh checkpoint of the new one) is caught on the next run; and
/// the leaf hashes verified of each node, in files of a folder beside the
/// state (`<state>.leaves/<member>`), so that the first entry a rewritten
/// log changed is named. (Reading and writing the state is the CLI's.)
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditorState {
    /// By member id.
    pub nodes: BTreeMap<String, Remembered>,
    /// The leaf hashes verified in this run, by member id; earlier runs'
    /// are read from the files on demand.
    #[serde(skip)]
    pub leaves: BTreeMap<String, Vec<Hash>>,
    /// The folder of the leaf files, once loaded from or saved to a path.
    #[serde(skip)]
    pub leaves_dir: Option<std::path::PathBuf>,
}

impl AuditorState {
    /// The leaf hashes verified of `member` before: this run's, or those
    /// an earlier run saved (none when no file holds them, or it is damaged).
    pub fn old_leaves(&self, member: &str) -> Option<Vec<Hash>> {
        if let Some(l) = self.leaves.get(member) {
            return Some(l.clone());
        }
        let bytes = std::fs::read(self.leaves_dir.as_ref()?.join(member)).ok()?;
        if bytes.len() % 32 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(32)
                .filter_map(|c| Hash::try_from(c).ok())
                .collect(),
        )
    }
}

/// One thing that does not hold, where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The node whose log or statement is at fault (or the bundle, when it
    /// names none).
    pub node: String,
    /// The leaf concerned, when one is.
    pub index: Option<u64>,
    /// What does not hold, in one line.
    pub reason: String,
}

/// What was verified of one node's log.
#[derive(Clone, Debug)]
pub struct NodeSummary {
    /// The node.
    pub member: MemberId,
    /// Its checkpoint's size (the leaves verified).
    pub size: u64,
    /// Leaves that came as their hash only (about dossiers the asker does not hold).
    pub withheld: usize,
    /// The members whose cosignature of its log verified, and the size they cosigned.
    pub cosigners: Vec<MemberId>,
    /// The size its cosigned checkpoint covers.
    pub witnessed_size: u64,
    /// The size this auditor verified of it before, if it had.
    pub extends: Option<u64>,
    /// Whether its log verified (signatures and root).
    pub verified: bool,
    /// Whether it is an export made before a larger log this auditor
    /// verified, and a prefix of it (an archived file, not a cut log).
    pub older_export: bool,
}

/// A break-glass access no auditor reviewed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The member that granted it.
    pub owner: MemberId,
    /// The access.
    pub grant: GrantId,
    /// Its leaf in the owner's log.
    pub index: u64,
}

/// Everything `audit verify` found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// One per log, in the order given.
    pub nodes: Vec<NodeSummary>,
    /// Every failure.
    pub findings: Vec<Finding>,
    /// Break-glass accesses waiting for review.
    pub pending: Vec<Pending>,
    /// Granted reads checked against their basis.
    pub reads_checked: usize,
    /// Receipts checked against the owner's log.
    pub receipts_checked: usize,
    /// Checks that could not be made (an entry withheld, a log not given, a
    /// read later than the owner's export).
    pub unchecked: usize,
}

impl Outcome {
    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        !self.findings.is_empty()
    }

    /// The summary, the break-glass accesses pending review, then each
    /// failure with its node, entry and reason: one line each.
    pub fn text(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if !n.verified {
                out.push(format!("{}: DOES NOT VERIFY (see below)", n.member));
                continue;
            }
            let mut line = format!("{}: {} entries verified", n.member, n.size);
            if n.withheld > 0 {
                line.push_str(&format!(
                    " ({} shown to this node as their hash only)",
                    n.withheld
                ));
            }
            if n.cosigners.is_empty() {
                line.push_str("; no witness cosigned its checkpoint yet");
            } else {
                let names: Vec<&str> = n.cosigners.iter().map(MemberId::as_str).collect();
                line.push_str(&format!(
                    "; its tree of {} entries cosigned by {}",
                    n.witnessed_size,
                    names.join(", ")
                ));
            }
            match n.extends {
                Some(before) if n.older_export => line.push_str(&format!(
                    "; an older export, a prefix of the {before} entries verified since"
                )),
                Some(before) => {
                    line.push_str(&format!("; extends the {before} entries verified before"))
                }
                None => line.push_str("; first verification, remembered"),
            }
            out.push(line);
        }
        out.push(format!(
            "{} granted read(s) checked against a consent in force or a break-glass; {} receipt(s) checked against the owner's log; {} check(s) could not be made (entries shown as their hash, logs not given, or newer than an export)",
            self.reads_checked, self.receipts_checked, self.unchecked
        ));
        for p in &self.pending {
            out.push(format!(
                "break-glass {} granted by {} (entry {}): NOT REVIEWED yet",
                p.grant, p.owner, p.index
            ));
        }
        for f in &self.findings {
            out.push(match f.index {
                Some(i) => format!("FAIL {} entry {i}: {}", f.node, f.reason),
                None => format!("FAIL {}: {}", f.node, f.reason),
            });
        }
        out.push(if self.findings.is_empty() {
            format!("verified: {} log(s), no failure", self.nodes.len())
        } else {
            format!("{} failure(s)", self.findings.len())
        });
        out
    }

    /// The same as JSON, with stable field names.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "verified": !self.failed(),
            "nodes": self.nodes.iter().map(|n| serde_json::json!({
                "member": n.member.as_str(),
                "verified": n.verified,
                "size": n.size,
                "withheld": n.withheld,
                "witnessed_size": n.witnessed_size,
                "cosigners": n.cosigners.iter().map(MemberId::as_str).collect::<Vec<_>>(),
                "extends": n.extends,
                "older_export": n.older_export,
            })).collect::<Vec<_>>(),
            "reads_checked": self.reads_checked,
            "receipts_checked": self.receipts_checked,
            "unchecked": self.unchecked,
            "pending_break_glass": self.pending.iter().map(|p| serde_json::json!({
                "owner": p.owner.as_str(),
                "grant": p.grant.to_string(),
                "index": p.index,
            })).collect::<Vec<_>>(),
            "findings": self.findings.iter().map(|f| serde_json::json!({
                "node": f.node,
                "index": f.index,
                "reason": f.reason,
            })).collect::<Vec<_>>(),
        })
    }

    fn fail(&mut self, node: &MemberId, index: Option<u64>, reason: impl Into<String>) {
        self.findings.push(Finding {
            node: node.to_string(),
            index,
            reason: reason.into(),
        });
    }
}

/// One log, once its own checks passed.
struct Checked {
    /// Its place in [`Outcome::nodes`].
    summary: usize,
    member: MemberId,
    manifest: Manifest,
    cp: Checkpoint,
    hashes: Vec<Hash>,
    entries: Vec<Option<AuditEntry>>,
}

/// Every key each member held in a verified roster chain, the newest first.
pub type KeyHistory = HashMap<MemberId, Vec<PublicKey>>;

/// Verifies a chain from the auditor's genesis; returns its last version
/// and every key each member held along it.
pub fn verify_chain(
    genesis: &SignedRoster,
    chain: &[SignedRoster],
) -> Result<(VerifiedRoster, KeyHistory), String> {
    let mut at = genesis
        .clone()
        .verify_genesis()
        .map_err(|e| format!("the auditor's genesis roster: {e}"))?;
    let mut links = chain.iter();
    match links.next() {
        Some(first) if first.roster.hash_hex() == at.hash_hex() => {}
        Some(_) => {
            return Err("its roster chain does not start at this federation's genesis".into());
        }
        None => return Err("its manifest holds no roster chain".into()),
    }
    let mut keys: KeyHistory = HashMap::new();
    let mut remember = |r: &VerifiedRoster| {
        for m in &r.roster().members {
            let held = keys.entry(m.card.id.clone()).or_default();
            if !held.contains(&m.card.signing_key) {
                held.insert(0, m.card.signing_key);
            }
        }
    };
    remember(&at);
    for link in links {
        let version = link.roster.version;
        at = at
            .verify_successor(link.clone())
            .map_err(|e| format!("its roster chain does not verify at v{version}: {e}"))?;
        remember(&at);
    }
    Ok((at, keys))
}

/// The member a note signature or cosignature line names, if it is one of ours.
fn member_of_name(name: &str) -> Option<MemberId> {
    name.strip_prefix("maillon/")?.parse().ok()
}

/// Every cosignature line of a note: `(name, line)` for signature lines
/// not by `own` (the log's own origin).
fn cosignature_lines<'a>(note: &'a str, own: &str) -> Vec<(&'a str, &'a str)> {
    let Some((_, sigs)) = note.split_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("\u{2014} ")?;
            let (name, _) = rest.rsplit_once(' ')?;
            (name != own).then_some((name, line))
        })
        .collect()
}

/// The body of a note (its text up to the blank line), with its final newline.
pub(crate) fn body_of(note: &str) -> Option<String> {
    note.split_once("\n\n").map(|(b, _)| format!("{b}\n"))
}

/// Verifies `bundles` a node served just now against the auditor's
/// `genesis`, and against what `state` remembers of each node (then
/// remembers what verified): a log smaller than one verified before was cut.
pub fn verify_bundles(
    genesis: &SignedRoster,
    bundles: &[Bundle],
    state: Option<&mut AuditorState>,
    now: i64,
) -> Outcome {
    verify_with(genesis, bundles, state, now, false)
}

/// [`verify_bundles`] for exported files (`audit verify --offline`): a file
/// may be older than what the auditor verified since; a prefix of it is
/// then said to be an older export, not a cut log (anything else still
/// fails).
pub fn verify_exports(
    genesis: &SignedRoster,
    bundles: &[Bundle],
    state: Option<&mut AuditorState>,
    now: i64,
) -> Outcome {
    verify_with(genesis, bundles, state, now, true)
}

fn verify_with(
    genesis: &SignedRoster,
    bundles: &[Bundle],
    mut state: Option<&mut AuditorState>,
    now: i64,
    archived: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut keys: KeyHistory = HashMap::new();
    let mut checked: Vec<Checked> = Vec::new();
    for (n, bundle) in bundles.iter().enumerate() {
        let Ok(member) = bundle.manifest.claimed_member() else {
            out.findings.push(Finding {
                node: format!("bundle #{}", n + 1),
                index: None,
                reason: "its manifest names no member".into(),
            });
            continue;
        };
        let mut summary = NodeSummary {
            member: member.clone(),
            size: bundle.leaves.len() as u64,
            withheld: bundle
                .leaves
                .iter()
                .filter(|l| matches!(l, Leaf::Withheld(_)))
                .count(),
            cosigners: Vec::new(),
            witnessed_size: 0,
            extends: None,
            verified: false,
            older_export: false,
        };
        let before = state.as_deref();
        match check_one(
            genesis,
            bundle,
            &member,
            &mut keys,
            &mut out,
            &mut summary,
            before,
        ) {
            Some(mut c) => {
                c.summary = out.nodes.len();
                if let Some(state) = state.as_deref_mut() {
                    summary.extends = against_state(
                        state,
                        &c,
                        &mut out,
                        now,
                        archived.then_some(&mut summary.older_export),
                    );
                }
                summary.verified = true;
                checked.push(c);
            }
            None => {
                if let Some(state) = state.as_deref_mut()
                    && let Some(b) = state.nodes.get(member.as_str())
                {
                    summary.extends = Some(b.size);
                }
            }
        }
        out.nodes.push(summary);
    }
    // Cosignatures, now that every chain's keys are known.
    for c in &checked {
        let (valid, forged) = cosigners(&c.manifest.cosigned, &c.member, &keys);
        out.nodes[c.summary].cosigners = valid.into_iter().map(|(w, _)| w).collect();
        for w in forged {
            out.findings.push(Finding {
                node: c.member.to_string(),
                index: None,
                reason: format!(
                    "its checkpoint carries a cosignature by {w} that does not verify under {w}'s keys (forged)"
                ),
            });
        }
    }
    cross_witnesses(&checked, &keys, &mut out);
    cross_reads(&checked, &keys, &mut out);
    out
}

/// The checks of one log on its own; `None` when it does not verify.
fn check_one(
    genesis: &SignedRoster,
    bundle: &Bundle,
    member: &MemberId,
    keys: &mut KeyHistory,
    out: &mut Outcome,
    summary: &mut NodeSummary,
    state: Option<&AuditorState>,
) -> Option<Checked> {
    let claimed = match bundle.manifest.unverified() {
        Ok(m) => m,
        Err(e) => {
            out.fail(member, None, format!("its manifest: {e}"));
            return None;
        }
    };
    let (_, history) = match verify_chain(genesis, &claimed.roster_chain) {
        Ok(v) => v,
        Err(e) => {
            out.fail(member, None, e);
            return None;
        }
    };
    for (m, ks) in &history {
        let held = keys.entry(m.clone()).or_default();
        for k in ks {
            if !held.contains(k) {
                held.push(*k);
            }
        }
    }
    let Some(own_keys) = history.get(member).cloned() else {
        out.fail(
            member,
            None,
            "it is not a member of the federation its roster chain describes",
        );
        return None;
    };
    let manifest = match bundle.manifest.open(member, &own_keys) {
        Ok(m) => m,
        Err(e) => {
            out.fail(member, None, format!("its manifest: {e}"));
            return None;
        }
    };
    let cp = match checkpoint_of(&manifest.checkpoint, member, &own_keys) {
        Ok(cp) => cp,
        Err(e) => {
            out.fail(member, None, format!("its checkpoint: {e}"));
            return None;
        }
    };
    summary.size = cp.size;
    if (bundle.leaves.len() as u64) < cp.size {
        out.fail(
            member,
            Some(bundle.leaves.len() as u64),
            format!(
                "its log holds {} entries, fewer than the {} its checkpoint covers: it was truncated",
                bundle.leaves.len(),
                cp.size
            ),
        );
        return None;
    }
    let leaves = &bundle.leaves[..cp.size as usize];
    let hashes = match verify_leaves(leaves, &cp) {
        Ok(h) => h,
        Err(e) => {
            // What this auditor verified of the node before names the entry.
            let changed = state
                .and_then(|s| s.old_leaves(member.as_str()))
                .and_then(|old| {
                    old.iter()
                        .zip(leaves)
                        .position(|(before, now)| *before != now.hash())
                });
            match changed {
                Some(i) => out.fail(
                    member,
                    Some(i as u64),
                    format!(
                        "entry {i} was changed: it is not the entry verified before, and the log no longer hashes to its signed checkpoint"
                    ),
                ),
                None => out.fail(member, None, format!("its entries: {e}")),
            }
            return None;
        }
    };
    if bundle.leaves.len() as u64 > cp.size {
        out.unchecked += bundle.leaves.len() - cp.size as usize;
    }
    // The cosigned checkpoint: signed by the node, a prefix of this log.
    let cosigned = checkpoint_of(&manifest.cosigned, member, &own_keys).ok();
    match cosigned {
        Some(w) if w.size <= cp.size && merkle::root(&hashes[..w.size as usize]) == w.root => {
            summary.witnessed_size = w.size;
        }
        Some(w) => out.fail(
            member,
            None,
            format!(
                "the checkpoint of {} entries its witnesses cosigned is not a prefix of its log",
                w.size
            ),
        ),
        None => out.fail(
            member,
            None,
            "its cosigned checkpoint is not signed by its key",
        ),
    }
    let entries = leaves
        .iter()
        .map(|l| match l {
            Leaf::Entry(b) => AuditEntry::from_bytes(b).ok(),
            Leaf::Withheld(_) => None,
        })
        .collect();
    Some(Checked {
        summary: 0,
        member: member.clone(),
        manifest,
        cp,
        hashes,
        entries,
    })
}

/// The log against what this auditor verified of it before; remembers the
/// new checkpoint when it extends the old one. Returns the old size.
fn against_state(
    state: &mut AuditorState,
    c: &Checked,
    out: &mut Outcome,
    now: i64,
    older: Option<&mut bool>,
) -> Option<u64> {
    let before = state.nodes.get(c.member.as_str()).cloned();
    if let Some(b) = &before {
        if c.cp.size < b.size {
            // An export made before the last verification (an archived
            // file) is no cut if it is a prefix of what was verified.
            let prefix = state.old_leaves(c.member.as_str()).is_some_and(|old| {
                old.len() as u64 >= c.cp.size && old[..c.cp.size as usize] == c.hashes[..]
            });
            if let Some(older) = older
                && c.manifest.exported_at < b.verified_at
                && prefix
            {
                *older = true;
                return Some(b.size);
            }
            out.fail(
                &c.member,
                Some(c.cp.size),
                format!(
                    "its log holds {} entries, fewer than the {} of a checkpoint verified before: it was cut",
                    c.cp.size, b.size
                ),
            );
            return Some(b.size);
        }
        if hex::encode(merkle::root(&c.hashes[..b.size as usize])) != b.root {
            let first = state
                .old_leaves(c.member.as_str())
                .and_then(|old| old.iter().zip(&c.hashes).position(|(a, b)| a != b));
            out.fail(
                &c.member,
                first.map(|i| i as u64),
                match first {
                    Some(i) => format!(
                        "entry {i} is not the one verified before (in a checkpoint of {} entries): the log was rewritten",
                        b.size
                    ),
                    None => format!(
                        "its first {} entries are not the ones of the checkpoint verified before: the log was rewritten",
                        b.size
                    ),
                },
            );
            return Some(b.size);
        }
    }
    state.nodes.insert(
        c.member.to_string(),
        Remembered {
            size: c.cp.size,
            root: hex::encode(c.cp.root),
            checkpoint: c.manifest.checkpoint.clone(),
            verified_at: now,
        },
    );
    state.leaves.insert(c.member.to_string(), c.hashes.clone());
    before.map(|b| b.size)
}

/// What each node witnessed of the others, and their alarms.
fn cross_witnesses(checked: &[Checked], keys: &KeyHistory, out: &mut Outcome) {
    let by_member: HashMap<&MemberId, &Checked> = checked.iter().map(|c| (&c.member, c)).collect();
    // (peer, size) -> (root, witness) of every checkpoint a witness kept.
    let mut seen: BTreeMap<(MemberId, u64), (Hash, MemberId)> = BTreeMap::new();
    for w in checked {
        for kept in &w.manifest.witnessed {
            let p = &kept.member;
            let held = keys.get(p).map(Vec::as_slice).unwrap_or_default();
            let Ok(cp) = checkpoint_of(&kept.checkpoint, p, held) else {
                out.fail(
                    &w.member,
                    None,
                    format!("it keeps as witnessed a checkpoint of {p} that {p} did not sign"),
                );
                continue;
            };
            if let Some((root, other)) = seen.get(&(p.clone(), cp.size))
                && *root != cp.root
            {
                out.fail(
                    p,
                    None,
                    format!(
                        "it showed two histories: {other} and {} each cosigned a different tree of {} entries",
                        w.member, cp.size
                    ),
                );
            }
            seen.insert((p.clone(), cp.size), (cp.root, w.member.clone()));
            if let Some(pc) = by_member.get(p) {
                if cp.size > pc.cp.size {
                    // The witness saw a newer tree than the export given:
                    // nothing to compare it with here.
                    out.unchecked += 1;
                    continue;
                }
                if merkle::root(&pc.hashes[..cp.size as usize]) != cp.root {
                    out.fail(
                        p,
                        None,
                        format!(
                            "its log does not extend the tree of {} entries {} witnessed: it showed another history",
                            cp.size, w.member
                        ),
                    );
                }
            }
        }
        for a in &w.manifest.alarms {
            out.fail(
                &a.member,
                None,
                format!("{} raised an alarm against it: {}", w.member, a.reason),
            );
        }
    }
}

/// A consent as the owner's log recorded it.
struct ConsentSeen {
    dossier: DossierId,
    sections: Vec<Section>,
    masked: Vec<Section>,
    audience: Vec<MemberId>,
    from: i64,
    until: i64,
    revoked: Option<i64>,
}

/// A break-glass access as the owner's log recorded it.
struct GrantSeen {
    dossier: DossierId,
    reader: MemberId,
    sections: Vec<Section>,
    until: i64,
    ended: Option<i64>,
}

/// Every granted read against its basis; every receipt against the owner's
/// log; every break-glass reviewed or pending.
fn cross_reads(checked: &[Checked], keys: &KeyHistory, out: &mut Outcome) {
    let by_member: HashMap<&MemberId, &Checked> = checked.iter().map(|c| (&c.member, c)).collect();
    let reviewed: BTreeSet<(MemberId, GrantId)> = checked
        .iter()
        .flat_map(|c| c.entries.iter().flatten())
        .filter_map(|e| match &e.event {
            AuditEvent::BreakGlassReviewed { grant, owner, .. } => {
                Some((owner.clone(), grant.clone()))
            }
            _ => None,
        })
        .collect();
    for c in checked {
        // A basis missing from the log may be in a leaf withheld before the read.
        let mut withheld_before = false;
        let mut consents: HashMap<ConsentId, ConsentSeen> = HashMap::new();
        let mut grants: HashMap<GrantId, GrantSeen> = HashMap::new();
        for (i, e) in c.entries.iter().enumerate() {
            let Some(e) = e else {
                withheld_before = true;
                continue;
            };
            let index = Some(i as u64);
            match &e.event {
                AuditEvent::ConsentGranted {
                    consent,
                    dossier,
                    sections,
                    audience,
                    valid_from,
                    until,
                    masked,
                    ..
                } => {
                    consents.insert(
                        consent.clone(),
                        ConsentSeen {
                            dossier: dossier.clone(),
                            sections: sections.clone(),
                            masked: masked.clone(),
                            audience: audience.clone(),
                            from: valid_from.start_unix(),
                            until: until.end_unix(),
                            revoked: None,
                        },
                    );
                }
                AuditEvent::ConsentRevoked { consent, .. } => {
                    if let Some(s) = consents.get_mut(consent) {
                        s.revoked.get_or_insert(e.time);
                    }
                }
                AuditEvent::BreakGlassGranted {
                    grant,
                    dossier,
                    reader,
                    sections,
                    until,
                    ..
                } => {
                    grants.insert(
                        grant.clone(),
                        GrantSeen {
                            dossier: dossier.clone(),
                            reader: reader.clone(),
                            sections: sections.clone(),
                            until: *until,
                            ended: None,
                        },
                    );
                    if !reviewed.contains(&(c.member.clone(), grant.clone())) {
                        out.pending.push(Pending {
                            owner: c.member.clone(),
                            grant: grant.clone(),
                            index: i as u64,
                        });
                    }
                }
                AuditEvent::BreakGlassEnded { grant, .. } => {
                    if let Some(g) = grants.get_mut(grant) {
                        g.ended.get_or_insert(e.time);
                    }
                }
                AuditEvent::ReadGranted {
                    reader,
                    dossier,
                    section,
                    consent,
                    break_glass,
                    ..
                } => {
                    let t = e.time;
                    let verdict = match (break_glass, consent) {
                        (Some(g), _) => match grants.get(g) {
                            None => Err(Missing(format!(
                                "a read by {reader} names break-glass {g}, which this log never granted"
                            ))),
                            Some(s)
                                if &s.dossier != dossier
                                    || &s.reader != reader
                                    || !s.sections.contains(section) =>
                            {
                                Err(Wrong(format!(
                                    "a read by {reader} names break-glass {g}, which does not open this section to it"
                                )))
                            }
                            Some(s) if t > s.until || s.ended.is_some_and(|end| end <= t) => {
                                Err(Wrong(format!(
                                    "a read by {reader} under break-glass {g} came after it ended"
                                )))
                            }
                            Some(_) => Ok(()),
                        },
                        (None, Some(k)) => match consents.get(k) {
                            None => Err(Missing(format!(
                                "a read by {reader} names consent {k}, which this log never recorded"
                            ))),
                            Some(s)
                                if &s.dossier != dossier
                                    || !s.audience.contains(reader)
                                    || !s.sections.contains(section) =>
                            {
                                Err(Wrong(format!(
                                    "a read by {reader} names consent {k}, which does not cover it"
                                )))
                            }
                            Some(s) if t < s.from || t >= s.until => Err(Wrong(format!(
                                "a read by {reader} names consent {k}, which was not in force at that moment"
                            ))),
                            Some(s) if s.revoked.is_some_and(|r| r <= t) => Err(Wrong(format!(
                                "a read by {reader} names consent {k}, revoked before it"
                            ))),
                            Some(_) => {
                                let masked = consents.values().any(|m| {
                                    &m.dossier == dossier
                                        && m.masked.contains(section)
                                        && t >= m.from
                                        && t < m.until
                                        && m.revoked.is_none_or(|r| r > t)
                                });
                                if masked {
                                    Err(Wrong(format!(
                                        "a read by {reader} was granted while the person masked that section"
                                    )))
                                } else {
                                    Ok(())
                                }
                            }
                        },
                        (None, None) => Err(Wrong(format!(
                            "a read by {reader} was granted on no consent and no break-glass"
                        ))),
                    };
                    match verdict {
                        Ok(()) => out.reads_checked += 1,
                        Err(Missing(_)) if withheld_before => out.unchecked += 1,
                        Err(Missing(reason) | Wrong(reason)) => out.fail(&c.member, index, reason),
                    }
                }
                AuditEvent::ReceiptLogged {
                    owner,
                    dossier,
                    section,
                    request,
                    owner_leaf,
                    receipt,
                    receipt_signature,
                    ..
                } => {
                    // The receipt itself, signed by the owner.
                    if !receipt.is_empty() {
                        let ok = receipt_signed(
                            keys,
                            owner,
                            request,
                            *section,
                            *owner_leaf,
                            receipt,
                            receipt_signature,
                        );
                        if !ok {
                            out.fail(
                                &c.member,
                                index,
                                format!("the receipt it kept for a read from {owner} is not one {owner} signed for that leaf"),
                            );
                            continue;
                        }
                    }
                    let Some(o) = by_member.get(owner) else {
                        out.unchecked += 1;
                        continue;
                    };
                    if *owner_leaf >= o.cp.size {
                        out.unchecked += 1; // Later than the owner's export.
                        continue;
                    }
                    // The leaf is in the owner's tree: its root was verified
                    // against the owner's signed checkpoint above.
                    let k = *owner_leaf as usize;
                    // The owner signed (request, section, leaf); the receipt
                    // names neither reader nor dossier: those are the reader's.
                    let (same_read, same_reader) = match &o.entries[k] {
                        Some(AuditEntry {
                            event:
                                AuditEvent::ReadGranted {
                                    request: r,
                                    reader,
                                    dossier: d,
                                    section: s,
                                    ..
                                },
                            ..
                        }) => (
                            r == request && s == section,
                            reader == &c.member && d == dossier,
                        ),
                        Some(_) => (false, false),
                        None => {
                            out.unchecked += 1;
                            continue;
                        }
                    };
                    match (same_read, same_reader) {
                        (true, true) => out.receipts_checked += 1,
                        (true, false) => out.fail(
                            &c.member,
                            index,
                            format!(
                                "it keeps {owner}'s receipt for leaf {owner_leaf}, a read by another member or of another dossier, as its own read of this one"
                            ),
                        ),
                        (false, _) if receipt.is_empty() => out.fail(
                            &c.member,
                            index,
                            format!(
                                "it logged a read from {owner} without its signed receipt, and {owner}'s leaf {owner_leaf} is not that read"
                            ),
                        ),
                        (false, _) => out.fail(
                            owner,
                            Some(*owner_leaf),
                            format!(
                                "{} logged a read it answered (the reader's entry {i}, with {owner}'s signed receipt), but its leaf {owner_leaf} is not that read: it is missing from its log",
                                c.member
                            ),
                        ),
                    }
                }
                _ => {}
            }
        }
    }
}

/// `note` as a checkpoint of `member`'s log signed under one of `keys`
/// (every key it held); the first key's error when none verifies.
pub(crate) fn checkpoint_of(
    note: &str,
    member: &MemberId,
    keys: &[PublicKey],
) -> Result<Checkpoint, note::NoteError> {
    let own = origin(member);
    let mut first = None;
    for k in keys {
        match Checkpoint::verify(note, &own, k) {
            Ok(cp) => return Ok(cp),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or(note::NoteError::Unsigned(own)))
}

/// The cosignatures of `note` (a checkpoint of `member`'s log): those that
/// verify under a key their witness held, one line per witness, and the
/// witnesses with a line that does not (forged); cosignatures by names
/// outside the federation are left aside.
pub(crate) fn cosigners(
    note: &str,
    member: &MemberId,
    keys: &KeyHistory,
) -> (Vec<(MemberId, String)>, Vec<MemberId>) {
    let own = origin(member);
    let (mut valid, mut forged) = (Vec::<(MemberId, String)>::new(), Vec::new());
    let Some(body) = body_of(note) else {
        return (valid, forged);
    };
    for (name, line) in cosignature_lines(note, &own) {
        let Some(w) = member_of_name(name) else {
            continue; // Another ecosystem's witness: not ours to judge.
        };
        let ok = keys.get(&w).is_some_and(|held| {
            held.iter()
                .any(|k| note::verify_cosignature(line, &body, name, k).is_ok())
        });
        if ok {
            if !valid.iter().any(|(v, _)| *v == w) {
                valid.push((w, line.to_owned()));
            }
        } else if !forged.contains(&w) {
            forged.push(w);
        }
    }
    (valid, forged)
}

/// Whether a receipt a reader kept (base64 bytes and signature, as its
/// entry holds them) is signed by `owner` under a key it held and names
/// `leaf` for `section` of `request`.
pub(crate) fn receipt_signed(
    keys: &KeyHistory,
    owner: &MemberId,
    request: &str,
    section: Section,
    leaf: u64,
    receipt: &str,
    signature: &str,
) -> bool {
    let signed = B64.decode(receipt).ok().zip(
        B64.decode(signature)
            .ok()
            .and_then(|s| crate::crypto::Signature::from_bytes(&s).ok()),
    );
    signed.is_some_and(|(bytes, signature)| {
        let sb = SignedBytes { bytes, signature };
        keys.get(owner).is_some_and(|held| {
            held.iter()
                .any(|k| receipt_names(&sb, k, owner, request, section, leaf))
        })
    })
}

/// Whether a receipt signed by `owner` (any number of sections) names
/// `leaf` for `section` of `request`.
fn receipt_names(
    sb: &SignedBytes,
    key: &PublicKey,
    owner: &MemberId,
    request: &str,
    section: Section,
    leaf: u64,
) -> bool {
    Receipt::open(sb, owner, key, request).is_ok_and(|r| {
        r.items
            .iter()
            .any(|it| it.section == section && it.leaf == leaf)
    })
}

/// Why a granted read does not stand.
enum Verdict {
    /// Its basis is not in the log (perhaps in a leaf withheld from the asker).
    Missing(String),
    /// Its basis is in the log and does not allow it.
    Wrong(String),
}
use Verdict::{Missing, Wrong};
