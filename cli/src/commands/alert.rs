//! `maillon alert …`: vigilance alerts, raised by volunteers and
//! caseworkers, handled at the member the charter names.

use maillon_node::types::{AlertConcern, AlertId, AlertOutcome, AlertStatus, MemberId};
use maillon_proto::v1 as pb;

use super::{arg, print_value, say, utc};
use crate::args::AlertCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon alert …`.
pub(super) async fn run(conn: &Conn, cmd: AlertCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        AlertCmd::Raise {
            about,
            place,
            concern,
            to,
        } => {
            let concern: AlertConcern = arg("concern", &concern)?;
            let to = match to {
                Some(t) => arg::<MemberId>("to", &t)?.to_string(),
                None => String::new(),
            };
            let r = conn
                .api()
                .raise_alert(conn.req(pb::RaiseAlertRequest {
                    about,
                    place,
                    concern: concern.to_string(),
                    to,
                }))
                .await?
                .into_inner();
            if json {
                print_value(&entry_json(&r));
            } else {
                say(&format!(
                    "{} raised to {}: {}; see where it stands with maillon alert list",
                    r.id,
                    r.to,
                    status_words(&r.status)
                ));
            }
        }
        AlertCmd::List { status } => {
            let status = match status {
                Some(s) => arg::<AlertStatus>("status", &s)?.to_string(),
                None => String::new(),
            };
            let r = conn
                .api()
                .list_alerts(conn.req(pb::ListAlertsRequest { status }))
                .await?
                .into_inner();
            if json {
                print_value(&serde_json::json!({
                    "raised": r.raised.iter().map(entry_json).collect::<Vec<_>>(),
                    "received": r.received.iter().map(entry_json).collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            if r.raised.is_empty() && r.received.is_empty() {
                say("no alert");
            }
            for a in &r.raised {
                say(&format!(
                    "{}  raised {} to {}  {} in {}  {}",
                    a.id,
                    utc(a.raised_at),
                    a.to,
                    a.concern,
                    a.place,
                    status_words(&a.status)
                ));
            }
            for a in &r.received {
                say(&format!(
                    "{}  from {}  {}  {} in {}  {}{}",
                    a.id,
                    a.from,
                    utc(a.raised_at),
                    a.concern,
                    a.place,
                    a.status,
                    if a.outcome.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", a.outcome)
                    }
                ));
                say(&format!("    {}", a.about));
            }
        }
        AlertCmd::Take { alert } => {
            handle(conn, &alert, AlertStatus::Taken, String::new(), json).await?
        }
        AlertCmd::Close { alert, outcome } => {
            let outcome: AlertOutcome = arg("outcome", &outcome)?;
            handle(conn, &alert, AlertStatus::Closed, outcome.to_string(), json).await?
        }
    }
    Ok(())
}

/// Takes an alert into account, or closes it.
async fn handle(
    conn: &Conn,
    alert: &str,
    status: AlertStatus,
    outcome: String,
    json: bool,
) -> Result<(), CliError> {
    let id: AlertId = arg("alert", alert)?;
    let r = conn
        .api()
        .handle_alert(conn.req(pb::HandleAlertRequest {
            alert: id.to_string(),
            status: status.to_string(),
            outcome,
        }))
        .await?
        .into_inner();
    if json {
        print_value(&entry_json(&r));
    } else {
        say(&format!(
            "{} is {}; {} is told it was taken into account",
            r.id, r.status, r.from
        ));
    }
    Ok(())
}

/// What its raiser reads of an alert's status.
fn status_words(status: &str) -> &'static str {
    match status {
        "raised" => "not delivered yet",
        "received" => "received",
        _ => "received and taken into account",
    }
}

/// An alert with `--json`.
fn entry_json(a: &pb::AlertEntry) -> serde_json::Value {
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    serde_json::json!({
        "id": a.id,
        "from": a.from,
        "to": a.to,
        "concern": a.concern,
        "where": a.place,
        "raised_at": a.raised_at,
        "status": a.status,
        "about": some(&a.about),
        "raised_by": some(&a.raised_by),
        "taken_by": some(&a.taken_by),
        "outcome": some(&a.outcome),
        "closed_at": (a.closed_at != 0).then_some(a.closed_at),
        "purge_at": a.purge_at,
    })
}
