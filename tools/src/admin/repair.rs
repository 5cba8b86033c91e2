//! The `repair` report rendered from the protocol's [`RepairStatus`]: what an on-demand
//! repair did, the jobs it could not do, and each replicated table's repair sync times.
//! Returns a `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::{RepairState, RepairStatus, TableSync};

use crate::text::human_size;

/// The summary of a finished (or running) repair, then the tables' sync times.
pub fn render_repair(s: &RepairStatus) -> String {
    let mut out = String::new();
    let what = s.table.as_deref().unwrap_or("every replicated table");
    let state = match s.state {
        RepairState::None => "none has run on this node since it started",
        RepairState::Running => "running",
        RepairState::Done if s.failed.is_empty() => "done",
        RepairState::Done => "done, with failures",
    };
    if s.state != RepairState::None {
        let _ = writeln!(out, "repair {} of {what}: {state}", s.id);
        let rows: [(&str, String); 6] = [
            ("ranges compared", format!("{} of {}", s.jobs_done, s.jobs)),
            ("ranges that differed", s.differed.to_string()),
            ("cells sent", s.cells_sent.to_string()),
            ("cells received", s.cells_received.to_string()),
            (
                "bytes",
                format!(
                    "{} sent, {} received",
                    human_size(s.bytes_sent),
                    human_size(s.bytes_received)
                ),
            ),
            ("time", format!("{:.1} s", s.elapsed_ms as f64 / 1000.0)),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<22}{v}");
        }
        if !s.failed.is_empty() {
            let _ = writeln!(out, "not done ({}; run the repair again):", s.failed.len());
            for f in &s.failed {
                let _ = writeln!(out, "  {f}");
            }
        }
    } else {
        let _ = writeln!(out, "repair: {state}");
    }
    out.push_str(&render_sync_times(&s.tables));
    out.trim_end().to_owned()
}

/// One line per replicated table: its background jobs, how many completed since the node
/// started, and the oldest completion once all have.
pub fn render_sync_times(tables: &[TableSync]) -> String {
    let mut out = String::new();
    if tables.is_empty() {
        out.push_str("no replicated tables on this node\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<24} {:>6} {:>7}  oldest full sync",
        "table", "jobs", "synced"
    );
    for t in tables {
        let oldest = match t.oldest_secs {
            Some(secs) => format!("{} s ago", now_secs().saturating_sub(secs)),
            None => "never (since this node started)".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>7}  {oldest}",
            t.table, t.jobs, t.synced
        );
    }
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_report_names_every_figure_and_each_failure() {
        let s = RepairStatus {
            id: 3,
            table: Some("kv".into()),
            state: RepairState::Done,
            jobs: 10,
            jobs_done: 10,
            differed: 2,
            cells_sent: 5,
            cells_received: 7,
            bytes_sent: 2048,
            bytes_received: 100,
            elapsed_ms: 1500,
            failed: vec!["table kv range (1, 2] with node ab: peer unreachable".into()],
            tables: vec![TableSync {
                table: "kv".into(),
                jobs: 32,
                synced: 31,
                oldest_secs: None,
            }],
        };
        let text = render_repair(&s);
        for want in [
            "repair 3 of kv: done, with failures",
            "10 of 10",
            "ranges that differed  2",
            "cells sent            5",
            "cells received        7",
            "1.5 s",
            "peer unreachable",
            "never (since this node started)",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
