//! The cluster topology a client fetches for token-aware routing: nodes with their
//! addresses, tokens, state, datacenter, rack and load, and the partitioner. Pure data with its
//! wire encoding.

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// Life-cycle state of a node in the ring. Wire: `u8`, 0 joining, 1 normal, 2 leaving,
/// 3 left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Bootstrapping: receiving its ranges.
    Joining,
    /// Owns its tokens.
    Normal,
    /// Decommissioning: streaming its ranges away.
    Leaving,
    /// Gone from the ring.
    Left,
    /// Owns its tokens while it moves to new ones (a rebalance): pulling the ranges it
    /// gains, pushing those it loses.
    Moving,
}

/// One node of the cluster as the topology response describes it. Wire: `string` id,
/// `string` address, `string` datacenter, `string` rack, `u8` state, `bool` up,
/// `list<i128>` tokens, `u64` load_bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// Stable node id.
    pub id: String,
    /// Client address, `host:port`.
    pub address: String,
    /// Datacenter name.
    pub datacenter: String,
    /// Rack name.
    pub rack: String,
    /// Ring state.
    pub state: NodeState,
    /// Whether the failure detector believes the node is up.
    pub up: bool,
    /// Tokens the node owns (murmur3 tokens are i64 values sign-extended; md5 tokens are
    /// non-negative 127-bit values).
    pub tokens: Vec<i128>,
    /// Bytes of data the node holds (SSTables and memtables of every table), as it last
    /// announced in gossip; 0 when not yet known.
    pub load_bytes: u64,
}

impl NodeInfo {
    pub(crate) const MIN_LEN: usize = 22;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("node id", &self.id)?;
        w.string("node address", &self.address)?;
        w.string("datacenter", &self.datacenter)?;
        w.string("rack", &self.rack)?;
        w.u8(match self.state {
            NodeState::Joining => 0,
            NodeState::Normal => 1,
            NodeState::Leaving => 2,
            NodeState::Left => 3,
            NodeState::Moving => 4,
        });
        w.bool(self.up);
        w.list("tokens", &self.tokens, |w, t| {
            w.i128(*t);
            Ok(())
        })?;
        w.u64(self.load_bytes);
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(NodeInfo {
            id: r.string("node id")?,
            address: r.string("node address")?,
            datacenter: r.string("datacenter")?,
            rack: r.string("rack")?,
            state: match r.u8("node state")? {
                0 => NodeState::Joining,
                1 => NodeState::Normal,
                2 => NodeState::Leaving,
                3 => NodeState::Left,
                4 => NodeState::Moving,
                tag => {
                    return Err(ProtocolError::InvalidTag {
                        what: "node state",
                        tag: u64::from(tag),
                    })
                }
            },
            up: r.bool("node up")?,
            tokens: r.list("tokens", 16, |r| r.i128("token"))?,
            load_bytes: r.u64("load bytes")?,
        })
    }
}

/// The cluster as a client needs it for token-aware routing. Wire: `string` partitioner
/// (`"murmur3"` or `"md5"`), `list<node>` nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Topology {
    /// Partitioner name.
    pub partitioner: String,
    /// Every node known to the answering node.
    pub nodes: Vec<NodeInfo>,
}

impl Topology {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("partitioner", &self.partitioner)?;
        w.list("nodes", &self.nodes, |w, n| n.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(Topology {
            partitioner: r.string("partitioner")?,
            nodes: r.list("nodes", NodeInfo::MIN_LEN, NodeInfo::decode)?,
        })
    }
}
