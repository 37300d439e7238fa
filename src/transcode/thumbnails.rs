//! Live thumbnails: one small task per channel watches its bus and, every
//! `thumbnail.interval_seconds`, hands the latest source keyframe to the channel's
//! [`ThumbnailMaker`] job on the transcode pool; the JPEGs are kept here, in memory, one per
//! channel. HTTP serves them (`/thumb/{channel}.jpg`), the watch page names them as its card
//! image, announcements attach them ([`Thumbnails::wait_since`]), and the recorder can take one
//! as a poster ([`Thumbnails::jpeg`]).
//!
//! The first thumbnail of a broadcast is made at its first keyframe, so a go-live post can
//! carry it within a second or two. The routing task never waits: a keyframe arriving while
//! the job is still busy is skipped (the next tick takes a newer one), and a task that lags
//! behind the bus simply waits for the next keyframe. A channel keeps its last thumbnail when
//! it goes offline (the card still shows the stream); one never seen live has none (404).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument};

use super::pool::Pool;
use super::thumbnail::{ThumbMsg, ThumbnailMaker};
use crate::bus::{ChannelBus, MediaEvent};
use crate::config::ThumbnailConfig;
use crate::proto::media::{MediaPacket, Track, VideoConfig};

/// One channel's latest thumbnail.
#[derive(Debug)]
pub struct Thumbnail {
    pub jpeg: Bytes,
    /// A strong validator: `"` + 16 hex digits of the JPEG's SHA-256 + `"`.
    pub etag: String,
    /// When its keyframe arrived.
    pub taken_at: DateTime<Utc>,
    pub width: u32,
    pub height: u32,
    /// Decode + scale + encode time of this one.
    pub cost: Duration,
}

/// Every channel's latest thumbnail, and the makers' counters.
pub struct Thumbnails {
    cfg: ThumbnailConfig,
    /// `None` when FFmpeg or the pool could not start: no thumbnails, every `/thumb` is 404.
    pool: Option<Arc<Pool>>,
    /// Std mutex: held only to clone or swap an `Arc`, never across an await.
    latest: Mutex<HashMap<String, Arc<Thumbnail>>>,
    /// Bumped on every new thumbnail, for [`Thumbnails::wait_since`].
    changed: watch::Sender<u64>,
    made: AtomicU64,
    /// Nanoseconds the makers spent, successful or not.
    busy_ns: AtomicU64,
}

impl Thumbnails {
    pub fn new(cfg: ThumbnailConfig, pool: Option<Arc<Pool>>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            pool,
            latest: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            made: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &ThumbnailConfig {
        &self.cfg
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Thumbnail>>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's latest thumbnail; `None` for a channel never seen live.
    pub fn latest(&self, channel: &str) -> Option<Arc<Thumbnail>> {
        self.map().get(channel).cloned()
    }

    /// The channel's latest JPEG (a reference, not a copy): the recorder's poster.
    pub fn jpeg(&self, channel: &str) -> Option<Bytes> {
        self.latest(channel).map(|t| t.jpeg.clone())
    }

    /// Keeps `jpeg` as the channel's thumbnail (the maker calls this; so can a test).
    pub fn put(
        &self,
        channel: &str,
        jpeg: Bytes,
        taken_at: DateTime<Utc>,
        width: u32,
        height: u32,
        cost: Duration,
    ) {
        let digest = Sha256::digest(&jpeg);
        let etag = format!(
            "\"{}\"",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let first = {
            let mut map = self.map();
            let first = !map.contains_key(channel);
            map.insert(
                channel.to_string(),
                Arc::new(Thumbnail {
                    jpeg,
                    etag,
                    taken_at,
                    width,
                    height,
                    cost,
                }),
            );
            first
        };
        self.made.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("onair_thumbnails_total").increment(1);
        metrics::histogram!("onair_thumbnail_seconds").record(cost.as_secs_f64());
        if first {
            info!(
                channel,
                cost_ms = cost.as_secs_f64() * 1e3,
                "first thumbnail"
            );
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Adds to the makers' busy time.
    pub(super) fn add_cost(&self, d: Duration) {
        self.busy_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Thumbnails made and the time the makers spent (failures included) since the start.
    pub fn stats(&self) -> (u64, Duration) {
        (
            self.made.load(Ordering::Relaxed),
            Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        )
    }

    /// The channel's thumbnail taken at or after `since`, waiting up to `within` for it (a
    /// go-live post waits for the broadcast's first picture); `None` if none comes in time.
    pub async fn wait_since(
        &self,
        channel: &str,
        since: DateTime<Utc>,
        within: Duration,
    ) -> Option<Arc<Thumbnail>> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = self.latest(channel).filter(|t| t.taken_at >= since) {
                return Some(t);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the sender is gone (never: we hold it).
                _ => return None,
            }
        }
    }

    /// Forgets a channel removed by a reload.
    pub fn remove(&self, channel: &str) {
        self.map().remove(channel);
    }

    /// Starts the channel's routing task (subscribed before this returns); nothing without a
    /// pool.
    pub fn start_channel(
        self: &Arc<Self>,
        channel: Arc<ChannelBus>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let Some(pool) = &self.pool else {
            return;
        };
        let rx = channel.subscribe();
        let job = pool.job(ThumbnailMaker::new(
            channel.name.to_string(),
            self.cfg.width,
            self.cfg.height(),
            self.clone(),
        ));
        let interval = Duration::from_secs(self.cfg.interval_seconds.max(1));
        tracker.spawn(route(channel, rx, job, interval, cancel));
    }
}

/// The latest keyframe of the current broadcast and whether it was already handed over.
#[derive(Default)]
struct Latest {
    config: Option<Arc<VideoConfig>>,
    keyframe: Option<(MediaPacket, DateTime<Utc>)>,
    sent: bool,
    /// This broadcast has had its first thumbnail request.
    started: bool,
}

#[instrument(skip_all, fields(channel = %channel.name))]
async fn route(
    channel: Arc<ChannelBus>,
    mut rx: tokio::sync::broadcast::Receiver<MediaEvent>,
    job: Arc<super::pool::Job<ThumbnailMaker>>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut st = Latest {
        config: channel.info().video,
        ..Latest::default()
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send = |st: &mut Latest| {
        let (Some(config), Some((packet, at))) = (&st.config, &st.keyframe) else {
            return;
        };
        if st.sent {
            return;
        }
        // The previous one is still being made: skip this keyframe, a newer one follows.
        if job.pending() > 0 {
            debug!("thumbnail maker busy; keyframe skipped");
            return;
        }
        job.send(
            ThumbMsg {
                config: config.clone(),
                packet: packet.clone(),
                taken_at: *at,
            },
            std::time::Instant::now(),
        );
        st.sent = true;
        st.started = true;
    };
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                send(&mut st);
                continue;
            }
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(MediaEvent::Start { takeover }) => {
                st = Latest {
                    // A takeover is the same show: no hurry for a new first picture.
                    started: takeover && st.started,
                    ..Latest::default()
                };
            }
            Ok(MediaEvent::Info(info)) => {
                if st.config != info.video {
                    st.keyframe = None;
                }
                st.config = info.video;
            }
            Ok(MediaEvent::Packet(pkt)) => {
                if pkt.track != Track::Video || !pkt.keyframe {
                    continue;
                }
                // The packet's payload is shared, not copied.
                st.keyframe = Some((pkt, Utc::now()));
                st.sent = false;
                if !st.started {
                    send(&mut st);
                }
            }
            Ok(MediaEvent::End) => {
                st.keyframe = None;
                st.started = false;
            }
            // Lost events: the next keyframe is as good as any.
            Err(RecvError::Lagged(_)) => st.config = channel.info().video,
            Err(RecvError::Closed) => break,
        }
    }
    job.close();
}
