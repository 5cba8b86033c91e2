//! The commit log: every write batch is appended here before it reaches a memtable, so
//! that a crash loses nothing that was acknowledged (Cassandra's commit log, LevelDB's
//! `log_writer` / `log_reader`).
//!
//! # Layout
//! - [`mod@format`]: the byte format (segment header, record framing, file names) shared by
//!   writer and reader; spec in `storage/doc/commitlog_format.md`.
//! - [`writer`]: [`CommitLog`]: appends, segment rolling, group commit, the periodic sync
//!   thread, poisoning, deletion of covered segments.
//! - `segment`: one segment file as the writer tracks it, and its creation.
//! - [`reader`]: [`replay`]: reads the segments back in order at start-up and truncates a
//!   torn tail.
//!
//! # Invariants
//! - Records are appended with strictly increasing seqnos; replay checks it.
//! - A segment is fsynced before the next one is created, so only the newest segment can
//!   end in a torn record.
//! - Any fsync error, and any write error but a full disk's, poisons the log for good; an
//!   fsync is never retried (after a failed fsync the kernel may have dropped the dirty
//!   pages, so a retry that succeeds proves nothing). A write that finds the disk full
//!   (`ENOSPC`, `EDQUOT`) is cut back out of the segment and refused with
//!   `Error::DiskFull`; the next append may succeed once space is freed.
//!
//! # Threading
//! [`CommitLog`] is `Send + Sync`: appends serialise on one mutex (held across the
//! `write(2)`, never across an fsync); fsyncs run outside it, one at a time, and cover
//! every append made before they start (group commit). In [`SyncMode::Periodic`] one
//! background thread, owned by the log and stopped by [`CommitLog::close`] or drop,
//! fsyncs every interval. [`replay`] is single-threaded and runs before `open`.

pub mod format;
pub mod reader;
mod segment;
pub mod writer;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use reader::{replay, ReplayReport};
pub use writer::{AppendTicket, CommitLog};

/// Default segment size: 64 MiB. Large enough that rolling (one fsync of the old segment,
/// a file creation and a directory fsync) is rare; small enough that a flushed memtable
/// frees log space soon, since only whole segments are deleted.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Default fsync interval of [`SyncMode::Periodic`]: 10 ms. Cassandra's default is 10 s;
/// we bound what a power loss can take to 10 ms of writes, at the cost of at most 100
/// fsyncs per second, which group commit shares among all writers.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// A background thread fsyncs every `interval`; [`CommitLog::sync`] returns at once.
    /// A process crash loses nothing (each append is one `write(2)`); a power loss may
    /// lose the last `interval` of acknowledged writes.
    Periodic {
        /// Time between fsyncs; must not be zero.
        interval: Duration,
    },
    /// [`CommitLog::sync`] returns only when the ticket's record is fsynced; concurrent
    /// syncs share one fsync (group commit).
    Batch,
}

impl Default for SyncMode {
    fn default() -> Self {
        SyncMode::Periodic {
            interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// How a [`CommitLog`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitLogOptions {
    /// A new segment is started before an append would make the current one exceed this
    /// many bytes (a segment holding a single larger record may exceed it).
    pub segment_size: u64,
    /// When appends become durable.
    pub sync: SyncMode,
}

impl Default for CommitLogOptions {
    fn default() -> Self {
        CommitLogOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync: SyncMode::default(),
        }
    }
}
