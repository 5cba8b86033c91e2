//! The opcode table: one byte per message kind, shared by a request and its response.
//! Client opcodes live in `0x01..=0x7F` (0x00 is never used; operator commands use
//! `0x30..=0x3F`); `0x80..=0xFF` is reserved for
//! node-to-node messages on the peer port, defined by the cluster crate with the same
//! framing ([`crate::frame::PEER_OPCODE_BASE`]).

use crate::error::ProtocolError;
use crate::frame::PEER_OPCODE_BASE;

/// A client-protocol opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Version negotiation; the first frame on a connection.
    Handshake = 0x01,
    /// Liveness check.
    Ping = 0x02,
    /// Cluster topology for token-aware routing.
    Topology = 0x03,
    /// Authentication: SCRAM client-first (after the handshake).
    AuthStart = 0x04,
    /// Authentication: SCRAM client-final.
    AuthFinish = 0x05,
    /// Create a table.
    CreateTable = 0x10,
    /// Drop a table.
    DropTable = 0x11,
    /// List table names.
    ListTables = 0x12,
    /// Options of one table.
    DescribeTable = 0x13,
    /// Create a user (its SCRAM verifier, computed by the client).
    CreateUser = 0x14,
    /// Change a user's password (a new verifier).
    AlterUser = 0x15,
    /// Drop a user.
    DropUser = 0x16,
    /// List users.
    ListUsers = 0x17,
    /// Grant a permission to a user.
    Grant = 0x18,
    /// Revoke a permission from a user.
    Revoke = 0x19,
    /// Write columns of one row.
    Insert = 0x20,
    /// Read columns of one row.
    Get = 0x21,
    /// Delete columns or a whole row.
    Delete = 0x22,
    /// Several inserts and deletes, several keys.
    Batch = 0x23,
    /// Admin: flush memtables to SSTables (one table or all).
    Flush = 0x30,
    /// Admin: major compaction of one table.
    Compact = 0x31,
    /// Admin: storage statistics of one table.
    TableStats = 0x32,
    /// Admin: remove a dead node from the cluster on its behalf.
    RemoveNode = 0x33,
    /// Admin: the answering node leaves the ring.
    Decommission = 0x34,
    /// Admin: start an anti-entropy repair of the answering node's ranges.
    Repair = 0x35,
    /// Admin: the progress of a repair, and when each table was last fully repaired.
    RepairStatus = 0x36,
    /// Admin: the hints the answering node holds for other nodes, and those it dropped.
    Hints = 0x37,
    /// Admin: the answering node's streams (ranges, peers, bytes, rate), optionally
    /// setting its stream throughput cap first.
    Streams = 0x38,
    /// Admin: drop the data of ranges the answering node no longer replicates.
    Cleanup = 0x39,
    /// Admin: a plan of token moves that spreads the cluster's bytes evenly.
    Rebalance = 0x3A,
    /// Admin: the answering node moves to new tokens (streaming what changes hands).
    Move = 0x3B,
    /// Admin: the answering node's metrics, in the Prometheus text exposition format.
    Metrics = 0x3C,
    /// Admin: the cluster's name, partitioner and schema versions.
    DescribeCluster = 0x3D,
    /// Admin: the answering node's own health (poisoned engine, disk shortages).
    Health = 0x3E,
}

impl Opcode {
    /// Every client opcode, in table order.
    pub const ALL: [Opcode; 34] = [
        Opcode::Handshake,
        Opcode::Ping,
        Opcode::Topology,
        Opcode::AuthStart,
        Opcode::AuthFinish,
        Opcode::CreateTable,
        Opcode::DropTable,
        Opcode::ListTables,
        Opcode::DescribeTable,
        Opcode::CreateUser,
        Opcode::AlterUser,
        Opcode::DropUser,
        Opcode::ListUsers,
        Opcode::Grant,
        Opcode::Revoke,
        Opcode::Insert,
        Opcode::Get,
        Opcode::Delete,
        Opcode::Batch,
        Opcode::Flush,
        Opcode::Compact,
        Opcode::TableStats,
        Opcode::RemoveNode,
        Opcode::Decommission,
        Opcode::Repair,
        Opcode::RepairStatus,
        Opcode::Hints,
        Opcode::Streams,
        Opcode::Cleanup,
        Opcode::Rebalance,
        Opcode::Move,
        Opcode::Metrics,
        Opcode::DescribeCluster,
        Opcode::Health,
    ];

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The opcode for a byte; peer opcodes and unassigned values are errors here.
    pub fn from_u8(byte: u8) -> Result<Opcode, ProtocolError> {
        if byte >= PEER_OPCODE_BASE {
            return Err(ProtocolError::UnknownOpcode { opcode: byte });
        }
        Opcode::ALL
            .into_iter()
            .find(|o| o.as_u8() == byte)
            .ok_or(ProtocolError::UnknownOpcode { opcode: byte })
    }

    /// Stable name (as in the doc).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Handshake => "HANDSHAKE",
            Opcode::Ping => "PING",
            Opcode::Topology => "TOPOLOGY",
            Opcode::AuthStart => "AUTH_START",
            Opcode::AuthFinish => "AUTH_FINISH",
            Opcode::CreateUser => "CREATE_USER",
            Opcode::AlterUser => "ALTER_USER",
            Opcode::DropUser => "DROP_USER",
            Opcode::ListUsers => "LIST_USERS",
            Opcode::Grant => "GRANT",
            Opcode::Revoke => "REVOKE",
            Opcode::CreateTable => "CREATE_TABLE",
            Opcode::DropTable => "DROP_TABLE",
            Opcode::ListTables => "LIST_TABLES",
            Opcode::DescribeTable => "DESCRIBE_TABLE",
            Opcode::Insert => "INSERT",
            Opcode::Get => "GET",
            Opcode::Delete => "DELETE",
            Opcode::Batch => "BATCH",
            Opcode::Flush => "FLUSH",
            Opcode::Compact => "COMPACT",
            Opcode::TableStats => "TABLE_STATS",
            Opcode::RemoveNode => "REMOVE_NODE",
            Opcode::Decommission => "DECOMMISSION",
            Opcode::Repair => "REPAIR",
            Opcode::RepairStatus => "REPAIR_STATUS",
            Opcode::Hints => "HINTS",
            Opcode::Streams => "STREAMS",
            Opcode::Cleanup => "CLEANUP",
            Opcode::Rebalance => "REBALANCE",
            Opcode::Move => "MOVE",
            Opcode::Metrics => "METRICS",
            Opcode::DescribeCluster => "DESCRIBE_CLUSTER",
            Opcode::Health => "HEALTH",
        }
    }

    /// True for requests that change nothing, so a client may resend them after a lost
    /// connection.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Opcode::Handshake
                | Opcode::Ping
                | Opcode::Topology
                | Opcode::ListTables
                | Opcode::DescribeTable
                | Opcode::ListUsers
                | Opcode::Get
                | Opcode::TableStats
                | Opcode::Metrics
                | Opcode::DescribeCluster
                | Opcode::Health
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_bytes_round_trip() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op.as_u8()).unwrap(), op);
            assert!(op.as_u8() < PEER_OPCODE_BASE);
        }
    }

    #[test]
    fn opcode_peer_range_is_rejected() {
        assert!(Opcode::from_u8(0x80).is_err());
        assert!(Opcode::from_u8(0x00).is_err());
    }
}
