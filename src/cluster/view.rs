//! [`ClusterView`]: an immutable snapshot of membership, and the ring it implies.
//!
//! The view lists every known node with its status, tokens, location, addresses, schema
//! version, load and liveness, and the [`Ring`] of the nodes whose status owns tokens
//! (`normal`, `leaving`), built once when the view is built: request handling reads
//! [`ClusterView::ring`] as a shared snapshot, never rebuilds it. If two nodes claim one token (two nodes
//! joined at once and chose alike), the smaller node id keeps it; every node applies the
//! same rule to the same gossip state, so all agree on the ring without a coordinator.
//!
//! A value: build it from the gossiper, share it in an `Arc`, swap it whole.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::warn;

use super::endpoint::{EndpointState, NodeStatus};
use crate::ring::{NodeId, NodeLocation, Partitioner, Ring, RingNode, Token};

/// What the view knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub id: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its status (`None` before it announced one).
    pub status: Option<NodeStatus>,
    /// Its tokens.
    pub tokens: Arc<[Token]>,
    /// Datacenter and rack (defaults when not announced).
    pub location: NodeLocation,
    /// Peer port address.
    pub peer_address: Option<SocketAddr>,
    /// Client port address.
    pub client_address: Option<SocketAddr>,
    /// Schema version.
    pub schema_version: Option<u64>,
    /// Load in bytes.
    pub load: u64,
    /// Up according to the local failure detector (the local node is always up).
    pub alive: bool,
}

/// Snapshot of membership as one node sees it. Equality compares the membership (the
/// ring is derived from it).
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The node whose view this is.
    pub local: NodeId,
    /// The cluster's partitioner.
    pub partitioner: Partitioner,
    /// Every known node.
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// The ring of `nodes` (derived; built by [`ClusterView::new`]).
    ring: Arc<Ring>,
}

impl PartialEq for ClusterView {
    fn eq(&self, other: &Self) -> bool {
        (self.local, self.partitioner, &self.nodes)
            == (other.local, other.partitioner, &other.nodes)
    }
}

impl Eq for ClusterView {}

impl ClusterView {
    /// Builds a view from endpoint states and liveness.
    pub fn from_endpoints<'a>(
        local: NodeId,
        partitioner: Partitioner,
        endpoints: impl IntoIterator<Item = (NodeId, &'a EndpointState, bool)>,
    ) -> ClusterView {
        let nodes = endpoints
            .into_iter()
            .map(|(id, s, alive)| {
                let default = NodeLocation::default();
                let view = NodeView {
                    id,
                    generation: s.generation,
                    status: s.status(),
                    tokens: s.tokens().cloned().unwrap_or_else(|| Arc::from(Vec::new())),
                    location: NodeLocation {
                        datacenter: s.datacenter().cloned().unwrap_or(default.datacenter),
                        rack: s.rack().cloned().unwrap_or(default.rack),
                    },
                    peer_address: s.peer_address(),
                    client_address: s.client_address(),
                    schema_version: s.schema_version(),
                    load: s.load().unwrap_or(0),
                    alive,
                };
                (id, view)
            })
            .collect();
        ClusterView::new(local, partitioner, nodes)
    }

    /// A view of `nodes`; builds its ring.
    pub fn new(
        local: NodeId,
        partitioner: Partitioner,
        nodes: BTreeMap<NodeId, NodeView>,
    ) -> ClusterView {
        let ring = Arc::new(build_ring(partitioner, &nodes));
        ClusterView {
            local,
            partitioner,
            nodes,
            ring,
        }
    }

    /// The node's entry.
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.get(&id)
    }

    /// Nodes up (the local node included).
    pub fn up(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect()
    }

    /// Known nodes that are down and have not departed.
    pub fn down(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| !n.alive && !n.status.is_some_and(|s| s.is_departed()))
            .map(|n| n.id)
            .collect()
    }

    /// Nodes in `status`.
    pub fn with_status(&self, status: NodeStatus) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.status == Some(status))
            .map(|n| n.id)
            .collect()
    }

    /// The ring of nodes whose status owns tokens (a shared snapshot).
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.clone()
    }
}

/// The ring of the nodes whose status owns tokens.
fn build_ring(partitioner: Partitioner, nodes: &BTreeMap<NodeId, NodeView>) -> Ring {
    let mut claimed: BTreeSet<Token> = BTreeSet::new();
    let mut members = Vec::new();
    // BTreeMap order: smaller node ids claim first, so they win a contested token.
    for n in nodes.values() {
        if !n.status.is_some_and(|s| s.owns_tokens()) {
            continue;
        }
        let mut tokens = Vec::with_capacity(n.tokens.len());
        for t in n.tokens.iter() {
            if !partitioner.owns_token(t) {
                warn!(node = %n.id, token = %t, "ignoring a token of another partitioner");
            } else if !claimed.insert(*t) {
                warn!(node = %n.id, token = %t, "token already claimed by a smaller node id");
            } else {
                tokens.push(*t);
            }
        }
        members.push(RingNode {
            id: n.id,
            location: n.location.clone(),
            tokens,
        });
    }
    match Ring::new(partitioner, members) {
        Ok(ring) => ring,
        Err(e) => {
            // Unreachable: tokens were deduplicated and filtered above.
            warn!(error = %e, "could not build the ring from the view");
            Ring::empty(partitioner)
        }
    }
}
