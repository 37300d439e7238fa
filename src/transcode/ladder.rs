//! Ladder planning: which configured renditions a given source gets and with what encoder
//! settings. Pure (no ffmpeg, no clock) so the rules are table-tested: never upscale, keep the
//! aspect ratio with even dimensions, choose a browser-safe H.264 level, VBV limits, and the
//! x264 options that keep every rendition's keyframes on the source's.

use crate::config::RenditionConfig;
use crate::proto::media::TIMESCALE;

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

/// The renditions a source of `src_width` x `src_height` at `src_fps` gets, in ladder order,
/// and the names of those skipped because they would be upscaled.
pub fn plan(
    ladder: &[RenditionConfig],
    src_width: u32,
    src_height: u32,
    src_fps: f64,
) -> (Vec<RenditionPlan>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in ladder.iter().enumerate() {
        if src_width == 0 || src_height == 0 || r.height > src_height {
            skipped.push(r.name.clone());
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
                vec![("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)],
                vec![],
            ),
            ((640, 360), vec![("360p", 640, 360)], vec!["720p", "480p"]),
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
            let (plans, skipped) = plan(&ladder, w, h, 30.0);
            let got: Vec<_> = plans
                .iter()
                .map(|p| (p.name.as_str(), p.width, p.height))
                .collect();
            assert_eq!(got, want, "{w}x{h}");
            assert_eq!(skipped, want_skipped, "{w}x{h}");
        }
        let (plans, _) = plan(&ladder, 1280, 720, 30.0);
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
        let (p, _) = plan(std::slice::from_ref(&cfg), 1280, 720, 60.0);
        assert_eq!((p[0].fps, p[0].max_fps), (30.0, Some(30.0)));
        let (p, _) = plan(std::slice::from_ref(&cfg), 1280, 720, 25.0);
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
