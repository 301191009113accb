//! The integration-test harness: a [`Cluster`] of real nodes on loopback, with
//! real TLS, real sled stores in a temporary folder, real MLS groups, and a
//! manual clock shared by every node.

pub mod authority;
pub mod browser;
pub mod idp;

use std::sync::Arc;

use maillon_cli::client::Conn;
use maillon_cli::federation::{Founder, LocalFederation, LocalNode};
use maillon_node::clock::{Clock, ManualClock, SystemClock};
use maillon_node::daemon::RunningNode;
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use tonic::{Code, Status};

/// The founders every test federation starts with: the demo's département,
/// CCAS and CAF.
pub fn founders() -> &'static [Founder] {
    &maillon_cli::demo::FOUNDERS[..3]
}

/// A running federation for one test.
pub struct Cluster {
    /// The nodes, started from their folders.
    pub fed: LocalFederation,
    /// The clock every node reads.
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the three founders' nodes with a fresh signed roster.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the founders' nodes after `edit` changed the genesis roster.
    pub async fn start_with(edit: impl FnOnce(&mut maillon_node::roster::Roster)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let fed =
            LocalFederation::create_with(dir.path(), "gip-test", founders(), clock.clone(), edit)
                .await
                .expect("federation starts");
        Self {
            fed,
            clock,
            _dir: dir,
        }
    }

    /// A member's node folder and profile.
    pub fn node(&self, id: &str) -> &LocalNode {
        self.fed.node(id)
    }

    /// A member's running node.
    pub fn running(&self, id: &str) -> &RunningNode {
        self.fed.node(id).running.as_ref().expect("node is running")
    }

    /// Creates a user at a member's node and connects as it.
    pub async fn user(&self, id: &str, name: &str, role: Role) -> Conn {
        Conn::new(
            &self
                .node(id)
                .add_user(name, role)
                .await
                .expect("user created"),
        )
        .expect("conn")
    }

    /// Stops and restarts a member's node from its folder.
    pub async fn restart(&mut self, id: &str) {
        self.reconfigure(id, |_| {}).await;
    }

    /// Stops `id`'s node, lets `edit` change its folder, and starts it again.
    pub async fn reconfigure(&mut self, id: &str, edit: impl FnOnce(&std::path::Path)) {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let node = self.fed.node_mut(id);
        node.stop().await;
        edit(&node.dir);
        node.start(clock).await.expect("the node starts again");
    }

    /// Restarts `id`'s node with its web console on a free loopback port.
    pub async fn with_console(&mut self, id: &str) {
        self.reconfigure(id, |dir| {
            let toml = maillon_node::config::Config::file(dir);
            let text = std::fs::read_to_string(&toml).expect("node.toml");
            std::fs::write(&toml, format!("console_listen = \"127.0.0.1:0\"\n{text}"))
                .expect("node.toml written");
        })
        .await;
    }

    /// Restarts `id`'s node with its web console on a free loopback port,
    /// logging staff in through a real OpenID provider started for it,
    /// which names users by `claim`; returns the provider and the console's
    /// address (`https://127.0.0.1:PORT`).
    pub async fn with_console_and_provider(
        &mut self,
        id: &str,
        claim: &str,
    ) -> (idp::Provider, String) {
        // The console's address must be known before the provider registers it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let console = format!("https://127.0.0.1:{port}");
        let provider = idp::Provider::start(&console);
        let table = |dir: &std::path::Path| provider.configure(dir, &console, claim);
        self.reconfigure(id, |dir| {
            let toml = maillon_node::config::Config::file(dir);
            let text = std::fs::read_to_string(&toml).expect("node.toml");
            let oidc = table(dir);
            std::fs::write(
                &toml,
                format!("console_listen = \"127.0.0.1:{port}\"\n{text}{oidc}"),
            )
            .expect("node.toml written");
        })
        .await;
        (provider, console)
    }

    /// Links `user` at `id` to its `identity` at the console's provider.
    pub async fn link_identity(&self, id: &str, user: &str, identity: &str) {
        let admin = self.admin(id);
        admin
            .api()
            .update_user(admin.req(pb::UpdateUserRequest {
                name: user.into(),
                role: String::new(),
                identity: Some(identity.into()),
            }))
            .await
            .expect("linked");
    }

    /// A one-time console login link for `user` at `id`, from its admin:
    /// its path (`/connexion/…`).
    pub async fn console_link(&self, id: &str, user: &str) -> String {
        let admin = self.admin(id);
        let url = admin
            .api()
            .issue_console_link(admin.req(pb::IssueConsoleLinkRequest { name: user.into() }))
            .await
            .expect("a link")
            .into_inner()
            .url;
        url[url.find("/connexion/").expect("a login path")..].to_owned()
    }
}

/// A caseworker's view of a dossier and its calls.
pub struct Desk {
    /// The caseworker's connection to its node.
    pub conn: Conn,
}

impl Desk {
    /// Opens a dossier for the same person every time.
    pub async fn open(&self) -> Result<String, Status> {
        self.conn
            .open_dossier("Camille", "Martin", "1984-03-12")
            .await
    }

    /// Writes a section.
    pub async fn put(&self, dossier: &str, section: &str, json: &str) -> Result<(), Status> {
        self.conn.put_section(dossier, section, json).await
    }

    /// Reads this node's own section.
    pub async fn get(&self, dossier: &str, section: &str) -> Result<String, Status> {
        self.conn.get_section(dossier, section).await
    }

    /// Grants consent, for the usual purpose.
    pub async fn grant(
        &self,
        dossier: &str,
        sections: &[&str],
        to: &[&str],
        until: &str,
    ) -> Result<String, Status> {
        let purpose = "coordination du parcours";
        self.conn
            .grant_consent(dossier, sections, to, purpose, until)
            .await
    }

    /// Revokes consent.
    pub async fn revoke(&self, consent: &str) -> Result<(), Status> {
        self.conn.revoke_consent(consent).await
    }

    /// Reads a section another member owns.
    pub async fn read(
        &self,
        dossier: &str,
        section: &str,
        owner: &str,
    ) -> Result<pb::SectionReply, Status> {
        self.conn
            .read_share(dossier, section, owner, "instruction d'un droit")
            .await
    }
}

/// The housing section the stories write at the CCAS.
pub const HOUSING: &str = r#"{"situation":"hébergée chez un tiers","loyer":450}"#;

impl Cluster {
    /// A caseworker at the CCAS opens a dossier and writes its housing
    /// section; a caseworker at the CAF is ready to read it.
    pub async fn housing_at_the_ccas(&self) -> (Desk, Desk, String) {
        let ccas = self.desk("ccas-rodez", "agent-ccas").await;
        let caf = self.desk("caf12", "agent-caf").await;
        let d = ccas.open().await.expect("open");
        ccas.put(&d, "housing", HOUSING).await.expect("put");
        (ccas, caf, d)
    }

    /// [`Cluster::housing_at_the_ccas`], then the person consents to share it
    /// with the CAF for a year and the CAF reads it once; returns the consent too.
    pub async fn housing_read_by_the_caf(&self) -> (Desk, Desk, String, String) {
        let (ccas, caf, d) = self.housing_at_the_ccas().await;
        let consent = ccas
            .grant(&d, &["housing"], &["caf12"], &next_year(&self.clock))
            .await
            .expect("grant");
        caf.read(&d, "housing", "ccas-rodez").await.expect("read");
        (ccas, caf, d, consent)
    }

    /// The person's access report of `dossier`, as `auditor`'s `maillon
    /// audit report` gathers it, dated by the cluster's clock.
    pub async fn access_report(
        &self,
        auditor: &Conn,
        dossier: &str,
    ) -> maillon_cli::audit::report::AccessReport {
        maillon_cli::audit::report::gather(
            auditor,
            self.genesis().signed(),
            &dossier.parse().expect("a dossier id"),
            maillon_node::clock::Clock::now(&*self.clock),
        )
        .await
        .expect("the report")
    }

    /// The log of `auditor`'s node as `maillon audit verify` fetches and
    /// checks it (against the genesis, every key from the roster chain):
    /// its size; any finding fails the test.
    pub async fn verified_log_size(&self, auditor: &Conn) -> u64 {
        let genesis = self.genesis().signed().clone();
        let (bundles, _) = maillon_cli::audit::fetch_bundles(auditor, &genesis, None, false)
            .await
            .expect("the node's log");
        let o = maillon_cli::audit::verify::verify_bundles(&genesis, &bundles, None, 0);
        assert!(o.findings.is_empty(), "{:#?}", o.findings);
        o.nodes[0].size
    }

    /// A caseworker's desk at a member.
    pub async fn desk(&self, id: &str, name: &str) -> Desk {
        Desk {
            conn: self.user(id, name, Role::Caseworker).await,
        }
    }
}

/// The status code of a result that must have failed.
pub fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    let s = r.expect_err("the call must fail");
    (s.code(), s.message().to_owned())
}

/// The housing share of dossier `d` that `owner` runs.
pub fn housing_share(d: &str, owner: &str) -> maillon_node::sharing::ShareId {
    maillon_node::sharing::ShareId {
        dossier: d.parse().expect("dossier id"),
        section: maillon_node::types::Section::Housing,
        owner: owner.parse().expect("member id"),
    }
}

/// The status code and the machine-readable reason of a result that must
/// have failed: tests match on the cause, not on the message.
pub fn refusal<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    let s = r.expect_err("the call must fail");
    let reason = maillon_node::transport::reason_of(&s)
        .unwrap_or_else(|| format!("(no reason; message: {})", s.message()));
    (s.code(), reason)
}

/// A date a year from the cluster's clock.
pub fn next_year(clock: &ManualClock) -> String {
    maillon_node::types::Date::from_unix(clock.now() + 365 * 86_400).to_string()
}

/// A node's audit entries, in order, as an auditor reads them (JSON values).
pub async fn audit_entries(auditor: &Conn) -> Vec<serde_json::Value> {
    let reply = auditor
        .api()
        .audit_tail(auditor.req(pb::AuditTailRequest {
            limit: 10_000,
            from: Some(0),
        }))
        .await
        .expect("audit tail")
        .into_inner();
    reply
        .events
        .iter()
        .map(|e| serde_json::from_str(&e.json).expect("entry is JSON"))
        .collect()
}

/// The kinds of a node's audit events, in order, as an auditor reads them.
pub async fn audit_kinds(auditor: &Conn) -> Vec<String> {
    audit_entries(auditor)
        .await
        .iter()
        .map(|v| v["event"].as_str().expect("event kind").to_owned())
        .collect()
}

/// A hostile node serving a peer API in place of a member, with its keys.
pub struct Impostor {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Impostor {
    /// Stops serving and frees the member's peer address.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

impl Cluster {
    /// Stops `id`'s node and serves `api` (made from its signing key) on its
    /// peer address over its own pinned TLS: a roster member gone hostile.
    pub async fn impersonate<P: maillon_proto::v1::peer_server::Peer>(
        &mut self,
        id: &str,
        api: impl FnOnce(maillon_node::crypto::NodeKey) -> P,
    ) -> Impostor {
        use maillon_node::crypto::{NodeKey, TlsIdentity};
        self.fed.node_mut(id).stop().await;
        let dir = self.node(id).dir.clone();
        let config = maillon_node::config::Config::load(&dir).expect("config");
        let identity =
            TlsIdentity::read(&config.tls_key_path(), &config.tls_cert_path()).expect("tls");
        let roster = maillon_node::daemon::load_roster(&config.roster_path()).expect("roster");
        let pins = Arc::new(maillon_node::roster::CurrentRoster::new(roster));
        let api = api(NodeKey::read(&config.signing_key_path()).expect("key"));
        // A stopped node has closed its listener: the address is free.
        let listener = tokio::net::TcpListener::bind(config.peer_listen)
            .await
            .expect("the stopped node freed its peer address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            maillon_node::transport::serve_peer_api(api, &identity, pins, listener, shutdown)
                .await
                .expect("the impostor serves");
        });
        Impostor { stop, server }
    }
}

/// Governance: votes, and waiting for every node to adopt.
impl Cluster {
    /// A connection as a member's first admin.
    pub fn admin(&self, id: &str) -> Conn {
        self.node(id).admin().expect("admin conn")
    }

    /// `proposer` proposes `change`, then each of `approvers` approves it;
    /// returns the last reply (adopted once a quorum signed).
    pub async fn vote(
        &self,
        change: &maillon_node::roster::Change,
        proposer: &str,
        approvers: &[&str],
    ) -> pb::GovProposalReply {
        let mut reply = self
            .admin(proposer)
            .gov_propose(change, "vote de l'assemblée du GIP")
            .await
            .expect("proposed");
        let id = reply.proposal.as_ref().expect("proposal").id.clone();
        for a in approvers {
            reply = self
                .admin(a)
                .gov_approve(&id, None)
                .await
                .expect("approved");
        }
        reply
    }

    /// Waits until every one of `ids` has roster `version` in force; panics
    /// after ten seconds (a wait for an outcome, not a measure of speed).
    pub async fn wait_version(&self, ids: &[&str], version: u64) {
        for id in ids {
            let admin = self.admin(id);
            let mut seen = 0;
            for _ in 0..500 {
                seen = admin.gov_status().await.expect("status").version;
                if seen >= version {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(seen, version, "{id} adopted roster v{version}");
        }
    }

    /// The members of a share's group at its owner, once the owner has
    /// applied the roster in force to its groups.
    pub async fn group_members(
        &self,
        owner: &str,
        share: &maillon_node::sharing::ShareId,
    ) -> Vec<String> {
        let node = self.running(owner).node();
        node.prune_groups()
            .await
            .expect("roster applied to the groups");
        node.share_members(share)
            .await
            .expect("members")
            .iter()
            .map(|m| m.to_string())
            .collect()
    }
}

impl Cluster {
    /// Runs the owner's upkeep steps for its groups (its own upkeep may be
    /// running them too) until the share's group holds `expected`; panics
    /// after ten seconds.
    pub async fn wait_group(
        &self,
        owner: &str,
        share: &maillon_node::sharing::ShareId,
        expected: &[&str],
    ) {
        let node = self.running(owner).node();
        let mut members = Vec::new();
        for _ in 0..200 {
            node.prune_groups()
                .await
                .expect("roster applied to the groups");
            node.resync_members().await.expect("members brought back");
            members = self.group_members(owner, share).await;
            if members == expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(members, expected, "the group of {share} at {owner}");
    }
}

/// The audit events of one kind at a node, as JSON values, in order.
pub async fn audit_events(auditor: &Conn, kind: &str) -> Vec<serde_json::Value> {
    audit_entries(auditor)
        .await
        .into_iter()
        .filter(|v| v["event"] == kind)
        .collect()
}

/// Speaking the peer API as a member, to offer hand-made roster versions.
impl Cluster {
    /// The genesis roster every node started from.
    pub fn genesis(&self) -> maillon_node::roster::VerifiedRoster {
        maillon_node::daemon::load_roster(&self.fed.dir.join("roster.json")).expect("genesis")
    }

    /// A member's signing key.
    pub fn key(&self, id: &str) -> maillon_node::crypto::NodeKey {
        self.node(id).signing_key().expect("signing key")
    }

    /// A peer client presenting `id`'s TLS certificate, telling roster v1.
    pub fn peer_as(&self, id: &str) -> maillon_node::transport::PeerClients {
        let config = maillon_node::config::Config::load(&self.node(id).dir).expect("config");
        let identity = maillon_node::crypto::TlsIdentity::read(
            &config.tls_key_path(),
            &config.tls_cert_path(),
        )
        .expect("tls");
        let roster = Arc::new(maillon_node::roster::CurrentRoster::new(self.genesis()));
        maillon_node::transport::PeerClients::new(identity, roster)
    }

    /// `id` as the genesis lists it (its card, for dialling it).
    pub fn member(&self, id: &str) -> maillon_node::roster::RosterMember {
        self.genesis()
            .roster()
            .member(&id.parse().expect("id"))
            .expect("listed")
            .clone()
    }
}

/// The next version of `at`, edited, unsigned.
pub fn next_version(
    at: &maillon_node::roster::VerifiedRoster,
    edit: impl FnOnce(&mut maillon_node::roster::Roster),
) -> maillon_node::roster::SignedRoster {
    let mut r = at.roster().clone();
    r.version += 1;
    r.previous = Some(at.hash_hex().to_owned());
    edit(&mut r);
    maillon_node::roster::SignedRoster::unsigned(r)
}

impl Cluster {
    /// The housing section of `d`, sealed by the CCAS for the département:
    /// a read request signed by cd12, sent over cd12's pinned TLS.
    pub async fn sealed_housing_for_cd12(&self, d: &str) -> Vec<u8> {
        use maillon_node::crypto::Context;
        use maillon_node::protocol::{ReadRequest, SignedBytes};
        use maillon_node::service::PeerNetwork;
        let request = ReadRequest {
            reader: "cd12".parse().expect("id"),
            user: "agent-cd".parse().expect("user"),
            role: Role::Caseworker,
            owner: "ccas-rodez".parse().expect("id"),
            dossier: d.parse().expect("dossier"),
            sections: vec![maillon_node::types::Section::Housing],
            purpose: "coordination du parcours".into(),
            nonce: hex::encode(rand::random::<[u8; 16]>()),
            time: self.clock.now(),
            break_glass: None,
        };
        let signed = SignedBytes::sign(&request, Context::Request, &self.key("cd12"));
        self.peer_as("cd12")
            .read_share(&self.member("ccas-rodez"), signed)
            .await
            .expect("the CCAS answers the département")
            .sealed
            .remove(0)
            .1
    }

    /// Whether `member`'s own MLS state opens `sealed` in the CCAS's housing
    /// share of `d` (the member's node must be stopped: its store is opened here).
    pub fn opens_housing(&self, member: &str, d: &str, sealed: &[u8]) -> bool {
        let store = maillon_node::storage::Store::open(&self.node(member).dir.join("store"))
            .expect("the member's store");
        let mls = maillon_node::sharing::Sharing::new(
            store,
            member.parse().expect("id"),
            &self.key(member),
        );
        let owner_key = self.member("ccas-rodez").card.signing_key;
        mls.open(&housing_share(d, "ccas-rodez"), sealed, &owner_key)
            .is_ok()
    }
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn found_in(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Every file under `dir` whose name contains `needle`.
pub fn files_named(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, needle));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(needle))
        {
            found.push(path);
        }
    }
    found
}
