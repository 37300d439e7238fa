//! HLS playlist rendering (RFC 8216) with m3u8-rs: pure functions from a view of the stored
//! segments to playlist text. The HLS store calls them once per new segment and serves the
//! cached bytes, so rendering is never on the request path.

use chrono::{DateTime, Utc};
use m3u8_rs::{
    ExtTag, Map, MasterPlaylist, MediaPlaylist, MediaSegment, Resolution, VariantStream,
};

/// One segment as a media playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub sequence: u64,
    pub seconds: f64,
    pub discontinuity: bool,
    pub program_date_time: DateTime<Utc>,
    pub uri: String,
    /// `EXT-X-MAP` URI to announce before this segment (fMP4: first listed, or a new init).
    pub map: Option<String>,
    /// Low-latency parts of this segment still listed.
    pub parts: Vec<ListedPart>,
}

/// One low-latency part.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    pub seconds: f64,
    pub uri: String,
    pub independent: bool,
}

/// Another rendition's position, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<u64>,
}

/// The low-latency additions to a media playlist (RFC 8216bis section 4.4.3.7 ff.).
#[derive(Debug, Clone, PartialEq)]
pub struct LowLatency<'a> {
    pub part_target: f64,
    /// Parts of the segment being written.
    pub pending_parts: &'a [ListedPart],
    /// URI of the next part, for `EXT-X-PRELOAD-HINT`.
    pub preload_hint: Option<String>,
    pub reports: &'a [RenditionReport],
    /// Segments replaced by `EXT-X-SKIP` (delta update).
    pub skipped: usize,
}

/// Everything a media playlist says.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaView<'a> {
    pub target_duration: u64,
    /// Discontinuities that slid out of the window before the first listed segment.
    pub discontinuity_sequence: u64,
    pub segments: &'a [ListedSegment],
    pub ended: bool,
    pub low_latency: Option<LowLatency<'a>>,
}

/// Renders a media playlist.
pub fn render_media(view: &MediaView<'_>) -> String {
    let ll = view.low_latency.as_ref();
    let skipped = ll.map(|l| l.skipped).unwrap_or(0).min(view.segments.len());
    let fmp4 = view.segments.iter().any(|s| s.map.is_some()) || ll.is_some();
    let listed = &view.segments[skipped..];
    let pl = MediaPlaylist {
        version: Some(if ll.is_some() {
            9
        } else if fmp4 {
            6
        } else {
            3
        }),
        target_duration: view.target_duration,
        media_sequence: view.segments.first().map(|s| s.sequence).unwrap_or(0),
        discontinuity_sequence: view.discontinuity_sequence,
        end_list: view.ended,
        independent_segments: true,
        segments: listed
            .iter()
            .enumerate()
            .map(|(i, s)| MediaSegment {
                uri: s.uri.clone(),
                duration: s.seconds as f32,
                discontinuity: s.discontinuity,
                program_date_time: Some(s.program_date_time.fixed_offset()),
                // After a skip the first listed segment must repeat the map.
                map: s
                    .map
                    .clone()
                    .or_else(|| {
                        (i == 0 && skipped > 0)
                            .then(|| {
                                view.segments[..skipped]
                                    .iter()
                                    .rev()
                                    .find_map(|x| x.map.clone())
                            })
                            .flatten()
                    })
                    .map(|uri| Map {
                        uri,
                        ..Default::default()
                    }),
                unknown_tags: s.parts.iter().map(part_tag).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut text = write(|w| pl.write_to(w));
    // m3u8-rs has no low-latency tags: insert the header lines after its own header and the
    // trailing lines before ENDLIST.
    let Some(ll) = ll else {
        return text;
    };
    let mut header = format!(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={:.1}\n#EXT-X-PART-INF:PART-TARGET={:.3}\n",
        (ll.part_target * 3.0 * 1000.0).ceil() / 1000.0,
        view.target_duration as f64 * 6.0,
        ll.part_target
    );
    if skipped > 0 {
        header.push_str(&format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}\n"));
    }
    let header_end = header_end(&text);
    text.insert_str(header_end, &header);
    let mut tail = String::new();
    if !view.ended {
        for p in ll.pending_parts {
            tail.push_str(&part_tag(p).to_string());
            tail.push('\n');
        }
        if let Some(hint) = &ll.preload_hint {
            tail.push_str(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"\n"));
        }
    }
    for r in ll.reports {
        tail.push_str(&format!(
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
            r.uri, r.last_msn
        ));
        if let Some(p) = r.last_part {
            tail.push_str(&format!(",LAST-PART={p}"));
        }
        tail.push('\n');
    }
    let at = if view.ended {
        text.rfind("#EXT-X-ENDLIST").unwrap_or(text.len())
    } else {
        text.len()
    };
    text.insert_str(at, &tail);
    text
}

fn part_tag(p: &ListedPart) -> ExtTag {
    ExtTag {
        tag: "X-PART".into(),
        rest: Some(format!(
            "DURATION={:.5},URI=\"{}\"{}",
            p.seconds,
            p.uri,
            if p.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        )),
    }
}

/// Byte offset just past the playlist-level tags m3u8-rs writes first.
fn header_end(text: &str) -> usize {
    const HEADER: [&str; 6] = [
        "#EXTM3U",
        "#EXT-X-VERSION:",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-MEDIA-SEQUENCE:",
        "#EXT-X-DISCONTINUITY-SEQUENCE:",
    ];
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if HEADER.iter().any(|h| line.starts_with(h)) {
            end += line.len();
        } else {
            break;
        }
    }
    end
}

/// One variant of a multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub codecs: String,
}

/// Renders a multivariant playlist.
pub fn render_master(variants: &[Variant]) -> String {
    let pl = MasterPlaylist {
        version: Some(3),
        independent_segments: true,
        variants: variants
            .iter()
            .map(|v| VariantStream {
                uri: v.uri.clone(),
                bandwidth: v.bandwidth.max(1),
                average_bandwidth: Some(v.average_bandwidth.max(1)),
                codecs: (!v.codecs.is_empty()).then(|| v.codecs.clone()),
                resolution: v.resolution.map(|(w, h)| Resolution {
                    width: w as u64,
                    height: h as u64,
                }),
                frame_rate: v.frame_rate.map(|f| (f * 1000.0).round() / 1000.0),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    write(|w| pl.write_to(w))
}

fn write(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::with_capacity(1024);
    // Writing into a Vec cannot fail.
    let _ = f(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn seg(sequence: u64, discontinuity: bool) -> ListedSegment {
        ListedSegment {
            sequence,
            seconds: 2.002,
            discontinuity,
            program_date_time: Utc
                .timestamp_millis_opt(1_700_000_000_000 + sequence as i64 * 2000)
                .single()
                .expect("valid time"),
            uri: format!("{sequence}.ts"),
            map: None,
            parts: Vec::new(),
        }
    }

    #[test]
    fn media_playlist() {
        let segs = [seg(7, false), seg(8, true)];
        let text = render_media(&MediaView {
            target_duration: 2,
            discontinuity_sequence: 1,
            segments: &segs,
            ended: false,
            low_latency: None,
        });
        let want =
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n#EXTINF:2.002,\n7.ts\n\
#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n#EXTINF:2.002,\n8.ts\n";
        assert_eq!(text, want);
        let ended = render_media(&MediaView {
            target_duration: 2,
            discontinuity_sequence: 0,
            segments: &segs,
            ended: true,
            low_latency: None,
        });
        assert!(ended.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn master_playlist() {
        let text = render_master(&[Variant {
            uri: "source/index.m3u8".into(),
            bandwidth: 1_234_567,
            average_bandwidth: 1_000_000,
            resolution: Some((1280, 720)),
            frame_rate: Some(29.97003),
            codecs: "avc1.64001f,mp4a.40.2".into(),
        }]);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(text.contains("BANDWIDTH=1234567"));
        assert!(text.contains("AVERAGE-BANDWIDTH=1000000"));
        assert!(text.contains("RESOLUTION=1280x720"));
        assert!(text.contains("FRAME-RATE=29.97"));
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\""));
        assert!(text.ends_with("source/index.m3u8\n"));
    }

    #[test]
    fn low_latency_playlist() {
        let part = |m: u64, i: u64, ind: bool| ListedPart {
            seconds: 0.3,
            uri: format!("{m}.{i}.m4s"),
            independent: ind,
        };
        let mut segs = vec![seg(7, false), seg(8, false)];
        for s in &mut segs {
            s.uri = format!("{}.m4s", s.sequence);
        }
        segs[0].map = Some("init-1.mp4".into());
        segs[1].parts = vec![part(8, 0, true), part(8, 1, false)];
        let pending = [part(9, 0, true)];
        let reports = [RenditionReport {
            uri: "../360p/index.m3u8".into(),
            last_msn: 9,
            last_part: Some(0),
        }];
        let ll = LowLatency {
            part_target: 0.333,
            pending_parts: &pending,
            preload_hint: Some("9.1.m4s".into()),
            reports: &reports,
            skipped: 0,
        };
        let text = render_media(&MediaView {
            target_duration: 2,
            discontinuity_sequence: 0,
            segments: &segs,
            ended: false,
            low_latency: Some(ll.clone()),
        });
        let want =
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-MEDIA-SEQUENCE:7\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.000,CAN-SKIP-UNTIL=12.0\n\
#EXT-X-PART-INF:PART-TARGET=0.333\n\
#EXT-X-MAP:URI=\"init-1.mp4\"\n\
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n#EXTINF:2.002,\n7.m4s\n\
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n\
#EXT-X-PART:DURATION=0.30000,URI=\"8.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.30000,URI=\"8.1.m4s\"\n#EXTINF:2.002,\n8.m4s\n\
#EXT-X-PART:DURATION=0.30000,URI=\"9.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9.1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=9,LAST-PART=0\n";
        assert_eq!(text, want);

        // A delta update skips the first segment and repeats the map on the next one.
        let delta = render_media(&MediaView {
            target_duration: 2,
            discontinuity_sequence: 0,
            segments: &segs,
            ended: false,
            low_latency: Some(LowLatency { skipped: 1, ..ll }),
        });
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXT-X-MAP:URI=\"init-1.mp4\"\n"));
        assert!(!delta.contains("\n7.m4s\n"));
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:7\n"));
    }
}
