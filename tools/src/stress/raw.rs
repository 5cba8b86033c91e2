//! The raw driver: one task owns one TCP connection and keeps up to `pipeline` requests in
//! flight on it, speaking the real protocol through [`FrameCodec`] and the message
//! encoders, without the client library's per-request channel, oneshot and pending map.
//!
//! Loop: send `pipeline` requests (stream ids `1..=pipeline`, one per slot); then read,
//! decode every complete response, free its slot, refill the slot with the next request,
//! and write all refills in one `write_all` before reading again (as redis-benchmark does).
//! Latency runs from the write that carried the request to the read that carried its
//! response. A read that waits longer than the timeout, a closed socket or an undecodable
//! frame ends the connection: its in-flight requests count as errors of that type and its
//! unsent requests as `aborted`. A response whose body is an error counts by error code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sibyl_protocol::frame::DEFAULT_MAX_FRAME_LEN;
use sibyl_protocol::scram::{ScramClient, MECHANISM};
use sibyl_protocol::{
    Credentials, ErrorKind, Frame, FrameCodec, Request, Response, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_util::codec::{Decoder, Encoder};

use crate::stress::report::RunStats;
use crate::stress::workload::{OpKind, Workload};
use crate::stress::{classify_response, ConnPlan};

/// Bytes read per `read` call at most (and the initial receive buffer).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection stopped early.
struct Failure {
    kind: &'static str,
    detail: String,
}

fn fail(kind: &'static str, detail: impl std::fmt::Display) -> Failure {
    Failure {
        kind,
        detail: detail.to_string(),
    }
}

/// Connects, completes the handshake, waits for `start`, runs `plan`; returns the stats
/// and, if the connection ended early, why.
pub async fn run_connection(
    addr: SocketAddr,
    plan: ConnPlan,
    start: Arc<Barrier>,
) -> (RunStats, Option<String>) {
    let mut stats = RunStats::default();
    let mut workload = Workload::routed(plan.spec.clone(), plan.seed, plan.route.clone());
    let connected = connect(addr, plan.timeout, plan.credentials.as_ref()).await;
    start.wait().await;
    let (stream, codec, buf) = match connected {
        Ok(c) => c,
        Err(f) => {
            abort_rest(&mut workload, &mut stats, plan.requests, "connect");
            return (stats, Some(format!("{}: {}", f.kind, f.detail)));
        }
    };
    let mut run = Run {
        stream,
        codec,
        inbuf: buf,
        out: BytesMut::with_capacity(plan.pipeline * 256),
        slots: vec![None; plan.pipeline],
        in_flight: 0,
        unsent: plan.requests,
        workload,
        stats,
        timeout: plan.timeout,
    };
    let failure = run.drive().await.err();
    if let Some(f) = &failure {
        let in_flight: Vec<OpKind> = run.slots.iter().flatten().map(|(_, k)| *k).collect();
        for kind in in_flight {
            run.stats.op(kind).record_errors(f.kind, 1);
        }
        let unsent = run.unsent;
        abort_rest(&mut run.workload, &mut run.stats, unsent, "aborted");
    }
    (
        run.stats,
        failure.map(|f| format!("{}: {}", f.kind, f.detail)),
    )
}

/// Counts `n` requests that were never sent as errors of `kind`, by the op they would have
/// been.
pub(crate) fn abort_rest(workload: &mut Workload, stats: &mut RunStats, n: u64, kind: &str) {
    for _ in 0..n {
        let k = workload.next_kind();
        stats.op(k).record_errors(kind, 1);
    }
}

/// Sends `request` on `stream_id` and reads the one frame that answers it (while the
/// connection opens, nothing else is in flight).
async fn exchange(
    stream: &mut TcpStream,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    request: &Request,
    stream_id: u32,
) -> Result<Response, Failure> {
    let mut out = BytesMut::new();
    let frame = request
        .to_frame(stream_id)
        .map_err(|e| fail("protocol", e))?;
    codec
        .encode(frame, &mut out)
        .map_err(|e| fail("protocol", e))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| fail("connect", e))?;
    let reply = loop {
        if let Some(f) = codec.decode(buf).map_err(|e| fail("protocol", e))? {
            break f;
        }
        if stream.read_buf(buf).await.map_err(|e| fail("connect", e))? == 0 {
            return Err(fail("connect", "closed while opening the connection"));
        }
    };
    Response::from_frame(&reply).map_err(|e| fail("protocol", e))
}

/// The SCRAM-SHA-256 login (wire spec, "Authentication"), server signature checked.
async fn login(
    stream: &mut TcpStream,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    credentials: &Credentials,
) -> Result<(), Failure> {
    let refused = |r: Response| match r {
        Response::Error(e) if e.kind == ErrorKind::AuthenticationFailed => fail(
            "auth",
            format!("authentication failed for user {}", credentials.user),
        ),
        other => fail("auth", format!("{other:?}")),
    };
    let mut scram = ScramClient::new(&credentials.user, &credentials.password);
    let start = Request::AuthStart {
        mechanism: MECHANISM.to_owned(),
        message: Bytes::from(scram.client_first().into_bytes()),
    };
    let server_first = match exchange(stream, codec, buf, &start, 1).await? {
        Response::AuthContinue { message } => message,
        other => return Err(refused(other)),
    };
    let client_final = scram
        .client_final(&String::from_utf8_lossy(&server_first))
        .map_err(|e| fail("auth", e))?;
    let finish = Request::AuthFinish {
        message: Bytes::from(client_final.into_bytes()),
    };
    match exchange(stream, codec, buf, &finish, 2).await? {
        Response::AuthOk { message, .. } => scram
            .verify_server_final(&String::from_utf8_lossy(&message))
            .map_err(|e| fail("auth", e)),
        other => Err(refused(other)),
    }
}

async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    credentials: Option<&Credentials>,
) -> Result<(TcpStream, FrameCodec, BytesMut), Failure> {
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| fail("connect", e))?;
        stream.set_nodelay(true).map_err(|e| fail("connect", e))?;
        let mut codec = FrameCodec::new();
        let hello = Request::Handshake {
            version: PROTOCOL_VERSION,
            client: concat!("sibyl-stress/", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let max_frame_len = match exchange(&mut stream, &mut codec, &mut buf, &hello, 0).await? {
            Response::Handshake { max_frame_len, .. } => max_frame_len,
            Response::Error(e) => return Err(fail("connect", e)),
            other => {
                return Err(fail(
                    "protocol",
                    format!("handshake answered with {other:?}"),
                ))
            }
        };
        if let Some(credentials) = credentials {
            login(&mut stream, &mut codec, &mut buf, credentials).await?;
        }
        codec.set_max_frame_len((max_frame_len as usize).min(DEFAULT_MAX_FRAME_LEN));
        Ok((stream, codec, buf))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(fail("connect", "handshake timed out")),
    }
}

struct Run {
    stream: TcpStream,
    codec: FrameCodec,
    inbuf: BytesMut,
    out: BytesMut,
    /// Slot `i` holds the request with stream id `i + 1`: when it was sent and its kind.
    slots: Vec<Option<(Instant, OpKind)>>,
    in_flight: usize,
    unsent: u64,
    workload: Workload,
    stats: RunStats,
    timeout: Duration,
}

impl Run {
    /// Encodes the next request into `out` for slot `slot`, stamped `now`.
    fn send_into(&mut self, slot: usize, now: Instant) -> Result<(), Failure> {
        let (kind, request) = self.workload.next_request();
        let stream_id = u32::try_from(slot + 1).map_err(|e| fail("protocol", e))?;
        let frame: Frame = request
            .to_frame(stream_id)
            .map_err(|e| fail("protocol", e))?;
        self.codec
            .encode(frame, &mut self.out)
            .map_err(|e| fail("protocol", e))?;
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some((now, kind));
        }
        self.in_flight += 1;
        self.unsent -= 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .await
                .map_err(|e| fail("connection", e))?;
            self.out.clear();
        }
        Ok(())
    }

    async fn drive(&mut self) -> Result<(), Failure> {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            if self.unsent == 0 {
                break;
            }
            self.send_into(slot, now)?;
        }
        self.flush().await?;
        while self.in_flight > 0 {
            let read = tokio::time::timeout(self.timeout, async {
                self.inbuf.reserve(READ_CHUNK_BYTES);
                self.stream.read_buf(&mut self.inbuf).await
            })
            .await;
            match read {
                Err(_) => return Err(fail("timeout", "no response within the timeout")),
                Ok(Err(e)) => return Err(fail("connection", e)),
                Ok(Ok(0)) => return Err(fail("connection", "server closed the connection")),
                Ok(Ok(_)) => {}
            }
            let now = Instant::now();
            while let Some(frame) = self
                .codec
                .decode(&mut self.inbuf)
                .map_err(|e| fail("protocol", e))?
            {
                let slot = (frame.stream_id as usize).wrapping_sub(1);
                let Some((sent_at, kind)) = self.slots.get_mut(slot).and_then(Option::take) else {
                    return Err(fail(
                        "protocol",
                        format!("response for unknown stream id {}", frame.stream_id),
                    ));
                };
                self.in_flight -= 1;
                classify_response(
                    self.stats.op(kind),
                    kind,
                    Response::from_frame(&frame),
                    now.saturating_duration_since(sent_at),
                );
                if self.unsent > 0 {
                    self.send_into(slot, now)?;
                }
            }
            self.flush().await?;
        }
        Ok(())
    }
}
