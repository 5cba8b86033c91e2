//! The memtable: a concurrent sorted map from key to (sequence number, entry).
//!
//! A B-tree behind a reader-writer lock. Measured against `crossbeam_skiplist::SkipMap`
//! (the first version): point lookups in a 100k-entry memtable spent ~45% of the node's
//! CPU in skip-list pointer chasing; a B-tree visits a handful of cache-friendly nodes
//! instead, and one search serves a read-merge-write. Readers hold the read lock only for
//! one lookup or one chunk of a scan (see `engine::iter`), never across I/O.
//!
//! Invariant: the engine applies writes to a memtable only while it holds its write
//! mutex, so the read-merge-insert done for non-`newest_wins` policies is never
//! interleaved with another write of the same key. A memtable holds at most one entry per
//! key: versions are merged as they land (the [`MergePolicy`] decides how).
//!
//! When it passes its size limit the engine freezes it (no more inserts) and a flush
//! thread writes it out as an SSTable.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::merge::MergePolicy;
use crate::types::{Entry, EntryRef, SeqNo};

/// Bytes charged per entry for its B-tree slot and bookkeeping (an estimate).
const ENTRY_OVERHEAD: usize = 64;

/// Bytes of a key kept inline in the B-tree node, as a big-endian integer.
const INLINE: usize = 16;

/// The first [`INLINE`] bytes of `key`, zero-padded, as a big-endian integer. Ordering
/// keys by (prefix, bytes) is exactly their byte order: where two prefixes differ, either
/// both keys have that byte (lexicographic order decides alike) or the shorter key has a
/// padding zero against a non-zero byte (the shorter key, a proper prefix, sorts first).
#[inline]
fn inline_prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; INLINE];
    let n = key.len().min(INLINE);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

/// A key as the B-tree compares it: an inline prefix, then the bytes. Stored keys and
/// lookup keys both implement it, so searches compare the prefix without following the
/// pointer to the key's heap bytes (a cache miss per comparison was ~30% of a node's CPU
/// on row reads).
trait KeyLike {
    fn prefix(&self) -> u128;
    fn bytes(&self) -> &[u8];
}

impl PartialEq for dyn KeyLike + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.prefix() == other.prefix() && self.bytes() == other.bytes()
    }
}

impl Eq for dyn KeyLike + '_ {}

impl PartialOrd for dyn KeyLike + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyLike + '_ {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix()
            .cmp(&other.prefix())
            .then_with(|| compare_keys(self.bytes(), other.bytes()))
    }
}

/// A stored key: its inline prefix and its bytes.
#[derive(Debug, Clone)]
struct MemKey {
    prefix: u128,
    bytes: Vec<u8>,
}

impl MemKey {
    fn new(bytes: Vec<u8>) -> MemKey {
        MemKey {
            prefix: inline_prefix(&bytes),
            bytes,
        }
    }
}

impl KeyLike for MemKey {
    #[inline]
    fn prefix(&self) -> u128 {
        self.prefix
    }
    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn KeyLike) == (other as &dyn KeyLike)
    }
}

impl Eq for MemKey {}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self as &dyn KeyLike).cmp(other as &dyn KeyLike)
    }
}

impl<'a> std::borrow::Borrow<dyn KeyLike + 'a> for MemKey {
    fn borrow(&self) -> &(dyn KeyLike + 'a) {
        self
    }
}

/// A lookup key borrowing the caller's bytes.
struct SearchKey<'k> {
    prefix: u128,
    bytes: &'k [u8],
}

impl<'k> SearchKey<'k> {
    fn new(bytes: &'k [u8]) -> SearchKey<'k> {
        SearchKey {
            prefix: inline_prefix(bytes),
            bytes,
        }
    }
}

impl KeyLike for SearchKey<'_> {
    #[inline]
    fn prefix(&self) -> u128 {
        self.prefix
    }
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

/// Lexicographic byte order, eight bytes per step.
#[inline]
fn compare_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (mut xa, mut ya) = ([0u8; 8], [0u8; 8]);
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        let (x, y) = (u64::from_be_bytes(xa), u64::from_be_bytes(ya));
        if x != y {
            return x.cmp(&y);
        }
    }
    let done = a.len().min(b.len()) / 8 * 8;
    let (ta, tb) = (
        a.get(done..).unwrap_or_default(),
        b.get(done..).unwrap_or_default(),
    );
    for (x, y) in ta.iter().zip(tb) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// The value stored per key: the newest sequence number that touched it and the merged
/// entry.
#[derive(Debug)]
pub struct Versioned {
    /// Sequence number of the newest write merged in.
    pub seqno: SeqNo,
    /// The merged entry.
    pub entry: Entry,
}

/// Memtable bytes per prefix-bloom bit: a 64 MiB memtable gets 8 Mbit (1 MiB), about 10
/// bits per distinct prefix for the ~800k small rows it holds.
const BYTES_PER_BLOOM_BIT: usize = 8;
/// Probes per prefix.
const PREFIX_BLOOM_PROBES: u32 = 3;

/// A bloom filter over the first `len` bytes of every key (RocksDB's memtable prefix
/// bloom): a row read whose bounds share a prefix the filter has never seen skips the
/// memtable's B-tree search entirely. Bits are only ever set (under the engine's write
/// mutex) and read without locks.
#[derive(Debug)]
struct PrefixBloom {
    len: usize,
    /// Number of bits (a multiple of 64).
    nbits: usize,
    bits: Vec<std::sync::atomic::AtomicU64>,
}

impl PrefixBloom {
    fn new(len: usize, capacity_bytes: usize) -> PrefixBloom {
        let nbits = (capacity_bytes / BYTES_PER_BLOOM_BIT).clamp(1 << 10, 1 << 28) / 64 * 64;
        PrefixBloom {
            len,
            nbits,
            bits: (0..nbits / 64)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// Bit positions of `prefix` (double hashing from one 64-bit hash).
    fn probes(&self, prefix: &[u8]) -> impl Iterator<Item = usize> {
        let nbits = self.nbits;
        // FNV-1a, then a murmur3 finaliser for avalanche.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in prefix {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let (a, b) = (h, (h >> 32) | 1);
        (0..PREFIX_BLOOM_PROBES)
            .map(move |i| (a.wrapping_add(u64::from(i).wrapping_mul(b)) as usize) % nbits)
    }

    fn add(&self, key: &[u8]) {
        if let Some(prefix) = key.get(..self.len) {
            for bit in self.probes(prefix) {
                if let Some(word) = self.bits.get(bit / 64) {
                    word.fetch_or(1 << (bit % 64), Ordering::Relaxed);
                }
            }
        }
    }

    fn may_contain(&self, prefix: &[u8]) -> bool {
        self.probes(prefix).all(|bit| {
            self.bits
                .get(bit / 64)
                .is_none_or(|w| w.load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
        })
    }
}

/// A concurrent sorted in-memory table.
#[derive(Debug)]
pub struct Memtable {
    prefix_bloom: Option<PrefixBloom>,
    map: RwLock<BTreeMap<MemKey, Versioned>>,
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
        Self::with_prefix_bloom(None, 0)
    }

    /// An empty memtable that keeps a bloom filter of the first `prefix_len` bytes of its
    /// keys (see [`Memtable::may_contain_range`]), sized for about `capacity_bytes` of
    /// data.
    pub fn with_prefix_bloom(prefix_len: Option<usize>, capacity_bytes: usize) -> Self {
        Memtable {
            prefix_bloom: prefix_len
                .filter(|&n| n > 0)
                .map(|n| PrefixBloom::new(n, capacity_bytes)),
            map: RwLock::new(BTreeMap::new()),
            approximate_size: AtomicUsize::new(0),
            min_seqno: AtomicU64::new(u64::MAX),
            max_seqno: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<MemKey, Versioned>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts `entry` at `key`, merging it with what the key already holds.
    /// Caller must hold the engine's write mutex (see the module doc).
    pub fn apply(&self, key: &[u8], seqno: SeqNo, entry: Entry, policy: &dyn MergePolicy) {
        if let Some(bloom) = &self.prefix_bloom {
            bloom.add(key);
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let charge = match map.get_mut(&SearchKey::new(key) as &dyn KeyLike) {
            Some(old) => {
                let merged = if policy.newest_wins() {
                    entry
                } else {
                    policy.merge(key, old.entry.as_ref(), entry.as_ref())
                };
                let charge = merged.charge();
                *old = Versioned {
                    seqno,
                    entry: merged,
                };
                charge
            }
            None => {
                let charge = key.len() + entry.charge();
                map.insert(MemKey::new(key.to_vec()), Versioned { seqno, entry });
                charge
            }
        };
        drop(map);
        self.approximate_size
            .fetch_add(charge + ENTRY_OVERHEAD, Ordering::Relaxed);
        self.min_seqno.fetch_min(seqno, Ordering::Relaxed);
        self.max_seqno.fetch_max(seqno, Ordering::Relaxed);
    }

    /// Stores `entry` at `key` without merging: the caller guarantees it supersedes what
    /// the key holds (see `WriteBatch::put_superseding`). Caller holds the write mutex.
    pub fn replace(&self, key: &[u8], seqno: SeqNo, entry: Entry) {
        self.apply(key, seqno, entry, &crate::merge::NewestWins);
    }

    /// False when no key inside the bounds can be here: both bounds are at least the
    /// bloom's prefix length long and share that prefix (so every key between them starts
    /// with it), and the filter has never seen it. True otherwise (no filter, other bounds,
    /// or a possible hit).
    pub fn may_contain_range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
        let Some(bloom) = &self.prefix_bloom else {
            return true;
        };
        let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) =
            (lower, upper)
        else {
            return true;
        };
        match (l.get(..bloom.len), u.get(..bloom.len)) {
            (Some(lp), Some(up)) if lp == up => bloom.may_contain(lp),
            _ => true,
        }
    }

    /// False when `key` cannot be here (its prefix was never added).
    pub fn may_contain_key(&self, key: &[u8]) -> bool {
        match &self.prefix_bloom {
            Some(bloom) => key.get(..bloom.len).is_none_or(|p| bloom.may_contain(p)),
            None => true,
        }
    }

    /// A new empty memtable with the same prefix bloom settings.
    pub fn fresh_like(&self) -> Memtable {
        match &self.prefix_bloom {
            Some(b) => Memtable::with_prefix_bloom(Some(b.len), b.nbits * BYTES_PER_BLOOM_BIT),
            None => Memtable::new(),
        }
    }

    /// Looks `key` up.
    pub fn get(&self, key: &[u8]) -> Option<(SeqNo, Entry)> {
        if !self.may_contain_key(key) {
            return None;
        }
        self.read()
            .get(&SearchKey::new(key) as &dyn KeyLike)
            .map(|v| (v.seqno, v.entry.clone()))
    }

    /// Calls `f` with the entry at `key` without copying it (under the read lock: keep
    /// `f` short).
    pub fn with_entry<R>(&self, key: &[u8], f: impl FnOnce(SeqNo, EntryRef<'_>) -> R) -> Option<R> {
        self.read()
            .get(&SearchKey::new(key) as &dyn KeyLike)
            .map(|v| f(v.seqno, v.entry.as_ref()))
    }

    /// Calls `f` on up to `max` entries inside the bounds, ascending or (`reverse`)
    /// descending, under one read lock; returns how many it visited.
    pub fn visit_range(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
        max: usize,
        mut f: impl FnMut(&[u8], SeqNo, EntryRef<'_>),
    ) -> usize {
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) =
            (lower, upper)
        {
            // BTreeMap::range panics on inverted or empty-excluded ranges.
            let empty = l > u
                || (l == u
                    && !(matches!(lower, Bound::Included(_))
                        && matches!(upper, Bound::Included(_))));
            if empty {
                return 0;
            }
        }
        // One bounded edge only: the B-tree descends once (the other edge of a one-sided
        // range costs no comparisons), and the far bound is checked while walking. Row
        // reads scan tiny ranges, so the second descent was half of their search cost.
        let map = self.read();
        let within_upper = |k: &[u8]| match upper {
            Bound::Included(u) => compare_keys(k, u).is_le(),
            Bound::Excluded(u) => compare_keys(k, u).is_lt(),
            Bound::Unbounded => true,
        };
        let within_lower = |k: &[u8]| match lower {
            Bound::Included(l) => compare_keys(k, l).is_ge(),
            Bound::Excluded(l) => compare_keys(k, l).is_gt(),
            Bound::Unbounded => true,
        };
        let mut n = 0;
        if reverse {
            let upper_key = upper.map(SearchKey::new);
            let range = map.range::<dyn KeyLike, _>((
                Bound::Unbounded,
                upper_key.as_ref().map(|k| k as &dyn KeyLike),
            ));
            for (k, v) in range
                .rev()
                .take_while(|(k, _)| within_lower(&k.bytes))
                .take(max)
            {
                f(&k.bytes, v.seqno, v.entry.as_ref());
                n += 1;
            }
        } else {
            let lower_key = lower.map(SearchKey::new);
            let range = map.range::<dyn KeyLike, _>((
                lower_key.as_ref().map(|k| k as &dyn KeyLike),
                Bound::Unbounded,
            ));
            for (k, v) in range.take_while(|(k, _)| within_upper(&k.bytes)).take(max) {
                f(&k.bytes, v.seqno, v.entry.as_ref());
                n += 1;
            }
        }
        n
    }

    /// Calls `f` on every entry in key order (flush uses this on a frozen memtable, which
    /// no writer touches, so the read lock is uncontended); stops at the first error.
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(&[u8], SeqNo, EntryRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for (k, v) in self.read().iter() {
            f(&k.bytes, v.seqno, v.entry.as_ref())?;
        }
        Ok(())
    }

    /// Approximate memory used, in bytes (grows with every insert, overwrites included).
    pub fn approximate_size(&self) -> usize {
        self.approximate_size.load(Ordering::Relaxed)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
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
    fn memtable_key_order_is_byte_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![0xff],
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgi".to_vec(),
            b"abcdefghabcdefgh".to_vec(),
            b"abcdefghabcdefgz".to_vec(),
            vec![0x80; 9],
            vec![0x7f; 17],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn memtable_key_order_matches_slice_order(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            proptest::prop_assert_eq!(compare_keys(&a, &b), a.cmp(&b));
            // The B-tree's order (inline prefix, then bytes) is byte order too.
            let (ka, kb) = (MemKey::new(a.clone()), MemKey::new(b.clone()));
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            let sb = SearchKey::new(&b);
            proptest::prop_assert_eq!((&ka as &dyn KeyLike).cmp(&sb as &dyn KeyLike), a.cmp(&b));
        }
    }

    #[test]
    fn memtable_prefix_bloom_skips_only_absent_prefixes() {
        let m = Memtable::with_prefix_bloom(Some(4), 1 << 20);
        m.apply(b"rowAcol1", 1, Entry::Value(b"v".to_vec()), &NewestWins);
        m.apply(b"ab", 2, Entry::Value(b"short".to_vec()), &NewestWins);
        let inc = |k: &'static [u8]| Bound::Included(k);
        let exc = |k: &'static [u8]| Bound::Excluded(k);
        assert!(m.may_contain_range(inc(b"rowA"), exc(b"rowA\xff")));
        // A prefix never written: skipped (barring a false positive, none at this size).
        assert!(!m.may_contain_range(inc(b"rowZ"), exc(b"rowZ\xff")));
        assert!(!m.may_contain_key(b"rowZcol"));
        assert!(m.may_contain_key(b"rowAcol1"));
        // Bounds not sharing a full prefix, short keys, unbounded: never skipped.
        assert!(m.may_contain_range(inc(b"a"), exc(b"b")));
        assert!(m.may_contain_range(inc(b"rowA"), exc(b"rowB")));
        assert!(m.may_contain_range(Bound::Unbounded, exc(b"rowZ")));
        assert!(m.may_contain_key(b"ab"));
        assert_eq!(m.get(b"ab"), Some((2, Entry::Value(b"short".to_vec()))));
        // The copy keeps the settings.
        let fresh = m.fresh_like();
        assert!(!fresh.may_contain_key(b"rowAcol1"));
        assert!(Memtable::new().may_contain_key(b"anything"));
    }

    #[test]
    fn memtable_merges_with_policy() {
        let m = Memtable::new();
        m.apply(b"k", 1, Entry::Value(b"a".to_vec()), &Concat);
        m.apply(b"k", 2, Entry::Value(b"b".to_vec()), &Concat);
        assert_eq!(m.get(b"k"), Some((2, Entry::Value(b"ab".to_vec()))));
    }
}
