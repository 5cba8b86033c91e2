//! The wire spec (`protocol/doc/wire_format.md`) against the service that answers it: one
//! behaviour the spec promises per test, checked on a real engine in a temp dir with a
//! manual clock (no wall-clock sleeps). Frame-level rules (error frames) are checked
//! against the real binary in `tests/node.rs`; byte layouts in `protocol/tests/wire_doc.rs`.
//!
//! Layout: this file holds the fixture; [`options`] checks section 5.1 (defaults), 5.2
//! (consistency) and 5.6 (response metadata); [`writes`] 5.3 (contexts, writes, deletes)
//! and 5.4 (timestamps); [`ttl`] 5.5; [`limits`] section 7; [`permissions`] the check table
//! of section 6 "Permissions".
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

mod limits;
mod options;
mod permissions;
mod ttl;
mod writes;

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

const DOC: &str = include_str!("../../protocol/doc/wire_format.md");
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
        memtable_size: 1 << 20,
        ..ServiceOptions::new(dir.path().to_path_buf(), clock.clone())
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
                write_id: None,
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
                write_id: None,
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
