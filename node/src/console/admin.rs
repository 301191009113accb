//! The admin's pages: the node's users (add, give a login link, change a
//! role or an identity at the identity provider, renew a token, remove)
//! and the node's health (peers, roster, outbox, witness alarms, the log).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Champs as _, Console, form_refused, role_fr, when_fr};
use crate::service::{Caller, ConsoleSession, ServiceError};
use crate::types::{Role, UserName};

#[derive(Template)]
#[template(path = "utilisateurs.html")]
struct Utilisateurs<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    admin: bool,
    moi: &'a str,
    lignes: Vec<(String, &'static str, String)>,
    lien: Option<(String, String, String)>,
    retire: Option<String>,
    nom: &'a str,
    erreurs: Vec<(&'static str, String)>,
}

impl super::Champs for Utilisateurs<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
}

/// What a users page shows after an action.
#[derive(Default)]
struct After {
    lien: Option<(String, String, String)>,
    retire: Option<String>,
    nom: String,
    erreurs: Vec<(&'static str, String)>,
}

fn users_page(
    c: &Console,
    status: StatusCode,
    session: &ConsoleSession,
    caller: &Caller,
    after: After,
) -> Response {
    let users = match c.node.list_users(caller) {
        Ok(u) => u,
        Err(e) => return c.unavailable(&e, "Les utilisateurs n'ont pas pu être lus"),
    };
    let lignes = users
        .into_iter()
        .map(|u| {
            let fin = u
                .expires_at
                .map_or_else(|| "jamais (à renouveler)".to_owned(), when_fr);
            (u.name.to_string(), role_fr(u.role), fin)
        })
        .collect();
    let page = Utilisateurs {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        admin: session.role == Role::Admin,
        moi: session.user.as_str(),
        lignes,
        lien: after.lien,
        retire: after.retire,
        nom: &after.nom,
        erreurs: after.erreurs,
    };
    c.page(status, page.render())
}

/// `GET /utilisateurs`: the node's users (admins act, auditors look).
pub(super) async fn utilisateurs(State(c): State<Console>, headers: HeaderMap) -> Response {
    match super::session_with(
        &c,
        &headers,
        &[Role::Admin, Role::Auditor],
        "à l'administration et au contrôle",
    ) {
        Ok((session, caller)) => {
            users_page(&c, StatusCode::OK, &session, &caller, After::default())
        }
        Err(r) => r,
    }
}

/// The French role a form names.
fn role_of(value: &str) -> Option<Role> {
    match value {
        "travail-social" => Some(Role::Caseworker),
        "controle" => Some(Role::Auditor),
        "administration" => Some(Role::Admin),
        "benevole" => Some(Role::Volunteer),
        _ => None,
    }
}

/// A one-time login link for `name`, as the page shows it.
async fn link_for(
    c: &Console,
    caller: &Caller,
    name: &UserName,
) -> Result<(String, String, String), ServiceError> {
    let (url, until) = c.node.issue_console_link(caller, name).await?;
    Ok((name.to_string(), url, when_fr(until)))
}

/// `POST /utilisateurs`: adds a user (admin) and gives its first login link.
pub(super) async fn ajouter(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(
        &c,
        &form,
        super::session_with(&c, &headers, &[Role::Admin], "à l'administration"),
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let mut after = After {
        nom: field("nom").to_owned(),
        ..After::default()
    };
    let name: Option<UserName> = field("nom").parse().ok();
    if name.is_none() {
        after.erreurs.push((
            "nom",
            "Choisissez un identifiant de 1 à 64 caractères : lettres minuscules, chiffres, tirets ou points.".to_owned(),
        ));
    }
    let role = role_of(field("role"));
    if role.is_none() {
        after
            .erreurs
            .push(("role", "Choisissez un rôle proposé.".to_owned()));
    }
    let (Some(name), Some(role)) = (name, role) else {
        return users_page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session,
            &caller,
            after,
        );
    };
    match c.node.create_user(&caller, name.clone(), role, 0).await {
        Ok(_) => {}
        Err(ServiceError::Exists(_)) => {
            after.erreurs.push((
                "nom",
                "Cet identifiant est déjà pris sur ce nœud.".to_owned(),
            ));
            return users_page(
                &c,
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                &caller,
                after,
            );
        }
        Err(e) => return c.unavailable(&e, "L'utilisateur n'a pas été créé"),
    }
    after.nom.clear();
    match link_for(&c, &caller, &name).await {
        Ok(link) => after.lien = Some(link),
        Err(e) => return c.unavailable(&e, "Le lien de connexion n'a pas été créé"),
    }
    users_page(&c, StatusCode::OK, &session, &caller, after)
}

/// The French page for a user name that names nobody here.
fn unknown_user(c: &Console) -> Response {
    c.error(
        StatusCode::NOT_FOUND,
        "Utilisateur inconnu",
        "Ce nœud n'a pas d'utilisateur de ce nom.",
    )
}

/// `POST /utilisateurs/lien?nom=…`: a new one-time login link (admin).
pub(super) async fn lien(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(
        &c,
        &form,
        super::session_with(&c, &headers, &[Role::Admin], "à l'administration"),
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(name) = query.get("nom").and_then(|n| n.parse::<UserName>().ok()) else {
        return unknown_user(&c);
    };
    match link_for(&c, &caller, &name).await {
        Ok(link) => {
            let after = After {
                lien: Some(link),
                ..After::default()
            };
            users_page(&c, StatusCode::OK, &session, &caller, after)
        }
        Err(ServiceError::NotFound(_)) => unknown_user(&c),
        Err(e) => c.unavailable(&e, "Le lien de connexion n'a pas été créé"),
    }
}

/// `POST /utilisateurs/retrait?nom=…`: removes a user (admin, never oneself).
pub(super) async fn retirer(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller) = match super::with_token(
        &c,
        &form,
        super::session_with(&c, &headers, &[Role::Admin], "à l'administration"),
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(name) = query.get("nom").and_then(|n| n.parse::<UserName>().ok()) else {
        return unknown_user(&c);
    };
    match c.node.remove_user(&caller, &name).await {
        Ok(()) => {
            let after = After {
                retire: Some(name.to_string()),
                ..After::default()
            };
            users_page(&c, StatusCode::OK, &session, &caller, after)
        }
        Err(ServiceError::NotFound(_)) => unknown_user(&c),
        Err(ServiceError::State(_)) => c.error(
            StatusCode::CONFLICT,
            "Action impossible",
            "Un administrateur ne peut pas se retirer lui-même : un autre administrateur le peut.",
        ),
        Err(e) => c.unavailable(&e, "L'utilisateur n'a pas été retiré"),
    }
}

#[derive(Template)]
#[template(path = "utilisateur.html")]
struct Utilisateur<'a> {
    partner: &'a str,
    version: &'a str,
    csrf: &'a str,
    nom: &'a str,
    moi: bool,
    roles: [(&'static str, &'static str); 4],
    role: &'a str,
    identite: &'a str,
    fait: Option<&'static str>,
    jeton: Option<(String, String)>,
    erreurs: Vec<(&'static str, String)>,
}

impl super::Champs for Utilisateur<'_> {
    fn erreurs(&self) -> &[(&'static str, String)] {
        &self.erreurs
    }
}

/// The roles a form offers: (value, French name).
const ROLES: [(&str, &str); 4] = [
    ("travail-social", "Travail social"),
    (
        "benevole",
        "Bénévole ou référent de quartier (alertes seulement)",
    ),
    ("controle", "Contrôle"),
    ("administration", "Administration"),
];

/// The form value of a role.
fn role_value(role: Role) -> &'static str {
    match role {
        Role::Caseworker => "travail-social",
        Role::Auditor => "controle",
        Role::Admin => "administration",
        Role::Volunteer => "benevole",
    }
}

/// What a user's page shows besides the user as stored.
#[derive(Default)]
struct Shown<'a> {
    role: Option<&'a str>,
    identite: Option<&'a str>,
    fait: Option<&'static str>,
    jeton: Option<(String, String)>,
    erreurs: Vec<(&'static str, String)>,
}

/// The admin's page of user `name`: its role and identity, as stored or as
/// typed (`shown`).
fn user_page(
    c: &Console,
    status: StatusCode,
    session: &ConsoleSession,
    caller: &Caller,
    name: &UserName,
    shown: Shown<'_>,
) -> Response {
    let user = match c.node.list_users(caller) {
        Ok(users) => users.into_iter().find(|u| &u.name == name),
        Err(e) => return c.unavailable(&e, "L'utilisateur n'a pas pu être lu"),
    };
    let Some(user) = user else {
        return unknown_user(c);
    };
    let page = Utilisateur {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        csrf: &session.csrf,
        nom: user.name.as_str(),
        moi: &session.user == name,
        roles: ROLES,
        role: shown.role.unwrap_or(role_value(user.role)),
        identite: shown
            .identite
            .unwrap_or(user.identity.as_deref().unwrap_or("")),
        fait: shown.fait,
        jeton: shown.jeton,
        erreurs: shown.erreurs,
    };
    c.page(status, page.render())
}

/// The admin's session and the user a `?nom=` names, or the refusal.
fn admin_and_user(
    c: &Console,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(ConsoleSession, Caller, UserName), Response> {
    let (session, caller) = super::session_with(c, headers, &[Role::Admin], "à l'administration")?;
    let Some(name) = query.get("nom").and_then(|n| n.parse::<UserName>().ok()) else {
        return Err(unknown_user(c));
    };
    Ok((session, caller, name))
}

/// [`admin_and_user`] for a form, which must carry the session's token.
fn admin_form(
    c: &Console,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    form: &HashMap<String, String>,
) -> Result<(ConsoleSession, Caller, UserName), Response> {
    let (session, caller, name) = admin_and_user(c, headers, query)?;
    if !super::csrf_ok(form, &session) {
        return Err(form_refused(c));
    }
    Ok((session, caller, name))
}

/// `GET /utilisateurs/modifier?nom=…`: a user's role and identity (admin).
pub(super) async fn utilisateur(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match admin_and_user(&c, &headers, &query) {
        Ok((session, caller, name)) => user_page(
            &c,
            StatusCode::OK,
            &session,
            &caller,
            &name,
            Shown::default(),
        ),
        Err(r) => r,
    }
}

/// `POST /utilisateurs/modifier?nom=…`: changes a user's role, its identity
/// at the identity provider, or both (admin; never one's own role).
pub(super) async fn modifier(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller, name) = match admin_form(&c, &headers, &query, &form) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let users = match c.node.list_users(&caller) {
        Ok(u) => u,
        Err(e) => return c.unavailable(&e, "L'utilisateur n'a pas pu être lu"),
    };
    let Some(user) = users.into_iter().find(|u| u.name == name) else {
        return unknown_user(&c);
    };
    let typed_role = form.get("role").map(|r| r.trim());
    let typed_identity = form.get("identite").map_or("", |v| v.trim());
    let mut shown = Shown {
        role: typed_role,
        identite: Some(typed_identity),
        ..Shown::default()
    };
    // A disabled field is not sent: one's own role stays as it is.
    let role = match typed_role {
        None => Some(user.role),
        Some(r) => role_of(r),
    };
    let Some(role) = role else {
        shown
            .erreurs
            .push(("role", "Choisissez un rôle proposé.".to_owned()));
        return user_page(
            &c,
            StatusCode::UNPROCESSABLE_ENTITY,
            &session,
            &caller,
            &name,
            shown,
        );
    };
    let identity = Some(typed_identity.to_owned()).filter(|i| !i.is_empty());
    if role == user.role && identity == user.identity {
        shown.fait = Some("Rien n'a changé.");
        return user_page(&c, StatusCode::OK, &session, &caller, &name, shown);
    }
    if role != user.role && session.user == name {
        shown.erreurs.push((
            "role",
            "Un administrateur ne change pas son propre rôle : un autre administrateur le peut."
                .to_owned(),
        ));
        return user_page(&c, StatusCode::CONFLICT, &session, &caller, &name, shown);
    }
    let identity_change = (identity != user.identity).then_some(identity);
    match c
        .node
        .update_user(&caller, &name, Some(role), identity_change)
        .await
    {
        Ok(()) => {}
        Err(ServiceError::Invalid(_)) => {
            shown.erreurs.push((
                "identite",
                "Indiquez l'identité sans espace autour ni caractère de contrôle, en 256 octets au plus.".to_owned(),
            ));
            return user_page(
                &c,
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                &caller,
                &name,
                shown,
            );
        }
        Err(ServiceError::State(_)) => {
            shown.erreurs.push((
                "identite",
                "Cette identité connecte déjà un autre utilisateur : retirez-la-lui d'abord."
                    .to_owned(),
            ));
            return user_page(&c, StatusCode::CONFLICT, &session, &caller, &name, shown);
        }
        Err(ServiceError::NotFound(_)) => return unknown_user(&c),
        Err(e) => return c.unavailable(&e, "La modification n'a pas été enregistrée"),
    }
    let done = Shown {
        fait: Some("Modification enregistrée : elle vaut dès maintenant."),
        ..Shown::default()
    };
    user_page(&c, StatusCode::OK, &session, &caller, &name, done)
}

/// `POST /utilisateurs/jeton?nom=…`: a new token for the command line,
/// shown once (admin); the old one stops working.
pub(super) async fn jeton(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (session, caller, name) = match admin_form(&c, &headers, &query, &form) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.node.rotate_user_token(&caller, &name, 0).await {
        Ok(new) => {
            let shown = Shown {
                jeton: Some((new.token, when_fr(new.expires_at))),
                ..Shown::default()
            };
            user_page(&c, StatusCode::OK, &session, &caller, &name, shown)
        }
        Err(ServiceError::NotFound(_)) => unknown_user(&c),
        Err(e) => c.unavailable(&e, "Le jeton n'a pas été renouvelé"),
    }
}

#[derive(Template)]
#[template(path = "sante.html")]
struct Sante<'a> {
    partner: &'a str,
    version: &'a str,
    status: crate::service::NodeStatus,
    demarre: String,
    journal: &'static str,
    pairs: Vec<(String, &'static str, String)>,
}

/// `GET /sante`: the node's health (admins and auditors).
pub(super) async fn sante(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (_, caller) = match super::session_with(
        &c,
        &headers,
        &[Role::Admin, Role::Auditor],
        "à l'administration et au contrôle",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = match c.node.status(&caller).await {
        Ok(s) => s,
        Err(e) => return c.unavailable(&e, "L'état du nœud n'a pas pu être lu"),
    };
    let journal = match (&status.audit_integrity, status.audit_appending) {
        (_, false) => {
            "refuse toute écriture : prévenez l'équipe informatique (voir deploy/README.md)"
        }
        (crate::audit::Integrity::Checking, _) => "en cours de vérification",
        (crate::audit::Integrity::Verified { .. }, _) => "vérifié",
        (crate::audit::Integrity::Failed(_), _) => "en échec de vérification",
    };
    let version = status.roster_version;
    let pairs = status
        .peers
        .iter()
        .map(|p| {
            let etat = match p.status {
                crate::types::MemberStatus::Active => "actif",
                crate::types::MemberStatus::Suspended => "suspendu",
                crate::types::MemberStatus::Excluded => "exclu",
            };
            let annonce = match p.told {
                None => "pas de nouvelles depuis le démarrage".to_owned(),
                Some((v, at)) if v < version => format!("en retard : v{v}, le {}", when_fr(at)),
                Some((v, at)) => format!("à jour : v{v}, le {}", when_fr(at)),
            };
            (c.member_name(&p.member), etat, annonce)
        })
        .collect();
    let page = Sante {
        partner: &c.partner,
        version: env!("CARGO_PKG_VERSION"),
        demarre: when_fr(status.started_at),
        journal,
        pairs,
        status,
    };
    c.page(StatusCode::OK, page.render())
}
