//! The in-memory HLS store: per channel and rendition, a sliding window of segments and the
//! rendered playlists, served by HTTP as cheap `Bytes` clones.
//!
//! Writers (one segmenter per rendition) call [`HlsStore::push_segment`] once per segment, which
//! re-renders the media playlist and the channel's multivariant playlist; readers only clone
//! what is cached. Memory is bounded: `playlist_window` listed segments plus a few that just
//! slid out (players that fetched the previous playlist may still ask for them).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::proto::media::TIMESCALE;
use crate::proto::playlist::{self, ListedSegment, MediaView, Variant};

use super::segmenter::Segment;

/// Segments kept after they leave the playlist (RFC 8216 6.2.2 asks servers to keep them a
/// while for clients holding an older playlist).
const KEEP_AFTER_WINDOW: usize = 3;

/// A stored segment.
#[derive(Debug, Clone)]
struct Stored {
    listed: ListedSegment,
    /// First DTS (90 kHz), to line up a rendition that joins late with the source.
    start: i64,
    data: Bytes,
    bits_per_second: u64,
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
}

#[derive(Debug)]
struct RenditionHls {
    order: usize,
    segments: VecDeque<Stored>,
    next_sequence: u64,
    /// Discontinuities before the first listed segment.
    discontinuity_sequence: u64,
    /// Discontinuities in segments already dropped from memory.
    dropped_discontinuities: u64,
    target_duration: u64,
    ended: bool,
    playlist: Bytes,
    summary: RenditionSummary,
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
}

/// The store. A std `RwLock`: readers clone `Bytes` and leave, writers hold it for one render;
/// it is never held across an await.
pub struct HlsStore {
    cfg: StoreConfig,
    channels: RwLock<HashMap<String, ChannelHls>>,
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
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ChannelHls>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ChannelHls>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
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
        let mut map = self.write();
        let ch = map.entry(channel.to_string()).or_default();
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
        let initial_target = self.cfg.segment_seconds.ceil().max(1.0) as u64;
        let r = ch
            .renditions
            .entry(rendition.to_string())
            .or_insert_with(|| RenditionHls {
                order,
                segments: VecDeque::new(),
                next_sequence: 0,
                discontinuity_sequence: 0,
                dropped_discontinuities: 0,
                target_duration: initial_target,
                ended: false,
                playlist: Bytes::new(),
                summary: RenditionSummary {
                    name: rendition.to_string(),
                    width: None,
                    height: None,
                    frame_rate: None,
                    codecs: String::new(),
                    bandwidth: 0,
                    average_bandwidth: 0,
                },
            });
        let mut discontinuity = seg.discontinuity && !r.segments.is_empty();
        if let Some(n) = aligned.filter(|n| *n > r.next_sequence) {
            // A jump: a playlist's sequence numbers are contiguous, so what is listed goes,
            // and the discontinuity before this segment now lies before the window.
            let gone = r
                .segments
                .drain(..)
                .filter(|s| s.listed.discontinuity)
                .count() as u64;
            r.dropped_discontinuities += gone + discontinuity as u64;
            discontinuity = false;
            r.next_sequence = n;
        }
        let sequence = r.next_sequence;
        r.next_sequence += 1;
        r.ended = false;
        let seconds = seg.seconds();
        // EXTINF rounded to the nearest integer must not exceed the target duration; it may
        // grow (never shrink) when a broadcaster's keyframe interval is longer than asked for.
        r.target_duration = r.target_duration.max(seconds.round() as u64);
        let bits_per_second = (seg.data.len() as f64 * 8.0 / seconds.max(0.001)) as u64;
        r.segments.push_back(Stored {
            listed: ListedSegment {
                sequence,
                seconds,
                discontinuity,
                program_date_time,
                uri: format!("{sequence}.ts"),
            },
            start: seg.start,
            data: seg.data.clone(),
            bits_per_second,
        });
        while r.segments.len() > self.cfg.window + KEEP_AFTER_WINDOW {
            if let Some(old) = r.segments.pop_front() {
                r.dropped_discontinuities += old.listed.discontinuity as u64;
            }
        }
        if let Some(v) = &seg.info.video {
            r.summary.width = Some(v.width);
            r.summary.height = Some(v.height);
            if seg.video_frames > 1 {
                let fps = seg.video_frames as f64 * TIMESCALE as f64 / seg.duration as f64;
                r.summary.frame_rate = Some(v.fps.unwrap_or((fps * 100.0).round() / 100.0));
            }
        } else {
            r.summary.width = None;
            r.summary.height = None;
            r.summary.frame_rate = None;
        }
        r.summary.codecs = seg.info.codecs();
        render_rendition(r, self.cfg.window);
        render_master(ch);
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
                render_rendition(r, self.cfg.window);
            }
        }
    }

    /// Marks one rendition ended (a transcoded rendition that finished after the source).
    pub fn end_rendition(&self, channel: &str, rendition: &str) {
        let mut map = self.write();
        if let Some(r) = map
            .get_mut(channel)
            .and_then(|ch| ch.renditions.get_mut(rendition))
        {
            r.ended = true;
            render_rendition(r, self.cfg.window);
        }
    }

    /// Forgets a channel's HLS (after the linger period).
    pub fn remove(&self, channel: &str) {
        self.write().remove(channel);
    }

    /// Drops one rendition (a transcoded rendition that stopped).
    pub fn remove_rendition(&self, channel: &str, rendition: &str) {
        let mut map = self.write();
        if let Some(ch) = map.get_mut(channel) {
            ch.renditions.remove(rendition);
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

    pub fn media_playlist(&self, channel: &str, rendition: &str) -> Result<Bytes, Lookup> {
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        let r = ch.renditions.get(rendition).ok_or(Lookup::NoRendition)?;
        Ok(r.playlist.clone())
    }

    /// A segment by its file name (`{sequence}.ts`).
    pub fn segment(&self, channel: &str, rendition: &str, name: &str) -> Result<Bytes, Lookup> {
        let seq: u64 = name
            .strip_suffix(".ts")
            .and_then(|n| n.parse().ok())
            .ok_or(Lookup::NoSegment)?;
        let map = self.read();
        let ch = map.get(channel).ok_or(Lookup::NoChannel)?;
        let r = ch.renditions.get(rendition).ok_or(Lookup::NoRendition)?;
        let first = r.segments.front().ok_or(Lookup::NoSegment)?.listed.sequence;
        let idx = seq.checked_sub(first).ok_or(Lookup::NoSegment)? as usize;
        r.segments
            .get(idx)
            .map(|s| s.data.clone())
            .ok_or(Lookup::NoSegment)
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
            .flat_map(|r| r.segments.iter())
            .map(|s| s.data.len())
            .sum()
    }
}

fn render_rendition(r: &mut RenditionHls, window: usize) {
    let skip = r.segments.len().saturating_sub(window);
    // Discontinuities in segments before the listed window count into DISCONTINUITY-SEQUENCE.
    r.discontinuity_sequence = r
        .segments
        .iter()
        .take(skip)
        .filter(|s| s.listed.discontinuity)
        .count() as u64
        + r.dropped_discontinuities;
    let listed: Vec<ListedSegment> = r
        .segments
        .iter()
        .skip(skip)
        .map(|s| s.listed.clone())
        .collect();
    let listed_bps: Vec<u64> = r
        .segments
        .iter()
        .skip(skip)
        .map(|s| s.bits_per_second)
        .collect();
    r.summary.bandwidth = listed_bps.iter().copied().max().unwrap_or(0);
    let total_bits: f64 = r
        .segments
        .iter()
        .skip(skip)
        .map(|s| s.data.len() as f64 * 8.0)
        .sum();
    let total_secs: f64 = listed.iter().map(|s| s.seconds).sum();
    r.summary.average_bandwidth = if total_secs > 0.0 {
        (total_bits / total_secs) as u64
    } else {
        0
    };
    let text = playlist::render_media(&MediaView {
        target_duration: r.target_duration,
        discontinuity_sequence: r.discontinuity_sequence,
        segments: &listed,
        ended: r.ended,
    });
    r.playlist = Bytes::from(text);
}

fn render_master(ch: &mut ChannelHls) {
    let mut v: Vec<&RenditionHls> = ch.renditions.values().collect();
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
    ch.master = Bytes::from(playlist::render_master(&variants));
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
        }
    }

    #[test]
    fn transcoded_renditions_take_the_source_sequence_numbers() {
        let store = HlsStore::new(StoreConfig {
            window: 6,
            segment_seconds: 2.0,
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
        assert!(!p.contains("3.ts"), "{p}");
        assert_eq!(
            store.segment("c", "360p", "5.ts").ok(),
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
}
