//! [`GossipNetwork`]: the pure discrete-event network behind [`super::GossipSimulation`]
//! (no threads, no clock, no async): it carries gossip [`Envelope`]s as values, so a
//! thousand gossipers simulate in milliseconds. Whole nodes (gossip, replicas, the
//! coordinator) run instead over [`crate::net::GossipNetwork`], behind the real
//! [`crate::net::PeerNetwork`] interface.
//!
//! Every send draws its fate from one seeded RNG: dropped with probability `loss`, else
//! delivered after `latency_ms + uniform(0..=jitter_ms)`. Deliveries wait in a priority
//! queue ordered by (time, send sequence), so a run is a pure function of the seed and
//! the calls made. Partitions split addresses into groups (messages cross no group
//! boundary, checked at send and at delivery); a crashed address sends and receives
//! nothing and loses its inbox. Traffic is counted in encoded bytes
//! ([`crate::cluster::encoded_len`]); with `encode_messages` every envelope is also
//! encoded and decoded on the way, so simulations exercise the codec.
//!
//! Threading: single-threaded (`Rc<RefCell<_>>` shared by the network and its endpoints);
//! the driver advances time with [`GossipNetwork::deliver_until`].

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{codec, Envelope};

/// Network behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Fixed one-way latency, ms.
    pub latency_ms: u64,
    /// Extra uniform random delay `0..=jitter_ms`, ms.
    pub jitter_ms: u64,
    /// Probability a message is lost.
    pub loss: f64,
    /// Encode and decode every envelope in flight (exercises the codec; slower).
    pub encode_messages: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency_ms: 2,
            jitter_ms: 3,
            loss: 0.0,
            encode_messages: false,
        }
    }
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Encoded bytes handed to the network.
    pub bytes_sent: u64,
    /// Messages delivered to an inbox.
    pub delivered: u64,
    /// Messages lost to `loss`.
    pub lost: u64,
    /// Messages dropped by a partition.
    pub partitioned: u64,
    /// Messages dropped because an end was crashed.
    pub crashed: u64,
    /// Envelopes the codec refused (only with `encode_messages`; must stay 0).
    pub decode_errors: u64,
}

#[derive(Debug)]
struct Delivery {
    at_ms: u64,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    envelope: Envelope,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    /// Reversed: the earliest delivery is the greatest (top of the max-heap).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

#[derive(Debug)]
struct SimState {
    config: SimConfig,
    now_ms: u64,
    rng: StdRng,
    seq: u64,
    queue: BinaryHeap<Delivery>,
    inboxes: HashMap<SocketAddr, VecDeque<Envelope>>,
    groups: HashMap<SocketAddr, u32>,
    crashed: HashSet<SocketAddr>,
    stats: SimStats,
}

impl SimState {
    fn connected(&self, a: &SocketAddr, b: &SocketAddr) -> bool {
        match (self.groups.get(a), self.groups.get(b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, envelope: Envelope) {
        self.stats.sent += 1;
        self.stats.bytes_sent += codec::encoded_len(&envelope) as u64;
        if self.crashed.contains(&from) || self.crashed.contains(&to) {
            self.stats.crashed += 1;
            return;
        }
        if !self.connected(&from, &to) {
            self.stats.partitioned += 1;
            return;
        }
        if self.config.loss > 0.0 && self.rng.gen::<f64>() < self.config.loss {
            self.stats.lost += 1;
            return;
        }
        let jitter = if self.config.jitter_ms > 0 {
            self.rng.gen_range(0..=self.config.jitter_ms)
        } else {
            0
        };
        let envelope = if self.config.encode_messages {
            match codec::decode(&codec::encode(&envelope)) {
                Ok(e) => e,
                Err(_) => {
                    self.stats.decode_errors += 1;
                    return;
                }
            }
        } else {
            envelope
        };
        self.seq += 1;
        self.queue.push(Delivery {
            at_ms: self.now_ms + self.config.latency_ms + jitter,
            seq: self.seq,
            from,
            to,
            envelope,
        });
    }
}

/// The simulated network. Cloning gives another handle to the same network.
#[derive(Debug, Clone)]
pub struct GossipNetwork {
    state: Rc<RefCell<SimState>>,
}

impl GossipNetwork {
    /// A network with `config`, all randomness from `seed`.
    pub fn new(config: SimConfig, seed: u64) -> GossipNetwork {
        GossipNetwork {
            state: Rc::new(RefCell::new(SimState {
                config,
                now_ms: 0,
                rng: StdRng::seed_from_u64(seed),
                seq: 0,
                queue: BinaryHeap::new(),
                inboxes: HashMap::new(),
                groups: HashMap::new(),
                crashed: HashSet::new(),
                stats: SimStats::default(),
            })),
        }
    }

    /// The endpoint of `addr`.
    pub fn endpoint(&self, addr: SocketAddr) -> GossipEndpoint {
        self.state.borrow_mut().inboxes.entry(addr).or_default();
        GossipEndpoint {
            addr,
            net: self.clone(),
        }
    }

    /// Current simulated time, ms.
    pub fn now_ms(&self) -> u64 {
        self.state.borrow().now_ms
    }

    /// Time of the next pending delivery.
    pub fn next_delivery_ms(&self) -> Option<u64> {
        self.state.borrow().queue.peek().map(|d| d.at_ms)
    }

    /// Advances time to `t_ms` (never backwards), moving every delivery due by then into
    /// its inbox. Returns the addresses that received mail, in delivery order, deduplicated.
    pub fn deliver_until(&mut self, t_ms: u64) -> Vec<SocketAddr> {
        let mut s = self.state.borrow_mut();
        let mut touched = Vec::new();
        while s.queue.peek().is_some_and(|d| d.at_ms <= t_ms) {
            let Some(d) = s.queue.pop() else { break };
            if s.crashed.contains(&d.to) || s.crashed.contains(&d.from) {
                s.stats.crashed += 1;
                continue;
            }
            if !s.connected(&d.from, &d.to) {
                s.stats.partitioned += 1;
                continue;
            }
            s.stats.delivered += 1;
            s.inboxes.entry(d.to).or_default().push_back(d.envelope);
            if !touched.contains(&d.to) {
                touched.push(d.to);
            }
        }
        s.now_ms = s.now_ms.max(t_ms);
        touched
    }

    /// Splits the network: addresses in different groups cannot reach each other;
    /// addresses in no group reach everyone.
    pub fn partition(&mut self, groups: &[Vec<SocketAddr>]) {
        let mut s = self.state.borrow_mut();
        s.groups.clear();
        for (i, g) in groups.iter().enumerate() {
            for a in g {
                s.groups.insert(*a, i as u32);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.state.borrow_mut().groups.clear();
    }

    /// Crashes `addr`: its inbox is lost and it neither sends nor receives.
    pub fn crash(&mut self, addr: SocketAddr) {
        let mut s = self.state.borrow_mut();
        s.crashed.insert(addr);
        if let Some(inbox) = s.inboxes.get_mut(&addr) {
            inbox.clear();
        }
    }

    /// Brings a crashed address back (a restarted process).
    pub fn restart(&mut self, addr: SocketAddr) {
        self.state.borrow_mut().crashed.remove(&addr);
    }

    /// True when `addr` is crashed.
    pub fn is_crashed(&self, addr: SocketAddr) -> bool {
        self.state.borrow().crashed.contains(&addr)
    }

    /// Changes latency, jitter and loss from now on.
    pub fn set_config(&mut self, config: SimConfig) {
        self.state.borrow_mut().config = config;
    }

    /// The current configuration.
    pub fn config(&self) -> SimConfig {
        self.state.borrow().config
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }
}

/// One node's endpoint on a [`GossipNetwork`].
#[derive(Debug, Clone)]
pub struct GossipEndpoint {
    addr: SocketAddr,
    net: GossipNetwork,
}

impl GossipEndpoint {
    /// This endpoint's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `envelope` for `to` (its fate is drawn now: lost, partitioned or delayed).
    pub fn send(&self, to: SocketAddr, envelope: Envelope) {
        self.net.state.borrow_mut().send(self.addr, to, envelope);
    }

    /// The next envelope delivered to this endpoint, if any.
    pub fn try_recv(&self) -> Option<Envelope> {
        self.net
            .state
            .borrow_mut()
            .inboxes
            .get_mut(&self.addr)
            .and_then(VecDeque::pop_front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PeerMessage;
    use crate::ring::NodeId;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7401))
    }

    fn env(from: u8, version: u64) -> Envelope {
        Envelope {
            from: NodeId(u64::from(from)),
            from_addr: addr(from),
            message: PeerMessage::SchemaPull { version },
        }
    }

    #[test]
    fn gossip_network_delivers_after_latency() {
        let config = SimConfig {
            latency_ms: 10,
            jitter_ms: 0,
            ..SimConfig::default()
        };
        let mut net = GossipNetwork::new(config, 1);
        let a = net.endpoint(addr(1));
        let b = net.endpoint(addr(2));
        a.send(addr(2), env(1, 5));
        assert!(net.deliver_until(9).is_empty());
        assert!(b.try_recv().is_none());
        assert_eq!(net.deliver_until(10), vec![addr(2)]);
        assert_eq!(b.try_recv(), Some(env(1, 5)));
    }

    #[test]
    fn gossip_network_partition_drops_cross_group_messages() {
        let mut net = GossipNetwork::new(SimConfig::default(), 1);
        let a = net.endpoint(addr(1));
        let b = net.endpoint(addr(2));
        net.partition(&[vec![addr(1)], vec![addr(2)]]);
        a.send(addr(2), env(1, 1));
        net.deliver_until(100);
        assert!(b.try_recv().is_none());
        assert_eq!(net.stats().partitioned, 1);
        net.heal();
        a.send(addr(2), env(1, 2));
        net.deliver_until(200);
        assert_eq!(b.try_recv(), Some(env(1, 2)));
    }

    #[test]
    fn gossip_network_crashed_node_receives_nothing() {
        let mut net = GossipNetwork::new(SimConfig::default(), 1);
        let a = net.endpoint(addr(1));
        let b = net.endpoint(addr(2));
        a.send(addr(2), env(1, 1));
        net.crash(addr(2));
        net.deliver_until(100);
        assert!(b.try_recv().is_none());
        assert_eq!(net.stats().crashed, 1);
    }

    #[test]
    fn gossip_network_same_seed_same_schedule() {
        let run = |seed| {
            let config = SimConfig {
                latency_ms: 1,
                jitter_ms: 50,
                loss: 0.3,
                encode_messages: true,
            };
            let mut net = GossipNetwork::new(config, seed);
            let a = net.endpoint(addr(1));
            let b = net.endpoint(addr(2));
            for v in 0..50 {
                a.send(addr(2), env(1, v));
            }
            net.deliver_until(1000);
            let mut got = Vec::new();
            while let Some(e) = b.try_recv() {
                got.push(e);
            }
            got
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
