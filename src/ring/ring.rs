//! [`Ring`]: an immutable snapshot of which node owns which tokens.
//!
//! Vocabulary (riak_core / Cassandra): each node holds several tokens (virtual nodes); the
//! token `t` with predecessor `p` owns the range `(p, t]`; a key belongs to the first token
//! at or after its own token, wrapping past the largest token to the smallest. The
//! preference list of a key is read from the ring by a [`ReplicationStrategy`].
//!
//! Invariants: `tokens` is sorted and duplicate-free, `owners[i]` owns `tokens[i]`, every
//! owner has an entry in `nodes`, and all tokens belong to `partitioner`'s space.
//! Lookups are binary searches: O(log T) for T tokens.
//!
//! Threading: a `Ring` is never mutated after it is built; share it in an `Arc` and swap
//! the whole `Arc` to publish a new ring.

use std::collections::{BTreeMap, BTreeSet};

use super::node::{NodeId, NodeLocation};
use super::partitioner::Partitioner;
use super::strategy::ReplicationStrategy;
use super::token::Token;

/// One node's entry when building a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingNode {
    /// The node.
    pub id: NodeId,
    /// Its datacenter and rack.
    pub location: NodeLocation,
    /// The tokens it owns.
    pub tokens: Vec<Token>,
}

/// Why a ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// Two nodes claim the same token.
    #[error("token {token} claimed by both {first} and {second}")]
    DuplicateToken {
        /// The contested token.
        token: Token,
        /// The node listed first.
        first: NodeId,
        /// The node listed second.
        second: NodeId,
    },
    /// A token from another partitioner's space.
    #[error("token {token} of node {node} is not a {partitioner} token")]
    WrongPartitioner {
        /// The foreign token.
        token: Token,
        /// Its node.
        node: NodeId,
        /// The ring's partitioner.
        partitioner: Partitioner,
    },
}

/// Immutable snapshot of token ownership.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    partitioner: Partitioner,
    tokens: Vec<Token>,
    owners: Vec<NodeId>,
    nodes: BTreeMap<NodeId, NodeLocation>,
}

impl Ring {
    /// An empty ring (no node owns anything).
    pub fn empty(partitioner: Partitioner) -> Ring {
        Ring {
            partitioner,
            tokens: Vec::new(),
            owners: Vec::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// Builds a ring from nodes and their tokens. A node listed with no tokens is known
    /// (it has a location) but owns nothing.
    pub fn new(
        partitioner: Partitioner,
        nodes: impl IntoIterator<Item = RingNode>,
    ) -> Result<Ring, RingError> {
        let mut entries: Vec<(Token, NodeId)> = Vec::new();
        let mut locations = BTreeMap::new();
        for node in nodes {
            for token in &node.tokens {
                if !partitioner.owns_token(token) {
                    return Err(RingError::WrongPartitioner {
                        token: *token,
                        node: node.id,
                        partitioner,
                    });
                }
                entries.push((*token, node.id));
            }
            locations.insert(node.id, node.location);
        }
        entries.sort();
        for pair in entries.windows(2) {
            if let [(ta, na), (tb, nb)] = pair {
                if ta == tb {
                    return Err(RingError::DuplicateToken {
                        token: *ta,
                        first: *na,
                        second: *nb,
                    });
                }
            }
        }
        let (tokens, owners) = entries.into_iter().unzip();
        Ok(Ring {
            partitioner,
            tokens,
            owners,
            nodes: locations,
        })
    }

    /// The ring's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// All tokens, sorted.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// `(token, owner)` pairs in token order.
    pub fn entries(&self) -> impl Iterator<Item = (Token, NodeId)> + '_ {
        self.tokens.iter().copied().zip(self.owners.iter().copied())
    }

    /// Known nodes and their locations (including nodes without tokens).
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeLocation> {
        &self.nodes
    }

    /// The location of a node, if it is on the ring.
    pub fn location(&self, node: NodeId) -> Option<&NodeLocation> {
        self.nodes.get(&node)
    }

    /// The tokens a node owns, sorted.
    pub fn tokens_of(&self, node: NodeId) -> Vec<Token> {
        self.entries()
            .filter(|(_, n)| *n == node)
            .map(|(t, _)| t)
            .collect()
    }

    /// True when no token is assigned.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Index of the first token at or after `token`, wrapping to 0; `None` on an empty ring.
    pub fn index_of(&self, token: &Token) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.tokens.partition_point(|t| t < token);
        Some(if i == self.tokens.len() { 0 } else { i })
    }

    /// The node owning `token`'s range: the owner of the first token at or after it.
    pub fn owner_of(&self, token: &Token) -> Option<NodeId> {
        self.index_of(token)
            .and_then(|i| self.owners.get(i).copied())
    }

    /// The range `(start, end]` ending at the token with index `i`.
    pub fn range_at(&self, i: usize) -> Option<(Token, Token)> {
        let end = *self.tokens.get(i)?;
        let prev = if i == 0 { self.tokens.len() - 1 } else { i - 1 };
        Some((*self.tokens.get(prev)?, end))
    }

    /// Owner of the token with index `i`.
    pub fn owner_at(&self, i: usize) -> Option<NodeId> {
        self.owners.get(i).copied()
    }

    /// Distinct nodes met walking clockwise from `token` (the first is its owner). Used for
    /// preference lists and, past the list, for sloppy-quorum fallbacks.
    pub fn nodes_clockwise(&self, token: &Token) -> NodesClockwise<'_> {
        NodesClockwise {
            ring: self,
            start: self.index_of(token).unwrap_or(0),
            step: 0,
            seen: BTreeSet::new(),
        }
    }

    /// The replicas of `token` under `strategy`, in preference order.
    pub fn preference_list(&self, token: &Token, strategy: &ReplicationStrategy) -> Vec<NodeId> {
        strategy.replicas(self, token)
    }

    /// Fraction of the ring each node owns as primary (replication factor 1). Sums to 1
    /// over nodes holding tokens; nodes without tokens are listed with 0.
    pub fn ownership(&self) -> BTreeMap<NodeId, f64> {
        let mut out: BTreeMap<NodeId, f64> = self.nodes.keys().map(|n| (*n, 0.0)).collect();
        let size = self.partitioner.ring_size() as f64;
        for i in 0..self.tokens.len() {
            if let (Some(w), Some(owner)) = (self.range_width(i), self.owner_at(i)) {
                *out.entry(owner).or_insert(0.0) += w as f64 / size;
            }
        }
        out
    }

    /// Fraction of the ring each node holds a replica of under `strategy`. Sums to the
    /// total replication factor (when enough nodes exist).
    pub fn replicated_ownership(&self, strategy: &ReplicationStrategy) -> BTreeMap<NodeId, f64> {
        let mut out: BTreeMap<NodeId, f64> = self.nodes.keys().map(|n| (*n, 0.0)).collect();
        let size = self.partitioner.ring_size() as f64;
        for (i, token) in self.tokens.iter().enumerate() {
            let Some(w) = self.range_width(i) else {
                continue;
            };
            for node in strategy.replicas(self, token) {
                *out.entry(node).or_insert(0.0) += w as f64 / size;
            }
        }
        out
    }

    /// Width in positions of the range ending at token index `i` (the whole ring when there
    /// is one token).
    pub fn range_width(&self, i: usize) -> Option<u128> {
        let (start, end) = self.range_at(i)?;
        Some(if self.tokens.len() == 1 {
            self.partitioner.ring_size()
        } else {
            self.partitioner.distance(&start, &end)
        })
    }
}

/// Iterator over distinct nodes clockwise from a token; see [`Ring::nodes_clockwise`].
#[derive(Debug)]
pub struct NodesClockwise<'a> {
    ring: &'a Ring,
    start: usize,
    step: usize,
    seen: BTreeSet<NodeId>,
}

impl Iterator for NodesClockwise<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        let n = self.ring.tokens.len();
        while self.step < n {
            let i = (self.start + self.step) % n;
            self.step += 1;
            if let Some(owner) = self.ring.owner_at(i) {
                if self.seen.insert(owner) {
                    return Some(owner);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, tokens: &[i64]) -> RingNode {
        RingNode {
            id: NodeId(id),
            location: NodeLocation::default(),
            tokens: tokens.iter().map(|t| Token::Murmur3(*t)).collect(),
        }
    }

    fn three() -> Ring {
        Ring::new(
            Partitioner::Murmur3,
            vec![node(1, &[-100, 200]), node(2, &[0]), node(3, &[100])],
        )
        .unwrap()
    }

    #[test]
    fn ring_owner_of_is_first_token_at_or_after() {
        let r = three();
        assert_eq!(r.owner_of(&Token::Murmur3(-100)), Some(NodeId(1)));
        assert_eq!(r.owner_of(&Token::Murmur3(-99)), Some(NodeId(2)));
        assert_eq!(r.owner_of(&Token::Murmur3(150)), Some(NodeId(1)));
        assert_eq!(r.owner_of(&Token::Murmur3(201)), Some(NodeId(1)), "wraps");
        assert_eq!(r.owner_of(&Token::Murmur3(i64::MIN)), Some(NodeId(1)));
    }

    #[test]
    fn ring_empty_has_no_owner() {
        assert_eq!(Ring::empty(Partitioner::Md5).owner_of(&Token::Md5(5)), None);
    }

    #[test]
    fn ring_rejects_duplicate_tokens() {
        let err = Ring::new(Partitioner::Murmur3, vec![node(1, &[5]), node(2, &[5])]);
        assert!(matches!(err, Err(RingError::DuplicateToken { .. })));
    }

    #[test]
    fn ring_rejects_foreign_tokens() {
        let bad = RingNode {
            id: NodeId(1),
            location: NodeLocation::default(),
            tokens: vec![Token::Md5(1)],
        };
        assert!(matches!(
            Ring::new(Partitioner::Murmur3, vec![bad]),
            Err(RingError::WrongPartitioner { .. })
        ));
    }

    #[test]
    fn ring_nodes_clockwise_are_distinct_and_start_at_owner() {
        let r = three();
        let walk: Vec<_> = r.nodes_clockwise(&Token::Murmur3(150)).collect();
        assert_eq!(walk, vec![NodeId(1), NodeId(2), NodeId(3)]);
    }

    #[test]
    fn ring_ownership_sums_to_one() {
        let r = three();
        let own = r.ownership();
        let total: f64 = own.values().sum();
        assert!((total - 1.0).abs() < 1e-9);
        // Node 2 owns (-100, 0]: 100 positions.
        let expect = 100.0 / 2f64.powi(64);
        assert!((own[&NodeId(2)] - expect).abs() < 1e-18);
    }

    #[test]
    fn ring_single_token_owns_everything() {
        let r = Ring::new(
            Partitioner::Md5,
            vec![RingNode {
                id: NodeId(9),
                location: NodeLocation::default(),
                tokens: vec![Token::Md5(77)],
            }],
        )
        .unwrap();
        assert!((r.ownership()[&NodeId(9)] - 1.0).abs() < 1e-12);
    }
}
