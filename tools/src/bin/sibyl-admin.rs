//! `sibyl-admin`: operations on a Sibyl cluster (like nodetool). Subcommands are a clap
//! enum; each one asks a node over the client protocol and prints a table.
//!
//! - `status`: every node with address, up/down, state, load, datacenter, rack, token
//!   count and owned share of the token space; then the health of the node asked: `ok`,
//!   or `degraded` with why (poisoned storage, writes refused or flushes and compactions
//!   blocked for want of disk space).
//! - `ring`: every token in ring order with its owner.
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
//! - `streams [--all]`: the node's streams (a joining node's bootstrap): range, peer,
//!   state, bytes, rate; `setstreamthroughput MB` changes its cap until it restarts.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sibyl_protocol::{Client, ClientOptions, RepairState, RepairStatus};
use sibyl_tools::admin::cleanup::render_cleanup;
use sibyl_tools::admin::hints::render_hints;
use sibyl_tools::admin::repair::render_repair;
use sibyl_tools::admin::status::{render_health, render_ring, render_status};
use sibyl_tools::admin::streams::render_streams;
use sibyl_tools::admin::tablestats::render_table_stats;
use sibyl_tools::cli::shell::describe_client_error;

/// Operations on a Sibyl cluster.
#[derive(Debug, Parser)]
#[command(name = "sibyl-admin", version)]
struct Args {
    /// Node to ask (host:port of its client port).
    #[arg(long, global = true, default_value = "127.0.0.1:7400")]
    host: String,
    /// Seconds to wait for the node.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Nodes with their liveness, state, placement and ownership.
    Status,
    /// Tokens in ring order with their owners.
    Ring,
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (text, failed) = rt.block_on(async {
        let options = ClientOptions {
            request_timeout: timeout,
            connect_timeout: timeout,
            pool_size: 1,
            client_name: concat!("sibyl-admin/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&[args.host.as_str()], options)
            .await
            .map_err(|e| anyhow::anyhow!(describe_client_error(&e)))?;
        let fail = |what: &str, e: sibyl_protocol::ClientError| {
            anyhow::anyhow!("{what}: {}", describe_client_error(&e))
        };
        let mut failed = false;
        let text = match args.command {
            AdminCommand::Status | AdminCommand::Ring => {
                let topology = client.topology().await.map_err(|e| fail("topology", e))?;
                if matches!(args.command, AdminCommand::Status) {
                    let health = client.health().await.map_err(|e| fail("health", e))?;
                    render_status(&topology) + "\n" + &render_health(&args.host, &health)
                } else {
                    render_ring(&topology)
                }
            }
            AdminCommand::Flush { table } => {
                let flushed = client
                    .flush(table.as_deref())
                    .await
                    .map_err(|e| fail("flush", e))?;
                if flushed.is_empty() {
                    "no tables to flush".to_owned()
                } else {
                    format!("flushed: {}", flushed.join(", "))
                }
            }
            AdminCommand::Compact { table } => {
                let stats = client
                    .compact(&table)
                    .await
                    .map_err(|e| fail("compact", e))?;
                format!("compacted {table}\n{}", render_table_stats(&stats))
            }
            AdminCommand::Tablestats { table } => render_table_stats(
                &client
                    .table_stats(&table)
                    .await
                    .map_err(|e| fail("tablestats", e))?,
            ),
            AdminCommand::Removenode { node_id, force } => client
                .remove_node(&node_id, force)
                .await
                .map_err(|e| fail("removenode", e))?,
            AdminCommand::Decommission { no_wait } => {
                let said = client
                    .decommission()
                    .await
                    .map_err(|e| fail("decommission", e))?;
                if no_wait {
                    said
                } else {
                    follow_decommission(&client, &args.host).await?
                }
            }
            AdminCommand::Cleanup { table } => render_cleanup(
                &client
                    .cleanup(table.as_deref())
                    .await
                    .map_err(|e| fail("cleanup", e))?,
            ),
            AdminCommand::Hints => {
                let owners = client.hints().await.map_err(|e| fail("hints", e))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
                render_hints(&owners, now)
            }
            AdminCommand::Streams { all } => render_streams(
                &client.streams(None).await.map_err(|e| fail("streams", e))?,
                all,
            ),
            AdminCommand::Setstreamthroughput { mb_per_sec } => {
                if !(mb_per_sec.is_finite() && mb_per_sec >= 0.0) {
                    anyhow::bail!("setstreamthroughput: MiB/s must be a non-negative number");
                }
                let report = client
                    .streams(Some((mb_per_sec * f64::from(1u32 << 20)) as u64))
                    .await
                    .map_err(|e| fail("setstreamthroughput", e))?;
                render_streams(&report, false)
            }
            AdminCommand::Repair { status: true, .. } => render_repair(
                &client
                    .repair_status(0)
                    .await
                    .map_err(|e| fail("repair status", e))?,
            ),
            AdminCommand::Repair {
                table,
                status: false,
            } => {
                let done = run_repair(&client, table.as_deref())
                    .await
                    .map_err(|e| fail("repair", e))?;
                failed = !done.failed.is_empty();
                render_repair(&done)
            }
        };
        anyhow::Ok((text, failed))
    })?;
    println!("{text}");
    if failed {
        std::process::exit(1);
    }
    Ok(())
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
                        ..ClientOptions::default()
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
