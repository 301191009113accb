//! `maillon node init`: a new node folder.

use maillon_node::config::InitOptions;
use maillon_node::types::MemberId;

use super::arg;
use crate::args::NodeCmd;
use crate::error::CliError;

/// Runs `maillon node …`.
pub(super) async fn run(cmd: NodeCmd) -> Result<(), CliError> {
    let NodeCmd::Init {
        dir,
        member,
        name,
        kind,
        peer_addr,
        peer_endpoint,
        client_addr,
    } = cmd;
    let member: MemberId = arg("member", &member)?;
    let init = maillon_node::daemon::init(&InitOptions {
        dir: dir.clone(),
        member: member.clone(),
        name,
        kind: arg("kind", &kind)?,
        peer_addr,
        peer_endpoint,
        client_addr,
    })
    .await
    .map_err(|source| CliError::Node { member, source })?;
    println!(
        "node {} initialised in {}",
        init.config.member,
        dir.display()
    );
    println!(
        "  member card (give it to the founders): {}",
        init.config.card_path().display()
    );
    println!(
        "  admin profile (0600, holds a token):   {}",
        init.config.admin_profile_path().display()
    );
    println!("  TLS pin: {}", init.card.tls_spki_sha256);
    println!(
        "next: once the roster is signed by every founder, copy it to {}",
        init.config.roster_path().display()
    );
    Ok(())
}
