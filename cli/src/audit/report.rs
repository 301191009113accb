//! Gathering the person's access report (« qui a consulté mon dossier ? »)
//! through the auditor's node: every member's part of the dossier, asked
//! through it page by page; the report itself (its checks, its French
//! text) is the node library's (`maillon_node::audit::report`).

use maillon_node::audit::note::Checkpoint;
use maillon_node::roster::SignedRoster;
use maillon_node::service::DossierPart;
use maillon_node::types::{DossierId, MemberId};
use maillon_proto::v1 as pb;

pub use maillon_node::audit::report::*;

use crate::client::Conn;
use crate::error::CliError;

/// Most pages of one member's part the tools ask for.
const MAX_PAGES: usize = 4096;

/// Most bytes of entries and proofs taken of one member's part.
const MAX_PART_BYTES: usize = 64 * 1024 * 1024;

/// Every page of `member`'s part of `dossier` (this node's when none),
/// asked through this node: the first against the member's latest
/// checkpoint, the others against the same tree. Pages must advance, keep
/// to one checkpoint and stay within bounds; a part whose tree the member
/// no longer keeps between pages is asked again from the start (twice).
pub async fn fetch_part(
    conn: &Conn,
    dossier: &DossierId,
    member: Option<&MemberId>,
) -> Result<DossierPart, CliError> {
    let mut tries = 0;
    loop {
        match fetch_part_once(conn, dossier, member).await {
            Err(Restart) if tries < 2 => tries += 1,
            Err(Restart) => {
                return Err(CliError::Unexpected(
                    "the member's log kept moving while its part was asked".into(),
                ));
            }
            Ok(part) => return part,
        }
    }
}

/// A part whose pinned tree is gone: ask again from the first page.
struct Restart;

async fn fetch_part_once(
    conn: &Conn,
    dossier: &DossierId,
    member: Option<&MemberId>,
) -> Result<Result<DossierPart, CliError>, Restart> {
    let asked = member.map(ToString::to_string).unwrap_or_default();
    let page = |from: u64, size: u64| {
        let asked = asked.clone();
        async move {
            let reply = conn
                .api()
                .audit_dossier(conn.req(pb::AuditDossierRequest {
                    dossier: dossier.to_string(),
                    member: asked,
                    from,
                    size,
                }))
                .await?
                .into_inner();
            let part = reply
                .part
                .ok_or_else(|| CliError::Unexpected("the node answered no part".into()))?;
            let who: MemberId = part.member.parse().map_err(|source| CliError::BadReply {
                what: "member id of a part",
                source,
            })?;
            if member.is_some_and(|m| *m != who) {
                return Err(CliError::Unexpected(format!(
                    "the part of {} was asked, {who}'s came",
                    member.map(ToString::to_string).unwrap_or_default()
                )));
            }
            maillon_node::transport::part_from_pb(&who, part)
                .map_err(|e| CliError::Unexpected(e.to_string()))
        }
    };
    let mut part = match page(0, 0).await {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let size = Checkpoint::parse_body(&part.checkpoint).map_or(0, |c| c.size);
    let bad = |what: &str| {
        Ok(Err(CliError::Unexpected(format!(
            "{}'s part: {what}",
            part.member
        ))))
    };
    let mut bytes: usize = part
        .entries
        .iter()
        .map(|e| e.entry.len() + 32 * e.proof.len())
        .sum();
    let mut pages = 1;
    while let Some(next) = part.next.take() {
        let last = part.entries.last().map_or(0, |e| e.index);
        if next <= last || next >= size || pages >= MAX_PAGES || bytes > MAX_PART_BYTES {
            return bad("its pages do not advance within its tree, or exceed what is taken");
        }
        let more = match page(next, size).await {
            Ok(p) => p,
            Err(CliError::Status(s)) if s.code() == tonic::Code::InvalidArgument => {
                return Err(Restart);
            }
            Err(e) => return Ok(Err(e)),
        };
        if more.checkpoint != part.checkpoint || more.member != part.member {
            return bad("a page is against another checkpoint");
        }
        if more.entries.first().is_some_and(|e| e.index < next) {
            return bad("a page starts before where it was asked");
        }
        bytes += more
            .entries
            .iter()
            .map(|e| e.entry.len() + 32 * e.proof.len())
            .sum::<usize>();
        part.entries.extend(more.entries);
        part.holders.extend(more.holders);
        part.next = more.next;
        pages += 1;
    }
    if bytes > MAX_PART_BYTES {
        return bad("it exceeds what is taken");
    }
    Ok(Ok(part))
}

/// Asks this node, then every active member through it, for its part of
/// `dossier`, and assembles the report, with keys from the roster chain
/// this node adopted, verified from the auditor's `genesis`, and the sizes
/// this node witnessed of each member's log. A member whose part stops
/// before a leaf some reader holds a receipt for is asked once more (the
/// read may have come while the parts were asked).
pub async fn gather(
    conn: &Conn,
    genesis: &SignedRoster,
    dossier: &DossierId,
    now: i64,
) -> Result<AccessReport, CliError> {
    let own = super::OwnNode::fetch(conn, genesis).await?;
    let mut members = vec![own.member.clone()];
    members.extend(own.active_peers());
    let super::OwnNode {
        member: me,
        manifest,
        roster,
        keys,
    } = own;
    let own_keys = keys.get(&me).cloned().unwrap_or_default();
    let manifest = manifest
        .open(&me, &own_keys)
        .map_err(|e| CliError::log(&me, crate::error::LogFault::Unexpected(e.to_string())))?;
    let witnessed = witnessed_sizes(&manifest, &keys);
    let ask = |m: MemberId| {
        let asked = (m != me).then_some(m.clone());
        async move {
            match fetch_part(conn, dossier, asked.as_ref()).await {
                Ok(part) => Fetched::Part(part),
                Err(e) => Fetched::Missing {
                    member: m,
                    why: crate::exit::one_line(&e),
                },
            }
        }
    };
    let mut fetched = Vec::with_capacity(members.len());
    for m in &members {
        fetched.push(ask(m.clone()).await);
    }
    for owner in behind_a_receipt(&fetched) {
        if let Some(i) = fetched.iter().position(|f| f.member() == &owner) {
            fetched[i] = ask(owner).await;
        }
    }
    let report = assemble(&roster, &keys, dossier, &fetched, &witnessed, now);
    if report.sources.is_empty() && report.anomalies.is_empty() {
        return Err(CliError::NotFound(tonic::Status::not_found(format!(
            "no member holds anything of dossier {dossier}"
        ))));
    }
    Ok(report)
}
