//! `sibyl-admin`: operations on a Sibyl cluster (like nodetool). Subcommands are a clap
//! enum; each one asks a node over the client protocol and prints a table.
//!
//! - `status`: every node with address, up/down, state, load, datacenter, rack, token
//!   count and owned share of the token space; then the health of the node asked: `ok`,
//!   or `degraded` with why (poisoned storage, writes refused or flushes and compactions
//!   blocked for want of disk space).
//! - `ring`: every token in ring order with its owner.
//! - `describe`: the cluster's name, partitioner and schema version (and whether every
//!   node agrees on it), then every table with its options; `tables`: one row per table.
//! - `flush [TABLE]`, `compact TABLE`, `tablestats TABLE`: storage operations on the node
//!   asked (`--host`), not cluster-wide.
//! - `removenode NODE_ID [--force]`: announces a dead node (id as `status` shows it) as
//!   removed; refused while another ring change moves its ranges, or when one of its
//!   ranges has no other live replica (`--force` accepts losing what only it held).
//! - `decommission`: the node asked leaves the ring: `leaving` while it streams every range
//!   it replicates to the nodes that gain them (followed with a progress bar unless
//!   `--no-wait`), then `left`; it keeps serving until stopped.
//! - `repair [TABLE]`: anti-entropy repair of every range the node asked replicates, with
//!   every other replica, with a progress bar and a summary; exit status 1 when a range
//!   could not be repaired (rerun to complete it). `repair --status` shows the latest
//!   repair and each replicated table's oldest full sync.
//! - `cleanup [TABLE]`: the node asked drops the data of ranges it no longer replicates
//!   (after nodes joined); refused while a ring change is under way.
//! - `hints`: the hints the node asked holds for other nodes, and those it dropped.
//! - `rebalance [--commit]`: a plan of token moves that spreads the cluster's bytes evenly
//!   (owned bytes per node now and after, bytes that change hands); `--commit` applies it,
//!   one node's move at a time, following each until the node owns its new tokens.
//! - `streams [--all]`: the node's streams (a joining node's bootstrap): range, peer,
//!   state, bytes, rate; `setstreamthroughput MB` changes its cap until it restarts.
//! - `metrics`: the metrics the node reports (what its `--metrics-listen` endpoint
//!   serves; `doc/metrics.md` lists them), one row per series, histograms summarised.
//!
//! `--json` (any command) prints one JSON object instead of the table, for scripts; its
//! field names are stable and listed in [`JSON_FIELDS`], which `--help` prints.
//!
//! A node that cannot be reached, or an error it answers, exits with status 1 and the
//! message on stderr (with `--json` too); so does a repair that left ranges undone.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sibyl_protocol::{Client, ClientOptions, RepairState, RepairStatus};
use sibyl_tools::admin::cleanup::render_cleanup;
use sibyl_tools::admin::describe::{describe_json, render_describe, render_tables, table_json};
use sibyl_tools::admin::exposition::parse as parse_exposition;
use sibyl_tools::admin::hints::render_hints;
use sibyl_tools::admin::json;
use sibyl_tools::admin::metrics::render_metrics;
use sibyl_tools::admin::rebalance::render_plan;
use sibyl_tools::admin::repair::render_repair;
use sibyl_tools::admin::status::{render_health, render_ring, render_status};
use sibyl_tools::admin::streams::render_streams;
use sibyl_tools::admin::tablestats::render_table_stats;
use sibyl_tools::cli::shell::describe_client_error;

/// The `--json` output of each command (printed by `--help`).
const JSON_FIELDS: &str = "\
--json prints one object per command, with these stable fields:
  status               {partitioner, nodes: [{id, address, up, state, datacenter, rack,
                        tokens (a count), owns (0..1), load_bytes}], health: {degraded,
                        poisoned, writes_refused, flush_blocked, compaction_blocked}
                        (of the node asked; a shortage is {needed, free, reserve,
                        since_ms} or null)}
  ring                 {partitioner, tokens: [{token (decimal string), node, address, share}]}
  describe             {cluster_name, partitioner, schema_version, schema_agreement,
                        nodes: [{id, address, schema_version}], tables: [table]}
  tables               {tables: [table]}, a table being {name, rf, conflict, read, write,
                        ttl_secs, compaction, placement}
  flush                {flushed: [table]}
  removenode,
  decommission         {message}
  compact, tablestats  {table, sstables, sstables_per_level, sstable_bytes, sstable_entries,
                        sstable_tombstones, memtable_bytes, memtable_entries,
                        frozen_memtables, flushes, compactions, compacted_bytes,
                        bloom_true_positives, bloom_false_positives,
                        bloom_false_positive_rate (null before any lookup), reads,
                        read_p50_micros, read_p99_micros, writes, write_p50_micros,
                        write_p99_micros, cells_read, cells_with_siblings, max_siblings}
  hints                {owners: [{owner, pending, pending_bytes, oldest_micros,
                        dropped_window, dropped_size, dropped_corrupt, dropped_rejected}],
                        pending, dropped}
  streams,
  setstreamthroughput  {throughput_bytes_per_sec, streams: [{operation, table, range_start,
                        range_end, peer, state, bytes, cells, run_bytes,
                        rate_bytes_per_sec, error, total_bytes (estimated; 0 = not
                        known yet), left_bytes (null while not known)}]} (done streams
                        included)
  repair [--status]    {id, table, state (none|running|done), jobs, jobs_done, differed,
                        cells_sent, cells_received, bytes_sent, bytes_received, elapsed_ms,
                        failed: [range], tables: [{table, jobs, synced, oldest_secs}]}
  cleanup              {tables: [{table, dropped, bytes_before, bytes_after}]}
  rebalance [--commit] {moved_bytes, tokens_moved, applied, nodes: [{id, address,
                        owned_before, owned_after, moves, tokens_before, tokens_after
                        (decimal strings)}]}
  metrics              {families: [{name, type, help, samples: [{name, labels: {..},
                        value (null when not finite)}]}]}
Errors (a node that cannot be reached, a refusal) exit 1 with the message on stderr,
with --json too.";

/// Operations on a Sibyl cluster.
#[derive(Debug, Parser)]
#[command(name = "sibyl-admin", version, after_help = JSON_FIELDS)]
struct Args {
    /// Node to ask (host:port of its client port).
    #[arg(long, global = true, default_value = "127.0.0.1:7400")]
    host: String,
    /// Seconds to wait for the node.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON object instead of a table (its fields are listed below).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    credentials: sibyl_tools::credentials::CredentialArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Nodes with their liveness, state, placement and ownership.
    Status,
    /// Tokens in ring order with their owners.
    Ring,
    /// The cluster's name, partitioner and schema version (and whether the nodes agree
    /// on it), then every table with its options.
    Describe,
    /// Every table with its options, one row each.
    Tables,
    /// Writes the memtables of one table (every table when omitted) to SSTables on the
    /// node asked.
    Flush {
        /// The table; every table when omitted.
        table: Option<String>,
    },
    /// Merges all SSTables of a table on the node asked (a major compaction).
    Compact {
        /// The table.
        table: String,
    },
    /// Storage statistics of a table on the node asked.
    Tablestats {
        /// The table.
        table: String,
    },
    /// Announces a dead node as removed, cluster-wide (NODE_ID as `status` shows it).
    Removenode {
        /// The node's id (hex).
        node_id: String,
        /// Remove it even when a range it replicated has no other live replica to copy it
        /// from: what only that node held is lost.
        #[arg(long)]
        force: bool,
    },
    /// Makes the node asked leave the ring: it streams every range it replicates to the
    /// nodes that gain them, then announces left; it keeps serving until stopped.
    Decommission {
        /// Return once the node is leaving instead of following its streams until it left.
        #[arg(long)]
        no_wait: bool,
    },
    /// Drops, on the node asked, the data of ranges it no longer replicates (ring changes
    /// moved them to other nodes), of one table or every table; a major compaction of each.
    Cleanup {
        /// The table; every table when omitted.
        table: Option<String>,
    },
    /// The hints the node asked holds for other (down) nodes, per owner, and those it
    /// dropped.
    Hints,
    /// The streams of the node asked (the ranges a joining node pulls before it owns
    /// them): range, peer, state, bytes applied, rate. Done streams with `--all`.
    Streams {
        /// Also list the streams that are done.
        #[arg(long)]
        all: bool,
    },
    /// Sets the incoming stream throughput cap of the node asked, MiB/s (0 = unlimited),
    /// until it restarts (`--stream-throughput-mb` sets it at start).
    Setstreamthroughput {
        /// MiB per second (a decimal); 0 = unlimited.
        mb_per_sec: f64,
    },
    /// Plans token moves that spread the cluster's stored bytes evenly over its nodes
    /// (by bytes, not token share), and shows the plan; `--commit` applies it.
    Rebalance {
        /// Apply the plan: each node that moves streams the ranges that change hands,
        /// one node at a time.
        #[arg(long)]
        commit: bool,
    },
    /// Repairs every range the node asked replicates with every other replica (of one
    /// table, or every replicated table), moving only the cells that differ.
    Repair {
        /// The table; every replicated table when omitted.
        table: Option<String>,
        /// Show the latest repair and the tables' repair sync times instead of starting
        /// one.
        #[arg(long)]
        status: bool,
    },
    /// The metrics the node asked reports (what its `--metrics-listen` endpoint serves),
    /// one row per series, histograms summarised.
    Metrics,
}

/// A command's answer: the table for people and the object for `--json`.
struct Output {
    text: String,
    json: serde_json::Value,
}

impl Output {
    fn new(text: String, json: serde_json::Value) -> Output {
        Output { text, json }
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    let timeout = sibyl_tools::flags::timeout(args.timeout)?;
    let credentials = args.credentials.resolve(false)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (out, failed) = rt.block_on(async {
        let options = ClientOptions {
            request_timeout: timeout,
            connect_timeout: timeout,
            pool_size: 1,
            client_name: concat!("sibyl-admin/", env!("CARGO_PKG_VERSION")).to_owned(),
            credentials,
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&[args.host.as_str()], options.clone())
            .await
            .map_err(|e| anyhow::anyhow!(describe_client_error(&e)))?;
        let fail = |what: &str, e: sibyl_protocol::ClientError| {
            anyhow::anyhow!("{what}: {}", describe_client_error(&e))
        };
        let mut failed = false;
        let out = match args.command {
            AdminCommand::Status | AdminCommand::Ring => {
                let topology = client.topology().await.map_err(|e| fail("topology", e))?;
                if matches!(args.command, AdminCommand::Status) {
                    let health = client.health().await.map_err(|e| fail("health", e))?;
                    let text =
                        render_status(&topology) + "\n" + &render_health(&args.host, &health);
                    let mut json = json::status_json(&topology);
                    json["health"] = json::health_json(&health);
                    Output::new(text, json)
                } else {
                    Output::new(render_ring(&topology), json::ring_json(&topology))
                }
            }
            AdminCommand::Describe => {
                let cluster = client
                    .describe_cluster()
                    .await
                    .map_err(|e| fail("describe", e))?;
                let tables = table_options(&client)
                    .await
                    .map_err(|e| fail("describe", e))?;
                Output::new(
                    render_describe(&cluster, &tables),
                    describe_json(&cluster, &tables),
                )
            }
            AdminCommand::Tables => {
                let tables = table_options(&client)
                    .await
                    .map_err(|e| fail("tables", e))?;
                let json = serde_json::json!({
                    "tables": tables.iter().map(|(n, o)| table_json(n, o)).collect::<Vec<_>>(),
                });
                Output::new(render_tables(&tables), json)
            }
            AdminCommand::Flush { table } => {
                let flushed = client
                    .flush(table.as_deref())
                    .await
                    .map_err(|e| fail("flush", e))?;
                let text = if flushed.is_empty() {
                    "no tables to flush".to_owned()
                } else {
                    format!("flushed: {}", flushed.join(", "))
                };
                Output::new(text, serde_json::json!({ "flushed": flushed }))
            }
            AdminCommand::Compact { table } => {
                let stats = client
                    .compact(&table)
                    .await
                    .map_err(|e| fail("compact", e))?;
                Output::new(
                    format!("compacted {table}\n{}", render_table_stats(&stats)),
                    json::table_stats_json(&stats),
                )
            }
            AdminCommand::Tablestats { table } => {
                let stats = client
                    .table_stats(&table)
                    .await
                    .map_err(|e| fail("tablestats", e))?;
                Output::new(render_table_stats(&stats), json::table_stats_json(&stats))
            }
            AdminCommand::Removenode { node_id, force } => {
                let said = client
                    .remove_node(&node_id, force)
                    .await
                    .map_err(|e| fail("removenode", e))?;
                Output::new(said.clone(), serde_json::json!({ "message": said }))
            }
            AdminCommand::Decommission { no_wait } => {
                let said = client
                    .decommission()
                    .await
                    .map_err(|e| fail("decommission", e))?;
                let said = if no_wait {
                    said
                } else {
                    follow_decommission(&client, &args.host).await?
                };
                Output::new(said.clone(), serde_json::json!({ "message": said }))
            }
            AdminCommand::Cleanup { table } => {
                let tables = client
                    .cleanup(table.as_deref())
                    .await
                    .map_err(|e| fail("cleanup", e))?;
                Output::new(render_cleanup(&tables), json::cleanup_json(&tables))
            }
            AdminCommand::Hints => {
                let owners = client.hints().await.map_err(|e| fail("hints", e))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
                Output::new(render_hints(&owners, now), json::hints_json(&owners))
            }
            AdminCommand::Streams { all } => {
                let report = client.streams(None).await.map_err(|e| fail("streams", e))?;
                Output::new(render_streams(&report, all), json::streams_json(&report))
            }
            AdminCommand::Setstreamthroughput { mb_per_sec } => {
                if !(mb_per_sec.is_finite() && mb_per_sec >= 0.0) {
                    anyhow::bail!("setstreamthroughput: MiB/s must be a non-negative number");
                }
                let report = client
                    .streams(Some((mb_per_sec * f64::from(1u32 << 20)) as u64))
                    .await
                    .map_err(|e| fail("setstreamthroughput", e))?;
                Output::new(render_streams(&report, false), json::streams_json(&report))
            }
            AdminCommand::Rebalance { commit } => {
                let plan = client.rebalance().await.map_err(|e| fail("rebalance", e))?;
                let text = render_plan(&plan);
                let applied = commit && plan.nodes.iter().any(|n| n.moves());
                let text = if applied {
                    if !args.json {
                        println!("{text}");
                    }
                    apply_plan(&plan, &options, !args.json).await?
                } else {
                    text
                };
                Output::new(text, json::rebalance_json(&plan, applied))
            }
            AdminCommand::Repair { status: true, .. } => {
                let status = client
                    .repair_status(0)
                    .await
                    .map_err(|e| fail("repair status", e))?;
                Output::new(render_repair(&status), json::repair_json(&status))
            }
            AdminCommand::Repair {
                table,
                status: false,
            } => {
                let done = run_repair(&client, table.as_deref())
                    .await
                    .map_err(|e| fail("repair", e))?;
                failed = !done.failed.is_empty();
                Output::new(render_repair(&done), json::repair_json(&done))
            }
            AdminCommand::Metrics => {
                let text = client.metrics().await.map_err(|e| fail("metrics", e))?;
                let parsed = parse_exposition(&text)
                    .map_err(|e| anyhow::anyhow!("metrics: the node's text is malformed: {e}"))?;
                Output::new(render_metrics(&parsed), json::metrics_json(&parsed))
            }
        };
        anyhow::Ok((out, failed))
    })?;
    if args.json {
        println!("{}", out.json);
    } else {
        println!("{}", out.text);
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Applies a rebalance plan: one node at a time, MOVE to its new tokens, then follows it
/// (its own topology and streams) until it owns them; returns the summary.
async fn apply_plan(
    plan: &sibyl_protocol::RebalanceReport,
    base: &ClientOptions,
    show_progress: bool,
) -> Result<String> {
    let movers: Vec<_> = plan.nodes.iter().filter(|n| n.moves()).collect();
    let bar = if show_progress {
        ProgressBar::new(movers.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} nodes moved  {msg}  [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let options = ClientOptions {
        pool_size: 1,
        token_aware: false,
        ..base.clone()
    };
    for n in movers {
        let failed = |what: &str, e: sibyl_protocol::ClientError| {
            anyhow::anyhow!("{what} node {}: {}", n.id, describe_client_error(&e))
        };
        let node = Client::connect_with(&[n.address.as_str()], options.clone())
            .await
            .map_err(|e| failed("cannot reach", e))?;
        // The previous move may still be settling in this node's view: a refusal for a
        // ring change under way is retried for a while.
        let settle = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match node.move_to(n.tokens_after.clone()).await {
                Ok(_) => break,
                Err(sibyl_protocol::ClientError::Server(e))
                    if e.message.contains("under way") && tokio::time::Instant::now() < settle =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await; // retry pause
                }
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(failed("move of", e));
                }
            }
        }
        loop {
            let streams = node
                .streams(None)
                .await
                .map_err(|e| failed("streams of", e))?;
            let bytes: u64 = streams
                .streams
                .iter()
                .filter(|s| s.operation == "move")
                .map(|s| s.bytes)
                .sum();
            bar.set_message(format!(
                "node {}: {} streamed",
                n.id,
                sibyl_tools::text::human_size(bytes)
            ));
            let topology = node
                .topology()
                .await
                .map_err(|e| failed("topology of", e))?;
            let me = topology.nodes.iter().find(|m| m.id == n.id);
            if let Some(m) = me.filter(|m| m.state == sibyl_protocol::NodeState::Normal) {
                let mut tokens = m.tokens.clone();
                tokens.sort();
                if tokens == n.tokens_after {
                    break;
                }
                bar.finish_and_clear();
                anyhow::bail!(
                    "the move of node {} was cancelled (its log says why); it keeps its old \
                     tokens: run rebalance again",
                    n.id
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await; // polling interval
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(format!(
        "rebalanced: {} node(s) moved {} tokens; the nodes that lost ranges drop them after \
         --cleanup-grace-secs, or at once with `sibyl-admin cleanup` on each",
        plan.nodes.iter().filter(|n| n.moves()).count(),
        plan.tokens_moved
    ))
}

/// Follows a decommission with a progress bar (ranges handed off) until the node asked
/// shows itself `left`; returns the summary.
async fn follow_decommission(client: &Client, host: &str) -> Result<String> {
    let failed = |e: sibyl_protocol::ClientError| {
        anyhow::anyhow!("decommission: {}", describe_client_error(&e))
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} streams  {msg}  [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // The node asked: its client address as `--host` resolves, or else the node that was
    // leaving when the decommission was answered.
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(host)
        .await
        .map(|a| a.collect())
        .unwrap_or_default();
    let leaving: Vec<String> = client
        .topology()
        .await?
        .nodes
        .iter()
        .filter(|n| n.state == sibyl_protocol::NodeState::Leaving)
        .map(|n| n.id.clone())
        .collect();
    let is_asked = |n: &sibyl_protocol::NodeInfo| match n.address.parse::<std::net::SocketAddr>() {
        Ok(a) if resolved.contains(&a) => true,
        _ => leaving.len() == 1 && leaving.contains(&n.id),
    };
    loop {
        let report = client.streams(None).await.map_err(failed)?;
        let ours: Vec<_> = report
            .streams
            .iter()
            .filter(|s| s.operation == "decommission")
            .collect();
        let done = ours.iter().filter(|s| s.state == "done").count() as u64;
        let bytes: u64 = ours.iter().map(|s| s.bytes).sum();
        bar.set_length(ours.len() as u64);
        bar.set_position(done);
        bar.set_message(format!("{} sent", sibyl_tools::text::human_size(bytes)));
        let topology = client.topology().await.map_err(failed)?;
        if topology
            .nodes
            .iter()
            .any(|n| is_asked(n) && n.state == sibyl_protocol::NodeState::Normal)
        {
            bar.finish_and_clear();
            anyhow::bail!(
                "decommission cancelled: the node is normal again (a range would have kept no \
                 replica; its log says which)"
            );
        }
        let left = topology
            .nodes
            .iter()
            .any(|n| is_asked(n) && n.state == sibyl_protocol::NodeState::Left);
        // Left as the other live nodes see it too: stopped before gossip told them, it
        // would stay leaving for them.
        let left = left && {
            let mut all = true;
            for n in topology.nodes.iter().filter(|n| n.up && !is_asked(n)) {
                let seen = match Client::connect_with(
                    &[n.address.as_str()],
                    ClientOptions {
                        pool_size: 1,
                        token_aware: false,
                        ..client.options().clone()
                    },
                )
                .await
                {
                    Ok(c) => c.topology().await.ok().is_some_and(|t| {
                        t.nodes
                            .iter()
                            .any(|m| is_asked(m) && m.state == sibyl_protocol::NodeState::Left)
                    }),
                    Err(_) => true, // unreachable now: nothing to wait for there
                };
                all &= seen;
            }
            all
        };
        if left {
            bar.finish_and_clear();
            return Ok(format!(
                "decommissioned: {} streams handed off, {} sent; the node left the ring \
                 (stop it when ready)",
                ours.len(),
                sibyl_tools::text::human_size(bytes)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every table the node knows, by name, with its options.
async fn table_options(
    client: &Client,
) -> Result<Vec<(String, sibyl_protocol::TableOptions)>, sibyl_protocol::ClientError> {
    let mut tables = Vec::new();
    for name in client.list_tables().await? {
        let options = client.describe_table(&name).await?;
        tables.push((name, options));
    }
    Ok(tables)
}

/// Starts a repair and follows it with a progress bar until it is done.
async fn run_repair(
    client: &Client,
    table: Option<&str>,
) -> Result<RepairStatus, sibyl_protocol::ClientError> {
    let first = client.repair(table).await?;
    let bar = ProgressBar::new(first.jobs);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ranges  {msg}  [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut status = first;
    while status.state == RepairState::Running {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = client.repair_status(status.id).await?;
        bar.set_length(status.jobs);
        bar.set_position(status.jobs_done);
        bar.set_message(format!(
            "{} cells sent, {} received",
            status.cells_sent, status.cells_received
        ));
    }
    bar.finish_and_clear();
    Ok(status)
}
