//! An in-process test server speaking the real wire format through `FrameCodec`.
//!
//! It keeps a tiny causal store (per cell: siblings tagged with dots; a context is the
//! list of dots the reader saw; a write removes the siblings its context names and adds
//! one new sibling), so tests can check that the client carries contexts. Special keys
//! script the server's behaviour:
//! - `wait:<gate>`: the answer is held until a request with key `open:<gate>` arrives
//!   (out-of-order replies without timing);
//! - `open:<gate>`: opens the gate, answered at once;
//! - `hang`: never answered;
//! - `drop`: the server closes the connection instead of answering;
//! - `overload`: answered with an OVERLOADED error;
//! - `corrupt`: answered with a frame whose checksum is wrong;
//! - `connection-error`: the server sends a connection error (stream 0, opcode 0x00,
//!   message "input unreadable") and closes the connection, as a real node does after
//!   unreadable input.
//!
//! Every response's `meta.replicas` holds the server's name and the consistency the request
//! carried (`"{name}"`, `"{consistency:?}"`) so tests can check what arrived.
//! Threading: one accept task owns a `JoinSet` of connection tasks, each owning a
//! `JoinSet` of request tasks; `shutdown` (or drop) aborts them all, closing every socket.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sibyl_protocol::message::types::{Cell, ResponseMeta, Selector, Sibling};
use sibyl_protocol::{
    Consistency, DeleteTarget, ErrorKind, Frame, FrameCodec, Mutation, Opcode, Request, Response,
    RowDelete, RowInsert, ServerError, TableOptions, Topology, DEFAULT_MAX_FRAME_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{Decoder, Encoder};

/// One stored version of a cell.
#[derive(Debug, Clone)]
struct Version {
    value: Option<Bytes>,
    dot: u64,
}

#[derive(Debug, Default)]
struct Store {
    tables: HashMap<String, TableOptions>,
    /// (table, key, column) -> siblings.
    cells: BTreeMap<(String, Bytes, Bytes), Vec<Version>>,
    next_dot: u64,
}

fn encode_context(dots: &[u64]) -> Bytes {
    let mut b = BytesMut::new();
    for d in dots {
        b.put_u64(*d);
    }
    b.freeze()
}

fn decode_context(mut ctx: Bytes) -> Vec<u64> {
    let mut dots = Vec::new();
    while ctx.remaining() >= 8 {
        dots.push(ctx.get_u64());
    }
    dots
}

impl Store {
    fn write(
        &mut self,
        table: &str,
        key: &Bytes,
        column: &Bytes,
        value: Option<Bytes>,
        context: Bytes,
    ) {
        let seen = decode_context(context);
        self.next_dot += 1;
        let dot = self.next_dot;
        let versions = self
            .cells
            .entry((table.to_owned(), key.clone(), column.clone()))
            .or_default();
        versions.retain(|v| !seen.contains(&v.dot));
        versions.push(Version { value, dot });
    }

    fn cell(&self, table: &str, key: &Bytes, column: &Bytes) -> Option<Cell> {
        let versions = self
            .cells
            .get(&(table.to_owned(), key.clone(), column.clone()))?;
        Some(Cell {
            name: column.clone(),
            siblings: versions
                .iter()
                .map(|v| Sibling {
                    value: v.value.clone(),
                    timestamp_micros: v.dot as i64,
                    ttl_secs: None,
                })
                .collect(),
            context: encode_context(&versions.iter().map(|v| v.dot).collect::<Vec<_>>()),
        })
    }

    fn columns_of(&self, table: &str, key: &Bytes) -> Vec<Bytes> {
        self.cells
            .keys()
            .filter(|(t, k, _)| t == table && k == key)
            .map(|(_, _, c)| c.clone())
            .collect()
    }
}

/// Shared state of a test server.
#[derive(Debug)]
pub struct ServerState {
    name: String,
    supported: Vec<u8>,
    store: Mutex<Store>,
    gates: Mutex<HashMap<String, Arc<Notify>>>,
    /// Connections that completed a handshake.
    pub handshakes: AtomicUsize,
    /// Requests (other than handshakes and TOPOLOGY) received.
    pub requests: AtomicUsize,
    /// TOPOLOGY requests received (a token-aware client sends them on its own).
    pub topology_requests: AtomicUsize,
    /// The answer to TOPOLOGY (empty unless a test sets one).
    pub topology: Mutex<Topology>,
}

impl ServerState {
    /// Answers TOPOLOGY with `t` from now on.
    pub fn set_topology(&self, t: Topology) {
        *self.topology.lock().unwrap() = t;
    }
}

impl ServerState {
    fn gate(&self, name: &str) -> Arc<Notify> {
        let mut gates = self.gates.lock().unwrap();
        Arc::clone(
            gates
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Notify::new())),
        )
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    task: Option<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with a free port, speaking protocol version 1.
    pub async fn start(name: &str) -> TestServer {
        TestServer::start_with_versions(name, vec![1]).await
    }

    /// Starts a server that speaks only `supported`.
    pub async fn start_with_versions(name: &str, supported: Vec<u8>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState {
            name: name.to_owned(),
            supported,
            store: Mutex::new(Store::default()),
            gates: Mutex::new(HashMap::new()),
            handshakes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            topology_requests: AtomicUsize::new(0),
            topology: Mutex::new(Topology::default()),
        });
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, _)) = accepted else { return };
                        conns.spawn(serve_connection(sock, Arc::clone(&st)));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TestServer {
            addr,
            state,
            task: Some(task),
        }
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and closes every connection; returns once they are closed.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn serve_connection(sock: TcpStream, state: Arc<ServerState>) {
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Frame, bool)>();
    let mut handshaken = false;
    let mut requests = JoinSet::new();
    let writer = async move {
        let mut enc = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        let mut out = BytesMut::new();
        while let Some((frame, corrupt)) = rx.recv().await {
            out.clear();
            enc.encode(frame, &mut out).unwrap();
            if corrupt {
                let last = out.len() - 1;
                out[last] ^= 0x01;
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    // The reader owns the senders and the request tasks; when it returns they are dropped,
    // so the writer flushes what was queued (e.g. a final error) and then stops.
    let reader = async move {
        loop {
            let frame = loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => break f,
                    Ok(None) => {}
                    Err(e) => {
                        let err =
                            Response::Error(ServerError::new(ErrorKind::Protocol, e.to_string()));
                        let _ = tx.send((err.to_frame(0, Opcode::Ping).unwrap(), false));
                        return;
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            let Ok(opcode) = Opcode::from_u8(frame.opcode) else {
                return;
            };
            let request = match Request::from_frame(&frame) {
                Ok(r) => r,
                Err(e) => {
                    let err = Response::Error(ServerError::new(ErrorKind::Protocol, e.to_string()));
                    let _ = tx.send((err.to_frame(frame.stream_id, opcode).unwrap(), false));
                    return;
                }
            };
            if !handshaken {
                let Request::Handshake { version, .. } = request else {
                    return;
                };
                if !state.supported.contains(&version) {
                    let err = Response::Error(ServerError::new(
                        ErrorKind::UnsupportedVersion {
                            supported: state.supported.clone(),
                        },
                        format!("version {version} not supported"),
                    ));
                    let refusal = err.to_frame_version(version, frame.stream_id, opcode);
                    let _ = tx.send((refusal.unwrap(), false));
                    return;
                }
                handshaken = true;
                codec.set_max_frame_len(DEFAULT_MAX_FRAME_LEN);
                state.handshakes.fetch_add(1, Ordering::SeqCst);
                let ok = Response::Handshake {
                    version,
                    server: state.name.clone(),
                    max_frame_len: DEFAULT_MAX_FRAME_LEN as u32,
                };
                let _ = tx.send((ok.to_frame(frame.stream_id, opcode).unwrap(), false));
                continue;
            }
            if matches!(request, Request::Topology) {
                state.topology_requests.fetch_add(1, Ordering::SeqCst);
            } else {
                state.requests.fetch_add(1, Ordering::SeqCst);
            }
            if request_key(&request).is_some_and(|k| k.as_ref() == b"drop") {
                return;
            }
            if request_key(&request).is_some_and(|k| k.as_ref() == b"connection-error") {
                let err = ServerError::new(ErrorKind::Protocol, "input unreadable");
                let frame = Response::error_frame(
                    sibyl_protocol::frame::CONNECTION_ERROR_STREAM_ID,
                    sibyl_protocol::frame::CONNECTION_ERROR_OPCODE,
                    &err,
                )
                .unwrap();
                let _ = tx.send((frame, false));
                return;
            }
            let st = Arc::clone(&state);
            let tx = tx.clone();
            requests.spawn(async move {
                let corrupt = request_key(&request).is_some_and(|k| k.as_ref() == b"corrupt");
                if let Some(resp) = handle(&st, request).await {
                    let _ = tx.send((resp.to_frame(frame.stream_id, opcode).unwrap(), corrupt));
                }
            });
        }
    };
    tokio::join!(reader, writer);
}

fn request_key(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Get { key, .. } => Some(key),
        Request::Insert { insert, .. } => Some(&insert.key),
        Request::Delete { delete, .. } => Some(&delete.key),
        _ => None,
    }
}

fn meta(state: &ServerState, consistency: Option<Consistency>) -> ResponseMeta {
    ResponseMeta {
        replicas: vec![state.name.clone(), format!("{consistency:?}")],
        read_repair: false,
        stand_ins: Vec::new(),
    }
}

async fn handle(state: &ServerState, request: Request) -> Option<Response> {
    if let Some(key) = request_key(&request) {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(gate) = key.strip_prefix("wait:") {
            state.gate(gate).notified().await;
        } else if let Some(gate) = key.strip_prefix("open:") {
            state.gate(gate).notify_one();
        } else if key == "hang" {
            std::future::pending::<()>().await;
        } else if key == "overload" {
            return Some(Response::Error(ServerError::new(
                ErrorKind::Overloaded,
                "busy",
            )));
        }
    }
    let mut store = state.store.lock().unwrap();
    let resp = match request {
        Request::Handshake { .. } => {
            Response::Error(ServerError::new(ErrorKind::Protocol, "second handshake"))
        }
        Request::Ping => Response::Pong,
        Request::Topology => Response::Topology(state.topology.lock().unwrap().clone()),
        Request::Flush { .. }
        | Request::Compact { .. }
        | Request::TableStats { .. }
        | Request::RemoveNode { .. }
        | Request::Decommission
        | Request::Repair { .. }
        | Request::RepairStatus { .. }
        | Request::Hints
        | Request::Streams { .. }
        | Request::Cleanup { .. }
        | Request::Rebalance
        | Request::Move { .. }
        | Request::Metrics
        | Request::DescribeCluster
        | Request::Health
        | Request::AuthStart { .. }
        | Request::AuthFinish { .. }
        | Request::CreateUser { .. }
        | Request::AlterUser { .. }
        | Request::DropUser { .. }
        | Request::ListUsers
        | Request::Grant { .. }
        | Request::Revoke { .. } => Response::Error(ServerError::new(
            ErrorKind::Invalid,
            "the mock server has no admin commands or users",
        )),
        Request::CreateTable {
            name,
            options,
            if_not_exists,
        } => {
            if store.tables.contains_key(&name) {
                if if_not_exists {
                    Response::SchemaChanged {
                        table: name,
                        applied: false,
                    }
                } else {
                    Response::Error(ServerError::new(
                        ErrorKind::TableExists {
                            table: name.clone(),
                        },
                        "exists",
                    ))
                }
            } else {
                store.tables.insert(name.clone(), options);
                Response::SchemaChanged {
                    table: name,
                    applied: true,
                }
            }
        }
        Request::DropTable { name, if_exists } => match store.tables.remove(&name) {
            Some(_) => Response::SchemaChanged {
                table: name,
                applied: true,
            },
            None if if_exists => Response::SchemaChanged {
                table: name,
                applied: false,
            },
            None => Response::Error(ServerError::new(
                ErrorKind::UnknownTable { table: name },
                "no such table",
            )),
        },
        Request::ListTables => Response::Tables(store.tables.keys().cloned().collect()),
        Request::DescribeTable { name } => match store.tables.get(&name) {
            Some(o) => Response::Table {
                name,
                options: o.clone(),
            },
            None => Response::Error(ServerError::new(
                ErrorKind::UnknownTable { table: name },
                "no such table",
            )),
        },
        Request::Insert {
            insert,
            consistency,
        } => {
            apply_insert(&mut store, insert);
            Response::Written {
                meta: meta(state, consistency),
            }
        }
        Request::Delete {
            delete,
            consistency,
        } => {
            apply_delete(&mut store, delete);
            Response::Written {
                meta: meta(state, consistency),
            }
        }
        Request::Batch {
            mutations,
            consistency,
        } => {
            for m in mutations {
                match m {
                    Mutation::Insert(i) => apply_insert(&mut store, i),
                    Mutation::Delete(d) => apply_delete(&mut store, d),
                }
            }
            Response::Written {
                meta: meta(state, consistency),
            }
        }
        Request::Get {
            table,
            key,
            selector,
            consistency,
        } => {
            let (names, limit, next_from): (Vec<Bytes>, Option<usize>, bool) = match selector {
                Selector::All => (store.columns_of(&table, &key), None, false),
                Selector::Columns(names) => (names, None, false),
                Selector::Slice {
                    from,
                    to,
                    limit,
                    paging,
                } => {
                    let start = paging.or(from);
                    let names = store
                        .columns_of(&table, &key)
                        .into_iter()
                        .filter(|c| {
                            start.as_ref().is_none_or(|s| c >= s)
                                && to.as_ref().is_none_or(|t| c < t)
                        })
                        .collect();
                    (names, Some(limit as usize), true)
                }
            };
            let mut cells: Vec<Cell> = names
                .iter()
                .filter_map(|n| store.cell(&table, &key, n))
                .collect();
            cells.sort_by(|a, b| a.name.cmp(&b.name));
            let mut next_page = None;
            if let (Some(limit), true) = (limit, next_from) {
                if limit > 0 && cells.len() > limit {
                    cells.truncate(limit);
                    let mut token = cells.last().map(|c| c.name.to_vec()).unwrap_or_default();
                    token.push(0);
                    next_page = Some(Bytes::from(token));
                }
            }
            Response::Row {
                cells,
                next_page,
                meta: meta(state, consistency),
            }
        }
    };
    Some(resp)
}

fn apply_insert(store: &mut Store, insert: RowInsert) {
    for c in insert.columns {
        store.write(
            &insert.table,
            &insert.key,
            &c.name,
            Some(c.value),
            c.context,
        );
    }
}

fn apply_delete(store: &mut Store, delete: RowDelete) {
    match delete.target {
        DeleteTarget::Columns(cells) => {
            for c in cells {
                store.write(&delete.table, &delete.key, &c.name, None, c.context);
            }
        }
        DeleteTarget::Row { contexts } => {
            let cols = store.columns_of(&delete.table, &delete.key);
            for col in cols {
                let ctx = contexts
                    .iter()
                    .find(|c| c.name == col)
                    .map(|c| c.context.clone())
                    .unwrap_or_default();
                store.write(&delete.table, &delete.key, &col, None, ctx);
            }
        }
    }
}
