//! The HEVC sequence parameter set (ITU-T H.265 7.3.2.2), read as far as the VUI timing info:
//! picture size (with the conformance window), chroma format, bit depths, temporal layers and
//! the frame rate.
//!
//! Hand-written over `h264-reader`'s bit reader (which removes emulation prevention bytes and
//! reads Exp-Golomb codes): the `scuffle-h265` crate, tried first, panics on hostile SPS values
//! (arithmetic overflow, found by the `ertmp_tags` fuzz target), and an SPS arrives from the
//! network. Every count is checked against the limits of the standard before it drives a loop,
//! and every derived value is computed without overflow. What comes between the picture size
//! and the VUI (scaling lists, short-term reference picture sets, long-term pictures) is read
//! only to be skipped.

use std::num::NonZeroUsize;

use h264_reader::rbsp::{BitRead, BitReader, BitReaderError, ByteReader};

/// What an SPS says about the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct SpsInfo {
    pub width: u32,
    pub height: u32,
    /// `vui_time_scale / vui_num_units_in_tick`, when the VUI has timing info.
    pub fps: Option<f64>,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub temporal_layers: u8,
    pub temporal_id_nested: bool,
}

/// Why an SPS could not be read: the field, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsError(pub String);

impl std::fmt::Display for SpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<BitReaderError> for SpsError {
    fn from(e: BitReaderError) -> Self {
        SpsError(match e {
            BitReaderError::ReaderError(name, _) => format!("{name}: ends early"),
            BitReaderError::ExpGolombTooLarge(name) => format!("{name}: value too large"),
            BitReaderError::RemainingData => "trailing data".into(),
        })
    }
}

type R<'a> = BitReader<ByteReader<&'a [u8]>>;

fn ue_max(r: &mut R<'_>, name: &'static str, max: u32) -> Result<u32, SpsError> {
    let v = r.read_ue(name)?;
    if v > max {
        return Err(SpsError(format!("{name} = {v}, at most {max}")));
    }
    Ok(v)
}

/// Reads an SPS NAL unit, with its two header bytes.
pub fn parse(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.len() < 3 || (nal[0] >> 1) & 0x3f != super::NAL_SPS {
        return Err(SpsError("not an SPS NAL unit".into()));
    }
    let skip = NonZeroUsize::new(2).ok_or_else(|| SpsError("header".into()))?;
    let mut r = BitReader::new(ByteReader::skipping_bytes(nal, skip));
    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1: u8 = r.read::<3, u8>("sps_max_sub_layers_minus1")?;
    if max_sub_layers_minus1 > 6 {
        return Err(SpsError("sps_max_sub_layers_minus1 = 7".into()));
    }
    let temporal_id_nested = r.read_bit("sps_temporal_id_nesting_flag")?;
    profile_tier_level(&mut r, max_sub_layers_minus1)?;
    ue_max(&mut r, "sps_seq_parameter_set_id", 15)?;
    let chroma_format_idc = ue_max(&mut r, "chroma_format_idc", 3)? as u8;
    let separate_planes = chroma_format_idc == 3 && r.read_bit("separate_colour_plane_flag")?;
    let width = ue_max(&mut r, "pic_width_in_luma_samples", 16888)?;
    let height = ue_max(&mut r, "pic_height_in_luma_samples", 16888)?;
    let (mut crop_w, mut crop_h) = (0u32, 0u32);
    if r.read_bit("conformance_window_flag")? {
        let left = ue_max(&mut r, "conf_win_left_offset", 16888)?;
        let right = ue_max(&mut r, "conf_win_right_offset", 16888)?;
        let top = ue_max(&mut r, "conf_win_top_offset", 16888)?;
        let bottom = ue_max(&mut r, "conf_win_bottom_offset", 16888)?;
        let (sub_w, sub_h) = match (chroma_format_idc, separate_planes) {
            (1, false) => (2, 2),
            (2, false) => (2, 1),
            _ => (1, 1),
        };
        crop_w = sub_w * (left + right);
        crop_h = sub_h * (top + bottom);
    }
    if crop_w >= width || crop_h >= height {
        return Err(SpsError(format!(
            "conformance window {crop_w}x{crop_h} covers the {width}x{height} picture"
        )));
    }
    let bit_depth_luma = ue_max(&mut r, "bit_depth_luma_minus8", 8)? as u8 + 8;
    let bit_depth_chroma = ue_max(&mut r, "bit_depth_chroma_minus8", 8)? as u8 + 8;
    let log2_max_poc_lsb = ue_max(&mut r, "log2_max_pic_order_cnt_lsb_minus4", 12)? + 4;
    let ordering_all = r.read_bit("sps_sub_layer_ordering_info_present_flag")?;
    let first = if ordering_all {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        ue_max(&mut r, "sps_max_dec_pic_buffering_minus1", 15)?;
        ue_max(&mut r, "sps_max_num_reorder_pics", 15)?;
        r.read_ue("sps_max_latency_increase_plus1")?;
    }
    ue_max(&mut r, "log2_min_luma_coding_block_size_minus3", 3)?;
    ue_max(&mut r, "log2_diff_max_min_luma_coding_block_size", 6)?;
    ue_max(&mut r, "log2_min_luma_transform_block_size_minus2", 3)?;
    ue_max(&mut r, "log2_diff_max_min_luma_transform_block_size", 3)?;
    ue_max(&mut r, "max_transform_hierarchy_depth_inter", 6)?;
    ue_max(&mut r, "max_transform_hierarchy_depth_intra", 6)?;
    if r.read_bit("scaling_list_enabled_flag")?
        && r.read_bit("sps_scaling_list_data_present_flag")?
    {
        skip_scaling_list_data(&mut r)?;
    }
    r.skip(2, "amp_enabled_flag, sample_adaptive_offset_enabled_flag")?;
    if r.read_bit("pcm_enabled_flag")? {
        r.skip(8, "pcm_sample_bit_depths")?;
        ue_max(&mut r, "log2_min_pcm_luma_coding_block_size_minus3", 2)?;
        ue_max(&mut r, "log2_diff_max_min_pcm_luma_coding_block_size", 3)?;
        r.skip(1, "pcm_loop_filter_disabled_flag")?;
    }
    let sets = ue_max(&mut r, "num_short_term_ref_pic_sets", 64)? as usize;
    skip_short_term_ref_pic_sets(&mut r, sets)?;
    if r.read_bit("long_term_ref_pics_present_flag")? {
        let n = ue_max(&mut r, "num_long_term_ref_pics_sps", 32)?;
        for _ in 0..n {
            r.skip(
                log2_max_poc_lsb + 1,
                "lt_ref_pic_poc_lsb_sps, used_by_curr_pic_lt_sps_flag",
            )?;
        }
    }
    r.skip(
        2,
        "sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag",
    )?;
    let fps = if r.read_bit("vui_parameters_present_flag")? {
        vui_fps(&mut r)?
    } else {
        None
    };
    Ok(SpsInfo {
        width: width - crop_w,
        height: height - crop_h,
        fps,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        temporal_layers: max_sub_layers_minus1 + 1,
        temporal_id_nested,
    })
}

/// profile_tier_level(1, max_sub_layers_minus1), skipped: the record repeats its general part.
fn profile_tier_level(r: &mut R<'_>, max_sub_layers_minus1: u8) -> Result<(), SpsError> {
    // profile space, tier, profile idc (8), compatibility flags (32), constraint flags (48),
    // level (8).
    r.skip(96, "general_profile_tier_level")?;
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (
            r.read_bit("sub_layer_profile_present_flag")?,
            r.read_bit("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - max_sub_layers_minus1 as u32),
            "reserved_zero_2bits",
        )?;
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88, "sub_layer_profile")?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    Ok(())
}

/// scaling_list_data() (7.3.4), read and dropped.
fn skip_scaling_list_data(r: &mut R<'_>) -> Result<(), SpsError> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        let mut matrix_id = 0;
        while matrix_id < 6 {
            if !r.read_bit("scaling_list_pred_mode_flag")? {
                ue_max(r, "scaling_list_pred_matrix_id_delta", matrix_id)?;
            } else {
                let coefs = 64.min(1u32 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.read_se("scaling_list_dc_coef_minus8")?;
                }
                for _ in 0..coefs {
                    r.read_se("scaling_list_delta_coef")?;
                }
            }
            matrix_id += step;
        }
    }
    Ok(())
}

/// The short-term reference picture sets (7.3.7), read only to reach what follows them. A set
/// predicted from the previous one needs how many pictures that one has, so each set's delta
/// POCs are derived (7.4.8), bounded by the 16 pictures a decoded picture buffer holds.
fn skip_short_term_ref_pic_sets(r: &mut R<'_>, sets: usize) -> Result<(), SpsError> {
    // Per set: (negative delta POCs, positive delta POCs).
    let mut all: Vec<(Vec<i32>, Vec<i32>)> = Vec::with_capacity(sets);
    for idx in 0..sets {
        let predicted = idx != 0 && r.read_bit("inter_ref_pic_set_prediction_flag")?;
        if predicted {
            // In the SPS the reference is always the previous set (delta_idx_minus1 is only
            // in slice headers).
            let sign = r.read_bit("delta_rps_sign")?;
            let abs = ue_max(r, "abs_delta_rps_minus1", 0x7fff)? as i32 + 1;
            let delta_rps = if sign { -abs } else { abs };
            let (ref_neg, ref_pos) = &all[idx - 1];
            let n = ref_neg.len() + ref_pos.len();
            let mut use_delta = Vec::with_capacity(n + 1);
            for _ in 0..=n {
                let used = r.read_bit("used_by_curr_pic_flag")?;
                use_delta.push(used || r.read_bit("use_delta_flag")?);
            }
            // 7-61 and 7-62: the reference set's POCs shifted by delta_rps, plus delta_rps
            // itself (index n), kept where use_delta_flag is set, split by sign.
            let ref_pocs = ref_neg.iter().chain(ref_pos.iter()).copied();
            let mut neg = Vec::new();
            let mut pos = Vec::new();
            for (poc, keep) in ref_pocs.chain(std::iter::once(0)).zip(use_delta) {
                let d = poc + delta_rps;
                if !keep || d == 0 {
                    continue;
                }
                if d < 0 {
                    neg.push(d);
                } else {
                    pos.push(d);
                }
            }
            if neg.len() + pos.len() > 16 {
                return Err(SpsError(
                    "a predicted reference picture set has more than 16 pictures".into(),
                ));
            }
            all.push((neg, pos));
        } else {
            let neg_count = ue_max(r, "num_negative_pics", 16)?;
            let pos_count = ue_max(r, "num_positive_pics", 16 - neg_count)?;
            let mut neg = Vec::with_capacity(neg_count as usize);
            let mut poc = 0i32;
            for _ in 0..neg_count {
                poc -= ue_max(r, "delta_poc_s0_minus1", 0x7fff)? as i32 + 1;
                r.skip(1, "used_by_curr_pic_s0_flag")?;
                neg.push(poc);
            }
            let mut pos = Vec::with_capacity(pos_count as usize);
            poc = 0;
            for _ in 0..pos_count {
                poc += ue_max(r, "delta_poc_s1_minus1", 0x7fff)? as i32 + 1;
                r.skip(1, "used_by_curr_pic_s1_flag")?;
                pos.push(poc);
            }
            all.push((neg, pos));
        }
    }
    Ok(())
}

/// vui_parameters() (E.2.1) up to the timing info: the frame rate.
fn vui_fps(r: &mut R<'_>) -> Result<Option<f64>, SpsError> {
    if r.read_bit("aspect_ratio_info_present_flag")? {
        let idc: u8 = r.read::<8, u8>("aspect_ratio_idc")?;
        if idc == 255 {
            r.skip(32, "sar_width, sar_height")?;
        }
    }
    if r.read_bit("overscan_info_present_flag")? {
        r.skip(1, "overscan_appropriate_flag")?;
    }
    if r.read_bit("video_signal_type_present_flag")? {
        r.skip(4, "video_format, video_full_range_flag")?;
        if r.read_bit("colour_description_present_flag")? {
            r.skip(
                24,
                "colour_primaries, transfer_characteristics, matrix_coeffs",
            )?;
        }
    }
    if r.read_bit("chroma_loc_info_present_flag")? {
        ue_max(r, "chroma_sample_loc_type_top_field", 5)?;
        ue_max(r, "chroma_sample_loc_type_bottom_field", 5)?;
    }
    r.skip(3, "neutral_chroma, field_seq, frame_field_info_present")?;
    if r.read_bit("default_display_window_flag")? {
        for _ in 0..4 {
            r.read_ue("def_disp_win_offset")?;
        }
    }
    if !r.read_bit("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    let units: u32 = r.read::<32, u32>("vui_num_units_in_tick")?;
    let scale: u32 = r.read::<32, u32>("vui_time_scale")?;
    if units == 0 {
        return Ok(None);
    }
    let fps = scale as f64 / units as f64;
    Ok((fps.is_finite() && fps > 0.0 && fps <= 1000.0).then_some(fps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPS of the Main 10 record in `super::tests`.
    const SPS_MAIN10: &[u8] = &[
        0x42, 0x01, 0x01, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0c, 0x1f, 0x3b, 0x65, 0x95, 0x95, 0x29, 0x30, 0xbc,
        0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1,
    ];

    #[test]
    fn reads_x265_main10() {
        let s = parse(SPS_MAIN10).expect("parses");
        assert_eq!((s.width, s.height), (320, 180));
        assert_eq!(s.fps, Some(30.0));
        assert_eq!(
            (s.chroma_format_idc, s.bit_depth_luma, s.bit_depth_chroma),
            (1, 10, 10)
        );
        assert_eq!((s.temporal_layers, s.temporal_id_nested), (1, true));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for n in 0..SPS_MAIN10.len() {
            let _ = parse(&SPS_MAIN10[..n]);
        }
        assert!(parse(&SPS_MAIN10[..20]).is_err());
        assert!(parse(&[0x40, 0x01, 0x0c]).is_err(), "a VPS");
        // Every single-bit change of the real SPS: read or refused, never a panic.
        for i in 2..SPS_MAIN10.len() {
            for bit in 0..8 {
                let mut s = SPS_MAIN10.to_vec();
                s[i] ^= 1 << bit;
                let _ = parse(&s);
            }
        }
    }
}
