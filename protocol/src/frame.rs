//! Frames: the unit of the wire. This module owns the header layout (every offset and size
//! is a constant here, used by both the reader and the writer), [`FrameHeader`] and [`Frame`].
//!
//! Layout (big-endian, 20 bytes, then the body):
//!
//! ```text
//! offset size field
//!  0     4    magic        b"SBYL"
//!  4     1    version      protocol version of the message in the body
//!  5     1    flags        bit 0 RESPONSE, bit 1 ERROR, others reserved (must be 0)
//!  6     1    opcode       0x00..=0x7F client messages, 0x80..=0xFF peer messages
//!  7     1    reserved     must be 0
//!  8     4    stream id    chosen by the requester, echoed by the response
//! 12     4    body length  bytes that follow the header
//! 16     4    checksum     CRC-32 (IEEE) of header bytes 0..16 followed by the body
//! ```
//!
//! Invariants: the header layout is the same for every protocol version, so a peer can
//! always read a handshake it does not speak and answer it with an error. A frame's total
//! length (header + body) never exceeds the cap in force; the cap is checked on the header
//! alone, before the body is buffered. Pure data, no threading concerns.

use bytes::{Buf, BufMut, Bytes};

use crate::error::ProtocolError;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"SBYL";
/// Length of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 20;

/// Offset of the magic.
pub const OFFSET_MAGIC: usize = 0;
/// Offset of the protocol version byte.
pub const OFFSET_VERSION: usize = 4;
/// Offset of the flags byte.
pub const OFFSET_FLAGS: usize = 5;
/// Offset of the opcode byte.
pub const OFFSET_OPCODE: usize = 6;
/// Offset of the reserved byte (must be zero).
pub const OFFSET_RESERVED: usize = 7;
/// Offset of the stream id (u32).
pub const OFFSET_STREAM_ID: usize = 8;
/// Offset of the body length (u32).
pub const OFFSET_BODY_LEN: usize = 12;
/// Offset of the checksum (u32); the checksum covers every header byte before it.
pub const OFFSET_CHECKSUM: usize = 16;

/// Flag bit: the frame answers a request with the same stream id.
pub const FLAG_RESPONSE: u8 = 0x01;
/// Flag bit: the body is an error (only together with [`FLAG_RESPONSE`]).
pub const FLAG_ERROR: u8 = 0x02;
/// Every flag bit this version defines; a frame with any other bit set is rejected.
pub const KNOWN_FLAGS: u8 = FLAG_RESPONSE | FLAG_ERROR;

/// Default cap on a frame (header + body) after the handshake: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Cap on a frame before the handshake completes: 64 KiB, so an unauthenticated peer
/// cannot make the server buffer much.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 64 * 1024;
/// Opcode of an error frame that answers no request: a frame the server could not read
/// (its header is unverified, so its opcode and stream id are not echoed) or a connection
/// refused over the limit. Never assigned to a message, so it cannot be mistaken for the
/// answer to one.
pub const CONNECTION_ERROR_OPCODE: u8 = 0x00;
/// Stream id of an error frame that answers no request (see [`CONNECTION_ERROR_OPCODE`]).
pub const CONNECTION_ERROR_STREAM_ID: u32 = 0;
/// Opcodes below this value are client messages; this value and above are reserved for
/// node-to-node (peer) messages on the peer port.
pub const PEER_OPCODE_BASE: u8 = 0x80;

/// The decoded fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version of the message in the body.
    pub version: u8,
    /// Flag bits ([`FLAG_RESPONSE`], [`FLAG_ERROR`]).
    pub flags: u8,
    /// Message opcode.
    pub opcode: u8,
    /// Stream id matching a response to its request.
    pub stream_id: u32,
    /// Number of body bytes after the header.
    pub body_len: u32,
    /// CRC-32 of header bytes `0..16` and the body.
    pub checksum: u32,
}

impl FrameHeader {
    /// Parses and validates a header (magic, reserved bits, length against `max_frame_len`).
    /// The checksum is only read here; [`Frame::decode`] and the codec verify it once the
    /// body is present.
    pub fn decode(buf: &[u8; HEADER_LEN], max_frame_len: usize) -> Result<Self, ProtocolError> {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&buf[OFFSET_MAGIC..OFFSET_MAGIC + 4]);
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic { got: magic });
        }
        let flags = buf[OFFSET_FLAGS];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(ProtocolError::UnknownFlags { flags });
        }
        if flags & FLAG_ERROR != 0 && flags & FLAG_RESPONSE == 0 {
            return Err(ProtocolError::UnknownFlags { flags });
        }
        if buf[OFFSET_RESERVED] != 0 {
            return Err(ProtocolError::ReservedNonZero {
                value: buf[OFFSET_RESERVED],
            });
        }
        let mut rest = &buf[OFFSET_STREAM_ID..];
        let stream_id = rest.get_u32();
        let body_len = rest.get_u32();
        let checksum = rest.get_u32();
        let total = HEADER_LEN as u64 + u64::from(body_len);
        if total > max_frame_len as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: total,
                max: max_frame_len as u64,
            });
        }
        Ok(FrameHeader {
            version: buf[OFFSET_VERSION],
            flags,
            opcode: buf[OFFSET_OPCODE],
            stream_id,
            body_len,
            checksum,
        })
    }

    /// Total frame length (header + body).
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

/// One frame: header fields and the body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the message in the body.
    pub version: u8,
    /// Flag bits ([`FLAG_RESPONSE`], [`FLAG_ERROR`]).
    pub flags: u8,
    /// Message opcode.
    pub opcode: u8,
    /// Stream id matching a response to its request.
    pub stream_id: u32,
    /// The encoded message.
    pub body: Bytes,
}

impl Frame {
    /// True when the frame is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// True when the frame is an error response.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// True when the opcode lies in the peer (node-to-node) range.
    pub fn is_peer(&self) -> bool {
        self.opcode >= PEER_OPCODE_BASE
    }

    /// Total encoded length (header + body).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the encoded frame to `dst`. Fails only if the body cannot be described by a
    /// u32 length or the frame exceeds `max_frame_len`.
    pub fn encode(&self, dst: &mut impl BufMut, max_frame_len: usize) -> Result<(), ProtocolError> {
        let total = self.encoded_len();
        if total > max_frame_len || self.body.len() > u32::MAX as usize {
            return Err(ProtocolError::FrameTooLarge {
                len: total as u64,
                max: max_frame_len as u64,
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[OFFSET_MAGIC..OFFSET_MAGIC + 4].copy_from_slice(&MAGIC);
        header[OFFSET_VERSION] = self.version;
        header[OFFSET_FLAGS] = self.flags;
        header[OFFSET_OPCODE] = self.opcode;
        header[OFFSET_RESERVED] = 0;
        header[OFFSET_STREAM_ID..OFFSET_STREAM_ID + 4]
            .copy_from_slice(&self.stream_id.to_be_bytes());
        header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4]
            .copy_from_slice(&(self.body.len() as u32).to_be_bytes());
        let checksum = checksum(&header[..OFFSET_CHECKSUM], &self.body);
        header[OFFSET_CHECKSUM..].copy_from_slice(&checksum.to_be_bytes());
        dst.put_slice(&header);
        dst.put_slice(&self.body);
        Ok(())
    }

    /// Encodes into a fresh `Vec` (convenience for tests, docs and fuzz seeds).
    pub fn to_vec(&self, max_frame_len: usize) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out, max_frame_len)?;
        Ok(out)
    }

    /// Decodes exactly one frame from `buf` (which must hold the whole frame and nothing
    /// more). The streaming decoder is [`crate::FrameCodec`].
    pub fn decode(buf: &[u8], max_frame_len: usize) -> Result<Frame, ProtocolError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Err(ProtocolError::Truncated {
                what: "frame header",
                needed: HEADER_LEN as u64,
                available: buf.len() as u64,
            });
        };
        let mut arr = [0u8; HEADER_LEN];
        arr.copy_from_slice(head);
        let header = FrameHeader::decode(&arr, max_frame_len)?;
        let body = buf.get(HEADER_LEN..).unwrap_or_default();
        if body.len() < header.body_len as usize {
            return Err(ProtocolError::Truncated {
                what: "frame body",
                needed: u64::from(header.body_len),
                available: body.len() as u64,
            });
        }
        if body.len() > header.body_len as usize {
            return Err(ProtocolError::TrailingBytes {
                what: "frame",
                count: (body.len() - header.body_len as usize) as u64,
            });
        }
        Frame::from_parts(&header, Bytes::copy_from_slice(body))
    }

    /// Builds a frame from a validated header and its body, verifying the checksum.
    pub fn from_parts(header: &FrameHeader, body: Bytes) -> Result<Frame, ProtocolError> {
        let mut head = [0u8; OFFSET_CHECKSUM];
        head[OFFSET_MAGIC..OFFSET_MAGIC + 4].copy_from_slice(&MAGIC);
        head[OFFSET_VERSION] = header.version;
        head[OFFSET_FLAGS] = header.flags;
        head[OFFSET_OPCODE] = header.opcode;
        head[OFFSET_STREAM_ID..OFFSET_STREAM_ID + 4]
            .copy_from_slice(&header.stream_id.to_be_bytes());
        head[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4].copy_from_slice(&header.body_len.to_be_bytes());
        let got = checksum(&head, &body);
        if got != header.checksum {
            return Err(ProtocolError::ChecksumMismatch {
                expected: header.checksum,
                got,
            });
        }
        Ok(Frame {
            version: header.version,
            flags: header.flags,
            opcode: header.opcode,
            stream_id: header.stream_id,
            body,
        })
    }
}

/// CRC-32 (IEEE) of the first 16 header bytes followed by the body.
pub fn checksum(header_prefix: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_prefix);
    hasher.update(body);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            version: 1,
            flags: FLAG_RESPONSE,
            opcode: 0x21,
            stream_id: 7,
            body: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn frame_round_trips() {
        let f = sample();
        let bytes = f.to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN).unwrap(), f);
    }

    #[test]
    fn frame_flipped_body_bit_fails_checksum() {
        let mut bytes = sample().to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        bytes[HEADER_LEN] ^= 1;
        assert!(matches!(
            Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn frame_flipped_stream_id_fails_checksum() {
        let mut bytes = sample().to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        bytes[OFFSET_STREAM_ID + 3] ^= 1;
        assert!(matches!(
            Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn frame_bad_magic_is_rejected() {
        let mut bytes = sample().to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        bytes[0] = b'X';
        assert!(matches!(
            Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::BadMagic { .. })
        ));
    }

    #[test]
    fn frame_unknown_flag_is_rejected() {
        let mut bytes = sample().to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        bytes[OFFSET_FLAGS] = 0x80;
        assert!(matches!(
            Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN),
            Err(ProtocolError::UnknownFlags { flags: 0x80 })
        ));
    }

    #[test]
    fn frame_header_over_cap_is_rejected_before_body() {
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&MAGIC);
        header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = FrameHeader::decode(&header, HANDSHAKE_MAX_FRAME_LEN).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { max, .. } if max == HANDSHAKE_MAX_FRAME_LEN as u64)
        );
    }

    #[test]
    fn frame_encode_over_cap_is_refused() {
        let f = Frame {
            body: Bytes::from(vec![0u8; 100]),
            ..sample()
        };
        assert!(f.to_vec(HEADER_LEN + 99).is_err());
        assert!(f.to_vec(HEADER_LEN + 100).is_ok());
    }
}
