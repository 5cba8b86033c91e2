//! The `tablestats` report (like `nodetool tablestats`) rendered from the protocol's
//! [`TableStatistics`]: one `name: value` line per figure, sizes in binary units with the
//! exact byte count beside them; the request figures (reads, writes, their latency
//! percentiles, siblings returned) are those of the requests the answering node
//! coordinated. Returns a `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::TableStatistics;

use crate::text::human_size;

/// `size (N bytes)`, e.g. `1.2 MiB (1258291 bytes)`.
fn size(bytes: u64) -> String {
    if bytes < 1024 {
        human_size(bytes)
    } else {
        format!("{} ({bytes} bytes)", human_size(bytes))
    }
}

/// Microseconds as milliseconds.
fn ms(micros: u64) -> String {
    format!("{:.3} ms", micros as f64 / 1e3)
}

/// `N (p50 <= X ms, p99 <= Y ms)`, or `0`.
fn latency(count: u64, p50: u64, p99: u64) -> String {
    if count == 0 {
        "0".to_owned()
    } else {
        format!("{count} (p50 <= {}, p99 <= {})", ms(p50), ms(p99))
    }
}

/// The bloom filter's false positive rate over the lookups it let through, or `None`
/// before any.
pub fn bloom_false_positive_rate(s: &TableStatistics) -> Option<f64> {
    let through = s.bloom_true_positives + s.bloom_false_positives;
    (through > 0).then(|| s.bloom_false_positives as f64 / through as f64)
}

/// The statistics of one table on the node that answered, one figure per line.
pub fn render_table_stats(s: &TableStatistics) -> String {
    let levels = if s.sstables_per_level.is_empty() {
        "-".to_owned()
    } else {
        s.sstables_per_level
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bloom = match bloom_false_positive_rate(s) {
        Some(rate) => format!(
            "{rate:.4} ({} of {} lookups let through)",
            s.bloom_false_positives,
            s.bloom_true_positives + s.bloom_false_positives
        ),
        None => "- (no lookups let through yet)".to_owned(),
    };
    let rows: [(&str, String); 17] = [
        ("table", s.table.clone()),
        ("sstables", s.sstables.to_string()),
        ("sstables per level", format!("[{levels}]")),
        ("sstable size", size(s.sstable_bytes)),
        ("sstable entries", s.sstable_entries.to_string()),
        ("sstable tombstones", s.sstable_tombstones.to_string()),
        ("memtable size", size(s.memtable_bytes)),
        ("memtable entries", s.memtable_entries.to_string()),
        ("frozen memtables", s.frozen_memtables.to_string()),
        ("flushes", s.flushes.to_string()),
        ("compactions", s.compactions.to_string()),
        ("compacted", size(s.compacted_bytes)),
        ("bloom false positives", bloom),
        (
            "reads",
            latency(s.reads, s.read_p50_micros, s.read_p99_micros),
        ),
        (
            "writes",
            latency(s.writes, s.write_p50_micros, s.write_p99_micros),
        ),
        ("cells read", s.cells_read.to_string()),
        (
            "cells with siblings",
            format!(
                "{} (most in one cell: {})",
                s.cells_with_siblings, s.max_siblings
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"));
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_table_stats_shows_every_figure() {
        let s = render_table_stats(&TableStatistics {
            table: "users".into(),
            sstables: 3,
            sstables_per_level: vec![2, 1],
            sstable_bytes: 1_258_291,
            sstable_entries: 10,
            sstable_tombstones: 1,
            memtable_bytes: 100,
            memtable_entries: 2,
            frozen_memtables: 0,
            flushes: 3,
            compactions: 1,
            compacted_bytes: 0,
            bloom_true_positives: 99,
            bloom_false_positives: 1,
            reads: 4,
            read_p50_micros: 250,
            read_p99_micros: 1000,
            writes: 0,
            cells_read: 7,
            cells_with_siblings: 2,
            max_siblings: 3,
            ..TableStatistics::default()
        });
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 17, "{s}");
        assert_eq!(lines[0], "table:                 users");
        assert_eq!(lines[1], "sstables:              3");
        assert_eq!(lines[2], "sstables per level:    [2, 1]");
        assert_eq!(lines[3], "sstable size:          1.2 MiB (1258291 bytes)");
        assert_eq!(lines[6], "memtable size:         100 B");
        assert_eq!(lines[11], "compacted:             0 B");
        assert_eq!(
            lines[12],
            "bloom false positives: 0.0100 (1 of 100 lookups let through)"
        );
        assert_eq!(
            lines[13],
            "reads:                 4 (p50 <= 0.250 ms, p99 <= 1.000 ms)"
        );
        assert_eq!(lines[14], "writes:                0");
        assert_eq!(lines[15], "cells read:            7");
        assert_eq!(lines[16], "cells with siblings:   2 (most in one cell: 3)");
    }
}
