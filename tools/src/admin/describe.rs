//! The `describe` and `tables` reports: the cluster as a node describes it (name,
//! partitioner, schema version and whether the nodes agree on it) and its tables with
//! their options, as text and as JSON. Pure functions (no I/O).

use std::fmt::Write as _;

use serde_json::{json, Value};
use sibyl_protocol::{ClusterDescription, TableOptions};

use crate::cli::render::{compaction_name, conflict_name, placement_name, show_table_options};
use crate::consistency::show_consistency;

/// True when every node gossips the answering node's schema version.
pub fn schema_agreement(d: &ClusterDescription) -> bool {
    d.nodes
        .iter()
        .all(|n| n.schema_version == Some(d.schema_version))
}

/// A table's options as JSON: `{name, rf, conflict, read, write, ttl_secs, compaction,
/// placement}` in `create table` vocabulary (`ttl_secs` null when none).
pub fn table_json(name: &str, o: &TableOptions) -> Value {
    json!({
        "name": name,
        "rf": o.replication_factor,
        "conflict": conflict_name(o.conflict_mode),
        "read": show_consistency(&o.read_consistency),
        "write": show_consistency(&o.write_consistency),
        "ttl_secs": o.default_ttl_secs,
        "compaction": compaction_name(o.compaction),
        "placement": placement_name(&o.placement),
    })
}

/// One row per table: name, rf, conflict mode, read and write levels, TTL, compaction,
/// placement; `no tables` when there are none.
pub fn render_tables(tables: &[(String, TableOptions)]) -> String {
    if tables.is_empty() {
        return "no tables".to_owned();
    }
    let mut rows: Vec<[String; 8]> = vec![[
        "table".into(),
        "rf".into(),
        "conflict".into(),
        "read".into(),
        "write".into(),
        "ttl".into(),
        "compaction".into(),
        "placement".into(),
    ]];
    for (name, o) in tables {
        rows.push([
            name.clone(),
            o.replication_factor.to_string(),
            conflict_name(o.conflict_mode).to_owned(),
            show_consistency(&o.read_consistency),
            show_consistency(&o.write_consistency),
            o.default_ttl_secs
                .map_or_else(|| "-".to_owned(), |t| format!("{t}s")),
            compaction_name(o.compaction).to_owned(),
            placement_name(&o.placement),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// `describe`: the cluster's name, partitioner, schema version with the nodes' agreement
/// (each node's version when they disagree), then every table with its options.
pub fn render_describe(d: &ClusterDescription, tables: &[(String, TableOptions)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cluster: {}", d.cluster_name);
    let _ = writeln!(out, "partitioner: {}", d.partitioner);
    let agree = if schema_agreement(d) {
        format!("all {} nodes agree", d.nodes.len())
    } else {
        "nodes disagree".to_owned()
    };
    let _ = writeln!(out, "schema version: {} ({agree})", d.schema_version);
    if !schema_agreement(d) {
        for n in &d.nodes {
            let version = n
                .schema_version
                .map_or_else(|| "none yet".to_owned(), |v| v.to_string());
            let _ = writeln!(out, "  {} {}: {version}", n.id, n.address);
        }
    }
    let _ = writeln!(out, "tables: {}", tables.len());
    for (name, o) in tables {
        let _ = writeln!(out, "{}", show_table_options(name, o));
    }
    out.trim_end().to_owned()
}

/// `describe --json`: `{cluster_name, partitioner, schema_version, schema_agreement,
/// nodes: [{id, address, schema_version}], tables: [table]}`.
pub fn describe_json(d: &ClusterDescription, tables: &[(String, TableOptions)]) -> Value {
    json!({
        "cluster_name": d.cluster_name,
        "partitioner": d.partitioner,
        "schema_version": d.schema_version,
        "schema_agreement": schema_agreement(d),
        "nodes": d.nodes.iter().map(|n| json!({
            "id": n.id,
            "address": n.address,
            "schema_version": n.schema_version,
        })).collect::<Vec<_>>(),
        "tables": tables.iter().map(|(n, o)| table_json(n, o)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::NodeSchema;

    fn description(versions: &[Option<u64>]) -> ClusterDescription {
        ClusterDescription {
            cluster_name: "prod".into(),
            partitioner: "murmur3".into(),
            schema_version: 7,
            nodes: versions
                .iter()
                .enumerate()
                .map(|(i, v)| NodeSchema {
                    id: format!("{i:016x}"),
                    address: format!("127.0.0.1:{}", 7400 + i),
                    schema_version: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn describe_reports_agreement_or_each_nodes_version() {
        let tables = vec![("kv".to_owned(), TableOptions::default())];
        let agreed = render_describe(&description(&[Some(7), Some(7)]), &tables);
        assert!(agreed.contains("cluster: prod"), "{agreed}");
        assert!(
            agreed.contains("schema version: 7 (all 2 nodes agree)"),
            "{agreed}"
        );
        assert!(agreed.contains("table kv"), "{agreed}");
        let split = description(&[Some(7), None]);
        let text = render_describe(&split, &tables);
        assert!(text.contains("nodes disagree"), "{text}");
        assert!(
            text.contains("0000000000000001 127.0.0.1:7401: none yet"),
            "{text}"
        );
        let v = describe_json(&split, &tables);
        assert_eq!(v["schema_agreement"], false);
        assert_eq!(v["tables"][0]["name"], "kv");
        assert_eq!(v["nodes"][1]["schema_version"], Value::Null);
    }

    #[test]
    fn tables_report_has_a_row_per_table() {
        assert_eq!(render_tables(&[]), "no tables");
        let text = render_tables(&[
            ("a".to_owned(), TableOptions::default()),
            ("b".to_owned(), TableOptions::default()),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("table  rf  conflict"), "{text}");
        assert!(lines[1].starts_with("a "), "{text}");
    }
}
