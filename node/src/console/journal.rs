//! The auditor's pages: the node's audit log, filtered by dossier, kind of
//! event and day, a page at a time, the newest first.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Champs as _, Console, refused_role, when_fr};
use crate::service::{AuditFilter, ServiceError};
use crate::types::Role;

/// Entries shown per page.
const PAGE: u32 = 50;

/// The French name of each kind of event.
fn kind_fr(kind: &str) -> &'static str {
    match kind {
        "roster_adopted" => "Version du registre adoptée",
        "roster_proposed" => "Modification du registre proposée",
        "roster_approved" => "Modification du registre approuvée",
        "roster_rejected" => "Modification du registre rejetée",
        "roster_refused" => "Version du registre refusée",
        "roster_equivocation" => "Double version du registre détectée",
        "user_created" => "Utilisateur créé",
        "user_token_rotated" => "Jeton d'utilisateur renouvelé",
        "user_role_changed" => "Rôle d'utilisateur changé",
        "user_identity_linked" => "Identité de connexion d'un utilisateur changée",
        "aid_published" => "Aide publiée au recensement",
        "backup_made" => "Sauvegarde faite",
        "console_link_issued" => "Lien de connexion remis",
        "console_login" => "Connexion à la console",
        "console_login_refused" => "Connexion à la console refusée",
        "user_removed" => "Utilisateur retiré",
        "dossier_opened" => "Dossier ouvert",
        "dossier_attached" => "Dossier rattaché",
        "dossier_confirmed" => "Dossier confirmé à un partenaire",
        "referent_set" => "Référent de parcours désigné",
        "referent_noted" => "Référent de parcours noté",
        "freshness_answered" => "Fraîcheur des parties communiquée",
        "dossier_closed" => "Parcours clos",
        "dossier_erased" => "Dossier effacé",
        "witness_alarm" => "Alerte de témoin",
        "section_written" => "Partie écrite",
        "consent_granted" => "Consentement enregistré",
        "consent_shown" => "Récépissé affiché",
        "section_read" => "Partie lue ici",
        "dossier_consulted" => "Fiche du dossier consultée",
        "aids_matched" => "Aides recherchées pour un dossier",
        "orientation_sent" => "Orientation envoyée",
        "orientation_received" => "Orientation reçue",
        "orientation_stepped" => "Orientation : étape",
        "orientations_listed" => "Orientations consultées",
        "commission_convened" => "Commission de coordination réunie",
        "commission_invited" => "Invitation à une commission de coordination",
        "commission_minutes" => "Compte rendu de commission",
        "commissions_listed" => "Commissions consultées",
        "alert_raised" => "Alerte de vigilance émise",
        "alert_received" => "Alerte de vigilance reçue",
        "alert_handled" => "Alerte de vigilance prise en compte ou close",
        "alert_acknowledged" => "Alerte de vigilance : réponse du destinataire",
        "alert_purged" => "Alerte de vigilance purgée",
        "alerts_listed" => "Alertes de vigilance consultées",
        "dossiers_searched" => "Recherche de dossiers",
        "consents_listed" => "Consentements listés",
        "consent_revoked" => "Consentement retiré",
        "group_member_added" => "Partenaire ajouté au groupe chiffré",
        "group_member_removed" => "Partenaire retiré du groupe chiffré",
        "group_rekeyed" => "Groupe chiffré renouvelé",
        "group_joined" => "Groupe chiffré rejoint",
        "read_granted" => "Lecture accordée à un partenaire",
        "break_glass_granted" => "Accès en urgence accordé",
        "break_glass_ended" => "Accès en urgence terminé",
        "break_glass_reviewed" => "Accès en urgence contrôlé",
        "break_glass_notified" => "Accès en urgence signalé",
        "read_denied" => "Lecture refusée",
        "receipt_logged" => "Lecture chez un partenaire",
        _ => "Autre évènement",
    }
}

#[derive(Template)]
#[template(path = "journal.html")]
struct Journal<'a> {
    partner: &'a str,
    version: &'a str,
    genres: Vec<(&'static str, &'static str)>,
    valeurs: &'a HashMap<String, String>,
    erreurs: Vec<(&'static str, String)>,
    lignes: Vec<Ligne>,
    taille: u64,
    suite: Option<String>,
}

impl super::Champs for Journal<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
    fn valeurs(&self) -> Option<&HashMap<String, String>> {
        Some(self.valeurs)
    }
}

/// One entry as the page shows it.
struct Ligne {
    index: u64,
    quand: String,
    genre: &'static str,
    code: String,
    details: Vec<(String, String)>,
}

/// `GET /journal?dossier=…&genre=…&du=…&au=…&avant=…`: the log, filtered.
pub(super) async fn journal(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (_, caller) = match super::session_with(
        &c,
        &headers,
        &[Role::Auditor, Role::Admin],
        "au contrôle et à l'administration",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| query.get(name).map_or("", |v| v.trim());
    let mut erreurs = Vec::new();
    let mut filter = AuditFilter::default();
    if !field("dossier").is_empty() {
        match field("dossier").parse() {
            Ok(d) => filter.dossier = Some(d),
            Err(_) => erreurs.push((
                "dossier",
                "Recopiez une référence de dossier, par exemple DSU-3M93KSGYVQ0DBQKAEBR23DSHBW."
                    .to_owned(),
            )),
        }
    }
    if !field("genre").is_empty() {
        if crate::audit::EVENT_KINDS.contains(&field("genre")) {
            filter.kind = Some(field("genre").to_owned());
        } else {
            erreurs.push((
                "genre",
                "Choisissez un type d'évènement proposé.".to_owned(),
            ));
        }
    }
    for (name, is_start) in [("du", true), ("au", false)] {
        if field(name).is_empty() {
            continue;
        }
        match super::parse_date(field(name)) {
            Some(day) if is_start => filter.since = Some(paris_midnight(day.start_unix())),
            Some(day) => filter.until = Some(paris_midnight(day.end_unix())),
            None => erreurs.push((
                if is_start { "du" } else { "au" },
                "Indiquez une date réelle, par exemple 07/12/2026.".to_owned(),
            )),
        }
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        erreurs.push(("au", "La fin de la période précède son début.".to_owned()));
    }
    let before = field("avant").parse::<u64>().ok();
    let genres = crate::audit::EVENT_KINDS
        .iter()
        .map(|k| (*k, kind_fr(k)))
        .collect();
    let mut page = Journal {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        genres,
        valeurs: &query,
        erreurs: Vec::new(),
        lignes: Vec::new(),
        taille: 0,
        suite: None,
    };
    if !erreurs.is_empty() {
        page.erreurs = erreurs;
        return c.page(StatusCode::UNPROCESSABLE_ENTITY, page.render());
    }
    let found = match c.node.search_audit(&caller, filter, before, PAGE).await {
        Ok(found) => found,
        Err(ServiceError::Role { .. }) => {
            return refused_role(&c, "au contrôle et à l'administration");
        }
        Err(e) => return c.unavailable(&e, "Le journal n'a pas pu être lu"),
    };
    page.taille = found.tree_size;
    page.lignes = found
        .entries
        .into_iter()
        .map(|(index, json)| {
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
            let code = value["event"].as_str().unwrap_or_default().to_owned();
            let details = value
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "time" | "event"))
                        .map(|(k, v)| {
                            let mut shown = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            // Signed receipts and signatures: their start
                            // names them; the CLI prints them whole.
                            if shown.chars().count() > 80 {
                                shown = shown.chars().take(24).collect::<String>() + "…";
                            }
                            (k.replace('_', " "), shown)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ligne {
                index,
                quand: when_fr(value["time"].as_i64().unwrap_or_default()),
                genre: kind_fr(&code),
                code,
                details,
            }
        })
        .collect();
    page.suite = found.next.map(|next| {
        let mut params: Vec<(String, String)> = ["dossier", "genre", "du", "au"]
            .iter()
            .filter(|k| !field(k).is_empty())
            .map(|k| ((*k).to_owned(), field(k).to_owned()))
            .collect();
        params.push(("avant".into(), next.to_string()));
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        format!("/journal?{query}")
    });
    c.page(StatusCode::OK, page.render())
}

/// Midnight in Paris on the day whose UTC midnight is `utc_midnight`: the
/// page shows Paris times, so its days are Paris days.
fn paris_midnight(utc_midnight: i64) -> i64 {
    crate::types::paris(utc_midnight).map_or(utc_midnight, |t| {
        utc_midnight - i64::from(t.offset().whole_seconds())
    })
}

/// A value as a query string carries it.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::paris_midnight;

    #[test]
    fn a_day_of_the_journal_is_a_paris_day() {
        // 8 December 2026 (winter, UTC+1) and 8 July 2026 (summer, UTC+2).
        let winter = 1_796_688_000;
        assert_eq!(paris_midnight(winter), winter - 3600);
        let summer = 1_783_468_800;
        assert_eq!(paris_midnight(summer), summer - 7200);
    }
}
