//! Whole-row deletes through the service: one row tombstone that covers columns the
//! deleting node never saw (lww: by timestamp; causal: by what the delete saw), honoured
//! by named-column reads, slices and compaction; and cells from another replica applied
//! after it.

use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{
    Cell, ColumnWrite, ConflictMode, DeleteTarget, Request, Response, RowDelete, RowInsert,
    Selector,
};

use super::keys::RowPrefix;
use super::tests::{options, table_options};
use super::Service;
use crate::replica::RawCell;
use crate::ring::Partitioner;
use crate::versioning::{decode_causal_cell, ManualClock};

struct Node {
    _dir: tempfile::TempDir,
    svc: Service,
}

fn node(mode: ConflictMode) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(options(
        dir.path(),
        Arc::new(ManualClock::at_secs(1_700_000_000)),
    ))
    .unwrap();
    let r = svc.handle(Request::CreateTable {
        name: "t".into(),
        options: table_options(mode),
        if_not_exists: false,
    });
    assert!(matches!(r, Response::SchemaChanged { .. }), "{r:?}");
    Node { _dir: dir, svc }
}

fn insert(svc: &Service, column: &str, value: &str, ts: Option<i64>, context: Bytes) {
    let r = svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            ttl_secs: None,
            timestamp_micros: ts,
            columns: vec![ColumnWrite {
                name: Bytes::copy_from_slice(column.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                context,
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

fn delete_row(svc: &Service, ts: Option<i64>) {
    let r = svc.handle(Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            timestamp_micros: ts,
            target: DeleteTarget::Row { contexts: vec![] },
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

fn get(svc: &Service, selector: Selector) -> Vec<Cell> {
    match svc.handle(Request::Get {
        table: "t".into(),
        key: Bytes::from_static(b"k"),
        selector,
        consistency: None,
    }) {
        Response::Row { cells, .. } => cells,
        other => panic!("unexpected {other:?}"),
    }
}

/// The visible (column, values) of the row, read whole.
fn row(svc: &Service) -> Vec<(String, Vec<String>)> {
    get(svc, Selector::All)
        .iter()
        .map(|c| {
            let mut v: Vec<String> = c
                .values()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            v.sort();
            (String::from_utf8_lossy(&c.name).into_owned(), v)
        })
        .collect()
}

fn key_of(column: &str) -> Vec<u8> {
    RowPrefix::new(Partitioner::Murmur3, b"k").cell_key(column.as_bytes())
}

/// The stored cell at `column` as a coordinator would ship it.
fn raw(svc: &Service, column: &str) -> RawCell {
    let key = key_of(column);
    let value = svc.replica.read_raw("t", &key).unwrap().expect("stored");
    RawCell {
        table: "t".into(),
        key,
        value,
    }
}

fn apply(svc: &Service, cells: &[RawCell]) {
    let mode = svc.schema("t").unwrap().options.conflict_mode;
    svc.replica.apply(cells, |_| Some(mode)).unwrap();
}

fn flush_and_compact(svc: &Service) {
    svc.engine.flush(None).unwrap();
    svc.engine.compact("t").unwrap();
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn service_lww_row_delete_covers_columns_written_later_with_older_timestamps() {
    let n = node(ConflictMode::Lww);
    insert(&n.svc, "a", "1", Some(10), Bytes::new());
    delete_row(&n.svc, Some(20));
    // Never seen by the delete, but older: deleted (Cassandra's partition deletion).
    insert(&n.svc, "b", "2", Some(15), Bytes::new());
    insert(&n.svc, "c", "3", Some(20), Bytes::new());
    insert(&n.svc, "d", "4", Some(21), Bytes::new());
    assert_eq!(row(&n.svc), [("d".to_owned(), s(&["4"]))]);
    let named = Selector::Columns(vec![Bytes::from_static(b"b"), Bytes::from_static(b"d")]);
    assert_eq!(get(&n.svc, named.clone()).len(), 1);
    flush_and_compact(&n.svc);
    assert_eq!(row(&n.svc), [("d".to_owned(), s(&["4"]))]);
    assert_eq!(get(&n.svc, named).len(), 1);
    // Compaction dropped the covered cells; the tombstone stays.
    for c in ["a", "b", "c"] {
        assert_eq!(
            n.svc.replica.read_raw("t", &key_of(c)).unwrap(),
            None,
            "{c}"
        );
    }
    assert!(n
        .svc
        .replica
        .row_tombstone("t", RowPrefix::new(Partitioner::Murmur3, b"k").as_bytes())
        .unwrap()
        .is_some());
}

#[test]
fn service_lww_row_delete_holds_on_a_replica_that_gets_an_older_cell_late() {
    let a = node(ConflictMode::Lww);
    let b = node(ConflictMode::Lww);
    insert(&b.svc, "z", "late", Some(5), Bytes::new());
    delete_row(&a.svc, Some(9));
    // The tombstone reaches b, the cell reaches a: both hold the row deleted.
    let tomb = RawCell {
        table: "t".into(),
        key: RowPrefix::new(Partitioner::Murmur3, b"k")
            .as_bytes()
            .to_vec(),
        value: a
            .svc
            .replica
            .read_raw("t", RowPrefix::new(Partitioner::Murmur3, b"k").as_bytes())
            .unwrap()
            .unwrap(),
    };
    apply(&a.svc, &[raw(&b.svc, "z")]);
    apply(&b.svc, &[tomb]);
    assert!(row(&a.svc).is_empty());
    assert!(row(&b.svc).is_empty());
}

#[test]
fn service_causal_row_delete_covers_what_it_saw_and_keeps_what_it_did_not() {
    let a = node(ConflictMode::Causal);
    let b = node(ConflictMode::Causal);
    insert(&a.svc, "x", "seen-local", None, Bytes::new());
    // b writes y, and a learns it before the delete: seen, so deleted.
    insert(&b.svc, "y", "seen-remote", None, Bytes::new());
    apply(&a.svc, &[raw(&b.svc, "y")]);
    delete_row(&a.svc, None);
    assert!(row(&a.svc).is_empty());
    // b writes z concurrently (a never saw it) and its second version of y: both
    // survive the delete when they arrive.
    insert(&b.svc, "z", "concurrent", None, Bytes::new());
    insert(&b.svc, "y", "concurrent-y", None, Bytes::new());
    apply(&a.svc, &[raw(&b.svc, "z"), raw(&b.svc, "y")]);
    assert_eq!(
        row(&a.svc),
        [
            ("y".to_owned(), s(&["concurrent-y"])),
            ("z".to_owned(), s(&["concurrent"]))
        ]
    );
    // A write at a after the delete, blind, lands above the tombstone and survives.
    insert(&a.svc, "x", "after", None, Bytes::new());
    let before = row(&a.svc);
    assert_eq!(before[0], ("x".to_owned(), s(&["after"])));
    // Compaction drops the covered siblings but changes nothing a read sees.
    flush_and_compact(&a.svc);
    assert_eq!(row(&a.svc), before);
    let y = decode_causal_cell(&raw(&a.svc, "y").value).unwrap();
    assert_eq!(y.sibling_count(), 1, "the covered sibling of y is gone");
}

#[test]
fn service_causal_context_read_after_a_row_delete_lets_another_node_write_above_it() {
    let a = node(ConflictMode::Causal);
    let b = node(ConflictMode::Causal);
    insert(&a.svc, "x", "old", None, Bytes::new());
    insert(&a.svc, "w", "old", None, Bytes::new());
    insert(&a.svc, "w", "older", None, Bytes::new());
    delete_row(&a.svc, None);
    insert(&a.svc, "x", "new", None, Bytes::new());
    // The context of x at a covers the tombstone; b, which has neither the tombstone nor
    // any version, writes w with it: its dot is above the tombstone, so w survives on a.
    let ctx = get(&a.svc, Selector::Columns(vec![Bytes::from_static(b"x")]))[0]
        .context
        .clone();
    insert(&b.svc, "w", "from-b", None, ctx);
    apply(&a.svc, &[raw(&b.svc, "w")]);
    assert_eq!(
        row(&a.svc),
        [
            ("w".to_owned(), s(&["from-b"])),
            ("x".to_owned(), s(&["new"]))
        ]
    );
}

#[test]
fn service_row_delete_is_honoured_by_slices_from_mid_row_and_named_columns() {
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let n = node(mode);
        for c in ["a", "b", "c", "d"] {
            insert(&n.svc, c, "v", Some(1), Bytes::new());
        }
        delete_row(&n.svc, Some(2));
        insert(&n.svc, "c", "again", Some(3), Bytes::new());
        let slice = Selector::Slice {
            from: Some(Bytes::from_static(b"b")),
            to: None,
            limit: 0,
            paging: None,
        };
        for round in 0..2 {
            let cells = get(&n.svc, slice.clone());
            let names: Vec<&[u8]> = cells.iter().map(|c| &c.name[..]).collect();
            assert_eq!(names, [&b"c"[..]], "{mode:?} round {round}");
            let named = Selector::Columns(vec![Bytes::from_static(b"a"), Bytes::from_static(b"c")]);
            assert_eq!(get(&n.svc, named).len(), 1, "{mode:?} round {round}");
            flush_and_compact(&n.svc);
        }
    }
}

#[test]
fn service_corrupt_dot_clock_file_takes_a_new_actor_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(1_700_000_000));
    let before = Service::open(options(dir.path(), clock.clone()))
        .unwrap()
        .actor();
    let again = Service::open(options(dir.path(), clock.clone()))
        .unwrap()
        .actor();
    assert_eq!(again, before, "a valid dot clock file keeps the actor");
    std::fs::write(
        dir.path().join(crate::replica::dot_clock::DOT_CLOCK_FILE),
        b"damaged",
    )
    .unwrap();
    let after = Service::open(options(dir.path(), clock)).unwrap().actor();
    assert_eq!(after.node, before.node);
    assert_eq!(after.epoch, before.epoch + 1);
}

/// Regression: the engine's read hid an undecodable row tombstone, so a whole-row read
/// (which meets the tombstone in its scan) showed the cells it deleted, while a named
/// read refused the row.
#[test]
fn service_whole_row_read_refuses_an_undecodable_row_tombstone() {
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let n = node(mode);
        insert(&n.svc, "a", "deleted", Some(1), Bytes::new());
        delete_row(&n.svc, Some(2));
        // The tombstone's bytes damaged on disk: right format byte, truncated body.
        let row_key = RowPrefix::new(Partitioner::Murmur3, b"k");
        let stored = n
            .svc
            .replica
            .read_raw("t", row_key.as_bytes())
            .unwrap()
            .unwrap();
        let mut batch = sibyl_storage::WriteBatch::new();
        batch.put_superseding("t", row_key.as_bytes(), &stored[..3]);
        n.svc.engine.write(&batch).unwrap();
        for selector in [
            Selector::All,
            Selector::Columns(vec![Bytes::from_static(b"a")]),
        ] {
            let r = n.svc.handle(Request::Get {
                table: "t".into(),
                key: Bytes::from_static(b"k"),
                selector: selector.clone(),
                consistency: None,
            });
            assert!(
                matches!(r, Response::Error(_)),
                "{mode:?} {selector:?}: {r:?}"
            );
        }
    }
}

/// Regression: a bottommost compaction purged a tombstone although the memtable held an
/// older version of its cell (applied late, by read repair or a hint), which then read
/// as live: the deleted value came back on a single node.
#[test]
fn service_compaction_keeps_a_tombstone_that_shadows_an_older_cell_in_the_memtable() {
    let a = node(ConflictMode::Lww);
    let b = node(ConflictMode::Lww);
    insert(&b.svc, "c", "old", Some(5), Bytes::new());
    let r = a.svc.handle(Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            timestamp_micros: Some(10),
            target: DeleteTarget::Columns(vec![sibyl_protocol::CellContext {
                name: Bytes::from_static(b"c"),
                context: Bytes::new(),
            }]),
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
    a.svc.engine.flush(None).unwrap();
    // The older value arrives after the delete was flushed: it waits in the memtable.
    apply(&a.svc, &[raw(&b.svc, "c")]);
    assert!(row(&a.svc).is_empty());
    a.svc.engine.compact("t").unwrap();
    assert!(row(&a.svc).is_empty(), "the deleted value came back");
}

/// The named-column read looks the row tombstone up only once it finds a stored cell:
/// absent names before a deleted one must not skip it.
#[test]
fn service_named_read_applies_the_row_tombstone_after_absent_columns() {
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let n = node(mode);
        insert(&n.svc, "m", "deleted", Some(1), Bytes::new());
        insert(&n.svc, "z", "deleted", Some(1), Bytes::new());
        delete_row(&n.svc, Some(2));
        insert(&n.svc, "z", "kept", Some(3), Bytes::new());
        let named = Selector::Columns(vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"m"),
            Bytes::from_static(b"z"),
        ]);
        let cells = get(&n.svc, named);
        let names: Vec<&[u8]> = cells.iter().map(|c| &c.name[..]).collect();
        assert_eq!(names, [&b"z"[..]], "{mode:?}");
        assert_eq!(cells[0].values().count(), 1, "{mode:?}");
    }
}
