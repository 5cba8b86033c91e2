//! [`StreamRegistry`]: what the node's streams are doing, for `sibyl-admin streams`, the
//! node's stream throughput cap, changeable at run time (`sibyl-admin
//! setstreamthroughput`), and the ring-change tasks an operator started (a
//! decommission), which it owns: they stop at the node's shutdown and
//! [`StreamRegistry::join`] waits for them.
//!
//! Threading: shared in an `Arc`; every method takes a short lock or an atomic.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::replica::TokenRange;
use crate::ring::NodeId;

/// Where one stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Waiting for its turn.
    Queued,
    /// Pages are moving.
    Running,
    /// Every page applied.
    Done,
    /// The last attempt failed; it is retried.
    Retrying,
}

impl StreamState {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            StreamState::Queued => "queued",
            StreamState::Running => "running",
            StreamState::Done => "done",
            StreamState::Retrying => "retrying",
        }
    }
}

/// One stream, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Why it runs (`bootstrap`).
    pub operation: &'static str,
    /// The table.
    pub table: String,
    /// The ring range.
    pub range: TokenRange,
    /// The node it streams from (`NodeId(0)` before a source was chosen).
    pub peer: NodeId,
    /// Where it stands.
    pub state: StreamState,
    /// Bytes of keys and values applied (a resumed stream counts what it applied before
    /// the restart too).
    pub bytes: u64,
    /// Entries applied.
    pub cells: u64,
    /// Bytes applied since this process started it (for the rate).
    pub bytes_this_run: u64,
    /// Microseconds spent running since this process started it.
    pub running_micros: u64,
    /// The last error, while retrying.
    pub error: Option<String>,
    /// The range's bytes at its source, estimated when the stream began (0 = not known).
    pub total: u64,
}

impl StreamInfo {
    /// A stream of `range` of `table` with `peer` for `operation`, nothing applied yet.
    pub fn queued(
        operation: &'static str,
        table: &str,
        range: TokenRange,
        peer: NodeId,
    ) -> StreamInfo {
        StreamInfo {
            operation,
            table: table.to_owned(),
            range,
            peer,
            state: StreamState::Queued,
            bytes: 0,
            cells: 0,
            bytes_this_run: 0,
            running_micros: 0,
            error: None,
            total: 0,
        }
    }
}

/// The node's streams (see the module documentation).
#[derive(Debug)]
pub struct StreamRegistry {
    streams: Mutex<Vec<StreamInfo>>,
    /// Bytes per second; 0 = unlimited.
    throughput: AtomicU64,
    /// When the bytes reserved so far are paid for at the cap: every stream of the node
    /// reserves its pages here, so the cap holds for all of them together.
    paid_until: Mutex<Option<tokio::time::Instant>>,
    started: Instant,
    /// The node's shutdown signal, given to the tasks started here.
    shutdown: watch::Receiver<bool>,
    /// The tasks started here; `true` for a ring change (see [`StreamRegistry::busy`]).
    tasks: Mutex<Vec<(JoinHandle<()>, bool)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StreamRegistry {
    /// An empty registry capped at `throughput` bytes per second (0 = unlimited); the
    /// tasks it starts stop when `shutdown` turns true.
    pub fn new(throughput: u64, shutdown: watch::Receiver<bool>) -> StreamRegistry {
        StreamRegistry {
            streams: Mutex::new(Vec::new()),
            throughput: AtomicU64::new(throughput),
            paid_until: Mutex::new(None),
            started: Instant::now(),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts a ring change `task` (given the node's shutdown signal) on the runtime,
    /// owned here; [`StreamRegistry::busy`] until it ends.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.start(task, true);
    }

    /// Starts a long-lived `task` (a watcher) owned here, which does not make the node
    /// [`StreamRegistry::busy`].
    pub fn spawn_watcher<F, Fut>(&self, task: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.start(task, false);
    }

    fn start<F, Fut>(&self, task: F, ring_change: bool)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.shutdown.clone()));
        let mut tasks = lock(&self.tasks);
        tasks.retain(|(t, _)| !t.is_finished());
        tasks.push((handle, ring_change));
    }

    /// Whether a ring change started here still runs.
    pub fn busy(&self) -> bool {
        lock(&self.tasks)
            .iter()
            .any(|(t, ring_change)| *ring_change && !t.is_finished())
    }

    /// Waits for every task started here (after the shutdown signal).
    pub async fn join(&self) {
        let tasks: Vec<(JoinHandle<()>, bool)> = std::mem::take(&mut *lock(&self.tasks));
        for (t, _) in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a stream task failed");
            }
        }
    }

    /// The throughput cap, bytes per second (0 = unlimited).
    pub fn throughput(&self) -> u64 {
        self.throughput.load(Ordering::Relaxed)
    }

    /// Sets the throughput cap; streams running take it from their next page.
    pub fn set_throughput(&self, bytes_per_sec: u64) {
        self.throughput.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Sleeps so that `bytes` moved in `elapsed` stay within the throughput cap, counted
    /// over every stream of the node (or until `shutdown`).
    pub async fn throttle(
        &self,
        bytes: u64,
        elapsed: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let rate = self.throughput();
        if rate == 0 || bytes == 0 {
            return;
        }
        let budget = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let now = tokio::time::Instant::now();
        let until = {
            let mut paid = lock(&self.paid_until);
            // These bytes began moving `elapsed` ago; the cap's clock starts there unless
            // earlier reservations still run past it.
            let began = now.checked_sub(elapsed).unwrap_or(now);
            let start = paid.map_or(began, |p| p.max(began));
            let until = start + budget;
            *paid = Some(until);
            until
        };
        if until > now {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Adds a stream; returns its index.
    pub fn add(&self, info: StreamInfo) -> usize {
        let mut s = lock(&self.streams);
        s.push(info);
        s.len() - 1
    }

    /// Changes stream `i`.
    pub fn update(&self, i: usize, f: impl FnOnce(&mut StreamInfo)) {
        if let Some(info) = lock(&self.streams).get_mut(i) {
            f(info);
        }
    }

    /// Records a page of stream `i`: `bytes` and `cells` applied in `elapsed`; done when
    /// the range does not go on (`more` false).
    pub fn page_done(&self, i: usize, bytes: u64, cells: u64, elapsed: Duration, more: bool) {
        self.update(i, |s| {
            s.bytes += bytes;
            s.cells += cells;
            s.bytes_this_run += bytes;
            s.running_micros += elapsed.as_micros() as u64;
            s.error = None;
            if !more {
                s.state = StreamState::Done;
            }
        });
    }

    /// Every stream since the node started.
    pub fn snapshot(&self) -> Vec<StreamInfo> {
        lock(&self.streams).clone()
    }

    /// Seconds since the registry was made (the node started).
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
