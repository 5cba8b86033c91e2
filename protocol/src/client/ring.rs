//! [`ClientRing`]: the client's picture of token ownership, built from a TOPOLOGY answer,
//! for token-aware routing.
//!
//! Rules (`doc/wire_format.md`, "Routing: token of a key"):
//! - Members are the nodes in state normal or leaving with a non-empty client address;
//!   joining nodes do not own their tokens yet, left nodes own nothing, and a node without
//!   an address cannot be reached (the client asks for the topology again later).
//! - A key's token `t` ([`crate::token`], by the topology's partitioner) is owned by the
//!   member holding the first token `>= t` in ascending `i128` order, wrapping past the
//!   largest token to the smallest.
//! - Failover targets are the next distinct members met walking clockwise from there
//!   ([`ClientRing::members_clockwise`]); [`ClientRing::route_with`] moves members that
//!   are down (the topology's `up` false, or a caller's own mark) after the others.
//!
//! Pure data, immutable once built; the client swaps in a new ring on each refresh.

use crate::message::topology::{NodeState, Topology};
use crate::token::TokenFunction;

/// One node that owns tokens, as the ring knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingMember {
    /// The topology's `node.id` (16 lowercase hex digits), as `response-meta.replicas`
    /// names the node.
    pub id: String,
    /// Client address, `host:port`, as announced (never empty).
    pub address: String,
    /// The topology's failure-detector view.
    pub up: bool,
}

/// Why a topology gives no ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The topology names a partitioner this client cannot hash for.
    #[error("unknown partitioner {name:?} (expected murmur3 or md5)")]
    UnknownPartitioner {
        /// The name in the topology.
        name: String,
    },
}

/// Token ownership for routing: sorted tokens, each pointing at its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRing {
    function: TokenFunction,
    members: Vec<RingMember>,
    /// `(token, member index)`, ascending by token (then index, so a token claimed twice
    /// goes to the node listed first).
    tokens: Vec<(i128, usize)>,
}

impl ClientRing {
    /// Builds the ring of `topology`: members are the nodes in state normal, leaving or
    /// moving (with their current tokens) with a non-empty address and at least one token.
    pub fn from_topology(topology: &Topology) -> Result<ClientRing, RingError> {
        let function = TokenFunction::from_name(&topology.partitioner).ok_or_else(|| {
            RingError::UnknownPartitioner {
                name: topology.partitioner.clone(),
            }
        })?;
        let mut members = Vec::new();
        let mut tokens = Vec::new();
        for node in &topology.nodes {
            let owns = matches!(
                node.state,
                NodeState::Normal | NodeState::Leaving | NodeState::Moving
            );
            if !owns || node.address.is_empty() || node.tokens.is_empty() {
                continue;
            }
            let index = members.len();
            tokens.extend(node.tokens.iter().map(|t| (*t, index)));
            members.push(RingMember {
                id: node.id.clone(),
                address: node.address.clone(),
                up: node.up,
            });
        }
        tokens.sort_unstable();
        tokens.dedup_by_key(|(t, _)| *t);
        Ok(ClientRing {
            function,
            members,
            tokens,
        })
    }

    /// The hash of the ring's partitioner.
    pub fn function(&self) -> TokenFunction {
        self.function
    }

    /// The members, in topology order (indices used by [`ClientRing::route_with`]).
    pub fn members(&self) -> &[RingMember] {
        &self.members
    }

    /// True when no node owns tokens (the client then routes round-robin).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token of `key` under the ring's partitioner, in the topology's encoding.
    pub fn token_of(&self, key: &[u8]) -> i128 {
        self.function.token(key)
    }

    /// Index into `tokens` of the first token `>= token`, wrapping to 0.
    fn start_index(&self, token: i128) -> usize {
        let i = self.tokens.partition_point(|(t, _)| *t < token);
        if i == self.tokens.len() {
            0
        } else {
            i
        }
    }

    /// The member owning `token`: the owner of the first ring token `>= token`, wrapping.
    pub fn owner_of(&self, token: i128) -> Option<&RingMember> {
        self.members.get(self.owner_index(token)?)
    }

    /// The index (into [`ClientRing::members`]) of the member owning `token`; `None` for
    /// an empty ring.
    pub fn owner_index(&self, token: i128) -> Option<usize> {
        self.tokens.get(self.start_index(token)).map(|(_, m)| *m)
    }

    /// Indices of the distinct members met walking clockwise from `token`; the first is
    /// its owner. Empty for an empty ring.
    pub fn members_clockwise(&self, token: i128) -> Vec<usize> {
        let n = self.tokens.len();
        let start = self.start_index(token);
        let mut seen = vec![false; self.members.len()];
        let mut out = Vec::with_capacity(self.members.len());
        for step in 0..n {
            if out.len() == self.members.len() {
                break;
            }
            let Some((_, member)) = self.tokens.get((start + step) % n) else {
                continue;
            };
            if let Some(s) = seen.get_mut(*member) {
                if !*s {
                    *s = true;
                    out.push(*member);
                }
            }
        }
        out
    }

    /// The members to try for `token`, in order: clockwise from its owner, first those up
    /// in the topology and not `down` by the caller's own mark (given the member index),
    /// then the rest, still clockwise, as a last resort.
    pub fn route_with(&self, token: i128, mut down: impl FnMut(usize) -> bool) -> Vec<usize> {
        let (mut live, mut rest): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for i in self.members_clockwise(token) {
            let up = self.members.get(i).is_some_and(|m| m.up);
            if up && !down(i) {
                live.push(i);
            } else {
                rest.push(i);
            }
        }
        live.extend(rest);
        live
    }

    /// The members to try for `key`: [`ClientRing::route_with`] by the topology's view
    /// alone.
    pub fn route(&self, key: &[u8]) -> Vec<&RingMember> {
        self.route_with(self.token_of(key), |_| false)
            .into_iter()
            .filter_map(|i| self.members.get(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::topology::NodeInfo;
    use crate::token::{md5_token, murmur3_token};

    fn node(id: &str, state: NodeState, up: bool, tokens: &[i128]) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            address: format!("{id}:7400"),
            datacenter: "dc1".into(),
            rack: "rack1".into(),
            state,
            up,
            tokens: tokens.to_vec(),
            load_bytes: 0,
        }
    }

    fn ring(partitioner: &str, nodes: Vec<NodeInfo>) -> ClientRing {
        ClientRing::from_topology(&Topology {
            partitioner: partitioner.into(),
            nodes,
        })
        .unwrap()
    }

    fn ids(r: &ClientRing, order: &[usize]) -> Vec<String> {
        order.iter().map(|i| r.members()[*i].id.clone()).collect()
    }

    fn owner(r: &ClientRing, t: i128) -> &str {
        &r.owner_of(t).unwrap().id
    }

    /// a: 10, 40; b: 20; c: 30.
    fn abc() -> ClientRing {
        ring(
            "murmur3",
            vec![
                node("a", NodeState::Normal, true, &[10, 40]),
                node("b", NodeState::Normal, true, &[20]),
                node("c", NodeState::Leaving, true, &[30]),
            ],
        )
    }

    #[test]
    fn client_ring_owner_is_first_token_at_or_after() {
        let r = abc();
        assert_eq!(owner(&r, 10), "a", "a token is owned by its own node");
        assert_eq!(owner(&r, 11), "b");
        assert_eq!(owner(&r, 20), "b");
        assert_eq!(owner(&r, 25), "c", "leaving nodes still own their tokens");
        assert_eq!(owner(&r, 31), "a");
    }

    #[test]
    fn client_ring_wraps_past_the_largest_token() {
        let r = abc();
        assert_eq!(owner(&r, 41), "a");
        assert_eq!(owner(&r, i128::from(i64::MAX)), "a");
        assert_eq!(owner(&r, i128::from(i64::MIN)), "a");
        assert_eq!(ids(&r, &r.members_clockwise(41)), ["a", "b", "c"]);
    }

    #[test]
    fn client_ring_failover_order_is_distinct_nodes_clockwise() {
        let r = abc();
        assert_eq!(ids(&r, &r.members_clockwise(15)), ["b", "c", "a"]);
        assert_eq!(ids(&r, &r.members_clockwise(35)), ["a", "b", "c"]);
        // From 25: c (30), a (40), then a's 10 again is skipped, b (20).
        assert_eq!(ids(&r, &r.members_clockwise(25)), ["c", "a", "b"]);
    }

    #[test]
    fn client_ring_moves_down_nodes_last() {
        let r = ring(
            "murmur3",
            vec![
                node("a", NodeState::Normal, true, &[10]),
                node("b", NodeState::Normal, false, &[20]),
                node("c", NodeState::Normal, true, &[30]),
            ],
        );
        assert_eq!(ids(&r, &r.route_with(15, |_| false)), ["c", "a", "b"]);
        // The caller's own mark (member index 2 is c) demotes c too.
        assert_eq!(ids(&r, &r.route_with(15, |i| i == 2)), ["a", "b", "c"]);
        let routed: Vec<&str> = r.route(b"k").iter().map(|m| m.id.as_str()).collect();
        assert_eq!(routed.last(), Some(&"b"));
    }

    #[test]
    fn client_ring_skips_joining_left_and_addressless_nodes() {
        let mut no_address = node("d", NodeState::Normal, true, &[5]);
        no_address.address.clear();
        let r = ring(
            "murmur3",
            vec![
                node("a", NodeState::Normal, true, &[10]),
                node("j", NodeState::Joining, true, &[15]),
                node("l", NodeState::Left, true, &[18]),
                node("b", NodeState::Normal, true, &[20]),
                no_address,
            ],
        );
        let members: Vec<&str> = r.members().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(members, ["a", "b"]);
        assert_eq!(
            owner(&r, 12),
            "b",
            "the joining node's token is not a boundary"
        );
        assert_eq!(
            owner(&r, 4),
            "a",
            "the address-less node's token is not either"
        );
    }

    #[test]
    fn client_ring_empty_topology_routes_nowhere() {
        let r = ring("murmur3", vec![]);
        assert!(r.is_empty());
        assert!(r.owner_of(0).is_none());
        assert!(r.members_clockwise(0).is_empty());
        let only_joining = ring("md5", vec![node("j", NodeState::Joining, true, &[1])]);
        assert!(only_joining.is_empty());
    }

    #[test]
    fn client_ring_unknown_partitioner_is_an_error() {
        let err = ClientRing::from_topology(&Topology {
            partitioner: "sha1".into(),
            nodes: vec![],
        })
        .unwrap_err();
        assert_eq!(
            err,
            RingError::UnknownPartitioner {
                name: "sha1".into()
            }
        );
    }

    #[test]
    fn client_ring_hashes_keys_by_the_topology_partitioner() {
        let key = b"alice";
        let m = murmur3_token(key);
        // Boundaries just below and at the key's murmur3 token.
        let r = ring(
            "murmur3",
            vec![
                node("below", NodeState::Normal, true, &[i128::from(m) - 1]),
                node("at", NodeState::Normal, true, &[i128::from(m)]),
            ],
        );
        assert_eq!(r.token_of(key), i128::from(m));
        assert_eq!(r.route(key)[0].id, "at");

        let d = md5_token(key) as i128;
        let r = ring(
            "md5",
            vec![
                node("at", NodeState::Normal, true, &[d]),
                node("after", NodeState::Normal, true, &[d + 1]),
            ],
        );
        assert_eq!(r.token_of(key), d);
        assert_eq!(r.route(key)[0].id, "at");
        assert_eq!(r.route(key)[1].id, "after");
        // An md5 key past every node token wraps to the smallest.
        let r = ring(
            "md5",
            vec![
                node("low", NodeState::Normal, true, &[0]),
                node("high", NodeState::Normal, true, &[d - 1]),
            ],
        );
        assert_eq!(r.route(key)[0].id, "low");
    }

    #[test]
    fn client_ring_duplicate_token_goes_to_the_node_listed_first() {
        let r = ring(
            "murmur3",
            vec![
                node("a", NodeState::Normal, true, &[10]),
                node("b", NodeState::Normal, true, &[10, 20]),
            ],
        );
        assert_eq!(owner(&r, 5), "a");
        assert_eq!(owner(&r, 15), "b");
    }
}
