//! Token allocation: choosing the tokens of a node that joins a ring.
//!
//! - [`TokenAllocation::Random`]: each token uniformly at random (Dynamo's strategy 1,
//!   Cassandra before 3.0). Simple, but ownership spreads widely with few tokens per node.
//! - [`TokenAllocation::Balanced`] (default): in the spirit of Dynamo's strategy 3 and
//!   Cassandra's allocator, the new node takes load from the most loaded nodes. The first
//!   node gets evenly spaced tokens. Each later node aims at the mean share `1/(n+1)`:
//!   token by token it finds the node currently owning most (primary ownership, RF 1), and
//!   splits that node's widest range, taking from its start an amount equal to the share
//!   still missing divided by the tokens still to place (at most 90% of the range, so no
//!   sliver ranges appear). Ranges can be split at any position, so the amount taken is
//!   exact; the most loaded nodes are shaved first, which bounds the maximum share. A small
//!   random jitter (below 2%) keeps two nodes that join concurrently from choosing the
//!   same tokens.
//!
//! Pure functions over a [`Ring`]; the randomness comes from the caller's RNG (seedable).

use rand::Rng;

use super::node::NodeId;
use super::partitioner::Partitioner;
use super::ring::Ring;
use super::token::Token;

/// How a joining node's tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenAllocation {
    /// Uniformly random tokens.
    Random,
    /// Split the most loaded nodes' ranges (keeps ownership balanced).
    #[default]
    Balanced,
}

/// Largest fraction of a range a new token may take, so the old owner keeps a real range.
const MAX_SPLIT: f64 = 0.9;
/// Largest relative random reduction of the amount taken (concurrent joiners differ).
const JITTER: f64 = 0.02;

/// Chooses `num_tokens` tokens for a node joining `ring`. The result is sorted and
/// contains no token already on the ring.
pub fn allocate_tokens<R: Rng + ?Sized>(
    ring: &Ring,
    num_tokens: usize,
    allocation: TokenAllocation,
    rng: &mut R,
) -> Vec<Token> {
    let partitioner = ring.partitioner();
    let mut out = match allocation {
        TokenAllocation::Random => random_tokens(ring, num_tokens, rng),
        TokenAllocation::Balanced if ring.is_empty() => evenly_spaced(partitioner, num_tokens, rng),
        TokenAllocation::Balanced => balanced_tokens(ring, num_tokens, rng),
    };
    out.sort();
    out.dedup();
    out
}

fn random_tokens<R: Rng + ?Sized>(ring: &Ring, num_tokens: usize, rng: &mut R) -> Vec<Token> {
    let p = ring.partitioner();
    let mut out: Vec<Token> = Vec::with_capacity(num_tokens);
    while out.len() < num_tokens {
        let t = p.random_token(rng);
        if ring.tokens().binary_search(&t).is_err() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn evenly_spaced<R: Rng + ?Sized>(p: Partitioner, num_tokens: usize, rng: &mut R) -> Vec<Token> {
    let n = num_tokens.max(1) as u128;
    let step = p.ring_size() / n;
    let offset = rng.gen_range(0..step.max(1));
    (0..n).map(|i| p.token_at(offset + i * step)).collect()
}

/// Working state of the balanced allocator: the ring's ranges as positions, with `None`
/// standing for the joining node.
struct Work {
    size: f64,
    /// Sorted by position; `(position, owner)`.
    points: Vec<(u128, Option<NodeId>)>,
}

impl Work {
    fn width(&self, i: usize, ring_size: u128) -> u128 {
        let n = self.points.len();
        let cur = self.points.get(i).map_or(0, |p| p.0);
        let prev = self.points.get((i + n - 1) % n).map_or(0, |p| p.0);
        if n == 1 {
            ring_size
        } else if cur >= prev {
            cur - prev
        } else {
            ring_size - prev + cur
        }
    }
}

fn balanced_tokens<R: Rng + ?Sized>(ring: &Ring, num_tokens: usize, rng: &mut R) -> Vec<Token> {
    let p = ring.partitioner();
    let ring_size = p.ring_size();
    let mut work = Work {
        size: ring_size as f64,
        points: ring
            .entries()
            .map(|(t, n)| (Partitioner::position(&t), Some(n)))
            .collect(),
    };
    let owners: Vec<NodeId> = {
        let mut v: Vec<NodeId> = ring.entries().map(|(_, n)| n).collect();
        v.sort();
        v.dedup();
        v
    };
    let target = work.size / (owners.len() as f64 + 1.0);
    let mut missing = target;
    let mut out = Vec::with_capacity(num_tokens);
    for placed in 0..num_tokens {
        // Current primary load of each existing node, and its widest range.
        let mut load: Vec<(NodeId, f64, usize, u128)> =
            owners.iter().map(|n| (*n, 0.0, 0, 0)).collect();
        for i in 0..work.points.len() {
            let w = work.width(i, ring_size);
            if let Some((_, Some(owner))) = work.points.get(i) {
                if let Ok(k) = owners.binary_search(owner) {
                    if let Some(entry) = load.get_mut(k) {
                        entry.1 += w as f64;
                        if w > entry.3 {
                            entry.2 = i;
                            entry.3 = w;
                        }
                    }
                }
            }
        }
        let Some(&(_, _, idx, widest)) = load
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        else {
            break;
        };
        let remaining = (num_tokens - placed) as f64;
        let jitter = 1.0 - rng.gen_range(0.0..JITTER);
        let want = (missing / remaining).max(0.0) * jitter;
        let amount = want.min(widest as f64 * MAX_SPLIT).max(1.0) as u128;
        let n = work.points.len();
        let prev = work.points.get((idx + n - 1) % n).map_or(0, |p| p.0);
        let pos = (prev + amount) % ring_size;
        if work.points.iter().any(|(q, _)| *q == pos) {
            continue;
        }
        let at = work.points.partition_point(|(q, _)| *q < pos);
        work.points.insert(at, (pos, None));
        missing -= amount as f64;
        out.push(p.token_at(pos));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{NodeLocation, RingNode};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn grow(allocation: TokenAllocation, nodes: usize, tokens: usize, seed: u64) -> Ring {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members: Vec<RingNode> = Vec::new();
        let mut ring = Ring::empty(Partitioner::Murmur3);
        for i in 0..nodes {
            let toks = allocate_tokens(&ring, tokens, allocation, &mut rng);
            members.push(RingNode {
                id: NodeId(i as u64),
                location: NodeLocation::default(),
                tokens: toks,
            });
            ring = Ring::new(Partitioner::Murmur3, members.clone()).unwrap();
        }
        ring
    }

    #[test]
    fn allocation_gives_requested_count_of_new_tokens() {
        let ring = grow(TokenAllocation::Balanced, 5, 16, 1);
        assert_eq!(ring.tokens().len(), 5 * 16);
        let ring = grow(TokenAllocation::Random, 5, 16, 1);
        assert_eq!(ring.tokens().len(), 5 * 16);
    }

    #[test]
    fn allocation_first_node_tokens_are_evenly_spaced() {
        let ring = grow(TokenAllocation::Balanced, 1, 8, 3);
        let p = ring.partitioner();
        for i in 0..8 {
            let w = ring.range_width(i).unwrap();
            assert!(w.abs_diff(p.ring_size() / 8) <= 8, "width {w}");
        }
    }

    #[test]
    fn allocation_balanced_second_node_takes_half() {
        let ring = grow(TokenAllocation::Balanced, 2, 16, 9);
        let own = ring.ownership();
        assert!((own[&NodeId(1)] - 0.5).abs() < 0.02, "{own:?}");
    }

    #[test]
    fn allocation_works_on_md5_ring() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut members = Vec::new();
        let mut ring = Ring::empty(Partitioner::Md5);
        for i in 0..4 {
            let toks = allocate_tokens(&ring, 8, TokenAllocation::Balanced, &mut rng);
            members.push(RingNode {
                id: NodeId(i),
                location: NodeLocation::default(),
                tokens: toks,
            });
            ring = Ring::new(Partitioner::Md5, members.clone()).unwrap();
        }
        let max = ring.ownership().values().cloned().fold(0.0, f64::max);
        assert!(max < 0.25 * 1.15, "max share {max}");
    }
}
