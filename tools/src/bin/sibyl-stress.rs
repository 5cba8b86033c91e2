//! `sibyl-stress`: a load generator (like cassandra-stress / redis-benchmark).
//!
//! `sibyl-stress --host 127.0.0.1:7400[,HOST...] [--routing token|round-robin] --op put --connections 50 --requests 100000
//! --value-size 100 --keyspace 1000000 --pipeline 1 [--json]` creates its table if missing,
//! runs the load and prints throughput and latency percentiles (HDR histogram, µs
//! resolution) and errors by type; with `--json`, one JSON object per line per op. The
//! logic lives in `sibyl_tools::stress`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use sibyl_tools::consistency::parse_consistency;
use sibyl_tools::stress::workload::{OpMix, WorkloadSpec};
use sibyl_tools::stress::{run, Driver, Routing, StressConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Op {
    Put,
    Get,
    Mixed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoutingArg {
    /// By the ring: each request reaches a replica of its key.
    Token,
    /// Over the hosts given, in turn.
    RoundRobin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DriverArg {
    /// Frames through the protocol codec, one task per connection (lowest overhead).
    Raw,
    /// The client library's connection, `pipeline` tasks per connection.
    Client,
}

/// Load generator for a Sibyl node.
#[derive(Debug, Parser)]
#[command(name = "sibyl-stress", version)]
struct Args {
    /// Node addresses (host:port), comma-separated or repeated: where the ring is
    /// fetched from (token routing) or the nodes loaded in turn (round-robin).
    #[arg(long, default_value = "127.0.0.1:7400", value_delimiter = ',')]
    host: Vec<String>,
    /// How connections are spread: `token` sends each connection to one ring member with
    /// keys that member owns (a token-aware client's routing); `round-robin` spreads
    /// connections over --host in turn with any key.
    #[arg(long, value_enum, default_value = "token")]
    routing: RoutingArg,
    /// Operation.
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Client connections, each its own TCP connection.
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Requests in total, spread over the connections.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    requests: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys are drawn uniformly from [0, keyspace).
    #[arg(long, default_value_t = 1_000_000)]
    keyspace: u64,
    /// Requests in flight per connection.
    #[arg(long, short = 'P', default_value_t = 1)]
    pipeline: usize,
    /// Fraction of reads for --op mixed.
    #[arg(long, default_value_t = 0.5)]
    ratio: f64,
    /// Table (created if missing).
    #[arg(long, default_value = "stress")]
    table: String,
    /// Replication factor if the table is created.
    #[arg(long, default_value_t = 1)]
    rf: u16,
    /// Per-request consistency: one, two, three, quorum, all, local_quorum, N, with
    /// an optional :strict (default: the table's).
    #[arg(long)]
    consistency: Option<String>,
    /// Seed of the key and op draws (printed; default from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds to wait for a response before failing the connection.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Which code drives the connections.
    #[arg(long, value_enum, default_value = "raw")]
    driver: DriverArg,
    /// Print one JSON object per line per op instead of text.
    #[arg(long)]
    json: bool,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    credentials: sibyl_tools::credentials::CredentialArgs,
}

fn main() {
    if let Err(e) = real_main() {
        // The library errors already name their causes; `{e}` avoids repeating them.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let consistency = args
        .consistency
        .as_deref()
        .map(parse_consistency)
        .transpose()?;
    let timeout = sibyl_tools::flags::timeout(args.timeout)?;
    let config = StressConfig {
        hosts: args.host.clone(),
        routing: match args.routing {
            RoutingArg::Token => Routing::Token,
            RoutingArg::RoundRobin => Routing::RoundRobin,
        },
        spec: WorkloadSpec {
            table: args.table.clone(),
            mix: match args.op {
                Op::Put => OpMix::Put,
                Op::Get => OpMix::Get,
                Op::Mixed => OpMix::Mixed {
                    read_ratio: args.ratio,
                },
            },
            keyspace: args.keyspace,
            value_size: args.value_size,
            consistency,
        },
        connections: args.connections,
        requests: args.requests,
        pipeline: args.pipeline,
        replication_factor: args.rf,
        seed,
        timeout,
        driver: match args.driver {
            DriverArg::Raw => Driver::Raw,
            DriverArg::Client => Driver::Client,
        },
        credentials: args.credentials.resolve(false)?,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("cannot start the tokio runtime")?;
    // In --json mode stdout carries only JSON lines; the banner goes to stderr.
    let banner = format!(
        "sibyl-stress: host={} table={} op={:?} connections={} pipeline={} requests={} \
         value-size={} keyspace={} driver={} routing={} seed={seed}",
        config.hosts.join(","),
        config.spec.table,
        args.op,
        config.connections,
        config.pipeline,
        config.requests,
        config.spec.value_size,
        config.spec.keyspace,
        config.driver.name(),
        config.routing.name()
    )
    .to_lowercase();
    if args.json {
        eprintln!("{banner}");
    } else {
        println!("{banner}");
    }
    let report = rt.block_on(run(&config, |i, why| {
        eprintln!("sibyl-stress: connection {i} ended early: {why}");
    }))?;
    if args.json {
        print!("{}", report.to_json_lines());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
