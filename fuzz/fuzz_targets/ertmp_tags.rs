//! Enhanced RTMP tag bodies: the extended video and audio headers (ModEx, multitrack, FourCC),
//! the HEVC, AV1, H.264 and AAC configuration records, Annex B and OBU conversion, MPEG-TS and
//! fMP4 writing, and the `connect` capability exchange.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::ertmp_tags(data);
});
