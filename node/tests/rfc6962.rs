//! The Merkle proof code (`audit::merkle`) against the published RFC 6962
//! test vectors of transparency-dev/merkle (`tests/data/rfc6962/`): every
//! inclusion and consistency case verifies exactly when it should, and the
//! proofs this code makes for the classic RFC 6962 leaves verify.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use maillon_node::audit::merkle::{self, Hash};
use serde::Deserialize;

fn cases(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc6962")
        .join(kind);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("the vectors are committed") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A base64 hash; `None` when it is not 32 bytes (the vectors' garbage).
fn hash(b64: &str) -> Option<Hash> {
    B64.decode(b64).ok()?.try_into().ok()
}

/// A root as the consistency vectors give it. Some cases give roots that are
/// not 32 bytes and only compare them; such a value becomes its SHA-256,
/// which keeps equal values equal and never equals a root of these trees.
fn value(b64: &str) -> Option<Hash> {
    let bytes = B64.decode(b64).ok()?;
    Some(match <Hash>::try_from(bytes.as_slice()) {
        Ok(h) => h,
        Err(_) => maillon_node::crypto::sha256(&bytes),
    })
}

/// A proof's hashes; `None` when one is not a hash.
fn proof(items: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    items
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| hash(s))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[test]
fn every_published_inclusion_case_verifies_exactly_when_it_should() {
    let files = cases("inclusion");
    assert!(files.len() > 90, "{} inclusion cases", files.len());
    for path in files {
        let c: Inclusion =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a case");
        let ok = match (hash(&c.root), hash(&c.leaf_hash), proof(&c.proof)) {
            (Some(root), Some(leaf), Some(proof)) => {
                merkle::verify_inclusion(c.leaf_idx, c.tree_size, &leaf, &proof, &root)
            }
            _ => false,
        };
        assert_eq!(ok, !c.want_err, "{}: {}", path.display(), c.desc);
    }
}

#[test]
fn every_published_consistency_case_verifies_exactly_when_it_should() {
    let files = cases("consistency");
    assert!(files.len() > 90, "{} consistency cases", files.len());
    for path in files {
        let c: Consistency =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a case");
        let ok = match (value(&c.root1), value(&c.root2), proof(&c.proof)) {
            (Some(r1), Some(r2), Some(proof)) => {
                merkle::verify_consistency(c.size1, c.size2, &r1, &r2, &proof)
            }
            _ => false,
        };
        assert_eq!(ok, !c.want_err, "{}: {}", path.display(), c.desc);
    }
}

#[test]
fn proofs_made_for_the_classic_leaves_verify_against_the_published_root() {
    let leaves: Vec<Hash> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| merkle::leaf_hash(&hex::decode(h).expect("hex")))
    .collect();
    assert_eq!(
        hex::encode(merkle::root(&leaves)),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    for size in 1..=leaves.len() {
        let tree = &leaves[..size];
        let root = merkle::root(tree);
        for (index, leaf) in tree.iter().enumerate() {
            let p = merkle::inclusion_proof(tree, index).expect("a proof");
            assert!(merkle::verify_inclusion(
                index as u64,
                size as u64,
                leaf,
                &p,
                &root
            ));
        }
        for old in 1..=size {
            let p = merkle::consistency_proof(tree, old).expect("a proof");
            let old_root = merkle::root(&leaves[..old]);
            assert!(merkle::verify_consistency(
                old as u64,
                size as u64,
                &old_root,
                &root,
                &p
            ));
        }
    }
}

#[test]
fn the_parallel_root_is_the_root() {
    for n in [1usize, 2, 3, 65_535, 65_536, 65_537, 100_003] {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| merkle::leaf_hash(&(i as u64).to_be_bytes()))
            .collect();
        assert_eq!(merkle::root_parallel(&leaves), merkle::root(&leaves), "{n}");
    }
}
