//! The console in a real browser (Debian's chromium, headless, through
//! chromium-driver): a caseworker's day across two partners' consoles,
//! keyboard only where it matters, every page checked by axe-core against
//! the WCAG 2.1 A and AA rules, a screenshot of each main page under
//! `target/console-screenshots/` for review.

use maillon_node::types::Role;
use maillon_proto::v1 as pb;
use maillon_tests::Cluster;
use maillon_tests::browser::{Browser, Driver, ENTER, TAB, axe_script};

/// The console's address at `id`.
fn console(c: &Cluster, id: &str) -> String {
    let addr = c
        .running(id)
        .node()
        .listening()
        .and_then(|l| l.console)
        .expect("console served");
    format!("https://{addr}")
}

/// Logs `user` (made with `role`) in at `id`'s console through a one-time
/// link its admin gives, as a person would: open the link, click.
async fn log_in(c: &Cluster, b: &Browser<'_>, id: &str, user: &str, role: Role) {
    let _ = c.user(id, user, role).await;
    let path = c.console_link(id, user).await;
    b.goto(&format!("{}{path}", console(c, id))).await;
    b.follow("button[type=submit]").await;
    assert!(
        b.text().await.contains(&format!("Bonjour {user}")),
        "logged in"
    );
}

/// Checks the page with axe-core, keeps what it finds under the page's
/// name, and writes a screenshot of it.
struct Review {
    axe: String,
    violations: Vec<String>,
}

impl Review {
    async fn page(&mut self, b: &Browser<'_>, name: &str) {
        for v in b.accessibility_violations(&self.axe).await {
            self.violations.push(format!("{name}: {v}"));
        }
        b.screenshot(name).await;
    }
}

#[test]
fn a_caseworkers_day_in_a_real_browser_across_two_consoles() {
    in_a_large_thread(caseworkers_day());
}

/// Runs `day` on a runtime of its own, on a thread with room for it (a
/// debug build needs more than the test thread's 2 MiB of stack to poll a
/// day in the browser).
fn in_a_large_thread<F: std::future::Future<Output = ()> + Send + 'static>(day: F) {
    std::thread::Builder::new()
        .stack_size(32 * 1024 * 1024)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(day)
        })
        .expect("a thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Signs in as `login` on the provider's pages, and agrees to what it asks
/// to share, if it asks.
async fn sign_in_at_provider(b: &Browser<'_>, at_idp: &str, login: &str) {
    b.fill("input[name=login]", login).await;
    b.fill("input[name=password]", "n'importe lequel").await;
    b.follow("button[type=submit]").await;
    agree_at_provider(b, at_idp).await;
}

/// Agrees to what the provider asks to share, if it asks.
async fn agree_at_provider(b: &Browser<'_>, at_idp: &str) {
    let consent = "return !!document.querySelector('input[name=prompt][value=consent]')";
    if b.url().await.starts_with(at_idp) && b.script(consent).await == serde_json::json!(true) {
        b.follow("button[type=submit]").await;
    }
}

#[test]
fn staff_log_in_through_a_real_openid_provider_and_out_of_it() {
    in_a_large_thread(single_sign_on());
}

async fn single_sign_on() {
    let mut c = Cluster::start().await;
    let (provider, at_ccas) = c.with_console_and_provider("ccas-rodez", "email").await;
    let at_idp = provider.issuer.clone();
    // The admin links a caseworker to its identity at the provider.
    let _ = c
        .user("ccas-rodez", "agent-accueil", Role::Caseworker)
        .await;
    c.link_identity(
        "ccas-rodez",
        "agent-accueil",
        "camille.agent@ccas-rodez.example",
    )
    .await;
    let admin = c.admin("ccas-rodez");
    let listed = admin
        .api()
        .list_users(admin.req(pb::ListUsersRequest {}))
        .await
        .expect("listed")
        .into_inner()
        .users;
    assert!(
        listed
            .iter()
            .any(|u| u.name == "agent-accueil" && u.identity == "camille.agent@ccas-rodez.example")
    );

    let driver = Driver::start().await;
    let pins = [c.node("ccas-rodez").admin.server_spki_sha256, provider.pin];
    let mut review = Review {
        axe: axe_script(),
        violations: Vec::new(),
    };
    let b = driver.session(&pins).await;
    b.goto(&at_ccas).await;
    review.page(&b, "accueil-oidc").await;
    b.follow("a[href='/connexion/oidc']").await;
    assert!(b.url().await.starts_with(&at_idp), "at the provider");
    sign_in_at_provider(&b, &at_idp, "camille.agent").await;
    let home = b.wait_text("Bonjour agent-accueil").await;
    assert!(home.contains("travail social"), "{home}");
    assert!(b.url().await.starts_with(&at_ccas));
    review.page(&b, "accueil-connecte-oidc").await;
    b.goto(&format!("{at_ccas}/dossiers/ouvrir")).await;
    assert!(b.text().await.contains("Ouvrir un dossier"));

    // Logging out ends the session here, then at the provider, which
    // sends the browser back to the console's home.
    b.goto(&at_ccas).await;
    b.follow("form[action='/deconnexion'] button").await;
    assert!(
        b.url().await.starts_with(&at_idp),
        "logged out at the provider"
    );
    b.follow("button[autofocus], button[type=submit]").await;
    let back = b
        .wait_text("Se connecter avec le compte de votre institution")
        .await;
    assert!(!back.contains("Bonjour"), "{back}");
    b.goto(&format!("{at_ccas}/dossiers/ouvrir")).await;
    assert!(b.text().await.contains("Connexion requise"));

    // Logged in again, then unlinked by the admin: the session ends at once.
    b.goto(&at_ccas).await;
    b.follow("a[href='/connexion/oidc']").await;
    sign_in_at_provider(&b, &at_idp, "camille.agent").await;
    b.wait_text("Bonjour agent-accueil").await;
    let admin = c.admin("ccas-rodez");
    admin
        .api()
        .update_user(admin.req(pb::UpdateUserRequest {
            name: "agent-accueil".into(),
            role: String::new(),
            identity: Some(String::new()),
        }))
        .await
        .expect("unlinked");
    b.goto(&format!("{at_ccas}/dossiers/ouvrir")).await;
    assert!(b.text().await.contains("Connexion requise"));

    // The provider still knows the person, whom no user here is linked to
    // now: its login goes through there and is refused here.
    b.goto(&at_ccas).await;
    b.follow("a[href='/connexion/oidc']").await;
    agree_at_provider(&b, &at_idp).await;
    let unknown = b.wait_text("Compte inconnu").await;
    assert!(
        unknown.contains("aucun compte de cette console"),
        "{unknown}"
    );
    review.page(&b, "compte-inconnu").await;

    // An answer that does not belong to a login this browser started.
    b.goto(&format!(
        "{at_ccas}/connexion/oidc/retour?code=forge&state=forge"
    ))
    .await;
    assert!(b.text().await.contains("Connexion refusée"));
    // A login the person cancelled at the provider.
    b.goto(&format!(
        "{at_ccas}/connexion/oidc/retour?error=access_denied&state=x"
    ))
    .await;
    assert!(b.text().await.contains("Connexion refusée"));
    b.close().await;

    // The log holds each login made and refused.
    let auditor = c.user("ccas-rodez", "dpo", Role::Auditor).await;
    let entries = maillon_tests::audit_entries(&auditor).await;
    let of = |kind: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e.to_string())
            .collect()
    };
    assert_eq!(of("user_identity_linked").len(), 2, "linked, then cleared");
    let logins = of("console_login");
    assert!(
        logins.len() == 2 && logins.iter().all(|l| l.contains("\"oidc\"")),
        "{logins:?}"
    );
    let refusals = of("console_login_refused");
    for reason in ["no user linked", "did not start it", "no code"] {
        assert!(
            refusals.iter().any(|r| r.contains(reason)),
            "{reason} in {refusals:?}"
        );
    }
    assert!(
        review.violations.is_empty(),
        "accessibility violations:\n{}",
        review.violations.join("\n")
    );
}

async fn caseworkers_day() {
    let mut c = Cluster::start().await;
    // The CCAS's staff log in through their institution's provider.
    let (provider, _) = c.with_console_and_provider("ccas-rodez", "email").await;
    c.with_console("caf12").await;
    let driver = Driver::start().await;
    let pins = [
        c.node("ccas-rodez").admin.server_spki_sha256,
        c.node("caf12").admin.server_spki_sha256,
        provider.pin,
    ];
    let mut review = Review {
        axe: axe_script(),
        violations: Vec::new(),
    };
    let ccas = driver.session(&pins).await;
    let at_ccas = console(&c, "ccas-rodez");

    // The checker finds what it must: an image without a text alternative.
    ccas.goto(&at_ccas).await;
    ccas.script("document.body.appendChild(document.createElement('img')); return true")
        .await;
    let found = ccas.accessibility_violations(&review.axe).await;
    assert!(
        found.iter().any(|v| v.starts_with("image-alt")),
        "{found:?}"
    );

    // Before login: the welcome page; then the caseworker logs in through
    // the CCAS's identity provider.
    ccas.goto(&at_ccas).await;
    review.page(&ccas, "accueil-anonyme").await;
    let _ = c
        .user("ccas-rodez", "agent-accueil", Role::Caseworker)
        .await;
    c.link_identity(
        "ccas-rodez",
        "agent-accueil",
        "hugo.accueil@ccas-rodez.example",
    )
    .await;
    ccas.follow("a[href='/connexion/oidc']").await;
    sign_in_at_provider(&ccas, &provider.issuer, "hugo.accueil").await;
    ccas.wait_text("Bonjour agent-accueil").await;
    review.page(&ccas, "accueil").await;

    // Opening a dossier with the keyboard only: Tab to the first field, type,
    // Tab, type, Tab, type, Enter.
    ccas.goto(&format!("{at_ccas}/dossiers/ouvrir")).await;
    review.page(&ccas, "ouvrir").await;
    for _ in 0..10 {
        if ccas.focused_id().await == "prenom" {
            break;
        }
        ccas.keys(TAB).await;
    }
    assert_eq!(
        ccas.focused_id().await,
        "prenom",
        "the first field is reached by Tab"
    );
    ccas.keys("Hélène").await;
    ccas.keys(TAB).await;
    ccas.keys("Martin").await;
    ccas.keys(TAB).await;
    ccas.keys("12/03/1984").await;
    ccas.keys_to_load(ENTER).await;
    let page = ccas.text().await;
    assert!(page.contains("Dossier ouvert"), "{page}");
    review.page(&ccas, "dossier-ouvert").await;
    let source = ccas.source().await;
    let d = source
        .split(r#"class="reference">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the reference")
        .to_owned();

    // Found by the search, its page, its housing section (an error first).
    ccas.goto(&format!("{at_ccas}/dossiers")).await;
    ccas.fill("#q", "helene").await;
    ccas.follow("form[role=search] button[type=submit]").await;
    review.page(&ccas, "recherche").await;
    ccas.follow(&format!("a[href='/dossiers/{d}']")).await;
    assert!(ccas.text().await.contains("Dossier de Hélène Martin"));
    review.page(&ccas, "fiche").await;
    ccas.follow(&format!("a[href='/dossiers/{d}/sections/housing']"))
        .await;
    ccas.click("#situation option[value='hébergée chez un tiers']")
        .await;
    ccas.fill("#loyer", "beaucoup").await;
    ccas.follow("button[type=submit]").await;
    assert!(ccas.text().await.contains("Indiquez un montant en euros"));
    review.page(&ccas, "section-erreur").await;
    ccas.fill("#loyer", "412,50").await;
    ccas.click("#demande_logement_social option[value='oui']")
        .await;
    ccas.follow("button[type=submit]").await;
    assert!(ccas.url().await.contains(&format!("/dossiers/{d}")));

    // The référent form.
    ccas.goto(&format!("{at_ccas}/dossiers/{d}/referent")).await;
    review.page(&ccas, "referent").await;

    // The break-glass form and its warning (this charter allows none).
    ccas.goto(&format!("{at_ccas}/dossiers/{d}/urgence")).await;
    assert!(ccas.text().await.contains("Attention :"));
    review.page(&ccas, "urgence").await;

    // The person consents to share the housing with the CAF; the receipt.
    ccas.goto(&format!("{at_ccas}/dossiers/{d}/consentements/nouveau"))
        .await;
    review.page(&ccas, "consentement").await;
    // With the keyboard only: Tab through the form, Space on the boxes,
    // type in the fields, Enter on the button.
    let until = maillon_tests::next_year(&c.clock);
    let until = format!("{}/{}/{}", &until[8..10], &until[5..7], &until[0..4]);
    let mut filled = Vec::new();
    for _ in 0..80 {
        let focused = ccas.focused_id().await;
        match focused.as_str() {
            "partage-housing" | "destinataire-caf12" => ccas.keys(" ").await,
            "motif" => ccas.keys("instruction de la demande de logement").await,
            "jusqu_au" => ccas.keys(&until).await,
            _ => {}
        }
        if ["partage-housing", "destinataire-caf12", "motif", "jusqu_au"]
            .contains(&focused.as_str())
        {
            filled.push(focused.clone());
        }
        ccas.keys(TAB).await;
        if focused == "jusqu_au" {
            break;
        }
    }
    assert_eq!(
        filled,
        ["partage-housing", "destinataire-caf12", "motif", "jusqu_au"],
        "each field is reached by Tab, in order"
    );
    ccas.keys_to_load(ENTER).await;
    let receipt = ccas.text().await;
    assert!(
        receipt.contains("Récépissé de consentement"),
        "{} {receipt}",
        ccas.url().await
    );
    assert!(receipt.contains("CAF de l'Aveyron"), "{receipt}");
    review.page(&ccas, "recu").await;
    let receipt_url = ccas.url().await;

    // At the CAF's desk: the person gives the reference; the CAF attaches
    // to the dossier, then reads it in its unified view.
    let caf = driver.session(&pins).await;
    let at_caf = console(&c, "caf12");
    log_in(&c, &caf, "caf12", "agent-caf", Role::Caseworker).await;
    caf.goto(&format!("{at_caf}/dossiers/rattacher")).await;
    review.page(&caf, "rattacher").await;
    caf.fill("#reference", &d).await;
    caf.click("#partenaire option[value='ccas-rodez']").await;
    caf.fill("#prenom", "Hélène").await;
    caf.fill("#nom", "Martin").await;
    caf.fill("#naissance", "12/03/1984").await;
    caf.follow("button[type=submit]").await;
    assert!(caf.text().await.contains("Dossier de Hélène Martin"));
    caf.goto(&format!("{at_caf}/dossiers/{d}")).await;
    caf.fill("#motif", "ouverture des droits au logement").await;
    caf.follow("form[action$='/vue'] button[type=submit]").await;
    let view = caf.text().await;
    assert!(view.contains("Logement — CCAS de Rodez"), "{view}");
    assert!(view.contains("412,5"), "{view}");
    review.page(&caf, "vue-unifiee").await;

    // Withdrawn at the CCAS: the CAF's next view is refused, in French.
    ccas.goto(&receipt_url).await;
    ccas.follow("button.danger").await;
    assert!(ccas.text().await.contains("a été retiré"));
    review.page(&ccas, "recu-retire").await;
    caf.goto(&format!("{at_caf}/dossiers/{d}")).await;
    caf.fill("#motif", "ouverture des droits au logement").await;
    caf.follow("form[action$='/vue'] button[type=submit]").await;
    let view = caf.text().await;
    assert!(view.contains("Non lue"), "{view}");
    assert!(!view.contains("412,5"), "{view}");
    review.page(&caf, "vue-refusee").await;

    // A page for another role: a French refusal, checked too.
    let auditor = driver.session(&pins).await;
    log_in(&c, &auditor, "caf12", "dpo-console", Role::Auditor).await;
    auditor.goto(&format!("{at_caf}/dossiers")).await;
    assert!(auditor.text().await.contains("Accès réservé"));
    review.page(&auditor, "acces-reserve").await;

    auditor.goto(&format!("{at_caf}/controle/urgences")).await;
    assert!(
        auditor
            .text()
            .await
            .contains("Accès en urgence à contrôler")
    );
    review.page(&auditor, "controle-urgences").await;

    // The CAF's auditor finds the CAF's read of the dossier in its log.
    auditor.goto(&format!("{at_caf}/journal")).await;
    auditor.fill("#dossier", &d).await;
    auditor.click("#genre option[value='receipt_logged']").await;
    auditor
        .follow("form[role=search] button[type=submit]")
        .await;
    let log = auditor.text().await;
    assert!(log.contains("Lecture chez un partenaire"), "{log}");
    assert!(
        log.contains("user : agent-caf") && log.contains(&d),
        "{log}"
    );
    review.page(&auditor, "journal").await;
    auditor
        .goto(&format!("{at_caf}/controle/verification"))
        .await;
    assert!(
        auditor
            .text()
            .await
            .contains("Tous les journaux sont vérifiés"),
        "{}",
        auditor.text().await
    );
    review.page(&auditor, "verification").await;
    auditor.goto(&format!("{at_caf}/controle/releve")).await;
    auditor.fill("#dossier", &d).await;
    auditor.keys_to_load(ENTER).await;
    assert!(auditor.text().await.contains("Rapport d'accès au dossier"));
    review.page(&auditor, "releve").await;

    // The GIP votes: the CAF proposes, the CCAS's admin approves in its console.
    let change = maillon_node::roster::Change::SetQuorum {
        quorum: "3/5".parse().expect("quorum"),
    };
    c.admin("caf12")
        .gov_propose(&change, "vote de l'assemblée du GIP")
        .await
        .expect("proposed");
    let admin = driver.session(&pins).await;
    log_in(&c, &admin, "ccas-rodez", "admin-console", Role::Admin).await;
    admin.goto(&format!("{at_ccas}/registre")).await;
    assert!(admin.text().await.contains("Propositions ouvertes"));
    review.page(&admin, "registre").await;
    admin.follow("form[action$='/approuver'] button").await;
    let roster = admin.text().await;
    assert!(roster.contains("La modification est adoptée"), "{roster}");
    review.page(&admin, "registre-adopte").await;
    admin.goto(&format!("{at_ccas}/utilisateurs")).await;
    assert!(admin.text().await.contains("agent-accueil"));
    review.page(&admin, "utilisateurs").await;
    admin
        .follow("a[href='/utilisateurs/modifier?nom=agent-accueil']")
        .await;
    assert!(admin.text().await.contains("Modifier agent-accueil"));
    review.page(&admin, "utilisateur").await;
    admin.goto(&format!("{at_ccas}/sante")).await;
    assert!(admin.text().await.contains("Registre en vigueur"));
    review.page(&admin, "sante").await;

    for b in [ccas, caf, auditor, admin] {
        b.close().await;
    }
    assert!(
        review.violations.is_empty(),
        "accessibility violations:\n{}",
        review.violations.join("\n")
    );
}

#[test]
fn the_network_at_work_in_a_real_browser_alerts_census_match_and_orientations() {
    in_a_large_thread(network_at_work());
}

async fn network_at_work() {
    let mut c = crate::alerts::with_alerts().await;
    c.with_console("ccas-rodez").await;
    c.with_console("caf12").await;
    let admin = c.admin("caf12");
    admin
        .api()
        .publish_aid(admin.req(pb::PublishAidRequest {
            service: r#"{"id":"aide-logement","name":"Aide au logement","description":"Une aide au paiement du loyer.","organization":{"name":"CAF de l'Aveyron"},"categories":["logement"],"criteria":{"resources_ceiling":1000,"territory":["12"]},"locations":[{"name":"Accueil","city":"Rodez"}],"schedules":[{"byday":["MO","TU"],"opens_at":"09:00","closes_at":"12:00"}],"cost":{"free":true}}"#.as_bytes().to_vec(),
            withdraw: String::new(),
        }))
        .await
        .expect("published");
    let (desk, _, d) = c.housing_at_the_ccas().await;
    desk.put(&d, "resources", r#"{"montant_mensuel":820}"#)
        .await
        .expect("resources");
    desk.grant(
        &d,
        &["housing"],
        &["caf12"],
        &maillon_tests::next_year(&c.clock),
    )
    .await
    .expect("consent");
    let driver = Driver::start().await;
    let pins = [
        c.node("ccas-rodez").admin.server_spki_sha256,
        c.node("caf12").admin.server_spki_sha256,
    ];
    let mut review = Review {
        axe: axe_script(),
        violations: Vec::new(),
    };
    let (at_ccas, at_caf) = (console(&c, "ccas-rodez"), console(&c, "caf12"));

    // A neighbourhood volunteer signals someone; the page says it went.
    let volunteer = driver.session(&pins).await;
    log_in(&c, &volunteer, "ccas-rodez", "voisine", Role::Volunteer).await;
    volunteer.goto(&format!("{at_ccas}/alertes")).await;
    review.page(&volunteer, "alertes-benevole").await;
    volunteer
        .fill("#personne", "Monsieur seul au 3e, 4 rue des Lilas")
        .await;
    volunteer.fill("#commune", "Rodez").await;
    volunteer.click("#objet option[value='isolation']").await;
    volunteer.follow("form[action='/alertes'] button").await;
    assert!(
        volunteer
            .text()
            .await
            .contains("Votre signalement a été transmis"),
        "{}",
        volunteer.text().await
    );
    review.page(&volunteer, "alertes-benevole-transmise").await;

    // The CCAS's caseworker takes it into account, then finds an aid for
    // the dossier and orients the person to the CAF.
    let ccas = driver.session(&pins).await;
    log_in(&c, &ccas, "ccas-rodez", "agent-console", Role::Caseworker).await;
    ccas.goto(&format!("{at_ccas}/alertes")).await;
    assert!(ccas.text().await.contains("4 rue des Lilas"));
    review.page(&ccas, "alertes-recues").await;
    ccas.follow("form input[value='prendre'] ~ button").await;
    assert!(
        ccas.text()
            .await
            .contains("prise en compte par agent-console")
    );
    ccas.goto(&format!("{at_ccas}/aides?commune=Rodez")).await;
    review.page(&ccas, "aides").await;
    ccas.follow("a[href='/aides/caf12/aide-logement']").await;
    assert!(ccas.text().await.contains("lundi, mardi : 09:00 – 12:00"));
    review.page(&ccas, "aide").await;
    ccas.goto(&format!("{at_ccas}/dossiers/{d}")).await;
    ccas.follow("form[action$='/aides'] button").await;
    let proposals = ccas.text().await;
    assert!(
        proposals.contains("Condition remplie : ressources du foyer au plus 1000 € par mois"),
        "{proposals}"
    );
    assert!(
        proposals.contains("Non vérifiée : habiter : 12"),
        "{proposals}"
    );
    review.page(&ccas, "aides-dossier").await;
    ccas.follow("a[href*='/orienter?membre=caf12']").await;
    review.page(&ccas, "orienter").await;
    ccas.fill("#motif", "Loyer en retard, droits non ouverts")
        .await;
    ccas.follow("form[action$='/orienter'] button").await;
    assert!(
        ccas.text().await.contains("vers CAF de l'Aveyron"),
        "{}",
        ccas.text().await
    );
    review.page(&ccas, "orientations-envoyees").await;

    // The CAF accepts it in its console; the CCAS sees it.
    let caf = driver.session(&pins).await;
    log_in(&c, &caf, "caf12", "agent-caf-console", Role::Caseworker).await;
    caf.goto(&format!("{at_caf}/orientations")).await;
    review.page(&caf, "orientations-recues").await;
    caf.fill("input[id^='note-accepter']", "Rendez-vous lundi")
        .await;
    caf.follow("form input[value='accepter'] ~ button").await;
    assert!(caf.text().await.contains("acceptée"));
    ccas.goto(&format!("{at_ccas}/orientations")).await;
    assert!(ccas.text().await.contains("Rendez-vous lundi"));

    // The CAF's admin publishes a service of its own from the form.
    let caf_admin = driver.session(&pins).await;
    log_in(&c, &caf_admin, "caf12", "admin-caf-console", Role::Admin).await;
    caf_admin.goto(&format!("{at_caf}/aides/publier")).await;
    review.page(&caf_admin, "publier").await;
    caf_admin.fill("#id", "point-conseil-budget").await;
    caf_admin.fill("#nom", "Point conseil budget").await;
    caf_admin
        .fill(
            "#description",
            "Un rendez-vous pour faire le point sur le budget.",
        )
        .await;
    caf_admin.fill("#organisme", "CAF de l'Aveyron").await;
    caf_admin.click("#jour_WE").await;
    caf_admin.fill("#ouverture", "14:00").await;
    caf_admin.fill("#fermeture", "17:00").await;
    caf_admin.click("#gratuit").await;
    caf_admin
        .follow("form[action='/aides/publier'] button")
        .await;
    let published = caf_admin.text().await;
    assert!(
        published.contains("mercredi : 14:00 – 17:00"),
        "{published}"
    );
    review.page(&caf_admin, "aide-gerer").await;
    ccas.goto(&format!("{at_ccas}/aides/caf12/point-conseil-budget"))
        .await;
    assert!(ccas.text().await.contains("Point conseil budget"));

    for b in [volunteer, ccas, caf, caf_admin] {
        b.close().await;
    }
    assert!(
        review.violations.is_empty(),
        "accessibility violations:\n{}",
        review.violations.join("\n")
    );
}
