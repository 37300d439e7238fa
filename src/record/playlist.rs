//! VOD playlists of a recording, from its index rows (pure): the multivariant playlist (one
//! variant per recorded rendition) and each rendition's media playlist, `EVENT` while the show
//! is live (a late viewer can rewind to its start) and `VOD` with `ENDLIST` after. Segments carry
//! `EXT-X-MAP` (again after each change), `PROGRAM-DATE-TIME` and `DISCONTINUITY` at
//! reconnects and codec changes.

use std::fmt::Write;

use crate::db::recordings::{RenditionRow, SegmentRow};

pub fn master(renditions: &[RenditionRow]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in renditions {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            r.peak_bps.max(1),
            r.average_bps.max(1)
        );
        if !r.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", r.codecs);
        }
        if !r.resolution.is_empty() {
            let _ = write!(out, ",RESOLUTION={}", r.resolution);
        }
        let _ = write!(out, "\n{}/index.m3u8\n", r.rendition);
    }
    out
}

pub fn media(segments: &[SegmentRow], ended: bool) -> String {
    let longest = segments.iter().map(|s| s.duration).max().unwrap_or(0) as f64 / 90_000.0;
    let target = longest.ceil().max(1.0) as u64;
    let first = segments.first().map_or(0, |s| s.seq);
    let mut out = String::new();
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
         #EXT-X-PLAYLIST-TYPE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        if ended { "VOD" } else { "EVENT" }
    );
    let mut map: Option<&str> = None;
    for s in segments {
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(s.init.as_str()) || s.discontinuity {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", s.init);
            map = Some(&s.init);
        }
        let _ = write!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n{}\n",
            s.program_time,
            s.duration as f64 / 90_000.0,
            s.file
        );
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: i64, init: &str, disc: bool) -> SegmentRow {
        SegmentRow {
            rendition: "source".into(),
            seq,
            file: format!("{seq:06}.m4s"),
            init: init.into(),
            duration: 180_000 + seq,
            program_time: format!("2026-12-02T17:00:0{seq}.000Z"),
            discontinuity: disc,
            bytes: 1,
            codecs: "avc1.64001f".into(),
            resolution: "320x180".into(),
        }
    }

    #[test]
    fn event_while_live_vod_after_with_maps_and_discontinuities() {
        let segs = [
            seg(1, "init-1.mp4", false),
            seg(2, "init-1.mp4", false),
            seg(3, "init-1.mp4", true),
            seg(4, "init-2.mp4", false),
        ];
        let live = media(&segs, false);
        assert!(live.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
        assert!(!live.contains("ENDLIST"));
        let done = media(&segs, true);
        assert!(done.contains("#EXT-X-PLAYLIST-TYPE:VOD") && done.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(done.matches("#EXT-X-MAP:URI=\"init-1.mp4\"").count(), 2);
        assert_eq!(done.matches("#EXT-X-MAP:URI=\"init-2.mp4\"").count(), 1);
        assert_eq!(done.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert_eq!(done.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 4);
        assert!(done.contains("#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(done.contains("#EXTINF:2.000,\n000001.m4s\n"));
        let m = master(&[RenditionRow {
            rendition: "source".into(),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: "320x180".into(),
            peak_bps: 500_000,
            average_bps: 400_000,
        }]);
        assert!(m.contains(
            "BANDWIDTH=500000,AVERAGE-BANDWIDTH=400000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=320x180\nsource/index.m3u8\n"
        ));
    }
}
