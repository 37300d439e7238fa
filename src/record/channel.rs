//! One channel's recorder task: the channel's bus media in, fMP4 segments of the `source`
//! rendition out to the recording's disk task ([`super::disk`]).
//!
//! It segments with the same pure `hls::segmenter` as the live path (one fragment per
//! segment: no low-latency parts), so the recording holds exactly the publisher's frames. Every
//! hand-off is a `try_send` on a bounded channel: if the disk falls `record.queue_segments`
//! behind, the recording is given up for this broadcast (logged, `onair_record_dropped_total`)
//! and the live stream never waits. A publisher back within `announce.grace_seconds` of the
//! end continues the same recording; its first segment is a discontinuity. A takeover (a new
//! publisher while live) continues it too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use super::disk::{self, DiskJob, Meta};
use super::renditions::{Sink, TapState};
use super::{LiveClock, Recorder, SOURCE};
use crate::bus::{ChannelBus, MediaEvent};
use crate::config::Container;
use crate::db::recordings::SegmentRow;
use crate::hls::segmenter::{Segment, Segmenter, Step};
use crate::proto::media::{StreamInfo, TIMESCALE};

/// A recording this task is making (or may continue within the grace period).
struct Active {
    id: String,
    jobs: Option<mpsc::Sender<DiskJob>>,
    disk: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    /// Next segment number.
    seq: i64,
    /// Source media written so far, 90 kHz.
    media: i64,
    /// The init segment file of the segmenter's current init id, once written.
    init: Option<(u32, String)>,
    /// Wall clock of a DTS of this session (PROGRAM-DATE-TIME); reset per session.
    anchor: Option<(i64, DateTime<Utc>)>,
    /// When it ended (None while live).
    ended: Option<Instant>,
    /// The transcoded renditions' numbering (`record.renditions = "all"`).
    taps: Arc<Mutex<HashMap<String, TapState>>>,
    /// When it began.
    started: DateTime<Utc>,
    /// Its poster was handed to the disk task ([`super::poster`]).
    poster: Arc<AtomicBool>,
}

impl Active {
    fn sink(&self) -> Option<Sink> {
        Some(Sink {
            jobs: self.jobs.clone()?,
            failed: self.failed.clone(),
            state: self.taps.clone(),
        })
    }
}

struct Task {
    rec: Arc<Recorder>,
    channel: String,
    segmenter: Segmenter,
    /// The segmenter's last init segments (id, bytes): a segment closed by a configuration
    /// change still needs the one before.
    inits: Vec<(u32, Bytes)>,
    active: Option<Active>,
    /// Set while a broadcast is on but its recording was given up: nothing is sent until the
    /// broadcast ends.
    gave_up: bool,
    /// The task's own (shutdown, channel removed): ends its poster waiters too.
    cancel: CancellationToken,
}

/// Runs until `cancel` (shutdown, channel removed) or the bus closes.
#[instrument(skip_all, fields(channel = %bus.name))]
pub async fn run(
    rec: Arc<Recorder>,
    bus: Arc<ChannelBus>,
    mut rx: broadcast::Receiver<MediaEvent>,
    cancel: CancellationToken,
) {
    // One fragment per segment: parts only matter to live players.
    let seconds = rec.segment_seconds;
    let mut t = Task {
        channel: bus.name.to_string(),
        segmenter: Segmenter::new(Container::Fmp4, seconds, seconds * 1000.0),
        rec,
        inits: Vec::new(),
        active: None,
        gave_up: false,
        cancel: cancel.clone(),
    };
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = cancel.cancelled() => {
                t.end();
                t.close();
                return;
            }
        };
        match ev {
            Ok(MediaEvent::Start { takeover }) => t.start(takeover),
            Ok(MediaEvent::Info(info)) => t.info(info),
            Ok(MediaEvent::Packet(pkt)) => {
                let step = t.segmenter.push(&pkt);
                t.step(step);
            }
            Ok(MediaEvent::End) => t.end(),
            Err(RecvError::Lagged(n)) => {
                warn!(
                    lost = n,
                    "recorder fell behind the bus; resuming at the next keyframe"
                );
                let step = t.segmenter.restart();
                t.step(step);
                t.info(bus.info());
            }
            Err(RecvError::Closed) => {
                t.end();
                t.close();
                return;
            }
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Task {
    fn start(&mut self, takeover: bool) {
        let step = self.segmenter.restart();
        self.step(step);
        if takeover && self.active.as_ref().is_some_and(|a| a.ended.is_none()) {
            debug!("takeover: the recording goes on with a discontinuity");
            if let Some(a) = self.active.as_mut() {
                a.anchor = None;
            }
            self.clock();
            return;
        }
        self.gave_up = false;
        let grace = self.rec.grace;
        let resumable = self.active.as_ref().is_some_and(|a| {
            !a.failed.load(Ordering::Acquire) && a.ended.is_some_and(|e| e.elapsed() <= grace)
        });
        if resumable {
            let a = self.active.as_mut().expect("checked");
            let (tx, rx) = mpsc::channel(self.rec.cfg.queue_segments);
            let failed = Arc::new(AtomicBool::new(false));
            let prev = a.disk.take();
            let _ = tx.try_send(DiskJob::Resume);
            let disk = self.rec.tracker.spawn(disk::run(
                self.rec.clone(),
                self.channel.clone(),
                a.id.clone(),
                rx,
                prev,
                failed.clone(),
            ));
            let weak = tx.downgrade();
            a.jobs = Some(tx);
            a.disk = Some(disk);
            a.failed = failed;
            a.ended = None;
            a.anchor = None;
            self.rec.set_sink(&self.channel, a.sink());
            // The init segment is written again if it changed; the same one is reused.
            info!(recording = %a.id, "broadcaster back within announce.grace_seconds: the recording goes on");
            if !a.poster.load(Ordering::Acquire) {
                super::poster::spawn(
                    &self.rec,
                    &self.channel,
                    a.started,
                    weak,
                    a.poster.clone(),
                    self.cancel.clone(),
                );
            }
            self.clock();
            self.rec.sync_pin(&self.channel);
            return;
        }
        self.begin();
    }

    /// A new recording.
    fn begin(&mut self) {
        let now = Utc::now();
        let mut id = now.format("%Y%m%dT%H%M%SZ").to_string();
        let mut n = 1;
        while self.rec.dir(&self.channel, &id).exists() {
            n += 1;
            id = format!("{}-{n}", now.format("%Y%m%dT%H%M%SZ"));
        }
        let (tx, rx) = mpsc::channel(self.rec.cfg.queue_segments);
        let failed = Arc::new(AtomicBool::new(false));
        let meta = Meta {
            channel: self.channel.clone(),
            id: id.clone(),
            started_at: rfc3339(now),
            title: self.rec.title(&self.channel),
        };
        let _ = tx.try_send(DiskJob::Begin(meta));
        // The previous recording's task (ended, grace over) is left to finish on its own.
        let disk = self.rec.tracker.spawn(disk::run(
            self.rec.clone(),
            self.channel.clone(),
            id.clone(),
            rx,
            None,
            failed.clone(),
        ));
        info!(recording = %id, "recording started");
        let poster = Arc::new(AtomicBool::new(false));
        super::poster::spawn(
            &self.rec,
            &self.channel,
            now,
            tx.downgrade(),
            poster.clone(),
            self.cancel.clone(),
        );
        let active = Active {
            id,
            jobs: Some(tx),
            disk: Some(disk),
            failed,
            seq: 1,
            media: 0,
            init: None,
            anchor: None,
            ended: None,
            taps: Arc::default(),
            started: now,
            poster,
        };
        self.rec.set_sink(&self.channel, active.sink());
        self.active = Some(active);
        // A configuration that came before the start is written with the first segment; a
        // question pinned before it is logged once the recording is listed.
        self.clock();
    }

    fn info(&mut self, info: StreamInfo) {
        let step = self.segmenter.set_info(info);
        self.step(step);
        if let Some((id, data)) = self.segmenter.init() {
            if self.inits.last().map(|i| i.0) != Some(id) {
                self.inits.push((id, data));
                if self.inits.len() > 2 {
                    self.inits.remove(0);
                }
            }
        }
    }

    /// The broadcast ended (or the server stops): the open segment is written, the disk task
    /// finishes what is queued and marks the recording ended.
    fn end(&mut self) {
        let step = self.segmenter.flush();
        self.step(step);
        self.gave_up = false;
        if let Some(a) = self.active.as_mut() {
            if a.ended.is_none() {
                a.ended = Some(Instant::now());
                a.jobs = None;
                info!(recording = %a.id, seconds = a.media / TIMESCALE, "recording ended");
            }
        }
        self.rec.set_live(&self.channel, None);
        self.rec.set_sink(&self.channel, None);
    }

    fn close(&mut self) {
        if let Some(a) = self.active.as_mut() {
            a.jobs = None;
        }
        self.rec.set_sink(&self.channel, None);
    }

    /// The chat log's clock: media written so far, as of now.
    fn clock(&self) {
        let Some(a) = self.active.as_ref().filter(|a| a.ended.is_none()) else {
            return;
        };
        self.rec.set_live(
            &self.channel,
            Some(LiveClock {
                id: a.id.clone(),
                anchor: Instant::now(),
                media_ms: a.media * 1000 / TIMESCALE,
                max_ahead_ms: (self.rec.segment_seconds * 4000.0) as i64 + 30_000,
            }),
        );
    }

    fn step(&mut self, step: Step) {
        if let Some(seg) = step.segment {
            self.segment(seg);
        }
    }

    /// Gives the recording up: the disk cannot keep up.
    /// `why` is logged and counted, unless whoever failed it already did (`None`).
    fn give_up(&mut self, why: Option<&'static str>) {
        if let Some(a) = self.active.as_mut() {
            if let Some(why) = why {
                warn!(recording = %a.id, reason = why, "recording dropped: the disk is not keeping up (the live stream goes on)");
                metrics::counter!("onair_record_dropped_total", "reason" => why).increment(1);
            }
            a.jobs = None;
            a.failed.store(true, Ordering::Release);
            a.ended = Some(Instant::now());
        }
        self.gave_up = true;
        self.rec.set_live(&self.channel, None);
        self.rec.set_sink(&self.channel, None);
    }

    fn send(&mut self, job: DiskJob) -> bool {
        let Some(tx) = self.active.as_ref().and_then(|a| a.jobs.as_ref()) else {
            return false;
        };
        match tx.try_send(job) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.give_up(Some("queue_full"));
                false
            }
            // The disk task stopped on a write error (it said why).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.give_up(None);
                false
            }
        }
    }

    fn segment(&mut self, seg: Segment) {
        if self.gave_up {
            return;
        }
        let Some(a) = self.active.as_mut().filter(|a| a.ended.is_none()) else {
            return;
        };
        if a.failed.load(Ordering::Acquire) {
            // A transcoded rendition's segment found the queue full, or the disk task failed
            // (each said so).
            self.give_up(None);
            return;
        }
        // The init segment this one needs, written first when new.
        let known = self.inits.iter().find(|(id, _)| *id == seg.init_id);
        let init_job = match (&a.init, known) {
            (Some((id, _)), _) if *id == seg.init_id => None,
            (_, Some((id, data))) => {
                let file = format!("init-{id}.mp4");
                a.init = Some((*id, file.clone()));
                Some(DiskJob::Init {
                    rendition: SOURCE.to_string(),
                    file,
                    data: data.clone(),
                })
            }
            _ => return,
        };
        let Some((_, init)) = a.init.clone() else {
            return;
        };
        if seg.discontinuity {
            a.anchor = None;
        }
        let (anchor_dts, anchor_time) = *a.anchor.get_or_insert_with(|| {
            (
                seg.start,
                Utc::now() - chrono::Duration::milliseconds(seg.duration * 1000 / TIMESCALE),
            )
        });
        let pdt = anchor_time
            + chrono::Duration::milliseconds((seg.start - anchor_dts) * 1000 / TIMESCALE);
        let first = a.seq == 1;
        let row = SegmentRow {
            rendition: SOURCE.to_string(),
            seq: a.seq,
            file: format!("{:06}.m4s", a.seq),
            init,
            duration: seg.duration,
            program_time: rfc3339(pdt),
            // The first segment of a recording starts its timeline: nothing to break.
            discontinuity: seg.discontinuity && !first,
            bytes: seg.data.len() as i64,
            codecs: seg.info.codecs(),
            resolution: seg
                .info
                .video
                .as_ref()
                .map(|v| format!("{}x{}", v.width(), v.height()))
                .unwrap_or_default(),
        };
        a.seq += 1;
        a.media += seg.duration;
        if let Some(job) = init_job {
            if !self.send(job) {
                return;
            }
        }
        if self.send(DiskJob::Segment {
            row,
            data: seg.data,
        }) {
            self.clock();
        }
    }
}
