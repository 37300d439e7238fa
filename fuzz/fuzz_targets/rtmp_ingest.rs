//! The RTMP ingest protocol core as a whole: handshake, chunk stream, commands, FLV media, as
//! a connection drives it. Bytes in; no panic, bounded memory, and the same events whether the
//! bytes arrive at once or in small pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::rtmp_ingest(data);
});

