//! The person's access report (« qui a consulté mon dossier ? »), in French,
//! gathered from every member that holds a part of the dossier.
//!
//! Each member's part comes with its signed checkpoint, the newest checkpoint
//! its witnesses cosigned and a consistency proof between the two, and an
//! inclusion proof for every entry: the report keeps only entries proven in
//! a log signed by the key the roster chain (verified from the auditor's own
//! genesis) lists for that member. A member cannot leave out a read without
//! it showing: the reader keeps the owner's signed receipt in its own log,
//! and a receipt whose read is missing from the owner's part is an anomaly
//! the report states. A member that does not answer is stated too.
//!
//! Times are told in Europe/Paris. The agents' names appear only where the
//! charter allows it (`report_agent_names`); otherwise only their institution.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::bundle::DossierPart;
use super::merkle::{self, Hash};
use crate::audit::note::{Checkpoint, TlogProof};
use crate::audit::{AuditEntry, AuditEvent};
use crate::roster::VerifiedRoster;
use crate::types::{ConsentId, DossierId, LegalBasis, MemberId, Section, section_fr};

use super::verify::{self, KeyHistory};
use crate::escape::escape_controls;

/// What one member's part of the report rests on.
#[derive(Clone, Debug)]
pub struct Source {
    /// The member.
    pub member: MemberId,
    /// Its name in the roster.
    pub name: String,
    /// The size of its signed log the proofs are against (0 when it did not answer).
    pub size: u64,
    /// How much of that log its witnesses cosigned.
    pub witnessed_size: u64,
    /// The members whose cosignature of its log verified.
    pub cosigners: Vec<MemberId>,
    /// Its entries about the dossier, each proven.
    pub entries: usize,
    /// Why its part is missing or does not hold (French), when it is.
    pub problem: Option<String>,
}

impl Source {
    /// A member whose part is missing or does not hold, and why.
    fn without_part(member: &MemberId, names: &Names<'_>, problem: String) -> Self {
        Self {
            member: member.clone(),
            name: names.of(member),
            size: 0,
            witnessed_size: 0,
            cosigners: Vec::new(),
            entries: 0,
            problem: Some(problem),
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Line {
    /// The member whose log holds the entry.
    pub member: MemberId,
    /// The entry's leaf index in that log.
    pub index: u64,
    /// When it was logged (Unix seconds).
    pub time: i64,
    /// What happened, in French.
    pub text: String,
    /// An access without consent.
    pub break_glass: bool,
    /// Whether the entry lies in a tree the member's witnesses cosigned.
    pub witnessed: bool,
    /// The readers whose kept receipt confirms this read.
    pub confirmed_by: Vec<MemberId>,
    /// The entry's bytes, as logged.
    pub entry: String,
    /// Its RFC 6962 leaf hash (what the JSON gives instead of the entry
    /// when the charter withholds agents' names).
    pub leaf_hash: Hash,
    /// Its C2SP tlog-proof against the member's signed checkpoint.
    pub proof: String,
}

/// Something the report cannot vouch for: a member that did not answer, an
/// answer that does not verify, a read a receipt proves but the owner left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// The member concerned.
    pub member: String,
    /// The entry concerned in its log, when one is.
    pub index: Option<u64>,
    /// What, in French.
    pub text: String,
}

/// The person's access report.
#[derive(Clone, Debug)]
pub struct AccessReport {
    /// The dossier.
    pub dossier: DossierId,
    /// When it was made (Unix seconds).
    pub generated_at: i64,
    /// Whether agents are named (the charter's `report_agent_names`).
    pub agent_names: bool,
    /// One per member asked, this node's first.
    pub sources: Vec<Source>,
    /// In time order.
    pub lines: Vec<Line>,
    /// What does not hold.
    pub anomalies: Vec<Anomaly>,
    /// Members that did not answer and that nothing names in the dossier
    /// (a member down that holds nothing of it): said, not an anomaly.
    pub unanswered: Vec<(MemberId, String)>,
}

/// One member's part as the auditor's tools got it: every page joined, or
/// why it did not come.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// The part, not verified yet.
    Part(DossierPart),
    /// No part: the member did not answer, or its answer did not hold.
    Missing {
        /// The member asked.
        member: MemberId,
        /// Why, in one line (as the node said it).
        why: String,
    },
}

impl Fetched {
    /// The member asked.
    pub fn member(&self) -> &MemberId {
        match self {
            Fetched::Part(p) => &p.member,
            Fetched::Missing { member, .. } => member,
        }
    }
}

/// The members whose part stops at or before a leaf that a reader's
/// receipt, in another part, names.
pub fn behind_a_receipt(fetched: &[Fetched]) -> BTreeSet<MemberId> {
    let sizes: HashMap<&MemberId, u64> = fetched
        .iter()
        .filter_map(|f| match f {
            Fetched::Part(p) => Some((
                &p.member,
                Checkpoint::parse_body(&p.checkpoint).map_or(0, |c| c.size),
            )),
            Fetched::Missing { .. } => None,
        })
        .collect();
    fetched
        .iter()
        .filter_map(|f| match f {
            Fetched::Part(p) => Some(p),
            Fetched::Missing { .. } => None,
        })
        .flat_map(|p| &p.entries)
        .filter_map(
            |e| match AuditEntry::from_bytes(&e.entry).map(|x| x.event) {
                Ok(AuditEvent::ReceiptLogged {
                    owner, owner_leaf, ..
                }) => sizes
                    .get(&owner)
                    .is_some_and(|size| owner_leaf >= *size)
                    .then_some(owner),
                _ => None,
            },
        )
        .collect()
}

/// The sizes a node accepted of each peer's log, as its manifest lists its
/// witnessing, each checkpoint signed by the peer with a key of `keys`.
pub fn witnessed_sizes(
    manifest: &super::bundle::Manifest,
    keys: &KeyHistory,
) -> HashMap<MemberId, u64> {
    manifest
        .witnessed
        .iter()
        .filter_map(|w| {
            let cp = verify::checkpoint_of(&w.checkpoint, &w.member, keys.get(&w.member)?).ok()?;
            Some((w.member.clone(), cp.size))
        })
        .collect()
}

/// One member's part, once its proofs held.
struct Checked {
    member: MemberId,
    size: u64,
    /// The note proofs are given against (with the cosignatures that
    /// verified, when they cover it).
    note: String,
    witnessed: u64,
    entries: Vec<(u64, Vec<u8>, AuditEntry, Vec<Hash>)>,
}

/// Verifies each part and writes the report. A part that did not come, or
/// does not hold, is a source with its problem and an anomaly; a member
/// that holds nothing of the dossier is left out; a member that refused and
/// that no proven entry names is left out too (what it holds is no part of
/// the dossier as its members know it).
pub fn assemble(
    roster: &VerifiedRoster,
    keys: &KeyHistory,
    dossier: &DossierId,
    fetched: &[Fetched],
    witnessed: &HashMap<MemberId, u64>,
    now: i64,
) -> AccessReport {
    let mut report = AccessReport {
        dossier: dossier.clone(),
        generated_at: now,
        agent_names: roster.roster().charter.report_agent_names,
        sources: Vec::new(),
        lines: Vec::new(),
        anomalies: Vec::new(),
        unanswered: Vec::new(),
    };
    let names = Names { roster };
    let mut checked: Vec<Checked> = Vec::new();
    let mut missing: Vec<(&MemberId, &str)> = Vec::new();
    let mut seen: BTreeSet<&MemberId> = BTreeSet::new();
    for f in fetched {
        let member = f.member();
        if !seen.insert(member) {
            report.anomalies.push(Anomaly {
                member: member.to_string(),
                index: None,
                text: format!(
                    "{} a fourni plus d'une part : seule la première est retenue.",
                    names.of(member)
                ),
            });
            continue;
        }
        let p = match f {
            Fetched::Missing { member, why } => {
                missing.push((member, why));
                continue;
            }
            Fetched::Part(p) => p,
        };
        let mut problems = Vec::new();
        match check_part(p, keys, dossier, &mut problems) {
            Ok((c, cosigners)) => {
                for (index, text) in problems {
                    report.anomalies.push(Anomaly {
                        member: p.member.to_string(),
                        index,
                        text: format!("{} : {text}", names.of(&p.member)),
                    });
                }
                if let Some(w) = witnessed.get(&c.member).filter(|w| **w > c.size) {
                    report.anomalies.push(Anomaly {
                        member: c.member.to_string(),
                        index: None,
                        text: format!(
                            "la part de {} repose sur un journal de {} événements, plus court que les {w} que d'autres partenaires ont déjà contresignés : elle peut taire des accès récents.",
                            names.of(&c.member),
                            c.size
                        ),
                    });
                }
                if c.entries.is_empty() {
                    // It holds nothing of the dossier (kept, to check
                    // receipts against its tree and holders named).
                    checked.push(c);
                    continue;
                }
                report.sources.push(Source {
                    member: c.member.clone(),
                    name: names.of(&c.member),
                    size: c.size,
                    witnessed_size: c.witnessed,
                    cosigners,
                    entries: c.entries.len(),
                    problem: None,
                });
                checked.push(c);
            }
            Err(why) => {
                report.anomalies.push(Anomaly {
                    member: p.member.to_string(),
                    index: None,
                    text: format!(
                        "la part de {} ne tient pas ({why}) : elle n'est pas retenue.",
                        names.of(&p.member)
                    ),
                });
                report.sources.push(Source::without_part(
                    &p.member,
                    &names,
                    format!("part non vérifiable ({why})"),
                ));
            }
        }
    }
    // Every member a proven entry names, or whose receipt a reader kept.
    let named: BTreeSet<MemberId> = checked
        .iter()
        .flat_map(|c| &c.entries)
        .flat_map(|(_, _, e, _)| e.event.parties().into_iter().cloned())
        .collect();
    // Every member a proven entry names as holding the dossier: it logged
    // its opening of it or its attachment to it.
    let holders: BTreeSet<&MemberId> = checked
        .iter()
        .flat_map(|c| &c.entries)
        .filter_map(|(_, _, e, _)| match &e.event {
            AuditEvent::DossierConfirmed { to, .. } => Some(to),
            AuditEvent::DossierAttached { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    for c in checked.iter().filter(|c| c.entries.is_empty()) {
        if holders.contains(&c.member) {
            report.anomalies.push(Anomaly {
                member: c.member.to_string(),
                index: None,
                text: format!(
                    "{} détient ce dossier d'après les journaux des autres partenaires, mais n'a fourni aucune de ses entrées.",
                    names.of(&c.member)
                ),
            });
        }
    }
    for (member, why) in missing {
        if !named.contains(member) {
            // Nothing says it holds a part: not an anomaly, but said.
            report.unanswered.push((member.clone(), why.to_owned()));
            continue;
        }
        let name = names.of(member);
        report.anomalies.push(Anomaly {
            member: member.to_string(),
            index: None,
            text: format!(
                "{name} n'a pas fourni sa part du rapport ({why}) : les accès qu'il aurait enregistrés n'y figurent pas."
            ),
        });
        report.sources.push(Source::without_part(
            member,
            &names,
            format!("n'a pas répondu ({why})"),
        ));
    }
    lines(&mut report, &checked, keys, &names);
    // In time order; within one second, the asking node's part first (it
    // holds the dossier when the person asks where it was opened), each
    // part in its log's order.
    let rank: HashMap<&MemberId, usize> = fetched
        .iter()
        .enumerate()
        .map(|(i, f)| (f.member(), i))
        .collect();
    let rank = |m: &MemberId| rank.get(m).copied().unwrap_or(usize::MAX);
    report.lines.sort_by(|a, b| {
        (a.time, rank(&a.member), a.index).cmp(&(b.time, rank(&b.member), b.index))
    });
    report
}

/// Checks a part's checkpoint, its cosigned checkpoint, the consistency
/// between them and every cosignature, and every entry's inclusion proof.
/// What does not hold in a part that otherwise does is a problem (entry
/// left out, or cosignature not counted); a part whose checkpoint does not
/// verify is refused whole.
fn check_part(
    p: &DossierPart,
    keys: &KeyHistory,
    dossier: &DossierId,
    problems: &mut Vec<(Option<u64>, String)>,
) -> Result<(Checked, Vec<MemberId>), String> {
    let held = keys
        .get(&p.member)
        .ok_or("ce n'est pas un membre du groupement")?;
    let signed = |n: &str| verify::checkpoint_of(n, &p.member, held).ok();
    let cp = signed(&p.checkpoint).ok_or("son point de contrôle n'est pas signé de sa clé")?;
    let mut note = p.checkpoint.clone();
    let mut witnessed = 0;
    let mut cosigners = Vec::new();
    match signed(&p.cosigned) {
        None => problems.push((
            None,
            "le point de contrôle contresigné qu'il présente n'est pas signé de sa clé : ses témoins ne sont pas comptés".into(),
        )),
        Some(w) => {
            let consistent = match w.size.cmp(&cp.size) {
                std::cmp::Ordering::Equal => w.root == cp.root && p.consistency.is_empty(),
                // Witnesses that cosigned the empty log vouch for nothing,
                // and every log extends it.
                std::cmp::Ordering::Less if w.size == 0 => p.consistency.is_empty(),
                std::cmp::Ordering::Less => merkle::verify_consistency(
                    w.size,
                    cp.size,
                    &w.root,
                    &cp.root,
                    &p.consistency,
                ),
                std::cmp::Ordering::Greater => false,
            };
            if !consistent {
                return Err(
                    "son journal ne prolonge pas le point de contrôle que ses témoins ont contresigné"
                        .into(),
                );
            }
            let (valid, forged) = verify::cosigners(&p.cosigned, &p.member, keys);
            for f in forged {
                problems.push((
                    None,
                    format!("son point de contrôle porte une contresignature de {f} qui ne vérifie pas : elle n'est pas comptée"),
                ));
            }
            if !valid.is_empty() {
                witnessed = w.size;
                // The proofs' note carries only cosignatures that verified.
                if w.size == cp.size {
                    note = with_cosignatures(&p.checkpoint, &valid);
                }
            }
            cosigners = valid.into_iter().map(|(w, _)| w).collect();
        }
    }
    let mut entries = Vec::with_capacity(p.entries.len());
    let mut last = None;
    for e in &p.entries {
        let holds = e.index < cp.size
            && last.is_none_or(|l| e.index > l)
            && merkle::verify_inclusion(
                e.index,
                cp.size,
                &merkle::leaf_hash(&e.entry),
                &e.proof,
                &cp.root,
            );
        let entry = AuditEntry::from_bytes(&e.entry)
            .ok()
            .filter(|x| x.event.dossier() == Some(dossier));
        match entry {
            Some(entry) if holds => {
                last = Some(e.index);
                entries.push((e.index, e.entry.clone(), entry, e.proof.clone()));
            }
            _ => problems.push((
                Some(e.index),
                format!(
                    "son entrée {} n'est pas prouvée dans son journal signé, n'est pas dans l'ordre, ou ne concerne pas ce dossier : elle n'est pas retenue",
                    e.index
                ),
            )),
        }
    }
    Ok((
        Checked {
            member: p.member.clone(),
            size: cp.size,
            note,
            witnessed,
            entries,
        },
        cosigners,
    ))
}

/// The member's checkpoint note with the cosignature `lines` that verified
/// (of the same tree) appended: a tlog-proof carries no other.
fn with_cosignatures(checkpoint: &str, lines: &[(MemberId, String)]) -> String {
    let mut note = checkpoint.to_owned();
    for (_, line) in lines {
        note.push_str(line);
        note.push('\n');
    }
    note
}

/// Members' names from the roster.
struct Names<'a> {
    roster: &'a VerifiedRoster,
}

impl Names<'_> {
    fn of(&self, id: &MemberId) -> String {
        self.roster
            .roster()
            .member(id)
            .map(|m| m.card.name.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

/// What the owner's part says of the leaf a reader's receipt names.
enum Found<'a> {
    /// That read, by that reader.
    Confirmed,
    /// That read, granted to another member.
    OtherReader(&'a MemberId),
    /// Another read of this dossier.
    Contradicts,
    /// Nothing at that leaf about this dossier.
    Lacks,
    /// The part's tree stops before that leaf (its size).
    Behind(u64),
    /// The owner gave no part.
    NoPart,
}

/// A read as its owner logged it.
struct Read<'a> {
    reader: &'a MemberId,
    request: &'a str,
    section: Section,
}

/// The consents each member's part recorded: `(member, consent)` to its
/// audience and legal basis (a member speaks only of its own consents).
type Consents<'a> = HashMap<(&'a MemberId, &'a ConsentId), (&'a [MemberId], &'a LegalBasis)>;

/// Writes the report's lines from the checked parts: one per event the
/// person is concerned by, reads confirmed by the reader's receipt, and a
/// line and an anomaly for every receipt whose read its owner's part does
/// not hold.
fn lines(report: &mut AccessReport, checked: &[Checked], keys: &KeyHistory, names: &Names<'_>) {
    let by_member: HashMap<&MemberId, &Checked> = checked.iter().map(|c| (&c.member, c)).collect();
    let consents: Consents<'_> = checked
        .iter()
        .flat_map(|c| c.entries.iter().map(move |e| (&c.member, e)))
        .filter_map(|(m, (_, _, e, _))| match &e.event {
            AuditEvent::ConsentGranted {
                consent,
                audience,
                basis,
                ..
            } => Some(((m, consent), (audience.as_slice(), basis))),
            _ => None,
        })
        .collect();
    let mut confirmed: BTreeMap<(MemberId, u64), Vec<MemberId>> = BTreeMap::new();
    // Receipts first: each confirms its owner's read, or the owner's part
    // does not hold that read.
    for c in checked {
        for (index, raw, e, proof) in &c.entries {
            let AuditEvent::ReceiptLogged {
                owner,
                section,
                request,
                owner_leaf,
                break_glass,
                receipt,
                receipt_signature,
                ..
            } = &e.event
            else {
                continue;
            };
            let signed = !receipt.is_empty()
                && verify::receipt_signed(
                    keys,
                    owner,
                    request,
                    *section,
                    *owner_leaf,
                    receipt,
                    receipt_signature,
                );
            if !receipt.is_empty() && !signed {
                report.anomalies.push(Anomaly {
                    member: c.member.to_string(),
                    index: Some(*index),
                    text: format!(
                        "{} a enregistré un reçu de lecture qui n'est pas signé par {} : il n'est pas retenu.",
                        names.of(&c.member),
                        names.of(owner)
                    ),
                });
                continue;
            }
            let at_owner = by_member.get(owner).map(|o| {
                let read = o.entries.iter().find_map(|(i, _, oe, _)| match &oe.event {
                    AuditEvent::ReadGranted {
                        reader,
                        request,
                        section,
                        ..
                    } if i == owner_leaf => Some(Read {
                        reader,
                        request,
                        section: *section,
                    }),
                    _ => None,
                });
                (o.size, read)
            });
            // The owner signed (request, section, leaf); the reader and the
            // dossier are the reader's word.
            let found = match &at_owner {
                Some((_, Some(read))) if read.request == request && read.section == *section => {
                    if read.reader == &c.member {
                        Found::Confirmed
                    } else {
                        Found::OtherReader(read.reader)
                    }
                }
                Some((_, Some(_))) => Found::Contradicts,
                Some((size, None)) if owner_leaf < size => Found::Lacks,
                Some((size, None)) => Found::Behind(*size),
                None => Found::NoPart,
            };
            if let Found::Confirmed = found {
                confirmed
                    .entry((owner.clone(), *owner_leaf))
                    .or_default()
                    .push(c.member.clone());
                continue;
            }
            let (reader, owner_name) = (names.of(&c.member), names.of(owner));
            let sec = section_fr(*section);
            let t = when(e.time);
            let (blamed, anomaly) = match (signed, &found) {
                // An old entry without its receipt: the reader's word only.
                (false, _) => (
                    &c.member,
                    format!(
                        "{reader} déclare une lecture de la section « {sec} » chez {owner_name} ({t}) sans en conserver le reçu signé, et {owner_name} ne la mentionne pas pour ce dossier."
                    ),
                ),
                (true, Found::OtherReader(other)) => (
                    &c.member,
                    format!(
                        "{reader} présente comme sienne, pour ce dossier, la lecture que {owner_name} a accordée à {} (entrée {owner_leaf} de son journal).",
                        names.of(other)
                    ),
                ),
                (true, Found::Contradicts) => (
                    owner,
                    format!(
                        "l'entrée {owner_leaf} du journal de {owner_name}, que son reçu signé (conservé par {reader}) désigne pour une lecture de la section « {sec} » ({t}), est une autre lecture : {owner_name} a réécrit son journal."
                    ),
                ),
                (true, Found::Lacks) => (
                    owner,
                    format!(
                        "{reader} conserve le reçu signé par {owner_name} d'une lecture de la section « {sec} » ({t}), entrée {owner_leaf} du journal de {owner_name}, que {owner_name} n'a pas fait figurer dans sa part de ce dossier : une omission de {owner_name}, ou un reçu que {reader} a classé sous le mauvais dossier."
                    ),
                ),
                (true, Found::Behind(size)) => (
                    owner,
                    format!(
                        "la part de {owner_name} s'arrête à {size} événements, avant la lecture dont {reader} conserve le reçu signé (entrée {owner_leaf}) : elle est incomplète."
                    ),
                ),
                (true, _) => (
                    owner,
                    format!(
                        "{owner_name} n'a fourni aucune part, alors que {reader} conserve son reçu signé d'une lecture de la section « {sec} » ({t})."
                    ),
                ),
            };
            // The owner's leaf when the owner is blamed, the reader's entry else.
            let at = if blamed == owner { *owner_leaf } else { *index };
            report.anomalies.push(Anomaly {
                member: blamed.to_string(),
                index: Some(at),
                text: anomaly,
            });
            if let (true, Found::OtherReader(_)) = (signed, &found) {
                continue; // That read is told once, from its owner's entry.
            }
            // Not confirmed: told as what the reader holds, not as a fact.
            let told = if signed {
                format!(
                    "{t} : {}{reader} détient le reçu signé par {owner_name} d'une lecture de la section « {sec} », que {owner_name} ne mentionne pas pour ce dossier (voir les anomalies).",
                    if break_glass.is_some() {
                        "ACCÈS EN URGENCE, SANS CONSENTEMENT : "
                    } else {
                        ""
                    },
                )
            } else {
                format!(
                    "{t} : {reader} déclare avoir consulté la section « {sec} » tenue par {owner_name}, sans en conserver de reçu signé (voir les anomalies)."
                )
            };
            report.lines.push(c.line(
                (*index, raw, e, proof),
                told,
                break_glass.is_some(),
                Vec::new(),
            ));
        }
    }
    for c in checked {
        for (index, raw, e, proof) in &c.entries {
            let Some((text, break_glass)) =
                describe(&c.member, e, names, report.agent_names, &consents)
            else {
                continue;
            };
            let confirmed_by = confirmed
                .remove(&(c.member.clone(), *index))
                .unwrap_or_default();
            let text = if confirmed_by.is_empty() {
                text
            } else {
                let who: Vec<String> = confirmed_by.iter().map(|m| names.of(m)).collect();
                format!(
                    "{text} Confirmé par le reçu que conserve {}.",
                    who.join(" et ")
                )
            };
            report
                .lines
                .push(c.line((*index, raw, e, proof), text, break_glass, confirmed_by));
        }
    }
}

impl Checked {
    /// The report's line for one of this part's entries, with its proof.
    fn line(
        &self,
        (index, raw, e, proof): (u64, &[u8], &AuditEntry, &[Hash]),
        text: String,
        break_glass: bool,
        confirmed_by: Vec<MemberId>,
    ) -> Line {
        Line {
            member: self.member.clone(),
            index,
            time: e.time,
            text,
            break_glass,
            witnessed: index < self.witnessed,
            confirmed_by,
            entry: String::from_utf8_lossy(raw).into_owned(),
            leaf_hash: merkle::leaf_hash(raw),
            proof: TlogProof {
                extra: None,
                index,
                hashes: proof.to_vec(),
                checkpoint: self.note.clone(),
            }
            .encode(),
        }
    }
}

/// One entry in French, and whether it is an access without consent; none
/// for what the person is not concerned by (MLS groups, mirrors of entries
/// another member's part tells, receipts: told with the owner's read).
fn describe(
    at: &MemberId,
    e: &AuditEntry,
    names: &Names<'_>,
    agent_names: bool,
    consents: &Consents<'_>,
) -> Option<(String, bool)> {
    use AuditEvent as E;
    let inst = names.of(at);
    let agent = |user: &str| {
        if agent_names {
            format!(" (agent « {user} »)")
        } else {
            String::new()
        }
    };
    let list = |v: Vec<String>| v.join(" et ");
    let sections = |s: &[Section]| list(s.iter().map(|s| section_fr(*s).to_owned()).collect());
    let t = when(e.time);
    let text = match &e.event {
        E::DossierOpened { by, .. } => {
            format!("{t} : {inst}{} a ouvert votre dossier.", agent(by.as_str()))
        }
        E::DossierAttached { from, by, .. } => format!(
            "{t} : {inst}{} s'est rattaché à votre dossier, tenu par {}.",
            agent(by.as_str()),
            names.of(from)
        ),
        E::ReferentSet {
            member, user, by, ..
        } => format!(
            "{t} : {inst}{} a désigné votre référent de parcours : {}{}.",
            agent(by.as_str()),
            if agent_names {
                format!("« {user} », de ")
            } else {
                "un agent de ".to_owned()
            },
            names.of(member)
        ),
        E::DossierClosed { by: Some(by), .. } => {
            format!(
                "{t} : {inst}{} a clôturé votre dossier.",
                agent(by.as_str())
            )
        }
        E::DossierErased { .. } => {
            format!("{t} : {inst} a effacé ce qu'il conservait de votre dossier.")
        }
        E::SectionWritten { section, by, .. } => format!(
            "{t} : {inst}{} a mis à jour la section « {} ».",
            agent(by.as_str()),
            section_fr(*section)
        ),
        E::ConsentGranted {
            sections: shared,
            audience,
            until,
            basis,
            masked,
            ..
        } => {
            let to = list(audience.iter().map(|m| names.of(m)).collect());
            let mut parts = Vec::new();
            if !shared.is_empty() {
                parts.push(match basis {
                    LegalBasis::Consent => format!(
                        "vous avez consenti à ce que {inst} partage {} avec {to}, jusqu'au {}",
                        sections(shared),
                        date_fr(*until)
                    ),
                    LegalBasis::LegalMission { provision } => format!(
                        "{inst} partage {} avec {to} au titre d'une mission prévue par la loi ({provision}), jusqu'au {}",
                        sections(shared),
                        date_fr(*until)
                    ),
                });
            }
            if !masked.is_empty() {
                parts.push(format!(
                    "vous avez masqué {} à tous les partenaires, jusqu'au {}",
                    sections(masked),
                    date_fr(*until)
                ));
            }
            format!("{t} : {}.", parts.join(" ; "))
        }
        E::ConsentRevoked { consent, .. } => match consents.get(&(at, consent)) {
            Some((audience, _)) => format!(
                "{t} : vous avez retiré votre consentement au partage par {inst} avec {}.",
                list(audience.iter().map(|m| names.of(m)).collect())
            ),
            None => format!("{t} : vous avez retiré un consentement enregistré par {inst}."),
        },
        E::ConsentShown { by, .. } => format!(
            "{t} : {inst}{} a imprimé le reçu d'un de vos consentements.",
            agent(by.as_str())
        ),
        E::ReadGranted {
            reader,
            user,
            section,
            purpose,
            consent,
            break_glass,
            ..
        } => {
            let basis = match (break_glass, consent) {
                (Some(g), _) => format!("accès en urgence {g}, sans votre consentement"),
                (None, Some(k)) => match consents.get(&(at, k)) {
                    Some((_, LegalBasis::LegalMission { provision })) => {
                        format!("mission prévue par la loi ({provision})")
                    }
                    _ => format!("votre consentement {k}"),
                },
                (None, None) => "aucune".into(),
            };
            return Some((
                format!(
                    "{t} : {}{inst} a communiqué la section « {} » à {}{}. Motif : {purpose}. Base : {basis}.",
                    if break_glass.is_some() {
                        "ACCÈS EN URGENCE, SANS CONSENTEMENT : "
                    } else {
                        ""
                    },
                    section_fr(*section),
                    names.of(reader),
                    agent(user.as_str()),
                ),
                break_glass.is_some(),
            ));
        }
        E::BreakGlassGranted {
            grant,
            reader,
            user,
            sections: opened,
            justification,
            until,
            ..
        } => {
            return Some((
                format!(
                    "{t} : ACCÈS EN URGENCE (bris de glace {grant}) ouvert par {inst} à {}{} pour {}, sans votre consentement, jusqu'{}. Justification déclarée : {justification}. Cet accès est contrôlé par un auditeur.",
                    names.of(reader),
                    agent(user.as_str()),
                    sections(opened),
                    when(*until).replacen("le ", "au ", 1),
                ),
                true,
            ));
        }
        E::BreakGlassEnded { grant, .. } => {
            format!("{t} : l'accès en urgence {grant} a pris fin.")
        }
        E::BreakGlassReviewed { grant, .. } => {
            format!("{t} : un auditeur de {inst} a contrôlé l'accès en urgence {grant}.")
        }
        E::ReadDenied {
            reader,
            user,
            section,
            ..
        } => format!(
            "{t} : {}{} a demandé la section « {} » à {inst} ; l'accès a été refusé.",
            names.of(reader),
            agent(user.as_str()),
            section_fr(*section)
        ),
        E::SectionRead { section, by, .. } => format!(
            "{t} : {inst}{} a consulté la section « {} » dans son propre dossier.",
            agent(by.as_str()),
            section_fr(*section)
        ),
        E::DossierConsulted { by, .. } => format!(
            "{t} : {inst}{} a ouvert la fiche de votre dossier (identité, parties et consentements, sans leur contenu).",
            agent(by.as_str())
        ),
        E::AidsMatched { by, proposed, .. } => format!(
            "{t} : {inst}{} a recherché les aides auxquelles vous pourriez avoir droit, à partir des sections de votre dossier qu'il peut lire ({proposed} aide{} proposée{}).",
            agent(by.as_str()),
            if *proposed > 1 { "s" } else { "" },
            if *proposed > 1 { "s" } else { "" },
        ),
        E::OrientationSent {
            to, service, by, ..
        } => format!(
            "{t} : {inst}{} vous a orienté vers {} pour le service « {service} », avec votre consentement.",
            agent(by.as_str()),
            names.of(to)
        ),
        E::OrientationReceived { from, service, .. } => format!(
            "{t} : {inst} a reçu votre orientation de la part de {} pour le service « {service} ».",
            names.of(from)
        ),
        E::OrientationStepped { status, by, .. } => {
            let done = match status {
                crate::types::OrientationStatus::Sent => "envoyée",
                crate::types::OrientationStatus::Accepted => "acceptée",
                crate::types::OrientationStatus::Declined => "déclinée",
                crate::types::OrientationStatus::Completed => "menée à son terme",
            };
            match by {
                Some(by) => format!(
                    "{t} : {inst}{} a noté votre orientation comme {done}.",
                    agent(by.as_str())
                ),
                None => format!("{t} : {inst} a appris que votre orientation était {done}."),
            }
        }
        E::CommissionConvened {
            participants, by, ..
        } => format!(
            "{t} : {inst}{} a réuni une commission de coordination sur votre dossier avec {}, avec votre consentement.",
            agent(by.as_str()),
            list(participants.iter().map(|m| names.of(m)).collect())
        ),
        E::CommissionInvited { from, .. } => format!(
            "{t} : {inst} a été invité par {} à la commission de coordination sur votre dossier.",
            names.of(from)
        ),
        E::CommissionMinutes { decisions, by, .. } => match by {
            Some(by) => format!(
                "{t} : {inst}{} a arrêté le compte rendu de la commission de coordination ({decisions} décision(s) inscrite(s) à votre plan d'accompagnement).",
                agent(by.as_str())
            ),
            None => format!(
                "{t} : {inst} a reçu le compte rendu de la commission de coordination sur votre dossier."
            ),
        },
        E::ConsentsListed { by, .. } => format!(
            "{t} : {inst}{} a consulté la liste de vos consentements.",
            agent(by.as_str())
        ),
        _ => return None,
    };
    Some((text, false))
}

impl AccessReport {
    /// The header lines: the dossier, when, the sources and what they rest on.
    pub fn header(&self) -> (String, Vec<String>) {
        let title = format!("Rapport d'accès au dossier {}", self.dossier);
        let mut head = vec![format!(
            "Établi {} (heure de Paris), à partir des journaux de {} partenaire(s) qui en détiennent une partie.",
            when(self.generated_at),
            self.sources.len()
        )];
        for s in &self.sources {
            head.push(match &s.problem {
                Some(p) => format!("{} : {p}.", s.name),
                None => {
                    let witnesses = if s.cosigners.is_empty() {
                        "pas encore contresigné par un autre partenaire".to_owned()
                    } else {
                        format!(
                            "contresigné par {} autre(s) partenaire(s) jusqu'à l'événement {}",
                            s.cosigners.len(),
                            s.witnessed_size
                        )
                    };
                    format!(
                        "{} : {} entrée(s) sur ce dossier, chacune prouvée dans son journal signé de {} événements, {witnesses}.",
                        s.name, s.entries, s.size
                    )
                }
            });
        }
        if !self.unanswered.is_empty() {
            let who: Vec<String> = self
                .unanswered
                .iter()
                .map(|(m, why)| format!("{m} ({why})"))
                .collect();
            head.push(format!(
                "Sans réponse, et rien n'indique qu'ils détiennent une partie de ce dossier : {}.",
                who.join(", ")
            ));
        }
        head.push(if self.agent_names {
            "Les agents sont nommés par l'identifiant que leur donne leur institution.".into()
        } else {
            "Les noms des agents ne sont pas communiqués (la charte du groupement ne le prévoit pas) : chaque accès reste attribué, dans le journal de l'institution, à un agent identifié.".into()
        });
        (title, head)
    }

    /// The report as text: a title, the sources, one line per entry, the
    /// anomalies; each line with its control characters escaped (what a
    /// node logged, a purpose or a justification, cannot start a line).
    pub fn text(&self) -> String {
        let (title, head) = self.header();
        let mut out = vec![title];
        out.extend(head);
        out.push(String::new());
        if self.lines.is_empty() {
            out.push("Aucun accès ni consentement enregistré pour ce dossier.".into());
        }
        for l in &self.lines {
            out.push(format!("- {}", l.text));
        }
        if !self.anomalies.is_empty() {
            out.push(String::new());
            out.push("ANOMALIES (signalées au délégué à la protection des données) :".into());
            for a in &self.anomalies {
                out.push(format!("! {}", a.text));
            }
        }
        out.iter()
            .map(|l| escape_controls(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The report as a printable French HTML page: escaped, break-glass
    /// accesses and anomalies standing out.
    pub fn html(&self) -> String {
        let (title, head) = self.header();
        let items: Vec<String> = self
            .lines
            .iter()
            .map(|l| {
                format!(
                    "<li{}>{}</li>",
                    if l.break_glass {
                        " class=\"urgence\""
                    } else {
                        ""
                    },
                    esc(&l.text)
                )
            })
            .collect();
        let anomalies = if self.anomalies.is_empty() {
            String::new()
        } else {
            format!(
                "<section class=\"anomalies\">\n<h2>Anomalies</h2>\n<p>Ces points ont été signalés au délégué à la protection des données.</p>\n<ul>\n{}\n</ul>\n</section>\n",
                self.anomalies
                    .iter()
                    .map(|a| format!("<li>{}</li>", esc(&a.text)))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        };
        let body = if items.is_empty() {
            "<p>Aucun accès ni consentement enregistré pour ce dossier.</p>".to_owned()
        } else {
            format!("<ol>\n{}\n</ol>", items.join("\n"))
        };
        format!(
            "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
             <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.5;color:#161616}}\
             li{{margin:.5em 0}}.urgence{{border-left:4px solid #c00;padding-left:.5em;font-weight:bold}}\
             .anomalies{{border:2px solid #c00;padding:0 1em}}.sources{{font-size:.9em;color:#3a3a3a}}\
             @media print{{body{{margin:0}}}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<div class=\"sources\">\n{}\n</div>\n{body}\n{anomalies}\
             <p>Chaque accès à votre dossier est inscrit dans le journal signé et vérifiable de l'institution qui l'a accordé, et contresigné par les autres partenaires. Pour toute question, adressez-vous à l'accueil qui tient votre dossier ou à son délégué à la protection des données.</p>\n</body>\n</html>\n",
            head.iter()
                .map(|h| format!("<p>{}</p>", esc(h)))
                .collect::<Vec<_>>()
                .join("\n"),
            title = esc(&title),
        )
    }

    /// The report as JSON, with stable field names: each entry with its
    /// bytes and its C2SP tlog-proof.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "dossier": self.dossier.as_str(),
            "generated_at": self.generated_at,
            "time_zone": "Europe/Paris",
            "language": "fr",
            "agent_names": self.agent_names,
            "sources": self.sources.iter().map(|s| serde_json::json!({
                "member": s.member.as_str(),
                "name": s.name,
                "size": s.size,
                "witnessed_size": s.witnessed_size,
                "cosigners": s.cosigners.iter().map(MemberId::as_str).collect::<Vec<_>>(),
                "entries": s.entries,
                "problem": s.problem,
            })).collect::<Vec<_>>(),
            "entries": self.lines.iter().map(|l| serde_json::json!({
                "member": l.member.as_str(),
                "index": l.index,
                "time": l.time,
                "text": l.text,
                "break_glass": l.break_glass,
                "witnessed": l.witnessed,
                "confirmed_by": l.confirmed_by.iter().map(MemberId::as_str).collect::<Vec<_>>(),
                // The entry names the agents: given only where the charter
                // allows; its leaf hash, which the proof covers, always.
                "entry": self.agent_names.then_some(&l.entry),
                "leaf_hash": hex::encode(l.leaf_hash),
                "proof": l.proof,
            })).collect::<Vec<_>>(),
            "unanswered": self.unanswered.iter().map(|(m, why)| serde_json::json!({
                "member": m.as_str(),
                "why": why,
            })).collect::<Vec<_>>(),
            "anomalies": self.anomalies.iter().map(|a| serde_json::json!({
                "member": a.member,
                "index": a.index,
                "text": a.text,
            })).collect::<Vec<_>>(),
        })
    }
}

/// HTML-escaped, control characters escaped too.
fn esc(s: &str) -> String {
    escape_controls(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A time as the person reads it: `le 07/12/2026 à 14h05`, in Europe/Paris.
pub fn when(t: i64) -> String {
    crate::types::french_time(t)
        .map(|d| format!("le {d}"))
        .unwrap_or_else(|| format!("à l'instant {t}"))
}

fn date_fr(d: crate::types::Date) -> String {
    crate::types::french_date(&d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_told_in_paris_summer_and_winter() {
        // 2026-03-29 00:59 UTC is still winter (01:59 in Paris); 01:00 UTC is 03:00.
        let change = 1_774_746_000; // 2026-03-29T01:00:00Z
        assert_eq!(when(change - 60), "le 29/03/2026 à 01h59");
        assert_eq!(when(change), "le 29/03/2026 à 03h00");
        // 2026-10-25 01:00 UTC: back to winter time.
        let back = 1_792_890_000; // 2026-10-25T01:00:00Z
        assert_eq!(when(back - 60), "le 25/10/2026 à 02h59");
        assert_eq!(when(back), "le 25/10/2026 à 02h00");
        assert_eq!(when(1_798_761_600), "le 01/01/2027 à 01h00"); // 2027-01-01T00:00:00Z
    }
}
