//! Operator commands (what `sibyl-admin` sends): FLUSH, COMPACT, TABLE_STATS over the
//! local storage engine, and REMOVE_NODE, DECOMMISSION over the membership layer
//! ([`crate::cluster::ClusterHandle`]). Each acts on this node only; membership changes then
//! spread by gossip.
//!
//! # Invariants
//! - REMOVE_NODE only ever removes a node this node knows and believes down, never itself,
//!   and only when [`crate::stream::admission::check_removenode`] allows it (no other ring
//!   change moves its ranges; each of its ranges has a live replica to copy from, unless
//!   forced); anything else is a typed `Invalid` error naming the node or the range.
//! - DECOMMISSION here is the path of a service without a coordinator (tests of this
//!   layer; a node's coordinator answers DECOMMISSION itself and streams): it only starts
//!   from `normal`, when [`crate::stream::admission::check_decommission`] allows it, and
//!   always announces `leaving` before `left`. No data is streamed; the node says so in
//!   its log and its answer, and keeps serving until it is stopped.
//!
//! # Threading
//! Called from [`super::Service::handle`]. FLUSH, COMPACT, REMOVE_NODE and DECOMMISSION
//! block (disk, or waiting for the gossip thread) and are [`super::Execution::Blocking`];
//! TABLE_STATS reads counters and runs inline. No lock of the service is held while
//! waiting for gossip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sibyl_protocol::{Request, Response, ServerError, TableCleanup, TableStatistics};

use super::{invalid, storage_error, Service};
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus, GOSSIP_INTERVAL_MS};
use crate::ring::NodeId;
use crate::stream::admission::{check_decommission, check_removenode};

/// How long a decommissioning node stays `leaving` before it announces `left`: two gossip
/// rounds at the default interval, so peers hear `leaving` first (Cassandra waits its
/// RING_DELAY for the same reason).
const LEAVING_ANNOUNCE: Duration = Duration::from_millis(2 * GOSSIP_INTERVAL_MS);

/// How long to wait for the gossip thread to publish a status this node announced; it
/// applies commands every tick (50 ms), so this bound is only reached if it is stuck.
const STATUS_PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// Polling interval while waiting for the published view.
const STATUS_POLL: Duration = Duration::from_millis(10);

impl Service {
    /// Answers an operator request (see the module doc). Other requests are refused.
    pub(super) fn admin(&self, request: Request) -> Result<Response, ServerError> {
        match request {
            Request::Flush { table } => self.flush(table.as_deref()).map(Response::Tables),
            Request::Compact { table } => {
                self.engine.compact(&table).map_err(storage_error)?;
                tracing::info!(table = %table, "major compaction done (operator request)");
                self.refresh_load();
                self.table_statistics(&table).map(Response::AdminTableStats)
            }
            Request::TableStats { table } => {
                self.table_statistics(&table).map(Response::AdminTableStats)
            }
            Request::RemoveNode { node_id, force } => self.remove_node(&node_id, force),
            Request::Decommission => self.decommission(),
            Request::Cleanup { table } => {
                self.cleanup(table.as_deref()).map(Response::AdminCleanup)
            }
            // A node's coordinator answers these (it holds the peer network and the
            // stream registry); a service alone cannot.
            Request::Rebalance | Request::Move { .. } => Err(invalid(format!(
                "{} needs a node of a cluster (peer network and streams)",
                request.opcode().name()
            ))),
            other => Err(invalid(format!(
                "{} is not an operator command",
                other.opcode().name()
            ))),
        }
    }

    /// Flushes one table (or all) and returns the names of the tables flushed, sorted.
    fn flush(&self, table: Option<&str>) -> Result<Vec<String>, ServerError> {
        let names = match table {
            Some(t) => {
                self.schema(t)?;
                vec![t.to_owned()]
            }
            None => {
                let mut names: Vec<String> = self.read_tables().keys().cloned().collect();
                names.sort();
                names
            }
        };
        self.engine.flush(table).map_err(storage_error)?;
        tracing::info!(tables = names.len(), "memtables flushed (operator request)");
        self.refresh_load();
        Ok(names)
    }

    /// The engine's statistics of `table` in protocol form.
    pub(super) fn table_statistics(&self, table: &str) -> Result<TableStatistics, ServerError> {
        // Only tables of the schema: the engine may hold internal tables.
        self.schema(table)?;
        let s = self.engine.stats(table).map_err(storage_error)?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(TableStatistics {
            table: table.to_owned(),
            sstables: count(s.sstables),
            sstables_per_level: s.sstables_per_level.iter().copied().map(count).collect(),
            sstable_bytes: s.sstable_bytes,
            sstable_entries: s.sstable_entries,
            sstable_tombstones: s.sstable_tombstones,
            memtable_bytes: s.memtable_bytes,
            memtable_entries: s.memtable_entries,
            frozen_memtables: count(s.frozen_memtables),
            flushes: s.flushes,
            compactions: s.compactions,
            compacted_bytes: s.compacted_bytes,
            bloom_true_positives: s.bloom_true_positives,
            bloom_false_positives: s.bloom_false_positives,
            ..self.request_statistics(table)
        })
    }

    /// The table's request figures from the node's request metrics (reads, writes, their
    /// latency percentiles, siblings returned); zeros before any or without metrics.
    fn request_statistics(&self, table: &str) -> TableStatistics {
        let Some(r) = self
            .request_metrics
            .get()
            .and_then(|m| m.tables().get(table))
        else {
            return TableStatistics::default();
        };
        TableStatistics {
            reads: r.read.count,
            read_p50_micros: r.read.quantile_micros(0.5),
            read_p99_micros: r.read.quantile_micros(0.99),
            writes: r.write.count,
            write_p50_micros: r.write.quantile_micros(0.5),
            write_p99_micros: r.write.quantile_micros(0.99),
            cells_read: r.cells_read,
            cells_with_siblings: r.cells_with_siblings,
            max_siblings: r.max_siblings,
            ..TableStatistics::default()
        }
    }

    /// Announces the load at once after a flush or compaction changed it, so `status`
    /// shows the new figure without waiting for the periodic announcement.
    fn refresh_load(&self) {
        if let Some(link) = self.cluster.as_ref() {
            link.set_load(self.load_bytes());
        }
    }

    fn remove_node(&self, node_id: &str, force: bool) -> Result<Response, ServerError> {
        let id = parse_node_id(node_id)?;
        let unknown = || invalid(format!("unknown node {id}: not in this node's view"));
        let link = self.cluster.as_ref().ok_or_else(unknown)?;
        let view = link.view().ok_or_else(unknown)?;
        if id == view.local {
            return Err(invalid(format!(
                "node {id} is the node answering: a node cannot remove itself; \
                 decommission it, or removenode it from another node once it is down"
            )));
        }
        let node = view.node(id).ok_or_else(unknown)?;
        if node.alive {
            return Err(invalid(format!(
                "node {id} is up: removenode is for dead nodes; decommission it instead"
            )));
        }
        let tables = self.table_options();
        check_removenode(&view, id, &tables, force)
            .map_err(|refusal| invalid(format!("removenode {id} refused: {refusal}")))?;
        if force {
            tracing::warn!(node = %id, "removenode --force: ranges with no live copy besides this node lose what only it held");
        }
        link.remove_node(id)
            .map_err(|e| invalid(format!("removenode {id}: {e}")))?;
        tracing::warn!(node = %id, "removenode (operator request): node announced as removed; \
             its ranges move to the remaining nodes, copied there from the replicas that remain");
        Ok(Response::AdminDone {
            message: format!(
                "node {id} announced as removed; its token ranges move to the remaining \
                 nodes, each copied from a replica that remains (`sibyl-admin streams` on \
                 the nodes shows the streams)"
            ),
        })
    }

    /// CLEANUP: drops, table by table (`table`, or every table in name order), the data
    /// of ranges this node no longer replicates ([`crate::stream::cleanup`]), then
    /// rebuilds each cleaned table's anti-entropy tree. Refused while a ring change is
    /// under way (the node may be about to gain or lose ranges).
    pub(crate) fn cleanup(&self, table: Option<&str>) -> Result<Vec<TableCleanup>, ServerError> {
        let (link, view) = self.membership()?;
        if view.future_ring().is_some() {
            return Err(invalid(format!(
                "a ring change is under way ({}): run cleanup once it completes",
                view.changes_under_way()
            )));
        }
        let tables: Vec<(String, sibyl_protocol::TableOptions)> = match table {
            Some(t) => vec![(t.to_owned(), self.schema(t)?.options.clone())],
            None => self.table_options(),
        };
        let partitioner = self.replica.partitioner();
        let mut out = Vec::with_capacity(tables.len());
        for (name, options) in tables {
            let before = self.engine.stats(&name).map_err(storage_error)?;
            let dropped =
                crate::stream::cleanup::drop_unowned(self, link, &name, &options, partitioner)
                    .map_err(storage_error)?;
            let after = self.engine.stats(&name).map_err(storage_error)?;
            if dropped > 0 {
                self.replica.reset_tree(&name);
            }
            tracing::info!(table = %name, dropped, bytes_before = before.sstable_bytes + before.memtable_bytes, bytes_after = after.sstable_bytes, "cleanup: data of ranges this node no longer replicates dropped");
            out.push(TableCleanup {
                table: name,
                dropped,
                bytes_before: before.sstable_bytes + before.memtable_bytes,
                bytes_after: after.sstable_bytes,
            });
        }
        if out.iter().any(|t| t.dropped > 0) {
            self.replica.rebuild_trees().map_err(|e| {
                ServerError::new(
                    sibyl_protocol::ErrorKind::Server,
                    format!("cleanup done, but rebuilding the anti-entropy trees failed: {e}"),
                )
            })?;
        }
        self.refresh_load();
        Ok(out)
    }

    /// The membership layer and its current view, or why an operator command that needs
    /// them cannot run.
    fn membership(&self) -> Result<(&ClusterHandle, Arc<ClusterView>), ServerError> {
        let link = self.cluster.as_ref().ok_or_else(|| {
            invalid("this node is not part of a cluster (no membership layer attached)")
        })?;
        let view = link
            .view()
            .ok_or_else(|| invalid("the membership layer is stopped"))?;
        Ok((link, view))
    }

    fn decommission(&self) -> Result<Response, ServerError> {
        let (link, view) = self.membership()?;
        let me = view.local;
        match local_status(&view) {
            Some(NodeStatus::Normal) => {}
            Some(NodeStatus::Joining) | None => {
                return Err(invalid(format!(
                    "node {me} is still joining; decommission it once it is normal"
                )))
            }
            Some(s) => {
                return Err(invalid(format!(
                    "node {me} is already {}; nothing to decommission",
                    s.name()
                )))
            }
        }
        check_decommission(&view, &self.table_options())
            .map_err(|refusal| invalid(format!("node {me} cannot decommission: {refusal}")))?;
        link.set_status(NodeStatus::Leaving);
        tracing::warn!(node = %me, "decommission: leaving the ring without streaming (this \
             service has no stream registry: a node's coordinator streams); its data is NOT \
             moved to the new owners (run repair on them)");
        wait_for_status(link, NodeStatus::Leaving)?;
        std::thread::sleep(LEAVING_ANNOUNCE);
        link.set_status(NodeStatus::Left);
        wait_for_status(link, NodeStatus::Left)?;
        tracing::warn!(node = %me, "decommission: left the ring; stop this node when ready");
        Ok(Response::AdminDone {
            message: format!(
                "node {me} announced leaving, then left; its data was not streamed (no \
                 stream registry here: run repair on the remaining nodes); it keeps serving \
                 until it is stopped"
            ),
        })
    }
}

/// The local node's status in `view`.
fn local_status(view: &ClusterView) -> Option<NodeStatus> {
    view.node(view.local).and_then(|n| n.status)
}

/// Polls the published view until the local node shows `status`.
fn wait_for_status(link: &ClusterHandle, status: NodeStatus) -> Result<(), ServerError> {
    let deadline = Instant::now() + STATUS_PUBLISH_WAIT;
    loop {
        if link
            .view()
            .is_some_and(|v| local_status(&v) == Some(status))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ServerError::new(
                sibyl_protocol::ErrorKind::Server,
                format!(
                    "the gossip thread did not publish status {} in time",
                    status.name()
                ),
            ));
        }
        std::thread::sleep(STATUS_POLL);
    }
}

/// A node id as the topology shows it: 1 to 16 hex digits.
fn parse_node_id(text: &str) -> Result<NodeId, ServerError> {
    text.parse()
        .map_err(|e: crate::ring::ParseNodeIdError| invalid(e.to_string()))
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
