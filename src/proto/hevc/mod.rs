//! HEVC (H.265) as Enhanced RTMP, fMP4 and MPEG-TS carry it: the
//! HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.2.1, the `hvcC` box and ffmpeg's
//! extradata), length-prefixed access units on the bus, Annex B for MPEG-TS, and the `CODECS`
//! string of ISO/IEC 14496-15 Annex E (`hvc1.1.6.L93.B0`).
//!
//! The record is read here (a fixed header and arrays of NAL units, sliced without copying);
//! the SPS in [`sps`] for the picture size and frame rate.

pub mod sps;

use bytes::{BufMut, Bytes};

use super::nal::{self, NalError, NalSyntax};
pub use sps::SpsInfo;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HevcError {
    #[error("HEVC configuration record too short ({len} bytes)")]
    Short { len: usize },
    #[error("HEVC configuration record version {version}, expected 1")]
    Version { version: u8 },
    #[error("HEVC configuration record has NAL length size {size}, expected 1, 2 or 4")]
    LengthSize { size: usize },
    #[error("HEVC configuration record has no VPS, SPS or PPS")]
    NoParameterSets,
    #[error("HEVC SPS could not be parsed: {reason}")]
    Sps { reason: String },
    #[error("NAL unit length {len} runs past the end of the access unit")]
    NalOverrun { len: usize },
}

impl From<NalError> for HevcError {
    fn from(e: NalError) -> Self {
        match e {
            NalError::Overrun { len } => HevcError::NalOverrun { len },
        }
    }
}

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;

/// NAL unit type from the first byte of the two-byte HEVC NAL unit header.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| (b >> 1) & 0x3f).unwrap_or(0)
}

/// Whether a NAL unit type is an IRAP picture (BLA, IDR, CRA: 16 to 23), where decoding can start.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// HEVC's NAL syntax: parameter sets VPS, SPS, PPS; the access unit delimiter has layer 0,
/// temporal id 1 and pic_type 2 (any slice type), then the stop bit.
pub const SYNTAX: NalSyntax = NalSyntax {
    nal_type,
    parameter_sets: &[NAL_VPS, NAL_SPS, NAL_PPS],
    aud_type: NAL_AUD,
    aud: &[NAL_AUD << 1, 0x01, 0x50],
};

/// The decoder configuration of an HEVC stream.
#[derive(Debug, Clone, PartialEq)]
pub struct HevcConfig {
    /// The record as received (fMP4 `hvcC` box and ffmpeg extradata use it as is).
    pub record: Bytes,
    pub profile_space: u8,
    /// High tier.
    pub tier: bool,
    pub profile_idc: u8,
    /// general_profile_compatibility_flags as read (flag 0 in the most significant bit).
    pub compatibility_flags: u32,
    /// The 48 bits of general constraint indicator flags, as 6 bytes.
    pub constraint_flags: [u8; 6],
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub width: u32,
    pub height: u32,
    /// Frame rate from the SPS VUI timing info, or the record's average frame rate.
    pub fps: Option<f64>,
}

impl HevcConfig {
    /// Parses an HEVCDecoderConfigurationRecord.
    pub fn parse(record: Bytes) -> Result<HevcConfig, HevcError> {
        let r = &record[..];
        let short = || HevcError::Short { len: r.len() };
        if r.len() < 23 {
            return Err(short());
        }
        if r[0] != 1 {
            return Err(HevcError::Version { version: r[0] });
        }
        let nal_length_size = (r[21] & 0x03) as usize + 1;
        if nal_length_size == 3 {
            return Err(HevcError::LengthSize { size: 3 });
        }
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut pos = 23;
        for _ in 0..r[22] {
            let head = r.get(pos..pos + 3).ok_or_else(short)?;
            let kind = head[0] & 0x3f;
            let count = u16::from_be_bytes([head[1], head[2]]);
            pos += 3;
            for _ in 0..count {
                let len = r.get(pos..pos + 2).ok_or_else(short)?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                pos += 2;
                if pos + len > r.len() {
                    return Err(short());
                }
                let unit = record.slice(pos..pos + len);
                pos += len;
                if len == 0 {
                    continue;
                }
                match kind {
                    NAL_VPS => vps.push(unit),
                    NAL_SPS => sps.push(unit),
                    NAL_PPS => pps.push(unit),
                    // SEI and anything else: decoders find it in the record.
                    _ => {}
                }
            }
        }
        if vps.is_empty() || sps.is_empty() || pps.is_empty() {
            return Err(HevcError::NoParameterSets);
        }
        let info = parse_sps(&sps[0])?;
        let avg = u16::from_be_bytes([r[19], r[20]]);
        let fps = info
            .fps
            .or_else(|| (avg > 0).then(|| avg as f64 / 256.0))
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
        let mut constraint_flags = [0u8; 6];
        constraint_flags.copy_from_slice(&r[6..12]);
        Ok(HevcConfig {
            profile_space: r[1] >> 6,
            tier: r[1] & 0x20 != 0,
            profile_idc: r[1] & 0x1f,
            compatibility_flags: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
            constraint_flags,
            level_idc: r[12],
            chroma_format_idc: r[16] & 0x03,
            bit_depth_luma: (r[17] & 0x07) + 8,
            record,
            nal_length_size,
            vps,
            sps,
            pps,
            width: info.width,
            height: info.height,
            fps,
        })
    }

    /// Builds the configuration record for parameter sets found in band (an Annex B stream, as
    /// MPEG-TS carries it), with 4-byte NAL lengths and complete arrays.
    pub fn from_parameter_sets(
        vps: &[Bytes],
        sps: &[Bytes],
        pps: &[Bytes],
    ) -> Result<HevcConfig, HevcError> {
        let first = sps.first().ok_or(HevcError::NoParameterSets)?;
        if vps.is_empty() || pps.is_empty() {
            return Err(HevcError::NoParameterSets);
        }
        // The SPS starts with the profile_tier_level's general part at a fixed position:
        // 2 bytes of NAL header, 1 byte of ids, then profile (1), compatibility (4),
        // constraints (6) and level (1) bytes, which the record repeats.
        let head = nal::unescape_prefix(first, 15);
        if head.len() < 15 {
            return Err(HevcError::Short { len: first.len() });
        }
        let info = parse_sps(first)?;
        let mut r = Vec::with_capacity(64 + vps.len() * 32 + first.len());
        r.push(1);
        r.extend_from_slice(&head[3..15]);
        r.put_u16(0xf000); // reserved, min_spatial_segmentation_idc 0
        r.push(0xfc); // reserved, parallelismType unknown
        r.push(0xfc | (info.chroma_format_idc & 0x03));
        r.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) & 0x07));
        r.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) & 0x07));
        r.put_u16(0); // avgFrameRate unknown
                      // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3.
        r.push((info.temporal_layers.min(7) << 3) | ((info.temporal_id_nested as u8) << 2) | 3);
        r.push(3);
        for (kind, units) in [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)] {
            r.push(0x80 | kind);
            r.put_u16(units.len().min(0xffff) as u16);
            for u in units.iter().take(0xffff) {
                r.put_u16(u.len().min(0xffff) as u16);
                r.put_slice(&u[..u.len().min(0xffff)]);
            }
        }
        HevcConfig::parse(Bytes::from(r))
    }

    /// The configuration from the VPS, SPS and PPS carried inside a keyframe (MPEG-TS, or an
    /// encoder that sends no sequence start), length-prefixed or Annex B: see
    /// [`crate::proto::avc::AvcConfig::from_access_unit`].
    pub fn from_access_unit(data: &Bytes) -> Option<(HevcConfig, bool)> {
        nal::config_from_access_unit(&SYNTAX, data, |sets| {
            Self::from_parameter_sets(
                &nal::sets_of(sets, NAL_VPS),
                &nal::sets_of(sets, NAL_SPS),
                &nal::sets_of(sets, NAL_PPS),
            )
            .ok()
        })
    }

    /// The `CODECS` value (ISO/IEC 14496-15 E.3): `hvc1.` profile space and idc, the
    /// compatibility flags in reverse bit order (hex), tier and level, then the constraint
    /// bytes in hex with trailing zero bytes left out.
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.profile_idc,
            self.compatibility_flags.reverse_bits(),
            if self.tier { 'H' } else { 'L' },
            self.level_idc
        );
        let used = self
            .constraint_flags
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraint_flags[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }

    /// The parameter sets in the order decoders want them in band.
    pub fn parameter_sets(&self) -> Vec<&Bytes> {
        self.vps
            .iter()
            .chain(self.sps.iter())
            .chain(self.pps.iter())
            .collect()
    }
}

/// Reads an SPS NAL unit (with its two header bytes).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, HevcError> {
    sps::parse(nal).map_err(|e| HevcError::Sps { reason: e.0 })
}

/// Whether a length-prefixed access unit holds an IRAP picture.
pub fn has_irap(data: &[u8], length_size: usize) -> bool {
    nal::nal_units(data, length_size)
        .flatten()
        .any(|n| is_irap(nal_type(n)))
}

/// Converts a length-prefixed access unit to Annex B for MPEG-TS, with an access unit delimiter
/// and, on keyframes, the VPS, SPS and PPS.
pub fn to_annex_b(
    data: &[u8],
    config: &HevcConfig,
    keyframe: bool,
    out: &mut Vec<u8>,
) -> Result<(), HevcError> {
    nal::to_annex_b(
        &SYNTAX,
        data,
        config.nal_length_size,
        keyframe,
        &config.parameter_sets(),
        out,
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::flv::{file_tags, tests::fixture};

    /// The HEVCDecoderConfigurationRecord of fixtures/hevc-320x180.flv (ffmpeg 9, libx265
    /// Main, 320x180 at 30 fps), read from the file's first video tag.
    pub fn record() -> Bytes {
        let file = fixture("hevc-320x180.flv");
        let tag = file_tags(&file).find(|t| t.kind == 9).expect("a video tag");
        // [0x90 | packet type 0] "hvc1" record
        assert_eq!(&tag.body[..5], b"\x90hvc1");
        tag.body.slice(5..)
    }

    /// libx265 Main 10 at 320x180 (ffmpeg 9, -pix_fmt yuv420p10le): VPS, SPS, PPS only.
    const MAIN10: &[u8] = &[
        0x01, 0x02, 0x20, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00,
        0xfc, 0xfd, 0xfa, 0xfa, 0x00, 0x00, 0x0f, 0x03, 0x20, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x3c, 0x95, 0x94, 0x09, 0x21, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01,
        0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c,
        0xa0, 0x0a, 0x08, 0x0c, 0x1f, 0x3b, 0x65, 0x95, 0x95, 0x29, 0x30, 0xbc, 0x05, 0xa0, 0x20,
        0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1, 0x22, 0x00, 0x01, 0x00, 0x06,
        0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89,
    ];

    #[test]
    fn parses_the_x265_record() {
        let c = HevcConfig::parse(record()).expect("parses");
        assert_eq!((c.width, c.height), (320, 180));
        assert_eq!(c.fps, Some(30.0));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
        assert_eq!(c.bit_depth_luma, 8);
        // Main (1), compatible with Main and Main 10 (flags 1 and 2), level 2 (60), progressive
        // and frame-only source.
        assert_eq!(c.codec_string(), "hvc1.1.6.L60.90");
    }

    #[test]
    fn main10_codec_string() {
        let c = HevcConfig::parse(Bytes::from_static(MAIN10)).expect("parses");
        assert_eq!(c.codec_string(), "hvc1.2.4.L60.90");
        assert_eq!(c.bit_depth_luma, 10);
        assert_eq!((c.width, c.height), (320, 180));
    }

    #[test]
    fn codec_string_forms() {
        let mut c = HevcConfig::parse(Bytes::from_static(MAIN10)).expect("parses");
        c.profile_idc = 1;
        c.compatibility_flags = 0x6000_0000;
        c.level_idc = 93;
        c.constraint_flags = [0xb0, 0, 0, 0, 0, 0];
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.B0");
        c.tier = true;
        c.profile_space = 1;
        c.level_idc = 120;
        c.constraint_flags = [0xb0, 0, 0x12, 0, 0, 0];
        assert_eq!(c.codec_string(), "hvc1.A1.6.H120.B0.0.12");
        c.constraint_flags = [0; 6];
        assert_eq!(c.codec_string(), "hvc1.A1.6.H120");
    }

    #[test]
    fn record_rebuilt_from_in_band_parameter_sets() {
        let c = HevcConfig::parse(Bytes::from_static(MAIN10)).expect("parses");
        let rebuilt = HevcConfig::from_parameter_sets(&c.vps, &c.sps, &c.pps).expect("builds");
        assert_eq!(rebuilt.codec_string(), c.codec_string());
        assert_eq!((rebuilt.width, rebuilt.height), (320, 180));
        assert_eq!(rebuilt.bit_depth_luma, 10);
        assert_eq!(rebuilt.chroma_format_idc, 1);
        assert_eq!(
            (&rebuilt.vps, &rebuilt.sps, &rebuilt.pps),
            (&c.vps, &c.sps, &c.pps)
        );
        assert_eq!(
            HevcConfig::from_parameter_sets(&[], &rebuilt.sps, &rebuilt.pps),
            Err(HevcError::NoParameterSets)
        );
    }

    #[test]
    fn configuration_from_an_annex_b_keyframe() {
        let c = HevcConfig::parse(Bytes::from_static(MAIN10)).expect("parses");
        let mut annex_b = Vec::new();
        to_annex_b(&[0, 0, 0, 3, 19 << 1, 0x01, 0xaa], &c, true, &mut annex_b).expect("converts");
        let (cfg, is_annex_b) =
            HevcConfig::from_access_unit(&Bytes::from(annex_b.clone())).expect("in band");
        assert!(is_annex_b);
        assert_eq!(cfg.codec_string(), "hvc1.2.4.L60.90");
        let unit = nal::annex_b_to_length_prefixed(&SYNTAX, &annex_b);
        assert_eq!(unit.data, vec![0, 0, 0, 3, 19 << 1, 0x01, 0xaa]);
        assert_eq!(unit.parameter_sets.len(), 3);
        assert!(HevcConfig::from_access_unit(&Bytes::from_static(&[0, 0, 0, 2, 38, 1])).is_none());
    }

    #[test]
    fn bad_records() {
        let mut no_pps = MAIN10[..100].to_vec();
        no_pps[22] = 2;
        let mut bad_length = MAIN10.to_vec();
        bad_length[21] = 0x0e;
        let cases: Vec<(Vec<u8>, HevcError)> = vec![
            (vec![1, 2, 3], HevcError::Short { len: 3 }),
            (vec![0; 23], HevcError::Version { version: 0 }),
            (MAIN10[..60].to_vec(), HevcError::Short { len: 60 }),
            (no_pps, HevcError::NoParameterSets),
            (bad_length, HevcError::LengthSize { size: 3 }),
        ];
        for (input, want) in cases {
            assert_eq!(
                HevcConfig::parse(Bytes::from(input.clone())),
                Err(want),
                "{input:?}"
            );
        }
        // An SPS that is not one.
        let mut bad_sps = MAIN10.to_vec();
        bad_sps[57] = 0xff;
        assert!(matches!(
            HevcConfig::parse(Bytes::from(bad_sps)),
            Err(HevcError::Sps { .. })
        ));
    }

    #[test]
    fn annex_b_adds_aud_and_parameter_sets_on_keyframes() {
        let c = HevcConfig::parse(Bytes::from_static(MAIN10)).expect("parses");
        // An IDR_W_RADL slice (type 19) of 3 bytes.
        let au = [0, 0, 0, 3, 19 << 1, 0x01, 0xaa];
        assert!(has_irap(&au, 4));
        let mut out = Vec::new();
        to_annex_b(&au, &c, true, &mut out).expect("converts");
        let nals: Vec<u8> = nal::annex_b_nal_units(&out).map(nal_type).collect();
        assert_eq!(nals, vec![NAL_AUD, NAL_VPS, NAL_SPS, NAL_PPS, 19]);
        assert_eq!(&out[..7], &[0, 0, 0, 1, 0x46, 0x01, 0x50]);

        let mut out = Vec::new();
        let trail = [0, 0, 0, 3, 1 << 1, 0x01, 0xbb];
        assert!(!has_irap(&trail, 4));
        to_annex_b(&trail, &c, false, &mut out).expect("converts");
        let nals: Vec<u8> = nal::annex_b_nal_units(&out).map(nal_type).collect();
        assert_eq!(nals, vec![NAL_AUD, 1]);
        assert_eq!(
            to_annex_b(&[0, 0, 0, 9, 2], &c, false, &mut Vec::new()),
            Err(HevcError::NalOverrun { len: 9 })
        );
    }
}
