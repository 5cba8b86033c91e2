//! The token ring as a [`Topology`] describes it: every token in ring order with its
//! owner, and each node's share of the token space (primary ranges only, before
//! replication, as `nodetool ring` reports "owns").
//!
//! A token `t` owns the range `(previous token, t]`, wrapping at the end of the partitioner's
//! range. The range size comes from the partitioner's name: `murmur3` tokens are signed
//! 64-bit (2^64 values), `md5` tokens lie in `[0, 2^127]`; an unknown name is guessed from
//! the tokens' signs. Pure functions.

use std::collections::HashMap;

use sibyl_protocol::{NodeInfo, Topology};

/// One token of the ring and the node that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RingEntry<'a> {
    /// The token.
    pub token: i128,
    /// The node holding it.
    pub node: &'a NodeInfo,
    /// Share of the token space in `(previous token, token]`, in `[0, 1]`.
    pub share: f64,
}

/// Size of the token space of `partitioner` (as `f64`, since 2^127 + 1 does not fit i128).
pub fn token_space(partitioner: &str, tokens: &[i128]) -> f64 {
    let p = partitioner.to_ascii_lowercase();
    if p.contains("murmur") {
        2f64.powi(64)
    } else if p.contains("md5") || p.contains("random") {
        2f64.powi(127)
    } else if tokens.iter().any(|t| *t < 0) {
        2f64.powi(64)
    } else {
        2f64.powi(127)
    }
}

/// Every token of every node that has not left, in ring order, with its owner and share.
pub fn ring_entries(topology: &Topology) -> Vec<RingEntry<'_>> {
    let mut entries: Vec<RingEntry<'_>> = topology
        .nodes
        .iter()
        .filter(|n| n.state != sibyl_protocol::NodeState::Left)
        .flat_map(|n| {
            n.tokens.iter().map(move |t| RingEntry {
                token: *t,
                node: n,
                share: 0.0,
            })
        })
        .collect();
    entries.sort_by_key(|e| e.token);
    let tokens: Vec<i128> = entries.iter().map(|e| e.token).collect();
    let space = token_space(&topology.partitioner, &tokens);
    let (Some(&first), Some(&last)) = (tokens.first(), tokens.last()) else {
        return entries;
    };
    let n = entries.len();
    for (i, e) in entries.iter_mut().enumerate() {
        e.share = if n == 1 {
            1.0
        } else if i == 0 {
            // The wrapping range: from the last token round to the first.
            (space - (last - first) as f64) / space
        } else {
            (e.token - tokens[i - 1]) as f64 / space
        };
    }
    entries
}

/// Each node's share of the token space (sum of its tokens' shares), by node id.
pub fn ownership(topology: &Topology) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for e in ring_entries(topology) {
        *out.entry(e.node.id.clone()).or_insert(0.0) += e.share;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::NodeState;

    fn node(id: &str, tokens: Vec<i128>) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            address: format!("{id}:7400"),
            datacenter: "dc1".into(),
            rack: "r1".into(),
            state: NodeState::Normal,
            up: true,
            tokens,
            load_bytes: 0,
        }
    }

    #[test]
    fn ring_entries_sorted_with_owners() {
        let t = Topology {
            partitioner: "murmur3".into(),
            nodes: vec![node("a", vec![10, -5]), node("b", vec![0])],
        };
        let got: Vec<(i128, &str)> = ring_entries(&t)
            .iter()
            .map(|e| (e.token, e.node.id.as_str()))
            .collect();
        assert_eq!(got, vec![(-5, "a"), (0, "b"), (10, "a")]);
    }

    #[test]
    fn ownership_halves_for_opposite_tokens() {
        let half = 1i128 << 63;
        let t = Topology {
            partitioner: "murmur3".into(),
            nodes: vec![node("a", vec![-half]), node("b", vec![0])],
        };
        let own = ownership(&t);
        assert!((own["a"] - 0.5).abs() < 1e-9);
        assert!((own["b"] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn ownership_single_node_is_whole_ring() {
        let t = Topology {
            partitioner: "md5".into(),
            nodes: vec![node("a", vec![5, 1 << 100, 1 << 120])],
        };
        assert!((ownership(&t)["a"] - 1.0).abs() < 1e-9);
    }
}
