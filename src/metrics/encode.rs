//! Encoding helpers shared by the request metrics and the scrape-time collector: a
//! [`LatencySnapshot`] as a Prometheus histogram in seconds, and one-sample gauges and
//! counters with or without labels.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use sibyl_storage::latency::{LatencySnapshot, LATENCY_BUCKETS_MICROS};

/// Microseconds per second, for bucket bounds and sums in seconds.
const MICROS_PER_SEC: f64 = 1e6;

/// Writes `snapshot` as a histogram sample set (`_bucket`, `_sum`, `_count`) in seconds.
pub(super) fn encode_histogram(
    encoder: &mut MetricEncoder,
    snapshot: &LatencySnapshot,
) -> Result<(), std::fmt::Error> {
    // The encoder accumulates per-bucket counts itself; the overflow bucket is +Inf.
    let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MICROS
        .iter()
        .map(|&b| b as f64 / MICROS_PER_SEC)
        .chain(std::iter::once(f64::INFINITY))
        .zip(snapshot.buckets.iter().copied())
        .collect();
    encoder.encode_histogram::<NoLabelSet>(
        snapshot.sum_micros as f64 / MICROS_PER_SEC,
        snapshot.count,
        &buckets,
        None,
    )
}

/// A metric family being written: its descriptor is out, samples follow.
pub(super) struct Family<'a> {
    encoder: MetricEncoder<'a>,
    metric_type: MetricType,
}

impl<'a> Family<'a> {
    /// Starts family `name` (without the `sibyl_` prefix or the counter `_total`
    /// suffix, which the registry and encoder add).
    pub(super) fn start(
        encoder: &'a mut DescriptorEncoder,
        name: &'a str,
        help: &str,
        metric_type: MetricType,
    ) -> Result<Family<'a>, std::fmt::Error> {
        Ok(Family {
            encoder: encoder.encode_descriptor(name, help, None, metric_type)?,
            metric_type,
        })
    }

    /// One sample with `labels` (a counter's or a gauge's, as the family was started).
    pub(super) fn sample(
        &mut self,
        labels: &impl EncodeLabelSet,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let mut sample = self.encoder.encode_family(labels)?;
        match self.metric_type {
            MetricType::Counter => sample.encode_counter::<NoLabelSet, _, u64>(&value, None),
            _ => sample.encode_gauge(&value),
        }
    }

    /// One gauge sample with `labels` and a fractional value.
    pub(super) fn gauge_f64(
        &mut self,
        labels: &impl EncodeLabelSet,
        value: f64,
    ) -> Result<(), std::fmt::Error> {
        self.encoder.encode_family(labels)?.encode_gauge(&value)
    }

    /// The family's only sample, without labels.
    pub(super) fn single(mut self, value: u64) -> Result<(), std::fmt::Error> {
        match self.metric_type {
            MetricType::Counter => self
                .encoder
                .encode_counter::<NoLabelSet, _, u64>(&value, None),
            _ => self.encoder.encode_gauge(&value),
        }
    }

    /// The family's only histogram sample set, without labels.
    pub(super) fn single_histogram(
        mut self,
        snapshot: &LatencySnapshot,
    ) -> Result<(), std::fmt::Error> {
        encode_histogram(&mut self.encoder, snapshot)
    }

    /// A histogram sample set with `labels`.
    pub(super) fn histogram(
        &mut self,
        labels: &impl EncodeLabelSet,
        snapshot: &LatencySnapshot,
    ) -> Result<(), std::fmt::Error> {
        encode_histogram(&mut self.encoder.encode_family(labels)?, snapshot)
    }
}
