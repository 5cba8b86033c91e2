//! The node's identity files: what a node must remember about its place in the cluster
//! across restarts, owned by the node (not the request service).
//!
//! # Layout
//! - [`ring_state`]: [`RingState`], the persisted partitioner, generation and tokens
//!   (spec: `doc/node-files.md`).
//! - [`atomic_file`]: small files replaced atomically (tmp, fsync, rename, fsync dir),
//!   also used by the service's schema stamps.

pub mod atomic_file;
pub mod ring_state;

pub use ring_state::{next_generation, RingState, RingStateError, RING_STATE_FILE};
