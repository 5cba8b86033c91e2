//! Fuzz harnesses for the frame and message decoders, shared by the cargo-fuzz targets in
//! `fuzz/` and by `tests/fuzz_corpus.rs`, which replays the corpus on stable Rust.
//!
//! Each harness feeds arbitrary bytes to a decoder; a decoder may reject them but must not
//! panic. Whatever decodes must re-encode to exactly the bytes it came from (the encodings
//! are canonical), which the harness asserts: an assertion failure here is a finding.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::FrameCodec;
use crate::frame::{Frame, HANDSHAKE_MAX_FRAME_LEN};
use crate::message::opcode::Opcode;
use crate::message::request::Request;
use crate::message::response::Response;

/// Cap used by the frame harness (small, so the fuzzer can reach the limit).
pub const FUZZ_MAX_FRAME_LEN: usize = HANDSHAKE_MAX_FRAME_LEN;

/// Feeds `data` to the streaming codec and to [`Frame::decode`]. Every frame the codec
/// yields must re-encode to the bytes it consumed.
pub fn fuzz_frame(data: &[u8]) {
    let _ = Frame::decode(data, FUZZ_MAX_FRAME_LEN);
    let mut codec = FrameCodec::with_max_frame_len(FUZZ_MAX_FRAME_LEN);
    let mut buf = BytesMut::from(data);
    let mut offset = 0usize;
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = before - buf.len();
                let original = data.get(offset..offset + consumed).unwrap_or_default();
                let mut again = BytesMut::new();
                let encoded = codec.encode(&frame, &mut again);
                assert!(
                    encoded.is_ok(),
                    "decoded frame does not re-encode: {encoded:?}"
                );
                assert_eq!(&again[..], original, "frame re-encoding differs");
                offset += consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// Interprets `data` as `[opcode, flags, body...]` and decodes the body as a request and
/// as a response of that opcode. Whatever decodes must re-encode to the same body.
pub fn fuzz_message(data: &[u8]) {
    let (Some(&op), Some(&flags)) = (data.first(), data.get(1)) else {
        return;
    };
    let body = Bytes::copy_from_slice(data.get(2..).unwrap_or_default());
    let Ok(opcode) = Opcode::from_u8(op) else {
        return;
    };
    if let Ok(request) = Request::decode_body(opcode, body.clone()) {
        let again = request.encode_body();
        assert!(
            again.is_ok(),
            "decoded request does not re-encode: {again:?}"
        );
        assert_eq!(
            again.unwrap_or_default(),
            body,
            "request re-encoding differs"
        );
    }
    let is_error = flags & 1 != 0;
    if let Ok(response) = Response::decode_body(opcode, is_error, body.clone()) {
        let again = response.encode_body();
        assert!(
            again.is_ok(),
            "decoded response does not re-encode: {again:?}"
        );
        assert_eq!(
            again.unwrap_or_default(),
            body,
            "response re-encoding differs"
        );
    }
}
