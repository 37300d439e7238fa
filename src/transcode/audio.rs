//! The audio job: one per stream. It decodes the source AAC once and encodes it once per
//! distinct `audio_kbps` in the ladder; every rendition with that bitrate shares the packets.
//!
//! Copy instead of encode: when the source is not AAC-LC (HE-AAC, explicit or implicit SBR),
//! its frames hold 2048 samples at twice the signalled rate, which the encoder's fixed
//! 1024-sample frames cannot take without a FIFO and a resampler; those streams' renditions
//! carry the source audio untouched (a phone on a weak network pays at most the source's audio
//! bitrate, usually 64-128 kbit/s, and HE-AAC is already the low-bitrate codec).

use std::sync::Arc;
use std::time::Instant;

use ffmpeg::codec::threading;
use ffmpeg::ChannelLayout;
use ffmpeg_next as ffmpeg;
use tracing::{debug, warn};

use super::output::{lock, SharedOut};
use super::pool::Handler;
use super::video::JobStats;
use super::TranscodeError;
use crate::proto::aac::AacConfig;
use crate::proto::media::{MediaPacket, Track, TIMESCALE};

/// Opens ffmpeg's AAC-LC encoder (planar float in, one thread) at `kbps`, its packets stamped
/// in `time_base`. Shared by the ladder's audio job and the Opus converter.
pub(super) fn open_aac(
    rate: i32,
    layout: ChannelLayout,
    channels: i32,
    kbps: u32,
    time_base: ffmpeg::Rational,
) -> Result<ffmpeg::encoder::Audio, TranscodeError> {
    let err = |e: ffmpeg::Error| TranscodeError::Codec {
        what: "aac encoder",
        reason: e.to_string(),
    };
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::AAC).ok_or(TranscodeError::Codec {
        what: "aac encoder",
        reason: "not in this FFmpeg build".into(),
    })?;
    let ctx = ffmpeg::codec::Context::new_with_codec(codec);
    let mut enc = ctx.encoder().audio().map_err(err)?;
    enc.set_rate(rate);
    enc.set_channel_layout(layout);
    enc.set_channels(channels);
    enc.set_format(ffmpeg::format::Sample::F32(
        ffmpeg::format::sample::Type::Planar,
    ));
    enc.set_bit_rate(kbps as usize * 1000);
    enc.set_time_base(time_base);
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("threads", "1");
    enc.open_with(opts).map_err(err)
}

pub enum AudioMsg {
    Packet(MediaPacket),
    Resync,
    /// See [`super::video::DecodeMsg::Finish`].
    Finish {
        end: bool,
    },
}

/// One AAC encoder and the renditions that share its output.
struct Encoding {
    kbps: u32,
    encoder: Option<ffmpeg::encoder::Audio>,
    outs: Vec<SharedOut>,
}

pub struct AudioTranscoder {
    config: Arc<AacConfig>,
    /// Pass the source packets through (see the module doc).
    copy: bool,
    decoder: Option<ffmpeg::decoder::Audio>,
    encodings: Vec<Encoding>,
    frame: ffmpeg::frame::Audio,
    packet: ffmpeg::Packet,
    stats: Arc<JobStats>,
    failed_logged: bool,
}

impl AudioTranscoder {
    /// `outs`: each rendition's output with its audio bitrate.
    pub fn new(config: Arc<AacConfig>, outs: Vec<(u32, SharedOut)>, stats: Arc<JobStats>) -> Self {
        let mut encodings: Vec<Encoding> = Vec::new();
        for (kbps, out) in outs {
            match encodings.iter_mut().find(|e| e.kbps == kbps) {
                Some(e) => e.outs.push(out),
                None => encodings.push(Encoding {
                    kbps,
                    encoder: None,
                    outs: vec![out],
                }),
            }
        }
        Self {
            copy: config.object_type != 2,
            config,
            decoder: None,
            encodings,
            frame: ffmpeg::frame::Audio::empty(),
            packet: ffmpeg::Packet::empty(),
            stats,
            failed_logged: false,
        }
    }

    fn layout(&self) -> ChannelLayout {
        ChannelLayout::default(self.config.channels.max(1) as i32)
    }

    fn open_decoder(&mut self) -> Result<ffmpeg::decoder::Audio, TranscodeError> {
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::AAC).ok_or(TranscodeError::Codec {
            what: "aac decoder",
            reason: "not in this FFmpeg build".into(),
        })?;
        let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
        super::video::set_extradata(&mut ctx, &self.config.asc)?;
        ctx.set_threading(threading::Config::count(1));
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(ffmpeg::Rational::new(1, TIMESCALE as i32));
        dec.audio().map_err(|e| TranscodeError::Codec {
            what: "aac decoder",
            reason: e.to_string(),
        })
    }

    fn open_encoder(&self, kbps: u32) -> Result<ffmpeg::encoder::Audio, TranscodeError> {
        let channels = self.config.channels.max(1) as i32;
        // 90 kHz like everything else; the encoder rescales its sample counts to it.
        open_aac(
            self.config.sample_rate as i32,
            self.layout(),
            channels,
            kbps,
            ffmpeg::Rational::new(1, TIMESCALE as i32),
        )
    }

    fn transcode(&mut self, pkt: &MediaPacket) -> Result<(), TranscodeError> {
        if self.decoder.is_none() {
            self.decoder = Some(self.open_decoder()?);
        }
        let mut p = ffmpeg::Packet::copy(&pkt.data);
        p.set_pts(Some(pkt.pts));
        p.set_dts(Some(pkt.dts));
        if let Some(dec) = self.decoder.as_mut() {
            if let Err(e) = dec.send_packet(&p) {
                debug!(error = %e, "audio decoder refused a packet");
            }
        }
        self.drain_decoder();
        Ok(())
    }

    fn drain_decoder(&mut self) {
        loop {
            let Some(dec) = self.decoder.as_mut() else {
                return;
            };
            if dec.receive_frame(&mut self.frame).is_err() {
                return;
            }
            if self.frame.samples() != 1024 || self.frame.rate() != self.config.sample_rate {
                // Implicit SBR: the ASC said LC but the frames are HE-AAC. Copy from now on.
                warn!(
                    samples = self.frame.samples(),
                    rate = self.frame.rate(),
                    "source audio is HE-AAC; renditions carry it unchanged"
                );
                self.copy = true;
                return;
            }
            if self.frame.channel_layout().is_empty() {
                self.frame.set_channel_layout(self.layout());
            }
            for i in 0..self.encodings.len() {
                let active = self.encodings[i].outs.iter().any(|o| lock(o).enabled());
                if !active {
                    continue;
                }
                if self.encodings[i].encoder.is_none() {
                    match self.open_encoder(self.encodings[i].kbps) {
                        Ok(e) => self.encodings[i].encoder = Some(e),
                        Err(e) => {
                            if !self.failed_logged {
                                self.failed_logged = true;
                                warn!(error = %e, "audio cannot be encoded; copying the source");
                            }
                            self.copy = true;
                            return;
                        }
                    }
                }
                if let Some(enc) = self.encodings[i].encoder.as_mut() {
                    if let Err(e) = enc.send_frame(&self.frame) {
                        debug!(error = %e, "audio encoder refused a frame");
                    }
                }
                self.drain_encoder(i);
            }
        }
    }

    fn drain_encoder(&mut self, i: usize) {
        let e = &mut self.encodings[i];
        let Some(enc) = e.encoder.as_mut() else {
            return;
        };
        while enc.receive_packet(&mut self.packet).is_ok() {
            let (Some(data), Some(pts)) = (self.packet.data(), self.packet.pts()) else {
                continue;
            };
            let pkt = MediaPacket {
                track: Track::Audio,
                dts: pts,
                pts,
                keyframe: true,
                data: bytes::Bytes::copy_from_slice(data),
            };
            for o in &e.outs {
                lock(o).push_audio(pkt.clone());
            }
        }
    }

    fn all_outs(&self) -> impl Iterator<Item = &SharedOut> {
        self.encodings.iter().flat_map(|e| e.outs.iter())
    }
}

impl Handler for AudioTranscoder {
    type Msg = AudioMsg;

    fn handle(&mut self, msg: AudioMsg) {
        match msg {
            AudioMsg::Packet(pkt) => {
                if pkt.track != Track::Audio {
                    return;
                }
                let t = Instant::now();
                if !self.copy {
                    if let Err(e) = self.transcode(&pkt) {
                        if !self.failed_logged {
                            self.failed_logged = true;
                            warn!(error = %e, "audio cannot be decoded; copying the source");
                        }
                        self.copy = true;
                    }
                }
                if self.copy {
                    for o in self.all_outs() {
                        lock(o).push_audio(pkt.clone());
                    }
                }
                self.stats.add(t, 1);
            }
            AudioMsg::Resync => {
                if let Some(d) = self.decoder.as_mut() {
                    d.flush();
                }
            }
            AudioMsg::Finish { end } => {
                if let Some(d) = self.decoder.as_mut() {
                    let _ = d.send_eof();
                }
                if !self.copy {
                    self.drain_decoder();
                }
                for i in 0..self.encodings.len() {
                    if let Some(enc) = self.encodings[i].encoder.as_mut() {
                        let _ = enc.send_eof();
                    }
                    self.drain_encoder(i);
                    self.encodings[i].encoder = None;
                }
                for o in self.all_outs() {
                    lock(o).producer_finished(end);
                }
            }
        }
    }
}
