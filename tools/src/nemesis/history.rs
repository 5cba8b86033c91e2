//! [`History`]: every operation the nemesis's clients ran and every fault it injected, in
//! memory for the checker and as JSON lines in a file, so that a failed run can be read
//! afterwards.
//!
//! One line per operation once it ends:
//! `{"client":3,"workload":"set","op":"add","key":"set-1","value":"c3-17","seen":[],
//!   "node":"10.77.0.2:7400","start_ms":1203,"end_ms":1210,"ok":true}` (failed ones carry
//! `"error"`; deletes and register writes carry the `"context"` they sent, in hex); one line per fault: `{"nemesis":"kill node 2","at_ms":5000}`. Times are
//! milliseconds since the run started.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde_json::json;

/// Which workload an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Unique elements added to a few keys.
    Set,
    /// Elements added, read back, and deleted with the read's context.
    Delete,
    /// Read-then-write of one column with the read's context.
    Register,
}

impl Workload {
    /// Its name in the history.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Delete => "delete",
            Workload::Register => "register",
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A write of a new element or value.
    Add,
    /// A read.
    Read,
    /// A delete with the context of a read that saw the element.
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Read => "read",
            Op::Delete => "delete",
        }
    }
}

/// One finished operation.
#[derive(Debug, Clone)]
pub struct Event {
    /// Client index.
    pub client: usize,
    /// Its workload.
    pub workload: Workload,
    /// What it did.
    pub op: Op,
    /// Partition key.
    pub key: String,
    /// The element or value written or deleted (empty for reads).
    pub value: String,
    /// Values the read before it saw (register writes: what the write's context covers).
    pub seen: Vec<String>,
    /// The context the write or delete carried, in hex (empty: none).
    pub context: String,
    /// The node the client sent it to first.
    pub node: String,
    /// Start, ms since the run began.
    pub start_ms: u64,
    /// End, ms since the run began.
    pub end_ms: u64,
    /// Acknowledged.
    pub ok: bool,
    /// Why not, when not.
    pub error: Option<String>,
}

/// The history of a run (see the module docs).
#[derive(Debug)]
pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
    file: Mutex<BufWriter<File>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl History {
    /// A history written to `path` (created or truncated).
    pub fn create(path: &Path) -> std::io::Result<History> {
        Ok(History {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            file: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Milliseconds since the run began.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a finished operation.
    pub fn record(&self, e: Event) {
        let mut line = json!({
            "client": e.client,
            "workload": e.workload.name(),
            "op": e.op.name(),
            "key": e.key,
            "value": e.value,
            "seen": e.seen,
            "node": e.node,
            "start_ms": e.start_ms,
            "end_ms": e.end_ms,
            "ok": e.ok,
        });
        if let Some(obj) = line.as_object_mut() {
            if let Some(err) = &e.error {
                obj.insert("error".into(), json!(err));
            }
            if !e.context.is_empty() {
                obj.insert("context".into(), json!(e.context));
            }
        }
        let _ = writeln!(lock(&self.file), "{line}");
        lock(&self.events).push(e);
    }

    /// Records a fault or a phase of the run.
    pub fn nemesis(&self, what: &str) {
        let line = json!({ "nemesis": what, "at_ms": self.now_ms() });
        let _ = writeln!(lock(&self.file), "{line}");
    }

    /// Every operation so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    /// Writes what is buffered to the file.
    pub fn flush(&self) -> std::io::Result<()> {
        lock(&self.file).flush()
    }
}
