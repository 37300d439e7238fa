//! The AV1 sequence header OBU (AV1 bitstream specification 5.5), read as far as the colour
//! configuration: profile, operating point 0's level and tier, timing info (the frame rate),
//! maximum picture size, bit depth and chroma subsampling.
//!
//! Hand-written over `h264-reader`'s bit reader (AV1 has no emulation prevention, so the
//! reader runs on the bytes as they are): the `scuffle-av1` crate, tried first, panics on
//! hostile values (arithmetic overflow in its `uvlc`, found by the fuzz targets), and a
//! sequence header arrives from the network.

use h264_reader::rbsp::{BitRead, BitReader, BitReaderError};

/// What a sequence header says.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceHeader {
    pub seq_profile: u8,
    /// seq_level_idx and seq_tier of operating point 0.
    pub level_idx: u8,
    pub tier: bool,
    pub max_width: u32,
    pub max_height: u32,
    /// time_scale / num_units_in_display_tick, when the header has timing info.
    pub fps: Option<f64>,
    pub bit_depth: u8,
    pub mono_chrome: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub chroma_sample_position: u8,
}

type R<'a> = BitReader<&'a [u8]>;

fn err(e: BitReaderError) -> String {
    match e {
        BitReaderError::ReaderError(name, _) => format!("{name}: ends early"),
        BitReaderError::ExpGolombTooLarge(name) => format!("{name}: too large"),
        BitReaderError::RemainingData => "trailing data".into(),
    }
}

fn f(r: &mut R<'_>, bits: u32, name: &'static str) -> Result<u32, String> {
    r.read_var::<u32>(bits, name).map_err(err)
}

fn flag(r: &mut R<'_>, name: &'static str) -> Result<bool, String> {
    r.read_bit(name).map_err(err)
}

/// uvlc() (4.10.3): leading zeros, then that many bits; 32 or more zeros mean 2^32 - 1.
fn uvlc(r: &mut R<'_>, name: &'static str) -> Result<u64, String> {
    let mut zeros = 0u32;
    while !flag(r, name)? {
        zeros += 1;
        if zeros >= 32 {
            return Ok(u32::MAX as u64);
        }
    }
    let value = if zeros == 0 {
        0
    } else {
        f(r, zeros, name)? as u64
    };
    Ok(value + (1u64 << zeros) - 1)
}

/// Reads the payload of a sequence header OBU (after its OBU header and size).
pub fn parse(payload: &[u8]) -> Result<SequenceHeader, String> {
    let r = &mut BitReader::new(payload);
    let seq_profile = f(r, 3, "seq_profile")? as u8;
    if seq_profile > 2 {
        return Err(format!("seq_profile {seq_profile}"));
    }
    let _still_picture = flag(r, "still_picture")?;
    let reduced = flag(r, "reduced_still_picture_header")?;
    let mut fps = None;
    let (level_idx, tier);
    if reduced {
        level_idx = f(r, 5, "seq_level_idx")? as u8;
        tier = false;
    } else {
        let mut decoder_model = None;
        if flag(r, "timing_info_present_flag")? {
            let units = f(r, 32, "num_units_in_display_tick")?;
            let scale = f(r, 32, "time_scale")?;
            if flag(r, "equal_picture_interval")? {
                uvlc(r, "num_ticks_per_picture_minus_1")?;
            }
            if units > 0 {
                fps = Some(scale as f64 / units as f64)
                    .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
            }
            if flag(r, "decoder_model_info_present_flag")? {
                let delay_bits = f(r, 5, "buffer_delay_length_minus_1")? + 1;
                r.skip(32 + 5 + 5, "decoder_model_info").map_err(err)?;
                decoder_model = Some(delay_bits);
            }
        }
        let initial_display_delay = flag(r, "initial_display_delay_present_flag")?;
        let points = f(r, 5, "operating_points_cnt_minus_1")? + 1;
        let mut first = None;
        for _ in 0..points {
            r.skip(12, "operating_point_idc").map_err(err)?;
            let level = f(r, 5, "seq_level_idx")? as u8;
            let t = level > 7 && flag(r, "seq_tier")?;
            first.get_or_insert((level, t));
            if let Some(delay_bits) = decoder_model {
                if flag(r, "decoder_model_present_for_this_op")? {
                    r.skip(2 * delay_bits + 1, "operating_parameters_info")
                        .map_err(err)?;
                }
            }
            if initial_display_delay && flag(r, "initial_display_delay_present_for_this_op")? {
                r.skip(4, "initial_display_delay_minus_1").map_err(err)?;
            }
        }
        (level_idx, tier) = first.unwrap_or((31, false));
    }
    let width_bits = f(r, 4, "frame_width_bits_minus_1")? + 1;
    let height_bits = f(r, 4, "frame_height_bits_minus_1")? + 1;
    let max_width = f(r, width_bits, "max_frame_width_minus_1")? as u64 + 1;
    let max_height = f(r, height_bits, "max_frame_height_minus_1")? as u64 + 1;
    if !reduced && flag(r, "frame_id_numbers_present_flag")? {
        r.skip(7, "frame id lengths").map_err(err)?;
    }
    r.skip(
        3,
        "use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter",
    )
    .map_err(err)?;
    if !reduced {
        r.skip(4, "interintra, masked compound, warped motion, dual filter")
            .map_err(err)?;
        let order_hint = flag(r, "enable_order_hint")?;
        if order_hint {
            r.skip(2, "enable_jnt_comp, enable_ref_frame_mvs")
                .map_err(err)?;
        }
        // seq_force_screen_content_tools is SELECT_SCREEN_CONTENT_TOOLS (2) when chosen.
        let force_screen_content = if flag(r, "seq_choose_screen_content_tools")? {
            2
        } else {
            f(r, 1, "seq_force_screen_content_tools")?
        };
        if force_screen_content > 0 && !flag(r, "seq_choose_integer_mv")? {
            r.skip(1, "seq_force_integer_mv").map_err(err)?;
        }
        if order_hint {
            r.skip(3, "order_hint_bits_minus_1").map_err(err)?;
        }
    }
    r.skip(3, "enable_superres, enable_cdef, enable_restoration")
        .map_err(err)?;
    // color_config() (5.5.2)
    let high_bitdepth = flag(r, "high_bitdepth")?;
    let bit_depth = if seq_profile == 2 && high_bitdepth {
        if flag(r, "twelve_bit")? {
            12
        } else {
            10
        }
    } else if high_bitdepth {
        10
    } else {
        8
    };
    let mono_chrome = seq_profile != 1 && flag(r, "mono_chrome")?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if flag(r, "color_description_present_flag")? {
        primaries = f(r, 8, "color_primaries")?;
        transfer = f(r, 8, "transfer_characteristics")?;
        matrix = f(r, 8, "matrix_coefficients")?;
    }
    let (mut ssx, mut ssy, mut csp) = (true, true, 0u8);
    if !mono_chrome {
        if primaries == 1 && transfer == 13 && matrix == 0 {
            // sRGB: 4:4:4.
            (ssx, ssy) = (false, false);
        } else {
            r.skip(1, "color_range").map_err(err)?;
            (ssx, ssy) = match seq_profile {
                0 => (true, true),
                1 => (false, false),
                _ if bit_depth == 12 => {
                    let x = flag(r, "subsampling_x")?;
                    (x, x && flag(r, "subsampling_y")?)
                }
                _ => (true, false),
            };
            if ssx && ssy {
                csp = f(r, 2, "chroma_sample_position")? as u8;
            }
        }
    }
    Ok(SequenceHeader {
        seq_profile,
        level_idx,
        tier,
        max_width: u32::try_from(max_width).unwrap_or(u32::MAX),
        max_height: u32::try_from(max_height).unwrap_or(u32::MAX),
        fps,
        bit_depth,
        mono_chrome,
        subsampling_x: ssx,
        subsampling_y: ssy,
        chroma_sample_position: csp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence header payload of SVT-AV1's 320x180 stream (fixtures/av1-opus-320x180.flv).
    const SVT: &[u8] = &[
        0x02, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xf6, 0x60, 0x17, 0xc0, 0x02,
    ];

    #[test]
    fn reads_svt_av1() {
        let s = parse(SVT).expect("parses");
        assert_eq!((s.seq_profile, s.level_idx, s.tier), (0, 0, false));
        assert_eq!((s.max_width, s.max_height), (320, 180));
        assert_eq!(
            (s.bit_depth, s.subsampling_x, s.subsampling_y),
            (8, true, true)
        );
        assert!(!s.mono_chrome);
    }

    #[test]
    fn uvlc_saturates_instead_of_overflowing() {
        let mut r = BitReader::new(&[0u8, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(uvlc(&mut r, "x"), Ok(u32::MAX as u64));
        let mut r = BitReader::new(&[0b0010_1000u8][..]);
        assert_eq!(uvlc(&mut r, "x"), Ok(4));
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        for n in 0..SVT.len() {
            let _ = parse(&SVT[..n]);
        }
        assert!(parse(&SVT[..3]).is_err());
        for i in 0..SVT.len() {
            for bit in 0..8 {
                let mut s = SVT.to_vec();
                s[i] ^= 1 << bit;
                let _ = parse(&s);
            }
        }
        assert!(parse(&[0xff; 16]).is_err(), "profile 7");
    }
}
