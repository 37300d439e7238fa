//! The transcoder: an in-process worker pool that turns each live stream into the adaptive
//! ladder of `[transcode]`, next to the untouched `source` rendition.
//!
//! One async task per channel subscribes to the channel's bus (like the source segmenter) and
//! only routes: packets go to the stream's jobs on the [`pool::Pool`], which does all the CPU
//! work on its own threads. Per stream there is one video decoder job (decode once), one
//! encoder job per rendition (scale + libx264, keyframes forced on the source's) and one audio
//! job (AAC once per distinct bitrate). Encoded media reaches each rendition's
//! [`crate::hls::RenditionWriter`] through [`output::RenditionOut`], so renditions share the
//! segmenter, the store and the playlists with the source. A controller task applies
//! [`admission`] once a second; `/api/channels` shows what it shed via
//! [`Transcoder::degraded`].
//!
//! Ingest is never blocked: the bus is a broadcast, routing never waits, and a channel task
//! that lags resyncs at the next keyframe.

pub mod admission;
pub mod audio;
pub mod convert;
pub mod ladder;
pub mod opus_job;
pub mod output;
pub mod pool;
pub mod thumbnail;
pub mod thumbnails;
pub mod video;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use crate::bus::{ChannelBus, MediaEvent};
use crate::config::{HlsConfig, TranscodeConfig};
use crate::hls::HlsStore;
use crate::proto::media::{MediaPacket, StreamInfo, Track};
use admission::{Admission, Decision, RenditionLoad};
use audio::{AudioMsg, AudioTranscoder};
use ladder::Skipped;
use output::RenditionOut;
use pool::{Job, Pool};
use video::{DecodeMsg, EncodeMsg, JobStats, Slot, VideoDecoder, VideoEncoder};

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("{what}: {reason}")]
    Codec { what: &'static str, reason: String },
    #[error("cannot start transcode workers: {source}")]
    Threads { source: std::io::Error },
    #[error("libx264 is not available in this FFmpeg build")]
    NoX264,
}

/// A worker pool for browser-codec conversion when there is no transcoder (empty ladder);
/// `None` (logged) when FFmpeg or the threads cannot start.
pub fn conversion_pool(cfg: &TranscodeConfig) -> Option<Arc<Pool>> {
    if let Err(e) = ffmpeg::init() {
        warn!(error = %e, "FFmpeg unavailable: no browser-codec conversion");
        return None;
    }
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let workers = match cfg.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    match Pool::new(workers) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(error = %e, "no worker threads for browser-codec conversion");
            None
        }
    }
}

/// A live stream's pipeline, as the controller and the API see it.
struct StreamEntry {
    id: u64,
    started: Instant,
    slots: Vec<Arc<Slot>>,
    decoder: Arc<Job<VideoDecoder>>,
}

/// The transcoder, shared by the channel tasks, the controller and HTTP.
pub struct Transcoder {
    cfg: TranscodeConfig,
    hls: HlsConfig,
    store: Arc<HlsStore>,
    pool: Arc<Pool>,
    /// Live pipelines by channel. Std mutex: short lookups, never held across an await.
    streams: Mutex<HashMap<String, StreamEntry>>,
    /// Every channel with a routing task, to end their playlists at shutdown.
    channels: Mutex<Vec<String>>,
    /// Ladder renditions each live stream does not get (and why). Std mutex: short updates.
    skipped: Mutex<HashMap<String, Vec<Skipped>>>,
}

impl Transcoder {
    /// Starts the pool and the admission controller. `Ok(None)` when the ladder is empty
    /// (passthrough only: no threads at all).
    pub fn start(
        cfg: TranscodeConfig,
        hls: &HlsConfig,
        store: Arc<HlsStore>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<Transcoder>>, TranscodeError> {
        if cfg.ladder.is_empty() {
            return Ok(None);
        }
        ffmpeg::init().map_err(|e| TranscodeError::Codec {
            what: "ffmpeg init",
            reason: e.to_string(),
        })?;
        // libav* log to stderr on their own; only errors are worth a line there.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        if ffmpeg::encoder::find_by_name("libx264").is_none() {
            return Err(TranscodeError::NoX264);
        }
        let workers = match cfg.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let pool = Pool::new(workers).map_err(|source| TranscodeError::Threads { source })?;
        let t = Arc::new(Transcoder {
            cfg,
            hls: hls.clone(),
            store,
            pool,
            streams: Mutex::new(HashMap::new()),
            channels: Mutex::new(Vec::new()),
            skipped: Mutex::new(HashMap::new()),
        });
        info!(workers, renditions = t.cfg.ladder.len(), "transcoder ready");
        tracker.spawn(t.clone().controller(cancel));
        Ok(Some(t))
    }

    /// The worker pool (browser-codec conversions share it with the ladder).
    pub fn pool(&self) -> Arc<Pool> {
        self.pool.clone()
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, StreamEntry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renditions of a channel's live stream that admission control has shed.
    pub fn degraded(&self, channel: &str) -> Vec<String> {
        self.streams()
            .get(channel)
            .map(|s| {
                s.slots
                    .iter()
                    .filter(|sl| !sl.active.load(Ordering::Acquire))
                    .map(|sl| sl.plan.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ladder renditions the channel's live stream does not get because the source already
    /// serves their viewers (as tall, or fewer bits than the rendition would have); the source
    /// rendition is listed in their place.
    pub fn skipped(&self, channel: &str) -> Vec<Skipped> {
        self.skipped_map().get(channel).cloned().unwrap_or_default()
    }

    fn skipped_map(&self) -> MutexGuard<'_, HashMap<String, Vec<Skipped>>> {
        self.skipped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each rendition of a channel's live stream with how far its encoder is behind (the age of
    /// the oldest frame waiting for it) and whether it is shed; the decoder's lag as `decode`.
    pub fn lags(&self, channel: &str) -> Vec<(String, Duration, bool)> {
        let streams = self.streams();
        let Some(s) = streams.get(channel) else {
            return Vec::new();
        };
        let mut out = vec![("decode".to_string(), s.decoder.lag(), false)];
        out.extend(s.slots.iter().map(|sl| {
            (
                sl.plan.name.clone(),
                sl.job.lag(),
                !sl.active.load(Ordering::Acquire),
            )
        }));
        out
    }

    /// Starts the channel's routing task.
    pub fn start_channel(
        self: &Arc<Self>,
        channel: Arc<ChannelBus>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let rx = channel.subscribe();
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(channel.name.to_string());
        tracker.spawn(self.clone().channel_task(channel, rx, cancel));
    }

    #[instrument(skip_all, fields(channel = %channel.name))]
    async fn channel_task(
        self: Arc<Self>,
        channel: Arc<ChannelBus>,
        mut rx: tokio::sync::broadcast::Receiver<MediaEvent>,
        cancel: CancellationToken,
    ) {
        let name = channel.name.to_string();
        let mut info = StreamInfo::default();
        let mut pipe: Option<Pipeline> = None;
        // Set when this stream's source is too small for every rendition (or unusable), so
        // that the plan is not redone on every keyframe.
        let mut nothing_to_do = false;
        // Until the pipeline exists: the source's bitrate and frame rate being measured, and
        // the packets since the first keyframe, handed to the pipeline once it is planned (so
        // the renditions still start at that keyframe). Bounded by the meter's longest span.
        let mut fps = ladder::FpsEstimator::default();
        let mut meter = ladder::SourceMeter::default();
        let mut held: Vec<MediaPacket> = Vec::new();
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = cancel.cancelled() => {
                    if let Some(p) = pipe.take() {
                        self.stop(&name, p, true);
                    }
                    return;
                }
            };
            match ev {
                Ok(MediaEvent::Start { takeover }) => {
                    debug!(takeover, "stream started");
                    if let Some(p) = pipe.take() {
                        self.stop(&name, p, false);
                    }
                    info = StreamInfo::default();
                    nothing_to_do = false;
                    fps = Default::default();
                    meter = Default::default();
                    held.clear();
                }
                Ok(MediaEvent::Info(new)) => {
                    // A resolution or codec change restarts the encoders; the new pipeline's
                    // writers mark the discontinuity.
                    if pipe.as_ref().is_some_and(|p| p.info != new) {
                        info!("stream configuration changed; restarting the encoders");
                        if let Some(p) = pipe.take() {
                            self.stop(&name, p, false);
                        }
                    }
                    if info != new {
                        nothing_to_do = false;
                        // Held packets may not decode with the new configuration.
                        meter = Default::default();
                        held.clear();
                    }
                    info = new;
                }
                Ok(MediaEvent::Packet(pkt)) => {
                    if let Some(p) = &pipe {
                        p.route(pkt, Instant::now());
                        continue;
                    }
                    if nothing_to_do {
                        continue;
                    }
                    let mut kbps = None;
                    if pkt.track == Track::Video {
                        fps.push(pkt.dts);
                        kbps = meter.push(pkt.dts, pkt.keyframe, pkt.data.len());
                    }
                    if !meter.started() {
                        continue;
                    }
                    held.push(pkt);
                    // Without a frame rate in the SPS, wait for enough timestamps to measure
                    // it rather than guess.
                    let rate = info
                        .video
                        .as_ref()
                        .and_then(|v| v.fps())
                        .or_else(|| fps.estimate());
                    match (kbps, rate) {
                        (Some(kbps), Some(rate)) => {
                            pipe = self.build(&name, &info, rate, kbps);
                            nothing_to_do = pipe.is_none();
                            let now = Instant::now();
                            for pkt in held.drain(..) {
                                if let Some(p) = &pipe {
                                    p.route(pkt, now);
                                }
                            }
                            held.shrink_to(0);
                        }
                        // A source too sparse to measure its frame rate: start over.
                        _ if held.len() > HELD_MAX => {
                            meter = Default::default();
                            held.clear();
                        }
                        _ => {}
                    }
                }
                Ok(MediaEvent::End) => {
                    if let Some(p) = pipe.take() {
                        self.stop(&name, p, true);
                    }
                    self.skipped_map().remove(&name);
                    info = StreamInfo::default();
                    meter = Default::default();
                    held.clear();
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(
                        lost = n,
                        "transcoder input fell behind; resuming at the next keyframe"
                    );
                    info = channel.info();
                    // The lost events may have held a configuration change.
                    if pipe.as_ref().is_some_and(|p| p.info != info) {
                        if let Some(p) = pipe.take() {
                            self.stop(&name, p, false);
                        }
                    }
                    if let Some(p) = &pipe {
                        let now = Instant::now();
                        p.decoder.send(DecodeMsg::Resync, now);
                        if let Some(a) = &p.audio {
                            a.send(AudioMsg::Resync, now);
                        }
                    } else {
                        meter = Default::default();
                        held.clear();
                    }
                }
                Err(RecvError::Closed) => {
                    if let Some(p) = pipe.take() {
                        self.stop(&name, p, true);
                    }
                    return;
                }
            }
        }
    }

    /// Plans and starts a stream's jobs for a source of `video_kbps`; `None` when no
    /// rendition applies.
    fn build(
        &self,
        channel: &str,
        info: &StreamInfo,
        fps: f64,
        video_kbps: u32,
    ) -> Option<Pipeline> {
        let video = info.video.clone()?;
        let (plans, skipped) = ladder::plan(
            &self.cfg.ladder,
            video.codec(),
            video.width(),
            video.height(),
            fps,
            Some(video_kbps),
        );
        // Renditions a previous stream had but this one does not get must not stay listed.
        for s in &skipped {
            self.store.remove_rendition(channel, &s.name);
        }
        let skipped_names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
        if plans.is_empty() {
            info!(
                source = format!("{}x{}", video.width(), video.height()),
                source_video_kbps = video_kbps,
                skipped = ?skipped_names,
                "the source already serves every rendition's viewers; passthrough only"
            );
            self.skipped_map().insert(channel.to_string(), skipped);
            return None;
        }
        let audio_cfg = info.audio.clone();
        let mut slots = Vec::with_capacity(plans.len());
        let mut audio_outs = Vec::new();
        for plan in plans {
            let out = RenditionOut::new(
                self.store.clone(),
                channel,
                &plan.name,
                plan.order,
                &self.hls,
                audio_cfg.clone(),
            );
            audio_outs.push((plan.audio_kbps, out.clone()));
            let stats = Arc::new(JobStats::default());
            let job = self
                .pool
                .job(VideoEncoder::new(plan.clone(), out.clone(), stats.clone()));
            slots.push(Arc::new(Slot {
                plan,
                active: true.into(),
                job,
                out,
                stats,
            }));
        }
        let decoder_stats = Arc::new(JobStats::default());
        let decoder = self.pool.job(VideoDecoder::new(
            video.clone(),
            slots.clone(),
            decoder_stats,
        ));
        // Audio is cheap and holds segments back when late: ahead of the video batches.
        let audio = audio_cfg.map(|cfg| {
            self.pool.light_job(AudioTranscoder::new(
                cfg,
                audio_outs,
                Arc::new(JobStats::default()),
            ))
        });
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        info!(
            source = format!("{}x{}", video.width(), video.height()),
            source_video_kbps = video_kbps,
            renditions = ?slots.iter().map(|s| format!("{}:{}x{}", s.plan.name, s.plan.width, s.plan.height)).collect::<Vec<_>>(),
            skipped = ?skipped_names,
            "transcoding"
        );
        self.skipped_map().insert(channel.to_string(), skipped);
        self.streams().insert(
            channel.to_string(),
            StreamEntry {
                id,
                started: Instant::now(),
                slots: slots.clone(),
                decoder: decoder.clone(),
            },
        );
        Some(Pipeline {
            info: info.clone(),
            decoder,
            audio,
            slots,
        })
    }

    /// Stops a pipeline and forgets it. At the end of a stream (`end`) its jobs drain on the
    /// pool so the last segments and ENDLIST are written; when a new pipeline replaces it, its
    /// outputs are detached at once and its backlog dropped.
    fn stop(&self, channel: &str, p: Pipeline, end: bool) {
        let now = Instant::now();
        if !end {
            for s in &p.slots {
                output::lock(&s.out).detach();
                s.job.discard(|m| !matches!(m, EncodeMsg::Frame(_)));
            }
            p.decoder.discard(|m| !matches!(m, DecodeMsg::Packet(..)));
            if let Some(a) = &p.audio {
                a.discard(|m| !matches!(m, AudioMsg::Packet(_)));
            }
        }
        p.decoder.send(DecodeMsg::Finish { end }, now);
        p.decoder.close();
        if let Some(a) = &p.audio {
            a.send(AudioMsg::Finish { end }, now);
            a.close();
        }
        let mut streams = self.streams();
        if streams
            .get(channel)
            .is_some_and(|s| Arc::ptr_eq(&s.decoder, &p.decoder))
        {
            streams.remove(channel);
        }
    }

    /// Once a second: measure, decide, act.
    async fn controller(self: Arc<Self>, cancel: CancellationToken) {
        let max_lag = Duration::from_secs_f64(self.cfg.max_lag_seconds);
        let mut admission = Admission::new(max_lag, self.pool.size());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_busy = self.pool.busy();
        let mut last_at = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => break,
            }
            let now = Instant::now();
            let busy = self.pool.busy();
            let wall = now.duration_since(last_at).as_secs_f64().max(0.001);
            let utilisation =
                ((busy - last_busy).as_secs_f64() / (wall * self.pool.size() as f64)).min(1.0);
            last_busy = busy;
            last_at = now;
            let (loads, slots) = self.snapshot();
            match admission.decide(now, &loads, utilisation) {
                Decision::Nothing => {}
                Decision::Shed((id, name)) => {
                    if let Some((channel, slot)) = slots.get(&(id, name.clone())) {
                        let lag = loads
                            .iter()
                            .filter(|l| l.active)
                            .map(|l| l.lag)
                            .max()
                            .unwrap_or_default();
                        warn!(
                            channel = %channel,
                            rendition = %name,
                            lag_seconds = format!("{:.1}", lag.as_secs_f64()),
                            utilisation = format!("{utilisation:.2}"),
                            "transcode pool cannot keep real time; rendition shed"
                        );
                        slot.active.store(false, Ordering::Release);
                        slot.job.discard(|m| !matches!(m, EncodeMsg::Frame(_)));
                        slot.job.send(EncodeMsg::Shed, now);
                    }
                }
                Decision::Restore((id, name)) => {
                    if let Some((channel, slot)) = slots.get(&(id, name.clone())) {
                        info!(channel = %channel, rendition = %name, "transcode load fell; rendition restored");
                        slot.job.send(EncodeMsg::Restore, now);
                        slot.active.store(true, Ordering::Release);
                    }
                }
            }
        }
        let pool = self.pool.clone();
        // Joining threads blocks: not on the runtime.
        let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
        // Whatever the workers did not get to drain still ends its playlists.
        let channels = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for channel in channels {
            for r in &self.cfg.ladder {
                self.store.end_rendition(&channel, &r.name);
            }
        }
    }

    /// Every rendition's load, and where to find its slot.
    #[allow(clippy::type_complexity)]
    fn snapshot(
        &self,
    ) -> (
        Vec<RenditionLoad>,
        HashMap<(u64, String), (String, Arc<Slot>)>,
    ) {
        let streams = self.streams();
        let mut loads = Vec::new();
        let mut slots = HashMap::new();
        for (channel, s) in streams.iter() {
            let decoder_lag = s.decoder.lag();
            for slot in &s.slots {
                let frames = slot.stats.frames.load(Ordering::Relaxed);
                let busy = slot.stats.busy_ns.load(Ordering::Relaxed);
                let cores =
                    (frames >= 30).then(|| busy as f64 / 1e9 / frames as f64 * slot.plan.fps);
                loads.push(RenditionLoad {
                    stream: s.id,
                    stream_started: s.started,
                    name: slot.plan.name.clone(),
                    cost: slot.plan.cost(),
                    active: slot.active.load(Ordering::Acquire),
                    lag: slot.job.lag().max(decoder_lag),
                    cores,
                });
                slots.insert(
                    (s.id, slot.plan.name.clone()),
                    (channel.clone(), slot.clone()),
                );
            }
        }
        (loads, slots)
    }
}

/// Packets a channel task holds at most while it measures the source (4 s of 60 fps video and
/// its audio is well below; only a source whose frame rate cannot be measured reaches it).
const HELD_MAX: usize = 2_000;

/// What the channel task holds for a live stream.
struct Pipeline {
    info: StreamInfo,
    decoder: Arc<Job<VideoDecoder>>,
    audio: Option<Arc<Job<AudioTranscoder>>>,
    slots: Vec<Arc<Slot>>,
}

impl Pipeline {
    /// Hands a source packet to its job.
    fn route(&self, pkt: MediaPacket, now: Instant) {
        match pkt.track {
            Track::Video => self.decoder.send(DecodeMsg::Packet(pkt, now), now),
            Track::Audio => {
                if let Some(a) = &self.audio {
                    a.send(AudioMsg::Packet(pkt), now);
                }
            }
        }
    }
}
