//! What changes the [`HlsStore`]: the segmenters' init segments, parts and segments (with
//! the sequence alignment of transcoded renditions and the sliding window), the end of a
//! stream or rendition, and the removal of a channel or rendition. Every write re-renders the
//! playlists it affects (`render`) and wakes the rendition's waiters.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::Container;
use crate::hls::names;
use crate::hls::segmenter::{Part, Segment};
use crate::proto::media::TIMESCALE;
use crate::proto::playlist::{ListedPart, ListedSegment};

use super::render::render_master;
use super::rendition::{Stored, StoredPart};
use super::{HlsStore, KEEP_AFTER_WINDOW, SEGMENTS_WITH_PARTS};

impl HlsStore {
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
}
