//! Enhanced RTMP audio end to end: FFmpeg 9 (imageio-ffmpeg, in `.venv`) pushes H.264 or HEVC
//! video with `-c:a libopus` (FourCC `Opus`, SequenceStart = OpusHead) to the real onair
//! binary, which converts the Opus to AAC on the transcode pool. ffprobe reads what viewers
//! get: an AAC audio track, 48 kHz stereo, as long as the video and starting with it, in both
//! HLS containers. A second audio track (FFmpeg writes it as a multitrack `mp4a` message) is
//! ignored with a log line.

mod common;

use std::process::Command;
use std::time::Duration;

use common::ertmp::{config, first_segment, variant, Audio, EnhancedPush, Video};
use common::*;

const SECS: Duration = Duration::from_secs(1);

/// First timestamp and end (last timestamp + duration) of a track, in seconds.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: f64,
    end: f64,
    packets: usize,
}

/// ffprobe's packets of a whole playlist, per codec type (`audio`, `video`).
fn spans(url: &str) -> (Span, Span) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut audio: Option<Span> = None;
    let mut video: Option<Span> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(kind), Some(pts), Some(dur)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        let (Ok(pts), dur) = (pts.parse::<f64>(), dur.parse::<f64>().unwrap_or(0.0)) else {
            continue;
        };
        let slot = match *kind {
            "audio" => &mut audio,
            "video" => &mut video,
            _ => continue,
        };
        let s = slot.get_or_insert(Span {
            start: pts,
            end: pts + dur,
            packets: 0,
        });
        s.start = s.start.min(pts);
        s.end = s.end.max(pts + dur);
        s.packets += 1;
    }
    (audio.expect("audio packets"), video.expect("video packets"))
}

/// ffprobe's sample rate and channel count of the audio stream of a file.
fn audio_format(data: &[u8]) -> (String, i64) {
    let dir = temp_dir("af");
    let f = dir.join("seg.mp4");
    std::fs::write(&f, data).expect("write");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "json",
        ])
        .arg(&f)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "aac", "{v}");
    (
        s["sample_rate"].as_str().unwrap_or("").to_string(),
        s["channels"].as_i64().unwrap_or(-1),
    )
}

/// The checks of a finished push: AAC 48 kHz stereo in the source rendition, audio as long as
/// the pushed `seconds` and the video, starting with it.
fn check_audio(srv: &TestServer, seconds: f64) {
    let (rate, channels) = audio_format(&first_segment(srv, "source"));
    assert_eq!((rate.as_str(), channels), ("48000", 2));
    wait_for(60 * SECS, "source ENDLIST", || {
        let (s, p) = srv.get("/hls/alice/source/index.m3u8");
        (s == 200 && p.contains("#EXT-X-ENDLIST")).then_some(())
    });
    let (audio, video) = spans(&srv.url("/hls/alice/source/index.m3u8"));
    let (a, v) = (audio.end - audio.start, video.end - video.start);
    eprintln!("audio {audio:?} ({a:.3} s), video {video:?} ({v:.3} s)");
    // AAC frames of 1024 samples: the last partial frame of the input is not encoded.
    assert!(
        (a - seconds).abs() < 0.1,
        "audio lasts {a:.3} s, pushed {seconds} s"
    );
    assert!((a - v).abs() < 0.1, "audio {a:.3} s vs video {v:.3} s");
    // In sync: audio is stamped by sample count from the stream's first real sample (the
    // Opus pre-skip dropped), so both tracks end together, within one AAC frame (21 ms)...
    assert!(
        (audio.end - video.end).abs() < 0.022,
        "audio ends at {:.3} s, video at {:.3} s",
        audio.end,
        video.end
    );
    // ... and start together, the AAC encoder's priming frame (21 ms) aside.
    assert!(
        (audio.start - video.start).abs() < 0.05,
        "audio starts at {:.3} s, video at {:.3} s",
        audio.start,
        video.start
    );
    // 48 kHz in frames of 1024 samples: 46.875 a second.
    let expected = a * 48_000.0 / 1024.0;
    assert!(
        (audio.packets as f64 - expected).abs() <= 2.0,
        "{} audio frames for {a:.3} s",
        audio.packets
    );
}

/// H.264 + Opus over Enhanced RTMP with fMP4: the Opus becomes AAC, in sync with the video,
/// and the master's CODECS say `mp4a.40.2`; the ladder has AAC too.
#[test]
fn opus_becomes_aac_in_fmp4() {
    let _g = media_lock();
    let srv = TestServer::start(&config("fmp4"));
    let mut p = EnhancedPush::new(Video::H264, Audio::Opus);
    p.seconds = 8.0;
    let push = p.push(&srv.rtmp_url(ALICE_KEY));
    srv.wait_log("Opus audio configuration", 30 * SECS);
    let (ok, err) = push.wait(60 * SECS);
    assert!(ok, "FFmpeg 9 push failed: {err}");
    check_audio(&srv, 8.0);
    let (_, master) = srv.get("/hls/alice/master.m3u8");
    let (codecs, _) = variant(&master, "source").expect("source variant");
    assert!(codecs.contains("mp4a.40.2"), "{codecs}");
    let low = ffprobe_bytes(&first_segment(&srv, "low"));
    assert!(low.iter().any(|s| s.codec_name == "aac"), "{low:?}");
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &[]);
    assert!(ok, "ffmpeg plays the master playlist: {err}");
    assert!(
        !srv.logs().contains("track ignored"),
        "no track refused:\n{}",
        srv.logs()
    );
}

/// HEVC + Opus with MPEG-TS, and a second audio track in AAC (FFmpeg 9 sends it as a
/// multitrack `mp4a` message, track 1): the first track (Opus) is used, the other ignored
/// with a log line.
#[test]
fn opus_with_hevc_in_ts_and_a_second_audio_track_ignored() {
    let _g = media_lock();
    let srv = TestServer::start(&config("ts"));
    let mut p = EnhancedPush::new(Video::Hevc, Audio::Opus);
    p.seconds = 8.0;
    p.extra = ["-map", "0:v", "-map", "1:a", "-map", "1:a", "-c:a:1", "aac"]
        .map(String::from)
        .to_vec();
    let push = p.push(&srv.rtmp_url(ALICE_KEY));
    let (ok, err) = push.wait(60 * SECS);
    assert!(ok, "FFmpeg 9 push failed: {err}");
    assert!(srv.logs().contains("multitrack stream"), "{}", srv.logs());
    let source = first_segment(&srv, "source");
    assert_eq!(source[0], 0x47, "MPEG-TS");
    check_audio(&srv, 8.0);
}
