//! Immutable sorted tables (SSTables): the on-disk runs of the LSM tree.
//!
//! A table file holds entries `(key, seqno, value | tombstone)` with strictly increasing
//! keys, one entry per key, in checksummed data blocks of a few KiB with prefix-compressed
//! keys and restart points, followed by a bloom filter, a block index, a properties block
//! and a fixed-size footer. The format is specified in `storage/doc/sstable_format.md`;
//! its constants live in [`format`](mod@format), used by both writer and reader.
//!
//! # Layout
//! - [`format`](mod@format): magic, version, sizes, entry kinds; footer and properties encodings.
//! - [`block_builder`] / [`block`]: writing and reading one data block.
//! - [`bloom`]: the filter and its key hash.
//! - [`builder`]: [`SsTableBuilder`], which streams a sorted run into a new file.
//! - [`table`]: [`SsTable`], an opened (memory-mapped, verified) file with point lookups.
//! - [`iterator`]: [`SsTableIter`], a bidirectional cursor over a table.
//!
//! # Invariants and threading
//! A finished file is never modified; [`SsTable`] is `Send + Sync` and shared as
//! `Arc<SsTable>`; lookups take `&self` and never lock. A data block's crc is verified the
//! first time it is read after open (a per-block bit remembers it), the index, bloom and
//! properties blocks when the file is opened. Bytes from disk never cause a panic: a bad
//! file gives [`crate::Error::ChecksumMismatch`], [`crate::Error::Corruption`] or
//! [`crate::Error::UnsupportedVersion`] naming the file and offset.
//! [`SsTableBuilder`] and [`SsTableIter`] are single-owner values (`Send`, not shared).

pub mod block;
pub mod block_builder;
pub mod bloom;
pub mod builder;
pub mod format;
pub mod iterator;
pub mod table;

#[cfg(test)]
mod tests;

pub use builder::SsTableBuilder;
pub use iterator::SsTableIter;
pub use table::SsTable;

use crate::types::SeqNo;

/// How a table is written. Readers need none of it: the file describes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsTableOptions {
    /// Target size of a data block's contents in bytes; a block is cut after the entry
    /// that reaches it (so one large value makes one large block).
    pub block_size: usize,
    /// Entries between restart points (whole keys); lookups binary-search these and scan
    /// at most this many entries.
    pub restart_interval: usize,
    /// Bloom filter bits per key; 10 gives about 1% false positives, 0 disables the filter.
    pub bloom_bits_per_key: usize,
}

impl Default for SsTableOptions {
    fn default() -> Self {
        SsTableOptions {
            block_size: format::DEFAULT_BLOCK_SIZE,
            restart_interval: format::DEFAULT_RESTART_INTERVAL,
            bloom_bits_per_key: format::DEFAULT_BLOOM_BITS_PER_KEY,
        }
    }
}

/// What a table holds, from its properties block (no data scan needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsTableInfo {
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Number of entries (values and tombstones).
    pub entries: u64,
    /// Number of tombstones.
    pub tombstones: u64,
    /// Smallest key (empty for an empty table).
    pub smallest: Vec<u8>,
    /// Largest key (empty for an empty table).
    pub largest: Vec<u8>,
    /// Smallest sequence number (0 for an empty table).
    pub min_seqno: SeqNo,
    /// Largest sequence number (0 for an empty table).
    pub max_seqno: SeqNo,
}
