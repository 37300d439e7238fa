//! RTMP command handling in depth: arbitrary messages, framed correctly, after a real
//! handshake and `connect`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::rtmp_messages(data);
});
