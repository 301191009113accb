//! Replay protection of read requests, held in memory and rebuilt from the
//! audit log at start: nothing is written per read but the log entry the
//! read writes anyway.
//!
//! A request is answered only within [`REQUEST_WINDOW`] of its own time, so
//! a replay can succeed only while the owner's clock is within that window
//! of the request's time, that is within `2 × REQUEST_WINDOW` of when the
//! owner first saw it. Every request the owner saw is in its log (its
//! `read_granted` or `read_denied` entries carry the nonce, durable before
//! any answer), so the nonces seen in the last `2 × REQUEST_WINDOW` of the
//! log are exactly the ones a replay could reuse: [`Node::rebuild_nonces`]
//! reads them back at start. A request remembered in memory but whose entry
//! never reached the log (a crash in between) was never answered: taking
//! it again after the restart is its first answer, not a replay.

use std::collections::{HashSet, VecDeque};

use super::{Node, REQUEST_WINDOW, Result, blocking};
use crate::audit::{AuditEntry, AuditEvent};
use crate::crypto::sha256;
use crate::storage::Tree;
use crate::types::MemberId;

/// How long a nonce is remembered, in seconds of the owner's clock.
const REMEMBERED: i64 = 2 * REQUEST_WINDOW;

/// Entries read per page when rebuilding from the log's tail.
const TAIL_PAGE: u64 = 1024;

/// Seconds of the owner's clock one bucket of nonces covers: a nonce is
/// remembered `2 × REQUEST_WINDOW` seconds, and at most this many more.
pub const NONCE_BUCKET: i64 = 30;

/// The nonces of read requests seen in the last [`REMEMBERED`] seconds (and
/// up to one [`NONCE_BUCKET`] more), 16 bytes a request (a hash of the reader and
/// its nonce) in one set per bucket: a bucket is forgotten whole, so nothing
/// per request is kept but its key.
#[derive(Debug, Default)]
pub(super) struct Nonces {
    /// `(start, keys)`, oldest first; `start` is a multiple of [`NONCE_BUCKET`].
    buckets: VecDeque<(i64, HashSet<[u8; 16]>)>,
}

fn key(reader: &MemberId, nonce: &str) -> [u8; 16] {
    let mut buf = Vec::with_capacity(reader.as_str().len() + 1 + nonce.len());
    buf.extend_from_slice(reader.as_str().as_bytes());
    buf.push(b'/');
    buf.extend_from_slice(nonce.as_bytes());
    let h = sha256(&buf);
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    k
}

impl Nonces {
    /// Remembers `nonce` of `reader`, seen at `now`; `false` if it was
    /// already remembered (a replay).
    pub(super) fn first_time(&mut self, reader: &MemberId, nonce: &str, now: i64) -> bool {
        self.forget_before(now);
        let k = key(reader, nonce);
        if self.buckets.iter().any(|(_, keys)| keys.contains(&k)) {
            return false;
        }
        let start = now - now.rem_euclid(NONCE_BUCKET);
        match self.buckets.back_mut() {
            // The clock may step back a little: the newest bucket takes it,
            // and keeps it longer rather than shorter.
            Some((last, keys)) if *last >= start => {
                keys.insert(k);
            }
            _ => self.buckets.push_back((start, HashSet::from([k]))),
        }
        true
    }

    /// Forgets the buckets wholly older than [`REMEMBERED`] before `now`;
    /// returns how many nonces went.
    pub(super) fn forget_before(&mut self, now: i64) -> usize {
        let mut forgotten = 0;
        while let Some((start, keys)) = self.buckets.front() {
            if start + NONCE_BUCKET + REMEMBERED >= now {
                break;
            }
            forgotten += keys.len();
            self.buckets.pop_front();
        }
        forgotten
    }

    /// How many are remembered.
    pub(super) fn len(&self) -> usize {
        self.buckets.iter().map(|(_, keys)| keys.len()).sum()
    }
}

impl Node {
    /// At start: the nonces of the requests logged in the last
    /// [`REMEMBERED`] seconds, read from the log's tail (and those an older
    /// version kept in the store, which is then emptied).
    pub(super) async fn rebuild_nonces(&self) -> Result<usize> {
        let now = self.clock.now();
        let audit = self.audit.clone();
        let mut found = blocking(move || {
            let mut found = Vec::new();
            let mut end = audit.size();
            // Back from the end, until a whole page is older than what a
            // replay could reuse (a page, not an entry: the clock may have
            // stepped back a little).
            while end > 0 {
                let from = end.saturating_sub(TAIL_PAGE);
                let page = audit.entries(from, (end - from) as usize)?;
                let mut recent = false;
                for (_, raw) in page.iter().rev() {
                    let Ok(entry) = AuditEntry::from_bytes(raw) else {
                        continue;
                    };
                    if entry.time < now - REMEMBERED {
                        continue;
                    }
                    recent = true;
                    if let AuditEvent::ReadGranted { reader, nonce, .. }
                    | AuditEvent::ReadDenied { reader, nonce, .. } = entry.event
                        && !nonce.is_empty()
                    {
                        found.push((reader, nonce, entry.time));
                    }
                }
                if !recent {
                    break;
                }
                end = from;
            }
            Ok::<_, crate::audit::AuditError>(found)
        })
        .await?;
        let legacy: Vec<(String, i64)> = self.store.scan::<i64>(Tree::Nonces, "")?;
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: each lands in its own time's bucket.
        found.sort_by_key(|(_, _, time)| *time);
        for (reader, nonce, time) in found {
            nonces.first_time(&reader, &nonce, time);
        }
        for (k, time) in &legacy {
            if let Some((reader, nonce)) = k.split_once('/')
                && let Ok(reader) = reader.parse::<MemberId>()
                && *time >= now - REMEMBERED
            {
                nonces.first_time(&reader, nonce, now);
            }
        }
        let remembered = nonces.len();
        drop(nonces);
        if !legacy.is_empty() {
            self.store.remove_where::<i64>(Tree::Nonces, "", |_| true)?;
        }
        Ok(remembered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_within_its_time_and_forgotten_after() {
        let mut n = Nonces::default();
        let caf: MemberId = "caf12".parse().expect("id");
        let cd: MemberId = "cd12".parse().expect("id");
        assert!(n.first_time(&caf, "aa", 1000));
        assert!(!n.first_time(&caf, "aa", 1001), "a replay");
        assert!(n.first_time(&cd, "aa", 1001), "another reader's nonce");
        assert!(
            !n.first_time(&caf, "aa", 1000 + REMEMBERED),
            "still remembered"
        );
        // Kept at least REMEMBERED, at most one bucket more.
        assert!(!n.first_time(&caf, "aa", 1001 + REMEMBERED + NONCE_BUCKET - 21));
        assert_eq!(n.forget_before(1001 + REMEMBERED + NONCE_BUCKET), 2);
        assert_eq!(n.len(), 0);
        assert!(
            n.first_time(&caf, "aa", 1001 + REMEMBERED + NONCE_BUCKET),
            "forgotten"
        );
        // A clock that steps back: the newest bucket keeps the nonce.
        assert!(n.first_time(&cd, "bb", 1001 + REMEMBERED + NONCE_BUCKET - 40));
        assert!(!n.first_time(&cd, "bb", 1001 + REMEMBERED + NONCE_BUCKET + REMEMBERED));
        assert_eq!(n.len(), 2);
    }
}
