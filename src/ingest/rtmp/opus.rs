//! Enhanced RTMP Opus audio (FourCC `Opus`) on its way to the bus as AAC: the connection reads
//! the tags ([`super::feed_audio_tag`] returns [`OpusAudio`]), places each packet on the
//! feed's 90 kHz timeline by sample count ([`crate::proto::opus::OpusTimeline`]), and hands it to
//! an [`OpusPath`]: the light pool job that WHIP uses too ([`OpusJob`], around
//! `crate::transcode::convert::OpusToAac`). The AAC frames go from the pool thread to the publication
//! through the connection's [`RtmpSink`], which, while audio is converted, holds passthrough
//! video back (at most [`MAX_HELD_VIDEO`]) until the converted audio has caught up, so that
//! consumers get the two tracks interleaved in DTS order as from any RTMP encoder.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tracing::info;

use crate::bus::{ChannelStats, Publication};
use crate::ingest::media::{MediaPacket, MediaSink, StreamInfo, Track};
use crate::proto::aac::AacConfig;
use crate::proto::media::TIMESCALE;
use crate::proto::opus::OpusHead;
use crate::transcode::opus_job::{self, AacOutput, OpusJob, OpusMsg};
use crate::transcode::output::Interleaver;
use crate::transcode::pool::{Job, Pool};

/// Video held back behind converted audio at most this long (1 s of stream time): if the
/// converter stalls or the audio stops, video goes on with that much delay at worst.
pub const MAX_HELD_VIDEO: i64 = TIMESCALE;

/// What an Opus tag amounts to, for the connection to pass to its [`OpusPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpusAudio {
    /// A SequenceStart: the stream's identification header.
    Head(OpusHead),
    /// One packet and its exact start on the feed's timeline (90 kHz).
    Packet { data: Bytes, pts: i64 },
}

/// What the RTMP ingest's converter settings are: the pool and the AAC bitrate.
#[derive(Clone)]
pub struct OpusSettings {
    pub pool: Arc<Pool>,
    pub kbps: u32,
}

/// The publication and the interleaving of converted audio with passthrough video.
struct SinkShared {
    publication: Publication,
    /// Std mutex: held for one packet's ordering and broadcast send, never across an await.
    /// `None` while no audio is converted: packets go straight through.
    order: Mutex<Option<(Interleaver, Vec<MediaPacket>)>>,
}

impl SinkShared {
    fn order(&self) -> MutexGuard<'_, Option<(Interleaver, Vec<MediaPacket>)>> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A packet into the order: `leads` for converted audio (it releases the video before it),
    /// else held until the converted audio reaches it.
    fn send(&self, pkt: MediaPacket, leads: bool) {
        let mut o = self.order();
        let Some((inter, out)) = o.as_mut() else {
            drop(o);
            return self.publication.send_packet(pkt);
        };
        if leads {
            inter.video(pkt, out);
        } else {
            inter.audio(pkt, out);
        }
        for p in out.drain(..) {
            self.publication.send_packet(p);
        }
    }

    /// Converted audio stops: what is held goes out, and packets go straight through again.
    fn release(&self) {
        let mut o = self.order();
        if let Some((mut inter, mut out)) = o.take() {
            inter.flush(&mut out);
            for p in out {
                self.publication.send_packet(p);
            }
        }
    }
}

/// Where an RTMP publication's [`crate::ingest::media::MediaFeed`] delivers: the publication,
/// shared with the Opus conversion job of the connection.
pub struct RtmpSink(Arc<SinkShared>);

impl RtmpSink {
    pub fn new(publication: Publication) -> Self {
        RtmpSink(Arc::new(SinkShared {
            publication,
            order: Mutex::new(None),
        }))
    }

    pub fn publication(&self) -> &Publication {
        &self.0.publication
    }
}

impl MediaSink for RtmpSink {
    fn channel_name(&self) -> &str {
        self.0.publication.channel().name.as_str()
    }
    fn stats(&self) -> &ChannelStats {
        &self.0.publication.channel().stats
    }
    fn set_info(&self, info: StreamInfo) {
        self.0.publication.set_info(info)
    }
    fn send_packet(&self, pkt: MediaPacket) {
        // AAC that needs no conversion leads like converted audio.
        let leads = pkt.track == Track::Audio;
        self.0.send(pkt, leads)
    }
}

/// The conversion job's output: AAC frames into the interleaving, counted.
struct RtmpAac(Arc<SinkShared>);

impl AacOutput for RtmpAac {
    // The feed states the configuration when the Opus header arrives.
    fn opened(&self, _: &AacConfig) {}

    fn frame(&self, pkt: MediaPacket) {
        // The AAC encoder's priming frame of a stream that starts at zero.
        if pkt.dts < 0 {
            return;
        }
        let stats = &self.0.publication.channel().stats;
        stats.audio_frames.fetch_add(1, Ordering::Relaxed);
        self.0.send(pkt, true);
    }

    fn failed(&self) {
        self.0.release();
    }

    fn finished(&self) {
        self.0.release();
    }
}

/// A publication's Opus conversion, held by the connection; dropping it finishes the job
/// (the AAC encoder's tail, held video), which then lets go of the publication.
pub struct OpusPath {
    job: Arc<Job<OpusJob<RtmpAac>>>,
    channel: String,
}

impl OpusPath {
    /// Starts converting for the publication behind `sink`: from now on its video waits for
    /// the converted audio.
    pub fn start(settings: &OpusSettings, sink: &RtmpSink) -> OpusPath {
        let shared = sink.0.clone();
        *shared.order() = Some((Interleaver::with_max_held(MAX_HELD_VIDEO), Vec::new()));
        let channel = shared.publication.channel().name.to_string();
        info!(channel = %channel, kbps = settings.kbps, "Opus audio: converted to AAC on the transcode pool");
        let job = settings
            .pool
            .light_job(OpusJob::new(settings.kbps, &channel, RtmpAac(shared)));
        OpusPath { job, channel }
    }

    pub fn send(&self, audio: OpusAudio) {
        let msg = match audio {
            OpusAudio::Head(h) => OpusMsg::Head(h),
            OpusAudio::Packet { data, pts } => OpusMsg::Packet(data, pts),
        };
        opus_job::send(&self.job, msg, &self.channel);
    }
}

impl Drop for OpusPath {
    fn drop(&mut self) {
        self.job.send(OpusMsg::Finish, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::super::{feed_audio_tag, FlvTracks};
    use super::*;
    use crate::ingest::media::{Clock, MediaFeed};

    #[derive(Default)]
    struct Collect {
        stats: ChannelStats,
        packets: Mutex<Vec<MediaPacket>>,
    }

    impl MediaSink for Collect {
        fn channel_name(&self) -> &str {
            "test"
        }
        fn stats(&self) -> &ChannelStats {
            &self.stats
        }
        fn set_info(&self, _: StreamInfo) {}
        fn send_packet(&self, pkt: MediaPacket) {
            self.packets.lock().unwrap().push(pkt);
        }
    }

    fn tag(
        feed: &mut MediaFeed<Collect>,
        tracks: &mut FlvTracks,
        body: &[u8],
        ms: u32,
    ) -> Option<OpusAudio> {
        feed_audio_tag(feed, tracks, &Bytes::copy_from_slice(body), ms)
    }

    /// The tags FFmpeg 9 sends for libopus: SequenceStart (OpusHead), MultichannelConfig,
    /// CodedFrames stamped in rounded milliseconds.
    #[test]
    fn opus_tags_become_exactly_placed_packets() {
        let mut feed = MediaFeed::new(Collect::default(), Clock::RTMP);
        let mut tracks = FlvTracks::default();
        let head = b"\x90OpusOpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
        let Some(OpusAudio::Head(h)) = tag(&mut feed, &mut tracks, head, 0) else {
            panic!("a head");
        };
        assert_eq!((h.channels, h.pre_skip), (2, 312));
        let aac = feed.info().audio.clone().expect("AAC output configured");
        assert_eq!((aac.sample_rate, aac.channels), (48_000, 2));
        assert_eq!(
            tag(
                &mut feed,
                &mut tracks,
                b"\x94Opus\x01\x02\x00\x00\x00\x03",
                0
            ),
            None
        );
        let mut pts = Vec::new();
        for ms in [0u32, 21, 41, 60, 81, 101] {
            match tag(&mut feed, &mut tracks, b"\x91Opus\xfc\x01\x02", ms) {
                Some(OpusAudio::Packet { data, pts: p }) => {
                    assert_eq!(&data[..], b"\xfc\x01\x02");
                    pts.push(p);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pts, vec![0, 1800, 3600, 5400, 7200, 9000]);
        // A packet whose TOC says nothing valid is dropped; nothing went to the feed itself.
        assert_eq!(tag(&mut feed, &mut tracks, b"\x91Opus\xfb\x00", 120), None);
        assert!(feed.sink().packets.lock().unwrap().is_empty());

        // `mp4a` goes the way of legacy AAC: straight to the feed.
        let mut feed = MediaFeed::new(Collect::default(), Clock::RTMP);
        let mut tracks = FlvTracks::default();
        assert_eq!(tag(&mut feed, &mut tracks, b"\x90mp4a\x11\x90", 0), None);
        assert_eq!(tag(&mut feed, &mut tracks, b"\x91mp4a\x21\x10", 0), None);
        assert_eq!(tag(&mut feed, &mut tracks, b"\xaf\x01\x21\x10", 23), None);
        let packets = feed.sink().packets.lock().unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1].dts - packets[0].dts, 23 * 90);
    }

    /// FFmpeg 9's FLV of H.264, Opus (track 0) and a second audio track in AAC (track 1, as
    /// multitrack `mp4a` messages): the Opus track is read, placed sample-exactly, the AAC
    /// track ignored and said so.
    #[test]
    fn ffmpeg_multitrack_file_reads_the_opus_track() {
        use super::super::feed_video_tag;
        use crate::proto::flv::file_tags;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/h264-opus-aac-multitrack-160x90.flv"
        );
        let file = Bytes::from(std::fs::read(path).expect("fixture"));
        let mut feed = MediaFeed::new(Collect::default(), Clock::RTMP);
        let mut tracks = FlvTracks::default();
        let (mut heads, mut pts) = (Vec::new(), Vec::new());
        for t in file_tags(&file) {
            match t.kind {
                9 => feed_video_tag(&mut feed, &mut tracks, &t.body, t.timestamp_ms),
                8 => match feed_audio_tag(&mut feed, &mut tracks, &t.body, t.timestamp_ms) {
                    Some(OpusAudio::Head(h)) => heads.push(h),
                    Some(OpusAudio::Packet { pts: p, .. }) => pts.push(p),
                    None => {}
                },
                _ => {}
            }
        }
        assert_eq!(heads.len(), 1);
        assert_eq!((heads[0].channels, heads[0].pre_skip), (2, 312));
        assert!(pts.len() >= 49, "{} Opus packets in 1 s", pts.len());
        for w in pts.windows(2) {
            assert_eq!(w[1] - w[0], 1800, "20 ms apart, exactly");
        }
        assert!(tracks.logged_others, "the AAC track is reported as ignored");
        assert_eq!(tracks.audio, Some(0));
        // Only video reached the feed itself: the AAC track was not mixed in.
        let packets = feed.sink().packets.lock().unwrap();
        assert!(packets.iter().all(|p| p.track == Track::Video));
        assert_eq!(packets.len(), 30);
    }
}
