//! Opus as Enhanced RTMP carries it (FourCC `Opus`): the identification header that the
//! SequenceStart holds (`OpusHead`, RFC 7845 5.1), the duration of a packet from its TOC byte
//! (RFC 6716 3.1), and [`OpusTimeline`], which stamps packets by their sample count rather
//! than by the millisecond timestamps of RTMP, so that a long stream never drifts.
//!
//! The Opus-to-AAC converter (`crate::transcode::convert::OpusToAac`) takes what is read here;
//! the RTMP ingest (`crate::ingest::rtmp`) and WHIP share it.

use super::media::TIMESCALE;

/// Opus always decodes at 48 kHz; timestamps and durations here count 48 kHz samples.
pub const RATE: i64 = 48_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    #[error("OpusHead too short ({len} bytes)")]
    Short { len: usize },
    #[error("not an OpusHead (no magic signature)")]
    Magic,
    #[error("OpusHead version {version} is not supported")]
    Version { version: u8 },
    #[error("OpusHead with {channels} channels for mapping family {family}")]
    Channels { channels: u8, family: u8 },
}

/// The fields of an Opus identification header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
    /// Samples (48 kHz) to drop from the start of the decoded stream (encoder delay).
    pub pre_skip: u16,
    /// The sample rate of the encoder's input (informational: Opus decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Output gain, Q7.8 dB.
    pub output_gain: i16,
    pub mapping_family: u8,
    /// The whole header as received (the decoder's extradata).
    pub raw: Vec<u8>,
}

impl OpusHead {
    /// Reads an `OpusHead` packet.
    pub fn parse(data: &[u8]) -> Result<OpusHead, OpusError> {
        if data.len() < 19 {
            return Err(OpusError::Short { len: data.len() });
        }
        if &data[..8] != b"OpusHead" {
            return Err(OpusError::Magic);
        }
        let version = data[8];
        // Major version 0 (the upper nibble); minor versions stay compatible.
        if version >> 4 != 0 {
            return Err(OpusError::Version { version });
        }
        let channels = data[9];
        let mapping_family = data[18];
        let head = OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([data[10], data[11]]),
            input_sample_rate: u32::from_le_bytes([data[12], data[13], data[14], data[15]]),
            output_gain: i16::from_le_bytes([data[16], data[17]]),
            mapping_family,
            raw: data.to_vec(),
        };
        let bad = || OpusError::Channels {
            channels,
            family: mapping_family,
        };
        match mapping_family {
            0 if !(1..=2).contains(&channels) => return Err(bad()),
            0 => {}
            _ => {
                if channels == 0 {
                    return Err(bad());
                }
                // Stream count, coupled count and one mapping byte per channel follow.
                let need = 21 + channels as usize;
                if data.len() < need {
                    return Err(OpusError::Short { len: data.len() });
                }
            }
        }
        Ok(head)
    }

    /// A stereo header without pre-skip (what WebRTC streams amount to: no header on the
    /// wire, no encoder delay signalled).
    pub fn stereo() -> OpusHead {
        let mut raw = vec![0u8; 19];
        raw[..8].copy_from_slice(b"OpusHead");
        raw[8] = 1;
        raw[9] = 2;
        raw[12..16].copy_from_slice(&48_000u32.to_le_bytes());
        OpusHead {
            channels: 2,
            pre_skip: 0,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            raw,
        }
    }
}

/// The number of 48 kHz samples in one Opus packet, from its TOC byte (and, for code 3, the
/// frame count byte). `None` for a packet that is empty, cut short or longer than the 120 ms
/// the format allows.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][(config % 2) as usize],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => (*packet.get(1)? & 0x3f) as u32,
    };
    let total = frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

/// Arrival times further than this (10 ms) from the sample count are a real gap or overlap:
/// the timeline follows them. Closer ones are rounding (RTMP counts milliseconds) and jitter.
pub const RESYNC_SAMPLES: i64 = 480;

/// Places Opus packets on the 90 kHz timeline by their sample count: the first packet's
/// timestamp anchors it, each packet then starts where the previous one ended (the sample
/// count is kept, so the 90 kHz value carries its remainder exactly), unless the arrival
/// timestamp is more than [`RESYNC_SAMPLES`] away (a gap, a restart).
#[derive(Debug, Default, Clone)]
pub struct OpusTimeline {
    /// The next packet's first sample (48 kHz), once anchored.
    next: Option<i64>,
}

impl OpusTimeline {
    /// A packet that arrived stamped `ticks` (90 kHz) holding `samples` samples: its exact
    /// 90 kHz start.
    pub fn place(&mut self, ticks: i64, samples: u32) -> i64 {
        let arrived = (ticks * RATE).div_euclid(TIMESCALE);
        let start = match self.next {
            Some(n) if (arrived - n).abs() <= RESYNC_SAMPLES => n,
            _ => arrived,
        };
        self.next = Some(start + samples as i64);
        (start * TIMESCALE).div_euclid(RATE)
    }

    /// A new timeline (the input restarted): the next packet anchors it again.
    pub fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg 9's libopus SequenceStart body (stereo, pre-skip 312, 48 kHz), as it sends it
    /// over Enhanced RTMP.
    const FFMPEG_HEAD: &[u8] = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";

    #[test]
    fn opus_head() {
        let h = OpusHead::parse(FFMPEG_HEAD).expect("parses");
        assert_eq!(
            (
                h.channels,
                h.pre_skip,
                h.input_sample_rate,
                h.mapping_family
            ),
            (2, 312, 48_000, 0)
        );
        assert_eq!(h.raw, FFMPEG_HEAD);
        let mono = b"OpusHead\x01\x01\x00\x00\x44\xac\x00\x00\x00\x01\x00";
        let h = OpusHead::parse(mono).expect("mono");
        assert_eq!(
            (h.channels, h.input_sample_rate, h.output_gain),
            (1, 44_100, 256)
        );
        assert_eq!(
            OpusHead::parse(&OpusHead::stereo().raw),
            Ok(OpusHead::stereo())
        );
        // Family 1 (surround): stream count, coupled count, a mapping byte per channel.
        let mut six = b"OpusHead\x01\x06\x38\x01\x80\xbb\x00\x00\x00\x00\x01".to_vec();
        assert_eq!(OpusHead::parse(&six), Err(OpusError::Short { len: 19 }));
        six.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
        assert_eq!(OpusHead::parse(&six).map(|h| h.channels), Ok(6));

        let cases: Vec<(&[u8], OpusError)> = vec![
            (b"", OpusError::Short { len: 0 }),
            (b"OpusHead\x01\x02", OpusError::Short { len: 10 }),
            (
                b"OpusTags\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
                OpusError::Magic,
            ),
            (
                b"OpusHead\x10\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
                OpusError::Version { version: 0x10 },
            ),
            (
                b"OpusHead\x01\x03\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
                OpusError::Channels {
                    channels: 3,
                    family: 0,
                },
            ),
            (
                b"OpusHead\x01\x00\x38\x01\x80\xbb\x00\x00\x00\x00\xff",
                OpusError::Channels {
                    channels: 0,
                    family: 255,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(OpusHead::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn packet_durations_from_the_toc() {
        let cases: &[(&[u8], Option<u32>)] = &[
            // CELT 20 ms, one frame (ffmpeg's libopus default: config 31, code 0).
            (&[0xf8, 0xff], Some(960)),
            (&[0xfc], Some(960)),
            // CELT 2.5 ms (config 16), two frames (code 1).
            (&[0x81], Some(240)),
            // SILK 60 ms (config 3), two frames (code 2): 120 ms, the most a packet holds.
            (&[0x1a], Some(5760)),
            // SILK 10 ms (config 0), code 3 with 3 frames.
            (&[0x03, 0x03], Some(1440)),
            // Hybrid 20 ms (config 13), one frame.
            (&[0x68], Some(960)),
            // Code 3: 7 frames of 20 ms is past 120 ms; zero frames; no count byte.
            (&[0xfb, 0x07], None),
            (&[0xfb, 0x00], None),
            (&[0xfb], None),
            (&[], None),
        ];
        for (packet, want) in cases {
            assert_eq!(packet_samples(packet), *want, "{packet:02x?}");
        }
    }

    #[test]
    fn the_timeline_counts_samples_not_milliseconds() {
        // 20 ms packets stamped in whole milliseconds as ffmpeg's FLV muxer rounds them
        // (60.5 ms start): every packet lands exactly 1800 ticks after the previous one.
        let mut t = OpusTimeline::default();
        let (mut first, mut last) = (None, None);
        for i in 0..360_000i64 {
            // Two hours of 20 ms packets.
            let ms = (605 + i * 200 + 5) / 10;
            let pts = t.place(ms * 90, 960);
            if let Some(l) = last {
                assert_eq!(pts - l, 1800, "packet {i}");
            }
            first.get_or_insert(pts);
            last = Some(pts);
        }
        assert_eq!(first, Some(61 * 90));
        assert_eq!(
            last,
            Some(61 * 90 + 359_999 * 1800),
            "no drift after two hours"
        );

        // 2.5 ms packets: 225 ticks each, never rounded.
        let mut t = OpusTimeline::default();
        let a = t.place(0, 120);
        let b = t.place(2 * 90, 120);
        let c = t.place(5 * 90, 120);
        assert_eq!((a, b, c), (0, 225, 450));

        // A gap of a second (packets lost, DTX): the timeline follows the arrival time; an
        // overlap beyond 10 ms too.
        let mut t = OpusTimeline::default();
        assert_eq!(t.place(0, 960), 0);
        assert_eq!(t.place(1020 * 90, 960), 1020 * 90);
        assert_eq!(t.place(1000 * 90, 960), 1000 * 90);
        t.reset();
        assert_eq!(t.place(5 * 90, 960), 450);
    }
}
