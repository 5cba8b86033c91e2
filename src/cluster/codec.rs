//! Binary encoding of [`Envelope`]s (spec: `doc/peer-messages.md`; constants: [`super::wire`]).
//!
//! Decoding never panics on bad input: the whole message is size-checked first, every read
//! checks the remaining length, and every count is checked against the bytes left (times
//! the smallest encoding of one item) before anything is allocated. Trailing bytes are an
//! error. All integers are big-endian. Pure functions.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use sibyl_coding::ByteReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::endpoint::{AppState, EndpointDelta, GossipDigest, Heartbeat, NodeStatus, Versioned};
use super::messages::{Envelope, GossipAck, GossipAck2, GossipReject, GossipSyn, PeerMessage};
use super::wire::{self, family, key, kind, partitioner, status, token};
use crate::ring::{NodeId, Partitioner, Token};

/// Why bytes are not a valid peer message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated: needed {needed} bytes at offset {offset}, {remaining} left")]
    Truncated {
        /// Offset of the read.
        offset: usize,
        /// Bytes the read needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// The message exceeds [`wire::MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A count promises more items than the bytes left can hold.
    #[error("count {count} of {what} cannot fit in {remaining} remaining bytes")]
    BadCount {
        /// What was counted.
        what: &'static str,
        /// The count read.
        count: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Unknown format version.
    #[error("unsupported peer message format version {version}")]
    BadVersion {
        /// The version byte read.
        version: u8,
    },
    /// A tag byte outside its set.
    #[error("invalid {what} tag {tag:#04x}")]
    BadTag {
        /// Which tag.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
    /// A string that is too long or not UTF-8.
    #[error("invalid string: {reason}")]
    BadString {
        /// Why.
        reason: &'static str,
    },
    /// An md5 token above `2^127`.
    #[error("md5 token out of range")]
    TokenOutOfRange,
    /// Bytes after the end of the message.
    #[error("{count} trailing bytes")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Encodes an envelope.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(env));
    out.push(wire::FORMAT_VERSION);
    out.extend_from_slice(&env.from.0.to_be_bytes());
    put_addr(&mut out, &env.from_addr);
    match &env.message {
        PeerMessage::GossipSyn(syn) => {
            out.push(kind::GOSSIP_SYN);
            put_str(&mut out, &syn.cluster_name);
            out.push(partitioner_code(syn.partitioner));
            put_u32(&mut out, syn.digests.len());
            for d in &syn.digests {
                put_digest(&mut out, d);
            }
        }
        PeerMessage::GossipAck(ack) => {
            out.push(kind::GOSSIP_ACK);
            put_deltas(&mut out, &ack.deltas);
            put_u32(&mut out, ack.requests.len());
            for d in &ack.requests {
                put_digest(&mut out, d);
            }
        }
        PeerMessage::GossipAck2(ack2) => {
            out.push(kind::GOSSIP_ACK2);
            put_deltas(&mut out, &ack2.deltas);
        }
        PeerMessage::GossipReject(r) => {
            out.push(kind::GOSSIP_REJECT);
            put_str(&mut out, &r.cluster_name);
            out.push(partitioner_code(r.partitioner));
        }
        PeerMessage::GossipShutdown => out.push(kind::GOSSIP_SHUTDOWN),
        PeerMessage::SchemaPull { version } => {
            out.push(kind::SCHEMA_PULL);
            out.extend_from_slice(&version.to_be_bytes());
        }
        PeerMessage::SchemaPush { version, schema } => {
            out.push(kind::SCHEMA_PUSH);
            out.extend_from_slice(&version.to_be_bytes());
            put_u32(&mut out, schema.len());
            out.extend_from_slice(schema);
        }
    }
    out
}

/// Length of [`encode`]'s output, computed without encoding (used for traffic accounting).
pub fn encoded_len(env: &Envelope) -> usize {
    let head = 1 + 8 + addr_len(&env.from_addr) + 1;
    head + match &env.message {
        PeerMessage::GossipSyn(syn) => {
            2 + syn.cluster_name.len() + 1 + 4 + wire::DIGEST_BYTES * syn.digests.len()
        }
        PeerMessage::GossipAck(ack) => {
            deltas_len(&ack.deltas) + 4 + wire::DIGEST_BYTES * ack.requests.len()
        }
        PeerMessage::GossipAck2(ack2) => deltas_len(&ack2.deltas),
        PeerMessage::GossipReject(r) => 2 + r.cluster_name.len() + 1,
        PeerMessage::GossipShutdown => 0,
        PeerMessage::SchemaPull { .. } => 8,
        PeerMessage::SchemaPush { schema, .. } => 8 + 4 + schema.len(),
    }
}

/// Decodes an envelope.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > wire::MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: wire::MAX_MESSAGE_BYTES,
        });
    }
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != wire::FORMAT_VERSION {
        return Err(DecodeError::BadVersion { version });
    }
    let from = NodeId(r.u64()?);
    let from_addr = r.addr()?;
    let message = match r.u8()? {
        kind::GOSSIP_SYN => {
            let cluster_name = r.string()?;
            let partitioner = r.partitioner()?;
            let n = r.count("digests", wire::DIGEST_BYTES)?;
            let mut digests = Vec::with_capacity(n);
            for _ in 0..n {
                digests.push(r.digest()?);
            }
            PeerMessage::GossipSyn(GossipSyn {
                cluster_name,
                partitioner,
                digests,
            })
        }
        kind::GOSSIP_ACK => {
            let deltas = r.deltas()?;
            let n = r.count("requests", wire::DIGEST_BYTES)?;
            let mut requests = Vec::with_capacity(n);
            for _ in 0..n {
                requests.push(r.digest()?);
            }
            PeerMessage::GossipAck(GossipAck { deltas, requests })
        }
        kind::GOSSIP_ACK2 => PeerMessage::GossipAck2(GossipAck2 {
            deltas: r.deltas()?,
        }),
        kind::GOSSIP_REJECT => PeerMessage::GossipReject(GossipReject {
            cluster_name: r.string()?,
            partitioner: r.partitioner()?,
        }),
        kind::GOSSIP_SHUTDOWN => PeerMessage::GossipShutdown,
        kind::SCHEMA_PULL => PeerMessage::SchemaPull { version: r.u64()? },
        kind::SCHEMA_PUSH => {
            let version = r.u64()?;
            let n = r.count("schema bytes", 1)?;
            PeerMessage::SchemaPush {
                version,
                schema: Arc::from(r.take(n)?),
            }
        }
        tag => {
            return Err(DecodeError::BadTag {
                what: "message kind",
                tag,
            })
        }
    };
    let left = r.remaining();
    if left != 0 {
        return Err(DecodeError::TrailingBytes { count: left });
    }
    Ok(Envelope {
        from,
        from_addr,
        message,
    })
}

fn partitioner_code(p: Partitioner) -> u8 {
    match p {
        Partitioner::Murmur3 => partitioner::MURMUR3,
        Partitioner::Md5 => partitioner::MD5,
    }
}

fn status_code(s: NodeStatus) -> u8 {
    match s {
        NodeStatus::Joining => status::JOINING,
        NodeStatus::Normal => status::NORMAL,
        NodeStatus::Leaving => status::LEAVING,
        NodeStatus::Left => status::LEFT,
        NodeStatus::Removed => status::REMOVED,
        NodeStatus::Moving => status::MOVING,
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

/// Strings longer than the cap are cut at a char boundary (the encoder never emits what
/// the decoder would refuse).
fn capped(s: &str) -> &str {
    if s.len() <= wire::MAX_STRING_BYTES {
        return s;
    }
    let mut end = wire::MAX_STRING_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = capped(s);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn addr_len(a: &SocketAddr) -> usize {
    match a {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(family::V4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(family::V6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn put_digest(out: &mut Vec<u8>, d: &GossipDigest) {
    out.extend_from_slice(&d.node.0.to_be_bytes());
    out.extend_from_slice(&d.generation.to_be_bytes());
    out.extend_from_slice(&d.max_version.to_be_bytes());
}

fn put_token(out: &mut Vec<u8>, t: &Token) {
    match t {
        Token::Murmur3(v) => {
            out.push(token::MURMUR3);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Token::Md5(v) => {
            out.push(token::MD5);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn token_len(t: &Token) -> usize {
    match t {
        Token::Murmur3(_) => 9,
        Token::Md5(_) => 17,
    }
}

fn put_deltas(out: &mut Vec<u8>, deltas: &[EndpointDelta]) {
    put_u32(out, deltas.len());
    for d in deltas {
        out.extend_from_slice(&d.node.0.to_be_bytes());
        out.extend_from_slice(&d.generation.to_be_bytes());
        match d.heartbeat {
            Some(hb) => {
                out.push(1);
                out.extend_from_slice(&hb.value.to_be_bytes());
                out.extend_from_slice(&hb.version.to_be_bytes());
            }
            None => out.push(0),
        }
        let states = d.states.get(..u16::MAX as usize).unwrap_or(&d.states);
        out.extend_from_slice(&(states.len() as u16).to_be_bytes());
        for s in states {
            out.extend_from_slice(&s.version.to_be_bytes());
            put_state(out, &s.value);
        }
    }
}

fn put_state(out: &mut Vec<u8>, s: &AppState) {
    match s {
        AppState::Status(st) => {
            out.push(key::STATUS);
            out.push(status_code(*st));
        }
        AppState::Tokens(ts) => {
            out.push(key::TOKENS);
            put_tokens(out, ts);
        }
        AppState::MovingTo(ts) => {
            out.push(key::MOVING_TO);
            put_tokens(out, ts);
        }
        AppState::PeerAddress(a) => {
            out.push(key::PEER_ADDRESS);
            put_addr(out, a);
        }
        AppState::ClientAddress(a) => {
            out.push(key::CLIENT_ADDRESS);
            put_addr(out, a);
        }
        AppState::Datacenter(d) => {
            out.push(key::DATACENTER);
            put_str(out, d);
        }
        AppState::Rack(r) => {
            out.push(key::RACK);
            put_str(out, r);
        }
        AppState::SchemaVersion(v) => {
            out.push(key::SCHEMA_VERSION);
            out.extend_from_slice(&v.to_be_bytes());
        }
        AppState::Load(v) => {
            out.push(key::LOAD);
            out.extend_from_slice(&v.to_be_bytes());
        }
        AppState::Replacing(n) => {
            out.push(key::REPLACING);
            out.extend_from_slice(&n.0.to_be_bytes());
        }
    }
}

fn put_tokens(out: &mut Vec<u8>, ts: &[Token]) {
    let ts = ts.get(..u16::MAX as usize).unwrap_or(ts);
    out.extend_from_slice(&(ts.len() as u16).to_be_bytes());
    for t in ts {
        put_token(out, t);
    }
}

fn state_len(s: &AppState) -> usize {
    1 + match s {
        AppState::Status(_) => 1,
        AppState::Tokens(ts) | AppState::MovingTo(ts) => {
            2 + ts
                .iter()
                .take(u16::MAX as usize)
                .map(token_len)
                .sum::<usize>()
        }
        AppState::PeerAddress(a) | AppState::ClientAddress(a) => addr_len(a),
        AppState::Datacenter(s) | AppState::Rack(s) => 2 + capped(s).len(),
        AppState::SchemaVersion(_) | AppState::Load(_) | AppState::Replacing(_) => 8,
    }
}

fn deltas_len(deltas: &[EndpointDelta]) -> usize {
    4 + deltas
        .iter()
        .map(|d| {
            wire::MIN_DELTA_BYTES
                + if d.heartbeat.is_some() { 16 } else { 0 }
                + d.states
                    .iter()
                    .take(u16::MAX as usize)
                    .map(|s| 8 + state_len(&s.value))
                    .sum::<usize>()
        })
        .sum::<usize>()
}

/// The gossip decoder's cursor: the workspace's panic-free [`ByteReader`] with this
/// codec's errors and field readers on top.
struct Reader<'a> {
    r: ByteReader<'a>,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            r: ByteReader::new(buf),
        }
    }

    fn remaining(&self) -> usize {
        self.r.remaining()
    }

    fn truncated(&self, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            offset: self.r.position(),
            needed,
            remaining: self.r.remaining(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let err = self.truncated(n);
        self.r.take(n).ok_or(err)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let err = self.truncated(N);
        self.r.array().ok_or(err)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let err = self.truncated(1);
        self.r.u8().ok_or(err)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads a u32 count and checks `count * min_item` bytes remain.
    fn count(&mut self, what: &'static str, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        self.check_count(what, n, min_item)
    }

    fn check_count(
        &self,
        what: &'static str,
        n: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(DecodeError::BadCount {
                what,
                count: n,
                remaining: self.remaining(),
            });
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<Arc<str>, DecodeError> {
        let n = self.u16()? as usize;
        if n > wire::MAX_STRING_BYTES {
            return Err(DecodeError::BadString { reason: "too long" });
        }
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| DecodeError::BadString {
                reason: "not utf-8",
            })
    }

    fn partitioner(&mut self) -> Result<Partitioner, DecodeError> {
        match self.u8()? {
            partitioner::MURMUR3 => Ok(Partitioner::Murmur3),
            partitioner::MD5 => Ok(Partitioner::Md5),
            tag => Err(DecodeError::BadTag {
                what: "partitioner",
                tag,
            }),
        }
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            family::V4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            family::V6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "address family",
                    tag,
                })
            }
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    fn digest(&mut self) -> Result<GossipDigest, DecodeError> {
        Ok(GossipDigest {
            node: NodeId(self.u64()?),
            generation: self.u64()?,
            max_version: self.u64()?,
        })
    }

    fn token(&mut self) -> Result<Token, DecodeError> {
        match self.u8()? {
            token::MURMUR3 => Ok(Token::Murmur3(i64::from_be_bytes(self.array()?))),
            token::MD5 => {
                let v = u128::from_be_bytes(self.array()?);
                if v > 1u128 << 127 {
                    return Err(DecodeError::TokenOutOfRange);
                }
                Ok(Token::Md5(v))
            }
            tag => Err(DecodeError::BadTag { what: "token", tag }),
        }
    }

    fn status(&mut self) -> Result<NodeStatus, DecodeError> {
        match self.u8()? {
            status::JOINING => Ok(NodeStatus::Joining),
            status::NORMAL => Ok(NodeStatus::Normal),
            status::LEAVING => Ok(NodeStatus::Leaving),
            status::LEFT => Ok(NodeStatus::Left),
            status::REMOVED => Ok(NodeStatus::Removed),
            status::MOVING => Ok(NodeStatus::Moving),
            tag => Err(DecodeError::BadTag {
                what: "status",
                tag,
            }),
        }
    }

    fn tokens(&mut self) -> Result<Arc<[Token]>, DecodeError> {
        let n = self.u16()? as usize;
        let n = self.check_count("tokens", n, wire::MIN_TOKEN_BYTES)?;
        let mut ts = Vec::with_capacity(n);
        for _ in 0..n {
            ts.push(self.token()?);
        }
        Ok(Arc::from(ts))
    }

    fn state(&mut self) -> Result<AppState, DecodeError> {
        Ok(match self.u8()? {
            key::STATUS => AppState::Status(self.status()?),
            key::TOKENS => AppState::Tokens(self.tokens()?),
            key::MOVING_TO => AppState::MovingTo(self.tokens()?),
            key::PEER_ADDRESS => AppState::PeerAddress(self.addr()?),
            key::CLIENT_ADDRESS => AppState::ClientAddress(self.addr()?),
            key::DATACENTER => AppState::Datacenter(self.string()?),
            key::RACK => AppState::Rack(self.string()?),
            key::SCHEMA_VERSION => AppState::SchemaVersion(self.u64()?),
            key::LOAD => AppState::Load(self.u64()?),
            key::REPLACING => AppState::Replacing(NodeId(self.u64()?)),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "application state key",
                    tag,
                })
            }
        })
    }

    fn deltas(&mut self) -> Result<Vec<EndpointDelta>, DecodeError> {
        let n = self.count("deltas", wire::MIN_DELTA_BYTES)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let node = NodeId(self.u64()?);
            let generation = self.u64()?;
            let heartbeat = match self.u8()? {
                0 => None,
                1 => Some(Heartbeat {
                    value: self.u64()?,
                    version: self.u64()?,
                }),
                tag => {
                    return Err(DecodeError::BadTag {
                        what: "heartbeat flag",
                        tag,
                    })
                }
            };
            let k = self.u16()? as usize;
            let k = self.check_count("states", k, wire::MIN_STATE_BYTES)?;
            let mut states = Vec::with_capacity(k);
            for _ in 0..k {
                let version = self.u64()?;
                states.push(Versioned {
                    value: self.state()?,
                    version,
                });
            }
            out.push(EndpointDelta {
                node,
                generation,
                heartbeat,
                states,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
