//! `maillon bench`: measures the read path and its parts on real nodes on
//! loopback, and prints figures. Run it in release mode; figures are never
//! asserted by tests.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maillon_node::audit::{AuditEvent, AuditLog};
use maillon_node::clock::SystemClock;
use maillon_node::config::Profile;
use maillon_node::crypto::NodeKey;
use maillon_node::sharing::{ShareId, Sharing};
use maillon_node::storage::Store;
use maillon_node::types::{DossierId, MemberId, MemberKind, Role, Section};
use maillon_proto::v1 as pb;

use crate::client::Conn;
use crate::error::CliError;
use crate::federation::{Founder, LocalFederation};

mod floor;
pub mod python;

use floor::Floor;
pub use floor::relay_hop;

/// The demo's four founders and a second CCAS: a share of five members.
fn founders() -> Vec<Founder> {
    let mut founders = crate::demo::FOUNDERS.to_vec();
    founders.push(Founder {
        id: Cow::Borrowed("ccas-millau"),
        name: Cow::Borrowed("CCAS de Millau"),
        kind: MemberKind::Ccas,
    });
    founders
}

fn temp(e: std::io::Error) -> CliError {
    CliError::io("creating a temporary folder")(e)
}

/// Bytes of the files under `dir` (0 where it cannot be read).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{what:<44} p50 {:>8.3} ms   p99 {:>8.3} ms   (n = {})",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.len()
    );
}

async fn read(conn: &Conn, dossier: &str) -> Result<pb::SectionReply, tonic::Status> {
    conn.read_share(dossier, "housing", "ccas-rodez", "mesure")
        .await
}

async fn open_with_housing(ccas: &Conn) -> Result<String, CliError> {
    let d = ccas.open_dossier("Camille", "Martin", "1984-03-12").await?;
    let json = format!(r#"{{"notes":"{}"}}"#, "x".repeat(1000));
    ccas.put_section(&d, "housing", &json).await?;
    Ok(d)
}

async fn grant(ccas: &Conn, dossier: &str, to: &[&str]) -> Result<String, CliError> {
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
    Ok(ccas
        .grant_consent(dossier, &["housing"], to, "mesure", &until)
        .await?)
}

/// The federation of the bench, with a caseworker `agent` at the owner and
/// at a reader, and a dossier whose 1 KiB housing section is shared with
/// four partners (a share of five members).
async fn federation(tmp: &std::path::Path) -> Result<(LocalFederation, String), CliError> {
    if cfg!(debug_assertions) {
        println!(
            "warning: a debug build; build in release (`cargo build --release`) for real figures"
        );
    }
    let mut fed =
        LocalFederation::create(tmp, "gip-bench", &founders(), Arc::new(SystemClock)).await?;
    // The bench measures the read itself: no rate limit stands in its way.
    for f in founders() {
        let node = fed.node_mut(&f.id);
        node.stop().await;
        maillon_node::config::Config::write_limits(&node.dir, &maillon_node::limits::Limits::OFF)?;
        node.start(Arc::new(SystemClock)).await?;
    }
    let ccas = Conn::new(
        &fed.node("ccas-rodez")
            .add_user("agent", Role::Caseworker)
            .await?,
    )?;
    let caf = Conn::new(
        &fed.node("caf12")
            .add_user("agent", Role::Caseworker)
            .await?,
    )?;
    let d = open_with_housing(&ccas).await?;
    grant(
        &ccas,
        &d,
        &["caf12", "cd12", "relais-solidaire", "ccas-millau"],
    )
    .await?;
    read(&caf, &d).await?;
    Ok((fed, d))
}

/// A new connection as the caseworker `agent` of a node (after it was
/// started again, in this process or in another).
fn agent(fed: &LocalFederation, id: &str) -> Result<Conn, CliError> {
    let profile = Profile::read(&fed.node(id).dir.join("agent.profile.toml"))?;
    Ok(Conn::new(&profile)?)
}

/// `maillon bench --soak N`: N consented reads between two `maillond`
/// processes, then their stores and memory.
pub async fn soak(reads: usize, concurrency: usize) -> Result<(), CliError> {
    let tmp = tempfile::Builder::new()
        .prefix("maillon-bench-")
        .tempdir()
        .map_err(temp)?;
    let (mut fed, d) = federation(tmp.path()).await?;
    let floor = Floor::start(&mut fed, tmp.path()).await?;
    let reader_store = fed.node("caf12").dir.join("store");
    let soaked = floor
        .soak(
            &agent(&fed, "caf12")?,
            &d,
            reads,
            concurrency,
            &reader_store,
        )
        .await;
    floor.stop(&mut fed).await?;
    fed.stop().await;
    soaked
}

/// Runs every measurement and prints the figures.
pub async fn run(reads: usize, concurrency: usize) -> Result<(), CliError> {
    let tmp = tempfile::Builder::new()
        .prefix("maillon-bench-")
        .tempdir()
        .map_err(temp)?;
    let (mut fed, d) = federation(tmp.path()).await?;
    println!(
        "five nodes on loopback, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let floor = Floor::start(&mut fed, tmp.path()).await?;
    let measured = floor
        .measure(&agent(&fed, "caf12")?, &d, reads, concurrency)
        .await;
    floor.stop(&mut fed).await?;
    measured?;
    let (ccas, caf) = (agent(&fed, "ccas-rodez")?, agent(&fed, "caf12")?);

    let (mut to_first_read, mut to_refusal) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let d = open_with_housing(&ccas).await?;
        let t = Instant::now();
        let consent = grant(&ccas, &d, &["caf12"]).await?;
        read(&caf, &d).await?;
        to_first_read.push(t.elapsed());
        let t = Instant::now();
        ccas.revoke_consent(&consent).await?;
        match read(&caf, &d).await {
            Err(s) if s.code() == tonic::Code::PermissionDenied => to_refusal.push(t.elapsed()),
            other => {
                return Err(CliError::Unexpected(format!(
                    "expected a refusal after revocation, got {other:?}"
                )));
            }
        }
    }
    report("consent grant -> first read", to_first_read);
    report("revocation -> refusal", to_refusal);

    let owner = fed.node("ccas-rodez").running_node()?.node().clone();
    let share = ShareId {
        dossier: d.parse().map_err(|source| CliError::BadReply {
            what: "dossier id",
            source,
        })?,
        section: Section::Housing,
        owner: fed.node("ccas-rodez").id.clone(),
    };
    let reader = fed.node("caf12").running_node()?.node().clone();
    println!(
        "{:<44} {:>8} bytes at the owner, {} at a reader",
        "MLS state of a 5-member share",
        owner.share_state_bytes(&share).await?,
        reader.share_state_bytes(&share).await?
    );
    let held = dossier_view(&mut fed, &ccas, reads.clamp(1, 500)).await?;
    // The view stopped a partner; every peer answers the witness.
    fed.node_mut("ccas-millau")
        .start(Arc::new(SystemClock))
        .await?;
    audit_across(&fed, &held, 50).await?;
    witness_rounds(&fed, 50).await?;
    fed.stop().await;
    verify_entries(1_000_000)?;
    reopen_log(1_000_000).await?;

    // The MLS part of a read on its own: seal at the owner, open at a reader,
    // each loading the group's state from sled and writing back its changes
    // (the owner's flush runs beside its audit append on the read path).
    let (owner_dir, reader_dir) = (
        tempfile::tempdir().map_err(temp)?,
        tempfile::tempdir().map_err(temp)?,
    );
    let (owner_key, reader_key) = (NodeKey::generate(), NodeKey::generate());
    let (owner_id, reader_id): (MemberId, MemberId) =
        (share.owner.clone(), fed.node("caf12").id.clone());
    let owner = Sharing::new(Store::open(owner_dir.path())?, owner_id.clone(), &owner_key);
    let reader = Sharing::new(
        Store::open(reader_dir.path())?,
        reader_id.clone(),
        &reader_key,
    );
    let share = ShareId {
        dossier: DossierId::random(),
        section: Section::Housing,
        owner: owner_id.clone(),
    };
    owner.ensure_group(&share)?;
    let kp = reader.new_key_package(&owner_id)?;
    let change = owner
        .add_member(&share, &kp, &reader_id, &reader_key.public())?
        .ok_or_else(|| CliError::Unexpected("the reader was not added".into()))?;
    let keys = [
        (owner_id, owner_key.public()),
        (reader_id, reader_key.public()),
    ];
    let roster = |m: &MemberId| keys.iter().find(|(id, _)| id == m).map(|(_, k)| *k);
    let welcome = change
        .welcome
        .ok_or_else(|| CliError::Unexpected("no Welcome for the reader".into()))?;
    reader.join(&share, &welcome, &roster)?;
    let payload = vec![b'x'; 1024];
    let (mut seals, mut opens) = (Vec::new(), Vec::new());
    for _ in 0..reads.min(2000) {
        let t = Instant::now();
        let sealed = owner.seal(&share, &payload)?;
        seals.push(t.elapsed());
        let t = Instant::now();
        reader.open(&share, &sealed, &owner_key.public())?;
        opens.push(t.elapsed());
    }
    report("MLS seal 1 KiB, state written, unflushed", seals);
    report("MLS open 1 KiB, state written, unflushed", opens);

    // The two syncs of a read, one at a time: an audit append and a store flush.
    let dir = tempfile::tempdir().map_err(temp)?;
    let key = NodeKey::generate();
    let log = AuditLog::open(dir.path(), "maillon/bench".into(), &key.public())?;
    let store = Store::open(&dir.path().join("store"))?;
    let (mut appends, mut flushes) = (Vec::new(), Vec::new());
    for i in 0..reads.min(2000) {
        let t = Instant::now();
        log.append(
            0,
            AuditEvent::RosterAdopted {
                version: i as u64,
                hash: String::new(),
            },
        )
        .await?;
        appends.push(t.elapsed());
        store.put(maillon_node::storage::Tree::Meta, "bench", &i)?;
        let t = Instant::now();
        store.flush()?;
        flushes.push(t.elapsed());
    }
    report("durable audit append, one at a time", appends);
    report("sled store flush after one write", flushes);

    // Durable audit appends with group commit, 64 writers.
    let dir = tempfile::tempdir().map_err(temp)?;
    let key = NodeKey::generate();
    let log = Arc::new(AuditLog::open(
        dir.path(),
        "maillon/bench".into(),
        &key.public(),
    )?);
    let (writers, each) = (64usize, 2_000usize);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                log.append(
                    0,
                    AuditEvent::RosterAdopted {
                        version: (w * each + i) as u64,
                        hash: "0".repeat(64),
                    },
                )
                .await?;
            }
            Ok::<(), maillon_node::audit::AuditError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>8.0} events/s   ({} writers, fdatasync per batch)",
        "durable audit appends",
        (writers * each) as f64 / secs,
        writers
    );

    // A checkpoint of that log: its root from the tree's frontier, beside
    // the root rehashed from every leaf (what a checkpoint cost before).
    let size = log.size();
    let t = Instant::now();
    log.root_at(size)?;
    let rehashed = t.elapsed();
    let t = Instant::now();
    log.checkpoint(&key)?;
    let signed = t.elapsed();
    println!(
        "{:<44} {:>8.3} ms   (root rehashed from {size} leaves: {:.3} ms)",
        "checkpoint signed and persisted",
        signed.as_secs_f64() * 1e3,
        rehashed.as_secs_f64() * 1e3
    );
    Ok(())
}

/// One node witnessing its four peers, each of which grew since the last
/// round: per peer, its checkpoint fetched and verified, a consistency proof
/// fetched and checked, a cosignature made and given back.
async fn witness_rounds(fed: &LocalFederation, n: usize) -> Result<(), CliError> {
    let witness = fed.node("cd12").running_node()?.node().clone();
    let peers: Vec<_> = fed
        .nodes
        .iter()
        .filter(|node| node.id.as_str() != "cd12")
        .map(|node| node.running_node().map(|r| r.node().clone()))
        .collect::<Result<_, _>>()?;
    witness.witness_peers().await; // the first checkpoints are taken as they are
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        for p in &peers {
            p.audit_log()
                .append(
                    0,
                    maillon_node::audit::AuditEvent::RosterAdopted {
                        version: 0,
                        hash: "bench".into(),
                    },
                )
                .await?;
            p.checkpoint_if_grown().await?;
        }
        let t = Instant::now();
        let accepted = witness.witness_peers().await;
        samples.push(t.elapsed());
        if accepted != peers.len() {
            return Err(CliError::Unexpected(format!(
                "the witness accepted {accepted} of {} checkpoints",
                peers.len()
            )));
        }
    }
    report("witness round, 4 peers grown, cosigned", samples);
    Ok(())
}

/// `audit::verify_log`, which `maillon audit verify` runs, over a log of
/// A node's start-up with a log of `n` entries: the log opened from its
/// leaf index and saved frontier (its check then runs in the background,
/// timed too), beside the same log read whole and checked before it opens.
async fn reopen_log(n: usize) -> Result<(), CliError> {
    use maillon_node::audit::{AuditLog, CHECKED_AT_OPEN, Integrity};
    let dir = tempfile::tempdir().map_err(temp)?;
    let key = NodeKey::generate();
    let origin = "maillon/bench".to_owned();
    {
        let log = Arc::new(AuditLog::open(dir.path(), origin.clone(), &key.public())?);
        let writers = 256;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..n).step_by(writers) {
                    log.append(
                        1_800_000_000 + i as i64,
                        AuditEvent::RosterAdopted {
                            version: i as u64,
                            hash: "0".repeat(64),
                        },
                    )
                    .await?;
                }
                Ok::<(), maillon_node::audit::AuditError>(())
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| CliError::Unexpected(format!("a bench task failed: {e}")))??;
        }
        log.checkpoint(&key)?;
    }
    // The writer indexes its last batch after answering it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = [key.public()];
    let t = Instant::now();
    let log = AuditLog::open_checking(dir.path(), origin.clone(), &keys, CHECKED_AT_OPEN)?;
    let opened = t.elapsed();
    while log.integrity() == Integrity::Checking {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let checked = t.elapsed();
    if let Integrity::Failed(why) = log.integrity() {
        return Err(CliError::Unexpected(format!(
            "the log failed its check: {why}"
        )));
    }
    drop(log);
    let t = Instant::now();
    AuditLog::open_checking(dir.path(), origin, &keys, usize::MAX)?;
    let whole = t.elapsed();
    println!(
        "{:<44} {:>8.3} s   (checked in the background by {:.2} s; read whole: {:.2} s; {n} entries)",
        "audit log reopened from its index",
        opened.as_secs_f64(),
        checked.as_secs_f64(),
        whole.as_secs_f64()
    );
    Ok(())
}

/// `n` entries in memory: each decoded and hashed (on every core), the root
/// computed and checked against a signed checkpoint.
fn verify_entries(n: usize) -> Result<(), CliError> {
    use maillon_node::audit::{AuditEntry, AuditEvent, merkle, note::Checkpoint};
    let user: maillon_node::types::UserName =
        "agent".parse().map_err(|source| CliError::BadReply {
            what: "user",
            source,
        })?;
    let dossier = DossierId::random();
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            AuditEntry {
                time: 1_800_000_000 + i as i64,
                event: AuditEvent::SectionRead {
                    dossier: dossier.clone(),
                    section: Section::ALL[i % Section::ALL.len()],
                    by: user.clone(),
                },
            }
            .to_bytes()
        })
        .collect();
    let leaves: Vec<merkle::Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let key = NodeKey::generate();
    let origin = "maillon/bench".to_owned();
    let note = Checkpoint {
        origin: origin.clone(),
        size: n as u64,
        root: merkle::root(&leaves),
    }
    .sign(&key);
    let t = Instant::now();
    maillon_node::audit::verify_log(&entries, &note, &origin, &key.public())?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>8.2} s   ({:.0} entries/s, {} entries)",
        "audit verify_log",
        secs,
        n as f64 / secs,
        n
    );
    Ok(())
}

/// The unified view at the département of a dossier to which five partners
/// each contribute one section (the CCAS holds it; the CAF, the charity, the
/// second CCAS and the département itself attach), sequential; then again
/// with one partner stopped, whose source must come back as unreachable
/// within its deadline.
async fn dossier_view(
    fed: &mut LocalFederation,
    ccas: &Conn,
    n: usize,
) -> Result<String, CliError> {
    let d = open_with_housing(ccas).await?;
    let person = ("Camille", "Martin", "1984-03-12");
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
    let json = format!(r#"{{"notes":"{}"}}"#, "x".repeat(1000));
    let reader = Conn::new(
        &fed.node("cd12")
            .add_user("agent-view", Role::Caseworker)
            .await?,
    )?;
    reader.attach_dossier(&d, "ccas-rodez", person).await?;
    reader.put_section(&d, "employment", &json).await?;
    ccas.grant_consent(&d, &["housing"], &["cd12"], "mesure", &until)
        .await?;
    for (member, section) in [
        ("caf12", "resources"),
        ("relais-solidaire", "identity"),
        ("ccas-millau", "household"),
    ] {
        let desk = Conn::new(
            &fed.node(member)
                .add_user("agent-view", Role::Caseworker)
                .await?,
        )?;
        desk.attach_dossier(&d, "ccas-rodez", person).await?;
        desk.put_section(&d, section, &json).await?;
        desk.grant_consent(&d, &[section], &["cd12"], "mesure", &until)
            .await?;
    }
    let view = |reader: Conn, d: String| async move {
        let t = Instant::now();
        let sections = reader.view_dossier(&d, "mesure").await?;
        Ok::<_, CliError>((t.elapsed(), sections))
    };
    let (_, sections) = view(reader.clone(), d.clone()).await?; // warm the connections
    let ok = sections.iter().filter(|s| s.status == "ok").count();
    if ok != 5 {
        return Err(CliError::Unexpected(format!(
            "the view shows {ok} sections, not 5"
        )));
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(view(reader.clone(), d.clone()).await?.0);
    }
    report("dossier view, 5 partners' sections", samples);
    fed.node_mut("ccas-millau").stop().await;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n.min(50) {
        let (t, sections) = view(reader.clone(), d.clone()).await?;
        let down = sections
            .iter()
            .filter(|s| s.status == "unreachable")
            .count();
        if down != 1 {
            return Err(CliError::Unexpected(format!(
                "with a partner stopped, {down} sources are unreachable, not 1"
            )));
        }
        samples.push(t);
    }
    report("dossier view, one of the 5 partners down", samples);
    Ok(d)
}

/// The auditors' work across the five nodes, as the CCAS's auditor runs it
/// once every log was checkpointed and witnessed: `audit report` of the
/// dossier the five partners hold (each part fetched through the CCAS,
/// every proof and cosignature checked, the parts merged), and `audit
/// verify --all` (every log fetched, verified and checked against the others).
async fn audit_across(fed: &LocalFederation, d: &str, n: usize) -> Result<(), CliError> {
    let dpo = Conn::new(
        &fed.node("ccas-rodez")
            .add_user("dpo-bench", Role::Auditor)
            .await?,
    )?;
    for node in &fed.nodes {
        node.running_node()?.node().checkpoint_if_grown().await?;
    }
    for node in &fed.nodes {
        node.running_node()?.node().witness_peers().await;
    }
    let genesis = crate::commands::gov::load_roster(&fed.dir.join("roster.json"))?;
    let dossier: DossierId = d.parse().map_err(|source| CliError::BadReply {
        what: "dossier id",
        source,
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (mut samples, mut entries) = (Vec::with_capacity(n), 0);
    for _ in 0..n {
        let t = Instant::now();
        let r = crate::audit::report::gather(&dpo, genesis.signed(), &dossier, now).await?;
        samples.push(t.elapsed());
        if r.sources.len() != 5 || !r.anomalies.is_empty() {
            return Err(CliError::Unexpected(format!(
                "the report has {} sources and {} anomalies",
                r.sources.len(),
                r.anomalies.len()
            )));
        }
        entries = r.lines.len();
    }
    report(
        &format!("audit report, 5 holders, {entries} entries proven"),
        samples,
    );
    let (mut samples, mut leaves) = (Vec::with_capacity(n), 0);
    for _ in 0..n.min(20) {
        let t = Instant::now();
        let (bundles, unfetched) =
            crate::audit::fetch_bundles(&dpo, genesis.signed(), None, true).await?;
        let o = crate::audit::verify::verify_bundles(genesis.signed(), &bundles, None, now);
        samples.push(t.elapsed());
        if o.failed() || !unfetched.is_empty() || o.nodes.len() != 5 {
            return Err(CliError::Unexpected(format!(
                "audit verify --all: {} logs, {} failures, {} not fetched",
                o.nodes.len(),
                o.findings.len(),
                unfetched.len()
            )));
        }
        leaves = o.nodes.iter().map(|n| n.size).sum::<u64>();
    }
    report(
        &format!("audit verify --all, 5 logs, {leaves} leaves"),
        samples,
    );
    Ok(())
}

/// `maillon bench --adoption 20,50`: for each size, a federation of that
/// many nodes on loopback votes `rounds` roster versions; each is timed from
/// the moment the last needed approval is sent to the moment every node has
/// the new version in force.
pub async fn adoption(sizes: &[usize], rounds: usize) -> Result<(), CliError> {
    if cfg!(debug_assertions) {
        println!(
            "warning: a debug build; run `cargo run --release --bin maillon -- bench --adoption 20,50` for real figures"
        );
    }
    for &n in sizes {
        if n < 2 {
            return Err(CliError::Unexpected(
                "a federation has at least two members".into(),
            ));
        }
        let tmp = tempfile::Builder::new()
            .prefix("maillon-bench-gov-")
            .tempdir()
            .map_err(temp)?;
        let members: Vec<Founder> = (1..=n)
            .map(|i| Founder {
                id: Cow::Owned(format!("m{i:03}")),
                name: Cow::Owned(format!("Membre {i}")),
                kind: MemberKind::ALL[i % MemberKind::ALL.len()],
            })
            .collect();
        let started = Instant::now();
        let mut fed =
            LocalFederation::create(tmp.path(), "gip-bench", &members, Arc::new(SystemClock))
                .await?;
        println!(
            "{n} nodes started on loopback in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let admins: Vec<Conn> = fed
            .nodes
            .iter()
            .map(|node| node.admin())
            .collect::<Result<_, _>>()?;
        let nodes: Vec<_> = fed
            .nodes
            .iter()
            .map(|node| node.running_node().map(|r| r.node().clone()))
            .collect::<Result<_, _>>()?;
        let mut samples = Vec::new();
        for round in 0..rounds {
            // Alternate between two rules whose thresholds both stay at 2/3.
            let quorum = if round % 2 == 0 { "4/6" } else { "2/3" };
            let change = maillon_node::roster::Change::SetQuorum {
                quorum: quorum
                    .parse()
                    .map_err(|e: maillon_node::roster::RosterError| {
                        CliError::Unexpected(e.to_string())
                    })?,
            };
            let version = nodes[0].roster().roster().version + 1;
            let need = nodes[0].roster().roster().quorum.threshold(n);
            let proposed = admins[0].gov_propose(&change, "mesure").await?;
            let id = proposed
                .proposal
                .map(|p| p.id)
                .ok_or_else(|| CliError::Unexpected("no proposal".into()))?;
            for admin in &admins[1..need - 1] {
                admins_approve(admin, &id).await?;
            }
            let t0 = Instant::now();
            admins_approve(&admins[need - 1], &id).await?;
            loop {
                if nodes
                    .iter()
                    .all(|node| node.roster().roster().version >= version)
                {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    return Err(CliError::Unexpected(format!(
                        "v{version} not adopted by every node within 60 s"
                    )));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            samples.push(t0.elapsed());
        }
        report(
            &format!("adoption by all {n} nodes after the last approval"),
            samples.clone(),
        );
        samples.sort_unstable();
        println!(
            "{:<44} max {:>8.3} ms",
            "",
            samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        fed.stop().await;
    }
    Ok(())
}

async fn admins_approve(admin: &Conn, id: &str) -> Result<(), CliError> {
    admin.gov_approve(id, None).await?;
    Ok(())
}
