//! `maillon demo`: the parcours of DESIGN §9, played on real nodes on loopback.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;

use maillon_node::clock::SystemClock;
use maillon_node::roster::{BreakGlassRule, Change, SignedRoster};
use maillon_node::sharing::ShareId;
use maillon_node::types::{DossierId, MemberId, MemberKind, Role, Section};
use maillon_proto::v1 as pb;
use tonic::Code;

use crate::audit::fetch_bundles;
use crate::audit::verify::verify_bundles;
use crate::client::Conn;
use crate::commands::gov::load_roster;
use crate::error::CliError;
use crate::escape::escape_controls;
use crate::federation::{Founder, LocalFederation};

/// The founders of the demo's GIP.
pub const FOUNDERS: [Founder; 4] = [
    Founder {
        id: Cow::Borrowed("cd12"),
        name: Cow::Borrowed("Conseil départemental de l'Aveyron"),
        kind: MemberKind::Departement,
    },
    Founder {
        id: Cow::Borrowed("ccas-rodez"),
        name: Cow::Borrowed("CCAS de Rodez"),
        kind: MemberKind::Ccas,
    },
    Founder {
        id: Cow::Borrowed("caf12"),
        name: Cow::Borrowed("CAF de l'Aveyron"),
        kind: MemberKind::Caf,
    },
    Founder {
        id: Cow::Borrowed("relais-solidaire"),
        name: Cow::Borrowed("Association Relais Solidaire"),
        kind: MemberKind::Association,
    },
];

/// The charity the GIP admits by vote during the demo.
const CHARITY: &str = "relais-solidaire";

/// Step 2: the département proposes the charity's admission, every node
/// receives the proposal, the charity proves its key, the CCAS's approval
/// brings the quorum, and every node adopts roster v2; then the charity's
/// node starts from the genesis and fetches the chain.
async fn admit_the_charity(fed: &mut LocalFederation) -> Result<(), CliError> {
    let card = fed.add_newcomer(&FOUNDERS[3]).await?;
    say(format!(
        "The charity initialises its node; its sponsor, the département, gives it the genesis roster and its hash {}… out of band.",
        &load_roster(&fed.dir.join("roster.json"))?.hash_hex()[..16]
    ));
    let cd = fed.node("cd12").admin()?;
    let proposed = cd
        .gov_propose(
            &Change::Admit { card, voting: true },
            "ouverture du GIP aux associations du territoire",
        )
        .await?;
    let p = proposed
        .proposal
        .ok_or_else(|| CliError::Unexpected("no proposal in the reply".into()))?;
    say(format!(
        "The département's admin proposes roster v2 (proposal {}): it {}.",
        &p.id[..12],
        p.changes
            .first()
            .map(|c| escape_controls(c).into_owned())
            .unwrap_or_default()
    ));
    let at_caf = fed.node("caf12").admin()?.gov_list().await?;
    if let Some(seen) = at_caf.proposals.first() {
        let side = seen.outgoing.clone().unwrap_or_default();
        say(format!(
            "Every node received it on the peer API; the CAF's node shows: {} of {} founders' signatures, key of {} not yet proven.",
            side.have,
            side.need,
            seen.unproven.join(", ")
        ));
    }
    let mut signed = SignedRoster::decode(&p.signed)?;
    let newcomer: MemberId = CHARITY.parse().map_err(|source| CliError::BadArgument {
        arg: "member",
        source,
    })?;
    signed.sign(&newcomer, &fed.node(CHARITY).signing_key()?)?;
    say(
        "The charity signs the candidate with its new key (proof of possession) and hands it to the CCAS.",
    );
    let started = std::time::Instant::now();
    let approved = fed
        .node("ccas-rodez")
        .admin()?
        .gov_approve(&p.id, Some(&signed))
        .await?;
    if approved.outcome != "adopted" {
        return Err(CliError::Unexpected(format!(
            "the admission was not adopted: {}",
            approved.outcome
        )));
    }
    for id in ["cd12", "ccas-rodez", "caf12"] {
        let admin = fed.node(id).admin()?;
        let mut version = 0;
        for _ in 0..500 {
            version = admin.gov_status().await?.version;
            if version >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if version < 2 {
            return Err(CliError::Unexpected(format!(
                "{id} did not adopt roster v2"
            )));
        }
    }
    say(format!(
        "The CCAS approves: a quorum of the old voters (2 of 3) and of the new (3 of 4), every new key proven; all three founders' nodes adopted v2 within {} ms, each logging it first.",
        started.elapsed().as_millis()
    ));
    fed.node_mut(CHARITY).start(Arc::new(SystemClock)).await?;
    let v = fed.node(CHARITY).admin()?.gov_status().await?;
    say(format!(
        "The charity's node starts from the genesis, fetches the chain from a founder, verifies it link by link: roster v{} ({}…), {} members.",
        v.version,
        &v.hash[..16],
        v.members.len()
    ));
    Ok(())
}

/// The aids the demo's partners publish in the census.
const AIDS: [(&str, &str); 3] = [
    (
        "caf12",
        r#"{"id":"aide-logement","name":"Aide personnalisée au logement","description":"Une aide au paiement du loyer, selon les ressources du foyer.","organization":{"name":"CAF de l'Aveyron"},"categories":["logement"],"eligibility_description":"Locataires et personnes hébergées qui entrent dans un logement, sous conditions de ressources.","criteria":{"resources_ceiling":1200,"territory":["12"],"situations":["poorly_housed","homeless"]},"locations":[{"name":"Accueil CAF","address":"Rue de la Barrière","city":"Rodez","postal_code":"12000"}],"schedules":[{"byday":["MO","TU","WE","TH","FR"],"opens_at":"08:30","closes_at":"16:30"}],"languages":["fr"],"cost":{"free":true}}"#,
    ),
    (
        CHARITY,
        r#"{"id":"epicerie-solidaire","name":"Épicerie solidaire","description":"Des courses à 10 % du prix, pour trois mois renouvelables.","organization":{"name":"Association Relais Solidaire"},"categories":["alimentation"],"criteria":{"households":["single_parent","isolated"],"resources_ceiling":900},"locations":[{"name":"Local du Faubourg","city":"Rodez"}],"schedules":[{"byday":["WE","SA"],"opens_at":"14:00","closes_at":"18:00"}],"languages":["fr","ar"],"cost":{"free":false,"description":"10 % du prix des produits"}}"#,
    ),
    (
        "cd12",
        r#"{"id":"fonds-jeunes","name":"Fonds d'aide aux jeunes","description":"Une aide ponctuelle pour un projet d'insertion.","organization":{"name":"Conseil départemental de l'Aveyron"},"categories":["insertion"],"criteria":{"min_age":18,"max_age":25,"territory":["12"]},"cost":{"free":true}}"#,
    ),
];

/// The demo's second act (steps 12 to 16): the network at work.
async fn second_act(
    fed: &LocalFederation,
    ccas_cw: &Conn,
    caf_cw: &Conn,
    ccas_dpo: &Conn,
    dossier: &str,
) -> Result<(), CliError> {
    step(
        12,
        "Second act, the network at work. The CAF, the charity and the département publish aids in the census: signed by their nodes, offered to every member at once.",
    );
    for (member, service) in AIDS {
        let admin = fed.node(member).admin()?;
        admin
            .api()
            .publish_aid(admin.req(pb::PublishAidRequest {
                service: service.as_bytes().to_vec(),
                withdraw: String::new(),
            }))
            .await?;
    }
    let found = ccas_cw
        .api()
        .search_aids(ccas_cw.req(pb::SearchAidsRequest::default()))
        .await?
        .into_inner();
    say(format!(
        "The CCAS's census now holds {} services from its partners (aids search, aids export --format csv).",
        found.entries.len()
    ));

    step(
        13,
        "A volunteer of Relais Solidaire, a neighbourhood référent, raises a vigilance alert; the charter sends it to the CCAS.",
    );
    let volunteer = Conn::new(
        &fed.node(CHARITY)
            .add_user("voisine-faubourg", Role::Volunteer)
            .await?,
    )?;
    let raised = volunteer
        .api()
        .raise_alert(volunteer.req(pb::RaiseAlertRequest {
            about: "Jeune mère hébergée chez une amie, rue du Faubourg, semble à bout".into(),
            place: "Rodez".into(),
            concern: "isolation".into(),
            to: String::new(),
        }))
        .await?
        .into_inner();
    say(format!(
        "Alert {} ({}, {}) is {} at the CCAS; its words travel only there, sealed at rest.",
        raised.id, raised.concern, raised.place, raised.status
    ));
    let taken = ccas_cw
        .api()
        .handle_alert(ccas_cw.req(pb::HandleAlertRequest {
            alert: raised.id.clone(),
            status: "taken".into(),
            outcome: String::new(),
        }))
        .await?
        .into_inner();
    ccas_cw
        .api()
        .handle_alert(ccas_cw.req(pb::HandleAlertRequest {
            alert: taken.id.clone(),
            status: "closed".into(),
            outcome: "contacted".into(),
        }))
        .await?;
    let mine = volunteer
        .api()
        .list_alerts(volunteer.req(pb::ListAlertsRequest::default()))
        .await?
        .into_inner();
    say(format!(
        "The CCAS's caseworker recognises the person of {dossier}, calls her, and closes the alert (contacted). The volunteer sees only: {}.",
        mine.raised
            .first()
            .map_or("nothing", |a| if a.status == "taken" {
                "received and taken into account"
            } else {
                "received"
            })
    ));

    step(
        14,
        "Against non-recours: the CCAS's caseworker asks which aids the sections it may read make possible (aids match); rules, never a score.",
    );
    let matched = ccas_cw
        .api()
        .match_aids(ccas_cw.req(pb::MatchAidsRequest {
            dossier: dossier.to_owned(),
            purpose: "recherche des aides et droits (non-recours)".into(),
        }))
        .await?
        .into_inner();
    say(format!(
        "{} services proposed; {} left out, a criterion not met:",
        matched.proposed.len(),
        matched.excluded
    ));
    for p in &matched.proposed {
        let entry: serde_json::Value = p
            .entry
            .as_ref()
            .and_then(|e| serde_json::from_slice(&e.entry).ok())
            .unwrap_or_default();
        say(format!(
            "  {}/{}  {}",
            entry["member"].as_str().unwrap_or(""),
            entry["service"]["id"].as_str().unwrap_or(""),
            entry["service"]["name"].as_str().unwrap_or("")
        ));
        for c in &p.checks {
            if c.outcome == "met" {
                say(format!("      met: {} ({})", c.wanted, c.found));
            } else {
                say(format!(
                    "      not checked: {} (needs {})",
                    c.wanted,
                    c.needs.join(" or ")
                ));
            }
        }
    }

    step(
        15,
        "The person agrees to be oriented to the CAF for the housing aid; the orientation travels signed, with no section's content, and the CAF closes the loop.",
    );
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(90)).to_string();
    let consent = ccas_cw
        .api()
        .grant_consent(ccas_cw.req(pb::GrantConsentRequest {
            dossier: dossier.to_owned(),
            sections: vec!["housing".into()],
            audience: vec!["caf12".into()],
            purpose: "orientation vers l'aide au logement".into(),
            until,
            collection: "oral".into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .consent;
    let sent = ccas_cw
        .api()
        .orient(ccas_cw.req(pb::OrientRequest {
            dossier: dossier.to_owned(),
            to: "caf12".into(),
            service: "aide-logement".into(),
            reason: "Hébergée chez un tiers, droits au logement non ouverts".into(),
            consent: consent.clone(),
        }))
        .await?
        .into_inner();
    say(format!(
        "Orientation {} sent to the CAF on consent {consent}.",
        sent.id
    ));
    for (status, note) in [
        ("accepted", "Rendez-vous mardi 10 h"),
        ("completed", "Droits ouverts"),
    ] {
        caf_cw
            .api()
            .step_orientation(caf_cw.req(pb::StepOrientationRequest {
                orientation: sent.id.clone(),
                status: status.into(),
                note: note.into(),
            }))
            .await?;
    }
    let seen = ccas_cw
        .api()
        .list_orientations(ccas_cw.req(pb::ListOrientationsRequest {
            direction: "sent".into(),
            status: String::new(),
        }))
        .await?
        .into_inner();
    if let Some(o) = seen.orientations.first() {
        let steps: Vec<String> = o
            .steps
            .iter()
            .map(|s| format!("{} ({})", s.status, s.note))
            .collect();
        say(format!(
            "The CCAS sees each step: {} — logged on both sides.",
            steps.join(", then ")
        ));
    }

    step(
        16,
        "The GIP's assembly: the indicators for the quarter, summed from every member's signed counts; counts under 5 are shown « < 5 » and never subtracted back out (indicators).",
    );
    let today = time::OffsetDateTime::now_utc();
    let period = format!(
        "{}-Q{}",
        today.year(),
        (u8::from(today.month()) - 1) / 3 + 1
    );
    let t = ccas_dpo
        .api()
        .indicators(ccas_dpo.req(pb::IndicatorsRequest {
            period: period.clone(),
        }))
        .await?
        .into_inner();
    let cells = |values: &[String]| {
        values
            .iter()
            .zip(&t.members)
            .map(|(v, m)| format!("{v:>w$}", w = m.len().max(5)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let head: Vec<String> = t.members.clone();
    say(format!(
        "{:<24} {:<20} {}  {:>6}",
        "indicator",
        "by",
        cells(&head),
        "total"
    ));
    for r in &t.rows {
        let by = if r.territory.is_empty() {
            r.by.clone()
        } else {
            format!("commune {}", r.territory)
        };
        say(format!(
            "{:<24} {:<20} {}  {:>6}",
            r.indicator,
            by,
            cells(&r.members),
            r.total
        ));
    }
    if !t.missing.is_empty() {
        return Err(CliError::Unexpected(format!(
            "members did not send their counts: {}",
            t.missing.join(", ")
        )));
    }
    Ok(())
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn say(text: impl AsRef<str>) {
    println!("   {}", text.as_ref());
}

/// Restarts every node with its web console on a free loopback port and
/// prints each console's address, the certificate pin a browser must be
/// told, and one-time login links (15 minutes) for its users.
async fn consoles(fed: &mut LocalFederation) -> Result<(), CliError> {
    println!("\nThe web consoles (French pages; each link works once, for 15 minutes):");
    for n in &mut fed.nodes {
        n.stop().await;
        let toml = maillon_node::config::Config::file(&n.dir);
        let text = crate::error::read_file(&toml)?;
        if !text.contains("console_listen") {
            let with_console = format!("console_listen = \"127.0.0.1:0\"\n{text}");
            crate::error::write_file(&toml, &with_console)?;
        }
        n.start(Arc::new(SystemClock)).await?;
        let admin = n.admin()?;
        let pin = base64::engine::general_purpose::STANDARD.encode(n.admin.server_spki_sha256.0);
        let address = n
            .running_node()?
            .node()
            .listening()
            .and_then(|l| l.console)
            .map_or_else(|| "not served".to_owned(), |a| format!("https://{a}/"));
        println!("   {} — {address}", n.id);
        println!(
            "      the browser must trust the node's own certificate: chromium --ignore-certificate-errors-spki-list={pin}"
        );
        // The demo's users; each node has some of them.
        for name in [
            "admin",
            "agent-ccas",
            "agent-caf",
            "agent-cd",
            "benevole-relais",
            "dpo",
        ] {
            let issued = admin
                .api()
                .issue_console_link(admin.req(pb::IssueConsoleLinkRequest { name: name.into() }))
                .await;
            match issued {
                Ok(link) => println!("      {name}: {}", link.into_inner().url),
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(s.into()),
            }
        }
    }
    Ok(())
}

/// Plays the demo; with `keep`, leaves the nodes running until Ctrl-C.
pub async fn run(keep: bool) -> Result<(), CliError> {
    let tmp = tempfile::Builder::new()
        .prefix("maillon-demo-")
        .tempdir()
        .map_err(CliError::io("creating a temporary folder"))?;
    let dir = tmp.path().to_owned();
    println!(
        "Maillon demo: a GIP founded by three partners, widened to a fourth by vote, on loopback, in {}",
        dir.display()
    );

    step(
        1,
        "The three founders initialise their nodes: signing key, TLS key, member card.",
    );
    // The convention lets the département's caseworkers break the glass for
    // 24 h (child protection), and erases closed dossiers after three years.
    let mut fed = LocalFederation::create_with(
        &dir,
        "gip-aveyron",
        &FOUNDERS[..3],
        Arc::new(SystemClock),
        |r| {
            r.charter.break_glass = Some(BreakGlassRule {
                kinds: [MemberKind::Departement].into(),
                roles: [Role::Caseworker].into(),
                hours: 24,
            });
            r.charter.retention_days = Some(3 * 365);
            // Vigilance alerts go to the CCAS, kept three months.
            r.charter.alerts = Some(maillon_node::roster::AlertRule {
                recipient: "ccas-rodez".parse().expect("a member id"),
                retention_days: 90,
            });
        },
    )
    .await?;
    for n in &fed.nodes {
        let r = n.running_node()?;
        say(format!(
            "{:<17} {:<36} peer API {}  client API {}",
            n.id,
            n.name,
            r.peer_addr(),
            r.client_addr()
        ));
    }
    let roster = load_roster(&dir.join("roster.json"))?;
    say(format!(
        "The three founders signed the genesis roster (convention constitutive, hash {}…); every node checked every signature before starting.",
        &roster.hash_hex()[..16]
    ));

    step(
        2,
        "The partnership widens: the GIP admits the charity Relais Solidaire by vote.",
    );
    admit_the_charity(&mut fed).await?;

    step(
        3,
        "Each node's admin creates its staff: caseworkers and an auditor.",
    );
    let ccas_cw = Conn::new(
        &fed.node("ccas-rodez")
            .add_user("agent-ccas", Role::Caseworker)
            .await?,
    )?;
    let caf_cw = Conn::new(
        &fed.node("caf12")
            .add_user("agent-caf", Role::Caseworker)
            .await?,
    )?;
    let cd_cw = Conn::new(
        &fed.node("cd12")
            .add_user("agent-cd", Role::Caseworker)
            .await?,
    )?;
    let charity_cw = Conn::new(
        &fed.node(CHARITY)
            .add_user("benevole-relais", Role::Caseworker)
            .await?,
    )?;
    let mut auditors = Vec::new();
    for n in &fed.nodes {
        auditors.push((
            n.id.clone(),
            Conn::new(&n.add_user("dpo", Role::Auditor).await?)?,
        ));
    }
    say(
        "agent-ccas at ccas-rodez, agent-caf at caf12, agent-cd at cd12, benevole-relais at relais-solidaire, and a DPO (auditor) at each node.",
    );

    step(
        4,
        "A person comes to the CCAS desk (accueil inconditionnel); the caseworker opens a dossier.",
    );
    let dossier = ccas_cw
        .open_dossier("Camille", "Martin", "1984-03-12")
        .await?;
    say(format!(
        "Dossier social unique {dossier}: the name stays at the CCAS, only this opaque id travels."
    ));
    let housing = r#"{"situation":"hébergée chez un tiers","depuis":"2026-09","demande_logement_social":true,"loyer_envisage":450}"#;
    let resources = r#"{"rsa":true,"montant_mensuel":635.71,"apl":false,"dettes":{"energie":820}}"#;
    let identity = r#"{"code_commune":"12202"}"#;
    for (section, json) in [
        ("identity", identity),
        ("housing", housing),
        ("resources", resources),
    ] {
        ccas_cw.put_section(&dossier, section, json).await?;
    }
    say(
        "The caseworker records the identity (the commune, Rodez), housing and resources sections at the CCAS node.",
    );
    caf_cw
        .attach_dossier(&dossier, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await?;
    caf_cw
        .put_section(
            &dossier,
            "resources",
            r#"{"allocataire":true,"prime_activite":false,"quotient_familial":412}"#,
        )
        .await?;
    caf_cw
        .put_section(
            &dossier,
            "household",
            r#"{"enfants":[{"age":4}],"parent_isole":true}"#,
        )
        .await?;
    say(format!(
        "At the CAF desk the person gives the reference {dossier}: the CCAS confirms it holds that dossier (nothing more), the CAF attaches to it, types the identity in its own record, and writes its own resources and household sections."
    ));
    cd_cw
        .attach_dossier(&dossier, "ccas-rodez", ("Camille", "Martin", "1984-03-12"))
        .await?;
    say("The département's desk attaches to the same dossier the same way.");

    step(
        5,
        "The person consents: housing and resources to the CAF and the département, housing to the charity; at the CAF, its resources to the département.",
    );
    let until = time::OffsetDateTime::now_utc().date() + time::Duration::days(182);
    let (sections, purpose) = (["housing", "resources"], "coordination du parcours");
    let until_text = until.to_string();
    let consent = ccas_cw
        .api()
        .grant_consent(ccas_cw.req(pb::GrantConsentRequest {
            dossier: dossier.clone(),
            sections: sections.iter().map(|s| s.to_string()).collect(),
            audience: vec!["caf12".into()],
            purpose: purpose.into(),
            until: until_text.clone(),
            collection: "signed_form".into(),
            form_reference: "CCAS-RODEZ-2026-0117".into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .consent;
    let consent_cd = ccas_cw
        .grant_consent(&dossier, &sections, &["cd12"], purpose, &until_text)
        .await?;
    let consent_charity = ccas_cw
        .grant_consent(
            &dossier,
            &["housing"],
            &[CHARITY],
            "accompagnement vers le logement",
            &until_text,
        )
        .await?;
    caf_cw
        .grant_consent(&dossier, &["resources"], &["cd12"], purpose, &until_text)
        .await?;
    let dossier_id: DossierId = dossier.parse().map_err(|source| CliError::BadReply {
        what: "dossier id",
        source,
    })?;
    let ccas_id: MemberId = fed.node("ccas-rodez").id.clone();
    let housing_share = ShareId {
        dossier: dossier_id.clone(),
        section: Section::Housing,
        owner: ccas_id.clone(),
    };
    let ccas = fed.node("ccas-rodez").running_node()?.node().clone();
    let members = ccas.share_members(&housing_share).await?;
    say(format!(
        "Consents {consent} (CAF, signed form), {consent_cd} (département, oral) and {consent_charity} (charity) are signed by the CCAS node and logged, until {until}."
    ));
    say(format!(
        "The CCAS fetched KeyPackages and sent MLS Welcomes: the housing group now holds {}.",
        members
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let receipt = ccas_cw
        .api()
        .show_consent(ccas_cw.req(pb::ShowConsentRequest {
            consent: consent.clone(),
        }))
        .await?
        .into_inner();
    say("The person leaves with a receipt (consent show; --json gives the signed JSON):");
    for line in receipt.receipt_text.lines().take(12) {
        println!("   | {}", escape_controls(line));
    }

    step(
        6,
        "The CCAS caseworker is named référent de parcours; every partner holding the dossier is told.",
    );
    ccas_cw
        .set_referent(&dossier, "agent-ccas@ccas-rodez", None)
        .await?;
    ccas_cw
        .put_section(
            &dossier,
            "support_plan",
            r#"{"objectifs":["logement stable"],"actions":["dossier FSL","rendez-vous CAF"],"rendez_vous":["2027-01-12"]}"#,
        )
        .await?;
    let as_referent = ccas_cw
        .view_dossier_whole(&dossier, "coordination du parcours")
        .await?;
    say(
        "agent-ccas writes the support plan, and sees how fresh each partner's sections are (never their content):",
    );
    for p in &as_referent.partners {
        let sections: Vec<&str> = p.sections.iter().map(|s| s.section.as_str()).collect();
        say(format!(
            "  {:<17} {}",
            p.member,
            if sections.is_empty() {
                "no section yet".to_owned()
            } else {
                sections.join(", ")
            }
        ));
    }

    step(
        7,
        "At the CAF, a caseworker reads the housing section from the CCAS; the département opens the unified dossier.",
    );
    let read = |conn: &Conn| {
        let (conn, dossier) = (conn.clone(), dossier.clone());
        async move {
            let purpose = "étude du droit aux aides au logement";
            conn.read_share(&dossier, "housing", "ccas-rodez", purpose)
                .await
        }
    };
    let got = read(&caf_cw).await?;
    say(
        "The CAF node signed the request; the CCAS node checked roster, charter, consent and freshness,",
    );
    say(format!(
        "made the access durable in its audit log (entry {}), and answered with the section sealed in MLS.",
        got.receipt_leaf.unwrap_or_default()
    ));
    say(format!("The CAF caseworker sees: {}", got.json));
    let view = cd_cw
        .view_dossier(&dossier, "orientation vers l'insertion")
        .await?;
    say(format!(
        "dossier view at the département: {} sections from two partners, fetched at once, one request per partner:",
        view.len()
    ));
    for v in &view {
        say(format!(
            "  {:<10} from {:<11} {} ({} {})",
            v.section, v.owner, v.status, v.basis, v.basis_id
        ));
    }
    let charity_read = charity_cw
        .read_share(
            &dossier,
            "housing",
            "ccas-rodez",
            "recherche d'un hébergement",
        )
        .await?;
    say(format!(
        "The charity, admitted by vote, reads the housing section it was given: {}",
        charity_read.json
    ));

    step(
        8,
        "An evening alert: a child may be at risk. The département's caseworker breaks the glass on the CAF's household section.",
    );
    let why = "Signalement ce soir : enfant de quatre ans peut-être seul au domicile, vérification urgente";
    let glass = cd_cw
        .read_shares(
            &dossier,
            &["household"],
            "caf12",
            "protection de l'enfance",
            Some(why),
        )
        .await?;
    let grant = glass
        .first()
        .map(|v| v.basis_id.clone())
        .unwrap_or_default();
    say(format!(
        "No consent covers it; the charter allows it: the CAF granted {grant} for 24 h, flagged in its log and the département's, and read: {}",
        glass.first().map(|v| v.json.as_str()).unwrap_or("")
    ));
    let ccas_dpo = &auditors
        .iter()
        .find(|(id, _)| id.as_str() == "ccas-rodez")
        .ok_or_else(|| CliError::Unexpected("no auditor at ccas-rodez".into()))?
        .1;
    let told = ccas_dpo
        .api()
        .list_break_glass(ccas_dpo.req(pb::ListBreakGlassRequest { pending: true }))
        .await?
        .into_inner()
        .accesses;
    say(format!(
        "The référent's member (the CCAS) was told: its auditor sees {} access(es) pending review.",
        told.len()
    ));
    let caf_dpo = &auditors
        .iter()
        .find(|(id, _)| id.as_str() == "caf12")
        .ok_or_else(|| CliError::Unexpected("no auditor at caf12".into()))?
        .1;
    caf_dpo
        .api()
        .review_break_glass(caf_dpo.req(pb::ReviewBreakGlassRequest {
            id: grant.clone(),
            comment: "Signalement transmis à la CRIP, accès proportionné et limité au foyer".into(),
        }))
        .await?;
    say(format!(
        "The CAF's auditor reviews {grant} (audit break-glass --pending, then audit review)."
    ));

    step(
        9,
        "The person withdraws the consent given to the CAF; the CCAS caseworker records the revocation.",
    );
    ccas_cw.revoke_consent(&consent).await?;
    let members = ccas.share_members(&housing_share).await?;
    say(format!(
        "The CCAS committed an MLS Remove: the housing group now holds {} — anything sealed from now on is unreadable to the CAF.",
        members
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    match read(&caf_cw).await {
        Err(s) if s.code() == Code::PermissionDenied => {
            say(format!(
                "The CAF's next read is refused: PermissionDenied — {}",
                escape_controls(s.message())
            ));
        }
        Err(s) => {
            return Err(CliError::Unexpected(format!(
                "expected a refusal, got {}",
                crate::exit::one_line(&s)
            )));
        }
        Ok(_) => {
            return Err(CliError::Unexpected(
                "the CAF could still read after revocation".into(),
            ));
        }
    }

    step(
        10,
        "Every node checkpoints its log and witnesses its peers (cosigning their checkpoints); the CCAS's auditor verifies every member's log and each against the others (audit verify --all):",
    );
    for n in &fed.nodes {
        n.running_node()?.node().checkpoint_if_grown().await?;
    }
    for n in &fed.nodes {
        n.running_node()?.node().witness_peers().await;
    }
    let genesis = load_roster(&fed.dir.join("roster.json"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (bundles, unfetched) = fetch_bundles(ccas_dpo, genesis.signed(), None, true).await?;
    let mut outcome = verify_bundles(genesis.signed(), &bundles, None, now);
    outcome.findings.extend(unfetched);
    for line in outcome.text() {
        // Reasons quote what nodes served.
        say(escape_controls(&line));
    }
    if outcome.failed() {
        return Err(CliError::AuditFailed {
            findings: outcome.findings.len(),
            what: "the demo's logs do not all verify",
        });
    }

    step(
        11,
        "The person asks « qui a consulté mon dossier ? » — the access report, gathered from every partner holding a part of the dossier, each entry proven in its signed and witnessed log (audit report):",
    );
    let report = crate::audit::report::gather(ccas_dpo, genesis.signed(), &dossier_id, now).await?;
    println!();
    for line in report.text().lines() {
        // The report quotes readers' purposes.
        println!("   | {}", escape_controls(line));
    }
    if !report.anomalies.is_empty() {
        return Err(CliError::AuditFailed {
            findings: report.anomalies.len(),
            what: "the demo's access report has anomalies",
        });
    }

    second_act(&fed, &ccas_cw, &caf_cw, ccas_dpo, &dossier).await?;

    if keep {
        println!("\nThe nodes keep running. Profiles (0600) are in each node folder, for example:");
        for n in &fed.nodes {
            println!(
                "   maillon --profile {} whoami",
                n.dir.join("admin.profile.toml").display()
            );
        }
        let profile =
            |member: &str, user: &str| fed.node(member).dir.join(format!("{user}.profile.toml"));
        println!(
            "   maillon --profile {} share read {dossier} housing --from ccas-rodez   # allowed",
            profile("cd12", "agent-cd").display()
        );
        println!(
            "   maillon --profile {} share read {dossier} housing --from ccas-rodez   # refused: consent revoked",
            profile("caf12", "agent-caf").display()
        );
        println!(
            "   maillon --profile {} audit tail",
            profile("ccas-rodez", "dpo").display()
        );
        // A node held here would keep its store open through the restart.
        drop(ccas);
        consoles(&mut fed).await?;
        println!(
            "Press Ctrl-C to stop them; the folder {} is kept.",
            dir.display()
        );
        let _ = tmp.keep();
        tokio::signal::ctrl_c()
            .await
            .map_err(CliError::io("waiting for Ctrl-C"))?;
    }
    fed.stop().await;
    println!("\nDemo complete.");
    Ok(())
}
