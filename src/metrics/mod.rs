//! The node's metrics: what it counts, how a scrape reads it, and the HTTP endpoint that
//! serves it (`--metrics-listen`, off by default). Every metric is named `sibyl_...` and
//! listed with its type, labels and meaning in `doc/metrics.md`; the text is the
//! Prometheus text exposition format 0.0.4, encoded by `prometheus-client`.
//!
//! # Layout
//! - [`requests`]: client requests per opcode and consistency level (counts and latency
//!   histograms) and error answers per code, recorded by the client connections with
//!   atomics only.
//! - [`tables`]: per-table read and write latency and the siblings reads returned
//!   (`sibyl-admin tablestats`, `sibyl_table_*`).
//! - [`collector`]: everything else (storage, commit log, gossip, hints, read repair,
//!   siblings over the limit, repair and streams), read at scrape time from the
//!   accessors of the parts that own the numbers.
//! - [`http`]: the endpoint, a minimal HTTP/1.1 responder for `GET /metrics`.
//! - `encode`: the histogram and sample helpers both use.
//!
//! The same text answers the client protocol's METRICS request, so `sibyl-admin metrics`
//! reads it from any node whether or not the endpoint is on.
//!
//! Threading: [`Metrics`] is `Send + Sync`; [`Metrics::encode`] reads atomics and
//! in-memory snapshots (no disk I/O) and may run on any task.

pub mod collector;
mod encode;
pub mod http;
pub mod requests;
pub mod tables;

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

pub use collector::{NodeCollector, NodeSources};
pub use requests::{Outcome, RequestKind, RequestMetrics};

/// The prefix of every metric name.
pub const METRIC_PREFIX: &str = "sibyl";

/// The `Content-Type` of the text [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry of one node: its request metrics and its scrape-time collector.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

/// Adapts [`RequestMetrics`] to the registry's collector interface.
#[derive(Debug)]
struct RequestCollector(Arc<RequestMetrics>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(&mut encoder)
    }
}

impl Metrics {
    /// A registry of `requests` (shared with the client server, which records into it)
    /// and of `collector`.
    pub fn new(requests: Arc<RequestMetrics>, collector: Option<NodeCollector>) -> Metrics {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        registry.register_collector(Box::new(RequestCollector(requests)));
        if let Some(c) = collector {
            registry.register_collector(Box::new(c));
        }
        Metrics { registry }
    }

    /// Every metric, as Prometheus text (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            // Writing to a String cannot fail; an encoder error would be a bug in a
            // metric's encoding, and the scrape still gets what was written.
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        text
    }
}
