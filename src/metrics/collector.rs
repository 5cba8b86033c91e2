//! [`NodeCollector`]: every metric that is not a client request, read at scrape time from
//! the accessors of the parts that own the numbers (the engine, gossip's published view
//! and phi values, the hint store and its delivery task, the coordinator, the repairer,
//! the stream registry). Nothing here is updated on a request path: those parts already
//! keep their counters in atomics, and a scrape reads them.
//!
//! Threading: `encode` runs on the scraping task. It reads in-memory state only (table
//! statistics, counters, the published view): no disk I/O, no lock held across anything
//! but those reads.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::encode::Family;
use crate::cluster::ClusterHandle;
use crate::coordinator::Coordinator;
use crate::hints::{DeliveryCounters, HintStore};
use crate::repair::Repairer;
use crate::service::Service;
use crate::stream::StreamRegistry;

/// The parts of a running node the collector reads.
#[derive(Debug, Clone)]
pub struct NodeSources {
    /// The service (its engine: tables, commit log).
    pub service: Arc<Service>,
    /// Membership: the published view and the failure detector's phi per peer.
    pub cluster: Arc<ClusterHandle>,
    /// Coordinator counters (read repairs, hints sent, speculative retries).
    pub coordinator: Arc<Coordinator>,
    /// The hint store (pending, kept, dropped).
    pub hints: Arc<HintStore>,
    /// The hint delivery task's counters.
    pub delivery: DeliveryCounters,
    /// Anti-entropy totals.
    pub repairer: Arc<Repairer>,
    /// Streams (bootstrap, decommission, removal).
    pub streams: Arc<StreamRegistry>,
}

/// The scrape-time collector of a node (see the module documentation).
#[derive(Debug)]
pub struct NodeCollector {
    sources: NodeSources,
}

impl NodeCollector {
    /// A collector reading `sources`.
    pub fn new(sources: NodeSources) -> NodeCollector {
        NodeCollector { sources }
    }

    fn storage(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let engine = self.sources.service.engine();
        let mut tables: Vec<(String, sibyl_storage::TableStats)> = engine
            .tables()
            .into_iter()
            .filter_map(|t| engine.stats(&t).ok().map(|s| (t, s)))
            .collect();
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        type Field = fn(&sibyl_storage::TableStats) -> u64;
        let per_table: [(&str, &str, MetricType, Field); 10] = [
            (
                "memtable_bytes",
                "Bytes held by a table's active and frozen memtables",
                MetricType::Gauge,
                |s| s.memtable_bytes,
            ),
            (
                "sstable_bytes",
                "Bytes in a table's live SSTables",
                MetricType::Gauge,
                |s| s.sstable_bytes,
            ),
            (
                "sstable_tombstones",
                "Tombstones in a table's live SSTables",
                MetricType::Gauge,
                |s| s.sstable_tombstones,
            ),
            (
                "pending_compaction_bytes",
                "Input bytes of the compaction a table's strategy would run next (0 when none is due)",
                MetricType::Gauge,
                |s| s.pending_compaction_bytes,
            ),
            (
                "frozen_memtables",
                "Memtables frozen and waiting for their flush",
                MetricType::Gauge,
                |s| s.frozen_memtables as u64,
            ),
            (
                "flushes",
                "Memtable flushes of a table since the node started",
                MetricType::Counter,
                |s| s.flushes,
            ),
            (
                "compactions",
                "Compactions of a table since the node started",
                MetricType::Counter,
                |s| s.compactions,
            ),
            (
                "compacted_bytes",
                "Bytes written by a table's compactions since the node started",
                MetricType::Counter,
                |s| s.compacted_bytes,
            ),
            (
                "bloom_true_positives",
                "Point lookups an SSTable's bloom filter let through and the SSTable held",
                MetricType::Counter,
                |s| s.bloom_true_positives,
            ),
            (
                "bloom_false_positives",
                "Point lookups an SSTable's bloom filter let through but the SSTable did not hold",
                MetricType::Counter,
                |s| s.bloom_false_positives,
            ),
        ];
        for (name, help, metric_type, field) in per_table {
            let mut family = Family::start(encoder, name, help, metric_type)?;
            for (table, stats) in &tables {
                family.sample(&[("table", table.as_str())], field(stats))?;
            }
        }
        let mut family = Family::start(
            encoder,
            "sstables",
            "Live SSTables of a table per level",
            MetricType::Gauge,
        )?;
        for (table, stats) in &tables {
            for (level, n) in stats.sstables_per_level.iter().enumerate() {
                let level = level.to_string();
                family.sample(
                    &[("table", table.as_str()), ("level", level.as_str())],
                    *n as u64,
                )?;
            }
        }
        let log = engine.commit_log_stats();
        Family::start(
            encoder,
            "commitlog_fsyncs",
            "fsyncs of commit-log segments (group commits, periodic syncs, segment rolls)",
            MetricType::Counter,
        )?
        .single(log.fsyncs)?;
        Family::start(
            encoder,
            "commitlog_sync_duration_seconds",
            "How long the commit-log syncs that acknowledge writes took",
            MetricType::Histogram,
        )?
        .single_histogram(&log.sync_latency)?;
        Family::start(
            encoder,
            "storage_poisoned",
            "1 once a write or fsync failure poisoned the storage engine (it acknowledges no more writes)",
            MetricType::Gauge,
        )?
        .single(u64::from(engine.is_poisoned()))?;
        let health = engine.health();
        let mut shortage = Family::start(
            encoder,
            "storage_disk_shortage",
            "1 while the storage engine lacks disk space for writes (they answer DISK_FULL), \
             flushes or compactions (retried with backoff), by condition",
            MetricType::Gauge,
        )?;
        for (condition, on) in [
            ("writes_refused", health.writes_refused.is_some()),
            ("flush_blocked", health.flush_blocked.is_some()),
            ("compaction_blocked", health.compaction_blocked.is_some()),
        ] {
            shortage.sample(&[("condition", condition)], u64::from(on))?;
        }
        Ok(())
    }

    fn gossip(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut up, mut down) = (0u64, 0u64);
        if let Some(view) = self.sources.cluster.view() {
            for node in view.nodes.values().filter(|n| n.id != view.local) {
                let gone = matches!(
                    node.status,
                    Some(crate::cluster::NodeStatus::Left | crate::cluster::NodeStatus::Removed)
                );
                match (gone, node.alive) {
                    (true, _) => {}
                    (false, true) => up += 1,
                    (false, false) => down += 1,
                }
            }
        }
        let mut family = Family::start(
            encoder,
            "gossip_peers",
            "Peers in the ring (left and removed nodes excluded) by the failure detector's verdict",
            MetricType::Gauge,
        )?;
        family.sample(&[("state", "up")], up)?;
        family.sample(&[("state", "down")], down)?;
        let mut family = Family::start(
            encoder,
            "gossip_phi",
            "The phi-accrual failure detector's suspicion of each peer (down past the threshold)",
            MetricType::Gauge,
        )?;
        for (peer, phi) in self.sources.cluster.phi().iter() {
            let peer = peer.to_string();
            family.gauge_f64(&[("peer", peer.as_str())], *phi)?;
        }
        Ok(())
    }

    fn hints(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = self.sources.hints.stats();
        let delivery = self.sources.delivery.stats();
        let coordinator = self.sources.coordinator.stats();
        Family::start(
            encoder,
            "hints_pending",
            "Hints held here for other nodes, waiting for delivery",
            MetricType::Gauge,
        )?
        .single(store.pending_hints)?;
        Family::start(
            encoder,
            "hints_pending_bytes",
            "Bytes of the hints held here for other nodes",
            MetricType::Gauge,
        )?
        .single(store.pending_bytes)?;
        Family::start(
            encoder,
            "hints_stored",
            "Hints stored here since the node started",
            MetricType::Counter,
        )?
        .single(store.kept)?;
        Family::start(
            encoder,
            "hints_delivered",
            "Hints applied by their owners and removed since the node started",
            MetricType::Counter,
        )?
        .single(delivery.delivered_hints)?;
        let mut family = Family::start(
            encoder,
            "hints_dropped",
            "Hints dropped since the node started, by reason (their ranges need repair)",
            MetricType::Counter,
        )?;
        family.sample(&[("reason", "window")], store.dropped_window)?;
        family.sample(&[("reason", "size")], store.dropped_size)?;
        family.sample(&[("reason", "rejected")], delivery.rejected_hints)?;
        Family::start(
            encoder,
            "coordinator_hints",
            "Writes this coordinator handed to a stand-in or its own hint store for a replica that was down or slow",
            MetricType::Counter,
        )?
        .single(coordinator.hints)
    }

    fn coordination(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.sources.coordinator.stats();
        let counters: [(&str, &str, u64); 5] = [
            (
                "read_repairs",
                "Replicas sent reconciled cells by a read that found them stale",
                c.read_repairs,
            ),
            (
                "digest_mismatches",
                "Reads whose replicas disagreed (a full read of each followed)",
                c.digest_mismatches,
            ),
            (
                "speculative_retries",
                "Extra replicas asked because one was slower than its recent latency",
                c.speculative_retries,
            ),
            (
                "writes_forwarded",
                "Writes forwarded to a home replica of their key to be minted there",
                c.forwarded,
            ),
            (
                "sibling_limit_rejections",
                "Writes refused because a cell would hold more siblings than the limit",
                crate::versioning::sibling_limit_rejections(),
            ),
        ];
        for (name, help, value) in counters {
            Family::start(encoder, name, help, MetricType::Counter)?.single(value)?;
        }
        Ok(())
    }

    fn movement(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (jobs, repaired) = self.sources.repairer.totals();
        Family::start(
            encoder,
            "repair_exchanges",
            "Anti-entropy range exchanges completed since the node started",
            MetricType::Counter,
        )?
        .single(jobs)?;
        let mut family = Family::start(
            encoder,
            "repair_cells",
            "Cells anti-entropy moved since the node started, by direction",
            MetricType::Counter,
        )?;
        family.sample(&[("direction", "sent")], repaired.cells_sent)?;
        family.sample(&[("direction", "received")], repaired.cells_received)?;
        let mut family = Family::start(
            encoder,
            "repair_bytes",
            "Bytes of anti-entropy messages since the node started, by direction",
            MetricType::Counter,
        )?;
        family.sample(&[("direction", "sent")], repaired.bytes_sent)?;
        family.sample(&[("direction", "received")], repaired.bytes_received)?;
        let streamed: u64 = self
            .sources
            .streams
            .snapshot()
            .iter()
            .map(|s| s.bytes_this_run)
            .sum();
        Family::start(
            encoder,
            "stream_bytes",
            "Bytes of keys and values moved by this node's streams (bootstrap, decommission, removal) since it started",
            MetricType::Counter,
        )?
        .single(streamed)
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.storage(&mut encoder)?;
        self.gossip(&mut encoder)?;
        self.hints(&mut encoder)?;
        self.coordination(&mut encoder)?;
        self.movement(&mut encoder)
    }
}
