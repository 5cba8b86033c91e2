//! A fixed set of representative messages (one or more per opcode and error code), used to
//! seed the fuzz corpus and to check the worked examples of `doc/wire_format.md`.

#![allow(dead_code)]

use bytes::Bytes;
use sibyl_protocol::message::types::{
    Cell, CellContext, ColumnWrite, ConflictMode, Consistency, NodeInfo, NodeState, Placement,
    ResponseMeta, Selector, Sibling, TableOptions, TableStatistics, Topology,
};
use sibyl_protocol::{
    DeleteTarget, ErrorKind, Mutation, Opcode, Request, Response, RowDelete, RowInsert,
    ServerError, PROTOCOL_VERSION,
};

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

pub fn insert() -> RowInsert {
    RowInsert {
        write_id: None,
        table: "users".into(),
        key: b("alice"),
        ttl_secs: None,
        timestamp_micros: None,
        columns: vec![ColumnWrite {
            name: b("email"),
            value: b("a@example.com"),
            context: Bytes::new(),
        }],
    }
}

pub fn requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "handshake",
            Request::Handshake {
                version: PROTOCOL_VERSION,
                client: "demo".into(),
            },
        ),
        ("ping", Request::Ping),
        ("topology", Request::Topology),
        (
            "auth-start",
            Request::AuthStart {
                mechanism: "SCRAM-SHA-256".into(),
                message: b("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            },
        ),
        (
            "auth-finish",
            Request::AuthFinish {
                message: b(
                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                ),
            },
        ),
        (
            "create-user",
            Request::CreateUser {
                name: "alice".into(),
                superuser: false,
                if_not_exists: true,
                verifier: sibyl_protocol::scram::ScramVerifier {
                    iterations: 4096,
                    salt: vec![7; 16],
                    stored_key: [1; 32],
                    server_key: [2; 32],
                },
            },
        ),
        (
            "alter-user",
            Request::AlterUser {
                name: "alice".into(),
                verifier: sibyl_protocol::scram::ScramVerifier {
                    iterations: 8192,
                    salt: vec![8; 16],
                    stored_key: [3; 32],
                    server_key: [4; 32],
                },
            },
        ),
        (
            "drop-user",
            Request::DropUser {
                name: "alice".into(),
                if_exists: false,
            },
        ),
        ("list-users", Request::ListUsers),
        (
            "grant",
            Request::Grant {
                user: "alice".into(),
                grant: sibyl_protocol::Grant {
                    permission: sibyl_protocol::Permission::Read,
                    table: Some("kv".into()),
                },
            },
        ),
        (
            "revoke",
            Request::Revoke {
                user: "alice".into(),
                grant: sibyl_protocol::Grant {
                    permission: sibyl_protocol::Permission::Create,
                    table: None,
                },
            },
        ),
        (
            "create-table",
            Request::CreateTable {
                name: "users".into(),
                options: TableOptions {
                    conflict_mode: ConflictMode::Lww,
                    default_ttl_secs: Some(3600),
                    ..Default::default()
                },
                if_not_exists: true,
            },
        ),
        (
            "create-table-dc",
            Request::CreateTable {
                name: "geo".into(),
                options: TableOptions {
                    placement: Placement::DcAware(vec![("eu".into(), 3), ("us".into(), 2)]),
                    ..Default::default()
                },
                if_not_exists: false,
            },
        ),
        (
            "drop-table",
            Request::DropTable {
                name: "users".into(),
                if_exists: false,
            },
        ),
        ("list-tables", Request::ListTables),
        (
            "describe-table",
            Request::DescribeTable {
                name: "users".into(),
            },
        ),
        (
            "insert",
            Request::Insert {
                insert: insert(),
                consistency: None,
            },
        ),
        (
            "insert-ctx-ttl",
            Request::Insert {
                insert: RowInsert {
                    write_id: None,
                    table: "users".into(),
                    key: b("bob"),
                    ttl_secs: Some(60),
                    timestamp_micros: Some(1_700_000_000_000_000),
                    columns: vec![
                        ColumnWrite {
                            name: b("a"),
                            value: b("1"),
                            context: Bytes::from_static(&[1, 2, 3]),
                        },
                        ColumnWrite {
                            name: b("b"),
                            value: b("2"),
                            context: Bytes::new(),
                        },
                    ],
                },
                consistency: Some(Consistency::explicit(2).strict()),
            },
        ),
        (
            "get-all",
            Request::Get {
                table: "users".into(),
                key: b("alice"),
                selector: Selector::All,
                consistency: Some(Consistency::QUORUM),
            },
        ),
        (
            "get-columns",
            Request::Get {
                table: "users".into(),
                key: b("alice"),
                selector: Selector::Columns(vec![b("email"), b("name")]),
                consistency: None,
            },
        ),
        (
            "get-slice",
            Request::Get {
                table: "events".into(),
                key: b("day1"),
                selector: Selector::Slice {
                    from: Some(b("09:00")),
                    to: Some(b("10:00")),
                    limit: 100,
                    paging: Some(b("09:30\0")),
                },
                consistency: Some(Consistency::ONE),
            },
        ),
        (
            "delete-column",
            Request::Delete {
                delete: RowDelete {
                    write_id: None,
                    table: "users".into(),
                    key: b("alice"),
                    timestamp_micros: None,
                    target: DeleteTarget::Columns(vec![CellContext {
                        name: b("email"),
                        context: Bytes::from_static(&[9]),
                    }]),
                },
                consistency: None,
            },
        ),
        (
            "delete-row",
            Request::Delete {
                delete: RowDelete {
                    write_id: None,
                    table: "users".into(),
                    key: b("alice"),
                    timestamp_micros: Some(5),
                    target: DeleteTarget::Row { contexts: vec![] },
                },
                consistency: Some(Consistency::ALL),
            },
        ),
        (
            "batch",
            Request::Batch {
                mutations: vec![
                    Mutation::Insert(insert()),
                    Mutation::Delete(RowDelete {
                        write_id: None,
                        table: "users".into(),
                        key: b("carol"),
                        timestamp_micros: None,
                        target: DeleteTarget::Row { contexts: vec![] },
                    }),
                ],
                consistency: Some(Consistency::LOCAL_QUORUM),
            },
        ),
        ("flush-all", Request::Flush { table: None }),
        (
            "flush-table",
            Request::Flush {
                table: Some("users".into()),
            },
        ),
        (
            "compact",
            Request::Compact {
                table: "users".into(),
            },
        ),
        (
            "table-stats",
            Request::TableStats {
                table: "users".into(),
            },
        ),
        (
            "remove-node",
            Request::RemoveNode {
                node_id: "00000000000000ab".into(),
                force: false,
            },
        ),
        ("decommission", Request::Decommission),
        (
            "repair",
            Request::Repair {
                table: Some("users".into()),
            },
        ),
        ("repair-status", Request::RepairStatus { id: 7 }),
        ("hints", Request::Hints),
        (
            "streams",
            Request::Streams {
                set_throughput: Some(64 << 20),
            },
        ),
        (
            "cleanup",
            Request::Cleanup {
                table: Some("users".into()),
            },
        ),
        ("rebalance", Request::Rebalance),
        (
            "move",
            Request::Move {
                tokens: vec![-4_611_686_018_427_387_904, 0, 42],
            },
        ),
    ]
}

/// A row of `n` columns `c0..`, each one 10-byte value, a context and one sibling.
pub fn row(n: usize) -> Response {
    Response::Row {
        cells: (0..n)
            .map(|i| Cell {
                name: Bytes::from(format!("c{i}")),
                siblings: vec![Sibling {
                    value: Some(Bytes::from(format!("value-{i:04}"))),
                    timestamp_micros: 1_700_000_000_000_000 + i as i64,
                    ttl_secs: None,
                }],
                context: Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 7]),
            })
            .collect(),
        next_page: None,
        meta: ResponseMeta {
            replicas: vec!["10.0.0.1:7400".into()],
            read_repair: false,
            stand_ins: Vec::new(),
        },
    }
}

pub fn responses() -> Vec<(&'static str, Opcode, Response)> {
    let err = |kind, msg: &str| Response::Error(ServerError::new(kind, msg));
    vec![
        (
            "handshake",
            Opcode::Handshake,
            Response::Handshake {
                version: PROTOCOL_VERSION,
                server: "sibyl/0.1".into(),
                max_frame_len: 16 << 20,
            },
        ),
        ("pong", Opcode::Ping, Response::Pong),
        (
            "topology",
            Opcode::Topology,
            Response::Topology(Topology {
                partitioner: "murmur3".into(),
                nodes: vec![NodeInfo {
                    id: "n1".into(),
                    address: "10.0.0.1:7400".into(),
                    datacenter: "dc1".into(),
                    rack: "r1".into(),
                    state: NodeState::Normal,
                    up: true,
                    tokens: vec![-9_000_000_000_000_000_000, 0, 42],
                    load_bytes: 1_234_567,
                }],
            }),
        ),
        (
            "schema-changed",
            Opcode::CreateTable,
            Response::SchemaChanged {
                table: "users".into(),
                applied: true,
            },
        ),
        (
            "tables",
            Opcode::ListTables,
            Response::Tables(vec!["users".into(), "events".into()]),
        ),
        (
            "table",
            Opcode::DescribeTable,
            Response::Table {
                name: "users".into(),
                options: TableOptions::default(),
            },
        ),
        (
            "row-siblings",
            Opcode::Get,
            Response::Row {
                cells: vec![Cell {
                    name: b("email"),
                    siblings: vec![
                        Sibling {
                            value: Some(b("a@x")),
                            timestamp_micros: 10,
                            ttl_secs: None,
                        },
                        Sibling {
                            value: None,
                            timestamp_micros: 11,
                            ttl_secs: Some(30),
                        },
                    ],
                    context: Bytes::from_static(&[0xde, 0xad]),
                }],
                next_page: Some(b("email\0")),
                meta: ResponseMeta {
                    replicas: vec!["n1".into(), "n2".into()],
                    read_repair: true,
                    stand_ins: Vec::new(),
                },
            },
        ),
        ("row-10", Opcode::Get, row(10)),
        (
            "written",
            Opcode::Insert,
            Response::Written {
                meta: ResponseMeta {
                    replicas: vec!["n1".into()],
                    read_repair: false,
                    stand_ins: Vec::new(),
                },
            },
        ),
        (
            "err-protocol",
            Opcode::Ping,
            err(ErrorKind::Protocol, "bad frame"),
        ),
        (
            "err-version",
            Opcode::Handshake,
            err(
                ErrorKind::UnsupportedVersion { supported: vec![1] },
                "version 9 not supported",
            ),
        ),
        (
            "err-unknown-table",
            Opcode::Get,
            err(
                ErrorKind::UnknownTable {
                    table: "nope".into(),
                },
                "no such table",
            ),
        ),
        (
            "err-table-exists",
            Opcode::CreateTable,
            err(
                ErrorKind::TableExists {
                    table: "users".into(),
                },
                "exists",
            ),
        ),
        (
            "err-siblings",
            Opcode::Insert,
            err(ErrorKind::TooManySiblings { limit: 64 }, "resolve first"),
        ),
        (
            "err-unavailable",
            Opcode::Insert,
            err(
                ErrorKind::Unavailable {
                    required: 2,
                    alive: 1,
                },
                "",
            ),
        ),
        (
            "err-write-timeout",
            Opcode::Insert,
            err(
                ErrorKind::WriteTimeout {
                    acks: 1,
                    required: 2,
                },
                "",
            ),
        ),
        (
            "err-read-timeout",
            Opcode::Get,
            err(
                ErrorKind::ReadTimeout {
                    acks: 0,
                    required: 2,
                },
                "",
            ),
        ),
        (
            "err-overloaded",
            Opcode::Get,
            err(ErrorKind::Overloaded, "shed"),
        ),
        (
            "err-authentication-failed",
            Opcode::AuthFinish,
            err(ErrorKind::AuthenticationFailed, "authentication failed"),
        ),
        (
            "err-unauthenticated",
            Opcode::Get,
            err(ErrorKind::Unauthenticated, "authenticate first"),
        ),
        (
            "err-unauthorized",
            Opcode::CreateUser,
            err(
                ErrorKind::Unauthorized {
                    permission: "users".into(),
                },
                "user \"alice\" lacks users",
            ),
        ),
        (
            "auth-continue",
            Opcode::AuthStart,
            Response::AuthContinue {
                message: b("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            },
        ),
        (
            "auth-ok",
            Opcode::AuthFinish,
            Response::AuthOk {
                message: b("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
                user: "user".into(),
                superuser: false,
            },
        ),
        (
            "user-changed",
            Opcode::CreateUser,
            Response::UserChanged {
                name: "alice".into(),
                applied: true,
            },
        ),
        (
            "users",
            Opcode::ListUsers,
            Response::Users(vec![sibyl_protocol::UserInfo {
                name: "alice".into(),
                superuser: false,
                grants: vec![sibyl_protocol::Grant {
                    permission: sibyl_protocol::Permission::Write,
                    table: Some("kv".into()),
                }],
            }]),
        ),
        ("err-server", Opcode::Get, err(ErrorKind::Server, "oops")),
        (
            "err-invalid",
            Opcode::Get,
            err(ErrorKind::Invalid, "empty key"),
        ),
        (
            "flushed",
            Opcode::Flush,
            Response::Tables(vec!["users".into()]),
        ),
        (
            "table-stats",
            Opcode::TableStats,
            Response::AdminTableStats(TableStatistics {
                table: "users".into(),
                sstables: 3,
                sstables_per_level: vec![2, 1],
                sstable_bytes: 4096,
                sstable_entries: 100,
                sstable_tombstones: 2,
                memtable_bytes: 512,
                memtable_entries: 5,
                frozen_memtables: 0,
                flushes: 3,
                compactions: 1,
                compacted_bytes: 2048,
                bloom_true_positives: 90,
                bloom_false_positives: 1,
                reads: 10,
                read_p50_micros: 250,
                read_p99_micros: 1000,
                writes: 20,
                write_p50_micros: 500,
                write_p99_micros: 2500,
                cells_read: 12,
                cells_with_siblings: 1,
                max_siblings: 2,
            }),
        ),
        (
            "admin-done",
            Opcode::Decommission,
            Response::AdminDone {
                message: "left the ring".into(),
            },
        ),
        (
            "repair-status",
            Opcode::RepairStatus,
            Response::AdminRepair(sibyl_protocol::RepairStatus {
                id: 7,
                table: None,
                state: sibyl_protocol::RepairState::Done,
                jobs: 96,
                jobs_done: 96,
                differed: 3,
                cells_sent: 10,
                cells_received: 20,
                bytes_sent: 4096,
                bytes_received: 8192,
                elapsed_ms: 1234,
                failed: vec!["table kv range (1, 2] with node ab: peer unreachable".into()],
                tables: vec![sibyl_protocol::TableSync {
                    table: "kv".into(),
                    jobs: 32,
                    synced: 32,
                    oldest_secs: Some(1_700_000_000),
                }],
            }),
        ),
        (
            "hints",
            Opcode::Hints,
            Response::AdminHints(vec![sibyl_protocol::HintOwner {
                owner: "00000000000000ab".into(),
                pending: 3,
                pending_bytes: 512,
                oldest_micros: 1_700_000_000_000_000,
                dropped_window: 1,
                dropped_size: 0,
                dropped_corrupt: 0,
                dropped_rejected: 0,
            }]),
        ),
        (
            "streams",
            Opcode::Streams,
            Response::AdminStreams(sibyl_protocol::StreamsReport {
                throughput: 64 << 20,
                streams: vec![sibyl_protocol::StreamEntry {
                    operation: "bootstrap".into(),
                    table: "kv".into(),
                    range_start: "-100".into(),
                    range_end: "200".into(),
                    peer: "00000000000000ab".into(),
                    state: "running".into(),
                    bytes: 1 << 20,
                    cells: 5_000,
                    run_bytes: 1 << 19,
                    rate: 8 << 20,
                    error: String::new(),
                    total: 3 << 20,
                }],
            }),
        ),
        (
            "cleanup",
            Opcode::Cleanup,
            Response::AdminCleanup(vec![sibyl_protocol::TableCleanup {
                table: "users".into(),
                dropped: 1_200,
                bytes_before: 3 << 20,
                bytes_after: 2 << 20,
            }]),
        ),
        (
            "rebalance",
            Opcode::Rebalance,
            Response::AdminRebalance(sibyl_protocol::RebalanceReport {
                moved_bytes: 3 << 30,
                tokens_moved: 4,
                nodes: vec![sibyl_protocol::RebalanceNode {
                    id: "00000000000000ab".into(),
                    address: "127.0.0.1:7400".into(),
                    owned_before: 9 << 30,
                    owned_after: 6 << 30,
                    tokens_before: vec![-100, 100],
                    tokens_after: vec![-100, 50],
                }],
            }),
        ),
        (
            "move",
            Opcode::Move,
            Response::AdminDone {
                message: "node 00000000000000ab is moving".into(),
            },
        ),
    ]
}
