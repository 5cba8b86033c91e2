//! Removenode streams: when a dead node is removed, the ranges it replicated are copied
//! to the nodes that gain them from a replica that remains.
//!
//! Every node watches its view. When it sees a node newly `removed`, it plans as a
//! decommission would ([`super::plan::lost_ranges`] of the ring with the removed node
//! against the ring without it) and, for each range, the first live replica that remains
//! (in the range's old preference list) pushes it to each gaining node, page by page with
//! the replica family's `apply` ([`super::decommission::Decommission::push_range`]).
//! Every node computes the same plan from the same gossip state, so each range has one
//! pusher and needs no coordination. A node at the removed node's address (its
//! replacement after a lost disk) is left out of the plan: it fills itself. A node removed
//! by its `--replace` replacement needs nothing: the replacement streamed its ranges
//! before it took its tokens. A node that restarts forgets which removals it has streamed
//! and does not stream them again (anti-entropy covers a push cut by a crash).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::bootstrap::StreamOptions;
use super::decommission::Decommission;
use super::plan::lost_ranges;
use super::progress::{StreamInfo, StreamRegistry};
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus};
use crate::coordinator::placement::strategy;
use crate::net::PeerNetwork;
use crate::ring::NodeId;
use crate::service::Service;

/// How often the view is checked for new removals.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The removal watcher of one node (see the module documentation): pushes through the
/// decommission's page pusher, whose service, view and registry it shares.
pub struct Removals {
    pusher: Decommission,
}

impl std::fmt::Debug for Removals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Removals").finish_non_exhaustive()
    }
}

impl Removals {
    /// A watcher for the node behind `service`.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        registry: Arc<StreamRegistry>,
        opts: StreamOptions,
    ) -> Removals {
        Removals {
            pusher: Decommission::new(service, net, cluster, registry, opts),
        }
    }

    /// Watches the view until `shutdown`; streams the ranges of each node removed after
    /// the watch began.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut seen: Option<BTreeSet<NodeId>> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let Some(view) = self.pusher.cluster.view() else {
                continue;
            };
            let removed: BTreeSet<NodeId> = view
                .nodes
                .values()
                .filter(|n| n.status == Some(NodeStatus::Removed))
                .map(|n| n.id)
                .collect();
            let Some(known) = seen.as_mut() else {
                // Removals from before this node started are not streamed again.
                seen = Some(removed);
                continue;
            };
            for node in removed {
                if known.insert(node) && !self.rereplicate(&view, node, &mut shutdown).await {
                    return;
                }
            }
        }
    }

    /// Pushes every range `removed` replicated of which this node is the first live
    /// remaining replica; false on shutdown.
    async fn rereplicate(
        &self,
        view: &ClusterView,
        removed: NodeId,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        if let Some(by) = view.nodes.values().find(|n| n.replacing == Some(removed)) {
            // `--replace`: the replacement streamed every range of the removed node
            // before it took its tokens, and owns them now.
            tracing::info!(node = %removed, replacement = %by.id, "node removed after its replacement took its tokens: nothing to re-replicate");
            return true;
        }
        // A node at the removed node's address replaced it (a wiped disk back under a new
        // id): it fills itself (bootstrap, or repair with --auto-bootstrap off), so the
        // plan is made as if it were not in the ring yet.
        let address = view.node(removed).and_then(|n| n.peer_address);
        let mut without = view.nodes.clone();
        for n in without.values_mut() {
            if n.id != removed && address.is_some() && n.peer_address == address {
                n.status = None;
            }
        }
        let mut with = without.clone();
        if let Some(n) = with.get_mut(&removed) {
            n.status = Some(NodeStatus::Normal);
        }
        let before = ClusterView::new(view.local, view.partitioner, with).ring();
        let after = ClusterView::new(view.local, view.partitioner, without).ring();
        let tables = self.pusher.service.table_options();
        let plan = lost_ranges(&before, &after, removed, &tables);
        let mut mine = Vec::new();
        for lost in plan {
            let Some((_, options)) = tables.iter().find(|(name, _)| *name == lost.table) else {
                continue;
            };
            let pusher = before
                .preference_list(&lost.range.end, &strategy(options))
                .into_iter()
                .filter(|n| *n != removed)
                .find(|n| *n == view.local || view.node(*n).is_some_and(|v| v.alive));
            if pusher != Some(view.local) {
                continue;
            }
            for &target in lost.targets.iter().filter(|t| **t != view.local) {
                let slot = self.pusher.registry.add(StreamInfo::queued(
                    "removenode",
                    &lost.table,
                    lost.range,
                    target,
                ));
                mine.push((lost.table.clone(), lost.range, target, slot));
            }
        }
        tracing::info!(
            node = %removed,
            streams = mine.len(),
            "node removed: re-replicating the ranges it held of which this node is the first remaining replica"
        );
        for (table, range, target, slot) in mine {
            if self
                .pusher
                .push_whole(&table, range, target, slot, shutdown)
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}
