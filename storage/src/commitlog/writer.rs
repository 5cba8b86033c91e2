//! [`CommitLog`]: the append side of the commit log.
//!
//! State and locks:
//! - `writer` (mutex): the active segment, the closed segments, the logical position
//!   (bytes of records appended by this process) and the last seqno. Held across the one
//!   `write(2)` of an append and across a segment roll; never across a group-commit fsync.
//! - `sync` (mutex + condvar): the durable position and whether an fsync is running.
//!   Lock order: `writer` before `sync`, never the reverse.
//! - `poison`: set once by the first fsync error or write error other than a full disk;
//!   every later `append` / `sync` returns [`Error::Poisoned`] with that reason.
//!
//! A full disk (`ENOSPC`, `EDQUOT`) does not poison: an append that hits it cuts the
//! segment back to where the record started (`ftruncate` and a seek, which need no
//! space) and returns [`Error::DiskFull`]; a segment roll that cannot create the next
//! segment keeps appending to the current one. Appends succeed again once space is freed.
//! Only the `write(2)` is retried this way, never an fsync.
//!
//! Group commit: a syncer that finds no fsync running marks one as running, reads the
//! current position and active file under `writer`, fsyncs outside every lock, then
//! publishes the position as durable and wakes the waiters. A waiter whose ticket is at or
//! below the durable position returns without an fsync of its own; the others start the
//! next one. So one fsync covers every append made before it started.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::format::{encode_record, MAX_RECORD_LEN, RECORD_HEADER_LEN};
use super::reader::{list_segments, walk_segment};
use super::segment::{create_segment, Segment};
use super::{CommitLogOptions, SyncMode};
use crate::error::{Error, Result};
use crate::fault::{is_disk_full, Faults};
use crate::latency::{LatencyHistogram, LatencySnapshot};
use crate::types::SeqNo;

/// Where an appended record ends; pass it to [`CommitLog::sync`] to wait for durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendTicket {
    segment_id: u64,
    end_offset: u64,
    /// Logical position (bytes of records appended since open) just after the record.
    position: u64,
}

impl AppendTicket {
    /// The segment the record was written to.
    pub fn segment_id(&self) -> u64 {
        self.segment_id
    }

    /// Byte offset in that segment just past the record.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }
}

/// The commit log. See the module docs for its locks and the group-commit protocol.
pub struct CommitLog {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    opts: CommitLogOptions,
    faults: Arc<Faults>,
    writer: Mutex<WriterState>,
    sync: Mutex<SyncState>,
    sync_done: Condvar,
    poison: OnceLock<String>,
    fsyncs: AtomicU64,
    /// How long the syncs writers wait for (group commits, periodic syncs) took.
    sync_latency: LatencyHistogram,
    closed: AtomicBool,
    stop: Mutex<bool>,
    stop_signal: Condvar,
}

struct WriterState {
    active: Segment,
    active_file: Arc<File>,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    position: u64,
    last_seqno: Option<SeqNo>,
    /// Reused encode buffer.
    buf: Vec<u8>,
}

struct SyncState {
    synced: u64,
    in_progress: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here do not panic; if one did, its state is still consistent
    // (positions only grow), so recover the guard instead of panicking again.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CommitLog {
    /// Opens a fresh segment with id `first_segment_id` (from
    /// [`super::ReplayReport::next_segment_id`]) in `dir` (created, and its parent
    /// fsynced, if missing), and starts
    /// the periodic sync thread in [`SyncMode::Periodic`].
    ///
    /// Existing segments with smaller ids (already replayed) are read once to learn their
    /// last seqno, so that [`CommitLog::delete_through`] can delete them and appends must
    /// follow their seqnos. A segment with an id `>= first_segment_id` is an
    /// [`Error::InvalidArgument`]: it would be overwritten.
    pub fn open(
        dir: &Path,
        opts: CommitLogOptions,
        faults: Arc<Faults>,
        first_segment_id: u64,
    ) -> Result<CommitLog> {
        if let SyncMode::Periodic { interval } = opts.sync {
            if interval.is_zero() {
                return Err(Error::InvalidArgument(
                    "commit log sync interval must not be zero".into(),
                ));
            }
        }
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            // Make the new directory's own entry durable.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                faults.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
            }
        }
        let mut closed = Vec::new();
        let mut last_seqno = None;
        for (id, path) in list_segments(dir)? {
            if id >= first_segment_id {
                return Err(Error::InvalidArgument(format!(
                    "commit log segment {} exists; first_segment_id {first_segment_id} must be \
                     larger (use ReplayReport::next_segment_id)",
                    path.display()
                )));
            }
            let buf = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let mut max_seqno = None;
            walk_segment(&path, &buf, id, true, &mut last_seqno, |seqno, _| {
                max_seqno = Some(seqno);
                Ok(())
            })?;
            closed.push(Segment {
                id,
                path,
                size: buf.len() as u64,
                max_seqno,
            });
        }
        let fsyncs = AtomicU64::new(0);
        let (active, file) = create_segment(dir, first_segment_id, &faults, &fsyncs)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            faults,
            writer: Mutex::new(WriterState {
                active,
                active_file: Arc::new(file),
                closed,
                position: 0,
                last_seqno,
                buf: Vec::new(),
            }),
            sync: Mutex::new(SyncState {
                synced: 0,
                in_progress: false,
            }),
            sync_done: Condvar::new(),
            poison: OnceLock::new(),
            fsyncs,
            sync_latency: LatencyHistogram::new(),
            closed: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
        });
        let syncer = match opts.sync {
            SyncMode::Periodic { interval } => {
                let shared = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("sibyl-commitlog-sync".into())
                    .spawn(move || shared.run_periodic(interval))
                    .map_err(|e| Error::io(dir, e))?;
                Some(handle)
            }
            SyncMode::Batch => None,
        };
        Ok(CommitLog {
            shared,
            syncer: Mutex::new(syncer),
        })
    }

    /// Appends one record `(seqno, payload)` with a single `write(2)` (so a process crash
    /// loses nothing appended), first rolling to a new segment when the record would take
    /// the current one past `segment_size`.
    ///
    /// Errors: [`Error::InvalidArgument`] for a payload over 256 MiB or a seqno not above
    /// the last one; [`Error::Closed`] after [`CommitLog::close`]; [`Error::DiskFull`]
    /// when the file system had no room (nothing appended, the seqno is not used up);
    /// [`Error::Poisoned`] when this or an earlier write or fsync failed otherwise.
    pub fn append(&self, seqno: SeqNo, payload: &[u8]) -> Result<AppendTicket> {
        let sh = &*self.shared;
        if payload.len() > MAX_RECORD_LEN as usize {
            return Err(Error::InvalidArgument(format!(
                "commit log record of {} bytes exceeds the cap of {MAX_RECORD_LEN}",
                payload.len()
            )));
        }
        let mut w = lock(&sh.writer);
        // Checked under `writer`, which `close` also takes to set it: every append either
        // precedes close's final fsync target or fails here.
        if sh.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        sh.check_poison()?;
        if let Some(last) = w.last_seqno {
            if seqno <= last {
                return Err(Error::InvalidArgument(format!(
                    "commit log seqno {seqno} does not follow {last}"
                )));
            }
        }
        let record_len = (RECORD_HEADER_LEN + payload.len()) as u64;
        if w.active.max_seqno.is_some()
            && w.active.size.saturating_add(record_len) > sh.opts.segment_size
        {
            // On a full disk the current segment stays active; the next append rolls again.
            sh.roll(&mut w)?;
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        encode_record(&mut buf, seqno, payload);
        let written = sh
            .faults
            .check_write()
            .and_then(|()| (&*w.active_file).write_all(&buf));
        w.buf = buf;
        if let Err(e) = written {
            if is_disk_full(&e) {
                return Err(sh.undo_partial_append(&w, record_len));
            }
            return Err(sh.poison(format!("write to {}: {e}", w.active.path.display())));
        }
        w.active.size += record_len;
        w.active.max_seqno = Some(seqno);
        w.position += record_len;
        w.last_seqno = Some(seqno);
        Ok(AppendTicket {
            segment_id: w.active.id,
            end_offset: w.active.size,
            position: w.position,
        })
    }

    /// Batch mode: returns when everything up to `ticket` is fsynced, sharing fsyncs with
    /// concurrent callers (group commit). Periodic mode: returns at once. Both return
    /// [`Error::Poisoned`] once the log is poisoned; Batch mode never returns `Ok` unless
    /// an fsync that started after the ticket's append succeeded.
    pub fn sync(&self, ticket: &AppendTicket) -> Result<()> {
        match self.shared.opts.sync {
            SyncMode::Periodic { .. } => self.shared.check_poison(),
            SyncMode::Batch => self.shared.sync_to(ticket.position),
        }
    }

    /// fsyncs everything appended so far (in either mode); used on flush and close.
    pub fn sync_all(&self) -> Result<()> {
        let target = lock(&self.shared.writer).position;
        self.shared.sync_to(target)
    }

    /// True when the record of `ticket` is known to be fsynced.
    pub fn is_durable(&self, ticket: &AppendTicket) -> bool {
        lock(&self.shared.sync).synced >= ticket.position
    }

    /// Deletes the oldest closed segments whose records all have seqno `<= seqno` (never
    /// the active segment), then fsyncs the directory. Returns how many were deleted.
    /// A failed directory fsync poisons the log.
    pub fn delete_through(&self, seqno: SeqNo) -> Result<usize> {
        let sh = &*self.shared;
        let covered: Vec<Segment> = {
            let mut w = lock(&sh.writer);
            let n = w
                .closed
                .iter()
                .take_while(|s| s.max_seqno.is_none_or(|m| m <= seqno))
                .count();
            w.closed.drain(..n).collect()
        };
        if covered.is_empty() {
            return Ok(0);
        }
        for (i, seg) in covered.iter().enumerate() {
            if let Err(e) = fs::remove_file(&seg.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // Give the segments not yet deleted back, in order, at the front.
                    let mut w = lock(&sh.writer);
                    let rest: Vec<Segment> = covered.get(i..).unwrap_or_default().to_vec();
                    w.closed.splice(0..0, rest);
                    return Err(Error::io(&seg.path, e));
                }
            }
        }
        if let Err(e) = sh.faults.sync_dir(&sh.dir) {
            return Err(sh.poison(format!("fsync of directory {}: {e}", sh.dir.display())));
        }
        Ok(covered.len())
    }

    /// Number of segment files (closed and active) and their total bytes.
    pub fn segments(&self) -> (usize, u64) {
        let w = lock(&self.shared.writer);
        let bytes = w.closed.iter().map(|s| s.size).sum::<u64>() + w.active.size;
        (w.closed.len() + 1, bytes)
    }

    /// Id of the segment appends currently go to.
    pub fn active_segment_id(&self) -> u64 {
        lock(&self.shared.writer).active.id
    }

    /// Number of fsyncs of segment files made so far (group commits, periodic syncs,
    /// segment rolls and creations); for tests and metrics.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// How long the syncs of appended records took (group commits in batch mode, the
    /// periodic syncs otherwise; not segment creations and rolls).
    pub fn sync_latency(&self) -> LatencySnapshot {
        self.shared.sync_latency.snapshot()
    }

    /// Makes a final fsync of everything appended, then stops the sync thread. Later
    /// appends return [`Error::Closed`]. Idempotent: a second call returns `Ok`.
    pub fn close(&self) -> Result<()> {
        let sh = &*self.shared;
        let target = {
            let w = lock(&sh.writer);
            if sh.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            w.position
        };
        let result = sh.sync_to(target);
        *lock(&sh.stop) = true;
        sh.stop_signal.notify_all();
        if let Some(handle) = lock(&self.syncer).take() {
            if handle.join().is_err() {
                tracing::error!("commit log sync thread panicked");
            }
        }
        result
    }

    /// True once a write or fsync has failed; the log then accepts nothing more.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poison.get().is_some()
    }
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "commit log: final sync on drop failed");
        }
    }
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("dir", &self.shared.dir)
            .field("opts", &self.shared.opts)
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the first failure and returns the [`Error::Poisoned`] to hand back.
    fn poison(&self, reason: String) -> Error {
        if self.poison.set(reason.clone()).is_ok() {
            tracing::error!(%reason, "commit log poisoned");
        }
        Error::Poisoned {
            reason: self.poison.get().cloned().unwrap_or(reason),
        }
    }

    fn count_fsync(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// A `write(2)` of a record found the disk full after writing part of it, maybe none:
    /// cuts the active segment back to where the record began, so that the next append
    /// follows the last whole record, and returns the [`Error::DiskFull`] to hand back.
    /// If the cut itself fails the log cannot tell what its segment ends with: poison.
    fn undo_partial_append(&self, w: &WriterState, record_len: u64) -> Error {
        let end = w.active.size;
        let mut file = &*w.active_file;
        let cut = file
            .set_len(end)
            .and_then(|()| file.seek(SeekFrom::Start(end)).map(|_| ()));
        if let Err(e) = cut {
            return self.poison(format!(
                "cutting {} back to {end} after a full disk: {e}",
                w.active.path.display()
            ));
        }
        Error::DiskFull {
            path: w.active.path.clone(),
            needed: record_len,
            free: self.faults.free_bytes(&self.dir).unwrap_or(0),
            reserve: 0,
        }
    }

    /// Closes the active segment (fsyncing it, so that it can never end torn) and starts
    /// the next one. Called with `writer` held. A full disk while creating the next
    /// segment leaves the current one active and returns [`Error::DiskFull`].
    fn roll(&self, w: &mut WriterState) -> Result<()> {
        self.count_fsync();
        if let Err(e) = self.faults.sync_data(&w.active_file) {
            return Err(self.poison(format!("fsync of {}: {e}", w.active.path.display())));
        }
        let next_id = w.active.id.saturating_add(1);
        let (segment, file) = create_segment(&self.dir, next_id, &self.faults, &self.fsyncs)
            .map_err(|e| {
                if e.is_disk_full() {
                    e
                } else {
                    self.poison(format!("creating segment {next_id}: {e}"))
                }
            })?;
        let old = std::mem::replace(&mut w.active, segment);
        w.closed.push(old);
        w.active_file = Arc::new(file);
        // Everything appended so far sat in the segment just fsynced.
        let mut st = lock(&self.sync);
        st.synced = st.synced.max(w.position);
        drop(st);
        self.sync_done.notify_all();
        Ok(())
    }

    /// Group commit: returns once the durable position is at least `target`.
    fn sync_to(&self, target: u64) -> Result<()> {
        loop {
            let mut st = lock(&self.sync);
            loop {
                self.check_poison()?;
                if st.synced >= target {
                    return Ok(());
                }
                if !st.in_progress {
                    break;
                }
                st = self
                    .sync_done
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            st.in_progress = true;
            drop(st);

            let (file, path, position) = {
                let w = lock(&self.writer);
                (
                    Arc::clone(&w.active_file),
                    w.active.path.clone(),
                    w.position,
                )
            };
            self.count_fsync();
            let started = std::time::Instant::now();
            let result = self.faults.sync_data(&file);
            self.sync_latency.record(started.elapsed());

            let mut st = lock(&self.sync);
            st.in_progress = false;
            let outcome = match result {
                Ok(()) => {
                    st.synced = st.synced.max(position);
                    Ok(())
                }
                Err(e) => Err(self.poison(format!("fsync of {}: {e}", path.display()))),
            };
            drop(st);
            self.sync_done.notify_all();
            outcome?;
        }
    }

    /// Body of the periodic sync thread: fsyncs whatever was appended every `interval`
    /// until stopped or poisoned.
    fn run_periodic(&self, interval: Duration) {
        let mut stopped = lock(&self.stop);
        loop {
            stopped = self
                .stop_signal
                .wait_timeout_while(stopped, interval, |s| !*s)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
            if *stopped {
                return;
            }
            drop(stopped);
            let target = lock(&self.writer).position;
            if let Err(e) = self.sync_to(target) {
                tracing::error!(error = %e, "commit log: periodic sync failed; stopping");
                return;
            }
            stopped = lock(&self.stop);
        }
    }
}
