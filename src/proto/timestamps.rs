//! Repairs the timestamps real encoders send so that everything downstream sees one clean,
//! monotonic 90 kHz timeline.
//!
//! Input timestamps come on a protocol's [`Clock`]: RTMP's are 32-bit milliseconds (they wrap
//! after 49.7 days, and some encoders start near the top), MPEG-TS's are 33-bit 90 kHz ticks.
//! Encoders also send small backward steps (B-frame reordering mistakes, audio and video clocks
//! disagreeing) and large jumps (a restarted capture, a clock reset). Peers kill the stream on
//! these (MediaMTX closes its muxer on non-monotonic DTS); onair unwraps the clock, clamps small
//! backward steps per track, and rebases large jumps so the output timeline carries on,
//! reporting each rebase so the caller can log it. Pure: used by `ingest::media` for every
//! protocol.
//!
//! A jump is judged per track, against that track's own last output: the tracks of one
//! stream may reach the feed seconds apart (WHIP's audio comes out of a conversion job that
//! can lag behind passthrough video on a loaded machine; RTMP encoders interleave loosely),
//! and such a lag is not a clock reset. Judging it against the other track's timestamps
//! rebased the lagging track onto the leading one at every switch, and the leading track then
//! stepped forward by the lag each time: the timeline ran ahead of the wall clock. The offset
//! a rebase sets is shared, so the other track, when its own jump arrives, lands next to the
//! first without a second rebase and the tracks keep their relation.

use super::media::{Track, TIMESCALE};

/// A jump larger than this (forward) or a step back larger than this is treated as a clock reset.
pub const MAX_FORWARD_JUMP_MS: i64 = 10_000;
pub const MAX_BACKWARD_STEP_MS: i64 = 1_000;

/// What [`TimestampRepair::map`] did to a packet's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    None,
    /// The DTS went back a little on this track and was moved forward.
    Clamped,
    /// The clock jumped; the timeline was rebased by this many milliseconds of input.
    Rebased {
        jump_ms: i64,
    },
}

/// The clock an input protocol stamps its frames with: ticks per second and the width at which
/// the counter wraps. Audio and video of one stream must share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Ticks per second (1 to 90 000).
    pub rate: u32,
    /// The counter wraps at 2^`wrap_bits` (8 to 62).
    pub wrap_bits: u32,
}

impl Clock {
    /// RTMP / FLV: 32-bit milliseconds.
    pub const RTMP: Clock = Clock {
        rate: 1000,
        wrap_bits: 32,
    };
    /// MPEG-TS PES (SRT): 33-bit 90 kHz ticks.
    pub const MPEG_TS: Clock = Clock {
        rate: 90_000,
        wrap_bits: 33,
    };

    fn ticks_from_ms(&self, ms: i64) -> i64 {
        ms * self.rate as i64 / 1000
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::RTMP
    }
}

/// Per-stream timestamp state.
#[derive(Debug, Default, Clone)]
pub struct TimestampRepair {
    clock: Clock,
    /// Last raw timestamp seen (any track, within the wrap) and its unwrapped value (ticks).
    last_raw: Option<u64>,
    unwrapped: i64,
    /// Added to unwrapped input to get the output timeline (ticks of the input clock).
    offset: i64,
    /// Last output DTS (90 kHz) per track.
    last_video: Option<i64>,
    last_audio: Option<i64>,
}

impl TimestampRepair {
    /// On RTMP's clock (32-bit milliseconds).
    pub fn new() -> Self {
        Self::default()
    }

    /// On another protocol's clock.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            clock: Clock {
                rate: clock.rate.clamp(1, TIMESCALE as u32),
                wrap_bits: clock.wrap_bits.clamp(8, 62),
            },
            ..Self::default()
        }
    }

    /// Maps one packet's raw RTMP timestamp and composition offset (ms) to (dts, pts) in 90 kHz.
    /// For a repair made [`TimestampRepair::new`] (RTMP's clock).
    pub fn map(&mut self, track: Track, raw_ms: u32, composition_ms: i32) -> (i64, i64, Repair) {
        self.map_ticks(track, raw_ms as u64, composition_ms as i64)
    }

    /// Maps one packet's raw decode timestamp and composition offset (PTS - DTS), both in ticks
    /// of this repair's clock, to (dts, pts) in 90 kHz on a timeline that starts at zero.
    pub fn map_ticks(&mut self, track: Track, raw: u64, composition: i64) -> (i64, i64, Repair) {
        let modulus = 1i64 << self.clock.wrap_bits;
        let raw = raw & (modulus as u64 - 1);
        let mut repair = Repair::None;
        match self.last_raw {
            None => {
                self.unwrapped = raw as i64;
                // Start the output timeline at zero whatever the encoder's first timestamp.
                self.offset = -(raw as i64);
            }
            Some(last) => {
                // Signed distance modulo the wrap: a wrap from just below it to just above zero
                // is a small forward step.
                let mut delta = (raw as i64 - last as i64).rem_euclid(modulus);
                if delta >= modulus / 2 {
                    delta -= modulus;
                }
                self.unwrapped += delta;
                // Where this packet would land, against where its own track is; a track's
                // first packet may land anywhere on the timeline so far (it can start late).
                let candidate = self.unwrapped + self.offset;
                let back = self.clock.ticks_from_ms(MAX_BACKWARD_STEP_MS);
                let forward = self.clock.ticks_from_ms(MAX_FORWARD_JUMP_MS);
                let latest = self.latest_out();
                let (step, fits) = match self.track_out(track) {
                    Some(own) => (
                        candidate - own,
                        (-back..=forward).contains(&(candidate - own)),
                    ),
                    None => (
                        candidate - latest,
                        (-back..=forward).contains(&(candidate - latest))
                            || (0..=latest + forward).contains(&candidate),
                    ),
                };
                if !fits {
                    // Continue from the latest output time plus one small step.
                    self.offset = latest + 1 - self.unwrapped;
                    repair = Repair::Rebased {
                        jump_ms: step * 1000 / self.clock.rate as i64,
                    };
                }
            }
        }
        self.last_raw = Some(raw);
        let rate = self.clock.rate as i64;
        let mut dts = (self.unwrapped + self.offset) * TIMESCALE / rate;
        let last = match track {
            Track::Video => &mut self.last_video,
            Track::Audio => &mut self.last_audio,
        };
        if let Some(prev) = *last {
            if dts <= prev && track == Track::Video || dts < prev {
                dts = prev + if track == Track::Video { 1 } else { 0 };
                if repair == Repair::None {
                    repair = Repair::Clamped;
                }
            }
        }
        *last = Some(dts);
        let pts = (dts + composition * TIMESCALE / rate).max(dts);
        (dts, pts, repair)
    }

    /// A track's last output time, in ticks of the input clock.
    fn track_out(&self, track: Track) -> Option<i64> {
        let last = match track {
            Track::Video => self.last_video,
            Track::Audio => self.last_audio,
        };
        last.map(|v| v * self.clock.rate as i64 / TIMESCALE)
    }

    /// The latest output time, in ticks of the input clock.
    fn latest_out(&self) -> i64 {
        let v = self
            .last_video
            .unwrap_or(0)
            .max(self.last_audio.unwrap_or(0));
        v * self.clock.rate as i64 / TIMESCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Track::*;

    /// (track, raw ms, cts ms) in, (dts ms, pts ms, repair) out.
    fn run(input: &[(Track, u32, i32)]) -> Vec<(i64, i64, Repair)> {
        let mut r = TimestampRepair::new();
        input
            .iter()
            .map(|&(t, raw, cts)| {
                let (d, p, rep) = r.map(t, raw, cts);
                (d / 90, p / 90, rep)
            })
            .collect()
    }

    #[test]
    fn starts_at_zero_and_keeps_composition() {
        assert_eq!(
            run(&[(Video, 5000, 66), (Audio, 5010, 0), (Video, 5033, 33)]),
            vec![
                (0, 66, Repair::None),
                (10, 10, Repair::None),
                (33, 66, Repair::None)
            ]
        );
    }

    #[test]
    fn unwraps_32_bit_clock() {
        let near = u32::MAX - 20;
        let out = run(&[(Video, near, 0), (Video, near + 20, 0), (Video, 12, 0)]);
        assert_eq!(out[1].0, 20);
        assert_eq!(out[2], (33, 33, Repair::None));
    }

    #[test]
    fn clamps_small_backward_steps() {
        let out = run(&[(Video, 100, 0), (Video, 200, 0), (Video, 150, 0)]);
        assert_eq!(out[2].2, Repair::Clamped);
        assert!(out[2].0 >= out[1].0);
    }

    #[test]
    fn rebases_large_jumps_both_ways() {
        let out = run(&[
            (Video, 1000, 0),
            (Audio, 1010, 0),
            (Video, 1000 + 3_600_000, 0),
            (Audio, 1010 + 3_600_000, 0),
            (Video, 500, 0),
        ]);
        assert_eq!(out[2].2, Repair::Rebased { jump_ms: 3_600_000 });
        assert_eq!(out[2].0, 11);
        assert_eq!(out[3], (21, 21, Repair::None));
        assert!(matches!(out[4].2, Repair::Rebased { .. }));
        assert!(out[4].0 > out[3].0);
    }

    #[test]
    fn a_track_that_lags_behind_the_other_is_not_a_clock_reset() {
        // Video at 30 fps on time; audio (20 ms frames) reaching the feed 1.5 s late, in
        // bursts, as converted audio does when its job waits behind the ladder. 30 s of both.
        let mut r = TimestampRepair::with_clock(Clock::MPEG_TS);
        let (mut v, mut a) = (0i64, 0i64);
        let (mut last_v, mut last_a) = (0, 0);
        let mut rebased = 0;
        while v < 30 * 90_000 {
            let (d, _, rep) = r.map_ticks(Video, v as u64, 0);
            last_v = d;
            rebased += matches!(rep, Repair::Rebased { .. }) as usize;
            v += 3000;
            // A burst of audio up to 1.5 s behind the video.
            while a + 1800 <= v - 135_000 {
                let (d, _, rep) = r.map_ticks(Audio, a as u64, 0);
                last_a = d;
                rebased += matches!(rep, Repair::Rebased { .. }) as usize;
                a += 1800;
            }
        }
        assert_eq!(rebased, 0);
        // Both tracks keep their input times: the timeline is as long as the input.
        assert_eq!(last_v, v - 3000);
        assert_eq!(last_a, a - 1800);
    }

    #[test]
    fn after_a_reset_the_second_track_follows_the_first_without_a_second_rebase() {
        let out = run(&[
            (Video, 5000, 0),
            (Audio, 4990, 0),
            (Video, 5033, 0),
            // The encoder restarts its clock near zero; audio 10 ms before video, as before.
            (Video, 40, 0),
            (Audio, 30, 0),
            (Video, 73, 0),
        ]);
        assert!(matches!(out[3].2, Repair::Rebased { .. }));
        assert_eq!(out[3].0, 34);
        assert_eq!(out[4], (24, 24, Repair::None));
        assert_eq!(out[5], (67, 67, Repair::None));
    }

    #[test]
    fn mpeg_ts_clock_unwraps_33_bits() {
        let mut r = TimestampRepair::with_clock(Clock::MPEG_TS);
        let near = (1u64 << 33) - 900;
        assert_eq!(r.map_ticks(Video, near, 3000), (0, 3000, Repair::None));
        // 1,800 ticks later, across the wrap.
        assert_eq!(r.map_ticks(Video, 900, 0), (1800, 1800, Repair::None));
        let (dts, _, rep) = r.map_ticks(Audio, 900 + 90_000 * 3600, 0);
        assert_eq!(rep, Repair::Rebased { jump_ms: 3_600_000 });
        assert_eq!(dts, 1801);
    }
}
