//! Both sides of a consented read. The reader signs a request and logs the
//! owner's receipt; the owner checks the request, decides, seals, and makes
//! the access durable in its log before it answers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{
    Caller, ErrorKind, Node, Result, SectionView, ServiceError, blocking, check_section_json,
    require,
};
use crate::audit::AuditEvent;
use crate::consent::{self, Decision, DenyReason};
use crate::crypto::Context;
use crate::protocol::{Basis, ReadAnswer, ReadRequest, Receipt, ReceiptItem, SignedBytes};
use crate::roster::RosterMember;
use crate::sharing::{ShareError, ShareId};
use crate::types::{DossierId, MemberId, Role, Section};

/// How far a request's time may be from the owner's clock (seconds).
pub const REQUEST_WINDOW: i64 = 120;

/// What a reader made of one section of an owner's answer.
enum Outcome {
    /// Read and opened.
    Read(SectionView),
    /// Refused by the owner (logged there), or failed here.
    Failed(ServiceError),
    /// Granted, but this node cannot open it (it missed a commit or a Welcome).
    Unopened(ShareError),
}

/// The error a reader reports for a section the owner refused.
fn refused(owner: &MemberId, item: &ReceiptItem) -> ServiceError {
    let reason = item.refused.clone().unwrap_or_else(|| "refused".into());
    ServiceError::Remote {
        peer: owner.clone(),
        kind: if reason == "no_such_section" {
            ErrorKind::NotFound
        } else {
            ErrorKind::Refused
        },
        message: crate::types::escape_controls(item.message.as_deref().unwrap_or(&reason)),
        reason: Some(reason),
    }
}

/// Each section's outcome as the caller sees it.
fn finish(
    owner: &MemberId,
    outcomes: Vec<(Section, Outcome)>,
) -> Vec<(Section, Result<SectionView>)> {
    outcomes
        .into_iter()
        .map(|(section, outcome)| {
            let result = match outcome {
                Outcome::Read(view) => Ok(view),
                Outcome::Failed(e) => Err(e),
                Outcome::Unopened(e) => Err(ServiceError::PeerMisbehaved {
                    peer: owner.clone(),
                    what: format!("its answer cannot be opened even after a fresh welcome: {e}"),
                }),
            };
            (section, result)
        })
        .collect()
}

impl Node {
    /// Reader side, one section: [`Node::read_shares`] of that section; a
    /// refusal is the call's error.
    pub async fn read_share(
        &self,
        caller: &Caller,
        owner: &MemberId,
        dossier: &DossierId,
        section: Section,
        purpose: &str,
        break_glass: Option<&str>,
    ) -> Result<SectionView> {
        let mut read = self
            .read_shares(caller, owner, dossier, &[section], purpose, break_glass)
            .await?;
        match read.pop() {
            Some((_, outcome)) => outcome,
            None => Err(ServiceError::Internal("a read answered no section".into())),
        }
    }

    /// Reader side: asks `owner` for several sections of a dossier in one
    /// signed request (with a justification, a break-glass read), opens
    /// what it grants, logs the receipt of each granted section. The outer
    /// error stops every section (unreachable, or every section refused);
    /// each section has its own outcome otherwise.
    pub async fn read_shares(
        &self,
        caller: &Caller,
        owner: &MemberId,
        dossier: &DossierId,
        sections: &[Section],
        purpose: &str,
        break_glass: Option<&str>,
    ) -> Result<Vec<(Section, Result<SectionView>)>> {
        require(caller, &[Role::Caseworker])?;
        crate::types::check_purpose(purpose).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if let Some(why) = break_glass {
            crate::types::check_justification(why)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        if sections.is_empty() || !sections.windows(2).all(|w| w[0] < w[1]) {
            return Err(ServiceError::Invalid(
                "name at least one section, each once".into(),
            ));
        }
        if owner == &self.me {
            return Err(ServiceError::Invalid(
                "this node owns the section: read it with GetSection".into(),
            ));
        }
        let owner_member = self
            .roster
            .get()
            .active_member(owner)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("active member {owner}")))?;
        let mut outcomes = self
            .read_once(
                caller,
                &owner_member,
                dossier,
                sections,
                purpose,
                break_glass,
            )
            .await?;
        let unopened: Vec<Section> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Unopened(_)))
            .map(|(s, _)| *s)
            .collect();
        if !unopened.is_empty() {
            // This node missed a commit or a Welcome: ask the owner for a
            // fresh Welcome of each such share, then read those again, once.
            tracing::info!(owner = %owner, sections = unopened.len(), "cannot open the owner's answer; asking for fresh welcomes");
            let mut welcomed = Vec::new();
            for section in &unopened {
                let share = ShareId {
                    dossier: dossier.clone(),
                    section: *section,
                    owner: owner.clone(),
                };
                match self.network.request_welcome(&owner_member, &share).await {
                    Ok(_) => welcomed.push(*section),
                    Err(e) => {
                        if let Some(slot) = outcomes.iter_mut().find(|(s, _)| s == section) {
                            let first = match &slot.1 {
                                Outcome::Unopened(first) => first.to_string(),
                                _ => String::new(),
                            };
                            slot.1 = Outcome::Failed(ServiceError::PeerMisbehaved {
                                peer: owner.clone(),
                                what: format!(
                                    "its answer cannot be opened ({first}) and it gave no fresh welcome: {e}"
                                ),
                            });
                        }
                    }
                }
            }
            if welcomed.is_empty() {
                return Ok(finish(owner, outcomes));
            }
            let again = self
                .read_once(
                    caller,
                    &owner_member,
                    dossier,
                    &welcomed,
                    purpose,
                    break_glass,
                )
                .await?;
            for (section, outcome) in again {
                if let Some(slot) = outcomes.iter_mut().find(|(s, _)| *s == section) {
                    slot.1 = outcome;
                }
            }
        }
        Ok(finish(owner, outcomes))
    }

    /// One signed request to the owner; the error is a refusal of every
    /// section or a failure to reach it.
    async fn read_once(
        &self,
        caller: &Caller,
        owner_member: &RosterMember,
        dossier: &DossierId,
        sections: &[Section],
        purpose: &str,
        break_glass: Option<&str>,
    ) -> Result<Vec<(Section, Outcome)>> {
        let owner = &owner_member.card.id;
        let nonce: [u8; 16] = rand::random();
        let request = ReadRequest {
            reader: self.me.clone(),
            user: caller.name.clone(),
            role: caller.role,
            owner: owner.clone(),
            dossier: dossier.clone(),
            sections: sections.to_vec(),
            purpose: purpose.to_owned(),
            nonce: hex::encode(nonce),
            time: self.clock.now(),
            break_glass: break_glass.map(|s| s.trim().to_owned()),
        };
        let signed = SignedBytes::sign(&request, Context::Request, &self.key);
        let request_hash = signed.hash_hex();
        let answer = self.network.read_share(owner_member, signed).await?;
        let misbehaved = |what: String| ServiceError::PeerMisbehaved {
            peer: owner.clone(),
            what,
        };
        let receipt = Receipt::verify(
            &answer.receipt,
            owner,
            &owner_member.card.signing_key,
            &request_hash,
            sections,
        )
        .map_err(|e| misbehaved(e.to_string()))?;
        let granted: Vec<&ReceiptItem> = receipt.granted().collect();
        if !granted
            .iter()
            .map(|i| i.section)
            .eq(answer.sealed.iter().map(|(s, _)| *s))
        {
            return Err(misbehaved(
                "its sealed sections are not those its receipt grants".into(),
            ));
        }
        // The owner logged each access: each receipt is logged whatever
        // happens to the answer. Opening runs while the appends wait for
        // their sync; a section is shown only once its receipt is durable.
        let logged = futures_util::future::join_all(granted.iter().map(|item| {
            self.audit(AuditEvent::ReceiptLogged {
                owner: owner.clone(),
                user: caller.name.clone(),
                dossier: dossier.clone(),
                section: item.section,
                request: request_hash.clone(),
                owner_leaf: item.leaf,
                break_glass: match &item.basis {
                    Some(Basis::BreakGlass(id)) => Some(id.clone()),
                    _ => None,
                },
                receipt: B64.encode(&answer.receipt.bytes),
                receipt_signature: B64.encode(answer.receipt.signature.to_bytes()),
            })
        }));
        let opened = async {
            answer
                .sealed
                .iter()
                .map(|(section, sealed)| {
                    let share = ShareId {
                        dossier: dossier.clone(),
                        section: *section,
                        owner: owner.clone(),
                    };
                    self.sharing
                        .open(&share, sealed, &owner_member.card.signing_key)
                })
                .collect::<Vec<_>>()
        };
        let (logged, opened) = tokio::join!(logged, opened);
        for l in logged {
            l?;
        }
        let mut opened = opened.into_iter();
        let mut outcomes = Vec::new();
        for item in &receipt.items {
            let outcome = match &item.basis {
                None => Outcome::Failed(refused(owner, item)),
                Some(basis) => match opened.next() {
                    Some(Ok(plaintext)) => match String::from_utf8(plaintext) {
                        Err(_) => Outcome::Failed(misbehaved("its section is not UTF-8".into())),
                        Ok(json) => match check_section_json(&json) {
                            Err(e) => {
                                Outcome::Failed(misbehaved(format!("its section is refused: {e}")))
                            }
                            Ok(()) => Outcome::Read(SectionView {
                                owner: owner.clone(),
                                json,
                                written_at: item.written_at.unwrap_or(receipt.time),
                                basis: Some(basis.clone()),
                                receipt_leaf: Some(item.leaf),
                            }),
                        },
                    },
                    Some(Err(e)) => Outcome::Unopened(e),
                    None => Outcome::Failed(misbehaved("a granted section is missing".into())),
                },
            };
            outcomes.push((item.section, outcome));
        }
        Ok(outcomes)
    }

    /// Owner side: checks a signed read request, decides each section (a
    /// consent, or a break-glass access the charter allows), logs each
    /// decision durably (one entry per section), and answers the granted
    /// sections sealed, with a receipt for all of them. When every section
    /// is refused, the refusal of the first is the answer.
    pub async fn answer_read(&self, peer: &MemberId, signed: SignedBytes) -> Result<ReadAnswer> {
        let protocol = |source| ServiceError::Protocol {
            peer: peer.clone(),
            source,
        };
        let req = ReadRequest::decode(&signed.bytes).map_err(protocol)?;
        if &req.reader != peer {
            return Err(ServiceError::NotEntitled(format!(
                "the request names {} but the connection is {peer}",
                req.reader
            )));
        }
        if req.owner != self.me {
            return Err(ServiceError::Invalid(format!(
                "the request is for {}, not this node",
                req.owner
            )));
        }
        let reader = self
            .roster_member(peer)
            .map_err(|_| ServiceError::Denied(DenyReason::NotAMember(peer.clone())))?;
        // Decoded above, to name the reader: only the signature is left to check.
        signed
            .verify(Context::Request, &reader.card.signing_key, "request")
            .map_err(protocol)?;

        // From here the request is authenticated and well formed: every
        // refusal is logged, one entry per section, before it is sent.
        let now = self.clock.now();
        let request_hash = signed.hash_hex();
        let denied = |section: Section, error: &ServiceError| AuditEvent::ReadDenied {
            request: request_hash.clone(),
            reader: peer.clone(),
            user: req.user.clone(),
            dossier: req.dossier.clone(),
            section,
            reason: error.to_string(),
            nonce: req.nonce.clone(),
        };
        let refuse_all = |error: ServiceError| async {
            let events = req.sections.iter().map(|s| self.audit(denied(*s, &error)));
            for logged in futures_util::future::join_all(events).await {
                logged?;
            }
            Err(error)
        };
        if now.abs_diff(req.time) > REQUEST_WINDOW.unsigned_abs() {
            return refuse_all(ServiceError::OutOfWindow(REQUEST_WINDOW)).await;
        }
        // Remembered in memory; the entries this request writes carry its
        // nonce, from which a restart remembers it again (`nonces`).
        let first = self
            .nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time(peer, &req.nonce, now);
        if !first {
            return refuse_all(ServiceError::Replayed).await;
        }
        if self.is_closed(&req.dossier)? {
            return refuse_all(ServiceError::Denied(DenyReason::Closed)).await;
        }
        if let Some(why) = &req.break_glass
            && let Err(e) = self.open_break_glass(&reader, &req, why, now).await
        {
            return refuse_all(e).await;
        }

        // Decide, seal and log under the shares' shared locks (in section
        // order): a revocation (exclusive) is either entirely before this
        // read or entirely after it.
        let mut reading = Vec::new();
        for section in &req.sections {
            let share = self.own_share(&req.dossier, *section);
            reading.push(self.membership.get(&share.scope()).read_owned().await);
        }
        // Closed or erased while this request waited for the locks.
        if self.is_closed(&req.dossier)? {
            drop(reading);
            return refuse_all(ServiceError::Denied(DenyReason::Closed)).await;
        }
        let now = self.clock.now();
        let consents = self.effective_consents(&req.dossier)?;
        let grants = self.grants_of(&req.dossier)?;
        let roster = self.roster.get();
        let mut decided = Vec::new();
        for section in &req.sections {
            let record = self.own_section(&req.dossier, *section)?;
            let decision = if req.role != Role::Caseworker {
                Decision::Deny(DenyReason::Role)
            } else {
                consent::decide_read(&roster, &consents, peer, *section, now)
            };
            let basis = match decision {
                Decision::Allow(id) => Ok(Basis::Consent(id)),
                Decision::Deny(reason) => {
                    let glass = req.break_glass.as_ref().and_then(|_| {
                        Self::break_glass_basis(&grants, peer, &req.user, *section, now)
                    });
                    let overridable = !matches!(
                        reason,
                        DenyReason::Masked(_)
                            | DenyReason::Charter { .. }
                            | DenyReason::NotAMember(_)
                            | DenyReason::Role
                    );
                    match glass {
                        Some(id) if overridable => Ok(Basis::BreakGlass(id)),
                        _ => Err(ServiceError::Denied(reason)),
                    }
                }
            };
            let outcome = match (basis, record) {
                (Ok(basis), Some(record)) => {
                    let share = self.own_share(&req.dossier, *section);
                    let sealed = if self.sharing.seals_in_memory(&share) {
                        self.sharing.seal(&share, record.json.as_bytes())?
                    } else {
                        // Its ratchet is written and flushed, or moved past
                        // a reserve first: off the async workers.
                        let sharing = self.sharing.clone();
                        blocking(move || sharing.seal(&share, record.json.as_bytes())).await?
                    };
                    Ok((basis, record.written_at, sealed))
                }
                (Ok(_), None) => Err(ServiceError::Denied(DenyReason::NoSuchSection)),
                (Err(e), _) => Err(e),
            };
            decided.push((*section, outcome));
        }
        // Each access is durable in the log before anything is answered.
        // The sealing ratchets need no flush here: `Sharing::seal` keeps the
        // store at most `SEAL_RESERVE` generations behind, and moves past
        // them after a crash.
        let events = decided.iter().map(|(section, outcome)| {
            self.audit(match outcome {
                Ok((basis, _, _)) => AuditEvent::ReadGranted {
                    request: request_hash.clone(),
                    reader: peer.clone(),
                    user: req.user.clone(),
                    role: req.role,
                    dossier: req.dossier.clone(),
                    section: *section,
                    consent: match basis {
                        Basis::Consent(id) => Some(id.clone()),
                        Basis::BreakGlass(_) => None,
                    },
                    break_glass: match basis {
                        Basis::BreakGlass(id) => Some(id.clone()),
                        Basis::Consent(_) => None,
                    },
                    purpose: req.purpose.clone(),
                    nonce: req.nonce.clone(),
                },
                Err(e) => denied(*section, e),
            })
        });
        let leaves = futures_util::future::join_all(events).await;
        drop(reading);
        let mut items = Vec::new();
        let mut sealed = Vec::new();
        let mut first_refusal = None;
        for ((section, outcome), leaf) in decided.into_iter().zip(leaves) {
            let leaf = leaf?;
            match outcome {
                Ok((basis, written_at, bytes)) => {
                    sealed.push((section, bytes));
                    items.push(ReceiptItem {
                        section,
                        leaf,
                        basis: Some(basis),
                        written_at: Some(written_at),
                        refused: None,
                        message: None,
                    });
                }
                Err(e) => {
                    items.push(ReceiptItem {
                        section,
                        leaf,
                        basis: None,
                        written_at: None,
                        refused: Some(e.reason()),
                        message: Some(e.to_string()),
                    });
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if sealed.is_empty()
            && let Some(e) = first_refusal
        {
            return Err(e);
        }
        let receipt = Receipt {
            owner: self.me.clone(),
            request: request_hash,
            time: now,
            items,
        };
        Ok(ReadAnswer {
            sealed,
            receipt: SignedBytes::sign(&receipt, Context::Receipt, &self.key),
        })
    }

    /// Forgets the nonces of requests too old to be answered again.
    pub fn prune_nonces(&self) -> Result<usize> {
        let now = self.clock.now();
        Ok(self
            .nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_before(now))
    }
}
