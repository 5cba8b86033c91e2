//! Gossip membership and failure detection (Dynamo §4.8, Cassandra's Gossiper).
//!
//! # Layout
//! - [`endpoint`]: versioned endpoint state (generation, heartbeat, status, tokens,
//!   addresses, datacenter, rack, schema version, load), digests and deltas.
//! - [`messages`]: [`PeerMessage`] and [`Envelope`]; [`codec`] encodes them, with the
//!   constants in [`wire`] (spec: `doc/peer-messages.md`).
//! - [`failure_detector`]: phi-accrual failure detection per peer.
//! - [`gossiper`]: [`Gossiper`], the syn/ack/ack2 state machine; its configuration and
//!   events are in [`gossip_types`].
//! - [`view`]: [`ClusterView`], a membership snapshot that builds the [`crate::ring::Ring`].
//! - [`simulation`]: [`GossipSimulation`], gossipers over [`sim_network`], a pure
//!   discrete-event network of envelopes (big clusters, no async).
//! - [`node_map`]: a deterministic map keyed by node id.
//! - [`runtime`]: [`ClusterRuntime`], the tokio task that drives a node's gossiper over a
//!   [`crate::net::PeerNetwork`] (family `gossip`), serves schema pulls, chooses the
//!   node's tokens and publishes views into the [`handle`].
//! - [`handle`]: [`ClusterHandle`], the published-view cell and command sender the
//!   service holds (created by the node before the service opens).
//!
//! # Threading
//! Everything here is a single-threaded state machine driven by its owner: the node's
//! gossip task, or a deterministic simulation. Nothing here reads a clock or a socket:
//! time comes in as milliseconds, messages come in and go out as values.

pub mod codec;
pub mod endpoint;
pub mod failure_detector;
pub mod gossip_types;
pub mod gossiper;
pub mod handle;
pub mod messages;
pub mod node_map;
pub mod runtime;
pub mod sim_network;
pub mod simulation;
pub mod view;
pub mod wire;

pub use codec::{decode, encode, encoded_len, DecodeError};
pub use endpoint::{
    AppState, EndpointDelta, EndpointState, GossipDigest, Heartbeat, NodeStatus, Versioned,
};
pub use failure_detector::{ArrivalWindow, FailureDetector, FailureDetectorConfig};
pub use gossip_types::{
    GossipConfig, GossipError, GossipEvent, LocalNode, Outgoing, GOSSIP_INTERVAL_MS,
};
pub use gossiper::Gossiper;
pub use handle::{ClusterCommand, ClusterHandle, CommandInbox};
pub use messages::{Envelope, GossipAck, GossipAck2, GossipReject, GossipSyn, PeerMessage};
pub use runtime::{ClusterRuntime, SchemaSource, TokenPlan, TokensChosen};
pub use sim_network::{GossipEndpoint, GossipNetwork, SimConfig, SimStats};
pub use simulation::{GossipSimulation, SimNode};
pub use view::{ClusterView, NodeView};
