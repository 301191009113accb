//! `maillon dossier …` and `maillon section …`: open, attach to and view
//! dossiers; write and read this node's sections.

use std::path::Path;

use maillon_node::types::{Date, DossierId, Section};

use super::{arg, print_json, print_sections, say};
use crate::args::{DossierCmd, SectionCmd};
use crate::client::Conn;
use crate::error::{CliError, read_file};

/// Runs `maillon dossier …`.
pub(super) async fn dossier(conn: &Conn, cmd: DossierCmd) -> Result<(), CliError> {
    match cmd {
        DossierCmd::Open {
            given_name,
            family_name,
            birth_date,
        } => {
            let birth_date: Date = arg("birth-date", &birth_date)?;
            let id = conn
                .open_dossier(&given_name, &family_name, &birth_date.to_string())
                .await?;
            say(&id);
        }
        DossierCmd::View {
            dossier,
            purpose,
            json,
        } => {
            let dossier: maillon_node::types::DossierId = arg("dossier", &dossier)?;
            let view = conn.view_dossier(dossier.as_str(), &purpose).await?;
            if view.is_empty() && !json {
                say(&format!(
                    "{dossier}: no section here, and none shared with this node"
                ));
            }
            print_sections(dossier.as_str(), &view, json);
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
            say(&format!(
                "attached to {dossier}, held by {from}: this node now writes its own sections of it"
            ));
        }
    }
    Ok(())
}

/// Runs `maillon section …`.
pub(super) async fn section(conn: &Conn, cmd: SectionCmd) -> Result<(), CliError> {
    match cmd {
        SectionCmd::Put {
            dossier,
            section,
            file,
        } => {
            let (dossier, section) = ids(&dossier, &section)?;
            let json = read_input(&file)?;
            conn.put_section(&dossier, &section, &json).await?;
        }
        SectionCmd::Get { dossier, section } => {
            let (dossier, section) = ids(&dossier, &section)?;
            print_json(&conn.get_section(&dossier, &section).await?);
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
