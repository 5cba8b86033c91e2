//! The coordinator of replicated requests (work in progress: issue 9). What exists so far:
//! - [`placement`]: a key's home replicas, its stand-ins for the down ones, and how many
//!   answers a consistency level needs;
//! - [`latency`]: per-peer recent latencies, the threshold of speculative retry.
//!
//! The request path does not call it yet: every node still answers from its own
//! replica (see `doc/architecture.md`, "Status").

pub mod latency;
pub mod placement;
