//! The in-memory HLS store: per channel and rendition, a sliding window of segments (and, for
//! fMP4, their low-latency parts and init segments) and the rendered playlists, served by HTTP
//! as cheap `Bytes` clones.
//!
//! Writers (one segmenter per rendition) call [`HlsStore::push_part`] and
//! [`HlsStore::push_segment`]; each re-renders the channel's playlists once, so readers only
//! clone what is cached. Each rendition has a `watch` channel with its position, which blocking
//! playlist reloads (`_HLS_msn`/`_HLS_part`) and preload-hinted part requests await: they are
//! answered the moment the part lands, not by polling. Memory is bounded: `playlist_window`
//! listed segments plus a few that just slid out.
//!
//! This module holds the store's public types, its lock and the numbering kept across
//! broadcasts; `rendition` the per-rendition state, `write` what the segmenters and the
//! channel lifecycle call, `render` the playlists rendered on each write, `read` what HTTP
//! and the API call.

mod read;
mod render;
mod rendition;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::Container;

use super::segmenter::Segment;
use rendition::{ChannelHls, RenditionHls};

/// Segments kept after they leave the playlist (RFC 8216 6.2.2 asks servers to keep them a
/// while for clients holding an older playlist).
const KEEP_AFTER_WINDOW: usize = 3;
/// Complete segments whose parts stay listed (the spec allows dropping parts older than three
/// target durations).
const SEGMENTS_WITH_PARTS: usize = 3;

/// Where a rendition's writer stands: blocking requests wait on changes of this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Sequence number of the segment being written (= completed segments so far).
    pub msn: u64,
    /// Parts of that segment already available.
    pub parts: u64,
    /// The stream ended (ENDLIST): nothing more will come.
    pub ended: bool,
    /// Bumped whenever the stored state changes, so waiters never miss an update.
    pub version: u64,
}

/// What `/api/channels` and the master playlist say about a rendition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RenditionSummary {
    pub name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// Segments produced since the stream's playlists were created.
    pub segments: u64,
}

/// Settings the store needs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub window: usize,
    pub segment_seconds: f64,
    pub container: Container,
    pub part_seconds: f64,
}

/// The store. A std `RwLock`: readers clone `Bytes` and leave, writers hold it for one render;
/// it is never held across an await.
pub struct HlsStore {
    cfg: StoreConfig,
    channels: RwLock<HashMap<String, ChannelHls>>,
    /// Sees every finished segment of the transcoded renditions (set once at start).
    tap: std::sync::OnceLock<SegmentTap>,
    /// Next sequence number of renditions that were freed, by `channel/rendition`: a new
    /// broadcast on the channel numbers on from there, so that a blocking-reload answer an
    /// edge cached for the old one (keyed by `_HLS_msn`) can never answer the new one. One
    /// entry per rendition name ever live. Taken after `channels` when both are held.
    freed: RwLock<HashMap<String, u64>>,
}

/// A finished segment of a transcoded rendition, as the [`SegmentTap`] sees it.
pub struct TapSegment<'a> {
    pub channel: &'a str,
    pub rendition: &'a str,
    pub segment: &'a Segment,
    /// The rendition's current init segment (id, bytes).
    pub init: Option<(u32, Bytes)>,
    pub program_time: DateTime<Utc>,
}

/// Called on the writer's thread (a transcode worker) for every finished segment of a
/// transcoded rendition: the recorder with `record.renditions = "all"`. Must not block.
pub type SegmentTap = std::sync::Arc<dyn Fn(&TapSegment<'_>) + Send + Sync>;

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    NoChannel,
    NoRendition,
    NoSegment,
}

impl HlsStore {
    pub fn new(cfg: StoreConfig) -> Self {
        Self {
            cfg,
            channels: RwLock::new(HashMap::new()),
            tap: std::sync::OnceLock::new(),
            freed: RwLock::new(HashMap::new()),
        }
    }

    /// Installs the segment tap (once; later calls are ignored).
    pub fn set_tap(&self, tap: SegmentTap) {
        let _ = self.tap.set(tap);
    }

    pub fn tap(&self) -> Option<&SegmentTap> {
        self.tap.get()
    }

    pub fn segment_seconds(&self) -> f64 {
        self.cfg.segment_seconds
    }

    pub fn part_seconds(&self) -> f64 {
        self.cfg.part_seconds
    }

    pub fn container(&self) -> Container {
        self.cfg.container
    }

    fn low_latency(&self) -> bool {
        self.cfg.container == Container::Fmp4
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ChannelHls>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ChannelHls>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }

    fn rendition_mut<'a>(
        &self,
        map: &'a mut HashMap<String, ChannelHls>,
        channel: &str,
        rendition: &str,
        order: usize,
    ) -> &'a mut ChannelHls {
        let ch = map.entry(channel.to_string()).or_default();
        let target = self.cfg.segment_seconds.ceil().max(1.0) as u64;
        ch.renditions
            .entry(rendition.to_string())
            .or_insert_with(|| {
                let first = self.freed_sequence(channel, rendition);
                RenditionHls::new(rendition, order, target, first)
            });
        ch
    }

    fn freed_sequence(&self, channel: &str, rendition: &str) -> u64 {
        let freed = self.freed.read().unwrap_or_else(|e| e.into_inner());
        freed
            .get(&format!("{channel}/{rendition}"))
            .copied()
            .unwrap_or(0)
    }

    fn remember_freed(&self, channel: &str, rendition: &str, next_sequence: u64) {
        let mut freed = self.freed.write().unwrap_or_else(|e| e.into_inner());
        let e = freed.entry(format!("{channel}/{rendition}")).or_default();
        *e = (*e).max(next_sequence);
    }
}
