//! Where a WHIP session's media meets the protocol-neutral [`MediaFeed`]: one feed per
//! publication, shared (behind a mutex) by the producers of one session, which run on
//! different threads: passthrough video on the socket task, converted video and audio on pool
//! threads. Between the feed and the [`Publication`] sits an [`Interleaver`], which puts audio
//! behind the video it plays with (conversion delays differ per track).
//!
//! Timestamps come from [`crate::proto::rtpclock::RtpClock`] already on one 90 kHz timeline;
//! the feed's repair (on a 90 kHz clock that never wraps) keeps each track monotonic.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{ChannelStats, Publication};
use crate::ingest::media::{Clock, MediaFeed, MediaSink, VideoCodec, VideoFrame};
use crate::proto::aac::AacConfig;
use crate::proto::avc::AvcConfig;
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use crate::transcode::output::Interleaver;

/// The feed's clock: 90 kHz, as [`crate::proto::rtpclock::RtpClock`] places frames.
const CLOCK: Clock = Clock {
    rate: 90_000,
    wrap_bits: 62,
};
/// Added to timeline ticks so that the first frames (AAC priming starts a little before zero)
/// are never negative on the feed's unsigned clock.
const BASE: i64 = 1 << 40;

/// The publication behind an interleaver.
pub struct InterleavedSink {
    publication: Publication,
    /// Std mutex, always taken inside the feed's: a packet's bookkeeping, never an await.
    order: Mutex<(Interleaver, Vec<MediaPacket>)>,
}

impl InterleavedSink {
    fn flush(&self) {
        let mut o = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let (inter, out) = &mut *o;
        inter.flush(out);
        for p in out.drain(..) {
            self.publication.send_packet(p);
        }
    }
}

impl MediaSink for InterleavedSink {
    fn channel_name(&self) -> &str {
        self.publication.channel().name.as_str()
    }
    fn stats(&self) -> &ChannelStats {
        &self.publication.channel().stats
    }
    fn set_info(&self, info: StreamInfo) {
        self.publication.set_info(info)
    }
    fn send_packet(&self, pkt: MediaPacket) {
        let mut o = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let (inter, out) = &mut *o;
        match pkt.track {
            Track::Video => inter.video(pkt, out),
            Track::Audio => inter.audio(pkt, out),
        }
        for p in out.drain(..) {
            self.publication.send_packet(p);
        }
    }
}

/// A live WHIP publication, shared by the session and its conversion jobs. Dropping the last
/// holder drops the publication (the stream ends unless another publish took over).
pub struct Feed {
    /// Std mutex: held for one frame's repair and broadcast send, never across an await.
    feed: Mutex<MediaFeed<InterleavedSink>>,
}

impl Feed {
    pub fn new(publication: Publication) -> Arc<Feed> {
        let sink = InterleavedSink {
            publication,
            order: Mutex::new((Interleaver::default(), Vec::new())),
        };
        Arc::new(Feed {
            feed: Mutex::new(MediaFeed::new(sink, CLOCK)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, MediaFeed<InterleavedSink>> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A video configuration (SPS/PPS); consumers hear of it only when it changed.
    pub fn video_config(&self, cfg: AvcConfig) {
        self.lock().set_video_config(cfg);
    }

    pub fn audio_config(&self, cfg: AacConfig) {
        self.lock().set_audio_config(cfg);
    }

    /// Whether a video configuration is known (frames before it are useless to consumers).
    pub fn has_video_config(&self) -> bool {
        self.lock().info().video.is_some()
    }

    /// Bytes that arrived from the peer (counted in the channel's `bytes_in`).
    pub fn received(&self, bytes: usize) {
        self.lock().received(bytes);
    }

    /// One packet on the session's 90 kHz timeline (DTS = PTS: WebRTC video has no B-frames,
    /// the converters emit none); video is length-prefixed.
    pub fn send(&self, pkt: MediaPacket) {
        let dts = (pkt.dts + BASE).max(0) as u64;
        let mut f = self.lock();
        match pkt.track {
            Track::Video => f.video(VideoFrame {
                codec: VideoCodec::Avc,
                data: pkt.data,
                keyframe: pkt.keyframe,
                dts,
                composition: pkt.pts - pkt.dts,
            }),
            Track::Audio => f.audio(pkt.data, dts),
        }
    }

    /// A frame in a codec onair does not take.
    pub fn unsupported(&self, track: Track, reason: &str) {
        self.lock().unsupported(track, &reason);
    }

    /// The end: audio still held for interleaving goes out.
    pub fn flush(&self) {
        self.lock().sink().flush();
    }
}
