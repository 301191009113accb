//! `maillon audit …`: verifying logs online or from exported bundles, the
//! export, the person's access report, this node's log, checkpoint,
//! witnesses and break-glass reviews (auditor).

use std::path::Path;

use maillon_node::audit::bundle::{Bundle, Leaf};
use maillon_node::types::{DossierId, MemberId};
use maillon_proto::v1 as pb;

use super::{arg, say, say_lines};
use crate::args::AuditCmd;
use crate::error::CliError;
use crate::escape::escape_controls;

/// Runs `maillon audit …`; only `verify --offline` needs no node.
pub(super) async fn run(
    profile_path: Option<&Path>,
    cmd: AuditCmd,
    json: bool,
) -> Result<(), CliError> {
    if let AuditCmd::Verify {
        roster,
        state,
        offline,
        ..
    } = &cmd
        && !offline.is_empty()
    {
        let mut bundles = Vec::new();
        for path in offline {
            let file = std::fs::File::open(path)
                .map_err(CliError::io(format!("reading {}", path.display())))?;
            let bundle = Bundle::read(std::io::BufReader::new(file)).map_err(|source| {
                CliError::NotABundle {
                    path: path.clone(),
                    source,
                }
            })?;
            bundles.push(bundle);
        }
        return verify(
            roster,
            state.as_deref(),
            profile_path,
            (bundles, Vec::new(), true),
            json,
        );
    }
    let (_, conn) = super::connect(profile_path)?;
    match cmd {
        AuditCmd::Verify {
            roster,
            state,
            node,
            all,
            ..
        } => {
            let genesis = super::gov::load_roster(&roster)?;
            let node: Option<MemberId> = node.map(|n| super::arg("node", &n)).transpose()?;
            let (bundles, unfetched) =
                crate::audit::fetch_bundles(&conn, genesis.signed(), node.as_ref(), all).await?;
            verify(
                &roster,
                state.as_deref(),
                profile_path,
                (bundles, unfetched, false),
                json,
            )?;
        }
        AuditCmd::Export { out, node } => {
            let node: Option<MemberId> = node.map(|n| super::arg("node", &n)).transpose()?;
            let bundle = crate::audit::fetch_bundle(&conn, node.as_ref()).await?;
            let who = bundle
                .manifest
                .claimed_member()
                .map_err(|e| CliError::Unexpected(e.to_string()))?;
            write_new_private(&out, |f| bundle.write(f))?;
            let withheld = bundle
                .leaves
                .iter()
                .filter(|l| matches!(l, Leaf::Withheld(_)))
                .count();
            super::done(
                json,
                serde_json::json!({
                    "member": who.to_string(),
                    "file": out.display().to_string(),
                    "entries": bundle.leaves.len(),
                    "withheld": withheld,
                }),
                &format!(
                    "{who}'s log exported to {}: {} entries ({withheld} as their hash only), its signed manifest, checkpoints, cosignatures and roster chain",
                    out.display(),
                    bundle.leaves.len()
                ),
            );
        }
        AuditCmd::Report {
            dossier,
            roster,
            format,
        } => {
            let dossier: DossierId = super::arg("dossier", &dossier)?;
            let genesis = super::gov::load_roster(&roster)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let report =
                crate::audit::report::gather(&conn, genesis.signed(), &dossier, now).await?;
            let format = if json { "json" } else { format.as_str() };
            match format {
                "html" => say_lines(&report.html()),
                "json" => super::print_value(&report.json()),
                _ => say_lines(&report.text()),
            }
            if !report.anomalies.is_empty() {
                return Err(CliError::AuditFailed {
                    findings: report.anomalies.len(),
                    what: "the report's sources do not all answer or hold (see the report)",
                });
            }
        }
        AuditCmd::Vkey => {
            let r = conn
                .api()
                .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
                .await?
                .into_inner();
            super::done(
                json,
                serde_json::json!({ "verifier_key": r.verifier_key }),
                &r.verifier_key,
            );
        }
        AuditCmd::Witness => {
            let r = conn
                .api()
                .audit_witness(conn.req(pb::AuditWitnessRequest {}))
                .await?
                .into_inner();
            if json {
                let peers: Vec<serde_json::Value> = r
                    .peers
                    .iter()
                    .map(|p| serde_json::json!({"member": p.member, "checkpoint": p.checkpoint, "at": p.at}))
                    .collect();
                let alarms: Vec<serde_json::Value> = r
                    .alarms
                    .iter()
                    .map(|a| serde_json::json!({"member": a.member, "reason": a.reason, "at": a.at, "first": a.first, "second": a.second}))
                    .collect();
                super::print_value(&serde_json::json!({
                    "peers": peers,
                    "alarms": alarms,
                    "cosigned": r.cosigned,
                }));
                return Ok(());
            }
            for p in &r.peers {
                let size = p.checkpoint.lines().nth(1).unwrap_or("?");
                say(&format!(
                    "{}: tree of {size} entries witnessed and cosigned at {}",
                    p.member,
                    super::utc(p.at)
                ));
            }
            if r.alarms.is_empty() {
                say("no alarm: every peer's history extends what this node witnessed");
            }
            for a in &r.alarms {
                say(&format!(
                    "ALARM {} at {}: {}",
                    a.member,
                    super::utc(a.at),
                    a.reason
                ));
            }
            say("this node's checkpoint, with the cosignatures it gathered:");
            say_lines(&r.cosigned);
        }
        AuditCmd::Tail { limit } => {
            let r = conn
                .api()
                .audit_tail(conn.req(pb::AuditTailRequest { limit, from: None }))
                .await?
                .into_inner();
            if json {
                let events: Vec<serde_json::Value> = r
                    .events
                    .iter()
                    .map(|e| {
                        let entry = serde_json::from_str::<serde_json::Value>(&e.json)
                            .unwrap_or(serde_json::Value::String(e.json.clone()));
                        serde_json::json!({ "index": e.index, "entry": entry })
                    })
                    .collect();
                super::print_value(&serde_json::json!({ "size": r.tree_size, "events": events }));
                return Ok(());
            }
            for e in r.events {
                // Entries quote readers' purposes and user names.
                say(&format!("{:>6}  {}", e.index, e.json));
            }
            eprintln!("({} events in the log)", r.tree_size);
        }
        AuditCmd::Search {
            dossier,
            kind,
            since,
            until,
            before,
            limit,
        } => {
            if let Some(d) = &dossier {
                arg::<maillon_node::types::DossierId>("dossier", d)?;
            }
            let day = |name: &'static str, v: &Option<String>| {
                v.as_deref()
                    .map(|d| arg::<maillon_node::types::Date>(name, d))
                    .transpose()
            };
            let r = conn
                .api()
                .audit_search(conn.req(pb::AuditSearchRequest {
                    dossier: dossier.unwrap_or_default(),
                    kind: kind.unwrap_or_default(),
                    since: day("since", &since)?.map(|d| d.start_unix()),
                    until: day("until", &until)?.map(|d| d.end_unix()),
                    before,
                    limit,
                }))
                .await?
                .into_inner();
            if json {
                let events: Vec<serde_json::Value> = r
                    .events
                    .iter()
                    .map(|e| {
                        let entry = serde_json::from_str::<serde_json::Value>(&e.json)
                            .unwrap_or(serde_json::Value::String(e.json.clone()));
                        serde_json::json!({ "index": e.index, "entry": entry })
                    })
                    .collect();
                super::print_value(
                    &serde_json::json!({ "size": r.tree_size, "events": events, "next": r.next }),
                );
                return Ok(());
            }
            for e in &r.events {
                // Entries quote readers' purposes and user names.
                say(&format!("{:>6}  {}", e.index, e.json));
            }
            match r.next {
                Some(next) => eprintln!(
                    "({} found; older entries remain: --before {next})",
                    r.events.len()
                ),
                None => eprintln!("({} found; the whole log was looked at)", r.events.len()),
            }
        }
        AuditCmd::Checkpoint => {
            let r = conn
                .api()
                .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
                .await?
                .into_inner();
            if json {
                super::print_value(&serde_json::json!({
                    "checkpoint": r.checkpoint,
                    "verifier_key": r.verifier_key,
                }));
                return Ok(());
            }
            say_lines(&r.checkpoint);
            eprintln!("verifier key: {}", escape_controls(&r.verifier_key));
        }
        AuditCmd::BreakGlass { pending } => {
            let r = conn
                .api()
                .list_break_glass(conn.req(pb::ListBreakGlassRequest { pending }))
                .await?
                .into_inner();
            if json {
                let items: Vec<serde_json::Value> = r
                    .accesses
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "id": a.id,
                            "dossier": a.dossier,
                            "owner": a.owner,
                            "reader": a.reader,
                            "user": (!a.user.is_empty()).then_some(&a.user),
                            "sections": a.sections,
                            "justification": (!a.justification.is_empty()).then_some(&a.justification),
                            "granted_at": a.granted_at,
                            "until": a.until,
                            "ended": a.ended,
                            "reviewed_by": (!a.reviewed_by.is_empty()).then_some(&a.reviewed_by),
                            "reviewed_at": (a.reviewed_at != 0).then_some(a.reviewed_at),
                            "comment": (!a.comment.is_empty()).then_some(&a.comment),
                        })
                    })
                    .collect();
                super::print_value(&serde_json::Value::Array(items));
                return Ok(());
            }
            if r.accesses.is_empty() {
                say(if pending {
                    "no break-glass access waits for review"
                } else {
                    "no break-glass access here"
                });
            }
            for a in &r.accesses {
                let state = if a.ended { "ended" } else { "open" };
                let review = if a.reviewed_by.is_empty() {
                    "NOT REVIEWED".to_owned()
                } else {
                    format!("reviewed by {}: {}", a.reviewed_by, a.comment)
                };
                say(&format!(
                    "{}  {}  {} read {} by {}{}  {} to {} [{state}]  {review}",
                    a.id,
                    a.dossier,
                    a.reader,
                    a.sections.join(","),
                    a.owner,
                    if a.user.is_empty() {
                        String::new()
                    } else {
                        format!(" (user {})", a.user)
                    },
                    super::utc(a.granted_at),
                    super::utc(a.until),
                ));
                if !a.justification.is_empty() {
                    say(&format!("    justification: {}", a.justification));
                }
            }
        }
        AuditCmd::Review { id, comment } => {
            let id: maillon_node::types::GrantId = super::arg("id", &id)?;
            maillon_node::types::check_sentence(
                "comment",
                &comment,
                maillon_node::service::MIN_REVIEW_COMMENT,
            )
            .map_err(CliError::bad_arg("comment"))?;
            conn.api()
                .review_break_glass(conn.req(pb::ReviewBreakGlassRequest {
                    id: id.to_string(),
                    comment,
                }))
                .await?;
            super::done(
                json,
                serde_json::json!({ "id": id.to_string(), "reviewed": true }),
                &format!("break-glass access {id} reviewed"),
            );
        }
    }
    Ok(())
}

/// Verifies `bundles` (and counts `unfetched` logs as failures) against the
/// genesis at `roster` and the auditor's state; prints the outcome.
fn verify(
    roster: &Path,
    state: Option<&Path>,
    profile_path: Option<&Path>,
    (bundles, unfetched, offline): (Vec<Bundle>, Vec<crate::audit::verify::Finding>, bool),
    json: bool,
) -> Result<(), CliError> {
    let genesis = super::gov::load_roster(roster)?;
    let state_path = state.map(Path::to_path_buf).unwrap_or_else(|| {
        profile_path
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join("audit-state.json")
    });
    let mut memory = crate::audit::load_state(&state_path)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let check = if offline {
        crate::audit::verify::verify_exports
    } else {
        crate::audit::verify::verify_bundles
    };
    let mut outcome = check(genesis.signed(), &bundles, Some(&mut memory), now);
    outcome.findings.extend(unfetched);
    // What was found is printed first: a state that cannot be saved loses
    // the memory of this run, not its findings.
    if json {
        super::print_value(&outcome.json());
    } else {
        // Reasons quote what nodes served: escaped by `say`.
        for line in outcome.text() {
            say(&line);
        }
    }
    crate::audit::save_state(&mut memory, &state_path)?;
    if outcome.failed() {
        return Err(CliError::AuditFailed {
            findings: outcome.findings.len(),
            what: "the logs do not all verify",
        });
    }
    Ok(())
}

/// Creates `path` (0600, never over an existing file), writes it with
/// `write`, and syncs it.
fn write_new_private(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::Exists {
                    path: path.to_owned(),
                }
            } else {
                CliError::io(format!("writing {}", path.display()))(e)
            }
        })?;
    let mut w = std::io::BufWriter::new(&file);
    let written = write(&mut w)
        .and_then(|()| w.into_inner().map_err(|e| e.into_error()).map(|_| ()))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // No half-written export is left to be taken for a whole one.
        let _ = std::fs::remove_file(path);
        return Err(CliError::io(format!("writing {}", path.display()))(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_new_private;

    #[test]
    fn an_export_that_fails_halfway_leaves_no_file_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log.bundle");
        let failed = write_new_private(&path, |w| {
            std::io::Write::write_all(w, b"the first half of an export")?;
            Err(std::io::Error::other("the node went away"))
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "no half-written export is left");
        write_new_private(&path, |w| std::io::Write::write_all(w, b"whole")).expect("written");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = write_new_private(&path, |w| std::io::Write::write_all(w, b"other"));
        assert!(matches!(again, Err(crate::CliError::Exists { .. })));
        assert_eq!(std::fs::read(&path).expect("kept"), b"whole");
    }
}
