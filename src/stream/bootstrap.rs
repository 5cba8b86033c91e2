//! Bootstrap: a joining node streams every range it gains before it owns any.
//!
//! 1. The node has announced its tokens as `joining`: every coordinator sends writes for
//!    those ranges to it as a pending replica (`KeyPlacement::pending`) while it streams.
//! 2. Once its view shows its tokens pending and its schema agrees with its peers', it
//!    asks every live token owner whether it sees the node pending too (`sees`), until
//!    all do (bounded by [`StreamOptions::ring_delay`], Cassandra's ring delay), then
//!    waits [`StreamOptions::write_grace`] so that writes coordinated before they knew
//!    have landed: from then on every write of a range it gains reaches it, so a page
//!    read afterwards misses nothing that the node does not also receive. Then it plans
//!    ([`super::plan`]): per table, every range it will replicate and does not now, each
//!    with its sources. The plan goes into the `bootstrap` file ([`super::checkpoint`])
//!    before the first page moves.
//! 3. Range by range it pulls pages from a live source ([`super::messages`]). A range
//!    that fits in its first page is applied by merge through the write path; the pages
//!    of a longer one, in ascending key order and merged at the source, are written
//!    straight into SSTables ([`crate::replica::ingest`]). Both are idempotent (a page
//!    received twice changes nothing). Every [`StreamOptions::checkpoint_bytes`] of the
//!    range and at its end the node makes what it received durable (finishes its SSTable,
//!    or fsyncs the commit log), then records the last key in the file. A source that
//!    fails mid-range hands over to the next one from the same key (the order of engine
//!    keys is the same on every replica); when none can serve, the range is retried
//!    after a pause. Throughput is capped by the registry's rate
//!    (`--stream-throughput-mb`). Once every range is streamed, the hash tree groups the
//!    ingested files marked building are rebuilt.
//! 4. When every range is done it returns; the node then announces `normal` and removes
//!    the file. A node killed meanwhile restarts joining, with its tokens and the file,
//!    and resumes each range after its last recorded key.
//!
//! What a source held for the range but had not received when its page was read arrives
//! by the write path (the node was a pending replica from step 1), hints, read repair or
//! anti-entropy.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::checkpoint::{BootstrapFileError, BootstrapState, Progress, RangeCheckpoint};
use super::messages::{StreamRequest, StreamResponse};
use super::plan::gained_by_local;
use super::progress::{StreamInfo, StreamRegistry, StreamState};
use crate::cluster::{ClusterHandle, ClusterView, NodeStatus};
use crate::coordinator::placement::strategy;
use crate::net::PeerNetwork;
use crate::replica::ingest::RangeIngest;
use crate::replica::{RawCell, ReplicaExecution, ReplicaHost};
use crate::ring::NodeId;
use crate::service::Service;

/// How a node streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Bytes of entries asked per page.
    pub page_bytes: u32,
    /// Bytes received between two checkpoints of a range (its SSTable finished or the
    /// commit log synced, then the `bootstrap` file): a crash re-applies at most this much
    /// of each range in progress (merges are idempotent), and the syncs stay off the
    /// per-page path. The last page of a range is always checkpointed.
    pub checkpoint_bytes: u64,
    /// Deadline of each page call.
    pub call_timeout: Duration,
    /// Pause before a range whose sources all failed is tried again.
    pub retry_pause: Duration,
    /// Longest wait for the schema to agree with the peers before planning (tables
    /// announced later reach the node by writes and repair).
    pub schema_wait: Duration,
    /// Longest wait for every live token owner to see the node pending before streaming
    /// anyway (an owner that does not answer is down or partitioned; what it coordinates
    /// without the node reaches it by hints, read repair and anti-entropy).
    pub ring_delay: Duration,
    /// Wait after every owner sees the node pending: a write coordinated just before has
    /// landed on its replicas within its write timeout.
    pub write_grace: Duration,
    /// Where engine and file work runs (the blocking pool on a node; inline in a
    /// simulation).
    pub execution: ReplicaExecution,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            page_bytes: 1 << 20,
            checkpoint_bytes: (1 << 20) * CHECKPOINT_PAGES,
            call_timeout: Duration::from_secs(30),
            retry_pause: Duration::from_secs(1),
            schema_wait: Duration::from_secs(30),
            ring_delay: Duration::from_secs(30),
            write_grace: Duration::from_secs(2),
            execution: ReplicaExecution::Blocking,
        }
    }
}

impl StreamOptions {
    /// The defaults with pages of `page_bytes` and a checkpoint every
    /// [`CHECKPOINT_PAGES`] pages.
    pub fn with_page_bytes(page_bytes: u32) -> StreamOptions {
        StreamOptions {
            page_bytes,
            checkpoint_bytes: u64::from(page_bytes) * CHECKPOINT_PAGES,
            ..StreamOptions::default()
        }
    }
}

/// Pages of a range between two of its checkpoints, by default.
pub const CHECKPOINT_PAGES: u64 = 16;

/// Why a bootstrap stopped before it completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The node is shutting down (the file keeps the progress).
    #[error("shut down before the bootstrap completed")]
    Shutdown,
    /// The bootstrap file could not be read or written.
    #[error(transparent)]
    File(#[from] BootstrapFileError),
    /// A local task failed.
    #[error("local task failed: {0}")]
    Task(String),
}

/// One page's failure (the range is resumed from another source or later).
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("peer call: {0}")]
    Net(#[from] crate::net::NetError),
    #[error("undecodable answer: {0}")]
    Decode(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("apply here failed: {0}")]
    Apply(String),
    #[error(transparent)]
    File(#[from] BootstrapFileError),
}

/// The joining node's bootstrap (see the module documentation).
pub struct Bootstrap {
    service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    /// Where the progress file lives.
    data_dir: PathBuf,
    /// The file of `data_dir` that keeps the progress ([`super::checkpoint::BOOTSTRAP_FILE`],
    /// or [`super::checkpoint::MOVE_PULL_FILE`] for a move).
    file: &'static str,
    registry: Arc<StreamRegistry>,
    opts: StreamOptions,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Polling interval while waiting for the view.
const VIEW_POLL: Duration = Duration::from_millis(100);

impl Bootstrap {
    /// A bootstrap of the node behind `service`, its state in `data_dir`.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        data_dir: PathBuf,
        registry: Arc<StreamRegistry>,
        opts: StreamOptions,
    ) -> Bootstrap {
        Bootstrap {
            service,
            net,
            cluster,
            data_dir,
            file: super::checkpoint::BOOTSTRAP_FILE,
            registry,
            opts,
        }
    }

    /// A pull of the ranges a moving node gains ([`Bootstrap::pull_gained`]), its
    /// progress in the `move-pull` file of `data_dir` (not the `bootstrap` file, which
    /// would make a restarted node join).
    pub(super) fn moving(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        data_dir: PathBuf,
        registry: Arc<StreamRegistry>,
        opts: StreamOptions,
    ) -> Bootstrap {
        Bootstrap {
            file: super::checkpoint::MOVE_PULL_FILE,
            ..Bootstrap::new(service, net, cluster, data_dir, registry, opts)
        }
    }

    /// Streams every range the local node gains in the view's future ring, as `operation`
    /// in the registry (a move, once every owner sees it moving).
    pub(super) async fn pull_gained(
        &self,
        operation: &'static str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        let Some(view) = self.cluster.view() else {
            return Err(BootstrapError::Shutdown);
        };
        let tables = self.service.table_options();
        // A plan saved before a restart is resumed; else the view of now plans.
        let mut state = self.load().await?;
        if state.ranges.is_empty() {
            state = BootstrapState {
                replacing: None,
                ranges: planned(&view, &tables),
            };
            self.save(&state).await?;
            tracing::info!(
                ranges = state.ranges.len(),
                tables = tables.len(),
                "{operation} planned: streaming every range this node gains"
            );
        } else {
            tracing::info!(
                ranges = state.ranges.len(),
                left = state
                    .ranges
                    .iter()
                    .filter(|r| r.progress != Progress::Done)
                    .count(),
                "{operation} resumed from its checkpoints"
            );
        }
        self.stream_all(&mut state, operation, shutdown).await
    }

    /// Runs the bootstrap ([`Bootstrap::run`]); when every range is streamed, announces
    /// `normal`, removes the node it replaces (`replacing`, `--replace`) if any, and
    /// removes the bootstrap file (in that order: a crash in between restarts joining,
    /// finds every range done and does the rest again). Failures are logged: the node
    /// stays joining, and a restart resumes.
    pub async fn run_to_normal(self, replacing: Option<NodeId>, shutdown: watch::Receiver<bool>) {
        match self.run(shutdown).await {
            Ok(()) => {
                self.cluster.set_status(NodeStatus::Normal);
                tracing::info!("bootstrap complete: this node owns its ranges");
                if let Some(node) = replacing {
                    self.remove_replaced(node).await;
                }
                let dir = self.data_dir.clone();
                match self
                    .opts
                    .execution
                    .run(move || BootstrapState::remove(&dir))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot remove the bootstrap file")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot remove the bootstrap file"),
                }
            }
            Err(BootstrapError::Shutdown) => {
                tracing::info!("shut down mid-bootstrap; the next start resumes it");
            }
            Err(e) => tracing::error!(
                error = %e,
                "bootstrap stopped; the node stays joining (restart it to resume)"
            ),
        }
    }

    /// Announces the replaced `node` as removed once this node is published `normal` in its
    /// place (so no view has the node gone before its replacement owns the tokens). Already
    /// removed (a restart after this step) is fine; any other failure is logged with what the
    /// operator can do.
    async fn remove_replaced(&self, node: NodeId) {
        let link = &self.cluster;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let normal = |v: Arc<ClusterView>| {
            v.node(v.local).and_then(|n| n.status) == Some(NodeStatus::Normal)
        };
        while !link.view().is_some_and(normal) {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
        }
        let departed = link
            .view()
            .and_then(|v| v.node(node).and_then(|n| n.status))
            .is_some_and(|s| s.is_departed());
        if departed {
            return;
        }
        let remover = link.clone();
        // On the blocking pool whatever the execution mode: `remove_node` waits for the
        // gossip task's answer, which an inline call would keep from running.
        match tokio::task::spawn_blocking(move || remover.remove_node(node)).await {
            Ok(Ok(())) => {
                tracing::info!(replaced = %node, "replacement complete: node {node} announced as removed")
            }
            Ok(Err(e)) => {
                tracing::error!(replaced = %node, error = %e, "replacement complete, but node {node} could not be announced as removed: `sibyl-admin removenode {node}` on a live node")
            }
            Err(e) => {
                tracing::error!(replaced = %node, error = %e, "replacement complete, but removing node {node} failed: `sibyl-admin removenode {node}` on a live node")
            }
        }
    }

    /// Streams every range the node gains (see the module documentation); returns once
    /// all are applied, or with [`BootstrapError::Shutdown`] when `shutdown` fires first.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), BootstrapError> {
        let mut state = self.load().await?;
        if state.ranges.is_empty() {
            self.wait_for_plan_view(&mut shutdown).await?;
            wait_until_seen(&*self.net, &self.cluster, &self.opts, &mut shutdown).await?;
            let Some(view) = self.cluster.view() else {
                return Err(BootstrapError::Shutdown);
            };
            let tables = self.service.table_options();
            state.ranges = planned(&view, &tables);
            tracing::info!(
                ranges = state.ranges.len(),
                tables = tables.len(),
                "bootstrap planned: streaming every range this node gains"
            );
            self.save(&state).await?;
        } else {
            let left = state
                .ranges
                .iter()
                .filter(|r| r.progress != Progress::Done)
                .count();
            tracing::info!(
                ranges = state.ranges.len(),
                left,
                "bootstrap resumed from its checkpoints"
            );
        }
        // Nobody reads a joining node: its files are compacted once, after the streams,
        // not while they arrive.
        let _hold = self.service.replica().engine().hold_compactions();
        self.stream_all(&mut state, "bootstrap", &mut shutdown)
            .await
    }

    /// Streams every range of `state` not done yet, listed as `operation` in the registry.
    async fn stream_all(
        &self,
        state: &mut BootstrapState,
        operation: &'static str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        let slots: Vec<usize> = state
            .ranges
            .iter()
            .map(|r| {
                self.registry.add(StreamInfo {
                    state: if r.progress == Progress::Done {
                        StreamState::Done
                    } else {
                        StreamState::Queued
                    },
                    bytes: r.bytes,
                    cells: r.cells,
                    ..StreamInfo::queued(operation, &r.table, r.range, r.source)
                })
            })
            .collect();
        // Ranges stream RANGES_AT_ONCE at a time: one range is a chain of round trips
        // (fetch, apply, checkpoint), so several keep both nodes and the network busy.
        let shared = Shared {
            saved: std::sync::Mutex::new(state.clone()),
            state: std::sync::Mutex::new(std::mem::take(state)),
            next: std::sync::atomic::AtomicUsize::new(0),
            checkpoint: tokio::sync::Mutex::new(()),
            ingested: std::sync::atomic::AtomicBool::new(false),
        };
        let worker = || {
            let mut shutdown = shutdown.clone();
            let (shared, slots) = (&shared, &slots);
            async move {
                loop {
                    let i = shared
                        .next
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&slot) = slots.get(i) else {
                        return Ok(());
                    };
                    self.stream_range(shared, i, slot, &mut shutdown).await?;
                }
            }
        };
        let results: [Result<(), BootstrapError>; RANGES_AT_ONCE] =
            tokio::join!(worker(), worker(), worker(), worker()).into();
        if shared.ingested.load(std::sync::atomic::Ordering::Relaxed) {
            self.rebuild_trees().await;
        }
        *state = shared.state.into_inner().unwrap_or_else(|p| p.into_inner());
        for r in results {
            r?;
        }
        let (bytes, cells) = state
            .ranges
            .iter()
            .fold((0u64, 0u64), |(b, c), r| (b + r.bytes, c + r.cells));
        tracing::info!(
            ranges = state.ranges.len(),
            bytes,
            cells,
            "{operation} streamed every range"
        );
        Ok(())
    }

    /// Waits until the view shows this node joining with its tokens (so the future ring
    /// holds them) and the schema agrees with the live peers (bounded by
    /// [`StreamOptions::schema_wait`]).
    async fn wait_for_plan_view(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Arc<ClusterView>, BootstrapError> {
        let mut schema_deadline = None;
        loop {
            if *shutdown.borrow() {
                return Err(BootstrapError::Shutdown);
            }
            if let Some(v) = self.cluster.view() {
                let pending =
                    v.node(v.local).is_some_and(|n| n.is_pending()) && v.future_ring().is_some();
                if pending {
                    let deadline =
                        *schema_deadline.get_or_insert(Instant::now() + self.opts.schema_wait);
                    if crate::node::schema_agreed(&v) || Instant::now() >= deadline {
                        return Ok(v);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(VIEW_POLL) => {}
            }
        }
    }

    /// Streams range `i` of `shared`'s state to the end, source after source.
    async fn stream_range(
        &self,
        shared: &Shared,
        i: usize,
        slot: usize,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BootstrapError> {
        let mut sized = false;
        loop {
            let Some(r) = shared.range(i) else {
                return Ok(());
            };
            if r.progress == Progress::Done {
                self.registry.update(slot, |s| s.state = StreamState::Done);
                return Ok(());
            }
            if *shutdown.borrow() {
                return Err(BootstrapError::Shutdown);
            }
            let sources = self.sources(&r.table, r.range, r.source);
            if let (false, Some(&(node, addr))) = (sized, sources.first()) {
                if let Some(total) = self.range_size(addr, node, &r.table, r.range).await {
                    self.registry.update(slot, |s| s.total = total);
                    sized = true;
                }
            }
            let mut last_error = None;
            for (node, addr) in sources {
                self.registry.update(slot, |s| {
                    s.peer = node;
                    s.state = StreamState::Running;
                });
                match self.pull_from(shared, i, slot, node, addr, shutdown).await {
                    Ok(()) => break,
                    Err(PullStop::Shutdown) => return Err(BootstrapError::Shutdown),
                    Err(PullStop::Failed(e)) => {
                        tracing::warn!(%node, error = %e, "stream page failed; trying another source");
                        last_error = Some(e.to_string());
                    }
                }
            }
            if shared
                .range(i)
                .is_some_and(|r| r.progress == Progress::Done)
            {
                continue;
            }
            let why = last_error.unwrap_or_else(|| "no live source".to_owned());
            self.registry.update(slot, |s| {
                s.state = StreamState::Retrying;
                s.error = Some(why.clone());
            });
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(self.opts.retry_pause) => {}
            }
        }
    }

    /// The live sources of `range` of `table`, as the current ring places it: the one the
    /// range was last streamed from first (it holds the keys in the same order, and its
    /// pages are warm), then those that lose the range, then the others.
    fn sources(
        &self,
        table: &str,
        range: crate::replica::TokenRange,
        last: NodeId,
    ) -> Vec<(NodeId, std::net::SocketAddr)> {
        let (Some(view), Ok(schema)) = (self.cluster.view(), self.service.schema(table)) else {
            return Vec::new();
        };
        let strategy = strategy(&schema.options);
        let before = view.ring().preference_list(&range.end, &strategy);
        let after = view
            .future_ring()
            .map(|f| f.preference_list(&range.end, &strategy))
            .unwrap_or_default();
        let mut order: Vec<NodeId> = Vec::new();
        if before.contains(&last) {
            order.push(last);
        }
        order.extend(before.iter().filter(|n| !after.contains(n)));
        order.extend(before.iter().filter(|n| after.contains(n)));
        let mut seen = std::collections::BTreeSet::new();
        order
            .into_iter()
            .filter(|n| *n != view.local && seen.insert(*n))
            .filter_map(|n| {
                let node = view.node(n)?;
                node.alive.then_some((n, node.peer_address?))
            })
            .collect()
    }

    /// Pulls range `i` from `node` until done. A range longer than one page is ingested
    /// ([`crate::replica::ingest`]): its pages go straight into SSTables, finished at each
    /// checkpoint. A range that fits in its first page is applied through the write path
    /// instead (a file per tiny range would only feed compaction).
    async fn pull_from(
        &self,
        shared: &Shared,
        i: usize,
        slot: usize,
        node: NodeId,
        addr: std::net::SocketAddr,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PullStop> {
        let Some(r) = shared.range(i) else {
            return Ok(());
        };
        let Some(mode) = self.service.conflict_mode(&r.table) else {
            return Err(PullStop::Failed(PageError::Apply(format!(
                "no table {:?} here",
                r.table
            ))));
        };
        let mut ingest = RangeIngest::new(&r.table, mode);
        let result = self
            .pull_pages(shared, i, slot, (node, addr), shutdown, &mut ingest)
            .await;
        if ingest.is_open() {
            // Pages ingested since the range's last checkpoint: durable now, or forgotten
            // (the range resumes from its checkpoint).
            if let Err(e) = self.ingest(&mut ingest, Vec::new(), true).await {
                tracing::warn!(table = %r.table, error = %e, "could not finish a stopped stream's ingestion; the range resumes from its last checkpoint");
                shared.rewind(i);
                if result.is_ok() {
                    return Err(PullStop::Failed(e));
                }
            }
        }
        result
    }

    /// The pages of [`Bootstrap::pull_from`].
    async fn pull_pages(
        &self,
        shared: &Shared,
        i: usize,
        slot: usize,
        (node, addr): (NodeId, std::net::SocketAddr),
        shutdown: &mut watch::Receiver<bool>,
        ingest: &mut RangeIngest,
    ) -> Result<(), PullStop> {
        let Some(r) = shared.range(i) else {
            return Ok(());
        };
        let (table, range) = (r.table.clone(), r.range);
        let after = match &r.progress {
            Progress::Done => return Ok(()),
            Progress::NotBegun => None,
            Progress::After(k) => Some(k.clone()),
        };
        // Applied since the range's last checkpoint (the in-memory state runs ahead of the
        // file by this much; an interrupted pull resumes from memory, a restart from the
        // file).
        let mut unsynced = 0u64;
        // Pages applied through the write path since the last checkpoint.
        let mut logged = false;
        let mut started = Instant::now();
        let mut page = self.fetch(addr, node, &table, range, after.clone()).await?;
        loop {
            if *shutdown.borrow() {
                return Err(PullStop::Shutdown);
            }
            let (more, cells) = page;
            let page_bytes: u64 = cells
                .iter()
                .map(|c| (c.key.len() + c.value.len()) as u64)
                .sum();
            let page_cells = cells.len() as u64;
            let last_key = cells.last().map(|c| c.key.clone());
            // The next page is asked for while this one is applied: the source reads and
            // sends while this node merges.
            let next_after = match (&last_key, shared.range(i).map(|r| r.progress)) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(Progress::After(k))) => Some(k),
                _ => None,
            };
            let ingesting = more || ingest.is_open();
            if ingesting {
                shared
                    .ingested
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            } else {
                logged = true;
            }
            let apply = async {
                if ingesting {
                    self.ingest(ingest, cells, false).await
                } else {
                    self.apply(cells).await
                }
            };
            let (applied, next) = if more {
                let (a, n) = tokio::join!(apply, self.fetch(addr, node, &table, range, next_after));
                (a, Some(n))
            } else {
                (apply.await, None)
            };
            applied.map_err(PullStop::Failed)?;
            unsynced += page_bytes;
            if let Some(r) = shared.lock().ranges.get_mut(i) {
                r.source = node;
                r.bytes += page_bytes;
                r.cells += page_cells;
                r.progress = match (more, last_key) {
                    (false, _) => Progress::Done,
                    (true, Some(k)) => Progress::After(k),
                    // A page with nothing that says more: the source's budget is broken;
                    // ask again from the same place.
                    (true, None) => r.progress.clone(),
                };
            }
            if !more || unsynced >= self.opts.checkpoint_bytes {
                // Every page of the range applied so far is made durable, then recorded.
                if ingest.is_open() {
                    self.ingest(ingest, Vec::new(), true)
                        .await
                        .map_err(PullStop::Failed)?;
                }
                if std::mem::take(&mut logged) {
                    self.sync().await.map_err(PullStop::Failed)?;
                }
                // One checkpoint at a time, so the file only moves forward.
                let _one = shared.checkpoint.lock().await;
                let snapshot = shared.checkpointed(i);
                self.save(&snapshot)
                    .await
                    .map_err(|e| PullStop::Failed(e.into()))?;
                unsynced = 0;
            }
            let elapsed = started.elapsed();
            self.registry
                .page_done(slot, page_bytes, page_cells, elapsed, more);
            self.registry.throttle(page_bytes, elapsed, shutdown).await;
            match next {
                None => return Ok(()),
                Some(next) => {
                    started = Instant::now();
                    page = next?;
                }
            }
        }
    }

    /// The bytes of `range` of `table` at `node`, estimated (for `sibyl-admin streams`);
    /// `None` when it cannot say.
    async fn range_size(
        &self,
        addr: std::net::SocketAddr,
        node: NodeId,
        table: &str,
        range: crate::replica::TokenRange,
    ) -> Option<u64> {
        let request = StreamRequest::RangeSize {
            table: table.to_owned(),
            range,
        };
        let deadline = Instant::now() + self.opts.call_timeout;
        match request.call(&*self.net, addr, node, deadline).await {
            Ok(StreamResponse::RangeSized { bytes }) => Some(bytes),
            _ => None,
        }
    }

    /// One page of `range` of `table` from `node` at `addr`, after `after`: whether the
    /// range goes on, and its cells.
    async fn fetch(
        &self,
        addr: std::net::SocketAddr,
        node: NodeId,
        table: &str,
        range: crate::replica::TokenRange,
        after: Option<Vec<u8>>,
    ) -> Result<(bool, Vec<RawCell>), PullStop> {
        let request = StreamRequest::Page {
            table: table.to_owned(),
            range,
            after,
            max_bytes: self.opts.page_bytes,
        };
        let deadline = Instant::now() + self.opts.call_timeout;
        match request.call(&*self.net, addr, node, deadline).await {
            Ok(StreamResponse::Entries { more, cells }) => Ok((more, cells)),
            Ok(StreamResponse::Error { code, message }) => Err(PullStop::Failed(
                PageError::Refused(format!("{code:?}: {message}")),
            )),
            Ok(other) => Err(PullStop::Failed(PageError::Decode(format!(
                "unexpected answer {other:?}"
            )))),
            Err(super::messages::CallFailure::Net(e)) => Err(PullStop::Failed(e.into())),
            Err(e) => Err(PullStop::Failed(PageError::Decode(e.to_string()))),
        }
    }

    /// Applies a page by merge (through the replica: hash trees and watermarks see it).
    async fn apply(&self, cells: Vec<RawCell>) -> Result<(), PageError> {
        if cells.is_empty() {
            return Ok(());
        }
        let service = self.service.clone();
        self.opts
            .execution
            .run(move || {
                service
                    .replica()
                    .apply(&cells, |t| service.conflict_mode(t))
                    .map(|_| ())
                    .map_err(|e| PageError::Apply(e.to_string()))
            })
            .await
            .map_err(|e| PageError::Apply(format!("apply task failed: {e}")))?
    }

    /// Adds a page to `ingest` and, with `finish`, finishes its open file (durable and
    /// visible). A failed task leaves `ingest` empty (its unfinished file is removed).
    async fn ingest(
        &self,
        ingest: &mut RangeIngest,
        cells: Vec<RawCell>,
        finish: bool,
    ) -> Result<(), PageError> {
        let service = self.service.clone();
        let mut taken = std::mem::replace(ingest, RangeIngest::new(ingest.table(), ingest.mode()));
        let (back, result) = self
            .opts
            .execution
            .run(move || {
                let replica = service.replica();
                let mut result =
                    replica.ingest_page(&mut taken, &cells, |t| service.conflict_mode(t));
                if result.is_ok() && finish {
                    result = replica.finish_ingest(&mut taken);
                }
                (taken, result.map_err(|e| PageError::Apply(e.to_string())))
            })
            .await
            .map_err(|e| PageError::Apply(format!("ingest task failed: {e}")))?;
        *ingest = back;
        result
    }

    /// Rebuilds the tree groups ingestion left building (blocking scans, off the async
    /// threads). A failure is logged: the groups stay building, and the node rebuilds
    /// them at its next start.
    async fn rebuild_trees(&self) {
        let service = self.service.clone();
        let started = std::time::Instant::now();
        match self
            .opts
            .execution
            .run(move || service.replica().rebuild_trees())
            .await
        {
            Ok(Ok(keys)) => {
                tracing::info!(keys, elapsed = ?started.elapsed(), "hash tree groups of the ingested ranges rebuilt")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot rebuild the hash tree groups of the ingested ranges; they are rebuilt at the next start")
            }
            Err(e) => tracing::warn!(error = %e, "tree rebuild task failed"),
        }
    }

    /// Makes every page applied so far durable (the checkpoint after it must never name
    /// a key whose page a crash could lose).
    async fn sync(&self) -> Result<(), PageError> {
        let service = self.service.clone();
        self.opts
            .execution
            .run(move || {
                service
                    .replica()
                    .engine()
                    .sync()
                    .map_err(|e| PageError::Apply(e.to_string()))
            })
            .await
            .map_err(|e| PageError::Apply(format!("sync task failed: {e}")))?
    }

    async fn load(&self) -> Result<BootstrapState, BootstrapError> {
        let (dir, file) = (self.data_dir.clone(), self.file);
        let loaded = self
            .opts
            .execution
            .run(move || BootstrapState::load_named(&dir, file))
            .await
            .map_err(|e| BootstrapError::Task(e.to_string()))??;
        Ok(loaded.unwrap_or_default())
    }

    async fn save(&self, state: &BootstrapState) -> Result<(), BootstrapFileError> {
        let (dir, file) = (self.data_dir.clone(), self.file);
        let (path, state) = (dir.join(file), state.clone());
        match self
            .opts
            .execution
            .run(move || state.save_named(&dir, file))
            .await
        {
            Ok(r) => r,
            Err(e) => Err(BootstrapFileError::Io {
                path,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// The ranges the local node gains in `view` ([`gained_by_local`]), none begun.
fn planned(
    view: &ClusterView,
    tables: &[(String, sibyl_protocol::TableOptions)],
) -> Vec<RangeCheckpoint> {
    gained_by_local(view, tables)
        .into_iter()
        .map(|g| RangeCheckpoint::not_begun(&g.table, g.range, NodeId(0)))
        .collect()
}

/// Ranges streamed at once by a bootstrap or a move.
const RANGES_AT_ONCE: usize = 4;

/// A bootstrap's state while its ranges stream at once: the ranges (locked briefly, never
/// across an await), the next range to take, and the checkpoint's turn.
struct Shared {
    state: std::sync::Mutex<BootstrapState>,
    /// What the file may say: each range as of its own last checkpoint (a range's pages
    /// in an ingestion not finished yet are not durable, so another range's checkpoint
    /// must not record them).
    saved: std::sync::Mutex<BootstrapState>,
    next: std::sync::atomic::AtomicUsize,
    checkpoint: tokio::sync::Mutex<()>,
    /// Some range was ingested: the trees have building groups to rebuild at the end.
    ingested: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, BootstrapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of range `i`'s checkpoint.
    fn range(&self, i: usize) -> Option<RangeCheckpoint> {
        self.lock().ranges.get(i).cloned()
    }

    /// Records range `i` as it is now in what the file may say (every page it counts is
    /// durable); returns the state to save.
    fn checkpointed(&self, i: usize) -> BootstrapState {
        let now = self.range(i);
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(now), Some(slot)) = (now, saved.ranges.get_mut(i)) {
            *slot = now;
        }
        saved.clone()
    }

    /// Puts range `i` back to its last checkpoint (pages after it were lost).
    fn rewind(&self, i: usize) {
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ranges
            .get(i)
            .cloned();
        if let (Some(saved), Some(slot)) = (saved, self.lock().ranges.get_mut(i)) {
            *slot = saved;
        }
    }
}

/// Why a pull from one source stopped.
#[derive(Debug)]
enum PullStop {
    Shutdown,
    Failed(PageError),
}

/// Asks every live token owner whether it sees this node's ring change (joining or
/// leaving) until all do (bounded by the ring delay), then waits the write grace:
/// from then on every write of a range that moves reaches the range's new replicas.
pub(super) async fn wait_until_seen(
    net: &dyn PeerNetwork,
    cluster: &ClusterHandle,
    opts: &StreamOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), BootstrapError> {
    let deadline = Instant::now() + opts.ring_delay;
    loop {
        if *shutdown.borrow() {
            return Err(BootstrapError::Shutdown);
        }
        let Some(view) = cluster.view() else {
            return Err(BootstrapError::Shutdown);
        };
        let owners: Vec<(NodeId, std::net::SocketAddr)> = view
            .ring()
            .nodes()
            .keys()
            .filter(|&&n| n != view.local)
            .filter_map(|&n| {
                let node = view.node(n)?;
                node.alive.then_some((n, node.peer_address?))
            })
            .collect();
        let mut unaware = Vec::new();
        for (node, addr) in owners {
            let seen = StreamRequest::Sees { node: view.local }
                .call(net, addr, node, Instant::now() + opts.call_timeout)
                .await
                .is_ok_and(|r| r == StreamResponse::Seen { changing: true });
            if !seen {
                unaware.push(node);
            }
        }
        if unaware.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(?unaware, "streaming although some owners do not see this node pending yet (ring delay passed); what they coordinate meanwhile reaches it by hints, read repair and anti-entropy");
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(VIEW_POLL) => {}
        }
    }
    tokio::select! {
        _ = shutdown.changed() => Err(BootstrapError::Shutdown),
        _ = tokio::time::sleep(opts.write_grace) => Ok(()),
    }
}
