//! The tools against a node that requires authentication: credentials from
//! `--password-file` or `SIBYL_PASSWORD`, user management in the shell, and a clear
//! refusal (exit 1, "authentication failed for user X", the password never echoed).

use std::path::Path;

use crate::node::{run_tool_env, Run, TestNode};

const CLI: &str = env!("CARGO_BIN_EXE_sibyl-cli");
const ADMIN: &str = env!("CARGO_BIN_EXE_sibyl-admin");
const STRESS: &str = env!("CARGO_BIN_EXE_sibyl-stress");
const LOAD: &str = env!("CARGO_BIN_EXE_sibyl-load");
const ROOT_PASSWORD: &str = "root-pw-1234";

/// A node with `--auth required` and the superuser `root`; its password file is
/// `dir/root-pw`.
fn auth_node(dir: &Path) -> TestNode {
    let pw = dir.join("root-pw");
    std::fs::write(&pw, format!("{ROOT_PASSWORD}\n")).unwrap();
    TestNode::start_with(&[
        "--auth",
        "required",
        "--auth-superuser",
        "root",
        "--auth-superuser-password-file",
        pw.to_str().unwrap(),
    ])
}

fn as_root(node: &TestNode, dir: &Path, statements: &str) -> Run {
    let pw = dir.join("root-pw");
    run_tool_env(
        CLI,
        &[
            "--host",
            &node.addr,
            "--user",
            "root",
            "--password-file",
            pw.to_str().unwrap(),
            "-e",
            statements,
        ],
        "",
        &[],
    )
}

#[test]
fn auth_tools_log_in_from_a_password_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path());
    let run = as_root(
        &node,
        dir.path(),
        "create user bob password=bob-pw; grant create to bob; users",
    )
    .ok();
    assert!(run.stdout.contains("created user bob"), "{}", run.stdout);
    assert!(
        run.stdout.contains("granted create to bob"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("root (superuser)"), "{}", run.stdout);
    let bob = [("SIBYL_PASSWORD", "bob-pw")];
    let as_bob = |statements: &str| {
        run_tool_env(
            CLI,
            &["--host", &node.addr, "--user", "bob", "-e", statements],
            "",
            &bob,
        )
    };
    // `create` lets bob create a table; creating it grants nothing on it.
    as_bob("create table t rf=1 consistency=one").ok();
    let run = as_bob("put t k c=v");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("\"write\""), "{}", run.stderr);
    assert!(run.stderr.contains("on table \"t\""), "{}", run.stderr);
    let run = as_root(
        &node,
        dir.path(),
        "grant read on t to bob; grant write on t to bob; users",
    )
    .ok();
    assert!(
        run.stdout.contains("bob: create, read on t, write on t"),
        "{}",
        run.stdout
    );
    let run = as_bob("put t k c=v; get t k").ok();
    assert!(run.stdout.contains("\"v\""), "{}", run.stdout);
    // bob does not hold `users`: the shell says so clearly.
    let run = as_bob("users");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("\"users\""), "{}", run.stderr);
    let pw = dir.path().join("root-pw");
    run_tool_env(
        ADMIN,
        &[
            "--host",
            &node.addr,
            "--user",
            "root",
            "--password-file",
            pw.to_str().unwrap(),
            "status",
        ],
        "",
        &[],
    )
    .ok();
    run_tool_env(
        STRESS,
        &[
            "--host",
            &node.addr,
            "--user",
            "bob",
            "--table",
            "t",
            "--requests",
            "200",
            "--connections",
            "2",
        ],
        "",
        &bob,
    )
    .ok();
    run_tool_env(
        STRESS,
        &[
            "--host",
            &node.addr,
            "--user",
            "bob",
            "--table",
            "t",
            "--requests",
            "200",
            "--connections",
            "2",
            "--driver",
            "client",
        ],
        "",
        &bob,
    )
    .ok();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "key,c\nk1,a\nk2,b\n").unwrap();
    run_tool_env(
        LOAD,
        &[
            "--host",
            &node.addr,
            "--user",
            "bob",
            "--table",
            "t",
            "--no-checkpoint",
            csv.to_str().unwrap(),
        ],
        "",
        &bob,
    )
    .ok();
    let run = as_root(&node, dir.path(), "get t k2").ok();
    assert!(run.stdout.contains("\"b\""), "{}", run.stdout);
}

#[test]
fn auth_tools_say_clearly_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path());
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password-9876\n").unwrap();
    let args = |tool_args: &[&str]| {
        let mut a = vec![
            "--host".to_owned(),
            node.addr.clone(),
            "--user".to_owned(),
            "root".to_owned(),
            "--password-file".to_owned(),
            wrong.to_str().unwrap().to_owned(),
        ];
        a.extend(tool_args.iter().map(|s| (*s).to_owned()));
        a
    };
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "key,c\nk1,a\n").unwrap();
    let csv = csv.to_str().unwrap();
    let runs: [(&str, Vec<&str>); 4] = [
        (CLI, vec!["-e", "tables"]),
        (ADMIN, vec!["status"]),
        (STRESS, vec!["--requests", "10", "--connections", "1"]),
        (LOAD, vec!["--table", "t", "--no-checkpoint", csv]),
    ];
    for (tool, extra) in runs {
        let a = args(&extra);
        let run = run_tool_env(
            tool,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
            &[],
        );
        assert_eq!(run.code, Some(1), "{tool}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("authentication failed for user root"),
            "{tool}: {}",
            run.stderr
        );
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains("not-the-password"),
            "{tool} echoed the password"
        );
    }
    // No credentials at all: the shell says the node requires them.
    let run = run_tool_env(CLI, &["--host", &node.addr, "-e", "tables"], "", &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("requires authentication"),
        "{}",
        run.stderr
    );
    // --user without any password source, and no terminal to ask on.
    let run = run_tool_env(
        CLI,
        &["--host", &node.addr, "--user", "root", "-e", "tables"],
        "",
        &[],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no password for user root"),
        "{}",
        run.stderr
    );
}
