//! FLV tag bodies as RTMP carries them (audio message type 8, video type 9): which codec, whether
//! it is a sequence header (codec configuration) or a coded frame, keyframe flag and the
//! composition-time offset. Pure parsing over `Bytes`: payloads are sliced, never copied.
//!
//! Legacy tags (H.264 codec id 7, AAC sound format 10) are read here; Enhanced RTMP tags
//! (`IsExHeader` / sound format 9 with a FourCC: HEVC, AV1, H.264, AAC, Opus) by
//! [`super::ertmp`], into the same [`VideoTag`] and [`AudioTag`].

use bytes::Bytes;

pub use super::media::{AudioCodec, VideoCodec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("empty tag")]
    Empty,
    #[error("tag too short: {len} bytes")]
    Short { len: usize },
    #[error("unsupported video codec {codec}")]
    UnsupportedVideo { codec: String },
    #[error("unsupported audio codec {codec}")]
    UnsupportedAudio { codec: String },
    #[error("malformed Enhanced RTMP tag: {what}")]
    Malformed { what: &'static str },
}

/// A parsed video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// The codec configuration record: AVCDecoderConfigurationRecord,
    /// HEVCDecoderConfigurationRecord or AV1CodecConfigurationRecord.
    SequenceHeader { codec: VideoCodec, record: Bytes },
    /// One access unit: length-prefixed NAL units (H.264, HEVC) or the OBUs of one temporal
    /// unit (AV1).
    Frame {
        codec: VideoCodec,
        keyframe: bool,
        /// PTS - DTS in milliseconds (signed 24 bits on the wire; 0 for AV1 and CodedFramesX).
        composition_ms: i32,
        data: Bytes,
    },
    /// End of sequence, metadata, a command frame or a frame with no payload: nothing to do.
    Ignore,
}

/// A parsed audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// The codec configuration: AudioSpecificConfig (AAC) or the Opus ID header (may be
    /// empty, which means mono or stereo at 48 kHz).
    SequenceHeader { codec: AudioCodec, config: Bytes },
    /// One raw AAC frame, or one Opus packet.
    Frame { codec: AudioCodec, data: Bytes },
    /// End of sequence, channel layout or an empty message: nothing to do.
    Ignore,
}

/// A tag and the track it belongs to. Enhanced RTMP multitrack messages carry several tracks;
/// one is read, and `other_tracks` says whether the message had more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged<T> {
    pub tag: T,
    /// The track id (0 outside multitrack messages).
    pub track: u8,
    /// The message also carried tracks other than `track`, which were skipped.
    pub other_tracks: bool,
}

impl<T> Tagged<T> {
    pub(super) fn single(tag: T) -> Self {
        Tagged {
            tag,
            track: 0,
            other_tracks: false,
        }
    }
}

/// Parses an RTMP video message body. From a multitrack message, the track `want` is read (or
/// the first one when `None`); a message that lacks it reads as [`VideoTag::Ignore`].
pub fn parse_video(data: &Bytes, want: Option<u8>) -> Result<Tagged<VideoTag>, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty)?;
    if first & 0x80 != 0 {
        return super::ertmp::parse_video(data, want);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != 7 {
        let name = match codec_id {
            2 => "Sorenson H.263",
            3 => "Screen video",
            4 => "VP6",
            5 => "VP6 alpha",
            6 => "Screen video v2",
            12 => "HEVC (legacy FLV id 12; send Enhanced RTMP)",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedVideo {
            codec: format!("{name} (id {codec_id})"),
        });
    }
    if frame_type == 5 {
        // Video info/command frame: carries no picture.
        return Ok(Tagged::single(VideoTag::Ignore));
    }
    if data.len() < 5 {
        return Err(FlvError::Short { len: data.len() });
    }
    let packet_type = data[1];
    let composition_ms = si24(&data[2..5]);
    let payload = data.slice(5..);
    let codec = VideoCodec::Avc;
    Ok(Tagged::single(match packet_type {
        0 => VideoTag::SequenceHeader {
            codec,
            record: payload,
        },
        1 if payload.is_empty() => VideoTag::Ignore,
        1 => VideoTag::Frame {
            codec,
            keyframe: frame_type == 1,
            composition_ms,
            data: payload,
        },
        _ => VideoTag::Ignore,
    }))
}

/// A signed 24-bit big-endian integer (composition time offsets).
pub(super) fn si24(b: &[u8]) -> i32 {
    let raw = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
    ((raw << 8) as i32) >> 8
}

/// Parses an RTMP audio message body; `want` as for [`parse_video`].
pub fn parse_audio(data: &Bytes, want: Option<u8>) -> Result<Tagged<AudioTag>, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty)?;
    let format = first >> 4;
    if format == 9 {
        return super::ertmp::parse_audio(data, want);
    }
    if format != 10 {
        let name = match format {
            0 | 3 => "linear PCM",
            1 => "ADPCM",
            2 | 14 => "MP3",
            4..=6 => "Nellymoser",
            7 => "G.711 A-law",
            8 => "G.711 mu-law",
            11 => "Speex",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedAudio {
            codec: format!("{name} (format {format})"),
        });
    }
    if data.len() < 2 {
        return Err(FlvError::Short { len: data.len() });
    }
    let payload = data.slice(2..);
    let codec = AudioCodec::Aac;
    Ok(Tagged::single(match data[1] {
        0 => AudioTag::SequenceHeader {
            codec,
            config: payload,
        },
        _ if payload.is_empty() => AudioTag::Ignore,
        _ => AudioTag::Frame {
            codec,
            data: payload,
        },
    }))
}

/// One tag of an FLV file: type 8 audio, 9 video, 18 script data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTag {
    pub kind: u8,
    pub timestamp_ms: u32,
    pub body: Bytes,
}

/// Reads the tags of an FLV file (fixtures, benchmarks, fuzz seeds); stops at the first
/// truncated tag.
pub fn file_tags(file: &Bytes) -> impl Iterator<Item = FileTag> + '_ {
    let mut pos = if file.starts_with(b"FLV") && file.len() >= 9 {
        u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4
    } else {
        file.len()
    };
    std::iter::from_fn(move || {
        let h = file.get(pos..pos + 11)?;
        let size = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        let ts = ((h[7] as u32) << 24) | ((h[4] as u32) << 16) | ((h[5] as u32) << 8) | h[6] as u32;
        let body_end = pos + 11 + size;
        if body_end > file.len() {
            return None;
        }
        let tag = FileTag {
            kind: h[0] & 0x1f,
            timestamp_ms: ts,
            body: file.slice(pos + 11..body_end),
        };
        pos = body_end + 4;
        Some(tag)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file of fixtures/.
    pub fn fixture(name: &str) -> Bytes {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    fn video(input: &[u8]) -> Result<VideoTag, FlvError> {
        parse_video(&Bytes::copy_from_slice(input), None).map(|t| t.tag)
    }

    fn audio(input: &[u8]) -> Result<AudioTag, FlvError> {
        parse_audio(&Bytes::copy_from_slice(input), None).map(|t| t.tag)
    }

    #[test]
    fn reads_the_fixture_file() {
        let file = fixture("testsrc-320x180.flv");
        let tags: Vec<FileTag> = file_tags(&file).collect();
        let video: Vec<VideoTag> = tags
            .iter()
            .filter(|t| t.kind == 9)
            .map(|t| parse_video(&t.body, None).expect("video tag").tag)
            .collect();
        assert!(matches!(
            video[0],
            VideoTag::SequenceHeader {
                codec: VideoCodec::Avc,
                ..
            }
        ));
        let keyframes = video
            .iter()
            .filter(|v| matches!(v, VideoTag::Frame { keyframe: true, .. }))
            .count();
        assert_eq!(keyframes, 2, "3 s at 30 fps with a 60-frame GOP");
        let audio: Vec<AudioTag> = tags
            .iter()
            .filter(|t| t.kind == 8)
            .map(|t| parse_audio(&t.body, None).expect("audio tag").tag)
            .collect();
        assert!(matches!(audio[0], AudioTag::SequenceHeader { .. }));
        assert!(audio.len() > 100);
        let last = tags.last().expect("tags").timestamp_ms;
        assert!((2900..3100).contains(&last), "{last}");
    }

    #[test]
    fn video_tags() {
        let avc = VideoCodec::Avc;
        let cases: Vec<(Vec<u8>, Result<VideoTag, FlvError>)> = vec![
            (vec![], Err(FlvError::Empty)),
            (vec![0x17, 0, 0, 0], Err(FlvError::Short { len: 4 })),
            (
                vec![0x17, 0, 0, 0, 0, 1, 2],
                Ok(VideoTag::SequenceHeader {
                    codec: avc,
                    record: Bytes::from_static(&[1, 2]),
                }),
            ),
            (
                vec![0x17, 1, 0, 0, 0x21, 9, 9],
                Ok(VideoTag::Frame {
                    codec: avc,
                    keyframe: true,
                    composition_ms: 33,
                    data: Bytes::from_static(&[9, 9]),
                }),
            ),
            (
                // negative composition offset -1 (0xffffff)
                vec![0x27, 1, 0xff, 0xff, 0xff, 7],
                Ok(VideoTag::Frame {
                    codec: avc,
                    keyframe: false,
                    composition_ms: -1,
                    data: Bytes::from_static(&[7]),
                }),
            ),
            (vec![0x27, 1, 0, 0, 0], Ok(VideoTag::Ignore)),
            (vec![0x17, 2, 0, 0, 0], Ok(VideoTag::Ignore)),
            (vec![0x57, 0], Ok(VideoTag::Ignore)),
            (
                vec![0x1c, 0, 0, 0, 0],
                Err(FlvError::UnsupportedVideo {
                    codec: "HEVC (legacy FLV id 12; send Enhanced RTMP) (id 12)".into(),
                }),
            ),
            (
                vec![0x12, 0, 0, 0, 0],
                Err(FlvError::UnsupportedVideo {
                    codec: "Sorenson H.263 (id 2)".into(),
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(video(&input), want, "{input:?}");
        }
    }

    #[test]
    fn audio_tags() {
        let aac = AudioCodec::Aac;
        let cases: Vec<(Vec<u8>, Result<AudioTag, FlvError>)> = vec![
            (vec![], Err(FlvError::Empty)),
            (vec![0xaf], Err(FlvError::Short { len: 1 })),
            (
                vec![0xaf, 0, 0x12, 0x10],
                Ok(AudioTag::SequenceHeader {
                    codec: aac,
                    config: Bytes::from_static(&[0x12, 0x10]),
                }),
            ),
            (
                vec![0xaf, 1, 5, 6],
                Ok(AudioTag::Frame {
                    codec: aac,
                    data: Bytes::from_static(&[5, 6]),
                }),
            ),
            (vec![0xaf, 1], Ok(AudioTag::Ignore)),
            (
                vec![0x2f, 1],
                Err(FlvError::UnsupportedAudio {
                    codec: "MP3 (format 2)".into(),
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(audio(&input), want, "{input:?}");
        }
    }
}
