//! The leaf index beside the log (`leaves.idx`): for each entry, its frame's
//! offset in the log file and its leaf hash, written once its batch is
//! durable and before the append is answered; and the tiles beside it
//! (`tiles.idx`): the hash of each complete run of
//! `2^`[`merkle::TILE_HEIGHT`] leaves. A node opens a long log from them
//! without reading every entry, and keeps in memory only the tree above the
//! tiles: pages and proofs read the offsets and leaves they need from the
//! index. Neither file is synced, nor trusted alone: the log is checked
//! against them (at open for a short log, in the background for a long
//! one), a tile's leaves are checked against its hash when a proof reads
//! them, and both are made again from the log when they do not fit it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::merkle::{self, Hash};

/// The index's file name in the log's folder.
pub(super) const INDEX_FILE: &str = "leaves.idx";

/// The tiles' file name in the log's folder.
pub(super) const TILES_FILE: &str = "tiles.idx";

/// The first bytes of an index file: its format.
const MAGIC: &[u8; 16] = b"maillon-leaves1\n";

/// The first bytes of a tiles file: its format and tile height.
const TILES_MAGIC: &[u8; 16] = b"maillon-tiles8\n\n";

/// Bytes of one record: the offset (8, big-endian), then the leaf hash.
const RECORD: usize = 40;

/// What an index holds: each entry's offset and leaf hash.
#[derive(Debug, Default)]
pub(super) struct Indexed {
    pub offsets: Vec<u64>,
    pub leaves: Vec<Hash>,
}

/// Reads the index in `dir`; empty if it is absent or not an index. A torn
/// last record is left out.
pub(super) fn read(dir: &Path) -> Indexed {
    let mut bytes = Vec::new();
    let readable = File::open(dir.join(INDEX_FILE)).and_then(|mut f| f.read_to_end(&mut bytes));
    if readable.is_err() || !bytes.starts_with(MAGIC) {
        return Indexed::default();
    }
    let records = bytes[MAGIC.len()..].chunks_exact(RECORD);
    let mut out = Indexed {
        offsets: Vec::with_capacity(records.len()),
        leaves: Vec::with_capacity(records.len()),
    };
    for r in records {
        let (offset, leaf) = split_record(r);
        out.offsets.push(offset);
        out.leaves.push(leaf);
    }
    out
}

/// Reads the tiles in `dir`; `None` if they are absent or not tiles.
pub(super) fn read_tiles(dir: &Path) -> Option<Vec<Hash>> {
    let mut bytes = Vec::new();
    let readable = File::open(dir.join(TILES_FILE)).and_then(|mut f| f.read_to_end(&mut bytes));
    if readable.is_err() || !bytes.starts_with(TILES_MAGIC) {
        return None;
    }
    Some(
        bytes[TILES_MAGIC.len()..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect(),
    )
}

/// One record's offset and leaf hash.
fn split_record(r: &[u8]) -> (u64, Hash) {
    let (offset, leaf) = r.split_at(8);
    (
        u64::from_be_bytes(offset.try_into().unwrap_or_default()),
        leaf.try_into().unwrap_or_default(),
    )
}

/// One record: the offset, big-endian, then the leaf hash.
fn push_record(bytes: &mut Vec<u8>, offset: u64, leaf: &Hash) {
    bytes.extend_from_slice(&offset.to_be_bytes());
    bytes.extend_from_slice(leaf);
}

/// The index and tiles a log's writer appends to.
#[derive(Debug)]
pub(super) struct LeafIndex {
    file: File,
    tiles: File,
}

impl LeafIndex {
    /// Opens the index in `dir` for appending, keeping its first `records`
    /// records (what the log holds of it), with tiles file holding exactly
    /// `tiles` (kept when it starts with them, else written again).
    pub(super) fn open(dir: &Path, records: usize, tiles: &[Hash]) -> std::io::Result<Self> {
        let len = (MAGIC.len() + records * RECORD) as u64;
        let file = OpenOptions::new().append(true).open(dir.join(INDEX_FILE))?;
        file.set_len(len)?;
        Ok(Self {
            file,
            tiles: open_tiles(dir, tiles)?,
        })
    }

    /// Writes a whole new index for `offsets` and `leaves` in `dir`, and
    /// the tiles `tiles`, and opens them for appending.
    pub(super) fn rewrite(
        dir: &Path,
        offsets: &[u64],
        leaves: &[Hash],
        tiles: &[Hash],
    ) -> std::io::Result<Self> {
        let mut bytes = Vec::with_capacity(MAGIC.len() + offsets.len() * RECORD);
        bytes.extend_from_slice(MAGIC);
        for (offset, leaf) in offsets.iter().zip(leaves) {
            push_record(&mut bytes, *offset, leaf);
        }
        replace(dir, INDEX_FILE, &bytes)?;
        Self::open(dir, offsets.len(), tiles)
    }

    /// Appends records (after their batch is durable in the log).
    pub(super) fn append(
        &mut self,
        records: impl Iterator<Item = (u64, Hash)>,
    ) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for (offset, leaf) in records {
            push_record(&mut bytes, offset, &leaf);
        }
        self.file.write_all(&bytes)
    }

    /// Appends the hashes of tiles the last batch completed.
    pub(super) fn append_tiles(&mut self, tiles: &[Hash]) -> std::io::Result<()> {
        if tiles.is_empty() {
            return Ok(());
        }
        self.tiles.write_all(tiles.as_flattened())
    }
}

/// Writes `name` in `dir` whole, through a temporary file renamed over it.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// The tiles file in `dir`, holding exactly `tiles`, open for appending.
fn open_tiles(dir: &Path, tiles: &[Hash]) -> std::io::Result<File> {
    if read_tiles(dir).is_none_or(|on_disk| !on_disk.starts_with(tiles)) {
        let mut bytes = Vec::with_capacity(TILES_MAGIC.len() + 32 * tiles.len());
        bytes.extend_from_slice(TILES_MAGIC);
        bytes.extend_from_slice(tiles.as_flattened());
        replace(dir, TILES_FILE, &bytes)?;
    }
    let file = OpenOptions::new().append(true).open(dir.join(TILES_FILE))?;
    file.set_len((TILES_MAGIC.len() + 32 * tiles.len()) as u64)?;
    Ok(file)
}

/// The index read in place: the offsets a page needs and the leaves of a
/// tile a proof needs, read while the writer appends.
#[derive(Debug)]
pub(super) struct Records {
    file: File,
    path: PathBuf,
}

impl Records {
    /// Opens the index in `dir` for reading.
    pub(super) fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(INDEX_FILE);
        Ok(Self {
            file: File::open(&path)?,
            path,
        })
    }

    /// The index file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Records `[from, to)`.
    pub(super) fn read(&self, from: u64, to: u64) -> std::io::Result<Vec<(u64, Hash)>> {
        let n = to.saturating_sub(from) as usize;
        let mut bytes = vec![0u8; n * RECORD];
        self.file
            .read_exact_at(&mut bytes, MAGIC.len() as u64 + from * RECORD as u64)?;
        Ok(bytes.chunks_exact(RECORD).map(split_record).collect())
    }

    /// The leaves of tile `t`.
    pub(super) fn tile(&self, t: u64) -> std::io::Result<Vec<Hash>> {
        let width = 1u64 << merkle::TILE_HEIGHT;
        Ok(self
            .read(t * width, (t + 1) * width)?
            .into_iter()
            .map(|(_, leaf)| leaf)
            .collect())
    }
}
