//! MPEG-2 transport stream demuxer (ISO 13818-1) for SRT ingest: bytes as they come off the
//! socket in, codec configurations and frames on onair's 64-bit 90 kHz timeline out.
//!
//! It finds and keeps packet sync (a packet with a lost sync byte is skipped up to the next
//! `0x47` that is followed by another one 188 bytes on), reads the PAT and the PMT of the first
//! program (CRC checked, sections over several packets), takes the first H.264 (stream type
//! 0x1b) and the first ADTS AAC (0x0f) elementary stream, reassembles their PES packets (a
//! header split over TS packets too), reads PTS/DTS and unwraps the 33-bit clock. A continuity
//! counter gap, a transport error or an oversized PES drops the PES being assembled, and the
//! stream resyncs at the next unit start: a lossy link costs a frame, never the stream. What was
//! dropped is reported as a [`TsDrop`] so that the caller can log it (once, not per packet).
//!
//! H.264 PES payloads are Annex B access units (one per PES, as ffmpeg, OBS and GStreamer write
//! them): they become 4-byte length-prefixed units with the SPS/PPS taken out into an
//! [`AvcConfig`]. ADTS payloads become raw AAC frames and an [`AacConfig`].
//!
//! Written by hand rather than on `mpeg2ts-reader` 0.18 (maintained, by the author of the
//! `h264-reader` crate onair uses): its `Demultiplex::push` stops at the first packet of a
//! buffer without a sync byte and cannot resync, it logs each bad packet through `log` at warn
//! level (a hostile caller would turn into a flood of log lines), and it drops a PES whose
//! header straddles two TS packets. What is left to write for one program with two streams is
//! small and tested here against ffmpeg's output.

use bytes::Bytes;

use super::aac::{self, AacConfig};
use super::avc::{self, AvcConfig};
use super::media::Track;
use super::ts::{crc32_mpeg, PACKET_SIZE};

const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// A PES larger than this is dropped (a 1080p keyframe at high bitrate is well under 2 MiB).
pub const MAX_PES_BYTES: usize = 8 << 20;
/// PSI sections are at most 1021 bytes after their 3-byte header (ISO 13818-1 2.4.4).
const MAX_SECTION_BYTES: usize = 1024;
/// The 33-bit PTS/DTS clock.
const CLOCK_MODULUS: i64 = 1 << 33;

/// What the demuxer produces, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum TsEvent {
    /// The video configuration, first seen or changed (from in-band SPS/PPS).
    VideoConfig(AvcConfig),
    /// The audio configuration, first seen or changed (from the ADTS header).
    AudioConfig(AacConfig),
    Video(EsFrame),
    Audio(EsFrame),
    Dropped(TsDrop),
}

/// One coded frame: a length-prefixed H.264 access unit or a raw AAC frame. Timestamps are
/// 90 kHz ticks, unwrapped: they do not wrap at 2^33 and keep the encoder's origin.
#[derive(Debug, Clone, PartialEq)]
pub struct EsFrame {
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Input that was dropped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsDrop {
    /// Bytes skipped to find packet sync again.
    Resync { skipped: usize },
    /// A packet with its transport error indicator set.
    TransportError,
    /// A scrambled packet (onair has no descrambler).
    Scrambled,
    /// A packet whose adaptation field runs past its end.
    BadPacket,
    /// A continuity counter gap on this track: the PES being assembled was dropped.
    Continuity { track: Track },
    /// A PES that could not be used.
    BadPes { track: Track, reason: &'static str },
    /// Video before the first SPS/PPS: nothing can decode it.
    BeforeConfig,
    /// The PMT lists a stream onair does not take.
    UnsupportedStream { stream_type: u8 },
    /// A PAT or PMT section with a bad CRC or layout.
    BadTable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    Aac,
}

impl Codec {
    fn track(self) -> Track {
        match self {
            Codec::H264 => Track::Video,
            Codec::Aac => Track::Audio,
        }
    }
}

/// A PSI section being gathered from the packets of one PID.
#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
}

impl Section {
    /// Takes a packet's payload; returns a complete section when one ends in it.
    fn push(&mut self, unit_start: bool, payload: &[u8]) -> Option<Vec<u8>> {
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

/// One elementary stream being reassembled.
#[derive(Debug)]
struct PesStream {
    pid: u16,
    codec: Codec,
    cc: Option<u8>,
    buf: Vec<u8>,
    /// A PES is being assembled (false: waiting for the next unit start).
    open: bool,
}

impl PesStream {
    fn new(pid: u16, codec: Codec) -> Self {
        Self {
            pid,
            codec,
            cc: None,
            buf: Vec::new(),
            open: false,
        }
    }

    /// The PES length from its header, when it is bounded and the header has arrived.
    fn bounded_len(&self) -> Option<usize> {
        let n = ((*self.buf.get(4)? as usize) << 8) | *self.buf.get(5)? as usize;
        (n > 0).then_some(6 + n)
    }
}

/// Unwraps 33-bit timestamps onto a 64-bit timeline, each value taken as the nearest to the
/// last one (either track): a wrap from 2^33 - 1 to 0 is a small step forward.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = raw as i64 & (CLOCK_MODULUS - 1);
        let v = match self.last {
            None => raw,
            Some(last) => last + signed_33(raw - last),
        };
        self.last = Some(v);
        v
    }
}

/// The distance `d` modulo 2^33 as a signed value in [-2^32, 2^32).
fn signed_33(d: i64) -> i64 {
    let d = d.rem_euclid(CLOCK_MODULUS);
    if d >= CLOCK_MODULUS / 2 {
        d - CLOCK_MODULUS
    } else {
        d
    }
}

/// Demuxer state for one incoming stream.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    /// The start of a packet cut off at the end of the last input.
    carry: Vec<u8>,
    /// The last packet had a sync byte where expected.
    in_sync: bool,
    /// Bytes skipped while out of sync, reported once sync is found again.
    skipped: usize,
    pat: Section,
    pmt: Section,
    pmt_pid: Option<u16>,
    video: Option<PesStream>,
    audio: Option<PesStream>,
    /// Stream types of the current PMT that were reported as unsupported.
    reported: Vec<u8>,
    clock: Unwrap,
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
}

impl TsDemuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream, in pieces of any size; appends what they complete.
    /// How the input is split does not change what comes out.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<TsEvent>) {
        if self.carry.is_empty() {
            let used = self.scan(data, out);
            self.carry.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(data);
            let used = self.scan(&buf, out);
            buf.drain(..used);
            self.carry = buf;
        }
    }

    /// Which elementary streams the current PMT names that onair takes: (video, audio).
    pub fn declared(&self) -> (bool, bool) {
        (self.video.is_some(), self.audio.is_some())
    }

    /// Ends the stream: the PES packets still open (unbounded ones end only at the next unit
    /// start) are delivered, and bytes held back are reported as skipped.
    pub fn flush(&mut self, out: &mut Vec<TsEvent>) {
        self.skipped += std::mem::take(&mut self.carry).len();
        self.report_skipped(out);
        for codec in [Codec::H264, Codec::Aac] {
            if let Some(s) = self.stream_mut(codec) {
                if s.open {
                    s.open = false;
                    let buf = std::mem::take(&mut s.buf);
                    self.finish_pes(codec, &buf, out);
                }
            }
        }
    }

    /// Reads the whole packets at the start of `data`; returns how many bytes it used (the rest
    /// waits for more input). Out of sync, a `0x47` counts as a packet start only when another
    /// follows 188 bytes on, so it waits for that byte rather than guess.
    fn scan(&mut self, data: &[u8], out: &mut Vec<TsEvent>) -> usize {
        let mut pos = 0;
        while data.len() - pos >= PACKET_SIZE {
            if data[pos] == SYNC {
                if self.in_sync {
                    self.packet(&data[pos..pos + PACKET_SIZE], out);
                    pos += PACKET_SIZE;
                    continue;
                }
                match data.get(pos + PACKET_SIZE) {
                    Some(&SYNC) => {
                        self.in_sync = true;
                        self.report_skipped(out);
                        self.packet(&data[pos..pos + PACKET_SIZE], out);
                        pos += PACKET_SIZE;
                        continue;
                    }
                    Some(_) => {}
                    None => return pos,
                }
            }
            self.in_sync = false;
            let next = data[pos + 1..]
                .iter()
                .position(|&b| b == SYNC)
                .map_or(data.len(), |i| pos + 1 + i);
            self.skipped += next - pos;
            pos = next;
        }
        if !self.in_sync {
            // Bytes before the next candidate sync byte can never start a packet.
            let start = data[pos..]
                .iter()
                .position(|&b| b == SYNC)
                .unwrap_or(data.len() - pos);
            self.skipped += start;
            pos += start;
        }
        pos
    }

    fn report_skipped(&mut self, out: &mut Vec<TsEvent>) {
        if self.skipped > 0 {
            out.push(TsEvent::Dropped(TsDrop::Resync {
                skipped: std::mem::take(&mut self.skipped),
            }));
        }
    }

    fn stream_mut(&mut self, codec: Codec) -> Option<&mut PesStream> {
        match codec {
            Codec::H264 => self.video.as_mut(),
            Codec::Aac => self.audio.as_mut(),
        }
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<TsEvent>) {
        let pid = (((p[1] & 0x1f) as u16) << 8) | p[2] as u16;
        let codec = [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .find(|s| s.pid == pid)
            .map(|s| s.codec);
        if p[1] & 0x80 != 0 || p[3] & 0xc0 != 0 {
            out.push(TsEvent::Dropped(if p[1] & 0x80 != 0 {
                TsDrop::TransportError
            } else {
                TsDrop::Scrambled
            }));
            if let Some(s) = codec.and_then(|c| self.stream_mut(c)) {
                s.open = false;
                s.buf.clear();
            }
            return;
        }
        let unit_start = p[1] & 0x40 != 0;
        let control = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        let mut pos = 4;
        let mut discontinuity = false;
        if control & 0x02 != 0 {
            let len = p[4] as usize;
            if len > 0 {
                discontinuity = p[5] & 0x80 != 0;
            }
            pos = 5 + len;
            if pos > PACKET_SIZE {
                out.push(TsEvent::Dropped(TsDrop::BadPacket));
                return;
            }
        }
        let payload = if control & 0x01 != 0 { &p[pos..] } else { &[] };
        if pid == PAT_PID {
            if let Some(section) = self.pat.push(unit_start, payload) {
                self.read_pat(&section, out);
            }
        } else if Some(pid) == self.pmt_pid {
            if let Some(section) = self.pmt.push(unit_start, payload) {
                self.read_pmt(&section, out);
            }
        } else if let Some(codec) = codec {
            self.pes_packet(
                codec,
                unit_start,
                control & 0x01 != 0,
                cc,
                discontinuity,
                payload,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn pes_packet(
        &mut self,
        codec: Codec,
        unit_start: bool,
        has_payload: bool,
        cc: u8,
        discontinuity: bool,
        payload: &[u8],
        out: &mut Vec<TsEvent>,
    ) {
        let Some(s) = self.stream_mut(codec) else {
            return;
        };
        if has_payload {
            match s.cc {
                // A packet sent twice (allowed once by 2.4.3.3): the copy is ignored.
                Some(last) if last == cc && !discontinuity => return,
                Some(last) if (last + 1) & 0x0f != cc && !discontinuity => {
                    if s.open {
                        out.push(TsEvent::Dropped(TsDrop::Continuity {
                            track: codec.track(),
                        }));
                    }
                    s.open = false;
                    s.buf.clear();
                }
                _ => {}
            }
            s.cc = Some(cc);
        }
        if unit_start {
            let previous = s.open.then(|| std::mem::take(&mut s.buf));
            s.buf.clear();
            s.buf.extend_from_slice(payload);
            s.open = true;
            if let Some(prev) = previous {
                self.finish_pes(codec, &prev, out);
            }
        } else if s.open {
            if s.buf.len() + payload.len() > MAX_PES_BYTES {
                s.open = false;
                s.buf = Vec::new();
                out.push(TsEvent::Dropped(TsDrop::BadPes {
                    track: codec.track(),
                    reason: "larger than 8 MiB",
                }));
                return;
            }
            s.buf.extend_from_slice(payload);
        } else {
            return;
        }
        let Some(s) = self.stream_mut(codec) else {
            return;
        };
        if s.bounded_len().is_some_and(|n| s.buf.len() >= n) {
            s.open = false;
            let buf = std::mem::take(&mut s.buf);
            self.finish_pes(codec, &buf, out);
        }
    }

    fn read_pat(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
        if section.len() < 12 || section[0] != 0x00 || crc32_mpeg(section) != 0 {
            out.push(TsEvent::Dropped(TsDrop::BadTable));
            return;
        }
        let programs = &section[8..section.len() - 4];
        let pmt_pid = programs
            .chunks_exact(4)
            .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
            .map(|e| (((e[2] & 0x1f) as u16) << 8) | e[3] as u16);
        if pmt_pid != self.pmt_pid {
            self.pmt_pid = pmt_pid;
            self.pmt = Section::default();
        }
    }

    fn read_pmt(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
        if section.len() < 16 || section[0] != 0x02 || crc32_mpeg(section) != 0 {
            out.push(TsEvent::Dropped(TsDrop::BadTable));
            return;
        }
        let info_len = (((section[10] & 0x0f) as usize) << 8) | section[11] as usize;
        let end = section.len() - 4;
        let mut pos = 12 + info_len;
        let (mut video, mut audio) = (None, None);
        let mut unsupported = Vec::new();
        while pos + 5 <= end {
            let stream_type = section[pos];
            let pid = (((section[pos + 1] & 0x1f) as u16) << 8) | section[pos + 2] as u16;
            let es_info_len =
                (((section[pos + 3] & 0x0f) as usize) << 8) | section[pos + 4] as usize;
            pos += 5 + es_info_len;
            match stream_type {
                STREAM_TYPE_H264 if video.is_none() => video = Some(pid),
                STREAM_TYPE_AAC_ADTS if audio.is_none() => audio = Some(pid),
                _ => unsupported.push(stream_type),
            }
        }
        for t in unsupported {
            if !self.reported.contains(&t) {
                self.reported.push(t);
                out.push(TsEvent::Dropped(TsDrop::UnsupportedStream {
                    stream_type: t,
                }));
            }
        }
        // A stream keeps its state while the PMT names it on the same PID.
        if self.video.as_ref().map(|s| s.pid) != video {
            self.video = video.map(|pid| PesStream::new(pid, Codec::H264));
        }
        if self.audio.as_ref().map(|s| s.pid) != audio {
            self.audio = audio.map(|pid| PesStream::new(pid, Codec::Aac));
        }
    }

    /// A complete PES packet (header and payload) of one stream.
    fn finish_pes(&mut self, codec: Codec, pes: &[u8], out: &mut Vec<TsEvent>) {
        let track = codec.track();
        let bad = |reason| TsEvent::Dropped(TsDrop::BadPes { track, reason });
        let Some(header) = pes.get(..9).filter(|h| h[..3] == [0, 0, 1]) else {
            out.push(bad("no PES header"));
            return;
        };
        let start = 9 + header[8] as usize;
        let end = match ((header[4] as usize) << 8) | header[5] as usize {
            0 => pes.len(),
            n => 6 + n,
        };
        if start > end || end > pes.len() {
            out.push(bad("PES shorter than its header says"));
            return;
        }
        let (pts, dts) = match header[7] >> 6 {
            2 => match read_timestamp(&pes[9..start]) {
                Some(t) => (t, t),
                None => {
                    out.push(bad("PTS cut short"));
                    return;
                }
            },
            3 => match (
                read_timestamp(&pes[9..start]),
                pes.get(14..start).and_then(read_timestamp),
            ) {
                (Some(p), Some(d)) => (p, d),
                _ => {
                    out.push(bad("PTS/DTS cut short"));
                    return;
                }
            },
            _ => {
                out.push(bad("no PTS"));
                return;
            }
        };
        let dts = self.clock.unwrap(dts);
        // The PTS lies a little after the DTS (frame reordering): unwrap it next to it.
        let pts = dts + signed_33(pts as i64 - dts).max(0);
        let payload = &pes[start..end];
        match codec {
            Codec::H264 => self.video_unit(payload, pts, dts, out),
            Codec::Aac => self.audio_frames(payload, pts, out),
        }
    }

    fn video_unit(&mut self, payload: &[u8], pts: i64, dts: i64, out: &mut Vec<TsEvent>) {
        let unit = avc::annex_b_to_avcc(payload);
        if !unit.sps.is_empty() && !unit.pps.is_empty() {
            let same = self
                .avc
                .as_ref()
                .is_some_and(|c| c.sps == unit.sps && c.pps == unit.pps);
            if !same {
                match AvcConfig::from_parameter_sets(&unit.sps, &unit.pps) {
                    Ok(cfg) => {
                        self.avc = Some(cfg.clone());
                        out.push(TsEvent::VideoConfig(cfg));
                    }
                    Err(_) => out.push(TsEvent::Dropped(TsDrop::BadPes {
                        track: Track::Video,
                        reason: "SPS/PPS could not be parsed",
                    })),
                }
            }
        }
        if unit.data.is_empty() {
            return;
        }
        if self.avc.is_none() {
            out.push(TsEvent::Dropped(TsDrop::BeforeConfig));
            return;
        }
        let keyframe = avc::nal_units(&unit.data, 4)
            .flatten()
            .any(|n| avc::nal_type(n) == 5);
        out.push(TsEvent::Video(EsFrame {
            pts,
            dts,
            keyframe,
            data: Bytes::from(unit.data),
        }));
    }

    fn audio_frames(&mut self, payload: &[u8], pts: i64, out: &mut Vec<TsEvent>) {
        let mut pos = 0;
        let mut samples = 0i64;
        while pos < payload.len() {
            let adts = match aac::parse_adts(&payload[pos..]) {
                Ok(a) => a,
                Err(_) => {
                    out.push(TsEvent::Dropped(TsDrop::BadPes {
                        track: Track::Audio,
                        reason: "bad ADTS frame",
                    }));
                    return;
                }
            };
            let changed = self.aac.as_ref().is_none_or(|c| {
                (c.object_type, c.sample_rate_index, c.channels)
                    != (adts.object_type, adts.sample_rate_index, adts.channels)
            });
            if changed {
                match AacConfig::from_adts(&adts) {
                    Ok(cfg) => {
                        self.aac = Some(cfg.clone());
                        out.push(TsEvent::AudioConfig(cfg));
                    }
                    Err(_) => return,
                }
            }
            let rate = self.aac.as_ref().map_or(48_000, |c| c.sample_rate) as i64;
            let t = pts + samples * 90_000 / rate;
            out.push(TsEvent::Audio(EsFrame {
                pts: t,
                dts: t,
                keyframe: true,
                data: Bytes::copy_from_slice(&payload[pos + adts.header_len..pos + adts.frame_len]),
            }));
            samples += 1024;
            pos += adts.frame_len;
        }
    }
}

/// A 33-bit PTS or DTS from its 5-byte field (marker bits not checked: encoders get them
/// wrong and the value is still good).
fn read_timestamp(b: &[u8]) -> Option<u64> {
    let b = b.get(..5)?;
    Some(
        (((b[0] >> 1) & 0x07) as u64) << 30
            | (b[1] as u64) << 22
            | ((b[2] >> 1) as u64) << 15
            | (b[3] as u64) << 7
            | (b[4] >> 1) as u64,
    )
}

#[cfg(test)]
#[path = "ts_demux_tests.rs"]
mod tests;
