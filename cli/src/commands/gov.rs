//! `maillon gov …`: build, sign and verify the genesis roster (GIP
//! assembly), and the federation's later versions: propose, list, show,
//! approve, reject, status (through this member's node).

use std::io::{BufRead, Write};
use std::path::Path;

use maillon_node::config::Config;
use maillon_node::crypto::NodeKey;
use maillon_node::roster::{
    self, Charter, MemberCard, Roster, RosterError, SignedRoster, VerifiedRoster,
};
use maillon_node::types::{MemberId, MemberKind};

use maillon_node::roster::Change;
use maillon_proto::v1 as pb;

use super::{connect, say};
use crate::args::{GovCmd, ProposeCmd};
use crate::client::Conn;
use crate::error::{CliError, read_file, roster_json, write_file};
use crate::escape::escape_controls;

/// Runs `maillon gov …`; `gov sign` asks on standard input unless `--yes`.
/// The commands on later versions talk to this member's node (`profile`).
pub(super) async fn run(cmd: GovCmd, profile: Option<&Path>, json: bool) -> Result<(), CliError> {
    match cmd {
        GovCmd::Propose(change) => {
            let (change, reason) = change_of(change)?;
            let conn = connect(profile)?.1;
            let change =
                serde_json::to_string(&change).map_err(|e| CliError::Unexpected(e.to_string()))?;
            let r = conn
                .api()
                .gov_propose(conn.req(pb::GovProposeRequest {
                    change,
                    reason: reason.unwrap_or_default(),
                }))
                .await?
                .into_inner();
            report(&r, json);
            Ok(())
        }
        GovCmd::List => {
            let conn = connect(profile)?.1;
            let r = conn
                .api()
                .gov_list(conn.req(pb::GovListRequest {}))
                .await?
                .into_inner();
            if json {
                super::print_value(&serde_json::json!({
                    "version": r.version,
                    "proposals": r.proposals.iter().map(proposal_json).collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            if r.proposals.is_empty() {
                println!("no open proposal; roster v{} is in force", r.version);
            }
            for p in &r.proposals {
                print!("{}", summary(p));
            }
            Ok(())
        }
        GovCmd::Show { proposal, out } => {
            let conn = connect(profile)?.1;
            let r = conn
                .api()
                .gov_show(conn.req(pb::GovShowRequest { proposal }))
                .await?
                .into_inner();
            let p = r
                .proposal
                .ok_or_else(|| CliError::Unexpected("no proposal in the reply".into()))?;
            if json {
                super::print_value(&proposal_json(&p));
            } else {
                print!("{}", details(&p));
            }
            if let Some(out) = out {
                let signed = SignedRoster::decode(&p.signed)?;
                write_new(&out, &roster_json(&signed)?)?;
                // With --json, standard output holds the JSON alone.
                let tell = |line: String| {
                    if json {
                        eprintln!("{line}");
                    } else {
                        println!("{line}");
                    }
                };
                tell(format!(
                    "candidate written to {}: a newcomer signs it with `maillon gov sign {} --dir ITS_NODE`, then you run `maillon gov approve {} --with {}`",
                    out.display(),
                    out.display(),
                    p.version,
                    out.display()
                ));
            }
            Ok(())
        }
        GovCmd::Approve { proposal, with } => {
            let signed = match with {
                Some(path) => roster_json(&read_roster(&path)?)?.into_bytes(),
                None => Vec::new(),
            };
            let conn = connect(profile)?.1;
            let r = conn
                .api()
                .gov_approve(conn.req(pb::GovApproveRequest { proposal, signed }))
                .await?
                .into_inner();
            report(&r, json);
            Ok(())
        }
        GovCmd::Reject { proposal, reason } => {
            let conn = connect(profile)?.1;
            let r = conn
                .api()
                .gov_reject(conn.req(pb::GovRejectRequest { proposal, reason }))
                .await?
                .into_inner();
            if let Some(p) = &r.proposal
                && json
            {
                super::print_value(&proposal_json(p));
            } else if let Some(p) = &r.proposal {
                println!(
                    "you declined to sign proposal {} (v{})",
                    short(&p.id),
                    p.version
                );
            }
            Ok(())
        }
        GovCmd::Status => status(&connect(profile)?.1, json).await,
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

/// The change and the reason a `gov propose` command line names.
fn change_of(cmd: ProposeCmd) -> Result<(Change, Option<String>), CliError> {
    let member = |s: &str| super::arg::<MemberId>("member", s);
    Ok(match cmd {
        ProposeCmd::Admit {
            card,
            associate,
            reason,
            ..
        } => (
            Change::Admit {
                card: parse_json::<MemberCard>(&card, "member card")?,
                voting: !associate,
            },
            reason,
        ),
        ProposeCmd::Suspend { member: m, reason } => (
            Change::Suspend {
                member: member(&m)?,
            },
            Some(reason),
        ),
        ProposeCmd::Reinstate { member: m, reason } => (
            Change::Reinstate {
                member: member(&m)?,
            },
            reason,
        ),
        ProposeCmd::Exclude { member: m, reason } => (
            Change::Exclude {
                member: member(&m)?,
            },
            Some(reason),
        ),
        ProposeCmd::UpdateMember {
            member: m,
            endpoint,
            card,
            reason,
        } => {
            if let Some(e) = &endpoint {
                maillon_node::types::check_endpoint(e).map_err(CliError::bad_arg("endpoint"))?;
            }
            let card = match card {
                Some(path) => Some(parse_json::<MemberCard>(&path, "member card")?),
                None => None,
            };
            (
                Change::UpdateMember {
                    member: member(&m)?,
                    endpoint,
                    card,
                },
                reason,
            )
        }
        ProposeCmd::SetQuorum { quorum, reason } => (
            Change::SetQuorum {
                quorum: quorum.parse().map_err(CliError::BadQuorum)?,
            },
            reason,
        ),
        ProposeCmd::SetCharter { charter, reason } => (
            Change::SetCharter {
                charter: parse_json::<Charter>(&charter, "charter")?,
            },
            reason,
        ),
    })
}

/// The first 12 hex digits of a proposal id: enough to name it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A proposal as JSON (`--json`), with stable field names.
fn proposal_json(p: &pb::GovProposal) -> serde_json::Value {
    let side = |s: &Option<pb::GovQuorumSide>| {
        s.as_ref()
            .map(|s| serde_json::json!({ "have": s.have, "need": s.need, "missing": s.missing }))
    };
    serde_json::json!({
        "id": p.id,
        "version": p.version,
        "proposer": p.proposer,
        "signers": p.signers,
        "changes": p.changes,
        "current": p.current,
        "outgoing": side(&p.outgoing),
        "incoming": side(&p.incoming),
        "unproven": p.unproven,
        "not_counted": p.not_counted,
        "rejected_by": (!p.rejected_by.is_empty()).then_some(&p.rejected_by),
        "rejected_reason": (!p.rejected_reason.is_empty()).then_some(&p.rejected_reason),
    })
}

/// What became of a proposal after `propose` or `approve`.
fn report(r: &pb::GovProposalReply, json: bool) {
    let Some(p) = &r.proposal else {
        return;
    };
    if json {
        let mut value = proposal_json(p);
        value["outcome"] = serde_json::Value::String(r.outcome.clone());
        value["version_in_force"] = serde_json::Value::from(r.version);
        super::print_value(&value);
        return;
    }
    print!("{}", details(p));
    match r.outcome.as_str() {
        "adopted" => println!(
            "ADOPTED: roster v{} is in force here and was sent to every active member",
            r.version
        ),
        _ => println!(
            "proposal {} (v{}) sent to every active member; it is adopted once it has quorum",
            short(&p.id),
            p.version
        ),
    }
}

/// One proposal in a few lines: id, version, proposer, who signed, what is missing.
fn summary(p: &pb::GovProposal) -> String {
    let mut out = format!(
        "proposal {} for v{}, proposed by {}\n",
        short(&p.id),
        p.version,
        p.proposer
    );
    for c in &p.changes {
        out += &format!("  - {}\n", escape_controls(c));
    }
    out += &format!("  signed by: {}\n", p.signers.join(", "));
    out += &standing(p);
    out
}

/// Where a proposal stands: each side's quorum, unproven keys, rejection.
fn standing(p: &pb::GovProposal) -> String {
    let mut out = String::new();
    if !p.current {
        out += "  STALE: it does not follow the version in force; propose it again on top\n";
        return out;
    }
    for (name, side) in [
        ("outgoing voters (version in force)", &p.outgoing),
        ("incoming voters (this version)", &p.incoming),
    ] {
        if let Some(s) = side {
            let missing = if s.have >= s.need {
                "quorum reached".to_owned()
            } else {
                format!(
                    "{} more needed, among: {}",
                    s.need - s.have,
                    s.missing.join(", ")
                )
            };
            out += &format!("  {name}: {} of {} needed; {missing}\n", s.have, s.need);
        }
    }
    if !p.unproven.is_empty() {
        out += &format!(
            "  new keys not proven yet (their owner must sign): {}\n",
            p.unproven.join(", ")
        );
    }
    if !p.not_counted.is_empty() {
        out += &format!(
            "  signatures that count for no quorum (no vote, suspended or excluded): {}\n",
            p.not_counted.join(", ")
        );
    }
    if !p.rejected_by.is_empty() {
        out += &format!(
            "  declined here by {}: {}\n",
            escape_controls(&p.rejected_by),
            escape_controls(&p.rejected_reason)
        );
    }
    out
}

/// A proposal in full: the diff from the version in force, in plain words.
fn details(p: &pb::GovProposal) -> String {
    let mut out = format!(
        "proposal {} (id {}): roster v{} -> v{}, proposed by {}\n",
        short(&p.id),
        p.id,
        p.version.saturating_sub(1),
        p.version,
        p.proposer
    );
    out += "it:\n";
    for c in &p.changes {
        out += &format!("  - {}\n", escape_controls(c));
    }
    out += &format!("signed by: {}\n", p.signers.join(", "));
    out += &standing(p);
    out
}

/// `maillon gov status`.
async fn status(conn: &Conn, json: bool) -> Result<(), CliError> {
    let r = conn
        .api()
        .gov_status(conn.req(pb::GovStatusRequest {}))
        .await?
        .into_inner();
    if json {
        super::print_value(&serde_json::json!({
            "federation": r.federation,
            "version": r.version,
            "hash": r.hash,
            "quorum": r.quorum,
            "members": r.members.iter().map(|m| serde_json::json!({
                "id": m.id,
                "name": m.name,
                "kind": m.kind,
                "status": m.status,
                "voting": m.voting,
                "endpoint": m.endpoint,
            })).collect::<Vec<_>>(),
            "peers": r.peers.iter().map(|p| serde_json::json!({
                "member": p.member,
                "version": p.version,
                "seen_at": p.seen_at,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    say(&format!(
        "{} roster v{} ({}), quorum {}",
        r.federation, r.version, r.hash, r.quorum
    ));
    println!("members ({}):", r.members.len());
    for m in &r.members {
        say(&format!(
            "  {:<18} {:<12} {:<9} {:<8} {:<22} {}",
            m.id,
            m.kind,
            m.status,
            if m.voting { "votes" } else { "no vote" },
            m.endpoint,
            m.name
        ));
    }
    let peers: std::collections::BTreeMap<&str, &pb::GovPeer> =
        r.peers.iter().map(|p| (p.member.as_str(), p)).collect();
    let mut behind = Vec::new();
    println!("peers (the roster version each last told this node):");
    for m in r.members.iter().filter(|m| m.status == "active") {
        match peers.get(m.id.as_str()) {
            Some(p) => {
                let mark = if p.version < r.version {
                    behind.push(m.id.clone());
                    "BEHIND"
                } else if p.version > r.version {
                    "ahead (this node catches up)"
                } else {
                    "up to date"
                };
                say(&format!("  {:<18} v{:<4} {mark}", m.id, p.version));
            }
            None => say(&format!("  {:<18} not heard from yet", m.id)),
        }
    }
    if behind.is_empty() {
        println!("no peer is known to be behind");
    } else {
        println!("behind: {}", behind.join(", "));
    }
    Ok(())
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
    if signed.roster.version > 1 {
        // A later version (a newcomer proving its key, a member signing
        // with its new key): the node checks the quorum when it comes back.
        println!(
            "signed by {}; give {} back to the member who sent it: `maillon gov approve {} --with FILE`",
            config.member,
            roster.display(),
            signed.roster.version
        );
        return Ok(());
    }
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
    for line in [
        roster::describe_break_glass(r.charter.break_glass.as_ref()),
        roster::describe_retention(r.charter.retention_days),
        roster::describe_recorders(&r.charter.consent_recorders),
    ] {
        out += &format!("{line}\n");
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
