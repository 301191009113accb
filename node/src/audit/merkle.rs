//! RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs. Pure.

use sha2::{Digest, Sha256};

/// A tree node hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of an empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of the given leaf hashes (RFC 6962 §2.1).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// [`root`], its two top subtrees on two threads for large trees (the same
/// hash: RFC 6962's split is unchanged).
pub fn root_parallel(leaves: &[Hash]) -> Hash {
    if leaves.len() < 1 << 16 {
        return root(leaves);
    }
    let k = split(leaves.len());
    let (left, right) = leaves.split_at(k);
    let (l, r) = std::thread::scope(|scope| {
        let l = scope.spawn(|| root(left));
        let r = root(right);
        (l.join(), r)
    });
    match l {
        Ok(l) => node_hash(&l, &r),
        Err(_) => root(leaves),
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| {
        let mut path = Vec::new();
        path_rec(leaves, index, &mut path);
        path
    })
}

fn path_rec(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_rec(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        path_rec(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// The right edge of a growing tree: the roots of its complete subtrees,
/// largest first, one per bit set in its size. A leaf is added in
/// amortised O(1) and the root is O(log n), where [`root`] rehashes the
/// whole tree (a log signs a checkpoint every second while it grows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    /// `(height, root)` of each complete subtree, largest first.
    peaks: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// The frontier of a tree of `leaves`: each complete subtree's root
    /// computed as [`root_parallel`] does.
    pub fn of(leaves: &[Hash]) -> Self {
        let n = leaves.len();
        let mut peaks = Vec::new();
        let mut start = 0;
        for height in (0..usize::BITS).rev() {
            let width = 1usize << height;
            if n & width != 0 {
                peaks.push((height, root_parallel(&leaves[start..start + width])));
                start += width;
            }
        }
        Self {
            peaks,
            size: n as u64,
        }
    }

    /// Adds one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = (0u32, leaf);
        while let Some(&(height, left)) = self.peaks.last() {
            if height != carry.0 {
                break;
            }
            self.peaks.pop();
            carry = (height + 1, node_hash(&left, &carry.1));
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its bytes: the size (8 bytes, big-endian), then each peak's hash,
    /// largest first (their heights are the size's bits).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for (_, hash) in &self.peaks {
            out.extend_from_slice(hash);
        }
        out
    }

    /// A frontier read back from [`Frontier::to_bytes`]; `None` if the bytes
    /// are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let hashes = &bytes[8..];
        if hashes.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let heights = (0..u64::BITS).rev().filter(|h| size & (1 << h) != 0);
        let peaks = heights
            .zip(hashes.chunks_exact(32))
            .map(|(h, c)| c.try_into().ok().map(|hash| (h, hash)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { peaks, size })
    }

    /// The tree's root, the same as [`root`] of all its leaves.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some((_, last)) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, (_, left)| node_hash(left, &right))
    }
}

/// A tree's complete levels, hashed once: level `k` holds the hash of every
/// aligned run of `2^k` leaves. Any subtree hash is then a lookup, or a few
/// node hashes along the right edge; an inclusion proof costs `O(log² n)`
/// instead of rehashing the tree (for answers proving many entries at once).
#[derive(Clone, Debug)]
pub struct Levels {
    levels: Vec<Vec<Hash>>,
}

impl Levels {
    /// Hashes the levels over `leaves` (`n - 1` node hashes at most).
    pub fn new(leaves: &[Hash]) -> Self {
        Self::from_vec(leaves.to_vec())
    }

    /// [`Self::new`], taking the leaves it keeps.
    pub fn from_vec(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        loop {
            let next: Vec<Hash> = levels[levels.len() - 1]
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            if next.is_empty() {
                break;
            }
            levels.push(next);
        }
        Self { levels }
    }

    /// The number of leaves.
    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    /// The hash of leaves `lo..hi` (`lo < hi`), as [`root`] computes it.
    fn subtree(&self, lo: usize, hi: usize) -> Hash {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            // Complete and aligned: its level holds it.
            let k = n.trailing_zeros() as usize;
            return self.levels[k][lo >> k];
        }
        let k = split(n);
        node_hash(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }

    /// The audit path of leaf `index`, the same as [`inclusion_proof`]'s.
    pub fn inclusion_proof(&self, index: usize) -> Option<Vec<Hash>> {
        (index < self.size()).then(|| {
            let mut path = Vec::new();
            self.path(index, 0, self.size(), &mut path);
            path
        })
    }

    fn path(&self, m: usize, lo: usize, hi: usize, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.subtree(lo, lo + k));
        }
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// A consistency proof from the tree of the first `old` leaves to the whole tree (RFC 6962 §2.1.2).
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Option<Vec<Hash>> {
    if old == 0 || old > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(old, leaves, true, &mut out);
    Some(out)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        // Every tree extends the empty one: such a proof proves nothing, and
        // is refused rather than taken for a check (as transparency-dev/merkle does).
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &fr == old_root && &sr == new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_leaves() -> Vec<Hash> {
        [
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
        .map(|h| leaf_hash(&hex::decode(h).expect("hex")))
        .collect()
    }

    #[test]
    fn rfc6962_root_of_eight_leaves() {
        assert_eq!(
            hex::encode(root(&rfc_leaves())),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_tampering_fails() {
        let all = rfc_leaves();
        for n in 1..=all.len() {
            let leaves = &all[..n];
            let r = root(leaves);
            for i in 0..n {
                let p = inclusion_proof(leaves, i).expect("proof");
                assert!(
                    verify_inclusion(i as u64, n as u64, &leaves[i], &p, &r),
                    "{i}/{n}"
                );
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = leaf_hash(first);
                    assert!(!verify_inclusion(i as u64, n as u64, &leaves[i], &bad, &r));
                }
            }
            for m in 1..=n {
                let p = consistency_proof(leaves, m).expect("proof");
                let old = root(&leaves[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &p),
                    "{m}->{n}"
                );
                if m < n {
                    assert!(!verify_consistency(m as u64, n as u64, &r, &r, &p));
                }
            }
        }
    }

    #[test]
    fn levels_give_the_same_proofs_as_the_recursion() {
        for n in 1..=70usize {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let levels = Levels::new(&leaves);
            let r = root(&leaves);
            for i in 0..n {
                let proof = levels.inclusion_proof(i).expect("in range");
                assert_eq!(
                    Some(&proof),
                    inclusion_proof(&leaves, i).as_ref(),
                    "{n} {i}"
                );
                assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &proof, &r));
            }
            assert!(levels.inclusion_proof(n).is_none());
        }
    }

    #[test]
    fn a_frontier_gives_the_root_of_every_size() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut grown = Frontier::default();
        assert_eq!(grown.root(), empty_root());
        for n in 1..=leaves.len() {
            grown.push(leaves[n - 1]);
            assert_eq!(grown.root(), root(&leaves[..n]), "{n}");
            assert_eq!(grown, Frontier::of(&leaves[..n]), "{n}");
            assert_eq!(grown.size(), n as u64);
            assert_eq!(Frontier::from_bytes(&grown.to_bytes()), Some(grown.clone()));
        }
        let bytes = grown.to_bytes();
        assert_eq!(Frontier::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Frontier::from_bytes(&[0; 7]), None);
    }
}
