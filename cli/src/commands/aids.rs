//! `maillon aids …`: the census of aids the members offer (search, show and
//! export it; publish and withdraw this member's services).

use std::io::Write as _;

use maillon_node::census::{self, Service, SignedEntry};
use maillon_node::protocol::SignedBytes;
use maillon_proto::v1 as pb;

use super::{done, print_value, say, utc};
use crate::args::{AidsCmd, ExportFormat};
use crate::client::Conn;
use crate::error::CliError;

/// Runs `maillon aids …`.
pub(super) async fn run(conn: &Conn, cmd: AidsCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        AidsCmd::Search {
            text,
            category,
            near,
            open_now,
        } => {
            let found = search(conn, text, category, near, open_now).await?;
            if json {
                print_value(&serde_json::json!({
                    "services": found.iter().map(entry_json).collect::<Vec<_>>(),
                }));
            } else if found.is_empty() {
                say("no service in the census answers this search");
            } else {
                for e in &found {
                    say(&summary(e));
                }
            }
        }
        AidsCmd::Match { dossier, purpose } => {
            let dossier: maillon_node::types::DossierId = super::arg("dossier", &dossier)?;
            let r = conn
                .api()
                .match_aids(conn.req(pb::MatchAidsRequest {
                    dossier: dossier.to_string(),
                    purpose,
                }))
                .await?
                .into_inner();
            print_match(&dossier, r, json)?;
        }
        AidsCmd::Show { service } => {
            let (member, id) = service
                .split_once('/')
                .ok_or_else(|| CliError::BadArgument {
                    arg: "service",
                    source: maillon_node::types::ParseError::new(
                        "service",
                        "MEMBER/ID, e.g. caf12/aide-logement",
                    ),
                })?;
            let member: maillon_node::types::MemberId = super::arg("service", member)?;
            let r = conn
                .api()
                .get_aid(conn.req(pb::GetAidRequest {
                    member: member.to_string(),
                    service: id.to_owned(),
                }))
                .await?
                .into_inner();
            let e = decode(r)?;
            if json {
                print_value(&entry_json(&e));
            } else {
                for line in details(&e) {
                    say(&line);
                }
            }
        }
        AidsCmd::Publish { file } => {
            let bytes = std::fs::read(&file)
                .map_err(CliError::io(format!("reading {}", file.display())))?;
            // Checked here first: a bad file is the operator's to mend.
            Service::from_json(&bytes).map_err(|e| CliError::BadService {
                path: file.clone(),
                reason: e.to_string(),
            })?;
            let r = conn
                .api()
                .publish_aid(conn.req(pb::PublishAidRequest {
                    service: bytes,
                    withdraw: String::new(),
                }))
                .await?
                .into_inner();
            let e = decode(r)?;
            done(
                json,
                published_json(&e),
                &format!(
                    "published {}/{} as version {}; offered to every member",
                    e.entry.member, e.entry.service.id, e.entry.version
                ),
            );
        }
        AidsCmd::Withdraw { service } => {
            let r = conn
                .api()
                .publish_aid(conn.req(pb::PublishAidRequest {
                    service: Vec::new(),
                    withdraw: service,
                }))
                .await?
                .into_inner();
            let e = decode(r)?;
            done(
                json,
                published_json(&e),
                &format!(
                    "withdrew {}/{} (version {}); offered to every member",
                    e.entry.member, e.entry.service.id, e.entry.version
                ),
            );
        }
        AidsCmd::Export { format, out } => {
            let found = search(conn, None, None, None, false).await?;
            let text = match format {
                ExportFormat::Hsds => {
                    let mut text = serde_json::to_string_pretty(&census::hsds_json(&found))
                        .unwrap_or_default();
                    text.push('\n');
                    text
                }
                ExportFormat::Csv => census::csv(&found),
            };
            match out {
                None => {
                    let mut stdout = std::io::stdout();
                    stdout
                        .write_all(text.as_bytes())
                        .map_err(CliError::io("writing the export"))?;
                }
                Some(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::AlreadyExists => {
                                CliError::Exists { path: path.clone() }
                            }
                            _ => CliError::io(format!("creating {}", path.display()))(e),
                        })?;
                    file.write_all(text.as_bytes())
                        .map_err(CliError::io(format!("writing {}", path.display())))?;
                    done(
                        json,
                        serde_json::json!({ "file": path, "services": found.len() }),
                        &format!("{} services written to {}", found.len(), path.display()),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Asks the node for the services in force that answer the filters given.
async fn search(
    conn: &Conn,
    text: Option<String>,
    category: Option<String>,
    near: Option<String>,
    open_now: bool,
) -> Result<Vec<SignedEntry>, CliError> {
    let r = conn
        .api()
        .search_aids(conn.req(pb::SearchAidsRequest {
            text: text.unwrap_or_default(),
            category: category.unwrap_or_default(),
            near: near.unwrap_or_default(),
            open_now,
        }))
        .await?
        .into_inner();
    r.entries.into_iter().map(decode).collect()
}

/// A census entry from this user's own node (which checked its signature
/// when it came).
fn decode(e: pb::CensusEntry) -> Result<SignedEntry, CliError> {
    let bad = || CliError::BadReply {
        what: "census entry",
        source: maillon_node::types::ParseError::new("census entry", "it does not decode"),
    };
    let signature = maillon_node::crypto::Signature::from_bytes(&e.signature).map_err(|_| bad())?;
    SignedEntry::stored(SignedBytes {
        bytes: e.entry,
        signature,
    })
    .map_err(|_| bad())
}

/// What `publish` and `withdraw` print with `--json`.
fn published_json(e: &SignedEntry) -> serde_json::Value {
    serde_json::json!({
        "member": e.entry.member.to_string(),
        "id": e.entry.service.id,
        "version": e.entry.version,
        "withdrawn": e.entry.withdrawn,
    })
}

/// One entry with `--json`: its member, version, state and the service.
fn entry_json(e: &SignedEntry) -> serde_json::Value {
    serde_json::json!({
        "member": e.entry.member.to_string(),
        "id": e.entry.service.id,
        "version": e.entry.version,
        "published_at": e.entry.published_at,
        "withdrawn": e.entry.withdrawn,
        "service": e.entry.service,
    })
}

/// One line of a search's answer.
fn summary(e: &SignedEntry) -> String {
    let s = &e.entry.service;
    let cities: Vec<&str> = s.locations.iter().map(|l| l.city.as_str()).collect();
    let place = if cities.is_empty() {
        String::new()
    } else {
        format!(" ({})", cities.join(", "))
    };
    format!(
        "{}/{}  {} — {}{place}",
        e.entry.member, s.id, s.name, s.organization.name
    )
}

/// What `show` prints.
fn details(e: &SignedEntry) -> Vec<String> {
    let s = &e.entry.service;
    let mut lines = vec![
        format!(
            "{}/{} — {}{}",
            e.entry.member,
            s.id,
            s.name,
            if e.entry.withdrawn {
                " (WITHDRAWN)"
            } else {
                ""
            }
        ),
        format!(
            "  version {}, published {} by the node of {}",
            e.entry.version,
            utc(e.entry.published_at),
            e.entry.member
        ),
        format!("  run by {}", s.organization.name),
    ];
    if !s.categories.is_empty() {
        lines.push(format!("  categories: {}", s.categories.join(", ")));
    }
    lines.extend(s.description.lines().map(|l| format!("  {l}")));
    if !s.eligibility_description.is_empty() {
        lines.push(format!("  eligibility: {}", s.eligibility_description));
    }
    let criteria = s.criteria.describe();
    if !criteria.is_empty() {
        lines.push(format!("  criteria: {}", criteria.join("; ")));
    }
    for l in &s.locations {
        let address = [l.address.as_str(), &format!("{} {}", l.postal_code, l.city)]
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(format!("  where: {}, {address}", l.name));
    }
    for h in &s.schedules {
        lines.push(format!(
            "  open: {} {}–{}",
            h.byday.join(", "),
            h.opens_at,
            h.closes_at
        ));
    }
    for c in &s.contacts {
        let ways: Vec<&str> = c.phone.iter().chain(&c.email).map(String::as_str).collect();
        lines.push(format!("  contact: {} {}", c.name, ways.join(", ")));
    }
    if !s.languages.is_empty() {
        lines.push(format!("  languages: {}", s.languages.join(", ")));
    }
    lines.push(if s.cost.free {
        "  cost: free".to_owned()
    } else {
        format!("  cost: {}", s.cost.description)
    });
    if let Some(url) = &s.url {
        lines.push(format!("  {url}"));
    }
    lines
}

/// What `aids match` prints.
fn print_match(
    dossier: &maillon_node::types::DossierId,
    r: pb::MatchAidsReply,
    json: bool,
) -> Result<(), CliError> {
    let mut proposed = Vec::new();
    for p in r.proposed {
        let entry = decode(p.entry.unwrap_or_default())?;
        proposed.push((entry, p.checks));
    }
    let sources = |list: &[pb::SectionSource]| {
        list.iter()
            .map(|s| {
                serde_json::json!({
                    "owner": s.owner,
                    "section": s.section,
                    "reason": (!s.reason.is_empty()).then_some(&s.reason),
                })
            })
            .collect::<Vec<_>>()
    };
    if json {
        print_value(&serde_json::json!({
            "dossier": dossier.to_string(),
            "proposed": proposed.iter().map(|(e, checks)| {
                let mut value = entry_json(e);
                value["checks"] = checks.iter().map(|c| serde_json::json!({
                    "criterion": c.criterion,
                    "wanted": c.wanted,
                    "outcome": c.outcome,
                    "found": (!c.found.is_empty()).then_some(&c.found),
                    "needs": c.needs,
                })).collect();
                value
            }).collect::<Vec<_>>(),
            "excluded": r.excluded,
            "read": sources(&r.read),
            "unread": sources(&r.unread),
        }));
        return Ok(());
    }
    let named = |list: &[pb::SectionSource]| {
        list.iter()
            .map(|s| format!("{} ({})", s.section, s.owner))
            .collect::<Vec<_>>()
            .join(", ")
    };
    say(&format!(
        "sections read: {}",
        if r.read.is_empty() {
            "none".to_owned()
        } else {
            named(&r.read)
        }
    ));
    for s in &r.unread {
        say(&format!(
            "not readable: {} ({}): {}",
            s.section, s.owner, s.reason
        ));
    }
    say(&format!(
        "{} service{} proposed; {} left out, a criterion not met",
        proposed.len(),
        if proposed.len() == 1 { "" } else { "s" },
        r.excluded
    ));
    for (e, checks) in &proposed {
        say(&summary(e));
        if checks.is_empty() {
            say("    no criterion: open to anyone");
        }
        for c in checks {
            match c.outcome.as_str() {
                "met" => say(&format!("    met: {} ({})", c.wanted, c.found)),
                _ if c.needs.is_empty() => say(&format!(
                    "    not checked: {} (no section tells it)",
                    c.wanted
                )),
                _ => say(&format!(
                    "    not checked: {} (needs {})",
                    c.wanted,
                    c.needs.join(" or ")
                )),
            }
        }
    }
    Ok(())
}
