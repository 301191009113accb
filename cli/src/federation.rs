//! A federation of nodes on loopback, in one folder: what `maillon demo` plays
//! on and what the integration tests start. Every node is a real node: its own
//! keys, sled store, audit log, and TLS listeners; the roster is a real genesis
//! roster signed by every founder.

use std::borrow::Cow;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maillon_node::clock::Clock;
use maillon_node::config::{InitOptions, Profile};
use maillon_node::crypto::NodeKey;
use maillon_node::daemon::{self, RunningNode};
use maillon_node::roster::{Charter, MemberCard, Quorum, Roster, SignedRoster};
use maillon_node::types::{MemberId, MemberKind, Role};
use maillon_proto::v1 as pb;

use crate::client::Conn;
use crate::error::{CliError, roster_json, write_file};

/// A founder of the local federation.
#[derive(Clone, Debug)]
pub struct Founder {
    /// Member id.
    pub id: Cow<'static, str>,
    /// Display name.
    pub name: Cow<'static, str>,
    /// Kind of institution.
    pub kind: MemberKind,
}

/// One node of the local federation.
#[derive(Debug)]
pub struct LocalNode {
    /// Member id.
    pub id: MemberId,
    /// Display name.
    pub name: String,
    /// Node directory.
    pub dir: PathBuf,
    /// The first admin's profile.
    pub admin: Profile,
    /// The node while it runs.
    pub running: Option<RunningNode>,
    /// Its listeners, bound at creation and handed over at first start.
    listeners: Option<daemon::Listeners>,
}

impl LocalNode {
    /// Initialises a node folder for `f` in `dir` on two loopback ports
    /// (not started); returns it and its member card.
    pub async fn init(dir: &Path, f: &Founder) -> Result<(Self, MemberCard), CliError> {
        let node_dir = dir.join(f.id.as_ref());
        let (peer, peer_addr) = bind_loopback()?;
        let (client, client_addr) = bind_loopback()?;
        let member: MemberId = f.id.parse().map_err(|source| CliError::BadArgument {
            arg: "member",
            source,
        })?;
        let init = daemon::init(&InitOptions {
            dir: node_dir.clone(),
            member: member.clone(),
            name: f.name.to_string(),
            kind: f.kind,
            peer_addr,
            peer_endpoint: None,
            client_addr,
        })
        .await
        .map_err(|source| CliError::Node { member, source })?;
        let node = LocalNode {
            id: init.config.member.clone(),
            name: f.name.to_string(),
            dir: node_dir,
            admin: init.admin_profile,
            running: None,
            listeners: Some((peer, client)),
        };
        Ok((node, init.card))
    }

    /// The node's signing key (a newcomer signs its admission with it).
    pub fn signing_key(&self) -> Result<NodeKey, CliError> {
        Ok(NodeKey::read(&self.dir.join("signing.key"))?)
    }

    /// A connection as the node's admin.
    pub fn admin(&self) -> Result<Conn, CliError> {
        Ok(Conn::new(&self.admin)?)
    }

    /// Creates a user through the client API and returns its profile (also written 0600 in the node folder).
    pub async fn add_user(&self, name: &str, role: Role) -> Result<Profile, CliError> {
        let admin = self.admin()?;
        let reply = admin
            .api()
            .add_user(admin.req(pb::AddUserRequest {
                name: name.into(),
                role: role.to_string(),
                valid_days: 0,
            }))
            .await?
            .into_inner();
        let profile = Profile {
            endpoint: self.admin.endpoint.clone(),
            server_spki_sha256: self.admin.server_spki_sha256,
            member: self.id.clone(),
            user: reply.name,
            token: reply.token,
        };
        profile.write_new(&self.dir.join(format!("{name}.profile.toml")))?;
        Ok(profile)
    }

    /// The node, which must be running.
    pub fn running_node(&self) -> Result<&RunningNode, CliError> {
        self.running
            .as_ref()
            .ok_or_else(|| CliError::Unexpected(format!("{} is not running", self.id)))
    }

    /// Stops the node (its files stay).
    pub async fn stop(&mut self) {
        if let Some(n) = self.running.take() {
            n.stop().await;
        }
    }

    /// Starts the node again from its folder.
    pub async fn start(&mut self, clock: Arc<dyn Clock>) -> Result<(), CliError> {
        if self.running.is_some() {
            return Err(CliError::Unexpected(format!(
                "{} is already running",
                self.id
            )));
        }
        self.running = Some(
            daemon::start_with_listeners(&self.dir, clock, self.listeners.take())
                .await
                .map_err(|source| CliError::Node {
                    member: self.id.clone(),
                    source,
                })?,
        );
        // A start that put a rotated TLS key in force updated the profile's pin.
        self.admin = Profile::read(&self.dir.join("admin.profile.toml"))?;
        Ok(())
    }
}

/// A federation of nodes on loopback.
#[derive(Debug)]
pub struct LocalFederation {
    /// The folder holding every node's folder and the roster.
    pub dir: PathBuf,
    /// The nodes, in founder order.
    pub nodes: Vec<LocalNode>,
}

/// Binds a loopback port below the kernel's ephemeral range, so that the
/// local ends of outgoing connections never take it while a node restarts.
/// A port handed to one node of this process is never handed to another,
/// even while the first is stopped (its folder names the port; a restart
/// binds it again).
fn bind_loopback() -> Result<(TcpListener, SocketAddr), CliError> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut last = None;
    for _ in 0..200 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        let mut handed = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed.contains(&port) {
            continue;
        }
        match TcpListener::bind(("127.0.0.1", port)).and_then(|l| Ok((l.local_addr()?, l))) {
            Ok((addr, l)) => {
                handed.insert(port);
                return Ok((l, addr));
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into());
    Err(CliError::io("finding a free loopback port")(e))
}

impl LocalFederation {
    /// Initialises every founder's node in `dir`, builds and signs the genesis
    /// roster, installs it in every node folder, and starts every node.
    pub async fn create(
        dir: &Path,
        federation: &str,
        founders: &[Founder],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CliError> {
        Self::create_with(dir, federation, founders, clock, |_| {}).await
    }

    /// Like [`LocalFederation::create`], letting `edit` change the genesis
    /// roster before the founders sign it (a suspended member, another charter).
    pub async fn create_with(
        dir: &Path,
        federation: &str,
        founders: &[Founder],
        clock: Arc<dyn Clock>,
        edit: impl FnOnce(&mut Roster),
    ) -> Result<Self, CliError> {
        let mut nodes = Vec::new();
        let mut cards: Vec<MemberCard> = Vec::new();
        for f in founders {
            let (node, card) = LocalNode::init(dir, f).await?;
            cards.push(card);
            nodes.push(node);
        }
        let quorum = Quorum { num: 2, den: 3 };
        let mut roster = Roster::genesis(federation, quorum, cards, Charter::default())?;
        edit(&mut roster);
        let mut signed = SignedRoster::unsigned(roster);
        for n in &nodes {
            let key = NodeKey::read(&n.dir.join("signing.key"))?;
            signed.sign(&n.id, &key)?;
        }
        let json = roster_json(&signed)?;
        write_file(&dir.join("roster.json"), &json)?;
        let mut fed = Self {
            dir: dir.to_owned(),
            nodes,
        };
        for i in 0..fed.nodes.len() {
            let n = &mut fed.nodes[i];
            let started = match write_file(&n.dir.join("roster.json"), &json) {
                Ok(()) => n.start(clock.clone()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                // Leave nothing running (nor any store locked) behind a failed start.
                fed.stop().await;
                return Err(e);
            }
        }
        Ok(fed)
    }

    /// The node of a member.
    pub fn node(&self, id: &str) -> &LocalNode {
        self.nodes
            .iter()
            .find(|n| n.id.as_str() == id)
            .unwrap_or_else(|| panic!("no node {id} in this federation"))
    }

    /// The node of a member, mutably (to stop or restart it).
    pub fn node_mut(&mut self, id: &str) -> &mut LocalNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id.as_str() == id)
            .unwrap_or_else(|| panic!("no node {id} in this federation"))
    }

    /// Initialises a newcomer's node (not started) with the genesis roster
    /// its sponsor hands it; returns its card.
    pub async fn add_newcomer(&mut self, f: &Founder) -> Result<MemberCard, CliError> {
        let (node, card) = LocalNode::init(&self.dir, f).await?;
        let genesis = crate::error::read_file(&self.dir.join("roster.json"))?;
        write_file(&node.dir.join("roster.json"), &genesis)?;
        self.nodes.push(node);
        Ok(card)
    }

    /// Stops every node.
    pub async fn stop(&mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}
