//! `maillon node check`'s look at a peer: a real handshake with this node's
//! own peer identity, pinned to the key the roster lists for the peer, then
//! the peer API's health, and the peer's clock as its `date` header tells it.

use std::time::{Duration, Instant};

use crate::crypto::TlsIdentity;
use crate::roster::RosterMember;

/// What a peer answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Whether its peer API says it serves.
    pub serving: bool,
    /// Its clock (Unix seconds) when it answered, if it said.
    pub clock: Option<i64>,
    /// This node's clock halfway through the call (Unix seconds).
    pub local_clock: i64,
    /// How long the handshake and the call took.
    pub round_trip: Duration,
}

/// How long a probe may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(8);

/// Dials `member` as this node (`identity`), checks its peer API's health,
/// and reads its clock. The error is one line: why it could not be reached.
pub async fn probe_peer(identity: &TlsIdentity, member: &RosterMember) -> Result<Probe, String> {
    let cfg = crate::crypto::peer_client_config(identity, member.card.tls_spki_sha256)
        .map_err(|e| e.to_string())?;
    let channel =
        super::tls_channel(&member.card.endpoint, cfg).map_err(|s| s.message().to_owned())?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let started = Instant::now();
    let sent_at = time::OffsetDateTime::now_utc();
    let request = tonic_health::pb::HealthCheckRequest {
        service: <super::PeerServer<super::PeerApi> as tonic::server::NamedService>::NAME.into(),
    };
    let answer = tokio::time::timeout(PROBE_DEADLINE, health.check(request))
        .await
        .map_err(|_| format!("no answer within {} s", PROBE_DEADLINE.as_secs()))?
        .map_err(|s| {
            let reason = s.message().to_owned();
            if reason.is_empty() {
                format!("{:?}", s.code())
            } else {
                reason
            }
        })?;
    let round_trip = started.elapsed();
    let clock = answer
        .metadata()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(parse_http_date);
    let serving = answer.into_inner().status
        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let local_clock = (sent_at + round_trip / 2).unix_timestamp();
    Ok(Probe {
        serving,
        clock,
        local_clock,
        round_trip,
    })
}

/// An HTTP date (`Mon, 07 Dec 2026 14:03:05 GMT`, RFC 9110 §5.6.7) as
/// Unix seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::parse_http_date;

    #[test]
    fn an_http_date_is_read_and_anything_else_is_not() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:01:00 GMT"), Some(60));
        assert_eq!(
            parse_http_date("Mon, 07 Dec 2026 14:03:05 GMT"),
            Some(1_796_652_185)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Mon, 07 Dec 2026 14:03:05 CET"), None);
    }
}
