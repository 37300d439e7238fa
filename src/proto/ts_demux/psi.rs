//! Program-specific information for the [`super::TsDemuxer`]: PSI sections gathered from the
//! packets of one PID, and the two tables it reads, the PAT (which PID carries the first
//! program's PMT) and the PMT (which PIDs carry that program's video and audio). CRCs are
//! checked; a bad table is reported and the previous one stays in force.

use crate::proto::media::VideoCodec;
use crate::proto::ts::{crc32_mpeg, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_HEVC};

/// PSI sections are at most 1021 bytes after their 3-byte header (ISO 13818-1 2.4.4).
const MAX_SECTION_BYTES: usize = 1024;

/// A PSI section being gathered from the packets of one PID.
#[derive(Debug, Default)]
pub(super) struct Section {
    buf: Vec<u8>,
    active: bool,
}

impl Section {
    /// Takes a packet's payload; returns a complete section when one ends in it.
    pub(super) fn push(&mut self, unit_start: bool, payload: &[u8]) -> Option<Vec<u8>> {
        let data = if unit_start {
            let pointer = *payload.first()? as usize;
            self.buf.clear();
            self.active = true;
            payload.get(1 + pointer..)?
        } else if self.active {
            payload
        } else {
            return None;
        };
        let room = MAX_SECTION_BYTES.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        if self.buf.len() < 3 {
            return None;
        }
        let len = 3 + ((((self.buf[1] & 0x0f) as usize) << 8) | self.buf[2] as usize);
        if self.buf.len() < len {
            if self.buf.len() >= MAX_SECTION_BYTES {
                self.active = false;
            }
            return None;
        }
        self.active = false;
        self.buf.truncate(len);
        Some(std::mem::take(&mut self.buf))
    }
}

/// A table section that could not be read (bad CRC, wrong table id, too short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BadTable;

/// The PMT PID of the first program a PAT lists (program 0 is the network PID, skipped).
pub(super) fn read_pat(section: &[u8]) -> Result<Option<u16>, BadTable> {
    if section.len() < 12 || section[0] != 0x00 || crc32_mpeg(section) != 0 {
        return Err(BadTable);
    }
    let programs = &section[8..section.len() - 4];
    Ok(programs
        .chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| (((e[2] & 0x1f) as u16) << 8) | e[3] as u16))
}

/// What a PMT says onair can take: the first H.264 or HEVC stream, the first ADTS AAC stream,
/// and the stream types of everything else it lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Pmt {
    pub video: Option<(u16, VideoCodec)>,
    pub audio: Option<u16>,
    pub unsupported: Vec<u8>,
}

pub(super) fn read_pmt(section: &[u8]) -> Result<Pmt, BadTable> {
    if section.len() < 16 || section[0] != 0x02 || crc32_mpeg(section) != 0 {
        return Err(BadTable);
    }
    let info_len = (((section[10] & 0x0f) as usize) << 8) | section[11] as usize;
    let end = section.len() - 4;
    let mut pos = 12 + info_len;
    let mut pmt = Pmt::default();
    while pos + 5 <= end {
        let stream_type = section[pos];
        let pid = (((section[pos + 1] & 0x1f) as u16) << 8) | section[pos + 2] as u16;
        let es_info_len = (((section[pos + 3] & 0x0f) as usize) << 8) | section[pos + 4] as usize;
        pos += 5 + es_info_len;
        match stream_type {
            STREAM_TYPE_H264 if pmt.video.is_none() => pmt.video = Some((pid, VideoCodec::Avc)),
            STREAM_TYPE_HEVC if pmt.video.is_none() => pmt.video = Some((pid, VideoCodec::Hevc)),
            STREAM_TYPE_AAC_ADTS if pmt.audio.is_none() => pmt.audio = Some(pid),
            _ => pmt.unsupported.push(stream_type),
        }
    }
    Ok(pmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PMT section listing `streams` (stream type, PID), with its CRC.
    fn pmt(streams: &[(u8, u16)]) -> Vec<u8> {
        let mut s = vec![
            0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00,
        ];
        for (t, pid) in streams {
            s.extend_from_slice(&[*t, 0xe0 | (pid >> 8) as u8, *pid as u8, 0xf0, 0x00]);
        }
        let len = s.len() + 4 - 3;
        s[1] = 0xb0 | (len >> 8) as u8;
        s[2] = len as u8;
        let crc = crc32_mpeg(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    #[test]
    fn pmt_takes_the_first_video_and_audio() {
        let p = read_pmt(&pmt(&[
            (0x24, 0x100),
            (0x1b, 0x102),
            (0x0f, 0x101),
            (0x03, 0x103),
        ]))
        .expect("pmt");
        assert_eq!(p.video, Some((0x100, VideoCodec::Hevc)));
        assert_eq!(p.audio, Some(0x101));
        assert_eq!(p.unsupported, vec![0x1b, 0x03]);
        let p = read_pmt(&pmt(&[(0x1b, 0x100)])).expect("pmt");
        assert_eq!(p.video, Some((0x100, VideoCodec::Avc)));
        let mut bad = pmt(&[(0x1b, 0x100)]);
        bad[12] ^= 1;
        assert_eq!(read_pmt(&bad), Err(BadTable));
    }
}
