//! Starting a node from its directory: initialisation, start-up checks, serving,
//! periodic upkeep, and a clean stop. `maillond`, the demo and the tests all
//! start nodes through here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{AuditError, AuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, InitOptions, Profile};
use crate::crypto::{CryptoError, NodeKey, TlsIdentity};
use crate::roster::{CurrentRoster, MemberCard, RosterError, RosterMember, SignedRoster};
use crate::service::{self, Node, NodeParts, PeerNetwork as _, ServiceError};
use crate::storage::{Store, StoreError};
use crate::transport::{self, PeerClients};
use crate::types::{Role, UserName};

/// How long a stopping node waits for upkeep to finish the item it is on
/// (each of its deliveries is bounded by 3 s) before cutting it.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// How often a running node closes expired consents, brings back members that
/// missed a commit, and forgets old nonces.
const UPKEEP_PERIOD: Duration = Duration::from_secs(60);

/// How often a running node asks its peers for roster versions it lacks.
const ROSTER_GOSSIP_PERIOD: Duration = Duration::from_secs(20);

/// Why a node could not be initialised or started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration or a file of the node directory is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key could not be loaded.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The roster was refused.
    #[error("{path}: {source}")]
    Roster {
        /// The roster file.
        path: String,
        /// Why, in one line.
        #[source]
        source: RosterError,
    },
    /// The roster file is missing or unreadable.
    #[error("{path}: {reason}")]
    RosterFile {
        /// The roster file.
        path: String,
        /// Why, in one line (what the refused party was told).
        reason: String,
    },
    /// This node's keys are not those the roster lists for it.
    #[error("{0}")]
    NotInRoster(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be opened or is corrupt.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The service refused to start.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Another process serves this node folder.
    #[error("{dir} is served by another maillond ({holder}): stop it first")]
    InUse {
        /// The node folder.
        dir: String,
        /// Who holds it, as its lock file tells.
        holder: String,
    },
    /// A node restored from a backup may not sign on: its peers witnessed
    /// more of its log than it holds, or another log, or could not be asked.
    #[error("{0}")]
    RestoreRefused(String),
    /// The roster in force lists staged keys for this node: it must start again.
    #[error("the roster in force lists this node's new keys: start it again to put them in force")]
    KeysRotated,
}

/// `maillond`'s command line (here, so that deployments' arguments are
/// checked against it by the tests).
#[derive(clap::Parser, Debug)]
#[command(name = "maillond", version)]
pub struct MaillondArgs {
    /// The node directory created by `maillon node init`.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// How log lines are written on standard error (filtered by `RUST_LOG`).
    #[arg(long, value_enum, env = "MAILLON_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

/// What `maillon node init` produced.
#[derive(Debug)]
pub struct Initialised {
    /// The configuration written.
    pub config: Config,
    /// The public member card, for the founders' roster.
    pub card: MemberCard,
    /// The first admin's profile (0600), holding its token.
    pub admin_profile: Profile,
}

/// Creates a node directory: keys, configuration, card, store, audit log and a first admin.
pub async fn init(opts: &InitOptions) -> Result<Initialised, StartError> {
    let (config, card) = Config::init(opts)?;
    crate::crypto::create_private_dir(&config.store_dir())?;
    crate::crypto::create_private_dir(&config.audit_dir())?;
    let key = NodeKey::read(&config.signing_key_path())?;
    let store_dir = config.store_dir();
    // Opening may wait for a just-stopped node to let go of the store.
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
        .await
        .map_err(|e| StartError::Service(ServiceError::Internal(e.to_string())))??;
    let audit = AuditLog::open(
        &config.audit_dir(),
        crate::audit::origin(&config.member),
        &card.signing_key,
    )?;
    let admin: UserName = "admin".parse().map_err(ConfigError::Parse)?;
    let clock = SystemClock;
    // The log has a signed checkpoint from its first day: a log that holds
    // entries and no checkpoint is refused at start.
    audit.checkpoint(&key)?;
    let user =
        service::create_user(&store, &audit, clock.now(), None, admin, Role::Admin, 0).await?;
    audit.checkpoint(&key)?;
    let admin_profile = Profile {
        endpoint: config.client_listen.to_string(),
        server_spki_sha256: config.client_tls_identity()?.spki_hash()?,
        member: config.member.clone(),
        user: user.name.to_string(),
        token: user.token,
    };
    admin_profile.write_new(&config.admin_profile_path())?;
    Ok(Initialised {
        config,
        card,
        admin_profile,
    })
}

/// Reads and verifies the federation's genesis roster (the `roster.json`
/// file); later versions live in the node's store.
pub fn load_roster(path: &Path) -> Result<crate::roster::VerifiedRoster, StartError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartError::RosterFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let signed: SignedRoster = serde_json::from_str(&text).map_err(|e| StartError::RosterFile {
        path: path.display().to_string(),
        reason: format!("not a roster: {e}"),
    })?;
    signed
        .verify_genesis()
        .map_err(|source| StartError::Roster {
            path: path.display().to_string(),
            source,
        })
}

/// A node serving on loopback or elsewhere; stop it with [`RunningNode::stop`].
pub struct RunningNode {
    node: Arc<Node>,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    console: Option<JoinHandle<()>>,
    upkeep: JoinHandle<()>,
    gossip: JoinHandle<()>,
    witness: JoinHandle<()>,
    /// The folder's lock, held while the node runs; the last field, so that
    /// it goes after the node's store and log.
    _lock: std::fs::File,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("member", self.node.member())
            .field("peer_addr", &self.peer_addr)
            .field("client_addr", &self.client_addr)
            .finish()
    }
}

impl RunningNode {
    /// The service (for in-process inspection by tests and the demo).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
    /// Where the peer API listens.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
    /// Where the client API listens.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Stops serving, lets a running upkeep round finish (for a while), and
    /// waits until the store and the log are closed.
    pub async fn stop(mut self) {
        self.node.begin_stop();
        let _ = self.stop.send(true);
        let _ = (&mut self.server).await;
        if let Some(console) = self.console.take() {
            let _ = console.await;
        }
        // Roster gossip takes no change halfway (each adoption is whole):
        // a round still waiting on slow peers is cut after a while.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.gossip)
            .await
            .is_err()
        {
            self.gossip.abort();
            let _ = (&mut self.gossip).await;
        }
        // A witness round waiting on slow peers is cut the same way; a
        // checkpoint is written whole (a temporary file renamed) or not at all.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.witness)
            .await
            .is_err()
        {
            self.witness.abort();
            let _ = (&mut self.witness).await;
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.upkeep)
            .await
            .is_err()
        {
            tracing::warn!(
                "upkeep did not finish its item in time; cutting it (members out of step are brought back later)"
            );
            self.upkeep.abort();
            let _ = (&mut self.upkeep).await;
        }
        if let Err(e) = self.node.advance_replay_mark().await {
            tracing::warn!(error = %e, "moving the replay mark at stop failed");
        }
        if let Err(e) = self.node.flush().await {
            tracing::warn!(error = %e, "flushing the store at stop failed");
        }
        // Dropping the last handle closes sled and ends the audit writer;
        // the folder's lock goes with this value.
    }
}

/// Starts the node in `dir` with the system clock.
pub async fn start(dir: &Path) -> Result<RunningNode, StartError> {
    start_with_clock(dir, Arc::new(SystemClock)).await
}

/// Starts the node in `dir`: checks keys and roster, opens the store and the
/// log, binds both listeners and serves until stopped.
pub async fn start_with_clock(
    dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<RunningNode, StartError> {
    start_with_listeners(dir, clock, None).await
}

/// Listeners bound ahead of start (peer API, client API), as tests and the
/// demo do so that no other process can take their ports in between.
pub type Listeners = (std::net::TcpListener, std::net::TcpListener);

/// Starts the node in `dir` on already bound listeners, or binds the
/// configured addresses when `listeners` is `None`.
pub async fn start_with_listeners(
    dir: &Path,
    clock: Arc<dyn Clock>,
    listeners: Option<Listeners>,
) -> Result<RunningNode, StartError> {
    let mut listeners = listeners;
    match start_once(dir, clock.clone(), &mut listeners).await {
        // The replay at start put in force a version that lists this node's
        // staged keys (it stopped between logging the adoption and applying
        // it): start again, and that start puts them in force.
        Err(StartError::KeysRotated) => start_once(dir, clock, &mut listeners).await,
        other => other,
    }
}

/// One start; [`StartError::KeysRotated`] if the node must start again.
async fn start_once(
    dir: &Path,
    clock: Arc<dyn Clock>,
    listeners: &mut Option<Listeners>,
) -> Result<RunningNode, StartError> {
    let config = Config::load(dir)?;
    let genesis = load_roster(&config.roster_path())?;
    for dir in [config.dir.clone(), config.store_dir(), config.audit_dir()] {
        crate::crypto::check_private_dir(&dir)?;
    }
    let lock = lock_folder(&config.dir).await?;
    let store_dir = config.store_dir();
    // Opening may wait for a just-stopped node to let go of the store.
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
        .await
        .map_err(|e| StartError::Service(ServiceError::Internal(e.to_string())))??;
    // A rotation whose version this node adopted: its staged keys go in force now.
    let in_force: Option<SignedRoster> = store.meta(crate::storage::MetaKey::Roster)?;
    if let Some(me) = in_force
        .as_ref()
        .and_then(|r| r.roster.member(&config.member))
    {
        let promoted = config.promote_staged(&me.card)?;
        if !promoted.is_empty() {
            tracing::info!(keys = ?promoted, "rotated keys put in force, as the roster in force lists them");
        }
    }
    let key = NodeKey::read(&config.signing_key_path())?;
    let public = key.public();
    let tls = TlsIdentity::read(&config.tls_key_path(), &config.tls_cert_path())?;
    let client_tls = config.client_tls_identity()?;
    repin_admin_profile(&config, client_tls.spki_hash()?);
    // The log's last checkpoint may be signed by a key this node held before a rotation.
    let mut keys = vec![public];
    for (_, link) in store.scan::<SignedRoster>(crate::storage::Tree::RosterChain, "")? {
        if let Some(me) = link.roster.member(&config.member)
            && !keys.contains(&me.card.signing_key)
        {
            keys.push(me.card.signing_key);
        }
    }
    let audit = AuditLog::open_with_keys(
        &config.audit_dir(),
        crate::audit::origin(&config.member),
        &keys,
    )?;
    // Restored from a backup: nothing is signed before every peer says it
    // witnessed no more of this log than the log holds.
    confirm_restore(&config, &genesis, &store, &tls, &audit, &keys).await?;
    audit.checkpoint(&key)?;
    if store
        .get::<SignedRoster>(crate::storage::Tree::RosterChain, &service::chain_key(1))?
        .is_none()
        && let Some(me) = genesis.roster().member(&config.member)
        && (me.card.signing_key != public || me.card.tls_spki_sha256 != tls.spki_hash()?)
    {
        // First start: a genesis that lists this member with other keys is
        // not this federation's (or not this node's), and is never adopted.
        return Err(StartError::NotInRoster(format!(
            "this node's keys are not the ones the genesis roster lists for {}",
            config.member
        )));
    }
    let roster = Arc::new(CurrentRoster::new(genesis));
    let node = Arc::new(
        Node::new(NodeParts {
            me: config.member.clone(),
            key: Arc::new(key),
            roster: roster.clone(),
            store,
            audit,
            clock,
            network: Arc::new(PeerClients::new(tls.clone(), roster.clone())),
            tls_pin: tls.spki_hash()?,
            staged_key: Some(config.staged_signing_key_path()),
            vault: crate::crypto::DossierKeys::open(&config.dossier_keys_dir())?,
            limits: config.limits,
            dir: Some(config.dir.clone()),
        })
        .await?,
    );
    if node.keys_rotated_now() {
        return Err(StartError::KeysRotated);
    }
    if node.roster().roster().member(&config.member).is_none() {
        // A newly admitted partner starts from the genesis: it fetches the
        // chain from the members it lists and verifies it link by link.
        join_from_members(&node, &config).await;
    }
    check_listed(&node, &config, &public, &tls)?;
    let bind = |addr: SocketAddr, given: Option<std::net::TcpListener>| async move {
        let err = |source| StartError::Bind { addr, source };
        match given {
            Some(l) => {
                l.set_nonblocking(true).map_err(err)?;
                TcpListener::from_std(l).map_err(err)
            }
            None => TcpListener::bind(addr).await.map_err(err),
        }
    };
    let (peer_given, client_given) = match listeners.take() {
        Some((p, c)) => (Some(p), Some(c)),
        None => (None, None),
    };
    let peer_listener = bind(config.peer_listen, peer_given).await?;
    let client_listener = bind(config.client_listen, client_given).await?;
    let peer_addr = peer_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.peer_listen,
            source,
        })?;
    let client_addr = client_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.client_listen,
            source,
        })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(bind(addr, None).await?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Bind {
            addr: config.metrics_listen.unwrap_or(client_addr),
            source,
        })?),
        None => None,
    };
    let console_listener = match config.console_listen {
        Some(addr) => Some(bind(addr, None).await?),
        None => None,
    };
    let console_addr = match &console_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Bind {
            addr: config.console_listen.unwrap_or(client_addr),
            source,
        })?),
        None => None,
    };
    node.set_listening(service::Listening {
        peer: peer_addr,
        client: client_addr,
        metrics: metrics_addr,
        console: console_addr,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let oidc = match (&console_listener, config.oidc.clone()) {
        (Some(_), Some(oidc)) => Some(crate::console::oidc::Oidc::new(oidc)?),
        _ => None,
    };
    let console_tls = match &console_listener {
        Some(_) => {
            let operator = config
                .console_tls
                .as_ref()
                .map(|(cert, key)| crate::crypto::OperatorCertificate::read(cert, key))
                .transpose()?;
            Some(crate::console::tls_config(&client_tls, operator.as_ref())?)
        }
        None => None,
    };
    let console = console_listener.zip(console_tls).map(|(listener, tls)| {
        let (node, mut stopped) = (node.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(e) = crate::console::serve_console(node, tls, listener, oidc, stopped).await
            {
                tracing::error!(error = %e, "cannot serve the console");
            }
        })
    });
    let serving = node.clone();
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = transport::serve(
            serving,
            &tls,
            &client_tls,
            roster,
            peer_listener,
            client_listener,
            metrics_listener,
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "cannot serve");
        }
    });
    let gossip_node = node.clone();
    let mut gossip_stop = stop_rx.clone();
    let gossip = tokio::spawn(async move {
        // At start, catch up from the first peer that answers; then ask every
        // peer each period, from an offset of this node's own, so that nodes
        // started together do not all dial each other at once.
        if gossip_node.catch_up_from_any().await > 0 {
            gossip_node.after_adoption();
        }
        gossip_node.census_round().await;
        let offset = ROSTER_GOSSIP_PERIOD.mul_f64(rand::random::<f64>());
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + offset, ROSTER_GOSSIP_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = gossip_stop.wait_for(|stop| *stop) => break,
            }
            if gossip_node.gossip_round().await > 0 {
                gossip_node.after_adoption();
            }
            gossip_node.census_round().await;
        }
    });
    // The log's keeper: a new checkpoint at least every second while the
    // log grows (the last signed one persisted first), and every peer
    // witnessed each period, from an offset of this node's own.
    let witness_node = node.clone();
    let mut witness_stop = stop_rx.clone();
    let witness = tokio::spawn(async move {
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let offset = service::WITNESS_PERIOD.mul_f64(rand::random::<f64>());
        let mut next_witness = tokio::time::Instant::now() + offset;
        loop {
            tokio::select! {
                _ = second.tick() => {}
                _ = witness_stop.wait_for(|stop| *stop) => break,
            }
            if let Err(e) = witness_node.checkpoint_if_grown().await {
                tracing::warn!(error = %e, "signing a checkpoint failed");
            }
            if tokio::time::Instant::now() >= next_witness {
                // Bounded, so that a peer that hangs never holds the
                // checkpoints back for long.
                let round = witness_node.witness_peers();
                if tokio::time::timeout(service::WITNESS_PERIOD, round)
                    .await
                    .is_err()
                {
                    tracing::warn!("a witness round did not finish in time; cut");
                }
                next_witness = tokio::time::Instant::now() + service::WITNESS_PERIOD;
            }
        }
    });
    let upkeep_node = node.clone();
    let mut upkeep_stop = stop_rx;
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_PERIOD);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = upkeep_stop.wait_for(|stop| *stop) => break,
            }
            if let Err(e) = upkeep_node.prune_groups().await {
                tracing::warn!(error = %e, "applying the roster to the groups failed");
            }
            if let Err(e) = upkeep_node.close_inactive_consents().await {
                tracing::warn!(error = %e, "closing inactive consents failed");
            }
            if let Err(e) = upkeep_node.erase_due().await {
                tracing::warn!(error = %e, "erasing dossiers whose retention ran out failed");
            }
            if let Err(e) = upkeep_node.deliver_outbox().await {
                tracing::warn!(error = %e, "delivering the outbox failed");
            }
            if let Err(e) = upkeep_node.end_break_glass().await {
                tracing::warn!(error = %e, "ending break-glass accesses failed");
            }
            if let Err(e) = upkeep_node.sync_owned_groups().await {
                tracing::warn!(error = %e, "bringing groups in step with what entitles their members failed");
            }
            if let Err(e) = upkeep_node.reconcile_groups().await {
                tracing::warn!(error = %e, "checking the groups against the consents failed");
            }
            if let Err(e) = upkeep_node.resync_members().await {
                tracing::warn!(error = %e, "bringing members back failed");
            }
            if let Err(e) = upkeep_node.purge_alerts().await {
                tracing::warn!(error = %e, "alerts not purged yet");
            }
            if let Err(e) = upkeep_node.prune_nonces() {
                tracing::warn!(error = %e, "pruning nonces failed");
            }
            if let Err(e) = upkeep_node.advance_replay_mark().await {
                tracing::warn!(error = %e, "moving the replay mark failed");
            }
            if let Err(e) = upkeep_node.sign_checkpoint().await {
                tracing::warn!(error = %e, "signing a checkpoint failed");
            }
        }
    });
    match node.admin_tokens_ending_within(30) {
        Ok(ending) => {
            for (admin, end) in ending {
                tracing::warn!(%admin, ends = end, "an admin token ends within 30 days: rotate it (`maillon user rotate`)");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot check the admins' tokens"),
    }
    let metrics_at = metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let console_at = console_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        member = %config.member,
        roster = node.roster().roster().version,
        %peer_addr,
        %client_addr,
        metrics = %metrics_at,
        console = %console_at,
        overrides = %config.from_env.join(","),
        "node serving"
    );
    Ok(RunningNode {
        node,
        peer_addr,
        client_addr,
        stop: stop_tx,
        server,
        console,
        upkeep,
        gossip,
        witness,
        _lock: lock,
    })
}

/// How long a restored node waits for each peer's answer.
const RESTORE_CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// What a restore leaves in the folder until the peers confirm it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RestoreMarker {
    /// When the backup was taken (Unix seconds).
    pub backup_created_at: i64,
    /// Bytes of the log it held.
    pub log_bytes: u64,
    /// Members the operator chose not to wait for (`maillon node restore
    /// --without`): gone, or not answering a suspended member. Their
    /// answer is still checked when they give one.
    #[serde(default)]
    pub without: Vec<String>,
}

/// At the first start after a restore (the folder holds
/// [`service::RESTORED_MARKER`]): brings the roster up to date from the
/// peers (each link verified), then asks every active member which
/// checkpoint of this node's log it witnessed last (a note this node
/// signed, verified with its keys), and refuses to go on if one witnessed a
/// larger log (signing on would fork the log the federation saw), a root
/// this log does not have, or could not be asked (unless the operator named
/// it with `--without`). Once all agree, the marker goes and the node starts
/// as usual. Nothing is signed or appended before.
async fn confirm_restore(
    config: &Config,
    genesis: &crate::roster::VerifiedRoster,
    store: &Store,
    tls: &TlsIdentity,
    audit: &AuditLog,
    keys: &[crate::crypto::PublicKey],
) -> Result<(), StartError> {
    let marker_path = config.dir.join(service::RESTORED_MARKER);
    let Ok(text) = std::fs::read_to_string(&marker_path) else {
        return Ok(());
    };
    let marker: RestoreMarker = serde_json::from_str(&text).unwrap_or_default();
    let mut roster = roster_in_store(store, genesis)?;
    // Members admitted since the backup are asked too: the versions the
    // peers adopted since, each verified from the one before.
    let asked_roster = roster.clone();
    let network = PeerClients::new(tls.clone(), Arc::new(CurrentRoster::new(asked_roster)));
    for peer in active_peers(&roster, &config.member) {
        let from = roster.roster().version + 1;
        let Ok(Ok((chain, _))) =
            tokio::time::timeout(RESTORE_CHECK_DEADLINE, network.fetch_chain(&peer, from)).await
        else {
            continue;
        };
        for link in chain {
            match roster.verify_successor(link) {
                Ok(next) => roster = next,
                Err(_) => break,
            }
        }
    }
    let peers = active_peers(&roster, &config.member);
    let network = PeerClients::new(tls.clone(), Arc::new(CurrentRoster::new(roster)));
    let have = audit.size();
    let origin = crate::audit::origin(&config.member);
    let asked = futures_util::future::join_all(peers.iter().map(|p| {
        let network = &network;
        async move {
            let answer =
                tokio::time::timeout(RESTORE_CHECK_DEADLINE, network.get_witnessed(p)).await;
            (p, answer)
        }
    }))
    .await;
    let mut unreachable = Vec::new();
    for (peer, answer) in asked {
        let id = &peer.card.id;
        let note = match answer {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(note))) => note,
            Ok(Err(e)) => {
                unreachable.push((id.to_string(), e.to_string()));
                continue;
            }
            Err(_) => {
                let why = format!("no answer within {} s", RESTORE_CHECK_DEADLINE.as_secs());
                unreachable.push((id.to_string(), why));
                continue;
            }
        };
        // Only a checkpoint this node signed counts: a peer cannot make one up.
        let Some(witnessed) = keys
            .iter()
            .find_map(|k| crate::audit::note::Checkpoint::verify(&note, &origin, k).ok())
        else {
            unreachable.push((
                id.to_string(),
                "it answered a checkpoint this node did not sign".into(),
            ));
            continue;
        };
        if witnessed.size > have {
            return Err(StartError::RestoreRefused(format!(
                "{id} witnessed this node's log at {} entries and the restored log holds {have}: signing on would fork the log the federation saw. Restore a newer backup (or the failed host's audit folder), or ask the auditors; nothing was signed",
                witnessed.size
            )));
        }
        if audit.root_at(witnessed.size)? != witnessed.root {
            return Err(StartError::RestoreRefused(format!(
                "{id} witnessed this node's log at {} entries with another root: this is not the log the federation saw; nothing was signed",
                witnessed.size
            )));
        }
    }
    let (waived, missing): (Vec<_>, Vec<_>) = unreachable
        .into_iter()
        .partition(|(id, _)| marker.without.contains(id));
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        return Err(StartError::RestoreRefused(format!(
            "restored from a backup: {} could not be asked what they witnessed of this node's log; start again once they answer, or, if one is gone for good or does not answer a suspended member, name it with `maillon node restore-without`; nothing was signed",
            list.join(", ")
        )));
    }
    for (id, why) in &waived {
        tracing::warn!(peer = %id, reason = %why, "restore confirmed without this member, as the operator asked");
    }
    std::fs::remove_file(&marker_path).map_err(|source| ConfigError::Io {
        path: marker_path.clone(),
        source,
    })?;
    tracing::info!(
        entries = have,
        peers = peers.len(),
        "restore confirmed: no peer witnessed more of this log"
    );
    Ok(())
}

/// The last roster version the store keeps, its chain verified link by
/// link from `genesis`.
pub fn roster_in_store(
    store: &Store,
    genesis: &crate::roster::VerifiedRoster,
) -> Result<crate::roster::VerifiedRoster, StartError> {
    let links: Vec<SignedRoster> = store
        .scan::<SignedRoster>(crate::storage::Tree::RosterChain, "")?
        .into_iter()
        .map(|(_, link)| link)
        .filter(|link| link.roster.version > genesis.roster().version)
        .collect();
    crate::roster::VerifiedRoster::verify_chain(genesis.signed().clone(), links).map_err(|source| {
        StartError::Roster {
            path: "the store's roster chain".into(),
            source,
        }
    })
}

/// The active members of `roster` but `me`.
fn active_peers(
    roster: &crate::roster::VerifiedRoster,
    me: &crate::types::MemberId,
) -> Vec<RosterMember> {
    roster
        .roster()
        .members
        .iter()
        .filter(|m| &m.card.id != me && m.status == crate::types::MemberStatus::Active)
        .cloned()
        .collect()
}

/// `maillon node restore-without`: lets a restored node's first start go
/// on without the answers of `members` (gone for good, or not answering a
/// suspended member). Refused when the folder holds no restore to confirm.
pub fn restore_without(
    dir: &Path,
    members: &[crate::types::MemberId],
) -> Result<Vec<String>, StartError> {
    let path = dir.join(service::RESTORED_MARKER);
    let text = std::fs::read_to_string(&path).map_err(|_| ConfigError::Invalid {
        path: path.clone(),
        reason: "no restore waits for its peers in this folder".into(),
    })?;
    let mut marker: RestoreMarker =
        serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    for m in members {
        if !marker.without.contains(&m.to_string()) {
            marker.without.push(m.to_string());
        }
    }
    write_marker(&path, &marker)?;
    Ok(marker.without)
}

/// Writes the restore marker, 0600.
fn write_marker(path: &Path, marker: &RestoreMarker) -> Result<(), StartError> {
    let text = serde_json::to_string_pretty(marker).unwrap_or_default();
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    crate::crypto::write_secret_file(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// What `maillon node restore` did.
#[derive(Debug)]
pub struct Restored {
    /// The restored node's configuration.
    pub config: Config,
    /// The archive's manifest.
    pub manifest: service::BackupManifest,
    /// Records written into the new store.
    pub store_records: u64,
}

/// Brings a node back from a backup archive (decrypted) into `dir`, absent
/// or empty: its files, keys (0600), per-dossier keys, audit log and store.
/// Leaves [`service::RESTORED_MARKER`], so that the first start asks the
/// peers before signing anything. On failure, removes what it wrote.
pub async fn restore(
    dir: &Path,
    archive: impl std::io::Read + Send + 'static,
) -> Result<Restored, StartError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|source| ConfigError::Io {
                path: dir.to_owned(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(ConfigError::Invalid {
            path: dir.to_owned(),
            reason: "a node is restored into an absent or empty folder".into(),
        }
        .into());
    }
    let existed = dir.exists();
    let target = dir.to_owned();
    let restored = match tokio::task::spawn_blocking(move || unpack(&target, archive)).await {
        Ok(r) => r,
        Err(e) => Err(StartError::Service(ServiceError::Internal(e.to_string()))),
    };
    if restored.is_err() {
        // What this restore wrote goes; a folder the operator made stays.
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    restored
}

fn unpack(dir: &Path, archive: impl std::io::Read) -> Result<Restored, StartError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    crate::crypto::create_private_dir(dir)?;
    let bad = |reason: String| ConfigError::Invalid {
        path: dir.to_owned(),
        reason,
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path, source }
    };
    let mut manifest: Option<service::BackupManifest> = None;
    let mut store_records = None;
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a backup archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the archive is damaged: {e}")))?;
        if manifest.is_some() {
            return Err(bad("the archive goes on after its manifest".into()).into());
        }
        let name = entry
            .path()
            .map_err(|e| bad(format!("the archive is damaged: {e}")))?
            .to_string_lossy()
            .into_owned();
        let simple = |f: &str| {
            !f.is_empty() && !f.contains('/') && f != "." && f != ".." && !f.starts_with('.')
        };
        let file_in = |folder: PathBuf, file: &str| -> Result<PathBuf, StartError> {
            if !simple(file) {
                return Err(bad(format!("unexpected entry {name:?} in the archive")).into());
            }
            crate::crypto::create_private_dir(&folder)?;
            Ok(folder.join(file))
        };
        let path = match name.as_str() {
            "manifest.json" => {
                let mut json = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut entry, 1 << 16),
                    &mut json,
                )
                .map_err(io(dir))?;
                manifest = Some(
                    serde_json::from_slice(&json)
                        .map_err(|e| bad(format!("the archive's manifest: {e}")))?,
                );
                continue;
            }
            "store.dump" => {
                let store_dir = dir.join("store");
                crate::crypto::create_private_dir(&store_dir)?;
                let store = Store::open(&store_dir)?;
                store_records = Some(store.import(&mut entry)?);
                continue;
            }
            other => match other.split_once('/') {
                Some(("audit", f)) if f == "audit.log" || f == "checkpoint" => {
                    file_in(dir.join("audit"), f)?
                }
                Some(("dossier-keys", f)) => file_in(dir.join("dossier-keys"), f)?,
                Some(("node", f)) => file_in(dir.to_owned(), f)?,
                _ => return Err(bad(format!("unexpected entry {name:?} in the archive")).into()),
            },
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        std::io::copy(&mut entry, &mut file).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        drop(file.flush());
    }
    let manifest =
        manifest.ok_or_else(|| bad("the archive has no manifest: it was cut short".into()))?;
    if manifest.format != service::BACKUP_FORMAT {
        return Err(bad(format!(
            "archive format {:?}; this build restores {:?}",
            manifest.format,
            service::BACKUP_FORMAT
        ))
        .into());
    }
    let store_records = store_records.ok_or_else(|| bad("the archive holds no store".into()))?;
    let config = Config::load(dir)?;
    if config.member.as_str() != manifest.member {
        return Err(bad(format!(
            "the archive's manifest names {} but its node.toml {}",
            manifest.member, config.member
        ))
        .into());
    }
    crate::crypto::create_private_dir(&config.audit_dir())?;
    write_marker(
        &dir.join(service::RESTORED_MARKER),
        &RestoreMarker {
            backup_created_at: manifest.created_at,
            log_bytes: manifest.log_bytes,
            without: Vec::new(),
        },
    )?;
    Ok(Restored {
        config,
        manifest,
        store_records,
    })
}

/// Backs up the node folder `dir` while no node serves it (the folder is
/// locked meanwhile): the same archive as an online backup, into `out`.
pub async fn backup_offline(
    dir: &Path,
    out: impl std::io::Write + Send + 'static,
) -> Result<service::BackupManifest, StartError> {
    let config = Config::load(dir)?;
    let lock = lock_folder(&config.dir).await?;
    let store_dir = config.store_dir();
    let store = tokio::task::spawn_blocking(move || Store::open_existing(&store_dir))
        .await
        .map_err(|e| StartError::Service(ServiceError::Internal(e.to_string())))??;
    let made =
        tokio::task::spawn_blocking(move || -> Result<service::BackupManifest, StartError> {
            let dump = service::dump_file(&config.dir);
            let written = (|| -> Result<service::BackupManifest, StartError> {
                let records = service::dump_store(&dump, &store, |w| Ok(store.dump_mls(w)?))?;
                let entries = crate::audit::AuditLog::count_entries(&config.audit_dir());
                let sources = service::Sources {
                    dir: &config.dir,
                    audit_dir: &config.audit_dir(),
                    dump: &dump,
                    store_records: records,
                    dossier_keys: service::read_keys(&config.dossier_keys_dir())?,
                };
                Ok(service::write_archive(
                    &sources,
                    config.member.as_str(),
                    SystemClock.now(),
                    entries,
                    out,
                )?)
            })();
            let _ = std::fs::remove_file(&dump);
            written
        })
        .await
        .map_err(|e| StartError::Service(ServiceError::Internal(e.to_string())))?;
    drop(lock);
    made
}

/// The lock file in a node folder, held by the process that serves it.
pub const LOCK_FILE: &str = "maillond.lock";

/// Who serves the node folder `dir` now (`process PID`), if a process
/// holds its lock; `None` if none does (or the folder has no lock file).
pub fn folder_holder(dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(match holder.trim() {
                "" => "a process that has not written its id yet".to_owned(),
                pid => format!("process {pid}"),
            })
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Takes the folder's lock (an advisory lock on `maillond.lock`, released
/// with the file when the node stops or its process dies) and writes this
/// process's id in it; a folder another process holds (still, after 5 s) is
/// refused, naming it.
async fn lock_folder(dir: &Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join(LOCK_FILE);
    let io = |source| ConfigError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // A node that just stopped in this process (a restart) may still be
    // letting go of it: wait a little, as for the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut taken = file.try_lock();
    while matches!(taken, Err(std::fs::TryLockError::WouldBlock))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        taken = file.try_lock();
    }
    match taken {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not written its id yet".to_owned(),
                pid => format!("process {pid}"),
            };
            return Err(StartError::InUse {
                dir: dir.display().to_string(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e).into()),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Points the first admin's profile at the certificate the client API
/// presents (made after the profile, or replaced); a profile that cannot be read or
/// written is left as it is, with a warning.
fn repin_admin_profile(config: &Config, pin: crate::crypto::SpkiHash) {
    let path = config.admin_profile_path();
    let mut profile = match Profile::read(&path) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the admin profile to check its pin");
            return;
        }
    };
    if profile.server_spki_sha256 == pin {
        return;
    }
    profile.server_spki_sha256 = pin;
    match profile.replace(&path) {
        Ok(()) => tracing::info!("the admin profile now pins the client API's TLS key"),
        Err(e) => tracing::warn!(error = %e, "cannot update the admin profile's pin"),
    }
}

/// A node its genesis does not list asks each member the genesis lists for
/// the chain, until one gives a chain that verifies and lists this node.
async fn join_from_members(node: &Arc<Node>, config: &Config) {
    let me = node.member().clone();
    // The sponsor's card first (`maillon node join --sponsor`): founders may
    // have moved or changed keys since the genesis.
    let mut members: Vec<RosterMember> = Vec::new();
    match std::fs::read_to_string(config.sponsor_card_path()) {
        Ok(text) => match serde_json::from_str::<MemberCard>(&text) {
            Ok(card) => members.push(RosterMember {
                card,
                status: crate::types::MemberStatus::Active,
                voting: false,
            }),
            Err(e) => tracing::warn!(error = %e, "the sponsor's card is not a member card"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the sponsor's card"),
    }
    members.extend(node.roster().roster().members.iter().cloned());
    for m in members {
        let from = m.card.id.clone();
        match node.catch_up_via(&m).await {
            Ok(n) => tracing::info!(%from, versions = n, "fetched the roster chain"),
            Err(e) => tracing::warn!(%from, error = %e, "cannot fetch the roster chain"),
        }
        if node.roster().roster().member(&me).is_some() {
            return;
        }
    }
}

/// Refuses to serve unless the roster in force lists this node, active or
/// not, with the keys it holds.
fn check_listed(
    node: &Node,
    config: &Config,
    key: &crate::crypto::PublicKey,
    tls: &TlsIdentity,
) -> Result<(), StartError> {
    let roster = node.roster();
    let me = roster.roster().member(&config.member).ok_or_else(|| {
        StartError::NotInRoster(format!(
            "{} is not a member of roster v{} (if it was just admitted, no member it can reach has the version that admits it yet)",
            config.member,
            roster.roster().version
        ))
    })?;
    if me.card.signing_key != *key || me.card.tls_spki_sha256 != tls.spki_hash()? {
        return Err(StartError::NotInRoster(format!(
            "this node's keys are not the ones roster v{} lists for {}",
            roster.roster().version,
            config.member
        )));
    }
    Ok(())
}

/// What `maillond` runs: serves the node in `dir` until Ctrl-C or SIGTERM
/// (what systemd and container runtimes send), then stops it cleanly (no
/// new call, in-flight calls finished within a bound, the store flushed);
/// starts it again when the roster puts this node's staged keys in force.
pub async fn serve_until_stopped(dir: &Path) -> Result<(), StartError> {
    loop {
        let node = start(dir).await?;
        let rotated = tokio::select! {
            () = stop_signal() => false,
            () = node.node().keys_rotated() => true,
        };
        if rotated {
            // The roster in force lists this node's staged keys: start
            // again, and the start puts them in force.
            tracing::info!("keys rotated by the roster: starting again with the new keys");
            node.stop().await;
            continue;
        }
        tracing::info!("stopping");
        node.stop().await;
        return Ok(());
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
