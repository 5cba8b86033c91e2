//! `sibyl-load`: bulk-load CSV, long CSV or JSON lines into a Sibyl table, resumably.
//!
//! `sibyl-load --host 127.0.0.1:7400 --table users --key id users.csv[.gz]` loads the
//! file through the token-aware client and prints a report; formats, rejects file,
//! checkpoint, `--resume` and exit statuses are documented in `sibyl_tools::load` and in
//! `--help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use sibyl_protocol::{ConflictMode, TableOptions};
use sibyl_tools::consistency::parse_consistency;
use sibyl_tools::load::input::InputSource;
use sibyl_tools::load::item::{RowLimits, DEFAULT_MAX_VALUE_BYTES};
use sibyl_tools::load::parse::{Format, ParseOptions};
use sibyl_tools::load::progress::ProgressMode;
use sibyl_tools::load::report::Ending;
use sibyl_tools::load::send::RetryPolicy;
use sibyl_tools::load::{LoadConfig, EXIT_INTERRUPTED, EXIT_REJECTS};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// CSV with a header line; --key names the key column, the others are columns.
    Csv,
    /// CSV records key,column,value (a header line first unless --no-header).
    LongCsv,
    /// One JSON object per line; --key names the key field.
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConflictArg {
    /// Dotted version vectors: concurrent writes are kept as siblings.
    Causal,
    /// Last write wins by timestamp.
    Lww,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProgressArg {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines every --progress-secs.
    Plain,
    /// Nothing.
    Off,
}

/// Bulk-load rows into a Sibyl table from CSV, long CSV (key,column,value) or JSON lines,
/// gzip or not, through the token-aware client. Rows that cannot be loaded go to the
/// rejects file (one JSON line each: row, line, kind, reason, record); a checkpoint lets
/// --resume continue an interrupted load without writing a row twice or missing one.
///
/// Exit status: 0 every row loaded; 1 the load stopped on an error (the checkpoint
/// keeps what was done: fix the cause and --resume); 2 bad command line; 3 completed but
/// some rows were rejected; 130 interrupted (SIGINT/SIGTERM): --resume continues.
#[derive(Debug, Parser)]
#[command(name = "sibyl-load", version)]
struct Args {
    /// Input file, or - for stdin. Gzip is detected by its magic bytes.
    input: String,
    /// Node addresses (host:port), comma-separated or repeated; the ring is fetched from
    /// them and each batch goes to the node owning its rows.
    #[arg(long, default_value = "127.0.0.1:7400", value_delimiter = ',')]
    host: Vec<String>,
    /// Target table (must exist unless --create-table).
    #[arg(long, short = 't')]
    table: String,
    /// Input format.
    #[arg(long, short = 'f', value_enum, default_value = "csv")]
    format: FormatArg,
    /// Key column (csv) or field (jsonl).
    #[arg(long, short = 'k', default_value = "key")]
    key: String,
    /// CSV field delimiter (one byte).
    #[arg(long, default_value = ",")]
    delimiter: char,
    /// The long-csv input has no header line.
    #[arg(long)]
    no_header: bool,
    /// Write empty CSV fields as empty values (default: an empty field is not written).
    #[arg(long)]
    keep_empty: bool,
    /// Consistency of every write: one, two, three, quorum, all, local_quorum or a count,
    /// optionally :strict (default: the table's write consistency).
    #[arg(long)]
    consistency: Option<String>,
    /// Rows per batch at most (rows of one node's tokens); default 1024 into one node,
    /// 512 into a cluster (each batch waits for its replicas' acknowledgements).
    #[arg(long)]
    batch_rows: Option<usize>,
    /// Bytes per batch at most (a larger row is sent alone).
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Connections per node.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Attempts per request in all (retries of timeouts, unavailable, lost connections).
    #[arg(long, default_value_t = 8)]
    attempts: u32,
    /// Wait before the first retry, doubled each time up to 2 s.
    #[arg(long, default_value_t = 50)]
    retry_backoff_ms: u64,
    /// Seconds a request may wait for its answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Largest value accepted (the node's --max-value-kb); larger ones are rejected as
    /// oversize before sending.
    #[arg(long, default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    /// Rejects file (default: INPUT.rejects.jsonl, or sibyl-load-TABLE.rejects.jsonl in
    /// the working directory for stdin).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Checkpoint file (default: INPUT.checkpoint, or sibyl-load-TABLE.checkpoint in the
    /// working directory for stdin).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Keep no checkpoint (the load cannot be resumed).
    #[arg(long, conflicts_with = "resume")]
    no_checkpoint: bool,
    /// Milliseconds between two checkpoints.
    #[arg(long, default_value_t = 1000)]
    checkpoint_ms: u64,
    /// Continue the load recorded in the checkpoint (same input, table and options).
    #[arg(long)]
    resume: bool,
    /// Create the table if it does not exist.
    #[arg(long)]
    create_table: bool,
    /// Replication factor of a created table (default 3, or the number of nodes if fewer).
    #[arg(long, requires = "create_table")]
    rf: Option<u16>,
    /// Conflict mode of a created table.
    #[arg(long, value_enum, default_value = "causal", requires = "create_table")]
    conflict: ConflictArg,
    /// Stop (exit 1) once more than this many rows are rejected.
    #[arg(long)]
    max_rejects: Option<u64>,
    /// Rows per second at most.
    #[arg(long)]
    rate: Option<u64>,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
    /// Seconds between plain progress lines.
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
    /// Print the final report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    credentials: sibyl_tools::credentials::CredentialArgs,
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // The library errors already name their causes; `{e}` avoids repeating them.
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn config(args: &Args) -> Result<LoadConfig> {
    let consistency = args
        .consistency
        .as_deref()
        .map(parse_consistency)
        .transpose()?;
    let timeout = sibyl_tools::flags::timeout(args.timeout)?;
    let delimiter = u8::try_from(args.delimiter)
        .ok()
        .filter(|d| d.is_ascii())
        .context("--delimiter must be one ASCII character")?;
    let format = match args.format {
        FormatArg::Csv => Format::Csv,
        FormatArg::LongCsv => Format::LongCsv,
        FormatArg::Jsonl => Format::JsonLines,
    };
    let create_table = args.create_table.then(|| TableOptions {
        replication_factor: args.rf.unwrap_or(3),
        conflict_mode: match args.conflict {
            ConflictArg::Causal => ConflictMode::Causal,
            ConflictArg::Lww => ConflictMode::Lww,
        },
        ..TableOptions::default()
    });
    Ok(LoadConfig {
        hosts: args.host.clone(),
        table: args.table.clone(),
        input: InputSource::from_arg(&args.input),
        parse: ParseOptions {
            format,
            key: args.key.clone(),
            delimiter,
            header: !args.no_header,
            keep_empty: args.keep_empty,
            limits: RowLimits {
                max_value_bytes: args.max_value_bytes,
                table_len: args.table.len(),
            },
        },
        consistency,
        batch_rows: args.batch_rows.map(|b| b.max(1)),
        batch_bytes: args.batch_bytes.max(1),
        in_flight: args.in_flight.max(1),
        connections: args.connections.max(1),
        retry: RetryPolicy {
            attempts: args.attempts.max(1),
            backoff: Duration::from_millis(args.retry_backoff_ms),
            max_backoff: Duration::from_secs(2),
            timeout,
        },
        rejects_path: args.rejects.clone(),
        checkpoint_path: args.checkpoint.clone(),
        checkpoint: !args.no_checkpoint,
        checkpoint_every: Duration::from_millis(args.checkpoint_ms.max(1)),
        resume: args.resume,
        create_table,
        create_rf: args.rf,
        max_rejects: args.max_rejects,
        rate: args.rate.filter(|r| *r > 0),
        progress: match args.progress {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Plain => ProgressMode::Plain,
            ProgressArg::Off => ProgressMode::Off,
        },
        progress_interval: Duration::from_secs(args.progress_secs.max(1)),
        credentials: args.credentials.resolve(false)?,
    })
}

fn real_main() -> Result<i32> {
    let args = Args::parse();
    let config = config(&args)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("cannot start the tokio runtime")?;
    let report = rt.block_on(sibyl_tools::load::run(config))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(match report.ending {
        Ending::Interrupted => EXIT_INTERRUPTED,
        Ending::Complete if report.totals.rejected() > 0 => EXIT_REJECTS,
        Ending::Complete => 0,
    })
}
