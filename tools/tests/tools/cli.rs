//! `sibyl-cli` against a real node: one-shot, scripts on stdin, siblings, errors.

use crate::node::{cli, run_tool, TestNode};

#[test]
fn cli_one_shot_put_then_get_prints_value() {
    let node = TestNode::start();
    let out = cli(
        &node,
        r#"create table users rf=1; put users alice name="Alice Liddell"; get users alice"#,
    )
    .ok();
    assert!(
        out.stdout.contains(r#"name: "Alice Liddell""#),
        "{}",
        out.stdout
    );
}

#[test]
fn cli_shows_siblings_and_put_after_get_resolves_them() {
    let node = TestNode::start();
    cli(&node, "create table t rf=1 conflict=causal").ok();
    // Two blind writes (separate sessions, no read in between) are concurrent.
    cli(&node, "put t k name=alice").ok();
    cli(&node, "put t k name=alicia").ok();
    let out = cli(&node, "get t k; put t k name=ali; get t k").ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert!(
        lines.contains(&r#"name: 2 siblings: "alice" | "alicia""#),
        "{}",
        out.stdout
    );
    assert!(lines.contains(&r#"name: "ali""#), "{}", out.stdout);
    let after = cli(&node, "get t k").ok();
    assert!(!after.stdout.contains("siblings"), "{}", after.stdout);
}

#[test]
fn cli_unknown_table_prints_error_line_and_fails() {
    let node = TestNode::start();
    let out = cli(&node, "get users alice");
    assert!(
        !out.success,
        "one-shot with a failed command must exit non-zero"
    );
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.trim(), r#"error: unknown table "users""#);
}

#[test]
fn cli_script_on_stdin_runs_each_line() {
    let node = TestNode::start();
    let script = "# a script\ncreate table s rf=1\nuse s\nput k1 a=1 b=0xff00\nget k1\n";
    let out = run_tool(
        env!("CARGO_BIN_EXE_sibyl-cli"),
        &["--host", &node.addr],
        script,
    )
    .ok();
    assert!(out.stdout.contains("using table s"), "{}", out.stdout);
    assert!(out.stdout.contains(r#"a: "1""#), "{}", out.stdout);
    assert!(out.stdout.contains("b: 0xff00"), "{}", out.stdout);
}

#[test]
fn cli_delete_row_after_get_leaves_nothing() {
    let node = TestNode::start();
    cli(&node, "create table d rf=1; put d k a=1 b=2").ok();
    let out = cli(&node, "get d k; delete d k; get d k").ok();
    assert!(
        out.stdout.trim_end().ends_with("(not found)"),
        "{}",
        out.stdout
    );
}

#[test]
fn cli_slice_pages_with_next() {
    let node = TestNode::start();
    cli(&node, "create table p rf=1; put p k a=1 b=2 c=3").ok();
    let out = cli(&node, "slice p k * * limit 2; next").ok();
    let text = out.stdout;
    let first = text.find("(more: type next").expect("more hint");
    assert!(text[..first].contains(r#"a: "1""#) && text[..first].contains(r#"b: "2""#));
    assert!(text[first..].contains(r#"c: "3""#), "{text}");
}

#[test]
fn cli_consistency_beyond_replicas_is_unavailable_error() {
    let node = TestNode::start();
    cli(&node, "create table c rf=1").ok();
    let out = cli(&node, "consistency 2; get c k");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = out.stderr.trim();
    assert!(
        line.starts_with("error: unavailable: 2 replicas required, 1 alive"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
}

#[test]
fn cli_lww_table_keeps_last_write_without_siblings() {
    let node = TestNode::start();
    cli(&node, "create table l rf=1 conflict=lww").ok();
    cli(&node, "put l k name=first").ok();
    cli(&node, "put l k name=second").ok();
    let out = cli(&node, "get l k").ok();
    assert!(out.stdout.contains(r#"name: "second""#), "{}", out.stdout);
    assert!(!out.stdout.contains("siblings"), "{}", out.stdout);
}
