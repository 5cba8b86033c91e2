//! [`ClusterRuntime`]: runs a node's [`Gossiper`] as a tokio task over a [`PeerNetwork`].
//!
//! The gossiper is a pure state machine; this module owns the task that drives it. The
//! task wakes on a gossip message, a command from the [`ClusterHandle`], or its round
//! timer (the next gossip round or liveness check, whichever is first): no polling. It
//! logs membership events, serves schema pulls and pushes through the node's
//! [`SchemaSource`] (on the blocking pool: importing a schema is engine DDL), chooses the
//! node's tokens once it knows the ring (joining), closes the connections to nodes that
//! left or were removed, and publishes each changed [`ClusterView`] into the handle.
//!
//! Gossip messages travel as one-way messages of [`Family::Gossip`]; their body is an
//! [`Envelope`] in the cluster's own encoding ([`super::codec`]). Received envelopes wait
//! in a bounded inbox ([`GOSSIP_INBOX`]); when it is full the newest are dropped (gossip
//! tolerates loss: the next round repeats them).
//!
//! Ownership: [`ClusterRuntime::shutdown`] announces the shutdown to peers, stops the
//! task and waits for it. Time is tokio's clock, so the runtime runs under the simulated
//! network with paused time exactly as over TCP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::codec;
use super::endpoint::NodeStatus;
use super::gossip_types::{GossipEvent, Outgoing};
use super::gossiper::Gossiper;
use super::handle::{ClusterCommand, ClusterHandle, CommandInbox};
use super::messages::{Envelope, PeerMessage};
use super::view::ClusterView;
use crate::net::{BoxFuture, Family, HandlerError, NetError, PeerHandler, PeerInfo, PeerNetwork};
use crate::ring::{allocate_tokens, NodeId, Token, TokenAllocation};

/// Longest the driver sleeps between liveness checks when no round is due (the failure
/// detector convicts within this of phi passing its threshold).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Gossip envelopes received and not yet handled, before new ones are dropped (a round
/// brings one syn, ack or ack2 per peer it talks to; 1024 is many rounds of a big cluster).
pub const GOSSIP_INBOX: usize = 1024;

/// Least time between two schema pulls from one node for one version: a pull answered
/// by a push that makes no change would otherwise start the next pull at once (every
/// mismatch check re-raises the event). A lost pull is retried by the gossiper's periodic
/// re-check after this.
pub const SCHEMA_PULL_SPACING: Duration = Duration::from_secs(1);

/// How long a new node without seeds (other than itself) listens to gossip before
/// choosing tokens when it has heard of no other node (it is then the first node of a new
/// cluster). Three gossip rounds. A node with seeds never starts a cluster of its own: it
/// waits for a peer however long it takes.
pub const JOIN_LISTEN: Duration = Duration::from_secs(3);
/// Gossip rounds between two logs of a join refused because another node owns the
/// address.
const REFUSAL_LOG_ROUNDS: u64 = 30;
/// How long after a node departed its connections close: longer than a forwarded write's
/// deadline (twice the default write timeout), so calls in flight when it left end.
pub const DEPARTED_GRACE: Duration = Duration::from_secs(10);

/// The node's schema, as gossip sees it: a version hash and an opaque encoding that
/// another node can import.
pub trait SchemaSource: Send + Sync {
    /// The current schema version (0 for an empty schema).
    fn schema_version(&self) -> u64;
    /// The whole schema, encoded.
    fn export(&self) -> Vec<u8>;
    /// Merges a schema pushed by a peer; returns the new local version.
    fn import(&self, schema: &[u8]) -> Result<u64, String>;
    /// True (the default) when the calls above may block (engine DDL, a mutex held by
    /// DDL): the runtime then makes them on the blocking pool. An in-memory schema of a
    /// simulation answers false, so its calls run on the gossip task and a simulated run
    /// stays a pure function of its seed.
    fn may_block(&self) -> bool {
        true
    }
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
    /// [`TokenPlan::Allocate`], announced as `joining`: the node streams the ranges it
    /// gains ([`crate::stream`]) and announces `normal` itself when done.
    AllocateJoining {
        /// Tokens per node (virtual nodes).
        count: usize,
        /// Balanced (default) or random.
        allocation: TokenAllocation,
    },
    /// Tokens chosen by a bootstrap that has not completed (a restart mid-stream):
    /// announced as `joining` at once.
    Resume(Vec<Token>),
    /// Tokens owned by a node restarted mid-decommission: announced as `leaving` at once
    /// (the node resumes its hand-off, [`crate::stream::Decommission`]).
    Leaving(Vec<Token>),
    /// Tokens owned by a node restarted mid-move: announced with status `moving` to
    /// `to` at once (the node resumes its move, [`crate::stream::Mover::spawn`]).
    Moving {
        /// The tokens owned.
        tokens: Vec<Token>,
        /// The tokens it moves to.
        to: Vec<Token>,
    },
    /// Take over the tokens of the dead node `node` (`--replace`), announced `joining`
    /// with [`super::AppState::Replacing`]: at once when `tokens` are known (a restart
    /// mid-replacement), else once the node has checked the replaced node and hands them
    /// over ([`ClusterHandle::replace`]).
    Replace {
        /// The node replaced.
        node: NodeId,
        /// Its tokens, once known.
        tokens: Option<Vec<Token>>,
    },
}

impl TokenPlan {
    /// Whether the tokens are still to be chosen.
    fn allocates(&self) -> bool {
        matches!(
            self,
            TokenPlan::Allocate { .. } | TokenPlan::AllocateJoining { .. }
        )
    }
}

/// Called once with the tokens chosen (to persist them).
pub type TokensChosen = Box<dyn FnOnce(&[Token]) + Send>;

/// The [`Family::Gossip`] handler: decodes envelopes into the driver's inbox.
struct GossipHandler {
    inbox: mpsc::Sender<Envelope>,
}

impl PeerHandler for GossipHandler {
    fn request(
        &self,
        _from: PeerInfo,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        Box::pin(async { Err(HandlerError::new("gossip takes one-way messages only")) })
    }

    fn message(&self, from: PeerInfo, body: Bytes) -> BoxFuture<'static, ()> {
        match codec::decode(&body) {
            Ok(env) => {
                if let Err(mpsc::error::TrySendError::Full(env)) = self.inbox.try_send(env) {
                    debug!(from = %from.addr, kind = env.message.name(), "gossip inbox full; message dropped");
                }
            }
            Err(e) => warn!(from = %from.addr, error = %e, "undecodable gossip message dropped"),
        }
        Box::pin(async {})
    }
}

/// The running membership layer of a node.
pub struct ClusterRuntime {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuntime")
            .field("running", &self.task.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterRuntime {
    /// Starts driving `gossiper` over `net`, publishing into `handle` and draining
    /// `commands` (the inbox that came with the handle). Registers the gossip handler on
    /// `net`, so it fails when one is already registered. Must run inside a tokio runtime.
    pub fn start(
        handle: Arc<ClusterHandle>,
        commands: CommandInbox,
        gossiper: Gossiper,
        net: Arc<dyn PeerNetwork>,
        schema: Arc<dyn SchemaSource>,
        tokens: TokenPlan,
        on_tokens_chosen: TokensChosen,
    ) -> Result<ClusterRuntime, NetError> {
        let (tx, rx) = mpsc::channel(GOSSIP_INBOX);
        net.register(Family::Gossip, Arc::new(GossipHandler { inbox: tx }))?;
        handle.publish(Arc::new(gossiper.view()));
        let cancel = CancellationToken::new();
        let driver = Driver {
            gossiper,
            net,
            schema,
            handle,
            commands: commands.0,
            inbox: rx,
            start: Instant::now(),
            tokens: Some((tokens, on_tokens_chosen)),
            next_refusal_log: 0,
            departed: BTreeSet::new(),
            departing: BTreeMap::new(),
            holders: BTreeMap::new(),
            pulls: BTreeMap::new(),
        };
        let task = tokio::spawn(driver.run(cancel.clone()));
        Ok(ClusterRuntime {
            cancel,
            task: Some(task),
        })
    }

    /// Announces the shutdown to peers and stops the gossip task. Idempotent.
    pub async fn shutdown(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        // Without `shutdown` the task still stops (without waiting for it here).
        self.cancel.cancel();
    }
}

struct Driver {
    gossiper: Gossiper,
    net: Arc<dyn PeerNetwork>,
    schema: Arc<dyn SchemaSource>,
    handle: Arc<ClusterHandle>,
    commands: mpsc::Receiver<ClusterCommand>,
    inbox: mpsc::Receiver<Envelope>,
    start: Instant,
    tokens: Option<(TokenPlan, TokensChosen)>,
    /// The gossip round from which a refused join is logged again.
    next_refusal_log: u64,
    /// Peers whose connections were closed because they departed.
    departed: BTreeSet<SocketAddr>,
    /// Peers seen departed, not disconnected yet: since when (ms).
    departing: BTreeMap<SocketAddr, u64>,
    /// The node last seen at each peer address.
    holders: BTreeMap<SocketAddr, NodeId>,
    /// Last schema pull per node: the version asked for and when (ms).
    pulls: BTreeMap<NodeId, (u64, u64)>,
}

/// Runs `f` on the blocking pool when `may_block` (schema export and import take the
/// service's DDL lock and may run engine DDL), else right here.
async fn blocking<T: Send + 'static>(
    may_block: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if may_block {
        tokio::task::spawn_blocking(f).await.ok()
    } else {
        Some(f())
    }
}

impl Driver {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn wake_at(&self) -> Instant {
        let now = self.now_ms();
        let next = self.gossiper.next_round_ms().max(now);
        let wait = Duration::from_millis(next - now).min(CHECK_INTERVAL);
        Instant::now() + wait
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut last_view: Option<Arc<ClusterView>> = None;
        let mut last_key = None;
        self.on_timer().await;
        loop {
            let wake = self.wake_at();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                Some(env) = self.inbox.recv() => {
                    let now = self.now_ms();
                    self.deliver(env, now).await;
                }
                _ = tokio::time::sleep_until(wake) => self.on_timer().await,
            }
            for event in self.gossiper.drain_events() {
                self.on_event(event);
            }
            self.close_departed();
            // Most messages only move heartbeats: the view is rebuilt when its inputs
            // changed.
            let key = self.gossiper.view_key();
            if last_key.as_ref() == Some(&key) && last_view.is_some() {
                continue;
            }
            last_key = Some(key);
            let view = self.gossiper.view_reusing(last_view.as_deref());
            if last_view.as_deref() != Some(&view) {
                let view = Arc::new(view);
                self.note_departed(&view);
                self.handle.publish(view.clone());
                last_view = Some(view);
            }
        }
        let out = self.gossiper.shutdown();
        self.send_all(out);
        self.handle.publish(Arc::new(self.gossiper.view()));
        info!("gossip stopped; shutdown announced to peers");
    }

    async fn on_timer(&mut self) {
        let now = self.now_ms();
        self.maybe_choose_tokens(now);
        let out = self.gossiper.tick(now);
        self.send_all(out);
        if let Some(view) = self.handle.view() {
            let phi = view
                .nodes
                .keys()
                .filter(|id| **id != view.local)
                .map(|id| (*id, self.gossiper.phi(*id, now)))
                .collect();
            self.handle.publish_phi(phi);
        }
    }

    async fn on_command(&mut self, cmd: ClusterCommand) {
        match cmd {
            ClusterCommand::SchemaChanged => self.announce_schema().await,
            ClusterCommand::Load(bytes) => self.gossiper.set_load(bytes),
            ClusterCommand::RemoveNode(node, reply) => {
                let _ = reply.try_send(self.gossiper.remove_node(node));
            }
            ClusterCommand::SetStatus(status) => self.gossiper.set_status(status),
            ClusterCommand::StartMove(tokens) => self.gossiper.announce_moving(tokens),
            ClusterCommand::FinishMove(tokens) => self.gossiper.join_ring(tokens),
            ClusterCommand::Replace(node, tokens) => match &mut self.tokens {
                Some((
                    TokenPlan::Replace {
                        node: planned,
                        tokens: slot @ None,
                    },
                    _,
                )) if *planned == node => *slot = Some(tokens),
                _ => warn!(%node, "replace: no replacement of this node is planned; ignored"),
            },
        }
    }

    /// Notes the nodes that left or were removed (their connections close
    /// [`DEPARTED_GRACE`] later), and forgets those back in the ring.
    /// An address a departed node shared with a node still in the cluster (a wiped node
    /// back under a new id) stays open.
    fn note_departed(&mut self, view: &ClusterView) {
        let now = self.now_ms();
        let in_use: BTreeSet<SocketAddr> = view
            .nodes
            .values()
            .filter(|n| !n.status.is_some_and(|s| s.is_departed()))
            .filter_map(|n| n.peer_address)
            .collect();
        for n in view.nodes.values() {
            let Some(addr) = n.peer_address else { continue };
            if n.id != view.local && n.alive && !n.status.is_some_and(|s| s.is_departed()) {
                // Another node at an address (a wiped node back under a new id): the
                // connections there shook hands with the old one, and a call meant for
                // the new one would be refused unsent; reconnect now.
                let before = self.holders.insert(addr, n.id);
                if before.is_some_and(|b| b != n.id) {
                    info!(node = %n.id, %addr, "another node at this address; reconnecting");
                    self.net.disconnect(addr);
                }
            }
            if n.id == view.local || in_use.contains(&addr) {
                self.departed.remove(&addr);
                self.departing.remove(&addr);
                continue;
            }
            if !self.departed.contains(&addr) {
                self.departing.entry(addr).or_insert(now);
            }
        }
    }

    /// Closes the connections to nodes departed for [`DEPARTED_GRACE`] (once per
    /// departure): calls in flight when they left (a write a decommissioned node
    /// forwarded, say) end first.
    fn close_departed(&mut self) {
        let now = self.now_ms();
        let grace = u64::try_from(DEPARTED_GRACE.as_millis()).unwrap_or(u64::MAX);
        let due: Vec<SocketAddr> = self
            .departing
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= grace)
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            self.departing.remove(&addr);
            if self.departed.insert(addr) {
                info!(%addr, "node departed; closing its connections");
                self.net.disconnect(addr);
            }
        }
    }

    async fn deliver(&mut self, env: Envelope, now: u64) {
        match env.message {
            PeerMessage::SchemaPull { .. } => {
                let schema = self.schema.clone();
                let Some((version, bytes)) = blocking(self.schema.may_block(), move || {
                    (schema.schema_version(), schema.export())
                })
                .await
                else {
                    return;
                };
                let reply = PeerMessage::SchemaPush {
                    version,
                    schema: Arc::from(bytes),
                };
                self.send(env.from_addr, reply);
            }
            PeerMessage::SchemaPush {
                version,
                schema: pushed,
            } => {
                let schema = self.schema.clone();
                match blocking(self.schema.may_block(), move || schema.import(&pushed)).await {
                    Some(Ok(local)) => {
                        debug!(from = %env.from_addr, remote = version, local, "schema merged");
                        if local != self.gossiper_schema_version() {
                            self.gossiper.set_schema_version(local);
                        }
                    }
                    Some(Err(e)) => {
                        warn!(from = %env.from_addr, error = %e, "rejected a pushed schema")
                    }
                    None => {}
                }
            }
            _ => {
                let out = self.gossiper.on_message(env, now);
                self.send_all(out);
            }
        }
    }

    /// Publishes the new schema version in gossip and pushes the schema to every live
    /// peer at once, so a table created here is usable elsewhere within a round trip
    /// instead of a gossip round (peers that miss the push still pull on mismatch).
    async fn announce_schema(&mut self) {
        let schema = self.schema.clone();
        let Some((version, bytes)) = blocking(self.schema.may_block(), move || {
            (schema.schema_version(), schema.export())
        })
        .await
        else {
            return;
        };
        self.gossiper.set_schema_version(version);
        let schema: Arc<[u8]> = Arc::from(bytes);
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
                let now = self.now_ms();
                let spacing = SCHEMA_PULL_SPACING.as_millis() as u64;
                if let Some(&(v, at)) = self.pulls.get(&node) {
                    if v == version && now < at.saturating_add(spacing) {
                        return;
                    }
                }
                self.pulls.insert(node, (version, now));
                debug!(%node, version, "schema mismatch; pulling");
                let pull = PeerMessage::SchemaPull {
                    version: self.gossiper_schema_version(),
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

    fn gossiper_schema_version(&self) -> u64 {
        self.gossiper
            .endpoint(self.gossiper.id())
            .and_then(|s| s.schema_version())
            .unwrap_or(0)
    }

    /// Announces existing tokens at once; allocates new ones once the node has heard from
    /// a peer (so balanced allocation sees the ring) or, without seeds, after
    /// [`JOIN_LISTEN`] alone.
    fn maybe_choose_tokens(&mut self, now: u64) {
        let ready = match &self.tokens {
            None => return,
            Some((TokenPlan::Replace { tokens: None, .. }, _)) => return,
            Some((plan, _)) if !plan.allocates() => true,
            Some(_) => {
                let heard_peer = self.gossiper.known_count() > 1;
                let rounds_ok = self.gossiper.rounds() >= 2;
                let me = self.gossiper.address();
                let seeded = self.gossiper.config().seeds.iter().any(|s| *s != me);
                let alone = self.start.elapsed() >= JOIN_LISTEN;
                if seeded && alone && !heard_peer && self.gossiper.rounds() >= self.next_refusal_log
                {
                    // Joining alone would make a second cluster of one (a split brain with
                    // the cluster the seeds belong to).
                    self.next_refusal_log = self.gossiper.rounds() + REFUSAL_LOG_ROUNDS;
                    tracing::error!(
                        seeds = ?self.gossiper.config().seeds,
                        "not joining: no seed has answered; a node with seeds never starts \
                         a cluster of its own (check --seeds and the network)"
                    );
                }
                (heard_peer && rounds_ok) || (!seeded && alone)
            }
        };
        if !ready {
            return;
        }
        if self
            .tokens
            .as_ref()
            .is_some_and(|(plan, _)| plan.allocates())
        {
            if let Some(owner) = self.address_owner() {
                // A node that lost its data directory comes back with a new id at the
                // old one's address; calls meant for the old node would reach it. It
                // waits until the old node is removed (Cassandra refuses the same join).
                if self.gossiper.rounds() >= self.next_refusal_log {
                    self.next_refusal_log = self.gossiper.rounds() + REFUSAL_LOG_ROUNDS;
                    tracing::error!(
                        address = %self.gossiper.address(),
                        %owner,
                        "not joining the ring: node {owner} owns tokens at this node's peer \
                         address (was its data directory wiped?); run `sibyl-admin \
                         removenode {owner}` on a live node, and this node joins as a new one"
                    );
                }
                return;
            }
            let view = self.gossiper.view();
            let pushing = view
                .nodes
                .values()
                .find(|n| matches!(n.status, Some(NodeStatus::Leaving | NodeStatus::Moving)));
            if let Some(n) = pushing {
                // One ring change at a time per range (crate::stream::admission): ranges
                // this node would take could be the ones the leaving (or moving) node is
                // handing to nodes that gain them in a ring without this one.
                if self.gossiper.rounds() >= self.next_refusal_log {
                    self.next_refusal_log = self.gossiper.rounds() + REFUSAL_LOG_ROUNDS;
                    let (node, state) = (n.id, n.status.map_or("leaving", |s| s.name()));
                    tracing::warn!(
                        %node,
                        "waiting to choose tokens: node {node} is {state}; this node joins \
                         once it is done (if it died leaving, `sibyl-admin removenode {node}` \
                         on a live node)"
                    );
                }
                return;
            }
        }
        let Some((plan, callback)) = self.tokens.take() else {
            return;
        };
        let joining = matches!(
            plan,
            TokenPlan::AllocateJoining { .. } | TokenPlan::Resume(_)
        );
        let tokens = match plan {
            TokenPlan::Replace {
                node,
                tokens: Some(tokens),
            } => {
                callback(&tokens);
                self.gossiper.announce_replacing(tokens, node);
                return;
            }
            TokenPlan::Replace { tokens: None, .. } => return,
            TokenPlan::Leaving(tokens) => {
                callback(&tokens);
                self.gossiper.announce_leaving(tokens);
                return;
            }
            TokenPlan::Moving { tokens, to } => {
                callback(&tokens);
                self.gossiper.join_ring(tokens);
                self.gossiper.announce_moving(to);
                return;
            }
            TokenPlan::Existing(tokens) | TokenPlan::Resume(tokens) => tokens,
            TokenPlan::Allocate { count, allocation }
            | TokenPlan::AllocateJoining { count, allocation } => {
                // Balanced allocation sees the pending tokens of nodes joining meanwhile
                // too, so two joins at once split the ring between them.
                let view = self.gossiper.view();
                let ring = view.future_ring().unwrap_or_else(|| view.ring());
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(now ^ self.gossiper.id().0.rotate_left(17));
                allocate_tokens(&ring, count, allocation, &mut rng)
            }
        };
        callback(&tokens);
        if joining {
            self.gossiper.announce_joining(tokens);
        } else {
            self.gossiper.join_ring(tokens);
        }
    }

    /// Another node owning tokens at this node's peer address, if gossip knows one.
    fn address_owner(&self) -> Option<NodeId> {
        let me = self.gossiper.id();
        let address = self.gossiper.address();
        self.gossiper.view().nodes.values().find_map(|n| {
            (n.id != me
                && n.peer_address == Some(address)
                && n.status.is_some_and(|s| s.owns_tokens()))
            .then_some(n.id)
        })
    }

    fn send(&self, to: SocketAddr, message: PeerMessage) {
        let envelope = Envelope {
            from: self.gossiper.id(),
            from_addr: self.gossiper.address(),
            message,
        };
        self.send_envelope(to, &envelope);
    }

    fn send_envelope(&self, to: SocketAddr, envelope: &Envelope) {
        let body = Bytes::from(codec::encode(envelope));
        if let Err(e) = self.net.send(to, Family::Gossip, body) {
            debug!(%to, kind = envelope.message.name(), error = %e, "gossip send failed");
        }
    }

    fn send_all(&self, out: Vec<Outgoing>) {
        for o in out {
            self.send_envelope(o.to, &o.envelope);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::cluster::{GossipConfig, LocalNode, NodeStatus};
    use crate::net::{TcpNetwork, TcpOptions};
    use crate::ring::{NodeId, NodeLocation};

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

    struct Running {
        handle: Arc<ClusterHandle>,
        runtime: ClusterRuntime,
        net: TcpNetwork,
    }

    async fn start(id: u64, seeds: Vec<SocketAddr>, schema: Arc<Names>) -> Running {
        let net = TcpNetwork::bind(
            "127.0.0.1:0".parse().expect("addr"),
            TcpOptions::new("test", NodeId(id)),
        )
        .await
        .expect("bind");
        let addr = net.local_addr();
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
        let (handle, inbox) = ClusterHandle::new();
        let runtime = ClusterRuntime::start(
            handle.clone(),
            inbox,
            g,
            Arc::new(net.clone()),
            schema,
            TokenPlan::Allocate {
                count: 8,
                allocation: TokenAllocation::Balanced,
            },
            Box::new(|_| {}),
        )
        .expect("start runtime");
        Running {
            handle,
            runtime,
            net,
        }
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runtime_two_nodes_over_tcp_form_a_ring_and_share_schema() {
        let schema_a = Arc::new(Names::default());
        let schema_b = Arc::new(Names::default());
        let mut a = start(1, Vec::new(), schema_a.clone()).await;
        let b = start(2, vec![a.net.local_addr()], schema_b.clone()).await;
        wait_for("both nodes normal with 16 tokens", || {
            b.handle
                .view()
                .is_some_and(|v| v.ring().tokens().len() == 16 && v.up().len() == 2)
        })
        .await;
        schema_a.add("users");
        a.handle.schema_changed();
        wait_for("schema to reach b", || schema_b.has("users")).await;
        a.runtime.shutdown().await;
        a.net.shutdown().await;
        wait_for("b to see a down after its shutdown", || {
            b.handle.view().is_some_and(|v| v.down() == vec![NodeId(1)])
        })
        .await;
    }
}
