//! Results of a stress run: per-op counters and an HDR histogram of latencies
//! ([`OpStats`], one per connection or task, merged at the end), and the report printed as
//! text or as one JSON object per line per op ([`StressReport`]).
//!
//! Latencies are recorded in microseconds (1 µs .. 60 s, 3 significant digits) for
//! successful requests only, and throughput counts successful requests only, so a run whose
//! requests fail fast does not look fast. A get of a missing key is a success
//! (`not_found`), not an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::stress::workload::OpKind;

/// Largest latency the histogram tracks exactly (µs); larger ones are clamped to it.
const MAX_TRACKED_MICROS: u64 = 60_000_000;
/// Significant decimal digits of the histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Counters and latency histogram of one op kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of successful requests, µs.
    pub latency_us: Histogram<u64>,
    /// Successful requests.
    pub ok: u64,
    /// Gets that found the row.
    pub found: u64,
    /// Gets of a missing row (successes).
    pub not_found: u64,
    /// Failed requests by error type (`overloaded`, `timeout`, `connection`, ...).
    pub errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

impl OpStats {
    /// Empty stats.
    pub fn new() -> OpStats {
        OpStats {
            // The bounds are constants that satisfy the constructor's rules (low >= 1,
            // high >= 2 * low, sigfig <= 5), so this cannot fail.
            latency_us: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, SIGNIFICANT_DIGITS)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            ok: 0,
            found: 0,
            not_found: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records a success that took `latency`.
    pub fn record_ok(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(us.clamp(1, MAX_TRACKED_MICROS));
        self.ok += 1;
    }

    /// Records `n` failures of type `kind`.
    pub fn record_errors(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_insert(0) += n;
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests attempted (successes and failures).
    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so `add` cannot fail; clamp-record as a fallback.
        if self.latency_us.add(&other.latency_us).is_err() {
            for v in other.latency_us.iter_recorded() {
                self.latency_us
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.ok += other.ok;
        self.found += other.found;
        self.not_found += other.not_found;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += n;
        }
    }

    /// The latency at `quantile` in milliseconds (0 when nothing was recorded).
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.max() as f64 / 1000.0
    }

    /// The mean latency in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.mean() / 1000.0
    }
}

/// Per-op stats of one connection or task.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Stats by op kind.
    pub by_op: BTreeMap<OpKind, OpStats>,
}

impl RunStats {
    /// The stats of `kind`, created on first use.
    pub fn op(&mut self, kind: OpKind) -> &mut OpStats {
        self.by_op.entry(kind).or_default()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &RunStats) {
        for (k, s) in &other.by_op {
            self.op(*k).merge(s);
        }
    }
}

/// The parameters echoed in a report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Target address.
    pub host: String,
    /// Table name.
    pub table: String,
    /// `put`, `get` or `mixed`.
    pub mode: String,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Requests in total.
    pub requests: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Key space.
    pub keyspace: u64,
    /// The seed (replay with `--seed`).
    pub seed: u64,
    /// Which driver ran the connections.
    pub driver: String,
    /// How connections were spread (`token` or `round-robin`).
    pub routing: String,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct StressReport {
    /// What ran.
    pub info: RunInfo,
    /// Wall-clock time from the start signal to the last response.
    pub elapsed: Duration,
    /// Merged stats.
    pub stats: RunStats,
}

impl StressReport {
    /// Successful requests per second of `s` over the run.
    fn ops_per_sec(&self, s: &OpStats) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            s.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Stats of every op, plus a `mixed` total when more than one op ran.
    fn lines(&self) -> Vec<(String, OpStats)> {
        let mut out: Vec<(String, OpStats)> = self
            .stats
            .by_op
            .iter()
            .map(|(k, s)| (k.name().to_owned(), s.clone()))
            .collect();
        if out.len() > 1 {
            let mut all = OpStats::new();
            for (_, s) in &out {
                all.merge(s);
            }
            out.push(("mixed".to_owned(), all));
        }
        out
    }

    /// Total failures over every op.
    pub fn total_errors(&self) -> u64 {
        self.stats.by_op.values().map(OpStats::error_count).sum()
    }

    /// One JSON object per op (and a `mixed` total), each on its own line.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let i = &self.info;
        for (op, s) in self.lines() {
            let mut v = json!({
                "op": op,
                "ops_per_sec": round3(self.ops_per_sec(&s)),
                "p50_ms": s.quantile_ms(0.50),
                "p99_ms": s.quantile_ms(0.99),
                "p999_ms": s.quantile_ms(0.999),
                "max_ms": s.max_ms(),
                "mean_ms": round3(s.mean_ms()),
                "errors": s.error_count(),
                "errors_by_type": s.errors,
                "requests": s.requests(),
                "ok": s.ok,
                "seconds": round3(self.elapsed.as_secs_f64()),
                "connections": i.connections,
                "pipeline": i.pipeline,
                "value_size": i.value_size,
                "keyspace": i.keyspace,
                "seed": i.seed,
                "host": i.host,
                "table": i.table,
                "driver": i.driver,
                "routing": i.routing,
            });
            if op != "put" {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("found".into(), json!(s.found));
                    obj.insert("not_found".into(), json!(s.not_found));
                }
            }
            let _ = writeln!(out, "{v}");
        }
        out
    }

    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64();
        for (op, s) in self.lines() {
            let _ = writeln!(
                out,
                "{op}: {} ok, {} errors in {secs:.3} s: {:.0} ops/s",
                s.ok,
                s.error_count(),
                self.ops_per_sec(&s)
            );
            let _ = writeln!(
                out,
                "  latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                s.quantile_ms(0.50),
                s.quantile_ms(0.99),
                s.quantile_ms(0.999),
                s.max_ms(),
                s.mean_ms()
            );
            if op != "put" && s.ok > 0 {
                let _ = writeln!(out, "  found {}, not found {}", s.found, s.not_found);
            }
            if !s.errors.is_empty() {
                let parts: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(out, "  errors: {}", parts.join(", "));
            }
        }
        out
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stats: RunStats) -> StressReport {
        StressReport {
            info: RunInfo {
                host: "h".into(),
                table: "t".into(),
                mode: "put".into(),
                connections: 1,
                pipeline: 1,
                requests: 4,
                value_size: 100,
                keyspace: 10,
                seed: 5,
                driver: "raw".into(),
                routing: "token".into(),
            },
            elapsed: Duration::from_secs(2),
            stats,
        }
    }

    #[test]
    fn op_stats_merge_adds_counts_and_latencies() {
        let mut a = OpStats::new();
        a.record_ok(Duration::from_micros(100));
        a.record_errors("timeout", 2);
        let mut b = OpStats::new();
        b.record_ok(Duration::from_micros(300));
        b.record_errors("timeout", 1);
        a.merge(&b);
        assert_eq!(a.ok, 2);
        assert_eq!(a.errors["timeout"], 3);
        assert_eq!(a.latency_us.len(), 2);
        assert!((a.max_ms() - 0.3).abs() < 0.001);
    }

    #[test]
    fn json_lines_have_contract_fields() {
        let mut s = RunStats::default();
        for us in [100, 200, 300, 400] {
            s.op(OpKind::Put).record_ok(Duration::from_micros(us));
        }
        let text = report(s).to_json_lines();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["op"], "put");
        assert_eq!(v["ops_per_sec"], 2.0);
        assert_eq!(v["errors"], 0);
        for f in [
            "p50_ms", "p99_ms", "p999_ms", "max_ms", "requests", "seconds",
        ] {
            assert!(v[f].is_number(), "{f} in {v}");
        }
        assert!(v["errors_by_type"].is_object());
    }

    #[test]
    fn json_lines_mixed_adds_total_line() {
        let mut s = RunStats::default();
        s.op(OpKind::Put).record_ok(Duration::from_micros(10));
        s.op(OpKind::Get).record_ok(Duration::from_micros(10));
        let ops: Vec<String> = report(s)
            .to_json_lines()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["op"].to_string())
            .collect();
        assert_eq!(ops, vec!["\"put\"", "\"get\"", "\"mixed\""]);
    }

    #[test]
    fn throughput_counts_successes_only() {
        let mut s = RunStats::default();
        s.op(OpKind::Get).record_ok(Duration::from_micros(10));
        s.op(OpKind::Get).record_errors("overloaded", 9);
        let r = report(s);
        let v: serde_json::Value = serde_json::from_str(r.to_json_lines().trim()).unwrap();
        assert_eq!(v["ops_per_sec"], 0.5);
        assert_eq!(v["errors"], 9);
        assert_eq!(v["errors_by_type"]["overloaded"], 9);
    }
}
