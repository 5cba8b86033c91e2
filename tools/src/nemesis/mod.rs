//! The nemesis behind `sibyl-nemesis`: real `sibyl` processes broken on purpose while
//! clients write, then healed and checked (Jepsen's method, on one machine).
//!
//! A run ([`run`]):
//! 1. builds a [`lab::Lab`]: one network namespace per node on one bridge, so partitions
//!    are iptables rules cutting real packets;
//! 2. starts the nodes one at a time ([`nodes`]), each joining through node 0, and
//!    creates the workload tables (rf 3, causal);
//! 3. runs the clients ([`clients`]: set, delete and register workloads, each operation
//!    recorded in the [`history::History`]) while the schedule ([`faults`], drawn from
//!    the seed) partitions, kills, pauses and skews nodes and heals them again;
//! 4. stops the clients, heals everything, and waits (bounded) until every node answers
//!    every key the same at ONE, driving read repair with blocking reads at ALL meanwhile
//!    (the time this takes is the convergence time);
//! 5. reads every key through every node at ONE and at ALL and runs the [`check`]er:
//!    acknowledged writes lost, values never written, deletes undone must all be 0.
//!
//! Everything the run starts it stops: nodes by their own PIDs, the lab's namespaces and
//! bridge by their run-unique names. The history file and the nodes' logs stay in the run
//! directory.

pub mod check;
pub mod clients;
pub mod faults;
pub mod history;
pub mod lab;
pub mod nodes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use sibyl_protocol::{
    Client, ClientError, ClientOptions, Consistency, NodeState, RepairState, TableOptions,
};
use tokio::sync::watch;

use check::{Observed, Verdict};
use clients::{key_of, table_of, KEYS};
use faults::{Fault, Step};
use history::{History, Workload};
use lab::{Lab, LabError};
use nodes::{NodeProcess, PEER_PORT};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// Nodes (at least 3: the tables have rf 3).
    pub nodes: usize,
    /// How long clients run under faults.
    pub duration: Duration,
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Concurrent clients (they take turns over the workloads).
    pub clients: usize,
    /// The `sibyl` binary.
    pub binary: PathBuf,
    /// Where node data, logs and the history go.
    pub dir: PathBuf,
    /// Second byte of the lab's 10.x.0.0/24 subnet.
    pub subnet: u8,
    /// libfaketime, for clock skew (none: no skew faults).
    pub faketime: Option<PathBuf>,
    /// Longest wait for the replicas to agree after the heal.
    pub converge_timeout: Duration,
    /// Fault kinds drawn ([`faults::KINDS`]; empty: all).
    pub faults: Vec<String>,
    /// Workloads the clients run (empty: all).
    pub workloads: Vec<Workload>,
}

/// What a run found.
#[derive(Debug)]
pub struct NemesisReport {
    /// The seed.
    pub seed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Time from the final heal until every node answered every key alike, if they did.
    pub convergence: Option<Duration>,
    /// Reads of the final state that failed.
    pub unreadable: Vec<String>,
    /// For each finding, where the value is now: its key's replicas, and each node's
    /// answer at ONE a few seconds after the check.
    pub diagnosis: Vec<String>,
    /// Hints still pending on every node when the check ran, and hints dropped during
    /// the run (their ranges left to anti-entropy), summed over the nodes; `None` when a
    /// node could not be asked.
    pub hints: Option<(u64, u64)>,
    /// The history file.
    pub history: PathBuf,
    /// Minutes the clients ran.
    pub ran: Duration,
}

impl NemesisReport {
    /// True when nothing was lost, invented or resurrected, the replicas converged and
    /// every final read answered.
    pub fn passed(&self) -> bool {
        self.verdict.is_clean() && self.convergence.is_some() && self.unreadable.is_empty()
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let v = &self.verdict;
        let sum = |m: &BTreeMap<&'static str, u64>| m.values().sum::<u64>();
        let mut out = String::new();
        out.push_str(&format!(
            "seed {}  ran {:.0} s  faults {} {:?}\n",
            self.seed,
            self.ran.as_secs_f64(),
            sum(&self.faults),
            self.faults
        ));
        out.push_str(&format!(
            "writes acknowledged {} {:?}, unknown (failed or timed out) {}\n",
            sum(&v.acknowledged),
            v.acknowledged,
            sum(&v.unknown)
        ));
        out.push_str(&format!(
            "lost {}  never written {}  resurrected {}\n",
            v.lost.count(),
            v.never_written.count(),
            v.resurrected.count()
        ));
        for (what, f) in [
            ("lost", &v.lost),
            ("never written", &v.never_written),
            ("resurrected", &v.resurrected),
        ] {
            for e in f.examples(10) {
                out.push_str(&format!("  {what}: {e}\n"));
            }
        }
        match self.convergence {
            Some(d) => out.push_str(&format!(
                "converged {:.1} s after the heal\n",
                d.as_secs_f64()
            )),
            None => out.push_str("did NOT converge within the timeout\n"),
        }
        match self.hints {
            Some((pending, dropped)) => out.push_str(&format!(
                "hints left undelivered {pending}, dropped during the run {dropped}\n"
            )),
            None => out.push_str("hints: a node could not be asked\n"),
        }
        for d in &self.diagnosis {
            out.push_str(&format!("  {d}\n"));
        }
        for u in &self.unreadable {
            out.push_str(&format!("  unreadable: {u}\n"));
        }
        out.push_str(&format!("history: {}\n", self.history.display()));
        out.push_str(if self.passed() { "PASS\n" } else { "FAIL\n" });
        out
    }
}

/// The totals of several runs (`sibyl-nemesis --seeds N`): what the README's reliability
/// table reports.
#[derive(Debug, Default)]
pub struct RunsSummary {
    /// Runs done.
    pub runs: usize,
    /// Time the clients ran, over all runs.
    pub ran: Duration,
    /// Faults injected.
    pub faults: u64,
    /// Acknowledged writes.
    pub acknowledged: u64,
    /// Lost, never written and resurrected findings.
    pub findings: (usize, usize, usize),
    /// Convergence time of each run that converged.
    pub convergence: Vec<Duration>,
    /// Seeds of the runs that did not pass.
    pub failed: Vec<u64>,
}

impl RunsSummary {
    /// Adds one run.
    pub fn add(&mut self, r: &NemesisReport) {
        self.runs += 1;
        self.ran += r.ran;
        self.faults += r.faults.values().sum::<u64>();
        self.acknowledged += r.verdict.acknowledged.values().sum::<u64>();
        self.findings.0 += r.verdict.lost.count();
        self.findings.1 += r.verdict.never_written.count();
        self.findings.2 += r.verdict.resurrected.count();
        if let Some(c) = r.convergence {
            self.convergence.push(c);
        }
        if !r.passed() {
            self.failed.push(r.seed);
        }
    }

    /// One line for people.
    pub fn to_text(&self) -> String {
        let mut c = self.convergence.clone();
        c.sort_unstable();
        let p50 = c.get(c.len() / 2).map_or(0.0, Duration::as_secs_f64);
        let max = c.last().map_or(0.0, Duration::as_secs_f64);
        format!(
            "{} runs, {:.1} minutes, {} faults, {} acknowledged writes, lost {}, \
             never written {}, resurrected {}, convergence after heal p50 {p50:.1} s / max \
             {max:.1} s; failed seeds: {:?}\n",
            self.runs,
            self.ran.as_secs_f64() / 60.0,
            self.faults,
            self.acknowledged,
            self.findings.0,
            self.findings.1,
            self.findings.2,
            self.failed
        )
    }
}

/// A run that could not be carried out (as opposed to one that found a fault).
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// The lab could not be built.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not come up.
    #[error("{0}")]
    Setup(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NemesisError {
    let what = what.into();
    move |source| NemesisError::Io { what, source }
}

/// How long a node may take to start and join.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// How often readiness and convergence are polled.
const POLL: Duration = Duration::from_millis(250);
/// Attempts of each final read before it counts as unreadable.
const FINAL_READ_ATTEMPTS: u32 = 3;
/// How long the repair after a wipe may take.
const REPAIR_DEADLINE: Duration = Duration::from_secs(180);

fn client_options(token_aware: bool) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        pool_size: 1,
        reconnect_backoff: Duration::from_millis(200),
        token_aware,
        client_name: concat!("sibyl-nemesis/", env!("CARGO_PKG_VERSION")).into(),
        ..ClientOptions::default()
    }
}

/// A client that talks to `addr` only.
async fn pinned(addr: &str) -> Result<Client, ClientError> {
    Client::connect_with(&[addr], client_options(false)).await
}

/// Polls until node `via` sees `expected` nodes up and normal.
async fn wait_ring(via: &str, expected: usize, nodes: &mut [NodeProcess]) -> Result<(), String> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    loop {
        for n in nodes.iter_mut() {
            if let Some(status) = n.exited() {
                return Err(format!(
                    "node {} exited with {status} (log: {})",
                    n.index,
                    n.log().display()
                ));
            }
        }
        if let Ok(c) = pinned(via).await {
            if let Ok(t) = c.topology().await {
                let ready = t
                    .nodes
                    .iter()
                    .filter(|n| n.up && n.state == NodeState::Normal)
                    .count();
                if ready >= expected {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{expected} nodes were not up and normal within {JOIN_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every live value of every column of `key`, paged.
async fn read_all(
    client: &Client,
    table: &str,
    key: &str,
    consistency: Consistency,
) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
    const PAGE: u32 = 1000;
    let t = client.table(table);
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = t
            .slice::<Vec<u8>, _>(key.to_owned(), .., PAGE)
            .paging(token)
            .consistency(consistency)
            .send()
            .await?;
        for cell in &page.row.cells {
            let mut values: Vec<String> = cell
                .values()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            values.sort_unstable();
            out.insert(String::from_utf8_lossy(&cell.name).into_owned(), values);
        }
        match page.next_page {
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

const WORKLOADS: [Workload; 3] = [Workload::Set, Workload::Delete, Workload::Register];

fn all_keys() -> Vec<(Workload, String)> {
    WORKLOADS
        .iter()
        .flat_map(|w| (0..KEYS).map(move |i| (*w, key_of(*w, i))))
        .collect()
}

/// The nodes and their lab. Fields drop in order: the nodes are killed (and reaped)
/// before the lab removes their namespaces and links, so a next run can reuse the names.
struct Cluster {
    nodes: Vec<NodeProcess>,
    lab: Lab,
}

impl Cluster {
    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(NodeProcess::client_addr).collect()
    }

    async fn apply(&mut self, fault: &Fault) -> Result<(), NemesisError> {
        let n = self.lab.nodes();
        match fault {
            Fault::Isolate(i) => {
                let others: Vec<usize> = (0..n).filter(|j| j != i).collect();
                self.lab.split(&[*i], &others)?;
            }
            Fault::Halves(a, b) => self.lab.split(a, b)?,
            Fault::OneWay { to, from } => self.lab.drop_from(*to, *from)?,
            Fault::Kill(i) => {
                if let Some(node) = self.nodes.get_mut(*i) {
                    node.kill();
                }
            }
            Fault::Pause(i) => {
                if let Some(node) = self.nodes.get_mut(*i) {
                    node.pause();
                }
            }
            Fault::Skew(i, s) => {
                if let Some(node) = self.nodes.get(*i) {
                    node.set_skew(*s).map_err(io("set a clock offset"))?;
                }
            }
            Fault::Wipe(i) => self.wipe(*i).await?,
            Fault::Decommission(i) => self.decommission(*i).await?,
        }
        Ok(())
    }

    /// A ring change both ways: node `i` is decommissioned (it streams its ranges to the
    /// nodes that gain them and announces left), then stopped, emptied and started again:
    /// a new node that bootstraps (streams its new ranges before it owns them). A node
    /// that refuses (not normal) is left alone.
    async fn decommission(&mut self, i: usize) -> Result<(), NemesisError> {
        let addrs = self.addrs();
        let Some(addr) = addrs.get(i).cloned() else {
            return Ok(());
        };
        let client = pinned(&addr)
            .await
            .map_err(|e| NemesisError::Setup(format!("connect to node {i}: {e}")))?;
        if let Err(e) = client.decommission().await {
            eprintln!("sibyl-nemesis: node {i} refused to decommission: {e}");
            return Ok(());
        }
        // Left as every node sees it (the node itself knows first; stopped before gossip
        // told the others, it would stay leaving for them, and its address taken).
        let deadline = Instant::now() + JOIN_DEADLINE * 2;
        loop {
            let mut left = true;
            for a in &addrs {
                let sees_left = match pinned(a).await {
                    Ok(c) => c.topology().await.ok().is_some_and(|t| {
                        t.nodes
                            .iter()
                            .any(|n| n.address == addr && n.state == NodeState::Left)
                    }),
                    Err(_) => false,
                };
                left &= sees_left;
            }
            if left {
                break;
            }
            if Instant::now() >= deadline {
                return Err(NemesisError::Setup(format!(
                    "node {i} did not leave within {:?} of its decommission",
                    JOIN_DEADLINE * 2
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        let seeds = self.seeds_except(i);
        let Some(node) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        node.wipe(&seeds)
            .map_err(io(format!("empty decommissioned node {i}")))?;
        node.start()
            .map_err(io(format!("restart decommissioned node {i}")))?;
        Ok(())
    }

    /// The peer addresses of every node but `i`, as a `--seeds` value.
    fn seeds_except(&self, i: usize) -> String {
        (0..self.lab.nodes())
            .filter(|j| *j != i)
            .map(|j| format!("{}:{PEER_PORT}", self.lab.addr(j)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A lost disk: node `i` is killed, its data directory emptied and the node restarted;
    /// it comes back under a new id and refuses to join while its old id owns tokens at
    /// its address, so the old id is removed (`removenode` through another node), as an
    /// operator would, and it joins with new tokens.
    async fn wipe(&mut self, i: usize) -> Result<(), NemesisError> {
        let addrs = self.addrs();
        let Some(addr) = addrs.get(i).cloned() else {
            return Ok(());
        };
        let others: Vec<String> = addrs.iter().filter(|a| **a != addr).cloned().collect();
        let mut old_id = None;
        for other in &others {
            if let Ok(c) = pinned(other).await {
                if let Ok(t) = c.topology().await {
                    old_id = t
                        .nodes
                        .iter()
                        .find(|n| n.address == addr && n.state == NodeState::Normal)
                        .map(|n| n.id.clone());
                }
            }
            if old_id.is_some() {
                break;
            }
        }
        let seeds = self.seeds_except(i);
        let Some(node) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        let from = node.log_len();
        node.wipe(&seeds).map_err(io(format!("wipe node {i}")))?;
        node.start()
            .map_err(io(format!("restart wiped node {i}")))?;
        let Some(old_id) = old_id else {
            // Nobody knew it as normal (it had not joined): nothing to remove.
            return Ok(());
        };
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            let log = node.log_since(from);
            if log.contains("not joining the ring") {
                break;
            }
            if log.contains("joining the ring: owning")
                || log.contains("tokens announced as pending")
            {
                // It should have refused while its old id owns tokens at its address
                // (seen once in twelve wipes, seed 303; not reproduced alone). The old id
                // is removed all the same, and the run goes on.
                eprintln!(
                    "sibyl-nemesis: wiped node {i} joined beside its old id {old_id} instead of refusing (log: {})",
                    node.log().display()
                );
                break;
            }
            if let Some(status) = node.exited() {
                return Err(NemesisError::Setup(format!(
                    "wiped node {i} exited with {status} (log: {})",
                    node.log().display()
                )));
            }
            if Instant::now() >= deadline {
                return Err(NemesisError::Setup(format!(
                    "wiped node {i} never reported the old node {old_id} at its address"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        let mut last = String::new();
        while Instant::now() < deadline {
            for other in &others {
                match pinned(other).await {
                    Ok(c) => match c.remove_node(&old_id, false).await {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Err(NemesisError::Setup(format!(
            "removenode {old_id} for wiped node {i} failed: {last}"
        )))
    }

    /// What an operator does after replacing a disk: an anti-entropy repair of node `i`
    /// (REPAIR through a client pinned to it), followed until done. Returns a line for
    /// the log and whether every range was repaired (false too when the repair could not
    /// be started or followed within the deadline).
    async fn repair_node(&self, i: usize) -> (String, bool) {
        let Some(addr) = self.addrs().get(i).cloned() else {
            return (format!("no node {i}"), false);
        };
        let deadline = Instant::now() + REPAIR_DEADLINE;
        let mut last = String::new();
        // The replaced node repairs its ranges once it owns some: wait until it sees
        // itself normal in the ring.
        loop {
            let normal = match pinned(&addr).await {
                Ok(c) => c.topology().await.ok().is_some_and(|t| {
                    t.nodes
                        .iter()
                        .any(|n| n.address == addr && n.state == NodeState::Normal && n.up)
                }),
                Err(_) => false,
            };
            if normal {
                break;
            }
            if Instant::now() >= deadline {
                return (
                    format!("node {i} never became normal to be repaired"),
                    false,
                );
            }
            tokio::time::sleep(POLL).await;
        }
        while Instant::now() < deadline {
            let c = match pinned(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let mut status = match c.repair(None).await {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            while status.state == RepairState::Running && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
                match c.repair_status(status.id).await {
                    Ok(s) => status = s,
                    Err(e) => {
                        last = e.to_string();
                        break;
                    }
                }
            }
            if status.state == RepairState::Done {
                let clean = status.failed.is_empty();
                return (
                    format!(
                        "repair of node {i}: {} ranges, {} differed, {} cells received, {} sent, {} not done",
                        status.jobs,
                        status.differed,
                        status.cells_received,
                        status.cells_sent,
                        status.failed.len()
                    ),
                    clean,
                );
            }
        }
        (format!("repair of node {i} did not finish: {last}"), false)
    }

    /// Removes every fault: rules flushed, paused nodes continued, killed nodes
    /// restarted, clocks true.
    fn heal(&mut self) -> Result<(), NemesisError> {
        self.lab.heal()?;
        for node in &mut self.nodes {
            node.resume();
            if !node.is_running() {
                node.start()
                    .map_err(io(format!("restart node {}", node.index)))?;
            }
            if node.can_skew() {
                node.set_skew(0).map_err(io("reset a clock offset"))?;
            }
        }
        Ok(())
    }
}

/// Starts the lab and the nodes, creates the tables.
async fn start_cluster(config: &NemesisConfig) -> Result<Cluster, NemesisError> {
    let lab = Lab::create(config.nodes, config.subnet)?;
    let seed0 = format!("{}:{PEER_PORT}", lab.addr(0));
    let mut nodes = Vec::with_capacity(config.nodes);
    for i in 0..config.nodes {
        let seeds = match i {
            0 => None,
            1 => Some(seed0.clone()),
            _ => Some(format!("{seed0},{}:{PEER_PORT}", lab.addr(1))),
        };
        nodes.push(NodeProcess::new(
            i,
            lab.namespace(i),
            lab.addr(i),
            &config.binary,
            &config.dir,
            config.faketime.clone(),
            seeds,
        ));
    }
    let mut cluster = Cluster { nodes, lab };
    let first = cluster.addrs().first().cloned().unwrap_or_default();
    for i in 0..cluster.nodes.len() {
        if let Some(node) = cluster.nodes.get_mut(i) {
            node.start().map_err(io(format!("start node {i}")))?;
        }
        wait_ring(&first, i + 1, &mut cluster.nodes)
            .await
            .map_err(NemesisError::Setup)?;
    }
    let client = Client::connect_with(&cluster.addrs(), client_options(true))
        .await
        .map_err(|e| NemesisError::Setup(format!("cannot connect: {e}")))?;
    for w in WORKLOADS {
        match client
            .create_table_if_not_exists(table_of(w), TableOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) => return Err(NemesisError::Setup(format!("create {}: {e}", table_of(w)))),
        }
    }
    // The schema spreads by gossip: every node must know every table before the load.
    let deadline = Instant::now() + JOIN_DEADLINE;
    for addr in cluster.addrs() {
        loop {
            let known = match pinned(&addr).await {
                Ok(c) => c.list_tables().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            if WORKLOADS
                .iter()
                .all(|w| known.iter().any(|t| t == table_of(*w)))
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(NemesisError::Setup(format!(
                    "{addr} never learned the tables"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(cluster)
}

/// Reads every key through every node at `c`; `(workload, key) -> node -> columns`, and
/// the reads that failed.
type Reads = BTreeMap<(String, String), Vec<BTreeMap<String, Vec<String>>>>;

async fn read_everything(
    pinned_clients: &[Client],
    c: Consistency,
) -> (
    Vec<(usize, Workload, String, BTreeMap<String, Vec<String>>)>,
    Vec<String>,
) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (i, client) in pinned_clients.iter().enumerate() {
        for (w, key) in all_keys() {
            // A replica slow to answer (a node still busy with repair or compaction on
            // this shared machine) is asked again: only a read that keeps failing counts.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match read_all(client, table_of(w), &key, c).await {
                    Ok(cols) => {
                        ok.push((i, w, key, cols));
                        break;
                    }
                    Err(_) if attempt < FINAL_READ_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        failed.push(format!("node {i} {key}: {e} ({attempt} attempts)"));
                        break;
                    }
                }
            }
        }
    }
    (ok, failed)
}

/// Waits until every node answers every key alike at ONE, repairing with blocking reads
/// at ALL between rounds; returns how long that took.
async fn converge(pinned_clients: &[Client], timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let repair = Consistency::ALL.blocking_read_repair();
    loop {
        let (reads, failed) = read_everything(pinned_clients, Consistency::ONE).await;
        if failed.is_empty() {
            let mut by_key: Reads = BTreeMap::new();
            for (_, w, key, cols) in reads {
                by_key
                    .entry((w.name().to_owned(), key))
                    .or_default()
                    .push(cols);
            }
            if by_key.values().all(|v| v.windows(2).all(|p| p[0] == p[1])) {
                return Some(started.elapsed());
            }
        }
        if started.elapsed() >= timeout {
            return None;
        }
        for (n, (w, key)) in all_keys().into_iter().enumerate() {
            if let Some(c) = pinned_clients.get(n % pinned_clients.len().max(1)) {
                let _ = read_all(c, table_of(w), &key, repair).await;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where each finding's value is now (see [`NemesisReport::diagnosis`]).
async fn diagnose(cluster: &Cluster, pinned_clients: &[Client], verdict: &Verdict) -> Vec<String> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let addrs = cluster.addrs();
    let ring = Client::connect_with(&addrs, client_options(true))
        .await
        .ok();
    let mut out = Vec::new();
    let findings = [&verdict.lost, &verdict.never_written, &verdict.resurrected];
    for ((w, key, value), _) in findings.iter().flat_map(|f| f.items.iter()).take(5) {
        let Some(workload) = WORKLOADS.into_iter().find(|x| x.name() == *w) else {
            continue;
        };
        let replicas: Vec<String> = ring
            .as_ref()
            .map(|c| {
                c.route(key.as_bytes())
                    .iter()
                    .take(3)
                    .filter_map(|a| addrs.iter().position(|x| *x == a.to_string()))
                    .map(|i| format!("node {i}"))
                    .collect()
            })
            .unwrap_or_default();
        let mut answers = Vec::new();
        for (i, c) in pinned_clients.iter().enumerate() {
            let a = match read_all(c, table_of(workload), key, Consistency::ONE).await {
                Ok(cols) => {
                    let present = match workload {
                        Workload::Register => cols
                            .get(check::REGISTER_COLUMN)
                            .is_some_and(|vs| vs.contains(value)),
                        _ => cols.get(value).is_some_and(|vs| !vs.is_empty()),
                    };
                    if present { "present" } else { "absent" }.to_owned()
                }
                Err(e) => format!("error {e}"),
            };
            answers.push(format!("node {i}: {a}"));
        }
        out.push(format!(
            "{w} {key} {value}: replicas {replicas:?}; at ONE 3 s later: {}",
            answers.join(", ")
        ));
    }
    out
}

/// Carries out a run; `log` hears about each phase and fault as it happens.
pub async fn run(
    config: &NemesisConfig,
    log: impl Fn(&str) + Send + Sync + 'static,
) -> Result<NemesisReport, NemesisError> {
    if config.nodes < 3 {
        return Err(NemesisError::Setup(
            "at least 3 nodes (the tables have rf 3)".into(),
        ));
    }
    std::fs::create_dir_all(&config.dir).map_err(io("create the run directory"))?;
    let history_path = config.dir.join("history.jsonl");
    let history = Arc::new(History::create(&history_path).map_err(io("create the history"))?);
    let log = Arc::new(log);
    log(&format!(
        "starting {} nodes in network namespaces (data and logs in {})",
        config.nodes,
        config.dir.display()
    ));
    let mut cluster = start_cluster(config).await?;
    log(&format!("cluster up: {}", cluster.addrs().join(" ")));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for id in 0..config.clients {
        let client = Client::connect_with(&cluster.addrs(), client_options(true))
            .await
            .map_err(|e| NemesisError::Setup(format!("client {id} cannot connect: {e}")))?;
        tasks.push(tokio::spawn(clients::run_client(
            id,
            clients::workload_of(id, &config.workloads),
            client,
            Arc::clone(&history),
            stop_rx.clone(),
        )));
    }

    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut wipe_safe = true;
    let began = Instant::now();
    let skew = config.faketime.is_some();
    while began.elapsed() < config.duration {
        let Step {
            mut fault,
            hold,
            quiet,
        } = faults::next_allowed_step(&mut rng, config.nodes, skew, &config.faults);
        // A lost disk is followed by a repair of the replaced node, as an operator does.
        // A second wipe before that repair finished cleanly could take every copy of a
        // value or a tombstone (data loss by design, not a finding): it becomes a kill.
        if let Fault::Wipe(i) = fault {
            if !wipe_safe {
                fault = Fault::Kill(i);
            }
        }
        let left = config.duration.saturating_sub(began.elapsed());
        let at = began.elapsed().as_secs_f64();
        log(&format!(
            "[{at:6.1} s] {fault} for {:.1} s",
            hold.as_secs_f64()
        ));
        history.nemesis(&fault.to_string());
        cluster.apply(&fault).await?;
        *faults.entry(fault.kind()).or_default() += 1;
        tokio::time::sleep(hold.min(left)).await;
        cluster.heal()?;
        history.nemesis("heal");
        if let Fault::Wipe(i) | Fault::Decommission(i) = fault {
            let (line, clean) = cluster.repair_node(i).await;
            wipe_safe = clean;
            log(&format!("[{:6.1} s] {line}", began.elapsed().as_secs_f64()));
            history.nemesis(&line);
        }
        let left = config.duration.saturating_sub(began.elapsed());
        tokio::time::sleep(quiet.min(left)).await;
    }
    let ran = began.elapsed();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    cluster.heal()?;
    history.nemesis("final heal; clients stopped");
    log(&format!(
        "[{:6.1} s] clients stopped, everything healed; waiting for the replicas to agree",
        began.elapsed().as_secs_f64()
    ));

    let mut pinned_clients = Vec::new();
    let deadline = Instant::now() + JOIN_DEADLINE;
    for addr in cluster.addrs() {
        loop {
            match pinned(&addr).await {
                Ok(c) => break pinned_clients.push(c),
                Err(e) if Instant::now() >= deadline => {
                    return Err(NemesisError::Setup(format!(
                        "{addr} unreachable after the heal: {e}"
                    )))
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
    // Restarted nodes take a few seconds to hear their peers again.
    wait_ring(
        cluster
            .addrs()
            .first()
            .map(String::as_str)
            .unwrap_or_default(),
        config.nodes,
        &mut cluster.nodes,
    )
    .await
    .map_err(NemesisError::Setup)?;
    let convergence = converge(&pinned_clients, config.converge_timeout).await;

    let mut observed = Vec::new();
    let mut unreadable = Vec::new();
    for (c, label) in [(Consistency::ONE, "ONE"), (Consistency::ALL, "ALL")] {
        let (reads, failed) = read_everything(&pinned_clients, c).await;
        unreadable.extend(failed.into_iter().map(|f| format!("{f} at {label}")));
        for (i, workload, key, columns) in reads {
            observed.push(Observed {
                source: format!("node {i} at {label}"),
                workload,
                key,
                columns,
            });
        }
    }
    let verdict = check::check(&history.events(), &observed);
    let hints = hint_totals(&pinned_clients).await;
    let diagnosis = if verdict.is_clean() {
        Vec::new()
    } else {
        diagnose(&cluster, &pinned_clients, &verdict).await
    };
    history.flush().map_err(io("write the history"))?;
    drop(cluster);
    Ok(NemesisReport {
        seed: config.seed,
        faults,
        verdict,
        convergence,
        unreadable,
        diagnosis,
        hints,
        history: history_path,
        ran,
    })
}

/// Hints pending and dropped, summed over every node (HINTS of each).
async fn hint_totals(clients: &[Client]) -> Option<(u64, u64)> {
    let (mut pending, mut dropped) = (0, 0);
    for c in clients {
        for o in c.hints().await.ok()? {
            pending += o.pending;
            dropped += o.dropped_window + o.dropped_size + o.dropped_corrupt + o.dropped_rejected;
        }
    }
    Some((pending, dropped))
}
