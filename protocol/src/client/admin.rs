//! Operator commands on [`Client`] (what `sibyl-admin` sends): flush, compact, table
//! statistics, removenode, decommission, repair. Each one acts on the node that answers, so an
//! admin client should be connected to exactly the node it means; these requests are
//! never resent to another node after a timeout (only TABLE_STATS is idempotent).

use crate::client::{unexpected, Client, ClientError};
use crate::message::request::Request;
use crate::message::response::Response;
use crate::message::types::{
    ClusterDescription, HintOwner, NodeHealth, RebalanceReport, RepairStatus, StreamsReport,
    TableCleanup, TableStatistics,
};

impl Client {
    /// Flushes one table's memtables (every table's when `None`) to SSTables on the node
    /// and waits for it; returns the tables flushed.
    pub async fn flush(&self, table: Option<&str>) -> Result<Vec<String>, ClientError> {
        let request = Request::Flush {
            table: table.map(str::to_owned),
        };
        match self.request(request).await? {
            Response::Tables(t) => Ok(t),
            other => Err(unexpected("FLUSH", other)),
        }
    }

    /// Runs a major compaction of `table` on the node and waits for it; returns the
    /// table's statistics afterwards.
    pub async fn compact(&self, table: &str) -> Result<TableStatistics, ClientError> {
        let request = Request::Compact {
            table: table.to_owned(),
        };
        match self.request(request).await? {
            Response::AdminTableStats(s) => Ok(s),
            other => Err(unexpected("COMPACT", other)),
        }
    }

    /// The node's storage statistics of `table`.
    pub async fn table_stats(&self, table: &str) -> Result<TableStatistics, ClientError> {
        let request = Request::TableStats {
            table: table.to_owned(),
        };
        match self.request(request).await? {
            Response::AdminTableStats(s) => Ok(s),
            other => Err(unexpected("TABLE_STATS", other)),
        }
    }

    /// Announces the dead node `node_id` (hex, as the topology shows it) as removed;
    /// returns the node's account of what it did. Without `force` the node refuses
    /// (`INVALID`) when a range the dead node replicated has no other live replica to
    /// copy it from; with it, what only the dead node held is lost.
    pub async fn remove_node(&self, node_id: &str, force: bool) -> Result<String, ClientError> {
        let request = Request::RemoveNode {
            node_id: node_id.to_owned(),
            force,
        };
        match self.request(request).await? {
            Response::AdminDone { message } => Ok(message),
            other => Err(unexpected("REMOVE_NODE", other)),
        }
    }

    /// Makes the answering node leave the ring; returns its account of what it did.
    pub async fn decommission(&self) -> Result<String, ClientError> {
        match self.request(Request::Decommission).await? {
            Response::AdminDone { message } => Ok(message),
            other => Err(unexpected("DECOMMISSION", other)),
        }
    }

    /// Starts an anti-entropy repair on the node of `table` (every replicated table when
    /// `None`); returns its first status (its id; poll [`Client::repair_status`]).
    pub async fn repair(&self, table: Option<&str>) -> Result<RepairStatus, ClientError> {
        let request = Request::Repair {
            table: table.map(str::to_owned),
        };
        match self.request(request).await? {
            Response::AdminRepair(s) => Ok(s),
            other => Err(unexpected("REPAIR", other)),
        }
    }

    /// The status of repair `id` on the node (0 = its latest) and its tables' sync times.
    pub async fn repair_status(&self, id: u64) -> Result<RepairStatus, ClientError> {
        match self.request(Request::RepairStatus { id }).await? {
            Response::AdminRepair(s) => Ok(s),
            other => Err(unexpected("REPAIR_STATUS", other)),
        }
    }

    /// The hints the node holds for other nodes, and those it dropped, per owner.
    pub async fn hints(&self) -> Result<Vec<HintOwner>, ClientError> {
        match self.request(Request::Hints).await? {
            Response::AdminHints(h) => Ok(h),
            other => Err(unexpected("HINTS", other)),
        }
    }

    /// Drops, on the node, the data of `table` (every table when `None`) in ranges it no
    /// longer replicates; answers once done, one entry per table.
    pub async fn cleanup(&self, table: Option<&str>) -> Result<Vec<TableCleanup>, ClientError> {
        let request = Request::Cleanup {
            table: table.map(str::to_owned),
        };
        match self.request(request).await? {
            Response::AdminCleanup(tables) => Ok(tables),
            other => Err(unexpected("CLEANUP", other)),
        }
    }

    /// A plan of token moves that spreads the cluster's stored bytes evenly, computed by
    /// the node from every node's sizes (nothing moves: apply it with [`Client::move_to`]
    /// on each node that moves, one at a time).
    pub async fn rebalance(&self) -> Result<RebalanceReport, ClientError> {
        match self.request(Request::Rebalance).await? {
            Response::AdminRebalance(plan) => Ok(plan),
            other => Err(unexpected("REBALANCE", other)),
        }
    }

    /// Moves the node to `tokens`: it announces `moving`, streams the ranges that change
    /// hands, then owns the new tokens. Answers once `moving` is published, with a message.
    pub async fn move_to(&self, tokens: Vec<i128>) -> Result<String, ClientError> {
        match self.request(Request::Move { tokens }).await? {
            Response::AdminDone { message } => Ok(message),
            other => Err(unexpected("MOVE", other)),
        }
    }

    /// The cluster's name, partitioner and each node's schema version, as the node sees
    /// them.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        match self.request(Request::DescribeCluster).await? {
            Response::AdminCluster(d) => Ok(d),
            other => Err(unexpected("DESCRIBE_CLUSTER", other)),
        }
    }

    /// The node's metrics, in the Prometheus text exposition format (what its
    /// `--metrics-listen` endpoint serves).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        match self.request(Request::Metrics).await? {
            Response::AdminMetrics(text) => Ok(text),
            other => Err(unexpected("METRICS", other)),
        }
    }

    /// HEALTH: the connected node's own health (a poisoned engine, disk shortages).
    pub async fn health(&self) -> Result<NodeHealth, ClientError> {
        match self.request(Request::Health).await? {
            Response::AdminHealth(h) => Ok(h),
            other => Err(unexpected("HEALTH", other)),
        }
    }

    /// The node's streams, after setting its incoming stream throughput cap to
    /// `set_throughput` bytes per second when given (0 = unlimited).
    pub async fn streams(&self, set_throughput: Option<u64>) -> Result<StreamsReport, ClientError> {
        match self.request(Request::Streams { set_throughput }).await? {
            Response::AdminStreams(r) => Ok(r),
            other => Err(unexpected("STREAMS", other)),
        }
    }
}
