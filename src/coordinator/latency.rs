//! Recent latency of each peer's replica calls, for speculative retry: a read does not
//! wait for a replica past a high percentile of its recent latency before asking
//! another one too (Cassandra's `speculative_retry = 99p`).
//!
//! Each peer keeps its last [`WINDOW`] call latencies in a ring buffer; the percentile is
//! recomputed every [`RECOMPUTE_EVERY`] samples (a sort of at most 256 numbers), so a
//! lookup is a lock and a load. A peer with fewer than [`MIN_SAMPLES`] samples has no
//! threshold yet (no speculation until its latency is known).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ring::NodeId;

/// Samples kept per peer.
pub const WINDOW: usize = 256;
/// Samples between recomputations of the percentile.
pub const RECOMPUTE_EVERY: usize = 32;
/// Samples a peer needs before it has a threshold.
pub const MIN_SAMPLES: usize = 32;
/// The percentile past which a read speculates.
pub const PERCENTILE: f64 = 0.99;

#[derive(Debug, Default)]
struct Peer {
    samples: Vec<u32>,
    next: usize,
    since_recompute: usize,
    threshold_micros: Option<u32>,
}

impl Peer {
    fn record(&mut self, micros: u32) {
        if self.samples.len() < WINDOW {
            self.samples.push(micros);
        } else if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = micros;
        }
        self.next = (self.next + 1) % WINDOW;
        self.since_recompute += 1;
        if self.samples.len() >= MIN_SAMPLES && self.since_recompute >= RECOMPUTE_EVERY {
            self.since_recompute = 0;
            let mut sorted = self.samples.clone();
            sorted.sort_unstable();
            let i = ((sorted.len() as f64 - 1.0) * PERCENTILE).round() as usize;
            self.threshold_micros = sorted.get(i).copied();
        }
    }
}

/// Per-peer recent latencies (see the module documentation).
#[derive(Debug, Default)]
pub struct Latencies {
    peers: Mutex<HashMap<NodeId, Peer>>,
}

impl Latencies {
    /// Records one call to `node` that took `took`.
    pub fn record(&self, node: NodeId, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.lock().entry(node).or_default().record(micros);
    }

    /// How long a call to `node` may take before a read asks another replica too;
    /// `None` while too few calls were measured.
    pub fn threshold(&self, node: NodeId) -> Option<Duration> {
        self.lock()
            .get(&node)
            .and_then(|p| p.threshold_micros)
            .map(|m| Duration::from_micros(u64::from(m)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_appears_after_enough_samples_and_tracks_the_tail() {
        let l = Latencies::default();
        let n = NodeId(7);
        for _ in 0..MIN_SAMPLES - 1 {
            l.record(n, Duration::from_micros(100));
        }
        assert_eq!(l.threshold(n), None);
        l.record(n, Duration::from_micros(100));
        assert_eq!(l.threshold(n), Some(Duration::from_micros(100)));
        // A slow tail of 2 % of the window moves the 99th percentile to it.
        for i in 0..WINDOW {
            let us = if i % 50 == 0 { 9_000 } else { 100 };
            l.record(n, Duration::from_micros(us));
        }
        assert_eq!(l.threshold(n), Some(Duration::from_micros(9_000)));
        assert_eq!(l.threshold(NodeId(8)), None);
    }
}
