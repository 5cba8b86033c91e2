//! Unit tests of the service: requests in, responses out, over a real engine in a temp dir.

use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{
    Cell, CellContext, ColumnWrite, ConflictMode, Consistency, DeleteTarget, ErrorKind, Mutation,
    Request, Response, RowDelete, RowInsert, Selector, TableOptions,
};

use super::{Service, ServiceOptions, DEFAULT_MAX_VALUE_LEN};
use crate::versioning::ManualClock;

const T0: i64 = 1_700_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    svc: Service,
}

pub(super) fn options(dir: &std::path::Path, clock: Arc<ManualClock>) -> ServiceOptions {
    ServiceOptions {
        memtable_size: 1 << 20,
        ..ServiceOptions::new(dir, clock)
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(T0));
    let svc = Service::open(options(dir.path(), clock.clone())).unwrap();
    Fixture { dir, clock, svc }
}

pub(super) fn table_options(mode: ConflictMode) -> TableOptions {
    TableOptions {
        replication_factor: 1,
        read_consistency: Consistency::ONE,
        write_consistency: Consistency::ONE,
        conflict_mode: mode,
        ..TableOptions::default()
    }
}

impl Fixture {
    fn create(&self, name: &str, mode: ConflictMode) {
        let r = self.svc.handle(Request::CreateTable {
            name: name.into(),
            options: table_options(mode),
            if_not_exists: false,
        });
        assert!(
            matches!(r, Response::SchemaChanged { applied: true, .. }),
            "{r:?}"
        );
    }

    fn put_with(&self, table: &str, key: &str, col: &str, value: &str, ctx: Bytes) -> Response {
        self.svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: table.into(),
                key: Bytes::copy_from_slice(key.as_bytes()),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::copy_from_slice(col.as_bytes()),
                    value: Bytes::copy_from_slice(value.as_bytes()),
                    context: ctx,
                }],
            },
            consistency: None,
        })
    }

    fn put(&self, table: &str, key: &str, col: &str, value: &str) {
        let r = self.put_with(table, key, col, value, Bytes::new());
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }

    fn get(&self, table: &str, key: &str, selector: Selector) -> (Vec<Cell>, Option<Bytes>) {
        match self.svc.handle(Request::Get {
            table: table.into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            selector,
            consistency: None,
        }) {
            Response::Row {
                cells, next_page, ..
            } => (cells, next_page),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn cell(&self, table: &str, key: &str, col: &str) -> Option<Cell> {
        let sel = Selector::Columns(vec![Bytes::copy_from_slice(col.as_bytes())]);
        let (mut cells, _) = self.get(table, key, sel);
        assert!(cells.len() <= 1);
        cells.pop()
    }
}

fn values(cell: &Cell) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = cell.values().map(|b| &b[..]).collect();
    v.sort();
    v
}

fn error_kind(r: Response) -> ErrorKind {
    match r {
        Response::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn service_put_get_round_trips() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "v");
    let cell = f.cell("t", "k", "c").unwrap();
    assert_eq!(values(&cell), [b"v"]);
    assert!(!cell.context.is_empty());
}

#[test]
fn service_blind_writes_become_siblings_and_context_resolves_them() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "a");
    f.put("t", "k", "c", "b");
    let cell = f.cell("t", "k", "c").unwrap();
    assert_eq!(values(&cell), [&b"a"[..], b"b"]);
    let r = f.put_with("t", "k", "c", "r", cell.context.clone());
    assert!(matches!(r, Response::Written { .. }));
    assert_eq!(values(&f.cell("t", "k", "c").unwrap()), [b"r"]);
}

#[test]
fn service_stale_context_keeps_concurrent_sibling() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "a");
    let ctx_a = f.cell("t", "k", "c").unwrap().context;
    f.put_with("t", "k", "c", "b", ctx_a.clone());
    f.put_with("t", "k", "c", "c", ctx_a);
    assert_eq!(values(&f.cell("t", "k", "c").unwrap()), [&b"b"[..], b"c"]);
}

#[test]
fn service_forged_context_is_invalid() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "a");
    let mut ctx = f.cell("t", "k", "c").unwrap().context.to_vec();
    let last = ctx.len() - 1;
    ctx[last] ^= 0x5a;
    let r = f.put_with("t", "k", "c", "b", Bytes::from(ctx));
    assert_eq!(error_kind(r), ErrorKind::Invalid);
}

#[test]
fn service_causal_delete_hides_cell() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "a");
    f.put("t", "k", "d", "x");
    let ctx = f.cell("t", "k", "c").unwrap().context;
    let r = f.svc.handle(Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            timestamp_micros: None,
            target: DeleteTarget::Columns(vec![CellContext {
                name: Bytes::from_static(b"c"),
                context: ctx,
            }]),
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
    assert!(f.cell("t", "k", "c").is_none());
    let (cells, _) = f.get("t", "k", Selector::All);
    assert_eq!(cells.len(), 1);
    assert_eq!(&cells[0].name[..], b"d");
}

#[test]
fn service_row_delete_removes_every_cell() {
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let f = fixture();
        f.create("t", mode);
        f.put("t", "k", "a", "1");
        f.put("t", "k", "b", "2");
        f.put("t", "other", "a", "3");
        f.clock.advance_secs(1);
        let r = f.svc.handle(Request::Delete {
            delete: RowDelete {
                write_id: None,
                table: "t".into(),
                key: Bytes::from_static(b"k"),
                timestamp_micros: None,
                target: DeleteTarget::Row { contexts: vec![] },
            },
            consistency: None,
        });
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
        assert!(f.get("t", "k", Selector::All).0.is_empty(), "{mode:?}");
        assert_eq!(f.get("t", "other", Selector::All).0.len(), 1);
    }
}

#[test]
fn service_ttl_expires_cells() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let r = f.svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            ttl_secs: Some(10),
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::from_static(b"v"),
                context: Bytes::new(),
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }));
    let cell = f.cell("t", "k", "c").unwrap();
    assert_eq!(cell.siblings[0].ttl_secs, Some(10));
    f.clock.advance_secs(10);
    assert!(f.cell("t", "k", "c").is_none());
}

#[test]
fn service_lww_highest_timestamp_wins() {
    let f = fixture();
    f.create("t", ConflictMode::Lww);
    let put_at = |v: &str, ts: i64| {
        f.svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "t".into(),
                key: Bytes::from_static(b"k"),
                ttl_secs: None,
                timestamp_micros: Some(ts),
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"c"),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        })
    };
    put_at("new", 200);
    put_at("old", 100);
    let cell = f.cell("t", "k", "c").unwrap();
    assert_eq!(values(&cell), [b"new"]);
    assert_eq!(cell.siblings.len(), 1);
    assert_eq!(cell.siblings[0].timestamp_micros, 200);
}

#[test]
fn service_unknown_table_is_typed() {
    let f = fixture();
    let r = f.put_with("nope", "k", "c", "v", Bytes::new());
    assert_eq!(
        error_kind(r),
        ErrorKind::UnknownTable {
            table: "nope".into()
        }
    );
}

#[test]
fn service_empty_key_is_invalid() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    assert_eq!(
        error_kind(f.put_with("t", "", "c", "v", Bytes::new())),
        ErrorKind::Invalid
    );
}

#[test]
fn service_oversized_value_is_invalid() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let big = "x".repeat(DEFAULT_MAX_VALUE_LEN + 1);
    assert_eq!(
        error_kind(f.put_with("t", "k", "c", &big, Bytes::new())),
        ErrorKind::Invalid
    );
}

#[test]
fn service_sibling_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(T0));
    let mut opts = options(dir.path(), clock.clone());
    opts.max_siblings = 2;
    let svc = Service::open(opts).unwrap();
    let f = Fixture { dir, clock, svc };
    f.create("t", ConflictMode::Causal);
    f.put("t", "k", "c", "a");
    f.put("t", "k", "c", "b");
    let r = f.put_with("t", "k", "c", "c", Bytes::new());
    assert_eq!(error_kind(r), ErrorKind::TooManySiblings { limit: 2 });
}

#[test]
fn service_unreachable_consistency_is_unavailable() {
    let f = fixture();
    let r = f.svc.handle(Request::CreateTable {
        name: "t".into(),
        options: TableOptions::default(),
        if_not_exists: false,
    });
    assert!(matches!(r, Response::SchemaChanged { .. }));
    let r = f.put_with("t", "k", "c", "v", Bytes::new());
    assert_eq!(
        error_kind(r),
        ErrorKind::Unavailable {
            required: 2,
            alive: 1
        }
    );
}

#[test]
fn service_slice_pages_through_row() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    for i in 0..25 {
        f.put("t", "k", &format!("c{i:02}"), "v");
    }
    let mut seen = Vec::new();
    let mut paging = None;
    loop {
        let (cells, next) = f.get(
            "t",
            "k",
            Selector::Slice {
                from: Some(Bytes::from_static(b"c03")),
                to: Some(Bytes::from_static(b"c20")),
                limit: 5,
                paging: paging.take(),
            },
        );
        assert!(cells.len() <= 5);
        seen.extend(cells.into_iter().map(|c| c.name));
        match next {
            Some(p) => paging = Some(p),
            None => break,
        }
    }
    let expected: Vec<Bytes> = (3..20).map(|i| Bytes::from(format!("c{i:02}"))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn service_slice_pages_honour_the_response_byte_budget() {
    // The issue's row: 900 KiB cells used to page at about 9 MB against an 8 MiB budget.
    let f = fixture();
    f.create("t", ConflictMode::Lww);
    let value = "v".repeat(900 << 10);
    for i in 0..25 {
        f.put("t", "k", &format!("c{i:02}"), &value);
    }
    let mut seen = Vec::new();
    let mut paging = None;
    loop {
        let (cells, next) = f.get(
            "t",
            "k",
            Selector::Slice {
                from: None,
                to: None,
                limit: 0,
                paging: paging.take(),
            },
        );
        let bytes: usize = cells.iter().map(super::read::cell_bytes).sum();
        assert!(
            bytes <= super::read::MAX_RESPONSE_BYTES,
            "a page of {bytes} bytes"
        );
        assert!(!cells.is_empty());
        seen.extend(cells.into_iter().map(|c| c.name));
        match next {
            Some(p) => paging = Some(p),
            None => break,
        }
    }
    let expected: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("c{i:02}"))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn service_schema_survives_reopen() {
    let f = fixture();
    f.create("causal_t", ConflictMode::Causal);
    f.create("lww_t", ConflictMode::Lww);
    f.put("lww_t", "k", "c", "v");
    let actor = f.svc.actor();
    f.svc.close().unwrap();
    let Fixture { dir, clock, svc } = f;
    drop(svc);
    let svc = Service::open(options(dir.path(), clock.clone())).unwrap();
    assert_eq!(svc.actor(), actor);
    let r = svc.handle(Request::DescribeTable {
        name: "lww_t".into(),
    });
    let Response::Table { options, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(options, table_options(ConflictMode::Lww));
    let f = Fixture { dir, clock, svc };
    assert_eq!(values(&f.cell("lww_t", "k", "c").unwrap()), [b"v"]);
    let r = f.svc.handle(Request::ListTables);
    assert_eq!(r, Response::Tables(vec!["causal_t".into(), "lww_t".into()]));
}

#[test]
fn service_create_existing_table_is_typed_and_drop_removes_it() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let again = f.svc.handle(Request::CreateTable {
        name: "t".into(),
        options: table_options(ConflictMode::Causal),
        if_not_exists: false,
    });
    assert_eq!(
        error_kind(again),
        ErrorKind::TableExists { table: "t".into() }
    );
    let r = f.svc.handle(Request::DropTable {
        name: "t".into(),
        if_exists: false,
    });
    assert!(matches!(r, Response::SchemaChanged { applied: true, .. }));
    assert_eq!(f.svc.handle(Request::ListTables), Response::Tables(vec![]));
}

#[test]
fn service_batch_applies_each_mutation_and_reports_failure() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let ins = |table: &str, key: &'static [u8]| {
        Mutation::Insert(RowInsert {
            write_id: None,
            table: table.into(),
            key: Bytes::from_static(key),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::from_static(b"v"),
                context: Bytes::new(),
            }],
        })
    };
    let r = f.svc.handle(Request::Batch {
        mutations: vec![ins("t", b"a"), ins("missing", b"b"), ins("t", b"c")],
        consistency: None,
    });
    assert!(matches!(error_kind(r), ErrorKind::UnknownTable { .. }));
    assert!(f.cell("t", "a", "c").is_some());
    assert!(f.cell("t", "c", "c").is_some());
    // One run of inserts is one engine write: two blind writes of one cell in it are two
    // siblings, as two separate writes are; a delete between runs applies in order.
    let put = |key: &'static [u8], value: &'static [u8]| {
        Mutation::Insert(RowInsert {
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::from_static(value),
                context: Bytes::new(),
            }],
            ..match ins("t", key) {
                Mutation::Insert(i) => i,
                Mutation::Delete(_) => unreachable!(),
            }
        })
    };
    let r = f.svc.handle(Request::Batch {
        mutations: vec![put(b"d", b"x"), put(b"d", b"y"), put(b"e", b"z")],
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
    assert_eq!(
        values(&f.cell("t", "d", "c").unwrap()),
        vec![&b"x"[..], b"y"]
    );
    assert_eq!(values(&f.cell("t", "e", "c").unwrap()), vec![&b"z"[..]]);
}

#[test]
fn service_duplicate_column_in_insert_is_invalid() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let col = ColumnWrite {
        name: Bytes::from_static(b"c"),
        value: Bytes::from_static(b"v"),
        context: Bytes::new(),
    };
    let r = f.svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![col.clone(), col],
        },
        consistency: None,
    });
    assert_eq!(error_kind(r), ErrorKind::Invalid);
}

fn row_insert(table: &str, key: &'static [u8], value: &'static [u8]) -> RowInsert {
    RowInsert {
        write_id: None,
        table: table.into(),
        key: Bytes::from_static(key),
        ttl_secs: None,
        timestamp_micros: None,
        columns: vec![ColumnWrite {
            name: Bytes::from_static(b"c"),
            value: Bytes::from_static(value),
            context: Bytes::new(),
        }],
    }
}

#[test]
fn service_insert_group_on_one_cell_keeps_both_writes_as_siblings() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let a = row_insert("t", b"k", b"a");
    let b = row_insert("t", b"k", b"b");
    let results = f.svc.insert_group(&[(&a, None), (&b, None)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(values(&f.cell("t", "k", "c").unwrap()), [&b"a"[..], b"b"]);
}

#[test]
fn service_insert_group_fails_only_the_bad_insert() {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let good = row_insert("t", b"k1", b"v");
    let bad = row_insert("missing", b"k2", b"v");
    let empty_key = row_insert("t", b"", b"v");
    let results = f
        .svc
        .insert_group(&[(&good, None), (&bad, None), (&empty_key, None)]);
    assert!(results[0].is_ok());
    assert!(matches!(
        &results[1],
        Err(e) if matches!(e.kind, ErrorKind::UnknownTable { .. })
    ));
    assert!(matches!(&results[2], Err(e) if e.kind == ErrorKind::Invalid));
    assert_eq!(values(&f.cell("t", "k1", "c").unwrap()), [b"v"]);
}

#[test]
fn service_table_default_ttl_applies_and_zero_ttl_overrides_it() {
    let f = fixture();
    let r = f.svc.handle(Request::CreateTable {
        name: "t".into(),
        options: TableOptions {
            default_ttl_secs: Some(5),
            ..table_options(ConflictMode::Lww)
        },
        if_not_exists: false,
    });
    assert!(matches!(r, Response::SchemaChanged { .. }));
    f.put("t", "k", "defaulted", "v");
    let mut never = row_insert("t", b"k", b"v");
    never.columns[0].name = Bytes::from_static(b"forever");
    never.ttl_secs = Some(0);
    assert!(f.svc.insert_group(&[(&never, None)])[0].is_ok());
    assert_eq!(
        f.cell("t", "k", "defaulted").unwrap().siblings[0].ttl_secs,
        Some(5)
    );
    f.clock.advance_secs(5);
    assert!(f.cell("t", "k", "defaulted").is_none());
    assert!(f.cell("t", "k", "forever").is_some());
}

/// The newest commit log segment holding records.
fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 64).unwrap_or(false))
        .collect();
    segs.sort();
    segs.pop().expect("a segment with records")
}

fn write_rows(svc: &Service, n: u32) {
    for i in 0..n {
        let r = svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "t".into(),
                key: Bytes::from(format!("k{i}")),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"c"),
                    value: Bytes::from(vec![7u8; 100]),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        });
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }
}

/// A service that wrote `rows` rows to causal table "t" and was closed: its directory,
/// clock and actor.
fn closed_after_writes(
    rows: u32,
) -> (
    tempfile::TempDir,
    Arc<ManualClock>,
    crate::versioning::Actor,
) {
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    write_rows(&f.svc, rows);
    let before = f.svc.actor();
    f.svc.close().unwrap();
    let Fixture { dir, clock, svc } = f;
    drop(svc);
    (dir, clock, before)
}

#[test]
fn service_torn_commit_log_tail_takes_a_new_actor_epoch() {
    let (dir, clock, before) = closed_after_writes(5);
    let seg = newest_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let svc = Service::open(options(dir.path(), clock)).unwrap();
    assert_eq!(svc.actor().node, before.node);
    assert_eq!(svc.actor().epoch, before.epoch + 1);
}

#[test]
fn service_clean_restart_keeps_the_actor_epoch() {
    let (dir, clock, before) = closed_after_writes(5);
    let svc = Service::open(options(dir.path(), clock)).unwrap();
    assert_eq!(svc.actor(), before);
}

#[test]
fn service_corrupt_commit_log_refuses_to_open_unless_salvaged_with_a_new_epoch() {
    let (dir, clock, before) = closed_after_writes(40);
    let seg = newest_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let refused = Service::open(options(dir.path(), clock.clone()));
    assert!(refused.is_err(), "a corrupt log must not open silently");
    drop(refused);
    let svc = Service::open(ServiceOptions {
        salvage_commitlog: true,
        ..options(dir.path(), clock)
    })
    .unwrap();
    assert_eq!(svc.actor().epoch, before.epoch + 1);
}

#[test]
fn service_wide_row_delete_is_written_in_bounded_batches() {
    // A row delete used to be one engine batch, and one over the commit log record cap
    // poisoned the engine (review finding; the engine now refuses such a batch without
    // poisoning, see storage's engine_oversized_batch_is_refused_without_poisoning). Here
    // 560 cells of ~32 KiB keys (> the 16 MiB budget) go out in two batches.
    let f = fixture();
    f.create("t", ConflictMode::Causal);
    let key = Bytes::from(vec![b'k'; 16 * 1024]);
    for chunk in 0..14u32 {
        let columns = (0..40u32)
            .map(|i| {
                let mut name = vec![b'c'; 16 * 1024];
                name[..8].copy_from_slice(&(u64::from(chunk) * 1000 + u64::from(i)).to_be_bytes());
                ColumnWrite {
                    name: Bytes::from(name),
                    value: Bytes::from_static(b"v"),
                    context: Bytes::new(),
                }
            })
            .collect();
        let r = f.svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "t".into(),
                key: key.clone(),
                ttl_secs: None,
                timestamp_micros: None,
                columns,
            },
            consistency: None,
        });
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }
    let r = f.svc.handle(Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: "t".into(),
            key: key.clone(),
            timestamp_micros: None,
            target: DeleteTarget::Row { contexts: vec![] },
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
    let r = f.svc.handle(Request::Get {
        table: "t".into(),
        key,
        selector: Selector::Slice {
            from: None,
            to: None,
            limit: 10,
            paging: None,
        },
        consistency: None,
    });
    match r {
        Response::Row { cells, .. } => assert!(cells.is_empty(), "{} cells left", cells.len()),
        other => panic!("unexpected {other:?}"),
    }
    f.put("t", "after", "c", "v"); // the engine still takes writes
}

#[test]
fn service_row_deletes_run_off_the_async_workers() {
    let f = fixture();
    let delete = |target| Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            timestamp_micros: None,
            target,
        },
        consistency: None,
    };
    assert_eq!(
        f.svc
            .execution(&delete(DeleteTarget::Row { contexts: vec![] })),
        super::Execution::Blocking
    );
    assert_eq!(
        f.svc.execution(&delete(DeleteTarget::Columns(vec![]))),
        super::Execution::Inline
    );
}

/// A replicated table keeps its tombstones through a major compaction (a replica that
/// purged a delete before the others hold it would let the value come back through read
/// repair, hints or repair); a table with one replica purges them.
#[test]
fn service_major_compaction_keeps_tombstones_only_of_replicated_tables() {
    use crate::replica::keys::RowPrefix;
    use crate::replica::ReplicaHost;
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let f = fixture();
        for (name, rf) in [("single", 1u16), ("replicated", 3)] {
            let r = f.svc.handle(Request::CreateTable {
                name: name.into(),
                options: TableOptions {
                    replication_factor: rf,
                    ..table_options(mode)
                },
                if_not_exists: false,
            });
            assert!(matches!(r, Response::SchemaChanged { .. }), "{r:?}");
            f.put(name, "k", "c", "v");
            let r = f.svc.handle(Request::Delete {
                delete: RowDelete {
                    write_id: None,
                    table: name.into(),
                    key: Bytes::from_static(b"k"),
                    timestamp_micros: None,
                    target: DeleteTarget::Columns(vec![CellContext {
                        name: Bytes::from_static(b"c"),
                        context: Bytes::new(),
                    }]),
                },
                consistency: None,
            });
            assert!(matches!(r, Response::Written { .. }), "{r:?}");
            for admin in [
                Request::Flush {
                    table: Some(name.into()),
                },
                Request::Compact { table: name.into() },
            ] {
                let r = f.svc.handle(admin);
                assert!(!matches!(r, Response::Error(_)), "{r:?}");
            }
            assert!(f.cell(name, "k", "c").is_none(), "{mode:?} {name}: deleted");
        }
        let key = RowPrefix::new(crate::ring::Partitioner::Murmur3, b"k").cell_key(b"c");
        let raw = |table: &str| f.svc.replica().read_raw(table, &key).unwrap();
        assert_eq!(raw("single"), None, "{mode:?}: rf 1 purges the tombstone");
        assert!(
            raw("replicated").is_some(),
            "{mode:?}: rf 3 keeps the tombstone"
        );
    }
}
