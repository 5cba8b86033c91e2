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
//!   this node's ranges with every other replica at once, and reports each range that
//!   could not be done with its reason; running it again completes them.
//!
//! Per (table, range, peer) the node records when it last completed an exchange
//! ([`Repairer::oldest_sync`]), in memory: a restart forgets it (it is a report, not yet
//! the tombstone watermark).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::session::{Session, SyncError, SyncStats};
use crate::cluster::ClusterHandle;
use crate::coordinator::placement::strategy;
use crate::net::PeerNetwork;
use crate::replica::ReplicaHost;
use crate::replica::{ReplicaExecution, TokenRange};
use crate::ring::{NodeId, Token};
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

type SyncKey = (String, Token, Token, NodeId);

/// Plans and runs repair jobs for one node (see the module documentation).
pub struct Repairer {
    service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    opts: RepairOptions,
    synced: Mutex<HashMap<SyncKey, u64>>,
    totals: Mutex<(u64, SyncStats)>,
}

impl std::fmt::Debug for Repairer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repairer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Repairer {
    /// A repairer of `service`'s replica over `net`, placing ranges by `cluster`'s view.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        opts: RepairOptions,
    ) -> Repairer {
        Repairer {
            service,
            net,
            cluster,
            opts,
            synced: Mutex::new(HashMap::new()),
            totals: Mutex::new((0, SyncStats::default())),
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

    /// Runs one job; on success records the time it completed.
    pub async fn run(&self, job: &Job) -> Result<SyncStats, SyncError> {
        let addr = job
            .addr
            .ok_or(SyncError::Net(crate::net::NetError::Closed))?;
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
        lock(&self.synced).insert(key, now_secs());
        let mut totals = lock(&self.totals);
        totals.0 += 1;
        totals.1.add(&stats);
        Ok(stats)
    }

    /// Repairs every range of `table` (every tracked table when `None`) this node
    /// replicates with every other replica; `progress(done, total, stats so far)` is
    /// called after each job.
    pub async fn repair(
        &self,
        table: Option<&str>,
        mut progress: impl FnMut(u64, u64, &SyncStats),
    ) -> RepairSummary {
        let started = std::time::Instant::now();
        let jobs = self.jobs(table, Scope::All);
        let mut summary = RepairSummary {
            jobs: jobs.len() as u64,
            ..RepairSummary::default()
        };
        for (i, job) in jobs.iter().enumerate() {
            match job.addr {
                None => summary.failed.push(Failed {
                    job: job.clone(),
                    reason: format!("replica {} is down or has no address", job.peer),
                }),
                Some(_) => match self.run(job).await {
                    Ok(s) => {
                        summary.differed += u64::from(s.differed);
                        summary.stats.add(&s);
                    }
                    Err(e) => summary.failed.push(Failed {
                        job: job.clone(),
                        reason: e.to_string(),
                    }),
                },
            }
            progress(i as u64 + 1, summary.jobs, &summary.stats);
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// The oldest completed exchange of `table`'s jobs in the background plan (seconds
    /// since the epoch), `None` when one of them never completed since this node
    /// started.
    pub fn oldest_sync(&self, table: &str) -> Option<u64> {
        let synced = lock(&self.synced);
        let mut oldest = u64::MAX;
        for job in self.jobs(Some(table), Scope::Later) {
            let key = (job.table, job.range.start, job.range.end, job.peer);
            oldest = oldest.min(*synced.get(&key)?);
        }
        (oldest != u64::MAX).then_some(oldest)
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
                let pace = self.opts.period / u32::try_from(jobs.len().max(1)).unwrap_or(u32::MAX);
                if jobs.is_empty() && pause(&mut shutdown, pace.min(Duration::from_secs(5))).await {
                    return;
                }
                for job in jobs {
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
                    let rate = Duration::from_secs_f64(moved as f64 / self.opts.rate_bytes as f64);
                    let wait = pace.max(rate).saturating_sub(began.elapsed());
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
