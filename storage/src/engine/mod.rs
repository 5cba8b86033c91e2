//! The engine: tables (column families) over one shared commit log, each with its own
//! memtables and SSTables; the write path, reads, ordered scans, flush and compaction.
//!
//! # Layout on disk
//! ```text
//! <dir>/LOCK                       flock'd while an engine has the directory open
//! <dir>/MANIFEST                   live SSTables per table (manifest_format.md)
//! <dir>/commitlog/*.log            commit log segments (commitlog_format.md)
//! <dir>/sstables/<file_id>.sst     SSTables of every table (sstable_format.md)
//! ```
//!
//! # Invariants
//! - Every write batch gets the next sequence number; it is appended to the commit log and
//!   then applied to the memtables while the write mutex is held, so memtables see batches
//!   in sequence order and a batch is applied whole or not at all.
//! - A frozen memtable holds only sequence numbers below those of the memtable that
//!   replaced it; after its flush the table's `flushed_seqno` moves past them, and replay
//!   skips log records at or below it.
//! - A table's state (active memtable, frozen memtables, SSTables) is an immutable
//!   [`TableVersion`] swapped whole; readers clone the `Arc` and never block writers.
//! - Any fsync failure, and any write failure other than a full disk, poisons the engine:
//!   no later write is acknowledged. A full disk poisons nothing ([`mod@space`]): the
//!   write or background job that met it fails with [`Error::DiskFull`] having changed
//!   nothing, and the engine recovers by itself once space is freed.
//!
//! # Threads
//! Callers may use the engine from any number of threads. One flush thread writes frozen
//! memtables out; one compaction thread merges SSTables. Both stop on [`Engine::close`].

mod background;
mod batch;
mod compact;
mod ingest;
mod iter;
mod open;
pub mod space;
mod table;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

pub use crate::commitlog::SyncMode;
pub use ingest::{Ingest, IngestReport};
pub use iter::{Direction, ScanIter};
pub use space::{EngineHealth, SpaceShortage};
pub use table::{TableOptions, TableStats};

use crate::commitlog::CommitLog;
use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::manifest::Manifest;
use crate::merge::{MergePolicy, NewestWins};
use crate::sstable::SsTableOptions;
use crate::types::{Entry, SeqNo, WriteBatch};
use table::{Table, TableVersion};

/// Finds the merge policy of a table when the engine reopens it: called with the table's
/// name and the metadata bytes it was created with.
pub type MergeResolver = Arc<dyn Fn(&str, &[u8]) -> Arc<dyn MergePolicy> + Send + Sync>;

/// How an engine is opened.
#[derive(Clone)]
pub struct EngineOptions {
    /// Commit log sync mode: `Periodic` (default) or `Batch` (fsync before a write returns).
    pub sync: SyncMode,
    /// A memtable is frozen and flushed once it holds about this many bytes.
    pub memtable_size: usize,
    /// Writers wait while a table has this many frozen memtables not yet flushed.
    pub max_frozen_memtables: usize,
    /// Commit log segment size in bytes.
    pub segment_size: u64,
    /// SSTable block size, restart interval and bloom bits.
    pub sstable: SsTableOptions,
    /// Finds each table's merge policy on reopen (default: newest wins).
    pub merge_resolver: MergeResolver,
    /// Run compactions in the background as files accumulate (default true).
    pub auto_compaction: bool,
    /// The I/O fault seam (tests arm it; production leaves it idle).
    pub faults: Arc<Faults>,
    /// On a corrupt record in the middle of the commit log: `false` (default) refuses to
    /// open with the typed corruption error; `true` cuts the log at the corrupt record
    /// (losing what follows it), opens, and says so in [`Engine::recovery`]. The node uses
    /// this for `--salvage-commitlog` and takes a new actor epoch when it happens.
    pub salvage_corrupt_log: bool,
    /// Largest encoded write batch accepted (at most, and by default,
    /// [`MAX_BATCH_BYTES`]); a larger one is refused with `InvalidArgument` and changes
    /// nothing.
    pub max_batch_bytes: usize,
    /// Writes are refused with [`Error::DiskFull`] while the data directory's file system
    /// has fewer free bytes than this (0, the default: only a really full disk refuses),
    /// so that flushes and compactions, which are not held to it, still find room.
    pub min_free_bytes: u64,
}

/// The commit log's counters (since the engine opened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitLogStats {
    /// fsyncs of segment files (group commits, periodic syncs, segment rolls and
    /// creations).
    pub fsyncs: u64,
    /// How long the syncs of appended records took.
    pub sync_latency: crate::latency::LatencySnapshot,
}

/// What recovery found when the engine opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail of the last segment was truncated at this file and offset (writes not
    /// yet synced when the process or machine died).
    pub truncated_tail: Option<(PathBuf, u64)>,
    /// Corrupt spots cut out of the log with `salvage_corrupt_log` (what follows each was
    /// discarded).
    pub salvaged: Vec<String>,
    /// Segments replayed.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
}

impl RecoveryReport {
    /// True when recovery may have dropped writes that were acknowledged (a salvaged
    /// corruption, or a torn tail under periodic sync): a Dynamo node must then take a
    /// new actor epoch (Riak's KV679).
    pub fn data_may_be_lost(&self, sync: SyncMode) -> bool {
        !self.salvaged.is_empty()
            || (self.truncated_tail.is_some() && !matches!(sync, SyncMode::Batch))
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("sync", &self.sync)
            .field("memtable_size", &self.memtable_size)
            .field("max_frozen_memtables", &self.max_frozen_memtables)
            .field("segment_size", &self.segment_size)
            .field("auto_compaction", &self.auto_compaction)
            .field("min_free_bytes", &self.min_free_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            sync: crate::commitlog::CommitLogOptions::default().sync,
            memtable_size: 64 << 20,
            max_frozen_memtables: 4,
            segment_size: 64 << 20,
            sstable: SsTableOptions::default(),
            merge_resolver: Arc::new(|_, _| Arc::new(NewestWins) as Arc<dyn MergePolicy>),
            auto_compaction: true,
            faults: Arc::new(Faults::default()),
            salvage_corrupt_log: false,
            max_batch_bytes: MAX_BATCH_BYTES,
            min_free_bytes: 0,
        }
    }
}

/// Largest encoded write batch: one commit log record (`commitlog::format::MAX_RECORD_LEN`).
pub const MAX_BATCH_BYTES: usize = crate::commitlog::format::MAX_RECORD_LEN as usize;

/// How often a stalled writer re-checks, in case a wake-up was missed.
const STALL_RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

thread_local! {
    /// Reused encoding buffer of [`Inner::write_one`].
    static PAYLOAD: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > batch::MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes exceeds the {} byte limit",
            key.len(),
            batch::MAX_KEY_LEN
        )));
    }
    Ok(())
}

/// State guarded by the write mutex.
struct WriteState {
    /// The sequence number of the last batch appended.
    last_seqno: SeqNo,
}

/// Work queues of the background threads.
#[derive(Default)]
struct Background {
    shutdown: bool,
    flush_pending: bool,
    compaction_pending: bool,
}

/// Shared state of an open engine.
pub(crate) struct Inner {
    dir: PathBuf,
    opts: EngineOptions,
    log: CommitLog,
    write: Mutex<WriteState>,
    /// Signalled when a flush finishes (stalled writers, `flush` callers wait on it).
    flushed: Condvar,
    tables: RwLock<HashMap<String, Arc<Table>>>,
    /// The manifest as last stored; every change is made under this lock.
    manifest: Mutex<Manifest>,
    bg: Mutex<Background>,
    bg_cv: Condvar,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// Serialises compactions (background and manual).
    compacting: Mutex<()>,
    /// Serialises commit log segment deletion.
    segment_gc: Mutex<()>,
    /// Live [`CompactionHold`]s: automatic compaction waits while any is held.
    compaction_holds: std::sync::atomic::AtomicUsize,
    /// The free-space reserve and the shortages in force.
    space: space::DiskSpace,
}

/// An open storage engine. Cheap to share behind an `Arc`; closed on drop.
pub struct Engine {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set by the first [`Engine::close`]; later calls (drop) return at once.
    closed: AtomicBool,
    recovery: RecoveryReport,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the engine in `dir`, recovering from the manifest and commit log.
    pub fn open(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        open::open(dir.as_ref(), opts)
    }

    /// What recovery found when this engine opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Creates a table. `options.metadata` is stored with it and handed back to the merge
    /// resolver when the engine reopens.
    pub fn create_table(&self, name: &str, options: TableOptions) -> Result<()> {
        self.inner.create_table(name, options)
    }

    /// Drops a table and deletes its files.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.inner.drop_table(name)
    }

    /// Names of all tables, sorted.
    pub fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.read_tables().keys().cloned().collect();
        names.sort();
        names
    }

    /// The metadata bytes a table was created with.
    pub fn table_metadata(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.inner.table(name)?.metadata.clone())
    }

    /// The memtable prefix bloom length a table was created with (`None`: none, or a
    /// table from before the option existed).
    pub fn table_prefix_bloom_len(&self, name: &str) -> Result<Option<usize>> {
        Ok(self.inner.table(name)?.prefix_bloom_len)
    }

    /// Applies a batch atomically; returns once it is durable per the sync mode.
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.inner.write(batch)
    }

    /// fsyncs every write applied so far to the commit log, whatever the sync mode (a
    /// caller about to record elsewhere that those writes happened: a stream checkpoint).
    pub fn sync(&self) -> Result<()> {
        self.inner.log.sync_all()
    }

    /// Writes one value.
    pub fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.write_one(table, key, Some(value))
    }

    /// Writes a tombstone.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<()> {
        self.inner.write_one(table, key, None)
    }

    /// Reads a key: all its versions merged by the table's policy, then filtered by the
    /// policy's `read` rule (tombstones hidden by default).
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.inner.table(table)?;
        Ok(t.get_merged(key)?.and_then(|e| t.merge.read(key, e)))
    }

    /// Reads a key's merged entry, tombstone included, without the `read` filter.
    pub fn get_entry(&self, table: &str, key: &[u8]) -> Result<Option<Entry>> {
        self.inner.table(table)?.get_merged(key)
    }

    /// An ordered scan of `[start, end)`-style bounds in either direction.
    pub fn scan(
        &self,
        table: &str,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<ScanIter> {
        let t = self.inner.table(table)?;
        ScanIter::new(t, start, end, direction)
    }

    /// Holds automatic compaction off until the returned guard drops (several holds
    /// nest); a compaction under way finishes first. Manual compactions
    /// ([`Engine::compact`]) still run. For a node taking in data nobody reads yet (a
    /// bootstrap ingesting its ranges): merging its files as they arrive would only
    /// compete with the arrival, so they are compacted once, after.
    pub fn hold_compactions(&self) -> CompactionHold {
        self.inner.compaction_holds.fetch_add(1, Ordering::AcqRel);
        CompactionHold {
            inner: self.inner.clone(),
        }
    }

    /// Freezes the table's memtable (all tables when `None`) and waits until it is flushed.
    pub fn flush(&self, table: Option<&str>) -> Result<()> {
        self.inner.flush(table)
    }

    /// Merges all of a table's SSTables (a major compaction), waiting for it to finish.
    pub fn compact(&self, table: &str) -> Result<()> {
        let t = self.inner.table(table)?;
        self.inner.compact_major(&t, None).map(|_| ())
    }

    /// Removes every key of `table` that `drop` selects, every version of it, tombstones
    /// included, for good: flushes the table's memtable, then merges all its SSTables
    /// leaving those keys out (a major compaction). Returns the stored entries left out.
    /// Keys written while it runs stay (they are in a newer memtable). What it removes is
    /// not logged as deletes: a key removed here and written again later comes back with
    /// only the later write (Cassandra's `nodetool cleanup` of ranges a node lost).
    pub fn compact_dropping(&self, table: &str, drop: &dyn Fn(&[u8]) -> bool) -> Result<u64> {
        let t = self.inner.table(table)?;
        self.inner.flush(Some(table))?;
        self.inner.compact_major(&t, Some(drop))
    }

    /// Where a table's bytes lie in key order, cheaply: calls `f` with a key and a size
    /// for each SSTable data block (its separator key, `>=` its keys; from the in-memory
    /// indexes, no data read) and each memtable entry (its key, key plus value bytes).
    /// Bytes of a key overwritten in several places count in each (an estimate, like
    /// Cassandra's size estimates).
    pub fn size_samples(&self, table: &str, f: &mut dyn FnMut(&[u8], u64)) -> Result<()> {
        let v = self.inner.table(table)?.version();
        for file in &v.files {
            file.sst.for_each_block(&mut *f);
        }
        for m in std::iter::once(&v.active).chain(v.frozen.iter()) {
            let _ = m.try_for_each(|key, _, entry| {
                let value = match entry {
                    crate::types::EntryRef::Value(v) => v.len(),
                    crate::types::EntryRef::Tombstone => 0,
                };
                f(key, (key.len() + value) as u64);
                Ok::<(), ()>(())
            });
        }
        Ok(())
    }

    /// Counters and sizes of a table.
    pub fn stats(&self, table: &str) -> Result<TableStats> {
        Ok(self.inner.table(table)?.stats())
    }

    /// The commit log's fsyncs so far and how long the syncs writers wait for took.
    pub fn commit_log_stats(&self) -> CommitLogStats {
        CommitLogStats {
            fsyncs: self.inner.log.fsync_count(),
            sync_latency: self.inner.log.sync_latency(),
        }
    }

    /// True once a write or fsync failure has poisoned the engine.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// What the engine can do now: poisoned (and why), or short of disk space for
    /// writes, flushes or compactions. Cheap: for status commands and metrics.
    pub fn health(&self) -> EngineHealth {
        let mut h = self.inner.space.health();
        if self.is_poisoned() {
            h.poisoned = Some(lock(&self.inner.poison_reason).clone().unwrap_or_default());
        }
        h
    }

    /// Stops the background threads and syncs the commit log. Memtables are not flushed:
    /// the commit log replays them on the next open. Returns [`Error::Poisoned`] (with
    /// the first failure) when the engine was poisoned, since what was appended last may
    /// then not be durable, or the error of the final sync. A second call returns `Ok`.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let mut bg = lock(&self.inner.bg);
            bg.shutdown = true;
            self.inner.bg_cv.notify_all();
        }
        self.inner.flushed.notify_all();
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        let synced = self.inner.log.close();
        self.inner.check_poisoned()?;
        synced
    }
}

/// Automatic compaction is held off while this lives ([`Engine::hold_compactions`]).
pub struct CompactionHold {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CompactionHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionHold").finish_non_exhaustive()
    }
}

impl Drop for CompactionHold {
    fn drop(&mut self) {
        if self.inner.compaction_holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.wake_background(false, true);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing engine");
        }
    }
}

/// Locks a mutex, ignoring poisoning by a panicked thread (state stays consistent because
/// every critical section either completes or changes nothing that readers trust).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub(crate) fn read_tables(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Table>>> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_tables(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Table>>> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn table(&self, name: &str) -> Result<Arc<Table>> {
        self.read_tables()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTable {
                name: name.to_owned(),
            })
    }

    /// Marks the engine poisoned; later writes fail with the first reason.
    pub(crate) fn poison(&self, reason: String) -> Error {
        let mut r = lock(&self.poison_reason);
        if r.is_none() {
            tracing::error!(%reason, "storage engine poisoned: refusing further writes");
            *r = Some(reason.clone());
        }
        self.poisoned.store(true, Ordering::Release);
        self.flushed.notify_all();
        Error::Poisoned {
            reason: r.clone().unwrap_or(reason),
        }
    }

    /// Poisons with `e`: its own first reason when `e` is already a [`Error::Poisoned`]
    /// (from the commit log), else `what: e`.
    pub(crate) fn poison_with(&self, what: &str, e: Error) -> Error {
        match e {
            Error::Poisoned { reason } => self.poison(reason),
            e => self.poison(format!("{what}: {e}")),
        }
    }

    /// [`Inner::poison_with`], except for a full disk: a manifest write that found no
    /// room left the old manifest standing, so the caller's change simply did not happen.
    fn poison_unless_disk_full(&self, what: &str, e: Error) -> Error {
        if e.is_disk_full() {
            e
        } else {
            self.poison_with(what, e)
        }
    }

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                reason: lock(&self.poison_reason).clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn wake_background(&self, flush: bool, compaction: bool) {
        let mut bg = lock(&self.bg);
        bg.flush_pending |= flush;
        bg.compaction_pending |= compaction;
        self.bg_cv.notify_all();
    }

    fn sstable_dir(&self) -> PathBuf {
        self.dir.join(open::SSTABLE_DIR)
    }

    pub(crate) fn sstable_path(&self, file_id: u64) -> PathBuf {
        open::sstable_path(&self.dir, file_id)
    }

    fn create_table(&self, name: &str, options: TableOptions) -> Result<()> {
        self.check_poisoned()?;
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(format!(
                "table name must be 1 to 255 bytes, got {}",
                name.len()
            )));
        }
        let mut manifest = lock(&self.manifest);
        if self.read_tables().contains_key(name) {
            return Err(Error::TableExists {
                name: name.to_owned(),
            });
        }
        let last_seqno = lock(&self.write).last_seqno;
        let id = manifest.next_table_id;
        let mut next = manifest.clone();
        next.next_table_id += 1;
        next.last_seqno = next.last_seqno.max(last_seqno);
        next.tables.push(crate::manifest::TableManifest {
            id,
            name: name.to_owned(),
            options: table::encode_options(&options),
            flushed_seqno: last_seqno,
            sstables: Vec::new(),
        });
        crate::manifest::store(&self.dir, &next, &self.opts.faults)
            .map_err(|e| self.poison_unless_disk_full("storing manifest", e))?;
        *manifest = next;
        let version = TableVersion::empty(options.prefix_bloom_len, self.opts.memtable_size);
        let t = Table::new(id, name.to_owned(), options, version);
        self.write_tables().insert(name.to_owned(), Arc::new(t));
        Ok(())
    }

    fn drop_table(&self, name: &str) -> Result<()> {
        self.check_poisoned()?;
        let _compacting = lock(&self.compacting);
        let mut manifest = lock(&self.manifest);
        let t = self.table(name)?;
        let mut next = manifest.clone();
        next.tables.retain(|tm| tm.name != name);
        crate::manifest::store(&self.dir, &next, &self.opts.faults)
            .map_err(|e| self.poison_unless_disk_full("storing manifest", e))?;
        *manifest = next;
        self.write_tables().remove(name);
        {
            // Under the write mutex: a writer that resolved the table before the drop
            // either committed already or sees `dropped` in `commit` and fails.
            let _w = lock(&self.write);
            t.dropped.store(true, Ordering::Release);
        }
        for f in t.version().files.iter() {
            let path = self.sstable_path(f.file_id);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing sstable of dropped table");
            }
        }
        Ok(())
    }

    fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.check_poisoned()?;
        if batch.is_empty() {
            return Ok(());
        }
        // Resolve tables and encode outside the write mutex.
        let mut resolved: Vec<Arc<Table>> = Vec::with_capacity(1);
        {
            let tables = self.read_tables();
            for op in &batch.ops {
                check_key(&op.key)?;
                if resolved.iter().any(|t| t.name == op.table) {
                    continue;
                }
                let t = tables.get(&op.table).ok_or_else(|| Error::UnknownTable {
                    name: op.table.clone(),
                })?;
                resolved.push(t.clone());
            }
        }
        let find = |name: &str| -> Option<&Arc<Table>> { resolved.iter().find(|t| t.name == name) };
        let mut payload = Vec::with_capacity(batch::encoded_len_hint(batch));
        batch::encode(
            batch,
            |name| find(name).map(|t| t.id).unwrap_or(u32::MAX),
            &mut payload,
        );
        self.commit(&resolved, &payload, |seqno| {
            // Under the write mutex no freeze can happen: each table's active memtable is
            // fixed for the whole batch, so look it up once per table, not once per op.
            let actives: Vec<_> = resolved
                .iter()
                .map(|t| t.version().active.clone())
                .collect();
            for op in &batch.ops {
                let Some(i) = resolved.iter().position(|t| t.name == op.table) else {
                    continue;
                };
                if let (Some(t), Some(active)) = (resolved.get(i), actives.get(i)) {
                    if op.supersede {
                        active.replace(&op.key, seqno, op.entry.clone());
                    } else {
                        active.apply(&op.key, seqno, op.entry.clone(), t.merge.as_ref());
                    }
                }
            }
        })
    }

    /// One put or delete, without building a [`WriteBatch`] (the hot path).
    fn write_one(&self, table: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.check_poisoned()?;
        check_key(key)?;
        let t = self.table(table)?;
        PAYLOAD.with(|cell| {
            let mut payload = cell.take();
            payload.clear();
            batch::encode_one(t.id, key, value, &mut payload);
            let result = self.commit(std::slice::from_ref(&t), &payload, |seqno| {
                let entry = match value {
                    Some(v) => Entry::Value(v.to_vec()),
                    None => Entry::Tombstone,
                };
                t.version()
                    .active
                    .apply(key, seqno, entry, t.merge.as_ref());
            });
            if payload.capacity() <= 1 << 20 {
                cell.replace(payload);
            }
            result
        })
    }

    /// Appends `payload` to the commit log under the write mutex, lets `apply` insert into
    /// the memtables with the batch's sequence number, freezes memtables that are full,
    /// and waits for durability per the sync mode (outside the mutex: group commit).
    fn commit(
        &self,
        tables: &[Arc<Table>],
        payload: &[u8],
        apply: impl FnOnce(SeqNo),
    ) -> Result<()> {
        let limit = self.opts.max_batch_bytes.min(MAX_BATCH_BYTES);
        if payload.len() > limit {
            return Err(Error::InvalidArgument(format!(
                "write batch of {} bytes exceeds the {limit} byte limit; split it",
                payload.len()
            )));
        }
        if let Err(e) = self.space.check_reserve(&self.opts.faults, payload.len()) {
            self.space.blocked(space::Work::Writes, &e, None);
            return Err(e);
        }
        let ticket = {
            let mut w = lock(&self.write);
            // Stall while flushes are far behind, so memory stays bounded.
            loop {
                if let Some(t) = tables.iter().find(|t| t.dropped.load(Ordering::Acquire)) {
                    return Err(Error::UnknownTable {
                        name: t.name.clone(),
                    });
                }
                let stalled = tables
                    .iter()
                    .any(|t| t.version().frozen.len() >= self.opts.max_frozen_memtables);
                if !stalled {
                    break;
                }
                self.check_poisoned()?;
                // The flush that would end the stall cannot run: refuse, do not hang.
                if let Some(s) = self.space.shortage(space::Work::Flush) {
                    return Err(self.space.refusal(&s));
                }
                if lock(&self.bg).shutdown {
                    return Err(Error::Closed);
                }
                w = self
                    .flushed
                    .wait_timeout(w, STALL_RECHECK)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            self.check_poisoned()?;
            let seqno = w.last_seqno + 1;
            let ticket = match self.log.append(seqno, payload) {
                Ok(ticket) => ticket,
                // Refused before anything was written: nothing to poison.
                Err(e @ (Error::InvalidArgument(_) | Error::Closed)) => return Err(e),
                // Nothing appended (the log cut its segment back): refuse, do not poison.
                Err(e @ Error::DiskFull { .. }) => {
                    self.space.blocked(space::Work::Writes, &e, None);
                    return Err(e);
                }
                Err(e) => return Err(self.poison_with("commit log append", e)),
            };
            self.space.cleared(space::Work::Writes);
            w.last_seqno = seqno;
            apply(seqno);
            let mut froze = false;
            for t in tables {
                if t.version().active.approximate_size() >= self.opts.memtable_size {
                    t.freeze();
                    froze = true;
                }
            }
            if froze {
                self.wake_background(true, false);
            }
            ticket
        };
        self.log
            .sync(&ticket)
            .map_err(|e| self.poison_with("commit log sync", e))?;
        Ok(())
    }

    fn flush(&self, table: Option<&str>) -> Result<()> {
        self.check_poisoned()?;
        let targets: Vec<Arc<Table>> = match table {
            Some(name) => vec![self.table(name)?],
            None => self.read_tables().values().cloned().collect(),
        };
        let mut w = lock(&self.write);
        for t in &targets {
            if !t.version().active.is_empty() {
                t.freeze();
            }
        }
        // Wait for the memtables frozen up to now only: under sustained writes new ones
        // keep coming, and waiting for an empty queue might never end.
        let pending: Vec<(Arc<Table>, Vec<Arc<crate::memtable::Memtable>>)> = targets
            .iter()
            .map(|t| (t.clone(), t.version().frozen.clone()))
            .collect();
        self.wake_background(true, false);
        while pending.iter().any(|(t, mems)| {
            !t.dropped.load(Ordering::Acquire)
                && t.version()
                    .frozen
                    .iter()
                    .any(|f| mems.iter().any(|m| Arc::ptr_eq(f, m)))
        }) {
            self.check_poisoned()?;
            if lock(&self.bg).shutdown {
                return Err(Error::Closed);
            }
            if let Some(s) = self.space.shortage(space::Work::Flush) {
                return Err(self.space.refusal(&s));
            }
            // Timed: `poison` notifies without the write mutex, so a wake-up can be missed.
            w = self
                .flushed
                .wait_timeout(w, STALL_RECHECK)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(w);
        self.check_poisoned()?;
        background::delete_obsolete_segments(self)
    }
}
