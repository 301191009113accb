//! The census of aids at this node: publishing this member's services
//! (admins; each entry signed by the node, logged before it is kept) and
//! searching the census (every role: it holds no personal data), and
//! replicating it: a publication is offered at once to every active member,
//! and every gossip round asks each active member for its own entries
//! newer than those kept here (a member that was down, or joined late,
//! catches up). A member's entries come only from that member's node,
//! signed by the key the roster lists for it; received entries are kept,
//! not logged: the publisher's log holds them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use std::collections::HashMap;
use std::time::Duration;

use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::census::{CensusError, Check, Entry, Facts, Outcome, Query, Service, SignedEntry};
use crate::protocol::SignedBytes;
use crate::storage::Tree;
use crate::types::{DossierId, MemberId, Role, Section};

/// A service of the census proposed for a dossier, with each criterion
/// checked.
#[derive(Clone, Debug)]
pub struct AidMatch {
    /// The service's entry.
    pub entry: SignedEntry,
    /// Each criterion it gives: met, or not checked (none failed).
    pub checks: Vec<Check>,
}

/// What `maillon aids match` finds for a dossier.
#[derive(Clone, Debug)]
pub struct AidsMatch {
    /// The services none of whose criteria failed: those whose every
    /// criterion was checked first, then the others, each by member and id.
    pub proposed: Vec<AidMatch>,
    /// How many services in force were left out, a criterion failing.
    pub excluded: usize,
    /// The sections read for it, by owner.
    pub read: Vec<(MemberId, Section)>,
    /// The sections that could not be read, by owner, and why.
    pub unread: Vec<(MemberId, Section, String)>,
}

/// Most services one member keeps in the census.
pub const MAX_SERVICES_PER_MEMBER: usize = 256;

/// Most entries in one offer or one answer of the peer API (each at most
/// 16 KiB: a page stays under the gRPC message limit).
pub const CENSUS_PAGE: usize = 32;

/// How long one member may take to take an offer or answer a fetch.
const CENSUS_DEADLINE: Duration = Duration::from_secs(3);

/// Most pages asked of one member in one round.
const CENSUS_PAGES_PER_ROUND: usize = MAX_SERVICES_PER_MEMBER / CENSUS_PAGE + 1;

/// A census entry as the store keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    /// Base64 of the signed bytes.
    entry: String,
    /// The signature over them.
    signature: crate::crypto::Signature,
}

impl From<CensusError> for ServiceError {
    fn from(e: CensusError) -> Self {
        match e {
            CensusError::TooLarge => ServiceError::TooLarge {
                what: "census entry",
                size: crate::census::MAX_ENTRY_BYTES + 1,
                limit: crate::census::MAX_ENTRY_BYTES,
            },
            CensusError::BadSignature(_) => ServiceError::NotEntitled(e.to_string()),
            other => ServiceError::Invalid(other.to_string()),
        }
    }
}

/// A kept entry decoded (it was checked when it came).
fn decode_kept(key: &str, kept: Kept) -> Result<SignedEntry> {
    let bytes = B64
        .decode(&kept.entry)
        .map_err(|_| ServiceError::Internal(format!("census entry {key} is damaged")))?;
    Ok(SignedEntry::stored(SignedBytes {
        bytes,
        signature: kept.signature,
    })?)
}

impl Node {
    /// The census entry kept under `key` (`member/service`), if any.
    fn kept_entry(&self, key: &str) -> Result<Option<SignedEntry>> {
        self.store
            .get::<Kept>(Tree::Census, key)?
            .map(|kept| decode_kept(key, kept))
            .transpose()
    }

    /// Every entry kept under `prefix` (`member/`, or all), decoded once.
    fn kept_entries(&self, prefix: &str) -> Result<Vec<SignedEntry>> {
        self.store
            .scan::<Kept>(Tree::Census, prefix)?
            .into_iter()
            .map(|(key, kept)| decode_kept(&key, kept))
            .collect()
    }

    /// Keeps `signed` if it replaces what is kept for its service (not
    /// flushed); `false` if it does not.
    pub(super) fn apply_census_entry(&self, signed: &SignedEntry) -> Result<bool> {
        let key = signed.key();
        if !signed.replaces(self.kept_entry(&key)?.as_ref()) {
            return Ok(false);
        }
        let kept = Kept {
            entry: B64.encode(&signed.signed.bytes),
            signature: signed.signed.signature,
        };
        self.store.put(Tree::Census, &key, &kept)?;
        Ok(true)
    }

    /// `maillon aids publish` (admins): publishes this member's `service`
    /// in the census, or withdraws it, as the next version of its entry,
    /// signed by this node; logged (with the signed entry) before it is kept.
    pub async fn publish_aid(
        &self,
        caller: &Caller,
        service: Service,
        withdrawn: bool,
    ) -> Result<SignedEntry> {
        self.publish_aid_after(caller, service, withdrawn, None)
            .await
    }

    /// [`Node::publish_aid`], refused unless the service's version kept
    /// here is still `after` (0: none), checked under the census lock: a
    /// change made from a version another admin has since replaced.
    pub async fn publish_aid_after(
        &self,
        caller: &Caller,
        service: Service,
        withdrawn: bool,
        after: Option<u64>,
    ) -> Result<SignedEntry> {
        require(caller, &[Role::Admin])?;
        if let Some(problem) = service.problem() {
            return Err(ServiceError::Invalid(problem));
        }
        let one_at_a_time = self.census.lock().await;
        let key = format!("{}/{}", self.me, service.id);
        let current = self.kept_entry(&key)?;
        let kept_version = current.as_ref().map_or(0, |c| c.entry.version);
        if let Some(after) = after
            && after != kept_version
        {
            return Err(ServiceError::State(format!(
                "service {} is at version {kept_version} now, not {after}: start again from it",
                service.id
            )));
        }
        if withdrawn && current.as_ref().is_none_or(|c| c.entry.withdrawn) {
            return Err(ServiceError::NotFound(format!(
                "service {} published by this member",
                service.id
            )));
        }
        if current.is_none() && self.own_services()? >= MAX_SERVICES_PER_MEMBER {
            return Err(ServiceError::Invalid(format!(
                "this member's census holds {MAX_SERVICES_PER_MEMBER} services, withdrawn ones included (kept so that every member learns of the withdrawal): publish under the id of a withdrawn one"
            )));
        }
        let version = current.as_ref().map_or(0, |c| c.entry.version) + 1;
        let now = self.clock.now();
        let signed = SignedEntry::sign(
            Entry {
                member: self.me.clone(),
                version,
                published_at: now,
                withdrawn,
                service,
            },
            &self.key,
        )?;
        let event = AuditEvent::AidPublished {
            service: signed.entry.service.id.clone(),
            version,
            withdrawn,
            by: caller.name.clone(),
            entry: B64.encode(&signed.signed.bytes),
            signature: B64.encode(signed.signed.signature.to_bytes()),
        };
        self.log_then_apply(now, event, "aid_logged", || {
            self.apply_census_entry(&signed).map(drop)
        })
        .await?;
        drop(one_at_a_time);
        self.offer_census(std::slice::from_ref(&signed)).await;
        Ok(signed)
    }

    /// `maillon aids withdraw` (admins): withdraws this member's service
    /// `id` (the next version of its entry, marked withdrawn).
    pub async fn withdraw_aid(&self, caller: &Caller, id: &str) -> Result<SignedEntry> {
        require(caller, &[Role::Admin])?;
        let key = format!("{}/{id}", self.me);
        let current = self
            .kept_entry(&key)?
            .filter(|c| !c.entry.withdrawn)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("service {id} published by this member"))
            })?;
        self.publish_aid(caller, current.entry.service, true).await
    }

    /// The entry kept for `member`'s service `id`, if any.
    pub(super) fn kept_aid(&self, member: &MemberId, id: &str) -> Result<Option<SignedEntry>> {
        self.kept_entry(&format!("{member}/{id}"))
    }

    /// The name of `member`'s service `id` in the census kept here, if any
    /// (to name it beside an orientation).
    pub fn aid_name(&self, member: &MemberId, id: &str) -> Option<String> {
        self.kept_aid(member, id)
            .ok()
            .flatten()
            .map(|e| e.entry.service.name)
    }

    /// `maillon aids show` (every role): the entry of `member`'s service
    /// `id`, withdrawn or not.
    pub fn get_aid(&self, caller: &Caller, member: &MemberId, id: &str) -> Result<SignedEntry> {
        require(caller, &[Role::Admin, Role::Caseworker, Role::Auditor])?;
        self.kept_entry(&format!("{member}/{id}"))?
            .ok_or_else(|| ServiceError::NotFound(format!("service {member}/{id} in the census")))
    }

    /// How many services this member has in the census, withdrawn or not.
    fn own_services(&self) -> Result<usize> {
        Ok(self
            .store
            .scan::<Kept>(Tree::Census, &format!("{}/", self.me))?
            .len())
    }

    /// The entries kept for `member`'s services, by id.
    fn entries_of(&self, member: &MemberId) -> Result<Vec<SignedEntry>> {
        self.kept_entries(&format!("{member}/"))
    }

    /// Offers `entries` (this member's) to every active member, all at
    /// once, each within a deadline; a member that does not take them
    /// catches up at its next gossip round.
    async fn offer_census(&self, entries: &[SignedEntry]) {
        let roster = self.roster.get();
        let signed: Vec<SignedBytes> = entries.iter().map(|e| e.signed.clone()).collect();
        let offers = self.active_peers_in(&roster).into_iter().filter_map(|id| {
            let member = roster.roster().member(&id)?.clone();
            let signed = &signed;
            Some(async move {
                let offer = self.network.offer_census(&member, signed);
                match tokio::time::timeout(CENSUS_DEADLINE, offer).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::info!(member = %id, error = %e, "census offer not taken")
                    }
                    Err(_) => tracing::info!(member = %id, "census offer: no answer in time"),
                }
            })
        });
        futures_util::future::join_all(offers).await;
    }

    /// Takes census entries `peer` offers or sends back: all of them are
    /// checked first (each signed by the key the roster lists for `peer`,
    /// about `peer`'s own services, within the limits), and one that fails
    /// refuses the whole offer; then each that is newer than what is kept
    /// replaces it. Returns how many were kept.
    pub async fn receive_census(
        &self,
        peer: &MemberId,
        entries: Vec<SignedBytes>,
    ) -> Result<usize> {
        if entries.len() > CENSUS_PAGE {
            return Err(ServiceError::TooLarge {
                what: "census offer (entries)",
                size: entries.len(),
                limit: CENSUS_PAGE,
            });
        }
        let roster = self.roster.get();
        let keys_of = |m: &MemberId| {
            roster
                .roster()
                .member(m)
                .map(|m| vec![m.card.signing_key])
                .unwrap_or_default()
        };
        let mut opened = Vec::with_capacity(entries.len());
        for signed in entries {
            let entry = SignedEntry::open(signed, keys_of)?;
            if &entry.entry.member != peer {
                return Err(ServiceError::NotEntitled(format!(
                    "a census entry of {} offered by {peer}: a member offers only its own",
                    entry.entry.member
                )));
            }
            opened.push(entry);
        }
        let _one_at_a_time = self.census.lock().await;
        let mut known = self.entries_of(peer)?.len();
        let mut kept = 0;
        for entry in &opened {
            let new = self.kept_entry(&entry.key())?.is_none();
            if new && known >= MAX_SERVICES_PER_MEMBER {
                continue;
            }
            if self.apply_census_entry(entry)? {
                kept += 1;
                known += usize::from(new);
            }
        }
        if kept > 0 {
            self.flush().await?;
        }
        Ok(kept)
    }

    /// This member's own entries whose version is above what the caller
    /// says it `known`s of each (by service id), at most a page; and
    /// whether more remain.
    pub fn census_since(&self, known: &HashMap<String, u64>) -> Result<(Vec<SignedEntry>, bool)> {
        let mut newer: Vec<SignedEntry> = self
            .entries_of(&self.me)?
            .into_iter()
            .filter(|e| {
                known
                    .get(&e.entry.service.id)
                    .is_none_or(|v| e.entry.version > *v)
            })
            .collect();
        let more = newer.len() > CENSUS_PAGE;
        newer.truncate(CENSUS_PAGE);
        Ok((newer, more))
    }

    /// Timer: asks every active member for its entries newer than those
    /// kept here, all at once, each within a deadline; returns how many
    /// were kept.
    pub async fn census_round(&self) -> usize {
        let roster = self.roster.get();
        let rounds = self.active_peers_in(&roster).into_iter().filter_map(|id| {
            let member = roster.roster().member(&id)?.clone();
            Some(async move {
                let mut kept = 0;
                for _ in 0..CENSUS_PAGES_PER_ROUND {
                    let known: HashMap<String, u64> = match self.entries_of(&id) {
                        Ok(entries) => entries
                            .into_iter()
                            .map(|e| (e.entry.service.id, e.entry.version))
                            .collect(),
                        Err(_) => return kept,
                    };
                    let fetch = self.network.fetch_census(&member, &known);
                    let (entries, more) = match tokio::time::timeout(CENSUS_DEADLINE, fetch).await {
                        Ok(Ok(page)) => page,
                        Ok(Err(e)) => {
                            tracing::info!(member = %id, error = %e, "census not fetched");
                            return kept;
                        }
                        Err(_) => {
                            tracing::info!(member = %id, "census fetch: no answer in time");
                            return kept;
                        }
                    };
                    match self.receive_census(&id, entries).await {
                        Ok(n) => kept += n,
                        Err(e) => {
                            tracing::warn!(member = %id, error = %e, "census entries refused");
                            return kept;
                        }
                    }
                    if !more {
                        break;
                    }
                }
                kept
            })
        });
        futures_util::future::join_all(rounds)
            .await
            .into_iter()
            .sum()
    }

    /// `maillon aids search` (every role): the services in force that answer
    /// `query`, by member and id.
    pub fn search_aids(&self, caller: &Caller, query: &Query) -> Result<Vec<SignedEntry>> {
        require(caller, &[Role::Admin, Role::Caseworker, Role::Auditor])?;
        Ok(self
            .kept_entries("")?
            .into_iter()
            .filter(|e| !e.entry.withdrawn && e.entry.service.matches(query))
            .collect())
    }

    /// `maillon aids match` (caseworkers): the services of the census whose
    /// criteria the sections of `dossier` this caseworker may read satisfy,
    /// each with the criteria met and those that could not be checked.
    /// The sections are read as the unified view reads them (each read
    /// logged where it happens, with `purpose`); the match itself is logged
    /// before it is shown. Rules only, never a score.
    pub async fn match_aids(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        purpose: &str,
    ) -> Result<AidsMatch> {
        require(caller, &[Role::Caseworker])?;
        let birth_date = self.summary_of(&self.dossier(dossier)?)?.birth_date;
        let view = self.view_dossier(caller, dossier, purpose).await?;
        let mut sections = Vec::new();
        let (mut read, mut unread) = (Vec::new(), Vec::new());
        for v in view.sections {
            match v.outcome {
                Ok(section) => {
                    if let Ok(json) = serde_json::from_str(&section.json) {
                        sections.push((v.section, json));
                    }
                    read.push((v.owner, v.section));
                }
                Err(e) => unread.push((v.owner, v.section, e.to_string())),
            }
        }
        let today = crate::types::Date::from_unix(self.clock.now());
        let facts = Facts::read(birth_date.years_to(today), &sections);
        let (mut complete, mut partial, mut excluded) = (Vec::new(), Vec::new(), 0);
        for entry in self.kept_entries("")? {
            if entry.entry.withdrawn {
                continue;
            }
            let checks = crate::census::check(&entry.entry.service.criteria, &facts);
            if checks
                .iter()
                .any(|c| matches!(c.outcome, Outcome::Failed(_)))
            {
                excluded += 1;
            } else if checks.iter().all(|c| matches!(c.outcome, Outcome::Met(_))) {
                complete.push(AidMatch { entry, checks });
            } else {
                partial.push(AidMatch { entry, checks });
            }
        }
        complete.extend(partial);
        self.audit(AuditEvent::AidsMatched {
            dossier: dossier.clone(),
            by: caller.name.clone(),
            proposed: u32::try_from(complete.len()).unwrap_or(u32::MAX),
            services: complete.iter().map(|m| m.entry.key()).collect(),
        })
        .await?;
        Ok(AidsMatch {
            proposed: complete,
            excluded,
            read,
            unread,
        })
    }

    /// Re-applies a publication the log holds and the store lacks (start).
    pub(super) fn replay_aid(&self, entry: &str, signature: &str) -> Result<bool> {
        let damaged = || ServiceError::Internal("a logged census entry is damaged".into());
        let bytes = B64.decode(entry).map_err(|_| damaged())?;
        let signature = B64
            .decode(signature)
            .ok()
            .and_then(|s| crate::crypto::Signature::from_bytes(&s).ok())
            .ok_or_else(damaged)?;
        let signed = SignedEntry::stored(SignedBytes { bytes, signature })?;
        self.apply_census_entry(&signed)
    }
}
