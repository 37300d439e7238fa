//! H.264 as it arrives in FLV: the AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1) and
//! length-prefixed access units, plus the conversion to Annex B that MPEG-TS needs, and back:
//! encoders (libx264 in the transcoder) write Annex B, the bus carries length-prefixed units.
//!
//! SPS fields (resolution, frame rate) are read with the `h264-reader` crate: exp-Golomb parsing
//! with scaling lists and VUI is easy to get subtly wrong by hand.

use bytes::{BufMut, Bytes};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use super::nal::{self, NalError, NalSyntax};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvcError {
    #[error("decoder configuration record too short ({len} bytes)")]
    Short { len: usize },
    #[error("decoder configuration record version {version}, expected 1")]
    Version { version: u8 },
    #[error("decoder configuration record has no SPS or no PPS")]
    NoParameterSets,
    #[error("SPS could not be parsed: {reason}")]
    Sps { reason: String },
    #[error("NAL unit length {len} runs past the end of the access unit")]
    NalOverrun { len: usize },
}

impl From<NalError> for AvcError {
    fn from(e: NalError) -> Self {
        match e {
            NalError::Overrun { len } => AvcError::NalOverrun { len },
        }
    }
}

/// The decoder configuration of an H.264 stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// The record as received (fMP4 `avcC` box and ffmpeg extradata use it as is).
    pub record: Bytes,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub width: u32,
    pub height: u32,
    /// Frame rate from the SPS timing info, when the encoder wrote it.
    pub fps: Option<f64>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn parse(record: Bytes) -> Result<AvcConfig, AvcError> {
        let r = &record[..];
        if r.len() < 7 {
            return Err(AvcError::Short { len: r.len() });
        }
        if r[0] != 1 {
            return Err(AvcError::Version { version: r[0] });
        }
        let nal_length_size = (r[4] & 0x03) as usize + 1;
        let mut pos = 5;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>, AvcError> {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = r
                    .get(*pos..*pos + 2)
                    .ok_or(AvcError::Short { len: r.len() })?;
                let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
                *pos += 2;
                if *pos + len > r.len() || len == 0 {
                    return Err(AvcError::Short { len: r.len() });
                }
                out.push(record.slice(*pos..*pos + len));
                *pos += len;
            }
            Ok(out)
        };
        let sps_count = (r[5] & 0x1f) as usize;
        pos += 1;
        let sps = read_sets(sps_count, &mut pos)?;
        let pps_count = *r.get(pos).ok_or(AvcError::Short { len: r.len() })? as usize;
        pos += 1;
        let pps = read_sets(pps_count, &mut pos)?;
        if sps.is_empty() || pps.is_empty() {
            return Err(AvcError::NoParameterSets);
        }
        let first = &sps[0];
        let (width, height, fps) = parse_sps(first)?;
        Ok(AvcConfig {
            profile_idc: first.get(1).copied().unwrap_or(r[1]),
            constraint_flags: first.get(2).copied().unwrap_or(r[2]),
            level_idc: first.get(3).copied().unwrap_or(r[3]),
            record,
            nal_length_size,
            sps,
            pps,
            width,
            height,
            fps,
        })
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// Width, height and frame rate from an SPS NAL unit (with its header byte).
pub fn parse_sps(nal: &[u8]) -> Result<(u32, u32, Option<f64>), AvcError> {
    let rbsp = decode_nal(nal).map_err(|e| AvcError::Sps {
        reason: e.to_string(),
    })?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| AvcError::Sps {
        reason: format!("{e:?}"),
    })?;
    let (w, h) = sps.pixel_dimensions().map_err(|e| AvcError::Sps {
        reason: format!("{e:?}"),
    })?;
    let fps = sps
        .fps()
        .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
    Ok((w, h, fps))
}

/// NAL unit type of the first byte of a NAL unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| b & 0x1f).unwrap_or(0)
}

/// H.264's NAL syntax: SPS 7, PPS 8, access unit delimiter 9 (primary_pic_type 7: any slice).
pub const SYNTAX: NalSyntax = NalSyntax {
    nal_type,
    parameter_sets: &[7, 8],
    aud_type: 9,
    aud: &[0x09, 0xf0],
};

/// Iterates the NAL units of a length-prefixed access unit.
pub fn nal_units(data: &[u8], length_size: usize) -> impl Iterator<Item = Result<&[u8], AvcError>> {
    nal::nal_units(data, length_size).map(|r| r.map_err(AvcError::from))
}

/// Converts a length-prefixed access unit to Annex B, starting with an access unit delimiter and,
/// when `keyframe`, the SPS and PPS (players joining at this frame need them in band).
pub fn to_annex_b(
    data: &[u8],
    config: &AvcConfig,
    keyframe: bool,
    out: &mut Vec<u8>,
) -> Result<(), AvcError> {
    let sets: Vec<&Bytes> = config.sps.iter().chain(config.pps.iter()).collect();
    nal::to_annex_b(&SYNTAX, data, config.nal_length_size, keyframe, &sets, out)?;
    Ok(())
}

/// An encoder's Annex B access unit as the bus wants it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvccUnit {
    /// 4-byte length-prefixed NAL units, without parameter sets and delimiters (the SPS/PPS go
    /// into the [`AvcConfig`]; the MPEG-TS muxer puts them back in band on keyframes).
    pub data: Vec<u8>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

/// Converts an Annex B access unit to 4-byte length-prefixed form, taking out the parameter
/// sets (types 7 and 8) and access unit delimiters (type 9).
pub fn annex_b_to_avcc(data: &[u8]) -> AvccUnit {
    let unit = nal::annex_b_to_length_prefixed(&SYNTAX, data);
    let mut out = AvccUnit {
        data: unit.data,
        ..Default::default()
    };
    for (t, ps) in unit.parameter_sets {
        match t {
            7 => out.sps.push(ps),
            _ => out.pps.push(ps),
        }
    }
    out
}

impl AvcConfig {
    /// The configuration from the SPS and PPS carried inside a keyframe, for encoders that
    /// send no usable AVC sequence header (ffmpeg's tee muxer without global headers, some
    /// hardware encoders). Such a keyframe is 4-byte length-prefixed, or Annex B with start
    /// codes (what ffmpeg's FLV muxer passes through when it has no configuration record): the
    /// flag says which, so that the caller converts the stream's frames. `None` when the unit
    /// has no usable SPS/PPS pair.
    pub fn from_access_unit(data: &Bytes) -> Option<(AvcConfig, bool)> {
        nal::config_from_access_unit(&SYNTAX, data, |sets| {
            Self::from_parameter_sets(&nal::sets_of(sets, 7), &nal::sets_of(sets, 8)).ok()
        })
    }

    /// Builds the configuration record for parameter sets (as an encoder emits them), with
    /// 4-byte NAL lengths. The High-profile extension fields (chroma format, bit depth) are left
    /// out: ISO 14496-15 made them optional for readers, and neither ffmpeg nor browsers need
    /// them for 8-bit 4:2:0.
    pub fn from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Result<AvcConfig, AvcError> {
        let first = sps.first().ok_or(AvcError::NoParameterSets)?;
        if pps.is_empty() {
            return Err(AvcError::NoParameterSets);
        }
        if first.len() < 4 {
            return Err(AvcError::Short { len: first.len() });
        }
        let mut r = Vec::with_capacity(16 + first.len());
        r.extend_from_slice(&[1, first[1], first[2], first[3], 0xff]);
        r.push(0xe0 | (sps.len().min(31) as u8));
        for s in sps.iter().take(31) {
            r.put_u16(s.len() as u16);
            r.put_slice(s);
        }
        r.push(pps.len().min(255) as u8);
        for p in pps.iter().take(255) {
            r.put_u16(p.len() as u16);
            r.put_slice(p);
        }
        AvcConfig::parse(Bytes::from(r))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// AVCDecoderConfigurationRecord of fixtures/testsrc-320x180.flv (ffmpeg, libx264).
    pub const RECORD_320X180: &[u8] = &[
        0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x06,
        0x7e, 0x7c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x23, 0xc5, 0x0a,
        0xa8, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8,
    ];

    pub fn record() -> Bytes {
        Bytes::from_static(RECORD_320X180)
    }

    #[test]
    fn parses_record_and_sps() {
        let c = AvcConfig::parse(record()).expect("parses");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.width, c.height), (320, 180));
        assert_eq!(c.codec_string(), "avc1.42c00d");
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.pps.len(), 1);
    }

    #[test]
    fn bad_records() {
        let cases: Vec<(Vec<u8>, AvcError)> = vec![
            (vec![1, 2, 3], AvcError::Short { len: 3 }),
            (
                vec![0, 0x64, 0, 0x0c, 0xff, 0xe1, 0],
                AvcError::Version { version: 0 },
            ),
            (
                vec![1, 0x64, 0, 0x0c, 0xff, 0xe0, 0],
                AvcError::NoParameterSets,
            ),
            (
                vec![1, 0x64, 0, 0x0c, 0xff, 0xe1, 0, 50, 0x67],
                AvcError::Short { len: 9 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                AvcConfig::parse(Bytes::from(input.clone())),
                Err(want),
                "{input:?}"
            );
        }
    }

    #[test]
    fn configuration_from_in_band_parameter_sets() {
        let rec = record();
        let (sps, pps) = (&rec[8..31], &rec[34..38]);
        let mut au = Vec::new();
        for nal in [sps, pps, &[0x65, 0x88, 0x80][..]] {
            au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            au.extend_from_slice(nal);
        }
        let (cfg, annex_b) = AvcConfig::from_access_unit(&Bytes::from(au)).expect("in-band config");
        assert!(!annex_b);
        assert_eq!((cfg.width, cfg.height), (320, 180));
        assert_eq!(cfg.codec_string(), "avc1.42c00d");
        let mut annex = Vec::new();
        for nal in [sps, pps, &[0x65, 0x88, 0x80][..]] {
            annex.extend_from_slice(&[0, 0, 0, 1]);
            annex.extend_from_slice(nal);
        }
        let (cfg, annex_b) =
            AvcConfig::from_access_unit(&Bytes::from(annex)).expect("Annex B config");
        assert!(annex_b);
        assert_eq!((cfg.width, cfg.height), (320, 180));
        assert!(
            AvcConfig::from_access_unit(&Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88])).is_none()
        );
        assert!(AvcConfig::from_access_unit(&Bytes::from_static(&[0, 0, 0, 9, 0x67])).is_none());
    }

    #[test]
    fn annex_b_adds_aud_and_parameter_sets_on_keyframes() {
        let c = AvcConfig::parse(record()).expect("parses");
        let au = [0, 0, 0, 3, 0x65, 0xaa, 0xbb];
        let mut out = Vec::new();
        to_annex_b(&au, &c, true, &mut out).expect("converts");
        let mut want = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        want.extend_from_slice(&RECORD_320X180[8..31]);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&RECORD_320X180[34..38]);
        want.extend_from_slice(&[0, 0, 0, 1, 0x65, 0xaa, 0xbb]);
        assert_eq!(out, want);

        let mut out = Vec::new();
        to_annex_b(&[0, 0, 0, 2, 0x41, 0x01], &c, false, &mut out).expect("converts");
        assert_eq!(out, vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 0x01]);

        let mut out = Vec::new();
        assert_eq!(
            to_annex_b(&[0, 0, 0, 9, 0x41], &c, false, &mut out),
            Err(AvcError::NalOverrun { len: 9 })
        );
    }

    #[test]
    fn annex_b_to_avcc_moves_parameter_sets_out_and_round_trips() {
        let c = AvcConfig::parse(record()).expect("parses");
        // What to_annex_b writes for a keyframe: AUD, SPS, PPS, IDR slice.
        let au = [0, 0, 0, 3, 0x65, 0xaa, 0xbb];
        let mut annex_b = Vec::new();
        to_annex_b(&au, &c, true, &mut annex_b).expect("converts");
        let unit = annex_b_to_avcc(&annex_b);
        assert_eq!(unit.data, au.to_vec());
        assert_eq!(unit.sps, c.sps);
        assert_eq!(unit.pps, c.pps);

        let rebuilt = AvcConfig::from_parameter_sets(&unit.sps, &unit.pps).expect("builds");
        assert_eq!(&rebuilt.record[..], RECORD_320X180);
        assert_eq!(rebuilt, c);
    }

    #[test]
    fn config_from_parameter_sets_needs_both() {
        let c = AvcConfig::parse(record()).expect("parses");
        assert_eq!(
            AvcConfig::from_parameter_sets(&c.sps, &[]),
            Err(AvcError::NoParameterSets)
        );
        assert_eq!(
            AvcConfig::from_parameter_sets(&[], &c.pps),
            Err(AvcError::NoParameterSets)
        );
        assert_eq!(
            AvcConfig::from_parameter_sets(&[Bytes::from_static(&[0x67, 1])], &c.pps),
            Err(AvcError::Short { len: 2 })
        );
    }
}
