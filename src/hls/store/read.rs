//! What reads the [`HlsStore`]: HTTP (playlists, segments, parts, init segments, the `watch`
//! channel blocking requests await) and the API (rendition summaries, bytes held). Every read
//! takes the read lock, clones a `Bytes` or a small value and leaves.

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::Container;
use crate::hls::names::{MediaKind, MediaName};

use super::{HlsStore, Lookup, Position, RenditionSummary};

impl HlsStore {
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
}
