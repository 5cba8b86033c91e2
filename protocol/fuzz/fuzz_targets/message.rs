//! Fuzzes the request and response body decoders. Input: `[opcode, flags, body...]`.
//! No panic on any bytes, and whatever decodes re-encodes to the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sibyl_protocol::fuzzing::fuzz_message(data);
});
