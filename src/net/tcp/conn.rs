//! Frame I/O shared by both sides of a connection: the coalescing writer and the
//! zero-copy frame reader.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

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
}

impl FrameReader {
    pub(super) fn new(r: OwnedReadHalf) -> FrameReader {
        FrameReader {
            r,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream. The header is checked
    /// (length cap included) before room for the body is reserved.
    pub(super) async fn next(&mut self) -> Result<Option<(FrameHeader, Bytes)>, String> {
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
                    return Ok(Some((h, body)));
                }
                self.buf.reserve(total - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < HEADER_BYTES {
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
