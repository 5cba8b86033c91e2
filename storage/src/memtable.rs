//! The memtable (placeholder; being written).
