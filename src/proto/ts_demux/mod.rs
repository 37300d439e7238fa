//! MPEG-2 transport stream demuxer (ISO 13818-1) for SRT ingest: bytes as they come off the
//! socket in, codec configurations and frames on onair's 64-bit 90 kHz timeline out.
//!
//! This module finds and keeps packet sync (a packet with a lost sync byte is skipped up to the
//! next `0x47` that is followed by another one 188 bytes on), routes packets by PID, checks
//! continuity counters and reassembles PES packets (a header split over TS packets too). The
//! tables are read in [`psi`] (PAT and PMT of the first program: the first H.264 (stream type
//! 0x1b) or HEVC (0x24) stream and the first ADTS AAC (0x0f) stream), the complete PES packets
//! in [`es`] (PTS/DTS, 33-bit unwrap, Annex B access units to length-prefixed units and a
//! [`VideoConfig`] from the in-band parameter sets, ADTS to raw AAC and an [`AacConfig`]).
//! Holding the start of a stream until every track has its configuration is the ingest's job
//! (`ingest::srt::StartGate`, from [`TsDemuxer::declared`]).
//!
//! A continuity counter gap, a transport error or an oversized PES drops the PES being
//! assembled, and the stream resyncs at the next unit start: a lossy link costs a frame, never
//! the stream. What was dropped is reported as a [`TsDrop`] so that the caller can log it
//! (once, not per packet).
//!
//! Written by hand rather than on `mpeg2ts-reader` 0.18 (maintained, by the author of the
//! `h264-reader` crate onair uses): its `Demultiplex::push` stops at the first packet of a
//! buffer without a sync byte and cannot resync, it logs each bad packet through `log` at warn
//! level (a hostile caller would turn into a flood of log lines), and it drops a PES whose
//! header straddles two TS packets. What is left to write for one program with two streams is
//! small and tested here against ffmpeg's output.

mod es;
mod psi;

use bytes::Bytes;

use super::aac::AacConfig;
use super::media::{Track, VideoCodec, VideoConfig};
use super::ts::PACKET_SIZE;
use es::{Codec, Elementary};
use psi::Section;

const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
/// A PES larger than this is dropped (a 1080p keyframe at high bitrate is well under 2 MiB).
pub const MAX_PES_BYTES: usize = 8 << 20;

/// What the demuxer produces, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum TsEvent {
    /// The video configuration, first seen or changed (from in-band parameter sets: H.264
    /// SPS/PPS, HEVC VPS/SPS/PPS).
    VideoConfig(VideoConfig),
    /// The audio configuration, first seen or changed (from the ADTS header).
    AudioConfig(AacConfig),
    Video(VideoCodec, EsFrame),
    Audio(EsFrame),
    Dropped(TsDrop),
}

/// One coded frame: a 4-byte length-prefixed H.264 or HEVC access unit, or a raw AAC frame. Timestamps are
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
    es: Elementary,
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
        for s in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            if s.open {
                s.open = false;
                let buf = std::mem::take(&mut s.buf);
                self.es.finish_pes(s.codec, &buf, out);
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
            Codec::Video(_) => self.video.as_mut(),
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
                self.es.finish_pes(codec, &prev, out);
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
            self.es.finish_pes(codec, &buf, out);
        }
    }

    fn read_pat(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
        match psi::read_pat(section) {
            Ok(pmt_pid) if pmt_pid != self.pmt_pid => {
                self.pmt_pid = pmt_pid;
                self.pmt = Section::default();
            }
            Ok(_) => {}
            Err(psi::BadTable) => out.push(TsEvent::Dropped(TsDrop::BadTable)),
        }
    }

    fn read_pmt(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
        let Ok(pmt) = psi::read_pmt(section) else {
            out.push(TsEvent::Dropped(TsDrop::BadTable));
            return;
        };
        for t in pmt.unsupported {
            if !self.reported.contains(&t) {
                self.reported.push(t);
                out.push(TsEvent::Dropped(TsDrop::UnsupportedStream {
                    stream_type: t,
                }));
            }
        }
        // A stream keeps its state while the PMT names it on the same PID, in the same codec.
        let video = pmt.video.map(|(pid, codec)| (pid, Codec::Video(codec)));
        if self.video.as_ref().map(|s| (s.pid, s.codec)) != video {
            self.video = video.map(|(pid, codec)| PesStream::new(pid, codec));
        }
        if self.audio.as_ref().map(|s| s.pid) != pmt.audio {
            self.audio = pmt.audio.map(|pid| PesStream::new(pid, Codec::Aac));
        }
    }
}

#[cfg(test)]
mod tests;
