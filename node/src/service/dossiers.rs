//! Dossiers and this node's own sections: opening a dossier at the desk,
//! writing and reading this node's copy of a section. Every access is logged
//! at this node before it is answered.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, check_section_json, check_text, require};
use crate::audit::AuditEvent;
use crate::storage::Tree;
use crate::types::{Date, DossierId, MemberId, Role, Section, UserName};

/// The slot the identity record is sealed under (never a section's name).
pub(super) const IDENTITY_SLOT: &str = "record/identity";

/// The slot a section is sealed under.
fn section_slot(section: Section) -> String {
    format!("section/{section}")
}

/// Longest name field of a dossier.
pub const MAX_NAME: usize = 100;

/// A dossier as this node keeps it. Names never leave the node, nor reach a
/// log; they are sealed at rest under the dossier's key, like its sections.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DossierRecord {
    /// The opaque id that travels between nodes.
    pub id: DossierId,
    /// The person's identity as typed at this node's desk ([`Identity`]),
    /// sealed under the dossier's key, base64.
    pub identity: String,
    /// The caseworker who opened it.
    pub opened_by: UserName,
    /// When it was opened (Unix seconds).
    pub opened_at: i64,
    /// The member that holds the dossier, when this node attached to it
    /// (the person was received elsewhere first); none where it was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_from: Option<MemberId>,
    /// Where this node holds the dossier: the members that attached to it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub partners: BTreeSet<MemberId>,
    /// When and why the parcours ended, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
}

/// The person's identity as typed at a desk (sealed at rest).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date.
    pub birth_date: Date,
}

/// How a dossier's parcours ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    /// When (Unix seconds, the holder's time).
    pub at: i64,
    /// Why, from a closed list (never free text: it reaches the log).
    pub reason: crate::types::ClosureReason,
}

/// This node's copy of a section, as read from the store.
#[derive(Clone)]
pub struct SectionRecord {
    /// The JSON object, at most [`super::MAX_SECTION`] bytes.
    pub json: String,
    /// When it was last written (Unix seconds).
    pub written_at: i64,
    /// The caseworker who wrote it last.
    pub written_by: UserName,
}

/// A section as stored: its JSON sealed under the dossier's key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSection {
    /// The JSON, sealed, base64.
    sealed: String,
    /// When it was last written (Unix seconds).
    written_at: i64,
    /// The caseworker who wrote it last.
    written_by: UserName,
}

/// A section as read by a caseworker.
#[derive(Clone, Debug)]
pub struct SectionView {
    /// The member that owns this copy.
    pub owner: MemberId,
    /// The JSON object, at most [`super::MAX_SECTION`] bytes.
    pub json: String,
    /// When its owner last wrote it (Unix seconds).
    pub written_at: i64,
    /// For a shared read, on what the owner granted it (none for this node's own).
    pub basis: Option<crate::protocol::Basis>,
    /// For a shared read, the owner's audit leaf of the access.
    pub receipt_leaf: Option<u64>,
}

/// How long the unified view waits for one partner: a slow or down partner
/// never holds the others back.
pub const VIEW_SOURCE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// The unified view of a dossier for a caseworker.
#[derive(Debug)]
pub struct DossierView {
    /// Every section read, this node's own first, then each owner's.
    pub sections: Vec<ViewedSection>,
    /// The dossier's référent de parcours, if one is named.
    pub referent: Option<super::Referent>,
    /// At the référent's member only: every member holding the dossier and
    /// how fresh its sections are (never their content).
    pub partners: Vec<super::PartnerFreshness>,
}

/// One source of the unified view: a section of the dossier at one member,
/// read, or why not.
#[derive(Debug)]
pub struct ViewedSection {
    /// The member that owns this copy.
    pub owner: MemberId,
    /// Which section.
    pub section: Section,
    /// The section, or why it could not be read (refused, unreachable,
    /// timed out after [`VIEW_SOURCE_DEADLINE`]).
    pub outcome: std::result::Result<SectionView, ServiceError>,
}

pub(super) fn section_key(dossier: &DossierId, section: Section) -> String {
    format!("{dossier}/{section}")
}

impl Node {
    /// Opens a dossier for a person who came to this node's desk.
    pub async fn open_dossier(
        &self,
        caller: &Caller,
        given_name: &str,
        family_name: &str,
        birth_date: Date,
    ) -> Result<DossierId> {
        require(caller, &[Role::Caseworker])?;
        check_text("given name", given_name, MAX_NAME)?;
        check_text("family name", family_name, MAX_NAME)?;
        let id = DossierId::random();
        let now = self.clock.now();
        let record = self.new_record(
            &id,
            caller,
            now,
            None,
            (given_name, family_name, birth_date),
        )?;
        let opened = AuditEvent::DossierOpened {
            dossier: id.clone(),
            by: caller.name.clone(),
        };
        self.log_then_apply(now, opened, "dossier_logged", || {
            Ok(self
                .store
                .insert_new(Tree::Dossiers, id.as_str(), &record, "dossier")?)
        })
        .await?;
        Ok(id)
    }

    /// Attaches this node to a dossier `from` holds (the person gives its
    /// id at this desk): `from` confirms it holds it, then the attachment is
    /// logged and this node's own identity record is kept. From then on this
    /// node writes its own sections of the dossier and owns shares of them.
    pub async fn attach_dossier(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        from: &MemberId,
        (given_name, family_name, birth_date): (&str, &str, Date),
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        check_text("given name", given_name, MAX_NAME)?;
        check_text("family name", family_name, MAX_NAME)?;
        if from == &self.me {
            return Err(ServiceError::Invalid(
                "this node holds the dossier already; attach to a dossier another member holds"
                    .into(),
            ));
        }
        if self.dossier(dossier).is_ok() {
            return Err(ServiceError::Exists("dossier"));
        }
        let holder = self
            .roster
            .get()
            .active_member(from)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("active member {from}")))?;
        self.network.confirm_dossier(&holder, dossier).await?;
        let _attaching = self.attaching.lock().await;
        let now = self.clock.now();
        let record = self.new_record(
            dossier,
            caller,
            now,
            Some(from.clone()),
            (given_name, family_name, birth_date),
        )?;
        let attached = AuditEvent::DossierAttached {
            dossier: dossier.clone(),
            from: from.clone(),
            by: caller.name.clone(),
        };
        self.log_then_apply(now, attached, "dossier_logged", || {
            Ok(self
                .store
                .insert_new(Tree::Dossiers, dossier.as_str(), &record, "dossier")?)
        })
        .await
    }

    /// A new dossier record: the dossier's key made (and synced) first,
    /// then the identity sealed under it.
    fn new_record(
        &self,
        id: &DossierId,
        caller: &Caller,
        now: i64,
        attached_from: Option<MemberId>,
        (given_name, family_name, birth_date): (&str, &str, Date),
    ) -> Result<DossierRecord> {
        if self.store.get::<i64>(Tree::Erased, id.as_str())?.is_some() {
            return Err(ServiceError::State(format!("{id} was erased")));
        }
        self.vault.create(id.as_str())?;
        let identity = Identity {
            given_name: given_name.trim().to_owned(),
            family_name: family_name.trim().to_owned(),
            birth_date,
        };
        let plain = serde_json::to_vec(&identity)
            .map_err(|e| ServiceError::Internal(format!("identity: {e}")))?;
        let sealed = self.vault.seal(id.as_str(), IDENTITY_SLOT, &plain)?;
        Ok(DossierRecord {
            id: id.clone(),
            identity: B64.encode(sealed),
            opened_by: caller.name.clone(),
            opened_at: now,
            attached_from,
            partners: BTreeSet::new(),
            closed: None,
        })
    }

    /// Holder side: confirms to an active member that this node holds
    /// `dossier`, and tells nothing else; the confirmation is logged, then
    /// the member is kept as a partner of the dossier (it learns the
    /// référent, if there is one, through this node's outbox).
    pub async fn confirm_dossier(&self, peer: &MemberId, dossier: &DossierId) -> Result<()> {
        self.active_peer(peer)?;
        let record = self.dossier(dossier)?;
        if record.attached_from.is_some() {
            return Err(ServiceError::State(format!(
                "this node attached to {dossier}; attach to the member that holds it"
            )));
        }
        self.check_open(dossier)?;
        let confirmed = AuditEvent::DossierConfirmed {
            dossier: dossier.clone(),
            to: peer.clone(),
        };
        // The notices (the référent, to the new partner and the référent's
        // member) wait in the outbox: upkeep delivers them once the member
        // has stored its attachment, not inside this call.
        self.log_then_apply(self.clock.now(), confirmed, "confirm_logged", || {
            self.store_partner(dossier, peer).map(drop)
        })
        .await
    }

    /// Adds a partner to a dossier this node holds and, if the dossier has
    /// a référent, queues the notices the change owes (not flushed); `false`
    /// if it was a partner already.
    pub(super) fn store_partner(&self, dossier: &DossierId, partner: &MemberId) -> Result<bool> {
        let mut record = self.dossier(dossier)?;
        if !record.partners.insert(partner.clone()) {
            return Ok(false);
        }
        self.store.put(Tree::Dossiers, dossier.as_str(), &record)?;
        if let Some(mut referent) = self.referent(dossier)? {
            referent.partners.insert(partner.clone());
            self.store
                .put(Tree::Referents, dossier.as_str(), &referent)?;
            let mut to = vec![partner.clone()];
            if referent.member != self.me && &referent.member != partner {
                to.push(referent.member.clone());
            }
            for p in &to {
                self.queue_referent_notice(dossier, &referent, p)?;
            }
        }
        Ok(true)
    }

    /// The dossier record, or [`ServiceError::NotFound`].
    pub(super) fn dossier(&self, id: &DossierId) -> Result<DossierRecord> {
        self.store
            .get(Tree::Dossiers, id.as_str())?
            .ok_or_else(|| ServiceError::NotFound(format!("dossier {id}")))
    }

    /// Writes this node's copy of a section (logged first).
    pub async fn put_section(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        section: Section,
        json: &str,
    ) -> Result<()> {
        require(caller, &[Role::Caseworker])?;
        check_section_json(json)?;
        // Under the share's lock, which erasure takes too: a section is
        // never written into a dossier being wiped.
        let share = self.own_share(dossier, section);
        let _writing = self.membership.get(&share.scope()).write_owned().await;
        self.dossier(dossier)?;
        self.check_open(dossier)?;
        if section == Section::SupportPlan {
            self.check_writes_support_plan(caller, dossier)?;
        }
        let written = AuditEvent::SectionWritten {
            dossier: dossier.clone(),
            section,
            by: caller.name.clone(),
        };
        let now = self.clock.now();
        let sealed = self
            .vault
            .seal(dossier.as_str(), &section_slot(section), json.as_bytes())?;
        let record = StoredSection {
            sealed: B64.encode(sealed),
            written_at: now,
            written_by: caller.name.clone(),
        };
        self.log_then_apply(now, written, "section_logged", || {
            Ok(self
                .store
                .put(Tree::Sections, &section_key(dossier, section), &record)?)
        })
        .await
    }

    /// This node's copy of a section, if it wrote one.
    pub(super) fn own_section(
        &self,
        dossier: &DossierId,
        section: Section,
    ) -> Result<Option<SectionRecord>> {
        let Some(stored) = self
            .store
            .get::<StoredSection>(Tree::Sections, &section_key(dossier, section))?
        else {
            return Ok(None);
        };
        let sealed = B64
            .decode(&stored.sealed)
            .map_err(|_| ServiceError::Internal(format!("{dossier}/{section}: not base64")))?;
        let plain = self
            .vault
            .open_sealed(dossier.as_str(), &section_slot(section), &sealed)?;
        let json = String::from_utf8(plain)
            .map_err(|_| ServiceError::Internal(format!("{dossier}/{section}: not UTF-8")))?;
        Ok(Some(SectionRecord {
            json,
            written_at: stored.written_at,
            written_by: stored.written_by,
        }))
    }

    /// Whether this node holds a copy of the section (without opening it).
    pub(super) fn holds_section(&self, dossier: &DossierId, section: Section) -> Result<bool> {
        Ok(self
            .store
            .get::<StoredSection>(Tree::Sections, &section_key(dossier, section))?
            .is_some())
    }

    /// The sections this node holds of a dossier, in order.
    pub(super) fn own_sections(&self, dossier: &DossierId) -> Result<Vec<Section>> {
        let mut held = Vec::new();
        for section in Section::ALL {
            if self.holds_section(dossier, *section)? {
                held.push(*section);
            }
        }
        Ok(held)
    }

    /// `dossier view`: the unified file for a caseworker, its own sections
    /// (each read logged here) and every section another member shares with
    /// this node (this node is in its group), read from each owner at once,
    /// one request per owner, each within [`VIEW_SOURCE_DEADLINE`], each
    /// owner logging its access; at the référent's member, how fresh every
    /// partner's sections are.
    pub async fn view_dossier(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        purpose: &str,
    ) -> Result<DossierView> {
        require(caller, &[Role::Caseworker])?;
        crate::types::check_purpose(purpose).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.dossier(dossier)?;
        let mut view = Vec::new();
        for section in self.own_sections(dossier)? {
            let outcome = self.get_section(caller, dossier, section).await;
            view.push(ViewedSection {
                owner: self.me.clone(),
                section,
                outcome,
            });
        }
        let mut by_owner: BTreeMap<MemberId, Vec<Section>> = BTreeMap::new();
        for m in &self.roster.get().roster().members {
            if m.card.id == self.me {
                continue;
            }
            let prefix = format!("share/{}/{dossier}/", m.card.id);
            for share in self
                .store
                .mls_scopes(&prefix)?
                .iter()
                .filter_map(|s| crate::sharing::ShareId::from_scope(s))
            {
                by_owner.entry(share.owner).or_default().push(share.section);
            }
        }
        let reads = by_owner
            .into_iter()
            .map(|(owner, mut sections)| async move {
                sections.sort();
                let read = self.read_shares(caller, &owner, dossier, &sections, purpose, None);
                match tokio::time::timeout(VIEW_SOURCE_DEADLINE, read).await {
                    Ok(Ok(items)) => items
                        .into_iter()
                        .map(|(section, outcome)| ViewedSection {
                            owner: owner.clone(),
                            section,
                            outcome,
                        })
                        .collect::<Vec<_>>(),
                    failed => {
                        let error = match failed {
                            Ok(Err(e)) => e,
                            _ => ServiceError::Unreachable {
                                peer: owner.clone(),
                                reason: format!(
                                    "no answer within {} s",
                                    VIEW_SOURCE_DEADLINE.as_secs()
                                ),
                            },
                        };
                        sections
                            .iter()
                            .map(|section| ViewedSection {
                                owner: owner.clone(),
                                section: *section,
                                outcome: Err(error.duplicate(&owner)),
                            })
                            .collect()
                    }
                }
            });
        let (reads, partners) = tokio::join!(
            futures_util::future::join_all(reads),
            self.partners_freshness(dossier)
        );
        view.extend(reads.into_iter().flatten());
        Ok(DossierView {
            sections: view,
            referent: self.referent(dossier)?,
            partners: partners?,
        })
    }

    /// Reads this node's own copy of a section; the access is logged here
    /// before the section is shown.
    pub async fn get_section(
        &self,
        caller: &Caller,
        dossier: &DossierId,
        section: Section,
    ) -> Result<SectionView> {
        require(caller, &[Role::Caseworker])?;
        self.dossier(dossier)?;
        let record = self
            .own_section(dossier, section)?
            .ok_or_else(|| ServiceError::NotFound(format!("{section} section in {dossier}")))?;
        self.audit(AuditEvent::SectionRead {
            dossier: dossier.clone(),
            section,
            by: caller.name.clone(),
        })
        .await?;
        Ok(SectionView {
            owner: self.me.clone(),
            json: record.json,
            written_at: record.written_at,
            basis: None,
            receipt_leaf: None,
        })
    }
}
