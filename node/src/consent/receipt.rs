//! The consent receipt handed to the person: the record's fields under the
//! names ISO/IEC TS 27560 (consent record) and the Kantara Consent Receipt
//! give them, the owner's signature so that anyone can check it, and a
//! French page for the person. Pure: the roster and the time are passed in.

use base64::Engine as _;
use serde::Serialize;

use super::{Collection, ConsentRecord, ConsentStatus, LegalBasis};
use crate::roster::Roster;
use crate::types::{MemberId, Section};

/// The receipt's format, named in every receipt.
pub const RECEIPT_SCHEMA: &str = "maillon/consent-receipt/v1";

/// A party named by the receipt: its member id and display name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Party {
    /// The member id.
    pub member: String,
    /// Its display name in the roster.
    pub name: String,
}

/// The legal ground, as the receipt states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Basis {
    /// `consent` or `legal_mission`.
    pub kind: &'static str,
    /// For a legal mission, the provision of law.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision: Option<String>,
}

/// How the person gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionMethod {
    /// `signed_form`, `oral` or `informed`.
    pub method: &'static str,
    /// The signed form's reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Who witnessed an oral consent, or informed the person.
    pub witness: String,
}

/// Who recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedBy {
    /// The member where it was recorded (the controller).
    pub member: String,
    /// The caseworker's user name there.
    pub user: String,
}

/// One event of the record's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `given`, `withdrawn` or `expired`.
    pub event: &'static str,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who recorded it, for `given` and `withdrawn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The owner's signature over the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptSignature {
    /// Always `ed25519`.
    pub algorithm: &'static str,
    /// The domain-separation context, `maillon/v1/consent`.
    pub context: &'static str,
    /// The owner's public key (base64).
    pub key: String,
    /// The signed bytes (base64 of the record's JSON).
    pub signed: String,
    /// The signature (base64).
    pub value: String,
}

/// The receipt, as JSON for machines and the person's own records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentReceipt {
    /// [`RECEIPT_SCHEMA`].
    pub schema: &'static str,
    /// Always `FR`.
    pub jurisdiction: &'static str,
    /// Always `fr`.
    pub language: &'static str,
    /// The consent's id (`CNS-…`).
    pub record_id: String,
    /// The person, by the opaque dossier id only.
    pub pii_principal_id: String,
    /// The member that holds the sections and recorded the decision.
    pub controller: Party,
    /// Who recorded it.
    pub recorded_by: RecordedBy,
    /// The members that may read.
    pub recipients: Vec<Party>,
    /// The sections shared, as PII categories.
    pub pii_categories: Vec<String>,
    /// The sections masked from every member, break-glass included.
    pub masked_categories: Vec<String>,
    /// Why.
    pub purpose: String,
    /// The legal ground.
    pub legal_basis: Basis,
    /// How it was given.
    pub collection_method: CollectionMethod,
    /// First day it holds.
    pub valid_from: String,
    /// Last day it holds.
    pub valid_until: String,
    /// When it was recorded (RFC 3339, UTC).
    pub consent_timestamp: String,
    /// `active`, `pending`, `expired` or `withdrawn`, at the time the receipt was made.
    pub status: &'static str,
    /// Given, withdrawn, expired.
    pub events: Vec<Event>,
    /// The owner's signature.
    pub signature: ReceiptSignature,
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn party(roster: &Roster, id: &MemberId) -> Party {
    Party {
        member: id.to_string(),
        name: roster
            .member(id)
            .map(|m| m.card.name.clone())
            .unwrap_or_else(|| id.to_string()),
    }
}

fn names(sections: &std::collections::BTreeSet<Section>) -> Vec<String> {
    sections.iter().map(|s| s.to_string()).collect()
}

impl ConsentReceipt {
    /// The receipt of `record` as it stands at `now`; `key` is the owner's
    /// public signing key.
    pub fn new(
        record: &ConsentRecord,
        roster: &Roster,
        key: &crate::crypto::PublicKey,
        now: i64,
    ) -> Self {
        let c = &record.consent;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut events = vec![Event {
            event: "given",
            time: rfc3339(c.granted_at),
            by: Some(c.granted_by.to_string()),
        }];
        let status = match record.status(now) {
            ConsentStatus::Active => "active",
            ConsentStatus::Pending => "pending",
            ConsentStatus::Expired => "expired",
            ConsentStatus::Revoked => "withdrawn",
        };
        if let Some(at) = record.revoked_at {
            events.push(Event {
                event: "withdrawn",
                time: rfc3339(at),
                by: record.revoked_by.as_ref().map(|u| u.to_string()),
            });
        } else if record.status(now) == ConsentStatus::Expired {
            events.push(Event {
                event: "expired",
                time: rfc3339(c.until.end_unix()),
                by: None,
            });
        }
        let (kind, provision) = match &c.basis {
            LegalBasis::Consent => ("consent", None),
            LegalBasis::LegalMission { provision } => ("legal_mission", Some(provision.clone())),
        };
        Self {
            schema: RECEIPT_SCHEMA,
            jurisdiction: "FR",
            language: "fr",
            record_id: c.id.to_string(),
            pii_principal_id: c.dossier.to_string(),
            controller: party(roster, &c.owner),
            recorded_by: RecordedBy {
                member: c.owner.to_string(),
                user: c.granted_by.to_string(),
            },
            recipients: c.audience.iter().map(|m| party(roster, m)).collect(),
            pii_categories: names(&c.sections),
            masked_categories: names(&c.masked),
            purpose: c.purpose.clone(),
            legal_basis: Basis { kind, provision },
            collection_method: CollectionMethod {
                method: c.collection.as_str(),
                reference: match &c.collection {
                    Collection::SignedForm { reference } => Some(reference.clone()),
                    _ => None,
                },
                witness: c.granted_by.to_string(),
            },
            valid_from: c.valid_from.to_string(),
            valid_until: c.until.to_string(),
            consent_timestamp: rfc3339(c.granted_at),
            status,
            events,
            signature: ReceiptSignature {
                algorithm: "ed25519",
                context: "maillon/v1/consent",
                key: b64(&key.to_bytes()),
                signed: b64(&record.signed_bytes()),
                value: b64(&record.signature.to_bytes()),
            },
        }
    }

    /// The receipt as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The one-page French text handed to the person.
    pub fn to_french(&self) -> String {
        let date = crate::types::french_date;
        // Told in the person's time zone, Europe/Paris.
        let when = |t: &str| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|u| crate::types::french_time(u.unix_timestamp()))
                .unwrap_or_else(|| t.to_owned())
        };
        let sections = |v: &[String]| {
            v.iter()
                .map(|s| {
                    s.parse::<Section>()
                        .map(section_fr)
                        .unwrap_or(s.as_str())
                        .to_owned()
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let recipients = self
            .recipients
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = vec![
            "Récépissé de consentement".to_owned(),
            format!("Référence : {}", self.record_id),
            format!("Dossier : {}", self.pii_principal_id),
            format!(
                "Responsable du traitement : {} ({})",
                self.controller.name, self.controller.member
            ),
            String::new(),
        ];
        if !self.pii_categories.is_empty() {
            out.push(format!(
                "Informations partagées : {}",
                sections(&self.pii_categories)
            ));
            out.push(format!("Avec : {recipients}"));
        }
        if !self.masked_categories.is_empty() {
            out.push(format!(
                "Informations masquées à tous les partenaires, y compris en urgence : {}",
                sections(&self.masked_categories)
            ));
        }
        out.push(format!("Finalité : {}", self.purpose));
        out.push(match &self.legal_basis.provision {
            None => "Base légale : votre consentement.".into(),
            Some(p) => format!(
                "Base légale : mission prévue par la loi ({p}) ; vous en avez été informé(e)."
            ),
        });
        out.push(
            match (
                self.collection_method.method,
                &self.collection_method.reference,
            ) {
                ("signed_form", Some(r)) => {
                    format!("Recueilli : par formulaire signé, référence {r}.")
                }
                ("oral", _) => format!(
                    "Recueilli : oralement, en présence de l'agent « {} ».",
                    self.collection_method.witness
                ),
                _ => format!(
                    "Information donnée par l'agent « {} ».",
                    self.collection_method.witness
                ),
            },
        );
        out.push(format!(
            "Valable du {} au {} inclus.",
            date(&self.valid_from),
            date(&self.valid_until)
        ));
        out.push(String::new());
        out.push("Historique :".into());
        for e in &self.events {
            let what = match e.event {
                "given" => "enregistré",
                "withdrawn" => "retiré",
                _ => "arrivé à échéance",
            };
            let by =
                e.by.as_ref()
                    .map(|b| format!(" par l'agent « {b} »"))
                    .unwrap_or_default();
            out.push(format!("- {} : {what}{by}", when(&e.time)));
        }
        out.push(String::new());
        out.push(
            "Vous pouvez retirer ce consentement à tout moment auprès de l'accueil qui l'a \
             enregistré ; le retrait vaut pour l'avenir. Vous pouvez demander qui a consulté \
             votre dossier : chaque accès est inscrit dans un journal vérifiable."
                .into(),
        );
        out.push(format!(
            "Signature électronique du responsable (ed25519) : {}",
            self.signature.value
        ));
        out.join("\n")
    }
}

pub use crate::types::section_fr;
