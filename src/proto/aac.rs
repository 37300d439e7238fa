//! AAC as it arrives in FLV: the AudioSpecificConfig (ISO 14496-3 1.6.2.1) and raw frames, plus
//! the 7-byte ADTS header that MPEG-TS needs in front of each frame.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("AudioSpecificConfig too short ({len} bytes)")]
    Short { len: usize },
    #[error("AudioSpecificConfig has a sampling frequency index {index} that is not allowed")]
    SampleRate { index: u8 },
    #[error("AAC frame of {len} bytes is too large for ADTS")]
    FrameTooLarge { len: usize },
}

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The decoder configuration of an AAC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig as received.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    pub sample_rate_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AacConfig {
    pub fn parse(asc: Bytes) -> Result<AacConfig, AacError> {
        if asc.len() < 2 {
            return Err(AacError::Short { len: asc.len() });
        }
        let object_type = asc[0] >> 3;
        let sample_rate_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        let sample_rate =
            *SAMPLE_RATES
                .get(sample_rate_index as usize)
                .ok_or(AacError::SampleRate {
                    index: sample_rate_index,
                })?;
        Ok(AacConfig {
            asc,
            object_type,
            sample_rate_index,
            sample_rate,
            channels,
        })
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Duration of one frame (1024 samples) in 90 kHz ticks.
    pub fn frame_ticks(&self) -> i64 {
        1024 * 90_000 / self.sample_rate as i64
    }

    /// Writes the ADTS header for a raw frame of `len` bytes.
    pub fn adts_header(&self, len: usize) -> Result<[u8; 7], AacError> {
        let full = len + 7;
        if full > 0x1fff {
            return Err(AacError::FrameTooLarge { len });
        }
        // ADTS carries profile = object type - 1 in two bits; types above 4 (HE-AAC signalled
        // explicitly) are sent as LC, which every decoder handles with implicit SBR.
        let profile = self.object_type.clamp(1, 4) - 1;
        let ch = self.channels & 0x07;
        Ok([
            0xff,
            0xf1,
            (profile << 6) | (self.sample_rate_index << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | ((full >> 11) as u8 & 0x03),
            (full >> 3) as u8,
            (((full & 0x07) as u8) << 5) | 0x1f,
            0xfc,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configs() {
        type Case = (Vec<u8>, Result<(u8, u32, u8), AacError>);
        let cases: Vec<Case> = vec![
            (vec![0x12, 0x10], Ok((2, 44100, 2))),
            (vec![0x11, 0x90], Ok((2, 48000, 2))),
            (vec![0x11, 0x88], Ok((2, 48000, 1))),
            (vec![0x12], Err(AacError::Short { len: 1 })),
            (vec![0x17, 0x90], Err(AacError::SampleRate { index: 15 })),
        ];
        for (input, want) in cases {
            let got = AacConfig::parse(Bytes::from(input.clone()))
                .map(|c| (c.object_type, c.sample_rate, c.channels));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn adts_header_matches_ffmpeg() {
        // ffmpeg's ADTS header for a 371-byte AAC-LC 44.1 kHz stereo frame.
        let c = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("parses");
        assert_eq!(
            c.adts_header(371).expect("fits"),
            [0xff, 0xf1, 0x50, 0x80, 0x2f, 0x5f, 0xfc]
        );
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.frame_ticks(), 2089);
        assert!(c.adts_header(9000).is_err());
    }
}
