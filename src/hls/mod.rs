//! HLS: segmenters that turn each channel's media into segments, and the in-memory store that
//! HTTP serves from. One task per channel subscribes to the bus and feeds the `source`
//! rendition's segmenter; transcoders feed theirs through the same [`RenditionWriter`].

pub mod names;
pub mod segmenter;
pub mod serve;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::bus::{ChannelBus, MediaEvent};
use crate::config::{Container, HlsConfig};
use crate::proto::media::{MediaPacket, StreamInfo, TIMESCALE};
use crate::proto::ts::video_stream_type;
pub use names::{MediaKind, MediaName};
use segmenter::{Segmenter, SegmenterNote, Step};
pub use store::{HlsStore, Lookup, Position, RenditionSummary, StoreConfig};

/// Name of the untouched input rendition.
pub const SOURCE: &str = "source";

/// A segmenter bound to one rendition of one channel in the store.
pub struct RenditionWriter {
    store: Arc<HlsStore>,
    channel: String,
    rendition: String,
    order: usize,
    segmenter: Segmenter,
    /// Wall-clock time of a DTS, for PROGRAM-DATE-TIME; reset at discontinuities.
    anchor: Option<(i64, DateTime<Utc>)>,
    waiting_logged: bool,
    segment_seconds: f64,
    /// Id of the init segment last handed to the store.
    init_id: u32,
    /// The stream's video codec cannot go in this container (AV1 in MPEG-TS): the rendition
    /// is left out until the configuration changes.
    skipped: bool,
}

impl RenditionWriter {
    pub fn new(
        store: Arc<HlsStore>,
        channel: &str,
        rendition: &str,
        order: usize,
        cfg: &HlsConfig,
    ) -> Self {
        Self {
            segmenter: Segmenter::new(store.container(), cfg.segment_seconds, cfg.part_seconds),
            store,
            channel: channel.to_string(),
            rendition: rendition.to_string(),
            order,
            anchor: None,
            waiting_logged: false,
            segment_seconds: cfg.segment_seconds,
            init_id: 0,
            skipped: false,
        }
    }

    pub fn set_info(&mut self, info: StreamInfo) {
        let carried = self.store.container() != Container::Ts
            || info
                .video
                .as_ref()
                .is_none_or(|v| video_stream_type(v.codec()).is_some());
        if !carried {
            if !self.skipped {
                self.skipped = true;
                let codec = info.video.as_ref().map_or("", |v| v.codec().name());
                warn!(
                    channel = %self.channel,
                    rendition = %self.rendition,
                    codec,
                    "this video codec cannot be carried in MPEG-TS (hls.container = \"ts\"): the rendition is left out, viewers get only the [transcode] ladder's H.264 renditions (none when the ladder is empty); set hls.container = \"fmp4\" to pass it through"
                );
                let step = self.segmenter.flush();
                self.publish(step);
                self.store.remove_rendition(&self.channel, &self.rendition);
            }
            return;
        }
        self.skipped = false;
        let step = self.segmenter.set_info(info);
        self.publish(step);
        if let Some((id, init)) = self.segmenter.init() {
            if id != self.init_id {
                self.init_id = id;
                self.store
                    .set_init(&self.channel, &self.rendition, self.order, id, init);
            }
        }
    }

    pub fn push(&mut self, pkt: &MediaPacket) {
        if self.skipped {
            return;
        }
        let step = self.segmenter.push(pkt);
        match &step.note {
            Some(SegmenterNote::WaitingForKeyframe) if !self.waiting_logged => {
                self.waiting_logged = true;
                debug!(rendition = %self.rendition, "dropping frames until the first keyframe");
            }
            Some(SegmenterNote::Rejected(reason)) => {
                warn!(rendition = %self.rendition, %reason, "packet dropped");
            }
            _ => {}
        }
        self.publish(step);
    }

    /// The stream restarted (reconnect, takeover, lost packets).
    pub fn restart(&mut self) {
        let step = self.segmenter.restart();
        self.publish(step);
        self.anchor = None;
        self.waiting_logged = false;
    }

    /// The stream ended: close the open segment and end the playlists.
    pub fn finish(&mut self) {
        let step = self.segmenter.flush();
        self.publish(step);
        self.anchor = None;
    }

    fn publish(&mut self, step: Step) {
        if let Some(part) = &step.part {
            self.store
                .push_part(&self.channel, &self.rendition, self.order, part);
        }
        let Some(seg) = step.segment else { return };
        if seg.discontinuity {
            self.anchor = None;
        }
        let (anchor_dts, anchor_time) = *self.anchor.get_or_insert_with(|| {
            // The segment just closed, so live "now" is about its end.
            let start =
                Utc::now() - chrono::Duration::milliseconds(seg.duration * 1000 / TIMESCALE);
            (seg.start, start)
        });
        let pdt = anchor_time
            + chrono::Duration::milliseconds((seg.start - anchor_dts) * 1000 / TIMESCALE);
        let seconds = seg.seconds();
        if seconds > self.segment_seconds * 2.5 && seg.video_frames > 0 {
            warn!(
                channel = %self.channel,
                seconds = format!("{seconds:.1}"),
                "segment is much longer than hls.segment_seconds: set the encoder's keyframe interval to {} s",
                self.segment_seconds
            );
        }
        let seq = self
            .store
            .push_segment(&self.channel, &self.rendition, self.order, &seg, pdt);
        debug!(channel = %self.channel, rendition = %self.rendition, seq, start = seg.start, seconds, bytes = seg.data.len(), "segment");
    }
}

/// Starts the source-rendition task of a channel.
pub fn start_channel(
    channel: Arc<ChannelBus>,
    store: Arc<HlsStore>,
    cfg: HlsConfig,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let rx = channel.subscribe();
    tracker.spawn(channel_task(channel, rx, store, cfg, cancel));
}

#[instrument(skip_all, fields(channel = %channel.name))]
async fn channel_task(
    channel: Arc<ChannelBus>,
    mut rx: tokio::sync::broadcast::Receiver<MediaEvent>,
    store: Arc<HlsStore>,
    cfg: HlsConfig,
    cancel: CancellationToken,
) {
    let name = channel.name.to_string();
    let mut writer = RenditionWriter::new(store.clone(), &name, SOURCE, 0, &cfg);
    let linger = Duration::from_secs(cfg.linger_seconds);
    let mut free_at: Option<tokio::time::Instant> = None;
    let mut live = false;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = async { tokio::time::sleep_until(free_at.unwrap_or_else(tokio::time::Instant::now)).await }, if free_at.is_some() => {
                free_at = None;
                store.remove(&name);
                info!("stream's playlists freed after the linger period");
                continue;
            }
            _ = cancel.cancelled() => {
                if channel.is_removed() {
                    store.remove(&name);
                } else if live {
                    writer.finish();
                    store.end(&name);
                }
                return;
            }
        };
        match ev {
            Ok(MediaEvent::Start { takeover }) => {
                free_at = None;
                live = true;
                writer.restart();
                debug!(takeover, "stream started");
            }
            Ok(MediaEvent::Info(info)) => writer.set_info(info),
            Ok(MediaEvent::Packet(pkt)) => writer.push(&pkt),
            Ok(MediaEvent::End) => {
                live = false;
                writer.finish();
                store.end(&name);
                free_at = Some(tokio::time::Instant::now() + linger);
            }
            Err(RecvError::Lagged(n)) => {
                warn!(
                    lost = n,
                    "segmenter fell behind; resuming at the next keyframe"
                );
                writer.restart();
                writer.set_info(channel.info());
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::av1::{tests::record, Av1Config};
    use crate::proto::media::{tests::info, Track, VideoConfig};

    fn writer(container: Container) -> (Arc<HlsStore>, RenditionWriter) {
        let store = Arc::new(HlsStore::new(StoreConfig {
            window: 6,
            segment_seconds: 2.0,
            container,
            part_seconds: 0.333,
        }));
        let cfg = HlsConfig {
            container,
            ..Default::default()
        };
        let w = RenditionWriter::new(store.clone(), "alice", SOURCE, 0, &cfg);
        (store, w)
    }

    fn run(w: &mut RenditionWriter) {
        for i in 0..200i64 {
            w.push(&MediaPacket {
                track: Track::Video,
                dts: i * 3000,
                pts: i * 3000,
                keyframe: i % 30 == 0,
                data: bytes::Bytes::from_static(&[0x32, 0x01, 0x00]),
            });
        }
    }

    /// AV1 has no MPEG-TS mapping that HLS players read: with `ts` the source rendition is left
    /// out (the ladder still plays); with `fmp4` it is passed through.
    #[test]
    fn av1_source_is_left_out_of_ts_only() {
        let mut av1 = info();
        av1.video = Some(Arc::new(VideoConfig::Av1(
            Av1Config::parse(record()).expect("av1"),
        )));
        let (store, mut w) = writer(Container::Ts);
        w.set_info(info());
        run(&mut w);
        assert_eq!(store.renditions("alice").len(), 1, "H.264 source listed");
        w.set_info(av1.clone());
        run(&mut w);
        assert!(store.renditions("alice").is_empty(), "AV1 source left out");
        w.set_info(info());
        run(&mut w);
        assert_eq!(store.renditions("alice").len(), 1, "H.264 again");

        let (store, mut w) = writer(Container::Fmp4);
        w.set_info(av1);
        run(&mut w);
        let r = store.renditions("alice");
        assert_eq!(r.len(), 1);
        assert!(r[0].codecs.starts_with("av01.0.00M.08"), "{}", r[0].codecs);
    }
}
