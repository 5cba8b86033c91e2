//! The node's metrics endpoint (`--metrics-listen`) against a real node: the text parses
//! as Prometheus text (with the strict parser `sibyl-admin metrics` uses) and its
//! counters move by the traffic sent; the per-table request figures `tablestats` reports
//! from the same metrics.

use std::io::{Read, Write};
use std::net::TcpStream;

use sibyl_tools::admin::exposition::{parse, Exposition};

use std::time::{Duration, Instant};

use crate::node::{admin, cli, TestCluster, TestNode};

/// `GET /metrics` over HTTP/1.1; the parsed body (status 200 and the content type
/// checked).
fn scrape(addr: &str) -> Exposition {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(body).unwrap_or_else(|e| panic!("malformed metrics ({e}):\n{body}"))
}

#[test]
fn metrics_endpoint_parses_and_its_counters_move_with_traffic() {
    let metrics_addr = crate::launcher::free_addr().to_string();
    let node = TestNode::start_with(&["--metrics-listen", metrics_addr.as_str()]);
    cli(&node, "create table kv rf=1").ok();
    let before = scrape(&metrics_addr);
    let inserts = |e: &Exposition| e.sum("sibyl_requests_total", &[("op", "INSERT")]);
    let gets = |e: &Exposition| {
        e.sum(
            "sibyl_requests_total",
            &[("op", "GET"), ("consistency", "one")],
        )
    };
    let errors = |e: &Exposition| {
        e.value("sibyl_request_errors_total", &[("kind", "UNKNOWN_TABLE")])
            .expect("an UNKNOWN_TABLE series")
    };
    let fsyncs = |e: &Exposition| e.value("sibyl_commitlog_fsyncs_total", &[]).unwrap();

    // 5 inserts, 3 reads at ONE, 1 read of a missing table, then a flush.
    cli(
        &node,
        "put kv a c=1; put kv b c=2; put kv c c=3; put kv d c=4; put kv e c=5; \
         consistency one; get kv a; get kv b; get kv zz",
    )
    .ok();
    let missing = cli(&node, "get nosuch a");
    assert!(!missing.success, "{}", missing.stdout);
    admin(&node, &["flush", "kv"]).ok();

    let after = scrape(&metrics_addr);
    assert_eq!(inserts(&after) - inserts(&before), 5.0);
    assert_eq!(gets(&after) - gets(&before), 3.0);
    assert_eq!(errors(&after) - errors(&before), 1.0);
    assert!(
        fsyncs(&after) > fsyncs(&before),
        "a flush syncs the commit log"
    );
    let latency = after
        .value(
            "sibyl_request_duration_seconds_count",
            &[("op", "INSERT"), ("consistency", "default")],
        )
        .unwrap();
    assert_eq!(latency, inserts(&after));
    assert_eq!(
        after.value("sibyl_flushes_total", &[("table", "kv")]),
        Some(1.0)
    );
    assert_eq!(
        after.value("sibyl_memtable_bytes", &[("table", "kv")]),
        Some(0.0)
    );
    assert!(
        after
            .value("sibyl_sstables", &[("table", "kv"), ("level", "0")])
            .unwrap()
            >= 1.0
    );

    // The METRICS answer is the same registry: `sibyl-admin metrics --json` sees the
    // inserts too.
    let out = admin(&node, &["--json", "metrics"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let requests = v["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "sibyl_requests_total")
        .unwrap();
    let json_inserts: f64 = requests["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["labels"]["op"] == "INSERT")
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(json_inserts, inserts(&after));
    assert_eq!(
        after.value(
            "sibyl_table_request_duration_seconds_count",
            &[("table", "kv"), ("access", "write")]
        ),
        Some(5.0)
    );
}

#[test]
fn tablestats_reports_the_tables_reads_writes_and_siblings() {
    let node = TestNode::start();
    // Two blind writes of one column are concurrent: a read returns both as siblings.
    cli(
        &node,
        "create table kv rf=1; put kv a c=1; put kv s c=1; put kv s c=2; \
         get kv a; get kv s; get kv none",
    )
    .ok();
    let out = admin(&node, &["--json", "tablestats", "kv"]).ok();
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(s["writes"], 3, "{s}");
    assert_eq!(s["reads"], 3, "{s}");
    assert_eq!(s["cells_read"], 2, "{s}");
    assert_eq!(s["cells_with_siblings"], 1, "{s}");
    assert_eq!(s["max_siblings"], 2, "{s}");
    assert!(s["read_p50_micros"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["read_p99_micros"].as_u64() >= s["read_p50_micros"].as_u64(),
        "{s}"
    );
    let text = admin(&node, &["tablestats", "kv"]).ok().stdout;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_owned()
    };
    assert!(line("reads").contains(" 3 (p50 <= "), "{text}");
    assert!(line("writes").contains(" 3 (p50 <= "), "{text}");
    assert!(
        line("cells with siblings").ends_with("1 (most in one cell: 2)"),
        "{text}"
    );
    assert!(line("bloom false positives").contains("lookups"), "{text}");
}

/// Polls `scrape` of `addr` until `cond` holds (bounded by a generous deadline, not a
/// timing assertion); the scrape that satisfied it.
fn scrape_until(addr: &str, what: &str, cond: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = scrape(addr);
        if cond(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_show_a_peer_down_its_phi_and_the_hints_kept_for_it() {
    let metrics: Vec<String> = (0..2)
        .map(|_| crate::launcher::free_addr().to_string())
        .collect();
    let mut cluster = TestCluster::start_with(3, |i| match metrics.get(i) {
        Some(addr) => vec!["--metrics-listen".to_owned(), addr.clone()],
        None => Vec::new(),
    });
    let up = |e: &Exposition| e.value("sibyl_gossip_peers", &[("state", "up")]);
    let down = |e: &Exposition| e.value("sibyl_gossip_peers", &[("state", "down")]);
    let before = scrape(&metrics[0]);
    assert_eq!((up(&before), down(&before)), (Some(2.0), Some(0.0)));
    cli(&cluster.nodes[0], "create table kv rf=3").ok();
    for n in &cluster.nodes {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !admin(n, &["tablestats", "kv"]).success {
            assert!(
                Instant::now() < deadline,
                "the table never reached {}",
                n.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let c = cluster.nodes.pop().expect("three nodes");
    let c_id = {
        let out = admin(&c, &["--json", "status"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == c.addr.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    drop(c); // killed by its own PID
    let seen = scrape_until(&metrics[0], "the killed peer down", |e| {
        down(e) == Some(1.0)
    });
    assert_eq!(up(&seen), Some(1.0));
    let phi = seen
        .value("sibyl_gossip_phi", &[("peer", c_id.as_str())])
        .expect("a phi series for the killed peer");
    assert!(phi > 8.0, "phi {phi} of a peer convicted down");

    let hints = |e: &[Exposition], name: &str| e.iter().map(|x| x.sum(name, &[])).sum::<f64>();
    let scrapes = || metrics.iter().map(|m| scrape(m)).collect::<Vec<_>>();
    let before = scrapes();
    // Ten writes while a replica is down: the coordinator keeps a hint for each (a
    // cluster of rf nodes has no stand-in outside the preference list).
    let writes: Vec<String> = (0..10).map(|i| format!("put kv k{i} c={i}")).collect();
    cli(
        &cluster.nodes[0],
        &format!("consistency one; {}", writes.join("; ")),
    )
    .ok();
    // The hints are stored by tasks of their own after the writes answered: poll.
    let mut after = scrapes();
    let deadline = Instant::now() + Duration::from_secs(60);
    while hints(&after, "sibyl_hints_stored_total") - hints(&before, "sibyl_hints_stored_total")
        < 10.0
    {
        assert!(Instant::now() < deadline, "the ten hints were never stored");
        std::thread::sleep(Duration::from_millis(100));
        after = scrapes();
    }
    assert_eq!(
        hints(&after, "sibyl_coordinator_hints_total")
            - hints(&before, "sibyl_coordinator_hints_total"),
        10.0
    );
    assert_eq!(
        hints(&after, "sibyl_hints_stored_total") - hints(&before, "sibyl_hints_stored_total"),
        10.0
    );
    assert_eq!(
        hints(&after, "sibyl_hints_pending") - hints(&before, "sibyl_hints_pending"),
        10.0
    );
    assert!(hints(&after, "sibyl_hints_pending_bytes") > 0.0);
}

/// A blind write that would give a cell more siblings than `--max-siblings` is refused
/// with TOO_MANY_SIBLINGS, and counted.
#[test]
fn metrics_count_writes_refused_at_the_sibling_limit() {
    let metrics_addr = crate::launcher::free_addr().to_string();
    let node = TestNode::start_with(&[
        "--metrics-listen",
        metrics_addr.as_str(),
        "--max-siblings",
        "2",
    ]);
    cli(&node, "create table kv rf=1").ok();
    let refused = |e: &Exposition| e.sum("sibyl_sibling_limit_rejections_total", &[]);
    let errors = |e: &Exposition| {
        e.sum(
            "sibyl_request_errors_total",
            &[("kind", "TOO_MANY_SIBLINGS")],
        )
    };
    let before = scrape(&metrics_addr);
    // Two blind writes of one cell are concurrent: two siblings, the limit.
    cli(&node, "put kv s c=1; put kv s c=2").ok();
    assert_eq!(refused(&scrape(&metrics_addr)), refused(&before));
    let third = cli(&node, "put kv s c=3");
    assert!(
        !third.success,
        "a third sibling is refused: {}",
        third.stdout
    );
    let after = scrape(&metrics_addr);
    assert_eq!(refused(&after) - refused(&before), 1.0);
    assert_eq!(errors(&after) - errors(&before), 1.0);
}
