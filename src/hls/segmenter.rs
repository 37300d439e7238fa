//! The segmenter: media packets in, finished parts and segments out. Pure (no IO, no clock) so
//! that it is tested with scripted packets, and shared by the `source` rendition and every
//! transcoded one.
//!
//! A segment starts at a video keyframe and is closed at the first keyframe after
//! `segment_seconds`; audio-only streams are cut on time. A segment's duration is the distance
//! from its first DTS to the next segment's first DTS, so EXTINF values add up to the timeline
//! exactly. A reconnect, a codec change or lost packets make the next segment a discontinuity.
//!
//! With the fMP4 container a segment is made of low-latency parts (one `moof`+`mdat` fragment
//! each, at most `part_seconds` long, cut at frame boundaries); the segment's bytes are its
//! parts back to back. MPEG-TS segments have no parts.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::Container;
use crate::proto::fmp4::{self, Sample};
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
    /// Which initialization segment it needs (fMP4), see [`Segmenter::init`].
    pub init_id: u32,
}

impl Segment {
    pub fn seconds(&self) -> f64 {
        self.duration as f64 / TIMESCALE as f64
    }
}

/// A finished low-latency part of the open segment.
#[derive(Debug, Clone)]
pub struct Part {
    /// Duration, 90 kHz.
    pub duration: i64,
    pub data: Bytes,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

impl Part {
    pub fn seconds(&self) -> f64 {
        self.duration as f64 / TIMESCALE as f64
    }
}

/// What one input produced, in order: a part, then the segment it completed.
#[derive(Debug, Default)]
pub struct Step {
    pub part: Option<Part>,
    pub segment: Option<Segment>,
    pub note: Option<SegmenterNote>,
}

/// What a packet did that the caller may want to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmenterNote {
    /// The packet was dropped while waiting for a keyframe.
    WaitingForKeyframe,
    /// The packet could not be muxed.
    Rejected(String),
}

struct OpenPart {
    start: i64,
    samples: Vec<Sample>,
    independent: bool,
}

impl OpenPart {
    fn has_video(&self) -> bool {
        self.samples.iter().any(|s| s.track == Track::Video)
    }
}

struct OpenSegment {
    start: i64,
    last_dts: i64,
    buf: Vec<u8>,
    discontinuity: bool,
    video_frames: u32,
    part: OpenPart,
}

/// Longest segment, whatever the keyframes: a publisher that stops sending keyframes must not
/// grow an open segment without bound. Generous, so long encoder GOPs still cut on keyframes.
pub const MAX_SEGMENT_SECONDS: i64 = 30;

pub struct Segmenter {
    container: Container,
    target: i64,
    part_target: i64,
    info: StreamInfo,
    muxer: TsMuxer,
    open: Option<OpenSegment>,
    next_discontinuity: bool,
    /// Typical frame duration seen, to close the last segment of a stream.
    frame_ticks: i64,
    last_video_dts: Option<i64>,
    /// fMP4 initialization segment for `info`, and its id (bumped on every change).
    init: Option<Bytes>,
    init_id: u32,
    fragment_sequence: u32,
}

/// Whether a configuration that existed was replaced by a different one.
fn changed<T: PartialEq>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => !Arc::ptr_eq(x, y) && x != y,
        _ => false,
    }
}

impl Segmenter {
    pub fn new(container: Container, segment_seconds: f64, part_seconds: f64) -> Self {
        Self {
            container,
            target: (segment_seconds * TIMESCALE as f64) as i64,
            part_target: (part_seconds * TIMESCALE as f64) as i64,
            info: StreamInfo::default(),
            muxer: TsMuxer::new(None, false),
            open: None,
            next_discontinuity: false,
            frame_ticks: TIMESCALE / 30,
            last_video_dts: None,
            init: None,
            init_id: 0,
            fragment_sequence: 0,
        }
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The fMP4 initialization segment and its id, once the tracks are known.
    pub fn init(&self) -> Option<(u32, Bytes)> {
        self.init.clone().map(|b| (self.init_id, b))
    }

    /// New codec configuration. A change of an existing configuration (new resolution, new
    /// codec) closes the open segment and starts the next one with a discontinuity.
    pub fn set_info(&mut self, info: StreamInfo) -> Step {
        let video_changed = changed(&self.info.video, &info.video);
        let audio_changed = changed(&self.info.audio, &info.audio);
        let tracks_changed = self.info.video.is_some() != info.video.is_some()
            || self.info.audio.is_some() != info.audio.is_some();
        let step = if video_changed || audio_changed || (tracks_changed && self.open.is_some()) {
            let step = self.flush();
            self.next_discontinuity = true;
            step
        } else {
            Step::default()
        };
        let rebuild = video_changed || audio_changed || tracks_changed || self.init.is_none();
        self.info = info;
        self.muxer = TsMuxer::new(
            self.info.video.as_ref().map(|v| v.codec()),
            self.info.audio.is_some(),
        );
        if self.container == Container::Fmp4
            && rebuild
            && (self.info.video.is_some() || self.info.audio.is_some())
        {
            self.init = Some(fmp4::init_segment(&self.info));
            self.init_id += 1;
        }
        step
    }

    /// The publisher went away or was replaced: close what is open; the next segment starts
    /// with a discontinuity since the timeline restarts.
    pub fn restart(&mut self) -> Step {
        let step = self.flush();
        self.next_discontinuity = true;
        self.last_video_dts = None;
        step
    }

    /// Adds one packet.
    pub fn push(&mut self, pkt: &MediaPacket) -> Step {
        let video_stream = self.info.video.is_some();
        let cuts = match pkt.track {
            Track::Video => true,
            Track::Audio => !video_stream,
        };
        let starts_segment = cuts && (pkt.keyframe || pkt.track == Track::Audio);
        let mut step = Step::default();
        match &self.open {
            None => {
                if !starts_segment {
                    step.note = Some(SegmenterNote::WaitingForKeyframe);
                    return step;
                }
                self.begin(pkt.dts);
            }
            Some(open) => {
                let age = pkt.dts - open.start;
                let forced = age >= (MAX_SEGMENT_SECONDS * TIMESCALE).max(4 * self.target);
                if (starts_segment && age >= self.target) || forced {
                    // Audio that came after the part's last video frame (published with it,
                    // see below) opens the next segment's first part, rather than making a
                    // part of almost no duration at the end of this one.
                    let carried = if video_stream && !open.part.has_video() {
                        self.open
                            .as_mut()
                            .map(|o| std::mem::take(&mut o.part.samples))
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    step.part = self.close_part(pkt.dts);
                    step.segment = self.close(pkt.dts);
                    self.begin(pkt.dts);
                    if let Some(open) = self.open.as_mut() {
                        open.part.samples = carried;
                    }
                } else if cuts
                    && self.container == Container::Fmp4
                    && !open.part.samples.is_empty()
                    && pkt.dts - open.part.start + self.frame_ticks > self.part_target
                {
                    step.part = self.close_part(pkt.dts);
                }
            }
        }
        step.note = self
            .write(pkt)
            .err()
            .map(|e| SegmenterNote::Rejected(e.to_string()));
        // A part is published with the frame that completes it (the next frame, of the same
        // duration, would not fit), not when that next frame arrives: one frame sooner on the
        // viewer's screen. Its end is where the next frame is due. The check before `write`
        // still closes a part whose next frame came earlier than due.
        // (Not on a segment cut: the step's part would come before the segment it follows.)
        if cuts
            && self.container == Container::Fmp4
            && step.part.is_none()
            && step.segment.is_none()
        {
            let end = pkt.dts + self.frame_ticks;
            let complete = self.open.as_ref().is_some_and(|open| {
                !open.part.samples.is_empty()
                    && end - open.part.start + self.frame_ticks > self.part_target
            });
            if complete {
                step.part = self.close_part(end);
            }
        }
        step
    }

    /// Closes the open part and segment at the end of a stream.
    pub fn flush(&mut self) -> Step {
        let Some(end) = self.open.as_ref().map(|o| o.last_dts + self.frame_ticks) else {
            return Step::default();
        };
        let part = self.close_part(end);
        let segment = self.close(end);
        Step {
            part,
            segment,
            note: None,
        }
    }

    fn begin(&mut self, dts: i64) {
        let mut buf = Vec::with_capacity(256 * 1024);
        if self.container == Container::Ts {
            self.muxer.write_tables(&mut buf);
        }
        self.open = Some(OpenSegment {
            start: dts,
            last_dts: dts,
            buf,
            discontinuity: std::mem::take(&mut self.next_discontinuity),
            video_frames: 0,
            part: OpenPart {
                start: dts,
                samples: Vec::new(),
                independent: false,
            },
        });
    }

    fn write(&mut self, pkt: &MediaPacket) -> Result<(), TsError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let config_known = match pkt.track {
            Track::Video => self.info.video.is_some(),
            Track::Audio => self.info.audio.is_some(),
        };
        if !config_known {
            return Ok(());
        }
        open.last_dts = open.last_dts.max(pkt.dts);
        if pkt.track == Track::Video {
            if let Some(prev) = self.last_video_dts {
                let d = pkt.dts - prev;
                if d > 0 && d < TIMESCALE {
                    self.frame_ticks = d;
                }
            }
            self.last_video_dts = Some(pkt.dts);
            open.video_frames += 1;
        } else if let (None, Some(a)) = (&self.info.video, &self.info.audio) {
            self.frame_ticks = a.frame_ticks();
        }
        match self.container {
            Container::Fmp4 => {
                // Independent when its first video frame is a keyframe (audio before it, carried
                // over from the previous part, needs nothing earlier); audio-only parts are.
                let first = match (&self.info.video, pkt.track) {
                    (Some(_), Track::Video) => !open.part.has_video(),
                    (Some(_), Track::Audio) => false,
                    (None, _) => open.part.samples.is_empty(),
                };
                if first {
                    open.part.independent = pkt.keyframe;
                }
                open.part.samples.push(Sample {
                    track: pkt.track,
                    dts: pkt.dts,
                    pts: pkt.pts,
                    keyframe: pkt.keyframe,
                    data: pkt.data.clone(),
                });
                Ok(())
            }
            Container::Ts => match pkt.track {
                Track::Video => match &self.info.video {
                    Some(cfg) => self.muxer.write_video(
                        &mut open.buf,
                        cfg,
                        pkt.dts,
                        pkt.pts,
                        pkt.keyframe,
                        &pkt.data,
                    ),
                    None => Ok(()),
                },
                Track::Audio => match &self.info.audio {
                    Some(cfg) => self
                        .muxer
                        .write_audio(&mut open.buf, cfg, pkt.pts, &pkt.data),
                    None => Ok(()),
                },
            },
        }
    }

    /// Closes the open part (fMP4) at `end`, appending its fragment to the segment.
    fn close_part(&mut self, end: i64) -> Option<Part> {
        let open = self.open.as_mut()?;
        if open.part.samples.is_empty() {
            open.part.start = end;
            return None;
        }
        let samples = std::mem::take(&mut open.part.samples);
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let mut data =
            Vec::with_capacity(samples.iter().map(|s| s.data.len() + 32).sum::<usize>() + 256);
        fmp4::fragment(self.fragment_sequence, &self.info, &samples, end, &mut data);
        open.buf.extend_from_slice(&data);
        let part = Part {
            duration: (end - open.part.start).max(1),
            data: Bytes::from(data),
            independent: open.part.independent,
        };
        open.part.start = end;
        open.part.independent = false;
        Some(part)
    }

    fn close(&mut self, end: i64) -> Option<Segment> {
        let mut open = self.open.take()?;
        if self.container == Container::Ts {
            self.muxer.flush_audio(&mut open.buf);
        }
        Some(Segment {
            start: open.start,
            duration: (end - open.start).max(1),
            data: Bytes::from(open.buf),
            discontinuity: open.discontinuity,
            video_frames: open.video_frames,
            info: self.info.clone(),
            init_id: self.init_id,
        })
    }
}

#[cfg(test)]
#[path = "segmenter_tests.rs"]
mod tests;
