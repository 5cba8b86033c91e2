//! The cluster part of the node configuration: seeds, cluster name, tokens, location,
//! partitioner, token allocation and failure detection ([`ClusterConfig`]), resolved from
//! the same [`Cli`] flags and [`FileConfig`] keys as the rest (flags over file over
//! defaults). Pure data; read once at start-up.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

use super::{positive, Cli, ConfigError, FileConfig};
use crate::ring::{Partitioner, TokenAllocation};

/// Default cluster name: nodes of clusters with other names refuse each other.
pub const DEFAULT_CLUSTER_NAME: &str = "sibyl";
/// Default virtual nodes per node (Cassandra 4's default `num_tokens`).
pub const DEFAULT_NUM_TOKENS: usize = 16;
/// Most tokens a node may own (a sanity bound; gossip carries every token).
pub const MAX_NUM_TOKENS: usize = 1024;
/// Default datacenter (Cassandra's single-DC default).
pub const DEFAULT_DATACENTER: &str = "dc1";
/// Default rack.
pub const DEFAULT_RACK: &str = "rack1";
/// Default phi-accrual conviction threshold (Cassandra's `phi_convict_threshold`).
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;

/// The partitioner as named in flags and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PartitionerName {
    /// Cassandra's Murmur3Partitioner (64-bit tokens).
    Murmur3,
    /// Dynamo's / Cassandra's RandomPartitioner (MD5, 127-bit tokens).
    Md5,
}

impl From<PartitionerName> for Partitioner {
    fn from(p: PartitionerName) -> Partitioner {
        match p {
            PartitionerName::Murmur3 => Partitioner::Murmur3,
            PartitionerName::Md5 => Partitioner::Md5,
        }
    }
}

/// The token allocation as named in flags and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenAllocationName {
    /// Split the most loaded nodes' ranges (keeps ownership balanced).
    Balanced,
    /// Uniformly random tokens.
    Random,
}

impl From<TokenAllocationName> for TokenAllocation {
    fn from(a: TokenAllocationName) -> TokenAllocation {
        match a {
            TokenAllocationName::Balanced => TokenAllocation::Balanced,
            TokenAllocationName::Random => TokenAllocation::Random,
        }
    }
}

/// How the node takes part in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Seed peer addresses (resolved); empty = this node starts a cluster of its own.
    pub seeds: Vec<SocketAddr>,
    /// Cluster name.
    pub cluster_name: String,
    /// Tokens taken when the node first joins.
    pub num_tokens: usize,
    /// Declared datacenter.
    pub datacenter: String,
    /// Declared rack.
    pub rack: String,
    /// Partitioner.
    pub partitioner: Partitioner,
    /// Token choice when joining.
    pub token_allocation: TokenAllocation,
    /// Failure detector conviction threshold.
    pub phi_threshold: f64,
}

/// Resolves `host:port` seed names to addresses (the first address of each name).
fn resolve_seeds(names: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let addr = name
            .to_socket_addrs()
            .map_err(|e| ConfigError::Invalid {
                key: "seeds",
                reason: format!("{name:?}: {e}"),
            })?
            .next()
            .ok_or_else(|| ConfigError::Invalid {
                key: "seeds",
                reason: format!("{name:?} resolves to no address"),
            })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

fn location_name(key: &'static str, v: String) -> Result<String, ConfigError> {
    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{v:?} must be 1..=255 bytes without spaces"),
        });
    }
    Ok(v)
}

impl ClusterConfig {
    /// Flags over file over defaults, validated.
    pub(super) fn resolve(cli: &Cli, file: &FileConfig) -> Result<ClusterConfig, ConfigError> {
        let seeds = resolve_seeds(
            cli.seeds
                .as_deref()
                .or(file.seeds.as_deref())
                .unwrap_or_default(),
        )?;
        let cluster_name = cli
            .cluster_name
            .clone()
            .or_else(|| file.cluster_name.clone())
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into());
        if cluster_name.is_empty() || cluster_name.len() > 255 {
            return Err(ConfigError::Invalid {
                key: "cluster_name",
                reason: "must be 1..=255 bytes".into(),
            });
        }
        let num_tokens = positive(
            "num_tokens",
            cli.num_tokens
                .or(file.num_tokens)
                .unwrap_or(DEFAULT_NUM_TOKENS),
        )?;
        if num_tokens > MAX_NUM_TOKENS {
            return Err(ConfigError::Invalid {
                key: "num_tokens",
                reason: format!("must be at most {MAX_NUM_TOKENS}"),
            });
        }
        let phi_threshold = cli
            .phi_threshold
            .or(file.phi_threshold)
            .unwrap_or(DEFAULT_PHI_THRESHOLD);
        if !(phi_threshold.is_finite() && phi_threshold > 0.0) {
            return Err(ConfigError::Invalid {
                key: "phi_threshold",
                reason: format!("must be a positive number, got {phi_threshold}"),
            });
        }
        Ok(ClusterConfig {
            seeds,
            cluster_name,
            num_tokens,
            datacenter: location_name(
                "datacenter",
                cli.datacenter
                    .clone()
                    .or_else(|| file.datacenter.clone())
                    .unwrap_or_else(|| DEFAULT_DATACENTER.into()),
            )?,
            rack: location_name(
                "rack",
                cli.rack
                    .clone()
                    .or_else(|| file.rack.clone())
                    .unwrap_or_else(|| DEFAULT_RACK.into()),
            )?,
            partitioner: cli
                .partitioner
                .or(file.partitioner)
                .map_or(Partitioner::Murmur3, Partitioner::from),
            token_allocation: cli
                .token_allocation
                .or(file.token_allocation)
                .map_or(TokenAllocation::Balanced, TokenAllocation::from),
            phi_threshold,
        })
    }
}
