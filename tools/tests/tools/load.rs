//! `sibyl-load` against a real node: every format, rejects with reasons, gzip, stdin,
//! a missing table, and a load killed midway then resumed. Rows are read back through
//! the client and compared with what the input says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sibyl_protocol::Client;

use crate::node::{Run, TestNode};

const LOAD: &str = env!("CARGO_BIN_EXE_sibyl-load");

/// Runs `sibyl-load --host NODE ARGS` with `stdin` bytes, in `dir`.
fn load(node: &TestNode, dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(LOAD)
        .arg("--host")
        .arg(&node.addr)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        // A load that refuses to start may not read its input: a broken pipe is fine.
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        code: out.status.code(),
    }
}

/// The JSON report of a run (`--json`).
fn report(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", run.stdout, run.stderr))
}

/// Every cell of each key: column -> sibling values (`None` = tombstone).
type Cells = BTreeMap<String, Vec<Option<String>>>;

fn read_rows(node: &TestNode, table: &str, keys: &[String]) -> BTreeMap<String, Cells> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&[node.addr.as_str()]).await.unwrap();
        let t = client.table(table);
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(64) {
            let mut tasks = tokio::task::JoinSet::new();
            for key in chunk {
                let (t, key) = (t.clone(), key.clone());
                tasks.spawn(async move { (key.clone(), t.get(key).await) });
            }
            while let Some(done) = tasks.join_next().await {
                let (key, row) = done.unwrap();
                let cells: Cells = row
                    .unwrap()
                    .cells
                    .iter()
                    .map(|c| {
                        let values = c
                            .siblings
                            .iter()
                            .map(|s| {
                                s.value
                                    .as_ref()
                                    .map(|v| String::from_utf8_lossy(v).into_owned())
                            })
                            .collect();
                        (String::from_utf8_lossy(&c.name).into_owned(), values)
                    })
                    .collect();
                out.insert(key, cells);
            }
        }
        out
    })
}

fn cells(pairs: &[(&str, &str)]) -> Cells {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), vec![Some(v.to_string())]))
        .collect()
}

/// The rejects file's lines as JSON.
fn rejects(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn load_csv_loads_good_rows_and_rejects_malformed_and_oversize_ones() {
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(1_048_577); // one byte over the node's 1 MiB value limit
    let long_key = "k".repeat(16_385);
    let mut csv = String::from("name,id,city\n");
    csv.push_str("\"Smith, Jo\",u1,Lyon\n"); // row 1
    csv.push_str("Ann,u2\n"); // row 2: malformed
    csv.push_str(&format!("Big,u3,{big}\n")); // row 3: oversize value
    csv.push_str("\"multi\nline\",u4,\n"); // row 4: empty city not written
    csv.push_str(&format!("Key,{long_key},Nice\n")); // row 5: oversize key
    csv.push_str(",u6,Paris\n"); // row 6
    std::fs::write(dir.path().join("users.csv"), &csv).unwrap();
    let run = load(
        &node,
        dir.path(),
        &[
            "--table",
            "users",
            "--key",
            "id",
            "--create-table",
            "--json",
            "users.csv",
        ],
        b"",
    );
    assert_eq!(
        run.code,
        Some(3),
        "completed with rejects:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let r = report(&run);
    assert_eq!(
        (
            r["rows"].as_u64(),
            r["loaded"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(6), Some(3), Some(3)),
        "{r}"
    );
    assert_eq!(r["cells"], 4, "{r}");
    assert_eq!(r["rejects_by_kind"]["oversize"], 2, "{r}");
    assert_eq!(r["rejects_by_kind"]["malformed"], 1, "{r}");

    let keys: Vec<String> = ["u1", "u2", "u3", "u4", "u6"].map(String::from).to_vec();
    let rows = read_rows(&node, "users", &keys);
    assert_eq!(
        rows["u1"],
        cells(&[("name", "Smith, Jo"), ("city", "Lyon")])
    );
    assert_eq!(rows["u4"], cells(&[("name", "multi\nline")]));
    assert_eq!(rows["u6"], cells(&[("city", "Paris")]));
    assert!(rows["u2"].is_empty() && rows["u3"].is_empty(), "{rows:?}");

    let bad = rejects(&dir.path().join("users.csv.rejects.jsonl"));
    let summary: Vec<(u64, u64, &str)> = bad
        .iter()
        .map(|j| {
            (
                j["row"].as_u64().unwrap(),
                j["line"].as_u64().unwrap(),
                j["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(2, 3, "malformed"), (3, 4, "oversize"), (5, 7, "oversize")]
    );
    assert_eq!(bad[0]["record"], "Ann,u2");
    assert!(
        bad[0]["reason"]
            .as_str()
            .unwrap()
            .contains("expected 3 fields"),
        "{}",
        bad[0]
    );
    assert!(
        bad[1]["reason"]
            .as_str()
            .unwrap()
            .contains("value of 1048577 bytes"),
        "{}",
        bad[1]
    );
    assert!(
        bad[2]["reason"]
            .as_str()
            .unwrap()
            .contains("key of 16385 bytes"),
        "{}",
        bad[2]
    );

    // The checkpoint stays: loading the same file again as a new load is refused.
    let again = load(
        &node,
        dir.path(),
        &["--table", "users", "--key", "id", "users.csv"],
        b"",
    );
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    assert!(again.stderr.contains("--resume"), "{}", again.stderr);
}

#[test]
fn load_jsonl_writes_json_values_as_documented() {
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        "{\"id\": \"a\", \"name\": \"Al \\\"the\\\" pal\", \"age\": 41.50, \"ok\": true, \"gone\": null, \"tags\": [\"x\", 1]}\n",
        "\n",
        "{\"id\": 7, \"doc\": {\"k\": {\"n\": 1}}}\n",
        "{\"id\": \"b\", \"name\": \"broken\"\n",
        "[1, 2]\n",
        "{\"name\": \"no key\"}\n",
        "{\"id\": \"c\", \"v\": \"1\", \"v\": \"2\"}\n",
        "{\"id\": \"d\", \"only\": null}\n",
    );
    std::fs::write(dir.path().join("rows.jsonl"), text).unwrap();
    let run = load(
        &node,
        dir.path(),
        &[
            "--table",
            "docs",
            "--create-table",
            "--format",
            "jsonl",
            "--key",
            "id",
            "--json",
            "rows.jsonl",
        ],
        b"",
    );
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    let r = report(&run);
    assert_eq!(
        (r["rows"].as_u64(), r["loaded"].as_u64()),
        (Some(7), Some(2)),
        "{r}"
    );
    let rows = read_rows(
        &node,
        "docs",
        &["a".into(), "7".into(), "b".into(), "c".into(), "d".into()],
    );
    assert_eq!(
        rows["a"],
        cells(&[
            ("name", "Al \"the\" pal"),
            ("age", "41.50"),
            ("ok", "true"),
            ("tags", "[\"x\", 1]")
        ])
    );
    assert_eq!(rows["7"], cells(&[("doc", "{\"k\": {\"n\": 1}}")]));
    assert!(rows["b"].is_empty() && rows["c"].is_empty() && rows["d"].is_empty());
    let bad = rejects(&dir.path().join("rows.jsonl.rejects.jsonl"));
    let lines: Vec<u64> = bad.iter().map(|j| j["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [4, 5, 6, 7, 8], "{bad:?}");
    let reasons: Vec<&str> = bad.iter().map(|j| j["reason"].as_str().unwrap()).collect();
    assert!(reasons[0].starts_with("invalid JSON"), "{reasons:?}");
    assert!(reasons[2].contains("no key field"), "{reasons:?}");
    assert!(reasons[3].contains("given twice"), "{reasons:?}");
    assert!(reasons[4].contains("no column"), "{reasons:?}");
}

#[test]
fn load_long_csv_groups_consecutive_records_of_a_key() {
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let text = "key,column,value\nu1,name,Ann\nu1,city,Lyon\nu2,name,Bob\nu2,name,Dup\nu3,city\nu1,age,30\n";
    std::fs::write(dir.path().join("cells.csv"), text).unwrap();
    let run = load(
        &node,
        dir.path(),
        &[
            "--table",
            "t",
            "--create-table",
            "--format",
            "long-csv",
            "--json",
            "cells.csv",
        ],
        b"",
    );
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    let r = report(&run);
    assert_eq!(
        (
            r["loaded"].as_u64(),
            r["cells"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(3), Some(4), Some(2)),
        "{r}"
    );
    let rows = read_rows(&node, "t", &["u1".into(), "u2".into()]);
    assert_eq!(
        rows["u1"],
        cells(&[("name", "Ann"), ("city", "Lyon"), ("age", "30")])
    );
    assert_eq!(rows["u2"], cells(&[("name", "Bob")]));
    let bad = rejects(&dir.path().join("cells.csv.rejects.jsonl"));
    assert_eq!(bad.len(), 2);
    assert!(
        bad[0]["reason"].as_str().unwrap().contains("given twice"),
        "{bad:?}"
    );
    assert!(
        bad[1]["reason"]
            .as_str()
            .unwrap()
            .contains("expected 3 fields"),
        "{bad:?}"
    );
}

#[test]
fn load_gzip_csv_from_stdin() {
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("key,v\n");
    for i in 0..500 {
        csv.push_str(&format!("k{i},value {i}\n"));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let run = load(
        &node,
        dir.path(),
        &["--table", "g", "--create-table", "--json", "-"],
        &gz,
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let r = report(&run);
    assert_eq!(
        (r["loaded"].as_u64(), r["gzip"].as_bool()),
        (Some(500), Some(true)),
        "{r}"
    );
    // Stdin's checkpoint and rejects file are in the working directory.
    assert!(dir.path().join("sibyl-load-g.checkpoint").exists());
    assert!(dir.path().join("sibyl-load-g.rejects.jsonl").exists());
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    let rows = read_rows(&node, "g", &keys);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(rows[key], cells(&[("v", &format!("value {i}"))]), "{key}");
    }
}

#[test]
fn load_into_a_missing_table_exits_1_with_a_clear_message() {
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "key,v\nk,1\n").unwrap();
    let run = load(&node, dir.path(), &["--table", "nope", "a.csv"], b"");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("table nope does not exist"),
        "{}",
        run.stderr
    );
}

/// The checkpoint's fields, once it parses (it is replaced whole, so it always should).
fn checkpoint(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().nth(1)?).ok()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10)); // polling interval
    }
}

#[test]
fn load_killed_midway_resumes_with_every_row_once_and_no_siblings() {
    const ROWS: usize = 4000;
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let key = |n: usize| format!("r{n:05}");
    let mut csv = String::from("key,a,b\n");
    for n in 1..=ROWS {
        csv.push_str(&format!("{},a{n},b{n}\n", key(n)));
    }
    let input: PathBuf = dir.path().join("rows.csv");
    std::fs::write(&input, &csv).unwrap();
    let ckpt = dir.path().join("rows.csv.checkpoint");
    // A causal table: a row written twice under different write ids would show two
    // siblings of each cell.
    let args = [
        "--table",
        "c",
        "--create-table",
        "--conflict",
        "causal",
        "--progress",
        "off",
    ];
    let mut child = Command::new(LOAD)
        .args(["--host", node.addr.as_str()])
        .args(args)
        .args([
            "--rate",
            "1500",
            "--checkpoint-ms",
            "400",
            "--batch-rows",
            "50",
            "rows.csv",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a checkpoint past 1000 rows, then for a row above its watermark to be
    // written, and kill the loader then (SIGKILL, by its PID): the rows between the
    // watermark and the kill were written but will be sent again.
    let w = wait_until("a checkpoint past 1000 rows", || {
        checkpoint(&ckpt)?["rows_done"]
            .as_u64()
            .filter(|w| *w >= 1000)
    });
    let next = key(w as usize + 1);
    wait_until("a row above the watermark", || {
        let rows = read_rows(&node, "c", std::slice::from_ref(&next));
        (!rows[&next].is_empty()).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let cp = checkpoint(&ckpt).unwrap();
    let w = cp["rows_done"].as_u64().unwrap() as usize;
    assert!(
        !cp["complete"].as_bool().unwrap() && w < ROWS,
        "killed midway: {cp}"
    );
    let all: Vec<String> = (1..=ROWS).map(key).collect();
    let before = read_rows(&node, "c", &all);
    let written_above = (w + 1..=ROWS)
        .filter(|n| !before[&key(*n)].is_empty())
        .count();
    assert!(
        written_above > 0,
        "rows above the watermark {w} were written before the kill"
    );

    let run = load(
        &node,
        dir.path(),
        &[&args[..], &["--resume", "--json", "rows.csv"]].concat(),
        b"",
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let r = report(&run);
    assert_eq!(
        (
            r["rows"].as_u64(),
            r["loaded"].as_u64(),
            r["resumed"].as_bool()
        ),
        (Some(ROWS as u64), Some(ROWS as u64), Some(true)),
        "{r}"
    );
    let after = read_rows(&node, "c", &all);
    for n in 1..=ROWS {
        let expected = cells(&[("a", &format!("a{n}")), ("b", &format!("b{n}"))]);
        assert_eq!(
            after[&key(n)],
            expected,
            "row {n} (watermark {w}, {written_above} written above it)"
        );
    }
    // A complete load resumed again does nothing.
    let again = load(
        &node,
        dir.path(),
        &[&args[..], &["--resume", "--json", "rows.csv"]].concat(),
        b"",
    );
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(report(&again)["seconds"], 0.0);
}

#[test]
fn load_sigterm_checkpoints_and_resume_refuses_a_changed_input() {
    const ROWS: usize = 3000;
    let node = TestNode::start();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("key,v\n");
    for n in 1..=ROWS {
        csv.push_str(&format!("k{n},v{n}\n"));
    }
    let input = dir.path().join("in.csv");
    std::fs::write(&input, &csv).unwrap();
    let ckpt = dir.path().join("in.csv.checkpoint");
    let args = [
        "--table",
        "s",
        "--create-table",
        "--progress",
        "off",
        "--json",
    ];
    let child = Command::new(LOAD)
        .args(["--host", node.addr.as_str()])
        .args(args)
        .args(["--rate", "2000", "--checkpoint-ms", "50", "in.csv"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("a checkpoint past 500 rows", || {
        checkpoint(&ckpt)?["rows_done"]
            .as_u64()
            .filter(|w| *w >= 500)
    });
    // SIGTERM by the child's own PID: it finishes what is in flight and checkpoints.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stopped["complete"], false, "{stopped}");
    let cp = checkpoint(&ckpt).unwrap();
    assert_eq!(
        cp["rows_done"], stopped["rows"],
        "the last checkpoint is the report's watermark"
    );

    // A different input under the checkpoint is refused, nothing written.
    std::fs::write(&input, csv.replacen("k1,v1", "k1,changed", 1)).unwrap();
    let refused = load(
        &node,
        dir.path(),
        &[&args[..], &["--resume", "in.csv"]].concat(),
        b"",
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("differ"), "{}", refused.stderr);
    std::fs::write(&input, &csv).unwrap();
    let done = load(
        &node,
        dir.path(),
        &[&args[..], &["--resume", "in.csv"]].concat(),
        b"",
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(report(&done)["loaded"], ROWS as u64);
    let keys: Vec<String> = (1..=ROWS).map(|n| format!("k{n}")).collect();
    let rows = read_rows(&node, "s", &keys);
    for n in 1..=ROWS {
        assert_eq!(
            rows[&format!("k{n}")],
            cells(&[("v", &format!("v{n}"))]),
            "row {n}"
        );
    }
}
