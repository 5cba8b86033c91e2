//! The service lays rows out by the cluster's partitioner: an engine scan of a token
//! range returns exactly the rows whose tokens fall in it, in token order.

use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{ColumnWrite, ConflictMode, Request, Response, RowInsert};

use super::tests::{options, table_options};
use super::Service;
use crate::replica::keys::split_engine_key;
use crate::replica::range::{RangeScan, TokenRange};
use crate::ring::{Partitioner, Token};
use crate::versioning::ManualClock;

const ROWS: u32 = 300;

fn service(dir: &std::path::Path, partitioner: Partitioner) -> Service {
    let clock = Arc::new(ManualClock::at_secs(1_700_000_000));
    let svc = Service::open(super::ServiceOptions {
        partitioner,
        ..options(dir, clock)
    })
    .unwrap();
    let r = svc.handle(Request::CreateTable {
        name: "t".into(),
        options: table_options(ConflictMode::Lww),
        if_not_exists: false,
    });
    assert!(matches!(r, Response::SchemaChanged { .. }), "{r:?}");
    for i in 0..ROWS {
        let r = svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "t".into(),
                key: Bytes::from(format!("row{i}")),
                ttl_secs: None,
                timestamp_micros: None,
                columns: ["a", "b"]
                    .iter()
                    .map(|c| ColumnWrite {
                        name: Bytes::from_static(c.as_bytes()),
                        value: Bytes::from_static(b"v"),
                        context: Bytes::new(),
                    })
                    .collect(),
            },
            consistency: None,
        });
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }
    svc
}

/// The rows (token, key) a scan of `range` returns, in scan order, each once.
fn scanned_rows(svc: &Service, p: Partitioner, range: TokenRange) -> Vec<(Token, Vec<u8>)> {
    let mut scan = RangeScan::new(&svc.engine, "t", p, range).unwrap();
    let mut rows: Vec<(Token, Vec<u8>)> = Vec::new();
    while let Some((k, _)) = scan.next_entry().unwrap() {
        let parts = split_engine_key(p, k).expect("a well-formed key");
        assert_eq!(
            parts.token,
            p.token(parts.partition_key),
            "key laid out by {p}"
        );
        if rows.last().map(|(_, key)| key.as_slice()) != Some(parts.partition_key) {
            rows.push((parts.token, parts.partition_key.to_vec()));
        }
    }
    rows
}

fn check_partitioner(p: Partitioner) {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), p);
    let mut all: Vec<(Token, Vec<u8>)> = (0..ROWS)
        .map(|i| {
            let k = format!("row{i}").into_bytes();
            (p.token(&k), k)
        })
        .collect();
    all.sort();
    // Split points at a quarter and three quarters of the rows, plus a wrapping range.
    let q1 = all[ROWS as usize / 4].0;
    let q3 = all[3 * ROWS as usize / 4].0;
    for range in [
        TokenRange { start: q1, end: q3 },
        TokenRange { start: q3, end: q1 },
        TokenRange {
            start: p.min_token(),
            end: q1,
        },
    ] {
        for flushed in [false, true] {
            if flushed {
                svc.engine.flush(None).unwrap();
            }
            let got = scanned_rows(&svc, p, range);
            let expected: Vec<(Token, Vec<u8>)> = {
                // Ring order from `start`: the tokens after start, then the wrapped ones.
                let (after, before): (Vec<_>, Vec<_>) = all
                    .iter()
                    .filter(|(t, _)| range.contains(*t))
                    .cloned()
                    .partition(|(t, _)| *t > range.start);
                after.into_iter().chain(before).collect()
            };
            assert!(!expected.is_empty());
            assert_eq!(got, expected, "{p} {range:?} flushed={flushed}");
        }
    }
}

#[test]
fn service_md5_node_scans_a_token_range_in_token_order() {
    check_partitioner(Partitioner::Md5);
}

#[test]
fn service_murmur3_node_scans_a_token_range_in_token_order() {
    check_partitioner(Partitioner::Murmur3);
}

#[test]
fn service_refuses_a_data_directory_laid_out_by_another_partitioner() {
    let dir = tempfile::tempdir().unwrap();
    drop(service(dir.path(), Partitioner::Murmur3));
    let clock = Arc::new(ManualClock::at_secs(1_700_000_000));
    let r = Service::open(super::ServiceOptions {
        partitioner: Partitioner::Md5,
        ..options(dir.path(), clock.clone())
    });
    assert!(
        matches!(r, Err(super::ServiceError::KeyLayout { token_len: 8, .. })),
        "{r:?}"
    );
    // The same partitioner opens it, data intact.
    let svc = Service::open(options(dir.path(), clock)).unwrap();
    let got = scanned_rows(
        &svc,
        Partitioner::Murmur3,
        TokenRange {
            start: Partitioner::Murmur3.min_token(),
            end: Partitioner::Murmur3.min_token(),
        },
    );
    assert_eq!(got.len(), ROWS as usize);
}
