//! [`LatencyHistogram`]: a fixed-bucket latency histogram of atomic counters, cheap
//! enough for hot paths (one `fetch_add` per bucket, count and sum; no lock). The engine
//! times its commit-log syncs with one; the node times its client requests with the same
//! type and exports both as Prometheus histograms.
//!
//! Buckets are upper bounds in microseconds ([`LATENCY_BUCKETS_MICROS`]), shared by every
//! histogram so the exported series of different metrics line up. A [`LatencySnapshot`]
//! is read bucket by bucket while others record: its `count` is the sum of its buckets
//! (so the `+Inf` bucket and the count always agree); its `sum` may lag or lead them by
//! the observations made during the read.
//!
//! Threading: `Send + Sync`; every method takes `&self`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in microseconds: 50 µs (an in-memory answer) to 10 s (past any
/// request timeout), about 2.5x apart, as Prometheus client libraries space theirs.
pub const LATENCY_BUCKETS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram over [`LATENCY_BUCKETS_MICROS`] plus an overflow bucket.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one holds those above every
    /// bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    /// Sum of the observations, microseconds.
    sum_micros: AtomicU64,
}

/// What a [`LatencyHistogram`] held when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencySnapshot {
    /// Observations per bucket, not cumulative: `buckets[i]` took at most
    /// `LATENCY_BUCKETS_MICROS[i]` and more than the bound before; the last entry (one
    /// past the bounds) counts those above every bound.
    pub buckets: Vec<u64>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, microseconds.
    pub sum_micros: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram::default()
    }

    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LatencySnapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        LatencySnapshot {
            count: buckets.iter().fold(0u64, |a, &b| a.saturating_add(b)),
            buckets,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

impl LatencySnapshot {
    /// The upper bound, µs, of the bucket the `q` quantile (`0 < q <= 1`) falls in; 0
    /// with no observations, the largest bound when it falls past every bound.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS_MICROS) {
            seen = seen.saturating_add(*bucket);
            if seen >= rank {
                return bound;
            }
        }
        LATENCY_BUCKETS_MICROS.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_counts_each_observation_in_its_bucket_and_above() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_micros(50)); // on the first bound: in it
        h.record(Duration::from_micros(51));
        h.record(Duration::from_secs(60)); // past every bound
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_micros, 50 + 51 + 60_000_000);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS_MICROS.len() + 1);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(
            s.buckets[2..LATENCY_BUCKETS_MICROS.len()]
                .iter()
                .sum::<u64>(),
            0
        );
        assert_eq!(*s.buckets.last().unwrap(), 1);
    }

    #[test]
    fn latency_quantiles_are_bucket_upper_bounds() {
        let h = LatencyHistogram::new();
        assert_eq!(h.snapshot().quantile_micros(0.5), 0);
        for _ in 0..98 {
            h.record(Duration::from_micros(80));
        }
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(30));
        let s = h.snapshot();
        assert_eq!(s.quantile_micros(0.5), 100);
        assert_eq!(s.quantile_micros(0.98), 100);
        assert_eq!(s.quantile_micros(0.99), 5_000);
        assert_eq!(s.quantile_micros(1.0), 10_000_000);
    }
}
