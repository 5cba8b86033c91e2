//! [`GossipSimulation`]: many [`Gossiper`]s over one [`GossipNetwork`], driven in simulated
//! time. Deterministic for a given seed: node start phases, peer choices and network
//! fates all come from seeded RNGs, and maps iterate in a fixed order.
//!
//! The driver repeatedly advances to the earliest of (next gossip round of a running node,
//! next network delivery), hands delivered envelopes to their node through its
//! endpoint, and sends what the gossiper returns back through it: the
//! gossipers run exactly as they would over TCP.
//!
//! It also models the node's schema layer, so schema propagation can be tested: each node
//! holds a set of table names whose version is a hash of the set; on
//! [`GossipEvent::SchemaMismatch`] it sends `SchemaPull`, answers pulls with `SchemaPush`,
//! and merges pushed schemas by union (then announces the new version).
//!
//! Threading: single-threaded.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use super::gossip_types::{GossipConfig, GossipEvent, LocalNode, Outgoing};
use super::gossiper::Gossiper;
use super::messages::{Envelope, PeerMessage};
use super::sim_network::{GossipEndpoint, GossipNetwork, SimConfig};
use crate::ring::NodeId;

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its gossiper.
    pub gossiper: Gossiper,
    /// Its network endpoint.
    pub transport: GossipEndpoint,
    /// True while crashed (no rounds, no messages).
    pub crashed: bool,
    /// Events raised, with the simulated time they were raised (when recording is on).
    pub events: Vec<(u64, GossipEvent)>,
    /// Tables this node knows (the schema model).
    pub tables: BTreeSet<String>,
}

impl SimNode {
    /// Schema version of the table set: FNV-1a over the sorted names (0 for none).
    pub fn schema_version(&self) -> u64 {
        schema_hash(&self.tables)
    }
}

fn schema_hash(tables: &BTreeSet<String>) -> u64 {
    if tables.is_empty() {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tables {
        for b in t.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Deterministic address of simulated node `i`: `10.x.y.z:7401`.
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from((
        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        crate::cluster::simulation::SIM_PEER_PORT,
    ))
}

/// Peer port used by simulated nodes.
pub const SIM_PEER_PORT: u16 = 7401;

/// Gossipers over a simulated network.
#[derive(Debug)]
pub struct GossipSimulation {
    net: GossipNetwork,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    rounds: BinaryHeap<Reverse<(u64, usize)>>,
    record_events: bool,
    check_interval_ms: u64,
}

/// Default time between liveness checks of a simulated node, ms.
pub const SIM_CHECK_INTERVAL_MS: u64 = 200;

impl GossipSimulation {
    /// An empty simulation over a network with `config`, randomness from `seed`.
    pub fn new(config: SimConfig, seed: u64) -> GossipSimulation {
        GossipSimulation {
            net: GossipNetwork::new(config, seed),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            rounds: BinaryHeap::new(),
            record_events: true,
            check_interval_ms: SIM_CHECK_INTERVAL_MS,
        }
    }

    /// Turns event recording on or off (off keeps big simulations small).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Sets how often nodes check liveness between gossip rounds (a round interval or
    /// more means once per round).
    pub fn set_check_interval(&mut self, ms: u64) {
        self.check_interval_ms = ms.max(1);
    }

    /// Adds a node whose first round is at `start_ms`; returns its index.
    pub fn add_node(&mut self, config: GossipConfig, local: LocalNode, start_ms: u64) -> usize {
        let i = self.nodes.len();
        let addr = local.peer_address;
        let seed = local.id.0 ^ local.generation.rotate_left(17);
        let gossiper = Gossiper::new(config, local, seed, start_ms);
        self.nodes.push(SimNode {
            transport: self.net.endpoint(addr),
            gossiper,
            crashed: false,
            events: Vec::new(),
            tables: BTreeSet::new(),
        });
        self.by_addr.insert(addr, i);
        self.rounds.push(Reverse((start_ms, i)));
        i
    }

    /// Current simulated time, ms.
    pub fn now_ms(&self) -> u64 {
        self.net.now_ms()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> Option<&SimNode> {
        self.nodes.get(i)
    }

    /// Node `i`, mutably (to change its state between steps).
    pub fn node_mut(&mut self, i: usize) -> Option<&mut SimNode> {
        self.nodes.get_mut(i)
    }

    /// The network (for partitions, loss, jitter, statistics).
    pub fn network(&mut self) -> &mut GossipNetwork {
        &mut self.net
    }

    /// Index of the node at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Index of the node with id `id` (linear; for tests).
    pub fn index_of_id(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.gossiper.id() == id)
    }

    /// Crashes node `i` (kill -9: no goodbye).
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.crashed = true;
            let addr = n.gossiper.address();
            self.net.crash(addr);
        }
    }

    /// Restarts node `i` as a fresh process at the same address with `local` (give it a
    /// higher generation).
    pub fn restart(&mut self, i: usize, config: GossipConfig, local: LocalNode) {
        let now = self.now_ms();
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        let seed = local.id.0 ^ local.generation.rotate_left(17);
        self.net.restart(local.peer_address);
        n.gossiper = Gossiper::new(config, local, seed, now);
        n.crashed = false;
        self.rounds.push(Reverse((now, i)));
    }

    /// Creates a table on node `i` (the schema model) and announces the new version.
    pub fn create_table(&mut self, i: usize, name: &str) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.tables.insert(name.to_string());
            let v = n.schema_version();
            n.gossiper.set_schema_version(v);
        }
        self.collect_events(i);
    }

    /// Runs until simulated time `t_ms`.
    pub fn run_until(&mut self, t_ms: u64) {
        loop {
            let next_round = self.rounds.peek().map(|Reverse((t, _))| *t);
            let next_delivery = self.net.next_delivery_ms();
            let next = match (next_round, next_delivery) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            if next > t_ms {
                break;
            }
            for addr in self.net.deliver_until(next) {
                if let Some(i) = self.index_of(addr) {
                    self.drain_inbox(i, next);
                }
            }
            while self.rounds.peek().is_some_and(|Reverse((t, _))| *t <= next) {
                let Some(Reverse((_, i))) = self.rounds.pop() else {
                    break;
                };
                self.round(i, next);
            }
        }
        self.net.deliver_until(t_ms);
        let addrs: Vec<SocketAddr> = self.by_addr.keys().copied().collect();
        for addr in addrs {
            if let Some(i) = self.index_of(addr) {
                self.drain_inbox(i, t_ms);
            }
        }
    }

    /// Runs in steps of `step_ms` until `done` holds or `deadline_ms` passes; returns the
    /// time `done` first held at a step boundary.
    pub fn run_until_condition(
        &mut self,
        step_ms: u64,
        deadline_ms: u64,
        mut done: impl FnMut(&GossipSimulation) -> bool,
    ) -> Option<u64> {
        loop {
            if done(self) {
                return Some(self.now_ms());
            }
            let now = self.now_ms();
            if now >= deadline_ms {
                return None;
            }
            self.run_until((now + step_ms).min(deadline_ms));
        }
    }

    fn round(&mut self, i: usize, now: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.crashed {
            return;
        }
        let out = n.gossiper.tick(now);
        let next = n.gossiper.next_round_ms().min(now + self.check_interval_ms);
        self.send_all(i, out);
        self.collect_events(i);
        self.rounds.push(Reverse((next, i)));
    }

    fn drain_inbox(&mut self, i: usize, now: u64) {
        loop {
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            if n.crashed {
                return;
            }
            let Some(env) = n.transport.try_recv() else {
                return;
            };
            let out = if env.message.is_gossip() {
                n.gossiper.on_message(env, now)
            } else {
                self.on_schema_message(i, env)
            };
            self.send_all(i, out);
            self.collect_events(i);
        }
    }

    fn on_schema_message(&mut self, i: usize, env: Envelope) -> Vec<Outgoing> {
        let Some(n) = self.nodes.get_mut(i) else {
            return Vec::new();
        };
        match env.message {
            PeerMessage::SchemaPull { .. } => {
                let text: Vec<&str> = n.tables.iter().map(String::as_str).collect();
                let bytes: Arc<[u8]> = Arc::from(text.join("\n").into_bytes());
                vec![Outgoing {
                    to: env.from_addr,
                    envelope: Envelope {
                        from: n.gossiper.id(),
                        from_addr: n.gossiper.address(),
                        message: PeerMessage::SchemaPush {
                            version: n.schema_version(),
                            schema: bytes,
                        },
                    },
                }]
            }
            PeerMessage::SchemaPush { schema, .. } => {
                let before = n.schema_version();
                if let Ok(text) = std::str::from_utf8(&schema) {
                    for t in text.split('\n').filter(|t| !t.is_empty()) {
                        n.tables.insert(t.to_string());
                    }
                }
                let after = n.schema_version();
                if after != before {
                    n.gossiper.set_schema_version(after);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn send_all(&mut self, i: usize, out: Vec<Outgoing>) {
        let Some(n) = self.nodes.get(i) else {
            return;
        };
        for o in out {
            n.transport.send(o.to, o.envelope);
        }
    }

    fn collect_events(&mut self, i: usize) {
        let now = self.now_ms();
        let record = self.record_events;
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        let events = n.gossiper.drain_events();
        let mut pulls = Vec::new();
        for e in events {
            if let GossipEvent::SchemaMismatch { address, .. } = &e {
                pulls.push(Outgoing {
                    to: *address,
                    envelope: Envelope {
                        from: n.gossiper.id(),
                        from_addr: n.gossiper.address(),
                        message: PeerMessage::SchemaPull {
                            version: n.schema_version(),
                        },
                    },
                });
            }
            if record {
                n.events.push((now, e));
            }
        }
        self.send_all(i, pulls);
    }
}

/// Builds the simulation config used by tests: default network, given loss/jitter.
pub fn sim_config(latency_ms: u64, jitter_ms: u64, loss: f64) -> SimConfig {
    SimConfig {
        latency_ms,
        jitter_ms,
        loss,
        encode_messages: false,
    }
}
