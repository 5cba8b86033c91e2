//! Placement strategies: which nodes hold the replicas of a token (the preference list).
//!
//! - `simple`: the first N distinct nodes clockwise from the key's token (Dynamo §4.3).
//! - `rack-aware`: walk clockwise taking nodes from racks not yet used; nodes on an already
//!   used rack are set aside and taken, in walk order, once every rack holds a replica
//!   (Cassandra's NetworkTopologyStrategy within one datacenter).
//! - `dc-aware`: a replication factor per datacenter, rack-aware inside each datacenter;
//!   datacenters not listed hold no replica.
//!
//! The list is in the order replicas were chosen; with fewer eligible nodes than the
//! replication factor it holds every eligible node. Pure functions over a [`Ring`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::node::NodeId;
use super::ring::Ring;
use super::token::Token;

/// How replicas are placed on the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationStrategy {
    /// First `replication_factor` distinct nodes clockwise.
    Simple {
        /// N.
        replication_factor: usize,
    },
    /// Replicas on distinct racks while racks remain (all datacenters as one).
    RackAware {
        /// N.
        replication_factor: usize,
    },
    /// A replication factor per datacenter, rack-aware within each.
    DcAware {
        /// Datacenter name -> replicas in that datacenter.
        factors: BTreeMap<String, usize>,
    },
}

impl ReplicationStrategy {
    /// Shorthand for `Simple { replication_factor: n }`.
    pub fn simple(n: usize) -> ReplicationStrategy {
        ReplicationStrategy::Simple {
            replication_factor: n,
        }
    }

    /// Total number of replicas this strategy asks for.
    pub fn total_replicas(&self) -> usize {
        match self {
            ReplicationStrategy::Simple { replication_factor }
            | ReplicationStrategy::RackAware { replication_factor } => *replication_factor,
            ReplicationStrategy::DcAware { factors } => factors.values().sum(),
        }
    }

    /// The preference list of `token` on `ring`.
    pub fn replicas(&self, ring: &Ring, token: &Token) -> Vec<NodeId> {
        match self {
            ReplicationStrategy::Simple { replication_factor } => ring
                .nodes_clockwise(token)
                .take(*replication_factor)
                .collect(),
            ReplicationStrategy::RackAware { replication_factor } => {
                let racks: BTreeSet<Arc<str>> = owning_nodes(ring)
                    .filter_map(|n| ring.location(n))
                    .map(|l| l.rack.clone())
                    .collect();
                let mut picker = RackPicker::new(*replication_factor, racks.len());
                let mut out = Vec::new();
                for node in ring.nodes_clockwise(token) {
                    let rack = ring.location(node).map(|l| l.rack.clone());
                    picker.offer(node, rack.unwrap_or_else(|| Arc::from("")), &mut out);
                    if picker.done() {
                        break;
                    }
                }
                picker.finish(&mut out);
                out
            }
            ReplicationStrategy::DcAware { factors } => {
                let mut racks_per_dc: BTreeMap<&str, BTreeSet<Arc<str>>> = BTreeMap::new();
                for node in owning_nodes(ring) {
                    if let Some(loc) = ring.location(node) {
                        if let Some((dc, _)) = factors.get_key_value(&*loc.datacenter) {
                            racks_per_dc
                                .entry(dc.as_str())
                                .or_default()
                                .insert(loc.rack.clone());
                        }
                    }
                }
                let mut pickers: BTreeMap<&str, RackPicker> = factors
                    .iter()
                    .map(|(dc, rf)| {
                        let racks = racks_per_dc.get(dc.as_str()).map_or(0, |r| r.len());
                        (dc.as_str(), RackPicker::new(*rf, racks))
                    })
                    .collect();
                let mut out = Vec::new();
                for node in ring.nodes_clockwise(token) {
                    let Some(loc) = ring.location(node) else {
                        continue;
                    };
                    if let Some(p) = pickers.get_mut(&*loc.datacenter) {
                        p.offer(node, loc.rack.clone(), &mut out);
                    }
                    if pickers.values().all(RackPicker::done) {
                        break;
                    }
                }
                for p in pickers.values_mut() {
                    p.finish(&mut out);
                }
                out
            }
        }
    }
}

/// Nodes that hold at least one token.
fn owning_nodes(ring: &Ring) -> impl Iterator<Item = NodeId> + '_ {
    let owners: BTreeSet<NodeId> = ring.entries().map(|(_, n)| n).collect();
    owners.into_iter()
}

/// Rack-aware selection inside one datacenter (Cassandra's NTS `DatacenterEndpoints`).
#[derive(Debug)]
struct RackPicker {
    left: usize,
    rack_count: usize,
    racks: BTreeSet<Arc<str>>,
    skipped: Vec<NodeId>,
}

impl RackPicker {
    fn new(rf: usize, rack_count: usize) -> RackPicker {
        RackPicker {
            left: rf,
            rack_count,
            racks: BTreeSet::new(),
            skipped: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.left == 0
    }

    fn take(&mut self, node: NodeId, out: &mut Vec<NodeId>) {
        if self.left > 0 {
            out.push(node);
            self.left -= 1;
        }
    }

    fn offer(&mut self, node: NodeId, rack: Arc<str>, out: &mut Vec<NodeId>) {
        if self.done() {
            return;
        }
        if self.racks.insert(rack) {
            self.take(node, out);
            if self.racks.len() == self.rack_count {
                // Every rack holds a replica: the set-aside nodes come next, in walk order.
                for n in std::mem::take(&mut self.skipped) {
                    self.take(n, out);
                }
            }
        } else if self.racks.len() >= self.rack_count {
            self.take(node, out);
        } else {
            self.skipped.push(node);
        }
    }

    /// After the walk: nodes still set aside fill any remaining slots.
    fn finish(&mut self, out: &mut Vec<NodeId>) {
        for n in std::mem::take(&mut self.skipped) {
            self.take(n, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{NodeLocation, Partitioner, RingNode};

    /// Nodes 1..=6 with tokens 10,20,..,60; racks and dcs as given.
    fn ring(locs: &[(&str, &str)]) -> Ring {
        Ring::new(
            Partitioner::Murmur3,
            locs.iter().enumerate().map(|(i, (dc, rack))| RingNode {
                id: NodeId(i as u64 + 1),
                location: NodeLocation::new(dc, rack),
                tokens: vec![Token::Murmur3((i as i64 + 1) * 10)],
            }),
        )
        .unwrap()
    }

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn strategy_simple_takes_next_distinct_nodes() {
        let r = ring(&[("dc1", "r1"); 6]);
        let t = Token::Murmur3(35);
        assert_eq!(
            ReplicationStrategy::simple(3).replicas(&r, &t),
            ids(&[4, 5, 6])
        );
        let t = Token::Murmur3(55);
        assert_eq!(
            ReplicationStrategy::simple(3).replicas(&r, &t),
            ids(&[6, 1, 2])
        );
    }

    #[test]
    fn strategy_simple_caps_at_node_count() {
        let r = ring(&[("dc1", "r1"); 2]);
        let list = ReplicationStrategy::simple(5).replicas(&r, &Token::Murmur3(0));
        assert_eq!(list, ids(&[1, 2]));
    }

    #[test]
    fn strategy_rack_aware_spreads_over_racks() {
        // Racks clockwise: a a b b c c
        let r = ring(&[
            ("dc1", "a"),
            ("dc1", "a"),
            ("dc1", "b"),
            ("dc1", "b"),
            ("dc1", "c"),
            ("dc1", "c"),
        ]);
        let s = ReplicationStrategy::RackAware {
            replication_factor: 3,
        };
        assert_eq!(s.replicas(&r, &Token::Murmur3(5)), ids(&[1, 3, 5]));
        // RF 4: after all racks are used the skipped node 2 comes first.
        let s = ReplicationStrategy::RackAware {
            replication_factor: 4,
        };
        assert_eq!(s.replicas(&r, &Token::Murmur3(5)), ids(&[1, 3, 5, 2]));
    }

    #[test]
    fn strategy_rack_aware_with_one_rack_is_simple() {
        let r = ring(&[("dc1", "r1"); 5]);
        let s = ReplicationStrategy::RackAware {
            replication_factor: 3,
        };
        assert_eq!(s.replicas(&r, &Token::Murmur3(15)), ids(&[2, 3, 4]));
    }

    #[test]
    fn strategy_dc_aware_places_per_datacenter() {
        let r = ring(&[
            ("east", "a"),
            ("west", "a"),
            ("east", "a"),
            ("east", "b"),
            ("west", "b"),
            ("west", "a"),
        ]);
        let s = ReplicationStrategy::DcAware {
            factors: [("east".to_string(), 2), ("west".to_string(), 1)]
                .into_iter()
                .collect(),
        };
        let list = s.replicas(&r, &Token::Murmur3(5));
        // east: 1 (rack a), skip 3 (rack a), 4 (rack b); west: 2.
        assert_eq!(list, ids(&[1, 2, 4]));
        assert_eq!(s.total_replicas(), 3);
    }

    #[test]
    fn strategy_dc_aware_ignores_unlisted_datacenters() {
        let r = ring(&[("east", "a"), ("west", "a"), ("east", "b")]);
        let s = ReplicationStrategy::DcAware {
            factors: [("east".to_string(), 5)].into_iter().collect(),
        };
        assert_eq!(s.replicas(&r, &Token::Murmur3(0)), ids(&[1, 3]));
    }
}
