//! Repairs the timestamps real encoders send so that everything downstream sees one clean,
//! monotonic 90 kHz timeline.
//!
//! RTMP timestamps are 32-bit milliseconds: they wrap after 49.7 days (and some encoders start
//! near the top). Encoders also send small backward steps (B-frame reordering mistakes, audio and
//! video clocks disagreeing) and large jumps (a restarted capture, a clock reset). Peers kill the
//! stream on these (MediaMTX closes its muxer on non-monotonic DTS); onair unwraps the 32-bit
//! clock, clamps small backward steps per track, and rebases large jumps so the output timeline
//! carries on, reporting each rebase so the caller can log it.

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

/// Per-stream timestamp state.
#[derive(Debug, Default, Clone)]
pub struct TimestampRepair {
    /// Last raw 32-bit timestamp seen (any track) and its unwrapped value.
    last_raw: Option<u32>,
    unwrapped: i64,
    /// Added to unwrapped input to get the output timeline (ms).
    offset_ms: i64,
    /// Last output DTS (90 kHz) per track.
    last_video: Option<i64>,
    last_audio: Option<i64>,
}

impl TimestampRepair {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps one packet's raw RTMP timestamp and composition offset (ms) to (dts, pts) in 90 kHz.
    pub fn map(&mut self, track: Track, raw_ms: u32, composition_ms: i32) -> (i64, i64, Repair) {
        let mut repair = Repair::None;
        match self.last_raw {
            None => {
                self.unwrapped = raw_ms as i64;
                // Start the output timeline at zero whatever the encoder's first timestamp.
                self.offset_ms = -(raw_ms as i64);
            }
            Some(last) => {
                // Signed distance modulo 2^32: a wrap from 0xffff_ffxx to 0x0000_00yy is a
                // small forward step.
                let delta = raw_ms.wrapping_sub(last) as i32 as i64;
                self.unwrapped += delta;
                if !(-MAX_BACKWARD_STEP_MS..=MAX_FORWARD_JUMP_MS).contains(&delta) {
                    // Continue from the latest output time plus one small step.
                    let latest = self.latest_out_ms();
                    self.offset_ms = latest + 1 - self.unwrapped;
                    repair = Repair::Rebased { jump_ms: delta };
                }
            }
        }
        self.last_raw = Some(raw_ms);
        let mut dts = (self.unwrapped + self.offset_ms) * TIMESCALE / 1000;
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
        let pts = (dts + composition_ms as i64 * TIMESCALE / 1000).max(dts);
        (dts, pts, repair)
    }

    fn latest_out_ms(&self) -> i64 {
        let v = self
            .last_video
            .unwrap_or(0)
            .max(self.last_audio.unwrap_or(0));
        v * 1000 / TIMESCALE
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
        assert_eq!(
            out[2].2,
            Repair::Rebased {
                jump_ms: 3_600_000 - 10
            }
        );
        assert_eq!(out[2].0, 11);
        assert_eq!(out[3], (21, 21, Repair::None));
        assert!(matches!(out[4].2, Repair::Rebased { .. }));
        assert!(out[4].0 > out[3].0);
    }
}
