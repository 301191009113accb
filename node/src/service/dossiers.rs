//! Dossiers and this node's own sections: opening a dossier at the desk,
//! writing and reading this node's copy of a section. Every access is logged
//! at this node before it is answered.

use serde::{Deserialize, Serialize};

use super::{Caller, Node, Result, ServiceError, check_section_json, check_text, require};
use crate::audit::AuditEvent;
use crate::storage::Tree;
use crate::types::{Date, DossierId, MemberId, Role, Section, UserName};

/// Longest name field of a dossier.
pub const MAX_NAME: usize = 100;

/// A dossier as this node keeps it. Names never leave the node, nor reach a log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DossierRecord {
    /// The opaque id that travels between nodes.
    pub id: DossierId,
    /// The person's given name, as typed at this node's desk.
    pub given_name: String,
    /// The person's family name.
    pub family_name: String,
    /// The person's birth date.
    pub birth_date: Date,
    /// The caseworker who opened it.
    pub opened_by: UserName,
    /// When it was opened (Unix seconds).
    pub opened_at: i64,
    /// The member that holds the dossier, when this node attached to it
    /// (the person was received elsewhere first); none where it was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_from: Option<MemberId>,
}

/// A section as read by a caseworker.
#[derive(Clone, Debug)]
pub struct SectionView {
    /// The member that owns this copy.
    pub owner: MemberId,
    /// The JSON object, at most [`super::MAX_SECTION`] bytes.
    pub json: String,
    /// For a shared read, the owner's audit leaf of the access.
    pub receipt_leaf: Option<u64>,
}

fn section_key(dossier: &DossierId, section: Section) -> String {
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
        let record = DossierRecord {
            id: id.clone(),
            given_name: given_name.trim().to_owned(),
            family_name: family_name.trim().to_owned(),
            birth_date,
            opened_by: caller.name.clone(),
            opened_at: now,
            attached_from: None,
        };
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
        let now = self.clock.now();
        let record = DossierRecord {
            id: dossier.clone(),
            given_name: given_name.trim().to_owned(),
            family_name: family_name.trim().to_owned(),
            birth_date,
            opened_by: caller.name.clone(),
            opened_at: now,
            attached_from: Some(from.clone()),
        };
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

    /// Holder side: confirms to an active member that this node holds
    /// `dossier`, and tells nothing else; the confirmation is logged.
    pub async fn confirm_dossier(&self, peer: &MemberId, dossier: &DossierId) -> Result<()> {
        self.active_peer(peer)?;
        self.dossier(dossier)?;
        self.audit(AuditEvent::DossierConfirmed {
            dossier: dossier.clone(),
            to: peer.clone(),
        })
        .await?;
        Ok(())
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
        self.dossier(dossier)?;
        let written = AuditEvent::SectionWritten {
            dossier: dossier.clone(),
            section,
            by: caller.name.clone(),
        };
        self.log_then_apply(self.clock.now(), written, "section_logged", || {
            Ok(self.store.put(
                Tree::Sections,
                &section_key(dossier, section),
                &json.to_owned(),
            )?)
        })
        .await
    }

    /// This node's copy of a section, if it wrote one.
    pub(super) fn own_section(
        &self,
        dossier: &DossierId,
        section: Section,
    ) -> Result<Option<String>> {
        Ok(self
            .store
            .get(Tree::Sections, &section_key(dossier, section))?)
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
        let json = self
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
            json,
            receipt_leaf: None,
        })
    }
}
