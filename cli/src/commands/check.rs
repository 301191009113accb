//! `maillon node check --dir DIR`: what an operator checks before starting
//! a node, or when it misbehaves, each finding with how to fix it.

use std::path::Path;

use maillon_node::config::Config;
use maillon_node::crypto::{NodeKey, TlsIdentity};
use maillon_node::roster::{SignedRoster, VerifiedRoster};
use maillon_node::storage::{MetaKey, Store};
use maillon_node::types::MemberStatus;
use serde::Serialize;

use super::say;
use crate::error::CliError;

/// A clock further than this from a peer's is a problem: signed read
/// requests older or newer than `REQUEST_WINDOW` are refused, and consents,
/// tokens and break-glass accesses end on time only with a true clock.
const MAX_SKEW: i64 = 30;

/// One thing checked.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, in a word or two.
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found, in one line.
    pub detail: String,
    /// How to fix it, when it does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn ok(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Finding {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        });
    }
    fn fail(
        &mut self,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    /// Prints the findings; an error if any does not hold.
    fn print(self, dir: &Path, json: bool) -> Result<(), CliError> {
        let problems = self.0.iter().filter(|f| !f.ok).count();
        if json {
            let value = serde_json::json!({
                "dir": dir.display().to_string(),
                "ok": problems == 0,
                "findings": self.0,
            });
            super::print_value(&value);
        } else {
            for f in &self.0 {
                let mark = if f.ok { "ok  " } else { "FAIL" };
                say(&format!("{mark} {:<14} {}", f.check, f.detail));
                if let Some(fix) = &f.fix {
                    say(&format!("     {:<14} fix: {fix}", ""));
                }
            }
            if problems == 0 {
                println!("{}: every check holds", dir.display());
            }
        }
        if problems == 0 {
            Ok(())
        } else {
            Err(CliError::CheckFailed { problems })
        }
    }
}

/// `maillon node check`: prints every finding; an error if any does not hold.
pub(super) async fn check(dir: &Path, json: bool) -> Result<(), CliError> {
    Findings(findings(dir).await).print(dir, json)
}

/// Everything `maillon node check` finds about the node folder `dir`.
pub async fn findings(dir: &Path) -> Vec<Finding> {
    let mut f = Findings::default();
    let config = match Config::load(dir) {
        Ok(c) => {
            let from = if c.from_env.is_empty() {
                String::new()
            } else {
                format!(", with {} from the environment", c.from_env.join(", "))
            };
            f.ok(
                "config",
                format!("{} is valid{from}", Config::file(dir).display()),
            );
            c
        }
        Err(e) => {
            f.fail(
                "config",
                e.to_string(),
                "correct node.toml (every setting is described in deploy/node.toml.example) or the MAILLON_* variable named",
            );
            return f.0;
        }
    };
    for folder in [config.dir.clone(), config.store_dir(), config.audit_dir()] {
        match maillon_node::crypto::check_private_dir(&folder) {
            Ok(()) => f.ok("folder", format!("{} is private (0700)", folder.display())),
            Err(e) => f.fail(
                "folder",
                e.to_string(),
                format!(
                    "chown it to the node's user and `chmod 700 {}`",
                    folder.display()
                ),
            ),
        }
    }
    let key_fix = |path: &Path| {
        format!(
            "if the file exists, `chmod 600 {}` and owned by the node's user; if it is lost or damaged, restore it from the node's backup",
            path.display()
        )
    };
    let signing = match NodeKey::read(&config.signing_key_path()) {
        Ok(k) => {
            f.ok("signing key", "read, 0600");
            Some(k.public())
        }
        Err(e) => {
            f.fail(
                "signing key",
                e.to_string(),
                key_fix(&config.signing_key_path()),
            );
            None
        }
    };
    let tls = match TlsIdentity::read(&config.tls_key_path(), &config.tls_cert_path()) {
        Ok(t) => {
            f.ok("peer TLS key", "read, 0600");
            Some(t)
        }
        Err(e) => {
            f.fail(
                "peer TLS key",
                e.to_string(),
                key_fix(&config.tls_key_path()),
            );
            None
        }
    };
    match TlsIdentity::read(&config.client_tls_key_path(), &config.client_tls_cert_path()) {
        Ok(_) => f.ok("client TLS key", "read, 0600"),
        Err(e) => f.fail(
            "client TLS key",
            e.to_string(),
            "remove client-tls.key and client-tls.crt: the node makes a new pair at start and re-pins admin.profile.toml; give the users' profiles the new pin",
        ),
    }
    if let Some((cert, key)) = &config.console_tls {
        match maillon_node::crypto::OperatorCertificate::read(cert, key) {
            Ok(_) => f.ok(
                "console certificate",
                format!("{} and its key go together", cert.display()),
            ),
            Err(e) => f.fail(
                "console certificate",
                e.to_string(),
                "console_tls_cert is the PEM chain (the console's certificate first), console_tls_key its PEM key, 0600 and owned by the node's user",
            ),
        }
    }
    if let Some(oidc) = config.oidc.clone() {
        let issuer = oidc.issuer.clone();
        match maillon_node::console::oidc::Oidc::new(oidc) {
            Err(e) => f.fail(
                "identity provider",
                e.to_string(),
                "the client secret file is 0600 and holds the secret the provider gave; oidc.ca_file, if set, holds the PEM certificates of the authorities that sign the provider's",
            ),
            Ok(provider) => match provider.discover().await {
                Ok(()) => f.ok(
                    "identity provider",
                    format!("{issuer} answers its discovery document"),
                ),
                Err(e) => f.fail(
                    "identity provider",
                    e.to_string(),
                    format!(
                        "check oidc.issuer, that {issuer}/.well-known/openid-configuration answers from this host, and oidc.ca_file"
                    ),
                ),
            },
        }
    }
    let profile = config.admin_profile_path();
    if profile.exists() {
        match maillon_node::config::Profile::read(&profile) {
            Ok(_) => f.ok("admin profile", "0600"),
            Err(e) => f.fail(
                "admin profile",
                e.to_string(),
                format!("`chmod 600 {}`, or move it off the host", profile.display()),
            ),
        }
    }
    let holder = maillon_node::daemon::folder_holder(&config.dir);
    let genesis = match maillon_node::daemon::load_roster(&config.roster_path()) {
        Ok(g) => {
            f.ok(
                "genesis",
                format!(
                    "{} v{} verifies ({})",
                    g.roster().federation,
                    g.roster().version,
                    g.hash_hex()
                ),
            );
            Some(g)
        }
        Err(e) => {
            f.fail(
                "genesis",
                e.to_string(),
                "install the federation's genesis roster with `maillon node join` (a newcomer) or copy the founders' signed roster.json",
            );
            None
        }
    };
    let in_force = match (&genesis, &holder) {
        (None, _) => None,
        (Some(g), Some(holder)) => {
            f.ok(
                "roster",
                format!(
                    "maillond ({holder}) serves this folder: its store is not opened; the peers below are the genesis roster's (`maillon node status` shows the version in force)"
                ),
            );
            Some(g.clone())
        }
        (Some(g), None) => match roster_in_force(&config, g).await {
            Ok(r) => {
                f.ok(
                    "roster",
                    format!(
                        "v{} in force, chain verified from the genesis",
                        r.roster().version
                    ),
                );
                Some(r)
            }
            Err(reason) => {
                f.fail(
                    "roster",
                    reason,
                    "restore the store from the node's backup; the chain is verified link by link from the genesis at start",
                );
                None
            }
        },
    };
    if let Some(roster) = &in_force {
        match roster.roster().member(&config.member) {
            None => f.fail(
                "membership",
                format!("{} is not in roster v{}", config.member, roster.roster().version),
                "a newcomer waits until a quorum adopts the version that admits it (`maillon gov propose add-member`); then it fetches that version at start",
            ),
            Some(me) => {
                if me.status != MemberStatus::Active {
                    f.fail(
                        "membership",
                        format!("{} is {} in roster v{}", config.member, me.status, roster.roster().version),
                        "only a roster version adopted by a quorum makes it active again",
                    );
                } else {
                    f.ok("membership", format!("{} is active", config.member));
                }
                let signing_ok = signing.is_none_or(|k| k == me.card.signing_key);
                let tls_ok = tls
                    .as_ref()
                    .and_then(|t| t.spki_hash().ok())
                    .is_none_or(|pin| pin == me.card.tls_spki_sha256);
                if signing_ok && tls_ok {
                    f.ok("keys listed", "the roster lists this node's signing key and TLS pin");
                } else {
                    f.fail(
                        "keys listed",
                        "the roster lists other keys for this node than those in its folder",
                        "put back the keys the roster lists (from the backup), or rotate: `maillon node rotate-keys` and a quorum-approved update-member",
                    );
                }
            }
        }
    }
    if holder.is_none() {
        let mut addrs = vec![
            ("peer_listen", config.peer_listen),
            ("client_listen", config.client_listen),
        ];
        if let Some(m) = config.metrics_listen {
            addrs.push(("metrics_listen", m));
        }
        for (name, addr) in addrs {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => f.ok("listen", format!("{name} {addr} can be bound")),
                Err(e) => f.fail(
                    "listen",
                    format!("{name} {addr}: {e}"),
                    "use an address of this host that no other process listens on",
                ),
            }
        }
    }
    if let (Some(roster), Some(tls)) = (&in_force, &tls) {
        check_peers(&mut f, &config, roster, tls).await;
    }
    f.0
}

/// The roster the store holds in force, verified from the genesis.
async fn roster_in_force(
    config: &Config,
    genesis: &VerifiedRoster,
) -> Result<VerifiedRoster, String> {
    let store_dir = config.store_dir();
    let store = tokio::task::spawn_blocking(move || Store::open_existing(&store_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the store cannot be opened: {e}"))?;
    let verified = maillon_node::daemon::roster_in_store(&store, genesis)
        .map_err(|e| format!("the store's roster chain does not verify: {e}"))?;
    if let Ok(Some(in_force)) = store.meta::<SignedRoster>(MetaKey::Roster)
        && in_force.roster.version > verified.roster().version
    {
        return Err(format!(
            "the store says v{} is in force but holds the chain up to v{} only",
            in_force.roster.version,
            verified.roster().version
        ));
    }
    Ok(verified)
}

/// Dials every active peer as this node: handshake, health, clock.
async fn check_peers(
    f: &mut Findings,
    config: &Config,
    roster: &VerifiedRoster,
    tls: &TlsIdentity,
) {
    let mut probes = tokio::task::JoinSet::new();
    for member in roster.roster().members.iter() {
        if member.card.id == config.member || member.status != MemberStatus::Active {
            continue;
        }
        let (member, tls) = (member.clone(), tls.clone());
        probes.spawn(async move {
            let probe = maillon_node::transport::probe_peer(&tls, &member).await;
            (member, probe)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = probes.join_next().await {
        match done {
            Ok(r) => results.push(r),
            Err(e) => f.fail(
                "peer",
                format!("a peer's check stopped before it answered: {e}"),
                "run the check again; if it recurs, report it with this line",
            ),
        }
    }
    results.sort_by(|a, b| a.0.card.id.cmp(&b.0.card.id));
    if results.is_empty() {
        f.ok("peers", "no other active member to reach");
    }
    let mut worst_skew: Option<(i64, String)> = None;
    for (member, probe) in results {
        let id = member.card.id.to_string();
        match probe {
            Ok(p) if p.serving => {
                f.ok(
                    "peer",
                    format!(
                        "{id} at {}: handshake pinned, serving, {} ms",
                        member.card.endpoint,
                        p.round_trip.as_millis()
                    ),
                );
                if let Some(clock) = p.clock {
                    let skew = clock - p.local_clock;
                    if worst_skew.as_ref().is_none_or(|(w, _)| skew.abs() > w.abs()) {
                        worst_skew = Some((skew, id));
                    }
                }
            }
            Ok(_) => f.fail(
                "peer",
                format!("{id} at {}: reachable but not serving (its audit log refuses appends)", member.card.endpoint),
                format!("tell {id}'s IT team: their node's health is NOT_SERVING"),
            ),
            Err(reason) => f.fail(
                "peer",
                format!("{id} at {}: {reason}", member.card.endpoint),
                format!(
                    "check that {} is reachable from this host (DNS, firewall on its peer port), that {id}'s node runs, and that it has adopted the roster version listing this node's key",
                    member.card.endpoint
                ),
            ),
        }
    }
    judge_clock(f, worst_skew);
}

/// The clock's finding from the largest difference (peer's clock minus this
/// host's, in seconds) any peer's answer showed, and that peer's id.
fn judge_clock(f: &mut Findings, worst_skew: Option<(i64, String)>) {
    match worst_skew {
        Some((skew, peer)) if skew.abs() > MAX_SKEW => f.fail(
            "clock",
            format!("this host's clock is {} s {} {peer}'s", skew.abs(), if skew > 0 { "behind" } else { "ahead of" }),
            "keep the clock in time with NTP (systemd-timesyncd or chrony); signed requests more than two minutes off are refused",
        ),
        Some((skew, peer)) => f.ok(
            "clock",
            format!("within {} s of every peer that answered (most: {peer})", skew.abs().max(1)),
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{Findings, MAX_SKEW, judge_clock};

    #[test]
    fn a_clock_off_from_a_peer_by_more_than_the_bound_fails_and_says_which_way() {
        let mut f = Findings::default();
        judge_clock(&mut f, Some((95, "caf12".into())));
        judge_clock(&mut f, Some((-95, "caf12".into())));
        judge_clock(&mut f, Some((MAX_SKEW, "caf12".into())));
        judge_clock(&mut f, None);
        let [behind, ahead, within] = &f.0[..] else {
            panic!("one finding per judged skew: {:?}", f.0);
        };
        assert!(!behind.ok && behind.detail == "this host's clock is 95 s behind caf12's");
        assert!(!ahead.ok && ahead.detail == "this host's clock is 95 s ahead of caf12's");
        assert!(behind.fix.as_deref().is_some_and(|x| x.contains("NTP")));
        assert!(within.ok, "{within:?}");
    }
}
