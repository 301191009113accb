//! `maillon consent …`: record, revoke and list the person's consents (caseworker).

use maillon_node::types::{ConsentId, Date, DossierId, MemberId, Section};
use maillon_proto::v1 as pb;

use super::{arg, say};
use crate::args::ConsentCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon consent …`.
pub(super) async fn run(conn: &Conn, cmd: ConsentCmd) -> Result<(), CliError> {
    match cmd {
        ConsentCmd::Grant {
            dossier,
            sections,
            to,
            purpose,
            until,
        } => {
            let dossier: DossierId = arg("dossier", &dossier)?;
            let sections = sections
                .iter()
                .map(|s| arg::<Section>("sections", s).map(|s| s.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let to = to
                .iter()
                .map(|m| arg::<MemberId>("to", m).map(|m| m.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let until: Date = arg("until", &until)?;
            let r = conn
                .api()
                .grant_consent(conn.req(pb::GrantConsentRequest {
                    dossier: dossier.to_string(),
                    sections,
                    audience: to,
                    purpose,
                    until: until.to_string(),
                }))
                .await?
                .into_inner();
            say(&r.consent);
        }
        ConsentCmd::Revoke { consent } => {
            let consent: ConsentId = arg("consent", &consent)?;
            conn.revoke_consent(consent.as_str()).await?;
            println!("consent {consent} revoked");
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
            for c in r.consents {
                let state = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "recorded"
                };
                // The purpose is free text, written by whoever recorded the consent.
                say(&format!(
                    "{}  {}  to {}  until {}  [{}]  {}",
                    c.id,
                    c.sections.join(","),
                    c.audience.join(","),
                    c.until,
                    state,
                    c.purpose
                ));
            }
        }
    }
    Ok(())
}
