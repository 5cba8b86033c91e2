//! Gossip membership and failure detection (placeholder; being written).
