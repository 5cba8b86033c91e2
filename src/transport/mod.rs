//! Node-to-node transport (placeholder; being written).
