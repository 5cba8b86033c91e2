//! The final report of a load: text for people, one JSON object for scripts (`--json`).
//!
//! Counts (`rows`, `loaded`, `cells`, `bytes`, `rejected`) cover the whole load, earlier
//! runs included when it was resumed; `seconds` and the rates cover this run only (rows,
//! cells and bytes finished in this run over its time).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::item::RejectKind;
use crate::load::tracker::Totals;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every item is finished.
    Complete,
    /// Stopped by SIGINT or SIGTERM; `--resume` continues.
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// How it ended.
    pub ending: Ending,
    /// Totals at the end (whole load).
    pub totals: Totals,
    /// Totals when this run started (zero unless resumed).
    pub at_start: Totals,
    /// This run's time.
    pub elapsed: Duration,
    /// Retried requests by error kind.
    pub retries: BTreeMap<String, u64>,
    /// The rejects file.
    pub rejects_path: String,
    /// The checkpoint file, if kept.
    pub checkpoint_path: Option<String>,
    /// Whether this run resumed an earlier one.
    pub resumed: bool,
    /// Whether the input was gzip.
    pub gzip: bool,
}

impl LoadReport {
    fn rate(&self, now: u64, then: u64) -> f64 {
        now.saturating_sub(then) as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// Rows finished per second in this run.
    pub fn rows_per_sec(&self) -> f64 {
        self.rate(self.totals.rows_done, self.at_start.rows_done)
    }

    /// Cells written per second in this run.
    pub fn cells_per_sec(&self) -> f64 {
        self.rate(self.totals.cells, self.at_start.cells)
    }

    /// Bytes written per second in this run.
    pub fn bytes_per_sec(&self) -> f64 {
        self.rate(self.totals.bytes, self.at_start.bytes)
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let t = &self.totals;
        let mut out = String::new();
        let state = match self.ending {
            Ending::Complete => "complete",
            Ending::Interrupted => "interrupted (continue with --resume)",
        };
        out.push_str(&format!(
            "load       {state}{}\n",
            if self.resumed { ", resumed" } else { "" }
        ));
        out.push_str(&format!(
            "rows       {} ({} loaded, {} rejected)\n",
            t.rows_done,
            t.loaded_rows,
            t.rejected()
        ));
        out.push_str(&format!("cells      {}\n", t.cells));
        out.push_str(&format!(
            "bytes      {} ({})\n",
            t.bytes,
            human_bytes(t.bytes as f64)
        ));
        out.push_str(&format!("time       {:.2} s\n", self.elapsed.as_secs_f64()));
        out.push_str(&format!(
            "rate       {:.0} rows/s, {:.0} cells/s, {}/s\n",
            self.rows_per_sec(),
            self.cells_per_sec(),
            human_bytes(self.bytes_per_sec())
        ));
        let kinds: Vec<String> = RejectKind::ALL
            .iter()
            .filter_map(|k| t.rejects.get(k).map(|n| format!("{} {n}", k.name())))
            .collect();
        if !kinds.is_empty() {
            out.push_str(&format!(
                "rejected   {} -> {}\n",
                kinds.join(", "),
                self.rejects_path
            ));
        }
        if !self.retries.is_empty() {
            let r: Vec<String> = self
                .retries
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.push_str(&format!("retries    {}\n", r.join(", ")));
        }
        out
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let t = &self.totals;
        let rejects: serde_json::Map<String, serde_json::Value> = t
            .rejects
            .iter()
            .map(|(k, n)| (k.name().to_owned(), (*n).into()))
            .collect();
        serde_json::json!({
            "complete": self.ending == Ending::Complete,
            "resumed": self.resumed,
            "gzip": self.gzip,
            "rows": t.rows_done,
            "loaded": t.loaded_rows,
            "cells": t.cells,
            "bytes": t.bytes,
            "rejected": t.rejected(),
            "rejects_by_kind": rejects,
            "retries_by_kind": self.retries,
            "seconds": self.elapsed.as_secs_f64(),
            "rows_per_sec": self.rows_per_sec(),
            "cells_per_sec": self.cells_per_sec(),
            "bytes_per_sec": self.bytes_per_sec(),
            "rejects_file": self.rejects_path,
            "checkpoint": self.checkpoint_path,
        })
    }
}

/// `1.5 MB` (powers of 1000).
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b.max(0.0);
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{v:.0} {name}")
    } else {
        format!("{v:.1} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_whole_load_and_rates_this_run() {
        let report = LoadReport {
            ending: Ending::Complete,
            totals: Totals {
                rows_done: 300,
                loaded_rows: 298,
                cells: 1490,
                bytes: 30_000,
                rejects: BTreeMap::from([(RejectKind::Oversize, 2)]),
            },
            at_start: Totals {
                rows_done: 100,
                cells: 490,
                ..Totals::default()
            },
            elapsed: Duration::from_secs(2),
            retries: BTreeMap::new(),
            rejects_path: "r.jsonl".into(),
            checkpoint_path: None,
            resumed: true,
            gzip: false,
        };
        assert_eq!(report.rows_per_sec(), 100.0);
        assert_eq!(report.cells_per_sec(), 500.0);
        let j = report.json();
        assert_eq!(j["rejects_by_kind"]["oversize"], 2);
        assert_eq!(j["rows"], 300);
        assert!(
            report.text().contains("rejected   oversize 2 -> r.jsonl"),
            "{}",
            report.text()
        );
        assert_eq!(human_bytes(1_500_000.0), "1.5 MB");
    }
}
