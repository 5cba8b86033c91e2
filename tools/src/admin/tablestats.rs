//! The `tablestats` report (like `nodetool tablestats`) rendered from the protocol's
//! [`TableStatistics`]: one `name: value` line per figure, sizes in binary units with the
//! exact byte count beside them. Returns a `String` (no I/O).

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
    let rows: [(&str, String); 12] = [
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
        });
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 12, "{s}");
        assert_eq!(lines[0], "table:              users");
        assert_eq!(lines[1], "sstables:           3");
        assert_eq!(lines[2], "sstables per level: [2, 1]");
        assert_eq!(lines[3], "sstable size:       1.2 MiB (1258291 bytes)");
        assert_eq!(lines[6], "memtable size:      100 B");
        assert_eq!(lines[11], "compacted:          0 B");
    }
}
