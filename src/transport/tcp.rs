//! [`TcpTransport`]: peer messages over TCP, one outbound connection per peer.
//!
//! Each envelope ([`crate::cluster::codec`]) travels as the body of one `sibyl-protocol`
//! frame whose opcode is the message kind (`0x80..=0xFF`, the peer range), stream id 0;
//! the frame's CRC-32 covers header and body. Reading checks the frame header (magic,
//! version, size cap) before buffering the body, verifies the checksum, refuses client
//! opcodes, and decodes the envelope without panicking; any error closes that connection
//! only.
//!
//! Threads (std, no async runtime): one acceptor, one reader per accepted connection, one
//! writer per destination fed by a bounded queue. `send` never blocks: when a peer's queue
//! is full the message is dropped (gossip tolerates loss). A writer that fails drops its
//! connection and reconnects for the next message. [`TcpTransport::shutdown`] (also run
//! on drop) stops and joins every thread; loops poll the stop flag every
//! [`POLL_INTERVAL`].

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use sibyl_protocol::frame::{Frame, FrameHeader, HEADER_LEN};
use sibyl_protocol::PROTOCOL_VERSION;
use tracing::{debug, warn};

use super::{Transport, TransportError};
use crate::cluster::{codec, wire, Envelope};

/// How often blocked loops look at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Messages queued per destination before new ones are dropped.
pub const QUEUE_PER_PEER: usize = 1024;
/// Time allowed to open a connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest frame accepted or sent: the peer message cap plus the frame header.
pub const MAX_FRAME_BYTES: usize = wire::MAX_MESSAGE_BYTES + HEADER_LEN;

type Threads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// Peer transport over TCP.
#[derive(Debug)]
pub struct TcpTransport {
    local: SocketAddr,
    inbox: Mutex<Receiver<Envelope>>,
    writers: Mutex<HashMap<SocketAddr, SyncSender<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    threads: Threads,
}

impl TcpTransport {
    /// Listens on `addr` (port 0 picks a free port; see [`Transport::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<TcpTransport, TransportError> {
        let io = |source| TransportError::Io { addr, source };
        let listener = TcpListener::bind(addr).map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Threads = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let stop = stop.clone();
            let threads = threads.clone();
            std::thread::Builder::new()
                .name(format!("peer-accept-{local}"))
                .spawn(move || accept_loop(listener, tx, stop, threads))
                .map_err(|source| TransportError::Io {
                    addr: local,
                    source,
                })?
        };
        if let Ok(mut t) = threads.lock() {
            t.push(acceptor);
        }
        Ok(TcpTransport {
            local,
            inbox: Mutex::new(rx),
            writers: Mutex::new(HashMap::new()),
            stop,
            threads,
        })
    }

    /// Stops every thread and waits for them. Idempotent.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut w) = self.writers.lock() {
            w.clear();
        }
        let handles: Vec<JoinHandle<()>> = match self.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for h in handles {
            let _ = h.join();
        }
    }

    fn writer_for(&self, to: SocketAddr) -> Result<SyncSender<Vec<u8>>, TransportError> {
        let mut writers = self.writers.lock().map_err(|_| TransportError::Closed)?;
        if let Some(w) = writers.get(&to) {
            return Ok(w.clone());
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_PER_PEER);
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("peer-write-{to}"))
            .spawn(move || write_loop(to, rx, stop))
            .map_err(|source| TransportError::Io { addr: to, source })?;
        if let Ok(mut t) = self.threads.lock() {
            t.push(handle);
        }
        writers.insert(to, tx.clone());
        Ok(tx)
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn send(&self, to: SocketAddr, envelope: Envelope) -> Result<(), TransportError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let Some(bytes) = frame_bytes(&envelope) else {
            warn!(to = %to, kind = envelope.message.name(), "peer message too large; dropped");
            return Ok(());
        };
        match self.writer_for(to)?.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                debug!(to = %to, "peer queue full; message dropped");
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(TransportError::Closed),
        }
    }

    fn try_recv(&self) -> Option<Envelope> {
        self.inbox.lock().ok()?.try_recv().ok()
    }
}

/// The frame carrying `envelope`, or `None` when it exceeds the cap.
pub fn frame_bytes(envelope: &Envelope) -> Option<Vec<u8>> {
    let body = codec::encode(envelope);
    let opcode = body.get(opcode_offset(envelope)).copied()?;
    let frame = Frame {
        version: PROTOCOL_VERSION,
        flags: 0,
        opcode,
        stream_id: 0,
        body: Bytes::from(body),
    };
    frame.to_vec(MAX_FRAME_BYTES).ok()
}

/// Offset of the kind byte in an encoded envelope: version, sender id, address.
fn opcode_offset(envelope: &Envelope) -> usize {
    1 + 8
        + match envelope.from_addr {
            SocketAddr::V4(_) => 1 + 4 + 2,
            SocketAddr::V6(_) => 1 + 16 + 2,
        }
}

/// Decodes one complete frame into an envelope, checking that the frame is a peer
/// frame whose opcode matches the envelope's kind.
pub fn envelope_from_frame(buf: &[u8]) -> Option<Envelope> {
    let frame = Frame::decode(buf, MAX_FRAME_BYTES).ok()?;
    if !frame.is_peer() {
        return None;
    }
    let env = codec::decode(&frame.body).ok()?;
    let kind = frame.body.get(opcode_offset(&env)).copied()?;
    (kind == frame.opcode).then_some(env)
}

fn accept_loop(
    listener: TcpListener,
    inbox: Sender<Envelope>,
    stop: Arc<AtomicBool>,
    threads: Threads,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let inbox = inbox.clone();
                let stop = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("peer-read-{peer}"))
                    .spawn(move || read_loop(stream, peer, inbox, stop));
                match spawned {
                    Ok(h) => {
                        if let Ok(mut t) = threads.lock() {
                            t.retain(|h| !h.is_finished());
                            t.push(h);
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot start a peer reader"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL_INTERVAL),
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

/// Fills `buf` from `stream`; `false` on end of stream, error or stop.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> bool {
    let mut done = 0;
    while done < buf.len() {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        match stream.read(buf.get_mut(done..).unwrap_or_default()) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

fn read_loop(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbox: Sender<Envelope>,
    stop: Arc<AtomicBool>,
) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL_INTERVAL)).is_err()
    {
        return;
    }
    loop {
        let mut header = [0u8; HEADER_LEN];
        if !read_full(&mut stream, &mut header, &stop) {
            return;
        }
        let Ok(h) = FrameHeader::decode(&header, MAX_FRAME_BYTES) else {
            warn!(peer = %peer, "bad peer frame header; closing the connection");
            return;
        };
        let mut buf = vec![0u8; HEADER_LEN + h.body_len as usize];
        buf[..HEADER_LEN].copy_from_slice(&header);
        if !read_full(&mut stream, &mut buf[HEADER_LEN..], &stop) {
            return;
        }
        let Some(env) = envelope_from_frame(&buf) else {
            warn!(peer = %peer, "bad peer frame; closing the connection");
            return;
        };
        if inbox.send(env).is_err() {
            return;
        }
    }
}

fn write_loop(to: SocketAddr, queue: Receiver<Vec<u8>>, stop: Arc<AtomicBool>) {
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::SeqCst) {
        let bytes = match queue.recv_timeout(POLL_INTERVAL) {
            Ok(b) => b,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if conn.is_none() {
            match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                }
                Err(e) => {
                    debug!(to = %to, error = %e, "cannot reach peer; message dropped");
                    continue;
                }
            }
        }
        if let Some(s) = conn.as_mut() {
            if s.write_all(&bytes).is_err() {
                debug!(to = %to, "peer connection lost; message dropped");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PeerMessage;
    use crate::ring::NodeId;
    use std::time::Instant;

    fn any_local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn recv_within(t: &TcpTransport, deadline: Duration) -> Option<Envelope> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(e) = t.try_recv() {
                return Some(e);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn tcp_delivers_an_envelope() {
        let a = TcpTransport::bind(any_local()).unwrap();
        let b = TcpTransport::bind(any_local()).unwrap();
        let env = Envelope {
            from: NodeId(1),
            from_addr: a.local_addr(),
            message: PeerMessage::SchemaPush {
                version: 9,
                schema: Arc::from(&b"tables"[..]),
            },
        };
        a.send(b.local_addr(), env.clone()).unwrap();
        assert_eq!(recv_within(&b, Duration::from_secs(10)), Some(env));
    }

    #[test]
    fn tcp_survives_garbage_connection() {
        let b = TcpTransport::bind(any_local()).unwrap();
        let mut junk = TcpStream::connect(b.local_addr()).unwrap();
        junk.write_all(&[0xAB; 64]).unwrap();
        drop(junk);
        let a = TcpTransport::bind(any_local()).unwrap();
        let env = Envelope {
            from: NodeId(2),
            from_addr: a.local_addr(),
            message: PeerMessage::GossipShutdown,
        };
        a.send(b.local_addr(), env.clone()).unwrap();
        assert_eq!(recv_within(&b, Duration::from_secs(10)), Some(env));
    }

    #[test]
    fn tcp_frame_roundtrip_and_client_opcode_refused() {
        let env = Envelope {
            from: NodeId(3),
            from_addr: any_local(),
            message: PeerMessage::SchemaPull { version: 1 },
        };
        let bytes = frame_bytes(&env).unwrap();
        assert_eq!(envelope_from_frame(&bytes), Some(env.clone()));
        let mut frame = Frame::decode(&bytes, MAX_FRAME_BYTES).unwrap();
        frame.opcode = 0x01;
        let client = frame.to_vec(MAX_FRAME_BYTES).unwrap();
        assert_eq!(envelope_from_frame(&client), None);
    }

    #[test]
    fn tcp_send_after_shutdown_is_refused() {
        let a = TcpTransport::bind(any_local()).unwrap();
        a.shutdown();
        let env = Envelope {
            from: NodeId(4),
            from_addr: a.local_addr(),
            message: PeerMessage::GossipShutdown,
        };
        assert!(matches!(
            a.send(a.local_addr(), env),
            Err(TransportError::Closed)
        ));
    }
}
