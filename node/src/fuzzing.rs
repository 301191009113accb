//! Fuzz entry points: one function per decoder that takes bytes from a peer or a file.
//!
//! Each function hands its input to the real decoder the way the node does and
//! ignores the outcome: they exist to show that no input makes the node panic
//! (a panic reachable from a peer before authentication is a vulnerability).
//! `node/fuzz/` drives them with libFuzzer (`cargo fuzz run -s none TARGET`),
//! and `node/tests/corpora.rs` replays the committed corpora through them.
//!
//! Inputs that must get past a signature or an MLS secret to reach deep code
//! are checked against a fixed fixture: the members' keys come from constant
//! seeds, and the MLS member's state is loaded from
//! `node/fuzz/fixture/member.json`. [`write_seeds`] writes that state together
//! with the seed corpora, so that the seed Welcome, commit and messages are
//! valid against it; regenerating one means regenerating both.
//!
//! Files go to one folder per process, `maillon-fuzzing-<pid>` in the
//! temporary directory (`TMPDIR`); the folders of processes that have exited are
//! removed when the next process starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::audit::note::Checkpoint;
use crate::audit::{AuditEntry, AuditEvent, AuditLog};
use crate::config::{Config, InitOptions, Profile};
use crate::crypto::{Context, NodeKey, PublicKey, Signature, SpkiHash, sha256, write_secret_file};
use crate::protocol::{Basis, Notice, ReadRequest, Receipt, ReceiptItem, SignedBytes};
use crate::roster::{Charter, MemberCard, Roster, RosterMember, SignedRoster};
use crate::service::REQUEST_WINDOW;
use crate::sharing::{ShareId, Sharing};
use crate::storage::{MlsSnapshot, Store};
use crate::types::{
    ConsentId, DossierId, GrantId, MemberId, MemberKind, MemberStatus, Role, Section,
};

/// The owner of the fixture's shares, which signs receipts and checkpoints.
const OWNER: &str = "ccas-rodez";
/// The member whose MLS state the fixture holds, and which sends read requests.
const MEMBER: &str = "caf12";
/// A third member, which the seed commit adds.
const THIRD: &str = "cd12";
/// The owner's audit log origin.
const ORIGIN: &str = "maillon/ccas-rodez";
/// The owner's clock when it checks a read request (2026-01-01, Unix seconds).
const NOW: i64 = 1_767_225_600;
/// Where the fixture's MLS state is kept, next to the corpora it goes with.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/fixture/member.json");

/// Checks a signed read request as the owner does (`Node::answer_read`),
/// short of what needs a node (the roster, the signature, the nonce store):
/// `ReadRequest::decode` (size, JSON, nonce, purpose), the names and the
/// time; then checks that the audit events the owner would log for it read
/// back from the log unchanged.
pub fn read_request(data: &[u8]) {
    let Ok(req) = ReadRequest::decode(data) else {
        return;
    };
    if req.reader.as_str() != MEMBER || req.owner.as_str() != OWNER {
        return;
    }
    let request = hex::encode(sha256(data));
    for section in &req.sections {
        round_trips(AuditEvent::ReadDenied {
            request: request.clone(),
            reader: req.reader.clone(),
            user: req.user.clone(),
            dossier: req.dossier.clone(),
            section: *section,
            reason: "replayed request".into(),
            nonce: req.nonce.clone(),
        });
    }
    if NOW.abs_diff(req.time) > REQUEST_WINDOW.unsigned_abs() {
        return;
    }
    if let Some(why) = &req.break_glass {
        round_trips(AuditEvent::BreakGlassGranted {
            grant: GrantId::random(),
            dossier: req.dossier.clone(),
            reader: req.reader.clone(),
            user: req.user.clone(),
            role: req.role,
            sections: req.sections.clone(),
            justification: why.clone(),
            until: NOW + 86_400,
        });
    }
    for section in &req.sections {
        round_trips(AuditEvent::ReadGranted {
            request: request.clone(),
            reader: req.reader.clone(),
            user: req.user.clone(),
            role: req.role,
            dossier: req.dossier.clone(),
            section: *section,
            consent: req.break_glass.is_none().then(ConsentId::random),
            break_glass: req.break_glass.is_some().then(GrantId::random),
            purpose: req.purpose.clone(),
            nonce: req.nonce.clone(),
        });
    }
}

/// Decodes a peer's notice (`Notice::decode`, size first) as the receiver
/// does; panics unless what decodes encodes back to a notice that decodes
/// the same, and unless the audit events the receiver would log for it read
/// back from the log unchanged.
pub fn notice(data: &[u8]) {
    let Ok(notice) = Notice::decode(data) else {
        return;
    };
    assert_eq!(
        Notice::decode(&notice.to_bytes()).ok().as_ref(),
        Some(&notice),
        "a notice does not round-trip"
    );
    let from = member_id(OWNER);
    match notice {
        Notice::Referent {
            dossier,
            member,
            user,
            since,
            partners,
        } => round_trips(AuditEvent::ReferentNoted {
            dossier,
            member,
            user,
            from,
            since,
            partners,
        }),
        Notice::BreakGlass {
            grant,
            dossier,
            reader,
            sections,
            granted_at,
            until,
        } => round_trips(AuditEvent::BreakGlassNotified {
            grant,
            owner: from,
            dossier,
            reader,
            sections,
            granted_at,
            until,
        }),
        Notice::Closed {
            dossier,
            reason,
            at,
        } => round_trips(AuditEvent::DossierClosed {
            dossier,
            reason,
            by: None,
            from: Some(from),
            at: Some(at),
        }),
        Notice::Erased { dossier } => round_trips(AuditEvent::DossierErased {
            dossier,
            ground: crate::types::ErasureGround::PersonRequest,
            by: None,
            from: Some(from),
        }),
        Notice::Orientation {
            orientation,
            signature,
        } => round_trips(AuditEvent::OrientationReceived {
            orientation: orientation.id.clone(),
            dossier: orientation.dossier.clone(),
            from,
            service: orientation.service.clone(),
            sealed: base64_of(
                &[
                    &signature.to_bytes()[..],
                    &serde_json::to_vec(&orientation).unwrap_or_default(),
                ]
                .concat(),
            ),
            message: None,
            signature: None,
        }),
        Notice::Commission {
            commission,
            signature,
        } => round_trips(AuditEvent::CommissionInvited {
            commission: commission.id.clone(),
            dossier: commission.dossier.clone(),
            from,
            sealed: base64_of(
                &[
                    &signature.to_bytes()[..],
                    &serde_json::to_vec(&commission).unwrap_or_default(),
                ]
                .concat(),
            ),
            message: None,
            signature: None,
        }),
        Notice::Minutes { minutes, signature } => round_trips(AuditEvent::CommissionMinutes {
            commission: minutes.commission.clone(),
            dossier: minutes.dossier.clone(),
            decisions: u32::try_from(minutes.decisions.len()).unwrap_or(u32::MAX),
            by: None,
            from: Some(from),
            sealed: base64_of(
                &[
                    &signature.to_bytes()[..],
                    &serde_json::to_vec(&minutes).unwrap_or_default(),
                ]
                .concat(),
            ),
            message: None,
            signature: None,
        }),
        Notice::Alert { alert, .. } => round_trips(AuditEvent::AlertReceived {
            alert: alert.id.clone(),
            from,
            concern: alert.concern,
            sealed: base64_of(alert.about.as_bytes()),
        }),
        Notice::AlertAck { ack, .. } => round_trips(AuditEvent::AlertAcknowledged {
            alert: ack.id,
            status: ack.status,
            from,
        }),
        Notice::OrientationStep { step, signature } => {
            round_trips(AuditEvent::OrientationStepped {
                orientation: step.id.clone(),
                dossier: step.dossier.clone(),
                status: step.status,
                service: String::new(),
                by: None,
                from: Some(from),
                sealed: base64_of(
                    &[
                        &signature.to_bytes()[..],
                        &serde_json::to_vec(&step).unwrap_or_default(),
                    ]
                    .concat(),
                ),
                message: None,
                signature: None,
            })
        }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Panics unless an event built from a peer's fields reads back from the log
/// as written: a leaf that did not would end the log's valid prefix at reopening.
fn round_trips(event: AuditEvent) {
    let entry = AuditEntry { time: NOW, event };
    let bytes = entry.to_bytes();
    let back = AuditEntry::from_bytes(&bytes).ok();
    assert_eq!(
        back.as_ref(),
        Some(&entry),
        "an audit entry does not round-trip"
    );
}

/// Checks an owner's receipt (`Receipt::verify`) against the fixed owner and
/// request: once signed by the owner's key (reaching the JSON and the checks
/// behind the signature), once with its first 64 bytes as the signature.
pub fn receipt(data: &[u8]) {
    let fx = keys();
    let owner = roster_member(OWNER, &fx.owner.public(), 0);
    let request = receipt_request();
    let signed = SignedBytes {
        bytes: data.to_vec(),
        signature: fx.owner.sign(Context::Receipt, data),
    };
    let asked = [Section::Housing, Section::Resources];
    let _ = Receipt::verify(
        &signed,
        &owner.card.id,
        &owner.card.signing_key,
        &request,
        &asked,
    );
    if let Some((signature, bytes)) = data.split_at_checked(64)
        && let Ok(signature) = Signature::from_bytes(signature)
    {
        let forged = SignedBytes {
            bytes: bytes.to_vec(),
            signature,
        };
        let _ = Receipt::verify(
            &forged,
            &owner.card.id,
            &owner.card.signing_key,
            &request,
            &asked,
        );
    }
}

/// The request every fuzzed receipt must name: hex SHA-256 of a fixed text.
fn receipt_request() -> String {
    hex::encode(sha256(b"maillon fuzzing: the read request"))
}

/// Checks a KeyPackage as an owner does before adding the fixed member.
pub fn key_package(data: &[u8]) {
    let _ = Sharing::check_key_package(data, &member_id(MEMBER), &keys().member.public());
}

/// Joins the fixture's invited share from a Welcome (`Sharing::join`).
pub fn welcome(data: &[u8]) {
    static MEMBER_STATE: OnceLock<Mutex<MlsMember>> = OnceLock::new();
    let m = MlsMember::get(&MEMBER_STATE, "welcome");
    let invited = m.fixture.invited.clone();
    m.after(m.sharing.join(&invited, data, &roster_key).is_ok());
}

/// Applies a commit to the fixture's main share (`Sharing::apply_commit`).
pub fn commit(data: &[u8]) {
    static MEMBER_STATE: OnceLock<Mutex<MlsMember>> = OnceLock::new();
    let m = MlsMember::get(&MEMBER_STATE, "commit");
    let main = m.fixture.main.clone();
    m.after(m.sharing.apply_commit(&main, data, &roster_key).is_ok());
}

/// Opens an application message in the fixture's main share (`Sharing::open`).
pub fn message(data: &[u8]) {
    static MEMBER_STATE: OnceLock<Mutex<MlsMember>> = OnceLock::new();
    let m = MlsMember::get(&MEMBER_STATE, "message");
    let main = m.fixture.main.clone();
    let owner = keys().owner.public();
    m.after(m.sharing.open(&main, data, &owner).is_ok());
}

/// Reads a roster file as a starting node does (`daemon::load_roster`, from
/// memory): UTF-8, `SignedRoster` JSON, then `verify_genesis`.
pub fn roster(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(signed) = serde_json::from_str::<SignedRoster>(text) {
        let _ = signed.verify_genesis();
    }
}

/// Takes a roster version as a peer offers it (`Node::accept_offer`, short
/// of the store): `SignedRoster::decode` (size first), then, against the
/// fixture's genesis, `describe_changes`, `check_link`, `tally` and
/// `verify_successor`.
pub fn roster_offer(data: &[u8]) {
    let Ok(signed) = SignedRoster::decode(data) else {
        return;
    };
    let genesis = fixture_genesis();
    let _ = crate::roster::describe_changes(genesis.roster(), &signed.roster);
    if genesis.check_link(&signed.roster).is_ok() {
        let _ = genesis.tally(&signed);
        let _ = genesis.verify_successor(signed);
    }
}

/// The fixture's genesis roster, signed by its three founders.
fn fixture_genesis() -> &'static crate::roster::VerifiedRoster {
    static GENESIS: OnceLock<crate::roster::VerifiedRoster> = OnceLock::new();
    GENESIS.get_or_init(|| {
        genesis_signed(3)
            .and_then(|s| s.verify_genesis().map_err(text))
            .unwrap_or_else(|e| panic!("fixture genesis: {e}"))
    })
}

/// Verifies a checkpoint note (`Checkpoint::verify`) from the fixed owner.
pub fn checkpoint(data: &[u8]) {
    if let Ok(note) = std::str::from_utf8(data) {
        let _ = Checkpoint::verify(note, ORIGIN, &keys().owner.public());
    }
}

/// Opens an audit log whose file holds these bytes (`AuditLog::open`), next
/// to a signed checkpoint of the empty tree (which any log extends, so that
/// opening gets past it); when it opens, every entry it kept must read back,
/// and opening it again must find the same log.
pub fn audit_log(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static SCRATCH: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SCRATCH.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = DIR.get_or_init(|| {
        let dir = scratch("audit_log");
        let empty = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: crate::audit::merkle::root(&[]),
        };
        let written = std::fs::write(dir.join("checkpoint"), empty.sign(&keys().owner));
        if let Err(e) = written {
            panic!("cannot write the fixture checkpoint: {e}");
        }
        dir
    });
    if std::fs::write(dir.join("audit.log"), data).is_err() {
        return;
    }
    let open = || AuditLog::open(dir, ORIGIN.into(), &keys().owner.public());
    let Ok(log) = open() else {
        return;
    };
    let size = log.size();
    let kept = log.entries(0, usize::MAX).map(|e| e.len() as u64);
    assert_eq!(
        kept.ok(),
        Some(size),
        "an entry the log kept does not read back"
    );
    drop(log);
    let again = open().map(|log| log.size());
    assert_eq!(
        again.ok(),
        Some(size),
        "the log changed on opening it again"
    );
}

/// Loads a node folder whose `node.toml` holds these bytes (`Config::load`).
pub fn node_config(data: &[u8]) {
    static SCRATCH: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SCRATCH.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = scratch("node_config");
    if std::fs::write(Config::file(&dir), data).is_ok() {
        let _ = Config::load(&dir);
    }
}

/// Reads a client profile file holding these bytes (`Profile::read`).
pub fn profile(data: &[u8]) {
    static SCRATCH: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SCRATCH.lock().unwrap_or_else(PoisonError::into_inner);
    let path = scratch("profile").join("profile.toml");
    if !path.exists() && write_secret_file(&path, b"").is_err() {
        return;
    }
    // Overwriting keeps the 0600 mode the profile reader insists on.
    if std::fs::write(&path, data).is_ok() {
        let _ = Profile::read(&path);
    }
}

/// This process's folder for fuzzing files, created on first use.
fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let me = std::process::id();
        sweep_exited(&tmp, me);
        let dir = tmp.join(format!("maillon-fuzzing-{me}"));
        // A folder left by an exited process that had our pid.
        let _ = std::fs::remove_dir_all(&dir);
        create_private_dir(&dir);
        dir
    })
}

/// Removes the fuzzing folders of processes that no longer run. Only where
/// `/proc` tells which do; elsewhere they stay.
fn sweep_exited(tmp: &Path, me: u32) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("maillon-fuzzing-"))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != me
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A sub-folder of the process folder, created 0700 if absent.
fn scratch(name: &str) -> PathBuf {
    let dir = process_dir().join(name);
    create_private_dir(&dir);
    dir
}

/// Creates a folder 0700, as the node's own folders are, if absent.
fn create_private_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    if let Err(e) = made {
        panic!("cannot create {}: {e}", dir.display());
    }
}

/// The fixture's keys. `NodeKey` is built from a seed only by reading a key
/// file, so each is written to the process folder and read back.
struct Keys {
    owner: NodeKey,
    member: NodeKey,
    third: NodeKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = scratch("keys");
        let key = |name: &str, seed: u8| {
            let path = dir.join(name);
            let text = format!("{}\n", B64.encode([seed; 32]));
            write_secret_file(&path, text.as_bytes())
                .and_then(|()| NodeKey::read(&path))
                .unwrap_or_else(|e| panic!("fixture key {name}: {e}"))
        };
        Keys {
            owner: key(OWNER, 1),
            member: key(MEMBER, 2),
            third: key(THIRD, 3),
        }
    })
}

/// A fixed member id (the constants above are valid ids).
fn member_id(id: &str) -> MemberId {
    id.parse()
        .unwrap_or_else(|e| panic!("fixture member id {id}: {e}"))
}

/// What the fixture's roster says: the three members and their keys.
fn roster_key(id: &MemberId) -> Option<PublicKey> {
    let k = keys();
    match id.as_str() {
        OWNER => Some(k.owner.public()),
        MEMBER => Some(k.member.public()),
        THIRD => Some(k.third.public()),
        _ => None,
    }
}

/// A roster entry for `id` with `key`; `n` makes its TLS pin unique.
fn roster_member(id: &str, key: &PublicKey, n: u8) -> RosterMember {
    RosterMember {
        card: MemberCard {
            id: member_id(id),
            name: id.to_uppercase(),
            kind: MemberKind::Ccas,
            endpoint: format!("127.0.0.1:{}", 7001 + u16::from(n)),
            signing_key: *key,
            tls_spki_sha256: SpkiHash([n; 32]),
        },
        status: MemberStatus::Active,
        voting: true,
    }
}

/// The MLS state of the fixed member, as committed in [`FIXTURE`].
#[derive(Serialize, Deserialize)]
struct MlsFixture {
    /// The share whose group the member belongs to, at epoch 1.
    main: ShareId,
    /// The share the member holds an unused KeyPackage for.
    invited: ShareId,
    /// The member's snapshots by scope: hex key to hex value.
    scopes: BTreeMap<String, BTreeMap<String, String>>,
}

impl MlsFixture {
    /// The snapshots as the store keeps them.
    fn snapshots(&self) -> BTreeMap<String, MlsSnapshot> {
        let unhex =
            |s: &String| hex::decode(s).unwrap_or_else(|e| panic!("{FIXTURE}: not hex: {e}"));
        self.scopes
            .iter()
            .map(|(scope, entries)| {
                let snapshot = entries.iter().map(|(k, v)| (unhex(k), unhex(v))).collect();
                (scope.clone(), snapshot)
            })
            .collect()
    }
}

/// The fixed member over its own store, holding the fixture's MLS state.
struct MlsMember {
    store: Store,
    sharing: Sharing,
    fixture: MlsFixture,
    snapshots: BTreeMap<String, MlsSnapshot>,
}

impl MlsMember {
    /// The member of one target, set up on first use; one caller at a time.
    fn get(slot: &'static OnceLock<Mutex<Self>>, target: &str) -> MutexGuard<'static, Self> {
        slot.get_or_init(|| Mutex::new(Self::load(target)))
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn load(target: &str) -> Self {
        let regenerate = "regenerate it and the corpora with \
            `cargo run --manifest-path node/fuzz/Cargo.toml --example write_seeds`";
        let text = std::fs::read_to_string(FIXTURE)
            .unwrap_or_else(|e| panic!("{FIXTURE}: {e}; {regenerate}"));
        let fixture: MlsFixture =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{FIXTURE}: {e}; {regenerate}"));
        let store = Store::open(&scratch(&format!("mls-{target}")))
            .unwrap_or_else(|e| panic!("fixture store: {e}"));
        let sharing = Sharing::new(store.clone(), member_id(MEMBER), &keys().member);
        let member = Self {
            store,
            sharing,
            snapshots: fixture.snapshots(),
            fixture,
        };
        member.restore();
        // A fixture that this build of openmls cannot read would make every
        // input fail early, and the fuzzing worthless: refuse it.
        let epoch = member.sharing.epoch(&member.fixture.main).ok();
        assert_eq!(epoch, Some(1), "{FIXTURE} does not load; {regenerate}");
        member
    }

    /// Puts the member's state back as the fixture has it, if `changed`: an
    /// accepted input moves the group on, and the next input must meet the
    /// same state for runs to be reproducible. A refused one changes nothing.
    fn after(&self, changed: bool) {
        if changed {
            self.restore();
        }
    }

    fn restore(&self) {
        let empty = MlsSnapshot::new();
        let current = self
            .store
            .mls_scopes("")
            .unwrap_or_else(|e| panic!("fixture store: {e}"));
        let mut writes: Vec<(&str, &MlsSnapshot)> = self
            .snapshots
            .iter()
            .map(|(scope, s)| (scope.as_str(), s))
            .collect();
        for scope in &current {
            if !self.snapshots.contains_key(scope) {
                writes.push((scope.as_str(), &empty));
            }
        }
        self.store
            .mls_replace_many(&writes)
            .unwrap_or_else(|e| panic!("fixture store: {e}"));
        self.sharing.drop_kept();
    }
}

/// Writes the MLS fixture (`fixture/member.json`) and a few valid inputs per
/// target (`corpus/<target>/seed-*`) under `fuzz_dir`, normally `node/fuzz`.
/// The MLS seeds are made by a real owner over a real group, and hold only
/// against the fixture written with them.
pub fn write_seeds(fuzz_dir: &Path) -> std::io::Result<()> {
    let seeds = Seeds::make().map_err(std::io::Error::other)?;
    for (target, inputs) in &seeds.corpora {
        let dir = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input)?;
        }
    }
    let fixture = fuzz_dir.join("fixture");
    std::fs::create_dir_all(&fixture)?;
    let json = serde_json::to_string_pretty(&seeds.fixture).map_err(std::io::Error::other)?;
    std::fs::write(fixture.join("member.json"), json + "\n")
}

/// What [`write_seeds`] writes.
struct Seeds {
    corpora: BTreeMap<&'static str, Vec<Vec<u8>>>,
    fixture: MlsFixture,
}

/// The message of an error, for the generator's one error type.
fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

impl Seeds {
    fn make() -> Result<Self, String> {
        let (mls, fixture) = seed_mls()?;
        let mut corpora: BTreeMap<&'static str, Vec<Vec<u8>>> = mls.into_iter().collect();
        corpora.insert("read_request", seed_read_requests()?);
        corpora.insert("receipt", seed_receipts()?);
        corpora.insert("notice", seed_notices()?);
        corpora.insert("roster", seed_rosters()?);
        corpora.insert("roster_offer", seed_roster_offers()?);
        corpora.insert("checkpoint", seed_checkpoints());
        corpora.insert("audit_log", seed_audit_logs()?);
        corpora.insert("node_config", seed_node_configs()?);
        corpora.insert("profile", seed_profiles()?);
        Ok(Self { corpora, fixture })
    }
}

fn seed_read_requests() -> Result<Vec<Vec<u8>>, String> {
    let glass = "Enfant de quatre ans seul au domicile, mère hospitalisée en urgence ce soir";
    let cases = [
        (Role::Caseworker, NOW, "instruction FSL", None),
        (Role::Caseworker, NOW - 300, "relogement", None),
        (Role::Auditor, NOW + 60, "contrôle annuel", None),
        (
            Role::Caseworker,
            NOW,
            "protection de l'enfance",
            Some(glass),
        ),
    ];
    cases
        .into_iter()
        .map(|(role, time, purpose, break_glass)| {
            let request = ReadRequest {
                reader: member_id(MEMBER),
                user: "claire.martin".parse().map_err(text)?,
                role,
                owner: member_id(OWNER),
                dossier: DossierId::random(),
                sections: vec![Section::Housing, Section::Resources],
                purpose: purpose.into(),
                nonce: hex::encode(rand::random::<[u8; 16]>()),
                time,
                break_glass: break_glass.map(str::to_owned),
            };
            serde_json::to_vec(&request).map_err(text)
        })
        .collect()
}

fn seed_notices() -> Result<Vec<Vec<u8>>, String> {
    let dossier = DossierId::random();
    let notices = [
        Notice::Referent {
            dossier: dossier.clone(),
            member: member_id(MEMBER),
            user: "claire.martin".parse().map_err(text)?,
            since: NOW,
            partners: vec![member_id(OWNER), member_id(MEMBER), member_id(THIRD)],
        },
        Notice::BreakGlass {
            grant: GrantId::random(),
            dossier: dossier.clone(),
            reader: member_id(THIRD),
            sections: vec![Section::Household, Section::Housing],
            granted_at: NOW,
            until: NOW + 86_400,
        },
        Notice::Closed {
            dossier: dossier.clone(),
            reason: crate::types::ClosureReason::EndOfParcours,
            at: NOW,
        },
        Notice::Erased { dossier },
    ];
    Ok(notices.iter().map(Notice::to_bytes).collect())
}

fn seed_receipts() -> Result<Vec<Vec<u8>>, String> {
    let owner = &keys().owner;
    let receipt = Receipt {
        owner: member_id(OWNER),
        request: receipt_request(),
        time: NOW,
        items: vec![
            ReceiptItem {
                section: Section::Housing,
                leaf: 41,
                basis: Some(Basis::Consent(ConsentId::random())),
                written_at: Some(NOW - 3600),
                refused: None,
                message: None,
            },
            ReceiptItem {
                section: Section::Resources,
                leaf: 42,
                basis: None,
                written_at: None,
                refused: Some("no_consent".into()),
                message: Some("no consent covers this reader for this dossier".into()),
            },
        ],
    };
    let bytes = serde_json::to_vec(&receipt).map_err(text)?;
    let signature = owner.sign(Context::Receipt, &bytes).to_bytes();
    let other = Receipt {
        owner: member_id(THIRD),
        ..receipt
    };
    Ok(vec![
        bytes.clone(),
        [signature.as_slice(), &bytes].concat(),
        serde_json::to_vec(&other).map_err(text)?,
    ])
}

/// The fixture's genesis roster, signed by its first `signers` founders.
fn genesis_signed(signers: usize) -> Result<SignedRoster, String> {
    let k = keys();
    let members = [(OWNER, &k.owner), (MEMBER, &k.member), (THIRD, &k.third)];
    let cards = members
        .iter()
        .zip(1..)
        .map(|((id, key), n)| roster_member(id, &key.public(), n).card)
        .collect();
    let roster = Roster::genesis(
        "gip-aveyron",
        "2/3".parse().map_err(text)?,
        cards,
        Charter::default(),
    )
    .map_err(text)?;
    let mut signed = SignedRoster::unsigned(roster);
    for (id, key) in &members[..signers] {
        signed.sign(&member_id(id), key).map_err(text)?;
    }
    Ok(signed)
}

fn seed_rosters() -> Result<Vec<Vec<u8>>, String> {
    let whole = serde_json::to_vec_pretty(&genesis_signed(3)?).map_err(text)?;
    let partly = serde_json::to_vec_pretty(&genesis_signed(1)?).map_err(text)?;
    Ok(vec![whole, partly])
}

/// Roster versions a peer might offer: a valid v2, a proposal short of its
/// quorum, and an admission whose newcomer has not proven its key.
pub fn seed_roster_offers() -> Result<Vec<Vec<u8>>, String> {
    use crate::roster::Change;
    let k = keys();
    let genesis = genesis_signed(3)?.verify_genesis().map_err(text)?;
    let signed = |change: Change, signers: &[(&str, &NodeKey)]| -> Result<Vec<u8>, String> {
        let mut s = SignedRoster::unsigned(
            genesis
                .propose(&change, Some("assemblée générale".into()))
                .map_err(text)?,
        );
        for (id, key) in signers {
            s.sign(&member_id(id), key).map_err(text)?;
        }
        serde_json::to_vec_pretty(&s).map_err(text)
    };
    let newcomer = NodeKey::generate();
    Ok(vec![
        signed(
            Change::SetQuorum {
                quorum: "3/5".parse().map_err(text)?,
            },
            &[(OWNER, &k.owner), (MEMBER, &k.member)],
        )?,
        signed(
            Change::Suspend {
                member: member_id(THIRD),
            },
            &[(OWNER, &k.owner)],
        )?,
        signed(
            Change::Admit {
                card: roster_member("relais-solidaire", &newcomer.public(), 9).card,
                voting: true,
            },
            &[(OWNER, &k.owner), (MEMBER, &k.member), (THIRD, &k.third)],
        )?,
    ])
}

fn seed_checkpoints() -> Vec<Vec<u8>> {
    let k = keys();
    let checkpoint = |size, root| Checkpoint {
        origin: ORIGIN.into(),
        size,
        root,
    };
    vec![
        checkpoint(0, crate::audit::merkle::root(&[]))
            .sign(&k.owner)
            .into_bytes(),
        checkpoint(7, [9; 32]).sign(&k.owner).into_bytes(),
        checkpoint(7, [9; 32]).sign(&k.third).into_bytes(),
    ]
}

fn seed_audit_logs() -> Result<Vec<Vec<u8>>, String> {
    let dir = scratch("seed-audit");
    let log = AuditLog::open(&dir, ORIGIN.into(), &keys().owner.public()).map_err(text)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(text)?;
    let (dossier, user) = (DossierId::random(), "claire.martin".parse().map_err(text)?);
    let events = [
        AuditEvent::UserCreated {
            user: "admin".parse().map_err(text)?,
            role: Role::Admin,
            by: None,
        },
        AuditEvent::DossierOpened {
            dossier: dossier.clone(),
            by: user,
        },
        AuditEvent::ConsentGranted {
            consent: ConsentId::random(),
            dossier: dossier.clone(),
            sections: vec![Section::Housing, Section::Resources],
            audience: vec![member_id(MEMBER)],
            purpose: "coordination du parcours".into(),
            basis: crate::types::LegalBasis::Consent,
            collection: crate::types::Collection::Oral,
            valid_from: "2026-01-01".parse().map_err(text)?,
            until: "2026-12-31".parse().map_err(text)?,
            masked: vec![Section::Health],
            by: "claire.martin".parse().map_err(text)?,
        },
        AuditEvent::ReadDenied {
            request: receipt_request(),
            reader: member_id(MEMBER),
            user: "jean.dupont".parse().map_err(text)?,
            dossier,
            section: Section::Health,
            reason: "no consent covers this read".into(),
            nonce: String::new(),
        },
    ];
    let mut seeds = Vec::new();
    for event in events {
        runtime.block_on(log.append(NOW, event)).map_err(text)?;
        seeds.push(std::fs::read(dir.join("audit.log")).map_err(text)?);
    }
    // Keep the first entry alone, and the whole log with a torn tail.
    let whole = seeds.pop().ok_or("no audit log")?;
    let torn = [whole.as_slice(), &whole[..whole.len().min(20)]].concat();
    Ok(vec![seeds.swap_remove(0), whole, torn])
}

fn seed_node_configs() -> Result<Vec<Vec<u8>>, String> {
    let parent = scratch("seed-node");
    let mut seeds = Vec::new();
    for (i, endpoint) in [None, Some("ccas-rodez.gip-aveyron.test:7001")]
        .into_iter()
        .enumerate()
    {
        let opts = InitOptions {
            dir: parent.join(i.to_string()),
            member: member_id(OWNER),
            name: "CCAS de Rodez".into(),
            kind: MemberKind::Ccas,
            peer_addr: "127.0.0.1:7001".parse().map_err(text)?,
            peer_endpoint: endpoint.map(str::to_owned),
            client_addr: "[::1]:7443".parse().map_err(text)?,
        };
        let (config, _card) = Config::init(&opts).map_err(text)?;
        seeds.push(std::fs::read(Config::file(&config.dir)).map_err(text)?);
    }
    Ok(seeds)
}

fn seed_profiles() -> Result<Vec<Vec<u8>>, String> {
    let path = scratch("seed-profile").join("admin.profile.toml");
    let profile = Profile {
        endpoint: "127.0.0.1:7443".into(),
        server_spki_sha256: SpkiHash([7; 32]),
        member: member_id(OWNER),
        user: "admin".into(),
        token: hex::encode([0x42; 32]),
    };
    profile.write_new(&path).map_err(text)?;
    Ok(vec![std::fs::read(&path).map_err(text)?])
}

/// The MLS corpora by target, and the member's state they go with.
type MlsSeeds = (Vec<(&'static str, Vec<Vec<u8>>)>, MlsFixture);

/// A real owner runs two groups: the member joins the main one, and gets the
/// messages sealed and the commit made after that, which it leaves unopened
/// and unapplied; the member is invited to the other one, and leaves the
/// Welcome unused. The member's state at that point is the fixture.
fn seed_mls() -> Result<MlsSeeds, String> {
    let k = keys();
    let node = |id: &str, key: &NodeKey| -> Result<(Store, Sharing), String> {
        let store = Store::open(&scratch(&format!("seed-mls-{id}"))).map_err(text)?;
        Ok((store.clone(), Sharing::new(store, member_id(id), key)))
    };
    let (_, owner) = node(OWNER, &k.owner)?;
    let (member_store, member) = node(MEMBER, &k.member)?;
    let (_, third) = node(THIRD, &k.third)?;
    let share = || ShareId {
        dossier: DossierId::random(),
        section: Section::Housing,
        owner: member_id(OWNER),
    };
    let (main, invited) = (share(), share());
    let offer = |share: &ShareId, to: &Sharing, id: &str, key: &NodeKey| {
        let kp = to.new_key_package(&member_id(OWNER)).map_err(text)?;
        let change = owner
            .add_member(share, &kp, &member_id(id), &key.public())
            .map_err(text)?
            .ok_or("already a member")?;
        let welcome = change.welcome.clone().ok_or("no welcome")?;
        Ok::<_, String>((kp, change.commit, welcome))
    };

    owner.ensure_group(&main).map_err(text)?;
    let (kp_main, commit_main, welcome_main) = offer(&main, &member, MEMBER, &k.member)?;
    member
        .join(&main, &welcome_main, &roster_key)
        .map_err(text)?;
    let messages = [&b"{\"loyer\":450}"[..], b"{}", b"x"]
        .into_iter()
        .map(|plaintext| owner.seal(&main, plaintext).map_err(text))
        .collect::<Result<Vec<_>, _>>()?;
    let (kp_third, commit_third, welcome_third) = offer(&main, &third, THIRD, &k.third)?;

    owner.ensure_group(&invited).map_err(text)?;
    let (kp_invited, _, welcome_invited) = offer(&invited, &member, MEMBER, &k.member)?;

    let mut scopes = BTreeMap::new();
    for scope in member_store.mls_scopes("").map_err(text)? {
        let entries = member_store.mls_load(&scope).map_err(text)?;
        let entries = entries
            .iter()
            .map(|(k, v)| (hex::encode(k), hex::encode(v)))
            .collect();
        scopes.insert(scope, entries);
    }
    let corpora = vec![
        ("key_package", vec![kp_main, kp_invited, kp_third]),
        (
            "welcome",
            vec![welcome_invited, welcome_third, welcome_main],
        ),
        ("commit", vec![commit_third, commit_main]),
        ("message", messages),
    ];
    Ok((
        corpora,
        MlsFixture {
            main,
            invited,
            scopes,
        },
    ))
}
