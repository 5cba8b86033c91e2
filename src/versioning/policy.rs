//! The merge policies the storage engine is given: [`CausalMerge`] for `causal` tables and
//! [`LwwMerge`] for `lww` tables. The engine calls them from its writer, flush, compaction
//! and reader threads at once; they hold only a shared [`Clock`].
//!
//! # Merge
//! `merge(older, newer)` must be associative over versions in sequence order (the engine
//! folds them in any grouping). Each version falls in one of three ranks:
//! 1. a decodable cell — merged with the table's rule (DVV sync, or the LWW winner);
//! 2. an undecodable cell — logged with `tracing::error!` and counted
//!    ([`super::corrupt_cells_seen`]);
//! 3. an engine tombstone (`Entry::Tombstone`) — the node never writes one into these
//!    tables (deletes are cells), so it carries no information.
//!
//! The result of merging a group is: the merge of its decodable cells if it has any; else
//! the join of its row tombstones if it has any; else its newest undecodable cell; else an
//! engine tombstone. Because that description does not
//! depend on grouping, the merge stays associative even with garbage in it, and a corrupt
//! version never hides a good one (the good side is kept). Neither policy is
//! `newest_wins`.
//!
//! Expiry (TTL) is never applied in `merge`, which must not depend on time; `read` hides
//! expired values and `compact` drops them.
//!
//! # Reads return whole cells
//! `read` returns the encoded cell (not the bare value): the node needs the causal context
//! and the siblings of a causal cell, and the timestamp of an LWW cell (for read repair and
//! reconciling replicas). A causal cell whose siblings are all tombstones (or all expired)
//! is still returned: a client that deletes or overwrites it needs its context, and the
//! node shows it as "not found" with a context. An undecodable cell reads as absent (and is
//! logged); read repair and anti-entropy then bring a good version, which the merge keeps.
//!
//! # Row tombstones
//! A row's key (the row prefix, empty column) holds its row tombstone
//! ([`super::row_tombstone`]), never a cell. Both policies recognise it by its format
//! byte and rank it between good cells and undecodable versions (so the rank rule stays
//! associative even if corruption mixes kinds at one key): versions of it merge by the
//! tombstone join; `read` returns it as stored (the
//! node filters the row's cells with it), an undecodable one too (the node then refuses
//! the row rather than read past the delete); `compact` keeps it. Each compaction gets a
//! filter that sees entries in key order and removes from the cells following a row
//! tombstone what it covers.
//!
//! # Purging tombstones
//! `compact` drops a causal cell that holds no live value, and an LWW tombstone, only in a
//! bottommost compaction. That is necessary but not sufficient: a replica that purges a
//! tombstone before every other replica has it can see the deleted value come back through
//! repair, and a causal cell purged early forgets its counters. The node must therefore
//! additionally hold purges back until the range's repair watermark says every replica has
//! the tombstone. A table with more than one replica therefore gets the `gated` form of
//! its policy: a tombstone is purged only when its [`PurgeGate`] says so
//! (`crate::repair::watermark`: every other replica synced with this one after the
//! tombstone arrived, and the tombstone is older than the hint TTL); the `replicated`
//! form never purges one. An expired value still becomes a tombstone, and expired causal
//! siblings still go, their counters kept. A table with one replica purges as before.

use std::sync::Arc;

use sibyl_storage::{CompactionFilter, Entry, EntryRef, MergePolicy};

use super::cell::{decode_causal_cell, encode_causal_cell};
use super::clock::Clock;
use super::count_corrupt_cell;
use super::dvv::Dvv;
use super::lww::LwwCell;
use super::row_tombstone::{is_row_tombstone, RowTombstone};

/// One version as the policies see it, highest rank first.
enum Rank<T> {
    Good(T),
    /// A row tombstone (by its format byte, decoded). A key holds cells or a row
    /// tombstone, never both; if corruption mixes them, cells outrank it.
    Row(RowTombstone),
    Corrupt,
    EngineTombstone,
}

fn classify<T, E: std::fmt::Display>(
    table_kind: &'static str,
    key: &[u8],
    entry: EntryRef<'_>,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Rank<T> {
    match entry {
        EntryRef::Tombstone => Rank::EngineTombstone,
        EntryRef::Value(bytes) if is_row_tombstone(bytes) => match RowTombstone::decode(bytes) {
            Ok(t) => Rank::Row(t),
            Err(e) => {
                count_corrupt_cell();
                tracing::error!(
                    table_kind,
                    key = ?KeyHex(key),
                    error = %e,
                    "undecodable row tombstone; keeping the other version"
                );
                Rank::Corrupt
            }
        },
        EntryRef::Value(bytes) => match decode(bytes) {
            Ok(t) => Rank::Good(t),
            Err(e) => {
                count_corrupt_cell();
                tracing::error!(
                    table_kind,
                    key = ?KeyHex(key),
                    error = %e,
                    "undecodable cell; keeping the other version"
                );
                Rank::Corrupt
            }
        },
    }
}

/// Prints at most 32 bytes of a key in hex.
struct KeyHex<'a>(&'a [u8]);

impl std::fmt::Debug for KeyHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.iter().take(32) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 32 {
            write!(f, "..")?;
        }
        Ok(())
    }
}

/// The rank rule of the module documentation, given how to join two good versions.
fn merge_ranked<T>(
    older: EntryRef<'_>,
    newer: EntryRef<'_>,
    a: Rank<T>,
    b: Rank<T>,
    join: impl FnOnce(T, T) -> Vec<u8>,
) -> Entry {
    match (a, b) {
        (Rank::Good(x), Rank::Good(y)) => Entry::Value(join(x, y)),
        (Rank::Good(_), _) => older.to_owned(),
        (_, Rank::Good(_)) => newer.to_owned(),
        (Rank::Row(x), Rank::Row(y)) => Entry::Value(x.merge(&y).encode()),
        (Rank::Row(_), _) => older.to_owned(),
        (_, Rank::Row(_)) => newer.to_owned(),
        (_, Rank::Corrupt) => newer.to_owned(),
        (Rank::Corrupt, Rank::EngineTombstone) => older.to_owned(),
        (Rank::EngineTombstone, Rank::EngineTombstone) => Entry::Tombstone,
    }
}

/// The compaction filter of both policies: remembers the last row tombstone met (keys
/// come in order, and a row tombstone's key is the prefix of every key of its row) and
/// removes from the row's cells what it covers — covered siblings of a causal cell
/// (counters kept), a covered lww cell whole. The row tombstone itself is kept (see
/// [`super::row_tombstone`]), so what it covers stays deleted in files this compaction
/// did not read.
#[derive(Debug)]
struct RowTombstoneFilter {
    causal: bool,
    current: Option<(Vec<u8>, RowTombstone)>,
}

impl CompactionFilter for RowTombstoneFilter {
    fn filter(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        let Entry::Value(v) = &entry else {
            return Some(entry);
        };
        if is_row_tombstone(v) {
            self.current = RowTombstone::decode(v).ok().map(|t| (key.to_vec(), t));
            return Some(entry);
        }
        let Some((row, tomb)) = &self.current else {
            return Some(entry);
        };
        if !key.starts_with(row) {
            // Past the row: rows are contiguous, its tombstone covers nothing further.
            self.current = None;
            return Some(entry);
        }
        if self.causal {
            match decode_causal_cell(v)
                .ok()
                .and_then(|d| tomb.remove_covered(&d))
            {
                Some(left) => Some(Entry::Value(encode_causal_cell(&left))),
                None => Some(entry),
            }
        } else {
            match LwwCell::decode(v) {
                Ok(c) if tomb.covers_lww(&c) => None,
                _ => Some(entry),
            }
        }
    }
}

/// What `read` returns for an undecodable version: an undecodable cell reads as absent,
/// but one in the row tombstone's format is returned as stored, so the node's decoder
/// refuses the row. Hiding it would make a scan of the row read past it and show the
/// cells it deleted.
fn undecodable_row_tombstone(e: Entry) -> Option<Vec<u8>> {
    match e {
        Entry::Value(v) if is_row_tombstone(&v) => Some(v),
        _ => None,
    }
}

fn entry_bytes(e: Entry) -> Vec<u8> {
    match e {
        Entry::Value(v) => v,
        Entry::Tombstone => Vec::new(),
    }
}

/// Decides, in a bottommost compaction of a replicated table, whether one tombstone may
/// be purged: `key` is its engine key, `timestamp_micros` its write time (the newest of a
/// causal cell's tombstones).
pub trait PurgeGate: Send + Sync + std::fmt::Debug {
    /// True when the tombstone may go.
    fn may_purge(&self, key: &[u8], timestamp_micros: i64) -> bool;
}

/// When a policy purges tombstones in bottommost compactions.
#[derive(Debug, Clone)]
pub enum Purge {
    /// Always (a table with one replica).
    Always,
    /// Never.
    Never,
    /// When the gate says so.
    Gated(Arc<dyn PurgeGate>),
}

impl Purge {
    fn allows(&self, key: &[u8], timestamp_micros: i64) -> bool {
        match self {
            Purge::Always => true,
            Purge::Never => false,
            Purge::Gated(g) => g.may_purge(key, timestamp_micros),
        }
    }
}

/// The merge policy of `causal` tables: cells are DVV sets (see [`super::dvv`]).
#[derive(Debug, Clone)]
pub struct CausalMerge {
    clock: Arc<dyn Clock>,
    purge: Purge,
}

impl CausalMerge {
    /// A policy reading expiry against `clock` that purges tombstones in bottommost
    /// compactions (a table with one replica).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        CausalMerge {
            clock,
            purge: Purge::Always,
        }
    }

    /// The same policy for a table with more than one replica: it never purges a
    /// tombstone (see "Purging tombstones" in the module doc).
    pub fn replicated(clock: Arc<dyn Clock>) -> Self {
        CausalMerge {
            clock,
            purge: Purge::Never,
        }
    }

    /// The same policy purging a tombstone only when `gate` allows it.
    pub fn gated(clock: Arc<dyn Clock>, gate: Arc<dyn PurgeGate>) -> Self {
        CausalMerge {
            clock,
            purge: Purge::Gated(gate),
        }
    }
}

impl MergePolicy for CausalMerge {
    fn merge(&self, key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        if older == newer {
            return newer.to_owned();
        }
        let a = classify("causal", key, older, decode_causal_cell);
        let b = classify("causal", key, newer, decode_causal_cell);
        merge_ranked(older, newer, a, b, |x: Dvv, y: Dvv| {
            encode_causal_cell(&x.sync(&y))
        })
    }

    fn compact(&self, key: &[u8], entry: Entry, bottommost: bool) -> Option<Entry> {
        let dvv = match classify("causal", key, entry.as_ref(), decode_causal_cell) {
            Rank::Good(d) => d,
            // Keep what we cannot read: dropping it would be silent data loss. Row
            // tombstones are never purged yet (see the row_tombstone module).
            Rank::Corrupt | Rank::Row(_) => return Some(entry),
            Rank::EngineTombstone => return (!bottommost).then_some(entry),
        };
        let now = self.clock.now_secs();
        let live = dvv.without_expired(now);
        if bottommost && live.is_all_tombstones() {
            // The newest write the cell has seen: its tombstones' and its expired values'.
            let newest = dvv
                .siblings()
                .map(|(_, s)| s.timestamp_micros)
                .max()
                .unwrap_or(i64::MAX);
            if self.purge.allows(key, newest) {
                return None;
            }
        }
        if dvv.has_expired(now) {
            Some(Entry::Value(encode_causal_cell(&live)))
        } else {
            Some(entry)
        }
    }

    fn compaction_filter(&self) -> Option<Box<dyn CompactionFilter>> {
        Some(Box::new(RowTombstoneFilter {
            causal: true,
            current: None,
        }))
    }

    fn read(&self, key: &[u8], entry: Entry) -> Option<Vec<u8>> {
        match classify("causal", key, entry.as_ref(), decode_causal_cell) {
            Rank::Good(dvv) => {
                let now = self.clock.now_secs();
                if dvv.has_expired(now) {
                    Some(encode_causal_cell(&dvv.without_expired(now)))
                } else {
                    match entry {
                        Entry::Value(v) => Some(v),
                        Entry::Tombstone => None,
                    }
                }
            }
            // The node reads the row tombstone to filter the row's cells.
            Rank::Row(_) => Some(entry_bytes(entry)),
            Rank::Corrupt => undecodable_row_tombstone(entry),
            Rank::EngineTombstone => None,
        }
    }
}

/// The merge policy of `lww` tables: cells are [`LwwCell`]s, the winner of
/// [`LwwCell::lww_cmp`] is kept.
#[derive(Debug, Clone)]
pub struct LwwMerge {
    clock: Arc<dyn Clock>,
    purge: Purge,
}

impl LwwMerge {
    /// A policy reading expiry against `clock` that purges tombstones in bottommost
    /// compactions (a table with one replica).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LwwMerge {
            clock,
            purge: Purge::Always,
        }
    }

    /// The same policy for a table with more than one replica: it never purges a
    /// tombstone (see "Purging tombstones" in the module doc).
    pub fn replicated(clock: Arc<dyn Clock>) -> Self {
        LwwMerge {
            clock,
            purge: Purge::Never,
        }
    }

    /// The same policy purging a tombstone only when `gate` allows it.
    pub fn gated(clock: Arc<dyn Clock>, gate: Arc<dyn PurgeGate>) -> Self {
        LwwMerge {
            clock,
            purge: Purge::Gated(gate),
        }
    }
}

impl MergePolicy for LwwMerge {
    fn merge(&self, key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        let a = classify("lww", key, older, LwwCell::decode);
        let b = classify("lww", key, newer, LwwCell::decode);
        // Return the winner's original bytes rather than re-encoding.
        match (a, b) {
            (Rank::Good(x), Rank::Good(y)) => {
                if y.wins_over(&x) {
                    newer.to_owned()
                } else {
                    older.to_owned()
                }
            }
            (a, b) => merge_ranked(older, newer, a, b, |_, _| Vec::new()),
        }
    }

    /// An expired value becomes a tombstone with the value's timestamp (it must keep
    /// shadowing older writes); tombstones are dropped when `bottommost`, unless the
    /// table is replicated.
    fn compact(&self, key: &[u8], entry: Entry, bottommost: bool) -> Option<Entry> {
        let cell = match classify("lww", key, entry.as_ref(), LwwCell::decode) {
            Rank::Good(c) => c,
            // Row tombstones are never purged yet (see the row_tombstone module).
            Rank::Corrupt | Rank::Row(_) => return Some(entry),
            Rank::EngineTombstone => return (!bottommost).then_some(entry),
        };
        let dead = cell.is_tombstone() || cell.is_expired(self.clock.now_secs());
        let purge = dead && bottommost && self.purge.allows(key, cell.timestamp_micros);
        match (dead, purge) {
            (true, true) => None,
            (true, false) if !cell.is_tombstone() => Some(Entry::Value(
                LwwCell::tombstone(cell.timestamp_micros).encode(),
            )),
            _ => Some(entry),
        }
    }

    fn compaction_filter(&self) -> Option<Box<dyn CompactionFilter>> {
        Some(Box::new(RowTombstoneFilter {
            causal: false,
            current: None,
        }))
    }

    fn read(&self, key: &[u8], entry: Entry) -> Option<Vec<u8>> {
        match classify("lww", key, entry.as_ref(), LwwCell::decode) {
            Rank::Good(c) if !c.is_tombstone() && !c.is_expired(self.clock.now_secs()) => {
                match entry {
                    Entry::Value(v) => Some(v),
                    Entry::Tombstone => None,
                }
            }
            Rank::Row(_) => Some(entry_bytes(entry)),
            Rank::Corrupt => undecodable_row_tombstone(entry),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::clock::ManualClock;
    use crate::versioning::dvv::Sibling;
    use crate::versioning::vv::VersionVector;
    use crate::versioning::{corrupt_cells_seen, Actor};

    const A: Actor = Actor::new(1, 1);
    const B: Actor = Actor::new(2, 1);
    const K: &[u8] = b"key";

    fn clock_at(secs: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock::at_secs(secs))
    }

    fn causal(clock: &Arc<ManualClock>) -> CausalMerge {
        CausalMerge::new(clock.clone())
    }

    fn cell(d: &Dvv) -> Entry {
        Entry::Value(encode_causal_cell(d))
    }

    fn blind(d: &Dvv, s: Sibling, actor: Actor) -> Dvv {
        d.update(&VersionVector::new(), s, actor)
    }

    fn val(s: &str) -> Sibling {
        Sibling::value(s.as_bytes().to_vec(), 0)
    }

    fn decoded(e: &Entry) -> Dvv {
        match e {
            Entry::Value(v) => decode_causal_cell(v).unwrap(),
            Entry::Tombstone => panic!("expected a cell"),
        }
    }

    #[test]
    fn causal_merge_is_dvv_sync() {
        let p = causal(&clock_at(0));
        let x = blind(&Dvv::new(), val("x"), A);
        let y = blind(&Dvv::new(), val("y"), B);
        let merged = p.merge(K, cell(&x).as_ref(), cell(&y).as_ref());
        assert_eq!(decoded(&merged), x.sync(&y));
        assert_eq!(decoded(&merged).sibling_count(), 2);
    }

    #[test]
    fn causal_merge_keeps_the_decodable_side() {
        let p = causal(&clock_at(0));
        let x = cell(&blind(&Dvv::new(), val("x"), A));
        let junk = Entry::Value(vec![0xC1, 0xff]);
        let before = corrupt_cells_seen();
        assert_eq!(p.merge(K, x.as_ref(), junk.as_ref()), x);
        assert_eq!(p.merge(K, junk.as_ref(), x.as_ref()), x);
        assert!(corrupt_cells_seen() >= before + 2);
        // Two undecodable versions: the newer is kept; an engine tombstone never wins.
        let junk2 = Entry::Value(vec![0x00]);
        assert_eq!(p.merge(K, junk.as_ref(), junk2.as_ref()), junk2);
        assert_eq!(p.merge(K, junk.as_ref(), EntryRef::Tombstone), junk);
    }

    #[test]
    fn causal_merge_ignores_engine_tombstones() {
        let p = causal(&clock_at(0));
        let x = cell(&blind(&Dvv::new(), val("x"), A));
        assert_eq!(p.merge(K, x.as_ref(), EntryRef::Tombstone), x);
        assert_eq!(p.merge(K, EntryRef::Tombstone, x.as_ref()), x);
        assert_eq!(
            p.merge(K, EntryRef::Tombstone, EntryRef::Tombstone),
            Entry::Tombstone
        );
        assert!(!p.newest_wins());
    }

    #[test]
    fn causal_compact_drops_expired_siblings() {
        let clock = clock_at(100);
        let p = causal(&clock);
        let d = blind(&Dvv::new(), val("ttl").with_expiry(150), A);
        let d = blind(&d, val("keep"), A);
        let e = cell(&d);
        assert_eq!(p.compact(K, e.clone(), false), Some(e.clone()));
        clock.advance_secs(50);
        let out = decoded(&p.compact(K, e, true).unwrap());
        assert_eq!(out.values(), [&val("keep")]);
        assert_eq!(out.join(), d.join());
    }

    #[test]
    fn causal_compact_drops_tombstone_cell_only_bottommost() {
        let p = causal(&clock_at(0));
        let d = blind(&Dvv::new(), val("x"), A);
        let d = d.update(&d.join(), Sibling::tombstone(1), A);
        let e = cell(&d);
        assert_eq!(p.compact(K, e.clone(), false), Some(e.clone()));
        assert_eq!(p.compact(K, e, true), None);
        let live = cell(&blind(&d, val("y"), B));
        assert_eq!(p.compact(K, live.clone(), true), Some(live));
    }

    #[test]
    fn causal_compact_of_a_replicated_table_keeps_tombstones_even_bottommost() {
        let p = CausalMerge::replicated(clock_at(10));
        let d = blind(&Dvv::new(), val("x"), A);
        let d = d.update(&d.join(), Sibling::tombstone(1), A);
        let e = cell(&d);
        assert_eq!(p.compact(K, e.clone(), true), Some(e));
        let expired = blind(&Dvv::new(), val("x").with_expiry(5), A);
        let out = decoded(&p.compact(K, cell(&expired), true).unwrap());
        assert_eq!(out.sibling_count(), 0, "the expired value goes");
        assert_eq!(out.join(), expired.join(), "its counters stay");
    }

    /// A gate that allows tombstones older than a timestamp.
    #[derive(Debug)]
    struct Before(i64);

    impl PurgeGate for Before {
        fn may_purge(&self, _key: &[u8], timestamp_micros: i64) -> bool {
            timestamp_micros < self.0
        }
    }

    #[test]
    fn gated_policies_purge_only_the_tombstones_their_gate_allows() {
        let gate: Arc<dyn PurgeGate> = Arc::new(Before(5));
        let p = CausalMerge::gated(clock_at(10), gate.clone());
        let d = blind(&Dvv::new(), val("x"), A);
        let old = d.update(&d.join(), Sibling::tombstone(1), A);
        let young = d.update(&d.join(), Sibling::tombstone(7), A);
        assert_eq!(p.compact(K, cell(&old), true), None, "old enough: purged");
        assert_eq!(
            p.compact(K, cell(&old), false),
            Some(cell(&old)),
            "not bottommost"
        );
        assert_eq!(p.compact(K, cell(&young), true), Some(cell(&young)));
        // A live value is never purged, whatever the gate says.
        assert!(p.compact(K, cell(&d), true).is_some());
        let l = LwwMerge::gated(clock_at(10), gate);
        let t_old = Entry::Value(LwwCell::tombstone(1).encode());
        let t_young = Entry::Value(LwwCell::tombstone(7).encode());
        assert_eq!(l.compact(K, t_old, true), None);
        assert_eq!(l.compact(K, t_young.clone(), true), Some(t_young));
        let live = Entry::Value(LwwCell::value(b"v".to_vec(), 1).encode());
        assert_eq!(l.compact(K, live.clone(), true), Some(live));
    }

    #[test]
    fn causal_compact_drops_fully_expired_cell_only_bottommost() {
        let p = causal(&clock_at(10));
        let d = blind(&Dvv::new(), val("x").with_expiry(5), A);
        let kept = decoded(&p.compact(K, cell(&d), false).unwrap());
        assert_eq!(kept.sibling_count(), 0);
        assert_eq!(kept.join(), d.join());
        assert_eq!(p.compact(K, cell(&d), true), None);
    }

    #[test]
    fn causal_compact_keeps_corrupt_cells() {
        let p = causal(&clock_at(0));
        let junk = Entry::Value(vec![1, 2, 3]);
        assert_eq!(p.compact(K, junk.clone(), true), Some(junk));
    }

    #[test]
    fn causal_read_hides_expired_values() {
        let clock = clock_at(0);
        let p = causal(&clock);
        let d = blind(&Dvv::new(), val("ttl").with_expiry(10), A);
        let d = blind(&d, val("keep"), B);
        let read = |p: &CausalMerge| decode_causal_cell(&p.read(K, cell(&d)).unwrap()).unwrap();
        assert_eq!(read(&p).sibling_count(), 2);
        clock.advance_secs(10);
        assert_eq!(read(&p).values(), [&val("keep")]);
    }

    #[test]
    fn causal_read_returns_tombstone_cells_with_context() {
        let p = causal(&clock_at(0));
        let d = blind(&Dvv::new(), Sibling::tombstone(3), A);
        let got = decode_causal_cell(&p.read(K, cell(&d)).unwrap()).unwrap();
        assert_eq!(got, d);
        assert_eq!(p.read(K, Entry::Tombstone), None);
        assert_eq!(p.read(K, Entry::Value(vec![9])), None);
    }

    fn lww(clock: &Arc<ManualClock>) -> LwwMerge {
        LwwMerge::new(clock.clone())
    }

    fn lcell(c: &LwwCell) -> Entry {
        Entry::Value(c.encode())
    }

    #[test]
    fn lww_merge_keeps_winner_either_order() {
        let p = lww(&clock_at(0));
        let old = lcell(&LwwCell::value(b"z".to_vec(), 1));
        let new = lcell(&LwwCell::value(b"a".to_vec(), 2));
        assert_eq!(p.merge(K, old.as_ref(), new.as_ref()), new);
        assert_eq!(p.merge(K, new.as_ref(), old.as_ref()), new);
        let tomb = lcell(&LwwCell::tombstone(2));
        assert_eq!(p.merge(K, tomb.as_ref(), new.as_ref()), tomb);
        assert!(!p.newest_wins());
    }

    #[test]
    fn lww_merge_keeps_the_decodable_side() {
        let p = lww(&clock_at(0));
        let good = lcell(&LwwCell::value(b"a".to_vec(), 2));
        let junk = Entry::Value(vec![0xD1]);
        assert_eq!(p.merge(K, good.as_ref(), junk.as_ref()), good);
        assert_eq!(p.merge(K, junk.as_ref(), good.as_ref()), good);
        assert_eq!(p.merge(K, EntryRef::Tombstone, good.as_ref()), good);
    }

    #[test]
    fn lww_compact_turns_expired_into_tombstone() {
        let p = lww(&clock_at(20));
        let c = lcell(&LwwCell::value(b"a".to_vec(), 7).with_expiry(20));
        assert_eq!(
            p.compact(K, c.clone(), false),
            Some(lcell(&LwwCell::tombstone(7)))
        );
        assert_eq!(p.compact(K, c, true), None);
        let fresh = lcell(&LwwCell::value(b"a".to_vec(), 7).with_expiry(21));
        assert_eq!(p.compact(K, fresh.clone(), true), Some(fresh));
    }

    #[test]
    fn lww_compact_of_a_replicated_table_keeps_tombstones_even_bottommost() {
        let p = LwwMerge::replicated(clock_at(20));
        let t = lcell(&LwwCell::tombstone(7));
        assert_eq!(p.compact(K, t.clone(), true), Some(t));
        let expired = lcell(&LwwCell::value(b"a".to_vec(), 7).with_expiry(20));
        assert_eq!(
            p.compact(K, expired, true),
            Some(lcell(&LwwCell::tombstone(7))),
            "an expired value becomes a tombstone that stays"
        );
    }

    /// Regression: on equal timestamps a value without expiry (or with a later one, or
    /// greater bytes) beat an expiring value, but compaction turns an expired value into
    /// a tombstone, which beats everything of its timestamp: whether a replica had
    /// compacted decided whether the other value survived.
    #[test]
    fn lww_merge_winner_does_not_depend_on_compacting_an_expired_value() {
        let p = lww(&clock_at(11));
        let expired = lcell(&LwwCell::value(b"a".to_vec(), 7).with_expiry(10));
        let compacted = p.compact(K, expired.clone(), false).unwrap();
        for other in [
            LwwCell::value(b"b".to_vec(), 7),
            LwwCell::value(b"a".to_vec(), 7),
            LwwCell::value(b"a".to_vec(), 7).with_expiry(20),
            LwwCell::value(b"0".to_vec(), 7).with_expiry(12),
        ] {
            let other = lcell(&other);
            let seen = |x: &Entry| {
                let a = p.read(K, p.merge(K, x.as_ref(), other.as_ref()));
                let b = p.read(K, p.merge(K, other.as_ref(), x.as_ref()));
                assert_eq!(a, b);
                a
            };
            assert_eq!(seen(&expired), seen(&compacted), "{other:?}");
        }
    }

    #[test]
    fn lww_compact_drops_tombstones_only_bottommost() {
        let p = lww(&clock_at(0));
        let t = lcell(&LwwCell::tombstone(7));
        assert_eq!(p.compact(K, t.clone(), false), Some(t.clone()));
        assert_eq!(p.compact(K, t, true), None);
    }

    #[test]
    fn lww_read_hides_tombstones_and_expired() {
        let clock = clock_at(0);
        let p = lww(&clock);
        let v = lcell(&LwwCell::value(b"a".to_vec(), 7).with_expiry(5));
        assert_eq!(
            p.read(K, v.clone()),
            Some(LwwCell::value(b"a".to_vec(), 7).with_expiry(5).encode())
        );
        clock.advance_secs(5);
        assert_eq!(p.read(K, v), None);
        assert_eq!(p.read(K, lcell(&LwwCell::tombstone(1))), None);
        assert_eq!(p.read(K, Entry::Tombstone), None);
    }

    fn row_tomb(pairs: &[(Actor, u64)], ts: i64) -> Entry {
        Entry::Value(
            RowTombstone::Causal {
                seen: VersionVector::from_pairs(pairs.iter().copied()),
                timestamp_micros: ts,
            }
            .encode(),
        )
    }

    #[test]
    fn row_tombstones_merge_by_join_in_either_order_and_are_kept_by_compaction_and_reads() {
        let clock = clock_at(0);
        let p = causal(&clock);
        let x = row_tomb(&[(A, 3)], 1);
        let y = row_tomb(&[(A, 1), (B, 2)], 2);
        let xy = p.merge(K, x.as_ref(), y.as_ref());
        assert_eq!(xy, p.merge(K, y.as_ref(), x.as_ref()));
        assert_eq!(xy, row_tomb(&[(A, 3), (B, 2)], 2));
        assert_eq!(p.compact(K, xy.clone(), true), Some(xy.clone()));
        let Entry::Value(bytes) = &xy else { panic!() };
        assert_eq!(p.read(K, xy.clone()).as_ref(), Some(bytes));
        let l = lww(&clock);
        let t = Entry::Value(
            RowTombstone::Lww {
                timestamp_micros: 4,
            }
            .encode(),
        );
        let u = Entry::Value(
            RowTombstone::Lww {
                timestamp_micros: 9,
            }
            .encode(),
        );
        assert_eq!(l.merge(K, t.as_ref(), u.as_ref()), u);
        assert_eq!(l.merge(K, u.as_ref(), t.as_ref()), u);
        assert_eq!(l.compact(K, t.clone(), true), Some(t.clone()));
        assert!(l.read(K, t).is_some());
    }

    #[test]
    fn compaction_filter_strips_what_the_row_tombstone_covers_within_its_row_only() {
        let p = causal(&clock_at(0));
        let mut f = p.compaction_filter().unwrap();
        let row = b"row".to_vec();
        assert!(f.filter(&row, row_tomb(&[(A, 1)], 0)).is_some());
        let d = blind(&Dvv::new(), val("old"), A);
        let d = blind(&d, val("new"), A);
        let inside = [row.clone(), b"c".to_vec()].concat();
        let left = decoded(&f.filter(&inside, cell(&d)).unwrap());
        assert_eq!(left.values(), [&val("new")]);
        assert_eq!(left.join(), d.join());
        // The next row is untouched.
        assert_eq!(f.filter(b"rox", cell(&d)), Some(cell(&d)));
        let l = lww(&clock_at(0));
        let mut f = l.compaction_filter().unwrap();
        let tomb = Entry::Value(
            RowTombstone::Lww {
                timestamp_micros: 5,
            }
            .encode(),
        );
        assert!(f.filter(&row, tomb).is_some());
        assert_eq!(
            f.filter(&inside, lcell(&LwwCell::value(b"a".to_vec(), 5))),
            None
        );
        let newer = lcell(&LwwCell::value(b"a".to_vec(), 6));
        assert_eq!(f.filter(&inside, newer.clone()), Some(newer));
    }

    /// Regression (versioning_props found it): garbage starting with the row tombstone's
    /// format byte, between two cells, once made the merge depend on grouping.
    #[test]
    fn causal_merge_stays_associative_with_garbage_that_looks_like_a_row_tombstone() {
        let p = causal(&clock_at(0));
        let a = cell(&blind(&Dvv::new(), val("a"), A));
        let junk = Entry::Value(vec![0xC2]);
        let b = cell(&Dvv::new());
        let left = p.merge(
            K,
            p.merge(K, a.as_ref(), junk.as_ref()).as_ref(),
            b.as_ref(),
        );
        let right = p.merge(
            K,
            a.as_ref(),
            p.merge(K, junk.as_ref(), b.as_ref()).as_ref(),
        );
        assert_eq!(left, right);
        // A good row tombstone mixed with cells (corruption) also keeps the cells.
        let t = row_tomb(&[(A, 1)], 0);
        assert_eq!(p.merge(K, a.as_ref(), t.as_ref()), a);
        assert_eq!(p.merge(K, t.as_ref(), a.as_ref()), a);
    }
}
