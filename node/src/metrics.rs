//! The node's metrics, in the Prometheus (OpenMetrics) text format: calls by
//! method and status with their latency, refusals by a rate limit, the audit
//! log's size and append latency, and the node's state read at each scrape.
//! The only module that names `prometheus_client`.
//!
//! Metrics carry counts and durations only: no dossier, no person, no user.
//! A method's label is its gRPC path, and only for methods the node's
//! listeners serve (any other path counts as `other`), so a caller cannot
//! grow the number of series.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A latency histogram, in seconds, from 50 µs to about 3 s.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.000_05, 2.0, 17)))
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    api: &'static str,
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    api: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    api: &'static str,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The node's state read at a scrape (the service fills it in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Entries in the audit log.
    pub audit_entries: u64,
    /// Bytes of the audit log file.
    pub audit_bytes: u64,
    /// Whether the log takes appends (its check did not fail, its writes work).
    pub audit_appending: bool,
    /// Witness alarms raised since the node started.
    pub witness_alarms: u64,
    /// Notices waiting in the outbox.
    pub outbox: u64,
    /// The roster version in force.
    pub roster_version: u64,
    /// Active peers in the roster.
    pub peers: u64,
    /// Active peers that last told an older roster version than this node's,
    /// or have told nothing since it started.
    pub peers_behind: u64,
    /// Consents in force now.
    pub consents_active: u64,
    /// Break-glass accesses not reviewed yet.
    pub break_glass_pending: u64,
    /// Users of the client API.
    pub users: u64,
    /// Unix seconds at which the node started.
    pub started_at: i64,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    limited: Family<LimitLabels, Counter>,
    audit_entries: Gauge,
    audit_bytes: Gauge,
    audit_appending: Gauge,
    witness_alarms: Gauge,
    outbox: Gauge,
    roster_version: Gauge,
    peers: Family<StateLabels, Gauge>,
    consents_active: Gauge,
    break_glass_pending: Gauge,
    users: Gauge,
    started_at: Gauge,
}

impl Metrics {
    /// The metrics of a node whose audit log records its appends' latency in
    /// `append_latency`, and whose member id and version the info line tells.
    pub fn new(append_latency: &LatencyHistogram, member: &str) -> Self {
        let mut registry = Registry::with_prefix("maillon");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "grpc_calls",
            "Calls answered, by API, method and gRPC status code",
            calls.clone(),
        );
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| LatencyHistogram::default().0) as fn() -> Histogram,
        );
        registry.register(
            "grpc_call_seconds",
            "Time from a call's arrival to its last byte, by API and method",
            latency.clone(),
        );
        let limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused because their caller's rate limit was reached",
            limited.clone(),
        );
        registry.register(
            "audit_append_seconds",
            "Time from an audit event's submission to its fdatasync",
            append_latency.0.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let audit_entries = gauge(&mut registry, "audit_entries", "Entries in the audit log");
        let audit_bytes = gauge(&mut registry, "audit_bytes", "Bytes of the audit log file");
        let audit_appending = gauge(
            &mut registry,
            "audit_appending",
            "1 while the audit log takes appends; 0 once its check or a write failed (the node refuses every change)",
        );
        let witness_alarms = gauge(
            &mut registry,
            "witness_alarms",
            "Witness alarms raised since start (a peer's log that does not extend what this node saw)",
        );
        let outbox = gauge(
            &mut registry,
            "outbox_notices",
            "Notices waiting for members",
        );
        let roster_version = gauge(
            &mut registry,
            "roster_version",
            "The roster version in force",
        );
        let peers = Family::<StateLabels, Gauge>::default();
        registry.register(
            "peers",
            "Active peers: current (told this node's roster version) or behind (an older one, or nothing since start)",
            peers.clone(),
        );
        let consents_active = gauge(&mut registry, "consents_active", "Consents in force");
        let break_glass_pending = gauge(
            &mut registry,
            "break_glass_pending",
            "Break-glass accesses not reviewed yet",
        );
        let users = gauge(&mut registry, "users", "Users of the client API");
        let started_at = gauge(
            &mut registry,
            "start_time_seconds",
            "Unix time at which the node started",
        );
        let info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register("build", "The node's version and member id", info.clone());
        info.get_or_create(&vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("member", member.to_owned()),
        ])
        .set(1);
        Self {
            registry,
            calls,
            latency,
            limited,
            audit_entries,
            audit_bytes,
            audit_appending,
            witness_alarms,
            outbox,
            roster_version,
            peers,
            consents_active,
            break_glass_pending,
            users,
            started_at,
        }
    }

    /// Counts one call answered with gRPC `code` after `elapsed` (labels
    /// are static: counting allocates nothing).
    pub fn call(
        &self,
        api: &'static str,
        method: &'static str,
        code: &'static str,
        elapsed: Duration,
    ) {
        self.calls
            .get_or_create(&CallLabels { api, method, code })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { api, method })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one call refused by the rate limit `limit`.
    pub fn limited(&self, api: &'static str, limit: &'static str) {
        self.limited
            .get_or_create(&LimitLabels { api, limit })
            .inc();
    }

    /// The metrics as OpenMetrics text, with the state read at this scrape.
    pub fn encode(&self, now: &Snapshot) -> String {
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.audit_entries, now.audit_entries);
        set(&self.audit_bytes, now.audit_bytes);
        set(&self.audit_appending, u64::from(now.audit_appending));
        set(&self.witness_alarms, now.witness_alarms);
        set(&self.outbox, now.outbox);
        set(&self.roster_version, now.roster_version);
        let behind = now.peers_behind.min(now.peers);
        set(
            &self.peers.get_or_create(&StateLabels { state: "current" }),
            now.peers - behind,
        );
        set(
            &self.peers.get_or_create(&StateLabels { state: "behind" }),
            behind,
        );
        set(&self.consents_active, now.consents_active);
        set(&self.break_glass_pending, now.break_glass_pending);
        set(&self.users, now.users);
        self.started_at.set(now.started_at);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_limits_and_the_state_appear_in_the_text() {
        let append = LatencyHistogram::default();
        append.observe(Duration::from_micros(300));
        let metrics = Metrics::new(&append, "ccas-rodez");
        metrics.call(
            "client",
            "/maillon.v1.Client/ReadShare",
            "ok",
            Duration::from_millis(2),
        );
        metrics.call(
            "client",
            "/maillon.v1.Client/ReadShare",
            "permission_denied",
            Duration::from_millis(1),
        );
        metrics.limited("peer", "peer_reads");
        let text = metrics.encode(&Snapshot {
            audit_entries: 42,
            peers: 3,
            peers_behind: 1,
            roster_version: 7,
            ..Snapshot::default()
        });
        for line in [
            r#"maillon_grpc_calls_total{api="client",method="/maillon.v1.Client/ReadShare",code="ok"} 1"#,
            r#"maillon_grpc_calls_total{api="client",method="/maillon.v1.Client/ReadShare",code="permission_denied"} 1"#,
            r#"maillon_grpc_call_seconds_count{api="client",method="/maillon.v1.Client/ReadShare"} 2"#,
            r#"maillon_rate_limited_total{api="peer",limit="peer_reads"} 1"#,
            "maillon_audit_append_seconds_count 1",
            "maillon_audit_entries 42",
            "maillon_roster_version 7",
            r#"maillon_peers{state="current"} 2"#,
            r#"maillon_peers{state="behind"} 1"#,
            r#"maillon_build{version=""#,
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
