//! Where a rendition's encoded media meets its [`RenditionWriter`]: video comes from the
//! rendition's encoder job, audio from the stream's shared audio job, on different pool threads
//! and with different delays (x264 holds a few frames of lookahead, AAC does not). The
//! [`Interleaver`] puts them back in DTS order so that each segment holds the audio that plays
//! with its video, as in the source rendition.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::HlsConfig;
use crate::hls::{HlsStore, RenditionWriter};
use crate::proto::aac::AacConfig;
use crate::proto::avc::AvcConfig;
use crate::proto::media::{MediaPacket, StreamInfo, VideoConfig, TIMESCALE};

/// Audio held back at most this long (90 kHz) waiting for video; beyond it the video has
/// stalled (or was dropped) and audio goes out on its own.
const MAX_HELD_AUDIO: i64 = 5 * TIMESCALE;

/// Orders audio behind video: an audio packet is released once video has reached its DTS.
/// The roles are only names: the RTMP ingest holds passthrough video behind audio converted
/// from Opus by calling them the other way round.
#[derive(Debug)]
pub struct Interleaver {
    held: VecDeque<MediaPacket>,
    last_video_dts: Option<i64>,
    /// Held packets spanning more than this (90 kHz) go out anyway.
    max_held: i64,
}

impl Default for Interleaver {
    fn default() -> Self {
        Self::with_max_held(MAX_HELD_AUDIO)
    }
}

impl Interleaver {
    /// An interleaver that holds at most `ticks` (90 kHz) of packets.
    pub fn with_max_held(ticks: i64) -> Self {
        Self {
            held: VecDeque::new(),
            last_video_dts: None,
            max_held: ticks,
        }
    }

    /// A video packet: returns the held audio that precedes it, then the packet.
    pub fn video(&mut self, pkt: MediaPacket, out: &mut Vec<MediaPacket>) {
        while self.held.front().is_some_and(|a| a.dts <= pkt.dts) {
            out.extend(self.held.pop_front());
        }
        self.last_video_dts = Some(pkt.dts);
        out.push(pkt);
    }

    /// An audio packet: released at once if video is already past it, else held.
    pub fn audio(&mut self, pkt: MediaPacket, out: &mut Vec<MediaPacket>) {
        if self.held.is_empty() && self.last_video_dts.is_some_and(|v| pkt.dts <= v) {
            out.push(pkt);
            return;
        }
        self.held.push_back(pkt);
        while let (Some(first), Some(last)) = (self.held.front(), self.held.back()) {
            if last.dts - first.dts <= self.max_held {
                break;
            }
            out.extend(self.held.pop_front());
        }
    }

    /// The end: everything held.
    pub fn flush(&mut self, out: &mut Vec<MediaPacket>) {
        out.extend(self.held.drain(..));
    }

    /// A new timeline (restart): nothing held survives it.
    pub fn reset(&mut self) {
        self.held.clear();
        self.last_video_dts = None;
    }
}

/// One rendition's output for one stream: configuration, interleaving, the writer.
pub struct RenditionOut {
    store: Arc<HlsStore>,
    channel: String,
    name: String,
    order: usize,
    hls: HlsConfig,
    writer: RenditionWriter,
    interleaver: Interleaver,
    video: Option<Arc<VideoConfig>>,
    audio: Option<Arc<AacConfig>>,
    /// The writer got `set_info` with the current configurations.
    info_sent: bool,
    /// False while the rendition is shed by admission control: nothing reaches the store.
    enabled: bool,
    /// Producers (video job, audio job) that have not finished yet.
    producers_left: u8,
    scratch: Vec<MediaPacket>,
}

/// Shared between the rendition's video job and the stream's audio job. A std mutex: each
/// holder pushes a packet or two and leaves; never held across an await (pool threads only).
pub type SharedOut = Arc<Mutex<RenditionOut>>;

pub fn lock(out: &SharedOut) -> MutexGuard<'_, RenditionOut> {
    // Poisoned only if a job panicked mid-push; the writer's state is still usable.
    out.lock().unwrap_or_else(|e| e.into_inner())
}

impl RenditionOut {
    pub fn new(
        store: Arc<HlsStore>,
        channel: &str,
        name: &str,
        order: usize,
        hls: &HlsConfig,
        audio: Option<Arc<AacConfig>>,
    ) -> SharedOut {
        let mut writer = RenditionWriter::new(store.clone(), channel, name, order, hls);
        // A new pipeline continues an existing rendition's playlist on a new timeline (new
        // publish, codec change): the writer marks its first segment as a discontinuity.
        writer.restart();
        Arc::new(Mutex::new(Self {
            store,
            channel: channel.to_string(),
            name: name.to_string(),
            order,
            hls: hls.clone(),
            writer,
            interleaver: Interleaver::default(),
            producers_left: 1 + audio.is_some() as u8,
            audio,
            video: None,
            info_sent: false,
            enabled: true,
            scratch: Vec::new(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// An encoded video packet; `config` when the encoder emitted parameter sets.
    pub fn push_video(&mut self, config: Option<AvcConfig>, pkt: MediaPacket) {
        if !self.enabled {
            return;
        }
        if let Some(c) = config.map(VideoConfig::Avc) {
            if self.video.as_deref() != Some(&c) {
                self.video = Some(Arc::new(c));
                self.info_sent = false;
            }
        }
        if self.video.is_none() {
            return;
        }
        if !self.info_sent {
            self.writer.set_info(StreamInfo {
                video: self.video.clone(),
                audio: self.audio.clone(),
            });
            self.info_sent = true;
        }
        let mut out = std::mem::take(&mut self.scratch);
        self.interleaver.video(pkt, &mut out);
        self.write(&mut out);
    }

    /// An encoded audio packet.
    pub fn push_audio(&mut self, pkt: MediaPacket) {
        if !self.enabled {
            return;
        }
        let mut out = std::mem::take(&mut self.scratch);
        self.interleaver.audio(pkt, &mut out);
        self.write(&mut out);
    }

    fn write(&mut self, out: &mut Vec<MediaPacket>) {
        for p in out.drain(..) {
            // Until the first video packet set the info, the segmenter would drop audio anyway.
            if self.info_sent {
                self.writer.push(&p);
            }
        }
        self.scratch = std::mem::take(out);
    }

    /// A gap in the input (lost packets): the next segment is a discontinuity.
    pub fn restart(&mut self) {
        self.interleaver.reset();
        self.writer.restart();
        self.info_sent = false;
    }

    /// Admission control sheds this rendition: it leaves the multivariant playlist at once.
    pub fn disable(&mut self) {
        self.enabled = false;
        self.interleaver.reset();
        self.writer = RenditionWriter::new(
            self.store.clone(),
            &self.channel,
            &self.name,
            self.order,
            &self.hls,
        );
        self.writer.restart();
        self.info_sent = false;
        self.video = None;
        self.store.remove_rendition(&self.channel, &self.name);
    }

    /// A newer pipeline takes over this rendition (new publish, codec change): nothing more
    /// from this one reaches the store, so that its backlog cannot land after (or resurrect a
    /// rendition removed by) the new stream. Its unfinished tail is dropped; the source
    /// rendition keeps it.
    pub fn detach(&mut self) {
        self.enabled = false;
        self.interleaver.reset();
    }

    /// Admission control brings it back; it reappears with its first new segment.
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    /// One producer (video or audio job) finished; when both have, the open segment is
    /// published and, if the stream ended (`end`), the playlist gets ENDLIST. Otherwise a new
    /// pipeline continues the playlist (new publish, codec change).
    pub fn producer_finished(&mut self, end: bool) {
        self.producers_left = self.producers_left.saturating_sub(1);
        if self.producers_left > 0 {
            return;
        }
        if self.enabled {
            let mut out = std::mem::take(&mut self.scratch);
            self.interleaver.flush(&mut out);
            self.write(&mut out);
            if end {
                self.writer.finish();
                self.store.end_rendition(&self.channel, &self.name);
            } else {
                self.writer.restart();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::media::Track;
    use bytes::Bytes;

    fn pkt(track: Track, dts: i64) -> MediaPacket {
        MediaPacket {
            track,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::new(),
        }
    }

    fn order(out: &[MediaPacket]) -> Vec<(char, i64)> {
        out.iter()
            .map(|p| (if p.track == Track::Video { 'v' } else { 'a' }, p.dts))
            .collect()
    }

    #[test]
    fn audio_waits_for_video_that_lags_behind() {
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        // The encoder's lookahead: audio up to 200 ms arrives before the first video.
        for t in [0, 2089, 4178, 6267] {
            il.audio(pkt(Track::Audio, t), &mut out);
        }
        assert!(out.is_empty());
        il.video(pkt(Track::Video, 0), &mut out);
        il.video(pkt(Track::Video, 3000), &mut out);
        assert_eq!(
            order(&out),
            vec![('a', 0), ('v', 0), ('a', 2089), ('v', 3000)]
        );
        out.clear();
        il.video(pkt(Track::Video, 6000), &mut out);
        // Video has passed 4178; 6267 is still ahead of it.
        assert_eq!(order(&out), vec![('a', 4178), ('v', 6000)]);
        out.clear();
        // Late audio behind the video goes straight out.
        il.video(pkt(Track::Video, 9000), &mut out);
        il.audio(pkt(Track::Audio, 8356), &mut out);
        assert_eq!(order(&out), vec![('a', 6267), ('v', 9000), ('a', 8356)]);
        out.clear();
        il.audio(pkt(Track::Audio, 10445), &mut out);
        il.flush(&mut out);
        assert_eq!(order(&out), vec![('a', 10445)]);
    }

    #[test]
    fn audio_is_not_held_forever_when_video_stalls() {
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.video(pkt(Track::Video, 0), &mut out);
        out.clear();
        let step = 2089;
        for i in 1..=(6 * TIMESCALE / step) {
            il.audio(pkt(Track::Audio, i * step), &mut out);
        }
        assert!(!out.is_empty(), "held more than {MAX_HELD_AUDIO} ticks");
        assert!(il.held.back().map(|b| b.dts).unwrap_or(0) - il.held[0].dts <= MAX_HELD_AUDIO);
    }
}
