//! FLV tag bodies as RTMP carries them (audio message type 8, video type 9): which codec, whether
//! it is a sequence header (codec configuration) or a coded frame, keyframe flag and the H.264
//! composition-time offset. Pure parsing over `Bytes`: payloads are sliced, never copied.
//!
//! Enhanced RTMP (`IsExHeader`, FourCC `hvc1`/`av01`) is recognised so that such a stream is
//! refused with a clear reason instead of being mistaken for garbage.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("empty tag")]
    Empty,
    #[error("tag too short: {len} bytes")]
    Short { len: usize },
    #[error("unsupported video codec {codec}")]
    UnsupportedVideo { codec: String },
    #[error("unsupported audio format {format}")]
    UnsupportedAudio { format: u8 },
}

/// A parsed video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCDecoderConfigurationRecord.
    AvcSequenceHeader(Bytes),
    /// Length-prefixed NAL units of one access unit.
    AvcFrame {
        keyframe: bool,
        /// PTS - DTS in milliseconds (signed 24 bits on the wire).
        composition_ms: i32,
        data: Bytes,
    },
    /// End of sequence, or a frame with no payload: nothing to do.
    Ignore,
}

/// A parsed audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    /// One raw AAC frame.
    AacFrame(Bytes),
}

/// Parses an RTMP video message body.
pub fn parse_video(data: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty)?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader|FrameType(3)|PacketType(4)] then a FourCC.
        let fourcc = data.get(1..5).ok_or(FlvError::Short { len: data.len() })?;
        return Err(FlvError::UnsupportedVideo {
            codec: String::from_utf8_lossy(fourcc).into_owned(),
        });
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
            12 => "HEVC (legacy FLV id 12)",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedVideo {
            codec: format!("{name} (id {codec_id})"),
        });
    }
    if frame_type == 5 {
        // Video info/command frame: carries no picture.
        return Ok(VideoTag::Ignore);
    }
    if data.len() < 5 {
        return Err(FlvError::Short { len: data.len() });
    }
    let packet_type = data[1];
    // Composition time is a signed 24-bit big-endian integer.
    let raw = ((data[2] as u32) << 16) | ((data[3] as u32) << 8) | data[4] as u32;
    let composition_ms = ((raw << 8) as i32) >> 8;
    let payload = data.slice(5..);
    match packet_type {
        0 => Ok(VideoTag::AvcSequenceHeader(payload)),
        1 if payload.is_empty() => Ok(VideoTag::Ignore),
        1 => Ok(VideoTag::AvcFrame {
            keyframe: frame_type == 1,
            composition_ms,
            data: payload,
        }),
        _ => Ok(VideoTag::Ignore),
    }
}

/// Parses an RTMP audio message body.
pub fn parse_audio(data: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty)?;
    let format = first >> 4;
    if format != 10 {
        return Err(FlvError::UnsupportedAudio { format });
    }
    if data.len() < 2 {
        return Err(FlvError::Short { len: data.len() });
    }
    let payload = data.slice(2..);
    match data[1] {
        0 => Ok(AudioTag::AacSequenceHeader(payload)),
        _ => Ok(AudioTag::AacFrame(payload)),
    }
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
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixture_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testsrc-320x180.flv");
        let file = Bytes::from(std::fs::read(path).expect("fixture"));
        let tags: Vec<FileTag> = file_tags(&file).collect();
        let video: Vec<VideoTag> = tags
            .iter()
            .filter(|t| t.kind == 9)
            .map(|t| parse_video(&t.body).expect("video tag"))
            .collect();
        assert!(matches!(video[0], VideoTag::AvcSequenceHeader(_)));
        let keyframes = video
            .iter()
            .filter(|v| matches!(v, VideoTag::AvcFrame { keyframe: true, .. }))
            .count();
        assert_eq!(keyframes, 2, "3 s at 30 fps with a 60-frame GOP");
        let audio: Vec<AudioTag> = tags
            .iter()
            .filter(|t| t.kind == 8)
            .map(|t| parse_audio(&t.body).expect("audio tag"))
            .collect();
        assert!(matches!(audio[0], AudioTag::AacSequenceHeader(_)));
        assert!(audio.len() > 100);
        let last = tags.last().expect("tags").timestamp_ms;
        assert!((2900..3100).contains(&last), "{last}");
    }

    #[test]
    fn video_tags() {
        let cases: Vec<(Vec<u8>, Result<VideoTag, FlvError>)> = vec![
            (vec![], Err(FlvError::Empty)),
            (vec![0x17, 0, 0, 0], Err(FlvError::Short { len: 4 })),
            (
                vec![0x17, 0, 0, 0, 0, 1, 2],
                Ok(VideoTag::AvcSequenceHeader(Bytes::from_static(&[1, 2]))),
            ),
            (
                vec![0x17, 1, 0, 0, 0x21, 9, 9],
                Ok(VideoTag::AvcFrame {
                    keyframe: true,
                    composition_ms: 33,
                    data: Bytes::from_static(&[9, 9]),
                }),
            ),
            (
                // negative composition offset -1 (0xffffff)
                vec![0x27, 1, 0xff, 0xff, 0xff, 7],
                Ok(VideoTag::AvcFrame {
                    keyframe: false,
                    composition_ms: -1,
                    data: Bytes::from_static(&[7]),
                }),
            ),
            (vec![0x27, 1, 0, 0, 0], Ok(VideoTag::Ignore)),
            (vec![0x17, 2, 0, 0, 0], Ok(VideoTag::Ignore)),
            (vec![0x57, 0], Ok(VideoTag::Ignore)),
            (
                vec![0x90, b'h', b'v', b'c', b'1'],
                Err(FlvError::UnsupportedVideo {
                    codec: "hvc1".into(),
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
            assert_eq!(parse_video(&Bytes::from(input.clone())), want, "{input:?}");
        }
    }

    #[test]
    fn audio_tags() {
        let cases: Vec<(Vec<u8>, Result<AudioTag, FlvError>)> = vec![
            (vec![], Err(FlvError::Empty)),
            (vec![0xaf], Err(FlvError::Short { len: 1 })),
            (
                vec![0xaf, 0, 0x12, 0x10],
                Ok(AudioTag::AacSequenceHeader(Bytes::from_static(&[
                    0x12, 0x10,
                ]))),
            ),
            (
                vec![0xaf, 1, 5, 6],
                Ok(AudioTag::AacFrame(Bytes::from_static(&[5, 6]))),
            ),
            (vec![0x2f, 1], Err(FlvError::UnsupportedAudio { format: 2 })),
        ];
        for (input, want) in cases {
            assert_eq!(parse_audio(&Bytes::from(input.clone())), want, "{input:?}");
        }
    }
}
