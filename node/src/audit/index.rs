//! The leaf index beside the log (`leaves.idx`): for each entry, its frame's
//! offset in the log file and its leaf hash, appended once its batch is
//! durable. A node opens a long log from it without reading every entry;
//! the index is not synced, never trusted alone (the log is checked against
//! it, at open for a short log, in the background for a long one), and made
//! again from the log when it is missing or does not fit it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::merkle::Hash;

/// The index's file name in the log's folder.
pub(super) const INDEX_FILE: &str = "leaves.idx";

/// The first bytes of an index file: its format.
const MAGIC: &[u8; 16] = b"maillon-leaves1\n";

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
        let (offset, leaf) = r.split_at(8);
        out.offsets
            .push(u64::from_be_bytes(offset.try_into().unwrap_or_default()));
        out.leaves.push(leaf.try_into().unwrap_or_default());
    }
    out
}

/// One record: the offset, big-endian, then the leaf hash.
fn push_record(bytes: &mut Vec<u8>, offset: u64, leaf: &Hash) {
    bytes.extend_from_slice(&offset.to_be_bytes());
    bytes.extend_from_slice(leaf);
}

/// The index a log's writer appends to. A write that fails removes the
/// file: the next start makes it again from the log.
#[derive(Debug)]
pub(super) struct LeafIndex {
    file: Option<File>,
    path: PathBuf,
}

impl LeafIndex {
    /// Opens the index in `dir` for appending, keeping its first `records`
    /// records (what the log holds of it).
    pub(super) fn open(dir: &Path, records: usize) -> Self {
        let path = dir.join(INDEX_FILE);
        let len = (MAGIC.len() + records * RECORD) as u64;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(len).map(|()| f));
        let mut index = Self { file: None, path };
        match file {
            Ok(f) => index.file = Some(f),
            Err(e) => index.give_up(&e),
        }
        index
    }

    /// Writes a whole new index for `offsets` and `leaves` in `dir` and
    /// opens it for appending.
    pub(super) fn rewrite(dir: &Path, offsets: &[u64], leaves: &[Hash]) -> Self {
        let path = dir.join(INDEX_FILE);
        let tmp = dir.join("leaves.idx.tmp");
        let mut bytes = Vec::with_capacity(MAGIC.len() + offsets.len() * RECORD);
        bytes.extend_from_slice(MAGIC);
        for (offset, leaf) in offsets.iter().zip(leaves) {
            push_record(&mut bytes, *offset, leaf);
        }
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => Self::open(dir, offsets.len()),
            Err(e) => {
                let mut index = Self { file: None, path };
                index.give_up(&e);
                index
            }
        }
    }

    /// Appends records (after their batch is durable in the log).
    pub(super) fn append(&mut self, records: impl Iterator<Item = (u64, Hash)>) {
        let Some(file) = &mut self.file else {
            return;
        };
        let mut bytes = Vec::new();
        for (offset, leaf) in records {
            push_record(&mut bytes, offset, &leaf);
        }
        if let Err(e) = file.write_all(&bytes) {
            self.give_up(&e);
        }
    }

    fn give_up(&mut self, e: &std::io::Error) {
        tracing::warn!(path = %self.path.display(), error = %e, "leaf index unusable; the next start reads the whole log");
        self.file = None;
        let _ = std::fs::remove_file(&self.path);
    }
}
