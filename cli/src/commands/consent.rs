//! `maillon consent …`: record, revoke and list the person's consents (caseworker).

use maillon_node::types::{ConsentId, Date, DossierId, MemberId, Section};
use maillon_proto::v1 as pb;

use super::{arg, say};
use crate::args::ConsentCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon consent …`.
pub(super) async fn run(conn: &Conn, cmd: ConsentCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        ConsentCmd::Grant {
            dossier,
            sections,
            to,
            mask,
            purpose,
            from,
            until,
            form,
            oral: _,
            informed,
            legal_mission,
        } => {
            let dossier: DossierId = arg("dossier", &dossier)?;
            let names = |what, list: &[String]| {
                list.iter()
                    .map(|s| arg::<Section>(what, s).map(|s| s.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            };
            let sections = names("sections", &sections)?;
            let masked = names("mask", &mask)?;
            let to = to
                .iter()
                .map(|m| arg::<MemberId>("to", m).map(|m| m.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let until: Date = arg("until", &until)?;
            let valid_from = match from {
                Some(d) => arg::<Date>("from", &d)?.to_string(),
                None => String::new(),
            };
            let collection = match (&form, informed) {
                (Some(_), _) => "signed_form",
                (None, true) => "informed",
                (None, false) => "oral",
            };
            let r = conn
                .api()
                .grant_consent(conn.req(pb::GrantConsentRequest {
                    dossier: dossier.to_string(),
                    sections,
                    audience: to,
                    purpose,
                    until: until.to_string(),
                    basis: if legal_mission.is_some() {
                        "legal_mission".into()
                    } else {
                        "consent".into()
                    },
                    provision: legal_mission.unwrap_or_default(),
                    collection: collection.into(),
                    form_reference: form.unwrap_or_default(),
                    valid_from,
                    masked,
                }))
                .await?
                .into_inner();
            super::done(
                json,
                serde_json::json!({ "consent": r.consent }),
                &r.consent,
            );
        }
        ConsentCmd::Show { consent } => {
            let consent: ConsentId = arg("consent", &consent)?;
            let r = conn
                .api()
                .show_consent(conn.req(pb::ShowConsentRequest {
                    consent: consent.to_string(),
                }))
                .await?
                .into_inner();
            // The receipt carries the purpose and names typed by people.
            if json {
                println!("{}", crate::escape::json_text(&r.receipt_json));
            } else {
                say(&r.receipt_text);
            }
        }
        ConsentCmd::Revoke { consent } => {
            let consent: ConsentId = arg("consent", &consent)?;
            conn.revoke_consent(consent.as_str()).await?;
            super::done(
                json,
                serde_json::json!({ "consent": consent.to_string(), "revoked": true }),
                &format!("consent {consent} revoked"),
            );
        }
        ConsentCmd::List { dossier } => {
            let dossier: DossierId = arg("dossier", &dossier)?;
            let r = conn
                .api()
                .list_consents(conn.req(pb::ListConsentsRequest {
                    dossier: dossier.to_string(),
                }))
                .await?
                .into_inner();
            if json {
                let list: Vec<serde_json::Value> = r
                    .consents
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id,
                            "sections": c.sections,
                            "audience": c.audience,
                            "masked": c.masked,
                            "valid_from": c.valid_from,
                            "until": c.until,
                            "status": c.status,
                            "basis": c.basis,
                            "purpose": c.purpose,
                        })
                    })
                    .collect();
                super::print_value(&serde_json::Value::Array(list));
                return Ok(());
            }
            for c in r.consents {
                let shares = if c.sections.is_empty() {
                    String::new()
                } else {
                    format!("{} to {}  ", c.sections.join(","), c.audience.join(","))
                };
                let masks = if c.masked.is_empty() {
                    String::new()
                } else {
                    format!("masks {}  ", c.masked.join(","))
                };
                // The purpose is free text, written by whoever recorded the consent.
                say(&format!(
                    "{}  {shares}{masks}{} to {}  [{}, {}]  {}",
                    c.id, c.valid_from, c.until, c.status, c.basis, c.purpose
                ));
            }
        }
    }
    Ok(())
}
