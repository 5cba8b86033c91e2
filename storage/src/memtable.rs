//! The memtable: a concurrent sorted map from key to (sequence number, entry).
//!
//! Built on `crossbeam_skiplist::SkipMap`, so readers and scans run without locks while
//! one writer inserts. Invariant: the engine applies writes to a memtable only while it
//! holds its write mutex, so the read-merge-insert done for non-`newest_wins` policies is
//! never interleaved with another write of the same key. A memtable holds at most one
//! entry per key: versions are merged as they land (the [`MergePolicy`] decides how).
//!
//! When it passes its size limit the engine freezes it (no more inserts) and a flush
//! thread writes it out as an SSTable.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;

use crate::merge::MergePolicy;
use crate::types::{Entry, EntryRef, SeqNo};

/// Bytes charged per entry for the skip list node and bookkeeping (an estimate).
const ENTRY_OVERHEAD: usize = 64;

/// The value stored per key: the newest sequence number that touched it and the merged
/// entry.
#[derive(Debug)]
pub struct Versioned {
    /// Sequence number of the newest write merged in.
    pub seqno: SeqNo,
    /// The merged entry.
    pub entry: Entry,
}

/// A concurrent sorted in-memory table.
#[derive(Debug)]
pub struct Memtable {
    map: SkipMap<Vec<u8>, Versioned>,
    approximate_size: AtomicUsize,
    min_seqno: AtomicU64,
    max_seqno: AtomicU64,
}

impl Default for Memtable {
    fn default() -> Self {
        Self::new()
    }
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Memtable {
            map: SkipMap::new(),
            approximate_size: AtomicUsize::new(0),
            min_seqno: AtomicU64::new(u64::MAX),
            max_seqno: AtomicU64::new(0),
        }
    }

    /// Inserts `entry` at `key`, merging it with what the key already holds.
    /// Caller must hold the engine's write mutex (see the module doc).
    pub fn apply(&self, key: &[u8], seqno: SeqNo, entry: Entry, policy: &dyn MergePolicy) {
        let merged = if policy.newest_wins() {
            entry
        } else {
            match self.map.get(key) {
                Some(old) => policy.merge(key, old.value().entry.as_ref(), entry.as_ref()),
                None => entry,
            }
        };
        let charge = key.len() + merged.charge() + ENTRY_OVERHEAD;
        self.map.insert(
            key.to_vec(),
            Versioned {
                seqno,
                entry: merged,
            },
        );
        self.approximate_size.fetch_add(charge, Ordering::Relaxed);
        self.min_seqno.fetch_min(seqno, Ordering::Relaxed);
        self.max_seqno.fetch_max(seqno, Ordering::Relaxed);
    }

    /// Looks `key` up.
    pub fn get(&self, key: &[u8]) -> Option<(SeqNo, Entry)> {
        self.map
            .get(key)
            .map(|e| (e.value().seqno, e.value().entry.clone()))
    }

    /// Calls `f` with the entry at `key` without copying it.
    pub fn with_entry<R>(&self, key: &[u8], f: impl FnOnce(SeqNo, EntryRef<'_>) -> R) -> Option<R> {
        self.map
            .get(key)
            .map(|e| f(e.value().seqno, e.value().entry.as_ref()))
    }

    /// Approximate memory used, in bytes (grows with every insert, overwrites included).
    pub fn approximate_size(&self) -> usize {
        self.approximate_size.load(Ordering::Relaxed)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Smallest sequence number inserted, if any.
    pub fn min_seqno(&self) -> Option<SeqNo> {
        let v = self.min_seqno.load(Ordering::Relaxed);
        (v != u64::MAX).then_some(v)
    }

    /// Largest sequence number inserted (0 when empty).
    pub fn max_seqno(&self) -> SeqNo {
        self.max_seqno.load(Ordering::Relaxed)
    }

    /// The underlying map, for iteration.
    pub fn map(&self) -> &SkipMap<Vec<u8>, Versioned> {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::NewestWins;

    struct Concat;
    impl MergePolicy for Concat {
        fn merge(&self, _key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
            match (older, newer) {
                (EntryRef::Value(a), EntryRef::Value(b)) => Entry::Value([a, b].concat()),
                (_, n) => n.to_owned(),
            }
        }
    }

    #[test]
    fn memtable_newest_wins_overwrites() {
        let m = Memtable::new();
        m.apply(b"k", 1, Entry::Value(b"a".to_vec()), &NewestWins);
        m.apply(b"k", 2, Entry::Value(b"b".to_vec()), &NewestWins);
        assert_eq!(m.get(b"k"), Some((2, Entry::Value(b"b".to_vec()))));
        assert_eq!(m.len(), 1);
        assert_eq!(m.min_seqno(), Some(1));
        assert_eq!(m.max_seqno(), 2);
    }

    #[test]
    fn memtable_merges_with_policy() {
        let m = Memtable::new();
        m.apply(b"k", 1, Entry::Value(b"a".to_vec()), &Concat);
        m.apply(b"k", 2, Entry::Value(b"b".to_vec()), &Concat);
        assert_eq!(m.get(b"k"), Some((2, Entry::Value(b"ab".to_vec()))));
    }
}
