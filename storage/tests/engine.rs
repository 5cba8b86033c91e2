//! Integration tests of the storage engine: one behaviour per test, through the public
//! API only (plus the fault seam and the files on disk).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

use std::ops::Bound;
use std::sync::Arc;

use sibyl_storage::fault::Faults;
use sibyl_storage::{
    Direction, Engine, EngineOptions, Entry, EntryRef, Error, MergePolicy, SyncMode, TableOptions,
    WriteBatch,
};

fn small_opts() -> EngineOptions {
    EngineOptions {
        memtable_size: 8 << 10,
        segment_size: 16 << 10,
        ..EngineOptions::default()
    }
}

fn open_with(dir: &std::path::Path, opts: EngineOptions) -> Engine {
    Engine::open(dir, opts).expect("open engine")
}

fn scan_all(e: &Engine, t: &str, dir: Direction) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.scan(t, Bound::Unbounded, Bound::Unbounded, dir)
        .expect("scan")
        .collect::<Result<Vec<_>, _>>()
        .expect("scan entries")
}

#[test]
fn engine_put_get_delete_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), EngineOptions::default());
    e.create_table("t", TableOptions::default())
        .expect("create");
    e.put("t", b"a", b"1").expect("put");
    assert_eq!(e.get("t", b"a").expect("get"), Some(b"1".to_vec()));
    e.delete("t", b"a").expect("delete");
    assert_eq!(e.get("t", b"a").expect("get"), None);
    assert_eq!(e.get("t", b"never").expect("get"), None);
}

#[test]
fn engine_unknown_table_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), EngineOptions::default());
    assert!(matches!(
        e.put("nope", b"k", b"v"),
        Err(Error::UnknownTable { .. })
    ));
    assert!(matches!(
        e.get("nope", b"k"),
        Err(Error::UnknownTable { .. })
    ));
    e.create_table("t", TableOptions::default())
        .expect("create");
    assert!(matches!(
        e.create_table("t", TableOptions::default()),
        Err(Error::TableExists { .. })
    ));
}

#[test]
fn engine_batch_spans_tables_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), EngineOptions::default());
        e.create_table("a", TableOptions::default())
            .expect("create");
        e.create_table("b", TableOptions::default())
            .expect("create");
        let mut b = WriteBatch::new();
        b.put("a", b"k", b"va").put("b", b"k", b"vb");
        e.write(&b).expect("write");
        // A batch naming an unknown table is refused whole.
        let mut bad = WriteBatch::new();
        bad.put("a", b"x", b"1").put("zzz", b"x", b"1");
        assert!(e.write(&bad).is_err());
        assert_eq!(e.get("a", b"x").expect("get"), None);
    }
    let e = open_with(dir.path(), EngineOptions::default());
    assert_eq!(e.get("a", b"k").expect("get"), Some(b"va".to_vec()));
    assert_eq!(e.get("b", b"k").expect("get"), Some(b"vb".to_vec()));
}

#[test]
fn engine_reopen_replays_commit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), EngineOptions::default());
        e.create_table("t", TableOptions::default())
            .expect("create");
        for i in 0..1000u32 {
            e.put("t", format!("k{i:05}").as_bytes(), &i.to_le_bytes())
                .expect("put");
        }
    }
    let e = open_with(dir.path(), EngineOptions::default());
    for i in 0..1000u32 {
        assert_eq!(
            e.get("t", format!("k{i:05}").as_bytes()).expect("get"),
            Some(i.to_le_bytes().to_vec())
        );
    }
}

#[test]
fn engine_flush_writes_sstables_and_deletes_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), small_opts());
    e.create_table("t", TableOptions::default())
        .expect("create");
    for i in 0..2000u32 {
        e.put("t", format!("k{i:05}").as_bytes(), &[7u8; 50])
            .expect("put");
    }
    e.flush(None).expect("flush");
    let s = e.stats("t").expect("stats");
    assert!(s.flushes >= 1, "{s:?}");
    assert!(s.sstables >= 1, "{s:?}");
    assert_eq!(s.frozen_memtables, 0);
    let segments = std::fs::read_dir(dir.path().join("commitlog"))
        .expect("ls")
        .count();
    assert!(
        segments <= 2,
        "old segments should be deleted, found {segments}"
    );
    assert_eq!(scan_all(&e, "t", Direction::Forward).len(), 2000);
}

#[test]
fn engine_scan_both_directions_with_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), small_opts());
    e.create_table("t", TableOptions::default())
        .expect("create");
    for i in 0..300u32 {
        e.put("t", format!("k{i:03}").as_bytes(), b"v")
            .expect("put");
        if i == 150 {
            e.flush(Some("t")).expect("flush");
        }
    }
    e.delete("t", b"k010").expect("delete");
    let keys = |it: sibyl_storage::ScanIter| -> Vec<String> {
        it.map(|r| String::from_utf8(r.expect("entry").0).expect("utf8"))
            .collect()
    };
    let fwd = keys(
        e.scan(
            "t",
            Bound::Included(b"k005"),
            Bound::Excluded(b"k012"),
            Direction::Forward,
        )
        .expect("scan"),
    );
    assert_eq!(fwd, ["k005", "k006", "k007", "k008", "k009", "k011"]);
    let rev = keys(
        e.scan(
            "t",
            Bound::Excluded(b"k005"),
            Bound::Included(b"k012"),
            Direction::Reverse,
        )
        .expect("scan"),
    );
    assert_eq!(rev, ["k012", "k011", "k009", "k008", "k007", "k006"]);
    assert_eq!(scan_all(&e, "t", Direction::Reverse).len(), 299);
}

#[test]
fn engine_merge_policy_applies_across_memtable_sstables_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EngineOptions {
        merge_resolver: Arc::new(|_, _| Arc::new(CountingUnion::default()) as Arc<dyn MergePolicy>),
        ..small_opts()
    };
    {
        let e = open_with(dir.path(), opts.clone());
        let topts = TableOptions {
            merge: Arc::new(CountingUnion::default()),
            ..TableOptions::default()
        };
        e.create_table("t", topts).expect("create");
        e.put("t", b"k", b"a").expect("put");
        e.flush(None).expect("flush");
        e.put("t", b"k", b"b").expect("put");
        e.flush(None).expect("flush");
        e.put("t", b"k", b"c").expect("put");
        assert_eq!(e.get("t", b"k").expect("get"), Some(b"abc".to_vec()));
        e.compact("t").expect("compact");
        assert_eq!(e.get("t", b"k").expect("get"), Some(b"abc".to_vec()));
        assert_eq!(
            scan_all(&e, "t", Direction::Forward),
            vec![(b"k".to_vec(), b"abc".to_vec())]
        );
    }
    let e = open_with(dir.path(), opts);
    assert_eq!(e.get("t", b"k").expect("get"), Some(b"abc".to_vec()));
}

/// Set union of bytes, counting its merges: `merge(x, y) == y` whenever `y ⊇ x`.
#[derive(Default)]
struct CountingUnion(std::sync::atomic::AtomicUsize);

impl MergePolicy for CountingUnion {
    fn merge(&self, _key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (older, newer) {
            (EntryRef::Value(a), EntryRef::Value(b)) => {
                let mut v: Vec<u8> = a.iter().chain(b).copied().collect();
                v.sort_unstable();
                v.dedup();
                Entry::Value(v)
            }
            (EntryRef::Tombstone, n) => n.to_owned(),
            (o, EntryRef::Tombstone) => o.to_owned(),
        }
    }
}

#[test]
fn engine_superseding_put_skips_the_memtable_merge_and_reads_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Arc::new(CountingUnion::default());
    let e = open_with(dir.path(), small_opts());
    let topts = TableOptions {
        merge: policy.clone(),
        ..TableOptions::default()
    };
    e.create_table("t", topts).expect("create");
    e.put("t", b"k", b"a").expect("put");
    e.put("t", b"m", b"x").expect("put");
    e.flush(None).expect("flush");
    e.put("t", b"k", b"b").expect("put"); // memtable holds "b", the sstable "a"
    let before = policy.0.load(std::sync::atomic::Ordering::SeqCst);
    let mut b = WriteBatch::new();
    b.put_superseding("t", b"k", b"ab");
    e.write(&b).expect("write");
    assert_eq!(
        policy.0.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "no merge on write"
    );
    assert_eq!(e.get("t", b"k").expect("get"), Some(b"ab".to_vec()));
    e.flush(None).expect("flush");
    e.compact("t").expect("compact");
    assert_eq!(e.get("t", b"k").expect("get"), Some(b"ab".to_vec()));
}

/// Keys `k000`..`k199` of table `t`, each written three times (values `[0; 20]`, `[1; 20]`,
/// `[2; 20]`) with a flush after each round: three versions in three SSTables.
fn three_versions_in_three_sstables(e: &Engine) {
    for round in 0..3u8 {
        for i in 0..200u32 {
            e.put("t", format!("k{i:03}").as_bytes(), &[round; 20])
                .expect("put");
        }
        e.flush(None).expect("flush");
    }
}

#[test]
fn engine_major_compaction_drops_tombstones_and_old_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), small_opts());
    e.create_table("t", TableOptions::default())
        .expect("create");
    three_versions_in_three_sstables(&e);
    for i in 0..100u32 {
        e.delete("t", format!("k{i:03}").as_bytes())
            .expect("delete");
    }
    e.flush(None).expect("flush");
    e.compact("t").expect("compact");
    let s = e.stats("t").expect("stats");
    assert_eq!(s.sstables, 1, "{s:?}");
    assert_eq!(s.sstable_entries, 100, "{s:?}");
    assert_eq!(s.sstable_tombstones, 0, "{s:?}");
    assert_eq!(e.get("t", b"k150").expect("get"), Some(vec![2u8; 20]));
    assert_eq!(e.get("t", b"k050").expect("get"), None);
}

#[test]
fn engine_size_samples_place_a_tables_bytes_by_key_from_sstables_and_memtable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A memtable large enough to keep the last 50 entries.
    let e = open_with(dir.path(), EngineOptions::default());
    e.create_table("t", TableOptions::default())
        .expect("create");
    // 1,000 keys of 1 KiB values under "a", 100 under "b": flushed, then 50 more under
    // "c" still in the memtable.
    for i in 0..1000u32 {
        e.put("t", format!("a{i:04}").as_bytes(), &[1; 1024])
            .expect("put");
    }
    for i in 0..100u32 {
        e.put("t", format!("b{i:04}").as_bytes(), &[2; 1024])
            .expect("put");
    }
    e.flush(None).expect("flush");
    for i in 0..50u32 {
        e.put("t", format!("c{i:04}").as_bytes(), &[3; 1024])
            .expect("put");
    }
    let mut by_prefix = [0u64; 3];
    e.size_samples("t", &mut |key: &[u8], bytes| {
        let i = usize::from(key[0] - b'a').min(2);
        by_prefix[i] += bytes;
    })
    .expect("samples");
    let [a, b, c] = by_prefix;
    // Blocks hold whole entries, so each prefix gets its entries' bytes give or take a
    // block at the boundary (blocks are a few KiB here); memtable entries count exactly.
    assert!((1000 * 1024..=1100 * 1029).contains(&a), "{by_prefix:?}");
    assert!((90 * 1024..=120 * 1029).contains(&b), "{by_prefix:?}");
    assert_eq!(c, 50 * (5 + 1024), "{by_prefix:?}");
    assert!(matches!(
        e.size_samples("nope", &mut |_: &[u8], _| {}),
        Err(Error::UnknownTable { .. })
    ));
}

#[test]
fn engine_compact_dropping_removes_every_version_of_the_selected_keys_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), small_opts());
        e.create_table("t", TableOptions::default())
            .expect("create");
        // Three versions of every key in three SSTables, tombstones for some, and the
        // newest version of a few keys still in the memtable.
        three_versions_in_three_sstables(&e);
        for i in (0..200u32).step_by(10) {
            e.delete("t", format!("k{i:03}").as_bytes())
                .expect("delete");
        }
        e.flush(None).expect("flush");
        for i in 0..5u32 {
            e.put("t", format!("k{i:03}").as_bytes(), &[9; 20])
                .expect("put");
        }
        // Drop the keys below k100: 100 keys, each stored as 3 versions, 10 tombstones
        // and 5 memtable versions; merged, one entry per key. (A background compaction
        // may already have purged some of the 10 deleted ones at the bottom.)
        let dropped = e
            .compact_dropping("t", &|key: &[u8]| key < b"k100".as_slice())
            .expect("compact dropping");
        assert!((90..=100).contains(&dropped), "{dropped}");
        let s = e.stats("t").expect("stats");
        assert_eq!(s.sstables, 1, "{s:?}");
        // 100 keys above, 10 of them deleted (the tombstones dropped at the bottom).
        assert_eq!(s.sstable_entries, 90, "{s:?}");
        assert_eq!(s.memtable_entries, 0, "{s:?}");
        assert_eq!(e.get("t", b"k001").expect("get"), None);
        assert_eq!(e.get("t", b"k099").expect("get"), None);
        assert_eq!(e.get("t", b"k151").expect("get"), Some(vec![2u8; 20]));
        assert_eq!(e.get("t", b"k110").expect("get"), None);
        // Written again after: only the new write.
        e.put("t", b"k042", b"again").expect("put");
        e.close().expect("close");
    }
    let e = open_with(dir.path(), small_opts());
    let keys: Vec<Vec<u8>> = scan_all(&e, "t", Direction::Forward)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 91);
    assert_eq!(keys[0], b"k042".to_vec());
    assert_eq!(e.get("t", b"k042").expect("get"), Some(b"again".to_vec()));
    assert_eq!(e.get("t", b"k050").expect("get"), None);
    // A table with nothing to drop and no SSTable: nothing happens.
    e.create_table("empty", TableOptions::default())
        .expect("create");
    assert_eq!(
        e.compact_dropping("empty", &|_: &[u8]| true).expect("noop"),
        0
    );
    assert!(matches!(
        e.compact_dropping("nope", &|_: &[u8]| true),
        Err(Error::UnknownTable { .. })
    ));
}

#[test]
fn engine_leveled_compaction_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), small_opts());
    let topts = TableOptions {
        compaction: sibyl_storage::compaction::CompactionStrategy::Leveled {
            l0_trigger: 2,
            target_file_size: 16 << 10,
            level_base_bytes: 64 << 10,
            level_multiplier: 4,
        },
        ..TableOptions::default()
    };
    e.create_table("t", topts).expect("create");
    for round in 0..4u32 {
        for i in 0..1500u32 {
            let k = (i * 7919 + round) % 1500;
            e.put(
                "t",
                format!("k{k:05}").as_bytes(),
                format!("{round}").as_bytes(),
            )
            .expect("put");
        }
        e.flush(None).expect("flush");
    }
    e.compact("t").expect("compact");
    let all = scan_all(&e, "t", Direction::Forward);
    assert_eq!(all.len(), 1500);
    let s = e.stats("t").expect("stats");
    assert!(s.compactions >= 1, "{s:?}");
    assert!(
        s.sstables_per_level.first().copied().unwrap_or(0) == 0,
        "{s:?}"
    );
}

#[test]
fn engine_drop_table_removes_it_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), small_opts());
        e.create_table("t", TableOptions::default())
            .expect("create");
        e.create_table("u", TableOptions::default())
            .expect("create");
        e.put("t", b"k", b"v").expect("put");
        e.put("u", b"k", b"v").expect("put");
        e.flush(None).expect("flush");
        e.put("t", b"k2", b"v").expect("put");
        e.drop_table("t").expect("drop");
        assert!(matches!(e.get("t", b"k"), Err(Error::UnknownTable { .. })));
    }
    let e = open_with(dir.path(), small_opts());
    assert_eq!(e.tables(), vec!["u".to_string()]);
    assert_eq!(e.get("u", b"k").expect("get"), Some(b"v".to_vec()));
    e.create_table("t", TableOptions::default())
        .expect("recreate");
    assert_eq!(e.get("t", b"k").expect("get"), None);
    assert_eq!(e.get("t", b"k2").expect("get"), None);
}

#[test]
fn engine_second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _e = open_with(dir.path(), EngineOptions::default());
    assert!(matches!(
        Engine::open(dir.path(), EngineOptions::default()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn engine_fsync_failure_poisons_batch_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let e = open_with(
        dir.path(),
        EngineOptions {
            sync: SyncMode::Batch,
            faults: faults.clone(),
            ..EngineOptions::default()
        },
    );
    e.create_table("t", TableOptions::default())
        .expect("create");
    e.put("t", b"ok", b"1").expect("put before fault");
    faults.set_fail_fsync(true);
    assert!(
        e.put("t", b"k", b"v").is_err(),
        "write must not be acknowledged"
    );
    faults.set_fail_fsync(false);
    assert!(e.is_poisoned());
    assert!(matches!(
        e.put("t", b"k2", b"v"),
        Err(Error::Poisoned { .. })
    ));
    // Reads still work.
    assert_eq!(e.get("t", b"ok").expect("get"), Some(b"1".to_vec()));
}

#[test]
fn engine_oversized_batch_is_refused_without_poisoning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(
        dir.path(),
        EngineOptions {
            max_batch_bytes: 4 << 10,
            ..EngineOptions::default()
        },
    );
    e.create_table("t", TableOptions::default())
        .expect("create");
    let mut b = WriteBatch::new();
    for i in 0..100u32 {
        b.put("t", &i.to_be_bytes(), &[0u8; 100]);
    }
    assert!(matches!(e.write(&b), Err(Error::InvalidArgument(_))));
    assert!(!e.is_poisoned());
    assert_eq!(
        e.get("t", &0u32.to_be_bytes()).expect("get"),
        None,
        "nothing applied"
    );
    e.put("t", b"k", b"v").expect("later writes still work");
}

#[test]
fn engine_write_failure_poisons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let e = open_with(
        dir.path(),
        EngineOptions {
            faults: faults.clone(),
            ..EngineOptions::default()
        },
    );
    e.create_table("t", TableOptions::default())
        .expect("create");
    faults.set_fail_write(true);
    assert!(e.put("t", b"k", b"v").is_err());
    faults.set_fail_write(false);
    assert!(matches!(
        e.put("t", b"k", b"v"),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn engine_flush_fsync_failure_poisons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let e = open_with(
        dir.path(),
        EngineOptions {
            faults: faults.clone(),
            ..small_opts()
        },
    );
    e.create_table("t", TableOptions::default())
        .expect("create");
    e.put("t", b"k", b"v").expect("put");
    faults.set_fail_fsync(true);
    assert!(e.flush(None).is_err());
    faults.set_fail_fsync(false);
    assert!(e.is_poisoned());
}

#[test]
fn engine_torn_commit_log_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), EngineOptions::default());
        e.create_table("t", TableOptions::default())
            .expect("create");
        for i in 0..10u32 {
            e.put("t", format!("k{i}").as_bytes(), b"value")
                .expect("put");
        }
    }
    let seg = newest_segment(dir.path());
    let len = std::fs::metadata(&seg).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open seg");
    f.set_len(len - 3).expect("truncate");
    drop(f);
    let e = open_with(dir.path(), EngineOptions::default());
    for i in 0..9u32 {
        assert_eq!(
            e.get("t", format!("k{i}").as_bytes()).expect("get"),
            Some(b"value".to_vec())
        );
    }
    assert_eq!(e.get("t", b"k9").expect("get"), None);
}

#[test]
fn engine_mid_log_corruption_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_50_then_flip_a_bit_mid_log(dir.path());
    match Engine::open(dir.path(), EngineOptions::default()) {
        Err(Error::ChecksumMismatch { .. }) | Err(Error::Corruption { .. }) => {}
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn engine_salvage_cuts_the_log_at_mid_log_corruption_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_50_then_flip_a_bit_mid_log(dir.path());
    let opts = EngineOptions {
        salvage_corrupt_log: true,
        ..EngineOptions::default()
    };
    let e = open_with(dir.path(), opts.clone());
    assert_eq!(e.recovery().salvaged.len(), 1, "{:?}", e.recovery());
    assert!(e.recovery().data_may_be_lost(SyncMode::Batch));
    // Everything before the corrupt record survives, nothing after it.
    assert_eq!(e.get("t", b"k00").expect("get"), Some(vec![1u8; 100]));
    let kept = scan_all(&e, "t", Direction::Forward).len();
    assert!(kept > 0 && kept < 50, "kept {kept}");
    e.put("t", b"after", b"v")
        .expect("writes work after salvage");
    drop(e);
    // The next open finds a clean log.
    let e = open_with(dir.path(), EngineOptions::default());
    assert!(e.recovery().salvaged.is_empty());
    assert_eq!(e.get("t", b"after").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn engine_major_compaction_purges_tombstones_of_a_lone_sstable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), EngineOptions::default());
    e.create_table("t", TableOptions::default())
        .expect("create");
    e.put("t", b"a", b"1").expect("put");
    e.delete("t", b"b").expect("delete");
    e.flush(None).expect("flush");
    assert_eq!(e.stats("t").expect("stats").sstable_tombstones, 1);
    e.compact("t").expect("compact");
    let s = e.stats("t").expect("stats");
    assert_eq!(
        (s.sstables, s.sstable_entries, s.sstable_tombstones),
        (1, 1, 0),
        "{s:?}"
    );
}

#[test]
fn engine_recovery_reports_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), EngineOptions::default());
        e.create_table("t", TableOptions::default())
            .expect("create");
        e.put("t", b"k", b"v").expect("put");
        e.put("t", b"k2", b"v").expect("put");
    }
    let seg = newest_segment(dir.path());
    let len = std::fs::metadata(&seg).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    let e = open_with(dir.path(), EngineOptions::default());
    assert!(e.recovery().truncated_tail.is_some());
    assert!(e.recovery().data_may_be_lost(SyncMode::Periodic {
        interval: std::time::Duration::from_millis(10)
    }));
    assert!(!e.recovery().data_may_be_lost(SyncMode::Batch));
}

#[test]
fn engine_bit_flipped_sstable_block_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), EngineOptions::default());
        e.create_table("t", TableOptions::default())
            .expect("create");
        for i in 0..100u32 {
            e.put("t", format!("k{i:03}").as_bytes(), &[3u8; 30])
                .expect("put");
        }
        e.flush(None).expect("flush");
    }
    let sst = only_sstable(dir.path());
    let mut bytes = std::fs::read(&sst).expect("read");
    bytes[20] ^= 0x01; // inside the first data block
    std::fs::write(&sst, &bytes).expect("write");
    let e = open_with(dir.path(), small_opts());
    let err = e
        .get("t", b"k000")
        .expect_err("corrupt block must not read");
    match err {
        Error::ChecksumMismatch { path, .. } | Error::Corruption { path, .. } => {
            assert_eq!(path, sst)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn engine_truncated_sstable_fails_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_key_flushed(dir.path());
    let sst = only_sstable(dir.path());
    let len = std::fs::metadata(&sst).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sst)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    match Engine::open(dir.path(), small_opts()) {
        Err(Error::Corruption { .. }) | Err(Error::ChecksumMismatch { .. }) => {}
        other => panic!("expected a typed error, got {other:?}"),
    }
}

#[test]
fn engine_sstable_missing_from_manifest_is_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_key_flushed(dir.path());
    // An orphan: as left by a flush that crashed before its manifest update.
    let orphan = dir.path().join("sstables").join("000000999999.sst");
    std::fs::copy(only_sstable(dir.path()), &orphan).expect("copy");
    let e = open_with(dir.path(), small_opts());
    assert!(!orphan.exists(), "orphan sstable should be deleted");
    assert_eq!(e.get("t", b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn engine_sstable_listed_but_missing_fails_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_key_flushed(dir.path());
    std::fs::remove_file(only_sstable(dir.path())).expect("rm");
    assert!(matches!(
        Engine::open(dir.path(), small_opts()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn engine_concurrent_writers_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Arc::new(open_with(
        dir.path(),
        EngineOptions {
            sync: SyncMode::Batch,
            ..small_opts()
        },
    ));
    e.create_table("t", TableOptions::default())
        .expect("create");
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let e = e.clone();
            s.spawn(move || {
                for i in 0..250u32 {
                    e.put("t", format!("t{t}-{i:04}").as_bytes(), b"v")
                        .expect("put");
                }
            });
        }
    });
    assert_eq!(scan_all(&e, "t", Direction::Forward).len(), 1000);
}

/// Writes `k = v` to a new table "t", flushes it to one SSTable and closes.
fn one_key_flushed(dir: &std::path::Path) {
    let e = open_with(dir, small_opts());
    e.create_table("t", TableOptions::default())
        .expect("create");
    e.put("t", b"k", b"v").expect("put");
    e.flush(None).expect("flush");
}

/// Writes keys k00..k49 (100-byte values) to table "t", closes, and flips one bit in the
/// middle of the commit log.
fn write_50_then_flip_a_bit_mid_log(dir: &std::path::Path) {
    {
        let e = open_with(dir, EngineOptions::default());
        e.create_table("t", TableOptions::default())
            .expect("create");
        for i in 0..50u32 {
            e.put("t", format!("k{i:02}").as_bytes(), &[1u8; 100])
                .expect("put");
        }
    }
    let seg = newest_segment(dir);
    let mut bytes = std::fs::read(&seg).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
}

fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    segs.sort();
    // The newest segment may be the empty one opened after replay: take the last non-empty.
    segs.into_iter()
        .rev()
        .find(|p| std::fs::metadata(p).map(|m| m.len() > 64).unwrap_or(false))
        .expect("a segment with records")
}

fn only_sstable(dir: &std::path::Path) -> std::path::PathBuf {
    let ssts: Vec<_> = std::fs::read_dir(dir.join("sstables"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(ssts.len(), 1, "{ssts:?}");
    ssts.into_iter().next().expect("one sstable")
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Regression (review): records of a dropped table are deleted from the log without the manifest ever
/// recording their seqnos; a table created meanwhile has flushed_seqno above what the
/// engine recovers, so its writes after a restart get seqnos the next replay skips.
#[test]
fn engine_seqno_never_regresses_below_a_flushed_seqno_after_a_drop() {
    let dir = tempfile::tempdir().expect("ok");
    {
        let e = Engine::open(dir.path(), small_opts()).expect("ok");
        e.create_table("b", TableOptions::default()).expect("ok");
        for i in 0..20u32 {
            e.put("b", &i.to_be_bytes(), b"x").expect("ok");
        }
        e.close().expect("ok");
    }
    {
        let e = Engine::open(dir.path(), small_opts()).expect("ok");
        e.drop_table("b").expect("ok");
        e.create_table("c", TableOptions::default()).expect("ok"); // flushed_seqno(c) = 20
        e.flush(None).expect("ok"); // deletes the closed segment holding seqnos 1..=20
        e.close().expect("ok");
    }
    {
        let e = Engine::open(dir.path(), small_opts()).expect("ok");
        e.put("c", b"k", b"acked").expect("ok"); // gets seqno 1 (last_seqno regressed to 0)
        assert_eq!(e.get("c", b"k").expect("ok"), Some(b"acked".to_vec()));
        e.close().expect("ok");
    }
    let e = Engine::open(dir.path(), small_opts()).expect("ok");
    assert_eq!(
        e.get("c", b"k").expect("ok"),
        Some(b"acked".to_vec()),
        "acknowledged write lost on replay"
    );
}

/// Regression (review): periodic sync + power loss. The manifest (fsynced) records
/// flushed_seqno(c) = 20 while the log records 11..=20 were not yet on disk.
#[test]
fn engine_seqno_never_regresses_after_a_lost_log_tail() {
    let dir = tempfile::tempdir().expect("ok");
    let mut cut_at = 0u64;
    {
        let e = Engine::open(dir.path(), small_opts()).expect("ok");
        e.create_table("a", TableOptions::default()).expect("ok");
        for i in 0..20u32 {
            e.put("a", &i.to_be_bytes(), b"x").expect("ok");
            if i == 9 {
                let segs = segment_files(dir.path());
                cut_at = std::fs::metadata(segs.last().expect("ok"))
                    .expect("ok")
                    .len();
            }
        }
        e.create_table("c", TableOptions::default()).expect("ok"); // flushed_seqno(c) = 20
        e.close().expect("ok");
    }
    // Emulate the power loss: the log's last 10 records never reached the disk.
    let seg = segment_files(dir.path()).last().expect("ok").clone();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("ok")
        .set_len(cut_at)
        .expect("ok");
    {
        let e = Engine::open(dir.path(), small_opts()).expect("ok");
        e.put("c", b"k", b"acked").expect("ok"); // seqno 11 <= flushed_seqno(c)
        e.close().expect("ok");
    }
    let e = Engine::open(dir.path(), small_opts()).expect("ok");
    assert_eq!(
        e.get("c", b"k").expect("ok"),
        Some(b"acked".to_vec()),
        "acknowledged (and fsynced) write lost on replay"
    );
}

/// Newest wins, with a compaction filter that drops every key starting with the last key
/// whose value is `"RANGE-DELETE"` (a row-tombstone-like range delete).
struct PrefixDeletes;

struct PrefixDeleteFilter {
    current: Option<Vec<u8>>,
    seen: Vec<Vec<u8>>,
    log: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl sibyl_storage::CompactionFilter for PrefixDeleteFilter {
    fn filter(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        self.seen.push(key.to_vec());
        if entry == Entry::Value(b"RANGE-DELETE".to_vec()) {
            self.current = Some(key.to_vec());
            return Some(entry);
        }
        if self.current.as_ref().is_some_and(|p| key.starts_with(p)) {
            return None;
        }
        Some(entry)
    }
}

impl Drop for PrefixDeleteFilter {
    fn drop(&mut self) {
        self.log
            .lock()
            .expect("log")
            .extend(std::mem::take(&mut self.seen));
    }
}

static FILTER_LOG: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<Vec<u8>>>>> =
    std::sync::OnceLock::new();

impl MergePolicy for PrefixDeletes {
    fn merge(&self, _key: &[u8], _older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        newer.to_owned()
    }

    fn compaction_filter(&self) -> Option<Box<dyn sibyl_storage::CompactionFilter>> {
        Some(Box::new(PrefixDeleteFilter {
            current: None,
            seen: Vec::new(),
            log: FILTER_LOG.get_or_init(Default::default).clone(),
        }))
    }
}

#[test]
fn engine_compaction_filter_sees_keys_in_order_and_drops_what_it_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(
        dir.path(),
        EngineOptions {
            auto_compaction: false,
            ..small_opts()
        },
    );
    e.create_table(
        "t",
        TableOptions {
            merge: Arc::new(PrefixDeletes),
            ..TableOptions::default()
        },
    )
    .expect("create");
    for k in [&b"a1"[..], b"b1", b"b2", b"c1"] {
        e.put("t", k, b"v").expect("put");
    }
    e.flush(None).expect("flush");
    e.put("t", b"b", b"RANGE-DELETE").expect("put");
    e.flush(None).expect("flush");
    // Before compaction the filter has not run: everything reads.
    assert_eq!(scan_all(&e, "t", Direction::Forward).len(), 5);
    e.compact("t").expect("compact");
    let keys: Vec<Vec<u8>> = scan_all(&e, "t", Direction::Forward)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, [b"a1".to_vec(), b"b".to_vec(), b"c1".to_vec()]);
    let log = FILTER_LOG
        .get_or_init(Default::default)
        .lock()
        .expect("log")
        .clone();
    let mut sorted = log.clone();
    sorted.sort();
    assert_eq!(log, sorted, "keys reach the filter in ascending order");
    assert_eq!(log.len(), 5);
}

#[test]
fn engine_stats_count_bloom_outcomes_of_point_lookups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), EngineOptions::default());
    e.create_table("t", TableOptions::default())
        .expect("create");
    for i in (0..2000u32).step_by(2) {
        e.put("t", format!("k{i:05}").as_bytes(), b"v")
            .expect("put");
    }
    e.flush(None).expect("flush");
    // 100 keys held, 100 absent ones inside the file's key range.
    for i in 0..200u32 {
        let got = e.get("t", format!("k{i:05}").as_bytes()).expect("get");
        assert_eq!(got.is_some(), i % 2 == 0);
    }
    let s = e.stats("t").expect("stats");
    assert_eq!(s.bloom_true_positives, 100, "{s:?}");
    assert_eq!(s.bloom_negatives + s.bloom_false_positives, 100, "{s:?}");
    // 10 bits per key by default: about 1% false positives.
    assert!(s.bloom_false_positives < 10, "{s:?}");
    e.close().expect("close");
}
#[path = "engine/disk_full.rs"]
mod disk_full;
#[path = "engine/ingest.rs"]
mod ingest;
#[path = "support/tmpfs.rs"]
mod tmpfs;
