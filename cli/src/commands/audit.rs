//! `maillon audit …`: this node's audit log and checkpoint (auditor).

use maillon_proto::v1 as pb;

use super::{say, say_lines};
use crate::args::AuditCmd;
use crate::client::Conn;
use crate::error::CliError;
use crate::escape::escape_controls;

/// Runs `maillon audit …`.
pub(super) async fn run(
    conn: &Conn,
    profile: &maillon_node::config::Profile,
    profile_path: Option<&std::path::Path>,
    cmd: AuditCmd,
) -> Result<(), CliError> {
    match cmd {
        AuditCmd::Verify { roster, state } => {
            let roster = super::gov::load_roster(&roster)?;
            let member = roster
                .roster()
                .member(&profile.member)
                .cloned()
                .ok_or_else(|| {
                    CliError::Unexpected(format!("{} is not in that roster", profile.member))
                })?;
            let state_path = state.unwrap_or_else(|| {
                profile_path
                    .and_then(|p| p.parent())
                    .unwrap_or(std::path::Path::new("."))
                    .join("audit-state.json")
            });
            let mut memory = crate::audit::AuditorState::load(&state_path)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let (log, before) =
                crate::audit::verify_and_remember(conn, &member, &mut memory, now).await?;
            memory.save(&state_path)?;
            say(&format!(
                "{}: {} entries verified against its checkpoint, signed by the key the roster lists",
                member.card.id, log.checkpoint.size
            ));
            match before {
                Some(b) => say(&format!(
                    "  extends the checkpoint of {} entries verified on {}",
                    b.size,
                    super::utc(b.verified_at)
                )),
                None => say("  first verification of this node: its checkpoint is remembered"),
            }
        }
        AuditCmd::Report {
            dossier,
            roster,
            format,
        } => {
            let dossier: maillon_node::types::DossierId = super::arg("dossier", &dossier)?;
            let roster = super::gov::load_roster(&roster)?;
            let member = roster
                .roster()
                .member(&profile.member)
                .cloned()
                .ok_or_else(|| {
                    CliError::Unexpected(format!("{} is not in that roster", profile.member))
                })?;
            let log = crate::audit::fetch_and_verify(conn, &member).await?;
            let text = crate::audit::access_report(roster.roster(), &member, &dossier, &log);
            match format.as_str() {
                "html" => say_lines(&crate::audit::access_report_html(&text)),
                "json" => say_lines(
                    &serde_json::to_string_pretty(&crate::audit::access_report_json(
                        &dossier, &text,
                    ))
                    .unwrap_or_default(),
                ),
                _ => say_lines(&text),
            }
        }
        AuditCmd::Vkey => {
            let r = conn
                .api()
                .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
                .await?
                .into_inner();
            say(&r.verifier_key);
        }
        AuditCmd::Witness { json } => {
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
                say_lines(
                    &serde_json::to_string_pretty(&serde_json::json!({
                        "peers": peers,
                        "alarms": alarms,
                        "cosigned": r.cosigned,
                    }))
                    .unwrap_or_default(),
                );
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
            for e in r.events {
                // Entries quote readers' purposes and user names.
                say(&format!("{:>6}  {}", e.index, e.json));
            }
            eprintln!("({} events in the log)", r.tree_size);
        }
        AuditCmd::Checkpoint => {
            let r = conn
                .api()
                .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
                .await?
                .into_inner();
            say_lines(&r.checkpoint);
            eprintln!("verifier key: {}", escape_controls(&r.verifier_key));
        }
        AuditCmd::BreakGlass { pending, json } => {
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
                say_lines(&serde_json::to_string_pretty(&items).unwrap_or_default());
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
            println!("break-glass access {id} reviewed");
        }
    }
    Ok(())
}
