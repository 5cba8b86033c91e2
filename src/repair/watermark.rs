//! The synced watermark: when a tombstone may be purged.
//!
//! A replica that purges a tombstone before every other replica holds it lets the deleted
//! value come back through repair (Cassandra's gc_grace is a wall-clock guess at this; a
//! node down longer than it resurrects deletes). Here a replicated table's compaction
//! purges a tombstone only when [`TableWatermark::may_purge`] says both:
//!
//! 1. **Every replica holds it.** Per leaf of the token space (the hash tree's leaves),
//!    the node keeps the second the latest tombstone arrived there (any write whose
//!    merged cell may become purgeable: a tombstone, or a value with a TTL), and the
//!    second since which every other replica of every range touching the leaf has
//!    completed an exchange with this node that *started* after it (the repairer sets it,
//!    [`TableWatermark::set_synced`]). An exchange pushes every cell this node holds and
//!    the peer lacks, so once every peer's exchange started after the tombstone arrived,
//!    every replica holds it. Both times are this node's clock: no skew between nodes
//!    enters. A range that never syncs keeps its tombstones.
//! 2. **No late write can resurrect what it deleted.** The tombstone is older than
//!    `min_age` by its write timestamp, which is at least the hint TTL: a hint carrying a
//!    value the tombstone deleted was written before the tombstone and is discarded
//!    undelivered once older than the TTL (`crate::hints::HintLimits::ttl`).
//!
//! Nothing is persisted: at every start the arrival of every leaf is "now" and no leaf is
//! synced, so nothing is purged until a full round of exchanges after the start.
//!
//! Threading: atomics only; read from compaction threads, written by writers and the
//! repairer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::space::{intervals, point_of_key, prefix_of};
use crate::replica::TokenRange;
use crate::ring::Partitioner;
use crate::versioning::policy::PurgeGate;
use crate::versioning::Clock;

/// The watermark of one table at this node (see the module documentation).
pub struct TableWatermark {
    partitioner: Partitioner,
    leaf_bits: u32,
    clock: Arc<dyn Clock>,
    min_age_micros: i64,
    /// Per leaf: the second the latest purgeable write arrived.
    arrival: Box<[AtomicU32]>,
    /// Per leaf: every other replica synced with this node in an exchange started at or
    /// after this second (0 = not every one has).
    synced: Box<[AtomicU32]>,
}

impl std::fmt::Debug for TableWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWatermark")
            .field("leaf_bits", &self.leaf_bits)
            .field("min_age_micros", &self.min_age_micros)
            .finish_non_exhaustive()
    }
}

fn secs_u32(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

impl TableWatermark {
    /// A watermark whose every leaf saw a tombstone now and is not synced.
    pub fn new(
        partitioner: Partitioner,
        leaf_bits: u32,
        clock: Arc<dyn Clock>,
        min_age: Duration,
    ) -> TableWatermark {
        let now = secs_u32(clock.now_secs());
        let leaves = 1usize << leaf_bits;
        TableWatermark {
            partitioner,
            leaf_bits,
            min_age_micros: i64::try_from(min_age.as_micros()).unwrap_or(i64::MAX),
            clock,
            arrival: (0..leaves).map(|_| AtomicU32::new(now)).collect(),
            synced: (0..leaves).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn leaf_of(&self, key: &[u8]) -> usize {
        prefix_of(point_of_key(self.partitioner, key), self.leaf_bits) as usize
    }

    /// A write whose merged cell may become purgeable arrived at `key` now.
    pub fn note_tombstone(&self, key: &[u8]) {
        if let Some(a) = self.arrival.get(self.leaf_of(key)) {
            a.fetch_max(secs_u32(self.clock.now_secs()), Ordering::AcqRel);
        }
    }

    /// [`TableWatermark::note_tombstone`] for every leaf holding keys `first..=last`
    /// (engine keys, `first <= last`): cells arrived there unseen one by one.
    pub fn note_tombstones(&self, first: &[u8], last: &[u8]) {
        let now = secs_u32(self.clock.now_secs());
        let (lo, hi) = (self.leaf_of(first), self.leaf_of(last));
        for a in self.arrival.iter().take(hi + 1).skip(lo) {
            a.fetch_max(now, Ordering::AcqRel);
        }
    }

    /// Sets the synced second of every leaf from `ranges`: each ring range with the
    /// oldest start (seconds) of the latest completed exchange of each other replica of it
    /// with this node, `0` when one never completed or this node is not a replica. A leaf
    /// touched by several ranges takes the oldest.
    pub fn set_synced(&self, ranges: &[(TokenRange, u64)]) {
        let mut leaves = vec![u32::MAX; self.synced.len()];
        for (range, secs) in ranges {
            let secs = secs_u32(*secs);
            for part in intervals(self.partitioner, *range) {
                let first = prefix_of(part.lo, self.leaf_bits) as usize;
                let last = prefix_of(part.hi, self.leaf_bits) as usize;
                for l in leaves.iter_mut().take(last + 1).skip(first) {
                    *l = (*l).min(secs);
                }
            }
        }
        for (slot, v) in self.synced.iter().zip(leaves) {
            slot.store(if v == u32::MAX { 0 } else { v }, Ordering::Release);
        }
    }

    /// Leaves whose tombstones may go now (for reports and tests).
    pub fn purgeable_leaves(&self) -> usize {
        self.arrival
            .iter()
            .zip(self.synced.iter())
            .filter(|(a, s)| a.load(Ordering::Acquire) < s.load(Ordering::Acquire))
            .count()
    }
}

impl PurgeGate for TableWatermark {
    fn may_purge(&self, key: &[u8], timestamp_micros: i64) -> bool {
        if timestamp_micros > self.clock.now_micros().saturating_sub(self.min_age_micros) {
            return false;
        }
        let leaf = self.leaf_of(key);
        match (self.arrival.get(leaf), self.synced.get(leaf)) {
            (Some(a), Some(s)) => a.load(Ordering::Acquire) < s.load(Ordering::Acquire),
            _ => false,
        }
    }
}

/// The watermarks of this node's replicated tables, by name (made when the engine opens
/// a table, before its merge policy is built).
pub struct Watermarks {
    partitioner: Partitioner,
    leaf_bits: u32,
    clock: Arc<dyn Clock>,
    min_age: Duration,
    tables: RwLock<HashMap<String, Arc<TableWatermark>>>,
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermarks")
            .field("min_age", &self.min_age)
            .finish_non_exhaustive()
    }
}

impl Watermarks {
    /// An empty registry; tombstones must be older than `min_age` to go.
    pub fn new(
        partitioner: Partitioner,
        leaf_bits: u32,
        clock: Arc<dyn Clock>,
        min_age: Duration,
    ) -> Watermarks {
        Watermarks {
            partitioner,
            leaf_bits,
            clock,
            min_age,
            tables: RwLock::new(HashMap::new()),
        }
    }

    /// The watermark of `table`, made fresh (nothing synced) if it has none.
    pub fn table(&self, table: &str) -> Arc<TableWatermark> {
        if let Some(w) = self.get(table) {
            return w;
        }
        let mut map = self.tables.write().unwrap_or_else(|p| p.into_inner());
        map.entry(table.to_owned())
            .or_insert_with(|| {
                Arc::new(TableWatermark::new(
                    self.partitioner,
                    self.leaf_bits,
                    self.clock.clone(),
                    self.min_age,
                ))
            })
            .clone()
    }

    /// The watermark of `table`, if it has one.
    pub fn get(&self, table: &str) -> Option<Arc<TableWatermark>> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .cloned()
    }

    /// Forgets `table`'s watermark (dropped).
    pub fn remove(&self, table: &str) {
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::keys::token_prefix;
    use crate::ring::Token;
    use crate::versioning::ManualClock;

    const T0: i64 = 1_700_000_000;

    fn key(t: i64) -> Vec<u8> {
        let mut k = token_prefix(Token::Murmur3(t));
        k.extend_from_slice(&[0, 1, b'k', b'c']);
        k
    }

    fn whole(secs: u64) -> Vec<(TokenRange, u64)> {
        vec![(
            TokenRange {
                start: Token::Murmur3(0),
                end: Token::Murmur3(0),
            },
            secs,
        )]
    }

    #[test]
    fn watermark_purges_only_after_every_peer_synced_past_the_arrival_and_the_min_age() {
        let clock = Arc::new(ManualClock::at_secs(T0));
        let w = TableWatermark::new(
            Partitioner::Murmur3,
            16,
            clock.clone(),
            Duration::from_secs(100),
        );
        let old_ts = (T0 - 1000) * 1_000_000;
        // Fresh (as after a start): nothing synced, nothing purged.
        assert!(!w.may_purge(&key(5), old_ts));
        // A sync that started in the start's second is not after it.
        w.set_synced(&whole(T0 as u64));
        assert!(!w.may_purge(&key(5), old_ts));
        clock.advance_secs(10);
        w.set_synced(&whole(T0 as u64 + 5));
        assert!(w.may_purge(&key(5), old_ts));
        // Too young by its timestamp, even when synced.
        assert!(!w.may_purge(&key(5), (T0 + 10 - 50) * 1_000_000));
        // A tombstone arriving after the sync started holds its leaf back, not others.
        clock.advance_secs(10);
        w.note_tombstone(&key(5));
        assert!(!w.may_purge(&key(5), old_ts));
        assert!(w.may_purge(&key(i64::MIN / 2), old_ts));
        clock.advance_secs(10);
        w.set_synced(&whole(T0 as u64 + 25));
        assert!(w.may_purge(&key(5), old_ts));
    }

    #[test]
    fn watermark_takes_the_oldest_range_of_a_leaf_and_zero_for_unsynced_ranges() {
        let clock = Arc::new(ManualClock::at_secs(T0));
        let w = TableWatermark::new(Partitioner::Murmur3, 16, clock.clone(), Duration::ZERO);
        clock.advance_secs(100);
        let old_ts = T0 * 1_000_000;
        // (0, MID] synced recently, (MID, 0] never. MID is inside a leaf: a key at MID
        // shares its leaf with keys past it, so its leaf is not synced; a key of the
        // other range is not either.
        const MID: i64 = i64::MAX / 2 - 12_345;
        w.set_synced(&[
            (
                TokenRange {
                    start: Token::Murmur3(0),
                    end: Token::Murmur3(MID),
                },
                T0 as u64 + 50,
            ),
            (
                TokenRange {
                    start: Token::Murmur3(MID),
                    end: Token::Murmur3(0),
                },
                0,
            ),
        ]);
        assert!(w.may_purge(&key(i64::MAX / 4), old_ts));
        assert!(!w.may_purge(&key(MID), old_ts), "boundary leaf");
        assert!(!w.may_purge(&key(-5), old_ts));
    }
}
