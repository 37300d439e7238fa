//! One rendition's state in the [`super::HlsStore`]: its stored segments and parts, init
//! segments, cached playlists and the `watch` channel blocking requests wait on. Only the
//! store's `write`, `render` and `read` modules touch it, under the store's lock.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use tokio::sync::watch;

use crate::hls::names::Epoch;
use crate::proto::playlist::{ListedPart, ListedSegment};

use super::{Position, RenditionSummary};

#[derive(Debug, Clone)]
pub(super) struct StoredPart {
    pub(super) listed: ListedPart,
    pub(super) data: Bytes,
}

#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) listed: ListedSegment,
    /// First DTS (90 kHz), to line up a rendition that joins late with the source.
    pub(super) start: i64,
    pub(super) data: Bytes,
    pub(super) bits_per_second: u64,
    pub(super) parts: Vec<StoredPart>,
    /// The store's number of the init segment it needs (`{epoch}-init-{n}.mp4`).
    pub(super) init_id: u32,
}

#[derive(Debug)]
pub(super) struct RenditionHls {
    pub(super) order: usize,
    /// Tags every object name of this rendition's life in the store (`crate::hls::names`).
    pub(super) epoch: Epoch,
    pub(super) segments: VecDeque<Stored>,
    /// Parts of the segment being written.
    pub(super) pending: Vec<StoredPart>,
    pub(super) next_sequence: u64,
    /// Discontinuities in segments already dropped from memory.
    pub(super) dropped_discontinuities: u64,
    pub(super) target_duration: u64,
    pub(super) ended: bool,
    /// Init segments by the store's number: the current one and those older listed segments
    /// still need. Numbers are never reused within an epoch, whatever the writers' own ids.
    pub(super) inits: BTreeMap<u32, Bytes>,
    pub(super) next_init: u32,
    /// The writer's init id → the store's number for it.
    pub(super) init_alias: BTreeMap<u32, u32>,
    pub(super) playlist: Bytes,
    /// The delta-update (`_HLS_skip=YES`) form of the playlist.
    pub(super) playlist_skip: Bytes,
    pub(super) summary: RenditionSummary,
    pub(super) position: watch::Sender<Position>,
}

impl RenditionHls {
    pub(super) fn new(name: &str, order: usize, target: u64, first_sequence: u64) -> Self {
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

    pub(super) fn notify(&self) {
        let p = Position {
            msn: self.next_sequence,
            parts: self.pending.len() as u64,
            ended: self.ended,
            version: self.position.borrow().version + 1,
        };
        self.position.send_replace(p);
    }

    /// Last (msn, part) for rendition reports.
    pub(super) fn last_position(&self) -> Option<(u64, Option<u64>)> {
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
pub(super) struct ChannelHls {
    pub(super) renditions: BTreeMap<String, RenditionHls>,
    pub(super) master: Bytes,
}
