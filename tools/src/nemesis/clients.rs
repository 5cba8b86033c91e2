//! The nemesis's clients: each is one task with its own token-aware [`Client`] over every
//! node, running one workload until told to stop, recording every operation in the
//! [`History`]. Values are unique per run (`c<client>-<n>`), so the checker can tell
//! which write a value came from.
//!
//! - set: adds element `c<client>-<n>` (a column, value `1`) to key `set-<n % keys>`;
//! - delete: adds an element to `del-<n % keys>`, reads it back, and when the read saw it
//!   deletes it with the read's context (a delete whose read did not see it is skipped:
//!   a context that did not see a value does not remove it);
//! - register: reads column `v` of `reg-<n % keys>` and writes a new value with the
//!   read's context, recording which values that context saw.
//!
//! Every request runs at QUORUM (sloppy) on the causal tables [`SET_TABLE`],
//! [`DELETE_TABLE`], [`REGISTER_TABLE`] (rf 3).

use std::sync::Arc;
use std::time::Duration;

use sibyl_protocol::{Client, ClientError, Consistency};
use tokio::sync::watch;

use crate::nemesis::check::REGISTER_COLUMN;
use crate::nemesis::history::{Event, History, Op, Workload};

/// Table of the set workload.
pub const SET_TABLE: &str = "nemesis_set";
/// Table of the delete workload.
pub const DELETE_TABLE: &str = "nemesis_delete";
/// Table of the register workload.
pub const REGISTER_TABLE: &str = "nemesis_register";
/// Keys per workload.
pub const KEYS: u64 = 4;

/// The table of `w`.
pub fn table_of(w: Workload) -> &'static str {
    match w {
        Workload::Set => SET_TABLE,
        Workload::Delete => DELETE_TABLE,
        Workload::Register => REGISTER_TABLE,
    }
}

/// Key `i` of `w`.
pub fn key_of(w: Workload, i: u64) -> String {
    match w {
        Workload::Set => format!("set-{i}"),
        Workload::Delete => format!("del-{i}"),
        Workload::Register => format!("reg-{i}"),
    }
}

/// Every workload, in the order clients take them.
pub const ALL_WORKLOADS: [Workload; 3] = [Workload::Set, Workload::Delete, Workload::Register];

/// The workload of client `i` among `workloads` (all when empty): they take turns.
pub fn workload_of(client: usize, workloads: &[Workload]) -> Workload {
    let list: &[Workload] = if workloads.is_empty() {
        &ALL_WORKLOADS
    } else {
        workloads
    };
    list[client % list.len()]
}

/// How long a client waits after an error before its next operation (a down cluster
/// must not be hammered in a loop).
const BACKOFF_AFTER_ERROR: Duration = Duration::from_millis(50);

struct Ctx {
    id: usize,
    workload: Workload,
    client: Client,
    history: Arc<History>,
}

impl Ctx {
    fn node(&self, key: &str) -> String {
        self.client
            .route(key.as_bytes())
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    fn record(
        &self,
        op: Op,
        key: &str,
        value: &str,
        (seen, context): (Vec<String>, String),
        start_ms: u64,
        result: Result<(), ClientError>,
    ) -> bool {
        let ok = result.is_ok();
        self.history.record(Event {
            client: self.id,
            workload: self.workload,
            op,
            key: key.to_owned(),
            value: value.to_owned(),
            seen,
            context,
            node: self.node(key),
            start_ms,
            end_ms: self.history.now_ms(),
            ok,
            error: result.err().map(|e| e.to_string()),
        });
        ok
    }
}

/// A context as hex (empty for none).
fn hex(context: Option<&bytes::Bytes>) -> String {
    context
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// Runs client `id` until `stop` turns true.
pub async fn run_client(
    id: usize,
    workload: Workload,
    client: Client,
    history: Arc<History>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = Ctx {
        id,
        workload,
        client,
        history,
    };
    let table = ctx.client.table(table_of(workload));
    let q = Consistency::QUORUM;
    let mut n: u64 = 0;
    while !*stop.borrow() {
        n += 1;
        let key = key_of(workload, n % KEYS);
        let value = format!("c{id}-{n}");
        let start = ctx.history.now_ms();
        let ok = match workload {
            Workload::Set | Workload::Delete => {
                let r = table
                    .put(key.clone(), [(value.clone(), "1")])
                    .consistency(q)
                    .send()
                    .await
                    .map(|_| ());
                let mut ok = ctx.record(Op::Add, &key, &value, (vec![], String::new()), start, r);
                // Half the acknowledged adds of the delete workload are deleted again.
                if workload == Workload::Delete && ok && n.is_multiple_of(2) {
                    let start = ctx.history.now_ms();
                    match table
                        .get_columns(key.clone(), &[value.as_str()])
                        .consistency(q)
                        .send()
                        .await
                    {
                        Ok(row) if !row.values(&value).is_empty() => {
                            let start = ctx.history.now_ms();
                            let r = table
                                .delete(key.clone(), value.clone())
                                .context_from(&row)
                                .consistency(q)
                                .send()
                                .await
                                .map(|_| ());
                            let sent = hex(row.context(&value));
                            ok = ctx.record(Op::Delete, &key, &value, (vec![], sent), start, r);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            ok = ctx.record(
                                Op::Read,
                                &key,
                                "",
                                (vec![], String::new()),
                                start,
                                Err(e),
                            );
                        }
                    }
                }
                ok
            }
            Workload::Register => {
                match table
                    .get_columns(key.clone(), &[REGISTER_COLUMN])
                    .consistency(q)
                    .send()
                    .await
                {
                    Ok(row) => {
                        let seen: Vec<String> = row
                            .values(REGISTER_COLUMN)
                            .into_iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect();
                        let start = ctx.history.now_ms();
                        let r = table
                            .put(key.clone(), [(REGISTER_COLUMN, value.clone())])
                            .context_from(&row)
                            .consistency(q)
                            .send()
                            .await
                            .map(|_| ());
                        let sent = hex(row.context(REGISTER_COLUMN));
                        ctx.record(Op::Add, &key, &value, (seen, sent), start, r)
                    }
                    Err(e) => {
                        ctx.record(Op::Read, &key, "", (vec![], String::new()), start, Err(e))
                    }
                }
            }
        };
        if !ok {
            tokio::select! {
                _ = tokio::time::sleep(BACKOFF_AFTER_ERROR) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
