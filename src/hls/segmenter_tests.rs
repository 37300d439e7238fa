//! Tests of the segmenter with scripted packets: cuts, parts, discontinuities, audio.

use super::*;
use crate::proto::media::{tests::info, VideoConfig};

fn video(dts: i64, key: bool) -> MediaPacket {
    MediaPacket {
        track: Track::Video,
        dts,
        pts: dts,
        keyframe: key,
        data: Bytes::from_static(&[0, 0, 0, 2, 0x41, 0]),
    }
}

/// 30 fps video with a keyframe every `gop` frames; returns the closed segments.
fn run(seg: &mut Segmenter, frames: i64, gop: i64) -> Vec<Segment> {
    let mut out = Vec::new();
    for i in 0..frames {
        out.extend(seg.push(&video(i * 3000, i % gop == 0)).segment);
    }
    out
}

#[test]
fn cuts_at_keyframes_after_target() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    let segs = run(&mut s, 300, 60);
    assert_eq!(segs.len(), 4);
    for seg in &segs {
        assert_eq!(seg.duration, 180_000);
        assert_eq!(seg.video_frames, 60);
        assert!(!seg.discontinuity);
    }
    let last = s.flush().segment.expect("open segment");
    assert_eq!(last.duration, 180_000);
}

#[test]
fn long_gop_makes_long_segments() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    let segs = run(&mut s, 301, 150);
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].duration, 450_000);
}

#[test]
fn no_keyframes_still_cut_at_the_maximum() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    // One keyframe, then 100 s of frames without another.
    let segs = run(&mut s, 3000, 100_000);
    assert_eq!(
        segs.len(),
        3,
        "{:?}",
        segs.iter().map(|s| s.duration).collect::<Vec<_>>()
    );
    assert!(segs
        .iter()
        .all(|s| s.duration == MAX_SEGMENT_SECONDS * TIMESCALE));
}

#[test]
fn waits_for_first_keyframe() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    let step = s.push(&video(0, false));
    assert!(step.segment.is_none());
    assert_eq!(step.note, Some(SegmenterNote::WaitingForKeyframe));
}

#[test]
fn restart_marks_discontinuity() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    run(&mut s, 70, 60);
    let closed = s.restart().segment.expect("open segment closed");
    assert!(!closed.discontinuity);
    let segs = run(&mut s, 121, 60);
    assert!(segs[0].discontinuity);
    assert!(!segs[1].discontinuity);
}

#[test]
fn audio_only_cuts_on_time() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    let mut i = info();
    i.video = None;
    s.set_info(i);
    let mut segs = Vec::new();
    for n in 0..500i64 {
        let step = s.push(&MediaPacket {
            track: Track::Audio,
            dts: n * 2089,
            pts: n * 2089,
            keyframe: true,
            data: Bytes::from_static(&[1, 2, 3]),
        });
        segs.extend(step.segment);
    }
    assert_eq!(segs.len(), 5);
    assert!(segs.iter().all(|s| (s.seconds() - 2.0).abs() < 0.05));
}

#[test]
fn resolution_change_is_a_discontinuity() {
    let mut s = Segmenter::new(Container::Ts, 2.0, 0.333);
    s.set_info(info());
    run(&mut s, 30, 60);
    let mut other = info();
    let mut v = (*other.video.clone().expect("video")).clone();
    if let VideoConfig::Avc(c) = &mut v {
        c.width = 640;
    }
    other.video = Some(Arc::new(v));
    assert!(s.set_info(other).segment.is_some());
    let segs = run(&mut s, 61, 60);
    assert!(segs[0].discontinuity);
}

#[test]
fn fmp4_parts_are_bounded_and_make_up_the_segment() {
    let mut s = Segmenter::new(Container::Fmp4, 2.0, 0.333);
    s.set_info(info());
    let (id, init) = s.init().expect("init segment");
    assert_eq!(id, 1);
    assert!(init.starts_with(&[0, 0, 0, 28, b'f', b't', b'y', b'p']));
    let mut parts = Vec::new();
    let mut segs = Vec::new();
    for i in 0..181i64 {
        let step = s.push(&video(i * 3000, i % 60 == 0));
        parts.extend(step.part);
        if let Some(seg) = step.segment {
            segs.push((seg, std::mem::take(&mut parts)));
        }
    }
    assert_eq!(segs.len(), 3);
    for (seg, parts) in &segs {
        assert_eq!(seg.duration, 180_000);
        // 9 frames of 33.3 ms fit in 0.333 s: 6 parts of 9 frames and one of 6.
        assert_eq!(
            parts.len(),
            7,
            "{:?}",
            parts.iter().map(|p| p.duration).collect::<Vec<_>>()
        );
        assert!(parts.iter().all(|p| p.duration <= 29_970));
        assert_eq!(parts.iter().map(|p| p.duration).sum::<i64>(), seg.duration);
        assert!(parts[0].independent);
        assert!(parts[1..].iter().all(|p| !p.independent));
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        assert_eq!(joined, seg.data.to_vec());
        assert_eq!(seg.init_id, 1);
    }
}

#[test]
fn fmp4_part_is_published_with_the_frame_that_completes_it() {
    // 0.2 s parts at 30 fps: six frames each, the sixth closes the part at once.
    let mut s = Segmenter::new(Container::Fmp4, 2.0, 0.2);
    s.set_info(info());
    let mut segs = Vec::new();
    for i in 0..121i64 {
        let step = s.push(&video(i * 3000, i % 60 == 0));
        if i % 6 == 5 {
            let part = step.part.expect("the sixth frame completes a part");
            assert_eq!(part.duration, 18_000, "frame {i}");
            assert_eq!(part.independent, i % 60 == 5, "frame {i}");
        } else {
            assert!(step.part.is_none(), "frame {i} completes no part");
        }
        segs.extend(step.segment);
    }
    // The keyframe still closes the segment, whose parts were all published already.
    assert_eq!(segs.len(), 2);
    assert!(segs.iter().all(|seg| seg.duration == 180_000));
}

#[test]
fn fmp4_audio_after_a_parts_last_frame_opens_the_next_part() {
    // 30 fps video and 44.1 kHz AAC, interleaved by DTS as RTMP delivers them.
    let mut s = Segmenter::new(Container::Fmp4, 2.0, 0.2);
    s.set_info(info());
    let aac = 1024 * 90_000 / 44_100;
    let mut packets: Vec<MediaPacket> = (0..181i64).map(|i| video(i * 3000, i % 60 == 0)).collect();
    packets.extend((0..260i64).map(|n| MediaPacket {
        track: Track::Audio,
        dts: n * aac,
        pts: n * aac,
        keyframe: true,
        data: Bytes::from_static(&[1, 2, 3]),
    }));
    packets.sort_by_key(|p| (p.dts, p.track == Track::Video));
    let mut parts = Vec::new();
    let mut segs = Vec::new();
    for p in packets.iter().filter(|p| p.dts < 180 * 3000) {
        let step = s.push(p);
        parts.extend(step.part);
        if let Some(seg) = step.segment {
            segs.push((seg, std::mem::take(&mut parts)));
        }
    }
    assert_eq!(segs.len(), 2);
    for (seg, parts) in &segs {
        assert_eq!(seg.duration, 180_000);
        let durations: Vec<i64> = parts.iter().map(|p| p.duration).collect();
        // Ten whole parts: no sliver of trailing audio at the end of the segment.
        assert_eq!(durations, vec![18_000; 10], "{durations:?}");
        assert!(
            parts[0].independent,
            "the keyframe's part, after carried audio"
        );
        assert!(parts[1..].iter().all(|p| !p.independent));
    }
    // The second segment's first part starts with the audio carried over, then the
    // keyframe: both tracks' base decode times are in its fragment.
    let first = &segs[1].1[0].data;
    let tfdts: Vec<u64> = first
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"tfdt")
        .map(|(at, _)| u64::from_be_bytes(first[at + 8..at + 16].try_into().expect("8 bytes")))
        .collect();
    assert_eq!(tfdts.len(), 2, "video and audio track fragments");
    assert_eq!(tfdts[0], 60 * 3000, "video starts at the keyframe");
    assert!(
        tfdts[1] * 90_000 / 44_100 < 60 * 3000,
        "audio from before it"
    );
}
