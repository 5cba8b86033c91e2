//! The merge policy: how the engine combines several versions of one key.
//!
//! The engine never decides on its own which version of a key wins. It is given a
//! [`MergePolicy`] per table and applies it wherever versions meet: when a write lands on
//! a key already in the memtable, when a read finds the key in several places, and in
//! compaction. [`NewestWins`] is the classic LSM rule; the node plugs in version-vector
//! merging for causal tables and timestamp comparison for LWW tables.
//!
//! A policy may also give each compaction a [`CompactionFilter`]: a stateful step that
//! sees the compaction's merged entries one by one in ascending key order, so it can let
//! one entry decide the fate of the keys that follow it (the node's row tombstones delete
//! the cells of their row this way). No on-disk format changes: the filter only drops or
//! rewrites entries, as `compact` does.

use crate::types::{Entry, EntryRef};

/// How versions of one key combine. Implementations must be deterministic, and `merge`
/// must be associative over versions taken in sequence order (older first), tombstones
/// included, so that the engine may fold them in any grouping (memtable, flush,
/// compaction, read): `merge(merge(a, b), c) == merge(a, merge(b, c))`.
///
/// It must also be commutative for policies other than newest-wins: size-tiered
/// compaction merges files by size, not by age, so versions may meet out of sequence
/// order (DVV sync and timestamp-ordered LWW are both commutative).
///
/// A consequence: with a policy other than newest-wins, an engine tombstone cannot "reset"
/// older versions (`merge(T, v)` would have to remember the reset). Policies that need
/// deletes encode them inside their values — the node's causal tombstones are DVV
/// siblings, its LWW tombstones are timestamped cells — and use engine tombstones only
/// as an identity or not at all.
pub trait MergePolicy: Send + Sync + 'static {
    /// Combines an older and a newer version of `key` into one.
    fn merge(&self, key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry;

    /// True when `merge` always returns `newer`: the engine then skips reading older
    /// versions (a plain overwrite in the memtable, the first hit wins on reads). Scans of
    /// a newest-wins table hide tombstones without calling [`MergePolicy::read`], so such a
    /// policy must keep the default `read`.
    fn newest_wins(&self) -> bool {
        false
    }

    /// Called on each merged entry a compaction writes. `bottommost` is true when the
    /// compaction's output holds every version of the key the engine had when it looked:
    /// no other SSTable and no memtable may hold one (nothing it shadows can be
    /// resurrected). Return `None` to drop the entry, or the entry to keep (possibly
    /// rewritten, e.g. an expired cell turned into a tombstone). The default drops
    /// tombstones in bottommost compactions and keeps everything else.
    fn compact(&self, key: &[u8], entry: Entry, bottommost: bool) -> Option<Entry> {
        let _ = key;
        match entry {
            Entry::Tombstone if bottommost => None,
            other => Some(other),
        }
    }

    /// A filter for one compaction run (see [`CompactionFilter`]); `None` (the default)
    /// means none. Called once per compaction, on the compaction thread.
    fn compaction_filter(&self) -> Option<Box<dyn CompactionFilter>> {
        None
    }

    /// Called on the merged entry a read returns; `None` hides it (e.g. expired). The
    /// default returns values and hides tombstones.
    fn read(&self, key: &[u8], entry: Entry) -> Option<Vec<u8>> {
        let _ = key;
        match entry {
            Entry::Value(v) => Some(v),
            Entry::Tombstone => None,
        }
    }
}

/// A per-compaction, row-aware step: [`CompactionFilter::filter`] is called on every
/// merged entry of the compaction in ascending key order, before
/// [`MergePolicy::compact`], and may keep, rewrite or drop it. It may keep state between
/// calls (e.g. the last "range delete" seen), but must only drop or rewrite what would
/// read the same without it: a compaction sees a subset of the table's files, so the
/// entry that justifies a drop must stay readable (the node keeps its row tombstones).
pub trait CompactionFilter: Send {
    /// Decides the entry at `key`: `None` drops it.
    fn filter(&mut self, key: &[u8], entry: Entry) -> Option<Entry>;
}

/// The classic rule: the newest version wins; tombstones are dropped in bottommost
/// compactions.
#[derive(Debug, Default, Clone, Copy)]
pub struct NewestWins;

impl MergePolicy for NewestWins {
    fn merge(&self, _key: &[u8], _older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        newer.to_owned()
    }

    fn newest_wins(&self) -> bool {
        true
    }
}
