//! `maillon dossier …` and `maillon section …`: open, attach to and view
//! dossiers; write and read this node's sections.

use std::path::Path;

use maillon_node::types::{Date, DossierId, Section};

use super::{arg, print_json, print_sections, say};
use crate::args::{DossierCmd, SectionCmd};
use crate::client::Conn;
use crate::error::{CliError, read_file};

/// Runs `maillon dossier …`.
pub(super) async fn dossier(conn: &Conn, cmd: DossierCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        DossierCmd::Open {
            given_name,
            family_name,
            birth_date,
            alert,
        } => {
            let birth_date: Date = arg("birth-date", &birth_date)?;
            let alert: Option<maillon_node::types::AlertId> =
                alert.map(|a| arg("alert", &a)).transpose()?;
            let id = conn
                .open_dossier(&given_name, &family_name, &birth_date.to_string())
                .await?;
            let Some(alert) = alert else {
                super::done(json, serde_json::json!({ "dossier": id }), &id);
                return Ok(());
            };
            if !json {
                say(&id);
            }
            let closed = conn
                .api()
                .handle_alert(conn.req(maillon_proto::v1::HandleAlertRequest {
                    alert: alert.to_string(),
                    status: "closed".into(),
                    outcome: "dossier_opened".into(),
                }))
                .await;
            if let Err(e) = closed {
                // The dossier is open all the same: say which before failing.
                if json {
                    super::print_value(&serde_json::json!({
                        "dossier": id,
                        "alert": alert.to_string(),
                        "alert_status": "not_closed",
                    }));
                }
                return Err(e.into());
            }
            super::done(
                json,
                serde_json::json!({ "dossier": id, "alert": alert.to_string(), "alert_status": "closed" }),
                &format!("{alert} closed: dossier_opened"),
            );
        }
        DossierCmd::Search { text } => {
            let found = conn.search_dossiers(&text.join(" ")).await?;
            if json {
                let list: Vec<serde_json::Value> = found
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "dossier": d.dossier,
                            "given_name": d.given_name,
                            "family_name": d.family_name,
                            "birth_date": d.birth_date,
                            "opened_at": d.opened_at,
                            "attached_from": (!d.attached_from.is_empty()).then_some(&d.attached_from),
                            "closed": d.closed,
                        })
                    })
                    .collect();
                super::print_value(&serde_json::json!({ "dossiers": list }));
            } else if found.is_empty() {
                say("no dossier of this node answers");
            } else {
                for d in &found {
                    let mut line = format!(
                        "{}  {} {}  born {}",
                        d.dossier, d.given_name, d.family_name, d.birth_date
                    );
                    if !d.attached_from.is_empty() {
                        line.push_str(&format!("  (held by {})", d.attached_from));
                    }
                    if d.closed {
                        line.push_str("  (closed)");
                    }
                    say(&line);
                }
            }
        }
        DossierCmd::View { dossier, purpose } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            let view = conn.view_dossier_whole(dossier.as_str(), &purpose).await?;
            if json {
                print_view_json(dossier.as_str(), &view);
                return Ok(());
            }
            if !view.referent.is_empty() {
                say(&format!("référent de parcours: {}", view.referent));
            }
            if view.sections.is_empty() {
                say(&format!(
                    "{dossier}: no section here, and none shared with this node"
                ));
            }
            print_sections(dossier.as_str(), &view.sections, false);
            if !view.partners.is_empty() {
                say("== partners holding this dossier (freshness only, never content)");
            }
            for p in &view.partners {
                if p.status != "ok" {
                    say(&format!(
                        "  {}: {} ({}): {}",
                        p.member, p.status, p.reason, p.message
                    ));
                    continue;
                }
                let sections: Vec<String> = p
                    .sections
                    .iter()
                    .map(|s| format!("{} written {}", s.section, super::utc(s.written_at)))
                    .collect();
                say(&format!(
                    "  {}: {}",
                    p.member,
                    if sections.is_empty() {
                        "no section".to_owned()
                    } else {
                        sections.join("; ")
                    }
                ));
            }
        }
        DossierCmd::Close { dossier, reason } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            let reason: maillon_node::types::ClosureReason = arg("reason", &reason)?;
            conn.api()
                .close_dossier(conn.req(maillon_proto::v1::CloseDossierRequest {
                    dossier: dossier.to_string(),
                    reason: reason.to_string(),
                }))
                .await?;
            super::done(
                json,
                serde_json::json!({ "dossier": dossier.to_string(), "closed": reason.to_string() }),
                &format!("{dossier} closed ({reason}): every share of it ends at every member"),
            );
        }
        DossierCmd::Erase { dossier, confirm } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            if !confirm {
                return Err(CliError::NotConfirmed(
                    "erasing is final: add --confirm once the person asked and no legal obligation keeps the data",
                ));
            }
            conn.api()
                .erase_dossier(conn.req(maillon_proto::v1::EraseDossierRequest {
                    dossier: dossier.to_string(),
                }))
                .await?;
            super::done(
                json,
                serde_json::json!({ "dossier": dossier.to_string(), "erased": true }),
                &format!("{dossier} erased here; every member holding it is told to erase it"),
            );
        }
        DossierCmd::Referent {
            dossier,
            set,
            consent,
        } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            let consent = match consent {
                Some(c) => Some(arg::<maillon_node::types::ConsentId>("consent", &c)?),
                None => None,
            };
            conn.set_referent(dossier.as_str(), &set, consent.as_ref().map(|c| c.as_str()))
                .await?;
            super::done(
                json,
                serde_json::json!({ "dossier": dossier.to_string(), "referent": set }),
                &format!("{set} is the référent de parcours of {dossier}"),
            );
        }
        DossierCmd::Attach {
            dossier,
            from,
            given_name,
            family_name,
            birth_date,
        } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            let from: maillon_node::types::MemberId = arg("from", &from)?;
            let birth_date: Date = arg("birth-date", &birth_date)?;
            conn.attach_dossier(
                dossier.as_str(),
                from.as_str(),
                (&given_name, &family_name, &birth_date.to_string()),
            )
            .await?;
            super::done(
                json,
                serde_json::json!({ "dossier": dossier.to_string(), "attached_from": from.to_string() }),
                &format!(
                    "attached to {dossier}, held by {from}: this node now writes its own sections of it"
                ),
            );
        }
    }
    Ok(())
}

/// Runs `maillon section …`.
pub(super) async fn section(conn: &Conn, cmd: SectionCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        SectionCmd::Put {
            dossier,
            section,
            file,
        } => {
            let (dossier, section) = ids(&dossier, &section)?;
            let content = read_input(&file)?;
            conn.put_section(&dossier, &section, &content).await?;
            if json {
                super::print_value(
                    &serde_json::json!({ "dossier": dossier, "section": section, "written": true }),
                );
            }
        }
        SectionCmd::Get { dossier, section } => {
            let (dossier, section) = ids(&dossier, &section)?;
            let content = conn.get_section(&dossier, &section).await?;
            if json {
                let value = serde_json::from_str::<serde_json::Value>(&content)
                    .unwrap_or(serde_json::Value::String(content));
                super::print_value(
                    &serde_json::json!({ "dossier": dossier, "section": section, "content": value }),
                );
            } else {
                print_json(&content);
            }
        }
    }
    Ok(())
}

/// A dossier id and a section from the command line, checked, as sent.
fn ids(dossier: &str, section: &str) -> Result<(String, String), CliError> {
    let dossier: DossierId = arg("dossier", dossier)?;
    let section: Section = arg("section", section)?;
    Ok((dossier.to_string(), section.to_string()))
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &Path) -> Result<String, CliError> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(CliError::io("reading standard input"))?;
        Ok(s)
    } else {
        read_file(path)
    }
}

/// `dossier view --json`: the sections, the référent and the partners'
/// freshness, with stable field names.
fn print_view_json(dossier: &str, view: &maillon_proto::v1::ViewDossierReply) {
    let partners: Vec<serde_json::Value> = view
        .partners
        .iter()
        .map(|p| {
            serde_json::json!({
                "member": p.member,
                "status": p.status,
                "reason": (!p.reason.is_empty()).then_some(&p.reason),
                "message": (!p.message.is_empty()).then_some(&p.message),
                "sections": p.sections.iter().map(|s| serde_json::json!({
                    "section": s.section,
                    "written_at": s.written_at,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut object = super::sections_json(dossier, &view.sections);
    object["referent"] = if view.referent.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(view.referent.clone())
    };
    object["partners"] = serde_json::Value::Array(partners);
    super::print_value(&object);
}
