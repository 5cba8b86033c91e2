//! The `streams` report rendered from the protocol's [`StreamsReport`]: the node's
//! throughput cap, one line per stream (range, peer, state, bytes, rate), and totals per
//! state. Returns a `String` (no I/O).

use std::fmt::Write as _;

use sibyl_protocol::StreamsReport;

use crate::text::human_size;

/// The cap, one line per stream not done (every stream with `all`), and a closing line
/// with the count of streams per state and the bytes applied.
pub fn render_streams(report: &StreamsReport, all: bool) -> String {
    let mut out = String::new();
    let cap = if report.throughput == 0 {
        "unlimited".to_owned()
    } else {
        format!("{}/s", human_size(report.throughput))
    };
    let _ = writeln!(out, "stream throughput cap: {cap}");
    if report.streams.is_empty() {
        out.push_str("no streams on this node");
        return out;
    }
    let shown: Vec<_> = report
        .streams
        .iter()
        .filter(|s| all || s.state != "done")
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:<42} {:<18} {:<9} {:>10} {:>10} {:>10} {:>10}",
            "operation",
            "table",
            "range (start, end]",
            "peer",
            "state",
            "bytes",
            "left",
            "cells",
            "rate"
        );
    }
    for s in &shown {
        let range = format!("({}, {}]", s.range_start, s.range_end);
        let peer = if s.peer.is_empty() { "-" } else { &s.peer };
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:<42} {:<18} {:<9} {:>10} {:>10} {:>10} {:>10}{}",
            s.operation,
            s.table,
            range,
            peer,
            s.state,
            human_size(s.bytes),
            s.left().map_or_else(|| "?".to_owned(), human_size),
            s.cells,
            format!("{}/s", human_size(s.rate)),
            if s.error.is_empty() {
                String::new()
            } else {
                format!("  ({})", s.error)
            }
        );
    }
    let count = |state: &str| report.streams.iter().filter(|s| s.state == state).count();
    let bytes: u64 = report.streams.iter().map(|s| s.bytes).sum();
    let open = report.streams.iter().filter(|s| s.state != "done");
    let left: u64 = open.clone().filter_map(|s| s.left()).sum();
    let unknown = open.filter(|s| s.left().is_none()).count();
    let _ = write!(
        out,
        "{} streams: {} done, {} running, {} retrying, {} queued; {} applied, about {} left{}",
        report.streams.len(),
        count("done"),
        count("running"),
        count("retrying"),
        count("queued"),
        human_size(bytes),
        human_size(left),
        if unknown > 0 {
            format!(" (+{unknown} not sized yet)")
        } else {
            String::new()
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::StreamEntry;

    #[test]
    fn streams_report_shows_open_streams_and_the_totals() {
        let entry = |state: &str, bytes| StreamEntry {
            operation: "bootstrap".into(),
            table: "kv".into(),
            range_start: "-5".into(),
            range_end: "10".into(),
            peer: "00000000000000ab".into(),
            state: state.into(),
            bytes,
            cells: 3,
            run_bytes: 512,
            rate: 2048,
            error: String::new(),
            total: 3072,
        };
        let report = StreamsReport {
            throughput: 64 << 20,
            streams: vec![entry("done", 1024), entry("running", 2048)],
        };
        let text = render_streams(&report, false);
        assert!(text.contains("cap: 64.0 MiB/s"), "{text}");
        assert!(text.contains("(-5, 10]"), "{text}");
        assert_eq!(
            text.matches("bootstrap").count(),
            1,
            "done streams hidden: {text}"
        );
        assert!(text.contains("2 streams: 1 done, 1 running"), "{text}");
        assert!(text.contains("about 1.0 KiB left"), "{text}");
        assert_eq!(
            render_streams(&report, true).matches("bootstrap").count(),
            2
        );
        let empty = render_streams(&StreamsReport::default(), false);
        assert!(
            empty.contains("unlimited") && empty.contains("no streams"),
            "{empty}"
        );
    }
}
