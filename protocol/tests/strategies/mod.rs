//! proptest strategies for every message type, shared by the decode-safety tests.

#![allow(dead_code)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use sibyl_protocol::message::types::{
    Cell, CellContext, ColumnWrite, Compaction, ConflictMode, Consistency, ConsistencyLevel,
    NodeInfo, NodeState, Placement, QuorumMode, ReadRepair, ResponseMeta, Selector, Sibling,
    TableOptions, TableStatistics, Topology,
};
use sibyl_protocol::{
    DeleteTarget, ErrorCode, ErrorKind, Mutation, Request, Response, RowDelete, RowInsert,
    ServerError,
};

pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_é]{0,12}"
}

pub fn consistency() -> impl Strategy<Value = Consistency> {
    let level = prop_oneof![
        Just(ConsistencyLevel::One),
        Just(ConsistencyLevel::Two),
        Just(ConsistencyLevel::Three),
        Just(ConsistencyLevel::Quorum),
        Just(ConsistencyLevel::All),
        Just(ConsistencyLevel::LocalQuorum),
        any::<u16>().prop_map(ConsistencyLevel::Explicit),
    ];
    let mode = prop_oneof![Just(QuorumMode::Sloppy), Just(QuorumMode::Strict)];
    let repair = prop_oneof![Just(ReadRepair::Background), Just(ReadRepair::Blocking)];
    (level, mode, repair).prop_map(|(level, mode, read_repair)| Consistency {
        level,
        mode,
        read_repair,
    })
}

pub fn table_options() -> impl Strategy<Value = TableOptions> {
    let placement = prop_oneof![
        Just(Placement::Simple),
        Just(Placement::RackAware),
        vec((name(), any::<u16>()), 0..3).prop_map(Placement::DcAware),
    ];
    (
        any::<u16>(),
        consistency(),
        consistency(),
        prop_oneof![Just(ConflictMode::Causal), Just(ConflictMode::Lww)],
        any::<Option<u32>>(),
        prop_oneof![Just(Compaction::SizeTiered), Just(Compaction::Leveled)],
        placement,
    )
        .prop_map(
            |(rf, r, w, conflict_mode, default_ttl_secs, compaction, placement)| TableOptions {
                replication_factor: rf,
                read_consistency: r,
                write_consistency: w,
                conflict_mode,
                default_ttl_secs,
                compaction,
                placement,
            },
        )
}

pub fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::All),
        vec(bytes(8), 0..4).prop_map(Selector::Columns),
        (
            proptest::option::of(bytes(8)),
            proptest::option::of(bytes(8)),
            any::<u32>(),
            proptest::option::of(bytes(8))
        )
            .prop_map(|(from, to, limit, paging)| Selector::Slice {
                from,
                to,
                limit,
                paging
            }),
    ]
}

pub fn cell_context() -> impl Strategy<Value = CellContext> {
    (bytes(8), bytes(16)).prop_map(|(name, context)| CellContext { name, context })
}

pub fn row_insert() -> impl Strategy<Value = RowInsert> {
    (
        name(),
        bytes(16),
        any::<Option<u32>>(),
        any::<Option<i64>>(),
        vec(
            (bytes(8), bytes(32), bytes(16)).prop_map(|(name, value, context)| ColumnWrite {
                name,
                value,
                context,
            }),
            0..4,
        ),
    )
        .prop_map(
            |(table, key, ttl_secs, timestamp_micros, columns)| RowInsert {
                write_id: None,
                table,
                key,
                ttl_secs,
                timestamp_micros,
                columns,
            },
        )
}

pub fn row_delete() -> impl Strategy<Value = RowDelete> {
    let target = prop_oneof![
        vec(cell_context(), 0..4).prop_map(DeleteTarget::Columns),
        vec(cell_context(), 0..4).prop_map(|contexts| DeleteTarget::Row { contexts }),
    ];
    (name(), bytes(16), any::<Option<i64>>(), target).prop_map(
        |(table, key, timestamp_micros, target)| RowDelete {
            write_id: None,
            table,
            key,
            timestamp_micros,
            target,
        },
    )
}

pub fn request() -> impl Strategy<Value = Request> {
    let c = || proptest::option::of(consistency());
    prop_oneof![
        (any::<u8>(), name()).prop_map(|(version, client)| Request::Handshake { version, client }),
        Just(Request::Ping),
        Just(Request::Topology),
        (name(), table_options(), any::<bool>()).prop_map(|(name, options, if_not_exists)| {
            Request::CreateTable {
                name,
                options,
                if_not_exists,
            }
        }),
        (name(), any::<bool>())
            .prop_map(|(name, if_exists)| Request::DropTable { name, if_exists }),
        Just(Request::ListTables),
        name().prop_map(|name| Request::DescribeTable { name }),
        (row_insert(), c()).prop_map(|(insert, consistency)| Request::Insert {
            insert,
            consistency
        }),
        (name(), bytes(16), selector(), c()).prop_map(|(table, key, selector, consistency)| {
            Request::Get {
                table,
                key,
                selector,
                consistency,
            }
        }),
        (row_delete(), c()).prop_map(|(delete, consistency)| Request::Delete {
            delete,
            consistency
        }),
        (
            vec(
                prop_oneof![
                    row_insert().prop_map(Mutation::Insert),
                    row_delete().prop_map(Mutation::Delete)
                ],
                0..4
            ),
            c()
        )
            .prop_map(|(mutations, consistency)| Request::Batch {
                mutations,
                consistency
            }),
        proptest::option::of(name()).prop_map(|table| Request::Flush { table }),
        name().prop_map(|table| Request::Compact { table }),
        name().prop_map(|table| Request::TableStats { table }),
        (name(), any::<bool>()).prop_map(|(node_id, force)| Request::RemoveNode { node_id, force }),
        Just(Request::Decommission),
        proptest::option::of(name()).prop_map(|table| Request::Cleanup { table }),
        Just(Request::Rebalance),
        proptest::collection::vec(any::<i128>(), 0..8).prop_map(|tokens| Request::Move { tokens }),
        Just(Request::Metrics),
        Just(Request::DescribeCluster),
        (name(), bytes(64))
            .prop_map(|(mechanism, message)| Request::AuthStart { mechanism, message }),
        bytes(64).prop_map(|message| Request::AuthFinish { message }),
        (name(), any::<bool>(), any::<bool>(), verifier()).prop_map(
            |(name, superuser, if_not_exists, verifier)| Request::CreateUser {
                name,
                superuser,
                if_not_exists,
                verifier,
            }
        ),
        (name(), verifier()).prop_map(|(name, verifier)| Request::AlterUser { name, verifier }),
        (name(), any::<bool>()).prop_map(|(name, if_exists)| Request::DropUser { name, if_exists }),
        Just(Request::ListUsers),
        (name(), grant()).prop_map(|(user, grant)| Request::Grant { user, grant }),
        (name(), grant()).prop_map(|(user, grant)| Request::Revoke { user, grant }),
    ]
}

/// A permission on a table or cluster-wide (the wire takes any pairing).
pub fn grant() -> impl Strategy<Value = sibyl_protocol::Grant> {
    (
        proptest::sample::select(sibyl_protocol::Permission::ALL.to_vec()),
        proptest::option::of(name()),
    )
        .prop_map(|(permission, table)| sibyl_protocol::Grant { permission, table })
}

/// A SCRAM verifier with arbitrary fields (the wire takes any; the server checks them).
pub fn verifier() -> impl Strategy<Value = sibyl_protocol::scram::ScramVerifier> {
    (
        any::<u32>(),
        vec(any::<u8>(), 0..70),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(iterations, salt, stored_key, server_key)| {
            sibyl_protocol::scram::ScramVerifier {
                iterations,
                salt,
                stored_key,
                server_key,
            }
        })
}

pub fn table_statistics() -> impl Strategy<Value = TableStatistics> {
    (
        (name(), any::<u32>(), vec(any::<u32>(), 0..4), any::<u32>()),
        vec(any::<u64>(), 19),
    )
        .prop_map(
            |((table, sstables, sstables_per_level, frozen_memtables), n)| TableStatistics {
                table,
                sstables,
                sstables_per_level,
                sstable_bytes: n[0],
                sstable_entries: n[1],
                sstable_tombstones: n[2],
                memtable_bytes: n[3],
                memtable_entries: n[4],
                frozen_memtables,
                flushes: n[5],
                compactions: n[6],
                compacted_bytes: n[7],
                bloom_true_positives: n[8],
                bloom_false_positives: n[9],
                reads: n[10],
                read_p50_micros: n[11],
                read_p99_micros: n[12],
                writes: n[13],
                write_p50_micros: n[14],
                write_p99_micros: n[15],
                cells_read: n[16],
                cells_with_siblings: n[17],
                max_siblings: n[18],
            },
        )
}

pub fn meta() -> impl Strategy<Value = ResponseMeta> {
    (vec(name(), 0..3), any::<bool>(), vec(name(), 0..2)).prop_map(
        |(replicas, read_repair, stand_ins)| ResponseMeta {
            replicas,
            read_repair,
            stand_ins,
        },
    )
}

pub fn cell() -> impl Strategy<Value = Cell> {
    let sibling = (
        proptest::option::of(bytes(16)),
        any::<i64>(),
        any::<Option<u32>>(),
    )
        .prop_map(|(value, timestamp_micros, ttl_secs)| Sibling {
            value,
            timestamp_micros,
            ttl_secs,
        });
    (bytes(8), vec(sibling, 0..3), bytes(16)).prop_map(|(name, siblings, context)| Cell {
        name,
        siblings,
        context,
    })
}

pub fn topology() -> impl Strategy<Value = Topology> {
    let state = prop_oneof![
        Just(NodeState::Joining),
        Just(NodeState::Normal),
        Just(NodeState::Leaving),
        Just(NodeState::Left)
    ];
    let node = (
        name(),
        name(),
        name(),
        name(),
        state,
        any::<bool>(),
        vec(any::<i128>(), 0..4),
        any::<u64>(),
    )
        .prop_map(
            |(id, address, datacenter, rack, state, up, tokens, load_bytes)| NodeInfo {
                id,
                address,
                datacenter,
                rack,
                state,
                up,
                tokens,
                load_bytes,
            },
        );
    (name(), vec(node, 0..3)).prop_map(|(partitioner, nodes)| Topology { partitioner, nodes })
}

pub fn server_error() -> impl Strategy<Value = ServerError> {
    let kind = prop_oneof![
        Just(ErrorKind::Protocol),
        vec(any::<u8>(), 0..4).prop_map(|supported| ErrorKind::UnsupportedVersion { supported }),
        Just(ErrorKind::Server),
        Just(ErrorKind::Invalid),
        name().prop_map(|table| ErrorKind::UnknownTable { table }),
        name().prop_map(|table| ErrorKind::TableExists { table }),
        any::<u32>().prop_map(|limit| ErrorKind::TooManySiblings { limit }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(required, alive)| ErrorKind::Unavailable { required, alive }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(acks, required)| ErrorKind::WriteTimeout { acks, required }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(acks, required)| ErrorKind::ReadTimeout { acks, required }),
        Just(ErrorKind::Overloaded),
        Just(ErrorKind::AuthenticationFailed),
        Just(ErrorKind::Unauthenticated),
        name().prop_map(|permission| ErrorKind::Unauthorized { permission }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(free, reserve)| ErrorKind::DiskFull { free, reserve }),
        (
            any::<u16>().prop_filter("unknown code", |c| ErrorCode::from_u16(*c).is_none()),
            bytes(8)
        )
            .prop_map(|(code, fields)| ErrorKind::Unknown { code, fields }),
    ];
    (kind, name()).prop_map(|(kind, message)| ServerError { kind, message })
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u8>(), name(), any::<u32>()).prop_map(|(version, server, max_frame_len)| {
            Response::Handshake {
                version,
                server,
                max_frame_len,
            }
        }),
        Just(Response::Pong),
        bytes(64).prop_map(|message| Response::AuthContinue { message }),
        (bytes(64), name(), any::<bool>()).prop_map(|(message, user, superuser)| {
            Response::AuthOk {
                message,
                user,
                superuser,
            }
        }),
        (name(), any::<bool>()).prop_map(|(name, applied)| Response::UserChanged { name, applied }),
        vec((name(), any::<bool>(), vec(grant(), 0..3)), 0..4).prop_map(|users| {
            Response::Users(
                users
                    .into_iter()
                    .map(|(name, superuser, grants)| sibyl_protocol::UserInfo {
                        name,
                        superuser,
                        grants,
                    })
                    .collect(),
            )
        }),
        topology().prop_map(Response::Topology),
        (name(), any::<bool>())
            .prop_map(|(table, applied)| Response::SchemaChanged { table, applied }),
        vec(name(), 0..4).prop_map(Response::Tables),
        (name(), table_options()).prop_map(|(name, options)| Response::Table { name, options }),
        (vec(cell(), 0..4), proptest::option::of(bytes(8)), meta()).prop_map(
            |(cells, next_page, meta)| Response::Row {
                cells,
                next_page,
                meta
            }
        ),
        meta().prop_map(|meta| Response::Written { meta }),
        table_statistics().prop_map(Response::AdminTableStats),
        name().prop_map(|message| Response::AdminDone { message }),
        name().prop_map(Response::AdminMetrics),
        (
            name(),
            name(),
            any::<u64>(),
            vec((name(), name(), proptest::option::of(any::<u64>())), 0..3)
        )
            .prop_map(|(cluster_name, partitioner, schema_version, nodes)| {
                Response::AdminCluster(sibyl_protocol::ClusterDescription {
                    cluster_name,
                    partitioner,
                    schema_version,
                    nodes: nodes
                        .into_iter()
                        .map(|(id, address, schema_version)| sibyl_protocol::NodeSchema {
                            id,
                            address,
                            schema_version,
                        })
                        .collect(),
                })
            }),
        server_error().prop_map(Response::Error),
    ]
}
