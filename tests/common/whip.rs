//! WHIP test helpers: media files the ffmpeg CLI encodes from a test pattern (H.264 + Opus
//! in MPEG-TS), HTTP requests against a [`TestServer`], and the str0m client
//! ([`whip_client`]) publishing to one.

#![allow(unused_imports)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

pub use super::whip_client::{header, WhipClient, WhipOpts};
use super::TestServer;

/// An MPEG-TS file of `seconds` of H.264 (320x180, 30 fps, no B-frames, keyframe every second)
/// and Opus (48 kHz stereo, 20 ms frames), made once per test binary and `tag`. `video` and
/// `audio` are lavfi sources (defaults: testsrc and a sine).
pub fn media_file(tag: &str, seconds: u32, video: Option<&str>, audio: Option<&str>) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::temp_dir().join(format!(
        "onair-whip-{tag}-{seconds}-{}.ts",
        std::process::id()
    ));
    if path.exists() {
        return path;
    }
    let video = video.unwrap_or("testsrc=size=320x180:rate=30");
    let audio = audio.unwrap_or("sine=frequency=440:sample_rate=48000");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-bf", "0", "-g", "30", "-pix_fmt", "yuv420p"])
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-ac",
            "2",
        ])
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(
        status.success(),
        "ffmpeg could not make the WHIP test media"
    );
    path
}

/// A POST of `body` as `content_type` with an optional bearer key: (status, headers, body).
pub fn post(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    super::whip_client::http("POST", &server.url(path), &headers, body)
}

/// Another request (`PATCH`, `DELETE`, `OPTIONS`) on a URL path.
pub fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    super::whip_client::http(method, &server.url(path), headers, body)
}

/// Publishes to `server` (see [`WhipClient::publish`]).
pub fn publish(
    server: &TestServer,
    channel: &str,
    key: &str,
    opts: WhipOpts,
) -> Result<WhipClient, (u16, String)> {
    WhipClient::publish(&server.url(""), channel, key, opts)
}
