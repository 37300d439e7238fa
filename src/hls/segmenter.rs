//! The segmenter: media packets in, finished segments out. Pure (no IO, no clock) so that it is
//! tested with scripted packets, and shared by the `source` rendition and every transcoded one.
//!
//! A segment starts at a video keyframe and is closed at the first keyframe after
//! `segment_seconds`; audio-only streams are cut on time. A segment's duration is the distance
//! from its first DTS to the next segment's first DTS, so EXTINF values add up to the timeline
//! exactly. A reconnect, a codec change or lost packets make the next segment a discontinuity.

use std::sync::Arc;

use bytes::Bytes;

use crate::proto::media::{MediaPacket, StreamInfo, Track, TIMESCALE};
use crate::proto::ts::{TsError, TsMuxer};

/// A finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// First DTS, 90 kHz.
    pub start: i64,
    /// Duration, 90 kHz.
    pub duration: i64,
    pub data: Bytes,
    /// A discontinuity precedes this segment.
    pub discontinuity: bool,
    /// Video frames in the segment (0 for audio only).
    pub video_frames: u32,
    /// The stream configuration this segment was written with.
    pub info: StreamInfo,
}

impl Segment {
    pub fn seconds(&self) -> f64 {
        self.duration as f64 / TIMESCALE as f64
    }
}

/// What a packet did that the caller may want to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmenterNote {
    /// The packet was dropped while waiting for a keyframe.
    WaitingForKeyframe,
    /// The packet could not be muxed.
    Rejected(String),
}

struct OpenSegment {
    start: i64,
    last_dts: i64,
    buf: Vec<u8>,
    discontinuity: bool,
    video_frames: u32,
}

/// Longest segment, whatever the keyframes: a publisher that stops sending keyframes must not
/// grow an open segment without bound. Generous, so long encoder GOPs still cut on keyframes.
pub const MAX_SEGMENT_SECONDS: i64 = 30;

pub struct Segmenter {
    target: i64,
    info: StreamInfo,
    muxer: TsMuxer,
    open: Option<OpenSegment>,
    next_discontinuity: bool,
    /// Typical frame duration seen, to close the last segment of a stream.
    frame_ticks: i64,
    last_video_dts: Option<i64>,
}

/// Whether a configuration that existed was replaced by a different one.
fn changed<T: PartialEq>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => !Arc::ptr_eq(x, y) && x != y,
        _ => false,
    }
}

impl Segmenter {
    pub fn new(segment_seconds: f64) -> Self {
        Self {
            target: (segment_seconds * TIMESCALE as f64) as i64,
            info: StreamInfo::default(),
            muxer: TsMuxer::new(false, false),
            open: None,
            next_discontinuity: false,
            frame_ticks: TIMESCALE / 30,
            last_video_dts: None,
        }
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// New codec configuration. A change of an existing configuration (new resolution, new
    /// codec) closes the open segment and starts the next one with a discontinuity.
    pub fn set_info(&mut self, info: StreamInfo) -> Option<Segment> {
        let video_changed = changed(&self.info.video, &info.video);
        let audio_changed = changed(&self.info.audio, &info.audio);
        let tracks_changed = self.info.video.is_some() != info.video.is_some()
            || self.info.audio.is_some() != info.audio.is_some();
        let closed = if video_changed || audio_changed || (tracks_changed && self.open.is_some()) {
            let seg = self.flush();
            self.next_discontinuity = true;
            seg
        } else {
            None
        };
        self.info = info;
        self.muxer = TsMuxer::new(self.info.video.is_some(), self.info.audio.is_some());
        closed
    }

    /// The publisher went away or was replaced: close what is open; the next segment starts
    /// with a discontinuity since the timeline restarts.
    pub fn restart(&mut self) -> Option<Segment> {
        let seg = self.flush();
        self.next_discontinuity = true;
        self.last_video_dts = None;
        seg
    }

    /// Packets were lost (a lagging subscriber): wait for the next keyframe, then carry on with
    /// a discontinuity.
    pub fn resync(&mut self) -> Option<Segment> {
        self.restart()
    }

    /// Adds one packet; returns the segment it closed, if any.
    pub fn push(&mut self, pkt: &MediaPacket) -> (Option<Segment>, Option<SegmenterNote>) {
        let video_stream = self.info.video.is_some();
        let starts_segment = match pkt.track {
            Track::Video => pkt.keyframe,
            Track::Audio => !video_stream,
        };
        let mut closed = None;
        match &self.open {
            None => {
                if !starts_segment {
                    return (None, Some(SegmenterNote::WaitingForKeyframe));
                }
                self.begin(pkt.dts);
            }
            Some(open) => {
                let age = pkt.dts - open.start;
                let forced = age >= (MAX_SEGMENT_SECONDS * TIMESCALE).max(4 * self.target);
                if (starts_segment && age >= self.target) || forced {
                    closed = self.close(pkt.dts);
                    self.begin(pkt.dts);
                }
            }
        }
        let note = self
            .write(pkt)
            .err()
            .map(|e| SegmenterNote::Rejected(e.to_string()));
        (closed, note)
    }

    /// Closes the open segment at the end of a stream.
    pub fn flush(&mut self) -> Option<Segment> {
        let end = self.open.as_ref().map(|o| o.last_dts + self.frame_ticks)?;
        self.close(end)
    }

    fn begin(&mut self, dts: i64) {
        let mut buf = Vec::with_capacity(256 * 1024);
        self.muxer.write_tables(&mut buf);
        self.open = Some(OpenSegment {
            start: dts,
            last_dts: dts,
            buf,
            discontinuity: std::mem::take(&mut self.next_discontinuity),
            video_frames: 0,
        });
    }

    fn write(&mut self, pkt: &MediaPacket) -> Result<(), TsError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.last_dts = open.last_dts.max(pkt.dts);
        match pkt.track {
            Track::Video => {
                let Some(cfg) = &self.info.video else {
                    return Ok(());
                };
                if let Some(prev) = self.last_video_dts {
                    let d = pkt.dts - prev;
                    if d > 0 && d < TIMESCALE {
                        self.frame_ticks = d;
                    }
                }
                self.last_video_dts = Some(pkt.dts);
                open.video_frames += 1;
                self.muxer.write_video(
                    &mut open.buf,
                    cfg,
                    pkt.dts,
                    pkt.pts,
                    pkt.keyframe,
                    &pkt.data,
                )
            }
            Track::Audio => {
                let Some(cfg) = &self.info.audio else {
                    return Ok(());
                };
                if self.info.video.is_none() {
                    self.frame_ticks = cfg.frame_ticks();
                }
                self.muxer
                    .write_audio(&mut open.buf, cfg, pkt.pts, &pkt.data)
            }
        }
    }

    fn close(&mut self, end: i64) -> Option<Segment> {
        let mut open = self.open.take()?;
        self.muxer.flush_audio(&mut open.buf);
        Some(Segment {
            start: open.start,
            duration: (end - open.start).max(1),
            data: Bytes::from(open.buf),
            discontinuity: open.discontinuity,
            video_frames: open.video_frames,
            info: self.info.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::aac::AacConfig;
    use crate::proto::avc::{tests::record, AvcConfig};

    fn info() -> StreamInfo {
        StreamInfo {
            video: Some(Arc::new(AvcConfig::parse(record()).expect("avc"))),
            audio: Some(Arc::new(
                AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("aac"),
            )),
        }
    }

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
            let (s, _) = seg.push(&video(i * 3000, i % gop == 0));
            out.extend(s);
        }
        out
    }

    #[test]
    fn cuts_at_keyframes_after_target() {
        let mut s = Segmenter::new(2.0);
        s.set_info(info());
        let segs = run(&mut s, 300, 60);
        assert_eq!(segs.len(), 4);
        for seg in &segs {
            assert_eq!(seg.duration, 180_000);
            assert_eq!(seg.video_frames, 60);
            assert!(!seg.discontinuity);
        }
        let last = s.flush().expect("open segment");
        assert_eq!(last.duration, 180_000);
    }

    #[test]
    fn long_gop_makes_long_segments() {
        let mut s = Segmenter::new(2.0);
        s.set_info(info());
        let segs = run(&mut s, 301, 150);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].duration, 450_000);
    }

    #[test]
    fn no_keyframes_still_cut_at_the_maximum() {
        let mut s = Segmenter::new(2.0);
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
        let mut s = Segmenter::new(2.0);
        s.set_info(info());
        let (seg, note) = s.push(&video(0, false));
        assert!(seg.is_none());
        assert_eq!(note, Some(SegmenterNote::WaitingForKeyframe));
    }

    #[test]
    fn restart_marks_discontinuity() {
        let mut s = Segmenter::new(2.0);
        s.set_info(info());
        run(&mut s, 70, 60);
        let closed = s.restart().expect("open segment closed");
        assert!(!closed.discontinuity);
        let segs = run(&mut s, 121, 60);
        assert!(segs[0].discontinuity);
        assert!(!segs[1].discontinuity);
    }

    #[test]
    fn audio_only_cuts_on_time() {
        let mut s = Segmenter::new(2.0);
        let mut i = info();
        i.video = None;
        s.set_info(i);
        let mut segs = Vec::new();
        for n in 0..500i64 {
            let (seg, _) = s.push(&MediaPacket {
                track: Track::Audio,
                dts: n * 2089,
                pts: n * 2089,
                keyframe: true,
                data: Bytes::from_static(&[1, 2, 3]),
            });
            segs.extend(seg);
        }
        assert_eq!(segs.len(), 5);
        assert!(segs.iter().all(|s| (s.seconds() - 2.0).abs() < 0.05));
    }

    #[test]
    fn resolution_change_is_a_discontinuity() {
        let mut s = Segmenter::new(2.0);
        s.set_info(info());
        run(&mut s, 30, 60);
        let mut other = info();
        let mut v = (*other.video.clone().expect("video")).clone();
        v.width = 640;
        other.video = Some(Arc::new(v));
        assert!(s.set_info(other).is_some());
        let segs = run(&mut s, 61, 60);
        assert!(segs[0].discontinuity);
    }
}
