//! Video jobs: one [`VideoDecoder`] per stream (decode once) and one [`VideoEncoder`] per
//! rendition (scale with swscale, encode with libx264). Both run on the pool's threads.
//!
//! The decoder hands each decoded picture to every active rendition as a shared reference
//! (`Arc`), so the source is decoded once however many renditions there are. Each encoder
//! forces an IDR exactly on the source's keyframes and stamps its output with the source's
//! timestamps, so every rendition cuts its segments where the source does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use tracing::{debug, warn};

use super::ladder::{FpsLimiter, RenditionPlan};
use super::output::{lock, SharedOut};
use super::pool::{Handler, Job};
use super::TranscodeError;
use crate::proto::avc::{annex_b_to_avcc, AvcConfig};
use crate::proto::media::{MediaPacket, Track, VideoCodec, VideoConfig, TIMESCALE};

/// Time spent and frames done by a job, read by admission control to estimate its cost.
#[derive(Debug, Default)]
pub struct JobStats {
    pub busy_ns: AtomicU64,
    pub frames: AtomicU64,
}

impl JobStats {
    pub(super) fn add(&self, since: Instant, frames: u64) {
        self.busy_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.frames.fetch_add(frames, Ordering::Relaxed);
    }
}

/// A decoded picture shared by every rendition.
pub struct SourceFrame {
    frame: ffmpeg::frame::Video,
    pts: i64,
    keyframe: bool,
}

/// One rendition of one stream, as the decoder and admission control see it.
pub struct Slot {
    pub plan: RenditionPlan,
    /// False while admission control has shed it: the decoder sends it nothing.
    pub active: AtomicBool,
    pub job: Arc<Job<VideoEncoder>>,
    pub out: SharedOut,
    pub stats: Arc<JobStats>,
}

pub enum DecodeMsg {
    /// A video packet and when it arrived from the bus.
    Packet(MediaPacket, Instant),
    /// Input was lost: wait for the next keyframe; renditions mark a discontinuity.
    Resync,
    /// The pipeline stops: drain the decoder and the encoders; `end` when the stream ended
    /// (playlists get ENDLIST) rather than restarting.
    Finish { end: bool },
}

pub enum EncodeMsg {
    Frame(Arc<SourceFrame>),
    Resync,
    /// Admission control sheds the rendition.
    Shed,
    /// Admission control brings it back.
    Restore,
    Finish {
        end: bool,
    },
}

/// Sets a codec context's extradata (ffmpeg-next has no safe setter for it).
pub(super) fn set_extradata(
    ctx: &mut ffmpeg::codec::Context,
    data: &[u8],
) -> Result<(), TranscodeError> {
    // SAFETY: the buffer is allocated with av_mallocz including the padding libavcodec reads
    // past the end, and handed to the context, which frees it in avcodec_free_context.
    unsafe {
        let size = data.len() + ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
        let buf = ffmpeg::ffi::av_mallocz(size) as *mut u8;
        if buf.is_null() {
            return Err(TranscodeError::Codec {
                what: "extradata",
                reason: "out of memory".into(),
            });
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        let raw = ctx.as_mut_ptr();
        if !(*raw).extradata.is_null() {
            ffmpeg::ffi::av_free((*raw).extradata as *mut _);
        }
        (*raw).extradata = buf;
        (*raw).extradata_size = data.len() as i32;
    }
    Ok(())
}

pub(super) fn codec_err(what: &'static str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError {
    move |e| TranscodeError::Codec {
        what,
        reason: e.to_string(),
    }
}

/// Opens libx264 for a rendition plan: its size, rate control, level and keyframe options,
/// timestamps in 90 kHz. Shared by the ladder's renditions and the browser-codec converter.
pub(super) fn open_x264(p: &RenditionPlan) -> Result<ffmpeg::encoder::Video, TranscodeError> {
    let codec = ffmpeg::encoder::find_by_name("libx264").ok_or(TranscodeError::Codec {
        what: "libx264",
        reason: "not in this FFmpeg build".into(),
    })?;
    let ctx = ffmpeg::codec::Context::new_with_codec(codec);
    let mut enc = ctx.encoder().video().map_err(codec_err("libx264"))?;
    enc.set_width(p.width);
    enc.set_height(p.height);
    enc.set_format(Pixel::YUV420P);
    // Source timestamps go through unchanged: 90 kHz in, 90 kHz out.
    enc.set_time_base(ffmpeg::Rational::new(1, TIMESCALE as i32));
    // x264 budgets bits per frame from the frame rate; timestamps still drive timing.
    let fps = ffmpeg::Rational::new((p.fps * 1000.0).round() as i32, 1000).reduce();
    enc.set_frame_rate(Some(fps));
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("preset", &p.preset);
    if p.zerolatency {
        opts.set("tune", "zerolatency");
    }
    opts.set("profile", &p.profile);
    opts.set("level", p.level);
    opts.set("b", &format!("{}k", p.video_kbps));
    opts.set("maxrate", &format!("{}k", p.maxrate_kbps()));
    opts.set("bufsize", &format!("{}k", p.bufsize_kbps()));
    opts.set("forced-idr", "1");
    opts.set("x264-params", &p.x264_params());
    // One thread per encoder: the pool is the unit of parallelism and of CPU bound; x264's
    // frame threads would also add a frame of latency per thread.
    opts.set("threads", "1");
    enc.open_with(opts).map_err(codec_err("libx264"))
}

/// Takes an x264 encoder's finished packets as bus packets (length-prefixed), each with the
/// configuration made from the parameter sets it carries in band (keyframes), if any.
pub(super) fn drain_h264(
    enc: &mut ffmpeg::encoder::Video,
    packet: &mut ffmpeg::Packet,
    what: &str,
    mut out: impl FnMut(Option<AvcConfig>, MediaPacket),
) {
    while enc.receive_packet(packet).is_ok() {
        let (Some(data), Some(pts)) = (packet.data(), packet.pts()) else {
            continue;
        };
        let unit = annex_b_to_avcc(data);
        let config = if unit.sps.is_empty() {
            None
        } else {
            match AvcConfig::from_parameter_sets(&unit.sps, &unit.pps) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(rendition = %what, error = %e, "encoder parameter sets unusable");
                    None
                }
            }
        };
        let pkt = MediaPacket {
            track: Track::Video,
            dts: packet.dts().unwrap_or(pts),
            pts,
            keyframe: packet.is_key(),
            // The converted unit's Vec becomes the payload without a copy.
            data: bytes::Bytes::from(unit.data),
        };
        out(config, pkt);
    }
}

/// Opens the decoder for a source's video configuration: H.264 and HEVC with libavcodec's
/// decoders, AV1 with libdav1d (or libaom-av1), one thread, 90 kHz packet timestamps. Shared by
/// the stream's [`VideoDecoder`] and the thumbnail maker.
pub(super) fn open_decoder(config: &VideoConfig) -> Result<ffmpeg::decoder::Video, TranscodeError> {
    let (what, codec) = match config.codec() {
        VideoCodec::Avc => (
            "h264 decoder",
            ffmpeg::decoder::find(ffmpeg::codec::Id::H264),
        ),
        VideoCodec::Hevc => (
            "hevc decoder",
            ffmpeg::decoder::find(ffmpeg::codec::Id::HEVC),
        ),
        VideoCodec::Av1 => (
            "AV1 decoder (libdav1d)",
            ffmpeg::decoder::find_by_name("libdav1d")
                .or_else(|| ffmpeg::decoder::find_by_name("libaom-av1")),
        ),
    };
    let codec = codec.ok_or(TranscodeError::Codec {
        what,
        reason: "not in this FFmpeg build".into(),
    })?;
    let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
    // The configuration record is the extradata each decoder takes: avcC, hvcC, av1C.
    set_extradata(&mut ctx, config.record())?;
    // One thread: parallelism comes from the pool (one job per rendition and stream), and
    // frame threads would add latency and CPU outside the pool's bound.
    ctx.set_threading(threading::Config::count(1));
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(ffmpeg::Rational::new(1, TIMESCALE as i32));
    dec.video().map_err(codec_err(what))
}

/// Decodes the source video once per stream: H.264 and HEVC with libavcodec's decoders, AV1
/// with libdav1d (Debian's FFmpeg 5.1 also has libaom-av1, slower, used when dav1d is absent;
/// its native `av1` decoder needs a hardware accelerator).
pub struct VideoDecoder {
    config: Arc<VideoConfig>,
    decoder: Option<ffmpeg::decoder::Video>,
    /// PTS of source keyframes not yet seen coming out of the decoder (it may reorder).
    keyframes: VecDeque<i64>,
    waiting_for_key: bool,
    slots: Vec<Arc<Slot>>,
    stats: Arc<JobStats>,
    frame: ffmpeg::frame::Video,
    failed_logged: bool,
}

impl VideoDecoder {
    pub fn new(config: Arc<VideoConfig>, slots: Vec<Arc<Slot>>, stats: Arc<JobStats>) -> Self {
        Self {
            config,
            decoder: None,
            keyframes: VecDeque::new(),
            waiting_for_key: true,
            slots,
            stats,
            frame: ffmpeg::frame::Video::empty(),
            failed_logged: false,
        }
    }

    fn open(&mut self) -> Result<(), TranscodeError> {
        self.decoder = Some(open_decoder(&self.config)?);
        Ok(())
    }

    fn decode(&mut self, pkt: &MediaPacket, arrived: Instant) -> Result<(), TranscodeError> {
        if self.decoder.is_none() {
            self.open()?;
        }
        let Some(dec) = self.decoder.as_mut() else {
            return Ok(());
        };
        let mut p = ffmpeg::Packet::copy(&pkt.data);
        p.set_pts(Some(pkt.pts));
        p.set_dts(Some(pkt.dts));
        if pkt.keyframe {
            p.set_flags(ffmpeg::packet::Flags::KEY);
            self.keyframes.push_back(pkt.pts);
            if self.keyframes.len() > 16 {
                self.keyframes.pop_front();
            }
        }
        if let Err(e) = dec.send_packet(&p) {
            // A corrupt packet: the decoder conceals what it can; carry on.
            debug!(error = %e, "video decoder refused a packet");
        }
        self.drain(arrived);
        Ok(())
    }

    /// Hands decoded pictures to the renditions, stamped with the arrival time of the input
    /// (so a rendition's lag includes the decoder's backlog).
    fn drain(&mut self, arrived: Instant) {
        let Some(dec) = self.decoder.as_mut() else {
            return;
        };
        while dec.receive_frame(&mut self.frame).is_ok() {
            let Some(pts) = self.frame.timestamp().or(self.frame.pts()) else {
                continue;
            };
            // Exactly the source's keyframe timestamps become IDRs in every rendition.
            let keyframe = match self.keyframes.iter().position(|k| *k == pts) {
                Some(i) => {
                    self.keyframes.drain(..=i);
                    true
                }
                None => false,
            };
            let frame = Arc::new(SourceFrame {
                frame: std::mem::replace(&mut self.frame, ffmpeg::frame::Video::empty()),
                pts,
                keyframe,
            });
            for s in &self.slots {
                if s.active.load(Ordering::Acquire) {
                    s.job.send(EncodeMsg::Frame(frame.clone()), arrived);
                }
            }
        }
    }

    fn any_active(&self) -> bool {
        self.slots.iter().any(|s| s.active.load(Ordering::Acquire))
    }

    fn broadcast(&self, make: impl Fn() -> EncodeMsg) {
        for s in &self.slots {
            s.job.send(make(), Instant::now());
        }
    }
}

impl Handler for VideoDecoder {
    type Msg = DecodeMsg;

    fn handle(&mut self, msg: DecodeMsg) {
        match msg {
            DecodeMsg::Packet(pkt, arrived) => {
                if pkt.track != Track::Video {
                    return;
                }
                if !self.any_active() {
                    // Every rendition is shed: do not even decode. Start again on a keyframe.
                    self.waiting_for_key = true;
                    return;
                }
                if self.waiting_for_key {
                    if !pkt.keyframe {
                        return;
                    }
                    self.waiting_for_key = false;
                }
                let t = Instant::now();
                if let Err(e) = self.decode(&pkt, arrived) {
                    if !self.failed_logged {
                        self.failed_logged = true;
                        warn!(error = %e, "video decoder unavailable; renditions stop");
                    }
                }
                self.stats.add(t, 1);
            }
            DecodeMsg::Resync => {
                if let Some(d) = self.decoder.as_mut() {
                    d.flush();
                }
                self.keyframes.clear();
                self.waiting_for_key = true;
                self.broadcast(|| EncodeMsg::Resync);
            }
            DecodeMsg::Finish { end } => {
                if let Some(d) = self.decoder.as_mut() {
                    let _ = d.send_eof();
                }
                self.drain(Instant::now());
                self.broadcast(|| EncodeMsg::Finish { end });
                self.decoder = None;
            }
        }
    }
}

/// swscale's context wrapper is not `Send` because it holds a raw pointer. The context has no
/// thread affinity; it is owned by one job and used by one worker at a time.
struct Scaler {
    ctx: scaling::Context,
    input: (Pixel, u32, u32),
}

// SAFETY: see the type's comment; the job's mutex serialises every use.
unsafe impl Send for Scaler {}

/// Scales and encodes one rendition.
pub struct VideoEncoder {
    plan: RenditionPlan,
    out: SharedOut,
    stats: Arc<JobStats>,
    encoder: Option<ffmpeg::encoder::Video>,
    scaler: Option<Scaler>,
    limiter: FpsLimiter,
    need_key: bool,
    shed: bool,
    packet: ffmpeg::Packet,
    /// The last scaled frame, reused for the next (see [`VideoEncoder::output_frame`]).
    spare: Option<ffmpeg::frame::Video>,
    failed_logged: bool,
}

impl VideoEncoder {
    pub fn new(plan: RenditionPlan, out: SharedOut, stats: Arc<JobStats>) -> Self {
        Self {
            limiter: FpsLimiter::new(plan.max_fps),
            plan,
            out,
            stats,
            encoder: None,
            scaler: None,
            need_key: true,
            shed: false,
            packet: ffmpeg::Packet::empty(),
            spare: None,
            failed_logged: false,
        }
    }

    fn encode(&mut self, src: &SourceFrame) -> Result<(), TranscodeError> {
        if self.encoder.is_none() {
            self.encoder = Some(open_x264(&self.plan)?);
        }
        let (w, h) = (self.plan.width, self.plan.height);
        let input = (src.frame.format(), src.frame.width(), src.frame.height());
        let scaled = input != (Pixel::YUV420P, w, h);
        let mut frame = if !scaled {
            // Same size and format (a lower-bitrate rendition at the source's height): no
            // scaling, reference the decoded picture instead of copying it.
            let mut f = ffmpeg::frame::Video::empty();
            // SAFETY: both frames are valid; av_frame_ref adds a reference to src's buffers.
            let r = unsafe { ffmpeg::ffi::av_frame_ref(f.as_mut_ptr(), src.frame.as_ptr()) };
            if r < 0 {
                return Err(TranscodeError::Codec {
                    what: "frame reference",
                    reason: ffmpeg::Error::from(r).to_string(),
                });
            }
            f
        } else {
            if self.scaler.as_ref().map(|s| s.input) != Some(input) {
                let ctx = scaling::Context::get(
                    input.0,
                    input.1,
                    input.2,
                    Pixel::YUV420P,
                    w,
                    h,
                    // Area averaging: every rendition is a downscale (the ladder skips heights
                    // at or above the source's), where it keeps as much detail as bicubic (the
                    // scale filter's default) for less work. scripts/bench-transcode measures
                    // both with the ffmpeg CLI: SSIM against the source 0.0001 below bicubic's
                    // at 480p and 0.001 above it at 360p, 6-8% less CPU for the whole ladder.
                    scaling::Flags::AREA,
                )
                .map_err(codec_err("swscale"))?;
                self.scaler = Some(Scaler { ctx, input });
            }
            let mut f = self.output_frame();
            if let Some(s) = self.scaler.as_mut() {
                s.ctx
                    .run(&src.frame, &mut f)
                    .map_err(codec_err("swscale"))?;
            }
            f
        };
        frame.set_pts(Some(src.pts));
        frame.set_kind(if src.keyframe {
            ffmpeg::picture::Type::I
        } else {
            ffmpeg::picture::Type::None
        });
        if let Some(enc) = self.encoder.as_mut() {
            enc.send_frame(&frame).map_err(codec_err("libx264"))?;
        }
        self.receive();
        if scaled {
            self.spare = Some(frame);
        }
        Ok(())
    }

    /// A frame to scale into: the previous one when nothing else holds it. Allocating ~0.7 MB
    /// per 480p frame means an mmap, page faults and munmap each time (glibc maps blocks over
    /// 128 KiB); ffmpeg's scale filter reuses a pool for the same reason. libx264 copies the
    /// picture during `send_frame`, so the spare is normally free again.
    fn output_frame(&mut self) -> ffmpeg::frame::Video {
        let (w, h) = (self.plan.width, self.plan.height);
        if let Some(mut f) = self.spare.take() {
            // SAFETY: f is a valid frame; av_frame_is_writable only reads its buffer refs.
            let writable = unsafe { ffmpeg::ffi::av_frame_is_writable(f.as_mut_ptr()) } > 0;
            if writable && (f.format(), f.width(), f.height()) == (Pixel::YUV420P, w, h) {
                return f;
            }
        }
        ffmpeg::frame::Video::new(Pixel::YUV420P, w, h)
    }

    /// Moves finished packets to the rendition's output.
    fn receive(&mut self) {
        let Some(enc) = self.encoder.as_mut() else {
            return;
        };
        let out = &self.out;
        drain_h264(enc, &mut self.packet, &self.plan.name, |config, pkt| {
            lock(out).push_video(config, pkt)
        });
    }

    fn flush(&mut self) {
        if let Some(enc) = self.encoder.as_mut() {
            let _ = enc.send_eof();
            self.receive();
        }
        self.encoder = None;
    }
}

impl Handler for VideoEncoder {
    type Msg = EncodeMsg;

    fn handle(&mut self, msg: EncodeMsg) {
        match msg {
            EncodeMsg::Frame(src) => {
                if self.shed || (self.need_key && !src.keyframe) {
                    return;
                }
                self.need_key = false;
                if !self.limiter.keep(src.pts, src.keyframe) {
                    return;
                }
                let t = Instant::now();
                if let Err(e) = self.encode(&src) {
                    if !self.failed_logged {
                        self.failed_logged = true;
                        warn!(rendition = %self.plan.name, error = %e, "rendition cannot be encoded");
                    }
                    self.encoder = None;
                    self.need_key = true;
                }
                self.stats.add(t, 1);
            }
            EncodeMsg::Resync => {
                self.flush();
                lock(&self.out).restart();
                self.need_key = true;
            }
            EncodeMsg::Shed => {
                self.shed = true;
                self.encoder = None;
                self.scaler = None;
                lock(&self.out).disable();
            }
            EncodeMsg::Restore => {
                self.shed = false;
                self.need_key = true;
                self.limiter = FpsLimiter::new(self.plan.max_fps);
                lock(&self.out).enable();
            }
            EncodeMsg::Finish { end } => {
                if !self.shed {
                    self.flush();
                }
                lock(&self.out).producer_finished(end);
            }
        }
    }
}
