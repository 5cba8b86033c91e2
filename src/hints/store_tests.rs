//! Unit tests of the hint store over a real engine in a temp dir: store, batch, remove,
//! restart, bounds, dropped-hint persistence, corrupt records, purge.

use std::sync::Arc;
use std::time::Duration;

use sibyl_storage::{Direction, Engine, EngineOptions, SyncMode};

use super::record::{encode_record, owner_bounds};
use super::store::HINTS_TABLE;
use super::*;
use crate::replica::RawCell;
use crate::ring::NodeId;
use crate::versioning::{Clock, ManualClock};

const T0: i64 = 1_700_000_000;
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);

fn cell(i: u8) -> RawCell {
    RawCell {
        table: "users".into(),
        key: vec![0x80, i, 0, 1, b'k', b'v'],
        value: vec![i; 10],
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::at_secs(T0)),
        }
    }

    fn open(&self, sync: SyncMode, limits: HintLimits) -> HintStore {
        HintStore::open(
            &hints_dir(self.dir.path()),
            sync,
            limits,
            self.clock.clone() as Arc<dyn Clock>,
        )
        .unwrap()
    }

    fn store(&self) -> HintStore {
        self.open(SyncMode::Batch, HintLimits::default())
    }
}

fn kept(s: Stored) -> HintId {
    match s {
        Stored::Kept(id) => id,
        other => panic!("not kept: {other:?}"),
    }
}

#[test]
fn hint_store_keeps_batches_and_removes_hints_per_owner() {
    let f = Fixture::new();
    let s = f.store();
    let a = kept(s.store(C, &[cell(1), cell(2)]).unwrap());
    let b = kept(s.store(C, &[cell(3)]).unwrap());
    kept(s.store(B, &[cell(4)]).unwrap());
    assert!(b > a, "ids increase");
    let owners = s.owners();
    assert_eq!(
        owners
            .iter()
            .map(|(o, p)| (*o, p.count))
            .collect::<Vec<_>>(),
        vec![(B, 1), (C, 2)]
    );
    assert_eq!(s.pending(C).oldest_micros, T0 * 1_000_000);
    let batch = s.batch(C, usize::MAX).unwrap();
    assert_eq!(batch, vec![(a, vec![cell(1), cell(2)]), (b, vec![cell(3)])]);
    // A small budget still yields one hint.
    assert_eq!(s.batch(C, 1).unwrap().len(), 1);
    assert_eq!(s.remove(C, &[a]).unwrap(), 1);
    assert_eq!(s.remove(C, &[a]).unwrap(), 0, "removing twice is harmless");
    assert_eq!(s.batch(C, usize::MAX).unwrap(), vec![(b, vec![cell(3)])]);
    assert_eq!(s.pending(C).count, 1);
    assert_eq!(s.remove(C, &[b]).unwrap(), 1);
    assert_eq!(s.pending(C), PendingStats::default());
    assert!(s.batch(C, usize::MAX).unwrap().is_empty());
    assert_eq!(
        s.batch(B, usize::MAX).unwrap().len(),
        1,
        "other owner untouched"
    );
    let st = s.stats();
    assert_eq!(
        (st.kept, st.removed, st.owners, st.pending_hints),
        (3, 2, 1, 1)
    );
    assert_eq!(s.store(C, &[]).unwrap(), Stored::Kept(HintId(0)));
}

#[test]
fn hint_store_oldest_follows_the_first_pending_hint() {
    let f = Fixture::new();
    let s = f.store();
    let a = kept(s.store(C, &[cell(1)]).unwrap());
    f.clock.advance_secs(10);
    kept(s.store(C, &[cell(2)]).unwrap());
    assert_eq!(s.pending(C).oldest_micros, T0 * 1_000_000);
    s.remove(C, &[a]).unwrap();
    assert_eq!(s.pending(C).oldest_micros, (T0 + 10) * 1_000_000);
}

#[test]
fn hint_store_restart_keeps_hints_counts_and_increasing_ids() {
    let f = Fixture::new();
    let (a, b) = {
        let s = f.store();
        let a = kept(s.store(C, &[cell(1)]).unwrap());
        let b = kept(s.store(C, &[cell(2)]).unwrap());
        s.close().unwrap();
        (a, b)
    };
    // The clock went back: ids still go above what is stored.
    f.clock.advance_secs(-100);
    let s = f.store();
    assert_eq!(s.pending(C).count, 2);
    let c = kept(s.store(C, &[cell(3)]).unwrap());
    assert!(c > b);
    let ids: Vec<HintId> = s
        .batch(C, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(ids, vec![a, b, c]);
}

#[test]
fn hint_store_kill_without_close_keeps_every_acknowledged_hint_under_batch_sync() {
    let f = Fixture::new();
    let mut ids = Vec::new();
    {
        let s = f.store();
        for i in 0..50 {
            ids.push(kept(s.store(C, &[cell(i)]).unwrap()));
        }
        // Dropped, not closed (Batch: each store returned after its fsync).
    }
    let s = f.store();
    let got: Vec<HintId> = s
        .batch(C, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(got, ids);
    assert_eq!(s.pending(C).count, 50);
    assert_eq!(s.pending(C).bytes, f.store_bytes(&s));
}

impl Fixture {
    fn store_bytes(&self, s: &HintStore) -> u64 {
        s.owners().iter().map(|(_, p)| p.bytes).sum()
    }
}

#[test]
fn hint_store_window_drops_new_hints_once_the_oldest_is_too_old() {
    let f = Fixture::new();
    let limits = HintLimits {
        window: Duration::from_secs(60),
        ..HintLimits::default()
    };
    let s = f.open(SyncMode::Batch, limits);
    let first = kept(s.store(C, &[cell(1)]).unwrap());
    f.clock.advance_secs(60);
    kept(s.store(C, &[cell(2)]).unwrap());
    f.clock.advance_secs(1);
    assert_eq!(
        s.store(C, &[cell(3)]).unwrap(),
        Stored::Dropped(DropReason::Window)
    );
    kept(s.store(B, &[cell(3)]).unwrap());
    // Once the old hints are delivered, new ones are kept again.
    let rest: Vec<HintId> = s
        .batch(C, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(rest.first(), Some(&first));
    s.remove(C, &rest).unwrap();
    kept(s.store(C, &[cell(4)]).unwrap());
    let d = s.dropped();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].owner, d[0].window, d[0].size), (C, 1, 0));
    assert_eq!(d[0].spans[0].table, "users");
    assert_eq!(d[0].spans[0].min_key, cell(3).key);
    assert_eq!(s.stats().dropped_window, 1);
}

#[test]
fn hint_store_never_delivers_a_hint_older_than_its_ttl() {
    let f = Fixture::new();
    let limits = HintLimits {
        ttl: Duration::from_secs(100),
        ..HintLimits::default()
    };
    let s = f.open(SyncMode::Batch, limits);
    kept(s.store(C, &[cell(1)]).unwrap());
    f.clock.advance_secs(60);
    let young = kept(s.store(C, &[cell(2)]).unwrap());
    f.clock.advance_secs(41);
    // The first is 101 s old: discarded, recorded for repair; the second is delivered.
    let batch = s.batch(C, usize::MAX).unwrap();
    assert_eq!(batch.iter().map(|h| h.0).collect::<Vec<_>>(), vec![young]);
    assert_eq!(s.pending(C).count, 1);
    let d = s.dropped();
    assert_eq!((d[0].owner, d[0].window), (C, 1));
    assert_eq!(d[0].spans[0].min_key, cell(1).key);
    assert_eq!(s.stats().dropped_window, 1);
}

#[test]
fn hint_store_size_bound_drops_and_dropped_survives_reopen_until_cleared() {
    let f = Fixture::new();
    let one = (encode_record(0, &[cell(1)]).len() + record::KEY_LEN) as u64;
    let limits = HintLimits {
        max_bytes_per_owner: 2 * one,
        ..HintLimits::default()
    };
    {
        let s = f.open(SyncMode::Batch, limits);
        kept(s.store(C, &[cell(1)]).unwrap());
        kept(s.store(C, &[cell(2)]).unwrap());
        for i in 3..6 {
            assert_eq!(
                s.store(C, &[cell(i)]).unwrap(),
                Stored::Dropped(DropReason::Size)
            );
        }
        assert_eq!(s.pending(C).bytes, 2 * one);
        kept(s.store(B, &[cell(9)]).unwrap());
        // Not closed: the spans were persisted when they widened, the counts on drop.
    }
    let s = f.open(SyncMode::Batch, limits);
    let d = s.dropped();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].owner, d[0].size, d[0].count()), (C, 3, 3));
    assert_eq!(d[0].bytes, 3 * one);
    assert_eq!(d[0].first_micros, T0 * 1_000_000);
    assert_eq!(
        (d[0].spans[0].min_key.clone(), d[0].spans[0].max_key.clone()),
        (cell(3).key, cell(5).key)
    );
    s.clear_dropped(C).unwrap();
    drop(s);
    assert!(f.open(SyncMode::Batch, limits).dropped().is_empty());
}

#[test]
fn hint_store_corrupt_record_is_counted_skipped_removed_and_marked_for_repair() {
    let f = Fixture::new();
    let s = f.store();
    let a = kept(s.store(C, &[cell(1)]).unwrap());
    let mut bad = encode_record(5, &[cell(2)]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    s.put_raw(C, HintId(a.0 + 1000), &bad);
    s.put_raw(C, HintId(a.0 + 1001), b"junk");
    let c = kept(s.store(C, &[cell(3)]).unwrap());
    drop(s);
    // Reopen: the corrupt ones count as pending until a batch meets them.
    let s = f.store();
    assert_eq!(s.pending(C).count, 4);
    let batch = s.batch(C, usize::MAX).unwrap();
    assert_eq!(batch, vec![(a, vec![cell(1)]), (c, vec![cell(3)])]);
    assert_eq!(s.pending(C).count, 2);
    assert_eq!(s.stats().corrupt, 2);
    let d = s.dropped();
    assert_eq!((d[0].owner, d[0].corrupt, d[0].all_keys), (C, 2, true));
    // A typed error describes the damage.
    let e = record::decode_record(&bad).unwrap_err();
    assert!(matches!(e, RecordError::Checksum { .. }), "{e}");
}

#[test]
fn hint_store_purge_leaves_no_key_of_a_delivered_owner() {
    let f = Fixture::new();
    let s = f.store();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(kept(s.store(C, &[cell(i)]).unwrap()));
    }
    kept(s.store(B, &[cell(99)]).unwrap());
    s.purge().unwrap(); // the hints reach an SSTable first
    assert!(s.stats().sstable_entries >= 21);
    s.remove(C, &ids).unwrap();
    s.purge().unwrap();
    let st = s.stats();
    assert_eq!(
        (
            st.sstable_entries,
            st.sstable_tombstones,
            st.memtable_entries
        ),
        (1, 0, 0),
        "only B's hint is left"
    );
    s.close().unwrap();
    drop(s);
    // Straight from the engine, tombstones included: no key of C.
    let engine = Engine::open(hints_dir(f.dir.path()), EngineOptions::default()).unwrap();
    let (start, end) = owner_bounds(C);
    let mut scan = engine
        .scan(
            HINTS_TABLE,
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Excluded(end.unwrap().as_slice()),
            Direction::Forward,
        )
        .unwrap();
    assert!(scan.next_merged().unwrap().is_none());
    let stats = engine.stats(HINTS_TABLE).unwrap();
    assert_eq!((stats.sstable_entries, stats.memtable_entries), (1, 0));
}

#[test]
fn hint_store_lives_beside_the_main_engine_in_its_data_directory() {
    let f = Fixture::new();
    let main = Engine::open(f.dir.path(), EngineOptions::default()).unwrap();
    main.create_table("t", Default::default()).unwrap();
    main.put("t", b"k", b"v").unwrap();
    let s = f.store();
    kept(s.store(C, &[cell(1)]).unwrap());
    main.flush(None).unwrap();
    main.compact("t").unwrap();
    drop(main);
    drop(s);
    let main = Engine::open(f.dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(main.get("t", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(main.tables(), vec!["t".to_string()]);
    assert_eq!(f.store().pending(C).count, 1);
}

#[test]
fn hint_store_unreadable_dropped_file_is_set_aside_and_reported() {
    let f = Fixture::new();
    let dir = hints_dir(f.dir.path());
    drop(f.store());
    std::fs::write(dir.join(dropped::DROPPED_FILE), b"garbage").unwrap();
    let s = f.store();
    assert!(s.stats().dropped_file_lost);
    assert!(s.dropped().is_empty());
    assert!(dir.join("dropped.corrupt").exists());
    drop(s);
    assert!(
        f.store().stats().dropped_file_lost,
        "still reported after a restart"
    );
}

#[test]
fn hint_store_refuses_a_record_over_the_limit() {
    let f = Fixture::new();
    let s = f.store();
    let big = RawCell {
        table: "t".into(),
        key: vec![1],
        value: vec![0; store::MAX_HINT_RECORD],
    };
    assert!(matches!(
        s.store(C, &[big]),
        Err(HintError::TooLarge { .. })
    ));
    assert_eq!(s.pending(C), PendingStats::default());
}
