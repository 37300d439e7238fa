//! Browser codecs to what the bus carries (H.264 + AAC), as reusable, synchronous pieces: each
//! converter takes coded frames with 90 kHz timestamps and returns coded frames, so any
//! ingest wraps it in a pool job: [`super::opus_job`] is the one job around [`OpusToAac`] that
//! WHIP and Enhanced RTMP share.
//!
//! - [`OpusToAac`]: decodes Opus (always 48 kHz) and encodes AAC-LC 48 kHz stereo, for WHIP
//!   (browser Opus, no header on the wire) and Enhanced RTMP (`Opus` FourCC, whose
//!   SequenceStart carries the `OpusHead`: channels and the pre-skip that is dropped). Opus frames
//!   hold 960 samples (20 ms), AAC frames 1024, so decoded audio goes through a FIFO; the AAC
//!   frames are stamped by sample count from the first input, and gaps in the input (Opus DTX
//!   sends nothing during silence, lost packets) are filled with silence so that audio stays
//!   on the input's timeline.
//! - [`VideoToH264`]: decodes VP8, VP9 or AV1 and encodes H.264 with libx264 (the ladder's
//!   encoder settings, [`super::video::open_x264`]), an IDR every `keyframe_seconds` of input
//!   time so that segments cut on time, and a new configuration when the picture size changes
//!   (browsers adapt resolution to bandwidth).
//!
//! Both run on the caller's thread: put them on the transcode pool, never on the runtime.

use std::collections::VecDeque;

use bytes::Bytes;
use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::ChannelLayout;
use ffmpeg_next as ffmpeg;
use tracing::debug;

use super::audio::open_aac;
use super::ladder::{level_for, RenditionPlan};
use super::video::{drain_h264, open_x264, set_extradata};
use super::TranscodeError;
use crate::proto::aac::AacConfig;
use crate::proto::avc::AvcConfig;
use crate::proto::media::{MediaPacket, Track, TIMESCALE};
use crate::proto::opus::OpusHead;

/// Opus's (and the AAC output's) sample rate.
pub const OPUS_RATE: i64 = 48_000;
const AAC_FRAME: usize = 1024;
const CHANNELS: usize = 2;
/// Input timing jitter tolerated before the FIFO fills a gap or skips an overlap (10 ms).
const JITTER_SAMPLES: i64 = 480;
/// A gap longer than this (5 s) is a restart, not silence to fill.
const MAX_GAP_SAMPLES: i64 = 5 * OPUS_RATE;

fn err(what: &'static str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError {
    move |e| TranscodeError::Codec {
        what,
        reason: e.to_string(),
    }
}

fn missing(what: &'static str) -> TranscodeError {
    TranscodeError::Codec {
        what,
        reason: "not in this FFmpeg build".into(),
    }
}

/// 90 kHz to 48 kHz samples and back (exact for multiples of 15 ticks).
fn to_samples(pts: i64) -> i64 {
    (pts * OPUS_RATE).div_euclid(TIMESCALE)
}
fn to_ticks(samples: i64) -> i64 {
    (samples * TIMESCALE).div_euclid(OPUS_RATE)
}

/// Opus packets in, AAC-LC 48 kHz stereo frames out.
pub struct OpusToAac {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    config: AacConfig,
    /// Decoded samples not yet encoded, per channel.
    fifo: [VecDeque<f32>; CHANNELS],
    /// Sample index (48 kHz, input timeline) of the FIFO's first sample and of its end.
    read_at: i64,
    write_at: Option<i64>,
    decoded: ffmpeg::frame::Audio,
    packet: ffmpeg::Packet,
    /// Samples of silence inserted so far (DTX and losses), for the log and tests.
    pub silence_samples: u64,
}

// SAFETY: the codec contexts and frames are owned by this value and used by one thread at a
// time (the pool job's mutex serialises every call); libavcodec contexts have no affinity.
unsafe impl Send for OpusToAac {}

impl OpusToAac {
    /// An AAC encoder at `kbps` behind an Opus decoder, for a stream without a header
    /// (WebRTC: stereo, no pre-skip).
    pub fn new(kbps: u32) -> Result<Self, TranscodeError> {
        Self::with_head(kbps, &OpusHead::stereo())
    }

    /// The same for a stream with its `OpusHead`: the decoder drops its pre-skip (the AAC
    /// output starts at the first real sample), mono feeds both channels, and of more than two
    /// channels the first two are kept.
    pub fn with_head(kbps: u32, head: &OpusHead) -> Result<Self, TranscodeError> {
        let codec =
            ffmpeg::decoder::find(ffmpeg::codec::Id::OPUS).ok_or(missing("opus decoder"))?;
        let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
        set_extradata(&mut ctx, &head.raw)?;
        ctx.set_threading(threading::Config::count(1));
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(ffmpeg::Rational::new(1, OPUS_RATE as i32));
        let decoder = dec.audio().map_err(err("opus decoder"))?;

        let encoder = open_aac(
            OPUS_RATE as i32,
            ChannelLayout::STEREO,
            CHANNELS as i32,
            kbps,
            ffmpeg::Rational::new(1, OPUS_RATE as i32),
        )?;
        // AAC-LC (2), 48 kHz (index 3), two channels.
        let config = Self::output_config()?;
        Ok(Self {
            decoder,
            encoder,
            config,
            fifo: [VecDeque::new(), VecDeque::new()],
            read_at: 0,
            write_at: None,
            decoded: ffmpeg::frame::Audio::empty(),
            packet: ffmpeg::Packet::empty(),
            silence_samples: 0,
        })
    }

    /// The AAC configuration every converter produces (AAC-LC, 48 kHz, two channels), known
    /// before one is opened.
    pub fn output_config() -> Result<AacConfig, TranscodeError> {
        AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).map_err(|e| TranscodeError::Codec {
            what: "aac config",
            reason: e.to_string(),
        })
    }

    /// The AAC configuration of the output.
    pub fn config(&self) -> &AacConfig {
        &self.config
    }

    /// One Opus packet whose first sample is at `pts` (90 kHz); returns the AAC frames it
    /// completed (each 1024 samples, stamped on the input's timeline).
    pub fn push(&mut self, opus: &[u8], pts: i64) -> Vec<MediaPacket> {
        let mut p = ffmpeg::Packet::copy(opus);
        p.set_pts(Some(to_samples(pts)));
        if let Err(e) = self.decoder.send_packet(&p) {
            debug!(error = %e, "opus decoder refused a packet");
            return Vec::new();
        }
        let mut out = Vec::new();
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            // The decoder moves a frame's timestamp past the pre-skip it dropped.
            let at = self.decoded.pts().unwrap_or_else(|| to_samples(pts));
            self.take_decoded(at);
            self.encode_ready(&mut out);
        }
        out
    }

    /// Moves a decoded frame into the FIFO at sample index `at`, filling a gap before it with
    /// silence or skipping what overlaps the FIFO's end.
    fn take_decoded(&mut self, at: i64) {
        let n = self.decoded.samples();
        let write_at = match self.write_at {
            Some(w) => w,
            None => {
                self.read_at = at;
                *self.write_at.insert(at)
            }
        };
        let gap = at - write_at;
        let mut skip = 0;
        if !(-MAX_GAP_SAMPLES..=MAX_GAP_SAMPLES).contains(&gap) {
            // A restart of the input's timeline: start again from this frame.
            for ch in &mut self.fifo {
                ch.clear();
            }
            self.read_at = at;
            self.write_at = Some(at);
        } else if gap > JITTER_SAMPLES {
            for ch in &mut self.fifo {
                ch.extend(std::iter::repeat_n(0.0, gap as usize));
            }
            self.silence_samples += gap as u64;
            self.write_at = Some(at);
        } else if gap < -JITTER_SAMPLES {
            skip = (-gap) as usize;
        }
        let planes = self.decoded.planes();
        for (c, ch) in self.fifo.iter_mut().enumerate() {
            // A mono decode feeds both channels.
            let plane = self.decoded.plane::<f32>(c.min(planes.saturating_sub(1)));
            ch.extend(plane.iter().take(n).skip(skip));
        }
        if let Some(w) = self.write_at.as_mut() {
            *w += n.saturating_sub(skip) as i64;
        }
    }

    fn encode_ready(&mut self, out: &mut Vec<MediaPacket>) {
        while self.fifo[0].len() >= AAC_FRAME {
            let mut frame = ffmpeg::frame::Audio::new(
                ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar),
                AAC_FRAME,
                ChannelLayout::STEREO,
            );
            // FFmpeg 5.1 allocates from the layout but leaves the channel count unset.
            frame.set_channels(CHANNELS as u16);
            frame.set_rate(OPUS_RATE as u32);
            for (c, ch) in self.fifo.iter_mut().enumerate() {
                for (dst, src) in frame
                    .plane_mut::<f32>(c)
                    .iter_mut()
                    .zip(ch.drain(..AAC_FRAME))
                {
                    *dst = src;
                }
            }
            frame.set_pts(Some(self.read_at));
            self.read_at += AAC_FRAME as i64;
            if let Err(e) = self.encoder.send_frame(&frame) {
                debug!(error = %e, "aac encoder refused a frame");
            }
            self.receive(out);
        }
    }

    fn receive(&mut self, out: &mut Vec<MediaPacket>) {
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            let (Some(data), Some(pts)) = (self.packet.data(), self.packet.pts()) else {
                continue;
            };
            let pts = to_ticks(pts);
            out.push(MediaPacket {
                track: Track::Audio,
                dts: pts,
                pts,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            });
        }
    }

    /// The end of the input: what the encoder still holds.
    pub fn finish(&mut self) -> Vec<MediaPacket> {
        let mut out = Vec::new();
        let _ = self.encoder.send_eof();
        self.receive(&mut out);
        out
    }
}

/// Settings of the H.264 that converted video becomes.
#[derive(Debug, Clone)]
pub struct H264Settings {
    /// x264 preset.
    pub preset: String,
    /// Average bitrate; 0 picks one from the picture size ([`default_kbps`]).
    pub kbps: u32,
    /// An IDR at least this often (input time), so that segments cut on time.
    pub keyframe_seconds: f64,
    /// Frame rate for rate control (browsers send up to 30).
    pub fps: f64,
}

/// A bitrate for `width` x `height` at about 0.08 bits per pixel at 30 fps (720p: 2.2 Mbit/s),
/// between 400 kbit/s and 6 Mbit/s.
pub fn default_kbps(width: u32, height: u32) -> u32 {
    let kbps = width as u64 * height as u64 * 30 * 8 / 100 / 1000;
    kbps.clamp(400, 6000) as u32
}

/// What a conversion step produced: a packet, and the configuration it needs when that changed.
#[derive(Debug, Clone)]
pub struct H264Frame {
    pub config: Option<AvcConfig>,
    pub packet: MediaPacket,
}

/// VP8 / VP9 / AV1 frames in, H.264 access units (length-prefixed) out.
pub struct VideoToH264 {
    codec: ffmpeg::codec::Id,
    settings: H264Settings,
    decoder: Option<ffmpeg::decoder::Video>,
    /// The encoder and the picture size it was opened for.
    encoder: Option<(ffmpeg::encoder::Video, u32, u32)>,
    scaler: Option<ffmpeg::software::scaling::Context>,
    /// Input time of the next forced IDR.
    next_key: Option<i64>,
    waiting_for_key: bool,
    decoded: ffmpeg::frame::Video,
    packet: ffmpeg::Packet,
    last_config: Option<AvcConfig>,
}

// SAFETY: as for OpusToAac; the swscale context too is only used by the owning job's thread.
unsafe impl Send for VideoToH264 {}

impl VideoToH264 {
    /// A converter for `codec` (`VP8`, `VP9` or `AV1`).
    pub fn new(codec: ffmpeg::codec::Id, settings: H264Settings) -> Result<Self, TranscodeError> {
        if ffmpeg::decoder::find(codec).is_none() {
            return Err(missing("video decoder"));
        }
        if ffmpeg::encoder::find_by_name("libx264").is_none() {
            return Err(TranscodeError::NoX264);
        }
        Ok(Self {
            codec,
            settings,
            decoder: None,
            encoder: None,
            scaler: None,
            next_key: None,
            waiting_for_key: true,
            decoded: ffmpeg::frame::Video::empty(),
            packet: ffmpeg::Packet::empty(),
            last_config: None,
        })
    }

    fn open_decoder(&self) -> Result<ffmpeg::decoder::Video, TranscodeError> {
        let codec = ffmpeg::decoder::find(self.codec).ok_or(missing("video decoder"))?;
        let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
        ctx.set_threading(threading::Config::count(1));
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(ffmpeg::Rational::new(1, TIMESCALE as i32));
        dec.video().map_err(err("video decoder"))
    }

    /// Input was lost: decode nothing until the next keyframe.
    pub fn resync(&mut self) {
        if let Some(d) = self.decoder.as_mut() {
            d.flush();
        }
        self.waiting_for_key = true;
    }

    /// One coded frame at `pts` (90 kHz); returns the H.264 it produced.
    pub fn push(
        &mut self,
        data: &[u8],
        pts: i64,
        keyframe: bool,
    ) -> Result<Vec<H264Frame>, TranscodeError> {
        if self.waiting_for_key {
            if !keyframe {
                return Ok(Vec::new());
            }
            self.waiting_for_key = false;
        }
        if self.decoder.is_none() {
            self.decoder = Some(self.open_decoder()?);
        }
        let mut p = ffmpeg::Packet::copy(data);
        p.set_pts(Some(pts));
        p.set_dts(Some(pts));
        if keyframe {
            p.set_flags(ffmpeg::packet::Flags::KEY);
        }
        let mut out = Vec::new();
        let Some(dec) = self.decoder.as_mut() else {
            return Ok(out);
        };
        if let Err(e) = dec.send_packet(&p) {
            debug!(error = %e, "video decoder refused a packet");
            return Ok(out);
        }
        while let Some(dec) = self.decoder.as_mut() {
            if dec.receive_frame(&mut self.decoded).is_err() {
                break;
            }
            let pts = self
                .decoded
                .timestamp()
                .or(self.decoded.pts())
                .unwrap_or(pts);
            self.encode(pts, &mut out)?;
        }
        Ok(out)
    }

    fn plan(&self, width: u32, height: u32) -> RenditionPlan {
        let kbps = match self.settings.kbps {
            0 => default_kbps(width, height),
            k => k,
        };
        RenditionPlan {
            name: "source".into(),
            order: 0,
            width,
            height,
            video_kbps: kbps,
            audio_kbps: 0,
            preset: self.settings.preset.clone(),
            profile: "high".into(),
            level: level_for(width, height, self.settings.fps, kbps + kbps / 10, true),
            max_fps: None,
            fps: self.settings.fps,
            zerolatency: true,
        }
    }

    fn encode(&mut self, pts: i64, out: &mut Vec<H264Frame>) -> Result<(), TranscodeError> {
        // Even dimensions for 4:2:0 (a browser may send odd ones).
        let (w, h) = (self.decoded.width() & !1, self.decoded.height() & !1);
        if w == 0 || h == 0 {
            return Ok(());
        }
        let new_size = self.encoder.as_ref().map(|(_, ew, eh)| (*ew, *eh)) != Some((w, h));
        if new_size {
            self.drain_encoder(out);
            let enc = open_x264(&self.plan(w, h))?;
            debug!(width = w, height = h, "converting to H.264");
            self.encoder = Some((enc, w, h));
            self.scaler = None;
            self.next_key = None;
        }
        let needs_scaling = (
            self.decoded.format(),
            self.decoded.width(),
            self.decoded.height(),
        ) != (Pixel::YUV420P, w, h);
        let mut frame = if needs_scaling {
            if self.scaler.is_none() {
                self.scaler = Some(
                    ffmpeg::software::scaling::Context::get(
                        self.decoded.format(),
                        self.decoded.width(),
                        self.decoded.height(),
                        Pixel::YUV420P,
                        w,
                        h,
                        ffmpeg::software::scaling::Flags::BILINEAR,
                    )
                    .map_err(err("swscale"))?,
                );
            }
            let mut f = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
            if let Some(s) = self.scaler.as_mut() {
                s.run(&self.decoded, &mut f).map_err(err("swscale"))?;
            }
            f
        } else {
            std::mem::replace(&mut self.decoded, ffmpeg::frame::Video::empty())
        };
        let key_every = (self.settings.keyframe_seconds * TIMESCALE as f64) as i64;
        let force_key = self.next_key.is_none_or(|k| pts >= k);
        if force_key {
            self.next_key = Some(pts + key_every.max(1));
        }
        frame.set_pts(Some(pts));
        frame.set_kind(if force_key {
            ffmpeg::picture::Type::I
        } else {
            ffmpeg::picture::Type::None
        });
        if let Some((enc, _, _)) = self.encoder.as_mut() {
            enc.send_frame(&frame).map_err(err("libx264"))?;
        }
        self.receive(out);
        Ok(())
    }

    fn receive(&mut self, out: &mut Vec<H264Frame>) {
        let Some((enc, _, _)) = self.encoder.as_mut() else {
            return;
        };
        let last = &mut self.last_config;
        drain_h264(
            enc,
            &mut self.packet,
            "converted video",
            |config, packet| {
                let config = config.filter(|c| last.as_ref() != Some(c));
                if let Some(c) = &config {
                    *last = Some(c.clone());
                }
                out.push(H264Frame { config, packet });
            },
        );
    }

    fn drain_encoder(&mut self, out: &mut Vec<H264Frame>) {
        if let Some((enc, _, _)) = self.encoder.as_mut() {
            let _ = enc.send_eof();
        }
        self.receive(out);
        self.encoder = None;
    }

    /// The end of the input: what the encoder still holds.
    pub fn finish(&mut self) -> Vec<H264Frame> {
        let mut out = Vec::new();
        self.drain_encoder(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opus packets of a 440 Hz tone (48 kHz stereo, 20 ms each), made by ffmpeg's encoder.
    fn opus_packets(frames: usize) -> Vec<Vec<u8>> {
        ffmpeg::init().expect("ffmpeg");
        let codec = ffmpeg::encoder::find_by_name("libopus").expect("libopus encoder");
        let ctx = ffmpeg::codec::Context::new_with_codec(codec);
        let mut enc = ctx.encoder().audio().expect("audio");
        enc.set_rate(48_000);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_channels(2);
        let fmt = ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Packed);
        enc.set_format(fmt);
        enc.set_bit_rate(64_000);
        enc.set_time_base(ffmpeg::Rational::new(1, 48_000));
        let mut enc = enc.open().expect("open");
        let mut out = Vec::new();
        let mut pkt = ffmpeg::Packet::empty();
        for i in 0..frames + 4 {
            let mut f = ffmpeg::frame::Audio::new(fmt, 960, ChannelLayout::STEREO);
            f.set_channels(2);
            f.set_rate(48_000);
            f.set_pts(Some(i as i64 * 960));
            let n = 960;
            for (j, s) in f.plane_mut::<(f32, f32)>(0).iter_mut().enumerate() {
                let t = (i * n + j) as f32 / 48_000.0;
                let v = (t * 440.0 * std::f32::consts::TAU).sin() * 0.3;
                *s = (v, v);
            }
            enc.send_frame(&f).expect("send");
            while enc.receive_packet(&mut pkt).is_ok() {
                out.push(pkt.data().expect("data").to_vec());
            }
        }
        out.truncate(frames);
        out
    }

    #[test]
    fn opus_becomes_aac_on_the_input_timeline_with_silence_for_gaps() {
        let packets = opus_packets(100);
        let mut conv = OpusToAac::new(128).expect("converter");
        assert_eq!(conv.config().sample_rate, 48_000);
        assert_eq!(conv.config().channels, 2);
        let start = 90_000; // the input starts at 1 s
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            // 20 ms = 1800 ticks; packets 50..70 are missing (DTX or loss: 400 ms).
            if (50..70).contains(&i) {
                continue;
            }
            out.extend(conv.push(p, start + i as i64 * 1800));
        }
        out.extend(conv.finish());
        assert!(conv.silence_samples >= 19_000, "{}", conv.silence_samples);
        // Frames every 1024 samples (1920 ticks) with no gap, covering the whole 2 s.
        for w in out.windows(2) {
            assert_eq!(w[1].pts - w[0].pts, 1920, "{} -> {}", w[0].pts, w[1].pts);
        }
        let first = out.first().expect("frames").pts;
        // The encoder's priming delay (1024 samples) precedes the first input sample.
        assert_eq!(first, start - 1920);
        let covered = out.len() as i64 * 1920;
        assert!(covered >= 2 * 90_000 - 2 * 1920, "{covered}");
    }

    /// An Enhanced RTMP stream's `OpusHead` with libopus's pre-skip (312 samples): the AAC
    /// output starts at the first real sample, and mono feeds both channels.
    #[test]
    fn opus_with_a_head_drops_its_pre_skip() {
        let packets = opus_packets(50);
        let mut head = OpusHead::stereo();
        head.raw[10..12].copy_from_slice(&312u16.to_le_bytes());
        let head = OpusHead::parse(&head.raw).expect("head");
        let mut conv = OpusToAac::with_head(96, &head).expect("converter");
        let start = 9_000;
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            out.extend(conv.push(p, start + i as i64 * 1800));
        }
        for w in out.windows(2) {
            assert_eq!(w[1].pts - w[0].pts, 1920);
        }
        // 312 samples are 585 ticks; the encoder's priming (1024 samples) comes before.
        assert_eq!(out.first().expect("frames").pts, start + 585 - 1920);

        let mono = OpusHead::parse(b"OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00")
            .expect("mono head");
        assert!(OpusToAac::with_head(96, &mono).is_ok());
    }

    #[test]
    fn vp8_becomes_h264_with_keyframes_on_time_and_a_new_config_on_resize() {
        ffmpeg::init().expect("ffmpeg");
        let Some(vp8) = ffmpeg::encoder::find_by_name("libvpx") else {
            eprintln!("no libvpx encoder: skipped");
            return;
        };
        let encode_vp8 = |w: u32, h: u32, frames: i64| -> Vec<(Vec<u8>, bool)> {
            let ctx = ffmpeg::codec::Context::new_with_codec(vp8);
            let mut enc = ctx.encoder().video().expect("video");
            enc.set_width(w);
            enc.set_height(h);
            enc.set_format(Pixel::YUV420P);
            enc.set_time_base(ffmpeg::Rational::new(1, 30));
            enc.set_bit_rate(300_000);
            let mut opts = ffmpeg::Dictionary::new();
            opts.set("deadline", "realtime");
            opts.set("cpu-used", "8");
            let mut enc = enc.open_with(opts).expect("open vp8");
            let mut out = Vec::new();
            let mut pkt = ffmpeg::Packet::empty();
            for i in 0..frames {
                let mut f = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
                for (j, b) in f.data_mut(0).iter_mut().enumerate() {
                    *b = ((j as i64 + i * 3) % 251) as u8;
                }
                f.set_pts(Some(i));
                enc.send_frame(&f).expect("send");
                while enc.receive_packet(&mut pkt).is_ok() {
                    out.push((pkt.data().expect("data").to_vec(), pkt.is_key()));
                }
            }
            let _ = enc.send_eof();
            while enc.receive_packet(&mut pkt).is_ok() {
                out.push((pkt.data().expect("data").to_vec(), pkt.is_key()));
            }
            out
        };
        let mut conv = VideoToH264::new(
            ffmpeg::codec::Id::VP8,
            H264Settings {
                preset: "ultrafast".into(),
                kbps: 0,
                keyframe_seconds: 1.0,
                fps: 30.0,
            },
        )
        .expect("converter");
        let mut out = Vec::new();
        let mut pts = 0;
        for (data, key) in encode_vp8(320, 180, 75) {
            out.extend(conv.push(&data, pts, key).expect("push"));
            pts += 3000;
        }
        for (data, key) in encode_vp8(160, 90, 40) {
            out.extend(conv.push(&data, pts, key).expect("push"));
            pts += 3000;
        }
        out.extend(conv.finish());
        let configs: Vec<(u32, u32)> = out
            .iter()
            .filter_map(|f| f.config.as_ref().map(|c| (c.width, c.height)))
            .collect();
        assert_eq!(configs, vec![(320, 180), (160, 90)]);
        let keys: Vec<i64> = out
            .iter()
            .filter(|f| f.packet.keyframe)
            .map(|f| f.packet.pts)
            .collect();
        // IDRs at 0, 1 s, 2 s, then at the resize (2.5 s) and 1 s after it.
        assert_eq!(keys, vec![0, 90_000, 180_000, 225_000, 315_000]);
        assert_eq!(out.len(), 115);
        assert!(
            out[0].config.is_some(),
            "the first frame carries its config"
        );
    }
}
