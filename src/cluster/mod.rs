//! Gossip membership and failure detection (Dynamo §4.8, Cassandra's Gossiper).
//!
//! # Layout
//! - [`endpoint`]: versioned endpoint state (generation, heartbeat, status, tokens,
//!   addresses, datacenter, rack, schema version, load), digests and deltas.
//! - [`messages`]: [`PeerMessage`] and [`Envelope`]; [`codec`] encodes them, with the
//!   constants in [`wire`] (spec: `doc/peer-messages.md`).
//! - [`failure_detector`]: phi-accrual failure detection per peer.
//!
//! # Threading
//! Everything here is a single-threaded state machine driven by its owner: the node's
//! gossip task, or a deterministic simulation. Nothing here reads a clock or a socket:
//! time comes in as milliseconds, messages come in and go out as values.

pub mod codec;
pub mod endpoint;
pub mod failure_detector;
pub mod messages;
pub mod wire;

pub use codec::{decode, encode, encoded_len, DecodeError};
pub use endpoint::{
    AppState, EndpointDelta, EndpointState, GossipDigest, Heartbeat, NodeStatus, Versioned,
};
pub use failure_detector::{ArrivalWindow, FailureDetector, FailureDetectorConfig};
pub use messages::{Envelope, GossipAck, GossipAck2, GossipReject, GossipSyn, PeerMessage};
