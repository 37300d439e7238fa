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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::Container;
use crate::proto::media::TIMESCALE;
use crate::proto::playlist::{
    self, ListedPart, ListedSegment, LowLatency, MediaView, RenditionReport, Variant,
};

use super::names::{self, Epoch, MediaKind, MediaName};
use super::segmenter::{Part, Segment};

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

#[derive(Debug, Clone)]
struct StoredPart {
    listed: ListedPart,
    data: Bytes,
}

#[derive(Debug, Clone)]
struct Stored {
    listed: ListedSegment,
    /// First DTS (90 kHz), to line up a rendition that joins late with the source.
    start: i64,
    data: Bytes,
    bits_per_second: u64,
    parts: Vec<StoredPart>,
    /// The store's number of the init segment it needs (`{epoch}-init-{n}.mp4`).
    init_id: u32,
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

#[derive(Debug)]
struct RenditionHls {
    order: usize,
    /// Tags every object name of this rendition's life in the store (`crate::hls::names`).
    epoch: Epoch,
    segments: VecDeque<Stored>,
    /// Parts of the segment being written.
    pending: Vec<StoredPart>,
    next_sequence: u64,
    /// Discontinuities in segments already dropped from memory.
    dropped_discontinuities: u64,
    target_duration: u64,
    ended: bool,
    /// Init segments by the store's number: the current one and those older listed segments
    /// still need. Numbers are never reused within an epoch, whatever the writers' own ids.
    inits: BTreeMap<u32, Bytes>,
    next_init: u32,
    /// The writer's init id → the store's number for it.
    init_alias: BTreeMap<u32, u32>,
    playlist: Bytes,
    /// The delta-update (`_HLS_skip=YES`) form of the playlist.
    playlist_skip: Bytes,
    summary: RenditionSummary,
    position: watch::Sender<Position>,
}

impl RenditionHls {
    fn new(name: &str, order: usize, target: u64, first_sequence: u64) -> Self {
        Self {
            order,
            epoch: Epoch::random(),
            segments: VecDeque::new(),
            pending: Vec::new(),
            next_sequence: first_sequence,
            dropped_discontinuities: 0,
            target_duration: target,
            ended: false,
            inits: BTreeMap::new(),
            next_init: 1,
            init_alias: BTreeMap::new(),
            playlist: Bytes::new(),
            playlist_skip: Bytes::new(),
            summary: RenditionSummary {
                name: name.to_string(),
                width: None,
                height: None,
                frame_rate: None,
                codecs: String::new(),
                bandwidth: 0,
                average_bandwidth: 0,
                segments: 0,
            },
            position: watch::channel(Position::default()).0,
        }
    }

    fn notify(&self) {
        let p = Position {
            msn: self.next_sequence,
            parts: self.pending.len() as u64,
            ended: self.ended,
            version: self.position.borrow().version + 1,
        };
        self.position.send_replace(p);
    }

    /// Last (msn, part) for rendition reports.
    fn last_position(&self) -> Option<(u64, Option<u64>)> {
        if !self.pending.is_empty() {
            return Some((self.next_sequence, Some(self.pending.len() as u64 - 1)));
        }
        let last = self.segments.back()?;
        Some((
            last.listed.sequence,
            (!last.parts.is_empty()).then(|| last.parts.len() as u64 - 1),
        ))
    }
}

#[derive(Debug, Default)]
struct ChannelHls {
    renditions: BTreeMap<String, RenditionHls>,
    master: Bytes,
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
    /// Next sequence number of renditions that were freed, by `channel/rendition`: a new
    /// broadcast on the channel numbers on from there, so that a blocking-reload answer an
    /// edge cached for the old one (keyed by `_HLS_msn`) can never answer the new one. One
    /// entry per rendition name ever live. Taken after `channels` when both are held.
    freed: RwLock<HashMap<String, u64>>,
}

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
            freed: RwLock::new(HashMap::new()),
        }
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

    /// Stores the fMP4 init segment the writer calls `id` for a rendition; the segments it
    /// pushes next with that id get it. The store names it with a number of its own, so that a
    /// new writer (new publisher, new transcode pipeline) starting its ids over never reuses a
    /// name.
    pub fn set_init(&self, channel: &str, rendition: &str, order: usize, id: u32, data: Bytes) {
        let mut map = self.write();
        let ch = self.rendition_mut(&mut map, channel, rendition, order);
        if let Some(r) = ch.renditions.get_mut(rendition) {
            let n = r.next_init;
            r.next_init += 1;
            r.inits.insert(n, data);
            r.init_alias.insert(id, n);
        }
    }

    /// Adds a finished low-latency part to the segment being written.
    pub fn push_part(&self, channel: &str, rendition: &str, order: usize, part: &Part) {
        let mut map = self.write();
        let ch = self.rendition_mut(&mut map, channel, rendition, order);
        let Some(r) = ch.renditions.get_mut(rendition) else {
            return;
        };
        r.ended = false;
        let uri = names::part(r.epoch, r.next_sequence, r.pending.len());
        r.pending.push(StoredPart {
            listed: ListedPart {
                seconds: part.seconds(),
                uri,
                independent: part.independent,
            },
            data: part.data.clone(),
        });
        self.render_channel(ch);
        if let Some(r) = ch.renditions.get(rendition) {
            r.notify();
        }
    }

    /// Adds a finished segment to a rendition (created on its first segment).
    pub fn push_segment(
        &self,
        channel: &str,
        rendition: &str,
        order: usize,
        seg: &Segment,
        program_date_time: DateTime<Utc>,
    ) -> u64 {
        let window = self.cfg.window;
        let ts = self.cfg.container == Container::Ts;
        let mut map = self.write();
        let ch = self.rendition_mut(&mut map, channel, rendition, order);
        // Transcoded renditions number their segments after the source's: the segment that
        // starts at the same time as a source segment takes its sequence number, so that
        // MEDIA-SEQUENCE n is the same moment in every rendition even after a rendition was
        // shed and restored, or restarted with a new publisher and lost a partial segment.
        let aligned = if order > 0 {
            ch.renditions
                .values()
                .filter(|r| r.order == 0)
                // Newest first: a new publisher's timeline may start over at the same times.
                .flat_map(|r| r.segments.iter().rev())
                .find(|s| s.start == seg.start)
                .map(|s| s.listed.sequence)
        } else {
            None
        };
        let Some(r) = ch.renditions.get_mut(rendition) else {
            return 0;
        };
        let mut discontinuity = seg.discontinuity && !r.segments.is_empty();
        if let Some(n) = aligned.filter(|n| *n > r.next_sequence) {
            // A jump: a playlist's sequence numbers are contiguous, so what is listed goes,
            // and the discontinuity before this segment now lies before the window. Parts
            // already listed for the old number go too.
            let gone = r
                .segments
                .drain(..)
                .filter(|s| s.listed.discontinuity)
                .count() as u64;
            r.dropped_discontinuities += gone + discontinuity as u64;
            discontinuity = false;
            r.next_sequence = n;
            r.pending.clear();
        }
        let sequence = r.next_sequence;
        r.next_sequence += 1;
        r.ended = false;
        let seconds = seg.seconds();
        // EXTINF rounded to the nearest integer must not exceed the target duration; it may
        // grow (never shrink) when a broadcaster's keyframe interval is longer than asked for.
        r.target_duration = r.target_duration.max(seconds.round() as u64);
        let bits_per_second = (seg.data.len() as f64 * 8.0 / seconds.max(0.001)) as u64;
        let parts = std::mem::take(&mut r.pending);
        let init_id = r
            .init_alias
            .get(&seg.init_id)
            .copied()
            .unwrap_or(r.next_init.saturating_sub(1));
        let map_uri = (!ts).then(|| names::init(r.epoch, init_id));
        let new_map = r.segments.back().map(|s| s.init_id) != Some(init_id);
        r.segments.push_back(Stored {
            listed: ListedSegment {
                sequence,
                seconds,
                discontinuity,
                program_date_time,
                uri: names::segment(r.epoch, sequence, ts),
                map: map_uri.filter(|_| new_map),
                parts: Vec::new(),
            },
            start: seg.start,
            data: seg.data.clone(),
            bits_per_second,
            parts,
            init_id,
        });
        while r.segments.len() > window + KEEP_AFTER_WINDOW {
            if let Some(old) = r.segments.pop_front() {
                r.dropped_discontinuities += old.listed.discontinuity as u64;
            }
        }
        // Parts of older segments are no longer listed nor kept.
        let n = r.segments.len();
        for s in r
            .segments
            .iter_mut()
            .take(n.saturating_sub(SEGMENTS_WITH_PARTS))
        {
            s.parts.clear();
        }
        // Init segments no stored segment needs are dropped (the current one stays).
        if let Some(oldest) = r.segments.front().map(|s| s.init_id) {
            r.inits.retain(|id, _| *id >= oldest);
            r.init_alias.retain(|_, n| *n >= oldest);
        }
        if let Some(v) = &seg.info.video {
            r.summary.width = Some(v.width());
            r.summary.height = Some(v.height());
            if seg.video_frames > 1 {
                let fps = seg.video_frames as f64 * TIMESCALE as f64 / seg.duration as f64;
                r.summary.frame_rate = Some(v.fps().unwrap_or((fps * 100.0).round() / 100.0));
            }
        } else {
            r.summary.width = None;
            r.summary.height = None;
            r.summary.frame_rate = None;
        }
        r.summary.codecs = seg.info.codecs();
        r.summary.segments = r.next_sequence;
        self.render_channel(ch);
        render_master(ch);
        if let Some(r) = ch.renditions.get(rendition) {
            r.notify();
        }
        sequence
    }

    /// Marks the channel's source rendition ended (ENDLIST). Transcoded renditions (order > 0)
    /// still have frames in their encoders when the source ends: the transcoder ends each with
    /// [`HlsStore::end_rendition`] after its last segment, so that no player sees ENDLIST
    /// before the end.
    pub fn end(&self, channel: &str) {
        let mut map = self.write();
        if let Some(ch) = map.get_mut(channel) {
            for r in ch.renditions.values_mut().filter(|r| r.order == 0) {
                r.ended = true;
                r.pending.clear();
            }
            self.render_channel(ch);
            for r in ch.renditions.values() {
                r.notify();
            }
        }
    }

    /// Marks one rendition ended (a transcoded rendition that finished after the source).
    pub fn end_rendition(&self, channel: &str, rendition: &str) {
        let mut map = self.write();
        let Some(ch) = map.get_mut(channel) else {
            return;
        };
        if let Some(r) = ch.renditions.get_mut(rendition) {
            r.ended = true;
            r.pending.clear();
        }
        self.render_channel(ch);
        if let Some(r) = ch.renditions.get(rendition) {
            r.notify();
        }
    }

    /// Forgets a channel's HLS (after the linger period).
    pub fn remove(&self, channel: &str) {
        let removed = self.write().remove(channel);
        if let Some(ch) = removed {
            for (name, r) in &ch.renditions {
                self.remember_freed(channel, name, r.next_sequence);
                r.position.send_modify(|p| {
                    p.ended = true;
                    p.version += 1;
                });
            }
        }
    }

    /// Drops one rendition (a transcoded rendition that stopped).
    pub fn remove_rendition(&self, channel: &str, rendition: &str) {
        let mut map = self.write();
        if let Some(ch) = map.get_mut(channel) {
            if let Some(r) = ch.renditions.remove(rendition) {
                self.remember_freed(channel, rendition, r.next_sequence);
            }
            self.render_channel(ch);
            render_master(ch);
        }
    }

    pub fn master(&self, channel: &str) -> Result<Bytes, Lookup> {
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        if ch.master.is_empty() {
            return Err(Lookup::NoChannel);
        }
        Ok(ch.master.clone())
    }

    /// The media playlist (`skip`: its delta-update form).
    pub fn media_playlist(&self, channel: &str, rendition: &str) -> Result<Bytes, Lookup> {
        self.playlist(channel, rendition, false)
    }

    pub fn playlist(&self, channel: &str, rendition: &str, skip: bool) -> Result<Bytes, Lookup> {
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        let r = ch.renditions.get(rendition).ok_or(Lookup::NoRendition)?;
        if r.playlist.is_empty() {
            return Err(Lookup::NoSegment);
        }
        Ok(if skip && !r.playlist_skip.is_empty() {
            r.playlist_skip.clone()
        } else {
            r.playlist.clone()
        })
    }

    /// A rendition's position and a receiver that sees its changes (for blocking requests).
    pub fn watch(
        &self,
        channel: &str,
        rendition: &str,
    ) -> Result<watch::Receiver<Position>, Lookup> {
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        let r = ch.renditions.get(rendition).ok_or(Lookup::NoRendition)?;
        Ok(r.position.subscribe())
    }

    /// A segment, part or init segment by its file name.
    pub fn segment(&self, channel: &str, rendition: &str, name: &str) -> Result<Bytes, Lookup> {
        let media = MediaName::parse(name).ok_or(Lookup::NoSegment)?;
        self.media(channel, rendition, media)
    }

    /// A media object; one of another epoch (an earlier broadcast) is not found.
    pub fn media(&self, channel: &str, rendition: &str, name: MediaName) -> Result<Bytes, Lookup> {
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        let r = ch.renditions.get(rendition).ok_or(Lookup::NoRendition)?;
        if name.epoch != r.epoch {
            return Err(Lookup::NoSegment);
        }
        let ts = self.cfg.container == Container::Ts;
        match name.kind {
            MediaKind::Init(id) => r.inits.get(&id).cloned().ok_or(Lookup::NoSegment),
            MediaKind::Segment(seq) => {
                let first = r.segments.front().ok_or(Lookup::NoSegment)?.listed.sequence;
                let idx = seq.checked_sub(first).ok_or(Lookup::NoSegment)? as usize;
                let s = r.segments.get(idx).ok_or(Lookup::NoSegment)?;
                // The URI's extension must match the container the segment was written in.
                if s.listed.uri.ends_with(".ts") != ts {
                    return Err(Lookup::NoSegment);
                }
                Ok(s.data.clone())
            }
            MediaKind::Part(msn, part) => {
                let parts = if msn == r.next_sequence {
                    &r.pending
                } else {
                    let first = r.segments.front().ok_or(Lookup::NoSegment)?.listed.sequence;
                    let idx = msn.checked_sub(first).ok_or(Lookup::NoSegment)? as usize;
                    &r.segments.get(idx).ok_or(Lookup::NoSegment)?.parts
                };
                parts
                    .get(part as usize)
                    .map(|p| p.data.clone())
                    .ok_or(Lookup::NoSegment)
            }
        }
    }

    /// The renditions of a channel in playlist order.
    pub fn renditions(&self, channel: &str) -> Vec<RenditionSummary> {
        let map = self.read();
        let Some(ch) = map.get(channel) else {
            return Vec::new();
        };
        let mut v: Vec<_> = ch.renditions.values().collect();
        v.sort_by_key(|r| r.order);
        v.into_iter().map(|r| r.summary.clone()).collect()
    }

    /// Total bytes of segments held, for metrics and the memory bound tests.
    pub fn bytes_held(&self) -> usize {
        self.read()
            .values()
            .flat_map(|c| c.renditions.values())
            .map(|r| {
                r.segments.iter().map(|s| s.data.len()).sum::<usize>()
                    + r.pending.iter().map(|p| p.data.len()).sum::<usize>()
            })
            .sum()
    }

    /// Re-renders every media playlist of a channel (rendition reports tie them together).
    fn render_channel(&self, ch: &mut ChannelHls) {
        type Last = Option<(u64, Option<u64>)>;
        let positions: Vec<(String, Last)> = ch
            .renditions
            .iter()
            .map(|(n, r)| (n.clone(), r.last_position()))
            .collect();
        for (name, r) in ch.renditions.iter_mut() {
            let reports: Vec<RenditionReport> = positions
                .iter()
                .filter(|(n, _)| n != name)
                .filter_map(|(n, p)| {
                    p.map(|(msn, part)| RenditionReport {
                        uri: format!("../{n}/index.m3u8"),
                        last_msn: msn,
                        last_part: part,
                    })
                })
                .collect();
            render_rendition(r, &self.cfg, self.low_latency(), &reports);
        }
    }
}

fn render_rendition(
    r: &mut RenditionHls,
    cfg: &StoreConfig,
    low_latency: bool,
    reports: &[RenditionReport],
) {
    let skip = r.segments.len().saturating_sub(cfg.window);
    let discontinuity_sequence = r
        .segments
        .iter()
        .take(skip)
        .filter(|s| s.listed.discontinuity)
        .count() as u64
        + r.dropped_discontinuities;
    let n = r.segments.len();
    let mut listed: Vec<ListedSegment> = r
        .segments
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, s)| {
            let mut l = s.listed.clone();
            if i + SEGMENTS_WITH_PARTS >= n && low_latency {
                l.parts = s.parts.iter().map(|p| p.listed.clone()).collect();
            }
            l
        })
        .collect();
    // The first listed segment always carries its map.
    if let (Some(first), Some(s)) = (listed.first_mut(), r.segments.get(skip)) {
        if cfg.container == Container::Fmp4 && first.map.is_none() {
            first.map = Some(names::init(r.epoch, s.init_id));
        }
    }
    let pending: Vec<ListedPart> = r.pending.iter().map(|p| p.listed.clone()).collect();
    let ll = low_latency.then(|| LowLatency {
        part_target: cfg.part_seconds,
        pending_parts: &pending,
        preload_hint: Some(names::part(r.epoch, r.next_sequence, r.pending.len())),
        reports,
        skipped: 0,
    });
    let mut view = MediaView {
        target_duration: r.target_duration,
        discontinuity_sequence,
        segments: &listed,
        ended: r.ended,
        low_latency: ll,
    };
    r.playlist = Bytes::from(playlist::render_media(&view));
    // Delta update: skip the segments that start more than CAN-SKIP-UNTIL (6 target durations)
    // before the end of the playlist.
    r.playlist_skip = Bytes::new();
    if let Some(ll) = view.low_latency.as_mut() {
        let until = r.target_duration as f64 * 6.0;
        let total: f64 = listed.iter().map(|s| s.seconds).sum::<f64>()
            + pending.iter().map(|p| p.seconds).sum::<f64>();
        let mut start = 0.0;
        let mut skipped = 0;
        for s in &listed {
            if total - start > until {
                skipped += 1;
                start += s.seconds;
            } else {
                break;
            }
        }
        if skipped > 0 {
            ll.skipped = skipped;
            r.playlist_skip = Bytes::from(playlist::render_media(&view));
        }
    }
    listed.clear();
    // Bandwidth over the listed window.
    let window: Vec<&Stored> = r.segments.iter().skip(skip).collect();
    r.summary.bandwidth = window.iter().map(|s| s.bits_per_second).max().unwrap_or(0);
    let bits: f64 = window.iter().map(|s| s.data.len() as f64 * 8.0).sum();
    let secs: f64 = window.iter().map(|s| s.listed.seconds).sum();
    r.summary.average_bandwidth = if secs > 0.0 { (bits / secs) as u64 } else { 0 };
}

fn render_master(ch: &mut ChannelHls) {
    let mut v: Vec<&RenditionHls> = ch
        .renditions
        .values()
        .filter(|r| !r.segments.is_empty())
        .collect();
    v.sort_by_key(|r| r.order);
    let variants: Vec<Variant> = v
        .iter()
        .map(|r| Variant {
            uri: format!("{}/index.m3u8", r.summary.name),
            bandwidth: r.summary.bandwidth,
            average_bandwidth: r.summary.average_bandwidth,
            resolution: r.summary.width.zip(r.summary.height),
            frame_rate: r.summary.frame_rate,
            codecs: r.summary.codecs.clone(),
        })
        .collect();
    ch.master = if variants.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(playlist::render_master(&variants))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::media::StreamInfo;

    fn seg(start_s: i64, discontinuity: bool) -> Segment {
        Segment {
            start: start_s * TIMESCALE,
            duration: 2 * TIMESCALE,
            data: Bytes::from_static(b"x"),
            discontinuity,
            video_frames: 0,
            info: StreamInfo::default(),
            init_id: 0,
        }
    }

    #[test]
    fn transcoded_renditions_take_the_source_sequence_numbers() {
        let store = HlsStore::new(StoreConfig {
            window: 6,
            segment_seconds: 2.0,
            container: Container::Ts,
            part_seconds: 0.333,
        });
        let now = Utc::now();
        for t in [0, 2, 4] {
            store.push_segment("c", "source", 0, &seg(t, false), now);
        }
        // A rendition that joins late starts at the source's number for the same start.
        assert_eq!(store.push_segment("c", "360p", 1, &seg(4, false), now), 2);
        for t in [6, 8, 10] {
            store.push_segment("c", "source", 0, &seg(t, false), now);
        }
        assert_eq!(store.push_segment("c", "360p", 1, &seg(6, false), now), 3);
        // It lost the segment at 8 s (shed, or a restart): it jumps to 5, dropping what it
        // listed (the window must stay contiguous) and counting the discontinuity as passed.
        assert_eq!(store.push_segment("c", "360p", 1, &seg(10, true), now), 5);
        let p = String::from_utf8(
            store
                .media_playlist("c", "360p")
                .expect("playlist")
                .to_vec(),
        )
        .expect("utf8");
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:5"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{p}");
        assert!(!p.contains("-3.ts"), "{p}");
        let five = segments_of(&p)
            .into_iter()
            .find(|u| u.ends_with("-5.ts"))
            .expect("5");
        assert_eq!(
            store.segment("c", "360p", &five).ok(),
            Some(Bytes::from_static(b"x"))
        );
        // Without a matching source segment the numbering just continues.
        assert_eq!(store.push_segment("c", "360p", 1, &seg(13, false), now), 6);
        // The source itself is never renumbered.
        assert_eq!(
            store.push_segment("c", "source", 0, &seg(12, false), now),
            6
        );
    }

    fn store(container: Container) -> HlsStore {
        HlsStore::new(StoreConfig {
            window: 6,
            segment_seconds: 2.0,
            container,
            part_seconds: 0.5,
        })
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).expect("utf8")
    }

    fn part() -> Part {
        Part {
            duration: TIMESCALE / 2,
            data: Bytes::from_static(b"p"),
            independent: true,
        }
    }

    /// Every name a rendition ever lists carries its epoch and names one content: a new writer
    /// whose init ids start over gets new init names, parts and segments never repeat.
    #[test]
    fn names_are_never_reused_within_an_epoch() {
        let store = store(Container::Fmp4);
        let now = Utc::now();
        let mut names = std::collections::HashSet::new();
        let mut listed = |p: String| {
            for l in p.lines() {
                if let Some(u) = l.split("URI=\"").nth(1).and_then(|u| u.split('"').next()) {
                    names.insert(u.to_string());
                } else if !l.starts_with('#') && !l.is_empty() {
                    names.insert(l.to_string());
                }
            }
        };
        for writer in 0..2 {
            // Each writer calls its first init 1, as a new segmenter does.
            store.set_init("c", "source", 0, 1, Bytes::from(vec![writer; 4]));
            for t in 0..3 {
                store.push_part("c", "source", 0, &part());
                let mut s = seg(writer as i64 * 10 + t * 2, t == 0);
                s.init_id = 1;
                store.push_segment("c", "source", 0, &s, now);
                listed(text(store.media_playlist("c", "source").expect("playlist")));
            }
        }
        let inits: Vec<&String> = names.iter().filter(|n| n.contains("-init-")).collect();
        assert_eq!(inits.len(), 2, "{names:?}");
        let a = store.segment("c", "source", inits[0]).expect("init");
        let b = store.segment("c", "source", inits[1]).expect("init");
        assert_ne!(a, b, "two init names, two contents");
        for n in &names {
            let m = MediaName::parse(n).unwrap_or_else(|| panic!("{n} parses"));
            assert_eq!(
                m.epoch,
                names
                    .iter()
                    .next()
                    .and_then(|x| MediaName::parse(x))
                    .map(|x| x.epoch)
                    .expect("epoch")
            );
        }
        // 6 segments + 6 parts + 2 inits + the preload hints (one new name each time).
        assert!(names.len() >= 14, "{names:?}");
    }

    /// A freed channel's next broadcast gets a new epoch (old names are not found) and numbers
    /// on from where the old one stopped (old blocking-reload answers keyed by `_HLS_msn`
    /// cannot answer it).
    #[test]
    fn a_new_broadcast_gets_new_names_and_numbers_on() {
        let store = store(Container::Ts);
        let now = Utc::now();
        for t in [0, 2, 4] {
            store.push_segment("c", "source", 0, &seg(t, false), now);
        }
        let old = text(store.media_playlist("c", "source").expect("playlist"));
        let old_names: Vec<String> = segments_of(&old);
        assert_eq!(old_names.len(), 3);
        store.remove("c");
        assert_eq!(store.push_segment("c", "source", 0, &seg(0, false), now), 3);
        let new = text(store.media_playlist("c", "source").expect("playlist"));
        assert!(new.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{new}");
        for n in &old_names {
            assert_eq!(
                store.segment("c", "source", n),
                Err(Lookup::NoSegment),
                "{n}"
            );
            assert!(!new.contains(n.as_str()), "{new}");
        }
        let fresh = segments_of(&new);
        assert!(store.segment("c", "source", &fresh[0]).is_ok());
        // A rendition removed and created again also starts a new epoch.
        store.push_segment("c", "360p", 1, &seg(0, false), now);
        let before = segments_of(&text(store.media_playlist("c", "360p").expect("360p")));
        store.remove_rendition("c", "360p");
        store.push_segment("c", "360p", 1, &seg(2, false), now);
        let after = segments_of(&text(store.media_playlist("c", "360p").expect("360p")));
        assert_ne!(before[0].split('-').next(), after[0].split('-').next());
    }

    fn segments_of(p: &str) -> Vec<String> {
        p.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(String::from)
            .collect()
    }
}
