//! Ladder planning: which configured renditions a given source gets and with what encoder
//! settings. Pure (no ffmpeg, no clock) so the rules are table-tested: no work for nothing (a
//! rendition at or above an H.264 source's height, or above its measured bitrate, is skipped:
//! the source rendition already serves those viewers; an HEVC or AV1 source only skips
//! renditions taller than itself, since its H.264 ladder is what most browsers play), keep the aspect ratio with even
//! dimensions, choose a browser-safe H.264 level, VBV limits, and the x264 options that keep
//! every rendition's keyframes on the source's. [`SourceMeter`] measures the source's video
//! bitrate over its first whole GOP(s) before the plan is made.

use crate::config::RenditionConfig;
use crate::proto::media::{VideoCodec, TIMESCALE};

/// One rendition as it will be encoded for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionPlan {
    pub name: String,
    /// Position in the multivariant playlist (the source is 0).
    pub order: usize,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub preset: String,
    pub profile: String,
    /// H.264 level as x264 spells it ("3.1").
    pub level: &'static str,
    /// Output frame rate cap, if below the source's.
    pub max_fps: Option<f64>,
    /// Expected frames per second out (for rate control and the level).
    pub fps: f64,
    /// x264 `tune=zerolatency` (no lookahead): for a live browser stream converted to H.264,
    /// where the lookahead's frames would add their duration to the glass-to-glass delay.
    pub zerolatency: bool,
}

impl RenditionPlan {
    /// A relative measure of encoding cost (luma samples per second), used to pick which
    /// rendition to drop first under load.
    pub fn cost(&self) -> f64 {
        self.width as f64 * self.height as f64 * self.fps
    }

    /// Peak bitrate for VBV: 10% above the average, as streaming ladders usually allow.
    pub fn maxrate_kbps(&self) -> u32 {
        self.video_kbps + self.video_kbps / 10
    }

    /// VBV buffer: two seconds of average bitrate, so one 2 s segment's size stays near
    /// `video_kbps` and the measured peak BANDWIDTH stays honest.
    pub fn bufsize_kbps(&self) -> u32 {
        self.video_kbps * 2
    }

    /// x264 options (`x264-params`) that align keyframes with the source: no scene-cut
    /// keyframes, no automatic keyframes at all (`keyint=infinite`: the source decides, we
    /// force an IDR on each of its keyframes, `forced-idr`), closed GOPs. `bframes=0` so that
    /// DTS equals PTS: the segmenter cuts on DTS, and with B-frames each rendition's cut would
    /// sit a reorder delay before the source's (and latency grows by that delay too).
    /// `force-cfr=1`: rate control and the SPS timing info use the nominal frame rate (so
    /// players read FRAME-RATE 30, not a 90 kHz tick rate); timestamps still pass through.
    pub fn x264_params(&self) -> String {
        "scenecut=0:forced-idr=1:keyint=infinite:min-keyint=1:open-gop=0:bframes=0:force-cfr=1"
            .to_string()
    }
}

/// Why a configured rendition is not encoded for a stream; the source rendition is listed in
/// its place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The rendition is as tall as the source or taller (it would be a copy or an upscale).
    Height { source_height: u32 },
    /// The rendition would get more bits than the source has.
    Bitrate { source_video_kbps: u32 },
    /// The source's size is unknown (no usable video configuration).
    NoVideo,
}

/// A configured rendition that a stream does not get.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub name: String,
    #[serde(flatten)]
    pub reason: SkipReason,
    /// The rendition that serves its viewers instead (always the source).
    pub instead: &'static str,
}

/// The renditions a `src_codec` source of `src_width` x `src_height` at `src_fps` (and, when
/// measured, `src_video_kbps` of video) gets, in ladder order, and those skipped with the
/// reason. Only an H.264 source serves a rendition's viewers itself; for HEVC and AV1 the
/// ladder is the browser-playable copy, so only renditions taller than the source (upscaling)
/// are skipped.
pub fn plan(
    ladder: &[RenditionConfig],
    src_codec: VideoCodec,
    src_width: u32,
    src_height: u32,
    src_fps: f64,
    src_video_kbps: Option<u32>,
) -> (Vec<RenditionPlan>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in ladder.iter().enumerate() {
        let h264 = src_codec == VideoCodec::Avc;
        let reason = if src_width == 0 || src_height == 0 {
            Some(SkipReason::NoVideo)
        } else if r.height > src_height || (h264 && r.height == src_height) {
            Some(SkipReason::Height {
                source_height: src_height,
            })
        } else if !h264 {
            None
        } else {
            src_video_kbps
                .filter(|kbps| r.video_kbps > *kbps)
                .map(|kbps| SkipReason::Bitrate {
                    source_video_kbps: kbps,
                })
        };
        if let Some(reason) = reason {
            skipped.push(Skipped {
                name: r.name.clone(),
                reason,
                instead: crate::hls::SOURCE,
            });
            continue;
        }
        let width = scaled_width(src_width, src_height, r.height);
        let fps = match r.max_fps {
            Some(max) if max < src_fps => max,
            _ => src_fps,
        };
        let max_fps = r.max_fps.filter(|m| *m < src_fps);
        let profile = r.profile.clone().unwrap_or_else(|| "high".to_string());
        let high = profile == "high";
        let maxrate = r.video_kbps + r.video_kbps / 10;
        out.push(RenditionPlan {
            name: r.name.clone(),
            order: i + 1,
            width,
            height: r.height,
            video_kbps: r.video_kbps,
            audio_kbps: r.audio_kbps,
            preset: r.preset.clone(),
            level: level_for(width, r.height, fps, maxrate, high),
            profile,
            max_fps,
            fps,
            zerolatency: false,
        });
    }
    (out, skipped)
}

/// Width for `height` keeping the source's aspect ratio, rounded to an even number (4:2:0
/// chroma needs even dimensions).
pub fn scaled_width(src_width: u32, src_height: u32, height: u32) -> u32 {
    let w = (src_width as u64 * height as u64 + src_height as u64 / 2) / src_height.max(1) as u64;
    let w = (w as u32 + 1) & !1;
    w.max(2)
}

/// The lowest H.264 level (at least 3.0, which every browser and phone decodes) whose frame
/// size, macroblock rate and bitrate limits (ITU-T H.264 Table A-1) fit.
pub fn level_for(width: u32, height: u32, fps: f64, maxrate_kbps: u32, high: bool) -> &'static str {
    // (name, MaxFS in macroblocks, MaxMBPS, MaxBR in kbit/s for Baseline/Main)
    const LEVELS: [(&str, u64, u64, u64); 9] = [
        ("3.0", 1_620, 40_500, 10_000),
        ("3.1", 3_600, 108_000, 14_000),
        ("3.2", 5_120, 216_000, 20_000),
        ("4.0", 8_192, 245_760, 20_000),
        ("4.1", 8_192, 245_760, 50_000),
        ("4.2", 8_704, 522_240, 50_000),
        ("5.0", 22_080, 589_824, 135_000),
        ("5.1", 36_864, 983_040, 240_000),
        ("5.2", 36_864, 2_073_600, 240_000),
    ];
    let mbs = (width as u64).div_ceil(16) * (height as u64).div_ceil(16);
    let mbps = (mbs as f64 * fps).ceil() as u64;
    // High profile may use 1.25x the bitrate (Table A-2, cpbBrVclFactor 1250 vs 1000).
    let br_factor = if high { 1.25 } else { 1.0 };
    LEVELS
        .iter()
        .find(|(_, fs, rate, br)| {
            mbs <= *fs && mbps <= *rate && maxrate_kbps as f64 <= *br as f64 * br_factor
        })
        .map(|l| l.0)
        .unwrap_or("5.2")
}

/// Measures the source's video bitrate before the ladder is planned: from the first keyframe
/// to the first keyframe at least [`SourceMeter::MIN_SPAN`] later (whole GOPs, so a big IDR
/// is averaged with its GOP), or over [`SourceMeter::MAX_SPAN`] when keyframes are rarer.
#[derive(Debug, Default, Clone)]
pub struct SourceMeter {
    /// DTS of the keyframe the measurement starts at.
    start: Option<i64>,
    bytes: u64,
    kbps: Option<u32>,
}

impl SourceMeter {
    /// Shortest measurement, in 90 kHz ticks (1.5 s).
    pub const MIN_SPAN: i64 = TIMESCALE * 3 / 2;
    /// Longest measurement (4 s): a source with longer GOPs is measured over part of one.
    pub const MAX_SPAN: i64 = TIMESCALE * 4;

    /// Counts one video packet; returns the bitrate once it is known.
    pub fn push(&mut self, dts: i64, keyframe: bool, bytes: usize) -> Option<u32> {
        if self.kbps.is_some() {
            return self.kbps;
        }
        let Some(start) = self.start else {
            if keyframe {
                self.start = Some(dts);
                self.bytes = bytes as u64;
            }
            return None;
        };
        let span = dts - start;
        if (keyframe && span >= Self::MIN_SPAN) || span >= Self::MAX_SPAN {
            let kbps = self.bytes as f64 * 8.0 / (span as f64 / TIMESCALE as f64) / 1000.0;
            self.kbps = Some(kbps.round().clamp(1.0, u32::MAX as f64) as u32);
            return self.kbps;
        }
        if span < 0 {
            // A timestamp jump backwards: start again at the next keyframe.
            *self = Self::default();
            return None;
        }
        self.bytes += bytes as u64;
        None
    }

    /// Whether the measurement has begun (a keyframe was seen).
    pub fn started(&self) -> bool {
        self.start.is_some()
    }
}

/// Frame-rate cap: keeps a frame when it is due, always keeps keyframes (they carry the
/// segment cuts) and re-anchors the cadence on them.
#[derive(Debug, Clone)]
pub struct FpsLimiter {
    interval: Option<i64>,
    next_due: Option<i64>,
}

impl FpsLimiter {
    pub fn new(max_fps: Option<f64>) -> Self {
        Self {
            interval: max_fps
                .filter(|f| *f > 0.0)
                .map(|f| (TIMESCALE as f64 / f).round() as i64),
            next_due: None,
        }
    }

    /// Whether the frame at `pts` is encoded.
    pub fn keep(&mut self, pts: i64, keyframe: bool) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        // A quarter interval of slack absorbs the millisecond jitter of RTMP timestamps.
        let due = match self.next_due {
            Some(d) => pts >= d - interval / 4,
            None => true,
        };
        if keyframe || due {
            self.next_due = Some(pts + interval);
            true
        } else {
            false
        }
    }
}

/// Frame rate from video timestamps, for sources whose SPS carries no timing info (x264 rate
/// control and the playlist's FRAME-RATE need it; guessing 30 for a 60 fps source would double
/// the bitrate). The mean of the steps near the median ignores the odd dropped or late frame
/// while averaging out RTMP's millisecond rounding (33, 33, 34 ms at 30 fps); the result snaps
/// to the broadcast rates when within 1%.
#[derive(Debug, Default, Clone)]
pub struct FpsEstimator {
    last: Option<i64>,
    steps: Vec<i64>,
}

impl FpsEstimator {
    /// Steps needed before [`FpsEstimator::estimate`] answers.
    pub const SAMPLES: usize = 10;

    pub fn push(&mut self, dts: i64) {
        if let Some(last) = self.last {
            let step = dts - last;
            if step > 0 && self.steps.len() < 64 {
                self.steps.push(step);
            }
        }
        self.last = Some(dts);
    }

    pub fn estimate(&self) -> Option<f64> {
        if self.steps.len() < Self::SAMPLES {
            return None;
        }
        let mut s = self.steps.clone();
        s.sort_unstable();
        let median = s[s.len() / 2] as f64;
        let inliers: Vec<f64> = s
            .iter()
            .map(|x| *x as f64)
            .filter(|x| (x - median).abs() <= median * 0.25)
            .collect();
        let mean = inliers.iter().sum::<f64>() / inliers.len().max(1) as f64;
        let fps = TIMESCALE as f64 / mean;
        const RATES: [f64; 8] = [
            24000.0 / 1001.0,
            24.0,
            25.0,
            30000.0 / 1001.0,
            30.0,
            50.0,
            60000.0 / 1001.0,
            60.0,
        ];
        let snapped = RATES
            .iter()
            .copied()
            .min_by(|a, b| (a - fps).abs().total_cmp(&(b - fps).abs()))
            .filter(|r| (r - fps).abs() / r < 0.01);
        Some(snapped.unwrap_or(fps).clamp(1.0, 240.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, height: u32, kbps: u32) -> RenditionConfig {
        RenditionConfig {
            name: name.into(),
            height,
            video_kbps: kbps,
            audio_kbps: 96,
            preset: "veryfast".into(),
            max_fps: None,
            profile: None,
        }
    }

    #[test]
    fn an_hevc_or_av1_source_keeps_its_h264_ladder() {
        let ladder = [
            r("720p", 720, 2800),
            r("480p", 480, 1400),
            r("360p", 360, 800),
        ];
        let names = |v: &[RenditionPlan]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        for codec in [VideoCodec::Hevc, VideoCodec::Av1] {
            // A 720p HEVC source at 300 kb/s: browsers without HEVC need every H.264 rung at
            // or below its height, whatever the source's bitrate.
            let (plans, skipped) = plan(&ladder, codec, 1280, 720, 30.0, Some(300));
            assert_eq!(names(&plans), ["720p", "480p", "360p"], "{codec:?}");
            assert!(skipped.is_empty(), "{codec:?}");
            // No upscaling, though.
            let (plans, skipped) = plan(&ladder, codec, 854, 480, 30.0, Some(300));
            assert_eq!(names(&plans), ["480p", "360p"], "{codec:?}");
            assert_eq!(skipped[0].reason, SkipReason::Height { source_height: 480 });
        }
    }

    #[test]
    fn skips_renditions_at_or_above_the_source_height_or_bitrate() {
        let ladder = [
            r("720p", 720, 2800),
            r("480p", 480, 1400),
            r("360p", 360, 800),
        ];
        let names = |v: &[RenditionPlan]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        // A 720p source: no 720p re-encode next to the passthrough.
        let (plans, skipped) = plan(&ladder, VideoCodec::Avc, 1280, 720, 30.0, Some(3500));
        assert_eq!(names(&plans), ["480p", "360p"]);
        assert_eq!(
            skipped,
            vec![Skipped {
                name: "720p".into(),
                reason: SkipReason::Height { source_height: 720 },
                instead: "source",
            }]
        );
        // A 1080p source at 2 Mb/s: 720p at 2.8 Mb/s would get more bits than the source has.
        let (plans, skipped) = plan(&ladder, VideoCodec::Avc, 1920, 1080, 30.0, Some(2000));
        assert_eq!(names(&plans), ["480p", "360p"]);
        assert_eq!(
            skipped[0].reason,
            SkipReason::Bitrate {
                source_video_kbps: 2000
            }
        );
        // Exactly the source's bitrate is still worth encoding at a lower height.
        let (plans, _) = plan(&ladder, VideoCodec::Avc, 1920, 1080, 30.0, Some(2800));
        assert_eq!(names(&plans), ["720p", "480p", "360p"]);
        // Unmeasured bitrate: only the height rule.
        let (plans, _) = plan(&ladder, VideoCodec::Avc, 1920, 1080, 30.0, None);
        assert_eq!(names(&plans), ["720p", "480p", "360p"]);
        // Both rules at once, and the reasons as the API shows them.
        let (plans, skipped) = plan(&ladder, VideoCodec::Avc, 854, 480, 30.0, Some(600));
        assert!(plans.is_empty());
        let json = serde_json::to_value(&skipped).expect("json");
        assert_eq!(
            json,
            serde_json::json!([
                {"name": "720p", "reason": "height", "source_height": 480, "instead": "source"},
                {"name": "480p", "reason": "height", "source_height": 480, "instead": "source"},
                {"name": "360p", "reason": "bitrate", "source_video_kbps": 600, "instead": "source"},
            ])
        );
    }

    #[test]
    fn source_meter_measures_whole_gops() {
        let tick = TIMESCALE / 30;
        // 2 s GOPs at 30 fps: a 60 kB IDR, then 10 kB frames; measured at the second IDR.
        let mut m = SourceMeter::default();
        assert_eq!(
            m.push(-3 * tick, false, 9_999),
            None,
            "before the first keyframe"
        );
        assert!(!m.started());
        let mut kbps = None;
        for i in 0..=60 {
            let key = i % 60 == 0;
            kbps = m.push(i * tick, key, if key { 60_000 } else { 10_000 });
            if i < 60 {
                assert_eq!(kbps, None, "frame {i}");
            }
        }
        // (60,000 + 59 x 10,000) bytes over 2 s.
        assert_eq!(kbps, Some(2_600));
        assert_eq!(m.push(61 * tick, false, 1), Some(2_600), "stays measured");

        // 0.5 s GOPs: measured at the first keyframe 1.5 s or more after the start.
        let mut m = SourceMeter::default();
        let mut at = None;
        for i in 0..=60 {
            if m.push(i * tick, i % 15 == 0, 1_000).is_some() && at.is_none() {
                at = Some(i);
            }
        }
        assert_eq!(at, Some(45));

        // No second keyframe: measured after 4 s anyway.
        let mut m = SourceMeter::default();
        let mut at = None;
        for i in 0..200 {
            if m.push(i * tick, i == 0, 1_000).is_some() && at.is_none() {
                at = Some(i);
            }
        }
        assert_eq!(at, Some(120));
    }

    #[test]
    fn never_upscales_and_keeps_aspect() {
        let ladder = [
            r("720p", 720, 2800),
            r("480p", 480, 1400),
            r("360p", 360, 800),
        ];
        // (source size, renditions (name, width, height), skipped)
        type Case = ((u32, u32), Vec<(&'static str, u32, u32)>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (
                (1280, 720),
                vec![("480p", 854, 480), ("360p", 640, 360)],
                vec!["720p"],
            ),
            ((640, 360), vec![], vec!["720p", "480p", "360p"]),
            ((854, 480), vec![("360p", 642, 360)], vec!["720p", "480p"]),
            ((320, 180), vec![], vec!["720p", "480p", "360p"]),
            (
                (1920, 1080),
                vec![("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)],
                vec![],
            ),
            // 4:3 source, odd result rounded to even.
            (
                (1024, 768),
                vec![("720p", 960, 720), ("480p", 640, 480), ("360p", 480, 360)],
                vec![],
            ),
            ((0, 0), vec![], vec!["720p", "480p", "360p"]),
        ];
        for ((w, h), want, want_skipped) in cases {
            let (plans, skipped) = plan(&ladder, VideoCodec::Avc, w, h, 30.0, None);
            let got: Vec<_> = plans
                .iter()
                .map(|p| (p.name.as_str(), p.width, p.height))
                .collect();
            assert_eq!(got, want, "{w}x{h}");
            let skipped: Vec<_> = skipped.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(skipped, want_skipped, "{w}x{h}");
        }
        let (plans, _) = plan(&ladder, VideoCodec::Avc, 1920, 1080, 30.0, None);
        assert_eq!(
            plans.iter().map(|p| p.order).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(plans[0].cost() > plans[1].cost() && plans[1].cost() > plans[2].cost());
    }

    #[test]
    fn fps_from_timestamps() {
        // RTMP millisecond timestamps at 30 fps: steps of 33 and 34 ms, one dropped frame.
        let mut e = FpsEstimator::default();
        let mut t = 0;
        e.push(t);
        let steps = [2970, 2970, 3060].repeat(4);
        for (i, step) in steps.iter().enumerate() {
            t += step + if i == 5 { 3000 } else { 0 };
            e.push(t);
        }
        assert_eq!(e.estimate(), Some(30.0));
        let cases = [
            (1500, 60.0),
            (3600, 25.0),
            (3003, 30000.0 / 1001.0),
            (9000, 10.0),
        ];
        for (step, want) in cases {
            let mut e = FpsEstimator::default();
            for i in 0..=FpsEstimator::SAMPLES as i64 {
                e.push(i * step);
            }
            assert_eq!(e.estimate(), Some(want), "step {step}");
        }
        let mut few = FpsEstimator::default();
        few.push(0);
        few.push(3000);
        assert_eq!(few.estimate(), None);
    }

    #[test]
    fn levels_fit_browsers() {
        let cases = [
            ((640, 360, 30.0, 880, false), "3.0"),
            ((854, 480, 30.0, 1540, true), "3.1"),
            ((1280, 720, 30.0, 3080, true), "3.1"),
            ((1280, 720, 60.0, 6600, true), "3.2"),
            ((1920, 1080, 30.0, 6600, true), "4.0"),
            ((1920, 1080, 30.0, 30000, true), "4.1"),
            ((1920, 1080, 60.0, 9000, true), "4.2"),
        ];
        for ((w, h, fps, br, high), want) in cases {
            assert_eq!(level_for(w, h, fps, br, high), want, "{w}x{h}@{fps} {br}k");
        }
    }

    #[test]
    fn max_fps_only_lowers_and_limiter_keeps_keyframes() {
        let mut cfg = r("360p", 360, 800);
        cfg.max_fps = Some(30.0);
        let (p, _) = plan(
            std::slice::from_ref(&cfg),
            VideoCodec::Avc,
            1280,
            720,
            60.0,
            None,
        );
        assert_eq!((p[0].fps, p[0].max_fps), (30.0, Some(30.0)));
        let (p, _) = plan(
            std::slice::from_ref(&cfg),
            VideoCodec::Avc,
            1280,
            720,
            25.0,
            None,
        );
        assert_eq!((p[0].fps, p[0].max_fps), (25.0, None));

        // 60 fps in with millisecond jitter, 30 out; keyframes always kept.
        let mut lim = FpsLimiter::new(Some(30.0));
        let frames = [
            (0, true),
            (1530, false),
            (2970, false),
            (4500, false),
            (6030, false),
            (7470, true),
            (9000, false),
            (10530, false),
        ];
        let kept: Vec<i64> = frames
            .iter()
            .filter(|(pts, key)| lim.keep(*pts, *key))
            .map(|f| f.0)
            .collect();
        assert_eq!(kept, vec![0, 2970, 6030, 7470, 10530]);

        let mut all = FpsLimiter::new(None);
        assert!(frames.iter().all(|(p, k)| all.keep(*p, *k)));
    }
}
