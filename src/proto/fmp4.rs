//! Fragmented MP4 (ISO 14496-12, CMAF profile) for HLS: an initialization segment (`ftyp` +
//! `moov` with an `avc1` + `avcC`, `hvc1` + `hvcC` or `av01` + `av1C` video sample entry, an
//! `mp4a` audio one, and `mvex`) and media fragments (`moof` + `mdat`), one per low-latency
//! part. HEVC is written as `hvc1` (parameter sets in the sample entry), the form Apple's
//! players require.
//!
//! Written by hand: the Rust MP4 crates are file-oriented (whole `moov` with sample tables) or
//! unmaintained; HLS needs only this fixed subset, built from the codec records we already hold.

use bytes::{BufMut, Bytes};

use super::aac::AacConfig;
use super::media::{StreamInfo, Track, VideoConfig, TIMESCALE};

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Samples per AAC frame.
const AAC_FRAME: u32 = 1024;

/// One sample of a fragment, timestamps in 90 kHz.
#[derive(Debug, Clone)]
pub struct Sample {
    pub track: Track,
    pub dts: i64,
    pub pts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Appends a box: 32-bit size, type, then what `body` writes.
fn mp4_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box with version and flags.
fn full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    mp4_box(out, kind, |o| {
        o.put_u32(((version as u32) << 24) | (flags & 0x00ff_ffff));
        body(o);
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The initialization segment for the tracks `info` has.
pub fn init_segment(info: &StreamInfo) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    mp4_box(&mut out, b"ftyp", |o| {
        o.put_slice(b"iso6");
        o.put_u32(0);
        for b in [b"iso6", b"cmfc", b"mp41"] {
            o.put_slice(b);
        }
    });
    mp4_box(&mut out, b"moov", |o| {
        full_box(o, b"mvhd", 0, 0, |o| {
            o.put_u32(0); // creation
            o.put_u32(0); // modification
            o.put_u32(1000);
            o.put_u32(0); // duration
            o.put_u32(0x0001_0000); // rate
            o.put_u16(0x0100); // volume
            o.put_bytes(0, 10);
            for m in MATRIX {
                o.put_u32(m);
            }
            o.put_bytes(0, 24);
            o.put_u32(3); // next track id
        });
        if let Some(v) = &info.video {
            video_trak(o, v);
        }
        if let Some(a) = &info.audio {
            audio_trak(o, a);
        }
        mp4_box(o, b"mvex", |o| {
            for (present, id) in [
                (info.video.is_some(), VIDEO_TRACK_ID),
                (info.audio.is_some(), AUDIO_TRACK_ID),
            ] {
                if present {
                    full_box(o, b"trex", 0, 0, |o| {
                        o.put_u32(id);
                        o.put_u32(1);
                        o.put_u32(0);
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                }
            }
        });
    });
    Bytes::from(out)
}

fn tkhd(o: &mut Vec<u8>, id: u32, audio: bool, width: u32, height: u32) {
    full_box(o, b"tkhd", 0, 3, |o| {
        o.put_u32(0);
        o.put_u32(0);
        o.put_u32(id);
        o.put_u32(0);
        o.put_u32(0); // duration
        o.put_bytes(0, 8);
        o.put_u16(0); // layer
        o.put_u16(0); // alternate group
        o.put_u16(if audio { 0x0100 } else { 0 });
        o.put_u16(0);
        for m in MATRIX {
            o.put_u32(m);
        }
        o.put_u32(width << 16);
        o.put_u32(height << 16);
    });
}

fn mdhd_hdlr(o: &mut Vec<u8>, timescale: u32, handler: &[u8; 4], name: &str) {
    full_box(o, b"mdhd", 0, 0, |o| {
        o.put_u32(0);
        o.put_u32(0);
        o.put_u32(timescale);
        o.put_u32(0);
        o.put_u16(0x55c4); // "und"
        o.put_u16(0);
    });
    full_box(o, b"hdlr", 0, 0, |o| {
        o.put_u32(0);
        o.put_slice(handler);
        o.put_bytes(0, 12);
        o.put_slice(name.as_bytes());
        o.put_u8(0);
    });
}

/// `dinf` and the empty sample tables a fragmented file carries.
fn dinf_and_empty_tables(o: &mut Vec<u8>, sample_entry: impl FnOnce(&mut Vec<u8>)) {
    mp4_box(o, b"dinf", |o| {
        full_box(o, b"dref", 0, 0, |o| {
            o.put_u32(1);
            full_box(o, b"url ", 0, 1, |_| {});
        });
    });
    mp4_box(o, b"stbl", |o| {
        full_box(o, b"stsd", 0, 0, |o| {
            o.put_u32(1);
            sample_entry(o);
        });
        for kind in [b"stts", b"stsc", b"stco"] {
            full_box(o, kind, 0, 0, |o| o.put_u32(0));
        }
        full_box(o, b"stsz", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(0);
        });
    });
}

fn video_trak(o: &mut Vec<u8>, v: &VideoConfig) {
    let (width, height) = (v.width(), v.height());
    let (entry, config): (&[u8; 4], &[u8; 4]) = match v {
        VideoConfig::Avc(_) => (b"avc1", b"avcC"),
        VideoConfig::Hevc(_) => (b"hvc1", b"hvcC"),
        VideoConfig::Av1(_) => (b"av01", b"av1C"),
    };
    mp4_box(o, b"trak", |o| {
        tkhd(o, VIDEO_TRACK_ID, false, width, height);
        mp4_box(o, b"mdia", |o| {
            mdhd_hdlr(o, TIMESCALE as u32, b"vide", "onair video");
            mp4_box(o, b"minf", |o| {
                full_box(o, b"vmhd", 0, 1, |o| o.put_bytes(0, 8));
                dinf_and_empty_tables(o, |o| {
                    mp4_box(o, entry, |o| {
                        o.put_bytes(0, 6);
                        o.put_u16(1); // data reference index
                        o.put_bytes(0, 16);
                        o.put_u16(width as u16);
                        o.put_u16(height as u16);
                        o.put_u32(0x0048_0000);
                        o.put_u32(0x0048_0000);
                        o.put_u32(0);
                        o.put_u16(1); // frame count
                        o.put_bytes(0, 32); // compressor name
                        o.put_u16(0x0018);
                        o.put_u16(0xffff);
                        mp4_box(o, config, |o| o.put_slice(v.record()));
                    });
                });
            });
        });
    });
}

fn audio_trak(o: &mut Vec<u8>, a: &AacConfig) {
    mp4_box(o, b"trak", |o| {
        tkhd(o, AUDIO_TRACK_ID, true, 0, 0);
        mp4_box(o, b"mdia", |o| {
            mdhd_hdlr(o, a.sample_rate, b"soun", "onair audio");
            mp4_box(o, b"minf", |o| {
                full_box(o, b"smhd", 0, 0, |o| o.put_u32(0));
                dinf_and_empty_tables(o, |o| {
                    mp4_box(o, b"mp4a", |o| {
                        o.put_bytes(0, 6);
                        o.put_u16(1);
                        o.put_bytes(0, 8);
                        o.put_u16(a.channels.max(1) as u16);
                        o.put_u16(16);
                        o.put_u32(0);
                        o.put_u32(a.sample_rate.min(0xffff) << 16);
                        full_box(o, b"esds", 0, 0, |o| esds(o, a));
                    });
                });
            });
        });
    });
}

/// The MPEG-4 elementary stream descriptor carrying the AudioSpecificConfig.
fn esds(o: &mut Vec<u8>, a: &AacConfig) {
    let asc = &a.asc;
    let dsi_len = asc.len();
    let dcd_len = 13 + 2 + dsi_len;
    let es_len = 3 + 2 + dcd_len + 3;
    o.put_u8(0x03);
    o.put_u8(es_len as u8);
    o.put_u16(0); // ES_ID
    o.put_u8(0);
    o.put_u8(0x04);
    o.put_u8(dcd_len as u8);
    o.put_u8(0x40); // MPEG-4 audio
    o.put_u8(0x15); // audio stream
    o.put_bytes(0, 3); // buffer size
    o.put_u32(0); // max bitrate
    o.put_u32(0); // avg bitrate
    o.put_u8(0x05);
    o.put_u8(dsi_len as u8);
    o.put_slice(asc);
    o.put_u8(0x06);
    o.put_u8(1);
    o.put_u8(0x02);
}

/// Writes one fragment (`moof` + `mdat`) holding `samples` of both tracks. `end_dts` is where
/// the fragment ends on the video timeline (the DTS of the next video sample), which gives the
/// duration of the last video sample; audio samples last one AAC frame each.
pub fn fragment(
    sequence: u32,
    info: &StreamInfo,
    samples: &[Sample],
    end_dts: i64,
    out: &mut Vec<u8>,
) {
    let video: Vec<&Sample> = samples.iter().filter(|s| s.track == Track::Video).collect();
    let audio: Vec<&Sample> = samples.iter().filter(|s| s.track == Track::Audio).collect();
    let moof_start = out.len();
    // Data-offset fields to patch once the moof size is known: (position, offset within mdat).
    let mut patches = Vec::new();
    let mut mdat_len = 0usize;
    mp4_box(out, b"moof", |o| {
        full_box(o, b"mfhd", 0, 0, |o| o.put_u32(sequence));
        if info.video.is_some() && !video.is_empty() {
            let durations: Vec<u32> = video
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let next = video.get(i + 1).map(|n| n.dts).unwrap_or(end_dts);
                    (next - s.dts).max(1) as u32
                })
                .collect();
            traf(
                o,
                VIDEO_TRACK_ID,
                video[0].dts as u64,
                &video,
                &durations,
                1,
                &mut patches,
                mdat_len,
            );
            mdat_len += video.iter().map(|s| s.data.len()).sum::<usize>();
        }
        if let (Some(a), false) = (&info.audio, audio.is_empty()) {
            let scale =
                |t: i64| (t.max(0) as i128 * a.sample_rate as i128 / TIMESCALE as i128) as u64;
            let durations = vec![AAC_FRAME; audio.len()];
            traf(
                o,
                AUDIO_TRACK_ID,
                scale(audio[0].dts),
                &audio,
                &durations,
                a.sample_rate as i64,
                &mut patches,
                mdat_len,
            );
            mdat_len += audio.iter().map(|s| s.data.len()).sum::<usize>();
        }
    });
    let moof_size = out.len() - moof_start;
    for (pos, within) in patches {
        let offset = (moof_size + 8 + within) as u32;
        out[pos..pos + 4].copy_from_slice(&offset.to_be_bytes());
    }
    out.put_u32((8 + mdat_len) as u32);
    out.put_slice(b"mdat");
    for s in video.iter().chain(audio.iter()) {
        out.put_slice(&s.data);
    }
}

/// One track fragment. `cts_scale` converts 90 kHz composition offsets: 1 for video (already
/// 90 kHz), the sample rate for audio (whose offsets are zero anyway).
#[allow(clippy::too_many_arguments)]
fn traf(
    o: &mut Vec<u8>,
    track_id: u32,
    base_decode_time: u64,
    samples: &[&Sample],
    durations: &[u32],
    cts_scale: i64,
    patches: &mut Vec<(usize, usize)>,
    mdat_offset: usize,
) {
    mp4_box(o, b"traf", |o| {
        // default-base-is-moof: data offsets count from the start of the moof.
        full_box(o, b"tfhd", 0, 0x02_0000, |o| o.put_u32(track_id));
        full_box(o, b"tfdt", 1, 0, |o| o.put_u64(base_decode_time));
        // data offset, duration, size, flags and composition offset per sample.
        full_box(
            o,
            b"trun",
            1,
            0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800,
            |o| {
                o.put_u32(samples.len() as u32);
                patches.push((o.len(), mdat_offset));
                o.put_u32(0);
                for (s, d) in samples.iter().zip(durations) {
                    o.put_u32(*d);
                    o.put_u32(s.data.len() as u32);
                    o.put_u32(if s.keyframe || s.track == Track::Audio {
                        0x0200_0000
                    } else {
                        0x0101_0000
                    });
                    let cts = if cts_scale == 1 { s.pts - s.dts } else { 0 };
                    o.put_i32(cts as i32);
                }
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::media::tests::info;

    /// Walks top-level boxes: (type, size).
    fn boxes(data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= data.len() {
            let size = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            out.push((
                String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned(),
                size,
            ));
            assert!(size >= 8, "box size {size}");
            pos += size;
        }
        assert_eq!(pos, data.len(), "boxes fill the buffer exactly");
        out
    }

    #[test]
    fn init_segment_structure() {
        let init = init_segment(&info());
        let top: Vec<String> = boxes(&init).into_iter().map(|b| b.0).collect();
        assert_eq!(top, vec!["ftyp", "moov"]);
        for needle in [&b"avcC"[..], b"esds", b"mvex", b"trex", b"avc1", b"mp4a"] {
            assert!(
                init.windows(4).any(|w| w == needle),
                "{:?}",
                std::str::from_utf8(needle)
            );
        }
    }

    #[test]
    fn hevc_and_av1_sample_entries() {
        use crate::proto::{av1, hevc};
        use std::sync::Arc;
        for (video, entry, config) in [
            (
                VideoConfig::Hevc(hevc::HevcConfig::parse(hevc::tests::record()).expect("hevc")),
                b"hvc1",
                b"hvcC",
            ),
            (
                VideoConfig::Av1(av1::Av1Config::parse(av1::tests::record()).expect("av1")),
                b"av01",
                b"av1C",
            ),
        ] {
            let record = video.record().clone();
            let mut i = info();
            i.video = Some(Arc::new(video));
            let init = init_segment(&i);
            assert_eq!(boxes(&init).len(), 2);
            assert!(!init.windows(4).any(|w| w == b"avc1"));
            let at = init
                .windows(4)
                .position(|w| w == config)
                .expect("config box");
            assert!(init[at - 4..].starts_with(&((record.len() + 8) as u32).to_be_bytes()));
            assert_eq!(&init[at + 4..at + 4 + record.len()], &record[..]);
            let e = init.windows(4).position(|w| w == entry).expect("entry");
            // width and height of the visual sample entry: 320x180.
            assert_eq!(&init[e + 4 + 24..e + 4 + 28], &[1, 0x40, 0, 0xb4]);
        }
    }

    #[test]
    fn fragment_offsets_point_into_mdat() {
        let samples = vec![
            Sample {
                track: Track::Video,
                dts: 0,
                pts: 3000,
                keyframe: true,
                data: Bytes::from_static(b"VVVV"),
            },
            Sample {
                track: Track::Audio,
                dts: 0,
                pts: 0,
                keyframe: true,
                data: Bytes::from_static(b"AA"),
            },
            Sample {
                track: Track::Video,
                dts: 3000,
                pts: 3000,
                keyframe: false,
                data: Bytes::from_static(b"vv"),
            },
        ];
        let mut out = Vec::new();
        fragment(7, &info(), &samples, 6000, &mut out);
        let top = boxes(&out);
        assert_eq!(
            top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            vec!["moof", "mdat"]
        );
        let moof_size = top[0].1;
        assert_eq!(&out[moof_size + 8..], b"VVVVvvAA");
        // First trun's data offset: right after the mdat header.
        let trun = out.windows(4).position(|w| w == b"trun").expect("trun");
        let off = u32::from_be_bytes([
            out[trun + 12],
            out[trun + 13],
            out[trun + 14],
            out[trun + 15],
        ]);
        assert_eq!(off as usize, moof_size + 8);
    }
}
