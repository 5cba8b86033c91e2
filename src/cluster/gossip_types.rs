//! Configuration, identity and events of the [`super::Gossiper`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::endpoint::NodeStatus;
use super::failure_detector::FailureDetectorConfig;
use super::messages::Envelope;
use crate::ring::{NodeId, NodeLocation, Partitioner, Token};

/// One gossip round per second (Dynamo §4.8, Cassandra's `Gossiper.intervalInMillis`).
pub const GOSSIP_INTERVAL_MS: u64 = 1000;
/// Rounds between re-announcing a schema mismatch still unresolved (a lost pull retries).
pub const SCHEMA_RECHECK_ROUNDS: u64 = 10;

/// Cluster-wide gossip settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Cluster name; nodes of other clusters are refused.
    pub cluster_name: Arc<str>,
    /// Partitioner; nodes with another one are refused.
    pub partitioner: Partitioner,
    /// Time between rounds, ms.
    pub interval_ms: u64,
    /// Seed peer addresses (discovery only).
    pub seeds: Vec<SocketAddr>,
    /// Failure detector tuning.
    pub failure_detector: FailureDetectorConfig,
}

impl GossipConfig {
    /// Defaults for `cluster_name` with `seeds`: murmur3, one round a second, phi 8.
    pub fn new(cluster_name: &str, seeds: Vec<SocketAddr>) -> GossipConfig {
        GossipConfig {
            cluster_name: Arc::from(cluster_name),
            partitioner: Partitioner::Murmur3,
            interval_ms: GOSSIP_INTERVAL_MS,
            seeds,
            failure_detector: FailureDetectorConfig::default(),
        }
    }
}

/// What the local node announces about itself when gossip starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Stable host id.
    pub id: NodeId,
    /// Start generation: must grow across restarts (e.g. seconds since the epoch, or the
    /// stored previous generation + 1).
    pub generation: u64,
    /// Peer port address (where gossip reaches this node).
    pub peer_address: SocketAddr,
    /// Client port address, if serving clients.
    pub client_address: Option<SocketAddr>,
    /// Datacenter and rack.
    pub location: NodeLocation,
    /// Tokens (empty until chosen).
    pub tokens: Vec<Token>,
    /// Initial status (`Joining` until tokens are chosen, or `Normal` on restart).
    pub status: NodeStatus,
    /// Schema version hash.
    pub schema_version: u64,
    /// Load in bytes.
    pub load: u64,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination peer address.
    pub to: SocketAddr,
    /// The message with its sender.
    pub envelope: Envelope,
}

/// Things the node layer reacts to (ring rebuilds, hint replay, schema pulls, logs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GossipEvent {
    /// A node was learnt of for the first time.
    Discovered {
        /// The node.
        node: NodeId,
    },
    /// A node is reachable again (or for the first time).
    Up {
        /// The node.
        node: NodeId,
    },
    /// A node was convicted by the failure detector or announced its shutdown.
    Down {
        /// The node.
        node: NodeId,
        /// Its phi at conviction (0 for a clean shutdown).
        phi: f64,
    },
    /// A node restarted (new generation).
    Restarted {
        /// The node.
        node: NodeId,
        /// Its new generation.
        generation: u64,
    },
    /// A node's status, tokens, addresses or location changed: rebuild the ring.
    TopologyChanged {
        /// The node.
        node: NodeId,
    },
    /// A live peer announces another schema version than ours: pull its schema.
    SchemaMismatch {
        /// The peer.
        node: NodeId,
        /// Where to send `SchemaPull`.
        address: SocketAddr,
        /// Its schema version.
        version: u64,
    },
    /// A peer refused our syn (other cluster or partitioner): this node cannot join.
    Rejected {
        /// The refusing peer.
        by: SocketAddr,
        /// Its cluster name.
        cluster_name: Arc<str>,
        /// Its partitioner.
        partitioner: Partitioner,
    },
}

/// Errors of gossip operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The node is not known to gossip.
    #[error("unknown node {node}")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// `removenode` is only for dead nodes.
    #[error("node {node} is alive; decommission it instead of removing it")]
    NodeAlive {
        /// The node.
        node: NodeId,
    },
    /// A node cannot remove itself.
    #[error("a node cannot remove itself")]
    RemoveSelf,
}
