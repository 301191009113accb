//! `maillon commission …`: the coordination commission on a dossier.

use maillon_node::types::{CommissionId, ConsentId, Date, DossierId, MemberId, ParseError};
use maillon_proto::v1 as pb;

use super::{arg, print_value, say, utc};
use crate::args::CommissionCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon commission …`.
pub(super) async fn run(conn: &Conn, cmd: CommissionCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        CommissionCmd::Convene {
            dossier,
            participants,
            agenda,
            on,
            consent,
        } => {
            let dossier: DossierId = arg("dossier", &dossier)?;
            let participants = participants
                .iter()
                .map(|p| arg::<MemberId>("with", p).map(|m| m.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let on: Date = arg("on", &on)?;
            let consent = match consent {
                Some(c) => arg::<ConsentId>("consent", &c)?.to_string(),
                None => String::new(),
            };
            let r = conn
                .api()
                .convene_commission(conn.req(pb::ConveneCommissionRequest {
                    dossier: dossier.to_string(),
                    participants,
                    agenda,
                    meets_on: on.to_string(),
                    consent,
                }))
                .await?
                .into_inner();
            if json {
                print_value(&entry_json(&r));
            } else {
                say(&format!(
                    "{} convened for {} with {}; they may read {} on consent {}",
                    r.id,
                    r.meets_on,
                    r.participants.join(", "),
                    r.sections.join(", "),
                    r.consent
                ));
            }
        }
        CommissionCmd::Close {
            commission,
            decisions,
        } => {
            let id: CommissionId = arg("commission", &commission)?;
            let decisions = decisions
                .iter()
                .map(|d| decision(d))
                .collect::<Result<Vec<_>, _>>()?;
            let r = conn
                .api()
                .close_commission(conn.req(pb::CloseCommissionRequest {
                    commission: id.to_string(),
                    decisions,
                }))
                .await?
                .into_inner();
            if json {
                print_value(&entry_json(&r));
            } else {
                say(&format!(
                    "{} closed: {} decision(s) written into the support plan; the signed minutes go to {}",
                    r.id,
                    r.decisions.len(),
                    r.participants.join(", ")
                ));
            }
        }
        CommissionCmd::List => {
            let r = conn
                .api()
                .list_commissions(conn.req(pb::ListCommissionsRequest {}))
                .await?
                .into_inner();
            if json {
                print_value(&serde_json::json!({
                    "commissions": r.commissions.iter().map(entry_json).collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            if r.commissions.is_empty() {
                say("no commission");
            }
            for c in &r.commissions {
                say(&format!(
                    "{}  dossier {}  convened by {} for {}  with {}  {}",
                    c.id,
                    c.dossier,
                    c.convener,
                    c.meets_on,
                    c.participants.join(", "),
                    if c.closed { "closed" } else { "open" }
                ));
                say(&format!(
                    "    agenda: {} (sections shared: {})",
                    c.agenda,
                    c.sections.join(", ")
                ));
                for d in &c.decisions {
                    say(&format!("    decided: {} — {} by {}", d.who, d.what, d.by));
                }
                if c.closed {
                    say(&format!("    minutes signed {}", utc(c.closed_at)));
                }
            }
        }
    }
    Ok(())
}

/// `MEMBER|what|YYYY-MM-DD` as a decision.
fn decision(text: &str) -> Result<pb::CommissionDecision, CliError> {
    let bad = |reason: &str| CliError::BadArgument {
        arg: "decision",
        source: ParseError::new("decision", reason),
    };
    let mut parts = text.splitn(3, '|');
    let (Some(who), Some(what), Some(by)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("MEMBER|what|YYYY-MM-DD"));
    };
    let who: MemberId = who
        .trim()
        .parse()
        .map_err(|_| bad("MEMBER|what|YYYY-MM-DD: the member is not a member id"))?;
    let by: Date = by
        .trim()
        .parse()
        .map_err(|_| bad("MEMBER|what|YYYY-MM-DD: the date is not YYYY-MM-DD"))?;
    Ok(pb::CommissionDecision {
        who: who.to_string(),
        what: what.trim().to_owned(),
        by: by.to_string(),
    })
}

/// A commission with `--json`.
fn entry_json(c: &pb::CommissionEntry) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "dossier": c.dossier,
        "convener": c.convener,
        "participants": c.participants,
        "agenda": c.agenda,
        "meets_on": c.meets_on,
        "consent": c.consent,
        "sections": c.sections,
        "convened_at": c.convened_at,
        "closed": c.closed,
        "decisions": c.decisions.iter().map(|d| serde_json::json!({
            "who": d.who, "what": d.what, "by": d.by,
        })).collect::<Vec<_>>(),
        "closed_at": (c.closed_at != 0).then_some(c.closed_at),
    })
}
