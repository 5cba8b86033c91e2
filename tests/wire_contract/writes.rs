//! Sections 5.3 (contexts, writes and deletes) and 5.4 (timestamps).

use super::*;

#[test]
fn contract_blind_column_delete_removes_every_version_the_node_holds() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "c", "a", Bytes::new(), None);
    f.insert("t", "c", "b", Bytes::new(), None);
    assert_eq!(values(&f.get("t", "c").unwrap()).len(), 2, "two siblings");
    f.delete(
        "t",
        DeleteTarget::Columns(vec![CellContext {
            name: b("c"),
            context: Bytes::new(),
        }]),
        None,
    );
    assert!(f.get("t", "c").is_none(), "a blind delete left a version");
}

#[test]
fn contract_column_delete_with_a_context_keeps_what_it_did_not_see() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "c", "seen", Bytes::new(), None);
    let ctx = f.get("t", "c").unwrap().context;
    f.insert("t", "c", "unseen", Bytes::new(), None);
    f.delete(
        "t",
        DeleteTarget::Columns(vec![CellContext {
            name: b("c"),
            context: ctx,
        }]),
        None,
    );
    let cell = f.get("t", "c").expect("the unseen version survives");
    assert_eq!(values(&cell), vec![b"unseen".to_vec()]);
}

#[test]
fn contract_reads_omit_deleted_cells_in_every_selector() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "a", "live", Bytes::new(), None);
    f.insert("t", "b", "gone", Bytes::new(), None);
    f.delete(
        "t",
        DeleteTarget::Columns(vec![CellContext {
            name: b("b"),
            context: Bytes::new(),
        }]),
        None,
    );
    let names = |cells: Vec<Cell>| cells.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(f.get_with("t", Selector::All).0), vec![b("a")]);
    assert_eq!(
        names(f.get_with("t", Selector::Columns(vec![b("a"), b("b")])).0),
        vec![b("a")]
    );
    let slice = Selector::Slice {
        from: None,
        to: None,
        limit: 0,
        paging: None,
    };
    assert_eq!(names(f.get_with("t", slice).0), vec![b("a")]);
}

#[test]
fn contract_blind_write_over_a_deleted_cell_supersedes_its_tombstone() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "c", "old", Bytes::new(), None);
    f.delete(
        "t",
        DeleteTarget::Columns(vec![CellContext {
            name: b("c"),
            context: Bytes::new(),
        }]),
        None,
    );
    // The client reads the cell as absent: it has no context to send.
    assert!(f.get("t", "c").is_none());
    f.insert("t", "c", "new", Bytes::new(), None);
    let cell = f.get("t", "c").unwrap();
    assert_eq!(cell.siblings.len(), 1, "{cell:?}");
    assert_eq!(values(&cell), vec![b"new".to_vec()]);
    assert!(!cell.has_conflict());
}

#[test]
fn contract_blind_write_over_a_live_cell_stays_a_sibling() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "c", "one", Bytes::new(), None);
    f.insert("t", "c", "two", Bytes::new(), None);
    let cell = f.get("t", "c").unwrap();
    assert_eq!(values(&cell), vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn contract_row_delete_without_contexts_removes_every_column_held() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "a", "1", Bytes::new(), None);
    f.insert("t", "b", "2", Bytes::new(), None);
    f.insert("t", "b", "3", Bytes::new(), None);
    f.delete(
        "t",
        DeleteTarget::Row {
            contexts: Vec::new(),
        },
        None,
    );
    assert!(f.get_with("t", Selector::All).0.is_empty());
}

#[test]
fn contract_row_delete_with_a_stale_context_covers_every_version_held() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.insert("t", "c", "seen", Bytes::new(), None);
    let ctx = f.get("t", "c").unwrap().context;
    f.insert("t", "c", "held-not-seen", Bytes::new(), None);
    f.delete(
        "t",
        DeleteTarget::Row {
            contexts: vec![CellContext {
                name: b("c"),
                context: ctx,
            }],
        },
        None,
    );
    assert!(f.get_with("t", Selector::All).0.is_empty());
}

#[test]
fn contract_lww_row_delete_covers_older_cells_arriving_later() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    f.insert_full("t", "a", "1", Bytes::new(), None, Some(100));
    f.delete(
        "t",
        DeleteTarget::Row {
            contexts: Vec::new(),
        },
        Some(500),
    );
    // Written after the delete but with an older (and an equal) timestamp: deleted.
    assert_written(&f.insert_full("t", "b", "2", Bytes::new(), None, Some(400)));
    assert_written(&f.insert_full("t", "c", "3", Bytes::new(), None, Some(500)));
    // Newer than the delete: lives.
    assert_written(&f.insert_full("t", "d", "4", Bytes::new(), None, Some(600)));
    let names: Vec<Bytes> = f
        .get_with("t", Selector::All)
        .0
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec![b("d")]);
}

#[test]
fn contract_lww_row_delete_removes_cells_at_or_below_its_timestamp() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    assert_written(&f.insert_full("t", "a", "1", Bytes::new(), None, Some(400)));
    assert_written(&f.insert_full("t", "b", "2", Bytes::new(), None, Some(500)));
    assert_written(&f.insert_full("t", "c", "3", Bytes::new(), None, Some(600)));
    f.delete(
        "t",
        DeleteTarget::Row {
            contexts: Vec::new(),
        },
        Some(500),
    );
    let names: Vec<Bytes> = f
        .get_with("t", Selector::All)
        .0
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec![b("c")]);
}

#[test]
fn contract_causal_timestamp_is_stored_and_returned_not_ordering() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    assert_written(&f.insert_full("t", "c", "later", Bytes::new(), None, Some(9_000)));
    assert_written(&f.insert_full("t", "c", "earlier", Bytes::new(), None, Some(1_000)));
    // Both survive (no context: siblings), each with the timestamp it was given.
    let cell = f.get("t", "c").unwrap();
    let mut got: Vec<(i64, Option<Bytes>)> = cell
        .siblings
        .iter()
        .map(|s| (s.timestamp_micros, s.value.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![(1_000, Some(b("earlier"))), (9_000, Some(b("later")))]
    );
    // Absent: the node's clock.
    assert_written(&f.insert_full("t", "d", "v", Bytes::new(), None, None));
    let ts = f.get("t", "d").unwrap().siblings[0].timestamp_micros;
    assert_eq!(ts, T0_MICROS);
}
