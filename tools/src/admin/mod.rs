//! Operations views behind `sibyl-admin` (like nodetool): the cluster as the topology
//! message describes it.
//!
//! # Layout
//! - [`ring`]: tokens in ring order, each token's range share, each node's ownership.
//! - [`status`]: the `status` and `ring` tables as text.

pub mod ring;
pub mod status;
