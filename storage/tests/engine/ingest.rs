//! Ingestion: an SSTable built from sorted entries outside the write path joins a table
//! whole; its versions merge with the table's others by the table's policy, it survives
//! a reopen, and a failed or abandoned one leaves nothing behind.

use std::sync::Arc;

use super::{open_with, scan_all, small_opts, CountingUnion};
use sibyl_storage::{Direction, Engine, EngineOptions, Error, MergePolicy, TableOptions};

fn union_opts() -> EngineOptions {
    EngineOptions {
        merge_resolver: Arc::new(|_, _| Arc::new(CountingUnion::default()) as Arc<dyn MergePolicy>),
        ..small_opts()
    }
}

fn union_table(e: &Engine) {
    e.create_table(
        "t",
        TableOptions {
            merge: Arc::new(CountingUnion::default()),
            ..TableOptions::default()
        },
    )
    .expect("create");
}

fn sst_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("sstables"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn engine_ingested_entries_merge_with_the_write_path_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open_with(dir.path(), union_opts());
        union_table(&e);
        // A version in an SSTable, one in the memtable, then the ingested ones.
        e.put("t", b"k1", b"a").expect("put");
        e.flush(None).expect("flush");
        e.put("t", b"k2", b"b").expect("put");
        let mut ing = e.ingest("t").expect("ingest");
        for (k, v) in [(&b"k1"[..], &b"x"[..]), (b"k2", b"y"), (b"k3", b"z")] {
            ing.add(k, v).expect("add");
        }
        assert_eq!(ing.entries(), 3);
        // Not visible before it is finished.
        assert_eq!(e.get("t", b"k3").expect("get"), None);
        let report = ing.finish().expect("finish");
        assert_eq!(
            (report.entries, &report.smallest[..], &report.largest[..]),
            (3, &b"k1"[..], &b"k3"[..])
        );
        assert!(report.file_size > 0);
        assert_eq!(e.get("t", b"k1").expect("get"), Some(b"ax".to_vec()));
        assert_eq!(e.get("t", b"k2").expect("get"), Some(b"by".to_vec()));
        assert_eq!(e.get("t", b"k3").expect("get"), Some(b"z".to_vec()));
        // A later write merges with the ingested version too.
        e.put("t", b"k3", b"a").expect("put");
        assert_eq!(e.get("t", b"k3").expect("get"), Some(b"az".to_vec()));
    }
    let e = open_with(dir.path(), union_opts());
    let expect = vec![
        (b"k1".to_vec(), b"ax".to_vec()),
        (b"k2".to_vec(), b"by".to_vec()),
        (b"k3".to_vec(), b"az".to_vec()),
    ];
    assert_eq!(scan_all(&e, "t", Direction::Forward), expect);
    e.compact("t").expect("compact");
    assert_eq!(scan_all(&e, "t", Direction::Forward), expect);
}

#[test]
fn engine_ingest_refuses_keys_out_of_order_and_an_unfinished_one_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), union_opts());
    union_table(&e);
    let before = sst_files(dir.path());
    let mut ing = e.ingest("t").expect("ingest");
    ing.add(b"b", b"1").expect("add");
    assert!(matches!(
        ing.add(b"b", b"2"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ing.add(b"a", b"2"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(sst_files(dir.path()), before + 1);
    drop(ing);
    assert_eq!(sst_files(dir.path()), before);
    assert_eq!(e.get("t", b"b").expect("get"), None);
    // An empty ingestion adds nothing.
    let report = e.ingest("t").expect("ingest").finish().expect("finish");
    assert_eq!(report.entries, 0);
    assert_eq!(sst_files(dir.path()), before);
    assert_eq!(e.stats("t").expect("stats").sstables, 0);
}

#[test]
fn engine_ingest_refuses_newest_wins_tables_unknown_tables_and_dropped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), union_opts());
    e.create_table("plain", TableOptions::default())
        .expect("create");
    assert!(matches!(e.ingest("plain"), Err(Error::InvalidArgument(_))));
    assert!(matches!(e.ingest("nope"), Err(Error::UnknownTable { .. })));
    union_table(&e);
    let mut ing = e.ingest("t").expect("ingest");
    ing.add(b"k", b"v").expect("add");
    e.drop_table("t").expect("drop");
    assert!(matches!(ing.finish(), Err(Error::UnknownTable { .. })));
    assert_eq!(
        sst_files(dir.path()),
        0,
        "the dropped table's file is removed"
    );
}

#[test]
fn engine_compaction_waits_while_held_and_runs_once_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_with(dir.path(), union_opts());
    union_table(&e);
    let hold = e.hold_compactions();
    let nested = e.hold_compactions();
    for i in 0..8u8 {
        let mut ing = e.ingest("t").expect("ingest");
        ing.add(&[b'k', i], b"v").expect("add");
        ing.finish().expect("finish");
        e.put("t", &[b'm', i], b"v").expect("put");
        e.flush(None).expect("flush");
    }
    assert_eq!(e.stats("t").expect("stats").sstables, 16);
    drop(nested);
    // Still held by the first guard: give the compaction thread a chance to run.
    e.put("t", b"z", b"v").expect("put");
    e.flush(None).expect("flush");
    assert_eq!(e.stats("t").expect("stats").sstables, 17);
    // A manual compaction runs under a hold.
    e.compact("t").expect("compact");
    assert_eq!(e.stats("t").expect("stats").sstables, 1);
    for i in 0..8u8 {
        let mut ing = e.ingest("t").expect("ingest");
        ing.add(&[b'n', i], b"v").expect("add");
        ing.finish().expect("finish");
    }
    assert_eq!(e.stats("t").expect("stats").sstables, 9);
    drop(hold);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e.stats("t").expect("stats").sstables > 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction after the hold went"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(scan_all(&e, "t", Direction::Forward).len(), 8 + 8 + 8 + 1);
}
