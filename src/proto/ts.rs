//! MPEG-2 transport stream muxer (ISO 13818-1) for HLS segments: PAT and PMT at the start of
//! every segment, H.264 (stream type 0x1b) or HEVC (0x24) in Annex B with an access unit
//! delimiter and the parameter sets before each keyframe, AAC with ADTS headers, PCR on the
//! video PID. AV1 has no place here (HLS players do not take AV1 in MPEG-TS).
//!
//! Written by hand: the Rust TS crates are readers or unmaintained, and what HLS needs is a
//! small, fixed subset (two elementary streams, one program) that is easier to verify here
//! against ffprobe than to adapt.

use bytes::BufMut;

use super::aac::AacConfig;
use super::avc;
use super::hevc;
use super::media::{VideoCodec, VideoConfig};

pub const PACKET_SIZE: usize = 188;
const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
pub(crate) const STREAM_TYPE_H264: u8 = 0x1b;
pub(crate) const STREAM_TYPE_HEVC: u8 = 0x24;
pub(crate) const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// AAC frames gathered into one PES (about 90 ms at 44.1 kHz): fewer, fuller TS packets.
const AUDIO_FRAMES_PER_PES: usize = 4;
/// PCR runs this far behind DTS so that decoders buffer before they decode.
const PCR_LEAD: i64 = 9_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    #[error(transparent)]
    Avc(#[from] avc::AvcError),
    #[error(transparent)]
    Hevc(#[from] hevc::HevcError),
    #[error(transparent)]
    Aac(#[from] super::aac::AacError),
    #[error("{codec} video cannot be carried in MPEG-TS segments")]
    Unsupported { codec: &'static str },
}

/// The PMT stream type of a video codec, when MPEG-TS can carry it.
pub fn video_stream_type(codec: VideoCodec) -> Option<u8> {
    match codec {
        VideoCodec::Avc => Some(STREAM_TYPE_H264),
        VideoCodec::Hevc => Some(STREAM_TYPE_HEVC),
        VideoCodec::Av1 => None,
    }
}

/// Muxer state for one rendition: continuity counters and buffered audio.
#[derive(Debug, Default)]
pub struct TsMuxer {
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    /// Stream type of the video elementary stream, when there is one.
    video: Option<u8>,
    has_video: bool,
    has_audio: bool,
    /// ADTS frames waiting for a PES, and the PTS of the first one.
    audio_buf: Vec<u8>,
    audio_frames: usize,
    audio_pts: i64,
    scratch: Vec<u8>,
}

impl TsMuxer {
    /// A muxer for a video track in `video` (none for audio only, or for a codec MPEG-TS cannot
    /// carry) and an AAC track when `has_audio`.
    pub fn new(video: Option<VideoCodec>, has_audio: bool) -> Self {
        let video = video.and_then(video_stream_type);
        Self {
            video,
            has_video: video.is_some(),
            has_audio,
            ..Default::default()
        }
    }

    /// Writes PAT and PMT; call at the start of every segment.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 -> PMT_PID.
        let mut pat = vec![0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
        pat.put_u16(0xe000 | PMT_PID);
        let crc = crc32_mpeg(&pat);
        pat.put_u32(crc);
        write_section(out, 0, &mut self.cc_pat, &pat);

        let pcr_pid = if self.has_video { VIDEO_PID } else { AUDIO_PID };
        let mut streams = Vec::new();
        if let Some(stream_type) = self.video {
            streams.push(stream_type);
            streams.put_u16(0xe000 | VIDEO_PID);
            streams.put_u16(0xf000);
        }
        if self.has_audio {
            streams.push(STREAM_TYPE_AAC_ADTS);
            streams.put_u16(0xe000 | AUDIO_PID);
            streams.put_u16(0xf000);
        }
        let section_len = 13 + streams.len();
        let mut pmt = vec![0x02];
        pmt.put_u16(0xb000 | section_len as u16);
        pmt.extend_from_slice(&[0x00, 0x01, 0xc1, 0x00, 0x00]);
        pmt.put_u16(0xe000 | pcr_pid);
        pmt.put_u16(0xf000);
        pmt.extend_from_slice(&streams);
        let crc = crc32_mpeg(&pmt);
        pmt.put_u32(crc);
        write_section(out, PMT_PID, &mut self.cc_pmt, &pmt);
    }

    /// Writes one H.264 or HEVC access unit (length-prefixed, as in FLV).
    pub fn write_video(
        &mut self,
        out: &mut Vec<u8>,
        config: &VideoConfig,
        dts: i64,
        pts: i64,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), TsError> {
        let mut es = std::mem::take(&mut self.scratch);
        es.clear();
        let converted = match config {
            VideoConfig::Avc(c) => {
                avc::to_annex_b(data, c, keyframe, &mut es).map_err(TsError::from)
            }
            VideoConfig::Hevc(c) => {
                hevc::to_annex_b(data, c, keyframe, &mut es).map_err(TsError::from)
            }
            VideoConfig::Av1(_) => Err(TsError::Unsupported { codec: "AV1" }),
        };
        if let Err(e) = converted {
            self.scratch = es;
            return Err(e);
        }
        let mut pes = Vec::with_capacity(es.len() + 19);
        pes_header(&mut pes, 0xe0, Some(dts), pts, 0);
        pes.extend_from_slice(&es);
        self.scratch = es;
        let pcr = if self.has_video {
            Some((dts - PCR_LEAD).max(0))
        } else {
            None
        };
        write_pes(out, VIDEO_PID, &mut self.cc_video, &pes, pcr, keyframe);
        Ok(())
    }

    /// Buffers one raw AAC frame; a PES is written once enough frames are gathered.
    pub fn write_audio(
        &mut self,
        out: &mut Vec<u8>,
        config: &AacConfig,
        pts: i64,
        data: &[u8],
    ) -> Result<(), TsError> {
        let header = config.adts_header(data.len())?;
        if self.audio_frames == 0 {
            self.audio_pts = pts;
        }
        self.audio_buf.extend_from_slice(&header);
        self.audio_buf.extend_from_slice(data);
        self.audio_frames += 1;
        if self.audio_frames >= AUDIO_FRAMES_PER_PES {
            self.flush_audio(out);
        }
        Ok(())
    }

    /// Writes buffered audio; call before closing a segment.
    pub fn flush_audio(&mut self, out: &mut Vec<u8>) {
        if self.audio_frames == 0 {
            return;
        }
        let mut pes = Vec::with_capacity(self.audio_buf.len() + 14);
        let len = 8 + self.audio_buf.len();
        pes_header(
            &mut pes,
            0xc0,
            None,
            self.audio_pts,
            if len <= 0xffff { len as u16 } else { 0 },
        );
        pes.extend_from_slice(&self.audio_buf);
        let pcr = if self.has_video {
            None
        } else {
            Some((self.audio_pts - PCR_LEAD).max(0))
        };
        write_pes(out, AUDIO_PID, &mut self.cc_audio, &pes, pcr, false);
        self.audio_buf.clear();
        self.audio_frames = 0;
    }
}

/// PES header with PTS (and DTS when it differs). `packet_len` 0 means unbounded (video).
fn pes_header(out: &mut Vec<u8>, stream_id: u8, dts: Option<i64>, pts: i64, packet_len: u16) {
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    out.put_u16(packet_len);
    let dts = dts.filter(|d| *d != pts);
    match dts {
        Some(dts) => {
            out.extend_from_slice(&[0x80, 0xc0, 10]);
            put_timestamp(out, 0x3, pts);
            put_timestamp(out, 0x1, dts);
        }
        None => {
            out.extend_from_slice(&[0x80, 0x80, 5]);
            put_timestamp(out, 0x2, pts);
        }
    }
}

/// A 33-bit timestamp in PES form; the 64-bit timeline wraps modulo 2^33 as MPEG requires.
fn put_timestamp(out: &mut Vec<u8>, prefix: u8, ts: i64) {
    let ts = (ts as u64) & 0x1_ffff_ffff;
    out.push((prefix << 4) | (((ts >> 29) as u8) & 0x0e) | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 14) as u8) & 0xfe) | 1);
    out.push((ts >> 7) as u8);
    out.push((((ts << 1) as u8) & 0xfe) | 1);
}

/// Splits a PES into TS packets, with PCR and random-access flag on the first one and
/// adaptation-field stuffing on the last.
fn write_pes(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    pes: &[u8],
    pcr: Option<i64>,
    random_access: bool,
) {
    let mut af_body = Vec::with_capacity(7);
    if pcr.is_some() || random_access {
        let mut flags = 0u8;
        if random_access {
            flags |= 0x40;
        }
        if pcr.is_some() {
            flags |= 0x10;
        }
        af_body.push(flags);
        if let Some(pcr) = pcr {
            let base = (pcr as u64) & 0x1_ffff_ffff;
            af_body.push((base >> 25) as u8);
            af_body.push((base >> 17) as u8);
            af_body.push((base >> 9) as u8);
            af_body.push((base >> 1) as u8);
            af_body.push((((base & 1) as u8) << 7) | 0x7e);
            af_body.push(0);
        }
    }
    let mut rest = pes;
    let mut first = true;
    while !rest.is_empty() {
        let start = out.len();
        let with_af = first && !af_body.is_empty();
        let af_len = if with_af { 1 + af_body.len() } else { 0 };
        let space = PACKET_SIZE - 4 - af_len;
        let stuffing = space.saturating_sub(rest.len());
        let has_af = with_af || stuffing > 0;
        out.push(0x47);
        out.put_u16(if first { 0x4000 } else { 0 } | pid);
        out.push(if has_af { 0x30 } else { 0x10 } | (*cc & 0x0f));
        *cc = cc.wrapping_add(1) & 0x0f;
        if has_af {
            if with_af {
                out.push((af_body.len() + stuffing) as u8);
                out.extend_from_slice(&af_body);
                out.resize(out.len() + stuffing, 0xff);
            } else {
                // The adaptation field itself: length byte, then (if room) flags and stuffing.
                out.push((stuffing - 1) as u8);
                if stuffing > 1 {
                    out.push(0);
                    out.resize(out.len() + stuffing - 2, 0xff);
                }
            }
        }
        let take = rest.len().min(PACKET_SIZE - (out.len() - start));
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
        debug_assert_eq!(out.len() - start, PACKET_SIZE);
    }
}

/// Writes a PSI section (PAT or PMT) in one packet with a pointer field.
fn write_section(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &[u8]) {
    let start = out.len();
    out.push(0x47);
    out.put_u16(0x4000 | pid);
    out.push(0x10 | (*cc & 0x0f));
    *cc = cc.wrapping_add(1) & 0x0f;
    out.push(0); // pointer field
    out.extend_from_slice(section);
    out.resize(start + PACKET_SIZE, 0xff);
}

/// CRC-32/MPEG-2 (polynomial 0x04c11db7, no reflection, no final xor).
pub fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::avc::{tests::record, AvcConfig};
    use bytes::Bytes;

    #[test]
    fn crc_matches_reference() {
        // The CRC of ffmpeg's PAT for program 1 / PMT pid 0x1000.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg(&pat), 0x2ab1_04b2);
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn timestamps_encode_as_mpeg() {
        let mut out = Vec::new();
        put_timestamp(&mut out, 0x2, 0x1_2345_6789);
        assert_eq!(out, vec![0x29, 0x8d, 0x15, 0xcf, 0x13]);
    }

    #[test]
    fn packets_are_aligned_and_continuous() {
        let cfg = VideoConfig::Avc(AvcConfig::parse(record()).expect("record"));
        let aac = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).expect("asc");
        let mut m = TsMuxer::new(Some(VideoCodec::Avc), true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        for (i, size) in [1usize, 150, 183, 184, 185, 5000].into_iter().enumerate() {
            let mut au = (size as u32 + 1).to_be_bytes().to_vec();
            au.push(if i == 0 { 0x65 } else { 0x41 });
            au.resize(4 + size + 1, 0xab);
            let t = i as i64 * 3000;
            m.write_video(&mut out, &cfg, t, t + 3000, i == 0, &au)
                .expect("video");
            m.write_audio(&mut out, &aac, t, &[1, 2, 3]).expect("audio");
        }
        m.flush_audio(&mut out);
        assert_eq!(out.len() % PACKET_SIZE, 0);
        let mut last_cc = std::collections::HashMap::new();
        for p in out.chunks(PACKET_SIZE) {
            assert_eq!(p[0], 0x47);
            let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
            let cc = p[3] & 0x0f;
            if let Some(prev) = last_cc.insert(pid, cc) {
                assert_eq!(cc, (prev + 1) & 0x0f, "pid {pid:#x}");
            }
            if p[3] & 0x20 != 0 {
                assert!(p[4] as usize <= 183);
            }
        }
    }

    /// The PMT of a segment: the stream types it lists.
    fn pmt_stream_types(out: &[u8]) -> Vec<u8> {
        let pmt = out
            .chunks(PACKET_SIZE)
            .find(|p| u16::from_be_bytes([p[1], p[2]]) & 0x1fff == PMT_PID)
            .expect("PMT packet");
        // pointer field, table id, section length (2), program (2), version, section numbers
        // (2), PCR PID (2), program info length (2), then 5-byte stream entries before the CRC.
        let section_len = (u16::from_be_bytes([pmt[6], pmt[7]]) & 0x0fff) as usize;
        let entries = &pmt[5 + 12..5 + 3 + section_len - 4];
        entries.chunks(5).map(|e| e[0]).collect()
    }

    #[test]
    fn hevc_is_stream_type_0x24_and_av1_is_refused() {
        use crate::proto::hevc::{tests::record as hevc_record, HevcConfig};
        let cfg = VideoConfig::Hevc(HevcConfig::parse(hevc_record()).expect("hevc"));
        let mut m = TsMuxer::new(Some(VideoCodec::Hevc), true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        assert_eq!(pmt_stream_types(&out), vec![0x24, 0x0f]);
        let au = [0, 0, 0, 3, 19 << 1, 0x01, 0xaa];
        m.write_video(&mut out, &cfg, 0, 0, true, &au)
            .expect("hevc");
        assert_eq!(out.len() % PACKET_SIZE, 0);
        // The PES carries AUD, VPS, SPS, PPS, then the slice.
        let pes = &out[2 * PACKET_SIZE..];
        assert!(pes.windows(7).any(|w| w == [0, 0, 0, 1, 0x46, 0x01, 0x50]));

        let mut m = TsMuxer::new(Some(VideoCodec::Av1), true);
        let mut out = Vec::new();
        m.write_tables(&mut out);
        assert_eq!(pmt_stream_types(&out), vec![0x0f], "audio only");
        let av1 = VideoConfig::Av1(
            crate::proto::av1::Av1Config::parse(crate::proto::av1::tests::record()).expect("av1"),
        );
        assert_eq!(
            m.write_video(&mut out, &av1, 0, 0, true, &[0x32, 0]),
            Err(TsError::Unsupported { codec: "AV1" })
        );
    }
}
