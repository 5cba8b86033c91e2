//! The node's identity files: what a node must remember about its place in the cluster
//! across restarts, owned by the node (not the request service).
//!
//! # Layout
//! - [`ring_state`]: [`RingState`], the persisted partitioner, generation and tokens
//!   (spec: `doc/node-files.md`).
//! - [`peers`]: [`SavedPeers`], the ring as last seen (the other nodes' addresses,
//!   locations and tokens), so a restarted node knows whose keys are whose before
//!   gossip reaches anyone.
//! - [`decommissioned`]: [`Decommissioned`], the mark of a node that left the ring, which
//!   then refuses to start again on the same directory.
//!
//! Files are replaced atomically by the storage engine's helper
//! ([`sibyl_storage::atomic_file`]), the same one the engine's manifest uses.

pub mod decommissioned;
pub mod peers;
pub mod ring_state;

pub use decommissioned::{Decommissioned, DECOMMISSIONED_FILE};
pub use peers::{keep_saved, PeersFileError, SavedPeer, SavedPeers, PEERS_FILE};
pub use ring_state::{next_generation, RingState, RingStateError, RING_STATE_FILE};
