//! `sibyl-storage`: Sibyl's log-structured merge storage engine.
//!
//! # Layout
//! - [`engine`]: the public [`Engine`]: tables (column families), the write path (commit
//!   log + memtable), reads and ordered scans, flush and compaction threads, poisoning,
//!   and ingestion of SSTables built from sorted entries outside the write path.
//! - [`commitlog`]: segment files of checksummed batch records, group commit, replay.
//! - [`memtable`]: the concurrent sorted in-memory table.
//! - [`sstable`]: immutable sorted tables: blocks, index, bloom filter, footer; builder,
//!   reader and iterator.
//! - [`manifest`]: the live SSTable set per table, replaced atomically.
//! - [`compaction`]: size-tiered and leveled strategies (pure planning, no I/O).
//! - [`merge`]: the merge policy the engine is given per table (how versions of one key
//!   combine, when a tombstone may be purged).
//! - [`atomic_file`]: small files replaced atomically (tmp, fsync, rename, fsync dir).
//! - [`fault`]: the I/O seam used to inject fsync, write and disk-full failures in tests,
//!   and to read the free space of the data directory.
//! - [`latency`]: the atomic latency histogram (commit-log syncs; the node's requests).
//!
//! Threading: the engine is `Send + Sync`; writers may call it from many threads. It runs
//! one flush thread and one compaction thread, both stopped by [`Engine::close`] or drop.
//! No tokio: callers in async code use `spawn_blocking` or a dedicated thread.
//!
//! The on-disk formats are specified in `storage/doc/`.
#![deny(clippy::unwrap_used)]

pub mod atomic_file;
pub mod commitlog;
pub mod compaction;
pub mod engine;
pub mod error;
pub mod fault;
pub mod latency;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod sstable;
pub mod types;

pub use engine::{
    CommitLogStats, CompactionHold, Direction, Engine, EngineHealth, EngineOptions, Ingest,
    IngestReport, MergeResolver, RecoveryReport, ScanIter, SpaceShortage, SyncMode, TableOptions,
    TableStats,
};
pub use error::{Error, Result};
pub use merge::{CompactionFilter, MergePolicy, NewestWins};
pub use types::{Entry, EntryRef, SeqNo, WriteBatch};
