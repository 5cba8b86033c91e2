//! [`ClusterHandle`]: what request handling holds of membership. The node creates it
//! before it opens the service; the [`super::ClusterRuntime`] fills it once gossip runs.
//!
//! It is a published-view cell and a command sender. The cell holds the latest
//! [`ClusterView`] (with its ring built once per change) as an `Arc` swapped whole, read
//! without a lock on the request path; it is empty until gossip publishes and keeps the
//! last view after gossip stops, so requests still draining see the cluster as it was.
//! Commands (schema changed, load, status, removenode) go through a bounded queue the
//! runtime drains.
//!
//! # Threading
//! Every method is sync and never waits, except [`ClusterHandle::remove_node`], which
//! waits (bounded) for the runtime's answer: call it from a blocking context.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;
use tracing::warn;

use super::endpoint::NodeStatus;
use super::gossip_types::GossipError;
use super::view::ClusterView;
use crate::ring::{NodeId, Token};

/// Commands queued before the runtime drains them (operator actions and announcements:
/// a handful per second at most).
pub const COMMAND_QUEUE: usize = 256;
/// Longest wait for the runtime's answer to `removenode`.
pub const REMOVE_NODE_WAIT: Duration = Duration::from_secs(5);

/// What the service asks of the membership runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterCommand {
    /// The local schema changed (a table was created or dropped here).
    SchemaChanged,
    /// The node's load in bytes.
    Load(u64),
    /// `removenode`: mark a dead node removed, cluster-wide.
    RemoveNode(NodeId, std::sync::mpsc::SyncSender<Result<(), GossipError>>),
    /// A new local status (decommission: `leaving`, then `left`).
    SetStatus(NodeStatus),
    /// `--replace`: the replaced node checked, announce its tokens as this node's,
    /// pending ([`super::TokenPlan::Replace`]).
    Replace(NodeId, Vec<Token>),
    /// A move: announce `moving` to these tokens.
    StartMove(Vec<Token>),
    /// A move done: announce these tokens, `normal`.
    FinishMove(Vec<Token>),
}

/// The runtime's end of a [`ClusterHandle`]'s command queue.
#[derive(Debug)]
pub struct CommandInbox(pub(super) mpsc::Receiver<ClusterCommand>);

/// The membership cell shared by the node, the service and the runtime.
#[derive(Debug)]
pub struct ClusterHandle {
    view: ArcSwapOption<ClusterView>,
    /// The failure detector's phi of each known peer at the runtime's last tick.
    phi: ArcSwap<Vec<(NodeId, f64)>>,
    commands: mpsc::Sender<ClusterCommand>,
}

impl ClusterHandle {
    /// An empty handle and the inbox its runtime will drain.
    pub fn new() -> (Arc<ClusterHandle>, CommandInbox) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let handle = ClusterHandle {
            view: ArcSwapOption::empty(),
            phi: ArcSwap::from_pointee(Vec::new()),
            commands: tx,
        };
        (Arc::new(handle), CommandInbox(rx))
    }

    /// The latest membership snapshot; `None` until gossip first publishes.
    pub fn view(&self) -> Option<Arc<ClusterView>> {
        self.view.load_full()
    }

    /// Publishes a new snapshot (the runtime's job).
    pub fn publish(&self, view: Arc<ClusterView>) {
        self.view.store(Some(view));
    }

    /// The failure detector's suspicion (phi) of each known peer, by id, as of the
    /// runtime's last tick (about once a second); empty before gossip runs.
    pub fn phi(&self) -> Arc<Vec<(NodeId, f64)>> {
        self.phi.load_full()
    }

    /// Publishes the peers' phi values (the runtime's job).
    pub fn publish_phi(&self, phi: Vec<(NodeId, f64)>) {
        self.phi.store(Arc::new(phi));
    }

    fn command(&self, cmd: ClusterCommand) -> bool {
        match self.commands.try_send(cmd) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                warn!(?cmd, "membership command queue full; command dropped");
                false
            }
            // No runtime (stopped, or never started): nothing to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Tells gossip the local schema changed.
    pub fn schema_changed(&self) {
        self.command(ClusterCommand::SchemaChanged);
    }

    /// Announces the node's load in bytes.
    pub fn set_load(&self, bytes: u64) {
        self.command(ClusterCommand::Load(bytes));
    }

    /// Announces a new status of the local node (decommission).
    pub fn set_status(&self, status: NodeStatus) {
        self.command(ClusterCommand::SetStatus(status));
    }

    /// `--replace`: announces `tokens` (the dead `node`'s) as this node's, pending in its
    /// place. Ignored unless the runtime was started with a [`super::TokenPlan::Replace`]
    /// of `node` whose tokens are not yet known.
    pub fn replace(&self, node: NodeId, tokens: Vec<Token>) {
        self.command(ClusterCommand::Replace(node, tokens));
    }

    /// Announces the local node `moving` to `tokens` (a rebalance): the future ring has it
    /// there while it streams.
    pub fn start_move(&self, tokens: Vec<Token>) {
        self.command(ClusterCommand::StartMove(tokens));
    }

    /// Announces `tokens` as the local node's and `normal` (a move done).
    pub fn finish_move(&self, tokens: Vec<Token>) {
        self.command(ClusterCommand::FinishMove(tokens));
    }

    /// `removenode`: marks a dead node removed, cluster-wide. Blocks until the runtime
    /// answers (bounded by [`REMOVE_NODE_WAIT`]); unknown when no runtime runs.
    pub fn remove_node(&self, node: NodeId) -> Result<(), GossipError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if !self.command(ClusterCommand::RemoveNode(node, tx)) {
            return Err(GossipError::UnknownNode { node });
        }
        rx.recv_timeout(REMOVE_NODE_WAIT)
            .unwrap_or(Err(GossipError::UnknownNode { node }))
    }
}
