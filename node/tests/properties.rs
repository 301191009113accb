//! Property tests: Merkle proofs and checkpoints hold for any tree, and the
//! decoders that face peers never panic on any input (a panic reachable from
//! untrusted input before authentication would be a vulnerability).

use maillon_node::audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use maillon_node::audit::note::Checkpoint;
use maillon_node::crypto::NodeKey;
use maillon_node::sharing::{ShareId, Sharing};
use maillon_node::storage::Store;
use maillon_node::types::{DossierId, MemberId, Section};
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<[u8; 32]> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_inclusion_proof_verifies_and_a_flipped_bit_fails(n in 1usize..300, pick in any::<usize>(), bit in 0usize..256) {
        let l = leaves(n);
        let r = root(&l);
        let i = pick % n;
        let p = inclusion_proof(&l, i).expect("index in range");
        prop_assert!(verify_inclusion(i as u64, n as u64, &l[i], &p, &r));
        if !p.is_empty() {
            let mut bad = p.clone();
            let j = bit % bad.len();
            bad[j][bit % 32] ^= 1 << (bit % 8);
            prop_assert!(!verify_inclusion(i as u64, n as u64, &l[i], &bad, &r));
        }
        let mut wrong_leaf = l[i];
        wrong_leaf[0] ^= 1;
        prop_assert!(!verify_inclusion(i as u64, n as u64, &wrong_leaf, &p, &r));
    }

    #[test]
    fn every_consistency_proof_verifies_and_other_roots_fail(n in 1usize..300, pick in any::<usize>()) {
        let l = leaves(n);
        let m = 1 + pick % n;
        let p = consistency_proof(&l, m).expect("m in range");
        let (old, new) = (root(&l[..m]), root(&l));
        prop_assert!(verify_consistency(m as u64, n as u64, &old, &new, &p));
        let mut forked = l.clone();
        forked[m - 1] = leaf_hash(b"another history");
        prop_assert!(!verify_consistency(m as u64, n as u64, &root(&forked[..m]), &new, &p));
    }

    #[test]
    fn checkpoints_round_trip(size in any::<u64>(), root_bytes in any::<[u8; 32]>()) {
        let key = NodeKey::generate();
        let cp = Checkpoint { origin: "maillon/cd12".into(), size, root: root_bytes };
        let note = cp.sign(&key);
        prop_assert_eq!(Checkpoint::verify(&note, "maillon/cd12", &key.public()), Ok(cp));
    }

    #[test]
    fn checkpoint_parsing_never_panics(text in ".{0,300}") {
        let key = NodeKey::generate();
        let _ = Checkpoint::verify(&text, "maillon/cd12", &key.public());
    }

    #[test]
    fn peer_facing_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = maillon_node::protocol::ReadRequest::decode(&bytes);
        let _ = serde_json::from_slice::<maillon_node::protocol::Receipt>(&bytes);
        let _ = serde_json::from_slice::<maillon_node::roster::SignedRoster>(&bytes);
        let member: MemberId = "caf12".parse().expect("id");
        let _ = Sharing::check_key_package(&bytes, &member, &NodeKey::generate().public());
    }
}

#[test]
fn mls_deliveries_of_random_bytes_are_refused_without_panicking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = NodeKey::generate();
    let me: MemberId = "caf12".parse().expect("id");
    let sharing = Sharing::new(Store::open(dir.path()).expect("store"), me, &key);
    let owner: MemberId = "ccas-rodez".parse().expect("id");
    let share = ShareId {
        dossier: DossierId::random(),
        section: Section::Housing,
        owner: owner.clone(),
    };
    let owner_key = NodeKey::generate().public();
    let roster = |m: &MemberId| (m == &owner).then_some(owner_key);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..4096), |bytes| {
            prop_assert!(sharing.join(&share, &bytes, &roster).is_err());
            prop_assert!(sharing.apply_commit(&share, &bytes, &roster).is_err());
            prop_assert!(sharing.open(&share, &bytes, &owner_key).is_err());
            Ok(())
        })
        .expect("no panic, every delivery refused");
}

/// A log of `n` genuine entries, in as many batches, checkpointed after `signed`.
fn genuine_log(dir: &std::path::Path, key: &NodeKey, n: u64, signed: u64) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let log = maillon_node::audit::AuditLog::open(dir, "maillon/cd12".into(), &key.public())
        .expect("open");
    for i in 0..n {
        let event = maillon_node::audit::AuditEvent::RosterAdopted {
            version: i,
            hash: format!("{i:064x}"),
        };
        rt.block_on(log.append(i as i64, event)).expect("append");
        if i + 1 == signed {
            log.checkpoint(key).expect("checkpoint");
        }
    }
    log.entries(0, usize::MAX)
        .expect("entries")
        .into_iter()
        .map(|e| e.1)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn opening_a_damaged_audit_log_never_panics_and_keeps_only_a_true_prefix(
        n in 1u64..12,
        signed in 1u64..12,
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let signed = signed.min(n);
        let genuine = genuine_log(dir.path(), &key, n, signed);
        let path = dir.path().join("audit.log");
        let mut bytes = std::fs::read(&path).expect("read");
        for (at, x) in &damage {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        std::fs::write(&path, &bytes).expect("write");
        let opened = maillon_node::audit::AuditLog::open(dir.path(), "maillon/cd12".into(), &key.public());
        if damage.is_empty() && !truncate {
            prop_assert_eq!(opened.as_ref().map(|l| l.size()).ok(), Some(n), "an intact log opens whole");
        }
        if let Ok(log) = opened {
            // Whatever was kept is a prefix of what was written, covers the
            // last checkpoint, and reads back.
            let kept: Vec<Vec<u8>> = log.entries(0, usize::MAX).expect("entries").into_iter().map(|e| e.1).collect();
            prop_assert_eq!(kept.len() as u64, log.size());
            prop_assert!(log.size() >= signed, "the checkpointed prefix is never dropped");
            prop_assert_eq!(&kept[..], &genuine[..kept.len()]);
        }
    }

    #[test]
    fn opening_random_bytes_as_an_audit_log_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("audit.log"), &bytes).expect("write");
        let key = NodeKey::generate();
        let _ = maillon_node::audit::AuditLog::open(dir.path(), "maillon/cd12".into(), &key.public());
    }
}
