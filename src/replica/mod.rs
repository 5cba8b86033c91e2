//! The local replica (placeholder, filled in below).
pub mod keys;
pub mod range;
