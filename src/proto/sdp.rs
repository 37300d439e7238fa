//! SDP as WHIP needs it before str0m sees it: a screen for offers (size, media sections,
//! codecs) that decides which one video codec onair answers with, and the
//! `application/trickle-ice-sdpfrag` bodies of WHIP PATCH requests (RFC 8840, RFC 9725 4.3).
//!
//! str0m parses and answers the offer; this screen runs first so that a hostile offer (huge,
//! hundreds of media sections, no media at all) is refused with a clear reason before any
//! session state exists, and so that the answer names only the cheapest usable video codec:
//! H.264 passes through untouched, VP8, VP9 and AV1 are re-encoded (in that order of cost).

/// Largest offer accepted, in bytes. Chrome's offers with every codec are ~6 KiB; OBS's ~1 KiB.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Media sections accepted in one offer (audio + video, and a data channel if a page adds one).
pub const MAX_MEDIA_SECTIONS: usize = 8;
/// Lines accepted in one offer.
pub const MAX_LINES: usize = 2000;

/// Video codecs onair takes, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Passed through (packetization-mode 1, or OBS's offer without fmtp).
    H264,
    /// Decoded and encoded to H.264.
    Vp8,
    Vp9,
    Av1,
}

impl VideoCodec {
    pub fn name(&self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::Av1 => "AV1",
        }
    }

    fn from_rtpmap(name: &str) -> Option<VideoCodec> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(VideoCodec::H264),
            "VP8" => Some(VideoCodec::Vp8),
            "VP9" => Some(VideoCodec::Vp9),
            "AV1" | "AV1X" => Some(VideoCodec::Av1),
            _ => None,
        }
    }
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("offer is {len} bytes; at most {MAX_OFFER_BYTES} are accepted")]
    TooLarge { len: usize },
    #[error("offer is not SDP: {reason}")]
    Malformed { reason: String },
    #[error("offer has {count} media sections; at most {MAX_MEDIA_SECTIONS} are accepted")]
    TooManySections { count: usize },
    #[error("offer has no audio or video media section")]
    NoMedia,
    #[error("no usable video codec in the offer (onair takes H264, VP8, VP9 or AV1 sent to it)")]
    NoVideoCodec,
}

impl SdpError {
    /// Whether the offer was well-formed but offers nothing onair can take (HTTP 406, as
    /// opposed to 400 for a broken offer).
    pub fn not_acceptable(&self) -> bool {
        matches!(
            self,
            SdpError::NoMedia | SdpError::NoVideoCodec | SdpError::TooManySections { .. }
        )
    }
}

/// What the screen found in an acceptable offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// The video codec to answer with.
    pub video: VideoCodec,
    /// Whether an audio section offers Opus (other audio is refused in the answer).
    pub opus: bool,
    /// Every video codec the offer names, in offer order (for the log line).
    pub offered: Vec<VideoCodec>,
    pub sections: usize,
}

#[derive(Default)]
struct Section {
    kind: String,
    /// The peer sends on it: `sendonly` or `sendrecv` (the default).
    sends: bool,
    codecs: Vec<String>,
}

/// Screens a WHIP offer: size, shape, and the codecs of the audio and video sections that the
/// peer sends.
pub fn screen_offer(sdp: &str) -> Result<OfferSummary, SdpError> {
    if sdp.len() > MAX_OFFER_BYTES {
        return Err(SdpError::TooLarge { len: sdp.len() });
    }
    let malformed = |reason: &str| SdpError::Malformed {
        reason: reason.to_string(),
    };
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next().map(str::trim) != Some("v=0") {
        return Err(malformed("it does not start with v=0"));
    }
    let mut sections: Vec<Section> = Vec::new();
    let mut count = 1;
    for line in lines {
        count += 1;
        if count > MAX_LINES {
            return Err(malformed(&format!("more than {MAX_LINES} lines")));
        }
        if line.is_empty() {
            continue;
        }
        let (kind, value) = match line.split_once('=') {
            Some((k, v)) if k.len() == 1 => (k, v),
            _ => return Err(malformed("a line is not of the form x=value")),
        };
        if kind == "m" {
            if sections.len() == MAX_MEDIA_SECTIONS {
                let total = sdp.lines().filter(|l| l.starts_with("m=")).count();
                return Err(SdpError::TooManySections { count: total });
            }
            let media = value.split_whitespace().next().unwrap_or_default();
            sections.push(Section {
                kind: media.to_ascii_lowercase(),
                sends: true,
                codecs: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if kind != "a" {
            continue;
        }
        match value {
            "recvonly" | "inactive" => section.sends = false,
            "sendonly" | "sendrecv" => section.sends = true,
            _ => {
                if let Some(map) = value.strip_prefix("rtpmap:") {
                    let codec = map
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.split('/').next())
                        .ok_or_else(|| malformed("an a=rtpmap line names no codec"))?;
                    section.codecs.push(codec.to_string());
                }
            }
        }
    }
    let media: Vec<&Section> = sections
        .iter()
        .filter(|s| s.kind == "audio" || s.kind == "video")
        .collect();
    if media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    let offered: Vec<VideoCodec> = media
        .iter()
        .filter(|s| s.kind == "video" && s.sends)
        .flat_map(|s| s.codecs.iter())
        .filter_map(|c| VideoCodec::from_rtpmap(c))
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c);
            }
            v
        });
    let video = [
        VideoCodec::H264,
        VideoCodec::Vp8,
        VideoCodec::Vp9,
        VideoCodec::Av1,
    ]
    .into_iter()
    .find(|c| offered.contains(c))
    .ok_or(SdpError::NoVideoCodec)?;
    let opus = media
        .iter()
        .filter(|s| s.kind == "audio" && s.sends)
        .flat_map(|s| s.codecs.iter())
        .any(|c| c.eq_ignore_ascii_case("opus"));
    Ok(OfferSummary {
        video,
        opus,
        offered,
        sections: sections.len(),
    })
}

/// A trickle-ice-sdpfrag body (RFC 8840 section 9): the ICE credentials it names and its
/// candidates (the text after `a=candidate:`, with the section's mid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceFragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `(mid, candidate line without "a=")`.
    pub candidates: Vec<(Option<String>, String)>,
    pub end_of_candidates: bool,
}

/// Candidates accepted in one PATCH.
pub const MAX_FRAGMENT_CANDIDATES: usize = 64;

/// Parses a trickle-ice-sdpfrag body.
pub fn parse_ice_fragment(body: &str) -> Result<IceFragment, SdpError> {
    if body.len() > MAX_OFFER_BYTES {
        return Err(SdpError::TooLarge { len: body.len() });
    }
    let mut frag = IceFragment::default();
    let mut mid = None;
    for line in body.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            mid = None;
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            return Err(SdpError::Malformed {
                reason: "a fragment line is neither m= nor a=".into(),
            });
        };
        if let Some(v) = attr.strip_prefix("ice-ufrag:") {
            frag.ufrag = Some(v.trim().to_string());
        } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
            frag.pwd = Some(v.trim().to_string());
        } else if let Some(v) = attr.strip_prefix("mid:") {
            mid = Some(v.trim().to_string());
        } else if attr.starts_with("candidate:") {
            if frag.candidates.len() == MAX_FRAGMENT_CANDIDATES {
                return Err(SdpError::Malformed {
                    reason: format!("more than {MAX_FRAGMENT_CANDIDATES} candidates"),
                });
            }
            frag.candidates.push((mid.clone(), attr.to_string()));
        } else if attr == "end-of-candidates" {
            frag.end_of_candidates = true;
        }
    }
    Ok(frag)
}

/// The `a=ice-ufrag` of an SDP (the session's, or the first section's).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OBS 30+ sends (libdatachannel: no fmtp on H264 or opus, no candidates).
    pub const OBS_OFFER: &str = "v=0\r\no=rtc 123 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=msid-semantic:WMS *\r\na=ice-options:ice2,trickle\r\n\
a=fingerprint:sha-256 00:11\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
a=ssrc:1 cname:x\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=setup:actpass\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n\
a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n";

    fn offer(video: &[&str], audio: &[&str]) -> String {
        let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        s.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
        for (i, c) in audio.iter().enumerate() {
            s.push_str(&format!("a=rtpmap:{} {c}/48000/2\r\n", 100 + i));
        }
        s.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
        for (i, c) in video.iter().enumerate() {
            s.push_str(&format!("a=rtpmap:{} {c}/90000\r\n", 96 + i));
        }
        s
    }

    #[test]
    fn the_cheapest_video_codec_is_chosen() {
        let cases: &[(&[&str], Result<VideoCodec, SdpError>)] = &[
            (&["VP8", "VP9", "AV1", "H264"], Ok(VideoCodec::H264)),
            (&["VP9", "VP8"], Ok(VideoCodec::Vp8)),
            (&["AV1", "VP9"], Ok(VideoCodec::Vp9)),
            (&["AV1"], Ok(VideoCodec::Av1)),
            (&["h264", "rtx"], Ok(VideoCodec::H264)),
            (&["H265"], Err(SdpError::NoVideoCodec)),
            (&[], Err(SdpError::NoVideoCodec)),
        ];
        for (codecs, want) in cases {
            let got = screen_offer(&offer(codecs, &["opus"])).map(|s| s.video);
            assert_eq!(&got, want, "{codecs:?}");
        }
        let s = screen_offer(&offer(&["VP8"], &["PCMU"])).expect("ok");
        assert!(!s.opus);
    }

    #[test]
    fn obs_offer_is_accepted() {
        let s = screen_offer(OBS_OFFER).expect("obs offer");
        assert_eq!(s.video, VideoCodec::H264);
        assert!(s.opus);
        assert_eq!(s.sections, 2);
        assert_eq!(ice_ufrag(OBS_OFFER), Some("abcd"));
    }

    #[test]
    fn hostile_offers_are_refused() {
        assert!(matches!(
            screen_offer(&"v=0\r\n".repeat(20_000)),
            Err(SdpError::TooLarge { .. })
        ));
        assert!(matches!(
            screen_offer("hello"),
            Err(SdpError::Malformed { .. })
        ));
        assert!(matches!(
            screen_offer("v=0\r\nnot a line\r\n"),
            Err(SdpError::Malformed { .. })
        ));
        let mut many = offer(&["H264"], &["opus"]);
        for _ in 0..300 {
            many.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n");
        }
        let e = screen_offer(&many).unwrap_err();
        assert_eq!(e, SdpError::TooManySections { count: 302 });
        assert!(e.not_acceptable());
        let none = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(screen_offer(none), Err(SdpError::NoMedia));
        let data_only = format!("{none}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        assert_eq!(screen_offer(&data_only), Err(SdpError::NoMedia));
        // Video the peer only wants to receive is not something it can publish.
        let recv = offer(&["H264"], &["opus"]).replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n",
        );
        assert_eq!(screen_offer(&recv), Err(SdpError::NoVideoCodec));
    }

    #[test]
    fn ice_fragments() {
        let body =
            "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\n\
a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
a=end-of-candidates\r\n";
        let f = parse_ice_fragment(body).expect("fragment");
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 1);
        assert_eq!(f.candidates[0].0.as_deref(), Some("0"));
        assert!(f.candidates[0].1.starts_with("candidate:1387637174 1 udp"));
        assert!(f.end_of_candidates);
        assert!(parse_ice_fragment("garbage").is_err());
        let many = "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n".repeat(65);
        assert!(parse_ice_fragment(&many).is_err());
    }
}
