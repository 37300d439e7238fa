//! Playlist rendering for the [`HlsStore`]: on every write, the media playlists of a channel
//! (with rendition reports, the low-latency parts and the delta-update form) and its master
//! playlist are rendered once into `Bytes`, so that readers only clone them.

use bytes::Bytes;

use crate::config::Container;
use crate::hls::names;
use crate::proto::playlist::{
    self, ListedPart, ListedSegment, LowLatency, MediaView, RenditionReport, Variant,
};

use super::rendition::{ChannelHls, RenditionHls, Stored};
use super::{HlsStore, StoreConfig, SEGMENTS_WITH_PARTS};

impl HlsStore {
    /// Re-renders every media playlist of a channel (rendition reports tie them together).
    pub(super) fn render_channel(&self, ch: &mut ChannelHls) {
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

pub(super) fn render_master(ch: &mut ChannelHls) {
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
