//! `maillon node init`: a new node folder; `maillon node join`: the genesis
//! roster for a newly admitted partner's node; `maillon node status`: a
//! running node at a glance (`node check` is in `check`).

use maillon_node::config::InitOptions;
use maillon_node::types::MemberId;

use maillon_proto::v1 as pb;

use super::{arg, say};
use crate::args::NodeCmd;
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon node …`.
pub(super) async fn run(
    cmd: NodeCmd,
    profile: Option<&std::path::Path>,
    json: bool,
) -> Result<(), CliError> {
    match cmd {
        NodeCmd::Check { dir } => super::check::check(&dir, json).await,
        NodeCmd::Status => status(&super::connect(profile)?.1, json).await,
        NodeCmd::Backup {
            dir,
            out,
            recipients,
            passphrase_file,
        } => {
            let key = match passphrase_file {
                Some(p) => super::backup::passphrase(&p)?,
                None => super::backup::recipients(&recipients)?,
            };
            super::backup::backup(&dir, &out, key, profile, json).await
        }
        NodeCmd::Restore {
            from,
            dir,
            identity,
            passphrase_file,
        } => {
            let key = match (passphrase_file, identity) {
                (Some(p), _) => super::backup::passphrase(&p)?,
                (None, Some(i)) => super::backup::identities(&i)?,
                (None, None) => unreachable!("clap requires one"),
            };
            super::backup::restore(&from, &dir, key, json).await
        }
        NodeCmd::BackupKey { out } => super::backup::new_key(&out, json),
        NodeCmd::RestoreWithout { dir, members } => {
            let members = members
                .iter()
                .map(|m| arg::<MemberId>("members", m))
                .collect::<Result<Vec<_>, _>>()?;
            let without =
                maillon_node::daemon::restore_without(&dir, &members).map_err(|source| {
                    CliError::Folder {
                        dir: dir.clone(),
                        source,
                    }
                })?;
            super::done(
                json,
                serde_json::json!({ "dir": dir.display().to_string(), "without": without }),
                &format!(
                    "the first start of {} goes on without the answers of {}: if one of them witnessed more of this node's log, the log forks at that member",
                    dir.display(),
                    without.join(", ")
                ),
            );
            Ok(())
        }
        NodeCmd::Init {
            dir,
            member,
            name,
            kind,
            peer_addr,
            peer_endpoint,
            client_addr,
        } => {
            let addrs = (peer_addr, peer_endpoint, client_addr);
            init(dir, &member, name, &kind, addrs, json).await
        }
        NodeCmd::Join {
            dir,
            roster,
            genesis_hash,
            sponsor,
        } => join(&dir, &roster, &genesis_hash, sponsor.as_deref()),
        NodeCmd::RotateKeys {
            dir,
            signing_only,
            tls_only,
        } => rotate_keys(&dir, !tls_only, !signing_only),
    }
}

/// `maillon node init`: a new node folder, with its keys, card and first admin.
async fn init(
    dir: std::path::PathBuf,
    member: &str,
    name: String,
    kind: &str,
    (peer_addr, peer_endpoint, client_addr): (
        std::net::SocketAddr,
        Option<String>,
        std::net::SocketAddr,
    ),
    json: bool,
) -> Result<(), CliError> {
    let member: MemberId = arg("member", member)?;
    let init = maillon_node::daemon::init(&InitOptions {
        dir: dir.clone(),
        member: member.clone(),
        name,
        kind: arg("kind", kind)?,
        peer_addr,
        peer_endpoint,
        client_addr,
    })
    .await
    .map_err(|source| CliError::Node { member, source })?;
    if json {
        super::print_value(&serde_json::json!({
            "member": init.config.member.to_string(),
            "dir": dir.display().to_string(),
            "card": init.config.card_path().display().to_string(),
            "admin_profile": init.config.admin_profile_path().display().to_string(),
            "tls_pin": init.card.tls_spki_sha256.to_string(),
            "admin_token_days": maillon_node::service::DEFAULT_TOKEN_DAYS,
        }));
        return Ok(());
    }
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
    println!(
        "  the admin's token is valid {} days: rotate it before its end (`maillon user rotate admin --profile-out …`)",
        maillon_node::service::DEFAULT_TOKEN_DAYS
    );
    println!("  TLS pin: {}", init.card.tls_spki_sha256);
    println!(
        "next: once the roster is signed by every founder, copy it to {}",
        init.config.roster_path().display()
    );
    Ok(())
}

/// `maillon node rotate-keys`: stages new keys and prints what comes next.
fn rotate_keys(dir: &std::path::Path, signing: bool, tls: bool) -> Result<(), CliError> {
    let config = maillon_node::config::Config::load(dir)?;
    let card = config.stage_keys(signing, tls)?;
    println!(
        "new keys staged in {} (0600); card listing them: {}",
        dir.display(),
        config.staged_card_path().display()
    );
    if signing {
        let key = serde_json::to_string(&card.signing_key).unwrap_or_default();
        println!("  new signing key: {}", key.trim_matches('"'));
    }
    if tls {
        println!("  new TLS pin:     {}", card.tls_spki_sha256);
    }
    println!(
        "next: `maillon gov propose update-member {} --card {}`; this node signs it with its old and new keys, a quorum approves, and the node starts again with the new keys once the version is adopted",
        config.member,
        config.staged_card_path().display()
    );
    if tls {
        println!(
            "  the peer API's certificate changes; the client API keeps its own (client-tls.key), and the users' profiles their pin"
        );
    }
    Ok(())
}

/// `maillon node join`: checks the genesis roster against the hash given out
/// of band and verifies every founder's signature, then installs it as the
/// node's `roster.json` (never over an existing one).
fn join(
    dir: &std::path::Path,
    roster: &std::path::Path,
    hash: &str,
    sponsor: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let config = maillon_node::config::Config::load(dir)?;
    let sponsor_card = match sponsor {
        Some(path) => {
            let text = crate::error::read_file(path)?;
            serde_json::from_str::<maillon_node::roster::MemberCard>(&text).map_err(|source| {
                CliError::BadFile {
                    path: path.to_owned(),
                    what: "member card",
                    source,
                }
            })?;
            Some(text)
        }
        None => None,
    };
    let genesis = super::gov::load_roster(roster)?;
    let expected = hash.trim().to_ascii_lowercase();
    if genesis.hash_hex() != expected {
        return Err(CliError::GenesisMismatch {
            expected,
            found: genesis.hash_hex().to_owned(),
        });
    }
    let text = crate::error::read_file(roster)?;
    let target = config.roster_path();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::Exists {
                path: target.clone(),
            },
            _ => CliError::io(format!("creating {}", target.display()))(e),
        })?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(CliError::io(format!("writing {}", target.display())))?;
    if let Some(card) = sponsor_card {
        crate::error::write_file(&config.sponsor_card_path(), &card)?;
    }
    println!(
        "genesis roster of {} installed in {} (hash checked, every founder's signature verified)",
        genesis.roster().federation,
        target.display()
    );
    println!(
        "next: once a quorum has adopted the version that admits {}, start the node: it fetches that version from the members and verifies the chain from this genesis",
        config.member
    );
    Ok(())
}

/// `maillon node status`: the running node at a glance.
async fn status(conn: &Conn, json: bool) -> Result<(), CliError> {
    let r = conn
        .api()
        .node_status(conn.req(pb::NodeStatusRequest {}))
        .await?
        .into_inner();
    if json {
        let peers: Vec<serde_json::Value> = r
            .peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "member": p.member,
                    "status": p.status,
                    "told": p.told,
                    "told_version": p.told_version,
                    "told_at": p.told_at,
                })
            })
            .collect();
        let value = serde_json::json!({
            "version": r.version,
            "member": r.member,
            "roster_version": r.roster_version,
            "peer_listen": r.peer_listen,
            "client_listen": r.client_listen,
            "metrics_listen": r.metrics_listen,
            "started_at": r.started_at,
            "audit_entries": r.audit_entries,
            "audit_bytes": r.audit_bytes,
            "audit_integrity": r.audit_integrity,
            "audit_appending": r.audit_appending,
            "peers": peers,
            "outbox": r.outbox,
            "witness_alarms": r.witness_alarms,
            "consents_active": r.consents_active,
            "break_glass_pending": r.break_glass_pending,
            "users": r.users,
        });
        super::print_value(&value);
        return Ok(());
    }
    let metrics = if r.metrics_listen.is_empty() {
        "off".to_owned()
    } else {
        r.metrics_listen.clone()
    };
    say(&format!(
        "maillond {} serving {} at roster v{}, since {}",
        r.version,
        r.member,
        r.roster_version,
        super::utc(r.started_at)
    ));
    say(&format!(
        "  listeners: peer {}, client {}, metrics {metrics}",
        r.peer_listen, r.client_listen
    ));
    say(&format!(
        "  audit log: {} entries, {} bytes, {}{}",
        r.audit_entries,
        r.audit_bytes,
        r.audit_integrity,
        if r.audit_appending {
            ""
        } else {
            " — REFUSING APPENDS: every change is refused until the log is repaired"
        }
    ));
    say(&format!(
        "  consents in force: {}; break-glass accesses to review: {}; users: {}",
        r.consents_active, r.break_glass_pending, r.users
    ));
    say(&format!(
        "  outbox: {} notice(s) waiting; witness alarms since start: {}",
        r.outbox, r.witness_alarms
    ));
    println!("  peers:");
    for p in &r.peers {
        let told = if !p.told {
            "not heard from since start".to_owned()
        } else if p.told_version < r.roster_version {
            format!("BEHIND at v{}", p.told_version)
        } else {
            format!("v{} (last told {})", p.told_version, super::utc(p.told_at))
        };
        say(&format!("    {:<18} {:<9} {told}", p.member, p.status));
    }
    Ok(())
}
