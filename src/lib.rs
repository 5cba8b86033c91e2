//! Sibyl: a Dynamo-style distributed wide-column store — the node.
//!
//! # Layout
//! - [`ring`]: tokens, partitioners, token allocation, placement strategies, preference lists.
//! - [`cluster`]: gossip membership, endpoint state, phi-accrual failure detection.
//! - [`transport`]: the node-to-node network seam (TCP and simulated).
//! - [`versioning`]: dotted version vector sets, LWW cells, TTL, contexts, and the merge
//!   policies the storage engine is given for causal and LWW tables.

pub mod cluster;
pub mod ring;
pub mod transport;
pub mod versioning;
