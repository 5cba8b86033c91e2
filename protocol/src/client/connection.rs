//! [`Connection`]: one TCP connection to one node, multiplexing many requests by stream id.
//!
//! Threading: a connection owns two background tasks. The writer task drains a bounded
//! channel of already-encoded frames and writes them, coalescing whatever is queued into
//! one write. The reader task decodes response frames and completes the waiting caller
//! through a map `stream id -> oneshot sender`. Callers encode their own frames (so a
//! too-large request fails alone) and wait on their oneshot with a timeout; a caller that
//! gives up (timeout or dropped future) removes its map entry through a guard, so a late
//! response is discarded. When either task hits an error the connection is marked closed
//! and every waiting caller gets [`ClientError::ConnectionClosed`]. Dropping the
//! `Connection` aborts both tasks. The map's mutex is never held across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, Encoder};

use crate::client::error::ClientError;
use crate::client::{ClientOptions, Credentials};
use crate::codec::FrameCodec;
use crate::error::ErrorKind;
use crate::frame::{
    Frame, CONNECTION_ERROR_OPCODE, CONNECTION_ERROR_STREAM_ID, HANDSHAKE_MAX_FRAME_LEN,
};
use crate::message::request::Request;
use crate::message::response::Response;
use crate::scram::{ScramClient, MECHANISM};
use crate::PROTOCOL_VERSION;

/// Stream ids of the login exchange (after the handshake's 0, before callers' from 1:
/// nothing else is in flight while the connection opens).
const AUTH_START_STREAM: u32 = 1;
const AUTH_FINISH_STREAM: u32 = 2;

/// Frames queued for the writer before callers wait (back-pressure).
const WRITE_QUEUE_FRAMES: usize = 1024;
/// Bytes the writer coalesces into one write before flushing.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 64 * 1024;

type Waiter = oneshot::Sender<Result<Frame, String>>;

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<HashMap<u32, Waiter>>,
    closed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<u32, Waiter>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed and fails every waiting caller.
    fn close(&self, reason: String) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason.clone());
            }
        }
        self.closed.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = self.pending().drain().map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(reason.clone()));
        }
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "closed".to_owned())
    }
}

/// Removes a stream id from the pending map when the caller stops waiting.
struct PendingGuard<'a> {
    shared: &'a Shared,
    stream_id: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.stream_id);
    }
}

/// A connection being opened: one request at a time, before the reader and writer tasks
/// start.
struct Opening<'a> {
    addr: SocketAddr,
    rd: &'a mut OwnedReadHalf,
    wr: &'a mut OwnedWriteHalf,
    codec: &'a mut FrameCodec,
    read_buf: &'a mut BytesMut,
}

impl Opening<'_> {
    /// Sends `request` on `stream_id` and reads the one frame that answers it.
    async fn exchange(&mut self, request: &Request, stream_id: u32) -> Result<Frame, ClientError> {
        let mut out = BytesMut::new();
        self.codec.encode(request.to_frame(stream_id)?, &mut out)?;
        self.wr
            .write_all(&out)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.to_string(),
                source,
            })?;
        loop {
            if let Some(frame) = self.codec.decode(self.read_buf)? {
                return Ok(frame);
            }
            let read =
                self.rd
                    .read_buf(self.read_buf)
                    .await
                    .map_err(|source| ClientError::Connect {
                        addr: self.addr.to_string(),
                        source,
                    })?;
            if read == 0 {
                return Err(ClientError::ConnectionClosed {
                    addr: self.addr.to_string(),
                    reason: "closed while opening (handshake or login)".into(),
                    sent: true,
                });
            }
        }
    }

    /// A login refused by the server, or another error it answered.
    fn refused(&self, credentials: &Credentials, response: Response) -> ClientError {
        match response {
            Response::Error(e) if e.kind == ErrorKind::AuthenticationFailed => {
                ClientError::AuthenticationFailed {
                    user: credentials.user.clone(),
                }
            }
            Response::Error(e) => ClientError::Server(e),
            other => ClientError::UnexpectedResponse {
                opcode: "AUTH_START/AUTH_FINISH",
                got: format!("{other:?}"),
            },
        }
    }

    /// Runs the SCRAM-SHA-256 exchange and checks the server's signature.
    async fn login(&mut self, credentials: &Credentials) -> Result<(), ClientError> {
        let scram_err = |addr: SocketAddr, source| ClientError::Scram {
            addr: addr.to_string(),
            source,
        };
        let mut scram = ScramClient::new(&credentials.user, &credentials.password);
        let start = Request::AuthStart {
            mechanism: MECHANISM.to_owned(),
            message: Bytes::from(scram.client_first().into_bytes()),
        };
        let reply = self.exchange(&start, AUTH_START_STREAM).await?;
        let server_first = match Response::from_frame(&reply)? {
            Response::AuthContinue { message } => message,
            other => return Err(self.refused(credentials, other)),
        };
        let server_first = std::str::from_utf8(&server_first).map_err(|_| {
            scram_err(
                self.addr,
                crate::scram::ScramError::Malformed {
                    what: "server-first",
                    reason: "not UTF-8",
                },
            )
        })?;
        // PBKDF2 (thousands of HMACs): slow by design, once per connection.
        let client_final = scram
            .client_final(server_first)
            .map_err(|e| scram_err(self.addr, e))?;
        let finish = Request::AuthFinish {
            message: Bytes::from(client_final.into_bytes()),
        };
        let reply = self.exchange(&finish, AUTH_FINISH_STREAM).await?;
        let server_final = match Response::from_frame(&reply)? {
            Response::AuthOk { message, .. } => message,
            other => return Err(self.refused(credentials, other)),
        };
        let server_final = String::from_utf8_lossy(&server_final);
        scram
            .verify_server_final(&server_final)
            .map_err(|e| scram_err(self.addr, e))
    }
}

/// One multiplexed connection to a node, handshake done.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Bytes>,
    next_stream: AtomicU32,
    /// Encoder with the server's announced cap, so oversized requests fail locally.
    encode_cap: usize,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    server: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.shared.close("connection dropped".to_owned());
    }
}

impl Connection {
    /// Connects, performs the handshake and starts the reader and writer tasks.
    pub async fn connect(
        addr: SocketAddr,
        options: &ClientOptions,
    ) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream =
            match tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(connect_err(e)),
                Err(_) => {
                    return Err(connect_err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )))
                }
            };
        stream.set_nodelay(true).map_err(connect_err)?;
        let (mut rd, mut wr) = stream.into_split();
        let mut codec = FrameCodec::with_max_frame_len(HANDSHAKE_MAX_FRAME_LEN);
        let mut read_buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let handshake = Request::Handshake {
            version: PROTOCOL_VERSION,
            client: options.client_name.clone(),
        };
        let mut opening = Opening {
            addr,
            rd: &mut rd,
            wr: &mut wr,
            codec: &mut codec,
            read_buf: &mut read_buf,
        };
        let reply = tokio::time::timeout(options.connect_timeout, opening.exchange(&handshake, 0))
            .await
            .map_err(|_| ClientError::Timeout {
                after: options.connect_timeout,
            })??;
        let (server, server_max) = match Response::from_frame(&reply)? {
            Response::Handshake {
                version,
                server,
                max_frame_len,
            } if version == PROTOCOL_VERSION => (server, max_frame_len as usize),
            Response::Error(e) => return Err(ClientError::Server(e)),
            other => {
                return Err(ClientError::UnexpectedResponse {
                    opcode: "HANDSHAKE",
                    got: format!("{other:?}"),
                });
            }
        };
        if let Some(credentials) = &options.credentials {
            tokio::time::timeout(options.connect_timeout, opening.login(credentials))
                .await
                .map_err(|_| ClientError::Timeout {
                    after: options.connect_timeout,
                })??;
        }
        codec.set_max_frame_len(options.max_frame_len);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        let reader = tokio::spawn(read_loop(rd, codec, read_buf, Arc::clone(&shared)));
        let writer = tokio::spawn(write_loop(wr, rx, Arc::clone(&shared)));
        Ok(Connection {
            addr,
            shared,
            tx,
            next_stream: AtomicU32::new(1),
            encode_cap: server_max.min(options.max_frame_len),
            reader,
            writer,
            server,
        })
    }

    /// The node address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server name the handshake announced.
    pub fn server_name(&self) -> &str {
        &self.server
    }

    /// True once the connection failed or closed; it will not recover.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Number of requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.shared.pending().len()
    }

    fn closed_error(&self, sent: bool) -> ClientError {
        ClientError::ConnectionClosed {
            addr: self.addr.to_string(),
            reason: self.shared.reason(),
            sent,
        }
    }

    /// Sends `request` and waits up to `timeout` for its response. A server error comes
    /// back as `Ok(Response::Error(..))`; the caller decides what it means.
    pub async fn call(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        if self.is_closed() {
            return Err(self.closed_error(false));
        }
        let opcode = request.opcode();
        let (waiter, rx) = oneshot::channel();
        let stream_id = {
            let mut pending = self.shared.pending();
            let mut id = self.next_stream.fetch_add(1, Ordering::Relaxed);
            while pending.contains_key(&id) {
                id = self.next_stream.fetch_add(1, Ordering::Relaxed);
            }
            pending.insert(id, waiter);
            id
        };
        let _guard = PendingGuard {
            shared: &self.shared,
            stream_id,
        };
        let mut out = BytesMut::new();
        FrameCodec::with_max_frame_len(self.encode_cap)
            .encode(request.to_frame(stream_id)?, &mut out)?;
        // The connection may have closed between the check and the insert; close()
        // drained the map before our insert, so check again rather than wait forever.
        if self.is_closed() {
            return Err(self.closed_error(false));
        }
        let work = async {
            if self.tx.send(out.freeze()).await.is_err() {
                return Err(self.closed_error(false));
            }
            match rx.await {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(reason)) => Err(ClientError::ConnectionClosed {
                    addr: self.addr.to_string(),
                    reason,
                    sent: true,
                }),
                Err(_) => Err(self.closed_error(true)),
            }
        };
        let frame = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result?,
            Err(_) => return Err(ClientError::Timeout { after: timeout }),
        };
        if frame.opcode != opcode.as_u8() {
            return Err(ClientError::UnexpectedResponse {
                opcode: opcode.name(),
                got: format!("a frame with opcode {:#04x}", frame.opcode),
            });
        }
        Ok(Response::from_frame(&frame)?)
    }
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut codec: FrameCodec,
    mut buf: BytesMut,
    shared: Arc<Shared>,
) {
    let reason = loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                if !frame.is_response() {
                    break format!(
                        "server sent a non-response frame (opcode {:#04x})",
                        frame.opcode
                    );
                }
                // An error on stream 0 with opcode 0x00 answers no request: the server
                // found this connection's input unreadable and closes it (wire spec,
                // error frames). Every waiting request fails with the server's reason.
                if frame.is_error()
                    && frame.stream_id == CONNECTION_ERROR_STREAM_ID
                    && frame.opcode == CONNECTION_ERROR_OPCODE
                {
                    break match Response::decode_error_body(frame.body.clone()) {
                        Ok(e) => format!("server closed the connection: {}", e.message),
                        Err(_) => {
                            "server closed the connection after a connection error".to_owned()
                        }
                    };
                }
                let waiter = shared.pending().remove(&frame.stream_id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok(frame));
                    }
                    None => tracing::debug!(
                        stream_id = frame.stream_id,
                        "response for a request nobody waits for"
                    ),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break format!("undecodable frame from server: {e}"),
        }
        // A response the server announced (bounded by the frame cap) is read into one
        // allocation; the server, not a stranger, is on the other end.
        let wanted = codec
            .incomplete_frame_len(&buf)
            .map_or(0, |len| len - buf.len());
        buf.reserve(wanted.max(READ_CHUNK_BYTES));
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "server closed the connection".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    tracing::debug!(%reason, "client connection reader stopped");
    shared.close(reason);
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, shared: Arc<Shared>) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&batch).await {
            shared.close(format!("write failed: {e}"));
            return;
        }
    }
    let _ = wr.shutdown().await;
}
