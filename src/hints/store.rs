//! [`HintStore`]: one node's hints for other nodes, durable in their own storage engine.
//!
//! The engine lives in the hints directory (`<data dir>/hints/`, [`super::hints_dir`]),
//! opened with the node's sync mode, with one table [`HINTS_TABLE`] (newest wins: its
//! tombstones are purged by bottommost compactions). Keys and records: [`super::record`].
//! Beside the engine's own files the directory holds `dropped` ([`super::dropped`]).
//!
//! # Bounds
//! [`HintStore::store`] checks, under one lock with the id allocation and the owner's
//! pending counts: if the owner's first pending hint was written more than
//! [`HintLimits::window`] ago, the hint is dropped ([`DropReason::Window`]); if its
//! record would take the owner's pending bytes past
//! [`HintLimits::max_bytes_per_owner`], it is dropped ([`DropReason::Size`]). A drop is
//! counted per owner with the key span of each table it touched; the record is
//! persisted at once when that span grows (a new owner, table or wider span: what
//! repair needs), and otherwise by [`HintStore::flush_dropped`] (delivery calls it every
//! tick; drop calls it too), so a steady stream of drops does not cost an fsync each.
//!
//! # Open
//! Opening scans every stored hint once: per owner counts, bytes and the oldest written
//! time, and the largest id (the next one is above it). The scan reads each record's
//! checksum; a corrupt one is still counted as pending and is discarded (and counted as
//! dropped, keys unknown) when [`HintStore::batch`] meets it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sibyl_storage::atomic_file;
use sibyl_storage::{Direction, Engine, EngineOptions, SyncMode, TableOptions, WriteBatch};

use super::dropped::{DroppedHints, DroppedLog, DROPPED_FILE};
use super::record::{check_record, decode_key, decode_record, encode_key, encode_record};
use super::record::{owner_bounds, KEY_LEN};
use super::{DropReason, HintError, HintId, HintLimits, HintStats, PendingStats, Stored};
use crate::replica::RawCell;
use crate::ring::NodeId;
use crate::versioning::Clock;

/// The engine table of the hints.
pub const HINTS_TABLE: &str = "hints";
/// Largest record one hint may take (the coordinator splits larger writes): well under
/// the engine's batch limit.
pub const MAX_HINT_RECORD: usize = 32 << 20;
/// Memtable size of the hints engine (hints are written rarely, read once).
const MEMTABLE_SIZE: usize = 8 << 20;
/// Commit log segment size of the hints engine: small, so the bytes of delivered hints
/// leave the log soon after their flush.
const SEGMENT_SIZE: u64 = 8 << 20;

/// In-memory accounting, under one lock.
#[derive(Debug, Default)]
struct State {
    owners: BTreeMap<NodeId, PendingStats>,
    last_id: u64,
}

#[derive(Debug, Default)]
struct Counters {
    kept: AtomicU64,
    removed: AtomicU64,
    dropped_window: AtomicU64,
    dropped_size: AtomicU64,
    corrupt: AtomicU64,
}

#[derive(Debug)]
struct Dropped {
    log: DroppedLog,
    /// Changes not yet persisted.
    dirty: bool,
}

/// The durable store of this node's hints. See the module documentation.
pub struct HintStore {
    engine: Engine,
    dir: PathBuf,
    limits: HintLimits,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Serialises removals (each reads a hint's size before deleting it).
    removing: Mutex<()>,
    dropped: Mutex<Dropped>,
    dropped_file_lost: bool,
    counters: Counters,
}

impl std::fmt::Debug for HintStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HintStore")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_error(path: PathBuf) -> impl FnOnce(std::io::Error) -> HintError {
    move |source| HintError::Io { path, source }
}

impl HintStore {
    /// Opens (or creates) the store in `dir`, its engine synced per `sync`.
    pub fn open(
        dir: &Path,
        sync: SyncMode,
        limits: HintLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<HintStore, HintError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir.to_path_buf()))?;
        let engine = Engine::open(
            dir,
            EngineOptions {
                sync,
                memtable_size: MEMTABLE_SIZE,
                segment_size: SEGMENT_SIZE,
                ..EngineOptions::default()
            },
        )?;
        if !engine.tables().iter().any(|t| t == HINTS_TABLE) {
            engine.create_table(HINTS_TABLE, TableOptions::default())?;
        }
        let (log, dropped_file_lost) = load_dropped(dir)?;
        let mut state = State::default();
        let mut scan = engine.scan(
            HINTS_TABLE,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        )?;
        let mut unreadable = 0u64;
        while let Some((key, value)) = scan.next_entry()? {
            let Ok((owner, id)) = decode_key(key) else {
                unreadable += 1;
                continue;
            };
            // A corrupt record counts as pending (written "now"): batch discards it.
            let written = check_record(value)
                .map(|(w, _)| w)
                .unwrap_or_else(|_| clock.now_micros());
            let p = state.owners.entry(owner).or_default();
            if p.count == 0 {
                p.oldest_micros = written;
            }
            p.count += 1;
            p.bytes += (value.len() + KEY_LEN) as u64;
            state.last_id = state.last_id.max(id.0);
        }
        if unreadable > 0 {
            tracing::error!(
                dir = %dir.display(),
                unreadable,
                "hint keys of the wrong length ignored"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            owners = state.owners.len(),
            hints = state.owners.values().map(|p| p.count).sum::<u64>(),
            "hint store opened"
        );
        Ok(HintStore {
            engine,
            dir: dir.to_path_buf(),
            limits,
            clock,
            state: Mutex::new(state),
            removing: Mutex::new(()),
            dropped: Mutex::new(Dropped { log, dirty: false }),
            dropped_file_lost,
            counters: Counters::default(),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bounds hints are kept within.
    pub fn limits(&self) -> HintLimits {
        self.limits
    }

    /// Stores a hint of `cells` for `owner`, or drops it at a bound (see the module
    /// documentation). An empty `cells` stores nothing and is `Kept` under id 0.
    /// Returns once the hint is durable per the sync mode.
    pub fn store(&self, owner: NodeId, cells: &[RawCell]) -> Result<Stored, HintError> {
        if cells.is_empty() {
            return Ok(Stored::Kept(HintId(0)));
        }
        let now = self.clock.now_micros();
        let value = encode_record(now, cells);
        if value.len() > MAX_HINT_RECORD {
            return Err(HintError::TooLarge {
                bytes: value.len(),
                limit: MAX_HINT_RECORD,
            });
        }
        let bytes = (value.len() + KEY_LEN) as u64;
        let window = i64::try_from(self.limits.window.as_micros()).unwrap_or(i64::MAX);
        let decision = {
            let mut s = lock(&self.state);
            let pending = s.owners.get(&owner).copied().unwrap_or_default();
            if pending.count > 0 && now.saturating_sub(pending.oldest_micros) > window {
                Err(DropReason::Window)
            } else if pending.bytes.saturating_add(bytes) > self.limits.max_bytes_per_owner {
                Err(DropReason::Size)
            } else {
                let id = u64::try_from(now)
                    .unwrap_or(0)
                    .max(s.last_id.saturating_add(1));
                s.last_id = id;
                let p = s.owners.entry(owner).or_default();
                if p.count == 0 {
                    p.oldest_micros = now;
                }
                p.count += 1;
                p.bytes += bytes;
                Ok(HintId(id))
            }
        };
        let id = match decision {
            Ok(id) => id,
            Err(reason) => {
                match reason {
                    DropReason::Window => &self.counters.dropped_window,
                    _ => &self.counters.dropped_size,
                }
                .fetch_add(1, Ordering::Relaxed);
                self.record_drop(owner, reason, Some(cells), bytes, now)?;
                return Ok(Stored::Dropped(reason));
            }
        };
        if let Err(e) = self.engine.put(HINTS_TABLE, &encode_key(owner, id), &value) {
            // Give the reservation back: nothing was stored.
            let mut s = lock(&self.state);
            if let Some(p) = s.owners.get_mut(&owner) {
                p.count = p.count.saturating_sub(1);
                p.bytes = p.bytes.saturating_sub(bytes);
                if p.count == 0 {
                    s.owners.remove(&owner);
                }
            }
            return Err(e.into());
        }
        self.counters.kept.fetch_add(1, Ordering::Relaxed);
        Ok(Stored::Kept(id))
    }

    /// Owners with pending hints, by node id.
    pub fn owners(&self) -> Vec<(NodeId, PendingStats)> {
        lock(&self.state)
            .owners
            .iter()
            .map(|(o, p)| (*o, *p))
            .collect()
    }

    /// What is pending for `owner` (zeros when nothing).
    pub fn pending(&self, owner: NodeId) -> PendingStats {
        lock(&self.state)
            .owners
            .get(&owner)
            .copied()
            .unwrap_or_default()
    }

    /// `owner`'s first pending hints in id order, until their records reach `max_bytes`
    /// (at least one hint when any is pending). A corrupt record met on the way is
    /// counted, recorded as dropped (keys unknown), removed and skipped; a hint older
    /// than [`HintLimits::ttl`] is counted as a window drop, recorded with its cells'
    /// spans (for repair), removed and skipped.
    pub fn batch(
        &self,
        owner: NodeId,
        max_bytes: usize,
    ) -> Result<Vec<(HintId, Vec<RawCell>)>, HintError> {
        let mut scan = self.owner_scan(owner)?;
        let mut out = Vec::new();
        let mut corrupt = Vec::new();
        let mut expired: Vec<(HintId, Vec<RawCell>, u64)> = Vec::new();
        let ttl = i64::try_from(self.limits.ttl.as_micros()).unwrap_or(i64::MAX);
        let oldest_kept = self.clock.now_micros().saturating_sub(ttl);
        let mut total = 0usize;
        while let Some((key, value)) = scan.next_entry()? {
            let id = match decode_key(key) {
                Ok((_, id)) => id,
                Err(e) => {
                    tracing::error!(%owner, error = %e, "hint key of the wrong length skipped");
                    continue;
                }
            };
            match decode_record(value) {
                Ok((written, cells)) if written < oldest_kept => {
                    expired.push((id, cells, (value.len() + KEY_LEN) as u64));
                }
                Ok((_, cells)) => {
                    out.push((id, cells));
                    total += value.len() + KEY_LEN;
                }
                Err(source) => {
                    let e = HintError::Corrupt { owner, id, source };
                    tracing::error!(error = %e, "corrupt hint discarded; its owner needs repair");
                    corrupt.push((id, (value.len() + KEY_LEN) as u64));
                }
            }
            if total >= max_bytes {
                break;
            }
        }
        drop(scan);
        if !corrupt.is_empty() {
            let now = self.clock.now_micros();
            for (_, bytes) in &corrupt {
                self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                self.record_drop(owner, DropReason::Corrupt, None, *bytes, now)?;
            }
            let ids: Vec<HintId> = corrupt.iter().map(|(id, _)| *id).collect();
            self.remove(owner, &ids)?;
        }
        if !expired.is_empty() {
            let now = self.clock.now_micros();
            tracing::warn!(%owner, hints = expired.len(), "hints older than their ttl discarded; their ranges need repair");
            for (_, cells, bytes) in &expired {
                self.counters.dropped_window.fetch_add(1, Ordering::Relaxed);
                self.record_drop(owner, DropReason::Window, Some(cells), *bytes, now)?;
            }
            let ids: Vec<HintId> = expired.iter().map(|(id, _, _)| *id).collect();
            self.remove(owner, &ids)?;
        }
        Ok(out)
    }

    /// Deletes `owner`'s hints `ids` (delivered, or discarded); ids not stored are
    /// ignored. Returns how many were removed.
    pub fn remove(&self, owner: NodeId, ids: &[HintId]) -> Result<usize, HintError> {
        let _serial = lock(&self.removing);
        let mut batch = WriteBatch::new();
        let mut bytes = 0u64;
        let mut n = 0u64;
        for id in ids {
            let key = encode_key(owner, *id);
            if let Some(v) = self.engine.get(HINTS_TABLE, &key)? {
                batch.delete(HINTS_TABLE, &key);
                bytes += (v.len() + KEY_LEN) as u64;
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        self.engine.write(&batch)?;
        let first = self.first_written(owner)?;
        let now = self.clock.now_micros();
        {
            let mut s = lock(&self.state);
            if let Some(p) = s.owners.get_mut(&owner) {
                p.count = p.count.saturating_sub(n);
                p.bytes = p.bytes.saturating_sub(bytes);
                if p.count == 0 {
                    s.owners.remove(&owner);
                } else {
                    // None: what is left is being written right now.
                    p.oldest_micros = first.unwrap_or(now);
                }
            }
        }
        self.counters.removed.fetch_add(n, Ordering::Relaxed);
        Ok(n as usize)
    }

    /// Records `owner`'s hint of `bytes` (cells `cells`, `None` when unknown) as
    /// discarded for `reason` after it was stored (delivery: [`DropReason::Rejected`]).
    pub fn record_discarded(
        &self,
        owner: NodeId,
        reason: DropReason,
        cells: Option<&[RawCell]>,
        bytes: u64,
    ) -> Result<(), HintError> {
        self.record_drop(owner, reason, cells, bytes, self.clock.now_micros())
    }

    /// An ordered scan of `owner`'s stored hints.
    fn owner_scan(&self, owner: NodeId) -> Result<sibyl_storage::ScanIter, HintError> {
        let (start, end) = owner_bounds(owner);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        Ok(self.engine.scan(
            HINTS_TABLE,
            Bound::Included(start.as_slice()),
            upper,
            Direction::Forward,
        )?)
    }

    /// The written time of `owner`'s first stored hint.
    fn first_written(&self, owner: NodeId) -> Result<Option<i64>, HintError> {
        let mut scan = self.owner_scan(owner)?;
        Ok(scan
            .next_entry()?
            .map(|(_, v)| check_record(v).map(|(w, _)| w).unwrap_or(i64::MIN)))
    }

    fn record_drop(
        &self,
        owner: NodeId,
        reason: DropReason,
        cells: Option<&[RawCell]>,
        bytes: u64,
        now: i64,
    ) -> Result<(), HintError> {
        let mut d = lock(&self.dropped);
        let widened = d.log.record(owner, reason, cells, bytes, now);
        d.dirty = true;
        if widened {
            self.persist_dropped(&mut d)?;
        }
        Ok(())
    }

    fn persist_dropped(&self, d: &mut Dropped) -> Result<(), HintError> {
        atomic_file::write_atomically(&self.dir, DROPPED_FILE, &d.log.encode())
            .map_err(io_error(self.dir.join(DROPPED_FILE)))?;
        d.dirty = false;
        Ok(())
    }

    /// Persists the dropped-hints counts if they changed since last persisted.
    pub fn flush_dropped(&self) -> Result<(), HintError> {
        let mut d = lock(&self.dropped);
        if d.dirty {
            self.persist_dropped(&mut d)?;
        }
        Ok(())
    }

    /// What was dropped, per owner (persisted across restarts until cleared).
    pub fn dropped(&self) -> Vec<DroppedHints> {
        lock(&self.dropped).log.owners.values().cloned().collect()
    }

    /// Forgets what was dropped for `owner` (anti-entropy repaired it), durably.
    pub fn clear_dropped(&self, owner: NodeId) -> Result<(), HintError> {
        let mut d = lock(&self.dropped);
        if d.log.owners.remove(&owner).is_some() {
            self.persist_dropped(&mut d)?;
        }
        Ok(())
    }

    /// Flushes the hints table and compacts it whole, purging the tombstones of removed
    /// hints (and their values): afterwards no removed hint's key is on disk.
    pub fn purge(&self) -> Result<(), HintError> {
        self.engine.flush(Some(HINTS_TABLE))?;
        self.engine.compact(HINTS_TABLE)?;
        Ok(())
    }

    /// Counters and sizes.
    pub fn stats(&self) -> HintStats {
        let (owners, pending_hints, pending_bytes) = {
            let s = lock(&self.state);
            (
                s.owners.len(),
                s.owners.values().map(|p| p.count).sum(),
                s.owners.values().map(|p| p.bytes).sum(),
            )
        };
        let table = self.engine.stats(HINTS_TABLE).unwrap_or_default();
        HintStats {
            owners,
            pending_hints,
            pending_bytes,
            kept: self.counters.kept.load(Ordering::Relaxed),
            removed: self.counters.removed.load(Ordering::Relaxed),
            dropped_window: self.counters.dropped_window.load(Ordering::Relaxed),
            dropped_size: self.counters.dropped_size.load(Ordering::Relaxed),
            corrupt: self.counters.corrupt.load(Ordering::Relaxed),
            sstable_entries: table.sstable_entries,
            sstable_tombstones: table.sstable_tombstones,
            memtable_entries: table.memtable_entries,
            dropped_file_lost: self.dropped_file_lost,
        }
    }

    /// Persists the dropped-hints counts and closes the engine (also done on drop).
    pub fn close(&self) -> Result<(), HintError> {
        self.flush_dropped()?;
        self.engine.close()?;
        Ok(())
    }

    /// Writes raw bytes under a hint key (tests: corrupt records).
    #[cfg(test)]
    pub(crate) fn put_raw(&self, owner: NodeId, id: HintId, value: &[u8]) {
        self.engine
            .put(HINTS_TABLE, &encode_key(owner, id), value)
            .expect("put");
    }
}

impl Drop for HintStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush_dropped() {
            tracing::warn!(error = %e, "persisting dropped hints on close");
        }
    }
}

/// Loads the dropped-hints file; an unreadable one is set aside (`dropped.corrupt`) and
/// reported (`true`, on every open while `dropped.corrupt` exists): the store starts
/// with none.
fn load_dropped(dir: &Path) -> Result<(DroppedLog, bool), HintError> {
    let path = dir.join(DROPPED_FILE);
    let aside = dir.join(format!("{DROPPED_FILE}.corrupt"));
    // Set aside earlier and not yet looked at by an operator: still lost.
    let lost_before = aside.exists();
    let Some(bytes) =
        atomic_file::read_if_exists(dir, DROPPED_FILE).map_err(io_error(path.clone()))?
    else {
        return Ok((DroppedLog::default(), lost_before));
    };
    match DroppedLog::decode(&bytes) {
        Some(log) => Ok((log, lost_before)),
        None => {
            tracing::error!(
                path = %path.display(),
                aside = %aside.display(),
                "dropped-hints file unreadable: set aside; what it recorded needs a full repair"
            );
            std::fs::rename(&path, &aside).map_err(io_error(path))?;
            Ok((DroppedLog::default(), true))
        }
    }
}
