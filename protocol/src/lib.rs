//! Sibyl protocol.
