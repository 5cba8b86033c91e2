//! Operations views behind `sibyl-admin` (like nodetool): the cluster as the topology
//! message describes it, and a table's storage statistics.
//!
//! # Layout
//! - [`cleanup`]: the `cleanup` report (what the node dropped, per table) as text.
//! - [`describe`]: the `describe` (cluster name, partitioner, schema agreement, tables)
//!   and `tables` reports.
//! - [`exposition`]: a strict parser of the Prometheus text format (the node's metrics).
//! - [`hints`]: the `hints` report (pending and dropped hints per owner) as text.
//! - [`json`]: every report as JSON (`--json`), with stable field names.
//! - [`metrics`]: the `metrics` report (the node's metrics, histograms summarised).
//! - [`rebalance`]: the `rebalance` plan (owned bytes per node now and after).
//! - [`streams`]: the `streams` report (the node's streams and its throughput cap).
//! - [`repair`]: the `repair` report and the tables' repair sync times as text.
//! - [`ring`]: tokens in ring order, each token's range share, each node's ownership.
//! - [`status`]: the `status` and `ring` tables as text.
//! - [`tablestats`]: the `tablestats` report as text.

pub mod cleanup;
pub mod describe;
pub mod exposition;
pub mod hints;
pub mod json;
pub mod metrics;
pub mod rebalance;
pub mod repair;
pub mod ring;
pub mod status;
pub mod streams;
pub mod tablestats;
