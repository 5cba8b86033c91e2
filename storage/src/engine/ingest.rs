//! Ingestion: an SSTable built outside the write path, from entries a caller already
//! holds in key order, and added to a table whole.
//!
//! A node receiving a token range from a peer (a bootstrap) has the range's entries in
//! ascending key order, already merged at the source. Sending them through the write
//! path costs a commit-log append, a memtable insert and a flush per entry; building the
//! SSTable directly writes each byte once. The file is fsynced, then listed in the
//! manifest (stored durably) at the table's flush level, like a flushed memtable.
//!
//! Only tables whose merge policy is not newest-wins may ingest: their versions combine
//! by a commutative merge, so an ingested version needs no place in the sequence order
//! (its entries carry the sequence number current when the ingestion began). In a
//! newest-wins table an ingested entry would overwrite or lose to writes by accident of
//! numbering; [`Engine::ingest`] refuses such tables.
//!
//! A crash before [`Ingest::finish`] stored the manifest leaves a file the manifest does
//! not list; the next open removes it as an orphan. Dropping an [`Ingest`] unfinished
//! removes its file.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::background::allocate_file_id;
use super::table::{Table, TableFile};
use super::{lock, space, Engine, Inner};
use crate::error::{Error, Result};
use crate::manifest::SsTableEntry;
use crate::sstable::{SsTable, SsTableBuilder};
use crate::types::{EntryRef, SeqNo};

/// An SSTable being built for one table (see the module documentation).
pub struct Ingest {
    inner: Arc<Inner>,
    table: Arc<Table>,
    file_id: u64,
    seqno: SeqNo,
    builder: SsTableBuilder,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("table", &self.table.name)
            .field("file_id", &self.file_id)
            .field("entries", &self.builder.entries())
            .finish_non_exhaustive()
    }
}

/// What a finished ingestion added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Entries in the file.
    pub entries: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// The smallest and largest key (empty when the file had no entries).
    pub smallest: Vec<u8>,
    /// See `smallest`.
    pub largest: Vec<u8>,
}

impl Engine {
    /// Starts an SSTable for `table` (see the module documentation). Fails with
    /// [`Error::UnknownTable`], with [`Error::InvalidArgument`] when the table's merge
    /// policy is newest-wins, and with [`Error::DiskFull`] when free space is below the
    /// engine's reserve.
    pub fn ingest(&self, table: &str) -> Result<Ingest> {
        let inner = &self.inner;
        inner.check_poisoned()?;
        let t = inner.table(table)?;
        if t.merge.newest_wins() {
            return Err(Error::InvalidArgument(format!(
                "table {table:?} keeps the newest version of a key: it cannot ingest"
            )));
        }
        if let Err(e) = inner.space.check_reserve(&inner.opts.faults, 0) {
            inner.space.blocked(space::Work::Writes, &e, None);
            return Err(e);
        }
        let seqno = lock(&inner.write).last_seqno;
        let file_id = allocate_file_id(inner);
        let builder = SsTableBuilder::create(
            &inner.sstable_path(file_id),
            inner.opts.sstable,
            inner.opts.faults.clone(),
        )?;
        Ok(Ingest {
            inner: inner.clone(),
            table: t,
            file_id,
            seqno,
            builder,
        })
    }
}

impl Ingest {
    /// Adds `key` with `value`. Keys must strictly ascend ([`Error::InvalidArgument`]
    /// otherwise; the file is then unusable and should be dropped).
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        super::check_key(key)?;
        self.builder.add(key, self.seqno, EntryRef::Value(value))
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.builder.entries()
    }

    /// Bytes the file would have if finished now (approximate).
    pub fn estimated_size(&self) -> u64 {
        self.builder.estimated_size()
    }

    /// Finishes the file (fsynced with its directory) and adds it to the table through a
    /// durable manifest update; from then on reads see its entries. An empty ingestion
    /// adds nothing. Fails with [`Error::UnknownTable`] when the table was dropped
    /// meanwhile (the file is removed).
    pub fn finish(self) -> Result<IngestReport> {
        let Ingest {
            inner,
            table: t,
            file_id,
            builder,
            ..
        } = self;
        inner.check_poisoned()?;
        if builder.entries() == 0 {
            builder.abandon();
            return Ok(IngestReport {
                entries: 0,
                file_size: 0,
                smallest: Vec::new(),
                largest: Vec::new(),
            });
        }
        let path = inner.sstable_path(file_id);
        let info = builder.finish()?;
        let remove = || {
            let _ = std::fs::remove_file(&path);
        };
        if let Err(e) = inner.opts.faults.sync_dir(&inner.sstable_dir()) {
            remove();
            return Err(Error::io(inner.sstable_dir(), e));
        }
        let file = match SsTable::open(&path) {
            Ok(sst) => Arc::new(TableFile {
                file_id,
                level: t.compaction.flush_level(),
                sst,
            }),
            Err(e) => {
                remove();
                return Err(e);
            }
        };
        let mut manifest = lock(&inner.manifest);
        if t.dropped.load(Ordering::Acquire) {
            remove();
            return Err(Error::UnknownTable {
                name: t.name.clone(),
            });
        }
        let mut next = manifest.clone();
        if let Some(tm) = next.tables.iter_mut().find(|tm| tm.id == t.id) {
            tm.sstables.push(SsTableEntry {
                file_id,
                level: file.level,
            });
        }
        if let Err(e) = crate::manifest::store(&inner.dir, &next, &inner.opts.faults) {
            // The old manifest stands (a full disk) or the engine is poisoned: either way
            // the file is not listed.
            remove();
            return Err(inner.poison_unless_disk_full("storing manifest", e));
        }
        *manifest = next;
        {
            // Under the write mutex, as a flush swaps its file in.
            let _w = lock(&inner.write);
            t.update_version(|v| {
                let mut files = v.files.clone();
                files.push(file.clone());
                v.with_files(files)
            });
        }
        drop(manifest);
        inner.wake_background(false, true);
        Ok(IngestReport {
            entries: info.entries,
            file_size: info.file_size,
            smallest: info.smallest,
            largest: info.largest,
        })
    }
}
