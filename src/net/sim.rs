//! [`SimNetwork`]: a seeded, message-level simulated network behind [`PeerNetwork`], so
//! whole nodes (gossip, replicas, the coordinator) run many to a process, deterministic
//! for a seed.
//!
//! Why our own simulator rather than turmoil: faults are injected per message (loss,
//! duplication, reordering), which a simulated TCP stream cannot express; nothing needs a
//! socket-type abstraction, because components only see [`PeerNetwork`]; and on a tokio
//! current-thread runtime with paused time (`#[tokio::test(start_paused = true)]`) a run
//! is a pure function of the seed and the calls made: every fate is drawn from one
//! seeded RNG in send order, deliveries wait in a queue ordered by (time, send sequence),
//! and every map iterates in a fixed order.
//!
//! # Faults
//! - Latency plus uniform jitter per message; `reorder` holds a message back by
//!   `reorder_delay` (so later ones overtake it); `loss` drops it; `duplicate` delivers a
//!   second copy with its own delay.
//! - Partitions are directed: [`SimNetwork::block`] cuts `from -> to` only (one-way);
//!   [`SimNetwork::partition`] cuts both ways between groups. Checked at send and at
//!   delivery. A message lost to a partition or to `loss` makes a call time out.
//! - [`SimNetwork::crash`] kills a node: its handle answers `Closed`, messages to or from
//!   it in flight are dropped, calls to it fail `Unreachable` (connection refused; those
//!   already waiting on it at once, as when a TCP connection breaks), its own pending
//!   calls fail `Closed`. [`SimNetwork::restart`] gives a fresh handle (a new process:
//!   handlers must be registered again).
//! - Clock skew: [`SimNetwork::clock`] is a [`Clock`] per node, the simulated time plus
//!   that node's skew ([`SimNetwork::set_skew`]).
//!
//! Every message's fate is recorded in a trace ([`SimNetwork::trace`]), and every
//! `disconnect` in [`SimNetwork::disconnects`].
//!
//! # Tasks
//! One router task delivers due messages; each delivered message's handler runs as its
//! own task. A handler that panics fails only its request (`Handler` error) or message
//! (lost), as over TCP; the router keeps delivering. [`SimNetwork::shutdown`] stops them all. Locks are held for queue and map
//! operations only, never across an `.await`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::ErrorCode;
use super::unwind::{call_catching, CatchUnwind};
use super::{BoxFuture, Family, Handlers, NetError, PeerHandler, PeerInfo, PeerNetwork};
use crate::ring::NodeId;
use crate::versioning::Clock;

/// Wall-clock time of the simulation's start (2024-01-01T00:00:00Z), µs since the epoch.
pub const SIM_EPOCH_MICROS: i64 = 1_704_067_200_000_000;

/// Network behaviour; change it mid-run with [`SimNetwork::set_config`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Fixed one-way latency.
    pub latency: Duration,
    /// Extra uniform delay, `0..=jitter`.
    pub jitter: Duration,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Probability a message is held back by `reorder_delay`.
    pub reorder: f64,
    /// How long a reordered message is held back.
    pub reorder_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

/// What a traced message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimMessageKind {
    /// A call's request.
    Request,
    /// A call's answer.
    Response,
    /// A one-way message.
    OneWay,
}

/// What happened to a traced message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFate {
    /// Handed to its receiver.
    Delivered,
    /// Lost to `loss`.
    Lost,
    /// A second copy was scheduled.
    Duplicated,
    /// Held back to be overtaken.
    Reordered,
    /// Dropped by a partition.
    Partitioned,
    /// Dropped because an end crashed (or restarted) in the meantime.
    Crashed,
    /// Refused at once: the receiver is down.
    Refused,
}

/// One entry of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTraceEvent {
    /// Simulated time since the start, ms.
    pub at_ms: u64,
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// Owning component.
    pub family: Family,
    /// Request, response or one-way.
    pub kind: SimMessageKind,
    /// Its fate.
    pub fate: SimFate,
}

enum Payload {
    OneWay(Bytes),
    Request {
        call: u64,
        body: Bytes,
    },
    Response {
        call: u64,
        answer: Result<Bytes, (ErrorCode, String)>,
    },
}

impl Payload {
    fn kind(&self) -> SimMessageKind {
        match self {
            Payload::OneWay(_) => SimMessageKind::OneWay,
            Payload::Request { .. } => SimMessageKind::Request,
            Payload::Response { .. } => SimMessageKind::Response,
        }
    }

    fn duplicate(&self) -> Payload {
        match self {
            Payload::OneWay(b) => Payload::OneWay(b.clone()),
            Payload::Request { call, body } => Payload::Request {
                call: *call,
                body: body.clone(),
            },
            Payload::Response { call, answer } => Payload::Response {
                call: *call,
                answer: answer.clone(),
            },
        }
    }
}

struct Delivery {
    from: SocketAddr,
    from_node: NodeId,
    from_incarnation: u64,
    to: SocketAddr,
    to_incarnation: u64,
    family: Family,
    payload: Payload,
}

type Reply = oneshot::Sender<Result<Bytes, NetError>>;

struct Slot {
    node: NodeId,
    incarnation: u64,
    up: bool,
    handlers: Arc<Handlers>,
    /// Calls this node waits on: the callee and where its answer goes.
    pending: BTreeMap<u64, (SocketAddr, Reply)>,
    skew_micros: i64,
}

struct World {
    config: SimConfig,
    rng: StdRng,
    start: Instant,
    seq: u64,
    next_call: u64,
    queue: BTreeMap<(Instant, u64), Delivery>,
    nodes: BTreeMap<SocketAddr, Slot>,
    blocked: BTreeSet<(SocketAddr, SocketAddr)>,
    trace: Vec<SimTraceEvent>,
    disconnects: Vec<(SocketAddr, SocketAddr)>,
}

impl World {
    fn at_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, d: &Delivery, fate: SimFate) {
        let event = SimTraceEvent {
            at_ms: self.at_ms(),
            from: d.from,
            to: d.to,
            family: d.family,
            kind: d.payload.kind(),
            fate,
        };
        self.trace.push(event);
    }

    fn alive(&self, addr: SocketAddr, incarnation: u64) -> bool {
        self.nodes
            .get(&addr)
            .is_some_and(|s| s.up && s.incarnation == incarnation)
    }

    /// Draws the fate of `d` and queues it (and its duplicate).
    fn schedule(&mut self, d: Delivery) {
        if self.blocked.contains(&(d.from, d.to)) {
            self.record(&d, SimFate::Partitioned);
            return;
        }
        let c = self.config;
        if c.loss > 0.0 && self.rng.gen::<f64>() < c.loss {
            self.record(&d, SimFate::Lost);
            return;
        }
        let copy = (c.duplicate > 0.0 && self.rng.gen::<f64>() < c.duplicate).then(|| Delivery {
            payload: d.payload.duplicate(),
            ..d
        });
        if let Some(copy) = copy {
            self.record(&copy, SimFate::Duplicated);
            self.enqueue(copy);
        }
        self.enqueue(d);
    }

    fn enqueue(&mut self, d: Delivery) {
        let c = self.config;
        let jitter_us = u64::try_from(c.jitter.as_micros()).unwrap_or(u64::MAX);
        let mut delay = c.latency + Duration::from_micros(self.rng.gen_range(0..=jitter_us));
        if c.reorder > 0.0 && self.rng.gen::<f64>() < c.reorder {
            self.record(&d, SimFate::Reordered);
            delay += c.reorder_delay;
        }
        self.seq += 1;
        self.queue.insert((Instant::now() + delay, self.seq), d);
    }
}

struct Shared {
    world: Mutex<World>,
    wake: Notify,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

fn lock(s: &Shared) -> MutexGuard<'_, World> {
    s.world.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulated network (the world). Cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = lock(&self.shared);
        f.debug_struct("SimNetwork")
            .field("nodes", &w.nodes.len())
            .field("queued", &w.queue.len())
            .finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// A network with `config`, every random choice from `seed`. Starts its router task:
    /// call inside a tokio runtime (current-thread with paused time for determinism).
    pub fn new(config: SimConfig, seed: u64) -> SimNetwork {
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                config,
                rng: StdRng::seed_from_u64(seed),
                start: Instant::now(),
                seq: 0,
                next_call: 1,
                queue: BTreeMap::new(),
                nodes: BTreeMap::new(),
                blocked: BTreeSet::new(),
                trace: Vec::new(),
                disconnects: Vec::new(),
            }),
            wake: Notify::new(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        shared.tracker.spawn(route(shared.clone()));
        SimNetwork { shared }
    }

    /// Adds node `node` at `addr` (or replaces a crashed one) and returns its handle.
    pub fn node(&self, addr: SocketAddr, node: NodeId) -> SimNode {
        let mut w = lock(&self.shared);
        let incarnation = w.nodes.get(&addr).map_or(1, |s| s.incarnation + 1);
        let skew_micros = w.nodes.get(&addr).map_or(0, |s| s.skew_micros);
        w.nodes.insert(
            addr,
            Slot {
                node,
                incarnation,
                up: true,
                handlers: Arc::new(Handlers::default()),
                pending: BTreeMap::new(),
                skew_micros,
            },
        );
        SimNode {
            shared: self.shared.clone(),
            addr,
            node,
            incarnation,
        }
    }

    /// Crashes the node at `addr` (kill -9): see the module doc.
    pub fn crash(&self, addr: SocketAddr) {
        let (own, to_it) = {
            let mut w = lock(&self.shared);
            let Some(slot) = w.nodes.get_mut(&addr) else {
                return;
            };
            slot.up = false;
            let own = std::mem::take(&mut slot.pending);
            // Calls other nodes wait on from it: their connection to it broke.
            let mut to_it = Vec::new();
            for slot in w.nodes.values_mut() {
                let calls: Vec<u64> = slot
                    .pending
                    .iter()
                    .filter(|(_, (callee, _))| *callee == addr)
                    .map(|(call, _)| *call)
                    .collect();
                for call in calls {
                    if let Some((_, reply)) = slot.pending.remove(&call) {
                        to_it.push(reply);
                    }
                }
            }
            (own, to_it)
        };
        for (_, (_, reply)) in own {
            let _ = reply.send(Err(NetError::Closed));
        }
        for reply in to_it {
            let _ = reply.send(Err(NetError::Unreachable {
                addr,
                reason: "connection lost (node crashed)".into(),
            }));
        }
    }

    /// Restarts a crashed node as a new process at the same address: a fresh handle.
    pub fn restart(&self, addr: SocketAddr) -> Option<SimNode> {
        let node = lock(&self.shared).nodes.get(&addr)?.node;
        self.crash(addr);
        Some(self.node(addr, node))
    }

    /// Cuts messages from `from` to `to` (one way).
    pub fn block(&self, from: SocketAddr, to: SocketAddr) {
        lock(&self.shared).blocked.insert((from, to));
    }

    /// Cuts every pair of addresses in different groups, both ways.
    pub fn partition(&self, groups: &[Vec<SocketAddr>]) {
        let mut w = lock(&self.shared);
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a {
                        for y in b {
                            w.blocked.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        lock(&self.shared).blocked.clear();
    }

    /// Sets the clock skew of the node at `addr`, µs (positive: ahead).
    pub fn set_skew(&self, addr: SocketAddr, micros: i64) {
        if let Some(s) = lock(&self.shared).nodes.get_mut(&addr) {
            s.skew_micros = micros;
        }
    }

    /// The wall clock of the node at `addr`: simulated time plus its skew.
    pub fn clock(&self, addr: SocketAddr) -> SimClock {
        SimClock {
            shared: self.shared.clone(),
            addr,
        }
    }

    /// Changes the network's behaviour from now on.
    pub fn set_config(&self, config: SimConfig) {
        lock(&self.shared).config = config;
    }

    /// Every message's fate so far.
    pub fn trace(&self) -> Vec<SimTraceEvent> {
        lock(&self.shared).trace.clone()
    }

    /// Every `disconnect(peer)` made so far, as `(node, peer)` (a simulated network has
    /// no connections to close, so it records what a TCP network would have closed).
    pub fn disconnects(&self) -> Vec<(SocketAddr, SocketAddr)> {
        lock(&self.shared).disconnects.clone()
    }

    /// Stops the router and every handler task, and drops every node's handlers (the
    /// network can then be freed with the nodes; later calls find no node).
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        // Drop every node's handlers: they hold the nodes' services, whose clocks hold
        // this network, so keeping them would keep every node alive.
        let nodes = std::mem::take(&mut lock(&self.shared).nodes);
        drop(nodes);
    }
}

/// A node's wall clock in the simulation ([`SimNetwork::clock`]).
#[derive(Clone)]
pub struct SimClock {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClock")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Clock for SimClock {
    fn now_micros(&self) -> i64 {
        let w = lock(&self.shared);
        let elapsed = i64::try_from(w.start.elapsed().as_micros()).unwrap_or(i64::MAX);
        let skew = w.nodes.get(&self.addr).map_or(0, |s| s.skew_micros);
        SIM_EPOCH_MICROS
            .saturating_add(elapsed)
            .saturating_add(skew)
    }
}

/// One node's endpoint on a [`SimNetwork`]: its [`PeerNetwork`].
#[derive(Clone)]
pub struct SimNode {
    shared: Arc<Shared>,
    addr: SocketAddr,
    node: NodeId,
    incarnation: u64,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("addr", &self.addr)
            .field("node", &self.node)
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl SimNode {
    /// Queues `payload` to `to`: `Closed` when this handle is dead, `Unreachable` when
    /// the receiver is down.
    fn post(
        &self,
        w: &mut World,
        to: SocketAddr,
        family: Family,
        payload: Payload,
    ) -> Result<(), NetError> {
        if !w.alive(self.addr, self.incarnation) {
            return Err(NetError::Closed);
        }
        let d = Delivery {
            from: self.addr,
            from_node: self.node,
            from_incarnation: self.incarnation,
            to,
            to_incarnation: 0,
            family,
            payload,
        };
        let Some(incarnation) = w.nodes.get(&to).filter(|s| s.up).map(|s| s.incarnation) else {
            w.record(&d, SimFate::Refused);
            return Err(NetError::Unreachable {
                addr: to,
                reason: "connection refused (node down)".into(),
            });
        };
        let d = Delivery {
            to_incarnation: incarnation,
            ..d
        };
        w.schedule(d);
        Ok(())
    }
}

/// A call's entry in its node's pending map, removed when the call ends (answered,
/// timed out, or its future dropped), so lost answers leave nothing behind.
struct PendingCall {
    shared: Arc<Shared>,
    addr: SocketAddr,
    call: u64,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(slot) = lock(&self.shared).nodes.get_mut(&self.addr) {
            slot.pending.remove(&self.call);
        }
    }
}

impl PeerNetwork for SimNode {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn local_node(&self) -> NodeId {
        self.node
    }

    fn call_node(
        &self,
        to: SocketAddr,
        node: NodeId,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        // The simulated handshake: the node registered at `to` is who would answer.
        let found = lock(&self.shared).nodes.get(&to).map(|s| s.node);
        match found {
            Some(found) if found != node => Box::pin(async move {
                Err(NetError::WrongNode {
                    addr: to,
                    expected: node,
                    found,
                })
            }),
            _ => self.call(to, family, body, deadline),
        }
    }

    fn call(
        &self,
        to: SocketAddr,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let posted = {
            let mut w = lock(&self.shared);
            let call = w.next_call;
            w.next_call += 1;
            let posted = self.post(&mut w, to, family, Payload::Request { call, body });
            if posted.is_ok() {
                if let Some(slot) = w.nodes.get_mut(&self.addr) {
                    slot.pending.insert(call, (to, tx));
                }
            }
            posted.map(|()| call)
        };
        self.shared.wake.notify_one();
        let pending = posted.map(|call| PendingCall {
            shared: self.shared.clone(),
            addr: self.addr,
            call,
        });
        Box::pin(async move {
            // Held to the end: the entry goes however the call ends (answer, timeout, or
            // the caller dropping this future).
            let _pending = pending?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(NetError::Closed),
                Err(_) => Err(NetError::Timeout {
                    addr: to,
                    after: deadline.saturating_duration_since(started),
                }),
            }
        })
    }

    fn send(&self, to: SocketAddr, family: Family, body: Bytes) -> Result<(), NetError> {
        let r = self.post(&mut lock(&self.shared), to, family, Payload::OneWay(body));
        self.shared.wake.notify_one();
        r
    }

    fn register(&self, family: Family, handler: Arc<dyn PeerHandler>) -> Result<(), NetError> {
        let w = lock(&self.shared);
        match w.nodes.get(&self.addr) {
            Some(s) if s.incarnation == self.incarnation => s.handlers.register(family, handler),
            _ => Err(NetError::Closed),
        }
    }

    fn disconnect(&self, peer: SocketAddr) {
        // Messages carry no connection state here: the call is only recorded.
        lock(&self.shared).disconnects.push((self.addr, peer));
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let alive = lock(&self.shared).alive(self.addr, self.incarnation);
        if alive {
            SimNetwork {
                shared: self.shared.clone(),
            }
            .crash(self.addr);
        }
        Box::pin(async {})
    }
}

/// The router: delivers each message when due, until the network shuts down.
async fn route(shared: Arc<Shared>) {
    loop {
        let next = lock(&shared).queue.keys().next().map(|k| k.0);
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = shared.wake.notified() => continue,
            _ = sleep_until(next) => {}
        }
        loop {
            let due = {
                let mut w = lock(&shared);
                match w.queue.first_key_value() {
                    Some((k, _)) if k.0 <= Instant::now() => w.queue.pop_first().map(|(_, d)| d),
                    _ => None,
                }
            };
            let Some(d) = due else { break };
            deliver(&shared, d);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn deliver(shared: &Arc<Shared>, d: Delivery) {
    let mut w = lock(shared);
    if !w.alive(d.to, d.to_incarnation) || !w.alive(d.from, d.from_incarnation) {
        w.record(&d, SimFate::Crashed);
        return;
    }
    if w.blocked.contains(&(d.from, d.to)) {
        w.record(&d, SimFate::Partitioned);
        return;
    }
    w.record(&d, SimFate::Delivered);
    let from = PeerInfo {
        node: d.from_node,
        addr: d.from,
    };
    let Some(slot) = w.nodes.get_mut(&d.to) else {
        return;
    };
    let handler = slot.handlers.get(d.family).cloned();
    match d.payload {
        Payload::OneWay(body) => {
            drop(w);
            if let Some(h) = handler {
                // A panicking handler loses its message, not the router (as over TCP).
                match call_catching(|| h.message(from, body)) {
                    Ok(fut) => spawn(shared, async move {
                        let _ = CatchUnwind(fut).await;
                    }),
                    Err(panic) => tracing::warn!(%panic, "sim message handler panicked"),
                }
            }
        }
        Payload::Request { call, body } => {
            let (to, to_node, to_incarnation) = (d.to, slot.node, slot.incarnation);
            let back = move |answer| Delivery {
                from: to,
                from_node: to_node,
                from_incarnation: to_incarnation,
                to: d.from,
                to_incarnation: d.from_incarnation,
                family: d.family,
                payload: Payload::Response { call, answer },
            };
            let Some(h) = handler else {
                w.schedule(back(Err((ErrorCode::NoHandler, "no handler".into()))));
                return;
            };
            drop(w);
            // A panicking handler fails its request `Handler`, as over TCP.
            let panicked =
                |panic: String| (ErrorCode::Handler, format!("handler panicked: {panic}"));
            let answer = match call_catching(|| h.request(from, body)) {
                Ok(fut) => CatchUnwind(fut),
                Err(panic) => {
                    lock(shared).schedule(back(Err(panicked(panic))));
                    shared.wake.notify_one();
                    return;
                }
            };
            let shared2 = shared.clone();
            spawn(shared, async move {
                let answer = match answer.await {
                    Ok(result) => result.map_err(|e| (ErrorCode::Handler, e.message)),
                    Err(panic) => Err(panicked(panic)),
                };
                lock(&shared2).schedule(back(answer));
                shared2.wake.notify_one();
            });
        }
        Payload::Response { call, answer } => {
            if let Some((_, reply)) = slot.pending.remove(&call) {
                drop(w);
                let answer = answer.map_err(|(code, message)| match code {
                    ErrorCode::Overloaded => NetError::Overloaded {
                        addr: d.from,
                        what: "requests in flight at the peer",
                    },
                    ErrorCode::NoHandler => NetError::NoHandler {
                        addr: d.from,
                        family: d.family,
                    },
                    ErrorCode::Handler => NetError::Remote {
                        addr: d.from,
                        message,
                    },
                });
                let _ = reply.send(answer);
            }
        }
    }
}

fn spawn(shared: &Arc<Shared>, fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let cancel = shared.cancel.clone();
    shared.tracker.spawn(async move {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = fut => {}
        }
    });
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
