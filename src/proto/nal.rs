//! NAL unit framing shared by H.264 ([`super::avc`]) and HEVC ([`super::hevc`]): the
//! length-prefixed form that FLV, fMP4 and the bus carry, and Annex B (start codes) that MPEG-TS
//! and encoders use. What differs between the two codecs (the NAL header, which types are
//! parameter sets and access unit delimiters) comes in a [`NalSyntax`].

use bytes::{BufMut, Bytes};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NalError {
    #[error("NAL unit length {len} runs past the end of the access unit")]
    Overrun { len: usize },
}

/// How one codec marks its NAL units.
#[derive(Debug, Clone, Copy)]
pub struct NalSyntax {
    /// The NAL unit type from the first bytes of a unit.
    pub nal_type: fn(&[u8]) -> u8,
    /// Types of parameter sets (sent in band before keyframes in MPEG-TS).
    pub parameter_sets: &'static [u8],
    /// Type of the access unit delimiter.
    pub aud_type: u8,
    /// A complete access unit delimiter NAL unit (header and payload).
    pub aud: &'static [u8],
}

/// Iterates the NAL units of a length-prefixed access unit.
pub fn nal_units(data: &[u8], length_size: usize) -> impl Iterator<Item = Result<&[u8], NalError>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        if pos + length_size > data.len() {
            pos = data.len();
            return Some(Err(NalError::Overrun { len: length_size }));
        }
        let mut len = 0usize;
        for b in &data[pos..pos + length_size] {
            len = (len << 8) | *b as usize;
        }
        pos += length_size;
        if pos + len > data.len() {
            pos = data.len();
            return Some(Err(NalError::Overrun { len }));
        }
        let nal = &data[pos..pos + len];
        pos += len;
        Some(Ok(nal))
    })
}

/// Iterates the NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`).
///
/// Hand-written because it is a dozen lines: a NAL unit runs from the end of one start code to
/// the next; trailing zero bytes belong to the next (4-byte) start code, since a NAL unit always
/// ends with its stop bit.
pub fn annex_b_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let find_start = |from: usize| -> Option<usize> {
        data.get(from..)?
            .windows(3)
            .position(|w| w == [0, 0, 1])
            .map(|p| from + p)
    };
    let mut next = find_start(0).map(|p| p + 3);
    std::iter::from_fn(move || loop {
        let begin = next?;
        let end = find_start(begin);
        next = end.map(|p| p + 3);
        let mut nal = &data[begin..end.unwrap_or(data.len())];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Converts a length-prefixed access unit to Annex B, starting with an access unit delimiter and,
/// when `keyframe`, the `parameter_sets` (players joining at this frame need them in band),
/// unless the unit carries its own.
pub fn to_annex_b(
    syntax: &NalSyntax,
    data: &[u8],
    length_size: usize,
    keyframe: bool,
    parameter_sets: &[&Bytes],
    out: &mut Vec<u8>,
) -> Result<(), NalError> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let mut has_aud = false;
    let mut has_ps = false;
    for nal in nal_units(data, length_size) {
        let t = (syntax.nal_type)(nal?);
        has_aud |= t == syntax.aud_type;
        has_ps |= syntax.parameter_sets.contains(&t);
    }
    if !has_aud {
        out.put_slice(&START);
        out.put_slice(syntax.aud);
    }
    if keyframe && !has_ps {
        for ps in parameter_sets {
            out.put_slice(&START);
            out.put_slice(ps);
        }
    }
    for nal in nal_units(data, length_size) {
        let nal = nal?;
        if nal.is_empty() {
            continue;
        }
        out.put_slice(&START);
        out.put_slice(nal);
    }
    Ok(())
}

/// An encoder's Annex B access unit as the bus wants it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LengthPrefixedUnit {
    /// 4-byte length-prefixed NAL units, without parameter sets and delimiters (the parameter
    /// sets go into the configuration record; the MPEG-TS muxer puts them back in band on
    /// keyframes).
    pub data: Vec<u8>,
    /// The parameter sets taken out, with their NAL unit types, in stream order.
    pub parameter_sets: Vec<(u8, Bytes)>,
}

/// Converts an Annex B access unit to 4-byte length-prefixed form, taking out the parameter
/// sets and access unit delimiters.
pub fn annex_b_to_length_prefixed(syntax: &NalSyntax, data: &[u8]) -> LengthPrefixedUnit {
    let mut out = LengthPrefixedUnit {
        data: Vec::with_capacity(data.len() + 16),
        ..Default::default()
    };
    for nal in annex_b_nal_units(data) {
        let t = (syntax.nal_type)(nal);
        if syntax.parameter_sets.contains(&t) {
            out.parameter_sets.push((t, Bytes::copy_from_slice(nal)));
        } else if t != syntax.aud_type {
            out.data.put_u32(nal.len() as u32);
            out.data.put_slice(nal);
        }
    }
    out
}

/// The configuration a keyframe carries in band, for streams without a configuration record:
/// the unit is read as 4-byte length-prefixed, then as Annex B, and each form's parameter sets
/// (with their NAL types) go to `build`. The flag is true for Annex B, so that the caller
/// converts the stream's frames.
pub fn config_from_access_unit<T>(
    syntax: &NalSyntax,
    data: &Bytes,
    build: impl Fn(&[(u8, Bytes)]) -> Option<T>,
) -> Option<(T, bool)> {
    if nal_units(data, 4).all(|n| n.is_ok()) {
        let sets: Vec<(u8, Bytes)> = nal_units(data, 4)
            .flatten()
            .map(|n| ((syntax.nal_type)(n), n))
            .filter(|(t, _)| syntax.parameter_sets.contains(t))
            .map(|(t, n)| (t, data.slice_ref(n)))
            .collect();
        if let Some(c) = build(&sets) {
            return Some((c, false));
        }
    }
    let unit = annex_b_to_length_prefixed(syntax, data);
    build(&unit.parameter_sets).map(|c| (c, true))
}

/// The parameter sets of one NAL type from [`config_from_access_unit`]'s list.
pub fn sets_of(sets: &[(u8, Bytes)], nal_type: u8) -> Vec<Bytes> {
    sets.iter()
        .filter(|(t, _)| *t == nal_type)
        .map(|(_, b)| b.clone())
        .collect()
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`) from the start of a NAL unit's
/// payload, up to `limit` output bytes: enough to read fixed-position header fields.
pub fn unescape_prefix(nal: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit.min(nal.len()));
    let mut zeros = 0;
    for &b in nal {
        if out.len() >= limit {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_splits_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 0, 1, 0x65, 0x88, 0x00, 0x03,
        ];
        let nals: Vec<&[u8]> = annex_b_nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![
                &[0x09, 0xf0][..],
                &[0x67, 0x42][..],
                &[0x65, 0x88, 0x00, 0x03][..]
            ]
        );
        assert_eq!(annex_b_nal_units(&[]).count(), 0);
        assert_eq!(annex_b_nal_units(&[0, 0, 0, 0]).count(), 0);
        assert_eq!(annex_b_nal_units(&[0x65, 1, 2]).count(), 0, "no start code");
        assert_eq!(annex_b_nal_units(&[0, 0, 1]).count(), 0, "empty unit");
    }

    #[test]
    fn length_prefixed_units_and_overruns() {
        let data = [0, 2, 0xaa, 0xbb, 0, 1, 0xcc];
        let nals: Vec<_> = nal_units(&data, 2).collect();
        assert_eq!(nals, vec![Ok(&[0xaa, 0xbb][..]), Ok(&[0xcc][..])]);
        let nals: Vec<_> = nal_units(&[0, 0, 0, 9, 1], 4).collect();
        assert_eq!(nals, vec![Err(NalError::Overrun { len: 9 })]);
        let nals: Vec<_> = nal_units(&[0, 0], 4).collect();
        assert_eq!(nals, vec![Err(NalError::Overrun { len: 4 })]);
    }

    #[test]
    fn unescapes_emulation_prevention() {
        assert_eq!(
            unescape_prefix(&[1, 0, 0, 3, 1, 0, 0, 3, 0, 7], 100),
            vec![1, 0, 0, 1, 0, 0, 0, 7]
        );
        assert_eq!(unescape_prefix(&[1, 2, 3, 4], 2), vec![1, 2]);
    }
}
