//! [`FrameCodec`]: the streaming frame decoder / encoder for `tokio_util::codec`
//! (`Framed`, `FramedRead`, `FramedWrite`) and for hand-rolled loops over a `BytesMut`.
//!
//! Invariants: the header is validated (magic, flags, reserved byte, length against the
//! cap) as soon as its 20 bytes are buffered, so a peer can never make us allocate more
//! than the cap. The decoder reserves no room for a body it has not received: a header
//! alone costs nothing, and the caller's reads take a body's memory as its bytes arrive
//! (or the caller reserves it against a budget first, using
//! [`FrameCodec::incomplete_frame_len`]). The cap starts at
//! [`HANDSHAKE_MAX_FRAME_LEN`] and is raised with [`FrameCodec::set_max_frame_len`] once the
//! handshake completes. The checksum is verified before a frame is returned. A codec
//! belongs to one connection; it is `Send` but not shared.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtocolError;
use crate::frame::{Frame, FrameHeader, HANDSHAKE_MAX_FRAME_LEN, HEADER_LEN};

/// Splits a byte stream into [`Frame`]s and writes frames out.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new()
    }
}

impl FrameCodec {
    /// A codec with the pre-handshake cap ([`HANDSHAKE_MAX_FRAME_LEN`]).
    pub fn new() -> Self {
        FrameCodec {
            max_frame_len: HANDSHAKE_MAX_FRAME_LEN,
        }
    }

    /// A codec with an explicit cap (header + body), for either direction.
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        FrameCodec {
            max_frame_len: max_frame_len.max(HEADER_LEN),
        }
    }

    /// The cap in force (header + body, bytes).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The whole length (header + body) of the frame at the front of `src` when its header
    /// is buffered and valid but the frame is not complete yet; `None` otherwise (no
    /// header yet, a complete frame, or a bad header, which [`Decoder::decode`] reports).
    /// A reader uses it to take a body's memory from a budget before reading the body.
    pub fn incomplete_frame_len(&self, src: &[u8]) -> Option<usize> {
        let head: &[u8; HEADER_LEN] = src.get(..HEADER_LEN)?.try_into().ok()?;
        let len = FrameHeader::decode(head, self.max_frame_len)
            .ok()?
            .frame_len();
        (src.len() < len).then_some(len)
    }

    /// Changes the cap (e.g. to the negotiated maximum once the handshake is done).
    /// Values below the header length are raised to it.
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len.max(HEADER_LEN);
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(head) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut arr = [0u8; HEADER_LEN];
        arr.copy_from_slice(head);
        let header = FrameHeader::decode(&arr, self.max_frame_len)?;
        let frame_len = header.frame_len();
        if src.len() < frame_len {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(header.body_len as usize).freeze();
        Frame::from_parts(&header, body).map(Some)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.reserve(frame.encoded_len());
        frame.encode(dst, self.max_frame_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{DEFAULT_MAX_FRAME_LEN, MAGIC, OFFSET_BODY_LEN};
    use bytes::Bytes;

    fn frame(stream_id: u32, body: &'static [u8]) -> Frame {
        Frame {
            version: 1,
            flags: 0,
            opcode: 2,
            stream_id,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn codec_decodes_frames_split_at_every_byte() {
        let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        let mut wire = BytesMut::new();
        codec.encode(frame(1, b"abc"), &mut wire).unwrap();
        codec.encode(frame(2, b""), &mut wire).unwrap();
        let all = wire.freeze();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in all.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![frame(1, b"abc"), frame(2, b"")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn codec_rejects_oversized_header_without_reserving() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(HEADER_LEN);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&MAGIC);
        header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4]
            .copy_from_slice(&(HANDSHAKE_MAX_FRAME_LEN as u32).to_be_bytes());
        buf.extend_from_slice(&header);
        let cap_before = buf.capacity();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn codec_reserves_nothing_for_a_body_not_received() {
        let codec_frame = Frame {
            body: Bytes::from(vec![1u8; 1 << 20]),
            ..frame(3, b"")
        };
        let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        let mut wire = BytesMut::new();
        codec.encode(&codec_frame, &mut wire).unwrap();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&wire[..HEADER_LEN + 10]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.capacity(), 64, "a header alone reserves nothing");
        assert_eq!(
            codec.incomplete_frame_len(&buf),
            Some(HEADER_LEN + (1 << 20))
        );
        assert_eq!(codec.incomplete_frame_len(&wire), None, "complete");
        assert_eq!(
            codec.incomplete_frame_len(&wire[..5]),
            None,
            "no header yet"
        );
    }

    #[test]
    fn codec_raised_cap_accepts_large_frame() {
        let big = Frame {
            body: Bytes::from(vec![7u8; HANDSHAKE_MAX_FRAME_LEN]),
            ..frame(1, b"")
        };
        let mut codec = FrameCodec::new();
        let mut wire = BytesMut::new();
        assert!(codec.encode(&big, &mut wire).is_err());
        codec.set_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        codec.encode(&big, &mut wire).unwrap();
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(big));
    }
}
