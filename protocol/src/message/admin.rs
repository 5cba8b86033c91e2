//! Values of the operator (admin) messages: [`TableStatistics`], the answer to
//! TABLE_STATS and COMPACT. The admin requests themselves are [`crate::Request`] variants
//! (opcodes `0x30..=0x3B`); their grammar is in `doc/wire_format.md` §6. Pure data.

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// One table's storage statistics on the answering node (like `nodetool tablestats`).
/// Wire: `string` table, `u32` sstables, `list<u32>` sstables_per_level, `u64`
/// sstable_bytes, `u64` sstable_entries, `u64` sstable_tombstones, `u64` memtable_bytes,
/// `u64` memtable_entries, `u32` frozen_memtables, `u64` flushes, `u64` compactions,
/// `u64` compacted_bytes, `u64` bloom_true_positives, `u64` bloom_false_positives, `u64`
/// reads, `u64` read_p50_micros, `u64` read_p99_micros, `u64` writes, `u64`
/// write_p50_micros, `u64` write_p99_micros, `u64` cells_read, `u64` cells_with_siblings,
/// `u64` max_siblings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TableStatistics {
    /// Table name.
    pub table: String,
    /// Live SSTables.
    pub sstables: u32,
    /// Live SSTables per level (index = level).
    pub sstables_per_level: Vec<u32>,
    /// Bytes in live SSTables.
    pub sstable_bytes: u64,
    /// Entries in live SSTables (a key's versions in several files count several times).
    pub sstable_entries: u64,
    /// Tombstones in live SSTables.
    pub sstable_tombstones: u64,
    /// Bytes held by the active and frozen memtables.
    pub memtable_bytes: u64,
    /// Keys in the active and frozen memtables.
    pub memtable_entries: u64,
    /// Memtables frozen and waiting for their flush.
    pub frozen_memtables: u32,
    /// Flushes since the node started.
    pub flushes: u64,
    /// Compactions since the node started.
    pub compactions: u64,
    /// Bytes written by compactions since the node started.
    pub compacted_bytes: u64,
    /// Point lookups an SSTable's bloom filter let through and the SSTable held.
    pub bloom_true_positives: u64,
    /// Point lookups an SSTable's bloom filter let through but the SSTable did not hold;
    /// the false positive rate is these over these plus the true positives.
    pub bloom_false_positives: u64,
    /// GETs of the table this node coordinated since it started.
    pub reads: u64,
    /// Their latency's 50th percentile, µs (a histogram bucket's upper bound; 0 with no
    /// reads).
    pub read_p50_micros: u64,
    /// Their latency's 99th percentile, µs (as `read_p50_micros`).
    pub read_p99_micros: u64,
    /// INSERTs and DELETEs of the table this node coordinated since it started.
    pub writes: u64,
    /// Their latency's 50th percentile, µs.
    pub write_p50_micros: u64,
    /// Their latency's 99th percentile, µs.
    pub write_p99_micros: u64,
    /// Cells those reads returned.
    pub cells_read: u64,
    /// Of those, cells returned with more than one sibling (concurrent versions).
    pub cells_with_siblings: u64,
    /// The most siblings one returned cell held.
    pub max_siblings: u64,
}

impl TableStatistics {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("table", &self.table)?;
        w.u32(self.sstables);
        w.list("sstables per level", &self.sstables_per_level, |w, n| {
            w.u32(*n);
            Ok(())
        })?;
        for v in [
            self.sstable_bytes,
            self.sstable_entries,
            self.sstable_tombstones,
            self.memtable_bytes,
            self.memtable_entries,
        ] {
            w.u64(v);
        }
        w.u32(self.frozen_memtables);
        for v in [
            self.flushes,
            self.compactions,
            self.compacted_bytes,
            self.bloom_true_positives,
            self.bloom_false_positives,
            self.reads,
            self.read_p50_micros,
            self.read_p99_micros,
            self.writes,
            self.write_p50_micros,
            self.write_p99_micros,
            self.cells_read,
            self.cells_with_siblings,
            self.max_siblings,
        ] {
            w.u64(v);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(TableStatistics {
            table: r.string("table")?,
            sstables: r.u32("sstables")?,
            sstables_per_level: r.list("sstables per level", 4, |r| r.u32("level count"))?,
            sstable_bytes: r.u64("sstable bytes")?,
            sstable_entries: r.u64("sstable entries")?,
            sstable_tombstones: r.u64("sstable tombstones")?,
            memtable_bytes: r.u64("memtable bytes")?,
            memtable_entries: r.u64("memtable entries")?,
            frozen_memtables: r.u32("frozen memtables")?,
            flushes: r.u64("flushes")?,
            compactions: r.u64("compactions")?,
            compacted_bytes: r.u64("compacted bytes")?,
            bloom_true_positives: r.u64("bloom true positives")?,
            bloom_false_positives: r.u64("bloom false positives")?,
            reads: r.u64("reads")?,
            read_p50_micros: r.u64("read p50")?,
            read_p99_micros: r.u64("read p99")?,
            writes: r.u64("writes")?,
            write_p50_micros: r.u64("write p50")?,
            write_p99_micros: r.u64("write p99")?,
            cells_read: r.u64("cells read")?,
            cells_with_siblings: r.u64("cells with siblings")?,
            max_siblings: r.u64("max siblings")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_description_round_trips_and_rejects_truncation() {
        let d = ClusterDescription {
            cluster_name: "prod".into(),
            partitioner: "murmur3".into(),
            schema_version: u64::MAX,
            nodes: vec![
                NodeSchema {
                    id: "00000000000000ab".into(),
                    address: "127.0.0.1:7400".into(),
                    schema_version: Some(7),
                },
                NodeSchema::default(),
            ],
        };
        let mut w = WireWriter::new();
        d.encode(&mut w).unwrap();
        let bytes = w.finish();
        let mut r = WireReader::new(bytes.clone());
        assert_eq!(ClusterDescription::decode(&mut r).unwrap(), d);
        r.finish("cluster description").unwrap();
        let mut short = WireReader::new(bytes.slice(..bytes.len() - 1));
        assert!(ClusterDescription::decode(&mut short).is_err());
    }

    #[test]
    fn table_statistics_round_trip_and_reject_truncation() {
        let s = TableStatistics {
            table: "users".into(),
            sstables: 3,
            sstables_per_level: vec![1, 2],
            sstable_bytes: 1 << 40,
            sstable_entries: 7,
            sstable_tombstones: 1,
            memtable_bytes: 512,
            memtable_entries: 4,
            frozen_memtables: 1,
            flushes: 9,
            compactions: 2,
            compacted_bytes: u64::MAX,
            bloom_true_positives: 5,
            bloom_false_positives: 1,
            reads: 10,
            read_p50_micros: 250,
            read_p99_micros: 1000,
            writes: 20,
            write_p50_micros: 500,
            write_p99_micros: 2500,
            cells_read: 30,
            cells_with_siblings: 2,
            max_siblings: 3,
        };
        let mut w = WireWriter::new();
        s.encode(&mut w).unwrap();
        let bytes = w.finish();
        let mut r = WireReader::new(bytes.clone());
        assert_eq!(TableStatistics::decode(&mut r).unwrap(), s);
        r.finish("table stats").unwrap();
        let mut short = WireReader::new(bytes.slice(..bytes.len() - 1));
        assert!(matches!(
            TableStatistics::decode(&mut short),
            Err(ProtocolError::Truncated { .. })
        ));
    }
}

/// Where a repair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RepairState {
    /// No repair has run on this node since it started (REPAIR_STATUS with id 0).
    #[default]
    None,
    /// Running.
    Running,
    /// Finished (some jobs may have failed: see `failed`).
    Done,
}

/// When a replicated table was last fully repaired on the answering node.
/// Wire: `string` table, `u32` jobs (range x other replica pairs this node compares in
/// background rounds), `u32` synced (those completed since the node started),
/// `option<u64>` oldest (seconds since the Unix epoch: the oldest start of the latest
/// completed exchange of each job, once every job has completed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TableSync {
    /// The table.
    pub table: String,
    /// Background jobs of the table at this node.
    pub jobs: u32,
    /// Jobs completed at least once since the node started.
    pub synced: u32,
    /// The oldest start of each job's latest completed exchange, once every job has
    /// completed one.
    pub oldest_secs: Option<u64>,
}

/// The status of an on-demand repair, and the repair sync times of the node's tables.
/// Wire: `u64` id (0 = none), `option<string>` table, `u8` state (0 none, 1 running,
/// 2 done), `u64` jobs, `u64` jobs_done, `u64` differed, `u64` cells_sent, `u64`
/// cells_received, `u64` bytes_sent, `u64` bytes_received, `u64` elapsed_ms,
/// `list<string>` failed (one line per job not done, with its reason),
/// `list<table sync>` tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RepairStatus {
    /// The repair's id (0 = no repair).
    pub id: u64,
    /// The table repaired (`None` = every replicated table).
    pub table: Option<String>,
    /// Where it is.
    pub state: RepairState,
    /// Jobs planned (a job is one range with one other replica).
    pub jobs: u64,
    /// Jobs finished (done or failed).
    pub jobs_done: u64,
    /// Jobs whose range differed.
    pub differed: u64,
    /// Cells pushed to other replicas.
    pub cells_sent: u64,
    /// Cells pulled from other replicas and applied.
    pub cells_received: u64,
    /// Bytes of requests sent.
    pub bytes_sent: u64,
    /// Bytes of answers received.
    pub bytes_received: u64,
    /// Time since it started (until it finished), milliseconds.
    pub elapsed_ms: u64,
    /// Jobs not done, one line each with the reason; rerunning the repair retries them.
    pub failed: Vec<String>,
    /// Every replicated table's sync times at this node.
    pub tables: Vec<TableSync>,
}

impl RepairStatus {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.u64(self.id);
        w.option(self.table.as_ref(), |w, t| w.string("table", t))?;
        w.u8(match self.state {
            RepairState::None => 0,
            RepairState::Running => 1,
            RepairState::Done => 2,
        });
        for v in [
            self.jobs,
            self.jobs_done,
            self.differed,
            self.cells_sent,
            self.cells_received,
            self.bytes_sent,
            self.bytes_received,
            self.elapsed_ms,
        ] {
            w.u64(v);
        }
        w.list("failed jobs", &self.failed, |w, f| w.string("failure", f))?;
        w.list("table sync times", &self.tables, |w, t| {
            w.string("table", &t.table)?;
            w.u32(t.jobs);
            w.u32(t.synced);
            w.option(t.oldest_secs.as_ref(), |w, s| {
                w.u64(*s);
                Ok(())
            })
        })
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        let id = r.u64("repair id")?;
        let table = r.option("table", |r| r.string("table"))?;
        let state = match r.u8("repair state")? {
            0 => RepairState::None,
            1 => RepairState::Running,
            2 => RepairState::Done,
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "repair state",
                    tag: u64::from(tag),
                })
            }
        };
        Ok(RepairStatus {
            id,
            table,
            state,
            jobs: r.u64("jobs")?,
            jobs_done: r.u64("jobs done")?,
            differed: r.u64("differed")?,
            cells_sent: r.u64("cells sent")?,
            cells_received: r.u64("cells received")?,
            bytes_sent: r.u64("bytes sent")?,
            bytes_received: r.u64("bytes received")?,
            elapsed_ms: r.u64("elapsed")?,
            failed: r.list("failed jobs", 2, |r| r.string("failure"))?,
            tables: r.list("table sync times", 11, |r| {
                Ok(TableSync {
                    table: r.string("table")?,
                    jobs: r.u32("jobs")?,
                    synced: r.u32("synced")?,
                    oldest_secs: r.option("oldest sync", |r| r.u64("oldest sync"))?,
                })
            })?,
        })
    }
}

/// The hints the answering node holds for one other node, and those it dropped.
/// Wire: `string` owner (16 hex digits), `u64` pending, `u64` pending_bytes, `i64`
/// oldest_micros (written time of the oldest pending hint, µs since the Unix epoch; 0 when
/// none), `u64` dropped_window, `u64` dropped_size, `u64` dropped_corrupt, `u64`
/// dropped_rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HintOwner {
    /// The node the hints are for.
    pub owner: String,
    /// Hints pending delivery.
    pub pending: u64,
    /// Bytes of the pending hints.
    pub pending_bytes: u64,
    /// When the oldest pending hint was written (µs since the epoch; 0 = none).
    pub oldest_micros: i64,
    /// Hints dropped because the owner was unreachable past the hint window, or a hint
    /// outlived its TTL (anti-entropy repairs their ranges).
    pub dropped_window: u64,
    /// Hints dropped at the size bound.
    pub dropped_size: u64,
    /// Stored hints found corrupt and discarded.
    pub dropped_corrupt: u64,
    /// Hints the owner refused as invalid.
    pub dropped_rejected: u64,
}

impl HintOwner {
    /// The smallest encoding (an empty owner string and zeros).
    pub(crate) const MIN_LEN: usize = 2 + 8 * 7;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("owner", &self.owner)?;
        w.u64(self.pending);
        w.u64(self.pending_bytes);
        w.i64(self.oldest_micros);
        for v in [
            self.dropped_window,
            self.dropped_size,
            self.dropped_corrupt,
            self.dropped_rejected,
        ] {
            w.u64(v);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(HintOwner {
            owner: r.string("owner")?,
            pending: r.u64("pending")?,
            pending_bytes: r.u64("pending bytes")?,
            oldest_micros: r.i64("oldest pending")?,
            dropped_window: r.u64("dropped window")?,
            dropped_size: r.u64("dropped size")?,
            dropped_corrupt: r.u64("dropped corrupt")?,
            dropped_rejected: r.u64("dropped rejected")?,
        })
    }
}

/// One stream of the answering node. Wire: `string` operation (`bootstrap`), `string`
/// table, `string` range_start, `string` range_end (the tokens of the ring range
/// `(start, end]` in decimal), `string` peer (the node streamed from, 16 hex digits; empty
/// before one was chosen), `string` state (`queued`, `running`, `retrying`, `done`),
/// `u64` bytes (of keys and values applied, a resumed stream's earlier runs included),
/// `u64` cells, `u64` run_bytes (of those, applied since the node started: what a resumed
/// stream moved again), `u64` rate (bytes per second while running since the node
/// started), `string` error (the last failure while `retrying`, else empty), `u64` total
/// (the range's bytes at its source, estimated when the stream began; 0 = not known yet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StreamEntry {
    /// Why the stream runs.
    pub operation: String,
    /// The table.
    pub table: String,
    /// The range's exclusive start token.
    pub range_start: String,
    /// The range's inclusive end token.
    pub range_end: String,
    /// The node streamed from.
    pub peer: String,
    /// Where it stands.
    pub state: String,
    /// Bytes applied.
    pub bytes: u64,
    /// Entries applied.
    pub cells: u64,
    /// Bytes applied since the node started.
    pub run_bytes: u64,
    /// Bytes per second while running.
    pub rate: u64,
    /// The last failure, while retrying.
    pub error: String,
    /// The range's bytes at its source, estimated (0 = not known yet): what is left is
    /// `total - bytes`, about.
    pub total: u64,
}

impl StreamEntry {
    /// The smallest encoding (empty strings and zeros).
    pub(crate) const MIN_LEN: usize = 2 * 7 + 8 * 5;

    /// Bytes left to stream, estimated (`None` while the total is not known).
    pub fn left(&self) -> Option<u64> {
        (self.total > 0).then(|| self.total.saturating_sub(self.bytes))
    }

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("operation", &self.operation)?;
        w.string("table", &self.table)?;
        w.string("range start", &self.range_start)?;
        w.string("range end", &self.range_end)?;
        w.string("peer", &self.peer)?;
        w.string("state", &self.state)?;
        w.u64(self.bytes);
        w.u64(self.cells);
        w.u64(self.run_bytes);
        w.u64(self.rate);
        w.string("error", &self.error)?;
        w.u64(self.total);
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(StreamEntry {
            operation: r.string("operation")?,
            table: r.string("table")?,
            range_start: r.string("range start")?,
            range_end: r.string("range end")?,
            peer: r.string("peer")?,
            state: r.string("state")?,
            bytes: r.u64("bytes")?,
            cells: r.u64("cells")?,
            run_bytes: r.u64("run bytes")?,
            rate: r.u64("rate")?,
            error: r.string("error")?,
            total: r.u64("total bytes")?,
        })
    }
}

/// The STREAMS answer. Wire: `u64` throughput (the node's incoming stream cap, bytes per
/// second, 0 = unlimited), `list<stream entry>` streams (every stream since the node
/// started, in the order they were planned).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StreamsReport {
    /// The throughput cap, bytes per second (0 = unlimited).
    pub throughput: u64,
    /// The streams.
    pub streams: Vec<StreamEntry>,
}

impl StreamsReport {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.u64(self.throughput);
        w.list("streams", &self.streams, |w, s| s.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(StreamsReport {
            throughput: r.u64("stream throughput")?,
            streams: r.list("streams", StreamEntry::MIN_LEN, StreamEntry::decode)?,
        })
    }
}

/// One node in a REBALANCE plan. Wire: `string` id, `string` address (client port),
/// `u64` owned_before, `u64` owned_after (bytes of every range it replicates, estimated,
/// now and once the plan is applied), `list<i128>` tokens_before, `list<i128>`
/// tokens_after (equal when the node does not move).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RebalanceNode {
    /// Node id, 16 hex digits.
    pub id: String,
    /// Client address, `host:port`.
    pub address: String,
    /// Bytes it replicates now (estimated).
    pub owned_before: u64,
    /// Bytes it replicates once the plan is applied (estimated).
    pub owned_after: u64,
    /// Its tokens now.
    pub tokens_before: Vec<i128>,
    /// Its tokens once the plan is applied.
    pub tokens_after: Vec<i128>,
}

impl RebalanceNode {
    /// The smallest encoding.
    pub(crate) const MIN_LEN: usize = 2 + 2 + 8 + 8 + 4 + 4;

    /// Whether the plan moves this node.
    pub fn moves(&self) -> bool {
        self.tokens_before != self.tokens_after
    }

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("node id", &self.id)?;
        w.string("node address", &self.address)?;
        w.u64(self.owned_before);
        w.u64(self.owned_after);
        for tokens in [&self.tokens_before, &self.tokens_after] {
            w.list("tokens", tokens, |w, t| {
                w.i128(*t);
                Ok(())
            })?;
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(RebalanceNode {
            id: r.string("node id")?,
            address: r.string("node address")?,
            owned_before: r.u64("owned before")?,
            owned_after: r.u64("owned after")?,
            tokens_before: r.list("tokens", 16, |r| r.i128("token"))?,
            tokens_after: r.list("tokens", 16, |r| r.i128("token"))?,
        })
    }
}

/// The cluster as the answering node describes it (DESCRIBE_CLUSTER, like `nodetool
/// describecluster`). Wire: `string` cluster_name, `string` partitioner, `u64`
/// schema_version (the answering node's), `list<node schema>` nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClusterDescription {
    /// The cluster's name (`--cluster-name`).
    pub cluster_name: String,
    /// The partitioner (`murmur3` or `md5`).
    pub partitioner: String,
    /// The answering node's schema version (a hash of its tables' definitions).
    pub schema_version: u64,
    /// Every node the answering node knows, with the schema version it gossips.
    pub nodes: Vec<NodeSchema>,
}

/// One node's schema version as gossip reports it. Wire: `string` id, `string` address,
/// `option<u64>` schema_version (absent before the node announced one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NodeSchema {
    /// Node id, 16 hex digits.
    pub id: String,
    /// Its client address.
    pub address: String,
    /// The schema version it gossips.
    pub schema_version: Option<u64>,
}

impl NodeSchema {
    /// The smallest encoding (empty strings, no version).
    pub(crate) const MIN_LEN: usize = 2 + 2 + 1;

    fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("node id", &self.id)?;
        w.string("node address", &self.address)?;
        w.option(self.schema_version.as_ref(), |w, v| {
            w.u64(*v);
            Ok(())
        })
    }

    fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(NodeSchema {
            id: r.string("node id")?,
            address: r.string("node address")?,
            schema_version: r.option("schema version", |r| r.u64("schema version"))?,
        })
    }
}

/// A REBALANCE plan. Wire: `u64` moved_bytes (bytes that change hands if it is applied,
/// estimated), `u32` tokens_moved, `list<rebalance node>` nodes (every token-owning node,
/// by id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RebalanceReport {
    /// Bytes that change hands, estimated.
    pub moved_bytes: u64,
    /// Tokens the plan moves.
    pub tokens_moved: u32,
    /// Every token-owning node.
    pub nodes: Vec<RebalanceNode>,
}

impl RebalanceReport {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.u64(self.moved_bytes);
        w.u32(self.tokens_moved);
        w.list("rebalance nodes", &self.nodes, |w, n| n.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(RebalanceReport {
            moved_bytes: r.u64("moved bytes")?,
            tokens_moved: r.u32("tokens moved")?,
            nodes: r.list(
                "rebalance nodes",
                RebalanceNode::MIN_LEN,
                RebalanceNode::decode,
            )?,
        })
    }
}

impl ClusterDescription {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("cluster name", &self.cluster_name)?;
        w.string("partitioner", &self.partitioner)?;
        w.u64(self.schema_version);
        w.list("nodes", &self.nodes, |w, n| n.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(ClusterDescription {
            cluster_name: r.string("cluster name")?,
            partitioner: r.string("partitioner")?,
            schema_version: r.u64("schema version")?,
            nodes: r.list("nodes", NodeSchema::MIN_LEN, NodeSchema::decode)?,
        })
    }
}

/// What CLEANUP did to one table. Wire: `string` table, `u64` dropped (stored entries
/// removed: every version of a cell counts once, as merged), `u64` bytes_before, `u64`
/// bytes_after (the table's SSTable bytes before and after).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TableCleanup {
    /// The table.
    pub table: String,
    /// Entries removed (cells, row tombstones, deletes) of ranges the node no longer
    /// replicates.
    pub dropped: u64,
    /// SSTable bytes before (after the memtable was flushed).
    pub bytes_before: u64,
    /// SSTable bytes after.
    pub bytes_after: u64,
}

impl TableCleanup {
    /// The smallest encoding (an empty name and zeros).
    pub(crate) const MIN_LEN: usize = 2 + 8 * 3;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("table", &self.table)?;
        w.u64(self.dropped);
        w.u64(self.bytes_before);
        w.u64(self.bytes_after);
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(TableCleanup {
            table: r.string("table")?,
            dropped: r.u64("dropped entries")?,
            bytes_before: r.u64("bytes before")?,
            bytes_after: r.u64("bytes after")?,
        })
    }
}

/// A shortage of disk space on a node, as HEALTH reports it. Wire: `u64` needed, `u64`
/// free, `u64` reserve, `u64` since (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DiskShortage {
    /// Bytes the blocked work needed (an estimate for flushes and compactions).
    pub needed: u64,
    /// Bytes free on the node's data file system when it last failed.
    pub free: u64,
    /// The node's free-space reserve (0 when the disk itself was full).
    pub reserve: u64,
    /// When the shortage began, milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl DiskShortage {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.u64(self.needed);
        w.u64(self.free);
        w.u64(self.reserve);
        w.u64(self.since_ms);
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(DiskShortage {
            needed: r.u64("needed bytes")?,
            free: r.u64("free bytes")?,
            reserve: r.u64("reserve bytes")?,
            since_ms: r.u64("since")?,
        })
    }
}

/// The answering node's own state: what its storage engine can do now. Wire:
/// `option<string>` poisoned, then `option<disk shortage>` writes_refused, flush_blocked
/// and compaction_blocked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NodeHealth {
    /// The first failure, once an fsync failed: the node takes no writes until restarted.
    pub poisoned: Option<String>,
    /// Writes are refused with `DISK_FULL`: the disk is full or below the reserve.
    pub writes_refused: Option<DiskShortage>,
    /// Memtable flushes fail for want of space (retried with backoff).
    pub flush_blocked: Option<DiskShortage>,
    /// Compactions fail for want of space (retried with backoff).
    pub compaction_blocked: Option<DiskShortage>,
}

impl NodeHealth {
    /// True when anything is wrong (the node is degraded).
    pub fn is_degraded(&self) -> bool {
        self.poisoned.is_some()
            || self.writes_refused.is_some()
            || self.flush_blocked.is_some()
            || self.compaction_blocked.is_some()
    }

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.option(self.poisoned.as_ref(), |w, s| w.string("poison reason", s))?;
        for s in [
            &self.writes_refused,
            &self.flush_blocked,
            &self.compaction_blocked,
        ] {
            w.option(s.as_ref(), |w, s| s.encode(w))?;
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(NodeHealth {
            poisoned: r.option("poison reason", |r| r.string("poison reason"))?,
            writes_refused: r.option("writes refused", DiskShortage::decode)?,
            flush_blocked: r.option("flush blocked", DiskShortage::decode)?,
            compaction_blocked: r.option("compaction blocked", DiskShortage::decode)?,
        })
    }
}
