//! Node configuration: command-line flags ([`Cli`], clap) and an optional TOML file
//! ([`FileConfig`]); every flag has a key of the same name in snake_case. Flags override
//! the file, the file overrides the defaults. The result is a validated [`Config`].
//!
//! Example file:
//! ```toml
//! data_dir = "/var/lib/sibyl"
//! listen = "0.0.0.0:7400"
//! peer_listen = "0.0.0.0:7401"
//! log_level = "info"
//! sync_mode = "batch"        # or "periodic"
//! sync_interval_ms = 10      # periodic mode only
//! max_connections = 1024
//! max_in_flight = 4096
//! idle_timeout_secs = 300    # 0 = never
//! handshake_timeout_secs = 10  # a connection must finish its handshake within this
//! max_pending_handshakes = 128 # connections still in their handshake, at most
//! max_request_data_in_flight_mb = 128  # request bytes in flight, all connections
//! min_free_disk_mb = 256     # writes are refused (DISK_FULL) below this much free disk
//! write_timeout_ms = 2000    # a replicated write waits this long for W acks
//! read_timeout_ms = 5000     # a replicated read waits this long for R answers
//! max_siblings = 100
//! memtable_mb = 64
//! max_value_kb = 1024
//! anti_entropy = true        # hash trees of replicated tables, and background repair
//! auto_bootstrap = true      # a new node streams the ranges it gains before owning them
//! # replace = "00000000000000ab"  # a new node takes over this dead node's tokens
//! repair_period_secs = 3600  # background repair covers every range within this period
//! repair_rate_kb = 16384     # background repair's bandwidth, KiB/s
//! stream_throughput_mb = 64.0  # incoming streams (bootstrap), MiB/s; 0 = unlimited
//! stream_page_kb = 1024      # a stream's page; checkpoints every 16 pages of a range
//! cleanup_grace_secs = 3600  # drop ranges lost in a ring change this long after; 0 = never
//! # metrics_listen = "127.0.0.1:9400"  # Prometheus text on GET /metrics; off when absent
//! hint_window_secs = 10800   # no new hints for a replica whose oldest is older
//! hint_ttl_secs = 86400      # a hint older than this is discarded, never delivered
//! tombstone_min_age_secs = 90000  # replicated tombstones are purged only when older
//! # cluster
//! seeds = ["10.0.0.1:7401"] # peer addresses; empty = a new cluster of its own
//! cluster_name = "sibyl"
//! num_tokens = 16
//! datacenter = "dc1"
//! rack = "rack1"
//! partitioner = "murmur3"    # or "md5"
//! token_allocation = "balanced"  # or "random"
//! phi_threshold = 8.0
//! # authentication (a node on a non-loopback address needs it, or insecure_no_auth)
//! # auth = "required"
//! # auth_superuser = "admin"
//! # auth_superuser_password_file = "/etc/sibyl/admin-password"
//! # insecure_no_auth = false
//! ```
//!
//! Pure data; read once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use sibyl_storage::SyncMode;

use crate::ring::{NodeId, ParseNodeIdError};

mod auth;
mod cluster;

pub use auth::{AuthConfig, AuthMode, Password, SuperuserSeed, SUPERUSER_PASSWORD_ENV};
pub use cluster::{
    ClusterConfig, PartitionerName, TokenAllocationName, DEFAULT_CLUSTER_NAME, DEFAULT_DATACENTER,
    DEFAULT_NUM_TOKENS, DEFAULT_PHI_THRESHOLD, DEFAULT_RACK, MAX_NUM_TOKENS,
};

/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./sibyl-data";
/// Default client address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
/// Default peer address.
pub const DEFAULT_PEER_LISTEN: &str = "127.0.0.1:7401";
/// Default commit log fsync interval in periodic mode (the engine's default).
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 10;
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on requests being executed at once, all connections together.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default idle time after which a connection with nothing in flight is closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default memtable size in MiB (the engine's default).
pub const DEFAULT_MEMTABLE_MB: usize = 64;
/// Default time a new connection has to finish its handshake. Cassandra gives a client
/// 10 s to authenticate; a working client needs one round trip.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// Default cap on connections that have not finished their handshake: an eighth of the
/// default connection cap, so silent clients can never hold the slots working ones need.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;
/// Default free-space reserve of the data directory, MiB: room for a flush of four
/// default memtables and the compactions of small tiers once writes are refused.
pub const DEFAULT_MIN_FREE_DISK_MB: u64 = 256;

/// Command-line flags of `sibyl`.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "sibyl",
    version,
    about = "Sibyl: a Dynamo-style wide-column store node"
)]
pub struct Cli {
    /// TOML configuration file; flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./sibyl-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client address [default: 127.0.0.1:7400].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Peer (node-to-node) address [default: 127.0.0.1:7401].
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<SocketAddr>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Commit log sync: periodic (fsync every interval) or batch (fsync before ack).
    #[arg(long, value_name = "MODE")]
    pub sync_mode: Option<SyncModeName>,
    /// Fsync interval in periodic mode, milliseconds [default: 10].
    #[arg(long, value_name = "MS")]
    pub sync_interval_ms: Option<u64>,
    /// Most client connections at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most requests executing at once; more are refused as Overloaded [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Close connections idle this long, seconds; 0 = never [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// A new connection must finish its handshake within this many seconds or is
    /// closed [default: 10].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout_secs: Option<u64>,
    /// Most connections still in their handshake; a new one past this closes the oldest
    /// of them (they count against --max-connections too) [default: 128].
    #[arg(long, value_name = "N")]
    pub max_pending_handshakes: Option<usize>,
    /// Request bytes in flight, all client connections together, MiB (frames over
    /// 16 KiB count from their header until their answer); a connection whose frame does
    /// not fit waits before reading its body. The peer port has a budget of its own of
    /// the same size (frames over 64 KiB) [default: 128, at least 16].
    #[arg(long, value_name = "MB")]
    pub max_request_data_in_flight_mb: Option<usize>,
    /// Refuse writes (DISK_FULL, not applied) while the data directory's file system has
    /// less than this many MiB free, so flushes and compactions still find room; 0 = only
    /// when the disk is really full [default: 256].
    #[arg(long, value_name = "MB")]
    pub min_free_disk_mb: Option<u64>,
    /// How long a replicated write waits for its W acknowledgements before it answers
    /// WRITE_TIMEOUT, milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
    pub write_timeout_ms: Option<usize>,
    /// How long a replicated read waits for its R answers before it answers
    /// READ_TIMEOUT, milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub read_timeout_ms: Option<usize>,
    /// Most siblings a causal cell may hold [default: 100].
    #[arg(long, value_name = "N")]
    pub max_siblings: Option<usize>,
    /// Memtable flush size, MiB [default: 64].
    #[arg(long, value_name = "MB")]
    pub memtable_mb: Option<usize>,
    /// Largest cell value accepted, KiB [default: 1024].
    #[arg(long, value_name = "KB")]
    pub max_value_kb: Option<usize>,
    /// Keep anti-entropy hash trees of replicated tables and repair in the background:
    /// `on` or `off` [default: on]. Off saves a read per lww write; replicas then
    /// converge only through hints and read repair.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub anti_entropy: Option<bool>,
    /// A new node (seeds, no saved tokens) streams every range it gains from the current
    /// replicas before it owns them [default: on]; off owns them at once, empty, and
    /// leaves them to hints, read repair and anti-entropy (Cassandra's auto_bootstrap).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub auto_bootstrap: Option<bool>,
    /// A new node (seeds, empty data directory) takes over the tokens of this dead node
    /// (its id as `sibyl-admin status` shows it) and streams its ranges from the other
    /// replicas before owning them; the dead node is then removed. Refused when that node
    /// is up, unknown, or not normal. Ignored once the replacement completed.
    #[arg(long, value_name = "NODE_ID")]
    pub replace: Option<NodeId>,
    /// Background repair compares every range of every replicated table with its other
    /// replicas once per this period, seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub repair_period_secs: Option<u64>,
    /// Background repair's bandwidth (bytes exchanged), KiB/s [default: 16384].
    #[arg(long, value_name = "KB")]
    pub repair_rate_kb: Option<u64>,
    /// Incoming streams (a joining node's bootstrap) move at most this much, MiB/s (a
    /// decimal: 0.5 is 512 KiB/s); 0 = unlimited [default: 64]. `sibyl-admin
    /// setstreamthroughput` changes it at run time.
    #[arg(long, value_name = "MB")]
    pub stream_throughput_mb: Option<f64>,
    /// Bytes of entries a stream asks per page, KiB (1 to 4096). A range of more than one
    /// page is written straight into SSTables, made durable and recorded every 16 pages
    /// [default: 1024].
    #[arg(long, value_name = "KB")]
    pub stream_page_kb: Option<u32>,
    /// Once a ring change made this node lose ranges (a node joined) and the ring then
    /// stayed unchanged this long, seconds, the node drops their data (what `sibyl-admin
    /// cleanup` does on demand); 0 = only on demand [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub cleanup_grace_secs: Option<u64>,
    /// Serve Prometheus text metrics over HTTP on this address (`GET /metrics`;
    /// doc/metrics.md lists them); a loopback address keeps them on the host [default:
    /// off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Once a down replica's oldest pending hint is older than this, new hints for it are
    /// dropped (anti-entropy repairs it), seconds [default: 10800].
    #[arg(long, value_name = "SECS")]
    pub hint_window_secs: Option<u64>,
    /// A hint older than this is discarded undelivered, seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    pub hint_ttl_secs: Option<u64>,
    /// A tombstone of a replicated table is purged only when every replica synced it and
    /// it is older than this, seconds; at least the hint TTL [default: 90000].
    #[arg(long, value_name = "SECS")]
    pub tombstone_min_age_secs: Option<u64>,
    /// Start even if the commit log is corrupt in the middle: cut it at the bad record
    /// (what follows is lost) and take a new actor epoch. Without it such a node refuses
    /// to start and names the file and offset.
    #[arg(long)]
    pub salvage_commitlog: bool,
    /// Peer addresses of seed nodes, comma separated; none = a new cluster of its own.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Cluster name; nodes of another cluster are refused [default: sibyl].
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Tokens (virtual nodes) this node takes when it first joins [default: 16].
    #[arg(long, value_name = "N")]
    pub num_tokens: Option<usize>,
    /// Datacenter this node declares [default: dc1].
    #[arg(long, value_name = "NAME")]
    pub datacenter: Option<String>,
    /// Rack this node declares [default: rack1].
    #[arg(long, value_name = "NAME")]
    pub rack: Option<String>,
    /// Partitioner (the whole cluster must agree) [default: murmur3].
    #[arg(long, value_name = "NAME")]
    pub partitioner: Option<PartitionerName>,
    /// How a joining node chooses its tokens [default: balanced].
    #[arg(long, value_name = "HOW")]
    pub token_allocation: Option<TokenAllocationName>,
    /// Phi above which the failure detector marks a peer down [default: 8].
    #[arg(long, value_name = "PHI")]
    pub phi_threshold: Option<f64>,
    /// Client authentication: `required` makes every connection authenticate
    /// (SCRAM-SHA-256) before any other request [default: off].
    #[arg(long, value_name = "MODE")]
    pub auth: Option<AuthMode>,
    /// Start a node whose client or peer address is not loopback without
    /// authentication (for a trusted network only; without it such a node refuses to
    /// start).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Create this superuser at start if no user of that name exists (its password from
    /// `--auth-superuser-password-file` or the environment variable
    /// SIBYL_SUPERUSER_PASSWORD).
    #[arg(long, value_name = "NAME")]
    pub auth_superuser: Option<String>,
    /// File whose first line is the `--auth-superuser` password.
    #[arg(long, value_name = "FILE")]
    pub auth_superuser_password_file: Option<PathBuf>,
}

/// The commit log sync mode as named in flags and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SyncModeName {
    /// Fsync every `sync_interval_ms`.
    Periodic,
    /// Fsync before acknowledging each write (group commit).
    Batch,
}

/// The TOML file: the same keys as the flags, all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Cli::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Cli::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`Cli::peer_listen`].
    pub peer_listen: Option<SocketAddr>,
    /// See [`Cli::log_level`].
    pub log_level: Option<String>,
    /// See [`Cli::sync_mode`].
    pub sync_mode: Option<SyncModeName>,
    /// See [`Cli::sync_interval_ms`].
    pub sync_interval_ms: Option<u64>,
    /// See [`Cli::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`Cli::max_in_flight`].
    pub max_in_flight: Option<usize>,
    /// See [`Cli::idle_timeout_secs`].
    pub idle_timeout_secs: Option<u64>,
    /// See [`Cli::handshake_timeout_secs`].
    pub handshake_timeout_secs: Option<u64>,
    /// See [`Cli::max_pending_handshakes`].
    pub max_pending_handshakes: Option<usize>,
    /// See [`Cli::max_request_data_in_flight_mb`].
    pub max_request_data_in_flight_mb: Option<usize>,
    /// See [`Cli::min_free_disk_mb`].
    pub min_free_disk_mb: Option<u64>,
    /// See [`Cli::write_timeout_ms`].
    pub write_timeout_ms: Option<usize>,
    /// See [`Cli::read_timeout_ms`].
    pub read_timeout_ms: Option<usize>,
    /// See [`Cli::max_siblings`].
    pub max_siblings: Option<usize>,
    /// See [`Cli::memtable_mb`].
    pub memtable_mb: Option<usize>,
    /// See [`Cli::max_value_kb`].
    pub max_value_kb: Option<usize>,
    /// See [`Cli::salvage_commitlog`].
    pub salvage_commitlog: Option<bool>,
    /// See [`Cli::anti_entropy`].
    pub anti_entropy: Option<bool>,
    /// See [`Cli::auto_bootstrap`].
    pub auto_bootstrap: Option<bool>,
    /// See [`Cli::replace`] (16 hex digits).
    pub replace: Option<String>,
    /// See [`Cli::repair_period_secs`].
    pub repair_period_secs: Option<u64>,
    /// See [`Cli::repair_rate_kb`].
    pub repair_rate_kb: Option<u64>,
    /// See [`Cli::stream_throughput_mb`].
    pub stream_throughput_mb: Option<f64>,
    /// See [`Cli::stream_page_kb`].
    pub stream_page_kb: Option<u32>,
    /// See [`Cli::cleanup_grace_secs`].
    pub cleanup_grace_secs: Option<u64>,
    /// See [`Cli::metrics_listen`].
    pub metrics_listen: Option<SocketAddr>,
    /// See [`Cli::hint_window_secs`].
    pub hint_window_secs: Option<u64>,
    /// See [`Cli::hint_ttl_secs`].
    pub hint_ttl_secs: Option<u64>,
    /// See [`Cli::tombstone_min_age_secs`].
    pub tombstone_min_age_secs: Option<u64>,
    /// See [`Cli::seeds`] (a list of `host:port` strings).
    pub seeds: Option<Vec<String>>,
    /// See [`Cli::cluster_name`].
    pub cluster_name: Option<String>,
    /// See [`Cli::num_tokens`].
    pub num_tokens: Option<usize>,
    /// See [`Cli::datacenter`].
    pub datacenter: Option<String>,
    /// See [`Cli::rack`].
    pub rack: Option<String>,
    /// See [`Cli::partitioner`].
    pub partitioner: Option<PartitionerName>,
    /// See [`Cli::token_allocation`].
    pub token_allocation: Option<TokenAllocationName>,
    /// See [`Cli::phi_threshold`].
    pub phi_threshold: Option<f64>,
    /// See [`Cli::auth`].
    pub auth: Option<AuthMode>,
    /// See [`Cli::insecure_no_auth`].
    pub insecure_no_auth: Option<bool>,
    /// See [`Cli::auth_superuser`].
    pub auth_superuser: Option<String>,
    /// See [`Cli::auth_superuser_password_file`].
    pub auth_superuser_password_file: Option<PathBuf>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// The node would listen on a non-loopback address without authentication.
    #[error(
        "refusing to start: {key} {addr} is not a loopback address and authentication is \
         off. Require authentication (--auth required, with a first superuser from \
         --auth-superuser NAME and --auth-superuser-password-file FILE or \
         SIBYL_SUPERUSER_PASSWORD), listen on 127.0.0.1 only, or pass --insecure-no-auth \
         to run open on a network you trust"
    )]
    Exposed {
        /// `listen` or `peer_listen`.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// A value is out of range.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key or flag.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The resolved node configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Client address.
    pub listen: SocketAddr,
    /// Peer address.
    pub peer_listen: SocketAddr,
    /// Log filter.
    pub log_level: String,
    /// Commit log sync mode.
    pub sync: SyncMode,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Most requests executing at once.
    pub max_in_flight: usize,
    /// Idle timeout of a connection; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Time a new connection has to finish its handshake.
    pub handshake_timeout: Duration,
    /// Most connections still in their handshake.
    pub max_pending_handshakes: usize,
    /// Request bytes in flight, all client connections together.
    pub max_request_data_in_flight: usize,
    /// Free bytes the data directory keeps: writes are refused below it.
    pub min_free_disk: u64,
    /// How long a replicated write waits for W acknowledgements.
    pub write_timeout: Duration,
    /// How long a replicated read waits for R answers.
    pub read_timeout: Duration,
    /// Sibling limit of causal cells.
    pub max_siblings: usize,
    /// Memtable flush size in bytes.
    pub memtable_size: usize,
    /// Largest cell value in bytes.
    pub max_value_len: usize,
    /// Cut a corrupt commit log instead of refusing to start.
    pub salvage_commitlog: bool,
    /// Anti-entropy trees and background repair.
    pub anti_entropy: bool,
    /// A new node streams the ranges it gains before owning them.
    pub auto_bootstrap: bool,
    /// The dead node a new node replaces (`--replace`).
    pub replace: Option<NodeId>,
    /// Background repair covers every range within this period.
    pub repair_period: Duration,
    /// Background repair's bandwidth, bytes per second.
    pub repair_rate: u64,
    /// Incoming streams' throughput cap, bytes per second (0 = unlimited).
    pub stream_throughput: u64,
    /// Bytes of entries a stream asks per page.
    pub stream_page_bytes: u32,
    /// How long after losing ranges the node drops their data; `None` = only on demand.
    pub cleanup_grace: Option<Duration>,
    /// The metrics endpoint's address; `None` = off.
    pub metrics_listen: Option<SocketAddr>,
    /// Bounds of the hint store (window, TTL; the size bound at its default).
    pub hints: crate::hints::HintLimits,
    /// Replicated tombstones are purged only when older than this.
    pub tombstone_min_age: Duration,
    /// Cluster membership settings.
    pub cluster: ClusterConfig,
    /// Client authentication.
    pub auth: AuthConfig,
}

/// Default period of background repair (seconds).
pub const DEFAULT_REPAIR_PERIOD_SECS: u64 = 3600;
/// Default bandwidth of background repair (KiB/s).
pub const DEFAULT_REPAIR_RATE_KB: u64 = 16 * 1024;
/// Default cap of incoming streams (MiB/s): well below a disk's sequential rate, so live
/// traffic keeps its share while a node bootstraps.
pub const DEFAULT_STREAM_THROUGHPUT_MB: f64 = 64.0;
/// Default of `stream_page_kb`.
pub const DEFAULT_STREAM_PAGE_KB: u32 = 1024;

/// Default `cleanup_grace_secs`: an hour after a ring change made the node lose ranges.
pub const DEFAULT_CLEANUP_GRACE_SECS: u64 = 3600;

/// MiB/s (a non-negative decimal) as bytes per second.
fn mib_per_sec(key: &'static str, v: f64) -> Result<u64, ConfigError> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("must be a non-negative number of MiB/s, got {v}"),
        });
    }
    Ok((v * f64::from(1u32 << 20)) as u64)
}

fn positive_u64(key: &'static str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid {
            key,
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

/// Parses `on` / `off` (also `true` / `false`).
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// A duration of `ms` milliseconds.
fn millis(ms: usize) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

pub(crate) fn positive(key: &'static str, v: usize) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid {
            key,
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

impl Config {
    /// Reads `cli.config` (if given) and merges it under the flags.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    /// Parses a TOML file.
    pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Flags over file over defaults, validated.
    pub fn resolve(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let cluster = ClusterConfig::resolve(&cli, &file)?;
        let parse_addr = |s: &str| s.parse::<SocketAddr>().ok();
        let listen = cli
            .listen
            .or(file.listen)
            .or_else(|| parse_addr(DEFAULT_LISTEN))
            .ok_or(ConfigError::Invalid {
                key: "listen",
                reason: "no address".into(),
            })?;
        let peer_listen = cli
            .peer_listen
            .or(file.peer_listen)
            .or_else(|| parse_addr(DEFAULT_PEER_LISTEN))
            .ok_or(ConfigError::Invalid {
                key: "peer_listen",
                reason: "no address".into(),
            })?;
        if listen == peer_listen {
            return Err(ConfigError::Invalid {
                key: "peer_listen",
                reason: format!("must differ from listen ({listen})"),
            });
        }
        let auth = AuthConfig::resolve(&cli, &file, listen, peer_listen)?;
        let sync_interval_ms = cli
            .sync_interval_ms
            .or(file.sync_interval_ms)
            .unwrap_or(DEFAULT_SYNC_INTERVAL_MS);
        let sync = match cli
            .sync_mode
            .or(file.sync_mode)
            .unwrap_or(SyncModeName::Periodic)
        {
            SyncModeName::Batch => SyncMode::Batch,
            SyncModeName::Periodic => {
                if sync_interval_ms == 0 {
                    return Err(ConfigError::Invalid {
                        key: "sync_interval_ms",
                        reason: "must be at least 1 in periodic mode".into(),
                    });
                }
                SyncMode::Periodic {
                    interval: Duration::from_millis(sync_interval_ms),
                }
            }
        };
        let idle = cli
            .idle_timeout_secs
            .or(file.idle_timeout_secs)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
        let memtable_mb = positive(
            "memtable_mb",
            cli.memtable_mb
                .or(file.memtable_mb)
                .unwrap_or(DEFAULT_MEMTABLE_MB),
        )?;
        let max_value_kb = positive(
            "max_value_kb",
            cli.max_value_kb
                .or(file.max_value_kb)
                .unwrap_or(crate::service::DEFAULT_MAX_VALUE_LEN >> 10),
        )?;
        let hint_window = positive_u64(
            "hint_window_secs",
            cli.hint_window_secs
                .or(file.hint_window_secs)
                .unwrap_or(crate::hints::DEFAULT_HINT_WINDOW.as_secs()),
        )?;
        let hint_ttl = positive_u64(
            "hint_ttl_secs",
            cli.hint_ttl_secs
                .or(file.hint_ttl_secs)
                .unwrap_or(crate::hints::DEFAULT_HINT_TTL.as_secs()),
        )?;
        let tombstone_min_age = cli
            .tombstone_min_age_secs
            .or(file.tombstone_min_age_secs)
            .unwrap_or(crate::service::DEFAULT_TOMBSTONE_MIN_AGE.as_secs());
        // A hint younger than the TTL may still bring back a value a purged tombstone
        // deleted.
        if tombstone_min_age < hint_ttl {
            return Err(ConfigError::Invalid {
                key: "tombstone_min_age_secs",
                reason: format!("must be at least hint_ttl_secs ({hint_ttl})"),
            });
        }
        // A value must fit a frame (16 MiB) with room for the rest of the request.
        if max_value_kb > 15 * 1024 {
            return Err(ConfigError::Invalid {
                key: "max_value_kb",
                reason: "must be at most 15360 (a value must fit one 16 MiB frame)".into(),
            });
        }
        let auto_bootstrap = cli.auto_bootstrap.or(file.auto_bootstrap).unwrap_or(true);
        let replace = match (cli.replace, file.replace) {
            (Some(id), _) => Some(id),
            (None, Some(text)) => {
                Some(
                    text.parse()
                        .map_err(|e: ParseNodeIdError| ConfigError::Invalid {
                            key: "replace",
                            reason: e.to_string(),
                        })?,
                )
            }
            (None, None) => None,
        };
        if replace.is_some() {
            if cluster.seeds.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "replace",
                    reason: "a replacement joins an existing cluster: give --seeds".into(),
                });
            }
            if !auto_bootstrap {
                return Err(ConfigError::Invalid {
                    key: "replace",
                    reason: "a replacement streams the replaced node's ranges: it needs \
                             --auto-bootstrap on"
                        .into(),
                });
            }
        }
        Ok(Config {
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            peer_listen,
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            sync,
            max_connections: positive(
                "max_connections",
                cli.max_connections
                    .or(file.max_connections)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            )?,
            max_in_flight: positive(
                "max_in_flight",
                cli.max_in_flight
                    .or(file.max_in_flight)
                    .unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            )?,
            idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
            handshake_timeout: Duration::from_secs(positive_u64(
                "handshake_timeout_secs",
                cli.handshake_timeout_secs
                    .or(file.handshake_timeout_secs)
                    .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            )?),
            max_pending_handshakes: positive(
                "max_pending_handshakes",
                cli.max_pending_handshakes
                    .or(file.max_pending_handshakes)
                    .unwrap_or(DEFAULT_MAX_PENDING_HANDSHAKES),
            )?,
            max_request_data_in_flight: {
                let mb = cli
                    .max_request_data_in_flight_mb
                    .or(file.max_request_data_in_flight_mb)
                    .unwrap_or(crate::server::DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT >> 20);
                if mb < 16 {
                    return Err(ConfigError::Invalid {
                        key: "max_request_data_in_flight_mb",
                        reason: "must be at least 16 (the largest frame)".into(),
                    });
                }
                mb.saturating_mul(1 << 20)
            },
            min_free_disk: cli
                .min_free_disk_mb
                .or(file.min_free_disk_mb)
                .unwrap_or(DEFAULT_MIN_FREE_DISK_MB)
                .saturating_mul(1 << 20),
            write_timeout: millis(positive(
                "write_timeout_ms",
                cli.write_timeout_ms
                    .or(file.write_timeout_ms)
                    .unwrap_or(crate::coordinator::DEFAULT_WRITE_TIMEOUT.as_millis() as usize),
            )?),
            read_timeout: millis(positive(
                "read_timeout_ms",
                cli.read_timeout_ms
                    .or(file.read_timeout_ms)
                    .unwrap_or(crate::coordinator::DEFAULT_READ_TIMEOUT.as_millis() as usize),
            )?),
            max_siblings: positive(
                "max_siblings",
                cli.max_siblings
                    .or(file.max_siblings)
                    .unwrap_or(crate::versioning::DEFAULT_MAX_SIBLINGS),
            )?,
            memtable_size: memtable_mb << 20,
            max_value_len: max_value_kb << 10,
            salvage_commitlog: cli.salvage_commitlog || file.salvage_commitlog.unwrap_or(false),
            anti_entropy: cli.anti_entropy.or(file.anti_entropy).unwrap_or(true),
            auto_bootstrap,
            replace,
            repair_period: Duration::from_secs(positive_u64(
                "repair_period_secs",
                cli.repair_period_secs
                    .or(file.repair_period_secs)
                    .unwrap_or(DEFAULT_REPAIR_PERIOD_SECS),
            )?),
            repair_rate: positive_u64(
                "repair_rate_kb",
                cli.repair_rate_kb
                    .or(file.repair_rate_kb)
                    .unwrap_or(DEFAULT_REPAIR_RATE_KB),
            )?
            .saturating_mul(1024),
            stream_throughput: mib_per_sec(
                "stream_throughput_mb",
                cli.stream_throughput_mb
                    .or(file.stream_throughput_mb)
                    .unwrap_or(DEFAULT_STREAM_THROUGHPUT_MB),
            )?,
            stream_page_bytes: match cli
                .stream_page_kb
                .or(file.stream_page_kb)
                .unwrap_or(DEFAULT_STREAM_PAGE_KB)
            {
                kb @ 1..=4096 => kb * 1024,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "stream_page_kb",
                        reason: "must be 1 to 4096".into(),
                    })
                }
            },
            cleanup_grace: match cli
                .cleanup_grace_secs
                .or(file.cleanup_grace_secs)
                .unwrap_or(DEFAULT_CLEANUP_GRACE_SECS)
            {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            hints: crate::hints::HintLimits {
                window: Duration::from_secs(hint_window),
                ttl: Duration::from_secs(hint_ttl),
                ..crate::hints::HintLimits::default()
            },
            tombstone_min_age: Duration::from_secs(tombstone_min_age),
            cluster,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Partitioner, TokenAllocation};

    #[test]
    fn config_defaults_match_the_issue() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./sibyl-data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7400");
        assert_eq!(c.peer_listen.to_string(), "127.0.0.1:7401");
        assert_eq!(c.max_siblings, 100);
        assert!(matches!(c.sync, SyncMode::Periodic { .. }));
    }

    #[test]
    fn config_flags_override_file() {
        let file: FileConfig = toml::from_str(
            "data_dir = \"/f\"\nlisten = \"127.0.0.1:9000\"\nsync_mode = \"batch\"\nmax_siblings = 7",
        )
        .unwrap();
        let cli = Cli::parse_from(["sibyl", "--listen", "127.0.0.1:9100"]);
        let c = Config::resolve(cli, file).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.data_dir, PathBuf::from("/f"));
        assert_eq!(c.sync, SyncMode::Batch);
        assert_eq!(c.max_siblings, 7);
    }

    #[test]
    fn config_coordinator_timeouts_default_and_override_and_refuse_zero() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert_eq!(c.write_timeout, Duration::from_secs(2));
        assert_eq!(c.read_timeout, Duration::from_secs(5));
        let cli = Cli::parse_from([
            "sibyl",
            "--write-timeout-ms",
            "250",
            "--read-timeout-ms",
            "750",
        ]);
        let c = Config::resolve(cli, FileConfig::default()).unwrap();
        assert_eq!(c.write_timeout, Duration::from_millis(250));
        assert_eq!(c.read_timeout, Duration::from_millis(750));
        let cli = Cli::parse_from(["sibyl", "--write-timeout-ms", "0"]);
        assert!(Config::resolve(cli, FileConfig::default()).is_err());
    }

    #[test]
    fn config_unknown_file_key_is_refused() {
        assert!(toml::from_str::<FileConfig>("no_such_key = 1").is_err());
    }

    #[test]
    fn config_every_flag_has_a_file_key() {
        let text = "data_dir = \"d\"\nlisten = \"127.0.0.1:1\"\npeer_listen = \"127.0.0.1:2\"\n\
                    log_level = \"debug\"\nsync_mode = \"periodic\"\nsync_interval_ms = 5\n\
                    max_connections = 3\nmax_in_flight = 4\nidle_timeout_secs = 0\n\
                    max_siblings = 5\nmemtable_mb = 6\nmax_value_kb = 7\n\
                    write_timeout_ms = 300\nread_timeout_ms = 400\n\
                    seeds = [\"127.0.0.1:9\"]\ncluster_name = \"c\"\nnum_tokens = 8\n\
                    datacenter = \"east\"\nrack = \"r9\"\npartitioner = \"md5\"\n\
                    token_allocation = \"random\"\nphi_threshold = 5.5\n";
        let c = Config::resolve(Cli::default(), toml::from_str(text).unwrap()).unwrap();
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.max_in_flight, 4);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.memtable_size, 6 << 20);
        assert_eq!(c.max_value_len, 7 << 10);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.cluster.seeds, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(c.cluster.cluster_name, "c");
        assert_eq!(c.cluster.num_tokens, 8);
        assert_eq!(c.cluster.datacenter, "east");
        assert_eq!(c.cluster.rack, "r9");
        assert_eq!(c.cluster.partitioner, Partitioner::Md5);
        assert_eq!(c.cluster.token_allocation, TokenAllocation::Random);
        assert_eq!(c.cluster.phi_threshold, 5.5);
    }

    #[test]
    fn config_cluster_defaults_match_the_issue() {
        let c = Config::resolve(Cli::default(), FileConfig::default()).unwrap();
        assert!(c.cluster.seeds.is_empty());
        assert_eq!(c.cluster.cluster_name, "sibyl");
        assert_eq!(c.cluster.num_tokens, 16);
        assert_eq!(c.cluster.datacenter, "dc1");
        assert_eq!(c.cluster.rack, "rack1");
        assert_eq!(c.cluster.partitioner, Partitioner::Murmur3);
        assert_eq!(c.cluster.token_allocation, TokenAllocation::Balanced);
        assert_eq!(c.cluster.phi_threshold, 8.0);
    }

    #[test]
    fn config_replace_takes_a_node_id_and_needs_seeds_and_bootstrap() {
        let resolve = |args: &[&str]| {
            let mut all = vec!["sibyl"];
            all.extend_from_slice(args);
            Config::resolve(Cli::parse_from(all), FileConfig::default())
        };
        let c = resolve(&["--replace", "00000000000000ab", "--seeds", "127.0.0.1:9"]).unwrap();
        assert_eq!(c.replace, Some(NodeId(0xab)));
        assert_eq!(resolve(&[]).unwrap().replace, None);
        let no_seeds = resolve(&["--replace", "ab"]).unwrap_err().to_string();
        assert!(no_seeds.contains("--seeds"), "{no_seeds}");
        let no_bootstrap = resolve(&[
            "--replace",
            "ab",
            "--seeds",
            "127.0.0.1:9",
            "--auto-bootstrap",
            "off",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            no_bootstrap.contains("--auto-bootstrap on"),
            "{no_bootstrap}"
        );
        assert!(Cli::try_parse_from(["sibyl", "--replace", "xyz"]).is_err());
        let file: FileConfig =
            toml::from_str("replace = \"nothex\"\nseeds = [\"127.0.0.1:9\"]").unwrap();
        let bad = Config::resolve(Cli::parse_from(["sibyl"]), file)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("invalid replace") && bad.contains("hex digits"),
            "{bad}"
        );
    }

    #[test]
    fn config_seeds_flag_splits_on_commas() {
        let cli = Cli::parse_from(["sibyl", "--seeds", "127.0.0.1:7401,127.0.0.1:7411"]);
        let c = Config::resolve(cli, FileConfig::default()).unwrap();
        assert_eq!(c.cluster.seeds.len(), 2);
        assert_eq!(c.cluster.seeds[1].port(), 7411);
    }

    #[test]
    fn config_bad_cluster_values_are_refused() {
        for args in [
            &["sibyl", "--seeds", "no-port-here"][..],
            &["sibyl", "--num-tokens", "0"],
            &["sibyl", "--phi-threshold", "0"],
            &["sibyl", "--rack", "a b"],
        ] {
            let cli = Cli::parse_from(args);
            assert!(
                Config::resolve(cli, FileConfig::default()).is_err(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn config_same_client_and_peer_address_is_refused() {
        let cli = Cli::parse_from([
            "sibyl",
            "--listen",
            "127.0.0.1:9000",
            "--peer-listen",
            "127.0.0.1:9000",
        ]);
        assert!(Config::resolve(cli, FileConfig::default()).is_err());
    }
}
