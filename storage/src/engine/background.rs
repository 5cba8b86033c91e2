//! The background threads: the flush thread writes frozen memtables out as SSTables; the
//! compaction thread merges SSTables as the table's strategy asks. Both are owned by the
//! [`Engine`](super::Engine) and stopped by `close`.
//!
//! A job that finds the disk full ([`Error::DiskFull`]) has removed its partial files; its
//! thread records the shortage ([`super::space`]), waits out a [`Backoff`] (new work does
//! not cut the wait short) and tries again. Any other write or fsync failure poisons.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::space::{Backoff, Work};
use super::table::{Table, TableFile, TableVersion};
use super::{lock, Background, Inner};
use crate::error::{Error, Result};
use crate::manifest::SsTableEntry;
use crate::memtable::Memtable;
use crate::sstable::{SsTable, SsTableBuilder};

/// How long a background thread sleeps before re-checking for work it was not woken for.
const IDLE_WAIT: Duration = Duration::from_millis(500);

pub(crate) fn start(inner: &Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let spawn = |name: &str, body: fn(&Arc<Inner>)| {
        let shared = inner.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&shared))
            .map_err(|e| Error::io(&inner.dir, e))
    };
    Ok(vec![
        spawn("sibyl-flush", flush_loop)?,
        spawn("sibyl-compact", compaction_loop)?,
    ])
}

/// Waits until `pending(bg)` is set (and clears it), or, with `retry_at`, until that
/// instant whatever is pending (a backoff is not cut short); false on shutdown.
fn wait_for_work(
    inner: &Inner,
    pending: impl Fn(&mut Background) -> &mut bool,
    retry_at: Option<Instant>,
) -> bool {
    let mut bg = lock(&inner.bg);
    loop {
        if bg.shutdown {
            return false;
        }
        let wait = match retry_at {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(IDLE_WAIT),
                _ => break,
            },
            None if *pending(&mut bg) => break,
            None => IDLE_WAIT,
        };
        bg = inner
            .bg_cv
            .wait_timeout(bg, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    *pending(&mut bg) = false;
    true
}

fn flush_loop(inner: &Arc<Inner>) {
    let mut backoff = Backoff::default();
    let mut retry_at = None;
    loop {
        if !wait_for_work(inner, |bg| &mut bg.flush_pending, retry_at.take()) {
            return;
        }
        if inner.poisoned.load(Ordering::Acquire) {
            continue;
        }
        let tables: Vec<Arc<Table>> = inner.read_tables().values().cloned().collect();
        let mut flushed_any = false;
        'tables: for t in tables {
            loop {
                let Some(mem) = t.version().frozen.last().cloned() else {
                    break;
                };
                match flush_memtable(inner, &t, &mem) {
                    Ok(()) => flushed_any = true,
                    Err(e) if e.is_disk_full() => {
                        let needed = mem.approximate_size() as u64;
                        inner.space.blocked(Work::Flush, &e, Some(needed));
                        retry_at = Some(backoff.failed());
                        break 'tables;
                    }
                    Err(e) => {
                        inner.poison_with(&format!("flush of table {}", t.name), e);
                        break;
                    }
                }
                if t.dropped.load(Ordering::Acquire) {
                    break;
                }
            }
        }
        if retry_at.is_none() {
            inner.space.cleared(Work::Flush);
            backoff.reset();
        }
        {
            // Also wakes writers stalled on frozen memtables, to refuse if blocked.
            let _w = lock(&inner.write);
            inner.flushed.notify_all();
        }
        if flushed_any {
            if let Err(e) = delete_obsolete_segments(inner) {
                tracing::warn!(error = %e, "deleting commit log segments");
            }
            let mut bg = lock(&inner.bg);
            bg.compaction_pending = true;
            inner.bg_cv.notify_all();
        }
    }
}

/// Writes `mem` (the oldest frozen memtable of `t`) to a new SSTable, records it in the
/// manifest and swaps it into the table's version.
fn flush_memtable(inner: &Inner, t: &Arc<Table>, mem: &Arc<Memtable>) -> Result<()> {
    let file = if mem.is_empty() {
        None
    } else {
        let file_id = allocate_file_id(inner);
        let path = inner.sstable_path(file_id);
        let mut b = SsTableBuilder::create(&path, inner.opts.sstable, inner.opts.faults.clone())?;
        if let Err(err) = mem.try_for_each(|k, seqno, entry| b.add(k, seqno, entry)) {
            b.abandon();
            return Err(err);
        }
        b.finish()?;
        inner
            .opts
            .faults
            .sync_dir(&inner.sstable_dir())
            .map_err(|e| Error::io(inner.sstable_dir(), e))?;
        Some(Arc::new(TableFile {
            file_id,
            level: t.compaction.flush_level(),
            sst: SsTable::open(&path)?,
        }))
    };
    let mut manifest = lock(&inner.manifest);
    if t.dropped.load(Ordering::Acquire) {
        if let Some(f) = &file {
            let _ = std::fs::remove_file(inner.sstable_path(f.file_id));
        }
        return Ok(());
    }
    let mut next = manifest.clone();
    next.last_seqno = next.last_seqno.max(lock(&inner.write).last_seqno);
    if let Some(tm) = next.tables.iter_mut().find(|tm| tm.id == t.id) {
        tm.flushed_seqno = tm.flushed_seqno.max(mem.max_seqno());
        if let Some(f) = &file {
            tm.sstables.push(SsTableEntry {
                file_id: f.file_id,
                level: f.level,
            });
        }
    }
    if let Err(e) = crate::manifest::store(&inner.dir, &next, &inner.opts.faults) {
        if e.is_disk_full() {
            // The memtable stays frozen and is flushed again later, to a new file.
            if let Some(f) = &file {
                let _ = std::fs::remove_file(inner.sstable_path(f.file_id));
            }
        }
        return Err(e);
    }
    *manifest = next;
    // Swap under the write mutex so writers stalled on `flushed` cannot miss the change.
    let _w = lock(&inner.write);
    t.update_version(|v| {
        let mut files = v.files.clone();
        if let Some(f) = &file {
            files.push(f.clone());
            TableVersion::sort_files(&mut files);
        }
        TableVersion {
            active: v.active.clone(),
            frozen: v
                .frozen
                .iter()
                .filter(|m| !Arc::ptr_eq(m, mem))
                .cloned()
                .collect(),
            files,
        }
    });
    t.flushes.fetch_add(1, Ordering::Relaxed);
    inner.flushed.notify_all();
    Ok(())
}

pub(crate) fn allocate_file_id(inner: &Inner) -> u64 {
    // File ids only need to be unique; the manifest stores the high-water mark on its next
    // write, and ids above it found on disk at open are orphans that get removed.
    let mut m = lock(&inner.manifest);
    let id = m.next_file_id;
    m.next_file_id += 1;
    id
}

/// Deletes commit log segments every table has flushed past. Serialised, so a caller
/// returns only once no deletion it could have asked for is still under way.
pub(crate) fn delete_obsolete_segments(inner: &Inner) -> Result<()> {
    let _gc = lock(&inner.segment_gc);
    let through = {
        let w = lock(&inner.write);
        let mut needed: Option<u64> = None;
        for t in inner.read_tables().values() {
            let v = t.version();
            for m in v.frozen.iter().chain(std::iter::once(&v.active)) {
                if let Some(s) = m.min_seqno() {
                    needed = Some(needed.map_or(s, |n: u64| n.min(s)));
                }
            }
        }
        match needed {
            Some(s) => s.saturating_sub(1),
            None => w.last_seqno,
        }
    };
    inner.log.delete_through(through)?;
    Ok(())
}

fn compaction_loop(inner: &Arc<Inner>) {
    let mut backoff = Backoff::default();
    let mut retry_at = None;
    loop {
        if !wait_for_work(inner, |bg| &mut bg.compaction_pending, retry_at.take()) {
            return;
        }
        if !inner.opts.auto_compaction || inner.poisoned.load(Ordering::Acquire) {
            continue;
        }
        let held = || inner.compaction_holds.load(Ordering::Acquire) > 0;
        if held() {
            // The last hold to go wakes this thread again.
            continue;
        }
        let tables: Vec<Arc<Table>> = inner.read_tables().values().cloned().collect();
        'tables: for t in tables {
            // Keep compacting a table while its strategy finds work, checking for shutdown.
            loop {
                if lock(&inner.bg).shutdown {
                    return;
                }
                if held() {
                    break 'tables;
                }
                match inner.compact_step(&t) {
                    Ok(true) => {}
                    Ok(false) => break,
                    // No room for the output: the inputs stand, the outputs are gone.
                    Err(e @ Error::DiskFull { .. }) => {
                        inner.space.blocked(Work::Compaction, &e, None);
                        retry_at = Some(backoff.failed());
                        break 'tables;
                    }
                    // A failed write or fsync poisons, like everywhere else. Anything
                    // else (a corrupt input block) stops this round for the table and is
                    // logged; reads of the bad block keep failing with the typed error.
                    Err(e @ Error::Io { .. }) => {
                        inner.poison(format!("compaction of table {}: {e}", t.name));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(table = %t.name, error = %e, "compaction failed");
                        break;
                    }
                }
            }
        }
        if retry_at.is_none() {
            inner.space.cleared(Work::Compaction);
            backoff.reset();
        }
    }
}
