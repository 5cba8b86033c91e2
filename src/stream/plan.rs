//! Which ranges a ring change moves to a node, and where it streams each one from.
//!
//! The ranges are those of the ring after the change ([`ClusterView::future_ring`]): a
//! joining node's tokens split the ranges they fall in, and within one range of the
//! future ring the preference lists of both rings are constant (every token of the
//! current ring is a token of the future one, for a join). A node gains a range of a
//! table when it is in the range's future preference list and not in its current one.
//! Its sources are the range's current replicas, the one that loses the range first
//! (Cassandra's choice for a consistent bootstrap: the replica the new node replaces
//! holds what it would have been given), then the others in preference order.

use crate::cluster::ClusterView;
use crate::coordinator::placement::strategy;
use crate::replica::TokenRange;
use crate::ring::{NodeId, Ring};
use sibyl_protocol::TableOptions;

/// One range a node gains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gained {
    /// The table.
    pub table: String,
    /// The ring range (of the future ring).
    pub range: TokenRange,
    /// The current replicas to stream it from, best first.
    pub sources: Vec<NodeId>,
}

/// The ranges `node` gains in `tables` when `current` becomes `future`.
pub fn gained_ranges(
    current: &Ring,
    future: &Ring,
    node: NodeId,
    tables: &[(String, TableOptions)],
) -> Vec<Gained> {
    let mut out = Vec::new();
    for (table, options) in tables {
        let strategy = strategy(options);
        for i in 0..future.tokens().len() {
            let Some((start, end)) = future.range_at(i) else {
                continue;
            };
            let after = future.preference_list(&end, &strategy);
            if !after.contains(&node) {
                continue;
            }
            let before = current.preference_list(&end, &strategy);
            if before.contains(&node) {
                continue;
            }
            let mut sources: Vec<NodeId> = before
                .iter()
                .copied()
                .filter(|n| !after.contains(n))
                .collect();
            sources.extend(before.iter().copied().filter(|n| after.contains(n)));
            out.push(Gained {
                table: table.clone(),
                range: TokenRange { start, end },
                sources,
            });
        }
    }
    out
}

/// One range a leaving node hands off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The table.
    pub table: String,
    /// The ring range.
    pub range: TokenRange,
    /// The nodes that become its replicas (in the future list, not in the current one).
    pub targets: Vec<NodeId>,
}

/// The ranges `node` replicates in `current` and no longer in `future`, with the nodes
/// that gain each. Ranges are cut at the tokens of both rings, so that the preference
/// lists of both are constant within each.
pub fn lost_ranges(
    current: &Ring,
    future: &Ring,
    node: NodeId,
    tables: &[(String, TableOptions)],
) -> Vec<Lost> {
    let cuts = cut(&[current, future]);
    let mut out = Vec::new();
    for (table, options) in tables {
        let strategy = strategy(options);
        for range in &cuts {
            let before = current.preference_list(&range.end, &strategy);
            if !before.contains(&node) {
                continue;
            }
            let after = future.preference_list(&range.end, &strategy);
            if after.contains(&node) {
                continue;
            }
            let targets: Vec<NodeId> = after
                .iter()
                .copied()
                .filter(|n| !before.contains(n))
                .collect();
            out.push(Lost {
                table: table.clone(),
                range: *range,
                targets,
            });
        }
    }
    out
}

/// The ranges between consecutive tokens of all `rings` together, in ring order: within
/// each, every ring's preference lists are constant (each is one range of every ring, or
/// part of one).
pub fn cut(rings: &[&Ring]) -> Vec<TokenRange> {
    let mut tokens: Vec<_> = rings
        .iter()
        .flat_map(|r| r.tokens().iter().copied())
        .collect();
    tokens.sort();
    tokens.dedup();
    let Some(&last) = tokens.last() else {
        return Vec::new();
    };
    let mut start = last;
    tokens
        .into_iter()
        .map(|end| {
            let range = TokenRange { start, end };
            start = end;
            range
        })
        .collect()
}

/// [`gained_ranges`] of the local node in `view` (nothing while no ring change is under
/// way).
pub fn gained_by_local(view: &ClusterView, tables: &[(String, TableOptions)]) -> Vec<Gained> {
    match view.future_ring() {
        Some(future) => gained_ranges(&view.ring(), &future, view.local, tables),
        None => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ring::{NodeLocation, Partitioner, RingNode, Token};

    /// A murmur3 ring of `(node, tokens)` (test helper of the stream modules).
    pub(crate) fn ring(nodes: &[(u64, &[i64])]) -> Ring {
        Ring::new(
            Partitioner::Murmur3,
            nodes
                .iter()
                .map(|(id, tokens)| RingNode {
                    id: NodeId(*id),
                    location: NodeLocation::default(),
                    tokens: tokens.iter().map(|t| Token::Murmur3(*t)).collect(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    /// Table `kv` of replication factor `rf` (test helper of the stream modules).
    pub(crate) fn table(rf: u16) -> (String, TableOptions) {
        let options = TableOptions {
            replication_factor: rf,
            ..TableOptions::default()
        };
        ("kv".to_owned(), options)
    }

    #[test]
    fn plan_a_joining_node_gains_the_ranges_it_will_replicate_from_the_node_losing_them() {
        let current = ring(&[(1, &[0]), (2, &[100]), (3, &[200])]);
        let future = ring(&[(1, &[0]), (2, &[100]), (3, &[200]), (4, &[150])]);
        // rf 1: node 4 takes (100, 150] from node 3, which owned (100, 200].
        let g = gained_ranges(&current, &future, NodeId(4), &[table(1)]);
        assert_eq!(g.len(), 1);
        assert_eq!(
            g[0].range,
            TokenRange {
                start: Token::Murmur3(100),
                end: Token::Murmur3(150)
            }
        );
        assert_eq!(g[0].sources, vec![NodeId(3)]);
        // rf 2: (100, 150] (replicas 4, 3; was 3, 1: node 1 loses it) and (0, 100]
        // (replicas 2, 4; was 2, 3: node 3 loses it).
        let g = gained_ranges(&current, &future, NodeId(4), &[table(2)]);
        let summary: Vec<(i64, i64, Vec<NodeId>)> = g
            .iter()
            .map(|g| match (g.range.start, g.range.end) {
                (Token::Murmur3(s), Token::Murmur3(e)) => (s, e, g.sources.clone()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 100, vec![NodeId(3), NodeId(2)]),
                (100, 150, vec![NodeId(1), NodeId(3)]),
            ]
        );
        // Leaving is the join the other way round: node 4 leaves `future` for `current`.
        let lost = lost_ranges(&future, &current, NodeId(4), &[table(2)]);
        let summary: Vec<(i64, i64, Vec<NodeId>)> = lost
            .iter()
            .map(|l| match (l.range.start, l.range.end) {
                (Token::Murmur3(s), Token::Murmur3(e)) => (s, e, l.targets.clone()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            summary,
            vec![(0, 100, vec![NodeId(3)]), (100, 150, vec![NodeId(1)])]
        );
        // A node that gains nothing (already a replica everywhere with rf 3 of 3).
        assert!(gained_ranges(&current, &current, NodeId(1), &[table(3)]).is_empty());
    }
}
