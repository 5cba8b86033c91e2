//! `sibyl-admin` against a real node.

use std::time::{Duration, Instant};

use crate::node::{admin, cli, run_tool, TestNode};

/// The `status` line of `node` split on whitespace.
fn status_fields(node: &TestNode) -> Vec<String> {
    let out = admin(node, &["status"]).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&node.addr))
        .unwrap_or_else(|| panic!("no line for {} in:\n{}", node.addr, out.stdout));
    line.split_whitespace().map(str::to_owned).collect()
}

/// Polls `cond` until it holds (bounded by a generous deadline, not a timing assertion).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admin_status_shows_node_up_normal() {
    let node = TestNode::start();
    let out = run_tool(
        env!("CARGO_BIN_EXE_sibyl-admin"),
        &["--host", &node.addr, "status"],
        "",
    )
    .ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&node.addr))
        .unwrap_or_else(|| panic!("no line for {} in:\n{}", node.addr, out.stdout));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..3], ["up", "normal"], "{line}");
    // fields 3 and 4 are the load (`0 B`, `1.2 MiB`).
    assert_eq!(fields[8], "100.0%", "{line}");
}

#[test]
fn admin_status_has_a_load_column_that_grows_after_a_flush() {
    let node = TestNode::start();
    let header = admin(&node, &["status"]).ok().stdout;
    assert!(
        header.lines().next().is_some_and(|h| h.contains(" load ")),
        "{header}"
    );
    cli(
        &node,
        "create table t rf=1; put t k1 c=\"v1\"; put t k2 c=\"v2\"",
    )
    .ok();
    admin(&node, &["flush", "t"]).ok();
    wait_for("a non-zero load in status", || {
        let f = status_fields(&node);
        f.get(3).is_some_and(|n| n != "0") && f.get(4).is_some_and(|u| u.ends_with('B'))
    });
}

#[test]
fn admin_flush_then_tablestats_shows_an_sstable() {
    let node = TestNode::start();
    cli(
        &node,
        "create table t rf=1; put t a c=\"1\"; put t b c=\"2\"; put t c c=\"3\"",
    )
    .ok();
    let flushed = admin(&node, &["flush", "t"]).ok();
    assert_eq!(flushed.stdout.trim(), "flushed: t");
    let stats = admin(&node, &["tablestats", "t"]).ok().stdout;
    let value = |name: &str| -> u64 {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in:\n{stats}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(value("sstables") >= 1, "{stats}");
    assert_eq!(value("sstable entries"), 3, "{stats}");
    assert_eq!(value("memtable entries"), 0, "{stats}");
}

#[test]
fn admin_compact_leaves_one_sstable() {
    let node = TestNode::start();
    cli(&node, "create table t rf=1; put t a c=\"1\"").ok();
    admin(&node, &["flush", "t"]).ok();
    cli(&node, "put t b c=\"2\"").ok();
    admin(&node, &["flush"]).ok();
    let out = admin(&node, &["compact", "t"]).ok().stdout;
    assert!(out.starts_with("compacted t"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["sstables:", "1"]),
        "{out}"
    );
}

#[test]
fn admin_tablestats_unknown_table_fails() {
    let node = TestNode::start();
    let out = admin(&node, &["tablestats", "nope"]);
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}

#[test]
fn admin_removenode_unknown_node_fails_with_reason() {
    let node = TestNode::start();
    let out = admin(&node, &["removenode", "00000000000000ab"]);
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stderr.contains("unknown node 00000000000000ab"),
        "{}",
        out.stderr
    );
}

#[test]
fn admin_decommission_leaves_the_node_left_and_serving() {
    let node = TestNode::start();
    let out = admin(&node, &["decommission"]).ok();
    assert!(out.stdout.contains("left"), "{}", out.stdout);
    let fields = status_fields(&node);
    assert_eq!(fields[1..3], ["up", "left"], "{fields:?}");
}

#[test]
fn admin_decommission_of_the_last_replica_is_refused_and_changes_nothing() {
    let node = TestNode::start();
    cli(&node, "create table kv rf=1").ok();
    let out = admin(&node, &["decommission"]);
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stderr.contains("rf 1") && out.stderr.contains("add a node first"),
        "{}",
        out.stderr
    );
    let fields = status_fields(&node);
    assert_eq!(fields[1..3], ["up", "normal"], "{fields:?}");
}

#[test]
fn admin_cleanup_reports_each_table_and_refuses_an_unknown_one() {
    let node = TestNode::start();
    cli(&node, "create table kv rf=1; put kv a c=1; put kv b c=2").ok();
    // A lone node replicates every range: nothing to drop, and the data stays.
    let out = admin(&node, &["cleanup"]).ok();
    let kv = out
        .stdout
        .lines()
        .find(|l| l.starts_with("kv "))
        .unwrap_or_else(|| panic!("no kv line:\n{}", out.stdout));
    assert_eq!(kv.split_whitespace().nth(1), Some("0"), "{}", out.stdout);
    assert!(out.stdout.contains("total: 0 entries"), "{}", out.stdout);
    let got = cli(&node, "get kv a").ok();
    assert!(got.stdout.contains("\"1\""), "{}", got.stdout);
    let unknown = admin(&node, &["cleanup", "nope"]);
    assert!(!unknown.success, "{}", unknown.stdout);
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);
}

#[test]
fn admin_ring_lists_node_tokens() {
    let node = TestNode::start();
    let out = run_tool(
        env!("CARGO_BIN_EXE_sibyl-admin"),
        &["--host", &node.addr, "ring"],
        "",
    )
    .ok();
    let token_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(&node.addr))
        .collect();
    assert!(!token_lines.is_empty(), "{}", out.stdout);
    let tokens: Vec<i128> = token_lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let mut sorted = tokens.clone();
    sorted.sort();
    assert_eq!(tokens, sorted, "ring order");
}

#[test]
fn admin_repair_runs_reports_and_refuses_an_unknown_table() {
    let node = TestNode::start();
    cli(&node, "create table kv rf=3").ok();
    // One node: every range is its own, with no other replica to compare.
    let out = admin(&node, &["repair"]).ok();
    assert!(
        out.stdout.contains("of every replicated table: done") && out.stdout.contains("kv"),
        "{}",
        out.stdout
    );
    let status = admin(&node, &["repair", "--status"]).ok();
    assert!(
        status.stdout.contains("repair 1 of every replicated table"),
        "{}",
        status.stdout
    );
    let hints = admin(&node, &["hints"]).ok();
    assert!(
        hints.stdout.contains("no hints pending or dropped"),
        "{}",
        hints.stdout
    );
    let bad = admin(&node, &["repair", "nosuch"]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("not a replicated table"),
        "{}",
        bad.stderr
    );
}

/// `sibyl-admin --json ARGS` on `node`, parsed.
fn admin_json(node: &TestNode, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = admin(node, &all).ok();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{}", out.stdout))
}

#[test]
fn admin_every_command_answers_in_both_outputs_on_a_three_node_cluster() {
    let cluster = crate::node::TestCluster::start(3);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];

    // status: one row per node, each up and normal, ownership adding up to the ring.
    let text = admin(b, &["status"]).ok().stdout;
    for n in [a, b, c] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&n.addr))
            .unwrap_or_else(|| panic!("no row for {}:\n{text}", n.addr));
        assert!(line.contains(" up ") && line.contains(" normal "), "{line}");
    }
    let status = admin_json(b, &["status"]);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status}");
    let owns: f64 = nodes.iter().map(|n| n["owns"].as_f64().unwrap()).sum();
    assert!((owns - 1.0).abs() < 1e-6, "{status}");
    assert!(nodes.iter().all(|n| n["tokens"] == 16 && n["up"] == true));

    // ring: 48 tokens in ring order, the same in both outputs.
    let ring = admin_json(c, &["ring"]);
    let tokens: Vec<i128> = ring["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tokens.len(), 48, "{ring}");
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{ring}");
    let text = admin(c, &["ring"]).ok().stdout;
    let text_tokens: Vec<i128> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(text_tokens, tokens, "{text}");

    cli(a, "create table kv rf=3").ok();
    for n in [a, b, c] {
        wait_for("the table on every node", || {
            admin(n, &["tablestats", "kv"]).success
        });
    }
    cli(a, "put kv k1 c=1; put kv k2 c=2; put kv k3 c=3").ok();

    // describe and tables: the cluster's name, partitioner, schema agreement, the table.
    wait_for("schema agreement", || {
        admin_json(b, &["describe"])["schema_agreement"] == true
    });
    let d = admin_json(b, &["describe"]);
    assert_eq!(d["cluster_name"], "sibyl", "{d}");
    assert_eq!(d["partitioner"], "murmur3", "{d}");
    assert_eq!(d["nodes"].as_array().unwrap().len(), 3, "{d}");
    assert_eq!(d["tables"][0]["name"], "kv", "{d}");
    assert_eq!(d["tables"][0]["rf"], 3, "{d}");
    let text = admin(b, &["describe"]).ok().stdout;
    assert!(
        text.starts_with("cluster: sibyl\npartitioner: murmur3\n"),
        "{text}"
    );
    assert!(text.contains("(all 3 nodes agree)"), "{text}");
    assert!(text.contains("table kv\n  rf: 3"), "{text}");
    let tables = admin_json(c, &["tables"]);
    assert_eq!(tables["tables"].as_array().unwrap().len(), 1, "{tables}");
    assert_eq!(tables["tables"][0]["conflict"], "causal", "{tables}");
    let text = admin(c, &["tables"]).ok().stdout;
    let row = text.lines().nth(1).unwrap_or_default();
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["kv", "3", "causal"],
        "{text}"
    );

    // flush, tablestats, compact on node a.
    assert_eq!(admin(a, &["flush", "kv"]).ok().stdout.trim(), "flushed: kv");
    assert_eq!(
        admin_json(a, &["flush"])["flushed"],
        serde_json::json!(["kv"])
    );
    let stats = admin_json(a, &["tablestats", "kv"]);
    assert_eq!(stats["table"], "kv");
    assert!(stats["sstables"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["memtable_entries"], 0, "{stats}");
    let text = admin(a, &["tablestats", "kv"]).ok().stdout;
    assert!(text.lines().any(|l| l.starts_with("sstables:")), "{text}");
    let compacted = admin_json(a, &["compact", "kv"]);
    assert_eq!(compacted["sstables"], 1, "{compacted}");
    let text = admin(a, &["compact", "kv"]).ok().stdout;
    assert!(text.starts_with("compacted kv"), "{text}");

    // hints: nobody was down, nothing held.
    let hints = admin_json(b, &["hints"]);
    assert_eq!(hints["owners"], serde_json::json!([]), "{hints}");
    assert_eq!(hints["pending"], 0);
    let text = admin(b, &["hints"]).ok().stdout;
    assert!(text.contains("no hints pending or dropped"), "{text}");

    // streams and setstreamthroughput: no streams, the cap set and shown.
    let streams = admin_json(c, &["streams"]);
    assert_eq!(streams["streams"], serde_json::json!([]), "{streams}");
    assert_eq!(
        streams["throughput_bytes_per_sec"],
        64u64 << 20,
        "{streams}"
    );
    let set = admin_json(c, &["setstreamthroughput", "32"]);
    assert_eq!(set["throughput_bytes_per_sec"], 32u64 << 20, "{set}");
    let text = admin(c, &["streams"]).ok().stdout;
    assert!(
        text.starts_with("stream throughput cap: 32.0 MiB/s"),
        "{text}"
    );
    assert!(text.contains("no streams on this node"), "{text}");
    let text = admin(c, &["setstreamthroughput", "0"]).ok().stdout;
    assert!(
        text.starts_with("stream throughput cap: unlimited"),
        "{text}"
    );

    // repair of kv with the other two replicas, then its status.
    let repair = admin_json(a, &["repair", "kv"]);
    assert_eq!(repair["state"], "done", "{repair}");
    assert_eq!(repair["failed"], serde_json::json!([]), "{repair}");
    assert!(repair["jobs"].as_u64().unwrap() > 0, "{repair}");
    assert_eq!(repair["jobs_done"], repair["jobs"], "{repair}");
    let text = admin(a, &["repair", "kv"]).ok().stdout;
    assert!(text.contains("of kv: done"), "{text}");
    let status = admin_json(a, &["repair", "--status"]);
    assert!(
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "kv"),
        "{status}"
    );
    let text = admin(a, &["repair", "--status"]).ok().stdout;
    assert!(text.lines().any(|l| l.starts_with("kv")), "{text}");

    // cleanup: every node replicates every range of an rf-3 table of three nodes.
    let cleaned = admin_json(b, &["cleanup"]);
    let kv = &cleaned["tables"].as_array().unwrap()[0];
    assert_eq!(
        (kv["table"].as_str(), kv["dropped"].as_u64()),
        (Some("kv"), Some(0))
    );
    let text = admin(b, &["cleanup"]).ok().stdout;
    assert!(text.contains("total: 0 entries"), "{text}");

    // metrics: the node's own report, two peers up.
    let metrics = admin_json(a, &["metrics"]);
    let family = |name: &str| {
        metrics["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .clone()
    };
    let peers = family("sibyl_gossip_peers");
    let up = peers["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"]["state"] == "up")
        .unwrap();
    assert_eq!(up["value"], 2.0, "{peers}");
    assert_eq!(family("sibyl_requests_total")["type"], "counter");
    let text = admin(a, &["metrics"]).ok().stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("sibyl_gossip_peers") && l.contains("state=up")),
        "{text}"
    );

    // Refusals: exit 1, the reason on stderr, nothing on stdout, in both outputs.
    for json in [false, true] {
        let mut args = if json { vec!["--json"] } else { vec![] };
        args.push("decommission");
        let out = admin(c, &args);
        assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(out.stderr.contains("add a node first"), "{}", out.stderr);
        let live = nodes[1]["id"].as_str().unwrap();
        let mut args = if json { vec!["--json"] } else { vec![] };
        args.extend(["removenode", live]);
        let out = admin(a, &args);
        assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.starts_with("error: removenode"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn admin_exits_1_with_a_clear_message_when_the_node_cannot_be_reached() {
    // A free port nobody listens on.
    let addr = crate::launcher::free_addr().to_string();
    for json in [false, true] {
        let mut args = vec!["--host", addr.as_str(), "--timeout", "2"];
        if json {
            args.push("--json");
        }
        args.push("status");
        let out = run_tool(env!("CARGO_BIN_EXE_sibyl-admin"), &args, "");
        assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            out.stderr.contains(&format!("cannot connect to {addr}")),
            "{}",
            out.stderr
        );
    }
}
