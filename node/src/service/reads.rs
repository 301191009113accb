//! Both sides of a consented read. The reader signs a request and logs the
//! owner's receipt; the owner checks the request, decides, seals, and makes
//! the access durable in its log before it answers.

use super::{Caller, Node, Result, SectionView, ServiceError, check_section_json, require};
use crate::audit::AuditEvent;
use crate::consent::{self, Decision, DenyReason};
use crate::crypto::Context;
use crate::protocol::{ReadAnswer, ReadRequest, Receipt, SignedBytes};
use crate::roster::RosterMember;
use crate::sharing::{ShareError, ShareId};
use crate::storage::{StoreError, Tree};
use crate::types::{DossierId, MemberId, Role, Section};

/// How far a request's time may be from the owner's clock (seconds).
pub const REQUEST_WINDOW: i64 = 120;

impl Node {
    /// Reader side: asks `owner` for a section, opens the answer, logs the receipt.
    pub async fn read_share(
        &self,
        caller: &Caller,
        owner: &MemberId,
        dossier: &DossierId,
        section: Section,
        purpose: &str,
    ) -> Result<SectionView> {
        require(caller, &[Role::Caseworker])?;
        crate::types::check_purpose(purpose).map_err(|e| ServiceError::Invalid(e.to_string()))?;
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
        let share = ShareId {
            dossier: dossier.clone(),
            section,
            owner: owner.clone(),
        };
        let first = match self
            .read_once(caller, &owner_member, &share, purpose)
            .await?
        {
            Ok(view) => return Ok(view),
            Err(e) => e,
        };
        // This node missed a commit or a Welcome: ask the owner for a fresh
        // Welcome, then read again, once.
        tracing::info!(owner = %owner, error = %first, "cannot open the owner's answer; asking for a fresh welcome");
        self.network
            .request_welcome(&owner_member, &share)
            .await
            .map_err(|e| ServiceError::PeerMisbehaved {
                peer: owner.clone(),
                what: format!(
                    "its answer cannot be opened ({first}) and it gave no fresh welcome: {e}"
                ),
            })?;
        self.read_once(caller, &owner_member, &share, purpose)
            .await?
            .map_err(|e| ServiceError::PeerMisbehaved {
                peer: owner.clone(),
                what: format!("its answer cannot be opened even after a fresh welcome: {e}"),
            })
    }

    /// One signed request to the owner: the outer error is a refusal or a
    /// failure to reach it; the inner one, an answer this node cannot open.
    async fn read_once(
        &self,
        caller: &Caller,
        owner_member: &RosterMember,
        share: &ShareId,
        purpose: &str,
    ) -> Result<std::result::Result<SectionView, ShareError>> {
        let owner = &owner_member.card.id;
        let nonce: [u8; 16] = rand::random();
        let request = ReadRequest {
            reader: self.me.clone(),
            user: caller.name.clone(),
            role: caller.role,
            owner: owner.clone(),
            dossier: share.dossier.clone(),
            section: share.section,
            purpose: purpose.to_owned(),
            nonce: hex::encode(nonce),
            time: self.clock.now(),
        };
        let signed = SignedBytes::sign(&request, Context::Request, &self.key);
        let request_hash = signed.hash_hex();
        let answer = self.network.read_share(owner_member, signed).await?;

        let receipt = Receipt::verify(
            &answer.receipt,
            owner,
            &owner_member.card.signing_key,
            &request_hash,
        )
        .map_err(|e| ServiceError::PeerMisbehaved {
            peer: owner.clone(),
            what: e.to_string(),
        })?;
        // The owner logged the access: the receipt is logged whatever happens
        // to the answer. Opening runs while the append waits for its sync; the
        // section is shown only once the receipt is durable.
        let logged = self.audit(AuditEvent::ReceiptLogged {
            owner: owner.clone(),
            user: caller.name.clone(),
            dossier: share.dossier.clone(),
            section: share.section,
            request: request_hash,
            owner_leaf: receipt.leaf,
        });
        let opened = async {
            self.sharing
                .open(share, &answer.sealed, &owner_member.card.signing_key)
        };
        let (logged, opened) = tokio::join!(logged, opened);
        logged?;
        let plaintext = match opened {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let misbehaved = |what: String| ServiceError::PeerMisbehaved {
            peer: owner.clone(),
            what,
        };
        let json = String::from_utf8(plaintext)
            .map_err(|_| misbehaved("its section is not UTF-8".into()))?;
        check_section_json(&json)
            .map_err(|e| misbehaved(format!("its section is refused: {e}")))?;
        Ok(Ok(SectionView {
            owner: owner.clone(),
            json,
            receipt_leaf: Some(receipt.leaf),
        }))
    }

    /// Owner side: checks a signed read request, logs it durably, answers sealed.
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
        // refusal is logged before it is sent.
        let now = self.clock.now();
        let request_hash = signed.hash_hex();
        let refuse = |error: ServiceError| {
            let event = AuditEvent::ReadDenied {
                request: request_hash.clone(),
                reader: peer.clone(),
                user: req.user.clone(),
                dossier: req.dossier.clone(),
                section: req.section,
                reason: error.to_string(),
            };
            self.refuse(event, error)
        };
        if now.abs_diff(req.time) > REQUEST_WINDOW.unsigned_abs() {
            return refuse(ServiceError::OutOfWindow(REQUEST_WINDOW)).await;
        }
        let nonce_key = format!("{peer}/{}", req.nonce);
        match self
            .store
            .insert_new(Tree::Nonces, &nonce_key, &req.time, "nonce")
        {
            Ok(()) => {}
            Err(StoreError::Exists(_)) => return refuse(ServiceError::Replayed).await,
            Err(e) => return Err(e.into()),
        }

        // Decide, seal and log under the share's shared lock: a revocation
        // (exclusive) is either entirely before this read or entirely after it.
        let share = self.own_share(&req.dossier, req.section);
        let reading = self.membership.get(&share.scope()).read_owned().await;
        let section = self.own_section(&req.dossier, req.section)?;
        let decision = if req.role != Role::Caseworker {
            Decision::Deny(DenyReason::Role)
        } else {
            let consents = self.effective_consents(&req.dossier)?;
            consent::decide_read(&self.roster.get(), &consents, peer, req.section, now)
        };
        let (consent_id, json) = match (decision, section) {
            (Decision::Allow(id), Some(json)) => (id, json),
            (Decision::Allow(_), None) => {
                return refuse(ServiceError::Denied(DenyReason::NoSuchSection)).await;
            }
            (Decision::Deny(reason), _) => return refuse(ServiceError::Denied(reason)).await,
        };

        let sealed = self.sharing.seal(&share, json.as_bytes())?;
        // The access is durable in the log, and the sealing ratchet (with the
        // request's nonce) in the store, before anything is answered: the two
        // syncs run side by side.
        let logged = self.audit(AuditEvent::ReadGranted {
            request: request_hash.clone(),
            reader: peer.clone(),
            user: req.user.clone(),
            role: req.role,
            dossier: req.dossier.clone(),
            section: req.section,
            consent: consent_id,
            purpose: req.purpose.clone(),
        });
        let (leaf, flushed) = tokio::join!(logged, self.flush());
        drop(reading);
        flushed?;
        let receipt = Receipt {
            owner: self.me.clone(),
            request: request_hash,
            leaf: leaf?,
            time: now,
        };
        Ok(ReadAnswer {
            sealed,
            receipt: SignedBytes::sign(&receipt, Context::Receipt, &self.key),
        })
    }

    /// Logs a refused read, then returns the refusal.
    async fn refuse(&self, event: AuditEvent, error: ServiceError) -> Result<ReadAnswer> {
        self.audit(event).await?;
        Err(error)
    }

    /// Drops remembered nonces older than the request window.
    pub fn prune_nonces(&self) -> Result<usize> {
        let horizon = self.clock.now() - 2 * REQUEST_WINDOW;
        Ok(self
            .store
            .remove_where::<i64>(Tree::Nonces, "", |t| *t < horizon)?)
    }
}
