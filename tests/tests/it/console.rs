//! The web console over HTTPS on a real node: French pages, the security
//! headers every answer carries, the stylesheet, French error pages.

use std::sync::Arc;

use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTPS/1.1 request to the console of `c`'s `id`, its certificate
/// checked against the pin of the member's admin profile: the status, the
/// headers (lower-case names) and the body.
async fn https(
    c: &Cluster,
    id: &str,
    method: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    send(c, id, method, path, None, None).await
}

/// [`https`] with a session cookie and a form body.
pub(crate) async fn send(
    c: &Cluster,
    id: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let addr = c
        .running(id)
        .node()
        .listening()
        .and_then(|l| l.console)
        .expect("console served");
    let pin = c.node(id).admin.server_spki_sha256;
    let mut config = maillon_node::crypto::pinned_client_config(pin).expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("console.maillon").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the pinned handshake");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_console_serves_french_pages_with_a_strict_policy_and_no_script() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;

    let (status, headers, body) = https(&c, "caf12", "GET", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"<html lang="fr">"#));
    // Text from the roster is escaped.
    assert!(body.contains("Console de CAF de l&#39;Aveyron"), "{body}");
    assert!(body.contains(r##"href="#contenu""##), "a skip link");
    assert!(!body.contains("<script"), "no script");
    assert_eq!(
        header(&headers, "content-security-policy"),
        Some(maillon_node::console::CONTENT_SECURITY_POLICY)
    );
    assert!(
        header(&headers, "strict-transport-security").is_some_and(|v| v.starts_with("max-age="))
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/html")));

    let (status, headers, css) = https(&c, "caf12", "GET", "/static/maillon.css").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/css")));
    assert!(css.contains(":focus"), "a visible focus");

    let (status, headers, body) = https(&c, "caf12", "GET", "/pas/une/page").await;
    assert_eq!(status, 404);
    assert!(body.contains("Page introuvable"), "{body}");
    assert!(header(&headers, "content-security-policy").is_some());
    let (status, _, _) = https(&c, "caf12", "POST", "/").await;
    assert_eq!(status, 405);

    // Off unless configured.
    assert!(
        c.running("ccas-rodez")
            .node()
            .listening()
            .and_then(|l| l.console)
            .is_none()
    );
}

/// The session cookie a response sets (`name=value`).
fn session_cookie(headers: &[(String, String)]) -> String {
    let set = header(headers, "set-cookie").expect("a cookie");
    set.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn a_one_time_link_opens_a_session_once_and_a_form_without_its_token_is_refused() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;
    let _agent = c.user("caf12", "agent-console", Role::Caseworker).await;
    let link = c.console_link("caf12", "agent-console").await;

    // The link's page asks for a click; nothing is spent by reading it.
    let (status, _, body) = https(&c, "caf12", "GET", &link).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"method="post""#) && body.contains("Se connecter"),
        "{body}"
    );
    let (status, headers, _) = https(&c, "caf12", "POST", &link).await;
    assert_eq!(status, 303);
    let set = header(&headers, "set-cookie").expect("a session cookie");
    for attribute in [
        "__Host-maillon=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let cookie = session_cookie(&headers);
    let (_, _, home) = send(&c, "caf12", "GET", "/", Some(&cookie), None).await;
    assert!(
        home.contains("Bonjour agent-console (travail social)"),
        "{home}"
    );

    // Once only.
    let (status, _, body) = https(&c, "caf12", "POST", &link).await;
    assert_eq!(status, 401);
    assert!(body.contains("Lien de connexion refusé"), "{body}");

    // A form without the session's token, or with another, is refused.
    let (status, _, body) =
        send(&c, "caf12", "POST", "/deconnexion", Some(&cookie), Some("")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Formulaire refusé"));
    let (status, _, _) = send(
        &c,
        "caf12",
        "POST",
        "/deconnexion",
        Some(&cookie),
        Some("csrf=autre"),
    )
    .await;
    assert_eq!(status, 403);
    let csrf = home
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token");
    let (status, headers, _) = send(
        &c,
        "caf12",
        "POST",
        "/deconnexion",
        Some(&cookie),
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, 303);
    assert!(header(&headers, "set-cookie").is_some_and(|v| v.contains("Max-Age=0")));
    let (_, _, home) = send(&c, "caf12", "GET", "/", Some(&cookie), None).await;
    assert!(!home.contains("Bonjour"), "the session ended");

    // Every step is in the log; the link itself is not.
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let entries = maillon_tests::audit_entries(&auditor).await;
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in [
        "console_link_issued",
        "console_login",
        "console_login_refused",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let secret = link.rsplit('/').next().expect("secret");
    assert!(
        !serde_json::to_string(&entries)
            .expect("json")
            .contains(secret)
    );
}

#[tokio::test]
async fn links_and_sessions_end_on_time_and_only_an_admin_gives_links() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;
    let agent = c.user("caf12", "agent-console", Role::Caseworker).await;
    // A caseworker gives no link.
    let (code, reason) = maillon_tests::refusal(
        agent
            .api()
            .issue_console_link(agent.req(pb::IssueConsoleLinkRequest {
                name: "agent-console".into(),
            }))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (tonic::Code::PermissionDenied, "role")
    );
    // Nor for a user that does not exist.
    let admin = c.node("caf12").admin().expect("admin");
    let (code, _) = maillon_tests::refusal(
        admin
            .api()
            .issue_console_link(admin.req(pb::IssueConsoleLinkRequest {
                name: "personne".into(),
            }))
            .await,
    );
    assert_eq!(code, tonic::Code::NotFound);

    // A link past its 15 minutes is refused.
    let late = c.console_link("caf12", "agent-console").await;
    c.clock.advance(16 * 60);
    let (status, _, _) = https(&c, "caf12", "POST", &late).await;
    assert_eq!(status, 401);

    // A session idle for 30 minutes ends.
    let link = c.console_link("caf12", "agent-console").await;
    let (_, headers, _) = https(&c, "caf12", "POST", &link).await;
    let cookie = session_cookie(&headers);
    let (_, _, home) = send(&c, "caf12", "GET", "/", Some(&cookie), None).await;
    assert!(home.contains("Bonjour"));
    c.clock.advance(31 * 60);
    let (_, _, home) = send(&c, "caf12", "GET", "/", Some(&cookie), None).await;
    assert!(!home.contains("Bonjour"), "idle too long");

    // Too many refused logins from one place: told to wait.
    let mut last = 0;
    for i in 0..12 {
        last = https(&c, "caf12", "POST", &format!("/connexion/faux{i}"))
            .await
            .0;
    }
    assert_eq!(last, 429);
}

/// A session of `user` (made with `role`) at `id`'s console: its cookie and
/// its forms' token.
pub(crate) async fn logged_in(c: &Cluster, id: &str, user: &str, role: Role) -> (String, String) {
    let _ = c.user(id, user, role).await;
    let link = c.console_link(id, user).await;
    let (_, headers, _) = https(c, id, "POST", &link).await;
    let cookie = session_cookie(&headers);
    let (_, _, home) = send(c, id, "GET", "/", Some(&cookie), None).await;
    let csrf = home
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn a_caseworker_opens_a_dossier_at_the_desk_and_every_refusal_is_in_french() {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    let id = "ccas-rodez";
    // Not logged in.
    let (status, _, body) = https(&c, id, "GET", "/dossiers/ouvrir").await;
    assert_eq!(status, 401);
    assert!(body.contains("Connexion requise"), "{body}");

    let (cookie, csrf) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    let (status, _, form) = send(&c, id, "GET", "/dossiers/ouvrir", Some(&cookie), None).await;
    assert_eq!(status, 200);
    for label in [
        r#"<label for="prenom">"#,
        r#"<label for="nom">"#,
        r#"<label for="naissance">"#,
    ] {
        assert!(form.contains(label), "{label}");
    }
    // Errors beside their fields, what was typed kept.
    let (status, _, page) = send(
        &c,
        id,
        "POST",
        "/dossiers/ouvrir",
        Some(&cookie),
        Some(&format!(
            "csrf={csrf}&prenom=Camille&nom=&naissance=31%2F02%2F1984"
        )),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        page.contains(r#"id="nom-erreur""#) && page.contains(r#"id="naissance-erreur""#),
        "{page}"
    );
    assert!(!page.contains(r#"id="prenom-erreur""#));
    assert!(page.contains(r#"value="Camille""#));
    // Without the form's token.
    let (status, _, _) = send(
        &c,
        id,
        "POST",
        "/dossiers/ouvrir",
        Some(&cookie),
        Some("prenom=Camille&nom=Martin&naissance=12%2F03%2F1984"),
    )
    .await;
    assert_eq!(status, 403);
    // Opened, as the CLI would: the dossier is there for the caseworker's own calls.
    let (status, _, page) = send(
        &c,
        id,
        "POST",
        "/dossiers/ouvrir",
        Some(&cookie),
        Some(&format!(
            "csrf={csrf}&prenom=Camille&nom=Martin&naissance=12%2F03%2F1984"
        )),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let dossier = page
        .split(r#"class="reference">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the reference")
        .to_owned();
    assert!(dossier.starts_with("DSU-"), "{dossier}");
    let desk = c.desk(id, "agent-cli").await;
    desk.put(&dossier, "housing", maillon_tests::HOUSING)
        .await
        .expect("the dossier exists at the node");
    let auditor = c.user(id, "dpo", Role::Auditor).await;
    let entries = maillon_tests::audit_entries(&auditor).await;
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "dossier_opened" && e["by"] == "agent-accueil"),
        "the opening is logged under the console user"
    );

    // An auditor may not open dossiers: told so in French.
    let (cookie, _) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    let (status, _, body) = send(&c, id, "GET", "/dossiers/ouvrir", Some(&cookie), None).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("Accès réservé") && body.contains("travailleurs sociaux"),
        "{body}"
    );
}

#[tokio::test]
async fn a_node_without_a_console_gives_no_link_and_says_so_only_to_an_admin() {
    let c = Cluster::start().await;
    let _ = c.user("caf12", "agent-console", Role::Caseworker).await;
    let admin = c.node("caf12").admin().expect("admin");
    let (code, reason) = maillon_tests::refusal(
        admin
            .api()
            .issue_console_link(admin.req(pb::IssueConsoleLinkRequest {
                name: "agent-console".into(),
            }))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (tonic::Code::FailedPrecondition, "state")
    );
    // A caseworker learns nothing of the node's configuration.
    let agent = c.user("caf12", "agent-2", Role::Caseworker).await;
    let (code, reason) = maillon_tests::refusal(
        agent
            .api()
            .issue_console_link(agent.req(pb::IssueConsoleLinkRequest {
                name: "agent-console".into(),
            }))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (tonic::Code::PermissionDenied, "role")
    );
    // Nothing was logged as given.
    let auditor = c.user("caf12", "dpo", Role::Auditor).await;
    let entries = maillon_tests::audit_entries(&auditor).await;
    assert!(!entries.iter().any(|e| e["event"] == "console_link_issued"));
}

/// `s` as a form value.
pub(crate) fn form_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[tokio::test]
async fn a_caseworker_finds_writes_shares_and_withdraws_through_the_console_and_the_partner_reads_it()
 {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let ccas = "ccas-rodez";
    let (cookie, csrf) = logged_in(&c, ccas, "agent-accueil", Role::Caseworker).await;
    let post = |path: String, body: String| {
        let (c, cookie) = (&c, cookie.clone());
        async move { send(c, ccas, "POST", &path, Some(&cookie), Some(&body)).await }
    };
    let get = |path: String| {
        let (c, cookie) = (&c, cookie.clone());
        async move { send(c, ccas, "GET", &path, Some(&cookie), None).await }
    };
    let (status, _, page) = post(
        "/dossiers/ouvrir".into(),
        format!("csrf={csrf}&prenom=H%C3%A9l%C3%A8ne&nom=Martin&naissance=12%2F03%2F1984"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let d = page
        .split(r#"class="reference">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the reference")
        .to_owned();

    // Search (sent in the body): accents and case do not matter; a birth
    // date as typed at the desk or as ISO; the start of the reference.
    let (status, _, form) = get("/dossiers".into()).await;
    assert_eq!(status, 200);
    assert!(
        form.contains(r#"<form method="post" action="/dossiers""#),
        "{form}"
    );
    let prefix = d[..10].to_lowercase();
    for q in [
        "helene",
        "MARTIN+h%C3%A9l",
        "12%2F03%2F1984",
        "1984-03-12",
        prefix.as_str(),
    ] {
        let (status, _, page) = post("/dossiers".into(), format!("csrf={csrf}&q={q}")).await;
        assert_eq!(status, 200);
        assert!(
            page.contains(&format!(r#"href="/dossiers/{d}""#)),
            "{q}: {page}"
        );
    }
    let (_, _, page) = post("/dossiers".into(), format!("csrf={csrf}&q=dupont")).await;
    assert!(page.contains("Aucun dossier ne correspond"), "{page}");
    for q in ["a".repeat(201), "h".into(), String::new()] {
        let (status, _, page) = post("/dossiers".into(), format!("csrf={csrf}&q={q}")).await;
        assert_eq!(status, 422, "{q}");
        assert!(page.contains(r#"id="q-erreur""#));
    }
    let (status, _, _) = post("/dossiers".into(), "q=helene".into()).await;
    assert_eq!(status, 403, "no form token");

    // The dossier's page is logged under the console user.
    let (status, _, page) = get(format!("/dossiers/{d}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Dossier de Hélène Martin"), "{page}");
    let auditor = c.user(ccas, "dpo", Role::Auditor).await;
    let consulted = maillon_tests::audit_events(&auditor, "dossier_consulted").await;
    assert_eq!(consulted.len(), 1);
    assert_eq!(consulted[0]["by"], "agent-accueil");
    // Searches are logged, without their words.
    let searched = maillon_tests::audit_events(&auditor, "dossiers_searched").await;
    assert_eq!(searched.len(), 6, "the searches that ran: {searched:?}");
    assert!(
        searched
            .iter()
            .all(|e| e["by"] == "agent-accueil" && !e.to_string().contains("helene"))
    );

    // A section's form: each bad field is told beside itself, nothing written.
    let housing = format!("/dossiers/{d}/sections/housing");
    let (status, _, form) = get(housing.clone()).await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"<label for="loyer">"#) && form.contains(r#"<select id="situation""#));
    let (status, _, page) = post(
        housing.clone(),
        format!("csrf={csrf}&situation=ch%C3%A2teau&loyer=beaucoup&demande_logement_social=oui"),
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains(r#"id="situation-erreur""#) && page.contains(r#"id="loyer-erreur""#));
    assert!(!page.contains(r#"id="demande_logement_social-erreur""#));
    assert!(
        page.contains(r#"value="beaucoup""#),
        "what was typed is kept"
    );
    let desk = c.desk(ccas, "agent-cli").await;
    assert!(desk.get(&d, "housing").await.is_err(), "nothing written");
    let (status, headers, _) = post(
        housing.clone(),
        format!(
            "csrf={csrf}&situation=h%C3%A9berg%C3%A9e+chez+un+tiers&loyer=412%2C50&demande_logement_social=oui"
        ),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/dossiers/{d}?ecrit=housing").as_str())
    );
    let written: serde_json::Value =
        serde_json::from_str(&desk.get(&d, "housing").await.expect("written")).expect("json");
    assert_eq!(
        written,
        serde_json::json!({"situation": "hébergée chez un tiers", "loyer": 412.5, "demande_logement_social": true})
    );
    // Without the form's token, nothing is written.
    let (status, _, _) = post(housing.clone(), "situation=sans+domicile".into()).await;
    assert_eq!(status, 403);

    // The consent form: what is missing is told beside its field.
    let (status, _, form) = get(format!("/dossiers/{d}/consentements/nouveau")).await;
    assert_eq!(status, 200);
    assert!(
        form.contains(r#"value="caf12""#),
        "the partners are offered"
    );
    let (status, _, page) = post(
        format!("/dossiers/{d}/consentements"),
        format!("csrf={csrf}&partage=housing&masque=housing&motif=&recueil=informee&jusqu_au=01%2F01%2F2000"),
    )
    .await;
    assert_eq!(status, 422);
    for field in ["destinataire", "masque", "motif", "recueil", "jusqu_au"] {
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{field}: {page}"
        );
    }
    let until = maillon_tests::next_year(&c.clock);
    let (y, m, day) = (&until[0..4], &until[5..7], &until[8..10]);
    let (status, headers, _) = post(
        format!("/dossiers/{d}/consentements"),
        format!(
            "csrf={csrf}&partage=housing&destinataire=caf12&motif={}&fondement=consentement&recueil=oral&jusqu_au={day}%2F{m}%2F{y}",
            form_value("instruction de la demande de logement")
        ),
    )
    .await;
    assert_eq!(status, 303);
    let receipt = header(&headers, "location")
        .expect("the receipt")
        .to_owned();
    let (status, _, page) = get(receipt.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Récépissé de consentement"), "{page}");
    assert!(page.contains("CAF de l&#39;Aveyron"), "{page}");
    assert!(page.contains("Retirer ce consentement"));
    // Named under another dossier, the consent is not found: nothing is
    // shown, logged or withdrawn.
    let other = desk.open().await.expect("another dossier");
    let consent_id = receipt.rsplit('/').next().expect("id").to_owned();
    let shown_before = maillon_tests::audit_events(&auditor, "consent_shown")
        .await
        .len();
    let (status, _, _) = get(format!("/dossiers/{other}/consentements/{consent_id}")).await;
    assert_eq!(status, 404);
    let (status, _, _) = post(
        format!("/dossiers/{other}/consentements/{consent_id}/retrait"),
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        maillon_tests::audit_events(&auditor, "consent_shown")
            .await
            .len(),
        shown_before
    );
    assert!(
        maillon_tests::audit_events(&auditor, "consent_revoked")
            .await
            .is_empty()
    );

    // The CAF's caseworker, at its own console, reads it in the unified view.
    let caf_cli = c.desk("caf12", "agent-caf-cli").await;
    caf_cli
        .conn
        .attach_dossier(&d, ccas, ("Hélène", "Martin", "1984-03-12"))
        .await
        .expect("attached");
    let (caf_cookie, caf_csrf) = logged_in(&c, "caf12", "agent-caf", Role::Caseworker).await;
    let view = |purpose: &'static str| {
        let (c, cookie, csrf, d) = (&c, caf_cookie.clone(), caf_csrf.clone(), d.clone());
        async move {
            send(
                c,
                "caf12",
                "POST",
                &format!("/dossiers/{d}/vue"),
                Some(&cookie),
                Some(&format!("csrf={csrf}&motif={}", form_value(purpose))),
            )
            .await
        }
    };
    let (status, _, page) = view("ouverture des droits au logement").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Logement — CCAS de Rodez"), "{page}");
    assert!(
        page.contains("hébergée chez un tiers") && page.contains("412,5"),
        "{page}"
    );
    assert!(page.contains("lue au titre du consentement CNS-"), "{page}");
    let (status, _, page) = view("").await;
    assert_eq!(status, 422);
    assert!(page.contains("Motif requis"));

    // Withdrawn at the CCAS: the receipt says so and the CAF's view is refused.
    let consent = receipt.rsplit('/').next().expect("id").to_owned();
    let (status, _, _) = post(format!("{receipt}/retrait"), "csrf=autre".into()).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(format!("{receipt}/retrait"), format!("csrf={csrf}")).await;
    assert_eq!(status, 303);
    let (_, _, page) = get(receipt.clone()).await;
    assert!(
        page.contains("a été retiré") && !page.contains("Retirer ce consentement"),
        "{page}"
    );
    let (_, _, page) = get(format!("/dossiers/{d}")).await;
    assert!(page.contains(&consent) && page.contains("retiré"), "{page}");
    let (status, _, page) = view("ouverture des droits au logement").await;
    assert_eq!(status, 200);
    assert!(page.contains("Non lue"), "{page}");
    assert!(!page.contains("412,5"), "{page}");
}

#[tokio::test]
async fn the_dossier_pages_refuse_in_french_without_a_session_a_role_or_a_real_path() {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    let id = "ccas-rodez";
    let desk = c.desk(id, "agent-cli").await;
    let d = desk.open().await.expect("opened");
    for path in [
        "/dossiers".to_owned(),
        format!("/dossiers/{d}"),
        format!("/dossiers/{d}/sections/housing"),
        format!("/dossiers/{d}/consentements/nouveau"),
    ] {
        let (status, _, body) = https(&c, id, "GET", &path).await;
        assert_eq!(status, 401, "{path}");
        assert!(body.contains("Connexion requise"), "{path}");
    }
    let (auditor, _) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    for path in ["/dossiers".to_owned(), format!("/dossiers/{d}")] {
        let (status, _, body) = send(&c, id, "GET", &path, Some(&auditor), None).await;
        assert_eq!(status, 403, "{path}");
        assert!(body.contains("Accès réservé"), "{path}");
    }
    let (cookie, _) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    for (path, title) in [
        ("/dossiers/pas-un-dossier".to_owned(), "Dossier introuvable"),
        (
            "/dossiers/DSU-00000000000000000000000000".to_owned(),
            "Dossier introuvable",
        ),
        (format!("/dossiers/{d}/sections/salaire"), "Partie inconnue"),
        (
            format!("/dossiers/{d}/consentements/CNS-00000000000000000000000000"),
            "Consentement introuvable",
        ),
    ] {
        let (status, _, body) = send(&c, id, "GET", &path, Some(&cookie), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains(title), "{path}: {body}");
        assert!(!body.to_lowercase().contains("panic"), "{path}");
    }
    // Nothing of the refused requests reached the log.
    let dpo = c.user(id, "dpo", Role::Auditor).await;
    assert!(
        maillon_tests::audit_events(&dpo, "dossier_consulted")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn attaching_to_a_partners_dossier_from_the_console_tells_each_refusal_beside_its_field() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;
    let ccas = c.desk("ccas-rodez", "agent-ccas").await;
    let d = ccas.open().await.expect("opened at the CCAS");
    let (cookie, csrf) = logged_in(&c, "caf12", "agent-caf", Role::Caseworker).await;
    let attach = |form: String| {
        let (c, cookie) = (&c, cookie.clone());
        async move {
            send(
                c,
                "caf12",
                "POST",
                "/dossiers/rattacher",
                Some(&cookie),
                Some(&form),
            )
            .await
        }
    };
    let person = "prenom=Camille&nom=Martin&naissance=12%2F03%2F1984";
    for (form, field) in [
        (
            format!("csrf={csrf}&reference=DSU-faux&partenaire=ccas-rodez&{person}"),
            "reference",
        ),
        (
            format!("csrf={csrf}&reference={d}&partenaire=&{person}"),
            "partenaire",
        ),
        (
            format!("csrf={csrf}&reference={d}&partenaire=caf12&{person}"),
            "partenaire",
        ),
        (
            format!(
                "csrf={csrf}&reference=DSU-3M93KSGYVQ0DBQKAEBR23DSHBW&partenaire=ccas-rodez&{person}"
            ),
            "reference",
        ),
        (
            format!(
                "csrf={csrf}&reference={d}&partenaire=ccas-rodez&prenom=&nom=Martin&naissance=12%2F03%2F1984"
            ),
            "prenom",
        ),
    ] {
        let (status, _, page) = attach(form.clone()).await;
        assert_eq!(status, 422, "{form}: {page}");
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{form}: {page}"
        );
    }
    // Without the form's token: refused, nothing attached.
    let (status, _, _) = attach(format!("reference={d}&partenaire=ccas-rodez&{person}")).await;
    assert_eq!(status, 403);
    let dpo = c.user("caf12", "dpo", Role::Auditor).await;
    assert!(
        maillon_tests::audit_events(&dpo, "dossier_attached")
            .await
            .is_empty()
    );

    let (status, headers, _) = attach(format!(
        "csrf={csrf}&reference={d}&partenaire=ccas-rodez&{person}"
    ))
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/dossiers/{d}").as_str())
    );
    assert_eq!(
        maillon_tests::audit_events(&dpo, "dossier_attached")
            .await
            .len(),
        1
    );
    // Twice: told it is here already.
    let (status, _, page) = attach(format!(
        "csrf={csrf}&reference={d}&partenaire=ccas-rodez&{person}"
    ))
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("déjà rattaché"), "{page}");
}

#[tokio::test]
async fn an_auditor_reads_the_log_filtered_and_paged_and_others_are_refused() {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    let id = "ccas-rodez";
    let desk = c.desk(id, "agent-cli").await;
    let d = desk.open().await.expect("opened");
    desk.put(&d, "housing", maillon_tests::HOUSING)
        .await
        .expect("written");
    for _ in 0..55 {
        desk.open().await.expect("opened");
    }
    let (status, _, body) = https(&c, id, "GET", "/journal").await;
    assert_eq!(status, 401, "{body}");
    let (caseworker, _) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    let (status, _, body) = send(&c, id, "GET", "/journal", Some(&caseworker), None).await;
    assert_eq!(status, 403);
    assert!(body.contains("Accès réservé"), "{body}");

    let (cookie, _) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    let get = |path: String| {
        let (c, cookie) = (&c, cookie.clone());
        async move { send(c, id, "GET", &path, Some(&cookie), None).await }
    };
    // About one dossier: its opening and its section, nothing else.
    let (status, _, page) = get(format!("/journal?dossier={d}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Dossier ouvert") && page.contains("Partie écrite"),
        "{page}"
    );
    assert_eq!(
        page.matches("<tr>").count(),
        1 + 2,
        "the header and two entries: {page}"
    );
    // One kind, paged: 50 of the 56 openings, then the 6 older ones.
    let (_, _, page) = get("/journal?genre=dossier_opened".into()).await;
    assert_eq!(page.matches("Dossier ouvert <span").count(), 50, "{page}");
    let next = page
        .split(r#"<a href="/journal?"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|q| format!("/journal?{}", q.replace("&#38;", "&").replace("&amp;", "&")))
        .expect("a link to older entries");
    let (_, _, older) = get(next).await;
    assert_eq!(older.matches("Dossier ouvert <span").count(), 6, "{older}");
    assert!(!older.contains("Entrées plus anciennes"));
    // Bad filters are told beside their fields.
    for (query, field) in [
        ("dossier=DSU-faux", "dossier"),
        ("genre=vol", "genre"),
        ("du=31%2F02%2F2026", "du"),
        ("du=07%2F12%2F2026&au=01%2F12%2F2026", "au"),
    ] {
        let (status, _, page) = get(format!("/journal?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{query}: {page}"
        );
    }
    let (_, _, none) = get("/journal?au=01%2F01%2F2000".into()).await;
    assert!(none.contains("Aucune entrée ne correspond"), "{none}");
}

#[tokio::test]
async fn an_admin_approves_a_roster_proposal_in_french_and_others_may_only_look() {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    let id = "ccas-rodez";
    let change = maillon_node::roster::Change::SetQuorum {
        quorum: "3/5".parse().expect("quorum"),
    };
    let proposed = c
        .admin("caf12")
        .gov_propose(&change, "vote de l'assemblée du GIP")
        .await
        .expect("proposed");
    let hash = proposed.proposal.expect("proposal").id;

    let (caseworker, _) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    let (status, _, body) = send(&c, id, "GET", "/registre", Some(&caseworker), None).await;
    assert_eq!(status, 403, "{body}");
    // An auditor sees the proposal, with no button.
    let (auditor, _) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    let (status, _, page) = send(&c, id, "GET", "/registre", Some(&auditor), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("change le quorum de ") && page.contains(" à 3/5"),
        "{page}"
    );
    assert!(page.contains("proposée par CAF de l&#39;Aveyron"), "{page}");
    assert!(!page.contains("Approuver"), "{page}");
    let (status, _, _) = send(
        &c,
        id,
        "POST",
        &format!("/registre/propositions/{hash}/approuver"),
        Some(&auditor),
        Some("csrf=x"),
    )
    .await;
    assert_eq!(status, 403);

    let (admin, csrf) = logged_in(&c, id, "admin-console", Role::Admin).await;
    let (_, _, page) = send(&c, id, "GET", "/registre", Some(&admin), None).await;
    assert!(page.contains("Approuver et signer la version v2"), "{page}");
    assert!(page.contains("Signatures : 1 sur 2 requises"), "{page}");
    let post = |path: String, body: String| {
        let (c, admin) = (&c, admin.clone());
        async move { send(c, id, "POST", &path, Some(&admin), Some(&body)).await }
    };
    // Refusals: no token, no reason, no such proposal.
    let (status, _, _) = post(
        format!("/registre/propositions/{hash}/approuver"),
        String::new(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, page) = post(
        format!("/registre/propositions/{hash}/rejeter"),
        format!("csrf={csrf}&motif="),
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Motif requis"), "{page}");
    let (status, _, page) = post(
        "/registre/propositions/0000000000000000/approuver".into(),
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("Proposition introuvable"));
    assert_eq!(
        c.admin(id).gov_status().await.expect("status").version,
        1,
        "nothing adopted"
    );

    // Approved: the quorum is reached, the version is in force.
    let (status, headers, _) = post(
        format!("/registre/propositions/{hash}/approuver"),
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/registre?fait=adoptee"));
    let (_, _, page) = send(&c, id, "GET", "/registre?fait=adoptee", Some(&admin), None).await;
    assert!(page.contains("La modification est adoptée"), "{page}");
    assert!(page.contains("<strong>v2</strong>") && page.contains("Aucune proposition en attente"));
    c.wait_version(&["ccas-rodez", "caf12", "cd12"], 2).await;
    let dpo = c.user(id, "dpo", Role::Auditor).await;
    let approved = maillon_tests::audit_events(&dpo, "roster_approved").await;
    assert!(
        approved.iter().any(|e| e["by"] == "admin-console"),
        "{approved:?}"
    );

    // Another proposal, declined here with a reason: logged, shown, still open.
    let change = maillon_node::roster::Change::SetQuorum {
        quorum: "3/4".parse().expect("quorum"),
    };
    let hash = c
        .admin("caf12")
        .gov_propose(&change, "essai d'un quorum plus haut")
        .await
        .expect("proposed")
        .proposal
        .expect("proposal")
        .id;
    let (status, headers, _) = post(
        format!("/registre/propositions/{hash}/rejeter"),
        format!("csrf={csrf}&motif=le+quorum+doit+rester+aux+trois+cinquiemes"),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/registre?fait=rejetee"));
    let (_, _, page) = send(&c, id, "GET", "/registre?fait=rejetee", Some(&admin), None).await;
    assert!(page.contains("Refusée ici par admin-console"), "{page}");
    assert!(
        page.contains("le quorum doit rester aux trois cinquiemes"),
        "{page}"
    );
    let rejected = maillon_tests::audit_events(&dpo, "roster_rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(c.admin(id).gov_status().await.expect("status").version, 2);
}

#[tokio::test]
async fn the_demo_kept_running_serves_each_partners_console_with_working_login_links() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maillon-cli"))
        .args(["demo", "--keep"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Read to the end: the demo prints once more after Ctrl-C.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.expect("a line"));
        }
    });
    let mut lines = Vec::new();
    while let Some(line) = rx.recv().await {
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let consoles: Vec<&String> = lines.iter().filter(|l| l.contains(" — https://")).collect();
    assert_eq!(consoles.len(), 4, "{lines:#?}");
    // The CCAS's caseworker link, with the pin the demo prints.
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("ccas-rodez — "))
        .expect("the CCAS's console");
    let pin = lines[at + 1].split("spki-list=").nth(1).expect("a pin");
    let pin = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(pin)
            .expect("base64");
        maillon_node::crypto::SpkiHash(bytes.try_into().expect("32 bytes"))
    };
    let link = lines[at..]
        .iter()
        .find_map(|l| l.trim().strip_prefix("agent-ccas: "))
        .expect("a caseworker link")
        .to_owned();
    let rest = link.strip_prefix("https://").expect("https");
    let (addr, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut config = maillon_node::crypto::pinned_client_config(pin).expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("console.maillon").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the pinned handshake");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.contains("__Host-maillon="), "a session: {answer}");

    // Ctrl-C stops every node.
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joined")
        .expect("waited");
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    while let Some(line) = rx.recv().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "Demo complete."), "{rest:?}");
}

#[tokio::test]
async fn an_admin_manages_users_and_reads_the_nodes_health_and_others_are_refused() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;
    let id = "caf12";
    let (caseworker, _) = logged_in(&c, id, "agent-caf", Role::Caseworker).await;
    for path in ["/utilisateurs", "/sante"] {
        let (status, _, body) = send(&c, id, "GET", path, Some(&caseworker), None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    // An auditor looks, without a button.
    let (auditor, auditor_csrf) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    let (status, _, page) = send(&c, id, "GET", "/utilisateurs", Some(&auditor), None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("agent-caf") && !page.contains("Retirer"),
        "{page}"
    );
    let (status, _, _) = send(
        &c,
        id,
        "POST",
        "/utilisateurs",
        Some(&auditor),
        Some(&format!(
            "csrf={auditor_csrf}&nom=intrus&role=administration"
        )),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, page) = send(&c, id, "GET", "/sante", Some(&auditor), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Registre en vigueur") && page.contains("v1"),
        "{page}"
    );
    assert!(
        page.contains("Conseil départemental de l&#39;Aveyron"),
        "{page}"
    );

    let (admin, csrf) = logged_in(&c, id, "admin-console", Role::Admin).await;
    let post = |path: &'static str, body: String| {
        let (c, admin) = (&c, admin.clone());
        async move { send(c, id, "POST", path, Some(&admin), Some(&body)).await }
    };
    // Bad names and roles are told beside their fields; nobody is added.
    for (body, field) in [
        (format!("csrf={csrf}&nom=Avec+Espace&role=controle"), "nom"),
        (format!("csrf={csrf}&nom=agent-caf&role=controle"), "nom"),
        (format!("csrf={csrf}&nom=nouvelle&role=roi"), "role"),
    ] {
        let (status, _, page) = post("/utilisateurs", body.clone()).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{body}: {page}"
        );
    }
    let (status, _, _) = post("/utilisateurs", "nom=nouvelle&role=controle".into()).await;
    assert_eq!(status, 403, "no form token");
    // Added, with a login link that works once.
    let (status, _, page) = post(
        "/utilisateurs",
        format!("csrf={csrf}&nom=nouvelle&role=controle"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let link = page
        .split(r#"<code class="lien">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("a link");
    let path = &link[link.find("/connexion/").expect("a login path")..];
    let (status, _, _) = https(&c, id, "POST", path).await;
    assert_eq!(status, 303, "the link logs in");
    // Removed: its sessions and links stop; an admin cannot remove itself.
    let (status, _, page) = post(
        "/utilisateurs/retrait?nom=agent-caf",
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("agent-caf est retiré"), "{page}");
    let (status, _, _) = send(&c, id, "GET", "/dossiers", Some(&caseworker), None).await;
    assert_eq!(status, 401, "the removed user's session ended");
    let (status, _, page) = post(
        "/utilisateurs/retrait?nom=admin-console",
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(status, 409, "{page}");
    let (status, _, _) = post("/utilisateurs/lien?nom=personne", format!("csrf={csrf}")).await;
    assert_eq!(status, 404, "no link for nobody");
    let (status, _, _) = post("/utilisateurs/retrait?nom=personne", format!("csrf={csrf}")).await;
    assert_eq!(status, 404);
    let dpo = c.user(id, "dpo", Role::Auditor).await;
    let removed = maillon_tests::audit_events(&dpo, "user_removed").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["by"], "admin-console");
}

/// `UpdateUser` as `conn`: `user`'s new role (empty: unchanged) and identity.
async fn update(
    conn: &maillon_cli::client::Conn,
    user: &str,
    role: &str,
    identity: Option<&str>,
) -> Result<pb::UserEntry, tonic::Status> {
    conn.api()
        .update_user(conn.req(pb::UpdateUserRequest {
            name: user.into(),
            role: role.into(),
            identity: identity.map(str::to_owned),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_admin_changes_a_role_and_links_an_identity_and_every_refusal_changes_nothing() {
    use tonic::Code;
    let c = Cluster::start().await;
    let agent = c
        .user("ccas-rodez", "agent-accueil", Role::Caseworker)
        .await;
    let _ = c.user("ccas-rodez", "agent-caf", Role::Caseworker).await;
    let admin = c.admin("ccas-rodez");
    let code = |r: Result<pb::UserEntry, tonic::Status>| {
        let s = r.expect_err("refused");
        (s.code(), s.message().to_owned())
    };

    // A role changed: the user's token acts with it at once.
    let changed = update(&admin, "agent-accueil", "auditor", None)
        .await
        .expect("changed");
    assert_eq!(
        (changed.role.as_str(), changed.identity.as_str()),
        ("auditor", "")
    );
    let who = agent
        .api()
        .who_am_i(agent.req(pb::WhoAmIRequest {}))
        .await
        .expect("who")
        .into_inner();
    assert_eq!(who.role, "auditor");
    // An identity linked, then the same identity refused for another user.
    let linked = update(
        &admin,
        "agent-accueil",
        "",
        Some("camille@ccas-rodez.example"),
    )
    .await
    .expect("linked");
    assert_eq!(linked.identity, "camille@ccas-rodez.example");
    // Refused whole: a new role with an identity another user has changes
    // neither (the list below still shows agent-caf a caseworker).
    let (got, _) = code(
        update(
            &admin,
            "agent-caf",
            "auditor",
            Some("camille@ccas-rodez.example"),
        )
        .await,
    );
    assert_eq!(got, Code::FailedPrecondition);
    let taken = code(update(&admin, "agent-caf", "", Some("camille@ccas-rodez.example")).await);
    assert_eq!(taken.0, Code::FailedPrecondition, "{taken:?}");
    assert!(
        taken.1.contains("already logs in agent-accueil"),
        "{taken:?}"
    );

    // Every refusal, and what it answers.
    let me = c.node("ccas-rodez").admin.user.clone();
    for (user, role, identity, expected) in [
        (me.as_str(), "caseworker", None, Code::FailedPrecondition),
        ("agent-accueil", "auditor", None, Code::FailedPrecondition),
        ("personne", "auditor", None, Code::NotFound),
        ("agent-accueil", "chef", None, Code::InvalidArgument),
        ("agent-accueil", "", None, Code::InvalidArgument),
        (
            "agent-accueil",
            "",
            Some(" camille "),
            Code::InvalidArgument,
        ),
        ("agent-accueil", "", Some("a\u{7}b"), Code::InvalidArgument),
        (
            "agent-accueil",
            "",
            Some(&"x".repeat(300)),
            Code::InvalidArgument,
        ),
        (
            "agent-accueil",
            "",
            Some("camille@ccas-rodez.example"),
            Code::FailedPrecondition,
        ),
        ("Agent Accueil", "auditor", None, Code::InvalidArgument),
    ] {
        let (got, message) = code(update(&admin, user, role, identity).await);
        assert_eq!(got, expected, "{user} {role} {identity:?}: {message}");
    }
    // Only an admin changes users.
    let (got, _) = code(update(&agent, "agent-caf", "admin", None).await);
    assert_eq!(got, Code::PermissionDenied);

    // Nothing refused changed anything: the list says what the two
    // accepted changes made, and the log holds those two alone.
    let users = admin
        .api()
        .list_users(admin.req(pb::ListUsersRequest {}))
        .await
        .expect("list")
        .into_inner()
        .users;
    let of = |name: &str| users.iter().find(|u| u.name == name).expect("listed");
    assert_eq!(of("agent-accueil").role, "auditor");
    assert_eq!(of("agent-accueil").identity, "camille@ccas-rodez.example");
    assert_eq!(of("agent-caf").role, "caseworker");
    assert_eq!(of("agent-caf").identity, "");
    assert_eq!(of(&me).role, "admin");
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let kinds = maillon_tests::audit_kinds(&auditor).await;
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(
        (count("user_role_changed"), count("user_identity_linked")),
        (1, 1)
    );

    // Cleared: the identity logs nobody in any more.
    let cleared = update(&admin, "agent-accueil", "", Some(""))
        .await
        .expect("cleared");
    assert_eq!(cleared.identity, "");
    let node = c.running("ccas-rodez").node();
    assert!(
        node.user_by_identity("camille@ccas-rodez.example")
            .expect("store")
            .is_none()
    );
    let refused = node
        .console_login_identity("camille@ccas-rodez.example")
        .await;
    assert!(matches!(
        refused,
        Err(maillon_node::service::ServiceError::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn an_admin_changes_a_users_role_identity_and_token_in_the_console_and_others_are_refused() {
    let mut c = Cluster::start().await;
    let id = "ccas-rodez";
    c.with_console(id).await;
    let (agent, _) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    let _ = c.user(id, "agent-caf", Role::Caseworker).await;
    let (admin, csrf) = logged_in(&c, id, "admin-console", Role::Admin).await;
    let get = |path: String, cookie: String| {
        let c = &c;
        async move { send(c, id, "GET", &path, Some(&cookie), None).await }
    };
    let post = |path: &'static str, body: String| {
        let (c, admin) = (&c, admin.clone());
        async move { send(c, id, "POST", path, Some(&admin), Some(&body)).await }
    };

    // A caseworker may not open the page, nor send its form.
    let (status, _, page) = get("/utilisateurs/modifier?nom=agent-caf".into(), agent.clone()).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Accès réservé"), "{page}");
    // The page shows the role in force; one's own role cannot be changed.
    let (status, _, page) = get(
        "/utilisateurs/modifier?nom=agent-accueil".into(),
        admin.clone(),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"<option value="travail-social" selected>"#),
        "{page}"
    );
    let (_, _, own) = get(
        "/utilisateurs/modifier?nom=admin-console".into(),
        admin.clone(),
    )
    .await;
    assert!(own.contains(r#"name="role" disabled"#), "{own}");
    let (status, _, _) = get("/utilisateurs/modifier?nom=personne".into(), admin.clone()).await;
    assert_eq!(status, 404);

    // Refused: no form token, a role not offered, an identity with a control
    // character, one's own role sent anyway.
    let (status, _, _) = post(
        "/utilisateurs/modifier?nom=agent-accueil",
        "role=controle&identite=".into(),
    )
    .await;
    assert_eq!(status, 403, "no form token");
    for (path, body, status_expected, field) in [
        (
            "/utilisateurs/modifier?nom=agent-accueil",
            format!("csrf={csrf}&role=roi&identite="),
            422,
            "role",
        ),
        (
            "/utilisateurs/modifier?nom=agent-accueil",
            format!("csrf={csrf}&role=travail-social&identite=a%07b"),
            422,
            "identite",
        ),
        (
            "/utilisateurs/modifier?nom=admin-console",
            format!("csrf={csrf}&role=controle&identite="),
            409,
            "role",
        ),
    ] {
        let (status, _, page) = post(path, body.clone()).await;
        assert_eq!(status, status_expected, "{body}: {page}");
        assert!(
            page.contains(&format!(r#"id="{field}-erreur""#)),
            "{body}: {page}"
        );
    }

    // The caseworker becomes an auditor, linked to its identity: its
    // session (opened as a caseworker) ends at once.
    let (status, _, page) = post(
        "/utilisateurs/modifier?nom=agent-accueil",
        format!("csrf={csrf}&role=controle&identite=camille%40ccas-rodez.example"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Modification enregistrée"), "{page}");
    assert!(
        page.contains(r#"<option value="controle" selected>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"value="camille@ccas-rodez.example""#),
        "{page}"
    );
    let (status, _, _) = get("/".into(), agent.clone()).await;
    assert_eq!(status, 200);
    let (status, _, _) = get("/dossiers".into(), agent).await;
    assert_eq!(status, 401, "the session with the old role ended");
    // The same identity for another user: told beside the field.
    let (status, _, page) = post(
        "/utilisateurs/modifier?nom=agent-caf",
        format!("csrf={csrf}&role=travail-social&identite=camille%40ccas-rodez.example"),
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("connecte déjà un autre utilisateur"),
        "{page}"
    );

    // A new token, shown once; the old one no longer works.
    let before = c.user(id, "agent-cli", Role::Caseworker).await;
    let (status, _, page) = post("/utilisateurs/jeton?nom=agent-cli", format!("csrf={csrf}")).await;
    assert_eq!(status, 200, "{page}");
    let token = page
        .split(r#"<code class="lien">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the token shown");
    assert!(token.starts_with("mlt_"), "{token}");
    let refused = before
        .api()
        .who_am_i(before.req(pb::WhoAmIRequest {}))
        .await;
    assert_eq!(
        refused.expect_err("old token").code(),
        tonic::Code::Unauthenticated
    );
    let (status, _, _) = post("/utilisateurs/jeton?nom=personne", format!("csrf={csrf}")).await;
    assert_eq!(status, 404);
    let (status, _, _) = post("/utilisateurs/jeton?nom=agent-cli", String::new()).await;
    assert_eq!(status, 403, "no form token");

    let dpo = c.user(id, "dpo", Role::Auditor).await;
    for (kind, count) in [
        ("user_role_changed", 1),
        ("user_identity_linked", 1),
        ("user_token_rotated", 1),
    ] {
        assert_eq!(
            maillon_tests::audit_events(&dpo, kind).await.len(),
            count,
            "{kind}"
        );
    }
}

/// `text` as the console's templates escape it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn an_auditor_verifies_every_log_and_prints_the_access_report_the_cli_would_give() {
    let mut c = Cluster::start().await;
    let id = "ccas-rodez";
    c.with_console(id).await;
    let (_, _, d, _) = c.housing_read_by_the_caf().await;

    // Only auditors: no session, a caseworker, an admin are refused.
    for path in ["/controle/verification", "/controle/releve"] {
        let (status, _, _) = https(&c, id, "GET", path).await;
        assert_eq!(status, 401, "{path}");
    }
    let (caseworker, _) = logged_in(&c, id, "agent-accueil", Role::Caseworker).await;
    let (admin, _) = logged_in(&c, id, "admin-console", Role::Admin).await;
    for cookie in [&caseworker, &admin] {
        for path in ["/controle/verification", "/controle/releve"] {
            let (status, _, page) = send(&c, id, "GET", path, Some(cookie), None).await;
            assert_eq!(status, 403, "{path}: {page}");
            assert!(page.contains("Accès réservé"), "{page}");
        }
    }

    let (cookie, _) = logged_in(&c, id, "dpo-console", Role::Auditor).await;
    let get = |path: String| {
        let (c, cookie) = (&c, cookie.clone());
        async move { send(c, id, "GET", &path, Some(&cookie), None).await }
    };
    // Every log verifies: one row per member, the read checked.
    let (status, _, page) = get("/controle/verification".into()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Tous les journaux sont vérifiés"), "{page}");
    for name in [
        "CCAS de Rodez",
        "CAF de l&#39;Aveyron",
        "Conseil départemental de l&#39;Aveyron",
    ] {
        assert!(
            page.contains(&format!("<td>{name}</td><td>vérifié</td>")),
            "{name}: {page}"
        );
    }
    assert!(page.contains("1 lecture(s) rapprochée(s)"), "{page}");

    // The report: every line the CLI's `audit report` gave a moment
    // before (the logs grew since: the page may tell more).
    let dpo = c.user(id, "dpo-cli", Role::Auditor).await;
    let report = c.access_report(&dpo, &d).await;
    let (status, _, page) = get(format!("/controle/releve?dossier={d}")).await;
    assert_eq!(status, 200, "{page}");
    let (title, _) = report.header();
    assert!(page.contains(&escaped(&title)), "{page}");
    assert!(!report.lines.is_empty());
    for line in report.lines.iter().map(|l| &l.text) {
        assert!(page.contains(&escaped(line)), "{line}\n{page}");
    }
    // Refusals: not a dossier reference, a dossier nobody holds.
    let (status, _, page) = get("/controle/releve?dossier=pas-un-dossier".into()).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("commence par DSU-"), "{page}");
    let nobody = maillon_node::types::DossierId::random();
    let (status, _, page) = get(format!("/controle/releve?dossier={nobody}")).await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("Aucun membre ne détient"), "{page}");

    // A member down: its log cannot be fetched, which the page says.
    c.fed.node_mut("cd12").stop().await;
    let (status, _, page) =
        send(&c, id, "GET", "/controle/verification", Some(&cookie), None).await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("anomalie(s)") && page.contains("could not be fetched"),
        "{page}"
    );
}

/// `GET /` at `addr` over TLS, trusting only the authority `authority_pem`
/// (as a staff browser trusts the partner's internal authority): the status
/// line, or why the handshake failed.
async fn get_trusting(addr: std::net::SocketAddr, authority_pem: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(authority_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("a root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n")
        .await
        .expect("sent");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_console_serves_the_operators_certificate_and_refuses_to_start_with_a_bad_one() {
    let mut c = Cluster::start().await;
    let id = "ccas-rodez";
    c.with_console(id).await;
    let issued = maillon_tests::authority::issue("127.0.0.1");
    let addr = |c: &Cluster| {
        c.running(id)
            .node()
            .listening()
            .and_then(|l| l.console)
            .expect("console served")
    };
    // Without it, a browser that trusts the partner's authority is refused.
    let refused = get_trusting(addr(&c), &issued.authority_pem).await;
    assert!(refused.is_err(), "{refused:?}");

    let write = |dir: &std::path::Path, key_mode: u32, key_pem: &str, settings: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("console.crt"), &issued.cert_pem).expect("written");
        let key = dir.join("console.key");
        let _ = std::fs::remove_file(&key);
        std::fs::write(&key, key_pem).expect("written");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(key_mode)).expect("chmod");
        let toml = maillon_node::config::Config::file(dir);
        let text = std::fs::read_to_string(&toml).expect("node.toml");
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("console_tls_"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&toml, format!("{settings}{text}")).expect("written");
    };
    let both = "console_tls_cert = \"console.crt\"\nconsole_tls_key = \"console.key\"\n";
    c.reconfigure(id, |dir| write(dir, 0o600, &issued.key_pem, both))
        .await;
    let status = get_trusting(addr(&c), &issued.authority_pem)
        .await
        .expect("the operator's certificate is served");
    assert!(status.contains("200"), "{status}");

    // Each bad certificate keeps the node from starting, saying why.
    let other = maillon_tests::authority::issue("127.0.0.1");
    let clock: Arc<dyn maillon_node::clock::Clock> = c.clock.clone();
    for (mode, key, settings, expected) in [
        (0o644, issued.key_pem.as_str(), both, "0600"),
        (
            0o600,
            other.key_pem.as_str(),
            both,
            "do not make a usable certificate",
        ),
        (0o600, "pas une clé", both, "console.key"),
        (
            0o600,
            issued.key_pem.as_str(),
            "console_tls_cert = \"console.crt\"\n",
            "go together",
        ),
    ] {
        let node = c.fed.node_mut(id);
        node.stop().await;
        write(&node.dir, mode, key, settings);
        let refused = node.start(clock.clone()).await.expect_err("refused");
        let mut said = refused.to_string();
        let mut source = std::error::Error::source(&refused);
        while let Some(e) = source {
            said.push_str(&format!(": {e}"));
            source = e.source();
        }
        assert!(said.contains(expected), "{expected}: {said}");
        let findings = maillon_cli::commands::check::findings(&node.dir).await;
        assert!(
            findings.iter().any(|f| !f.ok
                && (f.check == "console certificate" || f.check == "config")
                && f.detail.contains(expected)),
            "{expected}: {findings:?}"
        );
    }
}

/// The CAF's unified view of `d`, asked with a purpose.
async fn unified_view(
    c: &Cluster,
    cookie: &str,
    csrf: &str,
    d: &str,
) -> (u16, Vec<(String, String)>, String) {
    let form = format!(
        "csrf={csrf}&motif={}",
        form_value("ouverture des droits au logement")
    );
    let path = format!("/dossiers/{d}/vue");
    send(c, "caf12", "POST", &path, Some(cookie), Some(&form)).await
}

#[tokio::test]
async fn the_unified_view_says_plainly_when_a_partner_does_not_answer() {
    let mut c = Cluster::start().await;
    c.with_console("caf12").await;
    let (_, caf, d, _) = c.housing_read_by_the_caf().await;
    caf.conn
        .attach_dossier(&d, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await
        .expect("attached");
    let (cookie, csrf) = logged_in(&c, "caf12", "agent-caf-console", Role::Caseworker).await;
    let (status, _, page) = unified_view(&c, &cookie, &csrf, &d).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Logement — CCAS de Rodez"), "{page}");
    assert!(page.contains("hébergée chez un tiers"), "{page}");

    // The CCAS's node is down: the view still answers, and says so.
    c.fed.node_mut("ccas-rodez").stop().await;
    let (status, _, page) = unified_view(&c, &cookie, &csrf, &d).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("le partenaire ne répond pas pour le moment"),
        "{page}"
    );
    assert!(!page.contains("hébergée chez un tiers"), "{page}");
}

#[tokio::test]
async fn logins_started_at_the_provider_are_limited_per_address() {
    let mut c = Cluster::start().await;
    let id = "ccas-rodez";
    let (_provider, _) = c.with_console_and_provider(id, "email").await;
    // A burst of 30 starts, each sent to the provider with its state cookie.
    for _ in 0..30 {
        let (status, headers, _) = https(&c, id, "GET", "/connexion/oidc").await;
        assert_eq!(status, 303);
        assert!(header(&headers, "set-cookie").is_some_and(
            |v| v.starts_with("__Host-maillon-oidc=")
                && v.contains("SameSite=Lax")
                && v.contains("HttpOnly")
                && v.contains("Secure")
        ));
    }
    // The next one from the same address is refused, in French.
    let (status, headers, page) = https(&c, id, "GET", "/connexion/oidc").await;
    assert_eq!(status, 429, "{page}");
    assert!(page.contains("Trop de connexions commencées"), "{page}");
    assert!(header(&headers, "set-cookie").is_none());
}

#[tokio::test]
async fn the_network_pages_search_the_census_match_a_dossier_orient_and_answer_and_refuse_in_french()
 {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let admin = c.admin("caf12");
    admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: r#"{"id":"aide-logement","name":"Aide au logement","description":"Une aide au paiement du loyer.","organization":{"name":"CAF de l'Aveyron"},"categories":["logement"],"criteria":{"resources_ceiling":1000},"locations":[{"name":"Accueil","city":"Rodez"}],"schedules":[{"byday":["MO"],"opens_at":"09:00","closes_at":"12:00"}]}"#.as_bytes().to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    let (ccas_desk, _, d) = c.housing_at_the_ccas().await;
    ccas_desk
        .put(&d, "resources", r#"{"montant_mensuel":820}"#)
        .await
        .expect("resources");
    let (cookie, csrf) = logged_in(&c, "ccas-rodez", "agent-accueil", Role::Caseworker).await;
    let at = |id: &'static str, cookie: String| {
        let c = &c;
        move |method: &'static str, path: String, body: Option<String>| {
            let cookie = cookie.clone();
            async move { send(c, id, method, &path, Some(&cookie), body.as_deref()).await }
        }
    };
    let ccas = at("ccas-rodez", cookie.clone());

    // The census, searched and shown; refused without a session.
    let (status, _, page) = ccas("GET", "/aides?texte=loyer&commune=rodez".into(), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"href="/aides/caf12/aide-logement""#),
        "{page}"
    );
    let (_, _, page) = ccas("GET", "/aides?commune=Millau".into(), None).await;
    assert!(page.contains("Aucun service ne répond"), "{page}");
    let (status, _, page) = ccas("GET", "/aides/caf12/aide-logement".into(), None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("ressources du foyer au plus 1000 € par mois"),
        "{page}"
    );
    assert!(page.contains("lundi : 09:00 – 12:00"), "{page}");
    let (status, _, page) = ccas("GET", "/aides/caf12/rien".into(), None).await;
    assert_eq!((status, page.contains("Service introuvable")), (404, true));
    let (status, _, _) = send(&c, "ccas-rodez", "GET", "/aides", None, None).await;
    assert_eq!(status, 401);

    // The aids the dossier's readable sections may open, explained.
    let (status, _, page) = ccas(
        "POST",
        format!("/dossiers/{d}/aides"),
        Some(format!("csrf={csrf}&motif=recherche+des+aides")),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(
            "Condition remplie : ressources du foyer au plus 1000 € par mois (820 € par mois)"
        ),
        "{page}"
    );
    let orient_link = format!("/dossiers/{d}/orienter?membre=caf12&amp;service=aide-logement");
    assert!(page.contains(&orient_link), "{page}");
    let (status, _, _) = ccas(
        "POST",
        format!("/dossiers/{d}/aides"),
        Some(format!("csrf={csrf}&motif=")),
    )
    .await;
    assert_eq!(status, 422, "a purpose is needed");
    let (status, _, _) = ccas(
        "POST",
        format!("/dossiers/{d}/aides"),
        Some("motif=recherche".into()),
    )
    .await;
    assert_eq!(status, 403, "no form token");
    let (dpo_cookie, dpo_csrf) = logged_in(&c, "ccas-rodez", "dpo", Role::Auditor).await;
    let (status, _, _) = send(
        &c,
        "ccas-rodez",
        "POST",
        &format!("/dossiers/{d}/aides"),
        Some(&dpo_cookie),
        Some(&format!("csrf={dpo_csrf}&motif=recherche")),
    )
    .await;
    assert_eq!(status, 403, "an auditor reads no dossier");

    // Orienting: refused without the person's consent, then sent.
    let (status, _, page) = ccas(
        "GET",
        format!("/dossiers/{d}/orienter?membre=caf12&service=aide-logement"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Pour le service « Aide au logement »"),
        "{page}"
    );
    let form = format!("csrf={csrf}&membre=caf12&service=aide-logement&motif=Loyer+en+retard");
    let (status, _, page) = ccas(
        "POST",
        format!("/dossiers/{d}/orienter"),
        Some(form.clone()),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Aucun consentement de la personne en vigueur ne nomme ce partenaire"),
        "{page}"
    );
    ccas_desk
        .grant(
            &d,
            &["housing"],
            &["caf12"],
            &maillon_tests::next_year(&c.clock),
        )
        .await
        .expect("consent");
    let (status, _, page) = ccas(
        "POST",
        format!("/dossiers/{d}/orienter"),
        Some(format!(
            "csrf={csrf}&membre=caf12&service=aide-logement&motif="
        )),
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Indiquez le motif"), "{page}");
    let (status, headers, _) = ccas("POST", format!("/dossiers/{d}/orienter"), Some(form)).await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/orientations"));

    // At the CAF: the orientation received, declined without a reason
    // refused, accepted, then completed; an auditor only looks.
    let (caf_cookie, caf_csrf) =
        logged_in(&c, "caf12", "agent-caf-console", Role::Caseworker).await;
    let caf = at("caf12", caf_cookie);
    let (status, _, page) = caf("GET", "/orientations".into(), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("Aide au logement, de la part de"), "{page}");
    let id = page
        .split("Référence ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the reference")
        .to_owned();
    let step = |action: &str, note: &str| format!("csrf={caf_csrf}&action={action}&note={note}");
    let (status, _, page) = caf(
        "POST",
        format!("/orientations/{id}"),
        Some(step("decliner", "")),
    )
    .await;
    assert_eq!(status, 422, "{page}");
    let (caf_dpo, caf_dpo_csrf) = logged_in(&c, "caf12", "dpo-caf", Role::Auditor).await;
    let (status, _, page) = send(&c, "caf12", "GET", "/orientations", Some(&caf_dpo), None).await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("Accepter"),
        "an auditor has no answer to give: {page}"
    );
    let (status, _, _) = send(
        &c,
        "caf12",
        "POST",
        &format!("/orientations/{id}"),
        Some(&caf_dpo),
        Some(&format!("csrf={caf_dpo_csrf}&action=accepter")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = caf(
        "POST",
        format!("/orientations/{id}"),
        Some(step("accepter", "Rendez-vous+lundi")),
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, _) = caf(
        "POST",
        format!("/orientations/{id}"),
        Some(step("accepter", "")),
    )
    .await;
    assert_eq!(status, 409, "accepted already");
    let (status, _, _) = caf(
        "POST",
        format!("/orientations/{id}"),
        Some(step("terminer", "Droits+ouverts")),
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, _) = caf(
        "POST",
        "/orientations/ORI-rien".into(),
        Some(step("accepter", "")),
    )
    .await;
    assert_eq!(status, 404);

    // The CCAS sees each step.
    let (_, _, page) = ccas("GET", "/orientations".into(), None).await;
    assert!(page.contains("Aide au logement, vers"), "{page}");
    assert!(page.contains("menée à son terme"), "{page}");
    assert!(page.contains("acceptée le"), "{page}");
    assert!(page.contains("Rendez-vous lundi"), "{page}");
}

#[tokio::test]
async fn a_volunteer_raises_an_alert_in_the_console_the_ccas_handles_it_and_the_volunteer_sees_only_its_state()
 {
    let mut c = crate::alerts::with_alerts().await;
    c.with_console("cd12").await;
    c.with_console("ccas-rodez").await;
    let (vol, vol_csrf) = logged_in(&c, "cd12", "voisine", Role::Volunteer).await;
    let (_, _, home) = send(&c, "cd12", "GET", "/", Some(&vol), None).await;
    assert!(home.contains(r#"href="/alertes""#), "{home}");
    assert!(
        !home.contains(r#"href="/dossiers""#),
        "a volunteer is offered no file: {home}"
    );
    for path in ["/dossiers", "/aides", "/orientations", "/journal"] {
        let (status, _, _) = send(&c, "cd12", "GET", path, Some(&vol), None).await;
        assert_eq!(status, 403, "a volunteer at {path}");
    }
    let (status, _, page) = send(&c, "cd12", "GET", "/alertes", Some(&vol), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("Votre signalement va à"), "{page}");

    let (status, _, page) = send(
        &c,
        "cd12",
        "POST",
        "/alertes",
        Some(&vol),
        Some(&format!(
            "csrf={vol_csrf}&personne=&commune=Rodez&objet=isolation"
        )),
    )
    .await;
    assert_eq!(status, 422, "{page}");
    let (status, _, _) = send(
        &c,
        "cd12",
        "POST",
        "/alertes",
        Some(&vol),
        Some("personne=Monsieur+seul&commune=Rodez&objet=isolation"),
    )
    .await;
    assert_eq!(status, 403, "no form token");
    let (status, _, page) = send(
        &c,
        "cd12",
        "POST",
        "/alertes",
        Some(&vol),
        Some(&format!(
            "csrf={vol_csrf}&personne=Monsieur+seul%2C+4+rue+des+Lilas&commune=Rodez&objet=isolation"
        )),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Votre signalement a été transmis"), "{page}");
    assert!(page.contains("<td>reçue</td>"), "{page}");

    // The CCAS's caseworker reads it, takes it into account, closes it.
    let (agent, agent_csrf) = logged_in(&c, "ccas-rodez", "agent-ccas", Role::Caseworker).await;
    let (_, _, page) = send(&c, "ccas-rodez", "GET", "/alertes", Some(&agent), None).await;
    assert!(page.contains("Monsieur seul, 4 rue des Lilas"), "{page}");
    let id = page
        .split(r#"action="/alertes/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an alert's form")
        .to_owned();
    let post = |body: String| {
        let (c, agent, id) = (&c, agent.clone(), id.clone());
        async move {
            send(
                c,
                "ccas-rodez",
                "POST",
                &format!("/alertes/{id}"),
                Some(&agent),
                Some(&body),
            )
            .await
        }
    };
    let (status, _, _) = post(format!("csrf={agent_csrf}&action=clore")).await;
    assert_eq!(status, 422, "closing says what was done");
    let (status, _, _) = post(format!("csrf={agent_csrf}&action=prendre")).await;
    assert_eq!(status, 303);
    let (status, _, _) = post(format!("csrf={agent_csrf}&action=prendre")).await;
    assert_eq!(status, 409);
    // The caseworker opens a dossier for the person from the alert, which
    // is closed with it ("dossier opened").
    let (_, _, page) = send(&c, "ccas-rodez", "GET", "/alertes", Some(&agent), None).await;
    let from_alert = format!("/dossiers/ouvrir?alerte={id}");
    assert!(page.contains(&from_alert), "{page}");
    let (status, _, page) = send(&c, "ccas-rodez", "GET", &from_alert, Some(&agent), None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!(r#"name="alerte" value="{id}""#)),
        "{page}"
    );
    let (status, _, page) = send(
        &c,
        "ccas-rodez",
        "POST",
        "/dossiers/ouvrir",
        Some(&agent),
        Some(&format!(
            "csrf={agent_csrf}&alerte={id}&prenom=Jean&nom=Seul&naissance=1941-02-03"
        )),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("est close : dossier ouvert"), "{page}");
    let (_, _, page) = send(&c, "ccas-rodez", "GET", "/alertes", Some(&agent), None).await;
    assert!(page.contains("close : Dossier ouvert"), "{page}");
    // Opened again from the same alert: the dossier opens (accueil
    // inconditionnel), the alert, closed already, is not closed twice.
    let (status, _, page) = send(
        &c,
        "ccas-rodez",
        "POST",
        "/dossiers/ouvrir",
        Some(&agent),
        Some(&format!(
            "csrf={agent_csrf}&alerte={id}&prenom=Jean&nom=Seul&naissance=1941-02-03"
        )),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("pu être close"), "{page}");
    let (status, _, _) = post(format!("csrf={agent_csrf}&action=clore&issue=contacted")).await;
    assert_eq!(status, 409, "closed already");

    // The volunteer sees it taken into account, never the outcome.
    let (_, _, page) = send(&c, "cd12", "GET", "/alertes", Some(&vol), None).await;
    assert!(page.contains("reçue et prise en compte"), "{page}");
    assert!(!page.contains("Dossier ouvert"), "{page}");
    assert!(!page.contains("Lilas"), "the raiser keeps no words: {page}");
}

#[tokio::test]
async fn the_referent_convenes_and_closes_a_commission_in_the_console_and_an_auditor_reads_the_indicators()
 {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let (desk, _, d) = c.housing_at_the_ccas().await;
    desk.grant(
        &d,
        &["housing"],
        &["caf12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("consent");
    let (cookie, csrf) = logged_in(&c, "ccas-rodez", "agent-console", Role::Caseworker).await;
    let go = |method: &'static str, path: String, body: Option<String>| {
        let (c, cookie) = (&c, cookie.clone());
        async move {
            send(
                c,
                "ccas-rodez",
                method,
                &path,
                Some(&cookie),
                body.as_deref(),
            )
            .await
        }
    };
    let (status, _, page) = go("GET", format!("/dossiers/{d}/commission"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"value="caf12""#), "{page}");
    let form = format!("csrf={csrf}&participant=caf12&le=2027-01-12&ordre=Relogement");
    // Not the référent yet: refused, and nothing convened.
    let (status, _, page) = go(
        "POST",
        format!("/dossiers/{d}/commission"),
        Some(form.clone()),
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Seul le référent de parcours"), "{page}");
    desk.conn
        .set_referent(&d, "agent-console@ccas-rodez", None)
        .await
        .expect("the référent");
    let (status, _, _) = go(
        "POST",
        format!("/dossiers/{d}/commission"),
        Some(format!("csrf={csrf}&le=2027-01-12&ordre=Relogement")),
    )
    .await;
    assert_eq!(status, 422, "no participant");
    let (status, headers, _) = go("POST", format!("/dossiers/{d}/commission"), Some(form)).await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/commissions"));
    let (_, _, page) = go("GET", "/commissions".into(), None).await;
    assert!(page.contains("Ordre du jour : Relogement"), "{page}");
    let id = page
        .split(r#"action="/commissions/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the closing form")
        .to_owned();
    let (status, _, _) = go(
        "POST",
        format!("/commissions/{id}"),
        Some(format!(
            "csrf={csrf}&qui-1=caf12&quoi-1=Ouvrir+les+droits&avant-1=31%2F01"
        )),
    )
    .await;
    assert_eq!(status, 422, "a date as AAAA-MM-JJ");
    let (status, _, _) = go(
        "POST",
        format!("/commissions/{id}"),
        Some(format!(
            "csrf={csrf}&qui-1=caf12&quoi-1=Ouvrir+les+droits&avant-1=2027-01-31"
        )),
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, page) = go("GET", "/commissions".into(), None).await;
    assert!(
        page.contains("Ouvrir les droits — avant le 2027-01-31"),
        "{page}"
    );
    assert!(page.contains("compte rendu arrêté le"), "{page}");
    // The CAF's caseworker sees the minutes, and cannot close anything.
    let (caf, caf_csrf) = logged_in(&c, "caf12", "agent-caf-console", Role::Caseworker).await;
    let (_, _, page) = send(&c, "caf12", "GET", "/commissions", Some(&caf), None).await;
    assert!(page.contains("Ouvrir les droits"), "{page}");
    let (status, _, _) = send(
        &c,
        "caf12",
        "POST",
        &format!("/commissions/{id}"),
        Some(&caf),
        Some(&format!("csrf={caf_csrf}")),
    )
    .await;
    assert_eq!(status, 404);

    // The indicators: auditors and admins; a bad period said in French.
    let (dpo, _) = logged_in(&c, "ccas-rodez", "dpo", Role::Auditor).await;
    let (status, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        "/indicateurs?periode=2026-Q9",
        Some(&dpo),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Une période s"), "{page}");
    let day = maillon_node::types::Date::from_unix(maillon_node::clock::Clock::now(&*c.clock))
        .to_string();
    let (status, _, page) = send(
        &c,
        "ccas-rodez",
        "GET",
        &format!("/indicateurs?periode={}", &day[..7]),
        Some(&dpo),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("consents_given"), "{page}");
    assert!(page.contains("Par territoire"), "{page}");
    let (status, _, _) = go("GET", "/indicateurs?periode=2026".into(), None).await;
    assert_eq!(status, 403, "a caseworker");
}

/// A form's body, every value percent-encoded.
fn encoded(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn an_admin_publishes_changes_and_withdraws_a_service_from_the_console_and_every_member_sees_it()
 {
    let mut c = Cluster::start().await;
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let (admin, admin_csrf) = logged_in(&c, "caf12", "admin-caf", Role::Admin).await;
    let (agent, agent_csrf) = logged_in(&c, "caf12", "agent-caf", Role::Caseworker).await;
    let (ccas_agent, _) = logged_in(&c, "ccas-rodez", "agent-ccas", Role::Caseworker).await;
    let (ccas_admin, ccas_csrf) = logged_in(&c, "ccas-rodez", "admin-ccas", Role::Admin).await;
    let caf = |cookie: &str, method: &'static str, path: &str, body: Option<String>| {
        let (cookie, path) = (cookie.to_owned(), path.to_owned());
        let c = &c;
        async move { send(c, "caf12", method, &path, Some(&cookie), body.as_deref()).await }
    };
    let at_ccas = |path: &str| {
        let (cookie, path) = (ccas_agent.clone(), path.to_owned());
        let c = &c;
        async move { send(c, "ccas-rodez", "GET", &path, Some(&cookie), None).await }
    };

    // Only admins publish: the link, the form and the post.
    let (_, _, page) = caf(&agent, "GET", "/aides", None).await;
    assert!(!page.contains("/aides/publier"), "{page}");
    let (status, _, _) = caf(&agent, "GET", "/aides/publier", None).await;
    assert_eq!(status, 403);
    let (_, _, page) = caf(&admin, "GET", "/aides", None).await;
    assert!(page.contains(r#"href="/aides/publier""#), "{page}");
    let (status, _, page) = caf(&admin, "GET", "/aides/publier", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Publier un service au recensement"), "{page}");

    let good: Vec<(&str, &str)> = vec![
        ("nouveau", "oui"),
        ("id", "microcredit"),
        ("nom", "Microcrédit personnel"),
        ("description", "Un prêt accompagné pour un projet."),
        ("organisme", "Secours catholique"),
        ("categories", "microcredit, mobilite"),
        ("age_min", "18"),
        ("plafond", "1500"),
        ("territoire", "12"),
        ("foyer_isolated", "oui"),
        ("situation_job_seeker", "oui"),
        ("lieu", "Accueil"),
        ("commune", "Rodez"),
        ("jour_TU", "oui"),
        ("jour_TH", "oui"),
        ("ouverture", "09:00"),
        ("fermeture", "12:00"),
        ("langues", "fr, AR"),
        ("gratuit", "oui"),
    ];
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut form: Vec<(&str, &str)> = good
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .copied()
            .collect();
        form.extend(changes.iter().copied());
        form
    };
    // Refused in French, nothing published: a bad id, an age in words, a
    // territory that is no code, hours the wrong way round, no token, a
    // caseworker.
    for (changes, said) in [
        (vec![("id", "Micro Crédit")], "identifiant s"),
        (vec![("age_min", "dix-huit")], "minimum s"),
        (vec![("territoire", "Rodez et alentours")], "codes INSEE"),
        (vec![("fermeture", "08:00")], "au moins un jour"),
        (vec![("nom", "")], "Le nom du service et celui"),
    ] {
        let mut form = with(&changes);
        form.push(("csrf", &admin_csrf));
        let (status, _, page) = caf(&admin, "POST", "/aides/publier", Some(encoded(&form))).await;
        assert_eq!(status, 422, "{changes:?}: {page}");
        assert!(page.contains(said), "{changes:?}: {page}");
        assert!(page.contains("Rien n"), "{page}");
    }
    let (status, _, _) = caf(&admin, "POST", "/aides/publier", Some(encoded(&good))).await;
    assert_eq!(status, 403, "no token");
    let mut form = good.clone();
    form.push(("csrf", &agent_csrf));
    let (status, _, _) = caf(&agent, "POST", "/aides/publier", Some(encoded(&form))).await;
    assert_eq!(status, 403, "a caseworker");
    let (status, _, _) = at_ccas("/aides/caf12/microcredit").await;
    assert_eq!(status, 404, "nothing was published");

    // Published: signed, logged, and at the CCAS at once.
    let mut form = good.clone();
    form.push(("csrf", &admin_csrf));
    let (status, headers, _) = caf(&admin, "POST", "/aides/publier", Some(encoded(&form))).await;
    assert_eq!(status, 303);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "location" && v == "/aides/caf12/microcredit"),
        "{headers:?}"
    );
    let (status, _, page) = at_ccas("/aides/caf12/microcredit").await;
    assert_eq!(status, 200, "{page}");
    for shown in [
        "Microcrédit personnel",
        "avoir 18 ans ou plus",
        "foyer : personne seule",
        "ressources du foyer au plus 1500",
        "mardi, jeudi : 09:00 – 12:00",
        "fr, ar",
        "gratuit",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    assert!(
        !page.contains("/retirer"),
        "the CCAS's caseworker manages nothing"
    );
    // Publishing it again as new is refused; it is changed from its page.
    let (status, _, page) = caf(&admin, "POST", "/aides/publier", Some(encoded(&form))).await;
    assert_eq!(status, 422);
    assert!(page.contains("publie déjà"), "{page}");

    // A service published from a file with two places: the form shows the
    // first, and a new version keeps the second.
    let grpc = c.admin("caf12");
    grpc.api()
        .publish_aid(grpc.req(pb::PublishAidRequest {
            service: r#"{"id":"aide-logement","name":"Aide au logement","description":"Le loyer.","organization":{"name":"CAF"},"locations":[{"name":"Accueil Rodez","city":"Rodez"},{"name":"Permanence Millau","city":"Millau"}]}"#.as_bytes().to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    let (_, _, page) = caf(&admin, "GET", "/aides/publier?service=aide-logement", None).await;
    assert!(page.contains(r#"value="Accueil Rodez""#), "{page}");
    assert!(page.contains("Publier la nouvelle version"), "{page}");
    assert!(page.contains(r#"name="version" value="1""#), "{page}");
    let edit = encoded(&[
        ("csrf", &admin_csrf),
        ("id", "aide-logement"),
        ("version", "1"),
        ("nom", "Aide personnalisée au logement"),
        ("description", "Le loyer."),
        ("organisme", "CAF"),
        ("lieu", "Accueil Rodez"),
        ("commune", "Rodez"),
    ]);
    let (status, _, _) = caf(&admin, "POST", "/aides/publier", Some(edit.clone())).await;
    assert_eq!(status, 303);
    // The same form sent again (another admin's, opened at version 1) would
    // undo the change: refused.
    let (status, _, page) = caf(&admin, "POST", "/aides/publier", Some(edit)).await;
    assert_eq!(status, 422);
    assert!(page.contains("entre-temps (version 2)"), "{page}");
    let (_, _, page) = at_ccas("/aides/caf12/aide-logement").await;
    assert!(page.contains("Aide personnalisée au logement"), "{page}");
    assert!(
        page.contains("Permanence Millau"),
        "the second place is kept: {page}"
    );
    assert!(page.contains("version 2"), "{page}");
    let (status, _, _) = caf(&admin, "GET", "/aides/publier?service=rien", None).await;
    assert_eq!(status, 404);

    // An auditor neither publishes nor withdraws.
    let (auditor_cookie, auditor_csrf) = logged_in(&c, "caf12", "dpo-console", Role::Auditor).await;
    let (status, _, _) = caf(&auditor_cookie, "GET", "/aides/publier", None).await;
    assert_eq!(status, 403);
    let (status, _, _) = caf(
        &auditor_cookie,
        "POST",
        "/aides/caf12/microcredit/retirer",
        Some(format!("csrf={auditor_csrf}")),
    )
    .await;
    assert_eq!(status, 403);

    // Withdrawn by its member's admin only, with the form's token.
    let (_, _, page) = caf(&admin, "GET", "/aides/caf12/microcredit", None).await;
    assert!(page.contains("/aides/caf12/microcredit/retirer"), "{page}");
    for token in [String::new(), "csrf=faux".to_owned()] {
        let (status, _, _) = caf(
            &admin,
            "POST",
            "/aides/caf12/microcredit/retirer",
            Some(token),
        )
        .await;
        assert_eq!(status, 403, "without the form's token");
    }
    let (status, _, _) = caf(
        &agent,
        "POST",
        "/aides/caf12/microcredit/retirer",
        Some(format!("csrf={agent_csrf}")),
    )
    .await;
    assert_eq!(status, 403, "a caseworker");
    let (status, _, _) = send(
        &c,
        "ccas-rodez",
        "POST",
        "/aides/caf12/microcredit/retirer",
        Some(&ccas_admin),
        Some(&format!("csrf={ccas_csrf}")),
    )
    .await;
    assert_eq!(status, 404, "another member's admin");
    let (status, _, _) = caf(
        &admin,
        "POST",
        "/aides/caf12/microcredit/retirer",
        Some(format!("csrf={admin_csrf}")),
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, page) = at_ccas("/aides/caf12/microcredit").await;
    assert!(page.contains("retiré du recensement"), "{page}");
    let (status, _, _) = caf(
        &admin,
        "POST",
        "/aides/caf12/microcredit/retirer",
        Some(format!("csrf={admin_csrf}")),
    )
    .await;
    assert_eq!(status, 404, "withdrawn already");

    // Each publication is in the CAF's log, by the admin who made it.
    let auditor = c.user("caf12", "dpo-caf", Role::Auditor).await;
    let published = maillon_tests::audit_events(&auditor, "aid_published").await;
    let by_console: Vec<(&str, bool)> = published
        .iter()
        .filter(|e| e["by"] == "admin-caf")
        .map(|e| {
            (
                e["service"].as_str().unwrap_or_default(),
                e["withdrawn"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        by_console,
        [
            ("microcredit", false),
            ("aide-logement", false),
            ("microcredit", true)
        ]
    );
}
