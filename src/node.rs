//! The running node (being written).
