//! The node-to-node network seam: a [`Transport`] carries [`Envelope`]s between peer
//! addresses (TiKV's pattern: the network sits behind a trait, so tests swap in a
//! simulated network that delays, drops, partitions and crashes).
//!
//! # Layout
//! - [`sim`]: [`SimNetwork`] / [`SimTransport`], a deterministic discrete-event network
//!   driven by a seed (latency, jitter, loss, partitions, crashed nodes).
//! - [`tcp`]: [`TcpTransport`], the real one: one connection per peer, each envelope
//!   framed with a length and a crc32.
//!
//! # Contract
//! `send` never blocks on the network: it queues and returns. Delivery is best effort and
//! unordered across peers (gossip tolerates loss; requests have their own timeouts).
//! `try_recv` returns the next delivered envelope, if any.

pub mod sim;
pub mod tcp;

use std::net::SocketAddr;

use crate::cluster::Envelope;

pub use sim::{SimConfig, SimNetwork, SimStats, SimTransport};
pub use tcp::TcpTransport;

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport was shut down.
    #[error("transport is shut down")]
    Closed,
    /// An I/O error while setting up the transport.
    #[error("transport i/o error on {addr}: {source}")]
    Io {
        /// Address involved.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Carries peer messages between nodes.
pub trait Transport {
    /// The address peers reach this node at.
    fn local_addr(&self) -> SocketAddr;
    /// Queues `envelope` for `to`. Best effort: it may be lost without an error.
    fn send(&self, to: SocketAddr, envelope: Envelope) -> Result<(), TransportError>;
    /// The next envelope delivered to this node, if any.
    fn try_recv(&self) -> Option<Envelope>;
}
