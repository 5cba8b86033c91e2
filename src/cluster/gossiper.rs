//! [`Gossiper`]: the membership state machine (Cassandra's Gossiper, scuttlebutt style).
//!
//! Once per interval ([`Gossiper::tick`]) the node bumps its heartbeat, convicts peers whose
//! phi passed the threshold, and sends a `GossipSyn` (digests of every endpoint it knows)
//! to a random live peer (drawn from a shuffled cycle over the live peers); with probability `unreachable / (live + 1)` also to a random
//! unreachable peer; and to a random seed when it knows fewer live peers than seeds, when
//! the live peer it picked was not a seed with probability `seeds / (live + unreachable)`.
//! Replies ([`Gossiper::on_message`]) complete the syn/ack/ack2 exchange; after one
//! exchange both sides hold the newer version of every entry either had.
//!
//! Liveness: a peer is up once its heartbeat is seen to advance (a state learnt second
//! hand about a dead node never makes it up), and down when the failure detector convicts
//! it or it announces a clean shutdown. A higher generation replaces a node's state
//! (restart). Departed nodes (`left`, `removed`) are kept but never gossiped to.
//!
//! Invariants: only the local node writes its own state (plus `removenode`, which writes a
//! dead node's state under a higher generation); versions of the local state come from one
//! counter and only grow. If a peer holds a higher generation of the local node (a bogus
//! `removenode`), the local node takes a generation above it and republishes everything.
//!
//! Threading: a plain state machine; the caller serialises calls and supplies time in ms.
//! No clock, no socket, no thread: the same code runs over TCP and in the simulator.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tracing::{info, warn};

use super::endpoint::{
    AppState, EndpointDelta, EndpointState, GossipDigest, Heartbeat, NodeStatus,
};
use super::failure_detector::{ArrivalWindow, FailureDetectorConfig};
use super::gossip_types::{
    GossipConfig, GossipError, GossipEvent, LocalNode, Outgoing, SCHEMA_RECHECK_ROUNDS,
};
use super::messages::{Envelope, GossipAck, GossipAck2, GossipReject, GossipSyn, PeerMessage};
use super::view::ClusterView;
use super::wire::key;
use crate::ring::{NodeId, Token};

/// Phi above which a live peer is contacted directly in the next round (about the 99th
/// percentile of its silences).
const SUSPECT_PHI: f64 = 1.0;

/// What the gossiper keeps per known node: its state, liveness and heartbeat arrivals
/// (the failure detector's window, kept inline so one lookup serves a delta).
#[derive(Debug, Clone)]
struct Peer {
    state: EndpointState,
    alive: bool,
    window: Option<ArrivalWindow>,
}

impl Peer {
    fn new(state: EndpointState) -> Peer {
        Peer {
            state,
            alive: false,
            window: None,
        }
    }

    fn report(&mut self, now_ms: u64, config: &FailureDetectorConfig) {
        match &mut self.window {
            Some(w) => w.report(now_ms, config),
            None => self.window = Some(ArrivalWindow::new(now_ms, config)),
        }
    }
}

/// The gossip state machine of one node.
#[derive(Debug)]
pub struct Gossiper {
    me: NodeId,
    address: SocketAddr,
    config: GossipConfig,
    /// Every known node, the local one included, in node id order (digests go out sorted,
    /// so a syn is compared with the local map by one merge, without hashing).
    peers: BTreeMap<NodeId, Peer>,
    live: Vec<NodeId>,
    cycle: Vec<NodeId>,
    version: u64,
    rng: StdRng,
    next_round_ms: u64,
    rounds: u64,
    events: Vec<GossipEvent>,
}

impl Gossiper {
    /// A gossiper for `local`, first round at `now_ms`. `rng_seed` drives peer choice.
    pub fn new(config: GossipConfig, local: LocalNode, rng_seed: u64, now_ms: u64) -> Gossiper {
        let mut g = Gossiper {
            me: local.id,
            address: local.peer_address,
            config,
            peers: BTreeMap::new(),
            live: Vec::new(),
            cycle: Vec::new(),
            version: 0,
            rng: StdRng::seed_from_u64(rng_seed),
            next_round_ms: now_ms,
            rounds: 0,
            events: Vec::new(),
        };
        let mut state = EndpointState::new(local.generation);
        let mut states = vec![
            AppState::Status(local.status),
            AppState::Tokens(Arc::from(local.tokens)),
            AppState::PeerAddress(local.peer_address),
            AppState::Datacenter(local.location.datacenter.clone()),
            AppState::Rack(local.location.rack.clone()),
            AppState::SchemaVersion(local.schema_version),
            AppState::Load(local.load),
        ];
        if let Some(c) = local.client_address {
            states.push(AppState::ClientAddress(c));
        }
        for s in states {
            g.version += 1;
            state.set(s, g.version);
        }
        g.version += 1;
        state.set_heartbeat(Heartbeat {
            value: 0,
            version: g.version,
        });
        let mut me = Peer::new(state);
        me.alive = true;
        g.peers.insert(g.me, me);
        g
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// This node's peer address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The configuration.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Time of the next round, ms.
    pub fn next_round_ms(&self) -> u64 {
        self.next_round_ms
    }

    /// The state known for `node` (the local node included).
    pub fn endpoint(&self, node: NodeId) -> Option<&EndpointState> {
        self.peers.get(&node).map(|p| &p.state)
    }

    /// Number of endpoints known, the local node included.
    pub fn known_count(&self) -> usize {
        self.peers.len()
    }

    /// Iterates over known endpoints in node id order.
    pub fn endpoints(&self) -> impl Iterator<Item = (NodeId, &EndpointState)> {
        self.peers.iter().map(|(n, p)| (*n, &p.state))
    }

    /// True when `node` is the local node or a peer currently up.
    pub fn is_alive(&self, node: NodeId) -> bool {
        node == self.me || self.peers.get(&node).is_some_and(|p| p.alive)
    }

    /// Peers currently up.
    pub fn live_peers(&self) -> &[NodeId] {
        &self.live
    }

    /// The failure detector's suspicion of `node` at `now_ms` (0 when not tracked).
    pub fn phi(&self, node: NodeId, now_ms: u64) -> f64 {
        self.arrival_window(node)
            .map_or(0.0, |w| w.phi(now_ms, &self.config.failure_detector))
    }

    /// The heartbeat arrival statistics of `node`.
    pub fn arrival_window(&self, node: NodeId) -> Option<&ArrivalWindow> {
        self.peers.get(&node).and_then(|p| p.window.as_ref())
    }

    /// Takes the events raised since the last call.
    pub fn drain_events(&mut self) -> Vec<GossipEvent> {
        std::mem::take(&mut self.events)
    }

    /// A snapshot of membership (who is up, states, tokens, locations, load).
    pub fn view(&self) -> ClusterView {
        self.view_reusing(None)
    }

    /// What the view is a function of: per node its generation, the highest version of
    /// its application states and its liveness. Equal keys give equal views (versions
    /// only grow within a generation), so a caller skips rebuilding the view while the
    /// key stays the same (heartbeats alone do not change it).
    pub fn view_key(&self) -> Vec<(NodeId, u64, u64, bool)> {
        self.peers
            .iter()
            .map(|(n, p)| {
                (
                    *n,
                    p.state.generation,
                    p.state.states_version(),
                    *n == self.me || p.alive,
                )
            })
            .collect()
    }

    /// [`Gossiper::view`], reusing `previous`'s ring when nothing it depends on changed
    /// ([`ClusterView::new_reusing`]).
    pub fn view_reusing(&self, previous: Option<&ClusterView>) -> ClusterView {
        ClusterView::from_endpoints_reusing(
            self.me,
            self.config.partitioner,
            self.peers
                .iter()
                .map(|(n, p)| (*n, &p.state, *n == self.me || p.alive)),
            previous,
        )
    }

    fn local_mut(&mut self) -> Option<&mut EndpointState> {
        self.peers.get_mut(&self.me).map(|p| &mut p.state)
    }

    fn publish(&mut self, state: AppState) {
        self.version += 1;
        let v = self.version;
        if let Some(local) = self.local_mut() {
            local.set(state, v);
        }
    }

    /// Announces a new status.
    pub fn set_status(&mut self, status: NodeStatus) {
        info!(node = %self.me, status = status.name(), "local status changed");
        self.publish(AppState::Status(status));
    }

    /// Announces tokens.
    pub fn set_tokens(&mut self, tokens: Vec<Token>) {
        self.publish(AppState::Tokens(Arc::from(tokens)));
    }

    /// Joins the ring: announces `tokens` with status `normal` in one round (a restart,
    /// or the first node of a cluster: nothing to stream).
    pub fn join_ring(&mut self, tokens: Vec<Token>) {
        info!(
            node = %self.me,
            tokens = tokens.len(),
            "joining the ring: owning my token ranges at once"
        );
        self.set_tokens(tokens);
        self.publish(AppState::Status(NodeStatus::Normal));
    }

    /// Announces `tokens` with status `leaving` in one round (a restart mid-decommission:
    /// the node resumes handing its ranges off).
    pub fn announce_leaving(&mut self, tokens: Vec<Token>) {
        info!(
            node = %self.me,
            tokens = tokens.len(),
            "restarting mid-decommission: leaving, resuming the hand-off of my ranges"
        );
        self.set_tokens(tokens);
        self.publish(AppState::Status(NodeStatus::Leaving));
    }

    /// Announces `tokens` as pending (status `joining`): peers send this node the writes
    /// of the ranges it gains while it streams them; it announces `normal` when done.
    pub fn announce_joining(&mut self, tokens: Vec<Token>) {
        info!(
            node = %self.me,
            tokens = tokens.len(),
            "tokens announced as pending: streaming the ranges I gain before owning them"
        );
        self.set_tokens(tokens);
        self.publish(AppState::Status(NodeStatus::Joining));
    }

    /// Announces `tokens`, the tokens of the dead node `replaced`, as pending in its place
    /// (status `joining`, with [`AppState::Replacing`]): peers send this node the writes
    /// of the replaced node's ranges while it streams them; once it announces `normal`,
    /// the replaced node owns nothing.
    pub fn announce_replacing(&mut self, tokens: Vec<Token>, replaced: NodeId) {
        info!(
            node = %self.me,
            %replaced,
            tokens = tokens.len(),
            "replacing node {replaced}: its tokens announced as pending; streaming its ranges \
             before owning them"
        );
        self.publish(AppState::Replacing(replaced));
        self.set_tokens(tokens);
        self.publish(AppState::Status(NodeStatus::Joining));
    }

    /// Announces a move of the local node to `tokens` (status `moving`, with
    /// [`AppState::MovingTo`]): it keeps its tokens in the ring, and the future ring has
    /// it at `tokens` while it streams; it announces them with [`Gossiper::join_ring`]
    /// when done, or `normal` alone to cancel.
    pub fn announce_moving(&mut self, tokens: Vec<Token>) {
        info!(
            node = %self.me,
            tokens = tokens.len(),
            "moving to new tokens: streaming the ranges they gain and those they lose"
        );
        self.publish(AppState::MovingTo(Arc::from(tokens)));
        self.publish(AppState::Status(NodeStatus::Moving));
    }

    /// Announces a new schema version (after a local schema change or a merge).
    pub fn set_schema_version(&mut self, version: u64) {
        self.publish(AppState::SchemaVersion(version));
        self.check_schema_all();
    }

    /// Announces the local load in bytes.
    pub fn set_load(&mut self, bytes: u64) {
        self.publish(AppState::Load(bytes));
    }

    /// Adds nodes known from an earlier run (the saved ring, [`crate::identity::peers`])
    /// that gossip has not told of yet: down, under generation 0, so the first state
    /// gossip brings of each (any real generation) replaces it. Until then the ring
    /// holds their tokens and requests for their ranges treat them as down replicas
    /// (hints, `UNAVAILABLE`) instead of this node taking their keys as its own. Like
    /// `removenode`, this writes states of nodes other than the local one.
    pub fn remember(&mut self, peers: &[crate::identity::peers::SavedPeer]) {
        for p in peers {
            if p.id == self.me || self.peers.contains_key(&p.id) {
                continue;
            }
            let mut state = EndpointState::new(0);
            let states = [
                AppState::Status(p.status),
                AppState::Tokens(Arc::from(p.tokens.clone())),
                AppState::PeerAddress(p.peer_address),
                AppState::Datacenter(p.location.datacenter.clone()),
                AppState::Rack(p.location.rack.clone()),
            ];
            let mut v = 0;
            for s in states {
                v += 1;
                state.set(s, v);
            }
            state.set_heartbeat(Heartbeat {
                value: 0,
                version: v + 1,
            });
            self.peers.insert(p.id, Peer::new(state));
        }
    }

    /// `removenode`: publishes a dead node's departure on its behalf, under a higher
    /// generation, so its ranges move to the remaining nodes.
    pub fn remove_node(&mut self, node: NodeId) -> Result<(), GossipError> {
        if node == self.me {
            return Err(GossipError::RemoveSelf);
        }
        if self.is_alive(node) {
            return Err(GossipError::NodeAlive { node });
        }
        let old = &self
            .peers
            .get(&node)
            .ok_or(GossipError::UnknownNode { node })?
            .state;
        let mut fresh = EndpointState::new(old.generation + 1);
        let mut v = 0;
        for s in old.states() {
            v += 1;
            fresh.set(s.value.clone(), v);
        }
        fresh.set(AppState::Status(NodeStatus::Removed), v + 1);
        fresh.set_heartbeat(Heartbeat {
            value: 0,
            version: v + 2,
        });
        warn!(node = %node, "removenode: announcing the node as removed");
        self.peers.insert(node, Peer::new(fresh));
        self.events.push(GossipEvent::TopologyChanged { node });
        Ok(())
    }

    /// Messages announcing a clean shutdown to every live peer.
    pub fn shutdown(&mut self) -> Vec<Outgoing> {
        let peers: Vec<NodeId> = self.live.clone();
        peers
            .into_iter()
            .filter_map(|p| self.address_of(p))
            .map(|to| self.outgoing(to, PeerMessage::GossipShutdown))
            .collect()
    }

    fn outgoing(&self, to: SocketAddr, message: PeerMessage) -> Outgoing {
        Outgoing {
            to,
            envelope: Envelope {
                from: self.me,
                from_addr: self.address,
                message,
            },
        }
    }

    fn address_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.peers.get(&node).and_then(|p| p.state.peer_address())
    }

    /// Checks liveness (convicting peers whose phi passed the threshold) and runs the
    /// gossip round if one is due at `now_ms`; returns the messages to send. Call it at
    /// least once per interval; calling it more often (e.g. every 100-250 ms) only makes
    /// convictions more timely.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let late = self.status_check(now_ms);
        if now_ms < self.next_round_ms {
            return out;
        }
        self.next_round_ms = now_ms + self.config.interval_ms;
        self.rounds += 1;
        self.version += 1;
        let v = self.version;
        if let Some(local) = self.local_mut() {
            let value = local.heartbeat().value + 1;
            local.set_heartbeat(Heartbeat { value, version: v });
        }
        if self.rounds.is_multiple_of(SCHEMA_RECHECK_ROUNDS) {
            self.recheck_schema();
        }

        let mut targets: Vec<SocketAddr> = Vec::with_capacity(3);
        let seeds: Vec<SocketAddr> = self
            .config
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != self.address)
            .collect();
        let mut gossiped_to_seed = false;
        if let Some(peer) = self.next_live_target() {
            if let Some(addr) = self.address_of(peer) {
                gossiped_to_seed = seeds.contains(&addr);
                targets.push(addr);
            }
        }
        // A late peer (phi above SUSPECT_PHI) gets a direct syn: if it is alive its ack
        // carries a fresh heartbeat at once, so a merely unlucky peer (no news reached us
        // for a while) is not left to drift towards conviction.
        if let Some(addr) = late.and_then(|n| self.address_of(n)) {
            targets.push(addr);
        }
        let unreachable = if self.peers.len() > self.live.len() + 1 {
            self.unreachable()
        } else {
            Vec::new()
        };
        if !unreachable.is_empty() {
            let p = unreachable.len() as f64 / (self.live.len() as f64 + 1.0);
            if self.rng.gen::<f64>() < p {
                let peer = unreachable[self.rng.gen_range(0..unreachable.len())];
                if let Some(addr) = self.address_of(peer) {
                    targets.push(addr);
                }
            }
        }
        if !seeds.is_empty() && (!gossiped_to_seed || self.live.len() < seeds.len()) {
            let known = self.live.len() + unreachable.len();
            let go = self.live.len() < seeds.len()
                || self.rng.gen::<f64>() < seeds.len() as f64 / known.max(1) as f64;
            if go {
                targets.push(seeds[self.rng.gen_range(0..seeds.len())]);
            }
        }
        targets.sort();
        targets.dedup();
        let syn = PeerMessage::GossipSyn(GossipSyn {
            cluster_name: self.config.cluster_name.clone(),
            partitioner: self.config.partitioner,
            digests: self.digests(),
        });
        if let Some((last, rest)) = targets.split_last() {
            for to in rest {
                out.push(self.outgoing(*to, syn.clone()));
            }
            out.push(self.outgoing(*last, syn));
        }
        out
    }

    /// The next live peer to gossip with: live peers are visited in a random order, a
    /// fresh shuffle each cycle (SWIM's randomised round-robin). Each round's target is
    /// random, yet every live peer is reached once per cycle, which bounds how long news
    /// waits between two nodes and so the silences the failure detectors see.
    fn next_live_target(&mut self) -> Option<NodeId> {
        while let Some(peer) = self.cycle.pop() {
            if self.is_alive(peer) {
                return Some(peer);
            }
        }
        if self.live.is_empty() {
            return None;
        }
        let mut cycle = self.live.clone();
        cycle.shuffle(&mut self.rng);
        self.cycle = cycle;
        self.cycle.pop()
    }

    fn digests(&self) -> Vec<GossipDigest> {
        self.peers.iter().map(|(n, p)| p.state.digest(*n)).collect()
    }

    /// Known peers that are down and not departed.
    fn unreachable(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(n, p)| {
                **n != self.me && !p.alive && !p.state.status().is_some_and(|st| st.is_departed())
            })
            .map(|(n, _)| *n)
            .collect()
    }

    /// Convicts live peers whose phi passed the threshold; returns the most suspected
    /// peer still up whose phi is above [`SUSPECT_PHI`].
    fn status_check(&mut self, now_ms: u64) -> Option<NodeId> {
        let config = self.config.failure_detector;
        let threshold = config.phi_threshold;
        let mut convicted = Vec::new();
        let mut late: Option<(NodeId, f64)> = None;
        for n in &self.live {
            let phi = self
                .peers
                .get(n)
                .and_then(|p| p.window.as_ref())
                .map_or(0.0, |w| w.phi(now_ms, &config));
            if phi > threshold {
                convicted.push((*n, phi));
            } else if phi > SUSPECT_PHI && late.is_none_or(|(_, p)| phi > p) {
                late = Some((*n, phi));
            }
        }
        for (node, phi) in convicted {
            self.mark_down(node, phi);
        }
        late.map(|(n, _)| n)
    }

    fn mark_down(&mut self, node: NodeId, phi: f64) {
        let was = self
            .peers
            .get_mut(&node)
            .map(|p| std::mem::replace(&mut p.alive, false));
        if was == Some(true) {
            self.live.retain(|n| *n != node);
            info!(node = %node, phi, "peer is down");
            self.events.push(GossipEvent::Down { node, phi });
        }
    }

    fn mark_up(&mut self, node: NodeId) {
        let was = self
            .peers
            .get_mut(&node)
            .map(|p| std::mem::replace(&mut p.alive, true));
        if was == Some(false) {
            self.live.push(node);
            info!(node = %node, "peer is up");
            self.events.push(GossipEvent::Up { node });
            self.check_schema(node);
        }
    }

    fn local_schema(&self) -> Option<u64> {
        self.peers
            .get(&self.me)
            .and_then(|p| p.state.schema_version())
    }

    fn check_schema(&mut self, node: NodeId) {
        if node == self.me || !self.is_alive(node) {
            return;
        }
        let Some(state) = self.peers.get(&node).map(|p| &p.state) else {
            return;
        };
        if let (Some(theirs), Some(addr)) = (state.schema_version(), state.peer_address()) {
            if Some(theirs) != self.local_schema() {
                self.events.push(GossipEvent::SchemaMismatch {
                    node,
                    address: addr,
                    version: theirs,
                });
            }
        }
    }

    fn check_schema_all(&mut self) {
        let live = self.live.clone();
        for n in live {
            self.check_schema(n);
        }
    }

    /// Re-announces one unresolved mismatch (a pull may have been lost).
    fn recheck_schema(&mut self) {
        let mine = self.local_schema();
        let mismatched: Vec<NodeId> = self
            .live
            .iter()
            .copied()
            .filter(|n| {
                self.peers
                    .get(n)
                    .and_then(|p| p.state.schema_version())
                    .is_some_and(|v| Some(v) != mine)
            })
            .collect();
        if !mismatched.is_empty() {
            let n = mismatched[self.rng.gen_range(0..mismatched.len())];
            self.check_schema(n);
        }
    }

    /// Handles a gossip message; returns the replies. Non-gossip messages are ignored
    /// (they belong to other components).
    pub fn on_message(&mut self, env: Envelope, now_ms: u64) -> Vec<Outgoing> {
        match env.message {
            PeerMessage::GossipSyn(syn) => self.on_syn(env.from_addr, syn, now_ms),
            PeerMessage::GossipAck(ack) => self.on_ack(env.from_addr, ack, now_ms),
            PeerMessage::GossipAck2(ack2) => {
                self.apply_deltas(&ack2.deltas, now_ms);
                Vec::new()
            }
            PeerMessage::GossipReject(r) => {
                warn!(
                    by = %env.from_addr,
                    their_cluster = %r.cluster_name,
                    their_partitioner = %r.partitioner,
                    "peer refused us: cluster name or partitioner differ; cannot join"
                );
                self.events.push(GossipEvent::Rejected {
                    by: env.from_addr,
                    cluster_name: r.cluster_name,
                    partitioner: r.partitioner,
                });
                Vec::new()
            }
            PeerMessage::GossipShutdown => {
                if env.from != self.me {
                    info!(node = %env.from, "peer announced shutdown");
                    self.mark_down(env.from, 0.0);
                }
                Vec::new()
            }
            PeerMessage::SchemaPull { .. } | PeerMessage::SchemaPush { .. } => Vec::new(),
        }
    }

    fn on_syn(&mut self, from: SocketAddr, syn: GossipSyn, _now_ms: u64) -> Vec<Outgoing> {
        if syn.cluster_name != self.config.cluster_name
            || syn.partitioner != self.config.partitioner
        {
            warn!(
                from = %from,
                their_cluster = %syn.cluster_name,
                their_partitioner = %syn.partitioner,
                "refusing gossip from another cluster or partitioner"
            );
            let reject = PeerMessage::GossipReject(GossipReject {
                cluster_name: self.config.cluster_name.clone(),
                partitioner: self.config.partitioner,
            });
            return vec![self.outgoing(from, reject)];
        }
        let mut ack = GossipAck::default();
        let mut digests = syn.digests;
        if !digests.windows(2).all(|w| w[0].node < w[1].node) {
            digests.sort_by_key(|d| d.node);
            digests.dedup_by_key(|d| d.node);
        }
        // Merge the sorted digests with the sorted local map.
        let mut local = self.peers.iter().peekable();
        let mut theirs = digests.iter().peekable();
        loop {
            let order = match (local.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((n, _)), Some(d)) => (*n).cmp(&d.node),
            };
            match order {
                Ordering::Less => {
                    // The sender does not know this node: send all of it.
                    if let Some((n, p)) = local.next() {
                        ack.deltas.push(p.state.delta_after(*n, 0));
                    }
                }
                Ordering::Greater => {
                    if let Some(d) = theirs.next() {
                        ack.requests.push(GossipDigest {
                            max_version: 0,
                            ..*d
                        });
                    }
                }
                Ordering::Equal => {
                    let (Some((n, p)), Some(d)) = (local.next(), theirs.next()) else {
                        break;
                    };
                    let state = &p.state;
                    if state.generation < d.generation {
                        ack.requests.push(GossipDigest {
                            max_version: 0,
                            ..*d
                        });
                    } else if state.generation > d.generation {
                        ack.deltas.push(state.delta_after(*n, 0));
                    } else {
                        let mine = state.max_version();
                        if mine > d.max_version {
                            ack.deltas.push(state.delta_after(*n, d.max_version));
                        } else if mine < d.max_version {
                            ack.requests.push(GossipDigest {
                                max_version: mine,
                                ..*d
                            });
                        }
                    }
                }
            }
        }
        vec![self.outgoing(from, PeerMessage::GossipAck(ack))]
    }

    fn on_ack(&mut self, from: SocketAddr, ack: GossipAck, now_ms: u64) -> Vec<Outgoing> {
        self.apply_deltas(&ack.deltas, now_ms);
        let deltas: Vec<EndpointDelta> = ack
            .requests
            .iter()
            .filter_map(|r| {
                let s = &self.peers.get(&r.node)?.state;
                if s.generation > r.generation {
                    Some(s.delta_after(r.node, 0))
                } else if s.generation == r.generation && s.max_version() > r.max_version {
                    Some(s.delta_after(r.node, r.max_version))
                } else {
                    None
                }
            })
            .collect();
        if deltas.is_empty() {
            return Vec::new();
        }
        vec![self.outgoing(from, PeerMessage::GossipAck2(GossipAck2 { deltas }))]
    }

    fn apply_deltas(&mut self, deltas: &[EndpointDelta], now_ms: u64) {
        for d in deltas {
            self.apply_delta(d, now_ms);
        }
    }

    fn apply_delta(&mut self, d: &EndpointDelta, now_ms: u64) {
        if d.node == self.me {
            self.defend_generation(d.generation);
            return;
        }
        let topology_kinds = [
            key::STATUS,
            key::TOKENS,
            key::PEER_ADDRESS,
            key::DATACENTER,
            key::RACK,
            key::REPLACING,
        ];
        let config = self.config.failure_detector;
        let Some(peer) = self.peers.get_mut(&d.node) else {
            let state = EndpointState::from_delta(d);
            let departed = state.status().is_some_and(|s| s.is_departed());
            let mut peer = Peer::new(state);
            if !departed {
                // Start the arrival clock; the node is up once its heartbeat advances.
                peer.report(now_ms, &config);
            }
            self.peers.insert(d.node, peer);
            self.events.push(GossipEvent::Discovered { node: d.node });
            self.events
                .push(GossipEvent::TopologyChanged { node: d.node });
            return;
        };
        if d.generation > peer.state.generation {
            let state = EndpointState::from_delta(d);
            let departed = state.status().is_some_and(|s| s.is_departed());
            peer.state = state;
            peer.window = None;
            info!(node = %d.node, generation = d.generation, "peer restarted");
            self.events.push(GossipEvent::Restarted {
                node: d.node,
                generation: d.generation,
            });
            self.events
                .push(GossipEvent::TopologyChanged { node: d.node });
            if departed {
                self.mark_down(d.node, 0.0);
            } else {
                peer.report(now_ms, &config);
                self.mark_up(d.node);
            }
            return;
        }
        if d.generation < peer.state.generation {
            return;
        }
        let outcome = peer.state.apply(d);
        let departed = peer.state.status().is_some_and(|s| s.is_departed());
        let advanced = outcome.heartbeat_advanced && !departed;
        if advanced {
            peer.report(now_ms, &config);
        }
        let newly_up = advanced && !peer.alive;
        if newly_up {
            self.mark_up(d.node);
        }
        if topology_kinds
            .iter()
            .any(|k| outcome.changed(usize::from(*k)))
        {
            self.events
                .push(GossipEvent::TopologyChanged { node: d.node });
            if departed {
                self.mark_down(d.node, 0.0);
            }
        }
        if outcome.changed(usize::from(key::SCHEMA_VERSION)) {
            self.check_schema(d.node);
        }
    }

    /// A peer holds our state under a generation at least ours (a `removenode` while we
    /// were alive): take a higher generation and republish everything.
    fn defend_generation(&mut self, theirs: u64) {
        let Some(local) = self.peers.get(&self.me).map(|p| &p.state) else {
            return;
        };
        if theirs <= local.generation {
            return;
        }
        warn!(
            node = %self.me,
            theirs,
            "peers hold a newer generation of this node; taking a higher one"
        );
        let states: Vec<AppState> = local.states().map(|s| s.value.clone()).collect();
        let heartbeat = local.heartbeat().value;
        let mut fresh = EndpointState::new(theirs + 1);
        for s in states {
            let s = match s {
                AppState::Status(NodeStatus::Removed) => AppState::Status(NodeStatus::Normal),
                other => other,
            };
            self.version += 1;
            fresh.set(s, self.version);
        }
        self.version += 1;
        fresh.set_heartbeat(Heartbeat {
            value: heartbeat,
            version: self.version,
        });
        if let Some(me) = self.peers.get_mut(&self.me) {
            me.state = fresh;
        }
    }
}

#[cfg(test)]
mod tests;
