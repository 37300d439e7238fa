//! The thumbnail maker: a pool job (one per channel) that turns a source keyframe into a JPEG
//! of `thumbnail.width` x 9/16 of it. Keyframe-only decode (the decoder discards anything but
//! keyframes, gets the one packet and an end of stream, and is flushed for the next), swscale
//! into the largest picture of the source's display aspect that fits 16:9, centred on black
//! (letterbox or pillarbox), then libavcodec's `mjpeg` encoder. No subprocess, no file.
//!
//! [`super::thumbnails`] decides when (every `thumbnail.interval_seconds`) and keeps the
//! result; the geometry ([`fit`]) is pure and table-tested.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use tracing::{debug, warn};

use super::pool::Handler;
use super::thumbnails::Thumbnails;
use super::video::{codec_err, open_decoder};
use super::TranscodeError;
use crate::proto::media::{MediaPacket, VideoConfig};

/// JPEG quantiser scale (ffmpeg's `-q:v`, 2 best to 31 worst): 4 keeps a 1280x720 picture of
/// a busy scene around 100-200 KB, under every target's upload limit.
const JPEG_QUALITY: i32 = 4;
/// libavcodec's `FF_QP2LAMBDA`: `global_quality` is a quantiser times this.
const QP2LAMBDA: i32 = 118;

/// Where the source picture goes inside the thumbnail: size and top-left corner, all even.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub width: u32,
    pub height: u32,
    pub x: u32,
    pub y: u32,
}

/// The largest rectangle of the source's display aspect (`src_w` x `src_h` pixels with sample
/// aspect `sar`, 0/0 or 0/x meaning square) inside `out_w` x `out_h`, centred. Even sizes and
/// offsets, so 4:2:0 chroma planes line up; never empty.
pub fn fit(src_w: u32, src_h: u32, sar: (i32, i32), out_w: u32, out_h: u32) -> Fit {
    let (num, den) = if sar.0 > 0 && sar.1 > 0 {
        (sar.0 as u64, sar.1 as u64)
    } else {
        (1, 1)
    };
    // Display aspect = src_w * num / (src_h * den); compare with out_w / out_h in integers.
    let dw = src_w.max(1) as u64 * num;
    let dh = src_h.max(1) as u64 * den;
    let even = |v: u64| ((v as u32) & !1).max(2);
    let (w, h) = if dw * out_h as u64 >= dh * out_w as u64 {
        // Wider than (or as wide as) the frame: full width, bars above and below.
        (out_w, even((out_w as u64 * dh + dw / 2) / dw).min(out_h))
    } else {
        // Taller: full height, bars left and right.
        (even((out_h as u64 * dw + dh / 2) / dh).min(out_w), out_h)
    };
    Fit {
        width: w,
        height: h,
        x: ((out_w - w) / 2) & !1,
        y: ((out_h - h) / 2) & !1,
    }
}

/// A keyframe to make a thumbnail of.
pub struct ThumbMsg {
    pub config: Arc<VideoConfig>,
    pub packet: MediaPacket,
    /// When the keyframe arrived (the thumbnail's time).
    pub taken_at: DateTime<Utc>,
}

/// swscale's context is not `Send` (a raw pointer) but has no thread affinity; it is owned by
/// one job and used by one worker at a time.
struct Scaler {
    ctx: scaling::Context,
    key: (Pixel, u32, u32, u32, u32),
}

// SAFETY: see the type's comment; the job's mutex serialises every use.
unsafe impl Send for Scaler {}

/// One channel's thumbnail job (runs on the transcode pool).
pub struct ThumbnailMaker {
    channel: String,
    width: u32,
    height: u32,
    store: Arc<Thumbnails>,
    decoder: Option<(Arc<VideoConfig>, ffmpeg::decoder::Video)>,
    scaler: Option<Scaler>,
    encoder: Option<ffmpeg::encoder::Video>,
    frame: ffmpeg::frame::Video,
    failed_logged: bool,
    count: i64,
}

impl ThumbnailMaker {
    pub fn new(channel: String, width: u32, height: u32, store: Arc<Thumbnails>) -> Self {
        Self {
            channel,
            width,
            height,
            store,
            decoder: None,
            scaler: None,
            encoder: None,
            frame: ffmpeg::frame::Video::empty(),
            failed_logged: false,
            count: 0,
        }
    }

    /// Decodes `msg`'s keyframe and encodes it as a JPEG; `Ok(None)` when the decoder gave no
    /// picture (a keyframe it could not use).
    pub fn make(&mut self, msg: &ThumbMsg) -> Result<Option<Bytes>, TranscodeError> {
        if !self
            .decoder
            .as_ref()
            .is_some_and(|(c, _)| **c == *msg.config)
        {
            let mut dec = open_decoder(&msg.config)?;
            // Keyframe-only: whatever else reaches the decoder is dropped unread.
            dec.skip_frame(ffmpeg::codec::discard::Discard::NonKey);
            self.decoder = Some((msg.config.clone(), dec));
        }
        let Some((_, dec)) = self.decoder.as_mut() else {
            return Ok(None);
        };
        let mut p = ffmpeg::Packet::copy(&msg.packet.data);
        p.set_pts(Some(msg.packet.pts));
        p.set_dts(Some(msg.packet.dts));
        p.set_flags(ffmpeg::packet::Flags::KEY);
        // One packet, then end of stream: a decoder with a reorder delay still hands the picture
        // out. The flush afterwards makes it ready for the next keyframe.
        let sent = dec.send_packet(&p).and_then(|_| dec.send_eof());
        // receive_frame empties its frame when it fails (at the end of stream): decode into a
        // scratch frame and keep the last picture that came out.
        let mut got = false;
        let mut scratch = ffmpeg::frame::Video::empty();
        while dec.receive_frame(&mut scratch).is_ok() {
            std::mem::swap(&mut self.frame, &mut scratch);
            got = true;
        }
        dec.flush();
        if let Err(e) = sent {
            debug!(error = %e, "thumbnail decoder refused the keyframe");
        }
        if !got {
            return Ok(None);
        }
        self.encode().map(Some)
    }

    /// The decoded picture scaled into a black 16:9 frame and encoded as a JPEG.
    fn encode(&mut self) -> Result<Bytes, TranscodeError> {
        let (w, h) = (self.width, self.height);
        let src = &self.frame;
        // swscale aborts the process on a frame without a pixel format: never hand it one.
        if src.format() == Pixel::None || src.width() == 0 || src.height() == 0 {
            return Err(TranscodeError::Codec {
                what: "thumbnail",
                reason: "the decoder gave an empty picture".into(),
            });
        }
        let sar = src.aspect_ratio();
        let f = fit(
            src.width(),
            src.height(),
            (sar.numerator(), sar.denominator()),
            w,
            h,
        );
        let key = (src.format(), src.width(), src.height(), f.width, f.height);
        if self.scaler.as_ref().map(|s| s.key) != Some(key) {
            // Area averaging for the usual downscale; bicubic when a small source grows.
            let flags = if f.width < src.width() {
                scaling::Flags::AREA
            } else {
                scaling::Flags::BICUBIC
            };
            let ctx = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::YUVJ420P,
                f.width,
                f.height,
                flags,
            )
            .map_err(codec_err("swscale"))?;
            self.scaler = Some(Scaler { ctx, key });
        }
        let mut picture = ffmpeg::frame::Video::new(Pixel::YUVJ420P, f.width, f.height);
        if let Some(s) = self.scaler.as_mut() {
            s.ctx
                .run(&self.frame, &mut picture)
                .map_err(codec_err("swscale"))?;
        }
        let mut out = if (f.width, f.height) == (w, h) {
            picture
        } else {
            let mut out = ffmpeg::frame::Video::new(Pixel::YUVJ420P, w, h);
            letterbox(&picture, &mut out, f);
            out
        };
        out.set_pts(Some(self.count));
        self.count += 1;
        if self.encoder.is_none() {
            self.encoder = Some(open_mjpeg(w, h)?);
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Err(TranscodeError::Codec {
                what: "mjpeg",
                reason: "not open".into(),
            });
        };
        enc.send_frame(&out).map_err(codec_err("mjpeg"))?;
        let mut pkt = ffmpeg::Packet::empty();
        enc.receive_packet(&mut pkt).map_err(codec_err("mjpeg"))?;
        Ok(Bytes::copy_from_slice(pkt.data().unwrap_or_default()))
    }
}

/// Fills `out` (YUVJ420P) with black and copies `picture` into it at `f`'s place.
fn letterbox(picture: &ffmpeg::frame::Video, out: &mut ffmpeg::frame::Video, f: Fit) {
    // Full-range black: Y 0, chroma at the middle.
    for (plane, fill) in [(0usize, 0u8), (1, 128), (2, 128)] {
        out.data_mut(plane).fill(fill);
    }
    for plane in 0..3 {
        let shift = if plane == 0 { 0 } else { 1 };
        let (x, y) = ((f.x >> shift) as usize, (f.y >> shift) as usize);
        let (pw, ph) = ((f.width >> shift) as usize, (f.height >> shift) as usize);
        let (src_stride, dst_stride) = (picture.stride(plane), out.stride(plane));
        let src = picture.data(plane);
        let dst = out.data_mut(plane);
        for row in 0..ph {
            let s = row * src_stride;
            let d = (y + row) * dst_stride + x;
            if let (Some(from), Some(to)) = (src.get(s..s + pw), dst.get_mut(d..d + pw)) {
                to.copy_from_slice(from);
            }
        }
    }
}

/// libavcodec's JPEG encoder at `w` x `h`, full-range 4:2:0, fixed quantiser.
fn open_mjpeg(w: u32, h: u32) -> Result<ffmpeg::encoder::Video, TranscodeError> {
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG).ok_or(TranscodeError::Codec {
        what: "mjpeg",
        reason: "not in this FFmpeg build".into(),
    })?;
    let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
    ctx.set_flags(ffmpeg::codec::Flags::QSCALE);
    ctx.set_threading(ffmpeg::codec::threading::Config::count(1));
    let mut enc = ctx.encoder().video().map_err(codec_err("mjpeg"))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_color_range(ffmpeg::color::Range::JPEG);
    enc.set_time_base(ffmpeg::Rational::new(1, 1));
    enc.set_global_quality(JPEG_QUALITY * QP2LAMBDA);
    enc.set_qmin(JPEG_QUALITY);
    enc.set_qmax(JPEG_QUALITY);
    enc.open().map_err(codec_err("mjpeg"))
}

impl Handler for ThumbnailMaker {
    type Msg = ThumbMsg;

    fn handle(&mut self, msg: ThumbMsg) {
        let t = Instant::now();
        match self.make(&msg) {
            Ok(Some(jpeg)) => {
                let cost = t.elapsed();
                self.store.put(
                    &self.channel,
                    jpeg,
                    msg.taken_at,
                    self.width,
                    self.height,
                    cost,
                );
            }
            Ok(None) => debug!("keyframe gave no picture; no thumbnail this time"),
            Err(e) => {
                // A codec that cannot open now will not open on the next keyframe either:
                // say it once, and try again from scratch next time.
                if !self.failed_logged {
                    self.failed_logged = true;
                    warn!(error = %e, "thumbnail not made");
                }
                self.decoder = None;
                self.encoder = None;
            }
        }
        self.store.add_cost(t.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_16_9_with_bars_where_needed() {
        let f = |w, h, sar| fit(w, h, sar, 1280, 720);
        let fit_of = |width, height, x, y| Fit {
            width,
            height,
            x,
            y,
        };
        // Same aspect: the whole frame.
        assert_eq!(f(320, 180, (0, 1)), fit_of(1280, 720, 0, 0));
        assert_eq!(f(1920, 1080, (1, 1)), fit_of(1280, 720, 0, 0));
        // 4:3 is pillarboxed: 960 wide, centred.
        assert_eq!(f(640, 480, (1, 1)), fit_of(960, 720, 160, 0));
        // Portrait phone video: a narrow column.
        assert_eq!(f(720, 1280, (1, 1)), fit_of(404, 720, 438, 0));
        // Wider than 16:9 (2.39:1) is letterboxed.
        assert_eq!(f(1920, 804, (1, 1)), fit_of(1280, 536, 0, 92));
        // Anamorphic 720x576 with a 16:15 sample aspect displays as 4:3.
        assert_eq!(f(720, 576, (16, 15)), fit_of(960, 720, 160, 0));
        // Degenerate input never gives an empty or odd picture.
        let tiny = f(1, 1000, (1, 1));
        assert!(tiny.width >= 2 && tiny.width % 2 == 0 && tiny.x % 2 == 0);
        let zero = f(0, 0, (0, 0));
        assert!(zero.width >= 2 && zero.height >= 2 && zero.x + zero.width <= 1280);
        // Odd targets stay inside.
        let odd = fit(640, 480, (1, 1), 322, 180);
        assert!(odd.x + odd.width <= 322 && odd.height == 180, "{odd:?}");
    }
}
