//! The peer network: how nodes call each other (spec: `doc/peer-messages.md`).
//!
//! A [`PeerNetwork`] carries opaque message bodies between nodes, addressed by the peer's
//! listen address, and hands what arrives to the component that registered for the
//! message's [`Family`] (gossip now; replica, hints, repair and streaming as they come).
//! Each component owns its message enum and codec; this module knows none of them (the
//! dependency points from the components to the network, never back).
//!
//! # Layout
//! - [`frame`]: the peer frame (family, kind, stream id, length, crc32).
//! - [`handshake`]: the hello / welcome that opens a connection (cluster, node, version).
//! - [`tcp`]: [`TcpNetwork`], the real network on tokio: per peer a small and a bulk
//!   lane, each one multiplexed connection with bounded queues, reconnect with backoff.
//! - [`sim`]: [`SimNetwork`], a seeded message-level simulator behind the same trait
//!   (latency, jitter, loss, duplication, reordering, one-way partitions, crashes, skew).
//! - [`error`]: [`NetError`], [`HandlerError`].
//! - `unwind`: a handler's panic becomes an error of its own request or message.
//!
//! # Contract
//! - `call` returns the answer or a typed error before its deadline; answers may come
//!   back in any order (stream ids).
//! - `send` is one-way and at most once: it never blocks and returns an error when the
//!   message cannot be queued (full queue, peer in backoff, shut down) instead of
//!   dropping it silently. A queued message can still be lost with its connection.
//! - One-way messages of one family on one lane arrive in the order sent (TCP); the
//!   handler runs them one at a time per connection (backpressure). Requests run
//!   concurrently, at most a bounded number per connection.
//! - Every queue is bounded; a slow or dead peer costs at most those bounds.

pub mod error;
pub mod frame;
pub mod handshake;
pub mod sim;
pub mod tcp;
mod unwind;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::time::Instant;

pub use error::{HandlerError, NetError};
pub use handshake::{Lane, PEER_PROTOCOL_VERSION};
pub use sim::{SimClock, SimConfig, SimFate, SimMessageKind, SimNetwork, SimNode, SimTraceEvent};
pub use tcp::{TcpNetwork, TcpOptions};

use crate::ring::NodeId;

/// A boxed, sendable future (what trait methods return, so the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Body size from which a message rides the bulk lane whatever its family (256 KiB: a
/// frame that takes longer than a few small round trips to write on a busy link).
pub const BULK_THRESHOLD_BYTES: usize = 256 << 10;

/// Which component owns a message: one byte in every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Membership and schema (`src/cluster`).
    Gossip,
    /// Replica reads and writes.
    Replica,
    /// Hinted handoff.
    Hints,
    /// Anti-entropy repair (bulk lane).
    Repair,
    /// Token-range streaming (bulk lane).
    Stream,
}

impl Family {
    /// Every family, in code order.
    pub const ALL: [Family; 5] = [
        Family::Gossip,
        Family::Replica,
        Family::Hints,
        Family::Repair,
        Family::Stream,
    ];

    /// Its byte in a frame.
    pub fn code(self) -> u8 {
        match self {
            Family::Gossip => 1,
            Family::Replica => 2,
            Family::Hints => 3,
            Family::Repair => 4,
            Family::Stream => 5,
        }
    }

    /// The family of a frame byte.
    pub fn from_code(code: u8) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The lane its messages take (bodies over [`BULK_THRESHOLD_BYTES`] always take the
    /// bulk lane).
    pub fn lane(self) -> Lane {
        match self {
            Family::Repair | Family::Stream => Lane::Bulk,
            Family::Gossip | Family::Replica | Family::Hints => Lane::Small,
        }
    }

    fn index(self) -> usize {
        self.code() as usize - 1
    }
}

/// The lane a message of `family` with a body of `len` bytes takes.
pub fn lane_for(family: Family, len: usize) -> Lane {
    if len > BULK_THRESHOLD_BYTES {
        Lane::Bulk
    } else {
        family.lane()
    }
}

/// Who sent a message: the node id and listen address its connection's handshake named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node: NodeId,
    /// Where it listens for peers (where answers and new messages to it go).
    pub addr: SocketAddr,
}

/// A component's receiving side for one family.
pub trait PeerHandler: Send + Sync + 'static {
    /// Answers a request (a `call`). Runs concurrently with other requests.
    fn request(
        &self,
        from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>>;
    /// Takes a one-way message. Awaited before the connection reads its next frame.
    fn message(&self, from: PeerInfo, body: Bytes) -> BoxFuture<'static, ()>;
}

/// The network between this node and its peers.
pub trait PeerNetwork: Send + Sync + 'static {
    /// Where peers reach this node.
    fn local_addr(&self) -> SocketAddr;
    /// This node's id (sent in every handshake).
    fn local_node(&self) -> NodeId;
    /// Sends a request to `to` and waits for its answer until `deadline`.
    fn call(
        &self,
        to: SocketAddr,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>>;
    /// [`PeerNetwork::call`] meant for node `node` at `to`: fails
    /// [`NetError::WrongNode`] without sending when the peer that shook hands at `to` is
    /// another node, and discards (failing the same way) an answer that came from another
    /// node. An address outlives a node (a wiped disk restarts under a new id there), so
    /// a call whose answer counts as a given replica's uses this.
    fn call_node(
        &self,
        to: SocketAddr,
        node: NodeId,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>>;
    /// Queues a one-way message; an error when it cannot be queued.
    fn send(&self, to: SocketAddr, family: Family, body: Bytes) -> Result<(), NetError>;
    /// Makes `handler` receive `family`'s messages. One handler per family.
    fn register(&self, family: Family, handler: Arc<dyn PeerHandler>) -> Result<(), NetError>;
    /// Closes every connection to and from `peer` (it left or was removed); pending calls
    /// to it fail. A later message to it connects again.
    fn disconnect(&self, peer: SocketAddr);
    /// Stops every connection and task of this network; later calls fail `Closed`.
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}

/// The handler registered for each family (set once; read lock-free on every message).
#[derive(Default)]
pub struct Handlers {
    slots: [OnceLock<Arc<dyn PeerHandler>>; 5],
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|fam| self.get(*fam).is_some())
            .collect();
        f.debug_struct("Handlers")
            .field("registered", &set)
            .finish()
    }
}

impl Handlers {
    /// Registers `handler` for `family`; refused when one is already registered.
    pub fn register(&self, family: Family, handler: Arc<dyn PeerHandler>) -> Result<(), NetError> {
        self.slots
            .get(family.index())
            .ok_or(NetError::AlreadyRegistered { family })?
            .set(handler)
            .map_err(|_| NetError::AlreadyRegistered { family })
    }

    /// The handler of `family`.
    pub fn get(&self, family: Family) -> Option<&Arc<dyn PeerHandler>> {
        self.slots.get(family.index())?.get()
    }
}
