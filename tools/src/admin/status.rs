//! `status` and `ring` tables (like `nodetool status` / `nodetool ring`) rendered from a
//! [`Topology`]. Returns `String`s (no I/O); used by `sibyl-admin` and the shell's
//! `topology` command.
//!
//! `load` is the data a node holds (SSTables and memtables) as it last gossiped it, in
//! binary units. [`render_health`] adds the state of the node asked (HEALTH): `ok`, or
//! `degraded` with one line per condition (a poisoned engine, writes refused, flushes or
//! compactions blocked for want of disk space).

use std::fmt::Write as _;

use sibyl_protocol::{DiskShortage, NodeHealth, NodeInfo, NodeState, Topology};

use crate::admin::ring::{ownership, ring_entries};
use crate::text::human_size;

/// `normal`, `joining`, `leaving`, `left`.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Joining => "joining",
        NodeState::Normal => "normal",
        NodeState::Leaving => "leaving",
        NodeState::Moving => "moving",
        NodeState::Left => "left",
    }
}

/// `up` or `down`.
pub fn liveness(n: &NodeInfo) -> &'static str {
    if n.up {
        "up"
    } else {
        "down"
    }
}

/// Pads each column of `rows` to its widest cell, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths.get(c).copied().unwrap_or(0);
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per node: address, up/down, state, load, datacenter, rack, token count, owned
/// share of the token space, node id; datacenters in name order.
pub fn render_status(t: &Topology) -> String {
    let own = ownership(t);
    let mut nodes: Vec<&NodeInfo> = t.nodes.iter().collect();
    nodes.sort_by(|a, b| (&a.datacenter, &a.address).cmp(&(&b.datacenter, &b.address)));
    let mut rows = vec![[
        "address",
        "status",
        "state",
        "load",
        "datacenter",
        "rack",
        "tokens",
        "owns",
        "id",
    ]
    .map(str::to_owned)
    .to_vec()];
    for n in &nodes {
        let share = own.get(&n.id).copied().unwrap_or(0.0);
        rows.push(vec![
            n.address.clone(),
            liveness(n).to_owned(),
            state_name(n.state).to_owned(),
            human_size(n.load_bytes),
            n.datacenter.clone(),
            n.rack.clone(),
            n.tokens.len().to_string(),
            format!("{:.1}%", share * 100.0),
            n.id.clone(),
        ]);
    }
    let up = nodes.iter().filter(|n| n.up).count();
    let mut out = table(&rows);
    let _ = write!(
        out,
        "({} node{}, {} up; partitioner {})",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        up,
        t.partitioner
    );
    out
}

/// One line per token in ring order: token, owner address, up/down, state, share of the
/// ring in `(previous token, token]`.
pub fn render_ring(t: &Topology) -> String {
    let entries = ring_entries(t);
    let mut rows = vec![["token", "address", "status", "state", "range share"]
        .map(str::to_owned)
        .to_vec()];
    for e in &entries {
        rows.push(vec![
            e.token.to_string(),
            e.node.address.clone(),
            liveness(e.node).to_owned(),
            state_name(e.node.state).to_owned(),
            format!("{:.2}%", e.share * 100.0),
        ]);
    }
    let mut out = table(&rows);
    let _ = write!(
        out,
        "({} token{}; partitioner {})",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        t.partitioner
    );
    out
}

/// The health of the node asked (`address`): `node ADDRESS: ok`, or `degraded` and one
/// indented line per condition.
pub fn render_health(address: &str, h: &NodeHealth) -> String {
    if !h.is_degraded() {
        return format!("node {address}: ok\n");
    }
    let mut out = format!("node {address}: degraded\n");
    if let Some(reason) = &h.poisoned {
        let _ = writeln!(
            out,
            "  storage poisoned (no writes until restart): {reason}"
        );
    }
    let shortage = |what: &str, s: &DiskShortage| {
        format!(
            "  {what}: short of disk space: {} free, {} reserved, {} needed\n",
            human_size(s.free),
            human_size(s.reserve),
            human_size(s.needed)
        )
    };
    for (what, s) in [
        ("writes refused", &h.writes_refused),
        ("flush blocked (retrying)", &h.flush_blocked),
        ("compaction blocked (retrying)", &h.compaction_blocked),
    ] {
        if let Some(s) = s {
            out.push_str(&shortage(what, s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology {
            partitioner: "murmur3".into(),
            nodes: vec![
                NodeInfo {
                    id: "n2".into(),
                    address: "127.0.0.2:7400".into(),
                    datacenter: "dc1".into(),
                    rack: "r1".into(),
                    state: NodeState::Joining,
                    up: false,
                    tokens: vec![0],
                    load_bytes: 0,
                },
                NodeInfo {
                    id: "n1".into(),
                    address: "127.0.0.1:7400".into(),
                    datacenter: "dc1".into(),
                    rack: "r1".into(),
                    state: NodeState::Normal,
                    up: true,
                    tokens: vec![-(1i128 << 63)],
                    load_bytes: 1_258_291,
                },
            ],
        }
    }

    #[test]
    fn render_status_lists_each_node_with_state_and_share() {
        let s = render_status(&topo());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[0].starts_with("address         status  state    load     datacenter"),
            "{s}"
        );
        assert!(
            lines[1].starts_with("127.0.0.1:7400  up      normal   1.2 MiB  dc1"),
            "{s}"
        );
        assert!(lines[1].contains("50.0%"), "{s}");
        assert!(
            lines[2].starts_with("127.0.0.2:7400  down    joining  0 B      dc1"),
            "{s}"
        );
        assert_eq!(lines[3], "(2 nodes, 1 up; partitioner murmur3)");
    }

    #[test]
    fn render_ring_orders_tokens() {
        let s = render_ring(&topo());
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].starts_with("-9223372036854775808  127.0.0.1:7400"));
        assert!(lines[2].starts_with("0 "), "{s}");
    }

    #[test]
    fn health_renders_ok_or_each_condition() {
        assert_eq!(
            render_health("n:1", &NodeHealth::default()),
            "node n:1: ok\n"
        );
        let h = NodeHealth {
            writes_refused: Some(DiskShortage {
                needed: 100,
                free: 2048,
                reserve: 1 << 20,
                since_ms: 0,
            }),
            ..NodeHealth::default()
        };
        assert_eq!(
            render_health("n:1", &h),
            "node n:1: degraded\n  writes refused: short of disk space: 2.0 KiB free, 1.0 MiB \
             reserved, 100 B needed\n"
        );
    }
}
