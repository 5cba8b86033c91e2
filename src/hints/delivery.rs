//! [`HintDelivery`]: the task that hands stored hints back to their owners.
//!
//! Every [`DeliveryOptions::interval`] it runs rounds over the owners with pending hints,
//! in node id order, until a round makes no progress. In a round each owner that the
//! latest [`ClusterView`](crate::cluster::ClusterView) says is alive, with a peer
//! address, and is not backing off gets one batch (up to
//! [`DeliveryOptions::batch_bytes`]): its cells are sent as one replica-family
//! [`ReplicaRequest::Apply`] to the owner, and on `Applied` the batch's hints are removed.
//! Round-robin keeps one large backlog from delaying the others.
//!
//! - Pacing: every batch takes its encoded size from one token bucket refilled at
//!   [`DeliveryOptions::max_rate_bytes_per_sec`] (burst: one second), so replay cannot
//!   starve live traffic; one call is in flight at a time.
//! - Failure (network error, timeout, an undecodable answer, `UnknownTable` — the
//!   owner's schema may lag — or `Storage`): the hints stay; the owner backs off,
//!   doubling from [`DeliveryOptions::backoff_min`] to [`DeliveryOptions::backoff_max`],
//!   and is tried again at once when its gossip generation changes (it restarted).
//! - `InvalidCell` (the owner refuses the cells; retrying cannot help): a batch of several
//!   hints is retried hint by hint; a single refused hint is removed and recorded as
//!   dropped ([`DropReason::Rejected`]) so anti-entropy repairs what it carried.
//! - Cells of a table that no longer exists here ([`TableExists`]) are not sent; a hint
//!   left with none is removed.
//! - After a round drained an owner, the store is purged ([`HintStore::purge`]: flush and
//!   compact, so no delivered hint's key stays on disk), at most once per
//!   [`DeliveryOptions::purge_interval`]; dropped-hint counts are persisted each tick.
//!
//! Store calls run per [`DeliveryOptions::execution`] (the blocking pool, or inline in a
//! simulation); time is `tokio::time` only, so the task runs under a paused clock.
//! It stops when the shutdown watch turns `true` (or its sender is dropped), or when the
//! [`HintDelivery`] is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{DropReason, HintId, HintStore, PendingStats};
use crate::cluster::ClusterHandle;
use crate::net::{Family, PeerNetwork};
use crate::replica::{
    RawCell, ReplicaErrorCode, ReplicaExecution, ReplicaRequest, ReplicaResponse,
};
use crate::ring::NodeId;

/// Whether a table exists in this node's schema (hints of dropped tables are discarded).
pub type TableExists = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How delivery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Time between ticks. Default 1 s.
    pub interval: Duration,
    /// Bytes of `Apply` bodies sent per second, all owners together; 0 = unpaced.
    /// Default 4 MiB/s.
    pub max_rate_bytes_per_sec: u64,
    /// Record bytes read per batch (one `Apply`). Default 256 KiB.
    pub batch_bytes: usize,
    /// Deadline of one `Apply` call. Default 10 s.
    pub call_timeout: Duration,
    /// First backoff of an owner after a failure. Default 1 s.
    pub backoff_min: Duration,
    /// Longest backoff. Default 60 s.
    pub backoff_max: Duration,
    /// Least time between two purges of the store. Default 60 s.
    pub purge_interval: Duration,
    /// Where store calls run.
    pub execution: ReplicaExecution,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            interval: Duration::from_secs(1),
            max_rate_bytes_per_sec: 4 << 20,
            batch_bytes: 256 << 10,
            call_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            purge_interval: Duration::from_secs(60),
            execution: ReplicaExecution::Blocking,
        }
    }
}

/// Delivery counters (since the task started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Hints applied by their owners and removed.
    pub delivered_hints: u64,
    /// Bytes of `Apply` bodies the owners applied.
    pub delivered_bytes: u64,
    /// `Apply` calls that failed (hints kept).
    pub failed_attempts: u64,
    /// Hints removed because none of their tables exists here any more, or because
    /// their owner left the ring or was removed.
    pub stale_hints: u64,
    /// Hints the owner refused as invalid (removed, recorded as dropped).
    pub rejected_hints: u64,
    /// Purges of the store.
    pub purges: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered_hints: AtomicU64,
    delivered_bytes: AtomicU64,
    failed_attempts: AtomicU64,
    stale_hints: AtomicU64,
    rejected_hints: AtomicU64,
    purges: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DeliveryStats {
        DeliveryStats {
            delivered_hints: self.delivered_hints.load(Ordering::Relaxed),
            delivered_bytes: self.delivered_bytes.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            stale_hints: self.stale_hints.load(Ordering::Relaxed),
            rejected_hints: self.rejected_hints.load(Ordering::Relaxed),
            purges: self.purges.load(Ordering::Relaxed),
        }
    }
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// The delivery task's counters, shared ([`HintDelivery::counters`]).
#[derive(Debug, Clone)]
pub struct DeliveryCounters(Arc<Counters>);

impl DeliveryCounters {
    /// The counters so far.
    pub fn stats(&self) -> DeliveryStats {
        self.0.snapshot()
    }
}

/// The running delivery task. Dropping it stops the task.
#[derive(Debug)]
pub struct HintDelivery {
    store: Arc<HintStore>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl HintDelivery {
    /// Starts delivering `store`'s hints over `net` to the owners `cluster`'s view says
    /// are up. Must be called within a tokio runtime.
    pub fn start(
        store: Arc<HintStore>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        table_exists: TableExists,
        options: DeliveryOptions,
        shutdown: watch::Receiver<bool>,
    ) -> HintDelivery {
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            store: store.clone(),
            net,
            cluster,
            table_exists,
            options,
            counters: counters.clone(),
            shutdown,
            bucket: TokenBucket::new(options.max_rate_bytes_per_sec),
            backoff: BTreeMap::new(),
            purge_due: false,
            last_purge: None,
        };
        let task = tokio::spawn(worker.run());
        HintDelivery {
            store,
            counters,
            task: Some(task),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> DeliveryStats {
        self.counters.snapshot()
    }

    /// A handle on the counters that outlives no one: the metrics collector reads it at
    /// each scrape while the task runs.
    pub fn counters(&self) -> DeliveryCounters {
        DeliveryCounters(self.counters.clone())
    }

    /// What is still pending for `owner`.
    pub fn pending(&self, owner: NodeId) -> PendingStats {
        self.store.pending(owner)
    }

    /// Waits for the task to end (signal the shutdown watch first).
    pub async fn join(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for HintDelivery {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A token bucket of bytes (a second of burst; a batch larger than that waits for a
/// full bucket and leaves it in debt).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    /// How long to wait before `n` bytes may go (zero when they may go now).
    fn wait_for(&mut self, n: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        self.refill();
        let need = (n as f64).min(self.rate);
        if self.tokens >= need {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64((need - self.tokens) / self.rate)
            .unwrap_or(Duration::from_secs(1))
    }

    fn take(&mut self, n: usize) {
        if self.rate > 0.0 {
            self.refill();
            self.tokens -= n as f64;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
    generation: u64,
}

/// What one batch for one owner came to.
enum Outcome {
    /// Nothing pending.
    Empty,
    /// Hints were delivered or removed.
    Progress,
    /// The owner failed; back off.
    Failed,
    /// Shutdown.
    Stopped,
}

struct Worker {
    store: Arc<HintStore>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    table_exists: TableExists,
    options: DeliveryOptions,
    counters: Arc<Counters>,
    shutdown: watch::Receiver<bool>,
    bucket: TokenBucket,
    backoff: BTreeMap<NodeId, Backoff>,
    purge_due: bool,
    last_purge: Option<Instant>,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    /// Sleeps `d`; false when shutdown came first.
    async fn sleep(&mut self, d: Duration) -> bool {
        if self.stopping() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = self.shutdown.changed() => !self.stopping(),
        }
    }

    /// Runs `f` on the store per the execution mode (`None`: the blocking task died).
    async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HintStore) -> T + Send + 'static,
    ) -> Option<T> {
        match self.options.execution {
            ReplicaExecution::Inline => Some(f(&self.store)),
            ReplicaExecution::Blocking => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || f(&store)).await.ok()
            }
        }
    }

    async fn run(mut self) {
        loop {
            if !self.rounds().await {
                return;
            }
            if let Some(Err(e)) = self.exec(|s| s.flush_dropped()).await {
                tracing::error!(error = %e, "persisting dropped hints");
            }
            self.maybe_purge().await;
            let interval = self.options.interval;
            if !self.sleep(interval).await {
                return;
            }
        }
    }

    async fn maybe_purge(&mut self) {
        let due = self.purge_due
            && self
                .last_purge
                .is_none_or(|t| t.elapsed() >= self.options.purge_interval);
        if !due {
            return;
        }
        self.purge_due = false;
        self.last_purge = Some(Instant::now());
        match self.exec(|s| s.purge()).await {
            Some(Ok(())) => add(&self.counters.purges, 1),
            Some(Err(e)) => tracing::warn!(error = %e, "purging the hint store"),
            None => {}
        }
    }

    /// Rounds until one makes no progress; false on shutdown.
    async fn rounds(&mut self) -> bool {
        loop {
            let Some(view) = self.cluster.view() else {
                return !self.stopping();
            };
            let mut progressed = false;
            for (owner, _) in self.store.owners() {
                if self.stopping() {
                    return false;
                }
                let Some(node) = view.node(owner) else {
                    continue;
                };
                if node.status.is_some_and(|st| st.is_departed()) {
                    // Left or removed: it owns no range any more (its ranges' new
                    // owners have the writes from the other replicas, or repair brings
                    // them). Its hints would wait forever.
                    if !self.discard_departed(owner).await {
                        return !self.stopping();
                    }
                    continue;
                }
                let (Some(addr), true) = (node.peer_address, node.alive) else {
                    continue;
                };
                let generation = node.generation;
                if let Some(b) = self.backoff.get(&owner) {
                    if b.generation == generation && Instant::now() < b.until {
                        continue;
                    }
                }
                match self.deliver_batch(owner, addr).await {
                    Outcome::Empty => {}
                    Outcome::Progress => {
                        self.backoff.remove(&owner);
                        progressed = true;
                        if self.store.pending(owner).count == 0 {
                            self.purge_due = true;
                        }
                    }
                    Outcome::Failed => {
                        add(&self.counters.failed_attempts, 1);
                        let failures = self.backoff.get(&owner).map_or(0, |b| b.failures);
                        let delay = self
                            .options
                            .backoff_min
                            .saturating_mul(1u32 << failures.min(16))
                            .min(self.options.backoff_max);
                        self.backoff.insert(
                            owner,
                            Backoff {
                                failures: failures.saturating_add(1),
                                until: Instant::now() + delay,
                                generation,
                            },
                        );
                    }
                    Outcome::Stopped => return false,
                }
            }
            if !progressed {
                return true;
            }
        }
    }

    /// Reads, filters and sends one batch of `owner`'s hints.
    async fn deliver_batch(&mut self, owner: NodeId, addr: SocketAddr) -> Outcome {
        let max = self.options.batch_bytes;
        let batch = match self.exec(move |s| s.batch(owner, max)).await {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(%owner, error = %e, "reading hints failed");
                return Outcome::Failed;
            }
            None => return Outcome::Failed,
        };
        if batch.is_empty() {
            return Outcome::Empty;
        }
        let mut stale = Vec::new();
        let mut live: Vec<(HintId, Vec<RawCell>)> = Vec::new();
        for (id, cells) in batch {
            let cells: Vec<RawCell> = cells
                .into_iter()
                .filter(|c| (self.table_exists)(&c.table))
                .collect();
            if cells.is_empty() {
                stale.push(id);
            } else {
                live.push((id, cells));
            }
        }
        if !stale.is_empty() {
            add(&self.counters.stale_hints, stale.len());
            if !self.remove(owner, stale).await {
                return Outcome::Failed;
            }
            if live.is_empty() {
                return Outcome::Progress;
            }
        }
        match self.send(owner, addr, &live).await {
            Sent::Applied => Outcome::Progress,
            Sent::Failed => Outcome::Failed,
            Sent::Stopped => Outcome::Stopped,
            Sent::Invalid if live.len() > 1 => {
                // Find the refused hints one by one; deliver the rest.
                for hint in live {
                    match self.send(owner, addr, std::slice::from_ref(&hint)).await {
                        Sent::Applied => {}
                        Sent::Invalid => {
                            if !self.reject(owner, hint).await {
                                return Outcome::Failed;
                            }
                        }
                        Sent::Failed => return Outcome::Failed,
                        Sent::Stopped => return Outcome::Stopped,
                    }
                }
                Outcome::Progress
            }
            Sent::Invalid => match live.into_iter().next() {
                Some(hint) => {
                    if self.reject(owner, hint).await {
                        Outcome::Progress
                    } else {
                        Outcome::Failed
                    }
                }
                None => Outcome::Failed,
            },
        }
    }

    /// Removes every hint of `owner`, a node that left the ring or was removed (counted
    /// as stale); false when the store failed.
    async fn discard_departed(&mut self, owner: NodeId) -> bool {
        let mut discarded = 0usize;
        loop {
            let max = self.options.batch_bytes;
            let ids: Vec<HintId> = match self.exec(move |s| s.batch(owner, max)).await {
                Some(Ok(b)) => b.into_iter().map(|(id, _)| id).collect(),
                Some(Err(e)) => {
                    tracing::error!(%owner, error = %e, "reading hints of a departed node failed");
                    return false;
                }
                None => return false,
            };
            if ids.is_empty() {
                break;
            }
            discarded += ids.len();
            if !self.remove(owner, ids).await {
                return false;
            }
        }
        if discarded > 0 {
            add(&self.counters.stale_hints, discarded);
            self.purge_due = true;
            tracing::info!(%owner, hints = discarded, "hints for a node that left the ring discarded");
        }
        true
    }

    /// Records `hint` as refused by its owner and removes it.
    async fn reject(&mut self, owner: NodeId, hint: (HintId, Vec<RawCell>)) -> bool {
        let (id, cells) = hint;
        tracing::error!(%owner, ?id, "owner refused a hint as invalid; discarded, range needs repair");
        add(&self.counters.rejected_hints, 1);
        let bytes = cells.iter().map(RawCell::encoded_len).sum::<usize>() as u64;
        match self
            .exec(move |s| s.record_discarded(owner, DropReason::Rejected, Some(&cells), bytes))
            .await
        {
            Some(Ok(())) => self.remove(owner, vec![id]).await,
            Some(Err(e)) => {
                tracing::error!(%owner, error = %e, "recording a rejected hint");
                false
            }
            None => false,
        }
    }

    async fn remove(&mut self, owner: NodeId, ids: Vec<HintId>) -> bool {
        match self.exec(move |s| s.remove(owner, &ids)).await {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                tracing::error!(%owner, error = %e, "removing hints failed");
                false
            }
            None => false,
        }
    }

    /// Sends `hints` to `owner` as one `Apply`, paced; removes them when applied.
    async fn send(
        &mut self,
        owner: NodeId,
        addr: SocketAddr,
        hints: &[(HintId, Vec<RawCell>)],
    ) -> Sent {
        let cells: Vec<RawCell> = hints.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        let body = ReplicaRequest::Apply { cells }.encode();
        let len = body.len();
        let wait = self.bucket.wait_for(len);
        if !wait.is_zero() && !self.sleep(wait).await {
            return Sent::Stopped;
        }
        self.bucket.take(len);
        let deadline = Instant::now() + self.options.call_timeout;
        let call = self
            .net
            .call_node(addr, owner, Family::Replica, body, deadline);
        let result = tokio::select! {
            r = tokio::time::timeout_at(deadline + Duration::from_millis(100), call) => r,
            _ = self.shutdown.changed() => return Sent::Stopped,
        };
        let answer = match result {
            Ok(Ok(bytes)) => ReplicaResponse::decode(&bytes),
            Ok(Err(e)) => {
                tracing::debug!(%owner, error = %e, "hint delivery call failed");
                return Sent::Failed;
            }
            Err(_) => {
                tracing::debug!(%owner, "hint delivery call timed out");
                return Sent::Failed;
            }
        };
        match answer {
            Ok(ReplicaResponse::Applied { .. }) => {
                let ids: Vec<HintId> = hints.iter().map(|(id, _)| *id).collect();
                let n = ids.len();
                if !self.remove(owner, ids).await {
                    return Sent::Failed;
                }
                tracing::debug!(%owner, hints = n, bytes = len, "hints delivered");
                add(&self.counters.delivered_hints, n);
                add(&self.counters.delivered_bytes, len);
                Sent::Applied
            }
            Ok(ReplicaResponse::Error {
                code: ReplicaErrorCode::InvalidCell,
                message,
            }) => {
                tracing::warn!(%owner, %message, "owner refused hinted cells as invalid");
                Sent::Invalid
            }
            Ok(ReplicaResponse::Error { code, message }) => {
                tracing::debug!(%owner, ?code, %message, "owner could not apply hints yet");
                Sent::Failed
            }
            Ok(other) => {
                tracing::warn!(%owner, ?other, "unexpected answer to a hinted apply");
                Sent::Failed
            }
            Err(e) => {
                tracing::warn!(%owner, error = %e, "undecodable answer to a hinted apply");
                Sent::Failed
            }
        }
    }
}

/// What one `Apply` of hints came to.
enum Sent {
    Applied,
    Invalid,
    Failed,
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_paces_to_the_rate() {
        let mut b = TokenBucket::new(1000);
        assert_eq!(b.wait_for(1000), Duration::ZERO, "a second of burst");
        b.take(1000);
        assert_eq!(b.wait_for(500), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(b.wait_for(500), Duration::ZERO);
        b.take(500);
        // Larger than the bucket: waits for a full bucket, then goes into debt.
        assert_eq!(b.wait_for(5000), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        b.take(5000);
        assert_eq!(b.wait_for(1000), Duration::from_secs(5));
        assert_eq!(TokenBucket::new(0).wait_for(usize::MAX), Duration::ZERO);
    }
}
