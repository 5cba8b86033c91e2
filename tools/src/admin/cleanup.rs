//! The `cleanup` report rendered from the protocol's [`TableCleanup`]s: per table, what
//! the node dropped of ranges it no longer replicates. Returns a `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::TableCleanup;

use crate::text::human_size;

/// One line per table; a closing line with the totals.
pub fn render_cleanup(tables: &[TableCleanup]) -> String {
    if tables.is_empty() {
        return "no table to clean up on this node".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>12} {:>12}",
        "table", "dropped", "before", "after"
    );
    for t in tables {
        let _ = writeln!(
            out,
            "{:<24} {:>12} {:>12} {:>12}",
            t.table,
            t.dropped,
            human_size(t.bytes_before),
            human_size(t.bytes_after)
        );
    }
    let dropped: u64 = tables.iter().map(|t| t.dropped).sum();
    let freed: u64 = tables
        .iter()
        .map(|t| t.bytes_before.saturating_sub(t.bytes_after))
        .sum();
    let _ = write!(
        out,
        "total: {dropped} entries of ranges this node no longer replicates dropped, {} freed",
        human_size(freed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_report_shows_each_table_and_the_totals() {
        let tables = vec![
            TableCleanup {
                table: "kv".into(),
                dropped: 1200,
                bytes_before: 3 << 20,
                bytes_after: 1 << 20,
            },
            TableCleanup {
                table: "users".into(),
                dropped: 0,
                bytes_before: 4096,
                bytes_after: 4096,
            },
        ];
        let text = render_cleanup(&tables);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with("kv") && lines[1].contains("1200"),
            "{text}"
        );
        assert!(lines[3].starts_with("total: 1200 entries"), "{text}");
        assert!(
            lines[3].ends_with(&format!("{} freed", human_size(2 << 20))),
            "{text}"
        );
        assert_eq!(render_cleanup(&[]), "no table to clean up on this node");
    }
}
