//! The media types that flow from ingest through the bus to the transcoders and segmenters.
//! Timestamps are 90 kHz ticks on a 64-bit timeline that never wraps and never goes back.

use std::sync::Arc;

use bytes::Bytes;

use super::aac::AacConfig;
use super::avc::AvcConfig;

/// 90 kHz, the MPEG timescale used everywhere inside onair.
pub const TIMESCALE: i64 = 90_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

/// One coded frame. `data` is a length-prefixed H.264 access unit or a raw AAC frame; cloning
/// the packet clones a reference to the payload, never the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPacket {
    pub track: Track,
    pub dts: i64,
    pub pts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// The codec configuration of a stream as far as it is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    pub video: Option<Arc<AvcConfig>>,
    pub audio: Option<Arc<AacConfig>>,
}

impl StreamInfo {
    /// `CODECS` attribute value for a playlist.
    pub fn codecs(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.video {
            parts.push(v.codec_string());
        }
        if let Some(a) = &self.audio {
            parts.push(a.codec_string());
        }
        parts.join(",")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::avc::tests::record;

    /// The codec configuration of fixtures/testsrc-320x180.flv (H.264 320x180, AAC-LC).
    pub fn info() -> StreamInfo {
        StreamInfo {
            video: Some(Arc::new(AvcConfig::parse(record()).expect("avc"))),
            audio: Some(Arc::new(
                AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("aac"),
            )),
        }
    }
}
