//! In-process side of `scripts/bench-thumbnail`: makes the live thumbnail of one H.264
//! keyframe exactly as the server does (`onair::transcode::thumbnail::ThumbnailMaker`:
//! keyframe-only decode, swscale into a 16:9 letterboxed frame, mjpeg), ITERATIONS times on
//! this thread, and prints the CPU and wall time per thumbnail and the JPEG size. The last
//! JPEG is written to OUT.jpg so the script can compare it with the ffmpeg CLI's.
//!
//! Usage: thumbnail_cost KEYFRAME.h264 WIDTH ITERATIONS OUT.jpg
//! KEYFRAME.h264 is one Annex B access unit with its SPS and PPS (`ffmpeg ... -frames:v 1`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onair::config::ThumbnailConfig;
use onair::proto::avc::{annex_b_to_avcc, AvcConfig};
use onair::proto::media::{MediaPacket, Track, VideoConfig};
use onair::transcode::thumbnail::{ThumbMsg, ThumbnailMaker};
use onair::transcode::thumbnails::Thumbnails;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: thumbnail_cost KEYFRAME.h264 WIDTH ITERATIONS OUT.jpg");
        std::process::exit(2);
    }
    let data = std::fs::read(&args[1]).expect("read the keyframe");
    let width: u32 = args[2].parse().expect("width");
    let n: u32 = args[3].parse().expect("iterations");
    ffmpeg_next::init().expect("ffmpeg");
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    let unit = annex_b_to_avcc(&data);
    let config = Arc::new(VideoConfig::Avc(
        AvcConfig::from_parameter_sets(&unit.sps, &unit.pps).expect("SPS and PPS"),
    ));
    let cfg = ThumbnailConfig {
        width,
        ..ThumbnailConfig::default()
    };
    let height = cfg.height();
    let store = Thumbnails::new(cfg, None);
    let mut maker = ThumbnailMaker::new("bench".into(), width, height, store);
    let msg = ThumbMsg {
        config,
        packet: MediaPacket {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe: true,
            data: Bytes::from(unit.data),
        },
        taken_at: chrono::Utc::now(),
    };
    // The first one opens the decoder, scaler and encoder, as a stream's first thumbnail does.
    let (c0, w0) = (thread_cpu(), Instant::now());
    let mut jpeg = maker.make(&msg).expect("thumbnail").expect("a picture");
    let (first_cpu, first_wall) = (thread_cpu() - c0, w0.elapsed());
    let (c0, w0) = (thread_cpu(), Instant::now());
    for _ in 0..n {
        jpeg = maker.make(&msg).expect("thumbnail").expect("a picture");
    }
    let (cpu, wall) = (thread_cpu() - c0, w0.elapsed());
    std::fs::write(&args[4], &jpeg).expect("write the JPEG");
    println!(
        "first_cpu_ms={:.2} first_wall_ms={:.2} cpu_ms={:.2} wall_ms={:.2} bytes={} size={width}x{height}",
        first_cpu.as_secs_f64() * 1e3,
        first_wall.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3 / n as f64,
        wall.as_secs_f64() * 1e3 / n as f64,
        jpeg.len()
    );
}
