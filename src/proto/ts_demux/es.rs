//! Elementary streams for the [`super::TsDemuxer`]: a reassembled PES packet in, frames out.
//! The PES header gives PTS and DTS (33-bit, unwrapped here onto a 64-bit timeline); the
//! payload is an Annex B access unit (H.264 or HEVC: one per PES, as ffmpeg, OBS and GStreamer
//! write them), which becomes 4-byte length-prefixed NAL units with the parameter sets taken
//! out into a [`VideoConfig`], or ADTS frames, which become raw AAC frames and an
//! [`AacConfig`].

use bytes::Bytes;

use super::{EsFrame, TsDrop, TsEvent};
use crate::proto::aac::{self, AacConfig};
use crate::proto::media::{Track, VideoCodec, VideoConfig};
use crate::proto::{avc, hevc, nal};

/// The 33-bit PTS/DTS clock.
pub(super) const CLOCK_MODULUS: i64 = 1 << 33;

/// What a complete PES packet is, for [`Elementary::finish_pes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Video(VideoCodec),
    Aac,
}

impl Codec {
    pub(super) fn track(self) -> Track {
        match self {
            Codec::Video(_) => Track::Video,
            Codec::Aac => Track::Audio,
        }
    }
}

/// State shared by the streams of one program: the clock and the configurations in force.
#[derive(Debug, Default)]
pub(super) struct Elementary {
    clock: Unwrap,
    /// The codec and in-band parameter sets the video configuration in force was built from
    /// (it is built again only when they change).
    video: Option<(VideoCodec, Vec<(u8, Bytes)>)>,
    aac: Option<AacConfig>,
}

impl Elementary {
    /// A complete PES packet (header and payload) of one stream.
    pub(super) fn finish_pes(&mut self, codec: Codec, pes: &[u8], out: &mut Vec<TsEvent>) {
        let track = codec.track();
        let bad = |reason| TsEvent::Dropped(TsDrop::BadPes { track, reason });
        let Some(header) = pes.get(..9).filter(|h| h[..3] == [0, 0, 1]) else {
            out.push(bad("no PES header"));
            return;
        };
        let start = 9 + header[8] as usize;
        let end = match ((header[4] as usize) << 8) | header[5] as usize {
            0 => pes.len(),
            n => 6 + n,
        };
        if start > end || end > pes.len() {
            out.push(bad("PES shorter than its header says"));
            return;
        }
        let (pts, dts) = match header[7] >> 6 {
            2 => match read_timestamp(&pes[9..start]) {
                Some(t) => (t, t),
                None => {
                    out.push(bad("PTS cut short"));
                    return;
                }
            },
            3 => match (
                read_timestamp(&pes[9..start]),
                pes.get(14..start).and_then(read_timestamp),
            ) {
                (Some(p), Some(d)) => (p, d),
                _ => {
                    out.push(bad("PTS/DTS cut short"));
                    return;
                }
            },
            _ => {
                out.push(bad("no PTS"));
                return;
            }
        };
        let dts = self.clock.unwrap(dts);
        // The PTS lies a little after the DTS (frame reordering): unwrap it next to it.
        let pts = dts + signed_33(pts as i64 - dts).max(0);
        let payload = &pes[start..end];
        match codec {
            Codec::Video(c) => self.video_unit(c, payload, pts, dts, out),
            Codec::Aac => self.audio_frames(payload, pts, out),
        }
    }

    fn video_unit(
        &mut self,
        codec: VideoCodec,
        payload: &[u8],
        pts: i64,
        dts: i64,
        out: &mut Vec<TsEvent>,
    ) {
        let Some(syntax) = VideoConfig::nal_syntax(codec) else {
            return;
        };
        let unit = nal::annex_b_to_length_prefixed(syntax, payload);
        let known = self
            .video
            .as_ref()
            .is_some_and(|(c, sets)| *c == codec && *sets == unit.parameter_sets);
        if !unit.parameter_sets.is_empty() && !known {
            match VideoConfig::from_parameter_sets(codec, &unit.parameter_sets) {
                Some(Ok(cfg)) => {
                    self.video = Some((codec, unit.parameter_sets));
                    out.push(TsEvent::VideoConfig(cfg));
                }
                Some(Err(_)) => out.push(TsEvent::Dropped(TsDrop::BadPes {
                    track: Track::Video,
                    reason: "parameter sets could not be parsed",
                })),
                // Not all the kinds the codec needs: wait for a unit that has them.
                None => {}
            }
        }
        if unit.data.is_empty() {
            return;
        }
        if self.video.as_ref().is_none_or(|(c, _)| *c != codec) {
            out.push(TsEvent::Dropped(TsDrop::BeforeConfig));
            return;
        }
        let keyframe = match codec {
            VideoCodec::Hevc => hevc::has_irap(&unit.data, 4),
            _ => avc::nal_units(&unit.data, 4)
                .flatten()
                .any(|n| avc::nal_type(n) == 5),
        };
        out.push(TsEvent::Video(
            codec,
            EsFrame {
                pts,
                dts,
                keyframe,
                data: Bytes::from(unit.data),
            },
        ));
    }

    fn audio_frames(&mut self, payload: &[u8], pts: i64, out: &mut Vec<TsEvent>) {
        let mut pos = 0;
        let mut samples = 0i64;
        while pos < payload.len() {
            let adts = match aac::parse_adts(&payload[pos..]) {
                Ok(a) => a,
                Err(_) => {
                    out.push(TsEvent::Dropped(TsDrop::BadPes {
                        track: Track::Audio,
                        reason: "bad ADTS frame",
                    }));
                    return;
                }
            };
            let changed = self.aac.as_ref().is_none_or(|c| {
                (c.object_type, c.sample_rate_index, c.channels)
                    != (adts.object_type, adts.sample_rate_index, adts.channels)
            });
            if changed {
                match AacConfig::from_adts(&adts) {
                    Ok(cfg) => {
                        self.aac = Some(cfg.clone());
                        out.push(TsEvent::AudioConfig(cfg));
                    }
                    Err(_) => return,
                }
            }
            let rate = self.aac.as_ref().map_or(48_000, |c| c.sample_rate) as i64;
            let t = pts + samples * 90_000 / rate;
            out.push(TsEvent::Audio(EsFrame {
                pts: t,
                dts: t,
                keyframe: true,
                data: Bytes::copy_from_slice(&payload[pos + adts.header_len..pos + adts.frame_len]),
            }));
            samples += 1024;
            pos += adts.frame_len;
        }
    }
}

/// Unwraps 33-bit timestamps onto a 64-bit timeline, each value taken as the nearest to the
/// last one (either track): a wrap from 2^33 - 1 to 0 is a small step forward.
#[derive(Debug, Default)]
pub(super) struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    pub(super) fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = raw as i64 & (CLOCK_MODULUS - 1);
        let v = match self.last {
            None => raw,
            Some(last) => last + signed_33(raw - last),
        };
        self.last = Some(v);
        v
    }
}

/// The distance `d` modulo 2^33 as a signed value in [-2^32, 2^32).
pub(super) fn signed_33(d: i64) -> i64 {
    let d = d.rem_euclid(CLOCK_MODULUS);
    if d >= CLOCK_MODULUS / 2 {
        d - CLOCK_MODULUS
    } else {
        d
    }
}

/// A 33-bit PTS or DTS from its 5-byte field (marker bits not checked: encoders get them
/// wrong and the value is still good).
fn read_timestamp(b: &[u8]) -> Option<u64> {
    let b = b.get(..5)?;
    Some(
        (((b[0] >> 1) & 0x07) as u64) << 30
            | (b[1] as u64) << 22
            | ((b[2] >> 1) as u64) << 15
            | (b[3] as u64) << 7
            | (b[4] >> 1) as u64,
    )
}
