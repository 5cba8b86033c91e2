//! The bulk loader behind `sibyl-load`: CSV, long CSV and JSON lines into a table,
//! through the token-aware client, resumable.
//!
//! ```text
//! sibyl-load --host 127.0.0.1:7400 --table users --key id users.csv
//! sibyl-load --table users --format jsonl --key id - < users.jsonl
//! sibyl-load --table users --format long-csv cells.csv.gz
//! sibyl-load --table users --key id users.csv --resume      # after a kill or Ctrl-C
//! ```
//!
//! # Layout
//! - [`input`]: the file or stdin, gzip detected by its magic bytes, bytes counted.
//! - [`parse`]: the [`RecordParser`](parse::RecordParser) trait, wide and long CSV
//!   (the `csv` crate); [`jsonl`]: JSON lines.
//! - [`item`]: numbered items (a row or a reject), the protocol's limits, the digest.
//! - [`send`]: one batch, its retries and how refused rows are found.
//! - [`tracker`]: the watermark of finished items; [`rejects`]: the rejects file;
//!   [`checkpoint`]: the checkpoint file and its durable write.
//! - [`run`]: the load itself (reader thread, dispatcher, batch tasks);
//!   [`progress`] and [`report`]: what the user sees.
//!
//! # Input formats
//! - `--format csv` (default): a header line names the columns; `--key NAME` (default
//!   `key`) is the key column, every other column is written. An empty field is no value
//!   (not written), as `cqlsh COPY FROM` reads it; `--keep-empty` writes empty values.
//!   `--delimiter` sets the separator (default `,`). Quoting is RFC 4180 (the `csv`
//!   crate): quoted fields may hold delimiters, doubled quotes and newlines.
//! - `--format long-csv`: records `key,column,value`, after a header line unless
//!   `--no-header`. Consecutive records of one key are one row (at most 4096 cells, then
//!   the run is cut into several rows). Empty values are written.
//! - `--format jsonl`: one JSON object per line; `--key FIELD` names the key field (a
//!   string or a number). Strings are written as their text; numbers, `true`, `false`,
//!   objects and arrays as their JSON text exactly as in the input; `null` is not
//!   written (a missing value). Blank lines are skipped.
//! - The input is a file or `-` (stdin), gzip or not (the magic bytes decide, whatever
//!   the name; concatenated gzip members are read as one stream).
//!
//! Keys, names and values are bytes: CSV input need not be UTF-8.
//!
//! # Writes
//! Each row is one mutation with every column as a blind write (no context), grouped
//! with other rows owned by the same node (the first replica of its token on the ring
//! the client fetched) into one BATCH of at most `--batch-rows` rows (default 1024 into
//! one node, 512 into a cluster, see [`DEFAULT_BATCH_ROWS_CLUSTER`]) and `--batch-bytes`
//! bytes, sent to that node by the token-aware client; up to
//! `--in-flight` batches are outstanding at once, over `--connections` connections per
//! node. `--consistency` applies to every write (default: the table's write
//! consistency, as `sibyl-cli` does). `--rate N` caps rows per second.
//!
//! A cell given twice in the input (the same key and column in two rows) is written
//! twice: on a causal table the two blind writes become siblings, as two clients
//! writing blind would make them; on an lww table the later timestamp wins.
//!
//! # Retries, and why they are safe
//! Every mutation carries the write id `load_id << 64 | row number` (`load_id`: 64 random
//! bits drawn when the load starts, kept in the checkpoint). A batch that fails with
//! `UNAVAILABLE` or `OVERLOADED` (nothing written), `WRITE_TIMEOUT`, `READ_TIMEOUT`, a
//! client timeout or a lost connection (maybe written) is sent again unchanged, with
//! backoff (`--retry-backoff-ms` doubling up to 2 s), at most `--attempts` times. The
//! spec (section 5.2) makes that safe: a node that already holds a version with the
//! write id answers from it and creates none, so a causal cell never shows the row as a
//! sibling of itself; an lww cell gets the same value again. A batch the node refuses
//! (`INVALID`, `TOO_MANY_SIBLINGS`, `SERVER`) is split and each of its rows sent alone
//! with the same write id, so that only the refused rows are rejected and the others,
//! applied or not, are applied once. `UNKNOWN_TABLE` stops the load (exit 1).
//!
//! # Rejects
//! No row is dropped silently. A row that is malformed (wrong field count, empty key, no
//! column, a column twice, invalid JSON), oversize (key or column name over 16384
//! bytes, a value over `--max-value-bytes`, default 1 MiB as the node's `--max-value-kb`,
//! a row over one 16 MiB request), refused by the node, or still failing after every
//! attempt goes to the rejects file as one JSON line, in row order (format in
//! [`rejects`]): row number, input line, kind (`malformed`, `oversize`, `refused`,
//! `failed`), reason, and the record. Default path: the input's path plus
//! `.rejects.jsonl`, or `sibyl-load-TABLE.rejects.jsonl` in the working directory for
//! stdin (`--rejects PATH`). A `failed` row may have been applied (a timeout); loading
//! it again as a new load makes a sibling on a causal table if it was, so the report
//! counts failures apart, and a load whose attempts run out is better resumed after the
//! cluster is healthy (raise `--attempts`). `--max-rejects N` stops the load (exit 1)
//! once more than N rows are rejected.
//!
//! # Checkpoint and `--resume`
//! Rows are numbered in input order (the header excluded; in JSON lines blank lines
//! are not rows; in the long form a row is a run of records). The loader keeps a
//! watermark `W`: every row `1..=W` is finished (acknowledged at the chosen consistency,
//! or in the rejects file). Once per `--checkpoint-ms` (1000) and at the end it writes
//! the checkpoint (format in [`checkpoint`]; default path: the input's path plus
//! `.checkpoint`, or `sibyl-load-TABLE.checkpoint` for stdin; `--checkpoint PATH`):
//! `W`, the load id, a digest of rows `1..=W`, the length of the rejects file holding
//! their rejects, and the totals. It is written to a temporary file, fsynced, renamed
//! over the old one and the directory fsynced; the rejects file is fsynced first.
//!
//! `--resume` reads it, cuts the rejects file back to its recorded length, parses the
//! input again from the start, checks that rows `1..=W` have the recorded digest (the
//! same input, the same options), and sends every row after `W`. Rows after `W` that a
//! killed run had already written (in flight, or acknowledged above a gap) are sent again
//! with the same write ids, which the node recognises: no row is applied twice (no
//! sibling of itself on a causal table), none is missed (nothing after `W` was ever
//! counted). The ids are remembered per cell for 6 hours (spec 5.2): resume within
//! that, before later writes supersede the same cells. A new load while a checkpoint
//! exists is refused (it would write every row again under new ids): resume it, or
//! delete the checkpoint to start over. A completed load's checkpoint stays, marked
//! complete; `--resume` then does nothing. `--no-checkpoint` keeps none (and
//! cannot be resumed).
//!
//! # Table
//! The table must exist (`UNKNOWN_TABLE`: exit 1 with a message). `--create-table`
//! creates it if missing, with `--rf` (default 3, or the number of nodes if fewer, as
//! `sibyl-cli`) and `--conflict causal|lww` (default causal), and waits until every
//! node knows it.
//!
//! # Progress and report
//! On a terminal stderr shows a bar: input share, rows, rows/s and ETA when the input's
//! size is known (a file; for gzip, compressed bytes). Elsewhere a plain line every
//! `--progress-secs` (5); `--quiet` shows nothing. The report on stdout: rows (loaded
//! and rejected), cells, bytes, time, rate, rejects by kind and retries by kind; with
//! `--json`, one JSON object ([`report`]).
//!
//! # Exit status
//! - `0`: every row loaded (or `--resume` of a complete load).
//! - `1`: the load stopped on an error: no node reachable, unknown table, unreadable
//!   input or bad header, a resume that does not match its checkpoint, `--max-rejects`
//!   passed, a write error that stops the load. Rows finished before it are kept in the
//!   checkpoint: fix the cause and `--resume`.
//! - `2`: bad command line.
//! - `3`: the load completed, but some rows were rejected (see the rejects file). As
//!   DSBulk's "completed with errors", a script can tell a clean load from one that needs
//!   a look without parsing the report.
//! - `130`: interrupted by SIGINT or SIGTERM after finishing the rows in flight and
//!   writing the checkpoint: `--resume` continues.

pub mod checkpoint;
pub mod input;
pub mod item;
pub mod jsonl;
pub mod parse;
pub mod progress;
pub mod rejects;
pub mod report;
pub mod run;
pub mod send;
pub mod tracker;

use std::path::PathBuf;
use std::time::Duration;

use sibyl_protocol::{ClientError, Consistency, TableOptions};

pub use run::run;

use checkpoint::CheckpointError;
use input::InputSource;
use parse::{ParseError, ParseOptions};
use progress::ProgressMode;
use rejects::RejectsError;
use send::RetryPolicy;
use tracker::TrackerError;

/// Everything a load needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `host:port` of the nodes to start from (the ring is fetched from them).
    pub hosts: Vec<String>,
    /// Target table.
    pub table: String,
    /// Where rows come from.
    pub input: InputSource,
    /// How records become rows.
    pub parse: ParseOptions,
    /// Consistency of every write; `None` = the table's write consistency.
    pub consistency: Option<Consistency>,
    /// Rows per BATCH at most; `None` = [`DEFAULT_BATCH_ROWS_ONE_NODE`] when the ring
    /// has one member, else [`DEFAULT_BATCH_ROWS_CLUSTER`].
    pub batch_rows: Option<usize>,
    /// Bytes per BATCH at most (a larger row goes alone).
    pub batch_bytes: usize,
    /// Batches outstanding at once.
    pub in_flight: usize,
    /// Connections per node.
    pub connections: usize,
    /// Retries.
    pub retry: RetryPolicy,
    /// The rejects file; `None` = the default path.
    pub rejects_path: Option<PathBuf>,
    /// The checkpoint file; `None` = the default path.
    pub checkpoint_path: Option<PathBuf>,
    /// Whether to keep a checkpoint.
    pub checkpoint: bool,
    /// How often the checkpoint is written.
    pub checkpoint_every: Duration,
    /// Continue the load of the checkpoint.
    pub resume: bool,
    /// Create the table with these options when missing.
    pub create_table: Option<TableOptions>,
    /// The replication factor given for `--create-table` (else 3, capped by the nodes).
    pub create_rf: Option<u16>,
    /// Stop once more rows than this are rejected.
    pub max_rejects: Option<u64>,
    /// Rows per second at most.
    pub rate: Option<u64>,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// Interval of plain progress lines.
    pub progress_interval: Duration,
    /// Who the load logs in as (`None`: no login).
    pub credentials: Option<sibyl_protocol::Credentials>,
}

/// A load that stopped (exit status 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The input cannot be opened or read, or its header is unusable.
    #[error("input {input}: {source}")]
    Input {
        /// The input as given.
        input: String,
        /// What went wrong.
        #[source]
        source: ParseError,
    },
    /// No node could be reached (or answered), or the login was refused.
    #[error("cannot connect to the cluster: {0}")]
    Connect(#[source] ClientError),
    /// The table does not exist.
    #[error("table {table} does not exist: create it first (sibyl-cli -e \"create table {table}\") or pass --create-table")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// `--create-table` failed.
    #[error("cannot create table {table}: {source}")]
    CreateTable {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A fresh load would repeat an earlier one.
    #[error("checkpoint {path} exists from an earlier load ({rows_done} rows done{}): continue it with --resume, or delete it to load everything again", if *complete { ", complete" } else { "" })]
    CheckpointExists {
        /// The checkpoint file.
        path: String,
        /// Its watermark.
        rows_done: u64,
        /// Whether that load completed.
        complete: bool,
    },
    /// `--resume` without a checkpoint.
    #[error("no checkpoint at {path} to resume from (name it with --checkpoint)")]
    NoCheckpoint {
        /// Where it was looked for.
        path: String,
    },
    /// The resumed run is not the checkpoint's load.
    #[error("cannot resume: {reason}")]
    ResumeMismatch {
        /// What differs.
        reason: String,
    },
    /// The checkpoint cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The rejects file cannot be written.
    #[error(transparent)]
    Rejects(#[from] RejectsError),
    /// A write failed in a way that stops the load.
    #[error("write failed: {0}")]
    Write(#[source] ClientError),
    /// More rows were rejected than `--max-rejects` allows.
    #[error("more than {limit} rows rejected (--max-rejects): stopped; see the rejects file")]
    TooManyRejects {
        /// The limit.
        limit: u64,
    },
    /// The loader's own bookkeeping failed (a bug).
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    /// Another internal failure.
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// Rows per batch into a single node: the node writes a batch's rows one engine write
/// each but answers it as one request, so large batches save per-request work (measured:
/// 1024 rows loaded about 1.5 times faster than 256).
pub const DEFAULT_BATCH_ROWS_ONE_NODE: usize = 1024;
/// Rows per batch into a cluster: a coordinator mints the rows it is a home replica of
/// together and ships them in one call per replica, so batches pay off as on one node,
/// but each waits for its replicas' acknowledgements (measured on three nodes, rf 3, in
/// one run: 512 rows 2.8 times faster than 64).
pub const DEFAULT_BATCH_ROWS_CLUSTER: usize = 512;

/// Exit status of a load that completed with rejected rows.
pub const EXIT_REJECTS: i32 = 3;
/// Exit status of an interrupted load (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;
