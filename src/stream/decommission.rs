//! Decommission: a live node hands every range it replicates to the nodes that gain it,
//! then leaves.
//!
//! 1. The node announces `leaving`: every view's future ring lacks its tokens, so each
//!    write of a range it hands off also goes to the range's new replicas (pending
//!    replicas, as for a join) while the node streams.
//! 2. It asks every live owner whether it sees the node leaving (`sees`), bounded by the
//!    ring delay, then waits the write grace ([`super::bootstrap::wait_until_seen`]).
//! 3. It plans ([`super::plan::lost_ranges`]): per table, every range it replicates now
//!    and not in the future ring, with the nodes that gain it. It reads each range in
//!    ring order from its own replica and pushes it a page at a time to each gaining
//!    node with the replica family's `apply` (a merge: idempotent). A push that fails is
//!    retried from the last page the target acknowledged, after a pause.
//! 4. When every range reached every target it announces `left`; it keeps answering
//!    clients (forwarding them) until it is stopped.
//!
//! Progress is kept in the `handoff` file ([`Decommission::persisted`], written empty
//! before `leaving` is announced, then every [`StreamOptions::checkpoint_bytes`] of a
//! range and at its end): a node restarted mid-decommission comes back `leaving` and
//! resumes, skipping the pushes done and resuming the others after their last recorded
//! key. Being leaving throughout, it had the writes of its ranges sent to their new
//! replicas meanwhile too. A move ([`super::movement`]) hands off the same way with its
//! progress in memory.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::bootstrap::{wait_until_seen, BootstrapError, StreamOptions};
use super::checkpoint::{BootstrapState, Progress, RangeCheckpoint, HANDOFF_FILE};
use super::peer::read_page;
use super::plan::lost_ranges;
use super::progress::{StreamInfo, StreamRegistry, StreamState};
use crate::cluster::{ClusterHandle, NodeStatus};
use crate::net::{Family, PeerNetwork};
use crate::replica::{RawCell, ReplicaHost, ReplicaRequest, ReplicaResponse, TokenRange};
use crate::ring::{NodeId, Token};
use crate::service::Service;

/// The leaving node's hand-off (see the module documentation).
pub struct Decommission {
    pub(super) service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    pub(super) cluster: Arc<ClusterHandle>,
    pub(super) registry: Arc<StreamRegistry>,
    opts: StreamOptions,
    /// The data directory's file that keeps the pushes' progress (`handoff` for a
    /// decommission, `move-push` for a move); `None` keeps it in memory.
    file: Option<&'static str>,
}

impl std::fmt::Debug for Decommission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decommission").finish_non_exhaustive()
    }
}

impl Decommission {
    /// A hand-off of the node behind `service`.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        registry: Arc<StreamRegistry>,
        opts: StreamOptions,
    ) -> Decommission {
        Decommission {
            service,
            net,
            cluster,
            registry,
            opts,
            file: None,
        }
    }

    /// The same hand-off keeping its progress in the data directory's `handoff` file
    /// (written every [`StreamOptions::checkpoint_bytes`] of a range and at its end): a
    /// node restarted mid-decommission comes back leaving and resumes each push after
    /// the last key recorded, skipping the ranges done.
    pub fn persisted(self) -> Decommission {
        self.persisted_as(HANDOFF_FILE)
    }

    /// The hand-off keeping its progress in the data directory's file `name` (the same
    /// format as `handoff`).
    pub(super) fn persisted_as(mut self, name: &'static str) -> Decommission {
        self.file = Some(name);
        self
    }

    /// Runs the decommission ([`Decommission::run`]) as a ring-change task of its
    /// registry (stopped at the node's shutdown), logging how it ended.
    pub fn spawn(self) {
        let registry = self.registry.clone();
        registry.spawn(move |shutdown| async move {
            match self.run(shutdown).await {
                Ok(()) => {}
                Err(BootstrapError::Shutdown) => {
                    tracing::warn!("shut down mid-decommission: the next start resumes it, leaving")
                }
                Err(e) => tracing::error!(error = %e, "decommission stopped"),
            }
        });
    }

    /// Records that a decommission starts (an empty `handoff` file), before `leaving` is
    /// announced: from then on a restart resumes it.
    pub fn begin(data_dir: &std::path::Path) -> Result<(), super::checkpoint::BootstrapFileError> {
        BootstrapState::default().save_named(data_dir, HANDOFF_FILE)
    }

    /// Whether a decommission was under way when the node stopped (its `handoff` file).
    pub fn under_way(
        data_dir: &std::path::Path,
    ) -> Result<bool, super::checkpoint::BootstrapFileError> {
        Ok(BootstrapState::load_named(data_dir, HANDOFF_FILE)?.is_some())
    }

    /// Forgets the decommission (cancelled, or the node left).
    async fn forget(&self) {
        let Some(file) = self.file else {
            return;
        };
        let dir = self.service.options().data_dir.clone();
        match self
            .opts
            .execution
            .run(move || BootstrapState::remove_named(&dir, file))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove the handoff file"),
            Err(e) => tracing::error!(error = %e, "cannot remove the handoff file"),
        }
    }

    /// Saves `book` in its file (one save at a time, so the file only moves
    /// forward).
    async fn save(&self, book: &Book) {
        let Some(file) = self.file else {
            return;
        };
        let _one = book.saving.lock().await;
        let snapshot = book.lock().clone();
        let dir = self.service.options().data_dir.clone();
        match self
            .opts
            .execution
            .run(move || snapshot.save_named(&dir, file))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the hand-off's progress"),
            Err(e) => tracing::warn!(error = %e, "cannot record the hand-off's progress"),
        }
    }

    /// Streams every range the node hands off (it announced `leaving` before), then
    /// announces `left`.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), BootstrapError> {
        tracing::warn!("decommission: leaving the ring; streaming every range this node replicates to its new replicas");
        wait_until_seen(&*self.net, &self.cluster, &self.opts, &mut shutdown).await?;
        let view = self.hand_off("decommission", &mut shutdown).await?;
        // Remembered before `left` is announced: restarted, the node stays out.
        let mark = crate::identity::Decommissioned {
            node: view.local,
            left_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let dir = self.service.options().data_dir.clone();
        match self.opts.execution.run(move || mark.save(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write the decommissioned file: do not restart this node on its data directory")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the decommissioned file: do not restart this node on its data directory")
            }
        }
        self.cluster.set_status(NodeStatus::Left);
        self.forget().await;
        tracing::warn!(
            "decommission: every range handed off; left the ring (stop this node when ready)"
        );
        Ok(())
    }

    /// Pushes every range the local node replicates now and not in the view's future ring
    /// to the nodes that gain it, planning again after each round until nothing is new
    /// (listed as `operation` in the registry); returns the view of the last plan. A
    /// range with no node to take it cancels the change: the node announces `normal`.
    pub(super) async fn hand_off(
        &self,
        operation: &'static str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Arc<crate::cluster::ClusterView>, BootstrapError> {
        let tables = self.service.table_options();
        // What a run before a restart pushed (a decommission resumed).
        let book = Book::new(if let Some(file) = self.file {
            let dir = self.service.options().data_dir.clone();
            self.opts
                .execution
                .run(move || BootstrapState::load_named(&dir, file))
                .await
                .map_err(|e| BootstrapError::Task(e.to_string()))??
                .unwrap_or_default()
        } else {
            BootstrapState::default()
        });
        // Pushed (table, range, target): a plan made again after a ring change pushes only
        // what is new.
        let mut pushed: BTreeSet<(String, Token, Token, NodeId)> = BTreeSet::new();
        let mut rounds = 0u32;
        let view = loop {
            let Some(view) = self.cluster.view() else {
                return Err(BootstrapError::Shutdown);
            };
            let Some(future) = view.future_ring() else {
                return Err(BootstrapError::Task(format!(
                    "the view shows no ring change during the {operation}"
                )));
            };
            let plan = lost_ranges(&view.ring(), &future, view.local, &tables);
            if let Some(orphan) = plan.iter().find(|l| l.targets.is_empty()) {
                // Other nodes leave too (a view that was stale when this one was
                // admitted): leaving would take the range's last copy away.
                self.cluster.set_status(NodeStatus::Normal);
                self.forget().await;
                let why = format!(
                    "{operation} cancelled: range ({}, {}] of table {:?} would keep no \
                     replica (other nodes are leaving too); this node is normal again",
                    orphan.range.start, orphan.range.end, orphan.table
                );
                tracing::error!("{why}");
                return Err(BootstrapError::Task(why));
            }
            let mut jobs = Vec::new();
            for lost in &plan {
                for &target in &lost.targets {
                    let key = (lost.table.clone(), lost.range.start, lost.range.end, target);
                    if pushed.contains(&key) {
                        continue;
                    }
                    let earlier = book.find(&key);
                    let slot = self.registry.add(StreamInfo {
                        state: match earlier.as_ref().map(|r| &r.progress) {
                            Some(Progress::Done) => StreamState::Done,
                            _ => StreamState::Queued,
                        },
                        bytes: earlier.as_ref().map_or(0, |r| r.bytes),
                        cells: earlier.as_ref().map_or(0, |r| r.cells),
                        ..StreamInfo::queued(operation, &lost.table, lost.range, target)
                    });
                    if earlier.is_none() {
                        book.lock().ranges.push(RangeCheckpoint::not_begun(
                            &lost.table,
                            lost.range,
                            target,
                        ));
                    }
                    jobs.push((key, slot));
                }
            }
            if jobs.is_empty() {
                break view;
            }
            // Planned from the view of the moment; once pushed, planned again: a node that
            // gained a range meanwhile and started leaving too gets replaced as a target.
            tracing::info!(
                ranges = plan.len(),
                streams = jobs.len(),
                tables = tables.len(),
                round = rounds,
                "{operation} planned: streaming every range this node hands off"
            );
            for (key, slot) in jobs {
                let (table, start, end, target) = &key;
                let range = TokenRange {
                    start: *start,
                    end: *end,
                };
                self.push_range(&book, table, range, *target, slot, shutdown)
                    .await?;
                pushed.insert(key);
            }
            rounds += 1;
        };
        Ok(view)
    }

    /// Pushes all of `range` of `table` to `target` (a removal's re-replication; progress
    /// in memory only).
    pub(super) async fn push_whole(
        &self,
        table: &str,
        range: TokenRange,
        target: NodeId,
        slot: usize,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        let book = Book::new(BootstrapState {
            replacing: None,
            ranges: vec![RangeCheckpoint::not_begun(table, range, target)],
        });
        self.push_range(&book, table, range, target, slot, shutdown)
            .await
    }

    /// Pushes `range` of `table` to `target` until every page is applied there, from
    /// where `book` says an earlier run stopped, recording its progress there.
    async fn push_range(
        &self,
        book: &Book,
        table: &str,
        range: TokenRange,
        target: NodeId,
        slot: usize,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        let key = (table.to_owned(), range.start, range.end, target);
        let mut after: Option<Vec<u8>> = match book.find(&key).map(|r| r.progress) {
            Some(Progress::Done) => return Ok(()),
            Some(Progress::After(k)) => Some(k),
            _ => None,
        };
        let mut unsaved = 0u64;
        let (service, name) = (self.service.clone(), table.to_owned());
        let total = self
            .opts
            .execution
            .run(move || super::sizes::range_bytes(service.replica(), &name, range))
            .await;
        if let Ok(Ok(total)) = total {
            self.registry.update(slot, |s| s.total = total);
        }
        loop {
            if *shutdown.borrow() {
                return Err(BootstrapError::Shutdown);
            }
            let addr = self.cluster.view().and_then(|v| {
                v.node(target)
                    .filter(|n| n.alive)
                    .and_then(|n| n.peer_address)
            });
            let Some(addr) = addr else {
                self.retrying(slot, format!("{target} is down"), shutdown)
                    .await;
                continue;
            };
            self.registry
                .update(slot, |s| s.state = StreamState::Running);
            let started = Instant::now();
            let page = self.read_page(table, range, after.clone()).await;
            let (cells, more) = match page {
                Ok(p) => p,
                Err(e) => {
                    self.retrying(slot, e, shutdown).await;
                    continue;
                }
            };
            let bytes: u64 = cells
                .iter()
                .map(|c| (c.key.len() + c.value.len()) as u64)
                .sum();
            let count = cells.len() as u64;
            let last = cells.last().map(|c| c.key.clone());
            if !cells.is_empty() {
                let body = ReplicaRequest::Apply { cells }.encode();
                let answer = self
                    .net
                    .call_node(
                        addr,
                        target,
                        Family::Replica,
                        body,
                        started + self.opts.call_timeout,
                    )
                    .await;
                match answer.map(|b| ReplicaResponse::decode(&b)) {
                    Ok(Ok(ReplicaResponse::Applied { .. })) => {}
                    other => {
                        self.retrying(slot, format!("push to {target}: {other:?}"), shutdown)
                            .await;
                        continue;
                    }
                }
            }
            let elapsed = started.elapsed();
            self.registry.page_done(slot, bytes, count, elapsed, more);
            book.update(&key, |r| {
                r.bytes += bytes;
                r.cells += count;
                r.progress = match (more, &last) {
                    (false, _) => Progress::Done,
                    (true, Some(k)) => Progress::After(k.clone()),
                    (true, None) => r.progress.clone(),
                };
            });
            unsaved += bytes;
            if !more || unsaved >= self.opts.checkpoint_bytes {
                self.save(book).await;
                unsaved = 0;
            }
            if !more {
                return Ok(());
            }
            if last.is_some() {
                after = last;
            }
            self.registry.throttle(bytes, elapsed, shutdown).await;
        }
    }

    /// Records a failure and pauses before the next attempt.
    async fn retrying(&self, slot: usize, why: String, shutdown: &mut watch::Receiver<bool>) {
        tracing::warn!(error = %why, "decommission stream retrying");
        self.registry.update(slot, |s| {
            s.state = StreamState::Retrying;
            s.error = Some(why);
        });
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(self.opts.retry_pause) => {}
        }
    }

    /// The next page of `range` from the local replica, after `after`: its cells and
    /// whether the range goes on.
    async fn read_page(
        &self,
        table: &str,
        range: TokenRange,
        after: Option<Vec<u8>>,
    ) -> Result<(Vec<RawCell>, bool), String> {
        let (service, table) = (self.service.clone(), table.to_owned());
        let budget = self.opts.page_bytes as usize;
        self.opts
            .execution
            .run(move || {
                let mode = service
                    .conflict_mode(&table)
                    .ok_or_else(|| format!("table {table:?} is gone"))?;
                let (more, cells) = read_page(
                    service.replica(),
                    mode,
                    &table,
                    range,
                    after.as_deref(),
                    budget,
                )
                .map_err(|e| e.to_string())?;
                Ok((cells, more))
            })
            .await
            .map_err(|e| format!("page task failed: {e}"))?
    }
}

/// A hand-off's pushes, by (table, range, target): what each pushed (the `handoff`
/// file's content), locked briefly, and the file's turn.
struct Book {
    state: std::sync::Mutex<BootstrapState>,
    saving: tokio::sync::Mutex<()>,
}

impl Book {
    fn new(state: BootstrapState) -> Book {
        Book {
            state: std::sync::Mutex::new(state),
            saving: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BootstrapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn matches(r: &RangeCheckpoint, key: &(String, Token, Token, NodeId)) -> bool {
        (&r.table, r.range.start, r.range.end, r.source) == (&key.0, key.1, key.2, key.3)
    }

    /// The record of the push `key`, if any.
    fn find(&self, key: &(String, Token, Token, NodeId)) -> Option<RangeCheckpoint> {
        self.lock()
            .ranges
            .iter()
            .find(|r| Book::matches(r, key))
            .cloned()
    }

    /// Changes the record of the push `key`.
    fn update(&self, key: &(String, Token, Token, NodeId), f: impl FnOnce(&mut RangeCheckpoint)) {
        if let Some(r) = self
            .lock()
            .ranges
            .iter_mut()
            .find(|r| Book::matches(r, key))
        {
            f(r);
        }
    }
}
