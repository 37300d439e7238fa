//! Tests of the TS demuxer on real streams made by Debian's ffmpeg (fixtures/*.ts) and on
//! damaged copies of them.

use super::es::{signed_33, Unwrap, CLOCK_MODULUS};
use super::*;
use crate::proto::aac::AacConfig;
use crate::proto::avc::tests::RECORD_320X180;
use crate::proto::flv::{self, VideoTag};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn demux_pieces(data: &[u8], piece: impl Fn(usize) -> usize) -> Vec<TsEvent> {
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = piece(i).clamp(1, data.len() - pos);
        d.feed(&data[pos..pos + n], &mut out);
        pos += n;
        i += 1;
    }
    d.flush(&mut out);
    out
}

fn demux(data: &[u8]) -> Vec<TsEvent> {
    demux_pieces(data, |_| 1316)
}

fn frames(events: &[TsEvent], video: bool) -> Vec<&EsFrame> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Video(_, f) if video => Some(f),
            TsEvent::Audio(f) if !video => Some(f),
            _ => None,
        })
        .collect()
}

fn drops(events: &[TsEvent]) -> Vec<TsDrop> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Dropped(d) => Some(*d),
            _ => None,
        })
        .collect()
}

/// The one video and one audio configuration of a stream, each before its track's first frame
/// (holding the start until both are known is `ingest::srt::StartGate`'s job).
fn configs(events: &[TsEvent]) -> (&VideoConfig, &AacConfig) {
    let configs: Vec<&TsEvent> = events
        .iter()
        .filter(|e| matches!(e, TsEvent::VideoConfig(_) | TsEvent::AudioConfig(_)))
        .collect();
    assert_eq!(
        configs.len(),
        2,
        "one configuration each, not one per keyframe"
    );
    let position = |f: fn(&TsEvent) -> bool| events.iter().position(f).expect("in the events");
    assert!(
        position(|e| matches!(e, TsEvent::VideoConfig(_)))
            < position(|e| matches!(e, TsEvent::Video(..)))
    );
    assert!(
        position(|e| matches!(e, TsEvent::AudioConfig(_)))
            < position(|e| matches!(e, TsEvent::Audio(_)))
    );
    let video = events.iter().find_map(|e| match e {
        TsEvent::VideoConfig(c) => Some(c),
        _ => None,
    });
    let audio = events.iter().find_map(|e| match e {
        TsEvent::AudioConfig(c) => Some(c),
        _ => None,
    });
    (
        video.expect("video configuration"),
        audio.expect("audio configuration"),
    )
}

/// A length-prefixed access unit without HEVC SEI units: FFmpeg's `hevc_mp4toannexb` puts the
/// SEI of the hvcC (x265's settings) in band next to the parameter sets, where the FLV had it
/// in the record only.
fn without_sei(codec: VideoCodec, data: &[u8]) -> Vec<u8> {
    if codec != VideoCodec::Avc {
        let mut out = Vec::new();
        for nal in crate::proto::nal::nal_units(data, 4).flatten() {
            if !matches!(crate::proto::hevc::nal_type(nal), 39 | 40) {
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
        return out;
    }
    data.to_vec()
}

/// The demuxed frames and timing are exactly those of the FLV file the TS was remuxed from
/// (`ffmpeg -c copy -f mpegts`); `counts` are ffprobe's packet counts.
fn same_frames_as_flv(
    events: &[TsEvent],
    flv_name: &str,
    codec: VideoCodec,
    counts: (usize, usize),
) {
    let flv_file = Bytes::from(fixture(flv_name));
    let mut flv_video = Vec::new();
    let mut flv_audio = Vec::new();
    for tag in flv::file_tags(&flv_file) {
        match tag.kind {
            9 => {
                if let Ok(VideoTag::Frame {
                    keyframe,
                    composition_ms,
                    data,
                    ..
                }) = flv::parse_video(&tag.body, None).map(|t| t.tag)
                {
                    flv_video.push((tag.timestamp_ms, composition_ms, keyframe, data));
                }
            }
            8 => {
                if let Ok(flv::AudioTag::Frame { data, .. }) =
                    flv::parse_audio(&tag.body, None).map(|t| t.tag)
                {
                    flv_audio.push((tag.timestamp_ms, data));
                }
            }
            _ => {}
        }
    }
    assert!(events
        .iter()
        .all(|e| !matches!(e, TsEvent::Video(c, _) if *c != codec)));
    let video = frames(events, true);
    let audio = frames(events, false);
    assert_eq!((video.len(), audio.len()), counts, "ffprobe's counts");
    assert_eq!(flv_video.len(), video.len());
    assert_eq!(flv_audio.len(), audio.len());
    let (v0, t0) = (video[0].dts, flv_video[0].0 as i64);
    for (ts, flv) in video.iter().zip(&flv_video) {
        assert_eq!(
            without_sei(codec, &ts.data),
            without_sei(codec, &flv.3),
            "access unit at {} ms",
            flv.0
        );
        assert_eq!(ts.keyframe, flv.2);
        assert_eq!(ts.dts - v0, (flv.0 as i64 - t0) * 90);
        assert_eq!(ts.pts - ts.dts, flv.1 as i64 * 90);
    }
    for (ts, flv) in audio.iter().zip(&flv_audio) {
        assert_eq!(ts.data, flv.1);
        // FLV rounds to whole milliseconds.
        assert!(((ts.dts - v0) - (flv.0 as i64 - t0) * 90).abs() <= 90);
    }
}

/// fixtures/testsrc-320x180.ts is fixtures/testsrc-320x180.flv remuxed by ffmpeg
/// (`-c copy -f mpegts`): the demuxer must give back exactly the FLV's frames and timing.
#[test]
fn gives_back_the_frames_ffmpeg_muxed() {
    let events = demux(&fixture("testsrc-320x180.ts"));
    assert_eq!(drops(&events), vec![]);
    let (avc, aac) = configs(&events);
    assert_eq!(&avc.record()[..], RECORD_320X180);
    assert_eq!(
        (aac.sample_rate, aac.channels, aac.object_type),
        (44100, 2, 2)
    );
    same_frames_as_flv(&events, "testsrc-320x180.flv", VideoCodec::Avc, (90, 131));
}

/// fixtures/hevc-320x180.ts is fixtures/hevc-320x180.flv (FFmpeg 9, libx265 with B-frames,
/// Enhanced RTMP FLV) remuxed by FFmpeg 9 (`-c copy -f mpegts`: stream type 0x24, VPS/SPS/PPS
/// in band before each IRAP): the configuration is built from those, and the frames are the
/// FLV's.
#[test]
fn hevc_in_mpeg_ts() {
    let events = demux(&fixture("hevc-320x180.ts"));
    assert_eq!(drops(&events), vec![]);
    let (hevc, aac) = configs(&events);
    assert_eq!(hevc.codec(), VideoCodec::Hevc);
    assert_eq!((hevc.width(), hevc.height()), (320, 180));
    let flv_record = crate::proto::hevc::tests::record();
    let flv_cfg = crate::proto::hevc::HevcConfig::parse(flv_record).expect("hvcC");
    assert_eq!(hevc.codec_string(), flv_cfg.codec_string());
    let VideoConfig::Hevc(h) = hevc else {
        panic!("not HEVC")
    };
    assert_eq!(
        (&h.vps, &h.sps, &h.pps),
        (&flv_cfg.vps, &flv_cfg.sps, &flv_cfg.pps)
    );
    assert_eq!((aac.sample_rate, aac.channels), (44100, 1));
    same_frames_as_flv(&events, "hevc-320x180.flv", VideoCodec::Hevc, (60, 88));
    assert_eq!(
        frames(&events, true).iter().filter(|f| f.keyframe).count(),
        2
    );
}

#[test]
fn any_split_of_the_input_gives_the_same_events() {
    let data = fixture("testsrc-320x180.ts");
    let whole = demux_pieces(&data, |_| usize::MAX);
    for (name, split) in [
        ("1 byte", &(|_| 1usize) as &dyn Fn(usize) -> usize),
        ("187 bytes", &|_| 187usize),
        ("uneven", &|i: usize| 1 + (i * 7919) % 700),
    ] {
        assert_eq!(demux_pieces(&data, split), whole, "{name}");
    }
}

/// fixtures/bframes-wrap-160x90.ts: H.264 with B-frames and 48 kHz mono AAC whose 33-bit clock
/// wraps 0.32 s in (ffmpeg `-output_ts_offset 95442`).
#[test]
fn unwraps_the_33_bit_clock() {
    let events = demux(&fixture("bframes-wrap-160x90.ts"));
    assert_eq!(drops(&events), vec![]);
    let video = frames(&events, true);
    let audio = frames(&events, false);
    assert_eq!(
        (video.len(), audio.len()),
        (50, 95),
        "ffprobe counts 50 and 95"
    );
    assert!(
        video[0].dts > CLOCK_MODULUS - 90_000,
        "starts before the wrap"
    );
    assert!(
        video[49].dts > CLOCK_MODULUS,
        "ends after it, on the 64-bit timeline"
    );
    assert_eq!(video[49].dts - video[0].dts, 49 * 3600, "25 fps, no jump");
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(video.iter().all(|f| f.pts >= f.dts));
    assert!(video.iter().any(|f| f.pts > f.dts), "B-frames reorder");
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2, "keyint 25");
    assert!(audio.windows(2).all(|w| w[1].dts - w[0].dts == 1920));
}

#[test]
fn unwrap_takes_the_nearest_value() {
    let mut u = Unwrap::default();
    let top = (1u64 << 33) - 100;
    assert_eq!(u.unwrap(top), top as i64);
    assert_eq!(u.unwrap(50), (1i64 << 33) + 50, "forward over the wrap");
    assert_eq!(
        u.unwrap(top),
        top as i64,
        "back over it (audio a little behind video)"
    );
    assert_eq!(u.unwrap(top + 3600), top as i64 + 3600);
    assert_eq!(signed_33(-5), -5);
    assert_eq!(signed_33(CLOCK_MODULUS + 7), 7);
}

fn packets(data: &[u8]) -> Vec<&[u8]> {
    data.chunks_exact(PACKET_SIZE).collect()
}

fn pid(p: &[u8]) -> u16 {
    (((p[1] & 0x1f) as u16) << 8) | p[2] as u16
}

/// A video packet inside a PES (not its start), some way into the stream.
fn video_continuation(pkts: &[&[u8]], after: usize) -> usize {
    let video_pid = pid(pkts[after..]
        .iter()
        .find(|p| p[1] & 0x40 != 0 && p[4..].windows(4).any(|w| w == [0, 0, 1, 0xe0]))
        .expect("a video PES start"));
    (after..pkts.len())
        .find(|&i| pid(pkts[i]) == video_pid && pkts[i][1] & 0x40 == 0)
        .expect("a continuation packet")
}

#[test]
fn a_lost_packet_costs_one_frame() {
    let data = fixture("testsrc-320x180.ts");
    let pkts = packets(&data);
    let lost = video_continuation(&pkts, pkts.len() / 2);
    let damaged: Vec<u8> = pkts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let events = demux(&damaged);
    assert_eq!(
        drops(&events),
        vec![TsDrop::Continuity {
            track: Track::Video
        }]
    );
    assert_eq!(frames(&events, true).len(), 89);
    assert_eq!(frames(&events, false).len(), 131);
}

#[test]
fn transport_errors_and_scrambled_packets_drop_the_pes() {
    let data = fixture("testsrc-320x180.ts");
    let mut pkts: Vec<Vec<u8>> = packets(&data).iter().map(|p| p.to_vec()).collect();
    let n = pkts.len();
    let a = video_continuation(&packets(&data), n / 3);
    let b = video_continuation(&packets(&data), 2 * n / 3);
    pkts[a][1] |= 0x80;
    pkts[b][3] |= 0x80;
    let events = demux(&pkts.concat());
    let d = drops(&events);
    assert!(
        d.contains(&TsDrop::TransportError) && d.contains(&TsDrop::Scrambled),
        "{d:?}"
    );
    assert_eq!(frames(&events, true).len(), 88);
    assert_eq!(frames(&events, false).len(), 131);
}

#[test]
fn resyncs_after_garbage_between_packets() {
    let data = fixture("testsrc-320x180.ts");
    let pkts = packets(&data);
    let mut damaged = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        if i == 100 {
            // Garbage with sync bytes in it, and half a packet.
            damaged.extend_from_slice(&[0x47, 1, 2, 0x47, 0x47, 9]);
            damaged.extend_from_slice(&pkts[50][..90]);
        }
        damaged.extend_from_slice(p);
    }
    let events = demux(&damaged);
    let d = drops(&events);
    assert!(
        d.iter().any(|x| matches!(x, TsDrop::Resync { .. })),
        "{d:?}"
    );
    // The packet cut short may have taken one PES of either track with it.
    assert!(frames(&events, true).len() >= 89);
    assert!(frames(&events, false).len() >= 130);
    // Garbage alone produces nothing and no panic.
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    d.feed(&[0x47; 4000], &mut out);
    d.feed(&[0u8; 4000], &mut out);
    assert!(out.iter().all(|e| matches!(e, TsEvent::Dropped(_))));
}

/// A PES header split over two TS packets (an adaptation field leaving 4 payload bytes in the
/// unit-start packet), written by hand: the frame still comes out.
#[test]
fn pes_header_split_over_packets() {
    let data = fixture("testsrc-320x180.ts");
    let pkts = packets(&data);
    let mut out_stream: Vec<u8> = Vec::new();
    let mut moved = false;
    for p in &pkts {
        let starts_video = p[1] & 0x40 != 0 && p[3] & 0x30 == 0x10 && p[4..8] == [0, 0, 1, 0xe0];
        if moved || !starts_video || out_stream.len() < 40 * PACKET_SIZE {
            out_stream.extend_from_slice(p);
            continue;
        }
        // Split this packet's payload: 4 bytes after a 179-byte adaptation field, the rest in
        // a new packet (the continuity counters after it shift by one on this PID).
        moved = true;
        let payload = &p[4..];
        let mut first = vec![p[0], p[1], p[2], (p[3] & 0xcf) | 0x30, 179, 0];
        first.extend(std::iter::repeat_n(0xff, 178));
        first.extend_from_slice(&payload[..4]);
        let rest = &payload[4..];
        let cc = (p[3] + 1) & 0x0f;
        let mut second = vec![p[0], p[1] & 0xbf, p[2], 0x30 | cc];
        second.push((183 - rest.len()) as u8);
        if 183 > rest.len() {
            second.push(0);
            second.extend(std::iter::repeat_n(0xff, 182 - rest.len()));
        }
        second.extend_from_slice(rest);
        assert_eq!((first.len(), second.len()), (PACKET_SIZE, PACKET_SIZE));
        out_stream.extend_from_slice(&first);
        out_stream.extend_from_slice(&second);
    }
    assert!(moved);
    // Renumber the continuity counters of the video PID from the split on.
    let mut fixed = out_stream;
    let mut last: std::collections::HashMap<u16, u8> = Default::default();
    for p in fixed.chunks_exact_mut(PACKET_SIZE) {
        let id = pid(p);
        if p[3] & 0x10 != 0 && id != 0 {
            let cc = last.get(&id).map_or(p[3] & 0x0f, |c| (c + 1) & 0x0f);
            p[3] = (p[3] & 0xf0) | cc;
            last.insert(id, cc);
        }
    }
    let events = demux(&fixed);
    assert_eq!(drops(&events), vec![]);
    assert_eq!(frames(&events, true).len(), 90);
}

#[test]
fn oversized_pes_is_dropped() {
    let data = fixture("testsrc-320x180.ts");
    let pkts = packets(&data);
    let at = video_continuation(&pkts, 60);
    let mut stream: Vec<u8> = pkts[..at].concat();
    let mut filler = vec![0xaa; PACKET_SIZE];
    filler[..3].copy_from_slice(&pkts[at][..3]);
    let mut cc = pkts[at][3] & 0x0f;
    for _ in 0..(MAX_PES_BYTES / 184 + 2) {
        filler[3] = 0x10 | cc;
        stream.extend_from_slice(&filler);
        cc = (cc + 1) & 0x0f;
    }
    let events = demux(&stream);
    assert!(drops(&events).contains(&TsDrop::BadPes {
        track: Track::Video,
        reason: "larger than 8 MiB"
    }));
}
