//! Phi-accrual failure detection (Hayashibara, Défago, Yared, Katayama, SRDS 2004).
//!
//! For each peer we record when its heartbeat was seen to advance (through gossip, directly
//! or second hand) and keep the mean and variance of the inter-arrival times. The
//! suspicion level after `t` ms of silence is `phi(t) = -log10(P(next arrival > t))`,
//! with the arrival time modelled as normal, `N(mean + pause, max(stddev, min_stddev))`,
//! and the normal tail computed with the logistic approximation Akka uses
//! (`1 / (1 + exp(-y (1.5976 + 0.070566 y^2)))`, error < 1e-4). The peer is convicted
//! when `phi > threshold` (default 8: a one-in-10^8 chance the peer is merely late).
//!
//! Why normal and not Cassandra's exponential model: with an exponential model
//! `phi = t / (mean ln 10)`, so at threshold 8 and one gossip round a second a dead peer
//! is convicted only after ~18 s; the normal model uses the observed regularity of gossip
//! and convicts in a few seconds, while `acceptable_pause` and `min_stddev` keep it
//! calm under jitter.
//!
//! Window: mean and variance are running averages over the first `window` samples and
//! exponentially weighted (alpha = 1/window) after that: O(1) memory per peer, which keeps
//! a 1000-node simulation (a million detectors) small. Intervals above `max_interval`
//! (a partition or a pause, not the gossip rhythm) are not sampled, as in Cassandra.
//!
//! Single-threaded; time is passed in as milliseconds.

use super::node_map::NodeMap;
use crate::ring::NodeId;

/// Failure detector tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureDetectorConfig {
    /// Conviction threshold (Cassandra's `phi_convict_threshold`, default 8).
    pub phi_threshold: f64,
    /// Samples in the averaging window.
    pub window: u32,
    /// Floor of the standard deviation, ms (keeps a very regular peer from being convicted
    /// by one late message).
    pub min_stddev_ms: f64,
    /// Pause added to the mean before judging, ms (tolerates a missed round or two).
    pub acceptable_pause_ms: f64,
    /// Inter-arrival estimate before the first sample, ms (one gossip interval).
    pub initial_interval_ms: f64,
    /// Intervals longer than this are not sampled, ms.
    pub max_interval_ms: u64,
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        FailureDetectorConfig {
            phi_threshold: 8.0,
            window: 100,
            min_stddev_ms: 200.0,
            acceptable_pause_ms: 0.0,
            initial_interval_ms: 1000.0,
            max_interval_ms: 6000,
        }
    }
}

/// Weight of the prior estimate, in samples.
const PRIOR_SAMPLES: u32 = 4;

/// Inter-arrival statistics of one peer's heartbeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrivalWindow {
    last_ms: u64,
    mean: f64,
    var: f64,
    samples: u32,
}

impl ArrivalWindow {
    /// A window whose first arrival is `now_ms`.
    pub fn new(now_ms: u64, config: &FailureDetectorConfig) -> ArrivalWindow {
        // The prior (mean = stddev = one interval) counts as PRIOR_SAMPLES samples, so
        // the first real samples cannot shrink the variance to nothing and convict a
        // peer during warm-up.
        let mean = config.initial_interval_ms;
        ArrivalWindow {
            last_ms: now_ms,
            mean,
            var: mean * mean,
            samples: PRIOR_SAMPLES,
        }
    }

    /// Records a heartbeat arrival.
    pub fn report(&mut self, now_ms: u64, config: &FailureDetectorConfig) {
        let interval = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        if interval > config.max_interval_ms {
            return;
        }
        let x = interval as f64;
        self.samples = self.samples.saturating_add(1);
        // Exact running mean/variance while the window fills, then exponential decay.
        let alpha = 1.0 / f64::from(self.samples.min(config.window.max(1)).max(1));
        let diff = x - self.mean;
        let incr = alpha * diff;
        self.mean += incr;
        self.var = (1.0 - alpha) * (self.var + diff * incr);
    }

    /// Mean inter-arrival time, ms.
    pub fn mean_ms(&self) -> f64 {
        self.mean
    }

    /// Standard deviation of inter-arrival times, ms.
    pub fn stddev_ms(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// Time of the last arrival, ms.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// Suspicion level at `now_ms`.
    pub fn phi(&self, now_ms: u64, config: &FailureDetectorConfig) -> f64 {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        let mean = self.mean + config.acceptable_pause_ms;
        let std = self.stddev_ms().max(config.min_stddev_ms).max(1e-3);
        let y = (elapsed - mean) / std;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let phi = if elapsed > mean {
            -(e / (1.0 + e)).log10()
        } else {
            -(1.0 - 1.0 / (1.0 + e)).log10()
        };
        if phi.is_finite() {
            phi.max(0.0)
        } else {
            f64::MAX
        }
    }
}

/// Phi-accrual failure detector over all peers.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    config: FailureDetectorConfig,
    windows: NodeMap<ArrivalWindow>,
}

impl FailureDetector {
    /// A detector with `config`.
    pub fn new(config: FailureDetectorConfig) -> FailureDetector {
        FailureDetector {
            config,
            windows: NodeMap::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FailureDetectorConfig {
        &self.config
    }

    /// Records that `peer`'s heartbeat advanced at `now_ms`.
    pub fn report(&mut self, peer: NodeId, now_ms: u64) {
        let config = self.config;
        self.windows
            .entry(peer)
            .and_modify(|w| w.report(now_ms, &config))
            .or_insert_with(|| ArrivalWindow::new(now_ms, &config));
    }

    /// Suspicion level of `peer` at `now_ms` (0 for a peer never reported).
    pub fn phi(&self, peer: NodeId, now_ms: u64) -> f64 {
        self.windows
            .get(&peer)
            .map_or(0.0, |w| w.phi(now_ms, &self.config))
    }

    /// True when `peer`'s phi exceeds the threshold.
    pub fn is_convicted(&self, peer: NodeId, now_ms: u64) -> bool {
        self.phi(peer, now_ms) > self.config.phi_threshold
    }

    /// Forgets a peer (it restarted with a new generation, or was removed).
    pub fn forget(&mut self, peer: NodeId) {
        self.windows.remove(&peer);
    }

    /// The arrival statistics of a peer.
    pub fn window(&self, peer: NodeId) -> Option<&ArrivalWindow> {
        self.windows.get(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(fd: &mut FailureDetector, peer: NodeId, every: u64, count: u64) -> u64 {
        let mut t = 0;
        for _ in 0..count {
            fd.report(peer, t);
            t += every;
        }
        t - every
    }

    #[test]
    fn phi_is_low_right_after_a_heartbeat() {
        let mut fd = FailureDetector::new(FailureDetectorConfig::default());
        let last = regular(&mut fd, NodeId(1), 1000, 50);
        assert!(fd.phi(NodeId(1), last + 500) < 1.0);
    }

    #[test]
    fn phi_grows_with_silence_and_convicts() {
        let mut fd = FailureDetector::new(FailureDetectorConfig::default());
        let last = regular(&mut fd, NodeId(1), 1000, 50);
        let mut prev = 0.0;
        for dt in [1000, 2000, 2500, 3000] {
            let phi = fd.phi(NodeId(1), last + dt);
            assert!(phi >= prev, "phi must not decrease with silence");
            prev = phi;
        }
        assert!(!fd.is_convicted(NodeId(1), last + 2000));
        assert!(fd.is_convicted(NodeId(1), last + 5000));
    }

    #[test]
    fn phi_tolerates_more_silence_from_irregular_peers() {
        let config = FailureDetectorConfig::default();
        let mut steady = ArrivalWindow::new(0, &config);
        let mut jumpy = ArrivalWindow::new(0, &config);
        let (mut a, mut b) = (0, 0);
        for i in 0..100u64 {
            a += 1000;
            steady.report(a, &config);
            b += if i % 2 == 0 { 200 } else { 1800 };
            jumpy.report(b, &config);
        }
        assert!(jumpy.phi(b + 3000, &config) < steady.phi(a + 3000, &config));
    }

    #[test]
    fn phi_ignores_intervals_beyond_max() {
        let config = FailureDetectorConfig::default();
        let mut w = ArrivalWindow::new(0, &config);
        for t in 1..=20u64 {
            w.report(t * 1000, &config);
        }
        let mean = w.mean_ms();
        w.report(20_000 + 60_000, &config);
        assert_eq!(w.mean_ms(), mean);
    }

    #[test]
    fn phi_unknown_peer_is_zero() {
        let fd = FailureDetector::new(FailureDetectorConfig::default());
        assert_eq!(fd.phi(NodeId(5), 1_000_000), 0.0);
    }
}
