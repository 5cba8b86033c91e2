//! `sibyl-db-bench`: a db_bench-compatible benchmark of the storage engine.
//!
//! Accepts RocksDB `db_bench`'s core flags with its semantics — `--benchmarks=` (comma
//! list of fillseq, fillrandom, overwrite, readrandom, readseq, readreverse, deleterandom),
//! `--num=`, `--key_size=`, `--value_size=`, `--db=`, `--threads=`, `--sync=` — and prints
//! one line per benchmark in db_bench's form, so a comparison script can run
//! it beside RocksDB's db_bench with the same flags. fillseq and fillrandom start from an empty database; the others use
//! what the previous step left. Unknown db_bench flags are accepted and ignored, like
//! db_bench ignores flags that do not apply to the chosen benchmarks.
//!
//! Keys are the op's number printed as zero-padded decimal (db_bench's format); values
//! are slices of a random buffer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sibyl_storage::{Direction, Engine, EngineOptions, SyncMode, TableOptions};

const TABLE: &str = "db_bench";

struct Args {
    benchmarks: Vec<String>,
    num: u64,
    key_size: usize,
    value_size: usize,
    db: PathBuf,
    threads: usize,
    sync: bool,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        benchmarks: "fillseq,fillrandom,overwrite,readrandom,readseq"
            .split(',')
            .map(String::from)
            .collect(),
        num: 1_000_000,
        key_size: 16,
        value_size: 100,
        db: std::env::temp_dir().join("sibyl-db-bench"),
        threads: 1,
        sync: false,
        seed: 301,
    };
    for arg in std::env::args().skip(1) {
        let Some((flag, value)) = arg.strip_prefix("--").and_then(|s| s.split_once('=')) else {
            return Err(format!(
                "unrecognised argument {arg:?} (flags look like --num=1000)"
            ));
        };
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("--{flag}={v}: {e}"));
        match flag {
            "benchmarks" => {
                a.benchmarks = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "num" => a.num = num(value)?,
            "key_size" => a.key_size = num(value)? as usize,
            "value_size" => a.value_size = num(value)? as usize,
            "db" => a.db = PathBuf::from(value),
            "threads" => a.threads = num(value)?.max(1) as usize,
            "sync" => a.sync = value == "1" || value == "true",
            "seed" => a.seed = num(value)?,
            _ => {} // other db_bench flags: accepted, not applicable
        }
    }
    Ok(a)
}

/// splitmix64: a small, fast, well-mixed generator (benchmark keys need no more).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn make_key(buf: &mut Vec<u8>, n: u64, key_size: usize) {
    buf.clear();
    let digits = format!("{n:0width$}", width = key_size);
    let bytes = digits.as_bytes();
    // Keep the low-order digits when the number is wider than the key.
    buf.extend_from_slice(&bytes[bytes.len().saturating_sub(key_size)..]);
}

fn open(a: &Args, fresh: bool) -> Engine {
    if fresh {
        let _ = std::fs::remove_dir_all(&a.db);
    }
    let opts = EngineOptions {
        sync: if a.sync {
            SyncMode::Batch
        } else {
            EngineOptions::default().sync
        },
        ..EngineOptions::default()
    };
    let e = Engine::open(&a.db, opts).unwrap_or_else(|e| {
        eprintln!("open {}: {e}", a.db.display());
        std::process::exit(1)
    });
    if !e.tables().iter().any(|t| t == TABLE) {
        e.create_table(TABLE, TableOptions::default())
            .unwrap_or_else(|e| {
                eprintln!("create table: {e}");
                std::process::exit(1)
            });
    }
    e
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    ReadReverse,
    DeleteRandom,
}

/// Runs `per_thread` ops on each thread; returns (ops done, bytes, found).
fn run(engine: &Arc<Engine>, a: &Args, kind: Kind, values: &Arc<Vec<u8>>) -> (u64, u64, u64) {
    let per_thread = a.num;
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|tid| {
                let engine = engine.clone();
                let values = values.clone();
                s.spawn(move || {
                    let mut rng = Rng(a.seed.wrapping_add(tid as u64 * 7919));
                    let mut key = Vec::with_capacity(a.key_size);
                    let (mut ops, mut bytes, mut found) = (0u64, 0u64, 0u64);
                    match kind {
                        Kind::ReadSeq | Kind::ReadReverse => {
                            let dir = if kind == Kind::ReadSeq {
                                Direction::Forward
                            } else {
                                Direction::Reverse
                            };
                            let mut it = engine
                                .scan(
                                    TABLE,
                                    std::ops::Bound::Unbounded,
                                    std::ops::Bound::Unbounded,
                                    dir,
                                )
                                .unwrap_or_else(|e| panic!("scan: {e}"));
                            while ops < per_thread {
                                match it.next_entry() {
                                    Ok(Some((k, v))) => {
                                        bytes += (k.len() + v.len()) as u64;
                                        ops += 1;
                                    }
                                    Ok(None) => break,
                                    Err(e) => panic!("scan: {e}"),
                                }
                            }
                            found = ops;
                        }
                        _ => {
                            for i in 0..per_thread {
                                let n = match kind {
                                    Kind::FillSeq => i + tid as u64 * per_thread,
                                    _ => rng.next() % a.num,
                                };
                                make_key(&mut key, n, a.key_size);
                                match kind {
                                    Kind::ReadRandom => {
                                        if let Some(v) = engine
                                            .get(TABLE, &key)
                                            .unwrap_or_else(|e| panic!("get: {e}"))
                                        {
                                            found += 1;
                                            bytes += (key.len() + v.len()) as u64;
                                        }
                                    }
                                    Kind::DeleteRandom => {
                                        engine
                                            .delete(TABLE, &key)
                                            .unwrap_or_else(|e| panic!("delete: {e}"));
                                        bytes += key.len() as u64;
                                    }
                                    _ => {
                                        let off =
                                            (rng.next() as usize) % (values.len() - a.value_size);
                                        let value = &values[off..off + a.value_size];
                                        engine
                                            .put(TABLE, &key, value)
                                            .unwrap_or_else(|e| panic!("put: {e}"));
                                        bytes += (key.len() + value.len()) as u64;
                                    }
                                }
                                ops += 1;
                            }
                        }
                    }
                    (ops, bytes, found)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0, 0)))
            .collect()
    });
    results
        .into_iter()
        .fold((0, 0, 0), |acc, r| (acc.0 + r.0, acc.1 + r.1, acc.2 + r.2))
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sibyl-db-bench: {e}");
            std::process::exit(2)
        }
    };
    println!(
        "Keys:       {} bytes each\nValues:     {} bytes each\nEntries:    {}\nThreads:    {}\nEngine:     sibyl-storage (sync={})",
        a.key_size, a.value_size, a.num, a.threads, a.sync
    );
    println!("------------------------------------------------");
    let mut values = vec![0u8; 1 << 20];
    let mut rng = Rng(a.seed ^ 0xdead_beef);
    for chunk in values.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let values = Arc::new(values);
    let mut engine: Option<Arc<Engine>> = None;
    for name in &a.benchmarks {
        let kind = match name.as_str() {
            "fillseq" => Kind::FillSeq,
            "fillrandom" => Kind::FillRandom,
            "overwrite" => Kind::Overwrite,
            "readrandom" => Kind::ReadRandom,
            "readseq" => Kind::ReadSeq,
            "readreverse" => Kind::ReadReverse,
            "deleterandom" => Kind::DeleteRandom,
            other => {
                eprintln!("unknown benchmark {other:?}, skipped");
                continue;
            }
        };
        let fresh = matches!(kind, Kind::FillSeq | Kind::FillRandom);
        if fresh || engine.is_none() {
            drop(engine.take());
            engine = Some(Arc::new(open(&a, fresh)));
        }
        let Some(e) = engine.as_ref() else { continue };
        let start = Instant::now();
        let (ops, bytes, found) = run(e, &a, kind, &values);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let micros = secs * 1e6 / (ops.max(1) as f64) * a.threads as f64;
        let mut extra = format!("{:7.1} MB/s", bytes as f64 / 1048576.0 / secs);
        if kind == Kind::ReadRandom {
            extra = format!("{extra} ({found} of {} found)", a.num * a.threads as u64);
        }
        println!(
            "{:<12} : {:11.3} micros/op {:.0} ops/sec; {}",
            name,
            micros,
            ops as f64 / secs,
            extra
        );
    }
    if let Some(e) = engine.take() {
        if let Ok(s) = e.stats(TABLE) {
            println!(
                "sstables: {} ({} bytes), per level {:?}, flushes {}, compactions {}",
                s.sstables, s.sstable_bytes, s.sstables_per_level, s.flushes, s.compactions
            );
        }
        drop(e);
    }
    if let Some(kib) = peak_rss_kib() {
        println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
}
