//! Enhanced RTMP (veovera E-RTMP v1 and v2): the extended video and audio tag headers, and the
//! capabilities exchanged in `connect`.
//!
//! Video: `[IsExHeader=1 | FrameType(3) | PacketType(4)]`, then for each ModEx packet its data
//! and a new packet type, then either a FourCC (`avc1`, `hvc1`, `av01`) or, for Multitrack, the
//! multitrack type, the tracks' packet type, a FourCC (per track for "many codecs") and per
//! track its id (and size when there are several). Packet types: SequenceStart (the codec's
//! configuration record), CodedFrames (SI24 composition time for H.264 and HEVC, none for AV1),
//! CodedFramesX (composition time zero), SequenceEnd, Metadata (AMF, skipped). Audio is alike
//! with sound format 9, FourCC `mp4a` or `Opus`.
//!
//! The `connect` side (what the client declares, what the server answers) is in [`connect`].
//!
//! From a multitrack message one track is read (the caller's, or the first); the others are
//! skipped without parsing and reported, so that the caller can say so once. Everything is
//! bounds-checked: a malformed message is an error for that message only.

pub mod connect;

use bytes::Bytes;

use super::flv::{si24, AudioTag, FlvError, Tagged, VideoTag};
use super::media::{AudioCodec, VideoCodec};

/// Packet types shared by video and audio where they agree.
const SEQUENCE_START: u8 = 0;
const CODED_FRAMES: u8 = 1;
const CODED_FRAMES_X: u8 = 3;
const VIDEO_MULTITRACK: u8 = 6;
const AUDIO_MULTITRACK: u8 = 5;
const MOD_EX: u8 = 7;

/// AvMultitrackType.
const ONE_TRACK: u8 = 0;
const MANY_TRACKS_MANY_CODECS: u8 = 2;

/// The FourCCs onair takes, as it announces them in `connect`.
pub const VIDEO_FOURCCS: [&str; 3] = ["hvc1", "av01", "avc1"];
pub const AUDIO_FOURCCS: [&str; 2] = ["mp4a", "Opus"];

/// A cursor over a tag body; every read is bounds-checked.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, FlvError> {
        let b = *self.data.get(self.pos).ok_or(FlvError::Short {
            len: self.data.len(),
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, FlvError> {
        if n > self.data.len() - self.pos {
            return Err(FlvError::Short {
                len: self.data.len(),
            });
        }
        let out = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn fourcc(&mut self) -> Result<[u8; 4], FlvError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    fn rest(&mut self) -> Bytes {
        let out = self.data.slice(self.pos..);
        self.pos = self.data.len();
        out
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Skips ModEx packets (their data: nanosecond timestamp offsets, which sub-millisecond
    /// timing does not need) and returns the packet type that follows them.
    fn skip_mod_ex(&mut self, mut packet_type: u8) -> Result<u8, FlvError> {
        while packet_type == MOD_EX {
            let mut size = self.u8()? as usize + 1;
            if size == 256 {
                let hi = self.u8()? as usize;
                let lo = self.u8()? as usize;
                size = ((hi << 8) | lo) + 1;
            }
            self.take(size)?;
            packet_type = self.u8()? & 0x0f;
        }
        Ok(packet_type)
    }
}

/// One track's part of a message: its FourCC, id and body.
struct TrackBody {
    fourcc: [u8; 4],
    track: u8,
    body: Bytes,
}

/// What [`track_body`] found: the tracks' packet type (multitrack messages), the wanted track,
/// and whether there were others.
type Tracks = (Option<u8>, Option<TrackBody>, bool);

/// Reads the FourCC and the body of the wanted track of a message positioned after its packet
/// type (and ModEx). `multitrack` is the media's Multitrack packet type when the message's
/// packet type was that; the tracks' shared packet type is returned then.
fn track_body(
    r: &mut Reader<'_>,
    multitrack: Option<u8>,
    want: Option<u8>,
) -> Result<Tracks, FlvError> {
    let Some(multitrack_type) = multitrack else {
        let fourcc = r.fourcc()?;
        let body = r.rest();
        let found = (want.is_none() || want == Some(0)).then_some(TrackBody {
            fourcc,
            track: 0,
            body,
        });
        let others = found.is_none();
        return Ok((None, found, others));
    };
    let b = r.u8()?;
    let kind = b >> 4;
    let packet_type = b & 0x0f;
    if packet_type == multitrack_type || packet_type == MOD_EX {
        return Err(FlvError::Malformed {
            what: "nested multitrack or ModEx packet type",
        });
    }
    if kind > MANY_TRACKS_MANY_CODECS {
        return Err(FlvError::Malformed {
            what: "unknown multitrack type",
        });
    }
    let shared = if kind != MANY_TRACKS_MANY_CODECS {
        Some(r.fourcc()?)
    } else {
        None
    };
    let mut found = None;
    let mut others = false;
    while !r.at_end() {
        let fourcc = match shared {
            Some(f) => f,
            None => r.fourcc()?,
        };
        let track = r.u8()?;
        let body = if kind == ONE_TRACK {
            r.rest()
        } else {
            let s = r.take(3)?;
            let size = ((s[0] as usize) << 16) | ((s[1] as usize) << 8) | s[2] as usize;
            r.take(size)?
        };
        let wanted = match want {
            Some(w) => w == track,
            None => found.is_none(),
        };
        if wanted && found.is_none() {
            found = Some(TrackBody {
                fourcc,
                track,
                body,
            });
        } else {
            others = true;
        }
        if kind == ONE_TRACK {
            break;
        }
    }
    Ok((Some(packet_type), found, others))
}

fn fourcc_name(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses an Enhanced RTMP video message (the first byte has `IsExHeader` set).
pub fn parse_video(data: &Bytes, want: Option<u8>) -> Result<Tagged<VideoTag>, FlvError> {
    let mut r = Reader { data, pos: 0 };
    let first = r.u8()?;
    let frame_type = (first >> 4) & 0x07;
    let mut packet_type = r.skip_mod_ex(first & 0x0f)?;
    const METADATA: u8 = 4;
    if frame_type == 5 && packet_type != METADATA {
        // A command frame (client-side seeking): one byte, no picture.
        return Ok(Tagged::single(VideoTag::Ignore));
    }
    let multitrack = (packet_type == VIDEO_MULTITRACK).then_some(VIDEO_MULTITRACK);
    let (shared, found, other_tracks) = track_body(&mut r, multitrack, want)?;
    if let Some(p) = shared {
        packet_type = p;
    }
    let Some(t) = found else {
        return Ok(Tagged {
            tag: VideoTag::Ignore,
            track: want.unwrap_or(0),
            other_tracks,
        });
    };
    let codec = match &t.fourcc {
        b"avc1" => VideoCodec::Avc,
        b"hvc1" => VideoCodec::Hevc,
        b"av01" => VideoCodec::Av1,
        other => {
            return Err(FlvError::UnsupportedVideo {
                codec: format!("FourCC {}", fourcc_name(other)),
            })
        }
    };
    let body = t.body;
    let tag = match packet_type {
        SEQUENCE_START => VideoTag::SequenceHeader {
            codec,
            record: body,
        },
        CODED_FRAMES | CODED_FRAMES_X => {
            let (composition_ms, data) = if packet_type == CODED_FRAMES && codec != VideoCodec::Av1
            {
                if body.len() < 3 {
                    return Err(FlvError::Short { len: data.len() });
                }
                (si24(&body[..3]), body.slice(3..))
            } else {
                (0, body)
            };
            if data.is_empty() {
                VideoTag::Ignore
            } else {
                VideoTag::Frame {
                    codec,
                    keyframe: frame_type == 1,
                    composition_ms,
                    data,
                }
            }
        }
        // SequenceEnd, Metadata (HDR colour information), MPEG2TSSequenceStart and types this
        // version of the spec does not define.
        _ => VideoTag::Ignore,
    };
    Ok(Tagged {
        tag,
        track: t.track,
        other_tracks,
    })
}

/// Parses an Enhanced RTMP audio message (sound format 9).
pub fn parse_audio(data: &Bytes, want: Option<u8>) -> Result<Tagged<AudioTag>, FlvError> {
    let mut r = Reader { data, pos: 0 };
    let first = r.u8()?;
    let mut packet_type = r.skip_mod_ex(first & 0x0f)?;
    let multitrack = (packet_type == AUDIO_MULTITRACK).then_some(AUDIO_MULTITRACK);
    let (shared, found, other_tracks) = track_body(&mut r, multitrack, want)?;
    if let Some(p) = shared {
        packet_type = p;
    }
    let Some(t) = found else {
        return Ok(Tagged {
            tag: AudioTag::Ignore,
            track: want.unwrap_or(0),
            other_tracks,
        });
    };
    let codec = match &t.fourcc {
        b"mp4a" => AudioCodec::Aac,
        b"Opus" => AudioCodec::Opus,
        other => {
            return Err(FlvError::UnsupportedAudio {
                codec: format!("FourCC {}", fourcc_name(other)),
            })
        }
    };
    let tag = match packet_type {
        SEQUENCE_START => AudioTag::SequenceHeader {
            codec,
            config: t.body,
        },
        CODED_FRAMES if !t.body.is_empty() => AudioTag::Frame {
            codec,
            data: t.body,
        },
        // SequenceEnd, MultichannelConfig (the codec's own header says enough for AAC and
        // Opus mono/stereo), empty frames.
        _ => AudioTag::Ignore,
    };
    Ok(Tagged {
        tag,
        track: t.track,
        other_tracks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flv::tests::fixture;
    use crate::proto::flv::{file_tags, parse_audio as audio_tag, parse_video as video_tag};

    fn video(bytes: &[u8]) -> Result<VideoTag, FlvError> {
        video_tag(&Bytes::copy_from_slice(bytes), None).map(|t| t.tag)
    }

    fn frame(
        codec: VideoCodec,
        keyframe: bool,
        composition_ms: i32,
        data: &'static [u8],
    ) -> VideoTag {
        VideoTag::Frame {
            codec,
            keyframe,
            composition_ms,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn video_packet_types() {
        use VideoCodec::*;
        let cases: Vec<(Vec<u8>, Result<VideoTag, FlvError>)> = vec![
            (
                b"\x90hvc1\x01\x02".to_vec(),
                Ok(VideoTag::SequenceHeader {
                    codec: Hevc,
                    record: Bytes::from_static(&[1, 2]),
                }),
            ),
            // CodedFrames: SI24 composition time, then the NAL units.
            (
                b"\x91hvc1\x00\x00\x43\x09".to_vec(),
                Ok(frame(Hevc, true, 67, &[9])),
            ),
            (
                b"\xa1hvc1\xff\xff\xfe\x09".to_vec(),
                Ok(frame(Hevc, false, -2, &[9])),
            ),
            // CodedFramesX: composition time zero, not on the wire.
            (
                b"\xa3hvc1\x07\x08".to_vec(),
                Ok(frame(Hevc, false, 0, &[7, 8])),
            ),
            // AV1 CodedFrames carry no composition time.
            (
                b"\x91av01\x12\x00".to_vec(),
                Ok(frame(Av1, true, 0, &[0x12, 0])),
            ),
            (
                b"\x91avc1\x00\x00\x00\x05".to_vec(),
                Ok(frame(Avc, true, 0, &[5])),
            ),
            (b"\x92hvc1".to_vec(), Ok(VideoTag::Ignore)),
            (
                b"\xd4hvc1\x02\x00\x09colorInfo\x05".to_vec(),
                Ok(VideoTag::Ignore),
            ),
            (b"\xd1hvc1\x00".to_vec(), Ok(VideoTag::Ignore)),
            (b"\xa1hvc1\x00\x00\x00".to_vec(), Ok(VideoTag::Ignore)),
            (b"\xa1hvc1\x00".to_vec(), Err(FlvError::Short { len: 6 })),
            (b"\x90hvc".to_vec(), Err(FlvError::Short { len: 4 })),
            (
                b"\x90vp09\x01".to_vec(),
                Err(FlvError::UnsupportedVideo {
                    codec: "FourCC vp09".into(),
                }),
            ),
            (
                b"\x90\x00\x01\x02\x03".to_vec(),
                Err(FlvError::UnsupportedVideo {
                    codec: "FourCC ????".into(),
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(video(&input), want, "{input:?}");
        }
    }

    #[test]
    fn mod_ex_is_skipped() {
        // ModEx with 3 bytes of nanosecond offset, then CodedFrames.
        assert_eq!(
            video(b"\x97\x02\x01\x02\x03\x01hvc1\x00\x00\x00\x09"),
            Ok(frame(VideoCodec::Hevc, true, 0, &[9]))
        );
        // Two ModEx in a row, the second with a 16-bit size (256 + 1 bytes).
        let mut m = b"\x97\x00\x00\x07\xff\x01\x00".to_vec();
        m.extend_from_slice(&[0xee; 257]);
        m.extend_from_slice(b"\x03av01\x32\x00");
        assert_eq!(video(&m), Ok(frame(VideoCodec::Av1, true, 0, &[0x32, 0])));
        assert_eq!(video(b"\x97\x09\x01"), Err(FlvError::Short { len: 3 }));
    }

    #[test]
    fn multitrack_reads_one_track() {
        // ManyTracks of HEVC CodedFrames: track 0 (2 bytes of body after the SI24) and track 3.
        let mut m = b"\x96\x11hvc1".to_vec();
        m.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0xaa, 0xbb]);
        m.extend_from_slice(&[3, 0, 0, 4, 0, 0, 0, 0xcc]);
        let all = Bytes::from(m);
        let first = video_tag(&all, None).expect("parses");
        assert_eq!(first.tag, frame(VideoCodec::Hevc, true, 0, &[0xaa, 0xbb]));
        assert_eq!((first.track, first.other_tracks), (0, true));
        let third = video_tag(&all, Some(3)).expect("parses");
        assert_eq!(third.tag, frame(VideoCodec::Hevc, true, 0, &[0xcc]));
        assert_eq!((third.track, third.other_tracks), (3, true));
        let none = video_tag(&all, Some(9)).expect("parses");
        assert_eq!(none.tag, VideoTag::Ignore);

        // OneTrack with track id 2: no size, the body runs to the end.
        let one = Bytes::from_static(b"\x96\x00hvc1\x02\x01\x02");
        let t = video_tag(&one, None).expect("parses");
        assert_eq!(
            t.tag,
            VideoTag::SequenceHeader {
                codec: VideoCodec::Hevc,
                record: Bytes::from_static(&[1, 2])
            }
        );
        assert_eq!((t.track, t.other_tracks), (2, false));

        // ManyTracksManyCodecs: a FourCC per track; an unsupported codec on a skipped track is
        // not an error.
        let mut m = b"\x96\x23".to_vec();
        m.extend_from_slice(b"av01\x00\x00\x00\x02\x32\x00");
        m.extend_from_slice(b"vp09\x01\x00\x00\x01\x00");
        let t = video_tag(&Bytes::from(m), None).expect("parses");
        assert_eq!(t.tag, frame(VideoCodec::Av1, true, 0, &[0x32, 0]));
        assert!(t.other_tracks);

        // A track size past the end, a nested multitrack, an unknown multitrack type.
        assert_eq!(
            video(b"\x96\x11hvc1\x00\x00\x00\x09\x00"),
            Err(FlvError::Short { len: 11 })
        );
        assert!(matches!(
            video(b"\x96\x16hvc1\x00"),
            Err(FlvError::Malformed { .. })
        ));
        assert!(matches!(
            video(b"\x96\x51hvc1\x00"),
            Err(FlvError::Malformed { .. })
        ));
        // A single-track message read for another track.
        let t = video_tag(&Bytes::from_static(b"\x90hvc1\x01"), Some(1)).expect("parses");
        assert_eq!(t.tag, VideoTag::Ignore);
        assert!(t.other_tracks);
    }

    #[test]
    fn audio_packet_types() {
        let audio = |b: &[u8]| audio_tag(&Bytes::copy_from_slice(b), None).map(|t| t.tag);
        let opus = AudioCodec::Opus;
        assert_eq!(
            audio(b"\x90OpusOpusHead"),
            Ok(AudioTag::SequenceHeader {
                codec: opus,
                config: Bytes::from_static(b"OpusHead")
            })
        );
        assert_eq!(
            audio(b"\x91Opus\xf8\x01"),
            Ok(AudioTag::Frame {
                codec: opus,
                data: Bytes::from_static(&[0xf8, 1])
            })
        );
        assert_eq!(
            audio(b"\x90mp4a\x12\x10"),
            Ok(AudioTag::SequenceHeader {
                codec: AudioCodec::Aac,
                config: Bytes::from_static(&[0x12, 0x10])
            })
        );
        assert_eq!(audio(b"\x94Opus\x01\x02"), Ok(AudioTag::Ignore));
        assert_eq!(audio(b"\x92Opus"), Ok(AudioTag::Ignore));
        assert_eq!(audio(b"\x91Opus"), Ok(AudioTag::Ignore));
        assert_eq!(
            audio(b"\x91fLaC\x00"),
            Err(FlvError::UnsupportedAudio {
                codec: "FourCC fLaC".into()
            })
        );
        // Multitrack audio: OneTrack of Opus, track 1.
        let t = audio_tag(&Bytes::from_static(b"\x95\x01Opus\x01\xf8"), None).expect("parses");
        assert_eq!(
            t.tag,
            AudioTag::Frame {
                codec: opus,
                data: Bytes::from_static(&[0xf8])
            }
        );
        assert_eq!(t.track, 1);
    }

    /// Every tag of the ffmpeg 9 captures parses, with the packet types ffmpeg sends.
    #[test]
    fn reads_ffmpeg_enhanced_flv_files() {
        for (name, codec, audio_codec) in [
            ("hevc-320x180.flv", VideoCodec::Hevc, AudioCodec::Aac),
            ("av1-opus-320x180.flv", VideoCodec::Av1, AudioCodec::Opus),
        ] {
            let file = fixture(name);
            let (mut headers, mut keyframes, mut frames, mut audio_frames) = (0, 0, 0, 0);
            for t in file_tags(&file) {
                match t.kind {
                    9 => match video_tag(&t.body, None).expect("video").tag {
                        VideoTag::SequenceHeader { codec: c, .. } => {
                            assert_eq!(c, codec);
                            headers += 1;
                        }
                        VideoTag::Frame {
                            codec: c, keyframe, ..
                        } => {
                            assert_eq!(c, codec);
                            frames += 1;
                            keyframes += keyframe as u32;
                        }
                        VideoTag::Ignore => {}
                    },
                    8 => match audio_tag(&t.body, None).expect("audio").tag {
                        AudioTag::SequenceHeader { codec: c, .. }
                        | AudioTag::Frame { codec: c, .. } => {
                            assert_eq!(c, audio_codec);
                            audio_frames += 1;
                        }
                        AudioTag::Ignore => {}
                    },
                    _ => {}
                }
            }
            assert_eq!(headers, 1, "{name}");
            assert_eq!(frames, 60, "{name}: 2 s at 30 fps");
            assert_eq!(keyframes, 2, "{name}: a keyframe a second");
            assert!(audio_frames > 40, "{name}: {audio_frames}");
        }
    }
}
