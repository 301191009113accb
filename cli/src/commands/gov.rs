//! `maillon gov …`: build, sign and verify the genesis roster (GIP assembly).

use std::io::{BufRead, Write};
use std::path::Path;

use maillon_node::config::Config;
use maillon_node::crypto::NodeKey;
use maillon_node::roster::{
    Charter, MemberCard, Roster, RosterError, SignedRoster, VerifiedRoster,
};
use maillon_node::types::{MemberId, MemberKind};

use crate::args::GovCmd;
use crate::error::{CliError, read_file, roster_json, write_file};
use crate::escape::escape_controls;

/// Runs `maillon gov …`; `gov sign` asks on standard input unless `--yes`.
pub(super) fn run(cmd: GovCmd) -> Result<(), CliError> {
    match cmd {
        GovCmd::Genesis {
            federation,
            quorum,
            cards,
            charter,
            out,
        } => {
            let mut parsed = Vec::new();
            for path in &cards {
                parsed.push(parse_json::<MemberCard>(path, "member card")?);
            }
            let charter = match charter {
                Some(path) => parse_json::<Charter>(&path, "charter")?,
                None => Charter::default(),
            };
            let quorum = quorum.parse().map_err(CliError::BadQuorum)?;
            let roster = Roster::genesis(&federation, quorum, parsed, charter)?;
            write_new(&out, &roster_json(&SignedRoster::unsigned(roster))?)?;
            println!(
                "genesis roster written to {}; every founder now signs it with `maillon gov sign`",
                out.display()
            );
            Ok(())
        }
        GovCmd::Sign { roster, dir, yes } => sign(&roster, &dir, yes, std::io::stdin().lock()),
        GovCmd::Verify { roster } => {
            let v = load_roster(&roster)?;
            let r = v.roster();
            println!(
                "{} roster v{} ({}), quorum {}",
                r.federation,
                r.version,
                v.hash_hex(),
                r.quorum
            );
            for m in &r.members {
                println!(
                    "  {:<16} {:<12} {:<22} {}",
                    m.card.id,
                    m.card.kind,
                    escape_controls(&m.card.endpoint),
                    escape_controls(&m.card.name)
                );
            }
            println!("every founder has signed: the roster is valid");
            Ok(())
        }
    }
}

/// `maillon gov sign ROSTER --dir DIR`: shows what the node at `dir` would
/// sign, asks `sign? [y/N]` and reads the answer from `answers` (unless
/// `yes`), then adds the node's signature to the roster file. Any answer but
/// `y` or `yes` leaves the file as it was and returns [`CliError::NotSigned`].
pub fn sign(roster: &Path, dir: &Path, yes: bool, answers: impl BufRead) -> Result<(), CliError> {
    let mut signed = read_roster(roster)?;
    let config = Config::load(dir)?;
    if signed.roster.member(&config.member).is_none() {
        return Err(RosterError::NotAMember(config.member).into());
    }
    let key = NodeKey::read(&config.signing_key_path())?;
    print!("{}", describe(&signed, &config.member));
    if !yes && !confirmed(answers)? {
        return Err(CliError::NotSigned);
    }
    signed.sign(&config.member, &key)?;
    write_file(roster, &roster_json(&signed)?)?;
    match signed.verify_genesis() {
        Ok(_) => println!(
            "signed by {}; the roster now carries every founder's signature",
            config.member
        ),
        Err(e) => println!("signed by {}; still needed: {e}", config.member),
    }
    Ok(())
}

/// Reads and verifies a genesis roster: a file that is not a roster is bad
/// input; a roster that lacks or forges a founder's signature is refused.
pub fn load_roster(path: &Path) -> Result<VerifiedRoster, CliError> {
    Ok(read_roster(path)?.verify_genesis()?)
}

fn read_roster(path: &Path) -> Result<SignedRoster, CliError> {
    parse_json(path, "roster")
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, CliError> {
    serde_json::from_str(&read_file(path)?).map_err(|source| CliError::BadFile {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, text: &str) -> Result<(), CliError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::Exists {
                path: path.to_owned(),
            },
            _ => CliError::io(format!("creating {}", path.display()))(e),
        })?;
    file.write_all(text.as_bytes())
        .map_err(CliError::io(format!("writing {}", path.display())))
}

/// Asks `sign? [y/N]` on standard error; true only for `y` or `yes`.
fn confirmed(mut answers: impl BufRead) -> Result<bool, CliError> {
    eprint!("sign? [y/N] ");
    // The prompt is a courtesy: if standard error is gone, the answer still decides.
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let read = answers
        .read_line(&mut answer)
        .map_err(CliError::io("reading the answer"))?;
    if read == 0 {
        eprintln!(); // no answer at all: end the prompt's line
    }
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// What a founder signs: the federation, every member and its voting right,
/// the quorum, and the charter. Text from the founders' cards is escaped.
fn describe(signed: &SignedRoster, signer: &MemberId) -> String {
    let r = &signed.roster;
    let mut out = format!(
        "roster of federation {}, version {} ({})\n",
        escape_controls(&r.federation),
        r.version,
        match &r.previous {
            None => "genesis".to_owned(),
            Some(p) => format!("follows {}", escape_controls(p)),
        }
    );
    out += &format!(
        "quorum for later changes: {} of the voting members\n",
        r.quorum
    );
    out += &format!("members ({}):\n", r.members.len());
    for m in &r.members {
        out += &format!(
            "  {:<16} {:<12} {:<22} {:<8} {:<9} {}\n",
            m.card.id,
            m.card.kind,
            escape_controls(&m.card.endpoint),
            if m.voting { "votes" } else { "no vote" },
            m.status,
            escape_controls(&m.card.name)
        );
    }
    let builtin = r.charter == Charter::default();
    out += &format!(
        "charter, what each kind of member may ever receive ({}):\n",
        if builtin {
            "the built-in charter"
        } else {
            "NOT the built-in charter"
        }
    );
    for kind in MemberKind::ALL {
        let sections = r
            .charter
            .receivable
            .get(kind)
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "nothing".into());
        out += &format!("  {:<12} {sections}\n", kind.as_str());
    }
    let signers: Vec<&str> = signed
        .signatures
        .iter()
        .map(|s| s.signer.as_str())
        .collect();
    out += &format!(
        "signed so far by: {}\n",
        if signers.is_empty() {
            "nobody".to_owned()
        } else {
            signers.join(", ")
        }
    );
    out += &format!("you sign as {signer}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::confirmed;

    #[test]
    fn only_y_or_yes_confirms() {
        for (answer, expected) in [
            ("y\n", true),
            ("YES\n", true),
            (" yes \n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
            ("oui\n", false),
            ("yes please\n", false),
        ] {
            assert_eq!(
                confirmed(answer.as_bytes()).expect("an answer is read"),
                expected,
                "{answer:?}"
            );
        }
    }
}
