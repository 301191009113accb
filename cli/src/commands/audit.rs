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
    }
    Ok(())
}
