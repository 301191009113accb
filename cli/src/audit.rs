//! The auditor's side: fetch a node's log as a signed bundle, remember what
//! was verified of each node, verify the logs with the node library's own
//! code (`verify`), and write a person's access report in French (`report`).

pub mod report;
pub use maillon_node::audit::verify;
pub use maillon_node::audit::verify::{AuditorState, Remembered};

use maillon_node::audit::bundle::Bundle;
use maillon_node::audit::note::Checkpoint;
use maillon_node::types::{MemberId, MemberStatus};
use maillon_proto::v1 as pb;

use crate::client::Conn;
use crate::error::{CliError, LogFault};

/// Fetches a log as a [`Bundle`](maillon_node::audit::bundle::Bundle): the
/// signed manifest of this node's log (`member` none) or of a member's
/// (asked through this node), then every leaf its checkpoint covers, in
/// pages. Nothing is verified here: [`verify::verify_bundles`] does.
pub async fn fetch_bundle(
    conn: &Conn,
    member: Option<&maillon_node::types::MemberId>,
) -> Result<maillon_node::audit::bundle::Bundle, CliError> {
    let manifest = fetch_manifest(conn, member).await?;
    fetch_leaves(conn, member, manifest).await
}

/// [`fetch_bundle`] for a manifest already fetched: every leaf it covers.
async fn fetch_leaves(
    conn: &Conn,
    member: Option<&MemberId>,
    manifest: maillon_node::audit::bundle::SignedManifest,
) -> Result<Bundle, CliError> {
    use maillon_node::audit::bundle::Leaf;
    let name = member.map(ToString::to_string).unwrap_or_default();
    let mut api = conn.api();
    let who = manifest
        .claimed_member()
        .map_err(|e| CliError::Unexpected(e.to_string()))?;
    let size = manifest
        .unverified()
        .ok()
        .and_then(|m| Checkpoint::parse_body(&m.checkpoint))
        .map_or(0, |cp| cp.size);
    let mut leaves: Vec<Leaf> = Vec::new();
    while (leaves.len() as u64) < size {
        let from = leaves.len() as u64;
        let limit = (size - from).min(u64::from(maillon_node::service::MAX_LEAVES_PAGE)) as u32;
        let page = api
            .audit_leaves(conn.req(pb::AuditLeavesRequest {
                member: name.clone(),
                from,
                limit,
            }))
            .await?
            .into_inner();
        let page = maillon_node::transport::leaves_from_pb(&who, page, from, limit)
            .map_err(|e| CliError::log(&who, LogFault::Unexpected(e.to_string())))?;
        if page.leaves.is_empty() {
            return Err(CliError::log(&who, LogFault::Short));
        }
        leaves.extend(page.leaves.into_iter().map(|(_, l)| l));
    }
    Ok(Bundle { manifest, leaves })
}

/// The signed manifest of this node's log (`member` none) or of a member's
/// (asked through this node); not verified yet.
pub async fn fetch_manifest(
    conn: &Conn,
    member: Option<&MemberId>,
) -> Result<maillon_node::audit::bundle::SignedManifest, CliError> {
    let m = conn
        .api()
        .audit_manifest(conn.req(pb::AuditManifestRequest {
            member: member.map(ToString::to_string).unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let who: MemberId = match member {
        Some(m) => m.clone(),
        None => serde_json::from_str::<serde_json::Value>(&m.manifest)
            .ok()
            .and_then(|v| v.get("member")?.as_str()?.parse().ok())
            .ok_or_else(|| CliError::Unexpected("the node's manifest names no member".into()))?,
    };
    let manifest = maillon_node::transport::manifest_from_pb(&who, m)
        .map_err(|e| CliError::Unexpected(e.to_string()))?;
    if manifest.claimed_member().ok().as_ref() != Some(&who) {
        return Err(CliError::Unexpected(format!(
            "the manifest served for {who} is another member's"
        )));
    }
    Ok(manifest)
}

/// Reads an auditor's state file; an absent file is an empty state.
pub fn load_state(path: &std::path::Path) -> Result<AuditorState, CliError> {
    let mut state: AuditorState = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CliError::BadFile {
            path: path.to_owned(),
            what: "auditor state",
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuditorState::default(),
        Err(e) => return Err(CliError::io(format!("reading {}", path.display()))(e)),
    };
    state.leaves_dir = Some(leaves_dir(path));
    Ok(state)
}

/// Writes an auditor's state file and this run's leaf files (0600, in a
/// 0700 folder), each replaced whole.
pub fn save_state(state: &mut AuditorState, path: &std::path::Path) -> Result<(), CliError> {
    let dir = leaves_dir(path);
    if !state.leaves.is_empty() {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Kept private even if someone loosened it.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(CliError::io(format!("securing {}", dir.display())))?;
            }
            Err(e) => return Err(CliError::io(format!("creating {}", dir.display()))(e)),
        }
    }
    for (member, hashes) in &state.leaves {
        // Member ids are slugs: a file name, never a path.
        let bytes: Vec<u8> = hashes.iter().flatten().copied().collect();
        write_private(&dir.join(member), &bytes)?;
    }
    let json = serde_json::to_vec_pretty(state).unwrap_or_default();
    write_private(path, &json)?;
    state.leaves_dir = Some(dir);
    Ok(())
}

/// Where the leaf files of the state at `path` live.
fn leaves_dir(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".leaves");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` (0600) through a temporary file, synced, then renamed.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CliError::io(format!("writing {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(CliError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(CliError::io(format!("writing {}", path.display())))
}

/// The logs `audit verify` checks online: this node's own (`node` none,
/// `all` false), one member's as it shows it to this node, or every active
/// member's (`all`: the members of the last roster of this node's chain,
/// verified from `genesis`). A log that cannot be fetched is a finding.
pub async fn fetch_bundles(
    conn: &Conn,
    genesis: &maillon_node::roster::SignedRoster,
    node: Option<&MemberId>,
    all: bool,
) -> Result<(Vec<Bundle>, Vec<verify::Finding>), CliError> {
    let own = OwnNode::fetch(conn, genesis).await?;
    let me = own.member.clone();
    let others: Vec<MemberId> = match (node, all) {
        (Some(m), _) if *m != me => vec![m.clone()],
        (_, false) => Vec::new(),
        // The list only decides whom to ask: every log is verified against
        // keys from the chain, checked from the genesis.
        (_, true) => own.active_peers(),
    };
    let mut bundles = Vec::new();
    if node.is_none_or(|m| *m == me) {
        bundles.push(fetch_leaves(conn, None, own.manifest).await?);
    }
    let mut unfetched = Vec::new();
    for m in others {
        match fetch_bundle(conn, Some(&m)).await {
            Ok(b) => bundles.push(b),
            Err(e) if node.is_some() => return Err(e),
            Err(e) => unfetched.push(verify::Finding {
                node: m.to_string(),
                index: None,
                reason: format!(
                    "its log could not be fetched through this node: {}",
                    crate::exit::one_line(&e)
                ),
            }),
        }
    }
    Ok((bundles, unfetched))
}

/// The auditor's own node as its signed manifest shows it, and the roster
/// chain in it verified from the auditor's genesis: who it is, every key
/// each member held, and the members in force.
pub struct OwnNode {
    /// Its member id.
    pub member: MemberId,
    /// Its signed manifest, as served (not opened yet).
    pub manifest: maillon_node::audit::bundle::SignedManifest,
    /// The last roster of its chain.
    pub roster: maillon_node::roster::VerifiedRoster,
    /// Every key each member held along the chain.
    pub keys: verify::KeyHistory,
}

impl OwnNode {
    /// Fetches this node's manifest and verifies its roster chain from `genesis`.
    pub async fn fetch(
        conn: &Conn,
        genesis: &maillon_node::roster::SignedRoster,
    ) -> Result<Self, CliError> {
        let manifest = fetch_manifest(conn, None).await?;
        let member = manifest
            .claimed_member()
            .map_err(|e| CliError::Unexpected(format!("this node's manifest: {e}")))?;
        let chain = manifest
            .unverified()
            .map_err(|e| CliError::Unexpected(format!("this node's manifest: {e}")))?
            .roster_chain;
        let (roster, keys) = verify::verify_chain(genesis, &chain)
            .map_err(|e| CliError::log(&member, LogFault::Unexpected(e)))?;
        Ok(Self {
            member,
            manifest,
            roster,
            keys,
        })
    }

    /// The other members active in the last roster.
    pub fn active_peers(&self) -> Vec<MemberId> {
        self.roster
            .roster()
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Active && m.card.id != self.member)
            .map(|m| m.card.id.clone())
            .collect()
    }
}

pub use maillon_node::consent::receipt::section_fr;

pub use maillon_node::types::paris;
