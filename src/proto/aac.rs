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
    #[error("ADTS header missing or cut short")]
    AdtsHeader,
    #[error("ADTS frame length {len} does not fit the data")]
    AdtsLength { len: usize },
    #[error(
        "ADTS frame with {blocks} raw data blocks or a program config element is not supported"
    )]
    AdtsUnsupported { blocks: u8 },
}

/// The fields of an ADTS header (ISO 14496-3 1.A.2.2) that matter here, read by [`parse_adts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adts {
    pub object_type: u8,
    pub sample_rate_index: u8,
    pub channels: u8,
    /// 7 bytes, or 9 with the CRC.
    pub header_len: usize,
    /// The whole frame, header included.
    pub frame_len: usize,
}

/// Reads the ADTS header at the start of `data` and checks that its frame fits in `data`.
/// Frames with several raw data blocks or with channel configuration 0 (a program config
/// element in band) are refused: no encoder that onair meets writes them.
pub fn parse_adts(data: &[u8]) -> Result<Adts, AacError> {
    let h = data.get(..7).ok_or(AacError::AdtsHeader)?;
    if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
        return Err(AacError::AdtsHeader);
    }
    let protection_absent = h[1] & 0x01 == 1;
    let object_type = (h[2] >> 6) + 1;
    let sample_rate_index = (h[2] >> 2) & 0x0f;
    let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
    let frame_len =
        (((h[3] & 0x03) as usize) << 11) | ((h[4] as usize) << 3) | (h[5] >> 5) as usize;
    let blocks = h[6] & 0x03;
    let header_len = if protection_absent { 7 } else { 9 };
    if blocks != 0 || channels == 0 {
        return Err(AacError::AdtsUnsupported { blocks });
    }
    if frame_len <= header_len || frame_len > data.len() {
        return Err(AacError::AdtsLength { len: frame_len });
    }
    if SAMPLE_RATES.get(sample_rate_index as usize).is_none() {
        return Err(AacError::SampleRate {
            index: sample_rate_index,
        });
    }
    Ok(Adts {
        object_type,
        sample_rate_index,
        channels,
        header_len,
        frame_len,
    })
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

    /// The configuration an ADTS header describes (its AudioSpecificConfig built from it).
    pub fn from_adts(adts: &Adts) -> Result<AacConfig, AacError> {
        let asc = [
            (adts.object_type << 3) | (adts.sample_rate_index >> 1),
            ((adts.sample_rate_index & 1) << 7) | (adts.channels << 3),
        ];
        AacConfig::parse(Bytes::copy_from_slice(&asc))
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

    #[test]
    fn adts_round_trips_through_the_header_writer() {
        for asc in [[0x12, 0x10], [0x11, 0x88], [0x11, 0x90]] {
            let c = AacConfig::parse(Bytes::copy_from_slice(&asc)).expect("parses");
            let mut frame = c.adts_header(5).expect("fits").to_vec();
            frame.extend_from_slice(&[1, 2, 3, 4, 5]);
            let adts = parse_adts(&frame).expect("ADTS");
            assert_eq!((adts.header_len, adts.frame_len), (7, 12));
            assert_eq!(AacConfig::from_adts(&adts).expect("config"), c);
            assert_eq!(
                parse_adts(&frame[..11]),
                Err(AacError::AdtsLength { len: 12 })
            );
        }
        assert_eq!(parse_adts(&[0xff, 0xf1, 0x50]), Err(AacError::AdtsHeader));
        assert_eq!(
            parse_adts(&[0x47, 0xf1, 0x50, 0x80, 0x01, 0x7f, 0xfc, 0]),
            Err(AacError::AdtsHeader)
        );
        // Channel configuration 0: a program config element would follow.
        assert_eq!(
            parse_adts(&[0xff, 0xf1, 0x50, 0x00, 0x01, 0x7f, 0xfc, 0, 0, 0, 0]),
            Err(AacError::AdtsUnsupported { blocks: 0 })
        );
    }
}
