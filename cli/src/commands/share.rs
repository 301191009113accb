//! `maillon share read`: read a section another member shares (caseworker).

use maillon_node::types::{DossierId, MemberId, Section};

use super::{arg, print_json};
use crate::args::ShareCmd;
use crate::client::Conn;
use crate::error::CliError;
use crate::escape::escape_controls;

/// Runs `maillon share …`.
pub(super) async fn run(conn: &Conn, cmd: ShareCmd) -> Result<(), CliError> {
    let ShareCmd::Read {
        dossier,
        section,
        from,
        purpose,
    } = cmd;
    let dossier: DossierId = arg("dossier", &dossier)?;
    let section: Section = arg("section", &section)?;
    let from: MemberId = arg("from", &from)?;
    let r = conn
        .read_share(dossier.as_str(), section.as_str(), from.as_str(), &purpose)
        .await?;
    print_json(&r.json);
    if let Some(leaf) = r.receipt_leaf {
        eprintln!(
            "(receipt: entry {leaf} of {}'s audit log)",
            escape_controls(&r.owner)
        );
    }
    Ok(())
}
