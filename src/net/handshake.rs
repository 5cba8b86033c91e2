//! The handshake that opens every peer connection (spec: `doc/peer-messages.md`,
//! "Handshake"). The connecting side sends a [`Hello`]; the accepting side answers a
//! [`Welcome`] that accepts or refuses it. A node of another cluster or of another
//! peer-protocol version is refused with a reason that both sides log.
//!
//! ```text
//! hello   := magic:"SBYP" version:u8 lane:u8 node:u64 listen:addr cluster:str
//! welcome := magic:"SBYP" version:u8 status:u8 node:u64 cluster:str reason:str
//! addr    := 0x04 ip:4 port:u16 | 0x06 ip:16 port:u16
//! str     := len:u16 (<= 1024) utf8[len]
//! status  := 0 accepted | 1 other cluster | 2 other version | 3 malformed
//! ```
//!
//! The version is read right after the magic: a hello of another version is refused
//! before the rest (whose layout that version may change) is read.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ring::NodeId;

/// Opens every hello and welcome.
pub const MAGIC: [u8; 4] = *b"SBYP";
/// The peer protocol version this build speaks.
pub const PEER_PROTOCOL_VERSION: u8 = 1;
/// Longest cluster name or reason, in bytes.
pub const MAX_HANDSHAKE_STRING: usize = 1024;

/// Which lane of a peer a connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Small messages: gossip, replica reads and writes, hints.
    Small,
    /// Large transfers (streaming, repair), kept off the small lane so they never delay it.
    Bulk,
}

impl Lane {
    /// Its byte.
    pub fn code(self) -> u8 {
        match self {
            Lane::Small => 0,
            Lane::Bulk => 1,
        }
    }

    fn from_code(code: u8) -> Option<Lane> {
        match code {
            0 => Some(Lane::Small),
            1 => Some(Lane::Bulk),
            _ => None,
        }
    }
}

/// The connecting node introduces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Its peer protocol version.
    pub version: u8,
    /// The lane this connection serves.
    pub lane: Lane,
    /// Its node id.
    pub node: NodeId,
    /// Where it listens for peers (how the acceptor names it).
    pub listen: SocketAddr,
    /// Its cluster name.
    pub cluster: String,
}

/// The accepting node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Its peer protocol version.
    pub version: u8,
    /// Accepted or why not.
    pub status: HandshakeStatus,
    /// Its node id.
    pub node: NodeId,
    /// Its cluster name.
    pub cluster: String,
    /// Why it refused (empty when accepted).
    pub reason: String,
}

/// The outcome of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// Accepted.
    Accepted,
    /// The hello named another cluster.
    OtherCluster,
    /// The hello spoke another version.
    OtherVersion,
    /// The hello did not parse.
    Malformed,
}

impl HandshakeStatus {
    /// Its byte.
    pub fn code(self) -> u8 {
        match self {
            HandshakeStatus::Accepted => 0,
            HandshakeStatus::OtherCluster => 1,
            HandshakeStatus::OtherVersion => 2,
            HandshakeStatus::Malformed => 3,
        }
    }

    fn from_code(code: u8) -> Option<HandshakeStatus> {
        Some(match code {
            0 => HandshakeStatus::Accepted,
            1 => HandshakeStatus::OtherCluster,
            2 => HandshakeStatus::OtherVersion,
            3 => HandshakeStatus::Malformed,
            _ => return None,
        })
    }
}

/// Why a handshake could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The connection failed or ended.
    #[error("handshake i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Not a Sibyl peer (bad magic).
    #[error("not a sibyl peer: bad magic {got:02x?}")]
    BadMagic {
        /// The bytes read.
        got: [u8; 4],
    },
    /// Another version (the rest was not read).
    #[error("peer speaks protocol version {got}, this node {ours}")]
    OtherVersion {
        /// Its version.
        got: u8,
        /// Ours.
        ours: u8,
    },
    /// A field out of its range.
    #[error("malformed handshake: {what}")]
    Malformed {
        /// Which field.
        what: &'static str,
    },
}

impl Hello {
    /// Encodes the hello.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(self.lane.code());
        out.extend_from_slice(&self.node.0.to_be_bytes());
        put_addr(&mut out, &self.listen);
        put_str(&mut out, &self.cluster);
        out
    }

    /// Reads a hello. Stops after the version when it is not `ours`.
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R, ours: u8) -> Result<Hello, HandshakeError> {
        let version = read_magic_version(r).await?;
        if version != ours {
            return Err(HandshakeError::OtherVersion { got: version, ours });
        }
        let lane = Lane::from_code(r.read_u8().await?)
            .ok_or(HandshakeError::Malformed { what: "lane" })?;
        let node = NodeId(r.read_u64().await?);
        let listen = read_addr(r).await?;
        let cluster = read_str(r).await?;
        Ok(Hello {
            version,
            lane,
            node,
            listen,
            cluster,
        })
    }
}

impl Welcome {
    /// Encodes the welcome.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(self.status.code());
        out.extend_from_slice(&self.node.0.to_be_bytes());
        put_str(&mut out, &self.cluster);
        put_str(&mut out, &self.reason);
        out
    }

    /// Reads a welcome (of any version: a refusal names the acceptor's version).
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Welcome, HandshakeError> {
        let version = read_magic_version(r).await?;
        let status = HandshakeStatus::from_code(r.read_u8().await?)
            .ok_or(HandshakeError::Malformed { what: "status" })?;
        let node = NodeId(r.read_u64().await?);
        let cluster = read_str(r).await?;
        let reason = read_str(r).await?;
        Ok(Welcome {
            version,
            status,
            node,
            cluster,
            reason,
        })
    }
}

/// Writes `bytes` and flushes.
pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn read_magic_version<R: AsyncRead + Unpin>(r: &mut R) -> Result<u8, HandshakeError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).await?;
    if magic != MAGIC {
        return Err(HandshakeError::BadMagic { got: magic });
    }
    Ok(r.read_u8().await?)
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut cut = s.len().min(MAX_HANDSHAKE_STRING);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let s = s.get(..cut).unwrap_or_default();
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

async fn read_addr<R: AsyncRead + Unpin>(r: &mut R) -> Result<SocketAddr, HandshakeError> {
    let ip = match r.read_u8().await? {
        4 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).await?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        6 => {
            let mut b = [0u8; 16];
            r.read_exact(&mut b).await?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => {
            return Err(HandshakeError::Malformed {
                what: "address family",
            })
        }
    };
    Ok(SocketAddr::new(ip, r.read_u16().await?))
}

async fn read_str<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, HandshakeError> {
    let len = r.read_u16().await? as usize;
    if len > MAX_HANDSHAKE_STRING {
        return Err(HandshakeError::Malformed {
            what: "string length",
        });
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).await?;
    String::from_utf8(b).map_err(|_| HandshakeError::Malformed { what: "utf-8" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handshake_hello_and_welcome_round_trip() {
        let hello = Hello {
            version: PEER_PROTOCOL_VERSION,
            lane: Lane::Bulk,
            node: NodeId(9),
            listen: "[::1]:7401".parse().unwrap(),
            cluster: "prod".into(),
        };
        let bytes = hello.encode();
        assert_eq!(
            Hello::read(&mut &bytes[..], PEER_PROTOCOL_VERSION)
                .await
                .unwrap(),
            hello
        );
        let w = Welcome {
            version: 1,
            status: HandshakeStatus::OtherCluster,
            node: NodeId(2),
            cluster: "dev".into(),
            reason: "no".into(),
        };
        assert_eq!(Welcome::read(&mut &w.encode()[..]).await.unwrap(), w);
    }

    #[tokio::test]
    async fn handshake_every_truncation_is_an_error() {
        let hello = Hello {
            version: PEER_PROTOCOL_VERSION,
            lane: Lane::Small,
            node: NodeId(1),
            listen: "127.0.0.1:1".parse().unwrap(),
            cluster: "c".into(),
        };
        let bytes = hello.encode();
        for n in 0..bytes.len() {
            assert!(Hello::read(&mut &bytes[..n], PEER_PROTOCOL_VERSION)
                .await
                .is_err());
        }
    }
}
