//! Peer messages: everything nodes say to each other about membership and schema.
//!
//! Gossip is Cassandra's three-way scuttlebutt exchange (van Renesse et al., LADIS 2008):
//! `A -> B: GossipSyn{digests}`; `B -> A: GossipAck{deltas A lacks, requests for what B
//! lacks}`; `A -> B: GossipAck2{deltas B requested}`. A `GossipSyn` also carries the cluster
//! name and partitioner, and a node with another one is answered by `GossipReject`.
//! Schema travels by pull: a node that sees another schema version in gossip sends
//! `SchemaPull` and gets `SchemaPush` (opaque schema bytes the node layer interprets).
//!
//! The binary encoding is in [`super::codec`], its constants in [`super::wire`] and the
//! spec in `doc/peer-messages.md`. Plain values, cheap to clone (large parts are `Arc`s).

use std::net::SocketAddr;
use std::sync::Arc;

use super::endpoint::{EndpointDelta, GossipDigest};
use crate::ring::{NodeId, Partitioner};

/// A message with its sender: the body of every [`crate::net::Family::Gossip`] message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sending node.
    pub from: NodeId,
    /// The sender's peer address (where replies go).
    pub from_addr: SocketAddr,
    /// The message.
    pub message: PeerMessage,
}

/// Node-to-node messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// Gossip round opener: digests of every endpoint the sender knows.
    GossipSyn(GossipSyn),
    /// Answer to a syn: newer states for the sender, requests for what the receiver lacks.
    GossipAck(GossipAck),
    /// Answer to an ack: the requested states.
    GossipAck2(GossipAck2),
    /// The receiver of a syn belongs to another cluster or uses another partitioner.
    GossipReject(GossipReject),
    /// The sender is shutting down cleanly: mark it down now.
    GossipShutdown,
    /// Asks for the receiver's schema (sent on a schema version mismatch).
    SchemaPull {
        /// The schema version the asker saw for the receiver.
        version: u64,
    },
    /// A node's schema.
    SchemaPush {
        /// Hash of `schema`.
        version: u64,
        /// Opaque schema bytes (the node layer's encoding).
        schema: Arc<[u8]>,
    },
}

/// Gossip syn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSyn {
    /// Cluster name; a mismatch is rejected.
    pub cluster_name: Arc<str>,
    /// Partitioner; a mismatch is rejected.
    pub partitioner: Partitioner,
    /// One digest per endpoint the sender knows, itself included.
    pub digests: Vec<GossipDigest>,
}

/// Gossip ack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GossipAck {
    /// States newer than the syn's digests said the sender has.
    pub deltas: Vec<EndpointDelta>,
    /// Endpoints the ack's sender wants: send states after `max_version` of `generation`
    /// (everything when the generation differs).
    pub requests: Vec<GossipDigest>,
}

/// Gossip ack2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GossipAck2 {
    /// The requested states.
    pub deltas: Vec<EndpointDelta>,
}

/// Refusal of a syn from a node of another cluster or partitioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipReject {
    /// The refusing node's cluster name.
    pub cluster_name: Arc<str>,
    /// The refusing node's partitioner.
    pub partitioner: Partitioner,
}

impl PeerMessage {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            PeerMessage::GossipSyn(_) => "gossip_syn",
            PeerMessage::GossipAck(_) => "gossip_ack",
            PeerMessage::GossipAck2(_) => "gossip_ack2",
            PeerMessage::GossipReject(_) => "gossip_reject",
            PeerMessage::GossipShutdown => "gossip_shutdown",
            PeerMessage::SchemaPull { .. } => "schema_pull",
            PeerMessage::SchemaPush { .. } => "schema_push",
        }
    }

    /// True for the messages the [`super::Gossiper`] consumes.
    pub fn is_gossip(&self) -> bool {
        matches!(
            self,
            PeerMessage::GossipSyn(_)
                | PeerMessage::GossipAck(_)
                | PeerMessage::GossipAck2(_)
                | PeerMessage::GossipReject(_)
                | PeerMessage::GossipShutdown
        )
    }
}
