//! [`SsTable`]: an opened table file, memory-mapped and verified, answering point
//! lookups and handing out data blocks to [`super::SsTableIter`].
//!
//! `open` checks the header and footer (magic, version, footer crc), that the blocks tile
//! the file exactly (header, data blocks, bloom, index, properties, footer), verifies the
//! crcs of the bloom, index and properties blocks and decodes the index into memory
//! (separator keys stay in the mmap). Data block crcs are verified on first use and
//! remembered in a bitmap of atomics, so a hot block costs its crc once per open.
//!
//! Threading: `Send + Sync`; all methods take `&self`; the verified-block bitmap is the
//! only mutable state and is monotonic (bits are only set), so relaxed atomics suffice.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::Mmap;

use super::block::{self, BlockError, BlockLayout};
use super::format::{self, BlockHandle, Footer, FooterError, Properties};
use super::{bloom, SsTableInfo, SsTableIter};
use crate::error::{Error, Result};
use crate::types::{EntryRef, SeqNo};
use sibyl_coding::ByteReader;

/// One index entry: a separator key `>=` every key of the block and `<` every key of the
/// next block, as a range of the mmap, and the block's place.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    key_start: usize,
    key_end: usize,
    offset: usize,
    size: usize,
}

/// An open, immutable table file.
#[derive(Debug)]
pub struct SsTable {
    path: PathBuf,
    mmap: Mmap,
    info: SsTableInfo,
    index: Vec<IndexEntry>,
    bloom_start: usize,
    bloom_end: usize,
    /// Bit `i` set: data block `i`'s crc has been verified since open.
    verified: Vec<AtomicU64>,
}

impl SsTable {
    /// Maps the file at `path` and verifies everything but the data blocks. A file that
    /// is not a well-formed table gives a typed error naming the path and offset.
    pub fn open(path: &Path) -> Result<Arc<SsTable>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < format::MIN_FILE_LEN as u64 {
            return Err(Error::corruption(
                path,
                len,
                format!(
                    "truncated: {len} bytes, a table has at least {}",
                    format::MIN_FILE_LEN
                ),
            ));
        }
        if usize::try_from(len).is_err() {
            return Err(Error::corruption(path, 0, "file too large to map"));
        }
        // SAFETY: table files are immutable once finished: nothing writes or truncates a
        // file after its builder's `finish`, and readers only open finished files.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_mmap(path.to_path_buf(), mmap).map(Arc::new)
    }

    fn from_mmap(path: PathBuf, mmap: Mmap) -> Result<SsTable> {
        let len = mmap.len();
        let corrupt =
            |offset: usize, reason: String| Error::corruption(&path, offset as u64, reason);
        let Some(footer_at) = len.checked_sub(format::FOOTER_LEN) else {
            return Err(corrupt(len, "truncated: shorter than a footer".into()));
        };
        let header = mmap.get(..format::HEADER_LEN).unwrap_or_default();
        if header.get(..format::MAGIC.len()) != Some(&format::MAGIC[..]) {
            return Err(corrupt(0, "bad magic: not an sstable".into()));
        }
        let footer = match Footer::decode(mmap.get(footer_at..).unwrap_or_default()) {
            Ok(f) => f,
            Err(FooterError::BadMagic) => {
                return Err(corrupt(
                    footer_at,
                    "bad footer magic: truncated or not an sstable".into(),
                ))
            }
            Err(FooterError::Version(version)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.clone(),
                    version,
                })
            }
            Err(FooterError::Checksum { expected, got }) => {
                return Err(Error::ChecksumMismatch {
                    path: path.clone(),
                    offset: footer_at as u64,
                    expected,
                    got,
                })
            }
        };
        let version = sibyl_coding::u32_le_at(header, format::MAGIC.len()).unwrap_or(0);
        if version != format::FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }

        // The blocks after the data must tile the file: bloom, index, properties, footer.
        let mut at = footer.bloom.offset;
        for (name, h) in [
            ("bloom", footer.bloom),
            ("index", footer.index),
            ("properties", footer.properties),
        ] {
            if h.offset != at || h.offset < format::HEADER_LEN as u64 {
                return Err(corrupt(
                    footer_at,
                    format!("{name} block handle out of place"),
                ));
            }
            at = h.end().unwrap_or(u64::MAX);
        }
        if at != footer_at as u64 {
            return Err(corrupt(
                footer_at,
                "block handles do not reach the footer".into(),
            ));
        }
        let bloom_range = checked_block(&path, &mmap, footer.bloom)?;
        let index_range = checked_block(&path, &mmap, footer.index)?;
        let props_range = checked_block(&path, &mmap, footer.properties)?;

        let props = Properties::decode(mmap.get(props_range.0..props_range.1).unwrap_or_default())
            .ok_or_else(|| corrupt(props_range.0, "malformed properties block".into()))?;
        if !bloom::is_well_formed(mmap.get(bloom_range.0..bloom_range.1).unwrap_or_default()) {
            return Err(corrupt(bloom_range.0, "malformed bloom block".into()));
        }
        let index = decode_index(&mmap, index_range, footer.bloom.offset as usize)
            .map_err(|(off, reason)| corrupt(off, format!("index block: {reason}")))?;
        if index.len() as u64 != props.data_blocks {
            return Err(corrupt(
                props_range.0,
                format!(
                    "properties count {} data blocks, index has {}",
                    props.data_blocks,
                    index.len()
                ),
            ));
        }
        let verified = (0..index.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(SsTable {
            info: SsTableInfo {
                file_size: len as u64,
                entries: props.entries,
                tombstones: props.tombstones,
                smallest: props.smallest,
                largest: props.largest,
                min_seqno: props.min_seqno,
                max_seqno: props.max_seqno,
            },
            path,
            mmap,
            index,
            bloom_start: bloom_range.0,
            bloom_end: bloom_range.1,
            verified,
        })
    }

    /// What the table holds.
    pub fn info(&self) -> &SsTableInfo {
        &self.info
    }

    /// The file this table was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False only if `key` is certainly not in the table (bloom filter).
    #[inline]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let filter = self
            .mmap
            .get(self.bloom_start..self.bloom_end)
            .unwrap_or_default();
        bloom::may_contain(filter, bloom::key_hash(key))
    }

    /// Point lookup: key range, bloom filter, index binary search, then a search of one
    /// block by restart points. `Ok(None)` if the key is not in the table.
    pub fn get(&self, key: &[u8]) -> Result<Option<(SeqNo, EntryRef<'_>)>> {
        if self.index.is_empty()
            || key < self.info.smallest.as_slice()
            || key > self.info.largest.as_slice()
            || !self.may_contain(key)
        {
            return Ok(None);
        }
        let i = self.find_block(key);
        if i >= self.index.len() {
            return Ok(None);
        }
        let data = self.block_data(i)?;
        let found = BlockLayout::parse(data)
            .and_then(|layout| block::get(data, &layout, key))
            .map_err(|e| self.block_corruption(i, e))?;
        Ok(found.map(|f| (f.seqno, f.entry(data))))
    }

    /// A cursor over the table, initially unpositioned.
    pub fn iter(self: &Arc<Self>) -> SsTableIter {
        SsTableIter::new(Arc::clone(self))
    }

    /// Number of data blocks.
    /// Calls `f` with each data block's separator key (`>=` every key of the block) and
    /// size in bytes, in key order: the file's data by key, from its in-memory index.
    pub fn for_each_block(&self, mut f: impl FnMut(&[u8], u64)) {
        for e in &self.index {
            f(
                self.mmap.get(e.key_start..e.key_end).unwrap_or_default(),
                e.size as u64,
            );
        }
    }

    pub(crate) fn num_blocks(&self) -> usize {
        self.index.len()
    }

    /// The index of the first block whose separator is `>= key` (== `num_blocks()` if
    /// every key of the table is `< key`).
    #[inline]
    pub(crate) fn find_block(&self, key: &[u8]) -> usize {
        self.index
            .partition_point(|e| self.mmap.get(e.key_start..e.key_end).unwrap_or_default() < key)
    }

    /// The contents of data block `i`, crc-verified the first time it is asked for.
    #[inline]
    pub(crate) fn block_data(&self, i: usize) -> Result<&[u8]> {
        let Some(e) = self.index.get(i) else {
            return Err(Error::corruption(
                &self.path,
                0,
                format!("no data block {i}"),
            ));
        };
        // In range: checked against the file layout by `decode_index`.
        let data = self
            .mmap
            .get(e.offset..e.offset + e.size)
            .unwrap_or_default();
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let Some(flags) = self.verified.get(word) else {
            return Err(Error::corruption(
                &self.path,
                e.offset as u64,
                "no verify bit",
            ));
        };
        if flags.load(Ordering::Relaxed) & bit == 0 {
            let expected = sibyl_coding::u32_le_at(&self.mmap, e.offset + e.size).unwrap_or(0);
            let got = crc32fast::hash(data);
            if expected != got {
                return Err(Error::ChecksumMismatch {
                    path: self.path.clone(),
                    offset: e.offset as u64,
                    expected,
                    got,
                });
            }
            flags.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(data)
    }

    /// The contents of a data block already returned once by [`SsTable::block_data`]
    /// (no crc check).
    #[inline]
    pub(crate) fn block_data_unchecked(&self, i: usize) -> &[u8] {
        match self.index.get(i) {
            Some(e) => self
                .mmap
                .get(e.offset..e.offset + e.size)
                .unwrap_or_default(),
            None => &[],
        }
    }

    /// The file range `(offset, contents size)` of data block `i` (for tests that damage
    /// blocks).
    #[cfg(test)]
    pub(crate) fn data_block_range(&self, i: usize) -> Option<(usize, usize)> {
        self.index.get(i).map(|e| (e.offset, e.size))
    }

    /// Turns a block decoding error into a [`Error::Corruption`] with the file offset.
    pub(crate) fn block_corruption(&self, i: usize, e: BlockError) -> Error {
        let base = self.index.get(i).map_or(0, |b| b.offset);
        Error::corruption(
            &self.path,
            (base + e.offset) as u64,
            format!("data block {i}: {}", e.reason),
        )
    }
}

/// Checks a non-data block's crc; returns its contents' range.
fn checked_block(path: &Path, mmap: &[u8], h: BlockHandle) -> Result<(usize, usize)> {
    let start = h.offset as usize;
    let end = start + h.size as usize; // both below the footer: checked by the caller
    let data = mmap.get(start..end).unwrap_or_default();
    let expected = sibyl_coding::u32_le_at(mmap, end).unwrap_or(0);
    let got = crc32fast::hash(data);
    if expected != got {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset: h.offset,
            expected,
            got,
        });
    }
    Ok((start, end))
}

/// Decodes the index block in `mmap[range]`. The data blocks must tile
/// `HEADER_LEN..data_end` in order, and separator keys must increase strictly.
fn decode_index(
    mmap: &[u8],
    range: (usize, usize),
    data_end: usize,
) -> std::result::Result<Vec<IndexEntry>, (usize, String)> {
    let (start, end) = range;
    let block = mmap.get(start..end).unwrap_or_default();
    let Some(count_at) = block.len().checked_sub(4) else {
        return Err((start, "shorter than its count".into()));
    };
    let count = sibyl_coding::u32_le_at(block, count_at).unwrap_or(0) as usize;
    // Each entry takes at least 3 bytes: cap before allocating.
    if count > count_at / 3 {
        return Err((start + count_at, format!("entry count {count} too large")));
    }
    let mut r = ByteReader::new(block.get(..count_at).unwrap_or_default());
    let mut out = Vec::with_capacity(count);
    let mut expect = format::HEADER_LEN;
    let mut prev_key: Option<&[u8]> = None;
    for i in 0..count {
        let at = start + r.position();
        let bad = |reason: &str| (at, format!("entry {i}: {reason}"));
        let key = r.varint_prefixed().ok_or_else(|| bad("truncated key"))?;
        let key_start = start + r.position() - key.len();
        let offset = r.varint().ok_or_else(|| bad("truncated offset"))?;
        let size = r.varint().ok_or_else(|| bad("truncated size"))?;
        let handle = BlockHandle { offset, size };
        if offset != expect as u64 {
            return Err(bad("data block out of place"));
        }
        match handle.end() {
            Some(e) if e <= data_end as u64 => expect = e as usize,
            _ => return Err(bad("data block beyond the data area")),
        }
        if prev_key.is_some_and(|p| p >= key) {
            return Err(bad("separator keys not increasing"));
        }
        prev_key = Some(key);
        out.push(IndexEntry {
            key_start,
            key_end: key_start + key.len(),
            offset: offset as usize,
            size: size as usize,
        });
    }
    if !r.is_empty() {
        return Err((start + r.position(), "trailing bytes".into()));
    }
    if expect != data_end {
        return Err((start, "data blocks do not reach the bloom block".into()));
    }
    Ok(out)
}
