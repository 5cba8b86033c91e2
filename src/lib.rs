//! Sibyl: a Dynamo-style distributed wide-column store — the node.
//!
//! # Layout
//! - `ring`: tokens, partitioners, placement strategies, preference lists.
//! - `cluster`: gossip membership and failure detection.
//! - `transport`: the node-to-node network seam (TCP and simulated).
