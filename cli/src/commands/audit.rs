//! `maillon audit …`: this node's audit log and checkpoint (auditor).

use maillon_proto::v1 as pb;

use super::{say, say_lines};
use crate::args::AuditCmd;
use crate::client::Conn;
use crate::error::CliError;
use crate::escape::escape_controls;

/// Runs `maillon audit …`.
pub(super) async fn run(conn: &Conn, cmd: AuditCmd) -> Result<(), CliError> {
    match cmd {
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
