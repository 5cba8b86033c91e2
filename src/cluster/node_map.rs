//! `NodeMap`: a hash map keyed by [`NodeId`] with a fixed, seedless hasher.
//!
//! Node ids are random 64-bit values, so a multiply-rotate mix is enough, and a fixed
//! hasher gives a deterministic iteration order: a simulation run with the same seed
//! sends the same messages in the same order (the std `RandomState` would not).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::ring::NodeId;

/// A fast deterministic hasher for [`NodeId`] keys (an FxHash-style mix).
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeIdHasher(u64);

impl Hasher for NodeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Map from node id, deterministic iteration order for a given insertion history.
pub type NodeMap<V> = HashMap<NodeId, V, BuildHasherDefault<NodeIdHasher>>;
