//! MPEG-TS bytes, as an SRT caller sends them, through the TS demuxer (resync, PAT/PMT, PES
//! reassembly, PTS/DTS unwrap, H.264 and ADTS parsing), the media feed and the segmenters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::ts_demux(data);
});
