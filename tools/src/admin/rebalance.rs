//! The `rebalance` plan rendered from the protocol's [`RebalanceReport`]: per node, the
//! bytes it replicates now and once the plan is applied, and the tokens it moves; a
//! closing line with the imbalance before and after and the bytes that change hands.
//! Returns a `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::RebalanceReport;

use crate::text::human_size;

/// Highest over mean of `loads` (1 when nothing is stored).
pub fn imbalance(loads: impl Iterator<Item = u64>) -> f64 {
    let loads: Vec<u64> = loads.collect();
    let sum: u64 = loads.iter().sum();
    match (loads.iter().max(), sum) {
        (Some(&max), s) if s > 0 => max as f64 * loads.len() as f64 / s as f64,
        _ => 1.0,
    }
}

/// The plan as a table, one line per node, and a summary line.
pub fn render_plan(plan: &RebalanceReport) -> String {
    if plan.nodes.is_empty() {
        return "no node owns tokens: nothing to rebalance".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:<22} {:>12} {:>12} {:>7}",
        "node", "address", "owned now", "after", "moves"
    );
    for n in &plan.nodes {
        let moved = n
            .tokens_after
            .iter()
            .filter(|t| !n.tokens_before.contains(t))
            .count();
        let _ = writeln!(
            out,
            "{:<18} {:<22} {:>12} {:>12} {:>7}",
            n.id,
            n.address,
            human_size(n.owned_before),
            human_size(n.owned_after),
            if moved == 0 {
                "-".to_owned()
            } else {
                format!("{moved} tok")
            }
        );
    }
    let before = imbalance(plan.nodes.iter().map(|n| n.owned_before));
    let after = imbalance(plan.nodes.iter().map(|n| n.owned_after));
    let movers = plan.nodes.iter().filter(|n| n.moves()).count();
    if movers == 0 {
        let _ = write!(
            out,
            "balanced: the most loaded node holds {before:.2} times the mean; nothing to move"
        );
    } else {
        let _ = write!(
            out,
            "most loaded / mean: {before:.2} now, {after:.2} after; {} tokens of {movers} \
             node(s) move, about {} change hands (apply with --commit)",
            plan.tokens_moved,
            human_size(plan.moved_bytes)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::RebalanceNode;

    fn node(id: &str, before: u64, after: u64, moves: bool) -> RebalanceNode {
        RebalanceNode {
            id: id.into(),
            address: "127.0.0.1:7400".into(),
            owned_before: before,
            owned_after: after,
            tokens_before: vec![1, 2],
            tokens_after: if moves { vec![1, 3] } else { vec![1, 2] },
        }
    }

    #[test]
    fn plan_shows_each_node_and_the_imbalance_before_and_after() {
        let plan = RebalanceReport {
            moved_bytes: 3 << 20,
            tokens_moved: 1,
            nodes: vec![
                node("00000000000000aa", 300 << 20, 200 << 20, true),
                node("00000000000000bb", 100 << 20, 200 << 20, false),
            ],
        };
        let text = render_plan(&plan);
        assert!(text.contains("00000000000000aa"), "{text}");
        assert!(text.contains("1 tok"), "{text}");
        assert!(text.contains("1.50 now, 1.00 after"), "{text}");
        assert!(text.contains("1 tokens of 1 node(s) move"), "{text}");
        let balanced = RebalanceReport {
            moved_bytes: 0,
            tokens_moved: 0,
            nodes: vec![node("a", 10, 10, false), node("b", 10, 10, false)],
        };
        assert!(render_plan(&balanced).contains("nothing to move"));
        assert_eq!(imbalance([0u64, 0].into_iter()), 1.0);
    }
}
