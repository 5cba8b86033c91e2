//! `sibyl-admin` against a real node.

use crate::node::{run_tool, TestNode};

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
    assert_eq!(fields[6], "100.0%", "{line}");
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
