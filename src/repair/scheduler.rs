//! Which exchanges run, when, and what the node remembers of them.
//!
//! A *job* is one ring range of one table with one other replica of it. For every tracked
//! table (its replication factor above 1) and every range of the ring this node
//! replicates, the preference list of the range names the replicas:
//!
//! - background repair ([`Repairer::start`]) runs the jobs whose peer comes after this
//!   node in the list, so each pair of replicas of a range is compared by exactly one of
//!   them per round, and a round still covers every pair when a replica is down. A round
//!   spreads its jobs evenly over the configured period and never exceeds the configured
//!   bandwidth (it sleeps after a job until its bytes fit the rate); a job whose peer is
//!   down or whose tree is building is skipped until the next round;
//! - an on-demand repair ([`Repairer::repair`], `sibyl-admin repair`) runs every job of
//!   this node's ranges with every other replica at once, retries the jobs that fail
//!   after 1, 2 and 4 s, and reports each range that could still not be done with its
//!   reason; running it again completes them.
//!
//! Per (table, range, peer) the node records when it last completed an exchange
//! ([`Repairer::oldest_sync`]), in memory: a restart forgets it (it is a report, not yet
//! the tombstone watermark).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sibyl_protocol::{RepairState, RepairStatus, TableSync};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ledger::SyncLedger;
use super::session::{Session, SyncError, SyncStats};
use crate::cluster::ClusterHandle;
use crate::coordinator::placement::strategy;
use crate::net::PeerNetwork;
use crate::replica::ReplicaHost;
use crate::replica::{ReplicaExecution, TokenRange};
use crate::ring::NodeId;
use crate::service::Service;

/// How repair runs.
#[derive(Debug, Clone, Copy)]
pub struct RepairOptions {
    /// A background round covers every job within this period.
    pub period: Duration,
    /// Background bandwidth, bytes per second.
    pub rate_bytes: u64,
    /// Deadline of each peer call.
    pub call_timeout: Duration,
    /// Where engine work runs.
    pub execution: ReplicaExecution,
}

impl Default for RepairOptions {
    fn default() -> Self {
        RepairOptions {
            period: Duration::from_secs(crate::config::DEFAULT_REPAIR_PERIOD_SECS),
            rate_bytes: crate::config::DEFAULT_REPAIR_RATE_KB * 1024,
            call_timeout: Duration::from_secs(30),
            execution: ReplicaExecution::Blocking,
        }
    }
}

/// One range of one table to compare with one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The table.
    pub table: String,
    /// The ring range.
    pub range: TokenRange,
    /// The other replica.
    pub peer: NodeId,
    /// Its peer address (`None`: unknown or down).
    pub addr: Option<SocketAddr>,
}

/// Which peers a plan pairs this node with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Replicas after this node in each range's preference list (background rounds).
    Later,
    /// Every other replica (on-demand repair).
    All,
}

/// A range that could not be repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The job.
    pub job: Job,
    /// Why.
    pub reason: String,
}

/// The outcome of an on-demand repair.
#[derive(Debug, Clone, Default)]
pub struct RepairSummary {
    /// Jobs planned.
    pub jobs: u64,
    /// Jobs whose ranges differed.
    pub differed: u64,
    /// What the exchanges moved.
    pub stats: SyncStats,
    /// Jobs not done, with reasons.
    pub failed: Vec<Failed>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Rounds of retries of the failed jobs of an on-demand repair.
const RETRIES: u32 = 3;

/// The on-demand repairs of this node: the next id and the latest run's status.
#[derive(Debug, Default)]
struct Runs {
    next_id: u64,
    latest: Option<Arc<Mutex<RepairStatus>>>,
}

/// Why an on-demand repair cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Another one is running.
    #[error("repair {0} is still running; wait for it (sibyl-admin repair --status)")]
    Running(u64),
    /// The table has no tree here (unknown, or one replica).
    #[error("table {0:?} is not a replicated table of this node")]
    NotReplicated(String),
}

/// Plans and runs repair jobs for one node (see the module documentation).
pub struct Repairer {
    service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    opts: RepairOptions,
    ledger: Arc<SyncLedger>,
    totals: Mutex<(u64, SyncStats)>,
    runs: Mutex<Runs>,
}

impl std::fmt::Debug for Repairer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repairer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Repairer {
    /// A repairer of `service`'s replica over `net`, placing ranges by `cluster`'s view,
    /// recording exchanges in `ledger` (shared with the node's repair handler).
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        ledger: Arc<SyncLedger>,
        opts: RepairOptions,
    ) -> Repairer {
        Repairer {
            service,
            net,
            cluster,
            opts,
            ledger,
            totals: Mutex::new((0, SyncStats::default())),
            runs: Mutex::new(Runs::default()),
        }
    }

    /// The jobs of `table` (every tracked table when `None`) in `scope`, as the current
    /// view places them. Empty before gossip published a view.
    pub fn jobs(&self, table: Option<&str>, scope: Scope) -> Vec<Job> {
        let Some(view) = self.cluster.view() else {
            return Vec::new();
        };
        let ring = view.ring();
        let mut out = Vec::new();
        for (name, _) in self.service.replica().trees().all() {
            if table.is_some_and(|t| t != name.as_str()) {
                continue;
            }
            let Ok(schema) = self.service.schema(&name) else {
                continue;
            };
            let strategy = strategy(&schema.options);
            for i in 0..ring.tokens().len() {
                let Some((start, end)) = ring.range_at(i) else {
                    continue;
                };
                let replicas = ring.preference_list(&end, &strategy);
                let Some(me) = replicas.iter().position(|&n| n == view.local) else {
                    continue;
                };
                for (j, &peer) in replicas.iter().enumerate() {
                    let take = match scope {
                        Scope::Later => j > me,
                        Scope::All => j != me,
                    };
                    if !take {
                        continue;
                    }
                    let addr = view
                        .node(peer)
                        .filter(|n| n.alive)
                        .and_then(|n| n.peer_address);
                    out.push(Job {
                        table: name.clone(),
                        range: TokenRange { start, end },
                        peer,
                        addr,
                    });
                }
            }
        }
        out
    }

    /// Runs one job; on success records the second it started and moves the table's
    /// tombstone watermark ([`super::watermark`]).
    pub async fn run(&self, job: &Job) -> Result<SyncStats, SyncError> {
        let addr = job
            .addr
            .ok_or(SyncError::Net(crate::net::NetError::Closed))?;
        let began = self.service.replica().clock().now_secs();
        let stats = Session::new(
            self.service.clone(),
            self.net.clone(),
            self.opts.execution,
            (addr, job.peer),
            self.opts.call_timeout,
        )
        .sync(&job.table, job.range)
        .await?;
        let key = (job.table.clone(), job.range.start, job.range.end, job.peer);
        self.ledger.completed(key, began);
        {
            let mut totals = lock(&self.totals);
            totals.0 += 1;
            totals.1.add(&stats);
        }
        self.update_watermark(&job.table);
        Ok(stats)
    }

    /// Updates the watermark of every tracked table.
    pub fn update_watermarks(&self) {
        for (table, _) in self.service.replica().trees().all() {
            self.update_watermark(&table);
        }
    }

    /// Sets `table`'s watermark from the recorded exchanges: per ring range, the oldest
    /// start of the latest exchange with each other replica (0 when one is missing or
    /// this node is not a replica).
    fn update_watermark(&self, table: &str) {
        let (Some(marks), Some(view), Ok(schema)) = (
            self.service.watermarks(),
            self.cluster.view(),
            self.service.schema(table),
        ) else {
            return;
        };
        let ring = view.ring();
        let strategy = strategy(&schema.options);
        let synced = self.ledger.snapshot();
        let now = self.service.replica().clock().now_secs();
        let ranges: Vec<(TokenRange, u64)> = (0..ring.tokens().len())
            .filter_map(|i| ring.range_at(i))
            .map(|(start, end)| {
                let range = TokenRange { start, end };
                let replicas = ring.preference_list(&end, &strategy);
                if !replicas.contains(&view.local) {
                    return (range, 0);
                }
                let oldest = replicas
                    .iter()
                    .filter(|&&n| n != view.local)
                    .map(|&n| {
                        synced
                            .get(&(table.to_owned(), start, end, n))
                            .copied()
                            .unwrap_or(0)
                    })
                    .min()
                    .unwrap_or(now);
                (range, oldest)
            })
            .collect();
        marks.table(table).set_synced(&ranges);
    }

    /// Repairs every range of `table` (every tracked table when `None`) this node
    /// replicates with every other replica; `progress(done, total, stats so far)` is
    /// called after each job. Jobs that fail are tried again after 1, 2 and 4 s (a peer
    /// that just came back may still be in its connection backoff); those that fail
    /// every time are reported.
    pub async fn repair(
        &self,
        table: Option<&str>,
        mut progress: impl FnMut(u64, u64, &SyncStats),
    ) -> RepairSummary {
        let started = std::time::Instant::now();
        let mut pending = self.jobs(table, Scope::All);
        let mut summary = RepairSummary {
            jobs: pending.len() as u64,
            ..RepairSummary::default()
        };
        let mut done = 0u64;
        for attempt in 0..=RETRIES {
            let mut failed = Vec::new();
            for mut job in pending {
                job.addr = self.address_of(job.peer);
                let outcome = match job.addr {
                    None => Err(format!("replica {} is down or has no address", job.peer)),
                    Some(_) => self.run(&job).await.map_err(|e| e.to_string()),
                };
                match outcome {
                    Ok(s) => {
                        summary.differed += u64::from(s.differed);
                        summary.stats.add(&s);
                        done += 1;
                    }
                    Err(reason) => failed.push(Failed { job, reason }),
                }
                progress(done, summary.jobs, &summary.stats);
            }
            if failed.is_empty() || attempt == RETRIES {
                summary.failed = failed;
                break;
            }
            tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            pending = failed.into_iter().map(|f| f.job).collect();
        }
        progress(summary.jobs, summary.jobs, &summary.stats);
        summary.elapsed = started.elapsed();
        summary
    }

    /// The peer address of `node` if the current view has it up.
    fn address_of(&self, node: NodeId) -> Option<SocketAddr> {
        let view = self.cluster.view()?;
        view.node(node)
            .filter(|n| n.alive)
            .and_then(|n| n.peer_address)
    }

    /// The oldest start of the latest completed exchange of `table`'s jobs in the background plan (seconds
    /// since the epoch), `None` when one of them never completed since this node
    /// started.
    pub fn oldest_sync(&self, table: &str) -> Option<u64> {
        let synced = self.ledger.snapshot();
        let mut oldest = u64::MAX;
        for job in self.jobs(Some(table), Scope::Later) {
            let key = (job.table, job.range.start, job.range.end, job.peer);
            oldest = oldest.min(*synced.get(&key)?);
        }
        (oldest != u64::MAX).then_some(oldest)
    }

    /// Starts an on-demand repair of `table` (every tracked table when `None`) on a task
    /// of its own; returns its first status. One runs at a time.
    pub fn start_repair(
        self: &Arc<Self>,
        table: Option<String>,
    ) -> Result<RepairStatus, StartError> {
        if let Some(t) = &table {
            if self.service.replica().trees().get(t).is_none() {
                return Err(StartError::NotReplicated(t.clone()));
            }
        }
        let mut runs = lock(&self.runs);
        if let Some(latest) = &runs.latest {
            let s = lock(latest);
            if s.state == RepairState::Running {
                return Err(StartError::Running(s.id));
            }
        }
        runs.next_id += 1;
        let jobs = self.jobs(table.as_deref(), Scope::All).len() as u64;
        let status = Arc::new(Mutex::new(RepairStatus {
            id: runs.next_id,
            table: table.clone(),
            state: RepairState::Running,
            jobs,
            ..RepairStatus::default()
        }));
        runs.latest = Some(status.clone());
        drop(runs);
        let first = lock(&status).clone();
        let this = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let progress = status.clone();
            let summary = this
                .repair(table.as_deref(), |done, total, stats| {
                    let mut s = lock(&progress);
                    s.jobs = total;
                    s.jobs_done = done;
                    s.cells_sent = stats.cells_sent;
                    s.cells_received = stats.cells_received;
                    s.bytes_sent = stats.bytes_sent;
                    s.bytes_received = stats.bytes_received;
                    s.elapsed_ms = started.elapsed().as_millis() as u64;
                })
                .await;
            let mut s = lock(&status);
            s.jobs = summary.jobs;
            s.jobs_done = summary.jobs;
            s.differed = summary.differed;
            s.cells_sent = summary.stats.cells_sent;
            s.cells_received = summary.stats.cells_received;
            s.bytes_sent = summary.stats.bytes_sent;
            s.bytes_received = summary.stats.bytes_received;
            s.elapsed_ms = summary.elapsed.as_millis() as u64;
            s.failed = summary
                .failed
                .iter()
                .map(|f| {
                    format!(
                        "table {} range ({}, {}] with node {}: {}",
                        f.job.table, f.job.range.start, f.job.range.end, f.job.peer, f.reason
                    )
                })
                .collect();
            s.state = RepairState::Done;
            tracing::info!(
                id = s.id,
                jobs = s.jobs,
                differed = s.differed,
                failed = s.failed.len(),
                cells_sent = s.cells_sent,
                cells_received = s.cells_received,
                "repair finished"
            );
        });
        Ok(self.with_tables(first))
    }

    /// The status of repair `id` (0 = the latest; a status of state `None` when none
    /// ran), with every tracked table's sync times; `None` for an id this node does not
    /// know (only the latest is kept).
    pub fn repair_status(&self, id: u64) -> Option<RepairStatus> {
        let latest = lock(&self.runs).latest.clone();
        let status = match latest {
            Some(l) => {
                let s = lock(&l).clone();
                if id != 0 && id != s.id {
                    return None;
                }
                s
            }
            None if id == 0 => RepairStatus::default(),
            None => return None,
        };
        Some(self.with_tables(status))
    }

    fn with_tables(&self, mut status: RepairStatus) -> RepairStatus {
        let synced = self.ledger.snapshot();
        status.tables = self
            .service
            .replica()
            .trees()
            .all()
            .into_iter()
            .map(|(table, _)| {
                let jobs = self.jobs(Some(&table), Scope::Later);
                let times: Vec<u64> = jobs
                    .iter()
                    .filter_map(|j| {
                        synced
                            .get(&(j.table.clone(), j.range.start, j.range.end, j.peer))
                            .copied()
                    })
                    .collect();
                let oldest = (times.len() == jobs.len() && !jobs.is_empty())
                    .then(|| times.iter().copied().min())
                    .flatten();
                TableSync {
                    table,
                    jobs: jobs.len() as u32,
                    synced: times.len() as u32,
                    oldest_secs: oldest,
                }
            })
            .collect();
        status
    }

    /// Jobs completed since start and what they moved.
    pub fn totals(&self) -> (u64, SyncStats) {
        *lock(&self.totals)
    }

    /// Runs background rounds until `shutdown` turns true.
    pub fn start(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let jobs = self.jobs(None, Scope::Later);
                // Also for a node with no job of its own: its peers' exchanges with it
                // move its watermark.
                self.update_watermarks();
                let pace = self.opts.period / u32::try_from(jobs.len().max(1)).unwrap_or(u32::MAX);
                if jobs.is_empty() && pause(&mut shutdown, pace.min(Duration::from_secs(5))).await {
                    return;
                }
                for job in jobs {
                    // A round starts one pace after the last: a node that just started
                    // (its trees building) does not compare at once.
                    if pause(&mut shutdown, pace).await {
                        return;
                    }
                    let began = tokio::time::Instant::now();
                    let moved = match job.addr {
                        None => 0,
                        Some(_) => match self.run(&job).await {
                            Ok(s) => {
                                if s.differed {
                                    tracing::info!(
                                        table = %job.table,
                                        peer = %job.peer,
                                        pulled = s.cells_received,
                                        pushed = s.cells_sent,
                                        "repair: range differed and was synced"
                                    );
                                }
                                s.bytes_sent + s.bytes_received
                            }
                            Err(e) => {
                                tracing::debug!(table = %job.table, peer = %job.peer, error = %e, "repair job not done");
                                0
                            }
                        },
                    };
                    // Exchanges peers initiated with this node count too (the ledger).
                    self.update_watermarks();
                    // Past the pace, a job that moved many bytes waits until they fit the
                    // bandwidth.
                    let rate = Duration::from_secs_f64(moved as f64 / self.opts.rate_bytes as f64);
                    let wait = rate.saturating_sub(pace + began.elapsed());
                    if pause(&mut shutdown, wait).await {
                        return;
                    }
                }
            }
        })
    }
}

/// Sleeps `d` unless shutdown comes first; true when it did.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
