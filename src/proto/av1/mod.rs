//! AV1 as Enhanced RTMP and fMP4 carry it: the AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3,
//! the `av1C` box and ffmpeg's extradata), access units as the OBUs of one temporal unit in the
//! low-overhead format (each with its size field), and the `CODECS` parameter of AV1-ISOBMFF
//! Annex A (`av01.0.08M.08`).
//!
//! The record's 4-byte header and the OBU framing are read here; the sequence header OBU
//! (picture size, timing info) in [`seq`].

pub mod seq;

use bytes::{BufMut, Bytes};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Av1Error {
    #[error("AV1 configuration record too short ({len} bytes)")]
    Short { len: usize },
    #[error("AV1 configuration record marker or version is wrong ({byte:#04x}, expected 0x81)")]
    Version { byte: u8 },
    #[error("AV1 configuration record has no sequence header OBU")]
    NoSequenceHeader,
    #[error("AV1 sequence header could not be parsed: {reason}")]
    SequenceHeader { reason: String },
    #[error("AV1 OBU of {len} bytes runs past the end of the temporal unit")]
    ObuOverrun { len: usize },
}

pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_PADDING: u8 = 15;

/// The decoder configuration of an AV1 stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Av1Config {
    /// The record as received (the `av1C` box body and ffmpeg's extradata).
    pub record: Bytes,
    pub seq_profile: u8,
    /// seq_level_idx of operating point 0.
    pub level_idx: u8,
    /// seq_tier of operating point 0 (high tier).
    pub tier: bool,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
    /// Frame rate from the sequence header's timing info, when the encoder wrote it.
    pub fps: Option<f64>,
}

impl Av1Config {
    /// Parses an AV1CodecConfigurationRecord with its sequence header OBU.
    pub fn parse(record: Bytes) -> Result<Av1Config, Av1Error> {
        if record.len() < 4 {
            return Err(Av1Error::Short { len: record.len() });
        }
        if record[0] != 0x81 {
            return Err(Av1Error::Version { byte: record[0] });
        }
        let seq = obus(&record[4..])
            .find_map(|o| match o {
                Ok(o) if o.kind == OBU_SEQUENCE_HEADER => Some(Ok(o.whole)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .ok_or(Av1Error::NoSequenceHeader)??;
        let mut config = Self::from_sequence_header(seq)?;
        // The record's own header wins over the rebuilt one: it is what the encoder sent.
        config.record = record;
        Ok(config)
    }

    /// The configuration from a sequence header OBU (with its OBU header and size field), as
    /// found in a keyframe's temporal unit when the sequence start carried none.
    pub fn from_sequence_header(obu: &[u8]) -> Result<Av1Config, Av1Error> {
        let o = obus(obu).next().ok_or(Av1Error::NoSequenceHeader)??;
        if o.kind != OBU_SEQUENCE_HEADER {
            return Err(Av1Error::NoSequenceHeader);
        }
        let seq = seq::parse(o.payload).map_err(|reason| Av1Error::SequenceHeader { reason })?;
        let mut record = Vec::with_capacity(4 + o.whole.len());
        record.push(0x81);
        record.push((seq.seq_profile << 5) | (seq.level_idx & 0x1f));
        record.push(
            ((seq.tier as u8) << 7)
                | (((seq.bit_depth > 8) as u8) << 6)
                | (((seq.bit_depth == 12) as u8) << 5)
                | ((seq.mono_chrome as u8) << 4)
                | ((seq.subsampling_x as u8) << 3)
                | ((seq.subsampling_y as u8) << 2)
                | (seq.chroma_sample_position & 0x03),
        );
        record.push(0);
        record.put_slice(o.whole);
        Ok(Av1Config {
            record: Bytes::from(record),
            seq_profile: seq.seq_profile,
            level_idx: seq.level_idx,
            tier: seq.tier,
            bit_depth: seq.bit_depth,
            width: seq.max_width,
            height: seq.max_height,
            fps: seq.fps,
        })
    }

    /// The `CODECS` value without its optional fields: `av01.` profile, two-digit level and
    /// tier (`M` main, `H` high), two-digit bit depth.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.level_idx,
            if self.tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }
}

/// One OBU of a temporal unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    pub kind: u8,
    /// The OBU with its header and size field.
    pub whole: &'a [u8],
    /// The OBU's payload, after its header and size field.
    pub payload: &'a [u8],
}

/// Iterates the OBUs of a temporal unit in the low-overhead format. An OBU without a size field
/// runs to the end (only the last may omit it).
pub fn obus(data: &[u8]) -> impl Iterator<Item = Result<Obu<'_>, Av1Error>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let start = pos;
        let header = data[pos];
        let kind = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        pos += 1 + extension as usize;
        let end = if has_size {
            let mut size = 0u64;
            let mut i = 0;
            loop {
                let Some(&b) = data.get(pos) else {
                    pos = data.len();
                    return Some(Err(Av1Error::ObuOverrun { len: 0 }));
                };
                pos += 1;
                size |= ((b & 0x7f) as u64) << (7 * i);
                i += 1;
                if b & 0x80 == 0 || i == 8 {
                    break;
                }
            }
            let len = usize::try_from(size).unwrap_or(usize::MAX);
            if len > data.len() - pos.min(data.len()) {
                pos = data.len();
                return Some(Err(Av1Error::ObuOverrun { len }));
            }
            pos + len
        } else {
            data.len()
        };
        if pos > data.len() {
            pos = data.len();
            return Some(Err(Av1Error::ObuOverrun { len: 0 }));
        }
        let payload = &data[pos..end];
        pos = end;
        Some(Ok(Obu {
            kind,
            whole: &data[start..end],
            payload,
        }))
    })
}

/// A temporal unit as fMP4 samples want it: without temporal delimiter and padding OBUs
/// (AV1-ISOBMFF 2.4). Returned as is (no copy) when it has none.
pub fn strip_delimiters(data: &Bytes) -> Result<Bytes, Av1Error> {
    let drop = |k: u8| k == OBU_TEMPORAL_DELIMITER || k == OBU_PADDING;
    let mut any = false;
    for o in obus(data) {
        any |= drop(o?.kind);
    }
    if !any {
        return Ok(data.clone());
    }
    let mut out = Vec::with_capacity(data.len());
    for o in obus(data).flatten() {
        if !drop(o.kind) {
            out.put_slice(o.whole);
        }
    }
    Ok(Bytes::from(out))
}

/// The sequence header OBU of a temporal unit, if it has one (keyframes usually do).
pub fn sequence_header(data: &[u8]) -> Option<&[u8]> {
    obus(data)
        .map_while(Result::ok)
        .find(|o| o.kind == OBU_SEQUENCE_HEADER)
        .map(|o| o.whole)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::flv::{file_tags, tests::fixture};

    /// The AV1CodecConfigurationRecord of fixtures/av1-opus-320x180.flv (ffmpeg 9, SVT-AV1).
    pub fn record() -> Bytes {
        let file = fixture("av1-opus-320x180.flv");
        let tag = file_tags(&file).find(|t| t.kind == 9).expect("a video tag");
        assert_eq!(&tag.body[..5], b"\x90av01");
        tag.body.slice(5..)
    }

    #[test]
    fn parses_the_svt_av1_record() {
        let c = Av1Config::parse(record()).expect("parses");
        assert_eq!((c.width, c.height), (320, 180));
        assert_eq!(
            (c.seq_profile, c.level_idx, c.tier, c.bit_depth),
            (0, 0, false, 8)
        );
        // What ffmpeg's HLS muxer writes for this stream.
        assert_eq!(c.codec_string(), "av01.0.00M.08");
        assert_eq!(&c.record[..], &record()[..]);
    }

    #[test]
    fn rebuilds_the_record_from_a_sequence_header() {
        let rec = record();
        let seq = sequence_header(&rec[4..]).expect("sequence header");
        let c = Av1Config::from_sequence_header(seq).expect("parses");
        assert_eq!(&c.record[..], &rec[..], "same record as SVT-AV1's");
        assert_eq!(c.codec_string(), "av01.0.00M.08");
    }

    #[test]
    fn codec_string_forms() {
        let mut c = Av1Config::parse(record()).expect("parses");
        c.level_idx = 8;
        assert_eq!(c.codec_string(), "av01.0.08M.08");
        c.seq_profile = 2;
        c.level_idx = 13;
        c.tier = true;
        c.bit_depth = 12;
        assert_eq!(c.codec_string(), "av01.2.13H.12");
    }

    #[test]
    fn bad_records() {
        assert_eq!(
            Av1Config::parse(Bytes::from_static(&[0x81, 0])),
            Err(Av1Error::Short { len: 2 })
        );
        assert_eq!(
            Av1Config::parse(Bytes::from_static(&[0x01, 0, 0, 0])),
            Err(Av1Error::Version { byte: 1 })
        );
        assert_eq!(
            Av1Config::parse(Bytes::from_static(&[0x81, 0, 0, 0])),
            Err(Av1Error::NoSequenceHeader)
        );
        // A sequence header OBU that claims more bytes than there are.
        assert_eq!(
            Av1Config::parse(Bytes::from_static(&[0x81, 0, 0, 0, 0x0a, 0x20, 0])),
            Err(Av1Error::ObuOverrun { len: 32 })
        );
        assert!(matches!(
            Av1Config::parse(Bytes::from_static(&[0x81, 0, 0, 0, 0x0a, 1, 0xff])),
            Err(Av1Error::SequenceHeader { .. })
        ));
    }

    #[test]
    fn strips_temporal_delimiters_from_the_fixture_frames() {
        let file = fixture("av1-opus-320x180.flv");
        let mut frames = 0;
        for tag in file_tags(&file).filter(|t| t.kind == 9) {
            // Coded frames: [0x91 / 0xa1] "av01" OBUs.
            if tag.body[0] & 0x0f != 1 {
                continue;
            }
            let tu = tag.body.slice(5..);
            let kinds: Vec<u8> = obus(&tu).map(|o| o.expect("obu").kind).collect();
            assert_eq!(
                kinds[0], OBU_TEMPORAL_DELIMITER,
                "ffmpeg sends the delimiter"
            );
            let stripped = strip_delimiters(&tu).expect("strips");
            let kinds: Vec<u8> = obus(&stripped).map(|o| o.expect("obu").kind).collect();
            assert!(!kinds.contains(&OBU_TEMPORAL_DELIMITER), "{kinds:?}");
            assert_eq!(stripped.len(), tu.len() - 2);
            frames += 1;
        }
        assert!(frames >= 50, "{frames}");
        let plain = Bytes::from_static(&[0x32, 0x01, 0xaa]);
        let kept = strip_delimiters(&plain).expect("no delimiter");
        assert_eq!(kept.as_ptr(), plain.as_ptr(), "no copy");
        assert_eq!(
            strip_delimiters(&Bytes::from_static(&[0x32, 0x05, 1])),
            Err(Av1Error::ObuOverrun { len: 5 })
        );
        // No size field: the OBU runs to the end.
        let last: Vec<_> = obus(&[0x30, 1, 2, 3]).collect();
        assert_eq!(
            last,
            vec![Ok(Obu {
                kind: 6,
                whole: &[0x30, 1, 2, 3][..],
                payload: &[1, 2, 3][..],
            })]
        );
    }
}
