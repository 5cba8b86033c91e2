//! The `metrics` report: a node's metrics (its METRICS answer, parsed by
//! [`crate::admin::exposition`]) as a table, one row per series. A histogram is one row
//! per label set: its count, mean and the bucket bounds its 50th and 99th percentiles
//! fall under. Returns a `String` (no I/O).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::admin::exposition::{Exposition, MetricFamily, MetricKind};

/// The labels of a sample as `a=x,b=y`, `le` left out; `-` when none.
fn label_text(labels: &[(String, String)]) -> String {
    let text: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != "le")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.join(",")
    }
}

/// A value as written: integers without a fraction.
fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Seconds as milliseconds, three decimals.
fn millis(secs: f64) -> String {
    format!("{:.3} ms", secs * 1e3)
}

/// The smallest bucket bound under which `q` of `total` observations fall.
fn quantile_bound(buckets: &[(f64, f64)], total: f64, q: f64) -> f64 {
    let rank = (total * q).ceil();
    buckets
        .iter()
        .find(|(_, count)| *count >= rank)
        .map_or(f64::INFINITY, |(le, _)| *le)
}

/// One histogram label set: its (bound, cumulative count) buckets, sum and count.
#[derive(Default)]
struct HistogramSeries {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

fn histogram_rows(f: &MetricFamily, rows: &mut Vec<[String; 3]>) {
    let mut sets: BTreeMap<String, HistogramSeries> = BTreeMap::new();
    for s in &f.samples {
        let entry = sets.entry(label_text(&s.labels)).or_default();
        if s.name.ends_with("_bucket") {
            let le = match s.label("le") {
                Some("+Inf") => f64::INFINITY,
                Some(le) => le.parse().unwrap_or(f64::INFINITY),
                None => f64::INFINITY,
            };
            entry.buckets.push((le, s.value));
        } else if s.name.ends_with("_sum") {
            entry.sum = s.value;
        } else if s.name.ends_with("_count") {
            entry.count = s.value;
        }
    }
    for (labels, series) in sets {
        let HistogramSeries {
            mut buckets,
            sum,
            count,
        } = series;
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let summary = if count > 0.0 {
            format!(
                "count {}, mean {}, p50 <= {}, p99 <= {}",
                value_text(count),
                millis(sum / count),
                millis(quantile_bound(&buckets, count, 0.5)),
                millis(quantile_bound(&buckets, count, 0.99)),
            )
        } else {
            "count 0".to_owned()
        };
        rows.push([f.name.clone(), labels, summary]);
    }
}

/// One row per series (histograms summarised), families in the order the node wrote
/// them.
pub fn render_metrics(e: &Exposition) -> String {
    let mut rows: Vec<[String; 3]> = vec![["metric".into(), "labels".into(), "value".into()]];
    for f in &e.families {
        if f.kind == MetricKind::Histogram {
            histogram_rows(f, &mut rows);
            continue;
        }
        for s in &f.samples {
            rows.push([s.name.clone(), label_text(&s.labels), value_text(s.value)]);
        }
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    let mut out = String::new();
    for [name, labels, value] in &rows {
        let _ = writeln!(out, "{name:<w0$}  {labels:<w1$}  {value}");
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::exposition::parse;

    #[test]
    fn metrics_report_lists_series_and_summarises_histograms() {
        let text = "\
# TYPE sibyl_requests_total counter
sibyl_requests_total{op=\"GET\",consistency=\"one\"} 4
# TYPE sibyl_hints_pending gauge
sibyl_hints_pending 2
# TYPE lat histogram
lat_bucket{op=\"GET\",le=\"0.001\"} 3
lat_bucket{op=\"GET\",le=\"0.01\"} 4
lat_bucket{op=\"GET\",le=\"+Inf\"} 4
lat_sum{op=\"GET\"} 0.008
lat_count{op=\"GET\"} 4
";
        let out = render_metrics(&parse(text).unwrap());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].starts_with("sibyl_requests_total"), "{out}");
        assert!(lines[1].contains("op=GET,consistency=one"), "{out}");
        assert!(lines[1].ends_with(" 4"), "{out}");
        assert!(lines[2].contains("sibyl_hints_pending") && lines[2].ends_with(" 2"));
        assert!(
            lines[3].contains("count 4, mean 2.000 ms, p50 <= 1.000 ms, p99 <= 10.000 ms"),
            "{out}"
        );
    }
}
