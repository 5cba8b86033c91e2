//! Fuzzes the frame decoders (`FrameCodec`, `Frame::decode`): no panic on any bytes, and
//! every decoded frame re-encodes to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sibyl_protocol::fuzzing::fuzz_frame(data);
});
