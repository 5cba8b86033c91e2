//! Node identity and location: what the ring knows about a physical node.
//!
//! A [`NodeId`] is a node's stable identity (a random 64-bit host id chosen at first start
//! and kept across restarts; a restart is told apart by the gossip generation, not the id).
//! A [`NodeLocation`] is the datacenter and rack the node declares, which placement
//! strategies read. Plain values; no threading concerns.

use std::fmt;
use std::sync::Arc;

/// A physical node's stable identity (riak_core's "node", Cassandra's host id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A text that is not a node id (see [`NodeId`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node id {0:?} is not a node id: expected up to 16 hex digits, as `sibyl-admin status` \
     shows them"
)]
pub struct ParseNodeIdError(pub String);

impl std::str::FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Up to 16 hex digits (what [`fmt::Display`] writes), surrounding spaces ignored.
    fn from_str(text: &str) -> Result<NodeId, ParseNodeIdError> {
        let t = text.trim();
        if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseNodeIdError(text.to_owned()));
        }
        u64::from_str_radix(t, 16)
            .map(NodeId)
            .map_err(|_| ParseNodeIdError(text.to_owned()))
    }
}

/// Datacenter and rack a node declares (Cassandra's snitch output).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeLocation {
    /// Datacenter name, e.g. `dc1`.
    pub datacenter: Arc<str>,
    /// Rack name within the datacenter, e.g. `rack1`.
    pub rack: Arc<str>,
}

impl NodeLocation {
    /// A location from datacenter and rack names.
    pub fn new(datacenter: &str, rack: &str) -> NodeLocation {
        NodeLocation {
            datacenter: Arc::from(datacenter),
            rack: Arc::from(rack),
        }
    }
}

impl Default for NodeLocation {
    /// `dc1` / `rack1`, Cassandra's defaults for a single-DC cluster.
    fn default() -> Self {
        NodeLocation::new("dc1", "rack1")
    }
}
