//! Where a WHIP session's media meets the bus: the session's [`Publication`], the codec
//! configuration as it is known (video and audio are learnt separately, from different
//! threads: passthrough video on the socket task, converted video and audio on pool threads),
//! per-track monotonic timestamps, the channel's counters, and an [`Interleaver`] that puts
//! audio behind the video it plays with (conversion delays differ per track).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::info;

use crate::bus::Publication;
use crate::proto::aac::AacConfig;
use crate::proto::avc::AvcConfig;
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use crate::transcode::output::Interleaver;

#[derive(Default)]
struct FeedState {
    info: StreamInfo,
    interleave: Interleaver,
    last_video: Option<i64>,
    last_audio: Option<i64>,
    out: Vec<MediaPacket>,
}

/// A live WHIP publication, shared by the session and its conversion jobs.
pub struct Feed {
    publication: Publication,
    /// Std mutex: held for a packet's bookkeeping and a broadcast send, never across an await.
    state: Mutex<FeedState>,
}

impl Feed {
    pub fn new(publication: Publication) -> Arc<Feed> {
        Arc::new(Feed {
            publication,
            state: Mutex::new(FeedState::default()),
        })
    }

    pub fn publication(&self) -> &Publication {
        &self.publication
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn channel(&self) -> &str {
        self.publication.channel().name.as_str()
    }

    /// A video configuration (SPS/PPS); consumers hear of it only when it changed.
    pub fn video_config(&self, cfg: AvcConfig) {
        let mut st = self.lock();
        if st.info.video.as_deref() == Some(&cfg) {
            return;
        }
        info!(
            channel = %self.channel(),
            width = cfg.width,
            height = cfg.height,
            codec = %cfg.codec_string(),
            "video configuration"
        );
        st.info.video = Some(Arc::new(cfg));
        self.publication.set_info(st.info.clone());
    }

    pub fn audio_config(&self, cfg: AacConfig) {
        let mut st = self.lock();
        if st.info.audio.as_deref() == Some(&cfg) {
            return;
        }
        info!(
            channel = %self.channel(),
            sample_rate = cfg.sample_rate,
            channels = cfg.channels,
            "audio configuration"
        );
        st.info.audio = Some(Arc::new(cfg));
        self.publication.set_info(st.info.clone());
    }

    /// Whether a video configuration is known (frames before it are useless to consumers).
    pub fn has_video_config(&self) -> bool {
        self.lock().info.video.is_some()
    }

    /// One packet (DTS = PTS: WebRTC video has no B-frames, the converters emit none). Its
    /// timestamp is moved forward if it would go back on its track.
    pub fn send(&self, mut pkt: MediaPacket) {
        let stats = &self.publication.channel().stats;
        stats
            .bytes_in
            .fetch_add(pkt.data.len() as u64, Ordering::Relaxed);
        let mut st = self.lock();
        let st = &mut *st;
        let last = match pkt.track {
            Track::Video => &mut st.last_video,
            Track::Audio => &mut st.last_audio,
        };
        let min = last.map(|l| l + if pkt.track == Track::Video { 1 } else { 0 });
        if let Some(min) = min.filter(|m| pkt.dts < *m) {
            pkt.pts += min - pkt.dts;
            pkt.dts = min;
        }
        *last = Some(pkt.dts);
        match pkt.track {
            Track::Video => {
                stats.video_frames.fetch_add(1, Ordering::Relaxed);
                st.interleave.video(pkt, &mut st.out);
            }
            Track::Audio => {
                stats.audio_frames.fetch_add(1, Ordering::Relaxed);
                st.interleave.audio(pkt, &mut st.out);
            }
        }
        for p in st.out.drain(..) {
            self.publication.send_packet(p);
        }
    }

    /// The end: audio still held for interleaving goes out.
    pub fn flush(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        st.interleave.flush(&mut st.out);
        for p in st.out.drain(..) {
            self.publication.send_packet(p);
        }
    }
}
