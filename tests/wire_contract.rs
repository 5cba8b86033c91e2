//! The wire spec (`protocol/doc/wire_format.md`) against the service that answers it: one
//! behaviour the spec promises per test, checked on a real engine in a temp dir with a
//! manual clock (no wall-clock sleeps). Frame-level rules (error frames) are checked
//! against the real binary in `tests/node.rs`; byte layouts in `protocol/tests/wire_doc.rs`.

use std::sync::Arc;

use bytes::Bytes;
use sibyl::service::read::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_RESPONSE_BYTES, MAX_SCANNED_PER_PAGE,
};
use sibyl::service::{Service, ServiceOptions, DEFAULT_MAX_VALUE_LEN};
use sibyl::versioning::{ManualClock, DEFAULT_MAX_SIBLINGS, MAX_CELL_BYTES};
use sibyl_protocol::{
    Cell, CellContext, ColumnWrite, ConflictMode, Consistency, ConsistencyLevel, DeleteTarget,
    ErrorKind, Request, Response, RowDelete, RowInsert, Selector, TableOptions,
};
use sibyl_storage::SyncMode;

const DOC: &str = include_str!("../protocol/doc/wire_format.md");
/// A whole second, in µs since the Unix epoch (2023-11-14).
const T0_MICROS: i64 = 1_700_000_000 * 1_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    svc: Service,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MICROS));
    let svc = Service::open(ServiceOptions {
        data_dir: dir.path().to_path_buf(),
        sync: SyncMode::default(),
        memtable_size: 1 << 20,
        max_siblings: DEFAULT_MAX_SIBLINGS,
        max_value_len: DEFAULT_MAX_VALUE_LEN,
        node_address: "127.0.0.1:7400".into(),
        salvage_commitlog: false,
        clock: clock.clone(),
    })
    .unwrap();
    Fixture {
        _dir: dir,
        clock,
        svc,
    }
}

fn rf1(mode: ConflictMode) -> TableOptions {
    TableOptions {
        replication_factor: 1,
        read_consistency: Consistency::ONE,
        write_consistency: Consistency::ONE,
        conflict_mode: mode,
        ..TableOptions::default()
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn error_kind(r: Response) -> ErrorKind {
    match r {
        Response::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn assert_written(r: &Response) {
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

impl Fixture {
    fn create(&self, name: &str, options: TableOptions) {
        let r = self.svc.handle(Request::CreateTable {
            name: name.into(),
            options,
            if_not_exists: false,
        });
        assert!(
            matches!(r, Response::SchemaChanged { applied: true, .. }),
            "{r:?}"
        );
    }

    fn insert(&self, table: &str, col: &str, value: &str, ctx: Bytes, ttl: Option<u32>) {
        assert_written(&self.insert_full(table, col, value, ctx, ttl, None));
    }

    fn insert_full(
        &self,
        table: &str,
        col: &str,
        value: &str,
        ctx: Bytes,
        ttl_secs: Option<u32>,
        timestamp_micros: Option<i64>,
    ) -> Response {
        self.svc.handle(Request::Insert {
            insert: RowInsert {
                table: table.into(),
                key: b("k"),
                ttl_secs,
                timestamp_micros,
                columns: vec![ColumnWrite {
                    name: b(col),
                    value: b(value),
                    context: ctx,
                }],
            },
            consistency: None,
        })
    }

    fn get_with(&self, table: &str, selector: Selector) -> (Vec<Cell>, Option<Bytes>) {
        match self.svc.handle(Request::Get {
            table: table.into(),
            key: b("k"),
            selector,
            consistency: None,
        }) {
            Response::Row {
                cells, next_page, ..
            } => (cells, next_page),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(&self, table: &str, col: &str) -> Option<Cell> {
        let (mut cells, _) = self.get_with(table, Selector::Columns(vec![b(col)]));
        assert!(cells.len() <= 1);
        cells.pop()
    }

    fn delete(&self, table: &str, target: DeleteTarget, timestamp_micros: Option<i64>) {
        let r = self.svc.handle(Request::Delete {
            delete: RowDelete {
                table: table.into(),
                key: b("k"),
                timestamp_micros,
                target,
            },
            consistency: None,
        });
        assert_written(&r);
    }
}

fn values(cell: &Cell) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = cell.values().map(|b| b.to_vec()).collect();
    v.sort();
    v
}

// ---- 5.1 table option defaults ----

#[test]
fn contract_table_created_with_the_client_defaults_describes_them_unchanged() {
    let f = fixture();
    f.create("t", TableOptions::default());
    let r = f.svc.handle(Request::DescribeTable { name: "t".into() });
    let Response::Table { options, .. } = r else {
        panic!("{r:?}")
    };
    // The values section 5.1 documents (its wire bytes are checked in wire_doc.rs).
    let documented = TableOptions {
        replication_factor: 3,
        read_consistency: Consistency::QUORUM,
        write_consistency: Consistency::QUORUM,
        conflict_mode: ConflictMode::Causal,
        default_ttl_secs: None,
        compaction: sibyl_protocol::Compaction::SizeTiered,
        placement: sibyl_protocol::Placement::Simple,
    };
    assert_eq!(options, documented);
    assert_eq!(TableOptions::default(), documented);
}

// ---- 5.2 consistency against rf ----

fn write_at(f: &Fixture, table: &str, level: Consistency) -> Response {
    f.svc.handle(Request::Insert {
        insert: RowInsert {
            table: table.into(),
            key: b("k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: b("c"),
                value: b("v"),
                context: Bytes::new(),
            }],
        },
        consistency: Some(level),
    })
}

#[test]
fn contract_two_on_rf_1_is_unavailable_while_quorum_and_all_succeed() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    for ok in [
        Consistency::ONE,
        Consistency::QUORUM,
        Consistency::ALL,
        Consistency::LOCAL_QUORUM,
    ] {
        assert_written(&write_at(&f, "t", ok));
    }
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::TWO)),
        ErrorKind::Unavailable {
            required: 2,
            alive: 1
        }
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::THREE)),
        ErrorKind::Unavailable {
            required: 3,
            alive: 1
        }
    );
    let explicit = |n| Consistency {
        level: ConsistencyLevel::Explicit(n),
        ..Consistency::ONE
    };
    assert_written(&write_at(&f, "t", explicit(1)));
    assert_eq!(
        error_kind(write_at(&f, "t", explicit(0))),
        ErrorKind::Invalid
    );
}

#[test]
fn contract_quorum_on_rf_3_needs_two_replicas_and_a_single_node_is_one() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            replication_factor: 3,
            ..rf1(ConflictMode::Causal)
        },
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::QUORUM)),
        ErrorKind::Unavailable {
            required: 2,
            alive: 1
        }
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::ALL)),
        ErrorKind::Unavailable {
            required: 3,
            alive: 1
        }
    );
    // The table's own default (ONE here) applies when the request names none.
    assert_written(&f.insert_full("t", "c", "v", Bytes::new(), None, None));
}

// ---- 5.3 contexts, writes and deletes ----

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
#[ignore = "enable when row tombstones land: a row delete must cover every version the \
            replica holds, also of columns named with a stale context"]
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
#[ignore = "enable when row tombstones land: an lww row delete must delete cells at or \
            below its timestamp that arrive after it"]
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

// ---- 5.4 timestamps ----

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

// ---- 5.5 TTL ----

#[test]
fn contract_ttl_cell_lives_at_least_its_ttl_wherever_in_the_second_it_is_written() {
    for ttl in [1u32, 5] {
        // Early, middle and late in a second, and exactly on one.
        for offset in [0i64, 130_000, 500_000, 920_000, 999_999] {
            let f = fixture();
            f.create("t", rf1(ConflictMode::Causal));
            let written = T0_MICROS + offset;
            f.clock.set_micros(written);
            f.insert("t", "c", "v", Bytes::new(), Some(ttl));
            let ttl_micros = i64::from(ttl) * 1_000_000;
            // Readable up to the last microsecond of its TTL...
            f.clock.set_micros(written + ttl_micros - 1);
            assert!(
                f.get("t", "c").is_some(),
                "ttl {ttl} written at +{offset} µs expired before {ttl} s"
            );
            // ...and gone within one more second.
            f.clock.set_micros(written + ttl_micros + 1_000_000);
            assert!(
                f.get("t", "c").is_none(),
                "ttl {ttl} written at +{offset} µs outlived {ttl} + 1 s"
            );
        }
    }
}

#[test]
fn contract_lww_ttl_cell_lives_at_least_its_ttl() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let written = T0_MICROS + 920_000;
    f.clock.set_micros(written);
    f.insert("t", "c", "v", Bytes::new(), Some(1));
    f.clock.set_micros(written + 999_999);
    assert!(f.get("t", "c").is_some());
    f.clock.set_micros(written + 2_000_000);
    assert!(f.get("t", "c").is_none());
}

#[test]
fn contract_read_ttl_is_the_seconds_left_rounded_up() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    f.clock.set_micros(T0_MICROS + 500_000);
    f.insert("t", "c", "v", Bytes::new(), Some(5));
    // Expires at T0 + 6 s (rounded up): 5.5 s left reads as 6.
    let left = |f: &Fixture| f.get("t", "c").unwrap().siblings[0].ttl_secs;
    assert_eq!(left(&f), Some(6));
    f.clock.set_micros(T0_MICROS + 5_999_999);
    assert_eq!(left(&f), Some(1), "a live version reads at least 1");
}

#[test]
fn contract_ttl_0_on_a_default_ttl_table_never_expires() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            default_ttl_secs: Some(10),
            ..rf1(ConflictMode::Causal)
        },
    );
    f.insert("t", "forever", "v", Bytes::new(), Some(0));
    f.insert("t", "default", "v", Bytes::new(), None);
    assert_eq!(f.get("t", "forever").unwrap().siblings[0].ttl_secs, None);
    assert_eq!(
        f.get("t", "default").unwrap().siblings[0].ttl_secs,
        Some(10)
    );
    f.clock.advance_secs(365 * 24 * 3600);
    assert!(f.get("t", "forever").is_some(), "ttl 0 expired");
    assert!(
        f.get("t", "default").is_none(),
        "the default TTL did not apply"
    );
}

#[test]
fn contract_default_ttl_0_means_no_default() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            default_ttl_secs: Some(0),
            ..rf1(ConflictMode::Lww)
        },
    );
    f.insert("t", "c", "v", Bytes::new(), None);
    f.clock.advance_secs(365 * 24 * 3600);
    let cell = f
        .get("t", "c")
        .expect("a default TTL of 0 expired the cell");
    assert_eq!(cell.siblings[0].ttl_secs, None);
}

// ---- 5.6 response metadata ----

#[test]
fn contract_replicas_are_named_by_their_topology_node_id() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    let Response::Topology(topology) = f.svc.handle(Request::Topology) else {
        panic!("no topology")
    };
    let ids: Vec<String> = topology.nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 16);
    assert!(ids[0]
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let Response::Written { meta } = f.insert_full("t", "c", "v", Bytes::new(), None, None) else {
        panic!("not written")
    };
    assert_eq!(meta.replicas, ids);
    let Response::Row { meta, .. } = f.svc.handle(Request::Get {
        table: "t".into(),
        key: b("k"),
        selector: Selector::All,
        consistency: None,
    }) else {
        panic!("no row")
    };
    assert_eq!(meta.replicas, ids);
    // The server's shared, pre-encoded answer to a write says the same.
    let shared =
        Response::decode_body(sibyl_protocol::Opcode::Insert, false, f.svc.written_body()).unwrap();
    let Response::Written { meta } = shared else {
        panic!("{shared:?}")
    };
    assert_eq!(meta.replicas, ids);
    assert_eq!(topology.nodes[0].address, "127.0.0.1:7400");
}

// ---- 7. limits ----

#[test]
fn contract_slice_limit_0_returns_the_default_page_of_1000_cells() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let columns: Vec<ColumnWrite> = (0..DEFAULT_PAGE_SIZE + 5)
        .map(|i| ColumnWrite {
            name: b(&format!("c{i:05}")),
            value: b("v"),
            context: Bytes::new(),
        })
        .collect();
    assert_written(&f.svc.handle(Request::Insert {
        insert: RowInsert {
            table: "t".into(),
            key: b("k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns,
        },
        consistency: None,
    }));
    let first = |paging| Selector::Slice {
        from: None,
        to: None,
        limit: 0,
        paging,
    };
    let (cells, next) = f.get_with("t", first(None));
    assert_eq!(cells.len(), 1000);
    let next = next.expect("more columns follow");
    let (rest, end) = f.get_with("t", first(Some(next)));
    assert_eq!(rest.len(), 5);
    assert!(end.is_none(), "the slice is complete");
}

#[test]
fn contract_slice_page_ends_after_the_cell_that_passes_the_8_mib_budget() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let value = "v".repeat(DEFAULT_MAX_VALUE_LEN);
    for i in 0..10 {
        f.insert("t", &format!("c{i}"), &value, Bytes::new(), None);
    }
    let slice = |paging| Selector::Slice {
        from: None,
        to: None,
        limit: 0,
        paging,
    };
    let (cells, next) = f.get_with("t", slice(None));
    // Each cell counts its name, context, value and 16 bytes per sibling: the 8th passes
    // 8 MiB and ends the page.
    assert_eq!(cells.len(), 8);
    let (rest, end) = f.get_with("t", slice(next));
    assert_eq!(rest.len(), 2);
    assert!(end.is_none());
    // A whole-row GET of the same row is over the budget: refused, read it with slices.
    assert_eq!(
        error_kind(f.svc.handle(Request::Get {
            table: "t".into(),
            key: b("k"),
            selector: Selector::All,
            consistency: None,
        })),
        ErrorKind::Invalid
    );
}

#[test]
fn contract_value_over_1_mib_is_invalid_and_1_mib_is_accepted() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let put = |len: usize| {
        f.svc.handle(Request::Insert {
            insert: RowInsert {
                table: "t".into(),
                key: b("k"),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: b("c"),
                    value: Bytes::from(vec![7u8; len]),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        })
    };
    assert_written(&put(1 << 20));
    assert_eq!(error_kind(put((1 << 20) + 1)), ErrorKind::Invalid);
}

/// The exact number of the limits table row whose first cell is `name`.
fn documented_limit(name: &str) -> u64 {
    let row = format!("| {name} |");
    let line = DOC
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("no limits row {row}"));
    let value = line.split('|').nth(2).unwrap_or("");
    let number = value.split('`').nth(1).unwrap_or("");
    number
        .parse()
        .unwrap_or_else(|_| panic!("row {name}: no number in `{value}`"))
}

#[test]
fn contract_limits_table_matches_the_code() {
    use sibyl::config::{
        DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT,
    };
    use sibyl::service::keys::{MAX_COLUMN_NAME_LEN, MAX_PARTITION_KEY_LEN};
    use sibyl::service::schema::{MAX_REPLICATION_FACTOR, MAX_TABLE_NAME_LEN};
    let checks: [(&str, u64); 17] = [
        (
            "frame before the handshake",
            sibyl_protocol::HANDSHAKE_MAX_FRAME_LEN as u64,
        ),
        (
            "frame after the handshake",
            sibyl_protocol::DEFAULT_MAX_FRAME_LEN as u64,
        ),
        (
            "decoded message memory",
            sibyl_protocol::wire::MAX_DECODED_BYTES as u64,
        ),
        ("client connections", DEFAULT_MAX_CONNECTIONS as u64),
        ("requests in flight per node", DEFAULT_MAX_IN_FLIGHT as u64),
        ("idle connection", DEFAULT_IDLE_TIMEOUT_SECS),
        ("cell value", DEFAULT_MAX_VALUE_LEN as u64),
        ("partition key", MAX_PARTITION_KEY_LEN as u64),
        ("column name", MAX_COLUMN_NAME_LEN as u64),
        ("table name", MAX_TABLE_NAME_LEN as u64),
        ("replication factor", u64::from(MAX_REPLICATION_FACTOR)),
        ("siblings of a causal cell", DEFAULT_MAX_SIBLINGS as u64),
        ("stored causal cell (all siblings)", MAX_CELL_BYTES as u64),
        (
            "default slice page (`limit` 0)",
            u64::from(DEFAULT_PAGE_SIZE),
        ),
        ("largest slice page", u64::from(MAX_PAGE_SIZE)),
        ("stored cells stepped per page", MAX_SCANNED_PER_PAGE as u64),
        ("response budget of a read", MAX_RESPONSE_BYTES as u64),
    ];
    for (name, code) in checks {
        assert_eq!(documented_limit(name), code, "limits row {name:?}");
    }
    let rows = DOC
        .lines()
        .skip_while(|l| !l.starts_with("## 7. Limits"))
        .take_while(|l| !l.starts_with("## 8."))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| limit |"))
        .count();
    assert_eq!(rows, checks.len(), "a limits row is not checked here");
}
