//! The protocol-neutral media feed: what every ingest protocol hands its coded frames to once
//! it has them out of its own framing (FLV tags for RTMP, RTP for WHIP, MPEG-TS PES for SRT).
//!
//! A protocol makes one [`MediaFeed`] per publication, around the [`Publication`] that
//! [`super::Ingest::publish`] returned, on its own [`Clock`], and then calls:
//! - [`MediaFeed::received`] for every media message or packet that arrives (counted in
//!   `bytes_in`, and it keeps the publication from timing out: [`MediaFeed::idle_deadline`]);
//! - [`MediaFeed::set_video_config`] / [`MediaFeed::set_audio_config`] when the codec
//!   configuration is known or changes (consumers get a new [`StreamInfo`]);
//! - [`MediaFeed::video`] for each access unit ([`VideoFrame`]: H.264 or HEVC length-prefixed or
//!   Annex B, AV1 OBUs), [`MediaFeed::audio`] for each raw AAC frame (no ADTS header);
//! - [`MediaFeed::unsupported`] when a track is in a codec onair does not take.
//!
//! The feed repairs timestamps onto one monotonic 90 kHz timeline starting at zero
//! ([`crate::proto::timestamps`]), counts frames in [`ChannelStats`], drops media that comes
//! before its configuration (logged once), and sends [`MediaPacket`]s on the bus. Everything
//! here is synchronous and cheap: call it from the connection task. Dropping the feed drops the
//! publication, which ends the stream unless another publish took it over.

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bus::{ChannelStats, Publication};
use crate::proto::aac::AacConfig;
pub use crate::proto::media::{MediaPacket, StreamInfo, Track, VideoCodec, VideoConfig};
pub use crate::proto::timestamps::Clock;
use crate::proto::timestamps::{Repair, TimestampRepair};

/// Where a [`MediaFeed`] delivers: a [`Publication`] on the bus, or a test or fuzz sink.
pub trait MediaSink {
    /// The channel's public name, for log lines.
    fn channel_name(&self) -> &str;
    fn stats(&self) -> &ChannelStats;
    fn set_info(&self, info: StreamInfo);
    fn send_packet(&self, pkt: MediaPacket);
}

impl MediaSink for Publication {
    fn channel_name(&self) -> &str {
        self.channel().name.as_str()
    }
    fn stats(&self) -> &ChannelStats {
        &self.channel().stats
    }
    fn set_info(&self, info: StreamInfo) {
        Publication::set_info(self, info)
    }
    fn send_packet(&self, pkt: MediaPacket) {
        Publication::send_packet(self, pkt)
    }
}

/// One access unit (all of one picture) as a protocol hands it over.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub codec: VideoCodec,
    /// H.264 / HEVC: NAL units each prefixed by its length (the configuration record's length
    /// size; 4 bytes when the feed took the configuration from a keyframe), or in Annex B
    /// (start codes) when the stream has no configuration record: see [`MediaFeed::video`].
    /// AV1: the OBUs of one temporal unit (temporal delimiters are dropped here).
    pub data: Bytes,
    /// An IDR picture: segments and renditions start here.
    pub keyframe: bool,
    /// Decode timestamp, in ticks of the feed's [`Clock`] (wrapping as that clock wraps).
    pub dts: u64,
    /// Presentation minus decode time, in ticks of the feed's clock (0 without B-frames).
    pub composition: i64,
}

/// One publication's media on its way to the bus: codec configuration, timestamp repair,
/// counters and the no-media clock. See the module documentation for the call sequence.
pub struct MediaFeed<S: MediaSink = Publication> {
    sink: S,
    info: StreamInfo,
    timestamps: TimestampRepair,
    /// The video configuration came from a keyframe in Annex B: convert each frame.
    annex_b: bool,
    warned_early: bool,
    warned_video: bool,
    warned_audio: bool,
    /// When media last arrived (or the feed was made).
    last_media: Instant,
}

impl<S: MediaSink> MediaFeed<S> {
    /// A feed for a publication whose timestamps run on `clock` (one clock for both tracks).
    pub fn new(sink: S, clock: Clock) -> Self {
        Self {
            sink,
            info: StreamInfo::default(),
            timestamps: TimestampRepair::with_clock(clock),
            annex_b: false,
            warned_early: false,
            warned_video: false,
            warned_audio: false,
            last_media: Instant::now(),
        }
    }

    /// The publication (or test sink) this feed sends on.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The codec configuration so far.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// `bytes` of media arrived (a whole message or packet, usable or not): counted in the
    /// channel's `bytes_in`, and the no-media clock starts again.
    pub fn received(&mut self, bytes: usize) {
        self.last_media = Instant::now();
        self.sink
            .stats()
            .bytes_in
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// When media last arrived (or the feed was made).
    pub fn last_media(&self) -> Instant {
        self.last_media
    }

    /// When the publication counts as silent after `timeout` without media: close it then
    /// with [`super::IngestError::Idle`].
    pub fn idle_deadline(&self, timeout: Duration) -> Instant {
        self.last_media + timeout
    }

    /// The video configuration (from a sequence header or sequence start, or SDP parameter
    /// sets). Consumers are told when it differs from the one in force.
    pub fn set_video_config(&mut self, cfg: impl Into<VideoConfig>) {
        let cfg = cfg.into();
        if self.info.video.as_deref() != Some(&cfg) {
            // A record describes length-prefixed frames.
            self.annex_b = false;
            self.adopt_video(cfg, "video configuration");
        }
    }

    fn adopt_video(&mut self, cfg: VideoConfig, what: &'static str) {
        info!(
            channel = %self.sink.channel_name(),
            width = cfg.width(),
            height = cfg.height(),
            codec = %cfg.codec_string(),
            "{what}"
        );
        self.info.video = Some(Arc::new(cfg));
        self.sink.set_info(self.info.clone());
    }

    /// The AAC configuration (AudioSpecificConfig). Consumers are told when it differs.
    pub fn set_audio_config(&mut self, cfg: AacConfig) {
        if self.info.audio.as_deref() != Some(&cfg) {
            info!(
                channel = %self.sink.channel_name(),
                sample_rate = cfg.sample_rate,
                channels = cfg.channels,
                "audio configuration"
            );
            self.info.audio = Some(Arc::new(cfg));
            self.sink.set_info(self.info.clone());
        }
    }

    /// One video access unit. Without a configuration in its codec yet, a keyframe carrying
    /// the parameter sets (H.264 SPS/PPS, HEVC VPS/SPS/PPS, length-prefixed or Annex B; an AV1
    /// sequence header) supplies it, and an Annex B stream is converted to length-prefixed
    /// units from then on; anything before that is dropped (logged once).
    pub fn video(&mut self, frame: VideoFrame) {
        let VideoFrame {
            codec,
            data,
            keyframe,
            dts,
            composition,
        } = frame;
        if self.info.video.as_ref().map(|v| v.codec()) != Some(codec) {
            match VideoConfig::from_access_unit(codec, &data).filter(|_| keyframe) {
                Some((cfg, annex_b)) => {
                    self.annex_b = annex_b;
                    let what = match codec {
                        VideoCodec::Avc => "video configuration taken from the keyframe's SPS/PPS (the encoder sent no sequence header)",
                        VideoCodec::Hevc => "video configuration taken from the keyframe's VPS/SPS/PPS (the encoder sent no sequence start)",
                        VideoCodec::Av1 => "video configuration taken from the keyframe's sequence header (the encoder sent no sequence start)",
                    };
                    self.adopt_video(cfg, what);
                }
                None => {
                    self.warn_early();
                    return;
                }
            }
        }
        // The bus carries length-prefixed units and AV1 without temporal delimiters.
        let data = VideoConfig::to_bus_form(codec, data, self.annex_b);
        self.send(Track::Video, dts, composition, keyframe, data);
    }

    /// One raw AAC frame (no ADTS header) with its timestamp in ticks of the feed's clock.
    /// Dropped (logged once) until [`MediaFeed::set_audio_config`].
    pub fn audio(&mut self, data: Bytes, dts: u64) {
        if self.info.audio.is_none() {
            self.warn_early();
            return;
        }
        self.send(Track::Audio, dts, 0, true, data);
    }

    /// For audio that is converted before it reaches the bus (Enhanced RTMP Opus): the 90 kHz
    /// time of a frame stamped `dts` (ticks of the feed's clock), repaired on the timeline of
    /// the feed's other frames. The converter's output goes to the sink directly (and counts
    /// itself). `None` (logged once) until [`MediaFeed::set_audio_config`].
    pub fn audio_time(&mut self, dts: u64) -> Option<i64> {
        if self.info.audio.is_none() {
            self.warn_early();
            return None;
        }
        let (dts, _, repair) = self.timestamps.map_ticks(Track::Audio, dts, 0);
        self.log_repair(repair);
        Some(dts)
    }

    /// Repairs the timestamps, counts the frame and sends it on.
    fn send(&mut self, track: Track, dts: u64, composition: i64, keyframe: bool, data: Bytes) {
        let (dts, pts, repair) = self.timestamps.map_ticks(track, dts, composition);
        self.log_repair(repair);
        let stats = self.sink.stats();
        let frames = match track {
            Track::Video => &stats.video_frames,
            Track::Audio => &stats.audio_frames,
        };
        frames.fetch_add(1, Ordering::Relaxed);
        self.sink.send_packet(MediaPacket {
            track,
            dts,
            pts,
            keyframe,
            data,
        });
    }

    /// A track in a codec onair does not take: logged once per track, the rest goes on.
    pub fn unsupported(&mut self, track: Track, reason: &dyn Display) {
        let warned = match track {
            Track::Video => &mut self.warned_video,
            Track::Audio => &mut self.warned_audio,
        };
        if !*warned {
            *warned = true;
            warn!(channel = %self.sink.channel_name(), error = %reason, "track ignored: onair takes H.264, HEVC or AV1 video and AAC or Opus audio");
        }
    }

    fn warn_early(&mut self) {
        if !self.warned_early {
            self.warned_early = true;
            warn!(channel = %self.sink.channel_name(), "media before its sequence header dropped");
        }
    }

    fn log_repair(&self, repair: Repair) {
        match repair {
            Repair::None => {}
            Repair::Clamped => {
                debug!(channel = %self.sink.channel_name(), "non-monotonic timestamp clamped")
            }
            Repair::Rebased { jump_ms } => {
                info!(channel = %self.sink.channel_name(), jump_ms, "timestamp jump repaired; the timeline carries on")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect {
        stats: ChannelStats,
        infos: Mutex<Vec<StreamInfo>>,
        packets: Mutex<Vec<MediaPacket>>,
    }

    impl MediaSink for Collect {
        fn channel_name(&self) -> &str {
            "test"
        }
        fn stats(&self) -> &ChannelStats {
            &self.stats
        }
        fn set_info(&self, info: StreamInfo) {
            self.infos.lock().unwrap().push(info);
        }
        fn send_packet(&self, pkt: MediaPacket) {
            self.packets.lock().unwrap().push(pkt);
        }
    }

    /// An Annex B keyframe with the fixture's SPS and PPS and one IDR slice.
    fn annex_b_keyframe() -> Bytes {
        let cfg =
            crate::proto::avc::AvcConfig::parse(crate::proto::avc::tests::record()).expect("avc");
        let mut v = Vec::new();
        for nal in cfg.sps.iter().chain(cfg.pps.iter()) {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(nal);
        }
        v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00]);
        Bytes::from(v)
    }

    #[test]
    fn an_annex_b_stream_on_the_mpeg_clock() {
        let mut feed = MediaFeed::new(Collect::default(), Clock::MPEG_TS);
        feed.received(100);
        // Audio before its configuration: dropped.
        feed.audio(Bytes::from_static(&[1, 2, 3]), 1000);
        // A delta frame first: dropped; then the keyframe configures the stream.
        let frame = |data: Bytes, keyframe, dts| VideoFrame {
            codec: VideoCodec::Avc,
            data,
            keyframe,
            dts,
            composition: 3000,
        };
        feed.video(frame(
            Bytes::from_static(&[0, 0, 1, 0x41, 0x9a]),
            false,
            1000,
        ));
        feed.video(frame(annex_b_keyframe(), true, 4000));
        feed.video(frame(
            Bytes::from_static(&[0, 0, 1, 0x41, 0x9a]),
            false,
            7000,
        ));
        let sink = feed.sink();
        assert_eq!(sink.infos.lock().unwrap().len(), 1);
        assert!(feed.info().video.is_some());
        let packets = sink.packets.lock().unwrap();
        // The first packet kept starts the timeline: the 90 kHz ticks carry over unchanged.
        let times: Vec<(i64, i64, bool)> =
            packets.iter().map(|p| (p.dts, p.pts, p.keyframe)).collect();
        assert_eq!(times, vec![(0, 3000, true), (3000, 6000, false)]);
        // Converted to length-prefixed units.
        assert_eq!(&packets[1].data[..], &[0, 0, 0, 2, 0x41, 0x9a]);
        assert_eq!(sink.stats.video_frames.load(Ordering::Relaxed), 2);
        assert_eq!(sink.stats.bytes_in.load(Ordering::Relaxed), 100);
    }
}
