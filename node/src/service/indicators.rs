//! The federation's indicators: this node's counts for a period, from its
//! own log, signed and served to active members; and the federation's
//! table, gathered from every active member and summed with small-cell
//! suppression. No personal data leaves a node for it: only counts.

use std::time::Duration;

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEntry;
use crate::indicators::{Counts, Period, Table};
use crate::protocol::SignedBytes;
use crate::types::{DossierId, MemberId, Role, Section};

/// How long one member may take to send its counts.
const INDICATORS_DEADLINE: Duration = Duration::from_secs(10);

/// Entries read from the log per page while counting.
const COUNT_PAGE: usize = 4096;

/// How long this node's counts for a period serve (seconds): each count
/// reads the whole log, so members asking again and again, or at once,
/// cost one count a minute per period.
pub const INDICATORS_FRESH: i64 = 60;

/// How many periods' counts are kept.
const PERIODS_KEPT: usize = 8;

impl Node {
    /// This node's counts for `period`, from the log entries dated within
    /// it: counted at most once a minute per period (a caller arriving
    /// while it counts waits for that count).
    pub async fn count_indicators(&self, period: &Period) -> Result<Counts> {
        let mut kept = self.indicators.lock().await;
        let now = self.clock.now();
        if let Some(c) = kept.get(&period.name)
            && (0..INDICATORS_FRESH).contains(&(now - c.computed_at))
        {
            return Ok(c.clone());
        }
        let mut counts = self.count_log(period).await?;
        // Fresh from when the count ends: callers that waited for it use it.
        counts.computed_at = self.clock.now();
        if kept.len() >= PERIODS_KEPT
            && let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, c)| c.computed_at)
                .map(|(p, _)| p.clone())
        {
            kept.remove(&oldest);
        }
        kept.insert(period.name.clone(), counts.clone());
        Ok(counts)
    }

    /// Counts the log entries dated within `period`.
    async fn count_log(&self, period: &Period) -> Result<Counts> {
        let size = self.audit.size();
        let mut counts = Counts::new(self.me.clone(), &period.name, self.clock.now(), size);
        let mut territories: std::collections::HashMap<DossierId, String> = Default::default();
        // Schemes proposed for a dossier by `aids match` here, and the
        // orientations sent from here: a proposal no orientation followed
        // within the period is a scheme matched but unclaimed.
        let mut proposed: std::collections::BTreeSet<(String, String)> = Default::default();
        let mut oriented: std::collections::BTreeSet<(String, String)> = Default::default();
        let mut pos = 0;
        while pos < size {
            // A page read off the async workers: a long log does not hold them.
            let audit = self.audit.clone();
            let page =
                super::blocking(move || audit.entries_within(pos, COUNT_PAGE, usize::MAX)).await?;
            if page.is_empty() {
                break;
            }
            for (index, bytes) in page {
                pos = index + 1;
                let entry = AuditEntry::from_bytes(&bytes)?;
                if (period.start..period.end).contains(&entry.time) {
                    match &entry.event {
                        crate::audit::AuditEvent::AidsMatched {
                            dossier, services, ..
                        } => {
                            for s in services {
                                proposed.insert((dossier.to_string(), s.clone()));
                            }
                        }
                        crate::audit::AuditEvent::OrientationSent {
                            dossier,
                            to,
                            service,
                            ..
                        } => {
                            oriented.insert((dossier.to_string(), format!("{to}/{service}")));
                        }
                        _ => {}
                    }
                    let event = &entry.event;
                    counts.add(event, &mut || {
                        event
                            .dossier()
                            .map(|d| self.territory_of(d, &mut territories))
                    });
                }
            }
        }
        for (dossier, scheme) in proposed.difference(&oriented) {
            let territory = match dossier.parse::<DossierId>() {
                Ok(d) => self.territory_of(&d, &mut territories),
                Err(_) => crate::indicators::UNKNOWN_TERRITORY.to_owned(),
            };
            counts.one("aids_unclaimed", scheme, Some(&territory));
        }
        counts.fit();
        Ok(counts)
    }

    /// The territory of a dossier's counts: the INSEE code of the commune
    /// its identity section here names, or unknown (not held here, no
    /// commune, erased); looked up once per dossier per count.
    fn territory_of(
        &self,
        dossier: &DossierId,
        known: &mut std::collections::HashMap<DossierId, String>,
    ) -> String {
        if let Some(t) = known.get(dossier) {
            return t.clone();
        }
        let code = self
            .own_section(dossier, Section::Identity)
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.json).ok())
            .and_then(|v| v.get("code_commune")?.as_str().map(str::to_owned))
            .filter(|c| crate::indicators::is_commune_code(c))
            .unwrap_or_else(|| crate::indicators::UNKNOWN_TERRITORY.to_owned());
        known.insert(dossier.clone(), code.clone());
        code
    }

    /// Peer API: this node's signed counts for `period`, for an active member.
    pub async fn serve_indicators(&self, peer: &MemberId, period: &str) -> Result<SignedBytes> {
        self.active_peer(peer)?;
        let period: Period = period.parse().map_err(ServiceError::Invalid)?;
        let counts = self.count_indicators(&period).await?;
        Ok(crate::indicators::sign(&counts, &self.key))
    }

    /// `maillon indicators --period` (admins and auditors): every active
    /// member's signed counts (this node's own included), each checked
    /// against the roster's key, summed with the charter's small-cell
    /// threshold. A member that does not answer in time is listed missing.
    pub async fn federation_indicators(&self, caller: &Caller, period: &str) -> Result<Table> {
        require(caller, &[Role::Admin, Role::Auditor])?;
        let parsed: Period = period.parse().map_err(ServiceError::Invalid)?;
        let roster = self.roster.get();
        let threshold = roster
            .roster()
            .charter
            .small_cell_threshold
            .unwrap_or(crate::indicators::DEFAULT_SMALL_CELL);
        let mut all = vec![self.count_indicators(&parsed).await?];
        let peers = self.active_peers_in(&roster);
        let asks = peers.iter().filter_map(|id| {
            let member = roster.roster().member(id)?.clone();
            let period = parsed.name.clone();
            Some(async move {
                let asked = self.network.get_indicators(&member, &period);
                let answer = match tokio::time::timeout(INDICATORS_DEADLINE, asked).await {
                    Ok(Ok(signed)) => crate::indicators::open(
                        &signed,
                        &member.card.id,
                        &member.card.signing_key,
                        &period,
                    )
                    .map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in time".to_owned()),
                };
                (member.card.id, answer)
            })
        });
        let mut missing = Vec::new();
        for (id, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(counts) => all.push(counts),
                Err(e) => {
                    tracing::info!(member = %id, error = %e, "indicators not counted");
                    missing.push(id);
                }
            }
        }
        Ok(crate::indicators::table(
            &parsed.name,
            threshold,
            &all,
            missing,
        ))
    }
}
