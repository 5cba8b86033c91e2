//! The fault schedule: drawn from the run's seed, one fault at a time, each held for a
//! while, then healed, then a quiet spell, so the cluster is broken and mended many times
//! in a run (Jepsen's nemesis). The same seed gives the same schedule.
//!
//! Faults: isolate one node from the others; split the cluster into halves; cut one
//! direction between two nodes; SIGKILL a node (restarted at the heal); SIGSTOP a node
//! for longer than the failure detector's window (SIGCONT at the heal); move one node's
//! wall clock by up to ±[`MAX_SKEW_SECS`] (back to true at the heal; only with
//! libfaketime); wipe a node's data directory (a lost disk: it comes back as a new node,
//! the old one is removed with `removenode`, the new one joins with new tokens, streams
//! its ranges and is repaired; a next wipe only once that repair finished cleanly, see
//! `run`); decommission a node (a ring change both ways: it streams its ranges to the
//! others and leaves, then comes back on an empty disk as a new node that streams its
//! new ranges in before it owns them).

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Largest clock offset injected, seconds.
pub const MAX_SKEW_SECS: i64 = 30;

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Node cut off from every other node.
    Isolate(usize),
    /// The cluster split in two.
    Halves(Vec<usize>, Vec<usize>),
    /// `to` stops receiving from `from`.
    OneWay {
        /// The node whose input is cut.
        to: usize,
        /// The node it no longer hears.
        from: usize,
    },
    /// SIGKILL, restarted at the heal.
    Kill(usize),
    /// SIGSTOP, SIGCONT at the heal.
    Pause(usize),
    /// The node's wall clock moved by this many seconds.
    Skew(usize, i64),
    /// The node's data directory wiped: killed, emptied, restarted as a new node.
    Wipe(usize),
    /// The node decommissioned (it hands its ranges off and leaves), then stopped,
    /// emptied and started again as a new node (it bootstraps).
    Decommission(usize),
}

impl Fault {
    /// Its kind, for the counts in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Isolate(_) => "isolate",
            Fault::Halves(..) => "halves",
            Fault::OneWay { .. } => "one-way",
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::Skew(..) => "skew",
            Fault::Wipe(_) => "wipe",
            Fault::Decommission(_) => "decommission",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Isolate(i) => write!(f, "isolate node {i}"),
            Fault::Halves(a, b) => write!(f, "split {a:?} | {b:?}"),
            Fault::OneWay { to, from } => write!(f, "node {to} stops hearing node {from}"),
            Fault::Kill(i) => write!(f, "kill -9 node {i}"),
            Fault::Pause(i) => write!(f, "SIGSTOP node {i}"),
            Fault::Skew(i, s) => write!(f, "clock of node {i} {s:+} s"),
            Fault::Wipe(i) => write!(f, "wipe the data directory of node {i}"),
            Fault::Decommission(i) => write!(f, "decommission node {i}, then rejoin it empty"),
        }
    }
}

/// One step of the schedule: a fault held for `hold`, then `quiet` with none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The fault.
    pub fault: Fault,
    /// How long it lasts.
    pub hold: Duration,
    /// Quiet time after the heal.
    pub quiet: Duration,
}

/// Every fault kind, as [`Fault::kind`] names them.
pub const KINDS: [&str; 8] = [
    "isolate",
    "halves",
    "one-way",
    "kill",
    "pause",
    "skew",
    "wipe",
    "decommission",
];

/// Draws the next step whose fault is of one of the `allowed` kinds (all when empty),
/// for `nodes` nodes; skew only when `skew` is possible. The same seed and settings give
/// the same schedule.
pub fn next_allowed_step(rng: &mut StdRng, nodes: usize, skew: bool, allowed: &[String]) -> Step {
    loop {
        let step = next_step(rng, nodes, skew);
        if allowed.is_empty() || allowed.iter().any(|k| k == step.fault.kind()) {
            return step;
        }
    }
}

/// Draws the next step for `nodes` nodes; skew only when `skew` is possible.
pub fn next_step(rng: &mut StdRng, nodes: usize, skew: bool) -> Step {
    let node = rng.gen_range(0..nodes);
    let kinds = if skew { 7 } else { 6 };
    let fault = match rng.gen_range(0..kinds) {
        // A lost disk and a ring change are rarer than a network fault: a third of this
        // slot each.
        5 => match rng.gen_range(0..3) {
            0 => Fault::Wipe(node),
            1 => Fault::Decommission(node),
            _ => Fault::Kill(node),
        },
        0 => Fault::Isolate(node),
        1 => {
            let mut all: Vec<usize> = (0..nodes).collect();
            all.shuffle(rng);
            let cut = rng.gen_range(1..nodes.max(2));
            let (a, b) = all.split_at(cut.min(all.len()));
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort_unstable();
            b.sort_unstable();
            Fault::Halves(a, b)
        }
        2 => {
            let other = (node + rng.gen_range(1..nodes.max(2))) % nodes;
            Fault::OneWay {
                to: node,
                from: other,
            }
        }
        3 => Fault::Kill(node),
        4 => Fault::Pause(node),
        _ => {
            let s = rng.gen_range(1..=MAX_SKEW_SECS);
            Fault::Skew(node, if rng.gen_bool(0.5) { s } else { -s })
        }
    };
    // A pause outlasts the failure detector's window (phi 8 at one gossip round a second
    // convicts in well under 10 s) so the others mark it down and hint for it.
    let hold_ms = match fault {
        Fault::Pause(_) => rng.gen_range(10_000..16_000),
        _ => rng.gen_range(3_000..10_000),
    };
    Step {
        fault,
        hold: Duration::from_millis(hold_ms),
        quiet: Duration::from_millis(rng.gen_range(1_000..4_000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedule_is_replayable_from_its_seed() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| next_step(&mut rng, 5, true))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }

    #[test]
    fn schedule_draws_every_kind_and_valid_nodes() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let step = next_step(&mut rng, 5, true);
            match &step.fault {
                Fault::Halves(a, b) => {
                    assert!(!a.is_empty() && !b.is_empty());
                    assert_eq!(a.len() + b.len(), 5);
                }
                Fault::OneWay { to, from } => assert!(to != from && *to < 5 && *from < 5),
                Fault::Skew(i, s) => assert!(*i < 5 && *s != 0 && s.abs() <= MAX_SKEW_SECS),
                Fault::Isolate(i)
                | Fault::Kill(i)
                | Fault::Pause(i)
                | Fault::Wipe(i)
                | Fault::Decommission(i) => {
                    assert!(*i < 5)
                }
            }
            kinds.insert(step.fault.kind());
        }
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..200).all(|_| next_step(&mut rng, 5, false).fault.kind() != "skew"));
    }
}
