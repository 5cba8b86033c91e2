//! Where a key's requests go: its home replicas (the preference list of its token under
//! the table's placement), the stand-ins that take hints for home replicas that are
//! down (the next healthy nodes clockwise past the list, Dynamo's sloppy quorum), and how
//! many answers a consistency level needs.

use std::net::SocketAddr;

use sibyl_protocol::{
    Consistency, ConsistencyLevel, ErrorKind, Placement as TablePlacement, QuorumMode, ServerError,
    TableOptions,
};

use crate::cluster::{ClusterView, NodeStatus};
use crate::ring::{NodeId, ReplicationStrategy};

/// One node a request may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The node.
    pub id: NodeId,
    /// Its peer address (`None` until gossip told it).
    pub addr: Option<SocketAddr>,
    /// Up according to the failure detector (and its address is known).
    pub alive: bool,
    /// This node.
    pub local: bool,
    /// Leaving the ring (decommissioning): it still owns its ranges, but a write is
    /// forwarded to it only when no other home replica is up (it disconnects from its
    /// peers once it left, cutting what they sent it).
    pub leaving: bool,
}

/// The nodes of one key (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlacement {
    /// Home replicas in preference order.
    pub home: Vec<Target>,
    /// Healthy nodes past the preference list, clockwise: stand-ins for home replicas
    /// that are down, in the order they are chosen.
    pub stand_ins: Vec<Target>,
    /// Pending replicas: nodes of the key's preference list in the ring after the ring
    /// changes under way ([`ClusterView::future_ring`]) that are not home replicas now.
    /// Writes go to them too and wait for each (Cassandra's rule: W + pending
    /// acknowledgements among home and pending replicas), so that once the change
    /// completes, W replicas of the new list hold every acknowledged write. Reads never
    /// ask them.
    pub pending: Vec<Target>,
}

impl KeyPlacement {
    /// The placement of `partition_key` in a table of `options` as `view` sees it.
    pub fn of(view: &ClusterView, options: &TableOptions, partition_key: &[u8]) -> KeyPlacement {
        let ring = view.ring();
        let token = view.partitioner.token(partition_key);
        let strategy = strategy(options);
        let home_ids = ring.preference_list(&token, &strategy);
        let target = |id: NodeId| {
            let node = view.node(id);
            let local = id == view.local;
            let addr = node.and_then(|n| n.peer_address);
            Target {
                id,
                addr,
                alive: local || (node.is_some_and(|n| n.alive) && addr.is_some()),
                local,
                leaving: node.is_some_and(|n| n.status == Some(NodeStatus::Leaving)),
            }
        };
        let home: Vec<Target> = home_ids.iter().map(|&id| target(id)).collect();
        let down = home.iter().filter(|t| !t.alive).count();
        let stand_ins = if down == 0 {
            Vec::new()
        } else {
            ring.nodes_clockwise(&token)
                .filter(|id| !home_ids.contains(id))
                .map(target)
                .filter(|t| t.alive)
                .take(down)
                .collect()
        };
        let pending = match view.future_ring() {
            Some(future) => future
                .preference_list(&token, &strategy)
                .into_iter()
                .filter(|id| !home_ids.contains(id))
                .map(target)
                .collect(),
            None => Vec::new(),
        };
        KeyPlacement {
            home,
            stand_ins,
            pending,
        }
    }

    /// Whether this node is a home replica.
    pub fn is_home(&self) -> bool {
        self.home.iter().any(|t| t.local)
    }

    /// Whether this node is the only home replica (a table of replication factor 1 whose
    /// key this node owns) and no replica is pending: the request needs no peer.
    pub fn only_local(&self) -> bool {
        matches!(self.home.as_slice(), [t] if t.local) && self.pending.is_empty()
    }

    /// Home replicas that are up.
    pub fn alive_home(&self) -> usize {
        self.home.iter().filter(|t| t.alive).count()
    }
}

/// The replication strategy of a table's placement.
pub fn strategy(options: &TableOptions) -> ReplicationStrategy {
    let n = usize::from(options.replication_factor);
    match &options.placement {
        TablePlacement::Simple => ReplicationStrategy::simple(n),
        TablePlacement::RackAware => ReplicationStrategy::RackAware {
            replication_factor: n,
        },
        TablePlacement::DcAware(dcs) => ReplicationStrategy::DcAware {
            factors: dcs
                .iter()
                .map(|(dc, r)| (dc.clone(), usize::from(*r)))
                .collect(),
        },
    }
}

/// Answers `level` needs from a table of replication factor `rf` (the table of the
/// protocol spec, section 5.2); `INVALID` for an explicit 0.
pub fn required(level: ConsistencyLevel, rf: u16) -> Result<u32, ServerError> {
    let rf = u32::from(rf);
    Ok(match level {
        ConsistencyLevel::One => 1,
        ConsistencyLevel::Two => 2,
        ConsistencyLevel::Three => 3,
        ConsistencyLevel::Quorum | ConsistencyLevel::LocalQuorum => rf / 2 + 1,
        ConsistencyLevel::All => rf,
        ConsistencyLevel::Explicit(0) => {
            return Err(ServerError::new(
                ErrorKind::Invalid,
                "explicit consistency must name at least 1 replica",
            ))
        }
        ConsistencyLevel::Explicit(n) => u32::from(n),
    })
}

/// The `UNAVAILABLE` error.
pub fn unavailable(c: Consistency, required: u32, alive: u32, table: &str) -> ServerError {
    let mode = match c.mode {
        QuorumMode::Sloppy => "sloppy",
        QuorumMode::Strict => "strict",
    };
    ServerError::new(
        ErrorKind::Unavailable { required, alive },
        format!(
            "consistency {:?} ({mode}) needs {required} replicas of table {table:?}; \
             {alive} can take the request",
            c.level
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::cluster::{NodeStatus, NodeView};
    use crate::ring::{NodeLocation, Partitioner, Token};

    fn view(alive: &[bool]) -> ClusterView {
        let mut nodes = BTreeMap::new();
        for (i, up) in alive.iter().enumerate() {
            let id = NodeId(i as u64 + 1);
            // Node i owns one token, evenly spaced.
            let step = i128::from(u64::MAX / alive.len() as u64);
            let token = i64::try_from(i128::from(i64::MIN) + i as i128 * step).unwrap();
            nodes.insert(
                id,
                NodeView {
                    id,
                    generation: 1,
                    status: Some(NodeStatus::Normal),
                    tokens: Arc::from(vec![Token::Murmur3(token)]),
                    location: NodeLocation::default(),
                    peer_address: Some(format!("127.0.0.1:{}", 7000 + i).parse().unwrap()),
                    client_address: None,
                    schema_version: None,
                    load: 0,
                    alive: *up,
                    replacing: None,
                    moving_to: None,
                },
            );
        }
        ClusterView::new(NodeId(1), Partitioner::Murmur3, nodes)
    }

    fn options(rf: u16) -> TableOptions {
        TableOptions {
            replication_factor: rf,
            ..TableOptions::default()
        }
    }

    #[test]
    fn placement_takes_rf_home_replicas_and_stand_ins_only_for_the_down_ones() {
        let v = view(&[true; 5]);
        let p = KeyPlacement::of(&v, &options(3), b"k");
        assert_eq!(p.home.len(), 3);
        assert!(p.stand_ins.is_empty());
        let mut distinct: Vec<NodeId> = p.home.iter().map(|t| t.id).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);

        // Take one home replica down: exactly one stand-in, outside the home list.
        // The local node is always up to itself: take down another home replica.
        let down = p.home.iter().find(|t| !t.local).unwrap().id;
        let mut alive = [true; 5];
        alive[(down.0 - 1) as usize] = false;
        let q = KeyPlacement::of(&view(&alive), &options(3), b"k");
        assert_eq!(q.alive_home(), 2);
        assert_eq!(q.stand_ins.len(), 1);
        assert!(!q.home.iter().any(|t| t.id == q.stand_ins[0].id));
        assert!(q.stand_ins[0].alive);
    }

    #[test]
    fn placement_of_rf_one_on_the_owner_is_local_only() {
        let v = view(&[true; 3]);
        let local_key = (0..1000u32)
            .map(|i| i.to_be_bytes())
            .find(|k| KeyPlacement::of(&v, &options(1), k).home[0].local)
            .unwrap();
        assert!(KeyPlacement::of(&v, &options(1), &local_key).only_local());
        assert!(!KeyPlacement::of(&v, &options(3), &local_key).only_local());
    }

    #[test]
    fn required_follows_the_spec_table() {
        assert_eq!(required(ConsistencyLevel::Quorum, 3).unwrap(), 2);
        assert_eq!(required(ConsistencyLevel::Quorum, 4).unwrap(), 3);
        assert_eq!(required(ConsistencyLevel::All, 5).unwrap(), 5);
        assert_eq!(required(ConsistencyLevel::Three, 1).unwrap(), 3);
        assert!(required(ConsistencyLevel::Explicit(0), 3).is_err());
    }
}
