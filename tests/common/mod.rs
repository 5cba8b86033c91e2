//! Test harness for the real `sibyl` binary: start a node process on free ports in a temp
//! data directory, wait until it answers a handshake (polling with a deadline), talk to it
//! with a small blocking raw-frame client, stop it by its own PID (SIGTERM or SIGKILL).
//! A node is always killed on drop.
#![allow(dead_code)]

pub mod launcher;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use launcher::SibylProcess;

use bytes::Bytes;
use sibyl_protocol::frame::FrameHeader;
use sibyl_protocol::{
    Cell, ColumnWrite, ConflictMode, Consistency, Frame, Request, Response, RowInsert, Selector,
    TableOptions, DEFAULT_MAX_FRAME_LEN, HEADER_LEN, PROTOCOL_VERSION,
};

/// How long a node may take to start answering.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// Read timeout of the test client (a hung server fails the test instead of hanging it).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A node started with `extra` flags in a temp directory of its own (data and log),
/// which lives as long as the returned guard.
pub fn start_node(extra: &[&str]) -> (tempfile::TempDir, NodeProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let n = NodeProcess::start(
        &tmp.path().join("data"),
        &tmp.path().join("node.log"),
        extra,
    );
    (tmp, n)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    launcher::free_addr().port()
}

/// A `sibyl` child process whose output (stdout and log) goes to one file.
pub struct NodeProcess {
    process: SibylProcess,
    /// Client address.
    pub addr: SocketAddr,
    /// Peer address.
    pub peer: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// File receiving the node's output.
    pub log: PathBuf,
}

impl NodeProcess {
    /// Spawns a node on fresh ports without waiting for it.
    pub fn spawn(data_dir: &Path, log: &Path, extra: &[&str]) -> NodeProcess {
        let mut process = SibylProcess::new(data_dir);
        process.spawn(extra, log, log);
        NodeProcess {
            addr: process.client,
            peer: process.peer,
            process,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// Spawns a node and waits until it completes a handshake.
    pub fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> NodeProcess {
        let mut n = NodeProcess::spawn(data_dir, log, extra);
        n.wait_ready();
        n
    }

    /// Polls until a handshake succeeds; panics with the node's log if it exits first or
    /// the deadline passes.
    pub fn wait_ready(&mut self) {
        let log = self.log.clone();
        self.process.wait_until(
            "ready",
            START_DEADLINE,
            |p| TestClient::connect(p.client).is_ok(),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
    }

    /// The node's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Sends `sig` to the process (by its own PID).
    pub fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    /// Waits for the process to exit (deadline [`launcher::EXIT_DEADLINE`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let log = self.log.clone();
        self.process
            .wait_exit(|| std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// A handshaken client.
    pub fn client(&self) -> TestClient {
        TestClient::connect(self.addr).unwrap()
    }
}

/// A blocking client speaking raw frames.
pub struct TestClient {
    /// The socket (tests write garbage into it directly).
    pub stream: TcpStream,
    next_stream: u32,
}

impl TestClient {
    /// Connects without a handshake.
    pub fn connect_raw(addr: SocketAddr) -> std::io::Result<TestClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(TestClient {
            stream,
            next_stream: 1,
        })
    }

    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr) -> std::io::Result<TestClient> {
        let mut c = TestClient::connect_raw(addr)?;
        let resp = c.call(Request::Handshake {
            version: PROTOCOL_VERSION,
            client: "sibyl-tests".into(),
        })?;
        match resp {
            Response::Handshake { .. } => Ok(c),
            other => Err(std::io::Error::other(format!(
                "handshake failed: {other:?}"
            ))),
        }
    }

    /// Sends a request; returns its stream id.
    pub fn send(&mut self, req: &Request) -> std::io::Result<u32> {
        let id = self.next_stream;
        self.next_stream += 1;
        let bytes = req
            .to_frame(id)
            .map_err(std::io::Error::other)?
            .to_vec(DEFAULT_MAX_FRAME_LEN)
            .map_err(std::io::Error::other)?;
        self.stream.write_all(&bytes)?;
        Ok(id)
    }

    /// Reads one frame; `Ok(None)` when the server closed the connection.
    pub fn recv_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let mut head = [0u8; HEADER_LEN];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
        let header =
            FrameHeader::decode(&head, DEFAULT_MAX_FRAME_LEN).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; header.body_len as usize];
        self.stream.read_exact(&mut body)?;
        Frame::from_parts(&header, Bytes::from(body))
            .map(Some)
            .map_err(std::io::Error::other)
    }

    /// Reads one response.
    pub fn recv(&mut self) -> std::io::Result<(u32, Response)> {
        let frame = self
            .recv_frame()?
            .ok_or_else(|| std::io::Error::other("connection closed"))?;
        let resp = Response::from_frame(&frame).map_err(std::io::Error::other)?;
        Ok((frame.stream_id, resp))
    }

    /// True when the server has closed the connection (reads EOF or reset).
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }

    /// Sends a request and waits for its response.
    pub fn call(&mut self, req: Request) -> std::io::Result<Response> {
        let id = self.send(&req)?;
        let (got, resp) = self.recv()?;
        if got != id {
            return Err(std::io::Error::other(format!(
                "answer on stream {got} to a request on stream {id}: {resp:?}"
            )));
        }
        Ok(resp)
    }

    /// Creates a table with replication factor 1 and consistency ONE.
    pub fn create_table(&mut self, name: &str, mode: ConflictMode) {
        let options = TableOptions {
            replication_factor: 1,
            read_consistency: Consistency::ONE,
            write_consistency: Consistency::ONE,
            conflict_mode: mode,
            ..TableOptions::default()
        };
        let r = self
            .call(Request::CreateTable {
                name: name.into(),
                options,
                if_not_exists: false,
            })
            .unwrap();
        assert!(
            matches!(r, Response::SchemaChanged { applied: true, .. }),
            "{r:?}"
        );
    }

    /// Writes one column.
    pub fn put(
        &mut self,
        table: &str,
        key: &[u8],
        column: &[u8],
        value: &[u8],
        context: Bytes,
    ) -> Response {
        self.call(insert_request(
            table, key, column, value, context, None, None,
        ))
        .unwrap()
    }

    /// Reads one column.
    pub fn get(&mut self, table: &str, key: &[u8], column: &[u8]) -> Option<Cell> {
        let r = self
            .call(Request::Get {
                table: table.into(),
                key: Bytes::copy_from_slice(key),
                selector: Selector::Columns(vec![Bytes::copy_from_slice(column)]),
                consistency: None,
            })
            .unwrap();
        match r {
            Response::Row { mut cells, .. } => {
                assert!(cells.len() <= 1);
                cells.pop()
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An insert of one column.
pub fn insert_request(
    table: &str,
    key: &[u8],
    column: &[u8],
    value: &[u8],
    context: Bytes,
    ttl_secs: Option<u32>,
    timestamp_micros: Option<i64>,
) -> Request {
    Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: table.into(),
            key: Bytes::copy_from_slice(key),
            ttl_secs,
            timestamp_micros,
            columns: vec![ColumnWrite {
                name: Bytes::copy_from_slice(column),
                value: Bytes::copy_from_slice(value),
                context,
            }],
        },
        consistency: None,
    }
}

/// Live values of a cell, sorted.
pub fn values(cell: &Cell) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = cell.values().map(|b| b.to_vec()).collect();
    v.sort();
    v
}
