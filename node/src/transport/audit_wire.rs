//! The audit export's messages, proto <-> domain, in both directions: what a
//! node serves and what it takes from a peer (checked for shape and size;
//! signatures and proofs are the auditor's to verify).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use maillon_proto::v1 as pb;

use crate::audit::bundle::{Leaf, SignedManifest};
use crate::audit::merkle::Hash;
use crate::crypto::Signature;
use crate::service::{DossierPart, LeafPage, MAX_PROOF, ProvenEntry, ServiceError};
use crate::types::MemberId;

/// A manifest on the wire.
pub fn manifest_to_pb(m: SignedManifest) -> pb::SignedAuditManifest {
    pb::SignedAuditManifest {
        manifest: m.manifest,
        signature: B64.encode(m.signature.to_bytes()),
    }
}

/// A manifest from the wire (`from` names who sent it, for errors).
pub fn manifest_from_pb(
    from: &MemberId,
    m: pb::SignedAuditManifest,
) -> Result<SignedManifest, ServiceError> {
    let bad = |what: &str| ServiceError::PeerMisbehaved {
        peer: from.clone(),
        what: what.into(),
    };
    if m.manifest.len() > crate::audit::bundle::MAX_MANIFEST {
        return Err(bad("its manifest is too large"));
    }
    let sig = B64
        .decode(&m.signature)
        .ok()
        .and_then(|b| Signature::from_bytes(&b).ok())
        .ok_or_else(|| bad("its manifest's signature is not 64 bytes of base64"))?;
    Ok(SignedManifest {
        manifest: m.manifest,
        signature: sig,
    })
}

/// A page of leaves on the wire.
pub fn leaves_to_pb(page: LeafPage) -> pb::LeavesPage {
    pb::LeavesPage {
        leaves: page
            .leaves
            .into_iter()
            .map(|(index, leaf)| match leaf {
                Leaf::Entry(entry) => pb::AuditLeaf {
                    index,
                    entry,
                    withheld: Vec::new(),
                },
                Leaf::Withheld(h) => pb::AuditLeaf {
                    index,
                    entry: Vec::new(),
                    withheld: h.to_vec(),
                },
            })
            .collect(),
        tree_size: page.tree_size,
    }
}

/// A page of leaves from the wire: in order from `from`, at most `limit`,
/// each an entry within the size limit or a 32-byte hash.
pub fn leaves_from_pb(
    from_member: &MemberId,
    page: pb::LeavesPage,
    from: u64,
    limit: u32,
) -> Result<LeafPage, ServiceError> {
    let bad = |what: String| ServiceError::PeerMisbehaved {
        peer: from_member.clone(),
        what,
    };
    if page.leaves.len() > limit.max(1) as usize {
        return Err(bad("it sent more leaves than asked".into()));
    }
    let mut leaves = Vec::with_capacity(page.leaves.len());
    for (i, l) in page.leaves.into_iter().enumerate() {
        let want = from + i as u64;
        if l.index != want {
            return Err(bad(format!("leaf {want} came as {}", l.index)));
        }
        let leaf = match (l.entry.is_empty(), l.withheld.len()) {
            (false, 0) if l.entry.len() <= crate::audit::MAX_EVENT => Leaf::Entry(l.entry),
            (true, 32) => Leaf::Withheld(Hash::try_from(l.withheld).unwrap_or_default()),
            _ => return Err(bad(format!("leaf {want} is neither an entry nor a hash"))),
        };
        leaves.push((want, leaf));
    }
    Ok(LeafPage {
        leaves,
        tree_size: page.tree_size,
    })
}

fn hashes(hs: Vec<Hash>) -> Vec<Vec<u8>> {
    hs.into_iter().map(|h| h.to_vec()).collect()
}

/// A proof from the wire: at most [`MAX_PROOF`] hashes of 32 bytes each.
pub fn hashes_from(from: &MemberId, hs: Vec<Vec<u8>>) -> Result<Vec<Hash>, ServiceError> {
    let bad = |what: &str| ServiceError::PeerMisbehaved {
        peer: from.clone(),
        what: what.into(),
    };
    if hs.len() > MAX_PROOF {
        return Err(bad("its proof is too long"));
    }
    hs.into_iter()
        .map(|h| {
            h.try_into()
                .map_err(|_| bad("its proof holds a hash that is not 32 bytes"))
        })
        .collect()
}

/// A dossier's part on the wire.
pub fn part_to_pb(p: DossierPart) -> pb::DossierAuditPart {
    pb::DossierAuditPart {
        member: p.member.to_string(),
        checkpoint: p.checkpoint,
        cosigned: p.cosigned,
        consistency: hashes(p.consistency),
        entries: p
            .entries
            .into_iter()
            .map(|e| pb::ProvenEntry {
                index: e.index,
                entry: e.entry,
                proof: hashes(e.proof),
            })
            .collect(),
        holders: p.holders.iter().map(ToString::to_string).collect(),
        next: p.next,
        error: p.error.unwrap_or_default(),
    }
}

/// A dossier's part from a peer; `from` must be the member it is of.
pub fn part_from_pb(from: &MemberId, p: pb::DossierAuditPart) -> Result<DossierPart, ServiceError> {
    let bad = |what: String| ServiceError::PeerMisbehaved {
        peer: from.clone(),
        what,
    };
    let member: MemberId = p
        .member
        .parse()
        .map_err(|_| bad("its part names no member".into()))?;
    if &member != from {
        return Err(bad(format!("its part claims to be {member}'s")));
    }
    if p.checkpoint.len() > 4096 || p.cosigned.len() > 64 * 1024 || p.holders.len() > 1024 {
        return Err(bad("its part is too large".into()));
    }
    let mut entries = Vec::with_capacity(p.entries.len());
    for e in p.entries {
        if e.entry.len() > crate::audit::MAX_EVENT {
            return Err(bad(format!("its entry {} is too large", e.index)));
        }
        entries.push(ProvenEntry {
            index: e.index,
            entry: e.entry,
            proof: hashes_from(from, e.proof)?,
        });
    }
    let holders = p
        .holders
        .iter()
        .map(|h| h.parse())
        .collect::<Result<Vec<MemberId>, _>>()
        .map_err(|_| bad("its part names a holder that is no member id".into()))?;
    Ok(DossierPart {
        member,
        checkpoint: p.checkpoint,
        cosigned: p.cosigned,
        consistency: hashes_from(from, p.consistency)?,
        entries,
        holders,
        next: p.next,
        // A peer answers for itself; only the asking node notes a failure.
        error: None,
    })
}
