//! The load generator behind `sibyl-stress` (like cassandra-stress / redis-benchmark).
//!
//! # Layout
//! - [`workload`]: the request stream (op mix, uniform keys, fixed-size values), seeded.
//! - [`raw`]: the default driver — one task per connection, `pipeline` requests in flight,
//!   frames encoded and decoded with the protocol crate's codec and message types.
//! - [`pooled`]: the same load through the client library's `Connection` (for comparison).
//! - [`report`]: per-op counters and HDR histograms; text and JSON-lines output.
//!
//! A run ([`run`]): create the table if missing (rf from the config, "exists" ignored)
//! and fetch the ring through the client library; with [`Routing::Token`] (the default)
//! connection `i` goes to ring member `i % members` and draws only keys that member owns
//! ([`workload::KeyRoute`]), so each request lands on a replica of its key; with
//! [`Routing::RoundRobin`] (or when no ring is known) connection `i` goes to
//! `hosts[i % hosts]` and draws any key. Then open every connection and complete its
//! handshake; release them together through a
//! barrier and start the clock; join them; merge their stats. `requests` are spread over
//! the connections as evenly as possible; connection `i` draws from the seed
//! `stream_seed(seed, i)`, so a run is replayable from its printed seed.
//!
//! Threading: one tokio task per connection (plus `pipeline` tasks per connection for the
//! `client` driver); run it on a multi-thread runtime so the tool is not the bottleneck.

pub mod pooled;
pub mod raw;
pub mod report;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sibyl_protocol::client::ClientRing;
use sibyl_protocol::{
    Client, ClientError, ClientOptions, ErrorKind, ProtocolError, Response, TableOptions,
};
use tokio::sync::Barrier;

use report::{OpStats, RunInfo, RunStats, StressReport};
use workload::{stream_seed, KeyRoute, OpKind, OpMix, WorkloadSpec};

/// Which code drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// [`raw`]: codec-level, one task per connection.
    Raw,
    /// [`pooled`]: the client library's `Connection`, `pipeline` tasks per connection.
    Client,
}

impl Driver {
    /// `raw` or `client`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Raw => "raw",
            Driver::Client => "client",
        }
    }
}

/// How connections are spread over nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Over the ring's members; each connection draws the keys its member owns.
    Token,
    /// Over the hosts given, in turn; any key on any connection.
    RoundRobin,
}

impl Routing {
    /// `token` or `round-robin`.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Token => "token",
            Routing::RoundRobin => "round-robin",
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct StressConfig {
    /// `host:port` of the nodes to start from (the ring is fetched from them).
    pub hosts: Vec<String>,
    /// How connections are spread over nodes.
    pub routing: Routing,
    /// What to send.
    pub spec: WorkloadSpec,
    /// Connections.
    pub connections: usize,
    /// Requests in total.
    pub requests: u64,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Replication factor used if the table must be created.
    pub replication_factor: u16,
    /// Seed of the run.
    pub seed: u64,
    /// Longest wait for a response (and for connecting).
    pub timeout: Duration,
    /// Which driver.
    pub driver: Driver,
    /// Who every connection logs in as (`None`: no login).
    pub credentials: Option<sibyl_protocol::Credentials>,
}

/// What one connection does.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    /// The workload.
    pub spec: WorkloadSpec,
    /// Requests this connection sends.
    pub requests: u64,
    /// Requests in flight.
    pub pipeline: usize,
    /// Seed of this connection's workload.
    pub seed: u64,
    /// Longest wait for a response.
    pub timeout: Duration,
    /// The keys this connection draws (`None`: any key).
    pub route: Option<KeyRoute>,
    /// Who the connection logs in as (`None`: no login).
    pub credentials: Option<sibyl_protocol::Credentials>,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StressError {
    /// A setting is out of range.
    #[error("invalid setting {name}: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// Creating the table failed.
    #[error("cannot prepare table {table}: {source}")]
    Setup {
        /// The table.
        table: String,
        /// The client error.
        #[source]
        source: ClientError,
    },
}

/// The error type name a failed response counts under (`overloaded`, `unavailable`, ...).
pub fn server_error_type(kind: &ErrorKind) -> String {
    match kind.error_code() {
        Some(c) => c.name().to_ascii_lowercase(),
        None => format!("error_{:#06x}", kind.code()),
    }
}

/// The error type name of a client-side failure.
pub fn classify_error(e: &ClientError) -> &'static str {
    match e {
        ClientError::Timeout { .. } => "timeout",
        ClientError::Connect { .. } | ClientError::Resolve { .. } | ClientError::NoNodes => {
            "connect"
        }
        ClientError::ConnectionClosed { .. } => "connection",
        ClientError::Protocol(_) => "protocol",
        ClientError::UnexpectedResponse { .. } => "unexpected_response",
        ClientError::Server(_) => "server",
        _ => "client",
    }
}

/// Records one response of a `kind` request that took `latency` into `stats`.
pub fn classify_response(
    stats: &mut OpStats,
    kind: OpKind,
    response: Result<Response, ProtocolError>,
    latency: Duration,
) {
    match (kind, response) {
        (OpKind::Put, Ok(Response::Written { .. })) => stats.record_ok(latency),
        (OpKind::Get, Ok(Response::Row { cells, .. })) => {
            stats.record_ok(latency);
            if cells.is_empty() {
                stats.not_found += 1;
            } else {
                stats.found += 1;
            }
        }
        (_, Ok(Response::Error(e))) => stats.record_errors(&server_error_type(&e.kind), 1),
        (_, Ok(_)) => stats.record_errors("unexpected_response", 1),
        (_, Err(_)) => stats.record_errors("protocol", 1),
    }
}

/// Splits `total` over `parts` as evenly as possible (the first ones get the remainder).
pub fn split_requests(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

impl StressConfig {
    fn validate(&self) -> Result<(), StressError> {
        let bad = |name, reason: &str| {
            Err(StressError::Config {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.connections == 0 {
            return bad("connections", "at least 1");
        }
        if self.pipeline == 0 || self.pipeline > u32::MAX as usize - 1 {
            return bad("pipeline", "at least 1");
        }
        if self.spec.keyspace == 0 {
            return bad("keyspace", "at least 1");
        }
        if self.replication_factor == 0 {
            return bad("rf", "at least 1");
        }
        if let OpMix::Mixed { read_ratio } = self.spec.mix {
            if !(0.0..=1.0).contains(&read_ratio) {
                return bad("ratio", "a fraction in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Creates the table of `config` unless it exists, waits (bounded) until every host knows
/// it, and returns the ring the client library fetched, if it got one.
pub async fn prepare_table(config: &StressConfig) -> Result<Option<Arc<ClientRing>>, StressError> {
    let setup = |source| StressError::Setup {
        table: config.spec.table.clone(),
        source,
    };
    let options = ClientOptions {
        request_timeout: config.timeout,
        connect_timeout: config.timeout,
        pool_size: 1,
        credentials: config.credentials.clone(),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&config.hosts, options.clone())
        .await
        .map_err(setup)?;
    let table_options = TableOptions {
        replication_factor: config.replication_factor,
        ..TableOptions::default()
    };
    match client
        .create_table_if_not_exists(&config.spec.table, table_options)
        .await
    {
        Ok(_) => {}
        Err(ClientError::Server(e)) if matches!(e.kind, ErrorKind::TableExists { .. }) => {}
        Err(e) => return Err(setup(e)),
    }
    // The schema spreads by gossip: wait (bounded) until every host given knows the
    // table, so the load does not start with UNKNOWN_TABLE answers.
    let deadline = tokio::time::Instant::now() + SCHEMA_WAIT;
    for host in &config.hosts {
        let one = ClientOptions {
            token_aware: false,
            ..options.clone()
        };
        let Ok(c) = Client::connect_with(&[host.as_str()], one).await else {
            continue;
        };
        while tokio::time::Instant::now() < deadline {
            match c.list_tables().await {
                Ok(t) if t.contains(&config.spec.table) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await, // polling interval
            }
        }
    }
    Ok(client.ring().filter(|r| !r.is_empty()))
}

/// The first address `host` resolves to.
async fn resolve(host: &str) -> Result<SocketAddr, StressError> {
    tokio::net::lookup_host(host)
        .await
        .map_err(|e| StressError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| StressError::Resolve {
            host: host.to_owned(),
            reason: "no addresses".into(),
        })
}

/// How long [`prepare_table`] waits for every host to know the table.
const SCHEMA_WAIT: Duration = Duration::from_secs(10);

/// Runs the load of `config` and returns the merged report. `on_failure` hears about each
/// connection that ended early (its requests are counted as errors either way).
pub async fn run(
    config: &StressConfig,
    mut on_failure: impl FnMut(usize, &str),
) -> Result<StressReport, StressError> {
    config.validate()?;
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(config.hosts.len());
    for host in &config.hosts {
        addrs.push(resolve(host).await?);
    }
    if addrs.is_empty() {
        return Err(StressError::Resolve {
            host: String::new(),
            reason: "no host given".into(),
        });
    }
    let ring = prepare_table(config).await?;
    // Token routing: one address per ring member (resolved now, so a bad address fails
    // the run before it starts rather than one connection).
    let mut targets: Vec<(SocketAddr, Option<KeyRoute>)> =
        addrs.iter().map(|a| (*a, None)).collect();
    if let (Routing::Token, Some(ring)) = (config.routing, ring) {
        let mut routed = Vec::with_capacity(ring.members().len());
        for (member, m) in ring.members().iter().enumerate() {
            let addr = resolve(&m.address).await?;
            let route = KeyRoute {
                ring: Arc::clone(&ring),
                member,
            };
            routed.push((addr, Some(route)));
        }
        if !routed.is_empty() {
            targets = routed;
        }
    }
    let barrier = Arc::new(Barrier::new(config.connections + 1));
    let mut handles = Vec::with_capacity(config.connections);
    for (i, requests) in split_requests(config.requests, config.connections)
        .into_iter()
        .enumerate()
    {
        let plan = ConnPlan {
            spec: config.spec.clone(),
            requests,
            pipeline: config.pipeline,
            seed: stream_seed(config.seed, i as u64),
            timeout: config.timeout,
            route: None,
            credentials: config.credentials.clone(),
        };
        let b = Arc::clone(&barrier);
        let (addr, route) = targets[i % targets.len()].clone();
        let plan = ConnPlan { route, ..plan };
        handles.push(match config.driver {
            Driver::Raw => tokio::spawn(raw::run_connection(addr, plan, b)),
            Driver::Client => tokio::spawn(pooled::run_connection(addr, plan, b)),
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut stats = RunStats::default();
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok((s, failure)) => {
                stats.merge(&s);
                if let Some(f) = failure {
                    on_failure(i, &f);
                }
            }
            Err(e) => on_failure(i, &format!("connection task failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    let mode = match config.spec.mix {
        OpMix::Put => "put",
        OpMix::Get => "get",
        OpMix::Mixed { .. } => "mixed",
    };
    Ok(StressReport {
        info: RunInfo {
            host: config.hosts.join(","),
            table: config.spec.table.clone(),
            mode: mode.to_owned(),
            connections: config.connections,
            pipeline: config.pipeline,
            requests: config.requests,
            value_size: config.spec.value_size,
            keyspace: config.spec.keyspace,
            seed: config.seed,
            driver: config.driver.name().to_owned(),
            routing: if targets.iter().any(|(_, r)| r.is_some()) {
                Routing::Token.name()
            } else {
                Routing::RoundRobin.name()
            }
            .to_owned(),
        },
        elapsed,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_requests_even_with_remainder_first() {
        assert_eq!(split_requests(10, 3), vec![4, 3, 3]);
        assert_eq!(split_requests(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_requests(7, 1), vec![7]);
    }

    #[test]
    fn classify_response_get_missing_is_success() {
        let mut s = OpStats::new();
        let resp = Response::Row {
            cells: vec![],
            next_page: None,
            meta: Default::default(),
        };
        classify_response(&mut s, OpKind::Get, Ok(resp), Duration::from_micros(5));
        assert_eq!((s.ok, s.not_found, s.error_count()), (1, 1, 0));
    }

    #[test]
    fn classify_response_server_error_counts_by_code() {
        let mut s = OpStats::new();
        let resp = Response::Error(sibyl_protocol::ServerError::new(
            ErrorKind::Overloaded,
            "busy",
        ));
        classify_response(&mut s, OpKind::Put, Ok(resp), Duration::from_micros(5));
        assert_eq!(s.errors.get("overloaded"), Some(&1));
        assert_eq!(s.ok, 0);
    }

    #[test]
    fn classify_response_wrong_shape_is_unexpected() {
        let mut s = OpStats::new();
        classify_response(&mut s, OpKind::Put, Ok(Response::Pong), Duration::ZERO);
        assert_eq!(s.errors.get("unexpected_response"), Some(&1));
    }
}
