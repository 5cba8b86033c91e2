//! One load, start to end: connect, check (or create) the table, open the checkpoint,
//! rejects file and input, then the dispatcher loop.
//!
//! Threads: the input is parsed on a std thread of its own ([`reader_thread`]), which
//! sends numbered items in chunks over a bounded channel (back-pressure: it blocks when
//! the dispatcher is behind). The dispatcher is one tokio task owning every piece of
//! state (the [`Tracker`], the batches being filled, the rejects file, the checkpoint);
//! each batch is written by a task of its own in a `JoinSet` (at most `in_flight`). The
//! dispatcher writes the checkpoint itself (a write, an fsync and a rename once per
//! `checkpoint_every`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sibyl_protocol::client::ClientRing;
use sibyl_protocol::{Client, ClientError, ClientOptions, ErrorKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::load::checkpoint::Checkpoint;
use crate::load::input::{self, InputSource};
use crate::load::item::{row_payload_bytes, Item, ItemDigest, LoadRow, RejectKind};
use crate::load::parse::{self, RecordParser};
use crate::load::progress::Progress;
use crate::load::rejects::RejectsFile;
use crate::load::report::{Ending, LoadReport};
use crate::load::send::{BatchOutcome, BatchSender};
use crate::load::tracker::{Totals, Tracker};
use crate::load::{LoadConfig, LoadError};

/// Items per chunk sent from the reader thread.
const CHUNK_ITEMS: usize = 1024;
/// Chunks queued between the reader thread and the dispatcher.
const CHUNK_QUEUE: usize = 16;
/// How often the dispatcher refreshes the progress display and looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// How long `--create-table` waits for every node to know the new table.
const SCHEMA_WAIT: Duration = Duration::from_secs(10);

/// What the reader thread sends.
enum ReaderMsg {
    /// Items with the digest after each.
    Chunk(Vec<(Item, u32)>),
    /// The end of the input, or why reading stopped.
    End(Result<(), LoadError>),
}

/// Resolves the checkpoint and rejects paths of `config` (defaults: beside the input,
/// or in the working directory for stdin).
pub fn paths(config: &LoadConfig) -> (std::path::PathBuf, std::path::PathBuf) {
    let beside = |suffix: &str| match &config.input {
        InputSource::File(p) => {
            let mut s = p.as_os_str().to_owned();
            s.push(suffix);
            std::path::PathBuf::from(s)
        }
        InputSource::Stdin => {
            std::path::PathBuf::from(format!("sibyl-load-{}{suffix}", config.table))
        }
    };
    (
        config
            .checkpoint_path
            .clone()
            .unwrap_or_else(|| beside(".checkpoint")),
        config
            .rejects_path
            .clone()
            .unwrap_or_else(|| beside(".rejects.jsonl")),
    )
}

/// A fresh load id: 64 bits from the OS-seeded generator.
fn new_load_id() -> u64 {
    rand::random::<u64>()
}

/// Runs the load of `config`.
pub async fn run(config: LoadConfig) -> Result<LoadReport, LoadError> {
    // A missing input is reported before anything else is tried.
    if let Some(path) = config.input.path() {
        std::fs::metadata(path).map_err(|source| LoadError::Input {
            input: config.input.display(),
            source: source.into(),
        })?;
    }
    let (checkpoint_path, rejects_path) = paths(&config);
    // The checkpoint first: a refused resume should not need a cluster.
    let previous = Checkpoint::read(&checkpoint_path)?;
    let resume_from = match (config.resume, previous) {
        (false, Some(cp)) if config.checkpoint => {
            return Err(LoadError::CheckpointExists {
                path: checkpoint_path.display().to_string(),
                rows_done: cp.rows_done,
                complete: cp.complete,
            })
        }
        (false, _) => None,
        (true, None) => {
            return Err(LoadError::NoCheckpoint {
                path: checkpoint_path.display().to_string(),
            })
        }
        (true, Some(cp)) => {
            check_same_load(&config, &cp)?;
            Some(cp)
        }
    };
    let client = Client::connect_with(
        &config.hosts,
        ClientOptions {
            request_timeout: config.retry.timeout,
            connect_timeout: config.retry.timeout,
            pool_size: config.connections.max(1),
            client_name: concat!("sibyl-load/", env!("CARGO_PKG_VERSION")).to_owned(),
            credentials: config.credentials.clone(),
            ..ClientOptions::default()
        },
    )
    .await
    .map_err(LoadError::Connect)?;
    prepare_table(&client, &config).await?;

    let (load_id, totals, digest) = match &resume_from {
        Some(cp) => (cp.load_id()?, totals_of(cp), cp.digest),
        None => (new_load_id(), Totals::default(), 0),
    };
    let mut rejects = RejectsFile::open(
        &rejects_path,
        resume_from.as_ref().map_or(0, |c| c.rejects_len),
    )?;
    let mut checkpointer = Checkpointer {
        path: config.checkpoint.then(|| checkpoint_path.clone()),
        base: Checkpoint {
            load_id: format!("{load_id:016x}"),
            table: config.table.clone(),
            format: config.parse.format.name().to_owned(),
            key: key_name(&config),
            input: config.input.display(),
            rows_done: 0,
            digest: 0,
            rejects_path: rejects_path.display().to_string(),
            rejects_len: 0,
            loaded_rows: 0,
            cells: 0,
            bytes: 0,
            rejects: BTreeMap::new(),
            complete: false,
        },
    };
    let at_start = totals.clone();
    if resume_from.as_ref().is_some_and(|c| c.complete) {
        return Ok(LoadReport {
            ending: Ending::Complete,
            totals: totals.clone(),
            at_start,
            elapsed: Duration::ZERO,
            retries: BTreeMap::new(),
            rejects_path: rejects_path.display().to_string(),
            checkpoint_path: checkpointer.path.as_ref().map(|p| p.display().to_string()),
            resumed: true,
            gzip: false,
        });
    }
    let tracker = Tracker::new(totals, digest);
    // The first checkpoint names the load id before any write carries it, so a load
    // killed in its first second resumes with the same ids.
    checkpointer.write(&tracker, &mut rejects, false)?;

    let opened = input::open(&config.input).map_err(|source| LoadError::Input {
        input: config.input.display(),
        source: source.into(),
    })?;
    let consumed = Arc::clone(&opened.consumed);
    let (size, gzip) = (opened.size, opened.gzip);
    let parser =
        parse::parser(&config.parse, opened.reader).map_err(|source| LoadError::Input {
            input: config.input.display(),
            source,
        })?;
    let skip = resume_from
        .as_ref()
        .map(|c| (c.rows_done, c.digest))
        .filter(|(w, _)| *w > 0);
    let chunk_items = match config.rate {
        Some(rate) => usize::try_from(rate / 20)
            .unwrap_or(CHUNK_ITEMS)
            .clamp(1, CHUNK_ITEMS),
        None => CHUNK_ITEMS,
    };
    let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
    let input_name = config.input.display();
    std::thread::Builder::new()
        .name("sibyl-load-reader".into())
        .spawn(move || reader_thread(parser, skip, chunk_items, input_name, tx))
        .map_err(|e| LoadError::Input {
            input: config.input.display(),
            source: e.into(),
        })?;

    let sender = BatchSender {
        client: client.clone(),
        table: config.table.clone(),
        consistency: config.consistency,
        load_id,
        retry: config.retry,
    };
    let members = dispatcher_ring_members(&client);
    let batch_rows = config.batch_rows.unwrap_or(if members > 1 {
        crate::load::DEFAULT_BATCH_ROWS_CLUSTER
    } else {
        crate::load::DEFAULT_BATCH_ROWS_ONE_NODE
    });
    let progress = Progress::new(
        config.progress,
        size,
        config.progress_interval,
        at_start.rows_done,
    );
    let mut dispatcher = Dispatcher {
        config: &config,
        client,
        sender,
        tracker,
        rejects,
        checkpointer,
        progress,
        batches: HashMap::new(),
        batch_rows: batch_rows.max(1),
        ring: None,
        tasks: JoinSet::new(),
        retries: BTreeMap::new(),
        taken_this_run: 0,
        started: Instant::now(),
    };
    let ending = dispatcher.run(rx, &consumed).await?;
    dispatcher.progress.finish();
    Ok(LoadReport {
        ending,
        totals: dispatcher.tracker.totals().clone(),
        at_start,
        elapsed: dispatcher.started.elapsed(),
        retries: dispatcher.retries,
        rejects_path: rejects_path.display().to_string(),
        checkpoint_path: dispatcher
            .checkpointer
            .path
            .as_ref()
            .map(|p| p.display().to_string()),
        resumed: resume_from.is_some(),
        gzip,
    })
}

/// Members of the ring the client routes by (1 without a ring).
fn dispatcher_ring_members(client: &Client) -> usize {
    client.ring().map_or(1, |r| r.members().len().max(1))
}

fn key_name(config: &LoadConfig) -> String {
    match config.parse.format {
        parse::Format::LongCsv => String::new(),
        _ => config.parse.key.clone(),
    }
}

/// Refuses a resume whose settings name another load.
fn check_same_load(config: &LoadConfig, cp: &Checkpoint) -> Result<(), LoadError> {
    let mismatch = |what: &str, was: &str, now: &str| {
        Err(LoadError::ResumeMismatch {
            reason: format!("the checkpoint is of {what} {was:?}, this run names {now:?}"),
        })
    };
    if cp.table != config.table {
        return mismatch("table", &cp.table, &config.table);
    }
    if cp.format != config.parse.format.name() {
        return mismatch("format", &cp.format, config.parse.format.name());
    }
    let key = key_name(config);
    if cp.key != key {
        return mismatch("key", &cp.key, &key);
    }
    Ok(())
}

fn totals_of(cp: &Checkpoint) -> Totals {
    Totals {
        rows_done: cp.rows_done,
        loaded_rows: cp.loaded_rows,
        cells: cp.cells,
        bytes: cp.bytes,
        rejects: cp
            .rejects
            .iter()
            .filter_map(|(k, n)| RejectKind::from_name(k).map(|k| (k, *n)))
            .collect(),
    }
}

/// Checks that the table exists, or creates it (`--create-table`) and waits until every
/// node of the ring knows it.
async fn prepare_table(client: &Client, config: &LoadConfig) -> Result<(), LoadError> {
    if let Some(options) = &config.create_table {
        let mut options = options.clone();
        let members = client.ring().map_or(1, |r| r.members().len().max(1));
        if config.create_rf.is_none() {
            // As sibyl-cli: rf 3, or the number of members if fewer.
            options.replication_factor = options.replication_factor.min(members as u16).max(1);
        }
        match client
            .create_table_if_not_exists(&config.table, options)
            .await
        {
            Ok(_) => {}
            Err(ClientError::Server(e)) if matches!(e.kind, ErrorKind::TableExists { .. }) => {}
            Err(source) => {
                return Err(LoadError::CreateTable {
                    table: config.table.clone(),
                    source,
                })
            }
        }
        wait_for_schema(client, &config.table).await;
        return Ok(());
    }
    match client.describe_table(&config.table).await {
        Ok(_) => Ok(()),
        Err(ClientError::Server(e)) if matches!(e.kind, ErrorKind::UnknownTable { .. }) => {
            Err(LoadError::UnknownTable {
                table: config.table.clone(),
            })
        }
        Err(e) => Err(LoadError::Connect(e)),
    }
}

/// Polls every ring member's table list until it names `table` (bounded by
/// [`SCHEMA_WAIT`]; a node that never learns it answers UNKNOWN_TABLE, which stops the
/// load with a clear error).
async fn wait_for_schema(client: &Client, table: &str) {
    let Some(ring) = client.ring() else { return };
    let deadline = tokio::time::Instant::now() + SCHEMA_WAIT;
    for member in ring.members() {
        let options = ClientOptions {
            token_aware: false,
            pool_size: 1,
            ..client.options().clone()
        };
        let Ok(one) = Client::connect_with(&[member.address.as_str()], options).await else {
            continue;
        };
        while tokio::time::Instant::now() < deadline {
            match one.list_tables().await {
                Ok(t) if t.iter().any(|n| n == table) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await, // polling interval
            }
        }
    }
}

/// Parses the input and sends its items in chunks; skips the items below a resumed
/// load's watermark after checking their digest.
fn reader_thread(
    mut parser: Box<dyn RecordParser>,
    skip: Option<(u64, u32)>,
    chunk_items: usize,
    input: String,
    tx: mpsc::Sender<ReaderMsg>,
) {
    let mut read = || -> Result<bool, LoadError> {
        let mut digest = ItemDigest::default();
        let mut chunk = Vec::with_capacity(chunk_items);
        let mut last = 0;
        while let Some(item) = parser.next_item().map_err(|source| LoadError::Input {
            input: input.clone(),
            source,
        })? {
            digest.add(&item);
            last = item.number();
            if let Some((w, expected)) = skip {
                if last < w {
                    continue;
                }
                if last == w {
                    if digest.value() != expected {
                        return Err(LoadError::ResumeMismatch {
                            reason: format!(
                                "the first {w} rows of the input differ from those the checkpoint \
                                 recorded (digest {:08x}, expected {expected:08x}): resume with \
                                 the same input and options",
                                digest.value()
                            ),
                        });
                    }
                    continue;
                }
            }
            chunk.push((item, digest.value()));
            if chunk.len() >= chunk_items
                && tx
                    .blocking_send(ReaderMsg::Chunk(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(chunk_items),
                    )))
                    .is_err()
            {
                return Ok(false);
            }
        }
        if let Some((w, _)) = skip.filter(|(w, _)| last < *w) {
            return Err(LoadError::ResumeMismatch {
                reason: format!("the input has {last} rows but the checkpoint has {w} done"),
            });
        }
        if !chunk.is_empty() && tx.blocking_send(ReaderMsg::Chunk(chunk)).is_err() {
            return Ok(false);
        }
        Ok(true)
    };
    let result = read();
    if !matches!(result, Ok(false)) {
        let _ = tx.blocking_send(ReaderMsg::End(result.map(|_| ())));
    }
}

/// Writes the checkpoint of the tracker's watermark.
struct Checkpointer {
    /// `None` with `--no-checkpoint`.
    path: Option<std::path::PathBuf>,
    base: Checkpoint,
}

impl Checkpointer {
    fn write(
        &mut self,
        tracker: &Tracker,
        rejects: &mut RejectsFile,
        complete: bool,
    ) -> Result<(), LoadError> {
        // The rejects below the watermark are on disk before a checkpoint counts them.
        rejects.sync()?;
        let Some(path) = &self.path else {
            return Ok(());
        };
        let t = tracker.totals();
        let cp = Checkpoint {
            rows_done: t.rows_done,
            digest: tracker.digest(),
            rejects_len: rejects.len(),
            loaded_rows: t.loaded_rows,
            cells: t.cells,
            bytes: t.bytes,
            rejects: t
                .rejects
                .iter()
                .map(|(k, n)| (k.name().to_owned(), *n))
                .collect(),
            complete,
            ..self.base.clone()
        };
        cp.write(path)?;
        Ok(())
    }
}

/// A batch being filled for one ring member.
#[derive(Default)]
struct Filling {
    rows: Vec<LoadRow>,
    bytes: usize,
}

/// Why the dispatcher stops taking input.
enum Stop {
    Interrupted,
    Fatal(LoadError),
}

struct Dispatcher<'a> {
    config: &'a LoadConfig,
    client: Client,
    sender: BatchSender,
    tracker: Tracker,
    rejects: RejectsFile,
    checkpointer: Checkpointer,
    progress: Progress,
    /// Rows per batch.
    batch_rows: usize,
    /// Batches being filled, by ring member index (`usize::MAX`: no ring).
    batches: HashMap<usize, Filling>,
    ring: Option<Arc<ClientRing>>,
    tasks: JoinSet<BatchOutcome>,
    retries: BTreeMap<String, u64>,
    taken_this_run: u64,
    started: Instant,
}

impl Dispatcher<'_> {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<ReaderMsg>,
        consumed: &std::sync::atomic::AtomicU64,
    ) -> Result<Ending, LoadError> {
        let mut input_open = true;
        let mut stop: Option<Stop> = None;
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let interrupt = interrupted();
        tokio::pin!(interrupt);
        self.ring = self.client.ring().filter(|r| !r.is_empty());
        loop {
            let max = self.config.in_flight.max(1);
            if stop.is_none() {
                // Take what is ready without waiting.
                while input_open && self.tasks.len() < max && self.throttle_until().is_none() {
                    match rx.try_recv() {
                        Ok(msg) => self.on_message(msg, &mut input_open, &mut stop)?,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => input_open = false,
                    }
                    if stop.is_some() {
                        break;
                    }
                }
                // Partial batches go when nothing is in flight (the nodes are idle) or the
                // input is over: large batches under load, no stall on a slow input.
                if stop.is_none() && (self.tasks.is_empty() || !input_open) {
                    self.flush_partial();
                }
            }
            self.advance()?;
            if let Some(max_rejects) = self.config.max_rejects {
                if stop.is_none() && self.tracker.totals().rejected() > max_rejects {
                    stop = Some(Stop::Fatal(LoadError::TooManyRejects {
                        limit: max_rejects,
                    }));
                }
            }
            if self.tasks.is_empty() && (stop.is_some() || (!input_open && self.batches.is_empty()))
            {
                break;
            }
            let can_take = stop.is_none() && input_open && self.tasks.len() < max;
            let throttle = self.throttle_until();
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok(outcome) => {
                            if let Some(e) = self.on_outcome(outcome)? {
                                stop.get_or_insert(Stop::Fatal(e));
                            }
                        }
                        Err(e) => {
                            stop.get_or_insert(Stop::Fatal(LoadError::Internal { reason: format!("batch task failed: {e}") }));
                        }
                    }
                }
                msg = rx.recv(), if can_take && throttle.is_none() => match msg {
                    Some(msg) => self.on_message(msg, &mut input_open, &mut stop)?,
                    None => input_open = false,
                },
                () = sleep_until(throttle), if can_take && throttle.is_some() => {}
                _ = ticker.tick() => {
                    self.ring = self.client.ring().filter(|r| !r.is_empty());
                    self.advance()?;
                    self.progress.update(self.tracker.totals().rows_done, consumed.load(Ordering::Relaxed));
                    if last_checkpoint.elapsed() >= self.config.checkpoint_every {
                        self.checkpointer.write(&self.tracker, &mut self.rejects, false)?;
                        last_checkpoint = Instant::now();
                    }
                }
                () = &mut interrupt, if stop.is_none() => stop = Some(Stop::Interrupted),
            }
        }
        drop(rx);
        self.advance()?;
        let complete = stop.is_none() && !input_open && self.tracker.open_items() == 0;
        self.checkpointer
            .write(&self.tracker, &mut self.rejects, complete)?;
        self.progress.update(
            self.tracker.totals().rows_done,
            consumed.load(Ordering::Relaxed),
        );
        match stop {
            Some(Stop::Fatal(e)) => Err(e),
            Some(Stop::Interrupted) => Ok(Ending::Interrupted),
            None if complete => Ok(Ending::Complete),
            None => Err(LoadError::Internal {
                reason: format!("{} items never finished", self.tracker.open_items()),
            }),
        }
    }

    /// When the rate limit next allows a chunk, if it does not now.
    fn throttle_until(&self) -> Option<tokio::time::Instant> {
        let rate = self.config.rate.filter(|r| *r > 0)?;
        let due = self.started + Duration::from_secs_f64(self.taken_this_run as f64 / rate as f64);
        (due > Instant::now()).then(|| tokio::time::Instant::from_std(due))
    }

    fn on_message(
        &mut self,
        msg: ReaderMsg,
        input_open: &mut bool,
        stop: &mut Option<Stop>,
    ) -> Result<(), LoadError> {
        match msg {
            ReaderMsg::Chunk(items) => self.take(items),
            ReaderMsg::End(result) => {
                *input_open = false;
                if let Err(e) = result {
                    stop.get_or_insert(Stop::Fatal(e));
                }
                Ok(())
            }
        }
    }

    /// Registers each item and adds each row to its member's batch.
    fn take(&mut self, items: Vec<(Item, u32)>) -> Result<(), LoadError> {
        let table_len = self.config.table.len();
        for (item, digest) in items {
            self.taken_this_run += 1;
            match item {
                Item::Reject(r) => {
                    self.tracker.push(r.number, digest, 0, 0)?;
                    self.tracker.finish(r.number, Some(r))?;
                }
                Item::Row(row) => {
                    let cells = u32::try_from(row.columns.len()).unwrap_or(u32::MAX);
                    self.tracker
                        .push(row.number, digest, cells, row.data_bytes())?;
                    let member = match &self.ring {
                        Some(ring) => ring
                            .owner_index(ring.token_of(&row.key))
                            .unwrap_or(usize::MAX),
                        None => usize::MAX,
                    };
                    let size = row_payload_bytes(&row.key, &row.columns, table_len);
                    let filling = self.batches.entry(member).or_default();
                    if !filling.rows.is_empty() && filling.bytes + size > self.config.batch_bytes {
                        let full = std::mem::take(filling);
                        self.launch(full.rows);
                    }
                    let filling = self.batches.entry(member).or_default();
                    filling.rows.push(row);
                    filling.bytes += size;
                    if filling.rows.len() >= self.batch_rows {
                        if let Some(full) = self.batches.remove(&member) {
                            self.launch(full.rows);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn flush_partial(&mut self) {
        let batches: Vec<Filling> = self.batches.drain().map(|(_, b)| b).collect();
        for b in batches {
            if !b.rows.is_empty() {
                self.launch(b.rows);
            }
        }
    }

    fn launch(&mut self, rows: Vec<LoadRow>) {
        let sender = self.sender.clone();
        self.tasks.spawn(async move { sender.send(rows).await });
    }

    /// Records a batch's outcome; returns a fatal error to stop on.
    fn on_outcome(&mut self, outcome: BatchOutcome) -> Result<Option<LoadError>, LoadError> {
        for n in outcome.loaded {
            self.tracker.finish(n, None)?;
        }
        for r in outcome.rejected {
            let n = r.number;
            self.tracker.finish(n, Some(r))?;
        }
        for kind in outcome.retries {
            *self.retries.entry(kind).or_default() += 1;
        }
        Ok(outcome.fatal.map(|e| match &e {
            ClientError::Server(s) if matches!(s.kind, ErrorKind::UnknownTable { .. }) => {
                LoadError::UnknownTable {
                    table: self.config.table.clone(),
                }
            }
            _ => LoadError::Write(e),
        }))
    }

    fn advance(&mut self) -> Result<(), LoadError> {
        let rejects = &mut self.rejects;
        self.tracker.advance(|r| rejects.write(r))?;
        Ok(())
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
