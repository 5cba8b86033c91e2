//! Tokens, partitioners, token allocation and placement: the consistent-hashing ring.
//!
//! # Layout
//! - [`token`]: [`Token`], a position on the ring, one variant per partitioner.
//! - [`murmur3`]: Cassandra's murmur3 x64_128 (signed tail bytes) for exact token
//!   compatibility.
//! - [`partitioner`]: [`Partitioner`] (`murmur3`, `md5`): key -> token, ring geometry.
//! - [`node`]: [`NodeId`] and [`NodeLocation`] (datacenter, rack).
//! - [`ring`](mod@ring): [`Ring`], an immutable snapshot of token ownership with O(log T)
//!   lookups, ownership shares and preference lists.
//! - [`strategy`]: [`ReplicationStrategy`] (`simple`, `rack-aware`, `dc-aware`).
//! - [`allocation`]: choosing a joining node's tokens ([`TokenAllocation`]: balanced or
//!   random).
//!
//! # Invariants
//! A [`Ring`] holds tokens of one partitioner only, each token owned by exactly one node.
//! Rings are values: to change ownership, build a new ring and swap it whole (e.g. in an
//! `Arc`); readers never see a half-updated ring.

pub mod allocation;
pub mod murmur3;
pub mod node;
pub mod partitioner;
#[allow(clippy::module_inception)]
pub mod ring;
pub mod strategy;
pub mod token;

pub use allocation::{allocate_tokens, TokenAllocation};
pub use node::{NodeId, NodeLocation, ParseNodeIdError};
pub use partitioner::{Partitioner, UnknownPartitioner};
pub use ring::{Ring, RingError, RingNode};
pub use strategy::ReplicationStrategy;
pub use token::Token;
