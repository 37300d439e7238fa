//! The RTMP chunk stream, read defensively in front of `rml_rtmp`.
//!
//! `rml_rtmp`'s `ChunkDeserializer` trusts its peer: it reserves the declared message length up
//! front, shares one reassembly buffer between all chunk streams (interleaved chunk streams, which
//! the spec allows, corrupt it and can panic on an integer underflow), and `rml_amf0` recurses
//! without a depth limit (a few kilobytes of nested objects overflow the stack) and panics on a
//! command with fewer than three values. [`ChunkReader`] therefore reassembles the chunk stream
//! itself, per chunk stream id and within limits, screens each message, and re-frames it as one
//! well-formed chunk for the session (see [`frame_message`] and [`session_preamble`]).
//!
//! Pure: bytes in, messages out; no IO, no clocks.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

/// Limits a peer's chunk stream must keep to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest chunk size the peer may announce (`rtmp.max_chunk_size`).
    pub max_chunk_size: u32,
    /// Largest message the peer may declare (`rtmp.max_message_bytes`).
    pub max_message_bytes: u32,
    /// Bytes of unfinished messages held at once, over all chunk streams.
    pub max_buffered_bytes: usize,
    /// Chunk stream ids the peer may use.
    pub max_chunk_streams: usize,
    /// What `max_message_bytes` is called in a refusal (a setting's name).
    pub message_limit_name: &'static str,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 1 << 20,
            max_message_bytes: 8 << 20,
            max_buffered_bytes: 16 << 20,
            max_chunk_streams: 64,
            message_limit_name: "rtmp.max_message_bytes",
        }
    }
}

impl ChunkLimits {
    /// The limits before a publish is accepted: commands only, so an unauthenticated peer
    /// holds little memory however many connect.
    pub fn before_publish(self) -> Self {
        Self {
            max_message_bytes: self.max_message_bytes.min(64 << 10),
            max_buffered_bytes: self.max_buffered_bytes.min(128 << 10),
            message_limit_name: "the limit before publishing",
            ..self
        }
    }
}

/// Why a peer's chunk stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk size {size} is outside 1..=rtmp.max_chunk_size ({max})")]
    ChunkSize { size: u32, max: u32 },
    #[error("message of {len} bytes is larger than {limit} ({max})")]
    MessageTooLarge {
        len: u32,
        max: u32,
        limit: &'static str,
    },
    #[error("{bytes} bytes of unfinished messages exceed the limit of {max}")]
    Buffered { bytes: usize, max: usize },
    #[error("more than {max} chunk streams in use")]
    TooManyChunkStreams { max: usize },
    #[error("chunk stream {csid} continues a message it never started")]
    NoPreviousHeader { csid: u32 },
    #[error("AMF0 {what}")]
    Amf0 { what: &'static str },
}

/// One complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpMessage {
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// RTMP message type ids handled here.
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_COMMAND: u8 = 20;
}

/// Per chunk stream state: the last header (for compressed headers) and a partial message.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header carried an extended timestamp (so type-3 chunks carry one too).
    extended: bool,
    partial: Option<BytesMut>,
}

/// Reassembles a peer's chunk stream into messages.
#[derive(Debug)]
pub struct ChunkReader {
    limits: ChunkLimits,
    chunk_size: u32,
    buf: BytesMut,
    streams: HashMap<u32, ChunkStream>,
    /// Bytes of unfinished messages held in `streams`.
    partial_bytes: usize,
}

impl ChunkReader {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: 128,
            buf: BytesMut::new(),
            streams: HashMap::new(),
            partial_bytes: 0,
        }
    }

    /// Bytes held: unparsed input plus unfinished messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial_bytes
    }

    /// Replaces the limits (raised once a publish is accepted).
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    /// The chunk size the peer announced.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Takes input bytes; returns the messages they complete, in order. Set Chunk Size and Abort
    /// are applied here and not returned. After an error the reader must not be used again.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<RtmpMessage>, ChunkError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(msg) = self.next_chunk()? {
            if let Some(m) = msg {
                match m.type_id {
                    msg_type::SET_CHUNK_SIZE => {
                        let size = read_u32(&m.payload).unwrap_or(0) & 0x7fff_ffff;
                        if size == 0 || size > self.limits.max_chunk_size {
                            return Err(ChunkError::ChunkSize {
                                size,
                                max: self.limits.max_chunk_size,
                            });
                        }
                        self.chunk_size = size;
                    }
                    msg_type::ABORT => {
                        if let Some(csid) = read_u32(&m.payload) {
                            if let Some(s) = self.streams.get_mut(&csid) {
                                if let Some(p) = s.partial.take() {
                                    self.partial_bytes -= p.len();
                                }
                            }
                        }
                    }
                    _ => {
                        if screen(&m)? {
                            out.push(m);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Parses one chunk from the buffer: `None` when more bytes are needed, `Some(None)` for a
    /// chunk that did not finish a message, `Some(Some(m))` for one that did.
    #[allow(clippy::type_complexity)]
    fn next_chunk(&mut self) -> Result<Option<Option<RtmpMessage>>, ChunkError> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (x as u32 + 64, 2),
                None => return Ok(None),
            },
            1 => match b.get(1..3) {
                Some(x) => (x[1] as u32 * 256 + x[0] as u32 + 64, 3),
                None => return Ok(None),
            },
            x => (x as u32, 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        let Some(h) = b.get(pos..pos + header_len) else {
            return Ok(None);
        };
        let u24 = |i: usize| ((h[i] as u32) << 16) | ((h[i + 1] as u32) << 8) | h[i + 2] as u32;
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(ChunkError::NoPreviousHeader { csid });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams {
                    max: self.limits.max_chunk_streams,
                });
            }
        }
        // Read the header fields without committing them: the chunk may be incomplete.
        let prev = self.streams.get(&csid);
        let (ts_field, length, type_id, stream_id) = match fmt {
            0 => (
                Some(u24(0)),
                u24(3),
                h[6],
                u32::from_le_bytes([h[7], h[8], h[9], h[10]]),
            ),
            1 => {
                let p = prev.ok_or(ChunkError::NoPreviousHeader { csid })?;
                (Some(u24(0)), u24(3), h[6], p.stream_id)
            }
            2 => {
                let p = prev.ok_or(ChunkError::NoPreviousHeader { csid })?;
                (Some(u24(0)), p.length, p.type_id, p.stream_id)
            }
            _ => {
                let p = prev.ok_or(ChunkError::NoPreviousHeader { csid })?;
                (None, p.length, p.type_id, p.stream_id)
            }
        };
        pos += header_len;
        let extended = match ts_field {
            Some(t) => t == 0xff_ffff,
            None => prev.map(|p| p.extended).unwrap_or(false),
        };
        let mut ext_value = None;
        if extended {
            let Some(e) = b.get(pos..pos + 4) else {
                return Ok(None);
            };
            ext_value = Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]));
            pos += 4;
        }
        if length > self.limits.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                len: length,
                max: self.limits.max_message_bytes,
                limit: self.limits.message_limit_name,
            });
        }
        // A new header (types 0-2) starts a new message and drops an unfinished one.
        let continuing = fmt == 3 && prev.and_then(|p| p.partial.as_ref()).is_some();
        let have = if continuing {
            prev.and_then(|p| p.partial.as_ref()).map_or(0, |p| p.len())
        } else {
            0
        };
        let take = (length as usize - have.min(length as usize)).min(self.chunk_size as usize);
        if b.len() < pos + take {
            if pos + take > self.limits.max_buffered_bytes + 32 {
                return Err(ChunkError::Buffered {
                    bytes: pos + take,
                    max: self.limits.max_buffered_bytes,
                });
            }
            return Ok(None);
        }
        // The chunk is complete: commit the header.
        let s = self.streams.entry(csid).or_default();
        if !continuing {
            if let Some(p) = s.partial.take() {
                self.partial_bytes -= p.len();
            }
            let field = ext_value.or(ts_field);
            match fmt {
                // A type-3 chunk after a type-0 one repeats its timestamp field as a delta, as
                // ffmpeg and rml_rtmp read it.
                0 => {
                    s.timestamp = field.unwrap_or(0);
                    s.delta = s.timestamp;
                }
                1 | 2 => {
                    s.delta = field.unwrap_or(0);
                    s.timestamp = s.timestamp.wrapping_add(s.delta);
                }
                _ => s.timestamp = s.timestamp.wrapping_add(s.delta),
            }
            s.length = length;
            s.type_id = type_id;
            s.stream_id = stream_id;
        }
        if fmt != 3 {
            s.extended = extended;
        }
        self.buf.advance(pos);
        let body = self.buf.split_to(take);
        let mut partial = s.partial.take().unwrap_or_default();
        self.partial_bytes -= partial.len();
        partial.extend_from_slice(&body);
        if partial.len() >= s.length as usize {
            return Ok(Some(Some(RtmpMessage {
                timestamp: s.timestamp,
                type_id: s.type_id,
                stream_id: s.stream_id,
                payload: partial.freeze(),
            })));
        }
        self.partial_bytes += partial.len();
        s.partial = Some(partial);
        if self.partial_bytes > self.limits.max_buffered_bytes {
            return Err(ChunkError::Buffered {
                bytes: self.partial_bytes,
                max: self.limits.max_buffered_bytes,
            });
        }
        Ok(Some(None))
    }
}

fn read_u32(b: &[u8]) -> Option<u32> {
    b.get(..4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// Largest AMF0 nesting accepted (real commands and metadata nest two or three levels).
pub const MAX_AMF0_DEPTH: usize = 16;

/// Checks what `rml_rtmp` would otherwise trip over. Nesting deeper than [`MAX_AMF0_DEPTH`] is
/// hostile: an error. A command with fewer than the three values it indexes without checking
/// (name, transaction id, command object), or an `@setDataFrame` without its name and object,
/// is broken rather than hostile: `Ok(false)`, the message is dropped and the stream goes on.
fn screen(m: &RtmpMessage) -> Result<bool, ChunkError> {
    let body = match m.type_id {
        msg_type::AMF0_COMMAND | msg_type::AMF0_DATA | msg_type::AMF3_DATA => &m.payload[..],
        msg_type::AMF3_COMMAND => match m.payload.first() {
            Some(0) => &m.payload[1..],
            _ => &m.payload[..],
        },
        _ => return Ok(true),
    };
    let values = amf0_top_level_values(body)?;
    let command = matches!(m.type_id, msg_type::AMF0_COMMAND | msg_type::AMF3_COMMAND);
    let needed = match (command, amf0_first_string(body)) {
        (true, _) => 3,
        // "@setDataFrame", "onMetaData", {metadata}: rml_rtmp takes the third unchecked.
        (false, Some(b"@setDataFrame")) => 3,
        (false, _) => 0,
    };
    Ok(values >= needed)
}

/// The first value, when it is a complete AMF0 string.
fn amf0_first_string(b: &[u8]) -> Option<&[u8]> {
    if *b.first()? != 0x02 {
        return None;
    }
    let len = u16::from_be_bytes([*b.get(1)?, *b.get(2)?]) as usize;
    b.get(3..3 + len)
}

/// Walks AMF0 values without recursion, as `rml_amf0` reads them; returns how many top-level
/// values it would produce, or an error when the nesting is deeper than [`MAX_AMF0_DEPTH`].
/// Malformed data past that point is left for `rml_amf0` to reject.
pub fn amf0_top_level_values(b: &[u8]) -> Result<usize, ChunkError> {
    // Each open container: true for objects and ECMA arrays (label-value pairs ended by an
    // empty label and 0x09), false for strict arrays with `n` values left.
    enum Open {
        Object,
        Strict(u32),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut pos = 0usize;
    let mut top = 0usize;
    let u16_at = |p: usize| {
        b.get(p..p + 2)
            .map(|x| u16::from_be_bytes([x[0], x[1]]) as usize)
    };
    loop {
        // Where are we: inside an object (read a label first), a strict array, or the top.
        match stack.last_mut() {
            Some(Open::Object) => {
                let Some(len) = u16_at(pos) else {
                    return Ok(top);
                };
                pos += 2;
                if len == 0 {
                    // The object end marker follows; rml_amf0 checks it.
                    pos += 1;
                    stack.pop();
                    continue;
                }
                pos += len;
            }
            Some(Open::Strict(0)) => {
                stack.pop();
                continue;
            }
            Some(Open::Strict(n)) => *n -= 1,
            None => {}
        }
        let Some(&marker) = b.get(pos) else {
            return Ok(top);
        };
        pos += 1;
        if stack.is_empty() {
            if marker == 0x09 {
                // An end marker at the top stops rml_amf0's reading.
                return Ok(top);
            }
            top += 1;
        }
        match marker {
            0x00 => pos += 8,
            0x01 => pos += 1,
            0x02 => match u16_at(pos) {
                Some(len) => pos += 2 + len,
                None => return Ok(top),
            },
            0x03 => stack.push(Open::Object),
            0x08 => {
                pos += 4;
                stack.push(Open::Object);
            }
            0x0a => match read_u32(b.get(pos..).unwrap_or(&[])) {
                Some(n) => {
                    pos += 4;
                    stack.push(Open::Strict(n));
                }
                None => return Ok(top),
            },
            0x05 | 0x06 => {}
            0x09 => {
                // An end marker in a strict array ends it early in rml_amf0.
                if matches!(stack.last(), Some(Open::Strict(_))) {
                    stack.pop();
                }
            }
            // rml_amf0 rejects anything else with an error.
            _ => return Ok(top),
        }
        if stack.len() > MAX_AMF0_DEPTH {
            return Err(ChunkError::Amf0 {
                what: "values nested too deeply",
            });
        }
    }
}

/// The chunk size the session is told to expect: every message is framed as a single chunk.
pub const SESSION_CHUNK_SIZE: u32 = 0x00ff_ffff;

/// Bytes to feed the session first: a Set Chunk Size to [`SESSION_CHUNK_SIZE`].
pub fn session_preamble() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    frame_message(
        &RtmpMessage {
            timestamp: 0,
            type_id: msg_type::SET_CHUNK_SIZE,
            stream_id: 0,
            payload: Bytes::copy_from_slice(&SESSION_CHUNK_SIZE.to_be_bytes()),
        },
        &mut out,
    );
    out
}

/// Frames one message as a single type-0 chunk on chunk stream 3 (2 for protocol control).
pub fn frame_message(m: &RtmpMessage, out: &mut Vec<u8>) {
    let csid = if m.type_id <= 6 { 2 } else { 3 };
    out.push(csid);
    let ext = m.timestamp >= 0xff_ffff;
    let ts = if ext { 0xff_ffff } else { m.timestamp };
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    let len = m.payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(m.type_id);
    out.extend_from_slice(&m.stream_id.to_le_bytes());
    if ext {
        out.extend_from_slice(&m.timestamp.to_be_bytes());
    }
    out.extend_from_slice(&m.payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts: u32, type_id: u8, payload: &[u8]) -> RtmpMessage {
        RtmpMessage {
            timestamp: ts,
            type_id,
            stream_id: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Chunks a message the way encoders do: type 0 then type 3 continuations.
    fn chunked(csid: u8, m: &RtmpMessage, chunk: usize) -> Vec<Vec<u8>> {
        let mut first = Vec::new();
        frame_message(m, &mut first);
        first[0] = csid;
        let header = first.len() - m.payload.len();
        let mut out = vec![first[..header + chunk.min(m.payload.len())].to_vec()];
        let ext = m.timestamp >= 0xff_ffff;
        for piece in m.payload[chunk.min(m.payload.len())..].chunks(chunk) {
            let mut c = vec![0xc0 | csid];
            if ext {
                c.extend_from_slice(&m.timestamp.to_be_bytes());
            }
            c.extend_from_slice(piece);
            out.push(c);
        }
        out
    }

    #[test]
    fn reassembles_interleaved_chunk_streams() {
        let video = msg(40, 9, &[7u8; 300]);
        let audio = msg(23, 8, &[5u8; 200]);
        let v = chunked(6, &video, 128);
        let a = chunked(4, &audio, 128);
        let mut wire = Vec::new();
        for i in 0..3 {
            if let Some(c) = v.get(i) {
                wire.extend_from_slice(c);
            }
            if let Some(c) = a.get(i) {
                wire.extend_from_slice(c);
            }
        }
        let mut r = ChunkReader::new(ChunkLimits::default());
        // Byte by byte, to exercise every "need more" path.
        let mut got = Vec::new();
        for b in wire {
            got.extend(r.feed(&[b]).expect("valid"));
        }
        assert_eq!(got, vec![audio, video]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn compressed_headers_and_extended_timestamps() {
        let mut r = ChunkReader::new(ChunkLimits::default());
        let first = msg(0x0100_0000, 9, &[1u8; 200]);
        let mut wire: Vec<u8> = chunked(6, &first, 128).concat();
        // Type 2: delta 33 on the same stream, same length and type.
        wire.extend_from_slice(&[0x86, 0, 0, 33]);
        wire.extend_from_slice(&[2u8; 128]);
        wire.extend_from_slice(&[0xc6]);
        wire.extend_from_slice(&[2u8; 72]);
        // Type 3 starting a new message: the delta applies again.
        wire.extend_from_slice(&[0xc6]);
        wire.extend_from_slice(&[3u8; 128]);
        wire.extend_from_slice(&[0xc6]);
        wire.extend_from_slice(&[3u8; 72]);
        let got = r.feed(&wire).expect("valid");
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0x0100_0000, 0x0100_0000 + 33, 0x0100_0000 + 66]);
        assert_eq!(got[2].payload.len(), 200);
    }

    #[test]
    fn type_3_after_type_0_repeats_the_timestamp_field() {
        let mut r = ChunkReader::new(ChunkLimits::default());
        let mut wire = Vec::new();
        frame_message(&msg(1000, 8, &[1, 2, 3]), &mut wire);
        wire[0] = 4;
        wire.extend_from_slice(&[0xc4, 4, 5, 6]);
        let ts: Vec<u32> = r
            .feed(&wire)
            .expect("valid")
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, vec![1000, 2000]);
    }

    #[test]
    fn chunk_size_and_limits() {
        let mut r = ChunkReader::new(ChunkLimits::default());
        let mut wire = Vec::new();
        frame_message(&msg(0, 1, &4096u32.to_be_bytes()), &mut wire);
        let big = msg(0, 9, &[9u8; 5000]);
        wire.extend(chunked(6, &big, 4096).concat());
        let got = r.feed(&wire).expect("valid");
        assert_eq!(r.chunk_size(), 4096);
        assert_eq!(got, vec![big]);

        let mut wire = Vec::new();
        frame_message(&msg(0, 1, &0x7fff_ffffu32.to_be_bytes()), &mut wire);
        assert_eq!(
            ChunkReader::new(ChunkLimits::default()).feed(&wire),
            Err(ChunkError::ChunkSize {
                size: 0x7fff_ffff,
                max: 1 << 20
            })
        );
        let mut wire = Vec::new();
        frame_message(&msg(0, 1, &[0, 0, 0, 0]), &mut wire);
        assert!(ChunkReader::new(ChunkLimits::default())
            .feed(&wire)
            .is_err());

        // A declared 16 MiB message is refused at its header, before any payload arrives.
        let header = [6u8, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        assert_eq!(
            ChunkReader::new(ChunkLimits::default()).feed(&header),
            Err(ChunkError::MessageTooLarge {
                len: 0xff_ffff,
                max: 8 << 20,
                limit: "rtmp.max_message_bytes"
            })
        );
        // Many partial messages on many chunk streams hit the buffer limit.
        let limits = ChunkLimits {
            max_buffered_bytes: 1000,
            ..Default::default()
        };
        let mut r = ChunkReader::new(limits);
        let mut res = Ok(Vec::new());
        for csid in 3..40u8 {
            let m = msg(0, 9, &[1u8; 1000]);
            res = res.and_then(|_| r.feed(&chunked(csid, &m, 128)[0]));
        }
        assert!(matches!(res, Err(ChunkError::Buffered { .. })), "{res:?}");
        // Continuing a stream never started.
        assert_eq!(
            ChunkReader::new(ChunkLimits::default()).feed(&[0xc5, 1, 2]),
            Err(ChunkError::NoPreviousHeader { csid: 5 })
        );
    }

    #[test]
    fn screens_amf0() {
        // "connect", 1.0, {} : fine.
        let mut ok = vec![2, 0, 7];
        ok.extend_from_slice(b"connect");
        ok.push(0);
        ok.extend_from_slice(&1f64.to_be_bytes());
        ok.extend_from_slice(&[3, 0, 0, 9]);
        assert_eq!(amf0_top_level_values(&ok), Ok(3));
        assert_eq!(screen(&msg(0, 20, &ok)), Ok(true));
        // Only two values: rml_rtmp would panic; dropped.
        assert_eq!(screen(&msg(0, 20, &ok[..ok.len() - 4])), Ok(false));
        // Objects nested 1000 deep: rml_amf0 would overflow the stack.
        let mut deep = ok[..ok.len() - 4].to_vec();
        for _ in 0..1000 {
            deep.extend_from_slice(&[3, 0, 1, b'a']);
        }
        assert!(screen(&msg(0, 20, &deep)).is_err());
        let mut arrays = vec![];
        for _ in 0..100 {
            arrays.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        assert!(amf0_top_level_values(&arrays).is_err());
    }
}
