//! Sibyl: a Dynamo-style distributed wide-column store — the node.
//!
//! # Layout
//! - [`ring`]: tokens, partitioners, token allocation, placement strategies, preference lists.
//! - [`cluster`]: gossip membership, endpoint state, phi-accrual failure detection.
//! - [`net`]: the peer network: calls and one-way messages by family, over TCP or a
//!   seeded simulator.
//! - [`versioning`]: dotted version vector sets, LWW cells, TTL, contexts, and the merge
//!   policies the storage engine is given for causal and LWW tables.
//! - [`config`]: node configuration (flags and TOML).
//! - [`identity`]: the node's persisted ring state (generation, tokens).
//! - [`replica`]: the local replica: engine keys by the cluster's partitioner, minting,
//!   applying cells minted elsewhere, raw reads and digests, token-range scans, and the
//!   replica family's peer messages and handler.
//! - [`repair`]: anti-entropy: per-table hash trees kept up to date by every write, and
//!   the exchange that repairs two replicas of a range by moving only what differs.
//! - [`stream`]: token ranges following the ring: a joining node streams the ranges it
//!   gains (pages pulled in ring order, applied by merge, checkpointed) before it owns them.
//! - [`service`]: request -> response over the storage engine; never touches a socket.
//! - [`auth`]: client authentication: users with SCRAM-SHA-256 verifiers (a system table
//!   spread with the schema), the login exchange, per-source throttling of failures.
//! - [`server`]: client connections: framing, limits, in-flight bounds, shutdown.
//! - [`metrics`]: the node's metrics (request counters and latencies, storage, gossip,
//!   hints, repair) and their Prometheus text endpoint (`--metrics-listen`).
//! - [`node`]: wires config, engine, service and server into a running node.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod hints;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod node;
pub mod repair;
pub mod replica;
pub mod ring;
pub mod server;
pub mod service;
pub mod stream;
pub mod versioning;
