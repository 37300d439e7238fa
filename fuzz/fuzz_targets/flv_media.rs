//! FLV tag bodies through the media path: FLV, AVC and AAC configuration parsing, timestamp
//! repair, Annex B conversion, segmenting and MPEG-TS muxing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::flv_media(data);
});

