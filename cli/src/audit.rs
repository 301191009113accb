//! The auditor's side: fetch a node's log, verify it with the node library's
//! own verification code, and write a person's access report (in French).

pub mod verify;

use maillon_node::audit::note::Checkpoint;
use maillon_node::audit::{AuditEntry, AuditEvent, verify_log};
use maillon_node::roster::{Roster, RosterMember};
use maillon_node::types::DossierId;
use maillon_proto::v1 as pb;

use crate::client::Conn;
use crate::error::{CliError, LogFault};

/// A node's log as fetched and verified.
#[derive(Debug)]
pub struct VerifiedLog {
    /// The checkpoint that covers the entries.
    pub checkpoint: Checkpoint,
    /// The signed note of that checkpoint.
    pub note: String,
    /// The entries' bytes, as the node served them (the leaves hash these).
    pub raw: Vec<Vec<u8>>,
    /// The entries, decoded.
    pub entries: Vec<AuditEntry>,
}

/// Fetches a signed checkpoint and every entry it covers, and verifies both
/// against the key the roster lists for the node. A log that does not verify
/// is [`CliError::LogNotVerified`].
pub async fn fetch_and_verify(conn: &Conn, member: &RosterMember) -> Result<VerifiedLog, CliError> {
    let id = &member.card.id;
    let mut api = conn.api();
    let note = api
        .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
        .await?
        .into_inner()
        .checkpoint;
    let origin = maillon_node::audit::origin(id);
    let cp = Checkpoint::verify(&note, &origin, &member.card.signing_key)
        .map_err(|e| CliError::log(id, LogFault::Checkpoint(e)))?;
    let mut raw = Vec::new();
    while (raw.len() as u64) < cp.size {
        let want = (cp.size - raw.len() as u64).min(10_000) as u32;
        let reply = api
            .audit_tail(conn.req(pb::AuditTailRequest {
                limit: want,
                from: Some(raw.len() as u64),
            }))
            .await?
            .into_inner();
        if reply.events.is_empty() {
            return Err(CliError::log(id, LogFault::Short));
        }
        for e in reply.events {
            if e.index != raw.len() as u64 {
                return Err(CliError::log(id, LogFault::OutOfOrder(e.index)));
            }
            raw.push(e.json.into_bytes());
        }
    }
    raw.truncate(cp.size as usize);
    let checkpoint = verify_log(&raw, &note, &origin, &member.card.signing_key)
        .map_err(|e| CliError::log(id, LogFault::Entries(e)))?;
    let entries = raw
        .iter()
        .map(|r| AuditEntry::from_bytes(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::log(id, LogFault::Entries(e)))?;
    Ok(VerifiedLog {
        checkpoint,
        note,
        entries,
        raw,
    })
}

/// Fetches a log as a [`Bundle`](maillon_node::audit::bundle::Bundle): the
/// signed manifest of this node's log (`member` none) or of a member's
/// (asked through this node), then every leaf its checkpoint covers, in
/// pages. Nothing is verified here: [`verify::verify_bundles`] does.
pub async fn fetch_bundle(
    conn: &Conn,
    member: Option<&maillon_node::types::MemberId>,
) -> Result<maillon_node::audit::bundle::Bundle, CliError> {
    use maillon_node::audit::bundle::{Bundle, Leaf};
    let name = member.map(ToString::to_string).unwrap_or_default();
    let mut api = conn.api();
    let m = api
        .audit_manifest(conn.req(pb::AuditManifestRequest {
            member: name.clone(),
        }))
        .await?
        .into_inner();
    let who: maillon_node::types::MemberId = match member {
        Some(m) => m.clone(),
        None => serde_json::from_str::<serde_json::Value>(&m.manifest)
            .ok()
            .and_then(|v| v.get("member")?.as_str()?.parse().ok())
            .ok_or_else(|| CliError::Unexpected("the node's manifest names no member".into()))?,
    };
    let manifest = maillon_node::transport::manifest_from_pb(&who, m)
        .map_err(|e| CliError::Unexpected(e.to_string()))?;
    let size = manifest
        .unverified()
        .ok()
        .and_then(|m| Checkpoint::parse_body(&m.checkpoint))
        .map_or(0, |cp| cp.size);
    let mut leaves: Vec<Leaf> = Vec::new();
    while (leaves.len() as u64) < size {
        let from = leaves.len() as u64;
        let limit = (size - from).min(u64::from(maillon_node::service::MAX_LEAVES_PAGE)) as u32;
        let page = api
            .audit_leaves(conn.req(pb::AuditLeavesRequest {
                member: name.clone(),
                from,
                limit,
            }))
            .await?
            .into_inner();
        let page = maillon_node::transport::leaves_from_pb(&who, page, from, limit)
            .map_err(|e| CliError::log(&who, LogFault::Unexpected(e.to_string())))?;
        if page.leaves.is_empty() {
            return Err(CliError::log(&who, LogFault::Short));
        }
        leaves.extend(page.leaves.into_iter().map(|(_, l)| l));
    }
    Ok(Bundle { manifest, leaves })
}

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
/// signed a fresh checkpoint of the new one) is caught on the next run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditorState {
    /// By member id.
    pub nodes: std::collections::BTreeMap<String, Remembered>,
    /// The leaf hashes verified of each node (kept beside the state file),
    /// to name the first entry a rewritten log changed.
    #[serde(skip)]
    pub leaves: std::collections::BTreeMap<String, Vec<maillon_node::audit::merkle::Hash>>,
}

impl AuditorState {
    /// Reads the state file; an absent file is an empty state.
    pub fn load(path: &std::path::Path) -> Result<Self, CliError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CliError::BadFile {
                path: path.to_owned(),
                what: "auditor state",
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(CliError::io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Writes the state file (0600), replacing it whole.
    pub fn save(&self, path: &std::path::Path) -> Result<(), CliError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(CliError::io(format!("writing {}", tmp.display())))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(CliError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(CliError::io(format!("writing {}", path.display())))
    }
}

/// [`fetch_and_verify`], then checks the log against the checkpoint this
/// auditor verified of the node before (it must extend it: same first
/// entries, never fewer), and remembers the new one.
pub async fn verify_and_remember(
    conn: &Conn,
    member: &RosterMember,
    state: &mut AuditorState,
    now: i64,
) -> Result<(VerifiedLog, Option<Remembered>), CliError> {
    let id = &member.card.id;
    let log = fetch_and_verify(conn, member).await?;
    let before = state.nodes.get(id.as_str()).cloned();
    if let Some(b) = &before {
        if log.checkpoint.size < b.size {
            return Err(CliError::log(
                id,
                LogFault::Shrank {
                    before: b.size,
                    now: log.checkpoint.size,
                },
            ));
        }
        let leaves: Vec<maillon_node::audit::merkle::Hash> = log.raw[..b.size as usize]
            .iter()
            .map(|e| maillon_node::audit::merkle::leaf_hash(e))
            .collect();
        if hex::encode(maillon_node::audit::merkle::root(&leaves)) != b.root {
            return Err(CliError::log(id, LogFault::Rewritten { before: b.size }));
        }
    }
    state.nodes.insert(
        id.to_string(),
        Remembered {
            size: log.checkpoint.size,
            root: hex::encode(log.checkpoint.root),
            checkpoint: log.note.clone(),
            verified_at: now,
        },
    );
    Ok((log, before))
}

pub use maillon_node::consent::receipt::section_fr;

pub use maillon_node::types::paris;

fn when(t: i64) -> String {
    paris(t)
        .map(|d| {
            format!(
                "le {:02}/{:02}/{} à {:02}h{:02}",
                d.day(),
                u8::from(d.month()),
                d.year(),
                d.hour(),
                d.minute()
            )
        })
        .unwrap_or_else(|| format!("à l'instant {t}"))
}

fn date_fr(d: maillon_node::types::Date) -> String {
    let s = d.to_string();
    match (s.get(0..4), s.get(5..7), s.get(8..10)) {
        (Some(y), Some(m), Some(d)) => format!("{d}/{m}/{y}"),
        _ => s,
    }
}

fn name_of(roster: &Roster, id: &maillon_node::types::MemberId) -> String {
    roster
        .member(id)
        .map(|m| m.card.name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// The person's access report for one dossier, from the verified log of the
/// member that holds it: who read what, when, why, and what was refused.
pub fn access_report(
    roster: &Roster,
    owner: &RosterMember,
    dossier: &DossierId,
    log: &VerifiedLog,
) -> String {
    let mut lines = vec![
        format!("Rapport d'accès au dossier {dossier}"),
        format!("Tenu par : {}", owner.card.name),
        format!(
            "Journal vérifié : {} événements, point de contrôle signé par {}.",
            log.checkpoint.size, owner.card.id
        ),
        String::new(),
    ];
    let mut n = 0;
    for e in &log.entries {
        let line = match &e.event {
            AuditEvent::ConsentGranted {
                dossier: d,
                sections,
                audience,
                until,
                basis,
                masked,
                ..
            } if d == dossier => {
                let list = |v: Vec<String>| v.join(" et ");
                let sections_fr = |s: &[maillon_node::types::Section]| {
                    list(s.iter().map(|s| section_fr(*s).to_owned()).collect())
                };
                let mut parts = Vec::new();
                if !sections.is_empty() {
                    let to = list(audience.iter().map(|m| name_of(roster, m)).collect());
                    parts.push(match basis {
                        maillon_node::types::LegalBasis::Consent => format!(
                            "vous avez consenti à partager {} avec {to}, jusqu'au {}",
                            sections_fr(sections),
                            date_fr(*until)
                        ),
                        maillon_node::types::LegalBasis::LegalMission { provision } => format!(
                            "{} partagé avec {to} au titre d'une mission prévue par la loi ({provision}), jusqu'au {}",
                            sections_fr(sections),
                            date_fr(*until)
                        ),
                    });
                }
                if !masked.is_empty() {
                    parts.push(format!(
                        "vous avez masqué {} à tous les partenaires, jusqu'au {}",
                        sections_fr(masked),
                        date_fr(*until)
                    ));
                }
                format!("{} : {}.", when(e.time), parts.join(" ; "))
            }
            AuditEvent::ConsentRevoked {
                dossier: d,
                consent,
                ..
            } if d == dossier => {
                let to = log.entries.iter().find_map(|g| match &g.event {
                    AuditEvent::ConsentGranted {
                        consent: c,
                        audience,
                        ..
                    } if c == consent => Some(
                        audience
                            .iter()
                            .map(|m| name_of(roster, m))
                            .collect::<Vec<_>>()
                            .join(" et "),
                    ),
                    _ => None,
                });
                match to {
                    Some(to) => format!(
                        "{} : vous avez retiré votre consentement au partage avec {to}.",
                        when(e.time)
                    ),
                    None => format!("{} : vous avez retiré un consentement.", when(e.time)),
                }
            }
            AuditEvent::ReadGranted {
                dossier: d,
                reader,
                user,
                section,
                purpose,
                break_glass,
                ..
            } if d == dossier => format!(
                "{} : {}{} (agent « {} ») a consulté la section « {} ». Motif : {}.",
                when(e.time),
                if break_glass.is_some() {
                    "ACCÈS EN URGENCE, SANS CONSENTEMENT : "
                } else {
                    ""
                },
                name_of(roster, reader),
                user,
                section_fr(*section),
                purpose
            ),
            AuditEvent::BreakGlassGranted {
                dossier: d,
                grant,
                reader,
                user,
                sections,
                justification,
                until,
                ..
            } if d == dossier => format!(
                "{} : ACCÈS EN URGENCE (bris de glace {grant}) ouvert à {} (agent « {} ») pour {}, sans votre consentement, jusqu'{}. Justification déclarée : {}. Cet accès est contrôlé par un auditeur.",
                when(e.time),
                name_of(roster, reader),
                user,
                sections
                    .iter()
                    .map(|s| section_fr(*s))
                    .collect::<Vec<_>>()
                    .join(", "),
                when(*until).replacen("le ", "au ", 1),
                justification
            ),
            AuditEvent::BreakGlassEnded { dossier: d, grant } if d == dossier => format!(
                "{} : l'accès en urgence {grant} a pris fin.",
                when(e.time)
            ),
            AuditEvent::BreakGlassReviewed { grant, .. }
                if log.entries.iter().any(|g| matches!(&g.event,
                    AuditEvent::BreakGlassGranted { grant: id, dossier: d, .. } if id == grant && d == dossier)) =>
            {
                format!(
                    "{} : un auditeur a contrôlé l'accès en urgence {grant}.",
                    when(e.time)
                )
            }
            AuditEvent::ReadDenied {
                dossier: d,
                reader,
                user,
                section,
                ..
            } if d == dossier => format!(
                "{} : {} (agent « {} ») a demandé la section « {} » ; l'accès a été refusé.",
                when(e.time),
                name_of(roster, reader),
                user,
                section_fr(*section)
            ),
            AuditEvent::SectionRead {
                dossier: d,
                section,
                by,
            } if d == dossier => format!(
                "{} : {} (agent « {} ») a consulté la section « {} » dans son propre dossier.",
                when(e.time),
                owner.card.name,
                by,
                section_fr(*section)
            ),
            AuditEvent::ConsentsListed { dossier: d, by } if d == dossier => format!(
                "{} : {} (agent « {} ») a consulté la liste de vos consentements.",
                when(e.time),
                owner.card.name,
                by
            ),
            _ => continue,
        };
        n += 1;
        lines.push(format!("- {line}"));
    }
    if n == 0 {
        lines.push("Aucun accès ni consentement enregistré pour ce dossier.".into());
    }
    lines.join("\n")
}

/// The access report as a printable French HTML page (escaped; break-glass
/// accesses stand out), from the text [`access_report`] writes.
pub fn access_report_html(text: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut lines = text.lines();
    let title = esc(lines.next().unwrap_or("Rapport d'accès"));
    let mut head = Vec::new();
    let mut items = Vec::new();
    for line in lines {
        match line.strip_prefix("- ") {
            Some(item) => {
                let urgent = item.contains("ACCÈS EN URGENCE");
                items.push(format!(
                    "<li{}>{}</li>",
                    if urgent { " class=\"urgence\"" } else { "" },
                    esc(item)
                ));
            }
            None if !line.is_empty() => head.push(format!("<p>{}</p>", esc(line))),
            None => {}
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.5}}\
         li{{margin:.5em 0}}.urgence{{border-left:4px solid #c00;padding-left:.5em;font-weight:bold}}\
         @media print{{body{{margin:0}}}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{}\n<ol>\n{}\n</ol>\n\
         <p>Chaque accès à votre dossier est inscrit dans un journal signé et vérifiable. Pour toute question, adressez-vous à l'accueil qui tient votre dossier ou à son délégué à la protection des données.</p>\n</body>\n</html>\n",
        head.join("\n"),
        items.join("\n")
    )
}

/// The access report as JSON: its header lines and one item per entry,
/// each flagged when it is a break-glass access.
pub fn access_report_json(dossier: &DossierId, text: &str) -> serde_json::Value {
    let mut lines = text.lines();
    let title = lines.next().unwrap_or_default();
    let mut header = Vec::new();
    let mut entries = Vec::new();
    for line in lines {
        match line.strip_prefix("- ") {
            Some(item) => entries.push(serde_json::json!({
                "text": item,
                "break_glass": item.contains("ACCÈS EN URGENCE"),
            })),
            None if !line.is_empty() => header.push(line),
            None => {}
        }
    }
    serde_json::json!({
        "dossier": dossier.as_str(),
        "title": title,
        "header": header,
        "entries": entries,
        "time_zone": "Europe/Paris",
        "language": "fr",
    })
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
