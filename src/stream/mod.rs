//! Streaming: token ranges follow the ring. A node that gains ranges pulls each one from
//! a current replica, a page at a time in ring order, applies it by merge and records how
//! far it got, so a stream cut by a crash of either side resumes where it stopped.
//!
//! # Layout
//! - [`messages`]: the stream family's peer messages and their codec.
//! - [`peer`]: [`StreamHandler`], which answers pages of a range from this replica.
//! - [`plan`]: which ranges a ring change moves to a node, and their sources.
//! - [`checkpoint`]: [`BootstrapState`], the `bootstrap` file of a joining node.
//! - [`bootstrap`]: [`Bootstrap`], the joining node's streams, run before it owns a range.
//! - [`decommission`]: [`Decommission`], a leaving node's streams to the nodes that gain
//!   its ranges, run before it leaves.
//! - [`progress`]: [`StreamRegistry`], what the streams are doing and their rate cap.
//! - [`removal`]: [`Removals`], which copies a removed node's ranges from the replicas
//!   that remain to the nodes that gain them.
//! - [`admission`]: which ring changes may start (one at a time per range, never one
//!   that leaves a range without a copy).
//! - [`cleanup`]: dropping the data of ranges the node no longer replicates, on demand
//!   or after a grace period.
//! - [`sizes`]: where a node's bytes lie on the ring (histograms per table).
//! - [`rebalance`]: the plan of token moves that spreads the cluster's bytes evenly.
//! - [`movement`]: [`Mover`], a node moving to new tokens (pull what they gain, push
//!   what the old ones lose), and the REBALANCE answer.
//!
//! A replacement (`--replace`) is a bootstrap whose future ring has it in the dead node's
//! place ([`crate::cluster::ClusterView`]).

pub mod admission;
pub mod bootstrap;
pub mod checkpoint;
pub mod cleanup;
pub mod decommission;
pub mod messages;
pub mod movement;
pub mod peer;
pub mod plan;
pub mod progress;
pub mod rebalance;
pub mod removal;
pub mod sizes;

pub use admission::Refusal;
pub use bootstrap::{Bootstrap, BootstrapError, StreamOptions};
pub use checkpoint::{BootstrapState, MoveState, Progress, RangeCheckpoint};
pub use decommission::Decommission;
pub use messages::{StreamRequest, StreamResponse};
pub use movement::Mover;
pub use peer::StreamHandler;
pub use progress::{StreamInfo, StreamRegistry, StreamState};
pub use removal::Removals;
