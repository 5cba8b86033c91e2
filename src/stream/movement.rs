//! Moves: a node changes its tokens while it serves, so that bytes follow a rebalance
//! plan ([`super::rebalance`]); and the REBALANCE answer, the plan from every node's
//! sizes.
//!
//! A move of node X to new tokens:
//! 1. X announces `moving` with the new tokens ([`crate::cluster::AppState::MovingTo`]):
//!    every view's future ring has X at the new tokens, so each write of a range that
//!    changes hands also goes to the range's new replicas (pending replicas, as for a
//!    join), while reads stay on the current ring.
//! 2. It waits until every live owner sees it moving, then the write grace
//!    ([`super::bootstrap::wait_until_seen`]).
//! 3. It pulls every range its new tokens gain from their current replicas (a
//!    bootstrap's streams), then pushes every range it loses to the nodes that gain it
//!    (a decommission's hand-off).
//! 4. It records the new tokens in its ring state file, then announces them, `normal`.
//!
//! Its progress is on disk: the `move` file (the new tokens, written before step 1), the
//! pull's checkpoints (`move-pull`, a bootstrap's format) and the push's (`move-push`, a
//! decommission's). Stopped or restarted before step 4, the node comes back `moving` to
//! the same tokens and resumes each stream after its last checkpoint; a restart after
//! step 4 finds the new tokens recorded and only removes the files. A failure cancels the
//! move at once: the node is `normal` with its old tokens, its files are removed, and
//! what it pulled or pushed stays until a cleanup (merges are idempotent, so running the
//! plan again sends it again harmlessly). One ring change at a time: a move starts only
//! while no other change is under way and every node is up, and joins and replacements
//! wait while a node moves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::bootstrap::{wait_until_seen, Bootstrap, BootstrapError, StreamOptions};
use super::checkpoint::{MoveState, MOVE_PUSH_FILE};
use super::decommission::Decommission;
use super::messages::{StreamRequest, StreamResponse};
use super::progress::StreamRegistry;
use super::rebalance::{plan, PlanOptions, TableDensity};
use super::sizes::{local_sizes, TableSizes, REBALANCE_BUCKETS};
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus};
use crate::coordinator::placement::strategy;
use crate::identity::RingState;
use crate::net::PeerNetwork;
use crate::replica::ReplicaHost;
use crate::ring::{NodeId, Partitioner, RingNode, Token};
use crate::service::cluster::token_value;
use crate::service::Service;
use sibyl_protocol::{RebalanceNode, RebalanceReport};

/// Longest wait for gossip to publish this node `moving`.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// What a move or a plan needs of the node.
#[derive(Clone)]
pub struct Mover {
    service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    registry: Arc<StreamRegistry>,
    opts: StreamOptions,
}

impl std::fmt::Debug for Mover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mover").finish_non_exhaustive()
    }
}

/// Why the cluster cannot move now (the message names what is in the way).
fn ready_to_move(view: &ClusterView) -> Result<(), String> {
    let busy = view.changes_under_way();
    if !busy.is_empty() {
        return Err(format!(
            "a ring change is under way ({busy}); one at a time: retry once it completes"
        ));
    }
    let down: Vec<String> = view
        .down()
        .into_iter()
        .filter(|n| view.ring().nodes().contains_key(n))
        .map(|n| n.to_string())
        .collect();
    if !down.is_empty() {
        return Err(format!(
            "node(s) {} down: their sizes are unknown and a move needs every replica; bring \
             them up or removenode them first",
            down.join(", ")
        ));
    }
    Ok(())
}

impl Mover {
    /// A mover of the node behind `service`.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        registry: Arc<StreamRegistry>,
        opts: StreamOptions,
    ) -> Mover {
        Mover {
            service,
            net,
            cluster,
            registry,
            opts,
        }
    }

    fn view(&self) -> Result<Arc<ClusterView>, String> {
        self.cluster
            .view()
            .ok_or_else(|| "the membership layer is stopped".to_owned())
    }

    /// REBALANCE: every node's sizes, then the plan (see [`super::rebalance`]). An `Err`
    /// says why no plan can be made now.
    pub async fn rebalance_plan(&self) -> Result<RebalanceReport, String> {
        let view = self.view()?;
        ready_to_move(&view)?;
        let tables = self.service.table_options();
        let names: Vec<String> = tables.iter().map(|(t, _)| t.clone()).collect();
        let ring = view.ring();
        // Per table, the bytes every node holds, summed.
        let mut sums: Vec<Vec<f64>> = vec![vec![0.0; REBALANCE_BUCKETS as usize]; names.len()];
        for &node in ring.nodes().keys() {
            let sizes = self.sizes_of(&view, node, &names).await?;
            for t in sizes {
                let Some(i) = names.iter().position(|n| *n == t.table) else {
                    continue;
                };
                for (s, b) in sums[i].iter_mut().zip(&t.buckets) {
                    *s += *b as f64;
                }
            }
        }
        let members: Vec<RingNode> = ring
            .nodes()
            .iter()
            .map(|(id, location)| RingNode {
                id: *id,
                location: location.clone(),
                tokens: ring.tokens_of(*id),
            })
            .collect();
        let densities: Vec<TableDensity> = tables
            .iter()
            .zip(sums)
            .map(|((_, options), sum)| {
                // One copy: the bytes over the replicas that hold them.
                let copies = strategy(options)
                    .total_replicas()
                    .clamp(1, members.len().max(1));
                TableDensity {
                    options: options.clone(),
                    buckets: sum.into_iter().map(|b| b / copies as f64).collect(),
                }
            })
            .collect();
        let partitioner = view.partitioner;
        let planned = tokio::task::spawn_blocking(move || {
            plan(partitioner, &members, &densities, PlanOptions::default())
        })
        .await
        .map_err(|e| format!("planning task failed: {e}"))?;
        let to_wire = |ts: &[Token]| ts.iter().map(token_value).collect::<Vec<i128>>();
        Ok(RebalanceReport {
            moved_bytes: planned.moved_bytes.round() as u64,
            tokens_moved: u32::try_from(planned.tokens_moved).unwrap_or(u32::MAX),
            nodes: planned
                .nodes
                .iter()
                .map(|n| RebalanceNode {
                    id: n.id.to_string(),
                    address: view
                        .node(n.id)
                        .and_then(|v| v.client_address)
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    owned_before: n.owned_before.round() as u64,
                    owned_after: n.owned_after.round() as u64,
                    tokens_before: to_wire(&n.tokens_before),
                    tokens_after: to_wire(&n.tokens_after),
                })
                .collect(),
        })
    }

    /// The size histograms of `node` (this one read locally, others asked).
    async fn sizes_of(
        &self,
        view: &ClusterView,
        node: NodeId,
        tables: &[String],
    ) -> Result<Vec<TableSizes>, String> {
        if node == view.local {
            let (service, tables) = (self.service.clone(), tables.to_vec());
            return self
                .opts
                .execution
                .run(move || local_sizes(service.replica(), &tables, REBALANCE_BUCKETS))
                .await
                .map_err(|e| format!("size task failed: {e}"))?
                .map_err(|e| format!("reading this node's sizes: {e}"));
        }
        let addr = view
            .node(node)
            .and_then(|n| n.peer_address)
            .ok_or_else(|| format!("node {node} has no known address"))?;
        let request = StreamRequest::Sizes {
            buckets: REBALANCE_BUCKETS,
            tables: tables.to_vec(),
        };
        let deadline = Instant::now() + self.opts.call_timeout;
        match request.call(&*self.net, addr, node, deadline).await {
            Ok(StreamResponse::Sized { tables }) => Ok(tables),
            Ok(StreamResponse::Error { message, .. }) => {
                Err(format!("node {node} could not read its sizes: {message}"))
            }
            Ok(other) => Err(format!("node {node} answered its sizes with {other:?}")),
            Err(e) => Err(format!("asking node {node} for its sizes: {e}")),
        }
    }

    /// MOVE: checks `tokens`, announces `moving` and starts the move in the background
    /// (see the module documentation); the message says what started. An `Err` says why
    /// the move is refused.
    pub async fn start(&self, tokens: Vec<i128>) -> Result<String, String> {
        let view = self.view()?;
        let me = view.local;
        let local = view
            .node(me)
            .ok_or_else(|| format!("node {me} is not in its own view"))?;
        match local.status {
            Some(NodeStatus::Normal) => {}
            Some(s) => {
                return Err(format!(
                    "node {me} is {}; only a normal node moves",
                    s.name()
                ))
            }
            None => return Err(format!("node {me} has no status yet")),
        }
        let new = parse_tokens(view.partitioner, &tokens)?;
        let mut old = local.tokens.to_vec();
        old.sort();
        if new == old {
            return Ok(format!(
                "node {me} already has these tokens; nothing to move"
            ));
        }
        if let Some(other) = view.nodes.values().find(|n| {
            n.id != me
                && !n.status.is_some_and(|s| s.is_departed())
                && new.iter().any(|t| {
                    n.tokens.contains(t) || n.moving_to.as_ref().is_some_and(|m| m.contains(t))
                })
        }) {
            return Err(format!(
                "a token is already owned or claimed by node {}",
                other.id
            ));
        }
        if self.registry.busy() {
            return Err(format!("node {me} is already streaming a ring change"));
        }
        ready_to_move(&view)?;
        // Recorded before it is announced: from then on a restart resumes the move.
        let (dir, record) = (
            self.service.options().data_dir.clone(),
            MoveState { to: new.clone() },
        );
        self.opts
            .execution
            .run(move || record.save(&dir))
            .await
            .map_err(|e| format!("move file task failed: {e}"))?
            .map_err(|e| format!("cannot record the move: {e}"))?;
        self.cluster.start_move(new.clone());
        let deadline = Instant::now() + PUBLISH_WAIT;
        while !self.cluster.view().is_some_and(|v| {
            v.node(me).is_some_and(|n| {
                n.status == Some(NodeStatus::Moving) && n.moving_to.as_deref() == Some(&new[..])
            })
        }) {
            if Instant::now() >= deadline {
                return Err("the gossip thread did not publish status moving in time".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
        }
        let count = new.len();
        self.spawn(new);
        Ok(format!(
            "node {me} is moving to {count} new tokens: it streams the ranges that change \
             hands, then owns them (`sibyl-admin streams` shows the streams)"
        ))
    }

    /// Runs the move to `tokens` (steps 2 to 4 of the module documentation) as a
    /// ring-change task of the registry: after MOVE, or at a start that found the `move`
    /// file (the node announced `moving` again). A failure cancels the move: the node is
    /// `normal` with its old tokens and the move's files are removed. A shutdown keeps
    /// them: the next start resumes.
    pub fn spawn(&self, tokens: Vec<Token>) {
        let mover = self.clone();
        self.registry.spawn(move |shutdown| async move {
            match mover.run(tokens, shutdown).await {
                Ok(()) => {}
                Err(BootstrapError::Shutdown) => {
                    tracing::warn!("shut down mid-move: the next start resumes it, moving")
                }
                Err(e) => {
                    mover.cluster.set_status(NodeStatus::Normal);
                    mover.forget().await;
                    tracing::error!(error = %e, "move stopped: cancelled, the node keeps its old tokens");
                }
            }
        });
    }

    /// Removes the move's files (done or cancelled).
    async fn forget(&self) {
        let dir = self.service.options().data_dir.clone();
        match self
            .opts
            .execution
            .run(move || MoveState::remove(&dir))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the move's files"),
            Err(e) => tracing::error!(error = %e, "cannot remove the move's files"),
        }
    }

    /// The move itself (steps 2 to 4 of the module documentation).
    async fn run(
        &self,
        tokens: Vec<Token>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        tracing::warn!(
            tokens = tokens.len(),
            "move: streaming the ranges the new tokens gain and those the old ones lose"
        );
        wait_until_seen(&*self.net, &self.cluster, &self.opts, &mut shutdown).await?;
        let (service, net, cluster, registry) = (
            self.service.clone(),
            self.net.clone(),
            self.cluster.clone(),
            self.registry.clone(),
        );
        Bootstrap::moving(
            service.clone(),
            net.clone(),
            cluster.clone(),
            service.options().data_dir.clone(),
            registry.clone(),
            self.opts,
        )
        .pull_gained("move", &mut shutdown)
        .await?;
        Decommission::new(service, net, cluster, registry, self.opts)
            .persisted_as(MOVE_PUSH_FILE)
            .hand_off("move", &mut shutdown)
            .await?;
        let view = self.view().map_err(BootstrapError::Task)?;
        let generation = view.node(view.local).map_or(0, |n| n.generation);
        let (dir, partitioner, saved) = (
            self.service.options().data_dir.clone(),
            view.partitioner,
            tokens.clone(),
        );
        self.opts
            .execution
            .run(move || {
                let mut state = RingState::load(&dir)?.unwrap_or(RingState {
                    partitioner,
                    generation,
                    tokens: Vec::new(),
                });
                state.tokens = saved;
                state.save(&dir)
            })
            .await
            .map_err(|e| BootstrapError::Task(format!("ring state task failed: {e}")))?
            .map_err(|e| BootstrapError::Task(format!("cannot record the new tokens: {e}")))?;
        self.cluster.finish_move(tokens);
        self.forget().await;
        tracing::warn!("move complete: this node owns its new tokens");
        Ok(())
    }
}

/// `tokens` as the topology carries them, checked for `partitioner`, sorted.
fn parse_tokens(partitioner: Partitioner, tokens: &[i128]) -> Result<Vec<Token>, String> {
    if tokens.is_empty() {
        return Err("no tokens: a node keeps at least one".into());
    }
    let mut out = Vec::with_capacity(tokens.len());
    for &t in tokens {
        let token = match partitioner {
            Partitioner::Murmur3 => i64::try_from(t).ok().map(Token::Murmur3),
            Partitioner::Md5 => u128::try_from(t)
                .ok()
                .filter(|v| *v <= 1u128 << 127)
                .map(Token::Md5),
        };
        out.push(token.ok_or_else(|| format!("token {t} is not a {} token", partitioner.name()))?);
    }
    out.sort();
    let distinct: BTreeSet<&Token> = out.iter().collect();
    if distinct.len() != out.len() {
        return Err("a token is repeated".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_tokens_are_checked_for_the_partitioner_and_repeats() {
        let m = Partitioner::Murmur3;
        assert_eq!(
            parse_tokens(m, &[5, -3]).unwrap(),
            vec![Token::Murmur3(-3), Token::Murmur3(5)]
        );
        assert!(parse_tokens(m, &[]).unwrap_err().contains("no tokens"));
        assert!(parse_tokens(m, &[1, 1]).unwrap_err().contains("repeated"));
        assert!(parse_tokens(m, &[i128::from(i64::MAX) + 1])
            .unwrap_err()
            .contains("not a murmur3 token"));
        let md5 = Partitioner::Md5;
        assert_eq!(parse_tokens(md5, &[7]).unwrap(), vec![Token::Md5(7)]);
        assert!(parse_tokens(md5, &[-1]).is_err());
    }
}
