//! The command line: clap types only; `crate::commands` does what they say.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The command line of a Maillon federation.
#[derive(Parser, Debug)]
#[command(name = "maillon", version, about)]
pub struct Args {
    /// Client profile (endpoint, certificate pin, token) for commands that talk to a node.
    #[arg(long, global = true, env = "MAILLON_PROFILE")]
    pub profile: Option<PathBuf>,
    /// How log lines are written on standard error (filtered by `MAILLON_LOG`).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MAILLON_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: maillon_node::logging::LogFormat,
    /// Print what a command shows as JSON instead of text: one object (or a
    /// list), with the stable field names `cli/JSON.md` documents.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set up a node (its IT team).
    #[command(subcommand)]
    Node(NodeCmd),
    /// The GIP's roster: found it, propose and approve changes, see where it stands.
    #[command(subcommand)]
    Gov(GovCmd),
    /// Manage the node's users (admin).
    #[command(subcommand)]
    User(UserCmd),
    /// Who the profile's token belongs to.
    Whoami,
    /// Deliveries waiting for members that could not be reached: notices
    /// and members to bring back into share groups (admin).
    Outbox,
    /// Open dossiers (caseworker).
    #[command(subcommand)]
    Dossier(DossierCmd),
    /// Write and read this node's sections (caseworker).
    #[command(subcommand)]
    Section(SectionCmd),
    /// Record and revoke the person's consent (caseworker).
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Read what another member shares (caseworker).
    #[command(subcommand)]
    Share(ShareCmd),
    /// Read and verify audit logs (auditor).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The census of aids the members offer on the territory: search it,
    /// show or export it (every role); publish this member's (admin).
    #[command(subcommand)]
    Aids(AidsCmd),
    /// Orient the person to another member for one of its services, with
    /// the person's consent naming it (`maillon orient DSU-… --to caf12
    /// --service aide-logement --reason "…"`); follow and answer
    /// orientations (caseworker).
    Orient(OrientArgs),
    /// Vigilance alerts: raise one about someone who seems isolated or in
    /// danger (volunteer, caseworker); take them into account and close
    /// them at the member the charter names (caseworker).
    #[command(subcommand)]
    Alert(AlertCmd),
    /// The coordination commission on a dossier: convene partners, close it
    /// with its decisions (the dossier's référent); list them.
    #[command(subcommand)]
    Commission(CommissionCmd),
    /// The federation's indicators for a period, summed from every member's
    /// signed counts with small cells suppressed, for the GIP's assembly
    /// (admin, auditor).
    Indicators {
        /// 2026, 2026-Q4 or 2026-12.
        #[arg(long)]
        period: String,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Measure the read path, or roster adoption, on nodes started on loopback (run in release mode).
    Bench {
        /// Reads measured sequentially, and in total with concurrency.
        #[arg(long, default_value_t = 2000)]
        reads: usize,
        /// Reads in flight for the throughput measure.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Instead, measure roster adoption in federations of these sizes
        /// (comma-separated, e.g. 20,50): the time from the last approval to
        /// every node having adopted the new version.
        #[arg(long, value_delimiter = ',')]
        adoption: Vec<usize>,
        /// Versions voted per federation size in the adoption measure.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Instead, a soak: this many consented reads (64 in flight), then
        /// the owner's and the reader's store and memory, before and after.
        #[arg(long)]
        soak: Option<usize>,
    },
    /// One hop of the bench's bare relay (started by `maillon bench`).
    #[command(hide = true)]
    BenchRelayHop {
        /// Listen address, ip:port.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The folder holding this hop's `tls.key` and `tls.crt`.
        #[arg(long)]
        identity: PathBuf,
        /// A last hop: the first hop's pin, required of its callers.
        #[arg(long)]
        client_pin: Option<String>,
        /// A first hop: the last hop's address.
        #[arg(long, requires = "next_pin")]
        next: Option<String>,
        /// A first hop: the last hop's pin.
        #[arg(long)]
        next_pin: Option<String>,
    },
    /// Print a shell completion script (e.g. `maillon completions bash >
    /// /etc/bash_completion.d/maillon`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (maillon.1, maillon-user.1, maillon-user-add.1…)
    /// into a folder.
    Man {
        /// The folder (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Play the parcours of the design on a federation started on loopback.
    Demo {
        /// Leave the nodes running afterwards, to explore with the CLI.
        #[arg(long)]
        keep: bool,
    },
}

/// `maillon node …`
#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Create a node directory: keys (0600), config, member card, first admin.
    Init {
        /// The new node directory (absent or empty).
        #[arg(long)]
        dir: PathBuf,
        /// Member id, e.g. ccas-rodez.
        #[arg(long)]
        member: String,
        /// Display name, e.g. "CCAS de Rodez".
        #[arg(long)]
        name: String,
        /// Kind: departement, ccas, caf, cpam, hospital, association.
        #[arg(long)]
        kind: String,
        /// Peer API listen address, ip:port.
        #[arg(long)]
        peer_addr: SocketAddr,
        /// What other members dial to reach the peer API, host:port (default: --peer-addr).
        #[arg(long)]
        peer_endpoint: Option<String>,
        /// Client API address, ip:port.
        #[arg(long)]
        client_addr: SocketAddr,
    },
    /// Check a node folder before (or while) it runs: configuration and its
    /// environment overrides, folder and key permissions, keys, the roster
    /// and this node's place in it, listen addresses, and every peer (a real
    /// handshake with this node's key, its health and its clock). Prints
    /// what is wrong and how to fix it; exit 1 if anything is.
    Check {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Back up the whole node (store, audit log, keys) as one age-encrypted
    /// archive: from the running node (its admin profile) or, when none
    /// serves the folder, from the folder itself. The backup is logged.
    Backup {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// The archive to write (created 0600; never over an existing file).
        #[arg(long)]
        out: PathBuf,
        /// Encrypt to this age recipient (`age1…`, from `node backup-key`); repeat for several.
        #[arg(
            long = "recipient",
            required_unless_present = "passphrase_file",
            conflicts_with = "passphrase_file"
        )]
        recipients: Vec<String>,
        /// Encrypt with the passphrase on this file's first line (12 characters or more).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Bring a node back from a backup into a new folder (on a new host):
    /// its first start asks every peer what it witnessed of the node's log,
    /// and signs nothing if one witnessed more than the backup holds.
    Restore {
        /// The archive (`maillon node backup --out`).
        #[arg(long)]
        from: PathBuf,
        /// The folder to restore into (absent or empty).
        #[arg(long)]
        dir: PathBuf,
        /// The age identity file that decrypts it (from `node backup-key`).
        #[arg(
            long,
            required_unless_present = "passphrase_file",
            conflicts_with = "passphrase_file"
        )]
        identity: Option<PathBuf>,
        /// The file holding the passphrase it was made with.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Let a restored node's first start go on without some members'
    /// answers (gone for good, or not answering a suspended member): it
    /// cannot then know whether they witnessed more of its log.
    RestoreWithout {
        /// The restored node directory.
        #[arg(long)]
        dir: PathBuf,
        /// The members not to wait for.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Make an age key pair for backups: the identity (0600) to keep off the
    /// node's host, and the recipient to back up to.
    BackupKey {
        /// Where to write the identity.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask a running node (the profile's) how it is: version, member, roster
    /// version, listeners, its audit log, its peers, what waits (admin, auditor).
    Status,
    /// Stage new keys (signing, TLS, or both) and the card that lists them,
    /// for a `gov propose update-member … --card card.next.json`; the node
    /// puts them in force once the federation adopts that version.
    RotateKeys {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// Rotate the signing key only.
        #[arg(long, conflicts_with = "tls_only")]
        signing_only: bool,
        /// Rotate the TLS key only.
        #[arg(long)]
        tls_only: bool,
    },
    /// Give a newly admitted partner's node the federation's genesis roster,
    /// checked against the hash its sponsor gave out of band; at start the
    /// node fetches the later versions from the members and verifies them.
    Join {
        /// The node directory (from `maillon node init`).
        #[arg(long)]
        dir: PathBuf,
        /// The genesis roster file, as the sponsor handed it.
        #[arg(long)]
        roster: PathBuf,
        /// The genesis roster's hash, hex, as the sponsor read it out.
        #[arg(long)]
        genesis_hash: String,
        /// The sponsor's card.json: the node fetches the chain from it first
        /// (the founders may have moved or changed keys since the genesis).
        #[arg(long)]
        sponsor: Option<PathBuf>,
    },
}

/// `maillon gov …`
#[derive(Subcommand, Debug)]
pub enum GovCmd {
    /// Build the unsigned genesis roster from the founders' member cards.
    Genesis {
        /// Federation name, e.g. gip-aveyron.
        #[arg(long)]
        federation: String,
        /// Quorum for later changes, N/D of voting members.
        #[arg(long, default_value = "2/3")]
        quorum: String,
        /// A founder's card.json (repeat for each founder).
        #[arg(long = "card", required = true)]
        cards: Vec<PathBuf>,
        /// A charter JSON file (default: the conservative built-in charter).
        #[arg(long)]
        charter: Option<PathBuf>,
        /// Where to write the roster.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add this node's signature to a roster file.
    Sign {
        /// The roster file (updated in place).
        roster: PathBuf,
        /// The signing node's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Sign without showing the roster and asking first.
        #[arg(long)]
        yes: bool,
    },
    /// Verify a genesis roster and list its members and signatures.
    Verify {
        /// The roster file.
        roster: PathBuf,
    },
    /// Propose the next roster version to the federation (admin of a voting member).
    #[command(subcommand)]
    Propose(ProposeCmd),
    /// List the open proposals: who approved, what is still missing for quorum.
    List,
    /// Show one open proposal: what it changes, in plain words, and where it stands.
    Show {
        /// The proposal: its version number, or at least 8 hex digits of its id.
        proposal: String,
        /// Also write the candidate with its signatures to this file (for a
        /// newcomer to sign with `maillon gov sign`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign an open proposal as this member; adopted by every node once it has quorum.
    Approve {
        /// The proposal: its version number, or at least 8 hex digits of its id.
        proposal: String,
        /// The same candidate signed elsewhere (a newcomer's proof of its key).
        #[arg(long = "with")]
        with: Option<PathBuf>,
    },
    /// Decline to sign an open proposal.
    Reject {
        /// The proposal: its version number, or at least 8 hex digits of its id.
        proposal: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// The roster in force: version, hash, members; which peers are behind.
    Status,
}

/// `maillon gov propose …`: each builds version n+1 from the version in force.
#[derive(Subcommand, Debug)]
pub enum ProposeCmd {
    /// Admit a new partner from its card.json.
    Admit {
        /// The newcomer's card.json (from `maillon node init`).
        #[arg(long)]
        card: PathBuf,
        /// It votes on later changes (the default).
        #[arg(long, conflicts_with = "associate")]
        voting: bool,
        /// It takes part without a vote.
        #[arg(long)]
        associate: bool,
        /// Why, in your words.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Suspend a member: every node refuses it at once and owners remove it from their groups.
    Suspend {
        /// Member id.
        member: String,
        /// Why (carried in the roster version).
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a suspended member (its groups need new consent decisions).
    Reinstate {
        /// Member id.
        member: String,
        /// Why, in your words.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Exclude a member for good.
    Exclude {
        /// Member id.
        member: String,
        /// Why (carried in the roster version).
        #[arg(long)]
        reason: String,
    },
    /// Change a member's endpoint, or its keys from a new card.
    UpdateMember {
        /// Member id.
        member: String,
        /// Its new peer endpoint, host:port.
        #[arg(long)]
        endpoint: Option<String>,
        /// Its new card (new keys): the member signs with its old and new keys.
        #[arg(long)]
        card: Option<PathBuf>,
        /// Why, in your words.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change the quorum rule, N/D of voting members.
    SetQuorum {
        /// The new rule, e.g. 3/5.
        quorum: String,
        /// Why, in your words.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace the charter with a JSON file.
    SetCharter {
        /// The charter file.
        charter: PathBuf,
        /// Why, in your words.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `maillon user …`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Every user of this node: name, role, when its token ends.
    List,
    /// Remove a user: its token stops working at once.
    Remove {
        /// User name.
        name: String,
    },
    /// Create a user; prints its token once.
    Add {
        /// User name.
        name: String,
        /// admin, caseworker, auditor or volunteer (alerts only).
        #[arg(long)]
        role: String,
        /// Also write a ready-to-use profile (0600) here.
        #[arg(long)]
        profile_out: Option<PathBuf>,
        /// Days its token is valid (default 365, at most 1825).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        valid_days: u32,
        /// Also print a one-time link to log in to the web console.
        #[arg(long)]
        console: bool,
    },
    /// Change a user's role, or link it to its identity at the identity
    /// provider the console logs staff in through.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["role", "identity", "no_identity"])))]
    Update {
        /// User name.
        name: String,
        /// Its new role: admin, caseworker, auditor or volunteer (alerts only).
        #[arg(long)]
        role: Option<String>,
        /// Its identity at the identity provider: the value of the claim
        /// `oidc.claim` names in node.toml (its `sub` by default).
        #[arg(long, conflicts_with = "no_identity")]
        identity: Option<String>,
        /// Unlink it from the identity provider.
        #[arg(long)]
        no_identity: bool,
    },
    /// Print a one-time link for a user to log in to the web console
    /// (it works once, for 15 minutes).
    ConsoleLink {
        /// User name.
        name: String,
    },
    /// Give a user a new token (before the old one expires, or when it may
    /// have leaked): the old one stops working at once; prints it once.
    Rotate {
        /// User name.
        name: String,
        /// Also write a ready-to-use profile (0600) here.
        #[arg(long)]
        profile_out: Option<PathBuf>,
        /// Days the new token is valid (default 365, at most 1825).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        valid_days: u32,
    },
}

/// `maillon dossier …`
#[derive(Subcommand, Debug)]
pub enum DossierCmd {
    /// Open a dossier for a person at this node's desk.
    Open {
        /// Given name.
        #[arg(long)]
        given_name: String,
        /// Family name.
        #[arg(long)]
        family_name: String,
        /// Birth date, YYYY-MM-DD.
        #[arg(long)]
        birth_date: String,
        /// The vigilance alert the dossier is opened from: closed once the
        /// dossier is open, its outcome `dossier_opened`.
        #[arg(long)]
        alert: Option<String>,
    },
    /// Find this node's dossiers by the person's names, birth date
    /// (12/03/1984 or 1984-03-12) or the start of the id (six characters or
    /// more); every word must answer. Only what this desk typed, the newest
    /// first, at most 50. Each search is logged (not its words).
    Search {
        /// Words to look for, two characters at least in all.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// The unified dossier: this node's sections and every section other
    /// members share with it, fetched at once, each with its status.
    View {
        /// Dossier id (DSU-…).
        dossier: String,
        /// Why you read it (logged by each owner and shown to the person).
        #[arg(long, default_value = "coordination du parcours")]
        purpose: String,
    },
    /// Attach to a dossier another member holds, from the id the person gives;
    /// the person's identity is typed here and stays at this node.
    Attach {
        /// Dossier id (DSU-…).
        dossier: String,
        /// The member that holds it.
        #[arg(long)]
        from: String,
        /// Given name.
        #[arg(long)]
        given_name: String,
        /// Family name.
        #[arg(long)]
        family_name: String,
        /// Birth date, YYYY-MM-DD.
        #[arg(long)]
        birth_date: String,
    },
    /// Close a dossier at the member that holds it: every share of it ends
    /// at every member; sections are erased when the charter's retention
    /// runs out.
    Close {
        /// Dossier id (DSU-…).
        dossier: String,
        /// Why: end_of_parcours, moved_away, person_request, deceased, other.
        #[arg(long)]
        reason: String,
    },
    /// Erase a dossier now, at every member holding it: the person's request
    /// (RGPD art. 17) when no legal obligation keeps the data. Final.
    Erase {
        /// Dossier id (DSU-…).
        dossier: String,
        /// Confirm that the person asked and that no legal obligation keeps the data.
        #[arg(long)]
        confirm: bool,
    },
    /// Name the référent de parcours, at the member that holds the dossier.
    /// A référent at another member (a hand-over) needs the person's
    /// consent naming that member.
    Referent {
        /// Dossier id (DSU-…).
        dossier: String,
        /// The référent: USER@MEMBER.
        #[arg(long)]
        set: String,
        /// The consent (CNS-…) naming the référent's member, for a member other than this one.
        #[arg(long)]
        consent: Option<String>,
    },
}

/// `maillon section …`
#[derive(Subcommand, Debug)]
pub enum SectionCmd {
    /// Write this node's copy of a section from a JSON file.
    Put {
        /// Dossier id.
        dossier: String,
        /// The section (housing, resources, …).
        section: String,
        /// JSON object file ("-" for standard input).
        #[arg(long)]
        file: PathBuf,
    },
    /// Print this node's copy of a section.
    Get {
        /// Dossier id.
        dossier: String,
        /// The section (housing, resources, …).
        section: String,
    },
}

/// `maillon aids …`
#[derive(Subcommand, Debug)]
pub enum AidsCmd {
    /// The services in force that answer every filter given (none: all).
    Search {
        /// Words found in the name, description, organization or eligibility
        /// (accents and case aside).
        #[arg(long)]
        text: Option<String>,
        /// A category (e.g. logement, alimentation, microcredit).
        #[arg(long)]
        category: Option<String>,
        /// A commune where it is given.
        #[arg(long)]
        near: Option<String>,
        /// Only what is open now (Europe/Paris).
        #[arg(long)]
        open_now: bool,
    },
    /// The services whose criteria the sections of a dossier you may read
    /// satisfy, each with the criteria met and those that could not be
    /// checked: rules, never a score (caseworker; each section read is
    /// logged, as in `dossier view`).
    Match {
        /// Dossier id.
        dossier: String,
        /// Why the sections are read (logged with each read).
        #[arg(long, default_value = "recherche des aides et droits (non-recours)")]
        purpose: String,
    },
    /// One service, withdrawn or not: MEMBER/ID (e.g. caf12/aide-logement).
    Show {
        /// The member and the service's id, MEMBER/ID.
        service: String,
    },
    /// Publish one of this member's services, or a new version of it, from
    /// a JSON file shaped on Open Referral HSDS 3 (see README, "The census
    /// of aids") (admin).
    Publish {
        /// The service's JSON file (at most 16 KiB).
        #[arg(long)]
        file: PathBuf,
    },
    /// Withdraw one of this member's services (admin).
    Withdraw {
        /// The service's id.
        service: String,
    },
    /// The whole census in force, as HSDS 3 JSON or as CSV.
    Export {
        /// hsds (JSON) or csv.
        #[arg(long, default_value = "hsds")]
        format: ExportFormat,
        /// Write it to this file (never overwritten) instead of the standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The census export's format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A JSON list of HSDS 3 services.
    Hsds,
    /// One service a line, comma-separated, no cell read as a formula.
    Csv,
}

/// `maillon commission …`
#[derive(Subcommand, Debug)]
pub enum CommissionCmd {
    /// Convene partners on a dossier, with the person's consent naming every
    /// one of them (you must be its référent de parcours).
    Convene {
        /// Dossier id.
        dossier: String,
        /// The members invited, comma-separated.
        #[arg(long = "with", value_delimiter = ',', required = true)]
        participants: Vec<String>,
        /// What it will decide on.
        #[arg(long)]
        agenda: String,
        /// The day it meets, YYYY-MM-DD.
        #[arg(long)]
        on: String,
        /// The consent naming every participant (default: the one in force).
        #[arg(long)]
        consent: Option<String>,
    },
    /// Close a commission convened here: each decision is written into the
    /// support plan, and the signed minutes go to every participant.
    Close {
        /// Commission id.
        commission: String,
        /// A decision, "MEMBER|what|YYYY-MM-DD" (who does what by when); repeat it.
        #[arg(long = "decision")]
        decisions: Vec<String>,
    },
    /// The commissions convened here or to which this node was invited.
    List,
}

/// `maillon alert …`
#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Raise an alert to the member the charter names (the CCAS, say): it
    /// carries only these few words; you will see that it was received and
    /// taken into account, never what was done.
    Raise {
        /// Whom it is about and where to find them, in a few words (at most 300 bytes).
        #[arg(long)]
        about: String,
        /// The commune.
        #[arg(long = "where")]
        place: String,
        /// isolation, health, housing, danger or other.
        #[arg(long)]
        concern: String,
        /// The recipient, if you name it: it must be the one the charter names.
        #[arg(long)]
        to: Option<String>,
    },
    /// The alerts you raised and where each stands; at the recipient, every
    /// alert received, with its words (caseworker).
    List {
        /// Only those in this status: raised, received, taken, closed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Take an alert received here into account (caseworker).
    Take {
        /// Alert id.
        alert: String,
    },
    /// Close an alert received here with its outcome (caseworker).
    Close {
        /// Alert id.
        alert: String,
        /// contacted, dossier_opened, referred, unreachable or no_action.
        #[arg(long)]
        outcome: String,
    },
}

/// `maillon orient …`: send one, or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OrientArgs {
    /// List or answer orientations.
    #[command(subcommand)]
    pub cmd: Option<OrientCmd>,
    /// Dossier id (held here, open).
    #[arg(required = true)]
    pub dossier: Option<String>,
    /// The receiving member.
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// The service's id in that member's census (`maillon aids search`).
    #[arg(long, required = true)]
    pub service: Option<String>,
    /// Why, in a few words (at most 500 bytes; no section content).
    #[arg(long, required = true)]
    pub reason: Option<String>,
    /// The consent it rests on (default: the one in force that names the member).
    #[arg(long)]
    pub consent: Option<String>,
}

/// `maillon orient list|accept|decline|complete`
#[derive(Subcommand, Debug)]
pub enum OrientCmd {
    /// The orientations sent or received here, newest first, each step.
    List {
        /// Only those this node sent.
        #[arg(long, conflicts_with = "received")]
        sent: bool,
        /// Only those this node received.
        #[arg(long)]
        received: bool,
        /// Only those in this status: sent, accepted, declined, completed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Take in a person oriented here.
    Accept {
        /// Orientation id.
        orientation: String,
        /// A note for the sender.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Decline an orientation received here, saying why.
    Decline {
        /// Orientation id.
        orientation: String,
        /// Why (told to the sender).
        #[arg(long)]
        reason: String,
    },
    /// Mark an orientation received here completed: the person has the service.
    Complete {
        /// Orientation id.
        orientation: String,
        /// A note for the sender.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// `maillon consent …`
#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// Record the person's decision: share sections with members, mask
    /// sections from everyone, or both. Say how it was given: --form REF
    /// (a signed form), --oral (said at the desk, you are the witness), or
    /// --informed with --legal-mission (the law allows sharing without consent).
    #[command(group(clap::ArgGroup::new("how").required(true).args(["form", "oral", "informed"])))]
    Grant {
        /// Dossier id.
        dossier: String,
        /// Sections shared, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "to")]
        sections: Vec<String>,
        /// Members to share with, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "sections")]
        to: Vec<String>,
        /// Sections the person masks from every member, break-glass included.
        #[arg(long, value_delimiter = ',')]
        mask: Vec<String>,
        /// Why (shown in the person's access report and receipt).
        #[arg(long)]
        purpose: String,
        /// First day it holds, YYYY-MM-DD (default: today).
        #[arg(long)]
        from: Option<String>,
        /// Last day it holds, YYYY-MM-DD.
        #[arg(long)]
        until: String,
        /// The reference of the form the person signed.
        #[arg(long)]
        form: Option<String>,
        /// The person said it at the desk; you witness it.
        #[arg(long)]
        oral: bool,
        /// The person was informed of a sharing the law allows (with --legal-mission).
        #[arg(long, requires = "legal_mission")]
        informed: bool,
        /// The sharing rests on a legal mission, not consent: the provision of
        /// law (e.g. "CASF L.226-2-2").
        #[arg(long)]
        legal_mission: Option<String>,
    },
    /// Print a consent's receipt, as handed to the person (French text, or --json).
    Show {
        /// Consent id.
        consent: String,
    },
    /// Revoke a consent.
    Revoke {
        /// Consent id.
        consent: String,
    },
    /// List the consents of a dossier.
    List {
        /// Dossier id.
        dossier: String,
    },
}

/// `maillon share …`
#[derive(Subcommand, Debug)]
pub enum ShareCmd {
    /// Read sections another member shares, in one request.
    Read {
        /// Dossier id.
        dossier: String,
        /// The sections (housing, resources, …), comma-separated.
        #[arg(value_delimiter = ',', required = true)]
        sections: Vec<String>,
        /// The member that owns them.
        #[arg(long)]
        from: String,
        /// Why you read it (logged by the owner and shown to the person).
        #[arg(long, default_value = "coordination du parcours")]
        purpose: String,
        /// Break the glass: read without consent, for a grave and imminent
        /// danger the charter names. Say why in a real sentence (at least 40
        /// characters); the access is flagged, notified and reviewed.
        #[arg(long, value_name = "JUSTIFICATION")]
        break_glass: Option<String>,
    },
}

/// `maillon audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print the last events of this node's audit log.
    Tail {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The entries of this node's log a filter selects, the newest first:
    /// by dossier, kind of event and day (every criterion must hold). Looks
    /// at 50,000 entries at most per call and tells where to go on.
    Search {
        /// Entries about this dossier.
        #[arg(long)]
        dossier: Option<String>,
        /// Entries of this kind (e.g. read_granted, consent_revoked).
        #[arg(long)]
        kind: Option<String>,
        /// From this day on, YYYY-MM-DD (UTC).
        #[arg(long)]
        since: Option<String>,
        /// Up to this day included, YYYY-MM-DD (UTC).
        #[arg(long)]
        until: Option<String>,
        /// Entries before this index (the `next` a previous search gave).
        #[arg(long)]
        before: Option<u64>,
        /// How many, 1 to 500.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Print a checkpoint of this node's log, signed by the node key.
    Checkpoint,
    /// Verify audit logs without trusting any one node: every checkpoint
    /// signature and cosignature, every entry against the roots, each log
    /// against what this auditor verified of it before (remembered in the
    /// state file); then across logs, what each node witnessed of the
    /// others, every granted read against a consent in force or a
    /// break-glass, every receipt a reader kept against the owner's log, and
    /// break-glass accesses not yet reviewed. Prints a summary, then each
    /// failure with its node, entry and reason; exits 1 on any failure.
    Verify {
        /// The federation's genesis roster, as the auditor holds it (every
        /// key is taken from the roster chain verified from it, never from
        /// a node).
        #[arg(long)]
        roster: PathBuf,
        /// The auditor's memory of verified checkpoints (default:
        /// audit-state.json beside the profile, or in the current folder
        /// with --offline and no profile).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Verify this member's log, as it shows it to this node (default:
        /// this node's own).
        #[arg(long, conflicts_with_all = ["all", "offline"])]
        node: Option<String>,
        /// Verify every active member's log, and each against the others.
        #[arg(long, conflicts_with = "offline")]
        all: bool,
        /// Verify exported bundles (`audit export`) with no node running.
        #[arg(long, num_args = 1.., value_name = "FILE")]
        offline: Vec<PathBuf>,
    },
    /// Export a log as a bundle file for offline verification: the node's
    /// signed manifest (checkpoints, cosignatures, what it witnessed, its
    /// alarms, its roster chain) and every leaf. The file is written 0600:
    /// the entries name users and purposes.
    Export {
        /// The file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Export this member's log, as it shows it to this node (entries
        /// about dossiers this node does not hold come as their hash only).
        #[arg(long)]
        node: Option<String>,
    },
    /// The person's access report for a dossier, in French, gathered from
    /// every member that holds a part of it, each entry proven by inclusion
    /// in its member's signed, witnessed log (times in Europe/Paris). Exits 1
    /// after printing it when a member did not answer or its answer does
    /// not hold.
    Report {
        /// Dossier id (DSU-…).
        dossier: String,
        /// The federation's genesis roster, as the auditor holds it.
        #[arg(long)]
        roster: PathBuf,
        /// text, html (a printable page) or json (with a C2SP tlog-proof
        /// for each entry).
        #[arg(long, default_value = "text", value_parser = ["text", "html", "json"])]
        format: String,
    },
    /// Print this node's log verifier key, in the C2SP note form
    /// (`<name>+<key id>+<base64 key>`), for other verifiers of that format.
    Vkey,
    /// What this node witnessed of its peers: the latest checkpoint it
    /// cosigned of each, every alarm with its evidence, and its own
    /// checkpoint with the cosignatures it gathered.
    Witness,
    /// List every break-glass access granted here, or told of here as the
    /// référent's member, for review.
    BreakGlass {
        /// Only those not reviewed yet.
        #[arg(long)]
        pending: bool,
    },
    /// Mark a break-glass access reviewed, with your comment.
    Review {
        /// The access (BGL-…).
        id: String,
        /// Your comment, a real sentence (at least 20 characters).
        #[arg(long)]
        comment: String,
    },
}
