//! [`SavedPeers`]: the ring as this node last saw it — every other node that owned tokens,
//! with its address, location and tokens — in the file `peers` of the data directory
//! (spec: `doc/node-files.md`), so that a node restarting where it cannot reach anyone
//! yet still knows whose keys are whose (Cassandra's `system.peers`).
//!
//! Without it a restarted node's ring holds only itself until gossip reaches a peer: it
//! would take every key as its own and acknowledge a write at ONE that no other replica
//! ever hears of (no hint is kept for a replica it does not know). With it the peers are
//! known from the first moment, as down until their heartbeat is heard
//! ([`crate::cluster::Gossiper::remember`]), so writes to their ranges get hints or
//! `UNAVAILABLE`, as for any down replica.
//!
//! # Format (version 1)
//! ```text
//! file        = magic version partitioner count peer* crc
//! magic       = "SPRS"                     (4 bytes)
//! version     = 0x01
//! partitioner = u8 (0 murmur3, 1 md5)
//! count       = u16be
//! peer        = id status address datacenter rack tokens
//! id          = u64be
//! status      = u8 (1 normal, 2 leaving)
//! address     = 0x04 ipv4(4) port(u16be) | 0x06 ipv6(16) port(u16be)
//! datacenter  = len(u16be) utf-8
//! rack        = len(u16be) utf-8
//! tokens      = count(u16be) token*    (token as in `ring-state`)
//! crc         = CRC-32 (IEEE) of magic..last peer, u32be
//! ```
//!
//! Written atomically ([`sibyl_storage::atomic_file`]) by [`keep_saved`] whenever the
//! projection of the view it stores changes; decoding never panics and rejects trailing
//! bytes. A missing file is an empty list; a corrupt one is reported and ignored (the
//! node then learns the ring from gossip alone, as before the file existed).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ring_state::{arr, partitioner_code, partitioner_of, put_token, token_of, token_width};
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus};
use crate::replica::ReplicaExecution;
use crate::ring::{NodeId, NodeLocation, Partitioner, Token};
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

/// File name in the data directory.
pub const PEERS_FILE: &str = "peers";
const MAGIC: [u8; 4] = *b"SPRS";
const VERSION: u8 = 1;
const CRC_LEN: usize = 4;

/// One peer as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPeer {
    /// The node.
    pub id: NodeId,
    /// `normal` or `leaving` (only nodes owning tokens are saved).
    pub status: NodeStatus,
    /// Its peer port address.
    pub peer_address: SocketAddr,
    /// Its datacenter and rack.
    pub location: NodeLocation,
    /// Its tokens.
    pub tokens: Vec<Token>,
}

/// The saved ring: every other node that owned tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPeers {
    /// The partitioner the tokens belong to.
    pub partitioner: Partitioner,
    /// The peers, in node id order.
    pub peers: Vec<SavedPeer>,
}

/// Why the peers file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeersFileError {
    /// Reading or writing failed.
    #[error("peers file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("peers file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
}

impl SavedPeers {
    /// What `view` says of the other nodes owning tokens (at most `u16::MAX` of them,
    /// each with at most `u16::MAX` tokens of the view's partitioner).
    pub fn from_view(view: &ClusterView) -> SavedPeers {
        let peers = view
            .nodes
            .values()
            .filter(|n| n.id != view.local)
            .filter_map(|n| {
                let status = n.status.filter(NodeStatus::owns_tokens)?;
                let peer_address = n.peer_address?;
                let tokens: Vec<Token> = n
                    .tokens
                    .iter()
                    .filter(|t| view.partitioner.owns_token(t))
                    .take(usize::from(u16::MAX))
                    .copied()
                    .collect();
                (!tokens.is_empty()).then(|| SavedPeer {
                    id: n.id,
                    status,
                    peer_address,
                    location: n.location.clone(),
                    tokens,
                })
            })
            .take(usize::from(u16::MAX))
            .collect();
        SavedPeers {
            partitioner: view.partitioner,
            peers,
        }
    }

    /// Reads the file in `dir`; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<SavedPeers>, PeersFileError> {
        let path = dir.join(PEERS_FILE);
        let bytes = read_if_exists(dir, PEERS_FILE).map_err(|source| PeersFileError::Io {
            path: path.clone(),
            source,
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => SavedPeers::decode(&b)
                .map(Some)
                .map_err(|reason| PeersFileError::Corrupt { path, reason }),
        }
    }

    /// Writes the file in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), PeersFileError> {
        write_atomically(dir, PEERS_FILE, &self.encode()).map_err(|source| PeersFileError::Io {
            path: dir.join(PEERS_FILE),
            source,
        })
    }

    /// The file's bytes (strings longer than `u16::MAX` bytes are cut at a char
    /// boundary below it).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(partitioner_code(self.partitioner));
        let peers = &self.peers[..self.peers.len().min(usize::from(u16::MAX))];
        b.extend_from_slice(&(peers.len() as u16).to_be_bytes());
        for p in peers {
            b.extend_from_slice(&p.id.0.to_be_bytes());
            b.push(match p.status {
                NodeStatus::Leaving => 2,
                _ => 1,
            });
            match p.peer_address.ip() {
                IpAddr::V4(ip) => {
                    b.push(4);
                    b.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    b.push(6);
                    b.extend_from_slice(&ip.octets());
                }
            }
            b.extend_from_slice(&p.peer_address.port().to_be_bytes());
            put_str(&mut b, &p.location.datacenter);
            put_str(&mut b, &p.location.rack);
            let tokens: Vec<&Token> = p
                .tokens
                .iter()
                .filter(|t| self.partitioner.owns_token(t))
                .take(usize::from(u16::MAX))
                .collect();
            b.extend_from_slice(&(tokens.len() as u16).to_be_bytes());
            for t in tokens {
                put_token(&mut b, t);
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes [`SavedPeers::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<SavedPeers, &'static str> {
        if bytes.len() < 8 + CRC_LEN {
            return Err("too short");
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32fast::hash(body) != u32::from_be_bytes(arr(crc)?) {
            return Err("checksum mismatch");
        }
        let mut r = Reader(body);
        if r.take(4)? != MAGIC {
            return Err("bad magic");
        }
        if r.u8()? != VERSION {
            return Err("unknown version");
        }
        let partitioner = partitioner_of(r.u8()?)?;
        let count = r.u16()?;
        let mut peers = Vec::with_capacity(usize::from(count).min(1024));
        for _ in 0..count {
            let id = NodeId(u64::from_be_bytes(arr(r.take(8)?)?));
            let status = match r.u8()? {
                1 => NodeStatus::Normal,
                2 => NodeStatus::Leaving,
                _ => return Err("unknown status"),
            };
            let ip = match r.u8()? {
                4 => IpAddr::from(<[u8; 4]>::try_from(r.take(4)?).map_err(|_| "truncated")?),
                6 => IpAddr::from(<[u8; 16]>::try_from(r.take(16)?).map_err(|_| "truncated")?),
                _ => return Err("unknown address family"),
            };
            let peer_address = SocketAddr::new(ip, r.u16()?);
            let datacenter = r.str()?;
            let rack = r.str()?;
            let n = r.u16()?;
            let mut tokens = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                tokens.push(token_of(partitioner, r.take(token_width(partitioner))?)?);
            }
            peers.push(SavedPeer {
                id,
                status,
                peer_address,
                location: NodeLocation::new(datacenter, rack),
                tokens,
            });
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(SavedPeers { partitioner, peers })
    }
}

/// Keeps `dir`'s peers file equal to what `cluster`'s view says of the ring: checks every
/// `every` and writes when it changed (file I/O per `execution`), until `shutdown`.
/// Failures are logged and retried at the next check.
pub fn keep_saved(
    cluster: Arc<ClusterHandle>,
    dir: PathBuf,
    every: Duration,
    execution: ReplicaExecution,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut saved: Option<SavedPeers> = SavedPeers::load(&dir).unwrap_or(None);
        loop {
            if let Some(view) = cluster.view() {
                let now = SavedPeers::from_view(&view);
                // Never replace a saved ring with an empty one: a node that knows no peer
                // yet has nothing to add.
                if saved.as_ref() != Some(&now) && !now.peers.is_empty() {
                    let (d, s) = (dir.clone(), now.clone());
                    let written = match execution {
                        ReplicaExecution::Inline => s.save(&d).map_err(|e| e.to_string()),
                        ReplicaExecution::Blocking => {
                            match tokio::task::spawn_blocking(move || s.save(&d)).await {
                                Ok(r) => r.map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                    };
                    match written {
                        Ok(()) => saved = Some(now),
                        Err(error) => tracing::error!(%error, "saving the peers file"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(arr(self.take(2)?)?))
    }
    fn str(&mut self) -> Result<&'a str, &'static str> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| "name is not UTF-8")
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    b.extend_from_slice(&(end as u16).to_be_bytes());
    b.extend_from_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedPeers {
        SavedPeers {
            partitioner: Partitioner::Murmur3,
            peers: vec![
                SavedPeer {
                    id: NodeId(7),
                    status: NodeStatus::Normal,
                    peer_address: "127.0.0.2:7401".parse().unwrap(),
                    location: NodeLocation::new("dc1", "rack1"),
                    tokens: vec![Token::Murmur3(-5), Token::Murmur3(i64::MAX)],
                },
                SavedPeer {
                    id: NodeId(u64::MAX),
                    status: NodeStatus::Leaving,
                    peer_address: "[::1]:9".parse().unwrap(),
                    location: NodeLocation::new("europe-west", "é"),
                    tokens: vec![Token::Murmur3(0)],
                },
            ],
        }
    }

    #[test]
    fn peers_file_round_trips_and_rejects_damage() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(SavedPeers::decode(&bytes).unwrap(), s);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                SavedPeers::decode(&bad).is_err(),
                "flipped byte {i} accepted"
            );
        }
        for n in 0..bytes.len() {
            assert!(
                SavedPeers::decode(&bytes[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
    }

    #[test]
    fn remembered_peers_are_down_on_the_ring_until_gossip_replaces_them() {
        use crate::cluster::{GossipConfig, Gossiper, LocalNode};
        let me = LocalNode {
            id: NodeId(1),
            generation: 5,
            peer_address: "127.0.0.1:7401".parse().unwrap(),
            client_address: None,
            location: NodeLocation::default(),
            tokens: vec![Token::Murmur3(100)],
            status: NodeStatus::Normal,
            schema_version: 0,
            load: 0,
        };
        let mut g = Gossiper::new(GossipConfig::new("c", vec![]), me, 1, 0);
        let saved = sample();
        g.remember(&saved.peers);
        let view = g.view();
        for p in &saved.peers {
            let n = view.node(p.id).unwrap();
            assert!(!n.alive, "a remembered peer is down until heard from");
            assert_eq!(&n.tokens[..], &p.tokens[..]);
            assert_eq!(n.peer_address, Some(p.peer_address));
            assert_eq!(n.generation, 0, "any real generation replaces it");
        }
        assert_eq!(view.ring().nodes().len(), 3, "their tokens are on the ring");
        // What gossip already knows is not overwritten.
        let mut again = saved.peers.clone();
        again[0].tokens = vec![Token::Murmur3(1)];
        g.remember(&again);
        assert_eq!(
            &g.view().node(NodeId(7)).unwrap().tokens[..],
            &saved.peers[0].tokens[..]
        );
        assert_eq!(SavedPeers::from_view(&g.view()), saved);
    }

    #[test]
    fn peers_file_saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedPeers::load(dir.path()).unwrap(), None);
        sample().save(dir.path()).unwrap();
        assert_eq!(SavedPeers::load(dir.path()).unwrap(), Some(sample()));
        std::fs::write(dir.path().join(PEERS_FILE), b"SPRS junk").unwrap();
        assert!(matches!(
            SavedPeers::load(dir.path()),
            Err(PeersFileError::Corrupt { .. })
        ));
    }
}
