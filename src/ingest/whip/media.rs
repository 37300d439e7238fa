//! A WHIP session's frames on their way to the bus. str0m hands over whole frames (depacketized,
//! reordered, with NACK retransmissions); this places them on one 90 kHz timeline
//! ([`RtpClock`]: arrival time, then the sender reports), passes H.264 through (Annex B to
//! length-prefixed, SPS/PPS to the configuration) and sends VP8/VP9/AV1 video and Opus audio
//! to conversion jobs on the transcode pool. It also decides when to ask the sender for a
//! keyframe: at the start, after loss, and every `hls.segment_seconds` on the passthrough path
//! (browsers send keyframes mostly when asked).
//!
//! Every queue is bounded: a conversion job more than [`MAX_PENDING_VIDEO`] frames behind is
//! emptied and resyncs at the next keyframe (which is then requested).

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use ffmpeg_next as ffmpeg;
use str0m::format::Codec;
use str0m::media::MediaData;
use tracing::{info, warn};

use super::feed::Feed;
use crate::proto::aac::AacConfig;
use crate::proto::avc::{annex_b_to_avcc, nal_type, AvcConfig};
use crate::proto::media::{MediaPacket, Track};
use crate::proto::rtpclock::{RtpClock, SenderClock};
use crate::transcode::convert::{H264Settings, VideoToH264};
use crate::transcode::opus_job::{self, AacOutput, OpusJob, OpusMsg};
use crate::transcode::pool::{Handler, Job, Pool};

/// Video frames a conversion job may have waiting (about 2 s at 30 fps).
pub const MAX_PENDING_VIDEO: usize = 60;
/// Keyframe requests at most this often after loss.
const PLI_AFTER_LOSS: Duration = Duration::from_millis(300);

/// What the router needs to know about the server's settings.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub segment_seconds: f64,
    pub audio_kbps: u32,
    pub h264: H264Settings,
}

/// The Opus conversion job's output: AAC into the session's feed.
struct WhipAac(Arc<Feed>);

impl AacOutput for WhipAac {
    fn opened(&self, config: &AacConfig) {
        self.0.audio_config(config.clone());
    }
    fn frame(&self, pkt: MediaPacket) {
        self.0.send(pkt);
    }
    fn failed(&self) {}
    fn finished(&self) {
        // The publication ends when the last holder of the feed lets go.
        self.0.flush();
    }
}

enum VideoMsg {
    Frame(Arc<[u8]>, i64, bool),
    Resync,
    Finish,
}

/// VP8 / VP9 / AV1 to H.264 for one session, on the pool.
struct VideoJob {
    conv: VideoToH264,
    feed: Option<Arc<Feed>>,
    failed: bool,
}

impl Handler for VideoJob {
    type Msg = VideoMsg;

    fn handle(&mut self, msg: VideoMsg) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let out = match msg {
            VideoMsg::Frame(data, pts, key) => match self.conv.push(&data, pts, key) {
                Ok(out) => out,
                Err(e) => {
                    if !self.failed {
                        self.failed = true;
                        warn!(error = %e, "browser video cannot be converted to H.264");
                    }
                    self.conv.resync();
                    Vec::new()
                }
            },
            VideoMsg::Resync => {
                self.conv.resync();
                Vec::new()
            }
            VideoMsg::Finish => {
                let out = self.conv.finish();
                for f in out {
                    send_h264(&feed, f.config, f.packet);
                }
                feed.flush();
                self.feed = None;
                return;
            }
        };
        for f in out {
            send_h264(&feed, f.config, f.packet);
        }
    }
}

fn send_h264(feed: &Feed, config: Option<AvcConfig>, pkt: MediaPacket) {
    if let Some(c) = config {
        feed.video_config(c);
    }
    if feed.has_video_config() {
        feed.send(pkt);
    }
}

enum VideoPath {
    /// Not known until the first video frame names its codec.
    Unknown,
    Passthrough,
    Convert(Arc<Job<VideoJob>>),
    /// A codec onair does not take (cannot happen with its answers; logged once).
    Refused,
}

/// One session's media, from str0m's frames to the feed.
pub struct MediaRouter {
    channel: String,
    settings: MediaSettings,
    pool: Arc<Pool>,
    /// The arrival clock's origin.
    start: Instant,
    clock: RtpClock,
    feed: Option<Arc<Feed>>,
    video: VideoPath,
    audio: Option<Arc<Job<OpusJob<WhipAac>>>>,
    /// Arrival of the last passthrough keyframe, and of the last keyframe request.
    last_keyframe: Option<Instant>,
    last_request: Option<Instant>,
    want_keyframe: bool,
    /// When the last frame arrived (the no-media timeout).
    pub last_media: Instant,
}

impl MediaRouter {
    pub fn new(channel: &str, settings: MediaSettings, pool: Arc<Pool>, now: Instant) -> Self {
        Self {
            channel: channel.to_string(),
            settings,
            pool,
            start: now,
            clock: RtpClock::new(),
            feed: None,
            video: VideoPath::Unknown,
            audio: None,
            last_keyframe: None,
            last_request: None,
            want_keyframe: true,
            last_media: now,
        }
    }

    /// The publication started (DTLS is up): frames from now on go to `feed`.
    pub fn start(&mut self, feed: Arc<Feed>, now: Instant) {
        self.feed = Some(feed);
        self.last_media = now;
        self.want_keyframe = true;
    }

    pub fn is_publishing(&self) -> bool {
        self.feed.is_some()
    }

    /// One frame from str0m.
    pub fn frame(&mut self, d: &MediaData, now: Instant) {
        self.last_media = now;
        let Some(feed) = self.feed.clone() else {
            return;
        };
        feed.received(d.data.len());
        let codec = d.params.spec().codec;
        let track = if codec == Codec::Opus {
            Track::Audio
        } else if codec.is_video() {
            Track::Video
        } else {
            feed.unsupported(Track::Audio, &format!("{codec:?} audio over WHIP"));
            return;
        };
        let report = d.last_sender_info.map(|sr| SenderClock {
            ntp: sr.ntp_time.duration_since(UNIX_EPOCH).unwrap_or_default(),
            rtp: sr.rtp_time.numer(),
        });
        let pts = self.clock.place(
            track,
            d.time.numer(),
            d.time.denom(),
            d.network_time.saturating_duration_since(self.start),
            report,
        );
        match track {
            Track::Audio => self.audio_frame(d, pts),
            Track::Video => self.video_frame(&feed, codec, d, pts, now),
        }
    }

    fn audio_frame(&mut self, d: &MediaData, pts: i64) {
        let Some(feed) = &self.feed else {
            return;
        };
        let job = self.audio.get_or_insert_with(|| {
            // Light: ahead of the ladder's video batches, so audio keeps up on a busy pool.
            self.pool.light_job(OpusJob::new(
                self.settings.audio_kbps,
                &self.channel,
                WhipAac(feed.clone()),
            ))
        });
        let data = Bytes::from_owner(d.data.clone());
        opus_job::send(job, OpusMsg::Packet(data, pts), &self.channel);
    }

    fn video_frame(
        &mut self,
        feed: &Arc<Feed>,
        codec: Codec,
        d: &MediaData,
        pts: i64,
        now: Instant,
    ) {
        if matches!(self.video, VideoPath::Unknown) {
            self.video = match codec {
                Codec::H264 => VideoPath::Passthrough,
                Codec::Vp8 | Codec::Vp9 | Codec::Av1 => {
                    let id = match codec {
                        Codec::Vp8 => ffmpeg::codec::Id::VP8,
                        Codec::Vp9 => ffmpeg::codec::Id::VP9,
                        _ => ffmpeg::codec::Id::AV1,
                    };
                    match VideoToH264::new(id, self.settings.h264.clone()) {
                        Ok(conv) => VideoPath::Convert(self.pool.job(VideoJob {
                            conv,
                            feed: Some(feed.clone()),
                            failed: false,
                        })),
                        Err(e) => {
                            warn!(channel = %self.channel, error = %e, ?codec, "video cannot be converted");
                            VideoPath::Refused
                        }
                    }
                }
                other => {
                    warn!(channel = %self.channel, codec = ?other, "video codec not taken");
                    VideoPath::Refused
                }
            };
            info!(channel = %self.channel, ?codec, passthrough = matches!(self.video, VideoPath::Passthrough), "browser video");
        }
        let keyframe = is_keyframe(d);
        if !d.contiguous {
            self.want_keyframe = true;
        }
        match &self.video {
            VideoPath::Passthrough => self.passthrough(feed, d, pts, keyframe, now),
            VideoPath::Convert(job) => {
                if !d.contiguous {
                    job.send(VideoMsg::Resync, Instant::now());
                }
                if job.pending() >= MAX_PENDING_VIDEO {
                    let dropped = job.discard(|m| matches!(m, VideoMsg::Finish));
                    warn!(channel = %self.channel, dropped, "video conversion fell behind; frames dropped until the next keyframe");
                    job.send(VideoMsg::Resync, Instant::now());
                    self.want_keyframe = true;
                }
                job.send(
                    VideoMsg::Frame(d.data.clone(), pts, keyframe),
                    Instant::now(),
                );
            }
            VideoPath::Unknown | VideoPath::Refused => {}
        }
    }

    fn passthrough(&mut self, feed: &Feed, d: &MediaData, pts: i64, keyframe: bool, now: Instant) {
        // str0m's depacketizer writes Annex B; the bus carries length-prefixed units.
        let unit = annex_b_to_avcc(&d.data);
        if !unit.sps.is_empty() {
            match AvcConfig::from_parameter_sets(&unit.sps, &unit.pps) {
                // A new size (the browser adapts to bandwidth) is a new configuration.
                Ok(cfg) => feed.video_config(cfg),
                Err(e) => {
                    warn!(channel = %self.channel, error = %e, "unusable H.264 parameter sets")
                }
            }
        }
        if !feed.has_video_config() || unit.data.is_empty() {
            self.want_keyframe |= !feed.has_video_config();
            return;
        }
        if keyframe {
            self.last_keyframe = Some(now);
        }
        feed.send(MediaPacket {
            track: Track::Video,
            dts: pts,
            pts,
            keyframe,
            data: Bytes::from(unit.data),
        });
    }

    /// Whether to ask the sender for a keyframe now (the caller sends a PLI).
    pub fn keyframe_due(&mut self, now: Instant) -> bool {
        if self.feed.is_none() {
            return false;
        }
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let requested = since(self.last_request);
        let due = if self.want_keyframe {
            requested.is_none_or(|r| r >= PLI_AFTER_LOSS)
        } else if matches!(self.video, VideoPath::Passthrough) {
            // A little early, so that the keyframe lands at the segment's end, not after it.
            let period = Duration::from_secs_f64((self.settings.segment_seconds - 0.15).max(0.2));
            since(self.last_keyframe).is_some_and(|k| k >= period)
                && requested.is_none_or(|r| r >= period / 2)
        } else {
            false
        };
        if due {
            self.last_request = Some(now);
            self.want_keyframe = false;
        }
        due
    }

    /// The session ends: conversion jobs drain, then let go of the feed.
    pub fn finish(&mut self) {
        let now = Instant::now();
        if let VideoPath::Convert(job) = &self.video {
            job.send(VideoMsg::Finish, now);
        }
        if let Some(job) = &self.audio {
            job.send(OpusMsg::Finish, now);
        }
        if let Some(feed) = self.feed.take() {
            feed.flush();
        }
        self.audio = None;
        self.video = VideoPath::Unknown;
    }
}

/// Whether a frame is a keyframe: str0m's codec flags, or an IDR NAL unit in H.264.
fn is_keyframe(d: &MediaData) -> bool {
    use str0m::format::CodecExtra;
    match &d.codec_extra {
        CodecExtra::H264(e) if e.is_keyframe => true,
        CodecExtra::Vp8(e) => e.is_keyframe,
        CodecExtra::Vp9(e) => e.is_keyframe,
        CodecExtra::Av1(e) => e.is_keyframe,
        _ => crate::proto::nal::annex_b_nal_units(&d.data).any(|n| nal_type(n) == 5),
    }
}
