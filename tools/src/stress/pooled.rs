//! The client-library driver: one [`Connection`] of the protocol crate's client per
//! stress connection, with `pipeline` tasks each awaiting one `call` at a time on it, so
//! `pipeline` requests are in flight. It measures what an application using the library
//! sees (per-request encode, channel to the writer task, oneshot back from the reader).
//! Kept beside the raw driver to compare their costs (`--driver client`).
//!
//! The tasks of one connection share its request budget through an atomic counter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sibyl_protocol::client::connection::Connection;
use sibyl_protocol::{ClientError, ClientOptions};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::stress::raw::abort_rest;
use crate::stress::report::RunStats;
use crate::stress::workload::{stream_seed, Workload};
use crate::stress::{classify_error, classify_response, ConnPlan};

/// Connects, waits for `start`, runs `plan` with `plan.pipeline` tasks; returns the stats
/// and, if the connection failed, why.
pub async fn run_connection(
    addr: SocketAddr,
    plan: ConnPlan,
    start: Arc<Barrier>,
) -> (RunStats, Option<String>) {
    let options = ClientOptions {
        request_timeout: plan.timeout,
        connect_timeout: plan.timeout,
        client_name: concat!("sibyl-stress/", env!("CARGO_PKG_VERSION")).to_owned(),
        credentials: plan.credentials.clone(),
        ..ClientOptions::default()
    };
    let connected = Connection::connect(addr, &options).await;
    start.wait().await;
    let conn = match connected {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let mut stats = RunStats::default();
            let mut w = Workload::routed(plan.spec.clone(), plan.seed, plan.route.clone());
            abort_rest(&mut w, &mut stats, plan.requests, "connect");
            return (stats, Some(format!("connect: {e}")));
        }
    };
    let budget = Arc::new(AtomicU64::new(plan.requests));
    let mut tasks = JoinSet::new();
    for t in 0..plan.pipeline {
        let conn = Arc::clone(&conn);
        let budget = Arc::clone(&budget);
        let spec = plan.spec.clone();
        let route = plan.route.clone();
        let seed = stream_seed(plan.seed, t as u64);
        let timeout = plan.timeout;
        tasks.spawn(async move {
            let mut w = Workload::routed(spec, seed, route);
            let mut stats = RunStats::default();
            let mut last_error = None;
            while budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let (kind, request) = w.next_request();
                let sent_at = Instant::now();
                let result = conn.call(&request, timeout).await;
                let latency = sent_at.elapsed();
                match result {
                    Ok(resp) => classify_response(stats.op(kind), kind, Ok(resp), latency),
                    Err(e) => {
                        stats.op(kind).record_errors(classify_error(&e), 1);
                        if matches!(e, ClientError::ConnectionClosed { .. }) {
                            let rest = budget.swap(0, Ordering::Relaxed);
                            abort_rest(&mut w, &mut stats, rest, "aborted");
                            last_error = Some(e.to_string());
                        }
                    }
                }
            }
            (stats, last_error)
        });
    }
    let mut stats = RunStats::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((s, e)) => {
                stats.merge(&s);
                failure = failure.or(e);
            }
            Err(e) => failure = Some(format!("task failed: {e}")),
        }
    }
    (stats, failure)
}
