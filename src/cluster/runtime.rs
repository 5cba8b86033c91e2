//! [`ClusterRuntime`]: runs a [`Gossiper`] for a live node over a real [`Transport`].
//!
//! The gossiper is a pure state machine; this module owns the thread that drives it: every
//! [`TICK`] it delivers received envelopes, lets the gossiper run its round, sends what it
//! asks, logs membership events, serves schema pulls and pushes through the node's
//! [`SchemaSource`], chooses the node's tokens once it knows the ring (joining), and
//! publishes a fresh [`ClusterView`] snapshot that request handling reads without locking
//! the gossiper.
//!
//! Threading: one std thread named `sibyl-gossip`, stopped by [`ClusterRuntime::shutdown`]
//! (also on drop), which first announces the shutdown to peers so they mark this node down
//! at once instead of waiting for the failure detector.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use tracing::{debug, info, warn};

use super::endpoint::NodeStatus;
use super::gossip_types::{GossipError, GossipEvent, Outgoing};
use super::gossiper::Gossiper;
use super::messages::{Envelope, PeerMessage};
use super::view::ClusterView;
use crate::ring::{allocate_tokens, NodeId, Token, TokenAllocation};
use crate::transport::Transport;

/// How often the driver wakes: delivers messages, ticks the gossiper (which runs a round
/// every `interval_ms`), publishes the view.
pub const TICK: Duration = Duration::from_millis(50);

/// How long a joining node listens to gossip before choosing tokens when it has heard of
/// no other node (it is then the first node of a new cluster). Three gossip rounds.
pub const JOIN_LISTEN: Duration = Duration::from_secs(3);

/// The node's schema, as gossip sees it: a version hash and an opaque encoding that
/// another node can import.
pub trait SchemaSource: Send + Sync {
    /// The current schema version (0 for an empty schema).
    fn schema_version(&self) -> u64;
    /// The whole schema, encoded.
    fn export(&self) -> Vec<u8>;
    /// Merges a schema pushed by a peer; returns the new local version.
    fn import(&self, schema: &[u8]) -> Result<u64, String>;
}

/// How the local node gets its tokens.
#[derive(Debug, Clone)]
pub enum TokenPlan {
    /// Tokens already owned (a restart): announce them at once.
    Existing(Vec<Token>),
    /// Choose this many once the ring is known, and report them through the callback so
    /// the node can persist them.
    Allocate {
        /// Tokens per node (virtual nodes).
        count: usize,
        /// Balanced (default) or random.
        allocation: TokenAllocation,
    },
}

type TokensChosen = Box<dyn FnOnce(&[Token]) + Send>;

enum Command {
    SchemaChanged,
    Load(u64),
    RemoveNode(NodeId, Sender<Result<(), GossipError>>),
    /// Announces a new local status (decommission: `leaving`, then `left`).
    SetStatus(NodeStatus),
}

/// The running membership layer of a node.
pub struct ClusterRuntime {
    view: Arc<RwLock<Arc<ClusterView>>>,
    commands: Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: NodeId,
    peer_address: SocketAddr,
}

impl std::fmt::Debug for ClusterRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuntime")
            .field("local", &self.local)
            .field("peer_address", &self.peer_address)
            .finish_non_exhaustive()
    }
}

impl ClusterRuntime {
    /// Starts driving `gossiper` over `transport`.
    pub fn start<T: Transport + Send + 'static>(
        gossiper: Gossiper,
        transport: T,
        schema: Arc<dyn SchemaSource>,
        tokens: TokenPlan,
        on_tokens_chosen: TokensChosen,
    ) -> std::io::Result<ClusterRuntime> {
        let view = Arc::new(RwLock::new(Arc::new(gossiper.view())));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let local = gossiper.id();
        let peer_address = gossiper.address();
        let driver = Driver {
            gossiper,
            transport,
            schema,
            view: view.clone(),
            commands: rx,
            stop: stop.clone(),
            start: Instant::now(),
            tokens: Some((tokens, on_tokens_chosen)),
        };
        let thread = std::thread::Builder::new()
            .name("sibyl-gossip".into())
            .spawn(move || driver.run())?;
        Ok(ClusterRuntime {
            view,
            commands: tx,
            stop,
            thread: Some(thread),
            local,
            peer_address,
        })
    }

    /// The latest membership snapshot.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// Where peers reach this node.
    pub fn peer_address(&self) -> SocketAddr {
        self.peer_address
    }

    /// Tells gossip the local schema changed (a table was created or dropped here).
    pub fn schema_changed(&self) {
        let _ = self.commands.send(Command::SchemaChanged);
    }

    /// Announces the node's load (bytes on disk).
    pub fn set_load(&self, bytes: u64) {
        let _ = self.commands.send(Command::Load(bytes));
    }

    /// Announces a new status of the local node (decommission). Applied on the next tick;
    /// the published view shows it from then on.
    pub fn set_status(&self, status: NodeStatus) {
        let _ = self.commands.send(Command::SetStatus(status));
    }

    /// `removenode`: marks a dead node removed, cluster-wide.
    pub fn remove_node(&self, node: NodeId) -> Result<(), GossipError> {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(Command::RemoveNode(node, tx)).is_err() {
            return Err(GossipError::UnknownNode { node });
        }
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or(Err(GossipError::UnknownNode { node }))
    }

    /// Announces the shutdown to peers and stops the gossip thread. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Driver<T: Transport> {
    gossiper: Gossiper,
    transport: T,
    schema: Arc<dyn SchemaSource>,
    view: Arc<RwLock<Arc<ClusterView>>>,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
    start: Instant,
    tokens: Option<(TokenPlan, TokensChosen)>,
}

impl<T: Transport> Driver<T> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(mut self) {
        let mut last_view: Option<Arc<ClusterView>> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                let out = self.gossiper.shutdown();
                self.send_all(out);
                info!("gossip stopped; shutdown announced to peers");
                return;
            }
            let now = self.now_ms();
            while let Some(env) = self.transport.try_recv() {
                self.deliver(env, now);
            }
            while let Ok(cmd) = self.commands.try_recv() {
                match cmd {
                    Command::SchemaChanged => self.announce_schema(),
                    Command::Load(bytes) => self.gossiper.set_load(bytes),
                    Command::RemoveNode(node, reply) => {
                        let _ = reply.send(self.gossiper.remove_node(node));
                    }
                    Command::SetStatus(status) => self.gossiper.set_status(status),
                }
            }
            self.maybe_choose_tokens(now);
            let out = self.gossiper.tick(now);
            self.send_all(out);
            for event in self.gossiper.drain_events() {
                self.on_event(event);
            }
            let view = self.gossiper.view();
            if last_view.as_deref() != Some(&view) {
                let view = Arc::new(view);
                *self.view.write().unwrap_or_else(|e| e.into_inner()) = view.clone();
                last_view = Some(view);
            }
            std::thread::sleep(TICK);
        }
    }

    fn deliver(&mut self, env: Envelope, now: u64) {
        match &env.message {
            PeerMessage::SchemaPull { .. } => {
                let reply = PeerMessage::SchemaPush {
                    version: self.schema.schema_version(),
                    schema: Arc::from(self.schema.export()),
                };
                self.send(env.from_addr, reply);
            }
            PeerMessage::SchemaPush { version, schema } => match self.schema.import(schema) {
                Ok(local) => {
                    debug!(from = %env.from_addr, remote = version, local, "schema merged");
                    self.gossiper.set_schema_version(local);
                }
                Err(e) => warn!(from = %env.from_addr, error = %e, "rejected a pushed schema"),
            },
            _ => {
                let out = self.gossiper.on_message(env, now);
                self.send_all(out);
            }
        }
    }

    /// Publishes the new schema version in gossip and pushes the schema to every live
    /// peer at once, so a table created here is usable elsewhere within a round trip
    /// instead of a gossip round (peers that miss the push still pull on mismatch).
    fn announce_schema(&mut self) {
        let version = self.schema.schema_version();
        self.gossiper.set_schema_version(version);
        let schema: Arc<[u8]> = Arc::from(self.schema.export());
        let view = self.gossiper.view();
        let peers: Vec<SocketAddr> = self
            .gossiper
            .live_peers()
            .iter()
            .filter_map(|id| view.node(*id).and_then(|n| n.peer_address))
            .collect();
        for addr in peers {
            let push = PeerMessage::SchemaPush {
                version,
                schema: schema.clone(),
            };
            self.send(addr, push);
        }
    }

    fn on_event(&mut self, event: GossipEvent) {
        match event {
            GossipEvent::Up { node } => info!(%node, "node is up"),
            GossipEvent::Down { node, phi } => warn!(%node, phi, "node is down"),
            GossipEvent::Discovered { node } => info!(%node, "discovered node"),
            GossipEvent::Restarted { node, generation } => {
                info!(%node, generation, "node restarted")
            }
            GossipEvent::TopologyChanged { node } => debug!(%node, "topology changed"),
            GossipEvent::SchemaMismatch {
                node,
                address,
                version,
            } => {
                debug!(%node, version, "schema mismatch; pulling");
                let pull = PeerMessage::SchemaPull {
                    version: self.schema.schema_version(),
                };
                self.send(address, pull);
            }
            GossipEvent::Rejected {
                by,
                cluster_name,
                partitioner,
            } => warn!(
                %by,
                cluster = %cluster_name,
                partitioner = partitioner.name(),
                "a peer refused this node: another cluster name or partitioner"
            ),
        }
    }

    /// Announces existing tokens at once; allocates new ones once the node has heard from
    /// a peer (so balanced allocation sees the ring) or after [`JOIN_LISTEN`] alone.
    fn maybe_choose_tokens(&mut self, now: u64) {
        let ready = match &self.tokens {
            None => return,
            Some((TokenPlan::Existing(_), _)) => true,
            Some((TokenPlan::Allocate { .. }, _)) => {
                let heard_peer = self.gossiper.known_count() > 1;
                let rounds_ok = self.gossiper.rounds() >= 2;
                (heard_peer && rounds_ok) || self.start.elapsed() >= JOIN_LISTEN
            }
        };
        if !ready {
            return;
        }
        let Some((plan, callback)) = self.tokens.take() else {
            return;
        };
        let tokens = match plan {
            TokenPlan::Existing(tokens) => tokens,
            TokenPlan::Allocate { count, allocation } => {
                let ring = self.gossiper.view().ring();
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(now ^ self.gossiper.id().0.rotate_left(17));
                allocate_tokens(&ring, count, allocation, &mut rng)
            }
        };
        callback(&tokens);
        self.gossiper.join_ring(tokens);
    }

    fn send(&self, to: SocketAddr, message: PeerMessage) {
        let envelope = Envelope {
            from: self.gossiper.id(),
            from_addr: self.gossiper.address(),
            message,
        };
        if let Err(e) = self.transport.send(to, envelope) {
            debug!(%to, error = %e, "peer send failed");
        }
    }

    fn send_all(&self, out: Vec<Outgoing>) {
        for o in out {
            if let Err(e) = self.transport.send(o.to, o.envelope) {
                debug!(to = %o.to, error = %e, "peer send failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::cluster::{GossipConfig, LocalNode, NodeStatus};
    use crate::ring::NodeLocation;
    use crate::transport::TcpTransport;

    /// A schema of table names; version = a hash of the sorted set (0 when empty).
    #[derive(Default)]
    struct Names(Mutex<BTreeSet<String>>);

    impl Names {
        fn add(&self, name: &str) {
            self.0.lock().expect("lock").insert(name.to_owned());
        }
        fn has(&self, name: &str) -> bool {
            self.0.lock().expect("lock").contains(name)
        }
    }

    impl SchemaSource for Names {
        fn schema_version(&self) -> u64 {
            let set = self.0.lock().expect("lock");
            set.iter().fold(0u64, |h, n| {
                n.bytes().fold(h.rotate_left(5) ^ 0x9e37, |h, b| {
                    h.wrapping_mul(31) ^ u64::from(b)
                })
            })
        }
        fn export(&self) -> Vec<u8> {
            let set = self.0.lock().expect("lock");
            set.iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        }
        fn import(&self, schema: &[u8]) -> Result<u64, String> {
            let text = std::str::from_utf8(schema).map_err(|e| e.to_string())?;
            for n in text.split('\n').filter(|n| !n.is_empty()) {
                self.add(n);
            }
            Ok(self.schema_version())
        }
    }

    fn start(id: u64, seeds: Vec<SocketAddr>, schema: Arc<Names>) -> ClusterRuntime {
        let transport = TcpTransport::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = transport.local_addr();
        let mut config =
            GossipConfig::new("test", if seeds.is_empty() { vec![addr] } else { seeds });
        config.interval_ms = 200;
        let local = LocalNode {
            id: NodeId(id),
            generation: 1,
            peer_address: addr,
            client_address: None,
            location: NodeLocation::default(),
            tokens: Vec::new(),
            status: NodeStatus::Joining,
            schema_version: schema.schema_version(),
            load: 0,
        };
        let g = Gossiper::new(config, local, id, 0);
        ClusterRuntime::start(
            g,
            transport,
            schema,
            TokenPlan::Allocate {
                count: 8,
                allocation: TokenAllocation::Balanced,
            },
            Box::new(|_| {}),
        )
        .expect("start runtime")
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn runtime_two_nodes_over_tcp_form_a_ring_and_share_schema() {
        let schema_a = Arc::new(Names::default());
        let schema_b = Arc::new(Names::default());
        let a = start(1, Vec::new(), schema_a.clone());
        let b = start(2, vec![a.peer_address()], schema_b.clone());
        wait_for("both nodes normal with 16 tokens", || {
            let v = b.view();
            v.ring().tokens().len() == 16 && v.up().len() == 2
        });
        schema_a.add("users");
        a.schema_changed();
        wait_for("schema to reach b", || schema_b.has("users"));
        let mut a = a;
        a.shutdown();
        wait_for("b to see a down after its shutdown", || {
            b.view().down() == vec![NodeId(1)]
        });
    }
}
