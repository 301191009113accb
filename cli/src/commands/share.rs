//! `maillon share read`: read sections another member shares, with the
//! person's consent or by breaking the glass (caseworker).

use maillon_node::types::{DossierId, MemberId, Section};

use super::{arg, print_sections};
use crate::args::ShareCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon share …`.
pub(super) async fn run(conn: &Conn, cmd: ShareCmd, json: bool) -> Result<(), CliError> {
    let ShareCmd::Read {
        dossier,
        sections,
        from,
        purpose,
        break_glass,
    } = cmd;
    let dossier: DossierId = arg("dossier", &dossier)?;
    let mut parsed = sections
        .iter()
        .map(|s| arg::<Section>("sections", s))
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort();
    parsed.dedup();
    let from: MemberId = arg("from", &from)?;
    if let Some(why) = &break_glass {
        maillon_node::types::check_justification(why).map_err(CliError::bad_arg("break-glass"))?;
    }
    let names: Vec<&str> = parsed.iter().map(|s| s.as_str()).collect();
    let read = conn
        .read_shares(
            dossier.as_str(),
            &names,
            from.as_str(),
            &purpose,
            break_glass.as_deref(),
        )
        .await?;
    print_sections(dossier.as_str(), &read, json);
    if read.iter().all(|v| v.status != "ok") {
        return Err(CliError::NothingRead);
    }
    Ok(())
}
