//! `sibyl-admin --json`: every report as a JSON value, for scripts. Field names are the
//! protocol's (snake_case) and stable; sizes are bytes, times as the protocol gives
//! them (named with their unit). Tokens are decimal strings (md5 tokens do not fit a
//! JSON number). Pure functions (no I/O); `sibyl-admin` prints one value per command.

use serde_json::{json, Value};
use sibyl_protocol::{
    HintOwner, RepairState, RepairStatus, StreamsReport, TableCleanup, TableStatistics, TableSync,
    Topology,
};

use crate::admin::exposition::Exposition;
use crate::admin::ring::{ownership, ring_entries};
use crate::admin::status::state_name;

/// `status`: `{partitioner, nodes: [{id, address, up, state, datacenter, rack, tokens,
/// owns, load_bytes}]}`; `owns` is the node's share of the token space in `[0, 1]`.
pub fn status_json(t: &Topology) -> Value {
    let owns = ownership(t);
    json!({
        "partitioner": t.partitioner,
        "nodes": t.nodes.iter().map(|n| json!({
            "id": n.id,
            "address": n.address,
            "up": n.up,
            "state": state_name(n.state),
            "datacenter": n.datacenter,
            "rack": n.rack,
            "tokens": n.tokens.len(),
            "owns": owns.get(&n.id).copied().unwrap_or(0.0),
            "load_bytes": n.load_bytes,
        })).collect::<Vec<_>>(),
    })
}

/// `ring`: `{partitioner, tokens: [{token, node, address, share}]}` in ring order.
pub fn ring_json(t: &Topology) -> Value {
    json!({
        "partitioner": t.partitioner,
        "tokens": ring_entries(t).iter().map(|e| json!({
            "token": e.token.to_string(),
            "node": e.node.id,
            "address": e.node.address,
            "share": e.share,
        })).collect::<Vec<_>>(),
    })
}

/// `tablestats` and `compact`: the statistics' fields as named on the wire, and
/// `bloom_false_positive_rate` (null before any lookup got through the bloom filter).
pub fn table_stats_json(s: &TableStatistics) -> Value {
    json!({
        "table": s.table,
        "sstables": s.sstables,
        "sstables_per_level": s.sstables_per_level,
        "sstable_bytes": s.sstable_bytes,
        "sstable_entries": s.sstable_entries,
        "sstable_tombstones": s.sstable_tombstones,
        "memtable_bytes": s.memtable_bytes,
        "memtable_entries": s.memtable_entries,
        "frozen_memtables": s.frozen_memtables,
        "flushes": s.flushes,
        "compactions": s.compactions,
        "compacted_bytes": s.compacted_bytes,
        "bloom_true_positives": s.bloom_true_positives,
        "bloom_false_positives": s.bloom_false_positives,
        "bloom_false_positive_rate": crate::admin::tablestats::bloom_false_positive_rate(s),
        "reads": s.reads,
        "read_p50_micros": s.read_p50_micros,
        "read_p99_micros": s.read_p99_micros,
        "writes": s.writes,
        "write_p50_micros": s.write_p50_micros,
        "write_p99_micros": s.write_p99_micros,
        "cells_read": s.cells_read,
        "cells_with_siblings": s.cells_with_siblings,
        "max_siblings": s.max_siblings,
    })
}

/// `hints`: `{owners: [{owner, pending, pending_bytes, oldest_micros, dropped_window,
/// dropped_size, dropped_corrupt, dropped_rejected}], pending, dropped}`.
pub fn hints_json(owners: &[HintOwner]) -> Value {
    let dropped: u64 = owners
        .iter()
        .map(|o| o.dropped_window + o.dropped_size + o.dropped_corrupt + o.dropped_rejected)
        .sum();
    json!({
        "owners": owners.iter().map(|o| json!({
            "owner": o.owner,
            "pending": o.pending,
            "pending_bytes": o.pending_bytes,
            "oldest_micros": o.oldest_micros,
            "dropped_window": o.dropped_window,
            "dropped_size": o.dropped_size,
            "dropped_corrupt": o.dropped_corrupt,
            "dropped_rejected": o.dropped_rejected,
        })).collect::<Vec<_>>(),
        "pending": owners.iter().map(|o| o.pending).sum::<u64>(),
        "dropped": dropped,
    })
}

/// `streams` and `setstreamthroughput`: `{throughput_bytes_per_sec, streams: [...]}`
/// (every stream, done ones included; `--all` only changes the table).
pub fn streams_json(r: &StreamsReport) -> Value {
    json!({
        "throughput_bytes_per_sec": r.throughput,
        "streams": r.streams.iter().map(|s| json!({
            "operation": s.operation,
            "table": s.table,
            "range_start": s.range_start,
            "range_end": s.range_end,
            "peer": s.peer,
            "state": s.state,
            "bytes": s.bytes,
            "cells": s.cells,
            "run_bytes": s.run_bytes,
            "rate_bytes_per_sec": s.rate,
            "error": s.error,
            "total_bytes": s.total,
            "left_bytes": s.left(),
        })).collect::<Vec<_>>(),
    })
}

fn sync_json(t: &TableSync) -> Value {
    json!({
        "table": t.table,
        "jobs": t.jobs,
        "synced": t.synced,
        "oldest_secs": t.oldest_secs,
    })
}

/// `repair` and `repair --status`: the repair status's fields, `state` as `none`,
/// `running` or `done`.
pub fn repair_json(s: &RepairStatus) -> Value {
    json!({
        "id": s.id,
        "table": s.table,
        "state": match s.state {
            RepairState::None => "none",
            RepairState::Running => "running",
            RepairState::Done => "done",
        },
        "jobs": s.jobs,
        "jobs_done": s.jobs_done,
        "differed": s.differed,
        "cells_sent": s.cells_sent,
        "cells_received": s.cells_received,
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "elapsed_ms": s.elapsed_ms,
        "failed": s.failed,
        "tables": s.tables.iter().map(sync_json).collect::<Vec<_>>(),
    })
}

/// `cleanup`: `{tables: [{table, dropped, bytes_before, bytes_after}]}`.
pub fn cleanup_json(tables: &[TableCleanup]) -> Value {
    json!({
        "tables": tables.iter().map(|t| json!({
            "table": t.table,
            "dropped": t.dropped,
            "bytes_before": t.bytes_before,
            "bytes_after": t.bytes_after,
        })).collect::<Vec<_>>(),
    })
}

/// The HEALTH of the node asked, in `status`: `{degraded, poisoned, writes_refused,
/// flush_blocked, compaction_blocked}`, each shortage `{needed, free, reserve, since_ms}`
/// or null.
pub fn health_json(h: &sibyl_protocol::NodeHealth) -> Value {
    let shortage = |s: &Option<sibyl_protocol::DiskShortage>| {
        s.as_ref().map(|s| {
            json!({
                "needed": s.needed,
                "free": s.free,
                "reserve": s.reserve,
                "since_ms": s.since_ms,
            })
        })
    };
    json!({
        "degraded": h.is_degraded(),
        "poisoned": h.poisoned,
        "writes_refused": shortage(&h.writes_refused),
        "flush_blocked": shortage(&h.flush_blocked),
        "compaction_blocked": shortage(&h.compaction_blocked),
    })
}

/// `rebalance`: `{moved_bytes, tokens_moved, applied, nodes: [{id, address,
/// owned_before, owned_after, moves, tokens_before, tokens_after}]}` (tokens as decimal
/// strings, as `ring` shows them; `applied`: `--commit` moved the nodes).
pub fn rebalance_json(plan: &sibyl_protocol::RebalanceReport, applied: bool) -> Value {
    let tokens = |ts: &[i128]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    json!({
        "moved_bytes": plan.moved_bytes,
        "tokens_moved": plan.tokens_moved,
        "applied": applied,
        "nodes": plan.nodes.iter().map(|n| json!({
            "id": n.id,
            "address": n.address,
            "owned_before": n.owned_before,
            "owned_after": n.owned_after,
            "moves": n.moves(),
            "tokens_before": tokens(&n.tokens_before),
            "tokens_after": tokens(&n.tokens_after),
        })).collect::<Vec<_>>(),
    })
}

/// `metrics`: `{families: [{name, type, help, samples: [{name, labels: {..}, value}]}]}`;
/// a value that is not finite (`NaN`, `±Inf`) is `null`.
pub fn metrics_json(e: &Exposition) -> Value {
    json!({
        "families": e.families.iter().map(|f| json!({
            "name": f.name,
            "type": f.kind.name(),
            "help": f.help,
            "samples": f.samples.iter().map(|s| json!({
                "name": s.name,
                "labels": s.labels.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<serde_json::Map<_, _>>(),
                "value": if s.value.is_finite() { json!(s.value) } else { Value::Null },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
