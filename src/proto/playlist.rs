//! HLS playlist rendering (RFC 8216) with m3u8-rs: pure functions from a view of the stored
//! segments to playlist text. The HLS store calls them once per new segment and serves the
//! cached bytes, so rendering is never on the request path.

use chrono::{DateTime, Utc};
use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaSegment, Resolution, VariantStream};

/// One segment as a media playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub sequence: u64,
    pub seconds: f64,
    pub discontinuity: bool,
    pub program_date_time: DateTime<Utc>,
    pub uri: String,
}

/// Everything a media playlist says.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaView<'a> {
    pub target_duration: u64,
    /// Discontinuities that slid out of the window before the first listed segment.
    pub discontinuity_sequence: u64,
    pub segments: &'a [ListedSegment],
    pub ended: bool,
}

/// Renders a media playlist.
pub fn render_media(view: &MediaView<'_>) -> String {
    let pl = MediaPlaylist {
        version: Some(3),
        target_duration: view.target_duration,
        media_sequence: view.segments.first().map(|s| s.sequence).unwrap_or(0),
        discontinuity_sequence: view.discontinuity_sequence,
        end_list: view.ended,
        independent_segments: true,
        segments: view
            .segments
            .iter()
            .map(|s| MediaSegment {
                uri: s.uri.clone(),
                duration: s.seconds as f32,
                discontinuity: s.discontinuity,
                program_date_time: Some(s.program_date_time.fixed_offset()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    write(|w| pl.write_to(w))
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
}
