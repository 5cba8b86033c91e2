//! The replica family over the real peer network: two services in one process, each
//! behind its own `TcpNetwork` on loopback. Cells written at node A travel as
//! `ReplicaRequest::Apply` to node B's replica; B's raw reads and digests then match A's.
//! Applying the same cells again changes nothing; an unknown table and a forged cell are
//! refused with their typed codes, and nothing is written.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sibyl::net::{Family, PeerNetwork, TcpNetwork, TcpOptions};
use sibyl::replica::{
    RawCell, ReplicaErrorCode, ReplicaExecution, ReplicaHandler, ReplicaHost, ReplicaRequest,
    ReplicaResponse, TokenRange,
};
use sibyl::ring::{NodeId, Token};
use sibyl::service::{Service, ServiceOptions};
use sibyl::versioning::ManualClock;
use sibyl_protocol::{
    ColumnWrite, ConflictMode, Consistency, Request, Response, RowInsert, TableOptions,
};

const T0: i64 = 1_700_000_000;
const CALL_DEADLINE: Duration = Duration::from_secs(20);

struct Peer {
    _dir: tempfile::TempDir,
    svc: Arc<Service>,
    net: TcpNetwork,
}

async fn peer(id: u64) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::open(ServiceOptions {
        memtable_size: 1 << 20,
        ..ServiceOptions::new(dir.path().to_path_buf(), Arc::new(ManualClock::at_secs(T0)))
    })
    .unwrap();
    let svc = Arc::new(svc);
    for (name, mode) in [("c", ConflictMode::Causal), ("l", ConflictMode::Lww)] {
        let r = svc.handle(Request::CreateTable {
            name: name.into(),
            options: TableOptions {
                replication_factor: 1,
                read_consistency: Consistency::ONE,
                write_consistency: Consistency::ONE,
                conflict_mode: mode,
                ..TableOptions::default()
            },
            if_not_exists: false,
        });
        assert!(matches!(r, Response::SchemaChanged { .. }), "{r:?}");
    }
    let net = TcpNetwork::bind(
        "127.0.0.1:0".parse().unwrap(),
        TcpOptions::new("replica-peer-test", NodeId(id)),
    )
    .await
    .unwrap();
    net.register(
        Family::Replica,
        Arc::new(ReplicaHandler::new(svc.clone(), ReplicaExecution::Blocking)),
    )
    .unwrap();
    Peer {
        _dir: dir,
        svc,
        net,
    }
}

fn insert(svc: &Service, table: &str, key: &str, column: &str, value: &str) {
    let r = svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: table.into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::copy_from_slice(column.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                context: Bytes::new(),
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

/// Every stored entry of `table`, over the whole ring.
fn all_cells(svc: &Service, table: &str) -> Vec<RawCell> {
    let whole = TokenRange {
        start: Token::Murmur3(0),
        end: Token::Murmur3(0),
    };
    let mut scan = svc.replica().scan_range(table, whole).unwrap();
    let mut out = Vec::new();
    while let Some((key, value)) = scan.next_entry().unwrap() {
        out.push(RawCell {
            table: table.into(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }
    out
}

async fn call(from: &Peer, to: &Peer, request: ReplicaRequest) -> ReplicaResponse {
    let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
    let body = from
        .net
        .call(
            to.net.local_addr(),
            Family::Replica,
            request.encode(),
            deadline,
        )
        .await
        .unwrap();
    ReplicaResponse::decode(&body).unwrap()
}

#[tokio::test]
async fn replica_apply_over_tcp_makes_the_peer_identical_and_is_idempotent() {
    let a = peer(1).await;
    let b = peer(2).await;
    for table in ["c", "l"] {
        insert(&a.svc, table, "alice", "name", "Alice");
        insert(&a.svc, table, "alice", "city", "Lyon");
        insert(&a.svc, table, "bob", "name", "Bob");
        // Two blind writes: siblings on the causal table, the later one on lww.
        insert(&a.svc, table, "bob", "name", "Robert");
    }
    for table in ["c", "l"] {
        let cells = all_cells(&a.svc, table);
        assert_eq!(cells.len(), 3, "three cells of {table}");
        for _ in 0..2 {
            let r = call(
                &a,
                &b,
                ReplicaRequest::Apply {
                    cells: cells.clone(),
                },
            )
            .await;
            assert_eq!(r, ReplicaResponse::Applied { count: 3 });
            assert_eq!(all_cells(&b.svc, table), cells, "B holds A's cells");
        }
        let keys: Vec<Vec<u8>> = cells.iter().map(|c| c.key.clone()).collect();
        let read = call(
            &a,
            &b,
            ReplicaRequest::Read {
                table: table.into(),
                keys: keys.clone(),
            },
        )
        .await;
        assert_eq!(read, ReplicaResponse::Found { cells });
        let digest = ReplicaRequest::Digest {
            table: table.into(),
            keys,
        };
        let theirs = call(&a, &b, digest.clone()).await;
        let ours = call(&b, &a, digest).await;
        assert_eq!(theirs, ours, "digests agree");
        match theirs {
            ReplicaResponse::Digests { digests } => {
                assert!(digests.iter().all(Option::is_some))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn replica_refuses_unknown_tables_and_forged_cells_without_writing() {
    let a = peer(3).await;
    let b = peer(4).await;
    insert(&a.svc, "c", "k", "col", "v");
    let mut cells = all_cells(&a.svc, "c");
    let unknown = call(
        &a,
        &b,
        ReplicaRequest::Read {
            table: "missing".into(),
            keys: vec![vec![1]],
        },
    )
    .await;
    assert!(
        matches!(
            unknown,
            ReplicaResponse::Error {
                code: ReplicaErrorCode::UnknownTable,
                ..
            }
        ),
        "{unknown:?}"
    );
    // A cell whose key claims another token than its partition key's.
    let mut forged = cells[0].clone();
    forged.key[0] ^= 0x40;
    cells.push(forged);
    let refused = call(&a, &b, ReplicaRequest::Apply { cells }).await;
    assert!(
        matches!(
            refused,
            ReplicaResponse::Error {
                code: ReplicaErrorCode::InvalidCell,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(all_cells(&b.svc, "c").is_empty(), "nothing written");
    // Garbage is refused by the handler as a remote error; the connection stays usable.
    let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
    let garbage = a
        .net
        .call(
            b.net.local_addr(),
            Family::Replica,
            Bytes::from_static(&[0x7E, 1, 2]),
            deadline,
        )
        .await;
    assert!(garbage.is_err(), "{garbage:?}");
    let ok = call(
        &a,
        &b,
        ReplicaRequest::Read {
            table: "c".into(),
            keys: vec![vec![1]],
        },
    )
    .await;
    assert_eq!(ok, ReplicaResponse::Found { cells: vec![] });
}
