//! The peer frame: a 16-byte header and a body (spec: `doc/peer-messages.md`, "Frames").
//!
//! ```text
//! 0  family:u8   which component owns the body (see [`Family`])
//! 1  kind:u8     1 request, 2 response, 3 one-way, 4 error
//! 2  flags:u16   0 (reserved; a frame with other flags is refused)
//! 4  stream:u32  request id, echoed by its response or error; 0 for one-way
//! 8  len:u32     body length (<= MAX_BODY_BYTES)
//! 12 crc32:u32   CRC-32 (IEEE) of header bytes 0..12 followed by the body
//! ```
//!
//! An error body is `code:u8 len:u16 utf8[len]`. Decoding checks the header (family,
//! kind, flags, length cap) before the body is buffered, then the checksum; it never
//! panics on any input. Both the TCP network and the tests use these functions.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use bytes::{BufMut, Bytes, BytesMut};

use super::Family;

/// Header length in bytes.
pub const HEADER_BYTES: usize = 16;
/// Largest body a frame may carry (16 MiB: the largest gossip message, and the chunk cap
/// for streaming, which splits larger transfers).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Longest error message carried, in bytes (longer ones are cut at a char boundary).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A call; answered by a response or an error with the same stream id.
    Request,
    /// The answer to a request.
    Response,
    /// A message that gets no answer.
    OneWay,
    /// A request's failure (body: [`ErrorCode`] and message).
    Error,
}

impl FrameKind {
    /// Its byte.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Request => 1,
            FrameKind::Response => 2,
            FrameKind::OneWay => 3,
            FrameKind::Error => 4,
        }
    }

    /// The kind of a byte.
    pub fn from_code(code: u8) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::OneWay,
            4 => FrameKind::Error,
            _ => return None,
        })
    }
}

/// Why a request failed at the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Too many requests in flight on the connection.
    Overloaded,
    /// No component registered for the family.
    NoHandler,
    /// The handler refused or failed the request.
    Handler,
}

impl ErrorCode {
    /// Its byte.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::Overloaded => 1,
            ErrorCode::NoHandler => 2,
            ErrorCode::Handler => 3,
        }
    }

    /// The code of a byte.
    pub fn from_code(code: u8) -> Option<ErrorCode> {
        Some(match code {
            1 => ErrorCode::Overloaded,
            2 => ErrorCode::NoHandler,
            3 => ErrorCode::Handler,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid peer frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header or than the header's length promises.
    #[error("truncated frame: {len} bytes, needed {needed}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Unknown family byte.
    #[error("unknown message family {family:#04x}")]
    BadFamily {
        /// The byte.
        family: u8,
    },
    /// Unknown kind byte.
    #[error("unknown frame kind {kind:#04x}")]
    BadKind {
        /// The byte.
        kind: u8,
    },
    /// Reserved flags set.
    #[error("reserved frame flags {flags:#06x} set")]
    BadFlags {
        /// The flags.
        flags: u16,
    },
    /// The body length exceeds [`MAX_BODY_BYTES`].
    #[error("frame body of {len} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The checksum does not match.
    #[error("frame checksum mismatch: got {got:#010x}, expected {expected:#010x}")]
    ChecksumMismatch {
        /// Stored in the frame.
        got: u32,
        /// Computed.
        expected: u32,
    },
    /// An error body that does not parse.
    #[error("malformed error body")]
    BadErrorBody,
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Owning component.
    pub family: Family,
    /// What the frame is.
    pub kind: FrameKind,
    /// Request id (0 for one-way).
    pub stream: u32,
    /// Body length.
    pub len: u32,
    /// Stored checksum.
    pub crc: u32,
}

impl FrameHeader {
    /// Decodes and checks a header (not the checksum: that needs the body).
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
        let family =
            Family::from_code(bytes[0]).ok_or(FrameError::BadFamily { family: bytes[0] })?;
        let kind = FrameKind::from_code(bytes[1]).ok_or(FrameError::BadKind { kind: bytes[1] })?;
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        if flags != 0 {
            return Err(FrameError::BadFlags { flags });
        }
        let stream = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if len as usize > MAX_BODY_BYTES {
            return Err(FrameError::TooLarge {
                len: len as usize,
                max: MAX_BODY_BYTES,
            });
        }
        let crc = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        Ok(FrameHeader {
            family,
            kind,
            stream,
            len,
            crc,
        })
    }

    /// Checks `body` against the stored checksum.
    pub fn verify(&self, header: &[u8; HEADER_BYTES], body: &[u8]) -> Result<(), FrameError> {
        let expected = checksum(&header[..12], body);
        if expected != self.crc {
            return Err(FrameError::ChecksumMismatch {
                got: self.crc,
                expected,
            });
        }
        Ok(())
    }
}

/// A frame ready to write: its header and its body (kept apart so a large body is
/// written without being copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Owning component.
    pub family: Family,
    /// What the frame is.
    pub kind: FrameKind,
    /// Request id (0 for one-way).
    pub stream: u32,
    /// The body.
    pub body: Bytes,
}

impl Frame {
    /// A frame; refuses a body over [`MAX_BODY_BYTES`].
    pub fn new(
        family: Family,
        kind: FrameKind,
        stream: u32,
        body: Bytes,
    ) -> Result<Frame, FrameError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(FrameError::TooLarge {
                len: body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        Ok(Frame {
            family,
            kind,
            stream,
            body,
        })
    }

    /// An error frame answering request `stream`.
    pub fn error(family: Family, stream: u32, code: ErrorCode, message: &str) -> Frame {
        let mut cut = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let msg = message.get(..cut).unwrap_or_default();
        let mut body = BytesMut::with_capacity(3 + msg.len());
        body.put_u8(code.code());
        body.put_u16(msg.len() as u16);
        body.put_slice(msg.as_bytes());
        Frame {
            family,
            kind: FrameKind::Error,
            stream,
            body: body.freeze(),
        }
    }

    /// The encoded header (the body length is below the cap by construction).
    pub fn header(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0] = self.family.code();
        h[1] = self.kind.code();
        h[4..8].copy_from_slice(&self.stream.to_be_bytes());
        h[8..12].copy_from_slice(&(self.body.len() as u32).to_be_bytes());
        let crc = checksum(&h[..12], &self.body);
        h[12..16].copy_from_slice(&crc.to_be_bytes());
        h
    }

    /// Header and body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_BYTES + self.body.len());
        v.extend_from_slice(&self.header());
        v.extend_from_slice(&self.body);
        v
    }

    /// Decodes one whole frame from `bytes` (exactly one frame, no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let head: &[u8; HEADER_BYTES] = bytes
            .get(..HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or(FrameError::Truncated {
            len: bytes.len(),
            needed: HEADER_BYTES,
        })?;
        let h = FrameHeader::decode(head)?;
        let needed = HEADER_BYTES + h.len as usize;
        if bytes.len() != needed {
            return Err(FrameError::Truncated {
                len: bytes.len(),
                needed,
            });
        }
        let body = bytes.get(HEADER_BYTES..).unwrap_or_default();
        h.verify(head, body)?;
        Ok(Frame {
            family: h.family,
            kind: h.kind,
            stream: h.stream,
            body: Bytes::copy_from_slice(body),
        })
    }
}

/// Decodes an error frame's body.
pub fn decode_error_body(body: &[u8]) -> Result<(ErrorCode, String), FrameError> {
    let (&code, rest) = body.split_first().ok_or(FrameError::BadErrorBody)?;
    let code = ErrorCode::from_code(code).ok_or(FrameError::BadErrorBody)?;
    let len_bytes: [u8; 2] = rest
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::BadErrorBody)?;
    let len = u16::from_be_bytes(len_bytes) as usize;
    let text = rest.get(2..).ok_or(FrameError::BadErrorBody)?;
    if text.len() != len {
        return Err(FrameError::BadErrorBody);
    }
    let msg = std::str::from_utf8(text).map_err(|_| FrameError::BadErrorBody)?;
    Ok((code, msg.to_owned()))
}

fn checksum(head: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let f = Frame::new(
            Family::Replica,
            FrameKind::Request,
            7,
            Bytes::from_static(b"abc"),
        )
        .unwrap();
        assert_eq!(Frame::decode(&f.to_vec()), Ok(f));
    }

    #[test]
    fn frame_every_truncation_and_bit_flip_is_refused() {
        let f = Frame::new(
            Family::Gossip,
            FrameKind::OneWay,
            0,
            Bytes::from_static(b"hello"),
        )
        .unwrap();
        let bytes = f.to_vec();
        for n in 0..bytes.len() {
            assert!(Frame::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Frame::decode(&b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn frame_error_body_round_trips_and_cuts_long_messages() {
        let long = "é".repeat(MAX_ERROR_MESSAGE);
        let f = Frame::error(Family::Hints, 3, ErrorCode::Handler, &long);
        let (code, msg) = decode_error_body(&f.body).unwrap();
        assert_eq!(code, ErrorCode::Handler);
        assert!(msg.len() <= MAX_ERROR_MESSAGE && long.starts_with(&msg));
        assert!(decode_error_body(&[9, 0, 0]).is_err());
    }
}
