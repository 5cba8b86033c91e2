//! Which ring changes may start. A ring change moves ranges from node to node; two changes
//! moving one range at once, or a change whose range has no live replica left to copy
//! from, could lose data, so the operator's commands check their plan against the view
//! before they announce anything and are refused with the range and the reason
//! ([`Refusal`]):
//!
//! - **Decommission** is refused while another change under way (a node joining or
//!   leaving) moves one of the ranges it would move, and when a range would be left with
//!   fewer replicas than before and than its table's rf (the cluster is too small to
//!   keep the rf; Cassandra refuses the same).
//! - **Removenode** is refused while another change under way moves one of its ranges,
//!   and when a range the dead node replicated has no other live replica to copy it from
//!   (every other replica is down, or the rf is 1): its data would be lost. The operator
//!   may accept that loss with `force`.
//! - **Join**: a new node chooses its tokens only while no node is leaving or moving (the cluster
//!   runtime waits while [`crate::cluster::ClusterView::with_status`] lists one): a range the leaving node
//!   pushes to the nodes that gain it in a ring without the newcomer could otherwise be
//!   left with no copy the newcomer can pull. Joins at the same time are allowed: each
//!   joining node is a pending replica of what it gains (writes reach it) and pulls from
//!   current replicas, which keep their data until a cleanup.
//!
//! - **Move** (a rebalance step, [`super::movement`]) starts only while no change is
//!   under way at all and every node is up; the rules above count a moving node's change
//!   like any other (its ranges move from its old tokens to its new ones).
//!
//! Every rule compares rings range by range ([`super::plan::cut`]), so "one change at a
//! time per range" is exact, not per node; with virtual nodes and rf 3, two changes
//! nearly always share a range.

use std::fmt;
use std::sync::Arc;

use sibyl_protocol::TableOptions;

use super::plan::cut;
use crate::cluster::{ClusterView, NodeStatus};
use crate::coordinator::placement::strategy;
use crate::replica::TokenRange;
use crate::ring::{NodeId, Ring};

/// Why a ring change may not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Another change under way moves a range this one would move.
    #[error(
        "range {range} of table {table:?} is already moving ({busy}); one ring change at a \
         time per range: retry once that change completes"
    )]
    Overlap {
        /// The table.
        table: String,
        /// The range both changes move.
        range: Range,
        /// The nodes in a ring change, with their state (`"node 00..1 joining"`).
        busy: String,
    },
    /// A range would keep fewer replicas than its rf.
    #[error(
        "table {table:?} has rf {rf}: without this node, range {range} would keep {after} \
         replica(s) of {before}; add a node first"
    )]
    TooFewReplicas {
        /// The table.
        table: String,
        /// Its replication factor.
        rf: usize,
        /// A range that would lose a replica for good.
        range: Range,
        /// Its replicas now.
        before: usize,
        /// Its replicas after the change.
        after: usize,
    },
    /// A dead node's range has no live replica to copy it from.
    #[error(
        "range {range} of table {table:?} has no live replica besides node {node} to copy \
         it from ({others}); bring one up first, or removenode --force to accept losing \
         what only node {node} held"
    )]
    NoSource {
        /// The table.
        table: String,
        /// The range.
        range: Range,
        /// The node to remove.
        node: NodeId,
        /// The other replicas, all down (or "no other replica").
        others: String,
    },
}

/// A token range as `(start, end]`, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range(pub TokenRange);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.0.start, self.0.end)
    }
}

/// Whether the local node of `view` may decommission (see the module documentation).
pub fn check_decommission(
    view: &ClusterView,
    tables: &[(String, TableOptions)],
) -> Result<(), Refusal> {
    let current = view.ring();
    let after = ring_with(view, view.local, NodeStatus::Left);
    check_overlap(
        view,
        (&current, view.future_ring()),
        (&current, &after),
        tables,
    )?;
    for (table, options) in tables {
        let strategy = strategy(options);
        for range in cut(&[&current, &after]) {
            let before = current.preference_list(&range.end, &strategy).len();
            let left = after.preference_list(&range.end, &strategy).len();
            let rf = usize::from(options.replication_factor);
            if left < before && left < rf {
                return Err(Refusal::TooFewReplicas {
                    table: table.clone(),
                    rf,
                    range: Range(range),
                    before,
                    after: left,
                });
            }
        }
    }
    Ok(())
}

/// Whether `node` may be removed through the view's local node (see the module
/// documentation); `force` skips the live-source rule, not the overlap rule.
pub fn check_removenode(
    view: &ClusterView,
    node: NodeId,
    tables: &[(String, TableOptions)],
    force: bool,
) -> Result<(), Refusal> {
    let current = view.ring();
    // The node's own change, if it died leaving, is what its removal ends: the changes
    // under way that count are the others', measured from the ring without it.
    let mut others = view.nodes.clone();
    if let Some(n) = others.get_mut(&node) {
        n.status = Some(NodeStatus::Removed);
    }
    let others = ClusterView::new(view.local, view.partitioner, others);
    let after = others.ring();
    check_overlap(
        view,
        (&after, others.future_ring()),
        (&current, &after),
        tables,
    )?;
    if force {
        return Ok(());
    }
    let alive = |n: &NodeId| *n == view.local || view.node(*n).is_some_and(|v| v.alive);
    for (table, options) in tables {
        let strategy = strategy(options);
        for range in cut(&[&current]) {
            let replicas = current.preference_list(&range.end, &strategy);
            if !replicas.contains(&node) {
                continue;
            }
            let others: Vec<NodeId> = replicas.into_iter().filter(|n| *n != node).collect();
            if !others.iter().any(alive) {
                return Err(Refusal::NoSource {
                    table: table.clone(),
                    range: Range(range),
                    node,
                    others: if others.is_empty() {
                        format!("rf {}: no other replica", options.replication_factor)
                    } else {
                        let ids: Vec<String> = others.iter().map(|n| n.to_string()).collect();
                        format!("down: {}", ids.join(", "))
                    },
                });
            }
        }
    }
    Ok(())
}

/// Refuses when the changes under way (from `base` to `ongoing`, `None` when there are
/// none) and this change (from `current` to `after`) move one range of one table.
fn check_overlap(
    view: &ClusterView,
    (base, ongoing): (&Ring, Option<Arc<Ring>>),
    (current, after): (&Ring, &Ring),
    tables: &[(String, TableOptions)],
) -> Result<(), Refusal> {
    let Some(ongoing) = ongoing else {
        return Ok(());
    };
    for (table, options) in tables {
        let strategy = strategy(options);
        for range in cut(&[base, &ongoing, current, after]) {
            let moving = |from: &Ring, to: &Ring| {
                from.preference_list(&range.end, &strategy)
                    != to.preference_list(&range.end, &strategy)
            };
            if moving(base, &ongoing) && moving(current, after) {
                return Err(Refusal::Overlap {
                    table: table.clone(),
                    range: Range(range),
                    busy: view.changes_under_way(),
                });
            }
        }
    }
    Ok(())
}

/// The ring of `view` with `node` in `status` (its ring once that change is done; other
/// changes under way are not applied).
fn ring_with(view: &ClusterView, node: NodeId, status: NodeStatus) -> Arc<Ring> {
    let mut nodes = view.nodes.clone();
    if let Some(n) = nodes.get_mut(&node) {
        n.status = Some(status);
    }
    ClusterView::new(view.local, view.partitioner, nodes).ring()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::NodeView;
    use crate::ring::Partitioner;

    fn node(id: u64, status: NodeStatus, tokens: &[i64], alive: bool) -> NodeView {
        NodeView::for_test(id, status, tokens, alive)
    }

    fn view(local: u64, nodes: Vec<NodeView>) -> ClusterView {
        let nodes: BTreeMap<NodeId, NodeView> = nodes.into_iter().map(|n| (n.id, n)).collect();
        ClusterView::new(NodeId(local), Partitioner::Murmur3, nodes)
    }

    fn table(rf: u16) -> Vec<(String, TableOptions)> {
        vec![crate::stream::plan::tests::table(rf)]
    }

    use NodeStatus::{Joining, Leaving, Moving, Normal};

    #[test]
    fn decommission_is_refused_below_rf_and_allowed_with_a_spare_node() {
        let three = view(
            1,
            vec![
                node(1, Normal, &[0], true),
                node(2, Normal, &[100], true),
                node(3, Normal, &[200], true),
            ],
        );
        let err = check_decommission(&three, &table(3)).unwrap_err();
        assert!(
            matches!(
                err,
                Refusal::TooFewReplicas {
                    rf: 3,
                    before: 3,
                    after: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("add a node first"), "{err}");
        assert_eq!(check_decommission(&three, &table(2)), Ok(()));
        // No table: nothing to keep.
        assert_eq!(check_decommission(&three, &[]), Ok(()));
    }

    #[test]
    fn decommission_is_refused_while_a_move_moves_one_of_its_ranges() {
        let nodes = |to: i64| {
            let mut moving = node(5, Moving, &[250], true);
            moving.moving_to = Some(std::sync::Arc::from(vec![crate::ring::Token::Murmur3(to)]));
            view(
                1,
                vec![
                    node(1, Normal, &[0], true),
                    node(2, Normal, &[100], true),
                    node(3, Normal, &[200], true),
                    node(4, Normal, &[300], true),
                    moving,
                ],
            )
        };
        // rf 1: node 5 moving from 250 to 150 hands (200, 250] to node 4 and takes
        // (100, 150] from node 3: no range of node 1's.
        assert_eq!(check_decommission(&nodes(150), &table(1)), Ok(()));
        // Moving to 350, node 5 takes (300, 350] from node 1.
        let err = check_decommission(&nodes(350), &table(1)).unwrap_err();
        match &err {
            Refusal::Overlap { range, busy, .. } => {
                assert_eq!(range.to_string(), "(300, 350]");
                assert!(busy.contains("0000000000000005 moving"), "{busy}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn decommission_is_refused_while_a_join_moves_one_of_its_ranges() {
        let nodes = |joining: &[i64]| {
            view(
                1,
                vec![
                    node(1, Normal, &[0], true),
                    node(2, Normal, &[100], true),
                    node(3, Normal, &[200], true),
                    node(4, Normal, &[300], true),
                    node(5, Joining, joining, true),
                ],
            )
        };
        // rf 1: node 1 owns (300, 0]; node 5 joining at 50 takes (0, 50] from node 2:
        // no range of node 1 moves twice.
        assert_eq!(check_decommission(&nodes(&[50]), &table(1)), Ok(()));
        // Joining at 350, node 5 takes (300, 350] from node 1, which node 1's leaving
        // would hand to node 2.
        let err = check_decommission(&nodes(&[350]), &table(1)).unwrap_err();
        match &err {
            Refusal::Overlap { range, busy, .. } => {
                assert_eq!(range.to_string(), "(300, 350]");
                assert!(busy.contains("0000000000000005 joining"), "{busy}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removenode_needs_a_live_source_for_every_range_unless_forced() {
        let v = |alive3: bool| {
            view(
                1,
                vec![
                    node(1, Normal, &[0], true),
                    node(2, Normal, &[100], false),
                    node(3, Normal, &[200], alive3),
                    node(4, Normal, &[300], true),
                ],
            )
        };
        // rf 2: node 2 replicates (300, 0] with node 1 (the local node) and (0, 100] with
        // node 3: with node 3 up, each has a live source.
        assert_eq!(
            check_removenode(&v(true), NodeId(2), &table(2), false),
            Ok(())
        );
        // Node 3 down: (0, 100] has no live copy besides node 2.
        let err = check_removenode(&v(false), NodeId(2), &table(2), false).unwrap_err();
        match &err {
            Refusal::NoSource { range, others, .. } => {
                assert_eq!(range.to_string(), "(0, 100]");
                assert_eq!(others, "down: 0000000000000003");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check_removenode(&v(false), NodeId(2), &table(2), true),
            Ok(())
        );
        // rf 1: the node's own range has no other replica at all.
        let err = check_removenode(&v(true), NodeId(2), &table(1), false).unwrap_err();
        assert!(err.to_string().contains("no other replica"), "{err}");
    }

    #[test]
    fn removenode_is_refused_while_a_leaving_node_moves_its_range_even_forced() {
        let v = view(
            1,
            vec![
                node(1, Normal, &[0], true),
                node(2, Normal, &[100], false),
                node(3, Leaving, &[200], true),
                node(4, Normal, &[300], true),
            ],
        );
        // rf 2: (0, 100] is on 2 and 3; node 3 leaving moves it to 4, removing 2 moves it too.
        let err = check_removenode(&v, NodeId(2), &table(2), true).unwrap_err();
        assert!(matches!(err, Refusal::Overlap { .. }), "{err}");
        assert!(
            err.to_string().contains("0000000000000003 leaving"),
            "{err}"
        );
    }

    #[test]
    fn removenode_of_a_node_that_died_leaving_is_not_blocked_by_its_own_change() {
        let mut dead_leaving = node(3, Leaving, &[200], true);
        dead_leaving.alive = false;
        let v = view(
            1,
            vec![
                node(1, Normal, &[0], true),
                node(2, Normal, &[100], true),
                dead_leaving,
                node(4, Normal, &[300], true),
            ],
        );
        assert_eq!(check_removenode(&v, NodeId(3), &table(2), false), Ok(()));
    }
}
