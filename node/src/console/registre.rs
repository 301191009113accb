//! The roster as the GIP's admins see it: the members and their states,
//! the open proposals with what each changes, in French, and where each
//! stands; an admin approves or rejects one (auditors read only).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::sections::section_fr;
use super::{Console, refused_role, see_other, when_fr};
use crate::roster::RosterChange;
use crate::service::{Caller, ConsoleSession, OfferOutcome, ServiceError};
use crate::types::{MemberKind, MemberStatus, Role};

/// The French name of a kind of member.
fn kind_fr(kind: MemberKind) -> &'static str {
    match kind {
        MemberKind::Departement => "département",
        MemberKind::Ccas => "CCAS",
        MemberKind::Caf => "CAF",
        MemberKind::Cpam => "CPAM",
        MemberKind::Hospital => "hôpital",
        MemberKind::Association => "association",
    }
}

/// The French word for a member's status.
fn status_fr(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Active => "actif",
        MemberStatus::Suspended => "suspendu",
        MemberStatus::Excluded => "exclu",
    }
}

/// What a change does, in French, members named as the roster names them.
fn change_fr(c: &Console, change: &RosterChange) -> String {
    let name = |id: &crate::types::MemberId| c.member_name(id);
    let sections = |s: &[crate::types::Section]| {
        s.iter()
            .map(|s| section_fr(*s).to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match change {
        RosterChange::Admits {
            id,
            kind,
            name,
            endpoint,
            voting,
            status,
        } => format!(
            "admet {name} ({}, identifiant {id}), joignable à {endpoint}, {}, {}",
            kind_fr(*kind),
            if *voting {
                "avec voix délibérative"
            } else {
                "sans voix délibérative"
            },
            status_fr(*status)
        ),
        RosterChange::Status { id, status } => match status {
            MemberStatus::Suspended => format!("suspend {}", name(id)),
            MemberStatus::Excluded => format!("exclut définitivement {}", name(id)),
            MemberStatus::Active => format!("réintègre {}", name(id)),
        },
        RosterChange::Vote { id, voting: true } => format!("donne une voix à {}", name(id)),
        RosterChange::Vote { id, voting: false } => format!("retire sa voix à {}", name(id)),
        RosterChange::Renames { id, from, to } => format!("renomme {id} de « {from} » en « {to} »"),
        RosterChange::Moves { id, from, to } => {
            format!("change l'adresse de {} de {from} à {to}", name(id))
        }
        RosterChange::SigningKey(id) => format!("remplace la clé de signature de {}", name(id)),
        RosterChange::TlsKey(id) => format!("remplace la clé TLS de {}", name(id)),
        RosterChange::Quorum { from, to } => format!("change le quorum de {from} à {to}"),
        RosterChange::MayReceive(kind, s) => format!(
            "charte : un membre de type {} peut désormais recevoir {}",
            kind_fr(*kind),
            sections(s)
        ),
        RosterChange::MayNoLongerReceive(kind, s) => format!(
            "charte : un membre de type {} ne peut plus recevoir {}",
            kind_fr(*kind),
            sections(s)
        ),
        RosterChange::BreakGlass(None) => {
            "charte : plus personne ne peut accéder en urgence".into()
        }
        RosterChange::BreakGlass(Some(rule)) => format!(
            "charte : accès en urgence ouvert aux membres de type {} pour {} h",
            rule.kinds
                .iter()
                .map(|k| kind_fr(*k))
                .collect::<Vec<_>>()
                .join(", "),
            rule.hours
        ),
        RosterChange::Retention(None) => {
            "charte : les dossiers clos sont gardés jusqu'à leur effacement manuel".into()
        }
        RosterChange::Retention(Some(days)) => {
            format!("charte : les dossiers clos sont effacés {days} jours après leur clôture")
        }
        RosterChange::Recorders(kinds) if kinds.is_empty() => {
            "charte : tout membre peut recueillir les consentements pour ses parties".into()
        }
        RosterChange::Recorders(kinds) => format!(
            "charte : seuls les membres de type {} recueillent les consentements",
            kinds
                .iter()
                .map(|k| kind_fr(*k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RosterChange::ReportNamesAgents(true) => {
            "charte : le relevé des accès nomme les agents qui ont lu".into()
        }
        RosterChange::ReportNamesAgents(false) => {
            "charte : le relevé des accès ne nomme que les institutions".into()
        }
        RosterChange::Alerts(None) => "charte : pas d'alertes de vigilance".into(),
        RosterChange::SmallCells(n) => format!(
            "charte : les indicateurs montrent « < {0} » pour un effectif inférieur à {0}",
            n.unwrap_or(crate::roster::DEFAULT_SMALL_CELL)
        ),
        RosterChange::Alerts(Some(rule)) => format!(
            "charte : les alertes de vigilance vont à {}, gardées {} jours",
            rule.recipient, rule.retention_days
        ),
    }
}

#[derive(Template)]
#[template(path = "registre.html")]
struct Registre<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    admin: bool,
    fait: Option<&'static str>,
    numero: u64,
    quorum: String,
    membres: Vec<Membre>,
    propositions: Vec<Proposition>,
}

/// A member as the page lists it.
struct Membre {
    nom: String,
    id: String,
    genre: &'static str,
    statut: &'static str,
    voix: bool,
    adresse: String,
    version_annoncee: String,
}

/// An open proposal as the page lists it.
struct Proposition {
    id: String,
    court: String,
    numero: u64,
    auteur: String,
    vue: String,
    changements: Vec<String>,
    motif: Option<String>,
    signatures: String,
    manquent: String,
    perimee: bool,
    rejetee: Option<String>,
}

/// The session of an admin or auditor, or the page that refuses it.
fn governing(c: &Console, headers: &HeaderMap) -> Result<(ConsoleSession, Caller), Response> {
    super::session_with(
        c,
        headers,
        &[Role::Admin, Role::Auditor],
        "à l'administration et au contrôle",
    )
}

/// `GET /registre`: the members and the open proposals.
pub(super) async fn registre(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match governing(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = c.node.roster_status(&caller);
    let roster = status.roster.roster();
    let membres = roster
        .members
        .iter()
        .map(|m| Membre {
            nom: m.card.name.clone(),
            id: m.card.id.to_string(),
            genre: kind_fr(m.card.kind),
            statut: status_fr(m.status),
            voix: m.voting,
            adresse: m.card.endpoint.clone(),
            version_annoncee: if &m.card.id == c.node.member() {
                "ce nœud".into()
            } else {
                status
                    .peers
                    .get(&m.card.id)
                    .map_or_else(|| "pas encore".into(), |(v, _)| format!("v{v}"))
            },
        })
        .collect();
    let views = match c.node.list_proposals(&caller) {
        Ok(v) => v,
        Err(e) => return c.unavailable(&e, "Le registre n'a pas pu être lu"),
    };
    let propositions = views
        .into_iter()
        .map(|v| {
            let candidate = &v.proposal.signed.roster;
            let mut changements: Vec<String> = crate::roster::roster_changes(roster, candidate)
                .iter()
                .map(|ch| change_fr(&c, ch))
                .collect();
            if changements.is_empty() {
                changements.push("ne change que le numéro de version".into());
            }
            let (signatures, manquent) = match &v.tally {
                Some(t) => (
                    format!("{} sur {} requises", t.outgoing.have, t.outgoing.need),
                    t.outgoing
                        .missing
                        .iter()
                        .chain(&t.unproven)
                        .map(|m| c.member_name(m))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => (String::new(), String::new()),
            };
            Proposition {
                court: v.id.chars().take(12).collect(),
                id: v.id,
                numero: candidate.version,
                auteur: c.member_name(&v.proposal.proposer),
                vue: when_fr(v.proposal.seen_at),
                changements,
                motif: candidate.reason.clone(),
                signatures,
                manquent,
                perimee: v.tally.is_none(),
                rejetee: v
                    .proposal
                    .rejected
                    .map(|(who, why)| format!("{who} : « {why} »")),
            }
        })
        .collect();
    let fait = match query.get("fait").map(String::as_str) {
        Some("adoptee") => {
            Some("La modification est adoptée : elle est en vigueur et envoyée à chaque membre.")
        }
        Some("approuvee") => {
            Some("Votre approbation est enregistrée : il manque encore des signatures.")
        }
        Some("rejetee") => Some("Votre refus est enregistré et envoyé dans le journal."),
        _ => None,
    };
    let page = Registre {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        admin: session.role == Role::Admin,
        fait,
        numero: roster.version,
        quorum: roster.quorum.to_string(),
        membres,
        propositions,
    };
    c.page(StatusCode::OK, page.render())
}

/// The French page for a governance refusal.
fn governance_refused(c: &Console, e: &ServiceError) -> Response {
    match e {
        ServiceError::NotFound(_) => c.error(
            StatusCode::NOT_FOUND,
            "Proposition introuvable",
            "Aucune proposition ouverte ne porte cet identifiant : elle a peut-être déjà été adoptée.",
        ),
        ServiceError::Role { .. } => refused_role(c, "à l'administration"),
        ServiceError::Invalid(_) => c.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Motif requis",
            "Indiquez en une ligne pourquoi vous refusez cette proposition.",
        ),
        ServiceError::Roster(_) | ServiceError::State(_) => c.error(
            StatusCode::CONFLICT,
            "Proposition dépassée",
            "Cette proposition ne suit plus la version en vigueur du registre : elle ne peut plus être adoptée.",
        ),
        e => c.unavailable(e, "L'action n'a pas abouti"),
    }
}

/// `POST /registre/propositions/{id}/approuver`: this member signs (admin).
pub(super) async fn approuver(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::with_token(&c, &form, governing(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.node.approve(&caller, &id, None).await {
        Ok((_, OfferOutcome::Adopted)) => see_other("/registre?fait=adoptee"),
        Ok(_) => see_other("/registre?fait=approuvee"),
        Err(e) => governance_refused(&c, &e),
    }
}

/// `POST /registre/propositions/{id}/rejeter`: this member declines (admin).
pub(super) async fn rejeter(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::with_token(&c, &form, governing(&c, &headers)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = form.get("motif").map_or("", |m| m.trim());
    match c.node.reject(&caller, &id, reason).await {
        Ok(_) => see_other("/registre?fait=rejetee"),
        Err(e) => governance_refused(&c, &e),
    }
}
