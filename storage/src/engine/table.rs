//! One table (column family) of the engine: its options, merge policy, counters and the
//! current [`TableVersion`] — the immutable snapshot of its memtables and SSTables.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::compaction::{CompactCursors, CompactionStrategy, FileDesc};
use crate::error::Result;
use crate::memtable::Memtable;
use crate::merge::{MergePolicy, NewestWins};
use crate::sstable::SsTable;
use crate::types::{Entry, SeqNo};
use sibyl_coding::{put_varint_prefixed, ByteReader};

/// Options of a table, fixed at creation.
#[derive(Clone)]
pub struct TableOptions {
    /// How the table's SSTables are compacted.
    pub compaction: CompactionStrategy,
    /// How versions of a key combine. Not persisted: on reopen the engine asks its
    /// `merge_resolver`, passing `metadata`.
    pub merge: Arc<dyn MergePolicy>,
    /// Opaque bytes stored with the table (the node keeps its schema here).
    pub metadata: Vec<u8>,
    /// Keep a bloom filter of the first N bytes of every key in each memtable, so reads
    /// of a range within one such prefix (a row) skip memtables that cannot hold it.
    pub prefix_bloom_len: Option<usize>,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            compaction: CompactionStrategy::default(),
            merge: Arc::new(NewestWins),
            metadata: Vec::new(),
            prefix_bloom_len: None,
        }
    }
}

impl std::fmt::Debug for TableOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableOptions")
            .field("compaction", &self.compaction)
            .field("metadata_len", &self.metadata.len())
            .finish_non_exhaustive()
    }
}

/// Encodes the persisted part of the options for the manifest:
/// `compaction:bytes metadata:bytes [prefix_bloom_len:varint]` (0 = none; absent in
/// manifests written before it existed).
pub(crate) fn encode_options(o: &TableOptions) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint_prefixed(&mut b, o.compaction.name().as_bytes());
    put_varint_prefixed(&mut b, &o.metadata);
    sibyl_coding::put_varint(&mut b, o.prefix_bloom_len.unwrap_or(0) as u64);
    b
}

/// The options [`encode_options`] persisted.
pub(crate) struct PersistedOptions {
    pub compaction: CompactionStrategy,
    pub metadata: Vec<u8>,
    pub prefix_bloom_len: Option<usize>,
}

/// Decodes what [`encode_options`] wrote.
pub(crate) fn decode_options(b: &[u8]) -> Option<PersistedOptions> {
    let mut r = ByteReader::new(b);
    let name = std::str::from_utf8(r.varint_prefixed()?).ok()?;
    let metadata = r.varint_prefixed()?.to_vec();
    let prefix = if r.is_empty() { 0 } else { r.varint()? };
    Some(PersistedOptions {
        compaction: CompactionStrategy::from_name(name)?,
        metadata,
        prefix_bloom_len: usize::try_from(prefix).ok().filter(|&n| n > 0),
    })
}

/// Counters and sizes of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Live SSTables.
    pub sstables: usize,
    /// SSTables per level (index = level).
    pub sstables_per_level: Vec<usize>,
    /// Bytes in live SSTables.
    pub sstable_bytes: u64,
    /// Entries in live SSTables (versions of a key in several files count several times).
    pub sstable_entries: u64,
    /// Tombstones in live SSTables.
    pub sstable_tombstones: u64,
    /// Bytes held by the active and frozen memtables.
    pub memtable_bytes: u64,
    /// Keys in the active and frozen memtables.
    pub memtable_entries: u64,
    /// Memtables frozen and waiting for flush.
    pub frozen_memtables: usize,
    /// Flushes done since open.
    pub flushes: u64,
    /// Compactions done since open.
    pub compactions: u64,
    /// Bytes written by compactions since open.
    pub compacted_bytes: u64,
    /// Input bytes of the compaction the table's strategy would run next (0 when none is
    /// due): how far compaction is behind.
    pub pending_compaction_bytes: u64,
    /// Point lookups in an SSTable whose bloom filter ruled the key out, since open.
    pub bloom_negatives: u64,
    /// Point lookups whose bloom filter let the key through and the SSTable held it.
    pub bloom_true_positives: u64,
    /// Point lookups whose bloom filter let the key through but the SSTable did not hold
    /// it (a wasted block read): the false positive rate is these over these plus the
    /// true positives (Cassandra's "bloom filter false ratio").
    pub bloom_false_positives: u64,
}

/// An SSTable as part of a table: its id, level and the open reader.
pub(crate) struct TableFile {
    pub file_id: u64,
    pub level: u32,
    pub sst: Arc<SsTable>,
}

impl TableFile {
    pub(crate) fn desc(&self) -> FileDesc {
        let info = self.sst.info();
        FileDesc {
            file_id: self.file_id,
            level: self.level,
            size: info.file_size,
            smallest: info.smallest.clone(),
            largest: info.largest.clone(),
        }
    }

    pub(crate) fn max_seqno(&self) -> SeqNo {
        self.sst.info().max_seqno
    }

    /// True when `key` falls inside the file's key range.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        let info = self.sst.info();
        info.entries > 0 && info.smallest.as_slice() <= key && key <= info.largest.as_slice()
    }
}

/// The immutable snapshot of a table's data. Swapped whole, never mutated.
pub(crate) struct TableVersion {
    /// Receives writes.
    pub active: Arc<Memtable>,
    /// Frozen memtables waiting for flush, newest first.
    pub frozen: Vec<Arc<Memtable>>,
    /// SSTables, newest (highest max seqno) first.
    pub files: Vec<Arc<TableFile>>,
}

impl TableVersion {
    pub(crate) fn empty(prefix_bloom_len: Option<usize>, memtable_size: usize) -> Self {
        TableVersion {
            active: Arc::new(Memtable::with_prefix_bloom(prefix_bloom_len, memtable_size)),
            frozen: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The same memtables with `files` (sorted here) as the SSTables.
    pub(crate) fn with_files(&self, mut files: Vec<Arc<TableFile>>) -> TableVersion {
        TableVersion::sort_files(&mut files);
        TableVersion {
            active: self.active.clone(),
            frozen: self.frozen.clone(),
            files,
        }
    }

    /// Sorts files newest first, the order reads consult them in.
    pub(crate) fn sort_files(files: &mut [Arc<TableFile>]) {
        files.sort_by(|a, b| {
            b.max_seqno()
                .cmp(&a.max_seqno())
                .then(b.file_id.cmp(&a.file_id))
        });
    }
}

/// A table of the engine.
pub(crate) struct Table {
    pub id: u32,
    pub name: String,
    pub merge: Arc<dyn MergePolicy>,
    pub compaction: CompactionStrategy,
    pub metadata: Vec<u8>,
    /// The memtable prefix bloom length the table was created with.
    pub prefix_bloom_len: Option<usize>,
    version: RwLock<Arc<TableVersion>>,
    pub dropped: AtomicBool,
    pub cursors: Mutex<CompactCursors>,
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub compacted_bytes: AtomicU64,
    /// Bloom filter outcomes of point lookups (see [`TableStats`]).
    bloom_negatives: AtomicU64,
    bloom_true_positives: AtomicU64,
    bloom_false_positives: AtomicU64,
}

impl Table {
    pub(crate) fn new(id: u32, name: String, options: TableOptions, version: TableVersion) -> Self {
        Table {
            id,
            name,
            merge: options.merge,
            compaction: options.compaction,
            prefix_bloom_len: options.prefix_bloom_len,
            metadata: options.metadata,
            version: RwLock::new(Arc::new(version)),
            dropped: AtomicBool::new(false),
            cursors: Mutex::new(CompactCursors::new()),
            flushes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            bloom_negatives: AtomicU64::new(0),
            bloom_true_positives: AtomicU64::new(0),
            bloom_false_positives: AtomicU64::new(0),
            compacted_bytes: AtomicU64::new(0),
        }
    }

    /// The current snapshot.
    #[inline]
    pub(crate) fn version(&self) -> Arc<TableVersion> {
        self.version
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the snapshot with `f(current)`.
    pub(crate) fn update_version(&self, f: impl FnOnce(&TableVersion) -> TableVersion) {
        let mut guard = self.version.write().unwrap_or_else(|e| e.into_inner());
        let next = f(&guard);
        *guard = Arc::new(next);
    }

    /// Freezes the active memtable and installs a fresh one. Caller holds the write mutex.
    pub(crate) fn freeze(&self) {
        self.update_version(|v| {
            let mut frozen = Vec::with_capacity(v.frozen.len() + 1);
            frozen.push(v.active.clone());
            frozen.extend(v.frozen.iter().cloned());
            TableVersion {
                active: Arc::new(v.active.fresh_like()),
                frozen,
                files: v.files.clone(),
            }
        });
    }

    /// All versions of `key` merged, or `None` when the key was never written.
    pub(crate) fn get_merged(&self, key: &[u8]) -> Result<Option<Entry>> {
        let v = self.version();
        let merge = self.merge.as_ref();
        if merge.newest_wins() {
            // Memtables are newer than every SSTable; the first hit wins.
            if let Some((_, e)) = v.active.get(key) {
                return Ok(Some(e));
            }
            for m in &v.frozen {
                if let Some((_, e)) = m.get(key) {
                    return Ok(Some(e));
                }
            }
            // Files may overlap in seqno ranges (size-tiered): keep the newest hit, and stop
            // once no remaining file can hold anything newer.
            let mut best: Option<(SeqNo, Entry)> = None;
            for f in &v.files {
                if best.as_ref().is_some_and(|(s, _)| *s >= f.max_seqno()) {
                    break;
                }
                if !f.covers(key) {
                    continue;
                }
                if let Some((s, e)) = self.probe(f, key)? {
                    if best.as_ref().is_none_or(|(b, _)| s > *b) {
                        best = Some((s, e.to_owned()));
                    }
                }
            }
            return Ok(best.map(|(_, e)| e));
        }
        // General policies: fold every version, oldest first.
        let mut versions: Vec<(SeqNo, Entry)> = Vec::new();
        for f in &v.files {
            if f.covers(key) {
                if let Some((s, e)) = self.probe(f, key)? {
                    versions.push((s, e.to_owned()));
                }
            }
        }
        for m in v.frozen.iter().rev() {
            if let Some(x) = m.get(key) {
                versions.push(x);
            }
        }
        if let Some(x) = v.active.get(key) {
            versions.push(x);
        }
        Ok(fold_versions(merge, key, versions))
    }

    /// A point lookup of `key` in `f` (whose key range covers it), counting what its
    /// bloom filter said.
    fn probe<'f>(
        &self,
        f: &'f TableFile,
        key: &[u8],
    ) -> Result<Option<(SeqNo, crate::EntryRef<'f>)>> {
        if !f.sst.may_contain(key) {
            self.bloom_negatives.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let found = f.sst.get(key)?;
        let outcome = if found.is_some() {
            &self.bloom_true_positives
        } else {
            &self.bloom_false_positives
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    pub(crate) fn stats(&self) -> TableStats {
        let v = self.version();
        let mut s = TableStats {
            sstables: v.files.len(),
            frozen_memtables: v.frozen.len(),
            flushes: self.flushes.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            compacted_bytes: self.compacted_bytes.load(Ordering::Relaxed),
            bloom_negatives: self.bloom_negatives.load(Ordering::Relaxed),
            bloom_true_positives: self.bloom_true_positives.load(Ordering::Relaxed),
            bloom_false_positives: self.bloom_false_positives.load(Ordering::Relaxed),
            ..TableStats::default()
        };
        for f in &v.files {
            let info = f.sst.info();
            let level = f.level as usize;
            if s.sstables_per_level.len() <= level {
                s.sstables_per_level.resize(level + 1, 0);
            }
            s.sstables_per_level[level] += 1;
            s.sstable_bytes += info.file_size;
            s.sstable_entries += info.entries;
            s.sstable_tombstones += info.tombstones;
        }
        for m in std::iter::once(&v.active).chain(v.frozen.iter()) {
            s.memtable_bytes += m.approximate_size() as u64;
            s.memtable_entries += m.len() as u64;
        }
        let descs: Vec<_> = v.files.iter().map(|f| f.desc()).collect();
        let plan = {
            let cursors = self.cursors.lock().unwrap_or_else(PoisonError::into_inner);
            crate::compaction::plan(&self.compaction, &descs, &cursors)
        };
        if let Some(crate::compaction::CompactionPlan::Merge { inputs, .. }) = plan {
            s.pending_compaction_bytes = descs
                .iter()
                .filter(|d| inputs.contains(&d.file_id))
                .map(|d| d.size)
                .sum();
        }
        s
    }
}

/// Merges versions of one key with `policy`, oldest first (sorted here by seqno).
pub(crate) fn fold_versions(
    policy: &dyn MergePolicy,
    key: &[u8],
    mut versions: Vec<(SeqNo, Entry)>,
) -> Option<Entry> {
    versions.sort_by_key(|(s, _)| *s);
    let mut it = versions.into_iter();
    let (_, mut acc) = it.next()?;
    for (_, e) in it {
        acc = policy.merge(key, acc.as_ref(), e.as_ref());
    }
    Some(acc)
}
