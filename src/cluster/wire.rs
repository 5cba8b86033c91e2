//! Constants of the peer message encoding, shared by the encoder and the decoder
//! ([`super::codec`]). The format is specified in `doc/peer-messages.md`.

/// Version byte that opens every encoded envelope.
pub const FORMAT_VERSION: u8 = 1;

/// Largest encoded envelope accepted (16 MiB): checked before decoding anything.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Longest string (cluster name, datacenter, rack) accepted, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;

/// Message kinds: the byte after the sender's address in an envelope (gossip's own
/// numbering; the peer frame around it says only that the family is gossip).
pub mod kind {
    /// [`crate::cluster::PeerMessage::GossipSyn`].
    pub const GOSSIP_SYN: u8 = 0x80;
    /// [`crate::cluster::PeerMessage::GossipAck`].
    pub const GOSSIP_ACK: u8 = 0x81;
    /// [`crate::cluster::PeerMessage::GossipAck2`].
    pub const GOSSIP_ACK2: u8 = 0x82;
    /// [`crate::cluster::PeerMessage::GossipReject`].
    pub const GOSSIP_REJECT: u8 = 0x83;
    /// [`crate::cluster::PeerMessage::GossipShutdown`].
    pub const GOSSIP_SHUTDOWN: u8 = 0x84;
    /// [`crate::cluster::PeerMessage::SchemaPull`].
    pub const SCHEMA_PULL: u8 = 0x85;
    /// [`crate::cluster::PeerMessage::SchemaPush`].
    pub const SCHEMA_PUSH: u8 = 0x86;
}

/// Application state keys (equal to [`crate::cluster::AppState::kind`]).
pub mod key {
    /// Status.
    pub const STATUS: u8 = 0;
    /// Tokens.
    pub const TOKENS: u8 = 1;
    /// Peer address.
    pub const PEER_ADDRESS: u8 = 2;
    /// Client address.
    pub const CLIENT_ADDRESS: u8 = 3;
    /// Datacenter.
    pub const DATACENTER: u8 = 4;
    /// Rack.
    pub const RACK: u8 = 5;
    /// Schema version.
    pub const SCHEMA_VERSION: u8 = 6;
    /// Load.
    pub const LOAD: u8 = 7;
    /// The node replaced.
    pub const REPLACING: u8 = 8;
    /// The tokens a moving node moves to.
    pub const MOVING_TO: u8 = 9;
}

/// Node status codes.
pub mod status {
    /// Joining.
    pub const JOINING: u8 = 1;
    /// Normal.
    pub const NORMAL: u8 = 2;
    /// Leaving.
    pub const LEAVING: u8 = 3;
    /// Left.
    pub const LEFT: u8 = 4;
    /// Removed.
    pub const REMOVED: u8 = 5;
    /// Moving.
    pub const MOVING: u8 = 6;
}

/// Partitioner codes.
pub mod partitioner {
    /// Murmur3.
    pub const MURMUR3: u8 = 1;
    /// MD5.
    pub const MD5: u8 = 2;
}

/// Token tags: a tag byte then 8 (murmur3, signed) or 16 (md5) big-endian bytes.
pub mod token {
    /// Murmur3 token.
    pub const MURMUR3: u8 = 1;
    /// MD5 token.
    pub const MD5: u8 = 2;
}

/// Socket address families: family byte, 4 or 16 address bytes, port (u16).
pub mod family {
    /// IPv4.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// Encoded size of a digest: node, generation, max version.
pub const DIGEST_BYTES: usize = 24;
/// Smallest encoded delta: node, generation, heartbeat flag, state count (u16).
pub const MIN_DELTA_BYTES: usize = 8 + 8 + 1 + 2;
/// Smallest encoded application state: version, key, one value byte.
pub const MIN_STATE_BYTES: usize = 8 + 1 + 1;
/// Smallest encoded token: tag + 8 bytes.
pub const MIN_TOKEN_BYTES: usize = 9;
