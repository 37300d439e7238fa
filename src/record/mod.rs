//! Recordings: every broadcast written to disk as it happens, served again as HLS (VOD) with
//! its chat.
//!
//! **Who talks to it.** `lib.rs` starts the [`Recorder`] (after the database, before ingest)
//! and calls [`Recorder::start_channel`] for each channel, which subscribes to the channel's
//! bus like the HLS segmenter does; `http::chat` and `http::admin` tell it about chat messages
//! ([`Recorder::chat_posted`], [`Recorder::chat_deleted`]); `http::vod` reads the index through
//! `db::recordings` and the files through [`Recorder::file_path`], and deletes through
//! [`Recorder::delete`].
//!
//! **The path.** One task per channel ([`channel`]) turns bus media into fMP4 segments of the
//! `source` rendition (the shared pure `hls::segmenter`, one fragment per segment, no
//! re-encoding) and hands them to the recording's disk task ([`disk`]) through a bounded
//! channel with `try_send`: the live path never waits for the disk. A full queue (a slow or
//! full disk) or a write error ends that recording with a log line and a metric
//! (`onair_record_dropped_total`); viewers never notice. The disk task writes each segment,
//! fsyncs it, appends its line to the rendition's `segments.log` (fsynced too) and only then
//! lists it in the database, so everything listed survives a crash. At start [`index`]
//! rebuilds the index from those files. [`retention`] deletes by age and by total size,
//! oldest first. [`chatlog`] keeps the chat with each message's media time, and the pinned
//! question's changes (`pins.rs`, told by the debate). `poster.rs` keeps the show's first live
//! thumbnail as the recording's poster. [`Recorder::replay_of`] tells the announcer which
//! recording a show made (`announce.replay_post`).
//!
//! **On disk.** `{storage.data_dir}/recordings/{channel}/{id}/`: `meta.json`, and per
//! rendition a directory with `init-N.mp4`, `000001.m4s`, ... and `segments.log`. A poster
//! image `poster.jpg` there (the show's first live thumbnail) is served with the recording.

pub mod channel;
pub mod chatlog;
pub mod disk;
pub mod index;
mod pins;
pub mod playlist;
mod poster;
pub mod renditions;
pub mod retention;
pub mod store;
pub mod upload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bus::ChannelBus;
use crate::chat::ChatMessage;
use crate::config::{Config, RecordConfig};
use crate::db::{self, Db, DbError};
use crate::transcode::thumbnails::Thumbnails;

/// The rendition every recording has.
pub const SOURCE: &str = crate::hls::SOURCE;
/// Chat messages waiting for the database before new ones are dropped from the log.
const CHAT_QUEUE: usize = 1024;
/// How often retention runs besides at start and after each recording.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// A recording that began this long before its show went live (clocks read a moment apart)
/// is still that show's ([`Recorder::replay_of`]).
const SHOW_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// Why a recording operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no such recording")]
    NotFound,
    #[error("the recording is still being made; end the broadcast first")]
    Live,
    #[error("recording files at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The media clock of a recording being made, for the chat log's offsets.
#[derive(Debug, Clone)]
pub struct LiveClock {
    pub id: String,
    /// When the media at `media_ms` was current.
    pub anchor: Instant,
    pub media_ms: i64,
    /// Most the clock runs ahead of `media_ms` (a stalled stream does not push chat past it).
    pub max_ahead_ms: i64,
}

impl LiveClock {
    /// Media time of now.
    pub fn now_ms(&self) -> i64 {
        let ahead = (self.anchor.elapsed().as_millis() as i64).min(self.max_ahead_ms);
        self.media_ms + ahead
    }
}

/// The recorder: shared by the channel tasks, HTTP and retention.
pub struct Recorder {
    pub cfg: RecordConfig,
    /// `{storage.data_dir}/recordings`.
    root: PathBuf,
    pub db: Db,
    /// `announce.grace_seconds`: a reconnect within it continues the same recording.
    grace: Duration,
    segment_seconds: f64,
    /// `channels[].title` by channel, stored with each recording.
    titles: Mutex<HashMap<String, String>>,
    /// The recording being made per channel. Std mutex: looked up and replaced in short
    /// sections, never held across an await.
    live: Mutex<HashMap<String, LiveClock>>,
    /// Where each recorded channel's transcoded segments go (`record.renditions = "all"`).
    /// Std mutex: looked up per segment on transcode workers, never held across an await.
    sinks: Mutex<HashMap<String, renditions::Sink>>,
    chat: mpsc::Sender<chatlog::Item>,
    /// Each channel's pinned question and what its recording's log says. Std mutex: map
    /// updates only, never held across an await.
    pins: Mutex<pins::Pins>,
    /// Each channel's latest recording (id, start) once it is in the index, for
    /// [`Recorder::replay_of`]. Std mutex: short sections.
    shows: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    /// Where posters come from (set once at start; no thumbnails, no posters).
    thumbnails: OnceLock<Arc<Thumbnails>>,
    /// Wakes retention (a recording ended).
    sweep: Notify,
    tracker: TaskTracker,
    /// The object store uploader, when `record.object_store_url` is set.
    pub uploader: Option<Arc<upload::Uploader>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a holder panicked mid-update of plain maps.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// Rebuilds the index from the files, then starts the chat log and retention tasks.
    pub async fn start(
        cfg: &Config,
        db: Db,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Recorder> {
        let root = cfg.storage.data_dir.join("recordings");
        match index::rebuild(&root, &db).await {
            Ok(report) => info!(
                recordings = report.recordings,
                segments_added = report.segments_added,
                removed = report.removed,
                "recordings index checked against the files"
            ),
            Err(e) => warn!(error = %e, "recordings index not rebuilt"),
        }
        let (chat_tx, chat_rx) = mpsc::channel(CHAT_QUEUE);
        let grace = Duration::from_secs(cfg.announce.grace_seconds);
        let uploader = match store::RecordStore::from_config(&cfg.record) {
            Ok(Some(s)) => Some(upload::Uploader::start(
                s,
                root.clone(),
                &cfg.record,
                grace,
                tracker,
                cancel.clone(),
            )),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "object store not set up: recordings stay on local disk only");
                None
            }
        };
        let titles = cfg
            .channels
            .iter()
            .filter_map(|c| c.title.clone().map(|t| (c.name.clone(), t)))
            .collect();
        let rec = Arc::new(Recorder {
            cfg: cfg.record.clone(),
            root,
            db: db.clone(),
            grace,
            segment_seconds: cfg.hls.segment_seconds,
            titles: Mutex::new(titles),
            live: Mutex::new(HashMap::new()),
            sinks: Mutex::new(HashMap::new()),
            chat: chat_tx,
            pins: Mutex::default(),
            shows: Mutex::default(),
            thumbnails: OnceLock::new(),
            sweep: Notify::new(),
            tracker: tracker.clone(),
            uploader,
        });
        if let Some(u) = &rec.uploader {
            u.set_recorder(&rec);
        }
        tracker.spawn(chatlog::run(db, chat_rx, cancel.clone()));
        tracker.spawn(retention::run(rec.clone(), cancel));
        if !rec.cfg.enabled {
            info!("record.enabled = false: broadcasts are not recorded");
        }
        rec
    }

    /// Takes the live thumbnails, for the recordings' posters (before channels start).
    pub fn set_thumbnails(&self, t: Arc<Thumbnails>) {
        let _ = self.thumbnails.set(t);
    }

    /// The recording the show of `channel` that went live at `live_since` made, once it is in
    /// the index (a reconnect within the grace continues it; nothing when the show was not
    /// recorded). For the end-of-show post; never waits.
    pub fn replay_of(&self, channel: &str, live_since: DateTime<Utc>) -> Option<String> {
        lock(&self.shows)
            .get(channel)
            .filter(|(_, started)| *started >= live_since - SHOW_SLACK)
            .map(|(id, _)| id.clone())
    }

    /// A recording is in the index (its disk task wrote its row).
    pub(crate) fn listed(&self, channel: &str, id: &str, started_at: &str) {
        let Ok(started) = DateTime::parse_from_rfc3339(started_at) else {
            return;
        };
        lock(&self.shows).insert(
            channel.to_string(),
            (id.to_string(), started.with_timezone(&Utc)),
        );
        // A question pinned before the show is on screen from its start.
        self.sync_pin(channel);
    }

    /// Records the ladder's renditions too, when `record.renditions = "all"`.
    pub fn record_renditions(self: &Arc<Self>, store: &crate::hls::HlsStore) {
        renditions::install(self, store);
    }

    /// Starts recording a channel's broadcasts (when `record.enabled`). Subscribes before it
    /// returns, so nothing published afterwards is missed.
    pub fn start_channel(self: &Arc<Self>, bus: Arc<ChannelBus>, cancel: CancellationToken) {
        if !self.cfg.enabled {
            return;
        }
        let rx = bus.subscribe();
        self.tracker
            .spawn(channel::run(self.clone(), bus, rx, cancel));
    }

    /// New titles after a reload.
    pub fn set_titles(&self, channels: &[crate::config::ChannelConfig]) {
        *lock(&self.titles) = channels
            .iter()
            .filter_map(|c| c.title.clone().map(|t| (c.name.clone(), t)))
            .collect();
    }

    fn title(&self, channel: &str) -> Option<String> {
        lock(&self.titles).get(channel).cloned()
    }

    /// Directory of a recording.
    pub fn dir(&self, channel: &str, id: &str) -> PathBuf {
        self.root.join(channel).join(id)
    }

    /// `{storage.data_dir}/recordings`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of a recording: `rendition` `None` for files at its top (the poster). Names are
    /// checked by the router ([`is_file_name`]), so no path leaves the recording's directory.
    pub fn file_path(
        &self,
        channel: &str,
        id: &str,
        rendition: Option<&str>,
        file: &str,
    ) -> PathBuf {
        let d = self.dir(channel, id);
        match rendition {
            Some(r) => d.join(r).join(file),
            None => d.join(file),
        }
    }

    pub(crate) fn set_live(&self, channel: &str, clock: Option<LiveClock>) {
        let mut live = lock(&self.live);
        match clock {
            Some(c) => live.insert(channel.to_string(), c),
            None => live.remove(channel),
        };
    }

    /// The directory of the recording being made on `channel`, if any: where the thumbnail
    /// code puts the recording's poster (`poster.jpg`, served as its `thumbnail`).
    pub fn live_recording_dir(&self, channel: &str) -> Option<PathBuf> {
        let id = lock(&self.live).get(channel).map(|c| c.id.clone())?;
        Some(self.dir(channel, &id))
    }

    /// Whether `id` is the recording being made on `channel`.
    pub fn is_recording(&self, channel: &str, id: &str) -> bool {
        lock(&self.live).get(channel).is_some_and(|c| c.id == id)
    }

    /// A chat message was accepted: logged with the media time of the recording being made,
    /// if any. Never waits (a full queue drops the log entry, counted).
    pub fn chat_posted(&self, channel: &str, msg: &ChatMessage) {
        let Some(clock) = lock(&self.live).get(channel).cloned() else {
            return;
        };
        let Ok(message) = serde_json::to_string(msg) else {
            return;
        };
        let item = chatlog::Item::Add {
            channel: channel.to_string(),
            recording: clock.id.clone(),
            row: db::recordings::ChatRow {
                message_id: msg.id as i64,
                offset_ms: clock.now_ms().max(0),
                message,
            },
        };
        if self.chat.try_send(item).is_err() {
            metrics::counter!("onair_record_chat_dropped_total").increment(1);
        }
    }

    /// A moderator deleted a message: it leaves the channel's chat logs too.
    pub fn chat_deleted(&self, channel: &str, id: u64) {
        let item = chatlog::Item::Delete {
            channel: channel.to_string(),
            message_id: id as i64,
        };
        if self.chat.try_send(item).is_err() {
            metrics::counter!("onair_record_chat_dropped_total").increment(1);
        }
    }

    /// Deletes a finished recording: files first, then its rows (index and chat log).
    pub async fn delete(&self, channel: &str, id: &str) -> Result<(), RecordError> {
        if self.is_recording(channel, id) {
            return Err(RecordError::Live);
        }
        let (c, i) = (channel.to_string(), id.to_string());
        let found = self
            .db
            .call(move |conn| db::recordings::get(conn, &c, &i))
            .await?;
        if found.is_none() {
            return Err(RecordError::NotFound);
        }
        self.remove(channel, id).await
    }

    /// Removes a recording's directory and rows, whatever its state (retention, delete).
    pub(crate) async fn remove(&self, channel: &str, id: &str) -> Result<(), RecordError> {
        let dir = self.dir(channel, id);
        let d = dir.clone();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        removed.map_err(|source| RecordError::Io { path: dir, source })?;
        if let Some(up) = &self.uploader {
            up.delete(channel, id).await;
        }
        let (c, i) = (channel.to_string(), id.to_string());
        self.db
            .write(move |tx| db::recordings::delete(tx, &c, &i))
            .await?;
        info!(%channel, recording = %id, "recording deleted");
        Ok(())
    }

    /// Files of a recording (`rel` as on disk) are fsynced and listed: upload them, in order,
    /// in the background (when an object store is configured).
    pub(crate) fn uploaded(&self, channel: &str, id: &str, rels: Vec<String>) {
        if let Some(up) = &self.uploader {
            up.enqueue(channel, id, rels);
        }
    }

    /// A recording session closed (see [`upload::Uploader::finish`]).
    pub(crate) fn upload_finish(&self, channel: &str, id: &str) {
        if let Some(up) = &self.uploader {
            up.finish(channel, id);
        }
    }

    pub(crate) fn kick_retention(&self) {
        self.sweep.notify_one();
    }
}

/// Whether `s` may name a file of a recording: `init-N.mp4`, `NNNNNN.m4s` or `poster.jpg`.
pub fn is_file_name(s: &str) -> bool {
    let digits = |d: &str| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit());
    if s == "poster.jpg" {
        return true;
    }
    if let Some(n) = s.strip_prefix("init-").and_then(|r| r.strip_suffix(".mp4")) {
        return digits(n);
    }
    s.strip_suffix(".m4s").is_some_and(digits)
}

/// Whether `s` may be a recording id (what [`channel`] makes: `20261202T173012Z`, maybe `-N`).
pub fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_ids() {
        for ok in ["init-1.mp4", "000001.m4s", "poster.jpg", "12.m4s"] {
            assert!(is_file_name(ok), "{ok}");
        }
        for bad in [
            "../x.m4s",
            "init-.mp4",
            ".m4s",
            "a.m4s",
            "segments.log",
            "meta.json",
            "1.ts",
        ] {
            assert!(!is_file_name(bad), "{bad}");
        }
        assert!(is_id("20261202T173012Z-2"));
        assert!(!is_id("../x") && !is_id("") && !is_id("a.b"));
    }

    #[test]
    fn clock_runs_but_not_past_its_limit() {
        let c = LiveClock {
            id: "x".into(),
            anchor: Instant::now() - Duration::from_secs(100),
            media_ms: 5000,
            max_ahead_ms: 8000,
        };
        assert_eq!(c.now_ms(), 13_000);
    }
}
