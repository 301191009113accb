//! `maillon orient …`: orientations of a person to another member, with
//! their closed loop (accepted, declined, completed).

use maillon_node::types::{ConsentId, DossierId, MemberId, OrientationId, OrientationStatus};
use maillon_proto::v1 as pb;

use super::{arg, print_value, say, utc};
use crate::args::{OrientArgs, OrientCmd};
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon orient …`.
pub(super) async fn run(conn: &Conn, args: OrientArgs, json: bool) -> Result<(), CliError> {
    let Some(cmd) = args.cmd else {
        // clap requires these when no subcommand is given.
        let (Some(dossier), Some(to), Some(service), Some(reason)) =
            (args.dossier, args.to, args.service, args.reason)
        else {
            return Err(CliError::Unexpected(
                "give a dossier, --to, --service and --reason".into(),
            ));
        };
        let dossier: DossierId = arg("dossier", &dossier)?;
        let to: MemberId = arg("to", &to)?;
        let consent = match args.consent {
            Some(c) => arg::<ConsentId>("consent", &c)?.to_string(),
            None => String::new(),
        };
        let r = conn
            .api()
            .orient(conn.req(pb::OrientRequest {
                dossier: dossier.to_string(),
                to: to.to_string(),
                service,
                reason,
                consent,
            }))
            .await?
            .into_inner();
        if json {
            print_value(&entry_json(&r));
        } else {
            say(&format!(
                "{} sent to {} for {} (consent {}); the answer comes back here: maillon orient list --sent",
                r.id, r.to, r.service, r.consent
            ));
        }
        return Ok(());
    };
    match cmd {
        OrientCmd::List {
            sent,
            received,
            status,
        } => {
            let status = match status {
                Some(s) => arg::<OrientationStatus>("status", &s)?.to_string(),
                None => String::new(),
            };
            let direction = match (sent, received) {
                (true, _) => "sent",
                (_, true) => "received",
                _ => "",
            };
            let r = conn
                .api()
                .list_orientations(conn.req(pb::ListOrientationsRequest {
                    direction: direction.into(),
                    status,
                }))
                .await?
                .into_inner();
            if json {
                print_value(&serde_json::json!({
                    "orientations": r.orientations.iter().map(entry_json).collect::<Vec<_>>(),
                }));
            } else if r.orientations.is_empty() {
                say("no orientation");
            } else {
                for o in &r.orientations {
                    for line in lines(o) {
                        say(&line);
                    }
                }
            }
        }
        OrientCmd::Accept { orientation, note } => {
            step(conn, &orientation, OrientationStatus::Accepted, note, json).await?
        }
        OrientCmd::Decline {
            orientation,
            reason,
        } => {
            step(
                conn,
                &orientation,
                OrientationStatus::Declined,
                reason,
                json,
            )
            .await?
        }
        OrientCmd::Complete { orientation, note } => {
            step(conn, &orientation, OrientationStatus::Completed, note, json).await?
        }
    }
    Ok(())
}

/// Takes a step on an orientation received here.
async fn step(
    conn: &Conn,
    orientation: &str,
    status: OrientationStatus,
    note: String,
    json: bool,
) -> Result<(), CliError> {
    let id: OrientationId = arg("orientation", orientation)?;
    let r = conn
        .api()
        .step_orientation(conn.req(pb::StepOrientationRequest {
            orientation: id.to_string(),
            status: status.to_string(),
            note,
        }))
        .await?
        .into_inner();
    if json {
        print_value(&entry_json(&r));
    } else {
        say(&format!("{} is {}; {} is told", r.id, r.status, r.from));
    }
    Ok(())
}

/// An orientation with `--json`.
fn entry_json(o: &pb::OrientationEntry) -> serde_json::Value {
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    serde_json::json!({
        "id": o.id,
        "dossier": o.dossier,
        "from": o.from,
        "to": o.to,
        "service": o.service,
        "service_name": some(&o.service_name),
        "reason": o.reason,
        "consent": o.consent,
        "sections": o.sections,
        "sent_at": o.sent_at,
        "sent_by": some(&o.sent_by),
        "status": o.status,
        "steps": o.steps.iter().map(|s| serde_json::json!({
            "status": s.status,
            "note": some(&s.note),
            "at": s.at,
            "by": some(&s.by),
        })).collect::<Vec<_>>(),
    })
}

/// An orientation as text.
fn lines(o: &pb::OrientationEntry) -> Vec<String> {
    let name = if o.service_name.is_empty() {
        String::new()
    } else {
        format!(" ({})", o.service_name)
    };
    let mut out = vec![
        format!(
            "{}  {} → {}  {}{name}  {}",
            o.id, o.from, o.to, o.service, o.status
        ),
        format!(
            "    dossier {}; sent {}{}; consent {} ({})",
            o.dossier,
            utc(o.sent_at),
            if o.sent_by.is_empty() {
                String::new()
            } else {
                format!(" by {}", o.sent_by)
            },
            o.consent,
            if o.sections.is_empty() {
                "no section".to_owned()
            } else {
                o.sections.join(", ")
            }
        ),
        format!("    reason: {}", o.reason),
    ];
    for s in &o.steps {
        out.push(format!(
            "    {} {}{}{}",
            s.status,
            utc(s.at),
            if s.by.is_empty() {
                String::new()
            } else {
                format!(" by {}", s.by)
            },
            if s.note.is_empty() {
                String::new()
            } else {
                format!(": {}", s.note)
            }
        ));
    }
    out
}
