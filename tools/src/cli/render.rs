//! How the shell prints what the cluster returned: rows with their siblings and
//! tombstones, table lists and table options. Returns `String`s (no I/O), so the exact
//! output is unit-tested. Cluster topology is printed by [`crate::admin`].

use std::fmt::Write as _;

use sibyl_protocol::{Cell, Compaction, ConflictMode, Placement, Sibling, TableOptions};

use crate::consistency::show_consistency;
use crate::text::{show_bytes, show_name};

/// Marker printed for a deleted version (a tombstone).
pub const TOMBSTONE: &str = "<deleted>";

/// One version of a cell: its value (quoted or hex) or [`TOMBSTONE`], with its TTL.
pub fn show_sibling(s: &Sibling) -> String {
    let mut out = match &s.value {
        Some(v) => show_bytes(v),
        None => TOMBSTONE.to_owned(),
    };
    if let Some(ttl) = s.ttl_secs {
        let _ = write!(out, " (ttl {ttl}s)");
    }
    out
}

/// `name: value`, or `name: N siblings: a | b` when concurrent versions exist.
pub fn show_cell(cell: &Cell) -> String {
    let name = show_name(&cell.name);
    match cell.siblings.as_slice() {
        [] => format!("{name}: {TOMBSTONE}"),
        [one] => format!("{name}: {}", show_sibling(one)),
        many => {
            let versions: Vec<String> = many.iter().map(show_sibling).collect();
            format!("{name}: {} siblings: {}", many.len(), versions.join(" | "))
        }
    }
}

/// The cells of a read, one per line, indented; `(not found)` when there are none.
pub fn show_cells(cells: &[Cell]) -> String {
    if cells.is_empty() {
        return "(not found)".to_owned();
    }
    let mut out = String::new();
    for cell in cells {
        let _ = writeln!(out, "  {}", show_cell(cell));
    }
    let conflicts = cells.iter().filter(|c| c.siblings.len() > 1).count();
    let _ = write!(
        out,
        "({} column{}{})",
        cells.len(),
        if cells.len() == 1 { "" } else { "s" },
        if conflicts > 0 {
            format!(", {conflicts} with siblings: a put or delete now supersedes them")
        } else {
            String::new()
        }
    );
    out
}

/// `causal` or `lww`, as `create table` spells it.
pub fn conflict_name(c: ConflictMode) -> &'static str {
    match c {
        ConflictMode::Causal => "causal",
        ConflictMode::Lww => "lww",
    }
}

/// `size_tiered` or `leveled`, as `create table` spells it.
pub fn compaction_name(c: Compaction) -> &'static str {
    match c {
        Compaction::SizeTiered => "size_tiered",
        Compaction::Leveled => "leveled",
    }
}

/// `simple`, `rack_aware` or `dc_aware DC=N,...`, as `create table` spells it.
pub fn placement_name(p: &Placement) -> String {
    match p {
        Placement::Simple => "simple".to_owned(),
        Placement::RackAware => "rack_aware".to_owned(),
        Placement::DcAware(dcs) => {
            let parts: Vec<String> = dcs.iter().map(|(dc, n)| format!("{dc}={n}")).collect();
            format!("dc_aware {}", parts.join(","))
        }
    }
}

/// A table's options as `key: value` lines, in `create table` vocabulary.
pub fn show_table_options(name: &str, o: &TableOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table {name}");
    let _ = writeln!(out, "  rf: {}", o.replication_factor);
    let _ = writeln!(out, "  conflict: {}", conflict_name(o.conflict_mode));
    let _ = writeln!(out, "  read: {}", show_consistency(&o.read_consistency));
    let _ = writeln!(out, "  write: {}", show_consistency(&o.write_consistency));
    let _ = writeln!(
        out,
        "  ttl: {}",
        o.default_ttl_secs
            .map_or_else(|| "none".to_owned(), |t| format!("{t}s"))
    );
    let _ = writeln!(out, "  compaction: {}", compaction_name(o.compaction));
    let _ = write!(out, "  placement: {}", placement_name(&o.placement));
    out
}

/// Table names, one per line, with a count.
pub fn show_tables(names: &[String]) -> String {
    let mut out = String::new();
    for n in names {
        let _ = writeln!(out, "{n}");
    }
    let _ = write!(
        out,
        "({} table{})",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sib(v: Option<&'static str>) -> Sibling {
        Sibling {
            value: v.map(|s| Bytes::from_static(s.as_bytes())),
            timestamp_micros: 1,
            ttl_secs: None,
        }
    }

    fn cell(name: &'static str, sibs: Vec<Sibling>) -> Cell {
        Cell {
            name: Bytes::from_static(name.as_bytes()),
            siblings: sibs,
            context: Bytes::new(),
        }
    }

    #[test]
    fn show_cell_lists_siblings_with_count() {
        let c = cell("name", vec![sib(Some("alice")), sib(Some("alicia"))]);
        assert_eq!(show_cell(&c), r#"name: 2 siblings: "alice" | "alicia""#);
    }

    #[test]
    fn show_cell_marks_tombstones() {
        assert_eq!(show_cell(&cell("x", vec![sib(None)])), "x: <deleted>");
        assert_eq!(
            show_cell(&cell("x", vec![sib(Some("a")), sib(None)])),
            r#"x: 2 siblings: "a" | <deleted>"#
        );
    }

    #[test]
    fn show_cell_hex_for_binary_and_ttl() {
        let c = cell(
            "b",
            vec![Sibling {
                value: Some(Bytes::from_static(&[0xff, 0x01])),
                timestamp_micros: 1,
                ttl_secs: Some(30),
            }],
        );
        assert_eq!(show_cell(&c), "b: 0xff01 (ttl 30s)");
    }

    #[test]
    fn show_cells_empty_is_not_found() {
        assert_eq!(show_cells(&[]), "(not found)");
    }
}
