//! Command-line arguments and what each command does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use maillon_node::config::{InitOptions, Profile};
use maillon_node::crypto::NodeKey;
use maillon_node::roster::{Charter, MemberCard, Roster, SignedRoster};
use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use tonic::Code;

use crate::client::Conn;

/// The command line of a Maillon federation.
#[derive(Parser, Debug)]
#[command(name = "maillon", version, about)]
pub struct Args {
    /// Client profile (endpoint, certificate pin, token) for commands that talk to a node.
    #[arg(long, global = true, env = "MAILLON_PROFILE")]
    pub profile: Option<PathBuf>,
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
    /// Build and sign rosters (GIP assembly).
    #[command(subcommand)]
    Gov(GovCmd),
    /// Manage the node's users (admin).
    #[command(subcommand)]
    User(UserCmd),
    /// Who the profile's token belongs to.
    Whoami,
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
    /// Measure the read path on nodes started on loopback (run in release mode).
    Bench {
        /// Reads measured sequentially, and in total with concurrency.
        #[arg(long, default_value_t = 2000)]
        reads: usize,
        /// Reads in flight for the throughput measure.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
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
    },
    /// Verify a genesis roster and list its members and signatures.
    Verify {
        /// The roster file.
        roster: PathBuf,
    },
}

/// `maillon user …`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Remove a user: its token stops working at once.
    Remove {
        /// User name.
        name: String,
    },
    /// Create a user; prints its token once.
    Add {
        /// User name.
        name: String,
        /// admin, caseworker or auditor.
        #[arg(long)]
        role: String,
        /// Also write a ready-to-use profile (0600) here.
        #[arg(long)]
        profile_out: Option<PathBuf>,
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
    },
}

/// `maillon section …`
#[derive(Subcommand, Debug)]
pub enum SectionCmd {
    /// Write this node's copy of a section from a JSON file.
    Put {
        /// Dossier id.
        dossier: String,
        /// Section.
        section: String,
        /// JSON object file ("-" for standard input).
        #[arg(long)]
        file: PathBuf,
    },
    /// Print this node's copy of a section.
    Get {
        /// Dossier id.
        dossier: String,
        /// Section.
        section: String,
    },
}

/// `maillon consent …`
#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// Record the person's consent to share sections with members.
    Grant {
        /// Dossier id.
        dossier: String,
        /// Sections, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        sections: Vec<String>,
        /// Members to share with, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// Purpose.
        #[arg(long)]
        purpose: String,
        /// Last day the consent holds, YYYY-MM-DD.
        #[arg(long)]
        until: String,
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
    /// Read a section another member shares.
    Read {
        /// Dossier id.
        dossier: String,
        /// Section.
        section: String,
        /// The member that owns the section.
        #[arg(long)]
        from: String,
        /// Why you read it (logged by the owner and shown to the person).
        #[arg(long, default_value = "coordination du parcours")]
        purpose: String,
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
    /// Print a checkpoint of this node's log, signed by the node key.
    Checkpoint,
}

/// The first line of an error chain, with its causes, on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return format!("{}: {}", code_name(s.code()), s.message());
    }
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        if let Some(s) = cause.downcast_ref::<tonic::Status>() {
            out.push_str(&format!(": {}: {}", code_name(s.code()), s.message()));
        } else {
            out.push_str(&format!(": {cause}"));
        }
    }
    out
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "invalid argument",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::ResourceExhausted => "too large",
        Code::FailedPrecondition => "failed precondition",
        Code::Unavailable => "unavailable",
        _ => "error",
    }
}

/// Exit codes: 1 failure, 2 bad input, 3 refused, 4 not found, 5 unreachable.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let status = e.chain().find_map(|c| c.downcast_ref::<tonic::Status>());
    match status.map(|s| s.code()) {
        Some(
            Code::InvalidArgument
            | Code::ResourceExhausted
            | Code::OutOfRange
            | Code::AlreadyExists,
        ) => 2,
        Some(Code::PermissionDenied | Code::Unauthenticated) => 3,
        Some(Code::NotFound) => 4,
        Some(Code::Unavailable) => 5,
        _ => 1,
    }
}

fn profile(args_profile: &Option<PathBuf>) -> Result<Conn> {
    let path = args_profile
        .as_deref()
        .context("this command talks to a node: give --profile FILE (or set MAILLON_PROFILE)")?;
    let p = Profile::read(path).with_context(|| format!("reading profile {}", path.display()))?;
    Ok(Conn::new(&p)?)
}

fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Runs one command.
pub async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Node(NodeCmd::Init {
            dir,
            member,
            name,
            kind,
            peer_addr,
            peer_endpoint,
            client_addr,
        }) => {
            let init = maillon_node::daemon::init(&InitOptions {
                dir: dir.clone(),
                member: member.parse()?,
                name,
                kind: kind.parse()?,
                peer_addr,
                peer_endpoint,
                client_addr,
            })
            .await?;
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
        Command::Gov(cmd) => gov(cmd),
        Command::Demo { keep } => crate::demo::run(keep).await,
        Command::Bench { reads, concurrency } => crate::bench::run(reads, concurrency.max(1)).await,
        other => client_command(&args.profile, other).await,
    }
}

fn gov(cmd: GovCmd) -> Result<()> {
    match cmd {
        GovCmd::Genesis {
            federation,
            quorum,
            cards,
            charter,
            out,
        } => {
            let mut parsed = Vec::new();
            for c in &cards {
                let text = std::fs::read_to_string(c)
                    .with_context(|| format!("reading {}", c.display()))?;
                let card: MemberCard = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a member card", c.display()))?;
                parsed.push(card);
            }
            let charter = match charter {
                Some(p) => serde_json::from_str::<Charter>(&std::fs::read_to_string(&p)?)
                    .with_context(|| format!("{} is not a charter", p.display()))?,
                None => Charter::default(),
            };
            let roster = Roster::genesis(&federation, quorum.parse()?, parsed, charter)?;
            if out.exists() {
                bail!("{} exists; not overwriting a roster", out.display());
            }
            std::fs::write(
                &out,
                serde_json::to_string_pretty(&SignedRoster::unsigned(roster))? + "\n",
            )?;
            println!(
                "genesis roster written to {}; every founder now signs it with `maillon gov sign`",
                out.display()
            );
            Ok(())
        }
        GovCmd::Sign { roster, dir } => {
            let text = std::fs::read_to_string(&roster)
                .with_context(|| format!("reading {}", roster.display()))?;
            let mut signed: SignedRoster = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a roster", roster.display()))?;
            let config = maillon_node::config::Config::load(&dir)?;
            let key = NodeKey::read(&config.signing_key_path())?;
            signed.sign(&config.member, &key)?;
            std::fs::write(&roster, serde_json::to_string_pretty(&signed)? + "\n")?;
            match signed.clone().verify_genesis() {
                Ok(_) => println!(
                    "signed by {}; the roster now carries every founder's signature",
                    config.member
                ),
                Err(e) => println!("signed by {}; still needed: {e}", config.member),
            }
            Ok(())
        }
        GovCmd::Verify { roster } => {
            let v = maillon_node::daemon::load_roster(&roster)?;
            let r = v.roster();
            println!(
                "{} roster v{} ({}), quorum {}",
                r.federation,
                r.version,
                v.hash_hex(),
                r.quorum
            );
            for m in &r.members {
                println!(
                    "  {:<16} {:<12} {:<22} {}",
                    m.card.id, m.card.kind, m.card.endpoint, m.card.name
                );
            }
            println!("every founder has signed: the roster is valid");
            Ok(())
        }
    }
}

async fn client_command(profile_path: &Option<PathBuf>, cmd: Command) -> Result<()> {
    let conn = profile(profile_path)?;
    let mut api = conn.api();
    match cmd {
        Command::Whoami => {
            let r = api
                .who_am_i(conn.req(pb::WhoAmIRequest {}))
                .await?
                .into_inner();
            println!("{} at {} ({})", r.user, r.member, r.role);
        }
        Command::User(UserCmd::Add {
            name,
            role,
            profile_out,
        }) => {
            let role: Role = role.parse()?;
            let r = api
                .add_user(conn.req(pb::AddUserRequest {
                    name: name.clone(),
                    role: role.to_string(),
                }))
                .await?
                .into_inner();
            if let Some(out) = profile_out {
                let mut p = Profile::read(profile_path.as_deref().context("profile")?)?;
                p.user = r.name.clone();
                p.token = r.token.clone();
                p.write_new(&out)?;
                println!(
                    "user {} ({}) created; profile written to {}",
                    r.name,
                    r.role,
                    out.display()
                );
            } else {
                println!(
                    "user {} ({}) created; token (shown once): {}",
                    r.name, r.role, r.token
                );
            }
        }
        Command::User(UserCmd::Remove { name }) => {
            api.remove_user(conn.req(pb::RemoveUserRequest { name: name.clone() }))
                .await?;
            println!("user {name} removed; its token no longer works");
        }
        Command::Dossier(DossierCmd::Open {
            given_name,
            family_name,
            birth_date,
        }) => {
            let r = api
                .open_dossier(conn.req(pb::OpenDossierRequest {
                    given_name,
                    family_name,
                    birth_date,
                }))
                .await?
                .into_inner();
            println!("{}", r.dossier);
        }
        Command::Section(SectionCmd::Put {
            dossier,
            section,
            file,
        }) => {
            let json = read_input(&file)?;
            api.put_section(conn.req(pb::PutSectionRequest {
                dossier,
                section,
                json,
            }))
            .await?;
        }
        Command::Section(SectionCmd::Get { dossier, section }) => {
            let r = api
                .get_section(conn.req(pb::GetSectionRequest { dossier, section }))
                .await?
                .into_inner();
            print_json(&r.json);
        }
        Command::Consent(ConsentCmd::Grant {
            dossier,
            sections,
            to,
            purpose,
            until,
        }) => {
            let r = api
                .grant_consent(conn.req(pb::GrantConsentRequest {
                    dossier,
                    sections,
                    audience: to,
                    purpose,
                    until,
                }))
                .await?
                .into_inner();
            println!("{}", r.consent);
        }
        Command::Consent(ConsentCmd::Revoke { consent }) => {
            api.revoke_consent(conn.req(pb::RevokeConsentRequest {
                consent: consent.clone(),
            }))
            .await?;
            println!("consent {consent} revoked");
        }
        Command::Consent(ConsentCmd::List { dossier }) => {
            let r = api
                .list_consents(conn.req(pb::ListConsentsRequest { dossier }))
                .await?
                .into_inner();
            for c in r.consents {
                let state = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "recorded"
                };
                println!(
                    "{}  {}  to {}  until {}  [{}]  {}",
                    c.id,
                    c.sections.join(","),
                    c.audience.join(","),
                    c.until,
                    state,
                    c.purpose
                );
            }
        }
        Command::Share(ShareCmd::Read {
            dossier,
            section,
            from,
            purpose,
        }) => {
            let r = api
                .read_share(conn.req(pb::ReadShareRequest {
                    dossier,
                    section,
                    owner: from,
                    purpose,
                }))
                .await?
                .into_inner();
            print_json(&r.json);
            if let Some(leaf) = r.receipt_leaf {
                eprintln!("(receipt: entry {leaf} of {}'s audit log)", r.owner);
            }
        }
        Command::Audit(AuditCmd::Tail { limit }) => {
            let r = api
                .audit_tail(conn.req(pb::AuditTailRequest { limit, from: None }))
                .await?
                .into_inner();
            for e in r.events {
                println!("{:>6}  {}", e.index, e.json);
            }
            eprintln!("({} events in the log)", r.tree_size);
        }
        Command::Audit(AuditCmd::Checkpoint) => {
            let r = api
                .audit_checkpoint(conn.req(pb::AuditCheckpointRequest {}))
                .await?
                .into_inner();
            print!("{}", r.checkpoint);
            eprintln!("verifier key: {}", r.verifier_key);
        }
        Command::Node(_) | Command::Gov(_) | Command::Demo { .. } | Command::Bench { .. } => {
            bail!("this command does not talk to a node")
        }
    }
    Ok(())
}

fn print_json(json: &str) {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| json.to_owned())
        ),
        Err(_) => println!("{json}"),
    }
}
