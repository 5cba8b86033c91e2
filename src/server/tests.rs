//! Server tests over a real service and loopback sockets, in process.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sibyl_protocol::{
    ErrorKind, Frame, FrameCodec, Request, Response, DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Decoder;

use super::handler::{RequestHandler, Started};
use super::{serve, ServerOptions, DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT};
use crate::service::{Service, ServiceOptions};
use crate::versioning::SystemClock;

struct Harness {
    _dir: tempfile::TempDir,
    requests: Arc<crate::metrics::RequestMetrics>,
    addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(max_in_flight: usize) -> Harness {
    start_with(max_in_flight, 8, None).await
}

async fn start_with(
    max_in_flight: usize,
    max_connections: usize,
    idle_timeout: Option<Duration>,
) -> Harness {
    start_opts(ServerOptions {
        max_connections,
        max_in_flight,
        max_frame_len: DEFAULT_MAX_FRAME_LEN,
        max_request_data_in_flight: DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT,
        idle_timeout,
        handshake_timeout: Duration::from_secs(10),
        max_pending_handshakes: max_connections,
        shutdown_grace: Duration::from_secs(10),
        requests: Arc::new(crate::metrics::RequestMetrics::new()),
        auth: crate::auth::Authenticator::open_access(),
    })
    .await
}

async fn start_opts(opts: ServerOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::open(ServiceOptions {
        sync: sibyl_storage::SyncMode::default(),
        memtable_size: 1 << 20,
        node_address: "test".into(),
        ..ServiceOptions::new(dir.path().to_path_buf(), Arc::new(SystemClock))
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = watch::channel(false);
    let requests = opts.requests.clone();
    let server = tokio::spawn(serve(listener, Arc::new(service), opts, rx));
    Harness {
        _dir: dir,
        requests,
        addr,
        shutdown,
        server,
    }
}

struct Client {
    stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let mut c = Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            codec: FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN),
            buf: BytesMut::new(),
        };
        let r = c
            .call(Request::Handshake {
                version: PROTOCOL_VERSION,
                client: "t".into(),
            })
            .await;
        assert!(matches!(r, Some(Response::Handshake { .. })), "{r:?}");
        c
    }

    async fn send(&mut self, req: &Request, stream_id: u32) {
        let bytes = req
            .to_frame(stream_id)
            .unwrap()
            .to_vec(DEFAULT_MAX_FRAME_LEN)
            .unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    async fn call(&mut self, req: Request) -> Option<Response> {
        self.send(&req, 1).await;
        let f = self.recv().await?;
        Some(Response::from_frame(&f).unwrap())
    }
}

#[tokio::test]
async fn server_counts_each_answered_request_and_error_in_the_request_metrics() {
    use sibyl_protocol::{ErrorCode, Opcode};
    let h = start(8).await;
    let mut c = Client::connect(h.addr).await;
    assert_eq!(c.call(Request::Ping).await, Some(Response::Pong));
    assert!(matches!(
        c.call(Request::ListTables).await,
        Some(Response::Tables(_))
    ));
    let missing = Request::TableStats {
        table: "nope".into(),
    };
    assert!(matches!(c.call(missing).await, Some(Response::Error(_))));
    // A frame whose header claims a body past the cap: a PROTOCOL error, and the
    // connection closes.
    let mut bad = Request::Ping.to_frame(9).unwrap().to_vec(1 << 20).unwrap();
    bad[12] ^= 0xff;
    c.stream.write_all(&bad).await.unwrap();
    while c.recv().await.is_some() {}
    let m = &h.requests;
    assert_eq!(m.count(Opcode::Ping), 1, "the handshake is not counted");
    assert_eq!(m.count(Opcode::ListTables), 1);
    assert_eq!(m.count(Opcode::TableStats), 1);
    assert_eq!(m.errors(ErrorCode::UnknownTable), 1);
    assert_eq!(m.errors(ErrorCode::Protocol), 1);
    assert_eq!(m.errors(ErrorCode::Overloaded), 0);
}

#[tokio::test]
async fn server_without_in_flight_permits_answers_overloaded() {
    let h = start(0).await;
    let mut c = Client::connect(h.addr).await;
    // PING needs no permit; anything executed does.
    assert_eq!(c.call(Request::Ping).await, Some(Response::Pong));
    let r = c.call(Request::ListTables).await;
    let Some(Response::Error(e)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert!(e.retry_safe());
}

#[tokio::test]
async fn server_answers_every_pipelined_request_in_one_burst() {
    let h = start(64).await;
    let mut c = Client::connect(h.addr).await;
    let mut burst = BytesMut::new();
    for id in 1..=200u32 {
        Request::Ping
            .to_frame(id)
            .unwrap()
            .encode(&mut burst, DEFAULT_MAX_FRAME_LEN)
            .unwrap();
    }
    c.stream.write_all(&burst).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let f = c.recv().await.unwrap();
        assert_eq!(Response::from_frame(&f).unwrap(), Response::Pong);
        ids.push(f.stream_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<u32>>());
}

#[tokio::test]
async fn server_shutdown_closes_connections_and_returns() {
    let h = start(64).await;
    let mut c = Client::connect(h.addr).await;
    h.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), h.server)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(c.recv().await.is_none(), "connection left open");
    assert!(
        TcpStream::connect(h.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn server_drops_a_client_that_never_reads_its_responses() {
    // Regression (review): the write of queued responses had no deadline, so a client
    // that pipelined requests and never read held its connection slot forever.
    let h = start_with(64, 1, Some(Duration::from_millis(300))).await;
    let mut a = Client::connect(h.addr).await;
    let table_opts = sibyl_protocol::TableOptions {
        replication_factor: 1,
        read_consistency: sibyl_protocol::Consistency::ONE,
        write_consistency: sibyl_protocol::Consistency::ONE,
        ..sibyl_protocol::TableOptions::default()
    };
    let r = a
        .call(Request::CreateTable {
            name: "t".into(),
            options: table_opts,
            if_not_exists: false,
        })
        .await;
    assert!(matches!(r, Some(Response::SchemaChanged { .. })), "{r:?}");
    let r = a.call(insert_of(1 << 20)).await;
    assert!(matches!(r, Some(Response::Written { .. })), "{r:?}");
    // 64 reads of a 1 MiB cell: far more than the socket buffers hold. Never read them.
    let get = Request::Get {
        table: "t".into(),
        key: bytes::Bytes::from_static(b"k"),
        selector: sibyl_protocol::Selector::All,
        consistency: None,
    };
    for id in 10..74u32 {
        a.send(&get, id).await;
    }
    // The only slot frees once the server gives up on A.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut b = TcpStream::connect(h.addr).await.unwrap();
        let hs = Request::Handshake {
            version: PROTOCOL_VERSION,
            client: "b".into(),
        };
        b.write_all(
            &hs.to_frame(1)
                .unwrap()
                .to_vec(DEFAULT_MAX_FRAME_LEN)
                .unwrap(),
        )
        .await
        .unwrap();
        let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        let mut buf = BytesMut::new();
        let frame = loop {
            if let Some(f) = codec.decode(&mut buf).unwrap() {
                break Some(f);
            }
            if b.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break None;
            }
        };
        if let Some(Response::Handshake { .. }) = frame.map(|f| Response::from_frame(&f).unwrap()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(a);
}

/// A handler that answers every request from a future which waits for `release`, or
/// panics when the request is a DROP_TABLE: the seam a coordinator awaiting its peers
/// plugs into.
struct Awaiting {
    release: Arc<tokio::sync::Notify>,
}

type BoxedAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

impl RequestHandler for Awaiting {
    type Pending = BoxedAnswer;

    fn start(self: &Arc<Self>, request: Request) -> Started<BoxedAnswer> {
        let release = Arc::clone(&self.release);
        Started::Pending(Box::pin(async move {
            if matches!(request, Request::DropTable { .. }) {
                panic!("handler failure (expected by the test)");
            }
            release.notified().await;
            Response::Tables(vec!["answered".into()])
        }))
    }

    fn insert_group(
        &self,
        inserts: &[(
            &sibyl_protocol::RowInsert,
            Option<sibyl_protocol::Consistency>,
        )],
    ) -> Vec<Result<(), sibyl_protocol::ServerError>> {
        inserts.iter().map(|_| Ok(())).collect()
    }

    fn written_body(&self) -> bytes::Bytes {
        bytes::Bytes::new()
    }
}

async fn start_awaiting() -> (Harness, Arc<tokio::sync::Notify>) {
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = watch::channel(false);
    let opts = ServerOptions {
        max_connections: 8,
        max_in_flight: 64,
        max_frame_len: DEFAULT_MAX_FRAME_LEN,
        max_request_data_in_flight: DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT,
        idle_timeout: None,
        handshake_timeout: Duration::from_secs(10),
        max_pending_handshakes: 8,
        shutdown_grace: Duration::from_secs(10),
        requests: Arc::default(),
        auth: crate::auth::Authenticator::open_access(),
    };
    let requests = Arc::clone(&opts.requests);
    let handler = Arc::new(Awaiting {
        release: Arc::clone(&release),
    });
    let server = tokio::spawn(serve(listener, handler, opts, rx));
    let h = Harness {
        _dir: dir,
        requests,
        addr,
        shutdown,
        server,
    };
    (h, release)
}

#[tokio::test]
async fn server_async_handler_answer_waits_without_blocking_the_connection() {
    let (h, release) = start_awaiting().await;
    let mut c = Client::connect(h.addr).await;
    c.send(&Request::ListTables, 7).await;
    // The pending answer does not hold up the connection: a PING on it is answered first.
    c.send(&Request::Ping, 8).await;
    let f = c.recv().await.unwrap();
    assert_eq!(f.stream_id, 8);
    assert_eq!(Response::from_frame(&f).unwrap(), Response::Pong);
    release.notify_one();
    let f = c.recv().await.unwrap();
    assert_eq!(f.stream_id, 7);
    assert_eq!(
        Response::from_frame(&f).unwrap(),
        Response::Tables(vec!["answered".into()])
    );
}

#[tokio::test]
async fn server_handler_future_that_panics_is_answered_with_a_server_error() {
    let (h, _release) = start_awaiting().await;
    let mut c = Client::connect(h.addr).await;
    c.send(
        &Request::DropTable {
            name: "t".into(),
            if_exists: false,
        },
        3,
    )
    .await;
    let f = c.recv().await.unwrap();
    assert_eq!(f.stream_id, 3);
    let Response::Error(e) = Response::from_frame(&f).unwrap() else {
        panic!("expected an error")
    };
    assert_eq!(e.kind, ErrorKind::Server);
    // The connection carries on, and shuts down cleanly (no pending answer left counted).
    assert_eq!(c.call(Request::Ping).await, Some(Response::Pong));
    h.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), h.server)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
}

/// Limits for the handshake tests: 8 connections, `pending` of them in their handshake,
/// `deadline` to finish it.
fn handshake_limits(pending: usize, deadline: Duration) -> ServerOptions {
    ServerOptions {
        max_connections: 8,
        max_in_flight: 64,
        max_frame_len: DEFAULT_MAX_FRAME_LEN,
        max_request_data_in_flight: DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT,
        idle_timeout: None,
        handshake_timeout: deadline,
        max_pending_handshakes: pending,
        shutdown_grace: Duration::from_secs(10),
        requests: Arc::new(crate::metrics::RequestMetrics::new()),
        auth: crate::auth::Authenticator::open_access(),
    }
}

/// Reads until the server closes `s`; panics if it is still open after a generous
/// bound (the behaviour under test is that it closes at all).
async fn closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the server never closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn server_closes_a_silent_connection_at_the_handshake_deadline() {
    let h = start_opts(handshake_limits(8, Duration::from_millis(200))).await;
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    closed_by_server(&mut silent).await;
    // A client that handshakes keeps its connection past the deadline.
    let mut c = Client::connect(h.addr).await;
    let mut late = TcpStream::connect(h.addr).await.unwrap();
    closed_by_server(&mut late).await;
    assert_eq!(c.call(Request::Ping).await, Some(Response::Pong));
}

#[tokio::test]
async fn server_silent_connections_past_the_pending_cap_close_the_oldest() {
    // A deadline far away: only the cap can free the slots here.
    let h = start_opts(handshake_limits(2, Duration::from_secs(600))).await;
    let mut c = Client::connect(h.addr).await;
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(TcpStream::connect(h.addr).await.unwrap());
    }
    // Of seven silent connections the five oldest are evicted; at most two hold a slot.
    for s in silent.iter_mut().take(5) {
        closed_by_server(s).await;
    }
    // So a new client gets a slot at once and handshakes, and the handshaken one was
    // never touched.
    let mut d = Client::connect(h.addr).await;
    assert_eq!(d.call(Request::Ping).await, Some(Response::Pong));
    assert_eq!(c.call(Request::Ping).await, Some(Response::Pong));
}

#[tokio::test]
async fn server_large_frame_waits_for_the_request_data_budget() {
    // A budget of one largest frame: a header declaring one takes all of it.
    let h = start_opts(ServerOptions {
        max_request_data_in_flight: DEFAULT_MAX_FRAME_LEN,
        ..handshake_limits(8, Duration::from_secs(60))
    })
    .await;
    let mut small = Client::connect(h.addr).await;
    let r = small
        .call(Request::CreateTable {
            name: "t".into(),
            options: sibyl_protocol::TableOptions {
                replication_factor: 1,
                read_consistency: sibyl_protocol::Consistency::ONE,
                write_consistency: sibyl_protocol::Consistency::ONE,
                ..sibyl_protocol::TableOptions::default()
            },
            if_not_exists: false,
        })
        .await;
    assert!(matches!(r, Some(Response::SchemaChanged { .. })), "{r:?}");
    let mut head = Request::Ping
        .to_frame(1)
        .unwrap()
        .to_vec(DEFAULT_MAX_FRAME_LEN)
        .unwrap();
    head.truncate(sibyl_protocol::HEADER_LEN);
    let declared = u32::try_from(DEFAULT_MAX_FRAME_LEN - sibyl_protocol::HEADER_LEN).unwrap();
    let at = sibyl_protocol::frame::OFFSET_BODY_LEN;
    head[at..at + 4].copy_from_slice(&declared.to_be_bytes());
    // The hog's PING and header arrive in one read: the answer to the PING is written
    // once the header's share of the budget is taken.
    let mut hog = Client::connect(h.addr).await;
    let mut ping_then_header = Request::Ping
        .to_frame(2)
        .unwrap()
        .to_vec(DEFAULT_MAX_FRAME_LEN)
        .unwrap();
    ping_then_header.extend_from_slice(&head);
    hog.stream.write_all(&ping_then_header).await.unwrap();
    let pong = hog.recv().await.unwrap();
    assert_eq!(Response::from_frame(&pong).unwrap(), Response::Pong);
    // So a large request now waits for its share...
    let mut big = Client::connect(h.addr).await;
    big.send(&insert_of(100 << 10), 9).await;
    // ...while small ones are served.
    assert_eq!(small.call(Request::Ping).await, Some(Response::Pong));
    let mut probe = [0u8; 1];
    assert!(
        matches!(big.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a large request was answered past a spent budget"
    );
    // The hog leaves: its share comes back and the large request goes through.
    drop(hog);
    let f = big.recv().await.expect("answered once the budget frees");
    assert_eq!(f.stream_id, 9);
    assert!(matches!(
        Response::from_frame(&f).unwrap(),
        Response::Written { .. }
    ));
}

/// An INSERT of one cell of `len` bytes into row `k` of table `t`.
fn insert_of(len: usize) -> Request {
    Request::Insert {
        insert: sibyl_protocol::RowInsert {
            write_id: None,
            table: "t".into(),
            key: bytes::Bytes::from_static(b"k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![sibyl_protocol::ColumnWrite {
                name: bytes::Bytes::from_static(b"c"),
                value: bytes::Bytes::from(vec![1u8; len]),
                context: bytes::Bytes::new(),
            }],
        },
        consistency: None,
    }
}
