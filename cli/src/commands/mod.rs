//! What each command does, one file per command family; `run` dispatches.

mod aids;
mod alert;
mod audit;
mod backup;
pub mod check;
mod commission;
mod consent;
mod dossiers;
pub mod gov;
mod indicators;
mod node;
mod orient;
mod share;
mod users;

use std::path::Path;
use std::str::FromStr;

use maillon_node::config::Profile;
use maillon_node::types::ParseError;

use crate::args::{Args, Command};
use crate::client::Conn;
use crate::error::CliError;
use crate::escape::escape_controls;

/// The completion script of `maillon` for `shell`, generated from the
/// argument definitions.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = <Args as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "maillon", &mut script);
    script
}

/// Writes a manual page for `maillon` and one for each of its commands, all
/// generated from the argument definitions, into `out`.
fn man_pages(out: &std::path::Path) -> Result<(), CliError> {
    std::fs::create_dir_all(out).map_err(CliError::io("creating the manual pages' folder"))?;
    let cmd = <Args as clap::CommandFactory>::command();
    clap_mangen::generate_to(cmd, out).map_err(CliError::io("writing the manual pages"))?;
    say(&format!("manual pages written to {}", out.display()));
    Ok(())
}

/// Runs one command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let profile = args.profile.as_deref();
    let json = args.json;
    match args.command {
        Command::Node(cmd) => node::run(cmd, profile, json).await,
        Command::Gov(cmd) => gov::run(cmd, profile, json).await,
        Command::Demo { keep } => crate::demo::run(keep).await,
        Command::Completions { shell } => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&completion_script(shell))
                .map_err(CliError::io("writing the completion script"))
        }
        Command::Man { out } => man_pages(&out),
        Command::Bench {
            adoption, rounds, ..
        } if !adoption.is_empty() => crate::bench::adoption(&adoption, rounds.max(1)).await,
        Command::Bench {
            soak: Some(reads),
            concurrency,
            ..
        } => crate::bench::soak(reads, concurrency.max(1)).await,
        Command::Bench {
            reads, concurrency, ..
        } => crate::bench::run(reads, concurrency.max(1)).await,
        Command::BenchRelayHop {
            listen,
            identity,
            client_pin,
            next,
            next_pin,
        } => crate::bench::relay_hop(listen, &identity, client_pin, next.zip(next_pin)).await,
        Command::Whoami => users::whoami(&connect(profile)?.1, json).await,
        Command::Outbox => users::outbox(&connect(profile)?.1, json).await,
        Command::User(cmd) => {
            let (profile, conn) = connect(profile)?;
            users::run(&profile, &conn, cmd, json).await
        }
        Command::Dossier(cmd) => dossiers::dossier(&connect(profile)?.1, cmd, json).await,
        Command::Section(cmd) => dossiers::section(&connect(profile)?.1, cmd, json).await,
        Command::Consent(cmd) => consent::run(&connect(profile)?.1, cmd, json).await,
        Command::Share(cmd) => share::run(&connect(profile)?.1, cmd, json).await,
        Command::Audit(cmd) => audit::run(profile, cmd, json).await,
        Command::Aids(cmd) => aids::run(&connect(profile)?.1, cmd, json).await,
        Command::Orient(args) => orient::run(&connect(profile)?.1, args, json).await,
        Command::Alert(cmd) => alert::run(&connect(profile)?.1, cmd, json).await,
        Command::Commission(cmd) => commission::run(&connect(profile)?.1, cmd, json).await,
        Command::Indicators { period, csv } => {
            indicators::run(&connect(profile)?.1, &period, csv, json).await
        }
    }
}

/// The profile a command talks to a node with, and a (lazy) connection to it.
pub(crate) fn connect(path: Option<&Path>) -> Result<(Profile, Conn), CliError> {
    let path = path.ok_or(CliError::NoProfile)?;
    let profile = Profile::read(path)?;
    let conn = Conn::new(&profile)?;
    Ok((profile, conn))
}

/// Parses the value of the command-line argument `--name`.
fn arg<T: FromStr<Err = ParseError>>(name: &'static str, value: &str) -> Result<T, CliError> {
    value.parse().map_err(CliError::bad_arg(name))
}

/// Prints `value` as pretty JSON (`--json`): one value, still valid JSON,
/// with no control character or bidi mark left raw (see
/// [`crate::escape::json_text`]).
pub(crate) fn print_value(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    println!("{}", crate::escape::json_text(&text));
}

/// What an action did: `value` as JSON with `--json`, else `text` on one line.
pub(crate) fn done(json: bool, value: serde_json::Value, text: &str) {
    if json {
        print_value(&value);
    } else {
        say(text);
    }
}

/// Prints one line of text that came from a node, control characters escaped.
fn say(line: &str) {
    println!("{}", escape_controls(line));
}

/// Prints a node's multi-line text line by line, control characters escaped.
fn say_lines(text: &str) {
    for line in text.lines() {
        say(line);
    }
}

/// Prints a section: pretty JSON when it is JSON, else the text on one escaped line.
fn print_json(json: &str) {
    match serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
    {
        // serde_json escapes C0 controls inside strings; `say_lines` catches
        // DEL, C1 controls and bidi overrides, which it leaves as they are.
        Ok(pretty) => say_lines(&pretty),
        Err(_) => say(json),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Prints sections read from one or more owners (`dossier view`, `share
/// read`): each with its owner, when it was last written and on what it was
/// read, or why not; `--json` as one object with stable field names.
fn print_sections(dossier: &str, sections: &[maillon_proto::v1::ViewedSection], json: bool) {
    if json {
        print_value(&sections_json(dossier, sections));
        return;
    }
    print_sections_text(sections);
}

/// Sections read, as one JSON object `{dossier, sections: [...]}`.
fn sections_json(
    dossier: &str,
    sections: &[maillon_proto::v1::ViewedSection],
) -> serde_json::Value {
    {
        let items: Vec<serde_json::Value> = sections
            .iter()
            .map(|v| {
                let ok = v.status == "ok";
                let content = serde_json::from_str::<serde_json::Value>(&v.json)
                    .unwrap_or(serde_json::Value::Null);
                serde_json::json!({
                    "owner": v.owner,
                    "section": v.section,
                    "status": v.status,
                    "reason": (!v.reason.is_empty()).then_some(&v.reason),
                    "message": (!v.message.is_empty()).then_some(&v.message),
                    "written_at": ok.then_some(v.written_at),
                    "basis": ok.then_some(&v.basis),
                    "basis_id": (!v.basis_id.is_empty()).then_some(&v.basis_id),
                    "receipt_leaf": v.receipt_leaf,
                    "content": content,
                })
            })
            .collect();
        serde_json::json!({
            "dossier": dossier,
            "sections": items,
        })
    }
}

/// Sections read, as text: each with its owner, last write and basis.
fn print_sections_text(sections: &[maillon_proto::v1::ViewedSection]) {
    for v in sections {
        match v.status.as_str() {
            "ok" => {
                let basis = match v.basis.as_str() {
                    "own" => "this node's own".to_owned(),
                    "break_glass" => format!("BREAK-GLASS {}", v.basis_id),
                    other => format!("{other} {}", v.basis_id),
                };
                say(&format!(
                    "== {} from {} (written {}; {basis})",
                    v.section,
                    v.owner,
                    utc(v.written_at)
                ));
                print_json(&v.json);
            }
            status => say(&format!(
                "== {} from {}: {status} ({}): {}",
                v.section, v.owner, v.reason, v.message
            )),
        }
    }
}
