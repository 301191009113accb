//! Rate limits on the expensive calls and the cap on the groups a peer may
//! create here: the settings (`[limits]` in `node.toml`) and the token
//! buckets that enforce them.
//!
//! A bucket holds at most `burst` tokens and gains `per_second` of them each
//! second; a call takes one or is refused. Buckets are kept per caller (a
//! user's token, a peer's member id) and per kind of call, in memory only:
//! a restart gives every caller a full bucket, which costs at most one burst.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The limits a node enforces; `node.toml`'s `[limits]` table. A rate of 0
/// turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Reads one user of the client API may start per second, sustained.
    pub user_reads_per_second: u32,
    /// Reads one user may start at once after a quiet while.
    pub user_reads_burst: u32,
    /// Read requests one peer may send per second, sustained.
    pub peer_reads_per_second: u32,
    /// Read requests one peer may send at once after a quiet while.
    pub peer_reads_burst: u32,
    /// KeyPackage requests, Welcomes and Welcome requests one peer may send
    /// per second, sustained.
    pub peer_mls_per_second: u32,
    /// The same, at once after a quiet while.
    pub peer_mls_burst: u32,
    /// Share groups one peer may have this node join (0: no cap).
    pub groups_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            user_reads_per_second: 50,
            user_reads_burst: 500,
            peer_reads_per_second: 500,
            peer_reads_burst: 5_000,
            peer_mls_per_second: 100,
            peer_mls_burst: 1_000,
            groups_per_peer: 100_000,
        }
    }
}

impl Limits {
    /// No rate limit and no cap (the benchmark's nodes).
    pub const OFF: Self = Self {
        user_reads_per_second: 0,
        user_reads_burst: 0,
        peer_reads_per_second: 0,
        peer_reads_burst: 0,
        peer_mls_per_second: 0,
        peer_mls_burst: 0,
        groups_per_peer: 0,
    };

    /// The rate of one kind of call, if it is limited.
    pub fn rate(&self, kind: Limited) -> Option<Rate> {
        let (per_second, burst) = match kind {
            Limited::UserReads => (self.user_reads_per_second, self.user_reads_burst),
            Limited::PeerReads => (self.peer_reads_per_second, self.peer_reads_burst),
            Limited::PeerMls => (self.peer_mls_per_second, self.peer_mls_burst),
            Limited::ConsoleLogins => return None,
        };
        (per_second > 0).then(|| Rate {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
        })
    }

    /// Why these limits cannot be enforced, if they cannot.
    pub fn problem(&self) -> Option<String> {
        for (name, rate, burst) in [
            (
                "user_reads",
                self.user_reads_per_second,
                self.user_reads_burst,
            ),
            (
                "peer_reads",
                self.peer_reads_per_second,
                self.peer_reads_burst,
            ),
            ("peer_mls", self.peer_mls_per_second, self.peer_mls_burst),
        ] {
            if rate > 0 && burst < rate {
                return Some(format!(
                    "{name}_burst ({burst}) is below {name}_per_second ({rate}): a burst holds at least one second of calls"
                ));
            }
        }
        None
    }
}

/// The kinds of calls a rate limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    /// A user's reads of shares (client API).
    UserReads,
    /// A peer's read requests (peer API).
    PeerReads,
    /// A peer's KeyPackage requests, Welcomes and Welcome requests (peer API).
    PeerMls,
    /// Refused logins to the web console, per address (its own rate).
    ConsoleLogins,
}

impl Limited {
    /// The name metrics and refusals give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserReads => "user_reads",
            Self::PeerReads => "peer_reads",
            Self::PeerMls => "peer_mls",
            Self::ConsoleLogins => "console_logins",
        }
    }
}

/// A sustained rate and a burst, in calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens gained per second.
    pub per_second: f64,
    /// Most tokens held.
    pub burst: f64,
}

/// How many buckets the map may hold before full ones are forgotten (a
/// full bucket is what a new caller gets anyway).
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// The rate it fills at (each kind of call has its own).
    rate: Rate,
}

/// Token buckets per caller and kind of call.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, Limited), Bucket>>,
}

impl RateLimiter {
    /// Takes a token of `caller`'s bucket for `kind` at `now`; `false` if
    /// the bucket is empty (the call is refused).
    pub fn take(&self, caller: &str, kind: Limited, rate: Rate, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| refill(*b, now) < b.rate.burst);
        }
        let bucket = buckets.entry((caller.to_owned(), kind)).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
            rate,
        });
        bucket.rate = rate;
        let tokens = refill(*bucket, now);
        let taken = tokens >= 1.0;
        *bucket = Bucket {
            tokens: if taken { tokens - 1.0 } else { tokens },
            at: now.max(bucket.at),
            rate,
        };
        taken
    }
}

impl RateLimiter {
    /// Whether `caller`'s bucket for `kind` holds a token at `now` (none
    /// is taken).
    pub fn peek(&self, caller: &str, kind: Limited, rate: Rate, now: Instant) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .get(&(caller.to_owned(), kind))
            .is_none_or(|b| refill(Bucket { rate, ..*b }, now) >= 1.0)
    }
}

/// The tokens `bucket` holds at `now`.
fn refill(bucket: Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * bucket.rate.per_second).min(bucket.rate.burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate_and_callers_do_not_share_one() {
        let limiter = RateLimiter::default();
        let rate = Rate {
            per_second: 2.0,
            burst: 5.0,
        };
        let t0 = Instant::now();
        let kind = Limited::PeerReads;
        for _ in 0..5 {
            assert!(limiter.take("member:caf12", kind, rate, t0));
        }
        assert!(!limiter.take("member:caf12", kind, rate, t0), "burst spent");
        // Another caller, and another kind for the same caller, are untouched.
        assert!(limiter.take("member:cd12", kind, rate, t0));
        assert!(limiter.take("member:caf12", Limited::PeerMls, rate, t0));
        // Half a second later, one token is back; not two.
        let later = t0 + Duration::from_millis(500);
        assert!(limiter.take("member:caf12", kind, rate, later));
        assert!(!limiter.take("member:caf12", kind, rate, later));
        // A long quiet fills the bucket to its burst, no more.
        let much_later = t0 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(limiter.take("member:caf12", kind, rate, much_later));
        }
        assert!(!limiter.take("member:caf12", kind, rate, much_later));
    }

    #[test]
    fn a_rate_of_zero_is_off_and_a_burst_below_the_rate_is_a_problem() {
        assert_eq!(Limits::OFF.rate(Limited::UserReads), None);
        assert!(Limits::default().rate(Limited::UserReads).is_some());
        assert_eq!(Limits::default().problem(), None);
        let bad = Limits {
            peer_mls_per_second: 10,
            peer_mls_burst: 3,
            ..Limits::default()
        };
        let problem = bad.problem().expect("refused");
        assert!(problem.contains("peer_mls_burst"), "{problem}");
    }
}
