//! `sibyl-stress --json` against a real node.

use serde_json::Value;

use crate::node::{run_tool, TestNode};

fn stress(node: &TestNode, op: &str) -> Value {
    let out = run_tool(
        env!("CARGO_BIN_EXE_sibyl-stress"),
        &[
            "--host",
            &node.addr,
            "--op",
            op,
            "--connections",
            "4",
            "--requests",
            "2000",
            "--pipeline",
            "8",
            "--keyspace",
            "500",
            "--seed",
            "7",
            "--json",
        ],
        "",
    )
    .ok();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    lines.into_iter().next().expect("one line")
}

fn assert_clean(v: &Value, op: &str) {
    assert_eq!(v["op"], op);
    for field in [
        "ops_per_sec",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "seconds",
    ] {
        assert!(v[field].is_number(), "{field} missing in {v}");
    }
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["requests"], 2000, "{v}");
    assert_eq!(v["ok"], 2000, "{v}");
    assert!(v["ops_per_sec"].as_f64().is_some_and(|x| x > 0.0), "{v}");
}

#[test]
fn stress_json_put_then_get_reports_zero_errors() {
    let node = TestNode::start();
    let put = stress(&node, "put");
    assert_clean(&put, "put");
    // The node's ring was fetched: its one member owns every key.
    assert_eq!(put["routing"], "token", "{put}");
    let get = stress(&node, "get");
    assert_clean(&get, "get");
    // Same seed and key space: the gets draw keys the puts wrote.
    assert!(get["found"].as_u64().is_some_and(|f| f > 0), "{get}");
}

#[test]
fn stress_json_mixed_prints_put_get_and_total_lines() {
    let node = TestNode::start();
    let out = run_tool(
        env!("CARGO_BIN_EXE_sibyl-stress"),
        &[
            "--host",
            &node.addr,
            "--op",
            "mixed",
            "--ratio",
            "0.5",
            "--connections",
            "2",
            "--requests",
            "1000",
            "--pipeline",
            "4",
            "--seed",
            "11",
            "--json",
        ],
        "",
    )
    .ok();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    let ops: Vec<&str> = lines.iter().filter_map(|v| v["op"].as_str()).collect();
    assert_eq!(ops, ["put", "get", "mixed"], "{}", out.stdout);
    let requests: Vec<u64> = lines
        .iter()
        .filter_map(|v| v["requests"].as_u64())
        .collect();
    assert_eq!(requests[0] + requests[1], 1000);
    assert_eq!(requests[2], 1000);
    assert!(lines.iter().all(|v| v["errors"] == 0), "{}", out.stdout);
}
