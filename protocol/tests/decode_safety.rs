//! Decoder safety: every message round-trips through its frame; arbitrary and mutated bytes
//! never panic the frame or message decoders; decoding stays within its memory bounds.
//! proptest prints the failing seed and case; rerun with `PROPTEST_CASES` to go deeper.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

mod strategies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sibyl_protocol::fuzzing::{fuzz_frame, fuzz_message};
use sibyl_protocol::{
    Frame, FrameCodec, Opcode, ProtocolError, Request, Response, DEFAULT_MAX_FRAME_LEN,
};
use tokio_util::codec::{Decoder, Encoder};

/// Counts bytes allocated by the current thread while tracking is on.
struct CountingAlloc;

thread_local! {
    static TRACKING: StdCell<bool> = const { StdCell::new(false) };
    static ALLOCATED: StdCell<usize> = const { StdCell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = TRACKING.try_with(|t| {
            if t.get() {
                let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
            }
        });
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Bytes allocated (not net of frees) by this thread while running `f`.
fn allocated_during(f: impl FnOnce()) -> usize {
    ALLOCATED.with(|a| a.set(0));
    TRACKING.with(|t| t.set(true));
    f();
    TRACKING.with(|t| t.set(false));
    ALLOCATED.with(|a| a.get())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_round_trips_through_a_frame(req in strategies::request(), stream_id in any::<u32>()) {
        let frame = req.to_frame(stream_id).unwrap();
        let bytes = frame.to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        let decoded = Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(Request::decode_body(req.opcode(), decoded.body).unwrap(), req);
    }

    #[test]
    fn response_round_trips_through_a_frame(
        resp in strategies::response(),
        pick in any::<prop::sample::Index>(),
        stream_id in any::<u32>(),
    ) {
        let fitting: Vec<Opcode> = Opcode::ALL.into_iter().filter(|o| resp.fits(*o)).collect();
        let opcode = fitting[pick.index(fitting.len())];
        let frame = resp.to_frame(stream_id, opcode).unwrap();
        let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        let mut wire = BytesMut::new();
        codec.encode(&frame, &mut wire).unwrap();
        let decoded = codec.decode(&mut wire).unwrap().unwrap();
        prop_assert!(wire.is_empty());
        prop_assert_eq!(Response::from_frame(&decoded).unwrap(), resp);
    }

    #[test]
    fn frame_decoder_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_frame(&data);
    }

    #[test]
    fn message_decoder_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_message(&data);
    }

    #[test]
    fn message_decoder_survives_mutated_encodings(
        req in strategies::request(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = req.encode_body().unwrap().to_vec();
        for (at, byte) in flips {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] ^= byte;
            }
        }
        body.truncate(cut.index(body.len() + 1));
        let mut data = vec![req.opcode().as_u8(), 0];
        data.extend_from_slice(&body);
        fuzz_message(&data);
    }

    #[test]
    fn frame_decoder_survives_mutated_frames(
        resp in strategies::response(),
        flip in any::<prop::sample::Index>(),
        byte in 1u8..,
    ) {
        let opcode = Opcode::ALL.into_iter().find(|o| resp.fits(*o)).unwrap();
        let mut bytes = resp.to_frame(1, opcode).unwrap().to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        let i = flip.index(bytes.len());
        bytes[i] ^= byte;
        // Any single-byte change is caught (by a header check or the checksum).
        prop_assert!(Frame::decode(&bytes, DEFAULT_MAX_FRAME_LEN).is_err());
        fuzz_frame(&bytes);
    }

    #[test]
    fn message_decoding_allocates_in_proportion_to_input(data in proptest::collection::vec(any::<u8>(), 2..2048)) {
        let body = Bytes::copy_from_slice(&data[2..]);
        let Ok(opcode) = Opcode::from_u8(data[0]) else { return Ok(()) };
        let used = allocated_during(|| {
            let _ = Request::decode_body(opcode, body.clone());
            let _ = Response::decode_body(opcode, data[1] & 1 == 1, body.clone());
        });
        // Worst element expansion is 24 bytes of String per 2 wire bytes; plus error text.
        prop_assert!(used <= 16 * data.len() + 4096, "{} bytes allocated for {} input bytes", used, data.len());
    }
}

#[test]
fn message_huge_list_count_is_rejected_without_allocating() {
    // LIST_TABLES response claiming 4 billion table names in a 4-byte body.
    let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    let mut result = None;
    let used =
        allocated_during(|| result = Some(Response::decode_body(Opcode::ListTables, false, body)));
    assert!(
        matches!(result, Some(Err(ProtocolError::Truncated { .. }))),
        "{result:?}"
    );
    assert!(used < 1024, "{used} bytes allocated");
}

#[test]
fn frame_codec_rejects_oversized_length_without_allocating() {
    let mut header = Frame {
        version: 1,
        flags: 0,
        opcode: 2,
        stream_id: 1,
        body: Bytes::new(),
    }
    .to_vec(DEFAULT_MAX_FRAME_LEN)
    .unwrap();
    header[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut buf = BytesMut::from(&header[..]);
    let mut codec = FrameCodec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN);
    let mut result = None;
    let used = allocated_during(|| result = Some(codec.decode(&mut buf)));
    assert!(
        matches!(result, Some(Err(ProtocolError::FrameTooLarge { .. }))),
        "{result:?}"
    );
    assert!(used < 1024, "{used} bytes allocated");
}
