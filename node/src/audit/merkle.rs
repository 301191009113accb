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
    split_u64(n as u64) as usize
}

/// [`split`] over tree sizes as the log counts them.
fn split_u64(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
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

/// The leaves under one tile: the bottom [`TILE_HEIGHT`] levels of a
/// [`Tiled`] tree are not kept in memory but read again, a tile at a time.
pub const TILE_HEIGHT: u32 = 8;

/// A growing tree that keeps in memory only the hashes of its complete
/// tiles (aligned runs of `2^TILE_HEIGHT` leaves) and the levels above
/// them, plus the leaves of its last, incomplete tile: `2 × 32 / 256`
/// bytes per leaf. The leaves of a complete tile are asked for when a
/// proof needs them (a log reads them from its leaf index), and checked
/// against the tile's hash. Any subtree hash is then a lookup or a few
/// node hashes, and a proof costs `O(log n)` hashes and at most two tiles
/// read, where [`inclusion_proof`] rehashes the whole tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiled {
    /// `log2` of the leaves in a tile.
    height: u32,
    /// `upper[h][j]`: the hash of the `j`th aligned run of `2^(height + h)`
    /// leaves; `upper[0]` holds the tiles.
    upper: Vec<Vec<Hash>>,
    /// The leaves of the last, incomplete tile.
    last: Vec<Hash>,
    size: u64,
}

impl Default for Tiled {
    fn default() -> Self {
        Self::with_height(TILE_HEIGHT)
    }
}

/// What a [`Tiled`] tree's proof could not be made from.
#[derive(Debug, PartialEq, Eq)]
pub enum TileError<E> {
    /// The tree has no such leaf or size.
    Range,
    /// The leaves given for tile `tile` do not hash to its hash.
    Mismatch {
        /// The tile's number.
        tile: u64,
    },
    /// Reading a tile's leaves failed.
    Read(E),
}

/// The leaves of one tile read for a proof, kept while it is built.
struct TileLeaves<F> {
    fetch: F,
    kept: Option<(u64, Vec<Hash>)>,
}

impl Tiled {
    /// An empty tree of tiles of `2^height` leaves (tests use small ones).
    pub fn with_height(height: u32) -> Self {
        Self {
            height,
            upper: Vec::new(),
            last: Vec::new(),
            size: 0,
        }
    }

    /// The tree of `tiles` (complete tiles' hashes, in order) followed by
    /// the leaves `last` of an incomplete tile (fewer than a tile's).
    pub fn from_tiles(tiles: &[Hash], last: Vec<Hash>) -> Option<Self> {
        let mut tree = Self::default();
        if last.len() as u64 >= tree.tile() {
            return None;
        }
        for tile in tiles {
            tree.push_tile(*tile);
        }
        tree.size = tiles.len() as u64 * tree.tile() + last.len() as u64;
        tree.last = last;
        Some(tree)
    }

    /// The hashes of every tile of `leaves` and the leaves after the last
    /// complete one: what [`Tiled::from_tiles`] takes.
    pub fn tiles_of(leaves: &[Hash]) -> (Vec<Hash>, Vec<Hash>) {
        let tile = 1usize << TILE_HEIGHT;
        let chunks = leaves.chunks_exact(tile);
        let last = chunks.remainder().to_vec();
        (chunks.map(root).collect(), last)
    }

    fn tile(&self) -> u64 {
        1 << self.height
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of the complete tiles, in order.
    pub fn tiles(&self) -> &[Hash] {
        self.upper.first().map_or(&[], Vec::as_slice)
    }

    /// Adds a leaf; returns the hash of the tile it completes, if it does.
    pub fn push(&mut self, leaf: Hash) -> Option<Hash> {
        self.last.push(leaf);
        self.size += 1;
        if (self.last.len() as u64) < self.tile() {
            return None;
        }
        let tile = root(&self.last);
        self.last.clear();
        self.push_tile(tile);
        Some(tile)
    }

    fn push_tile(&mut self, tile: Hash) {
        let mut carry = tile;
        for level in 0.. {
            if self.upper.len() == level {
                self.upper.push(Vec::new());
            }
            let row = &mut self.upper[level];
            row.push(carry);
            if row.len() % 2 == 1 {
                break;
            }
            carry = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
        }
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at<E>(
        &self,
        size: u64,
        fetch: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Hash, TileError<E>> {
        if size > self.size {
            return Err(TileError::Range);
        }
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size, &mut self.leaves(fetch))
    }

    /// The audit path of leaf `index` in the tree of the first `size`
    /// leaves, the same as [`inclusion_proof`]'s.
    pub fn inclusion_proof<E>(
        &self,
        index: u64,
        size: u64,
        fetch: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Vec<Hash>, TileError<E>> {
        if index >= size || size > self.size {
            return Err(TileError::Range);
        }
        let mut leaves = self.leaves(fetch);
        let mut out = Vec::new();
        self.path(index, 0, size, &mut leaves, &mut out)?;
        Ok(out)
    }

    /// A consistency proof from the tree of the first `old` leaves to that
    /// of the first `new`, the same as [`consistency_proof`]'s.
    pub fn consistency_proof<E>(
        &self,
        old: u64,
        new: u64,
        fetch: impl FnMut(u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Vec<Hash>, TileError<E>> {
        if old == 0 || old > new || new > self.size {
            return Err(TileError::Range);
        }
        let mut leaves = self.leaves(fetch);
        let mut out = Vec::new();
        self.subproof(old, 0, new, true, &mut leaves, &mut out)?;
        Ok(out)
    }

    fn leaves<F>(&self, fetch: F) -> TileLeaves<F> {
        TileLeaves { fetch, kept: None }
    }

    /// The hash of leaves `lo..hi` (`lo < hi <= size`), as [`root`]
    /// computes it.
    fn subtree<E, F: FnMut(u64) -> Result<Vec<Hash>, E>>(
        &self,
        lo: u64,
        hi: u64,
        leaves: &mut TileLeaves<F>,
    ) -> Result<Hash, TileError<E>> {
        let n = hi - lo;
        let tile = self.tile();
        if n.is_power_of_two() && lo.is_multiple_of(n) && n >= tile {
            // Complete, aligned, and at least a tile: a level holds it.
            let level = (n.trailing_zeros() - self.height) as usize;
            return Ok(self.upper[level][(lo / n) as usize]);
        }
        let t = lo / tile;
        if t == (hi - 1) / tile {
            // Within one tile: its leaves, in memory or read again.
            let (a, b) = ((lo - t * tile) as usize, (hi - t * tile) as usize);
            if t == self.size / tile {
                return Ok(root(&self.last[a..b]));
            }
            if leaves.kept.as_ref().is_none_or(|(k, _)| *k != t) {
                let read = (leaves.fetch)(t).map_err(TileError::Read)?;
                if read.len() as u64 != tile || root(&read) != self.upper[0][t as usize] {
                    return Err(TileError::Mismatch { tile: t });
                }
                leaves.kept = Some((t, read));
            }
            let kept = leaves.kept.as_ref().map_or(&[][..], |(_, l)| l.as_slice());
            return Ok(root(&kept[a..b]));
        }
        let k = split_u64(n);
        Ok(node_hash(
            &self.subtree(lo, lo + k, leaves)?,
            &self.subtree(lo + k, hi, leaves)?,
        ))
    }

    fn path<E, F: FnMut(u64) -> Result<Vec<Hash>, E>>(
        &self,
        m: u64,
        lo: u64,
        hi: u64,
        leaves: &mut TileLeaves<F>,
        out: &mut Vec<Hash>,
    ) -> Result<(), TileError<E>> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split_u64(n);
        if m < k {
            self.path(m, lo, lo + k, leaves, out)?;
            out.push(self.subtree(lo + k, hi, leaves)?);
        } else {
            self.path(m - k, lo + k, hi, leaves, out)?;
            out.push(self.subtree(lo, lo + k, leaves)?);
        }
        Ok(())
    }

    fn subproof<E, F: FnMut(u64) -> Result<Vec<Hash>, E>>(
        &self,
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        leaves: &mut TileLeaves<F>,
        out: &mut Vec<Hash>,
    ) -> Result<(), TileError<E>> {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(self.subtree(lo, hi, leaves)?);
            }
            return Ok(());
        }
        let k = split_u64(n);
        if m <= k {
            self.subproof(m, lo, lo + k, complete, leaves, out)?;
            out.push(self.subtree(lo + k, hi, leaves)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, leaves, out)?;
            out.push(self.subtree(lo, lo + k, leaves)?);
        }
        Ok(())
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

    /// A tiled tree of `height` over `leaves`, and what reads its tiles.
    fn tiled(height: u32, leaves: &[Hash]) -> Tiled {
        let mut tree = Tiled::with_height(height);
        let mut tiles = Vec::new();
        for leaf in leaves {
            tiles.extend(tree.push(*leaf));
        }
        assert_eq!(tree.tiles(), &tiles[..]);
        assert_eq!(tree.size(), leaves.len() as u64);
        tree
    }

    #[test]
    fn a_tiled_tree_gives_the_same_roots_and_proofs_as_the_recursion() {
        for height in [0, 1, 2, 3] {
            let tile = 1usize << height;
            for n in 1..=40usize {
                let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
                let tree = tiled(height, &leaves);
                let mut reads = 0;
                let mut fetch = |t: u64| -> Result<Vec<Hash>, ()> {
                    reads += 1;
                    Ok(leaves[t as usize * tile..(t as usize + 1) * tile].to_vec())
                };
                for size in 1..=n {
                    let r = root(&leaves[..size]);
                    assert_eq!(
                        tree.root_at(size as u64, &mut fetch),
                        Ok(r),
                        "{height} {n} {size}"
                    );
                    for i in 0..size {
                        let proof = tree.inclusion_proof(i as u64, size as u64, &mut fetch);
                        assert_eq!(
                            proof.ok(),
                            inclusion_proof(&leaves[..size], i),
                            "{height} {size} {i}"
                        );
                    }
                    for old in 1..=size {
                        let proof = tree.consistency_proof(old as u64, size as u64, &mut fetch);
                        assert_eq!(proof.ok(), consistency_proof(&leaves[..size], old));
                    }
                }
                assert_eq!(
                    tree.inclusion_proof(n as u64, n as u64, &mut fetch),
                    Err(TileError::Range)
                );
                assert_eq!(
                    tree.inclusion_proof(0, n as u64 + 1, &mut fetch),
                    Err(TileError::Range)
                );
                assert_eq!(
                    tree.consistency_proof(0, n as u64, &mut fetch),
                    Err(TileError::Range)
                );
                assert_eq!(
                    tree.consistency_proof(2, 1, &mut fetch),
                    Err(TileError::Range)
                );
                assert_eq!(
                    tree.root_at(n as u64 + 1, &mut fetch),
                    Err(TileError::Range)
                );
            }
        }
    }

    #[test]
    fn a_proof_reads_at_most_two_tiles_and_refuses_leaves_that_are_not_the_tile() {
        let leaves: Vec<Hash> = (0..5000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let (tiles, last) = Tiled::tiles_of(&leaves);
        let tree = Tiled::from_tiles(&tiles, last).expect("tiles");
        assert_eq!(tree, tiled(TILE_HEIGHT, &leaves));
        let tile = 1usize << TILE_HEIGHT;
        let mut read = Vec::new();
        let mut fetch = |t: u64| -> Result<Vec<Hash>, ()> {
            read.push(t);
            Ok(leaves[t as usize * tile..(t as usize + 1) * tile].to_vec())
        };
        let proof = tree.inclusion_proof(1234, 4321, &mut fetch).expect("proof");
        assert!(verify_inclusion(
            1234,
            4321,
            &leaves[1234],
            &proof,
            &root(&leaves[..4321])
        ));
        let proof = tree
            .consistency_proof(1000, 4500, &mut fetch)
            .expect("proof");
        assert_eq!(Some(proof), consistency_proof(&leaves[..4500], 1000));
        // The last tile, incomplete, is in memory: nothing read for it.
        let proof = tree
            .consistency_proof(1000, 4999, &mut fetch)
            .expect("proof");
        assert_eq!(Some(proof), consistency_proof(&leaves[..4999], 1000));
        assert_eq!(
            read,
            [1234 / 256, 4321 / 256, 1000 / 256, 4500 / 256, 1000 / 256]
        );

        // Leaves that are not the tile's (a damaged index) are refused.
        let mut wrong = |t: u64| -> Result<Vec<Hash>, ()> {
            let mut l = leaves[t as usize * tile..(t as usize + 1) * tile].to_vec();
            l[7][0] ^= 1;
            Ok(l)
        };
        assert_eq!(
            tree.inclusion_proof(3, 4000, &mut wrong),
            Err(TileError::Mismatch { tile: 0 })
        );
        assert_eq!(
            tree.inclusion_proof(3, 4000, |_| Err("gone")),
            Err(TileError::Read("gone"))
        );
        // A full tile of leaves is not a last tile.
        assert_eq!(Tiled::from_tiles(&[], leaves[..tile].to_vec()), None);
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
