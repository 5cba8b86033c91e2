//! `sibyl-admin` against a real node.

use std::time::{Duration, Instant};

use crate::node::{cli, run_tool, Run, TestNode};

fn admin(node: &TestNode, args: &[&str]) -> Run {
    let mut all = vec!["--host", node.addr.as_str()];
    all.extend_from_slice(args);
    run_tool(env!("CARGO_BIN_EXE_sibyl-admin"), &all, "")
}

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
    assert!(out.lines().any(|l| l == "sstables:           1"), "{out}");
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
