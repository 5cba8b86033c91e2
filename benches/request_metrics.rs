//! What counting a request costs (a benchmark, not a test): `RequestMetrics::kind_of`
//! plus `record` for an INSERT of a known table, the work a client connection adds per
//! request, on one thread and on two threads recording into the same metrics at once
//! (the contended case: the same histogram's atomics). Also the time to encode a scrape
//! of those metrics. Run: `cargo bench --bench request_metrics` (release); `RECORDS`
//! overrides the count per thread.

#![allow(clippy::unwrap_used)] // a benchmark: a failure is a panic with its message

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl::metrics::{Metrics, Outcome, RequestMetrics};
use sibyl_protocol::{ColumnWrite, Consistency, Request, RowInsert};

fn insert() -> Request {
    Request::Insert {
        consistency: Some(Consistency::QUORUM),
        insert: RowInsert {
            table: "users".into(),
            key: Bytes::from_static(b"alice"),
            ttl_secs: None,
            timestamp_micros: None,
            write_id: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"name"),
                value: Bytes::from_static(b"Alice"),
                context: Bytes::new(),
            }],
        },
    }
}

/// Nanoseconds per request with `threads` threads recording `n` requests each.
fn run(metrics: &Arc<RequestMetrics>, threads: usize, n: usize) -> f64 {
    let request = insert();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let m = Arc::clone(metrics);
            let r = request.clone();
            s.spawn(move || {
                for i in 0..n {
                    let kind = m.kind_of(&r);
                    m.record(
                        &kind,
                        Duration::from_micros((i % 5000) as u64),
                        Outcome::Done,
                    );
                }
            });
        }
    });
    started.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let metrics = Arc::new(RequestMetrics::new());
    run(&metrics, 1, n / 10); // warm-up: the table's entry and the slot exist
    for round in 1..=3 {
        let one = run(&metrics, 1, n);
        let two = run(&metrics, 2, n);
        println!(
            "round {round}: {one:.1} ns per request on 1 thread, {two:.1} ns per request \
             per thread on 2 threads"
        );
    }
    let registry = Metrics::new(Arc::clone(&metrics), None);
    let started = Instant::now();
    let text = registry.encode();
    println!(
        "scrape of the request metrics: {} bytes encoded in {:?}",
        text.len(),
        started.elapsed()
    );
}
