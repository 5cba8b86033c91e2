//! Frame I/O shared by both sides of a connection: the coalescing writer and the
//! zero-copy frame reader. The reader reserves nothing on the word of a header: a body
//! takes memory as its bytes arrive, and with a budget a frame over the read buffer
//! takes its length from it first (the caller holds that share until the frame is
//! handled).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{COALESCE_BYTES, READ_BUFFER_BYTES};
use crate::net::frame::{Frame, FrameHeader, HEADER_BYTES};

/// Writes frames from `rx`, coalescing what is queued at once into one write.
pub(super) async fn write_frames(
    w: &mut OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Frame>,
    mut first: Option<Frame>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(COALESCE_BYTES);
    loop {
        let frame = match first.take() {
            Some(f) => f,
            None => match rx.recv().await {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        push_frame(w, &mut buf, &frame).await?;
        while buf.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(f) => push_frame(w, &mut buf, &f).await?,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
            buf.clear();
        }
    }
}

pub(super) async fn push_frame(
    w: &mut OwnedWriteHalf,
    buf: &mut Vec<u8>,
    frame: &Frame,
) -> std::io::Result<()> {
    buf.extend_from_slice(&frame.header());
    if buf.len() + frame.body.len() <= COALESCE_BYTES {
        buf.extend_from_slice(&frame.body);
    } else {
        w.write_all(buf).await?;
        buf.clear();
        w.write_all(&frame.body).await?;
    }
    Ok(())
}

/// Reads frames from one connection into a growing buffer; each body is split off the
/// buffer without a copy.
pub(super) struct FrameReader {
    r: OwnedReadHalf,
    buf: BytesMut,
    /// The budget frames over [`READ_BUFFER_BYTES`] take their length from, if any.
    budget: Option<Arc<Semaphore>>,
    /// The share taken for the frame at the front of the buffer.
    held: Option<OwnedSemaphorePermit>,
}

/// A frame read, with the budget share its size took (held until it is handled).
pub(super) type ChargedFrame = (FrameHeader, Bytes, Option<OwnedSemaphorePermit>);

impl FrameReader {
    /// A reader without a budget (answers to this node's own calls).
    pub(super) fn new(r: OwnedReadHalf) -> FrameReader {
        FrameReader {
            r,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            budget: None,
            held: None,
        }
    }

    /// A reader whose frames over the read buffer take their length from `budget`
    /// before their body is read.
    pub(super) fn with_budget(r: OwnedReadHalf, budget: Arc<Semaphore>) -> FrameReader {
        FrameReader {
            budget: Some(budget),
            ..FrameReader::new(r)
        }
    }

    /// Takes the budget share of an incomplete large frame at the front of the buffer
    /// without waiting, when it is free.
    fn try_take_share(&mut self) {
        let (Some(budget), None) = (&self.budget, &self.held) else {
            return;
        };
        let Some(head) = self.buf.get(..HEADER_BYTES) else {
            return;
        };
        let head: [u8; HEADER_BYTES] = head.try_into().unwrap_or([0; HEADER_BYTES]);
        let Ok(h) = FrameHeader::decode(&head) else {
            return;
        };
        let total = HEADER_BYTES + h.len as usize;
        if total > READ_BUFFER_BYTES && self.buf.len() < total {
            if let Ok(n) = u32::try_from(total) {
                self.held = Arc::clone(budget).try_acquire_many_owned(n).ok();
            }
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub(super) async fn next(&mut self) -> Result<Option<(FrameHeader, Bytes)>, String> {
        Ok(self.next_charged().await?.map(|(h, body, _)| (h, body)))
    }

    /// The next frame with its budget share; `Ok(None)` at a clean end of stream. The
    /// header is checked (length cap included) before anything else.
    pub(super) async fn next_charged(&mut self) -> Result<Option<ChargedFrame>, String> {
        loop {
            if let Some(head) = self.buf.get(..HEADER_BYTES) {
                let head: [u8; HEADER_BYTES] = head.try_into().unwrap_or([0; HEADER_BYTES]);
                let h = FrameHeader::decode(&head).map_err(|e| format!("malformed frame: {e}"))?;
                let total = HEADER_BYTES + h.len as usize;
                if self.buf.len() >= total {
                    let mut frame = self.buf.split_to(total);
                    let body = frame.split_off(HEADER_BYTES).freeze();
                    h.verify(&head, &body)
                        .map_err(|e| format!("malformed frame: {e}"))?;
                    if self.buf.is_empty() && self.buf.capacity() > 4 * READ_BUFFER_BYTES {
                        // Do not keep a large frame's tail allocated.
                        self.buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
                    }
                    let share = self.held.take();
                    // The next frame's share, if it is free, before this one is handled:
                    // an answer to this one then tells its reader the next one holds it.
                    self.try_take_share();
                    return Ok(Some((h, body, share)));
                }
                if let (Some(budget), None) = (&self.budget, &self.held) {
                    if total > READ_BUFFER_BYTES {
                        let n = u32::try_from(total).map_err(|_| "frame too large".to_string())?;
                        let share = Arc::clone(budget)
                            .acquire_many_owned(n)
                            .await
                            .map_err(|_| "closed".to_string())?;
                        self.held = Some(share);
                    }
                }
            }
            // Grows as bytes arrive (a large body in doubling steps), never ahead of them.
            if self.buf.capacity() - self.buf.len() < READ_BUFFER_BYTES / 2 {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            let n = self
                .r
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err("read: connection closed inside a frame".into())
                };
            }
        }
    }
}
