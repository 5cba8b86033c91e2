//! [`ClusterView`]: an immutable snapshot of membership, and the ring it implies.
//!
//! The view lists every known node with its status, tokens, location, addresses, schema
//! version, load and liveness, and the [`Ring`] of the nodes whose status owns tokens
//! (`normal`, `leaving`), built once when the view is built: request handling reads
//! [`ClusterView::ring`] as a shared snapshot, never rebuilds it. If two nodes claim one token (two nodes
//! joined at once and chose alike), the smaller node id keeps it; every node applies the
//! same rule to the same gossip state, so all agree on the ring without a coordinator.
//! A node replacing a dead one (`--replace`, [`NodeView::replacing`]) takes the dead
//! node's place: in the future ring while it is joining, in the ring once it is normal.
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
    /// The dead node whose tokens it takes over (`--replace`), if any.
    pub replacing: Option<NodeId>,
    /// The tokens it moves to while `moving` (`None` otherwise, or not announced).
    pub moving_to: Option<Arc<[Token]>>,
}

impl NodeView {
    /// Joining with its tokens announced: a pending replica of the ranges it gains.
    pub fn is_pending(&self) -> bool {
        self.status == Some(NodeStatus::Joining) && !self.tokens.is_empty()
    }

    /// In a ring change: pending, leaving, or moving.
    pub fn in_ring_change(&self) -> bool {
        self.is_pending() || matches!(self.status, Some(NodeStatus::Leaving | NodeStatus::Moving))
    }
}

#[cfg(test)]
impl NodeView {
    /// A node of a murmur3 test ring: generation 1, default location, no addresses, no
    /// schema, no load, replacing nobody.
    pub(crate) fn for_test(id: u64, status: NodeStatus, tokens: &[i64], alive: bool) -> NodeView {
        NodeView {
            id: NodeId(id),
            generation: 1,
            status: Some(status),
            tokens: tokens.iter().map(|t| Token::Murmur3(*t)).collect(),
            location: NodeLocation::default(),
            peer_address: None,
            client_address: None,
            schema_version: None,
            load: 0,
            alive,
            replacing: None,
            moving_to: None,
        }
    }
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
    /// The ring once the ring changes under way complete (joining nodes with tokens in,
    /// leaving nodes out); `None` while none is under way (derived).
    future: Option<Arc<Ring>>,
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
        ClusterView::from_endpoints_reusing(local, partitioner, endpoints, None)
    }

    /// [`ClusterView::from_endpoints`], reusing `previous`'s ring when the nodes that shape
    /// a ring are unchanged (see [`ClusterView::new_reusing`]).
    pub fn from_endpoints_reusing<'a>(
        local: NodeId,
        partitioner: Partitioner,
        endpoints: impl IntoIterator<Item = (NodeId, &'a EndpointState, bool)>,
        previous: Option<&ClusterView>,
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
                    replacing: s.replacing(),
                    moving_to: (s.status() == Some(NodeStatus::Moving))
                        .then(|| s.moving_to().cloned())
                        .flatten(),
                };
                (id, view)
            })
            .collect();
        ClusterView::new_reusing(local, partitioner, nodes, previous)
    }

    /// A view of `nodes`; builds its ring.
    pub fn new(
        local: NodeId,
        partitioner: Partitioner,
        nodes: BTreeMap<NodeId, NodeView>,
    ) -> ClusterView {
        ClusterView::new_reusing(local, partitioner, nodes, None)
    }

    /// [`ClusterView::new`], taking `previous`'s ring when the same nodes have the same
    /// tokens, token-owning status and location in both (liveness, load, addresses and
    /// schema do not shape a ring). Gossip builds a view after every message; most change
    /// nothing a ring depends on, and building one sorts every token of the cluster.
    pub fn new_reusing(
        local: NodeId,
        partitioner: Partitioner,
        nodes: BTreeMap<NodeId, NodeView>,
        previous: Option<&ClusterView>,
    ) -> ClusterView {
        let (ring, future) = match previous {
            Some(p) if p.partitioner == partitioner && same_ring_inputs(&p.nodes, &nodes) => {
                (Arc::clone(&p.ring), p.future.clone())
            }
            _ => {
                let changing = nodes.values().any(|n| {
                    matches!(
                        role(n),
                        RingRole::Pending | RingRole::Owner { leaving: true } | RingRole::Moving
                    )
                });
                let future = changing.then(|| Arc::new(build_ring(partitioner, &nodes, true)));
                let ring = build_ring(partitioner, &nodes, false);
                (Arc::new(ring), future)
            }
        };
        ClusterView {
            local,
            partitioner,
            nodes,
            ring,
            future,
        }
    }

    /// The ring once every ring change under way completes: nodes joining with tokens
    /// announced own them, leaving nodes own nothing, moving nodes own the tokens they
    /// move to. `None` while no change is under
    /// way. Writes go to the replicas of both rings (pending replicas receive what they
    /// are about to own while they stream it); reads use [`ClusterView::ring`].
    pub fn future_ring(&self) -> Option<Arc<Ring>> {
        self.future.clone()
    }

    /// The nodes in a ring change, with their state (`"node 00..02 joining, node 00..05
    /// leaving"`), for messages that refuse an operation while one is under way.
    pub fn changes_under_way(&self) -> String {
        let busy: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.in_ring_change())
            .map(|n| format!("node {} {}", n.id, n.status.map_or("joining", |s| s.name())))
            .collect();
        busy.join(", ")
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

/// What a node is to the rings of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingRole {
    /// No part of either ring.
    None,
    /// Owns its tokens now (`normal`, or `leaving` and about to own nothing).
    Owner {
        /// Leaving.
        leaving: bool,
    },
    /// Joining with its tokens announced: owns them in the future ring only.
    Pending,
    /// Moving: owns its tokens in the ring, those it moves to in the future ring.
    Moving,
}

/// The tokens `n` holds in the ring (`future` false) or the future ring, if it is a
/// member of that ring.
fn ring_tokens(n: &NodeView, future: bool) -> Option<&[Token]> {
    match (role(n), future) {
        (RingRole::None, _)
        | (RingRole::Pending, false)
        | (RingRole::Owner { leaving: true }, true) => None,
        (RingRole::Moving, true) => Some(n.moving_to.as_deref().unwrap_or(&n.tokens)),
        _ => Some(&n.tokens),
    }
}

/// The nodes replaced ([`NodeView::replacing`]) by a member of the ring (`future` false)
/// or the future ring: they are left out of that ring, whose replacement holds their
/// tokens instead.
fn replaced(nodes: &BTreeMap<NodeId, NodeView>, future: bool) -> BTreeSet<NodeId> {
    nodes
        .values()
        .filter(|n| ring_tokens(n, future).is_some())
        .filter_map(|n| n.replacing)
        .collect()
}

fn role(n: &NodeView) -> RingRole {
    match n.status {
        Some(NodeStatus::Normal) => RingRole::Owner { leaving: false },
        Some(NodeStatus::Leaving) => RingRole::Owner { leaving: true },
        Some(NodeStatus::Moving) => RingRole::Moving,
        Some(NodeStatus::Joining) if n.is_pending() => RingRole::Pending,
        _ => RingRole::None,
    }
}

/// Whether `a` and `b` give the same rings: the same node ids, each with the same tokens,
/// ring role and location ([`build_ring`]'s inputs).
fn same_ring_inputs(a: &BTreeMap<NodeId, NodeView>, b: &BTreeMap<NodeId, NodeView>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ia, x), (ib, y))| {
            ia == ib
                && role(x) == role(y)
                && x.location == y.location
                && x.replacing == y.replacing
                && x.moving_to == y.moving_to
                && (Arc::ptr_eq(&x.tokens, &y.tokens) || x.tokens == y.tokens)
        })
}

/// The ring (`future` false) or the future ring of `nodes` ([`ring_tokens`]), but for the
/// nodes their members replace.
fn build_ring(partitioner: Partitioner, nodes: &BTreeMap<NodeId, NodeView>, future: bool) -> Ring {
    let mut claimed: BTreeSet<Token> = BTreeSet::new();
    let mut members = Vec::new();
    let replaced = replaced(nodes, future);
    // BTreeMap order: smaller node ids claim first, so they win a contested token.
    for n in nodes.values() {
        let Some(own) = ring_tokens(n, future) else {
            continue;
        };
        if replaced.contains(&n.id) {
            continue;
        }
        let mut tokens = Vec::with_capacity(own.len());
        for t in own {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(tokens: &[i64], alive: bool) -> BTreeMap<NodeId, NodeView> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let view = NodeView::for_test(i as u64 + 1, NodeStatus::Normal, &[*t], alive);
                (view.id, view)
            })
            .collect()
    }

    #[test]
    fn a_replacing_node_takes_the_replaced_nodes_place_in_the_future_ring_then_in_the_ring() {
        let mut all = nodes(&[10, 20, 30], true);
        // Node 3 is dead; node 4 replaces it with its token, joining.
        all.get_mut(&NodeId(3)).unwrap().alive = false;
        let mut replacement = all[&NodeId(3)].clone();
        replacement.id = NodeId(4);
        replacement.alive = true;
        replacement.status = Some(NodeStatus::Joining);
        replacement.replacing = Some(NodeId(3));
        all.insert(NodeId(4), replacement);
        let owner = |ring: &Ring| ring.owner_of(&Token::Murmur3(30));
        let joining = ClusterView::new(NodeId(1), Partitioner::Murmur3, all.clone());
        assert_eq!(owner(&joining.ring()), Some(NodeId(3)));
        let future = joining.future_ring().expect("a ring change under way");
        assert_eq!(owner(&future), Some(NodeId(4)));
        assert!(!future.nodes().contains_key(&NodeId(3)));
        // Normal: node 3 owns nothing, although its state still claims the token (and
        // its smaller id would win a contested token).
        all.get_mut(&NodeId(4)).unwrap().status = Some(NodeStatus::Normal);
        let normal = ClusterView::new_reusing(NodeId(1), Partitioner::Murmur3, all, Some(&joining));
        assert_eq!(owner(&normal.ring()), Some(NodeId(4)));
        assert!(!normal.ring().nodes().contains_key(&NodeId(3)));
        assert!(normal.future_ring().is_none());
    }

    #[test]
    fn a_moving_node_keeps_its_tokens_in_the_ring_and_has_its_new_ones_in_the_future_ring() {
        let mut all = nodes(&[10, 20, 30], true);
        let moving = all.get_mut(&NodeId(2)).unwrap();
        moving.status = Some(NodeStatus::Moving);
        moving.moving_to = Some(Arc::from(vec![Token::Murmur3(25)]));
        let view = ClusterView::new(NodeId(1), Partitioner::Murmur3, all.clone());
        assert!(view.node(NodeId(2)).unwrap().in_ring_change());
        assert!(
            view.changes_under_way().contains("moving"),
            "{}",
            view.changes_under_way()
        );
        // (20, 25] moves from node 3 to node 2.
        assert_eq!(view.ring().owner_of(&Token::Murmur3(22)), Some(NodeId(3)));
        let future = view.future_ring().expect("a ring change under way");
        assert_eq!(future.owner_of(&Token::Murmur3(22)), Some(NodeId(2)));
        assert_eq!(future.owner_of(&Token::Murmur3(27)), Some(NodeId(3)));
        // Done: normal with the new tokens; the announced moving_to no longer counts.
        let done = all.get_mut(&NodeId(2)).unwrap();
        done.status = Some(NodeStatus::Normal);
        done.tokens = Arc::from(vec![Token::Murmur3(25)]);
        let view = ClusterView::new_reusing(NodeId(1), Partitioner::Murmur3, all, Some(&view));
        assert!(view.future_ring().is_none());
        assert_eq!(view.ring().owner_of(&Token::Murmur3(22)), Some(NodeId(2)));
        assert_eq!(view.ring().owner_of(&Token::Murmur3(15)), Some(NodeId(2)));
        assert_eq!(view.ring().owner_of(&Token::Murmur3(27)), Some(NodeId(3)));
    }

    #[test]
    fn view_reuses_the_ring_only_while_its_inputs_are_unchanged() {
        let first = ClusterView::new(NodeId(1), Partitioner::Murmur3, nodes(&[10, 20], true));
        // Liveness changed, tokens did not: the same ring.
        let down = ClusterView::new_reusing(
            NodeId(1),
            Partitioner::Murmur3,
            nodes(&[10, 20], false),
            Some(&first),
        );
        assert!(Arc::ptr_eq(&first.ring(), &down.ring()));
        assert_ne!(first, down);
        // A token moved: a new ring, the one a fresh build gives.
        let moved = ClusterView::new_reusing(
            NodeId(1),
            Partitioner::Murmur3,
            nodes(&[10, 30], true),
            Some(&first),
        );
        assert!(!Arc::ptr_eq(&first.ring(), &moved.ring()));
        let fresh = ClusterView::new(NodeId(1), Partitioner::Murmur3, nodes(&[10, 30], true));
        assert_eq!(*moved.ring(), *fresh.ring());
        // A node leaving the token owners changes the ring too.
        let mut left = nodes(&[10, 20], true);
        if let Some(n) = left.get_mut(&NodeId(2)) {
            n.status = Some(NodeStatus::Left);
        }
        let left = ClusterView::new_reusing(NodeId(1), Partitioner::Murmur3, left, Some(&first));
        assert_eq!(left.ring().nodes().len(), 1);
    }
}
