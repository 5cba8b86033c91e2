//! Tokens, partitioners and placement (placeholder; being written).
