//! The media types that flow from ingest through the bus to the transcoders and segmenters.
//! Timestamps are 90 kHz ticks on a 64-bit timeline that never wraps and never goes back.

use std::sync::Arc;

use bytes::Bytes;

use super::aac::AacConfig;
use super::av1::{self, Av1Config, Av1Error};
use super::avc::{self, AvcConfig, AvcError};
use super::hevc::{self, HevcConfig, HevcError};
use super::nal::{self, NalSyntax};

/// 90 kHz, the MPEG timescale used everywhere inside onair.
pub const TIMESCALE: i64 = 90_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

/// Video codecs onair takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Avc,
    Hevc,
    Av1,
}

impl VideoCodec {
    /// The name ffmpeg and ffprobe use (`codec_name`), shown in the admin API and logs.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Avc => "h264",
            VideoCodec::Hevc => "hevc",
            VideoCodec::Av1 => "av1",
        }
    }
}

/// Audio codecs onair takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    Aac,
    Opus,
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
        }
    }
}

/// Why a configuration record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoConfigError {
    #[error("H.264: {0}")]
    Avc(#[from] AvcError),
    #[error("HEVC: {0}")]
    Hevc(#[from] HevcError),
    #[error("AV1: {0}")]
    Av1(#[from] Av1Error),
}

/// The decoder configuration of a video stream, whichever codec it is in.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoConfig {
    Avc(AvcConfig),
    Hevc(HevcConfig),
    Av1(Av1Config),
}

impl VideoConfig {
    /// Parses a configuration record (an FLV / Enhanced RTMP sequence start, an fMP4 box).
    pub fn from_record(codec: VideoCodec, record: Bytes) -> Result<VideoConfig, VideoConfigError> {
        Ok(match codec {
            VideoCodec::Avc => VideoConfig::Avc(AvcConfig::parse(record)?),
            VideoCodec::Hevc => VideoConfig::Hevc(HevcConfig::parse(record)?),
            VideoCodec::Av1 => VideoConfig::Av1(Av1Config::parse(record)?),
        })
    }

    /// The configuration a keyframe carries in band, for streams that send no record: H.264
    /// SPS/PPS, HEVC VPS/SPS/PPS (length-prefixed or Annex B: the flag is true for Annex B), an
    /// AV1 sequence header OBU.
    pub fn from_access_unit(codec: VideoCodec, data: &Bytes) -> Option<(VideoConfig, bool)> {
        match codec {
            VideoCodec::Avc => AvcConfig::from_access_unit(data).map(|(c, a)| (c.into(), a)),
            VideoCodec::Hevc => HevcConfig::from_access_unit(data).map(|(c, a)| (c.into(), a)),
            VideoCodec::Av1 => av1::sequence_header(data)
                .and_then(|s| Av1Config::from_sequence_header(s).ok())
                .map(|c| (c.into(), false)),
        }
    }

    /// The configuration for parameter sets found in band (with their NAL unit types, as
    /// [`nal::annex_b_to_length_prefixed`] lists them): H.264 SPS/PPS, HEVC VPS/SPS/PPS.
    /// `None` when a kind the codec needs is missing (and always for AV1).
    pub fn from_parameter_sets(
        codec: VideoCodec,
        sets: &[(u8, Bytes)],
    ) -> Option<Result<VideoConfig, VideoConfigError>> {
        let of = |t| nal::sets_of(sets, t);
        match codec {
            VideoCodec::Avc => {
                let (sps, pps) = (of(7), of(8));
                (!sps.is_empty() && !pps.is_empty()).then(|| {
                    AvcConfig::from_parameter_sets(&sps, &pps)
                        .map(VideoConfig::Avc)
                        .map_err(VideoConfigError::from)
                })
            }
            VideoCodec::Hevc => {
                let (vps, sps, pps) = (of(hevc::NAL_VPS), of(hevc::NAL_SPS), of(hevc::NAL_PPS));
                (!vps.is_empty() && !sps.is_empty() && !pps.is_empty()).then(|| {
                    HevcConfig::from_parameter_sets(&vps, &sps, &pps)
                        .map(VideoConfig::Hevc)
                        .map_err(VideoConfigError::from)
                })
            }
            VideoCodec::Av1 => None,
        }
    }

    /// How the codec frames NAL units (H.264, HEVC); `None` for AV1 (OBUs).
    pub fn nal_syntax(codec: VideoCodec) -> Option<&'static NalSyntax> {
        match codec {
            VideoCodec::Avc => Some(&avc::SYNTAX),
            VideoCodec::Hevc => Some(&hevc::SYNTAX),
            VideoCodec::Av1 => None,
        }
    }

    /// An access unit in the form the bus carries: Annex B H.264/HEVC converted to 4-byte
    /// length prefixes (when `annex_b`), AV1 without temporal delimiters.
    pub fn to_bus_form(codec: VideoCodec, data: Bytes, annex_b: bool) -> Bytes {
        match Self::nal_syntax(codec) {
            Some(syntax) if annex_b => {
                Bytes::from(nal::annex_b_to_length_prefixed(syntax, &data).data)
            }
            Some(_) => data,
            None => av1::strip_delimiters(&data).unwrap_or(data),
        }
    }

    pub fn codec(&self) -> VideoCodec {
        match self {
            VideoConfig::Avc(_) => VideoCodec::Avc,
            VideoConfig::Hevc(_) => VideoCodec::Hevc,
            VideoConfig::Av1(_) => VideoCodec::Av1,
        }
    }

    pub fn width(&self) -> u32 {
        match self {
            VideoConfig::Avc(c) => c.width,
            VideoConfig::Hevc(c) => c.width,
            VideoConfig::Av1(c) => c.width,
        }
    }

    pub fn height(&self) -> u32 {
        match self {
            VideoConfig::Avc(c) => c.height,
            VideoConfig::Hevc(c) => c.height,
            VideoConfig::Av1(c) => c.height,
        }
    }

    /// Frame rate from the codec's own timing information, when the encoder wrote it.
    pub fn fps(&self) -> Option<f64> {
        match self {
            VideoConfig::Avc(c) => c.fps,
            VideoConfig::Hevc(c) => c.fps,
            VideoConfig::Av1(c) => c.fps,
        }
    }

    /// The configuration record as received: the body of the fMP4 `avcC` / `hvcC` / `av1C`
    /// box, and ffmpeg's extradata for the decoder.
    pub fn record(&self) -> &Bytes {
        match self {
            VideoConfig::Avc(c) => &c.record,
            VideoConfig::Hevc(c) => &c.record,
            VideoConfig::Av1(c) => &c.record,
        }
    }

    /// RFC 6381 `CODECS` value: `avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`.
    pub fn codec_string(&self) -> String {
        match self {
            VideoConfig::Avc(c) => c.codec_string(),
            VideoConfig::Hevc(c) => c.codec_string(),
            VideoConfig::Av1(c) => c.codec_string(),
        }
    }

    pub fn as_avc(&self) -> Option<&AvcConfig> {
        match self {
            VideoConfig::Avc(c) => Some(c),
            _ => None,
        }
    }
}

impl From<AvcConfig> for VideoConfig {
    fn from(c: AvcConfig) -> Self {
        VideoConfig::Avc(c)
    }
}

impl From<HevcConfig> for VideoConfig {
    fn from(c: HevcConfig) -> Self {
        VideoConfig::Hevc(c)
    }
}

impl From<Av1Config> for VideoConfig {
    fn from(c: Av1Config) -> Self {
        VideoConfig::Av1(c)
    }
}

/// One coded frame. `data` is an access unit in the stream's codec: H.264 or HEVC NAL units
/// with the length prefixes of the configuration record, or the OBUs of one AV1 temporal unit
/// (with size fields, without temporal delimiters), or a raw AAC frame; cloning the packet
/// clones a reference to the payload, never the bytes.
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
    pub video: Option<Arc<VideoConfig>>,
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
            video: Some(Arc::new(VideoConfig::Avc(
                AvcConfig::parse(record()).expect("avc"),
            ))),
            audio: Some(Arc::new(
                AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("aac"),
            )),
        }
    }
}
