//! Indicators without pooling personal data: each node counts, from its
//! own audit log, what the federation reports on (orientations sent,
//! accepted, completed per scheme; alerts raised and handled; consents
//! given and withdrawn; break-glass; référents named; aids matched,
//! proposed, and matched but unclaimed) for a period, signs the counts (`maillon/v1/indicators`), and
//! serves them to members. Summed across the federation, every count under
//! the charter's threshold is shown as "< N", and a total that such a cell
//! enters is shown only as "at least" what the others add up to, so no
//! suppressed count can be subtracted back out. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::crypto::{Context, NodeKey, PublicKey};
use crate::protocol::SignedBytes;
use crate::types::{AlertStatus, MemberId, OrientationStatus};

pub use crate::roster::DEFAULT_SMALL_CELL;

/// Largest signed set of counts (a peer message is at most 1 MiB).
pub const MAX_INDICATORS_BYTES: usize = 512 * 1024;

/// Indicators never broken down by territory: too rare and too sensitive
/// for a commune to be named beside them.
const WITHOUT_TERRITORY: [&str; 1] = ["break_glass"];

/// A reporting period: a year (`2026`), a quarter (`2026-Q4`) or a month
/// (`2026-12`), in UTC days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// As written.
    pub name: String,
    /// Its first second (Unix).
    pub start: i64,
    /// The first second after it (Unix).
    pub end: i64,
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a period: 2026, 2026-Q4 or 2026-12");
        let day = |y: i32, m: u8| -> Result<i64, String> {
            let month = time::Month::try_from(m).map_err(|_| bad())?;
            Ok(time::Date::from_calendar_date(y, month, 1)
                .map_err(|_| bad())?
                .midnight()
                .assume_utc()
                .unix_timestamp())
        };
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'Q')
        {
            return Err(bad());
        }
        let (year, rest) = s.split_once('-').map_or((s, None), |(y, r)| (y, Some(r)));
        if year.len() != 4 {
            return Err(bad());
        }
        let y: i32 = year.parse().map_err(|_| bad())?;
        if !(2000..=2999).contains(&y) {
            return Err(bad());
        }
        let (first, months): (u8, u8) = match rest {
            None => (1, 12),
            Some(q) if q.len() == 2 && q.starts_with('Q') => {
                let n: u8 = q[1..].parse().map_err(|_| bad())?;
                if !(1..=4).contains(&n) {
                    return Err(bad());
                }
                ((n - 1) * 3 + 1, 3)
            }
            Some(m) if m.len() == 2 => {
                let n: u8 = m.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&n) {
                    return Err(bad());
                }
                (n, 1)
            }
            Some(_) => return Err(bad()),
        };
        let last = first + months;
        let end = if last > 12 {
            day(y + 1, 1)?
        } else {
            day(y, last)?
        };
        Ok(Self {
            name: s.to_owned(),
            start: day(y, first)?,
            end,
        })
    }
}

/// One count: an indicator, and what it is broken down by (a scheme, an
/// outcome, a concern; empty when nothing).
pub type Cell = (String, String);

/// The territory of a count about a dossier whose commune this node does
/// not know (it does not hold the dossier's identity, or it names none).
pub const UNKNOWN_TERRITORY: &str = "unknown";

/// Whether `code` is an INSEE commune code (`12202`, `2A004`, `97411`).
pub fn is_commune_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 5
        && (b[..2].iter().all(u8::is_ascii_digit) || matches!(&b[..2], b"2A" | b"2B"))
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// The counts one node signs for one period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// The member that counted.
    pub member: MemberId,
    /// The period, as asked.
    pub period: String,
    /// When it counted (Unix seconds).
    pub computed_at: i64,
    /// How far its log was read (entries).
    pub log_size: u64,
    /// Each count, by indicator and breakdown; zero counts are left out.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// The counts about a dossier again, by indicator and territory (the
    /// INSEE code of the person's commune, or [`UNKNOWN_TERRITORY`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub territories: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counts {
    /// An empty set of counts of `member` for `period`.
    pub fn new(member: MemberId, period: &str, computed_at: i64, log_size: u64) -> Self {
        Self {
            member,
            period: period.to_owned(),
            computed_at,
            log_size,
            counts: BTreeMap::new(),
            territories: BTreeMap::new(),
        }
    }

    /// Adds one to `indicator` broken down `by`, and to its count in
    /// `territory` if the entry is about a dossier.
    pub fn one(&mut self, indicator: &str, by: &str, territory: Option<&str>) {
        *self
            .counts
            .entry(indicator.to_owned())
            .or_default()
            .entry(by.to_owned())
            .or_default() += 1;
        if let Some(t) = territory.filter(|_| !WITHOUT_TERRITORY.contains(&indicator)) {
            *self
                .territories
                .entry(indicator.to_owned())
                .or_default()
                .entry(t.to_owned())
                .or_default() += 1;
        }
    }

    /// Counts what one log entry of the period adds; `territory` tells,
    /// only when the entry is counted, where the person of the dossier it
    /// is about lives, if it is about one.
    pub fn add(&mut self, event: &AuditEvent, territory: &mut dyn FnMut() -> Option<String>) {
        let mut place: Option<Option<String>> = None;
        let mut one = |indicator: &str, by: &str| {
            let t = place.get_or_insert_with(&mut *territory).clone();
            self.one(indicator, by, t.as_deref());
        };
        match event {
            AuditEvent::OrientationSent { service, .. } => one("orientations_sent", service),
            AuditEvent::OrientationReceived { service, .. } => {
                one("orientations_received", service)
            }
            AuditEvent::OrientationStepped {
                status,
                by: Some(_),
                service,
                ..
            } => match status {
                OrientationStatus::Accepted => one("orientations_accepted", service),
                OrientationStatus::Declined => one("orientations_declined", service),
                OrientationStatus::Completed => one("orientations_completed", service),
                OrientationStatus::Sent => {}
            },
            AuditEvent::AlertRaised { concern, .. } => one("alerts_raised", &concern.to_string()),
            AuditEvent::AlertReceived { concern, .. } => {
                one("alerts_received", &concern.to_string())
            }
            AuditEvent::AlertHandled {
                status: AlertStatus::Closed,
                outcome,
                ..
            } => one(
                "alerts_closed",
                &outcome.map(|o| o.to_string()).unwrap_or_default(),
            ),
            AuditEvent::ConsentGranted { .. } => one("consents_given", ""),
            AuditEvent::ConsentRevoked { .. } => one("consents_withdrawn", ""),
            AuditEvent::BreakGlassGranted { .. } => one("break_glass", ""),
            AuditEvent::ReferentSet { .. } => one("referents_named", ""),
            AuditEvent::DossierOpened { .. } => one("dossiers_opened", ""),
            AuditEvent::AidsMatched { proposed, .. } => {
                one("aids_matches", "");
                for _ in 0..*proposed {
                    one("aids_proposed", "");
                }
            }
            _ => {}
        }
    }
}

impl Counts {
    /// Makes the counts fit a signed message: communes are folded into
    /// their département, then, if that is still too large, the counts by
    /// territory are left out.
    pub fn fit(&mut self) {
        let size = |c: &Counts| serde_json::to_vec(c).map_or(usize::MAX, |b| b.len());
        // Room for the signature's envelope.
        let room = MAX_INDICATORS_BYTES - 4096;
        if size(self) <= room {
            return;
        }
        for by in self.territories.values_mut() {
            let mut folded: BTreeMap<String, u64> = BTreeMap::new();
            for (t, n) in std::mem::take(by) {
                *folded.entry(departement(&t)).or_default() += n;
            }
            *by = folded;
        }
        if size(self) > room {
            self.territories.clear();
        }
    }
}

/// The département of an INSEE commune code (`12`, `2A`, `974`); anything
/// else as it is.
fn departement(territory: &str) -> String {
    if !is_commune_code(territory) {
        return territory.to_owned();
    }
    let cut = if territory.starts_with("97") || territory.starts_with("98") {
        3
    } else {
        2
    };
    territory[..cut].to_owned()
}

/// Why a member's counts are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndicatorsError {
    /// Too large, or not counts.
    #[error("not a member's signed counts")]
    Malformed,
    /// Not signed by the member it names, or not the member asked.
    #[error("counts not signed by the node of {0}")]
    BadSignature(MemberId),
    /// Not the period asked.
    #[error("counts for another period than the one asked")]
    OtherPeriod,
}

/// Signs a node's counts.
pub fn sign(counts: &Counts, key: &NodeKey) -> SignedBytes {
    SignedBytes::sign(counts, Context::Indicators, key)
}

/// Opens `member`'s signed counts for `period`: size, the signature by
/// `key` (the roster's key for `member`), the member and the period.
pub fn open(
    signed: &SignedBytes,
    member: &MemberId,
    key: &PublicKey,
    period: &str,
) -> Result<Counts, IndicatorsError> {
    if signed.bytes.len() > MAX_INDICATORS_BYTES {
        return Err(IndicatorsError::Malformed);
    }
    signed
        .verify(Context::Indicators, key, "indicators")
        .map_err(|_| IndicatorsError::BadSignature(member.clone()))?;
    let counts: Counts =
        serde_json::from_slice(&signed.bytes).map_err(|_| IndicatorsError::Malformed)?;
    if &counts.member != member {
        return Err(IndicatorsError::BadSignature(member.clone()));
    }
    if counts.period != period {
        return Err(IndicatorsError::OtherPeriod);
    }
    Ok(counts)
}

/// A count as the federation's table shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Shown {
    /// The exact count.
    Exact(u64),
    /// Under the threshold: shown as "< N".
    Under(u32),
    /// A total a suppressed cell enters: at least this.
    AtLeast(u64),
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Exact(n) => write!(f, "{n}"),
            Shown::Under(n) => write!(f, "< {n}"),
            Shown::AtLeast(n) => write!(f, ">= {n}"),
        }
    }
}

/// One line of the federation's table: a cell, each member's count, and
/// the total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The indicator.
    pub indicator: String,
    /// What it is broken down by (may be empty).
    pub by: String,
    /// The territory it counts (an INSEE commune code or
    /// [`UNKNOWN_TERRITORY`]); empty for the whole federation.
    pub territory: String,
    /// Each member's count, in the order of [`Table::members`].
    pub members: Vec<Shown>,
    /// The total across the federation.
    pub total: Shown,
}

/// The federation's table for a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Table {
    /// The period.
    pub period: String,
    /// The threshold under which a count is suppressed.
    pub threshold: u32,
    /// The members whose counts it sums, in order.
    pub members: Vec<MemberId>,
    /// The members that did not answer (their counts are missing).
    pub missing: Vec<MemberId>,
    /// Every cell any member counted.
    pub rows: Vec<Row>,
}

/// Shows one count: under the threshold (and not zero) as "< N".
fn show(n: u64, threshold: u32) -> Shown {
    if n > 0 && n < u64::from(threshold) {
        Shown::Under(threshold)
    } else {
        Shown::Exact(n)
    }
}

/// Sums members' counts into the federation's table, with small-cell
/// suppression: a member's count under `threshold` is "< N"; a total under
/// it too; a total a suppressed member's count enters is shown as at least
/// what the others add up to, never exactly.
/// The rows after them are the counts about a dossier by territory, each
/// suppressed the same way.
pub fn table(period: &str, threshold: u32, all: &[Counts], missing: Vec<MemberId>) -> Table {
    let members: Vec<MemberId> = all.iter().map(|c| c.member.clone()).collect();
    let mut rows = rows_of(all, threshold, |c| &c.counts);
    // A territory's row is shown only when its total is not suppressed:
    // a commune named beside "< N" would point at its few people.
    rows.extend(
        rows_of(all, threshold, |c| &c.territories)
            .into_iter()
            .filter(|r| {
                !matches!(r.total, Shown::Under(_))
                    && !WITHOUT_TERRITORY.contains(&r.indicator.as_str())
            })
            .map(|r| Row {
                territory: r.by,
                by: String::new(),
                ..r
            }),
    );
    Table {
        period: period.to_owned(),
        threshold,
        members,
        missing,
        rows,
    }
}

/// The suppressed rows of one map of every member's counts.
fn rows_of(
    all: &[Counts],
    threshold: u32,
    pick: impl Fn(&Counts) -> &BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<Row> {
    let mut cells: std::collections::BTreeSet<Cell> = std::collections::BTreeSet::new();
    for c in all {
        for (indicator, by) in pick(c) {
            for key in by.keys() {
                cells.insert((indicator.clone(), key.clone()));
            }
        }
    }
    cells
        .into_iter()
        .map(|(indicator, by)| {
            let counts: Vec<u64> = all
                .iter()
                .map(|c| {
                    pick(c)
                        .get(&indicator)
                        .and_then(|m| m.get(&by))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            let shown: Vec<Shown> = counts.iter().map(|n| show(*n, threshold)).collect();
            let sum: u64 = counts.iter().sum();
            let suppressed = shown.iter().any(|s| matches!(s, Shown::Under(_)));
            let total = if sum < u64::from(threshold) {
                show(sum, threshold)
            } else if suppressed {
                let visible: u64 = counts
                    .iter()
                    .zip(&shown)
                    .filter(|(_, s)| matches!(s, Shown::Exact(_)))
                    .map(|(n, _)| n)
                    .sum();
                Shown::AtLeast(visible.max(u64::from(threshold)))
            } else {
                Shown::Exact(sum)
            };
            Row {
                indicator,
                by,
                territory: String::new(),
                members: shown,
                total,
            }
        })
        .collect()
}

/// The table as CSV: one line a cell, a column a member, then the total.
pub fn csv(table: &Table) -> String {
    let mut out = String::from("indicator,by,territory");
    for m in &table.members {
        out.push(',');
        out.push_str(m.as_str());
    }
    out.push_str(",total\n");
    for r in &table.rows {
        out.push_str(&format!("{},{},{}", r.indicator, r.by, r.territory));
        for s in &r.members {
            out.push_str(&format!(",{s}"));
        }
        out.push_str(&format!(",{}\n", r.total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(member: &str, pairs: &[(&str, &str, u64)]) -> Counts {
        let mut c = Counts::new(member.parse().expect("id"), "2026-Q4", 0, 0);
        for (i, by, n) in pairs {
            c.counts
                .entry((*i).into())
                .or_default()
                .insert((*by).into(), *n);
        }
        c
    }

    #[test]
    fn periods_are_years_quarters_and_months() {
        let q: Period = "2026-Q4".parse().expect("a quarter");
        assert_eq!((q.start, q.end), (1_790_812_800, 1_798_761_600));
        let m: Period = "2026-12".parse().expect("a month");
        assert_eq!((m.start, m.end), (1_796_083_200, 1_798_761_600));
        let y: Period = "2026".parse().expect("a year");
        assert_eq!(y.end, q.end);
        for bad in [
            "2026-Q5", "2026-13", "26-Q1", "2026-q4", "", "2026-Q4x", "2026-+1", "+026",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }

    #[test]
    fn small_cells_are_suppressed_and_never_recoverable_from_a_total() {
        let all = [
            counts(
                "ccas-rodez",
                &[
                    ("orientations_sent", "aide-logement", 12),
                    ("alerts_raised", "isolation", 2),
                ],
            ),
            counts(
                "caf12",
                &[
                    ("orientations_sent", "aide-logement", 3),
                    ("alerts_raised", "isolation", 1),
                ],
            ),
            counts("cd12", &[("orientations_sent", "aide-logement", 20)]),
        ];
        let t = table("2026-Q4", 5, &all, vec![]);
        let row = |i: &str| t.rows.iter().find(|r| r.indicator == i).expect("row");
        let sent = row("orientations_sent");
        assert_eq!(
            sent.members,
            [Shown::Exact(12), Shown::Under(5), Shown::Exact(20)]
        );
        assert_eq!(sent.total, Shown::AtLeast(32), "35 would give the 3 away");
        let alerts = row("alerts_raised");
        assert_eq!(
            alerts.members,
            [Shown::Under(5), Shown::Under(5), Shown::Exact(0)]
        );
        assert_eq!(alerts.total, Shown::Under(5));
        let exact = table("2026-Q4", 2, &all, vec![]);
        assert_eq!(
            exact
                .rows
                .iter()
                .find(|r| r.indicator == "orientations_sent")
                .expect("row")
                .total,
            Shown::Exact(35)
        );
        let text = csv(&t);
        assert!(
            text.contains("orientations_sent,aide-logement,,12,< 5,20,>= 32\n"),
            "{text}"
        );
    }

    #[test]
    fn counts_about_a_dossier_are_also_counted_by_territory_and_suppressed_alike() {
        let me: MemberId = "ccas-rodez".parse().expect("id");
        let mut ccas = Counts::new(me, "2026-Q4", 0, 0);
        let consent = || AuditEvent::ConsentRevoked {
            consent: crate::types::ConsentId::random(),
            dossier: crate::types::DossierId::random(),
            by: "agent".parse().expect("user"),
        };
        let mut asked = 0;
        for _ in 0..6 {
            ccas.add(&consent(), &mut || {
                asked += 1;
                Some("12202".into())
            });
        }
        ccas.add(&consent(), &mut || Some("2A004".into()));
        ccas.add(
            &AuditEvent::OrientationsListed {
                by: "agent".parse().expect("user"),
                shown: 3,
            },
            &mut || panic!("asked where for an entry not counted"),
        );
        assert_eq!(asked, 6);
        ccas.one("break_glass", "", Some("12202"));
        assert!(!ccas.territories.contains_key("break_glass"));
        assert_eq!(ccas.counts["consents_withdrawn"][""], 7);
        assert_eq!(ccas.territories["consents_withdrawn"]["12202"], 6);
        assert_eq!(ccas.territories["consents_withdrawn"]["2A004"], 1);
        let mut caf = Counts::new("caf12".parse().expect("id"), "2026-Q4", 0, 0);
        caf.one("consents_withdrawn", "", Some(UNKNOWN_TERRITORY));
        let t = table("2026-Q4", 5, &[ccas, caf], vec![]);
        let by_territory: Vec<(&str, Shown)> = t
            .rows
            .iter()
            .filter(|r| !r.territory.is_empty())
            .map(|r| (r.territory.as_str(), r.total))
            .collect();
        assert_eq!(
            by_territory,
            [("12202", Shown::Exact(6))],
            "a commune beside a suppressed count is not named"
        );
        assert!(
            t.rows
                .iter()
                .all(|r| r.territory.is_empty() || r.by.is_empty())
        );
        for good in ["12202", "2A004", "97411"] {
            assert!(is_commune_code(good), "{good}");
        }
        for bad in ["1220", "122022", "2C004", "12 02", "AB123", ""] {
            assert!(!is_commune_code(bad), "{bad}");
        }
    }

    #[test]
    fn counts_too_large_fold_communes_into_departements_then_leave_territories_out() {
        let mut c = Counts::new("cd12".parse().expect("id"), "2026", 0, 0);
        for n in 0..60_000u32 {
            let commune = format!("{:02}{:03}", 1 + n / 1000, n % 1000);
            c.one("consents_given", "", Some(&commune));
        }
        c.one("consents_given", "", Some("97411"));
        c.fit();
        assert!(serde_json::to_vec(&c).expect("json").len() <= MAX_INDICATORS_BYTES);
        let by = &c.territories["consents_given"];
        assert!(by.keys().all(|t| t.len() <= 3), "folded into départements");
        assert_eq!(by["974"], 1);
        assert_eq!(by.values().sum::<u64>(), 60_001, "nothing lost in the fold");
        assert_eq!(c.counts["consents_given"][""], 60_001);
        for indicator in 0..400 {
            for n in 0..95 {
                c.one(
                    &format!("indicator_{indicator}"),
                    &format!("by-{n}"),
                    Some(&format!("{:02}", n + 1)),
                );
            }
        }
        c.fit();
        assert!(
            c.territories.is_empty(),
            "left out when folding is not enough"
        );
    }

    #[test]
    fn counts_are_signed_by_their_member_for_their_period() {
        let key = NodeKey::generate();
        let c = counts("ccas-rodez", &[("consents_given", "", 7)]);
        let signed = sign(&c, &key);
        let me: MemberId = "ccas-rodez".parse().expect("id");
        assert_eq!(open(&signed, &me, &key.public(), "2026-Q4"), Ok(c));
        let other = NodeKey::generate();
        assert!(open(&signed, &me, &other.public(), "2026-Q4").is_err());
        let caf: MemberId = "caf12".parse().expect("id");
        assert!(open(&signed, &caf, &key.public(), "2026-Q4").is_err());
        assert_eq!(
            open(&signed, &me, &key.public(), "2026-Q3"),
            Err(IndicatorsError::OtherPeriod)
        );
    }
}
