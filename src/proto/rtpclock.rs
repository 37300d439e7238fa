//! One clock for the tracks of an RTP session: maps each frame's RTP timestamp (48 kHz audio,
//! 90 kHz video, each starting at a random value and wrapping at 2^32) onto one 90 kHz
//! timeline that starts at zero, so audio and video stay in sync for hours.
//!
//! Until a track's first RTCP sender report, its frames are placed by their RTP distance from
//! the track's first frame, anchored at that frame's arrival time. The first sender report (of
//! any track) fixes the offset between the sender's NTP clock and the arrival clock, measured
//! where that track already is, so it does not jump; from then on every track with a report is
//! placed by its latest NTP/RTP pair. Audio and video then keep exactly the relation the
//! sender's reports give them (the lip-sync mechanism of RFC 3550 section 6.4.1), and a sender
//! whose sample clocks drift against its wall clock is followed report by report.
//!
//! Pure: the caller passes arrival times and report contents; nothing here reads a clock.

use std::time::Duration;

use super::media::{Track, TIMESCALE};

/// A sender report's NTP/RTP pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    /// The sender's wall clock (any epoch, the same for every track of the session).
    pub ntp: Duration,
    /// The RTP timestamp that corresponds to `ntp` (low 32 bits are used).
    pub rtp: u64,
}

#[derive(Debug, Clone, Default)]
struct TrackClock {
    /// Last RTP timestamp seen and its unwrapped value.
    last_rtp: u32,
    unwrapped: i64,
    /// First frame: unwrapped RTP time and arrival (ns on the arrival clock).
    first: Option<(i64, i64)>,
}

/// The clock of one session (all its tracks).
#[derive(Debug, Clone, Default)]
pub struct RtpClock {
    video: TrackClock,
    audio: TrackClock,
    /// Arrival clock minus sender NTP clock (ns), fixed at the first sender report.
    ntp_offset: Option<i64>,
    /// Arrival-clock time (ns) of the timeline's zero.
    origin: Option<i64>,
}

fn ns(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

/// RTP ticks at `rate` to nanoseconds.
fn ticks_ns(ticks: i64, rate: u32) -> i64 {
    (ticks as i128 * 1_000_000_000 / rate.max(1) as i128) as i64
}

impl RtpClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places one frame: its RTP timestamp at `rate` Hz, when its first packet arrived (on any
    /// monotonic clock, the same for every call), and the track's latest sender report if one
    /// came. Returns the frame's time in 90 kHz ticks from the session's first frame; it can
    /// step back a little when a report first arrives, which the caller's repair clamps.
    pub fn place(
        &mut self,
        track: Track,
        rtp: u64,
        rate: u32,
        arrival: Duration,
        report: Option<SenderClock>,
    ) -> i64 {
        let arrival = ns(arrival);
        let t = match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        };
        let rtp32 = rtp as u32;
        match t.first {
            None => {
                t.unwrapped = rtp32 as i64;
                t.first = Some((t.unwrapped, arrival));
            }
            Some(_) => t.unwrapped += rtp32.wrapping_sub(t.last_rtp) as i32 as i64,
        }
        t.last_rtp = rtp32;
        let (first_rtp, first_arrival) = t.first.unwrap_or((t.unwrapped, arrival));
        let by_arrival = first_arrival + ticks_ns(t.unwrapped - first_rtp, rate);
        let at = match report {
            Some(sr) => {
                // The report's RTP time relative to this frame, modulo 2^32.
                let since_report = rtp32.wrapping_sub(sr.rtp as u32) as i32 as i64;
                let sender = ns(sr.ntp) + ticks_ns(since_report, rate);
                let offset = *self.ntp_offset.get_or_insert(by_arrival - sender);
                sender + offset
            }
            None => by_arrival,
        };
        let origin = *self.origin.get_or_insert(at);
        let x = (at - origin) as i128 * TIMESCALE as i128;
        // Rounded to the nearest tick (the nanosecond steps truncate).
        ((x + x.signum() * 500_000_000) / 1_000_000_000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn before_any_report_frames_follow_their_first_arrival() {
        let mut c = RtpClock::new();
        assert_eq!(c.place(Track::Video, 1000, 90_000, 100 * MS, None), 0);
        // Audio starts 20 ms later on the arrival clock.
        assert_eq!(c.place(Track::Audio, 5, 48_000, 120 * MS, None), 1800);
        // Later frames by RTP distance, whatever their (jittery) arrival.
        assert_eq!(
            c.place(Track::Video, 1000 + 3000, 90_000, 190 * MS, None),
            3000
        );
        assert_eq!(c.place(Track::Audio, 5 + 960, 48_000, 170 * MS, None), 3600);
    }

    #[test]
    fn sender_reports_put_tracks_in_the_senders_relation() {
        let mut c = RtpClock::new();
        // The sender's clocks: audio RTP 48 kHz from 7_000, video 90 kHz from 4_000_000_000
        // (wraps soon), both at NTP 1000 s. Network delay: video 30 ms, audio 5 ms, so the
        // arrival-anchored placement is 25 ms off until the reports arrive.
        let v_rtp = |s: f64| (4_000_000_000u64 + (s * 90_000.0) as u64) % (1 << 32);
        let a_rtp = |s: f64| 7_000 + (s * 48_000.0) as u64;
        let ntp = |s: f64| Duration::from_secs_f64(1000.0 + s);
        let arrive_v = |s: f64| Duration::from_secs_f64(50.0 + s + 0.030);
        let arrive_a = |s: f64| Duration::from_secs_f64(50.0 + s + 0.005);
        c.place(Track::Video, v_rtp(0.0), 90_000, arrive_v(0.0), None);
        let a0 = c.place(Track::Audio, a_rtp(0.0), 48_000, arrive_a(0.0), None);
        assert_eq!(a0, -2250, "25 ms early before reports");
        let v_sr = SenderClock {
            ntp: ntp(1.0),
            rtp: v_rtp(1.0),
        };
        let a_sr = SenderClock {
            ntp: ntp(2.0),
            rtp: a_rtp(2.0),
        };
        // The first report (video) does not move video.
        let v = c.place(Track::Video, v_rtp(1.5), 90_000, arrive_v(1.5), Some(v_sr));
        assert_eq!(v, 135_000);
        // Audio with its own report now lines up with video exactly.
        for s in [2.5, 600.0, 7200.0] {
            let v = c.place(Track::Video, v_rtp(s), 90_000, arrive_v(s), Some(v_sr));
            let a = c.place(Track::Audio, a_rtp(s), 48_000, arrive_a(s), Some(a_sr));
            assert!((v - a).abs() <= 2, "at {s} s: video {v}, audio {a}");
            assert!((v - (s * 90_000.0) as i64).abs() <= 2, "at {s} s: {v}");
        }
    }

    #[test]
    fn reports_follow_a_drifting_sample_clock() {
        // The sender's audio clock runs 100 ppm fast against its wall clock; its reports say so.
        let mut c = RtpClock::new();
        let rate = 48_000.0 * 1.0001;
        let a_rtp = |s: f64| (s * rate) as u64;
        let v_rtp = |s: f64| (s * 90_000.0) as u64;
        let sr = |s: f64| SenderClock {
            ntp: Duration::from_secs_f64(s),
            rtp: a_rtp(s),
        };
        let v_sr = SenderClock {
            ntp: Duration::ZERO,
            rtp: 0,
        };
        let at = |s: f64| Duration::from_secs_f64(s);
        c.place(Track::Video, 0, 90_000, at(0.0), Some(v_sr));
        c.place(Track::Audio, 0, 48_000, at(0.0), Some(sr(0.0)));
        // Two hours later, with the report from a second before.
        let s = 7200.0;
        let a = c.place(Track::Audio, a_rtp(s), 48_000, at(s), Some(sr(s - 1.0)));
        let v = c.place(Track::Video, v_rtp(s), 90_000, at(s), Some(v_sr));
        assert!((a - v).abs() < 90, "|A-V| {} ticks", (a - v).abs());
    }
}
