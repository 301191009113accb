//! Finding a person's dossier at this node's desk, and a dossier's page:
//! only what this node holds (the identity typed here, which sections this
//! node wrote, its consents, the référent), never another node's data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::dossiers::{DossierRecord, IDENTITY_SLOT, Identity};
use super::{Caller, Node, Result, ServiceError, require};
use crate::audit::AuditEvent;
use crate::consent::ConsentRecord;
use crate::storage::Tree;
use crate::types::{Date, DossierId, MemberId, Role, Section, fold_for_search as folded};

/// Most dossiers a search lists (the newest first).
pub const MAX_SEARCH_RESULTS: usize = 50;

/// The longest search text taken.
pub const MAX_SEARCH_TEXT: usize = 200;

/// A dossier as a search lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DossierSummary {
    /// The dossier's id.
    pub id: DossierId,
    /// The person's given name, as typed at this desk.
    pub given_name: String,
    /// The person's family name, as typed at this desk.
    pub family_name: String,
    /// The person's birth date.
    pub birth_date: Date,
    /// When this node opened or attached it (Unix seconds).
    pub opened_at: i64,
    /// The member holding it, when this node attached to it.
    pub attached_from: Option<MemberId>,
    /// Whether its parcours ended.
    pub closed: bool,
}

/// A dossier's page: what this node holds of it, no section's content.
#[derive(Clone, Debug)]
pub struct DossierPage {
    /// Who the dossier is about, and where it was opened.
    pub summary: DossierSummary,
    /// The sections this node wrote.
    pub sections: Vec<Section>,
    /// The consents recorded here, in force or not.
    pub consents: Vec<ConsentRecord>,
    /// The référent de parcours, if one is named.
    pub referent: Option<super::Referent>,
}

/// `12/03/1984` as `1984-03-12`.
fn iso_date(word: &str) -> Option<String> {
    match word.split('/').collect::<Vec<_>>()[..] {
        [d, m, y] if d.len() <= 2 && m.len() <= 2 && y.len() == 4 => {
            Some(format!("{y}-{m:0>2}-{d:0>2}"))
        }
        _ => None,
    }
}

/// Whether `summary` answers every word of the search: a word is a birth
/// date (`12/03/1984` or `1984-03-12`), the start of the dossier's id (six
/// characters or more), or names whose every part starts a word of the
/// person's names (accents and case aside).
fn matches(summary: &DossierSummary, words: &[String]) -> bool {
    let names = folded(&format!("{} {}", summary.given_name, summary.family_name));
    let birth = summary.birth_date.to_string();
    let id = summary.id.as_str().to_ascii_lowercase();
    words.iter().all(|w| {
        *w == birth
            || iso_date(w).is_some_and(|iso| iso == birth)
            || (w.len() >= 6 && id.starts_with(w.as_str()))
            || folded(w)
                .split_whitespace()
                .all(|part| names.split_whitespace().any(|n| n.starts_with(part)))
    })
}

impl Node {
    /// The dossiers of this node whose person answers `text` (names, birth
    /// date, the start of the id; every word must answer; two characters at
    /// least), the newest first, at most [`MAX_SEARCH_RESULTS`]. Caseworkers
    /// only. Logged (who searched, how many were found: identities are
    /// shown); each dossier's page is logged when opened.
    pub async fn search_dossiers(
        &self,
        caller: &Caller,
        text: &str,
    ) -> Result<Vec<DossierSummary>> {
        require(caller, &[Role::Caseworker])?;
        let length = text.trim().chars().count();
        if length > MAX_SEARCH_TEXT {
            return Err(ServiceError::Invalid(format!(
                "a search is at most {MAX_SEARCH_TEXT} characters"
            )));
        }
        if length < 2 {
            return Err(ServiceError::Invalid(
                "a search needs at least two characters".into(),
            ));
        }
        let words: Vec<String> = text
            .to_lowercase()
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let mut found = Vec::new();
        for (_, record) in self.store.scan::<DossierRecord>(Tree::Dossiers, "")? {
            if self
                .store
                .get::<i64>(Tree::Erased, record.id.as_str())?
                .is_some()
            {
                continue;
            }
            let summary = self.summary_of(&record)?;
            if matches(&summary, &words) {
                found.push(summary);
            }
        }
        found.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then(a.id.cmp(&b.id)));
        found.truncate(MAX_SEARCH_RESULTS);
        self.audit(AuditEvent::DossiersSearched {
            by: caller.name.clone(),
            found: found.len() as u32,
        })
        .await?;
        Ok(found)
    }

    /// A dossier's page (logged first: the identity is shown).
    pub async fn dossier_page(&self, caller: &Caller, dossier: &DossierId) -> Result<DossierPage> {
        require(caller, &[Role::Caseworker])?;
        let record = self.dossier(dossier)?;
        if self
            .store
            .get::<i64>(Tree::Erased, dossier.as_str())?
            .is_some()
        {
            return Err(ServiceError::NotFound(format!("dossier {dossier}")));
        }
        self.audit(AuditEvent::DossierConsulted {
            dossier: dossier.clone(),
            by: caller.name.clone(),
        })
        .await?;
        Ok(DossierPage {
            summary: self.summary_of(&record)?,
            sections: self.own_sections(dossier)?,
            consents: self.consents_of(dossier)?,
            referent: self.referent(dossier)?,
        })
    }

    /// The identity a record holds, unsealed.
    pub(super) fn summary_of(&self, record: &DossierRecord) -> Result<DossierSummary> {
        let id = &record.id;
        let sealed = B64
            .decode(&record.identity)
            .map_err(|_| ServiceError::Internal(format!("{id}: identity not base64")))?;
        let plain = self
            .vault
            .open_sealed(id.as_str(), IDENTITY_SLOT, &sealed)?;
        let identity: Identity = serde_json::from_slice(&plain)
            .map_err(|e| ServiceError::Internal(format!("{id}: identity: {e}")))?;
        Ok(DossierSummary {
            id: id.clone(),
            given_name: identity.given_name,
            family_name: identity.family_name,
            birth_date: identity.birth_date,
            opened_at: record.opened_at,
            attached_from: record.attached_from.clone(),
            closed: record.closed.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::folded;

    #[test]
    fn names_match_as_people_type_them() {
        assert_eq!(
            folded("Hélène LE BŒUF-D'Aubigné"),
            "helene le boeuf d aubigne"
        );
    }
}
